//! Conversations (reference §4), conversation webhooks (§6) and the typing/last-seen endpoints (§7).

use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::contacts::{self, internal_error};
use super::webhooks::Subject;
use super::{Actor, Call, State, empty, error, id_param, iso, messages, no_route, not_found, reply, unix, uuid};

/// A conversation as the fake stores it. URLs and webhooks use `display_id` (per account), not `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeConversation {
    /// Database id (never shown by Chatwoot's API).
    pub id: i64,
    pub display_id: i64,
    pub account_id: i64,
    pub inbox_id: i64,
    pub contact_id: i64,
    pub contact_inbox_id: i64,
    pub uuid: String,
    /// `open`, `pending`, `resolved` or `snoozed`.
    pub status: String,
    pub snoozed_until: Option<DateTime<Utc>>,
    pub assignee_id: Option<i64>,
    pub additional_attributes: Map<String, Value>,
    pub custom_attributes: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    pub waiting_since: Option<DateTime<Utc>>,
    pub first_reply_created_at: Option<DateTime<Utc>>,
    pub contact_last_seen_at: Option<DateTime<Utc>>,
}

const STATUSES: &[&str] = &["open", "pending", "resolved", "snoozed"];
const CREATE_PARAMS: &[&str] = &[
    "inbox_id",
    "contact_id",
    "source_id",
    "status",
    "additional_attributes",
    "custom_attributes",
    "assignee_id",
    "team_id",
    "snoozed_until",
    "message",
];

pub(super) fn find(state: &State, account_id: i64, display_id: &str) -> Option<i64> {
    state.conversation_by_display(account_id, display_id.parse::<i64>().ok()?)
}

pub(super) fn route(
    state: &mut State,
    call: &Call<'_>,
    rest: &[&str],
    account_id: i64,
    actor: &Actor,
) -> (u16, HttpResponse) {
    match (call.method, rest) {
        ("GET", []) => list(state, call, account_id, actor),
        ("POST", []) => create(state, call, account_id, actor),
        (_, [display_id, more @ ..]) => {
            let Some(id) = find(state, account_id, display_id) else { return not_found() };
            match (call.method, more) {
                ("GET", []) => {
                    state.conversations.get(&id).map_or_else(not_found, |c| reply(200, conversation_json(state, c)))
                }
                ("POST", ["toggle_status"]) => toggle_status(state, call, id),
                ("POST", ["toggle_typing_status"]) => {
                    let body = call.json.and_then(Value::as_object).cloned().unwrap_or_default();
                    let private = body.get("is_private").and_then(Value::as_bool).unwrap_or(false);
                    match body.get("typing_status").and_then(Value::as_str) {
                        Some(status @ ("on" | "off")) => {
                            let user = user_webhook_json(actor);
                            emit_typing(state, id, status == "on", user, private);
                        }
                        other => state.violation(format!("{}: typing_status {other:?} is not on|off", call.path)),
                    }
                    empty(200)
                }
                (_, ["messages", more @ ..]) => messages::route(state, call, more, id, actor),
                _ => no_route(),
            }
        }
        _ => no_route(),
    }
}

fn list(state: &mut State, call: &Call<'_>, account_id: i64, actor: &Actor) -> (u16, HttpResponse) {
    let query = call.query();
    let status = query.get("status").cloned().unwrap_or_else(|| "open".into());
    let inbox_id = query.get("inbox_id").and_then(|i| i.parse::<i64>().ok());
    let mut list: Vec<FakeConversation> = state
        .conversations
        .values()
        .filter(|c| c.account_id == account_id)
        .filter(|c| inbox_id.is_none_or(|i| c.inbox_id == i))
        .filter(|c| status == "all" || c.status == status)
        .cloned()
        .collect();
    list.sort_by(|a, b| b.last_activity_at.cmp(&a.last_activity_at).then(b.id.cmp(&a.id)));
    let mine = list.iter().filter(|c| c.assignee_id == Some(actor.id)).count();
    let assigned = list.iter().filter(|c| c.assignee_id.is_some()).count();
    let page = call.page();
    let payload: Vec<Value> = list.iter().skip((page - 1) * 25).take(25).map(|c| conversation_json(state, c)).collect();
    reply(
        200,
        json!({"data": {"meta": {"mine_count": mine, "assigned_count": assigned,
                                  "unassigned_count": list.len() - assigned, "all_count": list.len()},
                        "payload": payload}}),
    )
}

fn create(state: &mut State, call: &Call<'_>, account_id: i64, actor: &Actor) -> (u16, HttpResponse) {
    let path = call.path;
    let Some(body) = call.json.and_then(Value::as_object).cloned() else {
        state.violation(format!("POST {path}: conversation body must be a JSON object"));
        return error(422, "param is missing or the value is empty: source_id");
    };
    for key in body.keys().filter(|k| !CREATE_PARAMS.contains(&k.as_str())) {
        state.violation(format!("{path}: `{key}` is not a conversation parameter Chatwoot permits (dropped silently)"));
    }
    for key in ["additional_attributes", "custom_attributes", "message"] {
        if body.get(key).is_some_and(|v| !v.is_object() && !v.is_null()) {
            state.violation(format!("{path}: `{key}` must be an object"));
        }
    }
    let source_id = body.get("source_id").and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let inbox_id = body.get("inbox_id").and_then(id_param);
    let contact_id = body.get("contact_id").and_then(id_param);
    if inbox_id.is_none() || contact_id.is_none() || source_id.is_none() {
        state.violation(format!(
            "{path}: send inbox_id, contact_id and source_id together (otherwise Chatwoot looks the source_id up in every inbox)"
        ));
    }
    let status = match body.get("status").filter(|v| !v.is_null()) {
        None => None,
        Some(Value::String(s)) if STATUSES.contains(&s.as_str()) => Some(s.clone()),
        Some(other) => {
            state.violation(format!("{path}: status {other} is not a conversation status (ArgumentError → 500)"));
            return internal_error();
        }
    };
    // The contact_inbox: found or created from (contact, inbox, source_id) when both ids are given.
    let link = match (inbox_id, contact_id) {
        (Some(inbox_id), Some(contact_id)) => {
            if state.inboxes.get(&inbox_id).is_none_or(|i| i.account_id != account_id)
                || state.contacts.get(&contact_id).is_none_or(|c| c.account_id != account_id)
            {
                return not_found();
            }
            let source_id = source_id.filter(|s| !s.is_empty()).unwrap_or_else(uuid);
            let existing =
                state.contact_inbox_id(inbox_id, &source_id).and_then(|id| state.contact_inboxes.get(&id)).cloned();
            match existing {
                Some(link) if link.contact_id == contact_id => link,
                Some(_) => return error(422, "source_id should be unique"),
                None => contacts::new_contact_inbox(state, contact_id, inbox_id, source_id),
            }
        }
        _ => {
            let found = source_id.and_then(|s| state.contact_inboxes.values().find(|ci| ci.source_id == s).cloned());
            match found {
                Some(link) => link,
                None => return not_found(),
            }
        }
    };
    let Some(inbox) = state.inboxes.get(&link.inbox_id).cloned() else { return not_found() };
    let locked = state.locked_inboxes.contains(&inbox.id);
    let existing = if locked {
        state.conversations.values().filter(|c| c.contact_inbox_id == link.id).max_by_key(|c| c.id).map(|c| c.id)
    } else {
        None
    };
    let (conversation_id, created) = match existing {
        Some(id) => (id, false),
        None => {
            let blocked = state.contacts.get(&link.contact_id).is_some_and(|c| c.blocked);
            let status = status.unwrap_or_else(|| if blocked { "resolved".into() } else { "open".into() });
            let snoozed_until = (status == "snoozed").then(|| body.get("snoozed_until").and_then(time_param)).flatten();
            let now = Utc::now();
            let id = state.next_id();
            let display_id = {
                let next = state.display_ids.entry(inbox.account_id).or_insert(0);
                *next += 1;
                *next
            };
            let object = |key: &str| body.get(key).and_then(Value::as_object).cloned().unwrap_or_default();
            let conversation = FakeConversation {
                id,
                display_id,
                account_id: inbox.account_id,
                inbox_id: inbox.id,
                contact_id: link.contact_id,
                contact_inbox_id: link.id,
                uuid: uuid(),
                status,
                snoozed_until,
                assignee_id: body.get("assignee_id").and_then(id_param),
                additional_attributes: object("additional_attributes"),
                custom_attributes: object("custom_attributes"),
                created_at: now,
                updated_at: now,
                last_activity_at: now,
                waiting_since: Some(now),
                first_reply_created_at: None,
                contact_last_seen_at: None,
            };
            state.insert_conversation(conversation);
            (id, true)
        }
    };
    if created {
        emit_conversation(state, conversation_id, "conversation_created", None);
    }
    if let Some(message) = body.get("message").and_then(Value::as_object) {
        let input = messages::read_json_params(state, path, message);
        if let Err(answer) = messages::create(state, conversation_id, input, Some(actor)) {
            // The transaction is rolled back: no conversation either.
            if created {
                state.remove_conversation(conversation_id);
            }
            return *answer;
        }
    }
    state.conversations.get(&conversation_id).map_or_else(not_found, |c| reply(200, conversation_json(state, c)))
}

/// A unix-seconds or ISO-8601 time.
fn time_param(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(n) => n.as_i64().and_then(|s| DateTime::from_timestamp(s, 0)),
        Value::String(s) => s
            .parse::<i64>()
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))),
        _ => None,
    }
}

fn toggle_status(state: &mut State, call: &Call<'_>, id: i64) -> (u16, HttpResponse) {
    let body = call.json.and_then(Value::as_object).cloned().unwrap_or_default();
    for key in body.keys().filter(|k| !["status", "snoozed_until"].contains(&k.as_str())) {
        state.violation(format!("{}: `{key}` is not a toggle_status parameter (dropped silently)", call.path));
    }
    let Some(current) = state.conversations.get(&id).map(|c| c.status.clone()) else { return not_found() };
    let status = match body.get("status").filter(|v| !v.is_null()) {
        None => if current == "open" { "resolved" } else { "open" }.to_owned(),
        Some(Value::String(s)) if STATUSES.contains(&s.as_str()) => s.clone(),
        Some(other) => {
            state
                .violation(format!("{}: status {other} is not a conversation status (ArgumentError → 500)", call.path));
            return internal_error();
        }
    };
    let snoozed_until = body.get("snoozed_until").and_then(time_param);
    change_status(state, id, &status, snoozed_until, None);
    let Some(conversation) = state.conversations.get(&id) else { return not_found() };
    reply(
        200,
        json!({"meta": {}, "payload": {"success": true, "conversation_id": conversation.display_id,
               "current_status": conversation.status, "snoozed_until": conversation.snoozed_until.map(iso)}}),
    )
}

/// Sets a status as Chatwoot does, emitting `conversation_status_changed` and `conversation_updated`.
/// `assign_to` is the human agent who reopened it (assigned when the conversation has no assignee).
pub(super) fn change_status(
    state: &mut State,
    id: i64,
    status: &str,
    snoozed_until: Option<DateTime<Utc>>,
    assign_to: Option<&Actor>,
) -> bool {
    let Some(conversation) = state.conversations.get_mut(&id) else { return false };
    let snoozed_until = if status == "snoozed" { snoozed_until } else { None };
    if conversation.status == status && conversation.snoozed_until == snoozed_until {
        return false;
    }
    let now = Utc::now();
    let mut changes = vec![change("status", json!(conversation.status), json!(status))];
    if conversation.snoozed_until != snoozed_until {
        changes.push(change(
            "snoozed_until",
            json!(conversation.snoozed_until.map(iso)),
            json!(snoozed_until.map(iso)),
        ));
    }
    changes.push(change("updated_at", json!(iso(conversation.updated_at)), json!(iso(now))));
    let reopened = status == "open" && conversation.status != "open";
    conversation.status = status.to_owned();
    conversation.snoozed_until = snoozed_until;
    conversation.updated_at = now;
    let assign = assign_to.filter(|_| reopened && conversation.assignee_id.is_none()).map(|a| a.id);
    emit_conversation(state, id, "conversation_status_changed", Some(Value::Null));
    emit_conversation(state, id, "conversation_updated", Some(Value::Array(changes)));
    if let Some(agent_id) = assign {
        update_conversation(state, id, |c| {
            c.assignee_id = Some(agent_id);
            vec![change("assignee_id", Value::Null, json!(agent_id))]
        });
    }
    true
}

/// Applies a change and emits `conversation_updated` with its `changed_attributes` (plus `updated_at`).
pub(super) fn update_conversation(state: &mut State, id: i64, f: impl FnOnce(&mut FakeConversation) -> Vec<Value>) {
    let Some(conversation) = state.conversations.get_mut(&id) else { return };
    let previous = conversation.updated_at;
    let mut changes = f(conversation);
    if changes.is_empty() {
        return;
    }
    let now = Utc::now();
    conversation.updated_at = now;
    changes.push(change("updated_at", json!(iso(previous)), json!(iso(now))));
    emit_conversation(state, id, "conversation_updated", Some(Value::Array(changes)));
}

/// One `changed_attributes` entry.
pub(super) fn change(attribute: &str, previous: Value, current: Value) -> Value {
    json!({ attribute: {"previous_value": previous, "current_value": current} })
}

/// Emits a conversation event: webhook data + `event` (+ `changed_attributes` when given), built when the
/// job runs (`app/listeners/webhook_listener.rb`).
pub(super) fn emit_conversation(state: &mut State, id: i64, event: &str, changed: Option<Value>) {
    let Some(inbox_id) = state.conversations.get(&id).map(|c| c.inbox_id) else { return };
    state.emit(inbox_id, event, Subject::Conversation { id, changed });
}

/// `conversation_typing_on/off` (4.2+): `user` is a user's or a contact's webhook data.
pub(super) fn emit_typing(state: &mut State, id: i64, on: bool, user: Value, private: bool) {
    if !super::version_at_least(&state.version, (4, 2)) {
        return;
    }
    let Some(inbox_id) = state.conversations.get(&id).map(|c| c.inbox_id) else { return };
    let event = if on { "conversation_typing_on" } else { "conversation_typing_off" };
    state.emit(inbox_id, event, Subject::Typing { conversation_id: id, user, private });
}

/// `User#webhook_data`.
pub(super) fn user_webhook_json(actor: &Actor) -> Value {
    json!({"id": actor.id, "name": actor.name, "email": actor.email, "type": "user"})
}

fn assignee_json(actor: &Actor) -> Value {
    json!({"id": actor.id, "name": actor.name, "available_name": actor.name, "avatar_url": "", "type": "user",
           "availability_status": "online", "thumbnail": ""})
}

pub(super) fn unread_count(state: &State, conversation: &FakeConversation) -> usize {
    state.threads.get(&conversation.id).map_or(0, |t| t.incoming)
}

fn last_message(state: &State, conversation: &FakeConversation, chat_only: bool) -> Option<Value> {
    state
        .thread_messages(conversation.id)
        .rev()
        .find(|m| !chat_only || (!m.private && m.message_type != "activity"))
        .map(|m| messages::push_json(state, m))
}

/// `conversations/partials/_conversation.json.jbuilder` (REST).
pub(super) fn conversation_json(state: &State, conversation: &FakeConversation) -> Value {
    let contact = state.contacts.get(&conversation.contact_id);
    let mut meta = json!({
        "sender": contact.map(|c| contacts::contact_json(state, c, false)),
        "channel": "Channel::Api", "hmac_verified": false
    });
    if let (Some(map), Some(assignee)) =
        (meta.as_object_mut(), conversation.assignee_id.and_then(|id| super::user_by_id(state, id)))
    {
        map.insert("assignee".into(), assignee_json(&assignee));
        map.insert("assignee_type".into(), json!("User"));
    }
    let last = last_message(state, conversation, false);
    let last_activity = unix(conversation.last_activity_at);
    json!({
        "id": conversation.display_id, "account_id": conversation.account_id, "uuid": conversation.uuid,
        "inbox_id": conversation.inbox_id, "status": conversation.status, "meta": meta,
        "messages": last.iter().collect::<Vec<_>>(),
        "additional_attributes": conversation.additional_attributes,
        "custom_attributes": conversation.custom_attributes, "labels": [], "can_reply": true,
        "muted": contact.is_some_and(|c| c.blocked), "snoozed_until": conversation.snoozed_until.map(iso),
        "agent_last_seen_at": 0, "assignee_last_seen_at": 0,
        "contact_last_seen_at": conversation.contact_last_seen_at.map_or(0, unix),
        "created_at": unix(conversation.created_at), "updated_at": float_time(conversation.updated_at),
        "timestamp": last_activity, "last_activity_at": last_activity,
        "first_reply_created_at": conversation.first_reply_created_at.map_or(0, unix),
        "unread_count": unread_count(state, conversation),
        "last_non_activity_message": last_message(state, conversation, true),
        "priority": null, "waiting_since": conversation.waiting_since.map_or(0, unix), "sla_policy_id": null
    })
}

fn float_time(time: DateTime<Utc>) -> f64 {
    time.timestamp_micros() as f64 / 1_000_000.0
}

/// `Conversations::EventDataPresenter#webhook_data`.
pub(super) fn conversation_webhook_json(state: &State, conversation: &FakeConversation) -> Value {
    let link = state.contact_inboxes.get(&conversation.contact_inbox_id);
    let contact_inbox = link.map(|ci| {
        json!({"id": ci.id, "contact_id": ci.contact_id, "inbox_id": ci.inbox_id, "source_id": ci.source_id,
               "created_at": iso(ci.created_at), "updated_at": iso(ci.created_at),
               "hmac_verified": ci.hmac_verified, "pubsub_token": ci.pubsub_token})
    });
    let assignee = conversation.assignee_id.and_then(|id| super::user_by_id(state, id));
    let last_activity = unix(conversation.last_activity_at);
    let mut value = json!({
        "id": conversation.display_id, "inbox_id": conversation.inbox_id, "channel": "Channel::Api",
        "status": conversation.status, "can_reply": true, "contact_inbox": contact_inbox,
        "meta": {
            "sender": state.contacts.get(&conversation.contact_id).map(contacts::contact_push_json),
            "assignee": assignee.as_ref().map(assignee_json),
            "assignee_type": assignee.as_ref().map(|_| "User"), "team": null, "hmac_verified": false
        },
        "messages": last_message(state, conversation, true).into_iter().collect::<Vec<_>>(),
        "labels": [], "additional_attributes": conversation.additional_attributes,
        "custom_attributes": conversation.custom_attributes, "snoozed_until": conversation.snoozed_until.map(iso),
        "unread_count": unread_count(state, conversation),
        "first_reply_created_at": conversation.first_reply_created_at.map(unix), "priority": null,
        "waiting_since": conversation.waiting_since.map(unix), "agent_last_seen_at": 0,
        "contact_last_seen_at": conversation.contact_last_seen_at.map_or(0, unix),
        "last_activity_at": last_activity, "timestamp": last_activity,
        "created_at": unix(conversation.created_at), "updated_at": float_time(conversation.updated_at)
    });
    if super::version_at_least_patch(&state.version, (4, 14, 2))
        && let Some(map) = value.as_object_mut()
    {
        map.insert("account".into(), state.account_json(conversation.account_id));
    }
    value
}

/// `/public/api/v1/inboxes/{identifier}/contacts/{source_id}/conversations/{display_id}/{action}`.
pub(super) fn public_route(
    state: &mut State,
    call: &Call<'_>,
    identifier: &str,
    source_id: &str,
    display_id: &str,
    action: &str,
) -> (u16, HttpResponse) {
    let Some(inbox) = state.inboxes.values().find(|i| i.identifier == identifier).cloned() else {
        return not_found();
    };
    let Some(link) = state.contact_inbox_id(inbox.id, source_id).and_then(|id| state.contact_inboxes.get(&id)).cloned()
    else {
        return not_found();
    };
    let display_id = display_id.parse::<i64>().unwrap_or(-1);
    // A conversation's account is its inbox's, where display ids are unique.
    let Some(id) = state
        .conversation_by_display(inbox.account_id, display_id)
        .filter(|id| state.conversations.get(id).is_some_and(|c| c.contact_inbox_id == link.id))
    else {
        return not_found();
    };
    match (call.method, action) {
        ("POST", "toggle_typing") => {
            let status = call.json.and_then(|b| b.get("typing_status")).and_then(Value::as_str);
            match status {
                Some(status @ ("on" | "off")) => {
                    let user = state.contacts.get(&link.contact_id).map(|c| contacts::contact_webhook_json(state, c));
                    emit_typing(state, id, status == "on", user.unwrap_or(Value::Null), false);
                }
                other => state.violation(format!("{}: typing_status {other:?} is not on|off", call.path)),
            }
            empty(200)
        }
        ("POST", "update_last_seen") => {
            let now = Utc::now();
            if let Some(conversation) = state.conversations.get_mut(&id) {
                conversation.contact_last_seen_at = Some(now);
            }
            messages::mark_read_up_to(state, id, now);
            empty(200)
        }
        _ => no_route(),
    }
}
