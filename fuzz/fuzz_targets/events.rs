//! Fuzz target `events`: arbitrary bytes decoded as a case of event plans
//! (`decode_steps`), applied to the shard state machine and to the reference model side
//! by side, compared after every step, and replayed for the digest. The property is
//! `check_case_bytes` in `tests/model/harness.rs`, which `tests/fuzz_props.rs` also runs
//! on stable Rust; see `fuzz/README.md`.

#![no_main]

#[path = "../../tests/model/reference.rs"]
#[allow(dead_code)]
mod reference;

#[path = "../../tests/model/harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    if let Err(why) = harness::check_case_bytes(bytes) {
        panic!("{why}");
    }
});
