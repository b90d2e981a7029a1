//! The only code that builds database queries. One file per table group; transactions live here too.
//! Callers get plain entity models and [`StoreError`]s, never query builders.

pub mod chats;
pub mod events;
pub mod integrations;
pub mod jobs;
pub mod messages;

use std::time::Duration;

use migration::MigratorTrait as _;
use sea_orm::{ConnectOptions, ConnectionTrait as _, Database, DatabaseConnection, DbBackend, DbErr};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("instance `{0}` already has an integration")]
    InstanceTaken(String),
}

/// Connects (SQLite or PostgreSQL, by URL scheme), applies SQLite's durability settings and runs pending
/// migrations.
pub async fn connect_and_migrate(url: &str) -> Result<DatabaseConnection, StoreError> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.sqlx_logging(false).connect_timeout(Duration::from_secs(10)).acquire_timeout(Duration::from_secs(10));
    if !url.starts_with("sqlite") {
        options.max_connections(16);
    }
    let db = Database::connect(options).await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        // WAL: readers do not block the writer; FULL sync keeps "stored before acknowledged" true.
        for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA busy_timeout = 5000"] {
            db.execute_unprepared(pragma).await?;
        }
    }
    migration::Migrator::up(&db, None).await?;
    Ok(db)
}

/// Whether the database answers.
pub async fn ping(db: &DatabaseConnection) -> Result<(), StoreError> {
    db.ping().await.map_err(StoreError::from)
}
