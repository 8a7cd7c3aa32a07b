//! The TCP server: one thread per shard, each with its own poll, listener, connections
//! and state machine, joined by a full mesh of rings.

pub mod clock;
pub mod ring;
pub mod slab;
pub mod stats;
pub mod subscriptions;
