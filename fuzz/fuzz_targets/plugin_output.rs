#![no_main]
//! Fuzz target `plugin_output`: see `warden_fuzz_targets::plugin_output`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden_fuzz_targets::plugin_output(data));
