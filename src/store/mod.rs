//! The only code that builds database queries. One file per table group; transactions live here too.
//! Callers get plain entity models and [`StoreError`]s, never query builders.

pub mod chats;
pub mod events;
pub mod integrations;
pub mod jobs;
pub mod leases;
pub mod messages;
pub mod trace;
pub mod writer;

use std::time::Duration;

use migration::MigratorTrait as _;
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ActiveModelTrait, ColumnTrait as _, Condition, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DbErr, EntityTrait, QueryFilter as _, QueryResult, QuerySelect as _, QueryTrait as _,
};

/// Runs a transaction in a task of its own, which its caller cannot cancel. A caller that goes away (an
/// actor that stops drops its futures) between `BEGIN` and its answer would otherwise leave, in sqlx 0.9.0,
/// a pooled PostgreSQL connection inside a transaction nobody ends: the next statements on it, acknowledged
/// writes included, run inside it and are lost when the connection closes (transact-rs/sqlx#4393, fixed
/// after 0.9.0). Every `begin()` outside the writer's own task goes through here.
pub(crate) async fn uncancellable<T: Send + 'static>(
    work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::spawn(work).await.map_err(|e| StoreError::Db(DbErr::Custom(format!("a transaction's task ended: {e}"))))?
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("instance `{0}` already has an integration")]
    InstanceTaken(String),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error(transparent)]
    Fenced(#[from] crate::fence::Fenced),
    #[error(
        "another bridge process is using {0}: SQLite serves one process; run several replicas on PostgreSQL (docs/operations.md)"
    )]
    InUse(String),
    #[error("cannot lock {path}: {error}")]
    Lock { path: String, error: String },
}

/// Connects (SQLite or PostgreSQL, by URL scheme) and runs pending migrations. On SQLite this is one
/// connection: SQLite has one writer at a time, and writers queued on one connection wait their turn
/// without SQLite's busy-wait sleeps.
pub async fn connect_and_migrate(url: &str) -> Result<DatabaseConnection, StoreError> {
    let db = connect(url, if is_sqlite(url) { 1 } else { 16 }, false).await?;
    if is_sqlite(url) {
        migration::Migrator::up(&db, None).await?;
    } else {
        migrate_serialized(url).await?;
    }
    Ok(db)
}

/// The advisory lock key that serializes migrations of replicas starting together ("ryzemig").
const MIGRATION_LOCK: i64 = 0x0072_797a_656d_6967;

/// Runs the migrations on PostgreSQL while holding an advisory lock, on a connection of its own: replicas
/// that start (or roll) at the same moment migrate one after the other, and the later ones find nothing
/// left to do. Without it, two of them create the same tables at once and one dies on
/// `pg_type_typname_nsp_index` or `seaql_migrations already exists`. The lock is the session's, so it
/// goes with the connection if this process dies mid-way.
async fn migrate_serialized(url: &str) -> Result<(), StoreError> {
    let lock = connect(url, 1, false).await?;
    let backend = lock.get_database_backend();
    lock.execute_raw(sea_orm::Statement::from_sql_and_values(
        backend,
        "SELECT pg_advisory_lock($1)",
        [MIGRATION_LOCK.into()],
    ))
    .await?;
    let migrated = migration::Migrator::up(&lock, None).await;
    let unlocked = lock
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            "SELECT pg_advisory_unlock($1)",
            [MIGRATION_LOCK.into()],
        ))
        .await;
    let _ = lock.close().await;
    migrated?;
    unlocked?;
    Ok(())
}

/// The exclusive lock a process holds on its SQLite database (a `.lock` file beside it) for as long as
/// it runs: a second process on the same file would be a second writer the single-process design does
/// not expect, so it refuses to start instead.
#[derive(Debug)]
pub struct ProcessLock {
    _file: Option<std::fs::File>,
}

impl ProcessLock {
    /// Locks `url`'s database file; PostgreSQL and in-memory databases need no lock.
    pub fn take(url: &str) -> Result<Self, StoreError> {
        let Some(path) = sqlite_path(url) else { return Ok(Self { _file: None }) };
        let lock_path = format!("{path}.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::Lock { path: lock_path.clone(), error: e.to_string() })?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: Some(file) }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse(path)),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Lock { path: lock_path, error: e.to_string() }),
        }
    }
}

/// The file of a SQLite URL (`sqlite://path?mode=rwc` → `path`); `None` for PostgreSQL or memory.
fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| path.to_owned())
}

/// The connections the running bridge works with.
#[derive(Clone, Debug)]
pub struct Store {
    /// Everything that writes, and reads that must see the latest write.
    pub db: DatabaseConnection,
    /// Reads on the hot paths. On SQLite, separate read-only connections beside the writer (WAL lets them
    /// run in parallel with it); on PostgreSQL, the same pool as `db`.
    pub reader: DatabaseConnection,
    /// Group commit for the writes every relayed message makes (see [`writer::Writers::of`]).
    pub writers: writer::Writers,
    /// Several bridge processes may share this database (PostgreSQL): integrations are leased.
    pub shared: bool,
}

/// Group-commit writers on PostgreSQL (of its 16 pooled connections); SQLite has one write connection.
const POSTGRES_WRITERS: usize = 4;

/// Read-only SQLite connections beside the writer.
const SQLITE_READERS: u32 = 4;

/// Connects, migrates, and starts the group-commit writer (on the current runtime).
pub async fn open(url: &str) -> Result<Store, StoreError> {
    let db = connect_and_migrate(url).await?;
    let reader = if is_sqlite(url) { connect(url, SQLITE_READERS, true).await? } else { db.clone() };
    let writers = writer::Writers::start(&db, if is_sqlite(url) { 1 } else { POSTGRES_WRITERS });
    Ok(Store { db, reader, writers, shared: !is_sqlite(url) })
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite")
}

/// A pool of `connections`. SQLite's settings are part of the connect options, so every pooled connection
/// has them (a PRAGMA sent once would reach only one connection).
async fn connect(url: &str, connections: u32, read_only: bool) -> Result<DatabaseConnection, StoreError> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .max_connections(connections)
        // WAL: readers do not block the writer; FULL sync keeps "stored before acknowledged" true even on
        // power loss; a writer waiting for the lock waits up to 5 s instead of failing at once.
        .map_sqlx_sqlite_opts(move |sqlite| {
            sqlite
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(5))
                // Readers must never write: every write goes through the one writer connection.
                .pragma("query_only", if read_only { "ON" } else { "OFF" })
        });
    Ok(Database::connect(options).await?)
}

/// `(state, count)` of the rows of a table with a `state` column that match `filter`.
async fn state_counts<E>(
    db: &DatabaseConnection,
    (id, state): (E::Column, E::Column),
    filter: Condition,
) -> Result<Vec<(String, u64)>, StoreError>
where
    E: EntityTrait,
{
    let rows = E::find()
        .select_only()
        .column(state)
        .column_as(id.count(), "n")
        .filter(filter)
        .group_by(state)
        .into_tuple::<(String, i64)>()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(state, n)| (state, u64::try_from(n).unwrap_or(0))).collect())
}

/// The count of `state` in `(state, count)` rows.
fn count_of(rows: &[(String, u64)], state: entity::WorkState) -> u64 {
    rows.iter().find(|(s, _)| s == state.as_str()).map_or(0, |(_, n)| *n)
}

/// The `(pending, failed)` counts of a table with a `state` column, over all integrations (processed rows
/// are not counted: they are pruned, and counting them would grow with the table).
async fn pending_and_failed<E>(
    db: &DatabaseConnection,
    columns: (E::Column, E::Column),
) -> Result<(u64, u64), StoreError>
where
    E: EntityTrait,
{
    use entity::WorkState::{Failed, Pending};
    let rows =
        state_counts::<E>(db, columns, Condition::all().add(columns.1.is_in([Pending.as_str(), Failed.as_str()])))
            .await?;
    Ok((count_of(&rows, Pending), count_of(&rows, Failed)))
}

/// Deletes up to `limit` rows in state `done` whose `at` is before `before`; returns how many. In
/// batches, so the writer connection is never held for long.
async fn prune_done<E>(
    db: &DatabaseConnection,
    (id, state, at): (E::Column, E::Column, E::Column),
    before: chrono::DateTime<chrono::Utc>,
    limit: u64,
) -> Result<u64, StoreError>
where
    E: EntityTrait,
{
    let ids: Vec<i64> = E::find()
        .select_only()
        .column(id)
        .filter(state.eq(entity::WorkState::Done))
        .filter(at.lt(before))
        .limit(limit)
        .into_tuple::<i64>()
        .all(db)
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(E::delete_many().filter(id.is_in(ids)).exec(db).await?.rows_affected)
}

/// Inserts `rows` in one statement, skipping each row that conflicts with a unique index (a stored row,
/// or an earlier one of `rows`), and returns, in the order of `keys`, the id each row got or `None` where
/// it was skipped. `keys[i]` is row `i`'s unique key; `returned` reads the same key from a row the
/// statement returns (`RETURNING id, key_columns…`). Used inside the writer's group transaction: a
/// conflict must not be an error there (on PostgreSQL an error aborts the whole transaction).
async fn insert_new<A, K>(
    db: &impl ConnectionTrait,
    rows: Vec<A>,
    (id, key_columns): (<A::Entity as EntityTrait>::Column, Vec<<A::Entity as EntityTrait>::Column>),
    keys: Vec<K>,
    returned: impl Fn(&QueryResult) -> Result<K, DbErr>,
) -> Result<Vec<Option<i64>>, DbErr>
where
    A: ActiveModelTrait,
    K: PartialEq,
{
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut insert = <A::Entity as EntityTrait>::insert_many(rows)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .into_query();
    insert.returning(Query::returning().columns(std::iter::once(id).chain(key_columns)));
    let mut inserted = Vec::new();
    for row in db.query_all(&insert).await? {
        inserted.push((row.try_get_by_index::<i64>(0)?, returned(&row)?));
    }
    // Rows with equal keys (events without any key, which nothing deduplicates) are told apart only by
    // the order they come back in: the order they were inserted in, on SQLite and PostgreSQL alike for a
    // multi-row VALUES (tests/store_writer.rs checks it). So take each key's first match and keep the rest
    // in order; a swap_remove here once handed such rows to the wrong callers.
    Ok(keys
        .iter()
        .map(|key| {
            let position = inserted.iter().position(|(_, inserted_key)| inserted_key == key);
            position.map(|position| inserted.remove(position).0)
        })
        .collect())
}

/// Whether the database answers.
pub async fn ping(db: &DatabaseConnection) -> Result<(), StoreError> {
    db.ping().await.map_err(StoreError::from)
}
