//! [`RelayContext`]: everything the relay needs about one integration and the process, in one value built
//! by `integrations::manager` (so that the relay names nothing above it), and the clients made from it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sea_orm::DatabaseConnection;

use crate::chatwoot::{ChatwootClient, ChatwootTarget};
use crate::live::Live;
use crate::store;
use crate::telemetry::Metrics;

/// Everything the relay needs about the integration and the process: one context, built by
/// `integrations::manager`, so that the relay names nothing above it.
pub struct RelayContext {
    pub integration_id: String,
    pub instance: String,
    pub chatwoot: ChatwootTarget,
    pub inbox_id: i64,
    pub ignore_groups: bool,
    pub start_as_pending: bool,
    pub reopen_resolved: bool,
    pub sign_messages: bool,
    pub ryzeapi_url: String,
    pub instance_token: crate::secret::Secret,
    /// Chatwoot ≥ 4.2: message ticks can be set (`PATCH …/messages/{id}`). Refreshed with the version.
    pub ticks: std::sync::atomic::AtomicBool,
    pub live: Arc<Live>,
    /// Hot-path reads (see [`store::Store::reader`]).
    pub reader: DatabaseConnection,
    /// Group commit for the per-message writes.
    pub writer: store::writer::Writer,
    /// Chatwoot's per-conversation message limit, kept.
    pub pacer: super::pace::ConversationPacer,
    /// How long a message Chatwoot keeps refusing with an unexplained 422 is retried.
    pub unprocessable_give_up: Duration,
    /// The longest a new chat waits for RyzeAPI's contact look-up.
    pub contact_lookup_within: Duration,
    /// Serializes the first steps of each new chat.
    pub chat_locks: super::people::KeyedLocks,
    /// Serializes the ticks of each Chatwoot message.
    pub tick_locks: super::people::KeyedLocks,
    /// Receipts stored and queued, so that one a later receipt supersedes costs no call.
    pub receipts: super::receipts::ReceiptsAhead,
    /// What each chat was last marked read up to.
    pub read_marks: super::outbound::ReadMarks,
    /// This process's lease on the integration: no write and no call once it no longer holds.
    pub fence: crate::fence::Fence,
    /// The database, for the writes that do not go through `writer`.
    pub db: DatabaseConnection,
    pub metrics: Metrics,
    /// The request budget of this integration's Chatwoot, shared by every integration that uses it.
    pub governor: Arc<crate::chatwoot::governor::Governor>,
    /// How long one Chatwoot or RyzeAPI call may take (`BRIDGE_CHATWOOT_TIMEOUT_MS`).
    pub call_timeout: Duration,
    /// The relay's retry waits, first and longest (`BRIDGE_RETRY_MIN_MS`, `BRIDGE_RETRY_MAX_MS`).
    pub retry: (Duration, Duration),
    /// The answer to `/status` in the status conversation, from the layer that knows the live state.
    pub status_report: Arc<dyn super::status::StatusReport>,
}

impl std::fmt::Debug for RelayContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayContext")
            .field("integration_id", &self.integration_id)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl RelayContext {
    /// A client for this integration's Chatwoot account.
    pub fn chatwoot_client(&self, http: awc::Client) -> ChatwootClient {
        ChatwootClient::new(http, self.chatwoot.clone(), self.call_timeout, self.metrics.clone())
            .with_governor(self.governor.clone())
            .with_fence(self.fence.clone())
    }

    /// A client for this integration's RyzeAPI instance.
    pub fn ryzeapi_client(&self, http: awc::Client) -> crate::ryzeapi::client::RyzeApiClient {
        crate::ryzeapi::client::RyzeApiClient::new(
            http,
            &self.ryzeapi_url,
            &self.instance,
            self.instance_token.clone(),
            self.call_timeout,
            self.metrics.clone(),
        )
        .with_fence(self.fence.clone())
    }

    /// Whether message ticks can be set on this Chatwoot.
    pub fn ticks(&self) -> bool {
        self.ticks.load(Ordering::Relaxed)
    }
}
