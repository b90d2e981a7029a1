//! Queries on `replicas` and `integration_leases` (PostgreSQL only: several bridge processes on one
//! database). Every time is the database's (`now()`), so replicas whose clocks disagree still agree on
//! when a lease expires. See `integrations::ownership` for how they are used and `crate::fence` for
//! what the epoch protects.

use std::collections::HashSet;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};

use super::StoreError;
use crate::fence::FenceToken;

/// Integration statuses whose integrations run (and so are leased).
const LEASED_STATUSES: &str = "('active', 'error')";

fn statement(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

fn millis(duration: Duration) -> Value {
    Value::from(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
}

/// A lease this replica holds: the integration and its epoch.
pub type Held = (String, i64);

fn held_rows(rows: Vec<sea_orm::QueryResult>) -> Result<Vec<Held>, StoreError> {
    rows.into_iter()
        .map(|row| Ok((row.try_get_by_index::<String>(0)?, row.try_get_by_index::<i64>(1)?)))
        .collect::<Result<_, DbErr>>()
        .map_err(StoreError::from)
}

/// Records that `replica` (at `url`) is alive, and answers how many replicas are (seen within `alive`).
pub async fn heartbeat(db: &DatabaseConnection, replica: &str, url: &str, alive: Duration) -> Result<u64, StoreError> {
    db.execute_raw(statement(
        "INSERT INTO replicas (id, url, started_at, seen_at) VALUES ($1, $2, now(), now()) \
         ON CONFLICT (id) DO UPDATE SET seen_at = now(), url = EXCLUDED.url",
        vec![replica.into(), url.into()],
    ))
    .await?;
    let row = db
        .query_one_raw(statement(
            "SELECT count(*) FROM replicas WHERE seen_at > now() - ($1 * interval '1 millisecond')",
            vec![millis(alive)],
        ))
        .await?;
    Ok(row.and_then(|row| row.try_get_by_index::<i64>(0).ok()).map_or(1, |n| u64::try_from(n).unwrap_or(1).max(1)))
}

/// A replica stopping: it is no longer counted, and what it held is free at once.
pub async fn leave(db: &DatabaseConnection, replica: &str) -> Result<(), StoreError> {
    release_all(db, replica).await?;
    db.execute_raw(statement("DELETE FROM replicas WHERE id = $1", vec![replica.into()])).await?;
    Ok(())
}

/// Creates the missing lease rows of running integrations (unowned, expired) and forgets replicas not
/// seen for a day. Returns how many integrations are leased in all.
pub async fn prepare(db: &DatabaseConnection) -> Result<u64, StoreError> {
    db.execute_raw(statement(
        &format!(
            "INSERT INTO integration_leases (integration_id, owner, epoch, expires_at) \
             SELECT id, NULL, 0, now() FROM integrations WHERE status IN {LEASED_STATUSES} \
             ON CONFLICT (integration_id) DO NOTHING"
        ),
        vec![],
    ))
    .await?;
    db.execute_raw(statement("DELETE FROM replicas WHERE seen_at < now() - interval '1 day'", vec![])).await?;
    let row = db
        .query_one_raw(statement(
            &format!("SELECT count(*) FROM integrations WHERE status IN {LEASED_STATUSES}"),
            vec![],
        ))
        .await?;
    Ok(row.and_then(|row| row.try_get_by_index::<i64>(0).ok()).map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

/// Extends every unexpired lease `owner` holds by `ttl`; answers the leases still held.
pub async fn renew(db: &DatabaseConnection, owner: &str, ttl: Duration) -> Result<Vec<Held>, StoreError> {
    let rows = db
        .query_all_raw(statement(
            "UPDATE integration_leases SET expires_at = now() + ($2 * interval '1 millisecond') \
             WHERE owner = $1 AND expires_at > now() RETURNING integration_id, epoch",
            vec![owner.into(), millis(ttl)],
        ))
        .await?;
    held_rows(rows)
}

/// Takes up to `limit` leases that are free (expired — its own too: a replica that froze past its lease
/// takes it back with a new epoch if nobody else did — or, at start, held by an earlier process of the
/// same replica name `previous`: that process is gone), of running integrations, or only `only`'s. Each taken lease gets the next epoch.
/// `SKIP LOCKED`: replicas taking at the same moment take different leases.
pub async fn acquire(
    db: &DatabaseConnection,
    owner: &str,
    previous: Option<&str>,
    ttl: Duration,
    limit: u64,
    only: Option<&str>,
) -> Result<Vec<Held>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = db
        .query_all_raw(statement(
            &format!(
                "UPDATE integration_leases l SET owner = $1, epoch = l.epoch + 1, \
                   expires_at = now() + ($2 * interval '1 millisecond'), acquired_at = now() \
                 FROM (SELECT integration_id FROM integration_leases \
                       WHERE (expires_at <= now() OR (split_part(owner, '#', 1) = $3::text AND owner IS DISTINCT FROM $1)) \
                         AND ($5::text IS NULL OR integration_id = $5) \
                         AND integration_id IN (SELECT id FROM integrations WHERE status IN {LEASED_STATUSES}) \
                       ORDER BY expires_at LIMIT $4 FOR UPDATE SKIP LOCKED) free \
                 WHERE l.integration_id = free.integration_id RETURNING l.integration_id, l.epoch"
            ),
            vec![owner.into(), millis(ttl), previous.map(str::to_owned).into(), limit.into(), only.map(str::to_owned).into()],
        ))
        .await?;
    held_rows(rows)
}

/// Gives up `leases` (each at its epoch): free at once for any replica.
pub async fn release(db: &DatabaseConnection, owner: &str, leases: &[Held]) -> Result<(), StoreError> {
    for (integration_id, epoch) in leases {
        db.execute_raw(statement(
            "UPDATE integration_leases SET owner = NULL, expires_at = now() \
             WHERE integration_id = $1 AND owner = $2 AND epoch = $3",
            vec![integration_id.as_str().into(), owner.into(), (*epoch).into()],
        ))
        .await?;
    }
    Ok(())
}

/// Gives up every lease `owner` holds.
pub async fn release_all(db: &DatabaseConnection, owner: &str) -> Result<(), StoreError> {
    db.execute_raw(statement(
        "UPDATE integration_leases SET owner = NULL, expires_at = now() WHERE owner = $1",
        vec![owner.into()],
    ))
    .await?;
    Ok(())
}

/// Who owns an integration now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The owning process (`name#incarnation`).
    pub owner: String,
    pub epoch: i64,
    /// Where the owner serves its API, if it is a known replica.
    pub url: Option<String>,
}

/// The unexpired owner of `integration_id`, if any.
pub async fn owner_of(db: &DatabaseConnection, integration_id: &str) -> Result<Option<Owner>, StoreError> {
    let row = db
        .query_one_raw(statement(
            "SELECT l.owner, l.epoch, r.url FROM integration_leases l LEFT JOIN replicas r ON r.id = l.owner \
             WHERE l.integration_id = $1 AND l.owner IS NOT NULL AND l.expires_at > now()",
            vec![integration_id.into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Owner {
        owner: row.try_get_by_index(0)?,
        epoch: row.try_get_by_index(1)?,
        url: row.try_get_by_index::<Option<String>>(2)?,
    }))
}

/// Of `tokens`, the integrations whose epoch is no longer current: their writes are refused. Locks the
/// lease rows it read (`FOR SHARE`) until the caller's transaction ends, so no take-over can commit in
/// between.
pub async fn stale_in(db: &impl ConnectionTrait, tokens: &[&FenceToken]) -> Result<HashSet<String>, DbErr> {
    let mut ids: Vec<&str> = tokens.iter().map(|token| &*token.integration_id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
    let rows = db
        .query_all_raw(statement(
            &format!(
                "SELECT integration_id, epoch FROM integration_leases WHERE integration_id IN ({}) FOR SHARE",
                placeholders.join(", ")
            ),
            ids.iter().map(|id| Value::from(*id)).collect(),
        ))
        .await?;
    let mut current = std::collections::HashMap::new();
    for row in rows {
        current.insert(row.try_get_by_index::<String>(0)?, row.try_get_by_index::<i64>(1)?);
    }
    Ok(tokens
        .iter()
        .filter(|token| current.get(&*token.integration_id) != Some(&token.epoch))
        .map(|token| token.integration_id.to_string())
        .collect())
}

/// Sends `payload` to every replica listening on `channel` (delivered when the caller's statement
/// commits; a replica that is not listening then reads the state by polling instead).
pub async fn notify(db: &DatabaseConnection, channel: &str, payload: &str) -> Result<(), StoreError> {
    db.execute_raw(statement("SELECT pg_notify($1, $2)", vec![channel.into(), payload.into()])).await?;
    Ok(())
}

/// The leases and replicas, for the integration view and tests: `(integration, owner, epoch, live)`.
pub async fn all(db: &DatabaseConnection) -> Result<Vec<(String, Option<String>, i64, bool)>, StoreError> {
    let rows = db
        .query_all_raw(statement(
            "SELECT integration_id, owner, epoch, expires_at > now() FROM integration_leases ORDER BY integration_id",
            vec![],
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?, row.try_get_by_index(2)?, row.try_get_by_index(3)?))
        })
        .collect::<Result<_, DbErr>>()
        .map_err(StoreError::from)
}

/// Notifications on one channel, for as long as it is held (PostgreSQL `LISTEN`, on a connection of its
/// own that reconnects by itself).
pub struct Subscription {
    listener: sea_orm::sqlx::postgres::PgListener,
}

/// What a subscription received.
pub enum Heard {
    Payload(String),
    /// The connection was lost and is being re-made: notifications may have been missed meanwhile.
    Gap,
}

/// Listens on `channel` (PostgreSQL only: callers check [`super::Store::shared`]).
pub async fn listen(db: &DatabaseConnection, channel: &str) -> Result<Subscription, StoreError> {
    let pool = db.get_postgres_connection_pool();
    let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool)
        .await
        .map_err(|e| StoreError::Db(DbErr::Conn(sea_orm::RuntimeErr::Internal(e.to_string()))))?;
    listener
        .listen(channel)
        .await
        .map_err(|e| StoreError::Db(DbErr::Conn(sea_orm::RuntimeErr::Internal(e.to_string()))))?;
    Ok(Subscription { listener })
}

impl Subscription {
    /// The next notification, or a gap.
    pub async fn recv(&mut self) -> Result<Heard, StoreError> {
        match self.listener.try_recv().await {
            Ok(Some(notification)) => Ok(Heard::Payload(notification.payload().to_owned())),
            Ok(None) => Ok(Heard::Gap),
            Err(e) => Err(StoreError::Db(DbErr::Conn(sea_orm::RuntimeErr::Internal(e.to_string())))),
        }
    }
}

/// Moves an integration's epoch on and frees its lease: whoever runs it has its next write refused
/// and loses it at its next renewal (paused or deleted from another replica).
pub async fn fence_off(db: &DatabaseConnection, integration_id: &str) -> Result<(), StoreError> {
    db.execute_raw(statement(
        "UPDATE integration_leases SET owner = NULL, epoch = epoch + 1, expires_at = now() WHERE integration_id = $1",
        vec![integration_id.into()],
    ))
    .await?;
    Ok(())
}

/// The unexpired owner of every leased integration: `integration → (owner, its URL if a known replica)`.
pub async fn owners(
    db: &DatabaseConnection,
) -> Result<std::collections::HashMap<String, (String, Option<String>)>, StoreError> {
    let rows = db
        .query_all_raw(statement(
            "SELECT l.integration_id, l.owner, r.url FROM integration_leases l LEFT JOIN replicas r ON r.id = l.owner \
             WHERE l.owner IS NOT NULL AND l.expires_at > now()",
            vec![],
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            Ok((row.try_get_by_index(0)?, (row.try_get_by_index(1)?, row.try_get_by_index::<Option<String>>(2)?)))
        })
        .collect::<Result<_, DbErr>>()
        .map_err(StoreError::from)
}

/// The pending jobs of every integration `owner` holds: `(job, integration, conversation, Chatwoot
/// message)`, oldest first (one statement for the replica's periodic catch-up, whatever its size).
pub async fn pending_jobs_of_owner(
    db: &DatabaseConnection,
    owner: &str,
) -> Result<Vec<(i64, String, i64, i64)>, StoreError> {
    let rows = db
        .query_all_raw(statement(
            "SELECT j.id, j.integration_id, j.conversation_id, j.chatwoot_message_id FROM outbound_jobs j \
             JOIN integration_leases l ON l.integration_id = j.integration_id \
             WHERE l.owner = $1 AND j.state = 'pending' ORDER BY j.id LIMIT 10000",
            vec![owner.into()],
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?, row.try_get_by_index(2)?, row.try_get_by_index(3)?))
        })
        .collect::<Result<_, DbErr>>()
        .map_err(StoreError::from)
}
