//! The command line follows conventions: `--help` lists every command and setting, `--version` answers,
//! a bad flag exits 2 with the usage, and none of them starts the server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn run(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let Output { status, stdout, stderr } = Command::new(env!("CARGO_BIN_EXE_ryze-integrations"))
        .args(args)
        .env_clear()
        // Were the server started by mistake, it would fail fast instead of listening.
        .env("BIND", "not-an-address")
        .env("BRIDGE_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8(stdout).unwrap(), String::from_utf8(stderr).unwrap());
    assert!(!stdout.contains("listening on") && !stderr.contains("configuration error"), "{stdout}{stderr}");
    (status.code().unwrap_or(-1), stdout, stderr)
}

#[test]
fn help_lists_every_command_and_setting() {
    let (code, stdout, stderr) = run(&["--help"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Usage: ryze-integrations"), "{stdout}");
    for command in ["serve", "doctor", "help"] {
        assert!(stdout.lines().any(|l| l.trim_start().starts_with(command)), "`{command}` missing:\n{stdout}");
    }
    // Every variable of docs/configuration.md (generated from the same doc comments) with its default.
    let reference = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let variables: Vec<&str> = reference
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|v| v.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(variables.len() >= 20, "{variables:?}");
    for variable in variables {
        assert!(stdout.contains(variable), "`{variable}` missing from --help:\n{stdout}");
    }
    assert!(stdout.contains("BRIDGE_DATA_DIR\n      default: `./data`"), "{stdout}");
    assert!(stdout.contains("BRIDGE_LINK_DEAD_MS\n      default: 60000"), "{stdout}");
    assert!(stdout.contains("Exit status: 0 ok"), "{stdout}");
    // -h is the same.
    assert_eq!(run(&["-h"]).0, 0);
    assert_eq!(run(&["help"]).0, 0);
}

#[test]
fn version_answers() {
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), format!("ryze-integrations {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(run(&["-V"]).1, stdout);
}

#[test]
fn a_bad_flag_is_a_usage_error() {
    let (code, stdout, stderr) = run(&["--no-such-flag"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("--no-such-flag") && stderr.contains("Usage:"), "{stderr}");
    let (code, _, stderr) = run(&["no-such-command"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = run(&["doctor", "--verbose"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--verbose"), "{stderr}");
}

#[test]
fn doctor_help_describes_its_options() {
    let (code, stdout, stderr) = run(&["doctor", "--help"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Usage: ryze-integrations doctor"), "{stdout}");
    for option in ["--chatwoot-url", "--chatwoot-token", "--account", "--json", "exit status"] {
        assert!(stdout.contains(option), "`{option}` missing:\n{stdout}");
    }
    assert_eq!(run(&["help", "doctor"]).0, 0);
}

#[test]
fn a_bad_setting_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ryze-integrations"))
        .env_clear()
        .env("BIND", "not-an-address")
        .env("BRIDGE_TOKEN", "a-long-enough-token-123")
        .env("BRIDGE_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("BIND"));
}
