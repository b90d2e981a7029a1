//! `ryze-integrations doctor`: is Chatwoot (and RyzeAPI) wired correctly? A checklist with a plain-words fix
//! for every failure, `--json` for automation. It changes nothing (see `docs/doctor.md`).
//!
//! - With `--chatwoot-url U --chatwoot-token T --account N`: probes that Chatwoot the way an activation
//!   would (`GET /api`, token, administrator role, inbox listing), without creating anything.
//! - Without them: checks every stored integration (Chatwoot, token, inbox and its webhook URL, the RyzeAPI
//!   WebSocket with the bridge token, the inbound and outbound queues).
//!
//! Exit status: 0 when no check failed (warnings allowed), 1 when one did, 2 for a usage error.

mod chatwoot;
mod network;
pub mod report;
mod stored;

use std::collections::HashMap;
use std::process::ExitCode;

use crate::chatwoot::{ChatwootClient, ChatwootTarget};
use crate::config::{Settings, normalize_base_url};
use crate::error::ChatwootContext;
use crate::secret::Secret;
use crate::telemetry::Metrics;

use self::chatwoot::{Access, account_checks, table_fix};
use self::report::{Check, Report, TargetView};

pub const USAGE: &str = "\
usage: ryze-integrations doctor [--chatwoot-url URL --chatwoot-token TOKEN --account ID] [--json]

  without the Chatwoot options: checks every stored integration (same environment as the bridge)
  with them:                    checks that Chatwoot, token and account before an activation
  --chatwoot-token -            reads the token from standard input (keeps it out of the process list)
  --json                        one JSON document instead of the checklist

exit status: 0 when no check failed (warnings allowed), 1 when one did, 2 for a usage error";

/// The Chatwoot given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub chatwoot_url: String,
    pub token: Secret,
    pub account_id: i64,
}

/// Parsed command line (the words after `doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Run { json: bool, target: Option<Target> },
}

/// Parses `[--chatwoot-url U --chatwoot-token T --account N] [--json]` (`--name=value` works too).
pub fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut json = false;
    let (mut url, mut token, mut account) = (None, None, None);
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let (name, inline) = match word.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (word.as_str(), None),
        };
        let slot = match name {
            "-h" | "--help" => return Ok(Command::Help),
            "--json" if inline.is_none() => {
                json = true;
                continue;
            }
            "--json" => return Err("`--json` takes no value".to_owned()),
            "--chatwoot-url" => &mut url,
            "--chatwoot-token" => &mut token,
            "--account" => &mut account,
            other => return Err(format!("unknown argument `{other}`")),
        };
        let value = match inline {
            Some(value) => value,
            None => words.next().cloned().ok_or_else(|| format!("`{name}` needs a value"))?,
        };
        if slot.replace(value).is_some() {
            return Err(format!("`{name}` given twice"));
        }
    }
    let target = match (url, token, account) {
        (None, None, None) => None,
        (Some(url), Some(token), Some(account)) => {
            let chatwoot_url =
                normalize_base_url(url.trim()).map_err(|problem| format!("--chatwoot-url: {problem}"))?;
            let account_id = account
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| "--account must be a positive integer".to_owned())?;
            if token.trim().is_empty() {
                return Err("--chatwoot-token must not be empty".to_owned());
            }
            Some(Target { chatwoot_url, token: Secret::new(token.trim()), account_id })
        }
        _ => return Err("--chatwoot-url, --chatwoot-token and --account go together".to_owned()),
    };
    Ok(Command::Run { json, target })
}

/// Entry point of the subcommand. Must run inside an actix system (awc needs one).
pub async fn run(args: &[String]) -> ExitCode {
    let (json, target) = match parse_args(args) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run { json, target }) => (json, target),
        Err(problem) => {
            eprintln!("doctor: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let target = match target.map(token_from_stdin).transpose() {
        Ok(target) => target,
        Err(problem) => {
            eprintln!("doctor: {problem}");
            return ExitCode::from(2);
        }
    };
    let (mut report, secrets) = match target {
        Some(target) => probe_target(target).await,
        None => stored::run().await,
    };
    report.redact(&secrets);
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.human());
    }
    if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `--chatwoot-token -` reads the token from the first line of standard input (a token on the command line
/// is visible to other users of the machine in the process list).
fn token_from_stdin(mut target: Target) -> Result<Target, String> {
    if target.token.expose() != "-" {
        return Ok(target);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read the token from standard input: {e}"))?;
    let token = line.trim();
    if token.is_empty() {
        return Err("--chatwoot-token -: standard input holds no token".to_owned());
    }
    target.token = Secret::new(token);
    Ok(target)
}

/// The settings a probe of a given Chatwoot needs (Chatwoot timeout, public URL), read like the bridge
/// reads them. Secrets and the database are not needed here: placeholders stand in for missing ones, so
/// that nothing is generated in the data dir.
fn probe_settings() -> Result<Settings, crate::config::ConfigError> {
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    let placeholders = [
        ("BRIDGE_TOKEN", "doctor-placeholder-token"),
        ("BRIDGE_ENCRYPTION_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        ("DATABASE_URL", "postgres://unused.invalid/doctor"),
    ];
    for (name, placeholder) in placeholders {
        if vars.get(name).is_none_or(|v| v.trim().is_empty()) {
            vars.insert(name.to_owned(), placeholder.to_owned());
        }
    }
    Settings::from_vars(&vars)
}

/// Doctor with `--chatwoot-url … --account …`.
async fn probe_target(target: Target) -> (Report, Vec<String>) {
    let secrets = vec![target.token.expose().to_owned()];
    let view = TargetView { chatwoot_url: target.chatwoot_url.clone(), account_id: target.account_id };
    let mut checks = Vec::new();
    let settings = match probe_settings() {
        Ok(settings) => settings,
        Err(e) => {
            checks.push(Check::fail("configuration", e.to_string(), "correct the variable named above"));
            return (Report::new("chatwoot", Some(view), checks, None), secrets);
        }
    };
    let client = ChatwootClient::new(
        crate::config::http_client(),
        ChatwootTarget { base_url: target.chatwoot_url.clone(), account_id: target.account_id, token: target.token },
        settings.chatwoot_timeout,
        Metrics::default(),
    );
    if let Access::Granted { inboxes, .. } = account_checks(&client, &settings.public_url, &mut checks).await {
        let listed = match inboxes {
            Some(inboxes) => Ok(inboxes),
            None => client.list_inboxes().await,
        };
        checks.push(match listed {
            Ok(inboxes) => {
                let api = inboxes.iter().filter(|i| i.channel_type == "Channel::Api").count();
                Check::pass("inbox listing", format!("{} inboxes visible, {api} of them API inboxes", inboxes.len()))
            }
            Err(e) => {
                let ctx = ChatwootContext {
                    base_url: &target.chatwoot_url,
                    account_id: target.account_id,
                    action: "listing the inboxes",
                };
                Check::fail("inbox listing", format!("GET …/inboxes refused: {}", e.detail()), table_fix(&e, ctx))
            }
        });
    }
    (Report::new("chatwoot", Some(view), checks, None), secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn parses_both_modes() {
        assert_eq!(parse_args(&[]), Ok(Command::Run { json: false, target: None }));
        assert_eq!(parse_args(&args(&["--json"])), Ok(Command::Run { json: true, target: None }));
        assert_eq!(parse_args(&args(&["--help"])), Ok(Command::Help));
        let parsed = parse_args(&args(&[
            "--chatwoot-url",
            "http://cw:3000/",
            "--chatwoot-token=t0k",
            "--account",
            "5",
            "--json",
        ]));
        let Ok(Command::Run { json: true, target: Some(target) }) = parsed else { panic!("{parsed:?}") };
        assert_eq!(
            (target.chatwoot_url.as_str(), target.token.expose(), target.account_id),
            ("http://cw:3000", "t0k", 5)
        );
    }

    #[test]
    fn refuses_bad_usage() {
        for bad in [
            &["--chatwoot-url", "http://cw"][..],
            &["--account", "0", "--chatwoot-url", "http://cw", "--chatwoot-token", "t"],
            &["--chatwoot-url", "cw", "--chatwoot-token", "t", "--account", "1"],
            &["--chatwoot-token"],
            &["--verbose"],
            &["--json", "--json=1"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?}");
        }
    }
}
