//! Helpers the socket test targets share: reading raw frames until the server closes,
//! waiting for `cairn serve`'s ready line, and driving a seeded workload through a client. Each test target compiles its own copy
//! and uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::Child;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use cairn::client::Client;
use cairn::event::Event;
use cairn::protocol::{decode_response, next_frame, Response};
use cairn::rng::Rng;
use cairn::simulate::Workload;

/// How a raw connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The server closed it (EOF or reset).
    Closed,
    /// It was still open when the wait ended.
    Open,
}

/// Reads frames until the server closes or `wait` passes. Every frame the server sends
/// must decode, whatever the peer sent it.
pub fn read_all(stream: &mut TcpStream, wait: Duration) -> (Vec<Response>, End) {
    let deadline = Instant::now() + wait;
    let mut buffer = Vec::new();
    let mut responses = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some(size) = next_frame(&buffer).expect("the server's frames are well formed") {
            responses.push(decode_response(&buffer[..size]).expect("the server's frames decode"));
            buffer.drain(..size);
        }
        let now = Instant::now();
        if now >= deadline {
            return (responses, End::Open);
        }
        stream.set_read_timeout(Some(deadline - now)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return (responses, End::Closed),
            Ok(size) => buffer.extend_from_slice(&chunk[..size]),
            Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return (responses, End::Closed),
            Err(error) => panic!("reading from the server failed: {error}"),
        }
    }
}

/// Waits up to `wait` for the ready line of a `cairn serve` started with a piped stdout
/// and returns the address it listens on and the line; kills the child if the line does
/// not come.
pub fn wait_until_ready(child: &mut Child, wait: Duration) -> (SocketAddr, String) {
    let stdout = child.stdout.take().expect("cairn serve was started with a piped stdout");
    let (lines, ready) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let Ok(line) = ready.recv_timeout(wait) else {
        child.kill().ok();
        child.wait().ok();
        panic!("no ready line from `cairn serve`");
    };
    let address = line
        .strip_prefix("cairn listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("unexpected ready line: {line}"));
    (address, line)
}

/// Sends the workload's set-up events (hunts, treasures, joins) in pipelines and
/// expects every one to succeed; returns how many there were.
pub fn set_up_workload(client: &mut Client, workload: &mut Workload) -> usize {
    let mut setup = Vec::new();
    workload.setup(|event, _| setup.push(*event));
    for chunk in setup.chunks(5_000) {
        let mut pipeline = client.pipeline();
        for event in chunk {
            pipeline.push(event).unwrap();
        }
        for answer in pipeline.execute().unwrap() {
            answer.into_result().expect("the set-up succeeds");
        }
    }
    setup.len()
}

/// Asks STATS until the document counts at least `events` events in all, and returns it.
/// Each shard publishes its numbers every 100 ms, so a document may lag the replies a
/// client already holds, by more on a loaded machine; a fixed sleep would make a mark
/// taken after it, or a count read after it, depend on the machine. Panics after `wait`.
pub fn stats_counting(client: &mut Client, events: u64, wait: Duration) -> serde_json::Value {
    let deadline = Instant::now() + wait;
    loop {
        let stats: serde_json::Value = serde_json::from_str(&client.stats().unwrap()).expect("STATS is JSON");
        let counted = stats["events_total"].as_u64().expect("STATS counts events");
        if counted >= events {
            return stats;
        }
        assert!(Instant::now() < deadline, "STATS counted {counted} of {events} events after {wait:?}: {stats}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `events` of the workload in pipelines of 10,000, half the moves quiet, and
/// checks every request got its answer.
pub fn send_workload(client: &mut Client, workload: &mut Workload, events: usize, rng: &mut Rng) {
    const BATCH: usize = 10_000;
    let mut remaining = events;
    while remaining > 0 {
        let size = remaining.min(BATCH);
        let mut pipeline = client.pipeline();
        for _ in 0..size {
            match workload.next_event().0 {
                Event::Move { hunt, player, seq, position } if rng.percent(50) => {
                    pipeline.push_quiet_move(hunt, player, seq, position).unwrap()
                }
                event => pipeline.push(&event).unwrap(),
            };
        }
        assert_eq!(pipeline.execute().unwrap().len(), size);
        remaining -= size;
    }
}
