//! Reading, pausing, resuming and deleting integrations; authentication, body limits and the operations
//! routes; integrations surviving a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use common::*;
use serde_json::{Value, json};

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

async fn activated(bridge: &Bridge, fake: &FakeChatwoot, instance: &str) -> Value {
    let (status, body) = bridge.call("POST", "/v1/integrations/activate", Some(activation(instance, fake.url()))).await;
    assert_eq!(status, 201, "{body}");
    body
}

#[actix_web::test]
async fn get_and_list_show_the_contract_view() {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    let fake = fake_chatwoot();
    let a = activated(&bridge, &fake, "alpha").await;
    activated(&bridge, &fake, "beta").await;

    let (status, view) = bridge.call("GET", &format!("/v1/integrations/{}", a["id"].as_str().unwrap()), None).await;
    assert_eq!(status, 200);
    for key in [
        "id",
        "instance",
        "status",
        "last_error",
        "inbox_id",
        "inbox_name",
        "chatwoot_base_url",
        "chatwoot_account_id",
        "sign_messages",
        "ignore_groups",
        "start_as_pending",
        "reopen_resolved",
        "connection",
        "queues",
        "totals",
        "created_at",
        "updated_at",
    ] {
        assert!(view.get(key).is_some(), "missing `{key}` in {view}");
    }
    assert_eq!(view["last_error"], "");
    assert_eq!(view["queues"], json!({"to_chatwoot_pending": 0, "to_whatsapp_pending": 0, "failed": 0}));
    assert!(view["created_at"].as_str().unwrap().ends_with('Z'));

    let (_, all) = bridge.call("GET", "/v1/integrations", None).await;
    let names: Vec<&str> =
        all["integrations"].as_array().unwrap().iter().map(|i| i["instance"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["alpha", "beta"]);
    let (_, one) = bridge.call("GET", "/v1/integrations?instance=beta", None).await;
    assert_eq!(one["integrations"].as_array().unwrap().len(), 1);
    assert_eq!(one["integrations"][0]["instance"], "beta");
    let (_, none) = bridge.call("GET", "/v1/integrations?instance=gamma", None).await;
    assert_eq!(none, json!({"integrations": []}));

    let (status, missing) = bridge.call("GET", "/v1/integrations/int_doesnotexist", None).await;
    assert_eq!(status, 404);
    assert_eq!(error_fields(&missing).0, "not_found");
}

#[actix_web::test]
async fn delete_removes_the_inbox_and_the_integration() {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    let fake = fake_chatwoot();
    let a = activated(&bridge, &fake, "alpha").await;
    let id = a["id"].as_str().unwrap();
    let (status, body) = bridge.call("DELETE", &format!("/v1/integrations/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"id": id, "deleted": true, "inbox_deleted": true, "detail": ""}));
    assert!(fake.inboxes().is_empty());
    let (status, _) = bridge.call("GET", &format!("/v1/integrations/{id}"), None).await;
    assert_eq!(status, 404);
    let (status, again) = bridge.call("DELETE", &format!("/v1/integrations/{id}"), None).await;
    assert_eq!(status, 404, "RyzeAPI treats 404 as already removed");
    assert_eq!(error_fields(&again).0, "not_found");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[actix_web::test]
async fn delete_with_keep_inbox_leaves_the_inbox() {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    let fake = fake_chatwoot();
    let a = activated(&bridge, &fake, "alpha").await;
    let (status, body) =
        bridge.call("DELETE", &format!("/v1/integrations/{}?keepInbox=true", a["id"].as_str().unwrap()), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["deleted"], true);
    assert_eq!(body["inbox_deleted"], false);
    assert_eq!(fake.inboxes().len(), 1);
    assert_eq!(fake.count("DELETE", "/api"), 0);
}

#[actix_web::test]
async fn delete_when_the_inbox_is_already_gone_counts_as_deleted() {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    let fake = fake_chatwoot();
    let a = activated(&bridge, &fake, "alpha").await;
    fake.delete_inbox_directly(a["inbox_id"].as_i64().unwrap());
    let (status, body) = bridge.call("DELETE", &format!("/v1/integrations/{}", a["id"].as_str().unwrap()), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["inbox_deleted"], true);
}

#[actix_web::test]
async fn delete_while_chatwoot_is_down_still_removes_the_integration() {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    let fake = fake_chatwoot();
    let a = activated(&bridge, &fake, "alpha").await;
    let id = a["id"].as_str().unwrap();
    fake.stop().await;
    let (status, body) = bridge.call("DELETE", &format!("/v1/integrations/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], true);
    assert_eq!(body["inbox_deleted"], false);
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with(&format!("Chatwoot is unreachable at {}", fake.url())), "{detail}");
    let (status, _) = bridge.call("GET", &format!("/v1/integrations/{id}"), None).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn delete_with_a_revoked_token_says_why_the_inbox_stayed() {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    let fake = fake_chatwoot();
    let a = activated(&bridge, &fake, "alpha").await;
    fake.revoke_token(ADMIN);
    let (status, body) = bridge.call("DELETE", &format!("/v1/integrations/{}", a["id"].as_str().unwrap()), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["inbox_deleted"], false);
    assert!(body["detail"].as_str().unwrap().contains("HTTP 401: Invalid Access Token"), "{body}");
    assert_eq!(fake.inboxes().len(), 1);
}

#[actix_web::test]
async fn pause_and_resume_answer_the_view() {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    let fake = fake_chatwoot();
    let a = activated(&bridge, &fake, "alpha").await;
    let id = a["id"].as_str().unwrap();
    let (status, paused) = bridge.call("POST", &format!("/v1/integrations/{id}/pause"), None).await;
    assert_eq!(status, 200);
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["id"], id);
    let (_, shown) = bridge.call("GET", &format!("/v1/integrations/{id}"), None).await;
    assert_eq!(shown["status"], "paused");
    let (status, resumed) = bridge.call("POST", &format!("/v1/integrations/{id}/resume"), None).await;
    assert_eq!(status, 200);
    assert_eq!(resumed["status"], "active");
    let (status, _) = bridge.call("POST", "/v1/integrations/int_nope/pause", None).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn every_management_route_needs_the_bridge_token() {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    let fake = fake_chatwoot();
    let a = activated(&bridge, &fake, "alpha").await;
    let id = a["id"].as_str().unwrap();
    let routes = [
        ("POST", "/v1/integrations/activate".to_owned()),
        ("GET", "/v1/integrations".to_owned()),
        ("GET", format!("/v1/integrations/{id}")),
        ("DELETE", format!("/v1/integrations/{id}")),
        ("POST", format!("/v1/integrations/{id}/pause")),
        ("POST", format!("/v1/integrations/{id}/resume")),
    ];
    let wrong = format!("{}x", bridge.token);
    for (method, path) in &routes {
        for bearer in [None, Some("nope"), Some(wrong.as_str()), Some("")] {
            let body = (*method == "POST").then(|| activation("alpha", fake.url()));
            let (status, answer) = request(&format!("{}{path}", bridge.url), method, bearer, body).await;
            assert_eq!(status, 401, "{method} {path} with {bearer:?}");
            assert_eq!(
                answer,
                json!({"error": {"code": "unauthorized", "message": "missing or invalid bridge token", "detail": "", "upstream_status": null}})
            );
        }
    }
    // Nothing changed.
    let (status, shown) = bridge.call("GET", &format!("/v1/integrations/{id}"), None).await;
    assert_eq!((status, shown["status"].as_str()), (200, Some("active")));
    assert_eq!(fake.inboxes().len(), 1);
}

#[actix_web::test]
async fn bodies_over_one_mebibyte_are_refused_with_413() {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    let fake = fake_chatwoot();
    let big = with(activation("alpha", fake.url()), json!({"padding": "x".repeat(1024 * 1024)}));
    let (status, body) = bridge.call("POST", "/v1/integrations/activate", Some(big)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_fields(&body).0, "payload_too_large");
    // Just under the limit is fine (unknown fields are ignored).
    let fits = with(activation("alpha", fake.url()), json!({"padding": "x".repeat(1000 * 1000)}));
    let (status, body) = bridge.call("POST", "/v1/integrations/activate", Some(fits)).await;
    assert_eq!(status, 201, "{body}");
}

#[actix_web::test]
async fn operations_routes_need_no_token_and_show_no_secret() {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    let fake = fake_chatwoot();
    activated(&bridge, &fake, "alpha").await;
    let b = activated(&bridge, &fake, "beta").await;
    bridge.call("POST", &format!("/v1/integrations/{}/pause", b["id"].as_str().unwrap()), None).await;

    let (status, health) = request(&format!("{}/healthz", bridge.url), "GET", None, None).await;
    assert_eq!((status, health), (200, json!({"status": "ok"})));
    let (status, ready) = request(&format!("{}/readyz", bridge.url), "GET", None, None).await;
    assert_eq!((status, ready), (200, json!({"status": "ready"})));

    let (status, metrics) = request(&format!("{}/metrics", bridge.url), "GET", None, None).await;
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap();
    assert!(text.contains("bridge_integrations{status=\"active\"} 1"), "{text}");
    assert!(text.contains("bridge_integrations{status=\"paused\"} 1"), "{text}");
    assert!(
        text.contains("bridge_upstream_calls_total{operation=\"create_inbox\",outcome=\"ok\",target=\"chatwoot\"} 2"),
        "{text}"
    );
    assert!(!text.contains(ADMIN) && !text.contains(&bridge.token));

    let (status, spec) = request(&format!("{}/v1/openapi.json", bridge.url), "GET", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(spec["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    for path in [
        "/v1/integrations/activate",
        "/v1/integrations",
        "/v1/integrations/{id}",
        "/v1/integrations/{id}/pause",
        "/v1/integrations/{id}/resume",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/openapi.json",
        "/v1/webhooks/chatwoot/{id}/{secret}",
    ] {
        assert!(spec["paths"].get(path).is_some(), "openapi lacks {path}");
    }

    let (status, unknown) = request(&format!("{}/v2/nothing", bridge.url), "GET", None, None).await;
    assert_eq!(status, 404);
    assert_eq!(error_fields(&unknown).0, "not_found");
}

#[actix_web::test]
async fn integrations_survive_a_restart() {
    let db = TestDb::new().await;
    let mut bridge = Bridge::start(BRIDGE, &db).await;
    let fake = fake_chatwoot();
    let a = activated(&bridge, &fake, "alpha").await;
    let id = a["id"].as_str().unwrap();
    bridge.call("POST", &format!("/v1/integrations/{id}/pause"), None).await;
    bridge.kill();
    bridge.restart().await;
    let (status, shown) = bridge.call("GET", &format!("/v1/integrations/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(shown["status"], "paused");
    assert_eq!(shown["inbox_id"], a["inbox_id"]);
    // Sealed tokens still open after the restart: re-activation and deletion reach Chatwoot with them.
    let (status, _) = bridge.call("DELETE", &format!("/v1/integrations/{id}"), None).await;
    assert_eq!(status, 200);
    assert!(fake.inboxes().is_empty());
}
