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
//! The plans, running a case against both sides and the digest checks live in
//! `tests/model/harness.rs`, shared with the byte-driven properties and the fuzz target;
//! this file holds the proptest strategies that draw plans, and the tests.
//!
//! Set `PROPTEST_CASES` to change the number of cases (256 by default).

#[path = "model/reference.rs"]
mod reference;

// The byte codec of the harness is used here only by the round-trip test; the fuzz
// target and `tests/fuzz_props.rs` use the rest of it.
#[allow(dead_code)]
#[path = "model/harness.rs"]
mod harness;

use cairn::constants::{AROUND_RADIUS_MAX, COORDINATE_ABS_MAX, RADIUS_MAX, TOP_COUNT_MAX};
use cairn::event::{
    Coordinates, Event, HuntId, HuntOptions, HuntSpec, Micros, PlayerId, PointsRule, Position, TreasureId, TreasureSpec,
};
use cairn::outcome::{Claim, Lifecycle, NoticeKind, Outcome, Rejection, TreasureState};
use cairn::rng::Rng;
use cairn::shard::Shard;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use harness::{
    check_digests, decode_steps, encode_steps, resolve, run, HuntPlan, Offset, Plan, SeqPlan, SpotPlan, Step, HUNT_IDS,
    PLAYER_IDS, SECOND, TIME_FIRST, TREASURE_IDS,
};
use reference::Model;

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

/// Cases of the main property: `PROPTEST_CASES`, or 256. The dense and crowded variants
/// run a fraction of it, as their cases are longer.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(256)
}

/// Runs `cases` cases of `strategy` through [`run`] and the digest checks.
fn check_cases(strategy: impl Strategy<Value = Vec<Step>>, cases: u32) {
    let mut runner = TestRunner::new(Config { cases, ..Config::default() });
    let result = runner.run(&strategy, |steps| {
        let (log, digest) = run(&steps).map_err(TestCaseError::fail)?;
        check_digests(&log, digest).map_err(TestCaseError::fail)
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

// ---------------------------------------------------------------------------------------
// The byte format of cases, which the fuzzer and `tests/fuzz_props.rs` speak.

/// Every case the three strategies draw encodes to bytes that decode back to it, so the
/// fuzzer's seeds (written from these cases) start where this test's cases are. With
/// `CAIRN_FUZZ_SEEDS=DIR` set, the first cases of each strategy are also written to
/// `DIR/events/` as the `events` target's seed corpus (see `fuzz/README.md`).
#[test]
fn drawn_cases_round_trip_through_the_byte_format() {
    let seeds = std::env::var_os("CAIRN_FUZZ_SEEDS").map(|dir| std::path::PathBuf::from(dir).join("events"));
    let strategies: [(&str, BoxedStrategy<Vec<Step>>, usize); 3] =
        [("case", case().boxed(), 8), ("dense", dense_case().boxed(), 3), ("crowd", crowd_case().boxed(), 2)];
    let mut runner = TestRunner::deterministic();
    for (name, strategy, seed_count) in strategies {
        for index in 0..32 {
            let steps = strategy.new_tree(&mut runner).expect("a case").current();
            let bytes = encode_steps(&steps);
            let decoded = decode_steps(&bytes);
            let seed_dir = seeds.as_deref().filter(|_| index < seed_count);
            harness::bytes::check_round_trip(name, index, &steps, &decoded, &bytes, seed_dir);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rule scripts at the edges, engine and model side by side.

/// The hunt of the rule scripts: planar (0, 0)..(1000, 1000), running from 10 s to 100 s.
const RULES_HUNT: HuntId = 7;

fn rules_spec(options: HuntOptions) -> HuntSpec {
    HuntSpec {
        coordinates: Coordinates::Planar,
        min: Position::new(0, 0),
        max: Position::new(1_000, 1_000),
        start: 10 * SECOND,
        end: 100 * SECOND,
        options,
    }
}

/// Applies `script` (event time, event, expected answer) to a fresh engine and a fresh
/// model: at every step both must give the expected answer and the same notices.
fn check_rules(script: &[(Micros, Event, reference::Answer)]) -> (Shard, Model) {
    let (mut shard, mut model) = (Shard::new(), Model::new());
    for (index, (time, event, expected)) in script.iter().enumerate() {
        let engine = reference::Answer::of(&shard.apply(event, *time));
        let step = model.apply(event, *time, None).expect("the model agrees with itself");
        assert_eq!(engine, *expected, "engine, step {index}: {event:?} at {time}");
        assert_eq!(step.answer, *expected, "model, step {index}: {event:?} at {time}");
        assert_eq!(shard.notices(), step.notices, "notices, step {index}: {event:?} at {time}");
    }
    (shard, model)
}

fn rules_join(player: PlayerId, seq: u32, x: i32) -> Event {
    Event::Join { hunt: RULES_HUNT, player, seq, position: Position::new(x, 0) }
}

fn rules_move(player: PlayerId, seq: u32, x: i32) -> Event {
    Event::Move { hunt: RULES_HUNT, player, seq, position: Position::new(x, 0) }
}

fn rules_rank(player: PlayerId) -> Event {
    Event::Rank { hunt: RULES_HUNT, player }
}

/// The speed rule at its edges, in the engine and the model alike: the first move after
/// a join may use the whole burst at once, a move at zero elapsed time only what is
/// banked, a move exactly at the limit passes and one unit more is refused, and a long
/// wait earns the whole time but banks at most the burst.
#[test]
fn the_speed_limit_at_its_edges_in_engine_and_model() {
    use reference::Answer;
    let options = HuntOptions { speed_max: 10, ..HuntOptions::default() };
    let t = 20 * SECOND;
    let too_fast = |distance, allowed| Answer::Rejected(Rejection::TooFast { distance, allowed });
    let moved = || Answer::Moved(Vec::new());
    check_rules(&[
        (SECOND, Event::CreateHunt { hunt: RULES_HUNT, spec: rules_spec(options) }, Answer::HuntCreated),
        (t, rules_join(1, 1, 0), Answer::Joined { score: 0, rank: 1 }),
        // First move after the join, zero elapsed time: exactly the 2 s burst.
        (t, rules_move(1, 2, 21), too_fast(21, 20)),
        (t, rules_move(1, 2, 20), moved()),
        // Zero elapsed time and nothing banked: even one unit is too far; standing still is not.
        (t, rules_move(1, 3, 21), too_fast(1, 0)),
        (t, rules_move(1, 3, 20), moved()),
        // 0.1 s earns exactly 1 unit.
        (t + SECOND / 10, rules_move(1, 4, 22), too_fast(2, 1)),
        (t + SECOND / 10, rules_move(1, 4, 21), moved()),
        // 10 s earn 100 units; at exactly the limit it passes, leaving nothing banked.
        (t + 101 * SECOND / 10, rules_move(1, 5, 122), too_fast(101, 100)),
        (t + 101 * SECOND / 10, rules_move(1, 5, 121), moved()),
        (t + 101 * SECOND / 10, rules_move(1, 6, 122), too_fast(1, 0)),
        // 6 s earn 60 units; a move of 10 banks only the burst's 20, not the 50 left.
        (t + 161 * SECOND / 10, rules_move(1, 6, 131), moved()),
        (t + 161 * SECOND / 10, rules_move(1, 7, 152), too_fast(21, 20)),
        (t + 161 * SECOND / 10, rules_move(1, 7, 151), moved()),
        (t + 161 * SECOND / 10, rules_move(1, 8, 152), too_fast(1, 0)),
    ]);
}

/// Unused travel carries over (protocol.md 6.9), fractions of a unit included: at 3 units
/// per second a player reporting every 0.1 s earns 0.3 of a unit per report, and those
/// add up to whole units. Rounding the earned travel down at every move and restarting
/// the clock there dropped them all, so the player could never move again.
#[test]
fn fractions_of_a_unit_earned_between_frequent_reports_carry_over() {
    use reference::Answer;
    let options = HuntOptions { speed_max: 3, ..HuntOptions::default() };
    let t = 20 * SECOND;
    let tick = SECOND / 10;
    let too_fast = |distance, allowed| Answer::Rejected(Rejection::TooFast { distance, allowed });
    let moved = || Answer::Moved(Vec::new());
    check_rules(&[
        (SECOND, Event::CreateHunt { hunt: RULES_HUNT, spec: rules_spec(options) }, Answer::HuntCreated),
        (t, rules_join(1, 1, 0), Answer::Joined { score: 0, rank: 1 }),
        // The 2 s burst, 6 units, spent at once.
        (t, rules_move(1, 2, 6), moved()),
        // Standing still every 0.1 s: 0.3 of a unit each, 1.5 after five reports.
        (t + tick, rules_move(1, 3, 6), moved()),
        (t + 2 * tick, rules_move(1, 4, 6), moved()),
        (t + 3 * tick, rules_move(1, 5, 6), moved()),
        (t + 4 * tick, rules_move(1, 6, 6), moved()),
        (t + 5 * tick, rules_move(1, 7, 6), moved()),
        // 1.8 units after six: one unit passes, two do not.
        (t + 6 * tick, rules_move(1, 8, 8), too_fast(2, 1)),
        (t + 6 * tick, rules_move(1, 8, 7), moved()),
        // 0.8 left and 0.3 more: a unit again, leaving 0.1.
        (t + 7 * tick, rules_move(1, 9, 8), moved()),
        (t + 7 * tick, rules_move(1, 10, 9), too_fast(1, 0)),
        // 0.4 s later, 0.1 + 1.2 = 1.3: a unit, leaving 0.3 (a third of a unit's time, 100 ms).
        (t + 11 * tick, rules_move(1, 10, 9), moved()),
        // 0.2 s more: 0.3 + 0.6 = 0.9, not yet a unit; 33 334 µs later 1.000002 is.
        (t + 13 * tick, rules_move(1, 11, 10), too_fast(1, 0)),
        (t + 13 * tick + 33_334, rules_move(1, 11, 10), moved()),
        // A long wait banks at most the burst, 6 units, and no fraction on top.
        (t + 100 * tick, rules_move(1, 12, 10), moved()),
        (t + 100 * tick, rules_move(1, 13, 17), too_fast(7, 6)),
        (t + 100 * tick, rules_move(1, 13, 16), moved()),
        (t + 100 * tick, rules_move(1, 14, 17), too_fast(1, 0)),
    ]);
}

/// A hint is the distance to a treasure the player can still claim (protocol.md 7.11);
/// once the hunt has ended nothing can be claimed, so it answers `hunt_ended` like the
/// other player events instead of pointing at a treasure.
#[test]
fn a_hint_after_the_end_is_refused_as_hunt_ended() {
    use reference::Answer;
    let treasure =
        TreasureSpec { id: 1, position: Position::new(100, 0), radius: 5, value: 10, capacity: 1, hint_radius: 0 };
    let hint = Event::Hint { hunt: RULES_HUNT, player: 1 };
    check_rules(&[
        (SECOND, Event::CreateHunt { hunt: RULES_HUNT, spec: rules_spec(HuntOptions::default()) }, Answer::HuntCreated),
        (SECOND, Event::PlaceTreasure { hunt: RULES_HUNT, treasure }, Answer::TreasurePlaced),
        (SECOND, rules_join(1, 1, 0), Answer::Joined { score: 0, rank: 1 }),
        // Before the start the treasure is still to be claimed: the hint points at it.
        (SECOND, hint, Answer::Hint(Some(100))),
        (20 * SECOND, hint, Answer::Hint(Some(100))),
        // Past the scheduled end, announced or not.
        (100 * SECOND, hint, Answer::Rejected(Rejection::HuntEnded)),
        (30 * SECOND, Event::EndHunt { hunt: RULES_HUNT }, Answer::HuntEnded),
        (30 * SECOND, hint, Answer::Rejected(Rejection::HuntEnded)),
        // Who is asked about still matters first.
        (30 * SECOND, Event::Hint { hunt: RULES_HUNT, player: 2 }, Answer::Rejected(Rejection::NotJoined)),
    ]);
}

/// Every mutating event first announces the lifecycle stages its event time has reached
/// (ARCHITECTURE.md, `src/hunt.rs`); deleting a hunt whose end has passed unannounced
/// tells its subscribers that it ended before telling them it is gone.
#[test]
fn deleting_a_hunt_past_its_end_announces_the_end_first() {
    use reference::Answer;
    let create = Event::CreateHunt { hunt: RULES_HUNT, spec: rules_spec(HuntOptions::default()) };
    let delete = Event::DeleteHunt { hunt: RULES_HUNT };
    let lifecycle = |shard: &Shard| -> Vec<(u64, NoticeKind)> {
        shard.notices().iter().map(|notice| (notice.seq, notice.kind)).collect()
    };
    // Started was announced, the end passed without a mutation to announce it.
    let (mut shard, mut model) = check_rules(&[
        (SECOND, create, Answer::HuntCreated),
        (20 * SECOND, rules_join(1, 1, 0), Answer::Joined { score: 0, rank: 1 }),
    ]);
    assert_eq!(Answer::of(&shard.apply(&delete, 200 * SECOND)), Answer::HuntDeleted);
    let expected = [(2, NoticeKind::Lifecycle(Lifecycle::Ended)), (3, NoticeKind::Lifecycle(Lifecycle::Deleted))];
    assert_eq!(lifecycle(&shard), expected);
    assert_eq!(model.apply(&delete, 200 * SECOND, None).expect("model").notices, shard.notices());
    // A running hunt deleted is deleted, not ended; one whose start passed unannounced
    // announces the start first.
    let (mut shard, _) = check_rules(&[(SECOND, create, Answer::HuntCreated)]);
    assert_eq!(Answer::of(&shard.apply(&delete, 50 * SECOND)), Answer::HuntDeleted);
    let expected = [(1, NoticeKind::Lifecycle(Lifecycle::Started)), (2, NoticeKind::Lifecycle(Lifecycle::Deleted))];
    assert_eq!(lifecycle(&shard), expected);
    let (mut shard, _) = check_rules(&[(SECOND, create, Answer::HuntCreated)]);
    assert_eq!(Answer::of(&shard.apply(&delete, 2 * SECOND)), Answer::HuntDeleted);
    assert_eq!(lifecycle(&shard), [(1, NoticeKind::Lifecycle(Lifecycle::Deleted))]);
}

/// After the end a hunt's state is final: LEAVE is refused with `hunt_ended` like every
/// other player event, so a player's standing (joined, last sequence number) and the
/// digest stay as the hunt ended. A retried LEAVE is still reported as a duplicate.
#[test]
fn a_leave_after_the_end_is_refused_and_the_standing_stays_final() {
    use reference::Answer;
    let leave = |seq| Event::Leave { hunt: RULES_HUNT, player: 1, seq };
    let final_standing = cairn::outcome::Standing { rank: 1, total: 1, score: 0, claims: 0, last_seq: 2, joined: true };
    let (shard, _) = check_rules(&[
        (SECOND, Event::CreateHunt { hunt: RULES_HUNT, spec: rules_spec(HuntOptions::default()) }, Answer::HuntCreated),
        (20 * SECOND, rules_join(1, 1, 0), Answer::Joined { score: 0, rank: 1 }),
        (20 * SECOND, rules_move(1, 2, 5), Answer::Moved(Vec::new())),
        (100 * SECOND, rules_rank(1), Answer::Standing(final_standing)),
        (100 * SECOND, leave(3), Answer::Rejected(Rejection::HuntEnded)),
        (100 * SECOND, leave(2), Answer::Rejected(Rejection::Duplicate { seq: 2, last: 2 })),
        (100 * SECOND, rules_rank(1), Answer::Standing(final_standing)),
    ]);
    let mut before_end = Shard::new();
    before_end.apply(&Event::CreateHunt { hunt: RULES_HUNT, spec: rules_spec(HuntOptions::default()) }, SECOND);
    before_end.apply(&rules_join(1, 1, 0), 20 * SECOND);
    before_end.apply(&rules_move(1, 2, 5), 20 * SECOND);
    before_end.apply(&Event::EndHunt { hunt: RULES_HUNT }, 100 * SECOND);
    assert_eq!(shard.digest(), before_end.digest(), "a refused LEAVE after the end changed the state");
}

/// `seq` is a `u32` that only grows: once `u32::MAX` is applied, every later event of the
/// player would be a duplicate, which protocol.md's retry rule reads as "already applied"
/// although nothing was. The top number is refused instead, with a code of its own, before
/// anything else about the player is looked at.
#[test]
fn the_top_sequence_number_is_refused_not_applied() {
    use reference::Answer;
    let top = u32::MAX;
    let exhausted = || Answer::Rejected(Rejection::SequenceExhausted);
    let adjust = |seq| Event::AdjustScore { hunt: RULES_HUNT, player: 1, seq, delta: 1 };
    let t = 20 * SECOND;
    check_rules(&[
        (SECOND, Event::CreateHunt { hunt: RULES_HUNT, spec: rules_spec(HuntOptions::default()) }, Answer::HuntCreated),
        (t, rules_join(1, top, 0), exhausted()),
        (t, rules_join(1, 1, 0), Answer::Joined { score: 0, rank: 1 }),
        (t, rules_join(1, top, 0), exhausted()),
        (t, rules_move(1, top, 5), exhausted()),
        (t, adjust(top), exhausted()),
        (t, Event::Leave { hunt: RULES_HUNT, player: 1, seq: top }, exhausted()),
        (
            t,
            Event::Dig { hunt: RULES_HUNT, player: 1, seq: top, treasure: 1, position: Position::new(5, 0) },
            exhausted(),
        ),
        (t, rules_move(2, top, 5), exhausted()),
        // The player was not stuck by them: the next number is still free, and the one
        // below the top is an ordinary number.
        (t, rules_move(1, 2, 5), Answer::Moved(Vec::new())),
        (t, adjust(top - 1), Answer::Adjusted { score: 1, rank: 1 }),
        (t, adjust(top), exhausted()),
    ]);
    assert_eq!(
        Rejection::SequenceExhausted.to_string(),
        "sequence number 4294967295 is never applied: no later event of the player could follow it"
    );
}

/// Replay through the real journal, not only in memory: cases of the main strategy (three
/// hunts, most with a speed limit, many events at one time) are written to journal files
/// in a temporary directory with a snapshot halfway, and recovery (snapshot, then the
/// records after it through `Shard::apply`) gives the digest of the shard that applied
/// them live, which covers each player's banked travel and last move time.
#[test]
fn model_cases_recover_from_real_journal_files_and_a_snapshot_to_the_live_digest() {
    use cairn::journal::{recover, Durability, FileStorage, Repair, Writer};
    let dir = std::env::temp_dir().join(format!("cairn-model-journal-{}", std::process::id()));
    let mut runner = TestRunner::deterministic();
    let mut limited_moves = 0;
    for index in 0..32 {
        let steps = case().new_tree(&mut runner).expect("a case").current();
        let (log, digest) = run(&steps).unwrap_or_else(|why| panic!("case {index}: {why}"));
        let _ = std::fs::remove_dir_all(&dir);
        let mut storage = FileStorage::open(&dir).unwrap();
        let fresh = recover(&mut storage, Repair::Truncate).unwrap();
        let mut writer = Writer::open(storage, Durability::Os, &fresh).unwrap();
        let mutations: Vec<&(Micros, Event)> = log.iter().filter(|(_, event)| event.is_mutation()).collect();
        let mut live = Shard::new();
        for (at, (time, event)) in mutations.iter().enumerate() {
            let accepted = !live.apply(event, *time).is_rejected();
            let limited = live.hunt(event.hunt()).is_some_and(|hunt| hunt.spec().options.speed_max > 0);
            limited_moves += (accepted && limited && matches!(event, Event::Move { .. } | Event::Dig { .. })) as u32;
            writer.append(event, *time);
            if at % 7 == 6 {
                writer.commit().unwrap();
            }
            if at == mutations.len() / 2 {
                writer.snapshot(&live).unwrap();
            }
        }
        writer.commit().unwrap();
        assert_eq!(live.digest(), digest, "case {index}: the mutations alone give another state than the case");
        let recovered = recover(&mut FileStorage::open(&dir).unwrap(), Repair::Truncate).unwrap();
        assert!(recovered.snapshot_seq > 0, "case {index}: no snapshot was taken");
        assert_eq!(recovered.last_seq, mutations.len() as u64, "case {index}");
        assert_eq!(recovered.shard.digest(), digest, "case {index}: recovered from the journal to another state");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(limited_moves > 150, "only {limited_moves} accepted moves and digs under a speed limit");
}
