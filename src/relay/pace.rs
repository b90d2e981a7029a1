//! Keeps the bridge under Chatwoot's per-conversation message limit.
//!
//! Chatwoot refuses a message once its conversation has `CONVERSATION_MESSAGE_PER_MINUTE_LIMIT` (200)
//! messages from the last minute (`app/models/message.rb#prevent_message_flooding`, `lib/limits.rb`). A
//! backlog replay or a busy group would hit that; the pacer admits at most `limit` creates per
//! conversation in any 60 seconds and says how long to wait for the next one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Chatwoot's window.
const WINDOW: Duration = Duration::from_secs(60);
/// Conversations remembered before the idle ones are swept out.
const SWEEP_AT: usize = 4096;

#[derive(Debug)]
pub struct ConversationPacer {
    limit: usize,
    admitted: Mutex<HashMap<i64, VecDeque<Instant>>>,
}

impl ConversationPacer {
    pub fn new(limit: usize) -> Self {
        Self { limit: limit.max(1), admitted: Mutex::new(HashMap::new()) }
    }

    /// Admits one create in `conversation` now, or says how long until one may go.
    pub fn admit(&self, conversation: i64, now: Instant) -> Result<(), Duration> {
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        if admitted.len() >= SWEEP_AT {
            admitted.retain(|_, times| times.back().is_some_and(|last| now.duration_since(*last) < WINDOW));
        }
        let times = admitted.entry(conversation).or_default();
        while times.front().is_some_and(|first| now.duration_since(*first) >= WINDOW) {
            times.pop_front();
        }
        if times.len() >= self.limit {
            let oldest = times.front().copied().unwrap_or(now);
            return Err((oldest + WINDOW).saturating_duration_since(now).max(Duration::from_millis(10)));
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_per_minute_and_conversation() {
        let pacer = ConversationPacer::new(3);
        let start = Instant::now();
        for i in 0..3 {
            assert!(pacer.admit(7, start + Duration::from_secs(i)).is_ok());
        }
        let wait = pacer.admit(7, start + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50), "until the first one leaves the window");
        assert!(pacer.admit(8, start + Duration::from_secs(10)).is_ok(), "other conversations go on");
        assert!(pacer.admit(7, start + Duration::from_secs(60)).is_ok());
        assert!(pacer.admit(7, start + Duration::from_secs(60)).is_err());
    }
}
