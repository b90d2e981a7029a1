//! The documentation stays true: every environment variable the bridge reads is documented, and the
//! README opens with the two commands.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn every_variable_read_by_config_is_documented() {
    let config = read("src/config.rs");
    let docs = read("README.md") + &read("docs/operations.md");
    let mut variables: Vec<&str> = config
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_uppercase() || c == '_') && s.len() > 3)
        .collect();
    variables.sort_unstable();
    variables.dedup();
    assert!(variables.contains(&"BRIDGE_TOKEN") && variables.contains(&"DATABASE_URL"), "{variables:?}");
    for variable in variables {
        assert!(docs.contains(&format!("`{variable}`")), "`{variable}` is read in src/config.rs but not documented");
    }
}

#[test]
fn the_readme_opens_with_the_two_commands() {
    let readme = read("README.md");
    let block: Vec<&str> = readme.split("```").nth(1).unwrap().lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(block[0], "sh");
    assert!(block[1].starts_with("cargo run "), "{block:?}");
    assert!(block[2].starts_with("cargo test --workspace "), "{block:?}");
    let ci = read(".ci/run");
    assert!(ci.contains("cargo test --workspace"), "CI runs the README's test command");
}

/// Builds the configuration reference from the doc comments of the settings structs in `src/config.rs`:
/// every field whose doc comment names variables (`` `BRIDGE_…` ``) becomes a row.
fn configuration_reference(config: &str) -> String {
    let mut rows = Vec::new();
    let mut doc: Vec<String> = Vec::new();
    let mut in_struct = false;
    for line in config.lines() {
        let line = line.trim();
        if line.starts_with("pub struct Settings") || line.starts_with("pub struct LinkTiming") {
            in_struct = true;
            continue;
        }
        if in_struct && line == "}" {
            in_struct = false;
            continue;
        }
        if !in_struct {
            continue;
        }
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim().to_owned());
        } else if line.starts_with("pub ") {
            let text = doc.join(" ");
            if let Some((variables, meaning)) = text.split_once(": ").filter(|(v, _)| v.starts_with('`')) {
                rows.push(format!("| {variables} | {} |", meaning.replace('|', "\\|")));
            }
            doc.clear();
        } else {
            doc.clear();
        }
    }
    format!(
        "# Configuration reference\n\nGenerated from the doc comments of `Settings` and `LinkTiming` in `src/config.rs` by\n`UPDATE_DOCS=1 cargo test --test docs` (a test fails when this file and the code disagree).\n\n| variable | meaning |\n|---|---|\n{}\n",
        rows.join("\n")
    )
}

#[test]
fn the_configuration_reference_is_generated_from_the_code() {
    let generated = configuration_reference(&read("src/config.rs"));
    assert!(generated.contains("`BRIDGE_TOKEN`") && generated.contains("`BRIDGE_LINK_DEAD_MS`"), "{generated}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    if std::env::var("UPDATE_DOCS").is_ok() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(committed, generated, "docs/configuration.md is stale: run UPDATE_DOCS=1 cargo test --test docs");
}
