//! The server over real loopback sockets: concurrent claims, cross-shard routing checked
//! against a local state machine, pushes and slow subscribers, malformed input, graceful
//! shutdown, the `cairn` binary, and zero allocations per event on the network path.
//!
//! Every test starts its own in-process `Server` on 127.0.0.1 port 0 (or the binary, on
//! a port it picks), talks to it through `cairn::client` or a raw `TcpStream`, and bounds
//! every wait with a timeout. Nothing asserts on timing.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use cairn::client::{Answer, Client, ClientError, Options};
use cairn::constants::FRAME_SIZE_MAX;
use cairn::event::{Coordinates, Event, HuntId, HuntOptions, HuntSpec, Micros, PointsRule, Position, TreasureSpec};
use cairn::journal::Durability;
use cairn::outcome::{Lifecycle, NoticeKind, Rejection, Topic};
use cairn::protocol::{
    decode_response, encode_outcome, encode_request, reply_wanted, ErrorCode, PushBody, ReplyBody, Request, Response,
    FLAG_QUIET, TOPICS_ALL,
};
use cairn::rng::Rng;
use cairn::server::{Config, Server};
use cairn::shard::{shard_for, Shard};
use common::{read_all, send_workload, set_up_workload, End};

/// How long any single wait in these tests may take before the test fails.
const WAIT: Duration = Duration::from_secs(20);

fn start(config: Config) -> Server {
    let config = Config { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..config };
    Server::start(config).expect("the server starts")
}

fn start_with_shards(shards: usize) -> Server {
    start(Config { shards, ..Config::default() })
}

fn connect(server: &Server) -> Client {
    let options = Options { timeout: WAIT, name: "tests/server.rs".to_owned() };
    Client::connect_with(server.local_addr(), &options).expect("the client connects")
}

/// A planar hunt from (0, 0) to (`size`, `size`) that runs from time 0 forever, with no
/// speed limit: its outcomes do not depend on event times.
fn planar(size: i32, options: HuntOptions) -> HuntSpec {
    HuntSpec {
        coordinates: Coordinates::Planar,
        min: Position::new(0, 0),
        max: Position::new(size, size),
        start: 0,
        end: Micros::MAX,
        options,
    }
}

fn treasure(id: u32, position: Position, radius: u32, value: u32, capacity: u32) -> TreasureSpec {
    TreasureSpec { id, position, radius, value, capacity, hint_radius: 0 }
}

/// Reads a field of the STATS document by its path.
fn stat(json: &str, path: &[&str]) -> serde_json::Value {
    let document: serde_json::Value = serde_json::from_str(json).expect("STATS is JSON");
    path.iter().fold(document, |value, key| value[*key].clone())
}

fn stat_u64(json: &str, path: &[&str]) -> u64 {
    stat(json, path).as_u64().unwrap_or_else(|| panic!("STATS has no number at {path:?}: {json}"))
}

// ---------------------------------------------------------------------------------------
// 1. Concurrent digs.

#[test]
fn concurrent_digs_award_each_treasure_exactly_capacity_times() {
    const CONNECTIONS: u32 = 64;
    const HUNT: HuntId = 11;
    let server = start_with_shards(2);
    let mut admin = connect(&server);
    let spot = Position::new(500, 500);
    admin.create_hunt(HUNT, &planar(1_000, HuntOptions::default())).unwrap();
    admin.place_treasure(HUNT, &treasure(1, spot, 50, 100, 1)).unwrap();
    admin.place_treasure(HUNT, &treasure(3, spot, 50, 100, 3)).unwrap();

    let barrier = Arc::new(Barrier::new(CONNECTIONS as usize));
    let diggers: Vec<_> = (0..CONNECTIONS)
        .map(|player| {
            let barrier = Arc::clone(&barrier);
            let mut client = connect(&server);
            thread::spawn(move || {
                client.join(HUNT, player, 1, spot).unwrap();
                barrier.wait();
                let unique = client.dig(HUNT, player, 2, 1, spot);
                barrier.wait();
                let shared = client.dig(HUNT, player, 3, 3, spot);
                (unique, shared)
            })
        })
        .collect();
    let results: Vec<_> = diggers.into_iter().map(|digger| digger.join().expect("no digger panics")).collect();

    for (capacity, pick) in [(1u32, 0usize), (3, 1)] {
        let mut indices = Vec::new();
        for result in &results {
            let result = if pick == 0 { &result.0 } else { &result.1 };
            match result {
                Ok(claim) => {
                    assert_eq!(claim.capacity, capacity);
                    indices.push(claim.index);
                }
                Err(ClientError::Rejected { code, message }) => {
                    assert_eq!(*code, Rejection::TreasureExhausted.code(), "{message}");
                    assert_eq!(*message, Rejection::TreasureExhausted.to_string());
                }
                Err(error) => panic!("a dig failed: {error}"),
            }
        }
        indices.sort_unstable();
        assert_eq!(indices, (1..=capacity).collect::<Vec<_>>(), "capacity {capacity}");
        let info = admin.treasure_info(HUNT, capacity).unwrap();
        assert_eq!((info.claimed, info.capacity), (capacity, capacity));
    }
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------
// 2. One connection, every shard, checked against a local state machine.

/// Every score change is a multiple of this, and player `p` starts at `p + 1`, so two
/// players never share a score: the leaderboard never falls back on event times, which
/// differ between the server and the local model.
const SCORE_UNIT: i32 = 1_024;

struct Scenario {
    rng: Rng,
    hunts: Vec<HuntId>,
    players: u32,
    /// Treasures per hunt index: id and position.
    treasures: Vec<Vec<(u32, Position)>>,
    seqs: HashMap<(HuntId, u32), u32>,
    events: Vec<(Event, bool)>,
}

const MODEL_SIZE: i32 = 2_000;

impl Scenario {
    fn new(seed: u64, hunts: Vec<HuntId>, players: u32) -> Scenario {
        let treasures = vec![Vec::new(); hunts.len()];
        Scenario { rng: Rng::new(seed), hunts, players, treasures, seqs: HashMap::new(), events: Vec::new() }
    }

    fn position(&mut self) -> Position {
        Position::new(self.rng.between(0, MODEL_SIZE as i64) as i32, self.rng.between(0, MODEL_SIZE as i64) as i32)
    }

    fn near(&mut self, position: Position) -> Position {
        let jitter =
            |rng: &mut Rng, value: i32| (value as i64 + rng.between(-60, 60)).clamp(0, MODEL_SIZE as i64) as i32;
        Position::new(jitter(&mut self.rng, position.x), jitter(&mut self.rng, position.y))
    }

    fn seq(&mut self, hunt: HuntId, player: u32) -> u32 {
        let seq = self.seqs.entry((hunt, player)).or_insert(0);
        *seq += 1;
        *seq
    }

    fn push(&mut self, event: Event) {
        self.events.push((event, false));
    }

    fn place(&mut self, index: usize, id: u32) {
        let hunt = self.hunts[index];
        let position = self.position();
        let radius = self.rng.between(20, 80) as u32;
        let value = SCORE_UNIT as u32 * self.rng.between(1, 20) as u32;
        let mut spec = treasure(id, position, radius, value, self.rng.between(1, 4) as u32);
        spec.hint_radius = if self.rng.percent(50) { 0 } else { 600 };
        self.treasures[index].push((id, position));
        self.push(Event::PlaceTreasure { hunt, treasure: spec });
    }

    fn setup(&mut self) {
        for index in 0..self.hunts.len() {
            let hunt = self.hunts[index];
            let options = HuntOptions {
                auto_discover: index % 2 == 0,
                speed_max: 0,
                points: PointsRule::Full,
                claims_per_player_max: if index % 3 == 0 { 3 } else { 0 },
            };
            self.push(Event::CreateHunt { hunt, spec: planar(MODEL_SIZE, options) });
            for id in 0..12 {
                self.place(index, id);
            }
            // Join in player order: players tied at score 0 then rank by id on the
            // server (same event time) and by time here (later joins rank lower) alike.
            for player in 0..self.players {
                let (seq, position) = (self.seq(hunt, player), self.position());
                self.push(Event::Join { hunt, player, seq, position });
            }
            for player in 0..self.players {
                let seq = self.seq(hunt, player);
                self.push(Event::AdjustScore { hunt, player, seq, delta: player as i32 + 1 });
            }
        }
    }

    fn step(&mut self) {
        let index = self.rng.below(self.hunts.len() as u64) as usize;
        let hunt = self.hunts[index];
        let player = self.rng.below(self.players as u64) as u32;
        let target = {
            let treasures = &self.treasures[index];
            treasures[self.rng.below(treasures.len() as u64) as usize]
        };
        let roll = self.rng.below(100);
        let event = match roll {
            0..=34 => {
                let position = if self.rng.percent(60) { self.near(target.1) } else { self.position() };
                let seq = self.seq(hunt, player);
                let quiet = self.rng.percent(50);
                self.events.push((Event::Move { hunt, player, seq, position }, quiet));
                return;
            }
            35..=54 => {
                let treasure = if self.rng.percent(5) { 999 } else { target.0 };
                let (seq, position) = (self.seq(hunt, player), self.near(target.1));
                Event::Dig { hunt, player, seq, treasure, position }
            }
            55..=64 => {
                let delta = SCORE_UNIT * self.rng.between(-3, 6) as i32;
                Event::AdjustScore { hunt, player, seq: self.seq(hunt, player), delta }
            }
            65..=67 => {
                // A retry of the last sequence number: refused as a duplicate.
                let seq = *self.seqs.get(&(hunt, player)).unwrap_or(&1);
                Event::Move { hunt, player, seq, position: target.1 }
            }
            68 => Event::Leave { hunt, player, seq: self.seq(hunt, player) },
            69..=72 => {
                let (seq, position) = (self.seq(hunt, player), self.position());
                Event::Join { hunt, player, seq, position }
            }
            73 => {
                let id = self.treasures[index].len() as u32 + 100;
                return self.place(index, id);
            }
            74 if self.rng.percent(30) => Event::RemoveTreasure { hunt, treasure: target.0 },
            75 => Event::Move { hunt, player, seq: self.seq(hunt, player), position: Position::new(MODEL_SIZE + 5, 0) },
            76..=81 => Event::Top { hunt, count: self.rng.below(40) as u32 },
            82..=87 => Event::Rank { hunt, player: if self.rng.percent(5) { self.players + 5 } else { player } },
            88..=91 => Event::Around { hunt, player, radius: self.rng.below(5) as u32 },
            92..=95 => Event::Hint { hunt, player },
            _ => Event::TreasureInfo { hunt, treasure: target.0 },
        };
        self.push(event);
    }
}

/// What the local state machine answers, as the server would put it on the wire.
fn expected_answer(shard: &mut Shard, event: &Event, quiet: bool, time: Micros) -> Answer {
    let outcome = shard.apply(event, time);
    let flags = if quiet { FLAG_QUIET } else { 0 };
    if !reply_wanted(flags, &outcome) {
        return Answer::Quiet;
    }
    let mut frame = Vec::new();
    encode_outcome(1, event.kind(), &outcome, &mut frame);
    match decode_response(&frame).expect("the encoder's frames decode") {
        Response::Reply { body, .. } => Answer::Reply(body),
        Response::Error { code, message, .. } => Answer::Refused { code, message },
        Response::Push(push) => panic!("an outcome encoded as a push: {push:?}"),
    }
}

/// Clears the event times in leaderboard lines: the server's clock is not the model's.
fn without_times(answer: Answer) -> Answer {
    match answer {
        Answer::Reply(ReplyBody::Top { total, mut entries }) => {
            entries.iter_mut().for_each(|entry| entry.reached_at = 0);
            Answer::Reply(ReplyBody::Top { total, entries })
        }
        Answer::Reply(ReplyBody::Around { total, mut entries }) => {
            entries.iter_mut().for_each(|entry| entry.reached_at = 0);
            Answer::Reply(ReplyBody::Around { total, entries })
        }
        other => other,
    }
}

#[test]
fn one_connection_drives_every_shard_and_matches_the_local_state_machine() {
    const SHARDS: usize = 4;
    const STEPS: usize = 30_000;
    const BATCH: usize = 3_000;
    let server = start_with_shards(SHARDS);
    let mut client = connect(&server);
    assert_eq!(client.shard_count(), SHARDS);

    let mut hunts = Vec::new();
    let mut covered = [0u32; SHARDS];
    for hunt in 1_000.. {
        if covered.iter().all(|&count| count >= 2) {
            break;
        }
        let shard = shard_for(hunt, SHARDS);
        if covered[shard] < 2 {
            covered[shard] += 1;
            hunts.push(hunt);
        }
    }
    let mut scenario = Scenario::new(42, hunts, 30);
    scenario.setup();
    for _ in 0..STEPS {
        scenario.step();
    }
    // End one hunt near the end, so later claims there are refused on both sides.
    let ended = scenario.hunts[0];
    let at = scenario.events.len() * 9 / 10;
    scenario.events.insert(at, (Event::EndHunt { hunt: ended }, false));

    let mut model = Shard::new();
    let mut time: Micros = 1;
    for (batch_index, batch) in scenario.events.chunks(BATCH).enumerate() {
        let mut pipeline = client.pipeline();
        for &(event, quiet) in batch {
            match (event, quiet) {
                (Event::Move { hunt, player, seq, position }, true) => {
                    pipeline.push_quiet_move(hunt, player, seq, position).unwrap()
                }
                _ => pipeline.push(&event).unwrap(),
            };
        }
        pipeline.flush().unwrap();
        let answers = pipeline.collect().unwrap();
        assert_eq!(answers.len(), batch.len());
        for (offset, (&(event, quiet), answer)) in batch.iter().zip(answers).enumerate() {
            time += 1;
            let expected = without_times(expected_answer(&mut model, &event, quiet, time));
            let index = batch_index * BATCH + offset;
            assert_eq!(without_times(answer), expected, "event {index}: {event:?} (quiet: {quiet})");
        }
    }
    server.shutdown().unwrap();
}

/// An UNSUBSCRIBE is answered by the connection's own shard at once, so for a hunt another
/// shard owns its reply overtakes the quiet moves sent before it; it must not settle them
/// as silently applied (their refusal or their claims arrive later and are the answers).
#[test]
fn a_pipeline_does_not_settle_quiet_moves_on_an_unsubscribe_reply() {
    let server = start_with_shards(2);
    let mut client = connect(&server);
    // One hunt owned by each shard: whichever shard serves the connection, one is remote.
    let hunts: Vec<HuntId> = hunt_per_shard(2);
    let options = HuntOptions { auto_discover: true, ..HuntOptions::default() };
    for &hunt in &hunts {
        client.create_hunt(hunt, &planar(1_000, options)).unwrap();
        client.place_treasure(hunt, &treasure(1, Position::new(100, 100), 5, 10, 1)).unwrap();
        client.join(hunt, 1, 1, Position::new(10, 10)).unwrap();
    }
    let mut pipeline = client.pipeline();
    for &hunt in &hunts {
        pipeline.push_quiet_move(hunt, 1, 2, Position::new(5_000, 10)).unwrap();
        pipeline.push_quiet_move(hunt, 1, 3, Position::new(100, 100)).unwrap();
        pipeline.push_request(&Request::Unsubscribe { hunt }, false).unwrap();
    }
    pipeline.flush().unwrap();
    let answers = pipeline.collect().unwrap();
    for (&hunt, answers) in hunts.iter().zip(answers.chunks(3)) {
        let owner = shard_for(hunt, 2);
        match &answers[0] {
            Answer::Refused { code, .. } => assert_eq!(*code, 123, "hunt {hunt} (shard {owner})"),
            other => panic!("hunt {hunt} (shard {owner}): the out-of-bounds move was answered {other:?}"),
        }
        match &answers[1] {
            Answer::Reply(ReplyBody::Moved { claims }) => assert_eq!(claims.len(), 1, "hunt {hunt}"),
            other => panic!("hunt {hunt} (shard {owner}): the claiming move was answered {other:?}"),
        }
        assert_eq!(answers[2], Answer::Reply(ReplyBody::Unsubscribed), "hunt {hunt}");
    }
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------
// 3. Pushes.

#[test]
fn a_subscriber_sees_every_discovery_in_sequence_order() {
    const HUNT: HuntId = 21;
    const PLAYERS: u32 = 20;
    const TREASURES: u32 = 10;
    let server = start_with_shards(2);
    let mut driver = connect(&server);
    let mut subscriber = connect(&server);
    driver.create_hunt(HUNT, &planar(10_000, HuntOptions::default())).unwrap();
    let spot = |treasure: u32| Position::new(100 + 200 * treasure as i32, 100);
    for id in 0..TREASURES {
        driver.place_treasure(HUNT, &treasure(id, spot(id), 10, 10, PLAYERS)).unwrap();
    }
    let sequences = subscriber.subscribe(HUNT, Topic::Discoveries.bit()).unwrap();
    assert_eq!(sequences[Topic::Discoveries as usize], 0);

    let mut pipeline = driver.pipeline();
    for player in 0..PLAYERS {
        pipeline.push(&Event::Join { hunt: HUNT, player, seq: 1, position: spot(0) }).unwrap();
    }
    for player in 0..PLAYERS {
        for id in 0..TREASURES {
            let event = Event::Dig { hunt: HUNT, player, seq: 2 + id, treasure: id, position: spot(id) };
            pipeline.push(&event).unwrap();
        }
    }
    pipeline.flush().unwrap();
    for answer in pipeline.collect().unwrap() {
        answer.into_result().expect("every join and dig succeeds");
    }

    let total = (PLAYERS * TREASURES) as u64;
    for expected_seq in 1..=total {
        let push = subscriber.next_push(WAIT).unwrap().expect("a discovery push arrives");
        match push {
            PushBody::Notice(notice) => {
                assert_eq!((notice.hunt, notice.seq), (HUNT, expected_seq));
                assert!(matches!(notice.kind, NoticeKind::Discovery { .. }), "{notice:?}");
            }
            other => panic!("expected discovery {expected_seq}, got {other:?}"),
        }
    }
    assert_eq!(subscriber.next_push(Duration::from_millis(200)).unwrap(), None);
    server.shutdown().unwrap();
}

#[test]
fn subscribing_to_a_missing_hunt_is_refused_on_every_shard_and_leaves_nothing_behind() {
    let server = start_with_shards(2);
    let mut client = connect(&server);
    // One hunt owned by each shard, so both the local and the cross-shard path refuse.
    let hunts: Vec<HuntId> = (0..2).map(|shard| (100..).find(|&hunt| shard_for(hunt, 2) == shard).unwrap()).collect();
    for &hunt in &hunts {
        match client.subscribe(hunt, Topic::Discoveries.bit()) {
            Err(ClientError::Rejected { code, .. }) => assert_eq!(code, Rejection::HuntNotFound.code()),
            other => panic!("subscribing to missing hunt {hunt}: {other:?}"),
        }
    }
    for &hunt in &hunts {
        client.create_hunt(hunt, &planar(1_000, HuntOptions::default())).unwrap();
        // No discovery yet; the hunt announced its start when it was created.
        assert_eq!(client.subscribe(hunt, Topic::Discoveries.bit()).unwrap(), [0, 0, 1]);
        client.place_treasure(hunt, &treasure(1, Position::new(10, 10), 5, 10, 1)).unwrap();
        client.join(hunt, 1, 1, Position::new(10, 10)).unwrap();
        client.dig(hunt, 1, 2, 1, Position::new(10, 10)).unwrap();
        match client.next_push(WAIT).unwrap() {
            Some(PushBody::Notice(notice)) => assert_eq!((notice.hunt, notice.seq), (hunt, 1)),
            other => panic!("expected the discovery on hunt {hunt}, got {other:?}"),
        }
    }
    // Only the two accepted subscriptions are counted (the refused ones were undone).
    thread::sleep(Duration::from_millis(300));
    let stats = client.stats().unwrap();
    assert_eq!(stat_u64(&stats, &["subscribers"]), 2, "{stats}");
    server.shutdown().unwrap();
}

/// Reads frames from a raw connection until `done` says the responses so far suffice, or
/// fails once `WAIT` passes.
fn read_until(stream: &mut TcpStream, done: impl Fn(&[Response]) -> bool) -> Vec<Response> {
    use std::io::Read;
    let deadline = Instant::now() + WAIT;
    let mut buffer = Vec::new();
    let mut responses = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while !done(&responses) {
        assert!(Instant::now() < deadline, "no complete answer within {WAIT:?}: {responses:?}");
        let size = stream
            .read(&mut chunk)
            .unwrap_or_else(|error| panic!("no complete answer within {WAIT:?} ({error}): {responses:?}"));
        assert_ne!(size, 0, "the server closed the connection: {responses:?}");
        buffer.extend_from_slice(&chunk[..size]);
        while let Some(size) = cairn::protocol::next_frame(&buffer).unwrap() {
            responses.push(decode_response(&buffer[..size]).unwrap());
            buffer.drain(..size);
        }
    }
    responses
}

#[test]
fn a_refused_subscribe_does_not_undo_a_later_one_pipelined_behind_it() {
    let server = start_with_shards(2);
    let mut stream = raw_connect(&server);
    let mut bytes = hello(1, 1);
    // One hunt owned by each shard, so one of them is subscribed across the rings.
    let hunts: Vec<HuntId> = hunt_per_shard(2);
    for (index, &hunt) in hunts.iter().enumerate() {
        let base = 100 * (index as u32 + 1);
        let topics = Topic::Discoveries.bit();
        // Refused: the hunt does not exist yet. The second SUBSCRIBE, sent before the
        // refusal came back, follows the hunt just created.
        bytes.extend(frame(base, &Request::Subscribe { hunt, topics }));
        bytes.extend(frame(
            base + 1,
            &Request::Event(Event::CreateHunt { hunt, spec: planar(1_000, HuntOptions::default()) }),
        ));
        bytes.extend(frame(base + 2, &Request::Subscribe { hunt, topics }));
        let treasure = treasure(1, Position::new(10, 10), 5, 10, 1);
        bytes.extend(frame(base + 3, &Request::Event(Event::PlaceTreasure { hunt, treasure })));
        let position = Position::new(10, 10);
        bytes.extend(frame(base + 4, &Request::Event(Event::Join { hunt, player: 1, seq: 1, position })));
        let dig = Event::Dig { hunt, player: 1, seq: 2, treasure: 1, position };
        bytes.extend(frame(base + 5, &Request::Event(dig)));
        // Answered after the DIG's push, which travels ahead of it on the same path.
        bytes.extend(frame(base + 6, &Request::Event(Event::Rank { hunt, player: 1 })));
    }
    stream.write_all(&bytes).unwrap();
    let last_ids = [106, 206];
    let responses = read_until(&mut stream, |responses| {
        let answered = |id| {
            responses.iter().any(|response| matches!(response, Response::Reply { request_id, .. } if *request_id == id))
        };
        last_ids.iter().all(|&id| answered(id))
    });
    for (index, &hunt) in hunts.iter().enumerate() {
        let base = 100 * (index as u32 + 1);
        let refused = responses.iter().any(|response| {
            matches!(response, Response::Error { request_id, code, .. } if *request_id == base && *code == Rejection::HuntNotFound.code())
        });
        assert!(refused, "hunt {hunt}: the first SUBSCRIBE must be refused: {responses:?}");
        let subscribed = responses.iter().any(|response| {
            matches!(response, Response::Reply { request_id, body: ReplyBody::Subscribed { .. } } if *request_id == base + 2)
        });
        assert!(subscribed, "hunt {hunt}: the second SUBSCRIBE must succeed: {responses:?}");
        let discoveries = responses
            .iter()
            .filter(|response| matches!(response, Response::Push(PushBody::Notice(notice)) if notice.hunt == hunt))
            .count();
        assert_eq!(
            discoveries,
            1,
            "hunt {hunt} (shard {}): the subscriber missed the discovery: {responses:?}",
            shard_for(hunt, 2)
        );
    }
    server.shutdown().unwrap();
}

#[test]
fn a_refused_subscribe_frees_its_in_flight_slot_for_the_requests_behind_it() {
    // One request in flight at a time: the PING waits for the cross-shard SUBSCRIBE's
    // answer before it is decoded.
    let server = start(Config { shards: 2, inflight_requests_per_connection_max: 1, ..Config::default() });
    let mut stream = raw_connect(&server);
    let mut bytes = hello(1, 1);
    // Missing hunts, one owned by each shard, so one SUBSCRIBE crosses the rings.
    for shard in 0..2 {
        let hunt = (300..).find(|&hunt| shard_for(hunt, 2) == shard).unwrap();
        bytes.extend(frame(10 + shard as u32, &Request::Subscribe { hunt, topics: Topic::Discoveries.bit() }));
    }
    bytes.extend(frame(20, &Request::Ping));
    stream.write_all(&bytes).unwrap();
    let responses = read_until(&mut stream, |responses| {
        responses.iter().any(|response| matches!(response, Response::Reply { request_id: 20, .. }))
    });
    let refused = |id| {
        responses.iter().any(|response| {
            matches!(response, Response::Error { request_id, code, .. }
                if *request_id == id && *code == Rejection::HuntNotFound.code())
        })
    };
    assert!(refused(10) && refused(11), "both SUBSCRIBEs must be refused: {responses:?}");
    server.shutdown().unwrap();
}

#[test]
fn deleting_a_hunt_ends_its_subscriptions_on_every_shard() {
    let server = start_with_shards(2);
    let mut stream = raw_greeted(&server);
    // One hunt owned by each shard, so one subscription is held across the rings.
    let hunts: Vec<HuntId> = hunt_per_shard(2);
    let spec = planar(1_000, HuntOptions::default());
    let mut bytes = Vec::new();
    for (index, &hunt) in hunts.iter().enumerate() {
        let base = 100 * (index as u32 + 1);
        bytes.extend(frame(base, &Request::Event(Event::CreateHunt { hunt, spec })));
        bytes.extend(frame(base + 1, &Request::Subscribe { hunt, topics: TOPICS_ALL }));
        bytes.extend(frame(base + 2, &Request::Event(Event::DeleteHunt { hunt })));
    }
    stream.write_all(&bytes).unwrap();
    let deleted = |responses: &[Response], hunt: HuntId| {
        responses.iter().any(|response| {
            matches!(response, Response::Push(PushBody::Notice(notice))
                if notice.hunt == hunt && notice.kind == NoticeKind::Lifecycle(Lifecycle::Deleted))
        })
    };
    read_until(&mut stream, |responses| hunts.iter().all(|&hunt| deleted(responses, hunt)));
    // The same ids again: new hunts the old subscriptions must not follow.
    let mut bytes = Vec::new();
    for (index, &hunt) in hunts.iter().enumerate() {
        let base = 100 * (index as u32 + 1) + 10;
        bytes.extend(frame(base, &Request::Event(Event::CreateHunt { hunt, spec })));
        let treasure = treasure(1, Position::new(10, 10), 5, 10, 1);
        bytes.extend(frame(base + 1, &Request::Event(Event::PlaceTreasure { hunt, treasure })));
        let position = Position::new(10, 10);
        bytes.extend(frame(base + 2, &Request::Event(Event::Join { hunt, player: 1, seq: 1, position })));
        let dig = Event::Dig { hunt, player: 1, seq: 2, treasure: 1, position };
        bytes.extend(frame(base + 3, &Request::Event(dig)));
        // Answered after any push of the DIG, which would travel ahead of it.
        bytes.extend(frame(base + 4, &Request::Event(Event::Rank { hunt, player: 1 })));
    }
    stream.write_all(&bytes).unwrap();
    let responses = read_until(&mut stream, |responses| {
        let answered = |id| {
            responses.iter().any(|response| matches!(response, Response::Reply { request_id, .. } if *request_id == id))
        };
        answered(114) && answered(214)
    });
    let pushes: Vec<&Response> = responses.iter().filter(|response| matches!(response, Response::Push(_))).collect();
    assert!(pushes.is_empty(), "a deleted hunt's subscription followed the new hunt of the same id: {pushes:?}");
    server.shutdown().unwrap();
}

/// A hunt is deleted right behind a flood of notices that fills the reply ring to a
/// subscriber's shard, so the deletion push finds no room there. The subscriber's shard
/// must still end the subscription: the hunt created again under the same id is not
/// followed by it (protocol.md section 9.2: after a *deleted* push the hunt's
/// subscriptions are gone). One hunt per shard and ten subscribers, so some subscriber
/// (unless all ten land on the driver's shard) follows the driver's own shard's hunt
/// across a ring: the driver's frames are then applied in one turn, and the ring fills
/// before the deletion.
#[test]
fn a_deletion_behind_a_full_reply_ring_still_ends_the_subscriptions_on_other_shards() {
    const PLAYERS: u32 = 16;
    const GROUPS: u32 = 15;
    const SUBSCRIBERS: usize = 10;
    const NEW_PLAYER: u32 = 999;
    let server = start(Config {
        shards: 2,
        // The smallest ring: room for about 750 DISCOVERY pushes beside the largest reply.
        ring_size_bytes: 2 * (FRAME_SIZE_MAX + 32),
        ..Config::default()
    });
    let hunts = hunt_per_shard(2);
    let spec = planar(100_000, HuntOptions { auto_discover: true, ..HuntOptions::default() });
    let group_at = |group: u32| Position::new(1_000 * (group as i32 + 1), 1_000);
    let answered = |id: u32| {
        move |responses: &[Response]| {
            responses.iter().any(|response| matches!(response, Response::Reply { request_id, .. } if *request_id == id))
        }
    };
    let mut driver = raw_greeted(&server);
    let mut bytes = Vec::new();
    for &hunt in &hunts {
        bytes.extend(frame(1, &Request::Event(Event::CreateHunt { hunt, spec })));
        // Four treasures on each spot: a move there claims four, four DISCOVERY pushes.
        for id in 0..4 * GROUPS {
            let treasure = treasure(id + 1, group_at(id / 4), 5, 10, 1_000);
            bytes.extend(frame(2, &Request::Event(Event::PlaceTreasure { hunt, treasure })));
        }
        for player in 0..PLAYERS {
            let position = Position::new(0, 0);
            bytes.extend(frame(3, &Request::Event(Event::Join { hunt, player, seq: 1, position })));
        }
    }
    bytes.extend(frame(4, &Request::Ping));
    driver.write_all(&bytes).unwrap();
    read_until(&mut driver, answered(4));
    let mut subscribers: Vec<TcpStream> = (0..SUBSCRIBERS).map(|_| raw_greeted(&server)).collect();
    for subscriber in &mut subscribers {
        let mut bytes = Vec::new();
        for (index, &hunt) in hunts.iter().enumerate() {
            bytes.extend(frame(10 + index as u32, &Request::Subscribe { hunt, topics: TOPICS_ALL }));
        }
        subscriber.write_all(&bytes).unwrap();
        read_until(subscriber, |responses| answered(10)(responses) && answered(11)(responses));
    }

    // Every player visits every spot, then the hunt is deleted, all in one write (fewer
    // frames than a connection is served in one turn).
    for (index, &hunt) in hunts.iter().enumerate() {
        let mut bytes = Vec::new();
        for group in 0..GROUPS {
            for player in 0..PLAYERS {
                let (seq, position) = (2 + group, group_at(group));
                bytes.extend(frame(100, &Request::Event(Event::Move { hunt, player, seq, position })));
            }
        }
        let delete_id = 200 + index as u32;
        bytes.extend(frame(delete_id, &Request::Event(Event::DeleteHunt { hunt })));
        driver.write_all(&bytes).unwrap();
        read_until(&mut driver, answered(delete_id));
    }
    // The same ids again, and a push in each that names a player the old hunts never had.
    let mut bytes = Vec::new();
    for &hunt in &hunts {
        bytes.extend(frame(300, &Request::Event(Event::CreateHunt { hunt, spec })));
        let position = Position::new(0, 0);
        bytes.extend(frame(301, &Request::Event(Event::Join { hunt, player: NEW_PLAYER, seq: 1, position })));
        let adjust = Event::AdjustScore { hunt, player: NEW_PLAYER, seq: 2, delta: 1 };
        bytes.extend(frame(302, &Request::Event(adjust)));
    }
    bytes.extend(frame(303, &Request::Ping));
    driver.write_all(&bytes).unwrap();
    read_until(&mut driver, answered(303));
    // The other shard's pushes may still be on their way to a subscriber.
    thread::sleep(Duration::from_millis(200));
    for subscriber in &mut subscribers {
        let (responses, _) = read_all(subscriber, Duration::from_millis(100));
        let followed: Vec<&Response> = responses
            .iter()
            .filter(|response| {
                matches!(response, Response::Push(PushBody::Notice(notice))
                    if matches!(notice.kind, NoticeKind::TopChanged { player: NEW_PLAYER, .. }))
            })
            .collect();
        assert!(
            followed.is_empty(),
            "a deleted hunt's subscription followed the new hunt of the same id: {followed:?}"
        );
    }
    server.shutdown().unwrap();
}

#[test]
fn a_client_that_closes_its_side_gets_every_reply_it_asked_for() {
    let server = start_with_shards(1);
    let mut stream = raw_connect(&server);
    // More requests than a connection is served in one turn, then the client's FIN.
    let count = 4 * cairn::constants::FRAMES_PER_CONNECTION_PER_TURN_MAX;
    let mut bytes = hello(1, 1);
    for request_id in 0..count {
        bytes.extend(frame(100 + request_id, &Request::Ping));
    }
    stream.write_all(&bytes).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let (responses, end) = read_all(&mut stream, WAIT);
    let pongs =
        responses.iter().filter(|response| matches!(response, Response::Reply { body: ReplyBody::Pong, .. })).count();
    assert_eq!(pongs, count as usize, "PINGs sent before the FIN went unanswered ({end:?})");
    assert_eq!(end, End::Closed);
    server.shutdown().unwrap();
}

#[test]
fn a_new_subscriber_gets_no_push_numbered_at_or_below_what_its_subscribe_reply_reported() {
    let server = start_with_shards(2);
    let mut stream = raw_greeted(&server);
    // One hunt owned by each shard, so one of them is followed across the rings.
    let hunts: Vec<HuntId> = hunt_per_shard(2);
    let position = Position::new(10, 10);
    let mut bytes = Vec::new();
    for (index, &hunt) in hunts.iter().enumerate() {
        let base = 100 * (index as u32 + 1);
        let spec = planar(1_000, HuntOptions::default());
        bytes.extend(frame(base, &Request::Event(Event::CreateHunt { hunt, spec })));
        let treasure = treasure(1, position, 5, 10, 2);
        bytes.extend(frame(base + 1, &Request::Event(Event::PlaceTreasure { hunt, treasure })));
        bytes.extend(frame(base + 2, &Request::Event(Event::Join { hunt, player: 1, seq: 1, position })));
        // Following the hunt's lifecycle already: its notices come to this shard.
        bytes.extend(frame(base + 3, &Request::Subscribe { hunt, topics: Topic::Lifecycle.bit() }));
    }
    stream.write_all(&bytes).unwrap();
    read_until(&mut stream, |responses| {
        [103, 203].iter().all(|&id| {
            responses.iter().any(|response| matches!(response, Response::Reply { request_id, .. } if *request_id == id))
        })
    });
    // A DIG, then a SUBSCRIBE that adds discoveries: its reply reports the DIG's
    // discovery as issued already, so that discovery must not be pushed.
    let mut bytes = Vec::new();
    for (index, &hunt) in hunts.iter().enumerate() {
        let base = 100 * (index as u32 + 1) + 10;
        bytes.extend(frame(base, &Request::Event(Event::Dig { hunt, player: 1, seq: 2, treasure: 1, position })));
        bytes.extend(frame(base + 1, &Request::Subscribe { hunt, topics: TOPICS_ALL }));
        // Answered after any push of the DIG, which would travel ahead of it.
        bytes.extend(frame(base + 2, &Request::Event(Event::Rank { hunt, player: 1 })));
    }
    stream.write_all(&bytes).unwrap();
    let responses = read_until(&mut stream, |responses| {
        [112, 212].iter().all(|&id| {
            responses.iter().any(|response| matches!(response, Response::Reply { request_id, .. } if *request_id == id))
        })
    });
    for (index, &hunt) in hunts.iter().enumerate() {
        let subscribe_id = 100 * (index as u32 + 1) + 11;
        let reported = responses.iter().find_map(|response| match response {
            Response::Reply { request_id, body: ReplyBody::Subscribed { sequences } }
                if *request_id == subscribe_id =>
            {
                Some(sequences[Topic::Discoveries as usize])
            }
            _ => None,
        });
        assert_eq!(
            reported,
            Some(1),
            "hunt {hunt}: the SUBSCRIBE reply must report the DIG's discovery: {responses:?}"
        );
        let early: Vec<&Response> = responses
            .iter()
            .filter(|response| {
                matches!(response, Response::Push(PushBody::Notice(notice))
                    if notice.hunt == hunt && matches!(notice.kind, NoticeKind::Discovery { .. }))
            })
            .collect();
        assert!(
            early.is_empty(),
            "hunt {hunt} (shard {}): pushed a discovery its SUBSCRIBE reply reported as issued: {early:?}",
            shard_for(hunt, 2)
        );
    }
    server.shutdown().unwrap();
}

/// Connects with a small receive buffer and Ethernet's segment size, so unread pushes back
/// up into the server fast: on loopback's 64 KiB segments the kernel would otherwise hold
/// megabytes for a reader that reads nothing.
fn connect_small_buffer(server: &Server) -> Client {
    let address = server.local_addr();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4 * 1024).unwrap();
    socket.set_mss(1460).unwrap();
    socket.connect_timeout(&address.into(), WAIT).unwrap();
    let options = Options { timeout: WAIT, name: "slow subscriber".to_owned() };
    Client::from_stream(socket.into(), &options).unwrap()
}

/// A subscriber of more hunts than the server remembers missed ranges for stops reading:
/// the server cuts it with GOODBYE 11, and the GOODBYE is the last frame it sends. (The
/// soak found GAP notices for the remembered ranges following the GOODBYE.)
#[test]
fn a_cut_subscriber_gets_nothing_after_its_goodbye() {
    const HUNTS: u32 = 20;
    const PLAYERS: u32 = 12;
    const ADJUSTMENTS: u32 = 60_000;
    let server = start(Config {
        shards: 1,
        // The hard limit must lie above the high-water mark plus a frame.
        output_buffer_bytes_high: 16 * 1024,
        subscriber_buffer_bytes_soft: 16 * 1024,
        subscriber_buffer_bytes_max: 256 * 1024,
        ..Config::default()
    });
    let mut driver = connect(&server);
    for hunt in 1..=HUNTS {
        driver.create_hunt(hunt, &planar(1_000, HuntOptions::default())).unwrap();
        for player in 0..PLAYERS {
            driver.join(hunt, player, 1, Position::new(0, 0)).unwrap();
        }
    }
    let mut slow = connect_small_buffer(&server);
    for hunt in 1..=HUNTS {
        slow.subscribe(hunt, TOPICS_ALL).unwrap();
    }
    // Every adjustment lifts a player of one hunt to its top: a TOP_CHANGED push in every
    // hunt in turn, so the misses spread over more ranges than the server remembers.
    let mut seqs = vec![1u32; (HUNTS * PLAYERS) as usize];
    for round in (0..ADJUSTMENTS).step_by(1_000) {
        let mut pipeline = driver.pipeline();
        for step in round..round + 1_000 {
            let hunt = 1 + step % HUNTS;
            let player = (step / HUNTS) % PLAYERS;
            let seq = &mut seqs[((hunt - 1) * PLAYERS + player) as usize];
            *seq += 1;
            pipeline.push(&Event::AdjustScore { hunt, player, seq: *seq, delta: 1_000 }).unwrap();
        }
        for answer in pipeline.execute().unwrap() {
            answer.into_result().expect("every adjustment succeeds");
        }
    }

    let mut goodbye = None;
    let mut after_goodbye = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "the slow subscriber was neither cut nor closed");
        match slow.next_push(Duration::from_millis(500)) {
            Ok(Some(PushBody::Goodbye { code, message })) => goodbye = Some((code, message)),
            Ok(Some(push)) if goodbye.is_some() => after_goodbye.push(push),
            Ok(Some(_)) => {}
            Ok(None) => assert!(goodbye.is_none(), "the connection stayed open after its GOODBYE"),
            Err(ClientError::Goodbye { .. } | ClientError::Closed { .. }) => break,
            Err(error) => panic!("the slow subscriber failed: {error}"),
        }
    }
    let (code, message) = goodbye.expect("the server said GOODBYE before closing");
    assert_eq!(code, ErrorCode::SlowConsumer.to_u16(), "{message}");
    assert!(after_goodbye.is_empty(), "{} frames after the GOODBYE, first {:?}", after_goodbye.len(), after_goodbye[0]);
    let stats = driver.stats().unwrap();
    assert!(stat_u64(&stats, &["subscribers_disconnected"]) >= 1, "{stats}");
    server.shutdown().unwrap();
}

/// A subscriber cut with GOODBYE while its requests wait on another shard gets nothing
/// after the GOODBYE: replies that come back over the ring later are not written
/// (protocol.md section 9.4: the server closes the connection right after a GOODBYE).
/// With the soft limit at 0 every push behind a reply is dropped, and the drops of more
/// hunts than the server remembers missed ranges for cut the connection while the rest
/// of its adjustments are in flight. Each attempt's hunts are owned by one shard, so
/// several attempts have them on the other shard than their connection's.
#[test]
fn replies_from_another_shard_are_not_written_after_a_goodbye() {
    const HUNTS: usize = cairn::constants::GAPS_PER_CONNECTION_MAX + 1;
    const ROUNDS: u32 = 4;
    let server = start(Config { shards: 2, subscriber_buffer_bytes_soft: 0, ..Config::default() });
    let hunts_of =
        |shard: usize| -> Vec<HuntId> { (300..).filter(|&hunt| shard_for(hunt, 2) == shard).take(HUNTS).collect() };
    let mut driver = connect(&server);
    for shard in 0..2 {
        for hunt in hunts_of(shard) {
            driver.create_hunt(hunt, &planar(1_000, HuntOptions::default())).unwrap();
            driver.join(hunt, 1, 1, Position::new(0, 0)).unwrap();
        }
    }
    for attempt in 0..8u32 {
        let hunts = hunts_of(attempt as usize % 2);
        let mut stream = raw_greeted(&server);
        let mut bytes = Vec::new();
        for &hunt in &hunts {
            bytes.extend(frame(10, &Request::Subscribe { hunt, topics: TOPICS_ALL }));
        }
        stream.write_all(&bytes).unwrap();
        read_until(&mut stream, |responses| responses.len() == HUNTS);
        // Every adjustment moves the one player's score: a TOP_CHANGED push behind each reply.
        let mut bytes = Vec::new();
        for round in 0..ROUNDS {
            for &hunt in &hunts {
                let seq = 2 + attempt * ROUNDS + round;
                bytes
                    .extend(frame(100 + round, &Request::Event(Event::AdjustScore { hunt, player: 1, seq, delta: 1 })));
            }
        }
        stream.write_all(&bytes).unwrap();
        let (responses, end) = read_all(&mut stream, WAIT);
        assert_eq!(end, End::Closed, "attempt {attempt}: the cut connection stayed open");
        let goodbye =
            responses.iter().position(|response| matches!(response, Response::Push(PushBody::Goodbye { .. })));
        let goodbye = goodbye.unwrap_or_else(|| panic!("attempt {attempt}: no GOODBYE: {responses:?}"));
        let after = &responses[goodbye + 1..];
        assert!(
            after.is_empty(),
            "attempt {attempt} (hunts of shard {}): {} frames after the GOODBYE, first {:?}",
            attempt % 2,
            after.len(),
            after[0]
        );
    }
    server.shutdown().unwrap();
}

/// With the soft limit at 0 a push is dropped whenever anything is pending, and the
/// ranges dropped must still be told: every sequence number a subscriber does not get is
/// in exactly one GAP, and no GAP names one it got. (A GAP was owed only while output
/// was below the soft limit, a push delivered at it: at 0, never.)
#[test]
fn every_push_dropped_at_the_soft_limit_is_told_in_a_gap_and_no_delivered_one_is() {
    const HUNT: HuntId = 9;
    const PLAYERS: u32 = 12;
    const ROUNDS: u32 = 2_000;
    let server = start(Config { shards: 1, subscriber_buffer_bytes_soft: 0, ..Config::default() });
    let mut driver = connect(&server);
    driver.create_hunt(HUNT, &planar(1_000, HuntOptions::default())).unwrap();
    for player in 0..PLAYERS {
        driver.join(HUNT, player, 1, Position::new(0, 0)).unwrap();
    }
    let mut subscriber = raw_greeted(&server);
    subscriber.write_all(&frame(10, &Request::Subscribe { hunt: HUNT, topics: Topic::Top.bit() })).unwrap();
    let subscribed = read_until(&mut subscriber, |responses| !responses.is_empty());
    let first = match &subscribed[0] {
        Response::Reply { body: ReplyBody::Subscribed { sequences }, .. } => sequences[Topic::Top as usize] + 1,
        other => panic!("SUBSCRIBE answered {other:?}"),
    };
    // Each round lifts a player to the top: TOP_CHANGED pushes, many per turn.
    let mut pipeline = driver.pipeline();
    for round in 0..ROUNDS {
        let (player, seq) = (round % PLAYERS, 2 + round / PLAYERS);
        pipeline.push(&Event::AdjustScore { hunt: HUNT, player, seq, delta: 1_000 }).unwrap();
    }
    for answer in pipeline.execute().unwrap() {
        answer.into_result().expect("every adjustment succeeds");
    }
    // Answered after every push of the adjustments, which were issued before it.
    let last = driver.subscribe(HUNT, Topic::Top.bit()).unwrap()[Topic::Top as usize];
    let (responses, _) = read_all(&mut subscriber, Duration::from_millis(500));
    let mut told = vec![0u32; last as usize + 1];
    for response in &responses {
        match response {
            Response::Push(PushBody::Notice(notice)) => told[notice.seq as usize] += 1,
            Response::Push(PushBody::Gap(gap)) => (gap.first..=gap.last).for_each(|seq| told[seq as usize] += 1),
            other => panic!("the subscriber got {other:?}"),
        }
    }
    let gaps = responses.iter().filter(|response| matches!(response, Response::Push(PushBody::Gap(_)))).count();
    assert!(gaps > 0, "no push was dropped: the test did not reach the soft limit");
    let untold: Vec<usize> = (first as usize..=last as usize).filter(|&seq| told[seq] == 0).collect();
    let twice: Vec<usize> = (first as usize..=last as usize).filter(|&seq| told[seq] > 1).collect();
    assert!(
        untold.is_empty(),
        "{} of {last} pushes neither sent nor in one of {gaps} GAPs, first {:?}",
        untold.len(),
        untold.first()
    );
    assert!(
        twice.is_empty(),
        "{} of {last} pushes told twice (sent and in a GAP), first {:?}",
        twice.len(),
        twice.first()
    );
    server.shutdown().unwrap();
}

/// A connection's own replies fill its output up to the high-water mark plus one frame
/// before the server stops reading it, however fast it reads. A subscriber hard limit
/// below that cut a subscriber that read at once, for pipelining (40 TOP queries and an
/// adjustment: GOODBYE 11 before any reply, with 16 KiB / 64 KiB limits); such limits are
/// now refused, and one just above it cuts nobody who reads.
#[test]
fn a_subscriber_hard_limit_within_reach_of_its_own_replies_is_refused() {
    const HUNT: HuntId = 5;
    let high = Config::default().output_buffer_bytes_high;
    let limits = |max: usize| Config {
        shards: 1,
        subscriber_buffer_bytes_soft: 16 * 1024,
        subscriber_buffer_bytes_max: max,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    for max in [64 * 1024, high, high + FRAME_SIZE_MAX] {
        let error = Server::start(limits(max)).err().unwrap_or_else(|| panic!("a hard limit of {max} was accepted"));
        assert!(error.to_string().contains("high-water mark"), "{error}");
    }
    let server = start(limits(high + FRAME_SIZE_MAX + 1));
    let mut driver = connect(&server);
    driver.create_hunt(HUNT, &planar(1_000, HuntOptions::default())).unwrap();
    let mut pipeline = driver.pipeline();
    for player in 0..1_000 {
        pipeline.push(&Event::Join { hunt: HUNT, player, seq: 1, position: Position::new(0, 0) }).unwrap();
    }
    pipeline.execute().unwrap();
    let mut stream = raw_greeted(&server);
    // About 960 KB of replies, all decoded in one turn (below the high-water mark), then
    // an adjustment whose push meets them.
    let mut bytes = frame(10, &Request::Subscribe { hunt: HUNT, topics: TOPICS_ALL });
    for request_id in 100..140 {
        bytes.extend(frame(request_id, &Request::Event(Event::Top { hunt: HUNT, count: 1_000 })));
    }
    bytes.extend(frame(200, &Request::Event(Event::AdjustScore { hunt: HUNT, player: 7, seq: 2, delta: 5 })));
    stream.write_all(&bytes).unwrap();
    let responses = read_until(&mut stream, |responses| {
        responses.iter().any(|response| {
            matches!(response, Response::Reply { request_id: 200, .. } | Response::Push(PushBody::Goodbye { .. }))
        })
    });
    let goodbye = responses.iter().find(|response| matches!(response, Response::Push(PushBody::Goodbye { .. })));
    assert!(goodbye.is_none(), "a subscriber that reads at once was cut: {goodbye:?}");
    server.shutdown().unwrap();
}

#[test]
fn a_subscriber_that_stops_reading_is_cut_off_or_told_its_gap() {
    const HUNT: HuntId = 31;
    const PLAYERS: u32 = 12;
    // About 7 MB of TOP_CHANGED pushes: beyond what the kernel's socket buffers absorb (the
    // sender's may grow to 4 MiB) on top of the server's soft limit.
    const ROUNDS: u32 = 160_000;
    let server = start(Config {
        shards: 2,
        // The hard limit must lie above the high-water mark plus a frame.
        output_buffer_bytes_high: 16 * 1024,
        subscriber_buffer_bytes_soft: 32 * 1024,
        subscriber_buffer_bytes_max: 1 << 20,
        ..Config::default()
    });
    let mut driver = connect(&server);
    let mut bystander = connect(&server);
    driver.create_hunt(HUNT, &planar(1_000, HuntOptions::default())).unwrap();
    for player in 0..PLAYERS {
        driver.join(HUNT, player, 1, Position::new(0, 0)).unwrap();
        driver.adjust_score(HUNT, player, 2, player as i32 + 1).unwrap();
    }
    let mut slow = connect_small_buffer(&server);
    slow.subscribe(HUNT, TOPICS_ALL).unwrap();

    // Each round lifts the last-ranked player to the top: every rank in the top 10 moves.
    let flood = thread::spawn(move || {
        let mut seqs = [2u32; PLAYERS as usize];
        for round in (0..ROUNDS).step_by(1_000) {
            let mut pipeline = driver.pipeline();
            for step in round..round + 1_000 {
                let player = step % PLAYERS;
                seqs[player as usize] += 1;
                let event = Event::AdjustScore { hunt: HUNT, player, seq: seqs[player as usize], delta: 1_000 };
                pipeline.push(&event).unwrap();
            }
            for answer in pipeline.execute().unwrap() {
                answer.into_result().expect("every adjustment succeeds");
            }
        }
    });
    // Meanwhile the bystander is answered as usual.
    for player in 0..100 {
        bystander.ping().unwrap();
        bystander.rank(HUNT, player % PLAYERS).unwrap();
    }
    flood.join().expect("the flood completes");

    // The slow subscriber reads again: a gap, a jump in sequence numbers, or a goodbye.
    let (mut gaps, mut jumps, mut notices, mut goodbye, mut closed) = (0, 0, 0, None, false);
    let mut last = [0u64; Topic::COUNT];
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match slow.next_push(Duration::from_millis(500)) {
            Ok(Some(PushBody::Notice(notice))) => {
                let topic = notice.kind.topic() as usize;
                if last[topic] != 0 && notice.seq != last[topic] + 1 {
                    jumps += 1;
                }
                assert!(notice.seq > last[topic], "pushes of one topic arrive in order");
                last[topic] = notice.seq;
                notices += 1;
            }
            Ok(Some(PushBody::Gap(gap))) => {
                assert!(gap.first <= gap.last);
                gaps += 1;
            }
            Ok(Some(PushBody::Goodbye { code, message })) => goodbye = Some((code, message)),
            Ok(None) => break,
            Err(ClientError::Goodbye { .. } | ClientError::Closed { .. }) => {
                closed = true;
                break;
            }
            Err(error) => panic!("the slow subscriber failed: {error}"),
        }
    }
    if let Some((code, message)) = &goodbye {
        assert_eq!(*code, ErrorCode::SlowConsumer.to_u16(), "{message}");
    }
    assert!(
        gaps > 0 || jumps > 0 || goodbye.is_some() || closed,
        "the slow subscriber lost nothing: {notices} notices read, last sequence numbers {last:?}"
    );
    let stats = bystander.stats().unwrap();
    let dropped = stat_u64(&stats, &["pushes", "dropped"]);
    let disconnected = stat_u64(&stats, &["subscribers_disconnected"]);
    assert!(dropped > 0 || disconnected > 0, "no drop or disconnect counted: {stats}");
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------
// 4. Malformed input.

fn raw_connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect_timeout(&server.local_addr(), WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// A raw connection that has said HELLO and read the server's reply.
fn raw_greeted(server: &Server) -> TcpStream {
    let mut stream = raw_connect(server);
    stream.write_all(&hello(1, 1)).unwrap();
    read_until(&mut stream, |responses| !responses.is_empty());
    stream
}

/// For each of `shards` shards, the first hunt id from 300 on that it owns.
fn hunt_per_shard(shards: usize) -> Vec<HuntId> {
    (0..shards).map(|shard| (300..).find(|&hunt| shard_for(hunt, shards) == shard).unwrap()).collect()
}

fn frame(request_id: u32, request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(request_id, 0, request, &mut out).unwrap();
    out
}

fn hello(version_min: u16, version_max: u16) -> Vec<u8> {
    frame(1, &Request::Hello { version_min, version_max, name: "raw", token: &[] })
}

/// Sends `bytes` and expects one ERROR frame with `code`, then the close.
fn check_refused(server: &Server, bytes: &[u8], code: ErrorCode) {
    let mut stream = raw_connect(server);
    stream.write_all(bytes).unwrap();
    let (responses, end) = read_all(&mut stream, WAIT);
    let errors: Vec<(u16, String)> = responses
        .iter()
        .filter_map(|response| match response {
            Response::Error { code, message, .. } => Some((*code, message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "{code:?}: expected one ERROR frame, got {responses:?}");
    assert_eq!(errors[0].0, code.to_u16(), "{code:?}: {}", errors[0].1);
    assert_eq!(end, End::Closed, "{code:?}: the server must close the connection");
}

#[test]
fn malformed_input_gets_its_error_frame_and_the_server_keeps_serving() {
    let server = start_with_shards(2);
    let ping = frame(7, &Request::Ping);

    // Garbage: "GET " read as a length is far above the maximum frame size.
    check_refused(&server, b"GET / HTTP/1.1\r\nHost: cairn\r\n\r\n", ErrorCode::FrameTooLarge);
    // An oversize length with no body behind it: refused from the header alone.
    let mut oversize = hello(1, 1);
    oversize.extend_from_slice(&(FRAME_SIZE_MAX as u32 + 1).to_le_bytes());
    oversize.extend_from_slice(&[0x02, 0, 0, 0, 9, 0, 0, 0]);
    check_refused_after_hello(&server, &oversize, ErrorCode::FrameTooLarge);
    // A length below the header size.
    let mut short = hello(1, 1);
    short.extend_from_slice(&[11, 0, 0, 0, 0x02, 0, 0, 0, 9, 0, 0, 0]);
    check_refused_after_hello(&server, &short, ErrorCode::MalformedFrame);
    // An unknown opcode.
    let mut unknown = hello(1, 1);
    unknown.extend_from_slice(&[12, 0, 0, 0, 0x3F, 0, 0, 0, 9, 0, 0, 0]);
    check_refused_after_hello(&server, &unknown, ErrorCode::UnknownOpcode);
    // An unknown opcode with reserved bits set (as in most garbage) is still not a
    // request: it closes, rather than drawing `reserved_bits` and reading on.
    let mut unknown_reserved = hello(1, 1);
    unknown_reserved.extend_from_slice(&[12, 0, 0, 0, 0x3F, 0, 0x5A, 0xA5, 9, 0, 0, 0]);
    check_refused_after_hello(&server, &unknown_reserved, ErrorCode::UnknownOpcode);
    // A version range without version 1.
    check_refused(&server, &hello(2, 9), ErrorCode::UnsupportedVersion);
    // A request before HELLO.
    check_refused(&server, &ping, ErrorCode::HelloRequired);
    // A truncated frame, then the client goes away: the server just closes.
    let mut stream = raw_connect(&server);
    let mut truncated = hello(1, 1);
    truncated.extend_from_slice(&ping[..7]);
    stream.write_all(&truncated).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let (responses, end) = read_all(&mut stream, WAIT);
    assert_eq!(end, End::Closed);
    assert!(
        responses.iter().all(|response| matches!(response, Response::Reply { request_id: 1, .. })
            || matches!(response, Response::Error { code: 1, .. })),
        "{responses:?}"
    );
    // Reserved bits: refused, and the connection stays open.
    let mut stream = raw_connect(&server);
    let mut reserved = frame(8, &Request::Ping);
    reserved[6] = 1;
    stream.write_all(&[hello(1, 1), reserved, ping.clone()].concat()).unwrap();
    let (responses, end) = read_all(&mut stream, Duration::from_millis(300));
    assert_eq!(end, End::Open);
    assert!(matches!(responses[1], Response::Error { request_id: 8, code: 6, .. }), "{responses:?}");
    assert_eq!(responses[2], Response::Reply { request_id: 7, body: ReplyBody::Pong });

    // After all of that, a well-behaved client is served correctly.
    let mut client = connect(&server);
    client.ping().unwrap();
    client.create_hunt(41, &planar(1_000, HuntOptions::default())).unwrap();
    client.place_treasure(41, &treasure(1, Position::new(10, 10), 5, 70, 1)).unwrap();
    assert_eq!(client.join(41, 1, 1, Position::new(0, 0)).unwrap(), (0, 1));
    let claim = client.dig(41, 1, 2, 1, Position::new(12, 10)).unwrap();
    assert_eq!((claim.treasure, claim.index, claim.points, claim.score, claim.rank), (1, 1, 70, 70, 1));
    let error = client.dig(41, 1, 2, 1, Position::new(12, 10)).unwrap_err();
    assert_eq!(error.code(), Some(125), "{error}");
    // Let the shards publish their counters (they do every 100 ms).
    thread::sleep(Duration::from_millis(300));
    let stats = client.stats().unwrap();
    assert!(stat_u64(&stats, &["protocol_errors"]) >= 6, "{stats}");
    server.shutdown().unwrap();
}

/// A first frame the decoder refuses gets the error that names its problem and then the
/// close, as any first frame but a HELLO does (protocol.md section 2): an error that
/// leaves a greeted connection open does not greet this one. The hello timeout is set far
/// beyond the read's wait, so only the refusal itself can close the connection in time.
#[test]
fn a_malformed_first_frame_is_refused_and_closes_the_connection() {
    let server = start(Config { hello_timeout_us: 600_000_000, ..Config::default() });
    let mut reserved_ping = frame(9, &Request::Ping);
    reserved_ping[6] = 1;
    check_refused(&server, &reserved_ping, ErrorCode::ReservedBits);
    let mut reserved_hello = hello(1, 1);
    reserved_hello[7] = 0x80;
    check_refused(&server, &reserved_hello, ErrorCode::ReservedBits);
    server.shutdown().unwrap();
}

/// Like [`check_refused`], for byte strings that start with a valid HELLO.
fn check_refused_after_hello(server: &Server, bytes: &[u8], code: ErrorCode) {
    let mut stream = raw_connect(server);
    stream.write_all(bytes).unwrap();
    let (responses, end) = read_all(&mut stream, WAIT);
    assert!(matches!(responses.first(), Some(Response::Reply { request_id: 1, body: ReplyBody::Hello(_) })));
    assert_eq!(responses.len(), 2, "{code:?}: {responses:?}");
    match &responses[1] {
        Response::Error { code: actual, message, .. } => assert_eq!(*actual, code.to_u16(), "{message}"),
        other => panic!("{code:?}: expected an ERROR frame, got {other:?}"),
    }
    assert_eq!(end, End::Closed, "{code:?}: the server must close the connection");
}

// ---------------------------------------------------------------------------------------
// 5. Graceful shutdown.

#[test]
fn graceful_shutdown_answers_every_request_sent_before_it() {
    const HUNTS: u32 = 8;
    const PLAYERS: u32 = 100;
    let server = start_with_shards(2);
    let mut client = connect(&server);
    let mut pipeline = client.pipeline();
    for hunt in 1..=HUNTS {
        pipeline.push(&Event::CreateHunt { hunt, spec: planar(1_000, HuntOptions::default()) }).unwrap();
        for player in 0..PLAYERS {
            pipeline.push(&Event::Join { hunt, player, seq: 1, position: Position::new(1, 1) }).unwrap();
            pipeline.push_quiet_move(hunt, player, 2, Position::new(2, 2)).unwrap();
            pipeline.push(&Event::Rank { hunt, player }).unwrap();
        }
    }
    let count = pipeline.len();
    pipeline.flush().unwrap();
    let shutdown = thread::spawn(move || server.shutdown());
    let answers = pipeline.collect().expect("every request sent before the shutdown is answered");
    assert_eq!(answers.len(), count);
    for answer in answers {
        answer.into_result().expect("every request succeeds");
    }
    // Then the connection closes, with GOODBYE (shutting down) or without.
    match client.next_push(WAIT) {
        Ok(Some(PushBody::Goodbye { code, .. })) | Err(ClientError::Goodbye { code, .. }) => {
            assert_eq!(code, ErrorCode::ShuttingDown.to_u16())
        }
        Err(ClientError::Closed { .. }) => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }
    shutdown.join().expect("shutdown does not panic").expect("shutdown succeeds");
}

// ---------------------------------------------------------------------------------------
// 6. The binary.

/// Sends SIGTERM to a `cairn serve` child and waits for it to exit; a child still running
/// after `WAIT` is killed and fails the test.
fn stop_with_sigterm(child: &mut std::process::Child) -> std::process::ExitStatus {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the binary did not exit within {WAIT:?} of SIGTERM");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_binary_serves_and_exits_cleanly_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let (address, line) = common::wait_until_ready(&mut child, WAIT);
    assert!(line.ends_with("with 2 shards"), "{line}");

    let mut client = Client::connect(address).unwrap();
    assert_eq!(client.shard_count(), 2);
    client.create_hunt(1, &planar(1_000, HuntOptions::default())).unwrap();
    client.place_treasure(1, &treasure(9, Position::new(100, 100), 10, 50, 1)).unwrap();
    client.join(1, 5, 1, Position::new(0, 0)).unwrap();
    assert_eq!(client.dig(1, 5, 2, 9, Position::new(105, 100)).unwrap().score, 50);

    let status = stop_with_sigterm(&mut child);
    assert!(status.success(), "exit status {status}");
}

#[test]
fn the_binary_serves_with_its_output_streams_full() {
    // Standard output and error on /dev/full: every write fails (ENOSPC), as it does on a full
    // disk or into a pipe whose reader went away. The server must serve regardless.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let full = || Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full"));
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--listen", &listen, "--shards", "2", "--auth-token", "sesame-sixteen-bytes"])
        .stdout(full())
        .stderr(full())
        .spawn()
        .expect("the binary starts");
    let address: SocketAddr = listen.parse().unwrap();
    let deadline = Instant::now() + WAIT;
    let mut client = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the server exited with {status} before serving");
        }
        match Client::connect_with_token(address, &Options::default(), b"sesame-sixteen-bytes") {
            Ok(client) => break client,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("the server did not serve within {WAIT:?}: {error}"),
        }
    };
    client.create_hunt(1, &planar(1_000, HuntOptions::default())).unwrap();
    client.join(1, 5, 1, Position::new(0, 0)).unwrap();
    assert!(child.try_wait().unwrap().is_none(), "the server is still running");
    let status = stop_with_sigterm(&mut child);
    assert!(status.success(), "exit status {status}");
}

/// A new connection the shard cannot set up (a socket option refused, or the poll unable
/// to watch the socket) is closed, counted and logged, and the shard serves on. The
/// failures are injected into the real binary by a preloaded shim (`tests/fault_shim.c`)
/// that fails exactly those calls for the second and third connection.
#[test]
fn a_connection_the_shard_cannot_set_up_is_closed_and_the_shard_serves_on() {
    use std::io::Read;
    let shim = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault_shim.so");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&shim)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fault_shim.c"))
        .arg("-ldl")
        .output()
        .expect("a C compiler (cc) builds the fault shim");
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1"])
        .env("LD_PRELOAD", &shim)
        .env("CAIRN_FAULT_NODELAY", "2")
        .env("CAIRN_FAULT_WATCH", "3")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let (address, _) = common::wait_until_ready(&mut child, WAIT);
    let mut first = Client::connect(address).unwrap();
    first.create_hunt(1, &planar(1_000, HuntOptions::default())).unwrap();
    for which in ["second", "third"] {
        if let Ok(mut client) = Client::connect(address) {
            panic!("the {which} connection was served: {:?}", client.join(1, 9, 1, Position::new(0, 0)));
        }
    }
    let mut fourth = Client::connect(address).expect("the shard serves on");
    fourth.join(1, 5, 1, Position::new(0, 0)).unwrap();
    first.join(1, 6, 1, Position::new(0, 0)).unwrap();
    let stats: serde_json::Value = serde_json::from_str(&first.stats().unwrap()).unwrap();
    assert_eq!((&stats["connections"]["accepted"], &stats["connections"]["failed"]), (&2.into(), &2.into()), "{stats}");
    drop((first, fourth));
    let status = stop_with_sigterm(&mut child);
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(status.success(), "exit status {status}: {log}");
    for cause in ["cannot set TCP_NODELAY on it: Invalid argument", "cannot watch it: No space left on device"] {
        assert!(log.contains(cause), "the log does not say {cause:?}: {log}");
    }
}

/// Runs the binary with `args` and returns its exit status and stderr; a run still going
/// after `WAIT` (a server that started when it should have refused) is killed and fails.
fn run_binary(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env_remove("CAIRN_AUTH_TOKEN")
        .env_remove("CAIRN_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("cairn {args:?} was still running after {WAIT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn the_binary_names_the_flag_of_a_limit_out_of_range() {
    let cases: [(&[&str], &str); 11] = [
        (&["--connections-per-shard", "0"], "--connections-per-shard"),
        (&["--connections-per-shard", "10001"], "--connections-per-shard"),
        (&["--inflight-max", "0"], "--inflight-max"),
        (&["--inflight-max", "1025"], "--inflight-max"),
        (&["--subscriber-buffer-soft", "8388609"], "--subscriber-buffer-soft"),
        (&["--subscriber-buffer-max", "33554433"], "--subscriber-buffer-max"),
        (&["--subscriber-buffer-soft", "100", "--subscriber-buffer-max", "100"], "--subscriber-buffer-soft"),
        (&["--subscriber-buffer-soft", "100", "--subscriber-buffer-max", "100"], "--subscriber-buffer-max"),
        // At or below the output high-water mark (1 MiB) plus a frame: a subscriber would be
        // cut for its own pipelined replies.
        (&["--subscriber-buffer-soft", "16384", "--subscriber-buffer-max", "262144"], "--subscriber-buffer-max"),
        (&["--subscriber-buffer-soft", "16384", "--subscriber-buffer-max", "262144"], "--subscriber-buffer-soft"),
        (&["--subscriber-buffer-max", "1114112"], "--subscriber-buffer-max"),
    ];
    for (flags, flag) in cases {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--shards", "1"];
        args.extend_from_slice(flags);
        let (status, stderr) = run_binary(&args);
        assert!(!status.success(), "{flags:?} must be refused");
        assert!(stderr.contains(flag), "{flags:?}: the message must name {flag}: {stderr}");
    }
}

#[test]
fn a_second_server_on_a_port_in_use_is_refused_naming_the_address() {
    let first = start_with_shards(1);
    let taken = first.local_addr();
    let second = Server::start(Config { listen: taken, shards: 2, ..Config::default() });
    let error = match second {
        Ok(second) => {
            second.shutdown().unwrap();
            panic!("a second server started on {taken}, which the first already listens on");
        }
        Err(error) => error.to_string(),
    };
    assert!(error.contains(&taken.to_string()), "the error must name {taken}: {error}");
    // The first server still answers.
    connect(&first).ping().unwrap();
    first.shutdown().unwrap();

    // An address this host does not have: the message names it too.
    let foreign = SocketAddr::from(([192, 0, 2, 1], 7411));
    let error = Server::start(Config { listen: foreign, ..Config::default() }).err().expect("not this host's address");
    assert!(error.to_string().contains("192.0.2.1:7411"), "{error}");
}

#[test]
fn stats_says_a_refused_connection_once() {
    // A port nobody listens on: bound, then released.
    let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (status, stderr) = run_binary(&["stats", "--addr", &address.to_string()]);
    assert!(!status.success());
    assert!(stderr.contains(&address.to_string()), "{stderr}");
    assert_eq!(stderr.matches("refused").count(), 1, "the cause must be said once: {stderr}");
}

#[test]
fn stats_prints_the_latency_table_in_aligned_columns() {
    let server = start_with_shards(1);
    let mut client = connect(&server);
    client.create_hunt(1, &planar(1_000, HuntOptions::default())).unwrap();
    client.join(1, 5, 1, Position::new(0, 0)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["stats", "--addr", &server.local_addr().to_string()])
        .env_remove("CAIRN_AUTH_TOKEN")
        .env_remove("CAIRN_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines().skip_while(|line| !line.starts_with("latency (us)"));
    let header = lines.next().unwrap_or_else(|| panic!("no latency table: {text}"));
    let rows: Vec<&str> = lines.take_while(|line| !line.starts_with("rejections")).collect();
    assert!(rows.iter().any(|row| row.starts_with("join ")), "{text}");
    assert!(rows.iter().any(|row| row.starts_with("ring queue wait")), "{text}");
    for row in rows {
        assert_eq!(row.len(), header.len(), "a row out of line with the header:\n{header}\n{row}");
    }
    server.shutdown().unwrap();
}

/// `cairn simulate | head -1` or `cairn stats | head -1`: once the reader has gone, the
/// command stops quietly (no panic, no backtrace) with a success status.
#[test]
fn simulate_and_stats_stop_quietly_when_their_reader_goes_away() {
    let server = start_with_shards(1);
    let address = server.local_addr().to_string();
    let commands: [&[&str]; 3] = [
        &["simulate", "--hunts", "1", "--players", "10", "--treasures", "5", "--events", "1000"],
        &["stats", "--addr", &address],
        &["stats", "--json", "--addr", &address],
    ];
    for args in commands {
        // A pipe whose reading end is closed before the command writes: every write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .env_remove("CAIRN_AUTH_TOKEN")
            .env_remove("CAIRN_ADMIN_TOKEN")
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() && stderr.is_empty(), "{args:?}: {}: {stderr}", output.status);
    }
    server.shutdown().unwrap();
}

#[test]
fn simulate_refuses_zero_events_naming_the_flag() {
    let (status, stderr) =
        run_binary(&["simulate", "--events", "0", "--hunts", "1", "--players", "1", "--treasures", "1"]);
    assert!(!status.success(), "zero events has no rate or allocations per event to report: {stderr}");
    assert!(stderr.contains("--events"), "{stderr}");
}

/// The simulator numbers every player of every hunt with a `u32`: sizes whose product
/// passes it are refused with a message naming the flags, before anything is allocated,
/// rather than wrapping (or running out of memory first). Run under a 2 GiB address-space
/// limit, so a build that tries anyway fails fast instead of eating the machine's memory.
#[test]
fn simulate_refuses_sizes_its_player_numbers_cannot_hold_naming_the_flags() {
    let output = Command::new("prlimit")
        .args(["--as=2147483648", "--"])
        .arg(env!("CARGO_BIN_EXE_cairn"))
        .args(["simulate", "--hunts", "65536", "--players", "1000000", "--treasures", "1", "--events", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{}", stderr.lines().next().unwrap_or_default());
    assert!(stderr.contains("--hunts") && stderr.contains("--players"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("set-up"), "the set-up ran");
    // Sizes within the bound still run.
    let (status, stderr) =
        run_binary(&["simulate", "--hunts", "4", "--players", "3", "--treasures", "65536", "--events", "1"]);
    assert!(status.success(), "{stderr}");
}

/// Each simulated mutation takes its player's next sequence number, a `u32`: more events
/// than the players' sequence numbers can count are refused naming `--events`, rather
/// than run for minutes and wrap into a stream of duplicates.
#[test]
fn simulate_refuses_more_events_than_the_players_sequence_numbers_can_count() {
    let events = ((1u64 << 31) + 1).to_string();
    let (status, stderr) =
        run_binary(&["simulate", "--hunts", "1", "--players", "1", "--treasures", "1", "--events", &events]);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("--events") && stderr.contains("sequence number"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// 7. Zero allocations per event on the shard threads.

#[test]
fn the_network_path_allocates_nothing_per_event() {
    check_no_allocations_per_event(Config { shards: 2, ..Config::default() });
}

#[test]
fn the_network_path_allocates_nothing_per_event_with_the_journal_on() {
    let dir = std::env::temp_dir().join(format!("cairn-server-{}-journal-allocations", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config { shards: 2, durability: Durability::Os, data_dir: Some(dir.clone()), ..Config::default() };
    check_no_allocations_per_event(config);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn check_no_allocations_per_event(config: Config) {
    use cairn::simulate::{Config as WorkloadConfig, Workload};
    const EVENTS: usize = 200_000;
    let server = start(config);
    let mut client = connect(&server);
    let config =
        WorkloadConfig { hunts: 8, players_per_hunt: 500, treasures_per_hunt: 100, ..WorkloadConfig::default() };
    let mut workload = Workload::new(config);
    let setup = set_up_workload(&mut client, &mut workload);
    let mut rng = Rng::new(7);
    send_workload(&mut client, &mut workload, 50_000, &mut rng);

    // Mark once every shard has published the warm-up; read once they published the rest.
    let warm = (setup + 50_000) as u64;
    common::stats_counting(&mut client, warm, WAIT);
    client.stats_and_mark().unwrap();
    send_workload(&mut client, &mut workload, EVENTS, &mut rng);
    let stats = common::stats_counting(&mut client, warm + EVENTS as u64, WAIT).to_string();
    let events = stat_u64(&stats, &["allocations", "events_since_mark"]);
    let allocations = stat_u64(&stats, &["allocations", "since_mark"]);
    assert!(events >= EVENTS as u64, "only {events} events counted since the mark: {stats}");
    assert_eq!(allocations, 0, "{allocations} allocations over {events} events: {stats}");
    server.shutdown().unwrap();
}
