//! A RyzeAPI simulator: the side of RyzeAPI the bridge talks to (contract §3 and §4), plus a control API
//! and a one-page UI for trying the bridge by hand.
//!
//! - `GET /ws/chatwoot/{instance}` — the event stream, one actor ([`Conn`]) per socket. The upgrade needs
//!   `Authorization: Bearer <bridge token>` (else `401`, no upgrade); [`RyzeApiSim::refuse_upgrades`]
//!   answers every upgrade with a fixed status instead (a RyzeAPI without the route, or refusing).
//! - Events go out with [`RyzeApiSim::send_event`]. With the acknowledgement extension on (the default)
//!   each envelope gets a top-level `"eventId":"evt-<n>"` and stays *unacknowledged* until the client
//!   answers `{"type":"ack","eventId":"…"}`; every new connection first receives the still-unacknowledged
//!   events of its instance, in their original order. With the extension off, envelopes carry no
//!   `eventId`, nothing is kept, and events sent while nobody is connected are lost (RyzeAPI's public WS).
//! - Faults: [`RyzeApiSim::drop_connections`] cuts sockets without a close frame; [`RyzeApiSim::set_silent`]
//!   makes the server write nothing at all (no Pong, no Ping, no events) so a client's heartbeat timeout
//!   can be tested.
//! - The REST calls of §4 (`token: <instanceToken>`), each recorded as a [`RecordedCall`] whatever its
//!   answer. Bodies are checked against the contract's shapes (400 with a clear message otherwise). A
//!   successful text or media send answers a `3EB0…` message id and then emits WhatsApp's echo over the
//!   WS: an outgoing `message.exchange` whose `message.source` is the request's `source`.
//! - `GET /api/chat/contacts/{instance}?number=` answers a person's phone `jid` and `lid` from the people
//!   added with [`RyzeApiSim::add_known_contact`] (`found: false` otherwise); [`RyzeApiSim::set_contact_lookup`]
//!   makes it answer nothing known, slowly, or 404 (a RyzeAPI without the route).
//! - Control API under `/sim/…` (no auth, loopback only) and the UI at `GET /`, for the `ryzeapi-sim` binary.
//!
//! Envelopes are built with [`text_message`], [`catalog_text_message`], [`outgoing_text_message`],
//! [`message`], [`status_event`] and [`instance_state`]. Their `instanceData.baseUrl`/`token` are left
//! empty; [`RyzeApiSim::send_event`] fills empty ones with the simulator's URL and the instance's token.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, Addr, AsyncContext, Handler, StreamHandler};
use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use actix_web_actors::ws;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Largest WebSocket frame the server accepts (events and media may be big).
const MAX_FRAME: usize = 64 * 1024 * 1024;
/// How often the server pings each socket unless changed with [`RyzeApiSim::set_server_ping_interval`].
pub const DEFAULT_SERVER_PING: Duration = Duration::from_secs(20);
/// The simulated WhatsApp number of every instance (the sender of outgoing echoes).
pub const OWN_JID: &str = "5511900000000@s.whatsapp.net";

/// One REST call as received, with the status it was answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedCall {
    pub method: String,
    /// Path, with the query string when there is one.
    pub path: String,
    /// The JSON body; `Null` when empty, a `String` with the raw text when it is not JSON.
    pub body: Value,
    pub status: u16,
}

#[derive(Debug, Clone)]
struct Pending {
    id: String,
    frame: String,
}

#[derive(Debug, Clone)]
struct Media {
    base64: String,
    mimetype: String,
}

#[derive(Default)]
struct Instance {
    /// `Some` once added with [`RyzeApiSim::add_instance`]; REST calls need it.
    token: Option<String>,
    conns: BTreeMap<u64, Addr<Conn>>,
    upgrade_attempts: usize,
    total_connects: usize,
    frames_delivered: usize,
    received_pings: usize,
    received_pongs: usize,
    unacked: Vec<Pending>,
    acked: Vec<String>,
    unexpected_frames: Vec<String>,
    calls: Vec<RecordedCall>,
    media: HashMap<String, Media>,
    /// Message ids RyzeAPI would have in its database (sent through REST or emitted as events).
    known_messages: HashSet<String>,
    /// Ids answered to successful sends, in order.
    sent_ids: Vec<String>,
}

impl Instance {
    fn open_connections(&self) -> usize {
        self.conns.values().filter(|addr| addr.connected()).count()
    }
}

struct State {
    url: String,
    bridge_token: String,
    instances: BTreeMap<String, Instance>,
    next_event: u64,
    next_conn: u64,
    ack_extension: bool,
    refuse: Option<u16>,
    silent: bool,
    /// Sends still to fail, and with which status.
    fail_sends: Option<(usize, u16)>,
    echo_delay: Option<Duration>,
    /// Sends still to carry out (and echo) at once but answer only after the delay.
    late_answers: Option<(usize, Duration)>,
    server_ping: Option<Duration>,
    /// People the contact look-up knows, by their phone JID and by their LID.
    known_people: HashMap<String, KnownPerson>,
    contact_lookup: ContactLookup,
}

impl State {
    fn instance(&mut self, name: &str) -> &mut Instance {
        self.instances.entry(name.to_owned()).or_default()
    }
}

/// A running RyzeAPI simulator. Stops when dropped.
pub struct RyzeApiSim {
    url: String,
    state: Arc<Mutex<State>>,
    server: ServerHandle,
}

impl RyzeApiSim {
    /// Starts on a free loopback port. `bridge_token` is what the WS upgrade must carry as Bearer token.
    /// Must be called inside an actix system.
    pub fn start(bridge_token: &str) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0", bridge_token)
    }

    /// Starts on `addr`. Must be called inside an actix system.
    pub fn start_on(addr: &str, bridge_token: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State {
            url: url.clone(),
            bridge_token: bridge_token.to_owned(),
            instances: BTreeMap::new(),
            next_event: 0,
            next_conn: 0,
            ack_extension: true,
            refuse: None,
            silent: false,
            fail_sends: None,
            echo_delay: Some(Duration::ZERO),
            late_answers: None,
            server_ping: Some(DEFAULT_SERVER_PING),
            known_people: HashMap::new(),
            contact_lookup: ContactLookup::default(),
        }));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(MAX_FRAME))
                .route("/", web::get().to(ui))
                .route("/ws/chatwoot/{instance}", web::get().to(upgrade))
                .route("/sim/instances", web::get().to(sim_instances))
                .route("/sim/refuse", web::post().to(sim_refuse))
                .route("/sim/silent", web::post().to(sim_silent))
                .route("/sim/{instance}/messages", web::post().to(sim_message))
                .route("/sim/{instance}/events", web::post().to(sim_event))
                .route("/sim/{instance}/drop", web::post().to(sim_drop))
                .route("/sim/{instance}/sent", web::get().to(sim_sent))
                .route("/sim/{instance}/state", web::get().to(sim_state))
                .default_service(web::to(api))
        })
        .workers(1)
        // Zero: close the socket as soon as the severed response ends (the default waits up to 1 s).
        .client_disconnect_timeout(Duration::ZERO)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Ok(Self { url, state, server: handle })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (what the bridge gets as `ryzeapiUrl`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `ws://…/ws/chatwoot/<instance>`.
    pub fn ws_url(&self, instance: &str) -> String {
        format!("{}/ws/chatwoot/{instance}", self.url.replacen("http://", "ws://", 1))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn read<T: Default>(&self, instance: &str, f: impl FnOnce(&Instance) -> T) -> T {
        self.state().instances.get(instance).map(f).unwrap_or_default()
    }

    /// Registers an instance and its token (the `token` header of REST calls). Again: changes the token.
    pub fn add_instance(&self, name: &str, instance_token: &str) {
        self.state().instance(name).token = Some(instance_token.to_owned());
    }

    /// Names of the registered instances.
    pub fn instances(&self) -> Vec<String> {
        self.state().instances.iter().filter(|(_, i)| i.token.is_some()).map(|(name, _)| name.clone()).collect()
    }

    /// Sends an event envelope to every open socket of `instance`. With the acknowledgement extension on,
    /// adds `"eventId"` (returned) and keeps the event until it is acknowledged.
    pub fn send_event(&self, instance: &str, envelope: Value) -> Option<String> {
        emit(&self.state, instance, envelope)
    }

    /// WhatsApp ids the simulator answered to successful text and media sends, in order.
    pub fn sent_message_ids(&self, instance: &str) -> Vec<String> {
        self.read(instance, |i| i.sent_ids.clone())
    }

    /// Turns the acknowledgement extension on (the default) or off. Events already pending stay pending.
    pub fn set_ack_extension(&self, on: bool) {
        self.state().ack_extension = on;
    }

    /// Event ids acknowledged by a client, in the order of the acks.
    pub fn acked(&self, instance: &str) -> Vec<String> {
        self.read(instance, |i| i.acked.clone())
    }

    /// Event ids not acknowledged yet, in the order they were sent.
    pub fn unacked(&self, instance: &str) -> Vec<String> {
        self.read(instance, |i| i.unacked.iter().map(|p| p.id.clone()).collect())
    }

    /// Sockets open now.
    pub fn connections(&self, instance: &str) -> usize {
        self.read(instance, Instance::open_connections)
    }

    /// Upgrades accepted so far.
    pub fn total_connects(&self, instance: &str) -> usize {
        self.read(instance, |i| i.total_connects)
    }

    /// Requests to the WS route, refused ones included.
    pub fn upgrade_attempts(&self, instance: &str) -> usize {
        self.read(instance, |i| i.upgrade_attempts)
    }

    /// Event frames written to sockets (re-sent ones included).
    pub fn frames_delivered(&self, instance: &str) -> usize {
        self.read(instance, |i| i.frames_delivered)
    }

    /// Pings received from clients.
    pub fn received_pings(&self, instance: &str) -> usize {
        self.read(instance, |i| i.received_pings)
    }

    /// Pongs received from clients (answers to the server's pings).
    pub fn received_pongs(&self, instance: &str) -> usize {
        self.read(instance, |i| i.received_pongs)
    }

    /// Client frames that were not an ack of an event sent to this instance (binary frames, other JSON,
    /// acks of unknown ids). Empty when the client behaves.
    pub fn unexpected_frames(&self, instance: &str) -> Vec<String> {
        self.read(instance, |i| i.unexpected_frames.clone())
    }

    /// Closes the instance's sockets abruptly: no close frame, the server just stops. Returns how many.
    pub fn drop_connections(&self, instance: &str) -> usize {
        let conns = std::mem::take(&mut self.state().instance(instance).conns);
        for addr in conns.values() {
            addr.do_send(Sever);
        }
        conns.len()
    }

    /// While silent the server writes nothing: no Pong, no Ping, no events (events sent meanwhile are
    /// not written; acknowledged-extension events stay pending and are re-sent on the next connection).
    pub fn set_silent(&self, silent: bool) {
        self.state().silent = silent;
    }

    /// How often the server pings each socket (`None`: never). Applies to connections opened afterwards.
    pub fn set_server_ping_interval(&self, every: Option<Duration>) {
        self.state().server_ping = every;
    }

    /// `Some(status)`: answer every upgrade with that status (404: RyzeAPI without the route; 403, 503…).
    pub fn refuse_upgrades(&self, status: Option<u16>) {
        self.state().refuse = status;
    }

    /// The REST calls made for `instance`, in order.
    pub fn requests(&self, instance: &str) -> Vec<RecordedCall> {
        self.read(instance, |i| i.calls.clone())
    }

    /// The next `count` valid text/media sends answer `status` (503 not connected, 429 rate limit with
    /// `X-RateLimit-Reset`, 400 number not on WhatsApp, 500, or any other status).
    pub fn fail_next_sends(&self, count: usize, status: u16) {
        self.state().fail_sends = (count > 0).then_some((count, status));
    }

    /// The next `count` successful text/media sends go out (and are echoed) at once, but their answer
    /// comes only after `delay`: a client with a shorter timeout cannot know whether they were sent.
    pub fn answer_next_sends_late(&self, count: usize, delay: Duration) {
        self.state().late_answers = (count > 0).then_some((count, delay));
    }

    /// Delay between a send's answer and its echo over the WS (default zero); `None`: no echo at all.
    pub fn set_echo_delay(&self, delay: Option<Duration>) {
        self.state().echo_delay = delay;
    }

    /// A person the contact look-up knows under both forms (phone JID and LID).
    pub fn add_known_contact(&self, jid: &str, lid: &str, name: &str) {
        let person = KnownPerson { jid: jid.to_owned(), lid: lid.to_owned(), name: name.to_owned() };
        let mut state = self.state();
        state.known_people.insert(jid.to_owned(), person.clone());
        state.known_people.insert(lid.to_owned(), person);
    }

    /// How the contact look-up answers from now on.
    pub fn set_contact_lookup(&self, lookup: ContactLookup) {
        self.state().contact_lookup = lookup;
    }

    /// Stores media for `GET /api/chat/base64/{instance}?messageId=`.
    pub fn put_media(&self, instance: &str, message_id: &str, base64: &str, mimetype: &str) {
        let media = Media { base64: base64.to_owned(), mimetype: mimetype.to_owned() };
        self.state().instance(instance).media.insert(message_id.to_owned(), media);
    }

    /// Waits until `instance` has exactly `count` open sockets; false if that did not happen `within`.
    pub async fn wait_for_connections(&self, instance: &str, count: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.connections(instance) == count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server (the port then refuses connections).
    pub async fn stop(&self) {
        self.server.stop(false).await;
    }
}

impl Drop for RyzeApiSim {
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

/// Sends `envelope` to the instance's sockets (see [`RyzeApiSim::send_event`]).
fn emit(state: &Mutex<State>, instance: &str, mut envelope: Value) -> Option<String> {
    let mut guard = lock(state);
    let state = &mut *guard;
    let token = state.instances.get(instance).and_then(|i| i.token.clone()).unwrap_or_default();
    fill_instance_data(&mut envelope, &state.url, &token);
    let event_id = match envelope.as_object_mut() {
        Some(object) if state.ack_extension => {
            state.next_event += 1;
            let id = format!("evt-{}", state.next_event);
            object.insert("eventId".into(), Value::String(id.clone()));
            Some(id)
        }
        _ => None,
    };
    let frame = envelope.to_string();
    let inst = state.instance(instance);
    if envelope["event"] == "message.exchange" {
        for id in [&envelope["data"]["id"], &envelope["data"]["message"]["id"]] {
            if let Some(id) = id.as_str() {
                inst.known_messages.insert(id.to_owned());
            }
        }
    }
    if let Some(id) = &event_id {
        inst.unacked.push(Pending { id: id.clone(), frame: frame.clone() });
    }
    inst.conns.retain(|_, addr| addr.connected());
    for addr in inst.conns.values() {
        addr.do_send(Deliver(frame.clone()));
    }
    event_id
}

/// Fills an empty `instanceData.baseUrl` / `instanceData.token`, as the real RyzeAPI always sends them.
fn fill_instance_data(envelope: &mut Value, url: &str, token: &str) {
    let Some(data) = envelope.get_mut("instanceData").and_then(Value::as_object_mut) else { return };
    for (key, value) in [("baseUrl", url), ("token", token)] {
        if data.get(key).and_then(Value::as_str).is_none_or(str::is_empty) {
            data.insert(key.into(), Value::String(value.to_owned()));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// WebSocket

/// One bridge connection on `/ws/chatwoot/{instance}`.
struct Conn {
    id: u64,
    instance: String,
    state: Arc<Mutex<State>>,
    ping_every: Option<Duration>,
}

/// An event frame to write.
struct Deliver(String);

impl actix::Message for Deliver {
    type Result = ();
}

/// Stop without a close frame.
struct Sever;

impl actix::Message for Sever {
    type Result = ();
}

impl Conn {
    fn silent(&self) -> bool {
        lock(&self.state).silent
    }
}

impl Actor for Conn {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(every) = self.ping_every {
            ctx.run_interval(every, |conn, ctx| {
                if !conn.silent() {
                    ctx.ping(b"ryzeapi-sim");
                }
            });
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let Some(instance) = lock(&self.state).instances.get_mut(&self.instance) {
            instance.conns.remove(&self.id);
        }
    }
}

impl Handler<Deliver> for Conn {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        {
            let mut state = lock(&self.state);
            if state.silent {
                return;
            }
            state.instance(&self.instance).frames_delivered += 1;
        }
        ctx.text(msg.0);
    }
}

impl Handler<Sever> for Conn {
    type Result = ();

    fn handle(&mut self, _msg: Sever, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Conn {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let Ok(msg) = item else {
            ctx.stop();
            return;
        };
        let silent = {
            let mut guard = lock(&self.state);
            let silent = guard.silent;
            let inst = guard.instance(&self.instance);
            match &msg {
                ws::Message::Ping(_) => inst.received_pings += 1,
                ws::Message::Pong(_) => inst.received_pongs += 1,
                ws::Message::Text(text) => client_text(inst, text),
                ws::Message::Binary(bytes) => {
                    inst.unexpected_frames.push(format!("binary frame of {} bytes", bytes.len()));
                }
                _ => {}
            }
            silent
        };
        match msg {
            ws::Message::Ping(payload) if !silent => ctx.pong(&payload),
            ws::Message::Close(reason) => {
                if !silent {
                    ctx.close(reason);
                }
                ctx.stop();
            }
            _ => {}
        }
    }
}

/// A text frame from the client: an ack, or something unexpected.
fn client_text(inst: &mut Instance, text: &str) {
    let ack = serde_json::from_str::<Value>(text)
        .ok()
        .filter(|v| v["type"] == "ack")
        .and_then(|v| v["eventId"].as_str().map(str::to_owned));
    match ack {
        Some(id) => {
            if let Some(at) = inst.unacked.iter().position(|p| p.id == id) {
                let pending = inst.unacked.remove(at);
                inst.acked.push(pending.id);
            } else if !inst.acked.contains(&id) {
                inst.unexpected_frames.push(text.to_owned());
            }
        }
        None => inst.unexpected_frames.push(text.to_owned()),
    }
}

async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    data: web::Data<Mutex<State>>,
) -> HttpResponse {
    let instance = path.into_inner();
    let (id, ping_every) = {
        let mut guard = lock(&data);
        let state = &mut *guard;
        state.instance(&instance).upgrade_attempts += 1;
        if let Some(status) = state.refuse {
            return refusal(status);
        }
        if !bearer_matches(&req, &state.bridge_token) {
            return failure(401, "Invalid token").1;
        }
        state.next_conn += 1;
        (state.next_conn, state.server_ping)
    };
    let conn = Conn { id, instance: instance.clone(), state: data.clone().into_inner(), ping_every };
    match ws::WsResponseBuilder::new(conn, &req, payload).frame_size(MAX_FRAME).start_with_addr() {
        Ok((addr, response)) => {
            // Registered under the lock together with the replay, so that events sent from now on are
            // queued behind the re-sent ones.
            let mut state = lock(&data);
            let inst = state.instance(&instance);
            inst.total_connects += 1;
            for pending in &inst.unacked {
                addr.do_send(Deliver(pending.frame.clone()));
            }
            inst.conns.insert(id, addr);
            response
        }
        Err(e) => HttpResponse::from_error(e),
    }
}

fn bearer_matches(req: &HttpRequest, token: &str) -> bool {
    let Some(value) = req.headers().get("authorization").and_then(|v| v.to_str().ok()) else { return false };
    match value.split_once(' ') {
        Some((scheme, given)) => scheme.eq_ignore_ascii_case("bearer") && given.trim() == token,
        None => false,
    }
}

fn refusal(status: u16) -> HttpResponse {
    let text = match status {
        401 => "Invalid token",
        404 => "Not Found",
        403 => "Forbidden",
        503 => "Service Unavailable",
        other => StatusCode::from_u16(other).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error"),
    };
    failure(status, text).1
}

// ---------------------------------------------------------------------------------------------------
// REST (§4)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Text,
    Media,
    Delete,
    MarkRead,
    Presence,
    Base64,
    Contacts,
}

/// How the contact look-up (`GET /api/chat/contacts/{instance}?number=`) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContactLookup {
    /// From the contacts added with [`RyzeApiSim::add_known_contact`] (`found: false` for others).
    #[default]
    Answer,
    /// Every number is unknown to WhatsApp's address book.
    NotFound,
    /// As `Answer`, after this delay.
    Slow(Duration),
    /// An older RyzeAPI without the route: 404.
    Missing,
}

/// A person WhatsApp knows under both forms.
#[derive(Debug, Clone)]
struct KnownPerson {
    jid: String,
    lid: String,
    name: String,
}

/// An answer, and the echo to emit after it.
struct Outcome {
    status: u16,
    response: HttpResponse,
    echo: Option<Value>,
}

impl From<(u16, HttpResponse)> for Outcome {
    fn from((status, response): (u16, HttpResponse)) -> Self {
        Self { status, response, echo: None }
    }
}

/// RyzeAPI's JSON answer.
fn reply(status: u16, body: Value) -> (u16, HttpResponse) {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, HttpResponse::build(code).json(body))
}

/// RyzeAPI's error envelope (`§2.3`).
fn failure(status: u16, message: &str) -> (u16, HttpResponse) {
    reply(status, json!({"success": false, "error": {"message": message}}))
}

async fn api(req: HttpRequest, body: web::Bytes, data: web::Data<Mutex<State>>) -> HttpResponse {
    let method = req.method().as_str().to_owned();
    let path = req.path().to_owned();
    let recorded_path = match req.query_string() {
        "" => path.clone(),
        query => format!("{path}?{query}"),
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (route, instance) = match (method.as_str(), segments.as_slice()) {
        ("POST", ["api", "message", "text", i]) => (Some(Route::Text), *i),
        ("POST", ["api", "message", "media", i]) => (Some(Route::Media), *i),
        ("DELETE", ["api", "chat", "delete", i]) => (Some(Route::Delete), *i),
        ("POST", ["api", "chat", "markRead", i]) => (Some(Route::MarkRead), *i),
        ("POST", ["api", "chat", "presence", i]) => (Some(Route::Presence), *i),
        ("GET", ["api", "chat", "base64", i]) => (Some(Route::Base64), *i),
        ("GET", ["api", "chat", "contacts", i]) => (Some(Route::Contacts), *i),
        (_, ["api", .., i]) => (None, *i),
        _ => (None, ""),
    };
    let parsed = serde_json::from_slice::<Value>(&body).ok();
    let recorded_body = match (&parsed, body.is_empty()) {
        (_, true) => Value::Null,
        (Some(value), false) => value.clone(),
        (None, false) => Value::String(String::from_utf8_lossy(&body).into_owned()),
    };
    let Some(route) = route else {
        let mut guard = lock(&data);
        let state = &mut *guard;
        let (status, response) = failure(404, "Not Found");
        if state.instances.get(instance).is_some_and(|i| i.token.is_some()) {
            let call = RecordedCall { method, path: recorded_path, body: recorded_body, status };
            state.instance(instance).calls.push(call);
        }
        return response;
    };
    let lookup_delay = match (route, lock(&data).contact_lookup) {
        (Route::Contacts, ContactLookup::Slow(delay)) => Some(delay),
        _ => None,
    };
    // The lock is held only in this block: the late answer below waits without it.
    let (outcome, delay, late) = {
        let mut guard = lock(&data);
        let state = &mut *guard;
        let outcome = answer(state, route, instance, &req, parsed);
        let call = RecordedCall { method, path: recorded_path, body: recorded_body, status: outcome.status };
        state.instance(instance).calls.push(call);
        let late = match state.late_answers {
            Some((count, late)) if outcome.status == 200 && matches!(route, Route::Text | Route::Media) => {
                state.late_answers = (count > 1).then_some((count - 1, late));
                Some(late)
            }
            _ => None,
        };
        (outcome, state.echo_delay, late)
    };
    if let (Some(echo), Some(delay)) = (outcome.echo, delay) {
        let state = data.into_inner();
        let instance = instance.to_owned();
        actix_web::rt::spawn(async move {
            if !delay.is_zero() {
                actix_web::rt::time::sleep(delay).await;
            }
            emit(&state, &instance, echo);
        });
    }
    if let Some(late) = late {
        actix_web::rt::time::sleep(late).await;
    }
    if let Some(delay) = lookup_delay {
        actix_web::rt::time::sleep(delay).await;
    }
    outcome.response
}

/// `GET /api/chat/contacts/{instance}?number=<number|jid>`: the contact with its phone `jid` and `lid`
/// when WhatsApp's synced address book has them, `found: false` otherwise (docs: api/chat/contacts-list).
fn lookup_contact(state: &State, query: &str) -> Outcome {
    if state.contact_lookup == ContactLookup::Missing {
        return failure(404, "Not Found").into();
    }
    let Some(number) =
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "number").map(|(_, v)| v.into_owned())
    else {
        return failure(400, "number is required").into();
    };
    let key = if number.contains('@') { number.clone() } else { format!("{number}@s.whatsapp.net") };
    let known = (state.contact_lookup != ContactLookup::NotFound).then(|| state.known_people.get(&key)).flatten();
    let body = match known {
        Some(person) => json!({"success": true, "found": true,
            "contact": {"jid": person.jid, "lid": person.lid, "name": person.name, "pushName": person.name, "found": true}}),
        None => json!({"success": true, "found": false, "contact": {"jid": key, "found": false}}),
    };
    reply(200, body).into()
}

fn answer(state: &mut State, route: Route, instance: &str, req: &HttpRequest, body: Option<Value>) -> Outcome {
    let Some(token) = state.instances.get(instance).and_then(|i| i.token.clone()) else {
        return failure(404, "Instance not found").into();
    };
    if req.headers().get("token").and_then(|v| v.to_str().ok()) != Some(token.as_str()) {
        return failure(401, "Invalid token").into();
    }
    if route == Route::Base64 {
        return base64_media(state.instance(instance), req.query_string()).into();
    }
    if route == Route::Contacts {
        return lookup_contact(state, req.query_string());
    }
    let Some(Value::Object(body)) = body else {
        return failure(400, "Invalid request body").into();
    };
    let result = match route {
        Route::Text => send_text(state, instance, &body),
        Route::Media => send_media(state, instance, &body),
        Route::Delete => delete_message(state.instance(instance), instance, &body),
        Route::MarkRead => mark_read(&body),
        Route::Presence => presence(&body),
        Route::Base64 | Route::Contacts => Err("unreachable".to_owned()),
    };
    match result {
        Ok(outcome) => outcome,
        Err(message) => failure(400, &message).into(),
    }
}

type Checked<T> = Result<T, String>;

fn required_str<'a>(body: &'a Map<String, Value>, field: &str) -> Checked<&'a str> {
    match body.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(format!("{field} is required")),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

fn optional_str<'a>(body: &'a Map<String, Value>, field: &str) -> Checked<Option<&'a str>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

fn optional_bool(body: &Map<String, Value>, field: &str) -> Checked<Option<bool>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{field} must be a boolean")),
    }
}

fn optional_number(body: &Map<String, Value>, field: &str) -> Checked<Option<f64>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            n.as_f64().filter(|n| *n >= 0.0).map(Some).ok_or_else(|| format!("{field} must be >= 0"))
        }
        Some(_) => Err(format!("{field} must be a number")),
    }
}

/// `number`: digits (an optional leading `+`) or a JID.
fn required_number(body: &Map<String, Value>) -> Checked<&str> {
    let number = required_str(body, "number")?;
    let digits = number.strip_prefix('+').unwrap_or(number);
    let plain = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    let jid = number.split_once('@').is_some_and(|(user, server)| {
        !user.is_empty()
            && !user.contains(char::is_whitespace)
            && ["s.whatsapp.net", "g.us", "lid", "newsletter", "broadcast"].contains(&server)
    });
    if plain || jid { Ok(number) } else { Err(format!("invalid number: {number}")) }
}

/// The chat JID a `number` addresses.
fn chat_jid(number: &str) -> String {
    if number.contains('@') { number.to_owned() } else { format!("{}@s.whatsapp.net", number.trim_start_matches('+')) }
}

/// Applies a pending [`RyzeApiSim::fail_next_sends`].
fn take_fault(state: &mut State) -> Option<Outcome> {
    let (remaining, status) = state.fail_sends?;
    state.fail_sends = (remaining > 1).then_some((remaining - 1, status));
    let outcome = match status {
        503 => failure(503, "Instance is not connected to WhatsApp"),
        400 => failure(400, "number not on WhatsApp"),
        500 => failure(500, "Internal server error"),
        429 => {
            let reset = chrono::Utc::now().timestamp() + 1;
            let body = json!({"success": false, "error": {"message": "Rate limit exceeded. Try again later."}});
            let response = HttpResponse::TooManyRequests()
                .insert_header(("X-RateLimit-Limit", "100"))
                .insert_header(("X-RateLimit-Remaining", "0"))
                .insert_header(("X-RateLimit-Reset", reset.to_string()))
                .json(body);
            (429, response)
        }
        other => {
            let reason = StatusCode::from_u16(other).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
            failure(other, reason)
        }
    };
    Some(outcome.into())
}

fn sent(message_id: &str, extra: Value) -> HttpResponse {
    let mut data = json!({"messageId": message_id, "timestamp": now_iso(), "direction": "outgoing"});
    if let (Some(data), Value::Object(extra)) = (data.as_object_mut(), extra) {
        data.extend(extra);
    }
    reply(200, json!({"success": true, "message": "Message sent successfully", "status": "sent", "data": data})).1
}

fn reply_context(reply_to: Option<&str>) -> Value {
    reply_to.filter(|r| !r.is_empty()).map_or(Value::Null, |id| json!({"quotedMessageId": id}))
}

fn send_text(state: &mut State, instance: &str, body: &Map<String, Value>) -> Checked<Outcome> {
    let number = required_number(body)?;
    let text = required_str(body, "message")?;
    let reply_to = optional_str(body, "replyTo")?;
    let source = optional_str(body, "source")?.unwrap_or("api");
    optional_number(body, "delay")?;
    optional_bool(body, "linkPreview")?;
    if let Some(fault) = take_fault(state) {
        return Ok(fault);
    }
    let id = new_message_id();
    state.instance(instance).known_messages.insert(id.clone());
    state.instance(instance).sent_ids.push(id.clone());
    let mut content = text_body(text, source);
    content["context"] = reply_context(reply_to);
    let echo = outgoing(instance, &id, &chat_jid(number), content);
    Ok(Outcome { status: 200, response: sent(&id, json!({"messageType": "text"})), echo: Some(echo) })
}

fn send_media(state: &mut State, instance: &str, body: &Map<String, Value>) -> Checked<Outcome> {
    let number = required_number(body)?;
    let media_type = required_str(body, "mediaType")?;
    if !["image", "video", "audio", "document"].contains(&media_type) {
        return Err(format!("mediaType must be one of image, video, audio, document (got {media_type})"));
    }
    if body.get("mediaBase64").is_some_and(|v| !v.is_null()) && body.contains_key("mediaUrl") {
        return Err("send mediaUrl or mediaBase64, not both".into());
    }
    let media_url = required_str(body, "mediaUrl")?;
    let looks_like_base64 =
        media_url.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r'));
    if !(media_url.starts_with("http://")
        || media_url.starts_with("https://")
        || media_url.starts_with("data:")
        || looks_like_base64)
    {
        return Err("mediaUrl must be an http(s) URL, a data: URL or base64".into());
    }
    let mime_type = optional_str(body, "mimeType")?;
    let file_name = optional_str(body, "fileName")?.unwrap_or("");
    let caption = optional_str(body, "message")?.unwrap_or("");
    let is_voice = optional_bool(body, "isVoice")?;
    let reply_to = optional_str(body, "replyTo")?;
    let source = optional_str(body, "source")?.unwrap_or("api");
    optional_number(body, "delay")?;
    if let Some(fault) = take_fault(state) {
        return Ok(fault);
    }
    let id = new_message_id();
    state.instance(instance).known_messages.insert(id.clone());
    state.instance(instance).sent_ids.push(id.clone());
    let voice = media_type == "audio" && is_voice.unwrap_or(true);
    let kind = if voice { "ptt" } else { media_type };
    let mime = mime_type.filter(|m| !m.is_empty()).unwrap_or(match media_type {
        "image" => "image/jpeg",
        "video" => "video/mp4",
        "audio" => "audio/ogg; codecs=opus",
        _ => "application/octet-stream",
    });
    let mut content = text_body(caption, source);
    content["type"] = json!(kind);
    content["context"] = reply_context(reply_to);
    content["media"] = json!({
        "type": kind, "mimeType": mime, "fileName": file_name, "caption": caption,
        "url": format!("https://mmg.whatsapp.net/sim/{id}"), "isVoiceNote": voice
    });
    let echo = outgoing(instance, &id, &chat_jid(number), content);
    let extra = json!({"messageType": media_type, "mediaMimeType": mime});
    Ok(Outcome { status: 200, response: sent(&id, extra), echo: Some(echo) })
}

fn delete_message(inst: &mut Instance, instance: &str, body: &Map<String, Value>) -> Checked<Outcome> {
    let message_id = required_str(body, "messageId").map_err(|_| "MessageID is required".to_owned())?;
    let for_everyone = optional_bool(body, "deleteForEveryone")?.unwrap_or(false);
    if !inst.known_messages.contains(message_id) {
        return Ok(failure(404, "message not found").into());
    }
    let delete_type = if for_everyone { "revoke" } else { "delete_for_me" };
    let response = reply(
        200,
        json!({"success": true, "message": "Message deleted successfully",
               "data": {"messageId": message_id, "delete_type": delete_type}}),
    );
    // A revoke reaches WhatsApp, which reports it back like any other message.
    let echo = for_everyone.then(|| {
        let mut content = text_body("", "api");
        content["type"] = json!("message_revoke");
        content["edit"] = json!({"original_id": message_id});
        outgoing(instance, &new_message_id(), OWN_JID, content)
    });
    Ok(Outcome { status: 200, response: response.1, echo })
}

fn mark_read(body: &Map<String, Value>) -> Checked<Outcome> {
    let message_id = required_str(body, "messageId")?;
    let number = required_number(body)?;
    // RyzeAPI's mark-read takes the author's JID as `sender`, required in groups (docs: api/chat/mark-read).
    if optional_str(body, "sender")?.is_none() && number.ends_with("@g.us") {
        return Err("sender is required to mark a group message read".into());
    }
    Ok(reply(
        200,
        json!({"success": true, "message": "Message marked as read successfully",
               "message_id": message_id, "chat_jid": chat_jid(number)}),
    )
    .into())
}

fn presence(body: &Map<String, Value>) -> Checked<Outcome> {
    let number = required_number(body)?;
    let state = required_str(body, "state")?.to_ascii_lowercase();
    if !["typing", "recording", "pause", "paused"].contains(&state.as_str()) {
        return Err(format!("state must be one of typing, recording, paused (got {state})"));
    }
    let duration = optional_number(body, "duration")?.unwrap_or(0.0).min(60.0);
    Ok(reply(
        200,
        json!({"success": true, "message": "Presence sent successfully",
               "data": {"number": number, "state": state, "duration": duration}}),
    )
    .into())
}

fn base64_media(inst: &Instance, query: &str) -> (u16, HttpResponse) {
    let message_id = url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "messageId")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if message_id.is_empty() {
        return failure(400, "messageId is required");
    }
    let Some(media) = inst.media.get(&message_id) else {
        return failure(404, "Message not found");
    };
    let prefix = media.mimetype.split('/').next().unwrap_or_default();
    let media_type = if ["image", "video", "audio"].contains(&prefix) { prefix } else { "document" };
    // Both shapes: the documented top-level fields and the `data` object.
    reply(
        200,
        json!({
            "success": true, "message": "Base64 retrieved successfully",
            "message_id": message_id, "mime_type": media.mimetype, "media_type": media_type, "base64": media.base64,
            "data": {"base64": media.base64, "mimetype": media.mimetype}
        }),
    )
}

// ---------------------------------------------------------------------------------------------------
// Envelope builders

/// Now as RFC 3339 in UTC, seconds precision (`2026-11-21T10:00:00Z`).
pub fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn random_hex(bytes: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // Still unique within the process.
        let n = COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        for (b, n) in buf.iter_mut().rev().zip(n.iter().rev()) {
            *b = *n;
        }
    }
    buf.iter().map(|b| format!("{b:02X}")).collect()
}

/// An id like the ones RyzeAPI answers for sends: `3EB0` and 16 uppercase hex digits.
pub fn new_message_id() -> String {
    format!("3EB0{}", random_hex(8))
}

/// An id like a phone's: 32 uppercase hex digits.
pub fn new_incoming_message_id() -> String {
    random_hex(16)
}

/// A stable fake LID (`<15 digits>@lid`) for a JID; an `@lid` JID is its own LID.
pub fn fake_lid(jid: &str) -> String {
    if jid.ends_with("@lid") {
        return jid.to_owned();
    }
    let user = jid.split(['@', ':']).next().unwrap_or(jid);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}@lid", 100_000_000_000_000 + hash % 900_000_000_000_000)
}

fn envelope(event: &str, instance: &str, data: Value) -> Value {
    json!({"event": event, "data": data, "instanceData": {"instance": instance, "baseUrl": "", "token": ""}})
}

/// A `data.message` of type text in the live layout.
fn text_body(text: &str, source: &str) -> Value {
    json!({
        "type": "text", "content": text, "source": source, "context": null, "media": null,
        "location": null, "contact": null, "reaction": null, "edit": null, "isEdit": false
    })
}

fn person(jid: &str, name: &str) -> Value {
    json!({"jid": jid, "lid": fake_lid(jid), "name": name, "pictureUrl": ""})
}

/// Live layout: `data.{id,direction,timestamp,chat,sender,message}`.
fn live(instance: &str, id: &str, direction: &str, chat: Value, sender: Value, body: Value) -> Value {
    message(
        instance,
        json!({"id": id, "direction": direction, "timestamp": now_iso(), "chat": chat, "sender": sender, "message": body}),
    )
}

/// An outgoing message from the instance's own number into `chat_jid`.
fn outgoing(instance: &str, id: &str, chat_jid: &str, body: Value) -> Value {
    let chat = json!({"jid": chat_jid, "lid": fake_lid(chat_jid), "name": "", "type": "private"});
    live(instance, id, "outgoing", chat, person(OWN_JID, instance), body)
}

/// `message.exchange` with any `data`.
pub fn message(instance: &str, data: Value) -> Value {
    envelope("message.exchange", instance, data)
}

/// An incoming text from a customer in a private chat, live layout (contract §3.1).
pub fn text_message(instance: &str, id: &str, chat_jid: &str, sender_name: &str, text: &str) -> Value {
    let chat = json!({"jid": chat_jid, "lid": fake_lid(chat_jid), "name": sender_name, "type": "private"});
    live(instance, id, "incoming", chat, person(chat_jid, sender_name), text_body(text, ""))
}

/// An outgoing text (typed on the phone with `source: ""`, or sent through the API with its label).
pub fn outgoing_text_message(instance: &str, id: &str, chat_jid: &str, text: &str, source: &str) -> Value {
    outgoing(instance, id, chat_jid, text_body(text, source))
}

/// The same incoming text in the catalog layout: `data.id` and `data.message.{…, content: {"text"}}`.
pub fn catalog_text_message(instance: &str, id: &str, chat_jid: &str, sender_name: &str, text: &str) -> Value {
    message(
        instance,
        json!({"id": id, "message": {
            "id": id, "direction": "incoming", "timestamp": now_iso(),
            "chat": {"jid": chat_jid, "lid": fake_lid(chat_jid), "name": sender_name, "type": "private"},
            "sender": {"jid": chat_jid, "lid": fake_lid(chat_jid), "name": sender_name},
            "content": {"text": text}, "media": null
        }}),
    )
}

/// `message.status` (contract §3.2): `status` is `delivered`, `read`, `played`, `error`, …
pub fn status_event(instance: &str, message_ids: &[&str], status: &str, chat_jid: &str) -> Value {
    envelope(
        "message.status",
        instance,
        json!({"messageIds": message_ids, "status": status, "chat": {"jid": chat_jid, "type": "private"},
               "timestamp": now_iso()}),
    )
}

/// `instance.state` (contract §3.2), with `qrCode` for `qr_ready`.
pub fn instance_state(instance: &str, state: &str, qr_code: Option<&str>) -> Value {
    let mut data = json!({"state": state, "instance": instance, "timestamp": now_iso()});
    if let (Some(qr), Some(map)) = (qr_code, data.as_object_mut()) {
        map.insert("qrCode".into(), Value::String(qr.to_owned()));
    }
    envelope("instance.state", instance, data)
}

// ---------------------------------------------------------------------------------------------------
// Control API and UI

fn parse_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn not_an_object() -> HttpResponse {
    failure(400, "body must be a JSON object").1
}

async fn sim_message(path: web::Path<String>, body: web::Bytes, data: web::Data<Mutex<State>>) -> HttpResponse {
    let instance = path.into_inner();
    let Some(body) = parse_object(&body) else { return not_an_object() };
    let fields = required_str(&body, "from").and_then(|from| {
        let text = required_str(&body, "text")?;
        let name = optional_str(&body, "name")?.filter(|n| !n.is_empty()).unwrap_or(from);
        Ok((from, name, text))
    });
    let (from, name, text) = match fields {
        Ok(fields) => fields,
        Err(message) => return failure(400, &message).1,
    };
    let id = new_incoming_message_id();
    let envelope = text_message(&instance, &id, &chat_jid(from), name, text);
    let event_id = emit(&data, &instance, envelope);
    HttpResponse::Ok().json(json!({"messageId": id, "eventId": event_id}))
}

async fn sim_event(path: web::Path<String>, body: web::Bytes, data: web::Data<Mutex<State>>) -> HttpResponse {
    match serde_json::from_slice::<Value>(&body) {
        Ok(envelope) => {
            let event_id = emit(&data, &path.into_inner(), envelope);
            HttpResponse::Ok().json(json!({"eventId": event_id}))
        }
        Err(e) => failure(400, &format!("body is not JSON: {e}")).1,
    }
}

async fn sim_drop(path: web::Path<String>, data: web::Data<Mutex<State>>) -> HttpResponse {
    let conns = std::mem::take(&mut lock(&data).instance(&path.into_inner()).conns);
    for addr in conns.values() {
        addr.do_send(Sever);
    }
    HttpResponse::Ok().json(json!({"dropped": conns.len()}))
}

async fn sim_refuse(body: web::Bytes, data: web::Data<Mutex<State>>) -> HttpResponse {
    let Some(body) = parse_object(&body) else { return not_an_object() };
    let status = match body.get("status") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|s| (100..=599).contains(s)).and_then(|s| u16::try_from(s).ok()) {
            Some(status) => Some(status),
            None => return failure(400, "status must be an HTTP status or null").1,
        },
    };
    lock(&data).refuse = status;
    HttpResponse::Ok().json(json!({"status": status}))
}

async fn sim_silent(body: web::Bytes, data: web::Data<Mutex<State>>) -> HttpResponse {
    let silent = match parse_object(&body).and_then(|b| b.get("silent").and_then(Value::as_bool)) {
        Some(silent) => silent,
        _ => return failure(400, "body must be {\"silent\": true|false}").1,
    };
    lock(&data).silent = silent;
    HttpResponse::Ok().json(json!({"silent": silent}))
}

async fn sim_instances(data: web::Data<Mutex<State>>) -> HttpResponse {
    let state = lock(&data);
    let names: Vec<&String> = state.instances.iter().filter(|(_, i)| i.token.is_some()).map(|(n, _)| n).collect();
    HttpResponse::Ok().json(json!({"instances": names}))
}

async fn sim_sent(path: web::Path<String>, data: web::Data<Mutex<State>>) -> HttpResponse {
    let state = lock(&data);
    let calls = state.instances.get(path.as_str()).map(|i| i.calls.clone()).unwrap_or_default();
    HttpResponse::Ok().json(json!({"calls": calls}))
}

async fn sim_state(path: web::Path<String>, data: web::Data<Mutex<State>>) -> HttpResponse {
    let state = lock(&data);
    let instance = path.into_inner();
    let inst = state.instances.get(&instance);
    let count = |f: fn(&Instance) -> usize| inst.map_or(0, f);
    HttpResponse::Ok().json(json!({
        "instance": instance,
        "connections": count(Instance::open_connections),
        "totalConnects": count(|i| i.total_connects),
        "upgradeAttempts": count(|i| i.upgrade_attempts),
        "framesDelivered": count(|i| i.frames_delivered),
        "receivedPings": count(|i| i.received_pings),
        "acked": inst.map(|i| i.acked.clone()).unwrap_or_default(),
        "unacked": inst.map(|i| i.unacked.iter().map(|p| p.id.clone()).collect::<Vec<_>>()).unwrap_or_default(),
        "unexpectedFrames": inst.map(|i| i.unexpected_frames.clone()).unwrap_or_default(),
        "silent": state.silent,
        "ackExtension": state.ack_extension,
        "refuseUpgrades": state.refuse,
    }))
}

async fn ui() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(UI_PAGE)
}

const UI_PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>RyzeAPI simulator</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
input,select,button{font:inherit;padding:.3em}
table{border-collapse:collapse;width:100%;margin-top:.5em}
td,th{border-bottom:1px solid #ddd;padding:.3em;text-align:left;vertical-align:top}
#state{color:#555}
</style></head><body>
<h1>RyzeAPI simulator</h1>
<p>Instance <select id="inst"></select> <span id="state"></span></p>
<form id="send">
  <input id="from" value="5511999999999" size="16" title="customer number">
  <input id="name" value="Maria" size="10" title="customer name">
  <input id="text" placeholder="message from the customer" size="40" required>
  <button>Send as customer</button>
</form>
<p><button id="drop">Drop the bridge's WebSocket</button></p>
<h2>Sent by agents</h2>
<table><thead><tr><th>call</th><th>status</th><th>content</th></tr></thead><tbody id="sent"></tbody></table>
<script>
const $ = id => document.getElementById(id);
const inst = () => encodeURIComponent($('inst').value);
function summary(b) {
  if (!b || typeof b !== 'object') return String(b ?? '');
  return [b.number, b.message, b.mediaType && ('[' + b.mediaType + '] ' + (b.fileName || b.mediaUrl || '')),
          b.messageId && ('message ' + b.messageId), b.state].filter(Boolean).join(' | ');
}
async function refresh() {
  if (!$('inst').value) return;
  try {
    const st = await (await fetch(`/sim/${inst()}/state`)).json();
    $('state').textContent = `${st.connections} bridge connection(s), ${st.unacked.length} unacknowledged event(s)`;
    const sent = await (await fetch(`/sim/${inst()}/sent`)).json();
    const rows = sent.calls.slice().reverse().map(c => {
      const tr = document.createElement('tr');
      for (const v of [c.method + ' ' + c.path, c.status, summary(c.body)]) {
        const td = document.createElement('td'); td.textContent = v; tr.append(td);
      }
      return tr;
    });
    $('sent').replaceChildren(...rows);
  } catch (e) { $('state').textContent = 'simulator unreachable'; }
}
$('send').onsubmit = async e => {
  e.preventDefault();
  await fetch(`/sim/${inst()}/messages`, {method: 'POST', headers: {'content-type': 'application/json'},
    body: JSON.stringify({from: $('from').value, name: $('name').value, text: $('text').value})});
  $('text').value = '';
  refresh();
};
$('drop').onclick = async () => { await fetch(`/sim/${inst()}/drop`, {method: 'POST'}); refresh(); };
fetch('/sim/instances').then(r => r.json()).then(j => {
  for (const n of j.instances) { const o = document.createElement('option'); o.textContent = n; $('inst').append(o); }
  $('inst').onchange = refresh;
  refresh();
});
setInterval(refresh, 1000);
</script></body></html>
"##;
