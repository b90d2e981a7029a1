//! Everything that knows RyzeAPI's URLs and JSON: event envelopes (both payload layouts), the WebSocket
//! link to `/ws/chatwoot/:instance`.

pub mod client;
pub mod link;

/// Event envelopes and `message.exchange` (pure, in the wire crate).
pub use ryze_wire::ryzeapi_event as event;
