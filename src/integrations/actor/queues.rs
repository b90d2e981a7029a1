//! The actor's per-chat queues: FIFO per chat (a conversation's outbound jobs in Chatwoot message order),
//! one item in flight per chat, ready chats served in turn. Pure, and unit-tested here.

use std::collections::{HashMap, HashSet, VecDeque};

/// Row ids kept in memory; beyond this, new events stay only in the database until the queue drains.
const MAX_QUEUED: usize = 10_000;

/// A queued piece of work: a stored RyzeAPI event (numbered in arrival order) or a stored Chatwoot
/// webhook job (ordered by the Chatwoot message it is about, then by arrival: Chatwoot numbers messages
/// as it creates them, and delivers their webhooks in no promised order). One queue never mixes the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Item {
    Event(i64),
    Job { message: i64, id: i64 },
}

/// The queue key of a Chatwoot conversation's outbound jobs.
pub(super) fn conversation_key(conversation_id: i64) -> String {
    ryze_wire::keys::conversation_queue_key(conversation_id)
}

/// Chat-keyed FIFO queues with one item in flight per chat.
#[derive(Default)]
pub(super) struct ChatQueues {
    queues: HashMap<String, VecDeque<Item>>,
    /// Chats with queued items, none in flight, not parked: in the order they became ready.
    ready: VecDeque<String>,
    busy: HashSet<String>,
    parked: HashSet<String>,
    pub(super) in_flight: usize,
    queued: usize,
    /// Items were left in the database only because the in-memory queue was full.
    pub(super) overflowed: bool,
}

impl ChatQueues {
    /// Queues `row` behind the chat's earlier items; `false` when it was not queued (already queued, or
    /// the queue is full and the row waits in the database).
    pub(super) fn push(&mut self, chat: String, row: Item) -> bool {
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

    pub(super) fn next(&mut self) -> Option<(String, Item)> {
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
    pub(super) fn release(&mut self, chat: &str) {
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
    pub(super) fn park(&mut self, chat: &str, row: Item) {
        self.busy.remove(chat);
        self.in_flight = self.in_flight.saturating_sub(1);
        self.queues.entry(chat.to_owned()).or_default().push_front(row);
        self.queued += 1;
        self.parked.insert(chat.to_owned());
    }

    pub(super) fn unpark(&mut self, chat: &str) {
        if self.parked.remove(chat) && self.queues.get(chat).is_some_and(|q| !q.is_empty()) {
            self.ready.push_back(chat.to_owned());
        }
    }

    pub(super) fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.queued == 0
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
