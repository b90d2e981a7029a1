//! RyzeAPI event envelopes and the `message.exchange` payload in both layouts found in the wild.
//!
//! **Live** layout: `id`, `direction`, `timestamp`, `chat`, `sender` at `data.*`, the body in
//! `data.message` with `content` a string. **Catalog** layout: those fields inside `data.message`, with
//! `content: {"text": …}`. [`MessageExchange::from_data`] reads either, field by field.

use serde_json::Value;

use crate::keys::{MessageClass, MessageKey};

/// One text frame from the link.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// `message.exchange`, `message.status`, `instance.state`, `call.update`, `group.flow`, `label.update`.
    pub event: String,
    /// The acknowledgement extension's id, when RyzeAPI supports it.
    pub event_id: Option<String>,
    pub data: Value,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("frame is not JSON: {0}")]
    NotJson(String),
    #[error("frame is not an event envelope: {0}")]
    NotAnEnvelope(&'static str),
}

impl Envelope {
    pub fn parse(text: &str) -> Result<Self, EventError> {
        let value: Value = serde_json::from_str(text).map_err(|e| EventError::NotJson(e.to_string()))?;
        let Value::Object(mut fields) = value else { return Err(EventError::NotAnEnvelope("not an object")) };
        let event = match fields.get("event") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(EventError::NotAnEnvelope("no `event` name")),
        };
        let event_id = match fields.get("eventId") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let data = match fields.remove("data") {
            Some(data @ Value::Object(_)) => data,
            _ => return Err(EventError::NotAnEnvelope("no `data` object")),
        };
        Ok(Self { event, event_id, data })
    }

    /// How the event is keyed: its chat (for ordering) and, for messages, its WhatsApp id (for dedupe).
    pub fn routing(&self) -> Routing {
        match self.event.as_str() {
            "message.exchange" => {
                let message = MessageExchange::from_data(&self.data);
                let class = MessageClass::of_kind(&message.kind);
                Routing {
                    chat_key: message.chat.key().unwrap_or_else(|| INSTANCE_CHAT.to_owned()),
                    message_key: (!message.id.is_empty()).then(|| MessageKey { class, wa_id: &message.id }.to_string()),
                }
            }
            "message.status" => Routing {
                chat_key: Party::from_value(self.data.get("chat")).key().unwrap_or_else(|| INSTANCE_CHAT.to_owned()),
                message_key: None,
            },
            "call.update" => Routing {
                chat_key: str_field(&self.data, "from").map(canonical_jid).unwrap_or_else(|| INSTANCE_CHAT.to_owned()),
                message_key: None,
            },
            _ => Routing { chat_key: INSTANCE_CHAT.to_owned(), message_key: None },
        }
    }
}

/// The `eventId` of a frame that may not be a valid envelope (to acknowledge what cannot be processed).
pub fn event_id_of(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    match value.get("eventId")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The ordering key of events that belong to no chat (instance state, labels, …): the status conversation.
pub use crate::keys::INSTANCE_CHAT;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub chat_key: String,
    pub message_key: Option<String>,
}

/// A chat or a sender.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Party {
    pub jid: Option<String>,
    pub lid: Option<String>,
    pub name: Option<String>,
    /// `private`, `group`, `newsletter` (chats only).
    pub kind: Option<String>,
    pub picture_url: Option<String>,
}

impl Party {
    fn from_value(value: Option<&Value>) -> Self {
        let Some(value) = value else { return Self::default() };
        Self {
            jid: str_field(value, "jid").map(canonical_jid),
            lid: str_field(value, "lid").map(canonical_jid),
            name: str_field(value, "name").map(str::to_owned),
            kind: str_field(value, "type").map(str::to_owned),
            picture_url: ["pictureUrl", "profilePicUrl", "imgUrl"]
                .iter()
                .find_map(|k| str_field(value, k))
                .map(str::to_owned),
        }
    }

    /// The key events of this chat are ordered by: the phone/group JID, else the LID.
    pub fn key(&self) -> Option<String> {
        self.jid.clone().or_else(|| self.lid.clone())
    }
}

/// `5511…:12@s.whatsapp.net` → `5511…@s.whatsapp.net`; a bare number gets `@s.whatsapp.net`; lower case.
pub fn canonical_jid(jid: &str) -> String {
    let jid = jid.trim().to_ascii_lowercase();
    let (user, server) = jid.split_once('@').unwrap_or((jid.as_str(), "s.whatsapp.net"));
    let user = user.split(':').next().unwrap_or(user);
    format!("{user}@{server}")
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// `message.exchange`, normalised from either layout.
#[derive(Debug, Clone, Default)]
pub struct MessageExchange {
    pub id: String,
    /// `incoming` (from the customer) or `outgoing` (from this WhatsApp number).
    pub direction: String,
    pub timestamp: Option<String>,
    pub chat: Party,
    pub sender: Party,
    /// `message.type`: `text`, `image`, …, `message_edit`, `message_revoke`, anything else.
    pub kind: String,
    /// The text (`content` as a string, or `content.text`).
    pub text: Option<String>,
    /// `message.source`: `chatwoot` for the bridge's own echoes.
    pub source: String,
    pub quoted_id: Option<String>,
    /// The message body object as received (media, location, contact, reaction, edit, poll, …).
    pub body: Value,
}

impl MessageExchange {
    pub fn from_data(data: &Value) -> Self {
        let body = data.get("message").cloned().unwrap_or(Value::Null);
        // Live layout first (`data.x`), then catalog (`data.message.x`).
        let field =
            |key: &str| data.get(key).filter(|v| !v.is_null()).or_else(|| body.get(key).filter(|v| !v.is_null()));
        let text = match body.get("content") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(content @ Value::Object(_)) => content.get("text").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        }
        .filter(|t| !t.is_empty());
        let kind = body
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| if text.is_some() { "text".to_owned() } else { "unknown".to_owned() });
        let quoted_id = body
            .get("context")
            .and_then(|c| c.get("quotedMessageId"))
            .or_else(|| body.get("reply").and_then(|r| r.get("message_id")))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        Self {
            id: field("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
            direction: field("direction").and_then(Value::as_str).unwrap_or("incoming").to_owned(),
            timestamp: field("timestamp").and_then(Value::as_str).map(str::to_owned),
            chat: Party::from_value(field("chat")),
            sender: Party::from_value(field("sender")),
            kind,
            text,
            source: body.get("source").and_then(Value::as_str).unwrap_or_default().to_owned(),
            quoted_id,
            body,
        }
    }

    /// The bridge's own agent reply coming back from WhatsApp.
    pub fn is_own_echo(&self) -> bool {
        self.direction == "outgoing" && self.source == "chatwoot"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live() -> Value {
        json!({"event":"message.exchange","eventId":"evt-1","data":{
            "id":"3EB0A1","direction":"incoming","timestamp":"2026-11-21T10:00:00Z",
            "chat":{"jid":"5511999999999:12@s.whatsapp.net","lid":"123@lid","name":"Maria","type":"private"},
            "sender":{"jid":"5511999999999@s.whatsapp.net","name":"Maria","pictureUrl":"https://p"},
            "message":{"type":"text","content":"Olá","source":"","context":{"quotedMessageId":"3EB0Q"}}},
            "instanceData":{"instance":"suporte","baseUrl":"http://r","token":"t"}})
    }

    fn catalog() -> Value {
        json!({"event":"message.exchange","data":{"id":"wamid.1","message":{
            "id":"wamid.1","direction":"incoming","timestamp":"2026-04-28T10:30:00Z",
            "chat":{"jid":"5511999999999","lid":"100@lid","name":"João","type":"private"},
            "sender":{"jid":"5511999999999","name":"João"},"content":{"text":"Hello"}}}})
    }

    #[test]
    fn parses_the_live_layout() {
        let env = Envelope::parse(&live().to_string()).unwrap();
        assert_eq!(env.event_id.as_deref(), Some("evt-1"));
        let m = MessageExchange::from_data(&env.data);
        assert_eq!(m.id, "3EB0A1");
        assert_eq!(m.direction, "incoming");
        assert_eq!(m.chat.jid.as_deref(), Some("5511999999999@s.whatsapp.net"), "device suffix removed");
        assert_eq!(m.chat.lid.as_deref(), Some("123@lid"));
        assert_eq!(m.kind, "text");
        assert_eq!(m.text.as_deref(), Some("Olá"));
        assert_eq!(m.quoted_id.as_deref(), Some("3EB0Q"));
        assert_eq!(m.sender.picture_url.as_deref(), Some("https://p"));
        assert_eq!(
            env.routing(),
            Routing { chat_key: "5511999999999@s.whatsapp.net".into(), message_key: Some("msg:3EB0A1".into()) }
        );
    }

    #[test]
    fn parses_the_catalog_layout() {
        let env = Envelope::parse(&catalog().to_string()).unwrap();
        assert_eq!(env.event_id, None);
        let m = MessageExchange::from_data(&env.data);
        assert_eq!(m.id, "wamid.1");
        assert_eq!(m.text.as_deref(), Some("Hello"));
        assert_eq!(m.kind, "text", "type inferred from text content");
        assert_eq!(m.chat.jid.as_deref(), Some("5511999999999@s.whatsapp.net"), "bare number gets the server");
        assert_eq!(m.timestamp.as_deref(), Some("2026-04-28T10:30:00Z"));
        assert_eq!(env.routing().chat_key, "5511999999999@s.whatsapp.net");
    }

    #[test]
    fn edits_and_revokes_do_not_collide_with_the_original_message() {
        let mut edit = live();
        edit["data"]["message"]["type"] = json!("message_edit");
        let env = Envelope::parse(&edit.to_string()).unwrap();
        assert_eq!(env.routing().message_key.as_deref(), Some("edit:3EB0A1"));
    }

    #[test]
    fn recognises_own_echoes() {
        let mut echo = live();
        echo["data"]["direction"] = json!("outgoing");
        echo["data"]["message"]["source"] = json!("chatwoot");
        assert!(MessageExchange::from_data(&Envelope::parse(&echo.to_string()).unwrap().data).is_own_echo());
        echo["data"]["message"]["source"] = json!("");
        assert!(!MessageExchange::from_data(&Envelope::parse(&echo.to_string()).unwrap().data).is_own_echo());
    }

    #[test]
    fn routes_other_events() {
        let status = json!({"event":"message.status","data":{"messageIds":["a"],"status":"read","chat":{"jid":"5511@s.whatsapp.net"}}});
        assert_eq!(Envelope::parse(&status.to_string()).unwrap().routing().chat_key, "5511@s.whatsapp.net");
        let state = json!({"event":"instance.state","eventId":7,"data":{"state":"connected"}});
        let env = Envelope::parse(&state.to_string()).unwrap();
        assert_eq!(env.event_id.as_deref(), Some("7"));
        assert_eq!(env.routing().chat_key, INSTANCE_CHAT);
    }

    #[test]
    fn rejects_malformed_frames() {
        assert!(matches!(Envelope::parse("{"), Err(EventError::NotJson(_))));
        assert_eq!(Envelope::parse("[]").unwrap_err(), EventError::NotAnEnvelope("not an object"));
        assert_eq!(Envelope::parse(r#"{"data":{}}"#).unwrap_err(), EventError::NotAnEnvelope("no `event` name"));
        assert_eq!(
            Envelope::parse(r#"{"event":"x","data":1}"#).unwrap_err(),
            EventError::NotAnEnvelope("no `data` object")
        );
    }
}
