//! `ryze-integrations doctor`: the real binary against the fake Chatwoot and the RyzeAPI simulator, in each
//! failure mode, with the exit status, the fixes (worded like the activation error table) and `--json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_testkit as common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The bridge binary the harness runs (only this package's integration tests know where cargo put it).
const BRIDGE: &str = env!("CARGO_BIN_EXE_ryze-integrations");

const BRIDGE_TOKEN: &str = "test-bridge-token-0123456789";

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }

    fn assert_code(&self, code: i32) {
        assert_eq!(self.code, code, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
    }

    fn assert_contains(&self, text: &str) {
        assert!(self.stdout.contains(text), "missing `{text}` in:\n{}", self.stdout);
    }

    fn assert_lacks(&self, text: &str) {
        assert!(!self.stdout.contains(text) && !self.stderr.contains(text), "`{text}` printed:\n{}", self.stdout);
    }
}

/// Runs `ryze-integrations doctor <args>` with exactly `env`, off the test's actix thread.
async fn doctor(args: &[&str], env: Vec<(String, String)>) -> Outcome {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output = actix_web::rt::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ryze-integrations")).arg("doctor").args(args).env_clear().envs(env).output()
    })
    .await
    .unwrap()
    .unwrap();
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Environment of a probe run: a data dir that does not exist (doctor must not create it).
fn probe_env(data_dir: &Path, public_url: &str) -> Vec<(String, String)> {
    vars(&[
        ("BRIDGE_DATA_DIR", &data_dir.display().to_string()),
        ("BRIDGE_CHATWOOT_TIMEOUT_MS", "1500"),
        ("BRIDGE_PUBLIC_URL", public_url),
    ])
}

async fn probe(chatwoot_url: &str, token: &str, account: i64, public_url: &str, json: bool) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let account = account.to_string();
    let mut args = vec!["--chatwoot-url", chatwoot_url, "--chatwoot-token", token, "--account", &account];
    if json {
        args.push("--json");
    }
    let outcome = doctor(&args, probe_env(&data_dir, public_url)).await;
    assert!(!data_dir.exists(), "doctor created the data dir");
    outcome.assert_lacks(token);
    outcome
}

/// A public address (TEST-NET-3), so that no private-network hint appears.
const PUBLIC_URL: &str = "https://203.0.113.9";

#[actix_web::test]
async fn probe_of_a_healthy_chatwoot_passes() {
    let chatwoot = fake_chatwoot();
    let out = probe(chatwoot.url(), ADMIN, ACCOUNT, PUBLIC_URL, false).await;
    out.assert_code(0);
    for line in [
        "✔ chatwoot reachable",
        "✔ chatwoot services: queue_services ok, data_services ok",
        "✔ chatwoot version: Chatwoot 4.15.1",
        "✔ webhook to private address",
        "✔ chatwoot token",
        "✔ administrator role: administrator on account 5",
        "✔ inbox listing",
        "OK: 7 passed, 0 warnings, 0 failed",
    ] {
        out.assert_contains(line);
    }
    assert!(chatwoot.requests().iter().all(|r| r.method == "GET"), "doctor only reads");

    let json = probe(chatwoot.url(), ADMIN, ACCOUNT, PUBLIC_URL, true).await.json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["mode"], "chatwoot");
    assert_eq!(json["target"]["account_id"], ACCOUNT);
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 7);
    for check in checks {
        assert_eq!(check["status"], "pass", "{check}");
        assert!(check["name"].is_string() && check["detail"].is_string() && check["fix"].is_null(), "{check}");
    }
}

#[actix_web::test]
async fn the_token_can_come_from_standard_input() {
    use std::io::Write as _;
    let chatwoot = fake_chatwoot();
    let dir = tempfile::tempdir().unwrap();
    let (url, env) = (chatwoot.url().to_owned(), probe_env(&dir.path().join("data"), PUBLIC_URL));
    let output = actix_web::rt::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ryze-integrations"))
            .args(["doctor", "--chatwoot-url", &url, "--chatwoot-token", "-", "--account", "5"])
            .env_clear()
            .envs(env)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{ADMIN}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("✔ administrator role") && !stdout.contains(ADMIN), "{stdout}");
}

#[actix_web::test]
async fn a_private_public_url_on_chatwoot_4_14_is_a_hint_not_a_failure() {
    let chatwoot = fake_chatwoot();
    let out = probe(chatwoot.url(), ADMIN, ACCOUNT, "http://127.0.0.1:8080", false).await;
    out.assert_code(0);
    out.assert_contains("! webhook to private address: Chatwoot ≥ 4.14 refuses webhooks to private addresses");
    out.assert_contains("fix: Chatwoot needs SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true");

    chatwoot.set_version("4.13.2");
    let out = probe(chatwoot.url(), ADMIN, ACCOUNT, "http://127.0.0.1:8080", false).await;
    out.assert_code(0);
    out.assert_lacks("SAFE_FETCH_ALLOW_PRIVATE_NETWORK");
}

#[actix_web::test]
async fn an_old_chatwoot_warns_with_what_it_lacks() {
    let chatwoot = fake_chatwoot();
    chatwoot.set_version("4.1.0");
    let out = probe(chatwoot.url(), ADMIN, ACCOUNT, PUBLIC_URL, false).await;
    out.assert_code(0);
    out.assert_contains(
        "! chatwoot version: Chatwoot 4.1.0: message status ticks (delivered/read) need Chatwoot ≥ 4.2.0; \
         quotes, reactions and edits are threaded only when the quoted message is known to the bridge: \
         Chatwoot before 4.9.0 drops content_attributes other than in_reply_to; \
         webhooks are not signed before 4.13.0: only the secret webhook URL protects them",
    );
    out.assert_contains("fix: upgrade Chatwoot to 4.13.0 or newer for all of these");
    out.assert_contains("OK: 5 passed, 1 warnings, 0 failed");

    let json = probe(chatwoot.url(), ADMIN, ACCOUNT, PUBLIC_URL, true).await.json();
    assert_eq!(json["ok"], true);
    let version = json["checks"].as_array().unwrap().iter().find(|c| c["name"] == "chatwoot version").unwrap();
    assert_eq!(version["status"], "warn");
    assert!(version["fix"].as_str().unwrap().contains("4.13"));

    // 4.2–4.8: ticks work, quotes by WhatsApp id and signatures do not.
    chatwoot.set_version("4.8.0");
    let out = probe(chatwoot.url(), ADMIN, ACCOUNT, PUBLIC_URL, false).await;
    out.assert_code(0);
    out.assert_contains("! chatwoot version: Chatwoot 4.8.0: quotes, reactions and edits are threaded only when");
    out.assert_lacks("status ticks");

    // 4.9–4.12: everything but signatures; the `\` line breaks are repaired by the bridge.
    chatwoot.set_version("4.10.1");
    let out = probe(chatwoot.url(), ADMIN, ACCOUNT, PUBLIC_URL, false).await;
    out.assert_code(0);
    out.assert_contains(
        "✔ chatwoot version: Chatwoot 4.10.1 (webhooks are signed only from 4.13.0 on; \
         agent line breaks arrive as `\\`+newline, which the bridge repairs)",
    );
}

#[actix_web::test]
async fn a_chatwoot_older_than_3_4_fails() {
    let chatwoot = fake_chatwoot();
    chatwoot.set_version("3.3.1");
    let out = probe(chatwoot.url(), ADMIN, ACCOUNT, PUBLIC_URL, false).await;
    out.assert_code(1);
    out.assert_contains("✖ chatwoot version: Chatwoot 3.3.1 is older than 3.4.0: it drops a message's source_id");
    out.assert_contains("in a loop; the bridge refuses to activate on it");
    out.assert_contains("fix: upgrade Chatwoot to 3.4.0 or newer");
    // The other checks still run: they tell what else to fix.
    out.assert_contains("✔ administrator role");
}

/// A stand-in for Chatwoot behind a reverse proxy that strips the access-token header: `GET /api` answers,
/// every authenticated route gets devise's 401, as Chatwoot answers a request without any token.
fn chatwoot_behind_a_stripping_proxy() -> String {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|req: HttpRequest| async move {
            if req.path() == "/api" {
                HttpResponse::Ok()
                    .json(serde_json::json!({"version": "4.15.1", "queue_services": "ok", "data_services": "ok"}))
            } else {
                HttpResponse::Unauthorized()
                    .json(serde_json::json!({"errors": ["You need to sign in or sign up before continuing."]}))
            }
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    format!("http://{addr}")
}

#[actix_web::test]
async fn a_proxy_that_strips_the_token_header_is_named() {
    let url = chatwoot_behind_a_stripping_proxy();
    let out = probe(&url, ADMIN, ACCOUNT, PUBLIC_URL, false).await;
    out.assert_code(1);
    out.assert_contains(
        "✖ chatwoot token: GET /api/v1/profile refused: HTTP 401: You need to sign in or sign up before continuing.",
    );
    out.assert_contains(
        "fix: Chatwoot received no access token although the bridge sent one: a reverse proxy in front of Chatwoot drops or strips the access-token header. The bridge sends it as `Api-Access-Token`",
    );
    out.assert_contains("underscores_in_headers on;");
    out.assert_lacks("verify chatwootApiToken");
}

#[actix_web::test]
async fn behind_nginx_with_default_settings_the_token_still_arrives() {
    // `underscores_in_headers off` drops `api_access_token`; the bridge sends `Api-Access-Token`.
    let chatwoot = fake_chatwoot();
    chatwoot.set_proxy_drops_underscore_headers(true);
    let out = probe(chatwoot.url(), ADMIN, ACCOUNT, PUBLIC_URL, false).await;
    out.assert_code(0);
    out.assert_contains("✔ chatwoot token");
    out.assert_contains("✔ inbox listing");
}

#[actix_web::test]
async fn a_throttled_host_is_told_what_to_set_in_chatwoot() {
    let chatwoot = fake_chatwoot();
    // Rack::Attack on one call: the token check.
    chatwoot.fail_next("GET", "/api/v1/profile", 429, 1);
    let out = probe(chatwoot.url(), ADMIN, ACCOUNT, PUBLIC_URL, false).await;
    out.assert_code(1);
    out.assert_contains("✖ chatwoot token: GET /api/v1/profile refused: HTTP 429: Retry later");
    out.assert_contains(&format!("fix: Chatwoot at {} is throttling this host (Rack::Attack", chatwoot.url()));
    out.assert_contains(
        "every integration of this bridge shares one budget of RACK_ATTACK_LIMIT requests a minute per IP (default 3000, config/initializers/rack_attack.rb). In Chatwoot's environment set RACK_ATTACK_ALLOWED_IPS=<the bridge's IP as Chatwoot sees it>, or a higher RACK_ATTACK_LIMIT",
    );
    out.assert_lacks("verify chatwootApiToken");

    // On every call, from the first one on.
    chatwoot.set_fault(Fault::Status(429));
    let out = probe(chatwoot.url(), ADMIN, ACCOUNT, PUBLIC_URL, false).await;
    out.assert_code(1);
    out.assert_contains("✖ chatwoot reachable: GET");
    out.assert_contains("RACK_ATTACK_ALLOWED_IPS=");
    out.assert_lacks("Chatwoot is unreachable");
}

#[actix_web::test]
async fn a_bad_token_fails_with_the_unauthorized_fix() {
    let chatwoot = fake_chatwoot();
    let out = probe(chatwoot.url(), "not-a-valid-token-123", ACCOUNT, PUBLIC_URL, false).await;
    out.assert_code(1);
    out.assert_contains("✖ chatwoot token: GET /api/v1/profile refused: HTTP 401: Invalid Access Token");
    out.assert_contains(
        "    fix: Chatwoot rejected the API token — verify chatwootApiToken. Detail: HTTP 401: Invalid Access Token",
    );
    out.assert_lacks("administrator role");

    let json = probe(chatwoot.url(), "not-a-valid-token-123", ACCOUNT, PUBLIC_URL, true).await.json();
    assert_eq!(json["ok"], false);
    let token = json["checks"].as_array().unwrap().iter().find(|c| c["name"] == "chatwoot token").unwrap();
    assert_eq!(token["status"], "fail");
    assert!(token["fix"].as_str().unwrap().starts_with("Chatwoot rejected the API token"));
}

#[actix_web::test]
async fn an_agent_token_is_not_an_administrator() {
    let chatwoot = fake_chatwoot();
    let out = probe(chatwoot.url(), AGENT, ACCOUNT, PUBLIC_URL, false).await;
    out.assert_code(1);
    out.assert_contains("✔ chatwoot token");
    out.assert_contains("✖ administrator role: the token's user is `agent` on account 5; `administrator` is required");
    out.assert_contains("fix: Chatwoot denied the request — verify the API token has admin scope on account 5.");
}

#[actix_web::test]
async fn a_wrong_account_is_not_found_or_not_a_member() {
    let chatwoot = fake_chatwoot();
    let out = probe(chatwoot.url(), ADMIN, 99, PUBLIC_URL, false).await;
    out.assert_code(1);
    out.assert_contains("✖ administrator role: account 99 does not exist");
    out.assert_contains(&format!(
        "fix: Chatwoot account or endpoint not found — verify chatwootBaseUrl ({}) and chatwootAccountId (99).",
        chatwoot.url()
    ));
    out.assert_lacks("inbox listing");

    chatwoot.add_account(6, "Elsewhere");
    let out = probe(chatwoot.url(), ADMIN, 6, PUBLIC_URL, false).await;
    out.assert_code(1);
    out.assert_contains("✖ administrator role: the token's user is not a member of account 6");
    out.assert_contains("fix: Chatwoot denied the request — verify the API token has admin scope on account 6.");
}

#[actix_web::test]
async fn an_unreachable_chatwoot_fails_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let out = probe(&url, ADMIN, ACCOUNT, PUBLIC_URL, false).await;
    out.assert_code(1);
    out.assert_contains("✖ chatwoot reachable");
    out.assert_contains(&format!(
        "fix: Chatwoot is unreachable at {url} — verify chatwootBaseUrl and that the host is reachable from the server."
    ));
    out.assert_lacks("chatwoot token");
}

#[actix_web::test]
async fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = doctor(&["--chatwoot-url", "http://127.0.0.1:9"], probe_env(dir.path(), PUBLIC_URL)).await;
    out.assert_code(2);
    assert!(out.stderr.contains("go together") && out.stderr.contains("usage:"), "{}", out.stderr);
    doctor(&["--help"], Vec::new()).await.assert_code(0);
}

// ---------------------------------------------------------------------------------------------------
// Stored integrations

/// The bridge's environment (as `Stack`/`Bridge::start_with` build it) for a doctor run on the stack's data.
/// The stack's public URL is the address the bridge listens on.
fn stack_env(stack: &Stack) -> Vec<(String, String)> {
    let public_url = stack.bridge.url.clone();
    let bind = public_url.trim_start_matches("http://").to_owned();
    vars(&[
        ("BRIDGE_DATA_DIR", &stack.bridge.data_dir().display().to_string()),
        ("DATABASE_URL", &stack.db.url),
        ("BRIDGE_TOKEN", BRIDGE_TOKEN),
        ("RYZEAPI_URL", "http://127.0.0.1:9"),
        ("BIND", &bind),
        ("BRIDGE_PUBLIC_URL", &public_url),
        ("BRIDGE_CHATWOOT_TIMEOUT_MS", "1500"),
    ])
}

async fn active_stack() -> (Stack, String) {
    let stack = Stack::start(BRIDGE).await;
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(3)).await;
    (stack, id)
}

/// Runs doctor on the stack and checks that no secret was printed.
async fn doctor_on(stack: &Stack, json: bool) -> Outcome {
    let args: &[&str] = if json { &["--json"] } else { &[] };
    let out = doctor(args, stack_env(stack)).await;
    out.assert_lacks(ADMIN);
    out.assert_lacks(BRIDGE_TOKEN);
    for inbox in stack.chatwoot.inboxes() {
        let secret = inbox.webhook_url.rsplit('/').next().unwrap().to_owned();
        out.assert_lacks(&secret);
        out.assert_lacks(&inbox.secret);
    }
    out
}

#[actix_web::test]
async fn stored_integrations_healthy() {
    let (stack, id) = active_stack().await;
    let writes_before = stack.chatwoot.requests().iter().filter(|r| r.method != "GET").count();
    let out = doctor_on(&stack, false).await;
    out.assert_code(0);
    out.assert_contains(&format!("integration {id} (instance suporte, active)"));
    for line in [
        "✔ configuration",
        "✔ database",
        "  ✔ integration status: active",
        "  ✔ stored secrets",
        "  ✔ chatwoot token",
        "  ✔ administrator role",
        "  ✔ inbox: inbox",
        &format!("  ✔ webhook URL: points at {}/v1/webhooks/chatwoot/{id}/…", stack.bridge.url),
        "  ✔ webhook signing: deliveries are verified with the inbox's current signing secret",
        "  ✔ ryzeapi link: WebSocket upgrade accepted",
        "  ✔ inbound queue: WhatsApp events: 0 pending, 0 failed",
        "  ✔ outbound queue: agent replies: 0 pending, 0 failed",
    ] {
        out.assert_contains(line);
    }
    let writes_after = stack.chatwoot.requests().iter().filter(|r| r.method != "GET").count();
    assert_eq!(writes_before, writes_after, "doctor changes nothing in Chatwoot");
    assert_eq!(stack.view(&id).await["connection"]["state"], "connected", "the bridge's own link stays up");

    let json = doctor_on(&stack, true).await;
    json.assert_code(0);
    let json = json.json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["mode"], "stored");
    let integration = &json["integrations"][0];
    assert_eq!(integration["id"], id.as_str());
    assert_eq!(integration["instance"], "suporte");
    assert_eq!(integration["ok"], true);
    let names: Vec<&str> =
        integration["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    for name in [
        "chatwoot reachable",
        "chatwoot token",
        "inbox",
        "webhook URL",
        "ryzeapi link",
        "inbound queue",
        "outbound queue",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert!(integration["checks"].as_array().unwrap().iter().all(|c| c["status"] != "fail"), "{integration}");
}

#[actix_web::test]
async fn stored_integration_with_a_revoked_token_fails() {
    let (stack, id) = active_stack().await;
    stack.chatwoot.revoke_token(ADMIN);
    // A WhatsApp message arriving now is stored but cannot reach Chatwoot: it waits in the queue.
    let message =
        sim::text_message("suporte", &sim::new_incoming_message_id(), "5511999998888@s.whatsapp.net", "Maria", "Olá");
    let event_id = stack.ryzeapi.send_event("suporte", message).unwrap();
    let sim = &stack.ryzeapi;
    eventually("the event is stored", Duration::from_secs(5), || sim.acked("suporte").contains(&event_id)).await;
    let out = doctor_on(&stack, false).await;
    out.assert_contains("inbound queue: WhatsApp events: 1 pending, 0 failed; the oldest pending one arrived");
    out.assert_code(1);
    out.assert_contains(&format!("integration {id} (instance suporte"));
    out.assert_contains("✖ chatwoot token");
    out.assert_contains("fix: Chatwoot rejected the API token — verify chatwootApiToken.");
    out.assert_contains("re-activate the integration from RyzeAPI (POST /api/chatwoot/set/suporte)");

    let json = doctor_on(&stack, true).await.json();
    assert_eq!(json["ok"], false);
    assert_eq!(json["integrations"][0]["id"], id.as_str());
    assert_eq!(json["integrations"][0]["ok"], false);
}

#[actix_web::test]
async fn stored_integration_whose_inbox_was_deleted_fails() {
    let (stack, id) = active_stack().await;
    let inbox_id = stack.view(&id).await["inbox_id"].as_i64().unwrap();
    stack.chatwoot.delete_inbox_directly(inbox_id);
    let out = doctor_on(&stack, false).await;
    out.assert_code(1);
    out.assert_contains(&format!("✖ inbox: inbox {inbox_id} (`WhatsApp - suporte`) no longer exists in Chatwoot"));
    out.assert_contains("fix: re-activate the integration from RyzeAPI");
}

#[actix_web::test]
async fn stored_integration_whose_webhook_moved_fails() {
    let (stack, id) = active_stack().await;
    let inbox_id = stack.view(&id).await["inbox_id"].as_i64().unwrap();
    stack.chatwoot.set_inbox_webhook_url(inbox_id, "https://elsewhere.example/hook?key=private-value");
    let out = doctor_on(&stack, false).await;
    out.assert_code(1);
    out.assert_contains("✖ webhook URL: the inbox's webhook points at https://elsewhere.example/hook, expected");
    out.assert_lacks("private-value");
}

#[actix_web::test]
async fn stored_integration_activated_before_signing_warns_after_the_upgrade() {
    let stack = Stack::start(BRIDGE).await;
    stack.chatwoot.set_version("4.12.0");
    let id = stack.activate("suporte").await;
    stack.wait_link(&id, "connected", Duration::from_secs(3)).await;
    let out = doctor_on(&stack, false).await;
    out.assert_code(0);
    out.assert_contains("  ✔ webhook signing: Chatwoot signs webhooks only from 4.13.0 on");

    // Chatwoot upgraded: the inbox now has a secret the bridge never stored.
    stack.chatwoot.set_version("4.15.1");
    let out = doctor_on(&stack, false).await;
    out.assert_code(0);
    out.assert_contains(
        "  ! webhook signing: Chatwoot shows a signing secret for the inbox but the bridge stored none (activated before Chatwoot was upgraded to 4.13)",
    );
    out.assert_contains(
        "fix: nothing to do if agents reply: the bridge reads and stores the secret on the next signed delivery; to store it now, re-activate the integration from RyzeAPI (POST /api/chatwoot/set/suporte)",
    );
}

#[actix_web::test]
async fn stored_integration_whose_signing_secret_was_reset_fails() {
    let (stack, id) = active_stack().await;
    let inbox_id = stack.view(&id).await["inbox_id"].as_i64().unwrap();
    let old_secret = stack.chatwoot.inbox(inbox_id).unwrap().secret;
    let new_secret = stack.chatwoot.reset_inbox_secret(inbox_id).unwrap();
    assert_ne!(old_secret, new_secret);
    let out = doctor_on(&stack, false).await;
    out.assert_code(1);
    out.assert_contains(
        "  ✖ webhook signing: the inbox's webhook signing secret changed in Chatwoot (reset by an admin?)",
    );
    out.assert_contains(
        "fix: the bridge re-reads the inbox's secret on the next signed delivery it cannot verify; if agent replies still fail, re-activate the integration from RyzeAPI (POST /api/chatwoot/set/suporte)",
    );
    out.assert_lacks(&old_secret);
    out.assert_lacks(&new_secret);
    let json = doctor_on(&stack, true).await;
    json.assert_lacks(&old_secret);
    json.assert_lacks(&new_secret);
    let json = json.json();
    let signing = json["integrations"][0]["checks"].as_array().unwrap().iter().find(|c| c["name"] == "webhook signing");
    assert_eq!(signing.unwrap()["status"], "fail");
}

#[actix_web::test]
async fn stored_integration_refused_by_ryzeapi_fails_with_the_bridge_token_fix() {
    let (stack, id) = active_stack().await;
    stack.ryzeapi.refuse_upgrades(Some(401));
    let out = doctor_on(&stack, false).await;
    out.assert_code(1);
    out.assert_contains(&format!("integration {id}"));
    out.assert_contains("✖ ryzeapi link: RyzeAPI rejected the bridge token (HTTP 401");
    out.assert_contains("fix: set BRIDGE_TOKEN on RyzeAPI to the bridge's token");
    out.assert_contains("✔ chatwoot token");
}

#[actix_web::test]
async fn a_data_dir_the_bridge_never_used_fails_without_creating_anything() {
    let db = TestDb::new().await;
    let data_dir = db.dir.join("never-used");
    let env = vars(&[("BRIDGE_DATA_DIR", &data_dir.display().to_string()), ("BRIDGE_TOKEN", BRIDGE_TOKEN)]);
    let out = doctor(&[], env).await;
    out.assert_code(1);
    out.assert_contains("✖ configuration: BRIDGE_ENCRYPTION_KEY is not set");
    assert!(!data_dir.exists(), "doctor created the data dir");
}
