//! Replays the committed corpus of fuzz target `tokio_server` (a whole Tokio
//! server fed arbitrary bytes over an in-memory stream) on stable, so that
//! `cargo test --workspace` checks every saved input: the seeds in
//! `fuzz/corpus/tokio_server/` and what fuzzing found and kept for its coverage
//! in `fuzz/found/tokio_server/`.
//!
//! The target body is `fuzz/src/tokio_server.rs`; see `fuzz/README.md` for how
//! to fuzz it with cargo-fuzz.

#[path = "../../fuzz/src/tokio_server.rs"]
mod tokio_server;

use std::path::{Path, PathBuf};

fn inputs_in(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz").join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut inputs: Vec<_> = entries.map(|entry| entry.expect("a directory entry").path()).collect();
    inputs.sort();
    inputs
}

#[test]
fn replays_the_tokio_server_corpus() {
    let seeds = inputs_in("corpus/tokio_server");
    assert!(seeds.len() >= 10, "the seed corpus is missing");
    for input in seeds.into_iter().chain(inputs_in("found/tokio_server")) {
        let data = std::fs::read(&input).expect("a corpus file");
        eprintln!("{}", input.display());
        tokio_server::tokio_server(&data);
    }
}
