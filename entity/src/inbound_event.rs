//! A RyzeAPI event as received over the WebSocket, stored before it is acknowledged.
//!
//! `event_id` (RyzeAPI's acknowledgement id) and `message_key` (the WhatsApp message id, prefixed with the
//! kind of message event) are each unique per integration: a re-sent event finds its row and is not stored
//! or processed twice.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "inbound_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub integration_id: String,
    pub event_id: Option<String>,
    pub message_key: Option<String>,
    /// Events of one chat are processed one at a time, in `id` order.
    pub chat_key: String,
    /// The envelope's `event` (`message.exchange`, `message.status`, …).
    pub kind: String,
    /// The whole frame as received.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    /// `pending`, `done` or `failed`.
    pub state: crate::WorkState,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTimeUtc>,
    pub last_error: String,
    pub received_at: DateTimeUtc,
    pub processed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
