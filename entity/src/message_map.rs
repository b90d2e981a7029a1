//! WhatsApp message id ↔ Chatwoot message id, each unique per integration.
//!
//! A row is written *before* the Chatwoot message is created (`attempted`) so that a crash between
//! the Chatwoot call and the bookkeeping is noticed on replay, and resolved by looking the message up
//! instead of creating it twice.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "message_map")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub integration_id: String,
    pub wa_id: String,
    pub chatwoot_message_id: Option<i64>,
    pub conversation_id: Option<i64>,
    pub chat_id: i64,
    /// `incoming` (customer → Chatwoot), `outgoing` (phone or agent → WhatsApp).
    pub direction: String,
    /// `pending` (recorded), `attempted` (a Chatwoot call started; outcome unknown) or `created`.
    pub state: String,
    /// Last tick set on the Chatwoot message (`sent`, `delivered`, `read`, `failed`).
    pub last_status: Option<String>,
    pub created_at: DateTimeUtc,
    /// When the last Chatwoot call for this message started.
    pub attempted_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
