//! Contacts and contact_inboxes (reference §3).

use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{Call, FakeInbox, State, conversations, empty, error, id_param, iso, not_found, reply, unix, uuid};

/// A contact as the fake stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeContact {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub phone_number: Option<String>,
    /// Stored lowercased; `""` is stored as `None`.
    pub email: Option<String>,
    pub identifier: Option<String>,
    pub blocked: bool,
    /// As sent; the real Chatwoot fetches it asynchronously, the fake never does.
    pub avatar_url: Option<String>,
    pub custom_attributes: Map<String, Value>,
    pub additional_attributes: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: Option<DateTime<Utc>>,
}

/// The link between a contact and an inbox; `(inbox_id, source_id)` is unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeContactInbox {
    pub id: i64,
    pub contact_id: i64,
    pub inbox_id: i64,
    pub source_id: String,
    pub pubsub_token: String,
    pub hmac_verified: bool,
    pub created_at: DateTime<Utc>,
}

/// What `contacts_controller#permitted_params` keeps (plus `inbox_id`/`source_id`, read separately on create).
const CONTACT_PARAMS: &[&str] = &[
    "name",
    "identifier",
    "email",
    "phone_number",
    "avatar",
    "avatar_url",
    "blocked",
    "additional_attributes",
    "custom_attributes",
];
const STRING_PARAMS: &[&str] = &["name", "identifier", "email", "phone_number", "avatar_url"];
const PER_PAGE: usize = 15;

pub(super) fn route(state: &mut State, call: &Call<'_>, rest: &[&str], account_id: i64) -> (u16, HttpResponse) {
    match (call.method, rest) {
        ("GET", ["contacts"]) => index(state, call, account_id),
        ("POST", ["contacts"]) => create(state, call, account_id),
        ("GET", ["contacts", "search"]) => search(state, call, account_id),
        ("POST", ["contacts", "filter"]) => filter(state, call, account_id),
        (_, ["contacts", id, more @ ..]) => {
            let Some(contact) = id.parse::<i64>().ok().and_then(|id| state.contacts.get(&id)).cloned() else {
                return not_found();
            };
            if contact.account_id != account_id {
                return not_found();
            }
            match (call.method, more) {
                ("GET", []) => reply(200, json!({"payload": contact_json(state, &contact, true)})),
                ("PATCH" | "PUT", []) => update(state, call, contact),
                ("POST", ["contact_inboxes"]) => add_contact_inbox(state, call, &contact),
                ("GET", ["conversations"]) => {
                    let mut list: Vec<_> =
                        state.conversations.values().filter(|c| c.contact_id == contact.id).cloned().collect();
                    list.sort_by(|a, b| b.last_activity_at.cmp(&a.last_activity_at).then(b.id.cmp(&a.id)));
                    list.truncate(20);
                    let payload: Vec<Value> = list.iter().map(|c| conversations::conversation_json(state, c)).collect();
                    reply(200, json!({"payload": payload}))
                }
                _ => super::no_route(),
            }
        }
        ("POST", ["contact_inboxes", "filter"]) if super::version_at_least(&state.version, (3, 2)) => {
            filter_contact_inboxes(state, call, account_id)
        }
        _ => super::no_route(),
    }
}

/// Permitted fields of a contact body, with violations recorded for what Chatwoot drops or misreads.
fn read_fields(state: &mut State, call: &Call<'_>, create: bool) -> Map<String, Value> {
    let path = call.path;
    let Some(Value::Object(body)) = call.json else {
        state.violation(format!("{} {path}: contact body must be a JSON object", call.method));
        return Map::new();
    };
    let mut fields = Map::new();
    for (key, value) in body {
        let kept = CONTACT_PARAMS.contains(&key.as_str()) || (create && (key == "inbox_id" || key == "source_id"));
        if !kept {
            state.violation(format!("{path}: `{key}` is not a contact parameter Chatwoot permits (dropped silently)"));
            continue;
        }
        let ok = match key.as_str() {
            k if STRING_PARAMS.contains(&k) || k == "source_id" => value.is_string() || value.is_null(),
            "blocked" => value.is_boolean(),
            "additional_attributes" | "custom_attributes" => value.is_object(),
            "inbox_id" => id_param(value).is_some(),
            _ => true,
        };
        if !ok {
            state.violation(format!("{path}: `{key}` has the wrong type ({value})"));
            if matches!(key.as_str(), "additional_attributes" | "custom_attributes") {
                continue;
            }
        }
        fields.insert(key.clone(), value.clone());
    }
    fields
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn apply(contact: &mut FakeContact, fields: &Map<String, Value>) {
    for (key, value) in fields {
        match key.as_str() {
            "name" => contact.name = text(value).unwrap_or_default(),
            "phone_number" => contact.phone_number = text(value),
            "email" => contact.email = text(value).map(|e| e.to_lowercase()).filter(|e| !e.is_empty()),
            "identifier" => contact.identifier = text(value),
            "avatar_url" => contact.avatar_url = text(value),
            "blocked" => contact.blocked = value.as_bool().unwrap_or(contact.blocked),
            "custom_attributes" | "additional_attributes" => {
                let target = if key == "custom_attributes" {
                    &mut contact.custom_attributes
                } else {
                    &mut contact.additional_attributes
                };
                if let Value::Object(map) = value {
                    for (k, v) in map {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
            _ => {}
        }
    }
}

/// `phone_number` format: `/\+[1-9]\d{1,14}\z/` (no `\A`: only the end is anchored).
pub(super) fn e164_suffix(phone: &str) -> bool {
    let Some(at) = phone.rfind('+') else { return false };
    let digits = &phone[at + 1..];
    (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

fn valid_email(email: &str) -> bool {
    // Devise.email_regexp: /\A[^@\s]+@[^@\s]+\z/
    let Some((local, domain)) = email.split_once('@') else { return false };
    let plain = |s: &str| !s.is_empty() && !s.contains('@') && !s.chars().any(char::is_whitespace);
    plain(local) && plain(domain)
}

/// Contact validations in declaration order; 422 `{"message","attributes"}` on failure.
fn validate(state: &State, contact: &FakeContact) -> Result<(), Box<(u16, HttpResponse)>> {
    let others = || state.contacts.values().filter(|c| c.account_id == contact.account_id && c.id != contact.id);
    let mut messages = Vec::new();
    let mut attributes: Vec<&str> = Vec::new();
    let mut add = |attribute: &'static str, message: &str| {
        messages.push(message.to_owned());
        if !attributes.contains(&attribute) {
            attributes.push(attribute);
        }
    };
    if let Some(email) = contact.email.as_deref().filter(|e| !e.is_empty()) {
        if others().any(|c| c.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(email))) {
            add("email", "Email has already been taken");
        }
        if !valid_email(email) {
            add("email", "Email is invalid");
        }
    }
    if let Some(identifier) = contact.identifier.as_deref().filter(|i| !i.is_empty())
        && others().any(|c| c.identifier.as_deref() == Some(identifier))
    {
        add("identifier", "Identifier has already been taken");
    }
    if let Some(phone) = contact.phone_number.as_deref().filter(|p| !p.trim().is_empty()) {
        if others().any(|c| c.phone_number.as_deref() == Some(phone)) {
            add("phone_number", "Phone number has already been taken");
        }
        if !e164_suffix(phone) {
            add("phone_number", "Phone number should be in e164 format");
        }
    }
    if contact.name.chars().count() > 255 {
        add("name", "Name is too long (maximum is 255 characters)");
    }
    if messages.is_empty() {
        Ok(())
    } else {
        Err(Box::new(reply(422, json!({"message": messages.join(", "), "attributes": attributes}))))
    }
}

/// Rails' answer to an exception nothing rescues (JSON request).
pub(super) fn internal_error() -> (u16, HttpResponse) {
    reply(500, json!({"status": 500, "error": "Internal Server Error"}))
}

fn create(state: &mut State, call: &Call<'_>, account_id: i64) -> (u16, HttpResponse) {
    let fields = read_fields(state, call, true);
    let now = Utc::now();
    let mut contact = FakeContact {
        id: 0,
        account_id,
        name: String::new(),
        phone_number: None,
        email: None,
        identifier: None,
        blocked: false,
        avatar_url: None,
        custom_attributes: Map::new(),
        additional_attributes: Map::new(),
        created_at: now,
        last_activity_at: None,
    };
    apply(&mut contact, &fields);
    if let Err(answer) = validate(state, &contact) {
        return *answer;
    }
    let source_id = fields.get("source_id").and_then(text);
    let inbox = match fields.get("inbox_id").filter(|v| !v.is_null()) {
        None => {
            if source_id.is_some() {
                state.violation(format!("{}: `source_id` without `inbox_id` is ignored", call.path));
            }
            None
        }
        Some(value) => {
            let inbox = id_param(value).and_then(|id| state.inboxes.get(&id)).filter(|i| i.account_id == account_id);
            match inbox {
                Some(inbox) => Some(inbox.clone()),
                None => return not_found(),
            }
        }
    };
    let source_id = inbox.as_ref().map(|_| source_id.filter(|s| !s.is_empty()).unwrap_or_else(uuid));
    if let (Some(inbox), Some(source_id)) = (&inbox, &source_id)
        && state.contact_inbox_id(inbox.id, source_id).is_some()
    {
        state.violation(format!(
            "{}: source_id {source_id:?} already belongs to another contact of inbox {} (RecordNotUnique → 500)",
            call.path, inbox.id
        ));
        return internal_error();
    }
    contact.id = state.next_id();
    state.contacts.insert(contact.id, contact.clone());
    let contact_inbox = match (&inbox, source_id) {
        (Some(inbox), Some(source_id)) => {
            let link = new_contact_inbox(state, contact.id, inbox.id, source_id);
            json!({"inbox": inbox_record_json(state, inbox), "source_id": link.source_id})
        }
        _ => json!({"inbox": null, "source_id": null}),
    };
    reply(200, json!({"payload": {"contact": contact_json(state, &contact, true), "contact_inbox": contact_inbox}}))
}

pub(super) fn new_contact_inbox(
    state: &mut State,
    contact_id: i64,
    inbox_id: i64,
    source_id: String,
) -> FakeContactInbox {
    let id = state.next_id();
    let link = FakeContactInbox {
        id,
        contact_id,
        inbox_id,
        source_id,
        pubsub_token: super::random_token(24),
        hmac_verified: false,
        created_at: Utc::now(),
    };
    // The first link keeps the key, as a scan in id order would find it.
    state.contact_inbox_index.entry((inbox_id, link.source_id.clone())).or_insert(id);
    state.contact_inboxes.insert(id, link.clone());
    link
}

fn update(state: &mut State, call: &Call<'_>, mut contact: FakeContact) -> (u16, HttpResponse) {
    let fields = read_fields(state, call, false);
    apply(&mut contact, &fields);
    if let Err(answer) = validate(state, &contact) {
        return *answer;
    }
    state.contacts.insert(contact.id, contact.clone());
    reply(200, json!({"payload": contact_json(state, &contact, true)}))
}

/// Contacts with an email, phone number or identifier (`resolved_contacts`).
fn resolved(contact: &FakeContact) -> bool {
    let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    present(&contact.email) || present(&contact.phone_number) || present(&contact.identifier)
}

fn page_of(state: &State, list: &[FakeContact], page: usize) -> Vec<Value> {
    list.iter().skip((page - 1) * PER_PAGE).take(PER_PAGE).map(|c| contact_json(state, c, true)).collect()
}

fn index(state: &mut State, call: &Call<'_>, account_id: i64) -> (u16, HttpResponse) {
    let list: Vec<FakeContact> =
        state.contacts.values().filter(|c| c.account_id == account_id && resolved(c)).cloned().collect();
    let page = call.page();
    reply(200, json!({"meta": {"count": list.len(), "current_page": page}, "payload": page_of(state, &list, page)}))
}

fn search(state: &mut State, call: &Call<'_>, account_id: i64) -> (u16, HttpResponse) {
    let raw_q = call.http.query_string().split('&').find_map(|p| p.strip_prefix("q=")).unwrap_or_default();
    if raw_q.contains('+') {
        state.violation(format!(
            "{}: `+` in the query string decodes to a space; encode it as %2B (q={raw_q})",
            call.path
        ));
    }
    let q = call.query().get("q").cloned().unwrap_or_default();
    if q.trim().is_empty() {
        return error(422, "Specify search string with parameter q");
    }
    let lower = q.to_lowercase();
    let ilike = |v: &Option<String>| v.as_deref().is_some_and(|s| s.to_lowercase().contains(&lower));
    let list: Vec<FakeContact> = state
        .contacts
        .values()
        .filter(|c| c.account_id == account_id && resolved(c))
        .filter(|c| {
            c.name.to_lowercase().contains(&lower)
                || ilike(&c.email)
                || ilike(&c.phone_number)
                || c.identifier.as_deref().is_some_and(|i| i.contains(&q))
        })
        .cloned()
        .collect();
    let page = call.page();
    let has_more = list.len() > page * PER_PAGE;
    reply(
        200,
        json!({"meta": {"count": list.len(), "current_page": page, "has_more": has_more}, "payload": page_of(state, &list, page)}),
    )
}

/// One `contacts/filter` condition.
fn matches(contact: &FakeContact, key: &str, operator: &str, value: &str) -> Option<bool> {
    let (field, value) = match key {
        "phone_number" => (contact.phone_number.clone(), format!("+{}", value.replace('+', ""))),
        "identifier" => (contact.identifier.as_ref().map(|s| s.to_lowercase()), value.to_lowercase()),
        "email" => (contact.email.clone(), value.to_lowercase()),
        "name" => (Some(contact.name.to_lowercase()), value.to_lowercase()),
        _ => return None,
    };
    let f = field.as_deref().unwrap_or_default();
    Some(match operator {
        "equal_to" => f == value,
        "not_equal_to" => f != value,
        "contains" => f.contains(&value),
        "does_not_contain" => !f.contains(&value),
        "starts_with" => f.starts_with(&value),
        "is_present" => !f.is_empty(),
        "is_not_present" => f.is_empty(),
        _ => return None,
    })
}

fn filter(state: &mut State, call: &Call<'_>, account_id: i64) -> (u16, HttpResponse) {
    let Some(conditions) = call.json.and_then(|b| b.get("payload")).and_then(Value::as_array).cloned() else {
        state.violation(format!("{}: contacts/filter needs `payload: [{{attribute_key, …}}]`", call.path));
        return error(422, "param is missing or the value is empty: payload");
    };
    let contacts: Vec<FakeContact> =
        state.contacts.values().filter(|c| c.account_id == account_id && resolved(c)).cloned().collect();
    let mut selected = Vec::new();
    for contact in contacts {
        let mut result: Option<bool> = None;
        let mut joiner = "and".to_owned();
        for condition in &conditions {
            let key = condition.get("attribute_key").and_then(Value::as_str).unwrap_or_default();
            let operator = condition.get("filter_operator").and_then(Value::as_str).unwrap_or_default();
            let value = condition
                .get("values")
                .and_then(|v| v.as_array().and_then(|a| a.first().cloned()).or(Some(v.clone())))
                .map(|v| text(&v).unwrap_or_default())
                .unwrap_or_default();
            let Some(hit) = matches(&contact, key, operator, &value) else {
                state.violation(format!("{}: unsupported filter {key:?} {operator:?}", call.path));
                return error(422, &format!("Invalid attribute key - [{key}]"));
            };
            result = Some(match result {
                None => hit,
                Some(previous) if joiner == "or" => previous || hit,
                Some(previous) => previous && hit,
            });
            joiner = condition.get("query_operator").and_then(Value::as_str).unwrap_or("and").to_lowercase();
        }
        if result == Some(true) {
            selected.push(contact);
        }
    }
    let page = call.page();
    reply(
        200,
        json!({"meta": {"count": selected.len(), "current_page": page}, "payload": page_of(state, &selected, page)}),
    )
}

fn add_contact_inbox(state: &mut State, call: &Call<'_>, contact: &FakeContact) -> (u16, HttpResponse) {
    let body = call.json.and_then(Value::as_object).cloned().unwrap_or_default();
    for key in body.keys().filter(|k| !["inbox_id", "source_id", "hmac_verified"].contains(&k.as_str())) {
        state.violation(format!("{}: `{key}` is not a contact_inbox parameter (dropped silently)", call.path));
    }
    let Some(inbox) = body
        .get("inbox_id")
        .and_then(id_param)
        .and_then(|id| state.inboxes.get(&id))
        .filter(|i| i.account_id == contact.account_id)
        .cloned()
    else {
        return not_found();
    };
    let source_id = body.get("source_id").and_then(text).filter(|s| !s.is_empty()).unwrap_or_else(uuid);
    let existing = state.contact_inbox_id(inbox.id, &source_id).and_then(|id| state.contact_inboxes.get(&id)).cloned();
    let link = match existing {
        Some(link) if link.contact_id == contact.id => link,
        Some(_) => {
            state.violation(format!(
                "{}: source_id {source_id:?} already belongs to another contact of inbox {} (RecordNotUnique → 500)",
                call.path, inbox.id
            ));
            return internal_error();
        }
        None => new_contact_inbox(state, contact.id, inbox.id, source_id),
    };
    reply(200, json!({"source_id": link.source_id, "inbox": inbox_slim_json(&inbox)}))
}

/// `contact_inboxes_controller.rb#filter` (3.2+): `ensure_inbox` finds the inbox in the account (404
/// `Resource could not be found` otherwise), a miss is `head :not_found` (empty body), a hit renders
/// `contact_inboxes/filter.json.jbuilder`: the `_contact` partial unwrapped, with `contact_inboxes`.
fn filter_contact_inboxes(state: &mut State, call: &Call<'_>, account_id: i64) -> (u16, HttpResponse) {
    let body = call.json.and_then(Value::as_object).cloned().unwrap_or_default();
    for key in body.keys().filter(|k| !["inbox_id", "source_id"].contains(&k.as_str())) {
        state.violation(format!("{}: `{key}` is not a contact_inboxes/filter parameter", call.path));
    }
    let Some(inbox_id) = body
        .get("inbox_id")
        .and_then(id_param)
        .filter(|id| state.inboxes.get(id).is_some_and(|i| i.account_id == account_id))
    else {
        return not_found();
    };
    let source_id = body.get("source_id").and_then(text).unwrap_or_default();
    let contact = state
        .contact_inbox_id(inbox_id, &source_id)
        .and_then(|id| state.contact_inboxes.get(&id))
        .and_then(|ci| state.contacts.get(&ci.contact_id))
        .cloned();
    match contact {
        Some(contact) => reply(200, contact_json(state, &contact, true)),
        None => empty(404),
    }
}

/// Removes contact_inboxes and conversations (with their messages and files) matching `links` and `chats`.
fn destroy_dependents(
    state: &mut State,
    links: &dyn Fn(&FakeContactInbox) -> bool,
    chats: &dyn Fn(&conversations::FakeConversation) -> bool,
) {
    let ids: Vec<i64> = state.contact_inboxes.values().filter(|ci| links(ci)).map(|ci| ci.id).collect();
    for id in ids {
        if let Some(link) = state.contact_inboxes.remove(&id)
            && state.contact_inbox_index.get(&(link.inbox_id, link.source_id.clone())) == Some(&id)
        {
            state.contact_inbox_index.remove(&(link.inbox_id, link.source_id));
        }
    }
    let ids: Vec<i64> = state.conversations.values().filter(|c| chats(c)).map(|c| c.id).collect();
    for id in ids {
        let messages = state.threads.get(&id).map(|t| t.ids.clone()).unwrap_or_default();
        for message in messages {
            if let Some(message) = state.messages.remove(&message) {
                for attachment in message.attachments {
                    state.blobs.remove(&attachment.blob_id);
                }
            }
        }
        state.remove_conversation(id);
    }
}

/// An inbox destroyed by `DeleteObjectJob` (`inboxes_controller.rb#destroy`): `app/models/inbox.rb` has
/// `contact_inboxes`, `conversations` and `messages` as `dependent: :destroy_async`, so they go too (at once
/// in the fake). Contacts stay. False when there is none.
pub(super) fn destroy_inbox(state: &mut State, inbox_id: i64) -> bool {
    if state.inboxes.remove(&inbox_id).is_none() {
        return false;
    }
    state.locked_inboxes.remove(&inbox_id);
    state.inbox_members.retain(|(inbox, _)| *inbox != inbox_id);
    destroy_dependents(state, &|ci| ci.inbox_id == inbox_id, &|c| c.inbox_id == inbox_id);
    true
}

/// A contact destroyed as `contacts_controller.rb#destroy` does (`@contact.destroy!`): its
/// `contact_inboxes`, `conversations` and the messages it sent go with it (`has_many … dependent:
/// :destroy_async` in `app/models/contact.rb`; the fake removes them at once, with every message of those
/// conversations, where Chatwoot's `DeleteObjectJob`s do it shortly after). False when there is none.
pub(super) fn destroy(state: &mut State, contact_id: i64) -> bool {
    if state.contacts.remove(&contact_id).is_none() {
        return false;
    }
    destroy_dependents(state, &|ci| ci.contact_id == contact_id, &|c| c.contact_id == contact_id);
    let sent: Vec<i64> =
        state.messages.values().filter(|m| m.sender == super::FakeSender::Contact(contact_id)).map(|m| m.id).collect();
    for id in sent {
        state.messages.remove(&id);
    }
    true
}

/// `api/v1/models/_contact.json.jbuilder`.
pub(super) fn contact_json(state: &State, contact: &FakeContact, with_inboxes: bool) -> Value {
    let mut value = json!({
        "id": contact.id, "name": contact.name, "phone_number": contact.phone_number, "email": contact.email,
        "identifier": contact.identifier, "blocked": contact.blocked, "thumbnail": "",
        "availability_status": "offline", "additional_attributes": contact.additional_attributes,
        "custom_attributes": contact.custom_attributes, "created_at": unix(contact.created_at)
    });
    // `json.last_activity_at … if resource[:last_activity_at].present?`: absent until there is one.
    if let (Some(at), Some(map)) = (contact.last_activity_at, value.as_object_mut()) {
        map.insert("last_activity_at".into(), json!(unix(at)));
    }
    if with_inboxes && let Some(map) = value.as_object_mut() {
        let links: Vec<Value> = state
            .contact_inboxes
            .values()
            .filter(|ci| ci.contact_id == contact.id)
            .filter_map(|ci| {
                state.inboxes.get(&ci.inbox_id).map(|i| json!({"source_id": ci.source_id, "inbox": inbox_slim_json(i)}))
            })
            .collect();
        map.insert("contact_inboxes".into(), Value::Array(links));
    }
    value
}

/// `Contact#push_event_data` (conversation `meta.sender`, REST message senders).
pub(super) fn contact_push_json(contact: &FakeContact) -> Value {
    json!({
        "additional_attributes": contact.additional_attributes, "custom_attributes": contact.custom_attributes,
        "email": contact.email, "id": contact.id, "identifier": contact.identifier, "name": contact.name,
        "phone_number": contact.phone_number, "thumbnail": "", "blocked": contact.blocked, "type": "contact"
    })
}

/// `Contact#webhook_data` (message senders and typing users in webhooks): no `type` key.
pub(super) fn contact_webhook_json(state: &State, contact: &FakeContact) -> Value {
    json!({
        "account": state.account_json(contact.account_id), "additional_attributes": contact.additional_attributes,
        "avatar": "", "custom_attributes": contact.custom_attributes, "email": contact.email, "id": contact.id,
        "identifier": contact.identifier, "name": contact.name, "phone_number": contact.phone_number,
        "thumbnail": "", "blocked": contact.blocked
    })
}

/// `api/v1/models/_inbox_slim.json.jbuilder`.
pub(super) fn inbox_slim_json(inbox: &FakeInbox) -> Value {
    json!({"id": inbox.id, "avatar_url": "", "channel_id": inbox.channel_id, "name": inbox.name,
           "channel_type": "Channel::Api", "provider": null})
}

/// The Inbox record's `as_json` (contact create's `contact_inbox.inbox`).
fn inbox_record_json(state: &State, inbox: &FakeInbox) -> Value {
    let created = iso(Utc::now());
    json!({
        "id": inbox.id, "channel_id": inbox.channel_id, "account_id": inbox.account_id, "name": inbox.name,
        "created_at": created, "updated_at": created, "channel_type": "Channel::Api",
        "enable_auto_assignment": true, "greeting_enabled": false, "greeting_message": null, "email_address": null,
        "working_hours_enabled": false, "out_of_office_message": null, "timezone": "UTC",
        "enable_email_collect": true, "csat_survey_enabled": false, "allow_messages_after_resolved": true,
        "auto_assignment_config": {}, "lock_to_single_conversation": state.locked_inboxes.contains(&inbox.id),
        "portal_id": null, "sender_name_type": "friendly", "business_name": null, "csat_config": {}
    })
}

/// `actions/contact_merges_controller.rb#create` (`POST …/actions/contact_merge`): no Pundit check, so any
/// agent of the account may merge (its spec merges as an `agent`); `contacts.find` for `base_contact_id`,
/// then `mergee_contact_id` (an unknown, absent or other account's id raises RecordNotFound: 404 `Resource
/// could not be found`). It answers `actions/contact_merges/create.json.jbuilder`: the `_contact` partial of
/// the base contact, unwrapped and without `contact_inboxes` (no `with_contact_inboxes`).
pub(super) fn merge(state: &mut State, call: &Call<'_>, account_id: i64) -> (u16, HttpResponse) {
    let body = call.json.and_then(Value::as_object).cloned().unwrap_or_default();
    for key in body.keys().filter(|k| !["base_contact_id", "mergee_contact_id"].contains(&k.as_str())) {
        state.violation(format!("{}: `{key}` is not a contact_merge parameter", call.path));
    }
    let find = |state: &State, key: &str| {
        body.get(key)
            .and_then(id_param)
            .and_then(|id| state.contacts.get(&id))
            .filter(|c| c.account_id == account_id)
            .map(|c| c.id)
    };
    let (Some(base_id), Some(mergee_id)) = (find(state, "base_contact_id"), find(state, "mergee_contact_id")) else {
        return not_found();
    };
    merge_contacts(state, base_id, mergee_id);
    match state.contacts.get(&base_id) {
        Some(base) => reply(200, contact_json(state, base, false)),
        None => not_found(),
    }
}

/// `app/actions/contact_merge_action.rb#perform`. The same contact twice is a no-op. Otherwise, in one
/// transaction: the mergee's conversations, the messages it sent and its contact_inboxes move to the base
/// (`update(contact_id:/sender:)`), then `merge_and_remove_mergee_contact`: `identifier name email
/// phone_number additional_attributes custom_attributes` of both, `compact_blank`ed, mergee `deep_merge`d
/// under the base (the base wins, a blank base value is filled from the mergee, and the attribute hashes are
/// merged key by key), the mergee destroyed, then the base updated (after the destroy, so the base can take
/// the mergee's phone number or email without a uniqueness clash). Notes, labels and the like are not modelled.
///
/// Events (`app/listeners/webhook_listener.rb`): each moved message is updated one by one, so
/// `Message#dispatch_update_event` sends `message_updated` for it (the API inbox webhook gets those that are
/// `webhook_sendable?`: incoming, outgoing, template); a conversation whose only change is `contact_id` sends
/// nothing (`Conversation#notify_conversation_updation` only reacts to `list_of_keys`); `contact_updated`
/// and `contact_deleted` go to account webhooks only (`deliver_account_webhooks`), which the fake does not
/// have; `contact.merged` is not a webhook event.
pub(super) fn merge_contacts(state: &mut State, base_id: i64, mergee_id: i64) -> bool {
    if base_id == mergee_id {
        return state.contacts.contains_key(&base_id);
    }
    let (Some(base), Some(mergee)) = (state.contacts.get(&base_id).cloned(), state.contacts.get(&mergee_id).cloned())
    else {
        return false;
    };
    for conversation in state.conversations.values_mut().filter(|c| c.contact_id == mergee_id) {
        conversation.contact_id = base_id;
    }
    let mut moved: Vec<(i64, bool)> = state
        .messages
        .values_mut()
        .filter(|m| m.sender == super::FakeSender::Contact(mergee_id))
        .map(|m| {
            m.sender = super::FakeSender::Contact(base_id);
            (m.id, matches!(m.message_type.as_str(), "incoming" | "outgoing" | "template"))
        })
        .collect();
    moved.sort_unstable();
    for link in state.contact_inboxes.values_mut().filter(|ci| ci.contact_id == mergee_id) {
        link.contact_id = base_id;
    }
    let merged = merged_attributes(&base, &mergee);
    // Nothing depends on the mergee any more, so `destroy` removes the contact alone.
    destroy(state, mergee_id);
    if let Some(contact) = state.contacts.get_mut(&base_id) {
        apply(contact, &merged);
    }
    for (id, sendable) in moved {
        if sendable {
            super::messages::emit_message(state, id, "message_updated");
        }
    }
    true
}

/// `merge_and_remove_mergee_contact`'s `mergee_attributes.deep_merge(base_attributes)` over the mergeable
/// keys, both sides `compact_blank`ed (nil, blank strings and empty hashes dropped), as fields for `apply`.
fn merged_attributes(base: &FakeContact, mergee: &FakeContact) -> Map<String, Value> {
    let fields = |c: &FakeContact| {
        let mut map = Map::new();
        let mut put = |key: &str, value: Option<&str>| {
            if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
                map.insert(key.to_owned(), json!(v));
            }
        };
        put("identifier", c.identifier.as_deref());
        put("name", Some(c.name.as_str()));
        put("email", c.email.as_deref());
        put("phone_number", c.phone_number.as_deref());
        if !c.additional_attributes.is_empty() {
            map.insert("additional_attributes".into(), Value::Object(c.additional_attributes.clone()));
        }
        if !c.custom_attributes.is_empty() {
            map.insert("custom_attributes".into(), Value::Object(c.custom_attributes.clone()));
        }
        map
    };
    deep_merge(fields(mergee), &fields(base))
}

/// ActiveSupport's `Hash#deep_merge`: `over` wins, nested hashes are merged recursively.
fn deep_merge(mut under: Map<String, Value>, over: &Map<String, Value>) -> Map<String, Value> {
    for (key, value) in over {
        let merged = match (under.remove(key), value) {
            (Some(Value::Object(inner)), Value::Object(top)) => Value::Object(deep_merge(inner, top)),
            _ => value.clone(),
        };
        under.insert(key.clone(), merged);
    }
    under
}
