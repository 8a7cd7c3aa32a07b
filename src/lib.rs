//! Cairn: an event engine for location-based treasure hunts.
//!
//! Game backends stream moves, digs, score changes and leaderboard queries; Cairn applies
//! them on thread-per-core shards, awards each treasure at most as often as it allows and
//! exactly once per player, keeps a live leaderboard per hunt and tells subscribers what
//! changed. This crate holds the pure state machine ([`shard::Shard`]) and everything
//! around it; `ARCHITECTURE.md` at the repository root maps the modules.

pub mod alloc;
pub mod client;
pub mod constants;
pub mod event;
pub mod geo;
pub mod grid;
pub mod hunt;
pub mod journal;
pub mod leaderboard;
pub mod outcome;
pub mod protocol;
pub mod rng;
pub mod server;
pub mod shard;
pub mod simulate;
pub mod sync;
#[cfg(test)]
mod testing;
