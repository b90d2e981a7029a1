//! Webhook delivery to API inboxes' `webhook_url` (reference §6, contract §5).
//!
//! Events are queued while the state lock is held (never blocking) and delivered in order by one task
//! with an awc client, outside the lock. From 4.13 each delivery is signed with the inbox `secret`.

use std::net::IpAddr;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::mpsc;

use super::{State, lock, messages, uuid};

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

/// A queued delivery.
#[derive(Debug)]
pub(super) struct Outgoing {
    event: String,
    url: String,
    body: Vec<u8>,
    value: Value,
    secret: Option<String>,
    message_id: Option<i64>,
    delivery_id: String,
}

#[derive(Debug)]
pub(super) struct Webhooks {
    tx: mpsc::UnboundedSender<Outgoing>,
    pub paused: bool,
    held: Vec<Outgoing>,
    pub duplicates: bool,
    /// Queued or being delivered.
    pub in_flight: usize,
    pub deliveries: Vec<WebhookDelivery>,
    /// `WEBHOOK_TIMEOUT` (5 s by default).
    pub timeout: Duration,
    /// Simulate SafeFetch's private-network block (4.14+ without `SAFE_FETCH_ALLOW_PRIVATE_NETWORK`).
    pub block_private: bool,
}

impl Webhooks {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Outgoing>) {
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
        };
        (webhooks, rx)
    }

    fn enqueue(&mut self, item: Outgoing) {
        if self.paused {
            self.held.push(item);
        } else if self.tx.send(item).is_ok() {
            self.in_flight += 1;
        }
    }

    pub fn resume(&mut self) {
        self.paused = false;
        for item in std::mem::take(&mut self.held) {
            self.enqueue(item);
        }
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }
}

impl State {
    /// Queues an event for the inbox's `webhook_url` (none when it is blank).
    pub(super) fn emit(&mut self, inbox_id: i64, payload: Value) {
        let Some(inbox) = self.inboxes.get(&inbox_id) else { return };
        if inbox.webhook_url.trim().is_empty() {
            return;
        }
        let url = inbox.webhook_url.clone();
        let secret = self.signing_supported().then(|| inbox.secret.clone());
        let event = payload.get("event").and_then(Value::as_str).unwrap_or_default().to_owned();
        let message_id = event.starts_with("message_").then(|| payload.get("id").and_then(Value::as_i64)).flatten();
        let body = serde_json::to_vec(&payload).unwrap_or_default();
        let copies = if self.webhooks.duplicates && event == "message_created" { 2 } else { 1 };
        for _ in 0..copies {
            self.webhooks.enqueue(Outgoing {
                event: event.clone(),
                url: url.clone(),
                body: body.clone(),
                value: payload.clone(),
                secret: secret.clone(),
                message_id,
                delivery_id: uuid(),
            });
        }
    }

    fn finish_delivery(&mut self, item: Outgoing, result: Attempt) {
        self.webhooks.in_flight = self.webhooks.in_flight.saturating_sub(1);
        self.webhooks.deliveries.push(WebhookDelivery {
            event: item.event.clone(),
            url: item.url,
            status: result.status,
            error: result.error.clone(),
            body: item.value,
            delivery_id: item.delivery_id,
            timestamp: result.timestamp,
            signature: result.signature,
        });
        // A failed message_created/updated marks that message failed (`Webhooks::Trigger#handle_error`).
        if let (Some(error), Some(message_id)) = (result.error, item.message_id)
            && matches!(item.event.as_str(), "message_created" | "message_updated")
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

/// The delivery task: one request at a time, in order, never holding the state lock while sending.
pub(super) async fn deliver(state: Weak<Mutex<State>>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let client = awc::Client::builder().disable_timeout().finish();
    while let Some(item) = rx.recv().await {
        let Some(strong) = state.upgrade() else { break };
        let (timeout, blocked) = {
            let guard = lock(&strong);
            let ssrf = guard.webhooks.block_private && super::version_at_least(&guard.version, (4, 14));
            (guard.webhooks.timeout, if ssrf { private_host(&item.url) } else { None })
        };
        drop(strong);
        let result = match blocked {
            Some(host) => Attempt {
                status: None,
                error: Some(format!("Hostname '{host}' has no public ip addresses")),
                timestamp: None,
                signature: None,
            },
            None => attempt(&client, &item, timeout).await,
        };
        let Some(strong) = state.upgrade() else { break };
        lock(&strong).finish_delivery(item, result);
    }
}

async fn attempt(client: &awc::Client, item: &Outgoing, timeout: Duration) -> Attempt {
    let timestamp = Utc::now().timestamp().to_string();
    let signature = item.secret.as_deref().map(|secret| sign_webhook(secret, &timestamp, &item.body));
    let mut request = client
        .post(&item.url)
        .timeout(timeout)
        .insert_header(("content-type", "application/json"))
        .insert_header(("accept", "application/json"))
        .insert_header(("x-chatwoot-delivery", item.delivery_id.clone()));
    if let Some(signature) = &signature {
        request = request
            .insert_header(("x-chatwoot-timestamp", timestamp.clone()))
            .insert_header(("x-chatwoot-signature", signature.clone()));
    }
    let (status, error) = match request.send_body(item.body.clone()).await {
        Ok(mut response) => {
            let _ = actix_web::rt::time::timeout(timeout, response.body().limit(1024 * 1024)).await;
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
