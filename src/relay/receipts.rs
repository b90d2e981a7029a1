//! Tick coalescing: receipts already stored and queued behind the one being relayed.
//!
//! WhatsApp often reports `delivered` and `read` for a message moments apart; when both are queued before
//! the first `PATCH` goes out (Chatwoot slow, throttled or down), the `delivered` one would cost a call that
//! the `read` behind it overwrites at once. The actor notes each stored receipt here; the relay skips a
//! receipt's message when a later stored receipt carries a higher tick for it. Safe because that later one
//! is stored (it was acknowledged only then) and ticks only move forward. In memory and owner-only: after a
//! restart or a take-over nothing is noted, and every receipt is relayed as before.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::store::messages::Tick;

/// Messages tracked at most; past it, receipts are not noted (and so not coalesced).
const MAX_TRACKED: usize = 50_000;

/// The tick a stored receipt sets, in Chatwoot's order. `failed` is not coalesced either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Receipt {
    Delivered,
    Read,
}

/// The Chatwoot tick a RyzeAPI `message.status` status sets (`delivered`, `read` or `failed`), if any.
pub fn tick_of_status(status: &str) -> Option<Tick> {
    match status {
        "delivered" | "received" => Some(Tick::Delivered),
        "read" | "played" => Some(Tick::Read),
        "error" | "failed" | "server_error" => Some(Tick::Failed),
        _ => None,
    }
}

/// The WhatsApp messages a `message.status` event's data covers.
pub fn message_ids(data: &Value) -> Vec<&str> {
    data.get("messageIds")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

impl Receipt {
    /// The receipt a RyzeAPI `message.status` status means, if it is one that coalesces.
    pub fn of_status(status: &str) -> Option<Self> {
        Self::of_tick(tick_of_status(status)?)
    }

    /// The receipt a tick is, if it is one that coalesces.
    pub fn of_tick(tick: Tick) -> Option<Self> {
        match tick {
            Tick::Delivered => Some(Self::Delivered),
            Tick::Read => Some(Self::Read),
            _ => None,
        }
    }
}

/// The receipt a `message.status` event's data reports, and the WhatsApp messages it covers.
pub fn of_event(data: &Value) -> Option<(Receipt, Vec<String>)> {
    let receipt = Receipt::of_status(data.get("status").and_then(Value::as_str)?)?;
    Some((receipt, message_ids(data).into_iter().map(str::to_owned).collect()))
}

/// The highest receipt stored and not yet relayed, per WhatsApp message id, with its event row.
#[derive(Debug, Default)]
pub struct ReceiptsAhead {
    latest: Mutex<HashMap<String, (Receipt, i64)>>,
}

impl ReceiptsAhead {
    /// Stored event `row` reports `receipt` for `wa_ids`.
    pub fn note<'a>(&self, wa_ids: impl IntoIterator<Item = &'a str>, receipt: Receipt, row: i64) {
        let Ok(mut latest) = self.latest.lock() else { return };
        for wa_id in wa_ids {
            if let Some(entry) = latest.get_mut(wa_id) {
                if (receipt, row) > *entry {
                    *entry = (receipt, row);
                }
            } else if latest.len() < MAX_TRACKED {
                latest.insert(wa_id.to_owned(), (receipt, row));
            }
        }
    }

    /// Whether an event stored after `row` sets a higher tick than `receipt` on `wa_id`: then this one
    /// need not be sent.
    pub fn superseded(&self, wa_id: &str, receipt: Receipt, row: i64) -> bool {
        let Ok(latest) = self.latest.lock() else { return false };
        latest.get(wa_id).is_some_and(|(ahead, ahead_row)| *ahead > receipt && *ahead_row > row)
    }

    /// Event `row` is relayed: what it noted is no longer ahead of anything.
    pub fn relayed<'a>(&self, wa_ids: impl IntoIterator<Item = &'a str>, row: i64) {
        let Ok(mut latest) = self.latest.lock() else { return };
        for wa_id in wa_ids {
            if latest.get(wa_id).is_some_and(|(_, noted)| *noted == row) {
                latest.remove(wa_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_read_supersedes_a_delivered_and_nothing_else() {
        let ahead = ReceiptsAhead::default();
        ahead.note(["a", "b"], Receipt::Delivered, 10);
        ahead.note(["a"], Receipt::Read, 11);
        assert!(ahead.superseded("a", Receipt::Delivered, 10));
        assert!(!ahead.superseded("a", Receipt::Read, 11), "the read itself goes out");
        assert!(!ahead.superseded("b", Receipt::Delivered, 10), "nothing higher behind b");
        // A read stored before the delivered (out of order on the link) does not skip the later one;
        // the relay's own rank check keeps the tick from moving back.
        ahead.note(["c"], Receipt::Read, 20);
        ahead.note(["c"], Receipt::Delivered, 21);
        assert!(!ahead.superseded("c", Receipt::Delivered, 21));
        ahead.relayed(["a"], 10);
        assert!(ahead.superseded("a", Receipt::Delivered, 10), "only the noting row clears an entry");
        ahead.relayed(["a"], 11);
        ahead.relayed(["b"], 10);
        ahead.relayed(["c"], 20);
        assert!(ahead.latest.lock().unwrap().is_empty(), "{:?}", ahead.latest.lock().unwrap());
    }

    #[test]
    fn reads_a_status_event() {
        let data = serde_json::json!({"status": "read", "messageIds": ["A", "B"]});
        assert_eq!(of_event(&data), Some((Receipt::Read, vec!["A".to_owned(), "B".to_owned()])));
        assert_eq!(of_event(&serde_json::json!({"status": "failed", "messageIds": ["A"]})), None);
    }

    #[test]
    fn statuses_that_do_not_coalesce() {
        assert_eq!(Receipt::of_status("played"), Some(Receipt::Read));
        assert_eq!(Receipt::of_status("failed"), None);
        assert_eq!(Receipt::of_status("server_error"), None);
    }
}
