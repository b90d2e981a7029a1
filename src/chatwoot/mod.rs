//! Everything that knows Chatwoot's URLs and JSON: a typed awc client ([`ChatwootClient`]), the request
//! and response shapes ([`dto`]) and the one place that classifies Chatwoot's failures ([`ChatwootError`]).

mod client;
pub mod dto;
mod error;
pub mod webhook;

pub use client::{ChatwootClient, ChatwootTarget, Upload};
pub use error::{ChatwootError, Failure};

/// Whether a dotted Chatwoot version (`4.15.1`) is at least `(major, minor)`. Unparsable parts count as 0.
pub fn version_at_least(version: &str, (major, minor): (u64, u64)) -> bool {
    let mut parts = version.trim().trim_start_matches('v').split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let (v_major, v_minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (v_major, v_minor) >= (major, minor)
}
