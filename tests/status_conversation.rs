//! The status conversation (contract §6): connection notices in plain words, the QR code as a scannable
//! PNG, notices even when resolved, and `/status` / `/help` answered without anything going to WhatsApp.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::time::Duration;

use common::*;

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

const WAIT: Duration = Duration::from_secs(5);

#[actix_web::test]
async fn notices_qr_codes_and_commands() {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;

    stack.ryzeapi.send_event("suporte", sim::instance_state("suporte", "qr_ready", Some("2@AbCdEf,GhIjKl,MnOp==")));
    stack.ryzeapi.send_event("suporte", sim::instance_state("suporte", "logged_out", None));
    let chatwoot = &stack.chatwoot;
    eventually("two notices", WAIT, || chatwoot.message_count() == 2).await;
    let contact = stack.chatwoot.contacts().into_iter().next().unwrap();
    assert_eq!(contact.name, "WhatsApp status");
    assert_eq!(contact.identifier.as_deref(), Some("ryze-status:suporte"));
    assert_eq!(contact.phone_number, None);
    let conversation = stack.chatwoot.conversations().into_iter().next().unwrap();
    let messages = stack.chatwoot.messages(conversation.display_id);
    assert!(messages[0].content.as_deref().unwrap().starts_with("📷 Scan this QR code"));
    let qr = &messages[0].attachments[0];
    assert_eq!(
        (qr.file_type.as_str(), qr.content_type.as_str(), qr.file_name.as_str()),
        ("image", "image/png", "whatsapp-qr.png")
    );
    // The PNG itself is decoded and checked module by module in `relay::qr_png`; here: not an empty file
    // (this code compresses to ~650 bytes).
    assert!(qr.byte_size > 300, "a real image");
    assert!(messages[1].content.as_deref().unwrap().contains("logged out"));

    // Resolved by an agent: notices still arrive, in the same conversation.
    stack.chatwoot.set_conversation_status(conversation.display_id, "resolved");
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    stack.ryzeapi.send_event("suporte", sim::instance_state("suporte", "connected", None));
    eventually("notice while resolved", WAIT, || chatwoot.message_count() == 3).await;
    assert_eq!(stack.chatwoot.conversation_count(), 1);
    assert_eq!(
        stack.chatwoot.messages(conversation.display_id)[2].content.as_deref(),
        Some("✅ WhatsApp is connected. Messages flow normally.")
    );

    // Commands.
    stack.chatwoot.agent_reply(conversation.display_id, "/status", false).unwrap();
    eventually("status answer", WAIT, || chatwoot.message_count() == 5).await;
    let answer = stack.chatwoot.messages(conversation.display_id)[4].content.clone().unwrap();
    assert!(answer.starts_with("**suporte** — link to RyzeAPI: connected"), "{answer}");
    assert!(answer.contains("events received"), "{answer}");
    stack.chatwoot.agent_reply(conversation.display_id, "/help", false).unwrap();
    eventually("help answer", WAIT, || chatwoot.message_count() == 7).await;
    assert!(stack.chatwoot.messages(conversation.display_id)[6].content.as_deref().unwrap().contains("`/status`"));
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stack.ryzeapi.requests("suporte").iter().any(|c| c.path.starts_with("/api/message/")),
        "nothing typed in the status conversation goes to WhatsApp"
    );
}

#[actix_web::test]
async fn an_incoming_call_is_a_notice_in_the_callers_conversation() {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    let call = serde_json::json!({"event": "call.update", "data": {"type": "offer", "from": "5511999998888@s.whatsapp.net", "isVideo": false}});
    stack.ryzeapi.send_event("suporte", call);
    let ended = serde_json::json!({"event": "call.update", "data": {"type": "terminated", "from": "5511999998888@s.whatsapp.net"}});
    stack.ryzeapi.send_event("suporte", ended);
    let chatwoot = &stack.chatwoot;
    eventually("call notice", WAIT, || chatwoot.message_count() == 1).await;
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stack.chatwoot.message_count(), 1, "only the offer is shown");
    let conversation = stack.chatwoot.conversations().into_iter().next().unwrap();
    assert_eq!(
        stack.chatwoot.messages(conversation.display_id)[0].content.as_deref(),
        Some("📞 Incoming WhatsApp voice call")
    );
    assert_eq!(stack.chatwoot.contacts()[0].phone_number.as_deref(), Some("+5511999998888"));
}
