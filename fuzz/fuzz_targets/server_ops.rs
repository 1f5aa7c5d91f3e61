//! Fuzz target `server_ops`: see `microsocket_fuzz::server_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| microsocket_fuzz::server_ops(data));
