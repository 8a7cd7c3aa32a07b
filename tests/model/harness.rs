//! The model harness shared by the model-based tests (`tests/model.rs`, proptest), the
//! byte-driven properties (`tests/fuzz_props.rs`) and the state-machine fuzz target
//! (`fuzz/fuzz_targets/events.rs`), each of which includes it with `#[path]` next to
//! `reference.rs`.
//!
//! It holds the plans (events whose sequence numbers and positions are resolved against
//! the model just before they are applied), [`run`] (apply a case to the engine and the
//! model side by side and compare after every step), the digest checks, and a byte codec
//! for cases ([`decode_steps`], [`encode_steps`]) so that a fuzzer's arbitrary bytes are a
//! case too, and a case drawn by the proptest strategies can be written as a seed.
//!
//! Nothing here depends on proptest: failures are `Err(String)` with the concrete events
//! that led to them.

use cairn::constants::{COORDINATE_ABS_MAX, RADIUS_MAX, TOP_COUNT_MAX};
use cairn::event::{
    Coordinates, Event, HuntId, HuntOptions, HuntSpec, Micros, PlayerId, PointsRule, Position, Sequence, TreasureId,
    TreasureSpec,
};
use cairn::outcome::{Outcome, TreasureState};
use cairn::shard::Shard;

use crate::reference::{self, Answer, Model};

pub const SECOND: Micros = 1_000_000;

/// Event time of the first event: far enough from zero that hunts may start in the past.
pub const TIME_FIRST: Micros = 1_000 * SECOND;

/// Hunt ids the generator uses; the last one is created rarely, so it is mostly unknown.
pub const HUNT_IDS: [HuntId; 4] = [1, 2, 3, 4];

/// Treasure ids the generator uses within a hunt; the last one is drawn rarely, so it is
/// mostly unknown.
pub const TREASURE_IDS: [TreasureId; 7] = [1, 2, 3, 4, 5, 6, 7];

/// Player ids the generator uses within a hunt; the last one is drawn rarely, so it has
/// mostly never joined.
pub const PLAYER_IDS: [PlayerId; 7] = [1, 2, 3, 4, 5, 6, 7];

/// A hunt id the random events never use, for the digest-sensitivity check.
pub const HUNT_SPARE: HuntId = 90;

// ---------------------------------------------------------------------------------------
// Plans: events with their sequence numbers and positions still to be resolved.

/// Which sequence number an event of a player carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqPlan {
    /// One above the last applied: the normal case.
    Next,
    /// Leaves a gap (allowed: only numbers not above the last are duplicates).
    Skip(u32),
    /// The last applied minus this: a retried event.
    Repeat(u32),
}

/// A displacement in plan units: whole units plus thousandths of a unit, which only
/// matter in hunts scaled up (see [`scale`]), where they move points off the lattice of
/// whole units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offset {
    pub x: i32,
    pub y: i32,
    pub fine_x: i32,
    pub fine_y: i32,
}

/// Where an event of a player happens, in plan units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpotPlan {
    /// An absolute position (sometimes outside the bounds).
    At(Position),
    /// A step from where the player stands.
    Step(Offset),
    /// An offset from a treasure's position; treasure 0 stands for the treasure dug for.
    Near(TreasureId, Offset),
}

/// A hunt spec whose times are relative to the event that creates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HuntPlan {
    pub min: Position,
    pub max: Position,
    /// Start relative to the creating event's time, in microseconds.
    pub start_offset: i64,
    /// Running time; `None` runs forever; `Some(0)` is invalid (start not before end).
    pub length: Option<Micros>,
    pub options: HuntOptions,
}

impl HuntPlan {
    /// Returns true if and only if the hunt this plan creates is valid.
    pub fn valid(&self) -> bool {
        let in_range = |value: i32| (value as i64).abs() <= COORDINATE_ABS_MAX;
        let corners = [self.min.x, self.min.y, self.max.x, self.max.y];
        self.min.x <= self.max.x
            && self.min.y <= self.max.y
            && corners.into_iter().all(in_range)
            && self.length != Some(0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Create {
        hunt: HuntId,
        plan: HuntPlan,
    },
    End {
        hunt: HuntId,
    },
    Delete {
        hunt: HuntId,
    },
    Place {
        hunt: HuntId,
        treasure: TreasureSpec,
    },
    Remove {
        hunt: HuntId,
        treasure: TreasureId,
    },
    Join {
        hunt: HuntId,
        player: PlayerId,
        seq: SeqPlan,
        spot: SpotPlan,
    },
    Leave {
        hunt: HuntId,
        player: PlayerId,
        seq: SeqPlan,
    },
    Move {
        hunt: HuntId,
        player: PlayerId,
        seq: SeqPlan,
        spot: SpotPlan,
    },
    Dig {
        hunt: HuntId,
        player: PlayerId,
        seq: SeqPlan,
        treasure: TreasureId,
        spot: SpotPlan,
    },
    Adjust {
        hunt: HuntId,
        player: PlayerId,
        seq: SeqPlan,
        delta: i32,
    },
    /// Queries need no resolving.
    Query(Event),
}

/// One step: how far event time advances, then the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub time_delta: Micros,
    pub plan: Plan,
}

// ---------------------------------------------------------------------------------------
// Resolving plans into events.

fn resolve_seq(model: &Model, hunt: HuntId, player: PlayerId, plan: SeqPlan) -> Sequence {
    let last = model.hunt(hunt).and_then(|hunt| hunt.players.iter().find(|each| each.id == player));
    let last = last.map_or(0, |player| player.last_seq);
    match plan {
        SeqPlan::Next => last + 1,
        SeqPlan::Skip(gap) => last.saturating_add(1).saturating_add(gap),
        SeqPlan::Repeat(back) => last.saturating_sub(back),
    }
}

/// How many world units one plan unit is in each hunt. Plans are drawn on a 200-unit
/// square; hunt 1 takes them as they are (the grid's cells are one unit wide and exact
/// lattice distances hit radii exactly), hunt 2 multiplies by 1000 (cells of 1024 units,
/// points off the lattice through [`Offset`]'s thousandths), hunt 3 by 7.
fn scale(hunt: HuntId) -> i32 {
    match hunt {
        2 => 1_000,
        3 => 7,
        _ => 1,
    }
}

/// Scales a plan length; the deliberately huge values (at or above `RADIUS_MAX`) stay as
/// they are, so that they keep testing the limits.
fn scale_length(length: u32, scale: i32) -> u32 {
    if length >= RADIUS_MAX {
        return length;
    }
    length.saturating_mul(scale as u32)
}

fn scale_position(position: Position, scale: i32) -> Position {
    Position::new(position.x.saturating_mul(scale), position.y.saturating_mul(scale))
}

fn displace(from: Position, offset: Offset, scale: i32) -> Position {
    let along = |whole: i32, fine: i32| whole * scale + fine * scale / 1_000;
    Position::new(
        from.x.saturating_add(along(offset.x, offset.fine_x)),
        from.y.saturating_add(along(offset.y, offset.fine_y)),
    )
}

fn resolve_spot(model: &Model, hunt_id: HuntId, player: PlayerId, plan: SpotPlan) -> Position {
    let scale = scale(hunt_id);
    let hunt = model.hunt(hunt_id);
    // Steps of a player not yet in the hunt start from the middle of its bounds.
    let centre = hunt.map_or(Position::new(100, 100), |hunt| {
        let (min, max) = (hunt.spec.min, hunt.spec.max);
        Position::new(((min.x as i64 + max.x as i64) / 2) as i32, ((min.y as i64 + max.y as i64) / 2) as i32)
    });
    match plan {
        SpotPlan::At(position) => scale_position(position, scale),
        SpotPlan::Step(offset) => {
            let player = hunt.and_then(|hunt| hunt.players.iter().find(|each| each.id == player));
            displace(player.map_or(centre, |player| player.position), offset, scale)
        }
        SpotPlan::Near(treasure, offset) => {
            let treasure = hunt.and_then(|hunt| hunt.treasures.iter().find(|each| each.spec.id == treasure));
            displace(treasure.map_or(centre, |treasure| treasure.spec.position), offset, scale)
        }
    }
}

pub fn resolve(model: &Model, time: Micros, plan: &Plan) -> Event {
    match *plan {
        Plan::Create { hunt, plan } => {
            let start = (time as i64).saturating_add(plan.start_offset).max(0) as Micros;
            let end = plan.length.map_or(Micros::MAX, |length| start.saturating_add(length));
            let scale = scale(hunt);
            let options = HuntOptions { speed_max: scale_length(plan.options.speed_max, scale), ..plan.options };
            let spec = HuntSpec {
                coordinates: Coordinates::Planar,
                min: scale_position(plan.min, scale),
                max: scale_position(plan.max, scale),
                start,
                end,
                options,
            };
            Event::CreateHunt { hunt, spec }
        }
        Plan::End { hunt } => Event::EndHunt { hunt },
        Plan::Delete { hunt } => Event::DeleteHunt { hunt },
        Plan::Place { hunt, treasure } => {
            let scale = scale(hunt);
            let treasure = TreasureSpec {
                position: scale_position(treasure.position, scale),
                radius: scale_length(treasure.radius, scale),
                hint_radius: scale_length(treasure.hint_radius, scale),
                ..treasure
            };
            Event::PlaceTreasure { hunt, treasure }
        }
        Plan::Remove { hunt, treasure } => Event::RemoveTreasure { hunt, treasure },
        Plan::Join { hunt, player, seq, spot } => Event::Join {
            hunt,
            player,
            seq: resolve_seq(model, hunt, player, seq),
            position: resolve_spot(model, hunt, player, spot),
        },
        Plan::Leave { hunt, player, seq } => Event::Leave { hunt, player, seq: resolve_seq(model, hunt, player, seq) },
        Plan::Move { hunt, player, seq, spot } => Event::Move {
            hunt,
            player,
            seq: resolve_seq(model, hunt, player, seq),
            position: resolve_spot(model, hunt, player, spot),
        },
        Plan::Dig { hunt, player, seq, treasure, spot } => Event::Dig {
            hunt,
            player,
            seq: resolve_seq(model, hunt, player, seq),
            treasure,
            position: resolve_spot(model, hunt, player, spot),
        },
        Plan::Adjust { hunt, player, seq, delta } => {
            Event::AdjustScore { hunt, player, seq: resolve_seq(model, hunt, player, seq), delta }
        }
        Plan::Query(event) => event,
    }
}

// ---------------------------------------------------------------------------------------
// Running a case.

/// The events of a case so far, for failure messages: a minimal failing case reads as
/// the concrete events that lead to it.
fn script(log: &[(Micros, Event)]) -> String {
    log.iter().map(|(time, event)| format!("\n  t={}: {event:?}", time - TIME_FIRST)).collect()
}

/// Applies a query to the engine and to the model and compares the answers.
fn compare_query(shard: &mut Shard, model: &Model, query: &Event, time: Micros) -> Result<Answer, String> {
    let actual = Answer::of(&shard.apply(query, time));
    let expected = model.answer(query, time).unwrap_or_else(Answer::Rejected);
    if actual != expected {
        return Err(format!("query {query:?}: engine {actual:?}, model {expected:?}"));
    }
    Ok(actual)
}

/// The state checks run after every step: every leaderboard, treasure, standing,
/// neighbourhood and hint the engine can be asked about agrees with the model, and the
/// invariants hold, checked both on the engine's answers and on the model's own
/// bookkeeping. Queries must not change the digest.
fn check_state(shard: &mut Shard, model: &Model, time: Micros) -> Result<(), String> {
    let digest = shard.digest();
    for hunt in HUNT_IDS {
        compare_query(shard, model, &Event::Top { hunt, count: TOP_COUNT_MAX }, time)?;
        // The usual ids, and any other the model knows (the dense cases place up to 40).
        let placed = model.hunt(hunt).into_iter().flat_map(|hunt| hunt.treasures.iter().map(|each| each.spec.id));
        let mut treasures: Vec<TreasureId> = TREASURE_IDS.into_iter().chain(placed).collect();
        treasures.sort_unstable();
        treasures.dedup();
        for treasure in treasures {
            let answer = compare_query(shard, model, &Event::TreasureInfo { hunt, treasure }, time)?;
            if let Answer::Treasure(TreasureState { claimed, capacity, .. }) = answer {
                if claimed > capacity {
                    return Err(format!("hunt {hunt} treasure {treasure}: {claimed} claims of {capacity}"));
                }
            }
        }
        for player in PLAYER_IDS {
            compare_query(shard, model, &Event::Rank { hunt, player }, time)?;
            compare_query(shard, model, &Event::Around { hunt, player, radius: 2 }, time)?;
            compare_query(shard, model, &Event::Hint { hunt, player }, time)?;
        }
    }
    for hunt in &model.hunts {
        check_ledger(hunt)?;
    }
    if shard.digest() != digest {
        return Err("queries changed the digest".to_string());
    }
    Ok(())
}

/// The model's own books: no placement awarded twice to a player, no treasure beyond its
/// capacity, and every score the sum of its awards and adjustments.
fn check_ledger(hunt: &reference::Hunt) -> Result<(), String> {
    let mut pairs: Vec<(u64, PlayerId)> = hunt.awards.iter().map(|award| (award.placement, award.player)).collect();
    pairs.sort_unstable();
    if pairs.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(format!("hunt {}: a treasure was awarded twice to one player: {:?}", hunt.id, hunt.awards));
    }
    for treasure in &hunt.treasures {
        let awards = hunt.awards.iter().filter(|award| award.placement == treasure.placement);
        if let Some(award) = awards.clone().find(|award| award.treasure != treasure.spec.id) {
            return Err(format!("hunt {}: award {award:?} names another treasure than {treasure:?}", hunt.id));
        }
        let awarded = awards.count();
        if awarded as u32 > treasure.spec.capacity || awarded != treasure.claimers.len() {
            return Err(format!("hunt {}: treasure {:?} awarded {awarded} times", hunt.id, treasure));
        }
    }
    for player in &hunt.players {
        let awards: i64 =
            hunt.awards.iter().filter(|award| award.player == player.id).map(|award| award.points as i64).sum();
        let adjustments: i64 =
            hunt.adjustments.iter().filter(|(id, _)| *id == player.id).map(|&(_, delta)| delta).sum();
        if player.score != awards + adjustments {
            return Err(format!(
                "hunt {}: player {} has {} != {awards} + {adjustments}",
                hunt.id, player.id, player.score
            ));
        }
        let claims = hunt.awards.iter().filter(|award| award.player == player.id).count();
        if player.claims as usize != claims {
            return Err(format!("hunt {}: player {} counts {} claims of {claims}", hunt.id, player.id, player.claims));
        }
    }
    Ok(())
}

/// Applies one event to both sides and compares the outcome and the notices.
///
/// Independently of the model, a query or a refused event must leave the digest as it
/// was. The one exception is the engine's choice to announce lifecycle stages that the
/// event time has reached even when the event itself is refused: a refused event that
/// produced such a notice is exempt (see the doubt about journal replay in the report).
fn compare_event(shard: &mut Shard, model: &mut Model, event: &Event, time: Micros) -> Result<(), String> {
    let digest = shard.digest();
    let outcome = shard.apply(event, time);
    let actual = Answer::of(&outcome);
    let picked: Vec<TreasureId> = match outcome {
        Outcome::Moved { claims } => claims.iter().map(|claim| claim.treasure).collect(),
        _ => Vec::new(),
    };
    let expected = model.apply(event, time, Some(&picked))?;
    if actual != expected.answer {
        return Err(format!("outcome: engine {actual:?}, model {:?}", expected.answer));
    }
    if shard.notices() != expected.notices.as_slice() {
        return Err(format!("notices: engine {:?}, model {:?}", shard.notices(), expected.notices));
    }
    let unchanged = !event.is_mutation() || (actual.is_rejected() && shard.notices().is_empty());
    if unchanged && shard.digest() != digest {
        return Err(format!("{actual:?} changed the digest"));
    }
    Ok(())
}

/// Runs one case; returns the concrete events with their times, and the digest of the
/// shard they were applied to. Every outcome and notice is compared, and the whole state
/// after every step.
pub fn run(steps: &[Step]) -> Result<(Vec<(Micros, Event)>, u64), String> {
    run_checking_state_every(steps, 1)
}

/// [`run`], comparing the whole state (every leaderboard, treasure and standing) only
/// after every `every`-th step and the last one; outcomes and notices are still compared
/// at every step. Divergent state persists until it is looked at, so this finds what
/// `run` finds, several times faster per step, which a fuzzer turns into more cases.
pub fn run_checking_state_every(steps: &[Step], every: usize) -> Result<(Vec<(Micros, Event)>, u64), String> {
    assert!(every >= 1);
    let mut shard = Shard::new();
    let mut model = Model::new();
    let mut time = TIME_FIRST;
    let mut log = Vec::with_capacity(steps.len());
    for (index, step) in steps.iter().enumerate() {
        time += step.time_delta;
        let event = resolve(&model, time, &step.plan);
        log.push((time, event));
        let mut checked = compare_event(&mut shard, &mut model, &event, time);
        if (index + 1) % every == 0 || index + 1 == steps.len() {
            checked = checked.and_then(|()| check_state(&mut shard, &model, time));
        }
        if let Err(why) = checked {
            return Err(format!("{why}\nafter:{}", script(&log)));
        }
    }
    Ok((log, shard.digest()))
}

fn replay(log: &[(Micros, Event)]) -> Shard {
    let mut shard = Shard::new();
    for (time, event) in log {
        shard.apply(event, *time);
    }
    shard
}

/// The determinism checks at the end of a case: the same events replayed into a fresh
/// shard give the digest of the shard that applied them live (queries and all), and two
/// continuations that differ in one score give different digests.
pub fn check_digests(log: &[(Micros, Event)], digest: u64) -> Result<(), String> {
    if replay(log).digest() != digest {
        return Err(format!("replaying the same events changed the digest, after:{}", script(log)));
    }
    let time = log.last().map_or(TIME_FIRST, |&(time, _)| time);
    let spec = HuntSpec {
        coordinates: Coordinates::Planar,
        min: Position::new(0, 0),
        max: Position::new(10, 10),
        start: 0,
        end: Micros::MAX,
        options: HuntOptions::default(),
    };
    // A hunt the case never created (arbitrary bytes may create `HUNT_SPARE` itself).
    let created =
        |id: HuntId| log.iter().any(|(_, event)| matches!(event, Event::CreateHunt { hunt, .. } if *hunt == id));
    let spare = (HUNT_SPARE..).find(|&id| !created(id)).expect("a case creates finitely many hunts");
    let continuation = |delta: i32| {
        [
            Event::CreateHunt { hunt: spare, spec },
            Event::Join { hunt: spare, player: 1, seq: 1, position: Position::new(5, 5) },
            Event::AdjustScore { hunt: spare, player: 1, seq: 2, delta },
        ]
    };
    let continued = |delta: i32| {
        let mut log = log.to_vec();
        log.extend(continuation(delta).into_iter().map(|event| (time, event)));
        replay(&log).digest()
    };
    if continued(5) == continued(6) {
        let mut shard = replay(log);
        let outcomes: Vec<String> =
            continuation(5).iter().map(|event| format!("{:?}", shard.apply(event, time))).collect();
        return Err(format!(
            "two different scores gave the same digest; the continuation's outcomes: {outcomes:?}, after:{}",
            script(log)
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Cases as bytes, for the fuzzer.
//
// A case is a run of steps, each written as its fields in order, little-endian, with no
// padding and no length: `time_delta u32` (microseconds), `kind u8` (the plan, modulo the
// number of kinds), then the plan's fields. Ids are narrow (hunt `u8`, player and
// treasure `u16`) so that random bytes name the few hunts, players and treasures a case
// knows more often than not; offsets are `i16`, so scaling them cannot overflow. Reading
// past the end gives zeros, and decoding stops at the end of the input (or after
// `STEPS_MAX` steps), so every byte string is a case and every case the strategies of
// `tests/model.rs` draw encodes to bytes that decode back to it.

/// Most steps one decoded case runs, so one fuzz input stays bounded; the crowded cases
/// of `tests/model.rs` have up to 1,001 steps.
pub const STEPS_MAX: usize = 1_024;

/// Plan kinds in the byte format, in the order of their `kind` byte.
const PLAN_KINDS: u8 = 11;
/// Query kinds in the byte format.
const QUERY_KINDS: u8 = 5;

// `tests/fuzz_props.rs` includes both byte formats, so this file is loaded twice there:
// each format extends its own copy of `Reader` with its own fields, which is intended.
#[allow(clippy::duplicate_mod)]
#[path = "../props/bytes.rs"]
pub mod bytes;
use bytes::Reader;

impl Reader<'_> {
    fn u16(&mut self) -> u32 {
        u16::from_le_bytes(self.take()) as u32
    }

    fn i16(&mut self) -> i32 {
        i16::from_le_bytes(self.take()) as i32
    }

    fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.take())
    }

    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }

    fn position(&mut self) -> Position {
        Position::new(self.i32(), self.i32())
    }

    fn offset(&mut self) -> Offset {
        Offset { x: self.i16(), y: self.i16(), fine_x: self.i16(), fine_y: self.i16() }
    }

    fn seq(&mut self) -> SeqPlan {
        let (kind, value) = (self.u8() % 3, self.u8() as u32);
        match kind {
            0 => SeqPlan::Next,
            1 => SeqPlan::Skip(value),
            _ => SeqPlan::Repeat(value),
        }
    }

    fn spot(&mut self) -> SpotPlan {
        match self.u8() % 3 {
            0 => SpotPlan::At(self.position()),
            1 => SpotPlan::Step(self.offset()),
            _ => SpotPlan::Near(self.u16(), self.offset()),
        }
    }

    fn hunt_plan(&mut self) -> HuntPlan {
        let (min, max, start_offset) = (self.position(), self.position(), self.i64());
        let length = if self.u8() & 1 == 0 { None } else { Some(self.u64()) };
        let auto_discover = self.u8() & 1 == 1;
        let speed_max = self.u32();
        let points = if self.u8() & 1 == 0 { PointsRule::Full } else { PointsRule::Decay };
        let options = HuntOptions { auto_discover, speed_max, points, claims_per_player_max: self.u32() };
        HuntPlan { min, max, start_offset, length, options }
    }

    fn treasure(&mut self) -> TreasureSpec {
        let (id, position) = (self.u16(), self.position());
        let (radius, value, capacity, hint_radius) = (self.u32(), self.u32(), self.u32(), self.u32());
        TreasureSpec { id, position, radius, value, capacity, hint_radius }
    }

    fn query(&mut self) -> Event {
        let (kind, hunt) = (self.u8() % QUERY_KINDS, self.u8() as HuntId);
        match kind {
            0 => Event::Top { hunt, count: self.u32() },
            1 => Event::Rank { hunt, player: self.u16() },
            2 => Event::Around { hunt, player: self.u16(), radius: self.u32() },
            3 => Event::Hint { hunt, player: self.u16() },
            _ => Event::TreasureInfo { hunt, treasure: self.u16() },
        }
    }

    fn plan(&mut self) -> Plan {
        let (kind, hunt) = (self.u8() % PLAN_KINDS, self.u8() as HuntId);
        match kind {
            0 => Plan::Create { hunt, plan: self.hunt_plan() },
            1 => Plan::End { hunt },
            2 => Plan::Delete { hunt },
            3 => Plan::Place { hunt, treasure: self.treasure() },
            4 => Plan::Remove { hunt, treasure: self.u16() },
            5 => Plan::Join { hunt, player: self.u16(), seq: self.seq(), spot: self.spot() },
            6 => Plan::Leave { hunt, player: self.u16(), seq: self.seq() },
            7 => Plan::Move { hunt, player: self.u16(), seq: self.seq(), spot: self.spot() },
            8 => {
                let (player, seq, treasure) = (self.u16(), self.seq(), self.u16());
                Plan::Dig { hunt, player, seq, treasure, spot: self.spot() }
            }
            9 => Plan::Adjust { hunt, player: self.u16(), seq: self.seq(), delta: self.i32() },
            // A query's own hunt byte follows; this one is read only to keep the layout
            // of every kind alike, and is written as 0.
            _ => Plan::Query(self.query()),
        }
    }
}

/// The case that `bytes` encode (see the format above). Total: any bytes are a case.
pub fn decode_steps(bytes: &[u8]) -> Vec<Step> {
    let mut reader = Reader { bytes };
    let mut steps = Vec::new();
    while !reader.bytes.is_empty() && steps.len() < STEPS_MAX {
        let time_delta = reader.u32() as Micros;
        steps.push(Step { time_delta, plan: reader.plan() });
    }
    steps
}

/// Writes fields in the layout [`Reader`] reads.
struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn narrow<T: TryFrom<i64>>(value: i64, what: &str) -> T {
        T::try_from(value).unwrap_or_else(|_| panic!("{what} {value} does not fit the byte format"))
    }

    fn u8(&mut self, value: i64) {
        self.bytes.push(Self::narrow::<u8>(value, "u8 field"));
    }

    fn u16(&mut self, value: u32) {
        self.bytes.extend_from_slice(&Self::narrow::<u16>(value as i64, "id").to_le_bytes());
    }

    fn i16(&mut self, value: i32) {
        self.bytes.extend_from_slice(&Self::narrow::<i16>(value as i64, "offset").to_le_bytes());
    }

    fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    fn i32(&mut self, value: i32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    fn position(&mut self, position: Position) {
        self.i32(position.x);
        self.i32(position.y);
    }

    fn offset(&mut self, offset: Offset) {
        for value in [offset.x, offset.y, offset.fine_x, offset.fine_y] {
            self.i16(value);
        }
    }

    fn seq(&mut self, seq: SeqPlan) {
        let (kind, value) = match seq {
            SeqPlan::Next => (0, 0),
            SeqPlan::Skip(gap) => (1, gap),
            SeqPlan::Repeat(back) => (2, back),
        };
        self.u8(kind);
        self.u8(value as i64);
    }

    fn spot(&mut self, spot: SpotPlan) {
        match spot {
            SpotPlan::At(position) => {
                self.u8(0);
                self.position(position);
            }
            SpotPlan::Step(offset) => {
                self.u8(1);
                self.offset(offset);
            }
            SpotPlan::Near(treasure, offset) => {
                self.u8(2);
                self.u16(treasure);
                self.offset(offset);
            }
        }
    }

    fn hunt_plan(&mut self, plan: &HuntPlan) {
        self.position(plan.min);
        self.position(plan.max);
        self.bytes.extend_from_slice(&plan.start_offset.to_le_bytes());
        match plan.length {
            None => self.u8(0),
            Some(length) => {
                self.u8(1);
                self.bytes.extend_from_slice(&length.to_le_bytes());
            }
        }
        self.u8(plan.options.auto_discover as i64);
        self.u32(plan.options.speed_max);
        self.u8(matches!(plan.options.points, PointsRule::Decay) as i64);
        self.u32(plan.options.claims_per_player_max);
    }

    fn treasure(&mut self, treasure: &TreasureSpec) {
        self.u16(treasure.id);
        self.position(treasure.position);
        for value in [treasure.radius, treasure.value, treasure.capacity, treasure.hint_radius] {
            self.u32(value);
        }
    }

    fn query(&mut self, query: &Event) {
        let (kind, hunt) = match *query {
            Event::Top { hunt, .. } => (0, hunt),
            Event::Rank { hunt, .. } => (1, hunt),
            Event::Around { hunt, .. } => (2, hunt),
            Event::Hint { hunt, .. } => (3, hunt),
            Event::TreasureInfo { hunt, .. } => (4, hunt),
            other => panic!("{other:?} is not a query the byte format knows"),
        };
        self.u8(kind);
        self.u8(hunt as i64);
        match *query {
            Event::Top { count, .. } => self.u32(count),
            Event::Rank { player, .. } | Event::Hint { player, .. } => self.u16(player),
            Event::Around { player, radius, .. } => {
                self.u16(player);
                self.u32(radius);
            }
            Event::TreasureInfo { treasure, .. } => self.u16(treasure),
            _ => unreachable!("checked above"),
        }
    }

    fn plan(&mut self, plan: &Plan) {
        let (kind, hunt) = match *plan {
            Plan::Create { hunt, .. } => (0, hunt),
            Plan::End { hunt } => (1, hunt),
            Plan::Delete { hunt } => (2, hunt),
            Plan::Place { hunt, .. } => (3, hunt),
            Plan::Remove { hunt, .. } => (4, hunt),
            Plan::Join { hunt, .. } => (5, hunt),
            Plan::Leave { hunt, .. } => (6, hunt),
            Plan::Move { hunt, .. } => (7, hunt),
            Plan::Dig { hunt, .. } => (8, hunt),
            Plan::Adjust { hunt, .. } => (9, hunt),
            Plan::Query(_) => (10, 0),
        };
        self.u8(kind);
        self.u8(hunt as i64);
        match *plan {
            Plan::Create { plan, .. } => self.hunt_plan(&plan),
            Plan::End { .. } | Plan::Delete { .. } => {}
            Plan::Place { treasure, .. } => self.treasure(&treasure),
            Plan::Remove { treasure, .. } => self.u16(treasure),
            Plan::Join { player, seq, spot, .. } | Plan::Move { player, seq, spot, .. } => {
                self.u16(player);
                self.seq(seq);
                self.spot(spot);
            }
            Plan::Leave { player, seq, .. } => {
                self.u16(player);
                self.seq(seq);
            }
            Plan::Dig { player, seq, treasure, spot, .. } => {
                self.u16(player);
                self.seq(seq);
                self.u16(treasure);
                self.spot(spot);
            }
            Plan::Adjust { player, seq, delta, .. } => {
                self.u16(player);
                self.seq(seq);
                self.i32(delta);
            }
            Plan::Query(query) => self.query(&query),
        }
    }
}

/// The bytes of `steps` in the format [`decode_steps`] reads. Panics if a value does not
/// fit its field (an id above `u16::MAX`, an offset outside `i16`): the strategies never
/// draw one.
pub fn encode_steps(steps: &[Step]) -> Vec<u8> {
    let mut writer = Writer { bytes: Vec::new() };
    for step in steps {
        writer.u32(u32::try_from(step.time_delta).expect("a time delta that fits u32"));
        writer.plan(&step.plan);
    }
    writer.bytes
}

/// How often [`check_case_bytes`] compares the whole state, in steps.
pub const STATE_CHECK_EVERY: usize = 8;

/// The state-machine property over arbitrary bytes, shared by `tests/fuzz_props.rs` and
/// the `events` fuzz target: the case the bytes encode runs on the engine and the model
/// in step, and the digests replay. `Err` says what disagreed, after which events.
pub fn check_case_bytes(bytes: &[u8]) -> Result<(), String> {
    let steps = decode_steps(bytes);
    let (log, digest) = run_checking_state_every(&steps, STATE_CHECK_EVERY)?;
    check_digests(&log, digest)
}
