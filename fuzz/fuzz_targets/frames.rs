//! Fuzz target `frames`: The server's read path: a byte stream cut into frames (next_frame, Frames) and each frame decoded as a request (decode_request).
//! The property is `check_request_stream` in `tests/props/decoders.rs`, which `tests/fuzz_props.rs`
//! also runs on stable Rust; see `fuzz/README.md`.

#![no_main]

#[path = "../../tests/props/decoders.rs"]
#[allow(dead_code)]
mod decoders;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| decoders::check_request_stream(bytes));
