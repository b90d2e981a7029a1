//! `ryze-testkit`: the harness the integration tests (`tests/*.rs`, as `common`) and the bench share. Test
//! code, not shipped: its test-facing helpers panic on failure, as assertions do.
//!
//! - [`TestDb`]: a fresh database per test: a SQLite file in a temp dir by default, or a new PostgreSQL
//!   database (dropped afterwards) when `DATABASE_URL` points at a PostgreSQL server ([`database`], which
//!   the bench's databases use too).
//! - [`Bridge`]: the real `ryze-integrations` binary as a child process on a free port, with its output
//!   captured (to assert that no secret is ever logged); it can be killed and restarted on the same data.
//!   The caller names the binary: `env!("CARGO_BIN_EXE_ryze-integrations")` exists only in the bridge
//!   package's integration tests. Starting and stopping processes is [`process`], shared with the bench.
//! - [`Stack`]: the bridge with its [`neighbours`] (the fake Chatwoot and the RyzeAPI simulator).
//! - small HTTP helpers over awc.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod database;
pub mod neighbours;
pub mod process;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use neighbours::{ACCOUNT, Neighbours, seeded_chatwoot};
pub use ryze_fakes::chatwoot::{FakeChatwoot, Fault, Role};

/// A database for one test.
pub struct TestDb {
    pub url: String,
    /// PostgreSQL: (server URL, database name) to drop afterwards.
    postgres: Option<(String, String)>,
    _dir: tempfile::TempDir,
    pub dir: PathBuf,
}

impl TestDb {
    pub async fn new() -> Self {
        match database::postgres_server() {
            None => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().to_path_buf();
                Self { url: database::sqlite_url(&path), postgres: None, _dir: dir, dir: path }
            }
            Some(server) => Self::on_postgres(server).await,
        }
    }

    /// A new PostgreSQL database whatever `DATABASE_URL` says (replicas need one): on `DATABASE_URL`'s
    /// server when it is a PostgreSQL one, else on the machine's (127.0.0.1:5432, user postgres).
    pub async fn postgres() -> Self {
        let server =
            database::postgres_server().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        Self::on_postgres(server).await
    }

    async fn on_postgres(server: String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let name = format!("ri_test_{}", random_suffix());
        let url = database::create_postgres(&server, &name).await.unwrap();
        Self { url, postgres: Some((server, name)), _dir: dir, dir: path }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// A connection from the test itself (to inspect or sabotage the bridge's data).
    pub async fn connect(&self) -> sea_orm::DatabaseConnection {
        sea_orm::Database::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = self.postgres.take() {
            // Drop runs outside async context: use a private runtime on a helper thread.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async move {
                    let _ = database::drop_postgres(&server, &name).await;
                });
            })
            .join();
        }
    }
}

pub use database::random_suffix;

/// The bridge binary running as a child process.
pub struct Bridge {
    exe: PathBuf,
    child: Option<Child>,
    pub url: String,
    pub token: String,
    output: Arc<Mutex<String>>,
    /// What earlier processes of this bridge printed (before a restart).
    earlier_output: Vec<Arc<Mutex<String>>>,
    env: HashMap<String, String>,
}

pub struct BridgeOptions {
    pub token: Option<String>,
    pub extra_env: Vec<(String, String)>,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        Self { token: Some("test-bridge-token-0123456789".into()), extra_env: Vec::new() }
    }
}

impl Bridge {
    /// Starts the bridge binary `exe` on `db` (its data dir is the db's temp dir) and waits until it is ready.
    pub async fn start(exe: impl AsRef<Path>, db: &TestDb) -> Self {
        Self::start_with(exe, db, BridgeOptions::default()).await
    }

    pub async fn start_with(exe: impl AsRef<Path>, db: &TestDb, options: BridgeOptions) -> Self {
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert("BRIDGE_DATA_DIR".into(), db.dir.join("data").display().to_string());
        env.insert("DATABASE_URL".into(), db.url.clone());
        env.insert("BIND".into(), "127.0.0.1:0".into());
        env.insert("RYZEAPI_URL".into(), "http://127.0.0.1:9".into());
        env.insert("BRIDGE_PUBLIC_URL".into(), "http://bridge.test:8080".into());
        env.insert("BRIDGE_CHATWOOT_TIMEOUT_MS".into(), "1500".into());
        env.insert("RUST_LOG".into(), "debug,actix_server=info,actix_http=info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,mio=info,h2=info,rustls=info".into());
        if let Some(token) = &options.token {
            env.insert("BRIDGE_TOKEN".into(), token.clone());
        }
        for (k, v) in options.extra_env {
            env.insert(k, v);
        }
        let mut bridge = Self {
            exe: exe.as_ref().to_path_buf(),
            child: None,
            url: String::new(),
            token: String::new(),
            output: Arc::default(),
            earlier_output: Vec::new(),
            env,
        };
        bridge.spawn().await;
        bridge
    }

    /// Starts the process and waits for `/readyz`.
    async fn spawn(&mut self) {
        let (child, url, output) =
            spawn_process(&self.exe, self.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        self.child = Some(child);
        let earlier = std::mem::replace(&mut self.output, output);
        if !earlier.lock().unwrap().is_empty() {
            self.earlier_output.push(earlier);
        }
        self.url = url.unwrap_or_else(|| panic!("bridge did not start:\n{}", self.output()));
        self.token = self.env.get("BRIDGE_TOKEN").cloned().unwrap_or_else(|| self.stored_token());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = awc::Client::default()
                .get(format!("{}/readyz", self.url))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .ok();
            if ready == Some(200) {
                return;
            }
            assert!(Instant::now() < deadline, "bridge not ready: {ready:?}\n{}", self.output());
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stored_token(&self) -> String {
        let dir = PathBuf::from(&self.env["BRIDGE_DATA_DIR"]);
        std::fs::read_to_string(dir.join("bridge.token")).unwrap().trim().to_owned()
    }

    pub fn data_dir(&self) -> &Path {
        Path::new(&self.env["BRIDGE_DATA_DIR"])
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// SIGTERM; waits up to `within` for the process to exit and returns its exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        process::terminate(self.child.take()?, within)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            process::kill(child);
        }
    }

    /// Kills and starts again on the same data dir and database, with `changes` to the environment.
    pub async fn restart_with(&mut self, changes: &[(&str, Option<&str>)]) {
        self.kill();
        for (key, value) in changes {
            match value {
                Some(v) => self.env.insert((*key).to_owned(), (*v).to_owned()),
                None => self.env.remove(*key),
            };
        }
        self.spawn().await;
    }

    pub async fn restart(&mut self) {
        self.restart_with(&[]).await;
    }

    /// An authorized request to the bridge.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        request(&format!("{}{path}", self.url), method, Some(&self.token), body).await
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what the bridge said (every process of it, debug lines left out), so a
        // failure seen once in CI can be explained without reproducing it.
        if std::thread::panicking() {
            let mut lines = Vec::new();
            for (n, output) in self.earlier_output.iter().chain([&self.output]).enumerate() {
                lines.push(format!("--- bridge process {} ---", n + 1));
                let text = output.lock().map(|o| o.clone()).unwrap_or_default();
                lines.extend(text.lines().filter(|l| !l.contains("DEBUG")).map(str::to_owned));
            }
            let skip = lines.len().saturating_sub(400);
            eprintln!("=== the bridge's log (INFO and above, last 400 lines) ===\n{}", lines[skip..].join("\n"));
        }
    }
}

/// Runs the bridge binary `exe` with exactly `env`, capturing its output. Returns the child, the URL it
/// listens on (once it said so, within 30 s) and the captured output.
pub fn spawn_process(exe: impl AsRef<Path>, env: Vec<(String, String)>) -> (Child, Option<String>, Arc<Mutex<String>>) {
    let mut child = process::spawn(exe.as_ref(), env, Stdio::piped(), Stdio::piped()).unwrap();
    let output: Arc<Mutex<String>> = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let streams: [Box<dyn std::io::Read + Send>; 2] =
        [Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
    for stream in streams {
        let output = output.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                output.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(at) = line.find("listening on http://") {
                    let url = line[at + "listening on ".len()..].split_whitespace().next().unwrap_or("");
                    let _ = tx.send(url.trim_end_matches('"').to_owned());
                }
            }
        });
    }
    let url = rx.recv_timeout(Duration::from_secs(30)).ok();
    (child, url, output)
}

/// One HTTP request; answers `(status, JSON body or Value::String(text))`.
pub async fn request(url: &str, method: &str, bearer: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = awc::Client::builder().timeout(Duration::from_secs(60)).finish();
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(token) = bearer {
        req = req.insert_header(("authorization", format!("Bearer {token}")));
    }
    let mut response = match body {
        Some(body) => req.send_json(&body).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let status = response.status().as_u16();
    let bytes = response.body().limit(16 * 1024 * 1024).await.unwrap();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// A fake Chatwoot with account 5 ("Orion") and tokens: `ADMIN` (administrator), `AGENT` (agent).
pub const ADMIN: &str = "cw-admin-token-ABCDEF123456";
pub const AGENT: &str = "cw-agent-token-ABCDEF123456";

pub fn fake_chatwoot() -> FakeChatwoot {
    seeded_chatwoot("Orion", &[(ADMIN, Role::Administrator), (AGENT, Role::Agent)]).unwrap()
}

/// A valid activation body for `instance` against `chatwoot_url`.
pub fn activation(instance: &str, chatwoot_url: &str) -> Value {
    serde_json::json!({
        "instance": instance,
        "instanceToken": format!("inst-token-{instance}-SECRET"),
        "ryzeapiUrl": "http://ryzeapi.test:8080",
        "chatwootBaseUrl": format!("{chatwoot_url}/"),
        "chatwootAccountId": ACCOUNT,
        "chatwootApiToken": ADMIN,
        "inboxName": format!("WhatsApp - {instance}"),
    })
}

/// `body` with `changes` merged in (`Value::Null` removes a field).
pub fn with(mut body: Value, changes: Value) -> Value {
    if let (Some(map), Value::Object(changes)) = (body.as_object_mut(), changes) {
        for (k, v) in changes {
            if v.is_null() {
                map.remove(&k);
            } else {
                map.insert(k, v);
            }
        }
    }
    body
}

/// Asserts the contract's error body shape and returns (code, message, detail, upstream_status).
pub fn error_fields(body: &Value) -> (String, String, String, Value) {
    let error = body.get("error").unwrap_or_else(|| panic!("not an error body: {body}"));
    let keys: Vec<&String> = error.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "error body has exactly code, message, detail, upstream_status: {body}");
    (
        error["code"].as_str().unwrap().to_owned(),
        error["message"].as_str().unwrap().to_owned(),
        error["detail"].as_str().unwrap().to_owned(),
        error["upstream_status"].clone(),
    )
}

pub use ryze_fakes::ryzeapi::{self as sim, RyzeApiSim};

/// Link and retry timings scaled down for tests (the defaults are the contract's seconds and minutes).
pub fn fast_timings() -> Vec<(String, String)> {
    [
        ("BRIDGE_LINK_RECONNECT_MIN_MS", "100"),
        ("BRIDGE_LINK_RECONNECT_MAX_MS", "800"),
        ("BRIDGE_LINK_STABLE_MS", "5000"),
        ("BRIDGE_LINK_PING_MS", "200"),
        ("BRIDGE_LINK_DEAD_MS", "1000"),
        ("BRIDGE_LINK_REJECTED_RETRY_MS", "400"),
        ("BRIDGE_RETRY_MIN_MS", "100"),
        ("BRIDGE_RETRY_MAX_MS", "400"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The bridge with both neighbours: a fake Chatwoot and the RyzeAPI simulator, all on loopback.
pub struct Stack {
    pub bridge: Bridge,
    pub chatwoot: FakeChatwoot,
    pub ryzeapi: RyzeApiSim,
    pub db: TestDb,
}

impl Stack {
    /// Starts the bridge binary `exe` (the caller's `env!("CARGO_BIN_EXE_ryze-integrations")`) and its neighbours.
    pub async fn start(exe: impl AsRef<Path>) -> Self {
        Self::start_with(exe, Vec::new()).await
    }

    pub async fn start_with(exe: impl AsRef<Path>, extra_env: Vec<(String, String)>) -> Self {
        let db = TestDb::new().await;
        let token = BridgeOptions::default().token;
        let ryzeapi = RyzeApiSim::start(token.as_deref().unwrap_or_default()).unwrap();
        // A known port, so that Chatwoot's webhooks can be pointed at the bridge.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut env = fast_timings();
        env.push(("BIND".into(), format!("127.0.0.1:{port}")));
        env.push(("BRIDGE_PUBLIC_URL".into(), format!("http://127.0.0.1:{port}")));
        env.extend(extra_env);
        let bridge = Bridge::start_with(exe, &db, BridgeOptions { extra_env: env, ..Default::default() }).await;
        Self { bridge, chatwoot: fake_chatwoot(), ryzeapi, db }
    }

    /// The activation body for `instance` pointing at this stack's neighbours.
    pub fn activation(&self, instance: &str) -> Value {
        let mut body = activation(instance, self.chatwoot.url());
        body["ryzeapiUrl"] = Value::String(self.ryzeapi.url().to_owned());
        self.ryzeapi.add_instance(instance, body["instanceToken"].as_str().unwrap());
        body
    }

    /// Activates `instance` (with `changes` merged into the body) and returns the integration id.
    pub async fn activate_with(&self, instance: &str, changes: Value) -> String {
        let body = with(self.activation(instance), changes);
        let (status, answer) = self.bridge.call("POST", "/v1/integrations/activate", Some(body)).await;
        assert!(status == 201 || status == 200, "{answer}");
        answer["id"].as_str().unwrap().to_owned()
    }

    pub async fn activate(&self, instance: &str) -> String {
        self.activate_with(instance, serde_json::json!({})).await
    }

    pub async fn view(&self, id: &str) -> Value {
        self.bridge.call("GET", &format!("/v1/integrations/{id}"), None).await.1
    }

    /// Waits until both of the integration's queues are empty. A message shows in Chatwoot (or on
    /// WhatsApp) a moment before its row is recorded as processed, so "it arrived" does not mean this yet.
    pub async fn wait_drained(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(6);
        loop {
            let view = self.view(id).await;
            if view["queues"]["to_chatwoot_pending"] == 0 && view["queues"]["to_whatsapp_pending"] == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "queues never drained: {view}");
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the integration's link reports `state`.
    pub async fn wait_link(&self, id: &str, state: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let view = self.view(id).await;
            if view["connection"]["state"] == state {
                return;
            }
            assert!(Instant::now() < deadline, "link never became {state}: {view}");
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Polls `check` every 20 ms until it holds, failing with `what` after `within`.
pub async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Like [`eventually`], for a check that has to await (a database read, say).
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that, in every conversation, the messages whose text is `<prefix><n>` appear in increasing
/// `n` order, and returns how many each conversation holds.
pub fn assert_ordered_per_conversation(chatwoot: &FakeChatwoot, prefix: char) -> Vec<usize> {
    chatwoot
        .conversations()
        .into_iter()
        .map(|conversation| {
            let numbers: Vec<usize> = chatwoot
                .messages(conversation.display_id)
                .into_iter()
                .filter_map(|m| m.content?.strip_prefix(prefix)?.parse().ok())
                .collect();
            let mut sorted = numbers.clone();
            sorted.sort_unstable();
            assert_eq!(numbers, sorted, "order kept within conversation {}", conversation.display_id);
            numbers.len()
        })
        .collect()
}
