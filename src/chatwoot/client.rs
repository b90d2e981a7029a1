//! The typed Chatwoot client over awc.
//!
//! One `ChatwootClient` per account and token; it is cheap to build (awc's `Client` is shared per thread).
//! Every call goes through [`ChatwootClient::call`], which applies the timeout, reads the body with a size
//! limit, records metrics and turns non-success answers into [`ChatwootError`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_multipart_rfc7578::client::multipart;
use awc::http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::dto::{
    ApiChannel, ApiInfo, Contact, ContactChange, ContactCreated, ContactList, ContactShown, Conversation,
    ConversationList, CreateInbox, Inbox, InboxList, Message, MessageList, NewContact, NewConversation, NewMessage,
    Profile, UpdateApiChannel, UpdateInbox,
};
use super::error::{ChatwootError, error_text};
use super::governor::{CallEnd, Governor, Priority};
use crate::fence::Fence;
use crate::secret::Secret;
use crate::telemetry::{CallOutcome, Metrics};

/// Messages Chatwoot lists per page (`message_finder.rb`: `limit(20)`).
const MESSAGES_PER_PAGE: usize = 20;
/// Pages looked through for an earlier attempt's message (200 messages).
const MAX_LOOKUP_PAGES: usize = 10;

/// Largest Chatwoot answer the bridge reads (inbox lists of big accounts stay well under this).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Which Chatwoot, which account, which token.
#[derive(Debug, Clone)]
pub struct ChatwootTarget {
    /// Base URL without trailing slash.
    pub base_url: String,
    pub account_id: i64,
    pub token: Secret,
}

#[derive(Clone)]
pub struct ChatwootClient {
    http: awc::Client,
    target: ChatwootTarget,
    timeout: Duration,
    deadline: Option<Instant>,
    metrics: Metrics,
    /// The host's budget and concurrency, shared with every integration on that Chatwoot (none: ungoverned,
    /// as the doctor's one-off calls are).
    governor: Option<Arc<Governor>>,
    priority: Priority,
    /// The lease the calls are made under: none goes out once it is no longer held here.
    fence: Fence,
}

impl ChatwootClient {
    pub fn new(http: awc::Client, target: ChatwootTarget, timeout: Duration, metrics: Metrics) -> Self {
        Self {
            http,
            target,
            timeout,
            deadline: None,
            metrics,
            governor: None,
            priority: Priority::Live,
            fence: Fence::always(),
        }
    }

    /// No call goes out unless `fence` holds at the moment it would be sent (after the governor's wait).
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    /// Refuses a call the lease no longer covers, as one that never reached Chatwoot.
    fn fenced(&self) -> Result<(), ChatwootError> {
        if self.fence.holds() {
            Ok(())
        } else {
            Err(ChatwootError::Transport { detail: crate::fence::Fenced.to_string() })
        }
    }

    /// Every call waits its turn at `governor`.
    pub fn with_governor(mut self, governor: Arc<Governor>) -> Self {
        self.governor = Some(governor);
        self
    }

    /// The priority of this client's calls at the governor.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Bounds every later call so that all of them together end by `deadline` (an activation must answer
    /// within its budget however slow Chatwoot is).
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    pub fn target(&self) -> &ChatwootTarget {
        &self.target
    }

    /// The timeout of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `GET /api`: version and service health (no authentication).
    pub async fn api_info(&self) -> Result<ApiInfo, ChatwootError> {
        self.call::<(), _>("api_info", Method::GET, "/api".to_owned(), None).await
    }

    /// `GET /api/v1/profile`: who the token belongs to, and its role on each account.
    pub async fn profile(&self) -> Result<Profile, ChatwootError> {
        self.call::<(), _>("profile", Method::GET, "/api/v1/profile".to_owned(), None).await
    }

    pub async fn list_inboxes(&self) -> Result<Vec<Inbox>, ChatwootError> {
        let list: InboxList =
            self.call::<(), _>("list_inboxes", Method::GET, self.account_path("/inboxes"), None).await?;
        Ok(list.payload)
    }

    pub async fn get_inbox(&self, inbox_id: i64) -> Result<Inbox, ChatwootError> {
        self.call::<(), _>("get_inbox", Method::GET, self.account_path(&format!("/inboxes/{inbox_id}")), None).await
    }

    /// Creates an API-channel inbox whose webhook goes to `webhook_url`.
    pub async fn create_inbox(&self, name: &str, webhook_url: &str) -> Result<Inbox, ChatwootError> {
        let body = CreateInbox {
            name,
            greeting_enabled: false,
            enable_auto_assignment: true,
            channel: ApiChannel { kind: "api", webhook_url, hmac_mandatory: false },
        };
        self.call("create_inbox", Method::POST, self.account_path("/inboxes"), Some(&body)).await
    }

    /// Renames an inbox and points its webhook at `webhook_url`.
    pub async fn update_inbox(&self, inbox_id: i64, name: &str, webhook_url: &str) -> Result<Inbox, ChatwootError> {
        let body = UpdateInbox { name, channel: UpdateApiChannel { webhook_url } };
        self.call("update_inbox", Method::PATCH, self.account_path(&format!("/inboxes/{inbox_id}")), Some(&body)).await
    }

    /// Deletes an inbox (Chatwoot removes it asynchronously).
    pub async fn delete_inbox(&self, inbox_id: i64) -> Result<(), ChatwootError> {
        let _: serde_json::Value = self
            .call::<(), _>("delete_inbox", Method::DELETE, self.account_path(&format!("/inboxes/{inbox_id}")), None)
            .await?;
        Ok(())
    }

    /// Creates a contact together with its contact_inbox (`inbox_id` + `source_id`).
    pub async fn create_contact(&self, contact: &NewContact<'_>) -> Result<Contact, ChatwootError> {
        let created: ContactCreated =
            self.call("create_contact", Method::POST, self.account_path("/contacts"), Some(contact)).await?;
        Ok(created.payload.contact)
    }

    /// Contacts whose `attribute` (`phone_number`, `identifier`) equals `value`.
    pub async fn find_contacts(&self, attribute: &str, value: &str) -> Result<Vec<Contact>, ChatwootError> {
        let body = serde_json::json!({"payload": [{
            "attribute_key": attribute, "filter_operator": "equal_to", "values": [value], "query_operator": null
        }]});
        let list: ContactList =
            self.call("filter_contacts", Method::POST, self.account_path("/contacts/filter"), Some(&body)).await?;
        Ok(list.payload)
    }

    /// The contact the inbox links to `source_id`, if any (`contact_inboxes_controller.rb#filter`: the
    /// contact partial, or 404 when there is no such link).
    pub async fn contact_by_inbox_source(
        &self,
        inbox_id: i64,
        source_id: &str,
    ) -> Result<Option<Contact>, ChatwootError> {
        let body = serde_json::json!({"inbox_id": inbox_id, "source_id": source_id});
        let path = self.account_path("/contact_inboxes/filter");
        match self.call("filter_contact_inboxes", Method::POST, path, Some(&body)).await {
            Ok(contact) => Ok(Some(contact)),
            Err(ChatwootError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The contact `contact_id` (`contacts_controller#show`: `{"payload": contact}`).
    pub async fn get_contact(&self, contact_id: i64) -> Result<Contact, ChatwootError> {
        let path = self.account_path(&format!("/contacts/{contact_id}"));
        let shown: ContactShown = self.call::<(), _>("get_contact", Method::GET, path, None).await?;
        Ok(shown.payload)
    }

    /// Changes a contact's name and picture (`avatar_url`: Chatwoot fetches it in the background).
    pub async fn update_contact(&self, contact_id: i64, change: &ContactChange<'_>) -> Result<(), ChatwootError> {
        let path = self.account_path(&format!("/contacts/{contact_id}"));
        let _: serde_json::Value = self.call("update_contact", Method::PATCH, path, Some(change)).await?;
        Ok(())
    }

    /// Merges `mergee` into `base` (`app/actions/contact_merge_action.rb`): the mergee's conversations and
    /// contact_inboxes move to the base contact, and the mergee is deleted.
    pub async fn merge_contacts(&self, base: i64, mergee: i64) -> Result<(), ChatwootError> {
        let body = serde_json::json!({"base_contact_id": base, "mergee_contact_id": mergee});
        let path = self.account_path("/actions/contact_merge");
        let _: serde_json::Value = self.call("merge_contacts", Method::POST, path, Some(&body)).await?;
        Ok(())
    }

    /// Links an existing contact to the inbox under `source_id`.
    pub async fn create_contact_inbox(
        &self,
        contact_id: i64,
        inbox_id: i64,
        source_id: &str,
    ) -> Result<(), ChatwootError> {
        let body = serde_json::json!({"inbox_id": inbox_id, "source_id": source_id});
        let path = self.account_path(&format!("/contacts/{contact_id}/contact_inboxes"));
        let _: serde_json::Value = self.call("create_contact_inbox", Method::POST, path, Some(&body)).await?;
        Ok(())
    }

    pub async fn create_conversation(&self, conversation: &NewConversation<'_>) -> Result<Conversation, ChatwootError> {
        self.call("create_conversation", Method::POST, self.account_path("/conversations"), Some(conversation)).await
    }

    /// The contact's conversations in every inbox, most recent activity first (Chatwoot caps it at 20).
    pub async fn contact_conversations(&self, contact_id: i64) -> Result<Vec<Conversation>, ChatwootError> {
        let path = self.account_path(&format!("/contacts/{contact_id}/conversations"));
        let list: ConversationList = self.call::<(), _>("contact_conversations", Method::GET, path, None).await?;
        Ok(list.payload)
    }

    pub async fn create_message(
        &self,
        conversation_id: i64,
        message: &NewMessage<'_>,
    ) -> Result<Message, ChatwootError> {
        let path = self.account_path(&format!("/conversations/{conversation_id}/messages"));
        self.call("create_message", Method::POST, path, Some(message)).await
    }

    /// Deletes a message (Chatwoot keeps it as "This message was deleted").
    pub async fn delete_message(&self, conversation_id: i64, message_id: i64) -> Result<(), ChatwootError> {
        let path = self.account_path(&format!("/conversations/{conversation_id}/messages/{message_id}"));
        let _: serde_json::Value = self.call::<(), _>("delete_message", Method::DELETE, path, None).await?;
        Ok(())
    }

    /// Sets the tick of a message in an API inbox (Chatwoot ≥ 4.2). `external_error` only with `failed`.
    pub async fn set_message_status(
        &self,
        conversation_id: i64,
        message_id: i64,
        status: &str,
        external_error: Option<&str>,
    ) -> Result<(), ChatwootError> {
        let mut body = serde_json::json!({"status": status});
        if let Some(error) = external_error {
            body["external_error"] = serde_json::json!(error);
        }
        let path = self.account_path(&format!("/conversations/{conversation_id}/messages/{message_id}"));
        let _: serde_json::Value = self.call("set_message_status", Method::PATCH, path, Some(&body)).await?;
        Ok(())
    }

    /// Downloads an attachment from its `data_url`, following Chatwoot's redirect to the file. Returns the
    /// bytes and their content type.
    pub async fn download(
        &self,
        data_url: &str,
        max_bytes: usize,
    ) -> Result<(bytes::Bytes, Option<String>), ChatwootError> {
        // Active Storage's redirect is a Rails request like any other (Rack::Attack counts it).
        let permit = match &self.governor {
            Some(governor) => Some(governor.acquire(self.priority).await),
            None => None,
        };
        let result = match self.fenced() {
            Ok(()) => self.fetch_following_redirects(data_url, max_bytes).await,
            Err(error) => Err(error),
        };
        if let Some(permit) = permit {
            permit.finish(call_end(&result));
        }
        result
    }

    async fn fetch_following_redirects(
        &self,
        data_url: &str,
        max_bytes: usize,
    ) -> Result<(bytes::Bytes, Option<String>), ChatwootError> {
        let started = Instant::now();
        let mut url = data_url.to_owned();
        for _ in 0..5 {
            let sent = self.http.get(&url).timeout(self.timeout).send().await;
            let mut response =
                sent.map_err(|e| ChatwootError::Transport { detail: transport_detail(&e, self.timeout) })?;
            let status = response.status();
            if status.is_redirection() {
                let Some(location) = response.headers().get("location").and_then(|l| l.to_str().ok()) else {
                    return Err(ChatwootError::Unexpected {
                        status: status.as_u16(),
                        detail: "redirect without Location".into(),
                    });
                };
                url = resolve(&url, location);
                continue;
            }
            let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = response
                .body()
                .limit(max_bytes)
                .await
                .map_err(|e| ChatwootError::Transport { detail: format!("reading the attachment failed: {e}") })?;
            self.metrics.observe_call("chatwoot", "download", status.as_u16(), started.elapsed());
            if !status.is_success() {
                return Err(ChatwootError::Status {
                    status: status.as_u16(),
                    message: error_text(&body),
                    retry_after: None,
                });
            }
            return Ok((body, content_type));
        }
        Err(ChatwootError::Unexpected { status: 302, detail: "too many redirects".into() })
    }

    /// The 20 messages of a conversation before `before` (a message id), or the latest 20, oldest first
    /// (`app/finders/message_finder.rb`).
    pub async fn messages_before(
        &self,
        conversation_id: i64,
        before: Option<i64>,
    ) -> Result<Vec<Message>, ChatwootError> {
        let query = before.map(|id| format!("?before={id}")).unwrap_or_default();
        let path = self.account_path(&format!("/conversations/{conversation_id}/messages{query}"));
        let list: MessageList = self.call::<(), _>("list_messages", Method::GET, path, None).await?;
        Ok(list.payload)
    }

    /// The message with this `source_id` created since `since` (unix seconds), looked for page by page
    /// from the newest. Chatwoot keeps `source_id` unique nowhere (no index, no validation), so an earlier
    /// attempt's copy can only be found this way; the pages stop at `since`, at the start of the
    /// conversation, or after [`MAX_LOOKUP_PAGES`].
    pub async fn find_message_by_source_id(
        &self,
        conversation_id: i64,
        source_id: &str,
        since: i64,
    ) -> Result<Option<Message>, ChatwootError> {
        let mut before = None;
        for _ in 0..MAX_LOOKUP_PAGES {
            let page = self.messages_before(conversation_id, before).await?;
            if let Some(found) = page.iter().find(|m| m.source_id.as_deref() == Some(source_id)) {
                return Ok(Some(found.clone()));
            }
            let Some(oldest) = page.first() else { return Ok(None) };
            if page.len() < MESSAGES_PER_PAGE || oldest.created_at.is_some_and(|at| at < since) {
                return Ok(None);
            }
            before = Some(oldest.id);
        }
        Ok(None)
    }

    fn account_path(&self, rest: &str) -> String {
        format!("/api/v1/accounts/{}{rest}", self.target.account_id)
    }

    /// Creates a message with one attachment (multipart, as Chatwoot's dashboard does); the part's
    /// content type decides Chatwoot's `file_type`.
    pub async fn create_message_with_file(
        &self,
        conversation_id: i64,
        message: &NewMessage<'_>,
        file: &Upload<'_>,
    ) -> Result<Message, ChatwootError> {
        let mut form = multipart::Form::new::<Boundary>();
        form.add_text("content", message.content);
        form.add_text("message_type", message.message_type);
        form.add_text("private", if message.private { "true" } else { "false" });
        form.add_text("source_id", message.source_id);
        if !message.content_attributes.is_empty() {
            form.add_text(
                "content_attributes",
                serde_json::Value::Object(message.content_attributes.clone()).to_string(),
            );
        }
        if file.voice {
            form.add_text("is_voice_message", "true");
        }
        // A type that is not a MIME type goes as plain bytes (RFC 7578's default for files).
        let mime = file.content_type.parse().unwrap_or(actix_web::mime::APPLICATION_OCTET_STREAM);
        form.add_reader_file_with_mime(
            "attachments[]",
            std::io::Cursor::new(file.bytes),
            header_safe(file.file_name),
            mime,
        );
        let content_type = form.content_type();
        // Collected once: the request keeps a Content-Length, and a retry sends the same bytes.
        let bytes = actix_http::body::to_bytes(multipart::Body::from(form))
            .await
            .map_err(|e| ChatwootError::Transport { detail: format!("building the upload failed: {e}") })?;
        let path = self.account_path(&format!("/conversations/{conversation_id}/messages"));
        self.call_with("create_message", Method::POST, path, Payload::<()>::Raw(content_type, bytes)).await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: String,
        body: Option<&B>,
    ) -> Result<T, ChatwootError> {
        let payload = match body {
            Some(body) => Payload::Json(body),
            None => Payload::Empty,
        };
        self.call_with(operation, method, path, payload).await
    }

    async fn call_with<B: Serialize, T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: String,
        body: Payload<'_, B>,
    ) -> Result<T, ChatwootError> {
        let permit = match &self.governor {
            Some(governor) => Some(governor.acquire(self.priority).await),
            None => None,
        };
        let started = Instant::now();
        let result = match self.fenced() {
            Ok(()) => self.exchange(method, &path, body).await,
            Err(error) => Err(error),
        };
        if let Some(permit) = permit {
            permit.finish(call_end(&result));
        }
        let outcome = match &result {
            Ok(_) => CallOutcome::Named("ok"),
            Err(ChatwootError::Transport { .. }) => CallOutcome::Named("transport_error"),
            Err(ChatwootError::OutcomeUnknown { .. }) => CallOutcome::Named("timeout"),
            Err(e) => e.upstream_status().map_or(CallOutcome::Named("error"), CallOutcome::Status),
        };
        self.metrics.observe_call("chatwoot", operation, outcome, started.elapsed());
        let (status, bytes) = result?;
        serde_json::from_slice(&bytes).map_err(|e| ChatwootError::Unexpected {
            status,
            detail: format!("not Chatwoot's JSON ({e}); is {} a Chatwoot URL?", self.target.base_url),
        })
    }

    async fn exchange<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Payload<'_, B>,
    ) -> Result<(u16, bytes::Bytes), ChatwootError> {
        let timeout = match self.deadline {
            None => self.timeout,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(self.timeout),
                _ => {
                    return Err(ChatwootError::Transport {
                        detail: "gave up: the time budget for this request is used up".into(),
                    });
                }
            },
        };
        let url = format!("{}{path}", self.target.base_url);
        let request = self
            .http
            .request(method, &url)
            // The dash form: Chatwoot reads it as `HTTP_API_ACCESS_TOKEN` (`access_token_auth_helper.rb`), and nginx
            // drops header names with underscores by default (`underscores_in_headers off`).
            .insert_header(("api-access-token", self.target.token.expose()))
            .insert_header(("accept", "application/json"))
            .timeout(timeout);
        let sent = match body {
            Payload::Json(body) => request.send_json(body).await,
            Payload::Raw(content_type, bytes) => {
                request.insert_header(("content-type", content_type)).send_body(bytes).await
            }
            Payload::Empty => request.send().await,
        };
        let mut response = sent.map_err(|e| match e {
            awc::error::SendRequestError::Timeout => {
                ChatwootError::OutcomeUnknown { detail: transport_detail(&e, timeout), waited: timeout }
            }
            other => ChatwootError::Transport { detail: transport_detail(&other, timeout) },
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.body().limit(MAX_BODY).await.map_err(|e| ChatwootError::OutcomeUnknown {
            detail: format!("reading Chatwoot's answer failed: {e}"),
            waited: timeout,
        })?;
        if (200..300).contains(&status) {
            Ok((status, bytes))
        } else {
            Err(ChatwootError::Status { status, message: error_text(&bytes), retry_after })
        }
    }
}

/// What an answer says about Chatwoot's load.
fn call_end<T>(result: &Result<T, ChatwootError>) -> CallEnd {
    match result {
        Ok(_) => CallEnd::Ok,
        Err(ChatwootError::Transport { .. } | ChatwootError::OutcomeUnknown { .. }) => CallEnd::Overloaded,
        Err(ChatwootError::Status { status: 429, .. }) => CallEnd::Throttled,
        Err(ChatwootError::Status { status: 500..=599, .. }) => CallEnd::Overloaded,
        Err(_) => CallEnd::Neutral,
    }
}

/// A request body.
enum Payload<'a, B> {
    Empty,
    Json(&'a B),
    /// Bytes with their content type (multipart uploads).
    Raw(String, bytes::Bytes),
}

/// A file to attach to a message.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    pub file_name: &'a str,
    pub content_type: &'a str,
    pub bytes: &'a [u8],
    /// A WhatsApp voice note (Chatwoot shows it as a recording).
    pub voice: bool,
}

/// Multipart boundaries from the OS's generator (16 URL-safe characters); the crate's own are 6.
struct Boundary;

impl multipart::BoundaryGenerator for Boundary {
    fn generate_boundary() -> String {
        format!("ryze-{}", Secret::random(12).map(|s| s.expose().to_owned()).unwrap_or_default())
    }
}

/// A file name that cannot break out of its part's header: the crate quotes it as it is, so no quotes,
/// backslashes or line breaks.
fn header_safe(file_name: &str) -> String {
    file_name.chars().filter(|c| !matches!(c, '"' | '\r' | '\n' | '\\')).collect()
}

/// `location` relative to `base` (absolute locations are taken as they are).
fn resolve(base: &str, location: &str) -> String {
    match url::Url::parse(base).and_then(|b| b.join(location)) {
        Ok(joined) => joined.to_string(),
        Err(_) => location.to_owned(),
    }
}

fn transport_detail(error: &awc::error::SendRequestError, timeout: Duration) -> String {
    match error {
        awc::error::SendRequestError::Timeout => format!("timed out after {} ms", timeout.as_millis()),
        other => other.to_string(),
    }
}
