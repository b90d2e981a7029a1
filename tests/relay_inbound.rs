//! WhatsApp → Chatwoot (contract §3.1, §6): every event lands once, in the right conversation, at the
//! promised cost in Chatwoot calls — through the real link, against the fake Chatwoot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

const MARIA: &str = "5511999998888@s.whatsapp.net";
const WAIT: Duration = Duration::from_secs(5);

async fn connected_stack(changes: Value) -> (Stack, String) {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate_with("suporte", changes).await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    (stack, id)
}

fn chatwoot_calls(stack: &Stack) -> usize {
    stack
        .chatwoot
        .requests()
        .iter()
        .filter(|r| {
            r.path.starts_with("/api/v1/accounts/5/") && !r.path.ends_with("/inboxes") && !r.path.contains("/inboxes/")
        })
        .count()
}

async fn wait_messages(stack: &Stack, count: usize) {
    let chatwoot = &stack.chatwoot;
    eventually(&format!("{count} messages in Chatwoot"), WAIT, || chatwoot.message_count() >= count).await;
}

#[actix_web::test]
async fn a_new_customer_costs_three_calls_and_the_next_message_one() {
    let (stack, _id) = connected_stack(json!({})).await;
    let before = chatwoot_calls(&stack);
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0A001", MARIA, "Maria", "Olá *mundo*"));
    wait_messages(&stack, 1).await;
    assert_eq!(chatwoot_calls(&stack) - before, 3, "contact + conversation + message");

    let contact = stack.chatwoot.contacts().into_iter().next().unwrap();
    assert_eq!(contact.name, "Maria");
    assert_eq!(contact.phone_number.as_deref(), Some("+5511999998888"));
    assert_eq!(contact.identifier.as_deref(), Some(MARIA));
    let conversation = stack.chatwoot.conversations().into_iter().next().unwrap();
    assert_eq!(conversation.status, "open");
    let messages = stack.chatwoot.messages(conversation.display_id);
    assert_eq!(messages[0].content.as_deref(), Some("Olá **mundo**"), "WhatsApp bold → Markdown");
    assert_eq!(messages[0].message_type, "incoming");
    assert_eq!(messages[0].source_id.as_deref(), Some("WAID:3EB0A001"));

    let before = chatwoot_calls(&stack);
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0A002", MARIA, "Maria", "tudo bem?"));
    wait_messages(&stack, 2).await;
    assert_eq!(chatwoot_calls(&stack) - before, 1, "steady state: exactly one call");
    assert_eq!(stack.chatwoot.conversation_count(), 1);
    assert!(stack.chatwoot.violations().is_empty(), "{:?}", stack.chatwoot.violations());
}

#[actix_web::test]
async fn both_payload_layouts_are_relayed() {
    let (stack, _id) = connected_stack(json!({})).await;
    stack.ryzeapi.send_event("suporte", sim::catalog_text_message("suporte", "wamid.CAT1", MARIA, "Maria", "catálogo"));
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0LIVE", MARIA, "Maria", "ao vivo"));
    wait_messages(&stack, 2).await;
    let conversation = stack.chatwoot.conversations().into_iter().next().unwrap();
    let contents: Vec<String> =
        stack.chatwoot.messages(conversation.display_id).into_iter().filter_map(|m| m.content).collect();
    assert_eq!(contents, vec!["catálogo", "ao vivo"]);
    assert_eq!(stack.chatwoot.contact_count(), 1, "same person in both layouts");
}

#[actix_web::test]
async fn twenty_concurrent_first_messages_make_one_contact_one_conversation_in_order() {
    let (stack, _id) = connected_stack(json!({})).await;
    for n in 0..20 {
        stack.ryzeapi.send_event(
            "suporte",
            sim::text_message("suporte", &format!("3EB0C{n:03}"), MARIA, "Maria", &format!("msg {n}")),
        );
    }
    wait_messages(&stack, 20).await;
    assert_eq!(stack.chatwoot.contact_count(), 1);
    assert_eq!(stack.chatwoot.conversation_count(), 1);
    let conversation = stack.chatwoot.conversations().into_iter().next().unwrap();
    let contents: Vec<String> =
        stack.chatwoot.messages(conversation.display_id).into_iter().filter_map(|m| m.content).collect();
    let expected: Vec<String> = (0..20).map(|n| format!("msg {n}")).collect();
    assert_eq!(contents, expected);
}

#[actix_web::test]
async fn lid_and_phone_jid_of_one_person_share_a_conversation() {
    let (stack, _id) = connected_stack(json!({})).await;
    // First with both forms, then with the LID only, then with the old Brazilian number (no 9th digit).
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0L001", MARIA, "Maria", "com telefone"));
    wait_messages(&stack, 1).await;
    let lid = sim::fake_lid(MARIA);
    let lid_only = sim::message(
        "suporte",
        json!({"id": "3EB0L002", "direction": "incoming", "timestamp": "2026-11-21T10:00:00Z",
        "chat": {"lid": lid, "name": "Maria", "type": "private"}, "sender": {"lid": lid, "name": "Maria"},
        "message": {"type": "text", "content": "só lid", "source": ""}}),
    );
    stack.ryzeapi.send_event("suporte", lid_only);
    stack.ryzeapi.send_event(
        "suporte",
        sim::text_message("suporte", "3EB0L003", "551199998888@s.whatsapp.net", "Maria", "sem nono dígito"),
    );
    wait_messages(&stack, 3).await;
    assert_eq!(stack.chatwoot.contact_count(), 1);
    assert_eq!(stack.chatwoot.conversation_count(), 1);
}

#[actix_web::test]
async fn phone_typed_messages_are_outgoing_and_own_echoes_are_ignored() {
    let (stack, _id) = connected_stack(json!({})).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0P001", MARIA, "Maria", "oi"));
    stack
        .ryzeapi
        .send_event("suporte", sim::outgoing_text_message("suporte", "3EB0P002", MARIA, "digitado no celular", ""));
    stack
        .ryzeapi
        .send_event("suporte", sim::outgoing_text_message("suporte", "3EB0P003", MARIA, "eco do agente", "chatwoot"));
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0P004", MARIA, "Maria", "fim"));
    wait_messages(&stack, 3).await;
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let conversation = stack.chatwoot.conversations().into_iter().next().unwrap();
    let messages: Vec<(String, String)> = stack
        .chatwoot
        .messages(conversation.display_id)
        .into_iter()
        .map(|m| (m.message_type, m.content.unwrap_or_default()))
        .collect();
    assert_eq!(
        messages,
        vec![
            ("incoming".into(), "oi".into()),
            ("outgoing".into(), "digitado no celular".into()),
            ("incoming".into(), "fim".into())
        ]
    );
}

#[actix_web::test]
async fn quotes_reactions_edits_and_revokes_thread_to_their_message() {
    let (stack, _id) = connected_stack(json!({})).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0Q001", MARIA, "Maria", "original"));
    wait_messages(&stack, 1).await;
    let data = |id: &str, body: Value| {
        sim::message(
            "suporte",
            json!({"id": id, "direction": "incoming", "chat": {"jid": MARIA, "type": "private"},
            "sender": {"jid": MARIA, "name": "Maria"}, "message": body}),
        )
    };
    stack.ryzeapi.send_event(
        "suporte",
        data("3EB0Q002", json!({"type": "text", "content": "respondendo", "context": {"quotedMessageId": "3EB0Q001"}})),
    );
    stack.ryzeapi.send_event(
        "suporte",
        data("3EB0Q003", json!({"type": "reaction", "reaction": {"messageId": "3EB0Q001", "emoji": "❤️"}})),
    );
    stack.ryzeapi.send_event(
        "suporte",
        data("3EB0Q004", json!({"type": "message_edit", "edit": {"original_id": "3EB0Q001", "text": "editado"}})),
    );
    wait_messages(&stack, 4).await;
    let conversation = stack.chatwoot.conversations().into_iter().next().unwrap();
    let messages = stack.chatwoot.messages(conversation.display_id);
    let original_id = messages[0].id;
    for message in &messages[1..] {
        assert_eq!(message.content_attributes.get("in_reply_to"), Some(&json!(original_id)), "{:?}", message.content);
    }
    assert_eq!(messages[2].content.as_deref(), Some("Reacted ❤️"));
    assert_eq!(messages[3].content.as_deref(), Some("✏️ Edited: editado"));

    stack.ryzeapi.send_event(
        "suporte",
        data("3EB0Q005", json!({"type": "message_revoke", "edit": {"original_id": "3EB0Q001"}})),
    );
    let chatwoot = &stack.chatwoot;
    eventually("original deleted", WAIT, || {
        chatwoot.messages(conversation.display_id)[0].content_attributes.get("deleted") == Some(&json!(true))
    })
    .await;
}

#[actix_web::test]
async fn groups_name_the_sender_and_ignore_groups_is_honoured() {
    let group = |id: &str| {
        sim::message(
            "suporte",
            json!({"id": id, "direction": "incoming", "chat": {"jid": "120363000000000001@g.us", "name": "Equipe", "type": "group"},
            "sender": {"jid": MARIA, "name": "Maria"}, "message": {"type": "text", "content": "oi grupo"}}),
        )
    };
    let (stack, _id) = connected_stack(json!({})).await;
    stack.ryzeapi.send_event("suporte", group("3EB0G001"));
    wait_messages(&stack, 1).await;
    let contact = stack.chatwoot.contacts().into_iter().next().unwrap();
    assert_eq!(contact.name, "Equipe");
    assert_eq!(contact.phone_number, None);
    let conversation = stack.chatwoot.conversations().into_iter().next().unwrap();
    assert_eq!(
        stack.chatwoot.messages(conversation.display_id)[0].content.as_deref(),
        Some("**Maria** (+5511999998888):\noi grupo")
    );

    let (stack, _id) = connected_stack(json!({"ignoreGroups": true})).await;
    stack.ryzeapi.send_event("suporte", group("3EB0G002"));
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0G003", MARIA, "Maria", "privado"));
    wait_messages(&stack, 1).await;
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stack.chatwoot.message_count(), 1, "only the private message");
}

#[actix_web::test]
async fn start_as_pending_and_reopen_resolved() {
    let (stack, _id) = connected_stack(json!({"startAsPending": true})).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0S001", MARIA, "Maria", "oi"));
    wait_messages(&stack, 1).await;
    assert_eq!(stack.chatwoot.conversations()[0].status, "pending");

    // reopenResolved: a known resolved conversation receives the message (and Chatwoot reopens it).
    let (stack, id) = connected_stack(json!({"reopenResolved": true})).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0S002", MARIA, "Maria", "primeira"));
    wait_messages(&stack, 1).await;
    resolve_in_chatwoot(&stack, &id).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0S003", MARIA, "Maria", "de novo"));
    wait_messages(&stack, 2).await;
    assert_eq!(stack.chatwoot.conversation_count(), 1);
    assert_eq!(stack.chatwoot.conversations()[0].status, "open");

    // Without it: a new conversation. The agent resolves it in Chatwoot, whose webhook tells the bridge —
    // after the chat's second message, so the bridge holds the chat in memory by then and must drop it.
    let (stack, id) = connected_stack(json!({})).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0S004", MARIA, "Maria", "primeira"));
    wait_messages(&stack, 1).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0S006", MARIA, "Maria", "segunda"));
    wait_messages(&stack, 2).await;
    resolve_in_chatwoot(&stack, &id).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0S005", MARIA, "Maria", "nova"));
    wait_messages(&stack, 3).await;
    assert_eq!(stack.chatwoot.conversation_count(), 2);
}

/// An agent resolves the (only) conversation in Chatwoot; returns once its webhook has reached the bridge
/// and the chat is recorded as resolved.
async fn resolve_in_chatwoot(stack: &Stack, integration_id: &str) {
    use sea_orm::{ConnectionTrait as _, Statement};
    let display_id = stack.chatwoot.conversations()[0].display_id;
    assert!(stack.chatwoot.set_conversation_status(display_id, "resolved"));
    let conn = stack.db.connect().await;
    let sql = format!(
        "SELECT conversation_status FROM chats WHERE integration_id = '{integration_id}' AND conversation_status = 'resolved'"
    );
    let resolved = || async {
        let statement = Statement::from_string(conn.get_database_backend(), sql.clone());
        conn.query_one_raw(statement).await.unwrap().is_some()
    };
    common::eventually_async("the bridge learns the conversation was resolved", Duration::from_secs(10), resolved)
        .await;
}

#[actix_web::test]
async fn every_type_is_shown_never_dropped() {
    let (stack, _id) = connected_stack(json!({})).await;
    let bodies = [
        json!({"type": "image", "media": {"mimeType": "image/jpeg", "caption": "foto"}}),
        json!({"type": "location", "location": {"latitude": -23.5, "longitude": -46.6}}),
        json!({"type": "contact", "contact": {"display_name": "Ana", "phone_number": "+5511912345678"}}),
        json!({"type": "poll", "poll": {"title": "Sim?", "options": ["a", "b"]}}),
        json!({"type": "buttons_response", "content": "", "interactive": {"selectedButtonId": "btn-1"}}),
        json!({"type": "something_new"}),
    ];
    for (n, body) in bodies.iter().enumerate() {
        stack.ryzeapi.send_event(
            "suporte",
            sim::message(
                "suporte",
                json!({"id": format!("3EB0T{n:03}"), "direction": "incoming",
            "chat": {"jid": MARIA, "type": "private"}, "sender": {"jid": MARIA, "name": "Maria"}, "message": body}),
            ),
        );
    }
    wait_messages(&stack, bodies.len()).await;
    let conversation = stack.chatwoot.conversations().into_iter().next().unwrap();
    let contents: Vec<String> =
        stack.chatwoot.messages(conversation.display_id).into_iter().filter_map(|m| m.content).collect();
    assert_eq!(contents[0], "📷 Image\nfoto");
    assert!(contents[1].contains("https://maps.google.com/?q=-23.5,-46.6"));
    assert_eq!(contents[2], "👤 Ana\n📞 +5511912345678");
    assert_eq!(contents[3], "📊 Sim?\n- a\n- b");
    assert_eq!(contents[4], "🔘 btn-1");
    assert_eq!(contents[5], "[WhatsApp message of type `something_new`]");
}

#[actix_web::test]
async fn chatwoot_failing_for_a_while_loses_and_duplicates_nothing() {
    let (stack, id) = connected_stack(json!({})).await;
    let customers = ["5511900000001@s.whatsapp.net", "5511900000002@s.whatsapp.net", "5511900000003@s.whatsapp.net"];
    stack.chatwoot.set_fault(Fault::Status(503));
    for n in 0..30 {
        let customer = customers[n % 3];
        stack.ryzeapi.send_event(
            "suporte",
            sim::text_message("suporte", &format!("3EB0F{n:03}"), customer, "Cliente", &format!("m{n}")),
        );
    }
    let deadline = std::time::Instant::now() + WAIT;
    while stack.view(&id).await["queues"]["to_chatwoot_pending"] != 30 {
        assert!(std::time::Instant::now() < deadline, "all 30 kept while Chatwoot fails");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stack.chatwoot.message_count(), 0);
    stack.chatwoot.set_fault(Fault::Status(429));
    actix_web::rt::time::sleep(Duration::from_millis(400)).await;
    stack.chatwoot.set_fault(Fault::None);
    wait_messages(&stack, 30).await;
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stack.chatwoot.message_count(), 30, "exactly once");
    assert_eq!(stack.chatwoot.contact_count(), 3);
    assert_eq!(stack.chatwoot.conversation_count(), 3);
    assert_ordered_per_conversation(&stack.chatwoot, 'm');
    stack.wait_drained(&id).await;
}

#[actix_web::test]
async fn a_revoked_chatwoot_token_halts_with_a_clear_error_and_keeps_the_queue() {
    let (stack, id) = connected_stack(json!({})).await;
    stack.chatwoot.revoke_token(ADMIN);
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0R001", MARIA, "Maria", "guardada"));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let view = stack.view(&id).await;
        if view["status"] == "error" {
            assert!(view["last_error"].as_str().unwrap().starts_with("Chatwoot rejected the API token"), "{view}");
            assert_eq!(view["queues"]["to_chatwoot_pending"], 1);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{view}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    // The operator re-activates with a valid token: the kept message goes out.
    stack.chatwoot.add_user("cw-new-admin-token-0001", &[(ACCOUNT, Role::Administrator)]);
    stack.activate_with("suporte", json!({"chatwootApiToken": "cw-new-admin-token-0001"})).await;
    wait_messages(&stack, 1).await;
    assert_eq!(stack.view(&id).await["status"], "active");
}

#[actix_web::test]
async fn an_existing_contact_is_linked_not_duplicated() {
    let (stack, _id) = connected_stack(json!({})).await;
    // Another integration in the same account already created Maria.
    let other_inbox = stack.chatwoot.inboxes()[0].id;
    let client = awc::Client::default();
    let mut response = client
        .post(format!("{}/api/v1/accounts/5/contacts", stack.chatwoot.url()))
        .insert_header(("api_access_token", ADMIN))
        .send_json(&json!({"name": "Maria (CRM)", "phone_number": "+5511999998888", "inbox_id": other_inbox, "source_id": "crm-1"}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{:?}", response.body().await);
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0E001", MARIA, "Maria", "oi"));
    wait_messages(&stack, 1).await;
    assert_eq!(stack.chatwoot.contact_count(), 1, "linked to the existing contact");
    assert_eq!(stack.chatwoot.conversations()[0].contact_id, stack.chatwoot.contacts()[0].id);
}

#[actix_web::test]
async fn media_arrives_as_real_attachments() {
    use base64::Engine as _;
    let (stack, _id) = connected_stack(json!({})).await;
    let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4];
    let image = json!({"type": "image", "media": {"type": "image", "mimeType": "image/jpeg", "caption": "*nota* fiscal",
        "base64": base64::engine::general_purpose::STANDARD.encode(jpeg)}});
    let message = |id: &str, body: Value| {
        sim::message(
            "suporte",
            json!({"id": id, "direction": "incoming", "chat": {"jid": MARIA, "type": "private"},
            "sender": {"jid": MARIA, "name": "Maria"}, "message": body}),
        )
    };
    stack.ryzeapi.send_event("suporte", message("3EB0M001", image));
    // A voice note whose bytes RyzeAPI has not stored yet: fetched from its base64 endpoint on a retry.
    stack.ryzeapi.send_event(
        "suporte",
        message(
            "3EB0M002",
            json!({"type": "ptt", "media": {"mimetype": "audio/ogg; codecs=opus", "isVoiceNote": true}}),
        ),
    );
    // Stored by RyzeAPI only once the bridge has asked (and been told 404: not yet).
    let sim = &stack.ryzeapi;
    eventually("a 404 for the voice note's media", WAIT, || {
        sim.requests("suporte")
            .iter()
            .any(|c| c.path.starts_with("/api/chat/base64/suporte?messageId=3EB0M002") && c.status == 404)
    })
    .await;
    let ogg = b"OggS-voice";
    stack.ryzeapi.put_media("suporte", "3EB0M002", &base64::engine::general_purpose::STANDARD.encode(ogg), "audio/ogg");
    let pdf = b"%PDF-1.7 test";
    stack.ryzeapi.send_event(
        "suporte",
        message(
            "3EB0M003",
            json!({"type": "document", "media": {"mimeType": "application/pdf",
        "fileName": "boleto ../../x.pdf", "base64": base64::engine::general_purpose::STANDARD.encode(pdf)}}),
        ),
    );
    wait_messages(&stack, 3).await;
    let conversation = stack.chatwoot.conversations().into_iter().next().unwrap();
    let messages = stack.chatwoot.messages(conversation.display_id);
    assert_eq!(messages[0].content.as_deref(), Some("**nota** fiscal"), "the caption is the text");
    let photo = &messages[0].attachments[0];
    assert_eq!(
        (photo.file_type.as_str(), photo.content_type.as_str(), photo.byte_size),
        ("image", "image/jpeg", jpeg.len())
    );
    let voice = &messages[1].attachments[0];
    assert_eq!(
        (voice.file_type.as_str(), voice.content_type.as_str(), voice.byte_size),
        ("audio", "audio/ogg", ogg.len())
    );
    assert!(
        stack
            .ryzeapi
            .requests("suporte")
            .iter()
            .any(|c| c.path.starts_with("/api/chat/base64/suporte?messageId=3EB0M002") && c.status == 404)
    );
    let document = &messages[2].attachments[0];
    assert_eq!((document.file_type.as_str(), document.byte_size), ("file", pdf.len()));
    assert_eq!(document.file_name, "boleto ....x.pdf", "no path separators survive");
    assert!(stack.chatwoot.violations().is_empty(), "{:?}", stack.chatwoot.violations());
}

#[actix_web::test]
async fn chatwoot_failing_thirty_percent_of_calls_loses_and_duplicates_nothing() {
    let (stack, id) = connected_stack(json!({})).await;
    stack.chatwoot.set_fault(Fault::Flaky { percent: 30 });
    let customers = ["5511900000011@s.whatsapp.net", "5511900000012@s.whatsapp.net", "5511900000013@s.whatsapp.net"];
    for n in 0..60 {
        stack.ryzeapi.send_event(
            "suporte",
            sim::text_message("suporte", &format!("3EB0X{n:03}"), customers[n % 3], "Cliente", &format!("m{n}")),
        );
    }
    let chatwoot = &stack.chatwoot;
    eventually("60 messages despite 30 % failures", Duration::from_secs(30), || chatwoot.message_count() >= 60).await;
    stack.chatwoot.set_fault(Fault::None);
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert!(
        stack.chatwoot.requests().iter().filter(|r| r.status == 503 || r.status == 429).count() > 10,
        "failures were injected"
    );
    assert_eq!(stack.chatwoot.message_count(), 60, "exactly once");
    assert_eq!(stack.chatwoot.contact_count(), 3);
    assert_eq!(stack.chatwoot.conversation_count(), 3);
    assert_eq!(assert_ordered_per_conversation(&stack.chatwoot, 'm'), vec![20, 20, 20]);
    stack.wait_drained(&id).await;
}

#[actix_web::test]
async fn catalog_layout_media_and_a_large_frame() {
    use base64::Engine as _;
    let (stack, _id) = connected_stack(json!({})).await;
    // ~6 MiB of base64 in one frame (events may carry media inline).
    let big = vec![0xABu8; 4_500_000];
    let catalog = sim::message(
        "suporte",
        json!({"id": "wamid.BIG1", "message": {"id": "wamid.BIG1", "direction": "incoming",
        "timestamp": "2026-11-21T10:00:00Z", "chat": {"jid": "5511999998888", "type": "private", "name": "Maria"},
        "sender": {"jid": "5511999998888", "name": "Maria"}, "type": "document",
        "media": {"type": "document", "mimetype": "application/pdf", "fileName": "grande.pdf", "caption": "segue",
                  "base64": base64::engine::general_purpose::STANDARD.encode(&big)}}}),
    );
    stack.ryzeapi.send_event("suporte", catalog);
    wait_messages(&stack, 1).await;
    let conversation = stack.chatwoot.conversations().into_iter().next().unwrap();
    let message = stack.chatwoot.messages(conversation.display_id).into_iter().next().unwrap();
    assert_eq!(message.content.as_deref(), Some("segue"));
    assert_eq!(message.attachments[0].byte_size, big.len());
    assert_eq!(message.attachments[0].file_name, "grande.pdf");
}

#[actix_web::test]
async fn a_deleted_inbox_halts_the_integration_with_a_clear_error() {
    let (stack, id) = connected_stack(json!({})).await;
    let inbox = stack.chatwoot.inboxes()[0].id;
    stack.chatwoot.delete_inbox_directly(inbox);
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0GONE1", MARIA, "Maria", "alguém?"));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let view = stack.view(&id).await;
        if view["status"] == "error" {
            assert!(
                view["last_error"].as_str().unwrap().starts_with("The Chatwoot inbox of this integration was deleted"),
                "{view}"
            );
            assert_eq!(view["queues"]["to_chatwoot_pending"], 1, "kept for after re-activation");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{view}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    // Re-activation creates a new inbox; the kept message arrives there.
    stack.activate("suporte").await;
    wait_messages(&stack, 1).await;
    assert_ne!(stack.chatwoot.inboxes()[0].id, inbox);
}
