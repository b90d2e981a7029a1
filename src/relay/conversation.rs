//! A chat's Chatwoot contact and conversation: created once and remembered, linked when Chatwoot already
//! has the contact, looked for before a second is opened when an earlier attempt may have opened one, and
//! created again when deleted in Chatwoot (only a deleted inbox halts the integration).

use std::time::Duration;

use entity::chat;
use sea_orm::DatabaseConnection;
use serde_json::{Map, Value, json};

use super::RelayContext;
use super::identity;
use super::step::{Outcome, Step, inbox_gone, on_chatwoot_error, settled, store_failed};
use crate::chatwoot::dto::{NewContact, NewConversation};
use crate::chatwoot::{ChatwootClient, ChatwootError, Failure};
use crate::ryzeapi::event::Party;
use crate::store;
use crate::store::chats::ChatKind;

/// The chat's Chatwoot contact (and contact_inbox), created once. A contact Chatwoot already has (same
/// phone or identifier, e.g. from another inbox) is linked instead.
pub(super) async fn ensure_contact(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    chat: chat::Model,
    party: &Party,
) -> Step<chat::Model> {
    if chat.contact_id.is_some() {
        return Ok(chat);
    }
    let source_id = chat.chat_key.clone();
    let phone = (chat.kind == ChatKind::Private).then(|| identity::phone_number(&chat.chat_key)).flatten();
    let mut custom = Map::new();
    if let Some(jid) = &party.jid {
        custom.insert("whatsapp_jid".into(), json!(jid));
    }
    if let Some(lid) = &party.lid {
        custom.insert("whatsapp_lid".into(), json!(lid));
    }
    let new_contact = NewContact {
        inbox_id: relay.inbox_id,
        source_id: &source_id,
        name: &chat.name,
        phone_number: phone.as_deref(),
        identifier: &chat.chat_key,
        custom_attributes: Value::Object(custom),
        avatar_url: party.picture_url.as_deref().filter(|p| !p.is_empty()),
    };
    let contact_id = match chatwoot.create_contact(&new_contact).await {
        Ok(contact) => contact.id,
        Err(e) if e.failure() == Failure::ServerError || is_taken(&e) => {
            link_existing_contact(relay, chatwoot, &chat, phone.as_deref(), &e).await?
        }
        // Creating a contact finds only the inbox (`contacts_controller.rb#create`): a 404 means it is gone.
        Err(e) if e.failure() == Failure::NotFound => return Err(gone_or_retry(relay, chatwoot, &e).await),
        Err(e) => return Err(on_chatwoot_error(&e)),
    };
    let mut chat = store::chats::set_contact(db, chat.id, contact_id, &source_id).await.map_err(store_failed)?;
    if let Some(picture) = new_contact.avatar_url {
        chat = store::chats::set_profile(db, chat.id, &chat.name, Some(picture)).await.map_err(store_failed)?;
    }
    relay.live.chats.forget(|cached| cached.id == chat.id);
    Ok(chat)
}

/// Chatwoot's answer when the phone number or identifier already belongs to a contact of the account.
fn is_taken(error: &ChatwootError) -> bool {
    matches!(error, ChatwootError::Status { status: 422, message, .. } if message.contains("has already been taken"))
}

/// The contact Chatwoot already has for this chat, after a create was refused: the one the inbox links
/// to the chat's `source_id` (an earlier create that timed out, or a contact merged or edited by an
/// agent), else the one with the phone number or identifier, linked to the inbox now. A 500 from a create
/// is `RecordNotUnique` when the link exists (`contact_inbox_builder.rb` re-raises it for API inboxes),
/// else a passing failure.
async fn link_existing_contact(
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    chat: &chat::Model,
    phone: Option<&str>,
    refused: &ChatwootError,
) -> Step<i64> {
    let linked = || async {
        chatwoot.contact_by_inbox_source(relay.inbox_id, &chat.chat_key).await.map_err(|e| on_chatwoot_error(&e))
    };
    if let Some(contact) = linked().await? {
        return Ok(contact.id);
    }
    let ChatwootError::Status { status: 422, message, .. } = refused else { return Err(on_chatwoot_error(refused)) };
    let (attribute, value) = match phone {
        Some(phone) if message.contains("Phone") => ("phone_number", phone.trim_start_matches('+').to_owned()),
        _ => ("identifier", chat.chat_key.clone()),
    };
    let found = chatwoot.find_contacts(attribute, &value).await.map_err(|e| on_chatwoot_error(&e))?;
    let Some(contact) = found.first() else {
        return Err(Outcome::Failed(format!("Chatwoot says the contact exists ({message}) but does not find it")));
    };
    match chatwoot.create_contact_inbox(contact.id, relay.inbox_id, &chat.chat_key).await {
        Ok(()) => Ok(contact.id),
        Err(e) if e.failure() == Failure::ServerError => match linked().await? {
            // Linked meanwhile, to this contact or another one.
            Some(contact) => Ok(contact.id),
            // A 500 that keeps coming is no passing failure: say so instead of retrying for ever.
            None => Err(Outcome::Failed(format!(
                "Chatwoot cannot link contact {} to the inbox for {}. Detail: {}",
                contact.id,
                chat.chat_key,
                e.detail()
            ))),
        },
        Err(e) => Err(on_chatwoot_error(&e)),
    }
}

/// The conversation to post into: the chat's last one unless it is resolved (then `reopenResolved`
/// decides), else a new one. Returns the chat as it now is, the conversation, and whether it was resolved.
/// When `retrying`, a conversation an earlier, timed-out attempt may have created is looked for first (new
/// customers cost no extra call). A contact deleted in Chatwoot is created again (once per call); only a
/// deleted inbox halts.
pub(super) async fn ensure_conversation(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    chat: &chat::Model,
    retrying: bool,
) -> Step<(chat::Model, i64, bool)> {
    if let Some(id) = chat.conversation_id {
        let resolved = chat.conversation_status.as_deref() == Some("resolved");
        // The status conversation receives notices even when resolved.
        if !resolved || relay.reopen_resolved || chat.kind == ChatKind::Status {
            return Ok((chat.clone(), id, resolved));
        }
    }
    let mut chat = chat.clone();
    // An earlier call (this process's, or one of a process that died, was paused past its lease or handed
    // the integration over before the answer was stored) may have opened a conversation: wait until that
    // call can no longer land, then look before opening another.
    let retrying = match chat.conversation_attempted_at {
        Some(attempted_at) => {
            settled(chatwoot, attempted_at, "waiting for an earlier attempt to open the conversation to settle")?;
            true
        }
        None => retrying,
    };
    let mut contact_recreated = false;
    loop {
        let (Some(contact_id), Some(source_id)) = (chat.contact_id, chat.contact_source_id.clone()) else {
            return Err(Outcome::Failed("chat has no contact".into()));
        };
        store::chats::mark_conversation_attempted(db, chat.id).await.map_err(store_failed)?;
        relay.live.chats.forget(|cached| cached.id == chat.id);
        let conversation = match find_or_create_conversation(relay, chatwoot, contact_id, &source_id, retrying).await {
            Ok(conversation) => conversation,
            Err(e) if e.failure() == Failure::NotFound && !contact_recreated => {
                // The contact or the inbox is gone: only the inbox halts the integration.
                if !inbox_exists(relay, chatwoot).await? {
                    return Err(inbox_gone(&e));
                }
                tracing::info!(integration_id = %relay.integration_id, chat_id = chat.id, contact_id, "the Chatwoot contact is gone; creating it again");
                contact_recreated = true;
                let forgotten = store::chats::forget_contact(db, chat.id).await.map_err(store_failed)?;
                relay.live.chats.forget(|cached| cached.id == chat.id);
                chat = ensure_contact(db, relay, chatwoot, forgotten, &party_of(&chat)).await?;
                continue;
            }
            Err(e) if e.failure() == Failure::NotFound => return Err(gone_or_retry(relay, chatwoot, &e).await),
            Err(e) => return Err(on_chatwoot_error(&e)),
        };
        let chat = set_conversation(db, relay, chat.id, Some((conversation.id, conversation.status.as_str()))).await?;
        return Ok((chat, conversation.id, false));
    }
}

/// The contact's open conversation in this inbox that an earlier attempt may have created (when
/// `retrying`), else a new one.
async fn find_or_create_conversation(
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    contact_id: i64,
    source_id: &str,
    retrying: bool,
) -> Result<crate::chatwoot::dto::Conversation, ChatwootError> {
    if retrying {
        let existing = chatwoot.contact_conversations(contact_id).await?;
        let usable =
            existing.into_iter().filter(|c| c.inbox_id == Some(relay.inbox_id)).find(|c| c.status != "resolved");
        if let Some(conversation) = usable {
            return Ok(conversation);
        }
    }
    let request = NewConversation {
        inbox_id: relay.inbox_id,
        contact_id,
        source_id,
        status: relay.start_as_pending.then_some("pending"),
    };
    chatwoot.create_conversation(&request).await
}

/// Whether the integration's inbox still exists in Chatwoot.
async fn inbox_exists(relay: &RelayContext, chatwoot: &ChatwootClient) -> Step<bool> {
    match chatwoot.get_inbox(relay.inbox_id).await {
        Ok(_) => Ok(true),
        Err(e) if e.failure() == Failure::NotFound && !matches!(e, ChatwootError::Unexpected { .. }) => Ok(false),
        Err(e) => Err(on_chatwoot_error(&e)),
    }
}

/// A 404 whose cause the bridge cannot repair: a halt if the inbox is gone, else a retry (never a drop).
async fn gone_or_retry(relay: &RelayContext, chatwoot: &ChatwootClient, error: &ChatwootError) -> Outcome {
    match inbox_exists(relay, chatwoot).await {
        Ok(false) => inbox_gone(error),
        Ok(true) => Outcome::Retry { after: Duration::ZERO, error: error.detail() },
        Err(outcome) => outcome,
    }
}

/// The chat as a WhatsApp party, for a contact created again from what the bridge remembers.
fn party_of(chat: &chat::Model) -> Party {
    let key = chat.chat_key.clone();
    if chat.kind == ChatKind::Status {
        Party::default()
    } else if key.ends_with("@lid") {
        Party { lid: Some(key), ..Party::default() }
    } else {
        Party { jid: Some(key), ..Party::default() }
    }
}

/// Records the chat's conversation (`None`: it has none) and drops the chat from the relay's cache, which
/// must never be older than the row.
pub(super) async fn set_conversation(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chat_id: i64,
    conversation: Option<(i64, &str)>,
) -> Step<chat::Model> {
    let chat = store::chats::set_conversation(db, chat_id, conversation).await.map_err(store_failed)?;
    relay.live.chats.forget(|cached| cached.id == chat_id);
    Ok(chat)
}
