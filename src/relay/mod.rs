//! Translation between the two sides: `inbound` turns stored RyzeAPI events into Chatwoot calls,
//! `outbound` stored Chatwoot webhook jobs into RyzeAPI sends; `people` keeps one chat per person (aliases,
//! merges, profiles), `conversation` each chat's Chatwoot contact and conversation, `media` a message's
//! file, `status` the status conversation, `pace` Chatwoot's per-conversation limit, `receipts` tick
//! coalescing. Everything comes in one [`RelayContext`] (`context`); each call returns an [`Outcome`]
//! (`step`) for the actor to act on.

mod context;
mod conversation;
pub mod inbound;
mod media;
pub mod outbound;
pub mod pace;
pub mod people;
pub mod receipts;
pub mod status;
mod step;

pub use context::RelayContext;
pub use step::Outcome;

/// The pure parts (formatting, chat identity, the QR PNG) live in the wire crate.
pub use ryze_wire::{format, identity, qr_png};

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
