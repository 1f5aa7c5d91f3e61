//! Fuzz target `roundtrip`: see `microsocket_fuzz::roundtrip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| microsocket_fuzz::roundtrip(data));
