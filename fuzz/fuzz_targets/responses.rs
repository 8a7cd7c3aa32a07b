//! Fuzz target `responses`: The client's decoder (decode_response) over a stream of reply, error and push frames.
//! The property is `check_response_stream` in `tests/props/decoders.rs`, which `tests/fuzz_props.rs`
//! also runs on stable Rust; see `fuzz/README.md`.

#![no_main]

#[path = "../../tests/props/decoders.rs"]
#[allow(dead_code)]
mod decoders;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| decoders::check_response_stream(bytes));
