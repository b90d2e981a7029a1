//! Several bridge processes on one PostgreSQL (issue #18): real processes on the machine's PostgreSQL,
//! with the fake Chatwoot and the RyzeAPI simulator in this process. Webhooks reach the replicas through
//! a small TCP balancer (as behind a load balancer); one replica may reach PostgreSQL through a proxy
//! that the test can cut.
//!
//! What is checked: integrations spread over the replicas; a killed replica's integrations connect
//! elsewhere; a paused owner is fenced (its writes and calls refused, not merely late); webhooks reaching
//! a replica that does not run the integration are relayed once; a rolling restart loses and doubles
//! nothing; a replica cut off from PostgreSQL stops relaying by itself; replicas started at the same
//! moment migrate once; a second process on one SQLite file refuses to start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sea_orm::{ConnectionTrait as _, DatabaseConnection, Statement};
use serde_json::Value;

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

const TOKEN: &str = "replicas-test-bridge-token-0123";
const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const TTL_MS: u64 = 3000;

/// One cluster at a time: each runs several bridge processes, and two clusters on two cores would test
/// the machine's scheduler rather than the failover's timing.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A TCP forwarder: each connection goes to the first backend (in turn) that accepts it. `cut` closes
/// every connection and refuses new ones (a network partition), `heal` lets them through again.
struct Forwarder {
    pub addr: String,
    backends: Arc<Mutex<Vec<String>>>,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Forwarder {
    fn start(backends: Vec<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let backends = Arc::new(Mutex::new(backends));
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let next = Arc::new(AtomicUsize::new(0));
        let (b, c, o) = (backends.clone(), cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let list = b.lock().unwrap().clone();
                let start = next.fetch_add(1, Ordering::SeqCst);
                let upstream = (0..list.len()).find_map(|i| {
                    TcpStream::connect_timeout(&list[(start + i) % list.len()].parse().unwrap(), Duration::from_secs(1))
                        .ok()
                });
                let Some(upstream) = upstream else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                o.lock().unwrap().extend([client.try_clone().unwrap(), upstream.try_clone().unwrap()]);
                for (mut from, mut to) in
                    [(client.try_clone().unwrap(), upstream.try_clone().unwrap()), (upstream, client)]
                {
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buffer) {
                            if n == 0 || to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Self { addr, backends, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    fn set_backends(&self, backends: Vec<String>) {
        *self.backends.lock().unwrap() = backends;
    }
}

/// Replicas of the bridge with their neighbours.
struct Cluster {
    _db: TestDb,
    chatwoot: FakeChatwoot,
    ryzeapi: RyzeApiSim,
    replicas: Vec<Bridge>,
    /// Where Chatwoot sends webhooks: a balancer over every replica.
    webhooks: Forwarder,
    admin: DatabaseConnection,
}

impl Cluster {
    async fn start(count: usize) -> Self {
        let db = TestDb::postgres().await;
        let ryzeapi = RyzeApiSim::start(TOKEN).unwrap();
        let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let webhooks = Forwarder::start(ports.iter().map(|p| format!("127.0.0.1:{p}")).collect());
        let mut replicas = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let env = Self::env(&db, i, *port, &webhooks.addr, Vec::new());
            replicas.push(
                Bridge::start_with(BRIDGE, &db, BridgeOptions { token: Some(TOKEN.into()), extra_env: env }).await,
            );
        }
        let admin = db.connect().await;
        Self { _db: db, chatwoot: fake_chatwoot(), ryzeapi, replicas, webhooks, admin }
    }

    fn env(db: &TestDb, i: usize, port: u16, webhooks: &str, extra: Vec<(String, String)>) -> Vec<(String, String)> {
        let mut env = fast_timings();
        env.extend([
            ("BIND".to_owned(), format!("127.0.0.1:{port}")),
            ("BRIDGE_PUBLIC_URL".to_owned(), format!("http://{webhooks}")),
            ("BRIDGE_REPLICA_NAME".to_owned(), format!("r{i}")),
            ("BRIDGE_ENCRYPTION_KEY".to_owned(), KEY.to_owned()),
            ("BRIDGE_LEASE_TTL_MS".to_owned(), TTL_MS.to_string()),
            ("BRIDGE_DATA_DIR".to_owned(), db.dir.join(format!("data-{i}")).display().to_string()),
            ("RUST_LOG".to_owned(), "info,sqlx=warn,sea_orm=warn,actix_server=warn".to_owned()),
        ]);
        env.extend(extra);
        env
    }

    fn activation(&self, instance: &str) -> Value {
        let mut body = activation(instance, self.chatwoot.url());
        body["ryzeapiUrl"] = Value::String(self.ryzeapi.url().to_owned());
        self.ryzeapi.add_instance(instance, body["instanceToken"].as_str().unwrap());
        body
    }

    /// Activates `count` integrations, each through the next replica; answers (instance, id, inbox).
    async fn activate(&self, count: usize) -> Vec<(String, String, i64)> {
        let mut all = Vec::new();
        for n in 0..count {
            let instance = format!("num{n:03}");
            let replica = &self.replicas[n % self.replicas.len()];
            let (status, answer) =
                replica.call("POST", "/v1/integrations/activate", Some(self.activation(&instance))).await;
            assert_eq!(status, 201, "{answer}");
            all.push((instance, answer["id"].as_str().unwrap().to_owned(), answer["inbox_id"].as_i64().unwrap()));
        }
        all
    }

    /// `(integration, owner replica name)` of every unexpired lease.
    async fn owners(&self) -> HashMap<String, String> {
        let rows = self
            .admin
            .query_all_raw(Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT integration_id, owner FROM integration_leases WHERE owner IS NOT NULL AND expires_at > now()",
            ))
            .await
            .unwrap();
        rows.into_iter()
            .map(|row| {
                let owner: String = row.try_get_by_index(1).unwrap();
                (row.try_get_by_index(0).unwrap(), owner.split('#').next().unwrap().to_owned())
            })
            .collect()
    }

    async fn epochs(&self) -> HashMap<String, i64> {
        let rows = self
            .admin
            .query_all_raw(Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT integration_id, epoch FROM integration_leases",
            ))
            .await
            .unwrap();
        rows.into_iter().map(|row| (row.try_get_by_index(0).unwrap(), row.try_get_by_index(1).unwrap())).collect()
    }

    /// Waits until every integration is owned by one of `alive` and connected exactly once.
    async fn wait_settled(&self, integrations: &[(String, String, i64)], alive: &[&str], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let owners = self.owners().await;
            let placed =
                integrations.iter().all(|(_, id, _)| owners.get(id).is_some_and(|o| alive.contains(&o.as_str())));
            let connected = integrations.iter().all(|(instance, _, _)| self.ryzeapi.connections(instance) == 1);
            if placed && connected {
                return;
            }
            let stray: Vec<String> = integrations
                .iter()
                .filter(|(instance, id, _)| {
                    !owners.get(id).is_some_and(|o| alive.contains(&o.as_str()))
                        || self.ryzeapi.connections(instance) != 1
                })
                .map(|(instance, id, _)| {
                    format!("{instance}: owner {:?}, {} links", owners.get(id), self.ryzeapi.connections(instance))
                })
                .take(5)
                .collect();
            assert!(Instant::now() < deadline, "not settled on {alive:?} within {within:?}: {stray:?}");
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends customer message `text` to `instance` (the simulator keeps it until acknowledged).
    fn customer_says(&self, instance: &str, customer: &str, text: &str) {
        let id = sim::new_incoming_message_id();
        self.ryzeapi.send_event(instance, sim::text_message(instance, &id, customer, "Cliente", text));
    }

    /// How many times each message text is in Chatwoot.
    fn chatwoot_texts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for conversation in self.chatwoot.conversations() {
            for message in self.chatwoot.messages(conversation.display_id) {
                if let Some(content) = message.content {
                    *counts.entry(content).or_insert(0) += 1;
                }
            }
        }
        counts
    }

    /// How many times each text went out to WhatsApp (successful sends).
    fn whatsapp_texts(&self, instances: &[(String, String, i64)]) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for (instance, _, _) in instances {
            for call in self.ryzeapi.requests(instance) {
                if call.path.starts_with("/api/message/")
                    && call.status == 200
                    && let Some(text) = call.body["text"].as_str().or_else(|| call.body["message"].as_str())
                {
                    *counts.entry(text.to_owned()).or_insert(0) += 1;
                }
            }
        }
        counts
    }

    async fn wait_texts(&self, texts: &[String], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let counts = self.chatwoot_texts();
            let missing: Vec<&String> = texts.iter().filter(|t| !counts.contains_key(*t)).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} messages never reached Chatwoot, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The conversation of `inbox` (its first).
    fn conversation_of(&self, inbox: i64) -> Option<i64> {
        self.chatwoot.conversations().into_iter().filter(|c| c.inbox_id == inbox).map(|c| c.display_id).min()
    }
}

/// Every text of `texts` is in `counts` exactly once.
fn assert_once(counts: &HashMap<String, usize>, texts: &[String], what: &str) {
    let twice: Vec<(&String, usize)> =
        texts.iter().filter_map(|t| counts.get(t).filter(|n| **n != 1).map(|n| (t, *n))).collect();
    assert!(twice.is_empty(), "{what}: not exactly once: {twice:?}");
    let missing = texts.iter().filter(|t| !counts.contains_key(*t)).count();
    assert_eq!(missing, 0, "{what}: {missing} missing");
}

#[actix_web::test]
async fn three_replicas_share_the_work_and_a_killed_ones_integrations_move_within_seconds() {
    let _one = ONE_CLUSTER.lock().await;
    let mut cluster = Cluster::start(3).await;
    let integrations = cluster.activate(60).await;
    cluster.wait_settled(&integrations, &["r0", "r1", "r2"], Duration::from_secs(30)).await;

    // Spread: every replica runs a fair part (give-back moves any excess within a few rounds).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let owners = cluster.owners().await;
        let per: Vec<usize> = ["r0", "r1", "r2"].iter().map(|r| owners.values().filter(|o| o == r).count()).collect();
        if per.iter().all(|n| (15..=25).contains(n)) {
            break;
        }
        assert!(Instant::now() < deadline, "integrations never spread: {per:?}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }

    // Traffic both ways, through whichever replica.
    let mut inbound = Vec::new();
    for (instance, _, _) in &integrations {
        for k in 0..2 {
            let text = format!("{instance} before {k}");
            cluster.customer_says(instance, "5511900000001@s.whatsapp.net", &text);
            inbound.push(text);
        }
    }
    cluster.wait_texts(&inbound, Duration::from_secs(60)).await;

    // Any replica answers for any integration, with the owner's live state.
    let owners = cluster.owners().await;
    let (_, id, _) = &integrations[0];
    for replica in &cluster.replicas {
        let (status, view) = replica.call("GET", &format!("/v1/integrations/{id}"), None).await;
        assert_eq!(status, 200);
        assert_eq!(view["connection"]["state"], "connected", "seen from {}: {view}", replica.url);
        assert_eq!(view["owner"].as_str(), owners.get(id).map(String::as_str), "{view}");
    }

    // The list too, from every replica: all connected, each naming its owner.
    for replica in &cluster.replicas {
        let (_, list) = replica.call("GET", "/v1/integrations", None).await;
        let views = list["integrations"].as_array().unwrap();
        assert_eq!(views.len(), integrations.len());
        for view in views {
            assert_eq!(view["connection"]["state"], "connected", "listed by {}: {view}", replica.url);
            assert_eq!(view["owner"].as_str(), owners.get(view["id"].as_str().unwrap()).map(String::as_str));
        }
    }

    // Kill -9 the replica r1 while messages flow.
    let victims: Vec<String> = owners.iter().filter(|(_, o)| *o == "r1").map(|(id, _)| id.clone()).collect();
    assert!(!victims.is_empty());
    let epochs_before = cluster.epochs().await;
    let killed_at = Instant::now();
    cluster.replicas[1].kill();
    cluster
        .webhooks
        .set_backends(vec![cluster.replicas[0].url[7..].to_owned(), cluster.replicas[2].url[7..].to_owned()]);
    for (instance, _, _) in &integrations {
        let text = format!("{instance} during");
        cluster.customer_says(instance, "5511900000001@s.whatsapp.net", &text);
        inbound.push(text);
    }
    cluster.wait_settled(&integrations, &["r0", "r2"], Duration::from_secs(30)).await;
    let moved_in = killed_at.elapsed();
    assert!(moved_in < Duration::from_secs(30), "moved in {moved_in:?}");
    eprintln!("a killed replica's {} integrations connected elsewhere {moved_in:?} after the kill", victims.len());
    let epochs_after = cluster.epochs().await;
    for id in &victims {
        assert!(epochs_after[id] > epochs_before[id], "a take-over moves the epoch on");
    }

    // Agent replies, whichever replica the webhook reaches.
    let mut outbound = Vec::new();
    for (instance, _, inbox) in integrations.iter().take(12) {
        let conversation = cluster.conversation_of(*inbox).unwrap();
        let text = format!("reply to {instance}");
        cluster.chatwoot.agent_reply(conversation, &text, false).unwrap();
        outbound.push(text);
    }
    cluster.wait_texts(&inbound, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while outbound.iter().any(|t| !cluster.whatsapp_texts(&integrations).contains_key(t)) {
        assert!(Instant::now() < deadline, "replies not sent: {:?}", cluster.whatsapp_texts(&integrations));
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    // Let any late duplicate show.
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert_once(&cluster.chatwoot_texts(), &inbound, "customer messages in Chatwoot");
    assert_once(&cluster.whatsapp_texts(&integrations), &outbound, "agent replies on WhatsApp");
}

#[actix_web::test]
async fn an_owner_paused_past_its_lease_is_fenced_when_it_wakes() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = Cluster::start(2).await;
    let integrations = cluster.activate(4).await;
    cluster.wait_settled(&integrations, &["r0", "r1"], Duration::from_secs(30)).await;
    let owners = cluster.owners().await;
    let (instance, id, _) = integrations.iter().find(|(_, id, _)| owners[id] == "r0").unwrap().clone();
    let paused = &cluster.replicas[0];

    // r0 has work in hand for the integration: Chatwoot refuses its message creates for now, so the
    // message waits in r0's retry when r0 is stopped.
    cluster.chatwoot.fail_next("POST", "/messages", 503, 1000);
    cluster.customer_says(&instance, "5511900000002@s.whatsapp.net", "held while paused");
    let chatwoot = &cluster.chatwoot;
    eventually("r0 tried to create the message", Duration::from_secs(10), || {
        chatwoot.requests().iter().any(|r| r.method == "POST" && r.path.ends_with("/messages"))
    })
    .await;
    let pid = paused.pid().unwrap();
    signal(pid, "STOP");

    // Past the lease, r1 takes the integration over with a new epoch and relays the message.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.owners().await.get(&id).map(String::as_str) != Some("r1") {
        assert!(Instant::now() < deadline, "r1 never took the integration over");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.chatwoot.clear_failures();
    cluster.customer_says(&instance, "5511900000002@s.whatsapp.net", "after the take-over");
    let texts = vec!["held while paused".to_owned(), "after the take-over".to_owned()];
    cluster.wait_texts(&texts, Duration::from_secs(30)).await;

    // r0 wakes with a retry due: the fence refuses it (its deadline passed), and it stops the integration.
    signal(pid, "CONT");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !paused.output().contains("this replica no longer holds") {
        assert!(Instant::now() < deadline, "r0 did not notice it lost the lease:\n{}", paused.output());
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    actix_web::rt::time::sleep(Duration::from_millis(TTL_MS)).await;
    assert_once(&cluster.chatwoot_texts(), &texts, "messages relayed across the pause");
    // One link, r1's (on a loaded machine a link may be between a dead-link timeout and its reconnect).
    let sim = &cluster.ryzeapi;
    eventually("one link, r1's", Duration::from_secs(10), || sim.connections(&instance) == 1).await;
    assert_eq!(cluster.owners().await.get(&id).map(String::as_str), Some("r1"));
}

#[actix_web::test]
async fn a_rolling_restart_under_traffic_loses_and_doubles_nothing() {
    let _one = ONE_CLUSTER.lock().await;
    let mut cluster = Cluster::start(3).await;
    let integrations = cluster.activate(12).await;
    cluster.wait_settled(&integrations, &["r0", "r1", "r2"], Duration::from_secs(30)).await;
    let mut inbound = Vec::new();
    let mut outbound = Vec::new();
    for round in 0..3 {
        // As an orchestrator does: out of the balancer, SIGTERM (which hands the replica's integrations
        // over at once), back on the same name, and into the balancer once ready.
        let others: Vec<String> =
            (0..3).filter(|i| *i != round).map(|i| cluster.replicas[i].url[7..].to_owned()).collect();
        cluster.webhooks.set_backends(others);
        let replica = &mut cluster.replicas[round];
        let exit = replica.terminate(Duration::from_secs(15));
        assert!(exit.is_some_and(|s| s.success()), "a clean stop");
        for (instance, _, inbox) in &integrations {
            let text = format!("{instance} round {round}");
            cluster.customer_says(instance, "5511900000003@s.whatsapp.net", &text);
            inbound.push(text);
            if let Some(conversation) = cluster.conversation_of(*inbox) {
                let reply = format!("reply {instance} round {round}");
                cluster.chatwoot.agent_reply(conversation, &reply, false).unwrap();
                outbound.push(reply);
            }
        }
        cluster.replicas[round].restart().await;
        cluster.webhooks.set_backends(cluster.replicas.iter().map(|r| r.url[7..].to_owned()).collect());
    }
    cluster.wait_settled(&integrations, &["r0", "r1", "r2"], Duration::from_secs(30)).await;
    cluster.wait_texts(&inbound, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while outbound.iter().any(|t| !cluster.whatsapp_texts(&integrations).contains_key(t)) {
        if Instant::now() >= deadline {
            let jobs = cluster
                .admin
                .query_all_raw(Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    "SELECT integration_id, state, attempts, last_error, kind FROM outbound_jobs ORDER BY id",
                ))
                .await
                .unwrap();
            let jobs: Vec<String> = jobs
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {} {} {}",
                        r.try_get_by_index::<String>(0).unwrap(),
                        r.try_get_by_index::<String>(1).unwrap(),
                        r.try_get_by_index::<i32>(2).unwrap(),
                        r.try_get_by_index::<String>(3).unwrap(),
                        r.try_get_by_index::<String>(4).unwrap()
                    )
                })
                .collect();
            let deliveries: Vec<String> = cluster
                .chatwoot
                .webhook_deliveries_of("message_created")
                .iter()
                .filter(|d| d.body["content"].as_str().is_some_and(|c| c.starts_with("reply")))
                .map(|d| format!("{} {:?} {:?} {}", d.body["content"], d.status, d.error, d.url))
                .collect();
            panic!(
                "replies not sent: {:?}\ndeliveries: {deliveries:#?}\njobs: {jobs:#?}\nowners: {:?}",
                outbound.iter().filter(|t| !cluster.whatsapp_texts(&integrations).contains_key(*t)).collect::<Vec<_>>(),
                cluster.owners().await
            );
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert_once(&cluster.chatwoot_texts(), &inbound, "customer messages");
    assert_once(&cluster.whatsapp_texts(&integrations), &outbound, "agent replies");
}

#[actix_web::test]
async fn a_replica_cut_off_from_postgresql_stops_relaying_within_one_lease() {
    let _one = ONE_CLUSTER.lock().await;
    let server = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let pg = url::Url::parse(&server).unwrap();
    let pg_addr = format!("{}:{}", pg.host_str().unwrap(), pg.port().unwrap_or(5432));
    let proxy = Forwarder::start(vec![pg_addr]);
    // r0 reaches PostgreSQL directly, r1 through the proxy.
    let db = TestDb::postgres().await;
    let mut via_proxy = url::Url::parse(&db.url).unwrap();
    let (host, port) = proxy.addr.split_once(':').unwrap();
    via_proxy.set_host(Some(host)).unwrap();
    via_proxy.set_port(Some(port.parse().unwrap())).unwrap();
    let ryzeapi = RyzeApiSim::start(TOKEN).unwrap();
    let chatwoot = fake_chatwoot();
    let webhooks = Forwarder::start(Vec::new());
    let direct = Bridge::start_with(
        BRIDGE,
        &db,
        BridgeOptions {
            token: Some(TOKEN.into()),
            extra_env: Cluster::env(&db, 0, free_port(), &webhooks.addr, Vec::new()),
        },
    )
    .await;
    let mut env = Cluster::env(&db, 1, free_port(), &webhooks.addr, Vec::new());
    env.push(("DATABASE_URL".to_owned(), via_proxy.to_string()));
    let cut_off = Bridge::start_with(BRIDGE, &db, BridgeOptions { token: Some(TOKEN.into()), extra_env: env }).await;
    let cluster =
        Cluster { admin: db.connect().await, _db: db, chatwoot, ryzeapi, replicas: vec![direct, cut_off], webhooks };
    let integrations = cluster.activate(6).await;
    cluster.wait_settled(&integrations, &["r0", "r1"], Duration::from_secs(30)).await;
    let owners = cluster.owners().await;
    let on_r1: Vec<&(String, String, i64)> = integrations.iter().filter(|(_, id, _)| owners[id] == "r1").collect();
    assert!(!on_r1.is_empty(), "r1 runs some: {owners:?}");

    let cut_at = Instant::now();
    proxy.cut();
    // Within one lease r1 gives up by itself (nobody can tell it), and r0 takes over.
    let deadline = Instant::now() + Duration::from_millis(TTL_MS * 3);
    while !cluster.replicas[1].output().contains("stopping every integration here") {
        assert!(Instant::now() < deadline, "r1 kept relaying without PostgreSQL:\n{}", cluster.replicas[1].output());
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped_in = cut_at.elapsed();
    assert!(stopped_in <= Duration::from_millis(TTL_MS + 500), "stopped {stopped_in:?} after the cut");
    cluster.wait_settled(&integrations, &["r0"], Duration::from_secs(30)).await;
    for (instance, _, _) in &on_r1 {
        cluster.customer_says(instance, "5511900000004@s.whatsapp.net", &format!("{instance} after the cut"));
    }
    let texts: Vec<String> = on_r1.iter().map(|(instance, _, _)| format!("{instance} after the cut")).collect();
    cluster.wait_texts(&texts, Duration::from_secs(30)).await;
    proxy.heal();
    actix_web::rt::time::sleep(Duration::from_millis(TTL_MS)).await;
    assert_once(&cluster.chatwoot_texts(), &texts, "messages after the cut");
}

#[actix_web::test]
async fn replicas_started_at_the_same_moment_on_a_fresh_database_all_start() {
    let _one = ONE_CLUSTER.lock().await;
    let db = TestDb::postgres().await;
    /// Killed however the test ends (a failing assertion must not leave replicas running).
    struct Children(Vec<(std::process::Child, usize)>);
    impl Drop for Children {
        fn drop(&mut self) {
            for (child, _) in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let children: Vec<_> = (0..3)
        .map(|i| {
            let mut env: Vec<(String, String)> = Cluster::env(&db, i, free_port(), "127.0.0.1:9", Vec::new());
            env.extend([("DATABASE_URL".to_owned(), db.url.clone()), ("BRIDGE_TOKEN".to_owned(), TOKEN.to_owned())]);
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ryze-integrations"));
            command.env_clear().envs(env).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
            (command.spawn().unwrap(), i)
        })
        .collect();
    let mut children = Children(children);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = vec![false; children.0.len()];
    while ready.iter().any(|r| !r) {
        assert!(Instant::now() < deadline, "not every replica became ready: {ready:?}");
        for (child, i) in &mut children.0 {
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
                panic!("replica r{i} died ({status}):\n{stderr}");
            }
        }
        for (n, ready) in ready.iter_mut().enumerate() {
            if !*ready {
                *ready = replica_ready(&db, n).await;
            }
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    for (child, _) in &mut children.0 {
        assert!(child.try_wait().unwrap().is_none(), "a replica died");
        let _ = child.kill();
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        let _ = child.wait();
        assert!(!stderr.contains("already exists") && !stderr.contains("duplicate key"), "{stderr}");
    }
}

/// Whether replica `n` registered itself (it does so once migrated and leasing).
async fn replica_ready(db: &TestDb, n: usize) -> bool {
    let admin = db.connect().await;
    let found = admin
        .query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT 1 FROM replicas WHERE id LIKE 'r{n}#%'"),
        ))
        .await;
    let _ = admin.close().await;
    matches!(found, Ok(Some(_)))
}

#[actix_web::test]
async fn a_second_process_on_one_sqlite_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bridge.db?mode=rwc", dir.path().display());
    let env = |port: u16| {
        vec![
            ("DATABASE_URL".to_owned(), url.clone()),
            ("BRIDGE_TOKEN".to_owned(), TOKEN.to_owned()),
            ("BRIDGE_ENCRYPTION_KEY".to_owned(), KEY.to_owned()),
            ("BIND".to_owned(), format!("127.0.0.1:{port}")),
            ("BRIDGE_DATA_DIR".to_owned(), dir.path().display().to_string()),
        ]
    };
    let (mut first, first_url, _) = spawn_process(BRIDGE, env(free_port()));
    assert!(first_url.is_some());
    let deadline = Instant::now() + Duration::from_secs(30);
    while request(&format!("{}/readyz", first_url.as_ref().unwrap()), "GET", None, None).await.0 != 200 {
        assert!(Instant::now() < deadline);
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut second, _, output) = spawn_process(BRIDGE, env(free_port()));
    let status = second.wait().unwrap();
    assert!(!status.success(), "the second process must not run");
    let said = output.lock().unwrap().clone();
    assert!(said.contains("another bridge process is using") && said.contains("bridge.db"), "{said}");
    assert_eq!(said.lines().filter(|l| l.contains("another bridge process")).count(), 1, "one line: {said}");
    assert!(first.try_wait().unwrap().is_none(), "the first one runs on");
    let _ = first.kill();
    let _ = first.wait();
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}

#[actix_web::test]
async fn the_fence_refuses_a_stale_epoch_in_the_database_and_calls_nobody_after_the_deadline() {
    use ryze_integrations::fence::{Fence, LeaseClock};
    use ryze_integrations::store::{self, StoreError, jobs::NewJob};
    let db = TestDb::postgres().await;
    let opened = store::open(&db.url).await.unwrap();
    opened
        .db
        .execute_unprepared(
            "INSERT INTO integration_leases (integration_id, owner, epoch, expires_at) \
             VALUES ('int_fenced', 'r0#1', 7, now() + interval '1 minute')",
        )
        .await
        .unwrap();
    let clock = LeaseClock::new();
    clock.renewed(Instant::now(), Duration::from_secs(60), Duration::ZERO);
    let writer = opened.writers.of("int_fenced").fenced(Fence::leased("int_fenced", 7, clock));
    let job = |message: i64| NewJob {
        integration_id: "int_fenced".into(),
        chatwoot_message_id: message,
        kind: "send".parse().unwrap(),
        conversation_id: 1,
        payload: "{}".into(),
    };
    assert!(writer.store_job(job(1)).await.unwrap().is_some(), "the current epoch writes");
    // Another replica takes over (or the integration is paused elsewhere): the epoch moves on.
    store::leases::fence_off(&opened.db, "int_fenced").await.unwrap();
    assert!(matches!(writer.store_job(job(2)).await, Err(StoreError::Fenced(_))), "a stale epoch is refused");
    let count = opened
        .db
        .query_one_raw(Statement::from_string(sea_orm::DbBackend::Postgres, "SELECT count(*) FROM outbound_jobs"))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(count, 1, "the refused write changed nothing");

    // Past its local deadline a lease calls nobody, before anyone else could have taken it.
    let chatwoot = fake_chatwoot();
    let short = LeaseClock::new();
    short.renewed(Instant::now(), Duration::from_millis(300), Duration::from_millis(100));
    let target = ryze_integrations::chatwoot::ChatwootTarget {
        base_url: chatwoot.url().to_owned(),
        account_id: ACCOUNT,
        token: ryze_integrations::secret::Secret::new(ADMIN.to_owned()),
    };
    let client = ryze_integrations::chatwoot::ChatwootClient::new(
        awc::Client::default(),
        target,
        Duration::from_secs(2),
        ryze_integrations::telemetry::Metrics::default(),
    )
    .with_fence(Fence::leased("int_fenced", 8, short));
    assert!(client.api_info().await.is_ok(), "inside the deadline the call goes out");
    let before = chatwoot.requests().len();
    actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    let refused = client.api_info().await.unwrap_err();
    assert!(refused.to_string().contains("no longer holds"), "{refused}");
    assert_eq!(chatwoot.requests().len(), before, "nothing reached Chatwoot");
}
