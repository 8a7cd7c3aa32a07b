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
//! Run: `cargo bench --bench leaderboard -- --warm-up-time 1 --measurement-time 3`.

// `criterion_group!` defines a public function it cannot document.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use cairn::leaderboard::{Key, Leaderboard};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};

/// Initial scores are drawn below this, in points. At a million players the scores are
/// about one point apart, so an update usually moves a player past tens of others.
const SCORE_INITIAL_MAX: u64 = 1_000_000;

/// Largest score delta of one update, in points; deltas are uniform in `1..=` this.
const SCORE_DELTA_MAX: u64 = 100;

/// Key counts benchmarked.
const SIZES: [u32; 3] = [1_000, 100_000, 1_000_000];

/// Above this many keys the naive `Vec` moves megabytes per update, so its benchmarks take
/// few samples to keep the whole run within a few minutes.
const NAIVE_SLOW_SIZE_MIN: u32 = 100_000;

/// A tiny deterministic generator (splitmix64), so every run replays the same workload.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

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
    random: SplitMix,
    now_us: u64,
}

impl Workload {
    fn new(players: u32) -> Workload {
        let mut random = SplitMix(0x5EED ^ u64::from(players));
        let current = (0..players)
            .map(|player| Key {
                score: random.below(SCORE_INITIAL_MAX) as i64,
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

fn bench_board<B: Board>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    board: &mut B,
    workload: &mut Workload,
) {
    let len = workload.current.len() as u32;
    group.bench_function(BenchmarkId::new("update_with_rank", name), |b| {
        b.iter(|| {
            let (old, new) = workload.update();
            black_box(board.update(&old, new))
        })
    });
    group.bench_function(BenchmarkId::new("rank", name), |b| {
        b.iter(|| {
            let player = workload.player();
            black_box(board.rank(&workload.current[player]))
        })
    });
    group.bench_function(BenchmarkId::new("top_10", name), |b| {
        b.iter(|| {
            let mut score_sum = 0i64;
            board.for_each_from(1, 10, |_, key| score_sum += key.score);
            black_box(score_sum)
        })
    });
    group.bench_function(BenchmarkId::new("around_player", name), |b| {
        b.iter(|| {
            let player = workload.player();
            let rank = board.rank(&workload.current[player]).expect("player present");
            let mut score_sum = 0i64;
            board.for_each_from(rank.saturating_sub(5).max(1), 11, |_, key| score_sum += key.score);
            black_box(score_sum)
        })
    });
    assert_eq!(board.rank(&workload.current[0]).map(|rank| rank <= len), Some(true));
}

fn leaderboard(c: &mut Criterion) {
    for &size in &SIZES {
        let mut group = c.benchmark_group(format!("leaderboard/{size}"));
        group.throughput(Throughput::Elements(1));

        let mut workload = Workload::new(size);
        let mut tree = Leaderboard::new();
        tree.reserve(size as usize);
        for key in &workload.current {
            tree.insert(*key);
        }
        bench_board(&mut group, "tree", &mut tree, &mut workload);

        if size >= NAIVE_SLOW_SIZE_MIN {
            group.sample_size(10);
        }
        let mut workload = Workload::new(size);
        let mut keys = workload.current.clone();
        keys.sort_unstable();
        let mut naive = Naive { keys };
        bench_board(&mut group, "naive", &mut naive, &mut workload);
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = leaderboard
}
criterion_main!(benches);
