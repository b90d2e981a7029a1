//! Group commit for the writes every relayed message makes: storing a received event, starting a
//! message's creation, recording its Chatwoot id and closing the event.
//!
//! Callers from every integration hand their write to one task and await its answer; the task runs
//! whatever has queued up meanwhile in **one transaction**, then answers each caller only after the
//! commit. So each caller still gets "durable before I continue" (stored before acknowledged, recorded
//! before Chatwoot is called), while a busy bridge pays one `fsync` per group instead of one per write.
//! SQLite has one writer at a time anyway; this is what lets it keep up. If a group fails, its writes
//! are retried one transaction each, so one bad write never fails its neighbours.

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait as _};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::events::{self, NewEvent, Stored};
use super::messages::{self, NewMapping, Started};

/// Writes waiting for the writer; a full queue makes callers wait (back-pressure, bounded memory).
const QUEUE: usize = 4096;
/// Writes per transaction at most (a group stays short, so the first caller's wait stays short).
const GROUP: usize = 256;

/// One write, where its answer goes, and its result once applied (sent only after the commit).
enum Write {
    StoreEvent { event: NewEvent, reply: Reply<Stored>, result: Option<Stored> },
    StartMessage { mapping: NewMapping, reply: Reply<Started>, result: Option<Started> },
    CompleteMessage { mapping: i64, chatwoot_id: i64, conversation: i64, reply: Reply<()>, result: Option<()> },
    EventDone { event: i64, reply: Reply<()>, result: Option<()> },
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

impl Write {
    /// Runs the write inside `txn` and keeps its result.
    async fn apply(&mut self, txn: &DatabaseTransaction) -> Result<(), DbErr> {
        match self {
            Self::StoreEvent { event, result, .. } => *result = Some(events::insert_in(txn, event.clone()).await?),
            Self::StartMessage { mapping, result, .. } => *result = Some(messages::start_in(txn, mapping).await?),
            Self::CompleteMessage { mapping, chatwoot_id, conversation, result, .. } => {
                messages::complete_in(txn, *mapping, *chatwoot_id, *conversation).await?;
                *result = Some(());
            }
            Self::EventDone { event, result, .. } => {
                events::mark_done_in(txn, *event).await?;
                *result = Some(());
            }
        }
        Ok(())
    }

    /// Forgets a result that was rolled back.
    fn reset(&mut self) {
        match self {
            Self::StoreEvent { result, .. } => *result = None,
            Self::StartMessage { result, .. } => *result = None,
            Self::CompleteMessage { result, .. } | Self::EventDone { result, .. } => *result = None,
        }
    }

    /// Answers the caller: the committed result, or `error`. A caller that went away (its actor stopped)
    /// no longer needs the answer.
    fn answer(self, error: impl Fn() -> StoreError) {
        fn send<T>(reply: Reply<T>, result: Option<T>, error: impl Fn() -> StoreError) {
            let _ = reply.send(result.ok_or_else(error));
        }
        match self {
            Self::StoreEvent { reply, result, .. } => send(reply, result, error),
            Self::StartMessage { reply, result, .. } => send(reply, result, error),
            Self::CompleteMessage { reply, result, .. } | Self::EventDone { reply, result, .. } => {
                send(reply, result, error)
            }
        }
    }
}

/// The handle callers use; cheap to clone.
#[derive(Clone, Debug)]
pub struct Writer {
    queue: mpsc::Sender<Write>,
}

impl Writer {
    /// Starts the writer task on the current runtime, writing through `db`.
    pub fn start(db: DatabaseConnection) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, receiver));
        Self { queue }
    }

    /// Stores a received event (see [`events::insert`]).
    pub async fn store_event(&self, event: NewEvent) -> Result<Stored, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::StoreEvent { event, reply, result: None }, answer).await
    }

    /// Records that a message is about to be created in Chatwoot (see [`messages::start`]).
    pub async fn start_message(&self, mapping: NewMapping) -> Result<Started, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::StartMessage { mapping, reply, result: None }, answer).await
    }

    /// Remembers the Chatwoot id of a created message (see [`messages::complete`]).
    pub async fn complete_message(&self, mapping: i64, chatwoot_id: i64, conversation: i64) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::CompleteMessage { mapping, chatwoot_id, conversation, reply, result: None }, answer).await
    }

    /// Marks a stored event processed (see [`events::mark_done`]).
    pub async fn event_done(&self, event: i64) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Write::EventDone { event, reply, result: None }, answer).await
    }

    async fn submit<T>(&self, write: Write, answer: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        self.queue.send(write).await.map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

async fn run(db: DatabaseConnection, mut receiver: mpsc::Receiver<Write>) {
    let mut group = Vec::with_capacity(GROUP);
    while receiver.recv_many(&mut group, GROUP).await > 0 {
        match commit(&db, &mut group).await {
            Ok(()) => group.drain(..).for_each(|write| write.answer(|| StoreError::WriterGone)),
            Err(error) => {
                tracing::warn!(%error, writes = group.len(), "a group commit failed; writing one by one");
                for mut write in group.drain(..) {
                    write.reset();
                    match commit(&db, std::slice::from_mut(&mut write)).await {
                        Ok(()) => write.answer(|| StoreError::WriterGone),
                        Err(error) => {
                            write.reset();
                            let error = error.to_string();
                            write.answer(|| StoreError::Db(DbErr::Custom(error.clone())));
                        }
                    }
                }
            }
        }
    }
}

/// Runs every write of `group` in one transaction. Results are kept in the writes; nobody is answered.
async fn commit(db: &DatabaseConnection, group: &mut [Write]) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    for write in group.iter_mut() {
        write.apply(&txn).await?;
    }
    txn.commit().await
}
