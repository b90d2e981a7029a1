//! Database entities of RyzeIntegrations (sea-orm models).
//!
//! Plain data only: no queries live here. Every query is built in the service crate's `store` module.

pub mod chat;
pub mod chat_alias;
pub mod chat_merge;
pub mod inbound_event;
pub mod integration;
pub mod message_map;
pub mod outbound_job;
pub mod work;

pub use work::WorkState;

pub mod prelude {
    //! The entities under their table names.
    pub use super::inbound_event::Entity as InboundEvent;
    pub use super::integration::Entity as Integration;
}
