//! Two chats of an integration that turned out to be one person (a LID and a phone JID), merged: which
//! chat survived, which contacts Chatwoot merged, when and why. Kept for audit; never updated.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chat_merges")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub integration_id: String,
    pub survivor_chat_id: i64,
    /// Gone since: its aliases, mappings and Chatwoot contact moved to the survivor.
    pub merged_chat_id: i64,
    /// The Chatwoot contact that stayed (the older one), and the one merged into it.
    pub survivor_contact_id: Option<i64>,
    pub merged_contact_id: Option<i64>,
    /// The conversation messages of either form go to from now on.
    pub conversation_id: Option<i64>,
    /// The survivor's aliases after the merge, space-separated.
    #[sea_orm(column_type = "Text")]
    pub aliases: String,
    /// What showed the two to be one person.
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
