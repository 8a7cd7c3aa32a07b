//! Measures what durability costs the server: throughput and batch latency in each mode,
//! in one process and one session, so the modes are compared on the same machine state.
//!
//! `cargo run --release --example durability_load -- [EVENTS] [CONNECTIONS] [BATCH]`
//! generates EVENTS (default 1 million) steady-state events of the seeded workload once,
//! splits them by hunt over CONNECTIONS client threads (default 4; one hunt's events stay
//! on one connection, in order), and then, for each of `none`, `os` and `fsync`, starts an
//! in-process server (fresh data directory), sets the hunts up, and sends every thread's
//! events in pipelined batches of BATCH (default 64), waiting for each batch's replies
//! before sending the next. It prints events per second and the p50/p99/p99.9 of a
//! batch's round trip, and each mode relative to `none`. Nothing is asserted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cairn::client::{Client, Options};
use cairn::event::Event;
use cairn::journal::Durability;
use cairn::server::{Config, Server};
use cairn::simulate::{Config as WorkloadConfig, Workload};

struct Measured {
    events_per_second: f64,
    /// Batch round trips, sorted, in microseconds.
    round_trips_us: Vec<u64>,
}

impl Measured {
    fn percentile(&self, percent: f64) -> u64 {
        let index = ((self.round_trips_us.len() as f64 * percent / 100.0) as usize).min(self.round_trips_us.len() - 1);
        self.round_trips_us[index]
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().and_then(|text| text.parse().ok()).unwrap_or(1_000_000);
    let connections: usize = args.next().and_then(|text| text.parse().ok()).unwrap_or(4);
    let batch: usize = args.next().and_then(|text| text.parse().ok()).unwrap_or(64);

    let config =
        WorkloadConfig { hunts: 16, players_per_hunt: 1_000, treasures_per_hunt: 200, ..WorkloadConfig::default() };
    let mut workload = Workload::new(config);
    let mut setup = Vec::new();
    workload.setup(|event, _| setup.push(*event));
    let mut streams: Vec<Vec<Event>> = vec![Vec::new(); connections];
    for _ in 0..events {
        let (event, _) = workload.next_event();
        streams[event.hunt() as usize % connections].push(event);
    }

    let mut baseline: Option<(f64, u64)> = None;
    println!("{events} events, {connections} connections, batches of {batch}, {} shards", Config::default().shards);
    println!(
        "{:<6} {:>12} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "mode", "events/s", "p50 us", "p99 us", "p99.9 us", "vs none", "p99 vs"
    );
    for durability in [Durability::None, Durability::Os, Durability::Fsync] {
        let measured = run(durability, &setup, &streams, batch);
        let p99 = measured.percentile(99.0);
        let (throughput_base, p99_base) = *baseline.get_or_insert((measured.events_per_second, p99));
        println!(
            "{:<6} {:>12.0} {:>9} {:>9} {:>9} {:>9.0}% {:>9.2}x",
            durability.to_string(),
            measured.events_per_second,
            measured.percentile(50.0),
            p99,
            measured.percentile(99.9),
            100.0 * measured.events_per_second / throughput_base,
            p99 as f64 / p99_base as f64
        );
    }
}

fn run(durability: Durability, setup: &[Event], streams: &[Vec<Event>], batch: usize) -> Measured {
    let dir = std::env::temp_dir().join(format!("cairn-durability-load-{}-{durability}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        durability,
        data_dir: (durability != Durability::None).then(|| dir.clone()),
        ..Config::default()
    };
    let server = Server::start(config).expect("the server starts");
    let options = Options { timeout: Duration::from_secs(30), name: "durability_load".to_owned() };
    let mut admin = Client::connect_with(server.local_addr(), &options).expect("connect");
    for chunk in setup.chunks(5_000) {
        let mut pipeline = admin.pipeline();
        for event in chunk {
            pipeline.push(event).expect("queue");
        }
        pipeline.execute().expect("set-up");
    }
    let started = Instant::now();
    let threads: Vec<_> = streams
        .iter()
        .map(|stream| {
            let mut client = Client::connect_with(server.local_addr(), &options).expect("connect");
            let stream = stream.clone();
            std::thread::spawn(move || {
                let mut round_trips_us = Vec::with_capacity(stream.len() / batch + 1);
                for chunk in stream.chunks(batch) {
                    let sent = Instant::now();
                    let mut pipeline = client.pipeline();
                    for event in chunk {
                        pipeline.push(event).expect("queue");
                    }
                    pipeline.execute().expect("the batch is answered");
                    round_trips_us.push(sent.elapsed().as_micros() as u64);
                }
                round_trips_us
            })
        })
        .collect();
    let mut round_trips_us: Vec<u64> =
        threads.into_iter().flat_map(|thread| thread.join().expect("no panic")).collect();
    let elapsed = started.elapsed().as_secs_f64();
    round_trips_us.sort_unstable();
    server.shutdown().expect("a clean stop");
    let _ = std::fs::remove_dir_all(&dir);
    let events: usize = streams.iter().map(Vec::len).sum();
    Measured { events_per_second: events as f64 / elapsed, round_trips_us }
}
