//! `POST /v1/integrations/activate` against the fake Chatwoot, over real sockets: success, re-activation
//! and every row of the contract's error table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

async fn setup() -> (TestDb, Bridge, FakeChatwoot) {
    let db = TestDb::new().await;
    let bridge = Bridge::start(BRIDGE, &db).await;
    (db, bridge, fake_chatwoot())
}

async fn activate(bridge: &Bridge, body: Value) -> (u16, Value) {
    bridge.call("POST", "/v1/integrations/activate", Some(body)).await
}

#[actix_web::test]
async fn activation_creates_an_api_inbox_and_stores_the_integration() {
    let (_db, bridge, fake) = setup().await;
    let (status, body) = activate(&bridge, activation("suporte", fake.url())).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("int_") && id.len() == 24, "{id}");
    assert_eq!(body["instance"], "suporte");
    assert_eq!(body["status"], "active");
    assert_eq!(body["inbox_name"], "WhatsApp - suporte");
    assert_eq!(body["message"], "chatwoot integration activated");

    let inboxes = fake.inboxes();
    assert_eq!(inboxes.len(), 1);
    let inbox = &inboxes[0];
    assert_eq!(body["inbox_id"], inbox.id);
    assert_eq!(inbox.account_id, ACCOUNT);
    let prefix = format!("http://bridge.test:8080/v1/webhooks/chatwoot/{id}/");
    assert!(inbox.webhook_url.starts_with(&prefix), "{}", inbox.webhook_url);
    let secret = &inbox.webhook_url[prefix.len()..];
    assert!(
        secret.len() >= 32 && secret.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{secret}"
    );

    let (status, shown) = bridge.call("GET", &format!("/v1/integrations/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(shown["instance"], "suporte");
    assert_eq!(shown["chatwoot_base_url"], fake.url(), "one trailing slash removed");
    assert_eq!(shown["chatwoot_account_id"], ACCOUNT);
    assert_eq!(shown["chatwoot_version"], "4.15.1");
    assert_eq!(shown["ryzeapi_url"], "http://ryzeapi.test:8080");
    assert_eq!(shown["sign_messages"], false);
    // No RyzeAPI listens at that URL: the link keeps trying.
    let state = shown["connection"]["state"].as_str().unwrap();
    assert!(state == "connecting" || state == "disconnected", "{state}");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[actix_web::test]
async fn defaults_apply_inbox_name_and_ryzeapi_url() {
    let (_db, bridge, fake) = setup().await;
    let body = with(
        activation("vendas", fake.url()),
        json!({"inboxName": null, "ryzeapiUrl": null, "signMessages": true, "startAsPending": true}),
    );
    let (status, created) = activate(&bridge, body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["inbox_name"], "vendas");
    let (_, shown) = bridge.call("GET", &format!("/v1/integrations/{}", created["id"].as_str().unwrap()), None).await;
    assert_eq!(shown["ryzeapi_url"], "http://127.0.0.1:9", "RYZEAPI_URL default");
    assert_eq!(shown["sign_messages"], true);
    assert_eq!(shown["start_as_pending"], true);
    assert_eq!(shown["ignore_groups"], false);
}

#[actix_web::test]
async fn reactivation_updates_in_place_and_reuses_the_inbox() {
    let (_db, bridge, fake) = setup().await;
    let (status, first) = activate(&bridge, activation("suporte", fake.url())).await;
    assert_eq!(status, 201);
    let changed = with(
        activation("suporte", fake.url()),
        json!({"inboxName": "Renamed", "ignoreGroups": true, "instanceToken": "new-instance-token"}),
    );
    let (status, second) = activate(&bridge, changed).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["inbox_id"], first["inbox_id"]);
    assert_eq!(second["inbox_name"], "Renamed");
    let inboxes = fake.inboxes();
    assert_eq!(inboxes.len(), 1, "no second inbox");
    assert_eq!(inboxes[0].name, "Renamed");
    assert_eq!(fake.count("PATCH", "/api/v1/accounts/5/inboxes/"), 1);
    let (_, shown) = bridge.call("GET", &format!("/v1/integrations/{}", first["id"].as_str().unwrap()), None).await;
    assert_eq!(shown["ignore_groups"], true);
    let (_, list) = bridge.call("GET", "/v1/integrations", None).await;
    assert_eq!(list["integrations"].as_array().unwrap().len(), 1);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[actix_web::test]
async fn reactivation_creates_a_new_inbox_when_the_old_one_was_deleted_in_chatwoot() {
    let (_db, bridge, fake) = setup().await;
    let (_, first) = activate(&bridge, activation("suporte", fake.url())).await;
    fake.delete_inbox_directly(first["inbox_id"].as_i64().unwrap());
    let (status, second) = activate(&bridge, activation("suporte", fake.url())).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["id"], first["id"]);
    assert_ne!(second["inbox_id"], first["inbox_id"]);
    assert_eq!(fake.inboxes().len(), 1);
    assert_eq!(fake.inboxes()[0].id, second["inbox_id"].as_i64().unwrap());
}

#[actix_web::test]
async fn concurrent_activations_of_one_instance_create_one_inbox() {
    let (_db, bridge, fake) = setup().await;
    let calls = (0..6).map(|_| activate(&bridge, activation("suporte", fake.url())));
    let results = futures_util::future::join_all(calls).await;
    let mut statuses: Vec<u16> = results.iter().map(|(s, _)| *s).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 201]);
    assert_eq!(fake.inboxes().len(), 1);
    let ids: std::collections::HashSet<&str> = results.iter().map(|(_, b)| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1);
}

#[actix_web::test]
async fn invalid_bodies_are_refused_and_change_nothing() {
    let (_db, bridge, fake) = setup().await;
    let base = activation("suporte", fake.url());
    let cases: Vec<(Value, &str)> = vec![
        (with(base.clone(), json!({"instance": null})), "invalid body: missing field `instance`"),
        (with(base.clone(), json!({"instance": "has space"})), "invalid body: `instance` must be 1–64"),
        (with(base.clone(), json!({"instanceToken": ""})), "invalid body: `instanceToken` must not be empty"),
        (with(base.clone(), json!({"chatwootBaseUrl": "chatwoot.example.com"})), "invalid body: `chatwootBaseUrl`:"),
        (
            with(base.clone(), json!({"chatwootAccountId": -1})),
            "invalid body: `chatwootAccountId` must be a positive integer",
        ),
        (with(base.clone(), json!({"chatwootApiToken": 42})), "invalid body: `chatwootApiToken` must be a string"),
        (with(base.clone(), json!({"reopenResolved": "no"})), "invalid body: `reopenResolved` must be true or false"),
        (json!([1, 2]), "invalid body: the body must be a JSON object"),
    ];
    for (body, expected) in cases {
        let (status, answer) = activate(&bridge, body).await;
        assert_eq!(status, 400, "{answer}");
        let (code, message, _, upstream) = error_fields(&answer);
        assert_eq!(code, "invalid_body");
        assert!(message.starts_with(expected), "{message}");
        assert_eq!(upstream, Value::Null);
    }
    // Malformed JSON, sent raw.
    let response = awc::Client::default()
        .post(format!("{}/v1/integrations/activate", bridge.url))
        .insert_header(("authorization", format!("Bearer {}", bridge.token)))
        .insert_header(("content-type", "application/json"))
        .send_body("{\"instance\": ")
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(fake.requests().is_empty(), "invalid input must not reach Chatwoot");
    let (_, list) = bridge.call("GET", "/v1/integrations", None).await;
    assert_eq!(list["integrations"], json!([]));
}

#[actix_web::test]
async fn missing_ryzeapi_url_without_default_is_invalid() {
    let db = TestDb::new().await;
    let bridge = Bridge::start_with(
        BRIDGE,
        &db,
        BridgeOptions { extra_env: vec![("RYZEAPI_URL".into(), String::new())], ..Default::default() },
    )
    .await;
    let fake = fake_chatwoot();
    let (status, body) = activate(&bridge, with(activation("suporte", fake.url()), json!({"ryzeapiUrl": null}))).await;
    assert_eq!(status, 400, "{body}");
    let (code, message, _, _) = error_fields(&body);
    assert_eq!(code, "invalid_body");
    assert!(message.contains("ryzeapiUrl"), "{message}");
    assert!(fake.inboxes().is_empty());
}

/// Runs one activation expected to fail and checks the error row; nothing may be stored or left behind.
/// One row of the error table as the answer must show it.
struct Row<'a> {
    status: u16,
    code: &'a str,
    message: &'a str,
    detail: &'a str,
    upstream: Value,
}

async fn expect_row(bridge: &Bridge, fake: &FakeChatwoot, body: Value, row: Row<'_>) {
    let Row { status, code, message: message_start, detail, upstream } = row;
    let (got, answer) = activate(bridge, body).await;
    assert_eq!(got, status, "{answer}");
    let (got_code, message, got_detail, got_upstream) = error_fields(&answer);
    assert_eq!(got_code, code);
    assert!(message.starts_with(message_start), "{message}");
    assert!(message.ends_with(&format!("Detail: {got_detail}")), "{message}");
    assert!(got_detail.contains(detail), "detail `{got_detail}` should contain `{detail}`");
    assert_eq!(got_upstream, upstream);
    assert!(fake.inboxes().is_empty(), "nothing left in Chatwoot");
    let (_, list) = bridge.call("GET", "/v1/integrations", None).await;
    assert_eq!(list["integrations"], json!([]), "nothing stored");
}

#[actix_web::test]
async fn chatwoot_error_rows() {
    let (_db, bridge, fake) = setup().await;
    let url = fake.url().to_owned();
    let base = activation("suporte", &url);

    expect_row(
        &bridge,
        &fake,
        with(base.clone(), json!({"chatwootApiToken": "wrong-token-XYZ"})),
        Row {
            status: 401,
            code: "chatwoot_unauthorized",
            message: "Chatwoot rejected the API token — verify chatwootApiToken. Detail: ",
            detail: "HTTP 401: Invalid Access Token",
            upstream: json!(401),
        },
    )
    .await;

    fake.add_bot("bot-token-123456", ACCOUNT);
    expect_row(
        &bridge,
        &fake,
        with(base.clone(), json!({"chatwootApiToken": "bot-token-123456"})),
        Row {
            status: 401,
            code: "chatwoot_unauthorized",
            message: "Chatwoot rejected the API token",
            detail: "not authorized for bots",
            upstream: json!(401),
        },
    )
    .await;

    expect_row(
        &bridge,
        &fake,
        with(base.clone(), json!({"chatwootApiToken": AGENT})),
        Row {
            status: 403,
            code: "chatwoot_forbidden",
            message: "Chatwoot denied the request — verify the API token has admin scope on account 5. Detail: ",
            detail: "`agent` on account 5",
            upstream: Value::Null,
        },
    )
    .await;

    fake.add_account(6, "Other");
    fake.add_user("other-account-admin", &[(6, Role::Administrator)]);
    expect_row(
        &bridge,
        &fake,
        with(base.clone(), json!({"chatwootApiToken": "other-account-admin"})),
        Row {
            status: 403,
            code: "chatwoot_forbidden",
            message: "Chatwoot denied the request — verify the API token has admin scope on account 5.",
            detail: "HTTP 401: You are not authorized to access this account",
            upstream: json!(401),
        },
    )
    .await;

    expect_row(&bridge, &fake, with(base.clone(), json!({"chatwootAccountId": 999})), Row { status: 400, code: "chatwoot_not_found", message: &format!("Chatwoot account or endpoint not found — verify chatwootBaseUrl ({url}) and chatwootAccountId (999). Detail: "), detail: "HTTP 404: Resource could not be found", upstream: json!(404) }).await;

    expect_row(
        &bridge,
        &fake,
        with(base.clone(), json!({"chatwootBaseUrl": format!("{url}/not-chatwoot")})),
        Row {
            status: 400,
            code: "chatwoot_not_found",
            message: "Chatwoot account or endpoint not found",
            detail: "HTTP 404",
            upstream: json!(404),
        },
    )
    .await;

    fake.limit_inboxes(ACCOUNT, 0);
    expect_row(
        &bridge,
        &fake,
        base.clone(),
        Row {
            status: 400,
            code: "chatwoot_invalid_request",
            message: "Chatwoot rejected the request as invalid — creating the inbox. Detail: ",
            detail: "HTTP 402: Account limit exceeded. Upgrade to a higher plan",
            upstream: json!(402),
        },
    )
    .await;
    fake.limit_inboxes(ACCOUNT, 100);

    fake.set_fault(Fault::Status(503));
    expect_row(&bridge, &fake, base.clone(), Row { status: 502, code: "chatwoot_unreachable", message: &format!("Chatwoot is unreachable at {url} — verify chatwootBaseUrl and that the host is reachable from the server. Detail: "), detail: "HTTP 503", upstream: json!(503) }).await;

    fake.set_fault(Fault::Slow(Duration::from_millis(2500)));
    expect_row(
        &bridge,
        &fake,
        base.clone(),
        Row {
            status: 502,
            code: "chatwoot_unreachable",
            message: "Chatwoot is unreachable at",
            detail: "timed out after 1500 ms",
            upstream: Value::Null,
        },
    )
    .await;
    fake.set_fault(Fault::None);

    fake.suspend_account(ACCOUNT);
    expect_row(
        &bridge,
        &fake,
        base.clone(),
        Row {
            status: 403,
            code: "chatwoot_forbidden",
            message: "Chatwoot denied the request",
            detail: "Account is suspended",
            upstream: json!(401),
        },
    )
    .await;

    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[actix_web::test]
async fn unreachable_chatwoot_is_a_502_with_the_transport_error() {
    let (_db, bridge, fake) = setup().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    expect_row(
        &bridge,
        &fake,
        activation("suporte", &url),
        Row {
            status: 502,
            code: "chatwoot_unreachable",
            message: &format!("Chatwoot is unreachable at {url} — verify chatwootBaseUrl"),
            detail: "onnect",
            upstream: Value::Null,
        },
    )
    .await;
}

#[actix_web::test]
async fn persist_failure_is_a_500_and_deletes_the_new_inbox() {
    use sea_orm::ConnectionTrait as _;
    let (db, bridge, fake) = setup().await;
    let conn = db.connect().await;
    let sabotage = if db.is_postgres() {
        vec![
            "CREATE FUNCTION refuse_insert() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full (injected)'; END; $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse BEFORE INSERT ON integrations FOR EACH ROW EXECUTE FUNCTION refuse_insert()",
        ]
    } else {
        vec![
            "CREATE TRIGGER refuse BEFORE INSERT ON integrations BEGIN SELECT RAISE(ABORT, 'disk full (injected)'); END",
        ]
    };
    for statement in sabotage {
        conn.execute_unprepared(statement).await.unwrap();
    }
    let (status, body) = activate(&bridge, activation("suporte", fake.url())).await;
    assert_eq!(status, 500, "{body}");
    let (code, message, _, upstream) = error_fields(&body);
    assert_eq!(code, "persist_failed");
    assert!(message.starts_with("chatwoot integration failed: persist integration: "), "{message}");
    assert!(message.contains("disk full (injected)"), "{message}");
    assert_eq!(upstream, Value::Null);
    assert_eq!(fake.count("POST", "/api/v1/accounts/5/inboxes"), 1, "the inbox was created…");
    assert_eq!(fake.count("DELETE", "/api/v1/accounts/5/inboxes/"), 1, "…and deleted again");
    assert!(fake.inboxes().is_empty());
}

#[actix_web::test]
async fn not_ready_while_the_database_is_not_there_yet() {
    // A "database" that accepts connections and never answers: boot waits on it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let db_url = format!("postgres://postgres@{}/x", silent.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("BRIDGE_DATA_DIR".to_owned(), dir.path().display().to_string()),
        ("DATABASE_URL".to_owned(), db_url),
        ("BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ("BRIDGE_TOKEN".to_owned(), "test-bridge-token-0123456789".to_owned()),
    ];
    let (mut child, url, _output) = spawn_process(BRIDGE, env);
    let url = url.expect("bridge listens before the database is ready");
    let fake = fake_chatwoot();
    let (status, body) = request(
        &format!("{url}/v1/integrations/activate"),
        "POST",
        Some("test-bridge-token-0123456789"),
        Some(activation("suporte", fake.url())),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    let (code, message, _, _) = error_fields(&body);
    assert_eq!((code.as_str(), message.as_str()), ("not_ready", "bridge is starting"));
    let (status, _) = request(&format!("{url}/readyz"), "GET", None, None).await;
    assert_eq!(status, 503);
    let (status, _) = request(&format!("{url}/healthz"), "GET", None, None).await;
    assert_eq!(status, 200, "the process is up");
    assert!(fake.requests().is_empty());
    let _ = child.kill();
    let _ = child.wait();
}
