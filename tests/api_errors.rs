//! The HTTP API keeps its own promises: query, path and body errors answer in the error envelope with a
//! stable code, and a known path asked with a method it does not serve answers 405 with `Allow`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

/// One raw request: `(status, Allow header, JSON body)`.
async fn raw(bridge: &Bridge, method: &str, path: &str, body: Option<&'static str>) -> (u16, Option<String>, Value) {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let req = client
        .request(method.parse().unwrap(), format!("{}{path}", bridge.url))
        .insert_header(("authorization", format!("Bearer {}", bridge.token)));
    let mut response = match body {
        Some(body) => req.insert_header(("content-type", "application/json")).send_body(body).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let status = response.status().as_u16();
    let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.body().await.unwrap();
    let body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{method} {path}: not JSON ({status}): {}", String::from_utf8_lossy(&bytes)));
    assert_eq!(content_type.as_deref(), Some("application/json"), "{method} {path}");
    (status, allow, body)
}

#[actix_web::test]
async fn query_errors_answer_in_the_envelope() {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    let (status, _, body) =
        raw(&bridge, "DELETE", "/v1/integrations/int_aaaaaaaaaaaaaaaaaaaa?keepInbox=null", None).await;
    assert_eq!(status, 400, "{body}");
    let (code, message, detail, upstream) = error_fields(&body);
    assert_eq!(code, "invalid_query");
    assert!(message.starts_with("invalid query string: ") && message.contains("`true` or `false`"), "{message}");
    assert!(!message.contains("Query deserialize error"), "{message}");
    assert_eq!((detail.as_str(), upstream), ("", Value::Null));

    // A good query keeps working.
    let (status, _, body) = raw(&bridge, "GET", "/v1/integrations?instance=a", None).await;
    assert_eq!((status, body), (200, serde_json::json!({"integrations": []})));
}

#[actix_web::test]
async fn path_errors_answer_in_the_envelope() {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    // Not UTF-8 once percent-decoded: the path cannot become the route's `String`.
    let (status, _, body) = raw(&bridge, "GET", "/v1/integrations/%FF%FE", None).await;
    let (code, _, _, _) = error_fields(&body);
    assert!(
        (status, code.as_str()) == (400, "invalid_path") || (status, code.as_str()) == (404, "not_found"),
        "{status} {body}"
    );
    // Unknown paths stay 404 `not_found`.
    let (status, allow, body) = raw(&bridge, "GET", "/v1/nothing-here", None).await;
    assert_eq!((status, allow), (404, None));
    assert_eq!(error_fields(&body).0, "not_found");
}

#[actix_web::test]
async fn a_known_path_with_another_method_answers_405_with_allow() {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    for (method, path, allowed) in [
        ("PUT", "/v1/integrations/int_aaaaaaaaaaaaaaaaaaaa", "GET, DELETE"),
        ("POST", "/v1/integrations", "GET"),
        ("GET", "/v1/integrations/activate", "POST"),
        ("DELETE", "/v1/integrations/int_aaaaaaaaaaaaaaaaaaaa/pause", "POST"),
        ("PATCH", "/v1/integrations/int_aaaaaaaaaaaaaaaaaaaa/merges", "GET"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/metrics", "GET"),
        ("PUT", "/v1/openapi.json", "GET"),
        ("GET", "/v1/webhooks/chatwoot/int_aaaaaaaaaaaaaaaaaaaa/secret", "POST"),
    ] {
        let (status, allow, body) = raw(&bridge, method, path, None).await;
        assert_eq!(status, 405, "{method} {path}: {body}");
        let mut listed: Vec<String> = allow.unwrap().split(',').map(|m| m.trim().to_owned()).collect();
        let mut expected: Vec<String> = allowed.split(", ").map(str::to_owned).collect();
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected, "{method} {path}");
        let (code, message, _, _) = error_fields(&body);
        assert_eq!((code.as_str(), message.as_str()), ("method_not_allowed", "method not allowed"));
    }
}

#[actix_web::test]
async fn json_errors_answer_in_the_envelope() {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    for body in ["{not json", "[1,2]", "{\"instance\": 5}", ""] {
        let (status, _, answer) = raw(&bridge, "POST", "/v1/integrations/activate", Some(body)).await;
        assert_eq!(status, 400, "{body:?}: {answer}");
        let (code, message, _, upstream) = error_fields(&answer);
        assert_eq!(code, "invalid_body", "{body:?}");
        assert!(message.starts_with("invalid body: "), "{message}");
        assert_eq!(upstream, Value::Null);
    }
}
