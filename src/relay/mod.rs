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
