//! Fuzz target `decode`: see `microsocket_fuzz::decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| microsocket_fuzz::decode(data));
