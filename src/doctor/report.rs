//! Check results and how they are printed: one line per check for people, one JSON document for automation.

use std::fmt::Write as _;

use serde::Serialize;

/// The outcome of one check. Only `Fail` changes the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    fn symbol(self) -> char {
        match self {
            Self::Pass => '✔',
            Self::Warn => '!',
            Self::Fail => '✖',
        }
    }
}

/// One line of the checklist. `fix` says in plain words what to do (failures always have one; warnings
/// when there is something to do).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, status: Status::Pass, detail: detail.into(), fix: None }
    }

    pub fn warn(name: &'static str, detail: impl Into<String>, fix: Option<String>) -> Self {
        Self { name, status: Status::Warn, detail: detail.into(), fix }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }
}

/// The checks of one stored integration.
#[derive(Debug, Clone, Serialize)]
pub struct IntegrationReport {
    pub id: String,
    pub instance: String,
    /// The stored status (`active`, `paused`, `error`).
    pub status: String,
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// What `--chatwoot-url … --account …` probed (the token is never part of a report).
#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    pub chatwoot_url: String,
    pub account_id: i64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    /// `chatwoot` (one Chatwoot given on the command line) or `stored` (every stored integration).
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetView>,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrations: Option<Vec<IntegrationReport>>,
}

pub fn all_pass(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status != Status::Fail)
}

impl Report {
    pub fn new(
        mode: &'static str,
        target: Option<TargetView>,
        checks: Vec<Check>,
        integrations: Option<Vec<IntegrationReport>>,
    ) -> Self {
        let ok = all_pass(&checks) && integrations.iter().flatten().all(|i| i.ok);
        Self { ok, mode, target, checks, integrations }
    }

    fn every_check_mut(&mut self) -> impl Iterator<Item = &mut Check> {
        self.checks.iter_mut().chain(self.integrations.iter_mut().flatten().flat_map(|i| i.checks.iter_mut()))
    }

    fn every_check(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().chain(self.integrations.iter().flatten().flat_map(|i| i.checks.iter()))
    }

    /// Replaces every occurrence of the given secrets in details and fixes (defence in depth: Chatwoot or a
    /// proxy could echo a token back in an error text).
    pub fn redact(&mut self, secrets: &[String]) {
        let secrets: Vec<&String> = secrets.iter().filter(|s| s.len() >= 4).collect();
        let scrub = |text: &mut String| {
            for secret in &secrets {
                if text.contains(secret.as_str()) {
                    *text = text.replace(secret.as_str(), "[redacted]");
                }
            }
        };
        for check in self.every_check_mut() {
            scrub(&mut check.detail);
            if let Some(fix) = check.fix.as_mut() {
                scrub(fix);
            }
        }
    }

    /// The checklist for people.
    pub fn human(&self) -> String {
        let mut out = String::new();
        match (&self.target, &self.integrations) {
            (Some(target), _) => {
                let _ = writeln!(out, "Chatwoot at {}, account {}", target.chatwoot_url, target.account_id);
            }
            (None, Some(list)) => {
                let _ = writeln!(out, "Stored integrations: {}", list.len());
            }
            (None, None) => {}
        }
        for check in &self.checks {
            write_check(&mut out, check, "");
        }
        for integration in self.integrations.iter().flatten() {
            let _ = writeln!(
                out,
                "\nintegration {} (instance {}, {})",
                integration.id, integration.instance, integration.status
            );
            for check in &integration.checks {
                write_check(&mut out, check, "  ");
            }
        }
        let count = |status| self.every_check().filter(|c| c.status == status).count();
        let (passed, warnings, failed) = (count(Status::Pass), count(Status::Warn), count(Status::Fail));
        let verdict = if self.ok { "OK" } else { "NOT OK" };
        let _ = writeln!(out, "\n{verdict}: {passed} passed, {warnings} warnings, {failed} failed");
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"ok\":false,\"error\":\"{e}\"}}"))
    }
}

fn write_check(out: &mut String, check: &Check, indent: &str) {
    let _ = writeln!(out, "{indent}{} {}: {}", check.status.symbol(), check.name, check.detail);
    if let Some(fix) = &check.fix {
        let _ = writeln!(out, "{indent}    fix: {fix}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_keep_the_report_ok_and_secrets_are_scrubbed() {
        let mut report = Report::new(
            "chatwoot",
            Some(TargetView { chatwoot_url: "http://cw".into(), account_id: 5 }),
            vec![Check::pass("a", "fine"), Check::warn("b", "old tok-123456", Some("upgrade".into()))],
            None,
        );
        assert!(report.ok);
        report.redact(&["tok-123456".to_owned()]);
        let text = report.human();
        assert!(text.contains("✔ a: fine") && text.contains("! b: old [redacted]"), "{text}");
        assert!(text.contains("    fix: upgrade") && text.contains("OK: 1 passed, 1 warnings, 0 failed"), "{text}");
        let failing = Report::new("stored", None, vec![Check::fail("c", "broken", "repair it")], Some(Vec::new()));
        assert!(!failing.ok);
        let json: serde_json::Value = serde_json::from_str(&failing.json()).unwrap_or_default();
        assert_eq!(json["checks"][0]["status"], "fail");
        assert_eq!(json["integrations"], serde_json::json!([]));
    }
}
