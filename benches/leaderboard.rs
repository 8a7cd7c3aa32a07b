//! Benchmarks of the leaderboard (`cairn::leaderboard`) against the naive structure it
//! replaces, a sorted `Vec<Key>`, on the same workload in the same run: the machine's
//! timings drift, so only figures from one run are compared with each other.
//!
//! The workload is what a live hunt does: players start with scores spread uniformly over
//! `0..SCORE_INITIAL_MAX`, and each update picks a random player, adds a small positive
//! delta (a treasure's worth) and stamps a strictly increasing event time. Queries look up
//! a random player's rank, the top ten, and the eleven ranks around a random player. Every
//! benchmark counts one operation (an update, a lookup or a whole list query) as one
//! element, so criterion's elements/s reads as operations per second.
//!
//! The timed loops read the thread's CPU-time clock, not the wall clock: the bench machine
//! is shared, and on a loaded machine the wall clock also counts the time the bench
//! thread spends descheduled, which says nothing about the leaderboard. The goal is
//! operations per second on one core, which is what CPU time measures.
//! `CAIRN_BENCH_CLOCK=wall` times with the wall clock instead (on an idle machine the two
//! agree). Updates are generated in chunks outside the timer, as `benches/engine.rs` does
//! with events, so the random read of a player's current key is not counted as the
//! leaderboard's cost.
//!
//! The rows named `tree` measure `Leaderboard` itself: since 2026-11-27 a score window in
//! front of the counted B+tree (from 4,096 reserved keys on). The name is kept so figures
//! compare with earlier sessions'.
//!
//! Run: `cargo bench --bench leaderboard -- --warm-up-time 1 --measurement-time 3`.

// `criterion_group!` defines a public function it cannot document.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use cairn::leaderboard::{Key, Leaderboard};
use cairn::rng::Rng;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};

#[path = "common/clock.rs"]
mod clock;
use clock::Clock;

/// Initial scores are drawn below this, in points. At a million players the scores are
/// about one point apart, so an update usually moves a player past tens of others.
const SCORE_INITIAL_MAX: u64 = 1_000_000;

/// Largest score delta of one update, in points; deltas are uniform in `1..=` this.
const SCORE_DELTA_MAX: u64 = 100;

/// Key counts benchmarked.
const SIZES: [u32; 3] = [1_000, 100_000, 1_000_000];

/// Players of the crowded board, and the scores they start on (`0..CROWDED_SCORES`).
const CROWDED_PLAYERS: u32 = 1_000_000;
const CROWDED_SCORES: u64 = 10_000;

/// Above this many keys the naive `Vec` moves megabytes per update, so its benchmarks take
/// few samples to keep the whole run within a few minutes.
const NAIVE_SLOW_SIZE_MIN: u32 = 100_000;

/// Updates generated per chunk, outside the timer (64 Ki updates of 48 bytes: 3 MiB).
const CHUNK_UPDATES: usize = 1 << 16;

/// The operations benchmarked, so both structures run the same code around them.
trait Board {
    fn update(&mut self, old: &Key, new: Key) -> (u32, u32);
    fn rank(&self, key: &Key) -> Option<u32>;
    fn for_each_from(&self, first: u32, count: u32, f: impl FnMut(u32, &Key));
}

impl Board for Leaderboard {
    fn update(&mut self, old: &Key, new: Key) -> (u32, u32) {
        Leaderboard::update(self, old, new)
    }
    fn rank(&self, key: &Key) -> Option<u32> {
        Leaderboard::rank(self, key)
    }
    fn for_each_from(&self, first: u32, count: u32, f: impl FnMut(u32, &Key)) {
        Leaderboard::for_each_from(self, first, count, f);
    }
}

/// The naive leaderboard: keys sorted in a `Vec`, found by binary search, moved by
/// `Vec::remove` and `Vec::insert`.
struct Naive {
    keys: Vec<Key>,
}

impl Board for Naive {
    fn update(&mut self, old: &Key, new: Key) -> (u32, u32) {
        let before = self.keys.binary_search(old).expect("old key present");
        self.keys.remove(before);
        let after = self.keys.binary_search(&new).expect_err("new key absent");
        self.keys.insert(after, new);
        (before as u32 + 1, after as u32 + 1)
    }
    fn rank(&self, key: &Key) -> Option<u32> {
        self.keys.binary_search(key).ok().map(|index| index as u32 + 1)
    }
    fn for_each_from(&self, first: u32, count: u32, mut f: impl FnMut(u32, &Key)) {
        let start = (first as usize - 1).min(self.keys.len());
        let end = start.saturating_add(count as usize).min(self.keys.len());
        for (key, rank) in self.keys[start..end].iter().zip(first..) {
            f(rank, key);
        }
    }
}

/// Every player's current key, and the generator and clock that drive updates.
struct Workload {
    current: Vec<Key>,
    random: Rng,
    now_us: u64,
}

impl Workload {
    /// `players` keys with scores uniform in `0..score_initial_max`.
    fn new(players: u32, score_initial_max: u64) -> Workload {
        let mut random = Rng::new(0x5EED ^ u64::from(players));
        let current = (0..players)
            .map(|player| Key {
                score: random.below(score_initial_max) as i64,
                reached_at: random.below(1_000_000),
                player,
            })
            .collect();
        Workload { current, random, now_us: 1_000_000 }
    }

    fn player(&mut self) -> usize {
        self.random.below(self.current.len() as u64) as usize
    }

    /// The next update: a random player's current key and its successor.
    fn update(&mut self) -> (Key, Key) {
        let player = self.player();
        let old = self.current[player];
        self.now_us += 1;
        let delta = self.random.below(SCORE_DELTA_MAX) as i64 + 1;
        let new = Key { score: old.score + delta, reached_at: self.now_us, player: old.player };
        self.current[player] = new;
        (old, new)
    }
}

/// Times `iters` calls of `operation` on `clock`.
fn time_each<T>(clock: Clock, iters: u64, mut operation: impl FnMut() -> T) -> Duration {
    let start = clock.now();
    for _ in 0..iters {
        black_box(operation());
    }
    clock.now() - start
}

/// Times `iters` updates, generating them a chunk at a time with the clock stopped.
fn time_updates(
    clock: Clock,
    iters: u64,
    workload: &mut Workload,
    chunk: &mut Vec<(Key, Key)>,
    mut update: impl FnMut(&Key, Key) -> (u32, u32),
) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut remaining = iters;
    while remaining > 0 {
        let take = remaining.min(CHUNK_UPDATES as u64) as usize;
        chunk.clear();
        chunk.extend((0..take).map(|_| workload.update()));
        let start = clock.now();
        for (old, new) in chunk.iter() {
            black_box(update(old, *new));
        }
        elapsed += clock.now() - start;
        remaining -= take as u64;
    }
    elapsed
}

fn bench_board<B: Board>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    board: &mut B,
    workload: &mut Workload,
) {
    let clock = Clock::from_environment();
    let len = workload.current.len() as u32;
    let mut chunk = Vec::with_capacity(CHUNK_UPDATES);
    group.bench_function(BenchmarkId::new("update_with_rank", name), |b| {
        b.iter_custom(|iters| time_updates(clock, iters, workload, &mut chunk, |old, new| board.update(old, new)))
    });
    group.bench_function(BenchmarkId::new("rank", name), |b| {
        b.iter_custom(|iters| {
            time_each(clock, iters, || {
                let player = workload.player();
                board.rank(&workload.current[player])
            })
        })
    });
    group.bench_function(BenchmarkId::new("top_10", name), |b| {
        b.iter_custom(|iters| {
            time_each(clock, iters, || {
                let mut score_sum = 0i64;
                board.for_each_from(1, 10, |_, key| score_sum += key.score);
                score_sum
            })
        })
    });
    group.bench_function(BenchmarkId::new("around_player", name), |b| {
        b.iter_custom(|iters| {
            time_each(clock, iters, || {
                let player = workload.player();
                let rank = board.rank(&workload.current[player]).expect("player present");
                let mut score_sum = 0i64;
                board.for_each_from(rank.saturating_sub(5).max(1), 11, |_, key| score_sum += key.score);
                score_sum
            })
        })
    });
    assert_eq!(board.rank(&workload.current[0]).map(|rank| rank <= len), Some(true));
}

fn leaderboard(c: &mut Criterion) {
    println!("leaderboard benches: timed with {}", Clock::from_environment().name());
    for &size in &SIZES {
        let mut group = c.benchmark_group(format!("leaderboard/{size}"));
        group.throughput(Throughput::Elements(1));

        let mut workload = Workload::new(size, SCORE_INITIAL_MAX);
        let mut tree = filled(&workload);
        bench_board(&mut group, "tree", &mut tree, &mut workload);

        if size >= NAIVE_SLOW_SIZE_MIN {
            group.sample_size(10);
        }
        let mut workload = Workload::new(size, SCORE_INITIAL_MAX);
        let mut keys = workload.current.clone();
        keys.sort_unstable();
        let mut naive = Naive { keys };
        bench_board(&mut group, "naive", &mut naive, &mut workload);
        group.finish();
    }
    // Many players on few scores, as early in a real hunt: every score holds about a
    // hundred keys, more than a window slot holds, so the tree does the work.
    let mut group = c.benchmark_group(format!("leaderboard/{CROWDED_PLAYERS}_crowded"));
    group.throughput(Throughput::Elements(1));
    let mut workload = Workload::new(CROWDED_PLAYERS, CROWDED_SCORES);
    let mut tree = filled(&workload);
    bench_board(&mut group, "tree", &mut tree, &mut workload);
    group.finish();
}

/// A board reserved for the workload's players and holding their keys.
fn filled(workload: &Workload) -> Leaderboard {
    let mut board = Leaderboard::new();
    board.reserve(workload.current.len());
    for key in &workload.current {
        board.insert(*key);
    }
    board
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = leaderboard
}
criterion_main!(benches);
