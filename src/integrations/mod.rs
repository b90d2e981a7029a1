//! Integrations: their lifecycle (activate, pause, resume, deactivate) and how they are shown.
//!
//! Handlers call these functions; they orchestrate Chatwoot calls (through `chatwoot`) and persistence
//! (through `store`) and never build queries or URLs themselves.

pub mod activation;
pub mod actor;
pub mod bus;
pub mod lifecycle;
pub mod manager;
pub mod ownership;
pub mod retention;
pub mod rotation;
pub mod trace;
pub mod view;
pub mod webhooks;

use std::time::Instant;

use crate::chatwoot::{ChatwootClient, ChatwootTarget};
use crate::crypto::Sealer;
use crate::error::AppError;
use crate::secret::Secret;
use crate::state::Shared;

/// Integration statuses as stored and shown.
pub use entity::integration::Status;

/// Column names used as associated data when sealing (see `crypto`).
pub(crate) mod sealed {
    pub const INSTANCE_TOKEN: &str = "instance_token";
    pub const CHATWOOT_TOKEN: &str = "chatwoot_token";
    pub const WEBHOOK_SECRET: &str = "webhook_secret";
    pub const SIGNING_SECRET: &str = "signing_secret";
}

/// Starts (or restarts) the integration's actor and waits until the manager has done so. With replicas:
/// here if this replica holds (or can take) its lease, and its owner restarts it if another one does.
pub(crate) async fn start_actor(shared: &Shared, id: &str) {
    if let Some(manager) = shared.manager() {
        let _ = manager.send(manager::Start(id.to_owned())).await;
    }
    if shared.replica().is_some() {
        bus::publish_remote(shared, bus::Signal::IntegrationChanged { integration_id: id.to_owned() }).await;
    }
}

/// Stops the integration's actor for good and waits until the manager has done so. With replicas, the
/// lease is fenced off first (whoever runs it cannot write for it any more), then its owner is told.
pub(crate) async fn stop_actor(shared: &Shared, id: &str) {
    if let (Some(replica), Ok(services)) = (shared.replica(), shared.booted()) {
        replica.forget(id);
        if let Err(error) = ownership::fence_off(&services.db, id).await {
            tracing::warn!(integration_id = %id, %error, "cannot fence the integration's lease off");
        }
        bus::publish_remote(shared, bus::Signal::IntegrationStopped { integration_id: id.to_owned() }).await;
    }
    if let Some(manager) = shared.manager() {
        let _ = manager.send(manager::Stop(id.to_owned())).await;
    }
}

/// A new integration id: `int_` and 20 base32 characters (100 random bits).
pub fn new_integration_id() -> Result<String, AppError> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| AppError::Internal { detail: format!("random generator failed: {e}") })?;
    let suffix: String = bytes.iter().map(|b| char::from(ALPHABET[usize::from(b % 32)])).collect();
    Ok(format!("int_{suffix}"))
}

/// A Chatwoot client for the given target, using this worker's HTTP client.
pub(crate) fn chatwoot_client(
    shared: &Shared,
    http: &awc::Client,
    target: ChatwootTarget,
    deadline: Option<Instant>,
) -> ChatwootClient {
    let governor = shared.governors.of(&target.base_url);
    ChatwootClient::new(http.clone(), target, shared.settings.chatwoot_timeout, shared.metrics.clone())
        .with_governor(governor)
        .with_deadline(deadline)
}

/// Opens a sealed column of an integration row.
pub(crate) fn open_sealed(sealer: &Sealer, sealed: &str, id: &str, column: &str) -> Result<Secret, AppError> {
    sealer
        .open(sealed, id, column)
        .map_err(|e| AppError::Internal { detail: format!("cannot open the stored {column}: {e}") })
}
