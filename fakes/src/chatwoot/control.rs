//! Test control: what a dashboard agent does (reply, delete, retry, typing, status, deleting a contact),
//! what the fake holds, and how webhooks are delivered (workers, shuffle, duplicates, pause).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Map;

use super::contacts;
use super::messages::{self, MessageInput};
use super::multipart::FilePart;
use super::{
    FakeChatwoot, FakeContact, FakeContactInbox, FakeConversation, FakeMessage, State, WebhookDelivery, conversations,
};

/// The first conversation (lowest id) with this display id, whatever its account.
fn conversation_id(state: &State, display_id: i64) -> Option<i64> {
    state.conversation_index.range((display_id, i64::MIN)..=(display_id, i64::MAX)).map(|(_, id)| *id).min()
}

impl FakeChatwoot {
    pub fn contacts(&self) -> Vec<FakeContact> {
        self.state().contacts.values().cloned().collect()
    }

    pub fn contact(&self, id: i64) -> Option<FakeContact> {
        self.state().contacts.get(&id).cloned()
    }

    pub fn contact_inboxes(&self) -> Vec<FakeContactInbox> {
        self.state().contact_inboxes.values().cloned().collect()
    }

    pub fn conversations(&self) -> Vec<FakeConversation> {
        self.state().conversations.values().cloned().collect()
    }

    /// The conversation with this display id (the first, if several accounts have one).
    pub fn conversation(&self, display_id: i64) -> Option<FakeConversation> {
        let state = self.state();
        conversation_id(&state, display_id).and_then(|id| state.conversations.get(&id).cloned())
    }

    /// Messages of a conversation, oldest first.
    pub fn messages(&self, display_id: i64) -> Vec<FakeMessage> {
        let state = self.state();
        let Some(id) = conversation_id(&state, display_id) else { return Vec::new() };
        state.thread_messages(id).cloned().collect()
    }

    pub fn message(&self, id: i64) -> Option<FakeMessage> {
        self.state().messages.get(&id).cloned()
    }

    pub fn contact_count(&self) -> usize {
        self.state().contacts.len()
    }

    pub fn conversation_count(&self) -> usize {
        self.state().conversations.len()
    }

    /// All messages in all conversations.
    pub fn message_count(&self) -> usize {
        self.state().messages.len()
    }

    /// An agent deleting a contact in the dashboard (`contacts_controller.rb#destroy`): the contact, its
    /// contact_inboxes, its conversations and their messages are gone. A later conversation create with that
    /// `contact_id`, or a message create in one of its conversations, answers 404 `Resource could not be
    /// found` (`find` raises RecordNotFound). False when there is no such contact.
    pub fn delete_contact_directly(&self, contact_id: i64) -> bool {
        contacts::destroy(&mut self.state(), contact_id)
    }

    /// Blocks or unblocks a contact (a blocked contact's conversations are muted: no native reopen).
    pub fn set_contact_blocked(&self, contact_id: i64, blocked: bool) {
        if let Some(contact) = self.state().contacts.get_mut(&contact_id) {
            contact.blocked = blocked;
        }
    }

    /// The id of the dashboard agent the `agent_*` methods act as.
    pub fn agent_id(&self) -> i64 {
        self.state().dashboard_agent().id
    }

    /// An agent's reply from the dashboard (outgoing, sender = the agent, no `source_id`); emits
    /// `message_created`. `None` when the conversation does not exist or Chatwoot would refuse it.
    /// `content` is stored exactly as given: to stand for the 4.9+ editor, pass what it stores, e.g.
    /// `"line1\\\nline2\n\n"` for Shift+Enter and trailing blank lines (the webhook normalizes it from 4.13).
    pub fn agent_reply(&self, display_id: i64, content: &str, private: bool) -> Option<i64> {
        self.agent_message(display_id, content, private, Map::new(), Vec::new())
    }

    /// An agent's reply quoting message `in_reply_to` (Chatwoot fills `in_reply_to_external_id`).
    pub fn agent_reply_to(&self, display_id: i64, content: &str, in_reply_to: i64) -> Option<i64> {
        let mut attributes = Map::new();
        attributes.insert("in_reply_to".into(), in_reply_to.into());
        self.agent_message(display_id, content, false, attributes, Vec::new())
    }

    /// An agent's reply with one file (served at the attachment's `data_url`).
    pub fn agent_reply_with_attachment(
        &self,
        display_id: i64,
        content: &str,
        private: bool,
        file_name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Option<i64> {
        let file = FilePart {
            name: "attachments[]".into(),
            filename: file_name.to_owned(),
            content_type: Some(content_type.to_owned()),
            bytes: Bytes::copy_from_slice(bytes),
        };
        self.agent_message(display_id, content, private, Map::new(), vec![file])
    }

    fn agent_message(
        &self,
        display_id: i64,
        content: &str,
        private: bool,
        content_attributes: Map<String, serde_json::Value>,
        files: Vec<FilePart>,
    ) -> Option<i64> {
        let mut state = self.state();
        let id = conversation_id(&state, display_id)?;
        let agent = state.dashboard_agent();
        let input = MessageInput {
            content: (!content.is_empty()).then(|| content.to_owned()),
            message_type: Some("outgoing".into()),
            private,
            content_attributes,
            files,
            ..MessageInput::default()
        };
        messages::create(&mut state, id, input, Some(&agent)).ok()
    }

    /// An agent deleting a message: content "This message was deleted", `content_attributes`
    /// `{"deleted":true}`, attachments gone; emits `message_updated`.
    pub fn agent_delete(&self, message_id: i64) -> bool {
        messages::delete(&mut self.state(), message_id)
    }

    /// An agent pressing retry on a failed message: status `sent` (`external_error` kept as null), then
    /// `content_attributes` `{}` (or all but `external_error` with [`Self::set_retry_keeps_attributes`]);
    /// emits a `message_updated` for each update that changed something, so two after a failure with an
    /// error. False when Chatwoot would not retry (older than a day, or no content or files).
    pub fn agent_retry(&self, message_id: i64) -> bool {
        messages::retry(&mut self.state(), message_id)
    }

    /// The agent typing in the reply box (`conversation_typing_on/off`, 4.2+).
    pub fn agent_typing(&self, display_id: i64, on: bool) -> bool {
        self.typing(display_id, on, false)
    }

    /// The agent typing a private note (`is_private: true`).
    pub fn agent_typing_private(&self, display_id: i64, on: bool) -> bool {
        self.typing(display_id, on, true)
    }

    fn typing(&self, display_id: i64, on: bool, private: bool) -> bool {
        let mut state = self.state();
        let Some(id) = conversation_id(&state, display_id) else { return false };
        let agent = state.dashboard_agent();
        conversations::emit_typing(&mut state, id, on, conversations::user_webhook_json(&agent), private);
        true
    }

    /// The agent setting a status (`open`, `pending`, `resolved`, `snoozed`); emits
    /// `conversation_status_changed` and `conversation_updated`. Reopening assigns an unassigned
    /// conversation to the agent. False for an unknown conversation or status.
    pub fn set_conversation_status(&self, display_id: i64, status: &str) -> bool {
        if !["open", "pending", "resolved", "snoozed"].contains(&status) {
            return false;
        }
        let mut state = self.state();
        let Some(id) = conversation_id(&state, display_id) else { return false };
        let agent = state.dashboard_agent();
        conversations::change_status(&mut state, id, status, None, Some(&agent));
        true
    }

    /// Finished webhook deliveries, in order.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.state().webhooks.deliveries.clone()
    }

    /// Finished deliveries of one event.
    pub fn webhook_deliveries_of(&self, event: &str) -> Vec<WebhookDelivery> {
        self.state().webhooks.deliveries.iter().filter(|d| d.event == event).cloned().collect()
    }

    /// Per message id, its finished `event` deliveries: `(deliveries, answered 2xx)`. Cheaper than cloning
    /// every delivery's body when only the outcomes matter (load harnesses).
    pub fn message_webhook_outcomes(&self, event: &str) -> HashMap<i64, (usize, usize)> {
        let mut outcomes: HashMap<i64, (usize, usize)> = HashMap::new();
        for delivery in self.state().webhooks.deliveries.iter().filter(|d| d.event == event) {
            let Some(id) = delivery.body.get("id").and_then(serde_json::Value::as_i64) else { continue };
            let entry = outcomes.entry(id).or_default();
            entry.0 += 1;
            entry.1 += usize::from(delivery.status.is_some_and(|s| (200..300).contains(&s)));
        }
        outcomes
    }

    pub fn clear_webhook_deliveries(&self) {
        self.state().webhooks.deliveries.clear();
    }

    /// Delivers every `message_created` and `message_updated` twice (different `X-Chatwoot-Delivery` ids),
    /// as Chatwoot sometimes does.
    pub fn set_webhook_duplicates(&self, on: bool) {
        self.state().webhooks.duplicates = on;
    }

    /// How many deliveries run at once (Sidekiq's `:concurrency:`, 10 by default, `config/sidekiq.yml`).
    /// With 1 they are sent one at a time in order; with more, a slow one can be overtaken.
    pub fn set_webhook_workers(&self, workers: usize) {
        self.state().webhooks.set_workers(workers);
    }

    /// Delays each delivery by a reproducible pseudo-random time in `0..max_delay` before it takes a worker,
    /// so that deliveries arrive out of order (`None`, the default: no delay).
    pub fn set_webhook_shuffle(&self, max_delay: Option<Duration>) {
        self.state().webhooks.shuffle = max_delay.filter(|d| !d.is_zero());
    }

    /// Holds deliveries (they queue) until [`Self::resume_webhooks`].
    pub fn pause_webhooks(&self) {
        self.state().webhooks.paused = true;
    }

    pub fn resume_webhooks(&self) {
        self.state().webhooks.resume();
    }

    /// Deliveries held while paused.
    pub fn held_webhooks(&self) -> usize {
        self.state().webhooks.held()
    }

    /// `WEBHOOK_TIMEOUT` (default 5 s).
    pub fn set_webhook_timeout(&self, timeout: Duration) {
        self.state().webhooks.timeout = timeout;
    }

    /// Simulates 4.14+'s SafeFetch blocking private and loopback webhook URLs (as without
    /// `SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true`). Off by default.
    pub fn set_block_private_webhooks(&self, on: bool) {
        self.state().webhooks.block_private = on;
    }

    /// Waits until at least `count` deliveries finished (or `timeout`), and returns them all.
    pub async fn wait_for_webhooks(&self, count: usize, timeout: Duration) -> Vec<WebhookDelivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let deliveries = self.webhook_deliveries();
            if deliveries.len() >= count || Instant::now() >= deadline {
                return deliveries;
            }
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Deliveries queued or in progress (not those held while paused).
    pub fn webhooks_in_flight(&self) -> usize {
        self.state().webhooks.in_flight
    }

    /// Waits until no delivery is queued or in progress; false on timeout.
    pub async fn webhooks_settled(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.state().webhooks.in_flight == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
