//! Messages (reference §5): create (JSON and multipart), list, status PATCH, delete, retry, attachments
//! served through Active Storage-style redirect URLs, and the `message_*` webhooks (§6).

use std::collections::VecDeque;

use actix_web::HttpResponse;
use bytes::Bytes;
use chrono::{DateTime, Duration as TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::contacts::{self, FakeContact};
use super::conversations::{self, FakeConversation, change};
use super::multipart::{FilePart, Form};
use super::{Actor, Call, State, error, iso, no_route, not_found, reply, unix};

/// Who sent a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeSender {
    /// Template and greeting messages.
    None,
    Contact(i64),
    User {
        id: i64,
        name: String,
        email: String,
    },
}

/// An attachment of a message; its bytes are served at `data_url` (302 to the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeAttachment {
    pub id: i64,
    /// `image`, `video`, `audio` or `file`, from the part's `Content-Type`.
    pub file_type: String,
    pub file_name: String,
    pub content_type: String,
    pub byte_size: usize,
    pub data_url: String,
    /// Signed blob id in `data_url`.
    pub blob_id: String,
}

/// A message as the fake stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeMessage {
    pub id: i64,
    pub account_id: i64,
    pub inbox_id: i64,
    /// Database id of the conversation.
    pub conversation_id: i64,
    pub conversation_display_id: i64,
    pub content: Option<String>,
    /// `incoming`, `outgoing`, `activity` or `template`.
    pub message_type: String,
    pub content_type: String,
    pub private: bool,
    pub source_id: Option<String>,
    pub echo_id: Option<String>,
    /// `sent`, `delivered`, `read` or `failed`.
    pub status: String,
    /// Mirrors `content_attributes.external_error` (where Chatwoot keeps it).
    pub external_error: Option<String>,
    pub content_attributes: Map<String, Value>,
    pub sender: FakeSender,
    pub attachments: Vec<FakeAttachment>,
    pub created_at: DateTime<Utc>,
}

impl FakeMessage {
    fn set_content_attributes(&mut self, attributes: Map<String, Value>) {
        self.external_error = attributes.get("external_error").and_then(Value::as_str).map(str::to_owned);
        self.content_attributes = attributes;
    }
}

/// One conversation's messages as an index beside `State::messages`: what creates and conversation
/// payloads need, kept up to date on insert instead of counted by scanning every stored message.
#[derive(Debug, Default)]
pub(super) struct Thread {
    /// Message ids, oldest first (ids only grow, so this is also `State::messages` order).
    pub ids: Vec<i64>,
    /// Incoming messages (the fake's `unread_count`: nothing ever marks them read).
    pub incoming: usize,
    /// Creation times of the latest messages, oldest first; older than a minute ones are dropped lazily.
    recent: VecDeque<DateTime<Utc>>,
}

impl Thread {
    /// Messages created after `since` (the per-minute limit).
    fn created_after(&mut self, since: DateTime<Utc>) -> usize {
        while self.recent.front().is_some_and(|at| *at <= since) {
            self.recent.pop_front();
        }
        // Bounded by the limit itself; counting (not `len`) keeps it exact should the clock step back.
        self.recent.iter().filter(|at| **at > since).count()
    }

    fn push(&mut self, id: i64, incoming: bool, at: DateTime<Utc>) {
        self.ids.push(id);
        self.incoming += usize::from(incoming);
        self.recent.push_back(at);
    }
}

/// Stored file bytes.
#[derive(Debug, Clone)]
pub(super) struct Blob {
    filename: String,
    content_type: String,
    disk_key: String,
    bytes: Bytes,
}

const MESSAGE_TYPES: &[&str] = &["incoming", "outgoing", "activity", "template"];
const CONTENT_TYPES: &[&str] = &[
    "text",
    "input_text",
    "input_textarea",
    "input_email",
    "input_select",
    "cards",
    "form",
    "article",
    "incoming_email",
    "input_csat",
    "integrations",
    "sticker",
    "voice_call",
];
const STATUSES: &[&str] = &["sent", "delivered", "read", "failed"];
/// What `MessageBuilder` reads.
const MESSAGE_PARAMS: &[&str] = &[
    "content",
    "message_type",
    "private",
    "source_id",
    "content_type",
    "content_attributes",
    "echo_id",
    "external_created_at",
    "sender_type",
    "sender_id",
    "is_voice_message",
    "campaign_id",
    "template_params",
    "cc_emails",
    "bcc_emails",
    "to_emails",
    "attachments",
];
const MAX_CONTENT: usize = 150_000;
const MAX_ATTACHMENTS: usize = 15;
const PER_MINUTE: usize = 200;

/// A message to create, however it arrived.
#[derive(Debug, Default)]
pub(super) struct MessageInput {
    pub content: Option<String>,
    pub message_type: Option<String>,
    pub private: bool,
    pub source_id: Option<String>,
    pub content_type: Option<String>,
    pub content_attributes: Map<String, Value>,
    pub echo_id: Option<String>,
    pub external_created_at: Option<Value>,
    pub files: Vec<FilePart>,
}

pub(super) fn route(
    state: &mut State,
    call: &Call<'_>,
    rest: &[&str],
    conversation_id: i64,
    actor: &Actor,
) -> (u16, HttpResponse) {
    match (call.method, rest) {
        ("GET", []) => list(state, call, conversation_id),
        ("POST", []) => {
            let input = match (call.form, call.json) {
                (Some(form), _) => read_form_params(state, call.path, form),
                (None, Some(Value::Object(params))) => read_json_params(state, call.path, params),
                _ => {
                    state.violation(format!(
                        "POST {}: message body must be a JSON object or a multipart form",
                        call.path
                    ));
                    MessageInput::default()
                }
            };
            match create(state, conversation_id, input, Some(actor)) {
                Ok(id) => state.messages.get(&id).map_or_else(not_found, |m| reply(200, message_json(state, m))),
                Err(answer) => *answer,
            }
        }
        (_, [id]) => {
            let Some(id) = id
                .parse::<i64>()
                .ok()
                .filter(|id| state.messages.get(id).is_some_and(|m| m.conversation_id == conversation_id))
            else {
                return if matches!(call.method, "PATCH" | "PUT" | "DELETE") { not_found() } else { no_route() };
            };
            match call.method {
                "PATCH" | "PUT" if super::version_at_least(&state.version, (4, 2)) => update_status(state, call, id),
                "DELETE" => {
                    delete(state, id);
                    state.messages.get(&id).map_or_else(not_found, |m| reply(200, message_json(state, m)))
                }
                _ => no_route(),
            }
        }
        _ => no_route(),
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Reads `MessageBuilder` params from JSON, recording what Chatwoot would drop or misread.
pub(super) fn read_json_params(state: &mut State, path: &str, params: &Map<String, Value>) -> MessageInput {
    let mut input = MessageInput::default();
    for (key, value) in params {
        if !MESSAGE_PARAMS.contains(&key.as_str()) {
            state.violation(format!("{path}: `{key}` is not a message parameter (dropped silently)"));
            continue;
        }
        let string_like = value.is_string() || value.is_null();
        match key.as_str() {
            "content" | "message_type" | "source_id" | "content_type" | "echo_id" if !string_like => {
                state.violation(format!("{path}: `{key}` must be a string, not {value}"));
            }
            "private" if !value.is_boolean() && !matches!(value.as_str(), Some("true" | "false")) => {
                state.violation(format!("{path}: `private` must be a boolean, not {value}"));
            }
            "attachments" => state.violation(format!(
                "{path}: JSON `attachments` must be signed blob ids from /upload; send files as multipart `attachments[]`"
            )),
            _ => {}
        }
        match key.as_str() {
            "content" => input.content = scalar_text(value),
            "message_type" => input.message_type = scalar_text(value),
            "source_id" => input.source_id = scalar_text(value),
            "content_type" => input.content_type = scalar_text(value),
            "echo_id" => input.echo_id = scalar_text(value),
            "private" => input.private = value.as_bool().unwrap_or(value.as_str() == Some("true")),
            "external_created_at" => input.external_created_at = Some(value.clone()),
            "content_attributes" => input.content_attributes = content_attributes(state, path, value),
            _ => {}
        }
    }
    input
}

/// `content_attributes` as an object or a JSON string (`safe_parse_json`).
fn content_attributes(state: &mut State, path: &str, value: &Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            _ => {
                state.violation(format!("{path}: content_attributes is not a JSON object string ({text:?})"));
                Map::new()
            }
        },
        other => {
            state.violation(format!("{path}: content_attributes must be an object, not {other}"));
            Map::new()
        }
    }
}

fn read_form_params(state: &mut State, path: &str, form: &Form) -> MessageInput {
    let mut input = MessageInput::default();
    for (name, value) in &form.fields {
        match name.as_str() {
            "content" => input.content = Some(value.clone()),
            "message_type" => input.message_type = Some(value.clone()),
            "source_id" => input.source_id = Some(value.clone()),
            "content_type" => input.content_type = Some(value.clone()),
            "echo_id" => input.echo_id = Some(value.clone()),
            "private" => {
                if !matches!(value.as_str(), "true" | "false" | "1" | "0") {
                    state.violation(format!("{path}: form field private={value:?} is not a boolean"));
                }
                input.private = matches!(value.as_str(), "true" | "1");
            }
            "content_attributes" => {
                input.content_attributes = content_attributes(state, path, &Value::String(value.clone()));
            }
            "external_created_at" => input.external_created_at = Some(Value::String(value.clone())),
            "is_voice_message" | "sender_type" | "sender_id" | "campaign_id" => {}
            other => {
                let hint = if other.starts_with("content_attributes[") {
                    " (send content_attributes as one JSON string field)"
                } else {
                    ""
                };
                state.violation(format!("{path}: form field `{other}` is not a message parameter{hint}"));
            }
        }
    }
    for file in &form.files {
        if file.name != "attachments[]" {
            state.violation(format!("{path}: file part `{}` is ignored; files go in `attachments[]`", file.name));
            continue;
        }
        if file.content_type.is_none() {
            state.violation(format!(
                "{path}: file part {:?} has no Content-Type (file_type comes from it)",
                file.filename
            ));
        }
        input.files.push(file.clone());
    }
    input
}

/// `FileTypeHelper#file_type`.
fn file_type(content_type: &str) -> &'static str {
    let content_type = content_type.split(';').next().unwrap_or_default().trim().to_lowercase();
    match content_type.as_str() {
        "image/jpeg" | "image/jpg" | "image/png" | "image/gif" | "image/bmp" | "image/webp" => "image",
        "video/ogg" | "video/mp4" | "video/webm" | "video/quicktime" => "video",
        ct if ct.starts_with("audio/") => "audio",
        _ => "file",
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Creates a message through `MessageBuilder`'s rules and runs the after-create callbacks.
pub(super) fn create(
    state: &mut State,
    conversation_id: i64,
    input: MessageInput,
    actor: Option<&Actor>,
) -> Result<i64, Box<(u16, HttpResponse)>> {
    let Some(conversation) = state.conversations.get(&conversation_id).cloned() else {
        return Err(Box::new(not_found()));
    };
    let message_type = input.message_type.clone().unwrap_or_else(|| "outgoing".into());
    if !MESSAGE_TYPES.contains(&message_type.as_str()) {
        state.violation(format!("message_type {message_type:?} is not incoming|outgoing|template"));
        return Err(Box::new(error(422, &format!("'{message_type}' is not a valid message_type"))));
    }
    let content_type = input.content_type.clone().unwrap_or_else(|| "text".into());
    if !CONTENT_TYPES.contains(&content_type.as_str()) {
        state.violation(format!("content_type {content_type:?} is not a Chatwoot content type"));
        return Err(Box::new(error(422, &format!("'{content_type}' is not a valid content_type"))));
    }
    if input.content.as_deref().is_some_and(|c| c.chars().count() > MAX_CONTENT) {
        return Err(Box::new(error(422, "Validation failed: Content is too long (maximum is 150000 characters)")));
    }
    if input.files.len() > MAX_ATTACHMENTS {
        return Err(Box::new(error(422, "Validation failed: Attachments exceeded maximum allowed")));
    }
    let now = Utc::now();
    let recent = state.threads.get_mut(&conversation_id).map_or(0, |t| t.created_after(now - TimeDelta::minutes(1)));
    if recent >= PER_MINUTE {
        return Err(Box::new(error(422, "Validation failed: Too many messages")));
    }
    let contact = state.contacts.get(&conversation.contact_id).cloned();
    let sender = match (message_type.as_str(), actor) {
        ("incoming", _) => FakeSender::Contact(conversation.contact_id),
        ("activity", _) | (_, None) => FakeSender::None,
        (_, Some(actor)) => FakeSender::User { id: actor.id, name: actor.name.clone(), email: actor.email.clone() },
    };
    let mut content = input.content.clone();
    if matches!(message_type.as_str(), "outgoing" | "template")
        && let Some(text) = &content
    {
        content =
            Some(render_liquid(text, &|name| liquid_variable(state, &conversation, contact.as_ref(), actor, name)));
    }
    let mut attributes = input.content_attributes.clone();
    resolve_reply(state, conversation_id, &mut attributes);
    if let Some(at) = &input.external_created_at {
        attributes.insert("external_created_at".into(), at.clone());
    }
    let id = state.next_id();
    let mut attachments = Vec::new();
    for file in &input.files {
        let content_type = file.content_type.clone().unwrap_or_else(|| "application/octet-stream".into());
        let blob_id = super::random_token(40);
        let data_url = format!(
            "{}/rails/active_storage/blobs/redirect/{blob_id}/{}",
            state.base_url,
            percent_encode(&file.filename)
        );
        let blob = Blob {
            filename: file.filename.clone(),
            content_type: content_type.clone(),
            disk_key: super::random_token(28),
            bytes: file.bytes.clone(),
        };
        state.blobs.insert(blob_id.clone(), blob);
        attachments.push(FakeAttachment {
            id: state.next_id(),
            file_type: file_type(&content_type).to_owned(),
            file_name: file.filename.clone(),
            content_type,
            byte_size: file.bytes.len(),
            data_url,
            blob_id,
        });
    }
    let mut message = FakeMessage {
        id,
        account_id: conversation.account_id,
        inbox_id: conversation.inbox_id,
        conversation_id,
        conversation_display_id: conversation.display_id,
        content,
        message_type: message_type.clone(),
        content_type,
        private: input.private,
        source_id: input.source_id.clone(),
        echo_id: input.echo_id.clone(),
        status: "sent".into(),
        external_error: None,
        content_attributes: Map::new(),
        sender: sender.clone(),
        attachments,
        created_at: now,
    };
    message.set_content_attributes(attributes);
    state.threads.entry(conversation_id).or_default().push(id, message_type == "incoming", now);
    state.messages.insert(id, message);
    after_create(state, id, &conversation, &sender);
    Ok(id)
}

/// `Messages::InReplyToMessageBuilder`: resolves the quoted message in the same conversation and writes both keys.
fn resolve_reply(state: &State, conversation_id: i64, attributes: &mut Map<String, Value>) {
    let by_id = attributes.get("in_reply_to").filter(|v| !v.is_null()).cloned();
    let by_external = attributes.get("in_reply_to_external_id").filter(|v| !v.is_null()).cloned();
    if by_id.is_none() && by_external.is_none() {
        return;
    }
    let target = match (&by_id, &by_external) {
        (Some(id), _) => {
            super::id_param(id).and_then(|id| state.messages.get(&id)).filter(|m| m.conversation_id == conversation_id)
        }
        (None, Some(external)) => {
            let external = scalar_text(external);
            state.thread_messages(conversation_id).find(|m| m.source_id.is_some() && m.source_id == external)
        }
        (None, None) => None,
    };
    attributes.insert("in_reply_to".into(), target.map_or(Value::Null, |m| json!(m.id)));
    attributes.insert(
        "in_reply_to_external_id".into(),
        target.and_then(|m| m.source_id.clone()).map_or(Value::Null, Value::String),
    );
}

/// `Message#execute_after_create_commit_callbacks`, in Chatwoot's order.
fn after_create(state: &mut State, id: i64, conversation: &FakeConversation, sender: &FakeSender) {
    let Some(message) = state.messages.get(&id).cloned() else { return };
    let incoming = message.message_type == "incoming";
    let muted = state.contacts.get(&conversation.contact_id).is_some_and(|c| c.blocked);
    // Native reopen: an incoming message reopens a resolved or snoozed conversation (no agent bots here).
    if incoming && !muted && matches!(conversation.status.as_str(), "resolved" | "snoozed") {
        conversations::change_status(state, conversation.id, "open", None, None);
    }
    if let Some(c) = state.conversations.get_mut(&conversation.id) {
        c.last_activity_at = message.created_at;
    }
    if incoming && let Some(contact) = state.contacts.get_mut(&conversation.contact_id) {
        contact.last_activity_at = Some(message.created_at);
    }
    if matches!(message.message_type.as_str(), "incoming" | "outgoing" | "template") {
        emit_message(state, id, "message_created");
    }
    // waiting_since / first reply.
    let human_reply =
        message.message_type == "outgoing" && !message.private && matches!(sender, FakeSender::User { .. });
    let at = message.created_at;
    conversations::update_conversation(state, conversation.id, |c| {
        let mut changes = Vec::new();
        if human_reply {
            if c.first_reply_created_at.is_none() {
                changes.push(change("first_reply_created_at", Value::Null, json!(iso(at))));
                c.first_reply_created_at = Some(at);
            }
            if let Some(previous) = c.waiting_since.take() {
                changes.push(change("waiting_since", json!(iso(previous)), Value::Null));
            }
        } else if incoming && c.waiting_since.is_none() {
            c.waiting_since = Some(at);
            changes.push(change("waiting_since", Value::Null, json!(iso(at))));
        }
        changes
    });
}

/// Emits `message_created` / `message_updated` with `Message#webhook_data`.
pub(super) fn emit_message(state: &mut State, id: i64, event: &str) {
    let Some(message) = state.messages.get(&id).cloned() else { return };
    let mut payload = webhook_json(state, &message);
    if let Some(map) = payload.as_object_mut() {
        map.insert("event".into(), json!(event));
    }
    state.emit(message.inbox_id, payload);
}

fn list(state: &mut State, call: &Call<'_>, conversation_id: i64) -> (u16, HttpResponse) {
    let query = call.query();
    let before = query.get("before").and_then(|v| v.parse::<i64>().ok());
    let after = query.get("after").and_then(|v| v.parse::<i64>().ok());
    let all: Vec<&FakeMessage> = state.thread_messages(conversation_id).collect();
    let selected: Vec<&FakeMessage> = match (before, after) {
        (_, Some(after)) => all.into_iter().filter(|m| m.id > after).take(100).collect(),
        (Some(before), None) => {
            let older: Vec<_> = all.into_iter().filter(|m| m.id < before).collect();
            older[older.len().saturating_sub(20)..].to_vec()
        }
        (None, None) => all[all.len().saturating_sub(20)..].to_vec(),
    };
    let payload: Vec<Value> = selected.iter().map(|m| message_json(state, m)).collect();
    let Some(conversation) = state.conversations.get(&conversation_id) else { return not_found() };
    let meta = json!({
        "labels": [], "additional_attributes": conversation.additional_attributes,
        "contact": state.contacts.get(&conversation.contact_id).map(contacts::contact_push_json),
        "assignee": null, "agent_last_seen_at": null, "assignee_last_seen_at": null
    });
    reply(200, json!({"meta": meta, "payload": payload}))
}

fn update_status(state: &mut State, call: &Call<'_>, id: i64) -> (u16, HttpResponse) {
    let body = call.json.and_then(Value::as_object).cloned().unwrap_or_default();
    for key in body.keys().filter(|k| !["status", "external_error"].contains(&k.as_str())) {
        state
            .violation(format!("{}: only `status` and `external_error` can be updated, `{key}` is ignored", call.path));
    }
    let status = body.get("status").and_then(Value::as_str).unwrap_or_default().to_owned();
    if !STATUSES.contains(&status.as_str()) {
        state.violation(format!(
            "{}: status {status:?} is not sent|delivered|read|failed (ignored silently)",
            call.path
        ));
    } else {
        let external_error = body.get("external_error").and_then(scalar_text);
        set_status(state, id, &status, external_error);
    }
    state.messages.get(&id).map_or_else(not_found, |m| reply(200, message_json(state, m)))
}

/// `Messages::StatusUpdateService`: `read`→`delivered` is ignored; `external_error` is kept only with `failed`.
pub(super) fn set_status(state: &mut State, id: i64, status: &str, external_error: Option<String>) -> bool {
    let Some(message) = state.messages.get_mut(&id) else { return false };
    if message.status == "read" && status == "delivered" {
        return false;
    }
    let mut attributes = message.content_attributes.clone();
    match external_error.filter(|_| status == "failed") {
        Some(text) => attributes.insert("external_error".into(), json!(text)),
        None => attributes.remove("external_error"),
    };
    if message.status == status && attributes == message.content_attributes {
        return false;
    }
    message.status = status.to_owned();
    message.set_content_attributes(attributes);
    emit_message(state, id, "message_updated");
    true
}

/// The controller's `destroy`: content replaced, attributes `{"deleted":true}`, attachments destroyed.
pub(super) fn delete(state: &mut State, id: i64) -> bool {
    let Some(message) = state.messages.get_mut(&id) else { return false };
    message.content = Some("This message was deleted".into());
    message.content_type = "text".into();
    let mut attributes = Map::new();
    attributes.insert("deleted".into(), json!(true));
    message.set_content_attributes(attributes);
    let blobs: Vec<String> = message.attachments.drain(..).map(|a| a.blob_id).collect();
    for blob in blobs {
        state.blobs.remove(&blob);
    }
    emit_message(state, id, "message_updated");
    true
}

/// An agent pressing retry: status `sent`, `content_attributes` `{}`, within a day, with content or attachments.
pub(super) fn retry(state: &mut State, id: i64) -> bool {
    let Some(message) = state.messages.get_mut(&id) else { return false };
    let has_body = message.content.as_deref().is_some_and(|c| !c.is_empty()) || !message.attachments.is_empty();
    if !has_body || message.created_at < Utc::now() - TimeDelta::days(1) {
        return false;
    }
    message.status = "sent".into();
    message.set_content_attributes(Map::new());
    emit_message(state, id, "message_updated");
    true
}

/// `UpdateMessageStatusJob`: non-incoming `sent`/`delivered` messages up to `until` become `read`.
pub(super) fn mark_read_up_to(state: &mut State, conversation_id: i64, until: DateTime<Utc>) {
    let ids: Vec<i64> = state
        .thread_messages(conversation_id)
        .filter(|m| m.message_type != "incoming")
        .filter(|m| matches!(m.status.as_str(), "sent" | "delivered") && m.created_at <= until)
        .map(|m| m.id)
        .collect();
    for id in ids {
        set_status(state, id, "read", None);
    }
}

fn message_type_number(message_type: &str) -> u8 {
    match message_type {
        "incoming" => 0,
        "outgoing" => 1,
        "activity" => 2,
        _ => 3,
    }
}

fn attachment_json(state: &State, message: &FakeMessage, attachment: &FakeAttachment) -> Value {
    let extension = attachment.file_name.rsplit_once('.').map(|(_, ext)| ext.to_owned());
    let audio = attachment.file_type == "audio";
    let data_url =
        if audio { format!("{}?disposition=inline", attachment.data_url) } else { attachment.data_url.clone() };
    let thumb_url = if attachment.file_type == "image" {
        format!(
            "{}/rails/active_storage/representations/redirect/{}/{}",
            state.base_url,
            attachment.blob_id,
            percent_encode(&attachment.file_name)
        )
    } else {
        String::new()
    };
    let mut value = json!({
        "id": attachment.id, "message_id": message.id, "file_type": attachment.file_type,
        "account_id": message.account_id, "extension": extension, "content_type": attachment.content_type,
        "data_url": data_url, "thumb_url": thumb_url, "file_size": attachment.byte_size,
        "width": null, "height": null
    });
    if audio && let Some(map) = value.as_object_mut() {
        map.insert("transcribed_text".into(), json!(""));
    }
    value
}

fn sender_push_json(state: &State, sender: &FakeSender) -> Option<Value> {
    match sender {
        FakeSender::None => None,
        FakeSender::Contact(id) => state.contacts.get(id).map(contacts::contact_push_json),
        FakeSender::User { id, name, .. } => Some(json!({
            "id": id, "name": name, "available_name": name, "avatar_url": "", "type": "user",
            "availability_status": "online", "thumbnail": ""
        })),
    }
}

/// `api/v1/models/_message.json.jbuilder` (REST; numeric `message_type`).
pub(super) fn message_json(state: &State, message: &FakeMessage) -> Value {
    let mut value = json!({
        "id": message.id, "content": message.content, "inbox_id": message.inbox_id, "echo_id": message.echo_id,
        "conversation_id": message.conversation_display_id,
        "message_type": message_type_number(&message.message_type), "content_type": message.content_type,
        "status": message.status, "content_attributes": message.content_attributes,
        "created_at": unix(message.created_at), "private": message.private, "source_id": message.source_id
    });
    if let Some(map) = value.as_object_mut() {
        if let Some(sender) = sender_push_json(state, &message.sender) {
            map.insert("sender".into(), sender);
        }
        if !message.attachments.is_empty() {
            let list: Vec<Value> = message.attachments.iter().map(|a| attachment_json(state, message, a)).collect();
            map.insert("attachments".into(), Value::Array(list));
        }
    }
    value
}

/// `Message#push_event_data` (the `messages` array of conversations; numeric `message_type`, has `status`).
pub(super) fn push_json(state: &State, message: &FakeMessage) -> Value {
    let conversation = state.conversations.get(&message.conversation_id);
    let (sender_type, sender_id) = match &message.sender {
        FakeSender::None => (Value::Null, Value::Null),
        FakeSender::Contact(id) => (json!("Contact"), json!(id)),
        FakeSender::User { id, .. } => (json!("User"), json!(id)),
    };
    let mut value = json!({
        "id": message.id, "content": message.content, "account_id": message.account_id,
        "inbox_id": message.inbox_id, "conversation_id": message.conversation_display_id,
        "message_type": message_type_number(&message.message_type), "created_at": unix(message.created_at),
        "updated_at": iso(message.created_at), "private": message.private, "status": message.status,
        "source_id": message.source_id, "content_type": message.content_type,
        "content_attributes": message.content_attributes, "sender_type": sender_type, "sender_id": sender_id,
        "external_source_ids": {}, "additional_attributes": {}, "processed_message_content": message.content,
        "sentiment": {},
        "conversation": conversation.map(|c| json!({
            "assignee_id": c.assignee_id,
            "unread_count": conversations::unread_count(state, c),
            "last_activity_at": unix(c.last_activity_at),
            "contact_inbox": {"source_id": state.contact_inboxes.get(&c.contact_inbox_id).map(|ci| ci.source_id.clone())}
        }))
    });
    if let Some(map) = value.as_object_mut() {
        if let Some(sender) = sender_push_json(state, &message.sender) {
            map.insert("sender".into(), sender);
        }
        if !message.attachments.is_empty() {
            let list: Vec<Value> = message.attachments.iter().map(|a| attachment_json(state, message, a)).collect();
            map.insert("attachments".into(), Value::Array(list));
        }
    }
    value
}

/// Content as webhooks carry it: Markdown hard breaks (`\` + newline) and trailing newlines normalized.
fn webhook_content(content: &str) -> String {
    content.replace("\\\n", "\n").trim_end_matches('\n').to_owned()
}

/// `Message#webhook_data` (string `message_type`, ISO `created_at`, no `status`).
pub(super) fn webhook_json(state: &State, message: &FakeMessage) -> Value {
    let sender = match &message.sender {
        FakeSender::None => Value::Null,
        FakeSender::Contact(id) => {
            state.contacts.get(id).map_or(Value::Null, |c| contacts::contact_webhook_json(state, c))
        }
        FakeSender::User { id, name, email } => json!({"id": id, "name": name, "email": email, "type": "user"}),
    };
    let inbox_name = state.inboxes.get(&message.inbox_id).map(|i| i.name.clone()).unwrap_or_default();
    let conversation = state
        .conversations
        .get(&message.conversation_id)
        .map_or(Value::Null, |c| conversations::conversation_webhook_json(state, c));
    let mut value = json!({
        "id": message.id, "content": message.content.as_deref().map(webhook_content),
        "content_type": message.content_type, "content_attributes": message.content_attributes,
        "additional_attributes": {}, "message_type": message.message_type, "private": message.private,
        "source_id": message.source_id, "created_at": iso(message.created_at), "sender": sender,
        "inbox": {"id": message.inbox_id, "name": inbox_name}, "account": state.account_json(message.account_id),
        "conversation": conversation
    });
    if !message.attachments.is_empty()
        && let Some(map) = value.as_object_mut()
    {
        let list: Vec<Value> = message.attachments.iter().map(|a| attachment_json(state, message, a)).collect();
        map.insert("attachments".into(), Value::Array(list));
    }
    value
}

/// `GET /rails/active_storage/blobs/redirect/<signed id>/<filename>` → 302 to the file.
pub(super) fn blob_redirect(state: &State, signed: &str) -> (u16, HttpResponse) {
    let Some(blob) = state.blobs.get(signed) else { return no_route() };
    let location =
        format!("{}/rails/active_storage/disk/{}/{}", state.base_url, blob.disk_key, percent_encode(&blob.filename));
    (302, HttpResponse::Found().insert_header(("location", location)).finish())
}

/// `GET /rails/active_storage/disk/<key>/<filename>` → the bytes.
pub(super) fn blob_download(state: &State, key: &str) -> (u16, HttpResponse) {
    let Some(blob) = state.blobs.values().find(|b| b.disk_key == key) else { return no_route() };
    let disposition = format!(
        "inline; filename=\"{}\"; filename*=UTF-8''{}",
        blob.filename.replace('"', "%22"),
        percent_encode(&blob.filename)
    );
    (
        200,
        HttpResponse::Ok()
            .content_type(blob.content_type.clone())
            .insert_header(("content-disposition", disposition))
            .body(blob.bytes.clone()),
    )
}

/// The Liquid variables Chatwoot's drops expose (undefined ones render empty, as in Liquid).
fn liquid_variable(
    state: &State,
    conversation: &FakeConversation,
    contact: Option<&FakeContact>,
    actor: Option<&Actor>,
    name: &str,
) -> String {
    let contact_name = contact.map(|c| c.name.clone()).unwrap_or_default();
    let agent_name = actor.map(|a| a.name.clone()).unwrap_or_default();
    let first = |s: &str| s.split_whitespace().next().unwrap_or_default().to_owned();
    let last = |s: &str| s.split_whitespace().skip(1).last().unwrap_or_default().to_owned();
    match name {
        "contact.name" => contact_name,
        "contact.first_name" => first(&contact_name),
        "contact.last_name" => last(&contact_name),
        "contact.email" => contact.and_then(|c| c.email.clone()).unwrap_or_default(),
        "contact.phone_number" => contact.and_then(|c| c.phone_number.clone()).unwrap_or_default(),
        "contact.id" => contact.map(|c| c.id.to_string()).unwrap_or_default(),
        "agent.name" => agent_name,
        "agent.first_name" => first(&agent_name),
        "agent.last_name" => last(&agent_name),
        "agent.email" => actor.map(|a| a.email.clone()).unwrap_or_default(),
        "inbox.name" => state.inboxes.get(&conversation.inbox_id).map(|i| i.name.clone()).unwrap_or_default(),
        "conversation.id" | "conversation.display_id" => conversation.display_id.to_string(),
        "account.name" => state.accounts.get(&conversation.account_id).map(|a| a.name.clone()).unwrap_or_default(),
        _ => String::new(),
    }
}

/// A minimal Liquid: `{{ var }}` and `{{ var | default: 'x' }}` outside code spans; a syntax error (an
/// unclosed `{{`) leaves the content as it was, as Chatwoot rescues `Liquid::Error`.
fn render_liquid(content: &str, lookup: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = content;
    while !rest.is_empty() {
        let fence = rest.find("```");
        let tick = rest.find('`');
        let (start, marker) = match (fence, tick) {
            (Some(f), Some(t)) if f == t => (f, "```"),
            (_, Some(t)) => (t, "`"),
            _ => (rest.len(), ""),
        };
        let Some(text) = render_text(&rest[..start], lookup) else { return content.to_owned() };
        out.push_str(&text);
        rest = &rest[start..];
        if marker.is_empty() {
            break;
        }
        let end = rest[marker.len()..].find(marker).map_or(rest.len(), |e| e + 2 * marker.len());
        out.push_str(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

fn render_text(text: &str, lookup: &dyn Fn(&str) -> String) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let close = rest[open..].find("}}")? + open;
        let expression = rest[open + 2..close].trim();
        let mut parts = expression.split('|');
        let variable = parts.next().unwrap_or_default().trim();
        let mut value = lookup(variable);
        for filter in parts {
            if let Some(default) = filter.trim().strip_prefix("default:")
                && value.is_empty()
            {
                value = default.trim().trim_matches(|c| c == '\'' || c == '"').to_owned();
            }
        }
        out.push_str(&value);
        rest = &rest[close + 2..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liquid_expands_outside_code_and_keeps_bad_syntax() {
        let lookup = |name: &str| if name == "contact.name" { "Maria".to_owned() } else { String::new() };
        assert_eq!(render_liquid("Hi {{contact.name}}!", &lookup), "Hi Maria!");
        assert_eq!(render_liquid("`{{contact.name}}` {{ x | default: 'y' }}", &lookup), "`{{contact.name}}` y");
        assert_eq!(render_liquid("```\n{{a}}\n``` {{contact.name}}", &lookup), "```\n{{a}}\n``` Maria");
        assert_eq!(render_liquid("open {{ never closed", &lookup), "open {{ never closed");
    }

    #[test]
    fn file_types_follow_the_content_type() {
        assert_eq!(file_type("image/jpeg"), "image");
        assert_eq!(file_type("video/mp4"), "video");
        assert_eq!(file_type("audio/ogg; codecs=opus"), "audio");
        assert_eq!(file_type("application/pdf"), "file");
    }
}
