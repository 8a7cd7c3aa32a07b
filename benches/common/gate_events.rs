//! How many events each trace of `benches/gate.rs` holds: the one place both the bench
//! (which builds traces of exactly these sizes and asserts it) and the gate tool
//! (`tools/gate`, which divides each bench's measured instructions by them) read it.
//!
//! Each trace is small enough that the whole gate runs in a few minutes under Callgrind,
//! and large enough that per-call overhead and the first touches of cold data are a
//! small part of the count. Changing a size changes the figures a little (fixed costs
//! are spread over a different number of events): re-record the baselines after it.

/// Frames in the pipelined batch that `decode_pipelined` splits and decodes.
pub const DECODE_PIPELINED: u64 = 8_192;
/// Events of the default mix that `apply_mixed` applies.
pub const APPLY_MIXED: u64 = 8_192;
/// Events of the default mix that `apply_mixed_auto_discover` applies.
pub const APPLY_MIXED_AUTO_DISCOVER: u64 = 8_192;
/// Score updates that `leaderboard_update_rank_100k` makes on a 100k-player board.
pub const LEADERBOARD_UPDATE_RANK_100K: u64 = 8_192;
/// Hint queries that `hint_queries` answers.
pub const HINT_QUERIES: u64 = 8_192;
/// Outcomes that `reply_encode` encodes as reply frames.
pub const REPLY_ENCODE: u64 = 8_192;
/// Mutating events that `journal_encode` encodes as journal records.
pub const JOURNAL_ENCODE: u64 = 8_192;

/// Every gated bench, by the name of its function in `benches/gate.rs`, with its events.
pub const ALL: [(&str, u64); 7] = [
    ("decode_pipelined", DECODE_PIPELINED),
    ("apply_mixed", APPLY_MIXED),
    ("apply_mixed_auto_discover", APPLY_MIXED_AUTO_DISCOVER),
    ("leaderboard_update_rank_100k", LEADERBOARD_UPDATE_RANK_100K),
    ("hint_queries", HINT_QUERIES),
    ("reply_encode", REPLY_ENCODE),
    ("journal_encode", JOURNAL_ENCODE),
];
