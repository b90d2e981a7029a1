//! The layers go one way: `http`/`doctor` → `integrations` (with `state`) → `relay` → `chatwoot`, `ryzeapi`,
//! `store` → leaves. A module that names a module of a higher layer, or one of the three neighbours that
//! names another, fails this test with the file and line; `docs/architecture.md` draws the same map.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

/// Each top-level module of the bridge crate and its layer (higher names lower, never the reverse).
const LAYERS: &[(&str, u8)] = &[
    // Leaves: vocabulary and tools with no knowledge of the flow.
    ("secret", 0),
    ("crypto", 0),
    ("config", 0),
    ("telemetry", 0),
    ("fence", 0),
    ("retry", 0),
    ("live", 0),
    // The three neighbours: each knows one outside thing, and not the others.
    ("chatwoot", 1),
    ("ryzeapi", 1),
    ("store", 1),
    // Translation between them.
    ("relay", 2),
    // Lifecycles, actors, ownership; `state` is the process's shared services they hold.
    ("integrations", 3),
    ("state", 3),
    // `AppError`, the API's errors; integrations still return it (typed errors there are left to do).
    ("error", 3),
    // Entry points.
    ("http", 4),
    ("doctor", 4),
    ("cli", 5),
    ("lib", 5),
    ("main", 5),
];

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, rank)| *rank)
        .unwrap_or_else(|| panic!("module `{module}` has no layer in tests/layers.rs: give it one"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules a line of code names through `crate::` (grouped `use crate::{a, b::c}` too).
fn named_modules(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: split at commas outside nested braces.
            let mut depth = 0;
            let mut current = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.push(first_segment(&current));
                        current.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    current.push(c);
                }
            }
            names.push(first_segment(&current));
        } else {
            names.push(first_segment(rest));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

fn first_segment(path: &str) -> String {
    path.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

#[test]
fn no_module_names_a_module_of_its_own_layer_or_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "read the crate's files: {files:?}");
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let own = layer(&module);
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for named in named_modules(code) {
                if named == module || named == "self" {
                    continue;
                }
                // Upward never; sideways only among the three neighbours (each knows one outside thing).
                if layer(&named) > own || (layer(&named) == own && own == 1) {
                    violations.push(format!(
                        "{}:{}: `{module}` (layer {own}) names `{named}` (layer {})",
                        file.strip_prefix(&src).unwrap().display(),
                        number + 1,
                        layer(&named)
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "upward or sideways references:\n{}", violations.join("\n"));
}

#[test]
fn the_reader_finds_grouped_and_plain_paths() {
    assert_eq!(named_modules("use crate::{store, relay::inbound::{self, X}};"), ["store", "relay"]);
    assert_eq!(named_modules("let x = crate::integrations::view::of(crate::state::get());"), ["integrations", "state"]);
    assert!(named_modules("use super::x;").is_empty());
}
