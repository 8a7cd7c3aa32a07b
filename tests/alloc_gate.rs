//! The allocation gate CI runs: the steady state allocates nothing per event, checked path
//! by path so that a failure names the path that allocated, not just a total.
//!
//! - The state machine: every steady-state event is applied inside its own
//!   `alloc::Scope`, and allocations are counted per (event kind, outcome): `dig ->
//!   already_claimed`, `move -> moved_and_claimed`, `leave -> left`, ...
//! - The server's parts, each in-process on its own: decode (`Frames` and
//!   `decode_request` over a pipelined batch), reply (`encode_outcome`), push
//!   (`encode_notice`), the cross-shard hand-off (a request frame through a REQUEST ring,
//!   its reply staged and pushed through a REPLY ring), and the journal (`Writer::append`
//!   and one `commit` per turn on real files).
//! - The server loop itself, over loopback, read through STATS with the MARK flag, per
//!   shard, in three configurations that add one path each: one shard (decode, apply,
//!   reply, flush), two shards (plus the cross-shard hand-off), two shards with the
//!   journal (plus journal appends and commits).
//!
//! A path counts allocations plus reallocations (a `Vec` that grows is an allocation the
//! hot path pays for). Warm-up runs first in every check, so buffers and tables are at
//! their working size, as they are in a server that has been up for a while.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use cairn::alloc::{self, Scope};
use cairn::client::{Client, Options};
use cairn::event::{Event, Micros, Position};
use cairn::journal::{recover, Durability, FileStorage, Repair, Writer};
use cairn::outcome::Outcome;
use cairn::protocol::{decode_request, encode_notice, encode_outcome, encode_request, Frames, Request, FLAG_QUIET};
use cairn::rng::Rng;
use cairn::server::ring::{ring, RecordHeader, RecordKind, Staged};
use cairn::server::{Config, Server};
use cairn::shard::Shard;
use cairn::simulate::{Config as WorkloadConfig, Workload, HUNT_ID_FIRST};
use common::{send_workload, set_up_workload, stats_counting};

/// Events applied before any measurement.
const WARM_EVENTS: usize = 50_000;
/// Events measured per check.
const MEASURED_EVENTS: usize = 300_000;
/// Extra players per hunt that leave and rejoin (the workload itself never does);
/// their ids start above the workload's.
const ROAMERS_PER_HUNT: u32 = 20;
const ROAMER_ID_FIRST: u32 = 1_000_000;

fn workload_config(auto_discover: bool) -> WorkloadConfig {
    WorkloadConfig { hunts: 20, players_per_hunt: 1_000, treasures_per_hunt: 300, auto_discover, ..Default::default() }
}

/// Allocations seen on one path.
#[derive(Default)]
struct PathCount {
    events: u64,
    allocations: u64,
    /// The first event that allocated on this path.
    first: Option<String>,
}

/// Allocations by path; the failure message lists every path that allocated.
#[derive(Default)]
struct Paths {
    paths: BTreeMap<String, PathCount>,
}

impl Paths {
    /// Records what one event did on `path`. Called after the scope was read, so building
    /// the key (which allocates) is not counted.
    fn add(&mut self, path: impl Into<String>, allocations: u64, describe: impl FnOnce() -> String) {
        let count = self.paths.entry(path.into()).or_default();
        count.events += 1;
        count.allocations += allocations;
        if allocations > 0 && count.first.is_none() {
            count.first = Some(describe());
        }
    }

    fn assert_none(&self, what: &str) {
        let mut failures = String::new();
        for (path, count) in &self.paths {
            if count.allocations > 0 {
                let first = count.first.as_deref().unwrap_or("?");
                let _ = writeln!(
                    failures,
                    "  {what}: path `{path}` allocated {} times over {} events (first at {first})",
                    count.allocations, count.events
                );
            }
        }
        assert!(failures.is_empty(), "allocation gate failed:\n{failures}");
        let summary: Vec<String> = self.paths.iter().map(|(path, count)| format!("{path} {}", count.events)).collect();
        println!("allocation gate: {what}: 0 allocations on every path; events per path: {}", summary.join(", "));
    }

    fn events(&self, path: &str) -> u64 {
        self.paths.get(path).map_or(0, |count| count.events)
    }
}

/// The label of an outcome: the rejection's name, or what the event did.
fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Rejected(rejection) => rejection.name(),
        Outcome::Moved { claims: [] } => "moved",
        Outcome::Moved { .. } => "moved_and_claimed",
        Outcome::Dug { .. } => "dug",
        Outcome::Adjusted { .. } => "adjusted",
        Outcome::List { .. } => "list",
        Outcome::Standing(_) => "standing",
        Outcome::Hint { distance: Some(_) } => "hint",
        Outcome::Hint { distance: None } => "hint_none",
        Outcome::Treasure(_) => "treasure",
        Outcome::Left => "left",
        Outcome::Joined { .. } => "joined",
        _ => "other",
    }
}

/// The steady-state event stream: the workload's mix, with treasure-info queries and
/// roaming players who leave and rejoin mixed in.
struct Stream {
    workload: Workload,
    rng: Rng,
    /// Per (hunt index, roamer): joined now, and the last sequence number used.
    roamers: Vec<(bool, u32)>,
}

impl Stream {
    /// Sets up `shard` (the slow path: hunts, treasures, players, roamers) and warms it.
    fn new(shard: &mut Shard, auto_discover: bool) -> Stream {
        let mut workload = Workload::new(workload_config(auto_discover));
        workload.setup(|event, time| assert!(!shard.apply(event, time).is_rejected(), "{event:?}"));
        let hunts = workload.config().hunts;
        let mut stream =
            Stream { workload, rng: Rng::new(11), roamers: vec![(true, 1); (hunts * ROAMERS_PER_HUNT) as usize] };
        let time = stream.workload.time();
        for index in 0..stream.roamers.len() as u32 {
            let (hunt, player) = stream.roamer(index);
            let join = Event::Join { hunt, player, seq: 1, position: Position::new(10, 10) };
            assert!(!shard.apply(&join, time).is_rejected(), "{join:?}");
        }
        for _ in 0..WARM_EVENTS {
            let (event, time) = stream.next_event();
            shard.apply(&event, time);
        }
        stream
    }

    fn roamer(&self, index: u32) -> (u32, u32) {
        (HUNT_ID_FIRST + index / ROAMERS_PER_HUNT, ROAMER_ID_FIRST + index % ROAMERS_PER_HUNT)
    }

    fn next_event(&mut self) -> (Event, Micros) {
        let roll = self.rng.below(100);
        if roll >= 4 {
            return self.workload.next_event();
        }
        let time = self.workload.time();
        let config = *self.workload.config();
        if roll < 2 {
            let hunt = HUNT_ID_FIRST + self.rng.below(config.hunts as u64) as u32;
            let treasure = self.rng.below(config.treasures_per_hunt as u64) as u32;
            return (Event::TreasureInfo { hunt, treasure }, time);
        }
        let index = self.rng.below(self.roamers.len() as u64) as u32;
        let (hunt, player) = self.roamer(index);
        let (joined, seq) = &mut self.roamers[index as usize];
        *seq += 1;
        *joined = !*joined;
        let position = Position::new(self.rng.between(0, 1_000) as i32, self.rng.between(0, 1_000) as i32);
        let event = if *joined {
            Event::Join { hunt, player, seq: *seq, position }
        } else {
            Event::Leave { hunt, player, seq: *seq }
        };
        (event, time)
    }
}

// ---------------------------------------------------------------------------------------
// The state machine.

#[test]
fn the_state_machine_allocates_nothing_on_any_path() {
    assert!(alloc::installed(), "the counting allocator must be installed, or this gate measures nothing");
    for auto_discover in [false, true] {
        let mut shard = Shard::new();
        let mut stream = Stream::new(&mut shard, auto_discover);
        let mut paths = Paths::default();
        for index in 0..MEASURED_EVENTS {
            let (event, time) = stream.next_event();
            let scope = Scope::start();
            let outcome = shard.apply(&event, time);
            let allocations = scope.allocations();
            let path = format!("{} -> {}", event.kind().name(), outcome_label(&outcome));
            paths.add(path, allocations, || format!("event #{index}: {event:?}"));
        }
        let what = if auto_discover { "state machine (auto-discover hunts)" } else { "state machine" };
        paths.assert_none(what);
        // The stream really exercised the paths the gate is about.
        for path in ["move -> moved", "dig -> dug", "adjust_score -> adjusted", "top -> list", "rank -> standing"] {
            assert!(paths.events(path) > 1_000, "{what}: path `{path}` ran only {} times", paths.events(path));
        }
        for path in ["hint -> hint", "treasure_info -> treasure", "leave -> left", "join -> joined"] {
            assert!(paths.events(path) > 100, "{what}: path `{path}` ran only {} times", paths.events(path));
        }
        if auto_discover {
            assert!(paths.events("move -> moved_and_claimed") > 100, "auto-discover moves claimed too rarely");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The server's parts, in-process.

/// Output and journal buffers are cleared once they pass this, as the server flushes its
/// output every turn and commits its journal every turn.
const TURN_EVENTS: usize = 256;

#[test]
fn the_server_parts_allocate_nothing_per_event() {
    assert!(alloc::installed(), "the counting allocator must be installed, or this gate measures nothing");
    let mut shard = Shard::new();
    let mut stream = Stream::new(&mut shard, true);
    let dir = std::env::temp_dir().join(format!("cairn-alloc-gate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut storage = FileStorage::open(&dir).unwrap();
    let recovered = recover(&mut storage, Repair::Truncate).unwrap();
    let mut writer = Writer::open(storage, Durability::Os, &recovered).unwrap();

    let ring_size = Config::default().ring_size_bytes;
    let (mut request_producer, mut request_consumer) = ring(ring_size);
    let (mut reply_producer, mut reply_consumer) = ring(ring_size);
    let mut staged = Staged::new(ring_size);
    let mut frames_buffer = Vec::new();
    let mut output = Vec::new();
    let mut payload = Vec::new();
    let mut rng = Rng::new(5);

    let mut paths = Paths::default();
    // Two passes: the first is warm-up (buffers grow to their working size), the second
    // is measured.
    for pass in 0..2 {
        let measured = pass == 1;
        let count = if measured { MEASURED_EVENTS } else { WARM_EVENTS };
        let mut turn_started = 0;
        for index in 0..count {
            let (event, time) = stream.next_event();
            let quiet = matches!(event, Event::Move { .. }) && rng.percent(50);
            let flags = if quiet { FLAG_QUIET } else { 0 };
            // The client's side: not measured.
            if index - turn_started == 0 {
                frames_buffer.clear();
            }
            let frame_start = frames_buffer.len();
            encode_request(index as u32 + 1, flags, &Request::Event(event), &mut frames_buffer).unwrap();

            let check = |path: &str, scope: Scope, paths: &mut Paths| {
                let allocations = scope.allocations();
                if measured {
                    paths.add(path, allocations, || format!("event #{index}: {event:?}"));
                }
            };

            let scope = Scope::start();
            let mut frames = Frames::new(&frames_buffer[frame_start..]);
            let frame = frames.next().expect("one frame").expect("a valid frame");
            let (header, request) = decode_request(frame).expect("it decodes");
            check("decode", scope, &mut paths);
            assert!(matches!(request, Request::Event(_)));

            let scope = Scope::start();
            let request_header = RecordHeader {
                flags: header.flags,
                request_id: header.request_id,
                hunt: event.hunt(),
                ..RecordHeader::new(RecordKind::Request)
            };
            request_producer.try_push(&request_header, frame).expect("the ring is drained every event");
            let taken = request_consumer.pop(&mut payload).expect("the record was pushed");
            check("cross-shard hand-off (request ring)", scope, &mut paths);
            assert_eq!(taken.request_id, header.request_id);

            let scope = Scope::start();
            let outcome = shard.apply(&event, time);
            check("apply", scope, &mut paths);

            let scope = Scope::start();
            let reply_start = output.len();
            encode_outcome(header.request_id, event.kind(), &outcome, &mut output);
            check("reply", scope, &mut paths);

            let scope = Scope::start();
            let reply_header = RecordHeader { request_id: header.request_id, ..RecordHeader::new(RecordKind::Reply) };
            staged.stage(&reply_header, &output[reply_start..]);
            reply_producer.push_staged(&mut staged);
            let taken = reply_consumer.pop(&mut payload).expect("the reply was pushed");
            check("cross-shard hand-off (reply ring, staged)", scope, &mut paths);
            assert_eq!(taken.request_id, header.request_id);

            let scope = Scope::start();
            for notice in shard.notices() {
                encode_notice(notice, &mut output);
            }
            check("push", scope, &mut paths);

            let scope = Scope::start();
            if event.is_mutation() {
                writer.append(&event, time);
            }
            check("journal append", scope, &mut paths);

            if index + 1 - turn_started == TURN_EVENTS || !writer.has_room() {
                let scope = Scope::start();
                writer.commit().expect("the commit succeeds");
                check("journal commit", scope, &mut paths);
                output.clear();
                turn_started = index + 1;
            }
        }
    }
    paths.assert_none("server parts");
    drop(writer);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// The server loop, over loopback.

const SERVER_WARM_EVENTS: usize = 50_000;
const SERVER_MEASURED_EVENTS: usize = 100_000;

/// Runs the workload against a server and returns, per shard, (events, allocations)
/// since the mark.
fn server_allocations(config: Config) -> Vec<(u64, u64)> {
    let config = Config { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..config };
    let server = Server::start(config).expect("the server starts");
    let options = Options { timeout: Duration::from_secs(20), name: "tests/alloc_gate.rs".to_owned() };
    let mut client = Client::connect_with(server.local_addr(), &options).expect("the client connects");
    let mut workload = Workload::new(WorkloadConfig { hunts: 8, players_per_hunt: 500, ..workload_config(true) });
    let setup = set_up_workload(&mut client, &mut workload);
    let mut rng = Rng::new(7);
    send_workload(&mut client, &mut workload, SERVER_WARM_EVENTS, &mut rng);
    // Mark once every shard has published the warm-up, so none of it counts after.
    let warm = (setup + SERVER_WARM_EVENTS) as u64;
    stats_counting(&mut client, warm, Duration::from_secs(20));
    client.stats_and_mark().unwrap();
    send_workload(&mut client, &mut workload, SERVER_MEASURED_EVENTS, &mut rng);
    let stats = stats_counting(&mut client, warm + SERVER_MEASURED_EVENTS as u64, Duration::from_secs(20));
    server.shutdown().unwrap();
    let events = stats["allocations"]["events_since_mark"].as_u64().expect("events since the mark");
    assert!(events >= SERVER_MEASURED_EVENTS as u64, "only {events} events counted since the mark: {stats}");
    let shards = stats["per_shard"].as_array().expect("STATS lists the shards");
    let per_shard: Vec<(u64, u64)> = shards
        .iter()
        .map(|shard| {
            let events = shard["events"].as_u64().expect("events");
            let allocations = shard["allocations_since_mark"].as_u64().expect("allocations_since_mark");
            (events, allocations)
        })
        .collect();
    let total = stats["allocations"]["since_mark"].as_u64().expect("allocations since the mark");
    assert_eq!(per_shard.iter().map(|(_, allocations)| allocations).sum::<u64>(), total, "{stats}");
    per_shard
}

#[test]
fn the_server_loop_allocates_nothing_per_event() {
    assert!(alloc::installed(), "the counting allocator must be installed, or this gate measures nothing");
    let dir = std::env::temp_dir().join(format!("cairn-alloc-gate-server-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let configurations = [
        ("server loop, 1 shard (decode, apply, reply, flush)", Config { shards: 1, ..Config::default() }),
        ("server loop, 2 shards (adds the cross-shard hand-off)", Config { shards: 2, ..Config::default() }),
        (
            "server loop, 2 shards, journal on (adds journal append and commit)",
            Config { shards: 2, durability: Durability::Os, data_dir: Some(dir.clone()), ..Config::default() },
        ),
    ];
    let mut failures = String::new();
    for (path, config) in configurations {
        let per_shard = server_allocations(config);
        for (shard, (events, allocations)) in per_shard.iter().enumerate() {
            if *allocations > 0 {
                let _ = writeln!(
                    failures,
                    "  path `{path}`: shard {shard} allocated {allocations} times since the mark ({events} events \
                     on that shard in all)"
                );
            }
        }
        println!("allocation gate: {path}: per shard (events, allocations since mark): {per_shard:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "allocation gate failed:\n{failures}");
}
