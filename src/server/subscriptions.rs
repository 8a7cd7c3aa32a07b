//! Who wants which notices: the owner shard's interest table, the connection shard's
//! local subscribers, and a connection's record of the pushes it missed.
//!
//! A notice is encoded once by the shard that owns its hunt. That shard sends it to its
//! own subscribers of the hunt ([`LocalSubscribers`]) and once over the reply ring to
//! every other shard with at least one subscriber of the hunt ([`Interest`]), which fans
//! it out to its own subscribers by topic mask. A shard registers interest with the
//! owner when its first connection subscribes to a hunt and drops it when its last one
//! leaves, so the owner's table holds one count per (hunt, shard), not per connection.
//! Tables grow on the slow path (a subscription); fanning out never allocates.

use hashbrown::HashMap;

use crate::event::HuntId;

/// The owner's view: which other shards have subscribers of each of its hunts.
pub struct Interest {
    shard_count: usize,
    hunts: HashMap<HuntId, Vec<u32>>,
}

impl Interest {
    /// An empty table for a server of `shard_count` shards.
    pub fn new(shard_count: usize) -> Interest {
        Interest { shard_count, hunts: HashMap::new() }
    }

    /// Shard `shard` gained its first subscriber of `hunt` (slow path: may allocate).
    pub fn add(&mut self, hunt: HuntId, shard: usize) {
        assert!(shard < self.shard_count);
        let counts = self.hunts.entry(hunt).or_insert_with(|| vec![0; self.shard_count]);
        counts[shard] += 1;
    }

    /// Shard `shard` lost its last subscriber of `hunt`.
    pub fn remove(&mut self, hunt: HuntId, shard: usize) {
        let counts = self.hunts.get_mut(&hunt).expect("interest dropped for a hunt never added");
        assert!(counts[shard] > 0, "shard {shard} dropped interest in hunt {hunt} it did not have");
        counts[shard] -= 1;
        if counts.iter().all(|&count| count == 0) {
            self.hunts.remove(&hunt);
        }
    }

    /// Per shard, how many registrations of interest in `hunt` it holds (0 = none);
    /// `None` when no shard has any.
    pub fn shards(&self, hunt: HuntId) -> Option<&[u32]> {
        self.hunts.get(&hunt).map(Vec::as_slice)
    }

    /// Hunts with any remote interest.
    pub fn hunt_count(&self) -> usize {
        self.hunts.len()
    }
}

/// One connection's subscription to one hunt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscriber {
    /// The connection's slab index.
    pub token: u32,
    /// The connection's generation.
    pub generation: u32,
    /// Topic bits (`Topic::bit`) it follows; 0 while its first SUBSCRIBE waits for the
    /// answer of the hunt's owner on another shard.
    pub topics: u8,
}

/// What [`LocalSubscribers::subscribe`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscribed {
    /// The connection was not subscribed to the hunt; `first_on_shard` is true if and
    /// only if no other connection of this shard was either.
    New {
        /// This shard just gained its first subscriber of the hunt.
        first_on_shard: bool,
    },
    /// The connection was subscribed already; its mask was replaced.
    Replaced,
}

/// A shard's subscribers, by hunt.
#[derive(Default)]
pub struct LocalSubscribers {
    hunts: HashMap<HuntId, Vec<Subscriber>>,
    count: usize,
}

impl LocalSubscribers {
    /// An empty table.
    pub fn new() -> LocalSubscribers {
        LocalSubscribers::default()
    }

    /// Subscribes a connection to `hunt`'s `topics`, or replaces its mask (slow path).
    pub fn subscribe(&mut self, hunt: HuntId, subscriber: Subscriber) -> Subscribed {
        let subscribers = self.hunts.entry(hunt).or_default();
        let first_on_shard = subscribers.is_empty();
        match subscribers.iter_mut().find(|known| known.token == subscriber.token) {
            Some(known) => {
                assert_eq!(known.generation, subscriber.generation, "a closed connection stayed subscribed");
                known.topics = subscriber.topics;
                Subscribed::Replaced
            }
            None => {
                subscribers.push(subscriber);
                self.count += 1;
                Subscribed::New { first_on_shard }
            }
        }
    }

    /// Unsubscribes connection `token` from `hunt`. Returns `None` if it was not
    /// subscribed, else whether the shard has no subscriber of the hunt left.
    pub fn unsubscribe(&mut self, hunt: HuntId, token: u32) -> Option<bool> {
        let subscribers = self.hunts.get_mut(&hunt)?;
        let position = subscribers.iter().position(|known| known.token == token)?;
        subscribers.swap_remove(position);
        self.count -= 1;
        let last_on_shard = subscribers.is_empty();
        if last_on_shard {
            self.hunts.remove(&hunt);
        }
        Some(last_on_shard)
    }

    /// The topics connection `token` follows on `hunt`; `None` if it is not subscribed.
    pub fn topics_of(&self, hunt: HuntId, token: u32) -> Option<u8> {
        self.of(hunt).iter().find(|known| known.token == token).map(|known| known.topics)
    }

    /// Replaces the topics connection `token` follows on `hunt`, if it is subscribed.
    pub fn set_topics(&mut self, hunt: HuntId, token: u32, topics: u8) {
        let subscribers = self.hunts.get_mut(&hunt).map(Vec::as_mut_slice).unwrap_or_default();
        if let Some(known) = subscribers.iter_mut().find(|known| known.token == token) {
            known.topics = topics;
        }
    }

    /// The subscribers of `hunt` on this shard.
    pub fn of(&self, hunt: HuntId) -> &[Subscriber] {
        self.hunts.get(&hunt).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Subscriptions held, over all hunts.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// A range of notices one connection missed on one (hunt, topic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missed {
    /// The hunt.
    pub hunt: HuntId,
    /// The topic's wire byte (`Topic as u8`).
    pub topic: u8,
    /// First sequence number missed.
    pub first: u64,
    /// Last sequence number missed.
    pub last: u64,
}

/// A connection owes GAP pushes for more (hunt, topic) pairs than it can remember.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissedFull;

/// The ranges a connection missed, one per (hunt, topic), in a fixed-capacity table.
pub struct MissedRanges<const N: usize> {
    ranges: [Missed; N],
    len: usize,
}

impl<const N: usize> Default for MissedRanges<N> {
    fn default() -> Self {
        MissedRanges { ranges: [Missed { hunt: 0, topic: 0, first: 0, last: 0 }; N], len: 0 }
    }
}

impl<const N: usize> MissedRanges<N> {
    /// Remembers that `first..=last` of (`hunt`, `topic`) were dropped, widening the range
    /// already owed for that pair.
    pub fn record(&mut self, hunt: HuntId, topic: u8, first: u64, last: u64) -> Result<(), MissedFull> {
        assert!(first <= last);
        let known = self.ranges[..self.len].iter_mut().find(|missed| missed.hunt == hunt && missed.topic == topic);
        if let Some(missed) = known {
            missed.first = missed.first.min(first);
            missed.last = missed.last.max(last);
            return Ok(());
        }
        if self.len == N {
            return Err(MissedFull);
        }
        self.ranges[self.len] = Missed { hunt, topic, first, last };
        self.len += 1;
        Ok(())
    }

    /// Returns true if and only if no range is owed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hands every owed range to `emit` and forgets them.
    pub fn drain(&mut self, mut emit: impl FnMut(&Missed)) {
        for missed in &self.ranges[..self.len] {
            emit(missed);
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriber(token: u32, topics: u8) -> Subscriber {
        Subscriber { token, generation: 1, topics }
    }

    #[test]
    fn the_first_and_last_local_subscriber_are_reported() {
        let mut local = LocalSubscribers::new();
        assert_eq!(local.subscribe(7, subscriber(1, 0b001)), Subscribed::New { first_on_shard: true });
        assert_eq!(local.subscribe(7, subscriber(2, 0b011)), Subscribed::New { first_on_shard: false });
        assert_eq!(local.subscribe(7, subscriber(1, 0b100)), Subscribed::Replaced);
        assert_eq!(local.subscribe(8, subscriber(1, 0b100)), Subscribed::New { first_on_shard: true });
        assert_eq!(local.count(), 3);
        assert_eq!(local.of(7), [subscriber(1, 0b100), subscriber(2, 0b011)]);
        assert_eq!(local.unsubscribe(7, 3), None);
        assert_eq!(local.unsubscribe(7, 1), Some(false));
        assert_eq!(local.unsubscribe(7, 2), Some(true));
        assert_eq!(local.unsubscribe(7, 2), None);
        assert_eq!(local.of(7), []);
        assert_eq!(local.count(), 1);
    }

    #[test]
    fn interest_counts_per_shard_and_forgets_empty_hunts() {
        let mut interest = Interest::new(3);
        assert_eq!(interest.shards(5), None);
        interest.add(5, 2);
        interest.add(5, 0);
        interest.add(5, 2);
        assert_eq!(interest.shards(5), Some(&[1, 0, 2][..]));
        interest.remove(5, 2);
        interest.remove(5, 0);
        assert_eq!(interest.shards(5), Some(&[0, 0, 1][..]));
        interest.remove(5, 2);
        assert_eq!(interest.shards(5), None);
        assert_eq!(interest.hunt_count(), 0);
    }

    #[test]
    fn missed_ranges_widen_per_pair_and_refuse_one_pair_too_many() {
        let mut missed = MissedRanges::<2>::default();
        assert!(missed.is_empty());
        missed.record(1, 0, 5, 5).unwrap();
        missed.record(1, 0, 6, 9).unwrap();
        missed.record(1, 2, 3, 3).unwrap();
        assert_eq!(missed.record(2, 0, 1, 1), Err(MissedFull));
        missed.record(1, 2, 4, 4).unwrap();
        let mut owed = Vec::new();
        missed.drain(|range| owed.push(*range));
        assert_eq!(
            owed,
            [Missed { hunt: 1, topic: 0, first: 5, last: 9 }, Missed { hunt: 1, topic: 2, first: 3, last: 4 }]
        );
        assert!(missed.is_empty());
    }
}
