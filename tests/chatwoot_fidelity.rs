//! The bridge against a fake Chatwoot that is as hard as the real one (issue 13). Each test names the
//! finding of `../shared/reference/chatwoot-fidelity.md` it covers; each failed before its fix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

const MARIA: &str = "5511999998888@s.whatsapp.net";
const JOAO: &str = "5511988887777@s.whatsapp.net";
const GROUP: &str = "120363000000000001@g.us";
const WAIT: Duration = Duration::from_secs(8);

/// A connected integration on a stack started with `env`, the fake at `version`.
async fn connected(env: &[(&str, &str)], version: &str, changes: Value) -> (Stack, String) {
    let stack = Stack::start_with(BRIDGE, env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()).await;
    stack.chatwoot.set_version(version);
    let id = stack.activate_with("suporte", changes).await;
    stack.wait_link(&id, "connected", Duration::from_secs(3)).await;
    (stack, id)
}

fn incoming(id: &str, from: &str, body: Value) -> Value {
    sim::message(
        "suporte",
        json!({"id": id, "direction": "incoming", "chat": {"jid": from, "type": "private"},
            "sender": {"jid": from, "name": "Maria"}, "message": body}),
    )
}

fn text(id: &str, content: &str) -> Value {
    sim::text_message("suporte", id, MARIA, "Maria", content)
}

async fn wait_messages(stack: &Stack, count: usize) {
    let chatwoot = &stack.chatwoot;
    eventually(&format!("{count} Chatwoot messages"), WAIT, || chatwoot.message_count() >= count).await;
}

/// The customer's first message, and the display id of its conversation.
async fn first_conversation(stack: &Stack) -> i64 {
    stack.ryzeapi.send_event("suporte", text("3EB0FIRST", "preciso de ajuda"));
    wait_messages(stack, 1).await;
    stack.chatwoot.conversations()[0].display_id
}

/// Bodies of the RyzeAPI calls under `prefix` that succeeded.
fn calls(stack: &Stack, prefix: &str) -> Vec<Value> {
    stack
        .ryzeapi
        .requests("suporte")
        .into_iter()
        .filter(|c| c.path.starts_with(prefix) && c.status == 200)
        .map(|c| c.body)
        .collect()
}

async fn wait_calls(stack: &Stack, prefix: &str, count: usize) -> Vec<Value> {
    let sim = &stack.ryzeapi;
    eventually(&format!("{count} calls to {prefix}"), WAIT, || {
        sim.requests("suporte").iter().filter(|c| c.path.starts_with(prefix) && c.status == 200).count() >= count
    })
    .await;
    calls(stack, prefix)
}

fn sent_texts(stack: &Stack) -> Vec<String> {
    calls(stack, "/api/message/").iter().filter_map(|b| b["message"].as_str().map(str::to_owned)).collect()
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

// --- #7: the token header behind a proxy ------------------------------------------------------------

#[actix_web::test]
async fn the_bridge_works_behind_a_proxy_that_drops_underscore_headers() {
    let stack = Stack::start(BRIDGE).await;
    stack.chatwoot.set_proxy_drops_underscore_headers(true);
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(3)).await;
    stack.ryzeapi.send_event("suporte", text("3EB0PROXY", "atrás do nginx"));
    wait_messages(&stack, 1).await;
    assert_eq!(stack.view(&id).await["status"], "active");
}

// --- #4: the oldest supported Chatwoot ---------------------------------------------------------------

#[actix_web::test]
async fn activation_refuses_a_chatwoot_older_than_3_4_naming_both_versions() {
    let stack = Stack::start(BRIDGE).await;
    stack.chatwoot.set_version("3.3.1");
    let (status, body) =
        stack.bridge.call("POST", "/v1/integrations/activate", Some(stack.activation("suporte"))).await;
    assert_eq!(status, 400, "{body}");
    let (code, message, detail, _) = error_fields(&body);
    assert_eq!(code, "chatwoot_invalid_request");
    assert!(
        message.starts_with("Chatwoot rejected the request as invalid — Chatwoot 3.3.1 is older than 3.4.0"),
        "{message}"
    );
    assert!(detail.contains("3.3.1"), "{detail}");
    assert!(stack.chatwoot.inboxes().is_empty(), "nothing is created");
    let (_, list) = stack.bridge.call("GET", "/v1/integrations", None).await;
    assert_eq!(list["integrations"], json!([]));

    stack.chatwoot.set_version("3.4.0");
    let (status, body) =
        stack.bridge.call("POST", "/v1/integrations/activate", Some(stack.activation("suporte"))).await;
    assert_eq!(status, 201, "{body}");
}

// --- #10: the signing secret changes ------------------------------------------------------------------

#[actix_web::test]
async fn a_reset_signing_secret_is_read_again_once() {
    let (stack, id) = connected(&[], "4.15.1", json!({})).await;
    let display_id = first_conversation(&stack).await;
    let inbox_id = stack.view(&id).await["inbox_id"].as_i64().unwrap();
    let gets = |stack: &Stack| stack.chatwoot.count("GET", &format!("/api/v1/accounts/{ACCOUNT}/inboxes/{inbox_id}"));
    let before = gets(&stack);
    stack.chatwoot.reset_inbox_secret(inbox_id);
    for n in 0..3 {
        stack.chatwoot.agent_reply(display_id, &format!("depois do reset {n}"), false).unwrap();
    }
    wait_calls(&stack, "/api/message/text/", 3).await;
    assert_eq!(gets(&stack) - before, 1, "one read of the inbox for three deliveries");
    let failed: Vec<_> =
        stack.chatwoot.webhook_deliveries().into_iter().filter(|d| d.status.is_some_and(|s| s != 200)).collect();
    assert!(failed.is_empty(), "no delivery refused: {failed:?}");
}

#[actix_web::test]
async fn an_upgrade_to_4_13_after_activation_starts_verifying_signatures() {
    let (stack, id) = connected(&[], "4.12.0", json!({})).await;
    let display_id = first_conversation(&stack).await;
    stack.chatwoot.set_version("4.15.1");
    stack.chatwoot.agent_reply(display_id, "já assinado", false).unwrap();
    wait_calls(&stack, "/api/message/text/", 1).await;

    // From now on an unsigned or wrongly signed delivery is refused.
    let inbox = stack.chatwoot.inbox(stack.view(&id).await["inbox_id"].as_i64().unwrap()).unwrap();
    let body = stack.chatwoot.webhook_deliveries_of("message_created").last().unwrap().body.to_string();
    let ts = chrono::Utc::now().timestamp().to_string();
    let forged = ryze_fakes::chatwoot::sign_webhook("not-the-secret", &ts, body.as_bytes());
    let response = awc::Client::default()
        .post(&inbox.webhook_url)
        .insert_header(("content-type", "application/json"))
        .insert_header(("x-chatwoot-timestamp", ts))
        .insert_header(("x-chatwoot-signature", forged))
        .send_body(body)
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

// --- #5: a 422 is not always final ----------------------------------------------------------------

#[actix_web::test]
async fn the_bridge_paces_itself_under_chatwoots_per_conversation_limit() {
    let (stack, _id) = connected(&[("BRIDGE_CHATWOOT_MESSAGES_PER_MINUTE", "4")], "4.15.1", json!({})).await;
    stack.chatwoot.set_conversation_message_limit(Some(5));
    for n in 0..6 {
        stack.ryzeapi.send_event("suporte", text(&format!("3EB0PACE{n}"), &format!("p{n}")));
    }
    wait_messages(&stack, 4).await;
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stack.chatwoot.message_count(), 4, "the fifth waits for the minute");
    let chatwoot = &stack.chatwoot;
    eventually("all six, a minute later", Duration::from_secs(75), || chatwoot.message_count() == 6).await;
    assert_eq!(assert_ordered_per_conversation(&stack.chatwoot, 'p'), vec![6]);
    assert_eq!(stack.chatwoot.requests().iter().filter(|r| r.status == 422).count(), 0, "never refused");
}

#[actix_web::test]
async fn too_many_messages_waits_and_sends_instead_of_dropping() {
    let (stack, _id) = connected(&[], "4.15.1", json!({})).await;
    stack.chatwoot.set_conversation_message_limit(Some(3));
    for n in 0..5 {
        stack.ryzeapi.send_event("suporte", text(&format!("3EB0FLOOD{n}"), &format!("f{n}")));
    }
    wait_messages(&stack, 3).await;
    let chatwoot = &stack.chatwoot;
    eventually("a 422 Too many messages", WAIT, || chatwoot.requests().iter().any(|r| r.status == 422)).await;
    eventually("all five, after Chatwoot's minute", Duration::from_secs(80), || chatwoot.message_count() == 5).await;
    assert_eq!(assert_ordered_per_conversation(&stack.chatwoot, 'f'), vec![5]);
    for n in 0..5 {
        assert_eq!(copies_of(&stack, &format!("3EB0FLOOD{n}")), 1);
    }
}

#[actix_web::test]
async fn an_unexplained_422_is_retried_and_never_makes_a_second_copy() {
    let (stack, id) = connected(&[], "4.15.1", json!({})).await;
    first_conversation(&stack).await;
    // An exception before the save (a storage upload, say): nothing was created.
    stack.chatwoot.fail_next_unprocessable("/messages", "Aws::S3::Errors::ServiceUnavailable", 2, false);
    stack.ryzeapi.send_event("suporte", text("3EB0U422A", "antes do commit"));
    wait_messages(&stack, 2).await;
    // An exception in an after-commit callback: the message exists, and the answer is still 422.
    stack.chatwoot.fail_next_unprocessable("/messages", "Redis::CannotConnectError", 1, true);
    stack.ryzeapi.send_event("suporte", text("3EB0U422B", "depois do commit"));
    wait_messages(&stack, 3).await;
    stack.wait_drained(&id).await;
    assert_eq!(copies_of(&stack, "3EB0U422A"), 1);
    assert_eq!(copies_of(&stack, "3EB0U422B"), 1);
    assert_eq!(stack.view(&id).await["queues"]["failed"], 0);
}

#[actix_web::test]
async fn an_unexplained_422_that_never_passes_fails_visibly() {
    let (stack, id) = connected(&[("BRIDGE_UNPROCESSABLE_GIVE_UP_MS", "1500")], "4.15.1", json!({})).await;
    first_conversation(&stack).await;
    stack.chatwoot.fail_next_unprocessable("/messages", "ActiveRecord::StatementInvalid", 1000, false);
    stack.ryzeapi.send_event("suporte", text("3EB0U422C", "nunca aceita"));
    let bridge = &stack.bridge;
    eventually_async("the message counted as failed", WAIT, || async {
        bridge.call("GET", &format!("/v1/integrations/{id}"), None).await.1["queues"]["failed"] == 1
    })
    .await;
    let tries = stack.chatwoot.requests().iter().filter(|r| r.status == 422).count();
    assert!(tries >= 2, "retried before giving up ({tries})");
}

// --- #2, #3: quotes that resolve on every version ---------------------------------------------------

#[actix_web::test]
async fn a_quote_of_an_agent_reply_threads_to_it() {
    let (stack, _id) = connected(&[], "4.15.1", json!({})).await;
    let display_id = first_conversation(&stack).await;
    let reply = stack.chatwoot.agent_reply(display_id, "posso ajudar?", false).unwrap();
    wait_calls(&stack, "/api/message/text/", 1).await;
    let chatwoot = &stack.chatwoot;
    // The bridge knows the reply's WhatsApp id once RyzeAPI answered; Chatwoot's copy has no source_id.
    eventually("the reply mapped", WAIT, || !stack.ryzeapi.sent_message_ids("suporte").is_empty()).await;
    let wa_id = stack.ryzeapi.sent_message_ids("suporte")[0].clone();
    stack.ryzeapi.send_event(
        "suporte",
        incoming("3EB0QAGT", MARIA, json!({"type": "text", "content": "sim!", "context": {"quotedMessageId": wa_id}})),
    );
    eventually("the quote", WAIT, || {
        chatwoot.messages(display_id).iter().any(|m| m.content.as_deref() == Some("sim!"))
    })
    .await;
    let quote = stack.chatwoot.messages(display_id).into_iter().find(|m| m.content.as_deref() == Some("sim!")).unwrap();
    assert_eq!(quote.content_attributes.get("in_reply_to"), Some(&json!(reply)), "{:?}", quote.content_attributes);
}

#[actix_web::test]
async fn quotes_reactions_and_edits_thread_on_chatwoot_4_8() {
    let (stack, _id) = connected(&[], "4.8.0", json!({})).await;
    let display_id = first_conversation(&stack).await;
    let original = stack.chatwoot.messages(display_id)[0].id;
    stack.ryzeapi.send_event(
        "suporte",
        incoming(
            "3EB0Q48A",
            MARIA,
            json!({"type": "text", "content": "citando", "context": {"quotedMessageId": "3EB0FIRST"}}),
        ),
    );
    stack.ryzeapi.send_event(
        "suporte",
        incoming("3EB0Q48B", MARIA, json!({"type": "reaction", "reaction": {"messageId": "3EB0FIRST", "emoji": "👍"}})),
    );
    wait_messages(&stack, 3).await;
    for message in &stack.chatwoot.messages(display_id)[1..] {
        assert_eq!(message.content_attributes.get("in_reply_to"), Some(&json!(original)), "{:?}", message.content);
    }
}

// --- #1: agent text from 4.9–4.12 ---------------------------------------------------------------

#[actix_web::test]
async fn agent_line_breaks_from_chatwoot_4_10_reach_whatsapp_without_backslashes() {
    let (stack, _id) = connected(&[], "4.10.1", json!({})).await;
    let display_id = first_conversation(&stack).await;
    // As the dashboard editor stores Shift+Enter, with the trailing newlines it leaves.
    stack.chatwoot.agent_reply(display_id, "linha 1\\\nlinha **2**\n\n", false).unwrap();
    let sent = wait_calls(&stack, "/api/message/text/", 1).await;
    assert_eq!(sent[0]["message"], "linha 1\nlinha *2*");
}

// --- #8, #9: deletes ---------------------------------------------------------------------------

#[actix_web::test]
async fn deleting_a_customer_message_never_deletes_anything_on_whatsapp() {
    let (stack, id) = connected(&[], "4.15.1", json!({})).await;
    let display_id = first_conversation(&stack).await;
    // An agent cleans up the customer's message in Chatwoot.
    let customer = stack.chatwoot.messages(display_id)[0].id;
    assert!(stack.chatwoot.agent_delete(customer));
    // The customer revokes another message of theirs on WhatsApp: the bridge deletes it in Chatwoot, and
    // Chatwoot's echo of that delete comes back as a webhook.
    stack.ryzeapi.send_event("suporte", text("3EB0DEL2", "vou apagar"));
    wait_messages(&stack, 2).await;
    stack.ryzeapi.send_event(
        "suporte",
        incoming("3EB0DEL3", MARIA, json!({"type": "message_revoke", "edit": {"original_id": "3EB0DEL2"}})),
    );
    let chatwoot = &stack.chatwoot;
    eventually("the revoked message deleted in Chatwoot", WAIT, || {
        chatwoot
            .messages(display_id)
            .iter()
            .filter(|m| m.content_attributes.get("deleted") == Some(&json!(true)))
            .count()
            == 2
    })
    .await;
    assert!(stack.chatwoot.webhooks_settled(WAIT).await);
    stack.wait_drained(&id).await;
    let revokes =
        stack.ryzeapi.requests("suporte").into_iter().filter(|c| c.path.starts_with("/api/chat/delete/")).count();
    assert_eq!(revokes, 0, "nothing revoked on WhatsApp");
}

#[actix_web::test]
async fn a_reply_deleted_before_its_webhook_ran_is_not_sent() {
    let (stack, id) = connected(&[], "4.15.1", json!({})).await;
    let display_id = first_conversation(&stack).await;
    stack.chatwoot.pause_webhooks();
    let reply = stack.chatwoot.agent_reply(display_id, "ops, conversa errada", false).unwrap();
    assert!(stack.chatwoot.agent_delete(reply));
    stack.chatwoot.resume_webhooks();
    assert!(stack.chatwoot.webhooks_settled(WAIT).await);
    let created = stack.chatwoot.webhook_deliveries_of("message_created");
    assert!(
        created.iter().any(|d| d.body["id"] == reply && d.body["content_attributes"]["deleted"] == true),
        "built when sent"
    );
    stack.wait_drained(&id).await;
    actix_web::rt::time::sleep(Duration::from_millis(800)).await;
    assert!(calls(&stack, "/api/message/").is_empty(), "{:?}", sent_texts(&stack));
}

// --- #9: late and concurrent webhooks ------------------------------------------------------------

#[actix_web::test]
async fn replies_reach_whatsapp_in_chatwoots_order_when_webhooks_arrive_shuffled() {
    let (stack, id) = connected(&[], "4.15.1", json!({})).await;
    let display_id = first_conversation(&stack).await;
    stack.chatwoot.set_webhook_shuffle(Some(Duration::from_millis(300)));
    for n in 0..6 {
        stack.chatwoot.agent_reply(display_id, &format!("r{n}"), false).unwrap();
    }
    wait_calls(&stack, "/api/message/text/", 6).await;
    stack.wait_drained(&id).await;
    assert_eq!(sent_texts(&stack), (0..6).map(|n| format!("r{n}")).collect::<Vec<_>>());
}

// --- #11: retry detection -------------------------------------------------------------------------

#[actix_web::test]
async fn an_agents_retry_resends_once_as_chatwoot_4_10_and_pr_15912_report_it() {
    for keeps_attributes in [false, true] {
        let (stack, id) = connected(&[], "4.15.1", json!({})).await;
        let display_id = first_conversation(&stack).await;
        stack.chatwoot.set_retry_keeps_attributes(keeps_attributes);
        let original = stack.chatwoot.messages(display_id)[0].id;
        stack.ryzeapi.fail_next_sends(1, 400);
        let reply = stack.chatwoot.agent_reply_to(display_id, "citando você", original).unwrap();
        let chatwoot = &stack.chatwoot;
        eventually("the failed tick", WAIT, || chatwoot.message(reply).is_some_and(|m| m.status == "failed")).await;
        stack.wait_drained(&id).await;
        assert!(stack.chatwoot.agent_retry(reply));
        wait_calls(&stack, "/api/message/text/", 1).await;
        assert!(stack.chatwoot.webhooks_settled(WAIT).await);
        stack.wait_drained(&id).await;
        actix_web::rt::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(calls(&stack, "/api/message/text/").len(), 1, "sent once (attributes kept: {keeps_attributes})");
        eventually("the sent tick", WAIT, || chatwoot.message(reply).is_some_and(|m| m.status == "sent")).await;
    }
}

// --- 404s never drop a message ---------------------------------------------------------------------

#[actix_web::test]
async fn a_contact_deleted_in_chatwoot_is_created_again_and_nothing_halts() {
    let (stack, id) = connected(&[], "4.15.1", json!({})).await;
    first_conversation(&stack).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0JOAO1", JOAO, "João", "oi"));
    wait_messages(&stack, 2).await;
    let maria = stack.chatwoot.contacts().into_iter().find(|c| c.identifier.as_deref() == Some(MARIA)).unwrap();
    stack.chatwoot.delete_contact_directly(maria.id);
    stack.ryzeapi.send_event("suporte", text("3EB0AGAIN", "voltei"));
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0JOAO2", JOAO, "João", "ainda aqui"));
    let chatwoot = &stack.chatwoot;
    eventually("both new messages", WAIT, || {
        copies_of(&stack, "3EB0AGAIN") == 1 && copies_of(&stack, "3EB0JOAO2") == 1
    })
    .await;
    assert_eq!(stack.view(&id).await["status"], "active");
    let contacts = chatwoot.contacts();
    assert!(contacts.iter().any(|c| c.identifier.as_deref() == Some(MARIA) && c.id != maria.id), "a new contact");
}

#[actix_web::test]
async fn messages_held_while_the_inbox_was_gone_land_in_the_new_inbox() {
    let (stack, id) = connected(&[], "4.15.1", json!({})).await;
    first_conversation(&stack).await;
    let old_inbox = stack.view(&id).await["inbox_id"].as_i64().unwrap();
    stack.chatwoot.delete_inbox_directly(old_inbox);
    stack.ryzeapi.send_event("suporte", text("3EB0HELD", "alguém aí?"));
    let bridge = &stack.bridge;
    eventually_async("the integration halted", WAIT, || async {
        bridge.call("GET", &format!("/v1/integrations/{id}"), None).await.1["status"] == "error"
    })
    .await;
    stack.activate("suporte").await;
    let chatwoot = &stack.chatwoot;
    eventually("the held message", WAIT, || copies_of(&stack, "3EB0HELD") == 1).await;
    let new_inbox = stack.view(&id).await["inbox_id"].as_i64().unwrap();
    assert_ne!(new_inbox, old_inbox);
    let conversation = chatwoot.conversations().into_iter().find(|c| c.inbox_id == new_inbox).unwrap();
    assert!(chatwoot.messages(conversation.display_id).iter().any(|m| m.source_id.as_deref() == Some("WAID:3EB0HELD")));
    assert_eq!(stack.view(&id).await["queues"]["failed"], 0);
}

// --- #15: the exactly-once look-up ----------------------------------------------------------------

#[actix_web::test]
async fn the_exactly_once_lookup_pages_past_the_last_twenty_messages() {
    let (stack, id) = connected(&[], "4.15.1", json!({})).await;
    let display_id = first_conversation(&stack).await;
    // The create lands, but after the bridge's timeout (1.5 s): its outcome is unknown to the bridge.
    stack.chatwoot.set_fault(Fault::Slow(Duration::from_millis(2000)));
    stack.ryzeapi.send_event("suporte", text("3EB0SLOW", "devagar"));
    let chatwoot = &stack.chatwoot;
    eventually("the slow create landed", WAIT, || copies_of(&stack, "3EB0SLOW") == 1).await;
    stack.chatwoot.set_fault(Fault::None);
    // Before the replay looks, 25 more messages bury it below Chatwoot's first page.
    for n in 0..25 {
        chatwoot.agent_reply(display_id, &format!("nota {n}"), true).unwrap();
    }
    stack.wait_drained(&id).await;
    assert_eq!(copies_of(&stack, "3EB0SLOW"), 1, "found, not created again");
    assert!(
        chatwoot.requests().iter().any(|r| r.method == "GET" && r.path.ends_with("/messages") && r.status == 200),
        "the replay looked"
    );
}

// --- #13: the contact-conflict path ----------------------------------------------------------------

#[actix_web::test]
async fn a_contact_chatwoot_already_links_to_the_chat_is_found_through_contact_inboxes() {
    let (stack, id) = connected(&[], "4.15.1", json!({})).await;
    let inbox_id = stack.view(&id).await["inbox_id"].as_i64().unwrap();
    // An agent's contact, with another name and no phone, already linked to this chat's JID in the inbox.
    let (status, created) = chatwoot_api(
        &stack,
        "POST",
        "/contacts",
        json!({"name": "Maria (CRM)", "identifier": MARIA, "inbox_id": inbox_id, "source_id": MARIA}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let existing = created["payload"]["contact"]["id"].as_i64().unwrap();
    stack.ryzeapi.send_event("suporte", text("3EB0LINK", "sou eu"));
    wait_messages(&stack, 1).await;
    let conversation = stack.chatwoot.conversations().into_iter().next().unwrap();
    assert_eq!(conversation.contact_id, existing);
    assert_eq!(stack.chatwoot.contact_count(), 1);
    assert!(stack.chatwoot.count("POST", &format!("/api/v1/accounts/{ACCOUNT}/contact_inboxes/filter")) >= 1);
}

/// A call to the fake Chatwoot's REST API as the account's administrator.
async fn chatwoot_api(stack: &Stack, method: &str, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{}/api/v1/accounts/{ACCOUNT}{path}", stack.chatwoot.url());
    let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
    let mut response = awc::Client::default()
        .request(method, url)
        .insert_header(("api_access_token", ADMIN))
        .send_json(&body)
        .await
        .unwrap();
    let bytes = response.body().await.unwrap();
    (response.status().as_u16(), serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

// --- #18a, #16: attachment types and Liquid --------------------------------------------------------

#[actix_web::test]
async fn an_image_jpg_is_posted_as_image_jpeg_and_previews() {
    use base64::Engine as _;
    let (stack, _id) = connected(&[], "4.15.1", json!({})).await;
    let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'];
    let image = json!({"type": "image", "media": {"mimeType": "image/jpg", "caption": "foto",
        "base64": base64::engine::general_purpose::STANDARD.encode(jpeg)}});
    stack.ryzeapi.send_event("suporte", incoming("3EB0JPG", MARIA, image));
    wait_messages(&stack, 1).await;
    let conversation = stack.chatwoot.conversations()[0].display_id;
    let message = stack.chatwoot.messages(conversation).remove(0);
    assert_eq!(message.attachments[0].file_type, "image", "{:?}", message.attachments);
    assert_eq!(message.attachments[0].content_type, "image/jpeg");
}

#[actix_web::test]
async fn liquid_typed_on_the_phone_is_kept_literal_in_chatwoot() {
    let (stack, _id) = connected(&[], "4.15.1", json!({})).await;
    let display_id = first_conversation(&stack).await;
    let typed = "Oi {{contact.name}}, o código é `{{x}}` e {% if %} fica";
    stack.ryzeapi.send_event("suporte", sim::outgoing_text_message("suporte", "3EB0LIQ", MARIA, typed, ""));
    wait_messages(&stack, 2).await;
    let message = stack.chatwoot.messages(display_id).pop().unwrap();
    assert_eq!(message.message_type, "outgoing");
    assert_eq!(message.content.as_deref(), Some(typed));
}

// --- RyzeAPI details ----------------------------------------------------------------------------

#[actix_web::test]
async fn typing_lasts_seconds_and_a_group_read_mark_names_the_author() {
    let (stack, _id) = connected(&[], "4.15.1", json!({})).await;
    let display_id = first_conversation(&stack).await;
    assert!(stack.chatwoot.agent_typing(display_id, true));
    let presence = wait_calls(&stack, "/api/chat/presence/", 1).await;
    assert_eq!(presence[0]["duration"], 10, "seconds: RyzeAPI caps it at 60");

    let group = sim::message(
        "suporte",
        json!({"id": "3EB0GRP1", "direction": "incoming", "chat": {"jid": GROUP, "name": "Equipe", "type": "group"},
            "sender": {"jid": JOAO, "name": "João"}, "message": {"type": "text", "content": "oi grupo"}}),
    );
    stack.ryzeapi.send_event("suporte", group);
    wait_messages(&stack, 2).await;
    let group_conversation =
        stack.chatwoot.conversations().into_iter().find(|c| c.display_id != display_id).unwrap().display_id;
    stack.chatwoot.agent_reply(group_conversation, "olá equipe", false).unwrap();
    let sim = &stack.ryzeapi;
    eventually("the group's read mark", WAIT, || {
        sim.requests("suporte").iter().any(|c| c.path.starts_with("/api/chat/markRead/") && c.body["number"] == GROUP)
    })
    .await;
    let mark = stack
        .ryzeapi
        .requests("suporte")
        .into_iter()
        .find(|c| c.path.starts_with("/api/chat/markRead/") && c.body["number"] == GROUP)
        .unwrap();
    assert_eq!(mark.status, 200, "{:?}", mark.body);
    assert_eq!(mark.body["sender"], JOAO);
    assert_eq!(mark.body["messageId"], "3EB0GRP1");
}
