//! A hunt's leaderboard: an order-statistic structure. (Stub: being written.)

use crate::event::{Micros, PlayerId};

/// A leaderboard key. Orders by score descending, then earlier `reached_at`, then player id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    /// Score.
    pub score: i64,
    /// Event time at which the player reached this score.
    pub reached_at: Micros,
    /// The player.
    pub player: PlayerId,
}

/// The leaderboard.
#[derive(Debug, Default)]
pub struct Leaderboard {
    _todo: (),
}

impl Leaderboard {
    /// An empty leaderboard.
    pub fn new() -> Leaderboard {
        todo!()
    }
    /// Ensures `additional` more keys can be inserted, and any number of updates made,
    /// without allocating.
    pub fn reserve(&mut self, _additional: usize) {
        todo!()
    }
    /// Keys held.
    pub fn len(&self) -> u32 {
        todo!()
    }
    /// Returns true if and only if no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Inserts a key not yet present; returns its 1-based rank.
    pub fn insert(&mut self, _key: Key) -> u32 {
        todo!()
    }
    /// Removes a present key; returns the 1-based rank it had.
    pub fn remove(&mut self, _key: &Key) -> u32 {
        todo!()
    }
    /// Replaces `old` (present) by `new`; returns (rank before, rank after).
    pub fn update(&mut self, _old: &Key, _new: Key) -> (u32, u32) {
        todo!()
    }
    /// 1-based rank of a key, or `None` if absent.
    pub fn rank(&self, _key: &Key) -> Option<u32> {
        todo!()
    }
    /// Calls `f(rank, key)` for up to `count` keys from 1-based rank `first` on, in order.
    pub fn for_each_from(&self, _first: u32, _count: u32, _f: impl FnMut(u32, &Key)) {
        todo!()
    }
}
