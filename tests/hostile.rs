//! Limits and hostile clients, over real loopback sockets against a real server: more
//! connections than the limit, peers that say nothing or trickle a frame a byte at a
//! time, a peer that pipelines requests and never reads (the server's own RSS measured
//! from /proc, on the `cairn` binary), a connection that arrives while the binary is out
//! of descriptors, a hundred connections of garbage while ten
//! well-behaved clients play a hunt whose results are checked, and the id spaces: ids
//! out of range, hunts never created, and every table filled to its documented limit and
//! then one past it.
//!
//! Timeouts are set short in these tests (hundreds of milliseconds) so they finish in
//! seconds; every wait is bounded by `WAIT`. Nothing asserts on timing.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cairn::alloc;
use cairn::client::{Answer, Client, ClientError, Options};
use cairn::constants::{
    AROUND_RADIUS_MAX, CLAIMS_PER_HUNT_MAX, HUNTS_PER_SHARD_MAX, PLAYERS_PER_HUNT_MAX, TOP_COUNT_MAX,
    TREASURES_PER_HUNT_MAX, TREASURE_CAPACITY_MAX, TREASURE_VALUE_MAX,
};
use cairn::event::{Coordinates, Event, EventKind, HuntId, HuntOptions, HuntSpec, Micros, Position, TreasureSpec};
use cairn::outcome::{Outcome, Rejection};
use cairn::protocol::{encode_request, ErrorCode, PushBody, ReplyBody, Request, Response, TOPICS_ALL};
use cairn::rng::Rng;
use cairn::server::{Config, Server};
use cairn::shard::Shard;
use common::{read_all, End};

/// How long any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(20);

/// The short timeouts most tests here run with, in microseconds.
const SHORT_TIMEOUT_US: u64 = 300_000;

fn start(config: Config) -> Server {
    let config = Config { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..config };
    Server::start(config).expect("the server starts")
}

fn options(name: &str) -> Options {
    Options { timeout: WAIT, name: name.to_owned() }
}

fn connect(server: &Server) -> Client {
    Client::connect_with(server.local_addr(), &options("tests/hostile.rs")).expect("the client connects")
}

fn raw_connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&address, WAIT).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

fn frame(request_id: u32, request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(request_id, 0, request, &mut out).unwrap();
    out
}

fn hello() -> Vec<u8> {
    frame(1, &Request::Hello { version_min: 1, version_max: 1, name: "hostile", token: &[] })
}

fn planar(size: i32) -> HuntSpec {
    HuntSpec {
        coordinates: Coordinates::Planar,
        min: Position::new(0, 0),
        max: Position::new(size, size),
        start: 0,
        end: Micros::MAX,
        options: HuntOptions::default(),
    }
}

fn treasure(id: u32, position: Position, radius: u32, value: u32, capacity: u32) -> TreasureSpec {
    TreasureSpec { id, position, radius, value, capacity, hint_radius: 0 }
}

/// The code of the GOODBYE among `responses`, if there is one.
fn goodbye_code(responses: &[Response]) -> Option<u16> {
    responses.iter().find_map(|response| match response {
        Response::Push(PushBody::Goodbye { code, .. }) => Some(*code),
        _ => None,
    })
}

fn stats(client: &mut Client) -> serde_json::Value {
    serde_json::from_str(&client.stats().unwrap()).expect("STATS is JSON")
}

/// Polls STATS until `done` holds (shards publish their counters every 100 ms).
fn wait_for_stats(client: &mut Client, what: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let document = stats(client);
        if done(&document) {
            return document;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within {WAIT:?}: {document}");
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// 1. More connections than the limit.

#[test]
fn connections_over_the_limit_get_an_error_frame_and_the_others_carry_on() {
    const LIMIT: usize = 8;
    let server = start(Config { shards: 2, connections_max: LIMIT, ..Config::default() });
    let mut clients: Vec<Client> = (0..LIMIT).map(|_| connect(&server)).collect();

    // Through the client: the refusal is a clear error with its code.
    match Client::connect_with(server.local_addr(), &options("one too many")) {
        Err(ClientError::ConnectionRefused { code, message }) => {
            assert_eq!(code, ErrorCode::TooManyConnections.to_u16(), "{message}");
        }
        Err(other) => panic!("expected too_many_connections, got {other}"),
        Ok(_) => panic!("a connection over the limit was served"),
    }
    // Raw, sending nothing: the ERROR frame (request id 0) arrives, then the close.
    let mut stream = raw_connect(server.local_addr());
    let (responses, end) = read_all(&mut stream, WAIT);
    assert_eq!(end, End::Closed);
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert!(matches!(&responses[0], Response::Error { request_id: 0, code: 15, .. }), "{responses:?}");

    // The connections already open are not affected.
    clients[0].create_hunt(1, &planar(1_000)).unwrap();
    for (player, client) in clients.iter_mut().enumerate() {
        client.ping().unwrap();
        client.join(1, player as u32, 1, Position::new(1, 1)).unwrap();
    }
    assert_eq!(clients[3].top(1, 100).unwrap().0, LIMIT as u32);

    // Closing one frees its place: the count is server-wide and exact.
    drop(clients.pop());
    let deadline = Instant::now() + WAIT;
    let mut replacement = loop {
        match Client::connect_with(server.local_addr(), &options("replacement")) {
            Ok(client) => break client,
            Err(ClientError::ConnectionRefused { code: 15, .. }) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(other) => panic!("the freed place was not given back: {other}"),
        }
    };
    replacement.ping().unwrap();
    // Each shard publishes its counters every 100 ms: wait for both to have.
    wait_for_stats(&mut replacement, "the refusals and open connections counted", |document| {
        document["connections"]["refused"].as_u64() >= Some(2) && document["connections"]["open"] == LIMIT
    });
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------
// 2. Slow senders and silent peers.

/// Writes `bytes` one at a time, `pause` apart, until done or the server closes.
fn trickle(mut stream: TcpStream, bytes: Vec<u8>, pause: Duration) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let mut sent = 0;
        for byte in bytes {
            if stream.write_all(&[byte]).is_err() {
                break;
            }
            sent += 1;
            thread::sleep(pause);
        }
        sent
    })
}

#[test]
fn slow_senders_and_silent_peers_are_timed_out_without_holding_the_shard() {
    // One shard, so the well-behaved client shares the thread with the slow peers.
    let server = start(Config {
        shards: 1,
        hello_timeout_us: SHORT_TIMEOUT_US,
        frame_timeout_us: SHORT_TIMEOUT_US,
        ..Config::default()
    });
    let address = server.local_addr();
    // A peer that connects and says nothing.
    let mut silent = raw_connect(address);
    // A peer that trickles its HELLO a byte every 50 ms (19 bytes: about 1 s).
    let mut slow_hello = raw_connect(address);
    let slow_hello_writer = trickle(slow_hello.try_clone().unwrap(), hello(), Duration::from_millis(50));
    // A greeted peer that trickles a PING the same way (12 bytes: 600 ms).
    let mut slow_frame = raw_connect(address);
    slow_frame.write_all(&hello()).unwrap();
    let slow_frame_writer =
        trickle(slow_frame.try_clone().unwrap(), frame(2, &Request::Ping), Duration::from_millis(50));

    // Meanwhile a well-behaved client is served throughout.
    let mut client = connect(&server);
    client.create_hunt(1, &planar(1_000)).unwrap();
    client.place_treasure(1, &treasure(1, Position::new(10, 10), 5, 70, 1)).unwrap();
    for player in 0..50 {
        client.join(1, player, 1, Position::new(0, 0)).unwrap();
        client.ping().unwrap();
    }
    assert_eq!(client.dig(1, 7, 2, 1, Position::new(10, 12)).unwrap().score, 70);

    let (responses, end) = read_all(&mut silent, WAIT);
    assert_eq!(end, End::Closed);
    assert_eq!(goodbye_code(&responses), Some(ErrorCode::HelloTimeout.to_u16()), "{responses:?}");

    let (responses, end) = read_all(&mut slow_hello, WAIT);
    assert_eq!(end, End::Closed);
    assert_eq!(goodbye_code(&responses), Some(ErrorCode::HelloTimeout.to_u16()), "{responses:?}");
    assert!(slow_hello_writer.join().unwrap() < hello().len(), "the slow HELLO was cut off before its end");

    let (responses, end) = read_all(&mut slow_frame, WAIT);
    assert_eq!(end, End::Closed);
    assert!(matches!(responses[0], Response::Reply { request_id: 1, body: ReplyBody::Hello(_) }), "{responses:?}");
    assert_eq!(goodbye_code(&responses), Some(ErrorCode::FrameTimeout.to_u16()), "{responses:?}");
    assert!(
        !responses.iter().any(|response| matches!(response, Response::Reply { request_id: 2, .. })),
        "the trickled PING must not be answered: {responses:?}"
    );
    slow_frame_writer.join().unwrap();

    client.ping().unwrap();
    wait_for_stats(&mut client, "the timeouts counted and the slow peers closed", |document| {
        document["connections"]["timed_out"] == 3 && document["connections"]["open"] == 1
    });
    server.shutdown().unwrap();
}

#[test]
fn an_idle_timeout_closes_quiet_connections_but_not_subscribers() {
    let server = start(Config { shards: 2, idle_timeout_us: SHORT_TIMEOUT_US, ..Config::default() });
    let mut idle = connect(&server);
    let mut subscriber = connect(&server);
    let mut setup = connect(&server);
    setup.create_hunt(5, &planar(100)).unwrap();
    subscriber.subscribe(5, TOPICS_ALL).unwrap();
    thread::sleep(Duration::from_micros(4 * SHORT_TIMEOUT_US));
    match idle.ping() {
        Err(ClientError::Goodbye { code, .. }) => assert_eq!(code, ErrorCode::IdleTimeout.to_u16()),
        other => panic!("expected GOODBYE idle_timeout, got {other:?}"),
    }
    subscriber.ping().expect("a subscriber is never idle");
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------
// 3. A client that pipelines and never reads.

/// Starts `cairn serve` on a free loopback port; returns it and its address.
fn spawn_serve(args: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("CAIRN_AUTH_TOKEN")
        .env_remove("CAIRN_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let (address, _) = common::wait_until_ready(&mut child, WAIT);
    (child, address)
}

/// A process's resident set size, in bytes, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc is readable");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS is listed");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|value| value.parse().ok()).expect("VmRSS in kB");
    kib * 1024
}

/// Kills the child when dropped, so a failed assertion does not leave a server behind.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[test]
fn a_client_that_never_reads_is_bounded_and_disconnected_with_a_reason() {
    const PLAYERS: u32 = 1_000;
    /// Requests the never-reading client pipelines, at most: TOP 1000 frames of 20 bytes,
    /// each answered with 24 020 bytes, so 2.4 GB of replies asked for.
    const REQUESTS_MAX: usize = 100_000;
    /// Requests it must at least get into the socket, for the test to mean anything: a
    /// server that buffered every reply would need 480 MB for these.
    const REQUESTS_MIN: usize = 20_000;
    /// Growth of the server's RSS the test tolerates: the connection's buffers (1 MiB of
    /// output over the high-water mark, a 128 KiB read buffer) and allocator slack.
    const RSS_GROWTH_MAX: u64 = 64 << 20;
    let (child, address) = spawn_serve(&["--shards", "1", "--write-timeout-ms", "2000"]);
    let child = Reaper(child);
    let pid = child.0.id();

    let mut admin = Client::connect_with(address, &options("admin")).unwrap();
    admin.create_hunt(1, &planar(1_000)).unwrap();
    let mut pipeline = admin.pipeline();
    for player in 0..PLAYERS {
        pipeline.push(&Event::Join { hunt: 1, player, seq: 1, position: Position::new(1, 1) }).unwrap();
    }
    pipeline.flush().unwrap();
    pipeline.collect().unwrap();
    assert_eq!(admin.top(1, TOP_COUNT_MAX).unwrap().1.len(), PLAYERS as usize);
    let rss_before = rss_bytes(pid);

    let mut greedy = raw_connect(address);
    greedy.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    greedy.write_all(&hello()).unwrap();
    let top = frame(9, &Request::Event(Event::Top { hunt: 1, count: TOP_COUNT_MAX }));
    let batch: Vec<u8> = top.iter().copied().cycle().take(top.len() * 1_000).collect();
    let mut requests = 0;
    while requests < REQUESTS_MAX {
        // A write that blocks past its timeout: the server stopped reading; enough.
        if greedy.write_all(&batch).is_err() {
            break;
        }
        requests += 1_000;
    }
    assert!(requests >= REQUESTS_MIN, "only {requests} requests got into the socket");
    thread::sleep(Duration::from_millis(300));
    let rss_stalled = rss_bytes(pid);

    // The write timeout passes, the server says GOODBYE slow_consumer and closes.
    let document = wait_for_stats(&mut admin, "the never-reading client timed out", |document| {
        document["connections"]["timed_out"].as_u64() >= Some(1) && document["connections"]["open"] == 1
    });
    let rss_after = rss_bytes(pid);
    let (responses, end) = read_all(&mut greedy, WAIT);
    assert_eq!(end, End::Closed);
    let replies = responses.iter().filter(|response| matches!(response, Response::Reply { .. })).count();
    assert!(replies < requests, "{replies} replies for {requests} requests: the server bounded its output");
    if let Some(code) = goodbye_code(&responses) {
        assert_eq!(code, ErrorCode::SlowConsumer.to_u16());
    }
    eprintln!(
        "never-reading client: {requests} requests sent, {replies} replies read back; server RSS {} MiB before, \
         {} MiB while stalled, {} MiB after the disconnect; {document}",
        rss_before >> 20,
        rss_stalled >> 20,
        rss_after >> 20
    );
    assert!(rss_stalled < rss_before + RSS_GROWTH_MAX, "RSS grew from {rss_before} to {rss_stalled} bytes");
    assert!(rss_after < rss_before + RSS_GROWTH_MAX, "RSS grew from {rss_before} to {rss_after} bytes");
    // The server goes on serving.
    assert_eq!(admin.top(1, 3).unwrap().0, PLAYERS);
}

// ---------------------------------------------------------------------------------------
// 4. Garbage from a hundred connections while ten clients play.

/// One garbage connection's round: connect, send something hostile, read whatever comes
/// back (every frame the server sends must decode), go away. Garbage before HELLO and
/// frames cut short must be closed by the server (framing errors, HELLO and frame
/// timeouts); garbage after a HELLO may also draw errors that leave the connection open
/// (`reserved_bits` on a valid opcode, say), so those rounds end after a short read.
fn garbage_round(address: SocketAddr, rng: &mut Rng) {
    let mut stream = raw_connect(address);
    let mut bytes = Vec::new();
    let mode = rng.below(6);
    match mode {
        // Random bytes from the start.
        0 => bytes.extend((0..rng.between(1, 4_096)).map(|_| rng.next_u64() as u8)),
        // A valid HELLO, then random bytes.
        1 => {
            bytes.extend_from_slice(&hello());
            bytes.extend((0..rng.between(1, 4_096)).map(|_| rng.next_u64() as u8));
        }
        // A valid HELLO, then a valid frame cut short: the frame timeout ends it.
        2 => {
            bytes.extend_from_slice(&hello());
            let dig = Event::Dig { hunt: 500, player: 1, seq: 1, treasure: 1, position: Position::new(0, 0) };
            let whole = frame(3, &Request::Event(dig));
            bytes.extend_from_slice(&whole[..rng.between(1, whole.len() as i64 - 1) as usize]);
        }
        // A HELLO cut short: the hello timeout ends it.
        3 => {
            let whole = hello();
            bytes.extend_from_slice(&whole[..rng.between(1, whole.len() as i64 - 1) as usize]);
        }
        // A valid HELLO, then frames with a sound length and random everything else.
        4 => {
            bytes.extend_from_slice(&hello());
            for _ in 0..rng.between(1, 8) {
                let length = rng.between(12, 80) as u32;
                bytes.extend_from_slice(&length.to_le_bytes());
                bytes.extend((4..length).map(|_| rng.next_u64() as u8));
            }
        }
        // Connect and leave at once.
        _ => return,
    }
    // The server may close before everything is written; that is its right.
    let _ = stream.write_all(&bytes);
    let must_close = matches!(mode, 0 | 2 | 3);
    let (_, end) = read_all(&mut stream, if must_close { WAIT } else { Duration::from_secs(1) });
    if must_close {
        assert_eq!(end, End::Closed, "a garbage connection (mode {mode}) was left open");
    }
}

/// One well-behaved client's share of the scenario: its players join and dig every
/// treasure. Returns the claims won, as (treasure, player, claim index, points).
fn play(address: SocketAddr, client_index: u32, treasures: u32) -> Vec<(u32, u32, u32, u32)> {
    let mut client = Client::connect_with(address, &options("well-behaved")).unwrap();
    let mut claims = Vec::new();
    for player in client_index * 10..client_index * 10 + 10 {
        let position = Position::new(100 + client_index as i32, 100);
        assert_eq!(client.join(500, player, 1, position).unwrap().0, 0);
        for treasure in 1..=treasures {
            match client.dig(500, player, 1 + treasure, treasure, position) {
                Ok(claim) => claims.push((treasure, player, claim.index, claim.points)),
                Err(ClientError::Rejected { code, .. }) if code == Rejection::TreasureExhausted.code() => {}
                Err(error) => panic!("a well-behaved client got an error: {error}"),
            }
        }
    }
    client.ping().unwrap();
    claims
}

#[test]
fn garbage_connections_do_not_disturb_well_behaved_clients() {
    const GARBAGE_CONNECTIONS: u64 = 100;
    const CLIENTS: u32 = 10;
    const TREASURES: u32 = 12;
    const CAPACITY: u32 = 3;
    let server = start(Config {
        shards: 2,
        hello_timeout_us: SHORT_TIMEOUT_US,
        frame_timeout_us: SHORT_TIMEOUT_US,
        ..Config::default()
    });
    let address = server.local_addr();
    let mut setup = connect(&server);
    setup.create_hunt(500, &planar(10_000)).unwrap();
    for id in 1..=TREASURES {
        setup.place_treasure(500, &treasure(id, Position::new(100, 100), 1_000, 10 + id, CAPACITY)).unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let garbage: Vec<_> = (0..GARBAGE_CONNECTIONS)
        .map(|seed| {
            let (stop, rounds) = (Arc::clone(&stop), Arc::clone(&rounds));
            thread::spawn(move || {
                let mut rng = Rng::new(0x6A12_BA6E + seed);
                loop {
                    garbage_round(address, &mut rng);
                    rounds.fetch_add(1, Ordering::Relaxed);
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            })
        })
        .collect();
    let players: Vec<_> = (0..CLIENTS).map(|index| thread::spawn(move || play(address, index, TREASURES))).collect();
    let claims: Vec<(u32, u32, u32, u32)> = players.into_iter().flat_map(|player| player.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    for thread in garbage {
        thread.join().expect("a garbage thread failed");
    }

    // Every treasure was claimed exactly its capacity, with claim indices 1..=capacity,
    // for its value.
    let mut by_treasure: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut scores: HashMap<u32, i64> = HashMap::new();
    for &(treasure, player, index, points) in &claims {
        assert_eq!(points, 10 + treasure);
        by_treasure.entry(treasure).or_default().push(index);
        *scores.entry(player).or_default() += points as i64;
    }
    assert_eq!(by_treasure.len(), TREASURES as usize);
    for (treasure, mut indices) in by_treasure {
        indices.sort_unstable();
        assert_eq!(indices, (1..=CAPACITY).collect::<Vec<_>>(), "treasure {treasure}");
    }
    // The leaderboard holds every player with exactly the points their claims gave.
    let (total, entries) = setup.top(500, TOP_COUNT_MAX).unwrap();
    assert_eq!(total, CLIENTS * 10);
    assert_eq!(entries.len(), (CLIENTS * 10) as usize);
    for entry in &entries {
        assert_eq!(entry.score, scores.get(&entry.player).copied().unwrap_or(0), "player {}", entry.player);
    }
    assert!(entries.windows(2).all(|pair| pair[0].score >= pair[1].score));

    let document =
        wait_for_stats(&mut setup, "the garbage connections closed", |document| document["connections"]["open"] == 1);
    let protocol_errors = document["protocol_errors"].as_u64().unwrap();
    let timed_out = document["connections"]["timed_out"].as_u64().unwrap();
    eprintln!(
        "{} garbage rounds; {protocol_errors} protocol errors, {timed_out} timeouts",
        rounds.load(Ordering::Relaxed)
    );
    assert!(rounds.load(Ordering::Relaxed) >= GARBAGE_CONNECTIONS);
    assert!(protocol_errors > 0, "{document}");
    assert!(timed_out > 0, "{document}");
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------
// 5. Id spaces and table limits.

/// The codes of a batch's answers, 0 for a reply.
fn codes(client: &mut Client, events: &[Event]) -> Vec<u16> {
    let mut pipeline = client.pipeline();
    for event in events {
        pipeline.push(event).unwrap();
    }
    pipeline.flush().unwrap();
    let answers = pipeline.collect().unwrap();
    answers
        .into_iter()
        .map(|answer| match answer {
            Answer::Reply(_) | Answer::Quiet => 0,
            Answer::Refused { code, .. } => code,
        })
        .collect()
}

#[test]
fn ids_out_of_range_and_hunts_never_created_get_clear_errors() {
    let server = start(Config { shards: 2, ..Config::default() });
    let mut client = connect(&server);
    let position = Position::new(1, 1);
    // Every request about a hunt that was never created: hunt_not_found, whichever shard.
    for hunt in [0, 1, 77, u32::MAX] {
        let events = [
            Event::EndHunt { hunt },
            Event::DeleteHunt { hunt },
            Event::PlaceTreasure { hunt, treasure: treasure(1, position, 1, 1, 1) },
            Event::RemoveTreasure { hunt, treasure: 1 },
            Event::Join { hunt, player: 1, seq: 1, position },
            Event::Leave { hunt, player: 1, seq: 1 },
            Event::Move { hunt, player: 1, seq: 1, position },
            Event::Dig { hunt, player: 1, seq: 1, treasure: 1, position },
            Event::AdjustScore { hunt, player: 1, seq: 1, delta: 1 },
            Event::Top { hunt, count: 1 },
            Event::Rank { hunt, player: 1 },
            Event::Around { hunt, player: 1, radius: 1 },
            Event::Hint { hunt, player: 1 },
            Event::TreasureInfo { hunt, treasure: 1 },
        ];
        assert_eq!(events.len(), EventKind::COUNT - 1, "every kind but CREATE_HUNT");
        assert_eq!(codes(&mut client, &events), vec![Rejection::HuntNotFound.code(); events.len()], "hunt {hunt}");
        let error = client.subscribe(hunt, TOPICS_ALL).unwrap_err();
        assert_eq!(error.code(), Some(Rejection::HuntNotFound.code()), "{error}");
    }
    // The extreme ids are ordinary ids.
    for hunt in [0, u32::MAX] {
        client.create_hunt(hunt, &planar(1_000)).unwrap();
        client.place_treasure(hunt, &treasure(u32::MAX, position, 10, 5, 1)).unwrap();
        client.join(hunt, u32::MAX, 1, position).unwrap();
        assert_eq!(client.dig(hunt, u32::MAX, 2, u32::MAX, position).unwrap().score, 5);
    }
    // Ids and values out of range, each with its own code, on a hunt that exists.
    let hunt = u32::MAX;
    let outside = Position::new(1_001, 5);
    let checks: [(Event, u16); 11] = [
        (Event::CreateHunt { hunt, spec: planar(1_000) }, Rejection::HuntExists.code()),
        (Event::Join { hunt, player: 7, seq: 1, position: outside }, Rejection::OutOfBounds.code()),
        (Event::Rank { hunt, player: 7 }, Rejection::NotJoined.code()),
        (Event::Move { hunt, player: 7, seq: 1, position }, Rejection::NotJoined.code()),
        (Event::Dig { hunt, player: u32::MAX, seq: 3, treasure: 12_345, position }, Rejection::TreasureNotFound.code()),
        (Event::TreasureInfo { hunt, treasure: 0 }, Rejection::TreasureNotFound.code()),
        (Event::Top { hunt, count: TOP_COUNT_MAX + 1 }, 130),
        (Event::Around { hunt, player: u32::MAX, radius: AROUND_RADIUS_MAX + 1 }, 130),
        (
            Event::PlaceTreasure { hunt, treasure: treasure(2, position, 1, 1, TREASURE_CAPACITY_MAX + 1) },
            Rejection::InvalidTreasure("").code(),
        ),
        (
            Event::PlaceTreasure { hunt, treasure: treasure(3, position, 1, TREASURE_VALUE_MAX + 1, 1) },
            Rejection::InvalidTreasure("").code(),
        ),
        (Event::Join { hunt, player: u32::MAX, seq: 1, position }, Rejection::Duplicate { seq: 0, last: 0 }.code()),
    ];
    let events: Vec<Event> = checks.iter().map(|(event, _)| *event).collect();
    let expected: Vec<u16> = checks.iter().map(|(_, code)| *code).collect();
    assert_eq!(codes(&mut client, &events), expected);
    client.ping().unwrap();
    server.shutdown().unwrap();
}

#[test]
fn treasures_fill_a_hunt_to_the_limit_over_sockets_and_one_more_is_refused() {
    const BATCH: u32 = 8_192;
    let server = start(Config { shards: 2, ..Config::default() });
    let mut client = connect(&server);
    client.create_hunt(9, &planar(1 << 20)).unwrap();
    let mut placed = 0;
    while placed < TREASURES_PER_HUNT_MAX {
        let count = BATCH.min(TREASURES_PER_HUNT_MAX - placed);
        let events: Vec<Event> = (placed..placed + count)
            .map(|id| {
                let position = Position::new((id % 1_024) as i32 * 1_000, (id / 1_024) as i32 * 1_000);
                Event::PlaceTreasure { hunt: 9, treasure: treasure(id, position, 10, 1, 1) }
            })
            .collect();
        let refused: Vec<u16> = codes(&mut client, &events).into_iter().filter(|&code| code != 0).collect();
        assert!(refused.is_empty(), "refused below the limit: {:?}", &refused[..refused.len().min(5)]);
        placed += count;
    }
    let one_more = treasure(TREASURES_PER_HUNT_MAX, Position::new(5, 5), 10, 1, 1);
    let error = client.place_treasure(9, &one_more).unwrap_err();
    assert_eq!(error.code(), Some(Rejection::TreasureLimit.code()), "{error}");
    assert!(error.to_string().contains("treasure"), "{error}");

    // The sum of capacities has its own limit: 40 treasures of the largest capacity fill
    // it exactly, and one more claim's worth is refused.
    client.create_hunt(10, &planar(1_000)).unwrap();
    let full = CLAIMS_PER_HUNT_MAX / TREASURE_CAPACITY_MAX;
    let events: Vec<Event> = (0..full)
        .map(|id| Event::PlaceTreasure {
            hunt: 10,
            treasure: treasure(id, Position::new(1, 1), 1, 1, TREASURE_CAPACITY_MAX),
        })
        .collect();
    assert!(codes(&mut client, &events).iter().all(|&code| code == 0));
    let error = client.place_treasure(10, &treasure(full, Position::new(1, 1), 1, 1, 1)).unwrap_err();
    assert_eq!(error.code(), Some(Rejection::TreasureLimit.code()), "{error}");
    client.ping().unwrap();
    server.shutdown().unwrap();
}

/// Applies `event` to an in-process shard and returns its rejection, if any.
fn rejection(shard: &mut Shard, event: &Event) -> Option<Rejection> {
    match shard.apply(event, 1) {
        Outcome::Rejected(rejection) => Some(rejection),
        _ => None,
    }
}

/// Live bytes of the whole process, by the counting allocator.
fn live_bytes() -> i64 {
    alloc::process().bytes_live
}

#[test]
fn players_fill_a_hunt_to_the_limit_and_one_more_is_refused() {
    /// Bytes one player may cost, at most: its record, its leaderboard entry and its
    /// map slot, with room for the tables' doubling.
    const PLAYER_BYTES_MAX: i64 = 512;
    assert!(alloc::installed());
    let mut shard = Shard::new();
    assert_eq!(rejection(&mut shard, &Event::CreateHunt { hunt: 1, spec: planar(1_000) }), None);
    let before = live_bytes();
    for player in 0..PLAYERS_PER_HUNT_MAX {
        let join = Event::Join { hunt: 1, player, seq: 1, position: Position::new(1, 1) };
        if let Some(rejection) = rejection(&mut shard, &join) {
            panic!("player {player} refused below the limit: {rejection}");
        }
    }
    let grown = live_bytes() - before;
    let join = Event::Join { hunt: 1, player: PLAYERS_PER_HUNT_MAX, seq: 1, position: Position::new(1, 1) };
    assert_eq!(rejection(&mut shard, &join), Some(Rejection::PlayerLimit));
    // Refusals allocate nothing: the tables stay as they were.
    for player in PLAYERS_PER_HUNT_MAX..PLAYERS_PER_HUNT_MAX + 1_000 {
        let join = Event::Join { hunt: 1, player, seq: 1, position: Position::new(1, 1) };
        assert_eq!(rejection(&mut shard, &join), Some(Rejection::PlayerLimit));
    }
    assert_eq!(live_bytes() - before, grown);
    let per_player = grown / PLAYERS_PER_HUNT_MAX as i64;
    eprintln!("{PLAYERS_PER_HUNT_MAX} players: {} MiB live, {per_player} bytes per player", grown >> 20);
    assert!(per_player <= PLAYER_BYTES_MAX, "{per_player} bytes per player");
    match shard.apply(&Event::Top { hunt: 1, count: 1 }, 1) {
        Outcome::List { total, .. } => assert_eq!(total, PLAYERS_PER_HUNT_MAX),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hunts_fill_a_shard_to_the_limit_in_bounded_memory_and_one_more_is_refused() {
    /// Bytes an empty hunt may cost, at most, so that a shard full of them fits in
    /// 1 GiB: 65 536 hunts of 16 KiB.
    const HUNT_BYTES_MAX: i64 = 16 << 10;
    /// Hunts created before the first memory check, so a hunt that costs too much fails
    /// the test long before the limit would exhaust the machine.
    const PROBE: u32 = 256;
    assert!(alloc::installed());
    let mut shard = Shard::new();
    let before = live_bytes();
    let create = |shard: &mut Shard, hunt: HuntId| rejection(shard, &Event::CreateHunt { hunt, spec: planar(1_000) });
    for hunt in 0..PROBE {
        assert_eq!(create(&mut shard, hunt), None);
    }
    let per_hunt = (live_bytes() - before) / PROBE as i64;
    assert!(
        per_hunt <= HUNT_BYTES_MAX,
        "an empty hunt costs {per_hunt} bytes, so {HUNTS_PER_SHARD_MAX} hunts would need {} MiB: memory per hunt \
         must stay within {HUNT_BYTES_MAX} bytes",
        (per_hunt * HUNTS_PER_SHARD_MAX as i64) >> 20
    );
    for hunt in PROBE..HUNTS_PER_SHARD_MAX {
        if let Some(rejection) = create(&mut shard, hunt) {
            panic!("hunt {hunt} refused below the limit: {rejection}");
        }
    }
    let grown = live_bytes() - before;
    eprintln!("{HUNTS_PER_SHARD_MAX} hunts: {} MiB live", grown >> 20);
    assert!(grown <= HUNT_BYTES_MAX * HUNTS_PER_SHARD_MAX as i64, "{grown} bytes for the hunts");
    assert_eq!(create(&mut shard, HUNTS_PER_SHARD_MAX), Some(Rejection::HuntLimit));
    assert_eq!(create(&mut shard, u32::MAX), Some(Rejection::HuntLimit));
    // A hunt that exists is still reported as such, not as the limit.
    assert_eq!(create(&mut shard, 3), Some(Rejection::HuntExists));
    // Deleting one makes room for exactly one.
    assert!(rejection(&mut shard, &Event::DeleteHunt { hunt: 3 }).is_none());
    assert_eq!(create(&mut shard, u32::MAX), None);
    assert_eq!(create(&mut shard, u32::MAX - 1), Some(Rejection::HuntLimit));
}

// ---------------------------------------------------------------------------------------
// Out of file descriptors.

/// The server runs out of descriptors: a connection that arrives then waits in the
/// kernel's backlog, unanswered. Once a connection closes and frees one, the waiting
/// connection is accepted and served without another connection arriving to wake the
/// listener. `cairn serve` runs under `ulimit -n` in a shell, in a process of its own.
#[test]
fn a_connection_queued_while_out_of_descriptors_is_served_once_one_is_freed() {
    const DESCRIPTORS: u32 = 32;
    let mut child = Command::new("sh")
        .args(["-c", &format!("ulimit -n {DESCRIPTORS} && exec \"$0\" \"$@\"")])
        .arg(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1"])
        .env_remove("CAIRN_AUTH_TOKEN")
        .env_remove("CAIRN_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh starts");
    let (address, _) = common::wait_until_ready(&mut child, WAIT);
    let _reaper = Reaper(child);
    // Greeted connections until one is not answered: that one waits in the backlog.
    let mut served = Vec::new();
    let waiting = loop {
        assert!(
            served.len() < DESCRIPTORS as usize,
            "{} connections served under ulimit -n {DESCRIPTORS}",
            served.len()
        );
        let mut stream = raw_connect(address);
        stream.write_all(&hello()).unwrap();
        if first_response(&mut stream, Duration::from_millis(500)).is_none() {
            break stream;
        }
        served.push(stream);
    };
    assert!(!served.is_empty(), "no connection was served at all");
    // One leaves; its descriptor is freed when the server sees it go.
    drop(served.pop());
    let mut waiting = waiting;
    let response = first_response(&mut waiting, WAIT);
    assert!(
        matches!(response, Some(Response::Reply { body: ReplyBody::Hello(_), .. })),
        "the connection queued while out of descriptors was not served after one was freed: {response:?}"
    );
}

/// The first frame the server sends on `stream` within `wait`, if any.
fn first_response(stream: &mut TcpStream, wait: Duration) -> Option<Response> {
    use std::io::Read;
    let deadline = Instant::now() + wait;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(size) = cairn::protocol::next_frame(&buffer).expect("the server's frames are well formed") {
            return Some(cairn::protocol::decode_response(&buffer[..size]).expect("the server's frames decode"));
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        stream.set_read_timeout(Some(deadline - now)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(size) => buffer.extend_from_slice(&chunk[..size]),
            Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(error) => panic!("reading from the server failed: {error}"),
        }
    }
}
