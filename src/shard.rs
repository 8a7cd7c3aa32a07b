//! The shard state machine. (Stub: being written.)
