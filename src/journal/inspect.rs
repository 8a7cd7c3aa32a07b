//! What the operator commands `cairn journal verify` and `cairn journal dump` do, kept
//! here so the binary stays a thin layer of flags.
//!
//! A server's data directory holds one subdirectory per shard (`shard-0`, `shard-1`,
//! ...); both commands accept either that data directory or one shard's directory. Both
//! open the files read-only in effect: they run recovery with [`Repair::ReadOnly`], so a
//! torn tail is reported, not cut. `verify` of a data directory also checks its `shards`
//! file against its shard directories ([`check_shard_count`]), as a start reads it first,
//! and the main binary checks its `rules-version` with `check_rules_version` (`rules.rs`)
//! before it; `dump` prints the rules version first and dumps journals of any version, as
//! it decodes records without applying them.
//! A directory that holds no journal at all (no segment, snapshot or shard directory) is
//! refused, so a mistyped path does not pass for an empty journal.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::recovery::{read_journal, recover, Repair, Truncation};
use super::storage::{FileStorage, Storage};
use super::{parse_segment_name, parse_snapshot_name, JournalError};

/// The prefix of a shard's subdirectory in a data directory.
pub const SHARD_DIR_PREFIX: &str = "shard-";

/// The name of the file holding the shard count, in a data directory.
pub const SHARD_COUNT_FILE: &str = "shards";

/// Reads a data directory's small number file (`shards`, `rules-version`: the number and
/// a newline): the number, `None` if the file is missing, or a message naming the file if
/// it cannot be read or holds something else (`what` says what it should hold).
pub fn read_number_file<T: std::str::FromStr>(path: &Path, what: &str) -> Result<Option<T>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    match text.trim().parse() {
        Ok(number) => Ok(Some(number)),
        Err(_) => Err(format!("{} should hold {what}, not {:?}", path.display(), text.trim())),
    }
}

/// Checks a data directory's shard count file against its shard directories (`shards`,
/// from [`shard_dirs`], the first of them `dir` itself when `dir` is one shard's
/// directory, which has no count to check), as a start would: the count must be there and
/// readable, and the directories must be `shard-0` up to one below it. A start refuses a
/// missing or unreadable count, ignores shard directories past it and starts missing ones
/// empty, so each of those is reported, naming the file.
pub fn check_shard_count(dir: &Path, shards: &[PathBuf]) -> Result<(), String> {
    if shards == [dir.to_path_buf()] {
        return Ok(());
    }
    let path = dir.join(SHARD_COUNT_FILE);
    let Some(count) = read_number_file::<usize>(&path, "the shard count")? else {
        return Err(format!(
            "{} holds shard journals but no {SHARD_COUNT_FILE} file ({} is missing): a start refuses to guess the \
             shard count",
            dir.display(),
            path.display()
        ));
    };
    let expected: Vec<PathBuf> = (0..count).map(|index| dir.join(format!("{SHARD_DIR_PREFIX}{index}"))).collect();
    if shards != expected.as_slice() {
        let names: Vec<String> =
            shards.iter().filter_map(|shard| Some(shard.file_name()?.to_string_lossy().into_owned())).collect();
        return Err(format!(
            "{} says {count} shards, but the shard directories are {}: a start replays {SHARD_DIR_PREFIX}k for k \
             below {count} only, ignoring any other and starting a missing one empty",
            path.display(),
            names.join(", ")
        ));
    }
    Ok(())
}

/// The shard directories under `dir` in shard order, or `dir` itself if it has none.
pub fn shard_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut shards: Vec<(u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let index = name.to_str().and_then(|name| name.strip_prefix(SHARD_DIR_PREFIX)?.parse().ok());
        // `Path::is_dir` follows a symbolic link, as the server does when it opens
        // `DIR/shard-k`: a shard moved to another disk and linked back is still the shard.
        if let (Some(index), true) = (index, entry.path().is_dir()) {
            shards.push((index, entry.path()));
        }
    }
    shards.sort();
    if shards.is_empty() {
        return Ok(vec![dir.to_path_buf()]);
    }
    Ok(shards.into_iter().map(|(_, path)| path).collect())
}

/// What `verify` found in one shard directory.
#[derive(Debug)]
pub struct VerifyReport {
    /// The shard directory.
    pub dir: PathBuf,
    /// The snapshot used (0: none).
    pub snapshot_seq: u64,
    /// The last sequence number recovered.
    pub last_seq: u64,
    /// Records replayed after the snapshot.
    pub replayed: u64,
    /// Hunts in the recovered state.
    pub hunts: usize,
    /// The recovered state's digest.
    pub digest: u64,
    /// A torn tail a start would cut.
    pub truncation: Option<Truncation>,
    /// Skipped snapshots and the like.
    pub notes: Vec<String>,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(
            formatter,
            "{}: ok: snapshot at {}, {} records replayed, last sequence {}, {} hunts, digest {:016x}",
            self.dir.display(),
            self.snapshot_seq,
            self.replayed,
            self.last_seq,
            self.hunts,
            self.digest
        )?;
        if let Some(cut) = &self.truncation {
            write!(
                formatter,
                "\n  torn tail: {} from byte offset {} ({} bytes, {}); a start will cut it",
                cut.file, cut.offset, cut.dropped_bytes, cut.reason
            )?;
        }
        for note in &self.notes {
            write!(formatter, "\n  note: {note}")?;
        }
        Ok(())
    }
}

fn open_existing(dir: &Path) -> Result<FileStorage, JournalError> {
    let file = dir.display().to_string();
    if !dir.is_dir() {
        let source = io::Error::new(io::ErrorKind::NotFound, "no such directory");
        return Err(JournalError::Io { operation: "open", file, source });
    }
    let mut storage =
        FileStorage::open(dir).map_err(|source| JournalError::Io { operation: "open", file: file.clone(), source })?;
    // A mistyped path must not read as a healthy, empty journal: a shard directory a
    // server opened always holds a segment.
    let names = storage.list().map_err(|source| JournalError::Io { operation: "list", file: file.clone(), source })?;
    if !names.iter().any(|name| parse_segment_name(name).is_some() || parse_snapshot_name(name).is_some()) {
        let source = io::Error::new(
            io::ErrorKind::NotFound,
            format!("no journal segments, snapshots or {SHARD_DIR_PREFIX}k directories there"),
        );
        return Err(JournalError::Io { operation: "find a journal in", file, source });
    }
    Ok(storage)
}

/// Recovers one shard directory without changing it, and reports what a start would do.
pub fn verify(dir: &Path) -> Result<VerifyReport, JournalError> {
    let mut storage = open_existing(dir)?;
    let recovered = recover(&mut storage, Repair::ReadOnly)?;
    Ok(VerifyReport {
        dir: dir.to_path_buf(),
        snapshot_seq: recovered.snapshot_seq,
        last_seq: recovered.last_seq,
        replayed: recovered.replayed,
        hunts: recovered.shard.hunt_count(),
        digest: recovered.shard.digest(),
        truncation: recovered.truncation,
        notes: recovered.notes,
    })
}

/// Writes one line per journal record of `dir` from sequence number `from` on:
/// `seq time event`. Returns the number of records written.
pub fn dump(dir: &Path, from: u64, out: &mut dyn Write) -> Result<u64, JournalError> {
    let mut storage = open_existing(dir)?;
    // Segments a snapshot replaced are gone: start at the oldest record still there.
    let names = storage.list().map_err(|source| JournalError::Io {
        operation: "list",
        file: dir.display().to_string(),
        source,
    })?;
    let oldest = names.iter().filter_map(|name| parse_segment_name(name)).min().unwrap_or(1);
    let mut written = Ok(());
    let summary = read_journal(&mut storage, from.max(oldest).saturating_sub(1), Repair::ReadOnly, |record| {
        if written.is_ok() {
            written = writeln!(out, "{:>10} {:>16} {:?}", record.seq, record.time, record.event);
        }
    })?;
    written.map_err(|source| JournalError::Io { operation: "write", file: "standard output".to_string(), source })?;
    if let Some(cut) = summary.truncation {
        writeln!(
            out,
            "torn tail: {} from byte offset {} ({} bytes, {})",
            cut.file, cut.offset, cut.dropped_bytes, cut.reason
        )
        .map_err(|source| JournalError::Io {
            operation: "write",
            file: "standard output".to_string(),
            source,
        })?;
    }
    Ok(summary.visited)
}
