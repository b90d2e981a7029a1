//! One governor per Chatwoot (base URL), shared by every integration of the process that points at it.
//!
//! A real Chatwoot lets one client IP make `RACK_ATTACK_LIMIT` (3,000) requests a minute and answers the
//! rest `429 Retry later` with no `Retry-After` (`config/initializers/rack_attack.rb`); it also slows down
//! as concurrency grows. The governor keeps the whole process just under that budget and adapts how many
//! calls run at once:
//! - a token bucket at the budget (a little under it, and never more than a second of burst);
//! - a concurrency limit that grows by one per round of successful calls and halves on a 429, a 5xx, a
//!   timeout, or latency grown to several times its best; a 429 also stops the host for a moment and lowers
//!   the rate, which then creeps back up;
//! - waiting calls are served by priority (live traffic, then backlog replay, then ticks and notes) and,
//!   within a priority, in arrival order, so that one integration's backlog (at most its actor's in-flight
//!   items wait at once) never starves another's.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What a call is for; lower goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// A customer's new message, an agent's reply: someone is waiting for it.
    Live = 0,
    /// Replaying what is stored (a backlog after an outage, a retry).
    Backlog = 1,
    /// Ticks, notes and other calls nobody waits for.
    Background = 2,
}

impl Priority {
    pub const ALL: [Self; 3] = [Self::Live, Self::Backlog, Self::Background];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Backlog => "backlog",
            Self::Background => "background",
        }
    }
}

/// How a governed call ended, for the adaptive limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    Ok,
    /// 429: over Chatwoot's budget.
    Throttled,
    /// 5xx, timeout, no answer: Chatwoot is struggling.
    Overloaded,
    /// Any other answer (4xx): says nothing about load.
    Neutral,
}

/// Smallest and largest number of calls in flight per host.
const MIN_CONCURRENCY: usize = 1;
const MAX_CONCURRENCY: usize = 64;
const START_CONCURRENCY: usize = 16;
/// The share of the budget used: a margin for clocks and for Chatwoot's fixed windows.
const BUDGET_SHARE: f64 = 0.97;
/// How long a 429 stops the host (Chatwoot says nothing; its window is a minute, but most of the excess
/// is a burst that a pause absorbs).
const THROTTLE_PAUSE: Duration = Duration::from_secs(1);
/// How far a 429 lowers the rate, and how fast (per second) it creeps back to the budget.
const THROTTLE_RATE_CUT: f64 = 0.8;
const RATE_RECOVERY_PER_SEC: f64 = 0.01;
/// Latency this many times the best seen counts as overload.
const LATENCY_OVERLOAD: f64 = 4.0;

/// The governors of this process, by Chatwoot base URL.
#[derive(Debug)]
pub struct Governors {
    by_host: Mutex<HashMap<String, Arc<Governor>>>,
    /// Requests a minute per host (`None`: unlimited), and per-host overrides.
    default_budget: Option<u32>,
    overrides: HashMap<String, Option<u32>>,
    /// Replicas sharing each budget (see [`Governors::split_among`]).
    replicas: std::sync::atomic::AtomicU32,
}

impl Governors {
    pub fn new(default_budget: Option<u32>, overrides: HashMap<String, Option<u32>>) -> Self {
        Self {
            by_host: Mutex::new(HashMap::new()),
            default_budget,
            overrides,
            replicas: std::sync::atomic::AtomicU32::new(1),
        }
    }

    /// `replicas` bridge processes share every Chatwoot's budget: each uses an equal part of it, so that
    /// together they stay under what Chatwoot allows one client (they usually reach it from one egress IP).
    pub fn split_among(&self, replicas: u32) {
        let replicas = replicas.max(1);
        if self.replicas.swap(replicas, std::sync::atomic::Ordering::AcqRel) == replicas {
            return;
        }
        for governor in self.by_host.lock().unwrap_or_else(PoisonError::into_inner).values() {
            governor.split_among(replicas);
        }
    }

    /// The governor of `base_url` (created on first use).
    pub fn of(&self, base_url: &str) -> Arc<Governor> {
        let mut by_host = self.by_host.lock().unwrap_or_else(PoisonError::into_inner);
        by_host
            .entry(base_url.to_owned())
            .or_insert_with(|| {
                let host = host_of(base_url).to_ascii_lowercase();
                let budget = match self.overrides.get(&host) {
                    Some(budget) => *budget,
                    // Rack::Attack's safelist: `127.0.0.1` and `::1` are never throttled.
                    None if is_loopback(&host) => None,
                    None => self.default_budget,
                };
                let governor = Governor::new(budget);
                governor.split_among(self.replicas.load(std::sync::atomic::Ordering::Acquire));
                Arc::new(governor)
            })
            .clone()
    }

    /// A snapshot of every host's governor, for `/metrics` and the integration view.
    pub fn snapshots(&self) -> Vec<(String, Snapshot)> {
        let by_host = self.by_host.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<(String, Snapshot)> = by_host.iter().map(|(host, g)| (host.clone(), g.snapshot())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

impl Governors {
    /// The governor of `base_url` if it was used already (a view must not create one).
    pub fn existing(&self, base_url: &str) -> Option<Arc<Governor>> {
        self.by_host.lock().unwrap_or_else(PoisonError::into_inner).get(base_url).cloned()
    }

    /// `/metrics` series of every host's governor.
    pub fn gauges(&self) -> Vec<crate::telemetry::Gauge> {
        use crate::telemetry::Gauge;
        let mut gauges = Vec::new();
        for (host, snapshot) in self.snapshots() {
            let host_label = || vec![("host", host.clone())];
            let mut push = |name, help, labels, value| gauges.push(Gauge { name, help, labels, value });
            push(
                "bridge_chatwoot_budget_per_minute",
                "Requests a minute the bridge allows itself against this Chatwoot (-1: unlimited).",
                host_label(),
                snapshot.budget_per_minute.map_or(-1.0, f64::from),
            );
            push(
                "bridge_chatwoot_rate_per_minute",
                "The rate used now (a 429 lowers it; it creeps back to the budget; -1: unlimited).",
                host_label(),
                snapshot.rate_per_minute.unwrap_or(-1.0),
            );
            push(
                "bridge_chatwoot_concurrency_limit",
                "Calls allowed in flight at once (adaptive).",
                host_label(),
                snapshot.concurrency_limit as f64,
            );
            push("bridge_chatwoot_in_flight", "Calls in flight.", host_label(), snapshot.in_flight as f64);
            for priority in Priority::ALL {
                let mut labels = host_label();
                labels.push(("priority", priority.as_str().to_owned()));
                push(
                    "bridge_chatwoot_waiting",
                    "Calls waiting for the governor, by priority.",
                    labels,
                    snapshot.waiting[priority as usize] as f64,
                );
            }
            push(
                "bridge_chatwoot_throttled_total",
                "429 answers (Rack::Attack) from this Chatwoot.",
                host_label(),
                snapshot.throttled_total as f64,
            );
            push(
                "bridge_chatwoot_overloaded_total",
                "5xx, timeouts and unanswered calls.",
                host_label(),
                snapshot.overloaded_total as f64,
            );
            push(
                "bridge_chatwoot_governed_calls_total",
                "Calls let through by the governor.",
                host_label(),
                snapshot.calls_total as f64,
            );
            push(
                "bridge_chatwoot_waited_seconds_total",
                "Seconds calls waited for the governor, summed.",
                host_label(),
                snapshot.waited_seconds_total,
            );
        }
        // One block per series name, hosts within it (the exposition format wants a name's lines together).
        gauges.sort_by_key(|g| g.name);
        gauges
    }
}

/// `https://chat.example.com:8443` → `chat.example.com:8443` (overrides name hosts, not URLs).
fn host_of(base_url: &str) -> &str {
    let rest = base_url.split_once("://").map_or(base_url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host
            .rsplit_once(':')
            .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }),
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What a governor shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Requests a minute allowed (`None`: unlimited) and the rate used now (a 429 lowers it).
    pub budget_per_minute: Option<u32>,
    pub rate_per_minute: Option<f64>,
    pub concurrency_limit: usize,
    pub in_flight: usize,
    /// Calls waiting, by priority (live, backlog, background).
    pub waiting: [usize; 3],
    pub throttled_total: u64,
    pub overloaded_total: u64,
    pub calls_total: u64,
    /// Seconds calls spent waiting for the governor, summed.
    pub waited_seconds_total: f64,
}

#[derive(Debug)]
pub struct Governor {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    budget: Option<u32>,
    /// Replicas sharing the budget: this process uses its part.
    replicas: f64,
    /// Requests a second used now (≤ the budget's share), `None`: unlimited.
    rate: Option<f64>,
    tokens: f64,
    refilled: Instant,
    limit: f64,
    in_flight: usize,
    /// Waiting calls by (priority, ticket), each with the bell that wakes it. Only the first may go, so
    /// only the first is woken when something changes.
    waiting: BTreeMap<(Priority, u64), Arc<tokio::sync::Notify>>,
    next_ticket: u64,
    paused_until: Option<Instant>,
    best_latency: Option<Duration>,
    stats: Snapshot,
}

impl Governor {
    pub fn new(budget_per_minute: Option<u32>) -> Self {
        let rate = budget_per_minute.map(|b| f64::from(b) * BUDGET_SHARE / 60.0);
        Self {
            state: Mutex::new(State {
                budget: budget_per_minute,
                replicas: 1.0,
                rate,
                tokens: rate.map_or(0.0, |r| r.min(burst(r))),
                refilled: Instant::now(),
                limit: START_CONCURRENCY as f64,
                in_flight: 0,
                waiting: BTreeMap::new(),
                next_ticket: 0,
                paused_until: None,
                best_latency: None,
                stats: Snapshot::default(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This process uses a `replicas`-th of the budget.
    pub fn split_among(&self, replicas: u32) {
        let mut state = self.state();
        state.replicas = f64::from(replicas.max(1));
        if let (Some(rate), Some(full)) = (state.rate, state.full_rate()) {
            state.rate = Some(rate.min(full));
        }
    }

    /// Waits for this call's turn. The permit must be finished with [`Permit::finish`] (dropping it counts
    /// as a neutral end).
    pub async fn acquire(self: &Arc<Self>, priority: Priority) -> Permit {
        let started = Instant::now();
        let bell = Arc::new(tokio::sync::Notify::new());
        let key = {
            let mut state = self.state();
            state.next_ticket += 1;
            let key = (priority, state.next_ticket);
            state.waiting.insert(key, bell.clone());
            key
        };
        let mut waiter = Waiter { governor: self, key, done: false };
        loop {
            let wait = {
                let mut state = self.state();
                match state.try_take(key, Instant::now()) {
                    Ok(()) => {
                        waiter.done = true;
                        state.stats.calls_total += 1;
                        state.stats.waited_seconds_total += started.elapsed().as_secs_f64();
                        // The next in line may go too (tokens and slots for several).
                        state.wake_first();
                        break;
                    }
                    Err(wait) => wait,
                }
            };
            // Rung when this call comes first or a slot frees; else when the next token or the pause is due.
            let _ = actix_web::rt::time::timeout(wait.unwrap_or(Duration::from_secs(1)), bell.notified()).await;
        }
        drop(waiter);
        Permit { governor: self.clone(), started: Instant::now(), finished: false }
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut state = self.state();
        state.refill(Instant::now());
        let mut snapshot = state.stats.clone();
        snapshot.budget_per_minute = state.budget;
        snapshot.rate_per_minute = state.rate.map(|r| r * 60.0);
        snapshot.concurrency_limit = state.limit as usize;
        snapshot.in_flight = state.in_flight;
        snapshot.waiting = [0, 0, 0];
        for (priority, _) in state.waiting.keys() {
            snapshot.waiting[*priority as usize] += 1;
        }
        snapshot
    }

    fn finish(&self, end: CallEnd, latency: Duration) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.observe(end, latency, Instant::now());
        state.wake_first();
    }
}

/// A second's worth of calls at most, and at least one.
fn burst(rate: f64) -> f64 {
    rate.max(1.0)
}

impl State {
    fn wake_first(&self) {
        if let Some(bell) = self.waiting.values().next() {
            bell.notify_one();
        }
    }

    /// Requests a second this process may use at most (its part of the budget's share).
    fn full_rate(&self) -> Option<f64> {
        self.budget.map(|budget| f64::from(budget) * BUDGET_SHARE / 60.0 / self.replicas)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        if let (Some(rate), Some(full)) = (self.rate, self.full_rate()) {
            let rate = (rate + full * RATE_RECOVERY_PER_SEC * elapsed).min(full);
            self.rate = Some(rate);
            self.tokens = (self.tokens + rate * elapsed).min(burst(rate));
        }
    }

    /// Takes a token and a slot for `key` if it is its turn; else how long until it may be.
    fn try_take(&mut self, key: (Priority, u64), now: Instant) -> Result<(), Option<Duration>> {
        self.refill(now);
        if let Some(until) = self.paused_until {
            if now < until {
                return Err(Some(until - now));
            }
            self.paused_until = None;
        }
        // First come, first served within a priority; higher priorities first.
        if self.waiting.keys().next() != Some(&key) {
            return Err(None);
        }
        if self.in_flight >= self.limit as usize {
            return Err(None);
        }
        if let Some(rate) = self.rate
            && self.tokens < 1.0
        {
            return Err(Some(Duration::from_secs_f64(((1.0 - self.tokens) / rate).max(0.001))));
        }
        if self.rate.is_some() {
            self.tokens -= 1.0;
        }
        self.waiting.remove(&key);
        self.in_flight += 1;
        Ok(())
    }

    fn observe(&mut self, end: CallEnd, latency: Duration, now: Instant) {
        match end {
            CallEnd::Ok => {
                let best = self.best_latency.map_or(latency, |b| b.min(latency));
                self.best_latency = Some(best);
                if latency.as_secs_f64() > best.as_secs_f64().max(0.002) * LATENCY_OVERLOAD {
                    self.limit = (self.limit - 1.0).max(MIN_CONCURRENCY as f64);
                } else {
                    // About one more per round of calls at the current limit.
                    self.limit = (self.limit + 1.0 / self.limit).min(MAX_CONCURRENCY as f64);
                }
            }
            CallEnd::Throttled => {
                self.stats.throttled_total += 1;
                self.limit = (self.limit / 2.0).max(MIN_CONCURRENCY as f64);
                self.paused_until = Some(now + THROTTLE_PAUSE);
                self.tokens = 0.0;
                if let Some(rate) = self.rate {
                    self.rate = Some((rate * THROTTLE_RATE_CUT).max(0.1));
                }
            }
            CallEnd::Overloaded => {
                self.stats.overloaded_total += 1;
                self.limit = (self.limit / 2.0).max(MIN_CONCURRENCY as f64);
            }
            CallEnd::Neutral => {}
        }
    }
}

/// Removes a waiter that gave up (its future was dropped) so that it blocks nobody.
struct Waiter<'a> {
    governor: &'a Arc<Governor>,
    key: (Priority, u64),
    done: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut state = self.governor.state();
            state.waiting.remove(&self.key);
            state.wake_first();
        }
    }
}

/// The right to make one call.
pub struct Permit {
    governor: Arc<Governor>,
    started: Instant,
    finished: bool,
}

impl Permit {
    pub fn finish(mut self, end: CallEnd) {
        self.finished = true;
        self.governor.finish(end, self.started.elapsed());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.finished {
            self.governor.finish(CallEnd::Neutral, self.started.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn stays_under_the_budget() {
        let governor = Arc::new(Governor::new(Some(600)));
        let started = Instant::now();
        for _ in 0..20 {
            governor.acquire(Priority::Live).await.finish(CallEnd::Ok);
        }
        // 600/min × 0.97 ≈ 9.7/s with a burst of one second: 20 calls need about a second more.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(900), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[actix_web::test]
    async fn live_goes_before_backlog_and_background() {
        let governor = Arc::new(Governor::new(None));
        // Fill every slot, then queue one of each priority, background first.
        let held: Vec<Permit> = {
            let mut held = Vec::new();
            for _ in 0..START_CONCURRENCY {
                held.push(governor.acquire(Priority::Live).await);
            }
            held
        };
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for priority in [Priority::Background, Priority::Backlog, Priority::Live] {
            let (governor, order) = (governor.clone(), order.clone());
            tasks.push(actix_web::rt::spawn(async move {
                let permit = governor.acquire(priority).await;
                order.lock().unwrap().push(priority);
                permit.finish(CallEnd::Ok);
            }));
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(governor.snapshot().waiting, [1, 1, 1]);
        // One slot at a time frees up.
        for permit in held {
            permit.finish(CallEnd::Neutral);
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![Priority::Live, Priority::Backlog, Priority::Background]);
    }

    #[actix_web::test]
    async fn a_429_pauses_the_host_halves_concurrency_and_lowers_the_rate() {
        let governor = Arc::new(Governor::new(Some(3000)));
        let before = governor.snapshot();
        governor.acquire(Priority::Live).await.finish(CallEnd::Throttled);
        let after = governor.snapshot();
        assert_eq!(after.throttled_total, 1);
        assert_eq!(after.concurrency_limit, before.concurrency_limit / 2);
        assert!(after.rate_per_minute.unwrap() < before.rate_per_minute.unwrap());
        let started = Instant::now();
        governor.acquire(Priority::Live).await.finish(CallEnd::Ok);
        assert!(started.elapsed() >= Duration::from_millis(900), "the host waits: {:?}", started.elapsed());
    }

    #[actix_web::test]
    async fn a_dropped_waiter_blocks_nobody() {
        let governor = Arc::new(Governor::new(None));
        let mut held = Vec::new();
        for _ in 0..START_CONCURRENCY {
            held.push(governor.acquire(Priority::Live).await);
        }
        let waiting = governor.clone();
        let gave_up = actix_web::rt::time::timeout(Duration::from_millis(50), async move {
            waiting.acquire(Priority::Live).await;
        })
        .await;
        assert!(gave_up.is_err());
        assert_eq!(governor.snapshot().waiting, [0, 0, 0]);
        held.pop();
        let next = actix_web::rt::time::timeout(Duration::from_millis(500), governor.acquire(Priority::Backlog)).await;
        assert!(next.is_ok());
    }

    #[test]
    fn overrides_name_hosts() {
        assert_eq!(host_of("https://chat.example.com:8443/x"), "chat.example.com:8443");
        let governors = Governors::new(
            Some(3000),
            HashMap::from([("cw.local".to_owned(), None), ("127.0.0.1:3001".to_owned(), Some(300))]),
        );
        assert_eq!(governors.of("http://cw.local").snapshot().budget_per_minute, None);
        assert_eq!(governors.of("https://other").snapshot().budget_per_minute, Some(3000));
        assert_eq!(governors.of("http://127.0.0.1:3000").snapshot().budget_per_minute, None, "Rack::Attack's safelist");
        assert_eq!(governors.of("http://[::1]:3000").snapshot().budget_per_minute, None);
        assert_eq!(governors.of("http://localhost").snapshot().budget_per_minute, None);
        assert_eq!(governors.of("http://127.0.0.1:3001").snapshot().budget_per_minute, Some(300));
        assert!(Arc::ptr_eq(&governors.of("https://other"), &governors.of("https://other")));
    }
}
