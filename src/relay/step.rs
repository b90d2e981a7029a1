//! What a relay step returns and how failures become outcomes: [`Outcome`], what one attempt at a queued
//! item comes to, for the actor to act on; [`Step`], which ends a sequence of steps early with one; and the
//! translation of Chatwoot and database failures into them.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::chatwoot::{ChatwootClient, ChatwootError, Failure};
use crate::store;

/// What became of one attempt to process a queued item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (or nothing to do); the next item of the chat may go.
    Done,
    /// Failed for now (network, 429, 5xx): try this item again after `after`, holding the chat's queue.
    Retry { after: Duration, error: String },
    /// Not yet, and not a failure (a limit of Chatwoot's is reached): try again after `after`, holding the
    /// chat's queue, without counting an attempt.
    Later { after: Duration },
    /// Failed for good: recorded and visible; the chat's queue goes on.
    Failed(String),
    /// The integration cannot go on (e.g. Chatwoot revoked the token): stop processing, keep everything
    /// queued, show `error`.
    Halt(String),
}

/// Short-circuits a step: `Err(outcome)` ends processing with that outcome.
pub(super) type Step<T> = Result<T, Outcome>;

/// The outcome of a finished sequence of steps (an early `Done` is a success too).
pub(super) fn outcome_of(step: Step<()>) -> Outcome {
    match step {
        Ok(()) | Err(Outcome::Done) => Outcome::Done,
        Err(outcome) => outcome,
    }
}

/// A database failure as an outcome: a passing one, retried after a second.
pub(super) fn store_failed(e: store::StoreError) -> Outcome {
    Outcome::Retry { after: Duration::from_secs(1), error: e.to_string() }
}

/// A Chatwoot failure as an outcome: wait and retry what can recover, halt on a refused token, record
/// the rest as failed.
pub(super) fn on_chatwoot_error(error: &ChatwootError) -> Outcome {
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

/// Chatwoot answered 404 where only a deleted inbox explains it (creating a contact or conversation in it).
pub(super) fn inbox_gone(error: &ChatwootError) -> Outcome {
    Outcome::Halt(format!(
        "The Chatwoot inbox of this integration was deleted — re-activate the integration to create a new one. Detail: {}",
        error.detail()
    ))
}

/// Whether a Chatwoot call started at `attempted_at` can no longer land (twice the call timeout has
/// passed); until then, a retry after the rest of that time, with `waiting` as its reason.
pub(super) fn settled(chatwoot: &ChatwootClient, attempted_at: DateTime<Utc>, waiting: &str) -> Step<()> {
    let settle = chatwoot.timeout().saturating_mul(2);
    let elapsed = (chrono::Utc::now() - attempted_at).to_std().unwrap_or_default();
    if elapsed < settle {
        return Err(Outcome::Retry { after: settle - elapsed, error: waiting.to_owned() });
    }
    Ok(())
}
