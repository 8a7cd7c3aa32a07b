//! Fuzz target `journal_record`: The journal record decoder (parse_record) over a segment, as given and with its first CRC sealed.
//! The property is `check_journal_segment` in `tests/props/decoders.rs`, which `tests/fuzz_props.rs`
//! also runs on stable Rust; see `fuzz/README.md`.

#![no_main]

#[path = "../../tests/props/decoders.rs"]
#[allow(dead_code)]
mod decoders;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| decoders::check_journal_segment(bytes));
