//! Queries on `outbound_jobs`.

use chrono::Utc;
use entity::outbound_job::{ActiveModel, Column, Entity, Model};
use sea_orm::ExprTrait as _;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _, Set,
};

use super::StoreError;
pub use super::events::WorkState;
/// What a job does; stored as its text (`send`, `delete`, `retry-<n>`, `tick-sent-<id>`).
pub use ryze_wire::keys::JobKind;

#[derive(Debug, Clone)]
pub struct NewJob {
    pub integration_id: String,
    pub chatwoot_message_id: i64,
    pub kind: JobKind,
    pub conversation_id: i64,
    pub payload: String,
}

/// Stores jobs in one statement, in their order; the id of each, or `None` where the same (message,
/// kind) is stored already or comes earlier in `jobs` (a duplicate webhook). Runs inside the writer's
/// group transaction, hence `ON CONFLICT DO NOTHING` rather than a unique-violation error.
pub(crate) async fn insert_many_in(db: &impl ConnectionTrait, jobs: &[&NewJob]) -> Result<Vec<Option<i64>>, DbErr> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let now = Utc::now();
    let rows = jobs.iter().map(|job| ActiveModel {
        integration_id: Set(job.integration_id.clone()),
        chatwoot_message_id: Set(job.chatwoot_message_id),
        kind: Set(job.kind.to_string()),
        conversation_id: Set(job.conversation_id),
        payload: Set(job.payload.clone()),
        state: Set(WorkState::Pending),
        attempts: Set(0),
        parts_sent: Set(0),
        last_error: Set(String::new()),
        created_at: Set(now),
        processed_at: Set(None),
        sending_at: Set(None),
        ..Default::default()
    });
    let keys = jobs.iter().map(|j| (j.integration_id.clone(), j.chatwoot_message_id, j.kind.to_string())).collect();
    let columns = vec![Column::IntegrationId, Column::ChatwootMessageId, Column::Kind];
    super::insert_new(db, rows.collect(), (Column::Id, columns), keys, |row| {
        Ok((row.try_get("", "integration_id")?, row.try_get("", "chatwoot_message_id")?, row.try_get("", "kind")?))
    })
    .await
}

pub async fn find(db: &DatabaseConnection, id: i64) -> Result<Option<Model>, StoreError> {
    Ok(Entity::find_by_id(id).one(db).await?)
}

/// `(id, conversation id)` of every pending job, oldest first.
pub async fn pending(db: &DatabaseConnection, integration_id: &str) -> Result<Vec<(i64, i64)>, StoreError> {
    Ok(Entity::find()
        .select_only()
        .column(Column::Id)
        .column(Column::ConversationId)
        .filter(Column::IntegrationId.eq(integration_id))
        .filter(Column::State.eq(WorkState::Pending))
        .order_by_asc(Column::Id)
        .into_tuple::<(i64, i64)>()
        .all(db)
        .await?)
}

/// Pending jobs as `(job, conversation, Chatwoot message, stored at)`: what the actor queues at start
/// (a job stored moments ago still waits out the rest of its reply order window).
pub async fn pending_with_messages(
    db: &DatabaseConnection,
    integration_id: &str,
) -> Result<Vec<(i64, i64, i64, chrono::DateTime<Utc>)>, StoreError> {
    Ok(Entity::find()
        .select_only()
        .column(Column::Id)
        .column(Column::ConversationId)
        .column(Column::ChatwootMessageId)
        .column(Column::CreatedAt)
        .filter(Column::IntegrationId.eq(integration_id))
        .filter(Column::State.eq(WorkState::Pending))
        .order_by_asc(Column::Id)
        .into_tuple::<(i64, i64, i64, chrono::DateTime<Utc>)>()
        .all(db)
        .await?)
}

/// How many retries (`retry-<n>` jobs) of this Chatwoot message were stored so far.
pub async fn count_retries(
    db: &DatabaseConnection,
    integration_id: &str,
    chatwoot_message_id: i64,
) -> Result<u64, StoreError> {
    use sea_orm::PaginatorTrait as _;
    Ok(Entity::find()
        .filter(Column::IntegrationId.eq(integration_id))
        .filter(Column::ChatwootMessageId.eq(chatwoot_message_id))
        .filter(Column::Kind.starts_with(JobKind::RETRY_PREFIX))
        .count(db)
        .await?)
}

/// Closes a job as `state` (`done` or `failed`, with the reason). Inside the writer's group transaction.
pub(crate) async fn finish_in(db: &impl ConnectionTrait, id: i64, state: WorkState, error: &str) -> Result<(), DbErr> {
    let row = ActiveModel {
        state: Set(state),
        last_error: Set(error.to_owned()),
        processed_at: Set(Some(Utc::now())),
        ..Default::default()
    };
    Entity::update_many().set(row).filter(Column::Id.eq(id)).exec(db).await?;
    Ok(())
}

pub async fn record_attempt(db: &DatabaseConnection, id: i64, attempts: i32, error: &str) -> Result<(), StoreError> {
    let row = ActiveModel {
        id: sea_orm::Unchanged(id),
        attempts: Set(attempts),
        last_error: Set(error.to_owned()),
        ..Default::default()
    };
    row.update(db).await?;
    Ok(())
}

/// Records that `parts` parts of the job's message were accepted by RyzeAPI (no send in the air). Inside
/// the writer's group transaction.
pub(crate) async fn set_parts_sent_in(db: &impl ConnectionTrait, id: i64, parts: i32) -> Result<(), DbErr> {
    let row = ActiveModel { parts_sent: Set(parts), sending_at: Set(None), ..Default::default() };
    Entity::update_many().set(row).filter(Column::Id.eq(id)).exec(db).await?;
    Ok(())
}

/// A RyzeAPI send for the job starts now (`Some`), or its outcome became known (`None`). Inside the
/// writer's group transaction.
pub(crate) async fn set_sending_in(
    db: &impl ConnectionTrait,
    id: i64,
    since: Option<chrono::DateTime<Utc>>,
) -> Result<(), DbErr> {
    let row = ActiveModel { sending_at: Set(since), ..Default::default() };
    Entity::update_many().set(row).filter(Column::Id.eq(id)).exec(db).await?;
    Ok(())
}

/// The newest `send`/`retry-*` job of a Chatwoot message.
pub async fn latest_send(
    db: &DatabaseConnection,
    integration_id: &str,
    chatwoot_message_id: i64,
) -> Result<Option<Model>, StoreError> {
    Ok(Entity::find()
        .filter(Column::IntegrationId.eq(integration_id))
        .filter(Column::ChatwootMessageId.eq(chatwoot_message_id))
        .filter(Column::Kind.eq(JobKind::Send.to_string()).or(Column::Kind.starts_with(JobKind::RETRY_PREFIX)))
        .order_by_desc(Column::Id)
        .one(db)
        .await?)
}

/// Pending and failed counts for one integration.
pub async fn counts(db: &DatabaseConnection, integration_id: &str) -> Result<(u64, u64), StoreError> {
    let filter = sea_orm::Condition::all().add(Column::IntegrationId.eq(integration_id));
    let rows = super::state_counts::<Entity>(db, (Column::Id, Column::State), filter).await?;
    Ok((super::count_of(&rows, WorkState::Pending), super::count_of(&rows, WorkState::Failed)))
}

pub async fn delete_for(db: &DatabaseConnection, integration_id: &str) -> Result<(), StoreError> {
    Entity::delete_many().filter(Column::IntegrationId.eq(integration_id)).exec(db).await?;
    Ok(())
}

/// Pending and failed jobs over all integrations (for `/metrics`).
pub async fn totals(db: &DatabaseConnection) -> Result<(u64, u64), StoreError> {
    super::pending_and_failed::<Entity>(db, (Column::Id, Column::State)).await
}

/// Deletes up to `limit` done jobs created before `before`; returns how many. Failed jobs stay: an
/// agent's retry of a failed message looks them up.
pub async fn prune_done(db: &DatabaseConnection, before: chrono::DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
    super::prune_done::<Entity>(db, (Column::Id, Column::State, Column::CreatedAt), before, limit).await
}
