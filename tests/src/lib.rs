//! Cross-crate integration tests of microsocket.
//!
//! This crate has no API of its own. Its tests (`tests/tests/`) run the std and
//! Tokio adapters against each other over real UNIX sockets, against
//! hand-written IPC::MicroSocket 0.03-style peers that speak only the original
//! protocol, and across processes; its examples (`tests/examples/`) show the two
//! adapters talking to each other in one program.
//!
//! ```text
//! cargo test -p microsocket-tests
//! cargo run -p microsocket-tests --example cross_adapter
//! ```

#![forbid(unsafe_code)]

/// The README's Rust examples, compiled (and the core's one run) as doctests so
/// the front page stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;
