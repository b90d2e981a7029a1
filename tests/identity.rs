//! One person, one contact (issue 15): a person seen as `@lid` and as a phone JID is one chat, one Chatwoot
//! contact and one conversation — resolved before creating through RyzeAPI's contact look-up, or repaired
//! by a merge when an event shows the split; names and pictures follow WhatsApp; groups never merge.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::time::{Duration, Instant};

use common::*;
use ryze_fakes::ryzeapi::ContactLookup;
use serde_json::{Value, json};

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

const MARIA: &str = "5511999998888@s.whatsapp.net";
const MARIA_LID: &str = "123456789012345@lid";
const JOAO: &str = "5511988887777@s.whatsapp.net";
const GROUP: &str = "120363000000000001@g.us";
const WAIT: Duration = Duration::from_secs(8);

async fn connected(env: &[(&str, &str)]) -> (Stack, String) {
    let stack = Stack::start_with(BRIDGE, env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(3)).await;
    (stack, id)
}

/// A private message that names its person by the given forms only.
fn from(id: &str, jid: Option<&str>, lid: Option<&str>, name: Option<&str>, text: &str) -> Value {
    let mut party = json!({"type": "private"});
    if let Some(jid) = jid {
        party["jid"] = json!(jid);
    }
    if let Some(lid) = lid {
        party["lid"] = json!(lid);
    }
    let mut sender = party.clone();
    if let Some(name) = name {
        sender["name"] = json!(name);
        party["name"] = json!(name);
    }
    sim::message(
        "suporte",
        json!({"id": id, "direction": "incoming", "chat": party, "sender": sender,
            "message": {"type": "text", "content": text}}),
    )
}

fn lid_only(id: &str, text: &str) -> Value {
    from(id, None, Some(MARIA_LID), Some("Maria"), text)
}

fn phone_only(id: &str, text: &str) -> Value {
    from(id, Some(MARIA), None, Some("Maria"), text)
}

async fn wait_messages(stack: &Stack, count: usize) {
    let chatwoot = &stack.chatwoot;
    eventually(&format!("{count} Chatwoot messages"), WAIT, || chatwoot.message_count() >= count).await;
}

/// Messages per conversation (non-private), by content.
fn contents(stack: &Stack) -> Vec<Vec<String>> {
    stack
        .chatwoot
        .conversations()
        .iter()
        .map(|c| {
            stack.chatwoot.messages(c.display_id).into_iter().filter(|m| !m.private).filter_map(|m| m.content).collect()
        })
        .collect()
}

async fn metric(stack: &Stack, needle: &str) -> f64 {
    let (_, body) = request(&format!("{}/metrics", stack.bridge.url), "GET", None, None).await;
    let text = body.as_str().map(str::to_owned).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("bridge_upstream_calls_total{") && l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[actix_web::test]
async fn lid_first_then_phone_is_one_contact_from_the_start_with_the_lookup() {
    let (stack, id) = connected(&[]).await;
    stack.ryzeapi.add_known_contact(MARIA, MARIA_LID, "Maria");
    stack.ryzeapi.send_event("suporte", lid_only("3EB0LID1", "pelo lid"));
    wait_messages(&stack, 1).await;
    // One form after the other (events of the two forms come on two queues, each in its own order).
    stack.ryzeapi.send_event("suporte", phone_only("3EB0PHN1", "pelo telefone"));
    wait_messages(&stack, 2).await;
    stack.ryzeapi.send_event("suporte", lid_only("3EB0LID2", "lid de novo"));
    wait_messages(&stack, 3).await;
    stack.wait_drained(&id).await;
    let contacts = stack.chatwoot.contacts();
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(contacts[0].phone_number.as_deref(), Some("+5511999998888"), "the phone is known from the start");
    assert_eq!(contents(&stack), vec![vec!["pelo lid", "pelo telefone", "lid de novo"]]);
    assert_eq!(stack.chatwoot.count("POST", &format!("/api/v1/accounts/{ACCOUNT}/actions/contact_merge")), 0);
    let lookups =
        stack.ryzeapi.requests("suporte").into_iter().filter(|c| c.path.starts_with("/api/chat/contacts/")).count();
    assert_eq!(lookups, 1, "asked once, for the new chat, never per message");
    assert_eq!(metric(&stack, "operation=\"lookup_contact\"").await, 1.0);
}

#[actix_web::test]
async fn phone_first_then_lid_is_one_contact_from_the_start_with_the_lookup() {
    let (stack, id) = connected(&[]).await;
    stack.ryzeapi.add_known_contact(MARIA, MARIA_LID, "Maria");
    stack.ryzeapi.send_event("suporte", phone_only("3EB0PHN2", "telefone"));
    wait_messages(&stack, 1).await;
    stack.ryzeapi.send_event("suporte", lid_only("3EB0LID3", "lid"));
    wait_messages(&stack, 2).await;
    stack.wait_drained(&id).await;
    assert_eq!(stack.chatwoot.contact_count(), 1);
    assert_eq!(contents(&stack), vec![vec!["telefone", "lid"]]);
}

#[actix_web::test]
async fn without_the_lookup_the_split_is_merged_when_an_event_names_both_forms() {
    let (stack, id) = connected(&[]).await;
    stack.ryzeapi.set_contact_lookup(ContactLookup::Missing);
    stack.ryzeapi.send_event("suporte", lid_only("3EB0M001", "a1"));
    wait_messages(&stack, 1).await;
    stack.ryzeapi.send_event("suporte", phone_only("3EB0M002", "a2"));
    wait_messages(&stack, 2).await;
    stack.wait_drained(&id).await;
    assert_eq!(stack.chatwoot.contact_count(), 2, "split: nothing showed them to be one yet");
    let older = stack.chatwoot.contacts().iter().map(|c| c.id).min().unwrap();

    // An event with both forms, then more of either: all in one conversation, in order.
    stack.ryzeapi.send_event("suporte", from("3EB0M003", Some(MARIA), Some(MARIA_LID), Some("Maria"), "a3"));
    wait_messages(&stack, 3).await;
    stack.wait_drained(&id).await;
    for n in 4..8 {
        let event = if n % 2 == 0 {
            lid_only(&format!("3EB0M00{n}"), &format!("a{n}"))
        } else {
            phone_only(&format!("3EB0M00{n}"), &format!("a{n}"))
        };
        stack.ryzeapi.send_event("suporte", event);
    }
    wait_messages(&stack, 7).await;
    stack.wait_drained(&id).await;
    assert_eq!(stack.chatwoot.count("POST", &format!("/api/v1/accounts/{ACCOUNT}/actions/contact_merge")), 1);
    let contacts = stack.chatwoot.contacts();
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(contacts[0].id, older, "the older contact stays");
    // The two old conversations now belong to one contact; everything after the merge went to one of them.
    let after: Vec<String> = (3..8).map(|n| format!("a{n}")).collect();
    let holding: Vec<Vec<String>> =
        contents(&stack).into_iter().filter(|c| c.iter().any(|m| after.contains(m))).collect();
    assert_eq!(holding.len(), 1, "{holding:?}");
    let order: Vec<&String> = holding[0].iter().filter(|m| after.contains(m)).collect();
    assert_eq!(order.len(), 5);
    // Phone-form and LID-form messages each keep their order (they came on two queues).
    for parity in [0, 1] {
        let mine: Vec<&&String> = order.iter().filter(|m| m[1..].parse::<usize>().unwrap() % 2 == parity).collect();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(mine, sorted);
    }

    let (status, audit) = stack.bridge.call("GET", &format!("/v1/integrations/{id}/merges"), None).await;
    assert_eq!(status, 200, "{audit}");
    let merges = audit["merges"].as_array().unwrap();
    assert_eq!(merges.len(), 1, "{audit}");
    assert_eq!(merges[0]["contact_id"], older);
    assert!(merges[0]["aliases"].as_array().unwrap().contains(&json!(MARIA_LID)), "{audit}");
    assert_eq!(merges[0]["reason"], "one event named both forms");
    assert_eq!(stack.view(&id).await["totals"]["chats_merged"], 1);
    // A one-line note in the surviving conversation.
    let conversation = merges[0]["conversation_id"].as_i64().unwrap();
    let notes: Vec<_> = stack.chatwoot.messages(conversation).into_iter().filter(|m| m.private).collect();
    assert_eq!(notes.len(), 1);
    assert!(notes[0].content.as_deref().unwrap().contains("one person"), "{:?}", notes[0].content);
    assert!(
        stack.ryzeapi.requests("suporte").iter().all(|c| !c.path.starts_with("/api/message/")),
        "the note never reaches WhatsApp"
    );
}

#[actix_web::test]
async fn a_slow_or_missing_lookup_never_holds_a_message_past_its_bound() {
    let (stack, _id) = connected(&[("BRIDGE_CONTACT_LOOKUP_TIMEOUT_MS", "400")]).await;
    stack.ryzeapi.set_contact_lookup(ContactLookup::Slow(Duration::from_secs(10)));
    let started = Instant::now();
    stack.ryzeapi.send_event("suporte", lid_only("3EB0SLW1", "devagar"));
    wait_messages(&stack, 1).await;
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    stack.ryzeapi.set_contact_lookup(ContactLookup::Missing);
    stack.ryzeapi.send_event("suporte", from("3EB0SLW2", Some(JOAO), None, Some("João"), "sem rota"));
    wait_messages(&stack, 2).await;
}

#[actix_web::test]
async fn twenty_concurrent_first_messages_across_both_forms_make_one_contact() {
    let (stack, id) = connected(&[]).await;
    stack.ryzeapi.add_known_contact(MARIA, MARIA_LID, "Maria");
    for n in 0..20 {
        let id = format!("3EB0CC{n:02}");
        let event = if n % 2 == 0 { lid_only(&id, &format!("c{n}")) } else { phone_only(&id, &format!("c{n}")) };
        stack.ryzeapi.send_event("suporte", event);
    }
    wait_messages(&stack, 20).await;
    stack.wait_drained(&id).await;
    assert_eq!(stack.chatwoot.contact_count(), 1, "{:?}", stack.chatwoot.contacts());
    assert_eq!(stack.chatwoot.conversations().len(), 1);
    assert_eq!(stack.chatwoot.message_count(), 20);
}

#[actix_web::test]
async fn names_and_pictures_follow_whatsapp_until_an_agent_renames() {
    let (stack, id) = connected(&[]).await;
    // First seen with no push name: the contact is named by its number.
    let nameless = sim::message(
        "suporte",
        json!({"id": "3EB0NM01", "direction": "incoming", "chat": {"jid": JOAO, "type": "private"},
            "sender": {"jid": JOAO, "pictureUrl": "https://pps.whatsapp.net/v/joao-1.jpg"},
            "message": {"type": "text", "content": "oi"}}),
    );
    stack.ryzeapi.send_event("suporte", nameless);
    wait_messages(&stack, 1).await;
    let contact = stack.chatwoot.contacts().remove(0);
    assert_eq!(contact.name, "+5511988887777");
    assert_eq!(contact.avatar_url.as_deref(), Some("https://pps.whatsapp.net/v/joao-1.jpg"));
    let named = |id: &str, picture: &str| {
        sim::message(
            "suporte",
            json!({"id": id, "direction": "incoming", "chat": {"jid": JOAO, "type": "private", "name": "João"},
                "sender": {"jid": JOAO, "name": "João", "pictureUrl": picture}, "message": {"type": "text", "content": id}}),
        )
    };
    stack.ryzeapi.send_event("suporte", named("3EB0NM02", "https://pps.whatsapp.net/v/joao-1.jpg"));
    let chatwoot = &stack.chatwoot;
    eventually("the push name", WAIT, || chatwoot.contact(contact.id).is_some_and(|c| c.name == "João")).await;
    stack.ryzeapi.send_event("suporte", named("3EB0NM03", "https://pps.whatsapp.net/v/joao-2.jpg"));
    eventually("the new picture", WAIT, || {
        chatwoot.contact(contact.id).and_then(|c| c.avatar_url).as_deref()
            == Some("https://pps.whatsapp.net/v/joao-2.jpg")
    })
    .await;
    stack.wait_drained(&id).await;
    let patches =
        |stack: &Stack| stack.chatwoot.count("PATCH", &format!("/api/v1/accounts/{ACCOUNT}/contacts/{}", contact.id));
    let before = patches(&stack);
    stack.ryzeapi.send_event("suporte", named("3EB0NM04", "https://pps.whatsapp.net/v/joao-2.jpg"));
    wait_messages(&stack, 4).await;
    stack.wait_drained(&id).await;
    assert_eq!(patches(&stack), before, "nothing changed: no call");

    // An agent's own name is never overwritten.
    let url = format!("{}/api/v1/accounts/{ACCOUNT}/contacts/{}", stack.chatwoot.url(), contact.id);
    let response = awc::Client::default()
        .patch(url)
        .insert_header(("api_access_token", ADMIN))
        .send_json(&json!({"name": "João (cliente VIP)"}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let unnamed = sim::message(
        "suporte",
        json!({"id": "3EB0NM05", "direction": "incoming", "chat": {"jid": "5511977776666@s.whatsapp.net", "type": "private"},
            "sender": {"jid": "5511977776666@s.whatsapp.net"}, "message": {"type": "text", "content": "x"}}),
    );
    stack.ryzeapi.send_event("suporte", unnamed);
    stack.ryzeapi.send_event("suporte", named("3EB0NM06", "https://pps.whatsapp.net/v/joao-2.jpg"));
    wait_messages(&stack, 6).await;
    stack.wait_drained(&id).await;
    assert_eq!(stack.chatwoot.contact(contact.id).unwrap().name, "João (cliente VIP)");
}

#[actix_web::test]
async fn groups_take_their_subject_and_never_merge_with_people() {
    let (stack, id) = connected(&[]).await;
    stack.ryzeapi.add_known_contact(MARIA, MARIA_LID, "Maria");
    let group = |id: &str, sender: Value| {
        sim::message(
            "suporte",
            json!({"id": id, "direction": "incoming", "chat": {"jid": GROUP, "name": "Equipe", "type": "group"},
                "sender": sender, "message": {"type": "text", "content": "oi grupo"}}),
        )
    };
    stack.ryzeapi.send_event("suporte", group("3EB0GR01", json!({"jid": MARIA, "lid": MARIA_LID, "name": "Maria"})));
    stack.ryzeapi.send_event("suporte", phone_only("3EB0GR02", "no privado"));
    wait_messages(&stack, 2).await;
    stack.ryzeapi.send_event(
        "suporte",
        json!({"event": "group.flow", "data": {"groupJid": GROUP, "type": "name", "groupName": "Equipe de Vendas", "timestamp": "2026-12-01T10:00:00Z"},
            "instanceData": {"instance": "suporte", "baseUrl": "", "token": ""}}),
    );
    let chatwoot = &stack.chatwoot;
    eventually("the new subject", WAIT, || chatwoot.contacts().iter().any(|c| c.name == "Equipe de Vendas")).await;
    // The member's current name shows on each group line.
    stack.ryzeapi.send_event("suporte", group("3EB0GR03", json!({"jid": MARIA, "name": "Maria Souza"})));
    wait_messages(&stack, 3).await;
    stack.wait_drained(&id).await;
    assert_eq!(stack.chatwoot.contact_count(), 2, "the group and Maria: {:?}", stack.chatwoot.contacts());
    let group_conversation = stack
        .chatwoot
        .conversations()
        .into_iter()
        .find(|c| stack.chatwoot.contact(c.contact_id).is_some_and(|k| k.name == "Equipe de Vendas"))
        .unwrap();
    let last = stack.chatwoot.messages(group_conversation.display_id).pop().unwrap();
    assert_eq!(last.content.as_deref(), Some("**Maria Souza** (+5511999998888):\noi grupo"));
    assert_eq!(stack.chatwoot.count("POST", &format!("/api/v1/accounts/{ACCOUNT}/actions/contact_merge")), 0);
}

#[actix_web::test]
async fn two_phone_numbers_are_never_merged_even_when_a_lid_points_at_both() {
    let (stack, id) = connected(&[]).await;
    stack.ryzeapi.set_contact_lookup(ContactLookup::NotFound);
    stack.ryzeapi.send_event("suporte", from("3EB0TP01", Some(MARIA), Some(MARIA_LID), Some("Maria"), "maria"));
    stack.ryzeapi.send_event("suporte", from("3EB0TP02", Some(JOAO), None, Some("João"), "joão"));
    wait_messages(&stack, 2).await;
    // A confused event that claims Maria's LID for João's number.
    stack.ryzeapi.send_event("suporte", from("3EB0TP03", Some(JOAO), Some(MARIA_LID), Some("João"), "joão de novo"));
    wait_messages(&stack, 3).await;
    stack.wait_drained(&id).await;
    assert_eq!(stack.chatwoot.contact_count(), 2);
    assert_eq!(stack.chatwoot.count("POST", &format!("/api/v1/accounts/{ACCOUNT}/actions/contact_merge")), 0);
    let (_, audit) = stack.bridge.call("GET", &format!("/v1/integrations/{id}/merges"), None).await;
    assert_eq!(audit["merges"], json!([]));
}
