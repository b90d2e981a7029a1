//! Pruning: processed events and done replies older than `BRIDGE_RETENTION_MS` are deleted in small
//! batches, so the tables (and every query on them) stay small however long the bridge runs. Pending and
//! failed rows are never pruned: they are work still to do, or failures still to be seen.

use std::sync::Arc;
use std::time::Duration;

use crate::state::Shared;
use crate::store;

/// Rows deleted per statement: short transactions, so the message path never waits long behind one.
const BATCH: u64 = 1_000;

/// How often to prune: half the retention, between 1 s and 10 min.
fn interval(retention: Duration) -> Duration {
    (retention / 2).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

/// Runs forever on the current runtime, pruning at [`interval`].
pub async fn run(shared: Arc<Shared>) {
    let retention = shared.settings.retention;
    let mut ticks = tokio::time::interval(interval(retention));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Ok(services) = shared.booted() else { continue };
        let before = chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let (mut events, mut jobs) = (0u64, 0u64);
        loop {
            let pruned_events = store::events::prune_done(&services.db, before, BATCH).await;
            let pruned_jobs = store::jobs::prune_done(&services.db, before, BATCH).await;
            match (pruned_events, pruned_jobs) {
                (Ok(e), Ok(j)) => {
                    events += e;
                    jobs += j;
                    if e < BATCH && j < BATCH {
                        break;
                    }
                    // Let the message path have the writer between batches.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(%error, "pruning old rows failed; will try again");
                    break;
                }
            }
        }
        if events + jobs > 0 {
            tracing::info!(events, jobs, "pruned processed rows past the retention period");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prunes_at_half_the_retention_within_bounds() {
        assert_eq!(interval(Duration::from_millis(500)), Duration::from_secs(1));
        assert_eq!(interval(Duration::from_secs(60)), Duration::from_secs(30));
        assert_eq!(interval(Duration::from_secs(3 * 24 * 3600)), Duration::from_secs(600));
    }
}
