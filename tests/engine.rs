//! Rule-by-rule tests of the state machine through its public API, written as data: each
//! case is a script of (event time, event, expected outcome). Plus the proof that the
//! steady state allocates nothing: a million mixed events under the counting allocator.

use cairn::alloc;
use cairn::event::{Coordinates, Event, HuntOptions, HuntSpec, Micros, PointsRule, Position, TreasureSpec};
use cairn::outcome::{Claim, Lifecycle, NoticeKind, Outcome, Ranked, Rejection, Standing, TreasureState};
use cairn::shard::Shard;
use cairn::simulate::{Config, Workload};

const HUNT: u32 = 7;
const SECOND: Micros = 1_000_000;

fn planar(options: HuntOptions) -> HuntSpec {
    HuntSpec {
        coordinates: Coordinates::Planar,
        min: Position::new(0, 0),
        max: Position::new(1_000, 1_000),
        start: 10 * SECOND,
        end: 100 * SECOND,
        options,
    }
}

fn create(options: HuntOptions) -> Event {
    Event::CreateHunt { hunt: HUNT, spec: planar(options) }
}

fn treasure(id: u32, x: i32, y: i32, radius: u32, capacity: u32) -> Event {
    let treasure = TreasureSpec { id, position: Position::new(x, y), radius, value: 100, capacity, hint_radius: 0 };
    Event::PlaceTreasure { hunt: HUNT, treasure }
}

fn join(player: u32, seq: u32, x: i32, y: i32) -> Event {
    Event::Join { hunt: HUNT, player, seq, position: Position::new(x, y) }
}

fn step(player: u32, seq: u32, x: i32, y: i32) -> Event {
    Event::Move { hunt: HUNT, player, seq, position: Position::new(x, y) }
}

fn dig(player: u32, seq: u32, treasure: u32, x: i32, y: i32) -> Event {
    Event::Dig { hunt: HUNT, player, seq, treasure, position: Position::new(x, y) }
}

fn adjust(player: u32, seq: u32, delta: i32) -> Event {
    Event::AdjustScore { hunt: HUNT, player, seq, delta }
}

fn claim(treasure: u32, index: u32, capacity: u32, points: u32, score: i64, rank: u32) -> Claim {
    Claim { treasure, index, capacity, points, score, rank }
}

/// Applies the script to a fresh shard; every outcome must equal the expected one.
fn check(script: &[(Micros, Event, Outcome<'_>)]) -> Shard {
    let mut shard = Shard::new();
    for (step_index, (time, event, expected)) in script.iter().enumerate() {
        let outcome = shard.apply(event, *time);
        assert_eq!(outcome, *expected, "step {step_index}: {event:?} at {time}");
    }
    shard
}

#[test]
fn a_claim_needs_a_running_hunt_a_joined_player_and_reach() {
    let t = 20 * SECOND;
    check(&[
        (SECOND, create(HuntOptions::default()), Outcome::HuntCreated),
        (SECOND, create(HuntOptions::default()), Outcome::Rejected(Rejection::HuntExists)),
        (SECOND, treasure(1, 100, 100, 10, 2), Outcome::TreasurePlaced),
        (SECOND, treasure(1, 100, 100, 10, 2), Outcome::Rejected(Rejection::TreasureExists)),
        (SECOND, join(1, 1, 100, 100), Outcome::Joined { score: 0, rank: 1 }),
        (SECOND, dig(1, 2, 1, 100, 100), Outcome::Rejected(Rejection::HuntNotStarted)),
        (t, dig(9, 2, 1, 100, 100), Outcome::Rejected(Rejection::NotJoined)),
        (t, dig(1, 2, 99, 100, 100), Outcome::Rejected(Rejection::TreasureNotFound)),
        (t, dig(1, 2, 1, 100, 120), Outcome::Rejected(Rejection::OutOfReach { distance: 20, radius: 10 })),
        (t, dig(1, 2, 1, 103, 104), Outcome::Dug { claim: claim(1, 1, 2, 100, 100, 1) }),
        (t, dig(1, 3, 1, 100, 100), Outcome::Rejected(Rejection::AlreadyClaimed)),
        (t, join(2, 1, 100, 100), Outcome::Joined { score: 0, rank: 2 }),
        (t, dig(2, 2, 1, 100, 110), Outcome::Dug { claim: claim(1, 2, 2, 100, 100, 2) }),
        (t, join(3, 1, 100, 100), Outcome::Joined { score: 0, rank: 3 }),
        (t, dig(3, 2, 1, 100, 100), Outcome::Rejected(Rejection::TreasureExhausted)),
        (200 * SECOND, dig(3, 2, 1, 100, 100), Outcome::Rejected(Rejection::HuntEnded)),
        (200 * SECOND, Event::Top { hunt: 8, count: 3 }, Outcome::Rejected(Rejection::HuntNotFound)),
    ]);
}

#[test]
fn sequence_numbers_make_retries_harmless() {
    let t = 20 * SECOND;
    let shard = check(&[
        (t, create(HuntOptions::default()), Outcome::HuntCreated),
        (t, join(1, 5, 0, 0), Outcome::Joined { score: 0, rank: 1 }),
        (t, join(1, 5, 0, 0), Outcome::Rejected(Rejection::Duplicate { seq: 5, last: 5 })),
        (t, adjust(1, 6, 30), Outcome::Adjusted { score: 30, rank: 1 }),
        (t, adjust(1, 6, 30), Outcome::Rejected(Rejection::Duplicate { seq: 6, last: 6 })),
        (t, adjust(1, 4, 30), Outcome::Rejected(Rejection::Duplicate { seq: 4, last: 6 })),
        // A refused event does not consume its sequence number.
        (t, step(1, 7, 5_000, 0), Outcome::Rejected(Rejection::OutOfBounds)),
        (t, step(1, 7, 10, 0), Outcome::Moved { claims: &[] }),
        (t, Event::Leave { hunt: HUNT, player: 1, seq: 8 }, Outcome::Left),
        (t, step(1, 9, 10, 0), Outcome::Rejected(Rejection::NotJoined)),
        (t, join(1, 9, 0, 0), Outcome::Joined { score: 30, rank: 1 }),
        (t, join(1, 10, 0, 0), Outcome::Rejected(Rejection::AlreadyJoined)),
    ]);
    let mut shard = shard;
    let expected = Standing { rank: 1, total: 1, score: 30, claims: 0, last_seq: 9, joined: true };
    assert_eq!(shard.apply(&Event::Rank { hunt: HUNT, player: 1 }, t), Outcome::Standing(expected));
}

/// What `docs/protocol.md` says under "Retries": a refused event leaves its sequence
/// number free, so a retry is judged afresh; once a later number is applied, the earlier
/// refused one is a duplicate although it was never applied.
#[test]
fn a_refused_event_leaves_its_sequence_number_free() {
    let t = 20 * SECOND;
    check(&[
        (t, create(HuntOptions::default()), Outcome::HuntCreated),
        (t, join(1, 1, 0, 0), Outcome::Joined { score: 0, rank: 1 }),
        (t, dig(1, 2, 1, 0, 0), Outcome::Rejected(Rejection::TreasureNotFound)),
        (t, treasure(1, 0, 0, 5, 2), Outcome::TreasurePlaced),
        (t, dig(1, 2, 1, 0, 0), Outcome::Dug { claim: claim(1, 1, 2, 100, 100, 1) }),
        (t, dig(1, 3, 1, 0, 0), Outcome::Rejected(Rejection::AlreadyClaimed)),
        (t, adjust(1, 4, 1), Outcome::Adjusted { score: 101, rank: 1 }),
        (t, dig(1, 3, 1, 0, 0), Outcome::Rejected(Rejection::Duplicate { seq: 3, last: 4 })),
    ]);
}

#[test]
fn ties_are_broken_by_the_time_the_score_was_reached_then_by_id() {
    let t = 20 * SECOND;
    let line = |rank, player, score, reached_at| Ranked { rank, player, score, reached_at };
    let mut shard = check(&[
        (t, create(HuntOptions::default()), Outcome::HuntCreated),
        (t, join(3, 1, 0, 0), Outcome::Joined { score: 0, rank: 1 }),
        (t, join(2, 1, 0, 0), Outcome::Joined { score: 0, rank: 1 }),
        (t + 1, join(1, 1, 0, 0), Outcome::Joined { score: 0, rank: 3 }),
        (t + 2, adjust(3, 2, 50), Outcome::Adjusted { score: 50, rank: 1 }),
        (t + 3, adjust(1, 2, 50), Outcome::Adjusted { score: 50, rank: 2 }),
        (t + 4, adjust(2, 2, 60), Outcome::Adjusted { score: 60, rank: 1 }),
        (t + 5, adjust(2, 3, -10), Outcome::Adjusted { score: 50, rank: 3 }),
    ]);
    let expected = [line(1, 3, 50, t + 2), line(2, 1, 50, t + 3), line(3, 2, 50, t + 5)];
    assert_eq!(
        shard.apply(&Event::Top { hunt: HUNT, count: 10 }, t + 6),
        Outcome::List { total: 3, entries: &expected }
    );
    let around = [line(2, 1, 50, t + 3), line(3, 2, 50, t + 5)];
    let event = Event::Around { hunt: HUNT, player: 2, radius: 1 };
    assert_eq!(shard.apply(&event, t + 6), Outcome::List { total: 3, entries: &around });
    let too_many = Event::Top { hunt: HUNT, count: 1_001 };
    assert_eq!(shard.apply(&too_many, t), Outcome::Rejected(Rejection::CountTooLarge { asked: 1_001, max: 1_000 }));
}

#[test]
fn the_speed_limit_allows_a_burst_then_the_earned_distance() {
    let options = HuntOptions { speed_max: 10, ..HuntOptions::default() };
    let t = 20 * SECOND;
    check(&[
        (t, create(options), Outcome::HuntCreated),
        // A fresh player may cover 2 s of travel at once: 20 units.
        (t, join(1, 1, 0, 0), Outcome::Joined { score: 0, rank: 1 }),
        (t, step(1, 2, 21, 0), Outcome::Rejected(Rejection::TooFast { distance: 21, allowed: 20 })),
        (t, step(1, 2, 20, 0), Outcome::Moved { claims: &[] }),
        (t, step(1, 3, 21, 0), Outcome::Rejected(Rejection::TooFast { distance: 1, allowed: 0 })),
        // Half a second later, 5 units have been earned.
        (t + SECOND / 2, step(1, 3, 25, 0), Outcome::Moved { claims: &[] }),
        (t + 10 * SECOND, step(1, 4, 45, 0), Outcome::Moved { claims: &[] }),
    ]);
}

#[test]
fn a_player_who_reports_rarely_may_cover_what_the_speed_limit_allows_in_the_time() {
    let options = HuntOptions { speed_max: 10, ..HuntOptions::default() };
    let t = 20 * SECOND;
    let leave = |seq| Event::Leave { hunt: HUNT, player: 1, seq };
    check(&[
        (t, create(options), Outcome::HuntCreated),
        (t, join(1, 1, 0, 0), Outcome::Joined { score: 0, rank: 1 }),
        // Ten seconds later, 50 units further: 5 units/s, half the limit. The limit allows
        // 10 s at 10 units/s plus the 2 s burst: 120 units.
        (t + 10 * SECOND, step(1, 2, 50, 0), Outcome::Moved { claims: &[] }),
        (t + 20 * SECOND, step(1, 3, 171, 0), Outcome::Rejected(Rejection::TooFast { distance: 121, allowed: 120 })),
        (t + 20 * SECOND, step(1, 3, 170, 0), Outcome::Moved { claims: &[] }),
        // What a move may not cover, leaving and rejoining may not either.
        (t + 30 * SECOND, leave(4), Outcome::Left),
        (t + 40 * SECOND, join(1, 5, 400, 0), Outcome::Rejected(Rejection::TooFast { distance: 230, allowed: 220 })),
        (t + 40 * SECOND, join(1, 5, 390, 0), Outcome::Joined { score: 0, rank: 1 }),
    ]);
}

#[test]
fn leaving_and_rejoining_is_no_way_around_the_speed_limit() {
    let options = HuntOptions { speed_max: 10, ..HuntOptions::default() };
    let t = 20 * SECOND;
    let leave = |seq| Event::Leave { hunt: HUNT, player: 1, seq };
    check(&[
        (t, create(options), Outcome::HuntCreated),
        (t, join(1, 1, 0, 0), Outcome::Joined { score: 0, rank: 1 }),
        (t, leave(2), Outcome::Left),
        // Back one second later, 500 units away: 10 units/s over 1 s plus the 2 s burst
        // window reaches 30 units.
        (t + SECOND, join(1, 3, 500, 0), Outcome::Rejected(Rejection::TooFast { distance: 500, allowed: 30 })),
        // Fifty seconds later the walk is plausible.
        (t + 50 * SECOND, join(1, 3, 500, 0), Outcome::Joined { score: 0, rank: 1 }),
    ]);
}

#[test]
fn a_retried_join_after_the_end_is_still_a_duplicate() {
    check(&[
        (SECOND, create(HuntOptions::default()), Outcome::HuntCreated),
        (20 * SECOND, join(1, 1, 0, 0), Outcome::Joined { score: 0, rank: 1 }),
        (200 * SECOND, join(1, 1, 0, 0), Outcome::Rejected(Rejection::Duplicate { seq: 1, last: 1 })),
        (200 * SECOND, join(2, 1, 0, 0), Outcome::Rejected(Rejection::HuntEnded)),
    ]);
}

#[test]
fn auto_discover_claims_on_move_with_decaying_points() {
    let options = HuntOptions { auto_discover: true, points: PointsRule::Decay, ..HuntOptions::default() };
    let t = 20 * SECOND;
    let first = [claim(1, 1, 4, 100, 100, 1)];
    let second = [claim(1, 2, 4, 75, 75, 2)];
    let mut shard = check(&[
        (t, create(options), Outcome::HuntCreated),
        (t, treasure(1, 500, 500, 20, 4), Outcome::TreasurePlaced),
        (t, join(1, 1, 0, 0), Outcome::Joined { score: 0, rank: 1 }),
        (t, join(2, 1, 0, 0), Outcome::Joined { score: 0, rank: 2 }),
        (t, step(1, 2, 400, 400), Outcome::Moved { claims: &[] }),
        (t, step(1, 3, 490, 490), Outcome::Moved { claims: &first }),
        (t, step(1, 4, 495, 495), Outcome::Moved { claims: &[] }),
        (t, step(2, 2, 510, 500), Outcome::Moved { claims: &second }),
    ]);
    let info = Event::TreasureInfo { hunt: HUNT, treasure: 1 };
    assert_eq!(shard.apply(&info, t), Outcome::Treasure(TreasureState { claimed: 2, capacity: 4, value: 100 }));
}

#[test]
fn lifecycle_notices_follow_event_time_and_carry_gapless_sequence_numbers() {
    let mut shard = Shard::new();
    assert_eq!(shard.apply(&create(HuntOptions::default()), SECOND), Outcome::HuntCreated);
    assert!(shard.notices().is_empty());
    assert_eq!(shard.apply(&treasure(1, 10, 10, 5, 1), 20 * SECOND), Outcome::TreasurePlaced);
    let kinds: Vec<_> = shard.notices().iter().map(|notice| (notice.seq, notice.kind)).collect();
    assert_eq!(kinds, [(1, NoticeKind::Lifecycle(Lifecycle::Started))]);
    shard.apply(&join(1, 1, 10, 10), 21 * SECOND);
    assert!(!shard.apply(&dig(1, 2, 1, 10, 10), 22 * SECOND).is_rejected());
    let kinds: Vec<_> = shard.notices().iter().map(|notice| (notice.kind.topic(), notice.seq)).collect();
    use cairn::outcome::Topic;
    assert_eq!(kinds, [(Topic::Top, 2), (Topic::Discoveries, 1), (Topic::Lifecycle, 2)]);
    assert_eq!(shard.apply(&Event::EndHunt { hunt: HUNT }, 30 * SECOND), Outcome::HuntEnded);
    let kinds: Vec<_> = shard.notices().iter().map(|notice| (notice.seq, notice.kind)).collect();
    assert_eq!(kinds, [(3, NoticeKind::Lifecycle(Lifecycle::Ended))]);
    assert_eq!(shard.apply(&adjust(1, 3, 5), 31 * SECOND), Outcome::Rejected(Rejection::HuntEnded));
    assert_eq!(shard.apply(&Event::DeleteHunt { hunt: HUNT }, 31 * SECOND), Outcome::HuntDeleted);
    assert_eq!(shard.hunt_count(), 0);
}

#[test]
fn invalid_hunts_and_treasures_are_refused_with_the_field_named() {
    let t = SECOND;
    let backwards = HuntSpec { start: 5, end: 5, ..planar(HuntOptions::default()) };
    let inverted = HuntSpec { min: Position::new(10, 0), max: Position::new(0, 10), ..planar(HuntOptions::default()) };
    let mut shard = check(&[
        (
            t,
            Event::CreateHunt { hunt: 1, spec: backwards },
            Outcome::Rejected(Rejection::InvalidHunt("start time must be before end time")),
        ),
        (
            t,
            Event::CreateHunt { hunt: 1, spec: inverted },
            Outcome::Rejected(Rejection::InvalidHunt("the minimum corner must not exceed the maximum corner")),
        ),
        (t, create(HuntOptions::default()), Outcome::HuntCreated),
        (
            t,
            treasure(1, 2_000, 0, 5, 1),
            Outcome::Rejected(Rejection::InvalidTreasure("position outside the hunt's bounds")),
        ),
        (
            t,
            treasure(1, 0, 0, 5, 0),
            Outcome::Rejected(Rejection::InvalidTreasure("capacity must be between 1 and 100000")),
        ),
    ]);
    for rejection in [Rejection::InvalidHunt("x"), Rejection::OutOfBounds] {
        assert!(!rejection.to_string().is_empty());
    }
    assert_eq!(
        shard.apply(&Event::TreasureInfo { hunt: HUNT, treasure: 1 }, t),
        Outcome::Rejected(Rejection::TreasureNotFound)
    );
}

/// A geographic hunt whose longitudes run backwards is refused with the reason that
/// applies to longitudes (hunts may not cross the antimeridian), not the planar one.
#[test]
fn a_geographic_hunt_across_the_antimeridian_is_refused_with_that_reason() {
    let geographic = |min: Position, max: Position| HuntSpec {
        coordinates: Coordinates::Geographic,
        min,
        max,
        ..planar(HuntOptions::default())
    };
    let across = geographic(Position::new(1_799_000_000, 0), Position::new(-1_799_000_000, 1_000_000));
    let southward = geographic(Position::new(0, 1_000_000), Position::new(1_000_000, 0));
    check(&[
        (
            SECOND,
            Event::CreateHunt { hunt: 1, spec: across },
            Outcome::Rejected(Rejection::InvalidHunt(
                "geographic bounds: the minimum longitude exceeds the maximum (hunts may not cross the antimeridian)",
            )),
        ),
        (
            SECOND,
            Event::CreateHunt { hunt: 1, spec: southward },
            Outcome::Rejected(Rejection::InvalidHunt("geographic bounds: the minimum latitude exceeds the maximum")),
        ),
    ]);
}

#[test]
fn the_hint_is_the_distance_to_the_nearest_treasure_still_claimable() {
    let t = 20 * SECOND;
    let mut shard = check(&[
        (t, create(HuntOptions::default()), Outcome::HuntCreated),
        (t, treasure(1, 100, 0, 5, 1), Outcome::TreasurePlaced),
        (t, treasure(2, 300, 0, 5, 1), Outcome::TreasurePlaced),
        (t, join(1, 1, 0, 0), Outcome::Joined { score: 0, rank: 1 }),
        (t, Event::Hint { hunt: HUNT, player: 1 }, Outcome::Hint { distance: Some(100) }),
        (t, dig(1, 2, 1, 100, 0), Outcome::Dug { claim: claim(1, 1, 1, 100, 100, 1) }),
        (t, Event::Hint { hunt: HUNT, player: 1 }, Outcome::Hint { distance: Some(200) }),
        (t, Event::RemoveTreasure { hunt: HUNT, treasure: 2 }, Outcome::TreasureRemoved),
        (t, Event::Hint { hunt: HUNT, player: 1 }, Outcome::Hint { distance: None }),
    ]);
    assert_eq!(shard.apply(&Event::Hint { hunt: HUNT, player: 2 }, t), Outcome::Rejected(Rejection::NotJoined));
}

#[test]
fn geographic_hunts_measure_reach_in_metres() {
    // A hunt around central Paris; 1e-7 degrees of latitude is about 1.1 cm.
    let spec = HuntSpec {
        coordinates: Coordinates::Geographic,
        min: Position::new(23_000_000, 488_000_000),
        max: Position::new(23_800_000, 489_200_000),
        ..planar(HuntOptions::default())
    };
    let t = 20 * SECOND;
    let spot = Position::new(23_500_000, 488_600_000);
    let place = TreasureSpec { id: 1, position: spot, radius: 30, value: 10, capacity: 1, hint_radius: 0 };
    // 0.0002 degrees of latitude north is about 22.2 m: within 30 m.
    let near = Position::new(23_500_000, 488_602_000);
    // 0.0004 degrees is about 44.5 m, which a refusal reports rounded up.
    let far = Position::new(23_500_000, 488_604_000);
    let mut shard = check(&[
        (t, Event::CreateHunt { hunt: HUNT, spec }, Outcome::HuntCreated),
        (t, Event::PlaceTreasure { hunt: HUNT, treasure: place }, Outcome::TreasurePlaced),
        (t, Event::Join { hunt: HUNT, player: 1, seq: 1, position: far }, Outcome::Joined { score: 0, rank: 1 }),
    ]);
    let outcome = shard.apply(&Event::Dig { hunt: HUNT, player: 1, seq: 2, treasure: 1, position: far }, t);
    assert!(matches!(outcome, Outcome::Rejected(Rejection::OutOfReach { distance: 45, radius: 30 })), "{outcome:?}");
    let outcome = shard.apply(&Event::Dig { hunt: HUNT, player: 1, seq: 2, treasure: 1, position: near }, t);
    assert!(matches!(outcome, Outcome::Dug { .. }), "{outcome:?}");
}

/// A refusal for distance names a distance beyond the limit it broke: distances are
/// rounded up there, so "10 from the treasure, beyond its radius of 10" cannot happen.
#[test]
fn refused_distances_are_rounded_up_past_the_limit() {
    let t = 20 * SECOND;
    check(&[
        (t, create(HuntOptions::default()), Outcome::HuntCreated),
        (t, treasure(1, 100, 100, 10, 1), Outcome::TreasurePlaced),
        (t, join(1, 1, 100, 100), Outcome::Joined { score: 0, rank: 1 }),
        // 7 and 8 units away: 10.63 units, beyond a radius of 10.
        (t, dig(1, 2, 1, 107, 108), Outcome::Rejected(Rejection::OutOfReach { distance: 11, radius: 10 })),
    ]);
    // The same in metres: about 30.50 m north of a treasure of radius 30 m, and a move of
    // about 2.5 m against a speed limit of 1 m/s with its 2 m burst.
    let options = HuntOptions { speed_max: 1, ..HuntOptions::default() };
    let spec = HuntSpec {
        coordinates: Coordinates::Geographic,
        min: Position::new(23_000_000, 488_000_000),
        max: Position::new(23_800_000, 489_200_000),
        ..planar(options)
    };
    let spot = Position::new(23_500_000, 488_600_000);
    let place = TreasureSpec { id: 1, position: spot, radius: 30, value: 10, capacity: 1, hint_radius: 0 };
    let beyond = Position::new(23_500_000, 488_602_743);
    let too_far = Position::new(23_500_000, 488_600_225);
    let mut shard = check(&[
        (t, Event::CreateHunt { hunt: HUNT, spec }, Outcome::HuntCreated),
        (t, Event::PlaceTreasure { hunt: HUNT, treasure: place }, Outcome::TreasurePlaced),
        (t, Event::Join { hunt: HUNT, player: 1, seq: 1, position: spot }, Outcome::Joined { score: 0, rank: 1 }),
        (
            t,
            Event::Move { hunt: HUNT, player: 1, seq: 2, position: too_far },
            Outcome::Rejected(Rejection::TooFast { distance: 3, allowed: 2 }),
        ),
    ]);
    let join = Event::Join { hunt: HUNT, player: 2, seq: 1, position: beyond };
    assert_eq!(shard.apply(&join, t), Outcome::Joined { score: 0, rank: 2 });
    let dig = Event::Dig { hunt: HUNT, player: 2, seq: 2, treasure: 1, position: beyond };
    let outcome = shard.apply(&dig, t);
    assert_eq!(outcome, Outcome::Rejected(Rejection::OutOfReach { distance: 31, radius: 30 }));
    let message = match outcome {
        Outcome::Rejected(rejection) => rejection.to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(message, "the player is 31 from the treasure, beyond its radius of 30");
}

#[test]
fn replaying_the_same_events_gives_the_same_digest() {
    let config = Config { hunts: 4, players_per_hunt: 200, treasures_per_hunt: 30, ..Config::default() };
    // With `prefetch`, every event is prefetched before the previous one is applied, as
    // the server does: a prefetch must change nothing.
    let run = |seed: u64, prefetch: bool| {
        let mut shard = Shard::new();
        let mut workload = Workload::new(Config { seed, ..config });
        workload.setup(|event, time| {
            shard.apply(event, time);
        });
        let mut next = workload.next_event();
        for _ in 0..20_000 {
            let (event, time) = next;
            next = workload.next_event();
            if prefetch {
                shard.prefetch(&next.0);
            }
            shard.apply(&event, time);
        }
        shard.digest()
    };
    // Each shard's player tables hash with their own seeds: the digest must not depend on
    // the layout that gives.
    assert_eq!(run(1, false), run(1, false));
    assert_eq!(run(1, false), run(1, true));
    assert_ne!(run(1, false), run(2, false));
}

/// Equal digests promise equal futures. Which slot a placed treasure takes depends on
/// the order earlier ones were removed in, and a move that reaches more treasures than
/// it may claim at once claims them in slot order; so two shards whose treasures sit in
/// different slots must not share a digest.
#[test]
fn shards_with_equal_digests_answer_alike() {
    let t = 20 * SECOND;
    let options = HuntOptions { auto_discover: true, ..HuntOptions::default() };
    let remove = |treasure| Event::RemoveTreasure { hunt: HUNT, treasure };
    let prefix = |removals: [u32; 2]| {
        let mut shard = Shard::new();
        for event in [create(options), treasure(1, 0, 0, 5, 1), treasure(2, 0, 0, 5, 1)] {
            assert!(!shard.apply(&event, t).is_rejected(), "{event:?}");
        }
        for id in removals {
            assert_eq!(shard.apply(&remove(id), t), Outcome::TreasureRemoved);
        }
        shard
    };
    let continuation = |shard: &mut Shard| {
        let mut claims = Vec::new();
        for id in 10..15 {
            assert_eq!(shard.apply(&treasure(id, 500, 500, 5, 1), t), Outcome::TreasurePlaced);
        }
        assert!(!shard.apply(&join(1, 1, 0, 0), t).is_rejected());
        if let Outcome::Moved { claims: moved } = shard.apply(&step(1, 2, 500, 500), t) {
            claims.extend_from_slice(moved);
        }
        claims
    };
    let (mut first, mut second) = (prefix([1, 2]), prefix([2, 1]));
    let digests = (first.digest(), second.digest());
    let (first_claims, second_claims) = (continuation(&mut first), continuation(&mut second));
    assert_eq!(first_claims.len(), 4);
    assert!(
        first_claims == second_claims || digests.0 != digests.1,
        "equal digests {:x}, different claims: {first_claims:?} and {second_claims:?}",
        digests.0
    );
}

/// The counting allocator is installed: otherwise the zero-allocation proof below would
/// pass without measuring anything.
#[test]
fn the_counting_allocator_sees_a_known_allocation() {
    assert!(alloc::installed());
    let scope = alloc::Scope::start();
    let boxed = std::hint::black_box(Box::new([7u8; 64]));
    assert_eq!(scope.allocations(), 1);
    drop(boxed);
}

#[test]
fn the_steady_state_allocates_nothing_per_event() {
    let config = Config { hunts: 20, players_per_hunt: 2_000, treasures_per_hunt: 100, ..Config::default() };
    for auto_discover in [false, true] {
        let mut shard = Shard::new();
        let mut workload = Workload::new(Config { auto_discover, ..config });
        workload.setup(|event, time| {
            assert!(!shard.apply(event, time).is_rejected(), "{event:?}");
        });
        // Warm-up: every table reaches its working size.
        for _ in 0..200_000 {
            let (event, time) = workload.next_event();
            shard.apply(&event, time);
        }
        let mut accepted = [0u64; 4];
        let scope = alloc::Scope::start();
        for _ in 0..1_000_000 {
            let (event, time) = workload.next_event();
            shard.prefetch(&event);
            let outcome = shard.apply(&event, time);
            let index = match event {
                Event::Move { .. } => 0,
                Event::Dig { .. } => 1,
                Event::AdjustScore { .. } => 2,
                _ => 3,
            };
            accepted[index] += !outcome.is_rejected() as u64;
        }
        assert_eq!(scope.allocations(), 0, "auto_discover: {auto_discover}");
        // The mix really exercised every path: moves, successful digs, adjustments, queries.
        for (index, count) in accepted.iter().enumerate() {
            assert!(*count > 1_000, "kind {index} accepted only {count} times");
        }
    }
}
