//! Translation and orchestration between the two sides: `inbound` turns stored RyzeAPI events into
//! Chatwoot calls.

pub mod format;
pub mod identity;
pub mod inbound;
pub mod outbound;
pub mod qr_png;
pub mod status;

use std::time::Duration;

/// What became of one attempt to process a queued item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (or nothing to do); the next item of the chat may go.
    Done,
    /// Failed for now (network, 429, 5xx): try this item again after `after`, holding the chat's queue.
    Retry { after: Duration, error: String },
    /// Failed for good: recorded and visible; the chat's queue goes on.
    Failed(String),
    /// The integration cannot go on (e.g. Chatwoot revoked the token): stop processing, keep everything
    /// queued, show `error`.
    Halt(String),
}
