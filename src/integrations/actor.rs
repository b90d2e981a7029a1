//! One actor per running integration: owns the RyzeAPI link and the integration's work queue.
//!
//! Link state machine: `connecting → connected → (lost) → waiting (backoff) → connecting …`, forever.
//! A 401/403/404 on the upgrade sets the integration to `error` and retries slowly; a later successful
//! connect clears that error. Every text frame is parsed, **stored, then acknowledged**, then queued by
//! chat: one item per chat in flight, many chats in parallel (bounded), so order holds within a chat and
//! a slow chat never stalls the others. The actor never panics: every failure becomes a logged state
//! transition.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::io::{SinkWrite, WriteHandler};
use actix::prelude::*;
use actix_http::ws::Item as Fragment;
use awc::error::WsProtocolError;
use awc::ws::{Frame, Message as WsMessage};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, StreamExt as _};

use super::status;
use crate::config::LinkTiming;
use crate::live::{LinkState, Live};
use crate::relay::Outcome;
use crate::relay::inbound::{self, RelayContext};
use crate::relay::outbound;
use crate::relay::receipts::{self, Receipt};
use crate::retry::Backoff;
use crate::ryzeapi::event::Envelope;
use crate::ryzeapi::link::{self, Link, LinkError, MAX_FRAME_BYTES};
use crate::secret::Secret;
use crate::state::Shared;
use crate::store;
use crate::store::events::{NewEvent, Stored};

/// Items one integration processes at once (across different chats).
const MAX_IN_FLIGHT: usize = 16;
/// Row ids kept in memory; beyond this, new events stay only in the database until the queue drains.
const MAX_QUEUED: usize = 10_000;
/// Bytes of received frames waiting to be stored; beyond this the link is dropped (RyzeAPI re-sends what
/// was not acknowledged), so a slow database never makes memory grow without bound.
const MAX_INGEST_BYTES: usize = 128 * 1024 * 1024;
/// Frames stored in one go (one group commit).
const MAX_STORE_BATCH: usize = 256;

/// Everything an integration actor is started with.
#[derive(Debug)]
pub struct ActorConfig {
    pub id: String,
    pub instance: String,
    pub ryzeapi_url: String,
    pub bridge_token: Secret,
    pub timing: LinkTiming,
    pub relay: Arc<RelayContext>,
    /// How often the Chatwoot version is read again (features such as ticks follow it).
    pub version_check_every: Duration,
}

type LinkSink = SplitSink<Link, WsMessage>;

struct OpenLink {
    sink: SinkWrite<WsMessage, LinkSink>,
    stream: SpawnHandle,
    opened: Instant,
}

pub struct IntegrationActor {
    cfg: ActorConfig,
    shared: Arc<Shared>,
    live: Arc<Live>,
    relay: Arc<RelayContext>,
    http: Option<awc::Client>,
    backoff: Backoff,
    link: Option<OpenLink>,
    connecting: bool,
    reconnect_timer: Option<SpawnHandle>,
    last_heard: Instant,
    partial_frame: Option<BytesMut>,
    ingest: Ingest,
    queue: ChatQueues,
    fresh: FreshPayloads,
    /// `BRIDGE_REPLY_ORDER_WINDOW_MS`: how long a reply just received waits before it is sent.
    reply_window: Duration,
    /// Replies still inside their window, and when it ends.
    hold_until: HashMap<Item, Instant>,
    /// Jobs queued or in flight here: a job announced twice (a signal, then the replica's re-read of
    /// stored jobs) is queued once.
    known_jobs: std::collections::HashSet<i64>,
    /// Pending events are being loaded from the database: queue, but do not start anything yet.
    loading: bool,
    halted: bool,
    /// Told to stop for good: a supervisor restart (racing the manager dropping its address) stops again.
    stopping: bool,
}

/// Frames waiting to be stored, in arrival order; one insert in flight at a time.
#[derive(Default)]
struct Ingest {
    frames: VecDeque<Received>,
    bytes: usize,
    busy: bool,
}

struct Received {
    event: NewEvent,
    event_id: Option<String>,
    /// A `message.status` receipt: noted once stored, so that an earlier one it supersedes is skipped.
    receipt: Option<(Receipt, Vec<String>)>,
}

/// Payloads of events stored by this actor and not yet started, so the first attempt needs no read;
/// retries, and events loaded at start, read their row.
#[derive(Default)]
struct FreshPayloads {
    /// The payload and when it was stored (for `bridge_queue_wait_seconds` and the message latency).
    payloads: HashMap<i64, (String, chrono::DateTime<chrono::Utc>)>,
    bytes: usize,
}

/// Payload bytes [`FreshPayloads`] keeps at most; larger frames (media) are read back instead.
const MAX_FRESH_BYTES: usize = 16 * 1024 * 1024;
const MAX_FRESH_PAYLOAD: usize = 64 * 1024;

impl FreshPayloads {
    fn remember(&mut self, row: i64, payload: String) {
        if payload.len() <= MAX_FRESH_PAYLOAD && self.bytes + payload.len() <= MAX_FRESH_BYTES {
            self.bytes += payload.len();
            self.payloads.insert(row, (payload, chrono::Utc::now()));
        }
    }

    fn take(&mut self, row: i64) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
        let (payload, stored_at) = self.payloads.remove(&row)?;
        self.bytes -= payload.len();
        Some((payload, stored_at))
    }
}

/// Work handed to a running integration.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Work {
    /// A stored outbound job, just received: its conversation orders it by Chatwoot message.
    Job { id: i64, conversation_id: i64, chatwoot_message_id: i64 },
    /// An agent's typing indicator (best-effort, not stored).
    Typing { conversation_id: i64, on: bool },
}

impl Handler<Work> for IntegrationActor {
    type Result = ();

    fn handle(&mut self, work: Work, ctx: &mut Context<Self>) {
        match work {
            Work::Job { id, conversation_id, chatwoot_message_id } => {
                if !self.known_jobs.insert(id) {
                    return;
                }
                let item = Item::Job { message: chatwoot_message_id, id };
                if self.queue.push(conversation_key(conversation_id), item) && !self.reply_window.is_zero() {
                    self.hold_until.insert(item, Instant::now() + self.reply_window);
                }
                self.pump(ctx);
            }
            Work::Typing { conversation_id, on } => {
                let (relay, http) = (self.relay.clone(), self.http.clone());
                ctx.spawn(async move { outbound::typing(relay, http, conversation_id, on).await }.into_actor(self));
            }
        }
    }
}

/// Stop for good (sent by the manager after it dropped its address, so the supervisor does not restart).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl IntegrationActor {
    pub fn new(cfg: ActorConfig, shared: Arc<Shared>, live: Arc<Live>) -> Self {
        let relay = cfg.relay.clone();
        let reply_window = shared.settings.reply_order_window;
        Self {
            backoff: Backoff::reconnect(cfg.timing.reconnect_min, cfg.timing.reconnect_max),
            cfg,
            shared,
            live,
            relay,
            http: None,
            link: None,
            connecting: false,
            reconnect_timer: None,
            last_heard: Instant::now(),
            partial_frame: None,
            ingest: Ingest::default(),
            queue: ChatQueues::default(),
            fresh: FreshPayloads::default(),
            reply_window,
            hold_until: HashMap::new(),
            known_jobs: std::collections::HashSet::new(),
            loading: false,
            halted: false,
            stopping: false,
        }
    }

    fn db(&self) -> Option<sea_orm::DatabaseConnection> {
        self.shared.booted().ok().map(|s| s.db.clone())
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.connecting || self.link.is_some() {
            return;
        }
        let Some(http) = self.http.clone() else { return };
        self.connecting = true;
        self.live.set_state(LinkState::Connecting);
        let url = link::ws_url(&self.cfg.ryzeapi_url, &self.cfg.instance);
        let token = self.cfg.bridge_token.clone();
        let attempt = async move { link::connect(&http, &url, &token).await };
        ctx.spawn(attempt.into_actor(self).map(|result, act, ctx| {
            act.connecting = false;
            match result {
                Ok(link) => act.on_connected(link, ctx),
                Err(error) => act.on_connect_failed(error, ctx),
            }
        }));
    }

    fn on_connected(&mut self, link: Link, ctx: &mut Context<Self>) {
        let (sink, stream) = link.split();
        let sink = SinkWrite::new(sink, ctx);
        let stream = ctx.add_stream(stream);
        self.link = Some(OpenLink { sink, stream, opened: Instant::now() });
        self.last_heard = Instant::now();
        self.live.set_state(LinkState::Connected);
        tracing::info!(integration_id = %self.cfg.id, "RyzeAPI link connected");
        // A link error shown on the integration is over now.
        if let Some(db) = self.db() {
            let id = self.cfg.id.clone();
            ctx.spawn(
                async move {
                    if let Ok(Some(model)) = store::integrations::find(&db, &id).await
                        && model.status == status::ERROR
                        && is_link_error(&model.last_error)
                    {
                        let _ = store::integrations::set_status_if(&db, &id, status::ERROR, status::ACTIVE, "").await;
                    }
                }
                .into_actor(self),
            );
        }
    }

    fn on_connect_failed(&mut self, error: LinkError, ctx: &mut Context<Self>) {
        self.live.set_state(LinkState::Disconnected);
        let delay = if error.needs_operator() {
            tracing::warn!(integration_id = %self.cfg.id, error = %error, "RyzeAPI refused the link; retrying slowly");
            if let Some(db) = self.db() {
                let (id, message) = (self.cfg.id.clone(), error.to_string());
                ctx.spawn(
                    async move {
                        let _ =
                            store::integrations::set_status_if(&db, &id, status::ACTIVE, status::ERROR, &message).await;
                    }
                    .into_actor(self),
                );
            }
            self.cfg.timing.rejected_retry
        } else {
            let delay = self.backoff.next_delay();
            tracing::info!(integration_id = %self.cfg.id, error = %error, delay_ms = delay.as_millis() as u64, "RyzeAPI link failed; reconnecting");
            delay
        };
        self.schedule_reconnect(delay, ctx);
    }

    fn schedule_reconnect(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        if let Some(timer) = self.reconnect_timer.take() {
            ctx.cancel_future(timer);
        }
        self.reconnect_timer = Some(ctx.run_later(delay, |act, ctx| {
            act.reconnect_timer = None;
            act.live.count_reconnect();
            act.connect(ctx);
        }));
    }

    /// The link is gone (closed, broken, silent, or dropped on purpose): forget it and reconnect.
    fn on_link_lost(&mut self, why: &str, ctx: &mut Context<Self>) {
        let Some(open) = self.link.take() else { return };
        ctx.cancel_future(open.stream);
        drop(open.sink);
        self.partial_frame = None;
        self.live.set_state(LinkState::Disconnected);
        if open.opened.elapsed() >= self.cfg.timing.stable_after {
            self.backoff.reset();
        }
        let delay = self.backoff.next_delay();
        tracing::info!(integration_id = %self.cfg.id, why, delay_ms = delay.as_millis() as u64, "RyzeAPI link lost; reconnecting");
        self.schedule_reconnect(delay, ctx);
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let Some(open) = self.link.as_mut() else { return };
        if self.last_heard.elapsed() >= self.cfg.timing.dead_after {
            self.on_link_lost("no frame from RyzeAPI within the heartbeat timeout", ctx);
            return;
        }
        if open.opened.elapsed() >= self.cfg.timing.stable_after {
            self.backoff.reset();
        }
        if open.sink.write(WsMessage::Ping(Bytes::new())).is_err() {
            self.on_link_lost("ping could not be written", ctx);
        }
    }

    fn on_text(&mut self, text: Bytes, ctx: &mut Context<Self>) {
        let Ok(text) = std::str::from_utf8(&text) else {
            tracing::warn!(integration_id = %self.cfg.id, "skipped a frame that is not UTF-8");
            return;
        };
        let envelope = match Envelope::parse(text) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(integration_id = %self.cfg.id, %error, "skipped a malformed frame");
                // With an event id it is kept as a failed event (visible, and acknowledged so that RyzeAPI
                // does not re-send it forever).
                if let Some(event_id) = crate::ryzeapi::event::event_id_of(text) {
                    let event = NewEvent {
                        integration_id: self.cfg.id.clone(),
                        event_id: Some(event_id.clone()),
                        message_key: None,
                        chat_key: crate::ryzeapi::event::INSTANCE_CHAT.to_owned(),
                        kind: "malformed".to_owned(),
                        payload: text.to_owned(),
                    };
                    self.ingest.bytes += event.payload.len();
                    self.ingest.frames.push_back(Received { event, event_id: Some(event_id), receipt: None });
                    self.store_next(ctx);
                }
                return;
            }
        };
        self.live.event_received();
        let routing = envelope.routing();
        let event = NewEvent {
            integration_id: self.cfg.id.clone(),
            event_id: envelope.event_id.clone(),
            message_key: routing.message_key,
            chat_key: routing.chat_key,
            kind: envelope.event.clone(),
            payload: text.to_owned(),
        };
        self.ingest.bytes += event.payload.len();
        let receipt = (envelope.event == "message.status").then(|| receipts::of_event(&envelope.data)).flatten();
        self.ingest.frames.push_back(Received { event, event_id: envelope.event_id, receipt });
        if self.ingest.bytes > MAX_INGEST_BYTES {
            tracing::warn!(integration_id = %self.cfg.id, "storing falls behind; dropping the link until it catches up");
            self.on_link_lost("storing falls behind", ctx);
        }
        self.store_next(ctx);
    }

    /// Stores the received frames (those that queued up meanwhile go together, into one group commit),
    /// then acknowledges and queues them in arrival order; one batch at a time, without blocking the actor
    /// (other work goes on meanwhile).
    fn store_next(&mut self, ctx: &mut Context<Self>) {
        if self.ingest.busy || self.ingest.frames.is_empty() {
            return;
        }
        let Ok(services) = self.shared.booted() else { return };
        let writer = services.writers.of(&self.cfg.id).clone();
        let count = self.ingest.frames.len().min(MAX_STORE_BATCH);
        let batch: Vec<Received> = self.ingest.frames.drain(..count).collect();
        self.ingest.busy = true;
        let events: Vec<NewEvent> = batch.iter().map(|r| r.event.clone()).collect();
        // Submitted in order: the writer numbers the rows in arrival order.
        let store =
            async move { futures_util::future::join_all(events.into_iter().map(|e| writer.store_event(e))).await };
        ctx.spawn(store.into_actor(self).map(move |results, act, ctx| {
            act.ingest.busy = false;
            let mut failed = None;
            for (received, stored) in batch.into_iter().zip(results) {
                act.ingest.bytes = act.ingest.bytes.saturating_sub(received.event.payload.len());
                match stored {
                    Ok(stored) => {
                        if let Some(event_id) = &received.event_id {
                            act.acknowledge(event_id, ctx);
                        }
                        if let Stored::New(row) = stored {
                            act.live.event_stored();
                            if let Some((receipt, wa_ids)) = &received.receipt {
                                act.relay.receipts.note(wa_ids.iter().map(String::as_str), *receipt, row);
                            }
                            if act.queue.push(received.event.chat_key, Item::Event(row)) {
                                act.fresh.remember(row, received.event.payload);
                            }
                        }
                    }
                    // Not acknowledged: RyzeAPI re-sends it after the reconnect.
                    Err(error) => failed = Some(error),
                }
            }
            if let Some(error) = failed {
                tracing::error!(integration_id = %act.cfg.id, %error, "storing an event failed; dropping the link so it is re-sent");
                act.ingest.frames.clear();
                act.ingest.bytes = 0;
                act.on_link_lost("storing an event failed", ctx);
            }
            act.pump(ctx);
            act.store_next(ctx);
        }));
    }

    fn acknowledge(&mut self, event_id: &str, ctx: &mut Context<Self>) {
        let ack = serde_json::json!({"type": "ack", "eventId": event_id}).to_string();
        let failed = match self.link.as_mut() {
            Some(open) => open.sink.write(WsMessage::Text(ack.into())).is_err(),
            None => false,
        };
        if failed {
            self.on_link_lost("acknowledgement could not be written", ctx);
        }
    }

    /// Starts queued items while there is room.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.halted || self.loading {
            return;
        }
        while self.queue.in_flight < MAX_IN_FLIGHT {
            let Some((chat, row)) = self.queue.next() else { break };
            // A reply waits out its window, in case one Chatwoot created before it is still on its way;
            // one that arrives meanwhile goes ahead of it (the queue is ordered by Chatwoot message).
            if let Some(until) = self.hold_until.remove(&row) {
                let wait = until.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    self.hold_until.insert(row, until);
                    self.queue.park(&chat, row);
                    ctx.run_later(wait, move |act, ctx| {
                        act.queue.unpark(&chat);
                        act.pump(ctx);
                    });
                    continue;
                }
            }
            let (relay, http) = (self.relay.clone(), self.http.clone());
            let payload = match row {
                Item::Event(id) => self.fresh.take(id),
                Item::Job { .. } => None,
            };
            let work = async move {
                match row {
                    Item::Event(id) => inbound::process(relay, http, id, payload).await,
                    Item::Job { id, .. } => outbound::process(relay, http, id).await,
                }
            };
            // Every log line of the work carries the integration, the row and (filled in by the relay) the
            // WhatsApp and Chatwoot ids, so that `grep` finds one message's lines.
            let span = tracing::info_span!(
                "relay",
                integration_id = %self.cfg.id,
                work = ?row,
                wa_id = tracing::field::Empty,
                chatwoot_message_id = tracing::field::Empty,
                conversation_id = tracing::field::Empty,
            );
            let work = tracing::Instrument::instrument(work, span.clone());
            let started = chrono::Utc::now();
            ctx.spawn(work.into_actor(self).map(move |outcome, act, ctx| {
                // The outcome's own line ("will be retried", "failed for good") carries the ids too.
                let _in_span = span.enter();
                act.journal(row, started, &outcome);
                act.finished_item(chat, row, outcome, ctx);
            }));
        }
        if self.queue.is_idle() && self.queue.overflowed {
            self.reload_pending(ctx);
        }
    }

    /// Remembers how a run of `row` ended, for the message trace.
    fn journal(&self, row: Item, started: chrono::DateTime<chrono::Utc>, outcome: &Outcome) {
        use crate::live::{Attempt, WorkRef};
        let work = match row {
            Item::Event(id) => WorkRef::Event(id),
            Item::Job { id, .. } => WorkRef::Job(id),
        };
        let (name, error, next_in) = match outcome {
            Outcome::Done => ("done", None, None),
            Outcome::Retry { after, error } => ("retry", Some(error.clone()), Some(*after)),
            Outcome::Later { after } => ("later", None, Some(*after)),
            Outcome::Failed(error) => ("failed", Some(error.clone()), None),
            Outcome::Halt(error) => ("halted", Some(error.clone()), None),
        };
        self.live.journal.record(Attempt { work, started, ended: chrono::Utc::now(), outcome: name, error, next_in });
    }

    fn finished_item(&mut self, chat: String, row: Item, outcome: Outcome, ctx: &mut Context<Self>) {
        if let (Item::Job { id, .. }, Outcome::Done | Outcome::Failed(_)) = (row, &outcome) {
            self.known_jobs.remove(&id);
        }
        match outcome {
            Outcome::Done | Outcome::Failed(_) => {
                if let Outcome::Failed(error) = &outcome {
                    tracing::warn!(integration_id = %self.cfg.id, ?row, %error, "failed for good");
                }
                self.queue.release(&chat);
            }
            Outcome::Later { after } => {
                tracing::debug!(integration_id = %self.cfg.id, ?row, wait_ms = after.as_millis() as u64, "paced");
                self.queue.park(&chat, row);
                ctx.run_later(after, move |act, ctx| {
                    act.queue.unpark(&chat);
                    act.pump(ctx);
                });
            }
            Outcome::Retry { after, error } => {
                tracing::info!(integration_id = %self.cfg.id, ?row, %error, retry_in_ms = after.as_millis() as u64, "will be retried");
                self.queue.park(&chat, row);
                ctx.run_later(after, move |act, ctx| {
                    act.queue.unpark(&chat);
                    act.pump(ctx);
                });
            }
            Outcome::Halt(error) => {
                tracing::error!(integration_id = %self.cfg.id, %error, "processing halted; the queue is kept");
                self.queue.park(&chat, row);
                self.halted = true;
                // Shown on the integration (status `error`, `last_error`) until the link or a resume clears it.
                if let Some(db) = self.db() {
                    let id = self.cfg.id.clone();
                    ctx.spawn(
                        async move {
                            let _ = store::integrations::set_status_if(&db, &id, status::ACTIVE, status::ERROR, &error)
                                .await;
                        }
                        .into_actor(self),
                    );
                }
            }
        }
        self.pump(ctx);
    }

    /// Reads Chatwoot's version again; stores it and switches ticks on or off to match.
    fn check_version(&mut self, ctx: &mut Context<Self>) {
        let (Some(http), Some(db)) = (self.http.clone(), self.db()) else { return };
        let relay = self.relay.clone();
        ctx.spawn(
            async move {
                let chatwoot = relay.chatwoot_client(http);
                if let Ok(info) = chatwoot.api_info().await {
                    let ticks = crate::chatwoot::version_at_least(&info.version, (4, 2));
                    relay.ticks.store(ticks, std::sync::atomic::Ordering::Relaxed);
                    let _ = store::integrations::set_chatwoot_version(&db, &relay.integration_id, &info.version).await;
                }
            }
            .into_actor(self),
        );
    }

    /// Queues every pending event from the database (at start, and after an overflow drained).
    fn reload_pending(&mut self, ctx: &mut Context<Self>) {
        let Some(db) = self.db() else { return };
        let id = self.cfg.id.clone();
        self.queue.overflowed = false;
        self.loading = true;
        let load = async move {
            let events = store::events::pending(&db, &id).await?;
            let jobs = store::jobs::pending_with_messages(&db, &id).await?;
            Ok::<_, store::StoreError>((events, jobs))
        };
        ctx.spawn(load.into_actor(self).map(|pending, act, ctx| {
            act.loading = false;
            match pending {
                Ok((events, jobs)) => {
                    if !events.is_empty() || !jobs.is_empty() {
                        tracing::info!(integration_id = %act.cfg.id, events = events.len(), jobs = jobs.len(), "resuming stored work");
                    }
                    for (row, chat) in events {
                        act.queue.push(chat, Item::Event(row));
                    }
                    // A job stored moments ago (just before a crash, or while the bridge was starting
                    // and this actor was not running yet, so that nobody queued it live) waits out the
                    // rest of its window, as it would have live: an earlier reply may still be on its way.
                    let now = chrono::Utc::now();
                    for (job, conversation, message, stored_at) in jobs {
                        act.known_jobs.insert(job);
                        let item = Item::Job { message, id: job };
                        let age = (now - stored_at).to_std().unwrap_or_default();
                        if act.queue.push(conversation_key(conversation), item) && age < act.reply_window {
                            act.hold_until.entry(item).or_insert(Instant::now() + (act.reply_window - age));
                        }
                    }
                    act.pump(ctx);
                }
                Err(error) => tracing::error!(integration_id = %act.cfg.id, %error, "loading stored work failed"),
            }
        }));
    }
}

/// A queued piece of work: a stored RyzeAPI event (numbered in arrival order) or a stored Chatwoot
/// webhook job (ordered by the Chatwoot message it is about, then by arrival: Chatwoot numbers messages
/// as it creates them, and delivers their webhooks in no promised order). One queue never mixes the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Item {
    Event(i64),
    Job { message: i64, id: i64 },
}

/// The queue key of a Chatwoot conversation's outbound jobs.
fn conversation_key(conversation_id: i64) -> String {
    format!("chatwoot:{conversation_id}")
}

/// Chat-keyed FIFO queues with one item in flight per chat.
#[derive(Default)]
struct ChatQueues {
    queues: HashMap<String, VecDeque<Item>>,
    /// Chats with queued items, none in flight, not parked: in the order they became ready.
    ready: VecDeque<String>,
    busy: HashSet<String>,
    parked: HashSet<String>,
    in_flight: usize,
    queued: usize,
    /// Items were left in the database only because the in-memory queue was full.
    overflowed: bool,
}

impl ChatQueues {
    /// Queues `row` behind the chat's earlier items; `false` when it was not queued (already queued, or
    /// the queue is full and the row waits in the database).
    fn push(&mut self, chat: String, row: Item) -> bool {
        if self.queued >= MAX_QUEUED {
            self.overflowed = true;
            return false;
        }
        let queue = self.queues.entry(chat.clone()).or_default();
        // Rows are numbered in arrival order: keep each chat's queue sorted, whatever order rows are
        // queued in (live frames may be queued while the pending ones are still loading).
        match queue.binary_search(&row) {
            Ok(_) => return false,
            Err(position) => queue.insert(position, row),
        }
        self.queued += 1;
        if queue.len() == 1 && !self.busy.contains(&chat) && !self.parked.contains(&chat) {
            self.ready.push_back(chat);
        }
        true
    }

    fn next(&mut self) -> Option<(String, Item)> {
        while let Some(chat) = self.ready.pop_front() {
            let Some(queue) = self.queues.get_mut(&chat) else { continue };
            let Some(row) = queue.pop_front() else {
                self.queues.remove(&chat);
                continue;
            };
            self.queued -= 1;
            self.busy.insert(chat.clone());
            self.in_flight += 1;
            return Some((chat, row));
        }
        None
    }

    /// The chat's in-flight item is finished.
    fn release(&mut self, chat: &str) {
        self.busy.remove(chat);
        self.in_flight = self.in_flight.saturating_sub(1);
        match self.queues.get(chat) {
            Some(queue) if !queue.is_empty() => self.ready.push_back(chat.to_owned()),
            _ => {
                self.queues.remove(chat);
            }
        }
    }

    /// The chat's in-flight item goes back to the front, and the chat waits.
    fn park(&mut self, chat: &str, row: Item) {
        self.busy.remove(chat);
        self.in_flight = self.in_flight.saturating_sub(1);
        self.queues.entry(chat.to_owned()).or_default().push_front(row);
        self.queued += 1;
        self.parked.insert(chat.to_owned());
    }

    fn unpark(&mut self, chat: &str) {
        if self.parked.remove(chat) && self.queues.get(chat).is_some_and(|q| !q.is_empty()) {
            self.ready.push_back(chat.to_owned());
        }
    }

    fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.queued == 0
    }
}

fn is_link_error(last_error: &str) -> bool {
    [LinkError::Rejected { status: 401 }.to_string(), LinkError::NoRoute.to_string()].iter().any(|e| e == last_error)
}

impl Actor for IntegrationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            ctx.stop();
            return;
        }
        ctx.set_mailbox_capacity(64);
        if self.http.is_none() {
            self.http = Some(crate::config::http_client());
        }
        self.queue = ChatQueues::default();
        self.ingest = Ingest::default();
        self.fresh = FreshPayloads::default();
        self.known_jobs.clear();
        self.halted = false;
        self.reload_pending(ctx);
        self.connect(ctx);
        let every = self.cfg.timing.ping_every.min(self.cfg.timing.dead_after / 2);
        ctx.run_interval(every, |act, ctx| act.heartbeat(ctx));
        ctx.run_interval(self.cfg.version_check_every, |act, ctx| act.check_version(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.live.set_state(LinkState::Disconnected);
    }
}

impl Supervised for IntegrationActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if !self.stopping {
            tracing::warn!(integration_id = %self.cfg.id, "integration actor restarting");
        }
        self.link = None;
        self.connecting = false;
        self.reconnect_timer = None;
        self.live.set_state(LinkState::Disconnected);
    }
}

impl Handler<Shutdown> for IntegrationActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        self.stopping = true;
        if let Some(mut open) = self.link.take() {
            let _ = open.sink.write(WsMessage::Close(Some(awc::ws::CloseCode::Normal.into())));
            open.sink.close();
        }
        tracing::info!(integration_id = %self.cfg.id, "integration stopped");
        ctx.stop();
    }
}

impl WriteHandler<WsProtocolError> for IntegrationActor {
    fn error(&mut self, error: WsProtocolError, ctx: &mut Self::Context) -> Running {
        self.on_link_lost(&format!("write failed: {error}"), ctx);
        Running::Continue
    }

    /// The sink closing is not the actor's end (the default would stop it).
    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl StreamHandler<Result<Frame, WsProtocolError>> for IntegrationActor {
    fn handle(&mut self, item: Result<Frame, WsProtocolError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match item {
            Ok(Frame::Text(text)) => self.on_text(text, ctx),
            Ok(Frame::Ping(payload)) => {
                let failed = self.link.as_mut().is_some_and(|open| open.sink.write(WsMessage::Pong(payload)).is_err());
                if failed {
                    self.on_link_lost("pong could not be written", ctx);
                }
            }
            Ok(Frame::Pong(_)) => {}
            Ok(Frame::Binary(_)) => tracing::debug!(integration_id = %self.cfg.id, "ignored a binary frame"),
            Ok(Frame::Continuation(item)) => self.on_continuation(item, ctx),
            Ok(Frame::Close(reason)) => {
                let why = format!("closed by RyzeAPI ({reason:?})");
                self.on_link_lost(&why, ctx);
            }
            Err(error) => self.on_link_lost(&format!("protocol error: {error}"), ctx),
        }
    }

    /// The stream ended without a close frame: the link is gone, the actor is not.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.on_link_lost("connection ended", ctx);
    }
}

impl IntegrationActor {
    /// Reassembles fragmented text frames (up to the frame size limit).
    fn on_continuation(&mut self, item: Fragment, ctx: &mut Context<Self>) {
        let last = matches!(item, Fragment::Last(_));
        match item {
            Fragment::FirstText(bytes) => self.partial_frame = Some(BytesMut::from(&bytes[..])),
            Fragment::FirstBinary(_) => self.partial_frame = None,
            Fragment::Continue(bytes) | Fragment::Last(bytes) => {
                let Some(buffer) = self.partial_frame.as_mut() else { return };
                if buffer.len() + bytes.len() > MAX_FRAME_BYTES {
                    tracing::warn!(integration_id = %self.cfg.id, "skipped a fragmented frame over 64 MiB");
                    self.partial_frame = None;
                    return;
                }
                buffer.extend_from_slice(&bytes);
                if last && let Some(done) = self.partial_frame.take() {
                    self.on_text(done.freeze(), ctx);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_item_per_chat_in_order_and_chats_interleave() {
        let mut q = ChatQueues::default();
        for (chat, row) in [("a", 1), ("a", 2), ("b", 3), ("a", 4), ("b", 5)] {
            q.push(chat.into(), Item::Event(row));
        }
        assert_eq!(q.next(), Some(("a".into(), Item::Event(1))));
        assert_eq!(q.next(), Some(("b".into(), Item::Event(3))));
        assert_eq!(q.next(), None, "both chats busy");
        q.release("a");
        assert_eq!(q.next(), Some(("a".into(), Item::Event(2))));
        q.park("b", Item::Event(3));
        assert_eq!(q.next(), None, "b parked, a busy");
        q.unpark("b");
        assert_eq!(q.next(), Some(("b".into(), Item::Event(3))), "the parked item comes first again");
        q.release("a");
        q.release("b");
        assert_eq!(q.next(), Some(("a".into(), Item::Event(4))));
        assert_eq!(q.next(), Some(("b".into(), Item::Event(5))));
        q.release("a");
        q.release("b");
        assert!(q.is_idle());
    }

    #[test]
    fn a_row_is_never_queued_twice() {
        let mut q = ChatQueues::default();
        q.push("a".into(), Item::Event(1));
        q.push("a".into(), Item::Event(1));
        assert_eq!(q.next(), Some(("a".into(), Item::Event(1))));
        q.release("a");
        assert_eq!(q.next(), None);
    }
}
