//! The CI regression gate's benchmarks: instruction counts of the hot paths under
//! Callgrind (through gungraun), over recorded, seeded event traces.
//!
//! Wall-clock benches (`engine.rs`, `leaderboard.rs`) swing 2x on the shared machines CI
//! runs on; an instruction count does not: the same binary on the same trace executes the
//! same instructions (three runs here gave identical counts; a per-process hash seed could
//! move a probe or two). So these figures can be held to a 2% budget that a timing never
//! could.
//! `tools/bench-gate` runs this bench, divides each measured count by the events of its
//! trace (`common/gate_events.rs`) and compares instructions per event with the baselines
//! in `benches/baselines/gate.json`.
//!
//! Each bench has one case, `trace`, whose argument is built by a set-up function:
//! gungraun evaluates it outside the measured function, so creating hunts, joining
//! players, warming the state and generating the trace are never counted. The measured
//! function takes the prepared state and returns it, so dropping it is not counted either.
//! Traces come from `simulate::Workload` with a fixed seed, so every run measures the same
//! events.
//!
//! - `decode_pipelined`: split a pipelined batch of request frames (the default mix, half
//!   the moves QUIET) with `Frames` and decode each with `decode_request`.
//! - `apply_mixed`: `Shard::apply` of the default mix (80% moves, 10% digs, 5% score
//!   adjustments, 5% top/rank/around/hint queries) on a warmed 10k-player shard.
//! - `apply_mixed_auto_discover`: the same in hunts that auto-discover, so every move
//!   asks the grid for the treasures whose disc may contain it.
//! - `leaderboard_update_rank_100k`: `Leaderboard::update` (which returns the new rank) at
//!   100k players.
//! - `hint_queries`: `Shard::apply` of hint queries on the warmed shard (the grid's
//!   nearest-treasure search).
//! - `reply_encode`: `encode_outcome` of the outcomes the mixed trace produced (claims,
//!   lists, standings, rejections with their messages) into a buffer with room.
//! - `journal_encode`: `encode_record` of mutating events into a buffer with room.
//!
//! Run: `tools/bench-gate` (the gate), or `cargo bench --profile gate --bench gate` for gungraun's own
//! report (needs valgrind and `gungraun-runner` at the version pinned in `Cargo.toml`).

// gungraun's macros define public items they cannot document.
#![allow(missing_docs)]

use std::hint::black_box;

use gungraun::{library_benchmark, library_benchmark_group, main};

use cairn::event::{Event, EventKind, Micros};
use cairn::journal::encode_record;
use cairn::leaderboard::{Key, Leaderboard};
use cairn::outcome::{Claim, Outcome, Ranked};
use cairn::protocol::{decode_request, encode_outcome, encode_request, Frames, Request, FLAG_QUIET};
use cairn::rng::Rng;
use cairn::shard::Shard;
use cairn::simulate::{Config, Workload, HUNT_ID_FIRST};

// `ALL` is read by the gate tool, not here.
#[allow(dead_code)]
#[path = "common/gate_events.rs"]
mod gate_events;

/// Seed of every trace.
const SEED: u64 = 1;

/// Mixed events applied before any trace is taken, so that scores (and so ranks) differ,
/// treasures have been claimed, and every table has reached its working size.
const WARM_EVENTS: usize = 20_000;

/// The shared workload: 10 hunts of 1,000 players and 200 treasures, the default mix;
/// with `auto_discover`, every move asks the grid which treasures it reaches.
fn workload_config(auto_discover: bool) -> Config {
    Config {
        seed: SEED,
        hunts: 10,
        players_per_hunt: 1_000,
        treasures_per_hunt: 200,
        auto_discover,
        ..Config::default()
    }
}

/// A shard set up and warmed by the workload, and the workload, ready for the next event.
fn warmed() -> (Shard, Workload) {
    warmed_with(false)
}

fn warmed_with(auto_discover: bool) -> (Shard, Workload) {
    let mut shard = Shard::new();
    let mut workload = Workload::new(workload_config(auto_discover));
    workload.setup(|event, time| {
        let outcome = shard.apply(event, time);
        assert!(!outcome.is_rejected(), "set-up event refused: {event:?}: {outcome:?}");
    });
    for _ in 0..WARM_EVENTS {
        let (event, time) = workload.next_event();
        shard.apply(&event, time);
    }
    (shard, workload)
}

fn take(workload: &mut Workload, count: u64) -> Vec<(Event, Micros)> {
    (0..count).map(|_| workload.next_event()).collect()
}

// ---------------------------------------------------------------------------------------
// decode_pipelined

/// A read buffer as a connection would hold it: many request frames back to back.
struct Batch {
    bytes: Vec<u8>,
    frames: u64,
}

fn setup_decode_pipelined() -> Batch {
    let (_, mut workload) = warmed();
    let mut rng = Rng::new(SEED);
    let mut bytes = Vec::new();
    for (index, (event, _)) in take(&mut workload, gate_events::DECODE_PIPELINED).into_iter().enumerate() {
        let quiet = matches!(event, Event::Move { .. }) && rng.percent(50);
        let flags = if quiet { FLAG_QUIET } else { 0 };
        encode_request(index as u32 + 1, flags, &Request::Event(event), &mut bytes).expect("the event encodes");
    }
    Batch { bytes, frames: gate_events::DECODE_PIPELINED }
}

#[library_benchmark]
#[bench::trace(setup_decode_pipelined())]
fn decode_pipelined(batch: Batch) -> Batch {
    let mut frames = Frames::new(black_box(&batch.bytes));
    let mut decoded = 0;
    for frame in &mut frames {
        let frame = frame.expect("the batch holds only complete, valid frames");
        black_box(decode_request(frame).expect("the frame decodes"));
        decoded += 1;
    }
    assert_eq!(decoded, batch.frames);
    assert_eq!(frames.consumed(), batch.bytes.len());
    batch
}

// ---------------------------------------------------------------------------------------
// apply_mixed and hint_queries

/// A warmed shard and the events to apply to it, in order.
struct Applied {
    shard: Shard,
    events: Vec<(Event, Micros)>,
}

fn setup_apply_mixed() -> Applied {
    let (shard, mut workload) = warmed();
    let events = take(&mut workload, gate_events::APPLY_MIXED);
    Applied { shard, events }
}

#[library_benchmark]
#[bench::trace(setup_apply_mixed())]
fn apply_mixed(applied: Applied) -> Applied {
    apply_all(applied)
}

fn setup_apply_mixed_auto_discover() -> Applied {
    let (shard, mut workload) = warmed_with(true);
    let events = take(&mut workload, gate_events::APPLY_MIXED_AUTO_DISCOVER);
    Applied { shard, events }
}

#[library_benchmark]
#[bench::trace(setup_apply_mixed_auto_discover())]
fn apply_mixed_auto_discover(applied: Applied) -> Applied {
    apply_all(applied)
}

fn setup_hint_queries() -> Applied {
    let (shard, workload) = warmed();
    let config = *workload.config();
    let time = workload.time();
    let mut rng = Rng::new(SEED);
    let events = (0..gate_events::HINT_QUERIES)
        .map(|_| {
            let hunt = HUNT_ID_FIRST + rng.below(config.hunts as u64) as u32;
            let player = rng.below(config.players_per_hunt as u64) as u32;
            (Event::Hint { hunt, player }, time)
        })
        .collect();
    Applied { shard, events }
}

#[library_benchmark]
#[bench::trace(setup_hint_queries())]
fn hint_queries(applied: Applied) -> Applied {
    apply_all(applied)
}

fn apply_all(mut applied: Applied) -> Applied {
    for (event, time) in &applied.events {
        black_box(applied.shard.apply(black_box(event), *time));
    }
    applied
}

// ---------------------------------------------------------------------------------------
// leaderboard_update_rank_100k

/// Players on the leaderboard.
const LEADERBOARD_PLAYERS: u32 = 100_000;

/// Initial scores are drawn below this, so scores are about ten points apart and an
/// update moves a player past a few others.
const SCORE_INITIAL_MAX: u64 = 1_000_000;

/// A full leaderboard and a sequence of updates, each valid after the ones before it.
struct Board {
    leaderboard: Leaderboard,
    updates: Vec<(Key, Key)>,
}

fn setup_leaderboard() -> Board {
    let mut rng = Rng::new(SEED);
    let mut leaderboard = Leaderboard::new();
    leaderboard.reserve(LEADERBOARD_PLAYERS as usize);
    let mut keys: Vec<Key> = (0..LEADERBOARD_PLAYERS)
        .map(|player| Key { score: rng.below(SCORE_INITIAL_MAX) as i64, reached_at: player as Micros, player })
        .collect();
    for key in &keys {
        leaderboard.insert(*key);
    }
    let mut time = LEADERBOARD_PLAYERS as Micros;
    let updates = (0..gate_events::LEADERBOARD_UPDATE_RANK_100K)
        .map(|_| {
            let player = rng.below(LEADERBOARD_PLAYERS as u64) as usize;
            let old = keys[player];
            time += 1;
            let new = Key { score: old.score + rng.between(-20, 50), reached_at: time, player: old.player };
            keys[player] = new;
            (old, new)
        })
        .collect();
    Board { leaderboard, updates }
}

#[library_benchmark]
#[bench::trace(setup_leaderboard())]
fn leaderboard_update_rank_100k(mut board: Board) -> Board {
    for (old, new) in &board.updates {
        black_box(board.leaderboard.update(black_box(old), *new));
    }
    board
}

// ---------------------------------------------------------------------------------------
// reply_encode

/// Outcomes to encode, with the request id and event kind of each, and an output buffer
/// with room for all their frames (the server's output buffer is pooled and sized too).
struct Replies {
    outcomes: Vec<(u32, EventKind, Outcome<'static>)>,
    out: Vec<u8>,
}

/// Copies an outcome's borrowed list out of the shard's scratch. The copy is leaked: the
/// bench process runs this once and exits, and a `'static` outcome needs no owner.
fn detach(outcome: Outcome<'_>) -> Outcome<'static> {
    fn leak<T: Copy>(items: &[T]) -> &'static [T] {
        Box::leak(items.to_vec().into_boxed_slice())
    }
    match outcome {
        Outcome::Moved { claims } => Outcome::Moved { claims: leak::<Claim>(claims) },
        Outcome::List { total, entries } => Outcome::List { total, entries: leak::<Ranked>(entries) },
        Outcome::HuntCreated => Outcome::HuntCreated,
        Outcome::HuntEnded => Outcome::HuntEnded,
        Outcome::HuntDeleted => Outcome::HuntDeleted,
        Outcome::TreasurePlaced => Outcome::TreasurePlaced,
        Outcome::TreasureRemoved => Outcome::TreasureRemoved,
        Outcome::Joined { score, rank } => Outcome::Joined { score, rank },
        Outcome::Left => Outcome::Left,
        Outcome::Dug { claim } => Outcome::Dug { claim },
        Outcome::Adjusted { score, rank } => Outcome::Adjusted { score, rank },
        Outcome::Standing(standing) => Outcome::Standing(standing),
        Outcome::Hint { distance } => Outcome::Hint { distance },
        Outcome::Treasure(state) => Outcome::Treasure(state),
        Outcome::Rejected(rejection) => Outcome::Rejected(rejection),
    }
}

fn setup_reply_encode() -> Replies {
    let (mut shard, mut workload) = warmed();
    let outcomes: Vec<_> = take(&mut workload, gate_events::REPLY_ENCODE)
        .into_iter()
        .enumerate()
        .map(|(index, (event, time))| (index as u32 + 1, event.kind(), detach(shard.apply(&event, time))))
        .collect();
    let mut out = Vec::new();
    encode_replies(&outcomes, &mut out);
    out.clear();
    Replies { outcomes, out }
}

#[library_benchmark]
#[bench::trace(setup_reply_encode())]
fn reply_encode(mut replies: Replies) -> Replies {
    let capacity = replies.out.capacity();
    encode_replies(black_box(&replies.outcomes), &mut replies.out);
    assert_eq!(replies.out.capacity(), capacity, "the output buffer grew");
    replies
}

fn encode_replies(outcomes: &[(u32, EventKind, Outcome<'static>)], out: &mut Vec<u8>) {
    for (request_id, kind, outcome) in outcomes {
        encode_outcome(*request_id, *kind, outcome, out);
    }
}

// ---------------------------------------------------------------------------------------
// journal_encode

/// Mutating events with their times and sequence numbers, and a commit buffer with room.
struct Records {
    events: Vec<(u64, Event, Micros)>,
    out: Vec<u8>,
}

fn setup_journal_encode() -> Records {
    let (_, mut workload) = warmed();
    let mut events = Vec::with_capacity(gate_events::JOURNAL_ENCODE as usize);
    while events.len() < gate_events::JOURNAL_ENCODE as usize {
        let (event, time) = workload.next_event();
        if event.is_mutation() {
            events.push((events.len() as u64 + 1, event, time));
        }
    }
    let mut out = Vec::new();
    encode_records(&events, &mut out);
    out.clear();
    Records { events, out }
}

#[library_benchmark]
#[bench::trace(setup_journal_encode())]
fn journal_encode(mut records: Records) -> Records {
    let capacity = records.out.capacity();
    encode_records(black_box(&records.events), &mut records.out);
    assert_eq!(records.out.capacity(), capacity, "the commit buffer grew");
    records
}

fn encode_records(events: &[(u64, Event, Micros)], out: &mut Vec<u8>) {
    for (seq, event, time) in events {
        encode_record(*seq, *time, event, out);
    }
}

library_benchmark_group!(
    name = gate;
    benchmarks = decode_pipelined, apply_mixed, apply_mixed_auto_discover, leaderboard_update_rank_100k, hint_queries, reply_encode, journal_encode
);

main!(library_benchmark_groups = gate);
