//! Every form under which a chat appears (phone JID, LID, the Brazilian 9th-digit variant), unique per
//! integration, so that all of them resolve to one chat.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chat_aliases")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub integration_id: String,
    pub alias: String,
    pub chat_id: i64,
}

/// Declared for reading an alias with its chat in one query (no foreign key in the schema: aliases are
/// deleted with their chats by the store).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(belongs_to = "super::chat::Entity", from = "Column::ChatId", to = "super::chat::Column::Id")]
    Chat,
}

impl Related<super::chat::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Chat.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
