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

pub use version::Version;

/// Whether a dotted Chatwoot version (`4.15.1`) is at least `(major, minor)`. Unparsable versions count as 0.
pub fn version_at_least(version: &str, (major, minor): (u64, u64)) -> bool {
    Version::parse(version).unwrap_or(Version(0, 0, 0)) >= Version(major, minor, 0)
}
