//! Measures a real server restart: how long `cairn serve` takes to recover journals of
//! many events spread over its shards, replayed in parallel, before it listens.
//!
//! `cargo run --release --example server_restart -- [EVENTS] [SHARDS] [HUNTS] [CAIRN]`
//! writes EVENTS (default 10 million) mutating events of the seeded workload into
//! `DIR/shard-k/` journals exactly as a server with SHARDS shards (default 2) would
//! (each event to the shard `shard_for` gives its hunt, through the same `Writer`, a
//! commit every 4,096 events, no snapshot), then starts the CAIRN binary (default
//! `target/release/cairn`) with `serve --durability os` on that directory and times it
//! from spawn to its ready line, three times. It prints the restart time and the
//! aggregate replay rate; nothing is asserted. The directory is removed at the end.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use cairn::journal::{recover, Durability, FileStorage, Repair, Writer, SHARD_DIR_PREFIX};
use cairn::shard::shard_for;
use cairn::simulate::{Config, Workload};

/// Records per commit while writing the journals: a busy loop turn's worth.
const EVENTS_PER_COMMIT: usize = 4_096;
/// Restarts timed.
const RESTARTS: usize = 3;

fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().and_then(|text| text.parse().ok()).unwrap_or(10_000_000);
    let shards: usize = args.next().and_then(|text| text.parse().ok()).unwrap_or(2);
    let hunts: u32 = args.next().and_then(|text| text.parse().ok()).unwrap_or(10);
    let binary = args.next().unwrap_or_else(|| "target/release/cairn".to_owned());
    let dir = std::env::temp_dir().join(format!("cairn-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Written by this build, under its rules, as a server records them.
    std::fs::write(dir.join("rules-version"), format!("{}\n", cairn::constants::RULES_VERSION)).unwrap();
    std::fs::write(dir.join("shards"), format!("{shards}\n")).unwrap();

    let started = Instant::now();
    let mut writers: Vec<_> = (0..shards)
        .map(|index| {
            let shard_dir = dir.join(format!("{SHARD_DIR_PREFIX}{index}"));
            let recovered = recover(&mut FileStorage::open(&shard_dir).unwrap(), Repair::Truncate).unwrap();
            (Writer::open(FileStorage::open(&shard_dir).unwrap(), Durability::Os, &recovered).unwrap(), 0usize)
        })
        .collect();
    let mut workload = Workload::new(Config { hunts, ..Config::default() });
    let mut written = 0usize;
    workload.setup(|event, time| append(&mut writers, shards, event, time, &mut written));
    while written < events {
        let (event, time) = workload.next_event();
        if event.is_mutation() {
            append(&mut writers, shards, &event, time, &mut written);
        }
    }
    for (writer, _) in &mut writers {
        writer.commit().unwrap();
    }
    drop(writers);
    let bytes: u64 = walk_size(&dir);
    println!(
        "wrote {written} events over {shards} shards ({hunts} hunts) = {:.1} MB in {:.1} s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    for restart in 1..=RESTARTS {
        let started = Instant::now();
        let mut child = Command::new(&binary)
            .args(["serve", "--durability", "os", "--listen", "127.0.0.1:0", "--shards", &shards.to_string()])
            .args(["--snapshot-interval-events", &u32::MAX.to_string(), "--data-dir"])
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        let ready = BufReader::new(child.stdout.take().unwrap()).lines().next();
        let seconds = started.elapsed().as_secs_f64();
        assert!(ready.is_some_and(|line| line.is_ok_and(|line| line.starts_with("cairn listening"))));
        println!(
            "restart {restart}: ready after {seconds:.3} s = {:.2} M events/s replayed over {shards} shards",
            written as f64 / seconds / 1e6
        );
        // SIGKILL: a graceful stop would write snapshots and the next restart would not replay.
        child.kill().unwrap();
        child.wait().unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Appends one event to the journal of the shard owning its hunt, committing every
/// `EVENTS_PER_COMMIT` events of that shard.
fn append(
    writers: &mut [(Writer<FileStorage>, usize)],
    shards: usize,
    event: &cairn::event::Event,
    time: cairn::event::Micros,
    written: &mut usize,
) {
    let (writer, pending) = &mut writers[shard_for(event.hunt(), shards)];
    writer.append(event, time);
    *pending += 1;
    if *pending == EVENTS_PER_COMMIT {
        writer.commit().unwrap();
        *pending = 0;
    }
    *written += 1;
}

fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                walk_size(&entry.path())
            } else {
                entry.metadata().unwrap().len()
            }
        })
        .sum()
}
