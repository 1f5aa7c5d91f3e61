//! Fuzz target `tokio_server`: see `../src/tokio_server.rs`.
#![no_main]

#[path = "../src/tokio_server.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::tokio_server(data));
