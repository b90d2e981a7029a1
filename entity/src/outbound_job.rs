//! Work for WhatsApp that came from Chatwoot's webhook: stored before the webhook is answered.
//! `(integration, chatwoot message id, kind)` is unique, so a webhook Chatwoot delivers twice is one job.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbound_jobs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub integration_id: String,
    pub chatwoot_message_id: i64,
    /// `send`, `delete`, `retry-<n>`.
    pub kind: String,
    /// Jobs of one conversation run one at a time, in `id` order.
    pub conversation_id: i64,
    /// The webhook body as received.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    /// `pending`, `done` or `failed`.
    pub state: crate::WorkState,
    pub attempts: i32,
    /// Parts of a multi-attachment message already accepted by RyzeAPI (a replay resumes after them).
    pub parts_sent: i32,
    pub last_error: String,
    pub created_at: DateTimeUtc,
    pub processed_at: Option<DateTimeUtc>,
    /// A RyzeAPI send of the next part started then and its outcome is unknown (timeout, crash): a replay
    /// looks for WhatsApp's echo of it before sending again. Cleared when RyzeAPI answered.
    pub sending_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
