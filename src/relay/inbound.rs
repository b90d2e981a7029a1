//! Stored RyzeAPI events → Chatwoot messages, call notices, ticks and deletes.
//!
//! Per message, in the chat's serialized path: find the chat by any of its aliases (or create it), make
//! sure it has a contact and a usable conversation (`conversation`; remembered in the database: a known
//! chat with an open conversation costs exactly one Chatwoot call), record the message in `message_map`
//! *before* creating it, create it with `source_id = "WAID:<id>"`, then remember the Chatwoot id. A replay
//! finds the mapping: done, or — if the crash came between the Chatwoot call and the bookkeeping — it
//! looks the message up by `source_id` instead of creating it twice.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::chat;
use sea_orm::DatabaseConnection;
use serde_json::{Map, Value, json};

use super::RelayContext;
use super::conversation::{ensure_contact, ensure_conversation, set_conversation};
use super::format::liquid_literal;
use super::media::{MediaFile, MediaSource};
use super::people::{self, Naming, ensure_chat};
use super::step::{Outcome, Step, on_chatwoot_error, outcome_of, settled, store_failed};
use crate::chatwoot::dto::NewMessage;
use crate::chatwoot::governor::Priority;
use crate::chatwoot::{ChatwootClient, ChatwootError, Failure, Unprocessable};
use crate::ryzeapi::event::{Envelope, MessageExchange, Party};
use crate::store;
use crate::store::events::WorkState;
use crate::store::messages::{Direction, MappingState, Tick};
use crate::telemetry::{Direction as Flow, Finished};
use ryze_wire::keys::{self, BridgeKey, MessageKey};

/// What a WhatsApp message becomes in Chatwoot: pure, in the wire crate (`ryze_wire::render`).
pub use ryze_wire::render::{Action, Rendered, render};

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
            Ok(Some(row)) if row.state == WorkState::Pending => (row.payload, row.attempts, true, row.received_at),
            Ok(_) => return Outcome::Done,
            Err(e) => return Outcome::Retry { after: Duration::from_secs(1), error: e.to_string() },
        },
    };
    let Some(http) = http else {
        return Outcome::Retry { after: Duration::from_secs(1), error: "no HTTP client".into() };
    };
    if attempts == 0 {
        relay.metrics.observe_queue_wait(Flow::ToChatwoot, received_at);
    }
    // A message that just arrived goes before a replay of stored ones (after an outage, say).
    let priority = if replay { Priority::Backlog } else { Priority::Live };
    let chatwoot = relay.chatwoot_client(http.clone()).with_priority(priority);
    let media = MediaSource { http: &http, relay: &relay, attempts };
    let outcome = match Envelope::parse(&payload) {
        Ok(envelope) => {
            // Every log line of this event's relay names its WhatsApp message (the actor's span has the field).
            if let Some(key) = envelope.routing().message_key {
                let wa_id = MessageKey::parse(&key).map_or(key.as_str(), |k| k.wa_id);
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
        Outcome::Done => relay.metrics.observe_message(Flow::ToChatwoot, Finished::Done, received_at),
        Outcome::Failed(_) => relay.metrics.observe_message(Flow::ToChatwoot, Finished::Failed, received_at),
        _ => {}
    }
    match outcome {
        Outcome::Retry { after, error } => {
            Outcome::Retry { after: after.max(crate::retry::after_attempts(relay.retry, attempts)), error }
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
        let wa_id = BridgeKey::Call(row_id).to_string();
        post_once(
            db,
            relay,
            chatwoot,
            &chat,
            Post {
                wa_id: &wa_id,
                direction: Direction::Incoming,
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
    let receipt = super::receipts::Receipt::of_tick(status);
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
        // Ticks only move forward; `failed` is apart from their order.
        if mapped.direction != Direction::Outgoing || (status != Tick::Failed && Some(status) <= mapped.last_status) {
            continue;
        }
        let error = (status == Tick::Failed).then_some("WhatsApp reported that the message could not be delivered");
        match chatwoot.set_message_status(conversation, message, status.as_str(), error).await {
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
        && existing.state == MappingState::Created
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
    let direction = if message.direction == "outgoing" { Direction::Outgoing } else { Direction::Incoming };
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
    attributes.insert("in_reply_to_external_id".into(), json!(keys::source_id(quoted)));
    Ok(attributes)
}

/// One message to create in a chat's conversation.
pub(super) struct Post<'a> {
    /// The WhatsApp id (or another unique key) the message is created under, once.
    pub wa_id: &'a str,
    pub direction: Direction,
    pub content: &'a str,
    pub attributes: Map<String, Value>,
    pub file: Option<&'a MediaFile>,
    /// This event was tried before (an earlier outcome may be unknown).
    pub retrying: bool,
}

/// Creates the message in the chat's conversation exactly once: a `message_map` row is written first; a
/// replay of a creation whose outcome is unknown looks the message up by `source_id` before posting.
pub(super) async fn post_once(
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
        direction: post.direction,
        conversation_id,
    };
    let started = relay.writer.start_message(new_mapping).await.map_err(store_failed)?;
    let mapping = started.mapping;
    if mapping.state == MappingState::Created {
        return Ok(());
    }
    let source_id = keys::source_id(post.wa_id);
    // A replay of a message whose creation may have happened: look before creating again.
    if !started.fresh
        && let Some(previous_conversation) =
            mapping.conversation_id.filter(|_| mapping.state == MappingState::Attempted)
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
        Direction::Outgoing => std::borrow::Cow::Owned(liquid_literal(post.content)),
        Direction::Incoming => std::borrow::Cow::Borrowed(post.content),
    };
    let body = NewMessage {
        content: &content,
        message_type: post.direction.as_str(),
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
    if was_resolved && post.direction == Direction::Incoming {
        // Chatwoot reopens a resolved conversation on an incoming message.
        set_conversation(db, relay, chat.id, Some((conversation_id, "open"))).await?;
    }
    relay.live.messages_to_chatwoot.fetch_add(1, Ordering::Relaxed);
    Ok(())
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
            (MappingState::Pending, Outcome::Retry { after: Duration::from_secs(60), error: error.detail() })
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
            (MappingState::Attempted, outcome)
        }
        (ChatwootError::Status { status: 502..=504, .. }, _) => (MappingState::Attempted, on_chatwoot_error(error)),
        _ => (MappingState::Pending, on_chatwoot_error(error)),
    };
    match store::messages::set_attempt(db, mapping.id, state, None).await {
        Ok(()) => outcome,
        Err(e) => store_failed(e),
    }
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
    if mapped.last_status == Some(Tick::Revoked) {
        return Ok(());
    }
    match chatwoot.delete_message(conversation, message).await {
        Ok(()) => {}
        Err(e) if e.failure() == Failure::NotFound => {}
        Err(e) => return Err(on_chatwoot_error(&e)),
    }
    // Chatwoot's `message_updated` for this delete must not be taken for an agent's delete (and revoked on
    // WhatsApp a second time): the webhook skips revoked mappings, and so does the delete job.
    relay.writer.set_last_status(mapped.id, Tick::Revoked).await.map_err(store_failed)
}
