//! A fake Chatwoot (v4.15 by default) for the endpoints the bridge calls.
//!
//! Every request passes through [`dispatch`]: it is recorded, a configured fault is applied (slow answers,
//! 5xx/429 pages, an optional proxy that drops underscored header names), Puma's bounded worker pool with
//! a service time per request when capacity mode is on ([`FakeChatwoot::set_capacity`], `capacity.rs`),
//! Rack::Attack's per-IP throttle when set, the access token (`api_access_token` or `Api-Access-Token`) is checked the way Chatwoot
//! checks it, and the route answers with Chatwoot's own status and body for the version set (3.4 and
//! newer; behaviours that changed between releases follow the gates in `ryze_wire::chatwoot_version`, the bridge's own). Requests whose shape Chatwoot would reject or silently drop
//! (unknown keys, `callback_url` instead of `webhook_url`, non-JSON bodies) are answered as Chatwoot does
//! *and* recorded in [`FakeChatwoot::violations`], so that a test can fail on them.
//!
//! Beyond inboxes it keeps contacts, contact_inboxes, conversations and messages (JSON and multipart
//! attachments, served back through Active Storage-style redirect URLs), and delivers Chatwoot's webhooks
//! (`message_created`, `conversation_status_changed`, …) to each API inbox's `webhook_url`, built when
//! delivered and sent by concurrent workers as Sidekiq does, signed from 4.13 on. Test-control methods (`agent_reply`, `agent_delete`, `set_conversation_status`, …) act as a
//! dashboard agent would. Conversations are addressed by their per-account `display_id`; with several
//! accounts, the test-control methods take the first conversation with that display id.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use ryze_wire::chatwoot_version::Version;
use serde_json::{Map, Value, json};

mod capacity;
mod contacts;
mod control;
mod conversations;
mod messages;
mod multipart;
mod webhooks;

pub use capacity::{Capacity, CapacityStats};
pub use contacts::{FakeContact, FakeContactInbox};
pub use conversations::FakeConversation;
pub use messages::{FakeAttachment, FakeMessage, FakeSender};
pub use webhooks::{WebhookDelivery, sign_webhook};

/// A member's role on an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Administrator,
    Agent,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::Administrator => "administrator",
            Self::Agent => "agent",
        }
    }
}

/// Something to go wrong on every request until cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Answer normally, after this delay.
    Slow(Duration),
    /// Answer every request with this status and the page a proxy or Rack::Attack would send.
    Status(u16),
    /// Answer about `percent` % of requests (pseudo-random, reproducible) with 503 or 429, alternately.
    Flaky {
        percent: u8,
    },
}

#[derive(Debug, Clone)]
struct Account {
    name: String,
    suspended: bool,
    inbox_limit: Option<usize>,
}

#[derive(Debug, Clone)]
struct User {
    id: i64,
    name: String,
    bot: bool,
    memberships: BTreeMap<i64, Role>,
}

/// An inbox as the fake stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeInbox {
    pub id: i64,
    pub account_id: i64,
    pub channel_id: i64,
    pub name: String,
    pub webhook_url: String,
    pub identifier: String,
    pub secret: String,
    pub hmac_token: String,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub body: Option<Value>,
    pub status: u16,
}

/// A user as a message sender or actor (token owner or the dashboard agent).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Actor {
    id: i64,
    name: String,
    email: String,
}

#[derive(Debug)]
struct State {
    /// Draws made by [`Fault::Flaky`].
    flaky_draws: u64,
    version: String,
    /// `FRONTEND_URL`: attachment URLs point here.
    base_url: String,
    accounts: BTreeMap<i64, Account>,
    users: HashMap<String, User>,
    inboxes: BTreeMap<i64, FakeInbox>,
    /// Inboxes with `lock_to_single_conversation` on.
    locked_inboxes: HashSet<i64>,
    next_id: i64,
    requests: Vec<RecordedRequest>,
    violations: Vec<String>,
    fault: Fault,
    /// Faults for particular requests: `(method, part of the path, status, how many more)`.
    failures: Vec<(String, String, u16, u32)>,
    /// Requests carried out at once and answered late: `(method, part of the path, delay, how many more)`.
    late_answers: Vec<(String, String, Duration, u32)>,
    contacts: BTreeMap<i64, FakeContact>,
    contact_inboxes: BTreeMap<i64, FakeContactInbox>,
    /// `(inbox_id, source_id)` → contact_inbox id (unique, as in Chatwoot), so lookups need no scan.
    contact_inbox_index: HashMap<(i64, String), i64>,
    conversations: BTreeMap<i64, FakeConversation>,
    /// `(display_id, account_id)` → conversation id; ordered so that the first account's is found first.
    conversation_index: BTreeMap<(i64, i64), i64>,
    /// Last display id per account.
    display_ids: HashMap<i64, i64>,
    messages: BTreeMap<i64, FakeMessage>,
    /// Per conversation: its message ids and counters, so that a create costs the same at any size.
    threads: HashMap<i64, messages::Thread>,
    blobs: HashMap<String, messages::Blob>,
    /// The dashboard agent the test-control methods act as (created on first use).
    dashboard_agent: Option<Actor>,
    webhooks: webhooks::Webhooks,
    /// A reverse proxy in front that drops header names with `_` (nginx's `underscores_in_headers off`).
    proxy_drops_underscores: bool,
    /// Rack::Attack `req/ip`: requests a minute per client IP (`None`: off).
    rate_limit: Option<u32>,
    /// Per client IP: (minute bucket, requests in it).
    rate_counts: HashMap<IpAddr, (i64, u32)>,
    /// `CONVERSATION_MESSAGE_PER_MINUTE_LIMIT` (`None`: off).
    conversation_message_limit: Option<usize>,
    /// 422 catch-all faults for message create.
    unprocessable: Vec<Unprocessable>,
    /// Retry keeps `content_attributes` but `external_error` (open PR #15912).
    retry_keeps_attributes: bool,
    /// `(inbox_id, user_id)` inbox memberships (agents see these inboxes).
    inbox_members: HashSet<(i64, i64)>,
    /// Capacity mode: Puma's workers (`None`: every request is served at once).
    capacity: Option<Arc<capacity::Pool>>,
}

/// An exception `messages_controller.rb#create` rescues as 422 `{"error": text}`.
#[derive(Debug, Clone)]
struct Unprocessable {
    path_part: String,
    text: String,
    left: u32,
    /// Raised in an after-commit callback: the message exists (and its webhook is queued).
    after_commit: bool,
}

impl State {
    fn next_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn signing_supported(&self) -> bool {
        version_at_least(&self.version, (4, 13))
    }

    fn violation(&mut self, text: String) {
        self.violations.push(text);
    }

    fn account_json(&self, account_id: i64) -> Value {
        json!({"id": account_id, "name": self.accounts.get(&account_id).map(|a| a.name.clone()).unwrap_or_default()})
    }

    /// The contact_inbox of `source_id` in an inbox.
    fn contact_inbox_id(&self, inbox_id: i64, source_id: &str) -> Option<i64> {
        self.contact_inbox_index.get(&(inbox_id, source_id.to_owned())).copied()
    }

    /// The conversation of an account with this display id.
    fn conversation_by_display(&self, account_id: i64, display_id: i64) -> Option<i64> {
        self.conversation_index.get(&(display_id, account_id)).copied()
    }

    fn insert_conversation(&mut self, conversation: FakeConversation) {
        self.conversation_index.insert((conversation.display_id, conversation.account_id), conversation.id);
        self.conversations.insert(conversation.id, conversation);
    }

    fn remove_conversation(&mut self, id: i64) {
        if let Some(conversation) = self.conversations.remove(&id) {
            self.conversation_index.remove(&(conversation.display_id, conversation.account_id));
        }
        self.threads.remove(&id);
    }

    /// A conversation's messages, oldest first.
    fn thread_messages(&self, conversation_id: i64) -> impl DoubleEndedIterator<Item = &FakeMessage> {
        let ids = self.threads.get(&conversation_id).map_or(&[][..], |t| t.ids.as_slice());
        ids.iter().filter_map(|id| self.messages.get(id))
    }

    fn dashboard_agent(&mut self) -> Actor {
        if let Some(agent) = &self.dashboard_agent {
            return agent.clone();
        }
        let id = self.next_id();
        let agent = Actor { id, name: "Agent Ana".into(), email: format!("ana{id}@example.com") };
        self.dashboard_agent = Some(agent.clone());
        agent
    }
}

pub use ryze_wire::chatwoot_version::version_at_least;

/// `lib/limits.rb#conversation_message_per_minute_limit`: `CONVERSATION_MESSAGE_PER_MINUTE_LIMIT`, default 200.
const DEFAULT_CONVERSATION_MESSAGE_LIMIT: usize = 200;

/// Whether a dotted version is at least `(major, minor, patch)`.
fn version_at_least_patch(version: &str, wanted: (u64, u64, u64)) -> bool {
    Version::parse(version).unwrap_or(Version(0, 0, 0)) >= Version(wanted.0, wanted.1, wanted.2)
}

/// A running fake Chatwoot. Stops when dropped.
pub struct FakeChatwoot {
    url: String,
    state: Arc<Mutex<State>>,
    server: ServerHandle,
}

impl FakeChatwoot {
    /// Starts on a free loopback port, with no accounts or users.
    pub fn start() -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0")
    }

    /// Starts on `addr`. Must be called inside an actix system.
    pub fn start_on(addr: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let url = format!("http://{}", listener.local_addr()?);
        let (webhooks, deliveries) = webhooks::Webhooks::new();
        let state = Arc::new(Mutex::new(State {
            version: "4.15.1".into(),
            base_url: url.clone(),
            accounts: BTreeMap::new(),
            users: HashMap::new(),
            inboxes: BTreeMap::new(),
            locked_inboxes: HashSet::new(),
            next_id: 100,
            requests: Vec::new(),
            violations: Vec::new(),
            fault: Fault::None,
            failures: Vec::new(),
            late_answers: Vec::new(),
            flaky_draws: 0,
            contacts: BTreeMap::new(),
            contact_inboxes: BTreeMap::new(),
            contact_inbox_index: HashMap::new(),
            conversations: BTreeMap::new(),
            conversation_index: BTreeMap::new(),
            display_ids: HashMap::new(),
            messages: BTreeMap::new(),
            threads: HashMap::new(),
            blobs: HashMap::new(),
            dashboard_agent: None,
            webhooks,
            proxy_drops_underscores: false,
            rate_limit: None,
            rate_counts: HashMap::new(),
            conversation_message_limit: Some(DEFAULT_CONVERSATION_MESSAGE_LIMIT),
            unprocessable: Vec::new(),
            retry_keeps_attributes: false,
            inbox_members: HashSet::new(),
            capacity: None,
        }));
        let slots = lock(&state).webhooks.slots();
        actix_web::rt::spawn(webhooks::deliver(Arc::downgrade(&state), deliveries, slots));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .default_service(web::to(dispatch))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Ok(Self { url, state, server: handle })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn set_version(&self, version: &str) {
        self.state().version = version.to_owned();
    }

    pub fn add_account(&self, id: i64, name: &str) {
        self.state().accounts.insert(id, Account { name: name.to_owned(), suspended: false, inbox_limit: None });
    }

    pub fn suspend_account(&self, id: i64) {
        if let Some(account) = self.state().accounts.get_mut(&id) {
            account.suspended = true;
        }
    }

    /// Limits how many inboxes the account may have (enterprise plan limit → 402).
    pub fn limit_inboxes(&self, account_id: i64, limit: usize) {
        if let Some(account) = self.state().accounts.get_mut(&account_id) {
            account.inbox_limit = Some(limit);
        }
    }

    /// Adds a user with an access token and roles on accounts. Returns the user id.
    pub fn add_user(&self, token: &str, memberships: &[(i64, Role)]) -> i64 {
        self.insert_user(token, memberships, false)
    }

    /// Adds an agent bot token (refused on user-only endpoints).
    pub fn add_bot(&self, token: &str, account_id: i64) -> i64 {
        self.insert_user(token, &[(account_id, Role::Agent)], true)
    }

    fn insert_user(&self, token: &str, memberships: &[(i64, Role)], bot: bool) -> i64 {
        let mut state = self.state();
        let id = state.next_id();
        let user = User { id, name: format!("User {id}"), bot, memberships: memberships.iter().copied().collect() };
        state.users.insert(token.to_owned(), user);
        id
    }

    /// Revokes a token (as when a user regenerates theirs).
    pub fn revoke_token(&self, token: &str) {
        self.state().users.remove(token);
    }

    pub fn set_fault(&self, fault: Fault) {
        self.state().fault = fault;
    }

    /// Answers the next `times` requests of `method` to a path containing `path_part` with `status` (and
    /// the page a proxy or Rack::Attack would send), changing nothing; other requests are not affected.
    pub fn fail_next(&self, method: &str, path_part: &str, status: u16, times: u32) {
        self.state().failures.push((method.to_owned(), path_part.to_owned(), status, times));
    }

    /// Carries out the next `times` requests of `method` to a path containing `path_part` at once, and
    /// answers them only after `delay`. What a client that gives up (or dies) meanwhile leaves behind on a
    /// real Chatwoot: Puma runs a request it has read to the end whether or not its client still waits,
    /// so the record exists and nobody heard of it.
    pub fn answer_late_next(&self, method: &str, path_part: &str, delay: Duration, times: u32) {
        self.state().late_answers.push((method.to_owned(), path_part.to_owned(), delay, times));
    }

    /// Forgets every failure set with [`FakeChatwoot::fail_next`] that has not happened yet.
    pub fn clear_failures(&self) {
        self.state().failures.clear();
    }

    /// Puts a reverse proxy with nginx's default `underscores_in_headers off` in front: header names
    /// containing `_` are dropped before Chatwoot sees them, so `api_access_token` gets devise's 401 and only
    /// `Api-Access-Token` works (Chatwoot's own `deployment/nginx_chatwoot.conf` turns this on). Off by default.
    pub fn set_proxy_drops_underscore_headers(&self, on: bool) {
        self.state().proxy_drops_underscores = on;
    }

    /// Rack::Attack's `throttle('req/ip', limit:, period: 1.minute)` (`config/initializers/rack_attack.rb`,
    /// `RACK_ATTACK_LIMIT`, 3000 in Chatwoot): at most `limit` requests per client IP in each fixed
    /// one-minute window, the rest get the 429 page. Real Chatwoot exempts 127.0.0.1, ::1 and
    /// `RACK_ATTACK_ALLOWED_IPS`; the fake exempts nothing, since it stands for a Chatwoot reached over a
    /// network while tests run on loopback. `None` (the default) turns it off.
    pub fn set_rate_limit(&self, per_minute: Option<u32>) {
        let mut state = self.state();
        state.rate_limit = per_minute;
        state.rate_counts.clear();
    }

    /// `CONVERSATION_MESSAGE_PER_MINUTE_LIMIT` (`app/models/message.rb#prevent_message_flooding`): a
    /// conversation holding this many messages created in the last minute refuses more with 422
    /// `{"error":"Validation failed: Too many messages"}`. 200 by default, as in Chatwoot; `None` turns it off.
    pub fn set_conversation_message_limit(&self, limit: Option<usize>) {
        self.state().conversation_message_limit = limit;
    }

    /// The next `times` message creates (`POST …/messages`) whose path contains `path_part` raise an
    /// exception that `messages_controller.rb#create` rescues as 422 `{"error": text}` (any StandardError:
    /// storage, Redis, database). With `after_commit` false nothing is created; with it true the exception
    /// comes from an after-commit callback: the message exists and its `message_created` is emitted, yet the
    /// answer is the same 422.
    pub fn fail_next_unprocessable(&self, path_part: &str, text: &str, times: u32, after_commit: bool) {
        self.state().unprocessable.push(Unprocessable {
            path_part: path_part.to_owned(),
            text: text.to_owned(),
            left: times,
            after_commit,
        });
    }

    /// Emulates open PR #15912: retry keeps the message's `content_attributes` except `external_error`
    /// (4.10.1 empties them). Off by default.
    pub fn set_retry_keeps_attributes(&self, on: bool) {
        self.state().retry_keeps_attributes = on;
    }

    /// An admin pressing "reset secret" on an API inbox (4.13+, PR #13892; `inboxes_controller.rb#reset_secret`
    /// calls `channel.reset_secret!`): a new signing secret, used by every later delivery and shown to admins
    /// in the inbox JSON. Returns it (`None`: no such inbox).
    pub fn reset_inbox_secret(&self, inbox_id: i64) -> Option<String> {
        reset_secret(&mut self.state(), inbox_id)
    }

    /// Makes a user a member of an inbox (`inbox_members`): agents list and show the inboxes they belong to.
    pub fn add_inbox_member(&self, inbox_id: i64, user_id: i64) {
        self.state().inbox_members.insert((inbox_id, user_id));
    }

    pub fn inboxes(&self) -> Vec<FakeInbox> {
        self.state().inboxes.values().cloned().collect()
    }

    pub fn inbox(&self, id: i64) -> Option<FakeInbox> {
        self.state().inboxes.get(&id).cloned()
    }

    /// Deletes an inbox behind the bridge's back (an admin deleting it in Chatwoot's UI): its contact_inboxes,
    /// conversations and messages go with it (`app/models/inbox.rb`, `dependent: :destroy_async`).
    pub fn delete_inbox_directly(&self, id: i64) {
        contacts::destroy_inbox(&mut self.state(), id);
    }

    /// Turns the inbox's `lock_to_single_conversation` on or off (as an admin would in the inbox settings).
    pub fn set_lock_to_single_conversation(&self, inbox_id: i64, on: bool) {
        let mut state = self.state();
        if on {
            state.locked_inboxes.insert(inbox_id);
        } else {
            state.locked_inboxes.remove(&inbox_id);
        }
    }

    /// Points an inbox's webhook somewhere else behind the bridge's back.
    pub fn set_inbox_webhook_url(&self, inbox_id: i64, url: &str) {
        if let Some(inbox) = self.state().inboxes.get_mut(&inbox_id) {
            inbox.webhook_url = url.to_owned();
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Requests with this method whose path starts with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.state().requests.iter().filter(|r| r.method == method && r.path.starts_with(prefix)).count()
    }

    /// Requests a real Chatwoot would have rejected or misread. Empty in a passing test.
    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }

    /// Stops the server (the port then refuses connections).
    pub async fn stop(&self) {
        self.server.stop(false).await;
    }
}

impl Drop for FakeChatwoot {
    fn drop(&mut self) {
        // Stopping is asynchronous; fire it and let the system finish it.
        let handle = self.server.clone();
        actix_web::rt::spawn(async move { handle.stop(false).await });
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    match state.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Chatwoot's JSON answer.
fn reply(status: u16, body: Value) -> (u16, HttpResponse) {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, HttpResponse::build(code).json(body))
}

fn error(status: u16, text: &str) -> (u16, HttpResponse) {
    reply(status, json!({ "error": text }))
}

fn not_found() -> (u16, HttpResponse) {
    error(404, "Resource could not be found")
}

/// A `head :status` answer (empty body).
fn empty(status: u16) -> (u16, HttpResponse) {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, HttpResponse::build(code).finish())
}

/// An id parameter: a JSON integer or a string of digits (Rails casts both).
fn id_param(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// Rails' JSON time: `2026-07-13T10:00:00.123Z`.
fn iso(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn unix(time: chrono::DateTime<chrono::Utc>) -> i64 {
    time.timestamp()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() {
        // Not security-relevant in a fake: fall back to the clock.
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default().to_le_bytes();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = nanos[i % nanos.len()].wrapping_add(i as u8);
        }
    }
    bytes
}

/// A random v4 UUID.
fn uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// `has_secure_token`-style random alphanumerics.
fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<32>() {
            if out.len() < len {
                out.push(ALPHABET[usize::from(b) % ALPHABET.len()] as char);
            }
        }
    }
    out
}

/// A user (token owner or the dashboard agent) by id.
fn user_by_id(state: &State, id: i64) -> Option<Actor> {
    if let Some(agent) = state.dashboard_agent.as_ref().filter(|a| a.id == id) {
        return Some(agent.clone());
    }
    state.users.values().find(|u| u.id == id).map(|u| Actor {
        id,
        name: u.name.clone(),
        email: format!("user{id}@example.com"),
    })
}

/// Rails' page for a route that does not exist.
fn no_route() -> (u16, HttpResponse) {
    let page = "<!DOCTYPE html><html><head><title>The page you were looking for doesn't exist (404)</title></head><body><h1>The page you were looking for doesn't exist.</h1></body></html>";
    (404, HttpResponse::NotFound().content_type("text/html; charset=utf-8").body(page))
}

/// One request as the routes see it.
struct Call<'a> {
    http: &'a HttpRequest,
    method: &'a str,
    path: &'a str,
    json: Option<&'a Value>,
    form: Option<&'a multipart::Form>,
}

impl Call<'_> {
    /// Decoded query parameters (`+` decodes to a space, as in Rails).
    fn query(&self) -> HashMap<String, String> {
        web::Query::<HashMap<String, String>>::from_query(self.http.query_string())
            .map(web::Query::into_inner)
            .unwrap_or_default()
    }

    fn page(&self) -> usize {
        self.query().get("page").and_then(|p| p.parse::<usize>().ok()).filter(|p| *p > 0).unwrap_or(1)
    }
}

async fn dispatch(req: HttpRequest, body: web::Bytes, state: web::Data<Mutex<State>>) -> HttpResponse {
    let method = req.method().as_str().to_owned();
    let path = req.path().to_owned();
    let (fault, pool) = {
        let guard = lock(&state);
        (guard.fault.clone(), guard.capacity.clone())
    };
    if let Fault::Slow(delay) = fault {
        actix_web::rt::time::sleep(delay).await;
    }
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // The multipart parser is async: it runs before the state is locked.
    let multipart_form = if content_type.starts_with("multipart/form-data") {
        Some(multipart::parse(req.headers(), body.clone()).await)
    } else {
        None
    };
    // Capacity mode: a Puma thread, then Rack::Attack, then Rails' service time (a proxy's error page
    // needs no thread). The worker is held until the answer goes out.
    let (_worker, throttled_early) = match pool {
        Some(pool) if !matches!(fault, Fault::Status(_)) => {
            let worker = pool.acquire().await;
            let throttled = {
                let mut guard = lock(&state);
                matches!(fault, Fault::None | Fault::Slow(_))
                    && !is_armed(&guard.failures, &method, &path)
                    && throttle(&mut guard, &req)
            };
            if !throttled && !pool.capacity.service_time.is_zero() {
                actix_web::rt::time::sleep(pool.capacity.service_time).await;
            }
            (Some(worker), Some(throttled))
        }
        _ => (None, None),
    };
    // Everything under the state's lock happens here; a late answer waits after it is released.
    let (response, late) = {
        let mut guard = lock(&state);
        let mut parsed_body = None;
        let mut form = None;
        if let Some(parsed) = multipart_form {
            form = parsed;
            if form.is_none() {
                guard.violation(format!("{method} {path}: malformed multipart/form-data body"));
            }
        } else {
            parsed_body = (!body.is_empty()).then(|| serde_json::from_slice::<Value>(&body).ok()).flatten();
            if !body.is_empty() && parsed_body.is_none() {
                guard.violation(format!("{method} {path}: body is not JSON"));
            }
            if parsed_body.is_some() && !is_json_content(&req) {
                guard.violation(format!("{method} {path}: JSON body without Content-Type: application/json"));
            }
        }
        let call = Call { http: &req, method: &method, path: &path, json: parsed_body.as_ref(), form: form.as_ref() };
        let targeted = take_armed(&mut guard.failures, &method, &path);
        let throttled = match (throttled_early, targeted, &fault) {
            (Some(throttled), _, _) => throttled,
            (None, None, Fault::None | Fault::Slow(_)) => throttle(&mut guard, &req),
            _ => false,
        };
        let (status, response) = match (targeted, fault) {
            (Some(status), _) | (None, Fault::Status(status)) => fault_page(status),
            _ if throttled => fault_page(429),
            (None, Fault::Flaky { percent }) => {
                // xorshift over a counter: reproducible, evenly spread.
                guard.flaky_draws = guard.flaky_draws.wrapping_add(1);
                let mut x = guard.flaky_draws.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                x ^= x >> 33;
                x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
                x ^= x >> 33;
                if x % 100 < u64::from(percent) {
                    fault_page(if x.is_multiple_of(2) { 503 } else { 429 })
                } else {
                    route(&mut guard, &call)
                }
            }
            _ => route(&mut guard, &call),
        };
        let late = take_armed(&mut guard.late_answers, &method, &path);
        let recorded = parsed_body.or_else(|| form.as_ref().map(multipart::Form::to_json));
        guard.requests.push(RecordedRequest { method, path, body: recorded, status });
        (response, late)
    };
    if let Some(delay) = late {
        actix_web::rt::time::sleep(delay).await;
    }
    response
}

/// The value of the first armed entry `(method, part of the path, value, how many more)` matching the
/// request, using one of its times up.
fn take_armed<T: Copy>(armed: &mut [(String, String, T, u32)], method: &str, path: &str) -> Option<T> {
    let (_, _, value, left) =
        armed.iter_mut().find(|(m, part, _, left)| m == method && path.contains(part.as_str()) && *left > 0)?;
    *left -= 1;
    Some(*value)
}

/// Whether an armed entry would match the request (without using it up).
fn is_armed<T>(armed: &[(String, String, T, u32)], method: &str, path: &str) -> bool {
    armed.iter().any(|(m, part, _, left)| m == method && path.contains(part.as_str()) && *left > 0)
}

/// Rack::Attack's `req/ip` throttle (`config/initializers/rack_attack.rb`): fixed windows of one minute
/// (the period bucket is `now / period`), counted per client IP before Rails sees the request. Loopback is
/// not exempt here, unlike real Chatwoot (see [`FakeChatwoot::set_rate_limit`]).
fn throttle(state: &mut State, req: &HttpRequest) -> bool {
    let Some(limit) = state.rate_limit else { return false };
    let Some(ip) = req.peer_addr().map(|a| a.ip()) else { return false };
    let bucket = chrono::Utc::now().timestamp().div_euclid(60);
    let entry = state.rate_counts.entry(ip).or_insert((bucket, 0));
    if entry.0 != bucket {
        *entry = (bucket, 0);
    }
    entry.1 = entry.1.saturating_add(1);
    entry.1 > limit
}

fn is_json_content(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn fault_page(status: u16) -> (u16, HttpResponse) {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = if status == 429 {
        // Rack::Attack's default responder.
        "Retry later\n".to_owned()
    } else {
        format!(
            "<html><head><title>{status}</title></head><body><h1>{status} {}</h1></body></html>",
            code.canonical_reason().unwrap_or("")
        )
    };
    let mut builder = HttpResponse::build(code);
    if status == 429 {
        // rack-attack 6.7 (Chatwoot's Gemfile.lock) sends no `Retry-After` unless
        // `throttled_response_retry_after_header` is set, which `config/initializers/rack_attack.rb` does not.
        builder.content_type("text/plain");
    } else {
        builder.content_type("text/html");
    }
    (status, builder.body(body))
}

fn route(state: &mut State, call: &Call<'_>) -> (u16, HttpResponse) {
    let (req, method, path) = (call.http, call.method, call.path);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["api"]) => reply(
            200,
            json!({"version": state.version, "timestamp": "2026-11-21 10:00:00", "queue_services": "ok", "data_services": "ok"}),
        ),
        ("GET", ["health"]) => reply(200, json!({"status": "woot"})),
        ("GET", ["rails", "active_storage", "blobs" | "representations", "redirect", signed, ..]) => {
            messages::blob_redirect(state, signed)
        }
        ("GET", ["rails", "active_storage", "disk", key, ..]) => messages::blob_download(state, key),
        (
            _,
            ["public", "api", "v1", "inboxes", identifier, "contacts", source_id, "conversations", display_id, action],
        ) => conversations::public_route(state, call, identifier, source_id, display_id, action),
        (_, ["api", "v1", "profile"]) => with_user(state, req, |state, token, user| {
            if method != "GET" {
                return no_route();
            }
            if user.bot {
                return error(401, "Access to this endpoint is not authorized for bots");
            }
            reply(200, profile_json(state, token, user))
        }),
        (_, ["api", "v1", "accounts", account, rest @ ..]) => {
            let Ok(account_id) = account.parse::<i64>() else { return not_found() };
            with_user(state, req, |state, _token, user| {
                // `ensure_current_account_helper.rb`: `Account.find` (404), then `account.active?`, then membership.
                let Some(account) = state.accounts.get(&account_id) else { return not_found() };
                if account.suspended {
                    return error(401, "Account is suspended");
                }
                let Some(role) = user.memberships.get(&account_id).copied() else {
                    return error(401, "You are not authorized to access this account");
                };
                account_route(state, call, rest, account_id, role, &user)
            })
        }
        _ => no_route(),
    }
}

/// The access token as `access_token_auth_helper.rb` reads it: `request.headers[:api_access_token] ||
/// request.headers[:HTTP_API_ACCESS_TOKEN]`; Rack maps both `api_access_token` and `Api-Access-Token` to
/// `HTTP_API_ACCESS_TOKEN`. Behind a proxy that drops underscored names only the dash form arrives.
fn access_token(state: &State, req: &HttpRequest) -> Option<String> {
    let underscored = (!state.proxy_drops_underscores).then(|| req.headers().get("api_access_token")).flatten();
    underscored.or_else(|| req.headers().get("api-access-token")).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Authenticates like Chatwoot: no header → devise's 401, unknown token → `Invalid Access Token`.
fn with_user(
    state: &mut State,
    req: &HttpRequest,
    f: impl FnOnce(&mut State, &str, User) -> (u16, HttpResponse),
) -> (u16, HttpResponse) {
    let Some(token) = access_token(state, req) else {
        return reply(401, json!({"errors": ["You need to sign in or sign up before continuing."]}));
    };
    match state.users.get(&token).cloned() {
        Some(user) => f(state, &token, user),
        None => error(401, "Invalid Access Token"),
    }
}

fn profile_json(state: &State, token: &str, user: User) -> Value {
    let accounts: Vec<Value> = user
        .memberships
        .iter()
        .map(|(id, role)| {
            let account = state.accounts.get(id);
            json!({
                "id": id, "name": account.map(|a| a.name.clone()).unwrap_or_default(),
                "status": if account.is_some_and(|a| a.suspended) { "suspended" } else { "active" },
                "active_at": null, "role": role.as_str(), "permissions": [role.as_str()],
                "availability": "online", "availability_status": "online", "auto_offline": true
            })
        })
        .collect();
    let first = user.memberships.iter().next();
    json!({
        "id": user.id, "name": user.name, "email": format!("user{}@example.com", user.id),
        "access_token": token, "account_id": first.map(|(id, _)| *id),
        "role": first.map(|(_, role)| role.as_str()), "available_name": user.name, "display_name": null,
        "avatar_url": "", "confirmed": true, "pubsub_token": "pubsub", "uid": format!("user{}@example.com", user.id),
        "type": "User", "accounts": accounts
    })
}

fn account_route(
    state: &mut State,
    call: &Call<'_>,
    rest: &[&str],
    account_id: i64,
    role: Role,
    user: &User,
) -> (u16, HttpResponse) {
    let (method, path, body) = (call.method, call.path, call.json);
    let admin = role == Role::Administrator;
    match (method, rest) {
        ("GET", ["inboxes"]) => {
            // `inboxes_controller#index` lists `policy_scope(Inbox)`: every inbox for admins, the inboxes an
            // agent is a member of otherwise (`InboxPolicy::Scope`).
            let payload: Vec<Value> = state
                .inboxes
                .values()
                .filter(|i| i.account_id == account_id)
                .filter(|i| admin || state.inbox_members.contains(&(i.id, user.id)))
                .map(|i| inbox_json(state, i, admin))
                .collect();
            reply(200, json!({ "payload": payload }))
        }
        ("POST", ["inboxes", id, "reset_secret"]) if state.signing_supported() => {
            // PR #13892 `inboxes_controller.rb#reset_secret`: admin only, `head :not_found` unless an API
            // inbox, then `channel.reset_secret!` and the inbox JSON (taken as the `show` partial).
            let Ok(id) = id.parse::<i64>() else { return not_found() };
            if state.inboxes.get(&id).is_none_or(|i| i.account_id != account_id) {
                return not_found();
            }
            if !admin {
                return error(401, "You are not authorized to do this action");
            }
            reset_secret(state, id);
            state.inboxes.get(&id).map_or_else(not_found, |i| reply(200, inbox_json(state, i, true)))
        }
        ("POST", ["inboxes"]) => {
            if user.bot {
                return error(401, "Access to this endpoint is not authorized for bots");
            }
            if !admin {
                return error(401, "You are not authorized to do this action");
            }
            create_inbox(state, path, account_id, body)
        }
        (_, ["inboxes", id]) => {
            let Ok(id) = id.parse::<i64>() else { return not_found() };
            let exists = state.inboxes.get(&id).is_some_and(|i| i.account_id == account_id);
            if !exists {
                return not_found();
            }
            // `InboxPolicy#show?` lets members see their inbox; changes stay with administrators.
            let member = state.inbox_members.contains(&(id, user.id));
            if method == "GET" && !admin && member {
                return state.inboxes.get(&id).map_or_else(not_found, |i| reply(200, inbox_json(state, i, false)));
            }
            if !admin {
                return error(401, "You are not authorized to do this action");
            }
            match method {
                "GET" => state.inboxes.get(&id).map_or_else(not_found, |i| reply(200, inbox_json(state, i, true))),
                "PATCH" | "PUT" => update_inbox(state, path, id, body),
                "DELETE" => {
                    // `DeleteObjectJob` destroys it with its dependents, shortly after this answer.
                    contacts::destroy_inbox(state, id);
                    reply(200, json!({"message": "Your inbox deletion request will be processed in some time."}))
                }
                _ => no_route(),
            }
        }
        ("POST", ["actions", "contact_merge"]) => {
            // `api/base_controller.rb` runs `validate_bot_access_token!` (not in `BOT_ACCESSIBLE_ENDPOINTS`);
            // `contact_merges_controller.rb` has no policy, so agents merge as administrators do.
            if user.bot {
                return error(401, "Access to this endpoint is not authorized for bots");
            }
            contacts::merge(state, call, account_id)
        }
        (_, ["contacts", ..] | ["contact_inboxes", ..] | ["conversations", ..]) => {
            // Kept simple: administrators see every inbox; agents (inbox membership is not modelled) and
            // bots get Pundit's refusal.
            if !admin || user.bot {
                return error(401, "You are not authorized to do this action");
            }
            let actor = Actor { id: user.id, name: user.name.clone(), email: format!("user{}@example.com", user.id) };
            match rest.first() {
                Some(&"conversations") => conversations::route(state, call, &rest[1..], account_id, &actor),
                _ => contacts::route(state, call, rest, account_id),
            }
        }
        _ => no_route(),
    }
}

/// Top-level inbox attributes Chatwoot permits (`inbox_attributes`).
const INBOX_ATTRIBUTES: &[&str] = &[
    "name",
    "avatar",
    "greeting_enabled",
    "greeting_message",
    "enable_email_collect",
    "csat_survey_enabled",
    "enable_auto_assignment",
    "working_hours_enabled",
    "out_of_office_message",
    "timezone",
    "allow_messages_after_resolved",
    "lock_to_single_conversation",
    "portal_id",
    "sender_name_type",
    "business_name",
    "csat_config",
    "auto_assignment_config",
    "channel",
];
/// Channel attributes an API channel keeps (`EDITABLE_ATTRS`); everything else is dropped silently.
const API_CHANNEL_ATTRIBUTES: &[&str] = &["type", "webhook_url", "hmac_mandatory", "additional_attributes"];

fn check_inbox_body(state: &mut State, path: &str, body: Option<&Value>) -> Option<Map<String, Value>> {
    let Some(Value::Object(fields)) = body else {
        state.violations.push(format!("{path}: inbox body must be a JSON object"));
        return None;
    };
    for key in fields.keys().filter(|k| !INBOX_ATTRIBUTES.contains(&k.as_str())) {
        state.violations.push(format!("{path}: `{key}` is not an inbox attribute Chatwoot permits (dropped silently)"));
    }
    for bool_key in [
        "greeting_enabled",
        "enable_auto_assignment",
        "enable_email_collect",
        "csat_survey_enabled",
        "working_hours_enabled",
    ] {
        if fields.get(bool_key).is_some_and(|v| !v.is_boolean() && !v.is_null()) {
            state.violations.push(format!("{path}: `{bool_key}` must be a boolean"));
        }
    }
    if let Some(channel) = fields.get("channel") {
        match channel {
            Value::Object(channel) => {
                for key in channel.keys().filter(|k| !API_CHANNEL_ATTRIBUTES.contains(&k.as_str())) {
                    state
                        .violations
                        .push(format!("{path}: channel.{key} is not kept for API inboxes (use webhook_url)"));
                }
                if channel.get("webhook_url").is_some_and(|u| u.as_str().is_none_or(|u| u.len() > 2048)) {
                    state
                        .violations
                        .push(format!("{path}: channel.webhook_url must be a string of at most 2048 characters"));
                }
            }
            _ => state.violations.push(format!("{path}: `channel` must be an object")),
        }
    }
    Some(fields.clone())
}

fn create_inbox(state: &mut State, path: &str, account_id: i64, body: Option<&Value>) -> (u16, HttpResponse) {
    let Some(fields) = check_inbox_body(state, path, body) else {
        return error(422, "param is missing or the value is empty: channel");
    };
    let Some(channel) = fields.get("channel").and_then(Value::as_object) else {
        state.violations.push(format!("{path}: inbox create needs `channel`"));
        return error(422, "param is missing or the value is empty: channel");
    };
    if channel.get("type").and_then(Value::as_str) != Some("api") {
        state.violations.push(format!("{path}: channel.type must be \"api\" for the bridge"));
        return error(422, "Validation failed: Channel can't be blank");
    }
    let name = fields.get("name").and_then(Value::as_str).unwrap_or_default().trim().to_owned();
    if name.is_empty() {
        return reply(422, json!({"message": "Name can't be blank", "attributes": ["name"]}));
    }
    let limit = state.accounts.get(&account_id).and_then(|a| a.inbox_limit);
    let count = state.inboxes.values().filter(|i| i.account_id == account_id).count();
    if limit.is_some_and(|limit| count >= limit) {
        return error(402, "Account limit exceeded. Upgrade to a higher plan");
    }
    let id = state.next_id();
    let channel_id = state.next_id();
    let inbox = FakeInbox {
        id,
        account_id,
        channel_id,
        name,
        webhook_url: channel.get("webhook_url").and_then(Value::as_str).unwrap_or_default().to_owned(),
        identifier: format!("ident{id}xyz"),
        secret: format!("whsec{id}abcdef"),
        hmac_token: format!("hmac{id}tok"),
    };
    if fields.get("lock_to_single_conversation").and_then(Value::as_bool) == Some(true) {
        state.locked_inboxes.insert(id);
    }
    let body = inbox_json(state, &inbox, true);
    state.inboxes.insert(id, inbox);
    reply(200, body)
}

fn update_inbox(state: &mut State, path: &str, id: i64, body: Option<&Value>) -> (u16, HttpResponse) {
    let Some(fields) = check_inbox_body(state, path, body) else {
        return error(422, "param is missing or the value is empty: inbox");
    };
    let Some(inbox) = state.inboxes.get_mut(&id) else { return not_found() };
    if let Some(name) = fields.get("name").and_then(Value::as_str) {
        if name.trim().is_empty() {
            return reply(422, json!({"message": "Name can't be blank", "attributes": ["name"]}));
        }
        inbox.name = name.trim().to_owned();
    }
    if let Some(url) = fields.get("channel").and_then(|c| c.get("webhook_url")).and_then(Value::as_str) {
        inbox.webhook_url = url.to_owned();
    }
    let inbox = inbox.clone();
    if let Some(lock) = fields.get("lock_to_single_conversation").and_then(Value::as_bool) {
        if lock {
            state.locked_inboxes.insert(id);
        } else {
            state.locked_inboxes.remove(&id);
        }
    }
    reply(200, inbox_json(state, &inbox, true))
}

/// `Channel::Api#reset_secret!`: a new random secret.
fn reset_secret(state: &mut State, inbox_id: i64) -> Option<String> {
    let inbox = state.inboxes.get_mut(&inbox_id)?;
    inbox.secret = random_token(24);
    Some(inbox.secret.clone())
}

/// `_inbox.json.jbuilder` for an API inbox.
fn inbox_json(state: &State, inbox: &FakeInbox, admin: bool) -> Value {
    let signing = state.signing_supported();
    let lock = state.locked_inboxes.contains(&inbox.id);
    let mut value = json!({
        "id": inbox.id, "channel_id": inbox.channel_id, "name": inbox.name, "channel_type": "Channel::Api",
        "avatar_url": "", "greeting_enabled": false, "greeting_message": null, "working_hours_enabled": false,
        "enable_email_collect": true, "csat_survey_enabled": false, "csat_config": {}, "enable_auto_assignment": true,
        "auto_assignment_config": {}, "out_of_office_message": null, "working_hours": [], "timezone": "UTC",
        "callback_webhook_url": null, "allow_messages_after_resolved": true, "lock_to_single_conversation": lock,
        "sender_name_type": "friendly", "business_name": null, "allowed_domains": null, "widget_color": null,
        "website_url": null, "hmac_mandatory": false, "webhook_url": inbox.webhook_url,
        "inbox_identifier": inbox.identifier, "additional_attributes": {}, "provider": null
    });
    if let (Some(map), true) = (value.as_object_mut(), admin) {
        map.insert("hmac_token".into(), json!(inbox.hmac_token));
        if signing {
            map.insert("secret".into(), json!(inbox.secret));
        }
    }
    value
}
