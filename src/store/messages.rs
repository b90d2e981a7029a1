//! Queries on `message_map`.

use chrono::Utc;
use entity::message_map::{ActiveModel, Column, Entity, Model};
pub use entity::message_map::{Direction, MappingState, Tick};
use sea_orm::sea_query::{CaseStatement, Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait as _, NotSet,
    QueryFilter as _, Set,
};

use super::StoreError;

pub async fn find_by_wa_id(
    db: &DatabaseConnection,
    integration_id: &str,
    wa_id: &str,
) -> Result<Option<Model>, StoreError> {
    Ok(Entity::find().filter(Column::IntegrationId.eq(integration_id)).filter(Column::WaId.eq(wa_id)).one(db).await?)
}

/// A message about to be created in Chatwoot.
#[derive(Debug, Clone)]
pub struct NewMapping {
    pub integration_id: String,
    pub wa_id: String,
    pub chat_id: i64,
    pub direction: Direction,
    pub conversation_id: i64,
}

/// Result of [`start_in`].
#[derive(Debug, Clone)]
pub struct Started {
    pub mapping: Model,
    /// This call wrote the row (as `attempted`, now): the Chatwoot call may go ahead. Otherwise `mapping`
    /// is an earlier row (a replay) whose state tells whether a Chatwoot call may already have happened.
    pub fresh: bool,
}

/// Records, before the Chatwoot call, that each `wa_id` is being created in Chatwoot (state `attempted`,
/// with the time), in one statement. Where a row exists already (a replay, or an earlier one of `news`
/// with the same id), returns that row untouched instead. Results are in the order of `news`. Runs inside
/// the writer's group transaction, hence `ON CONFLICT DO NOTHING` rather than a unique-violation error.
pub(crate) async fn start_many_in(db: &impl ConnectionTrait, news: &[&NewMapping]) -> Result<Vec<Started>, DbErr> {
    if news.is_empty() {
        return Ok(Vec::new());
    }
    let now = Utc::now();
    let model = |new: &NewMapping, id: i64| Model {
        id,
        integration_id: new.integration_id.clone(),
        wa_id: new.wa_id.clone(),
        chatwoot_message_id: None,
        conversation_id: Some(new.conversation_id),
        chat_id: new.chat_id,
        direction: new.direction,
        state: MappingState::Attempted,
        last_status: None,
        created_at: now,
        attempted_at: Some(now),
    };
    let rows = news.iter().map(|new| {
        let mut row: ActiveModel = model(new, 0).into();
        row.id = NotSet;
        row
    });
    let keys = news.iter().map(|n| (n.integration_id.clone(), n.wa_id.clone())).collect();
    let columns = vec![Column::IntegrationId, Column::WaId];
    let ids = super::insert_new(db, rows.collect(), (Column::Id, columns), keys, |row| {
        Ok((row.try_get("", "integration_id")?, row.try_get("", "wa_id")?))
    })
    .await?;
    let mut started = Vec::with_capacity(news.len());
    for (new, id) in news.iter().zip(ids) {
        let result = match id {
            Some(id) => Started { mapping: model(new, id), fresh: true },
            None => {
                let existing = Entity::find()
                    .filter(Column::IntegrationId.eq(new.integration_id.as_str()))
                    .filter(Column::WaId.eq(new.wa_id.as_str()))
                    .one(db)
                    .await?;
                let mapping =
                    existing.ok_or_else(|| DbErr::RecordNotFound(format!("message_map row of {}", new.wa_id)))?;
                Started { mapping, fresh: false }
            }
        };
        started.push(result);
    }
    Ok(started)
}

/// A Chatwoot call for this message is about to start again (a replay), in `conversation_id`.
pub async fn mark_attempted(db: &DatabaseConnection, row_id: i64, conversation_id: i64) -> Result<(), StoreError> {
    let row = ActiveModel {
        id: sea_orm::Unchanged(row_id),
        conversation_id: Set(Some(conversation_id)),
        state: Set(MappingState::Attempted),
        attempted_at: Set(Some(Utc::now())),
        ..Default::default()
    };
    row.update(db).await?;
    Ok(())
}

/// A created Chatwoot message, to remember: `(mapping row, Chatwoot message id, conversation id)`.
pub(crate) type Created = (i64, i64, i64);

/// The Chatwoot messages exist: remember their ids, in one statement (inside the writer's group
/// transaction).
pub(crate) async fn complete_many_in(db: &impl ConnectionTrait, created: &[Created]) -> Result<(), DbErr> {
    if created.is_empty() {
        return Ok(());
    }
    let by_row = |value: fn(&Created) -> i64| {
        created.iter().fold(CaseStatement::new(), |case, c| case.case(Column::Id.eq(c.0), Expr::val(value(c))))
    };
    let (message, conversation) = (by_row(|c| c.1).into(), by_row(|c| c.2).into());
    Entity::update_many()
        .col_expr(Column::ChatwootMessageId, message)
        .col_expr(Column::ConversationId, conversation)
        .col_expr(Column::State, Expr::val(MappingState::Created))
        .filter(Column::Id.is_in(created.iter().map(|c| c.0)))
        .exec(db)
        .await?;
    Ok(())
}

/// Removes every mapping of an integration (on deactivation).
pub async fn delete_for(db: &DatabaseConnection, integration_id: &str) -> Result<(), StoreError> {
    Entity::delete_many().filter(Column::IntegrationId.eq(integration_id)).exec(db).await?;
    Ok(())
}

/// The mapping of a Chatwoot message.
pub async fn find_by_chatwoot_id(
    db: &DatabaseConnection,
    integration_id: &str,
    chatwoot_message_id: i64,
) -> Result<Option<Model>, StoreError> {
    Ok(Entity::find()
        .filter(Column::IntegrationId.eq(integration_id))
        .filter(Column::ChatwootMessageId.eq(chatwoot_message_id))
        .one(db)
        .await?)
}

/// A message RyzeAPI accepted for an agent's Chatwoot message (`chatwoot_message_id` only on the first
/// part of a multi-part message: the others map to WhatsApp ids only).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub integration_id: String,
    pub wa_id: String,
    pub chatwoot_message_id: Option<i64>,
    pub conversation_id: i64,
    pub chat_id: i64,
}

/// Records an [`Outgoing`] message (once: a repeat changes nothing). Inside the writer's group
/// transaction, hence `ON CONFLICT DO NOTHING` rather than a unique-violation error.
pub(crate) async fn record_outgoing_in(db: &impl ConnectionTrait, outgoing: &Outgoing) -> Result<(), DbErr> {
    let row = ActiveModel {
        integration_id: Set(outgoing.integration_id.clone()),
        wa_id: Set(outgoing.wa_id.clone()),
        chatwoot_message_id: Set(outgoing.chatwoot_message_id),
        conversation_id: Set(Some(outgoing.conversation_id)),
        chat_id: Set(outgoing.chat_id),
        direction: Set(Direction::Outgoing),
        state: Set(MappingState::Created),
        last_status: Set(Some(Tick::Sent)),
        created_at: Set(Utc::now()),
        attempted_at: Set(None),
        ..Default::default()
    };
    Entity::insert(row)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .try_insert()
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Remembers the last tick set on the Chatwoot message. Inside the writer's group transaction.
pub(crate) async fn set_last_status_in(db: &impl ConnectionTrait, row_id: i64, status: Tick) -> Result<(), DbErr> {
    let row = ActiveModel { last_status: Set(Some(status)), ..Default::default() };
    Entity::update_many().set(row).filter(Column::Id.eq(row_id)).exec(db).await?;
    Ok(())
}

/// The WhatsApp id of the newest message the customer sent in the chat.
pub async fn last_incoming(db: &DatabaseConnection, chat_id: i64) -> Result<Option<String>, StoreError> {
    use sea_orm::QueryOrder as _;
    Ok(Entity::find()
        .filter(Column::ChatId.eq(chat_id))
        .filter(Column::Direction.eq(Direction::Incoming))
        .order_by_desc(Column::Id)
        .one(db)
        .await?
        .map(|m| m.wa_id))
}

/// After a failed Chatwoot call: `Some(state)` with the attempt's start kept or cleared. `Pending` means
/// nothing was created (a replay creates at once); `Attempted` without `attempted_at` means "look it up
/// first, no need to wait"; with `attempted_at`, "wait for the call to settle, then look".
pub async fn set_attempt(
    db: &DatabaseConnection,
    row_id: i64,
    state: MappingState,
    attempted_at: Option<chrono::DateTime<Utc>>,
) -> Result<(), StoreError> {
    let row = ActiveModel {
        id: sea_orm::Unchanged(row_id),
        state: Set(state),
        attempted_at: Set(attempted_at),
        ..Default::default()
    };
    row.update(db).await?;
    Ok(())
}
