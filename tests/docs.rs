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
