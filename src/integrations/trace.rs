//! "Why didn't this message arrive?": every stage of one message, in either direction, with times, and
//! where it stopped and why in plain words (`GET /v1/integrations/{id}/trace`).
//!
//! Built from what the message left in the database (its events, mapping and jobs: durable, kept for the
//! retention window) and from the integration's journal of recent attempts (in memory on the replica that
//! runs it: each run of the work, how it ended, the error, the wait before the next). Payloads, tokens and
//! secrets are never part of it.

use chrono::{DateTime, Utc};
use entity::{inbound_event, message_map, outbound_job};
use serde::Serialize;

use super::view::timestamp;
use crate::error::AppError;
use crate::live::{Attempt, WorkRef};
use crate::state::Shared;
use crate::store;
use crate::store::events::WorkState;
use crate::store::messages::Direction;
use ryze_wire::keys::{JobKind, MessageClass, MessageKey};

/// What the trace is asked about.
#[derive(Debug, Clone)]
pub enum Subject {
    /// A WhatsApp message id (a customer's message, or one the bridge sent).
    WhatsApp(String),
    /// A Chatwoot message id (an agent's reply, or a message the bridge created).
    Chatwoot(i64),
}

#[derive(Debug, Serialize)]
pub struct Trace {
    pub integration_id: String,
    /// `to_chatwoot` or `to_whatsapp` (a message the bridge has no record of is a 404 with what to check).
    pub direction: &'static str,
    /// Where the message is now, in plain words.
    pub summary: String,
    /// Every stage, oldest first.
    pub stages: Vec<Stage>,
    pub whatsapp_ids: Vec<String>,
    pub chatwoot_message_id: Option<i64>,
    pub conversation_id: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Stage {
    pub at: String,
    pub stage: &'static str,
    pub detail: String,
    #[serde(skip)]
    sort: DateTime<Utc>,
}

fn stage(at: DateTime<Utc>, stage: &'static str, detail: impl Into<String>) -> Stage {
    Stage { at: timestamp_ms(at), stage, detail: detail.into(), sort: at }
}

fn timestamp_ms(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The trace of `subject` in integration `id` (404 if the integration does not exist or has no record of
/// the message; the latter says what to check).
pub async fn trace(shared: &Shared, id: &str, subject: &Subject) -> Result<Trace, AppError> {
    let services = shared.services()?;
    let model = store::integrations::find(&services.reader, id).await?.ok_or(AppError::IntegrationNotFound)?;
    let db = &services.reader;
    let journal = shared.live.get(&model.id);
    let attempts = |work: WorkRef| journal.as_ref().map(|live| live.journal.of(work)).unwrap_or_default();

    let (events, mappings, jobs) = match subject {
        Subject::WhatsApp(wa_id) => {
            let events = store::trace::events_about(db, &model.id, wa_id).await?;
            let mappings = store::trace::mappings_by_wa_id(db, &model.id, wa_id).await?;
            let mut jobs = Vec::new();
            for cw in mappings.iter().filter_map(|m| m.chatwoot_message_id) {
                jobs.extend(store::trace::jobs_about(db, &model.id, cw).await?);
            }
            (events, mappings, jobs)
        }
        Subject::Chatwoot(cw) => {
            let mappings = store::trace::mappings_by_chatwoot_id(db, &model.id, *cw).await?;
            let jobs = store::trace::jobs_about(db, &model.id, *cw).await?;
            let mut events = Vec::new();
            for wa_id in mappings.iter().map(|m| m.wa_id.clone()) {
                events.extend(store::trace::events_about(db, &model.id, &wa_id).await?);
            }
            (events, mappings, jobs)
        }
    };
    // A message relayed from WhatsApp has events; an agent's reply has jobs (its mappings are the parts sent).
    let direction = if !jobs.is_empty() {
        "to_whatsapp"
    } else if !events.is_empty() || !mappings.is_empty() {
        "to_chatwoot"
    } else {
        "unknown"
    };
    let sent_by_bridge = |m: &message_map::Model| direction == "to_whatsapp" && m.direction == Direction::Outgoing;

    let mut stages = Vec::new();
    let mut summary = None;
    for event in &events {
        event_stages(&mut stages, event, &attempts(WorkRef::Event(event.id)));
        if summary.is_none()
            || event
                .message_key
                .as_deref()
                .and_then(MessageKey::parse)
                .is_some_and(|k| k.class == MessageClass::Message)
        {
            summary = Some(event_summary(db, &model.id, event).await?);
        }
    }
    for mapping in &mappings {
        mapping_stages(&mut stages, mapping, sent_by_bridge(mapping));
    }
    for job in &jobs {
        job_stages(&mut stages, job, &attempts(WorkRef::Job(job.id)));
    }
    // The latest send (a retry supersedes the send it retries) says where the reply is.
    if let Some(latest) = jobs.iter().rfind(|j| JobKind::parse(&j.kind).is_some_and(JobKind::sends)) {
        summary = Some(job_summary(db, &model.id, latest, &mappings).await?);
    }
    stages.sort_by_key(|s| s.sort);
    let retention_days = shared.settings.retention.as_secs() / 86_400;
    if direction == "unknown" {
        return Err(AppError::MessageNotFound(match subject {
            Subject::WhatsApp(_) => format!(
                "The bridge has no record of this WhatsApp message: RyzeAPI did not deliver it on the link (check \
                 that the instance is connected and the message was not filtered, e.g. a group with ignoreGroups), \
                 or it is older than the retention window ({retention_days} days)."
            ),
            Subject::Chatwoot(_) => format!(
                "The bridge has no record of this Chatwoot message: its webhook did not reach the bridge (a private \
                 note, a message of another inbox, or a webhook Chatwoot could not deliver — it then shows the \
                 message as failed), or it is older than the retention window ({retention_days} days)."
            ),
        }));
    }
    // Mappings alone: relayed, and its events or jobs already purged.
    let summary = summary.unwrap_or_else(|| {
        "The bridge relayed this message (its ids are below); the record of the earlier stages is no longer kept."
            .to_owned()
    });
    let chatwoot_message_id = mappings.iter().find_map(|m| m.chatwoot_message_id).or(match subject {
        Subject::Chatwoot(cw) => Some(*cw),
        Subject::WhatsApp(_) => None,
    });
    Ok(Trace {
        integration_id: model.id,
        direction,
        summary,
        stages,
        whatsapp_ids: mappings.iter().map(|m| m.wa_id.clone()).collect(),
        chatwoot_message_id,
        conversation_id: mappings
            .iter()
            .find_map(|m| m.conversation_id)
            .or_else(|| jobs.first().map(|j| j.conversation_id)),
    })
}

fn attempt_stages(stages: &mut Vec<Stage>, attempts: &[Attempt], what: &str) {
    for (n, attempt) in attempts.iter().enumerate() {
        let wait = attempt.next_in.map(|w| format!("; next try in {:.1} s", w.as_secs_f64())).unwrap_or_default();
        let took = (attempt.ended - attempt.started).num_milliseconds();
        let detail = match (&attempt.outcome, &attempt.error) {
            (&"later", _) => format!("{what}: run {} paced (Chatwoot's per-conversation limit){wait}", n + 1),
            (outcome, Some(error)) => format!("{what}: run {} ended `{outcome}` after {took} ms: {error}{wait}", n + 1),
            (outcome, None) => format!("{what}: run {} ended `{outcome}` after {took} ms{wait}", n + 1),
        };
        stages.push(stage(attempt.ended, "attempt", detail));
    }
}

fn event_stages(stages: &mut Vec<Stage>, event: &inbound_event::Model, attempts: &[Attempt]) {
    let id = event.event_id.as_deref().map(|e| format!(" (event id {e})")).unwrap_or_default();
    stages.push(stage(
        event.received_at,
        "received",
        format!("`{}` received on the RyzeAPI link{id}, stored, then acknowledged", event.kind),
    ));
    attempt_stages(stages, attempts, "relay to Chatwoot");
    match (event.state, event.processed_at) {
        (WorkState::Done, Some(at)) => stages.push(stage(at, "processed", "relayed; nothing left to do")),
        (WorkState::Failed, at) => stages.push(stage(
            at.unwrap_or(event.received_at),
            "failed",
            format!("given up after {} attempts: {}", event.attempts, event.last_error),
        )),
        _ => {}
    }
}

fn mapping_stages(stages: &mut Vec<Stage>, mapping: &message_map::Model, sent_by_bridge: bool) {
    let conversation = mapping.conversation_id.map(|c| format!(" in conversation {c}")).unwrap_or_default();
    match sent_by_bridge {
        false => {
            stages.push(stage(mapping.created_at, "recorded", "the Chatwoot message is about to be created"));
            if let Some(at) = mapping.attempted_at {
                stages.push(stage(at, "creating", format!("creating the Chatwoot message{conversation}")));
            }
            if let Some(cw) = mapping.chatwoot_message_id {
                stages.push(stage(
                    mapping.attempted_at.unwrap_or(mapping.created_at),
                    "created",
                    format!("created in Chatwoot as message {cw}{conversation}"),
                ));
            }
        }
        true => stages.push(stage(
            mapping.created_at,
            "sent",
            format!("accepted by RyzeAPI as WhatsApp message {}", mapping.wa_id),
        )),
    }
    if let Some(status) = &mapping.last_status {
        stages.push(stage(
            mapping.attempted_at.unwrap_or(mapping.created_at),
            "tick",
            format!("last tick set: `{}`", status.as_str()),
        ));
    }
}

fn job_stages(stages: &mut Vec<Stage>, job: &outbound_job::Model, attempts: &[Attempt]) {
    stages.push(stage(
        job.created_at,
        "received",
        format!(
            "Chatwoot webhook for message {} stored as a `{}` job, then acknowledged",
            job.chatwoot_message_id, job.kind
        ),
    ));
    if let Some(at) = job.sending_at {
        stages.push(stage(at, "sending", "sending to RyzeAPI (a repeat first checks that this send did not go out)"));
    }
    attempt_stages(stages, attempts, &format!("`{}` job", job.kind));
    if job.parts_sent > 0 {
        stages.push(stage(
            job.processed_at.unwrap_or(job.created_at),
            "parts",
            format!("{} part(s) accepted by RyzeAPI", job.parts_sent),
        ));
    }
    match (job.state, job.processed_at) {
        (WorkState::Done, Some(at)) => stages.push(stage(at, "processed", format!("`{}` done", job.kind))),
        (WorkState::Failed, at) => stages.push(stage(
            at.unwrap_or(job.created_at),
            "failed",
            format!("`{}` failed after {} attempts: {}", job.kind, job.attempts, job.last_error),
        )),
        _ => {}
    }
}

async fn event_summary(
    db: &sea_orm::DatabaseConnection,
    integration_id: &str,
    event: &inbound_event::Model,
) -> Result<String, AppError> {
    Ok(match event.state {
        WorkState::Done => "Relayed to Chatwoot.".to_owned(),
        WorkState::Failed => format!(
            "Not relayed: given up after {} attempts. Last error: {}",
            event.attempts,
            if event.last_error.is_empty() { "none recorded" } else { &event.last_error }
        ),
        _ => {
            let ahead = store::trace::pending_before_event(db, integration_id, &event.chat_key, event.id).await?;
            let retry =
                event.next_attempt_at.map(|at| format!(" Next attempt at {}.", timestamp(at))).unwrap_or_default();
            let error =
                if event.last_error.is_empty() { String::new() } else { format!(" Last error: {}.", event.last_error) };
            if ahead > 0 {
                format!(
                    "Waiting behind {ahead} earlier message(s) of the same chat (one at a time, in order).{error}{retry}"
                )
            } else if event.attempts > 0 {
                format!("Being retried: {} attempt(s) so far.{error}{retry}", event.attempts)
            } else {
                "Stored and queued; not attempted yet (is the integration paused or halted? see its status).".to_owned()
            }
        }
    })
}

async fn job_summary(
    db: &sea_orm::DatabaseConnection,
    integration_id: &str,
    job: &outbound_job::Model,
    mappings: &[message_map::Model],
) -> Result<String, AppError> {
    let sent: Vec<&str> =
        mappings.iter().filter(|m| m.direction == Direction::Outgoing).map(|m| m.wa_id.as_str()).collect();
    Ok(match job.state {
        WorkState::Done if sent.is_empty() => "Done (nothing needed sending).".to_owned(),
        WorkState::Done => format!("Sent to WhatsApp as {}.", sent.join(", ")),
        WorkState::Failed => format!(
            "Not sent: failed after {} attempts — {} (shown as failed in Chatwoot; the agent can retry).",
            job.attempts,
            if job.last_error.is_empty() { "no reason recorded" } else { &job.last_error }
        ),
        _ => {
            let ahead =
                store::trace::pending_before_job(db, integration_id, job.conversation_id, job.chatwoot_message_id)
                    .await?;
            if ahead > 0 {
                format!("Waiting behind {ahead} earlier repl(ies) of the same conversation (sent in Chatwoot's order).")
            } else if job.attempts > 0 {
                format!("Being retried: {} attempt(s) so far. Last error: {}.", job.attempts, job.last_error)
            } else {
                "Stored and queued; not attempted yet (is the integration paused or halted? see its status).".to_owned()
            }
        }
    })
}
