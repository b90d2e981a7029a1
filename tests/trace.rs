//! The message trace (`GET /v1/integrations/{id}/trace`): every stage of one message, and where it
//! stopped and why, for either direction; errors in the envelope; no secrets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

const MARIA: &str = "5511999998888@s.whatsapp.net";
const WAIT: Duration = Duration::from_secs(10);

async fn trace(stack: &Stack, id: &str, query: &str) -> (u16, Value) {
    stack.bridge.call("GET", &format!("/v1/integrations/{id}/trace?{query}"), None).await
}

fn stages(trace: &Value) -> Vec<String> {
    trace["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap().to_owned()).collect()
}

#[actix_web::test]
async fn a_relayed_message_shows_every_stage_and_its_chatwoot_ids() {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", WAIT).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0TRACE01", MARIA, "Maria", "olá"));
    let chatwoot = &stack.chatwoot;
    eventually("the message in Chatwoot", WAIT, || chatwoot.message_count() == 1).await;
    stack.wait_drained(&id).await;
    let (status, answer) = trace(&stack, &id, "waId=3EB0TRACE01").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["direction"], "to_chatwoot");
    assert_eq!(answer["summary"], "Relayed to Chatwoot.");
    let created = chatwoot.conversations()[0].display_id;
    let message = chatwoot.messages(created)[0].id;
    assert_eq!(answer["chatwoot_message_id"], message);
    let names = stages(&answer);
    for expected in ["received", "recorded", "creating", "created", "attempt", "processed"] {
        assert!(names.contains(&expected.to_owned()), "{expected} missing: {answer:#}");
    }
    let times: Vec<&str> = answer["stages"].as_array().unwrap().iter().map(|s| s["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_unstable();
    assert_eq!(times, sorted, "stages in time order");
    // The same message by its Chatwoot id.
    let (_, by_chatwoot) = trace(&stack, &id, &format!("chatwootMessageId={message}")).await;
    assert_eq!(by_chatwoot["direction"], "to_chatwoot");
    assert_eq!(by_chatwoot["whatsapp_ids"][0], "3EB0TRACE01");
    // The same for a person, from the command line.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ryze-integrations"))
        .args(["trace", &id, "3EB0TRACE01", "--url", &stack.bridge.url])
        .env_clear()
        .env("BRIDGE_TOKEN", &stack.bridge.token)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}{}", String::from_utf8_lossy(&output.stderr));
    assert!(printed.starts_with("Relayed to Chatwoot.\n"), "{printed}");
    assert!(printed.contains(&format!("created in Chatwoot as message {message}")), "{printed}");
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_ryze-integrations"))
        .args(["trace", &id])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "a missing argument is a usage error");
    let text = answer.to_string() + &by_chatwoot.to_string() + &printed;
    for secret in [ADMIN, "inst-token-suporte-SECRET", "olá"] {
        assert!(!text.contains(secret), "the trace shows {secret}");
    }
}

#[actix_web::test]
async fn a_message_chatwoot_keeps_refusing_says_why_and_when_it_is_tried_again() {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", WAIT).await;
    stack.chatwoot.fail_next("POST", "/contacts", 503, 1000);
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0TRACE02", MARIA, "Maria", "alô"));
    let bridge = &stack.bridge;
    let path = format!("/v1/integrations/{id}/trace?waId=3EB0TRACE02");
    eventually_async("a retried attempt in the trace", WAIT, || async {
        let answer = bridge.call("GET", &path, None).await.1;
        answer["summary"].as_str().is_some_and(|s| s.starts_with("Being retried"))
            && answer["stages"].as_array().is_some_and(|s| s.iter().any(|s| s["stage"] == "attempt"))
    })
    .await;
    let (_, answer) = trace(&stack, &id, "waId=3EB0TRACE02").await;
    let summary = answer["summary"].as_str().unwrap();
    assert!(summary.contains("503") && summary.contains("Next attempt at"), "{summary}");
    let attempt = answer["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "attempt").unwrap();
    let detail = attempt["detail"].as_str().unwrap();
    assert!(detail.contains("`retry`") && detail.contains("503") && detail.contains("next try in"), "{detail}");
    // The relay's log lines about it name the WhatsApp id: `grep` finds them.
    let log = stack.bridge.output();
    let retried: Vec<&str> = log.lines().filter(|l| l.contains("will be retried")).collect();
    assert!(
        !retried.is_empty()
            && retried
                .iter()
                .all(|l| l.contains("wa_id") && l.contains("=\u{1b}[0m3EB0TRACE02") || l.contains("wa_id=3EB0TRACE02")),
        "{retried:?}"
    );
    // Once Chatwoot answers, the same trace ends relayed.
    stack.chatwoot.clear_failures();
    eventually_async("relayed after the refusals", Duration::from_secs(20), || async {
        bridge.call("GET", &path, None).await.1["summary"] == "Relayed to Chatwoot."
    })
    .await;
}

#[actix_web::test]
async fn an_agent_reply_is_traced_to_its_whatsapp_id_and_an_unknown_one_says_what_to_check() {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", WAIT).await;
    stack.ryzeapi.send_event("suporte", sim::text_message("suporte", "3EB0TRACE03", MARIA, "Maria", "oi"));
    let chatwoot = &stack.chatwoot;
    eventually("the customer's message", WAIT, || chatwoot.message_count() == 1).await;
    let conversation = chatwoot.conversations()[0].display_id;
    let reply = chatwoot.agent_reply(conversation, "resposta", false).unwrap();
    let bridge = &stack.bridge;
    let path = format!("/v1/integrations/{id}/trace?chatwootMessageId={reply}");
    eventually_async("the reply sent", WAIT, || async {
        bridge.call("GET", &path, None).await.1["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("Sent to WhatsApp as"))
    })
    .await;
    let (_, answer) = trace(&stack, &id, &format!("chatwootMessageId={reply}")).await;
    assert_eq!(answer["direction"], "to_whatsapp");
    let sent = stack.ryzeapi.sent_message_ids("suporte");
    assert_eq!(answer["whatsapp_ids"], serde_json::json!(sent), "{answer:#}");
    let names = stages(&answer);
    for expected in ["received", "sending", "sent", "processed"] {
        assert!(names.contains(&expected.to_owned()), "{expected} missing: {answer:#}");
    }

    // Contract §2.5: an unknown message is a 404 `not_found`; its message says what to check.
    for unknown in ["waId=NEVERSEEN", "chatwootMessageId=987654"] {
        let (status, body) = trace(&stack, &id, unknown).await;
        assert_eq!(status, 404, "{unknown}: {body}");
        let (code, message, _, _) = error_fields(&body);
        assert_eq!(code, "not_found", "{body}");
        assert!(message.contains("no record"), "{body}");
    }

    // `waId` as openapi.json's pattern has it: 1–128 printable ASCII characters, no whitespace or controls.
    let long = format!("waId={}", "A".repeat(129));
    for bad in [
        "",
        "waId=",
        "waId=a&chatwootMessageId=1",
        "waId=3EB0%0BTRACE",
        "waId=%203EB0",
        "waId=3EB0%C3%A9",
        long.as_str(),
        "chatwootMessageId=-3",
        "chatwootMessageId=x",
        "other=1",
    ] {
        let (status, body) = trace(&stack, &id, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(error_fields(&body).0, "invalid_query", "{bad}");
    }
    let (status, body) = trace(&stack, "int_nope", "waId=x").await;
    assert_eq!(status, 404, "{body}");
}
