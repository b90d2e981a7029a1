//! The fake Chatwoot answers as the real one does (statuses and bodies from the reference, §1–2). If the
//! fake drifted from Chatwoot, every other test would be testing against fiction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use common::*;
use serde_json::{Value, json};

async fn cw(fake: &FakeChatwoot, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = awc::Client::default();
    let mut req = client.request(method.parse().unwrap(), format!("{}{path}", fake.url()));
    if let Some(token) = token {
        req = req.insert_header(("api_access_token", token));
    }
    let mut res = match body {
        Some(b) => req.send_json(&b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let bytes = res.body().await.unwrap();
    (
        res.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
    )
}

#[actix_web::test]
async fn authentication_and_account_errors() {
    let fake = fake_chatwoot();
    assert_eq!(
        cw(&fake, "GET", "/api/v1/profile", None, None).await,
        (401, json!({"errors": ["You need to sign in or sign up before continuing."]}))
    );
    assert_eq!(
        cw(&fake, "GET", "/api/v1/profile", Some("nope"), None).await,
        (401, json!({"error": "Invalid Access Token"}))
    );
    fake.add_bot("bot", ACCOUNT);
    assert_eq!(
        cw(&fake, "GET", "/api/v1/profile", Some("bot"), None).await,
        (401, json!({"error": "Access to this endpoint is not authorized for bots"}))
    );
    assert_eq!(
        cw(&fake, "GET", "/api/v1/accounts/77/inboxes", Some(ADMIN), None).await,
        (404, json!({"error": "Resource could not be found"}))
    );
    fake.add_account(8, "Other");
    assert_eq!(
        cw(&fake, "GET", "/api/v1/accounts/8/inboxes", Some(ADMIN), None).await,
        (401, json!({"error": "You are not authorized to access this account"}))
    );
    let (status, profile) = cw(&fake, "GET", "/api/v1/profile", Some(AGENT), None).await;
    assert_eq!(status, 200);
    assert_eq!(profile["accounts"][0]["id"], ACCOUNT);
    assert_eq!(profile["accounts"][0]["role"], "agent");
    let (status, info) = cw(&fake, "GET", "/api", None, None).await;
    assert_eq!((status, info["version"].as_str()), (200, Some("4.15.1")));
    let (status, page) = cw(&fake, "GET", "/no/such/route", Some(ADMIN), None).await;
    assert_eq!(status, 404);
    assert!(page.as_str().unwrap().contains("<html>"), "Rails' HTML 404 page");
}

#[actix_web::test]
async fn inbox_lifecycle_and_policy() {
    let fake = fake_chatwoot();
    let body = json!({"name": "WA", "channel": {"type": "api", "webhook_url": "http://b/x"}});
    assert_eq!(
        cw(&fake, "POST", "/api/v1/accounts/5/inboxes", Some(AGENT), Some(body.clone())).await,
        (401, json!({"error": "You are not authorized to do this action"})),
        "Chatwoot answers 401, not 403, to a non-admin"
    );
    let (status, inbox) = cw(&fake, "POST", "/api/v1/accounts/5/inboxes", Some(ADMIN), Some(body.clone())).await;
    assert_eq!(status, 200, "{inbox}");
    assert_eq!(inbox["channel_type"], "Channel::Api");
    assert_eq!(inbox["webhook_url"], "http://b/x");
    assert!(inbox["secret"].is_string() && inbox["hmac_token"].is_string() && inbox["inbox_identifier"].is_string());
    let id = inbox["id"].as_i64().unwrap();
    let (status, list) = cw(&fake, "GET", "/api/v1/accounts/5/inboxes", Some(ADMIN), None).await;
    assert_eq!((status, list["payload"].as_array().unwrap().len()), (200, 1));
    let (status, patched) =
        cw(&fake, "PATCH", &format!("/api/v1/accounts/5/inboxes/{id}"), Some(ADMIN), Some(json!({"name": "WB"}))).await;
    assert_eq!((status, patched["name"].as_str()), (200, Some("WB")));
    assert_eq!(
        cw(
            &fake,
            "POST",
            "/api/v1/accounts/5/inboxes",
            Some(ADMIN),
            Some(json!({"name": " ", "channel": {"type": "api"}}))
        )
        .await,
        (422, json!({"message": "Name can't be blank", "attributes": ["name"]}))
    );
    assert_eq!(
        cw(&fake, "DELETE", &format!("/api/v1/accounts/5/inboxes/{id}"), Some(ADMIN), None).await,
        (200, json!({"message": "Your inbox deletion request will be processed in some time."}))
    );
    assert_eq!(cw(&fake, "GET", &format!("/api/v1/accounts/5/inboxes/{id}"), Some(ADMIN), None).await.0, 404);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[actix_web::test]
async fn older_versions_have_no_signing_secret_and_misshapen_requests_are_flagged() {
    let fake = fake_chatwoot();
    fake.set_version("4.12.0");
    let (_, inbox) = cw(
        &fake,
        "POST",
        "/api/v1/accounts/5/inboxes",
        Some(ADMIN),
        Some(json!({"name": "WA", "channel": {"type": "api", "callback_url": "http://b"}})),
    )
    .await;
    assert!(inbox.get("secret").is_none(), "no inbox signing before 4.13");
    let violations = fake.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("callback_url"), "{violations:?}");
}
