//! Queries on `chats` and `chat_aliases`.

use chrono::Utc;
use entity::{chat, chat_alias};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseConnection, EntityTrait as _, QueryFilter as _, Set, SqlErr,
    TransactionTrait as _,
};

use super::StoreError;

/// The chat any of `aliases` belongs to, with those of `aliases` it already has.
pub async fn find_by_aliases(
    db: &DatabaseConnection,
    integration_id: &str,
    aliases: &[String],
) -> Result<Option<(chat::Model, Vec<String>)>, StoreError> {
    // One query: the aliases that exist, each with its chat.
    let known = chat_alias::Entity::find()
        .filter(chat_alias::Column::IntegrationId.eq(integration_id))
        .filter(chat_alias::Column::Alias.is_in(aliases.iter().cloned()))
        .find_also_related(chat::Entity)
        .all(db)
        .await?;
    let Some((first, Some(chat))) = known.first().cloned() else { return Ok(None) };
    let known = known.into_iter().filter(|(a, _)| a.chat_id == first.chat_id).map(|(a, _)| a.alias).collect();
    Ok(Some((chat, known)))
}

/// A new chat with its aliases, or — if another path created it meanwhile — that one.
pub async fn create(
    db: &DatabaseConnection,
    integration_id: &str,
    chat_key: &str,
    kind: &str,
    name: &str,
    aliases: &[String],
) -> Result<chat::Model, StoreError> {
    let now = Utc::now();
    let txn = db.begin().await?;
    let row = chat::ActiveModel {
        integration_id: Set(integration_id.to_owned()),
        chat_key: Set(chat_key.to_owned()),
        kind: Set(kind.to_owned()),
        name: Set(name.to_owned()),
        contact_id: Set(None),
        contact_source_id: Set(None),
        conversation_id: Set(None),
        conversation_status: Set(None),
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
    })
    .await
}

/// Forgets every chat's conversation of an integration (its inbox was replaced: the old conversations
/// went with the old inbox). Contacts belong to the account and stay.
pub async fn forget_conversations(db: &DatabaseConnection, integration_id: &str) -> Result<(), StoreError> {
    chat::Entity::update_many()
        .col_expr(chat::Column::ConversationId, sea_orm::sea_query::Expr::value(Option::<i64>::None))
        .col_expr(chat::Column::ConversationStatus, sea_orm::sea_query::Expr::value(Option::<String>::None))
        .filter(chat::Column::IntegrationId.eq(integration_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Remembers the chat's current conversation (`None` forgets it, e.g. after Chatwoot answered 404).
pub async fn set_conversation(
    db: &DatabaseConnection,
    chat_id: i64,
    conversation: Option<(i64, &str)>,
) -> Result<chat::Model, StoreError> {
    update(db, chat_id, |row| {
        row.conversation_id = Set(conversation.map(|(id, _)| id));
        row.conversation_status = Set(conversation.map(|(_, status)| status.to_owned()));
    })
    .await
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

/// Removes every chat and alias of an integration (on deactivation).
pub async fn delete_for(db: &DatabaseConnection, integration_id: &str) -> Result<(), StoreError> {
    chat_alias::Entity::delete_many().filter(chat_alias::Column::IntegrationId.eq(integration_id)).exec(db).await?;
    chat::Entity::delete_many().filter(chat::Column::IntegrationId.eq(integration_id)).exec(db).await?;
    Ok(())
}
