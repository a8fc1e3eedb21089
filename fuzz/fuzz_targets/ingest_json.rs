#![no_main]
//! Fuzz target `ingest_json`: see `warden_fuzz_targets::ingest_json`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden_fuzz_targets::ingest_json(data));
