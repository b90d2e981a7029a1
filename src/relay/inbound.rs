//! Stored RyzeAPI events → Chatwoot.

use std::sync::Arc;

use crate::relay::Outcome;
use crate::state::Shared;
use crate::store;
use crate::store::events::PENDING;

/// What the relay needs to know about the integration.
#[derive(Debug, Clone)]
pub struct RelayContext {
    pub integration_id: String,
    pub instance: String,
}

/// Processes the stored event `row_id`. Safe to call again for the same row (after a crash or a retry):
/// an event no longer pending is done.
pub async fn process(
    shared: Arc<Shared>,
    relay: Arc<RelayContext>,
    _http: Option<awc::Client>,
    row_id: i64,
) -> Outcome {
    let Ok(services) = shared.services() else { return Outcome::Halt("bridge is not booted".into()) };
    let row = match store::events::find(&services.db, row_id).await {
        Ok(Some(row)) => row,
        Ok(None) => return Outcome::Done,
        Err(e) => return Outcome::Retry { after: std::time::Duration::from_secs(1), error: e.to_string() },
    };
    if row.state != PENDING {
        return Outcome::Done;
    }
    tracing::debug!(integration_id = %relay.integration_id, event = %row.kind, row_id, "event processed");
    match store::events::mark_done(&services.db, row_id).await {
        Ok(()) => Outcome::Done,
        Err(e) => Outcome::Retry { after: std::time::Duration::from_secs(1), error: e.to_string() },
    }
}
