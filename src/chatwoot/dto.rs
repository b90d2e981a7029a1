//! Chatwoot request and response bodies, as the reference (`chatwoot-api.md`) documents them.
//! Responses keep only the fields the bridge reads; unknown fields are ignored.

use serde::{Deserialize, Serialize};

/// `GET /api`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiInfo {
    pub version: String,
    #[serde(default)]
    pub queue_services: Option<String>,
    #[serde(default)]
    pub data_services: Option<String>,
}

/// `GET /api/v1/profile` (the parts the bridge reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Profile {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub accounts: Vec<AccountMembership>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AccountMembership {
    pub id: i64,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub status: Option<String>,
}

impl Profile {
    /// The user's role on `account_id`, if a member.
    pub fn role_on(&self, account_id: i64) -> Option<&str> {
        self.accounts.iter().find(|a| a.id == account_id).map(|a| a.role.as_str())
    }
}

/// An inbox as Chatwoot returns it (`_inbox.json.jbuilder`, not wrapped in `payload`).
#[derive(Debug, Clone, Deserialize)]
pub struct Inbox {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub channel_type: String,
    #[serde(default)]
    pub webhook_url: Option<String>,
    #[serde(default)]
    pub inbox_identifier: Option<String>,
    /// Webhook signing secret: administrators only, Chatwoot ≥ 4.13.
    #[serde(default)]
    pub secret: Option<String>,
}

/// `GET …/inboxes` answers `{"payload":[…]}`.
#[derive(Debug, Clone, Deserialize)]
pub struct InboxList {
    pub payload: Vec<Inbox>,
}

/// `POST …/inboxes` for an API channel.
#[derive(Debug, Clone, Serialize)]
pub struct CreateInbox<'a> {
    pub name: &'a str,
    pub greeting_enabled: bool,
    pub enable_auto_assignment: bool,
    pub channel: ApiChannel<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiChannel<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub webhook_url: &'a str,
    pub hmac_mandatory: bool,
}

/// `PATCH …/inboxes/{id}`: only the name and the webhook URL change.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateInbox<'a> {
    pub name: &'a str,
    pub channel: UpdateApiChannel<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpdateApiChannel<'a> {
    pub webhook_url: &'a str,
}
