//! One WhatsApp chat of an integration and what it is in Chatwoot (contact, contact_inbox, conversation).
//! Remembered here so that a message in a known chat costs one Chatwoot call, not a search.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chats")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub integration_id: String,
    /// Canonical key: the phone or group JID, else the LID.
    pub chat_key: String,
    /// `private` or `group`.
    pub kind: String,
    pub name: String,
    pub contact_id: Option<i64>,
    /// The contact_inbox `source_id` the bridge set.
    pub contact_source_id: Option<String>,
    /// Chatwoot conversation display id.
    pub conversation_id: Option<i64>,
    /// Last known status of that conversation (`open`, `pending`, `resolved`, `snoozed`).
    pub conversation_status: Option<String>,
    /// A conversation was asked of Chatwoot then and its answer not stored yet (see migration 9).
    pub conversation_attempted_at: Option<DateTimeUtc>,
    /// The picture last given to the Chatwoot contact (`sender.pictureUrl`).
    pub avatar_url: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
