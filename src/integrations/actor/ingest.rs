//! Frames → stored events: each text frame is parsed, **stored, then acknowledged** (in arrival order, in
//! group-committed batches, with bounded memory), then queued by chat. A new event's payload is kept for
//! its first attempt, which then needs no read.

use std::collections::{HashMap, VecDeque};

use actix::prelude::*;
use awc::ws::Message as WsMessage;
use bytes::Bytes;

use super::IntegrationActor;
use super::queues::Item;
use crate::relay::receipts::{self, Receipt};
use crate::ryzeapi::event::Envelope;
use crate::store::events::{NewEvent, Stored};

/// Bytes of received frames waiting to be stored; beyond this the link is dropped (RyzeAPI re-sends what
/// was not acknowledged), so a slow database never makes memory grow without bound.
const MAX_INGEST_BYTES: usize = 128 * 1024 * 1024;
/// Frames stored in one go (one group commit).
const MAX_STORE_BATCH: usize = 256;

/// Frames waiting to be stored, in arrival order; one insert in flight at a time.
#[derive(Default)]
pub(super) struct Ingest {
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
pub(super) struct FreshPayloads {
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

    pub(super) fn take(&mut self, row: i64) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
        let (payload, stored_at) = self.payloads.remove(&row)?;
        self.bytes -= payload.len();
        Some((payload, stored_at))
    }
}

impl IntegrationActor {
    pub(super) fn on_text(&mut self, text: Bytes, ctx: &mut Context<Self>) {
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
        let store = async move { writer.store_events(events).await };
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
}
