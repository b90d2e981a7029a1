//! `capacity`: the bridge as a citizen of one Chatwoot with a request budget (issue #16).
//!
//! The fake Chatwoot throttles like Rack::Attack (`--budget` requests a minute per client IP, fixed
//! one-minute windows, `429 Retry later` with no `Retry-After`; `--budget 0`: no throttle), serves like
//! Puma (capacity mode: `--workers` requests at once, `--service-ms` each; the rest queue) and refuses a
//! conversation's 201st message of a minute with 422. The bridge is told the same budget
//! (`BRIDGE_CHATWOOT_RATE_LIMIT`, and `BRIDGE_CHATWOOT_RATE_LIMITS=<host:port>=N` since a loopback Chatwoot
//! is otherwise unlimited, as Rack::Attack exempts 127.0.0.1).
//!
//! The run:
//! 1. `--integrations` × `--chats` are activated and each chat gets its first message (a new customer:
//!    contact, conversation, message) with no budget and no capacity limit, on a first bridge process.
//! 2. That bridge stops (SIGTERM). While it is down, `--backlog` messages for integration 0 queue at the
//!    RyzeAPI simulator (unacknowledged events, replayed on the next connection), spread over its chats.
//! 3. The budget and capacity mode are switched on and a second bridge process starts on the same
//!    database, key and port. Once every link is up, the window starts: for `--seconds` the other
//!    integrations get live customer messages at `--rate` msg/s in all (default: 30 % of the budget, so
//!    that live traffic fits and the backlog is the excess; with `--rate` above the budget every
//!    integration is saturated), round-robin over their chats, while integration 0 drains its backlog.
//!    `--outage-seconds S` makes the fake answer 503 to everything for S seconds from the window's middle
//!    (the window is then S seconds longer).
//! 4. Offering stops; the drain phase waits until every offered message is in Chatwoot (or a deadline
//!    from the budget), then a few seconds more for late duplicates.
//!
//! Figures: goodput (2xx answers a minute) ÷ budget over the window (outage excluded); 429s per 1,000
//! calls; Jain's fairness index of messages relayed per integration in the window, each divided by its
//! max-min fair share (the water-filling share of what was relayed, given what each integration offered:
//! live integrations asked for their live messages, integration 0 for its whole backlog); live latency
//! (simulator hands the event over → the fake creates the message) while the backlog drains; and at the
//! end, per chat, every offered message exactly once in order, with the 422s of message creates.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ryze_fakes::chatwoot::{Capacity, FakeChatwoot, Fault};
use ryze_fakes::ryzeapi as sim;
use ryze_testkit::Neighbours;

use crate::Opts;
use crate::inbound::{CpuMeter, PER_CHAT_PER_SECOND, Traffic, log_notes};
use crate::report::{self, Table};
use crate::stack::{BenchDb, Bridge, Res, Stack};

/// WhatsApp ids of this mode: the prefix, then integration (4 hex digits), chat (3) and the message's
/// number within its chat (7): `3EB0CAP` `0001` `02A` `000001F`.
const ID_PREFIX: &str = "3EB0CAP";
/// Live traffic by default: this share of the budget.
const LIVE_SHARE: f64 = 0.3;
/// The scale, for the verdicts.
const FULL_SCALE: (usize, usize, u64, u64) = (100, 50, 3000, 20_000);

fn message_id(integration: usize, chat: usize, seq: u32) -> String {
    format!("{ID_PREFIX}{integration:04X}{chat:03X}{seq:07X}")
}

/// `(integration, chat, seq)` of a Chatwoot `source_id` set by this mode.
fn parse_source_id(source_id: &str) -> Option<(usize, usize, u32)> {
    let rest = source_id.strip_prefix("WAID:")?.strip_prefix(ID_PREFIX)?;
    if rest.len() != 14 {
        return None;
    }
    let integration = usize::from_str_radix(rest.get(..4)?, 16).ok()?;
    let chat = usize::from_str_radix(rest.get(4..7)?, 16).ok()?;
    let seq = u32::from_str_radix(rest.get(7..)?, 16).ok()?;
    Some((integration, chat, seq))
}

/// What the mode offers: per chat, the next message number; for live messages, when each was sent.
struct Offer {
    instances: Vec<String>,
    chats: usize,
    next_seq: Vec<Vec<u32>>,
    /// Live messages: id → (integration, when handed to the simulator).
    live_sent: HashMap<String, (usize, DateTime<Utc>)>,
    /// Live messages sent so far (round-robin position).
    live_next: u64,
}

impl Offer {
    fn new(instances: Vec<String>, chats: usize) -> Self {
        let next_seq = vec![vec![0; chats]; instances.len()];
        Self { instances, chats, next_seq, live_sent: HashMap::new(), live_next: 0 }
    }

    /// Hands the next message of chat `(integration, chat)` to the simulator; answers its id.
    fn send(&mut self, stack: &Stack, integration: usize, chat: usize) -> Option<String> {
        let instance = self.instances.get(integration)?;
        let seq = self.next_seq.get_mut(integration)?.get_mut(chat)?;
        let id = message_id(integration, chat, *seq);
        let envelope = sim::text_message(
            instance,
            &id,
            &Traffic::jid(integration, chat),
            &format!("Cliente {integration}-{chat}"),
            &format!("capacity {integration}-{chat} #{seq}"),
        );
        *seq += 1;
        stack.sim.send_event(instance, envelope);
        Some(id)
    }

    /// The next `count` live messages, round-robin over every chat of integrations 1…n.
    fn send_live(&mut self, stack: &Stack, count: u64) {
        let live = self.instances.len().saturating_sub(1).max(1) as u64;
        let slots = live * self.chats.max(1) as u64;
        for _ in 0..count {
            let slot = self.live_next % slots;
            self.live_next += 1;
            let integration = usize::try_from(1 + slot % live).unwrap_or(1);
            let chat = usize::try_from(slot / live).unwrap_or(0);
            if let Some(id) = self.send(stack, integration, chat) {
                self.live_sent.insert(id, (integration, Utc::now()));
            }
        }
    }

    fn offered(&self) -> u64 {
        self.next_seq.iter().flatten().map(|n| u64::from(*n)).sum()
    }
}

/// One message of this mode as stored by the fake.
struct Delivered {
    message_id: i64,
    integration: usize,
    chat: usize,
    seq: u32,
    source_id: String,
    created_at: DateTime<Utc>,
}

/// Every message of this mode in the fake, in creation order.
fn delivered(chatwoot: &FakeChatwoot) -> Vec<Delivered> {
    let mut all = Vec::new();
    for conversation in chatwoot.conversations() {
        for message in chatwoot.messages(conversation.display_id) {
            let Some(source_id) = message.source_id else { continue };
            let Some((integration, chat, seq)) = parse_source_id(&source_id) else { continue };
            let id = source_id.trim_start_matches("WAID:").to_owned();
            all.push(Delivered {
                message_id: message.id,
                integration,
                chat,
                seq,
                source_id: id,
                created_at: message.created_at,
            });
        }
    }
    all.sort_by_key(|d| d.message_id);
    all
}

/// The fake's answers by status at one moment.
#[derive(Debug, Clone)]
struct Snap {
    at: Instant,
    utc: DateTime<Utc>,
    statuses: BTreeMap<u16, usize>,
}

impl Snap {
    fn take(chatwoot: &FakeChatwoot) -> Self {
        Self { at: Instant::now(), utc: Utc::now(), statuses: chatwoot.status_counts() }
    }

    fn count(&self, wanted: impl Fn(u16) -> bool) -> usize {
        self.statuses.iter().filter(|(s, _)| wanted(**s)).map(|(_, n)| *n).sum()
    }

    fn ok(&self) -> usize {
        self.count(|s| (200..300).contains(&s))
    }

    fn throttled(&self) -> usize {
        self.count(|s| s == 429)
    }

    fn total(&self) -> usize {
        self.count(|_| true)
    }

    fn unavailable(&self) -> usize {
        self.count(|s| s == 503)
    }
}

/// Jain's index `(Σx)² / (n·Σx²)` of `values` (1 when all are equal; 1/n when one has everything).
fn jain(values: &[f64]) -> Option<f64> {
    let sum: f64 = values.iter().sum();
    let squares: f64 = values.iter().map(|x| x * x).sum();
    (!values.is_empty() && squares > 0.0).then(|| sum * sum / (values.len() as f64 * squares))
}

/// Max-min fair shares of `capacity` among `demands` (water-filling): whoever asks for less than an equal
/// share gets what it asks for, the rest share what is left equally.
fn max_min_shares(demands: &[f64], capacity: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by(|a, b| demands[*a].total_cmp(&demands[*b]));
    let mut shares = vec![0.0; demands.len()];
    let mut left = capacity;
    for (k, i) in order.iter().enumerate() {
        let equal = left / (demands.len() - k) as f64;
        let share = demands[*i].min(equal);
        shares[*i] = share;
        left -= share;
    }
    shares
}

/// The sum of every series of `name` (one Chatwoot host here) in Prometheus text.
fn series(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn per_minute(count: usize, over: Duration) -> f64 {
    let minutes = over.as_secs_f64() / 60.0;
    if minutes > 0.0 { count as f64 / minutes } else { 0.0 }
}

fn since(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1e6
}

/// Waits until every link of `instances` is closed (the first bridge has gone).
async fn wait_unlinked(stack: &Stack, instances: &[String], within: Duration) -> Res<()> {
    let started = Instant::now();
    while instances.iter().any(|i| stack.sim.connections(i) > 0) {
        if started.elapsed() >= within {
            return Err(format!("links of the stopped bridge still open after {within:?}"));
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

pub async fn capacity(opts: &Opts, db: &BenchDb) -> Res<Table> {
    let count = opts.integrations;
    if count < 2 {
        return Err("capacity needs --integrations 2 or more (integration 0 drains the backlog)".to_owned());
    }
    let chats = opts.chats;
    let budget = u32::try_from(opts.budget).map_err(|_| "--budget is too large".to_owned())?;
    let service = Duration::from_millis(opts.service_ms);
    let workers = opts.workers.max(1);
    let fake_capacity = Capacity { workers, service_time: service };
    // What the fake can serve a second (unbounded with no service time).
    let serve_rate = if service.is_zero() { f64::INFINITY } else { workers as f64 / service.as_secs_f64() };
    let budget_rate = if budget > 0 { f64::from(budget) / 60.0 } else { serve_rate };
    let live_chats = (count - 1) * chats;
    let chat_cap = PER_CHAT_PER_SECOND * live_chats as f64;
    let wanted_rate = if opts.rate > 0 {
        opts.rate as f64
    } else if budget_rate.is_finite() {
        LIVE_SHARE * budget_rate
    } else {
        100.0
    };
    let live_rate = wanted_rate.min(chat_cap).max(0.1);

    let Neighbours { chatwoot, ryzeapi: sim } = crate::stack::neighbours()?;
    let host = chatwoot.url().trim_start_matches("http://").to_owned();
    let port = crate::chaos::stable_ports(1)?.first().copied().ok_or("no free port")?;
    let bind = format!("127.0.0.1:{port}");
    let key = crate::stack::random_key();
    let unlimited = format!("{host}=0");
    let first_env = [
        ("BRIDGE_ENCRYPTION_KEY", key.as_str()),
        ("BIND", bind.as_str()),
        ("BRIDGE_CHATWOOT_RATE_LIMIT", "0"),
        ("BRIDGE_CHATWOOT_RATE_LIMITS", unlimited.as_str()),
    ];
    let bridge = Bridge::start_with(db, sim.url(), &first_env).await?;
    let mut stack = Stack { bridge, chatwoot, sim, http: crate::stack::client(64) };
    let budget_text = if budget > 0 { format!("{budget}/min") } else { "unlimited".to_owned() };
    let mut table = Table::new(format!(
        "capacity — budget {budget_text}, Puma {workers} × {} ms, {count} integrations × {chats} chats, backlog {}, {} s{}, {}",
        opts.service_ms,
        opts.backlog,
        opts.seconds,
        if opts.outage_seconds > 0 { format!(" + {} s outage", opts.outage_seconds) } else { String::new() },
        db.kind()
    ));

    // 1. Integrations and their first messages, unlimited.
    let instances: Vec<String> = (0..count).map(|i| format!("cap-{i:05}")).collect();
    let setup = Instant::now();
    stack.activate_all(&instances, 4).await?;
    let within = Duration::from_secs(60) + Duration::from_millis(20 * count as u64);
    stack.wait_connected(count, within).await?;
    let mut offer = Offer::new(instances.clone(), chats);
    let base = stack.chatwoot.message_count();
    let mut sent = 0;
    for chat in 0..chats {
        for integration in 0..count {
            offer.send(&stack, integration, chat);
            sent += 1;
            if sent % 500 == 0 {
                stack.wait_messages(base + sent, Duration::from_secs(180)).await?;
            }
        }
    }
    stack.wait_messages(base + sent, Duration::from_secs(180)).await?;
    table.info(
        "set-up (unlimited, first bridge): activations + one message per chat",
        format!("{sent} new customers, {}", report::secs(setup.elapsed())),
    );

    // 2. The first bridge goes; the backlog queues at RyzeAPI.
    stack.bridge.stop(Duration::from_secs(30)).await;
    wait_unlinked(&stack, &instances, Duration::from_secs(30)).await?;
    for k in 0..opts.backlog {
        let chat = usize::try_from(k % chats as u64).unwrap_or(0);
        offer.send(&stack, 0, chat);
    }

    // 3. Budget and capacity on; the second bridge, told the budget.
    stack.chatwoot.set_rate_limit((budget > 0).then_some(budget));
    stack.chatwoot.set_capacity(Some(fake_capacity));
    let limited = format!("{host}={budget}");
    let budget_env = budget.to_string();
    let second_env = [
        ("BRIDGE_ENCRYPTION_KEY", key.as_str()),
        ("BIND", bind.as_str()),
        ("BRIDGE_CHATWOOT_RATE_LIMIT", budget_env.as_str()),
        ("BRIDGE_CHATWOOT_RATE_LIMITS", limited.as_str()),
    ];
    let boot = Instant::now();
    stack.bridge = Bridge::start_with(db, stack.sim.url(), &second_env).await?;
    stack.wait_connected(count, within).await?;
    table.info("second bridge (budgeted): start → every link connected", report::secs(boot.elapsed()));

    let cpu = CpuMeter::start(&stack);
    let start = Snap::take(&stack.chatwoot);
    let outage = Duration::from_secs(opts.outage_seconds);
    let offering = Duration::from_secs(opts.seconds) + outage;
    let outage_from = Duration::from_secs(opts.seconds / 2);
    let (mut outage_start, mut recovered): (Option<Snap>, Option<Snap>) = (None, None);
    let mut per_second_ok: Vec<f64> = Vec::new();
    let mut last = start.clone();
    let mut live_sent = 0u64;
    while start.at.elapsed() < offering {
        let elapsed = start.at.elapsed();
        if !outage.is_zero() && outage_start.is_none() && elapsed >= outage_from {
            stack.chatwoot.set_fault(Fault::Status(503));
            outage_start = Some(Snap::take(&stack.chatwoot));
        }
        if recovered.is_none() && outage_start.as_ref().is_some_and(|s| s.at.elapsed() >= outage) {
            stack.chatwoot.set_fault(Fault::None);
            recovered = Some(Snap::take(&stack.chatwoot));
        }
        let due = ((live_rate * elapsed.as_secs_f64()) as u64).saturating_sub(live_sent).min(5000);
        offer.send_live(&stack, due);
        live_sent += due;
        if last.at.elapsed() >= Duration::from_secs(1) {
            let now = Snap::take(&stack.chatwoot);
            per_second_ok
                .push(now.ok().saturating_sub(last.ok()) as f64 / now.at.duration_since(last.at).as_secs_f64());
            last = now;
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    if outage_start.is_some() && recovered.is_none() {
        stack.chatwoot.set_fault(Fault::None);
        recovered = Some(Snap::take(&stack.chatwoot));
    }
    let end = Snap::take(&stack.chatwoot);
    let metrics_end = stack.metrics().await.unwrap_or_default();

    // 4. Drain: every offered message in Chatwoot, or a deadline from the budget.
    let expected = offer.offered() as usize;
    let remaining = expected.saturating_sub(delivered(&stack.chatwoot).len());
    let drain_rate = if budget_rate.is_finite() { budget_rate * 0.5 } else { 50.0 };
    let drain_within = Duration::from_secs_f64(remaining as f64 / drain_rate.max(0.5)) + Duration::from_secs(180);
    let mut drained = false;
    while end.at.elapsed() < drain_within {
        if stack.chatwoot.message_count() >= base + expected && delivered(&stack.chatwoot).len() >= expected {
            drained = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    }
    let drain_end = Snap::take(&stack.chatwoot);
    // Late duplicates would come now.
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    let metrics_after = stack.metrics().await.unwrap_or_default();
    let all = delivered(&stack.chatwoot);
    let requests = stack.chatwoot.requests();

    // Goodput and 429s.
    let window = end.at.duration_since(start.at);
    let (outage_ok, outage_len) = match (&outage_start, &recovered) {
        (Some(from), Some(to)) => (to.ok() - from.ok(), to.at.duration_since(from.at)),
        _ => (0, Duration::ZERO),
    };
    let window_ok = end.ok() - start.ok() - outage_ok;
    let goodput = per_minute(window_ok, window.saturating_sub(outage_len));
    let full = count >= FULL_SCALE.0
        && chats >= FULL_SCALE.1
        && opts.budget == FULL_SCALE.2
        && opts.backlog >= FULL_SCALE.3
        && opts.seconds >= 60;
    let target = |table: &mut Table, figure: &str, value: String, goal: &str, met: bool| {
        if full {
            table.target(figure, value, goal, met);
        } else {
            table.rows.push(report::Row {
                figure: figure.into(),
                value,
                target: goal.into(),
                verdict: if met { "met (scaled-down run)".into() } else { "NOT met (scaled-down run)".into() },
            });
        }
    };
    table.info(
        "offered: live (integrations 1…n) / backlog (integration 0, queued before the start)",
        format!("{live_sent} at {live_rate:.1} msg/s / {}", opts.backlog),
    );
    if budget > 0 {
        let ratio = goodput / f64::from(budget);
        target(
            &mut table,
            "goodput ÷ budget (2xx a minute in the window, outage excluded)",
            format!("{ratio:.3} ({goodput:.0}/min)"),
            "≥ 0.95",
            ratio >= 0.95,
        );
    } else {
        table.info("goodput (2xx a minute in the window; no budget)", format!("{goodput:.0}/min"));
    }
    if serve_rate.is_finite() {
        table.info(
            "goodput ÷ the fake's capacity (workers ÷ service time)",
            format!("{:.3}", goodput / 60.0 / serve_rate),
        );
    }
    report::per_second_rows(&mut table, "2xx per second", &per_second_ok);
    let calls = drain_end.total() - start.total();
    let throttled = drain_end.throttled() - start.throttled();
    let per_1000 = if calls > 0 { 1000.0 * throttled as f64 / calls as f64 } else { 0.0 };
    target(
        &mut table,
        "429s per 1,000 calls (window + drain)",
        format!("{per_1000:.2} ({throttled} of {calls})"),
        "≤ 5",
        per_1000 <= 5.0,
    );

    // Fairness in the window.
    let (t0, t1) = (start.utc, end.utc);
    let mut relayed = vec![0f64; count];
    let mut backlog_before = 0usize;
    let mut backlog_last: Option<DateTime<Utc>> = None;
    for d in &all {
        if d.created_at >= t0 && d.created_at <= t1 {
            relayed[d.integration] += 1.0;
        }
        if d.integration == 0 && d.seq >= 1 {
            if d.created_at < t0 {
                backlog_before += 1;
            }
            backlog_last = backlog_last.max(Some(d.created_at));
        }
    }
    let mut demand = vec![0f64; count];
    for (integration, at) in offer.live_sent.values() {
        if *at >= t0 && *at <= t1 {
            demand[*integration] += 1.0;
        }
    }
    demand[0] = opts.backlog.saturating_sub(backlog_before as u64) as f64;
    let shares = max_min_shares(&demand, relayed.iter().sum());
    let normalized: Vec<f64> = relayed.iter().zip(&shares).filter(|(_, s)| **s > 0.0).map(|(r, s)| r / s).collect();
    let fairness = jain(&normalized);
    target(
        &mut table,
        "Jain's fairness index, relayed ÷ max-min fair share per integration",
        fairness.map_or_else(|| "n/a".to_owned(), |j| format!("{j:.4}")),
        "≥ 0.95",
        fairness.is_some_and(|j| j >= 0.95),
    );
    let live_relayed: Vec<f64> = relayed.iter().skip(1).copied().collect();
    table.info(
        "  Jain's index of relayed per live integration (equal offers)",
        jain(&live_relayed).map_or_else(|| "n/a".to_owned(), |j| format!("{j:.4}")),
    );
    let total_relayed: f64 = relayed.iter().sum();
    table.info(
        "  relayed in the window: backlog integration / live integrations",
        format!(
            "{:.0} ({:.0}% of all) / {:.0} of {:.0} offered",
            relayed[0],
            if total_relayed > 0.0 { 100.0 * relayed[0] / total_relayed } else { 0.0 },
            live_relayed.iter().sum::<f64>(),
            demand.iter().skip(1).sum::<f64>()
        ),
    );

    // Live latency.
    let by_id: HashMap<&str, DateTime<Utc>> = all.iter().map(|d| (d.source_id.as_str(), d.created_at)).collect();
    let (outage_from_utc, recovered_utc) = (outage_start.as_ref().map(|s| s.utc), recovered.as_ref().map(|s| s.utc));
    let (mut steady, mut in_outage, mut after_outage) = (Vec::new(), Vec::new(), Vec::new());
    let mut outage_caught_up: Option<DateTime<Utc>> = None;
    for (id, (_, at)) in &offer.live_sent {
        let Some(created) = by_id.get(id.as_str()) else { continue };
        let ms = (*created - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
        match (outage_from_utc, recovered_utc) {
            (Some(from), Some(to)) if *at >= from && *at < to => {
                in_outage.push(ms);
                outage_caught_up = outage_caught_up.max(Some(*created));
            }
            (Some(_), Some(to)) if *at >= to => after_outage.push(ms),
            _ => steady.push(ms),
        }
    }
    let during = match backlog_last {
        Some(last) if last > t0 => {
            format!("; backlog integration's last message {:.1} s into the window", since(t0, last))
        }
        _ => String::new(),
    };
    let s = report::sorted(&steady);
    table.info(format!("live latency: samples (sent before any outage{during})"), s.len().to_string());
    table.info("live latency: p50", report::ms_opt(report::percentile(&s, 50.0)));
    let p99 = report::percentile(&s, 99.0);
    target(&mut table, "live latency: p99", report::ms_opt(p99), "≤ 2 s", p99.is_some_and(|v| v <= 2000.0));
    table.info(
        "live latency: p99.9 / max",
        format!("{} / {}", report::ms_opt(report::percentile(&s, 99.9)), report::ms_opt(s.last().copied())),
    );
    let backlog_done = backlog_last.map(|last| since(t0, last));
    table.info(
        "backlog: delivered before the window / all delivered at",
        format!(
            "{backlog_before} / {}",
            backlog_done.map_or_else(|| "n/a".to_owned(), |s| format!("{s:.1} s into the window"))
        ),
    );

    // Outage.
    if let (Some(from), Some(to)) = (&outage_start, &recovered) {
        table.info(
            "outage: 503 to everything",
            format!(
                "{} from {:.1} s into the window, {} answered 503",
                report::secs(to.at.duration_since(from.at)),
                from.at.duration_since(start.at).as_secs_f64(),
                to.unavailable() - from.unavailable()
            ),
        );
        let o = report::sorted(&in_outage);
        table.info(
            "outage: live messages sent during it / last in Chatwoot after recovery",
            format!(
                "{} / {}",
                o.len(),
                outage_caught_up.map_or_else(|| "n/a".to_owned(), |c| format!("{:.1} s", since(to.utc, c)))
            ),
        );
        let recovery_ok = end.ok() - to.ok();
        let recovery_len = end.at.duration_since(to.at);
        if budget > 0 && !recovery_len.is_zero() {
            table.info(
                "outage: goodput ÷ budget from recovery to the window's end",
                format!("{:.3}", per_minute(recovery_ok, recovery_len) / f64::from(budget)),
            );
        }
        let a = report::sorted(&after_outage);
        table.info(
            "outage: live latency of messages sent after recovery p50 / p99",
            format!(
                "{} / {}",
                report::ms_opt(report::percentile(&a, 50.0)),
                report::ms_opt(report::percentile(&a, 99.0))
            ),
        );
    }

    // Drain and exactly-once, per chat order.
    let drain = drain_end.at.duration_since(end.at);
    let drain_ok = drain_end.ok() - end.ok();
    table.info(
        "drain after offering stopped",
        format!(
            "{}{}, {:.0} 2xx/min{}",
            report::secs(drain),
            if drained { "" } else { " (deadline reached, NOT drained)" },
            per_minute(drain_ok, drain),
            if budget > 0 && !drain.is_zero() {
                format!(" = {:.3} of the budget", per_minute(drain_ok, drain) / f64::from(budget))
            } else {
                String::new()
            }
        ),
    );
    let mut seen: HashMap<(usize, usize), Vec<u32>> = HashMap::new();
    for d in &all {
        seen.entry((d.integration, d.chat)).or_default().push(d.seq);
    }
    let (mut lost, mut duplicates, mut disordered_chats) = (0u64, 0u64, 0usize);
    let mut disorder_examples = Vec::new();
    for (integration, per_chat) in offer.next_seq.iter().enumerate() {
        for (chat, offered) in per_chat.iter().enumerate() {
            let got = seen.get(&(integration, chat)).map_or(&[][..], Vec::as_slice);
            let mut distinct = got.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            duplicates += (got.len() - distinct.len()) as u64;
            lost += u64::from(*offered).saturating_sub(distinct.iter().filter(|s| **s < *offered).count() as u64);
            if let Some(at) = got.windows(2).position(|w| w[1] <= w[0]) {
                disordered_chats += 1;
                if disordered_chats <= 3 {
                    let around = &got[at.saturating_sub(3)..(at + 5).min(got.len())];
                    disorder_examples.push(format!("integration {integration} chat {chat}: … {around:?} …"));
                }
            }
        }
    }
    let rejected_422 =
        requests.iter().filter(|r| r.status == 422 && r.method == "POST" && r.path.ends_with("/messages")).count();
    target(
        &mut table,
        "every offered message once, in per-chat order",
        format!("{lost} lost, {duplicates} duplicates, {disordered_chats} chats out of order (of {expected} offered)"),
        "0, 0, 0",
        lost == 0 && duplicates == 0 && disordered_chats == 0,
    );
    for example in disorder_examples {
        table.note(format!("out of order (message numbers in Chatwoot's creation order): {example}"));
    }
    target(&mut table, "message creates refused with 422", rejected_422.to_string(), "0", rejected_422 == 0);

    // The bridge's governor and the fake's pool.
    let governor = |name: &str| series(&metrics_after, name).map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}"));
    table.info(
        "governor: 429s / overloaded / governed calls (bridge's /metrics)",
        format!(
            "{} / {} / {}",
            governor("bridge_chatwoot_throttled_total"),
            governor("bridge_chatwoot_overloaded_total"),
            governor("bridge_chatwoot_governed_calls_total")
        ),
    );
    table.info(
        "governor at the window's end: concurrency limit / rate a minute / waiting",
        format!(
            "{} / {} / {}",
            series(&metrics_end, "bridge_chatwoot_concurrency_limit")
                .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}")),
            series(&metrics_end, "bridge_chatwoot_rate_per_minute")
                .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}")),
            series(&metrics_end, "bridge_chatwoot_waiting").map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}")),
        ),
    );
    if let Some(pool) = stack.chatwoot.capacity_stats() {
        table.info(
            "fake Puma: most in service at once / requests served / had to queue",
            format!("{} of {} / {} / {}", pool.high_water, pool.capacity.workers, pool.served, pool.queued),
        );
    }
    cpu.rows(&stack, &mut table, window_ok as u64, "2xx call");
    table.note(format!(
        "live traffic: {live_rate:.1} msg/s over {live_chats} chats of integrations 1…{} ({}); integration 0's backlog \
         queued at the simulator while the first bridge was down, replayed on connect",
        count - 1,
        if opts.rate > 0 { "--rate" } else { "30% of the budget" }
    ));
    if live_rate < wanted_rate {
        table.note(format!("live rate lowered to {live_rate:.1} msg/s: {PER_CHAT_PER_SECOND} per chat per second"));
    }
    table.note(
        "latency: Utc::now() before RyzeApiSim::send_event → the fake's FakeMessage.created_at; calls and statuses \
         counted at the fake (every request, the bridge's webhooks' look-ups included)",
    );
    log_notes(&stack, &mut table);
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = message_id(99, 49, 20_001);
        assert_eq!(parse_source_id(&format!("WAID:{id}")), Some((99, 49, 20_001)));
        assert_eq!(parse_source_id("WAID:3EB0BENCH00000000001"), None);
    }

    #[test]
    fn jain_and_fair_shares() {
        assert_eq!(jain(&[1.0, 1.0, 1.0]), Some(1.0));
        assert!((jain(&[1.0, 0.0, 0.0, 0.0]).unwrap_or(0.0) - 0.25).abs() < 1e-9);
        // 10 to share: the small demand is met, the rest split equally.
        assert_eq!(max_min_shares(&[2.0, 100.0, 100.0], 10.0), vec![2.0, 4.0, 4.0]);
        // Enough for everyone: everyone gets what they asked for.
        assert_eq!(max_min_shares(&[1.0, 2.0], 10.0), vec![1.0, 2.0]);
    }
}
