//! Fuzz target `leaderboard`: arbitrary bytes decoded as a case of leaderboard operations
//! (`decode_ops`: inserts, fills of thousands of keys, removes, drains, updates by small
//! and huge steps, rank, get, windows, reserves up to 65,536), applied to a `Leaderboard`
//! and to a `BTreeSet<Key>` reference side by side; every returned rank must agree, and the
//! whole board and its invariants are checked every 16 operations. The property is
//! `check_leaderboard_bytes` in `tests/props/leaderboard.rs`, which `tests/fuzz_props.rs`
//! also runs on stable Rust; see `fuzz/README.md`.

#![no_main]

#[path = "../../tests/props/leaderboard.rs"]
#[allow(dead_code)]
mod leaderboard;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| leaderboard::check_leaderboard_bytes(bytes));
