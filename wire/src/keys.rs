//! Every key format the bridge stores or sends, each with its make/parse pair, in one place.
//!
//! The texts are stored (in `message_map.wa_id`, `inbound_events.message_key`, `outbound_jobs.kind`,
//! `chats.chat_key`) or sent (Chatwoot's `source_id`), so they never change here: a new format gets a new
//! pair; an old one stays as it is written. Parsing is strict: what `make` would not have written is `None`.
//!
//! - Chatwoot `source_id` of a relayed message: `WAID:<WhatsApp message id>` ([`source_id`]).
//! - The status conversation's chat key: `ryze-status:<instance>` ([`status_chat_key`]).
//! - An inbound event's dedupe key: `msg:`, `edit:`, `revoke:` or `reaction:` then the WhatsApp message id
//!   ([`MessageKey`]).
//! - The dedupe key of a message the bridge writes itself: `ryze-call:<event row>`, `ryze-event:<event row>`,
//!   `ryze-command:<Chatwoot message id>`, and the `source_id` of a merge note, `ryze-merge:<audit row>`
//!   ([`BridgeKey`]).
//! - An outbound job's kind: `send`, `delete`, `retry-<n>`, `tick-sent-<send job id>` ([`JobKind`]).
//! - The ordering key of events that belong to no chat: `_instance` ([`INSTANCE_CHAT`]).
//! - The queue key of a Chatwoot conversation's outbound jobs: `chatwoot:<conversation id>`
//!   ([`conversation_queue_key`]).

use std::fmt;

/// The prefix of the Chatwoot `source_id` of every message the bridge relays.
pub const SOURCE_PREFIX: &str = "WAID:";

/// The Chatwoot `source_id` of a relayed message (or of the message a reply quotes).
pub fn source_id(wa_id: &str) -> String {
    format!("{SOURCE_PREFIX}{wa_id}")
}

/// The WhatsApp id in a `source_id` the bridge set; `None` for any other `source_id`.
pub fn parse_source_id(source_id: &str) -> Option<&str> {
    source_id.strip_prefix(SOURCE_PREFIX).filter(|id| !id.is_empty())
}

/// The ordering key of events that belong to no chat (instance state, labels, …): the status conversation.
pub const INSTANCE_CHAT: &str = "_instance";

const STATUS_PREFIX: &str = "ryze-status:";

/// The chat key (and only alias) of an instance's status conversation.
pub fn status_chat_key(instance: &str) -> String {
    format!("{STATUS_PREFIX}{instance}")
}

/// The instance of a status conversation's chat key.
pub fn parse_status_chat_key(key: &str) -> Option<&str> {
    key.strip_prefix(STATUS_PREFIX).filter(|instance| !instance.is_empty())
}

/// The queue key of a Chatwoot conversation's outbound jobs (never a chat key: those are JIDs, LIDs,
/// `_instance` or `ryze-status:…`).
pub fn conversation_queue_key(conversation_id: i64) -> String {
    format!("chatwoot:{conversation_id}")
}

/// The conversation of a queue key made by [`conversation_queue_key`].
pub fn parse_conversation_queue_key(key: &str) -> Option<i64> {
    key.strip_prefix("chatwoot:").and_then(parse_number)
}

/// What a `message.exchange` event does to a WhatsApp message: the class part of its dedupe key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageClass {
    /// A message (`msg:`): any kind but the three below.
    Message,
    /// `message_edit` (`edit:`).
    Edit,
    /// `message_revoke` (`revoke:`).
    Revoke,
    /// `reaction` (`reaction:`).
    Reaction,
}

impl MessageClass {
    /// The class of a `message.exchange` of this `kind`.
    pub fn of_kind(kind: &str) -> Self {
        match kind {
            "message_edit" => Self::Edit,
            "message_revoke" => Self::Revoke,
            "reaction" => Self::Reaction,
            _ => Self::Message,
        }
    }

    /// The stored prefix, without its colon.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Message => "msg",
            Self::Edit => "edit",
            Self::Revoke => "revoke",
            Self::Reaction => "reaction",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "msg" => Self::Message,
            "edit" => Self::Edit,
            "revoke" => Self::Revoke,
            "reaction" => Self::Reaction,
            _ => return None,
        })
    }
}

/// An inbound event's dedupe key (`inbound_events.message_key`): its class and the WhatsApp message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageKey<'a> {
    pub class: MessageClass,
    pub wa_id: &'a str,
}

impl<'a> MessageKey<'a> {
    /// The key of a message (`msg:<id>`).
    pub const fn message(wa_id: &'a str) -> Self {
        Self { class: MessageClass::Message, wa_id }
    }

    /// A stored key read back; `None` for a key of another format.
    pub fn parse(key: &'a str) -> Option<Self> {
        let (class, wa_id) = key.split_once(':')?;
        let class = MessageClass::parse(class)?;
        (!wa_id.is_empty()).then_some(Self { class, wa_id })
    }
}

impl fmt::Display for MessageKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.class.as_str(), self.wa_id)
    }
}

/// The dedupe key of a Chatwoot message the bridge writes on its own (not a WhatsApp message's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BridgeKey {
    /// The note of a call (`ryze-call:<inbound event row>`).
    Call(i64),
    /// A connection notice in the status conversation (`ryze-event:<inbound event row>`).
    Event(i64),
    /// The answer to a command typed in the status conversation (`ryze-command:<Chatwoot message id>`).
    Command(i64),
    /// The private note about a merge of two chats (`ryze-merge:<chat_merges row>`, a `source_id`).
    Merge(i64),
}

impl BridgeKey {
    /// A stored key read back; `None` for a key of another format.
    pub fn parse(key: &str) -> Option<Self> {
        let (prefix, id) = key.split_once(':')?;
        let id = parse_number(id)?;
        Some(match prefix {
            "ryze-call" => Self::Call(id),
            "ryze-event" => Self::Event(id),
            "ryze-command" => Self::Command(id),
            "ryze-merge" => Self::Merge(id),
            _ => return None,
        })
    }
}

impl fmt::Display for BridgeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Call(id) => write!(f, "ryze-call:{id}"),
            Self::Event(id) => write!(f, "ryze-event:{id}"),
            Self::Command(id) => write!(f, "ryze-command:{id}"),
            Self::Merge(id) => write!(f, "ryze-merge:{id}"),
        }
    }
}

/// What an outbound job does (`outbound_jobs.kind`, unique per Chatwoot message with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Send an agent's message to WhatsApp (`send`).
    Send,
    /// Revoke on WhatsApp what the bridge sent (`delete`).
    Delete,
    /// The agent's n-th retry of a message the bridge failed (`retry-<n>`, from 1).
    Retry(u64),
    /// Set a reply's tick back to `sent` after Chatwoot marked it failed on its own
    /// (`tick-sent-<send job id>`).
    TickSent(i64),
}

impl JobKind {
    /// The stored prefix of every [`JobKind::Retry`].
    pub const RETRY_PREFIX: &'static str = "retry-";
    const TICK_SENT_PREFIX: &'static str = "tick-sent-";

    /// A stored kind read back; `None` for an unknown one.
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "send" => Some(Self::Send),
            "delete" => Some(Self::Delete),
            _ => {
                if let Some(n) = kind.strip_prefix(Self::RETRY_PREFIX) {
                    parse_number(n).map(Self::Retry)
                } else {
                    kind.strip_prefix(Self::TICK_SENT_PREFIX).and_then(parse_number).map(Self::TickSent)
                }
            }
        }
    }

    /// A job that sends the message to WhatsApp (`send` or a retry).
    pub const fn sends(self) -> bool {
        matches!(self, Self::Send | Self::Retry(_))
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Send => f.write_str("send"),
            Self::Delete => f.write_str("delete"),
            Self::Retry(n) => write!(f, "{}{n}", Self::RETRY_PREFIX),
            Self::TickSent(id) => write!(f, "{}{id}", Self::TICK_SENT_PREFIX),
        }
    }
}

impl std::str::FromStr for JobKind {
    type Err = UnknownJobKind;

    fn from_str(kind: &str) -> Result<Self, Self::Err> {
        Self::parse(kind).ok_or_else(|| UnknownJobKind(kind.to_owned()))
    }
}

/// A stored job kind no [`JobKind`] writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job kind `{0}`")]
pub struct UnknownJobKind(pub String);

/// A number as `Display` writes it, and only that (no sign, no leading zero, no blank).
fn parse_number<T: std::str::FromStr + ToString>(text: &str) -> Option<T> {
    let n = text.parse::<T>().ok()?;
    (n.to_string() == text).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ids_round_trip() {
        assert_eq!(source_id("3EB0A1"), "WAID:3EB0A1");
        assert_eq!(parse_source_id(&source_id("3EB0A1")), Some("3EB0A1"));
        assert_eq!(parse_source_id("WAID:"), None);
        assert_eq!(parse_source_id("ryze-merge:4"), None);
        assert_eq!(parse_source_id("waid:X"), None);
    }

    #[test]
    fn status_chat_keys_round_trip() {
        assert_eq!(status_chat_key("acme"), "ryze-status:acme");
        assert_eq!(parse_status_chat_key(&status_chat_key("acme")), Some("acme"));
        assert_eq!(parse_status_chat_key("ryze-status:"), None);
        assert_eq!(parse_status_chat_key("5511@s.whatsapp.net"), None);
    }

    #[test]
    fn conversation_queue_keys_round_trip() {
        assert_eq!(conversation_queue_key(34), "chatwoot:34");
        assert_eq!(parse_conversation_queue_key(&conversation_queue_key(34)), Some(34));
        for bad in ["chatwoot:", "chatwoot:x", "chatwoot:+3", "chatwoot:034", "5511@s.whatsapp.net"] {
            assert_eq!(parse_conversation_queue_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn message_keys_round_trip() {
        for (kind, text) in [
            ("text", "msg:3EB0"),
            ("message_edit", "edit:3EB0"),
            ("message_revoke", "revoke:3EB0"),
            ("reaction", "reaction:3EB0"),
        ] {
            let key = MessageKey { class: MessageClass::of_kind(kind), wa_id: "3EB0" };
            assert_eq!(key.to_string(), text);
            assert_eq!(MessageKey::parse(text), Some(key));
        }
        assert_eq!(MessageKey::message("wamid.1:2").to_string(), "msg:wamid.1:2");
        assert_eq!(MessageKey::parse("msg:wamid.1:2").map(|k| k.wa_id), Some("wamid.1:2"));
        for bad in ["msg:", "msg", "reply:3EB0", "ryze-call:4", ""] {
            assert_eq!(MessageKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn bridge_keys_round_trip() {
        for (key, text) in [
            (BridgeKey::Call(7), "ryze-call:7"),
            (BridgeKey::Event(8), "ryze-event:8"),
            (BridgeKey::Command(9), "ryze-command:9"),
            (BridgeKey::Merge(10), "ryze-merge:10"),
        ] {
            assert_eq!(key.to_string(), text);
            assert_eq!(BridgeKey::parse(text), Some(key));
        }
        for bad in ["ryze-call:", "ryze-call:x", "ryze-status:acme", "msg:1", "ryze-event:-"] {
            assert_eq!(BridgeKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn job_kinds_round_trip() {
        for (kind, text) in [
            (JobKind::Send, "send"),
            (JobKind::Delete, "delete"),
            (JobKind::Retry(1), "retry-1"),
            (JobKind::Retry(12), "retry-12"),
            (JobKind::TickSent(345), "tick-sent-345"),
        ] {
            assert_eq!(kind.to_string(), text);
            assert_eq!(JobKind::parse(text), Some(kind));
            assert_eq!(text.parse::<JobKind>(), Ok(kind));
        }
        assert_eq!("resend".parse::<JobKind>(), Err(UnknownJobKind("resend".into())));
        assert!(JobKind::Send.sends() && JobKind::Retry(2).sends());
        assert!(!JobKind::Delete.sends() && !JobKind::TickSent(1).sends());
        assert!(JobKind::Retry(3).to_string().starts_with(JobKind::RETRY_PREFIX));
        for bad in ["", "Send", "retry-", "retry-x", "retry-01", "retry--1", "tick-sent-", "tick-sent", "sendx"] {
            assert_eq!(JobKind::parse(bad), None, "{bad}");
        }
    }
}
