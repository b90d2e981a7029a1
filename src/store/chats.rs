//! Queries on `chats` and `chat_aliases`.

use chrono::{DateTime, Utc};
pub use entity::chat::ChatKind;
use entity::{chat, chat_alias};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseConnection, EntityTrait as _, QueryFilter as _, Set, SqlErr,
    TransactionTrait as _,
};

use super::StoreError;

/// The chat any of `aliases` belongs to (the oldest, should there be several), with those of `aliases` it
/// already has.
pub async fn find_by_aliases(
    db: &DatabaseConnection,
    integration_id: &str,
    aliases: &[String],
) -> Result<Option<(chat::Model, Vec<String>)>, StoreError> {
    Ok(chats_of_aliases(db, integration_id, aliases).await?.into_iter().next())
}

/// Every chat any of `aliases` belongs to, oldest first, each with those of `aliases` it has. More than
/// one means that one person has been two chats (a LID and a phone JID seen apart).
pub async fn chats_of_aliases(
    db: &DatabaseConnection,
    integration_id: &str,
    aliases: &[String],
) -> Result<Vec<(chat::Model, Vec<String>)>, StoreError> {
    let known = chat_alias::Entity::find()
        .filter(chat_alias::Column::IntegrationId.eq(integration_id))
        .filter(chat_alias::Column::Alias.is_in(aliases.iter().cloned()))
        .find_also_related(chat::Entity)
        .all(db)
        .await?;
    let mut chats: Vec<(chat::Model, Vec<String>)> = Vec::new();
    for (alias, chat) in known {
        let Some(chat) = chat else { continue };
        match chats.iter_mut().find(|(c, _)| c.id == chat.id) {
            Some((_, names)) => names.push(alias.alias),
            None => chats.push((chat, vec![alias.alias])),
        }
    }
    chats.sort_by_key(|(chat, _)| chat.id);
    Ok(chats)
}

/// Every alias of a chat.
pub async fn aliases_of(
    db: &impl sea_orm::ConnectionTrait,
    integration_id: &str,
    chat_id: i64,
) -> Result<Vec<String>, StoreError> {
    use sea_orm::QuerySelect as _;
    Ok(chat_alias::Entity::find()
        .select_only()
        .column(chat_alias::Column::Alias)
        .filter(chat_alias::Column::IntegrationId.eq(integration_id))
        .filter(chat_alias::Column::ChatId.eq(chat_id))
        .into_tuple::<String>()
        .all(db)
        .await?)
}

/// The chat with this id.
pub async fn find(db: &DatabaseConnection, chat_id: i64) -> Result<Option<chat::Model>, StoreError> {
    Ok(chat::Entity::find_by_id(chat_id).one(db).await?)
}

/// What a merge leaves the surviving chat with, and why it happened.
#[derive(Debug, Clone)]
pub struct Merge {
    pub survivor: i64,
    pub merged: i64,
    /// The contact that stays, with the contact_inbox `source_id` to use (`None`: neither had one).
    pub contact: Option<(i64, String)>,
    /// The contact Chatwoot merged into it, if any.
    pub merged_contact: Option<i64>,
    /// The conversation to post into from now on, with its status.
    pub conversation: Option<(i64, String)>,
    pub reason: String,
}

/// Merges chat `merge.merged` into `merge.survivor` in one transaction: its aliases and message mappings
/// move over, the survivor takes the contact and conversation chosen, the merged chat is removed and the
/// merge is recorded. Returns the survivor as it now is, and the audit row's id.
pub async fn merge(
    db: &DatabaseConnection,
    integration_id: &str,
    merge: &Merge,
) -> Result<(chat::Model, i64), StoreError> {
    let (db, integration_id, merge) = (db.clone(), integration_id.to_owned(), merge.clone());
    super::uncancellable(async move { merge_now(&db, &integration_id, &merge).await }).await
}

async fn merge_now(
    db: &DatabaseConnection,
    integration_id: &str,
    merge: &Merge,
) -> Result<(chat::Model, i64), StoreError> {
    use sea_orm::sea_query::Expr;
    let txn = db.begin().await?;
    let result = async {
        chat_alias::Entity::update_many()
            .col_expr(chat_alias::Column::ChatId, Expr::value(merge.survivor))
            .filter(chat_alias::Column::IntegrationId.eq(integration_id))
            .filter(chat_alias::Column::ChatId.eq(merge.merged))
            .exec(&txn)
            .await?;
        entity::message_map::Entity::update_many()
            .col_expr(entity::message_map::Column::ChatId, Expr::value(merge.survivor))
            .filter(entity::message_map::Column::IntegrationId.eq(integration_id))
            .filter(entity::message_map::Column::ChatId.eq(merge.merged))
            .exec(&txn)
            .await?;
        chat::Entity::delete_by_id(merge.merged).exec(&txn).await?;
        let row = chat::ActiveModel {
            id: sea_orm::Unchanged(merge.survivor),
            contact_id: Set(merge.contact.as_ref().map(|(id, _)| *id)),
            contact_source_id: Set(merge.contact.as_ref().map(|(_, source)| source.clone())),
            conversation_id: Set(merge.conversation.as_ref().map(|(id, _)| *id)),
            conversation_status: Set(merge.conversation.as_ref().map(|(_, status)| status.clone())),
            updated_at: Set(Utc::now()),
            ..Default::default()
        };
        let survivor = row.update(&txn).await?;
        let aliases = match aliases_of(&txn, integration_id, merge.survivor).await {
            Ok(aliases) => aliases,
            Err(StoreError::Db(e)) => return Err(e),
            Err(other) => return Err(sea_orm::DbErr::Custom(other.to_string())),
        };
        let audit = entity::chat_merge::ActiveModel {
            integration_id: Set(integration_id.to_owned()),
            survivor_chat_id: Set(merge.survivor),
            merged_chat_id: Set(merge.merged),
            survivor_contact_id: Set(merge.contact.as_ref().map(|(id, _)| *id)),
            merged_contact_id: Set(merge.merged_contact),
            conversation_id: Set(merge.conversation.as_ref().map(|(id, _)| *id)),
            aliases: Set(aliases.join(" ")),
            reason: Set(merge.reason.clone()),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        Ok::<_, sea_orm::DbErr>((survivor, audit.id))
    }
    .await;
    match result {
        Ok(done) => {
            txn.commit().await?;
            Ok(done)
        }
        Err(e) => {
            txn.rollback().await?;
            Err(StoreError::Db(e))
        }
    }
}

/// The merges of an integration, newest first.
pub async fn merges(
    db: &DatabaseConnection,
    integration_id: &str,
) -> Result<Vec<entity::chat_merge::Model>, StoreError> {
    use sea_orm::QueryOrder as _;
    Ok(entity::chat_merge::Entity::find()
        .filter(entity::chat_merge::Column::IntegrationId.eq(integration_id))
        .order_by_desc(entity::chat_merge::Column::Id)
        .all(db)
        .await?)
}

/// Remembers the name (and picture) last given to the chat's Chatwoot contact.
pub async fn set_profile(
    db: &DatabaseConnection,
    chat_id: i64,
    name: &str,
    avatar_url: Option<&str>,
) -> Result<chat::Model, StoreError> {
    update(db, chat_id, |row| {
        row.name = Set(name.to_owned());
        row.avatar_url = Set(avatar_url.map(str::to_owned));
    })
    .await
}

/// A new chat with its aliases, or — if another path created it meanwhile — that one.
pub async fn create(
    db: &DatabaseConnection,
    integration_id: &str,
    chat_key: &str,
    kind: ChatKind,
    name: &str,
    aliases: &[String],
) -> Result<chat::Model, StoreError> {
    let (db, integration_id, chat_key, name, aliases) =
        (db.clone(), integration_id.to_owned(), chat_key.to_owned(), name.to_owned(), aliases.to_vec());
    super::uncancellable(async move { create_now(&db, &integration_id, &chat_key, kind, &name, &aliases).await }).await
}

async fn create_now(
    db: &DatabaseConnection,
    integration_id: &str,
    chat_key: &str,
    kind: ChatKind,
    name: &str,
    aliases: &[String],
) -> Result<chat::Model, StoreError> {
    let now = Utc::now();
    let txn = db.begin().await?;
    let row = chat::ActiveModel {
        integration_id: Set(integration_id.to_owned()),
        chat_key: Set(chat_key.to_owned()),
        kind: Set(kind),
        name: Set(name.to_owned()),
        contact_id: Set(None),
        contact_source_id: Set(None),
        conversation_id: Set(None),
        conversation_status: Set(None),
        conversation_attempted_at: Set(None),
        avatar_url: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    let created = async {
        let chat = row.insert(&txn).await?;
        for alias in aliases {
            alias_row(integration_id, alias, chat.id).insert(&txn).await?;
        }
        Ok::<_, sea_orm::DbErr>(chat)
    }
    .await;
    match created {
        Ok(chat) => {
            txn.commit().await?;
            Ok(chat)
        }
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            txn.rollback().await?;
            find_by_aliases(db, integration_id, aliases).await?.map(|(chat, _)| chat).ok_or(StoreError::Db(e))
        }
        Err(e) => Err(StoreError::Db(e)),
    }
}

fn alias_row(integration_id: &str, alias: &str, chat_id: i64) -> chat_alias::ActiveModel {
    chat_alias::ActiveModel {
        integration_id: Set(integration_id.to_owned()),
        alias: Set(alias.to_owned()),
        chat_id: Set(chat_id),
        ..Default::default()
    }
}

/// Records more aliases of a chat (already known ones are left alone).
pub async fn add_aliases(
    db: &DatabaseConnection,
    integration_id: &str,
    chat_id: i64,
    aliases: &[String],
) -> Result<(), StoreError> {
    if aliases.is_empty() {
        return Ok(());
    }
    chat_alias::Entity::insert_many(aliases.iter().map(|a| alias_row(integration_id, a, chat_id)))
        .on_conflict(
            OnConflict::columns([chat_alias::Column::IntegrationId, chat_alias::Column::Alias]).do_nothing().to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The chat whose current conversation is `conversation_id`.
pub async fn find_by_conversation(
    db: &DatabaseConnection,
    integration_id: &str,
    conversation_id: i64,
) -> Result<Option<chat::Model>, StoreError> {
    Ok(chat::Entity::find()
        .filter(chat::Column::IntegrationId.eq(integration_id))
        .filter(chat::Column::ConversationId.eq(conversation_id))
        .one(db)
        .await?)
}

/// Records a conversation's new status (learned from Chatwoot's webhook).
pub async fn set_conversation_status(
    db: &DatabaseConnection,
    integration_id: &str,
    conversation_id: i64,
    status: &str,
) -> Result<(), StoreError> {
    chat::Entity::update_many()
        .col_expr(chat::Column::ConversationStatus, sea_orm::sea_query::Expr::value(status))
        .col_expr(chat::Column::UpdatedAt, sea_orm::sea_query::Expr::value(Utc::now()))
        .filter(chat::Column::IntegrationId.eq(integration_id))
        .filter(chat::Column::ConversationId.eq(conversation_id))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn set_contact(
    db: &DatabaseConnection,
    chat_id: i64,
    contact_id: i64,
    source_id: &str,
) -> Result<chat::Model, StoreError> {
    update(db, chat_id, |row| {
        row.contact_id = Set(Some(contact_id));
        row.contact_source_id = Set(Some(source_id.to_owned()));
    })
    .await
}

/// Forgets the chat's contact and conversation (deleted in Chatwoot): the next message creates them anew.
pub async fn forget_contact(db: &DatabaseConnection, chat_id: i64) -> Result<chat::Model, StoreError> {
    update(db, chat_id, |row| {
        row.contact_id = Set(None);
        row.contact_source_id = Set(None);
        row.conversation_id = Set(None);
        row.conversation_status = Set(None);
        row.conversation_attempted_at = Set(None);
    })
    .await
}

/// Forgets every chat's conversation of an integration (its inbox was replaced: the old conversations
/// went with the old inbox). Contacts belong to the account and stay.
pub async fn forget_conversations(db: &DatabaseConnection, integration_id: &str) -> Result<(), StoreError> {
    chat::Entity::update_many()
        .col_expr(chat::Column::ConversationId, sea_orm::sea_query::Expr::value(Option::<i64>::None))
        .col_expr(chat::Column::ConversationStatus, sea_orm::sea_query::Expr::value(Option::<String>::None))
        .col_expr(chat::Column::ConversationAttemptedAt, sea_orm::sea_query::Expr::value(Option::<DateTime<Utc>>::None))
        .filter(chat::Column::IntegrationId.eq(integration_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Remembers the chat's current conversation (`None` forgets it, e.g. after Chatwoot answered 404). A
/// conversation stored is no longer being asked for.
pub async fn set_conversation(
    db: &DatabaseConnection,
    chat_id: i64,
    conversation: Option<(i64, &str)>,
) -> Result<chat::Model, StoreError> {
    update(db, chat_id, |row| {
        row.conversation_id = Set(conversation.map(|(id, _)| id));
        row.conversation_status = Set(conversation.map(|(_, status)| status.to_owned()));
        if conversation.is_some() {
            row.conversation_attempted_at = Set(None);
        }
    })
    .await
}

/// Chatwoot is being asked for a conversation for the chat, now: until its answer is stored, whoever
/// relays the chat next looks for it before asking again.
pub async fn mark_conversation_attempted(db: &DatabaseConnection, chat_id: i64) -> Result<chat::Model, StoreError> {
    update(db, chat_id, |row| row.conversation_attempted_at = Set(Some(Utc::now()))).await
}

async fn update(
    db: &DatabaseConnection,
    chat_id: i64,
    change: impl FnOnce(&mut chat::ActiveModel),
) -> Result<chat::Model, StoreError> {
    let mut row = chat::ActiveModel { id: sea_orm::Unchanged(chat_id), ..Default::default() };
    change(&mut row);
    row.updated_at = Set(Utc::now());
    Ok(row.update(db).await?)
}

/// Removes every chat, alias and merge record of an integration (on deactivation).
pub async fn delete_for(db: &DatabaseConnection, integration_id: &str) -> Result<(), StoreError> {
    entity::chat_merge::Entity::delete_many()
        .filter(entity::chat_merge::Column::IntegrationId.eq(integration_id))
        .exec(db)
        .await?;
    chat_alias::Entity::delete_many().filter(chat_alias::Column::IntegrationId.eq(integration_id)).exec(db).await?;
    chat::Entity::delete_many().filter(chat::Column::IntegrationId.eq(integration_id)).exec(db).await?;
    Ok(())
}
