//! Measures recovery: replay speed of a large journal and restart time, on real files.
//!
//! `cargo run --release --example journal_replay -- [EVENTS] [HUNTS]` writes EVENTS
//! (default 10 million) mutating events of the seeded workload to a journal in a
//! temporary directory, then times, separately: parsing alone (read + CRC + decode),
//! applying the same events from memory (the state machine's own ceiling), a whole
//! recovery from the journal (the restart time), and a restart from a snapshot. The
//! directory is removed at the end. Nothing here asserts a time: it prints.

use std::time::Instant;

use cairn::event::{Event, Micros};
use cairn::journal::{read_journal, recover, Durability, FileStorage, Repair, Writer};
use cairn::shard::Shard;
use cairn::simulate::{Config, Workload};

/// Records per commit while writing the journal: a busy loop turn's worth.
const EVENTS_PER_COMMIT: usize = 4_096;

fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().and_then(|text| text.parse().ok()).unwrap_or(10_000_000);
    let hunts: u32 = args.next().and_then(|text| text.parse().ok()).unwrap_or(10);
    let dir = std::env::temp_dir().join(format!("cairn-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let config = Config { hunts, ..Config::default() };
    let mut workload = Workload::new(config);
    let mut journal: Vec<(Event, Micros)> = Vec::with_capacity(events);
    workload.setup(|event, time| journal.push((*event, time)));
    while journal.len() < events {
        let (event, time) = workload.next_event();
        if event.is_mutation() {
            journal.push((event, time));
        }
    }

    let started = Instant::now();
    let recovered = recover(&mut FileStorage::open(&dir).unwrap(), Repair::Truncate).unwrap();
    let mut writer = Writer::open(FileStorage::open(&dir).unwrap(), Durability::Os, &recovered).unwrap();
    for chunk in journal.chunks(EVENTS_PER_COMMIT) {
        for (event, time) in chunk {
            writer.append(event, *time);
        }
        writer.commit().unwrap();
    }
    drop(writer);
    let bytes: u64 = std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().metadata().unwrap().len()).sum();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "wrote {events} events ({hunts} hunts x {} players x {} treasures) = {:.1} MB in {seconds:.2} s ({:.2} M events/s)",
        config.players_per_hunt,
        config.treasures_per_hunt,
        bytes as f64 / 1e6,
        events as f64 / seconds / 1e6
    );

    let started = Instant::now();
    let mut parsed = 0u64;
    read_journal(&mut FileStorage::open(&dir).unwrap(), 0, Repair::ReadOnly, |_| parsed += 1).unwrap();
    report("parse only (read, CRC32C, decode)", parsed, started);

    let started = Instant::now();
    let mut shard = Shard::new();
    for (event, time) in &journal {
        shard.apply(event, *time);
    }
    report("apply only, from memory", journal.len() as u64, started);
    let digest = shard.digest();
    drop(shard);

    let started = Instant::now();
    let recovered = recover(&mut FileStorage::open(&dir).unwrap(), Repair::Truncate).unwrap();
    report("recovery = restart from the journal alone", recovered.replayed, started);
    assert_eq!(recovered.shard.digest(), digest, "recovery disagrees with the reference");

    let started = Instant::now();
    let mut writer = Writer::open(FileStorage::open(&dir).unwrap(), Durability::Fsync, &recovered).unwrap();
    writer.snapshot(&recovered.shard).unwrap();
    drop(writer);
    println!("snapshot written and synced in {:.3} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let restarted = recover(&mut FileStorage::open(&dir).unwrap(), Repair::Truncate).unwrap();
    println!("restart from the snapshot: {:.3} s", started.elapsed().as_secs_f64());
    assert_eq!(restarted.shard.digest(), digest, "the snapshot disagrees with the reference");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn report(what: &str, count: u64, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!("{what}: {count} events in {seconds:.3} s = {:.2} M events/s", count as f64 / seconds / 1e6);
}
