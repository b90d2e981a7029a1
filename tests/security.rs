//! Secrets never reach logs, responses or the database in clear; sealed tokens need the right key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use common::*;
use serde_json::{Value, json};

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

const CW_TOKEN: &str = "cw-SECRET-token-7f3a9c";
const INSTANCE_TOKEN: &str = "inst-SECRET-token-52be11";

fn assert_absent(haystack: &str, secrets: &[&str], what: &str) {
    for secret in secrets {
        assert!(!haystack.contains(secret), "{what} contains the secret `{secret}`:\n{haystack}");
    }
}

#[actix_web::test]
async fn no_secret_in_responses_logs_or_database() {
    let db = TestDb::new().await;
    // No BRIDGE_TOKEN: the bridge generates one and prints it exactly once.
    let mut bridge = Bridge::start_with(BRIDGE, &db, BridgeOptions { token: None, extra_env: vec![] }).await;
    let fake = fake_chatwoot();
    fake.add_user(CW_TOKEN, &[(ACCOUNT, Role::Administrator)]);
    let body =
        with(activation("suporte", fake.url()), json!({"chatwootApiToken": CW_TOKEN, "instanceToken": INSTANCE_TOKEN}));

    let mut responses: Vec<Value> = Vec::new();
    let (status, created) = bridge.call("POST", "/v1/integrations/activate", Some(body.clone())).await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap().to_owned();
    responses.push(created);
    responses.push(bridge.call("POST", "/v1/integrations/activate", Some(body.clone())).await.1);
    responses.push(bridge.call("GET", &format!("/v1/integrations/{id}"), None).await.1);
    responses.push(bridge.call("GET", "/v1/integrations", None).await.1);
    responses.push(bridge.call("POST", &format!("/v1/integrations/{id}/pause"), None).await.1);
    responses.push(bridge.call("POST", &format!("/v1/integrations/{id}/resume"), None).await.1);
    // Error paths: a wrong token, a slow and a failing Chatwoot.
    responses.push(
        bridge
            .call(
                "POST",
                "/v1/integrations/activate",
                Some(with(body.clone(), json!({"chatwootApiToken": format!("{CW_TOKEN}-revoked")}))),
            )
            .await
            .1,
    );
    fake.set_fault(Fault::Status(500));
    responses.push(bridge.call("POST", "/v1/integrations/activate", Some(body.clone())).await.1);
    fake.set_fault(Fault::None);
    for path in ["/metrics", "/readyz", "/healthz", "/v1/openapi.json"] {
        responses.push(request(&format!("{}{path}", bridge.url), "GET", None, None).await.1);
    }

    let inbox = fake.inboxes().into_iter().next().unwrap();
    let webhook_secret = inbox.webhook_url.rsplit('/').next().unwrap().to_owned();
    let signing_secret = inbox.secret.clone();
    let bridge_token = bridge.token.clone();
    let secrets = [CW_TOKEN, INSTANCE_TOKEN, webhook_secret.as_str(), signing_secret.as_str(), bridge_token.as_str()];

    let all_responses: String = responses.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    assert_absent(&all_responses, &secrets, "a response");

    let output = bridge.output();
    let announcement = format!("shown only this once): {bridge_token}");
    assert_eq!(output.matches(bridge_token.as_str()).count(), 1, "the generated token is printed once:\n{output}");
    assert!(output.contains(&announcement), "{output}");
    assert_absent(&output.replace(&announcement, ""), &secrets, "the log (debug level)");

    // At rest: nothing in clear in the database.
    let dump = database_dump(&db).await;
    assert!(!dump.is_empty());
    assert_absent(&dump, &[CW_TOKEN, INSTANCE_TOKEN, webhook_secret.as_str(), signing_secret.as_str()], "the database");

    // Deleting logs and calls Chatwoot too.
    let (_, deleted) = bridge.call("DELETE", &format!("/v1/integrations/{id}"), None).await;
    assert_absent(&deleted.to_string(), &secrets, "the delete answer");
    bridge.restart().await;
    let after_restart = bridge.output();
    assert_absent(&after_restart, &secrets, "the log after a restart (the token is not printed again)");
}

/// Every integration row, every column, as text (SQLite and PostgreSQL alike).
async fn database_dump(db: &TestDb) -> String {
    use sea_orm::{ConnectionTrait as _, Statement};
    let conn = db.connect().await;
    let rows = conn
        .query_all_raw(Statement::from_string(conn.get_database_backend(), "SELECT * FROM integrations"))
        .await
        .unwrap();
    let mut dump = String::new();
    for row in rows {
        for column in row.column_names() {
            let text: Option<String> = row.try_get("", &column).ok();
            dump.push_str(&format!("{column}={}\n", text.unwrap_or_default()));
        }
    }
    dump
}

async fn activated(bridge: &Bridge, fake: &FakeChatwoot) -> String {
    let (status, body) =
        bridge.call("POST", "/v1/integrations/activate", Some(activation("suporte", fake.url()))).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "HxwdHhkaGxwXGBkaFRYXGBMUFRYREhMUDxAREg0ODxA=";

#[actix_web::test]
async fn a_different_key_cannot_open_stored_tokens_and_the_previous_key_can() {
    let db = TestDb::new().await;
    let mut bridge = Bridge::start_with(
        BRIDGE,
        &db,
        BridgeOptions { extra_env: vec![("BRIDGE_ENCRYPTION_KEY".into(), KEY_A.into())], ..Default::default() },
    )
    .await;
    let fake = fake_chatwoot();
    let id = activated(&bridge, &fake).await;

    // Wrong key: the stored Chatwoot token cannot be opened, so the inbox cannot be deleted; the answer
    // says why, without any secret.
    bridge.restart_with(&[("BRIDGE_ENCRYPTION_KEY", Some(KEY_B))]).await;
    let (status, body) =
        bridge.call("POST", "/v1/integrations/activate", Some(activation("suporte", fake.url()))).await;
    assert_eq!(status, 500, "re-activation must open the stored webhook secret: {body}");
    assert!(error_fields(&body).2.contains("unknown key"), "{body}");

    // Rotation: new key current, old key previous → everything opens again.
    bridge
        .restart_with(&[("BRIDGE_ENCRYPTION_KEY", Some(KEY_B)), ("BRIDGE_ENCRYPTION_KEY_PREVIOUS", Some(KEY_A))])
        .await;
    let (status, body) =
        bridge.call("POST", "/v1/integrations/activate", Some(activation("suporte", fake.url()))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id.as_str());
    assert_eq!(fake.inboxes().len(), 1, "the same inbox was reused");
    let (status, deleted) = bridge.call("DELETE", &format!("/v1/integrations/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(deleted["inbox_deleted"], true);
}

#[actix_web::test]
async fn bad_configuration_stops_startup_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("BRIDGE_DATA_DIR".to_owned(), dir.path().display().to_string()),
        ("BRIDGE_ENCRYPTION_KEY".to_owned(), "dG9vLXNob3J0".to_owned()),
    ];
    let output =
        std::process::Command::new(env!("CARGO_BIN_EXE_ryze-integrations")).env_clear().envs(env).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim(), "configuration error: BRIDGE_ENCRYPTION_KEY: must decode to 32 bytes, got 9");
    assert!(output.stdout.is_empty());
}

#[actix_web::test]
async fn rotating_the_key_reseals_everything_so_the_old_key_can_go() {
    let db = TestDb::new().await;
    let mut bridge = Bridge::start_with(
        BRIDGE,
        &db,
        BridgeOptions { extra_env: vec![("BRIDGE_ENCRYPTION_KEY".into(), KEY_A.into())], ..Default::default() },
    )
    .await;
    let fake = fake_chatwoot();
    let id = activated(&bridge, &fake).await;
    let before = database_dump(&db).await;

    // Step 1: new key current, old key previous. Boot re-seals every stored secret.
    bridge
        .restart_with(&[("BRIDGE_ENCRYPTION_KEY", Some(KEY_B)), ("BRIDGE_ENCRYPTION_KEY_PREVIOUS", Some(KEY_A))])
        .await;
    assert!(
        bridge.output().contains("re-sealed stored secrets with the current encryption key"),
        "{}",
        bridge.output()
    );
    let after = database_dump(&db).await;
    assert_ne!(before, after);

    // Step 2: the previous key is dropped; everything still opens.
    bridge.restart_with(&[("BRIDGE_ENCRYPTION_KEY_PREVIOUS", None)]).await;
    let (status, body) =
        bridge.call("POST", "/v1/integrations/activate", Some(activation("suporte", fake.url()))).await;
    assert_eq!(status, 200, "{body}");
    let (status, deleted) = bridge.call("DELETE", &format!("/v1/integrations/{id}"), None).await;
    assert_eq!((status, deleted["inbox_deleted"].as_bool()), (200, Some(true)), "{deleted}");
}

#[actix_web::test]
async fn rotating_the_bridge_token_keeps_the_integrations() {
    let db = TestDb::new().await;
    let mut bridge = Bridge::start(BRIDGE, &db).await;
    let fake = fake_chatwoot();
    let id = activated(&bridge, &fake).await;
    let old = bridge.token.clone();
    bridge.restart_with(&[("BRIDGE_TOKEN", Some("rotated-bridge-token-9876543210"))]).await;
    let (status, _) = request(&format!("{}/v1/integrations/{id}", bridge.url), "GET", Some(&old), None).await;
    assert_eq!(status, 401, "the old token is refused");
    let (status, shown) = bridge.call("GET", &format!("/v1/integrations/{id}"), None).await;
    assert_eq!((status, shown["instance"].as_str()), (200, Some("suporte")));
}
