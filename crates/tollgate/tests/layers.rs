//! The layering invariant, read from the code itself: a module may name
//! (`crate::…`) only modules of its own layer or of a lower one. A new module
//! must be given a layer here, or this test fails. ARCHITECTURE.md explains
//! the layers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

/// Layer of each top-level module of `crates/tollgate/src`, lowest first.
const LAYERS: &[(&str, &[&str])] = &[
    // Values: no I/O, no state.
    (
        "values",
        &[
            "error",
            "time",
            "pattern",
            "record",
            "query",
            "outcome",
            "attribution",
            "budget",
            "budget_replay",
            "config",
            "audit",
            "session",
            "chargeback",
            "reconciliation",
        ],
    ),
    // The only SQL.
    ("storage", &["store"]),
    // Stages and services: values in, values out; never the shared state.
    (
        "stages",
        &[
            "auth",
            "policy",
            "metering",
            "routing",
            "pricing",
            "price_update",
            "upstream",
            "google_auth",
            "oidc",
            "upload",
            "cache",
            "semantic",
            "govern",
            "ledger",
            "analytics",
            "observe",
            "keys",
            "redact",
            "listener",
            "reconcile",
            "whatif",
            "usage_events",
        ],
    ),
    // The shared state and the request path over it.
    ("request path", &["state", "pipeline"]),
    // HTTP handlers, the server, the command line.
    ("edges", &["api", "batch", "dashboard", "server", "cli", "demo", "prices_cli", "audit_cli", "finops_cli"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

/// The top-level module a source file belongs to (`store/sqlite.rs` → `store`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
    first.trim_end_matches(".rs").to_string()
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The text without its `#[cfg(test)] mod … { … }` blocks (braces counted).
fn without_unit_tests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("#[cfg(test)]\nmod ") {
        out.push_str(&rest[..i]);
        let block = &rest[i..];
        let Some(open) = block.find('{') else { return out };
        let mut depth = 0usize;
        let mut end = block.len();
        for (j, c) in block[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &block[end..];
    }
    out.push_str(rest);
    out
}

/// The modules a file names through `crate::`, outside its unit tests.
fn named_modules(text: &str) -> Vec<String> {
    let code = without_unit_tests(text);
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c}`: every first segment in the group.
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                out.push(name);
            }
        } else {
            out.push(rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect());
        }
    }
    out
}

#[test]
fn every_module_imports_only_its_own_layer_or_lower_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong: Vec<String> = Vec::new();
    let mut unplaced: BTreeMap<String, ()> = BTreeMap::new();
    for f in &files {
        let module = module_of(&src, f);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(mine) = layer_of(&module) else {
            unplaced.insert(module, ());
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for target in named_modules(&text) {
            if target == module || target.is_empty() || target.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                continue;
            }
            match layer_of(&target) {
                Some(theirs) if theirs > mine => wrong.push(format!(
                    "{} ({}) imports crate::{target} ({})",
                    f.strip_prefix(&src).unwrap().display(),
                    LAYERS[mine].0,
                    LAYERS[theirs].0
                )),
                Some(_) => {}
                None => {
                    unplaced.insert(target, ());
                }
            }
        }
    }
    assert!(unplaced.is_empty(), "modules without a layer in tests/layers.rs: {:?}", unplaced.keys());
    assert!(wrong.is_empty(), "imports running up the layers:\n{}", wrong.join("\n"));
}

#[test]
fn the_reader_sees_grouped_and_path_imports() {
    let text = "use crate::{config::Config, store};\nlet x = crate::time::now_ms();\n#[cfg(test)]\nmod tests { fn f() { use crate::server; } }\nuse crate::pipeline;";
    assert_eq!(named_modules(text), vec!["config", "store", "time", "pipeline"]);
}
