//! Messages (reference §5): create (JSON and multipart), list, status PATCH, delete, retry, attachments
//! served through Active Storage-style redirect URLs, and the `message_*` webhooks (§6), each as the
//! Chatwoot version set on the fake does it: `source_id` from 3.4, `content_attributes` on create from 4.9,
//! webhook text normalized from 4.13, attachment `extension`/`content_type` from 4.13.

use std::collections::VecDeque;

use actix_web::HttpResponse;
use bytes::Bytes;
use chrono::{DateTime, Duration as TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::contacts::{self, FakeContact};
use super::conversations::{self, FakeConversation, change};
use super::multipart::{FilePart, Form};
use super::webhooks::Subject;
use super::{Actor, Call, State, error, iso, no_route, not_found, reply, unix};
use ryze_wire::chatwoot_version::{BACKSLASH_BREAKS_FIXED, CONTENT_ATTRIBUTES, OLDEST_SUPPORTED, Version};

/// PR #13945 (merged 2026-03-30, taken as first released in 4.13): attachments carry `extension` (filled)
/// and `content_type`, and audio `data_url` gets `?disposition=inline`.
const ATTACHMENT_CONTENT_TYPE: Version = Version(4, 13, 0);

/// The fake's version as a [`Version`] (unparsable: the newest behaviour).
fn version(state: &State) -> Version {
    Version::parse(&state.version).unwrap_or(Version(u64::MAX, 0, 0))
}

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
    /// Creation times of the messages of the last minute, oldest first (older ones are dropped on every
    /// push and count, so a count costs O(1) amortized however fast messages come).
    recent: VecDeque<DateTime<Utc>>,
}

impl Thread {
    /// Messages with `created_at >= since`: `prevent_message_flooding` counts every message of the
    /// conversation (any type, private notes too) created in the last minute.
    fn created_since(&mut self, since: DateTime<Utc>) -> usize {
        while self.recent.front().is_some_and(|at| *at < since) {
            self.recent.pop_front();
        }
        self.recent.len()
    }

    fn push(&mut self, id: i64, incoming: bool, at: DateTime<Utc>) {
        self.ids.push(id);
        self.incoming += usize::from(incoming);
        self.recent.push_back(at);
        self.created_since(at - TimeDelta::minutes(1));
    }
}

/// `app/models/message.rb#prevent_message_flooding` (a `before_validation`, so on create and on every
/// update): `conversation.messages.where('created_at >= ?', 1.minute.ago).count >=
/// Limits.conversation_message_per_minute_limit` adds the base error `Too many messages`.
fn flooded(state: &mut State, conversation_id: i64) -> bool {
    let Some(limit) = state.conversation_message_limit else { return false };
    let since = Utc::now() - TimeDelta::minutes(1);
    state.threads.get_mut(&conversation_id).map_or(0, |t| t.created_since(since)) >= limit
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
            // `messages_controller.rb#create` rescues StandardError as 422 `{"error": e.message}`.
            let fault =
                state.unprocessable.iter_mut().find(|f| f.left > 0 && call.path.contains(f.path_part.as_str())).map(
                    |f| {
                        f.left -= 1;
                        (f.text.clone(), f.after_commit)
                    },
                );
            if let Some((text, false)) = &fault {
                return error(422, text);
            }
            match create(state, conversation_id, input, Some(actor)) {
                Ok(_) if fault.is_some() => error(422, &fault.map(|f| f.0).unwrap_or_default()),
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

/// `app/helpers/file_type_helper.rb#file_type`.
fn file_type(content_type: &str) -> &'static str {
    let content_type = content_type.split(';').next().unwrap_or_default().trim().to_lowercase();
    match content_type.as_str() {
        // `image_file?` lists no `image/jpg`: such a part is a `file` (a download, not a preview).
        "image/jpeg" | "image/png" | "image/gif" | "image/bmp" | "image/webp" => "image",
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
    if flooded(state, conversation_id) {
        // `save!` raises RecordInvalid, rescued by the controller's `rescue StandardError`.
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
    let mut attributes = builder_attributes(state, &input.content_attributes);
    resolve_reply(state, conversation_id, &mut attributes);
    // `source_id: @params[:source_id]` arrived in `message_builder.rb` with #8359 (3.4.0); before, dropped.
    let source_id = input.source_id.clone().filter(|_| version(state) >= OLDEST_SUPPORTED);
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
        source_id,
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

/// The `content_attributes` `MessageBuilder` keeps. From 4.9 (`content_attributes: content_attributes.presence`,
/// #12782) all of them; before, `message_params` takes only `items: @items, in_reply_to: @in_reply_to` (dug
/// out of `content_attributes`) and `automation_rule_id`, so `in_reply_to_external_id` and the rest are dropped.
fn builder_attributes(state: &State, posted: &Map<String, Value>) -> Map<String, Value> {
    if version(state) >= CONTENT_ATTRIBUTES {
        return posted.clone();
    }
    posted
        .iter()
        .filter(|(key, value)| {
            matches!(key.as_str(), "in_reply_to" | "items" | "automation_rule_id") && !value.is_null()
        })
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// `Messages::InReplyToMessageBuilder` (`message.rb#ensure_in_reply_to`, before save): resolves the quoted message in the same conversation and writes both keys.
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

/// Emits `message_created` / `message_updated`; `Message#webhook_data` is built when the job runs.
pub(super) fn emit_message(state: &mut State, id: i64, event: &str) {
    let Some(inbox_id) = state.messages.get(&id).map(|m| m.inbox_id) else { return };
    state.emit(inbox_id, event, Subject::Message(id));
}

/// Ruby's `String#to_i`: leading digits (after an optional sign), else 0.
fn ruby_to_i(text: &str) -> i64 {
    let text = text.trim_start();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let digits: String = digits.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<i64>().map_or(0, |n| sign * n)
}

/// The last `n` of a list, oldest first.
fn last_n<T: Copy>(list: &[T], n: usize) -> Vec<T> {
    list[list.len().saturating_sub(n)..].to_vec()
}

/// `app/finders/message_finder.rb`, ordered by `created_at` (the fake's ids grow with it):
/// `after` + `before`: `id >= after AND id < before`, ascending, up to 1000; `before`: the 20 just older
/// than the id; `after`: up to 100 newer than the id, ascending; `before_timestamp`: the 20 created before
/// that unix time; otherwise the latest 20. `filter_internal_messages` drops private notes and activities.
fn list(state: &mut State, call: &Call<'_>, conversation_id: i64) -> (u16, HttpResponse) {
    let query = call.query();
    // `.present?`: a blank parameter counts as absent; Ruby's `to_i` reads the rest.
    let param = |key: &str| query.get(key).filter(|v| !v.trim().is_empty()).map(|v| ruby_to_i(v));
    let internal_filtered = query.get("filter_internal_messages").is_some_and(|v| !v.trim().is_empty());
    let all: Vec<&FakeMessage> = state
        .thread_messages(conversation_id)
        .filter(|m| !internal_filtered || (!m.private && m.message_type != "activity"))
        .collect();
    let selected: Vec<&FakeMessage> = match (param("after"), param("before"), param("before_timestamp")) {
        (Some(after), Some(before), _) => {
            all.into_iter().filter(|m| m.id >= after && m.id < before).take(1000).collect()
        }
        (None, Some(before), _) => last_n(&all.into_iter().filter(|m| m.id < before).collect::<Vec<_>>(), 20),
        (Some(after), None, _) => all.into_iter().filter(|m| m.id > after).take(100).collect(),
        (None, None, Some(timestamp)) => {
            last_n(&all.into_iter().filter(|m| m.created_at.timestamp() < timestamp).collect::<Vec<_>>(), 20)
        }
        (None, None, None) => last_n(&all, 20),
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
    let conversation_id = state.messages.get(&id).map(|m| m.conversation_id).unwrap_or_default();
    if STATUSES.contains(&status.as_str()) && flooded(state, conversation_id) {
        // `update!` runs `prevent_message_flooding` too; the RecordInvalid is not rescued in `update`, so
        // `request_exception_handler.rb#render_record_invalid` answers.
        return reply(422, json!({"message": "Too many messages", "attributes": ["base"]}));
    }
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

/// `Messages::StatusUpdateService`: `read`→`delivered` is ignored; `update!(status:, external_error: (failed
/// ? external_error : nil))`. `external_error` is a `store` accessor on `content_attributes`, and Rails'
/// `HashAccessor.write` skips a value equal to the current one: an error that was there becomes
/// `"external_error": null` (the key stays), an absent one stays absent.
pub(super) fn set_status(state: &mut State, id: i64, status: &str, external_error: Option<String>) -> bool {
    let Some(message) = state.messages.get_mut(&id) else { return false };
    if message.status == "read" && status == "delivered" {
        return false;
    }
    let mut attributes = message.content_attributes.clone();
    match external_error.filter(|_| status == "failed") {
        Some(text) => {
            attributes.insert("external_error".into(), json!(text));
        }
        None => {
            if attributes.get("external_error").is_some_and(|v| !v.is_null()) {
                attributes.insert("external_error".into(), Value::Null);
            }
        }
    }
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

/// An agent pressing retry (4.10.1 `messages_controller.rb#retry`), within a day, with content or attachments:
/// `Messages::StatusUpdateService.new(message, 'sent').perform`, then `message.update!(content_attributes: {})`.
/// Two updates, so up to two `message_updated` (each only when something changed: `dispatch_update_event`
/// returns when `previous_changes` is blank). With PR #15912 emulated the second keeps every attribute but
/// `external_error`.
pub(super) fn retry(state: &mut State, id: i64) -> bool {
    let Some(message) = state.messages.get(&id) else { return false };
    let has_body = message.content.as_deref().is_some_and(|c| !c.is_empty()) || !message.attachments.is_empty();
    if !has_body || message.created_at < Utc::now() - TimeDelta::days(1) {
        return false;
    }
    set_status(state, id, "sent", None);
    let keep = state.retry_keeps_attributes;
    let Some(message) = state.messages.get_mut(&id) else { return false };
    let attributes = if keep {
        let mut kept = message.content_attributes.clone();
        kept.remove("external_error");
        kept
    } else {
        Map::new()
    };
    if attributes != message.content_attributes {
        message.set_content_attributes(attributes);
        emit_message(state, id, "message_updated");
    }
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

/// `app/models/attachment.rb#push_event_data`: `base_data` + `file_metadata`. Before PR #13945 the
/// `extension` column is never filled (`null`), there is no `content_type`, and audio uses plain `file_url`.
fn attachment_json(state: &State, message: &FakeMessage, attachment: &FakeAttachment) -> Value {
    let newer = version(state) >= ATTACHMENT_CONTENT_TYPE;
    let extension = attachment.file_name.rsplit_once('.').map(|(_, ext)| ext.to_owned()).filter(|_| newer);
    let audio = attachment.file_type == "audio";
    let data_url = if audio && newer {
        format!("{}?disposition=inline", attachment.data_url)
    } else {
        attachment.data_url.clone()
    };
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
    if let Some(map) = value.as_object_mut() {
        if !newer {
            map.remove("content_type");
        }
        if audio {
            map.insert("transcribed_text".into(), json!(""));
        }
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

/// Content as webhooks carry it. From the release with `Messages::WebhookContentNormalizer` (PR #13950 /
/// #14272, taken as 4.13) the dashboard editor's hard breaks (`\` + newline) become newlines and trailing
/// newlines are trimmed; before, `webhook_data` sends `content` as stored (4.10.1 `message.rb#webhook_data`;
/// the `\` breaks are what the 4.9+ editor stores, issues #13458/#13669; below 4.9 the fake also delivers
/// as stored: which editor stored what there is not verified).
fn webhook_content(state: &State, content: &str) -> String {
    if version(state) < BACKSLASH_BREAKS_FIXED {
        return content.to_owned();
    }
    let mut text = content.replace("\\\r\n", "\n").replace("\\\n", "\n");
    while text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
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
        "id": message.id, "content": message.content.as_deref().map(|c| webhook_content(state, c)),
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

/// `app/models/concerns/liquidable.rb#process_liquid_in_content` for outgoing and template messages with
/// content: `modified_liquid_content` wraps every code span (`/`(.*?)`/m`) in `{% raw %}…{% endraw %}`, the
/// result is parsed and rendered by Liquid, and a `Liquid::Error` (syntax error) is rescued leaving the
/// content as posted. A minimal Liquid here: `{% raw %}…{% endraw %}` is kept literally without its tags,
/// `{{ var }}`, `{{ 'literal' }}` and the `default:` filter are rendered, and anything it cannot parse
/// (an unclosed `{{`, `{%` or `raw`, or a tag other than raw) leaves the content as it was. Real Liquid
/// would run the other tags (`if`, `assign`, …); the fake does not emulate them.
fn render_liquid(content: &str, lookup: &dyn Fn(&str) -> String) -> String {
    render_template(&protect_code_spans(content), lookup).unwrap_or_else(|| content.to_owned())
}

/// `modified_liquid_content`: each `` `…` `` span (non-greedy, across lines) inside raw tags.
fn protect_code_spans(content: &str) -> String {
    let mut out = String::with_capacity(content.len());
    let mut rest = content;
    while let Some(open) = rest.find('`') {
        let Some(close) = rest[open + 1..].find('`').map(|c| c + open + 1) else { break };
        out.push_str(&rest[..open]);
        out.push_str("{% raw %}");
        out.push_str(&rest[open..=close]);
        out.push_str("{% endraw %}");
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The name of a `{% … %}` tag (`{%- raw -%}` too).
fn tag_name(inner: &str) -> &str {
    inner.trim_matches('-').split_whitespace().next().unwrap_or_default()
}

fn render_template(text: &str, lookup: &dyn Fn(&str) -> String) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    loop {
        let output = rest.find("{{");
        let tag = rest.find("{%");
        match (output, tag) {
            (Some(o), t) if t.is_none_or(|t| o < t) => {
                out.push_str(&rest[..o]);
                let close = rest[o..].find("}}")? + o;
                out.push_str(&render_output(rest[o + 2..close].trim(), lookup));
                rest = &rest[close + 2..];
            }
            (_, Some(t)) => {
                out.push_str(&rest[..t]);
                let close = rest[t..].find("%}")? + t;
                if tag_name(&rest[t + 2..close]) != "raw" {
                    return None;
                }
                rest = &rest[close + 2..];
                // Raw content runs to the first `{% endraw %}`, kept literally.
                let mut search = 0;
                let (end, after) = loop {
                    let open = rest[search..].find("{%")? + search;
                    let close = rest[open..].find("%}")? + open;
                    if tag_name(&rest[open + 2..close]) == "endraw" {
                        break (open, close + 2);
                    }
                    search = open + 2;
                };
                out.push_str(&rest[..end]);
                rest = &rest[after..];
            }
            _ => {
                out.push_str(rest);
                return Some(out);
            }
        }
    }
}

/// One `{{ … }}`: a quoted literal or a variable, then filters (`default:` only).
fn render_output(expression: &str, lookup: &dyn Fn(&str) -> String) -> String {
    let mut parts = expression.split('|');
    let head = parts.next().unwrap_or_default().trim();
    let unquote = |s: &str| -> Option<String> {
        let quote = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        (s.len() >= 2 && s.ends_with(quote)).then(|| s[1..s.len() - 1].to_owned())
    };
    let mut value = unquote(head).unwrap_or_else(|| lookup(head));
    for filter in parts {
        if let Some(default) = filter.trim().strip_prefix("default:")
            && value.is_empty()
        {
            let default = default.trim();
            value = unquote(default).unwrap_or_else(|| lookup(default));
        }
    }
    value
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
        assert_eq!(render_liquid("{% raw %}Hi {{name}}{% endraw %} {{contact.name}}", &lookup), "Hi {{name}} Maria");
        assert_eq!(render_liquid("{%- raw -%}{% if %}{%- endraw -%}", &lookup), "{% if %}");
        assert_eq!(
            render_liquid("{% raw %}never closed {{contact.name}}", &lookup),
            "{% raw %}never closed {{contact.name}}"
        );
        assert_eq!(
            render_liquid("{% if x %}y{% endif %} {{contact.name}}", &lookup),
            "{% if x %}y{% endif %} {{contact.name}}"
        );
        assert_eq!(render_liquid("{{ '{% endraw %}' }}", &lookup), "{% endraw %}");
    }

    #[test]
    fn file_types_follow_the_content_type() {
        assert_eq!(file_type("image/jpeg"), "image");
        assert_eq!(file_type("video/mp4"), "video");
        assert_eq!(file_type("audio/ogg; codecs=opus"), "audio");
        assert_eq!(file_type("application/pdf"), "file");
        assert_eq!(file_type("image/jpg"), "file");
    }
}
