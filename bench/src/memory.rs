//! Resident memory per connected idle integration, time to connect them all, and time to boot and
//! reconnect them all after the bridge is killed.

use std::time::{Duration, Instant};

use crate::Opts;
use crate::report::{self, Table};
use crate::stack::{BenchDb, Res, Stack};

/// Lets the process settle before reading `VmRSS`.
const SETTLE: Duration = Duration::from_secs(2);

pub async fn memory(opts: &Opts, db: &BenchDb) -> Res<Table> {
    let count = opts.integrations;
    let mut stack = Stack::start(db).await?;
    let mut table = Table::new(format!("memory and (re)connection — {count} idle integrations, {}", db.kind()));
    actix_web::rt::time::sleep(SETTLE).await;
    let rss_empty = stack.bridge.rss_kib().ok_or("cannot read the bridge's VmRSS")?;
    let instances: Vec<String> = (0..count).map(|i| format!("idle-{i:05}")).collect();
    let calls_before = stack.chatwoot.requests().len();
    let started = Instant::now();
    stack.activate_all(&instances, 8).await?;
    let activated = started.elapsed();
    let within = Duration::from_secs(60) + Duration::from_millis(30 * count as u64);
    stack.wait_connected(count, within).await?;
    let all_connected = started.elapsed();
    actix_web::rt::time::sleep(SETTLE).await;
    let rss_connected = stack.bridge.rss_kib().ok_or("cannot read the bridge's VmRSS")?;
    let calls = stack.chatwoot.requests().len().saturating_sub(calls_before) as f64 / count.max(1) as f64;
    let per = |rss: u64| rss.saturating_sub(rss_empty) as f64 / count.max(1) as f64;

    table.info("bridge VmRSS, booted, no integration", report::mib(rss_empty));
    table.info(format!("bridge VmRSS, {count} connected idle integrations"), report::mib(rss_connected));
    let per_connected = per(rss_connected);
    let figure = "resident memory per connected idle integration";
    if count >= 10_000 {
        table.target(figure, format!("{per_connected:.1} KiB"), "≤ 64 KiB at 10,000", per_connected <= 64.0);
    } else {
        table.info(figure, format!("{per_connected:.1} KiB"));
    }
    table.info(
        format!("activate {count} (8 at a time, {calls:.1} Chatwoot calls each)"),
        format!("{} ({:.0}/s)", report::secs(activated), report::rate(count as f64, activated)),
    );
    table.info("first activation → all links connected", report::secs(all_connected));

    // A crash: SIGKILL, start again on the same database, wait until every link is back.
    stack.bridge.kill();
    let restarted = Instant::now();
    let boot = stack.bridge.spawn().await?;
    stack.wait_connected(count, within).await?;
    let reconnected = restarted.elapsed();
    actix_web::rt::time::sleep(SETTLE).await;
    let rss_restarted = stack.bridge.rss_kib().ok_or("cannot read the bridge's VmRSS")?;
    table.info("after SIGKILL: start → /readyz 200", report::secs(boot));
    table.info(format!("after SIGKILL: start → all {count} links connected"), report::secs(reconnected));
    table.info(format!("bridge VmRSS after the restart, {count} connected"), report::mib(rss_restarted));
    table.info("resident memory per integration after the restart", format!("{:.1} KiB", per(rss_restarted)));
    table.note("per-integration memory = (VmRSS with all connected − VmRSS of the booted bridge with none) / count");
    crate::inbound::log_notes(&stack, &mut table);
    Ok(table)
}
