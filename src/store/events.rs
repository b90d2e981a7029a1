//! Queries on `inbound_events`: store-before-acknowledge, the pending queue, processing outcomes.

use chrono::{DateTime, Utc};
use entity::inbound_event::{ActiveModel, Column, Entity, Model};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _, Set,
};

use super::StoreError;

/// `pending`, `done` or `failed`, as stored.
pub use entity::WorkState;

/// An event to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub integration_id: String,
    pub event_id: Option<String>,
    pub message_key: Option<String>,
    pub chat_key: String,
    pub kind: String,
    pub payload: String,
}

/// Result of [`insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new row, to be processed.
    New(i64),
    /// The event (or its WhatsApp message) was stored before: acknowledge it, process nothing.
    Duplicate,
}

/// Stores events durably, in one statement and in their order (ids rise with it); the outcome of each,
/// in the same order. A duplicate (same event id or same message key as a stored event, or as an
/// earlier one of `events`) is reported, not stored. Runs inside the writer's group transaction: a
/// duplicate must not be an error there (on PostgreSQL an error aborts the whole transaction), hence
/// `ON CONFLICT DO NOTHING`; `RETURNING` tells which rows went in.
pub(crate) async fn insert_many_in(db: &impl ConnectionTrait, events: &[&NewEvent]) -> Result<Vec<Stored>, DbErr> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let now = Utc::now();
    let rows = events.iter().map(|event| ActiveModel {
        integration_id: Set(event.integration_id.clone()),
        event_id: Set(event.event_id.clone()),
        message_key: Set(event.message_key.clone()),
        chat_key: Set(event.chat_key.clone()),
        kind: Set(event.kind.clone()),
        payload: Set(event.payload.clone()),
        state: Set(WorkState::Pending),
        attempts: Set(0),
        next_attempt_at: Set(None),
        last_error: Set(String::new()),
        received_at: Set(now),
        processed_at: Set(None),
        ..Default::default()
    });
    let keys = events.iter().map(|e| (e.integration_id.clone(), e.event_id.clone(), e.message_key.clone())).collect();
    let columns = vec![Column::IntegrationId, Column::EventId, Column::MessageKey];
    let ids = super::insert_new(db, rows.collect(), (Column::Id, columns), keys, |row| {
        Ok((row.try_get("", "integration_id")?, row.try_get("", "event_id")?, row.try_get("", "message_key")?))
    })
    .await?;
    Ok(ids.into_iter().map(|id| id.map_or(Stored::Duplicate, Stored::New)).collect())
}

/// `(id, chat key)` of every pending event of the integration, oldest first.
pub async fn pending(db: &DatabaseConnection, integration_id: &str) -> Result<Vec<(i64, String)>, StoreError> {
    Ok(Entity::find()
        .select_only()
        .column(Column::Id)
        .column(Column::ChatKey)
        .filter(Column::IntegrationId.eq(integration_id))
        .filter(Column::State.eq(WorkState::Pending))
        .order_by_asc(Column::Id)
        .into_tuple::<(i64, String)>()
        .all(db)
        .await?)
}

pub async fn find(db: &DatabaseConnection, id: i64) -> Result<Option<Model>, StoreError> {
    Ok(Entity::find_by_id(id).one(db).await?)
}

/// Marks events processed, in one statement (inside the writer's group transaction).
pub(crate) async fn mark_done_many_in(db: &impl ConnectionTrait, ids: &[i64]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let row = ActiveModel {
        state: Set(WorkState::Done),
        processed_at: Set(Some(Utc::now())),
        next_attempt_at: Set(None),
        ..Default::default()
    };
    Entity::update_many().set(row).filter(Column::Id.is_in(ids.iter().copied())).exec(db).await?;
    Ok(())
}

/// Records a failed attempt that will be retried at `next_attempt_at`.
pub async fn mark_retry(
    db: &DatabaseConnection,
    id: i64,
    next_attempt_at: DateTime<Utc>,
    error: &str,
) -> Result<(), StoreError> {
    let Some(model) = find(db, id).await? else { return Ok(()) };
    let attempts = model.attempts.saturating_add(1);
    update(db, id, |row| {
        row.attempts = Set(attempts);
        row.next_attempt_at = Set(Some(next_attempt_at));
        row.last_error = Set(error.to_owned());
    })
    .await
}

/// Marks an event finally failed (visible in the `failed` queue count and `last_error`).
pub async fn mark_failed(db: &DatabaseConnection, id: i64, error: &str) -> Result<(), StoreError> {
    update(db, id, |row| {
        row.state = Set(WorkState::Failed);
        row.processed_at = Set(Some(Utc::now()));
        row.last_error = Set(error.to_owned());
    })
    .await
}

async fn update(db: &DatabaseConnection, id: i64, change: impl FnOnce(&mut ActiveModel)) -> Result<(), StoreError> {
    let mut row = ActiveModel { id: sea_orm::Unchanged(id), ..Default::default() };
    change(&mut row);
    row.update(db).await?;
    Ok(())
}

/// Payloads of the `message.exchange` events received since `since` in the chat `chat_id` (under any of
/// its aliases), oldest first: where WhatsApp's echo of a send whose outcome is unknown would be.
pub async fn exchanges_in_chat_since(
    db: &DatabaseConnection,
    integration_id: &str,
    chat_id: i64,
    since: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let aliases = super::chats::aliases_of(db, integration_id, chat_id).await?;
    Ok(Entity::find()
        .select_only()
        .column(Column::Payload)
        .filter(Column::IntegrationId.eq(integration_id))
        .filter(Column::ChatKey.is_in(aliases))
        .filter(Column::Kind.eq("message.exchange"))
        .filter(Column::ReceivedAt.gte(since))
        .order_by_asc(Column::Id)
        .into_tuple::<String>()
        .all(db)
        .await?)
}

/// The stored frame of the message event with this `message_key` (`msg:<WhatsApp id>`), while retention
/// keeps it.
pub async fn payload_by_message_key(
    db: &DatabaseConnection,
    integration_id: &str,
    message_key: &str,
) -> Result<Option<String>, StoreError> {
    Ok(Entity::find()
        .select_only()
        .column(Column::Payload)
        .filter(Column::IntegrationId.eq(integration_id))
        .filter(Column::MessageKey.eq(message_key))
        .into_tuple::<String>()
        .one(db)
        .await?)
}

/// Counts by state for one integration.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EventCounts {
    pub total: u64,
    pub pending: u64,
    pub failed: u64,
}

pub async fn counts(db: &DatabaseConnection, integration_id: &str) -> Result<EventCounts, StoreError> {
    let filter = Condition::all().add(Column::IntegrationId.eq(integration_id));
    let rows = super::state_counts::<Entity>(db, (Column::Id, Column::State), filter).await?;
    Ok(EventCounts {
        total: rows.iter().map(|(_, n)| *n).sum(),
        pending: super::count_of(&rows, WorkState::Pending),
        failed: super::count_of(&rows, WorkState::Failed),
    })
}

/// Removes every event of an integration (on deactivation).
pub async fn delete_for(db: &DatabaseConnection, integration_id: &str) -> Result<u64, StoreError> {
    Ok(Entity::delete_many().filter(Column::IntegrationId.eq(integration_id)).exec(db).await?.rows_affected)
}

/// Pending and failed events over all integrations (for `/metrics`).
pub async fn totals(db: &DatabaseConnection) -> Result<(u64, u64), StoreError> {
    super::pending_and_failed::<Entity>(db, (Column::Id, Column::State)).await
}

/// Deletes up to `limit` processed events received before `before`; returns how many.
pub async fn prune_done(db: &DatabaseConnection, before: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
    super::prune_done::<Entity>(db, (Column::Id, Column::State, Column::ReceivedAt), before, limit).await
}
