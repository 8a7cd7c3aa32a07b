//! Fuzz target `snapshot`: The snapshot loader (decode_snapshot), as given and with its header and CRCs sealed, and the loaded shard probed with events.
//! The property is `check_snapshot` in `tests/props/decoders.rs`, which `tests/fuzz_props.rs`
//! also runs on stable Rust; see `fuzz/README.md`.

#![no_main]

#[path = "../../tests/props/decoders.rs"]
#[allow(dead_code)]
mod decoders;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| decoders::check_snapshot(bytes));
