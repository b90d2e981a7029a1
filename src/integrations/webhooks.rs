//! Accepting Chatwoot's inbox webhook (contract §5): authenticate, decide, store, answer at once.
//!
//! Nothing here talks to WhatsApp: relevant events become `outbound_jobs` rows and the integration's
//! actor is told; conversation status changes are recorded for the conversation choice of the inbound
//! relay; typing is passed on best-effort. Unknown id or wrong secret is a 404 that says nothing more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{bus, open_sealed, sealed};
use crate::chatwoot::ChatwootTarget;
use crate::chatwoot::webhook::{WebhookEvent, signature_is_valid};
use crate::error::AppError;
use crate::secret::{Secret, constant_time_eq};
use crate::state::{Services, Shared};
use crate::store;
use crate::store::jobs::{JobKind, NewJob, WorkState};
use crate::store::messages::{Direction, Tick};

/// The signature headers Chatwoot ≥ 4.13 sends.
pub struct Signature<'a> {
    pub signature: Option<&'a str>,
    pub timestamp: Option<&'a str>,
}

/// An integration's webhook credentials, opened.
pub(crate) struct WebhookKeys {
    /// The secret in the webhook URL's path.
    secret: Secret,
    /// The inbox's signing secret (Chatwoot ≥ 4.13), when it has one.
    signing: Option<Secret>,
}

/// Opened webhook credentials by integration id, so that a delivery costs neither a database read nor a
/// decryption. Only activation and deactivation change them, and both call [`KeyCache::forget`]. Holds
/// an entry per integration that received a webhook (ids that do not exist are never kept).
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, Arc<WebhookKeys>>>,
    /// Bumped by every `forget`: credentials read before it must not be kept after it.
    generation: AtomicU64,
    /// Per integration, the last read of its signing secret from Chatwoot: when, and what it found. The
    /// async lock makes deliveries that arrive together (Chatwoot sends from 10 threads) wait for one read
    /// and share its answer.
    refreshed: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Refreshed>>>>>,
}

/// A read of the inbox's signing secret: when, and the secret (`None`: none, or the read failed).
type Refreshed = (Instant, Option<Secret>);

/// At most one re-read of an inbox's signing secret per integration in this time: a bad signature costs
/// a Chatwoot call only that often, whoever sends it.
const SECRET_REFRESH_EVERY: Duration = Duration::from_secs(60);

impl KeyCache {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, Arc<WebhookKeys>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops what is known of `id` (its credentials changed or it is gone).
    pub fn forget(&self, id: &str) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(id);
    }

    /// Drops every cached credential (another replica may have changed some while this one was not
    /// listening).
    pub fn forget_all(&self) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// The slot of `id`'s last signing-secret read.
    fn refresh_slot(&self, id: &str) -> Arc<tokio::sync::Mutex<Option<Refreshed>>> {
        let mut refreshed = self.refreshed.lock().unwrap_or_else(PoisonError::into_inner);
        refreshed.entry(id.to_owned()).or_default().clone()
    }

    /// Keeps `keys`, read from the database when the generation was `read_at`, unless something was
    /// forgotten since (then they may be stale; the next delivery reads again).
    fn keep(&self, id: &str, keys: Arc<WebhookKeys>, read_at: u64) {
        let mut entries = self.entries();
        if self.generation.load(Ordering::Acquire) == read_at {
            entries.insert(id.to_owned(), keys);
        }
    }
}

/// The webhook credentials of `id`, from the cache or the database; `None` when there is no such
/// integration.
async fn keys_of(shared: &Shared, services: &Services, id: &str) -> Result<Option<Arc<WebhookKeys>>, AppError> {
    let cache = &shared.webhook_keys;
    if let Some(keys) = cache.entries().get(id) {
        return Ok(Some(keys.clone()));
    }
    let read_at = cache.generation.load(Ordering::Acquire);
    let Some(integration) = store::integrations::find(&services.reader, id).await? else { return Ok(None) };
    let secret =
        open_sealed(&services.sealer, &integration.webhook_secret_sealed, &integration.id, sealed::WEBHOOK_SECRET)?;
    let signing = integration
        .signing_secret_sealed
        .as_ref()
        .map(|sealed_secret| open_sealed(&services.sealer, sealed_secret, &integration.id, sealed::SIGNING_SECRET))
        .transpose()?;
    let keys = Arc::new(WebhookKeys { secret, signing });
    cache.keep(id, keys.clone(), read_at);
    Ok(Some(keys))
}

/// Authenticates and stores one webhook delivery. `Ok` means: stored (or irrelevant) — answer 200.
pub async fn accept(
    shared: &Shared,
    http: &awc::Client,
    id: &str,
    secret: &str,
    signature: Signature<'_>,
    body: &[u8],
) -> Result<(), AppError> {
    let services = shared.services()?;
    let keys = keys_of(shared, services, id).await?.ok_or(AppError::WebhookNotFound)?;
    if !constant_time_eq(secret, keys.secret.expose()) {
        return Err(AppError::WebhookNotFound);
    }
    let now = chrono::Utc::now().timestamp();
    let verifies = |signing: &Secret| match (signature.signature, signature.timestamp) {
        (Some(sig), Some(ts)) => signature_is_valid(signing.expose(), ts, body, sig, now),
        _ => false,
    };
    // A signed delivery the stored secret does not verify (an admin reset the secret, 4.13+), or the first
    // signed one (Chatwoot was upgraded to 4.13 after the activation): read the inbox's secret again.
    let stale = match &keys.signing {
        Some(signing) => !verifies(signing),
        None => signature.signature.is_some(),
    };
    if stale {
        let current = refresh_signing_secret(shared, services, http, id).await;
        match (&keys.signing, current) {
            (_, Some(current)) if verifies(&current) => {}
            // Still unsigned: nothing to hold the delivery against.
            (None, None) => {}
            _ => return Err(AppError::BadSignature),
        }
    }
    let event = WebhookEvent::parse(body).map_err(|e| AppError::InvalidBody(format!("webhook: {e}")))?;
    handle(shared, id, event, body).await
}

/// Whether a message is young enough for an agent's Retry (Chatwoot offers it within a day).
fn is_recent(created_at: Option<chrono::DateTime<chrono::Utc>>) -> bool {
    created_at.is_some_and(|at| chrono::Utc::now() - at < chrono::Duration::hours(24))
}

/// The inbox's current signing secret, read from Chatwoot (with the stored admin token) at most once per
/// [`SECRET_REFRESH_EVERY`] per integration, and kept when it changed; within that time the last read's
/// answer. `None` when the inbox has none or Chatwoot could not be asked.
async fn refresh_signing_secret(shared: &Shared, services: &Services, http: &awc::Client, id: &str) -> Option<Secret> {
    let slot = shared.webhook_keys.refresh_slot(id);
    let mut last = slot.lock().await;
    if let Some((at, secret)) = last.as_ref()
        && at.elapsed() < SECRET_REFRESH_EVERY
    {
        return secret.clone();
    }
    let current = read_signing_secret(shared, services, http, id).await;
    *last = Some((Instant::now(), current.clone()));
    current
}

async fn read_signing_secret(shared: &Shared, services: &Services, http: &awc::Client, id: &str) -> Option<Secret> {
    let integration = store::integrations::find(&services.db, id).await.ok()??;
    let token = open_sealed(&services.sealer, &integration.chatwoot_token_sealed, id, sealed::CHATWOOT_TOKEN).ok()?;
    let target = ChatwootTarget {
        base_url: integration.chatwoot_base_url.clone(),
        account_id: integration.chatwoot_account_id,
        token,
    };
    let inbox = match super::chatwoot_client(shared, http, target, None).get_inbox(integration.inbox_id).await {
        Ok(inbox) => inbox,
        Err(error) => {
            tracing::warn!(integration_id = %id, %error, "could not read the inbox's signing secret again");
            return None;
        }
    };
    let current = Secret::new(inbox.secret.filter(|s| !s.is_empty())?);
    let stored = integration
        .signing_secret_sealed
        .as_ref()
        .and_then(|s| open_sealed(&services.sealer, s, id, sealed::SIGNING_SECRET).ok());
    if stored.as_ref().is_none_or(|s| !constant_time_eq(s.expose(), current.expose())) {
        let resealed = services.sealer.seal(&current, id, sealed::SIGNING_SECRET).ok()?;
        if let Err(error) = store::integrations::set_signing_secret(&services.db, id, resealed).await {
            tracing::warn!(integration_id = %id, %error, "could not store the inbox's new signing secret");
        } else {
            tracing::info!(integration_id = %id, "the inbox's webhook signing secret changed in Chatwoot; using the new one");
        }
        shared.webhook_keys.forget(id);
    }
    Some(current)
}

async fn handle(shared: &Shared, id: &str, event: WebhookEvent, body: &[u8]) -> Result<(), AppError> {
    let services = shared.services()?;
    let db = &services.db;
    match event.event.as_str() {
        "message_created" | "message_updated" => {
            let Some(message) = event.message() else { return Ok(()) };
            let kind = if event.event == "message_created" {
                // Chatwoot builds the payload when its job runs: a message deleted meanwhile arrives as
                // created *and* deleted, and must not be sent.
                if !message.is_for_whatsapp() || message.is_deleted() {
                    return Ok(());
                }
                JobKind::Send
            } else if message.is_deleted() {
                // Only what this number sent can be revoked: an agent deleting a customer's message, or
                // Chatwoot's echo of a customer's own revoke, never deletes anything on WhatsApp.
                let mapped = store::messages::find_by_chatwoot_id(db, id, message.id).await?;
                if !mapped.is_some_and(|m| m.direction == Direction::Outgoing && m.last_status != Some(Tick::Revoked)) {
                    return Ok(());
                }
                JobKind::Delete
            } else if message.has_external_error() && message.is_for_whatsapp() {
                // Chatwoot marked the reply failed on its own (its webhook timed out, say): if the bridge
                // sends it anyway, the tick goes back to `sent` once it is out. The bridge's own `failed`
                // tick comes here too; its job finds nothing sent and does nothing.
                match store::jobs::latest_send(db, id, message.id).await? {
                    // One per send attempt (a later Retry that times out again gets its own).
                    Some(job) if job.state != WorkState::Failed => JobKind::TickSent(job.id),
                    _ => return Ok(()),
                }
            } else if !message.has_external_error() && message.is_for_whatsapp() {
                // An agent's retry: only for a message the bridge failed, and only once per failure.
                match store::jobs::latest_send(db, id, message.id).await? {
                    Some(job) if job.state == WorkState::Failed => {
                        JobKind::Retry(store::jobs::count_retries(db, id, message.id).await? + 1)
                    }
                    // The original webhook never reached the bridge (it was down and Chatwoot gave up):
                    // the agent's retry is the first word of this message — send it. Not for a message
                    // the bridge sent long ago, whose job retention removed: Chatwoot updates old
                    // messages too (a contact merge touches every moved message), and Retry is offered
                    // only within a day of a message's creation.
                    None if is_recent(message.created_at)
                        && store::messages::find_by_chatwoot_id(db, id, message.id).await?.is_none() =>
                    {
                        JobKind::Send
                    }
                    _ => return Ok(()),
                }
            } else {
                return Ok(());
            };
            let job = NewJob {
                integration_id: id.to_owned(),
                chatwoot_message_id: message.id,
                kind,
                conversation_id: message.conversation_id,
                payload: String::from_utf8_lossy(body).into_owned(),
            };
            if let Some(job_id) = services.writers.of(id).store_job(job).await? {
                let signal = bus::Signal::Job {
                    integration_id: id.to_owned(),
                    job_id,
                    conversation_id: message.conversation_id,
                    chatwoot_message_id: message.id,
                };
                bus::publish(shared, signal).await;
            }
            Ok(())
        }
        "conversation_status_changed" | "conversation_updated" | "conversation_opened" | "conversation_resolved" => {
            if let Some((conversation, status)) = event.conversation_status() {
                store::chats::set_conversation_status(db, id, conversation, &status).await?;
                let signal =
                    bus::Signal::ConversationChanged { integration_id: id.to_owned(), conversation_id: conversation };
                bus::publish(shared, signal).await;
            }
            Ok(())
        }
        "conversation_typing_on" | "conversation_typing_off" => {
            if let Some((conversation, on, false)) = event.typing() {
                let signal = bus::Signal::Typing { integration_id: id.to_owned(), conversation_id: conversation, on };
                bus::publish(shared, signal).await;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
