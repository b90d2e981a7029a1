//! Doctor without arguments: every stored integration, checked against the Chatwoot and RyzeAPI it uses.
//! Reads only (after pending migrations): it never writes a row, creates a file or changes Chatwoot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use entity::integration::Model;
use futures_util::{SinkExt as _, StreamExt as _};
use sea_orm::DatabaseConnection;

use crate::chatwoot::version::{SIGNING, Version};
use crate::chatwoot::{ChatwootClient, ChatwootError, ChatwootTarget, Failure};
use crate::config::Settings;
use crate::crypto::Sealer;
use crate::error::ChatwootContext;
use crate::integrations::{Status, sealed};
use crate::ryzeapi::link::{self, LinkError};
use crate::secret::Secret;
use crate::store;
use crate::telemetry::Metrics;

use super::chatwoot::{Access, account_checks, table_fix};
use super::report::{Check, IntegrationReport, Report, all_pass};

/// A pending event older than this means relaying is stuck.
const STUCK_AFTER: Duration = Duration::from_secs(15 * 60);
/// Integrations checked at the same time.
const PARALLEL: usize = 4;
/// How long the closing handshake of the WebSocket probe may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Same file names and defaults as `config` (doctor must not create them when they are missing).
use crate::config::{KEY_FILE, TOKEN_FILE, default_database_url};

/// How RyzeAPI is told to (re-)activate, for fixes.
fn reactivate(instance: &str) -> String {
    format!("re-activate the integration from RyzeAPI (POST /api/chatwoot/set/{instance})")
}

/// Runs every check of the stored mode. The second value lists secrets to scrub from the report.
pub async fn run() -> (Report, Vec<String>) {
    let mut checks = Vec::new();
    let mut secrets = Vec::new();
    if let Some(missing) = missing_state(&std::env::vars().collect()) {
        checks.push(missing);
        return (Report::new("stored", None, checks, Some(Vec::new())), secrets);
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            checks.push(Check::fail("configuration", e.to_string(), "correct the variable named above"));
            return (Report::new("stored", None, checks, Some(Vec::new())), secrets);
        }
    };
    secrets.push(settings.bridge_token.expose().to_owned());
    let sealer = Sealer::new(settings.encryption_key.clone(), settings.previous_encryption_key.clone());
    let previous = settings.previous_encryption_key.as_ref().map(|k| format!(", previous key {}", k.id()));
    checks.push(Check::pass(
        "configuration",
        format!(
            "data dir {}, BRIDGE_PUBLIC_URL {}, encryption key {}{}",
            settings.data_dir.display(),
            settings.public_url,
            sealer.current_key_id(),
            previous.unwrap_or_default()
        ),
    ));

    let shown_db = database_label(&settings.database_url);
    let db = match store::connect_and_migrate(&settings.database_url).await {
        Ok(db) => db,
        Err(e) => {
            checks.push(Check::fail(
                "database",
                format!("{shown_db}: {e}"),
                "verify DATABASE_URL and that the database server is up and accepts this user",
            ));
            return (Report::new("stored", None, checks, Some(Vec::new())), secrets);
        }
    };
    let models = match store::integrations::list(&db, None).await {
        Ok(models) => models,
        Err(e) => {
            checks.push(Check::fail("database", format!("{shown_db}: {e}"), "verify DATABASE_URL"));
            return (Report::new("stored", None, checks, Some(Vec::new())), secrets);
        }
    };
    let count = match models.len() {
        1 => "1 integration".to_owned(),
        n => format!("{n} integrations"),
    };
    checks.push(Check::pass("database", format!("{shown_db}, {count} stored")));
    if models.is_empty() {
        checks.push(Check::warn(
            "integrations",
            "no integration is stored: there is nothing else to check",
            Some("activate an instance from RyzeAPI (POST /api/chatwoot/set/<instance>)".to_owned()),
        ));
    }

    let env = Env { settings: &settings, sealer: &sealer, db: &db, http: crate::config::http_client() };
    let results: Vec<(IntegrationReport, Vec<String>)> = futures_util::stream::iter(models.iter())
        .map(|m| check_integration(&env, m))
        .buffered(PARALLEL)
        .collect()
        .await;
    let mut integrations = Vec::new();
    for (report, found) in results {
        integrations.push(report);
        secrets.extend(found);
    }
    db.close().await.ok();
    (Report::new("stored", None, checks, Some(integrations)), secrets)
}

struct Env<'a> {
    settings: &'a Settings,
    sealer: &'a Sealer,
    db: &'a DatabaseConnection,
    http: awc::Client,
}

/// A failed check when the configuration points at a key, token or SQLite file that does not exist yet:
/// `Settings::from_env` (and SQLite's `mode=rwc`) would create them, and doctor changes nothing.
fn missing_state(vars: &std::collections::HashMap<String, String>) -> Option<Check> {
    let get = |name: &str| vars.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let data_dir = PathBuf::from(get("BRIDGE_DATA_DIR").unwrap_or_else(|| "./data".to_owned()));
    let never_started =
        "start the bridge once with this configuration (or point BRIDGE_DATA_DIR / DATABASE_URL at the bridge's data)";
    if get("BRIDGE_ENCRYPTION_KEY").is_none() && !data_dir.join(KEY_FILE).is_file() {
        return Some(Check::fail(
            "configuration",
            format!("BRIDGE_ENCRYPTION_KEY is not set and {} does not exist", data_dir.join(KEY_FILE).display()),
            format!("set BRIDGE_ENCRYPTION_KEY to the bridge's key, or {never_started}"),
        ));
    }
    if get("BRIDGE_TOKEN").is_none() && !data_dir.join(TOKEN_FILE).is_file() {
        return Some(Check::fail(
            "configuration",
            format!("BRIDGE_TOKEN is not set and {} does not exist", data_dir.join(TOKEN_FILE).display()),
            format!("set BRIDGE_TOKEN to the bridge's token, or {never_started}"),
        ));
    }
    let database_url = get("DATABASE_URL").unwrap_or_else(|| default_database_url(&data_dir));
    if let Some(path) = sqlite_path(&database_url).filter(|p| !p.is_file()) {
        return Some(Check::fail(
            "database",
            format!("no SQLite database at {}", path.display()),
            format!("set DATABASE_URL to the bridge's database, or {never_started}"),
        ));
    }
    None
}

/// The file of a `sqlite:` URL (`None` for in-memory databases and other schemes).
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.contains("mode=memory") {
        return None;
    }
    Some(Path::new(path).to_path_buf())
}

/// The database, without its password.
fn database_label(url: &str) -> String {
    if let Some(path) = sqlite_path(url) {
        return format!("SQLite {}", path.display());
    }
    match url::Url::parse(url) {
        Ok(parsed) => format!(
            "PostgreSQL {}{}{}",
            parsed.host_str().unwrap_or("localhost"),
            parsed.port().map(|p| format!(":{p}")).unwrap_or_default(),
            parsed.path()
        ),
        Err(_) => "the database".to_owned(),
    }
}

/// Every check of one integration; the second value lists the secrets it opened.
async fn check_integration(env: &Env<'_>, model: &Model) -> (IntegrationReport, Vec<String>) {
    let mut checks = vec![status_check(model)];
    let mut secrets = Vec::new();

    let opened = open(env.sealer, model, sealed::CHATWOOT_TOKEN)
        .and_then(|token| Ok((token, open(env.sealer, model, sealed::WEBHOOK_SECRET)?)));
    match opened {
        Ok((token, webhook_secret)) => {
            checks.push(Check::pass(
                "stored secrets",
                "the Chatwoot token and webhook secret open with the configured keys",
            ));
            secrets.push(token.expose().to_owned());
            secrets.push(webhook_secret.expose().to_owned());
            chatwoot_checks(env, model, token, &webhook_secret, &mut checks, &mut secrets).await;
        }
        Err(check) => checks.push(check),
    }
    checks.push(ryzeapi_check(env, model).await);
    checks.push(inbound_queue_check(env.db, &model.id).await);
    checks.push(outbound_queue_check(env.db, &model.id).await);

    let report = IntegrationReport {
        id: model.id.clone(),
        instance: model.instance.clone(),
        status: model.status.clone(),
        ok: all_pass(&checks),
        checks,
    };
    (report, secrets)
}

fn status_check(model: &Model) -> Check {
    const NAME: &str = "integration status";
    match model.status() {
        Some(Status::Active) => Check::pass(NAME, "active"),
        Some(Status::Paused) => Check::warn(
            NAME,
            "paused: nothing is relayed until it is resumed",
            Some("resume it from RyzeAPI when it should relay again".to_owned()),
        ),
        Some(Status::Error) => Check::fail(
            NAME,
            format!("error: {}", model.last_error),
            "fix what the checks below (or the error above) name; the bridge then recovers by itself within minutes",
        ),
        None => Check::warn(NAME, format!("unknown status `{}`", model.status), None),
    }
}

fn open(sealer: &Sealer, model: &Model, column: &str) -> Result<Secret, Check> {
    let sealed_value = match column {
        sealed::CHATWOOT_TOKEN => &model.chatwoot_token_sealed,
        _ => &model.webhook_secret_sealed,
    };
    open_value(sealer, model, sealed_value, column)
}

fn open_value(sealer: &Sealer, model: &Model, sealed_value: &str, column: &str) -> Result<Secret, Check> {
    sealer.open(sealed_value, &model.id, column).map_err(|e| {
        let fix = match e {
            crate::crypto::CryptoError::UnknownKey(_) => e.to_string(),
            _ => format!("{} to store its secrets again", reactivate(&model.instance)),
        };
        Check::fail("stored secrets", format!("cannot open the stored {column}: {e}"), fix)
    })
}

async fn chatwoot_checks(
    env: &Env<'_>,
    model: &Model,
    token: Secret,
    webhook_secret: &Secret,
    checks: &mut Vec<Check>,
    secrets: &mut Vec<String>,
) {
    let target =
        ChatwootTarget { base_url: model.chatwoot_base_url.clone(), account_id: model.chatwoot_account_id, token };
    let chatwoot = ChatwootClient::new(env.http.clone(), target, env.settings.chatwoot_timeout, Metrics::default());
    let version = match account_checks(&chatwoot, &env.settings.public_url, checks).await {
        Access::Granted { version, .. } => version,
        Access::Stopped => {
            // A refused token needs a new one stored (not a proxy's missing header, nor a throttle).
            if let Some(check) = checks.last_mut().filter(|c| c.name == "chatwoot token") {
                let fix = check.fix.take().unwrap_or_default();
                check.fix = Some(if fix.starts_with("Chatwoot rejected the API token") {
                    format!("{fix} Then {} with the new token.", reactivate(&model.instance))
                } else {
                    fix
                });
            }
            return;
        }
    };
    let ctx = ChatwootContext {
        base_url: &model.chatwoot_base_url,
        account_id: model.chatwoot_account_id,
        action: "reading the inbox",
    };
    let inbox = match chatwoot.get_inbox(model.inbox_id).await {
        Ok(inbox) => inbox,
        Err(e) if e.failure() == Failure::NotFound && !matches!(e, ChatwootError::Unexpected { .. }) => {
            checks.push(Check::fail(
                "inbox",
                format!(
                    "inbox {} (`{}`) no longer exists in Chatwoot ({})",
                    model.inbox_id,
                    model.inbox_name,
                    e.detail()
                ),
                format!("{}: the bridge creates a new inbox and keeps the integration id", reactivate(&model.instance)),
            ));
            return;
        }
        Err(e) => {
            checks.push(Check::fail(
                "inbox",
                format!("inbox {} cannot be read: {}", model.inbox_id, e.detail()),
                table_fix(&e, ctx),
            ));
            return;
        }
    };
    checks.push(Check::pass("inbox", format!("inbox {} `{}` exists", inbox.id, inbox.name)));

    let expected = format!("{}/v1/webhooks/chatwoot/{}/{}", env.settings.public_url, model.id, webhook_secret.expose());
    let actual = inbox.webhook_url.clone().unwrap_or_default();
    if actual == expected {
        checks.push(Check::pass("webhook URL", format!("points at {}", shown_webhook_url(&expected))));
    } else {
        let now =
            if actual.is_empty() { "is empty".to_owned() } else { format!("points at {}", shown_webhook_url(&actual)) };
        checks.push(Check::fail(
            "webhook URL",
            format!("the inbox's webhook {now}, expected {}", shown_webhook_url(&expected)),
            format!(
                "{}: it points the inbox's webhook back at the bridge (BRIDGE_PUBLIC_URL {}). Run doctor with the bridge's own environment (BRIDGE_PUBLIC_URL, BIND), or the expected URL is not the bridge's",
                reactivate(&model.instance),
                env.settings.public_url
            ),
        ));
    }

    if let Some(shown) = inbox.secret.as_deref().filter(|s| !s.is_empty()) {
        secrets.push(shown.to_owned());
    }
    let stored = match model.signing_secret_sealed.as_deref() {
        Some(sealed_value) => match open_value(env.sealer, model, sealed_value, sealed::SIGNING_SECRET) {
            Ok(stored) => {
                secrets.push(stored.expose().to_owned());
                Some(stored)
            }
            Err(check) => {
                checks.push(check);
                return;
            }
        },
        None => None,
    };
    checks.push(signing_check(stored.as_ref().map(Secret::expose), inbox.secret.as_deref(), version, &model.instance));
}

/// The stored webhook signing secret against the inbox's current `secret` (shown to administrators from
/// Chatwoot 4.13 on). Never prints either.
fn signing_check(stored: Option<&str>, current: Option<&str>, version: Option<Version>, instance: &str) -> Check {
    const NAME: &str = "webhook signing";
    let current = current.filter(|s| !s.is_empty());
    match (stored, current) {
        (Some(stored), Some(current)) if constant_time_eq(stored, current) => {
            Check::pass(NAME, "deliveries are verified with the inbox's current signing secret")
        }
        (Some(_), Some(_)) => Check::fail(
            NAME,
            "the inbox's webhook signing secret changed in Chatwoot (reset by an admin?): deliveries signed with the new secret do not match the one the bridge stored",
            format!(
                "the bridge re-reads the inbox's secret on the next signed delivery it cannot verify; if agent replies still fail, {} to store the new secret",
                reactivate(instance)
            ),
        ),
        (None, Some(_)) => Check::warn(
            NAME,
            "Chatwoot shows a signing secret for the inbox but the bridge stored none (activated before Chatwoot was upgraded to 4.13): until it has one, deliveries are protected only by the secret webhook URL",
            Some(format!(
                "nothing to do if agents reply: the bridge reads and stores the secret on the next signed delivery; to store it now, {}",
                reactivate(instance)
            )),
        ),
        (Some(_), None) if version.is_some_and(|v| v < SIGNING) => Check::fail(
            NAME,
            format!(
                "the bridge stored a signing secret but Chatwoot {} does not sign webhooks (downgraded below {SIGNING}?): every delivery is refused as unsigned",
                version.map(|v| v.to_string()).unwrap_or_default()
            ),
            format!("{} so that the bridge stores what this Chatwoot offers", reactivate(instance)),
        ),
        (Some(_), None) => Check::warn(
            NAME,
            "the bridge verifies deliveries with a stored signing secret, but Chatwoot does not show the inbox's secret",
            Some(format!(
                "verify that the token's user is administrator; if deliveries are refused as unsigned, {}",
                reactivate(instance)
            )),
        ),
        (None, None) => match version {
            Some(v) if v >= SIGNING => Check::warn(
                NAME,
                format!("Chatwoot {v} shows no signing secret for the inbox: deliveries are accepted unverified"),
                None,
            ),
            _ => Check::pass(
                NAME,
                format!("Chatwoot signs webhooks only from {SIGNING} on: the secret webhook URL protects deliveries"),
            ),
        },
    }
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A webhook URL fit to print: the bridge's secret path segment becomes `…`; elsewhere the user info,
/// query and fragment are dropped.
pub fn shown_webhook_url(url: &str) -> String {
    const ROUTE: &str = "/v1/webhooks/chatwoot/";
    if let Some(at) = url.find(ROUTE) {
        let after = &url[at + ROUTE.len()..];
        let id = after.split('/').next().unwrap_or_default();
        return format!("{}{ROUTE}{id}/…", &url[..at]);
    }
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// Opens the integration's RyzeAPI WebSocket with the bridge token and closes it at once.
async fn ryzeapi_check(env: &Env<'_>, model: &Model) -> Check {
    const NAME: &str = "ryzeapi link";
    let url = link::ws_url(&model.ryzeapi_url, &model.instance);
    match link::connect(&env.http, &url, &env.settings.bridge_token).await {
        Ok(mut framed) => {
            let close = awc::ws::Message::Close(Some(awc::ws::CloseCode::Normal.into()));
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, framed.send(close)).await;
            Check::pass(NAME, format!("WebSocket upgrade accepted at {url} with the bridge token"))
        }
        Err(LinkError::Rejected { status }) => Check::fail(
            NAME,
            format!("{} (HTTP {status} on {url})", LinkError::Rejected { status }),
            format!(
                "set BRIDGE_TOKEN on RyzeAPI to the bridge's token (BRIDGE_TOKEN here, or the file {}/{TOKEN_FILE}); both sides must hold the same value",
                env.settings.data_dir.display()
            ),
        ),
        Err(e @ LinkError::NoRoute) => Check::fail(NAME, format!("HTTP 404 on {url}"), e.to_string()),
        Err(e @ LinkError::Transient(_)) => Check::fail(
            NAME,
            format!("{e} ({url})"),
            format!(
                "RyzeAPI is unreachable at {} — verify the integration's ryzeapiUrl ({}) and that RyzeAPI is up and reachable from the bridge's host",
                model.ryzeapi_url,
                reactivate(&model.instance)
            ),
        ),
    }
}

/// WhatsApp → Chatwoot: events received from RyzeAPI and not relayed yet.
async fn inbound_queue_check(db: &DatabaseConnection, integration_id: &str) -> Check {
    const NAME: &str = "inbound queue";
    let counts = match store::events::counts(db, integration_id).await {
        Ok(counts) => counts,
        Err(e) => return Check::fail(NAME, e.to_string(), "verify that the database is up"),
    };
    let oldest = match store::events::pending(db, integration_id).await {
        Ok(pending) => match pending.first() {
            Some((id, _)) => store::events::find(db, *id).await.ok().flatten().map(|row| row.received_at),
            None => None,
        },
        Err(e) => return Check::fail(NAME, e.to_string(), "verify that the database is up"),
    };
    queue_verdict(NAME, "WhatsApp events", counts.pending, counts.failed, oldest)
}

/// Chatwoot → WhatsApp: agent replies and deletions received from Chatwoot's webhook and not sent yet.
async fn outbound_queue_check(db: &DatabaseConnection, integration_id: &str) -> Check {
    const NAME: &str = "outbound queue";
    let (pending, failed) = match store::jobs::counts(db, integration_id).await {
        Ok(counts) => counts,
        Err(e) => return Check::fail(NAME, e.to_string(), "verify that the database is up"),
    };
    let oldest = match store::jobs::pending(db, integration_id).await {
        Ok(jobs) => match jobs.first() {
            Some((id, _)) => store::jobs::find(db, *id).await.ok().flatten().map(|row| row.created_at),
            None => None,
        },
        Err(e) => return Check::fail(NAME, e.to_string(), "verify that the database is up"),
    };
    queue_verdict(NAME, "agent replies", pending, failed, oldest)
}

/// Queue depths are information; a stuck or failing queue is a warning (the cause is a failed check above
/// or in the bridge's log).
fn queue_verdict(
    name: &'static str,
    what: &str,
    pending: u64,
    failed: u64,
    oldest: Option<chrono::DateTime<Utc>>,
) -> Check {
    let age = oldest.map(|at| (Utc::now() - at).to_std().unwrap_or_default());
    let mut detail = format!("{what}: {pending} pending, {failed} failed");
    if let Some(age) = age {
        detail.push_str(&format!("; the oldest pending one arrived {} ago", human_duration(age)));
    }
    if age.is_some_and(|a| a > STUCK_AFTER) {
        Check::warn(
            name,
            detail,
            Some("relaying is stuck: see the checks above and the bridge's log (is the bridge running?)".to_owned()),
        )
    } else if failed > 0 {
        Check::warn(
            name,
            detail,
            Some(
                "some items failed for good and were not relayed; the bridge's log names the cause of each".to_owned(),
            ),
        )
    } else {
        Check::pass(name, detail)
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_never_show_the_secret() {
        assert_eq!(
            shown_webhook_url("http://bridge:8080/v1/webhooks/chatwoot/int_abc/s3cr3t"),
            "http://bridge:8080/v1/webhooks/chatwoot/int_abc/…"
        );
        assert_eq!(shown_webhook_url("https://u:p@other.example/hook?k=v"), "https://other.example/hook");
    }

    #[test]
    fn sqlite_paths_and_labels() {
        assert_eq!(sqlite_path("sqlite:///tmp/x/bridge.db?mode=rwc"), Some(PathBuf::from("/tmp/x/bridge.db")));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
        assert_eq!(database_label("postgres://user:pw@db:5432/bridge"), "PostgreSQL db:5432/bridge");
    }

    #[test]
    fn signing_secrets_are_compared_never_shown() {
        use super::super::report::Status;
        let v = |text| Version::parse(text);
        let same = signing_check(Some("whsec1"), Some("whsec1"), v("4.15.1"), "i");
        assert_eq!(same.status, Status::Pass);
        let changed = signing_check(Some("whsec1"), Some("whsec2"), v("4.15.1"), "i");
        assert_eq!(changed.status, Status::Fail);
        assert!(changed.detail.contains("changed in Chatwoot (reset by an admin?)"), "{}", changed.detail);
        assert!(!changed.detail.contains("whsec") && !changed.fix.unwrap_or_default().contains("whsec"));
        assert_eq!(signing_check(None, Some("whsec2"), v("4.13.0"), "i").status, Status::Warn);
        assert_eq!(signing_check(Some("whsec1"), None, v("4.12.0"), "i").status, Status::Fail);
        assert_eq!(signing_check(None, None, v("4.10.1"), "i").status, Status::Pass);
        assert!(constant_time_eq("abc", "abc") && !constant_time_eq("abc", "abd") && !constant_time_eq("a", "ab"));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_secs(42)), "42 s");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600 + 120)), "3 h 2 min");
    }
}
