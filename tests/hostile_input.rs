//! Hostile input to every public route and the WebSocket: a clear error, no state change, no crash.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

async fn raw(url: &str, bearer: Option<&str>, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let mut req = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .post(url)
        .insert_header(("content-type", content_type.to_owned()));
    if let Some(token) = bearer {
        req = req.insert_header(("authorization", format!("Bearer {token}")));
    }
    let mut response = req.send_body(body).await.unwrap();
    let status = response.status().as_u16();
    let text = String::from_utf8_lossy(&response.body().limit(1 << 20).await.unwrap()).into_owned();
    (status, text)
}

fn deep_json(depth: usize) -> Vec<u8> {
    let mut s = "[".repeat(depth);
    s.push_str(&"]".repeat(depth));
    s.into_bytes()
}

#[actix_web::test]
async fn hostile_bodies_get_clear_errors_and_change_nothing() {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(2)).await;
    let before = stack.bridge.call("GET", "/v1/integrations", None).await.1;
    let chatwoot_calls = stack.chatwoot.requests().len();
    let activate = format!("{}/v1/integrations/activate", stack.bridge.url);
    let token = stack.bridge.token.clone();
    let inbox = stack.chatwoot.inboxes()[0].clone();
    let webhook = inbox
        .webhook_url
        .replace(&format!("http://127.0.0.1:{}", stack.bridge.url.rsplit(':').next().unwrap()), &stack.bridge.url);

    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("invalid UTF-8", vec![0x7B, 0xFF, 0xFE, 0x7D]),
        ("deep JSON", deep_json(100_000)),
        ("wrong types", json!({"instance": ["a"], "instanceToken": {}, "chatwootAccountId": "x"}).to_string().into_bytes()),
        ("null", b"null".to_vec()),
        ("empty", Vec::new()),
        ("path traversal", json!({"instance": "../../etc/passwd", "instanceToken": "t", "chatwootBaseUrl": "http://x", "chatwootAccountId": 1, "chatwootApiToken": "t"}).to_string().into_bytes()),
        ("control characters", json!({"instance": "a\u{0}b", "instanceToken": "t", "chatwootBaseUrl": "http://x\r\nHost: evil", "chatwootAccountId": 1, "chatwootApiToken": "t"}).to_string().into_bytes()),
    ];
    for (what, body) in &bodies {
        let (status, text) = raw(&activate, Some(&token), "application/json", body.clone()).await;
        assert_eq!(status, 400, "{what}: {text}");
        assert!(text.contains("\"code\":\"invalid_body\""), "{what}: {text}");
    }
    let (status, _) = raw(&activate, Some(&token), "application/json", vec![b' '; 2 * 1024 * 1024]).await;
    assert_eq!(status, 413, "huge body");

    // The webhook route (authenticated by its secret): unreadable bodies are refused, nothing is queued.
    for (what, body) in &bodies[..5] {
        let now = chrono::Utc::now().timestamp().to_string();
        let signature = ryze_fakes::chatwoot::sign_webhook(&inbox.secret, &now, body);
        let mut req = awc::Client::default().post(&webhook).insert_header(("content-type", "application/json"));
        req = req.insert_header(("x-chatwoot-timestamp", now)).insert_header(("x-chatwoot-signature", signature));
        let status = req.send_body(body.clone()).await.unwrap().status().as_u16();
        assert_eq!(status, 400, "webhook, {what}");
    }
    let traversal = format!("{}/v1/webhooks/chatwoot/..%2F..%2Fetc/passwd", stack.bridge.url);
    assert_eq!(raw(&traversal, None, "application/json", b"{}".to_vec()).await.0, 404);

    // The WebSocket: garbage frames are skipped, the link and the actor live on.
    for frame in [
        json!("x".repeat(100_000)),
        json!({"event": 1, "data": []}),
        json!({"event": "message.exchange", "data": {"message": {"type": 7}}}),
    ] {
        stack.ryzeapi.send_event("suporte", frame);
    }
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stack.ryzeapi.total_connects("suporte"), 1, "the link was never dropped");
    assert_eq!(
        stack.bridge.call("GET", "/v1/integrations", None).await.1["integrations"].as_array().unwrap().len(),
        before["integrations"].as_array().unwrap().len()
    );
    let view = stack.view(&id).await;
    assert_eq!(view["queues"]["to_whatsapp_pending"], 0);
    assert_eq!(stack.chatwoot.requests().len(), chatwoot_calls, "nothing reached Chatwoot");
    // Still working.
    stack.ryzeapi.send_event(
        "suporte",
        sim::text_message("suporte", "3EB0STILL", "5511999998888@s.whatsapp.net", "Maria", "ok"),
    );
    let chatwoot = &stack.chatwoot;
    eventually("still relaying", Duration::from_secs(5), || chatwoot.message_count() == 1).await;
}
