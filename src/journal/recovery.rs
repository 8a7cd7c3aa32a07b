//! Recovery: the newest valid snapshot, then the journal after it, replayed through the
//! same `Shard::apply` the live shard used.
//!
//! Segments are read in order of their first sequence number, one whole segment at a
//! time (at most `JOURNAL_SEGMENT_SIZE_MAX` bytes), and records are parsed in place. The
//! sequence numbers after the snapshot must run on without a gap; records the snapshot
//! already covers are skipped.
//!
//! A record that is cut short or fails its checks is told apart by what follows it:
//! - at the end of the last segment, with no valid record anywhere after it, it is a torn
//!   write from a crash: the segment is cut back to the last good record (and synced), and
//!   the cut is reported in [`Recovered::truncation`] for the caller to log. Nothing after
//!   it was ever acknowledged, since a commit covers a record only once all of it is
//!   written.
//! - anywhere else, or with a valid record somewhere after it, it is corruption: recovery
//!   refuses with [`JournalError::Corrupt`], naming the file and the byte offset. Guessing
//!   past damage could silently drop acknowledged awards.
//!
//! A damaged record is never applied: its CRC is checked before its event is decoded, and
//! the decoder accepts only encodings this build writes.

use std::collections::VecDeque;

use crate::event::Micros;
use crate::shard::{Shard, PREFETCH_AHEAD};

use super::record::{parse_record, Parsed, Record};
use super::snapshot::{decode_snapshot, Snapshot};
use super::storage::Storage;
use super::{io_error, parse_segment_name, parse_snapshot_name, JournalError, TEMPORARY_SUFFIX};

/// What recovery may change on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Cut a torn tail off (and sync the cut), and remove leftover temporary snapshots:
    /// what the server does before it opens the journal for appending.
    Truncate,
    /// Change nothing: what `cairn journal verify` and `dump` do.
    ReadOnly,
}

/// A torn tail found at the end of the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// The segment.
    pub file: String,
    /// Where its last good record ends: the new size.
    pub offset: u64,
    /// Bytes after it that were dropped (or, read-only, would be).
    pub dropped_bytes: u64,
    /// What was wrong with the first dropped byte's record.
    pub reason: &'static str,
}

/// What reading the journal found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalSummary {
    /// Segments read.
    pub segments: usize,
    /// Valid records read, covered by the snapshot or not.
    pub records: u64,
    /// Records handed to the visitor (those after the snapshot).
    pub visited: u64,
    /// Highest sequence number in the journal (0 if empty).
    pub last_seq: u64,
    /// The last segment, and the bytes of it that hold valid records, if the next record
    /// may be appended there without leaving a gap.
    pub tail: Option<(String, u64)>,
    /// A torn tail, if one was found.
    pub truncation: Option<Truncation>,
}

/// A shard rebuilt from disk.
pub struct Recovered {
    /// The state: the snapshot plus every journal record after it.
    pub shard: Shard,
    /// The sequence number the snapshot covered (0: no snapshot).
    pub snapshot_seq: u64,
    /// The highest sequence number in the state; the next record gets `last_seq + 1`.
    pub last_seq: u64,
    /// Records replayed after the snapshot.
    pub replayed: u64,
    /// The latest event time in the state: the snapshot's, or a replayed record's
    /// (0 for an empty journal). A restarted server's event clock starts from it.
    pub last_time: Micros,
    /// Where the writer continues appending (see [`JournalSummary::tail`]).
    pub tail: Option<(String, u64)>,
    /// A torn tail that was cut off (or, read-only, found).
    pub truncation: Option<Truncation>,
    /// Things worth logging: unusable snapshots skipped, leftover files removed.
    pub notes: Vec<String>,
}

/// Rebuilds the shard stored in `storage`: the newest valid snapshot, then the journal.
pub fn recover<S: Storage>(storage: &mut S, repair: Repair) -> Result<Recovered, JournalError> {
    let names = storage.list().map_err(io_error("list", storage.describe("")))?;
    let mut notes = Vec::new();
    if repair == Repair::Truncate {
        // Only names this build writes: a `.tmp` file of anyone else's is not ours to delete.
        let temporary_snapshot = |name: &&String| {
            name.strip_suffix(TEMPORARY_SUFFIX).is_some_and(|name| parse_snapshot_name(name).is_some())
        };
        for name in names.iter().filter(temporary_snapshot) {
            storage.remove(name).map_err(io_error("remove", storage.describe(name)))?;
            notes.push(format!("removed {}, a snapshot that was never completed", storage.describe(name)));
        }
    }
    let mut snapshots: Vec<u64> = names.iter().filter_map(|name| parse_snapshot_name(name)).collect();
    snapshots.sort_unstable_by(|a, b| b.cmp(a));
    let newest_snapshot = snapshots.first().copied().unwrap_or(0);
    let (mut snapshot_seq, mut shard, mut last_time) = (0, Shard::new(), 0);
    for seq in snapshots {
        let name = super::snapshot_name(seq);
        let bytes = storage.read(&name).map_err(io_error("read", storage.describe(&name)))?;
        match decode_snapshot(&bytes) {
            Ok(snapshot) if snapshot.seq == seq => {
                (snapshot_seq, shard, last_time) = (seq, snapshot.shard, snapshot.time);
                break;
            }
            Ok(Snapshot { seq: covered, .. }) => {
                notes.push(format!("skipped {}: it says it covers {covered}", storage.describe(&name)))
            }
            Err(reason) => notes.push(format!("skipped {}: {reason}", storage.describe(&name))),
        }
    }
    // Each record is applied `PREFETCH_AHEAD` records after it is read, its player
    // prefetched when read, so that replay overlaps the cache misses of several records.
    let mut ahead = VecDeque::with_capacity(PREFETCH_AHEAD + 1);
    let summary = read_journal(storage, snapshot_seq, repair, |record| {
        last_time = last_time.max(record.time);
        shard.prefetch(&record.event);
        ahead.push_back((record.event, record.time));
        if ahead.len() > PREFETCH_AHEAD {
            let (event, time) = ahead.pop_front().expect("more than PREFETCH_AHEAD records wait");
            shard.apply(&event, time);
        }
    });
    let summary = match summary {
        // The segment the unusable snapshot rolled to starts past the journal before it:
        // the snapshot is what is missing, so name it.
        Err(gap @ JournalError::Gap { .. }) if newest_snapshot > snapshot_seq => {
            return Err(JournalError::Missing(format!(
                "snapshot {} is unusable and the journal does not reach back to the events it held ({gap}); \
                 refusing to start without them ({})",
                storage.describe(&super::snapshot_name(newest_snapshot)),
                notes.join("; ")
            )))
        }
        summary => summary?,
    };
    for (event, time) in ahead {
        shard.apply(&event, time);
    }
    let last_seq = summary.last_seq.max(snapshot_seq);
    if last_seq < newest_snapshot {
        return Err(JournalError::Missing(format!(
            "snapshot {} is unusable and the journal ends at sequence {last_seq} before it; \
             refusing to start without the events it held ({})",
            storage.describe(&super::snapshot_name(newest_snapshot)),
            notes.join("; ")
        )));
    }
    Ok(Recovered {
        shard,
        snapshot_seq,
        last_seq,
        replayed: summary.visited,
        last_time,
        tail: summary.tail,
        truncation: summary.truncation,
        notes,
    })
}

/// Returns true if and only if a valid record starts at some offset of `bytes`.
fn valid_record_follows(bytes: &[u8]) -> bool {
    (0..bytes.len()).any(|start| matches!(parse_record(&bytes[start..]), Parsed::Record(..)))
}

/// Reads every segment in order, checks the records and hands those after `after_seq`
/// to `visit`, in order. Cuts a torn tail if `repair` allows.
pub fn read_journal<S: Storage>(
    storage: &mut S,
    after_seq: u64,
    repair: Repair,
    mut visit: impl FnMut(&Record),
) -> Result<JournalSummary, JournalError> {
    let names = storage.list().map_err(io_error("list", storage.describe("")))?;
    let mut segments: Vec<(u64, String)> =
        names.into_iter().filter_map(|name| parse_segment_name(&name).map(|first| (first, name))).collect();
    segments.sort_unstable();
    let mut summary = JournalSummary { segments: segments.len(), ..JournalSummary::default() };
    // The sequence number of the last valid record read (0: none yet).
    let mut previous = 0u64;
    let mut bytes = Vec::new();
    for (index, (first_seq, name)) in segments.iter().enumerate() {
        let is_last = index + 1 == segments.len();
        storage.read_into(name, &mut bytes).map_err(io_error("read", storage.describe(name)))?;
        // The writer starts a segment only once every record before its first is covered,
        // so a last segment named past the end of the others says records were lost, even
        // with no valid record of its own (empty, or torn from its first byte) to show it.
        let next_seq = previous.max(after_seq).saturating_add(1);
        if is_last && *first_seq > next_seq && !valid_record_follows(&bytes) {
            return Err(JournalError::Gap {
                file: storage.describe(name),
                offset: 0,
                expected: next_seq,
                found: *first_seq,
            });
        }
        let mut offset = 0usize;
        let mut first_in_segment = true;
        while offset < bytes.len() {
            let (record, size) = match parse_record(&bytes[offset..]) {
                Parsed::Record(record, size) => (record, size),
                Parsed::Incomplete | Parsed::Damaged(_) if is_last && !valid_record_follows(&bytes[offset + 1..]) => {
                    let reason = match parse_record(&bytes[offset..]) {
                        Parsed::Damaged(reason) => reason,
                        _ => "record cut short",
                    };
                    summary.truncation = Some(Truncation {
                        file: storage.describe(name),
                        offset: offset as u64,
                        dropped_bytes: (bytes.len() - offset) as u64,
                        reason,
                    });
                    if repair == Repair::Truncate {
                        let file = storage.describe(name);
                        storage.truncate(name, offset as u64).map_err(io_error("truncate", file.clone()))?;
                        storage.sync(name).map_err(|source| JournalError::SyncFailed { file, source })?;
                    }
                    break;
                }
                Parsed::Incomplete => {
                    let file = storage.describe(name);
                    return Err(JournalError::Corrupt { file, offset: offset as u64, reason: "record cut short" });
                }
                Parsed::Damaged(reason) => {
                    return Err(JournalError::Corrupt { file: storage.describe(name), offset: offset as u64, reason });
                }
            };
            let expected = if record.seq > after_seq { previous.max(after_seq) + 1 } else { previous + 1 };
            let in_order = if first_in_segment { record.seq == *first_seq } else { record.seq == expected };
            // Before the snapshot only the order matters: old segments may end early.
            let continuous = record.seq <= after_seq || record.seq == expected;
            if !(in_order && continuous && record.seq > previous) {
                let file = storage.describe(name);
                let expected = if first_in_segment && record.seq != *first_seq { *first_seq } else { expected };
                return Err(JournalError::Gap { file, offset: offset as u64, expected, found: record.seq });
            }
            if record.seq > after_seq {
                visit(&record);
                summary.visited += 1;
            }
            previous = record.seq;
            summary.records += 1;
            first_in_segment = false;
            offset += size;
        }
        if is_last {
            let valid_size = summary.truncation.as_ref().map_or(bytes.len() as u64, |cut| cut.offset);
            let last_seq = previous.max(after_seq);
            let continues = if first_in_segment { *first_seq == last_seq + 1 } else { previous == last_seq };
            summary.tail = continues.then(|| (name.clone(), valid_size));
        }
    }
    summary.last_seq = previous;
    Ok(summary)
}
