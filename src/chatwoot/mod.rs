//! Everything that knows Chatwoot's URLs and JSON: a typed awc client ([`ChatwootClient`]), the request
//! and response shapes ([`dto`]) and the one place that classifies Chatwoot's failures ([`ChatwootError`]).

mod client;
pub mod dto;
mod error;

pub use client::{ChatwootClient, ChatwootTarget};
pub use error::{ChatwootError, Failure};
