//! Chatwoot → WhatsApp (contract §4, §5): agent replies arrive once, with honest ticks — real signed
//! webhooks from the fake Chatwoot into the bridge, sends into the RyzeAPI simulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

const MARIA: &str = "5511999998888@s.whatsapp.net";
const WAIT: Duration = Duration::from_secs(6);

/// A connected integration with one customer conversation. Returns the stack, the integration id and
/// the conversation's display id.
async fn conversation(changes: Value) -> (Stack, String, i64) {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate_with("suporte", changes).await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0CUST01", MARIA, "Maria", "preciso de ajuda"));
    let chatwoot = &stack.chatwoot;
    eventually("the customer's message", WAIT, || chatwoot.message_count() == 1).await;
    let display_id = stack.chatwoot.conversations()[0].display_id;
    (stack, id, display_id)
}

fn sends(stack: &Stack) -> Vec<Value> {
    stack
        .ryzeapi
        .requests("suporte")
        .into_iter()
        .filter(|c| c.path.starts_with("/api/message/") && c.status == 200)
        .map(|c| c.body)
        .collect()
}

async fn wait_sends(stack: &Stack, count: usize) -> Vec<Value> {
    let sim = &stack.ryzeapi;
    eventually(&format!("{count} sends"), WAIT, || {
        sim.requests("suporte").iter().filter(|c| c.path.starts_with("/api/message/") && c.status == 200).count()
            >= count
    })
    .await;
    sends(stack)
}

/// Waits until the bridge set the tick with `PATCH …/messages/{id}` (a new agent message already reads
/// `sent` in Chatwoot, so the status alone proves nothing for `sent`).
/// Waits until the reply is out and its job recorded done (Chatwoot shows a new reply `sent` from the
/// start: the bridge makes no call for that), within `within`.
async fn wait_reply_done(stack: &Stack, within: Duration) {
    let (_, list) = stack.bridge.call("GET", "/v1/integrations", None).await;
    let id = list["integrations"][0]["id"].as_str().unwrap().to_owned();
    let bridge = &stack.bridge;
    eventually_async("the reply's job done", within, || async {
        let view = bridge.call("GET", &format!("/v1/integrations/{id}"), None).await.1;
        view["queues"]["to_whatsapp_pending"] == 0 && view["totals"]["messages_to_whatsapp"].as_u64() >= Some(1)
    })
    .await;
}

async fn wait_tick_request(stack: &Stack, message_id: i64, status: &str) {
    let chatwoot = &stack.chatwoot;
    let suffix = format!("/messages/{message_id}");
    eventually(&format!("PATCH {status}"), WAIT, || {
        chatwoot.requests().iter().any(|r| {
            r.method == "PATCH" && r.path.ends_with(&suffix) && r.body.as_ref().is_some_and(|b| b["status"] == status)
        })
    })
    .await;
    wait_status(stack, message_id, status).await;
}

async fn wait_status(stack: &Stack, message_id: i64, status: &str) {
    let chatwoot = &stack.chatwoot;
    eventually(&format!("tick {status}"), WAIT, || chatwoot.message(message_id).is_some_and(|m| m.status == status))
        .await;
}

#[actix_web::test]
async fn an_agent_reply_goes_out_once_with_a_sent_tick_and_marks_the_chat_read() {
    let (stack, _id, display_id) = conversation(json!({})).await;
    let reply = stack.chatwoot.agent_reply(display_id, "**Olá** Maria, veja [aqui](https://x.com/a)", false).unwrap();
    let sent = wait_sends(&stack, 1).await;
    assert_eq!(
        sent[0],
        json!({"number": "5511999998888", "message": "*Olá* Maria, veja https://x.com/a", "source": "chatwoot"})
    );
    wait_reply_done(&stack, WAIT).await;
    assert!(tick_requests(&stack, reply, "sent").is_empty(), "Chatwoot shows a new reply sent: no call for it");
    let sim = &stack.ryzeapi;
    eventually("mark read", WAIT, || sim.requests("suporte").iter().any(|c| c.path.starts_with("/api/chat/markRead/")))
        .await;
    let mark =
        stack.ryzeapi.requests("suporte").into_iter().find(|c| c.path.starts_with("/api/chat/markRead/")).unwrap();
    assert_eq!(mark.body["messageId"], "3EB0CUST01");
    // The echo of the send comes back over the link and is not posted to Chatwoot again.
    actix_web::rt::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(stack.chatwoot.message_count(), 2);
    assert_eq!(sends(&stack).len(), 1);
}

#[actix_web::test]
async fn private_notes_and_the_bridges_own_messages_are_not_sent() {
    let (stack, _id, display_id) = conversation(json!({})).await;
    stack.chatwoot.agent_reply(display_id, "nota interna", true).unwrap();
    stack.chatwoot.agent_reply(display_id, "para o cliente", false).unwrap();
    let sent = wait_sends(&stack, 1).await;
    actix_web::rt::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sends(&stack).len(), 1);
    assert_eq!(sent[0]["message"], "para o cliente");
}

#[actix_web::test]
async fn duplicate_webhooks_send_once() {
    let (stack, _id, display_id) = conversation(json!({})).await;
    stack.chatwoot.set_webhook_duplicates(true);
    stack.chatwoot.agent_reply(display_id, "uma vez só", false).unwrap();
    wait_sends(&stack, 1).await;
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sends(&stack).len(), 1);
}

#[actix_web::test]
async fn signed_messages_quotes_and_attachments() {
    let (stack, _id, display_id) = conversation(json!({"signMessages": true})).await;
    let customer_message = stack.chatwoot.messages(display_id)[0].id;
    stack.chatwoot.agent_reply_to(display_id, "respondendo", customer_message).unwrap();
    let png = [0x89, b'P', b'N', b'G', 1, 2, 3];
    stack.chatwoot.agent_reply_with_attachment(display_id, "a foto", false, "foto.png", "image/png", &png).unwrap();
    let sent = wait_sends(&stack, 2).await;
    let agent = stack.chatwoot.messages(display_id)[1].sender.clone();
    let agent_name = match agent {
        ryze_fakes::chatwoot::FakeSender::User { name, .. } => name,
        other => panic!("{other:?}"),
    };
    assert_eq!(sent[0]["message"], format!("*{agent_name}:*\nrespondendo"));
    assert_eq!(sent[0]["replyTo"], "3EB0CUST01");
    assert_eq!(sent[1]["mediaType"], "image");
    assert_eq!(sent[1]["mimeType"], "image/png");
    assert_eq!(sent[1]["fileName"], "foto.png");
    assert_eq!(sent[1]["message"], format!("*{agent_name}:*\na foto"));
    use base64::Engine as _;
    let expected = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png));
    assert_eq!(sent[1]["mediaUrl"], expected, "the bytes downloaded through Chatwoot's redirect");
}

#[actix_web::test]
async fn ryzeapi_down_for_a_while_delivers_in_order_afterwards() {
    let (stack, id, display_id) = conversation(json!({})).await;
    stack.ryzeapi.fail_next_sends(3, 503);
    let replies: Vec<i64> =
        (0..3).map(|n| stack.chatwoot.agent_reply(display_id, &format!("r{n}"), false).unwrap()).collect();
    let sent = wait_sends(&stack, 3).await;
    let texts: Vec<&str> = sent.iter().map(|s| s["message"].as_str().unwrap()).collect();
    assert_eq!(texts, vec!["r0", "r1", "r2"]);
    for reply in replies {
        wait_status(&stack, reply, "sent").await;
    }
    // The tick is set before the job is recorded as done.
    stack.wait_drained(&id).await;
}

#[actix_web::test]
async fn a_final_failure_shows_why_and_a_retry_sends_once_more() {
    let (stack, id, display_id) = conversation(json!({})).await;
    stack.ryzeapi.fail_next_sends(1, 400);
    let reply = stack.chatwoot.agent_reply(display_id, "não vai", false).unwrap();
    wait_status(&stack, reply, "failed").await;
    assert_eq!(
        stack.chatwoot.message(reply).unwrap().external_error.as_deref(),
        Some("This number is not on WhatsApp")
    );
    // The tick is set just before the job is recorded as failed.
    let deadline = std::time::Instant::now() + WAIT;
    while stack.view(&id).await["queues"]["failed"] != 1 {
        assert!(std::time::Instant::now() < deadline, "the failure counts in queues.failed");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }

    assert!(stack.chatwoot.agent_retry(reply));
    wait_reply_done(&stack, WAIT).await;
    let sent = wait_sends(&stack, 1).await;
    actix_web::rt::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sends(&stack).len(), 1, "one more send, not two");
    assert_eq!(sent[0]["message"], "não vai");
}

#[actix_web::test]
async fn retries_run_out_into_a_plain_words_failure() {
    let (stack, _id, display_id) = conversation(json!({})).await;
    stack.ryzeapi.fail_next_sends(100, 503);
    let reply = stack.chatwoot.agent_reply(display_id, "instância caída", false).unwrap();
    wait_status(&stack, reply, "failed").await;
    assert_eq!(
        stack.chatwoot.message(reply).unwrap().external_error.as_deref(),
        Some("The WhatsApp number is disconnected from RyzeAPI — reconnect it, then retry")
    );
}

#[actix_web::test]
async fn an_agent_delete_revokes_on_whatsapp() {
    let (stack, _id, display_id) = conversation(json!({})).await;
    let reply = stack.chatwoot.agent_reply(display_id, "apagar depois", false).unwrap();
    wait_sends(&stack, 1).await;
    wait_reply_done(&stack, WAIT).await;
    let wa_id =
        stack.ryzeapi.requests("suporte").into_iter().find(|c| c.path.starts_with("/api/message/text/")).unwrap();
    assert!(stack.chatwoot.agent_delete(reply));
    let sim = &stack.ryzeapi;
    eventually("revoke", WAIT, || {
        sim.requests("suporte").iter().any(|c| c.method == "DELETE" && c.path.starts_with("/api/chat/delete/"))
    })
    .await;
    let revoke = stack.ryzeapi.requests("suporte").into_iter().find(|c| c.method == "DELETE").unwrap();
    assert_eq!(revoke.body["deleteForEveryone"], true);
    assert!(revoke.body["messageId"].as_str().unwrap().starts_with("3EB0"), "{wa_id:?}");
    assert_eq!(revoke.status, 200, "the simulator knew that id");
}

#[actix_web::test]
async fn typing_becomes_presence_and_receipts_become_ticks() {
    let (stack, _id, display_id) = conversation(json!({})).await;
    stack.chatwoot.agent_typing(display_id, true);
    let sim = &stack.ryzeapi;
    eventually("presence", WAIT, || sim.requests("suporte").iter().any(|c| c.path.starts_with("/api/chat/presence/")))
        .await;
    let presence =
        stack.ryzeapi.requests("suporte").into_iter().find(|c| c.path.starts_with("/api/chat/presence/")).unwrap();
    assert_eq!(
        (presence.body["number"].as_str(), presence.body["state"].as_str()),
        (Some("5511999998888"), Some("typing"))
    );

    let reply = stack.chatwoot.agent_reply(display_id, "recebeu?", false).unwrap();
    wait_reply_done(&stack, WAIT).await;
    let sent_id = stack
        .ryzeapi
        .sent_message_ids("suporte")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{:?}", stack.ryzeapi.requests("suporte")));
    stack.ryzeapi.send_event("suporte", sim::status_event("suporte", &[&sent_id], "delivered", MARIA));
    wait_tick_request(&stack, reply, "delivered").await;
    stack.ryzeapi.send_event("suporte", sim::status_event("suporte", &[&sent_id], "read", MARIA));
    wait_tick_request(&stack, reply, "read").await;
    stack.ryzeapi.send_event("suporte", sim::status_event("suporte", &[&sent_id], "delivered", MARIA));
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stack.chatwoot.message(reply).unwrap().status, "read", "ticks never go backwards");
}

/// The `PATCH` requests that set `status` on a message, as `(status answered)`.
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

/// Chatwoot marks a reply failed on its own, as `Webhooks::Trigger` does when its webhook times out, while
/// the bridge sends it anyway: a status PATCH with the same effect, from outside.
async fn chatwoot_marks_failed(stack: &Stack, display_id: i64, reply: i64) {
    let url = format!("{}/api/v1/accounts/{ACCOUNT}/conversations/{display_id}/messages/{reply}", stack.chatwoot.url());
    let response = awc::Client::default()
        .patch(url)
        .insert_header(("api_access_token", ADMIN))
        .send_json(&json!({"status": "failed", "external_error": "Net::ReadTimeout with #<TCPSocket:(closed)>"}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[actix_web::test]
async fn a_reply_chatwoot_marked_failed_on_its_own_gets_its_sent_tick_back_without_sending_again() {
    let (stack, _id, display_id) = conversation(json!({})).await;
    let reply = stack.chatwoot.agent_reply(display_id, "chegou?", false).unwrap();
    wait_reply_done(&stack, WAIT).await;
    assert!(tick_requests(&stack, reply, "sent").is_empty(), "a new reply needs no tick");
    chatwoot_marks_failed(&stack, display_id, reply).await;
    stack.chatwoot.fail_next("PATCH", &format!("/messages/{reply}"), 503, 2);
    eventually("the tick set back", WAIT, || tick_requests(&stack, reply, "sent").contains(&200)).await;
    assert_eq!(tick_requests(&stack, reply, "sent"), [503, 503, 200]);
    assert_eq!(stack.chatwoot.message(reply).unwrap().status, "sent");
    assert_eq!(sends(&stack).len(), 1, "the tick job only sets the tick");
}

#[actix_web::test]
async fn a_sent_tick_retried_after_a_receipt_does_not_move_the_tick_back() {
    let (stack, _id, display_id) = conversation(json!({})).await;
    let reply = stack.chatwoot.agent_reply(display_id, "chegou?", false).unwrap();
    wait_reply_done(&stack, WAIT).await;
    // Rack::Attack's 429: the delivery receipt arrives while the tick job waits to try again.
    chatwoot_marks_failed(&stack, display_id, reply).await;
    stack.chatwoot.fail_next("PATCH", &format!("/messages/{reply}"), 429, 1);
    let chatwoot = &stack.chatwoot;
    eventually("the refused tick", WAIT, || tick_requests(&stack, reply, "sent") == [429]).await;
    let sent_id = stack.ryzeapi.sent_message_ids("suporte").into_iter().next().unwrap();
    stack.ryzeapi.send_event("suporte", sim::status_event("suporte", &[&sent_id], "delivered", MARIA));
    wait_tick_request(&stack, reply, "delivered").await;
    // The job's replay finds the tick past `sent` and leaves it.
    wait_reply_done(&stack, WAIT).await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(tick_requests(&stack, reply, "sent"), [429]);
    assert_eq!(chatwoot.message(reply).unwrap().status, "delivered");
    assert_eq!(sends(&stack).len(), 1);
}

#[actix_web::test]
async fn replies_while_paused_wait_and_go_out_on_resume() {
    let (stack, id, display_id) = conversation(json!({})).await;
    stack.bridge.call("POST", &format!("/v1/integrations/{id}/pause"), None).await;
    stack.chatwoot.agent_reply(display_id, "durante a pausa", false).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while stack.view(&id).await["queues"]["to_whatsapp_pending"] != 1 {
        assert!(std::time::Instant::now() < deadline, "stored while paused");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert!(sends(&stack).is_empty());
    stack.bridge.call("POST", &format!("/v1/integrations/{id}/resume"), None).await;
    let sent = wait_sends(&stack, 1).await;
    assert_eq!(sent[0]["message"], "durante a pausa");
}

#[actix_web::test]
async fn a_reply_acknowledged_before_a_crash_goes_out_exactly_once() {
    let (mut stack, _id, display_id) = conversation(json!({})).await;
    stack.ryzeapi.fail_next_sends(1000, 503);
    let reply = stack.chatwoot.agent_reply(display_id, "sobrevive ao kill -9", false).unwrap();
    let chatwoot = &stack.chatwoot;
    eventually("webhook answered 200", WAIT, || {
        chatwoot
            .webhook_deliveries()
            .iter()
            .any(|d| d.event == "message_created" && d.body["id"] == reply && d.status == Some(200))
    })
    .await;
    stack.bridge.kill();
    stack.ryzeapi.fail_next_sends(0, 503);
    stack.bridge.restart().await;
    wait_sends(&stack, 1).await;
    wait_reply_done(&stack, WAIT).await;
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sends(&stack).len(), 1);
}

#[actix_web::test]
async fn the_webhook_route_checks_id_secret_and_signature() {
    let (stack, id, _display_id) = conversation(json!({})).await;
    let inbox = stack.chatwoot.inboxes().into_iter().next().unwrap();
    let secret = inbox.webhook_url.rsplit('/').next().unwrap().to_owned();
    let body = json!({"event": "conversation_status_changed", "id": 1, "status": "resolved"}).to_string();
    let post = |path: String, headers: Vec<(&'static str, String)>, body: String| async move {
        let mut req = awc::Client::default().post(path).insert_header(("content-type", "application/json"));
        for (k, v) in headers {
            req = req.insert_header((k, v));
        }
        req.send_body(body).await.unwrap().status().as_u16()
    };
    let url = |id: &str, secret: &str| format!("{}/v1/webhooks/chatwoot/{id}/{secret}", stack.bridge.url);
    let now = chrono::Utc::now().timestamp().to_string();
    let good = ryze_fakes::chatwoot::sign_webhook(&inbox.secret, &now, body.as_bytes());
    assert_eq!(
        post(
            url(&id, &secret),
            vec![("x-chatwoot-timestamp", now.clone()), ("x-chatwoot-signature", good.clone())],
            body.clone()
        )
        .await,
        200
    );
    assert_eq!(
        post(
            url(&id, "wrong-secret"),
            vec![("x-chatwoot-timestamp", now.clone()), ("x-chatwoot-signature", good.clone())],
            body.clone()
        )
        .await,
        404
    );
    assert_eq!(post(url("int_unknown", &secret), vec![], body.clone()).await, 404);
    assert_eq!(post(url(&id, &secret), vec![], body.clone()).await, 401, "unsigned");
    let bad = ryze_fakes::chatwoot::sign_webhook("not-the-secret", &now, body.as_bytes());
    assert_eq!(
        post(
            url(&id, &secret),
            vec![("x-chatwoot-timestamp", now.clone()), ("x-chatwoot-signature", bad)],
            body.clone()
        )
        .await,
        401
    );
    let stale = (chrono::Utc::now().timestamp() - 600).to_string();
    let stale_sig = ryze_fakes::chatwoot::sign_webhook(&inbox.secret, &stale, body.as_bytes());
    assert_eq!(
        post(
            url(&id, &secret),
            vec![("x-chatwoot-timestamp", stale), ("x-chatwoot-signature", stale_sig)],
            body.clone()
        )
        .await,
        401
    );
    let tampered = body.replace("resolved", "open");
    assert_eq!(
        post(
            url(&id, &secret),
            vec![("x-chatwoot-timestamp", now.clone()), ("x-chatwoot-signature", good.clone())],
            tampered
        )
        .await,
        401
    );
    // The bridge keeps opened credentials in memory after the first delivery; a deactivation must still
    // end them at once.
    let (status, _) = stack.bridge.call("DELETE", &format!("/v1/integrations/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        post(url(&id, &secret), vec![("x-chatwoot-timestamp", now), ("x-chatwoot-signature", good)], body).await,
        404,
        "a deactivated integration's webhook URL is dead"
    );
}

#[actix_web::test]
async fn while_ryzeapi_is_down_altogether_replies_wait_without_failing() {
    let (stack, id, display_id) = conversation(json!({})).await;
    // RyzeAPI goes away: the link drops and sends fail, longer than the attempts would last.
    stack.ryzeapi.refuse_upgrades(Some(503));
    stack.ryzeapi.drop_connections("suporte");
    stack.ryzeapi.fail_next_sends(1000, 503);
    let deadline = std::time::Instant::now() + WAIT;
    while stack.view(&id).await["connection"]["state"] == "connected" {
        assert!(std::time::Instant::now() < deadline, "the link notices RyzeAPI is gone");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = stack.chatwoot.agent_reply(display_id, "espera o RyzeAPI", false).unwrap();
    actix_web::rt::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(stack.chatwoot.message(reply).unwrap().status, "sent", "not failed while RyzeAPI is down");
    assert_eq!(stack.view(&id).await["queues"]["to_whatsapp_pending"], 1);
    // RyzeAPI is back.
    stack.ryzeapi.fail_next_sends(0, 503);
    stack.ryzeapi.refuse_upgrades(None);
    let sent = wait_sends(&stack, 1).await;
    assert_eq!(sent[0]["message"], "espera o RyzeAPI");
    wait_reply_done(&stack, WAIT).await;
}

#[actix_web::test]
async fn ticks_follow_a_chatwoot_upgrade_without_reactivation() {
    let stack = Stack::start_with(BRIDGE, vec![("BRIDGE_VERSION_CHECK_MS".into(), "300".into())]).await;
    stack.chatwoot.set_version("4.1.0");
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0V001", MARIA, "Maria", "oi"));
    let chatwoot = &stack.chatwoot;
    eventually("customer message", WAIT, || chatwoot.message_count() == 1).await;
    let display_id = stack.chatwoot.conversations()[0].display_id;
    stack.chatwoot.agent_reply(display_id, "antes do upgrade", false).unwrap();
    wait_sends(&stack, 1).await;
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stack.chatwoot.count("PATCH", "/api/v1/accounts/5/conversations/"), 0, "no ticks before 4.2");

    stack.chatwoot.set_version("4.15.1");
    let deadline = std::time::Instant::now() + WAIT;
    while stack.view(&id).await["chatwoot_version"] != "4.15.1" {
        assert!(std::time::Instant::now() < deadline, "the version is read again");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = stack.chatwoot.agent_reply(display_id, "depois do upgrade", false).unwrap();
    wait_sends(&stack, 2).await;
    let sent_id = stack.ryzeapi.sent_message_ids("suporte").into_iter().last().unwrap();
    stack.ryzeapi.send_event("suporte", sim::status_event("suporte", &[&sent_id], "delivered", MARIA));
    wait_tick_request(&stack, reply, "delivered").await;
}

/// RyzeAPI sends the reply but answers after the bridge gave up waiting: the outcome is unknown. The
/// bridge must not send again blindly; WhatsApp's echo of the first send tells it the reply went out.
#[actix_web::test]
async fn a_send_answered_too_late_is_recognised_by_its_echo_and_not_repeated() {
    let (stack, _id, display_id) = conversation(json!({})).await;
    // The bridge's timeout is 1.5 s in tests.
    stack.ryzeapi.answer_next_sends_late(1, Duration::from_secs(4));
    let reply = stack.chatwoot.agent_reply(display_id, "chegou uma vez", false).unwrap();
    wait_sends(&stack, 1).await;
    wait_reply_done(&stack, Duration::from_secs(20)).await;
    assert_eq!(stack.chatwoot.message(reply).unwrap().status, "sent", "never shown as failed");
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sends(&stack).len(), 1, "sent once: the echo proved the first send went out");
}

/// The bridge dies while RyzeAPI is carrying the send out: after the restart, the echo (stored, or
/// delivered again after the reconnect) stops a second send.
#[actix_web::test]
async fn a_crash_during_a_send_does_not_send_it_twice() {
    let (mut stack, _id, display_id) = conversation(json!({})).await;
    stack.ryzeapi.answer_next_sends_late(1, Duration::from_secs(3));
    let reply = stack.chatwoot.agent_reply(display_id, "enviada durante o kill", false).unwrap();
    wait_sends(&stack, 1).await;
    stack.bridge.kill();
    stack.bridge.restart().await;
    wait_reply_done(&stack, Duration::from_secs(20)).await;
    assert_eq!(stack.chatwoot.message(reply).unwrap().status, "sent", "never shown as failed");
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sends(&stack).len(), 1, "sent once across the crash");
}

/// Without an echo, an unanswered send is repeated once it has settled: a reply is never lost.
#[actix_web::test]
async fn an_unanswered_send_without_an_echo_is_sent_again() {
    let (stack, _id, display_id) = conversation(json!({})).await;
    stack.ryzeapi.set_echo_delay(None);
    stack.ryzeapi.answer_next_sends_late(1, Duration::from_secs(4));
    let reply = stack.chatwoot.agent_reply(display_id, "de novo", false).unwrap();
    wait_reply_done(&stack, Duration::from_secs(20)).await;
    assert_eq!(stack.chatwoot.message(reply).unwrap().status, "sent", "never shown as failed");
    assert_eq!(sends(&stack).len(), 2, "no echo: the send is repeated, WhatsApp got it twice (the sim did send)");
}

/// The bridge was down when the agent replied, so Chatwoot's webhook never reached it: the agent's retry
/// is the first the bridge hears of the message, and sends it (once).
#[actix_web::test]
async fn a_retry_of_a_reply_whose_webhook_never_arrived_sends_it_once() {
    let (mut stack, _id, display_id) = conversation(json!({})).await;
    stack.bridge.kill();
    let reply = stack.chatwoot.agent_reply(display_id, "enviada com a ponte fora", false).unwrap();
    let chatwoot = &stack.chatwoot;
    eventually("the webhook failed", WAIT, || {
        chatwoot.webhook_deliveries().iter().any(|d| d.event == "message_created" && d.body["id"] == reply)
    })
    .await;
    stack.bridge.restart().await;
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert!(sends(&stack).is_empty(), "nothing is sent before the agent retries");
    assert!(stack.chatwoot.agent_retry(reply));
    let sent = wait_sends(&stack, 1).await;
    assert_eq!(sent[0]["message"], "enviada com a ponte fora");
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sends(&stack).len(), 1);
}

/// A reply whose webhook was answered just before a kill -9 still waits out its order window after the
/// restart: an earlier reply whose webhook arrives late (Chatwoot's threads deliver in no promised order)
/// goes first. Before, the reloaded job had no hold and went out at once, ahead of the earlier reply.
#[actix_web::test]
async fn a_reply_stored_just_before_a_crash_still_waits_for_an_earlier_one() {
    // A wide window, so that the kill and the restart fit inside it.
    let window = vec![("BRIDGE_REPLY_ORDER_WINDOW_MS".to_owned(), "3000".to_owned())];
    let mut stack = Stack::start_with(BRIDGE, window).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0CUST01", MARIA, "Maria", "preciso de ajuda"));
    let chatwoot = &stack.chatwoot;
    eventually("the customer's message", WAIT, || chatwoot.message_count() == 1).await;
    let display_id = chatwoot.conversations()[0].display_id;
    let inbox = chatwoot.inboxes().into_iter().next().unwrap();
    // The first reply's webhook is held back (a slow Sidekiq thread); the second's is delivered.
    chatwoot.set_inbox_webhook_url(inbox.id, "");
    let first = chatwoot.agent_reply(display_id, "primeira", false).unwrap();
    chatwoot.set_inbox_webhook_url(inbox.id, &inbox.webhook_url);
    let second = chatwoot.agent_reply(display_id, "segunda", false).unwrap();
    let delivered = |id: i64| {
        chatwoot
            .webhook_deliveries_of("message_created")
            .into_iter()
            .find(|d| d.body["id"] == id && d.status == Some(200))
    };
    eventually("the second reply's webhook answered 200", WAIT, || delivered(second).is_some()).await;
    let mut body = delivered(second).unwrap().body;
    stack.bridge.kill();
    stack.bridge.restart().await;
    // Now the first reply's webhook arrives, as Chatwoot would build it.
    body["id"] = json!(first);
    body["content"] = json!("primeira");
    let body = body.to_string();
    let now = chrono::Utc::now().timestamp().to_string();
    let signature = ryze_fakes::chatwoot::sign_webhook(&inbox.secret, &now, body.as_bytes());
    let status = awc::Client::default()
        .post(&inbox.webhook_url)
        .insert_header(("content-type", "application/json"))
        .insert_header(("x-chatwoot-timestamp", now))
        .insert_header(("x-chatwoot-signature", signature))
        .send_body(body)
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let sent: Vec<Value> = wait_sends(&stack, 2).await.into_iter().map(|b| b["message"].clone()).collect();
    assert_eq!(sent, vec![json!("primeira"), json!("segunda")], "in the order Chatwoot created them");
}

#[actix_web::test]
async fn replies_mark_only_new_customer_messages_read() {
    let (stack, id, display_id) = conversation(json!({})).await;
    let marks = |stack: &Stack| {
        stack.ryzeapi.requests("suporte").iter().filter(|c| c.path.starts_with("/api/chat/markRead/")).count()
    };
    for n in 0..3 {
        stack.chatwoot.agent_reply(display_id, &format!("resposta {n}"), false).unwrap();
    }
    wait_sends(&stack, 3).await;
    stack.wait_drained(&id).await;
    assert_eq!(marks(&stack), 1, "three replies to one message: one read mark");
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0CUST02", MARIA, "Maria", "mais uma"));
    let chatwoot = &stack.chatwoot;
    eventually("the second customer message", WAIT, || chatwoot.message_count() >= 5).await;
    stack.chatwoot.agent_reply(display_id, "ok", false).unwrap();
    wait_sends(&stack, 4).await;
    stack.wait_drained(&id).await;
    assert_eq!(marks(&stack), 2, "a new customer message is marked read by the next reply");
}

/// `delivered` and then `read` for one reply while Chatwoot refuses: once `read` is stored, the retried
/// `delivered` is not sent (the `read` behind it would overwrite it at once); one PATCH sets `read`.
#[actix_web::test]
async fn a_delivered_tick_a_stored_read_supersedes_is_not_sent() {
    let (stack, _id, display_id) = conversation(json!({})).await;
    let reply = stack.chatwoot.agent_reply(display_id, "chegou?", false).unwrap();
    wait_reply_done(&stack, WAIT).await;
    let sent_id = stack.ryzeapi.sent_message_ids("suporte").into_iter().next().unwrap();
    stack.chatwoot.fail_next("PATCH", &format!("/messages/{reply}"), 503, 100);
    stack.ryzeapi.send_event("suporte", sim::status_event("suporte", &[&sent_id], "delivered", MARIA));
    eventually("the refused tick", WAIT, || tick_requests(&stack, reply, "delivered").contains(&503)).await;
    let read = stack.ryzeapi.send_event("suporte", sim::status_event("suporte", &[&sent_id], "read", MARIA)).unwrap();
    // The read receipt is stored (it is acknowledged only then) before Chatwoot answers again.
    let sim = &stack.ryzeapi;
    eventually("read stored", WAIT, || sim.acked("suporte").contains(&read)).await;
    stack.chatwoot.clear_failures();
    wait_tick_request(&stack, reply, "read").await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !tick_requests(&stack, reply, "delivered").contains(&200),
        "{:?}",
        tick_requests(&stack, reply, "delivered")
    );
    assert_eq!(tick_requests(&stack, reply, "read"), [200]);
    assert_eq!(stack.chatwoot.message(reply).unwrap().status, "read");
}
