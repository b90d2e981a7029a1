//! Chatwoot webhook jobs → WhatsApp through RyzeAPI's REST API (contract §4, §5), with honest ticks.
//!
//! A `send` (or `retry-N`) job sends the agent's text, or each attachment as media (text as the caption
//! of the first), records the WhatsApp id ↔ Chatwoot id mapping and marks the customer's new messages
//! read. It sets no `sent` tick: Chatwoot creates the message `sent` (and its Retry sets `sent` again), so
//! the send costs Chatwoot nothing; a `tick-sent-N` job sets it back only where Chatwoot marked the reply
//! failed on its own. Parts already accepted are remembered on the job, so a replay resumes after them.
//! Retryable failures wait and try again (up to [`MAX_ATTEMPTS`] while the RyzeAPI link is up; without
//! limit while RyzeAPI is down altogether); a final failure sets the `failed` tick with the reason in plain
//! words. A `delete` job revokes the message on WhatsApp (only messages this number sent).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use entity::outbound_job;
use sea_orm::DatabaseConnection;

use super::Outcome;
use super::RelayContext;
use super::format::{markdown_to_whatsapp, normalize_agent_text};
use super::status;
use super::step::{Step, on_chatwoot_error, outcome_of, store_failed};
use crate::chatwoot::governor::Priority;
use crate::chatwoot::webhook::{WebhookAttachment, WebhookEvent, WebhookMessage};
use crate::chatwoot::{ChatwootClient, Failure};
use crate::live::LinkState;
use crate::ryzeapi::client::{Media, RyzeApiClient, SendError};
use crate::ryzeapi::event::canonical_jid;
use crate::store;
use crate::store::chats::ChatKind;
use crate::store::jobs::WorkState;
use crate::store::messages::{Direction, Tick};
use crate::telemetry::{Direction as Flow, Finished, Metrics};
use ryze_wire::keys::{JobKind, MessageKey};

/// Attempts before a retryable failure becomes final (with the default delays: about four minutes).
pub const MAX_ATTEMPTS: i32 = 8;
/// Largest attachment forwarded to WhatsApp.
const MAX_ATTACHMENT_BYTES: usize = 64 * 1024 * 1024;

/// Processes the outbound job `job_id` and records the outcome.
pub async fn process(relay: Arc<RelayContext>, http: Option<awc::Client>, job_id: i64) -> Outcome {
    let db = &relay.db;
    let job = match store::jobs::find(&relay.reader, job_id).await {
        Ok(Some(job)) if job.state == WorkState::Pending => job,
        Ok(_) => return Outcome::Done,
        Err(e) => return store_failed(e),
    };
    tracing::Span::current().record("chatwoot_message_id", job.chatwoot_message_id);
    tracing::Span::current().record("conversation_id", job.conversation_id);
    let Some(http) = http else {
        return Outcome::Retry { after: Duration::from_secs(1), error: "no HTTP client".into() };
    };
    // Never started before: no attempt counted, no error recorded, no part sent.
    if job.attempts == 0 && job.last_error.is_empty() && job.parts_sent == 0 && job.sending_at.is_none() {
        relay.metrics.observe_queue_wait(Flow::ToWhatsapp, job.created_at);
    }
    let chatwoot = relay.chatwoot_client(http.clone());
    let ryzeapi = relay.ryzeapi_client(http);
    let message = WebhookEvent::parse(job.payload.as_bytes()).ok().and_then(|e| e.message());
    let Some(message) = message else {
        return finish(&relay, &relay.metrics, &job, Outcome::Failed("stored webhook is unreadable".into())).await;
    };
    let status_chat =
        match store::chats::find_by_conversation(&relay.reader, &relay.integration_id, message.conversation_id).await {
            Ok(chat) => chat.filter(status::is_status_chat),
            Err(e) => return store_failed(e),
        };
    // An unknown kind (none is written) is sent, as before the kinds were typed.
    let kind = JobKind::parse(&job.kind);
    let result = match (&status_chat, kind) {
        // Agents' messages in the status conversation are commands for the bridge, never WhatsApp sends.
        (Some(chat), _) => {
            let text = message.content.clone().unwrap_or_default();
            if kind == Some(JobKind::Send) {
                status::command(db, &relay, &chatwoot, chat, message.id, &text).await
            } else {
                Ok(())
            }
        }
        (None, Some(JobKind::Delete)) => revoke(db, &relay, &ryzeapi, &message).await,
        (None, Some(JobKind::TickSent(_))) => {
            let chatwoot = chatwoot.clone().with_priority(Priority::Background);
            sent_tick(&relay, &chatwoot, &job, &message).await
        }
        (None, _) => send(db, &relay, &chatwoot, &ryzeapi, &job, &message).await,
    };
    let outcome = outcome_of(result);
    if let Outcome::Later { .. } = outcome {
        return outcome;
    }
    // A retryable failure that keeps failing becomes final — but not while RyzeAPI is unreachable as a
    // whole (its link is down too): then replies wait, however long the outage, and go out in order.
    let ryzeapi_down = relay.live.snapshot().state != LinkState::Connected;
    let outcome = match outcome {
        Outcome::Retry { error, .. } if !ryzeapi_down && job.attempts + 1 >= MAX_ATTEMPTS => {
            // Out of attempts: say it in words the agent can act on.
            Outcome::Failed(SendError::Retryable { detail: error, after: None }.reason())
        }
        Outcome::Retry { after, error } => {
            let attempts = if ryzeapi_down { job.attempts } else { job.attempts + 1 };
            let backoff = crate::retry::after_attempts(relay.retry, attempts);
            if let Err(e) = store::jobs::record_attempt(db, job.id, attempts, &error).await {
                return store_failed(e);
            }
            return Outcome::Retry { after: after.max(backoff), error };
        }
        other => other,
    };
    if let Outcome::Failed(reason) = &outcome
        && !matches!(kind, Some(JobKind::Delete | JobKind::TickSent(_)))
        && relay.ticks()
    {
        match chatwoot
            .clone()
            .with_priority(Priority::Background)
            .set_message_status(message.conversation_id, message.id, Tick::Failed.as_str(), Some(reason))
            .await
        {
            Ok(()) => {}
            Err(e) if e.failure() == Failure::NotFound => {}
            Err(e) => return on_chatwoot_error(&e),
        }
    }
    finish(&relay, &relay.metrics, &job, outcome).await
}

async fn finish(relay: &RelayContext, metrics: &Metrics, job: &outbound_job::Model, outcome: Outcome) -> Outcome {
    let (state, error) = match &outcome {
        Outcome::Failed(reason) => (WorkState::Failed, reason.as_str()),
        _ => (WorkState::Done, ""),
    };
    match relay.writer.job_finished(job.id, state, error).await {
        Ok(()) => {
            match &outcome {
                Outcome::Done => metrics.observe_message(Flow::ToWhatsapp, Finished::Done, job.created_at),
                Outcome::Failed(_) => metrics.observe_message(Flow::ToWhatsapp, Finished::Failed, job.created_at),
                _ => {}
            }
            outcome
        }
        Err(e) => store_failed(e),
    }
}

fn send_failed(error: SendError) -> Outcome {
    match error {
        SendError::Retryable { detail, after } => Outcome::Retry { after: after.unwrap_or_default(), error: detail },
        SendError::Unanswered { detail } => Outcome::Retry { after: Duration::ZERO, error: detail },
        SendError::Final { reason } => Outcome::Failed(reason),
    }
}

/// Where the conversation's messages go: the chat the bridge knows, else the contact_inbox source id
/// (a JID the bridge set), else the contact's phone number.
async fn destination(db: &DatabaseConnection, relay: &RelayContext, message: &WebhookMessage) -> Step<(i64, String)> {
    if let Some(chat) =
        store::chats::find_by_conversation(&relay.reader, &relay.integration_id, message.conversation_id)
            .await
            .map_err(store_failed)?
    {
        return Ok((chat.id, chat.chat_key));
    }
    let jid = message
        .contact_source_id
        .as_deref()
        .filter(|s| s.contains('@'))
        .map(canonical_jid)
        .or_else(|| message.contact_phone.as_deref().map(|p| canonical_jid(p.trim_start_matches('+'))))
        .ok_or_else(|| Outcome::Failed("This conversation has no WhatsApp number".into()))?;
    let aliases = vec![jid.clone()];
    if let Some((chat, _)) =
        store::chats::find_by_aliases(db, &relay.integration_id, &aliases).await.map_err(store_failed)?
    {
        return Ok((chat.id, chat.chat_key));
    }
    let kind = if jid.ends_with("@g.us") { ChatKind::Group } else { ChatKind::Private };
    let chat = store::chats::create(db, &relay.integration_id, &jid, kind, "", &aliases).await.map_err(store_failed)?;
    Ok((chat.id, chat.chat_key))
}

/// RyzeAPI's `number`: digits for a phone JID, the whole JID otherwise (groups, LIDs).
fn number_of(jid: &str) -> String {
    jid.strip_suffix("@s.whatsapp.net").map_or_else(|| jid.to_owned(), str::to_owned)
}

async fn send(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    ryzeapi: &RyzeApiClient,
    job: &outbound_job::Model,
    message: &WebhookMessage,
) -> Step<()> {
    let (chat_id, jid) = destination(db, relay, message).await?;
    let number = number_of(&jid);
    let reply_to = match message.in_reply_to() {
        Some(quoted) => store::messages::find_by_chatwoot_id(&relay.reader, &relay.integration_id, quoted)
            .await
            .map_err(store_failed)?
            .map(|m| m.wa_id),
        None => None,
    };
    let mut text =
        message.content.as_deref().map(|c| markdown_to_whatsapp(&normalize_agent_text(c))).unwrap_or_default();
    if relay.sign_messages
        && let Some(agent) = message.sender_name.as_deref().filter(|n| !n.is_empty())
    {
        text = if text.is_empty() { format!("*{agent}:*") } else { format!("*{agent}:*\n{text}") };
    }
    // An earlier attempt sent everything and failed after that (setting the tick): only the tick is left.
    let resumed;
    if message.attachments.is_empty() {
        if text.trim().is_empty() {
            return Err(Outcome::Failed("The message is empty".into()));
        }
        // A replay after RyzeAPI accepted the text (the mapping is written right then) must not send it again.
        let already_sent = store::messages::find_by_chatwoot_id(&relay.reader, &relay.integration_id, message.id)
            .await
            .map_err(store_failed)?
            .filter(|m| m.direction == Direction::Outgoing);
        resumed = already_sent.is_some();
        if already_sent.is_none() {
            let part = Part { job, chat_id, caption: &text, media: false, sending_since: job.sending_at };
            let wa_id =
                send_once(db, relay, ryzeapi, &part, ryzeapi.send_text(&number, &text, reply_to.as_deref())).await?;
            relay
                .writer
                .record_outgoing(outgoing(relay, &wa_id, Some(message.id), message, chat_id))
                .await
                .map_err(store_failed)?;
        }
    } else {
        let already = usize::try_from(job.parts_sent).unwrap_or(0);
        resumed = already >= message.attachments.len();
        for (index, attachment) in message.attachments.iter().enumerate().skip(already) {
            let caption = (index == 0).then_some(text.as_str());
            // A retried part may have gone out already, its echo tells; only the first part has a caption.
            let sending_since = job.sending_at.filter(|_| index == already);
            let part = Part { job, chat_id, caption: caption.unwrap_or_default(), media: true, sending_since };
            let file = download_attachment(chatwoot, attachment).await?;
            let media = file.media(caption);
            let wa_id =
                send_once(db, relay, ryzeapi, &part, ryzeapi.send_media(&number, &media, reply_to.as_deref())).await?;
            let mapped = (index == 0).then_some(message.id);
            relay
                .writer
                .record_outgoing(outgoing(relay, &wa_id, mapped, message, chat_id))
                .await
                .map_err(store_failed)?;
            let parts = i32::try_from(index + 1).unwrap_or(i32::MAX);
            relay.writer.job_parts_sent(job.id, parts).await.map_err(store_failed)?;
        }
    }
    if !resumed {
        relay.live.messages_to_whatsapp.fetch_add(1, Ordering::Relaxed);
    }
    // No `sent` tick: Chatwoot creates an agent's message as `sent` already (and its Retry sets `sent`
    // again), so the send itself costs Chatwoot nothing. Only a reply Chatwoot marked failed on its own
    // while the bridge sent it needs one (a `tick-sent` job, see the webhook).
    // The agent answered: the customer's messages are read — unless they were marked read already (a
    // second reply to the same message costs RyzeAPI nothing more).
    if let Ok(Some(last)) = store::messages::last_incoming(&relay.reader, chat_id).await
        && relay.read_marks.is_new(chat_id, &last)
    {
        let sender = if jid.ends_with("@g.us") { group_author(relay, &last).await } else { None };
        match ryzeapi.mark_read(&last, &number, sender.as_deref()).await {
            Ok(()) => relay.read_marks.marked(chat_id, &last),
            Err(e) => {
                tracing::debug!(integration_id = %relay.integration_id, error = %e, "could not mark the chat read")
            }
        }
    }
    Ok(())
}

/// The customer message each chat was last marked read up to, so that a reply marks only what is new.
/// Memory only: after a restart one reply per chat marks again, which changes nothing on WhatsApp.
#[derive(Debug, Default)]
pub struct ReadMarks {
    last: std::sync::Mutex<std::collections::HashMap<i64, String>>,
}

/// Chats remembered before the map starts over (it is only a saving).
const READ_MARKS_KEPT: usize = 100_000;

impl ReadMarks {
    fn is_new(&self, chat_id: i64, wa_id: &str) -> bool {
        let last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        last.get(&chat_id).is_none_or(|marked| marked != wa_id)
    }

    fn marked(&self, chat_id: i64, wa_id: &str) {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.len() >= READ_MARKS_KEPT {
            last.clear();
        }
        last.insert(chat_id, wa_id.to_owned());
    }
}

/// The author of a received group message (RyzeAPI's mark-read needs it in groups), from its stored event.
async fn group_author(relay: &RelayContext, wa_id: &str) -> Option<String> {
    let key = MessageKey::message(wa_id).to_string();
    let payload = store::events::payload_by_message_key(&relay.reader, &relay.integration_id, &key).await.ok()??;
    let envelope = crate::ryzeapi::event::Envelope::parse(&payload).ok()?;
    crate::ryzeapi::event::MessageExchange::from_data(&envelope.data).sender.jid
}

/// A `tick-sent` job: Chatwoot marked the reply failed by itself (its webhook timed out, say) while the
/// bridge sent it: once it is out, the tick goes back to `sent` — unless nothing was sent, or a receipt has
/// moved it past `sent` meanwhile (ticks never go backwards). A passing failure retries the job; a failure
/// that does not pass, or the last attempt, leaves the tick as it is (logged).
async fn sent_tick(
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    job: &outbound_job::Model,
    message: &WebhookMessage,
) -> Step<()> {
    if !relay.ticks() {
        return Ok(());
    }
    // A receipt for this message may be setting its tick right now: one at a time, each reading the last.
    let _tick = relay.tick_locks.lock(message.id).await;
    let mapped = store::messages::find_by_chatwoot_id(&relay.reader, &relay.integration_id, message.id)
        .await
        .map_err(store_failed)?;
    let Some(mapped) = mapped.filter(|m| m.direction == Direction::Outgoing) else { return Ok(()) };
    if mapped.last_status > Some(Tick::Sent) {
        return Ok(());
    }
    // The bridge's own `failed` (a message whose later parts could not be sent) stands: its send job, ahead
    // of this one in the conversation's queue, ended failed.
    let last_send =
        store::jobs::latest_send(&relay.reader, &relay.integration_id, message.id).await.map_err(store_failed)?;
    if last_send.is_some_and(|send| send.state == WorkState::Failed) {
        return Ok(());
    }
    let error = match chatwoot.set_message_status(message.conversation_id, message.id, Tick::Sent.as_str(), None).await
    {
        Ok(()) => return relay.writer.set_last_status(mapped.id, Tick::Sent).await.map_err(store_failed),
        Err(e) if e.failure() == Failure::NotFound => return Ok(()),
        Err(e) => e,
    };
    match on_chatwoot_error(&error) {
        retry @ Outcome::Retry { .. } if job.attempts + 1 < MAX_ATTEMPTS => Err(retry),
        halt @ Outcome::Halt(_) => Err(halt),
        _ => {
            tracing::warn!(integration_id = %relay.integration_id, chatwoot_message_id = message.id, %error, "the sent tick could not be set; the message was sent");
            Ok(())
        }
    }
}

/// The mapping of a sent part: `chatwoot_id` only on the first part of a message.
fn outgoing(
    relay: &RelayContext,
    wa_id: &str,
    chatwoot_id: Option<i64>,
    message: &WebhookMessage,
    chat_id: i64,
) -> store::messages::Outgoing {
    store::messages::Outgoing {
        integration_id: relay.integration_id.clone(),
        wa_id: wa_id.to_owned(),
        chatwoot_message_id: chatwoot_id,
        conversation_id: message.conversation_id,
        chat_id,
    }
}

/// One part of a reply, as WhatsApp will echo it.
struct Part<'a> {
    job: &'a outbound_job::Model,
    chat_id: i64,
    /// The text, or the media's caption.
    caption: &'a str,
    media: bool,
    /// An earlier send of this part started then, with no known outcome.
    sending_since: Option<chrono::DateTime<chrono::Utc>>,
}

/// Time for WhatsApp's echo of a send to reach the bridge (and be stored) after RyzeAPI accepted it.
const ECHO_GRACE: Duration = Duration::from_secs(2);

/// Sends one part through RyzeAPI **once**. The start of the send is recorded first; if its outcome
/// stays unknown (no answer, or a crash before the answer was recorded), the replay does not repeat it
/// blindly: once the first send can no longer be in flight, it looks among the stored events of the chat
/// for WhatsApp's echo of it (`source: "chatwoot"`, same text, not mapped to another reply) and, if
/// found, takes its id instead of sending again.
async fn send_once(
    db: &DatabaseConnection,
    relay: &RelayContext,
    ryzeapi: &RyzeApiClient,
    part: &Part<'_>,
    send: impl Future<Output = Result<String, SendError>>,
) -> Step<String> {
    if let Some(since) = part.sending_since
        && let Some(wa_id) = earlier_send(db, relay, ryzeapi, part, since).await?
    {
        return Ok(wa_id);
    }
    relay.writer.job_sending(part.job.id, Some(chrono::Utc::now())).await.map_err(store_failed)?;
    match send.await {
        Ok(wa_id) => Ok(wa_id),
        Err(SendError::Unanswered { detail }) => Err(Outcome::Retry { after: Duration::ZERO, error: detail }),
        Err(error) => {
            // RyzeAPI answered: nothing went out, a repeat needs no look first.
            relay.writer.job_sending(part.job.id, None).await.map_err(store_failed)?;
            Err(send_failed(error))
        }
    }
}

/// The WhatsApp id of an earlier send of `part` (started at `since`) that went out, found by its echo;
/// `Ok(None)` when it did not go out. Waits (as a retry) while the earlier send could still land or its
/// echo could still arrive.
async fn earlier_send(
    db: &DatabaseConnection,
    relay: &RelayContext,
    ryzeapi: &RyzeApiClient,
    part: &Part<'_>,
    since: chrono::DateTime<chrono::Utc>,
) -> Step<Option<String>> {
    if relay.live.snapshot().state != LinkState::Connected {
        return Err(Outcome::Retry {
            after: Duration::from_secs(1),
            error: "waiting for the RyzeAPI link to look for the echo of an earlier send".into(),
        });
    }
    let settle = ryzeapi.timeout().saturating_mul(2) + ECHO_GRACE;
    let elapsed = (chrono::Utc::now() - since).to_std().unwrap_or_default();
    if elapsed < settle {
        return Err(Outcome::Retry { after: settle - elapsed, error: "waiting for an earlier send to settle".into() });
    }
    // Clocks: the echo is stamped when stored, after the send started; a little slack costs nothing.
    let from = since - chrono::Duration::seconds(1);
    let exchanges = store::events::exchanges_in_chat_since(db, &relay.integration_id, part.chat_id, from)
        .await
        .map_err(store_failed)?;
    for payload in exchanges {
        let Ok(envelope) = crate::ryzeapi::event::Envelope::parse(&payload) else { continue };
        let echo = crate::ryzeapi::event::MessageExchange::from_data(&envelope.data);
        let same_kind = (echo.kind != "text" && echo.kind != "extended_text") == part.media;
        if !echo.is_own_echo() || !same_kind || echo.text.as_deref().unwrap_or_default().trim() != part.caption.trim() {
            continue;
        }
        let mapped = store::messages::find_by_wa_id(db, &relay.integration_id, &echo.id).await.map_err(store_failed)?;
        if mapped.is_none() {
            tracing::info!(integration_id = %relay.integration_id, wa_id = %echo.id, "an earlier send went out; not sending again");
            return Ok(Some(echo.id));
        }
    }
    Ok(None)
}

/// One attachment, downloaded from Chatwoot and ready for RyzeAPI.
struct Attachment {
    media_type: &'static str,
    data_url: String,
    mime: String,
    file_name: String,
    voice: bool,
}

impl Attachment {
    fn media<'a>(&'a self, caption: Option<&'a str>) -> Media<'a> {
        Media {
            media_type: self.media_type,
            media: &self.data_url,
            mime_type: &self.mime,
            file_name: &self.file_name,
            caption,
            voice: self.voice,
        }
    }
}

/// Downloads one attachment from Chatwoot (retrying the brief 404 right after an upload).
async fn download_attachment(chatwoot: &ChatwootClient, attachment: &WebhookAttachment) -> Step<Attachment> {
    let mut tries = 0;
    let (bytes, served_type) = loop {
        match chatwoot.download(&attachment.data_url, MAX_ATTACHMENT_BYTES).await {
            Ok(downloaded) => break downloaded,
            Err(e) if e.failure() == Failure::NotFound && tries < 3 => {
                tries += 1;
                actix_web::rt::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) if e.failure() == Failure::NotFound => {
                return Err(Outcome::Failed("The attachment could not be downloaded from Chatwoot".into()));
            }
            Err(e) => return Err(on_chatwoot_error(&e)),
        }
    };
    let mime = attachment
        .content_type
        .clone()
        .or(served_type)
        .map(|m| m.split(';').next().unwrap_or(&m).trim().to_owned())
        .unwrap_or_else(|| "application/octet-stream".into());
    let (media_type, voice) = match attachment.file_type.as_str() {
        "image" => ("image", false),
        "video" => ("video", false),
        "audio" => ("audio", true),
        _ => ("document", false),
    };
    let file_name = file_name_of(&attachment.data_url, attachment.extension.as_deref());
    let data_url = format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(&bytes));
    Ok(Attachment { media_type, data_url, mime, file_name, voice })
}

/// The file name at the end of a `data_url` (percent-decoded), without path tricks.
fn file_name_of(data_url: &str, extension: Option<&str>) -> String {
    let last = data_url.split('?').next().unwrap_or(data_url).rsplit('/').next().unwrap_or_default();
    let decoded = url::form_urlencoded::parse(format!("n={last}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let safe: String = decoded.chars().filter(|c| !matches!(c, '/' | '\\' | '\0')).collect();
    let safe = safe.trim_start_matches('.').to_owned();
    if safe.is_empty() { format!("file.{}", extension.unwrap_or("bin")) } else { safe }
}

/// The agent deleted a message the bridge had sent: delete it on WhatsApp too.
async fn revoke(
    db: &DatabaseConnection,
    relay: &RelayContext,
    ryzeapi: &RyzeApiClient,
    message: &WebhookMessage,
) -> Step<()> {
    let Some(mapped) =
        store::messages::find_by_chatwoot_id(db, &relay.integration_id, message.id).await.map_err(store_failed)?
    else {
        return Ok(());
    };
    // Only what this number sent; a mapping revoked already (WhatsApp's own revoke, or a repeat) is done.
    if mapped.direction != Direction::Outgoing || mapped.last_status == Some(Tick::Revoked) {
        return Ok(());
    }
    ryzeapi.revoke(&mapped.wa_id).await.map_err(send_failed)?;
    relay.writer.set_last_status(mapped.id, Tick::Revoked).await.map_err(store_failed)
}

/// An agent's typing indicator → WhatsApp presence (best-effort: failures are only logged).
pub async fn typing(relay: Arc<RelayContext>, http: Option<awc::Client>, conversation_id: i64, on: bool) {
    let Some(http) = http else { return };
    let Ok(Some(chat)) = store::chats::find_by_conversation(&relay.db, &relay.integration_id, conversation_id).await
    else {
        return;
    };
    let ryzeapi = relay.ryzeapi_client(http);
    let state = if on { "typing" } else { "paused" };
    if let Err(e) = ryzeapi.presence(&number_of(&chat.chat_key), state).await {
        tracing::debug!(integration_id = %relay.integration_id, error = %e, "typing presence failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_file_names() {
        assert_eq!(number_of("5511999998888@s.whatsapp.net"), "5511999998888");
        assert_eq!(number_of("120363@g.us"), "120363@g.us");
        assert_eq!(
            file_name_of("http://cw/rails/active_storage/blobs/redirect/abc/relat%C3%B3rio%20final.pdf", Some("pdf")),
            "relatório final.pdf"
        );
        assert_eq!(file_name_of("http://cw/x/..%2F..%2Fetc%2Fpasswd", None), "etcpasswd");
        assert_eq!(file_name_of("http://cw/x/", Some("jpg")), "file.jpg");
    }
}
