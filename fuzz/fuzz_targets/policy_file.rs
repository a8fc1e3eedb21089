#![no_main]
//! Fuzz target `policy_file`: see `warden_fuzz_targets::policy_file`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden_fuzz_targets::policy_file(data));
