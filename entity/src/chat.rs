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
    /// `private`, `group` or `status` (the status conversation).
    pub kind: ChatKind,
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

/// What a chat is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum ChatKind {
    /// One person.
    #[sea_orm(string_value = "private")]
    Private,
    /// A WhatsApp group (`…@g.us`).
    #[sea_orm(string_value = "group")]
    Group,
    /// The instance's status conversation, where the bridge posts connection notices and answers commands.
    #[sea_orm(string_value = "status")]
    Status,
}

impl ChatKind {
    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Group => "group",
            Self::Status => "status",
        }
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveEnum as _, Iterable as _};

    use super::ChatKind;

    #[test]
    fn stored_texts_are_the_names_the_code_uses() {
        for kind in ChatKind::iter() {
            assert_eq!(kind.to_value(), kind.as_str());
            assert_eq!(ChatKind::try_from_value(&kind.as_str().to_owned()).ok(), Some(kind));
        }
        assert_eq!(ChatKind::iter().map(ChatKind::as_str).collect::<Vec<_>>(), ["private", "group", "status"]);
    }
}
