//! Criterion benchmarks of the shard state machine: events per second of `Shard::apply`,
//! one core, no I/O.
//!
//! Every bench pre-generates its events into a chunk outside the timed loop, so the
//! generator's cost is never measured, then times only the loop that applies them.
//! Mutating events carry per-player sequence numbers, so a chunk can be applied once: when
//! it runs out the source generates the next one (untimed) from the same seeded generator,
//! which continues exactly where the shard's state is. Before timing, each bench applies
//! one chunk untimed, prints what the events did (accepted and refused, by kind) and
//! asserts that most were accepted; after timing it asserts the refusal rate of the timed
//! events themselves, because a benchmark of refusals would flatter the engine.
//!
//! Benches whose name ends in `_batch16` apply the same events the way the server does:
//! in batches of 16 (the events of one read), calling `Shard::prefetch` on each event
//! `PREFETCH_AHEAD` events before applying it, so that the cache misses of several events
//! overlap. The others apply one event after the other.
//!
//! Groups (criterion prints events/s as `elem/s`):
//! - `moves`: small steps towards a target treasure, at 1k players (1 hunt), 100k (100
//!   hunts of 1k) and 1M (100 hunts of 10k): in the simulator's hunts (no speed limit),
//!   in hunts with a speed limit, and in hunts that auto-discover.
//! - `digs`: digs only, 10 hunts of 1k players: about two thirds claim, the rest are
//!   refused as out of reach, already claimed or exhausted (each kind is checked to occur).
//! - `mixed`: the default workload mix (80% moves, 10% digs, 5% adjustments, 5% queries)
//!   at 100k players in 100 hunts; as treasures run out, more of its digs are refused.
//! - `adjust`: score adjustments (a leaderboard update that returns the rank) with one
//!   leaderboard of 1k, 100k and 1M players.
//! - `queries`: top-10, rank, around-5 and hint at 100k players in 100 hunts, on a state
//!   warmed by the mixed workload so scores differ.
//!
//! The timed loops read the thread's CPU-time clock, not the wall clock: the bench machine
//! is shared, and on a loaded machine the wall clock also counts the time the bench
//! thread spends descheduled, which says nothing about the engine. The goal is events per
//! second on one core, which is what CPU time measures. `CAIRN_BENCH_CLOCK=wall` times
//! with the wall clock instead (on an idle machine the two agree).
//!
//! Run: `cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;

#[path = "common/clock.rs"]
mod clock;
use clock::Clock;
use criterion::{black_box, BenchmarkGroup, BenchmarkId, Criterion, Throughput};

use cairn::constants::{MICROS_PER_SECOND, SPEED_BURST_US};
use cairn::event::{Coordinates, Event, HuntId, HuntOptions, HuntSpec, Micros, PointsRule, Position, TreasureSpec};
use cairn::outcome::Outcome;
use cairn::rng::Rng;
use cairn::shard::Shard;
use cairn::simulate::{Config, Workload, HUNT_ID_FIRST};

/// Events generated per chunk (1 Mi events of at most 64 bytes: 64 MiB): large enough
/// that refilling, which happens outside the timer, is rare, and small enough to sit
/// beside the 1M-player states.
const CHUNK_EVENTS: usize = 1 << 20;
const _: () = assert!(std::mem::size_of::<(Event, Micros)>() <= 64);

/// Seed of every stream: the benches measure the same events on every run.
const SEED: u64 = 1;

/// Mixed events applied before the query benches, so that scores (and so ranks) differ.
const QUERY_WARM_EVENTS: usize = 4 * CHUNK_EVENTS;

// ---------------------------------------------------------------------------------------
// Timed streams.

/// Where a bench's events come from.
trait Source {
    /// Clears `events` and fills it with the next chunk, to be applied in order to
    /// `shard` (which the source may replace with a freshly set-up one).
    fn refill(&mut self, shard: &mut Shard, events: &mut Vec<(Event, Micros)>);
}

/// A shard, its source, and the chunk being applied.
struct Stream<S> {
    source: S,
    shard: Shard,
    events: Vec<(Event, Micros)>,
    /// Index in `events` of the next event to apply.
    next: usize,
    clock: Clock,
    /// How the timed loop applies events: one by one, or as the server does.
    mode: Mode,
    timed: u64,
    timed_rejected: u64,
}

/// How the timed loop applies events.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `Shard::apply` on each event in turn.
    Single,
    /// As the server applies the events of one read: in batches of `SERVER_BATCH`, each
    /// event's player prefetched `PREFETCH_AHEAD` events before it is applied.
    Prefetched,
}

/// Events per batch in `Mode::Prefetched`: the server decodes about 13.5 events per
/// read on average under the perf harness's default load (pipeline 16).
const SERVER_BATCH: usize = 16;

/// How many events ahead the server and journal replay prefetch (the same constant).
const PREFETCH_AHEAD: usize = cairn::shard::PREFETCH_AHEAD;

impl<S: Source> Stream<S> {
    fn new(source: S, shard: Shard) -> Stream<S> {
        Stream {
            source,
            shard,
            events: Vec::with_capacity(CHUNK_EVENTS),
            next: 0,
            clock: Clock::from_environment(),
            mode: Mode::Single,
            timed: 0,
            timed_rejected: 0,
        }
    }

    /// Drops the rest of the current chunk, so the next event comes from a refill.
    fn discard_chunk(&mut self) {
        self.events.clear();
        self.next = 0;
    }

    fn refill_if_empty(&mut self) {
        if self.next == self.events.len() {
            self.source.refill(&mut self.shard, &mut self.events);
            self.next = 0;
            assert!(!self.events.is_empty());
        }
    }

    /// Applies the next `count` events and returns the time spent applying them; the
    /// refills in between are not timed.
    fn run(&mut self, count: u64) -> Duration {
        let mut elapsed = Duration::ZERO;
        let mut left = count;
        while left > 0 {
            self.refill_if_empty();
            let take = left.min((self.events.len() - self.next) as u64) as usize;
            let chunk = &self.events[self.next..self.next + take];
            let started = self.clock.now();
            let rejected = match self.mode {
                Mode::Single => apply_all(&mut self.shard, chunk),
                Mode::Prefetched => apply_prefetched(&mut self.shard, chunk),
            };
            elapsed += self.clock.now() - started;
            self.next += take;
            left -= take as u64;
            self.timed += take as u64;
            self.timed_rejected += rejected;
        }
        elapsed
    }

    /// Applies the next chunk untimed, prints what its events did and returns the
    /// tally. The state moves on, as the untimed warm-up of the bench.
    fn check(&mut self, name: &str) -> Tally {
        self.refill_if_empty();
        let mut tally = Tally::default();
        for (event, time) in &self.events[self.next..] {
            tally.add(&self.shard.apply(event, *time));
        }
        self.next = self.events.len();
        println!("{name}: untimed check of {} events: {tally}", tally.total);
        // Refill now rather than in criterion's first timed call: criterion sizes its
        // samples from the wall time of its warm-up calls, which includes refills.
        self.refill_if_empty();
        tally
    }
}

/// The timed loop. Counting refusals costs one add per event; it is what lets the bench
/// assert that the timed events were accepted, not just the untimed ones.
fn apply_all(shard: &mut Shard, events: &[(Event, Micros)]) -> u64 {
    let mut rejected = 0;
    for (event, time) in events {
        let outcome = black_box(shard.apply(event, *time));
        rejected += outcome.is_rejected() as u64;
    }
    rejected
}

/// The timed loop of `Mode::Prefetched`: the server's apply loop over one read's events.
fn apply_prefetched(shard: &mut Shard, events: &[(Event, Micros)]) -> u64 {
    let mut rejected = 0;
    for batch in events.chunks(SERVER_BATCH) {
        for (event, _) in batch.iter().take(PREFETCH_AHEAD) {
            shard.prefetch(event);
        }
        for (index, (event, time)) in batch.iter().enumerate() {
            if let Some((ahead, _)) = batch.get(index + PREFETCH_AHEAD) {
                shard.prefetch(ahead);
            }
            let outcome = black_box(shard.apply(event, *time));
            rejected += outcome.is_rejected() as u64;
        }
    }
    rejected
}

/// Outcomes counted by kind.
#[derive(Default)]
struct Tally {
    total: u64,
    rejected: u64,
    kinds: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome) {
        let kind = match outcome {
            Outcome::Rejected(rejection) => {
                self.rejected += 1;
                rejection.name()
            }
            Outcome::Moved { claims: [] } => "moved",
            Outcome::Moved { .. } => "moved_and_claimed",
            Outcome::Dug { .. } => "dug",
            Outcome::Adjusted { .. } => "adjusted",
            Outcome::List { .. } => "list",
            Outcome::Standing(_) => "standing",
            Outcome::Hint { distance: Some(_) } => "hint",
            Outcome::Hint { distance: None } => "hint_none",
            _ => "other",
        };
        self.total += 1;
        *self.kinds.entry(kind).or_default() += 1;
    }

    fn count(&self, kind: &str) -> u64 {
        self.kinds.get(kind).copied().unwrap_or(0)
    }

    fn refused_percent(&self) -> f64 {
        percent(self.rejected, self.total)
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2}% refused;", self.refused_percent())?;
        for (kind, count) in &self.kinds {
            write!(f, " {kind} {:.2}%", percent(*count, self.total))?;
        }
        Ok(())
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    assert!(whole > 0);
    part as f64 * 100.0 / whole as f64
}

/// Registers bench `function/parameter` of `group` over a lazily built stream: the
/// set-up runs only if the bench is selected (so `cargo bench -- moves` does not build
/// the 1M-player states of `adjust`). `check` may assert more about the untimed check's
/// tally. Returns the stream if it was built, for a caller that shares it with its next
/// bench; otherwise dropping it frees its memory before the next bench.
fn bench_stream<S: Source>(
    group: &mut Group,
    function: &str,
    parameter: &str,
    refused_percent_max: f64,
    check: impl FnOnce(&Tally),
    make: impl FnOnce() -> Stream<S>,
) -> Option<Stream<S>> {
    let name = format!("{}/{function}/{parameter}", group.name);
    let mut make = Some(make);
    let mut check = Some(check);
    let mut stream: Option<Stream<S>> = None;
    group.inner.bench_function(BenchmarkId::new(function, parameter), |bencher| {
        let stream = stream.get_or_insert_with(|| {
            let started = Instant::now();
            let mut stream = make.take().expect("built once")();
            println!("{name}: set-up in {:.2} s", started.elapsed().as_secs_f64());
            let tally = stream.check(&name);
            assert!(tally.refused_percent() <= refused_percent_max, "{name}: too many refusals: {tally}");
            check.take().expect("checked once")(&tally);
            stream
        });
        bencher.iter_custom(|iters| stream.run(iters));
    });
    if let Some(stream) = stream.as_mut().filter(|stream| stream.timed > 0) {
        let refused = percent(stream.timed_rejected, stream.timed);
        println!("{name}: {} timed events, {refused:.2}% refused", stream.timed);
        assert!(refused <= refused_percent_max, "{name}: {refused:.2}% of the timed events were refused");
        stream.timed = 0;
        stream.timed_rejected = 0;
    }
    stream
}

/// A criterion group and its name (which criterion keeps to itself).
struct Group<'a> {
    inner: BenchmarkGroup<'a, WallTime>,
    name: &'static str,
}

impl Group<'_> {
    fn new<'a>(c: &'a mut Criterion, name: &'static str) -> Group<'a> {
        let mut inner = c.benchmark_group(name);
        // One iteration is one event, so criterion prints events per second.
        inner.throughput(Throughput::Elements(1));
        Group { inner, name }
    }

    fn finish(self) {
        self.inner.finish();
    }
}

/// "1k_players_1_hunt" and the like.
fn size_label(hunts: u32, players_per_hunt: u32) -> String {
    let players = hunts as u64 * players_per_hunt as u64;
    let players = match players {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    };
    let plural = if hunts == 1 { "" } else { "s" };
    format!("{players}_players_{hunts}_hunt{plural}")
}

// ---------------------------------------------------------------------------------------
// The seeded workload of `cairn simulate`.

/// Events of a [`Workload`], continuing from where the shard is.
struct Generated {
    workload: Workload,
}

impl Source for Generated {
    fn refill(&mut self, _shard: &mut Shard, events: &mut Vec<(Event, Micros)>) {
        events.clear();
        events.extend((0..CHUNK_EVENTS).map(|_| self.workload.next_event()));
    }
}

/// The percentages of moves, digs and adjustments in a workload; queries are the rest.
#[derive(Clone, Copy)]
struct Mix {
    moves: u32,
    digs: u32,
    adjustments: u32,
}

/// A workload in which every player sends about one event per second of event time, as
/// a phone reporting its position does. The simulator's default of one event per
/// microsecond would give each of 1k players a thousand moves a second, which a hunt's
/// speed limit would (rightly) refuse.
fn workload_config(hunts: u32, players_per_hunt: u32, mix: Mix, auto_discover: bool) -> Config {
    let players = hunts as u64 * players_per_hunt as u64;
    Config {
        seed: SEED,
        hunts,
        players_per_hunt,
        moves_percent: mix.moves,
        digs_percent: mix.digs,
        adjustments_percent: mix.adjustments,
        auto_discover,
        event_interval_us: (MICROS_PER_SECOND / players).max(1),
        ..Config::default()
    }
}

/// A shard with the workload's hunts, treasures and players set up; the hunts get speed
/// limit `speed_max` (world units per second; 0, as in the simulator, for none).
fn set_up(config: Config, speed_max: u32) -> (Shard, Workload) {
    let mut shard = Shard::new();
    let mut workload = Workload::new(config);
    workload.setup(|event, time| {
        let event = match *event {
            Event::CreateHunt { hunt, mut spec } => {
                spec.options.speed_max = speed_max;
                Event::CreateHunt { hunt, spec }
            }
            other => other,
        };
        let outcome = shard.apply(&event, time);
        assert!(!outcome.is_rejected(), "set-up event refused: {event:?}: {outcome:?}");
    });
    (shard, workload)
}

fn workload_stream(config: Config, speed_max: u32, mode: Mode) -> Stream<Generated> {
    let (shard, workload) = set_up(config, speed_max);
    let mut stream = Stream::new(Generated { workload }, shard);
    stream.mode = mode;
    stream
}

fn no_check(_: &Tally) {}

const MOVES_ONLY: Mix = Mix { moves: 100, digs: 0, adjustments: 0 };
const ADJUSTMENTS_ONLY: Mix = Mix { moves: 0, digs: 0, adjustments: 100 };
const DEFAULT_MIX: Mix = Mix { moves: 80, digs: 10, adjustments: 5 };

/// Speed limit of the `walk_speed_limit` hunts, in world units per second: the
/// simulator's players step at most about 36 units per second of event time, so the
/// rule runs on every move and refuses none.
const WALK_SPEED_MAX: u32 = 5_000;

fn moves(c: &mut Criterion) {
    let mut group = Group::new(c, "moves");
    // (name, auto-discover, speed limit, mode): the simulator's hunts set no speed limit,
    // which skips the speed rule; a hunt that sets one pays for it on every move. The
    // `_batch16` variants apply the same events as the server does (see `Mode`).
    let variants = [
        ("walk", false, 0, Mode::Single),
        ("walk_batch16", false, 0, Mode::Prefetched),
        ("walk_speed_limit", false, WALK_SPEED_MAX, Mode::Single),
        ("walk_speed_limit_batch16", false, WALK_SPEED_MAX, Mode::Prefetched),
        ("walk_auto_discover", true, 0, Mode::Single),
        ("walk_auto_discover_batch16", true, 0, Mode::Prefetched),
    ];
    for (name, auto_discover, speed_max, mode) in variants {
        for (hunts, players_per_hunt) in [(1, 1_000), (100, 1_000), (100, 10_000)] {
            let size = size_label(hunts, players_per_hunt);
            let config = workload_config(hunts, players_per_hunt, MOVES_ONLY, auto_discover);
            let make = || workload_stream(config, speed_max, mode);
            let _ = bench_stream(&mut group, name, &size, 1.0, no_check, make);
        }
    }
    group.finish();
}

fn mixed(c: &mut Criterion) {
    let mut group = Group::new(c, "mixed");
    let config = workload_config(100, 1_000, DEFAULT_MIX, false);
    let size = size_label(100, 1_000);
    for (name, mode) in [("default_mix", Mode::Single), ("default_mix_batch16", Mode::Prefetched)] {
        let _ = bench_stream(&mut group, name, &size, 15.0, no_check, || workload_stream(config, 0, mode));
    }
    group.finish();
}

fn adjust(c: &mut Criterion) {
    let mut group = Group::new(c, "adjust");
    // One hunt per size: the leaderboard is per hunt, and its size is what an
    // adjustment's cost depends on.
    for players_per_hunt in [1_000, 100_000, 1_000_000] {
        let size = size_label(1, players_per_hunt);
        let config = workload_config(1, players_per_hunt, ADJUSTMENTS_ONLY, false);
        let make = || workload_stream(config, 0, Mode::Single);
        let _ = bench_stream(&mut group, "adjust_score", &size, 0.0, no_check, make);
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// Queries.

#[derive(Clone, Copy, Debug)]
enum Query {
    Top10,
    Rank,
    Around5,
    Hint,
}

/// Random queries of one kind; queries change nothing, so any chunk can follow any other.
struct Queries {
    rng: Rng,
    query: Query,
    hunts: u32,
    players_per_hunt: u32,
    time: Micros,
}

impl Source for Queries {
    fn refill(&mut self, _shard: &mut Shard, events: &mut Vec<(Event, Micros)>) {
        events.clear();
        for _ in 0..CHUNK_EVENTS {
            let hunt = HUNT_ID_FIRST + self.rng.below(self.hunts as u64) as u32;
            let player = self.rng.below(self.players_per_hunt as u64) as u32;
            let event = match self.query {
                Query::Top10 => Event::Top { hunt, count: 10 },
                Query::Rank => Event::Rank { hunt, player },
                Query::Around5 => Event::Around { hunt, player, radius: 5 },
                Query::Hint => Event::Hint { hunt, player },
            };
            events.push((event, self.time));
        }
    }
}

/// A shard of the mixed workload, warmed by `QUERY_WARM_EVENTS` of its events.
fn query_stream(config: Config) -> Stream<Queries> {
    let (mut shard, mut workload) = set_up(config, 0);
    for _ in 0..QUERY_WARM_EVENTS {
        let (event, time) = workload.next_event();
        shard.apply(&event, time);
    }
    let source = Queries {
        rng: Rng::new(SEED),
        query: Query::Top10,
        hunts: config.hunts,
        players_per_hunt: config.players_per_hunt,
        time: workload.time(),
    };
    Stream::new(source, shard)
}

fn queries(c: &mut Criterion) {
    let mut group = Group::new(c, "queries");
    let (hunts, players_per_hunt) = (100, 1_000);
    let config = workload_config(hunts, players_per_hunt, DEFAULT_MIX, false);
    let size = size_label(hunts, players_per_hunt);
    // Queries change nothing, so the four benches share one warmed shard.
    let mut shared: Option<Stream<Queries>> = None;
    for (name, query) in
        [("top_10", Query::Top10), ("rank", Query::Rank), ("around_5", Query::Around5), ("hint", Query::Hint)]
    {
        let previous = shared.take();
        shared = bench_stream(&mut group, name, &size, 0.0, no_check, || {
            let mut stream = previous.unwrap_or_else(|| query_stream(config));
            stream.source.query = query;
            stream.discard_chunk();
            stream
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// Digs.

/// Hunts, players and treasures of the digs bench.
const DIG_HUNTS: u32 = 10;
const DIG_PLAYERS_PER_HUNT: u32 = 1_000;
const DIG_TREASURES_PER_HUNT: u32 = 200;

/// Digs per chunk; each chunk runs on a freshly set-up shard, so that the mix of claims
/// and refusals stays the same however long criterion runs (on one shard every treasure
/// would end up claimed and every dig refused).
const DIG_CHUNK_EVENTS: usize = 1 << 19;

/// Side of each digs hunt, in world units (as in the simulator's hunts), and the hunt's
/// speed limit, in world units per second. A dig-only stream has no walking between
/// digs, so each dig jumps the player to the treasure; events are `SPEED_BURST_US` apart
/// and the (unrealistically high) limit allows a jump across the hunt's diagonal within
/// one burst, so the speed rule's arithmetic runs on every dig and never refuses one.
const DIG_HUNT_SIZE: i32 = 100_000;
const DIG_SPEED_MAX: u32 = 100_000;
const _: () =
    assert!(2 * (DIG_HUNT_SIZE as u64).pow(2) <= (DIG_SPEED_MAX as u64 * SPEED_BURST_US / MICROS_PER_SECOND).pow(2));

/// Largest treasure radius, in world units; treasures lie at least twice this far from
/// the hunt's edges, so every dig position (at most two radii away) is inside.
const DIG_RADIUS_MAX: i32 = 200;

/// Percent of treasures with a small capacity (1 to 5), soon exhausted; the others have
/// room for every player of the hunt.
const DIG_SMALL_TREASURES_PERCENT: u32 = 10;

/// Percent of digs made deliberately just out of the treasure's reach.
const DIG_OUT_OF_REACH_PERCENT: u32 = 15;

/// Digs at random treasures: most claim; some are just out of reach; some find the
/// treasure exhausted; some players come back to a treasure they already claimed.
struct Digs {
    rng: Rng,
    /// Treasures of the current shard, `DIG_TREASURES_PER_HUNT` per hunt.
    treasures: Vec<TreasureSpec>,
    /// Last sequence number of each player, `DIG_PLAYERS_PER_HUNT` per hunt.
    seqs: Vec<u32>,
    time: Micros,
}

impl Digs {
    fn new() -> Digs {
        Digs { rng: Rng::new(SEED), treasures: Vec::new(), seqs: Vec::new(), time: 1 }
    }

    fn tick(&mut self) -> Micros {
        let time = self.time;
        self.time += SPEED_BURST_US;
        time
    }

    fn coordinate(&mut self, margin: i32) -> i32 {
        self.rng.between(margin as i64, (DIG_HUNT_SIZE - 1 - margin) as i64) as i32
    }

    /// A fresh shard with new treasures and every player joined.
    fn set_up(&mut self) -> Shard {
        let mut shard = Shard::new();
        let mut apply = |event: Event, time: Micros| {
            let outcome = shard.apply(&event, time);
            assert!(!outcome.is_rejected(), "set-up event refused: {event:?}: {outcome:?}");
        };
        self.treasures.clear();
        self.seqs.clear();
        let options = HuntOptions {
            auto_discover: false,
            speed_max: DIG_SPEED_MAX,
            points: PointsRule::Decay,
            claims_per_player_max: 0,
        };
        let spec = HuntSpec {
            coordinates: Coordinates::Planar,
            min: Position::new(0, 0),
            max: Position::new(DIG_HUNT_SIZE - 1, DIG_HUNT_SIZE - 1),
            start: 0,
            end: Micros::MAX,
            options,
        };
        for hunt in dig_hunts() {
            apply(Event::CreateHunt { hunt, spec }, self.tick());
            for id in 0..DIG_TREASURES_PER_HUNT {
                let position = Position::new(self.coordinate(2 * DIG_RADIUS_MAX), self.coordinate(2 * DIG_RADIUS_MAX));
                let small = self.rng.percent(DIG_SMALL_TREASURES_PERCENT);
                let capacity = if small { self.rng.between(1, 5) as u32 } else { DIG_PLAYERS_PER_HUNT };
                let treasure = TreasureSpec {
                    id,
                    position,
                    radius: self.rng.between(50, DIG_RADIUS_MAX as i64) as u32,
                    value: self.rng.between(10, 100) as u32,
                    capacity,
                    hint_radius: 0,
                };
                self.treasures.push(treasure);
                apply(Event::PlaceTreasure { hunt, treasure }, self.tick());
            }
            for player in 0..DIG_PLAYERS_PER_HUNT {
                let position = Position::new(self.coordinate(0), self.coordinate(0));
                self.seqs.push(1);
                apply(Event::Join { hunt, player, seq: 1, position }, self.tick());
            }
        }
        shard
    }

    fn next_dig(&mut self) -> (Event, Micros) {
        let hunt_index = self.rng.below(DIG_HUNTS as u64) as u32;
        let player = self.rng.below(DIG_PLAYERS_PER_HUNT as u64) as u32;
        let treasure_index = self.rng.below(DIG_TREASURES_PER_HUNT as u64) as u32;
        let treasure = self.treasures[(hunt_index * DIG_TREASURES_PER_HUNT + treasure_index) as usize];
        let radius = treasure.radius as i32;
        let (dx, dy) = if self.rng.percent(DIG_OUT_OF_REACH_PERCENT) {
            // Just beyond the radius, along x and towards the middle of the hunt.
            let beyond = radius + 1 + self.rng.between(0, DIG_RADIUS_MAX as i64) as i32;
            let towards_middle = if treasure.position.x < DIG_HUNT_SIZE / 2 { 1 } else { -1 };
            (towards_middle * beyond, 0)
        } else {
            // Within half the radius on each axis: inside the disc.
            let half = (radius / 2) as i64;
            (self.rng.between(-half, half) as i32, self.rng.between(-half, half) as i32)
        };
        let position = Position::new(treasure.position.x + dx, treasure.position.y + dy);
        let slot = (hunt_index * DIG_PLAYERS_PER_HUNT + player) as usize;
        self.seqs[slot] += 1;
        let hunt = HUNT_ID_FIRST + hunt_index;
        let event = Event::Dig { hunt, player, seq: self.seqs[slot], treasure: treasure.id, position };
        (event, self.tick())
    }
}

fn dig_hunts() -> impl Iterator<Item = HuntId> {
    (0..DIG_HUNTS).map(|index| HUNT_ID_FIRST + index)
}

impl Source for Digs {
    fn refill(&mut self, shard: &mut Shard, events: &mut Vec<(Event, Micros)>) {
        *shard = self.set_up();
        events.clear();
        events.extend((0..DIG_CHUNK_EVENTS).map(|_| self.next_dig()));
    }
}

fn digs(c: &mut Criterion) {
    let mut group = Group::new(c, "digs");
    let size = size_label(DIG_HUNTS, DIG_PLAYERS_PER_HUNT);
    // At most half refused, and each kind of refusal the bench promises actually occurs.
    let check = |tally: &Tally| {
        for kind in ["out_of_reach", "already_claimed", "treasure_exhausted"] {
            assert!(tally.count(kind) * 100 >= tally.total, "digs: fewer than 1% {kind}: {tally}");
        }
    };
    for (name, mode) in [("dig", Mode::Single), ("dig_batch16", Mode::Prefetched)] {
        let _ = bench_stream(&mut group, name, &size, 50.0, check, || {
            let mut stream = Stream::new(Digs::new(), Shard::new());
            stream.mode = mode;
            stream
        });
    }
    group.finish();
}

// `criterion_main!` by hand: the macro's generated functions have no docs, which the
// crate's `missing_docs` lint would flag.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    println!("engine benches: timed with {}", Clock::from_environment().name());
    moves(&mut criterion);
    digs(&mut criterion);
    mixed(&mut criterion);
    adjust(&mut criterion);
    queries(&mut criterion);
    criterion.final_summary();
}
