//! How an integration is shown to RyzeAPI (contract §2.2). Never carries a token or secret.

use chrono::{DateTime, SecondsFormat, Utc};
use entity::integration::Model;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct IntegrationView {
    pub id: String,
    pub instance: String,
    pub status: String,
    pub last_error: String,
    pub inbox_id: i64,
    pub inbox_name: String,
    pub chatwoot_base_url: String,
    pub chatwoot_account_id: i64,
    pub chatwoot_version: Option<String>,
    pub ryzeapi_url: String,
    pub sign_messages: bool,
    pub ignore_groups: bool,
    pub start_as_pending: bool,
    pub reopen_resolved: bool,
    pub connection: ConnectionView,
    pub queues: QueuesView,
    pub totals: TotalsView,
    /// This Chatwoot's governor, shared with every integration on it (absent until it made a call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub governor: Option<GovernorView>,
    /// With several replicas: the replica that runs the integration now (`null`: none holds its lease).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Option<String>>,
    pub created_at: String,
    pub updated_at: String,
}

/// What the Chatwoot governor shows (see `crate::chatwoot::governor`).
#[derive(Debug, Serialize, Default)]
pub struct GovernorView {
    /// Requests a minute allowed; `None`: unlimited.
    pub budget_per_minute: Option<u32>,
    pub rate_per_minute: Option<f64>,
    pub concurrency_limit: usize,
    pub in_flight: usize,
    pub waiting: WaitingView,
    pub throttled_total: u64,
    pub waited_seconds_total: f64,
}

#[derive(Debug, Serialize, Default)]
pub struct WaitingView {
    pub live: usize,
    pub backlog: usize,
    pub background: usize,
}

/// The live RyzeAPI link. Until the integration's actor reports, the link is `disconnected`.
#[derive(Debug, Serialize, Default)]
pub struct ConnectionView {
    pub state: &'static str,
    pub since: Option<String>,
    pub reconnects: u64,
    pub last_event_at: Option<String>,
}

#[derive(Debug, Serialize, Default)]
pub struct QueuesView {
    pub to_chatwoot_pending: u64,
    pub to_whatsapp_pending: u64,
    pub failed: u64,
}

/// Counted since this bridge process started (stored rows are pruned after the retention period, so the
/// database cannot count "ever").
#[derive(Debug, Serialize, Default)]
pub struct TotalsView {
    pub events_received: u64,
    pub messages_to_chatwoot: u64,
    pub messages_to_whatsapp: u64,
    pub chats_merged: u64,
}

/// What the running side knows about an integration (connection, queues, totals).
#[derive(Debug, Default)]
pub struct LiveState {
    pub connection: ConnectionView,
    pub queues: QueuesView,
    pub totals: TotalsView,
    pub governor: Option<GovernorView>,
    /// With replicas: the owner's replica name (see [`IntegrationView::owner`]).
    pub owner: Option<Option<String>>,
}

impl LiveState {
    /// Gathers the live link state (from the actor's entry) and the queue depths (from the database).
    pub async fn of(
        shared: &crate::state::Shared,
        id: &str,
        chatwoot_base_url: &str,
    ) -> Result<Self, crate::error::AppError> {
        use std::sync::atomic::Ordering;
        let services = shared.services()?;
        let counts = crate::store::events::counts(&services.reader, id).await?;
        let (jobs_pending, jobs_failed) = crate::store::jobs::counts(&services.reader, id).await?;
        let mut state = Self {
            queues: QueuesView {
                to_chatwoot_pending: counts.pending,
                to_whatsapp_pending: jobs_pending,
                failed: counts.failed + jobs_failed,
            },
            totals: TotalsView::default(),
            ..Self::default()
        };
        if let Some(governor) = shared.governors.existing(chatwoot_base_url) {
            let g = governor.snapshot();
            state.governor = Some(GovernorView {
                budget_per_minute: g.budget_per_minute,
                rate_per_minute: g.rate_per_minute.map(|r| (r * 10.0).round() / 10.0),
                concurrency_limit: g.concurrency_limit,
                in_flight: g.in_flight,
                waiting: WaitingView { live: g.waiting[0], backlog: g.waiting[1], background: g.waiting[2] },
                throttled_total: g.throttled_total,
                waited_seconds_total: (g.waited_seconds_total * 1000.0).round() / 1000.0,
            });
        }
        if let Some(replica) = shared.replica() {
            state.owner = Some(if replica.owns(id) {
                Some(replica.name.clone())
            } else {
                crate::store::leases::owner_of(&services.reader, id).await?.map(|owner| owner_name(&owner.owner))
            });
        }
        if let Some(live) = shared.live.get(id) {
            let link = live.snapshot();
            state.connection = ConnectionView {
                state: link.state.as_str(),
                since: Some(timestamp(link.since)),
                reconnects: link.reconnects,
                last_event_at: link.last_event_at.map(timestamp),
            };
            state.totals.events_received = live.events_received.load(Ordering::Relaxed);
            state.totals.messages_to_chatwoot = live.messages_to_chatwoot.load(Ordering::Relaxed);
            state.totals.messages_to_whatsapp = live.messages_to_whatsapp.load(Ordering::Relaxed);
            state.totals.chats_merged = live.chats_merged.load(Ordering::Relaxed);
        }
        Ok(state)
    }
}

/// The replica name of a lease owner (`name#incarnation`).
fn owner_name(owner: &str) -> String {
    owner.rsplit_once('#').map_or(owner, |(name, _)| name).to_owned()
}

/// The header a replica sets when it asks the owner for a view (the owner answers from its own state,
/// never forwarding again).
pub const FORWARDED: &str = "x-ryze-forwarded";

/// With replicas, an integration's live state (link, counters) is known only to the replica running
/// it: the view of an integration another replica runs is that replica's answer. `None`: this replica
/// runs it, nobody does, or the owner did not answer in time (then the local view, link `disconnected`).
pub async fn from_owner(shared: &crate::state::Shared, http: &awc::Client, id: &str) -> Option<serde_json::Value> {
    forward_to_owner(shared, http, id, &format!("/v1/integrations/{id}")).await
}

/// The owner's answer to `GET path` (a view or a trace of integration `id`), when another replica runs it.
pub async fn forward_to_owner(
    shared: &crate::state::Shared,
    http: &awc::Client,
    id: &str,
    path: &str,
) -> Option<serde_json::Value> {
    let replica = shared.replica()?;
    if replica.owns(id) {
        return None;
    }
    let services = shared.services().ok()?;
    let owner = crate::store::leases::owner_of(&services.reader, id).await.ok()??;
    let url = owner.url.filter(|_| owner.owner != replica.owner)?;
    ask_replica(shared, http, &format!("{url}{path}"), std::time::Duration::from_secs(2), 1 << 20).await
}

/// Another replica's JSON answer to `GET url`, marked as forwarded so that it answers from its own state;
/// `None` unless it answered 200 in time.
async fn ask_replica(
    shared: &crate::state::Shared,
    http: &awc::Client,
    url: &str,
    timeout: std::time::Duration,
    limit: usize,
) -> Option<serde_json::Value> {
    let mut answer = http
        .get(url)
        .insert_header(("authorization", format!("Bearer {}", shared.settings.bridge_token.expose())))
        .insert_header((FORWARDED, "1"))
        .timeout(timeout)
        .send()
        .await
        .ok()?;
    if answer.status() != awc::http::StatusCode::OK {
        return None;
    }
    answer.json::<serde_json::Value>().limit(limit).await.ok()
}

/// With replicas, the list with each integration as its owner shows it: one call to each other replica
/// that owns some of them (not one per integration); an owner that does not answer leaves this
/// replica's view of its integrations (link `disconnected`).
pub async fn with_owners_views(
    shared: &crate::state::Shared,
    http: &awc::Client,
    local: Vec<IntegrationView>,
) -> Vec<serde_json::Value> {
    let local: Vec<(String, serde_json::Value)> =
        local.into_iter().map(|view| (view.id.clone(), serde_json::to_value(&view).unwrap_or_default())).collect();
    let (Some(replica), Ok(services)) = (shared.replica(), shared.services()) else {
        return local.into_iter().map(|(_, view)| view).collect();
    };
    let owners = crate::store::leases::owners(&services.reader).await.unwrap_or_default();
    let mut urls: Vec<String> = local
        .iter()
        .filter_map(|(id, _)| owners.get(id))
        .filter(|(owner, _)| *owner != replica.owner)
        .filter_map(|(_, url)| url.clone())
        .collect();
    urls.sort_unstable();
    urls.dedup();
    let mut theirs: std::collections::HashMap<String, serde_json::Value> = std::collections::HashMap::new();
    for url in urls {
        // A list costs the owner two counts per integration: give it longer than one view.
        let list = format!("{url}/v1/integrations");
        let Some(body) = ask_replica(shared, http, &list, std::time::Duration::from_secs(8), 64 << 20).await else {
            continue;
        };
        for view in body["integrations"].as_array().into_iter().flatten() {
            if let Some(id) = view["id"].as_str()
                && owners.get(id).is_some_and(|(_, owner_url)| owner_url.as_deref() == Some(url.as_str()))
            {
                theirs.insert(id.to_owned(), view.clone());
            }
        }
    }
    local.into_iter().map(|(id, view)| theirs.remove(&id).unwrap_or(view)).collect()
}

/// `/status` in the status conversation (the relay posts it; the figures are this layer's).
pub struct StatusReporter {
    /// Weak: the relay context that holds this must not keep the process's state alive.
    pub shared: std::sync::Weak<crate::state::Shared>,
    pub id: String,
    pub chatwoot_base_url: String,
}

impl crate::relay::status::StatusReport for StatusReporter {
    fn summary(&self) -> futures_util::future::LocalBoxFuture<'_, Result<crate::relay::status::StatusFigures, String>> {
        Box::pin(async move {
            let shared = self.shared.upgrade().ok_or_else(|| "the bridge is stopping".to_owned())?;
            let live = LiveState::of(&shared, &self.id, &self.chatwoot_base_url).await.map_err(|e| e.to_string())?;
            Ok(crate::relay::status::StatusFigures {
                link_state: live.connection.state,
                since: live.connection.since,
                reconnects: live.connection.reconnects,
                to_chatwoot_pending: live.queues.to_chatwoot_pending,
                to_whatsapp_pending: live.queues.to_whatsapp_pending,
                failed: live.queues.failed,
                events_received: live.totals.events_received,
                messages_to_chatwoot: live.totals.messages_to_chatwoot,
                messages_to_whatsapp: live.totals.messages_to_whatsapp,
            })
        })
    }
}

pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl IntegrationView {
    pub fn new(model: Model, live: LiveState) -> Self {
        let connection = ConnectionView {
            state: if live.connection.state.is_empty() { "disconnected" } else { live.connection.state },
            ..live.connection
        };
        Self {
            id: model.id,
            instance: model.instance,
            status: model.status,
            last_error: model.last_error,
            inbox_id: model.inbox_id,
            inbox_name: model.inbox_name,
            chatwoot_base_url: model.chatwoot_base_url,
            chatwoot_account_id: model.chatwoot_account_id,
            chatwoot_version: model.chatwoot_version,
            ryzeapi_url: model.ryzeapi_url,
            sign_messages: model.sign_messages,
            ignore_groups: model.ignore_groups,
            start_as_pending: model.start_as_pending,
            reopen_resolved: model.reopen_resolved,
            connection,
            queues: live.queues,
            totals: live.totals,
            governor: live.governor,
            owner: live.owner,
            created_at: timestamp(model.created_at),
            updated_at: timestamp(model.updated_at),
        }
    }
}

/// The answer to a successful activation.
#[derive(Debug, Serialize)]
pub struct ActivationView {
    pub id: String,
    pub instance: String,
    pub status: String,
    pub inbox_id: i64,
    pub inbox_name: String,
    pub message: &'static str,
}

impl From<&Model> for ActivationView {
    fn from(model: &Model) -> Self {
        Self {
            id: model.id.clone(),
            instance: model.instance.clone(),
            status: model.status.clone(),
            inbox_id: model.inbox_id,
            inbox_name: model.inbox_name.clone(),
            message: "chatwoot integration activated",
        }
    }
}
