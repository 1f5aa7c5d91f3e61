//! Replays the committed corpus of fuzz target `tokio_server` (a whole Tokio
//! server fed arbitrary bytes over an in-memory stream) on stable, so that
//! `cargo test --workspace` checks every saved input and every regression.
//!
//! The target body is `fuzz/src/tokio_server.rs`; see `fuzz/README.md` for how
//! to fuzz it with cargo-fuzz.

#[path = "../../fuzz/src/tokio_server.rs"]
mod tokio_server;

use std::path::Path;

#[test]
fn replays_the_tokio_server_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/tokio_server");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 10, "the seed corpus is missing from {}", dir.display());
    for input in inputs {
        let data = std::fs::read(&input).expect("a corpus file");
        eprintln!("{}", input.display());
        tokio_server::tokio_server(&data);
    }
}
