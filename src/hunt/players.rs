//! A hunt's players: an open-addressing table keyed by player id whose slots are the
//! player records themselves, one 64-byte cache line each.
//!
//! A move needs the player's id (to find it), sequence number, joined flag, position,
//! last move time and travel budget; a dig or an adjustment also its score and claims.
//! With the records in a slab and a `hashbrown` map from id to slab handle, finding a
//! player cost three cache misses at 100k players and more (the map's control bytes, its
//! bucket, then the record): `perf record` put 92% of `move_player` on those three loads.
//! Here the slot the id hashes to *is* the record, so an event touches one line (plus
//! the next one when linear probing steps on), and [`Players::prefetch`] can fetch that
//! line ahead of the event. Measured against the slab and map on `moves/walk` at 100k and
//! 1M players: see `perf/RESULTS.md`, "Player table".
//!
//! Handles stay what they were: a player's handle is its join order (0, 1, 2, ...),
//! never changes, and is what the claim table and snapshots name; `by_handle` maps it to
//! the slot, which moves only when the table grows (on a join, the slow path).
//!
//! The slot index comes from `hashbrown`'s default hasher (seeded per table), so a
//! backend cannot choose ids that pile up in one run of slots.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

use super::Player;
use crate::event::PlayerId;
use crate::geo::Point;

/// `handle` of a free slot: handles are below `PLAYERS_PER_HUNT_MAX`, far from it.
const FREE: u32 = u32::MAX;
const _: () = assert!(crate::constants::PLAYERS_PER_HUNT_MAX < FREE);

/// The table grows before more than `LOAD_NUMERATOR / LOAD_DENOMINATOR` of its slots
/// are taken: with linear probing a hit then looks at about 1.5 to 2.5 slots on average.
const LOAD_NUMERATOR: usize = 3;
const LOAD_DENOMINATOR: usize = 4;

/// Slots of a table's first allocation.
const SLOTS_MIN: usize = 16;

const FREE_SLOT: Player = Player {
    id: 0,
    handle: FREE,
    last_seq: 0,
    claims: 0,
    position: Point { x: 0, y: 0 },
    last_time: 0,
    travel_budget_micro_units: 0,
    score: 0,
    reached_at: 0,
    joined: false,
};

/// The player table of one hunt. Players are never removed.
pub(crate) struct Players {
    /// A power of two of slots (or none yet); a slot is free if its `handle` is `FREE`.
    slots: Vec<Player>,
    /// The slot of each handle.
    by_handle: Vec<u32>,
    hasher: DefaultHashBuilder,
}

impl Default for Players {
    fn default() -> Players {
        Players::new()
    }
}

impl Players {
    /// An empty table; allocates nothing until the first player.
    pub(crate) fn new() -> Players {
        Players { slots: Vec::new(), by_handle: Vec::new(), hasher: DefaultHashBuilder::default() }
    }

    /// Players in the table.
    pub(crate) fn len(&self) -> usize {
        self.by_handle.len()
    }

    /// Returns true if and only if there are no players.
    #[allow(dead_code)]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_handle.is_empty()
    }

    #[inline]
    fn home(&self, id: PlayerId) -> usize {
        self.hasher.hash_one(id) as usize & (self.slots.len() - 1)
    }

    /// The slot of player `id`, if present. Slot numbers stay valid until the next
    /// [`Players::insert`].
    #[inline]
    pub(crate) fn find(&self, id: PlayerId) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut slot = self.home(id);
        loop {
            let player = &self.slots[slot];
            if player.handle == FREE {
                return None;
            }
            if player.id == id {
                return Some(slot);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Player `id`, if present.
    pub(crate) fn get(&self, id: PlayerId) -> Option<&Player> {
        self.find(id).map(|slot| &self.slots[slot])
    }

    /// The player in `slot` (from [`Players::find`]).
    #[inline]
    pub(crate) fn at(&self, slot: usize) -> &Player {
        let player = &self.slots[slot];
        debug_assert!(player.handle != FREE);
        player
    }

    /// The player in `slot` (from [`Players::find`]), to change. The caller must not
    /// change its `id` or `handle`.
    #[inline]
    pub(crate) fn at_mut(&mut self, slot: usize) -> &mut Player {
        let player = &mut self.slots[slot];
        debug_assert!(player.handle != FREE);
        player
    }

    /// The player with handle `handle`.
    pub(crate) fn by_handle(&self, handle: u32) -> &Player {
        &self.slots[self.by_handle[handle as usize] as usize]
    }

    /// Every player in handle order (join order).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Player> + '_ {
        self.by_handle.iter().map(|&slot| &self.slots[slot as usize])
    }

    /// Asks the CPU to start loading the line player `id` hashes to and the next one,
    /// where linear probing continues (a hit looks at 1.5 slots on average at half
    /// full, 2.5 at 3/4), without waiting for them. Changes nothing. Measured
    /// on `moves/walk_batch16` at 1M players: 7.9 M/s with both lines, 7.0 M/s with
    /// the first alone (medians of 3, `perf/RESULTS.md`).
    #[inline]
    pub(crate) fn prefetch(&self, id: PlayerId) {
        if self.slots.is_empty() {
            return;
        }
        let slot = self.home(id);
        prefetch_line(&self.slots[slot]);
        prefetch_line(&self.slots[(slot + 1) & (self.slots.len() - 1)]);
    }

    /// Makes room for `additional` more players without growing on insert (slow path).
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.by_handle.reserve(additional);
        let needed = self.len() + additional;
        if needed * LOAD_DENOMINATOR <= self.slots.len() * LOAD_NUMERATOR {
            return;
        }
        let mut slots = SLOTS_MIN.max(self.slots.len());
        while needed * LOAD_DENOMINATOR > slots * LOAD_NUMERATOR {
            slots *= 2;
        }
        self.rehash(slots);
    }

    fn rehash(&mut self, slot_count: usize) {
        assert!(slot_count.is_power_of_two());
        let old = std::mem::replace(&mut self.slots, vec![FREE_SLOT; slot_count]);
        for player in old.into_iter().filter(|player| player.handle != FREE) {
            let slot = self.free_slot_for(player.id);
            self.by_handle[player.handle as usize] = slot as u32;
            self.slots[slot] = player;
        }
    }

    fn free_slot_for(&self, id: PlayerId) -> usize {
        let mask = self.slots.len() - 1;
        let mut slot = self.home(id);
        while self.slots[slot].handle != FREE {
            slot = (slot + 1) & mask;
        }
        slot
    }

    /// Adds `player` under the next handle (its `handle` field is overwritten) and returns
    /// the handle, or `None` (changing nothing) if its id is present. May allocate.
    pub(crate) fn insert(&mut self, mut player: Player) -> Option<u32> {
        if self.find(player.id).is_some() {
            return None;
        }
        self.reserve(1);
        let handle = self.by_handle.len() as u32;
        player.handle = handle;
        let slot = self.free_slot_for(player.id);
        self.slots[slot] = player;
        self.by_handle.push(slot as u32);
        Some(handle)
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn prefetch_line<T>(value: &T) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: a prefetch is a hint that never faults or changes memory; SSE, which
    // provides it, is part of every x86_64 target.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(value as *const T as *const i8) };
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn prefetch_line<T>(_value: &T) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn player(id: PlayerId, score: i64) -> Player {
        Player { id, handle: 0, score, ..FREE_SLOT }
    }

    #[test]
    fn finds_every_player_through_growth_and_keeps_handles() {
        let mut players = Players::new();
        assert_eq!(players.find(7), None);
        // Spread and clustered ids, through several doublings.
        let ids: Vec<PlayerId> = (0..5_000u32).map(|i| if i % 2 == 0 { i } else { u32::MAX - i * 977 }).collect();
        for (handle, &id) in ids.iter().enumerate() {
            assert_eq!(players.insert(player(id, id as i64)), Some(handle as u32));
            assert_eq!(players.insert(player(id, 0)), None, "a present id is refused");
        }
        assert_eq!(players.len(), ids.len());
        assert!(players.slots.len() * LOAD_NUMERATOR >= players.len() * LOAD_DENOMINATOR);
        for (handle, &id) in ids.iter().enumerate() {
            let found = players.get(id).expect("inserted");
            assert_eq!((found.id, found.handle, found.score), (id, handle as u32, id as i64));
            assert_eq!(players.by_handle(handle as u32).id, id);
        }
        let order: Vec<PlayerId> = players.iter().map(|player| player.id).collect();
        assert_eq!(order, ids);
        for absent in [1u32, 3, 5_001, u32::MAX] {
            assert!(players.find(absent).is_none());
        }
    }

    #[test]
    fn changes_through_a_slot_stick() {
        let mut players = Players::new();
        for id in 0..100 {
            players.insert(player(id, 0));
        }
        let slot = players.find(42).unwrap();
        players.at_mut(slot).score = 9;
        players.reserve(10_000);
        assert_eq!(players.get(42).unwrap().score, 9);
        assert_eq!(players.by_handle(42).score, 9);
    }
}
