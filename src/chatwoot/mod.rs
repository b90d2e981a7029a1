//! Everything that knows Chatwoot's URLs and JSON: a typed awc client ([`ChatwootClient`]), the request
//! and response shapes ([`dto`]) and the one place that classifies Chatwoot's failures ([`ChatwootError`]).

mod client;
pub mod dto;
mod error;
pub mod governor;

/// Version gates and the webhook's payloads and signature (pure, in the wire crate).
pub use ryze_wire::{chatwoot_version as version, chatwoot_webhook as webhook};

pub use client::{ChatwootClient, ChatwootTarget, Upload};
pub use error::{ChatwootError, Failure, Unprocessable};

pub use version::{Version, version_at_least};
