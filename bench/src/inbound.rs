//! WhatsApp → Chatwoot: sustained throughput, latency added by the bridge, and Chatwoot calls per message.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ryze_fakes::ryzeapi as sim;

use crate::Opts;
use crate::report::{self, Table};
use crate::stack::{ACCOUNT, BenchDb, Res, Stack, upstream};

/// The fake Chatwoot refuses a 201st message in one conversation within a minute (Chatwoot's own limit):
/// the bench never offers more than this per chat and second (180 a minute).
pub const PER_CHAT_PER_SECOND: f64 = 3.0;

/// A stack with `integrations` activated integrations whose links are all connected.
pub async fn connected_stack(db: &BenchDb, integrations: usize) -> Res<(Stack, Vec<String>)> {
    let stack = Stack::start(db).await?;
    let instances: Vec<String> = (0..integrations).map(|i| format!("bench-{i:05}")).collect();
    stack.activate_all(&instances, 4).await?;
    let within = Duration::from_secs(60) + Duration::from_millis(20 * integrations as u64);
    stack.wait_connected(integrations, within).await?;
    Ok((stack, instances))
}

/// Customer messages spread round-robin over every chat of every integration (message `k` goes to chat
/// `k mod chats`), each chat a distinct Brazilian mobile number.
pub struct Traffic {
    pub instances: Vec<String>,
    pub chats: usize,
    pub next: u64,
    /// When recording: the wall-clock instant each WhatsApp id was handed to the simulator.
    pub sent_at: Option<HashMap<String, DateTime<Utc>>>,
}

impl Traffic {
    pub fn new(instances: Vec<String>, chats: usize) -> Self {
        Self { instances, chats, next: 0, sent_at: None }
    }

    pub fn total_chats(&self) -> usize {
        self.instances.len() * self.chats
    }

    pub fn jid(integration: usize, chat: usize) -> String {
        format!("55119{:08}@s.whatsapp.net", integration * 1000 + chat)
    }

    /// Sends the next `count` messages.
    pub fn send(&mut self, stack: &Stack, count: u64) {
        let total = self.total_chats().max(1) as u64;
        for _ in 0..count {
            let k = self.next;
            self.next += 1;
            let slot = usize::try_from(k % total).unwrap_or(0);
            let integration = slot % self.instances.len().max(1);
            let chat = slot / self.instances.len().max(1);
            let Some(instance) = self.instances.get(integration) else { return };
            let id = format!("3EB0BENCH{k:011X}");
            let envelope = sim::text_message(
                instance,
                &id,
                &Self::jid(integration, chat),
                &format!("Cliente {integration}-{chat}"),
                &format!("mensagem {k} do cliente, com *negrito* e _itálico_"),
            );
            if let Some(map) = self.sent_at.as_mut() {
                map.insert(id, Utc::now());
            }
            stack.sim.send_event(instance, envelope);
        }
    }

    /// One message to every chat (each a new customer), then waits until Chatwoot has them all.
    pub async fn warm_up(&mut self, stack: &Stack) -> Res<Duration> {
        let before = stack.chatwoot.message_count();
        let total = self.total_chats();
        let started = Instant::now();
        // In slices, so that a few thousand new customers do not all queue at once.
        let slice = 500;
        let mut sent = 0;
        while sent < total {
            let n = slice.min(total - sent);
            self.send(stack, n as u64);
            sent += n;
            stack.wait_messages(before + sent, Duration::from_secs(120)).await?;
        }
        Ok(started.elapsed())
    }
}

/// CPU used by the bridge and by this process (the fakes and the driver) over a stretch of wall time.
pub struct CpuMeter {
    bridge: Option<Duration>,
    bench: Option<Duration>,
    machine: Option<(u64, u64)>,
    switches: Option<u64>,
    stolen: Option<Duration>,
    wall: Instant,
}

impl CpuMeter {
    pub fn start(stack: &Stack) -> Self {
        Self {
            bridge: stack.bridge.cpu_time(),
            bench: crate::stack::cpu_time("self"),
            machine: crate::stack::machine_ticks(),
            switches: stack.bridge.context_switches(),
            stolen: crate::stack::stolen(),
            wall: Instant::now(),
        }
    }

    /// Context switches of the bridge's threads per `count` items since the start.
    pub fn switches_per(&self, stack: &Stack, count: u64) -> Option<f64> {
        let (before, now) = (self.switches?, stack.bridge.context_switches()?);
        (count > 0).then(|| now.saturating_sub(before) as f64 / count as f64)
    }

    /// Cores busy on the whole machine since the start (every process, other work on the machine too).
    pub fn machine(&self) -> f64 {
        crate::stack::machine_cores(self.machine, crate::stack::machine_ticks())
    }

    /// `(bridge cores, bench cores, bridge CPU seconds)` since the start.
    pub fn read(&self, stack: &Stack) -> (f64, f64, f64) {
        let wall = self.wall.elapsed().as_secs_f64().max(1e-9);
        let used = |before: Option<Duration>, now: Option<Duration>| match (before, now) {
            (Some(b), Some(n)) => n.saturating_sub(b).as_secs_f64(),
            _ => 0.0,
        };
        let bridge = used(self.bridge, stack.bridge.cpu_time());
        let bench = used(self.bench, crate::stack::cpu_time("self"));
        (bridge / wall, bench / wall, bridge)
    }

    pub fn rows(&self, stack: &Stack, table: &mut Table, messages: u64, unit: &str) {
        let (bridge, bench, bridge_secs) = self.read(stack);
        table.info("CPU: bridge process", format!("{bridge:.2} cores"));
        table.info("CPU: bench process (fakes + driver)", format!("{bench:.2} cores"));
        table.info("CPU: whole machine busy (all processes)", format!("{:.2} of {} cores", self.machine(), cores()));
        if let (Some(before), Some(now)) = (self.stolen, crate::stack::stolen()) {
            table.info(
                "CPU: stolen by the hypervisor meanwhile",
                report::ms(now.saturating_sub(before).as_secs_f64() * 1000.0),
            );
        }
        if messages > 0 {
            table.info(format!("CPU: bridge per {unit}"), format!("{:.3} ms", bridge_secs * 1000.0 / messages as f64));
        }
        if let Some(per) = self.switches_per(stack, messages) {
            table.info(format!("bridge context switches per {unit}"), format!("{per:.0}"));
        }
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, usize::from)
}

/// How many lines the bridge logged at `RUST_LOG=warn`, with the first ones.
pub fn log_notes(stack: &Stack, table: &mut Table) {
    let (count, first) = stack.bridge.log_lines();
    if count > 0 {
        table.note(format!("the bridge logged {count} warning/error lines (RUST_LOG=warn); first:"));
        for line in first {
            table.note(format!("  {line}"));
        }
    }
}

/// Mean time of one upstream operation between two `/metrics` scrapes.
fn mean_call(before: &str, after: &str, operation: &str) -> Option<(f64, f64)> {
    let (c0, s0) = upstream(before, operation);
    let (c1, s1) = upstream(after, operation);
    let calls = c1 - c0;
    (calls > 0.0).then(|| (calls, (s1 - s0) * 1000.0 / calls))
}

/// Sustained inbound throughput.
pub async fn inbound(opts: &Opts, db: &BenchDb) -> Res<(Table, f64, usize)> {
    let (stack, instances) = connected_stack(db, opts.integrations).await?;
    let mut traffic = Traffic::new(instances, opts.chats);
    let total_chats = traffic.total_chats();
    let mut table = Table::new(format!(
        "inbound throughput — {} integrations × {} chats, {} s, {}",
        opts.integrations,
        opts.chats,
        opts.seconds,
        db.kind()
    ));
    let warm = traffic.warm_up(&stack).await?;
    table.info(
        "warm-up: first message of each chat (new customers)",
        format!("{total_chats} in {} = {}", report::secs(warm), report::per_s(report::rate(total_chats as f64, warm))),
    );

    let window = (opts.integrations * 32).clamp(256, 8192) as u64;
    let chat_cap = PER_CHAT_PER_SECOND * total_chats as f64;
    let cap = if opts.rate > 0 { (opts.rate as f64).min(chat_cap) } else { chat_cap };
    let metrics_before = stack.metrics().await?;
    let cpu = CpuMeter::start(&stack);
    let base = stack.chatwoot.message_count() as u64;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(opts.seconds);
    let (mut sent, mut last, mut ticks, mut window_full, mut cap_bound) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut per_second: Vec<f64> = Vec::new();
    let mut next_sample = started + Duration::from_secs(1);
    while Instant::now() < deadline {
        let delivered = (stack.chatwoot.message_count() as u64).saturating_sub(base);
        let outstanding = sent.saturating_sub(delivered);
        let allowed = ((cap * started.elapsed().as_secs_f64()) as u64).saturating_sub(sent);
        let room = window.saturating_sub(outstanding);
        let n = room.min(allowed).min(4000);
        ticks += 1;
        if room <= allowed {
            window_full += 1;
        } else {
            cap_bound += 1;
        }
        traffic.send(&stack, n);
        sent += n;
        if Instant::now() >= next_sample {
            per_second.push(delivered.saturating_sub(last) as f64);
            last = delivered;
            next_sample += Duration::from_secs(1);
        }
        actix_web::rt::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let in_window = (stack.chatwoot.message_count() as u64).saturating_sub(base);
    let (bridge_cores, bench_cores, bridge_cpu) = cpu.read(&stack);
    let machine_cores = cpu.machine();
    let switches = cpu.switches_per(&stack, in_window);
    let metrics_after = stack.metrics().await?;
    let drain_started = Instant::now();
    let drained = stack.wait_messages(base as usize + sent as usize, Duration::from_secs(180)).await;
    let drain = drain_started.elapsed();
    let delivered_all = (stack.chatwoot.message_count() as u64).saturating_sub(base);

    let throughput = report::rate(in_window as f64, elapsed);
    let full_size = opts.seconds >= 60 && opts.integrations >= 100 && opts.chats >= 50;
    let target = "≥ 2,000 msg/s (60 s, 100 × 50)";
    let value = report::per_s(throughput);
    if full_size {
        table.target("sustained throughput (delivered at Chatwoot)", value, target, throughput >= 2000.0);
    } else {
        let verdict = if throughput >= 2000.0 { "met (scaled-down run)" } else { "NOT met (scaled-down run)" };
        table.rows.push(report::Row {
            figure: "sustained throughput (delivered at Chatwoot)".into(),
            value,
            target: target.into(),
            verdict: verdict.into(),
        });
    }
    report::per_second_rows(&mut table, "per-second delivered", &per_second);
    table.info("messages sent / delivered in the window", format!("{sent} / {in_window}"));
    match drained {
        Ok(_) => table.target("lost after draining", "0", "0", true),
        Err(_) => table.target("lost after draining", (sent - delivered_all.min(sent)).to_string(), "0", false),
    }
    table.info("drain time after the window", report::secs(drain));
    table.info("Chatwoot messages stored at the end", stack.chatwoot.message_count().to_string());
    let scrape = Instant::now();
    stack.metrics().await?;
    table.info(
        "GET /metrics afterwards (counts every stored event)",
        report::ms(scrape.elapsed().as_secs_f64() * 1000.0),
    );
    if let Some((calls, mean)) = mean_call(&metrics_before, &metrics_after, "create_message") {
        table.info(
            "create_message calls in the window / mean time seen by bridge",
            format!("{calls:.0} / {}", report::ms(mean)),
        );
    }
    table.info("CPU: bridge process", format!("{bridge_cores:.2} cores"));
    table.info("CPU: bench process (fakes + driver)", format!("{bench_cores:.2} cores"));
    table.info("CPU: whole machine busy (all processes)", format!("{machine_cores:.2} of {} cores", cores()));
    if in_window > 0 {
        table.info("CPU: bridge per message", format!("{:.3} ms", bridge_cpu * 1000.0 / in_window as f64));
    }
    if let Some(per) = switches {
        table.info("bridge context switches per message", format!("{per:.0}"));
    }
    let bound = |n: u64| 100.0 * n as f64 / ticks.max(1) as f64;
    table.note(format!(
        "offered load: closed loop with at most {window} messages in flight; the window was the limit in {:.0}% of ticks, \
         the rate cap ({cap:.0} msg/s{}) in {:.0}%",
        bound(window_full),
        if opts.rate > 0 { ", --rate / 3 per chat per second" } else { ": 3 per chat per second, the fake's 200/min/conversation limit" },
        bound(cap_bound)
    ));
    log_notes(&stack, &mut table);
    let stored = stack.chatwoot.message_count();
    Ok((table, throughput, stored))
}

/// A latency sample this long or longer is located in time in the latency table.
const SLOW_MICROS: i64 = 20_000;

/// `count` and the seconds they were sent in, grouped: "12 at 3.1–3.2 s, 1 at 7.9 s".
fn when(seconds: &[f64]) -> String {
    if seconds.is_empty() {
        return "none".into();
    }
    let mut sorted = seconds.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Samples less than half a second apart are one episode.
    let mut episodes: Vec<(f64, f64, usize)> = Vec::new();
    for at in sorted {
        match episodes.last_mut() {
            Some((_, last, count)) if at - *last < 0.5 => (*last, *count) = (at, *count + 1),
            _ => episodes.push((at, at, 1)),
        }
    }
    let shown: Vec<String> = episodes
        .iter()
        .take(6)
        .map(|(first, last, count)| {
            if last - first < 0.05 {
                format!("{count} at {first:.1} s")
            } else {
                format!("{count} at {first:.1}–{last:.1} s")
            }
        })
        .collect();
    let more = if episodes.len() > 6 { format!(" and {} more episodes", episodes.len() - 6) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// Latency added by the bridge at a fixed rate: simulator hands the event over → the fake Chatwoot
/// creates the message (`created_at`, taken inside the fake's create handler; same process, same clock).
pub async fn latency(opts: &Opts, db: &BenchDb) -> Res<Table> {
    let (stack, instances) = connected_stack(db, opts.integrations).await?;
    let mut traffic = Traffic::new(instances, opts.chats);
    let total_chats = traffic.total_chats();
    let chat_cap = PER_CHAT_PER_SECOND * total_chats as f64;
    let rate = (opts.rate as f64).min(chat_cap).max(1.0);
    let mut table = Table::new(format!(
        "latency added by the bridge — {rate:.0} msg/s for {} s, {} integrations × {} chats, {}",
        opts.seconds,
        opts.integrations,
        opts.chats,
        db.kind()
    ));
    if rate < opts.rate as f64 {
        table.note(format!("rate lowered to {rate:.0} msg/s: 3 per chat per second with {total_chats} chats"));
    }
    traffic.warm_up(&stack).await?;
    let metrics_before = stack.metrics().await?;
    let cpu = CpuMeter::start(&stack);
    let base = stack.chatwoot.message_count();
    traffic.sent_at = Some(HashMap::new());
    let started = Instant::now();
    let started_utc = Utc::now();
    let deadline = started + Duration::from_secs(opts.seconds);
    let mut sent = 0u64;
    while Instant::now() < deadline {
        let due = ((rate * started.elapsed().as_secs_f64()) as u64).saturating_sub(sent).min(5000);
        traffic.send(&stack, due);
        sent += due;
        actix_web::rt::time::sleep(Duration::from_millis(1)).await;
    }
    let offered = report::rate(sent as f64, started.elapsed());
    stack.wait_messages(base + sent as usize, Duration::from_secs(120)).await?;
    let metrics_after = stack.metrics().await?;
    let sent_at = traffic.sent_at.take().unwrap_or_default();
    let mut samples = Vec::with_capacity(sent_at.len());
    // When the slow ones were sent (seconds into the run): one burst is a stall, a spread is a tail.
    let mut slow_at = Vec::new();
    for conversation in stack.chatwoot.conversations() {
        for message in stack.chatwoot.messages(conversation.display_id) {
            let Some(id) = message.source_id.as_deref().and_then(|s| s.strip_prefix("WAID:")) else { continue };
            if let Some(at) = sent_at.get(id) {
                let micros = (message.created_at - *at).num_microseconds().unwrap_or(0);
                samples.push(micros as f64 / 1000.0);
                if micros >= SLOW_MICROS {
                    slow_at.push((*at - started_utc).num_milliseconds() as f64 / 1000.0);
                }
            }
        }
    }
    table.info("offered rate (achieved)", report::per_s(offered));
    // The target is for 500 msg/s; other rates are only reported.
    let target = (opts.rate == 500 && rate >= 500.0).then_some((20.0, "≤ 20 ms at 500 msg/s (the issue's target)"));
    report::latency_rows(&mut table, "event sent → Chatwoot message created", &samples, target);
    table.info(format!("sent when, of those ≥ {} ms", SLOW_MICROS / 1000), when(&slow_at));
    if let Some((_, mean)) = mean_call(&metrics_before, &metrics_after, "create_message") {
        table.info("of which: create_message call, mean (seen by bridge)", report::ms(mean));
    }
    cpu.rows(&stack, &mut table, sent, "message");
    table.note(
        "timestamps: send = Utc::now() just before RyzeApiSim::send_event; receive = the fake's FakeMessage.created_at",
    );
    Ok(table)
}

/// Chatwoot requests of the relay (account routes other than inboxes).
fn relay_calls(stack: &Stack) -> (usize, HashMap<String, usize>) {
    let prefix = format!("/api/v1/accounts/{ACCOUNT}/");
    let mut by_route: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    for r in stack.chatwoot.requests() {
        let Some(rest) = r.path.strip_prefix(&prefix) else { continue };
        if rest.starts_with("inboxes") {
            continue;
        }
        total += 1;
        let route: Vec<&str> =
            rest.split('/').map(|s| if s.bytes().all(|b| b.is_ascii_digit()) { ":id" } else { s }).collect();
        *by_route.entry(format!("{} {}", r.method, route.join("/"))).or_default() += 1;
    }
    (total, by_route)
}

fn diff(before: &HashMap<String, usize>, after: &HashMap<String, usize>) -> String {
    let mut parts: Vec<String> = after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0).min(*v);
            (d > 0).then(|| format!("{k} ×{d}"))
        })
        .collect();
    parts.sort();
    parts.join(", ")
}

/// Chatwoot calls per inbound message: new customers, then steady state.
pub async fn calls(opts: &Opts, db: &BenchDb) -> Res<Table> {
    let (stack, instances) = connected_stack(db, opts.integrations).await?;
    let ryzeapi_calls = |stack: &Stack| instances.iter().map(|i| stack.sim.requests(i).len()).sum::<usize>();
    let mut traffic = Traffic::new(instances.clone(), opts.chats);
    let chats = traffic.total_chats();
    let mut table = Table::new(format!(
        "Chatwoot calls per inbound text message — {} integrations × {} chats, {}",
        opts.integrations,
        opts.chats,
        db.kind()
    ));
    let (before, routes_before) = relay_calls(&stack);
    let ryze_before = ryzeapi_calls(&stack);
    traffic.warm_up(&stack).await?;
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let (after_new, routes_new) = relay_calls(&stack);
    let new = (after_new - before) as f64 / chats as f64;
    table.target("new customer (contact + conversation + message)", format!("{new:.2}"), "≤ 3", new <= 3.0);
    table.info("  by route", diff(&routes_before, &routes_new));

    let steady_count = (chats * 4) as u64;
    let base = stack.chatwoot.message_count();
    let mut sent = 0;
    while sent < steady_count {
        let n = (chats as u64).min(steady_count - sent);
        traffic.send(&stack, n);
        sent += n;
        stack.wait_messages(base + sent as usize, Duration::from_secs(60)).await?;
    }
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let (after_steady, routes_steady) = relay_calls(&stack);
    let steady = (after_steady - after_new) as f64 / steady_count as f64;
    table.target(
        "steady state (known chat, open conversation)",
        format!("{steady:.2}"),
        "exactly 1.00",
        (after_steady - after_new) as u64 == steady_count,
    );
    table.info("  by route", diff(&routes_new, &routes_steady));
    let ryze = ryzeapi_calls(&stack) - ryze_before;
    table.info(
        "RyzeAPI REST calls per inbound text message",
        format!("{:.2}", ryze as f64 / (chats as u64 + steady_count) as f64),
    );
    table.info("messages", format!("{chats} first + {steady_count} steady"));
    log_notes(&stack, &mut table);
    Ok(table)
}
