//! The Chatwoot checks shared by both modes: reachability and health (`GET /api`), version, webhook
//! delivery to private addresses, token (`GET /api/v1/profile`) and administrator role on the account.
//! Fixes reuse the activation error table (`AppError::from_chatwoot`), so an operator reads the same words
//! here as in a failed activation.

use crate::chatwoot::dto::{ApiInfo, Inbox};
use crate::chatwoot::{ChatwootClient, ChatwootError, Failure};
use crate::error::{AppError, ChatwootContext};

use super::network::{HostKind, classify_url_host};
use super::report::Check;

/// Below this, Chatwoot cannot receive message status updates (no `PATCH …/messages/{id}` for API inboxes).
const STATUS_TICKS: (u64, u64, u64) = (4, 2, 0);
/// From this on, webhooks go through SafeFetch, which refuses private addresses.
const SAFE_FETCH: (u64, u64, u64) = (4, 14, 0);
/// From this on, `SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true` lets webhooks reach private addresses again.
const SAFE_FETCH_OVERRIDE: (u64, u64, u64) = (4, 14, 1);
/// From this on, API inboxes sign their webhooks.
const SIGNING: (u64, u64, u64) = (4, 13, 0);

/// What the account-level checks found.
pub enum Access {
    /// Stop here: Chatwoot, the token or the account cannot be used (the failing check says why).
    Stopped,
    /// The token works on the account. `inboxes` is set when the role check already listed them.
    Granted { inboxes: Option<Vec<Inbox>> },
}

/// The table row for `error`, as text.
pub fn table_fix(error: &ChatwootError, ctx: ChatwootContext<'_>) -> String {
    AppError::from_chatwoot(error, ctx).to_string()
}

/// Runs the checks up to and including the administrator role, appending them to `checks`.
/// `public_url` is the bridge's `BRIDGE_PUBLIC_URL` (the host Chatwoot's webhooks go to).
pub async fn account_checks(chatwoot: &ChatwootClient, public_url: &str, checks: &mut Vec<Check>) -> Access {
    let target = chatwoot.target();
    let ctx = |action| ChatwootContext { base_url: &target.base_url, account_id: target.account_id, action };

    match chatwoot.api_info().await {
        Ok(info) => {
            checks.push(Check::pass("chatwoot reachable", format!("Chatwoot answers at {}", target.base_url)));
            checks.push(services_check(&info));
            match parse_version(&info.version) {
                Some(version) => {
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
            Access::Granted { inboxes: None }
        }
        Some(m) => {
            let detail =
                format!("the token's user is `{}` on account {account_id}; `administrator` is required", m.role);
            let fix = AppError::chatwoot_row(Failure::Forbidden, detail.clone(), None, ctx("checking the token"));
            checks.push(Check::fail("administrator role", detail, fix.to_string()));
            Access::Granted { inboxes: None }
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
                Access::Granted { inboxes: Some(inboxes) }
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

fn version_check(text: &str, version: (u64, u64, u64)) -> Check {
    if version < STATUS_TICKS {
        Check::warn(
            "chatwoot version",
            format!("Chatwoot {text}: message status ticks need Chatwoot ≥ 4.2"),
            Some("upgrade Chatwoot to 4.2 or newer to see delivered/read ticks; everything else works".to_owned()),
        )
    } else if version < SIGNING {
        Check::pass("chatwoot version", format!("Chatwoot {text} (webhooks are signed only from 4.13 on)"))
    } else {
        Check::pass("chatwoot version", format!("Chatwoot {text}"))
    }
}

/// Chatwoot ≥ 4.14 sends webhooks through SafeFetch, which blocks private addresses.
async fn private_network_check(version: (u64, u64, u64), public_url: &str) -> Option<Check> {
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

/// `4.15.1` → `(4, 15, 1)`; a suffix such as `-ce` is ignored, a missing part counts as 0.
pub fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let mut parts = text.trim().trim_start_matches('v').split('.').map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u64>().ok()
    });
    let major = parts.next().flatten()?;
    Some((major, parts.next().flatten().unwrap_or(0), parts.next().flatten().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("4.15.1"), Some((4, 15, 1)));
        assert_eq!(parse_version("4.1"), Some((4, 1, 0)));
        assert_eq!(parse_version("v4.14.0-ce"), Some((4, 14, 0)));
        assert_eq!(parse_version("unknown"), None);
        assert!(parse_version("4.1.0").unwrap() < STATUS_TICKS);
        assert!(parse_version("4.2.0").unwrap() >= STATUS_TICKS);
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
