//! Translation between the two sides: `inbound` turns stored RyzeAPI events into Chatwoot calls,
//! `outbound` stored Chatwoot webhook jobs into RyzeAPI sends; `people` keeps contacts and chats, `status`
//! the status conversation, `pace` Chatwoot's per-conversation limit, `receipts` tick coalescing. Everything
//! comes in one `inbound::RelayContext`; each call returns an `Outcome` for the actor to act on.

pub mod inbound;
pub mod outbound;
pub mod pace;
pub mod people;
pub mod receipts;
pub mod status;

/// The pure parts (formatting, chat identity, the QR PNG) live in the wire crate.
pub use ryze_wire::{format, identity, qr_png};

use std::time::Duration;

/// The wait before attempt `attempts + 1` of something that failed for a passing reason: `min` doubling
/// per attempt, capped at `max` (`BRIDGE_RETRY_MIN_MS` / `BRIDGE_RETRY_MAX_MS`).
pub(crate) fn retry_delay((min, max): (Duration, Duration), attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    min.saturating_mul(2u32.saturating_pow(exponent)).min(max)
}

/// The order of Chatwoot's ticks; a tick is only ever replaced by a higher one (`failed` aside).
pub(crate) fn tick_rank(status: Option<&str>) -> u8 {
    match status {
        Some("sent") => 1,
        Some("delivered") => 2,
        Some("read") => 3,
        Some(REVOKED) => 4,
        _ => 0,
    }
}

/// The mapping's message was deleted for everyone on WhatsApp (and in Chatwoot): no later tick, delete or
/// echo of the delete acts on it again.
pub(crate) const REVOKED: &str = "revoked";

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
