//! The shard state machine: all the hunts one thread owns, and `apply`.
//!
//! [`Shard::apply`] takes an event and its event time and returns an [`Outcome`]. It is
//! synchronous and pure: no I/O, no clock, no threads, and no allocation in steady state
//! (creating a hunt, placing a treasure or joining a new player may allocate; moves,
//! digs, score changes and queries do not, which `tests/engine.rs` proves with the
//! counting allocator). Replaying the same events with the same times gives the same
//! state, bit for bit, as [`Shard::digest`] shows.
//!
//! Outcomes borrow the shard's scratch buffers (claims of a move, lines of a list), and
//! the notices an event produced stay readable through [`Shard::notices`] until the next
//! event is applied. The server reads both before it applies the next event.

use hashbrown::HashMap;

use crate::constants::{
    AROUND_RADIUS_MAX, CLAIMS_PER_MOVE_MAX, HUNTS_PER_SHARD_MAX, LIST_ENTRIES_MAX, NOTICES_PER_EVENT_MAX, TOP_COUNT_MAX,
};
use crate::event::{Event, HuntId, Micros};
use crate::hunt::{Hunt, Notices};
use crate::outcome::{Claim, Notice, Outcome, Ranked, Rejection};

/// The shard that owns a hunt, among `shard_count` shards: the one routing rule of the
/// server, pure so that every thread computes the same answer.
pub fn shard_for(hunt: HuntId, shard_count: usize) -> usize {
    assert!(shard_count > 0);
    // Fibonacci hashing spreads consecutive hunt ids evenly across shards.
    let mixed = (hunt as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (((mixed >> 32) * shard_count as u64) >> 32) as usize
}

/// How many events ahead of [`Shard::apply`] the server and journal replay call
/// [`Shard::prefetch`]: far enough that a player's line arrives before its event is
/// applied (a move at 1M players takes about as long as the miss), few enough that the
/// lines fetched stay within the core's line fill buffers.
pub const PREFETCH_AHEAD: usize = 8;

/// All the hunts one shard owns.
pub struct Shard {
    pub(crate) hunts: HashMap<HuntId, Box<Hunt>>,
    claims: Vec<Claim>,
    list: Vec<Ranked>,
    notices: Vec<Notice>,
}

impl Default for Shard {
    fn default() -> Shard {
        Shard::new()
    }
}

impl Shard {
    /// An empty shard with its scratch buffers allocated once, here.
    pub fn new() -> Shard {
        Shard {
            hunts: HashMap::new(),
            claims: Vec::with_capacity(CLAIMS_PER_MOVE_MAX),
            list: Vec::with_capacity(LIST_ENTRIES_MAX),
            notices: Vec::with_capacity(NOTICES_PER_EVENT_MAX),
        }
    }

    /// Hunts owned.
    pub fn hunt_count(&self) -> usize {
        self.hunts.len()
    }

    /// A hunt, if owned.
    pub fn hunt(&self, id: HuntId) -> Option<&Hunt> {
        self.hunts.get(&id).map(|hunt| &**hunt)
    }

    /// The last notice sequence number issued on each topic of a hunt (indexed by
    /// `Topic as usize`), or `None` if the hunt is not owned here.
    pub fn topic_sequences(&self, hunt: HuntId) -> Option<[u64; crate::outcome::Topic::COUNT]> {
        self.hunts.get(&hunt).map(|hunt| hunt.topic_seqs)
    }

    /// The notices the last applied event produced, in order.
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    /// Starts loading into the cache the player record `event` will need, without
    /// waiting for it and without changing anything. Calling it [`PREFETCH_AHEAD`] events ahead
    /// of [`Shard::apply`], as the server and journal replay do, overlaps the cache
    /// misses of those events instead of paying them one after the other: at 100k players
    /// and more a move is mostly that one miss. Cheap when it does not help: one lookup
    /// in the small table of hunts.
    #[inline]
    pub fn prefetch(&self, event: &Event) {
        let player = match *event {
            Event::Move { player, .. }
            | Event::Dig { player, .. }
            | Event::AdjustScore { player, .. }
            | Event::Join { player, .. }
            | Event::Leave { player, .. }
            | Event::Rank { player, .. }
            | Event::Around { player, .. }
            | Event::Hint { player, .. } => player,
            _ => return,
        };
        if let Some(hunt) = self.hunts.get(&event.hunt()) {
            hunt.prefetch_player(player);
        }
    }

    /// Applies one event at event time `time`.
    pub fn apply(&mut self, event: &Event, time: Micros) -> Outcome<'_> {
        self.claims.clear();
        self.list.clear();
        self.notices.clear();
        match self.dispatch(event, time) {
            Ok(outcome) => outcome,
            Err(rejection) => Outcome::Rejected(rejection),
        }
    }

    fn dispatch(&mut self, event: &Event, time: Micros) -> Result<Outcome<'_>, Rejection> {
        let Shard { hunts, claims, list, notices } = self;
        let mut notices = Notices { buffer: notices };
        match *event {
            Event::CreateHunt { hunt, spec } => {
                if hunts.contains_key(&hunt) {
                    return Err(Rejection::HuntExists);
                }
                if hunts.len() >= HUNTS_PER_SHARD_MAX as usize {
                    return Err(Rejection::HuntLimit);
                }
                let mut created = Box::new(Hunt::create(hunt, &spec)?);
                created.advance(time, &mut notices);
                hunts.insert(hunt, created);
                return Ok(Outcome::HuntCreated);
            }
            Event::DeleteHunt { hunt } => {
                let mut deleted = hunts.remove(&hunt).ok_or(Rejection::HuntNotFound)?;
                // Like every mutating event, it first announces the stages its time has
                // reached: subscribers of a hunt deleted after its end hear that it ended.
                deleted.advance(time, &mut notices);
                deleted.announce_deleted(&mut notices);
                return Ok(Outcome::HuntDeleted);
            }
            _ => {}
        }
        let hunt = hunts.get_mut(&event.hunt()).ok_or(Rejection::HuntNotFound)?;
        if event.is_mutation() {
            hunt.advance(time, &mut notices);
        }
        match *event {
            Event::CreateHunt { .. } | Event::DeleteHunt { .. } => unreachable!("handled above"),
            Event::EndHunt { .. } => {
                hunt.end_now(time, &mut notices);
                Ok(Outcome::HuntEnded)
            }
            Event::PlaceTreasure { treasure, .. } => {
                hunt.place(&treasure)?;
                Ok(Outcome::TreasurePlaced)
            }
            Event::RemoveTreasure { treasure, .. } => {
                hunt.remove_treasure(treasure)?;
                Ok(Outcome::TreasureRemoved)
            }
            Event::Join { player, seq, position, .. } => {
                let (score, rank) = hunt.join(player, seq, position, time, &mut notices)?;
                Ok(Outcome::Joined { score, rank })
            }
            Event::Leave { player, seq, .. } => {
                hunt.leave(player, seq, time)?;
                Ok(Outcome::Left)
            }
            Event::Move { player, seq, position, .. } => {
                hunt.move_player(player, seq, position, time, claims, &mut notices)?;
                Ok(Outcome::Moved { claims })
            }
            Event::Dig { player, seq, treasure, position, .. } => {
                let claim = hunt.dig(player, seq, treasure, position, time, &mut notices)?;
                Ok(Outcome::Dug { claim })
            }
            Event::AdjustScore { player, seq, delta, .. } => {
                let (score, rank) = hunt.adjust(player, seq, delta, time, &mut notices)?;
                Ok(Outcome::Adjusted { score, rank })
            }
            Event::Top { count, .. } => {
                if count > TOP_COUNT_MAX {
                    return Err(Rejection::CountTooLarge { asked: count, max: TOP_COUNT_MAX });
                }
                hunt.list(1, count, list);
                Ok(Outcome::List { total: hunt.player_count(), entries: list })
            }
            Event::Around { player, radius, .. } => {
                if radius > AROUND_RADIUS_MAX {
                    return Err(Rejection::CountTooLarge { asked: radius, max: AROUND_RADIUS_MAX });
                }
                let rank = hunt.rank_of(player)?;
                let first = rank.saturating_sub(radius).max(1);
                hunt.list(first, rank - first + 1 + radius, list);
                Ok(Outcome::List { total: hunt.player_count(), entries: list })
            }
            Event::Rank { player, .. } => Ok(Outcome::Standing(hunt.standing(player)?)),
            Event::Hint { player, .. } => Ok(Outcome::Hint { distance: hunt.hint(player, time)? }),
            Event::TreasureInfo { treasure, .. } => Ok(Outcome::Treasure(hunt.treasure_state(treasure)?)),
        }
    }

    /// A hash of the canonical state of every hunt (slow path: allocates to sort). Two
    /// shards that applied the same events at the same times have the same digest.
    pub fn digest(&self) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut ids: Vec<HuntId> = self.hunts.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.hunts[&id].digest_into(&mut hasher);
        }
        hasher.digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_for_is_in_range_and_spreads() {
        for shard_count in 1..=16 {
            let mut per_shard = vec![0u32; shard_count];
            for hunt in 0..16_000u32 {
                let shard = shard_for(hunt, shard_count);
                assert!(shard < shard_count);
                per_shard[shard] += 1;
            }
            let expected = 16_000 / shard_count as u32;
            for count in per_shard {
                assert!(count > expected * 8 / 10, "uneven spread for {shard_count} shards: {count} vs {expected}");
            }
        }
    }
}
