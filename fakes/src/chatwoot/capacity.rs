//! Capacity mode: a bounded pool of workers with a service time per request, as Puma serves Chatwoot.
//!
//! Chatwoot's `config/puma.rb` (chatwoot/chatwoot, read at commit `2953efeb3a90`) runs
//! `workers ENV.fetch('WEB_CONCURRENCY', 1)` processes of `threads min_threads_count, max_threads_count`
//! threads each, `max_threads_count = ENV.fetch('RAILS_MAX_THREADS', 5)` (older releases leave `workers`
//! commented out: one process): by default **5** requests are served at once. A request beyond that waits
//! for a free thread, so latency grows with concurrency once the threads are busy. [`Capacity`] models
//! that: `workers` slots (`WEB_CONCURRENCY × RAILS_MAX_THREADS`, [`Capacity::PUMA_DEFAULT_WORKERS`] by
//! default), taken in arrival order, and `service_time` in a slot per request that reaches Rails.
//!
//! Where a request spends its time, in capacity mode:
//! - a [`super::Fault::Status`] page comes from a proxy in front (Chatwoot down behind nginx): no slot;
//! - every other request waits for a slot; Rack::Attack (`req/ip`, [`FakeChatwoot::set_rate_limit`]) runs
//!   first inside it, and a throttled request is answered at once, without the service time;
//! - the rest hold the slot for `service_time`, then the route runs and answers (a late answer set with
//!   [`FakeChatwoot::answer_late_next`] keeps its slot while it waits, as a busy Puma thread would).
//!
//! Off by default: the tests rely on the fake answering at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::FakeChatwoot;

/// How much a Chatwoot can serve at once: `workers` requests in service, each for `service_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Requests served at once (Puma's `WEB_CONCURRENCY × RAILS_MAX_THREADS`); 0 counts as 1.
    pub workers: usize,
    /// Time a request holds its worker before the answer (Rails' own time: controller, callbacks, SQL).
    pub service_time: Duration,
}

impl Capacity {
    /// Chatwoot's default Puma: `WEB_CONCURRENCY` 1 × `RAILS_MAX_THREADS` 5 (`config/puma.rb`).
    pub const PUMA_DEFAULT_WORKERS: usize = 5;
}

/// What the pool saw since it was set (or since [`FakeChatwoot::reset_capacity_high_water`] for the mark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityStats {
    pub capacity: Capacity,
    /// Requests in service now.
    pub in_service: usize,
    /// Requests waiting for a worker now.
    pub waiting: usize,
    /// Most requests ever in service at once (never above `capacity.workers`).
    pub high_water: usize,
    /// Requests that finished their turn in a worker.
    pub served: u64,
    /// Requests that had to wait for a worker (all were busy when they came).
    pub queued: u64,
}

/// The workers: a fair (first come, first served) semaphore with counters beside it.
#[derive(Debug)]
pub(super) struct Pool {
    pub(super) capacity: Capacity,
    slots: Arc<Semaphore>,
    in_service: AtomicUsize,
    waiting: AtomicUsize,
    high_water: AtomicUsize,
    served: AtomicU64,
    queued: AtomicU64,
}

impl Pool {
    fn new(capacity: Capacity) -> Self {
        let capacity = Capacity { workers: capacity.workers.max(1), ..capacity };
        Self {
            capacity,
            slots: Arc::new(Semaphore::new(capacity.workers)),
            in_service: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            high_water: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            queued: AtomicU64::new(0),
        }
    }

    /// Waits for a free worker (in arrival order) and holds it until the answer is dropped.
    pub(super) async fn acquire(self: &Arc<Self>) -> Worker {
        if self.slots.available_permits() == 0 {
            self.queued.fetch_add(1, Ordering::Relaxed);
        }
        let waiting = Waiting::new(self);
        // The semaphore is never closed, so this only fails if it were; then the request goes unbounded.
        let permit = self.slots.clone().acquire_owned().await.ok();
        drop(waiting);
        let now = self.in_service.fetch_add(1, Ordering::AcqRel) + 1;
        self.high_water.fetch_max(now, Ordering::AcqRel);
        Worker { pool: self.clone(), _permit: permit }
    }

    fn stats(&self) -> CapacityStats {
        CapacityStats {
            capacity: self.capacity,
            in_service: self.in_service.load(Ordering::Acquire),
            waiting: self.waiting.load(Ordering::Acquire),
            high_water: self.high_water.load(Ordering::Acquire),
            served: self.served.load(Ordering::Acquire),
            queued: self.queued.load(Ordering::Acquire),
        }
    }
}

/// Counts a request as waiting while it waits (also when its client goes away meanwhile).
struct Waiting<'a>(&'a Pool);

impl<'a> Waiting<'a> {
    fn new(pool: &'a Pool) -> Self {
        pool.waiting.fetch_add(1, Ordering::AcqRel);
        Self(pool)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A worker held by one request.
pub(super) struct Worker {
    pool: Arc<Pool>,
    // Released after `drop` below has run, so `in_service` is down before another request gets the slot.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.pool.in_service.fetch_sub(1, Ordering::AcqRel);
        self.pool.served.fetch_add(1, Ordering::Relaxed);
    }
}

impl FakeChatwoot {
    /// Capacity mode (see the module docs): at most `capacity.workers` requests in service at once, each
    /// for `capacity.service_time`; the rest wait in arrival order. `None` (the default) turns it off.
    /// Requests already in service or waiting finish under the pool they started with.
    pub fn set_capacity(&self, capacity: Option<Capacity>) {
        self.state().capacity = capacity.map(|c| Arc::new(Pool::new(c)));
    }

    /// The pool's counters (`None`: capacity mode is off).
    pub fn capacity_stats(&self) -> Option<CapacityStats> {
        self.state().capacity.as_ref().map(|pool| pool.stats())
    }

    /// Starts the in-service high-water mark again from the requests in service now.
    pub fn reset_capacity_high_water(&self) {
        if let Some(pool) = self.state().capacity.as_ref() {
            pool.high_water.store(pool.in_service.load(Ordering::Acquire), Ordering::Release);
        }
    }

    /// How many requests got each status so far (cheaper than [`FakeChatwoot::requests`] for load figures).
    pub fn status_counts(&self) -> BTreeMap<u16, usize> {
        let mut counts = BTreeMap::new();
        for request in &self.state().requests {
            *counts.entry(request.status).or_insert(0) += 1;
        }
        counts
    }
}
