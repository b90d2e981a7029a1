//! Stored RyzeAPI events → Chatwoot contacts, conversations and messages.
//!
//! Per message, in the chat's serialized path: find the chat by any of its aliases (or create it), make
//! sure it has a contact and a usable conversation (remembered in the database: a known chat with an open
//! conversation costs exactly one Chatwoot call), record the message in `message_map` *before* creating
//! it, create it with `source_id = "WAID:<id>"`, then remember the Chatwoot id. A replay finds the
//! mapping: done, or — if the crash came between the Chatwoot call and the bookkeeping — it looks the
//! message up by `source_id` instead of creating it twice.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::chat;
use sea_orm::DatabaseConnection;
use serde_json::{Map, Value, json};

use super::format::liquid_literal;
use super::identity;
use super::people::{self, Naming, ensure_chat};
use crate::chatwoot::dto::{NewContact, NewConversation, NewMessage};
use crate::chatwoot::governor::Priority;
use crate::chatwoot::{ChatwootClient, ChatwootError, ChatwootTarget, Failure, Unprocessable};
use crate::live::Live;
use crate::relay::Outcome;
use crate::ryzeapi::event::{Envelope, MessageExchange, Party};
use crate::store;
use crate::store::events::PENDING;
use crate::telemetry::{Direction, Finished, Metrics};

/// What a WhatsApp message becomes in Chatwoot: pure, in the wire crate (`ryze_wire::render`).
pub use ryze_wire::render::{Action, Rendered, render};

/// Everything the relay needs about the integration and the process: one context, built by
/// `integrations::manager`, so that the relay names nothing above it.
pub struct RelayContext {
    pub integration_id: String,
    pub instance: String,
    pub chatwoot: ChatwootTarget,
    pub inbox_id: i64,
    pub ignore_groups: bool,
    pub start_as_pending: bool,
    pub reopen_resolved: bool,
    pub sign_messages: bool,
    pub ryzeapi_url: String,
    pub instance_token: crate::secret::Secret,
    /// Chatwoot ≥ 4.2: message ticks can be set (`PATCH …/messages/{id}`). Refreshed with the version.
    pub ticks: std::sync::atomic::AtomicBool,
    pub live: Arc<Live>,
    /// Hot-path reads (see [`store::Store::reader`]).
    pub reader: DatabaseConnection,
    /// Group commit for the per-message writes.
    pub writer: store::writer::Writer,
    /// Chatwoot's per-conversation message limit, kept.
    pub pacer: super::pace::ConversationPacer,
    /// How long a message Chatwoot keeps refusing with an unexplained 422 is retried.
    pub unprocessable_give_up: Duration,
    /// The longest a new chat waits for RyzeAPI's contact look-up.
    pub contact_lookup_within: Duration,
    /// Serializes the first steps of each new chat.
    pub chat_locks: super::people::KeyedLocks,
    /// Serializes the ticks of each Chatwoot message.
    pub tick_locks: super::people::KeyedLocks,
    /// Receipts stored and queued, so that one a later receipt supersedes costs no call.
    pub receipts: super::receipts::ReceiptsAhead,
    /// What each chat was last marked read up to.
    pub read_marks: super::outbound::ReadMarks,
    /// This process's lease on the integration: no write and no call once it no longer holds.
    pub fence: crate::fence::Fence,
    /// The database, for the writes that do not go through `writer`.
    pub db: DatabaseConnection,
    pub metrics: Metrics,
    /// The request budget of this integration's Chatwoot, shared by every integration that uses it.
    pub governor: Arc<crate::chatwoot::governor::Governor>,
    /// How long one Chatwoot or RyzeAPI call may take (`BRIDGE_CHATWOOT_TIMEOUT_MS`).
    pub call_timeout: Duration,
    /// The relay's retry waits, first and longest (`BRIDGE_RETRY_MIN_MS`, `BRIDGE_RETRY_MAX_MS`).
    pub retry: (Duration, Duration),
    /// The answer to `/status` in the status conversation, from the layer that knows the live state.
    pub status_report: Arc<dyn super::status::StatusReport>,
}

impl std::fmt::Debug for RelayContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayContext")
            .field("integration_id", &self.integration_id)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl RelayContext {
    /// A client for this integration's Chatwoot account.
    pub fn chatwoot_client(&self, http: awc::Client) -> ChatwootClient {
        ChatwootClient::new(http, self.chatwoot.clone(), self.call_timeout, self.metrics.clone())
            .with_governor(self.governor.clone())
            .with_fence(self.fence.clone())
    }

    /// A client for this integration's RyzeAPI instance.
    pub fn ryzeapi_client(&self, http: awc::Client) -> crate::ryzeapi::client::RyzeApiClient {
        crate::ryzeapi::client::RyzeApiClient::new(
            http,
            &self.ryzeapi_url,
            &self.instance,
            self.instance_token.clone(),
            self.call_timeout,
            self.metrics.clone(),
        )
        .with_fence(self.fence.clone())
    }

    /// Whether message ticks can be set on this Chatwoot.
    pub fn ticks(&self) -> bool {
        self.ticks.load(Ordering::Relaxed)
    }
}

/// Prefix of every `source_id` the bridge sets on Chatwoot messages.
pub const SOURCE_PREFIX: &str = "WAID:";

/// Processes the stored event `row_id` and records the outcome on its row. Safe to call again for the
/// same row (after a crash or a retry). `fresh_payload` is the event's frame when the caller has just
/// stored it and this is its first attempt (then the row need not be read back), with when it was stored.
pub async fn process(
    relay: Arc<RelayContext>,
    http: Option<awc::Client>,
    row_id: i64,
    fresh_payload: Option<(String, DateTime<Utc>)>,
) -> Outcome {
    let (payload, attempts, replay, received_at) = match fresh_payload {
        Some((payload, stored_at)) => (payload, 0, false, stored_at),
        None => match store::events::find(&relay.reader, row_id).await {
            Ok(Some(row)) if row.state == PENDING => (row.payload, row.attempts, true, row.received_at),
            Ok(_) => return Outcome::Done,
            Err(e) => return Outcome::Retry { after: Duration::from_secs(1), error: e.to_string() },
        },
    };
    let Some(http) = http else {
        return Outcome::Retry { after: Duration::from_secs(1), error: "no HTTP client".into() };
    };
    if attempts == 0 {
        relay.metrics.observe_queue_wait(Direction::ToChatwoot, received_at);
    }
    // A message that just arrived goes before a replay of stored ones (after an outage, say).
    let priority = if replay { Priority::Backlog } else { Priority::Live };
    let chatwoot = relay.chatwoot_client(http.clone()).with_priority(priority);
    let media = MediaSource { http: &http, relay: &relay, attempts };
    let outcome = match Envelope::parse(&payload) {
        Ok(envelope) => {
            // Every log line of this event's relay names its WhatsApp message (the actor's span has the field).
            if let Some(key) = envelope.routing().message_key {
                let wa_id = key.split_once(':').map_or(key.as_str(), |(_, id)| id);
                tracing::Span::current().record("wa_id", tracing::field::display(wa_id));
            }
            relay_event(&relay.db, &relay, &chatwoot, &media, &envelope, row_id, replay).await
        }
        Err(e) => Outcome::Failed(format!("stored frame is unreadable: {e}")),
    };
    record(&relay, row_id, received_at, attempts, outcome).await
}

/// Writes the outcome to the event row; computes the retry delay. (A halt is the actor's to act on.)
async fn record(
    relay: &RelayContext,
    row_id: i64,
    received_at: DateTime<Utc>,
    attempts: i32,
    outcome: Outcome,
) -> Outcome {
    let db = &relay.db;
    let written = match &outcome {
        Outcome::Later { .. } => return outcome,
        Outcome::Done => relay.writer.event_done_later(row_id).await,
        Outcome::Failed(error) => store::events::mark_failed(db, row_id, error).await,
        Outcome::Retry { error, .. } | Outcome::Halt(error) => {
            let next = chrono::Utc::now();
            store::events::mark_retry(db, row_id, next, error).await
        }
    };
    if let Err(e) = written {
        return Outcome::Retry { after: Duration::from_secs(1), error: format!("recording the outcome failed: {e}") };
    }
    match &outcome {
        Outcome::Done => relay.metrics.observe_message(Direction::ToChatwoot, Finished::Done, received_at),
        Outcome::Failed(_) => relay.metrics.observe_message(Direction::ToChatwoot, Finished::Failed, received_at),
        _ => {}
    }
    match outcome {
        Outcome::Retry { after, error } => {
            Outcome::Retry { after: after.max(super::retry_delay(relay.retry, attempts)), error }
        }
        other => other,
    }
}

async fn relay_event(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    media: &MediaSource<'_>,
    envelope: &Envelope,
    row_id: i64,
    replay: bool,
) -> Outcome {
    match envelope.event.as_str() {
        "instance.state" => super::status::instance_state(db, relay, chatwoot, &envelope.data, row_id).await,
        "call.update" => relay_call(db, relay, chatwoot, &envelope.data, row_id).await,
        "message.exchange" => {
            relay_message(db, relay, chatwoot, media, &MessageExchange::from_data(&envelope.data), replay).await
        }
        "message.status" => {
            relay_receipt(relay, &chatwoot.clone().with_priority(Priority::Background), &envelope.data, row_id).await
        }
        "group.flow" => people::group_flow(db, relay, chatwoot, &envelope.data).await,
        other => {
            tracing::debug!(integration_id = %relay.integration_id, event = other, "event kind not relayed yet");
            Outcome::Done
        }
    }
}

/// A call offer → a one-line notice in the caller's conversation (other call events are not shown).
async fn relay_call(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    data: &Value,
    row_id: i64,
) -> Outcome {
    if data.get("type").and_then(Value::as_str) != Some("offer") {
        return Outcome::Done;
    }
    let Some(from) = data.get("from").and_then(Value::as_str).filter(|f| !f.is_empty()) else { return Outcome::Done };
    let caller = Party { jid: Some(crate::ryzeapi::event::canonical_jid(from)), ..Party::default() };
    let video = data.get("isVideo").and_then(Value::as_bool) == Some(true);
    let text = if video { "📹 Incoming WhatsApp video call" } else { "📞 Incoming WhatsApp voice call" };
    let result = async {
        let message = MessageExchange { chat: caller.clone(), sender: caller.clone(), ..MessageExchange::default() };
        let key = caller.key().unwrap_or_default();
        let chat = ensure_chat(db, relay, chatwoot, None, &message, &key, key.ends_with("@g.us")).await?;
        let chat = ensure_contact(db, relay, chatwoot, chat, &caller).await?;
        let wa_id = format!("ryze-call:{row_id}");
        post_once(
            db,
            relay,
            chatwoot,
            &chat,
            Post {
                wa_id: &wa_id,
                direction: "incoming",
                content: text,
                attributes: Map::new(),
                file: None,
                retrying: true,
            },
        )
        .await
    }
    .await;
    outcome_of(result)
}

/// `message.status` → the tick of every Chatwoot message it covers (ticks only move forward; one that a
/// receipt stored after it supersedes is left to that one).
async fn relay_receipt(relay: &RelayContext, chatwoot: &ChatwootClient, data: &Value, row_id: i64) -> Outcome {
    let Some(status) = super::receipts::tick_of_status(data.get("status").and_then(Value::as_str).unwrap_or_default())
    else {
        return Outcome::Done;
    };
    let ids = super::receipts::message_ids(data);
    if !relay.ticks() {
        relay.receipts.relayed(ids, row_id);
        return Outcome::Done;
    }
    let receipt = super::receipts::Receipt::of_status(status);
    for wa_id in ids.iter().copied() {
        if receipt.is_some_and(|receipt| relay.receipts.superseded(wa_id, receipt, row_id)) {
            continue;
        }
        let mapped = match store::messages::find_by_wa_id(&relay.reader, &relay.integration_id, wa_id).await {
            Ok(Some(mapped)) => mapped,
            Ok(None) => continue,
            Err(e) => return store_failed(e),
        };
        let Some(message) = mapped.chatwoot_message_id else { continue };
        // Read again under the message's tick lock: a `tick-sent` job may be setting it right now.
        let _tick = relay.tick_locks.lock(message).await;
        let mapped = match store::messages::find_by_wa_id(&relay.reader, &relay.integration_id, wa_id).await {
            Ok(Some(mapped)) => mapped,
            Ok(None) => continue,
            Err(e) => return store_failed(e),
        };
        let (Some(conversation), Some(message)) = (mapped.conversation_id, mapped.chatwoot_message_id) else {
            continue;
        };
        if mapped.direction != "outgoing"
            || (status != "failed" && super::tick_rank(Some(status)) <= super::tick_rank(mapped.last_status.as_deref()))
        {
            continue;
        }
        let error = (status == "failed").then_some("WhatsApp reported that the message could not be delivered");
        match chatwoot.set_message_status(conversation, message, status, error).await {
            Ok(()) => {}
            Err(e) if e.failure() == Failure::NotFound => continue,
            Err(e) => return on_chatwoot_error(&e),
        }
        if let Err(e) = relay.writer.set_last_status(mapped.id, status).await {
            return store_failed(e);
        }
    }
    relay.receipts.relayed(ids, row_id);
    Outcome::Done
}

/// A Chatwoot failure as an outcome: wait and retry what can recover, halt on a refused token, record
/// the rest as failed.
pub(crate) fn on_chatwoot_error(error: &ChatwootError) -> Outcome {
    match error.failure() {
        Failure::Unauthorized | Failure::Forbidden => Outcome::Halt(format!(
            "Chatwoot rejected the API token — re-activate the integration with a valid chatwootApiToken. Detail: {}",
            error.detail()
        )),
        Failure::RateLimited | Failure::ServerError | Failure::Unreachable => {
            let after = match error {
                // Chatwoot may still be carrying the request out: give it that long again before the
                // replay looks for the result (by source_id) instead of repeating it.
                ChatwootError::OutcomeUnknown { waited, .. } => waited.saturating_mul(2),
                _ => error.retry_after().unwrap_or_default(),
            };
            Outcome::Retry { after, error: error.detail() }
        }
        Failure::NotFound | Failure::Invalid => Outcome::Failed(error.detail()),
    }
}

/// Records what a failed create means for its replay, and returns the outcome. A definite refusal
/// (429, 500, a validation) created nothing: the replay creates at once. A proxy's 502–504, or a 422 of no
/// known meaning (Chatwoot answers 422 for any exception, even one raised after the message was saved), is
/// ambiguous: the replay looks first. A timeout or a cut-off answer may still land: the replay waits for
/// it, then looks. `Too many messages` waits for Chatwoot's minute to pass; an unexplained 422 is retried
/// for [`RelayContext::unprocessable_give_up`], then fails, visibly.
async fn after_failed_create(
    db: &DatabaseConnection,
    relay: &RelayContext,
    mapping: &entity::message_map::Model,
    error: &ChatwootError,
) -> Outcome {
    let (state, outcome) = match (error, error.unprocessable()) {
        (ChatwootError::OutcomeUnknown { .. }, _) => return on_chatwoot_error(error),
        (_, Some(Unprocessable::Flooded)) => {
            (store::messages::PENDING, Outcome::Retry { after: Duration::from_secs(60), error: error.detail() })
        }
        (_, Some(Unprocessable::Unknown)) => {
            let trying_for = (chrono::Utc::now() - mapping.created_at).to_std().unwrap_or_default();
            let outcome = if trying_for >= relay.unprocessable_give_up {
                Outcome::Failed(format!(
                    "Chatwoot kept refusing the message for {} s (it answers 422 for any error of its own). Detail: {}",
                    trying_for.as_secs(),
                    error.detail()
                ))
            } else {
                Outcome::Retry { after: Duration::ZERO, error: error.detail() }
            };
            (store::messages::ATTEMPTED, outcome)
        }
        (ChatwootError::Status { status: 502..=504, .. }, _) => (store::messages::ATTEMPTED, on_chatwoot_error(error)),
        _ => (store::messages::PENDING, on_chatwoot_error(error)),
    };
    match store::messages::set_attempt(db, mapping.id, state, None).await {
        Ok(()) => outcome,
        Err(e) => store_failed(e),
    }
}

/// Chatwoot answered 404 where only a deleted inbox explains it (creating a contact or conversation in it).
fn inbox_gone(error: &ChatwootError) -> Outcome {
    Outcome::Halt(format!(
        "The Chatwoot inbox of this integration was deleted — re-activate the integration to create a new one. Detail: {}",
        error.detail()
    ))
}

/// Short-circuits a step: `Err(outcome)` ends processing with that outcome.
pub(crate) type Step<T> = Result<T, Outcome>;

/// The outcome of a finished sequence of steps (an early `Done` is a success too).
pub(crate) fn outcome_of(step: Step<()>) -> Outcome {
    match step {
        Ok(()) | Err(Outcome::Done) => Outcome::Done,
        Err(outcome) => outcome,
    }
}

pub(crate) fn store_failed(e: store::StoreError) -> Outcome {
    Outcome::Retry { after: Duration::from_secs(1), error: e.to_string() }
}

async fn relay_message(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    media: &MediaSource<'_>,
    message: &MessageExchange,
    replay: bool,
) -> Outcome {
    outcome_of(relay_message_steps(db, relay, chatwoot, media, message, replay).await)
}

async fn relay_message_steps(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    media: &MediaSource<'_>,
    message: &MessageExchange,
    replay: bool,
) -> Step<()> {
    if message.is_own_echo() {
        return Ok(());
    }
    let chat_kind = message.chat.kind.as_deref().unwrap_or("private");
    let chat_key = message.chat.key().unwrap_or_default();
    if chat_kind == "newsletter" || chat_key.ends_with("@newsletter") || chat_key.starts_with("status@") {
        return Ok(());
    }
    let is_group = chat_kind == "group" || chat_key.ends_with("@g.us");
    if is_group && relay.ignore_groups {
        return Ok(());
    }
    if message.id.is_empty() || chat_key.is_empty() {
        return Err(Outcome::Failed("message without id or chat".into()));
    }
    // A replay may find its message created already: then there is nothing to fetch or open. (A first
    // attempt cannot: its event was new, and `post_once` checks again anyway.)
    if replay
        && let Some(existing) = store::messages::find_by_wa_id(&relay.reader, &relay.integration_id, &message.id)
            .await
            .map_err(store_failed)?
        && existing.state == store::messages::CREATED
    {
        return Ok(());
    }

    let action = render(message, is_group);
    if let Action::Revoke(target) = action {
        return revoke(relay, chatwoot, &target).await;
    }
    let Action::Post(rendered) = action else { return Ok(()) };

    // The file, when the message carries one (fetched before anything is created, so that "not stored
    // yet" simply retries).
    let file = match &rendered.media_caption {
        Some(_) => media.fetch(message).await?,
        None => None,
    };
    let ryzeapi = media.relay.ryzeapi_client(media.http.clone());
    let mut chat = ensure_chat(db, relay, chatwoot, Some(&ryzeapi), message, &chat_key, is_group).await?;
    // A new chat's contact and conversation are made once, even when its person writes under both forms
    // at once (two queues): the second waits, then finds them.
    let _first_steps = match chat.contact_id.is_none() || chat.conversation_id.is_none() {
        true => {
            let guard = relay.chat_locks.lock(chat.id).await;
            chat = store::chats::find(db, chat.id).await.map_err(store_failed)?.unwrap_or(chat);
            Some(guard)
        }
        false => None,
    };
    let from_customer = message.direction != "outgoing";
    let mut party = message.chat.clone();
    if !is_group && from_customer {
        party.picture_url = message.sender.picture_url.clone().or(party.picture_url);
    }
    let chat = ensure_contact(db, relay, chatwoot, chat, &party).await?;
    let chat = match (is_group, from_customer) {
        (true, _) => {
            let subject = Naming::IfUnnamed(message.chat.name.as_deref());
            people::refresh_profile(db, relay, chatwoot, chat, subject, None).await
        }
        (false, true) => {
            let name = Naming::IfUnnamed(message.sender.name.as_deref());
            people::refresh_profile(db, relay, chatwoot, chat, name, party.picture_url.as_deref()).await
        }
        (false, false) => chat,
    };
    let attributes = reply_attributes(relay, rendered.reply_to.as_deref()).await?;
    let content = match (&file, &rendered.media_caption) {
        (Some(_), Some(caption)) => caption.as_str(),
        _ => rendered.content.as_str(),
    };
    let direction = if message.direction == "outgoing" { "outgoing" } else { "incoming" };
    let post =
        Post { wa_id: &message.id, direction, content, attributes, file: file.as_ref(), retrying: media.attempts > 0 };
    post_once(db, relay, chatwoot, &chat, post).await
}

/// `content_attributes` that thread a message to the one it quotes, reacts to or edits. The Chatwoot id
/// (`in_reply_to`) resolves on every version and for agents' replies, which have no `source_id`; before
/// 4.9 it is the only key Chatwoot keeps (`message_builder.rb#message_params`). The external id is kept
/// for Chatwoot's own look-up (`in_reply_to_message_builder.rb`) when the bridge does not know the message.
async fn reply_attributes(relay: &RelayContext, quoted: Option<&str>) -> Step<Map<String, Value>> {
    let mut attributes = Map::new();
    let Some(quoted) = quoted else { return Ok(attributes) };
    let mapped =
        store::messages::find_by_wa_id(&relay.reader, &relay.integration_id, quoted).await.map_err(store_failed)?;
    if let Some(id) = mapped.and_then(|m| m.chatwoot_message_id) {
        attributes.insert("in_reply_to".into(), json!(id));
    }
    attributes.insert("in_reply_to_external_id".into(), json!(format!("{SOURCE_PREFIX}{quoted}")));
    Ok(attributes)
}

/// One message to create in a chat's conversation.
pub(crate) struct Post<'a> {
    /// The WhatsApp id (or another unique key) the message is created under, once.
    pub wa_id: &'a str,
    pub direction: &'a str,
    pub content: &'a str,
    pub attributes: Map<String, Value>,
    pub file: Option<&'a MediaFile>,
    /// This event was tried before (an earlier outcome may be unknown).
    pub retrying: bool,
}

/// Creates the message in the chat's conversation exactly once: a `message_map` row is written first; a
/// replay of a creation whose outcome is unknown looks the message up by `source_id` before posting.
pub(crate) async fn post_once(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    chat: &chat::Model,
    post: Post<'_>,
) -> Step<()> {
    let (mut chat, mut conversation_id, was_resolved) =
        ensure_conversation(db, relay, chatwoot, chat, post.retrying).await?;
    let new_mapping = store::messages::NewMapping {
        integration_id: relay.integration_id.clone(),
        wa_id: post.wa_id.to_owned(),
        chat_id: chat.id,
        direction: post.direction.to_owned(),
        conversation_id,
    };
    let started = relay.writer.start_message(new_mapping).await.map_err(store_failed)?;
    let mapping = started.mapping;
    if mapping.state == store::messages::CREATED {
        return Ok(());
    }
    let source_id = format!("{SOURCE_PREFIX}{}", post.wa_id);
    // A replay of a message whose creation may have happened: look before creating again.
    if !started.fresh
        && let Some(previous_conversation) =
            mapping.conversation_id.filter(|_| mapping.state == store::messages::ATTEMPTED)
    {
        // The earlier call may still land (it timed out, or its process died mid-call): look only once it
        // no longer can, or the lookup could miss it and a second copy be made.
        if let Some(attempted_at) = mapping.attempted_at {
            settled(chatwoot, attempted_at, "waiting for an earlier attempt to settle")?;
        }
        // Nothing of the earlier attempt can be older than the mapping (a minute of slack for clocks).
        let since = mapping.created_at.timestamp() - 60;
        // If Chatwoot cannot be asked, do not guess: creating now could make a second copy. A conversation
        // that is gone took the earlier copy with it.
        match chatwoot.find_message_by_source_id(previous_conversation, &source_id, since).await {
            Ok(Some(found)) => {
                relay
                    .writer
                    .complete_message(mapping.id, found.id, previous_conversation)
                    .await
                    .map_err(store_failed)?;
                return Ok(());
            }
            Ok(None) => {}
            Err(e) if e.failure() == Failure::NotFound => {}
            Err(e) => return Err(on_chatwoot_error(&e)),
        }
    }
    if let Err(after) = relay.pacer.admit(conversation_id, std::time::Instant::now()) {
        return Err(Outcome::Later { after });
    }
    if !started.fresh {
        store::messages::mark_attempted(db, mapping.id, conversation_id).await.map_err(store_failed)?;
    }
    // Chatwoot renders Liquid in outgoing messages; text typed on the phone is shown as typed.
    let content = match post.direction {
        "outgoing" => std::borrow::Cow::Owned(liquid_literal(post.content)),
        _ => std::borrow::Cow::Borrowed(post.content),
    };
    let body = NewMessage {
        content: &content,
        message_type: post.direction,
        private: false,
        source_id: &source_id,
        content_attributes: post.attributes,
    };
    let create = |conversation_id: i64| {
        let (body, file) = (&body, post.file);
        async move {
            match file {
                Some(file) => chatwoot.create_message_with_file(conversation_id, body, &file.upload()).await,
                None => chatwoot.create_message(conversation_id, body).await,
            }
        }
    };
    let created = match create(conversation_id).await {
        Ok(created) => created,
        Err(e) if e.failure() == Failure::NotFound => {
            // The conversation was deleted in Chatwoot (perhaps with its contact): open a new one, try once
            // more. The deleted conversation took nothing of ours with it that a replay could find.
            chat = set_conversation(db, relay, chat.id, None).await?;
            let reopened = ensure_conversation(db, relay, chatwoot, &chat, false).await?;
            (chat, conversation_id) = (reopened.0, reopened.1);
            store::messages::mark_attempted(db, mapping.id, conversation_id).await.map_err(store_failed)?;
            match create(conversation_id).await {
                Ok(created) => created,
                Err(e) => return Err(after_failed_create(db, relay, &mapping, &e).await),
            }
        }
        Err(e) => return Err(after_failed_create(db, relay, &mapping, &e).await),
    };
    relay.writer.complete_message(mapping.id, created.id, conversation_id).await.map_err(store_failed)?;
    if was_resolved && post.direction == "incoming" {
        // Chatwoot reopens a resolved conversation on an incoming message.
        set_conversation(db, relay, chat.id, Some((conversation_id, "open"))).await?;
    }
    relay.live.messages_to_chatwoot.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The chat's Chatwoot contact (and contact_inbox), created once. A contact Chatwoot already has (same
/// phone or identifier, e.g. from another inbox) is linked instead.
pub(crate) async fn ensure_contact(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    chat: chat::Model,
    party: &Party,
) -> Step<chat::Model> {
    if chat.contact_id.is_some() {
        return Ok(chat);
    }
    let source_id = chat.chat_key.clone();
    let phone = (chat.kind == "private").then(|| identity::phone_number(&chat.chat_key)).flatten();
    let mut custom = Map::new();
    if let Some(jid) = &party.jid {
        custom.insert("whatsapp_jid".into(), json!(jid));
    }
    if let Some(lid) = &party.lid {
        custom.insert("whatsapp_lid".into(), json!(lid));
    }
    let new_contact = NewContact {
        inbox_id: relay.inbox_id,
        source_id: &source_id,
        name: &chat.name,
        phone_number: phone.as_deref(),
        identifier: &chat.chat_key,
        custom_attributes: Value::Object(custom),
        avatar_url: party.picture_url.as_deref().filter(|p| !p.is_empty()),
    };
    let contact_id = match chatwoot.create_contact(&new_contact).await {
        Ok(contact) => contact.id,
        Err(e) if e.failure() == Failure::ServerError || is_taken(&e) => {
            link_existing_contact(relay, chatwoot, &chat, phone.as_deref(), &e).await?
        }
        // Creating a contact finds only the inbox (`contacts_controller.rb#create`): a 404 means it is gone.
        Err(e) if e.failure() == Failure::NotFound => return Err(gone_or_retry(relay, chatwoot, &e).await),
        Err(e) => return Err(on_chatwoot_error(&e)),
    };
    let mut chat = store::chats::set_contact(db, chat.id, contact_id, &source_id).await.map_err(store_failed)?;
    if let Some(picture) = new_contact.avatar_url {
        chat = store::chats::set_profile(db, chat.id, &chat.name, Some(picture)).await.map_err(store_failed)?;
    }
    relay.live.chats.forget(|cached| cached.id == chat.id);
    Ok(chat)
}

/// Chatwoot's answer when the phone number or identifier already belongs to a contact of the account.
fn is_taken(error: &ChatwootError) -> bool {
    matches!(error, ChatwootError::Status { status: 422, message, .. } if message.contains("has already been taken"))
}

/// The contact Chatwoot already has for this chat, after a create was refused: the one the inbox links
/// to the chat's `source_id` (an earlier create that timed out, or a contact merged or edited by an
/// agent), else the one with the phone number or identifier, linked to the inbox now. A 500 from a create
/// is `RecordNotUnique` when the link exists (`contact_inbox_builder.rb` re-raises it for API inboxes),
/// else a passing failure.
async fn link_existing_contact(
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    chat: &chat::Model,
    phone: Option<&str>,
    refused: &ChatwootError,
) -> Step<i64> {
    let linked = || async {
        chatwoot.contact_by_inbox_source(relay.inbox_id, &chat.chat_key).await.map_err(|e| on_chatwoot_error(&e))
    };
    if let Some(contact) = linked().await? {
        return Ok(contact.id);
    }
    let ChatwootError::Status { status: 422, message, .. } = refused else { return Err(on_chatwoot_error(refused)) };
    let (attribute, value) = match phone {
        Some(phone) if message.contains("Phone") => ("phone_number", phone.trim_start_matches('+').to_owned()),
        _ => ("identifier", chat.chat_key.clone()),
    };
    let found = chatwoot.find_contacts(attribute, &value).await.map_err(|e| on_chatwoot_error(&e))?;
    let Some(contact) = found.first() else {
        return Err(Outcome::Failed(format!("Chatwoot says the contact exists ({message}) but does not find it")));
    };
    match chatwoot.create_contact_inbox(contact.id, relay.inbox_id, &chat.chat_key).await {
        Ok(()) => Ok(contact.id),
        Err(e) if e.failure() == Failure::ServerError => match linked().await? {
            // Linked meanwhile, to this contact or another one.
            Some(contact) => Ok(contact.id),
            // A 500 that keeps coming is no passing failure: say so instead of retrying for ever.
            None => Err(Outcome::Failed(format!(
                "Chatwoot cannot link contact {} to the inbox for {}. Detail: {}",
                contact.id,
                chat.chat_key,
                e.detail()
            ))),
        },
        Err(e) => Err(on_chatwoot_error(&e)),
    }
}

/// The conversation to post into: the chat's last one unless it is resolved (then `reopenResolved`
/// decides), else a new one. Returns the chat as it now is, the conversation, and whether it was resolved.
/// When `retrying`, a conversation an earlier, timed-out attempt may have created is looked for first (new
/// customers cost no extra call). A contact deleted in Chatwoot is created again (once per call); only a
/// deleted inbox halts.
pub(crate) async fn ensure_conversation(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    chat: &chat::Model,
    retrying: bool,
) -> Step<(chat::Model, i64, bool)> {
    if let Some(id) = chat.conversation_id {
        let resolved = chat.conversation_status.as_deref() == Some("resolved");
        // The status conversation receives notices even when resolved.
        if !resolved || relay.reopen_resolved || chat.kind == super::status::KIND {
            return Ok((chat.clone(), id, resolved));
        }
    }
    let mut chat = chat.clone();
    // An earlier call (this process's, or one of a process that died, was paused past its lease or handed
    // the integration over before the answer was stored) may have opened a conversation: wait until that
    // call can no longer land, then look before opening another.
    let retrying = match chat.conversation_attempted_at {
        Some(attempted_at) => {
            settled(chatwoot, attempted_at, "waiting for an earlier attempt to open the conversation to settle")?;
            true
        }
        None => retrying,
    };
    let mut contact_recreated = false;
    loop {
        let (Some(contact_id), Some(source_id)) = (chat.contact_id, chat.contact_source_id.clone()) else {
            return Err(Outcome::Failed("chat has no contact".into()));
        };
        store::chats::mark_conversation_attempted(db, chat.id).await.map_err(store_failed)?;
        relay.live.chats.forget(|cached| cached.id == chat.id);
        let conversation = match find_or_create_conversation(relay, chatwoot, contact_id, &source_id, retrying).await {
            Ok(conversation) => conversation,
            Err(e) if e.failure() == Failure::NotFound && !contact_recreated => {
                // The contact or the inbox is gone: only the inbox halts the integration.
                if !inbox_exists(relay, chatwoot).await? {
                    return Err(inbox_gone(&e));
                }
                tracing::info!(integration_id = %relay.integration_id, chat_id = chat.id, contact_id, "the Chatwoot contact is gone; creating it again");
                contact_recreated = true;
                let forgotten = store::chats::forget_contact(db, chat.id).await.map_err(store_failed)?;
                relay.live.chats.forget(|cached| cached.id == chat.id);
                chat = ensure_contact(db, relay, chatwoot, forgotten, &party_of(&chat)).await?;
                continue;
            }
            Err(e) if e.failure() == Failure::NotFound => return Err(gone_or_retry(relay, chatwoot, &e).await),
            Err(e) => return Err(on_chatwoot_error(&e)),
        };
        let chat = set_conversation(db, relay, chat.id, Some((conversation.id, conversation.status.as_str()))).await?;
        return Ok((chat, conversation.id, false));
    }
}

/// Whether a Chatwoot call started at `attempted_at` can no longer land (twice the call timeout has
/// passed); until then, a retry after the rest of that time, with `waiting` as its reason.
fn settled(chatwoot: &ChatwootClient, attempted_at: DateTime<Utc>, waiting: &str) -> Step<()> {
    let settle = chatwoot.timeout().saturating_mul(2);
    let elapsed = (chrono::Utc::now() - attempted_at).to_std().unwrap_or_default();
    if elapsed < settle {
        return Err(Outcome::Retry { after: settle - elapsed, error: waiting.to_owned() });
    }
    Ok(())
}

/// The contact's open conversation in this inbox that an earlier attempt may have created (when
/// `retrying`), else a new one.
async fn find_or_create_conversation(
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    contact_id: i64,
    source_id: &str,
    retrying: bool,
) -> Result<crate::chatwoot::dto::Conversation, ChatwootError> {
    if retrying {
        let existing = chatwoot.contact_conversations(contact_id).await?;
        let usable =
            existing.into_iter().filter(|c| c.inbox_id == Some(relay.inbox_id)).find(|c| c.status != "resolved");
        if let Some(conversation) = usable {
            return Ok(conversation);
        }
    }
    let request = NewConversation {
        inbox_id: relay.inbox_id,
        contact_id,
        source_id,
        status: relay.start_as_pending.then_some("pending"),
    };
    chatwoot.create_conversation(&request).await
}

/// Whether the integration's inbox still exists in Chatwoot.
async fn inbox_exists(relay: &RelayContext, chatwoot: &ChatwootClient) -> Step<bool> {
    match chatwoot.get_inbox(relay.inbox_id).await {
        Ok(_) => Ok(true),
        Err(e) if e.failure() == Failure::NotFound && !matches!(e, ChatwootError::Unexpected { .. }) => Ok(false),
        Err(e) => Err(on_chatwoot_error(&e)),
    }
}

/// A 404 whose cause the bridge cannot repair: a halt if the inbox is gone, else a retry (never a drop).
async fn gone_or_retry(relay: &RelayContext, chatwoot: &ChatwootClient, error: &ChatwootError) -> Outcome {
    match inbox_exists(relay, chatwoot).await {
        Ok(false) => inbox_gone(error),
        Ok(true) => Outcome::Retry { after: Duration::ZERO, error: error.detail() },
        Err(outcome) => outcome,
    }
}

/// The chat as a WhatsApp party, for a contact created again from what the bridge remembers.
fn party_of(chat: &chat::Model) -> Party {
    let key = chat.chat_key.clone();
    if chat.kind == super::status::KIND {
        Party::default()
    } else if key.ends_with("@lid") {
        Party { lid: Some(key), ..Party::default() }
    } else {
        Party { jid: Some(key), ..Party::default() }
    }
}

/// Records the chat's conversation (`None`: it has none) and drops the chat from the relay's cache, which
/// must never be older than the row.
async fn set_conversation(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chat_id: i64,
    conversation: Option<(i64, &str)>,
) -> Step<chat::Model> {
    let chat = store::chats::set_conversation(db, chat_id, conversation).await.map_err(store_failed)?;
    relay.live.chats.forget(|cached| cached.id == chat_id);
    Ok(chat)
}

/// A WhatsApp "delete for everyone": delete the Chatwoot message it maps to, if any.
async fn revoke(relay: &RelayContext, chatwoot: &ChatwootClient, target: &str) -> Step<()> {
    let Some(mapped) =
        store::messages::find_by_wa_id(&relay.reader, &relay.integration_id, target).await.map_err(store_failed)?
    else {
        return Ok(());
    };
    let (Some(conversation), Some(message)) = (mapped.conversation_id, mapped.chatwoot_message_id) else {
        return Ok(());
    };
    if mapped.last_status.as_deref() == Some(super::REVOKED) {
        return Ok(());
    }
    match chatwoot.delete_message(conversation, message).await {
        Ok(()) => {}
        Err(e) if e.failure() == Failure::NotFound => {}
        Err(e) => return Err(on_chatwoot_error(&e)),
    }
    // Chatwoot's `message_updated` for this delete must not be taken for an agent's delete (and revoked on
    // WhatsApp a second time): the webhook skips revoked mappings, and so does the delete job.
    relay.writer.set_last_status(mapped.id, super::REVOKED).await.map_err(store_failed)
}

/// Where a message's media comes from: inline base64, a plain `s3Url`, or RyzeAPI's base64 endpoint.
pub(crate) struct MediaSource<'a> {
    pub http: &'a awc::Client,
    pub relay: &'a RelayContext,
    /// Attempts so far for this event: after [`MEDIA_ATTEMPTS`] the message is posted without its file.
    pub attempts: i32,
}

/// Attempts to get a message's media before posting it as a labelled placeholder instead.
const MEDIA_ATTEMPTS: i32 = 6;
const MAX_MEDIA_BYTES: usize = 64 * 1024 * 1024;

/// A downloaded file.
pub(crate) struct MediaFile {
    bytes: Vec<u8>,
    mime: String,
    file_name: String,
    voice: bool,
}

impl MediaFile {
    pub(crate) fn new(bytes: Vec<u8>, mime: &str, file_name: &str, voice: bool) -> Self {
        Self { bytes, mime: mime.to_owned(), file_name: file_name.to_owned(), voice }
    }

    pub(crate) fn upload(&self) -> crate::chatwoot::Upload<'_> {
        crate::chatwoot::Upload {
            file_name: &self.file_name,
            content_type: &self.mime,
            bytes: &self.bytes,
            voice: self.voice,
        }
    }
}

impl MediaSource<'_> {
    /// The message's file; `Ok(None)` when it cannot be had (then the labelled placeholder is posted).
    async fn fetch(&self, message: &MessageExchange) -> Step<Option<MediaFile>> {
        use base64::Engine as _;
        let media = message.body.get("media").cloned().unwrap_or(Value::Null);
        let text = |keys: &[&str]| {
            keys.iter().find_map(|k| media.get(*k).and_then(Value::as_str)).filter(|s| !s.is_empty()).map(str::to_owned)
        };
        let mut mime = text(&["mimeType", "mimetype", "mime_type"]);
        let bytes = if let Some(inline) = text(&["base64"]) {
            let data = inline.split_once("base64,").map_or(inline.as_str(), |(_, d)| d);
            base64::engine::general_purpose::STANDARD.decode(data.trim()).ok()
        } else {
            None
        };
        let bytes = match bytes {
            Some(bytes) => Some(bytes),
            None => match text(&["s3Url"]) {
                Some(url) => self.download(&url).await,
                None => None,
            },
        };
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => {
                let ryzeapi = self.relay.ryzeapi_client(self.http.clone());
                match ryzeapi.fetch_media(&message.id).await {
                    Ok((bytes, reported)) => {
                        mime = mime.or(reported);
                        bytes
                    }
                    Err(e @ crate::ryzeapi::client::SendError::Retryable { .. })
                        if self.attempts + 1 < MEDIA_ATTEMPTS =>
                    {
                        return Err(Outcome::Retry { after: Duration::ZERO, error: format!("media: {e}") });
                    }
                    Err(e) => {
                        tracing::warn!(integration_id = %self.relay.integration_id, error = %e, "media unavailable; posting a placeholder");
                        return Ok(None);
                    }
                }
            }
        };
        if bytes.is_empty() || bytes.len() > MAX_MEDIA_BYTES {
            return Ok(None);
        }
        let mime = mime
            .map(|m| m.split(';').next().unwrap_or(&m).trim().to_ascii_lowercase())
            // Chatwoot previews only the types `file_type_helper.rb#image_file?` lists: `image/jpg` is not
            // one of them and would become a download.
            .map(|m| if m == "image/jpg" { "image/jpeg".to_owned() } else { m })
            .unwrap_or_else(|| default_mime(&message.kind).to_owned());
        let voice = message.kind == "ptt" || media.get("isVoiceNote").and_then(Value::as_bool) == Some(true);
        let file_name = text(&["fileName", "filename", "file_name"])
            .map(|n| n.chars().filter(|c| !matches!(c, '/' | '\\' | '\0')).collect::<String>())
            .filter(|n| !n.trim_start_matches('.').is_empty())
            .unwrap_or_else(|| format!("{}.{}", message.kind, extension(&mime)));
        Ok(Some(MediaFile { bytes, mime, file_name, voice }))
    }

    async fn download(&self, url: &str) -> Option<Vec<u8>> {
        let mut response = self.http.get(url).timeout(self.relay.call_timeout).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.body().limit(MAX_MEDIA_BYTES).await.ok().map(|b| b.to_vec())
    }
}

fn default_mime(kind: &str) -> &'static str {
    match kind {
        "image" => "image/jpeg",
        "sticker" => "image/webp",
        "video" | "ptv" => "video/mp4",
        "audio" | "ptt" => "audio/ogg",
        _ => "application/octet-stream",
    }
}

fn extension(mime: &str) -> &'static str {
    match mime {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "video/mp4" => "mp4",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/mp4" => "m4a",
        "application/pdf" => "pdf",
        _ => "bin",
    }
}
