//! Model-based property test of the shard state machine: random event sequences are
//! applied to the engine (`cairn::shard::Shard`) and to a small reference model
//! (`tests/model/reference.rs`) side by side, and every outcome, every notice, every
//! leaderboard and every treasure's claim count must agree after every step.
//!
//! The generator speaks in plans rather than raw events: "the player's next sequence
//! number", "a few units from where the player stands", "near treasure 3". Plans are
//! resolved against the model's state just before each event is applied, so most events
//! are plausible (digs land near treasures, moves respect the speed limit more often than
//! not) while a steady trickle is wrong on purpose (out of bounds, unknown ids, duplicate
//! sequence numbers, zero capacity, counts too large). Resolving against the model rather
//! than the engine keeps the event stream independent of the engine under test; when the
//! two disagree the test fails at that step anyway.
//!
//! Set `PROPTEST_CASES` to change the number of cases (256 by default).

#[path = "model/reference.rs"]
mod reference;

use cairn::constants::{AROUND_RADIUS_MAX, COORDINATE_ABS_MAX, RADIUS_MAX, TOP_COUNT_MAX};
use cairn::event::{
    Coordinates, Event, HuntId, HuntOptions, HuntSpec, Micros, PlayerId, PointsRule, Position, Sequence, TreasureId,
    TreasureSpec,
};
use cairn::outcome::{Claim, Lifecycle, NoticeKind, Outcome, Rejection, TreasureState};
use cairn::rng::Rng;
use cairn::shard::Shard;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use reference::{Answer, Model};

const SECOND: Micros = 1_000_000;

/// Event time of the first event: far enough from zero that hunts may start in the past.
const TIME_FIRST: Micros = 1_000 * SECOND;

/// Hunt ids the generator uses; the last one is created rarely, so it is mostly unknown.
const HUNT_IDS: [HuntId; 4] = [1, 2, 3, 4];

/// Treasure ids the generator uses within a hunt; the last one is drawn rarely, so it is
/// mostly unknown.
const TREASURE_IDS: [TreasureId; 7] = [1, 2, 3, 4, 5, 6, 7];

/// Player ids the generator uses within a hunt; the last one is drawn rarely, so it has
/// mostly never joined.
const PLAYER_IDS: [PlayerId; 7] = [1, 2, 3, 4, 5, 6, 7];

/// A hunt id the random events never use, for the digest-sensitivity check.
const HUNT_SPARE: HuntId = 90;

// ---------------------------------------------------------------------------------------
// Plans: events with their sequence numbers and positions still to be resolved.

/// Which sequence number an event of a player carries.
#[derive(Clone, Copy, Debug)]
enum SeqPlan {
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
#[derive(Clone, Copy, Debug)]
struct Offset {
    x: i32,
    y: i32,
    fine_x: i32,
    fine_y: i32,
}

/// Where an event of a player happens, in plan units.
#[derive(Clone, Copy, Debug)]
enum SpotPlan {
    /// An absolute position (sometimes outside the bounds).
    At(Position),
    /// A step from where the player stands.
    Step(Offset),
    /// An offset from a treasure's position; treasure 0 stands for the treasure dug for.
    Near(TreasureId, Offset),
}

/// A hunt spec whose times are relative to the event that creates it.
#[derive(Clone, Copy, Debug)]
struct HuntPlan {
    min: Position,
    max: Position,
    /// Start relative to the creating event's time, in microseconds.
    start_offset: i64,
    /// Running time; `None` runs forever; `Some(0)` is invalid (start not before end).
    length: Option<Micros>,
    options: HuntOptions,
}

impl HuntPlan {
    /// Returns true if and only if the hunt this plan creates is valid.
    fn valid(&self) -> bool {
        let in_range = |value: i32| (value as i64).abs() <= COORDINATE_ABS_MAX;
        let corners = [self.min.x, self.min.y, self.max.x, self.max.y];
        self.min.x <= self.max.x
            && self.min.y <= self.max.y
            && corners.into_iter().all(in_range)
            && self.length != Some(0)
    }
}

#[derive(Clone, Copy, Debug)]
enum Plan {
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
#[derive(Clone, Copy, Debug)]
struct Step {
    time_delta: Micros,
    plan: Plan,
}

// ---------------------------------------------------------------------------------------
// Strategies.

fn hunt_id() -> impl Strategy<Value = HuntId> {
    prop_oneof![30 => 1..=3u32, 1 => Just(HUNT_IDS[3])]
}

fn player_id() -> impl Strategy<Value = PlayerId> {
    prop_oneof![20 => 1..=6u32, 1 => Just(PLAYER_IDS[6])]
}

fn treasure_id() -> impl Strategy<Value = TreasureId> {
    prop_oneof![20 => 1..=6u32, 1 => Just(TREASURE_IDS[6])]
}

/// Mostly zero or sub-second, so many events share a time and the speed limit bites;
/// sometimes seconds, sometimes a minute, so hunts start and end along the way.
fn time_delta() -> impl Strategy<Value = Micros> {
    prop_oneof![
        30 => Just(0),
        50 => 1..=SECOND / 2,
        18 => SECOND / 2..=5 * SECOND,
        2 => 5 * SECOND..=60 * SECOND,
    ]
}

fn seq_plan() -> impl Strategy<Value = SeqPlan> {
    prop_oneof![
        40 => Just(SeqPlan::Next),
        2 => (1..=3u32).prop_map(SeqPlan::Skip),
        3 => (0..=2u32).prop_map(SeqPlan::Repeat),
    ]
}

fn offset(reach: i32) -> impl Strategy<Value = Offset> {
    (-reach..=reach, -reach..=reach, 0..1_000i32, 0..1_000i32).prop_map(|(x, y, fine_x, fine_y)| Offset {
        x,
        y,
        fine_x,
        fine_y,
    })
}

fn spot_plan() -> impl Strategy<Value = SpotPlan> {
    prop_oneof![
        6 => (0..=200i32, 0..=200i32).prop_map(|(x, y)| SpotPlan::At(Position::new(x, y))),
        1 => prop_oneof![
            (-40..=240i32, -40..=240i32).prop_map(|(x, y)| SpotPlan::At(Position::new(x, y))),
            Just(SpotPlan::At(Position::new(i32::MIN, i32::MAX))),
        ],
        8 => offset(25).prop_map(SpotPlan::Step),
        4 => (1..=6u32, offset(12)).prop_map(|(treasure, offset)| SpotPlan::Near(treasure, offset)),
        4 => (1..=6u32, offset(3)).prop_map(|(treasure, offset)| SpotPlan::Near(treasure, offset)),
    ]
}

/// Like [`spot_plan`], but mostly near the treasure dug for.
fn dig_spot_plan() -> impl Strategy<Value = SpotPlan> {
    prop_oneof![
        2 => offset(12).prop_map(|offset| SpotPlan::Near(0, offset)),
        2 => offset(3).prop_map(|offset| SpotPlan::Near(0, offset)),
        1 => spot_plan(),
    ]
}

fn hunt_options() -> impl Strategy<Value = HuntOptions> {
    let speed = prop_oneof![1 => Just(0u32), 1 => 3..=60u32];
    let points = prop_oneof![Just(PointsRule::Full), Just(PointsRule::Decay)];
    let claims = prop_oneof![3 => Just(0u32), 2 => 1..=4u32];
    (prop::bool::weighted(0.7), speed, points, claims).prop_map(|(auto_discover, speed_max, points, claims)| {
        HuntOptions { auto_discover, speed_max, points, claims_per_player_max: claims }
    })
}

fn hunt_plan() -> impl Strategy<Value = HuntPlan> {
    let bounds = prop_oneof![
        12 => Just((Position::new(0, 0), Position::new(200, 200))),
        3 => Just((Position::new(-100, -50), Position::new(100, 150))),
        2 => Just((Position::new(50, 50), Position::new(150, 150))),
        1 => Just((Position::new(10, 0), Position::new(0, 200))),
        1 => Just((Position::new(-(COORDINATE_ABS_MAX as i32) - 1, 0), Position::new(200, 200))),
    ];
    let start_offset = prop_oneof![
        2 => -20 * SECOND as i64..=0,
        3 => 0..=10 * SECOND as i64,
    ];
    let length = prop_oneof![
        2 => (SECOND..=60 * SECOND).prop_map(Some),
        4 => (60 * SECOND..=600 * SECOND).prop_map(Some),
        3 => Just(None),
        1 => Just(Some(0)),
    ];
    (bounds, start_offset, length, hunt_options()).prop_map(|((min, max), start_offset, length, options)| HuntPlan {
        min,
        max,
        start_offset,
        length,
        options,
    })
}

fn treasure_spec() -> impl Strategy<Value = TreasureSpec> {
    let position = prop_oneof![
        5 => (85..=115i32, 85..=115i32).prop_map(|(x, y)| Position::new(x, y)),
        5 => (0..=200i32, 0..=200i32).prop_map(|(x, y)| Position::new(x, y)),
        1 => prop_oneof![Just(Position::new(-1, 100)), Just(Position::new(100, 201)), Just(Position::new(300, 300))],
    ];
    let radius = prop_oneof![
        // Radii of a few units fit in the grid's cells; larger ones go on its wide list.
        30 => 0..=3u32,
        40 => 4..=40u32,
        20 => 40..=150u32,
        3 => Just(RADIUS_MAX),
        2 => Just(RADIUS_MAX + 1),
    ];
    let value = prop_oneof![
        40 => 0..=1_000u32,
        1 => Just(1_000_000u32),
        1 => Just(1_000_001u32),
    ];
    let capacity = prop_oneof![
        60 => 1..=3u32,
        2 => Just(0u32),
        1 => Just(100_000u32),
        1 => Just(100_001u32),
    ];
    let hint_radius = prop_oneof![4 => Just(0u32), 6 => 1..=200u32, 1 => Just(RADIUS_MAX + 1)];
    (treasure_id(), position, radius, value, capacity, hint_radius).prop_map(
        |(id, position, radius, value, capacity, hint_radius)| TreasureSpec {
            id,
            position,
            radius,
            value,
            capacity,
            hint_radius,
        },
    )
}

fn query() -> impl Strategy<Value = Event> {
    let count = prop_oneof![4 => Just(TOP_COUNT_MAX), 4 => 0..=5u32, 1 => Just(TOP_COUNT_MAX + 1)];
    let radius = prop_oneof![8 => 0..=3u32, 1 => Just(AROUND_RADIUS_MAX), 1 => Just(AROUND_RADIUS_MAX + 1)];
    prop_oneof![
        3 => (hunt_id(), count).prop_map(|(hunt, count)| Event::Top { hunt, count }),
        2 => (hunt_id(), player_id()).prop_map(|(hunt, player)| Event::Rank { hunt, player }),
        3 => (hunt_id(), player_id(), radius).prop_map(|(hunt, player, radius)| Event::Around { hunt, player, radius }),
        4 => (hunt_id(), player_id()).prop_map(|(hunt, player)| Event::Hint { hunt, player }),
        2 => (hunt_id(), treasure_id()).prop_map(|(hunt, treasure)| Event::TreasureInfo { hunt, treasure }),
    ]
}

fn delta() -> impl Strategy<Value = i32> {
    prop_oneof![10 => -300..=500i32, 2 => Just(0), 1 => Just(i32::MIN), 1 => Just(i32::MAX)]
}

fn plan() -> impl Strategy<Value = Plan> {
    prop_oneof![
        6 => (hunt_id(), hunt_plan()).prop_map(|(hunt, plan)| Plan::Create { hunt, plan }),
        // Ending and deleting are rare: they turn the rest of a hunt's events into refusals.
        1 => hunt_id().prop_map(|hunt| Plan::End { hunt }),
        1 => (hunt_id(), prop::bool::weighted(0.5)).prop_map(|(hunt, really)| {
            if really { Plan::Delete { hunt } } else { Plan::Query(Event::Top { hunt, count: TOP_COUNT_MAX }) }
        }),
        20 => (hunt_id(), treasure_spec()).prop_map(|(hunt, treasure)| Plan::Place { hunt, treasure }),
        4 => (hunt_id(), treasure_id()).prop_map(|(hunt, treasure)| Plan::Remove { hunt, treasure }),
        16 => (hunt_id(), player_id(), seq_plan(), spot_plan())
            .prop_map(|(hunt, player, seq, spot)| Plan::Join { hunt, player, seq, spot }),
        6 => (hunt_id(), player_id(), seq_plan()).prop_map(|(hunt, player, seq)| Plan::Leave { hunt, player, seq }),
        60 => (hunt_id(), player_id(), seq_plan(), spot_plan())
            .prop_map(|(hunt, player, seq, spot)| Plan::Move { hunt, player, seq, spot }),
        44 => (hunt_id(), player_id(), seq_plan(), treasure_id(), dig_spot_plan())
            .prop_map(|(hunt, player, seq, treasure, spot)| {
                // Mostly dig where the dug treasure lies, give or take the offset.
                let spot = match spot {
                    SpotPlan::Near(0, offset) => SpotPlan::Near(treasure, offset),
                    other => other,
                };
                Plan::Dig { hunt, player, seq, treasure, spot }
            }),
        12 => (hunt_id(), player_id(), seq_plan(), delta())
            .prop_map(|(hunt, player, seq, delta)| Plan::Adjust { hunt, player, seq, delta }),
        24 => query().prop_map(Plan::Query),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (time_delta(), plan()).prop_map(|(time_delta, plan)| Step { time_delta, plan })
}

/// A case: three valid hunts created, some treasures placed and most players joined up
/// front (so most events find a hunt, a treasure and a player), then up to 300 random
/// steps.
fn case() -> impl Strategy<Value = Vec<Step>> {
    let hunts = prop::collection::vec(hunt_plan().prop_filter("valid", HuntPlan::valid), 3);
    let places = prop::collection::vec((1..=3u32, treasure_spec()), 3..=12);
    let nearby = offset(40).prop_map(SpotPlan::Step);
    let joins = prop::collection::vec(prop::option::weighted(0.8, nearby), 3 * 6);
    (hunts, places, joins, prop::collection::vec(step(), 1..=300)).prop_map(|(hunts, places, joins, steps)| {
        let created = hunts.into_iter().zip(HUNT_IDS).map(|(plan, hunt)| Plan::Create {
            hunt,
            plan: HuntPlan { start_offset: plan.start_offset.max(0), ..plan },
        });
        let placed = places.into_iter().map(|(hunt, treasure)| Plan::Place { hunt, treasure });
        let joined = joins.into_iter().enumerate().filter_map(|(index, spot)| {
            let (hunt, player) = (HUNT_IDS[index / 6], PLAYER_IDS[index % 6]);
            spot.map(|spot| Plan::Join { hunt, player, seq: SeqPlan::Next, spot })
        });
        let prelude = created.chain(placed).chain(joined).map(|plan| Step { time_delta: 0, plan });
        prelude.chain(steps).collect()
    })
}

// ---------------------------------------------------------------------------------------
// Resolving plans into events.

fn resolve_seq(model: &Model, hunt: HuntId, player: PlayerId, plan: SeqPlan) -> Sequence {
    let last = model.hunt(hunt).and_then(|hunt| hunt.players.iter().find(|each| each.id == player));
    let last = last.map_or(0, |player| player.last_seq);
    match plan {
        SeqPlan::Next => last + 1,
        SeqPlan::Skip(gap) => last + 1 + gap,
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

fn resolve(model: &Model, time: Micros, plan: &Plan) -> Event {
    match *plan {
        Plan::Create { hunt, plan } => {
            let start = (time as i64 + plan.start_offset).max(0) as Micros;
            let end = plan.length.map_or(Micros::MAX, |length| start + length);
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
    let expected = model.answer(query).unwrap_or_else(Answer::Rejected);
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
/// shard they were applied to.
fn run(steps: &[Step]) -> Result<(Vec<(Micros, Event)>, u64), TestCaseError> {
    let mut shard = Shard::new();
    let mut model = Model::new();
    let mut time = TIME_FIRST;
    let mut log = Vec::with_capacity(steps.len());
    for step in steps {
        time += step.time_delta;
        let event = resolve(&model, time, &step.plan);
        log.push((time, event));
        let checked =
            compare_event(&mut shard, &mut model, &event, time).and_then(|()| check_state(&mut shard, &model, time));
        if let Err(why) = checked {
            return Err(TestCaseError::fail(format!("{why}\nafter:{}", script(&log))));
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
fn check_digests(log: &[(Micros, Event)], digest: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(replay(log).digest(), digest, "replaying the same events changed the digest");
    let time = log.last().map_or(TIME_FIRST, |&(time, _)| time);
    let spec = HuntSpec {
        coordinates: Coordinates::Planar,
        min: Position::new(0, 0),
        max: Position::new(10, 10),
        start: 0,
        end: Micros::MAX,
        options: HuntOptions::default(),
    };
    let continued = |delta: i32| {
        let mut log = log.to_vec();
        log.push((time, Event::CreateHunt { hunt: HUNT_SPARE, spec }));
        log.push((time, Event::Join { hunt: HUNT_SPARE, player: 1, seq: 1, position: Position::new(5, 5) }));
        log.push((time, Event::AdjustScore { hunt: HUNT_SPARE, player: 1, seq: 2, delta }));
        replay(&log).digest()
    };
    prop_assert_ne!(continued(5), continued(6), "two different scores gave the same digest");
    Ok(())
}

/// Cases of the main property: `PROPTEST_CASES`, or 256. The dense and crowded variants
/// run a fraction of it, as their cases are longer.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(256)
}

/// Runs `cases` cases of `strategy` through [`run`] and the digest checks.
fn check_cases(strategy: impl Strategy<Value = Vec<Step>>, cases: u32) {
    let mut runner = TestRunner::new(Config { cases, ..Config::default() });
    let result = runner.run(&strategy, |steps| {
        let (log, digest) = run(&steps)?;
        check_digests(&log, digest)
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[test]
fn engine_agrees_with_the_reference_model() {
    check_cases(case(), cases());
}

/// Parts per million of an extent: the dense cases place everything as a fraction of
/// their hunt's size, so one strategy serves every scale.
const PPM: i64 = 1_000_000;

/// A dense case for the grid: one auto-discovering hunt without a speed limit, at a
/// random scale and corner, with up to 40 treasures gathered in a few clusters (so the
/// nearest-centre search finds neighbours within a few cells and stops early, instead of
/// falling back to a scan), and two players who move near the clusters or anywhere, dig,
/// and ask for hints, while treasures are removed. Every move's claims test the grid's
/// candidate superset; every hint tests its search against the model's linear scan. The
/// hunt is hunt 4, whose plans are not scaled: coordinates here are already world units.
fn dense_case() -> impl Strategy<Value = Vec<Step>> {
    let scale = prop_oneof![Just(1i64), Just(7), Just(1_000), Just(33_333)];
    let corner = (-100..=100i64, -100..=100i64);
    let extent = (20..=200i64, 20..=200i64);
    let clusters = prop::collection::vec((0..=PPM, 0..=PPM), 1..=3);
    let near = -40_000..=40_000i64;
    let radius = prop_oneof![4 => 0..=20_000i64, 1 => 100_000..=300_000i64];
    let hint_radius = prop_oneof![1 => Just(0i64), 1 => 10_000..=400_000i64];
    let treasure = (1..=40u32, 0..3usize, near.clone(), near.clone(), radius, 1..=2u32, hint_radius);
    let spot = prop_oneof![
        1 => (0..3usize, near.clone(), near).prop_map(|(cluster, dx, dy)| (Some(cluster), dx, dy)),
        1 => (0..=PPM, 0..=PPM).prop_map(|(x, y)| (None, x, y)),
    ];
    let action = prop_oneof![
        8 => (Just(0u8), 1..=2u32, spot),
        4 => (Just(1u8), 1..=2u32, Just((None, 0, 0))),
        2 => (Just(2u8), 1..=2u32, (Just(None), 1..=40i64, Just(0))),
        1 => (Just(3u8), 1..=40u32, Just((None, 0, 0))),
    ];
    let shape = (scale, corner, extent, clusters);
    (shape, prop::collection::vec(treasure, 1..=40), prop::collection::vec(action, 1..=120)).prop_map(
        |((scale, (x, y), (width, height), clusters), treasures, actions)| {
            const HUNT: HuntId = HUNT_IDS[3];
            let (min_x, min_y, width, height) = (x * scale, y * scale, width * scale, height * scale);
            // A point at (x, y) parts per million of the extent, clamped into the bounds.
            let at = |x: i64, y: i64| {
                let (x, y) = (x.clamp(0, PPM), y.clamp(0, PPM));
                Position::new((min_x + width * x / PPM) as i32, (min_y + height * y / PPM) as i32)
            };
            let around = |cluster: usize, dx: i64, dy: i64| {
                let (x, y) = clusters[cluster % clusters.len()];
                at(x + dx, y + dy)
            };
            let length = |ppm: i64| (width.max(height) * ppm / PPM) as u32;
            let options =
                HuntOptions { auto_discover: true, speed_max: 0, points: PointsRule::Full, claims_per_player_max: 0 };
            let (min, max) = (at(0, 0), at(PPM, PPM));
            let plan = HuntPlan { min, max, start_offset: 0, length: None, options };
            let mut plans = vec![Plan::Create { hunt: HUNT, plan }];
            for (id, cluster, dx, dy, radius, capacity, hint_radius) in treasures {
                let position = around(cluster, dx, dy);
                let (radius, hint_radius) = (length(radius), length(hint_radius));
                let treasure = TreasureSpec { id, position, radius, value: 10, capacity, hint_radius };
                plans.push(Plan::Place { hunt: HUNT, treasure });
            }
            for player in 1..=2 {
                let spot = SpotPlan::At(around(0, 0, 0));
                plans.push(Plan::Join { hunt: HUNT, player, seq: SeqPlan::Next, spot });
            }
            for (kind, id, (cluster, x, y)) in actions {
                let seq = SeqPlan::Next;
                plans.push(match kind {
                    0 => {
                        let position = cluster.map_or_else(|| at(x, y), |cluster| around(cluster, x, y));
                        Plan::Move { hunt: HUNT, player: id, seq, spot: SpotPlan::At(position) }
                    }
                    1 => Plan::Query(Event::Hint { hunt: HUNT, player: id }),
                    2 => {
                        let treasure = x as TreasureId;
                        let spot = SpotPlan::Near(treasure, Offset { x: 0, y: 0, fine_x: 0, fine_y: 0 });
                        Plan::Dig { hunt: HUNT, player: id, seq, treasure, spot }
                    }
                    _ => Plan::Remove { hunt: HUNT, treasure: id },
                });
            }
            plans.into_iter().map(|plan| Step { time_delta: SECOND / 10, plan }).collect()
        },
    )
}

/// A crowded case for the leaderboard: one hunt, hundreds of players joining, leaving,
/// rejoining and having their scores adjusted by small amounts at often equal event times
/// (so scores and times tie and the player id decides), and lists, ranks and neighbours
/// asked for throughout. With 64 keys to a leaf, a few hundred players split and refill
/// the counted tree's nodes as scores move.
fn crowd_case() -> impl Strategy<Value = Vec<Step>> {
    let players = 1..=400u32;
    let delta = prop_oneof![4 => -20..=20i32, 1 => Just(0)];
    let query = prop_oneof![
        (0..=TOP_COUNT_MAX).prop_map(|count| Event::Top { hunt: 1, count }),
        (players.clone(), 0..=AROUND_RADIUS_MAX).prop_map(|(player, radius)| Event::Around { hunt: 1, player, radius }),
        players.clone().prop_map(|player| Event::Rank { hunt: 1, player }),
    ];
    let plan = prop_oneof![
        6 => players.clone().prop_map(|player| Plan::Join {
            hunt: 1,
            player,
            seq: SeqPlan::Next,
            spot: SpotPlan::At(Position::new(100, 100)),
        }),
        9 => (players.clone(), delta).prop_map(|(player, delta)| Plan::Adjust { hunt: 1, player, seq: SeqPlan::Next, delta }),
        1 => players.prop_map(|player| Plan::Leave { hunt: 1, player, seq: SeqPlan::Next }),
        4 => query.prop_map(Plan::Query),
    ];
    let step = (prop_oneof![Just(0), 1..=3u64], plan).prop_map(|(time_delta, plan)| Step { time_delta, plan });
    (0..=400u32, prop::collection::vec(step, 1..=600)).prop_map(|(joined, steps)| {
        let options = HuntOptions::default();
        let origin = Position::new(0, 0);
        let far = Position::new(200, 200);
        let plan = HuntPlan { min: origin, max: far, start_offset: -(SECOND as i64), length: None, options };
        let joins = (1..=joined).map(|player| Plan::Join {
            hunt: 1,
            player,
            seq: SeqPlan::Next,
            spot: SpotPlan::At(Position::new(100, 100)),
        });
        let prelude = std::iter::once(Plan::Create { hunt: 1, plan }).chain(joins);
        prelude.map(|plan| Step { time_delta: 1, plan }).chain(steps).collect()
    })
}

#[test]
fn the_leaderboard_agrees_with_sorting() {
    check_cases(crowd_case(), cases().div_ceil(8));
}

#[test]
fn the_grid_agrees_with_linear_scans() {
    check_cases(dense_case(), cases().div_ceil(4));
}

/// The generator is only worth something if it reaches the interesting outcomes: this
/// runs the model alone (no engine) over fixed-seed cases and asserts that every outcome
/// and rejection the generator aims for shows up, so a change to the strategies cannot
/// quietly make the property test trivial.
#[test]
fn the_generator_reaches_every_outcome() {
    let mut runner = TestRunner::deterministic();
    let mut seen: std::collections::BTreeMap<String, u32> = Default::default();
    let mut exhausted = 0;
    for _ in 0..64 {
        let steps = case().new_tree(&mut runner).expect("a case").current();
        let mut model = Model::new();
        let mut time = TIME_FIRST;
        for step in &steps {
            time += step.time_delta;
            let event = resolve(&model, time, &step.plan);
            let outcome = model.apply(&event, time, None).expect("the model agrees with itself");
            *seen.entry(outcome.answer.label()).or_default() += 1;
            let exhaustions = outcome
                .notices
                .iter()
                .filter(|notice| matches!(notice.kind, NoticeKind::Lifecycle(Lifecycle::Exhausted { .. })));
            exhausted += exhaustions.count();
        }
    }
    let wanted = [
        "huntcreated",
        "huntended",
        "huntdeleted",
        "treasureplaced",
        "treasureremoved",
        "joined",
        "left",
        "moved:0",
        "moved:1",
        "moved:2",
        "dug",
        "adjusted",
        "list",
        "standing",
        "hint:some",
        "hint:none",
        "treasure",
        "rejected:hunt_exists",
        "rejected:hunt_not_found",
        "rejected:hunt_not_started",
        "rejected:hunt_ended",
        "rejected:invalid_hunt",
        "rejected:treasure_exists",
        "rejected:treasure_not_found",
        "rejected:invalid_treasure",
        "rejected:treasure_exhausted",
        "rejected:already_claimed",
        "rejected:player_claim_limit",
        "rejected:out_of_reach",
        "rejected:not_joined",
        "rejected:already_joined",
        "rejected:out_of_bounds",
        "rejected:too_fast",
        "rejected:duplicate",
        "rejected:count_too_large",
    ];
    let missing: Vec<&str> = wanted.iter().copied().filter(|label| !seen.contains_key(*label)).collect();
    assert!(missing.is_empty(), "never reached: {missing:?}; reached: {seen:?}");
    assert!(exhausted > 0, "no treasure was ever exhausted: {seen:?}");
    let digs = seen["dug"];
    assert!(digs >= 64, "only {digs} successful digs in 64 cases: {seen:?}");
}

// ---------------------------------------------------------------------------------------
// Concurrent digs: the shard's order decides, and capacity is never exceeded.

/// 100 players stand on one treasure and dig it at the same event time, in a shuffled
/// order; exactly `capacity` of them win, with indices 1, 2, 3, ... in the order applied,
/// and every other dig is refused as exhausted.
fn check_concurrent_digs(capacity: u32, seed: u64) {
    const PLAYERS: u32 = 100;
    const HUNT: HuntId = 1;
    const TREASURE: TreasureId = 1;
    let time = 10 * SECOND;
    let spec = HuntSpec {
        coordinates: Coordinates::Planar,
        min: Position::new(0, 0),
        max: Position::new(100, 100),
        start: 0,
        end: Micros::MAX,
        options: HuntOptions::default(),
    };
    let spot = Position::new(50, 50);
    let treasure = TreasureSpec { id: TREASURE, position: spot, radius: 0, value: 10, capacity, hint_radius: 0 };
    let mut shard = Shard::new();
    assert_eq!(shard.apply(&Event::CreateHunt { hunt: HUNT, spec }, time), Outcome::HuntCreated);
    assert_eq!(shard.apply(&Event::PlaceTreasure { hunt: HUNT, treasure }, time), Outcome::TreasurePlaced);
    for player in 1..=PLAYERS {
        let joined = shard.apply(&Event::Join { hunt: HUNT, player, seq: 1, position: spot }, time);
        assert!(matches!(joined, Outcome::Joined { score: 0, .. }), "{joined:?}");
    }
    let mut order: Vec<PlayerId> = (1..=PLAYERS).collect();
    let mut rng = Rng::new(seed);
    for index in (1..order.len()).rev() {
        order.swap(index, rng.below(index as u64 + 1) as usize);
    }
    let mut winners = Vec::new();
    let mut exhaustions = 0;
    for &player in &order {
        let dig = Event::Dig { hunt: HUNT, player, seq: 2, treasure: TREASURE, position: spot };
        match shard.apply(&dig, time) {
            Outcome::Dug { claim: Claim { index, capacity: of, points, score, .. } } => {
                assert_eq!((of, points, score), (capacity, 10, 10), "player {player}");
                winners.push((player, index));
            }
            Outcome::Rejected(Rejection::TreasureExhausted) => {}
            other => panic!("player {player}: unexpected {other:?}"),
        }
        let notices = shard.notices();
        exhaustions += notices
            .iter()
            .filter(|notice| notice.kind == NoticeKind::Lifecycle(Lifecycle::Exhausted { treasure: TREASURE }))
            .count();
    }
    let indices: Vec<u32> = winners.iter().map(|&(_, index)| index).collect();
    assert_eq!(indices, (1..=capacity).collect::<Vec<u32>>(), "winners {winners:?}");
    let expected_winners: Vec<PlayerId> = order.iter().copied().take(capacity as usize).collect();
    assert_eq!(winners.iter().map(|&(player, _)| player).collect::<Vec<_>>(), expected_winners);
    assert_eq!(exhaustions, 1);
    let info = shard.apply(&Event::TreasureInfo { hunt: HUNT, treasure: TREASURE }, time);
    assert_eq!(info, Outcome::Treasure(TreasureState { claimed: capacity, capacity, value: 10 }));
    for &player in &order {
        let Outcome::Standing(standing) = shard.apply(&Event::Rank { hunt: HUNT, player }, time) else {
            panic!("player {player} has no standing");
        };
        let won = expected_winners.contains(&player);
        assert_eq!(
            (standing.score, standing.claims, standing.last_seq),
            (if won { 10 } else { 0 }, won as u32, if won { 2 } else { 1 })
        );
    }
}

#[test]
fn concurrent_digs_award_a_unique_treasure_once() {
    for seed in 1..=5 {
        check_concurrent_digs(1, seed);
    }
}

#[test]
fn concurrent_digs_award_a_treasure_of_capacity_three_three_times() {
    for seed in 1..=5 {
        check_concurrent_digs(3, seed);
    }
}
