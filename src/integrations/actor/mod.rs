//! One actor per running integration: owns the RyzeAPI link and the integration's work queue.
//!
//! `link`: `connecting → connected → (lost) → waiting (backoff) → connecting …`, forever. `ingest`: every
//! text frame is parsed, **stored, then acknowledged**, then queued by chat. `queues`: one item per chat in
//! flight, many chats in parallel (bounded), so order holds within a chat and a slow chat never stalls the
//! others. Here: the actor, the work it is handed, and what it does with each outcome. The actor never
//! panics: every failure becomes a logged state transition.

mod ingest;
mod link;
mod queues;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use awc::ws::Message as WsMessage;
use bytes::BytesMut;

use self::ingest::{FreshPayloads, Ingest};
use self::link::OpenLink;
use self::queues::{ChatQueues, Item, conversation_key};
use super::Status;
use crate::config::LinkTiming;
use crate::live::{LinkState, Live};
use crate::relay::inbound;
use crate::relay::outbound;
use crate::relay::{Outcome, RelayContext};
use crate::retry::Backoff;
use crate::secret::Secret;
use crate::state::Shared;
use crate::store;

/// Items one integration processes at once (across different chats).
const MAX_IN_FLIGHT: usize = 16;

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
                            let _ = store::integrations::set_status_if(&db, &id, Status::Active, Status::Error, &error)
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
