//! Fuzz target `decode_fragmented`: see `microsocket_fuzz::decode_fragmented`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| microsocket_fuzz::decode_fragmented(data));
