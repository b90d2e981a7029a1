//! The system under test: a fresh database, the real `ryze-integrations` binary as a child process on
//! loopback, and the in-process fake Chatwoot and RyzeAPI simulator next to it. Creating and dropping
//! databases, starting and stopping the process, and seeding the fakes are `ryze-testkit`'s, shared with
//! the integration tests; the bench's own are its `Result`-returning wrappers, the bridge's log file, its
//! environment, and the `/proc` readings.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use ryze_fakes::chatwoot::{FakeChatwoot, Role};
use ryze_fakes::ryzeapi::RyzeApiSim;
use ryze_testkit::neighbours::Neighbours;
use ryze_testkit::{database, process};
use serde_json::{Value, json};

pub type Res<T> = Result<T, String>;

pub const BRIDGE_TOKEN: &str = "bench-bridge-token-0123456789";
pub const ADMIN: &str = "bench-admin-token-ABCDEF123456";
pub use ryze_testkit::neighbours::ACCOUNT;
pub use ryze_testkit::random_suffix;

/// The fake Chatwoot of every mode: account [`ACCOUNT`] ("Bench") with [`ADMIN`] as its administrator.
pub fn fake_chatwoot() -> Res<FakeChatwoot> {
    ryze_testkit::seeded_chatwoot("Bench", &[(ADMIN, Role::Administrator)])
}

/// The simulator (accepting [`BRIDGE_TOKEN`]) and [`fake_chatwoot`].
pub fn neighbours() -> Res<Neighbours> {
    Neighbours::start(BRIDGE_TOKEN, "Bench", &[(ADMIN, Role::Administrator)])
}

/// A random 32-byte key, base64 (`BRIDGE_ENCRYPTION_KEY`), so the bridge does not warn about generating one.
pub fn random_key() -> String {
    use base64::Engine as _;
    let mut key = [7u8; 32];
    let _ = getrandom::fill(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// A fresh database for one mode: a SQLite file in a temp dir (the default), or a new PostgreSQL
/// database when `DATABASE_URL` points at a PostgreSQL server (created here, dropped by [`BenchDb::cleanup`]).
pub struct BenchDb {
    pub url: String,
    pub dir: PathBuf,
    postgres: Option<(String, String)>,
}

impl BenchDb {
    pub async fn create() -> Res<Self> {
        let suffix = random_suffix();
        let dir = std::env::temp_dir().join(format!("ryze-bench-{suffix}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        match database::postgres_server() {
            None => Ok(Self { url: database::sqlite_url(&dir), dir, postgres: None }),
            Some(server) => {
                let name = format!("ri_bench_{suffix}");
                match database::create_postgres(&server, &name).await {
                    Ok(url) => Ok(Self { url, dir, postgres: Some((server, name)) }),
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&dir);
                        Err(e)
                    }
                }
            }
        }
    }

    pub fn kind(&self) -> &'static str {
        if self.postgres.is_some() { "PostgreSQL" } else { "SQLite" }
    }

    /// Drops the PostgreSQL database (if any) and removes the temp dir.
    pub async fn cleanup(self) {
        if let Some((server, name)) = &self.postgres
            && let Err(e) = database::drop_postgres(server, name).await
        {
            eprintln!("bench: could not drop database {name}: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An awc client for the bench's own calls (long timeout, `limit` connections per host).
pub fn client(limit: usize) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().limit(limit))
        .timeout(Duration::from_secs(60))
        .disable_redirects()
        .finish()
}

/// One HTTP request; `(status, JSON body or the text as a string)`.
pub async fn request(
    http: &awc::Client,
    method: awc::http::Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Res<(u16, Value)> {
    let mut req = http.request(method.clone(), url);
    if let Some(token) = bearer {
        req = req.insert_header(("authorization", format!("Bearer {token}")));
    }
    let sent = match body {
        Some(body) => req.send_json(body).await,
        None => req.send().await,
    };
    let mut response = sent.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let bytes = response.body().limit(64 * 1024 * 1024).await.map_err(|e| format!("{method} {url}: body: {e}"))?;
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, value))
}

/// CPU time (user + system) of a process, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks()))
}

fn clock_ticks() -> f64 {
    use std::sync::OnceLock;
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// The machine-wide `cpu` line of `/proc/stat`, in ticks: user, nice, system, idle, iowait, irq, softirq,
/// steal, …
fn cpu_ticks() -> Option<Vec<u64>> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    Some(line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect())
}

/// Machine-wide CPU counters from `/proc/stat`: `(busy, total)` in ticks (busy excludes idle and iowait).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let values = cpu_ticks()?;
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Time the hypervisor ran something else while this machine's CPUs wanted to run (`steal` in
/// `/proc/stat`, all CPUs together), so far.
pub fn stolen() -> Option<Duration> {
    let steal = *cpu_ticks()?.get(7)?;
    Some(Duration::from_secs_f64(steal as f64 / clock_ticks()))
}

/// Cores busy machine-wide (all processes, other tenants included) between two [`machine_ticks`] readings.
pub fn machine_cores(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    match (before, after) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => cores * (b1.saturating_sub(b0)) as f64 / (t1 - t0) as f64,
        _ => 0.0,
    }
}

/// Context switches (voluntary and not) of every live thread of a process.
pub fn context_switches(pid: &str) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("status")) else { continue };
        for line in text.lines().filter(|l| l.contains("ctxt_switches:")) {
            total += line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Some(total)
}

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The bridge binary running as a child process, its output going to `bridge.log` in the temp dir.
pub struct Bridge {
    child: Option<Child>,
    pub url: String,
    env: Vec<(String, String)>,
    exe: PathBuf,
    log: PathBuf,
    http: awc::Client,
}

impl Bridge {
    /// Starts the bridge with the bench's environment plus `extra_env` (added or overriding).
    pub async fn start_with(db: &BenchDb, ryzeapi_url: &str, extra_env: &[(&str, &str)]) -> Res<Self> {
        Self::start_logged(db, ryzeapi_url, extra_env, "bridge.log").await
    }

    /// As [`Bridge::start_with`], its output going to `log_name` in the temp dir (one log per replica).
    pub async fn start_logged(
        db: &BenchDb,
        ryzeapi_url: &str,
        extra_env: &[(&str, &str)],
        log_name: &str,
    ) -> Res<Self> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot locate the bench binary: {e}"))?
            .with_file_name("ryze-integrations");
        if !exe.is_file() {
            return Err(format!("{} not found: build it with `cargo build --release --workspace`", exe.display()));
        }
        // A `BIND` in `extra_env` is where the bridge listens (and is reached); otherwise a free port.
        let bind = match extra_env.iter().rev().find(|(key, _)| *key == "BIND") {
            Some((_, bind)) => (*bind).to_owned(),
            None => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map_err(|e| format!("no free port: {e}"))?
                    .port();
                format!("127.0.0.1:{port}")
            }
        };
        let url = format!("http://{bind}");
        let mut env: Vec<(String, String)> = vec![
            ("BRIDGE_DATA_DIR".to_owned(), db.dir.join("data").display().to_string()),
            ("DATABASE_URL".to_owned(), db.url.clone()),
            ("BIND".to_owned(), bind),
            ("BRIDGE_PUBLIC_URL".to_owned(), url.clone()),
            ("BRIDGE_TOKEN".to_owned(), BRIDGE_TOKEN.to_owned()),
            ("RYZEAPI_URL".to_owned(), ryzeapi_url.to_owned()),
            ("RUST_LOG".to_owned(), "warn".to_owned()),
            ("NO_COLOR".to_owned(), "1".to_owned()),
            ("BRIDGE_ENCRYPTION_KEY".to_owned(), random_key()),
        ];
        let set = |env: &mut Vec<(String, String)>, key: &str, value: String| {
            env.retain(|(k, _)| k != key);
            env.push((key.to_owned(), value));
        };
        // The bridge's log level for a closer look at a run (the log is in the temp dir, kept by `chaos` on failure).
        if let Ok(level) = std::env::var("BENCH_BRIDGE_LOG") {
            set(&mut env, "RUST_LOG", level);
        }
        // Variables of the bench's own environment handed on to the bridge, by name: e.g.
        // `BENCH_BRIDGE_PASS=LD_PRELOAD,SLOWSYNC_US` for a shim that makes the disk slower (docs/performance.md).
        let passed = std::env::var("BENCH_BRIDGE_PASS").unwrap_or_default();
        for key in passed.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            if let Ok(value) = std::env::var(key) {
                set(&mut env, key, value);
            }
        }
        for (key, value) in extra_env {
            set(&mut env, key, (*value).to_owned());
        }
        let log = db.dir.join(log_name);
        let mut bridge = Self { child: None, url, env, exe, log, http: client(8) };
        bridge.spawn().await?;
        Ok(bridge)
    }

    /// Starts the process and waits for `/readyz`; returns how long that took.
    pub async fn spawn(&mut self) -> Res<Duration> {
        let started = Instant::now();
        let out = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let err = out.try_clone().map_err(|e| format!("log file: {e}"))?;
        let env = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let child = process::spawn(&self.exe, env, Stdio::from(out), Stdio::from(err))
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        self.child = Some(child);
        let deadline = started + Duration::from_secs(60);
        loop {
            let ready = request(&self.http, awc::http::Method::GET, &format!("{}/readyz", self.url), None, None).await;
            if matches!(ready, Ok((200, _))) {
                return Ok(started.elapsed());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("the bridge exited ({status}):\n{}", self.log_tail()));
            }
            if Instant::now() >= deadline {
                return Err(format!("the bridge was not ready within 60 s:\n{}", self.log_tail()));
            }
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn pid(&self) -> Option<String> {
        self.child.as_ref().map(|c| c.id().to_string())
    }

    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(&self.pid()?)
    }

    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(&self.pid()?)
    }

    pub fn context_switches(&self) -> Option<u64> {
        context_switches(&self.pid()?)
    }

    /// Copies the bridge's log out of the temp dir (which goes when the mode ends); returns where to.
    pub fn keep_log(&self) -> Option<PathBuf> {
        let kept = std::env::temp_dir().join(format!("ryze-bench-bridge-{}.log", random_suffix()));
        std::fs::copy(&self.log, &kept).ok().map(|_| kept)
    }

    /// The last lines the bridge printed (for error reports).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Lines the bridge logged so far (warnings and errors at `RUST_LOG=warn`), and the first few of them.
    pub fn log_lines(&self) -> (usize, Vec<String>) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        // `/readyz` polled while the bridge boots answers `not_ready`, which the bridge logs: not a finding.
        let lines: Vec<&str> = text.lines().filter(|l| !l.contains("not_ready")).collect();
        let first = lines.iter().take(3).map(|l| l.chars().take(240).collect()).collect();
        (lines.len(), first)
    }

    /// SIGTERM, waiting up to `within` for the process to exit (then SIGKILL).
    pub fn terminate(&mut self, within: Duration) {
        if let Some(child) = self.child.take() {
            process::terminate(child, within);
        }
    }

    /// As [`Bridge::terminate`] without blocking the bench's runtime (the fakes' webhooks run on it):
    /// SIGTERM, up to `within` for the exit, then SIGKILL. Answers the exit status (`None`: it was killed).
    pub async fn stop(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        process::stop(self.child.take()?, within).await
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process; false if it is not running or `kill` failed.
    pub fn signal(&self, signal: &str) -> bool {
        self.child.as_ref().is_some_and(|child| process::signal(child.id(), signal))
    }

    /// SIGKILL (a crash, no chance to clean up).
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            process::kill(child);
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The bridge with both neighbours, all on loopback.
pub struct Stack {
    pub bridge: Bridge,
    pub chatwoot: FakeChatwoot,
    pub sim: RyzeApiSim,
    pub http: awc::Client,
}

impl Stack {
    pub async fn start(db: &BenchDb) -> Res<Self> {
        Self::start_with(db, &[]).await
    }

    /// As [`Stack::start`], with more environment variables for the bridge.
    pub async fn start_with(db: &BenchDb, extra_env: &[(&str, &str)]) -> Res<Self> {
        let Neighbours { chatwoot, ryzeapi: sim } = neighbours()?;
        let bridge = Bridge::start_with(db, sim.url(), extra_env).await?;
        Ok(Self { bridge, chatwoot, sim, http: client(64) })
    }

    pub async fn call(&self, method: awc::http::Method, path: &str, body: Option<&Value>) -> Res<(u16, Value)> {
        self.call_at(&self.bridge.url, method, path, body).await
    }

    /// As [`Stack::call`], of the bridge (replica) at `bridge_url`.
    pub async fn call_at(
        &self,
        bridge_url: &str,
        method: awc::http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Res<(u16, Value)> {
        request(&self.http, method, &format!("{bridge_url}{path}"), Some(BRIDGE_TOKEN), body).await
    }

    /// Activates `instance` against the fake Chatwoot and the simulator; returns the integration id.
    pub async fn activate(&self, instance: &str) -> Res<String> {
        self.activate_via(&self.bridge.url, instance).await
    }

    /// As [`Stack::activate`], through the bridge (replica) at `bridge_url`.
    pub async fn activate_via(&self, bridge_url: &str, instance: &str) -> Res<String> {
        let token = format!("inst-token-{instance}-SECRET");
        self.sim.add_instance(instance, &token);
        let body = json!({
            "instance": instance,
            "instanceToken": token,
            "ryzeapiUrl": self.sim.url(),
            "chatwootBaseUrl": self.chatwoot.url(),
            "chatwootAccountId": ACCOUNT,
            "chatwootApiToken": ADMIN,
            "inboxName": instance,
        });
        let (status, answer) =
            self.call_at(bridge_url, awc::http::Method::POST, "/v1/integrations/activate", Some(&body)).await?;
        if status != 200 && status != 201 {
            return Err(format!("activating {instance}: HTTP {status}: {answer}"));
        }
        answer
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("activation answer: {answer}"))
    }

    /// Activates every instance, `concurrency` at a time.
    pub async fn activate_all(&self, instances: &[String], concurrency: usize) -> Res<Vec<String>> {
        let results: Vec<Res<String>> = futures_util::stream::iter(instances.iter().map(|i| self.activate(i)))
            .buffered(concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect()
    }

    pub async fn metrics(&self) -> Res<String> {
        let (status, body) =
            request(&self.http, awc::http::Method::GET, &format!("{}/metrics", self.bridge.url), None, None).await?;
        match (status, body) {
            (200, Value::String(text)) => Ok(text),
            (status, body) => Err(format!("/metrics: HTTP {status}: {body}")),
        }
    }

    /// Links in state `connected`, from `/metrics`.
    pub async fn connected(&self) -> Res<usize> {
        let text = self.metrics().await?;
        Ok(metric(&text, "bridge_ryzeapi_links{state=\"connected\"}").unwrap_or(0.0) as usize)
    }

    /// Waits until `count` links are connected; returns how long it took.
    pub async fn wait_connected(&self, count: usize, within: Duration) -> Res<Duration> {
        let started = Instant::now();
        loop {
            let now = self.connected().await?;
            if now >= count {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= within {
                return Err(format!("only {now} of {count} links connected after {within:?}"));
            }
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the fake Chatwoot holds at least `count` messages; returns how long it took.
    pub async fn wait_messages(&self, count: usize, within: Duration) -> Res<Duration> {
        let started = Instant::now();
        loop {
            let now = self.chatwoot.message_count();
            if now >= count {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= within {
                return Err(format!(
                    "only {now} of {count} messages reached Chatwoot after {within:?}; bridge log:\n{}",
                    self.bridge.log_tail()
                ));
            }
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The value of one series in Prometheus text (exact name with labels).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok()))
}

/// Sum of `bridge_upstream_call_seconds_sum` and `bridge_upstream_calls_total` for one operation.
pub fn upstream(text: &str, operation: &str) -> (f64, f64) {
    let mut calls = 0.0;
    let mut seconds = 0.0;
    let needle = format!("operation=\"{operation}\"");
    for line in text.lines().filter(|l| l.contains(&needle)) {
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        if line.starts_with("bridge_upstream_calls_total") {
            calls += value;
        } else if line.starts_with("bridge_upstream_call_seconds_sum") {
            seconds += value;
        }
    }
    (calls, seconds)
}
