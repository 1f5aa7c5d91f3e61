//! Replays every committed fuzz input on stable, as part of `cargo test`:
//! the seed corpus in `fuzz/corpus/<target>/`, the inputs fuzzing found and
//! kept for their coverage in `fuzz/found/<target>/`, and the regression inputs
//! in `core/tests/data/<target>-*.bin` (each a crash the fuzzers once found).
//!
//! The target bodies are `fuzz/src/lib.rs`, included here as a module, so the
//! fuzzers and this test run the very same checks.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod targets;

use std::fs;
use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 5] = [
    ("decode", targets::decode),
    ("decode_fragmented", targets::decode_fragmented),
    ("client_ops", targets::client_ops),
    ("server_ops", targets::server_ops),
    ("roundtrip", targets::roundtrip),
];

fn files_in(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    // Sorted by name, not by path: comparing paths is very slow under Miri.
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix) && !n.starts_with('.') && n != "README.md")
        .collect();
    names.sort();
    names.into_iter().map(|n| dir.join(n)).filter(|p| p.is_file()).collect()
}

fn replay(target: &str, run: Target, files: &[PathBuf]) -> usize {
    for file in files {
        let data = fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target} failed on {}", file.display());
    }
    files.len()
}

#[test]
fn seed_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut total = 0;
    for (name, run) in TARGETS {
        let files = files_in(&root.join(name), "");
        assert!(!files.is_empty(), "no seeds for {name}");
        total += replay(name, run, &files);
    }
    assert!(total >= 5);
}

/// The found inputs of one target. Miri is some thousand times slower, and slower
/// still on long inputs: there, only those whose names (content hashes) start
/// with `0` and that hold at most 128 bytes, about one in 40. The seeds and the
/// regression inputs replay in full there too.
fn found_inputs(dir: &Path) -> Vec<PathBuf> {
    if !cfg!(miri) {
        return files_in(dir, "");
    }
    files_in(dir, "0")
        .into_iter()
        .filter(|p| fs::metadata(p).is_ok_and(|m| m.len() <= 128))
        .collect()
}

#[test]
fn found_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/found");
    let total: usize = TARGETS
        .into_iter()
        .map(|(name, run)| replay(name, run, &found_inputs(&root.join(name))))
        .sum();
    assert!(total > 0, "no inputs in {}", root.display());
}

#[test]
fn regression_inputs_replay_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for (name, run) in TARGETS {
        replay(name, run, &files_in(&dir, &format!("{name}-")));
    }
}
