//! One hunt's whole state, and the domain rules that change it.
//!
//! A [`Hunt`] owns its treasures in a dense slab indexed by `u32` handles, with a
//! `hashbrown` map from the backend's ids to handles, and its players in a table keyed
//! by id whose slots are the records (`players`: one cache line per player event); a
//! uniform [`Grid`] so a move or a dig looks only at nearby treasures; a counted-tree
//! [`Leaderboard`]; and the claim table, a set of (treasure, player handle) pairs sized
//! for every claim the live treasures can still give, so an award never allocates. The shard ([`crate::shard`]) routes events
//! here and owns the scratch buffers that outcomes borrow; this module never does I/O
//! and never reads a clock: the event time is an argument.
//!
//! Every rule returns `Err(Rejection)` before it changes anything, so a refused event
//! leaves the state exactly as it was, with one exception: any mutating event first
//! announces the lifecycle stages its event time has reached (`Hunt::advance`), refused
//! or not. That is why the journal records refused mutations too: replay must announce
//! at the same events.

mod players;

use hashbrown::{HashMap, HashSet};

use crate::constants::{
    CLAIMS_PER_HUNT_MAX, CLAIMS_PER_MOVE_MAX, MICROS_PER_SECOND, NOTICES_PER_EVENT_MAX, PLAYERS_PER_HUNT_MAX,
    RADIUS_MAX, SPEED_BURST_US, TOP_NOTICE_RANKS_MAX, TREASURES_PER_HUNT_MAX, TREASURE_CAPACITY_MAX,
    TREASURE_VALUE_MAX,
};
use crate::event::{
    Coordinates, HuntId, HuntSpec, Micros, PlayerId, PointsRule, Position, Sequence, TreasureId, TreasureSpec,
};
use crate::geo::{self, Point, Projection};
use crate::grid::Grid;
use crate::leaderboard::{Key, Leaderboard};
use crate::outcome::{Claim, Lifecycle, Notice, NoticeKind, Ranked, Rejection, Standing, Topic, TreasureState};
pub(crate) use players::Players;

/// Where a hunt is in its life, as last announced to subscribers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Created; its start time has not been seen yet.
    Created = 0,
    /// Running.
    Running = 1,
    /// Ended.
    Ended = 2,
}

/// A treasure in a hunt's slab.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Treasure {
    pub(crate) spec: TreasureSpec,
    pub(crate) center: Point,
    pub(crate) radius_units: u64,
    pub(crate) hint_units: u64,
    pub(crate) claimed: u32,
    /// Returns true if and only if the slot holds a placed treasure (not a freed slot).
    pub(crate) live: bool,
}

/// A player, one slot of the hunt's [`Players`] table: one cache line, so that an event
/// finds everything it needs of the player in the line it finds the id in. Players are
/// never removed: leaving keeps the score and the claims, so a player who rejoins can
/// never claim the same treasure twice.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct Player {
    pub(crate) id: PlayerId,
    /// Join order, 0 for the first player: what the claim table and snapshots name.
    pub(crate) handle: u32,
    pub(crate) last_seq: Sequence,
    pub(crate) claims: u32,
    pub(crate) position: Point,
    pub(crate) last_time: Micros,
    /// Travel banked under the speed limit, in millionths of an internal unit, at most
    /// `travel_budget_max_micro_units`: what a move may cover beyond the travel the time
    /// since the last move earns. Millionths, because a speed in units per second times a
    /// time in microseconds is a whole number of them: the fraction of a unit earned
    /// between two frequent reports carries over exactly instead of being rounded away.
    pub(crate) travel_budget_micro_units: u64,
    pub(crate) score: i64,
    pub(crate) reached_at: Micros,
    pub(crate) joined: bool,
}
const _: () = assert!(std::mem::size_of::<Player>() == 64);

impl Player {
    fn key(&self) -> Key {
        Key { score: self.score, reached_at: self.reached_at, player: self.id }
    }
}

/// A bounded list of notices for one event; the shard hands in its preallocated buffer.
pub(crate) struct Notices<'a> {
    pub(crate) buffer: &'a mut Vec<Notice>,
}

/// One hunt. Fields are visible to the crate so that snapshots (`crate::journal`) can
/// write and rebuild a hunt; every other module goes through the methods.
pub struct Hunt {
    pub(crate) id: HuntId,
    pub(crate) spec: HuntSpec,
    pub(crate) projection: Projection,
    /// Effective end: the spec's end, or earlier if the hunt was ended by an event.
    pub(crate) end: Micros,
    pub(crate) announced: Phase,
    pub(crate) treasures: Vec<Treasure>,
    pub(crate) treasures_free: Vec<u32>,
    pub(crate) treasure_handles: HashMap<TreasureId, u32>,
    /// Sum of the capacities of live treasures; the claim table has room for all of it.
    pub(crate) capacity_total: u64,
    pub(crate) players: Players,
    pub(crate) grid: Grid,
    pub(crate) leaderboard: Leaderboard,
    /// (treasure handle << 32) | player handle, for every award of a live treasure.
    pub(crate) claims: HashSet<u64>,
    pub(crate) topic_seqs: [u64; Topic::COUNT],
}

/// Refuses the top sequence number: applied, it would leave the player no number above it,
/// so every later event would be answered `duplicate`, which a retrying client reads as
/// "already applied". Checked before anything else about the player.
fn check_sequence(seq: Sequence) -> Result<(), Rejection> {
    if seq == Sequence::MAX {
        return Err(Rejection::SequenceExhausted);
    }
    Ok(())
}

fn claim_key(treasure: u32, player: u32) -> u64 {
    ((treasure as u64) << 32) | player as u64
}

/// Points the `index`-th of `capacity` claimers receives under `rule`.
pub fn points_for(rule: PointsRule, value: u32, index: u32, capacity: u32) -> u32 {
    assert!(index >= 1);
    assert!(index <= capacity);
    match rule {
        PointsRule::Full => value,
        PointsRule::Decay => (value as u64 * (capacity - index + 1) as u64 / capacity as u64) as u32,
    }
}

impl Hunt {
    /// Validates a spec and builds an empty hunt (the slow path: allocates its tables).
    pub fn create(id: HuntId, spec: &HuntSpec) -> Result<Hunt, Rejection> {
        if spec.start >= spec.end {
            return Err(Rejection::InvalidHunt("start time must be before end time"));
        }
        // Geographic bounds are checked by the projection, whose refusals name latitude or
        // longitude (and the antimeridian, which a hunt may not cross).
        let projection = match spec.coordinates {
            Coordinates::Planar => Projection::planar(),
            Coordinates::Geographic => Projection::geographic(spec.min, spec.max).map_err(Rejection::InvalidHunt)?,
        };
        if spec.min.x > spec.max.x || spec.min.y > spec.max.y {
            return Err(Rejection::InvalidHunt("the minimum corner must not exceed the maximum corner"));
        }
        // The grid covers every projected position of the bounds: for geographic hunts the
        // projected rectangle is not the image of the two corners alone.
        let (min, max) = projection
            .project_bounds(spec.min, spec.max)
            .ok_or(Rejection::InvalidHunt("bounds outside the coordinate range"))?;
        Ok(Hunt {
            id,
            spec: *spec,
            projection,
            end: spec.end,
            announced: Phase::Created,
            treasures: Vec::new(),
            treasures_free: Vec::new(),
            treasure_handles: HashMap::new(),
            capacity_total: 0,
            players: Players::new(),
            grid: Grid::new(min, max),
            leaderboard: Leaderboard::new(),
            claims: HashSet::new(),
            topic_seqs: [0; Topic::COUNT],
        })
    }

    /// The hunt's id.
    pub fn id(&self) -> HuntId {
        self.id
    }

    /// The spec the hunt was created with.
    pub fn spec(&self) -> &HuntSpec {
        &self.spec
    }

    /// The phase at event time `time` (derived from the schedule, not stored).
    pub fn phase_at(&self, time: Micros) -> Phase {
        if time >= self.end {
            Phase::Ended
        } else if time >= self.spec.start {
            Phase::Running
        } else {
            Phase::Created
        }
    }

    /// Players on the leaderboard.
    pub fn player_count(&self) -> u32 {
        self.leaderboard.len()
    }

    fn running(&self, time: Micros) -> Result<(), Rejection> {
        match self.phase_at(time) {
            Phase::Created => Err(Rejection::HuntNotStarted),
            Phase::Running => Ok(()),
            Phase::Ended => Err(Rejection::HuntEnded),
        }
    }

    fn not_ended(&self, time: Micros) -> Result<(), Rejection> {
        if self.phase_at(time) == Phase::Ended {
            return Err(Rejection::HuntEnded);
        }
        Ok(())
    }

    fn push_notice(&mut self, notices: &mut Notices, kind: NoticeKind) {
        let topic = kind.topic() as usize;
        self.topic_seqs[topic] += 1;
        assert!(notices.buffer.len() < NOTICES_PER_EVENT_MAX, "an event produced more notices than bounded");
        notices.buffer.push(Notice { hunt: self.id, seq: self.topic_seqs[topic], kind });
    }

    /// Announces lifecycle stages that event time `time` has reached. Only mutating
    /// events call this, so what was announced replays identically from the journal.
    pub(crate) fn advance(&mut self, time: Micros, notices: &mut Notices) {
        let phase = self.phase_at(time);
        if self.announced < Phase::Running && phase >= Phase::Running {
            // A hunt ended before it ever started never announces a start.
            if phase == Phase::Running || self.spec.start < self.end {
                self.push_notice(notices, NoticeKind::Lifecycle(Lifecycle::Started));
            }
        }
        if self.announced < Phase::Ended && phase == Phase::Ended {
            self.push_notice(notices, NoticeKind::Lifecycle(Lifecycle::Ended));
        }
        self.announced = self.announced.max(phase);
    }

    /// Ends the hunt at `time` if its end lies later.
    pub(crate) fn end_now(&mut self, time: Micros, notices: &mut Notices) {
        self.end = self.end.min(time);
        self.advance(time, notices);
    }

    /// Announces the deletion (the shard then drops the hunt).
    pub(crate) fn announce_deleted(&mut self, notices: &mut Notices) {
        self.push_notice(notices, NoticeKind::Lifecycle(Lifecycle::Deleted));
    }

    /// Checks a position against the bounds in input coordinates (a latitude/longitude
    /// rectangle is not a rectangle once projected), then projects it.
    fn project_inside(&self, position: Position) -> Result<Point, Rejection> {
        let inside_x = position.x >= self.spec.min.x && position.x <= self.spec.max.x;
        let inside_y = position.y >= self.spec.min.y && position.y <= self.spec.max.y;
        if !(inside_x && inside_y) {
            return Err(Rejection::OutOfBounds);
        }
        self.projection.project(position).ok_or(Rejection::OutOfBounds)
    }

    // -----------------------------------------------------------------------------------
    // Treasures.

    /// Places a treasure (slow path: may grow the slab and the claim table).
    pub(crate) fn place(&mut self, spec: &TreasureSpec) -> Result<(), Rejection> {
        if self.treasure_handles.contains_key(&spec.id) {
            return Err(Rejection::TreasureExists);
        }
        let center = self
            .project_inside(spec.position)
            .map_err(|_| Rejection::InvalidTreasure("position outside the hunt's bounds"))?;
        if spec.capacity == 0 || spec.capacity > TREASURE_CAPACITY_MAX {
            return Err(Rejection::InvalidTreasure("capacity must be between 1 and 100000"));
        }
        if spec.value > TREASURE_VALUE_MAX {
            return Err(Rejection::InvalidTreasure("value must be at most 1000000 points"));
        }
        let radius_units = self.projection.length_to_units(spec.radius);
        let hint_units = self.projection.length_to_units(spec.hint_radius);
        if radius_units > RADIUS_MAX as u64 || hint_units > RADIUS_MAX as u64 {
            return Err(Rejection::InvalidTreasure("radius or hint radius too large"));
        }
        let live_count = self.treasure_handles.len() as u64;
        let capacity_total = self.capacity_total + spec.capacity as u64;
        if live_count >= TREASURES_PER_HUNT_MAX as u64 || capacity_total > CLAIMS_PER_HUNT_MAX as u64 {
            return Err(Rejection::TreasureLimit);
        }
        let handle = self.treasures_free.last().copied().unwrap_or(self.treasures.len() as u32);
        self.grid
            .insert(handle, center, radius_units)
            .map_err(|_| Rejection::InvalidTreasure("radius too large: the hunt's list of wide treasures is full"))?;
        let treasure = Treasure { spec: *spec, center, radius_units, hint_units, claimed: 0, live: true };
        if self.treasures_free.pop().is_some() {
            self.treasures[handle as usize] = treasure;
        } else {
            self.treasures.push(treasure);
        }
        self.treasure_handles.insert(spec.id, handle);
        self.capacity_total = capacity_total;
        // Room for every claim the live treasures can still give: awards never allocate.
        let claims_len = self.claims.len() as u64;
        assert!(claims_len <= self.capacity_total);
        self.claims.reserve((self.capacity_total - claims_len) as usize);
        Ok(())
    }

    /// Removes a treasure; its awards stay in the players' scores. A treasure placed
    /// later under the same id is a new treasure: its claims start from zero, and players
    /// who claimed the old one may claim the new one.
    pub(crate) fn remove_treasure(&mut self, id: TreasureId) -> Result<(), Rejection> {
        let handle = self.treasure_handles.remove(&id).ok_or(Rejection::TreasureNotFound)?;
        let treasure = &mut self.treasures[handle as usize];
        assert!(treasure.live);
        treasure.live = false;
        let (center, radius_units, capacity) = (treasure.center, treasure.radius_units, treasure.spec.capacity);
        self.grid.remove(handle, center, radius_units);
        self.capacity_total -= capacity as u64;
        // The handle will be reused: forget who claimed the old treasure (slow path).
        self.claims.retain(|key| (key >> 32) as u32 != handle);
        self.treasures_free.push(handle);
        Ok(())
    }

    /// A treasure's state.
    pub(crate) fn treasure_state(&self, id: TreasureId) -> Result<TreasureState, Rejection> {
        let handle = *self.treasure_handles.get(&id).ok_or(Rejection::TreasureNotFound)?;
        let treasure = &self.treasures[handle as usize];
        Ok(TreasureState { claimed: treasure.claimed, capacity: treasure.spec.capacity, value: treasure.spec.value })
    }

    // -----------------------------------------------------------------------------------
    // Players.

    fn player(&self, id: PlayerId) -> Result<&Player, Rejection> {
        self.players.get(id).ok_or(Rejection::NotJoined)
    }

    /// Starts loading player `id`'s slot into the cache, ahead of an event that needs it.
    #[inline]
    pub(crate) fn prefetch_player(&self, id: PlayerId) {
        self.players.prefetch(id);
    }

    /// Finds a joined player and checks the sequence number (duplicates first, so a
    /// retried event is reported as such even if the state has moved on). Returns the
    /// player's slot in `self.players`.
    fn active_player(&self, id: PlayerId, seq: Sequence) -> Result<usize, Rejection> {
        check_sequence(seq)?;
        let slot = self.players.find(id).ok_or(Rejection::NotJoined)?;
        let player = self.players.at(slot);
        if seq <= player.last_seq {
            return Err(Rejection::Duplicate { seq, last: player.last_seq });
        }
        if !player.joined {
            return Err(Rejection::NotJoined);
        }
        Ok(slot)
    }

    /// The most travel a player can bank under the speed limit, `SPEED_BURST_US` of it,
    /// in millionths of an internal unit; 0 when the hunt has none (a move then keeps no
    /// budget). At most 2^32 metres per second, 100 units each, times 2 * 10^6 µs: below 2^60.
    pub(crate) fn travel_budget_max_micro_units(&self) -> u64 {
        self.speed_units_per_second() * SPEED_BURST_US
    }

    fn speed_units_per_second(&self) -> u64 {
        self.projection.length_to_units(self.spec.options.speed_max)
    }

    /// Joins (or rejoins) a player at a position.
    pub(crate) fn join(
        &mut self,
        id: PlayerId,
        seq: Sequence,
        position: Position,
        time: Micros,
        notices: &mut Notices,
    ) -> Result<(i64, u32), Rejection> {
        check_sequence(seq)?;
        if let Some(slot) = self.players.find(id) {
            let player = self.players.at(slot);
            // Duplicates first, as for every player event: a retry says so.
            if seq <= player.last_seq {
                return Err(Rejection::Duplicate { seq, last: player.last_seq });
            }
            if player.joined {
                return Err(Rejection::AlreadyJoined);
            }
            self.not_ended(time)?;
            let point = self.project_inside(position)?;
            self.check_return(player, point, time)?;
            let budget = self.travel_budget_max_micro_units();
            let player = self.players.at_mut(slot);
            player.joined = true;
            player.last_seq = seq;
            player.position = point;
            player.last_time = time;
            player.travel_budget_micro_units = budget;
            let key = player.key();
            let rank = self.leaderboard.rank(&key).expect("a known player is on the leaderboard");
            return Ok((key.score, rank));
        }
        self.not_ended(time)?;
        if self.players.len() as u64 >= PLAYERS_PER_HUNT_MAX as u64 {
            return Err(Rejection::PlayerLimit);
        }
        let point = self.project_inside(position)?;
        let player = Player {
            id,
            handle: 0,
            position: point,
            last_time: time,
            score: 0,
            reached_at: time,
            claims: 0,
            last_seq: seq,
            joined: true,
            travel_budget_micro_units: self.travel_budget_max_micro_units(),
        };
        self.players.insert(player).expect("the id was looked up above");
        self.leaderboard.reserve(1);
        let rank = self.leaderboard.insert(player.key());
        if rank <= TOP_NOTICE_RANKS_MAX {
            self.push_notice(
                notices,
                NoticeKind::TopChanged { player: id, score: 0, rank_before: 0, rank_after: rank },
            );
        }
        Ok((0, rank))
    }

    /// Checks that a player coming back could have travelled from where they left to
    /// `point` at the speed limit in the time they were away (plus the burst window), so
    /// leaving and rejoining is no way around the limit; an honest player who walked on
    /// while away is still let back in.
    fn check_return(&self, player: &Player, point: Point, time: Micros) -> Result<(), Rejection> {
        if self.spec.options.speed_max == 0 {
            return Ok(());
        }
        let away_us = time.saturating_sub(player.last_time) as u128 + SPEED_BURST_US as u128;
        let reach = self.speed_units_per_second() as u128 * away_us / MICROS_PER_SECOND as u128;
        let distance = geo::distance(player.position, point);
        if distance as u128 > reach {
            let allowed = self.projection.units_to_length(reach.min(u64::MAX as u128) as u64);
            return Err(Rejection::TooFast { distance: self.projection.units_to_length_up(distance), allowed });
        }
        Ok(())
    }

    /// A player leaves; score and claims stay. After the end the hunt's standings are
    /// final, so leaving is refused like every other player event.
    pub(crate) fn leave(&mut self, id: PlayerId, seq: Sequence, time: Micros) -> Result<(), Rejection> {
        let slot = self.active_player(id, seq)?;
        self.not_ended(time)?;
        let player = self.players.at_mut(slot);
        player.joined = false;
        player.last_seq = seq;
        Ok(())
    }

    /// Checks a move of the player in `slot` to `position` at `time`: bounds and speed.
    /// Returns the point and the travel budget left after the move, changing nothing.
    fn check_move(&self, slot: usize, position: Position, time: Micros) -> Result<(Point, u64), Rejection> {
        let point = self.project_inside(position)?;
        let player = self.players.at(slot);
        if self.spec.options.speed_max == 0 {
            return Ok((point, 0));
        }
        // The whole time since the last move counts, however long: a player who reports
        // rarely walked all along. Only what is left over is banked, and at most
        // `travel_budget_max_micro_units`. All in millionths of a unit, so nothing earned
        // is rounded away (units per second times microseconds is exact there). Saturating
        // changes no answer: a saturated sum still holds 2^64 / 10^6 units, far beyond any
        // distance between two points (under 2^32 units, so its millionths fit too).
        let speed = self.speed_units_per_second();
        let elapsed_us = time.saturating_sub(player.last_time);
        let earned = speed.saturating_mul(elapsed_us);
        let budget = player.travel_budget_micro_units.saturating_add(earned);
        let distance = geo::distance(player.position, point);
        let spent = distance.saturating_mul(MICROS_PER_SECOND);
        if spent > budget {
            // Rounded up, and the allowance down, so the refusal never reads "20 of 20".
            let distance = self.projection.units_to_length_up(distance);
            let allowed = self.projection.units_to_length(budget / MICROS_PER_SECOND);
            return Err(Rejection::TooFast { distance, allowed });
        }
        Ok((point, (budget - spent).min(self.travel_budget_max_micro_units())))
    }

    fn commit_move(&mut self, slot: usize, seq: Sequence, point: Point, budget: u64, time: Micros) {
        let player = self.players.at_mut(slot);
        player.position = point;
        player.travel_budget_micro_units = budget;
        player.last_time = player.last_time.max(time);
        player.last_seq = seq;
    }

    /// Moves a player; with auto-discover on, claims what lies in reach (into `claims`).
    pub(crate) fn move_player(
        &mut self,
        id: PlayerId,
        seq: Sequence,
        position: Position,
        time: Micros,
        claims: &mut Vec<Claim>,
        notices: &mut Notices,
    ) -> Result<(), Rejection> {
        let slot = self.active_player(id, seq)?;
        self.not_ended(time)?;
        let (point, budget) = self.check_move(slot, position, time)?;
        // Collect what this move can claim before changing anything.
        let mut found = [0u32; CLAIMS_PER_MOVE_MAX];
        let mut found_count = 0;
        if self.spec.options.auto_discover && self.phase_at(time) == Phase::Running {
            let mut points_total: i64 = 0;
            let player = self.players.at(slot);
            let claims_left = self.claims_left(player);
            self.grid.for_each_candidate(point, |treasure| {
                if found_count < CLAIMS_PER_MOVE_MAX && (found_count as u32) < claims_left {
                    if let Ok(points) = self.check_claim(treasure, player, point) {
                        found[found_count] = treasure;
                        found_count += 1;
                        points_total += points as i64;
                    }
                }
            });
            if player.score.checked_add(points_total).is_none() {
                return Err(Rejection::ScoreOverflow);
            }
        }
        self.commit_move(slot, seq, point, budget, time);
        for &treasure in &found[..found_count] {
            let claim = self.award(treasure, slot, time, notices);
            claims.push(claim);
        }
        Ok(())
    }

    fn claims_left(&self, player: &Player) -> u32 {
        match self.spec.options.claims_per_player_max {
            0 => u32::MAX,
            max => max.saturating_sub(player.claims),
        }
    }

    /// The claim rule, after the hunt is known to run and the player to be joined:
    /// capacity left, not claimed before by this player, player's claim limit, within
    /// radius. Returns the points the claim would give.
    fn check_claim(&self, treasure_handle: u32, player: &Player, point: Point) -> Result<u32, Rejection> {
        let treasure = &self.treasures[treasure_handle as usize];
        assert!(treasure.live);
        if treasure.claimed >= treasure.spec.capacity {
            return Err(Rejection::TreasureExhausted);
        }
        if self.claims.contains(&claim_key(treasure_handle, player.handle)) {
            return Err(Rejection::AlreadyClaimed);
        }
        if self.claims_left(player) == 0 {
            return Err(Rejection::PlayerClaimLimit);
        }
        let distance_squared = geo::distance_squared(point, treasure.center);
        if distance_squared > treasure.radius_units * treasure.radius_units {
            // Rounded up: a point just beyond the radius must not read as at the radius.
            let distance = self.projection.units_to_length_up(geo::isqrt_up(distance_squared));
            return Err(Rejection::OutOfReach { distance, radius: treasure.spec.radius });
        }
        let index = treasure.claimed + 1;
        Ok(points_for(self.spec.options.points, treasure.spec.value, index, treasure.spec.capacity))
    }

    /// Awards a treasure whose claim was checked; updates score, rank and notices.
    fn award(&mut self, treasure_handle: u32, slot: usize, time: Micros, notices: &mut Notices) -> Claim {
        let treasure = &mut self.treasures[treasure_handle as usize];
        treasure.claimed += 1;
        assert!(treasure.claimed <= treasure.spec.capacity);
        let (index, capacity) = (treasure.claimed, treasure.spec.capacity);
        let points = points_for(self.spec.options.points, treasure.spec.value, index, capacity);
        let treasure_id = treasure.spec.id;
        let player = self.players.at_mut(slot);
        let fresh = self.claims.insert(claim_key(treasure_handle, player.handle));
        assert!(fresh, "a checked claim was already in the claim table");
        // A count of past awards, which removed treasures leave behind, so nothing bounds
        // it below 2^32; saturated, a per-player claim limit still holds.
        player.claims = player.claims.saturating_add(1);
        let player = player.id;
        let (score, rank) = self.add_points(slot, points as i64, time, notices);
        let claim = Claim { treasure: treasure_id, index, capacity, points, score, rank };
        self.push_notice(notices, NoticeKind::Discovery { player, claim });
        if index == capacity {
            self.push_notice(notices, NoticeKind::Lifecycle(Lifecycle::Exhausted { treasure: treasure_id }));
        }
        claim
    }

    /// Adds points (checked by the caller) and moves the player on the leaderboard.
    fn add_points(&mut self, slot: usize, points: i64, time: Micros, notices: &mut Notices) -> (i64, u32) {
        let player = self.players.at_mut(slot);
        let old = player.key();
        if points == 0 {
            let rank = self.leaderboard.rank(&old).expect("a known player is on the leaderboard");
            return (old.score, rank);
        }
        player.score += points;
        player.reached_at = time;
        let new = player.key();
        let (rank_before, rank_after) = self.leaderboard.update(&old, new);
        if rank_before <= TOP_NOTICE_RANKS_MAX || rank_after <= TOP_NOTICE_RANKS_MAX {
            let kind = NoticeKind::TopChanged { player: new.player, score: new.score, rank_before, rank_after };
            self.push_notice(notices, kind);
        }
        (new.score, rank_after)
    }

    /// A dig: the player moves to `position` and claims treasure `id` there.
    pub(crate) fn dig(
        &mut self,
        id: PlayerId,
        seq: Sequence,
        treasure: TreasureId,
        position: Position,
        time: Micros,
        notices: &mut Notices,
    ) -> Result<Claim, Rejection> {
        let slot = self.active_player(id, seq)?;
        self.running(time)?;
        let treasure_handle = *self.treasure_handles.get(&treasure).ok_or(Rejection::TreasureNotFound)?;
        let (point, budget) = self.check_move(slot, position, time)?;
        let player = self.players.at(slot);
        let points = self.check_claim(treasure_handle, player, point)?;
        if player.score.checked_add(points as i64).is_none() {
            return Err(Rejection::ScoreOverflow);
        }
        self.commit_move(slot, seq, point, budget, time);
        Ok(self.award(treasure_handle, slot, time, notices))
    }

    /// Adds `delta` to a player's score.
    pub(crate) fn adjust(
        &mut self,
        id: PlayerId,
        seq: Sequence,
        delta: i32,
        time: Micros,
        notices: &mut Notices,
    ) -> Result<(i64, u32), Rejection> {
        let slot = self.active_player(id, seq)?;
        self.not_ended(time)?;
        let player = self.players.at_mut(slot);
        player.score.checked_add(delta as i64).ok_or(Rejection::ScoreOverflow)?;
        player.last_seq = seq;
        Ok(self.add_points(slot, delta as i64, time, notices))
    }

    // -----------------------------------------------------------------------------------
    // Queries.

    /// Up to `count` leaderboard lines from 1-based rank `first`, into `out`.
    pub(crate) fn list(&self, first: u32, count: u32, out: &mut Vec<Ranked>) {
        self.leaderboard.for_each_from(first, count, |rank, key| {
            out.push(Ranked { rank, player: key.player, score: key.score, reached_at: key.reached_at });
        });
    }

    /// The 1-based rank of a known player.
    pub(crate) fn rank_of(&self, id: PlayerId) -> Result<u32, Rejection> {
        let key = self.player(id)?.key();
        Ok(self.leaderboard.rank(&key).expect("a known player is on the leaderboard"))
    }

    /// A player's standing.
    pub(crate) fn standing(&self, id: PlayerId) -> Result<Standing, Rejection> {
        let player = self.player(id)?;
        let rank = self.leaderboard.rank(&player.key()).expect("a known player is on the leaderboard");
        Ok(Standing {
            rank,
            total: self.leaderboard.len(),
            score: player.score,
            claims: player.claims,
            last_seq: player.last_seq,
            joined: player.joined,
        })
    }

    /// Distance from a joined player to the nearest treasure they can still claim. Once
    /// the hunt has ended nothing can be claimed, so the hint is refused as a claim would be:
    /// after the player checks, whatever the search found (it changes nothing).
    pub(crate) fn hint(&self, id: PlayerId, time: Micros) -> Result<Option<u64>, Rejection> {
        let distance = self.nearest_claimable_to(id)?;
        self.not_ended(time)?;
        Ok(distance)
    }

    /// The player checks and the search behind [`Hunt::hint`]. Its own function, with the
    /// hunt's end checked by the caller after it: the grid loops inlined here compiled to
    /// 73 more instructions per query when that one comparison sat in front of them
    /// (`perf/RESULTS.md`, "HINT's instruction count").
    fn nearest_claimable_to(&self, id: PlayerId) -> Result<Option<u64>, Rejection> {
        let player = self.player(id)?;
        let handle = player.handle;
        if !player.joined {
            return Err(Rejection::NotJoined);
        }
        if self.claims_left(player) == 0 {
            return Ok(None);
        }
        let nearest = self.grid.nearest(player.position, |treasure_handle, distance_squared| {
            let treasure = &self.treasures[treasure_handle as usize];
            let in_hint_range =
                treasure.hint_units == 0 || distance_squared <= treasure.hint_units * treasure.hint_units;
            in_hint_range
                && treasure.claimed < treasure.spec.capacity
                && !self.claims.contains(&claim_key(treasure_handle, handle))
        });
        Ok(nearest.map(|(_, distance_squared)| self.projection.units_to_length(geo::isqrt(distance_squared))))
    }

    /// Feeds the hunt's canonical state to `hasher`: sorted by id, independent of hash
    /// map order and of where players sit in their table, but with each treasure's handle
    /// and the free handles, which decide later outcomes (slow path: allocates to sort).
    pub(crate) fn digest_into(&self, hasher: &mut xxhash_rust::xxh3::Xxh3) {
        let spec = &self.spec;
        let mut put = |value: i64| hasher.update(&value.to_le_bytes());
        put(self.id as i64);
        put(spec.coordinates as i64);
        for value in [spec.min.x, spec.min.y, spec.max.x, spec.max.y] {
            put(value as i64);
        }
        put(spec.start as i64);
        put(self.end as i64);
        put(spec.options.auto_discover as i64);
        put(spec.options.speed_max as i64);
        put(spec.options.points as i64);
        put(spec.options.claims_per_player_max as i64);
        put(self.announced as i64);
        for seq in self.topic_seqs {
            put(seq as i64);
        }
        // Handles and the free list are state too: a move claims the treasures it reaches
        // in handle order, and the next placement takes the last free handle.
        let mut treasures: Vec<(u32, &Treasure)> =
            (0..).zip(&self.treasures).filter(|(_, treasure)| treasure.live).collect();
        treasures.sort_by_key(|(_, treasure)| treasure.spec.id);
        for (handle, treasure) in treasures {
            put(handle as i64);
            let spec = &treasure.spec;
            for value in [spec.id as i64, spec.position.x as i64, spec.position.y as i64, spec.radius as i64] {
                put(value);
            }
            for value in [spec.value, spec.capacity, spec.hint_radius, treasure.claimed] {
                put(value as i64);
            }
        }
        put(self.treasures_free.len() as i64);
        for &handle in &self.treasures_free {
            put(handle as i64);
        }
        let mut players: Vec<&Player> = self.players.iter().collect();
        players.sort_by_key(|player| player.id);
        for player in players {
            for value in [player.id as i64, player.position.x as i64, player.position.y as i64, player.score] {
                put(value);
            }
            for value in [player.last_time, player.reached_at, player.travel_budget_micro_units] {
                put(value as i64);
            }
            for value in [player.claims, player.last_seq, player.joined as u32] {
                put(value as i64);
            }
        }
        let mut claims: Vec<(TreasureId, PlayerId)> = self
            .claims
            .iter()
            .map(|key| {
                let treasure = self.treasures[(key >> 32) as usize].spec.id;
                let player = self.players.by_handle(*key as u32).id;
                (treasure, player)
            })
            .collect();
        claims.sort_unstable();
        for (treasure, player) in claims {
            put(treasure as i64);
            put(player as i64);
        }
        self.leaderboard.for_each_from(1, self.leaderboard.len(), |rank, key| {
            put(rank as i64);
            put(key.player as i64);
        });
    }
}
