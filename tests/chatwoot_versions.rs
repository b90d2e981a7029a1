//! The version matrix: the core round trip against the fake Chatwoot at each release line the bridge
//! supports (`docs/chatwoot-compatibility.md`), one test per version so that a failure names it.
//!
//! Every version: activation, an inbound text once with `source_id`, a message typed on the phone shown as
//! `outgoing` and never sent back, a customer quote threaded by `in_reply_to`, an inbound image, an agent
//! reply sent once (clean line breaks), an agent delete revoked on WhatsApp once, and an agent retry of a
//! failed reply sent once more. From 4.2 the ticks (`sent` after a refused PATCH, then `delivered` and
//! `read` from receipts); below 4.2 no status PATCH at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::time::Duration;

use common::*;
use ryze_integrations::chatwoot::version::{BACKSLASH_BREAKS, STATUS_TICKS, Version};
use serde_json::{Value, json};

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

const MARIA: &str = "5511999998888@s.whatsapp.net";
const WAIT: Duration = Duration::from_secs(8);
/// Longer than the bridge's reply order window (500 ms by default), so a reply it wrongly let through
/// would have gone out.
const QUIET: Duration = Duration::from_millis(900);

fn incoming(id: &str, body: Value) -> Value {
    sim::message(
        "suporte",
        json!({"id": id, "direction": "incoming", "chat": {"jid": MARIA, "type": "private"},
            "sender": {"jid": MARIA, "name": "Maria"}, "message": body}),
    )
}

/// RyzeAPI sends (text or media) that succeeded, as their bodies.
fn sends(stack: &Stack) -> Vec<Value> {
    stack
        .ryzeapi
        .requests("suporte")
        .into_iter()
        .filter(|c| c.path.starts_with("/api/message/") && c.status == 200)
        .map(|c| c.body)
        .collect()
}

fn sends_of(stack: &Stack, text: &str) -> usize {
    sends(stack).iter().filter(|b| b["message"] == text).count()
}

fn revokes(stack: &Stack) -> Vec<Value> {
    stack
        .ryzeapi
        .requests("suporte")
        .into_iter()
        .filter(|c| c.path.starts_with("/api/chat/delete/"))
        .map(|c| c.body)
        .collect()
}

/// Chatwoot messages whose `source_id` is `WAID:<wa_id>`.
fn copies_of(stack: &Stack, wa_id: &str) -> usize {
    let source = format!("WAID:{wa_id}");
    stack
        .chatwoot
        .conversations()
        .iter()
        .flat_map(|c| stack.chatwoot.messages(c.display_id))
        .filter(|m| m.source_id.as_deref() == Some(source.as_str()))
        .count()
}

/// The statuses Chatwoot answered to the PATCHes that set `status` on a message.
fn tick_requests(stack: &Stack, message_id: i64, status: &str) -> Vec<u16> {
    let suffix = format!("/messages/{message_id}");
    stack
        .chatwoot
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with(&suffix))
        .filter(|r| r.body.as_ref().is_some_and(|b| b["status"] == status))
        .map(|r| r.status)
        .collect()
}

/// Waits for a PATCH that set `status` (answered 200) and for Chatwoot to show it.
async fn wait_tick(stack: &Stack, message_id: i64, status: &str) {
    eventually(&format!("PATCH {status} on {message_id}"), WAIT, || {
        tick_requests(stack, message_id, status).contains(&200)
    })
    .await;
    let chatwoot = &stack.chatwoot;
    eventually(&format!("tick {status} on {message_id}"), WAIT, || {
        chatwoot.message(message_id).is_some_and(|m| m.status == status)
    })
    .await;
}

async fn wait_failed_count(stack: &Stack, id: &str, count: u64) {
    let bridge = &stack.bridge;
    eventually_async(&format!("{count} failed in the bridge's queues"), WAIT, || async {
        bridge.call("GET", &format!("/v1/integrations/{id}"), None).await.1["queues"]["failed"] == count
    })
    .await;
}

/// The core scenario against Chatwoot `version`.
async fn round_trip(version: &str) {
    let parsed = Version::parse(version).unwrap();
    let ticks = parsed >= STATUS_TICKS;
    let stack = Stack::start(BRIDGE).await;
    stack.chatwoot.set_version(version);
    let chatwoot = &stack.chatwoot;

    // Activation.
    let (status, answer) =
        stack.bridge.call("POST", "/v1/integrations/activate", Some(stack.activation("suporte"))).await;
    assert_eq!(status, 201, "{version}: activation: {answer}");
    let id = answer["id"].as_str().unwrap().to_owned();
    stack.wait_link(&id, "connected", Duration::from_secs(3)).await;
    let inbox_id = stack.view(&id).await["inbox_id"].as_i64().unwrap();

    // An inbound text, once, with its WhatsApp id as source_id.
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0FIRST", MARIA, "Maria", "preciso de ajuda"));
    eventually("the first message", WAIT, || chatwoot.message_count() >= 1).await;
    let display_id = chatwoot.conversations()[0].display_id;
    let first = chatwoot.messages(display_id).remove(0);
    assert_eq!(first.source_id.as_deref(), Some("WAID:3EB0FIRST"), "{version}");
    assert_eq!(first.message_type, "incoming", "{version}");
    assert_eq!(first.content.as_deref(), Some("preciso de ajuda"), "{version}");

    // Typed on the phone: shown as outgoing, never sent back (checked at the end, after a quiet period).
    let typed = "digitado no celular";
    stack.ryzeapi.send_event("suporte", sim::outgoing_text_message("suporte", "3EB0PHONE", MARIA, typed, ""));
    eventually("the message typed on the phone", WAIT, || copies_of(&stack, "3EB0PHONE") == 1).await;
    let phone = chatwoot.messages(display_id).into_iter().find(|m| m.content.as_deref() == Some(typed)).unwrap();
    assert_eq!(phone.message_type, "outgoing", "{version}");

    // A customer quote of the first message, threaded by its Chatwoot id.
    stack.ryzeapi.send_event(
        "suporte",
        incoming(
            "3EB0QUOTE",
            json!({"type": "text", "content": "citando", "context": {"quotedMessageId": "3EB0FIRST"}}),
        ),
    );
    eventually("the quote", WAIT, || copies_of(&stack, "3EB0QUOTE") == 1).await;
    let quote = chatwoot.messages(display_id).into_iter().find(|m| m.content.as_deref() == Some("citando")).unwrap();
    assert_eq!(
        quote.content_attributes.get("in_reply_to"),
        Some(&json!(first.id)),
        "{version}: quote threaded: {:?}",
        quote.content_attributes
    );

    // An inbound image, inline base64.
    use base64::Engine as _;
    let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D];
    let image = json!({"type": "image", "media": {"mimeType": "image/png", "caption": "a foto",
        "base64": base64::engine::general_purpose::STANDARD.encode(png)}});
    stack.ryzeapi.send_event("suporte", incoming("3EB0IMAGE", image));
    eventually("the image", WAIT, || copies_of(&stack, "3EB0IMAGE") == 1).await;
    let picture =
        chatwoot.messages(display_id).into_iter().find(|m| m.source_id.as_deref() == Some("WAID:3EB0IMAGE")).unwrap();
    assert_eq!(picture.attachments.len(), 1, "{version}: {picture:?}");
    assert_eq!(picture.attachments[0].file_type, "image", "{version}");
    assert_eq!(picture.attachments[0].byte_size, png.len(), "{version}");

    // An agent reply, once. From 4.9 the editor stores Shift+Enter as `\` + newline and leaves trailing
    // newlines (delivered as stored until 4.13); the customer sees clean lines on every version.
    let stored = if parsed >= BACKSLASH_BREAKS { "linha 1\\\nlinha **2**\n\n" } else { "linha 1\nlinha **2**" };
    let clean = "linha 1\nlinha *2*";
    let reply = chatwoot.agent_reply(display_id, stored, false).unwrap();
    eventually("the agent's reply on WhatsApp", WAIT, || sends_of(&stack, clean) == 1).await;
    let sent = sends(&stack);
    assert_eq!(sent.len(), 1, "{version}: only the reply was sent: {sent:?}");
    assert_eq!(sent[0]["number"], "5511999998888", "{version}");
    eventually("the reply's WhatsApp id", WAIT, || !stack.ryzeapi.sent_message_ids("suporte").is_empty()).await;
    let wa_id = stack.ryzeapi.sent_message_ids("suporte")[0].clone();

    // Ticks.
    // Chatwoot creates an agent's message as `sent`: the send itself costs no Chatwoot call.
    assert_eq!(chatwoot.message(reply).unwrap().status, "sent", "{version}");
    assert!(tick_requests(&stack, reply, "sent").is_empty(), "{version}: no PATCH for a new reply");
    stack.ryzeapi.send_event("suporte", sim::status_event("suporte", &[&wa_id], "delivered", MARIA));
    if ticks {
        wait_tick(&stack, reply, "delivered").await;
    }
    stack.ryzeapi.send_event("suporte", sim::status_event("suporte", &[&wa_id], "read", MARIA));
    if ticks {
        wait_tick(&stack, reply, "read").await;
    }

    // An agent delete of the reply revokes it on WhatsApp.
    assert!(chatwoot.agent_delete(reply));
    eventually("the revoke", WAIT, || !revokes(&stack).is_empty()).await;
    let revoke = revokes(&stack).remove(0);
    assert_eq!(revoke["messageId"], json!(wa_id), "{version}: {revoke}");

    // A reply RyzeAPI refuses for good, then the agent's retry.
    let refused = "não vai";
    stack.ryzeapi.fail_next_sends(1, 400);
    let failing = chatwoot.agent_reply(display_id, refused, false).unwrap();
    let sim = &stack.ryzeapi;
    eventually("the refused send", WAIT, || {
        sim.requests("suporte").iter().any(|c| c.path.starts_with("/api/message/") && c.status == 400)
    })
    .await;
    wait_failed_count(&stack, &id, 1).await;
    if ticks {
        wait_tick(&stack, failing, "failed").await;
        assert!(chatwoot.message(failing).unwrap().external_error.is_some(), "{version}: the reason shown");
        assert!(chatwoot.agent_retry(failing));
        eventually("the retried reply on WhatsApp", WAIT, || sends_of(&stack, refused) == 1).await;
        // Chatwoot's Retry sets `sent` itself (`Messages::StatusUpdateService`).
        eventually("sent again", WAIT, || chatwoot.message(failing).is_some_and(|m| m.status == "sent")).await;
    } else {
        // Below 4.2 the bridge cannot show the failure: Chatwoot still shows the reply as sent, and a retry
        // changes nothing, so Chatwoot reports nothing and nothing is sent.
        assert_eq!(chatwoot.message(failing).unwrap().status, "sent", "{version}");
        assert!(chatwoot.agent_retry(failing));
    }

    // Chatwoot marks a reply failed itself when its webhook cannot be delivered (every version): the
    // agent's retry is then the first the bridge hears of it, and it sends it once.
    let unheard = "sem webhook";
    let webhook_url = chatwoot.inbox(inbox_id).unwrap().webhook_url;
    chatwoot.set_inbox_webhook_url(inbox_id, "http://127.0.0.1:9/webhook");
    let lost = chatwoot.agent_reply(display_id, unheard, false).unwrap();
    eventually("the undelivered reply marked failed", WAIT, || {
        chatwoot.message(lost).is_some_and(|m| m.status == "failed")
    })
    .await;
    chatwoot.set_inbox_webhook_url(inbox_id, &webhook_url);
    assert!(chatwoot.agent_retry(lost));
    eventually("the retried undelivered reply on WhatsApp", WAIT, || sends_of(&stack, unheard) == 1).await;
    eventually("sent again after the retry", WAIT, || chatwoot.message(lost).is_some_and(|m| m.status == "sent")).await;

    // Quiet: nothing more goes out.
    assert!(chatwoot.webhooks_settled(WAIT).await, "{version}: webhooks settled");
    stack.wait_drained(&id).await;
    actix_web::rt::time::sleep(QUIET).await;
    assert_eq!(sends_of(&stack, typed), 0, "{version}: the message typed on the phone was echoed back");
    assert_eq!(sends_of(&stack, clean), 1, "{version}: the reply sent once");
    assert_eq!(sends_of(&stack, refused), usize::from(ticks), "{version}: the refused reply");
    assert_eq!(sends_of(&stack, unheard), 1, "{version}: the retried reply sent once");
    assert_eq!(sends(&stack).len(), 2 + usize::from(ticks), "{version}: {:?}", sends(&stack));
    assert_eq!(revokes(&stack).len(), 1, "{version}: revoked once");
    for wa in ["3EB0FIRST", "3EB0PHONE", "3EB0QUOTE", "3EB0IMAGE"] {
        assert_eq!(copies_of(&stack, wa), 1, "{version}: {wa} in Chatwoot once");
    }
    if !ticks {
        assert_eq!(chatwoot.count("PATCH", "/api/"), 0, "{version}: no status PATCH before 4.2");
    }
    assert_eq!(stack.view(&id).await["status"], "active", "{version}");
    assert_eq!(chatwoot.violations(), Vec::<String>::new(), "{version}: requests real Chatwoot would refuse");
}

#[actix_web::test]
async fn chatwoot_3_13_6() {
    round_trip("3.13.6").await;
}

#[actix_web::test]
async fn chatwoot_4_2_0() {
    round_trip("4.2.0").await;
}

#[actix_web::test]
async fn chatwoot_4_8_0() {
    round_trip("4.8.0").await;
}

#[actix_web::test]
async fn chatwoot_4_10_1() {
    round_trip("4.10.1").await;
}

#[actix_web::test]
async fn chatwoot_4_15_1() {
    round_trip("4.15.1").await;
}

#[actix_web::test]
async fn chatwoot_3_3_1_is_refused() {
    let stack = Stack::start(BRIDGE).await;
    stack.chatwoot.set_version("3.3.1");
    let (status, body) =
        stack.bridge.call("POST", "/v1/integrations/activate", Some(stack.activation("suporte"))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_fields(&body).0, "chatwoot_invalid_request");
    assert!(stack.chatwoot.inboxes().is_empty(), "nothing is created");
}
