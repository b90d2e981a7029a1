//! `ryze-bench` (binary `bench`): runs the real bridge (`ryze-integrations`, a child process) against the
//! in-process fake Chatwoot and RyzeAPI simulator (`ryze-fakes`) on loopback, and prints a table of figures
//! per mode.
//!
//! The bench spawns the `ryze-integrations` binary next to its own (`target/release/`), so build both:
//!
//! ```text
//! cargo build --release --workspace
//! target/release/bench [mode] [--seconds N] [--integrations N] [--chats N] [--rate N]
//!                      [--messages N] [--seed N] [--replicas N]
//!                      [--budget N] [--backlog N] [--outage-seconds N] [--workers N] [--service-ms N]
//! ```
//!
//! Modes: `inbound`, `latency`, `outbound`, `calls`, `memory`, `sink`, `all` (default), `chaos` (fault
//! injection; `--replicas N` runs it on N replicas on PostgreSQL), `failover` (three replicas on
//! PostgreSQL) and `capacity` (a Chatwoot with a request budget and Puma's bounded workers), the last
//! three not part of `all`. Each mode gets a
//! fresh database (SQLite in a temp dir; a new PostgreSQL database, dropped afterwards, when
//! `DATABASE_URL=postgres://…`) and a fresh bridge, killed at the end. `docs/performance.md` records a run.

mod capacity;
mod chaos;
mod failover;
mod inbound;
mod memory;
mod outbound;
mod report;
mod sink;
mod stack;

use std::process::ExitCode;
use std::time::Instant;

use report::Table;
use stack::{BenchDb, Res};

/// Sizes of one mode.
#[derive(Debug, Clone, Copy)]
pub struct Opts {
    pub seconds: u64,
    pub integrations: usize,
    pub chats: usize,
    /// Messages (or replies) per second; 0 for `inbound` means as fast as the bridge takes them.
    pub rate: u64,
    /// `chaos`: messages in both directions together (half customer messages, half agent replies).
    pub messages: u64,
    /// `chaos`: seed of the fault sequence.
    pub seed: u64,
    /// `chaos`: bridge processes (replicas on one PostgreSQL behind a balancer when more than one).
    pub replicas: usize,
    /// `capacity`: the fake Chatwoot's (and the bridge's) requests a minute; 0: unlimited.
    pub budget: u64,
    /// `capacity`: messages queued for integration 0 before the window starts.
    pub backlog: u64,
    /// `capacity`: seconds of 503 to everything from the window's middle (0: none).
    pub outage_seconds: u64,
    /// `capacity`: the fake's Puma workers (`WEB_CONCURRENCY × RAILS_MAX_THREADS`, default 1 × 5).
    pub workers: usize,
    /// `capacity`: the fake's service time per request, in milliseconds.
    pub service_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Inbound,
    Latency,
    Outbound,
    Calls,
    Memory,
    Sink,
    Chaos,
    Failover,
    Capacity,
}

impl Mode {
    const ALL: [Mode; 6] = [Mode::Calls, Mode::Inbound, Mode::Sink, Mode::Latency, Mode::Outbound, Mode::Memory];

    fn parse(name: &str) -> Option<Vec<Mode>> {
        Some(match name {
            "inbound" => vec![Mode::Inbound],
            "latency" => vec![Mode::Latency],
            "outbound" => vec![Mode::Outbound],
            "calls" => vec![Mode::Calls],
            "memory" => vec![Mode::Memory],
            "sink" => vec![Mode::Sink],
            "chaos" => vec![Mode::Chaos],
            "failover" => vec![Mode::Failover],
            "capacity" => vec![Mode::Capacity],
            "all" => Mode::ALL.to_vec(),
            _ => return None,
        })
    }

    /// Modest defaults: `all` finishes within about three minutes on a 2-core machine.
    /// `chaos` defaults to the issue's size (50 integrations, 50,000 messages), with `--seconds` as the
    /// deadline of the whole run.
    fn defaults(self) -> Opts {
        let (seconds, integrations, chats, rate) = match self {
            Mode::Inbound | Mode::Sink => (20, 20, 50, 0),
            Mode::Latency => (10, 10, 20, 200),
            Mode::Outbound => (10, 10, 1, 100),
            Mode::Calls => (0, 1, 50, 0),
            Mode::Memory => (0, 1000, 0, 0),
            Mode::Chaos => (1800, 50, 20, 0),
            Mode::Failover => (0, 1000, 0, 0),
            Mode::Capacity => (120, 100, 50, 0),
        };
        Opts {
            seconds,
            integrations,
            chats,
            rate,
            messages: 50_000,
            seed: chaos::DEFAULT_SEED,
            replicas: 1,
            budget: 3000,
            backlog: 20_000,
            outage_seconds: 0,
            workers: ryze_fakes::chatwoot::Capacity::PUMA_DEFAULT_WORKERS,
            service_ms: 40,
        }
    }
}

#[derive(Debug, Default)]
struct Args {
    modes: Vec<Mode>,
    seconds: Option<u64>,
    integrations: Option<usize>,
    chats: Option<usize>,
    rate: Option<u64>,
    messages: Option<u64>,
    seed: Option<u64>,
    replicas: Option<usize>,
    budget: Option<u64>,
    backlog: Option<u64>,
    outage_seconds: Option<u64>,
    workers: Option<usize>,
    service_ms: Option<u64>,
}

const USAGE: &str = "usage: bench [inbound|latency|outbound|calls|memory|sink|all|chaos|failover|capacity] [--seconds N] [--integrations N]
             [--chats N] [--rate N] [--messages N] [--seed N] [--replicas N]
             [--budget N] [--backlog N] [--outage-seconds N] [--workers N] [--service-ms N]

  inbound   sustained WhatsApp → Chatwoot throughput (closed loop; --rate caps the offered load)
  latency   event sent → Chatwoot message created, p50/p99/p99.9 at --rate msg/s (default 200)
  outbound  webhook acknowledgement and webhook → RyzeAPI send latency at --rate replies/s (default 100)
  calls     Chatwoot calls per inbound message: new customers and steady state
  memory    VmRSS per connected idle integration (--integrations, default 1000), connect and reconnect times
  sink      the fake Chatwoot's own capacity, without the bridge
  all       every mode with modest sizes (default)
  chaos     fault injection: --messages (default 50000, half each way) over --integrations (50) × --chats (20)
            while the bridge is killed and restarted, links dropped, Chatwoot fails or hangs, answers message
            creates with its catch-all 422 (before or after the commit), and webhooks come twice or late and
            shuffled (up to 400 ms, inside the reply order window); one person in 5 switches forms mid-stream
            (LID-only, then phone-only, then some with both) so that the bridge splits and merges them;
            fails on any duplicate, loss, reordering, extra contact for one person or stuck integration, or
            after --seconds (1800). The report lists the kill -9 times and the 422/shuffle windows (UTC).
            --replicas N (default 1; more needs DATABASE_URL=postgres://…): N bridge processes on the one
            database, Chatwoot's webhooks through a TCP balancer, activations spread over them, lease TTL
            3 s; the faults then also kill -9 a random replica (restarted under its name at once, or once its
            integrations are connected elsewhere), SIGSTOP one for 4–5 s (past the lease) and roll a SIGTERM +
            restart over every replica (out of the balancer first, back once /readyz is 200), one at a time;
            the report lists these with their UTC times and how soon the integrations were connected again
  failover  three replicas on PostgreSQL (DATABASE_URL=postgres://… required), --integrations (1000): kill -9
            of one and SIGTERM of another → all links back, and the leases' steady-state cost
  capacity  one Chatwoot with a budget: the fake throttles at --budget requests a minute (default 3000,
            Rack::Attack's; 0: unlimited) and serves like Puma (--workers, default 5, × --service-ms, default 40,
            the rest queue); the bridge is told the same budget. --integrations (100) × --chats (50); integration
            0 drains a --backlog (20000) queued before the start while the others get live messages at --rate
            msg/s (default 30% of the budget) for --seconds (120); --outage-seconds S: 503 to everything for S s
            from the middle. Goodput ÷ budget, 429s per 1,000 calls, Jain's fairness index, live latency p50/p99,
            and every message once in per-chat order after a drain

Flags override the mode's defaults (with `all`, every mode's). DATABASE_URL=postgres://… runs on a fresh
PostgreSQL database (created and dropped) instead of SQLite. Build first: cargo build --release --workspace";

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut number = |name: &str, max: u64| -> Result<u64, String> {
            let value = iter.next().ok_or_else(|| format!("{name} needs a number"))?;
            match value.parse::<u64>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(format!("{name}: `{value}` is not a number from 0 to {max}")),
            }
        };
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--seconds" => parsed.seconds = Some(number("--seconds", 86_400)?.max(1)),
            "--integrations" => {
                parsed.integrations = Some(usize::try_from(number("--integrations", 20_000)?.max(1)).unwrap_or(1))
            }
            "--chats" => parsed.chats = Some(usize::try_from(number("--chats", 999)?.max(1)).unwrap_or(1)),
            "--rate" => parsed.rate = Some(number("--rate", 1_000_000)?),
            "--messages" => parsed.messages = Some(number("--messages", 10_000_000)?.max(2)),
            "--seed" => parsed.seed = Some(number("--seed", u64::MAX)?),
            "--replicas" => parsed.replicas = Some(usize::try_from(number("--replicas", 16)?.max(1)).unwrap_or(1)),
            "--budget" => parsed.budget = Some(number("--budget", 1_000_000)?),
            "--backlog" => parsed.backlog = Some(number("--backlog", 10_000_000)?),
            "--outage-seconds" => parsed.outage_seconds = Some(number("--outage-seconds", 86_400)?),
            "--workers" => parsed.workers = Some(usize::try_from(number("--workers", 1024)?.max(1)).unwrap_or(1)),
            "--service-ms" => parsed.service_ms = Some(number("--service-ms", 60_000)?),
            name if !name.starts_with('-') && parsed.modes.is_empty() => {
                parsed.modes = Mode::parse(name).ok_or_else(|| format!("unknown mode `{name}`"))?;
            }
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    if parsed.modes.is_empty() {
        parsed.modes = Mode::ALL.to_vec();
    }
    if parsed.replicas.is_some_and(|n| n > 1) && parsed.modes != [Mode::Chaos] {
        return Err("--replicas is for `chaos` only (`failover` always runs three)".to_owned());
    }
    let capacity_flags = [
        parsed.budget.is_some(),
        parsed.backlog.is_some(),
        parsed.outage_seconds.is_some(),
        parsed.workers.is_some(),
        parsed.service_ms.is_some(),
    ];
    if capacity_flags.contains(&true) && parsed.modes != [Mode::Capacity] {
        return Err(
            "--budget, --backlog, --outage-seconds, --workers and --service-ms are for `capacity` only".to_owned()
        );
    }
    Ok(parsed)
}

impl Args {
    fn opts(&self, mode: Mode) -> Opts {
        let d = mode.defaults();
        Opts {
            seconds: self.seconds.unwrap_or(d.seconds),
            integrations: self.integrations.unwrap_or(d.integrations),
            chats: self.chats.unwrap_or(d.chats),
            rate: self.rate.unwrap_or(d.rate),
            messages: self.messages.unwrap_or(d.messages),
            seed: self.seed.unwrap_or(d.seed),
            replicas: self.replicas.unwrap_or(d.replicas),
            budget: self.budget.unwrap_or(d.budget),
            backlog: self.backlog.unwrap_or(d.backlog),
            outage_seconds: self.outage_seconds.unwrap_or(d.outage_seconds),
            workers: self.workers.unwrap_or(d.workers),
            service_ms: self.service_ms.unwrap_or(d.service_ms),
        }
    }
}

/// What a mode hands back: its table and, for `inbound` and `sink`, the throughput (msg/s) and, for
/// `inbound`, how many messages the fake Chatwoot held at its end.
type Outcome = Res<(Table, Option<f64>, Option<usize>)>;

async fn run_mode(mode: Mode, opts: &Opts, inbound_stored: Option<usize>) -> Outcome {
    if mode == Mode::Sink {
        return sink::sink(opts, inbound_stored).await.map(|(t, x)| (t, Some(x), None));
    }
    let db = BenchDb::create().await?;
    let result = match mode {
        Mode::Inbound => inbound::inbound(opts, &db).await.map(|(t, x, n)| (t, Some(x), Some(n))),
        Mode::Latency => inbound::latency(opts, &db).await.map(|t| (t, None, None)),
        Mode::Calls => inbound::calls(opts, &db).await.map(|t| (t, None, None)),
        Mode::Outbound => outbound::outbound(opts, &db).await.map(|t| (t, None, None)),
        Mode::Memory => memory::memory(opts, &db).await.map(|t| (t, None, None)),
        Mode::Chaos => chaos::chaos(opts, &db).await.map(|t| (t, None, None)),
        Mode::Failover => failover::failover(opts, &db).await.map(|t| (t, None, None)),
        Mode::Capacity => capacity::capacity(opts, &db).await.map(|t| (t, None, None)),
        Mode::Sink => Err("unreachable".to_owned()),
    };
    // The mode's bridge was killed when its stack dropped; now the database and temp dir go.
    db.cleanup().await;
    result
}

/// glibc's malloc took ~13 % of the bridge's CPU under load (`perf`, docs/performance.md); mimalloc's
/// thread-local free lists cost a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    // One TLS provider for the process (awc's connector needs one chosen), as the bridge does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(args) => args,
        Err(problem) if problem.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("bench: {problem}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let database = match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => "PostgreSQL (fresh database per mode)",
        _ => "SQLite (fresh file per mode)",
    };
    println!("bench: {cores} cores, {database}, modes: {:?}", args.modes);
    let started = Instant::now();
    let mut failures = 0;
    let mut inbound_rate = None;
    let mut inbound_stored = None;
    let mut sink_rate = None;
    let mut summary = Table::new("summary");
    for mode in &args.modes {
        let opts = args.opts(*mode);
        let mode_started = Instant::now();
        println!("\nbench: {mode:?} {opts:?} …");
        match run_mode(*mode, &opts, inbound_stored).await {
            Ok((table, throughput, stored)) => {
                print!("{}", table.render());
                println!("  ({mode:?} took {})", report::secs(mode_started.elapsed()));
                match mode {
                    Mode::Inbound => (inbound_rate, inbound_stored) = (throughput, stored),
                    Mode::Sink => sink_rate = throughput,
                    _ => {}
                }
                summary.rows.extend(table.rows.into_iter().filter(|r| !r.target.is_empty()));
            }
            Err(error) => {
                failures += 1;
                eprintln!("bench: {mode:?} failed: {error}");
            }
        }
    }
    if let (Some(bridge), Some(sink)) = (inbound_rate, sink_rate)
        && sink > 0.0
    {
        summary.info(
            "bridge inbound throughput / sink capacity at the same size",
            format!("{:.0}% ({bridge:.0} / {sink:.0} msg/s)", 100.0 * bridge / sink),
        );
    }
    if args.modes.len() > 1 {
        print!("{}", summary.render());
    }
    println!("\nbench: finished in {}", report::secs(started.elapsed()));
    if failures > 0 {
        eprintln!("bench: {failures} mode(s) failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
