//! Everything that knows RyzeAPI's URLs and JSON: event envelopes (both payload layouts), the WebSocket
//! link to `/ws/chatwoot/:instance`.

pub mod client;
pub mod event;
pub mod link;
