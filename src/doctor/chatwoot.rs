//! The Chatwoot checks shared by both modes: reachability and health (`GET /api`), version, webhook
//! delivery to private addresses, token (`GET /api/v1/profile`) and administrator role on the account.
//! Fixes reuse the activation error table (`AppError::from_chatwoot`), so an operator reads the same words
//! here as in a failed activation.

use crate::chatwoot::dto::{ApiInfo, Inbox};
use crate::chatwoot::version::{
    BACKSLASH_BREAKS, BACKSLASH_BREAKS_FIXED, CONTENT_ATTRIBUTES, OLDEST_SUPPORTED, SAFE_FETCH, SAFE_FETCH_OVERRIDE,
    SIGNING, STATUS_TICKS, Version,
};
use crate::chatwoot::{ChatwootClient, ChatwootError, Failure};
use crate::error::{AppError, ChatwootContext};

use super::network::{HostKind, classify_url_host};
use super::report::Check;

/// Devise's answer when a request carries no access token at all (`access_token_auth_helper.rb` found
/// neither `api_access_token` nor `HTTP_API_ACCESS_TOKEN`).
const DEVISE_SIGN_IN: &str = "You need to sign in or sign up before continuing.";

/// What the account-level checks found.
pub enum Access {
    /// Stop here: Chatwoot, the token or the account cannot be used (the failing check says why).
    Stopped,
    /// The token works on the account. `inboxes` is set when the role check already listed them;
    /// `version` when `GET /api` told it.
    Granted { inboxes: Option<Vec<Inbox>>, version: Option<Version> },
}

/// What to do about `error`: the activation error table's row, except for two answers whose cause the
/// table would misname (a wrong token, an unreachable host): devise's 401 although a token was sent (a
/// reverse proxy dropped the header) and Rack::Attack's 429 (this host is throttled).
pub fn table_fix(error: &ChatwootError, ctx: ChatwootContext<'_>) -> String {
    match error {
        ChatwootError::Status { status: 401, message, .. } if message.trim() == DEVISE_SIGN_IN => format!(
            "Chatwoot received no access token although the bridge sent one: a reverse proxy in front of Chatwoot drops or strips the access-token header. The bridge sends it as `Api-Access-Token` (Chatwoot reads it as HTTP_API_ACCESS_TOKEN); let the proxy pass that header to Chatwoot unchanged (nginx drops header names with underscores unless `underscores_in_headers on;` is set, as in Chatwoot's deployment/nginx_chatwoot.conf, which clients sending `api_access_token` need). Detail: {}",
            error.detail()
        ),
        ChatwootError::Status { status: 429, .. } => format!(
            "Chatwoot at {} is throttling this host (Rack::Attack answers 429 `Retry later`, without Retry-After): every integration of this bridge shares one budget of RACK_ATTACK_LIMIT requests a minute per IP (default 3000, config/initializers/rack_attack.rb). In Chatwoot's environment set RACK_ATTACK_ALLOWED_IPS=<the bridge's IP as Chatwoot sees it>, or a higher RACK_ATTACK_LIMIT, and restart Chatwoot. Detail: {}",
            ctx.base_url,
            error.detail()
        ),
        _ => AppError::from_chatwoot(error, ctx).to_string(),
    }
}

/// Runs the checks up to and including the administrator role, appending them to `checks`.
/// `public_url` is the bridge's `BRIDGE_PUBLIC_URL` (the host Chatwoot's webhooks go to).
pub async fn account_checks(chatwoot: &ChatwootClient, public_url: &str, checks: &mut Vec<Check>) -> Access {
    let target = chatwoot.target();
    let ctx = |action| ChatwootContext { base_url: &target.base_url, account_id: target.account_id, action };

    let mut known_version = None;
    match chatwoot.api_info().await {
        Ok(info) => {
            checks.push(Check::pass("chatwoot reachable", format!("Chatwoot answers at {}", target.base_url)));
            checks.push(services_check(&info));
            match Version::parse(&info.version) {
                Some(version) => {
                    known_version = Some(version);
                    checks.push(version_check(&info.version, version));
                    if let Some(check) = private_network_check(version, public_url).await {
                        checks.push(check);
                    }
                }
                None => checks.push(Check::warn(
                    "chatwoot version",
                    format!("cannot read the version `{}` from GET /api", info.version),
                    None,
                )),
            }
        }
        Err(e) if e.failure().is_retryable() => {
            checks.push(Check::fail(
                "chatwoot reachable",
                format!("GET {}/api failed: {}", target.base_url, e.detail()),
                table_fix(&e, ctx("reading the Chatwoot version")),
            ));
            return Access::Stopped;
        }
        Err(e) => checks.push(Check::warn(
            "chatwoot reachable",
            format!(
                "GET {}/api did not answer Chatwoot's version JSON ({}); the version is unknown",
                target.base_url,
                e.detail()
            ),
            Some(format!(
                "verify that {} is Chatwoot's root URL (without /app or /api); a very old Chatwoot or a proxy may hide GET /api",
                target.base_url
            )),
        )),
    }

    let profile = match chatwoot.profile().await {
        Ok(profile) => {
            checks.push(Check::pass("chatwoot token", format!("valid: user `{}` (id {})", profile.name, profile.id)));
            profile
        }
        Err(e) => {
            checks.push(Check::fail(
                "chatwoot token",
                format!("GET /api/v1/profile refused: {}", e.detail()),
                table_fix(&e, ctx("checking the token")),
            ));
            return Access::Stopped;
        }
    };

    let account_id = target.account_id;
    let membership = profile.accounts.iter().find(|a| a.id == account_id);
    match membership {
        Some(m) if m.status.as_deref() == Some("suspended") => {
            let detail = format!("account {account_id} is suspended");
            let fix = AppError::chatwoot_row(Failure::Forbidden, detail.clone(), None, ctx("checking the token"));
            checks.push(Check::fail("administrator role", detail, fix.to_string()));
            Access::Stopped
        }
        Some(m) if m.role == "administrator" => {
            checks.push(Check::pass("administrator role", format!("administrator on account {account_id}")));
            Access::Granted { inboxes: None, version: known_version }
        }
        Some(m) => {
            let detail =
                format!("the token's user is `{}` on account {account_id}; `administrator` is required", m.role);
            let fix = AppError::chatwoot_row(Failure::Forbidden, detail.clone(), None, ctx("checking the token"));
            checks.push(Check::fail("administrator role", detail, fix.to_string()));
            Access::Granted { inboxes: None, version: known_version }
        }
        None => match chatwoot.list_inboxes().await {
            Ok(inboxes) => {
                checks.push(Check::warn(
                    "administrator role",
                    format!(
                        "the token's user is not a member of account {account_id}, yet the account answers (a super admin?)"
                    ),
                    Some(format!(
                        "use the token of a user who is administrator on account {account_id}; inbox changes may be refused otherwise"
                    )),
                ));
                Access::Granted { inboxes: Some(inboxes), version: known_version }
            }
            Err(e) => {
                let detail = match e.failure() {
                    Failure::NotFound => format!("account {account_id} does not exist at {}", target.base_url),
                    Failure::Forbidden => format!("the token's user is not a member of account {account_id}"),
                    _ => format!("account {account_id} cannot be read: {}", e.detail()),
                };
                checks.push(Check::fail("administrator role", detail, table_fix(&e, ctx("checking the token"))));
                Access::Stopped
            }
        },
    }
}

fn services_check(info: &ApiInfo) -> Check {
    let healthy = |v: &Option<String>| v.as_deref().is_none_or(|v| v == "ok");
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "not reported".to_owned());
    let detail =
        format!("queue_services {}, data_services {}", shown(&info.queue_services), shown(&info.data_services));
    match (healthy(&info.queue_services), healthy(&info.data_services)) {
        (true, true) => Check::pass("chatwoot services", detail),
        (queue_ok, data_ok) => {
            let mut fixes = Vec::new();
            if !queue_ok {
                fixes.push("Chatwoot cannot reach its Redis: webhooks to the bridge are not sent; check Chatwoot's REDIS_URL and that its sidekiq worker runs");
            }
            if !data_ok {
                fixes.push("Chatwoot cannot reach its PostgreSQL; check Chatwoot's database settings and that the database is up");
            }
            Check::fail("chatwoot services", detail, fixes.join("; "))
        }
    }
}

/// Fails below the oldest supported release; warns below [`CONTENT_ATTRIBUTES`], naming what each older
/// range lacks; passes from there on, with notes on unsigned webhooks and agent line breaks.
fn version_check(text: &str, version: Version) -> Check {
    const NAME: &str = "chatwoot version";
    if version < OLDEST_SUPPORTED {
        return Check::fail(
            NAME,
            format!(
                "Chatwoot {text} is older than {OLDEST_SUPPORTED}: it drops a message's source_id, so every message typed on the phone would come back as an agent reply and be sent to WhatsApp again, in a loop; the bridge refuses to activate on it"
            ),
            format!("upgrade Chatwoot to {OLDEST_SUPPORTED} or newer ({SIGNING} or newer for every feature)"),
        );
    }
    if version < CONTENT_ATTRIBUTES {
        let mut lacks = Vec::new();
        if version < STATUS_TICKS {
            lacks.push(format!("message status ticks (delivered/read) need Chatwoot ≥ {STATUS_TICKS}"));
        }
        lacks.push(format!(
            "quotes, reactions and edits are threaded only when the quoted message is known to the bridge: Chatwoot before {CONTENT_ATTRIBUTES} drops content_attributes other than in_reply_to"
        ));
        lacks.push(format!("webhooks are not signed before {SIGNING}: only the secret webhook URL protects them"));
        return Check::warn(
            NAME,
            format!("Chatwoot {text}: {}", lacks.join("; ")),
            Some(format!("upgrade Chatwoot to {SIGNING} or newer for all of these; everything else works")),
        );
    }
    let mut notes = Vec::new();
    if version < SIGNING {
        notes.push(format!("webhooks are signed only from {SIGNING} on"));
    }
    if (BACKSLASH_BREAKS..BACKSLASH_BREAKS_FIXED).contains(&version) {
        notes.push("agent line breaks arrive as `\\`+newline, which the bridge repairs".to_owned());
    }
    if notes.is_empty() {
        Check::pass(NAME, format!("Chatwoot {text}"))
    } else {
        Check::pass(NAME, format!("Chatwoot {text} ({})", notes.join("; ")))
    }
}

/// Chatwoot ≥ 4.14 sends webhooks through SafeFetch, which blocks private addresses.
async fn private_network_check(version: Version, public_url: &str) -> Option<Check> {
    const NAME: &str = "webhook to private address";
    if version < SAFE_FETCH {
        return None;
    }
    Some(match classify_url_host(public_url).await {
        HostKind::Private(what) if version < SAFE_FETCH_OVERRIDE => Check::warn(
            NAME,
            format!(
                "Chatwoot 4.14.0 refuses webhooks to private addresses and BRIDGE_PUBLIC_URL ({public_url}) is {what}"
            ),
            Some("upgrade Chatwoot to 4.14.1 or newer and set SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true in its environment, or give the bridge a public BRIDGE_PUBLIC_URL".to_owned()),
        ),
        HostKind::Private(what) => Check::warn(
            NAME,
            format!(
                "Chatwoot ≥ 4.14 refuses webhooks to private addresses and BRIDGE_PUBLIC_URL ({public_url}) is {what}"
            ),
            Some("Chatwoot needs SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true in its environment (web and sidekiq, then restart) to reach the bridge, or give the bridge a public BRIDGE_PUBLIC_URL".to_owned()),
        ),
        HostKind::Public => Check::pass(NAME, format!("BRIDGE_PUBLIC_URL ({public_url}) is a public address")),
        HostKind::Unresolved => Check::pass(
            NAME,
            format!(
                "BRIDGE_PUBLIC_URL ({public_url}) does not resolve here; Chatwoot must resolve it to a public address (or set SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true)"
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> Check {
        version_check(text, Version::parse(text).unwrap_or(Version(0, 0, 0)))
    }

    #[test]
    fn versions_fail_warn_and_pass_by_range() {
        use super::super::report::Status;
        let old = version("3.3.9");
        assert_eq!(old.status, Status::Fail);
        assert!(old.detail.contains("source_id") && old.detail.contains("loop"), "{}", old.detail);
        let early = version("3.4.0");
        assert_eq!(early.status, Status::Warn);
        assert!(early.detail.contains("ticks") && early.detail.contains("in_reply_to"), "{}", early.detail);
        assert!(early.detail.contains("not signed"), "{}", early.detail);
        let middle = version("4.8.1");
        assert_eq!(middle.status, Status::Warn);
        assert!(!middle.detail.contains("ticks") && middle.detail.contains("in_reply_to"), "{}", middle.detail);
        let breaks = version("4.10.1");
        assert_eq!(breaks.status, Status::Pass);
        assert!(breaks.detail.contains("signed only from 4.13.0") && breaks.detail.contains("repairs"));
        let signed = version("4.13.0");
        assert_eq!((signed.status, signed.detail.as_str()), (Status::Pass, "Chatwoot 4.13.0"));
    }

    #[test]
    fn proxy_and_throttle_answers_get_their_own_fix() {
        let ctx = ChatwootContext { base_url: "http://cw", account_id: 5, action: "checking the token" };
        let status = |status: u16, message: &str| ChatwootError::Status {
            status,
            message: message.to_owned(),
            retry_after: None,
        };
        let proxy = table_fix(&status(401, DEVISE_SIGN_IN), ctx);
        assert!(proxy.contains("reverse proxy") && proxy.contains("`Api-Access-Token`"), "{proxy}");
        let throttled = table_fix(&status(429, "Retry later"), ctx);
        assert!(throttled.contains("RACK_ATTACK_ALLOWED_IPS") && throttled.contains("RACK_ATTACK_LIMIT"));
        let token = table_fix(&status(401, "Invalid Access Token"), ctx);
        assert!(token.starts_with("Chatwoot rejected the API token"), "{token}");
    }

    #[test]
    fn failing_services_fail_with_a_fix() {
        let info = ApiInfo {
            version: "4.15.1".into(),
            queue_services: Some("failing".into()),
            data_services: Some("ok".into()),
        };
        let check = services_check(&info);
        assert_eq!(check.status, super::super::report::Status::Fail);
        assert!(check.fix.unwrap().contains("Redis"));
        let old = ApiInfo { version: "3.0.0".into(), queue_services: None, data_services: None };
        assert_eq!(services_check(&old).status, super::super::report::Status::Pass);
    }
}
