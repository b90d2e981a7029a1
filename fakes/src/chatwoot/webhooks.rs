//! Webhook delivery to API inboxes' `webhook_url` (reference §6, contract §5).
//!
//! As in Chatwoot, an event is queued as *what happened to which record* (event name and ids), and its
//! JSON is built from the current state only when a worker picks the job up: `AsyncDispatcher` enqueues
//! `EventDispatcherJob` with the record (re-read by GlobalID when the job runs), and `WebhookListener`
//! builds `message.webhook_data` then (`app/dispatchers/async_dispatcher.rb`,
//! `app/listeners/webhook_listener.rb`). A message deleted before its `message_created` goes out therefore
//! arrives deleted, and a record destroyed meanwhile sends nothing (ActiveJob's DeserializationError).
//!
//! Jobs run on N concurrent workers, 10 by default like Sidekiq's `:concurrency: 10`
//! (`config/sidekiq.yml`), so deliveries may overtake each other; one worker delivers in order. An optional
//! reproducible shuffle delays each job before it joins the pool. Queuing never blocks while the state lock
//! is held, and no request is sent while holding it. From 4.13 each delivery is signed with the inbox's
//! current `secret` over the exact body sent.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Semaphore, mpsc};

use super::{State, conversations, lock, messages, uuid};

/// Sidekiq's default concurrency (`config/sidekiq.yml`: `SIDEKIQ_CONCURRENCY`, 10).
pub(super) const DEFAULT_WORKERS: usize = 10;

/// One webhook delivery, as Chatwoot made it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    pub event: String,
    pub url: String,
    /// The receiver's HTTP status; `None` when there was none (refused, timed out, blocked).
    pub status: Option<u16>,
    /// Chatwoot's error text when the delivery failed (non-2xx or transport error).
    pub error: Option<String>,
    pub body: Value,
    /// `X-Chatwoot-Delivery`.
    pub delivery_id: String,
    /// `X-Chatwoot-Timestamp` and `X-Chatwoot-Signature` (4.13+).
    pub timestamp: Option<String>,
    pub signature: Option<String>,
}

/// The record an event is about; its JSON is built when the job runs.
#[derive(Debug, Clone)]
pub(super) enum Subject {
    Message(i64),
    /// `changed_attributes` is captured when the change happens (the dispatcher passes `previous_changes`).
    Conversation {
        id: i64,
        changed: Option<Value>,
    },
    Typing {
        conversation_id: i64,
        user: Value,
        private: bool,
    },
}

/// A queued job.
#[derive(Debug)]
pub(super) struct Job {
    event: String,
    inbox_id: i64,
    subject: Subject,
    delivery_id: String,
}

#[derive(Debug)]
pub(super) struct Webhooks {
    tx: mpsc::UnboundedSender<Job>,
    pub paused: bool,
    held: Vec<Job>,
    pub duplicates: bool,
    /// Queued or being delivered.
    pub in_flight: usize,
    pub deliveries: Vec<WebhookDelivery>,
    /// `WEBHOOK_TIMEOUT` (5 s by default).
    pub timeout: Duration,
    /// Simulate SafeFetch's private-network block (4.14+ without `SAFE_FETCH_ALLOW_PRIVATE_NETWORK`).
    pub block_private: bool,
    /// Concurrent workers; `slots` holds that many permits.
    workers: usize,
    slots: Arc<Semaphore>,
    /// Each job waits a pseudo-random `0..max` before joining the pool.
    pub shuffle: Option<Duration>,
    shuffle_draws: u64,
}

impl Webhooks {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Job>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let webhooks = Self {
            tx,
            paused: false,
            held: Vec::new(),
            duplicates: false,
            in_flight: 0,
            deliveries: Vec::new(),
            timeout: Duration::from_secs(5),
            block_private: false,
            workers: DEFAULT_WORKERS,
            slots: Arc::new(Semaphore::new(DEFAULT_WORKERS)),
            shuffle: None,
            shuffle_draws: 0,
        };
        (webhooks, rx)
    }

    pub(super) fn slots(&self) -> Arc<Semaphore> {
        self.slots.clone()
    }

    fn enqueue(&mut self, job: Job) {
        if self.paused {
            self.held.push(job);
        } else if self.tx.send(job).is_ok() {
            self.in_flight += 1;
        }
    }

    pub fn resume(&mut self) {
        self.paused = false;
        for job in std::mem::take(&mut self.held) {
            self.enqueue(job);
        }
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Changes how many jobs run at once (at least 1); running deliveries finish first.
    pub fn set_workers(&mut self, workers: usize) {
        let workers = workers.max(1);
        if workers > self.workers {
            self.slots.add_permits(workers - self.workers);
        } else if workers < self.workers {
            let (slots, fewer) = (self.slots.clone(), (self.workers - workers) as u32);
            actix_web::rt::spawn(async move {
                if let Ok(permits) = slots.acquire_many_owned(fewer).await {
                    permits.forget();
                }
            });
        }
        self.workers = workers;
    }

    /// The next shuffle delay (xorshift over a counter: reproducible).
    fn shuffle_delay(&mut self) -> Option<Duration> {
        let max = self.shuffle?;
        self.shuffle_draws = self.shuffle_draws.wrapping_add(1);
        let mut x = self.shuffle_draws.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 29;
        let max_micros = u64::try_from(max.as_micros()).unwrap_or(u64::MAX).max(1);
        Some(Duration::from_micros(x % max_micros))
    }
}

/// What a worker needs to send one job, taken under the lock.
struct Prepared {
    url: String,
    body: Vec<u8>,
    value: Value,
    secret: Option<String>,
    message_id: Option<i64>,
    timeout: Duration,
    blocked: Option<String>,
}

impl State {
    /// Queues an event for the inbox's `webhook_url` (none when it is blank). `message_created` and
    /// `message_updated` are queued twice when duplicates are on (different delivery ids).
    pub(super) fn emit(&mut self, inbox_id: i64, event: &str, subject: Subject) {
        let Some(inbox) = self.inboxes.get(&inbox_id) else { return };
        if inbox.webhook_url.trim().is_empty() {
            return;
        }
        let doubled = self.webhooks.duplicates && matches!(event, "message_created" | "message_updated");
        for _ in 0..if doubled { 2 } else { 1 } {
            let job = Job { event: event.to_owned(), inbox_id, subject: subject.clone(), delivery_id: uuid() };
            self.webhooks.enqueue(job);
        }
    }

    /// The payload as `WebhookListener` builds it now; `None` when the record is gone.
    fn payload(&self, event: &str, subject: &Subject) -> Option<Value> {
        let mut payload = match subject {
            Subject::Message(id) => messages::webhook_json(self, self.messages.get(id)?),
            Subject::Conversation { id, changed } => {
                let mut value = conversations::conversation_webhook_json(self, self.conversations.get(id)?);
                if let (Some(changed), Some(map)) = (changed, value.as_object_mut()) {
                    map.insert("changed_attributes".into(), changed.clone());
                }
                value
            }
            Subject::Typing { conversation_id, user, private } => {
                let conversation = self.conversations.get(conversation_id)?;
                json!({"user": user, "conversation": conversations::conversation_webhook_json(self, conversation),
                       "is_private": private})
            }
        };
        payload.as_object_mut()?.insert("event".into(), json!(event));
        Some(payload)
    }

    /// Builds a job's request from the current state (URL, secret and body as they are now).
    fn prepare(&mut self, job: &Job) -> Option<Prepared> {
        let inbox = self.inboxes.get(&job.inbox_id)?;
        let url = inbox.webhook_url.trim().to_owned();
        if url.is_empty() {
            return None;
        }
        let secret = self.signing_supported().then(|| inbox.secret.clone());
        let value = self.payload(&job.event, &job.subject)?;
        let ssrf = self.webhooks.block_private && super::version_at_least(&self.version, (4, 14));
        Some(Prepared {
            blocked: if ssrf { private_host(&url) } else { None },
            url,
            body: serde_json::to_vec(&value).unwrap_or_default(),
            value,
            secret,
            message_id: match job.subject {
                Subject::Message(id) => Some(id),
                _ => None,
            },
            timeout: self.webhooks.timeout,
        })
    }

    fn finish_delivery(&mut self, job: Job, prepared: Prepared, result: Attempt) {
        self.webhooks.in_flight = self.webhooks.in_flight.saturating_sub(1);
        self.webhooks.deliveries.push(WebhookDelivery {
            event: job.event.clone(),
            url: prepared.url,
            status: result.status,
            error: result.error.clone(),
            body: prepared.value,
            delivery_id: job.delivery_id,
            timestamp: result.timestamp,
            signature: result.signature,
        });
        // A failed message_created/updated marks that message failed (`Webhooks::Trigger#handle_error`).
        if let (Some(error), Some(message_id)) = (result.error, prepared.message_id)
            && matches!(job.event.as_str(), "message_created" | "message_updated")
        {
            messages::set_status(self, message_id, "failed", Some(error));
        }
    }
}

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`, the `X-Chatwoot-Signature` value.
pub fn sign_webhook(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return String::new() };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

struct Attempt {
    status: Option<u16>,
    error: Option<String>,
    timestamp: Option<String>,
    signature: Option<String>,
}

fn private_host(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?.trim_matches(|c| c == '[' || c == ']').to_owned();
    let private = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified(),
        Ok(IpAddr::V6(ip)) => ip.is_loopback() || ip.is_unspecified() || (ip.segments()[0] & 0xfe00) == 0xfc00,
        Err(_) => host == "localhost" || !host.contains('.'),
    };
    private.then_some(host)
}

/// The dispatcher: hands each job to a worker slot (at most `workers` at once), never holding the state
/// lock while sending.
pub(super) async fn deliver(state: Weak<Mutex<State>>, mut rx: mpsc::UnboundedReceiver<Job>, slots: Arc<Semaphore>) {
    let client = Rc::new(awc::Client::builder().disable_timeout().finish());
    while let Some(job) = rx.recv().await {
        let Some(strong) = state.upgrade() else { break };
        let delay = lock(&strong).webhooks.shuffle_delay();
        drop(strong);
        let (state, client, slots) = (state.clone(), client.clone(), slots.clone());
        match delay {
            // Shuffled: the job waits, then queues for a slot, so later jobs can overtake it.
            Some(delay) => {
                actix_web::rt::spawn(async move {
                    actix_web::rt::time::sleep(delay).await;
                    if let Ok(permit) = slots.acquire_owned().await {
                        run(&state, &client, job).await;
                        drop(permit);
                    }
                });
            }
            // In order: the dispatcher waits for a free slot before taking the next job.
            None => {
                let Ok(permit) = slots.acquire_owned().await else { break };
                actix_web::rt::spawn(async move {
                    run(&state, &client, job).await;
                    drop(permit);
                });
            }
        }
    }
}

/// One job on a worker: build from the current state, send, record.
async fn run(state: &Weak<Mutex<State>>, client: &awc::Client, job: Job) {
    let Some(strong) = state.upgrade() else { return };
    let prepared = {
        let mut guard = lock(&strong);
        let prepared = guard.prepare(&job);
        if prepared.is_none() {
            // The record or the inbox's webhook is gone: the job ends without a request.
            guard.webhooks.in_flight = guard.webhooks.in_flight.saturating_sub(1);
        }
        prepared
    };
    drop(strong);
    let Some(prepared) = prepared else { return };
    let result = match &prepared.blocked {
        Some(host) => Attempt {
            status: None,
            error: Some(format!("Hostname '{host}' has no public ip addresses")),
            timestamp: None,
            signature: None,
        },
        None => attempt(client, &job, &prepared).await,
    };
    let Some(strong) = state.upgrade() else { return };
    lock(&strong).finish_delivery(job, prepared, result);
}

async fn attempt(client: &awc::Client, job: &Job, item: &Prepared) -> Attempt {
    let timestamp = Utc::now().timestamp().to_string();
    let signature = item.secret.as_deref().map(|secret| sign_webhook(secret, &timestamp, &item.body));
    // `lib/webhooks/trigger.rb` posts with `RestClient::Request.execute`: a new connection per webhook,
    // never a kept-alive one (a load balancer in front of the bridge sees each delivery on its own).
    let mut request = client
        .post(&item.url)
        .force_close()
        .timeout(item.timeout)
        .insert_header(("content-type", "application/json"))
        .insert_header(("accept", "application/json"))
        .insert_header(("x-chatwoot-delivery", job.delivery_id.clone()));
    if let Some(signature) = &signature {
        request = request
            .insert_header(("x-chatwoot-timestamp", timestamp.clone()))
            .insert_header(("x-chatwoot-signature", signature.clone()));
    }
    let (status, error) = match request.send_body(item.body.clone()).await {
        Ok(mut response) => {
            let _ = actix_web::rt::time::timeout(item.timeout, response.body().limit(1024 * 1024)).await;
            let code = response.status();
            if code.is_success() {
                (Some(code.as_u16()), None)
            } else {
                (Some(code.as_u16()), Some(format!("{} {}", code.as_u16(), code.canonical_reason().unwrap_or(""))))
            }
        }
        Err(awc::error::SendRequestError::Timeout) => {
            (None, Some("Net::ReadTimeout with #<TCPSocket:(closed)>".to_owned()))
        }
        Err(awc::error::SendRequestError::Connect(e)) => {
            let target = url::Url::parse(&item.url).ok();
            let host = target.as_ref().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
            let port = target.as_ref().and_then(url::Url::port_or_known_default).unwrap_or(0);
            (None, Some(format!("Failed to open TCP connection to {host}:{port} ({e})")))
        }
        Err(e) => (None, Some(e.to_string())),
    };
    Attempt { status, error, timestamp: Some(timestamp).filter(|_| signature.is_some()), signature }
}
