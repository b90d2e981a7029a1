//! The manager: which integrations run in this process, on which arbiter, and starting/stopping them.
//!
//! It holds the only long-lived `Addr` of each integration actor. Stopping for good means dropping that
//! address *before* telling the actor to stop: actix's supervisor restarts a stopped actor while any
//! address is alive. Actors are spread round-robin over a few arbiters (threads), so one busy integration
//! cannot stall the others.
//!
//! Which integrations this process runs is decided in one place, [`Manager::runs_here`]: on SQLite, all
//! of them; with replicas sharing one PostgreSQL, those whose lease this replica holds
//! (`ownership`, which sends [`Owned`] and [`Lost`]).

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use super::actor::{self, ActorConfig, IntegrationActor, Shutdown};
use super::{Status, open_sealed, sealed};
use crate::chatwoot::ChatwootTarget;
use crate::relay::RelayContext;
use crate::state::Shared;
use crate::store;

pub struct Manager {
    shared: Arc<Shared>,
    arbiters: Vec<Arbiter>,
    next_arbiter: usize,
    running: HashMap<String, Addr<IntegrationActor>>,
}

/// Start (or restart with fresh settings) the integration's actor, if it is active.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Start(pub String);

/// Stop the integration's actor for good (pause, delete).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop(pub String);

/// A stored outbound job for a running integration (from the webhook route, another replica's signal,
/// or the periodic re-read of stored jobs; the actor skips one it knows).
#[derive(Message)]
#[rtype(result = "()")]
pub struct QueueJob {
    pub integration_id: String,
    pub job_id: i64,
    pub conversation_id: i64,
    /// The Chatwoot message the job is about: replies go out in the order Chatwoot created them.
    pub chatwoot_message_id: i64,
}

/// An agent started or stopped typing in a conversation.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentTyping {
    pub integration_id: String,
    pub conversation_id: i64,
    pub on: bool,
}

/// Leases this replica took: start their integrations.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Owned(pub Vec<String>);

/// Leases this replica no longer holds (lost, given up, fenced off): stop their integrations now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Lost(pub Vec<String>);

/// Up to `n` running integrations to give up, idlest first (no event for the longest).
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct PickIdle(pub usize);

/// The integration changed elsewhere: restart it with fresh settings if it runs here.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconsider(pub String);

/// Start every active integration (at boot).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct StartAll;

/// Stop every integration (process shutdown): links are closed with a close frame; unfinished work stays
/// stored and resumes at the next start.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct StopAll;

impl Manager {
    pub fn new(shared: Arc<Shared>, threads: usize) -> Self {
        let arbiters = (0..threads.max(1)).map(|_| Arbiter::new()).collect();
        Self { shared, arbiters, next_arbiter: 0, running: HashMap::new() }
    }

    /// Whether this process runs the integration: all of them on SQLite; with replicas, those whose
    /// lease it holds.
    fn runs_here(&self, id: &str) -> bool {
        self.shared.replica().is_none_or(|replica| replica.owns(id))
    }

    /// Stops the actor; `forget` also drops its live entry (stopped for good, not restarted).
    fn stop(&mut self, id: &str, forget: bool) {
        if let Some(addr) = self.running.remove(id) {
            addr.do_send(Shutdown);
            // `addr` drops here: no address is left, so the supervisor lets the actor end.
        }
        if forget {
            self.shared.live.remove(id);
        }
    }

    fn spawn(&mut self, cfg: ActorConfig) {
        self.stop(&cfg.id, false);
        let Some(arbiter) = self.arbiters.get(self.next_arbiter % self.arbiters.len()) else { return };
        self.next_arbiter = self.next_arbiter.wrapping_add(1);
        let id = cfg.id.clone();
        let shared = self.shared.clone();
        let live = cfg.relay.live.clone();
        let addr = Supervisor::start_in_arbiter(&arbiter.handle(), move |_| IntegrationActor::new(cfg, shared, live));
        self.running.insert(id, addr);
    }
}

impl Actor for Manager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        for (_, addr) in self.running.drain() {
            addr.do_send(Shutdown);
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

impl Handler<Start> for Manager {
    type Result = AtomicResponse<Self, ()>;

    /// Atomic: a Start and a Stop of the same integration never interleave.
    fn handle(&mut self, Start(id): Start, _ctx: &mut Context<Self>) -> Self::Result {
        let shared = self.shared.clone();
        if !self.runs_here(&id) {
            // Another replica may hold it; if nobody does, this one takes it (and then starts it).
            if let Some(replica) = shared.replica() {
                replica.want(&id);
            }
            self.stop(&id, true);
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        let fence = shared.replica().and_then(|replica| replica.fence_of(&id));
        let stop_id = id.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let services = shared.booted().ok()?;
                let model = match store::integrations::find(&services.db, &id).await {
                    Ok(Some(model)) => model,
                    Ok(None) => return Some(None),
                    Err(error) => {
                        tracing::error!(integration_id = %id, %error, "cannot load the integration to start it");
                        return None;
                    }
                };
                if model.status() == Some(Status::Paused) {
                    return Some(None);
                }
                let fence = fence.unwrap_or_else(crate::fence::Fence::always);
                let token = match open_sealed(&services.sealer, &model.chatwoot_token_sealed, &model.id, sealed::CHATWOOT_TOKEN) {
                    Ok(token) => token,
                    Err(error) => {
                        tracing::error!(integration_id = %id, %error, "cannot open the stored Chatwoot token; not starting");
                        return None;
                    }
                };
                let instance_token =
                    match open_sealed(&services.sealer, &model.instance_token_sealed, &model.id, sealed::INSTANCE_TOKEN) {
                        Ok(token) => token,
                        Err(error) => {
                            tracing::error!(integration_id = %id, %error, "cannot open the stored instance token; not starting");
                            return None;
                        }
                    };
                let relay = RelayContext {
                    integration_id: model.id.clone(),
                    instance: model.instance.clone(),
                    chatwoot: ChatwootTarget {
                        base_url: model.chatwoot_base_url.clone(),
                        account_id: model.chatwoot_account_id,
                        token,
                    },
                    inbox_id: model.inbox_id,
                    ignore_groups: model.ignore_groups,
                    start_as_pending: model.start_as_pending,
                    reopen_resolved: model.reopen_resolved,
                    sign_messages: model.sign_messages,
                    ryzeapi_url: model.ryzeapi_url.clone(),
                    instance_token,
                    ticks: std::sync::atomic::AtomicBool::new(
                        model.chatwoot_version.as_deref().is_none_or(|v| crate::chatwoot::version_at_least(v, (4, 2))),
                    ),
                    live: {
                        // A (re)started integration may point at another inbox: its chats are read afresh.
                        let live = shared.live.entry(&model.id);
                        live.chats.forget(|_| true);
                        live
                    },
                    reader: services.reader.clone(),
                    writer: match fence.token() {
                        Some(_) => services.writers.of(&model.id).fenced(fence.clone()),
                        None => services.writers.of(&model.id).clone(),
                    },
                    fence,
                    pacer: crate::relay::pace::ConversationPacer::new(shared.settings.conversation_messages_per_minute),
                    unprocessable_give_up: shared.settings.unprocessable_give_up,
                    contact_lookup_within: shared.settings.contact_lookup_within,
                    chat_locks: crate::relay::people::KeyedLocks::default(),
                    tick_locks: crate::relay::people::KeyedLocks::default(),
                    receipts: Default::default(),
                    read_marks: crate::relay::outbound::ReadMarks::default(),
                    db: services.db.clone(),
                    metrics: shared.metrics.clone(),
                    governor: shared.governors.of(&model.chatwoot_base_url),
                    call_timeout: shared.settings.chatwoot_timeout,
                    retry: shared.settings.relay_retry,
                    status_report: std::sync::Arc::new(super::view::StatusReporter {
                        shared: std::sync::Arc::downgrade(&shared),
                        id: model.id.clone(),
                        chatwoot_base_url: model.chatwoot_base_url.clone(),
                    }),
                };
                Some(Some(ActorConfig {
                    id: model.id,
                    instance: model.instance,
                    ryzeapi_url: model.ryzeapi_url,
                    bridge_token: shared.settings.bridge_token.clone(),
                    timing: shared.settings.link,
                    relay: std::sync::Arc::new(relay),
                    version_check_every: shared.settings.version_check_every,
                }))
            }
            .into_actor(self)
            .map(move |cfg, act, _ctx| match cfg {
                // Started here while the lease may have gone meanwhile: the fence stops it at its first write.
                Some(Some(cfg)) => act.spawn(cfg),
                // Paused or deleted: not running here.
                Some(None) => act.stop(&stop_id, true),
                None => {}
            }),
        ))
    }
}

impl Handler<Stop> for Manager {
    type Result = ();

    fn handle(&mut self, Stop(id): Stop, _ctx: &mut Context<Self>) {
        self.stop(&id, true);
    }
}

impl Handler<QueueJob> for Manager {
    type Result = ();

    /// Not running (paused): the job waits in the database and is loaded when the actor starts.
    fn handle(&mut self, job: QueueJob, _ctx: &mut Context<Self>) {
        if let Some(addr) = self.running.get(&job.integration_id) {
            addr.do_send(actor::Work::Job {
                id: job.job_id,
                conversation_id: job.conversation_id,
                chatwoot_message_id: job.chatwoot_message_id,
            });
        }
    }
}

impl Handler<AgentTyping> for Manager {
    type Result = ();

    fn handle(&mut self, typing: AgentTyping, _ctx: &mut Context<Self>) {
        if let Some(addr) = self.running.get(&typing.integration_id) {
            addr.do_send(actor::Work::Typing { conversation_id: typing.conversation_id, on: typing.on });
        }
    }
}

impl Handler<Owned> for Manager {
    type Result = ();

    fn handle(&mut self, Owned(ids): Owned, ctx: &mut Context<Self>) {
        for id in ids {
            ctx.notify(Start(id));
        }
    }
}

impl Handler<Lost> for Manager {
    type Result = ();

    fn handle(&mut self, Lost(ids): Lost, _ctx: &mut Context<Self>) {
        for id in ids {
            if self.running.contains_key(&id) {
                tracing::info!(integration_id = %id, "stopping: this replica no longer holds the lease");
            }
            self.stop(&id, true);
        }
    }
}

impl Handler<PickIdle> for Manager {
    type Result = Vec<String>;

    fn handle(&mut self, PickIdle(n): PickIdle, _ctx: &mut Context<Self>) -> Vec<String> {
        let mut running: Vec<(Option<chrono::DateTime<chrono::Utc>>, String)> = self
            .running
            .keys()
            .map(|id| (self.shared.live.get(id).and_then(|live| live.snapshot().last_event_at), id.clone()))
            .collect();
        // No event ever first, then the longest quiet.
        running.sort();
        running.into_iter().take(n).map(|(_, id)| id).collect()
    }
}

impl Handler<Reconsider> for Manager {
    type Result = ();

    fn handle(&mut self, Reconsider(id): Reconsider, ctx: &mut Context<Self>) {
        if self.running.contains_key(&id) {
            ctx.notify(Start(id));
        }
    }
}

impl Handler<StartAll> for Manager {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, _: StartAll, _ctx: &mut Context<Self>) -> Self::Result {
        let shared = self.shared.clone();
        Box::pin(
            async move {
                // With replicas, the keeper's first round decided what runs here (`Owned`).
                if shared.replica().is_some() {
                    return Vec::new();
                }
                let Ok(services) = shared.booted() else { return Vec::new() };
                let mut ids =
                    store::integrations::ids_with_status(&services.db, Status::Active).await.unwrap_or_default();
                // An integration in `error` may recover (e.g. RyzeAPI fixed its token): keep trying.
                ids.extend(store::integrations::ids_with_status(&services.db, Status::Error).await.unwrap_or_default());
                ids
            }
            .into_actor(self)
            .map(|ids, _act, ctx| {
                let count = ids.len();
                for id in ids {
                    ctx.notify(Start(id));
                }
                count
            }),
        )
    }
}

impl Handler<StopAll> for Manager {
    type Result = usize;

    fn handle(&mut self, _: StopAll, _ctx: &mut Context<Self>) -> usize {
        let ids: Vec<String> = self.running.keys().cloned().collect();
        for id in &ids {
            self.stop(id, true);
        }
        ids.len()
    }
}
