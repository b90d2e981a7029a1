//! Accepting Chatwoot's inbox webhook (contract §5): authenticate, decide, store, answer at once.
//!
//! Nothing here talks to WhatsApp: relevant events become `outbound_jobs` rows and the integration's
//! actor is told; conversation status changes are recorded for the conversation choice of the inbound
//! relay; typing is passed on best-effort. Unknown id or wrong secret is a 404 that says nothing more.

use entity::integration;

use super::{manager, open_sealed, sealed};
use crate::chatwoot::webhook::{WebhookEvent, signature_is_valid};
use crate::error::AppError;
use crate::secret::constant_time_eq;
use crate::state::Shared;
use crate::store;
use crate::store::jobs::{FAILED, NewJob};

/// The signature headers Chatwoot ≥ 4.13 sends.
pub struct Signature<'a> {
    pub signature: Option<&'a str>,
    pub timestamp: Option<&'a str>,
}

/// Authenticates and stores one webhook delivery. `Ok` means: stored (or irrelevant) — answer 200.
pub async fn accept(
    shared: &Shared,
    id: &str,
    secret: &str,
    signature: Signature<'_>,
    body: &[u8],
) -> Result<(), AppError> {
    let services = shared.services()?;
    let integration = store::integrations::find(&services.reader, id).await?.ok_or(AppError::WebhookNotFound)?;
    let expected =
        open_sealed(&services.sealer, &integration.webhook_secret_sealed, &integration.id, sealed::WEBHOOK_SECRET)?;
    if !constant_time_eq(secret, expected.expose()) {
        return Err(AppError::WebhookNotFound);
    }
    if let Some(sealed_secret) = &integration.signing_secret_sealed {
        let signing = open_sealed(&services.sealer, sealed_secret, &integration.id, sealed::SIGNING_SECRET)?;
        let (Some(sig), Some(ts)) = (signature.signature, signature.timestamp) else {
            return Err(AppError::BadSignature);
        };
        if !signature_is_valid(signing.expose(), ts, body, sig, chrono::Utc::now().timestamp()) {
            return Err(AppError::BadSignature);
        }
    }
    let event = WebhookEvent::parse(body).map_err(|e| AppError::InvalidBody(format!("webhook: {e}")))?;
    handle(shared, &integration, event, body).await
}

async fn handle(
    shared: &Shared,
    integration: &integration::Model,
    event: WebhookEvent,
    body: &[u8],
) -> Result<(), AppError> {
    let db = &shared.services()?.db;
    let id = &integration.id;
    match event.event.as_str() {
        "message_created" | "message_updated" => {
            let Some(message) = event.message() else { return Ok(()) };
            let kind = if event.event == "message_created" {
                if !message.is_for_whatsapp() {
                    return Ok(());
                }
                "send".to_owned()
            } else if message.is_deleted() {
                if store::messages::find_by_chatwoot_id(db, id, message.id).await?.is_none() {
                    return Ok(());
                }
                "delete".to_owned()
            } else if message.has_empty_attributes() && message.is_for_whatsapp() {
                // An agent's retry: only for a message the bridge failed, and only once per failure.
                match store::jobs::latest_send(db, id, message.id).await? {
                    Some(job) if job.state == FAILED => {
                        let retries = store::jobs::count_kind_prefix(db, id, message.id, "retry-").await?;
                        format!("retry-{}", retries + 1)
                    }
                    // The original webhook never reached the bridge (it was down and Chatwoot gave up):
                    // the agent's retry is the first word of this message — send it.
                    None => "send".to_owned(),
                    _ => return Ok(()),
                }
            } else {
                return Ok(());
            };
            let job = NewJob {
                integration_id: id.clone(),
                chatwoot_message_id: message.id,
                kind,
                conversation_id: message.conversation_id,
                payload: String::from_utf8_lossy(body).into_owned(),
            };
            if let Some(job_id) = shared.services()?.writer.store_job(job).await?
                && let Some(manager) = shared.manager()
            {
                manager.do_send(manager::QueueJob {
                    integration_id: id.clone(),
                    job_id,
                    conversation_id: message.conversation_id,
                });
            }
            Ok(())
        }
        "conversation_status_changed" | "conversation_updated" | "conversation_opened" | "conversation_resolved" => {
            if let Some((conversation, status)) = event.conversation_status() {
                store::chats::set_conversation_status(db, id, conversation, &status).await?;
            }
            Ok(())
        }
        "conversation_typing_on" | "conversation_typing_off" => {
            if let (Some((conversation, on, false)), Some(manager)) = (event.typing(), shared.manager()) {
                manager.do_send(manager::AgentTyping { integration_id: id.clone(), conversation_id: conversation, on });
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
