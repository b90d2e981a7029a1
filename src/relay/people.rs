//! One person, one chat, one Chatwoot contact.
//!
//! WhatsApp shows a person by phone JID, by LID, or both. A new chat whose event carries only one form is
//! looked up in RyzeAPI's contacts once (bounded in time: a slow or missing route only means "learn it
//! later"), so that both forms are its aliases from the start. When an event or a look-up shows that two
//! chats are one person, they are merged: in Chatwoot (`contact_merge`, the older contact stays) and here
//! (aliases, mappings, the conversation to use), recorded in `chat_merges` and noted in the surviving
//! conversation. Groups never merge with people, and two phone numbers never merge with each other.
//! Names and pictures follow WhatsApp until an agent renames the contact.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use entity::chat;
use sea_orm::DatabaseConnection;

use super::RelayContext;
use super::format::liquid_literal;
use super::identity;
use super::step::{Step, on_chatwoot_error, store_failed};
use crate::chatwoot::dto::{ContactChange, NewMessage};
use crate::chatwoot::{ChatwootClient, Failure};
use crate::relay::Outcome;
use crate::ryzeapi::client::RyzeApiClient;
use crate::ryzeapi::event::{MessageExchange, Party, canonical_jid};
use crate::store;
use crate::store::chats::ChatKind;

/// The chat of a message, found by any alias, or created. New aliases are remembered; a look-up in
/// RyzeAPI adds the other form of a person seen by one form only (`ryzeapi`: `None` skips it); chats that
/// turn out to be one person are merged.
pub(crate) async fn ensure_chat(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    ryzeapi: Option<&RyzeApiClient>,
    message: &MessageExchange,
    chat_key: &str,
    is_group: bool,
) -> Step<chat::Model> {
    let mut aliases = identity::aliases(&message.chat);
    if let Some(chat) = relay.live.chats.get(&aliases) {
        return Ok(chat);
    }
    let read_at = relay.live.chats.generation();
    let mut found =
        store::chats::chats_of_aliases(&relay.reader, &relay.integration_id, &aliases).await.map_err(store_failed)?;
    let mut chat_key = chat_key.to_owned();
    let mut reason = "one event named both forms".to_owned();
    let mut looked_up_name = None;
    if found.is_empty()
        && !is_group
        && !has_both_forms(&aliases)
        && let Some(ryzeapi) = ryzeapi
        && let Some(known) = look_up(relay, ryzeapi, &chat_key).await
    {
        let other = Party {
            jid: known.jid.as_deref().map(canonical_jid),
            lid: known.lid.as_deref().map(canonical_jid),
            ..Party::default()
        };
        for alias in identity::aliases(&other) {
            if !aliases.contains(&alias) {
                aliases.push(alias);
            }
        }
        if let Some(jid) = other.jid.filter(|j| identity::phone_number(j).is_some()) {
            chat_key = jid;
        }
        looked_up_name = known.name;
        reason = "RyzeAPI's contact look-up named both forms".to_owned();
        found = store::chats::chats_of_aliases(&relay.reader, &relay.integration_id, &aliases)
            .await
            .map_err(store_failed)?;
    }
    let chat = match found.len() {
        0 => {
            let name = message
                .chat
                .name
                .clone()
                .or_else(|| (!is_group).then(|| message.sender.name.clone()).flatten())
                .or(looked_up_name)
                .or_else(|| identity::phone_number(&chat_key))
                .unwrap_or_else(|| chat_key.split('@').next().unwrap_or(&chat_key).to_owned());
            let kind = if is_group { ChatKind::Group } else { ChatKind::Private };
            return store::chats::create(db, &relay.integration_id, &chat_key, kind, &name, &aliases)
                .await
                .map_err(store_failed);
        }
        1 => found.remove(0),
        _ => {
            // Not one person after all (two phone numbers, or a group): the chat of the event's own key.
            let keyed = found.iter().position(|(_, known)| known.contains(&chat_key)).unwrap_or(0);
            let chats: Vec<chat::Model> = found.iter().map(|(chat, _)| chat.clone()).collect();
            match merge_chats(db, relay, chatwoot, chats, &reason).await? {
                Some(survivor) => {
                    let known =
                        store::chats::aliases_of(db, &relay.integration_id, survivor.id).await.map_err(store_failed)?;
                    (survivor, known)
                }
                None => found.swap_remove(keyed),
            }
        }
    };
    let (chat, known) = chat;
    let missing: Vec<String> = aliases.iter().filter(|a| !known.contains(a)).cloned().collect();
    // Aliases another chat holds stay with it (see above); the rest join this chat.
    store::chats::add_aliases(db, &relay.integration_id, chat.id, &missing).await.map_err(store_failed)?;
    relay.live.chats.keep(&aliases, &chat, read_at);
    Ok(chat)
}

fn has_both_forms(aliases: &[String]) -> bool {
    aliases.iter().any(|a| a.ends_with("@lid")) && aliases.iter().any(|a| a.ends_with("@s.whatsapp.net"))
}

/// RyzeAPI's contact look-up of `jid`, within the configured bound; `None` when it does not know, fails
/// or is too slow (the message goes on; an event that names both forms later repairs the split).
async fn look_up(
    relay: &RelayContext,
    ryzeapi: &RyzeApiClient,
    jid: &str,
) -> Option<crate::ryzeapi::client::KnownContact> {
    match ryzeapi.lookup_contact(jid, relay.contact_lookup_within).await {
        Ok(known) => known,
        Err(error) => {
            tracing::info!(integration_id = %relay.integration_id, %jid, %error, "contact look-up failed; going on without it");
            None
        }
    }
}

/// The one phone number of each chat's aliases (a Brazilian number and its 9th-digit variant are one).
fn phone_of(aliases: &[String]) -> BTreeSet<String> {
    aliases
        .iter()
        .filter(|a| identity::phone_number(a).is_some())
        .map(|a| identity::brazilian_variant(a).map_or_else(|| a.clone(), |v| v.min(a.clone())))
        .collect()
}

/// Merges `chats` (oldest first) into the oldest. `None` when they must not be merged: a group among
/// them, or two different phone numbers.
async fn merge_chats(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    chats: Vec<chat::Model>,
    reason: &str,
) -> Step<Option<chat::Model>> {
    if chats.iter().any(|c| c.kind != ChatKind::Private) {
        return Ok(None);
    }
    let mut phones = BTreeSet::new();
    for chat in &chats {
        let aliases = store::chats::aliases_of(db, &relay.integration_id, chat.id).await.map_err(store_failed)?;
        phones.extend(phone_of(&aliases));
    }
    if phones.len() > 1 {
        tracing::warn!(integration_id = %relay.integration_id, chats = ?chats.iter().map(|c| c.id).collect::<Vec<_>>(), "aliases point at chats of different phone numbers; not merging");
        return Ok(None);
    }
    let mut chats = chats.into_iter();
    let Some(mut survivor) = chats.next() else { return Ok(None) };
    for other in chats {
        let (contact, merged_contact) = match (survivor.contact_id, other.contact_id) {
            (Some(a), Some(b)) if a != b => {
                // The older contact stays (Chatwoot moves the mergee's conversations and contact_inboxes).
                let (base, mergee) = (a.min(b), a.max(b));
                match chatwoot.merge_contacts(base, mergee).await {
                    Ok(()) => {}
                    // Merged already (a repeat after a crash), or deleted by an agent.
                    Err(e) if e.failure() == Failure::NotFound => {}
                    Err(e) => return Err(on_chatwoot_error(&e)),
                }
                let source = if base == a { &survivor.contact_source_id } else { &other.contact_source_id };
                (source.clone().map(|s| (base, s)), Some(mergee))
            }
            (Some(a), _) => (survivor.contact_source_id.clone().map(|s| (a, s)), None),
            (None, Some(b)) => (other.contact_source_id.clone().map(|s| (b, s)), None),
            (None, None) => (None, None),
        };
        let conversation = choose_conversation(&survivor, &other);
        let merge = store::chats::Merge {
            survivor: survivor.id,
            merged: other.id,
            contact,
            merged_contact,
            conversation: conversation.clone(),
            reason: reason.to_owned(),
        };
        let (merged, audit_id) = store::chats::merge(db, &relay.integration_id, &merge).await.map_err(store_failed)?;
        let (survivor_id, other_id) = (survivor.id, other.id);
        relay.live.chats.forget(|cached| cached.id == survivor_id || cached.id == other_id);
        relay.live.chats_merged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(integration_id = %relay.integration_id, survivor_chat = survivor_id, merged_chat = other_id,
            contact = ?merge.contact.as_ref().map(|(id, _)| *id), merged_contact = ?merged_contact,
            conversation = ?conversation.as_ref().map(|(id, _)| *id), %reason, "merged two chats of one person");
        if let Some((conversation_id, _)) = &conversation {
            note_merge(relay, chatwoot, *conversation_id, audit_id, &survivor, &other).await;
        }
        survivor = merged;
    }
    Ok(Some(survivor))
}

/// The conversation of either chat that messages go to from now on: the open one, else the most recent.
fn choose_conversation(a: &chat::Model, b: &chat::Model) -> Option<(i64, String)> {
    let of = |chat: &chat::Model| {
        chat.conversation_id.map(|id| (id, chat.conversation_status.clone().unwrap_or_else(|| "open".into())))
    };
    let mut candidates: Vec<(i64, String)> = [of(a), of(b)].into_iter().flatten().collect();
    // Open before resolved, then the newer (display ids grow).
    candidates.sort_by_key(|(id, status)| (status != "resolved", *id));
    candidates.pop()
}

/// A one-line private note in the surviving conversation, so that agents see why the history grew.
async fn note_merge(
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    conversation_id: i64,
    audit_id: i64,
    survivor: &chat::Model,
    other: &chat::Model,
) {
    let text = format!(
        "🔗 WhatsApp showed {} and {} as one person: their conversations are one from now on.",
        survivor.chat_key, other.chat_key
    );
    let content = liquid_literal(&text);
    let source_id = ryze_wire::keys::BridgeKey::Merge(audit_id).to_string();
    let note = NewMessage {
        content: &content,
        message_type: "outgoing",
        private: true,
        source_id: &source_id,
        content_attributes: serde_json::Map::new(),
    };
    if let Err(error) = chatwoot.create_message(conversation_id, &note).await {
        tracing::warn!(integration_id = %relay.integration_id, conversation_id, %error, "could not note the merge in Chatwoot");
    }
}

/// Keeps the contact's name and picture in step with WhatsApp: a contact created with a bare number
/// takes the person's name when an event brings one, and the picture follows `pictureUrl`. A name an
/// agent changed in Chatwoot is never overwritten. Best-effort: a failure is logged, the message goes on.
pub(crate) async fn refresh_profile(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    chat: chat::Model,
    name: Naming<'_>,
    picture: Option<&str>,
) -> chat::Model {
    let Some(contact_id) = chat.contact_id else { return chat };
    let new_name = match name {
        Naming::IfUnnamed(name) => name.filter(|_| is_placeholder_name(&chat)),
        Naming::Renamed(name) => Some(name),
    };
    let new_name = new_name.filter(|n| !n.trim().is_empty() && *n != chat.name);
    let new_picture = picture.filter(|p| !p.is_empty() && Some(*p) != chat.avatar_url.as_deref());
    if new_name.is_none() && new_picture.is_none() {
        return chat;
    }
    let new_name = match new_name {
        // Only a name the bridge gave: an agent's own is kept.
        Some(name) => match chatwoot.get_contact(contact_id).await {
            Ok(contact) if contact.name.as_deref() == Some(chat.name.as_str()) => Some(name),
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(integration_id = %relay.integration_id, %error, "could not read the contact's name");
                None
            }
        },
        None => None,
    };
    if new_name.is_none() && new_picture.is_none() {
        return chat;
    }
    let change = ContactChange { name: new_name, avatar_url: new_picture };
    if let Err(error) = chatwoot.update_contact(contact_id, &change).await {
        tracing::debug!(integration_id = %relay.integration_id, %error, "could not update the contact's name or picture");
        return chat;
    }
    let name = new_name.unwrap_or(&chat.name).to_owned();
    let picture = new_picture.or(chat.avatar_url.as_deref()).map(str::to_owned);
    match store::chats::set_profile(db, chat.id, &name, picture.as_deref()).await {
        Ok(updated) => {
            relay.live.chats.forget(|cached| cached.id == updated.id);
            updated
        }
        Err(_) => chat,
    }
}

/// Where a name comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Naming<'a> {
    /// A message's push name or group subject: taken only by a contact the bridge named by its number.
    IfUnnamed(Option<&'a str>),
    /// WhatsApp says the name changed (a group's new subject).
    Renamed(&'a str),
}

/// A name the bridge made up for want of one: the phone number, or the JID's user part.
fn is_placeholder_name(chat: &chat::Model) -> bool {
    let user = chat.chat_key.split('@').next().unwrap_or_default();
    chat.name.is_empty()
        || chat.name == user
        || identity::phone_number(&chat.chat_key).is_some_and(|phone| chat.name == phone)
}

/// `group.flow`: a new subject renames the group's contact (unless an agent renamed it).
pub(crate) async fn group_flow(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    data: &serde_json::Value,
) -> Outcome {
    let text = |key: &str| data.get(key).and_then(serde_json::Value::as_str).filter(|s| !s.is_empty());
    let kind = text("type").or_else(|| text("action")).unwrap_or_default();
    if !matches!(kind, "name" | "subject") {
        return Outcome::Done;
    }
    let (Some(group), Some(subject)) = (
        text("groupJid").or_else(|| text("jid")),
        text("groupName").or_else(|| text("subject")).or_else(|| text("name")),
    ) else {
        return Outcome::Done;
    };
    let aliases = vec![canonical_jid(group)];
    let chat = match store::chats::find_by_aliases(&relay.reader, &relay.integration_id, &aliases).await {
        Ok(Some((chat, _))) => chat,
        Ok(None) => return Outcome::Done,
        Err(e) => return store_failed(e),
    };
    refresh_profile(db, relay, chatwoot, chat, Naming::Renamed(subject), None).await;
    Outcome::Done
}

/// One lock per id (a chat, a Chatwoot message), for what two queues may do to one thing at once: the
/// first steps of a new chat (two events of one person under different forms run in different queues, and
/// must not make two contacts), or a message's tick (a receipt and a `tick-sent` job must not undo each
/// other).
#[derive(Debug, Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    pub(crate) async fn lock(&self, id: i64) -> KeyedGuard<'_> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            locks.entry(id).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        KeyedGuard { locks: self, id, lock, _guard: guard }
    }
}

/// Held while the locked work runs; forgets the lock when nobody else waits.
pub(crate) struct KeyedGuard<'a> {
    locks: &'a KeyedLocks,
    id: i64,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.locks.locks.lock().unwrap_or_else(PoisonError::into_inner);
        // The map, this guard's `lock` and the owned guard: nobody else holds or waits for it.
        if Arc::strong_count(&self.lock) <= 3 {
            locks.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(id: i64, conversation: Option<(i64, &str)>) -> chat::Model {
        chat::Model {
            id,
            integration_id: "int".into(),
            chat_key: format!("{id}@lid"),
            kind: ChatKind::Private,
            name: String::new(),
            contact_id: None,
            contact_source_id: None,
            conversation_id: conversation.map(|(c, _)| c),
            conversation_status: conversation.map(|(_, s)| s.to_owned()),
            conversation_attempted_at: None,
            avatar_url: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn the_open_conversation_wins_else_the_newest() {
        let open = chat(1, Some((10, "open")));
        let resolved = chat(2, Some((20, "resolved")));
        assert_eq!(choose_conversation(&open, &resolved), Some((10, "open".into())));
        assert_eq!(choose_conversation(&resolved, &open), Some((10, "open".into())));
        let newer = chat(3, Some((30, "pending")));
        assert_eq!(choose_conversation(&open, &newer), Some((30, "pending".into())));
        assert_eq!(choose_conversation(&chat(4, None), &resolved), Some((20, "resolved".into())));
        assert_eq!(choose_conversation(&chat(4, None), &chat(5, None)), None);
    }

    #[test]
    fn brazilian_variants_are_one_phone_and_two_numbers_are_two() {
        let one =
            phone_of(&["5511999998888@s.whatsapp.net".into(), "551199998888@s.whatsapp.net".into(), "1@lid".into()]);
        assert_eq!(one.len(), 1);
        let two = phone_of(&["5511999998888@s.whatsapp.net".into(), "5511988887777@s.whatsapp.net".into()]);
        assert_eq!(two.len(), 2);
    }
}
