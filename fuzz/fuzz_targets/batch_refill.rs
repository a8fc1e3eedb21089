#![no_main]
//! Fuzz target `batch_refill`: see `warden_fuzz_targets::batch_refill`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden_fuzz_targets::batch_refill(data));
