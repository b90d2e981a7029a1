//! Whether this process may still act for an integration: the fence of a lease (several replicas on
//! one PostgreSQL, `docs/decisions.md` "Replicas").
//!
//! A replica owns an integration through a lease row with an **epoch** that grows at every change of
//! owner. Two checks keep a former owner from acting after someone else took over:
//! - **in the database**: writes on the relay path carry the epoch ([`Fence::token`]) and the writer
//!   refuses them when the stored epoch is newer (`store::leases::stale_in`);
//! - **before each call to Chatwoot or RyzeAPI** ([`Fence::holds`]): the lease is held only until a
//!   local deadline that ends *before* the lease can expire in the database (the deadline is counted
//!   from when the renewal was sent, on the monotonic clock, minus a margin). A process that was paused
//!   (GC, SIGSTOP, a cut network) past it finds its deadline gone when it wakes and stops, without asking
//!   anyone.
//!
//! A single process (SQLite, or PostgreSQL without replicas) uses [`Fence::always`], which always holds
//! and carries no epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// This replica's lease clock: until when every lease it renewed is held, shared by all its fences
/// (one statement renews them all).
#[derive(Debug)]
pub struct LeaseClock {
    origin: Instant,
    /// Milliseconds after `origin` until which the leases are held; 0: not held.
    held_until_ms: AtomicU64,
}

impl LeaseClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { origin: Instant::now(), held_until_ms: AtomicU64::new(0) })
    }

    /// The leases were renewed by a statement sent at `sent`, for `ttl`: they are held until
    /// `sent + ttl - margin` (never later than before).
    pub fn renewed(&self, sent: Instant, ttl: Duration, margin: Duration) {
        let until = sent.saturating_duration_since(self.origin) + ttl.saturating_sub(margin);
        let until = u64::try_from(until.as_millis()).unwrap_or(u64::MAX);
        self.held_until_ms.fetch_max(until, Ordering::AcqRel);
    }

    /// Whether the leases are held now.
    pub fn holds(&self) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        now < self.held_until_ms.load(Ordering::Acquire)
    }

    /// Time left until the leases are no longer held (zero when they are not).
    pub fn remaining(&self) -> Duration {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.held_until_ms.load(Ordering::Acquire).saturating_sub(now))
    }
}

/// What the database checks a fenced write against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceToken {
    pub integration_id: Arc<str>,
    pub epoch: i64,
}

/// One integration's permission to act here.
#[derive(Debug, Clone)]
pub struct Fence {
    inner: Option<Arc<Held>>,
}

#[derive(Debug)]
struct Held {
    token: FenceToken,
    clock: Arc<LeaseClock>,
    /// Set when the lease is given up or lost: nothing of this epoch acts again.
    revoked: AtomicBool,
}

impl Fence {
    /// A single process: always holds, no epoch to check.
    pub fn always() -> Self {
        Self { inner: None }
    }

    /// The lease of `integration_id` at `epoch`, held while `clock` holds and until revoked.
    pub fn leased(integration_id: &str, epoch: i64, clock: Arc<LeaseClock>) -> Self {
        let token = FenceToken { integration_id: Arc::from(integration_id), epoch };
        Self { inner: Some(Arc::new(Held { token, clock, revoked: AtomicBool::new(false) })) }
    }

    /// Whether this process may act for the integration now.
    pub fn holds(&self) -> bool {
        self.inner.as_ref().is_none_or(|held| !held.revoked.load(Ordering::Acquire) && held.clock.holds())
    }

    /// The epoch writes must carry (`None` for a single process).
    pub fn token(&self) -> Option<&FenceToken> {
        self.inner.as_ref().map(|held| &held.token)
    }

    /// The epoch of the lease (`None` for a single process).
    pub fn epoch(&self) -> Option<i64> {
        self.token().map(|token| token.epoch)
    }

    /// The lease is given up or lost: this fence never holds again.
    pub fn revoke(&self) {
        if let Some(held) = &self.inner {
            held.revoked.store(true, Ordering::Release);
        }
    }
}

/// Refused: the lease is no longer held here (another replica may own the integration now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this replica no longer holds the integration's lease")]
pub struct Fenced;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_until_its_local_deadline_and_never_after_revoke() {
        let clock = LeaseClock::new();
        let fence = Fence::leased("int_a", 3, clock.clone());
        assert!(!fence.holds(), "not renewed yet");
        clock.renewed(Instant::now(), Duration::from_secs(10), Duration::from_secs(3));
        assert!(fence.holds());
        assert!(clock.remaining() > Duration::from_secs(6) && clock.remaining() <= Duration::from_secs(7));
        // An older renewal's answer arriving late never shortens the deadline.
        clock.renewed(Instant::now() - Duration::from_secs(60), Duration::from_secs(10), Duration::from_secs(3));
        assert!(fence.holds());
        fence.revoke();
        assert!(!fence.holds());
        assert_eq!(fence.epoch(), Some(3));
    }

    #[test]
    fn a_renewal_sent_too_long_ago_holds_nothing() {
        let clock = LeaseClock::new();
        std::thread::sleep(Duration::from_millis(30));
        clock.renewed(clock.origin, Duration::from_millis(20), Duration::ZERO);
        assert!(!clock.holds());
        assert!(Fence::always().holds());
    }
}
