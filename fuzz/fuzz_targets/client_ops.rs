//! Fuzz target `client_ops`: see `microsocket_fuzz::client_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| microsocket_fuzz::client_ops(data));
