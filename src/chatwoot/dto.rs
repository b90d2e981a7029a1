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

/// `POST …/contacts` with the contact_inbox created in the same call.
#[derive(Debug, Clone, Serialize)]
pub struct NewContact<'a> {
    pub inbox_id: i64,
    pub source_id: &'a str,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<&'a str>,
    pub identifier: &'a str,
    pub custom_attributes: serde_json::Value,
    /// A picture for Chatwoot to fetch (`Avatar::AvatarFromUrlJob`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<&'a str>,
}

/// `PATCH …/contacts/{id}`: what changes.
#[derive(Debug, Clone, Serialize)]
pub struct ContactChange<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<&'a str>,
}

/// `GET …/contacts/{id}` answers `{"payload": contact}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ContactShown {
    pub payload: Contact,
}

/// A contact (the fields the bridge reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Contact {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub identifier: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContactCreated {
    pub payload: ContactCreatedPayload,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContactCreatedPayload {
    pub contact: Contact,
}

/// `POST …/contacts/filter` answers `{"meta":…,"payload":[contact…]}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ContactList {
    pub payload: Vec<Contact>,
}

/// `POST …/conversations`.
#[derive(Debug, Clone, Serialize)]
pub struct NewConversation<'a> {
    pub inbox_id: i64,
    pub contact_id: i64,
    pub source_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'a str>,
}

/// A conversation (`id` is the display id used in every URL).
#[derive(Debug, Clone, Deserialize)]
pub struct Conversation {
    pub id: i64,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub inbox_id: Option<i64>,
}

/// `GET …/contacts/{id}/conversations` answers `{"payload":[conversation…]}` (newest activity first).
#[derive(Debug, Clone, Deserialize)]
pub struct ConversationList {
    pub payload: Vec<Conversation>,
}

/// `POST …/conversations/{id}/messages` as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct NewMessage<'a> {
    pub content: &'a str,
    /// `incoming` (from the customer) or `outgoing` (typed on the phone).
    pub message_type: &'a str,
    pub private: bool,
    pub source_id: &'a str,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub content_attributes: serde_json::Map<String, serde_json::Value>,
}

/// A message (REST shape; the fields the bridge reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub id: i64,
    #[serde(default)]
    pub source_id: Option<String>,
    /// Unix seconds (`_message.json.jbuilder`: `created_at.to_i`).
    #[serde(default)]
    pub created_at: Option<i64>,
}

/// `GET …/messages` answers `{"meta":…,"payload":[message…]}`.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageList {
    pub payload: Vec<Message>,
}
