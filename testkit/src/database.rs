//! Fresh databases for one test or one bench mode: a SQLite file in a directory of the caller's, or a new
//! PostgreSQL database on the server `DATABASE_URL` names (when it is a `postgres…` URL), created here and
//! dropped by [`drop_postgres`].
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use sea_orm::ConnectionTrait as _;

/// The PostgreSQL server `DATABASE_URL` points at, if it points at one.
pub fn postgres_server() -> Option<String> {
    std::env::var("DATABASE_URL").ok().filter(|u| u.starts_with("postgres"))
}

/// The URL of a SQLite database file `bridge.db` in `dir` (created on first connection).
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/bridge.db?mode=rwc", dir.display())
}

/// Creates the database `name` on the PostgreSQL `server` and returns its URL.
pub async fn create_postgres(server: &str, name: &str) -> Result<String, String> {
    let admin = sea_orm::Database::connect(server).await.map_err(|e| format!("PostgreSQL: {e}"))?;
    let created = admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await;
    let _ = admin.close().await;
    created.map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
    Ok(replace_database(server, name))
}

/// Drops the database `name` on the PostgreSQL `server` (even while connections to it are open).
pub async fn drop_postgres(server: &str, name: &str) -> Result<(), String> {
    let admin = sea_orm::Database::connect(server).await.map_err(|e| format!("PostgreSQL: {e}"))?;
    let dropped = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
    let _ = admin.close().await;
    dropped.map(|_| ()).map_err(|e| format!("DROP DATABASE {name}: {e}"))
}

/// `server_url` with its database path replaced by `name` (the query string kept).
pub fn replace_database(server_url: &str, name: &str) -> String {
    let (base, query) = server_url.split_once('?').map_or((server_url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base.get(after_scheme..).and_then(|rest| rest.find('/')) {
        Some(slash) => base.get(..after_scheme + slash).unwrap_or(base),
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Random hex, for database and directory names (the clock's nanoseconds if the OS has no randomness).
pub fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        return format!("{:016x}", nanos as u64);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_database_keeps_the_server_and_the_query() {
        assert_eq!(
            replace_database("postgres://postgres@127.0.0.1:5432/postgres", "ri_test_1"),
            "postgres://postgres@127.0.0.1:5432/ri_test_1"
        );
        assert_eq!(replace_database("postgres://u:p@db/x?sslmode=disable", "n"), "postgres://u:p@db/n?sslmode=disable");
        assert_eq!(replace_database("postgres://db:5432", "n"), "postgres://db:5432/n");
    }
}
