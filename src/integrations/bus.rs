//! Telling the replica that runs an integration what happened on another one (PostgreSQL
//! `LISTEN/NOTIFY` on one channel). Everything a signal announces is stored before it is sent, so a lost
//! signal only delays: the listener's reconnect and a slow periodic re-read of stored jobs catch up.
//! A single process (SQLite) applies its signals directly.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::manager;
use crate::state::Shared;
use crate::store::leases::{self, Heard};

/// The channel every replica listens on.
const CHANNEL: &str = "ryze_bridge";

/// How often a replica re-reads stored jobs of its integrations whatever it heard: a notification lost
/// between a listener's disconnect and its reconnect costs at most this long.
const RESYNC_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    /// An agent's reply (or another Chatwoot webhook job) was stored.
    Job { integration_id: String, job_id: i64, conversation_id: i64, chatwoot_message_id: i64 },
    /// An agent started or stopped typing.
    Typing { integration_id: String, conversation_id: i64, on: bool },
    /// A conversation's status changed in Chatwoot (the chat cache of its owner is stale).
    ConversationChanged { integration_id: String, conversation_id: i64 },
    /// The integration's settings or credentials changed: its owner restarts it, everyone forgets its keys.
    IntegrationChanged { integration_id: String },
    /// The integration was paused or deleted (its lease is fenced off already): its owner stops it now.
    IntegrationStopped { integration_id: String },
    /// Leases were given up: replicas below their share take them now rather than at their next round.
    LeasesFreed,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    from: String,
    #[serde(flatten)]
    signal: Signal,
}

/// Applies `signal` here, and sends it to the other replicas when there are any to tell.
pub async fn publish(shared: &Shared, signal: Signal) {
    // A job is always announced: this replica may believe it owns the integration a moment after it lost
    // it (woken from a freeze), and the new owner must hear of the job now, not at the next re-read.
    // Typing is best-effort: kept here when this replica holds the lease.
    let local_only = match (&signal, shared.replica()) {
        (_, None) => true,
        (Signal::Typing { integration_id, .. }, Some(replica)) => {
            replica.fence_of(integration_id).is_some_and(|fence| fence.holds())
        }
        _ => false,
    };
    apply(shared, &signal);
    if !local_only {
        publish_remote(shared, signal).await;
    }
}

/// Sends `signal` to the other replicas only.
pub async fn publish_remote(shared: &Shared, signal: Signal) {
    let (Some(replica), Ok(services)) = (shared.replica(), shared.booted()) else { return };
    let envelope = Envelope { from: replica.owner.clone(), signal };
    let Ok(payload) = serde_json::to_string(&envelope) else { return };
    if let Err(error) = leases::notify(&services.db, CHANNEL, &payload).await {
        tracing::warn!(%error, "cannot notify the other replicas; they catch up by re-reading");
    }
}

/// What a signal means for this replica.
fn apply(shared: &Shared, signal: &Signal) {
    let manager = shared.manager();
    match signal {
        Signal::Job { integration_id, job_id, conversation_id, chatwoot_message_id } => {
            if let Some(manager) = manager {
                manager.do_send(manager::QueueJob {
                    integration_id: integration_id.clone(),
                    job_id: *job_id,
                    conversation_id: *conversation_id,
                    chatwoot_message_id: *chatwoot_message_id,
                });
            }
        }
        Signal::Typing { integration_id, conversation_id, on } => {
            if let Some(manager) = manager {
                manager.do_send(manager::AgentTyping {
                    integration_id: integration_id.clone(),
                    conversation_id: *conversation_id,
                    on: *on,
                });
            }
        }
        Signal::ConversationChanged { integration_id, conversation_id } => {
            if let Some(live) = shared.live.get(integration_id) {
                live.chats.forget(|chat| chat.conversation_id == Some(*conversation_id));
            }
        }
        Signal::IntegrationChanged { integration_id } => {
            shared.webhook_keys.forget(integration_id);
            if let Some(manager) = manager {
                manager.do_send(manager::Reconsider(integration_id.clone()));
            }
        }
        Signal::IntegrationStopped { integration_id } => {
            shared.webhook_keys.forget(integration_id);
            if let Some(replica) = shared.replica() {
                replica.forget(integration_id);
            }
            if let Some(manager) = manager {
                manager.do_send(manager::Lost(vec![integration_id.clone()]));
            }
        }
        Signal::LeasesFreed => {
            if let Some(replica) = shared.replica() {
                replica.wake();
            }
        }
    }
}

/// Listens for the other replicas' signals for as long as the process runs. After a gap (the listening
/// connection was lost and re-made) and every [`RESYNC_EVERY`], what may have been missed is re-read:
/// credentials are forgotten, chat caches dropped, stored jobs re-queued.
pub async fn listen(shared: Arc<Shared>) {
    let Some(owner) = shared.replica().map(|replica| replica.owner.clone()) else { return };
    loop {
        let Ok(services) = shared.booted() else { return };
        let mut subscription = match leases::listen(&services.db, CHANNEL).await {
            Ok(subscription) => subscription,
            Err(error) => {
                tracing::warn!(%error, "cannot listen to the other replicas; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        resync(&shared, true);
        loop {
            let heard = tokio::time::timeout(RESYNC_EVERY, subscription.recv()).await;
            if shared.is_stopping() {
                return;
            }
            match heard {
                Ok(Ok(Heard::Payload(payload))) => match serde_json::from_str::<Envelope>(&payload) {
                    Ok(envelope) if envelope.from != owner => apply(&shared, &envelope.signal),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "an unreadable signal from another replica"),
                },
                Ok(Ok(Heard::Gap)) => resync(&shared, true),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "lost the connection listening to the other replicas");
                    break;
                }
                Err(_quiet) => resync(&shared, false),
            }
        }
    }
}

/// Catches up on whatever signals may have been missed: stored jobs always (one statement for all the
/// integrations this replica runs; the actors skip the jobs they know), and after a gap the caches too.
fn resync(shared: &Arc<Shared>, caches: bool) {
    if caches {
        shared.webhook_keys.forget_all();
        shared.live.forget_all_chats();
    }
    let shared = shared.clone();
    actix_web::rt::spawn(async move {
        let (Some(replica), Ok(services), Some(manager)) = (shared.replica(), shared.booted(), shared.manager()) else {
            return;
        };
        match leases::pending_jobs_of_owner(&services.db, &replica.owner).await {
            Ok(jobs) => {
                for (job_id, integration_id, conversation_id, chatwoot_message_id) in jobs {
                    manager.do_send(manager::QueueJob { integration_id, job_id, conversation_id, chatwoot_message_id });
                }
            }
            Err(error) => tracing::warn!(%error, "cannot re-read the stored jobs"),
        }
    });
}
