//! Shared-secret authentication over real loopback sockets: a server started with an
//! auth token refuses a HELLO with a missing or wrong token (ERROR 13, closed, nothing
//! pipelined behind it executed) and serves the right one; with an admin token, game
//! clients may play but not create hunts, place treasures or read STATS (ERROR 14, the
//! connection stays open); and the `cairn` binary takes its tokens from flags or the
//! environment, for `serve` and for `stats`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use cairn::client::{Answer, Client, ClientError, Options};
use cairn::event::{Coordinates, Event, HuntOptions, HuntSpec, Micros, Position, TreasureSpec};
use cairn::protocol::{decode_response, encode_request, next_frame, ErrorCode, Request, Response};
use cairn::server::{Config, Secret, Server};
use cairn::shard::shard_for;

/// How long any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(20);

const AUTH_TOKEN: &str = "game-backend-secret-7f3a9c";
const ADMIN_TOKEN: &str = "operator-secret-b81d44e0c2";

fn start(auth: Option<&str>, admin: Option<&str>) -> Server {
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shards: 2,
        auth_token: auth.map(|token| Secret::new(token).unwrap()),
        admin_token: admin.map(|token| Secret::new(token).unwrap()),
        ..Config::default()
    };
    Server::start(config).expect("the server starts")
}

fn options() -> Options {
    Options { timeout: WAIT, name: "tests/auth.rs".to_owned() }
}

fn connect(server: &Server, token: &str) -> Result<Client, ClientError> {
    Client::connect_with_token(server.local_addr(), &options(), token.as_bytes())
}

fn planar() -> HuntSpec {
    HuntSpec {
        coordinates: Coordinates::Planar,
        min: Position::new(0, 0),
        max: Position::new(1_000, 1_000),
        start: 0,
        end: Micros::MAX,
        options: HuntOptions::default(),
    }
}

fn treasure(id: u32) -> TreasureSpec {
    TreasureSpec { id, position: Position::new(10, 10), radius: 50, value: 7, capacity: 2, hint_radius: 0 }
}

fn assert_refused(result: Result<Client, ClientError>, code: ErrorCode) {
    match result {
        Err(ClientError::ConnectionRefused { code: actual, message }) => {
            assert_eq!(actual, code.to_u16(), "{message}");
            assert!(!message.is_empty());
        }
        Err(other) => panic!("expected the connection refused with {code:?}, got {other}"),
        Ok(_) => panic!("expected the connection refused with {code:?}, but it was accepted"),
    }
}

fn assert_rejected<T: std::fmt::Debug>(result: Result<T, ClientError>, code: u16) {
    match result {
        Err(ClientError::Rejected { code: actual, message }) => assert_eq!(actual, code, "{message}"),
        other => panic!("expected code {code}, got {other:?}"),
    }
}

const ADMIN_REQUIRED: u16 = ErrorCode::AdminRequired.to_u16();

/// `hunt_not_found`, the state machine's code for a hunt that does not exist.
const HUNT_NOT_FOUND: u16 = 101;

/// Reads frames until the server closes the connection (or `WAIT` passes: a failure).
fn read_until_closed(stream: &mut TcpStream) -> Vec<Response> {
    let deadline = Instant::now() + WAIT;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let now = Instant::now();
        assert!(now < deadline, "the server did not close the connection within {WAIT:?}");
        stream.set_read_timeout(Some(deadline - now)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(size) => buffer.extend_from_slice(&chunk[..size]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(error) => panic!("reading failed: {error}"),
        }
    }
    let mut responses = Vec::new();
    let mut rest = &buffer[..];
    while let Some(size) = next_frame(rest).unwrap() {
        responses.push(decode_response(&rest[..size]).unwrap());
        rest = &rest[size..];
    }
    responses
}

fn frame(request_id: u32, request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(request_id, 0, request, &mut out).unwrap();
    out
}

#[test]
fn an_auth_token_keeps_strangers_out_and_lets_its_holders_in() {
    let server = start(Some(AUTH_TOKEN), None);
    // No token, a wrong token, the token cut short, the token with a byte changed.
    assert_refused(connect(&server, ""), ErrorCode::Unauthorized);
    assert_refused(connect(&server, "not-the-secret-at-all-00"), ErrorCode::Unauthorized);
    assert_refused(connect(&server, &AUTH_TOKEN[..AUTH_TOKEN.len() - 1]), ErrorCode::Unauthorized);
    let mut changed = AUTH_TOKEN.as_bytes().to_vec();
    changed[0] ^= 1;
    assert_refused(Client::connect_with_token(server.local_addr(), &options(), &changed), ErrorCode::Unauthorized);

    // Requests pipelined behind a refused HELLO are never executed: the hunt they would
    // create does not exist afterwards.
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    let hello = Request::Hello { version_min: 1, version_max: 1, name: "stranger", token: b"wrong-token-wrong-token" };
    let create = Request::Event(cairn::event::Event::CreateHunt { hunt: 66, spec: planar() });
    stream.write_all(&[frame(1, &hello), frame(2, &create), frame(3, &Request::Ping)].concat()).unwrap();
    let responses = read_until_closed(&mut stream);
    assert_eq!(responses.len(), 1, "only the refusal comes back: {responses:?}");
    assert!(matches!(&responses[0], Response::Error { request_id: 1, code: 13, .. }), "{responses:?}");

    // The right token: every operation, admin ones included (no admin token is set).
    let mut client = connect(&server, AUTH_TOKEN).expect("the right token is accepted");
    assert_rejected(client.top(66, 1), HUNT_NOT_FOUND);
    client.create_hunt(1, &planar()).unwrap();
    client.place_treasure(1, &treasure(1)).unwrap();
    client.join(1, 9, 1, Position::new(0, 0)).unwrap();
    assert_eq!(client.dig(1, 9, 2, 1, Position::new(12, 10)).unwrap().score, 7);
    // Let the shards publish their counters (every 100 ms).
    thread::sleep(Duration::from_millis(300));
    let stats: serde_json::Value = serde_json::from_str(&client.stats().unwrap()).unwrap();
    assert_eq!(stats["connections"]["unauthorized"], 5, "{stats}");
    server.shutdown().unwrap();
}

#[test]
fn an_admin_token_reserves_setup_and_stats_to_its_holders() {
    let server = start(Some(AUTH_TOKEN), Some(ADMIN_TOKEN));
    assert_refused(connect(&server, ""), ErrorCode::Unauthorized);
    assert_refused(connect(&server, "operator-secret-b81d44e0c3"), ErrorCode::Unauthorized);
    let mut admin = connect(&server, ADMIN_TOKEN).expect("the admin token is accepted");
    let mut player = connect(&server, AUTH_TOKEN).expect("the auth token is accepted");

    // A game client cannot set up hunts or read STATS, and its connection stays open.
    assert_rejected(player.create_hunt(1, &planar()), ADMIN_REQUIRED);
    assert_rejected(player.stats(), ADMIN_REQUIRED);
    player.ping().unwrap();

    admin.create_hunt(1, &planar()).unwrap();
    assert_rejected(player.place_treasure(1, &treasure(1)), ADMIN_REQUIRED);
    admin.place_treasure(1, &treasure(1)).unwrap();
    // It plays as usual.
    assert_eq!(player.join(1, 5, 1, Position::new(0, 0)).unwrap(), (0, 1));
    assert_eq!(player.dig(1, 5, 2, 1, Position::new(10, 11)).unwrap().points, 7);
    assert_eq!(player.top(1, 10).unwrap().1[0].player, 5);
    assert_rejected(player.remove_treasure(1, 1), ADMIN_REQUIRED);
    assert_rejected(player.end_hunt(1), ADMIN_REQUIRED);
    assert_rejected(player.delete_hunt(1), ADMIN_REQUIRED);
    // Nothing the refused requests asked for happened: the treasure is still there and
    // the hunt still runs.
    assert_eq!(admin.treasure_info(1, 1).unwrap().claimed, 1);
    assert_eq!(player.join(1, 6, 1, Position::new(0, 0)).unwrap().1, 2);
    admin.end_hunt(1).unwrap();

    thread::sleep(Duration::from_millis(300));
    let stats: serde_json::Value = serde_json::from_str(&admin.stats().unwrap()).unwrap();
    assert_eq!(stats["admin_refusals"], 6, "{stats}");
    assert_eq!(stats["connections"]["unauthorized"], 2, "{stats}");
    server.shutdown().unwrap();
}

/// An `admin_required` refusal is sent by the connection's own shard at once, so for a
/// hunt another shard owns it overtakes the quiet moves pipelined before it: a pipeline
/// must not take it as proof that those moves were applied silently.
#[test]
fn an_admin_refusal_does_not_settle_earlier_quiet_moves_in_a_pipeline() {
    let server = start(Some(AUTH_TOKEN), Some(ADMIN_TOKEN));
    let mut admin = connect(&server, ADMIN_TOKEN).unwrap();
    let mut player = connect(&server, AUTH_TOKEN).unwrap();
    // One hunt owned by each shard: whichever shard serves the player, one is remote.
    let hunts: Vec<u32> = (0..2).map(|shard| (40..).find(|&hunt| shard_for(hunt, 2) == shard).unwrap()).collect();
    for &hunt in &hunts {
        admin.create_hunt(hunt, &planar()).unwrap();
        player.join(hunt, 1, 1, Position::new(0, 0)).unwrap();
    }
    let mut pipeline = player.pipeline();
    for &hunt in &hunts {
        pipeline.push_quiet_move(hunt, 1, 2, Position::new(5_000, 0)).unwrap();
        pipeline.push(&Event::PlaceTreasure { hunt, treasure: treasure(1) }).unwrap();
    }
    pipeline.flush().unwrap();
    let answers = pipeline.collect().unwrap();
    for (&hunt, answers) in hunts.iter().zip(answers.chunks(2)) {
        let refused = |code: u16| Answer::Refused { code, message: String::new() };
        let codes: Vec<Answer> = answers
            .iter()
            .map(|answer| match answer {
                Answer::Refused { code, .. } => refused(*code),
                other => other.clone(),
            })
            .collect();
        assert_eq!(codes, [refused(123), refused(ADMIN_REQUIRED)], "hunt {hunt} (shard {})", shard_for(hunt, 2));
    }
    server.shutdown().unwrap();
}

#[test]
fn with_only_an_admin_token_anyone_may_play_but_not_administer() {
    let server = start(None, Some(ADMIN_TOKEN));
    let mut admin = connect(&server, ADMIN_TOKEN).unwrap();
    let mut anonymous = connect(&server, "").expect("no token: a player");
    assert_refused(connect(&server, AUTH_TOKEN), ErrorCode::Unauthorized);
    admin.create_hunt(3, &planar()).unwrap();
    assert_rejected(anonymous.create_hunt(4, &planar()), ADMIN_REQUIRED);
    assert_eq!(anonymous.join(3, 1, 1, Position::new(5, 5)).unwrap(), (0, 1));
    server.shutdown().unwrap();
}

#[test]
fn without_tokens_nothing_changes_and_a_token_is_ignored() {
    let server = start(None, None);
    let mut plain = connect(&server, "").unwrap();
    let mut with_token = connect(&server, "any-token-a-client-happens-to-send").unwrap();
    plain.create_hunt(1, &planar()).unwrap();
    with_token.create_hunt(2, &planar()).unwrap();
    plain.stats().unwrap();
    server.shutdown().unwrap();
}

#[test]
fn a_server_config_refuses_short_or_equal_tokens() {
    assert!(Secret::new("short").is_err());
    let same = Secret::new(AUTH_TOKEN).unwrap();
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        auth_token: Some(same.clone()),
        admin_token: Some(same),
        ..Config::default()
    };
    let error = Server::start(config).err().expect("equal tokens are refused");
    assert!(error.to_string().contains("must differ"), "{error}");
}

// ---------------------------------------------------------------------------------------
// The binary.

/// Starts `cairn serve` on a free loopback port with `env` set; returns it and its address.
fn spawn_serve(args: &[&str], env: &[(&str, &str)]) -> (Child, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
    command.args(["serve", "--listen", "127.0.0.1:0", "--shards", "1"]).args(args);
    command.env_remove("CAIRN_AUTH_TOKEN").env_remove("CAIRN_ADMIN_TOKEN");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("the binary starts");
    let (address, _) = common::wait_until_ready(&mut child, WAIT);
    (child, address)
}

/// Runs `cairn stats --json` against `address` with `env`; its exit status and output.
fn run_stats(address: SocketAddr, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
    command.args(["stats", "--json", "--addr", &address.to_string()]).args(args);
    command.env_remove("CAIRN_AUTH_TOKEN").env_remove("CAIRN_ADMIN_TOKEN");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("cairn stats runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn the_binary_takes_tokens_from_flags_and_the_environment() {
    let (mut child, address) =
        spawn_serve(&[], &[("CAIRN_AUTH_TOKEN", AUTH_TOKEN), ("CAIRN_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let (ok, text) = run_stats(address, &[], &[]);
    assert!(!ok, "stats without a token must fail: {text}");
    assert!(text.contains("unauthorized"), "{text}");
    let (ok, text) = run_stats(address, &[], &[("CAIRN_AUTH_TOKEN", AUTH_TOKEN)]);
    assert!(!ok, "stats with the game token must fail: {text}");
    assert!(text.contains("admin_required"), "{text}");
    let (ok, text) = run_stats(address, &[], &[("CAIRN_ADMIN_TOKEN", ADMIN_TOKEN)]);
    assert!(ok, "stats with the admin token from the environment: {text}");
    assert!(text.contains("\"uptime_us\""), "{text}");
    let (ok, text) = run_stats(address, &["--token", ADMIN_TOKEN], &[]);
    assert!(ok, "stats with --token: {text}");
    let mut player = Client::connect_with_token(address, &options(), AUTH_TOKEN.as_bytes()).unwrap();
    player.ping().unwrap();
    child.kill().ok();
    child.wait().ok();

    // The flag works too, and a token too short to be a secret stops the start.
    let (mut child, address) = spawn_serve(&["--auth-token", AUTH_TOKEN], &[]);
    assert_refused(Client::connect_with_token(address, &options(), b""), ErrorCode::Unauthorized);
    let (ok, text) = run_stats(address, &["--token", AUTH_TOKEN], &[]);
    assert!(ok, "{text}");
    child.kill().ok();
    child.wait().ok();
    let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--listen", "127.0.0.1:0", "--auth-token", "short"])
        .env_remove("CAIRN_AUTH_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--auth-token"), "{stderr}");
    assert!(stderr.contains("16 to 256 bytes"), "{stderr}");
}
