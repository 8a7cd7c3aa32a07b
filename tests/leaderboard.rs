//! Model-based tests of the leaderboard's public API, knowing nothing of its internals:
//! random operation sequences (`props/leaderboard.rs` runs them against a `BTreeSet<Key>`
//! reference) on a board never reserved, on boards reserved for 5,000 to 20,000 keys
//! first, and on a board that reserves one more key before every insert while it grows
//! past 9,000 keys, as the engine does at each join; every score regime a leaderboard
//! meets (hundreds of keys on a few scores, a few keys per score, scores spread over
//! -3,000..20,000, the ends of `i64`, ±2^62) and updates by game-sized and by huge steps.
//! Then hand-written cases at ties and reserve boundaries, and a seeded large test: a
//! board of 200,000 keys reserved up front and 2,000,000 game-like updates, every
//! returned rank checked against an order-statistic reference.
//!
//! `CAIRN_FUZZ_SEEDS=$PWD/fuzz/seeds cargo test --release --test leaderboard drawn_cases`
//! writes the `leaderboard` fuzz target's seed corpus from the strategies' cases.

// `check_leaderboard_bytes`, the fuzz target's entry, is run by `tests/fuzz_props.rs`.
#[allow(dead_code)]
#[path = "props/leaderboard.rs"]
mod props;

use std::ops::RangeInclusive;

use cairn::leaderboard::{Key, Leaderboard};
use cairn::rng::Rng;
use props::{Fill, Op, Runner, Scores, SortedBlocks, Time, DRAIN_MAX, EXTREMES, FILL_MAX, RESERVE_MAX};
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::TestRunner;

// ---------------------------------------------------------------------------------------
// Strategies.

/// Where the scores of one case come from.
#[derive(Clone, Copy, Debug)]
enum Regime {
    /// Scores `base..base + values`, 1 to 5 values: hundreds of keys on each.
    Ties { base: i64, values: u32 },
    /// Scores `base..base + width`, fills of 3 to 6 times `width` keys.
    Band { base: i64, width: u32 },
    /// Scores in -3,000..20,000: below, inside and above a window around 0.
    Spread,
    /// The ends of `i64` and ±2^62.
    Extremes,
    /// All of the above and any `i64`.
    Mixed,
}

/// Scores where a bound may hide: the ends of the score window the planned leaderboard
/// keeps when reserved (R the power of two at or above twice the keys reserved for,
/// [-R/8, 7R/8), for R = 2^13..2^17), each with a neighbour on either side, and a few
/// others. They only make these scores frequent; every test judges the board by its
/// public API alone.
fn edge_scores() -> Vec<i64> {
    let mut edges = vec![-3_000, -1, 0, 1, 8_191, 8_192, 20_000];
    for shift in 13..=17 {
        let range = 1i64 << shift;
        for edge in [-range / 8, 7 * range / 8] {
            edges.extend([edge - 1, edge, edge + 1]);
        }
    }
    edges
}

fn base_score() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => prop::sample::select(edge_scores()),
        3 => -3_000i64..20_000,
        1 => prop::sample::select(EXTREMES.to_vec()),
        1 => any::<i64>(),
    ]
}

fn regime() -> impl Strategy<Value = Regime> {
    prop_oneof![
        2 => (base_score(), 1u32..=5).prop_map(|(base, values)| Regime::Ties { base, values }),
        2 => (base_score(), 50u32..=680).prop_map(|(base, width)| Regime::Band { base, width }),
        2 => Just(Regime::Spread),
        1 => Just(Regime::Extremes),
        2 => Just(Regime::Mixed),
    ]
}

/// A score of the regime, for single keys.
fn score(regime: Regime) -> BoxedStrategy<i64> {
    let spread = -3_000i64..20_000;
    let extreme = prop::sample::select(EXTREMES.to_vec());
    match regime {
        Regime::Ties { base, values } => (0..i64::from(values)).prop_map(move |at| base.saturating_add(at)).boxed(),
        Regime::Band { base, width } => (0..i64::from(width)).prop_map(move |at| base.saturating_add(at)).boxed(),
        Regime::Spread => spread.boxed(),
        Regime::Extremes => extreme.boxed(),
        Regime::Mixed => prop_oneof![
            2 => prop::sample::select(edge_scores()),
            2 => spread,
            1 => 0i64..5,
            1 => extreme,
            1 => any::<i64>(),
        ]
        .boxed(),
    }
}

/// A `reached_at`: mostly 0 to 2, so equal scores often have equal times and the player
/// decides.
fn reached_at() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 0u64..3, 1 => any::<u64>()]
}

fn key(regime: Regime) -> BoxedStrategy<Key> {
    let player = prop_oneof![1 => 0u32..64, 3 => any::<u32>()];
    (score(regime), reached_at(), player)
        .prop_map(|(score, reached_at, player)| Key { score, reached_at, player })
        .boxed()
}

/// The times of a fill: all equal (the player decides), a few, or any.
fn fill_times() -> impl Strategy<Value = u32> {
    prop_oneof![2 => Just(1u32), 1 => 2u32..8, 1 => any::<u32>()]
}

/// A fill of the regime with a count in `count` (Band fills take 3 to 6 keys per score of
/// the band, brought into `count`).
fn fill(regime: Regime, count: RangeInclusive<u32>) -> BoxedStrategy<Fill> {
    let scores = match regime {
        Regime::Ties { base, values } => Just(Scores::Range { low: base, width: values }).boxed(),
        Regime::Band { base, width } => Just(Scores::Range { low: base, width }).boxed(),
        Regime::Spread => Just(Scores::Range { low: -3_000, width: 23_000 }).boxed(),
        Regime::Extremes => Just(Scores::Extremes).boxed(),
        Regime::Mixed => prop_oneof![
            (base_score(), 1u32..=5).prop_map(|(low, width)| Scores::Range { low, width }),
            (base_score(), 1u32..=30_000).prop_map(|(low, width)| Scores::Range { low, width }),
            Just(Scores::Extremes),
        ]
        .boxed(),
    };
    let count = match regime {
        Regime::Band { width, .. } => {
            (3u32..=6).prop_map(move |per_score| (width * per_score).clamp(*count.start(), *count.end())).boxed()
        }
        _ => count.boxed(),
    };
    (count, scores, fill_times(), any::<u64>())
        .prop_map(|(count, scores, times, seed)| Fill { count, scores, times, seed })
        .boxed()
}

/// A score change: mostly +1..100 as in a game, sometimes down, none, across a window
/// (tens of thousands) or huge (saturating at the ends of `i64`).
fn delta() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => 1i64..=100,
        2 => -100i64..=-1,
        1 => Just(0i64),
        2 => -70_000i64..=70_000,
        1 => prop::sample::select(vec![i64::MIN, -(1 << 62), -(1 << 40), 1 << 40, 1 << 62, i64::MAX]),
        1 => any::<i64>(),
    ]
}

fn time() -> impl Strategy<Value = Time> {
    prop_oneof![4 => Just(Time::Now), 1 => Just(Time::Keep), 1 => (0u64..3).prop_map(Time::At)]
}

fn reserve_amount() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..=16, 4_000u32..=4_200, 5_000u32..=20_000, 20_000..=RESERVE_MAX]
}

/// What a case's operations may do besides inserting, removing, updating and asking.
#[derive(Clone, Copy)]
enum Extra {
    /// Reserve and drain too.
    ReserveAndDrain,
    /// Drain too (never reserve).
    Drain,
    /// Neither (the growing cases, which must grow).
    Neither,
}

/// One operation of a case in `regime`.
fn op(regime: Regime, extra: Extra) -> BoxedStrategy<Op> {
    let pick = any::<u32>;
    let small_offset = -2i8..=2;
    let probe = prop_oneof![
        1 => pick().prop_map(|pick| Op::Probe { pick, score: 0, time: 0, player: 0 }),
        3 => (pick(), small_offset.clone(), small_offset.clone(), small_offset)
            .prop_map(|(pick, score, time, player)| Op::Probe { pick, score, time, player }),
    ];
    let window_count = prop_oneof![3 => 0u32..=64, 1 => Just(u32::MAX), 1 => any::<u32>()];
    let drain_count = prop_oneof![4 => 1u32..=300, 1 => 300u32..=2_000];
    let mut choices: Vec<(u32, BoxedStrategy<Op>)> = vec![
        (6, key(regime).prop_map(Op::Insert).boxed()),
        (2, pick().prop_map(|pick| Op::Remove { pick }).boxed()),
        (10, (pick(), delta(), time()).prop_map(|(pick, delta, time)| Op::Update { pick, delta, time }).boxed()),
        (1, key(regime).prop_map(Op::Rank).boxed()),
        (3, probe.boxed()),
        (2, pick().prop_map(|pick| Op::Get { pick }).boxed()),
        (2, (pick(), window_count).prop_map(|(pick, count)| Op::Window { pick, count }).boxed()),
        (1, fill(regime, 1..=500).prop_map(Op::Fill).boxed()),
        (1, Just(Op::Check).boxed()),
    ];
    if matches!(extra, Extra::ReserveAndDrain) {
        choices.push((1, reserve_amount().prop_map(Op::Reserve).boxed()));
    }
    if matches!(extra, Extra::ReserveAndDrain | Extra::Drain) {
        choices.push((1, (pick(), drain_count).prop_map(|(pick, count)| Op::Drain { pick, count }).boxed()));
    }
    Union::new_weighted(choices).boxed()
}

/// A board never reserved: a fill of up to 3,000 keys, then up to 400 operations.
fn unreserved_case() -> impl Strategy<Value = Vec<Op>> {
    regime().prop_flat_map(|regime| {
        (fill(regime, 0..=3_000), prop::collection::vec(op(regime, Extra::Drain), 1..400)).prop_map(|(fill, ops)| {
            let mut case = vec![Op::Fill(fill)];
            case.extend(ops);
            case
        })
    })
}

/// A board reserved for 5,000 to 20,000 keys first, filled with up to 4,095, then up to
/// 400 operations among which more reserves (some raising the reserved size).
fn reserved_case() -> impl Strategy<Value = Vec<Op>> {
    regime().prop_flat_map(|regime| {
        (
            5_000u32..=20_000,
            fill(regime, 0..=FILL_MAX),
            prop::collection::vec(op(regime, Extra::ReserveAndDrain), 1..400),
        )
            .prop_map(|(reserve, fill, ops)| {
                let mut case = vec![Op::Reserve(reserve), Op::Fill(fill)];
                case.extend(ops);
                case
            })
    })
}

/// Chunks of a growing case, each a fill of 850 to 1,000 keys and up to 30 operations
/// that do not drain, so the board passes 9,000 keys (and with them the steps at 4,096
/// and 8,192 keys) even after removals.
const GROWING_CHUNKS: usize = 11;

/// A board that reserves before every insert (run with `Runner::new(true)`): grown by
/// fills with operations between them, then drained of 1,000 to 4,095 keys and grown by
/// two more chunks.
fn growing_case() -> impl Strategy<Value = Vec<Op>> {
    regime().prop_flat_map(|regime| {
        let chunk = (fill(regime, 850..=1_000), prop::collection::vec(op(regime, Extra::Neither), 0..30));
        let drain = (any::<u32>(), 1_000u32..=DRAIN_MAX).prop_map(|(pick, count)| Op::Drain { pick, count });
        (prop::collection::vec(chunk.clone(), GROWING_CHUNKS), drain, prop::collection::vec(chunk, 2)).prop_map(
            |(growth, drain, regrowth)| {
                let chunk_ops = |(fill, ops): (Fill, Vec<Op>)| std::iter::once(Op::Fill(fill)).chain(ops);
                let mut case: Vec<Op> = growth.into_iter().flat_map(chunk_ops).collect();
                case.push(drain);
                case.extend(regrowth.into_iter().flat_map(chunk_ops));
                case
            },
        )
    })
}

// ---------------------------------------------------------------------------------------
// The model tests.

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn a_board_never_reserved_agrees_with_the_model(ops in unreserved_case()) {
        Runner::new(false).run(&ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn a_board_reserved_first_agrees_with_the_model(ops in reserved_case()) {
        let mut runner = Runner::new(false);
        runner.run(&ops);
        prop_assert!(runner.reserved_peak() >= 5_000);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn a_board_reserving_before_every_insert_agrees_with_the_model(ops in growing_case()) {
        let mut runner = Runner::new(true);
        runner.run(&ops);
        prop_assert!(runner.len_peak() >= 9_000, "the board peaked at {} keys", runner.len_peak());
    }
}

// ---------------------------------------------------------------------------------------
// The byte format of cases, which the fuzz target speaks.

/// Every case the three strategies draw encodes to bytes that decode back to it, so the
/// fuzzer's seeds (written from these cases) start where these tests' cases are. With
/// `CAIRN_FUZZ_SEEDS=DIR` set, the first cases of each strategy are also written to
/// `DIR/leaderboard/` as the `leaderboard` target's seed corpus (see `fuzz/README.md`).
#[test]
fn drawn_cases_round_trip_through_the_byte_format() {
    let seeds = std::env::var_os("CAIRN_FUZZ_SEEDS").map(|dir| std::path::PathBuf::from(dir).join("leaderboard"));
    let strategies: [(&str, bool, BoxedStrategy<Vec<Op>>, usize); 3] = [
        ("unreserved", false, unreserved_case().boxed(), 3),
        ("reserved", false, reserved_case().boxed(), 4),
        ("growing", true, growing_case().boxed(), 2),
    ];
    let mut runner = TestRunner::deterministic();
    for (name, reserve_each_insert, strategy, seed_count) in strategies {
        for index in 0..16 {
            let ops = strategy.new_tree(&mut runner).expect("a case").current();
            let bytes = props::encode_case(reserve_each_insert, &ops);
            assert_eq!(bytes[0] & 1 == 1, reserve_each_insert, "{name} case {index}: mode byte");
            let decoded = props::decode_ops(&bytes[1..]);
            let seed_dir = seeds.as_deref().filter(|_| index < seed_count);
            props::bytes::check_round_trip(name, index, &ops, &decoded, &bytes, seed_dir);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hand-written cases at the boundaries of ties and of reserve.

/// A spread of 300 keys with equal times, the background of the hand-written cases.
const BACKGROUND: Op =
    Op::Fill(Fill { count: 300, scores: Scores::Range { low: -3_000, width: 23_000 }, times: 1, seed: 1 });

/// One score gains one to six keys (equal times, so the players order them), inserted
/// in both orders, which then leave front to back, back to front and from the middle on,
/// on boards never reserved and reserved for 5,000 and 20,000 keys, at every edge score
/// and at the ends of `i64`.
#[test]
fn a_score_gains_up_to_six_keys_and_loses_them_in_every_order() {
    let mut scores = edge_scores();
    scores.extend([i64::MIN, -(1 << 62), 1 << 62, i64::MAX]);
    for reserve in [0, 5_000, 20_000] {
        for &score in &scores {
            let mut runner = Runner::new(false);
            runner.apply(&Op::Reserve(reserve));
            runner.apply(&BACKGROUND);
            for count in 1..=6usize {
                let keys: Vec<Key> =
                    (0..count as u32).map(|at| Key { score, reached_at: 0, player: 1_000 + at }).collect();
                let forward: Vec<usize> = (0..count).collect();
                let backward: Vec<usize> = (0..count).rev().collect();
                let from_middle: Vec<usize> = (0..count).map(|at| (count / 2 + at) % count).collect();
                for inserts in [&forward, &backward] {
                    for removes in [&forward, &backward, &from_middle] {
                        for &at in inserts {
                            runner.apply(&Op::Insert(keys[at]));
                        }
                        runner.apply(&Op::Check);
                        for &at in removes {
                            let pick = runner.position(&keys[at]);
                            runner.apply(&Op::Remove { pick });
                        }
                        runner.apply(&Op::Check);
                    }
                }
            }
        }
    }
}

/// Twelve keys on five neighbouring scores step up and down by one, so scores keep
/// passing from one key to two, three and back, at each edge score, on boards never
/// reserved and reserved for 5,000 and 20,000 keys.
#[test]
fn keys_stepping_between_neighbouring_scores_keep_their_ranks() {
    let mut random = Rng::new(5);
    for reserve in [0, 5_000, 20_000] {
        for base in [-2_049, -2_048, -1_025, -1_024, 0, 7_167, 7_168, 8_192, 14_335, 14_336, 57_343] {
            let mut runner = Runner::new(false);
            runner.apply(&Op::Reserve(reserve));
            runner.apply(&BACKGROUND);
            let mut keys: Vec<Key> = (0..12u32)
                .map(|at| Key { score: base + i64::from(at % 5), reached_at: 0, player: 1_000 + at })
                .collect();
            for key in &keys {
                runner.apply(&Op::Insert(*key));
            }
            for _ in 0..400 {
                let at = random.below(keys.len() as u64) as usize;
                let old = keys[at];
                let delta = if old.score == base || (old.score < base + 4 && random.percent(50)) { 1 } else { -1 };
                let (time, reached_at) =
                    if random.percent(50) { (Time::Keep, old.reached_at) } else { (Time::At(1), 1) };
                runner.apply(&Op::Update { pick: runner.position(&old), delta, time });
                keys[at] = Key { score: old.score + delta, reached_at, ..old };
                assert!(runner.position(&keys[at]) < runner.len() as u32, "{:?} moved", keys[at]);
            }
            runner.apply(&Op::Check);
        }
    }
}

/// Boards whose keys sit around 0, far above, far below and near `i64::MAX`, with a few
/// keys and with hundreds on most scores, reserve step by step past 4,096 keys and up
/// to 65,536 more; every rank is compared after each reserve, and after updates across
/// tens of thousands of points and drains that follow.
#[test]
fn reserves_that_grow_keep_every_rank_wherever_the_keys_are() {
    for center in [0, 1_000_000, -50_000, 1 << 40, i64::MAX - 10_000] {
        let mut runner = Runner::new(false);
        let fills = [
            Fill { count: 3_000, scores: Scores::Range { low: center, width: 1_000 }, times: 1, seed: 2 },
            Fill { count: 500, scores: Scores::Range { low: center + 500, width: 1 }, times: 3, seed: 3 },
            Fill { count: 300, scores: Scores::Range { low: -3_000, width: 23_000 }, times: 1, seed: 4 },
        ];
        for fill in fills {
            runner.apply(&Op::Fill(fill));
        }
        let mut random = Rng::new(center as u64);
        // Totals (keys held plus reserved) around the 4,096 at which a board may change
        // how it stores keys, and around doublings of it.
        for total in [0, 4_095, 4_096, 4_097, 8_192, 8_193, 16_385, 30_000, 70_000] {
            let additional = (total as usize).saturating_sub(runner.len()) as u32;
            runner.apply(&Op::Reserve(additional));
            for _ in 0..50 {
                let (pick, delta) = (random.next_u64() as u32, random.between(-70_000, 70_000));
                runner.apply(&Op::Update { pick, delta, time: Time::Now });
            }
            runner.apply(&Op::Drain { pick: random.next_u64() as u32, count: 200 });
        }
        runner.apply(&Op::Check);
    }
}

// ---------------------------------------------------------------------------------------
// The large seeded test.

/// Players of the large test, each with one key.
const LARGE_PLAYERS: u32 = 200_000;
/// Updates of the large test.
const LARGE_UPDATES: u64 = 2_000_000;
/// Updates between two whole checks of the large test.
const LARGE_WHOLE_EVERY: u64 = 250_000;

/// A starting score for the large test: a fifth of the players 2 to 3 to a score in
/// 0..40,000 (scores fill up to six and more as they climb), a quarter spread over
/// -100,000..600,000 (below, inside and above a window of [-65,536, 458,752) that a
/// board reserved for 200,000 keys would cover), a fifth on three scores (one below that
/// window, one inside, one on its top edge), a tenth at the window's edges and the rest
/// at the extremes.
fn large_score(random: &mut Rng) -> i64 {
    match random.below(20) {
        0..=3 => random.between(0, 39_999),
        4..=8 => random.between(-100_000, 600_000),
        9..=12 => [-70_000, 1_000, 458_751][random.below(3) as usize],
        13..=16 => [-65_537, -65_536, -65_535, 458_751, 458_752, 458_753][random.below(6) as usize],
        _ => EXTREMES[random.below(EXTREMES.len() as u64) as usize],
    }
}

/// Compares the whole board with the sorted keys and the block reference: the walk, the
/// blocks, `rank` and `get` of every 97th key, the ranks past the end, the invariants.
fn check_large_whole(board: &Leaderboard, keys: &[Key], blocks: &SortedBlocks, context: &str) {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    assert!(blocks.iter().eq(sorted.iter()), "{context}: the block reference differs from the sorted keys");
    assert_eq!(board.len() as usize, sorted.len(), "{context}: len");
    let mut walked = 0usize;
    board.for_each_from(1, u32::MAX, |rank, key| {
        assert_eq!(rank as usize, walked + 1, "{context}: walk rank");
        assert_eq!(Some(key), sorted.get(walked), "{context}: key at rank {rank}");
        walked += 1;
    });
    assert_eq!(walked, sorted.len(), "{context}: keys walked");
    for (index, key) in sorted.iter().enumerate().step_by(97) {
        assert_eq!(board.rank(key), Some(index as u32 + 1), "{context}: rank of {key:?}");
        assert_eq!(board.get(index as u32 + 1), Some(*key), "{context}: get({})", index + 1);
    }
    assert_eq!(board.get(sorted.len() as u32 + 1), None, "{context}: get past the end");
    board.check_invariants();
}

/// A board reserved for 200,000 keys up front, filled, then 2,000,000 game-like updates:
/// a random player gains 1 to 100 points at a time later than all before. Every insert's
/// and every update's ranks are compared with the block reference (`SortedBlocks`: a
/// `BTreeSet` counts the keys before one in about 100 µs at this size, which over
/// 2,000,000 updates would be minutes; the blocks take about a microsecond, and are
/// compared with the sorted keys at every whole check); every 1,024 updates a
/// random player's rank, a random rank's key and an absent key next to a present one are
/// too; every 250,000 the whole board.
#[test]
fn two_million_game_updates_on_a_board_reserved_for_200_000_keys() {
    let mut random = Rng::new(0x1ead_e7b0_a7d5);
    let mut board = Leaderboard::new();
    board.reserve(LARGE_PLAYERS as usize);
    let mut blocks = SortedBlocks::new();
    let mut keys: Vec<Key> = Vec::with_capacity(LARGE_PLAYERS as usize);
    for player in 0..LARGE_PLAYERS {
        let key = Key { score: large_score(&mut random), reached_at: random.below(4), player };
        assert_eq!(board.insert(key), blocks.insert(key), "insert {key:?}");
        keys.push(key);
    }
    check_large_whole(&board, &keys, &blocks, "after the inserts");
    for update in 0..LARGE_UPDATES {
        let player = random.below(u64::from(LARGE_PLAYERS)) as usize;
        let old = keys[player];
        let new =
            Key { score: old.score.saturating_add(random.between(1, 100)), reached_at: (1 << 32) + update, ..old };
        let expect = (blocks.remove(&old), blocks.insert(new));
        assert_eq!(board.update(&old, new), expect, "update {update}: {old:?} to {new:?}");
        keys[player] = new;
        if update % 1_024 == 0 {
            let key = keys[random.below(u64::from(LARGE_PLAYERS)) as usize];
            let rank = blocks.rank(&key);
            assert_eq!(board.rank(&key), rank, "update {update}: rank of {key:?}");
            let near = Key { reached_at: key.reached_at + 1, ..key };
            assert_eq!(board.rank(&near), blocks.rank(&near), "update {update}: rank of {near:?}");
            let rank = 1 + random.below(u64::from(LARGE_PLAYERS)) as u32;
            let expect = blocks.nth(rank as usize - 1);
            assert_eq!(board.get(rank), expect, "update {update}: get({rank})");
        }
        if (update + 1) % LARGE_WHOLE_EVERY == 0 {
            check_large_whole(&board, &keys, &blocks, &format!("after {} updates", update + 1));
        }
    }
}
