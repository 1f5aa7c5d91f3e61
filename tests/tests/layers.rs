//! The workspace's layering, checked from its sources: which crate may
//! depend on which (core at the bottom, host and socket above it, the two
//! adapters side by side, the rest on top), and within each crate no two
//! modules importing each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The `microsocket-*` crates a manifest's `[dependencies]` name.
fn internal_dependencies(dir: &str) -> BTreeSet<String> {
    let manifest = std::fs::read_to_string(root().join(dir).join("Cargo.toml")).unwrap();
    let mut in_dependencies = false;
    let mut found = BTreeSet::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if in_dependencies && line.starts_with("microsocket-") {
            found.insert(line.split([' ', '=']).next().unwrap().to_string());
        }
    }
    found
}

#[test]
fn crates_depend_only_on_the_layers_below() {
    let allowed: &[(&str, &[&str])] = &[
        ("core", &[]),
        ("host", &["microsocket-core"]),
        ("socket", &[]),
        (
            "std-adapter",
            &["microsocket-core", "microsocket-host", "microsocket-socket"],
        ),
        (
            "tokio-adapter",
            &["microsocket-core", "microsocket-host", "microsocket-socket"],
        ),
        ("nats", &["microsocket-core", "microsocket-tokio"]),
    ];
    for (dir, may) in allowed {
        let found = internal_dependencies(dir);
        let extra: Vec<_> = found.iter().filter(|d| !may.contains(&d.as_str())).collect();
        assert!(extra.is_empty(), "{dir} depends on {extra:?}, above or beside it");
    }
}

/// Every module of a crate (by path: `["client", "state"]`) and its source.
fn modules(src: &Path) -> BTreeMap<Vec<String>, String> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).unwrap().with_extension("");
                let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                    parts.pop();
                }
                found.insert(parts, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    found
}

/// The module a `use` path (without `use` and `;`) found in `from` names, if
/// it is one of the crate's own: the longest known prefix.
fn target(modules: &BTreeMap<Vec<String>, String>, from: &[String], path: &str) -> Option<Vec<String>> {
    let (mut at, rest): (Vec<String>, &str) = if let Some(rest) = path.strip_prefix("crate::") {
        (Vec::new(), rest)
    } else if let Some(rest) = path.strip_prefix("super::") {
        (from[..from.len().saturating_sub(1)].to_vec(), rest)
    } else {
        // A child module: `use child::...`.
        (from.to_vec(), path)
    };
    let start = at.clone();
    for part in rest.split("::") {
        let part = part.trim_matches(|c: char| matches!(c, '{' | '}' | ';' | ',') || c.is_whitespace());
        let mut next = at.clone();
        next.push(part.to_string());
        if modules.contains_key(&next) {
            at = next;
        } else {
            break;
        }
    }
    let relative = !path.starts_with("crate::") && !path.starts_with("super::");
    if relative && at == start {
        return None;
    }
    Some(at)
}

#[test]
fn no_two_modules_import_each_other() {
    for krate in ["core", "host", "socket", "std-adapter", "tokio-adapter", "nats", "cli"] {
        let modules = modules(&root().join(krate).join("src"));
        let mut edges = BTreeSet::new();
        for (module, source) in &modules {
            if module.last().is_some_and(|m| m == "tests") {
                // A test module imports what it tests, which never imports it.
                continue;
            }
            // Top-level `use` items only: an inline `mod tests` indents its own.
            for line in source.lines() {
                let line = line.strip_prefix("pub ").unwrap_or(line);
                let line = line.strip_prefix("pub(crate) ").unwrap_or(line);
                let line = line.strip_prefix("pub(super) ").unwrap_or(line);
                let Some(path) = line.strip_prefix("use ") else {
                    continue;
                };
                if let Some(to) = target(&modules, module, path) {
                    if &to != module {
                        edges.insert((module.clone(), to));
                    }
                }
            }
        }
        let mutual: Vec<_> = edges
            .iter()
            .filter(|(a, b)| a < b && edges.contains(&(b.clone(), a.clone())))
            .map(|(a, b)| format!("{} <-> {}", a.join("::"), b.join("::")))
            .collect();
        assert!(mutual.is_empty(), "{krate}: modules importing each other: {mutual:?}");
    }
}
