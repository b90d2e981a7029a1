//! Group commit for the writes every relayed message makes: storing a received event, starting a
//! message's creation, recording its Chatwoot id, closing the event; storing an agent's reply job and
//! recording its send; a message's tick. Every hot-path write goes through here, so the writer is the one
//! user of SQLite's single write connection on those paths and nothing queues beside it.
//!
//! Callers from every integration hand their write to one task and await its answer; the task runs
//! whatever has queued up meanwhile as **one statement per kind of write, in one transaction**, then
//! answers each caller only after the commit. So each caller still gets "durable before I continue"
//! (stored before acknowledged, recorded before Chatwoot is called), while a busy bridge pays one `fsync`
//! and a handful of statements per group instead of a statement and an `fsync` per write. A group of one
//! kind is a single statement and needs no transaction around it. SQLite has one writer at a time anyway;
//! this is what lets it keep up. If a group fails, its writes are retried one at a time, so one bad write
//! never fails its neighbours.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait as _};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::events::{self, NewEvent, Stored};
use super::jobs::{self, NewJob};
use super::leases;
use super::messages::{self, Created, NewMapping, Outgoing, Started};
use crate::fence::{Fence, FenceToken, Fenced};

/// Writes waiting for the writer; a full queue makes callers wait (back-pressure, bounded memory).
const QUEUE: usize = 4096;
/// Writes per transaction at most (a group stays short, so the first caller's wait stays short).
const GROUP: usize = 256;

/// One write and where its answer goes (sent only after the commit).
enum Write {
    StoreEvent {
        event: NewEvent,
        reply: Reply<Stored>,
    },
    StartMessage {
        mapping: NewMapping,
        reply: Reply<Started>,
    },
    CompleteMessage {
        created: Created,
        reply: Reply<()>,
    },
    /// Nobody waits for this one: a lost "done" only means a replay that finds its work done.
    EventDone {
        event: i64,
    },
    StoreJob {
        job: NewJob,
        reply: Reply<Option<i64>>,
    },
    /// A change to one row, in the group's transaction (statement by statement: these are fewer).
    Row {
        change: RowChange,
        reply: Reply<()>,
    },
}

/// The single-row changes the outbound path and receipts make.
enum RowChange {
    JobSending { job: i64, since: Option<DateTime<Utc>> },
    JobPartsSent { job: i64, parts: i32 },
    JobFinished { job: i64, state: jobs::WorkState, error: String },
    Outgoing(Outgoing),
    LastStatus { mapping: i64, status: messages::Tick },
}

impl RowChange {
    async fn apply(&self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        match self {
            Self::JobSending { job, since } => jobs::set_sending_in(db, *job, *since).await,
            Self::JobPartsSent { job, parts } => jobs::set_parts_sent_in(db, *job, *parts).await,
            Self::JobFinished { job, state, error } => jobs::finish_in(db, *job, *state, error).await,
            Self::Outgoing(outgoing) => messages::record_outgoing_in(db, outgoing).await,
            Self::LastStatus { mapping, status } => messages::set_last_status_in(db, *mapping, *status).await,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write and the epoch it was made under (several replicas): refused if that epoch is no longer the
/// integration's.
struct Queued {
    write: Write,
    fence: Option<FenceToken>,
}

/// What a group commit did: the results of the writes it applied, and the integrations whose writes it
/// refused (stale epoch).
struct Committed {
    applied: Applied,
    refused: std::collections::HashSet<String>,
}

impl Queued {
    fn refused(&self, refused: &std::collections::HashSet<String>) -> bool {
        self.fence.as_ref().is_some_and(|token| refused.contains(&*token.integration_id))
    }
}

/// What a group's statements returned, per kind, in the order of the group's writes of that kind.
#[derive(Default)]
struct Applied {
    stored: Vec<Stored>,
    started: Vec<Started>,
    jobs: Vec<Option<i64>>,
}

/// Every writer of the bridge. SQLite has one write connection, so it gets one writer. PostgreSQL gets
/// several, so that one group's commit (a WAL flush on the server) overlaps another's. An integration
/// always uses the same writer: its writes keep the order they were submitted in, which is all its actor
/// relies on.
#[derive(Clone, Debug)]
pub struct Writers {
    shards: std::sync::Arc<[Writer]>,
}

impl Writers {
    /// Starts `count` (at least one) writers on the current runtime, writing through `db`.
    pub fn start(db: &DatabaseConnection, count: usize) -> Self {
        Self { shards: (0..count.max(1)).map(|_| Writer::start(db.clone())).collect() }
    }

    /// The writer of an integration.
    pub fn of(&self, integration_id: &str) -> &Writer {
        // FNV-1a: stable and cheap; any spread will do.
        let hash = integration_id
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
        let shards = self.shards.len() as u64;
        let index = usize::try_from(hash % shards).unwrap_or(0);
        &self.shards[index]
    }
}

/// The handle callers use; cheap to clone.
#[derive(Clone, Debug)]
pub struct Writer {
    queue: mpsc::Sender<Queued>,
    /// The lease this handle's writes are made under (`None`: unfenced, a single process or the API).
    fence: Option<Fence>,
}

impl Writer {
    /// Starts the writer task on the current runtime, writing through `db`.
    pub fn start(db: DatabaseConnection) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, receiver));
        Self { queue, fence: None }
    }

    /// This writer, for an integration's relay under `fence`: a write is not even queued when the lease
    /// is not held here, is refused by the database when its epoch is stale, and answers [`Fenced`] when
    /// the lease was lost while it was written (so that the caller does not go on to call Chatwoot or
    /// RyzeAPI).
    pub fn fenced(&self, fence: Fence) -> Self {
        Self { queue: self.queue.clone(), fence: Some(fence) }
    }

    fn token(&self) -> Option<FenceToken> {
        self.fence.as_ref().and_then(|fence| fence.token().cloned())
    }

    fn check(&self) -> Result<(), StoreError> {
        match &self.fence {
            Some(fence) if !fence.holds() => Err(Fenced.into()),
            _ => Ok(()),
        }
    }

    /// Stores received events, numbered in the order given: each is queued before the next, then the
    /// answers are awaited together, so the batch still shares group commits. (A `join_all` of
    /// [`Self::store_event`]s queued the sends past the runtime's cooperative budget, 128 a poll, in
    /// reverse: rows, hence a chat's messages, were numbered backwards. `tests/link.rs` keeps it out.)
    pub async fn store_events(&self, events: Vec<NewEvent>) -> Vec<Result<Stored, StoreError>> {
        let mut answers = Vec::with_capacity(events.len());
        for event in events {
            let (reply, answer) = oneshot::channel();
            let queued = match self.check() {
                Ok(()) => self
                    .queue
                    .send(Queued { write: Write::StoreEvent { event, reply }, fence: self.token() })
                    .await
                    .map_err(|_| StoreError::WriterGone),
                Err(error) => Err(error),
            };
            answers.push(queued.map(|()| answer));
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            let stored = match answer {
                Ok(answer) => match answer.await {
                    Ok(stored) => stored.and_then(|stored| self.check().map(|()| stored)),
                    Err(_) => Err(StoreError::WriterGone),
                },
                Err(error) => Err(error),
            };
            results.push(stored);
        }
        results
    }

    /// Stores a received event (see [`events::insert_many_in`]).
    pub async fn store_event(&self, event: NewEvent) -> Result<Stored, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::StoreEvent { event, reply }, answer).await
    }

    /// Records that a message is about to be created in Chatwoot (see [`messages::start_many_in`]).
    pub async fn start_message(&self, mapping: NewMapping) -> Result<Started, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::StartMessage { mapping, reply }, answer).await
    }

    /// Remembers the Chatwoot id of a created message (see [`messages::complete_many_in`]).
    pub async fn complete_message(&self, mapping: i64, chatwoot_id: i64, conversation: i64) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::CompleteMessage { created: (mapping, chatwoot_id, conversation), reply }, answer).await
    }

    /// Queues marking a stored event processed, without waiting for it to be written: the event's effects
    /// are recorded already (a replay finds them and does nothing), so its caller need not wait a commit.
    pub async fn event_done_later(&self, event: i64) -> Result<(), StoreError> {
        self.check()?;
        let queued = Queued { write: Write::EventDone { event }, fence: self.token() };
        self.queue.send(queued).await.map_err(|_| StoreError::WriterGone)
    }

    /// Stores an agent's outbound job; `None` for a duplicate (see [`jobs::insert_many_in`]).
    pub async fn store_job(&self, job: NewJob) -> Result<Option<i64>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::StoreJob { job, reply }, answer).await
    }

    /// Records that a send of the job starts now (`Some`) or that its outcome is known (`None`).
    pub async fn job_sending(&self, job: i64, since: Option<DateTime<Utc>>) -> Result<(), StoreError> {
        self.change(RowChange::JobSending { job, since }).await
    }

    /// Records that `parts` parts of the job's message were accepted by RyzeAPI.
    pub async fn job_parts_sent(&self, job: i64, parts: i32) -> Result<(), StoreError> {
        self.change(RowChange::JobPartsSent { job, parts }).await
    }

    /// Closes a job as `state` (`done`, or `failed` with the reason).
    pub async fn job_finished(&self, job: i64, state: jobs::WorkState, error: &str) -> Result<(), StoreError> {
        self.change(RowChange::JobFinished { job, state, error: error.to_owned() }).await
    }

    /// Records a message RyzeAPI accepted (see [`messages::record_outgoing_in`]).
    pub async fn record_outgoing(&self, outgoing: Outgoing) -> Result<(), StoreError> {
        self.change(RowChange::Outgoing(outgoing)).await
    }

    /// Remembers the last tick set on a Chatwoot message.
    pub async fn set_last_status(&self, mapping: i64, status: messages::Tick) -> Result<(), StoreError> {
        self.change(RowChange::LastStatus { mapping, status }).await
    }

    async fn change(&self, change: RowChange) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::Row { change, reply }, answer).await
    }

    async fn submit<T>(&self, write: Write, answer: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        self.check()?;
        self.queue.send(Queued { write, fence: self.token() }).await.map_err(|_| StoreError::WriterGone)?;
        let answered = answer.await.map_err(|_| StoreError::WriterGone)??;
        self.check()?;
        Ok(answered)
    }
}

/// How long "event done" writes, which nobody waits for, may wait for other writes to share a commit.
const DONE_LINGER: Duration = Duration::from_millis(50);

async fn run(db: DatabaseConnection, mut receiver: mpsc::Receiver<Queued>) {
    let mut group = Vec::with_capacity(GROUP);
    while receiver.recv_many(&mut group, GROUP).await > 0 {
        // On a quiet bridge each "done" would cost an fsync of its own; let them ride with the next writes.
        if group.iter().all(|queued| matches!(queued.write, Write::EventDone { .. })) && group.len() < GROUP {
            let more = GROUP - group.len();
            let _ = tokio::time::timeout(DONE_LINGER, receiver.recv_many(&mut group, more)).await;
        }
        match commit(&db, &group).await {
            Ok(applied) => answer(group.drain(..), applied),
            Err(error) => {
                tracing::warn!(%error, writes = group.len(), "a group commit failed; writing one by one");
                for write in group.drain(..) {
                    let alone = [write];
                    match commit(&db, &alone).await {
                        Ok(applied) => answer(alone, applied),
                        Err(error) => {
                            let error = error.to_string();
                            fail(alone, || StoreError::Db(DbErr::Custom(error.clone())));
                        }
                    }
                }
            }
        }
    }
}

/// Runs every write of `group`, one statement per kind, atomically. Nobody is answered yet. Fenced
/// writes are checked against the current epochs first, in the same transaction (which holds the lease
/// rows it read until the commit, so a take-over waits for it); those of a stale epoch are refused.
async fn commit(db: &DatabaseConnection, group: &[Queued]) -> Result<Committed, DbErr> {
    let tokens: Vec<&FenceToken> = group.iter().filter_map(|queued| queued.fence.as_ref()).collect();
    if !tokens.is_empty() {
        let txn = db.begin().await?;
        let refused = leases::stale_in(&txn, &tokens).await?;
        let applied = apply(&txn, group.iter().filter(|queued| !queued.refused(&refused)).map(|q| &q.write)).await?;
        txn.commit().await?;
        return Ok(Committed { applied, refused });
    }
    let writes: Vec<&Write> = group.iter().map(|queued| &queued.write).collect();
    // One write, or writes of one batched kind, are a single statement: atomic and durable on its own.
    // Row changes are a statement each.
    let one_statement = match writes.as_slice() {
        [] | [_] => true,
        [Write::Row { .. }, ..] => false,
        [first, rest @ ..] => rest.iter().all(|write| std::mem::discriminant(*write) == std::mem::discriminant(*first)),
    };
    let refused = std::collections::HashSet::new();
    if one_statement {
        return Ok(Committed { applied: apply(db, writes).await?, refused });
    }
    let txn = db.begin().await?;
    let applied = apply(&txn, writes).await?;
    txn.commit().await?;
    Ok(Committed { applied, refused })
}

async fn apply<'a>(db: &impl ConnectionTrait, group: impl IntoIterator<Item = &'a Write>) -> Result<Applied, DbErr> {
    let group: Vec<&Write> = group.into_iter().collect();
    let (mut new_events, mut mappings, mut created, mut done, mut new_jobs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for write in group.iter().copied() {
        match write {
            Write::StoreEvent { event, .. } => new_events.push(event),
            Write::StartMessage { mapping, .. } => mappings.push(mapping),
            Write::CompleteMessage { created: c, .. } => created.push(*c),
            Write::EventDone { event } => done.push(*event),
            Write::StoreJob { job, .. } => new_jobs.push(job),
            Write::Row { .. } => {}
        }
    }
    let stored = events::insert_many_in(db, &new_events).await?;
    let started = messages::start_many_in(db, &mappings).await?;
    messages::complete_many_in(db, &created).await?;
    events::mark_done_many_in(db, &done).await?;
    let jobs = jobs::insert_many_in(db, &new_jobs).await?;
    for write in group {
        if let Write::Row { change, .. } = write {
            change.apply(db).await?;
        }
    }
    Ok(Applied { stored, started, jobs })
}

/// Answers every caller of a committed group with its result (refused writes: [`Fenced`]).
fn answer(group: impl IntoIterator<Item = Queued>, committed: Committed) {
    let Committed { applied, refused } = committed;
    let (mut stored, mut started, mut jobs) =
        (applied.stored.into_iter(), applied.started.into_iter(), applied.jobs.into_iter());
    // A missing result cannot happen (one per write of each kind); it is answered as an error anyway.
    let missing = || StoreError::Db(DbErr::Custom("the group commit returned no result for a write".into()));
    for queued in group {
        if queued.refused(&refused) {
            fail([queued], || StoreError::Fenced(Fenced));
            continue;
        }
        match queued.write {
            Write::StoreEvent { reply, .. } => drop(reply.send(stored.next().ok_or_else(missing))),
            Write::StartMessage { reply, .. } => drop(reply.send(started.next().ok_or_else(missing))),
            Write::CompleteMessage { reply, .. } => drop(reply.send(Ok(()))),
            Write::EventDone { .. } => {}
            Write::StoreJob { reply, .. } => drop(reply.send(jobs.next().ok_or_else(missing))),
            Write::Row { reply, .. } => drop(reply.send(Ok(()))),
        }
    }
}

/// Answers every caller of a failed write with `error`. A caller that went away (its actor stopped) no
/// longer needs the answer.
fn fail(group: impl IntoIterator<Item = Queued>, error: impl Fn() -> StoreError) {
    for queued in group {
        match queued.write {
            Write::StoreEvent { reply, .. } => drop(reply.send(Err(error()))),
            Write::StartMessage { reply, .. } => drop(reply.send(Err(error()))),
            Write::CompleteMessage { reply, .. } => drop(reply.send(Err(error()))),
            Write::EventDone { event } => {
                tracing::warn!(event, "marking an event done failed; a replay will find it done")
            }
            Write::StoreJob { reply, .. } => drop(reply.send(Err(error()))),
            Write::Row { reply, .. } => drop(reply.send(Err(error()))),
        }
    }
}
