//! Durability tests: the journal, snapshots and recovery against a simulated disk that
//! crashes, tears and garbles, and against real files.
//!
//! The reference for every check is a plain `Shard` that applied exactly the recovered
//! prefix of the events: recovery is right if and only if it recovered a prefix that
//! includes every acknowledged event, and its state digest equals the reference's.
//! `CAIRN_CRASH_CASES` overrides the number of seeded crashes (1,000 by default).

use cairn::event::{Event, HuntId, Micros, Position, TreasureSpec};
use cairn::journal::{
    decode_snapshot, encode_record, encode_snapshot, recover, Crash, Durability, FileStorage, JournalError, Recovered,
    Repair, SimStorage, Storage, Writer,
};
use cairn::rng::Rng;
use cairn::shard::Shard;
use cairn::simulate::{Config, Workload};

/// The one segment a fresh journal writes to.
const FIRST_SEGMENT: &str = "journal-00000000000000000001.log";

fn small_config(seed: u64, auto_discover: bool) -> Config {
    Config {
        seed,
        hunts: 2,
        players_per_hunt: 12,
        treasures_per_hunt: 8,
        hunt_size: 1_500,
        auto_discover,
        ..Config::default()
    }
}

fn fresh(storage: &SimStorage) -> Recovered {
    recover(&mut storage.clone(), Repair::Truncate).expect("an empty disk recovers")
}

/// A reference shard that applied exactly `events`.
fn reference(events: &[(Event, Micros)]) -> Shard {
    let mut shard = Shard::new();
    for (event, time) in events {
        shard.apply(event, *time);
    }
    shard
}

/// A shard with its journal, logging every event journaled, in sequence order.
struct Journaled<S: Storage> {
    shard: Shard,
    writer: Writer<S>,
    events: Vec<(Event, Micros)>,
    acknowledged: u64,
}

impl<S: Storage> Journaled<S> {
    fn apply(&mut self, event: &Event, time: Micros) {
        self.shard.apply(event, time);
        if event.is_mutation() {
            let seq = self.writer.append(event, time);
            self.events.push((*event, time));
            assert_eq!(seq, self.events.len() as u64);
        }
    }

    fn commit(&mut self) {
        self.acknowledged = self.writer.commit().expect("commit");
    }

    fn snapshot(&mut self) {
        self.acknowledged = self.writer.snapshot(&self.shard).expect("snapshot");
    }
}

// ---------------------------------------------------------------------------------------
// (a) Seeded crashes.

/// One seeded life: set-up, a random number of events with commits and snapshots at
/// random moments, a crash; then recovery, more events, and a second crash. Returns true
/// if and only if the first recovery cut a torn tail.
fn crash_case(seed: u64) -> bool {
    let mut rng = Rng::new(seed ^ 0x5EED);
    let (durability, crash) = match seed % 3 {
        0 => (Durability::Fsync, Crash::PowerLoss),
        1 => (Durability::Os, Crash::Process),
        _ => (Durability::Fsync, Crash::Process),
    };
    let storage = SimStorage::new();
    let writer = Writer::open(storage.clone(), durability, &fresh(&storage)).expect("open");
    let mut life = Journaled { shard: Shard::new(), writer, events: Vec::new(), acknowledged: 0 };
    let mut workload = Workload::new(small_config(seed, seed.is_multiple_of(2)));
    let mut setup = Vec::new();
    workload.setup(|event, time| setup.push((*event, time)));
    for (event, time) in &setup {
        life.apply(event, *time);
    }
    let commit_every = rng.between(1, 25) as u64;
    let snapshot_every = rng.between(20, 200) as u64;
    let steps = rng.between(0, 400) as u64;
    for step in 1..=steps {
        let (event, time) = workload.next_event();
        life.apply(&event, time);
        if step % commit_every == 0 {
            life.commit();
        }
        if step % snapshot_every == 0 {
            life.snapshot();
        }
    }
    if rng.percent(70) {
        // The crash strikes inside a commit: written, but its fdatasync never returned,
        // so nothing of it was acknowledged and a power loss may tear it.
        for _ in 0..rng.between(1, 30) {
            let (event, time) = workload.next_event();
            life.apply(&event, time);
        }
        storage.set_sync_fails(true);
        if let Ok(covered) = life.writer.commit() {
            // Os mode does not sync: the write alone acknowledged the batch.
            assert_eq!(durability, Durability::Os);
            life.acknowledged = covered;
        }
    }
    let survivor = storage.crash(crash, seed);
    let recovered = check_recovery(&survivor, &life.events, life.acknowledged, seed);

    // The recovered journal must take new records without a gap, and survive again.
    let last_seq = recovered.last_seq;
    let torn = recovered.truncation.is_some();
    let writer = Writer::open(survivor.clone(), durability, &recovered).expect("reopen");
    life.events.truncate(last_seq as usize);
    let mut again = Journaled { shard: recovered.shard, writer, events: life.events, acknowledged: last_seq };
    for _ in 0..rng.between(1, 50) {
        let (event, time) = workload.next_event();
        again.apply(&event, time);
    }
    again.commit();
    let twice = survivor.crash(crash, seed.wrapping_mul(31));
    check_recovery(&twice, &again.events, again.acknowledged, seed);
    torn
}

/// Recovers `storage` and checks it against the journaled `events`.
fn check_recovery(storage: &SimStorage, events: &[(Event, Micros)], acknowledged: u64, seed: u64) -> Recovered {
    let recovered = match recover(&mut storage.clone(), Repair::Truncate) {
        Ok(recovered) => recovered,
        Err(error) => panic!("seed {seed}: recovery refused: {error}"),
    };
    assert!(recovered.last_seq >= acknowledged, "seed {seed}: lost acknowledged events");
    assert!(recovered.last_seq <= events.len() as u64, "seed {seed}: recovered more than was journaled");
    let expected = reference(&events[..recovered.last_seq as usize]);
    assert_eq!(recovered.shard.digest(), expected.digest(), "seed {seed}: state differs from the prefix");
    // A second recovery of the repaired disk changes nothing.
    let again = recover(&mut storage.clone(), Repair::Truncate).expect("recovers twice");
    assert_eq!(again.last_seq, recovered.last_seq);
    assert!(again.truncation.is_none(), "seed {seed}: the torn tail was not cut");
    recovered
}

#[test]
fn every_acknowledged_event_survives_a_thousand_seeded_crashes() {
    let cases: u64 = std::env::var("CAIRN_CRASH_CASES").ok().and_then(|text| text.parse().ok()).unwrap_or(1_000);
    let torn = (0..cases).filter(|&seed| crash_case(seed)).count();
    // The sweep must reach the interesting case, not only clean cuts.
    assert!(cases < 100 || torn * 10 > cases as usize, "only {torn} of {cases} crashes tore a record");
    println!("{cases} crashes, {torn} with a torn tail cut at recovery");
}

// ---------------------------------------------------------------------------------------
// (b) Truncation at every byte offset, and a bit flip at every bit.

/// A journal of `count` steady-state events after set-up, on a simulated disk, in one
/// segment; and the events it holds.
fn small_journal(count: usize) -> (SimStorage, Vec<(Event, Micros)>) {
    let storage = SimStorage::new();
    let writer = Writer::open(storage.clone(), Durability::Fsync, &fresh(&storage)).unwrap();
    let mut life = Journaled { shard: Shard::new(), writer, events: Vec::new(), acknowledged: 0 };
    let mut workload =
        Workload::new(Config { hunts: 1, players_per_hunt: 3, treasures_per_hunt: 2, ..small_config(9, true) });
    let mut setup = Vec::new();
    workload.setup(|event, time| setup.push((*event, time)));
    for (event, time) in &setup {
        life.apply(event, *time);
    }
    while life.events.len() < setup.len() + count {
        let (event, time) = workload.next_event();
        life.apply(&event, time);
    }
    life.commit();
    (storage, life.events)
}

/// The digest of a reference shard after each prefix of `events`, by prefix length.
fn prefix_digests(events: &[(Event, Micros)]) -> Vec<u64> {
    let mut shard = Shard::new();
    let mut digests = vec![shard.digest()];
    for (event, time) in events {
        shard.apply(event, *time);
        digests.push(shard.digest());
    }
    digests
}

/// Byte offsets where each record of a segment starts, and its end.
fn record_starts(events: &[(Event, Micros)]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut starts = vec![0];
    for (seq, (event, time)) in events.iter().enumerate() {
        encode_record(seq as u64 + 1, *time, event, &mut out);
        starts.push(out.len());
    }
    starts
}

#[test]
fn a_cut_at_every_byte_of_the_last_records_recovers_the_whole_records_before_it() {
    let (storage, events) = small_journal(20);
    let bytes = storage.contents(FIRST_SEGMENT).unwrap();
    let starts = record_starts(&events);
    let digests = prefix_digests(&events);
    assert_eq!(*starts.last().unwrap(), bytes.len());
    let from = starts[starts.len() - 6];
    for cut in from..=bytes.len() {
        let damaged = SimStorage::new();
        damaged.replace(FIRST_SEGMENT, bytes[..cut].to_vec());
        let recovered = recover(&mut damaged.clone(), Repair::Truncate).expect("a torn tail recovers");
        let whole = starts.iter().filter(|&&start| start <= cut).count() - 1;
        assert_eq!(recovered.last_seq, whole as u64, "cut at {cut}");
        assert_eq!(recovered.truncation.is_some(), starts[whole] != cut, "cut at {cut}");
        assert_eq!(recovered.shard.digest(), digests[whole], "cut at {cut}");
        assert_eq!(damaged.contents(FIRST_SEGMENT).unwrap().len(), starts[whole], "cut at {cut}: not truncated");
    }
}

#[test]
fn a_bit_flip_anywhere_gives_an_exact_prefix_or_a_refusal_naming_the_offset() {
    let (storage, events) = small_journal(12);
    let bytes = storage.contents(FIRST_SEGMENT).unwrap();
    let starts = record_starts(&events);
    let digests = prefix_digests(&events);
    let last_start = starts[starts.len() - 2];
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let damaged = SimStorage::new();
        damaged.replace(FIRST_SEGMENT, flipped);
        let record = starts.iter().filter(|&&start| start <= bit / 8).count() - 1;
        match recover(&mut damaged.clone(), Repair::Truncate) {
            Ok(recovered) => {
                // Only damage to the last record can be a torn tail.
                assert_eq!(starts[record], last_start, "bit {bit}: damage before the tail was accepted");
                assert_eq!(recovered.last_seq, record as u64, "bit {bit}");
                assert_eq!(recovered.shard.digest(), digests[record], "bit {bit}");
            }
            Err(JournalError::Corrupt { file, offset, .. }) => {
                assert_eq!(offset, starts[record] as u64, "bit {bit}");
                assert!(file.contains(FIRST_SEGMENT), "{file}");
                assert_ne!(starts[record], last_start, "bit {bit}: a torn tail was refused");
            }
            Err(other) => panic!("bit {bit}: unexpected error {other}"),
        }
    }
}

#[test]
fn a_bit_flip_anywhere_in_a_snapshot_is_refused() {
    let (storage, events) = small_journal(10);
    let recovered = recover(&mut storage.clone(), Repair::ReadOnly).unwrap();
    let bytes = encode_snapshot(&recovered.shard, events.len() as u64, recovered.last_time);
    let snapshot = decode_snapshot(&bytes).expect("a clean snapshot decodes");
    assert_eq!(snapshot.seq, events.len() as u64);
    assert_eq!(snapshot.time, events.last().unwrap().1);
    assert_eq!(snapshot.shard.digest(), recovered.shard.digest());
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(decode_snapshot(&flipped).is_err(), "bit {bit} went unnoticed");
    }
    for cut in 0..bytes.len() {
        assert!(decode_snapshot(&bytes[..cut]).is_err(), "cut at {cut} went unnoticed");
    }
}

#[test]
fn an_unusable_newest_snapshot_refuses_rather_than_forgetting_its_events() {
    let storage = SimStorage::new();
    let writer = Writer::open(storage.clone(), Durability::Fsync, &fresh(&storage)).unwrap();
    let mut life = Journaled { shard: Shard::new(), writer, events: Vec::new(), acknowledged: 0 };
    let mut workload = Workload::new(small_config(4, false));
    let mut setup = Vec::new();
    workload.setup(|event, time| setup.push((*event, time)));
    for (event, time) in &setup {
        life.apply(event, *time);
    }
    let seq = life.writer.snapshot(&life.shard).unwrap();
    let name = format!("snapshot-{seq:020}.snap");
    let mut bytes = storage.contents(&name).unwrap();
    bytes[100] ^= 1;
    storage.replace(&name, bytes);
    match recover(&mut storage.clone(), Repair::Truncate) {
        Err(JournalError::Missing(message)) => assert!(message.contains(&name), "{message}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("recovered without the events of the damaged snapshot"),
    }
}

#[test]
fn an_empty_or_torn_last_segment_named_past_the_end_of_the_journal_is_refused_as_a_gap() {
    let (storage, events) = small_journal(5);
    let last_seq = events.len() as u64;
    // The writer starts segment `journal-N` only once records up to N - 1 are covered, so
    // this name says records up to `last_seq + 4` were written; they are gone.
    let name = format!("journal-{:020}.log", last_seq + 5);
    for contents in [Vec::new(), vec![0u8; 10]] {
        let damaged = storage.crash(Crash::Process, 0);
        damaged.replace(&name, contents.clone());
        match recover(&mut damaged.clone(), Repair::Truncate) {
            Err(JournalError::Gap { file, expected, found, .. }) => {
                assert!(file.contains(&name), "{file}");
                assert_eq!((expected, found), (last_seq + 1, last_seq + 5));
            }
            Err(other) => panic!("{} bytes in {name}: unexpected error {other}", contents.len()),
            Ok(recovered) => panic!(
                "{} bytes in {name}: recovered up to {} and would number the next record {} again, \
                 forgetting records {}..={} the segment's name says were written",
                contents.len(),
                recovered.last_seq,
                recovered.last_seq + 1,
                last_seq + 1,
                last_seq + 4
            ),
        }
    }
    // The segment a writer opens right after the last record is no gap.
    let fresh_segment = storage.crash(Crash::Process, 0);
    fresh_segment.replace(&format!("journal-{:020}.log", last_seq + 1), Vec::new());
    assert_eq!(recover(&mut fresh_segment.clone(), Repair::Truncate).unwrap().last_seq, last_seq);
}

#[test]
fn a_reopened_fsync_journal_syncs_what_it_recovered_before_calling_it_covered() {
    let (storage, events) = small_journal(3);
    let mut writer = Writer::open(storage.clone(), Durability::Fsync, &fresh(&storage)).unwrap();
    writer.append(&Event::EndHunt { hunt: 1 }, 10);
    writer.append(&Event::EndHunt { hunt: 1 }, 11);
    // Written, but the process dies before its fdatasync: nothing of it was acknowledged.
    writer.write_pending().unwrap();
    let after_kill = storage.crash(Crash::Process, 0);
    let recovered = recover(&mut after_kill.clone(), Repair::Truncate).unwrap();
    assert_eq!(recovered.last_seq, events.len() as u64 + 2, "the page cache kept both records");
    let reopened = Writer::open(after_kill.clone(), Durability::Fsync, &recovered).unwrap();
    let covered = reopened.covered_seq();
    for seed in 0..50 {
        let after_power_loss = after_kill.crash(Crash::PowerLoss, seed);
        let again = recover(&mut after_power_loss.clone(), Repair::Truncate).unwrap();
        assert!(
            again.last_seq >= covered,
            "seed {seed}: the reopened fsync writer reported {covered} covered, a power loss kept only {}",
            again.last_seq
        );
    }
}

#[test]
fn recovery_removes_its_own_leftover_temporary_snapshots_and_no_other_tmp_file() {
    let dir = std::env::temp_dir().join(format!("cairn-durability-{}-tmp-files", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _remove_dir = process::RemoveOnDrop(dir.clone());
    std::fs::create_dir_all(&dir).unwrap();
    let leftover = format!("snapshot-{:020}.snap.tmp", 7);
    std::fs::write(dir.join(&leftover), b"half a snapshot").unwrap();
    // Not Cairn's: an operator's notes, kept beside the journal.
    std::fs::write(dir.join("notes.tmp"), b"moved the disk on Tuesday").unwrap();
    let recovered = recover(&mut FileStorage::open(&dir).unwrap(), Repair::Truncate).unwrap();
    assert!(!dir.join(&leftover).exists(), "the leftover temporary snapshot was kept");
    assert!(dir.join("notes.tmp").exists(), "recovery deleted notes.tmp, a file it never wrote: {:?}", recovered.notes);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// (c) Snapshot equivalence.

#[test]
fn a_snapshot_plus_its_tail_equals_replaying_everything_and_keeps_behaving_the_same() {
    for auto_discover in [false, true] {
        let storage = SimStorage::new();
        let writer = Writer::open(storage.clone(), Durability::Os, &fresh(&storage)).unwrap();
        let mut life = Journaled { shard: Shard::new(), writer, events: Vec::new(), acknowledged: 0 };
        let mut workload = Workload::new(Config { treasures_per_hunt: 30, ..small_config(77, auto_discover) });
        let mut setup = Vec::new();
        workload.setup(|event, time| setup.push((*event, time)));
        for (event, time) in &setup {
            life.apply(event, *time);
        }
        for step in 0..6_000u32 {
            let (event, time) = workload.next_event();
            life.apply(&event, time);
            // Removals and placements reuse treasure handles; an end exercises the phase.
            if step % 500 == 250 {
                let hunt = 1 + step % 2;
                life.apply(&Event::RemoveTreasure { hunt, treasure: step % 30 }, time);
                let position = Position::new((step % 1_400) as i32, (step % 900) as i32);
                let treasure =
                    TreasureSpec { id: 1_000 + step, position, radius: 300, value: 7, capacity: 3, hint_radius: 0 };
                life.apply(&Event::PlaceTreasure { hunt, treasure }, time);
            }
            if step == 5_000 {
                life.apply(&Event::EndHunt { hunt: 2 }, time);
            }
            if step % 37 == 0 {
                life.commit();
            }
            if step % 1_100 == 1_099 {
                life.snapshot();
            }
        }
        life.commit();
        let mut recovered = recover(&mut storage.clone(), Repair::Truncate).unwrap();
        assert!(recovered.snapshot_seq > 0);
        assert!(recovered.replayed > 0);
        assert_eq!(recovered.last_seq, life.events.len() as u64);
        let mut everything = reference(&life.events);
        assert_eq!(recovered.shard.digest(), everything.digest());
        // The rebuilt grids, leaderboards and free lists answer later events identically.
        for _ in 0..3_000 {
            let (event, time) = workload.next_event();
            let expected = format!("{:?}", everything.apply(&event, time));
            assert_eq!(format!("{:?}", recovered.shard.apply(&event, time)), expected, "{event:?}");
        }
        assert_eq!(recovered.shard.digest(), everything.digest());
        // Old snapshots and covered segments were deleted: one snapshot, one or two segments.
        let names = storage.clone().list().unwrap();
        assert_eq!(names.iter().filter(|name| name.starts_with("snapshot-")).count(), 1, "{names:?}");
        assert!(names.iter().filter(|name| name.starts_with("journal-")).count() <= 2, "{names:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Group commit, a full disk and a failed fsync.

#[test]
fn a_commit_is_one_write_and_one_fdatasync_whatever_it_covers() {
    let (storage, _) = small_journal(0);
    let writer = Writer::open(storage.clone(), Durability::Fsync, &fresh(&storage));
    let mut writer = writer.unwrap();
    let before = storage.counters();
    for seq in 0..500 {
        writer.append(&Event::AdjustScore { hunt: 1, player: 0, seq: 100 + seq, delta: 1 }, 5);
    }
    writer.commit().unwrap();
    let after = storage.counters();
    assert_eq!(after.appends - before.appends, 1);
    assert_eq!(after.syncs - before.syncs, 1);
    // Os mode writes without syncing.
    let recovered = fresh(&storage);
    let mut writer = Writer::open(storage.clone(), Durability::Os, &recovered).unwrap();
    writer.append(&Event::EndHunt { hunt: 1 }, 6);
    writer.commit().unwrap();
    assert_eq!(storage.counters().syncs, after.syncs);
}

#[test]
fn a_full_disk_keeps_records_pending_and_acknowledges_nothing_unwritten() {
    check_out_of_space(SimStorage::set_capacity);
}

/// A disk quota (`EDQUOT`) is a full disk for this user: the records stay pending, the
/// journal stays usable, and it resumes once the quota allows, as with `ENOSPC`.
#[test]
fn an_exceeded_disk_quota_is_a_full_disk_not_a_stop() {
    check_out_of_space(SimStorage::set_quota);
}

/// Runs out of room with `limit` (a full disk or a quota) during a commit: the error is
/// `DiskFull` and recoverable, nothing partial stays behind, and once the limit is
/// lifted the same records are written, once, and covered.
fn check_out_of_space(limit: fn(&SimStorage, Option<u64>)) {
    let (storage, events) = small_journal(5);
    let size = storage.contents(FIRST_SEGMENT).unwrap().len();
    let mut writer = Writer::open(storage.clone(), Durability::Fsync, &fresh(&storage)).unwrap();
    let covered = writer.covered_seq();
    limit(&storage, Some(size as u64 + 30));
    writer.append(&Event::EndHunt { hunt: 1 }, 10);
    writer.append(&Event::EndHunt { hunt: 1 }, 11);
    let error = writer.commit().unwrap_err();
    assert!(matches!(error, JournalError::DiskFull { .. }), "{error}");
    assert!(error.is_recoverable());
    assert!(error.to_string().contains("disk full"));
    assert_eq!(writer.covered_seq(), covered);
    assert_eq!(storage.contents(FIRST_SEGMENT).unwrap().len(), size, "a partial write was left behind");
    limit(&storage, None);
    assert_eq!(writer.commit().unwrap(), covered + 2);
    let recovered = recover(&mut storage.clone(), Repair::Truncate).unwrap();
    assert_eq!(recovered.last_seq, events.len() as u64 + 2);
}

#[test]
fn a_failed_fdatasync_stops_the_journal_for_good() {
    let (storage, _) = small_journal(2);
    let mut writer = Writer::open(storage.clone(), Durability::Fsync, &fresh(&storage)).unwrap();
    storage.set_sync_fails(true);
    writer.append(&Event::EndHunt { hunt: 1 }, 10);
    let error = writer.commit().unwrap_err();
    assert!(matches!(error, JournalError::SyncFailed { .. }), "{error}");
    assert!(error.to_string().contains("never") || error.to_string().contains("cannot be retried"), "{error}");
    storage.set_sync_fails(false);
    let syncs = storage.counters().syncs;
    writer.append(&Event::EndHunt { hunt: 1 }, 11);
    let again = writer.commit().unwrap_err();
    assert!(matches!(again, JournalError::Stopped(_)), "{again}");
    assert_eq!(storage.counters().syncs, syncs, "a failed fdatasync was retried");
}

// ---------------------------------------------------------------------------------------
// Real files, and the operator commands' library side.

/// A shard's life on real files in `dir`: the workload's set-up, a snapshot, then `events`
/// more events, committed. Returns the life, its writer still open, and how many events
/// the set-up had.
fn life_on_files(
    dir: &std::path::Path,
    durability: Durability,
    workload: &mut Workload,
    events: usize,
) -> (Journaled<FileStorage>, usize) {
    let recovered = recover(&mut FileStorage::open(dir).unwrap(), Repair::Truncate).unwrap();
    let writer = Writer::open(FileStorage::open(dir).unwrap(), durability, &recovered).unwrap();
    let mut life = Journaled { shard: Shard::new(), writer, events: Vec::new(), acknowledged: 0 };
    let mut setup = Vec::new();
    workload.setup(|event, time| setup.push((*event, time)));
    for (event, time) in &setup {
        life.apply(event, *time);
    }
    life.snapshot();
    for _ in 0..events {
        let (event, time) = workload.next_event();
        life.apply(&event, time);
    }
    life.commit();
    (life, setup.len())
}

#[test]
fn real_files_recover_verify_and_dump() {
    let dir = std::env::temp_dir().join(format!("cairn-durability-{}-real", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _remove_dir = process::RemoveOnDrop(dir.clone());
    let (life, setup_len) = life_on_files(&dir, Durability::Fsync, &mut Workload::new(small_config(3, true)), 300);
    let digest = life.shard.digest();
    drop(life.writer);
    // A torn tail: half a record of garbage at the end of the live segment.
    let segment = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(&[45, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&segment, &bytes).unwrap();

    let report = cairn::journal::verify(&dir).unwrap();
    assert_eq!(report.digest, digest);
    assert!(report.truncation.is_some());
    assert!(report.to_string().contains("torn tail"), "{report}");
    let mut dumped = Vec::new();
    let count = cairn::journal::dump(&dir, 0, &mut dumped).unwrap();
    // The snapshot after set-up replaced the set-up's segment: what is left is the rest.
    assert_eq!(count, (life.events.len() - setup_len) as u64);
    let text = String::from_utf8(dumped).unwrap();
    assert!(text
        .lines()
        .next()
        .unwrap()
        .trim_start()
        .starts_with(&format!("{}", life.events.len() as u64 - count + 1)));

    let recovered = recover(&mut FileStorage::open(&dir).unwrap(), Repair::Truncate).unwrap();
    assert_eq!(recovered.shard.digest(), digest);
    assert_eq!(recovered.truncation.as_ref().unwrap().dropped_bytes, 7);
    assert_eq!(std::fs::read(&segment).unwrap().len(), bytes.len() - 7);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An operator may move journal files to another disk and leave symbolic links behind:
/// recovery follows them like the files they point to (skipping them would forget their
/// records, and the writer would then create a fresh segment through the link, over
/// them), and a link whose target is gone refuses the start, naming it.
#[test]
fn symbolic_links_to_journal_files_are_followed_and_a_dangling_one_is_named() {
    let root = std::env::temp_dir().join(format!("cairn-durability-{}-symlinks", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let _remove_root = process::RemoveOnDrop(root.clone());
    let (dir, elsewhere) = (root.join("shard"), root.join("elsewhere"));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut workload = Workload::new(small_config(5, false));
    let (mut life, _) = life_on_files(&dir, Durability::Os, &mut workload, 200);
    drop(life.writer);
    // Every file of the journal moves away; a link to it stays in its place.
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert!(names.iter().any(|name| name.ends_with(".snap")) && names.iter().any(|name| name.ends_with(".log")));
    for name in &names {
        std::fs::rename(dir.join(name), elsewhere.join(name)).unwrap();
        std::os::unix::fs::symlink(elsewhere.join(name), dir.join(name)).unwrap();
    }
    let recovered = recover(&mut FileStorage::open(&dir).unwrap(), Repair::Truncate).unwrap();
    assert_eq!(recovered.last_seq, life.events.len() as u64);
    assert_eq!(recovered.shard.digest(), life.shard.digest());
    assert_eq!(cairn::journal::verify(&dir).unwrap().digest, life.shard.digest());

    // The writer continues through the link, and the next recovery reads it all.
    let writer = Writer::open(FileStorage::open(&dir).unwrap(), Durability::Os, &recovered).unwrap();
    life.writer = writer;
    for _ in 0..50 {
        let (event, time) = workload.next_event();
        life.apply(&event, time);
    }
    life.commit();
    drop(life.writer);
    let recovered = recover(&mut FileStorage::open(&dir).unwrap(), Repair::Truncate).unwrap();
    assert_eq!(recovered.shard.digest(), life.shard.digest());

    // A link whose target is gone: the start is refused, naming the link.
    let segment = names.iter().find(|name| name.ends_with(".log")).unwrap();
    std::fs::remove_file(elsewhere.join(segment)).unwrap();
    let error = recover(&mut FileStorage::open(&dir).unwrap(), Repair::Truncate).err().expect("a dangling segment");
    assert!(error.to_string().contains(&dir.join(segment).display().to_string()), "{error}");
}

// ---------------------------------------------------------------------------------------
// The real server process: kill -9 and SIGTERM, then restart on the same data directory.

mod process {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read};
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::{mpsc, Arc, Mutex};
    use std::thread;
    use std::time::{Duration, Instant};

    use cairn::client::{Client, ClientError, Options};
    use cairn::event::{Coordinates, HuntId, HuntOptions, HuntSpec, Micros, PlayerId, Position, TreasureSpec};
    use cairn::rng::Rng;
    use cairn::shard::shard_for;

    /// How long any single wait may take before the test fails.
    pub const WAIT: Duration = Duration::from_secs(20);
    pub const SHARDS: usize = 2;
    /// Where every player joins.
    const SPOT: Position = Position { x: 500, y: 500 };

    /// A running `cairn serve`, with what it printed to stderr so far.
    pub struct Process {
        child: Child,
        pub address: SocketAddr,
        stderr: Arc<Mutex<String>>,
    }

    impl Process {
        /// Starts `cairn serve` on `dir` and waits for its ready line.
        pub fn start(dir: &Path, durability: &str) -> Process {
            Process::start_under(&[], dir, durability)
        }

        /// Starts `cairn serve` on `dir` through `wrapper` (a command that runs the rest of
        /// its arguments as itself, such as `prlimit ... --`), and waits for its ready line.
        pub fn start_under(wrapper: &[&str], dir: &Path, durability: &str) -> Process {
            let mut command = match wrapper.split_first() {
                Some((program, args)) => {
                    let mut command = Command::new(program);
                    command.args(args).arg(env!("CARGO_BIN_EXE_cairn"));
                    command
                }
                None => Command::new(env!("CARGO_BIN_EXE_cairn")),
            };
            let mut child = command
                .args(["serve", "--durability", durability, "--listen", "127.0.0.1:0"])
                .args(["--shards", &SHARDS.to_string(), "--data-dir"])
                .arg(dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the binary starts");
            let stderr = Arc::new(Mutex::new(String::new()));
            let mut pipe = child.stderr.take().unwrap();
            let collected = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut buffer = [0; 4096];
                while let Ok(size @ 1..) = pipe.read(&mut buffer) {
                    collected.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..size]));
                }
            });
            let stdout = child.stdout.take().unwrap();
            let (lines, ready) = mpsc::channel();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if lines.send(line).is_err() {
                        break;
                    }
                }
            });
            let Ok(line) = ready.recv_timeout(WAIT) else {
                child.kill().ok();
                child.wait().ok();
                thread::sleep(Duration::from_millis(50));
                panic!("no ready line from the server; stderr: {}", stderr.lock().unwrap());
            };
            let address = line
                .strip_prefix("cairn listening on ")
                .and_then(|rest| rest.strip_suffix(&format!(" with {SHARDS} shards")))
                .and_then(|address| address.parse().ok())
                .unwrap_or_else(|| panic!("unexpected ready line: {line}"));
            Process { child, address, stderr }
        }

        pub fn connect(&self) -> Client {
            let options = Options { timeout: WAIT, name: "tests/durability.rs".to_owned() };
            Client::connect_with(self.address, &options).expect("the client connects")
        }

        pub fn stderr(&self) -> String {
            self.stderr.lock().unwrap().clone()
        }

        /// The server's process id.
        pub fn id(&self) -> u32 {
            self.child.id()
        }

        /// Waits for the server to exit on its own; its exit status and stderr.
        pub fn wait_for_exit(mut self) -> (std::process::ExitStatus, String) {
            let deadline = Instant::now() + WAIT;
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    // Let the stderr reader catch the last lines.
                    thread::sleep(Duration::from_millis(100));
                    return (status, self.stderr());
                }
                if Instant::now() > deadline {
                    self.child.kill().ok();
                    panic!("the server did not stop within {WAIT:?}: {}", self.stderr());
                }
                thread::sleep(Duration::from_millis(10));
            }
        }

        /// SIGKILL: the process gets no chance to do anything.
        pub fn kill(mut self) {
            self.child.kill().expect("SIGKILL is delivered");
            self.child.wait().expect("the killed server is reaped");
        }

        /// SIGTERM, then waits for a clean exit.
        pub fn terminate(mut self) {
            let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
            assert!(status.success());
            let deadline = Instant::now() + WAIT;
            let status = loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() > deadline {
                    self.child.kill().ok();
                    panic!("the server did not exit within {WAIT:?} of SIGTERM: {}", self.stderr());
                }
                thread::sleep(Duration::from_millis(10));
            };
            assert!(status.success(), "exit status {status}; stderr: {}", self.stderr());
        }
    }

    /// An in-process server's configuration: loopback on a free port, [`SHARDS`] shards,
    /// durability `os`, journals in `dir`.
    pub fn in_process_config(dir: &Path) -> cairn::server::Config {
        cairn::server::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            shards: SHARDS,
            durability: cairn::journal::Durability::Os,
            data_dir: Some(dir.to_path_buf()),
            ..cairn::server::Config::default()
        }
    }

    pub fn temporary_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cairn-durability-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Removes a directory tree when dropped, so a test's root directory (which holds
    /// its mount points) goes even when the test fails or skips. Declare it before the
    /// mounts under it: locals drop in reverse order, so they are unmounted first.
    pub struct RemoveOnDrop(pub PathBuf);

    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// One hunt owned by each shard.
    pub fn hunts() -> Vec<HuntId> {
        (0..SHARDS).map(|shard| (1..).find(|&hunt| shard_for(hunt, SHARDS) == shard).unwrap()).collect()
    }

    pub fn spec() -> HuntSpec {
        HuntSpec {
            coordinates: Coordinates::Planar,
            min: Position::new(0, 0),
            max: Position::new(1_000, 1_000),
            start: 0,
            end: Micros::MAX,
            options: HuntOptions::default(),
        }
    }

    fn treasure(id: u32, capacity: u32) -> TreasureSpec {
        TreasureSpec { id, position: spot_of(id), radius: 2, value: 10 + id % 7, capacity, hint_radius: 0 }
    }

    /// Where treasure `id` lies (apart, so no grid cell gets crowded).
    pub fn spot_of(id: u32) -> Position {
        Position::new(10 + (id % 90) as i32 * 10, 10 + (id / 90) as i32 * 10)
    }

    /// An acknowledged award: hunt, treasure, player, claim index, points.
    #[derive(Clone, Copy, Debug)]
    pub struct Award {
        hunt: HuntId,
        treasure: u32,
        player: PlayerId,
        index: u32,
        points: u32,
    }

    pub const DIGGERS: u32 = 4;
    pub const PLAYERS_PER_DIGGER: u32 = 6;
    pub const TREASURES_PER_LIFE: u32 = 50;
    pub const CAPACITY: u32 = 5;

    /// A new data directory `name` that a server (durability `os`) has set up and left:
    /// its hunts created and players joined, the server stopped. The guard removes it.
    pub fn data_dir_set_up(name: &str) -> (PathBuf, RemoveOnDrop) {
        let dir = temporary_dir(name);
        let guard = RemoveOnDrop(dir.clone());
        let server = Process::start(&dir, "os");
        let mut client = server.connect();
        set_up(&mut client);
        drop(client);
        server.terminate();
        (dir, guard)
    }

    /// Creates the hunts and joins the players (the first life only).
    pub fn set_up(client: &mut Client) {
        for hunt in hunts() {
            client.create_hunt(hunt, &spec()).unwrap();
            for player in 0..DIGGERS * PLAYERS_PER_DIGGER {
                client.join(hunt, player, 1, SPOT).unwrap();
            }
        }
    }

    /// Places this life's treasures: small capacities, so several diggers race for each.
    pub fn place_treasures(client: &mut Client, life: u32) {
        for hunt in hunts() {
            for offset in 0..TREASURES_PER_LIFE {
                client.place_treasure(hunt, &treasure(life * TREASURES_PER_LIFE + offset, CAPACITY)).unwrap();
            }
        }
    }

    /// Digs this life's treasures from several connections until the server goes away;
    /// returns every acknowledged award. The server is killed after `delay`.
    pub fn dig_until_killed(process: Process, life: u32, delay: Duration, seed: u64) -> Vec<Award> {
        let diggers: Vec<_> = (0..DIGGERS)
            .map(|digger| {
                let mut client = process.connect();
                let mut rng = Rng::new(seed ^ digger as u64);
                thread::spawn(move || {
                    let mut awards = Vec::new();
                    // A fresh range of sequence numbers per life: the server may have
                    // applied digs whose replies never arrived.
                    let mut seq: u32 = (life + 1) << 20;
                    loop {
                        let player = digger * PLAYERS_PER_DIGGER + rng.below(PLAYERS_PER_DIGGER as u64) as u32;
                        let hunt = hunts()[rng.below(SHARDS as u64) as usize];
                        let treasure = life * TREASURES_PER_LIFE + rng.below(TREASURES_PER_LIFE as u64) as u32;
                        seq += 1;
                        match client.dig(hunt, player, seq, treasure, spot_of(treasure)) {
                            Ok(claim) => {
                                let points = claim.points;
                                awards.push(Award { hunt, treasure, player, index: claim.index, points });
                            }
                            // Exhausted, or already claimed by this player: the race goes on.
                            Err(ClientError::Rejected { .. }) => {}
                            // The server was killed.
                            Err(_) => return awards,
                        }
                    }
                })
            })
            .collect();
        thread::sleep(delay);
        process.kill();
        diggers.into_iter().flat_map(|digger| digger.join().expect("no digger panics")).collect()
    }

    /// Checks that every logged award survived and no treasure exceeds its capacity.
    pub fn check_awards(client: &mut Client, awards: &[Award], lives: u32, context: &str) {
        let mut per_treasure: HashMap<(HuntId, u32), Vec<u32>> = HashMap::new();
        let mut per_player: HashMap<(HuntId, PlayerId), (u32, i64)> = HashMap::new();
        for award in awards {
            per_treasure.entry((award.hunt, award.treasure)).or_default().push(award.index);
            let entry = per_player.entry((award.hunt, award.player)).or_default();
            entry.0 += 1;
            entry.1 += award.points as i64;
        }
        for hunt in hunts() {
            for treasure in 0..lives * TREASURES_PER_LIFE {
                let info = client.treasure_info(hunt, treasure).unwrap();
                assert!(info.claimed <= info.capacity, "{context}: treasure {treasure} of hunt {hunt}: {info:?}");
                let mut indices = per_treasure.remove(&(hunt, treasure)).unwrap_or_default();
                indices.sort_unstable();
                let before = indices.len();
                indices.dedup();
                assert_eq!(indices.len(), before, "{context}: a claim index was awarded twice");
                if let Some(&highest) = indices.last() {
                    assert!(
                        info.claimed >= highest,
                        "{context}: treasure {treasure} of hunt {hunt} has {} claims but claim {highest} was \
                         acknowledged",
                        info.claimed
                    );
                }
            }
            for player in 0..DIGGERS * PLAYERS_PER_DIGGER {
                let (claims, points) = per_player.remove(&(hunt, player)).unwrap_or_default();
                let standing = client.rank(hunt, player).unwrap();
                assert!(
                    standing.claims >= claims && standing.score >= points,
                    "{context}: player {player} of hunt {hunt} was acknowledged {claims} claims worth {points} \
                     points but stands at {standing:?}"
                );
            }
        }
    }

    /// Top lists and every treasure's state: what a client can see of the state.
    pub fn visible_state(client: &mut Client, lives: u32) -> Vec<String> {
        let mut state = Vec::new();
        for hunt in hunts() {
            state.push(format!("{:?}", client.top(hunt, 1_000).unwrap()));
            for treasure in 0..lives * TREASURES_PER_LIFE {
                state.push(format!("{:?}", client.treasure_info(hunt, treasure).unwrap()));
            }
        }
        state
    }
}

/// Lives of the kill -9 test.
const KILLED_LIVES: u32 = 20;

#[test]
fn every_acknowledged_award_survives_kill_9_of_the_server() {
    use process::*;
    let started = std::time::Instant::now();
    let dir = temporary_dir("kill9");
    let _remove_dir = RemoveOnDrop(dir.clone());
    let mut rng = Rng::new(0x6B11_1009);
    let mut awards = Vec::new();
    for life in 0..KILLED_LIVES {
        let server = Process::start(&dir, "fsync");
        let mut client = server.connect();
        if life == 0 {
            set_up(&mut client);
        } else {
            check_awards(&mut client, &awards, life, &format!("after kill {life}"));
        }
        place_treasures(&mut client, life);
        drop(client);
        let delay = std::time::Duration::from_millis(5 + rng.below(100));
        let logged = dig_until_killed(server, life, delay, rng.next_u64());
        awards.extend(logged);
    }
    let server = Process::start(&dir, "fsync");
    let mut client = server.connect();
    check_awards(&mut client, &awards, KILLED_LIVES, "after the last kill");
    assert!(awards.len() > KILLED_LIVES as usize, "only {} awards were acknowledged in all", awards.len());
    drop(client);
    server.terminate();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());
}

#[test]
fn a_graceful_restart_keeps_the_visible_state_and_leaves_a_snapshot() {
    use process::*;
    for durability in ["os", "fsync"] {
        let dir = temporary_dir(&format!("graceful-{durability}"));
        let _remove_dir = RemoveOnDrop(dir.clone());
        let server = Process::start(&dir, durability);
        let mut client = server.connect();
        set_up(&mut client);
        place_treasures(&mut client, 0);
        let mut seq = 100;
        for player in 0..DIGGERS * PLAYERS_PER_DIGGER {
            for hunt in hunts() {
                seq += 1;
                // Some digs find the treasure exhausted; the state is what counts.
                let treasure = player % TREASURES_PER_LIFE;
                let _ = client.dig(hunt, player, seq, treasure, spot_of(treasure));
            }
        }
        let before = visible_state(&mut client, 1);
        drop(client);
        server.terminate();
        for shard in 0..2 {
            let names: Vec<String> = std::fs::read_dir(dir.join(format!("shard-{shard}")))
                .unwrap()
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .collect();
            assert!(names.iter().any(|name| name.ends_with(".snap")), "no snapshot at shutdown: {names:?}");
        }
        let server = Process::start(&dir, durability);
        let mut client = server.connect();
        assert_eq!(visible_state(&mut client, 1), before, "durability {durability}");
        drop(client);
        server.terminate();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Two servers on one data directory would append to the same journals: the second is
/// refused, naming the directory, and the directory is free again once the first stops.
/// Runs `cairn serve` on `dir`, expecting it to be refused because the directory is in
/// use; its stderr, which names the directory.
fn refused_as_in_use(dir: &std::path::Path) -> String {
    use process::{SHARDS, WAIT};
    use std::io::Read;
    use std::time::Duration;
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--durability", "os", "--listen", "127.0.0.1:0", "--shards", &SHARDS.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            second.kill().ok();
            second.wait().ok();
            panic!("a second server started on {}, which a running server uses", dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut message = String::new();
    second.stderr.take().unwrap().read_to_string(&mut message).unwrap();
    assert!(!status.success(), "{message}");
    assert!(message.contains(&dir.display().to_string()) && message.contains("in use"), "{message}");
    message
}

#[test]
fn a_second_server_on_a_data_directory_in_use_is_refused() {
    let dir = process::temporary_dir("in-use");
    let _remove_dir = process::RemoveOnDrop(dir.clone());
    let first = process::Process::start(&dir, "os");
    refused_as_in_use(&dir);
    first.terminate();
    let again = process::Process::start(&dir, "os");
    again.terminate();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two servers in one process (an embedding, or these tests): the second is refused, and
/// refusing it does not release the first one's lock, which another process still sees.
#[test]
fn a_second_server_in_the_same_process_is_refused_and_the_first_keeps_the_directory() {
    use cairn::server::Server;
    let dir = process::temporary_dir("in-use-here");
    let _remove_dir = process::RemoveOnDrop(dir.clone());
    let config = process::in_process_config(&dir);
    let first = Server::start(config.clone()).unwrap();
    for _ in 0..2 {
        let error = Server::start(config.clone()).err().expect("a second server started on a directory in use");
        assert_eq!(error.kind(), std::io::ErrorKind::ResourceBusy, "{error}");
        assert!(error.to_string().contains(&dir.display().to_string()), "{error}");
    }
    refused_as_in_use(&dir);
    first.shutdown().unwrap();
    Server::start(config).unwrap().shutdown().unwrap();
    process::Process::start(&dir, "os").terminate();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_restart_with_another_shard_count_or_a_damaged_journal_is_refused_with_the_reason() {
    let (dir, _remove_dir) = process::data_dir_set_up("refused");
    let run = |shards: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["serve", "--listen", "127.0.0.1:0", "--shards", shards, "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap()
    };
    let output = run("3");
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("2 shards") && message.contains("--shards 2"), "{message}");
    // Damage in the middle of a journal: a bit flipped in the first record of a segment
    // that valid records follow. The graceful stop snapshotted the set-up, so the
    // records come from a life after it.
    let server = process::Process::start(&dir, "os");
    let mut client = server.connect();
    process::place_treasures(&mut client, 0);
    drop(client);
    server.kill();
    let segment = std::fs::read_dir(dir.join("shard-0"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    assert!(bytes.len() > 100, "the segment holds several records");
    bytes[30] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();
    let output = run("2");
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("byte offset 0") && message.contains(&segment.display().to_string()), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn durability_flags_that_contradict_are_refused_with_the_reason() {
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(run(&["--durability", "fsync"]).contains("needs --data-dir"));
    assert!(run(&["--durability", "os"]).contains("needs --data-dir"));
    assert!(run(&["--durability", "none", "--data-dir", "/nonexistent/cairn"]).contains("keeps no journal"));
    assert!(run(&["--durability", "always"]).contains("none, os or fsync"));
}

#[test]
fn the_server_snapshots_every_interval_and_restarts_with_the_same_state() {
    use cairn::server::{Config as ServerConfig, Server};
    let dir = process::temporary_dir("interval");
    let _remove_dir = process::RemoveOnDrop(dir.clone());
    let config = ServerConfig { snapshot_interval_events: 25, ..process::in_process_config(&dir) };
    let server = Server::start(config.clone()).unwrap();
    let mut client = cairn::client::Client::connect(server.local_addr()).unwrap();
    process::set_up(&mut client);
    process::place_treasures(&mut client, 0);
    let snapshots = |shard: usize| {
        std::fs::read_dir(dir.join(format!("shard-{shard}")))
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().ends_with(".snap"))
            .count()
    };
    // Taken while serving, not only at the stop; the previous ones are removed.
    assert_eq!((snapshots(0), snapshots(1)), (1, 1));
    let before = process::visible_state(&mut client, 1);
    drop(client);
    // The graceful stop snapshots once more, and the restart starts from it.
    server.shutdown().unwrap();
    let server = Server::start(config).unwrap();
    let mut client = cairn::client::Client::connect(server.local_addr()).unwrap();
    assert_eq!(process::visible_state(&mut client, 1), before);
    drop(client);
    server.shutdown().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_snapshot_interval_of_u64_max_means_no_snapshot_while_serving_even_after_a_restart() {
    use cairn::server::{Config as ServerConfig, Server};
    let dir = process::temporary_dir("interval-max");
    let _remove_dir = process::RemoveOnDrop(dir.clone());
    let config = ServerConfig { snapshot_interval_events: u64::MAX, ..process::in_process_config(&dir) };
    let snapshots = |shard: usize| {
        let mut names: Vec<String> = std::fs::read_dir(dir.join(format!("shard-{shard}")))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".snap"))
            .collect();
        names.sort();
        names
    };
    // The first life's graceful stop leaves one snapshot per shard.
    let server = Server::start(config.clone()).unwrap();
    let mut client = cairn::client::Client::connect(server.local_addr()).unwrap();
    process::set_up(&mut client);
    drop(client);
    server.shutdown().unwrap();
    let at_stop = (snapshots(0), snapshots(1));
    assert_eq!((at_stop.0.len(), at_stop.1.len()), (1, 1), "{at_stop:?}");
    // The second life journals more on both shards; no interval has passed.
    let server = Server::start(config).unwrap();
    let mut client = cairn::client::Client::connect(server.local_addr()).unwrap();
    process::place_treasures(&mut client, 0);
    let serving = (snapshots(0), snapshots(1));
    drop(client);
    server.shutdown().unwrap();
    assert_eq!(serving, at_stop, "snapshots were written while serving, with an interval of u64::MAX events");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `cairn journal verify DIR` reports what a start would find, and a start reads the shard
/// count from `DIR/shards` first: a missing or unreadable count, or one the shard
/// directories disagree with (a start would ignore the shards past it, or start missing
/// ones empty), fails verification, naming the file.
#[test]
fn journal_verify_checks_the_shard_count_file_of_a_data_directory() {
    let (dir, _remove_dir) = process::data_dir_set_up("verify-count");
    let verify = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["journal", "verify"])
            .arg(&dir)
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let count_file = dir.join("shards");
    let (ok, stderr) = verify();
    assert!(ok, "{stderr}");
    for (contents, expected) in [
        (Some("3\n"), "3 shards"),
        (Some("1\n"), "1 shards"),
        (Some("two\n"), "should hold the shard count"),
        (None, "no shards file"),
    ] {
        match contents {
            Some(contents) => std::fs::write(&count_file, contents).unwrap(),
            None => std::fs::remove_file(&count_file).unwrap(),
        }
        let (ok, stderr) = verify();
        assert!(!ok, "verify passed with {contents:?} in {}: {stderr}", count_file.display());
        assert!(stderr.contains(&count_file.display().to_string()) && stderr.contains(expected), "{stderr}");
    }
    std::fs::write(&count_file, "2\n").unwrap();
    let (ok, stderr) = verify();
    assert!(ok, "{stderr}");
}

/// A shard directory moved to another disk and linked back is the shard, to `verify` as
/// to the server (which opens `DIR/shard-k` through the link).
#[test]
fn journal_verify_follows_a_shard_directory_that_is_a_symbolic_link() {
    let root = process::temporary_dir("verify-linked-shard");
    let _remove_root = process::RemoveOnDrop(root.clone());
    let dir = root.join("data");
    let server = process::Process::start(&dir, "os");
    let mut client = server.connect();
    process::set_up(&mut client);
    drop(client);
    server.terminate();
    let moved = root.join("other-disk-shard-1");
    std::fs::rename(dir.join("shard-1"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, dir.join("shard-1")).unwrap();
    let output =
        std::process::Command::new(env!("CARGO_BIN_EXE_cairn")).args(["journal", "verify"]).arg(&dir).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    for shard in ["shard-0", "shard-1"] {
        assert!(stdout.contains(&format!("{shard}: ok")) && !stdout.contains(" 0 hunts"), "{stdout}");
    }
}

/// `cairn journal dump DIR | head` is how an operator looks at the start of a journal:
/// once the reader has gone, the command stops quietly (no panic, no backtrace), with the
/// status of what it did.
#[test]
fn journal_dump_and_verify_stop_quietly_when_their_reader_goes_away() {
    let dir = process::temporary_dir("closed-output");
    let _remove_dir = process::RemoveOnDrop(dir.clone());
    let server = process::Process::start(&dir, "os");
    let mut client = server.connect();
    process::set_up(&mut client);
    drop(client);
    server.kill();
    for command in ["dump", "verify"] {
        // A pipe whose reading end is closed before the command writes: every write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["journal", command])
            .arg(&dir)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() && stderr.is_empty(), "journal {command}: {}: {stderr}", output.status);
    }
}

#[test]
fn journal_verify_and_dump_refuse_a_directory_that_holds_no_journal() {
    let run = |command: &str, dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cairn")).args(["journal", command]).arg(dir).output().unwrap()
    };
    // A mistyped path that exists: a directory with something else in it.
    let dir = process::temporary_dir("no-journal");
    let _remove_dir = process::RemoveOnDrop(dir.clone());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("readme.txt"), b"not a journal").unwrap();
    for command in ["verify", "dump"] {
        let output = run(command, &dir);
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(!output.status.success(), "journal {command} of a directory without a journal said: {stdout}");
        assert!(stderr.contains("no journal") && stderr.contains(&dir.display().to_string()), "{stderr}");
    }
    // A shard directory a server opened but never wrote to is a journal, and verifies
    // (with the rules version and shard count a server writes before it opens its shards).
    std::fs::write(dir.join("rules-version"), format!("{}\n", cairn::constants::RULES_VERSION)).unwrap();
    std::fs::write(dir.join("shards"), "1\n").unwrap();
    let shard = dir.join("shard-0");
    let recovered = recover(&mut FileStorage::open(&shard).unwrap(), Repair::Truncate).unwrap();
    drop(Writer::open(FileStorage::open(&shard).unwrap(), Durability::Os, &recovered).unwrap());
    let output = run("verify", &dir);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("shard-0: ok"));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// The rules version: a journal replays right only under the game rules that wrote it.

/// The file in a data directory that records the rules version it was written under.
const RULES_VERSION_FILE: &str = "rules-version";

/// Runs `cairn serve` on `dir` (2 shards, durability os), which is expected to refuse to
/// start; its stderr. A server that starts instead is killed, and the test fails.
fn refused_start(dir: &std::path::Path) -> String {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--durability", "os", "--listen", "127.0.0.1:0", "--shards", "2", "--data-dir"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + process::WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    match status {
        Some(status) => assert!(!status.success(), "the server ran on {}: {stderr}", dir.display()),
        None => panic!("the server started on {} and was still running: {stderr}", dir.display()),
    }
    stderr
}

/// Every file under `dir`'s shard directories with its bytes, in name order.
fn journal_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for shard in 0..process::SHARDS {
        for entry in std::fs::read_dir(dir.join(format!("shard-{shard}"))).unwrap() {
            let path = entry.unwrap().path();
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

/// A data directory a server wrote, stopped gracefully with one life of treasures (so a
/// snapshot and an empty segment) and then more events after a `kill -9` (so journal
/// records a restart must replay); the visible state it reached.
fn written_data_dir(name: &str) -> (std::path::PathBuf, process::RemoveOnDrop, Vec<String>) {
    use process::*;
    let dir = temporary_dir(name);
    let remove = RemoveOnDrop(dir.clone());
    let server = Process::start(&dir, "os");
    let mut client = server.connect();
    set_up(&mut client);
    drop(client);
    server.terminate();
    let server = Process::start(&dir, "os");
    let mut client = server.connect();
    place_treasures(&mut client, 0);
    let state = visible_state(&mut client, 1);
    drop(client);
    server.kill();
    (dir, remove, state)
}

/// A new data directory records this build's rules version before anything else, and a
/// restart under the same version replays it to the state the clients saw.
#[test]
fn a_data_directory_records_its_rules_version_and_restarts_under_the_same_one() {
    let (dir, _remove, before) = written_data_dir("rules-same");
    let file = dir.join(RULES_VERSION_FILE);
    let recorded = std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
    assert_eq!(recorded, format!("{}\n", cairn::constants::RULES_VERSION), "{}", file.display());
    let server = process::Process::start(&dir, "os");
    let mut client = server.connect();
    assert_eq!(process::visible_state(&mut client, 1), before);
    drop(client);
    server.terminate();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), recorded, "a restart rewrote {}", file.display());
}

/// A data directory written under other rules is refused before anything is replayed,
/// naming the file, both versions and what the operator can do, and left as it was.
#[test]
fn a_data_directory_written_under_other_rules_is_refused_naming_both_versions() {
    use cairn::constants::RULES_VERSION;
    let (dir, _remove, before) = written_data_dir("rules-other");
    let file = dir.join(RULES_VERSION_FILE);
    let journals = journal_files(&dir);
    for other in [RULES_VERSION + 1, RULES_VERSION - 1] {
        std::fs::write(&file, format!("{other}\n")).unwrap();
        let stderr = refused_start(&dir);
        for expected in [
            file.display().to_string(),
            format!("rules version {other}"),
            format!("rules version {RULES_VERSION}"),
            "no migration".to_owned(),
        ] {
            assert!(stderr.contains(&expected), "no {expected:?} in: {stderr}");
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{other}\n"), "the refused start rewrote it");
        assert!(journal_files(&dir) == journals, "the refused start changed the journals");
    }
    std::fs::write(&file, "one\n").unwrap();
    let stderr = refused_start(&dir);
    assert!(
        stderr.contains(&file.display().to_string()) && stderr.contains("should hold the rules version"),
        "{stderr}"
    );
    // Put back, the version is this build's again and the directory starts as it was.
    std::fs::write(&file, format!("{RULES_VERSION}\n")).unwrap();
    let server = process::Process::start(&dir, "os");
    let mut client = server.connect();
    assert_eq!(process::visible_state(&mut client, 1), before);
    drop(client);
    server.terminate();
}

/// Journals without a rules version were written before versions existed, under rules
/// that may differ: refused the same way, and not stamped with this build's version. A
/// directory with a shard count but no journal yet is new, and gets the file.
#[test]
fn a_data_directory_with_journals_and_no_rules_version_is_refused_and_a_new_one_gets_it() {
    use cairn::constants::RULES_VERSION;
    let (dir, _remove, _) = written_data_dir("rules-missing");
    let file = dir.join(RULES_VERSION_FILE);
    std::fs::remove_file(&file).unwrap();
    let journals = journal_files(&dir);
    let stderr = refused_start(&dir);
    for expected in [
        file.display().to_string(),
        "before rules versions".to_owned(),
        format!("rules version {RULES_VERSION}"),
        "no migration".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "no {expected:?} in: {stderr}");
    }
    assert!(!file.exists(), "the refused start wrote {}", file.display());
    assert!(journal_files(&dir) == journals, "the refused start changed the journals");
    let fresh = process::temporary_dir("rules-fresh");
    let _remove_fresh = process::RemoveOnDrop(fresh.clone());
    std::fs::create_dir_all(&fresh).unwrap();
    std::fs::write(fresh.join("shards"), "2\n").unwrap();
    let server = process::Process::start(&fresh, "os");
    server.terminate();
    assert_eq!(std::fs::read_to_string(fresh.join(RULES_VERSION_FILE)).unwrap(), format!("{RULES_VERSION}\n"));
}

/// `cairn journal verify DIR` checks the rules version as a start does, naming the file;
/// `dump` says which version the journals were written under, and dumps them anyway (it
/// only decodes records, it applies no rule).
#[test]
fn journal_verify_checks_the_rules_version_and_dump_names_it() {
    use cairn::constants::RULES_VERSION;
    let (dir, _remove, _) = written_data_dir("rules-verify");
    let file = dir.join(RULES_VERSION_FILE);
    let run = |command: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["journal", command])
            .arg(&dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.success(), stdout, String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (ok, stdout, stderr) = run("verify");
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&format!("rules version {RULES_VERSION}")), "{stdout}");
    let (ok, stdout, stderr) = run("dump");
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with(&format!("# rules version {RULES_VERSION}")), "{stdout}");
    let other = RULES_VERSION + 1;
    for (contents, expected) in [
        (Some(format!("{other}\n")), format!("rules version {other}")),
        (Some("one\n".to_owned()), "should hold the rules version".to_owned()),
        (None, "before rules versions".to_owned()),
    ] {
        match &contents {
            Some(contents) => std::fs::write(&file, contents).unwrap(),
            None => std::fs::remove_file(&file).unwrap(),
        }
        let (ok, _, stderr) = run("verify");
        assert!(!ok, "verify passed with {contents:?} in {}: {stderr}", file.display());
        assert!(stderr.contains(&file.display().to_string()) && stderr.contains(&expected), "{stderr}");
        let (ok, stdout, stderr) = run("dump");
        assert!(ok, "{stderr}");
        let first = stdout.lines().next().unwrap_or_default();
        assert!(first.starts_with("# rules version") && stdout.contains("PlaceTreasure"), "{stdout}");
    }
}

// ---------------------------------------------------------------------------------------
// Real full disks and real failed fdatasyncs, under a real server process.

mod mounts {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// A filesystem mounted for one test: unmounted (and its loop device detached) when
    /// dropped, even if the test fails.
    pub struct Mount {
        pub point: PathBuf,
        loop_device: Option<String>,
    }

    fn run(program: &str, args: &[&str]) -> Result<String, String> {
        let output = Command::new(program).args(args).output().map_err(|error| format!("{program}: {error}"))?;
        if !output.status.success() {
            return Err(format!("{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr).trim()));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// A tmpfs of `size_bytes` at `point`: a disk that really fills up.
    pub fn tmpfs(point: &Path, size_bytes: u64) -> Result<Mount, String> {
        std::fs::create_dir_all(point).map_err(|error| error.to_string())?;
        let point_text = point.to_str().unwrap();
        run("mount", &["-t", "tmpfs", "-o", &format!("size={size_bytes}"), "tmpfs", point_text])?;
        Ok(Mount { point: point.to_path_buf(), loop_device: None })
    }

    /// An ext4 file system at `point` on a loop device whose backing file is a sparse
    /// 64 MiB image on `under` (a small tmpfs): once `under` is full, ext4 still accepts
    /// writes into its page cache, and fdatasync fails when writeback cannot reach the
    /// image. A real failed fdatasync, not a simulated one.
    pub fn ext4_on(under: &Mount, point: &Path) -> Result<Mount, String> {
        let image = under.point.join("ext4.img");
        let image_text = image.to_str().unwrap();
        run("truncate", &["-s", "64M", image_text])?;
        run("mkfs.ext4", &["-q", "-F", image_text])?;
        let device = run("losetup", &["-f", "--show", image_text])?;
        std::fs::create_dir_all(point).map_err(|error| error.to_string())?;
        if let Err(error) = run("mount", &[&device, point.to_str().unwrap()]) {
            let _ = run("losetup", &["-d", &device]);
            return Err(error);
        }
        Ok(Mount { point: point.to_path_buf(), loop_device: Some(device) })
    }

    /// `point` bound over itself read-only: its files stay readable, every write fails with
    /// "Read-only file system" (root included, unlike file permissions).
    pub fn read_only(point: &Path) -> Result<Mount, String> {
        let point_text = point.to_str().unwrap();
        run("mount", &["--bind", point_text, point_text])?;
        let mount = Mount { point: point.to_path_buf(), loop_device: None };
        run("mount", &["-o", "remount,bind,ro", point_text])?;
        Ok(mount)
    }

    impl Drop for Mount {
        fn drop(&mut self) {
            // Lazy: a server that is still shutting down does not keep it mounted.
            let _ = run("umount", &["-l", self.point.to_str().unwrap()]);
            if let Some(device) = &self.loop_device {
                let _ = run("losetup", &["-d", device]);
            }
            let _ = std::fs::remove_dir_all(&self.point);
        }
    }

    /// Fills the file system holding `dir` with a file `dir/filler` until it refuses
    /// more; returns the file's path.
    pub fn fill(dir: &Path) -> PathBuf {
        use std::io::Write;
        let path = dir.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xA5u8; 64 << 10];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::StorageFull => break,
                Err(error) => panic!("filling {}: {error}", path.display()),
            }
        }
        // Whatever fits of a smaller write too, down to a byte.
        for size in [4096, 512, 64, 1] {
            while file.write(&chunk[..size]).is_ok_and(|written| written > 0) {}
        }
        path
    }

    /// Says loudly why a test that needs mounts did not run.
    pub fn skipped(test: &str, why: &str) {
        eprintln!(
            "\n*** SKIPPED {test}: cannot mount a test file system ({why}); it needs root and mount \
                   permission. The storage-level tests of the same paths still ran. ***\n"
        );
    }
}

/// A client adjusting one player's score by one, an event at a time, until stopped: what
/// a game backend keeps doing while the journal cannot be written. Counts what the server
/// acknowledged; a refusal must be `disk_full` (error 12), anything else fails the test.
struct SteadyWriter {
    acknowledged: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl SteadyWriter {
    /// Starts adjusting `player` of `hunt` from sequence number 11.
    fn start(mut client: cairn::client::Client, hunt: HuntId, player: u32) -> SteadyWriter {
        use std::sync::atomic::Ordering;
        let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (acknowledged, stop) = (std::sync::Arc::clone(&acknowledged), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut seq = 10;
                let mut refused = 0;
                while !stop.load(Ordering::Acquire) {
                    seq += 1;
                    match client.adjust_score(hunt, player, seq, 1) {
                        Ok(_) => {
                            acknowledged.fetch_add(1, Ordering::AcqRel);
                        }
                        Err(cairn::client::ClientError::Rejected { code: 12, .. }) => refused += 1,
                        Err(other) => panic!("adjustment {seq}: {other}"),
                    }
                }
                refused
            })
        };
        SteadyWriter { acknowledged, stop, thread }
    }

    fn acknowledged(&self) -> u64 {
        self.acknowledged.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until the server reports that it can no longer write (its writes are held,
    /// queries still answered); fails if it never does or if the writer dies first (the
    /// server went away).
    fn wait_for_full(&self, server: &process::Process, what: &str) {
        let deadline = std::time::Instant::now() + process::WAIT;
        while !server.stderr().contains("queries are still answered") {
            assert!(!self.thread.is_finished(), "the writer stopped before {what}; stderr: {}", server.stderr());
            assert!(std::time::Instant::now() < deadline, "{what} was never reached; stderr: {}", server.stderr());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Waits until ten more adjustments than `from` are acknowledged.
    fn wait_for_progress(&self, from: u64, after: &str) {
        let deadline = std::time::Instant::now() + process::WAIT;
        while self.acknowledged() < from + 10 {
            assert!(std::time::Instant::now() < deadline, "the writer made no progress after {after}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Stops the writer; how many adjustments were acknowledged and how many refused.
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let refused = self.thread.join().expect("the writer met only acknowledgements and disk_full");
        (self.acknowledged.load(std::sync::atomic::Ordering::Acquire), refused)
    }
}

/// Adjusts `player` `count` times through `probe`, from `*seq + 1` on, and expects each to
/// be refused with `disk_full` (error 12) saying so.
fn expect_disk_full(probe: &mut cairn::client::Client, hunt: HuntId, player: u32, seq: &mut u32, count: usize) {
    for _ in 0..count {
        *seq += 1;
        match probe.adjust_score(hunt, player, *seq, 1) {
            Err(cairn::client::ClientError::Rejected { code: 12, message }) => {
                assert!(message.contains("disk"), "{message}")
            }
            other => panic!("adjustment {seq} while the journal cannot be written: {other:?}"),
        }
    }
}

#[test]
fn a_full_disk_refuses_mutations_with_disk_full_keeps_answering_queries_and_resumes_when_space_returns() {
    use cairn::client::ClientError;
    use process::*;
    use std::time::{Duration, Instant};

    let root = temporary_dir("disk-full");
    let _remove_root = RemoveOnDrop(root.clone());
    let disk = match mounts::tmpfs(&root.join("disk"), 4 << 20) {
        Ok(disk) => disk,
        Err(why) => return mounts::skipped("the full-disk server test", &why),
    };
    let dir = disk.point.join("data");
    let server = Process::start(&dir, "fsync");
    let mut setup = server.connect();
    let hunt = hunts()[0];
    let other_hunt = hunts()[1];
    for hunt in hunts() {
        setup.create_hunt(hunt, &spec()).unwrap();
        for player in 0..3 {
            setup.join(hunt, player, 1, Position::new(500, 500)).unwrap();
        }
    }
    let filler = mounts::fill(&disk.point);

    // The steady writer's commit meets the full disk: its reply is held (the event is
    // not written), and the server says so.
    let writer = SteadyWriter::start(server.connect(), hunt, 1);
    writer.wait_for_full(&server, "the full disk");
    // From now on every mutation is refused with disk_full (code 12), saying so...
    let mut probe = server.connect();
    let mut probe_seq = 10;
    expect_disk_full(&mut probe, hunt, 2, &mut probe_seq, 5);
    // ...nothing is acknowledged, and queries are still answered.
    let frozen = writer.acknowledged();
    for _ in 0..20 {
        let standing = probe.rank(hunt, 1).unwrap();
        assert!(standing.score >= frozen as i64);
        assert_eq!(probe.rank(hunt, 2).unwrap().score, 0, "a refused adjustment was applied");
        probe.top(other_hunt, 10).unwrap();
        probe.ping().unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(writer.acknowledged(), frozen, "acknowledged while the disk was full");

    // Space returns: the held adjustment is acknowledged and new ones are accepted.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "mutations still refused after space returned: {}", server.stderr());
        probe_seq += 1;
        match probe.adjust_score(hunt, 0, probe_seq, 1) {
            Ok(_) => break,
            Err(ClientError::Rejected { code: 12, .. }) => std::thread::sleep(Duration::from_millis(20)),
            Err(other) => panic!("{other}"),
        }
    }
    writer.wait_for_progress(frozen, "space returned");
    let (player_1, refused) = writer.stop();
    assert!(server.stderr().contains("mutating events are accepted"), "{}", server.stderr());

    // Restart after kill -9: exactly what was acknowledged, nothing that was refused.
    server.kill();
    let server = Process::start(&dir, "fsync");
    let mut client = server.connect();
    assert_eq!(client.rank(hunt, 1).unwrap().score, player_1 as i64, "player 1 ({refused} refused)");
    assert_eq!(client.rank(hunt, 0).unwrap().score, 1);
    assert_eq!(client.rank(hunt, 2).unwrap().score, 0, "a refused adjustment was applied");
    server.terminate();
    drop(disk);
}

/// A file size limit (`ulimit -f`, RLIMIT_FSIZE) is room the operator allows the server, as
/// a disk quota is: a journal write past it (EFBIG) is handled as a full disk (mutations
/// refused with error 12 naming the limit, queries answered, nothing acknowledged that
/// was not written), not a death by SIGXFSZ; raising the running server's limit resumes it.
#[test]
fn a_file_size_limit_is_a_full_disk_and_raising_it_resumes_the_server() {
    use process::*;

    let root = temporary_dir("file-size-limit");
    let _remove_root = RemoveOnDrop(root.clone());
    let dir = root.join("data");
    // A soft limit of 8 KiB (the hard one stays unlimited, so raising it needs no privilege):
    // room for the set-up and about a hundred adjustments in the first segment.
    let server = Process::start_under(&["prlimit", "--fsize=8192:unlimited", "--"], &dir, "fsync");
    let mut setup = server.connect();
    let hunt = hunts()[0];
    setup.create_hunt(hunt, &spec()).unwrap();
    for player in 0..3 {
        setup.join(hunt, player, 1, Position::new(500, 500)).unwrap();
    }
    let writer = SteadyWriter::start(server.connect(), hunt, 1);
    writer.wait_for_full(&server, "the file size limit");
    assert!(server.stderr().contains("file size limit"), "{}", server.stderr());
    let mut probe = server.connect();
    let mut probe_seq = 10;
    expect_disk_full(&mut probe, hunt, 2, &mut probe_seq, 3);
    let frozen = writer.acknowledged();
    assert!(probe.rank(hunt, 1).unwrap().score >= frozen as i64);
    assert_eq!(probe.rank(hunt, 2).unwrap().score, 0, "a refused adjustment was applied");
    assert_eq!(writer.acknowledged(), frozen, "acknowledged past the file size limit");

    // The operator raises the running server's limit: it resumes without a restart.
    let raised = std::process::Command::new("prlimit")
        .args(["--pid", &server.id().to_string(), "--fsize=unlimited"])
        .status()
        .unwrap();
    assert!(raised.success());
    writer.wait_for_progress(frozen, "the limit was raised");
    let (player_1, _) = writer.stop();
    assert!(server.stderr().contains("mutating events are accepted"), "{}", server.stderr());

    // Restarted after kill -9: exactly what was acknowledged, nothing that was refused.
    server.kill();
    let server = Process::start(&dir, "fsync");
    let mut client = server.connect();
    assert_eq!(client.rank(hunt, 1).unwrap().score, player_1 as i64);
    assert_eq!(client.rank(hunt, 2).unwrap().score, 0, "a refused adjustment was applied");
    server.terminate();
}

#[test]
fn a_failed_fdatasync_stops_the_server_with_a_clear_message_and_a_failure_exit() {
    use process::*;

    let root = temporary_dir("sync-fails");
    let _remove_root = RemoveOnDrop(root.clone());
    let backing = match mounts::tmpfs(&root.join("backing"), 16 << 20) {
        Ok(backing) => backing,
        Err(why) => return mounts::skipped("the failed-fdatasync server test", &why),
    };
    let disk = match mounts::ext4_on(&backing, &root.join("ext4")) {
        Ok(disk) => disk,
        Err(why) => return mounts::skipped("the failed-fdatasync server test", &why),
    };
    let dir = disk.point.join("data");
    let server = Process::start(&dir, "fsync");
    let mut client = server.connect();
    let hunt = hunts()[0];
    client.create_hunt(hunt, &spec()).unwrap();
    client.join(hunt, 1, 1, Position::new(500, 500)).unwrap();
    // The image can no longer grow: ext4 takes writes into its cache, writeback fails.
    mounts::fill(&backing.point);
    let mut refused = None;
    for seq in 2..2_000 {
        // Each adjustment lands in new journal blocks soon enough.
        match client.adjust_score(hunt, 1, seq, 1) {
            Ok(_) => {}
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    let error = refused.expect("adjustments were acknowledged although no sync could succeed");
    assert!(!matches!(error, cairn::client::ClientError::Rejected { .. }), "{error}");
    let (status, stderr) = server.wait_for_exit();
    assert!(!status.success(), "the server exited with {status} after a failed fdatasync; stderr: {stderr}");
    assert!(stderr.contains("fdatasync of") && stderr.contains("failed"), "{stderr}");
    assert!(stderr.contains("stopping the server"), "{stderr}");
    assert!(stderr.contains("cannot be retried"), "{stderr}");
    drop(disk);
    drop(backing);
}

#[test]
fn a_journal_the_server_cannot_write_refuses_the_start_naming_the_segment() {
    use cairn::server::Server;
    let root = process::temporary_dir("read-only");
    let _remove_root = process::RemoveOnDrop(root.clone());
    let dir = root.join("data");
    let config = process::in_process_config(&dir);
    let server = Server::start(config.clone()).unwrap();
    let mut client = cairn::client::Client::connect(server.local_addr()).unwrap();
    process::set_up(&mut client);
    drop(client);
    server.shutdown().unwrap();
    let mount = match mounts::read_only(&dir) {
        Ok(mount) => mount,
        Err(why) => {
            let _ = std::fs::remove_dir_all(&root);
            return mounts::skipped("the read-only journal test", &why);
        }
    };
    match Server::start(config) {
        Err(error) => {
            // The data directory's lock file is the first thing the start writes, so it is
            // what a read-only directory is refused on.
            let message = format!("{error:#}");
            let named = message.contains(&dir.join("lock").display().to_string()) || message.contains("journal-");
            assert!(named && message.contains("Read-only file system"), "{message}");
        }
        Ok(server) => {
            // What a game backend would meet: the first mutation after a ready start.
            let mut client = cairn::client::Client::connect(server.local_addr()).unwrap();
            let first = client.join(process::hunts()[0], 1_000, 1, process::spot_of(0));
            drop(client);
            let stopped = server.shutdown();
            drop(mount);
            let _ = std::fs::remove_dir_all(&root);
            panic!("the server started on a journal it cannot write; its first mutation got {first:?}, its stop {stopped:?}");
        }
    }
    drop(mount);
    std::fs::remove_dir_all(&root).unwrap();
}

/// A shard directory whose segment can be appended to but in which no file can be created
/// (its owner made it read-only) would let the server start and serve, and then stop it at
/// the first snapshot or segment roll (or fail its graceful stop): the start is refused
/// instead, naming the directory. Runs the server as `nobody`, which file permissions bind.
#[test]
fn a_shard_directory_the_server_cannot_create_files_in_refuses_the_start() {
    use process::*;
    let root = temporary_dir("unwritable-shard");
    let _remove_root = RemoveOnDrop(root.clone());
    let dir = root.join("data");
    let server = Process::start(&dir, "os");
    let mut client = server.connect();
    set_up(&mut client);
    drop(client);
    server.terminate();
    let chown = std::process::Command::new("chown").args(["-R", "65534:65534"]).arg(&root).status();
    if !chown.is_ok_and(|status| status.success()) {
        eprintln!(
            "\n*** SKIPPED the unwritable shard directory test: it needs root, to hand the data \
             directory to nobody and run the server as nobody. ***\n"
        );
        return;
    }
    let shard = dir.join("shard-1");
    std::fs::set_permissions(&shard, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    let mut child = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--durability", "os", "--listen", "127.0.0.1:0", "--shards", &SHARDS.to_string()])
        .arg("--data-dir")
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_none() {
        // Still running: it started. SIGTERM stops it, and shows what its stop meets.
        let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    }
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(
        !stdout.contains("listening"),
        "the server started on {}, where it cannot create a file; stdout: {stdout}; stderr: {stderr}",
        shard.display()
    );
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&shard.display().to_string()) && stderr.contains("Permission denied"), "{stderr}");
}

#[test]
fn event_time_never_goes_back_across_a_restart_even_when_the_clock_is_behind_the_journal() {
    use cairn::journal::SHARD_DIR_PREFIX;
    use process::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    let dir = temporary_dir("clock-floor");
    let _remove_dir = RemoveOnDrop(dir.clone());
    let hunts = hunts();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules-version"), format!("{}\n", cairn::constants::RULES_VERSION)).unwrap();
    std::fs::write(dir.join("shards"), format!("{}\n", hunts.len())).unwrap();
    // A journal written an hour "in the future": as if the clock was stepped back an
    // hour since (or the data directory moved to a machine whose clock is behind).
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as Micros;
    let future = now + 3_600_000_000;
    let hunt = hunts[0];
    let mut storage = FileStorage::open(&dir.join(format!("{SHARD_DIR_PREFIX}0"))).unwrap();
    let recovered = recover(&mut storage, Repair::Truncate).unwrap();
    let mut writer = Writer::open(storage, Durability::Os, &recovered).unwrap();
    writer.append(&Event::CreateHunt { hunt, spec: spec() }, future - 2);
    writer.append(&Event::Join { hunt, player: 1, seq: 1, position: Position::new(500, 500) }, future - 1);
    writer.append(&Event::AdjustScore { hunt, player: 1, seq: 2, delta: 10 }, future);
    writer.commit().unwrap();
    drop(writer);

    // Restarted from the journal, then (after a graceful stop) from the snapshot alone.
    for (life, player) in [(0, 2), (1, 3)] {
        let server = Process::start(&dir, "os");
        let mut client = server.connect();
        client.join(hunt, player, 1, Position::new(500, 500)).unwrap();
        client.adjust_score(hunt, player, 2, 10).unwrap();
        let (_, top) = client.top(hunt, 10).unwrap();
        let reached_at = top.iter().find(|ranked| ranked.player == player).unwrap().reached_at;
        assert!(reached_at >= future, "life {life}: an event was stamped {reached_at}, before {future}");
        assert_eq!(top[0].player, 1, "life {life}: a later score ranks ahead of an earlier equal one: {top:?}");
        assert!(server.stderr().contains("ahead of the clock"), "life {life}: {}", server.stderr());
        server.terminate();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
