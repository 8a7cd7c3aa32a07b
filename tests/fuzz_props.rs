//! The fuzz properties on stable Rust, in every `cargo test`: the same functions the
//! libFuzzer targets under `fuzz/` run (`tests/props/decoders.rs` for the decoders,
//! `check_case_bytes` of `tests/model/harness.rs` for the state machine,
//! `check_leaderboard_bytes` of `tests/props/leaderboard.rs` for the leaderboard), fed by proptest
//! with arbitrary bytes and with the committed seed corpus mutated, and every committed
//! seed replayed as it is. `PROPTEST_CASES` sets the number of cases (256 by default).
//!
//! `CAIRN_FUZZ_SEEDS=fuzz/seeds cargo test --release --test fuzz_props write_seeds` (re)writes the
//! decoders' seed corpus from the real encoders (`fuzz/README.md`); the `events` seeds
//! come from `tests/model.rs`, the `leaderboard` seeds from `tests/leaderboard.rs`.

// Only `check_case_bytes` of the harness and what it reaches are used here.
#[allow(dead_code)]
#[path = "model/reference.rs"]
mod reference;

#[allow(dead_code)]
#[path = "model/harness.rs"]
mod harness;

#[path = "props/decoders.rs"]
mod decoders;

// Only `check_leaderboard_bytes` and what it reaches are used here.
#[allow(dead_code)]
#[path = "props/leaderboard.rs"]
mod leaderboard;

use std::path::{Path, PathBuf};

use cairn::event::{Event, EventKind};
use cairn::journal::{encode_record, encode_snapshot};
use cairn::outcome::Topic;
use cairn::protocol::{
    encode_gap, encode_goodbye, encode_hello_reply, encode_notice, encode_outcome, encode_pong, encode_request,
    encode_stats_reply, encode_subscribed, encode_unsubscribed, Gap, Request, ServerHello, FLAG_MARK, FLAG_QUIET,
};
use cairn::shard::Shard;
use cairn::simulate::{Config as WorkloadConfig, Workload};
use proptest::prelude::*;

/// A property over arbitrary bytes: panics if and only if it fails.
type Property = fn(&[u8]);

/// Every fuzz target, with its property: the names are the targets' under `fuzz/`.
const TARGETS: [(&str, Property); 6] = [
    ("frames", decoders::check_request_stream),
    ("responses", decoders::check_response_stream),
    ("journal_record", decoders::check_journal_segment),
    ("snapshot", decoders::check_snapshot),
    ("events", check_events),
    ("leaderboard", leaderboard::check_leaderboard_bytes),
];

fn check_events(bytes: &[u8]) {
    if let Err(why) = harness::check_case_bytes(bytes) {
        panic!("{why}");
    }
}

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target)
}

/// The committed seeds of `target`, sorted by name.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = seeds_dir(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    paths.sort();
    paths.iter().map(|path| std::fs::read(path).expect("a seed file")).collect()
}

/// Every committed seed of every target passes its property, and there are some.
#[test]
fn every_committed_seed_passes() {
    for (target, check) in TARGETS {
        let seeds = seeds(target);
        assert!(seeds.len() >= 3, "{target} has {} seeds", seeds.len());
        for seed in &seeds {
            check(seed);
        }
    }
}

/// Arbitrary bytes, mostly short, sometimes a few kilobytes.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => prop::collection::vec(any::<u8>(), 0..64), 1 => prop::collection::vec(any::<u8>(), 0..4096)]
}

/// A committed seed of `target` with a few bytes overwritten, inserted or cut: most of it
/// still well-formed, so the decoders get past their first checks.
fn mutated_seed(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds(target);
    let edit = (0..3u8, any::<prop::sample::Index>(), any::<u8>());
    (prop::sample::select(seeds), prop::collection::vec(edit, 1..4)).prop_map(|(mut seed, edits)| {
        for (kind, at, byte) in edits {
            let index = at.index(seed.len() + 1);
            match kind {
                0 if index < seed.len() => seed[index] = byte,
                1 => seed.insert(index, byte),
                _ => seed.truncate(index),
            }
        }
        seed
    })
}

proptest! {
    #[test]
    fn frames_of_arbitrary_bytes(bytes in bytes()) {
        decoders::check_request_stream(&bytes);
    }

    #[test]
    fn frames_of_mutated_seeds(bytes in mutated_seed("frames")) {
        decoders::check_request_stream(&bytes);
    }

    #[test]
    fn responses_of_arbitrary_bytes(bytes in bytes()) {
        decoders::check_response_stream(&bytes);
    }

    #[test]
    fn responses_of_mutated_seeds(bytes in mutated_seed("responses")) {
        decoders::check_response_stream(&bytes);
    }

    #[test]
    fn journal_records_of_arbitrary_bytes(bytes in bytes()) {
        decoders::check_journal_segment(&bytes);
    }

    #[test]
    fn journal_records_of_mutated_seeds(bytes in mutated_seed("journal_record")) {
        decoders::check_journal_segment(&bytes);
    }

    #[test]
    fn snapshots_of_arbitrary_bytes(bytes in bytes()) {
        decoders::check_snapshot(&bytes);
    }

    #[test]
    fn snapshots_of_mutated_seeds(bytes in mutated_seed("snapshot")) {
        decoders::check_snapshot(&bytes);
    }
}

proptest! {
    // A state-machine case runs every query after every step; a quarter of the cases
    // keeps this test as fast as the others. So does a leaderboard case, which may fill
    // thousands of keys and compares them all at the end.
    #![proptest_config(ProptestConfig { cases: cases().div_ceil(4), ..ProptestConfig::default() })]

    #[test]
    fn events_of_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(harness::check_case_bytes(&bytes).is_ok(), "{}", harness::check_case_bytes(&bytes).unwrap_err());
    }

    #[test]
    fn events_of_mutated_seeds(bytes in mutated_seed("events")) {
        prop_assert!(harness::check_case_bytes(&bytes).is_ok(), "{}", harness::check_case_bytes(&bytes).unwrap_err());
    }

    #[test]
    fn leaderboard_cases_of_arbitrary_bytes(bytes in bytes()) {
        leaderboard::check_leaderboard_bytes(&bytes);
    }

    #[test]
    fn leaderboard_cases_of_mutated_seeds(bytes in mutated_seed("leaderboard")) {
        leaderboard::check_leaderboard_bytes(&bytes);
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(256)
}

// ---------------------------------------------------------------------------------------
// The seed corpus, from the real encoders.

/// A small simulated workload: its set-up and steady-state events with their times.
fn workload_events(seed: u64, count: usize) -> Vec<(Event, u64)> {
    let config = WorkloadConfig {
        seed,
        hunts: 2,
        players_per_hunt: 6,
        treasures_per_hunt: 5,
        hunt_size: 2_000,
        auto_discover: seed.is_multiple_of(2),
        ..WorkloadConfig::default()
    };
    let mut workload = Workload::new(config);
    let mut events = Vec::new();
    workload.setup(|event, time| events.push((*event, time)));
    events.extend((0..count).map(|_| workload.next_event()));
    events
}

/// Request streams: a session's HELLO, PING, STATS, SUBSCRIBE, UNSUBSCRIBE and the
/// events of a workload, pipelined in one stream.
fn request_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for seed in 1..=3u64 {
        let mut stream = Vec::new();
        let hello = Request::Hello { version_min: 1, version_max: 1, name: "fuzz-seed", token: &[] };
        let session = [(0, hello), (0, Request::Ping), (FLAG_MARK, Request::Stats), (0, Request::Stats)];
        let subscriptions = [(0, Request::Subscribe { hunt: 1, topics: 7 }), (0, Request::Unsubscribe { hunt: 2 })];
        for (index, (flags, request)) in session.into_iter().chain(subscriptions).enumerate() {
            encode_request(index as u32, flags, &request, &mut stream).unwrap();
        }
        for (index, (event, _)) in workload_events(seed, 40).into_iter().enumerate() {
            let flags = if event.kind() == EventKind::Move && index % 2 == 0 { FLAG_QUIET } else { 0 };
            encode_request(100 + index as u32, flags, &Request::Event(event), &mut stream).unwrap();
        }
        seeds.push(stream);
    }
    // One frame alone, and a stream cut in the middle of a frame.
    let mut ping = Vec::new();
    encode_request(7, 0, &Request::Ping, &mut ping).unwrap();
    seeds.push(ping);
    let cut = seeds[0].len() - 5;
    seeds.push(seeds[0][..cut].to_vec());
    seeds
}

/// Response streams: the replies a shard gives to a workload's events, its pushes, and
/// the session replies.
fn response_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for seed in 1..=3u64 {
        let mut stream = Vec::new();
        let hello = ServerHello {
            version: 1,
            shard_count: 2,
            frame_size_max: 65_536,
            top_count_max: 1_000,
            around_radius_max: 100,
            subscriptions_max: 64,
        };
        encode_hello_reply(1, &hello, &mut stream);
        encode_pong(2, &mut stream);
        encode_stats_reply(3, "{\"shards\":[]}", &mut stream).unwrap();
        encode_subscribed(4, &[1, 2, 3], &mut stream);
        encode_unsubscribed(5, &mut stream);
        let mut shard = Shard::new();
        let events = workload_events(seed, 40);
        let queries = [Event::Top { hunt: 1, count: 10 }, Event::Around { hunt: 1, player: 2, radius: 2 }];
        let queries = queries.into_iter().map(|event| (event, events.last().unwrap().1));
        for (index, (event, time)) in events.clone().into_iter().chain(queries).enumerate() {
            let outcome = shard.apply(&event, time);
            encode_outcome(100 + index as u32, event.kind(), &outcome, &mut stream);
            for notice in shard.notices() {
                encode_notice(notice, &mut stream);
            }
        }
        encode_gap(&Gap { hunt: 1, topic: Topic::Top, first: 3, last: 9 }, &mut stream);
        encode_goodbye(7, &"shutting down", &mut stream);
        seeds.push(stream);
    }
    seeds
}

/// Journal segments: a workload's mutations as records.
fn journal_seeds() -> Vec<Vec<u8>> {
    (1..=3u64)
        .map(|seed| {
            let mut segment = Vec::new();
            let mutations = workload_events(seed, 60).into_iter().filter(|(event, _)| event.is_mutation());
            for (index, (event, time)) in mutations.enumerate() {
                encode_record(index as u64 + 1, time, &event, &mut segment);
            }
            segment
        })
        .collect()
}

/// Snapshots of a shard after a workload, and of an empty shard.
fn snapshot_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![encode_snapshot(&Shard::new(), 0, 0)];
    for seed in 1..=3u64 {
        let mut shard = Shard::new();
        let events = workload_events(seed, 60);
        for (event, time) in &events {
            shard.apply(event, *time);
        }
        let last_time = events.last().map_or(0, |(_, time)| *time);
        seeds.push(encode_snapshot(&shard, events.len() as u64, last_time));
    }
    seeds
}

/// Every seed the encoders make passes its property; with `CAIRN_FUZZ_SEEDS=DIR` they
/// are written to `DIR/TARGET/seed-N` (the committed corpus is `fuzz/seeds`).
#[test]
fn write_seeds() {
    let out = std::env::var_os("CAIRN_FUZZ_SEEDS").map(PathBuf::from);
    let made: [(&str, Vec<Vec<u8>>); 4] = [
        ("frames", request_seeds()),
        ("responses", response_seeds()),
        ("journal_record", journal_seeds()),
        ("snapshot", snapshot_seeds()),
    ];
    for (target, seeds) in made {
        let check = TARGETS.iter().find(|(name, _)| *name == target).expect("a target").1;
        for (index, seed) in seeds.iter().enumerate() {
            check(seed);
            if let Some(out) = &out {
                let dir = out.join(target);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(format!("seed-{index}")), seed).unwrap();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// What the fuzzers found, kept as regressions (the inputs are also committed seeds).

/// Seals the committed snapshot seed `name` (so the checksum passes and the loader's
/// checks are reached) and checks that loading it is refused with an error naming `why`.
fn assert_sealed_snapshot_refused(name: &str, why: &str) {
    let mut bytes = std::fs::read(seeds_dir("snapshot").join(name)).unwrap();
    decoders::seal_snapshot(&mut bytes);
    let error = cairn::journal::decode_snapshot(&bytes).map(|snapshot| snapshot.seq).unwrap_err();
    assert!(error.contains(why), "{name}: {error}");
}

/// Found by the `snapshot` target: a 1,241-byte snapshot whose live treasure claims a
/// capacity of billions made the loader reserve a claim table of that size (out of
/// memory). The loader now checks a treasure against the limits `Hunt::place` enforces.
#[test]
fn a_snapshot_treasure_over_the_capacity_limit_is_refused() {
    assert_sealed_snapshot_refused("regression-capacity", "capacity");
}

/// Found by the `snapshot` target once the capacity was checked: a snapshot whose player
/// stood outside the coordinate range loaded, and the next HINT for that player hit the
/// grid's coordinate assertion (a panic on a shard thread). The loader now refuses it.
#[test]
fn a_snapshot_player_outside_the_coordinate_range_is_refused() {
    assert_sealed_snapshot_refused("regression-player-position", "coordinate range");
}

/// Found by the `snapshot` target after the two above: a snapshot whose topic sequence
/// number was at `u64::MAX` loaded, and the next notice overflowed it (a panic with
/// overflow checks, a wrapped, no longer gapless sequence without). The loader now
/// refuses sequences above 2^63.
#[test]
fn a_snapshot_topic_sequence_near_overflow_is_refused() {
    assert_sealed_snapshot_refused("regression-topic-sequence", "topic sequence");
}

/// Found by the `snapshot` target right after the three above: a snapshot whose player
/// had banked a travel budget near `u64::MAX` loaded, and the player's next move under a
/// speed limit overflowed adding the travel earned since. A move never banks more than
/// the hunt's burst allowance, so the loader now refuses more.
#[test]
fn a_snapshot_travel_budget_above_the_hunt_maximum_is_refused() {
    assert_sealed_snapshot_refused("regression-travel-budget", "travel budget");
}

/// Found by the `snapshot` target in a re-run after the three above: a snapshot whose
/// player had made `u32::MAX` claims loaded (a count of past claims has no bound the
/// loader could check: removing a treasure takes its claims out of the claim table, not
/// out of the players' counts), and the player's next award overflowed the count: a panic
/// with overflow checks, a count wrapped to 0 without, which would lift a per-player claim
/// limit. The count now saturates, as it would on the live path after 2^32 awards.
#[test]
fn a_player_at_the_largest_claim_count_stays_there_when_awarded() {
    let bytes = std::fs::read(seeds_dir("snapshot").join("regression-player-claims")).unwrap();
    decoders::check_snapshot(&bytes);
    let mut bytes = bytes;
    decoders::seal_snapshot(&mut bytes);
    let mut shard = cairn::journal::decode_snapshot(&bytes).expect("the sealed input loads").shard;
    let hunt = u32::from_le_bytes(bytes[cairn::journal::SNAPSHOT_HEADER_SIZE..][..4].try_into().unwrap());
    let claims = |shard: &mut Shard, player| match shard.apply(&Event::Rank { hunt, player }, 0) {
        cairn::outcome::Outcome::Standing(standing) => Some(standing.claims),
        _ => None,
    };
    let saturated: Vec<u32> = (1..=3).filter(|&player| claims(&mut shard, player) == Some(u32::MAX)).collect();
    assert!(!saturated.is_empty(), "the regression input holds a player at u32::MAX claims");
    let time = 2_000_000_000_000_000;
    let mut awarded = 0;
    for &player in &saturated {
        let position = cairn::event::Position::new(0, 0);
        let event = Event::Move { hunt, player, seq: u32::MAX - 1, position };
        if let cairn::outcome::Outcome::Moved { claims: won } = shard.apply(&event, time) {
            awarded += won.len();
        }
        assert_eq!(claims(&mut shard, player), Some(u32::MAX), "player {player}'s claim count moved off the maximum");
    }
    assert!(awarded > 0, "the regression input awards a treasure to a saturated player");
}
