//! `failover`: several replicas on one PostgreSQL. Time from `kill -9` of one replica (and from SIGTERM
//! of another) until every RyzeAPI link is connected again, and the steady-state cost of the leases: the
//! database transactions an idle cluster makes per second, per 1,000 integrations.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait as _, DatabaseConnection, DbBackend, Statement};

use crate::Opts;
use crate::report::{self, Table};
use crate::stack::{BenchDb, Bridge, Res, Stack};

const REPLICAS: usize = 3;

pub async fn failover(opts: &Opts, db: &BenchDb) -> Res<Table> {
    if db.kind() != "PostgreSQL" {
        return Err("failover needs PostgreSQL: run with DATABASE_URL=postgres://…".to_owned());
    }
    let count = opts.integrations;
    let key = crate::stack::random_key();
    let env = |i: usize| -> Vec<(String, String)> {
        vec![
            ("BRIDGE_REPLICA_NAME".to_owned(), format!("bench-r{i}")),
            ("BRIDGE_DATA_DIR".to_owned(), db.dir.join(format!("data-{i}")).display().to_string()),
            ("BRIDGE_ENCRYPTION_KEY".to_owned(), key.clone()),
        ]
    };
    let first = env(0);
    let first: Vec<(&str, &str)> = first.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let stack = Stack::start_with(db, &first).await?;
    let mut others = Vec::new();
    for i in 1..REPLICAS {
        let extra = env(i);
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        others.push(Bridge::start_with(db, stack.sim.url(), &extra).await?);
    }
    let admin = sea_orm::Database::connect(&db.url).await.map_err(|e| format!("PostgreSQL: {e}"))?;
    let mut table = Table::new(format!("failover — {count} integrations over {REPLICAS} replicas, PostgreSQL"));

    let instances: Vec<String> = (0..count).map(|i| format!("fo-{i:05}")).collect();
    let started = Instant::now();
    stack.activate_all(&instances, 8).await?;
    let within = Duration::from_secs(120) + Duration::from_millis(30 * count as u64);
    wait_all_connected(&stack, &instances, within).await?;
    table.info(format!("activate {count} on one replica → all connected"), report::secs(started.elapsed()));
    let spread = wait_spread(&admin, count, Duration::from_secs(120)).await?;
    table.info("integrations per replica once spread", format!("{spread:?}"));

    // Steady state: an idle cluster, only leases, heartbeats and re-reads.
    actix_web::rt::time::sleep(Duration::from_secs(5)).await;
    let window = Duration::from_secs(30);
    let before = transactions(&admin).await?;
    actix_web::rt::time::sleep(window).await;
    let after = transactions(&admin).await?;
    let per_second = (after - before) as f64 / window.as_secs_f64();
    table.info(
        "idle cluster: database transactions per second, per 1,000 integrations",
        format!("{:.1} ({per_second:.1} for {count})", per_second * 1000.0 / count.max(1) as f64),
    );

    // kill -9 of the replica holding the most: the others take over once its leases expire (one TTL).
    let killed_at = Instant::now();
    others[0].kill();
    wait_all_connected(&stack, &instances, Duration::from_secs(120)).await?;
    let back = killed_at.elapsed();
    table.target(
        "kill -9 of a replica → every link connected again",
        report::secs(back),
        "≤ 15 s",
        back <= Duration::from_secs(15),
    );

    // SIGTERM: the replica hands its integrations over at once.
    let stopped_at = Instant::now();
    if let Some(pid) = others[1].pid() {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid).status();
    }
    wait_all_connected(&stack, &instances, Duration::from_secs(120)).await?;
    table.info("SIGTERM of a replica → every link connected again", report::secs(stopped_at.elapsed()));
    others[1].terminate(Duration::from_secs(15));
    table.note(
        "the lease TTL is the default 10 s: a killed replica's integrations wait for it, a stopped one hands them over",
    );
    table.note("transactions from pg_stat_database.xact_commit of the bench's database (every statement the replicas made, the relay's included)");
    crate::inbound::log_notes(&stack, &mut table);
    Ok(table)
}

/// Every instance has exactly one open link.
async fn wait_all_connected(stack: &Stack, instances: &[String], within: Duration) -> Res<()> {
    let started = Instant::now();
    loop {
        let missing = instances.iter().filter(|i| stack.sim.connections(i) != 1).count();
        if missing == 0 {
            return Ok(());
        }
        if started.elapsed() >= within {
            return Err(format!("{missing} of {} links not connected (once) after {within:?}", instances.len()));
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every replica holds no more than its fair share plus one; answers the counts.
async fn wait_spread(admin: &DatabaseConnection, count: usize, within: Duration) -> Res<Vec<i64>> {
    let started = Instant::now();
    let share = count.div_ceil(REPLICAS) as i64;
    loop {
        let rows = admin
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*) FROM integration_leases WHERE owner IS NOT NULL AND expires_at > now() \
                 GROUP BY split_part(owner, '#', 1) ORDER BY 1",
            ))
            .await
            .map_err(|e| e.to_string())?;
        let counts: Vec<i64> = rows.iter().filter_map(|r| r.try_get_by_index::<i64>(0).ok()).collect();
        if counts.len() == REPLICAS && counts.iter().all(|n| *n <= share + 1) {
            return Ok(counts);
        }
        if started.elapsed() >= within {
            return Err(format!("leases never spread: {counts:?}"));
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn transactions(admin: &DatabaseConnection) -> Res<i64> {
    let row = admin
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        ))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no pg_stat_database row")?;
    row.try_get_by_index::<i64>(0).map_err(|e| e.to_string())
}
