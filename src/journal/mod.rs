//! Durability: a per-shard journal of accepted mutating events, snapshots, and recovery.
//!
//! Cairn is in-memory first; this module makes what it acknowledged survive a crash. Each
//! shard owns one directory holding journal segments (`journal-<first seq>.log`, records
//! drawn in `record.rs`) and snapshots (`snapshot-<seq>.snap`, drawn in `snapshot.rs`).
//! The shard applies an event, appends it to its [`Writer`] (a memcpy into the commit
//! buffer), and once per loop turn calls [`Writer::commit`]: one write and, in `fsync`
//! mode, one fdatasync for everything the turn accepted. Only then are the replies to
//! those mutating events released. Every so many events [`Writer::snapshot`] writes the
//! whole shard to a temporary file, syncs it, renames it, syncs the directory, and then
//! deletes the snapshot and segments it replaces. At start, [`recover`] loads the newest
//! valid snapshot and replays the journal after it through the same `Shard::apply`.
//!
//! All file access goes through the [`Storage`] trait, so the crash tests run the very
//! same writer, snapshot and recovery code on a simulated disk that tears unsynced data.
//!
//! Files: `record.rs` the record layout and event encoding; `storage.rs` the storage
//! trait, the real directory and the simulated disk; `writer.rs` group commit and
//! segment rolling; `snapshot.rs` the snapshot layout and the shard rebuild;
//! `recovery.rs` snapshot choice, replay, torn tails and corruption; `rules.rs` the game
//! rules version a data directory records and the check against this build's;
//! `inspect.rs` what `cairn journal verify` and `dump` print.
//!
//! A journal records events, not outcomes, so replay reaches the acknowledged state only
//! under the rules that applied them: a data directory records its rules version
//! (`DIR/rules-version`, [`crate::constants::RULES_VERSION`]) and a start refuses another
//! one, or journals that record none. There is no migration between rules versions.
//!
//! Error policy: a full disk, an exceeded disk quota or a file at the process's file size
//! limit ([`JournalError::DiskFull`])
//! keeps the unwritten records pending and is recoverable, so the server can refuse new
//! mutations and keep answering queries; a failed fdatasync ([`JournalError::SyncFailed`]) poisons the writer for
//! good, because the kernel may have dropped the pages it failed to write and a retried
//! fsync can report success for data that never reached the disk.

mod inspect;
mod record;
mod recovery;
mod rules;
mod snapshot;
mod storage;
mod writer;

use std::fmt;
use std::io;
use std::str::FromStr;

pub use inspect::{
    check_shard_count, dump, read_number_file, shard_dirs, verify, VerifyReport, SHARD_COUNT_FILE, SHARD_DIR_PREFIX,
};
pub use record::{encode_record, parse_record, Parsed, Record};
pub use recovery::{read_journal, recover, JournalSummary, Recovered, Repair, Truncation};
pub use rules::{check_rules_version, describe_rules_version, read_rules_version, RulesCheck, RULES_VERSION_FILE};
pub use snapshot::{decode_snapshot, encode_snapshot, Snapshot, SNAPSHOT_HEADER_SIZE};
pub use storage::{Crash, FileStorage, SimCounters, SimStorage, Storage};
pub use writer::Writer;

/// How much a reply to a mutating event promises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Nothing is journaled: a crash loses everything.
    #[default]
    None,
    /// The event was written to the journal file (handed to the kernel) before its reply:
    /// it survives a crash of the process, not of the machine.
    Os,
    /// The event was covered by a completed fdatasync before its reply: it survives a
    /// power loss.
    Fsync,
}

impl FromStr for Durability {
    type Err = String;

    fn from_str(text: &str) -> Result<Durability, String> {
        match text {
            "none" => Ok(Durability::None),
            "os" => Ok(Durability::Os),
            "fsync" => Ok(Durability::Fsync),
            other => Err(format!("unknown durability {other:?}: expected none, os or fsync")),
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(match self {
            Durability::None => "none",
            Durability::Os => "os",
            Durability::Fsync => "fsync",
        })
    }
}

/// Everything that can go wrong with a journal or a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An operating-system call failed.
    #[error("could not {operation} {file}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file (or directory).
        file: String,
        /// The error.
        source: io::Error,
    },
    /// The disk is full; the records not written stay pending, and nothing was
    /// acknowledged that was not written.
    #[error(
        "disk full (or disk quota or file size limit exceeded) while writing {file}: mutating events are refused \
         until space is freed or the limit raised"
    )]
    DiskFull {
        /// The file being written.
        file: String,
    },
    /// fdatasync failed. Fatal: the server must stop, never retry.
    #[error(
        "fdatasync of {file} failed: {source}; stopping, because a failed fsync cannot be retried \
         safely (the kernel may have dropped the unwritten pages)"
    )]
    SyncFailed {
        /// The file being synced.
        file: String,
        /// The error.
        source: io::Error,
    },
    /// An earlier fatal error left the writer unusable.
    #[error("the journal stopped after an earlier fatal error: {0}")]
    Stopped(String),
    /// A damaged record is followed by valid ones: not a torn write but corruption.
    #[error(
        "journal {file} is damaged at byte offset {offset} ({reason}) and valid records follow, so this \
         is corruption, not a torn write; refusing to start (restore the file or move it aside)"
    )]
    Corrupt {
        /// The segment.
        file: String,
        /// Byte offset of the damaged record in the segment.
        offset: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Records are missing between two that survived, or a segment starts elsewhere than
    /// its name says, or the last segment is named past the end of the records before it.
    #[error("journal {file} at byte offset {offset}: sequence number {found} where {expected} was expected")]
    Gap {
        /// The segment.
        file: String,
        /// Byte offset of the record.
        offset: u64,
        /// The sequence number that should come next.
        expected: u64,
        /// The sequence number found.
        found: u64,
    },
    /// The journal does not reach back to the snapshot it should continue, or it ends
    /// before a snapshot that exists (whose contents could not be read).
    #[error("{0}")]
    Missing(String),
    /// A snapshot file is not one this build wrote, or is damaged.
    #[error("snapshot {file} is unusable: {reason}")]
    Snapshot {
        /// The snapshot file.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl JournalError {
    /// Returns true if and only if the error leaves the journal usable: only a full disk.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, JournalError::DiskFull { .. })
    }
}

/// The name of the segment whose first record has sequence number `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("journal-{first_seq:020}.log")
}

/// The name of the snapshot covering events up to `seq`.
pub fn snapshot_name(seq: u64) -> String {
    format!("snapshot-{seq:020}.snap")
}

/// Suffix of a snapshot being written, before its rename.
pub const TEMPORARY_SUFFIX: &str = ".tmp";

fn parse_numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The first sequence number of a segment, from its name, if it is a segment's name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    parse_numbered(name, "journal-", ".log")
}

/// The sequence number a snapshot covers, from its name, if it is a snapshot's name.
pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    parse_numbered(name, "snapshot-", ".snap")
}

/// Wraps an I/O error with what was being done to which file.
pub(crate) fn io_error(operation: &'static str, file: String) -> impl FnOnce(io::Error) -> JournalError {
    move |source| JournalError::Io { operation, file, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        assert_eq!(parse_segment_name(&segment_name(17)), Some(17));
        assert_eq!(parse_snapshot_name(&snapshot_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_snapshot_name(&(snapshot_name(3) + TEMPORARY_SUFFIX)), None);
        assert_eq!(parse_segment_name("journal-1.log"), None);
        assert_eq!(parse_segment_name("notes.txt"), None);
    }

    #[test]
    fn durability_parses_its_three_names() {
        for mode in [Durability::None, Durability::Os, Durability::Fsync] {
            assert_eq!(mode.to_string().parse::<Durability>(), Ok(mode));
        }
        assert!("always".parse::<Durability>().unwrap_err().contains("none, os or fsync"));
    }
}
