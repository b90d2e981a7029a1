//! Fault injection (`bench chaos`): customer messages and agent replies across many integrations while the
//! bench, at random moments, kills -9 and restarts the bridge, drops RyzeAPI WebSockets, makes Chatwoot
//! answer 5xx/429 or hang past the bridge's timeout, answer message creates with its catch-all 422 (before
//! or after the message is committed), deliver webhooks twice, and deliver them late and shuffled. At the end every
//! customer message must be in Chatwoot once and every reply the bridge accepted on WhatsApp once, in order
//! within each chat, with no integration stuck. One person in [`SWITCH_EVERY`] switches forms mid-stream
//! (LID-only, then phone-only, then some with both; unknown to RyzeAPI's contact look-up), so the bridge
//! splits and merges them: each of their messages must still be in Chatwoot once, in order per form, and
//! every person must end as exactly one Chatwoot contact. The check of `tests/chaos.rs`, at the size, on the
//! bench's stack, with a hard deadline (`--seconds`) for the whole run.
//!
//! `--replicas N` (N > 1, PostgreSQL only) runs N bridge processes (`bench-r0`…) on the one database, with a
//! shared key and token, each its own data dir and log, a short lease ([`LEASE_TTL_MS`]); Chatwoot's webhooks
//! go through a TCP [`Balancer`] (`BRIDGE_PUBLIC_URL`), a new connection per webhook to the next replica in
//! rotation, and activations are spread over the replicas. The faults then act on replicas, one at a time so
//! that the others keep running: kill -9 of a random replica, restarted under its name at once or only once
//! its integrations are connected elsewhere; SIGSTOP of one for longer than the lease, then SIGCONT (out of
//! the balancer a moment after the stop, as a health check would, back once it answers `/readyz`); and a
//! rolling restart: each replica in turn out of the balancer, SIGTERM, started again under its name, back in
//! the balancer once `/readyz` answers 200. The checks are the same; the report lists each replica fault
//! (UTC) and how soon the integrations it held were connected again, from `integration_leases` and the
//! simulator's link counts.
//!
//! Message `k` of each direction goes to chat `k mod chats` (as in `inbound`). Both directions are paced per
//! chat ([`PER_CHAT_RATE`], at most [`PER_CHAT_BACKLOG`] outstanding), so that no conversation nears the
//! fake's 200 messages a minute even when the bridge catches up after a fault.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use ryze_fakes::chatwoot::{FakeChatwoot, Fault};
use ryze_fakes::ryzeapi::{self as sim, RyzeApiSim};
use ryze_testkit::Neighbours;
use sea_orm::{ConnectionTrait as _, DatabaseConnection, DbBackend, Statement};
use serde_json::Value;

use crate::Opts;
use crate::inbound::{Traffic, log_notes};
use crate::report::{self, Table};
use crate::stack::{BenchDb, Bridge, Res, Stack};

/// Messages a second offered per chat and direction, at most.
const PER_CHAT_RATE: f64 = 1.0;
/// Messages per chat and direction sent but not arrived yet, at most. With [`PER_CHAT_RATE`] a conversation
/// gets at most (60 + 25) × 2 = 170 messages in any minute, below the fake's limit of 200.
const PER_CHAT_BACKLOG: usize = 25;
/// Webhook deliveries queued in the fake above which nothing more is offered. The fake delivers on a few
/// workers (Sidekiq's 10), so a backlog builds when the bridge answers slowly; a kill -9 then fails every queued delivery at
/// once, and the replies among them never reach the bridge (Chatwoot marks them failed). Keeping the
/// backlog short keeps most replies checkable.
const WEBHOOK_BACKLOG: usize = 200;
/// A hang lasts longer than the bridge's Chatwoot timeout (`BRIDGE_CHATWOOT_TIMEOUT_MS` below), so the
/// bridge gives up on calls that Chatwoot then carries out.
const HANG: Duration = Duration::from_millis(2000);
/// A kill -9 at most this often: the bridge needs a moment to reconnect every link.
const MIN_RESTART_GAP: Duration = Duration::from_secs(8);
/// How often a 422 window arms one more catch-all 422 on message create.
const UNPROCESSABLE_EVERY: Duration = Duration::from_millis(250);
/// Texts of the exceptions `messages_controller.rb#create` rescues as 422: before the save (nothing created)
/// and in an after-commit callback (the message exists).
const BEFORE_COMMIT: &str = "Aws::S3::Errors::ServiceUnavailable";
const AFTER_COMMIT: &str = "Redis::CannotConnectError";
/// Shuffled webhooks are delayed up to this, below the bridge's reply order window (500 ms by default).
const SHUFFLE_MAX_MS: u64 = 400;
/// Webhooks queued in the fake at most when a shuffle window starts (its workers: Sidekiq's 10).
const SHUFFLE_BACKLOG: usize = 10;
/// `CONVERSATION_MESSAGE_PER_MINUTE_LIMIT`, the fake's default (as Chatwoot's).
const CONVERSATION_LIMIT: usize = 200;
/// One chat in this many is a person who switches forms mid-stream (issue 15): the first messages come
/// LID-only, later ones phone-only, some with both (RyzeAPI's contact look-up does not know them), so that
/// the bridge splits them into two chats and merges them again.
const SWITCH_EVERY: usize = 5;
/// A switching person's messages below this sequence number are LID-only, then phone-only up to twice it;
/// after that the forms rotate (both, LID-only, phone-only).
const SWITCH_AFTER: u64 = 3;
/// Seed of the fault sequence when `--seed` is not given.
pub const DEFAULT_SEED: u64 = 0xC4A0_5EED;
/// `BRIDGE_LEASE_TTL_MS` of the replicas (`--replicas` > 1; the default is 10 s): short, so that a pause of
/// [`PAUSE_MS`] outlasts it and a killed replica's integrations move within seconds.
const LEASE_TTL_MS: u64 = 3000;
/// How long a SIGSTOP lasts (ms, from–to): past the lease.
const PAUSE_MS: (u64, u64) = (4000, 5000);
/// How long after a SIGSTOP the balancer stops sending webhooks to the stopped replica (ms, from–to): a load
/// balancer's health check takes a moment to notice, so a few webhooks reach the frozen process.
const HEALTH_CHECK_MS: (u64, u64) = (0, 500);
/// How long the bench waits for a replica fault's integrations to be connected again (the figures), and for a
/// killed replica kept down until its integrations are connected elsewhere.
const MOVE_WITHIN: Duration = Duration::from_secs(30);
/// How long a SIGTERM may take before the bench kills the replica (the bridge exits well inside 10 s).
const TERM_WITHIN: Duration = Duration::from_secs(15);

/// Short link and retry timings (the contract's defaults are seconds to minutes), as `tests/chaos.rs` uses.
const CHAOS_ENV: &[(&str, &str)] = &[
    ("BRIDGE_LINK_RECONNECT_MIN_MS", "100"),
    ("BRIDGE_LINK_RECONNECT_MAX_MS", "800"),
    ("BRIDGE_LINK_STABLE_MS", "5000"),
    ("BRIDGE_LINK_PING_MS", "500"),
    ("BRIDGE_LINK_DEAD_MS", "3000"),
    ("BRIDGE_LINK_REJECTED_RETRY_MS", "400"),
    ("BRIDGE_RETRY_MIN_MS", "100"),
    ("BRIDGE_RETRY_MAX_MS", "400"),
    ("BRIDGE_CHATWOOT_TIMEOUT_MS", "1500"),
];

/// splitmix64: reproducible fault choices from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high.saturating_sub(low) + 1))
    }
}

/// Who gets which message.
struct Plan {
    instances: Vec<String>,
    /// Chats in use, across all integrations: chat `s` is chat `s / integrations` of integration
    /// `s mod integrations`.
    slots: usize,
    inbound: u64,
    replies: u64,
}

impl Plan {
    fn new(opts: &Opts) -> Self {
        let integrations = opts.integrations.max(1);
        let inbound = opts.messages.div_ceil(2).max(1);
        // Every chat gets a first message (its conversation), or its replies could never be typed.
        let slots = (integrations * opts.chats.max(1)).min(usize::try_from(inbound).unwrap_or(usize::MAX));
        Self {
            instances: (0..integrations).map(|i| format!("chaos-{i:05}")).collect(),
            slots: slots.max(1),
            inbound,
            replies: opts.messages / 2,
        }
    }

    /// Chat and its sequence number of message `k` (in either direction).
    fn slot(&self, k: u64) -> (usize, u64) {
        let slots = self.slots as u64;
        (usize::try_from(k % slots).unwrap_or(0), k / slots)
    }

    fn integration(&self, slot: usize) -> usize {
        slot % self.instances.len().max(1)
    }

    fn jid(&self, slot: usize) -> String {
        Traffic::jid(self.integration(slot), slot / self.instances.len().max(1))
    }

    /// Whether the person of chat `slot` switches forms (one in [`SWITCH_EVERY`]).
    fn switches(slot: usize) -> bool {
        slot % SWITCH_EVERY == SWITCH_EVERY - 1
    }

    /// The form the `seq`-th message of chat `slot` names its person by.
    fn form(slot: usize, seq: u64) -> Form {
        match seq {
            _ if !Self::switches(slot) => Form::Both,
            s if s < SWITCH_AFTER => Form::Lid,
            s if s < 2 * SWITCH_AFTER => Form::Phone,
            s => [Form::Both, Form::Lid, Form::Phone][usize::try_from(s % 3).unwrap_or(0)],
        }
    }

    /// Customer message `k` as RyzeAPI sends it, naming its person by the form of its turn.
    fn customer_message(&self, instance: &str, k: u64) -> Value {
        let (slot, seq) = self.slot(k);
        let jid = self.jid(slot);
        let name = format!("Cliente {slot}");
        let mut envelope = sim::text_message(instance, &Self::wa_id(k), &jid, &name, &format!("i{seq} c{slot}"));
        let drop = match Self::form(slot, seq) {
            Form::Both => None,
            Form::Lid => Some("jid"),
            Form::Phone => Some("lid"),
        };
        if let Some(key) = drop {
            for party in ["chat", "sender"] {
                if let Some(map) = envelope.pointer_mut(&format!("/data/{party}")).and_then(Value::as_object_mut) {
                    map.remove(key);
                    if key == "jid" {
                        // A LID-only event names the LID where the phone JID would be.
                        map.insert("lid".into(), Value::String(sim::fake_lid(&jid)));
                    }
                }
            }
        }
        envelope
    }

    fn wa_id(k: u64) -> String {
        format!("3EB0CHAOS{k:011X}")
    }

    /// `k` of a Chatwoot `source_id` the bridge set for inbound message `k`.
    fn parse_source(source_id: &str) -> Option<u64> {
        u64::from_str_radix(source_id.strip_prefix("WAID:3EB0CHAOS")?, 16).ok()
    }

    fn reply_text(slot: usize, seq: u64) -> String {
        format!("o{seq} c{slot}")
    }

    /// `(slot, seq)` of a reply as sent to WhatsApp (the last two words, whatever the bridge put before).
    fn parse_reply(text: &str) -> Option<(usize, u64)> {
        let mut words = text.split_whitespace().rev();
        let slot = words.next()?.strip_prefix('c')?.parse().ok()?;
        let seq = words.next()?.strip_prefix('o')?.parse().ok()?;
        Some((slot, seq))
    }
}

/// How a customer message names its person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Form {
    Both,
    Lid,
    Phone,
}

impl Form {
    /// The bridge's queue of the form: events that name the phone JID share the phone chat's queue (order
    /// holds among them), LID-only ones have the LID's.
    fn queue(self) -> &'static str {
        match self {
            Self::Lid => "LID-only",
            Self::Both | Self::Phone => "with the phone JID",
        }
    }
}

/// What the fault injector did.
#[derive(Debug, Default)]
struct Faults {
    restarts: usize,
    restart_times: Vec<Duration>,
    /// When each kill -9 happened.
    kills: Vec<DateTime<Utc>>,
    link_drops: usize,
    sockets_closed: usize,
    flaky_windows: usize,
    hang_windows: usize,
    duplicate_windows: usize,
    /// Catch-all 422 windows on message create, and the 422s they armed: before the commit (nothing
    /// created) and after it (the message exists, the answer is still 422).
    unprocessable_before_windows: usize,
    unprocessable_before_armed: u32,
    unprocessable_after_windows: usize,
    unprocessable_after_armed: u32,
    /// Windows of shuffled late webhooks, and the largest delay used.
    shuffle_windows: usize,
    shuffle_max: Duration,
    /// Shuffle windows not started: the fake's webhook queue did not get short within 5 s.
    shuffle_skipped: usize,
    /// When each window of the newer faults ran (kind, start, end), to line violations up with them.
    windows: Vec<(&'static str, DateTime<Utc>, DateTime<Utc>)>,
    /// `--replicas` > 1: what each replica fault did, in order, and the rolling restarts (whole rounds).
    replica_faults: Vec<ReplicaFault>,
    rolling_rounds: usize,
    /// Why a restart failed (the run cannot go on).
    broken: Option<String>,
}

/// What a fault did to one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplicaFaultKind {
    /// kill -9, restarted under its name after 50–500 ms.
    KillQuick,
    /// kill -9, kept down until every integration it held was connected elsewhere (or [`MOVE_WITHIN`]).
    KillKept,
    /// SIGSTOP past the lease, then SIGCONT.
    Pause,
    /// SIGTERM and a restart, within a rolling restart.
    Term,
}

impl ReplicaFaultKind {
    fn label(self) -> &'static str {
        match self {
            Self::KillQuick => "kill -9 (restarted at once)",
            Self::KillKept => "kill -9 (kept down until taken over)",
            Self::Pause => "SIGSTOP",
            Self::Term => "rolling SIGTERM",
        }
    }
}

#[derive(Debug, Clone)]
struct ReplicaFault {
    kind: ReplicaFaultKind,
    replica: usize,
    /// The kill, stop or SIGTERM, and when the replica was back in the balancer.
    at: DateTime<Utc>,
    back: DateTime<Utc>,
    /// Integrations it held (unexpired leases) just before.
    held: usize,
    /// Kill and SIGTERM: from the fault until every integration it held had a new owner (another replica or
    /// its own next incarnation) and exactly one RyzeAPI link; how many went back to its restart. SIGSTOP:
    /// from the stop until others held every lease (within the pause).
    moved: Option<Duration>,
    taken_back: usize,
    /// SIGSTOP: from SIGCONT until each integration it held had one link again (the woken one's closed).
    relinked: Option<Duration>,
    /// Kill and SIGTERM: not connected again within [`MOVE_WITHIN`] of the fault; SIGSTOP: within
    /// [`MOVE_WITHIN`] of SIGCONT. With their lease and link count at that moment.
    unsettled: Vec<String>,
    /// How long the process was down (kill, SIGTERM: until started again) or stopped.
    down: Duration,
    /// Start → `/readyz` of the restart.
    restart: Option<Duration>,
    /// SIGTERM: the process exited by itself within [`TERM_WITHIN`], and how long that took (hand-over
    /// included).
    clean_exit: bool,
    exited: Option<Duration>,
}

impl ReplicaFault {
    fn describe(&self) -> String {
        let ms =
            |d: Option<Duration>| d.map_or_else(|| "not within 30 s".to_owned(), |d| format!("{} ms", d.as_millis()));
        let mut text = format!(
            "{} {} at {}, back in the balancer {}: held {}, {} {:.1} s",
            self.kind.label(),
            replica_name(self.replica),
            clock(self.at),
            clock(self.back),
            self.held,
            if self.kind == ReplicaFaultKind::Pause { "stopped" } else { "down" },
            self.down.as_secs_f64()
        );
        match self.kind {
            ReplicaFaultKind::Pause => {
                text.push_str(&format!(
                    ", leases taken over after {}, one link each {} after SIGCONT",
                    self.moved
                        .map_or_else(|| "— (not within the pause)".to_owned(), |d| format!("{} ms", d.as_millis())),
                    ms(self.relinked)
                ));
            }
            _ => {
                text.push_str(&format!(", connected again after {}", ms(self.moved)));
                if self.moved.is_some() {
                    text.push_str(&format!(
                        " ({} elsewhere, {} by its restart)",
                        self.held - self.taken_back.min(self.held),
                        self.taken_back
                    ));
                }
            }
        }
        if let Some(restart) = self.restart {
            text.push_str(&format!(", restart → /readyz {} ms", restart.as_millis()));
        }
        if let Some(exited) = self.exited {
            text.push_str(&format!(", SIGTERM → exit {} ms", exited.as_millis()));
        }
        if self.kind == ReplicaFaultKind::Term && !self.clean_exit {
            text.push_str(" (NOT a clean exit: killed after 15 s or failed)");
        }
        if !self.unsettled.is_empty() {
            text.push_str(&format!("; NOT connected again within 30 s: {}", self.unsettled.len()));
        }
        text
    }

    /// Integrations it held that were not connected again in time (a liveness failure).
    fn missed(&self) -> usize {
        let timed_out = match self.kind {
            ReplicaFaultKind::Pause => self.relinked.is_none(),
            _ => self.moved.is_none(),
        };
        if timed_out { self.unsettled.len().max(1) } else { 0 }
    }
}

/// Replica `i`'s `BRIDGE_REPLICA_NAME`.
fn replica_name(i: usize) -> String {
    format!("bench-r{i}")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Chatwoot's webhooks reach the replicas through this, as through a load balancer: each connection goes to
/// the first replica in rotation, in turn, that accepts it (the fake opens a new connection per webhook).
/// A killed replica refuses connections and is skipped; a stopped one accepts them (the kernel does) and
/// leaves them hanging, until it is taken out of rotation.
struct Balancer {
    addr: String,
    shared: Arc<BalancerState>,
}

struct BalancerState {
    /// Each replica's address while it is in rotation.
    backends: Mutex<Vec<Option<String>>>,
    /// Connections forwarded to each replica.
    forwarded: Vec<AtomicU64>,
    /// Connections closed at once: no replica in rotation accepted them.
    refused: AtomicU64,
    next: AtomicUsize,
    closed: AtomicBool,
}

impl Balancer {
    fn start(replicas: usize) -> Res<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("balancer: {e}"))?;
        let addr = listener.local_addr().map_err(|e| format!("balancer: {e}"))?.to_string();
        let shared = Arc::new(BalancerState {
            backends: Mutex::new(vec![None; replicas]),
            forwarded: (0..replicas).map(|_| AtomicU64::new(0)).collect(),
            refused: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });
        let state = shared.clone();
        std::thread::Builder::new()
            .name("bench-balancer".to_owned())
            .spawn(move || Self::accept(&listener, &state))
            .map_err(|e| format!("balancer thread: {e}"))?;
        Ok(Self { addr, shared })
    }

    /// Puts replica `i` (its `http://host:port`) in rotation, or takes it out (`None`).
    fn set(&self, i: usize, url: Option<&str>) {
        if let Some(slot) = lock(&self.shared.backends).get_mut(i) {
            *slot = url.map(|u| u.trim_start_matches("http://").to_owned());
        }
    }

    fn forwarded(&self) -> Vec<u64> {
        self.shared.forwarded.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }

    fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    fn accept(listener: &TcpListener, state: &BalancerState) {
        for client in listener.incoming() {
            if state.closed.load(Ordering::SeqCst) {
                break;
            }
            let Ok(client) = client else { continue };
            let backends = lock(&state.backends).clone();
            let count = backends.len().max(1);
            let first = state.next.fetch_add(1, Ordering::Relaxed);
            let upstream = (0..backends.len()).find_map(|k| {
                let i = (first + k) % count;
                let addr: SocketAddr = backends.get(i)?.as_deref()?.parse().ok()?;
                TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok().map(|stream| (i, stream))
            });
            let Some((i, upstream)) = upstream else {
                state.refused.fetch_add(1, Ordering::Relaxed);
                let _ = client.shutdown(Shutdown::Both);
                continue;
            };
            if let Some(n) = state.forwarded.get(i) {
                n.fetch_add(1, Ordering::Relaxed);
            }
            Self::pipe(client, upstream);
        }
    }

    /// Copies both ways on two threads; an end of stream is passed on as a half-close.
    fn pipe(client: TcpStream, upstream: TcpStream) {
        let (Ok(client_out), Ok(upstream_out)) = (client.try_clone(), upstream.try_clone()) else {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
            return;
        };
        for (mut from, mut to) in [(client, upstream_out), (upstream, client_out)] {
            let _ =
                std::thread::Builder::new().name("bench-balancer-pipe".to_owned()).spawn(move || {
                    match std::io::copy(&mut from, &mut to) {
                        Ok(_) => {
                            let _ = to.shutdown(Shutdown::Write);
                        }
                        Err(_) => {
                            let _ = to.shutdown(Shutdown::Both);
                            let _ = from.shutdown(Shutdown::Both);
                        }
                    }
                });
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees `closed`.
        if let Ok(addr) = self.addr.parse::<SocketAddr>() {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
    }
}

/// The bridge processes the faults act on: the one bridge, or the replicas with their balancer.
struct Cluster<'a> {
    /// Replica `i` is [`replica_name`]`(i)`.
    bridges: Vec<&'a mut Bridge>,
    balancer: Option<&'a Balancer>,
    admin: Option<&'a DatabaseConnection>,
    /// Integration id → instance.
    instances: HashMap<String, String>,
    http: awc::Client,
}

/// One row of `integration_leases`.
#[derive(Debug, Clone)]
struct Lease {
    owner: Option<String>,
    /// Not expired.
    live: bool,
    epoch: i64,
}

impl Lease {
    fn describe(&self) -> String {
        let owner = self.owner.as_deref().unwrap_or("nobody");
        format!("lease {owner}, epoch {}, {}", self.epoch, if self.live { "live" } else { "EXPIRED" })
    }
}

/// Every lease row, by integration id.
async fn leases(admin: &DatabaseConnection) -> Res<HashMap<String, Lease>> {
    let rows = admin
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT integration_id, owner, expires_at > now(), epoch FROM integration_leases",
        ))
        .await
        .map_err(|e| format!("integration_leases: {e}"))?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let lease = Lease {
                owner: row.try_get_by_index::<Option<String>>(1).ok()?,
                live: row.try_get_by_index::<bool>(2).ok()?,
                epoch: row.try_get_by_index::<i64>(3).ok()?,
            };
            Some((row.try_get_by_index::<String>(0).ok()?, lease))
        })
        .collect())
}

/// Unexpired leases: integration id → owner (`name#incarnation`).
async fn owners(admin: &DatabaseConnection) -> Res<HashMap<String, String>> {
    Ok(leases(admin)
        .await?
        .into_iter()
        .filter_map(|(id, lease)| lease.owner.filter(|_| lease.live).map(|owner| (id, owner)))
        .collect())
}

/// How the integrations a replica held ended up after a fault.
#[derive(Debug, Clone, Default)]
struct Moved {
    /// When (after the fault) every one was settled; `None`: not within the time allowed.
    after: Option<Duration>,
    /// How many went to a replica of the old owner's name (its restart).
    back: usize,
    /// At the time-out: those not settled, with their lease and link count.
    unsettled: Vec<String>,
}

fn owner_name(owner: &str) -> &str {
    owner.split('#').next().unwrap_or(owner)
}

/// Integrations per replica (by name, in replica order), from the unexpired leases.
async fn spread(admin: &DatabaseConnection, replicas: usize) -> Res<Vec<usize>> {
    let owners = owners(admin).await?;
    Ok((0..replicas)
        .map(|i| {
            let name = replica_name(i);
            owners.values().filter(|o| owner_name(o) == name).count()
        })
        .collect())
}

impl Cluster<'_> {
    fn replicas(&self) -> usize {
        self.bridges.len()
    }

    /// The unexpired leases replica `i` holds: (integration id, owner).
    async fn held(&self, i: usize) -> Vec<(String, String)> {
        let Some(admin) = self.admin else { return Vec::new() };
        let name = replica_name(i);
        owners(admin).await.unwrap_or_default().into_iter().filter(|(_, o)| owner_name(o) == name).collect()
    }

    /// Polls until every integration of `held` has an unexpired owner — with `new_owner`, another than
    /// before (another replica, or the same one's next incarnation) — and, with `one_link`, exactly one
    /// RyzeAPI link. Answers how long that took after `since` (`None` once `within` has passed, with the
    /// integrations still unsettled), and how many went to a replica of the old owner's name.
    async fn wait_moved(
        &self,
        sim: &RyzeApiSim,
        held: &[(String, String)],
        since: Instant,
        within: Duration,
        new_owner: bool,
        one_link: bool,
    ) -> Moved {
        let Some(admin) = self.admin else { return Moved::default() };
        let links = |id: &str| self.instances.get(id).map_or(0, |i| sim.connections(i));
        let settled = |now: &HashMap<String, Lease>, id: &str, old: &str| {
            let owner = now.get(id).filter(|l| l.live).and_then(|l| l.owner.as_deref());
            owner.is_some_and(|o| !(new_owner && o == old)) && (!one_link || links(id) == 1)
        };
        loop {
            let now = leases(admin).await;
            if let Ok(now) = &now
                && held.iter().all(|(id, old)| settled(now, id, old))
            {
                let back = held
                    .iter()
                    .filter(|(id, old)| {
                        now.get(id).and_then(|l| l.owner.as_deref()).is_some_and(|o| owner_name(o) == owner_name(old))
                    })
                    .count();
                return Moved { after: Some(since.elapsed()), back, unsettled: Vec::new() };
            }
            if since.elapsed() >= within {
                let now = now.unwrap_or_default();
                let unsettled = held
                    .iter()
                    .filter(|(id, old)| !settled(&now, id, old))
                    .map(|(id, old)| {
                        let lease = now.get(id).map_or_else(|| "no lease row".to_owned(), Lease::describe);
                        let instance = self.instances.get(id).map_or("?", String::as_str);
                        format!("{id} ({instance}): held by {old} before; now {lease}, {} RyzeAPI links", links(id))
                    })
                    .collect();
                return Moved { after: None, back: 0, unsettled };
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn rotate(&self, i: usize, on: bool) {
        if let (Some(balancer), Some(bridge)) = (self.balancer, self.bridges.get(i)) {
            balancer.set(i, on.then_some(bridge.url.as_str()));
        }
    }

    /// Starts replica `i` again (under its name) and puts it back in the balancer once `/readyz` answers.
    async fn restart(&mut self, i: usize, after: &str) -> Res<Duration> {
        let Some(bridge) = self.bridges.get_mut(i) else { return Err(format!("no replica {i}")) };
        let took =
            bridge.spawn().await.map_err(|e| format!("{} did not come back after {after}: {e}", replica_name(i)))?;
        self.rotate(i, true);
        Ok(took)
    }

    /// Waits for replica `i`'s `/readyz` to answer 200 (a woken replica), up to 10 s.
    async fn wait_ready(&self, i: usize) -> Res<()> {
        let Some(bridge) = self.bridges.get(i) else { return Err(format!("no replica {i}")) };
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = crate::stack::request(
                &self.http,
                awc::http::Method::GET,
                &format!("{}/readyz", bridge.url),
                None,
                None,
            )
            .await;
            if matches!(ready, Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(format!("{} did not answer /readyz within 10 s after SIGCONT: {ready:?}", replica_name(i)));
            }
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// kill -9 of a random replica; started again under its name after 50–500 ms, or once every integration
    /// it held is connected elsewhere.
    async fn kill_one(&mut self, sim: &RyzeApiSim, rng: &mut Rng, faults: &RefCell<Faults>) -> Res<()> {
        let i = usize::try_from(rng.below(self.replicas() as u64)).unwrap_or(0);
        let quick = rng.below(2) == 0;
        let held = self.held(i).await;
        let at = Utc::now();
        let since = Instant::now();
        self.rotate(i, false);
        if let Some(bridge) = self.bridges.get_mut(i) {
            bridge.kill();
        }
        faults.borrow_mut().kills.push(at);
        let mut moved = Moved::default();
        if quick {
            actix_web::rt::time::sleep(rng.millis(50, 500)).await;
        } else {
            moved = self.wait_moved(sim, &held, since, MOVE_WITHIN, true, true).await;
        }
        let down = since.elapsed();
        let restart = self.restart(i, "kill -9").await?;
        let back = Utc::now();
        if quick {
            moved = self.wait_moved(sim, &held, since, MOVE_WITHIN, true, true).await;
        }
        let mut faults = faults.borrow_mut();
        faults.restarts += 1;
        faults.restart_times.push(restart);
        faults.replica_faults.push(ReplicaFault {
            kind: if quick { ReplicaFaultKind::KillQuick } else { ReplicaFaultKind::KillKept },
            replica: i,
            at,
            back,
            held: held.len(),
            moved: moved.after,
            taken_back: moved.back,
            relinked: None,
            unsettled: moved.unsettled,
            down,
            restart: Some(restart),
            clean_exit: false,
            exited: None,
        });
        Ok(())
    }

    /// SIGSTOP of a random replica for [`PAUSE_MS`] (past the lease), then SIGCONT.
    async fn pause_one(&mut self, sim: &RyzeApiSim, rng: &mut Rng, faults: &RefCell<Faults>) -> Res<()> {
        let i = usize::try_from(rng.below(self.replicas() as u64)).unwrap_or(0);
        let noticed = rng.millis(HEALTH_CHECK_MS.0, HEALTH_CHECK_MS.1);
        let length = rng.millis(PAUSE_MS.0, PAUSE_MS.1);
        let held = self.held(i).await;
        let signal = |cluster: &Self, name: &str| -> Res<()> {
            match cluster.bridges.get(i) {
                Some(bridge) if bridge.signal(name) => Ok(()),
                _ => Err(format!("could not send SIG{name} to {}", replica_name(i))),
            }
        };
        let at = Utc::now();
        let since = Instant::now();
        signal(self, "STOP")?;
        actix_web::rt::time::sleep(noticed).await;
        self.rotate(i, false);
        let moved = self.wait_moved(sim, &held, since, length, true, false).await;
        actix_web::rt::time::sleep(length.saturating_sub(since.elapsed())).await;
        let woken = Instant::now();
        let down = since.elapsed();
        signal(self, "CONT")?;
        self.wait_ready(i).await?;
        self.rotate(i, true);
        let back = Utc::now();
        let relinked = self.wait_moved(sim, &held, woken, MOVE_WITHIN, false, true).await;
        faults.borrow_mut().replica_faults.push(ReplicaFault {
            kind: ReplicaFaultKind::Pause,
            replica: i,
            at,
            back,
            held: held.len(),
            moved: moved.after,
            taken_back: 0,
            relinked: relinked.after,
            unsettled: relinked.unsettled,
            down,
            restart: None,
            clean_exit: false,
            exited: None,
        });
        Ok(())
    }

    /// A rolling restart: each replica in turn out of the balancer, SIGTERM, its integrations connected
    /// elsewhere (waited for, up to [`MOVE_WITHIN`]), started again under its name, back in the balancer once
    /// ready. Stops between replicas once `stop` is set.
    async fn roll(&mut self, sim: &RyzeApiSim, rng: &mut Rng, stop: &Cell<bool>, faults: &RefCell<Faults>) -> Res<()> {
        for i in 0..self.replicas() {
            if stop.get() {
                return Ok(());
            }
            let held = self.held(i).await;
            self.rotate(i, false);
            let at = Utc::now();
            let since = Instant::now();
            let exit = match self.bridges.get_mut(i) {
                Some(bridge) => bridge.stop(TERM_WITHIN).await,
                None => None,
            };
            let exited = since.elapsed();
            let moved = self.wait_moved(sim, &held, since, MOVE_WITHIN, true, true).await;
            let down = since.elapsed();
            let restart = self.restart(i, "SIGTERM").await?;
            let back = Utc::now();
            {
                let mut faults = faults.borrow_mut();
                faults.restart_times.push(restart);
                faults.replica_faults.push(ReplicaFault {
                    kind: ReplicaFaultKind::Term,
                    replica: i,
                    at,
                    back,
                    held: held.len(),
                    moved: moved.after,
                    taken_back: moved.back,
                    relinked: None,
                    unsettled: moved.unsettled,
                    down,
                    restart: Some(restart),
                    clean_exit: exit.is_some_and(|s| s.success()),
                    exited: Some(exited),
                });
            }
            actix_web::rt::time::sleep(rng.millis(500, 1500)).await;
        }
        faults.borrow_mut().rolling_rounds += 1;
        Ok(())
    }
}

/// What the driver sent.
#[derive(Debug, Default)]
struct Sent {
    inbound: u64,
    /// Agent replies typed: chat, sequence number, Chatwoot message id.
    replies: Vec<(usize, u64, i64)>,
    /// Replies the fake refused to create (`agent_reply` gave `None`: the per-minute limit).
    agent_refused: u64,
    /// Conversation (display id) of each chat, once its first message is in Chatwoot.
    conversations: Vec<Option<i64>>,
    /// Conversations already looked at.
    mapped: HashSet<i64>,
    /// Driver ticks, those held back by the webhook backlog, and the largest backlog seen.
    ticks: u64,
    held_by_webhooks: u64,
    max_backlog: usize,
}

/// Sleeps `total`, in steps, returning early once `stop` is set.
async fn pause(total: Duration, stop: &Cell<bool>) {
    let until = Instant::now() + total;
    while !stop.get() && Instant::now() < until {
        let step = until.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        actix_web::rt::time::sleep(step).await;
    }
}

/// Injects faults at random moments until `stop` is set; clears them afterwards. With replicas, a kill -9
/// acts on a random replica, and SIGSTOPs and rolling restarts join the bag; one replica fault at a time, so
/// that the others keep running.
async fn inject(
    cluster: &mut Cluster<'_>,
    chatwoot: &FakeChatwoot,
    sim: &RyzeApiSim,
    plan: &Plan,
    rng: &mut Rng,
    stop: &Cell<bool>,
    faults: &RefCell<Faults>,
) {
    let replicas = cluster.replicas();
    let mut last_restart: Option<Instant> = None;
    // Faults are drawn from a shuffled bag, so that even a short run sees every kind.
    let mut bag: Vec<u8> = Vec::new();
    while !stop.get() {
        pause(rng.millis(300, 1500), stop).await;
        if stop.get() {
            break;
        }
        if bag.is_empty() {
            bag = vec![0, 1, 1, 2, 3, 4, 5, 6, 7];
            if replicas > 1 {
                // 8: SIGSTOP of a replica, 9: a rolling restart.
                bag.extend([8, 9]);
            }
            for i in (1..bag.len()).rev() {
                bag.swap(i, usize::try_from(rng.below(i as u64 + 1)).unwrap_or(0));
            }
        }
        let gap = last_restart.is_none_or(|at| at.elapsed() >= MIN_RESTART_GAP);
        match bag.pop().unwrap_or(1) {
            kind @ (0 | 8 | 9) if gap && replicas > 1 => {
                let done = match kind {
                    0 => cluster.kill_one(sim, rng, faults).await,
                    8 => cluster.pause_one(sim, rng, faults).await,
                    _ => cluster.roll(sim, rng, stop, faults).await,
                };
                if let Err(e) = done {
                    faults.borrow_mut().broken = Some(e);
                    break;
                }
                last_restart = Some(Instant::now());
            }
            0 if gap => {
                let Some(bridge) = cluster.bridges.first_mut() else { break };
                bridge.kill();
                faults.borrow_mut().kills.push(Utc::now());
                actix_web::rt::time::sleep(rng.millis(50, 500)).await;
                match bridge.spawn().await {
                    Ok(took) => {
                        let mut faults = faults.borrow_mut();
                        faults.restarts += 1;
                        faults.restart_times.push(took);
                    }
                    Err(e) => {
                        faults.borrow_mut().broken = Some(format!("the bridge did not come back after kill -9: {e}"));
                        break;
                    }
                }
                last_restart = Some(Instant::now());
            }
            0 | 1 | 8 | 9 => {
                let count = 1 + rng.below(3);
                let mut faults = faults.borrow_mut();
                for _ in 0..count {
                    let index = usize::try_from(rng.below(plan.instances.len() as u64)).unwrap_or(0);
                    if let Some(instance) = plan.instances.get(index) {
                        faults.sockets_closed += sim.drop_connections(instance);
                        faults.link_drops += 1;
                    }
                }
            }
            2 => {
                chatwoot.set_fault(Fault::Flaky { percent: 30 });
                faults.borrow_mut().flaky_windows += 1;
                actix_web::rt::time::sleep(rng.millis(500, 3000)).await;
                chatwoot.set_fault(Fault::None);
            }
            3 => {
                chatwoot.set_fault(Fault::Slow(HANG));
                faults.borrow_mut().hang_windows += 1;
                actix_web::rt::time::sleep(rng.millis(500, 2500)).await;
                chatwoot.set_fault(Fault::None);
            }
            4 => {
                chatwoot.set_webhook_duplicates(true);
                faults.borrow_mut().duplicate_windows += 1;
                actix_web::rt::time::sleep(rng.millis(1000, 4000)).await;
                chatwoot.set_webhook_duplicates(false);
            }
            kind @ (5 | 6) => {
                // A window of catch-all 422s: one more armed every UNPROCESSABLE_EVERY, each answering the
                // next message create (the fake counts them, so one armed late may outlast the window).
                let after_commit = kind == 6;
                let began = Utc::now();
                let until = Instant::now() + rng.millis(500, 2500);
                let mut armed = 0u32;
                while Instant::now() < until && !stop.get() {
                    let text = if after_commit { AFTER_COMMIT } else { BEFORE_COMMIT };
                    chatwoot.fail_next_unprocessable("/messages", text, 1, after_commit);
                    armed += 1;
                    actix_web::rt::time::sleep(UNPROCESSABLE_EVERY).await;
                }
                let mut faults = faults.borrow_mut();
                faults.windows.push((
                    if after_commit { "422 after commit" } else { "422 before commit" },
                    began,
                    Utc::now(),
                ));
                if after_commit {
                    faults.unprocessable_after_windows += 1;
                    faults.unprocessable_after_armed += armed;
                } else {
                    faults.unprocessable_before_windows += 1;
                    faults.unprocessable_before_armed += armed;
                }
            }
            _ => {
                // The fake delays each delivery before it takes a worker, so a backlog queued when the
                // shuffle starts is drained into racing sleepers at once: deliveries queued seconds apart
                // then arrive seconds out of order (measured: up to 5.6 s after a restart's backlog), far
                // beyond the 400 ms meant and the bridge's order window. Shuffle only an idle queue.
                let until = Instant::now() + Duration::from_secs(5);
                while chatwoot.webhooks_in_flight() > SHUFFLE_BACKLOG && Instant::now() < until && !stop.get() {
                    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                }
                if chatwoot.webhooks_in_flight() > SHUFFLE_BACKLOG {
                    faults.borrow_mut().shuffle_skipped += 1;
                    continue;
                }
                let delay = rng.millis(100, SHUFFLE_MAX_MS);
                let began = Utc::now();
                chatwoot.set_webhook_shuffle(Some(delay));
                {
                    let mut faults = faults.borrow_mut();
                    faults.shuffle_windows += 1;
                    faults.shuffle_max = faults.shuffle_max.max(delay);
                }
                actix_web::rt::time::sleep(rng.millis(1000, 4000)).await;
                chatwoot.set_webhook_shuffle(None);
                faults.borrow_mut().windows.push(("shuffled webhooks", began, Utc::now()));
            }
        }
    }
    chatwoot.set_fault(Fault::None);
    chatwoot.set_webhook_duplicates(false);
    chatwoot.set_webhook_shuffle(None);
    if replicas > 1 {
        // Every fault ends with its replica running and in rotation; after a failure, at least none stays stopped.
        for bridge in &cluster.bridges {
            bridge.signal("CONT");
        }
    }
}

/// The most messages any conversation got within one minute (every kind counts towards Chatwoot's
/// per-conversation limit). Chatwoot answers 422 `Too many messages` only once this reaches the limit, so
/// below it no 422 was the pacing's fault, whatever the injected ones did.
fn busiest_minute(chatwoot: &FakeChatwoot) -> usize {
    let mut busiest = 0;
    for conversation in chatwoot.conversations() {
        let mut times: Vec<DateTime<Utc>> =
            chatwoot.messages(conversation.display_id).into_iter().map(|m| m.created_at).collect();
        times.sort_unstable();
        let mut start = 0;
        for (end, at) in times.iter().enumerate() {
            while times.get(start).is_some_and(|first| *at - *first >= chrono::TimeDelta::minutes(1)) {
                start += 1;
            }
            busiest = busiest.max(end + 1 - start);
        }
    }
    busiest
}

/// Finds the chat of conversations not seen yet, by the first customer message in each.
fn map_conversations(chatwoot: &FakeChatwoot, plan: &Plan, sent: &mut Sent) {
    for conversation in chatwoot.conversations() {
        if sent.mapped.contains(&conversation.display_id) {
            continue;
        }
        let first = chatwoot.messages(conversation.display_id).into_iter().find_map(|m| {
            (m.message_type == "incoming").then(|| m.source_id.as_deref().and_then(Plan::parse_source)).flatten()
        });
        let Some(k) = first else { continue };
        sent.mapped.insert(conversation.display_id);
        if let Some(entry) = sent.conversations.get_mut(plan.slot(k).0)
            && entry.is_none()
        {
            *entry = Some(conversation.display_id);
        }
    }
}

/// Replies that are settled without being on WhatsApp yet: Chatwoot's every webhook of them failed.
fn refused_replies(chatwoot: &FakeChatwoot, replies: &[(usize, u64, i64)]) -> usize {
    let outcomes = chatwoot.message_webhook_outcomes("message_created");
    replies.iter().filter(|(_, _, id)| outcomes.get(id).is_some_and(|(n, ok)| *n > 0 && *ok == 0)).count()
}

fn whatsapp_sends(sim: &RyzeApiSim, plan: &Plan) -> usize {
    plan.instances.iter().map(|i| sim.sent_message_ids(i).len()).sum()
}

/// Sends every customer message and types every reply, paced; `Err` when the deadline passes first.
async fn drive(
    chatwoot: &FakeChatwoot,
    sim: &RyzeApiSim,
    plan: &Plan,
    rate: u64,
    deadline: Instant,
    faults: &RefCell<Faults>,
    sent: &RefCell<Sent>,
) -> Res<()> {
    let mut cap = PER_CHAT_RATE * plan.slots as f64;
    if rate > 0 {
        cap = cap.min(rate as f64);
    }
    // Closed loop, never more per chat than the fake's per-minute limit allows, and no more than the webhook
    // backlog bound: each message that arrives makes the fake queue about two webhooks.
    let window = WEBHOOK_BACKLOG.min(PER_CHAT_BACKLOG * plan.slots) as u64;
    // Token buckets holding at most a second's worth, so a stall is not followed by a burst.
    let (mut in_tokens, mut out_tokens) = (1.0f64, 1.0f64);
    let mut last = Instant::now();
    let (mut next_map, mut next_settle) = (Instant::now(), Instant::now());
    let mut settled_replies = 0u64;
    let mut next_reply = 0u64;
    loop {
        // One tick, with the record borrowed only until the sleep.
        {
            let mut sent = sent.borrow_mut();
            if sent.inbound >= plan.inbound && next_reply >= plan.replies {
                return Ok(());
            }
            if let Some(problem) = &faults.borrow().broken {
                return Err(problem.clone());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "deadline reached while sending: {} of {} customer messages and {next_reply} of {} replies sent",
                    sent.inbound, plan.inbound, plan.replies
                ));
            }
            let now = Instant::now();
            let dt = now.duration_since(last).as_secs_f64();
            last = now;
            in_tokens = (in_tokens + cap * dt).min(cap.max(1.0));
            out_tokens = (out_tokens + cap * dt).min(cap.max(1.0));

            let backlog = chatwoot.webhooks_in_flight();
            sent.ticks += 1;
            sent.max_backlog = sent.max_backlog.max(backlog);
            let open = backlog <= WEBHOOK_BACKLOG;
            if !open {
                sent.held_by_webhooks += 1;
            }

            // Customer messages: what is not in Chatwoot yet is outstanding (replies are its other messages).
            let arrived = (chatwoot.message_count() as u64).saturating_sub(sent.replies.len() as u64);
            let outstanding = sent.inbound.saturating_sub(arrived);
            let n = (in_tokens as u64).min(window.saturating_sub(outstanding)).min(plan.inbound - sent.inbound);
            let n = if open { n } else { 0 };
            for _ in 0..n {
                let k = sent.inbound;
                let integration = plan.integration(plan.slot(k).0);
                let Some(instance) = plan.instances.get(integration) else { break };
                sim.send_event(instance, plan.customer_message(instance, k));
                sent.inbound += 1;
            }
            in_tokens -= n as f64;

            // Agent replies, once the chat's conversation exists.
            if now >= next_map && sent.conversations.iter().any(Option::is_none) {
                map_conversations(chatwoot, plan, &mut sent);
                next_map = now + Duration::from_millis(250);
            }
            if now >= next_settle {
                settled_replies = (whatsapp_sends(sim, plan) + refused_replies(chatwoot, &sent.replies)) as u64;
                next_settle = now + Duration::from_millis(250);
            }
            let outstanding = (sent.replies.len() as u64).saturating_sub(settled_replies);
            let n = (out_tokens as u64).min(window.saturating_sub(outstanding)).min(plan.replies - next_reply);
            let n = if open { n } else { 0 };
            let mut typed = 0u64;
            for _ in 0..n {
                let (slot, seq) = plan.slot(next_reply);
                let Some(display_id) = sent.conversations.get(slot).copied().flatten() else { break };
                match chatwoot.agent_reply(display_id, &Plan::reply_text(slot, seq), false) {
                    Some(id) => sent.replies.push((slot, seq, id)),
                    None => sent.agent_refused += 1,
                }
                next_reply += 1;
                typed += 1;
            }
            out_tokens -= typed as f64;
        }
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Customer messages as Chatwoot holds them.
#[derive(Debug, Default)]
struct InboundCheck {
    /// Distinct messages of the plan found.
    delivered: u64,
    duplicates: u64,
    lost: u64,
    /// Messages stored after a later message of the same chat.
    out_of_order: u64,
    /// Each of those (of people who keep one form): its WhatsApp id and the later one's.
    reordered: Vec<(String, String)>,
    /// Conversations beyond the first for one chat (of a person who keeps one form).
    extra_conversations: u64,
    /// Conversations beyond the first of a person who switched forms: split, then merged (Chatwoot's merge
    /// keeps both conversations under the surviving contact).
    split_conversations: u64,
    /// Chatwoot contacts beyond the first holding one person's messages (issue 15: one person, one contact).
    extra_contacts: u64,
    /// Outgoing messages with a WhatsApp source id: copies of the bridge's own sends (none are typed on the phone).
    echo_copies: u64,
    /// Incoming messages that are not the plan's.
    foreign: u64,
    /// The first violations, described (for a reproduction).
    examples: Vec<String>,
}

/// How many violations are described at most.
const EXAMPLES: usize = 10;

fn example(examples: &mut Vec<String>, text: impl FnOnce() -> String) {
    if examples.len() < EXAMPLES {
        examples.push(text());
    }
}

/// `HH:MM:SS.mmm` (UTC), to line violations up with the kill times and the bridge log.
fn clock(at: DateTime<Utc>) -> String {
    at.format("%H:%M:%S%.3f").to_string()
}

fn check_inbound(chatwoot: &FakeChatwoot, plan: &Plan) -> InboundCheck {
    let mut check = InboundCheck::default();
    let mut seen = vec![0u32; usize::try_from(plan.inbound).unwrap_or(0)];
    let mut first: HashMap<u64, String> = HashMap::new();
    // Conversations (display ids) holding each chat's messages.
    let mut per_chat: HashMap<usize, Vec<i64>> = HashMap::new();
    let mut contacts: HashMap<usize, HashSet<i64>> = HashMap::new();
    // Messages of people who switch forms, by Chatwoot id: their order holds per form, across conversations.
    let mut switched: Vec<(i64, u64)> = Vec::new();
    for conversation in chatwoot.conversations() {
        let mut latest: Option<u64> = None;
        let mut chat = None;
        for message in chatwoot.messages(conversation.display_id) {
            let source = message.source_id.as_deref();
            let at = || {
                format!(
                    "Chatwoot message {} in conversation {} at {}",
                    message.id,
                    conversation.display_id,
                    clock(message.created_at)
                )
            };
            match (message.message_type.as_str(), source.and_then(Plan::parse_source)) {
                ("incoming", Some(k)) if k < plan.inbound => {
                    if let Some(count) = seen.get_mut(usize::try_from(k).unwrap_or(usize::MAX)) {
                        *count += 1;
                        if *count == 1 {
                            first.insert(k, at());
                        } else {
                            let original = first.get(&k).cloned().unwrap_or_default();
                            example(&mut check.examples, || {
                                format!(
                                    "inbound duplicate: {} (chat {}): {original}; again {}",
                                    Plan::wa_id(k),
                                    plan.slot(k).0,
                                    at()
                                )
                            });
                        }
                    }
                    let slot = plan.slot(k).0;
                    contacts.entry(slot).or_default().insert(conversation.contact_id);
                    if Plan::switches(slot) {
                        switched.push((message.id, k));
                    } else if let Some(l) = latest.filter(|l| k < *l) {
                        check.out_of_order += 1;
                        check.reordered.push((Plan::wa_id(k), Plan::wa_id(l)));
                        example(&mut check.examples, || {
                            format!(
                                "inbound out of order: {} stored after {} ({})",
                                Plan::wa_id(k),
                                Plan::wa_id(l),
                                at()
                            )
                        });
                    }
                    if !Plan::switches(slot) {
                        latest = latest.max(Some(k));
                    }
                    chat = Some(slot);
                }
                ("incoming", _) => check.foreign += 1,
                ("outgoing", _) if source.is_some_and(|s| s.starts_with("WAID:")) => {
                    check.echo_copies += 1;
                    example(&mut check.examples, || format!("copy of a WhatsApp send: {source:?}, {}", at()));
                }
                _ => {}
            }
        }
        if let Some(chat) = chat {
            per_chat.entry(chat).or_default().push(conversation.display_id);
        }
    }
    for (k, count) in seen.into_iter().enumerate() {
        match count {
            0 => {
                check.lost += 1;
                let k = k as u64;
                example(&mut check.examples, || format!("inbound lost: {} (chat {})", Plan::wa_id(k), plan.slot(k).0));
            }
            n => {
                check.delivered += 1;
                check.duplicates += u64::from(n - 1);
            }
        }
    }
    let extra = |switching: bool| -> u64 {
        per_chat
            .iter()
            .filter(|(slot, _)| Plan::switches(**slot) == switching)
            .map(|(_, ids)| (ids.len() as u64).saturating_sub(1))
            .sum()
    };
    check.extra_conversations = extra(false);
    check.split_conversations = extra(true);
    let mut split: Vec<(&usize, &Vec<i64>)> =
        per_chat.iter().filter(|(slot, ids)| !Plan::switches(**slot) && ids.len() > 1).collect();
    split.sort_by_key(|(slot, _)| **slot);
    for (slot, ids) in split {
        let instance = plan.instances.get(plan.integration(*slot)).map_or("?", String::as_str);
        example(&mut check.examples, || format!("chat {slot} ({instance}) is in {} conversations: {ids:?}", ids.len()));
    }
    let mut people: Vec<(&usize, &HashSet<i64>)> = contacts.iter().filter(|(_, ids)| ids.len() > 1).collect();
    people.sort_by_key(|(slot, _)| **slot);
    for (slot, ids) in people {
        check.extra_contacts += ids.len() as u64 - 1;
        example(&mut check.examples, || format!("chat {slot} is {} Chatwoot contacts: {ids:?}", ids.len()));
    }
    switched.sort_unstable();
    let mut latest: HashMap<(usize, &'static str), u64> = HashMap::new();
    for (id, k) in switched {
        let (slot, seq) = plan.slot(k);
        let queue = Plan::form(slot, seq).queue();
        let last = latest.entry((slot, queue)).or_insert(k);
        if k < *last {
            check.out_of_order += 1;
            let after = *last;
            example(&mut check.examples, || {
                format!(
                    "inbound out of order ({queue}): {} (Chatwoot message {id}) stored after {}",
                    Plan::wa_id(k),
                    Plan::wa_id(after)
                )
            });
        }
        *last = (*last).max(k);
    }
    check
}

/// Agent replies as WhatsApp (the simulator) got them.
#[derive(Debug, Default)]
struct OutboundCheck {
    /// Replies whose `message_created` webhook the bridge answered 200 at least once.
    accepted: u64,
    /// Replies whose every webhook failed (the bridge was down): Chatwoot marks them failed, as the real one
    /// does; the agent sees it. Not expected on WhatsApp.
    refused: u64,
    /// Replies whose webhook is still queued in the fake.
    pending_webhook: u64,
    /// Accepted replies on WhatsApp.
    delivered: u64,
    duplicates: u64,
    lost: u64,
    out_of_order: u64,
    /// Each reply sent after a later one of its chat: its Chatwoot id and the later one's.
    reordered: Vec<(i64, i64)>,
    /// Of `out_of_order`, those whose job the bridge stored more than its reply order window after the
    /// later reply's (the webhook came that late: the window's documented limit), with the largest gap.
    late_webhooks: u64,
    late_gap: Duration,
    /// Sent to another integration's instance than the chat's.
    misrouted: u64,
    /// Sent although Chatwoot saw their webhook fail (stored just before a kill): fine, counted apart.
    sent_unaccepted: u64,
    /// `message_created` deliveries beyond the first of the same message (every message, both directions).
    doubled_webhooks: u64,
    /// The first violations, described (for a reproduction).
    examples: Vec<String>,
}

fn check_outbound(
    chatwoot: &FakeChatwoot,
    sim: &RyzeApiSim,
    plan: &Plan,
    replies: &[(usize, u64, i64)],
) -> OutboundCheck {
    let mut check = OutboundCheck::default();
    let outcomes = chatwoot.message_webhook_outcomes("message_created");
    check.doubled_webhooks = outcomes.values().map(|(n, _)| n.saturating_sub(1) as u64).sum();
    let mut accepted = HashSet::new();
    for (slot, seq, id) in replies {
        match outcomes.get(id) {
            Some((_, ok)) if *ok > 0 => {
                accepted.insert((*slot, *seq));
            }
            Some(_) => check.refused += 1,
            None => check.pending_webhook += 1,
        }
    }
    check.accepted = accepted.len() as u64;
    let describe = |slot: usize, seq: u64| {
        let id = replies.iter().find(|r| r.0 == slot && r.1 == seq).map_or(0, |r| r.2);
        let typed = chatwoot.message(id).map(|m| clock(m.created_at)).unwrap_or_default();
        let (n, ok) = outcomes.get(&id).copied().unwrap_or_default();
        format!(
            "\"{}\" (chat {slot}, instance {}, Chatwoot message {id} typed at {typed}, {n} webhook deliveries, {ok} answered 2xx)",
            Plan::reply_text(slot, seq),
            plan.instances.get(plan.integration(slot)).map_or("?", String::as_str)
        )
    };
    let mut sends: HashMap<(usize, u64), u64> = HashMap::new();
    let mut latest: HashMap<usize, u64> = HashMap::new();
    for (integration, instance) in plan.instances.iter().enumerate() {
        for call in sim.requests(instance) {
            if !call.path.starts_with("/api/message/text/") || call.status != 200 {
                continue;
            }
            let Some((slot, seq)) = call.body.get("message").and_then(Value::as_str).and_then(Plan::parse_reply) else {
                continue;
            };
            if plan.integration(slot) != integration {
                check.misrouted += 1;
                example(&mut check.examples, || format!("reply sent through {instance}: {}", describe(slot, seq)));
            }
            *sends.entry((slot, seq)).or_default() += 1;
            let last = latest.entry(slot).or_insert(seq);
            if seq < *last {
                check.out_of_order += 1;
                let after = *last;
                let id_of = |seq: u64| replies.iter().find(|r| r.0 == slot && r.1 == seq).map_or(0, |r| r.2);
                check.reordered.push((id_of(seq), id_of(after)));
                example(&mut check.examples, || format!("reply out of order: {} after o{after}", describe(slot, seq)));
            }
            *last = (*last).max(seq);
        }
    }
    check.duplicates = sends.values().map(|n| n.saturating_sub(1)).sum();
    let mut twice: Vec<(&(usize, u64), &u64)> = sends.iter().filter(|(_, n)| **n > 1).collect();
    twice.sort();
    for ((slot, seq), n) in twice {
        example(&mut check.examples, || format!("reply sent {n} times: {}", describe(*slot, *seq)));
    }
    let mut missing: Vec<&(usize, u64)> = accepted.iter().filter(|key| !sends.contains_key(key)).collect();
    missing.sort();
    for (slot, seq) in missing {
        example(&mut check.examples, || format!("reply lost: {}", describe(*slot, *seq)));
    }
    check.delivered = accepted.iter().filter(|key| sends.contains_key(key)).count() as u64;
    check.lost = check.accepted - check.delivered;
    check.sent_unaccepted = sends.keys().filter(|key| !accepted.contains(key)).count() as u64;
    check
}

/// For each customer message created after a later one of its chat: when the bridge stored each one's event
/// (row id and `received_at`, from the bridge's database), to tell a message that reached the bridge late
/// (stored after the later one) from one the bridge relayed late (stored first).
async fn measure_inbound_reordering(db: &BenchDb, check: &mut InboundCheck) {
    use sea_orm::{ConnectionTrait as _, Statement};
    if check.reordered.is_empty() {
        return;
    }
    let Ok(conn) = sea_orm::Database::connect(&db.url).await else { return };
    let keys: Vec<String> =
        check.reordered.iter().flat_map(|(a, b)| [format!("'msg:{a}'"), format!("'msg:{b}'")]).collect();
    let sql = format!(
        "SELECT message_key, MIN(id) AS id, MIN(received_at) AS received_at FROM inbound_events \
         WHERE message_key IN ({}) GROUP BY message_key",
        keys.join(",")
    );
    let Ok(rows) = conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql)).await else { return };
    let stored: HashMap<String, (i64, DateTime<Utc>)> = rows
        .iter()
        .filter_map(|row| {
            let key: String = row.try_get("", "message_key").ok()?;
            Some((
                key.strip_prefix("msg:")?.to_owned(),
                (row.try_get("", "id").ok()?, row.try_get("", "received_at").ok()?),
            ))
        })
        .collect();
    for (earlier, later) in check.reordered.clone() {
        let (Some((a_id, a_at)), Some((b_id, b_at))) = (stored.get(&earlier), stored.get(&later)) else { continue };
        example(&mut check.examples, || {
            let verdict = if a_id > b_id { "reached the bridge after it" } else { "stored first, relayed later" };
            format!(
                "  {earlier}'s event: row {a_id} stored {}; {later}'s: row {b_id} stored {} — {verdict}",
                clock(*a_at),
                clock(*b_at)
            )
        });
    }
}

/// The bridge's order window (`BRIDGE_REPLY_ORDER_WINDOW_MS`, its default: the bench does not set it).
const REPLY_ORDER_WINDOW: Duration = Duration::from_millis(500);

/// For each reordered pair, how much later the bridge stored the earlier reply's job than the later one's
/// (read from the bridge's database): beyond the order window, the earlier webhook simply came too late.
async fn measure_reordering(db: &BenchDb, check: &mut OutboundCheck) {
    use sea_orm::{ConnectionTrait as _, Statement};
    if check.reordered.is_empty() {
        return;
    }
    let Ok(conn) = sea_orm::Database::connect(&db.url).await else { return };
    let ids: Vec<String> = check.reordered.iter().flat_map(|(a, b)| [a.to_string(), b.to_string()]).collect();
    let sql = format!(
        // The first job of each reply: its send, or the agent's retry when every webhook of the send failed
        // (a retry pressed later is a late webhook too).
        "SELECT chatwoot_message_id, MIN(created_at) AS created_at FROM outbound_jobs \
         WHERE (kind = 'send' OR kind LIKE 'retry-%') AND chatwoot_message_id IN ({}) GROUP BY chatwoot_message_id",
        ids.join(",")
    );
    let Ok(rows) = conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql)).await else { return };
    let stored: HashMap<i64, DateTime<Utc>> = rows
        .iter()
        .filter_map(|row| {
            Some((row.try_get::<i64>("", "chatwoot_message_id").ok()?, row.try_get("", "created_at").ok()?))
        })
        .collect();
    for (earlier, later) in check.reordered.clone() {
        let (Some(a), Some(b)) = (stored.get(&earlier), stored.get(&later)) else { continue };
        let gap = (*a - *b).to_std().unwrap_or_default();
        example(&mut check.examples, || {
            // Stored first and still sent later: not a late webhook, the bridge reordered.
            let relation = match (*b - *a).to_std() {
                Ok(ahead) if !ahead.is_zero() => format!("{} ms BEFORE", ahead.as_millis()),
                _ => format!("{} ms after", gap.as_millis()),
            };
            format!(
                "  Chatwoot message {earlier}'s job was stored at {}, {relation} {later}'s ({})",
                clock(*a),
                clock(*b)
            )
        });
        if gap > REPLY_ORDER_WINDOW {
            check.late_webhooks += 1;
            check.late_gap = check.late_gap.max(gap);
        }
    }
    let _ = conn.close().await;
}

/// Waits until every customer message is in Chatwoot and every accepted reply on WhatsApp, with no webhook
/// left in the fake's queue; false at the deadline (or when a restart failed).
async fn drain(
    chatwoot: &FakeChatwoot,
    sim: &RyzeApiSim,
    plan: &Plan,
    replies: &[(usize, u64, i64)],
    deadline: Instant,
    faults: &RefCell<Faults>,
) -> bool {
    loop {
        let settled = chatwoot.webhooks_settled(Duration::ZERO).await;
        let inbound = check_inbound(chatwoot, plan);
        let outbound = check_outbound(chatwoot, sim, plan, replies);
        if settled && inbound.lost == 0 && outbound.lost == 0 && outbound.pending_webhook == 0 {
            return true;
        }
        if remaining(deadline).is_zero() || faults.borrow().broken.is_some() {
            return false;
        }
        actix_web::rt::time::sleep(Duration::from_secs(1).min(remaining(deadline))).await;
    }
}

/// Replies on WhatsApp, by chat and sequence number.
fn whatsapp_replies(sim: &RyzeApiSim, plan: &Plan) -> HashSet<(usize, u64)> {
    plan.instances
        .iter()
        .flat_map(|instance| sim.requests(instance))
        .filter(|call| call.path.starts_with("/api/message/text/") && call.status == 200)
        .filter_map(|call| call.body.get("message").and_then(Value::as_str).and_then(Plan::parse_reply))
        .collect()
}

/// What an agent does about a reply Chatwoot marked failed: presses retry (`message_updated`, status `sent`,
/// no attributes). Returns `(retried, then sent to WhatsApp within 5 s)`. Done after the checks, since a
/// retried reply is naturally sent after later ones.
async fn retry_refused(stack: &Stack, plan: &Plan, replies: &[(usize, u64, i64)], deadline: Instant) -> (u64, u64) {
    let outcomes = stack.chatwoot.message_webhook_outcomes("message_created");
    let already = whatsapp_replies(&stack.sim, plan);
    let mut retried = Vec::new();
    for (slot, seq, id) in replies {
        let refused = outcomes.get(id).is_some_and(|(n, ok)| *n > 0 && *ok == 0);
        if refused && !already.contains(&(*slot, *seq)) && stack.chatwoot.agent_retry(*id) {
            retried.push((*slot, *seq));
        }
    }
    let until = Instant::now() + Duration::from_secs(5).min(remaining(deadline));
    loop {
        let sent = whatsapp_replies(&stack.sim, plan);
        let count = retried.iter().filter(|key| sent.contains(key)).count();
        if count == retried.len() || Instant::now() >= until {
            return (retried.len() as u64, count as u64);
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The table rows of the replica faults: counts, and how soon the integrations were connected again.
fn replica_rows(table: &mut Table, faults: &Faults, mean_restart: f64) {
    let of = |kind: ReplicaFaultKind| -> Vec<&ReplicaFault> {
        faults.replica_faults.iter().filter(|f| f.kind == kind).collect()
    };
    // "mean (max) ms", and how many did not get there within MOVE_WITHIN.
    let summary = |values: Vec<Option<Duration>>| -> String {
        let got: Vec<f64> = values.iter().flatten().map(|d| d.as_secs_f64() * 1000.0).collect();
        let missed = values.len() - got.len();
        let mut text = match got.iter().copied().reduce(f64::max) {
            Some(max) => format!("{:.0} ms ({max:.0})", got.iter().sum::<f64>() / got.len() as f64),
            None => "—".to_owned(),
        };
        if missed > 0 {
            text.push_str(&format!(", {missed} not within {} s", MOVE_WITHIN.as_secs()));
        }
        text
    };
    let (quick, kept) = (of(ReplicaFaultKind::KillQuick), of(ReplicaFaultKind::KillKept));
    table.info(
        "replica kill -9 + restart under its name: at once (50–500 ms) / kept down until taken over",
        format!("{} / {} (mean start → /readyz of every restart {mean_restart:.0} ms)", quick.len(), kept.len()),
    );
    table.info(
        "  its integrations connected again, mean (max): after a restart at once / elsewhere while it was down",
        format!(
            "{} / {}",
            summary(quick.iter().map(|f| f.moved).collect()),
            summary(kept.iter().map(|f| f.moved).collect())
        ),
    );
    let pauses = of(ReplicaFaultKind::Pause);
    table.info(
        format!(
            "replica SIGSTOP {}–{} s (lease {LEASE_TTL_MS} ms) then SIGCONT: pauses / leases taken over, mean (max)",
            PAUSE_MS.0 / 1000,
            PAUSE_MS.1 / 1000
        ),
        format!(
            "{} / {}",
            pauses.len(),
            summary(pauses.iter().map(|f| f.moved).collect()).replace("not within 30 s", "not within the pause")
        ),
    );
    table.info(
        "  after SIGCONT: every integration it held on one link again, mean (max)",
        summary(pauses.iter().map(|f| f.relinked).collect()),
    );
    let missed: usize = faults.replica_faults.iter().map(ReplicaFault::missed).sum();
    table.target(
        "integrations not connected again within 30 s of a replica fault (kill -9, SIGTERM; SIGSTOP: of SIGCONT)",
        missed.to_string(),
        "0",
        missed == 0,
    );
    let terms = of(ReplicaFaultKind::Term);
    let unclean = terms.iter().filter(|f| !f.clean_exit).count();
    table.info(
        "rolling restarts (SIGTERM, restart, back once ready): rounds / replicas restarted / not exited in 15 s",
        format!("{} / {} / {unclean}", faults.rolling_rounds, terms.len()),
    );
    table.info(
        "  SIGTERM → exit (hand-over included) / its integrations connected elsewhere, mean (max)",
        format!(
            "{} / {}",
            summary(terms.iter().map(|f| f.exited).collect()),
            summary(terms.iter().map(|f| f.moved).collect())
        ),
    );
}

/// Integrations not `active` with empty queues and a connected link, with what is wrong.
/// Asked of the stack's bridge or, should it not answer, of the other replicas (at `others`): any replica
/// answers with the owner's view. One that nobody answers for is stuck too.
async fn stuck(stack: &Stack, others: &[String], ids: &[String]) -> Vec<String> {
    let mut stuck = Vec::new();
    for id in ids {
        let path = format!("/v1/integrations/{id}");
        let mut answer = stack.call(awc::http::Method::GET, &path, None).await;
        for url in others {
            if answer.is_ok() {
                break;
            }
            answer = stack.call_at(url, awc::http::Method::GET, &path, None).await;
        }
        let (status, view) = match answer {
            Ok(answer) => answer,
            Err(e) => {
                stuck.push(format!("{id}: no answer: {e}"));
                continue;
            }
        };
        let pending = |key: &str| view.pointer(&format!("/queues/{key}")).and_then(Value::as_u64).unwrap_or(u64::MAX);
        let ok = status == 200
            && view.get("status").and_then(Value::as_str) == Some("active")
            && view.pointer("/connection/state").and_then(Value::as_str) == Some("connected")
            && pending("to_chatwoot_pending") == 0
            && pending("to_whatsapp_pending") == 0;
        if !ok {
            stuck.push(format!(
                "{id}: HTTP {status}, status {}, link {}, queues {}",
                view.get("status").unwrap_or(&Value::Null),
                view.pointer("/connection/state").unwrap_or(&Value::Null),
                view.get("queues").unwrap_or(&Value::Null)
            ));
        }
    }
    stuck
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// `future`, or an error naming `what` once the deadline passes.
async fn within<T>(deadline: Instant, what: &str, future: impl std::future::Future<Output = Res<T>>) -> Res<T> {
    match actix_web::rt::time::timeout(remaining(deadline), future).await {
        Ok(result) => result,
        Err(_) => Err(format!("deadline reached while {what}")),
    }
}

/// `--replicas` > 1: the fakes, the balancer and `count` replicas on the one database (replica 0 is the
/// stack's bridge, through which the bench makes its own calls), each in rotation once ready.
async fn start_replicas(db: &BenchDb, count: usize) -> Res<(Stack, Vec<Bridge>, Balancer)> {
    let Neighbours { chatwoot, ryzeapi: sim } = crate::stack::neighbours()?;
    let balancer = Balancer::start(count)?;
    let public_url = format!("http://{}", balancer.addr);
    let key = crate::stack::random_key();
    let ttl = LEASE_TTL_MS.to_string();
    let ports = stable_ports(count)?;
    let mut bridges = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let name = replica_name(i);
        let bind = format!("127.0.0.1:{port}");
        let data = db.dir.join(format!("data-{i}")).display().to_string();
        let mut env: Vec<(&str, &str)> = CHAOS_ENV.to_vec();
        env.extend([
            ("BRIDGE_REPLICA_NAME", name.as_str()),
            ("BRIDGE_DATA_DIR", data.as_str()),
            ("BRIDGE_ENCRYPTION_KEY", key.as_str()),
            ("BRIDGE_PUBLIC_URL", public_url.as_str()),
            ("BRIDGE_LEASE_TTL_MS", ttl.as_str()),
            ("BIND", bind.as_str()),
        ]);
        let bridge = Bridge::start_logged(db, sim.url(), &env, &format!("bridge-{name}.log")).await?;
        balancer.set(i, Some(&bridge.url));
        bridges.push(bridge);
    }
    let mut bridges = bridges.into_iter();
    let first = bridges.next().ok_or("no replica")?;
    let stack = Stack { bridge: first, chatwoot, sim, http: crate::stack::client(64) };
    Ok((stack, bridges.collect(), balancer))
}

/// `count` free ports below the kernel's ephemeral range, for the replicas: a killed replica's port, free
/// while it is down, could otherwise be taken as the local port of one of the many outgoing connections
/// (each webhook is two), and its restart could not bind it.
pub(crate) fn stable_ports(count: usize) -> Res<Vec<u16>> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let low = range.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()).unwrap_or(32768);
    let (from, to) = (10_000u16.min(low), low);
    // A random start, so that benches running side by side seldom meet.
    let span = u64::from(to - from).max(1);
    let start =
        crate::stack::random_suffix().get(..4).and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or(0) % span;
    let ports: Vec<u16> = (0..span)
        .filter_map(|k| u16::try_from(u64::from(from) + (start + k) % span).ok())
        .filter(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .take(count)
        .collect();
    if ports.len() < count {
        return Err(format!("only {} free ports for the replicas below {low}", ports.len()));
    }
    Ok(ports)
}

/// Every instance has exactly one RyzeAPI link (the replicas' `/metrics` count only their own).
async fn wait_linked(sim: &RyzeApiSim, instances: &[String], deadline: Instant) -> Res<()> {
    loop {
        let missing = instances.iter().filter(|i| sim.connections(i) != 1).count();
        if missing == 0 {
            return Ok(());
        }
        if remaining(deadline).is_zero() {
            return Err(format!("{missing} of {} links not connected (once) by the deadline", instances.len()));
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to `within` until no replica holds more than its fair share plus one; answers the spread.
async fn wait_spread(admin: &DatabaseConnection, replicas: usize, integrations: usize, within: Duration) -> Vec<usize> {
    let until = Instant::now() + within;
    let share = integrations.div_ceil(replicas.max(1));
    loop {
        let counts = spread(admin, replicas).await.unwrap_or_default();
        if (counts.iter().sum::<usize>() == integrations && counts.iter().all(|n| *n <= share + 1))
            || Instant::now() >= until
        {
            return counts;
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn chaos(opts: &Opts, db: &BenchDb) -> Res<Table> {
    let replicas = opts.replicas.max(1);
    if replicas > 1 && db.kind() != "PostgreSQL" {
        return Err(format!(
            "chaos --replicas {replicas} needs PostgreSQL (replicas share one database): run with \
             DATABASE_URL=postgres://…, or without --replicas for one bridge on SQLite"
        ));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(opts.seconds);
    let plan = Plan::new(opts);
    let integrations = plan.instances.len();
    let mut table = Table::new(format!(
        "chaos — {} customer messages + {} agent replies over {integrations} integrations × {} chats, seed {}, \
         deadline {} s, {}",
        plan.inbound,
        plan.replies,
        plan.slots.div_ceil(integrations),
        opts.seed,
        opts.seconds,
        db.kind()
    ));
    if replicas > 1 {
        table.title.push_str(&format!(", {replicas} replicas"));
    }
    let (mut stack, mut others, balancer, admin) = if replicas == 1 {
        let stack = within(deadline, "starting the bridge", Stack::start_with(db, CHAOS_ENV)).await?;
        (stack, Vec::new(), None, None)
    } else {
        let (stack, others, balancer) = within(deadline, "starting the replicas", start_replicas(db, replicas)).await?;
        let admin = sea_orm::Database::connect(&db.url).await.map_err(|e| format!("PostgreSQL: {e}"))?;
        (stack, others, Some(balancer), Some(admin))
    };
    let ids = if replicas == 1 {
        within(deadline, "activating", stack.activate_all(&plan.instances, 4)).await?
    } else {
        // Each instance activated through the next replica.
        let urls: Vec<String> =
            std::iter::once(&stack.bridge).chain(&others).map(|bridge| bridge.url.clone()).collect();
        let activations = plan.instances.iter().enumerate().map(|(n, instance)| {
            let url = urls.get(n % urls.len().max(1)).cloned().unwrap_or_default();
            let stack = &stack;
            async move { stack.activate_via(&url, instance).await }
        });
        let all = futures_util::stream::iter(activations).buffered(4).collect::<Vec<Res<String>>>();
        within(deadline, "activating", async { all.await.into_iter().collect::<Res<Vec<String>>>() }).await?
    };
    if replicas == 1 {
        let connect = stack.wait_connected(integrations, remaining(deadline));
        within(deadline, "connecting the links", connect).await?;
    } else {
        wait_linked(&stack.sim, &plan.instances, deadline).await?;
    }
    let spread_at_start = match &admin {
        Some(admin) => {
            wait_spread(admin, replicas, integrations, Duration::from_secs(30).min(remaining(deadline))).await
        }
        None => Vec::new(),
    };
    let setup = started.elapsed();

    let traffic_started = Instant::now();
    let stop = Cell::new(false);
    let faults = RefCell::new(Faults::default());
    let sent = RefCell::new(Sent { conversations: vec![None; plan.slots], ..Sent::default() });
    let mut rng = Rng(opts.seed);
    let sending = Cell::new(Duration::ZERO);
    // Faults go on until every message arrived, not only while sending: most of the work is the bridge's backlog.
    let (driven, drained) = {
        let Stack { bridge, chatwoot, sim, .. } = &mut stack;
        let (chatwoot, sim) = (&*chatwoot, &*sim);
        let mut cluster = Cluster {
            bridges: std::iter::once(bridge).chain(others.iter_mut()).collect(),
            balancer: balancer.as_ref(),
            admin: admin.as_ref(),
            instances: ids.iter().cloned().zip(plan.instances.iter().cloned()).collect(),
            http: crate::stack::client(4),
        };
        let driver = async {
            let driven = drive(chatwoot, sim, &plan, opts.rate, deadline, &faults, &sent).await;
            sending.set(traffic_started.elapsed());
            let replies = sent.borrow().replies.clone();
            let drained = driven.is_ok() && drain(chatwoot, sim, &plan, &replies, deadline, &faults).await;
            stop.set(true);
            (driven, drained)
        };
        let injector = inject(&mut cluster, chatwoot, sim, &plan, &mut rng, &stop, &faults);
        futures_util::future::join(driver, injector).await.0
    };
    let traffic = traffic_started.elapsed();
    let replies = sent.borrow().replies.clone();
    // Once more after a pause, for late duplicates (and the figures of an incomplete run).
    if drained {
        actix_web::rt::time::sleep(Duration::from_secs(1).min(remaining(deadline))).await;
    }
    let mut inbound = check_inbound(&stack.chatwoot, &plan);
    measure_inbound_reordering(db, &mut inbound).await;
    let mut outbound = check_outbound(&stack.chatwoot, &stack.sim, &plan, &replies);
    measure_reordering(db, &mut outbound).await;
    // No integration stuck: all active, links up and queues empty (they may need a moment after the last fault).
    let stuck_since = (Utc::now(), Instant::now());
    let urls: Vec<String> = others.iter().map(|b| b.url.clone()).collect();
    let broken = faults.borrow().broken.is_some();
    let mut stuck_list = stuck(&stack, &urls, &ids).await;
    // The first integrations seen stuck, for a run that needed long to settle.
    let first_stuck = stuck_list.clone();
    // After a failed restart nothing settles: no waiting for the deadline.
    while !stuck_list.is_empty() && !remaining(deadline).is_zero() && !broken {
        actix_web::rt::time::sleep(Duration::from_millis(500).min(remaining(deadline))).await;
        stuck_list = stuck(&stack, &urls, &ids).await;
    }
    let stuck_wait = stuck_since.1.elapsed();
    let retry = if drained { retry_refused(&stack, &plan, &replies, deadline).await } else { (0, 0) };
    let spread_at_end = match &admin {
        Some(admin) => spread(admin, replicas).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let requests = stack.chatwoot.requests();
    let answered_422 =
        requests.iter().filter(|r| r.method == "POST" && r.path.ends_with("/messages") && r.status == 422).count();
    let busiest = busiest_minute(&stack.chatwoot);
    let paced_out = u64::from(busiest >= CONVERSATION_LIMIT);
    let faulted = requests.iter().filter(|r| matches!(r.status, 429 | 503)).count();
    let merges = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/actions/contact_merge") && r.status == 200)
        .count();

    let sent = sent.borrow();
    let faults = faults.borrow();
    let zero = |table: &mut Table, figure: &str, value: u64| table.target(figure, value.to_string(), "0", value == 0);
    table.info("customer messages sent (WhatsApp → bridge)", sent.inbound.to_string());
    table.info("  delivered to Chatwoot (distinct)", inbound.delivered.to_string());
    zero(&mut table, "  duplicates in Chatwoot", inbound.duplicates);
    zero(&mut table, "  lost", inbound.lost);
    zero(&mut table, "  out of order within a chat", inbound.out_of_order);
    zero(&mut table, "  extra conversations for one chat", inbound.extra_conversations);
    zero(&mut table, "  extra Chatwoot contacts for one person", inbound.extra_contacts);
    let switchers = (0..plan.slots).filter(|slot| Plan::switches(*slot)).count();
    table.info(
        "  people switching forms (LID-only → phone-only → both) / contact merges / split conversations kept",
        format!("{switchers} / {merges} / {}", inbound.split_conversations),
    );
    zero(&mut table, "  copies of the bridge's own WhatsApp sends in Chatwoot", inbound.echo_copies);
    if inbound.foreign > 0 {
        table.info("  other incoming messages in Chatwoot", inbound.foreign.to_string());
    }
    table.info("agent replies typed (Chatwoot → bridge)", sent.replies.len().to_string());
    table.info("  webhook answered 200 by the bridge (expected on WhatsApp)", outbound.accepted.to_string());
    table.info(
        "  every webhook failed: bridge down (Chatwoot marks them failed)",
        format!("{} ({} of them sent anyway)", outbound.refused, outbound.sent_unaccepted),
    );
    if retry.0 > 0 {
        table.info("  of those, retried by the agent afterwards → then sent", format!("{} → {}", retry.0, retry.1));
    }
    if outbound.pending_webhook > 0 {
        table.info("  webhook never delivered by the fake", outbound.pending_webhook.to_string());
    }
    table.info("  delivered to WhatsApp (distinct, of the expected)", outbound.delivered.to_string());
    zero(&mut table, "  duplicates on WhatsApp", outbound.duplicates);
    zero(&mut table, "  lost", outbound.lost);
    let reordered = outbound.out_of_order - outbound.late_webhooks;
    zero(&mut table, "  out of order within a chat (webhooks within the order window)", reordered);
    if outbound.late_webhooks > 0 {
        table.info(
            "  out of order: the earlier reply's webhook came later than the 500 ms window (its documented limit)",
            format!("{} (largest gap {} ms)", outbound.late_webhooks, outbound.late_gap.as_millis()),
        );
    }
    zero(&mut table, "  sent to another integration's instance", outbound.misrouted);
    let mean_restart =
        faults.restart_times.iter().sum::<Duration>().as_secs_f64() * 1000.0 / faults.restart_times.len().max(1) as f64;
    if replicas == 1 {
        table.info(
            "kill -9 + restart of the bridge",
            format!("{} (mean start → /readyz {mean_restart:.0} ms)", faults.restarts),
        );
    } else {
        replica_rows(&mut table, &faults, mean_restart);
        table.info(
            format!("replicas (lease TTL {LEASE_TTL_MS} ms): integrations each, at the start / at the end"),
            format!("{spread_at_start:?} / {spread_at_end:?}"),
        );
        if let Some(balancer) = &balancer {
            table.info(
                "webhook connections through the balancer, per replica / refused (no replica in rotation)",
                format!("{:?} / {}", balancer.forwarded(), balancer.refused()),
            );
        }
    }
    table.info("RyzeAPI WebSocket drops", format!("{} ({} sockets closed)", faults.link_drops, faults.sockets_closed));
    table.info(
        "Chatwoot fault windows: 5xx/429 (30 %) / hangs (2 s > 1.5 s timeout)",
        format!("{} / {} ({faulted} requests answered 503/429)", faults.flaky_windows, faults.hang_windows),
    );
    table.info(
        "doubled-webhook windows / webhooks delivered twice",
        format!("{} / {}", faults.duplicate_windows, outbound.doubled_webhooks),
    );
    table.info(
        "catch-all 422 windows on message create: before commit / after commit (message exists)",
        format!(
            "{} / {} ({} / {} armed; {answered_422} creates answered 422)",
            faults.unprocessable_before_windows,
            faults.unprocessable_after_windows,
            faults.unprocessable_before_armed,
            faults.unprocessable_after_armed
        ),
    );
    table.info(
        "shuffled late webhook windows (delay up to; skipped: webhook backlog)",
        format!("{} ({} ms; {})", faults.shuffle_windows, faults.shuffle_max.as_millis(), faults.shuffle_skipped),
    );
    table.target(
        "busiest conversation minute (messages; Chatwoot refuses from its limit: a pacing fault)",
        busiest.to_string(),
        format!("< {CONVERSATION_LIMIT}"),
        paced_out == 0,
    );
    zero(&mut table, "agent replies the fake refused (per-minute limit)", sent.agent_refused);
    zero(&mut table, "stuck integrations (not active, link down or queue not empty)", stuck_list.len() as u64);
    table.info(
        "wall time: setup / sending / until all arrived / whole run",
        format!(
            "{} / {} / {} / {}",
            report::secs(setup),
            report::secs(sending.get()),
            report::secs(traffic),
            report::secs(started.elapsed())
        ),
    );
    let rate = |n: u64| report::per_s(report::rate(n as f64, traffic));
    table.info(
        "throughput under faults: customer messages / replies / both",
        format!(
            "{} / {} / {}",
            rate(inbound.delivered),
            rate(outbound.delivered),
            rate(inbound.delivered + outbound.delivered)
        ),
    );
    table.info(
        "fake Chatwoot's webhook queue: largest backlog / sending held by it",
        format!(
            "{} / {:.0}% of ticks",
            sent.max_backlog,
            100.0 * sent.held_by_webhooks as f64 / sent.ticks.max(1) as f64
        ),
    );
    table.note(format!(
        "pacing: at most {PER_CHAT_RATE:.0} message/s and {PER_CHAT_BACKLOG} outstanding per chat and direction, \
         nothing while more than {WEBHOOK_BACKLOG} webhooks wait in the fake; --seed fixes the fault sequence, not \
         its timing"
    ));
    for line in inbound.examples.iter().chain(&outbound.examples) {
        table.note(line.clone());
    }
    if !faults.kills.is_empty() && replicas == 1 {
        let kills: Vec<String> = faults.kills.iter().map(|at| clock(*at)).collect();
        table.note(format!("kill -9 at {} (UTC)", kills.join(", ")));
    }
    if !faults.replica_faults.is_empty() {
        table.note("replica faults (UTC; \"held\": unexpired leases just before; \"connected again\": each of them owned anew and on one RyzeAPI link):");
        for fault in &faults.replica_faults {
            table.note(format!("  {}", fault.describe()));
            for line in fault.unsettled.iter().take(5) {
                table.note(format!("    not connected again: {line}"));
            }
        }
    }
    if !faults.windows.is_empty() {
        let windows: Vec<String> =
            faults.windows.iter().map(|(kind, from, to)| format!("{kind} {}–{}", clock(*from), clock(*to))).collect();
        table.note(format!("422 and shuffle windows (UTC): {}", windows.join(", ")));
    }
    for line in stuck_list.iter().take(5) {
        table.note(format!("stuck: {line}"));
    }
    // Settling after the last fault takes a second or two; longer is worth a look even when it ends well.
    let slow_to_settle = stuck_wait > Duration::from_secs(10);
    if slow_to_settle {
        table.note(format!(
            "the integrations needed {} to settle after the traffic (from {} UTC); {} not settled at first, e.g.:",
            report::secs(stuck_wait),
            clock(stuck_since.0),
            first_stuck.len()
        ));
        for line in first_stuck.iter().take(5) {
            table.note(format!("  {line}"));
        }
    }
    if replicas == 1 {
        log_notes(&stack, &mut table);
    } else {
        for (i, bridge) in std::iter::once(&stack.bridge).chain(&others).enumerate() {
            let (count, first) = bridge.log_lines();
            if count > 0 {
                table.note(format!("{} logged {count} warning/error lines; first:", replica_name(i)));
                for line in first {
                    table.note(format!("  {line}"));
                }
            }
        }
    }

    let violations = inbound.duplicates
        + inbound.lost
        + inbound.out_of_order
        + inbound.extra_conversations
        + inbound.extra_contacts
        + inbound.echo_copies
        + outbound.duplicates
        + outbound.lost
        + (outbound.out_of_order - outbound.late_webhooks)
        + outbound.misrouted
        + paced_out
        + sent.agent_refused
        + stuck_list.len() as u64
        + faults.replica_faults.iter().map(ReplicaFault::missed).sum::<usize>() as u64;
    let broken = faults.broken.clone();
    let problem = match (driven, drained) {
        (Err(e), _) => Some(e),
        (Ok(()), false) if broken.is_some() => broken,
        (Ok(()), false) => Some(format!("deadline ({} s) reached before every message arrived", opts.seconds)),
        (Ok(()), true) if violations > 0 => Some(format!("{violations} violations")),
        _ => None,
    };
    if problem.is_some() || (replicas > 1 && slow_to_settle) {
        if replicas == 1 {
            if let Some(path) = stack.bridge.keep_log() {
                table.note(format!("the bridge's log is kept at {}", path.display()));
            }
        } else {
            for (i, bridge) in std::iter::once(&stack.bridge).chain(&others).enumerate() {
                if let Some(path) = bridge.keep_log() {
                    table.note(format!("{}'s log is kept at {}", replica_name(i), path.display()));
                }
            }
        }
    }
    match problem {
        None => Ok(table),
        Some(problem) => Err(format!("{}chaos: {problem}", table.render())),
    }
}
