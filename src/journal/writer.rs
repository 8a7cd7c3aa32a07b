//! A shard's journal writer: group commit, segment rolling and the snapshot protocol.
//!
//! During a loop turn the shard calls [`Writer::append`] for every mutating event it
//! applied; that assigns the next sequence number and encodes the record into a commit
//! buffer reserved at start-up, so it never allocates and never touches the disk. At the
//! end of the turn [`Writer::commit`] hands the whole buffer to the storage in ONE append
//! and, in `fsync` mode, makes it durable with ONE fdatasync; it returns the highest
//! sequence number now covered, and the shard releases the replies held for events up to
//! it. The cost of a commit is per turn, not per event: that is group commit.
//!
//! A full disk leaves the file as it was before the commit (a partial write is cut back,
//! so it cannot become damage in the middle of the journal once later records follow)
//! and keeps the records pending: the next commit tries again, and the caller refuses new
//! mutations meanwhile. A failed fdatasync or any other I/O error stops the writer for
//! good; every later call returns [`JournalError::Stopped`].
//!
//! The server does not block its loop on the fdatasync: in `fsync` mode it calls
//! [`Writer::write_pending`] (the one write, no sync), hands the sync to a thread of its
//! own through [`Writer::sync_handle`], goes on applying and appending the next events
//! meanwhile, and reports the sync's end with [`Writer::mark_synced`] (or its failure
//! with [`Writer::stop`]). At most one such sync is outstanding: the next write waits
//! for it, so a write never lands in a segment the running sync does not cover.
//!
//! Segments roll when they reach `JOURNAL_SEGMENT_SIZE_MAX` and at every snapshot, so a
//! snapshot at sequence `s` always finds the records up to `s` in older segments than the
//! one it starts, and can delete them whole.

use crate::constants::{JOURNAL_COMMIT_BUFFER_SIZE, JOURNAL_RECORD_SIZE_MAX, JOURNAL_SEGMENT_SIZE_MAX};
use crate::event::{Event, Micros};
use crate::shard::Shard;

use super::record::encode_record;
use super::recovery::Recovered;
use super::snapshot::write_snapshot;
use super::storage::Storage;
use super::{
    io_error, parse_segment_name, parse_snapshot_name, segment_name, snapshot_name, Durability, JournalError,
    TEMPORARY_SUFFIX,
};

/// One shard's journal, open for appending.
pub struct Writer<S: Storage> {
    storage: S,
    /// `fsync` mode: every commit ends with an fdatasync.
    sync: bool,
    /// The segment being appended to, and the bytes it holds that are written.
    segment: String,
    segment_size: u64,
    /// Records appended since the last successful commit.
    buffer: Vec<u8>,
    /// The sequence number the next appended record gets.
    next_seq: u64,
    /// The highest sequence number written (and, in `fsync` mode, synced).
    covered_seq: u64,
    /// The highest sequence number written (synced or not).
    written_seq: u64,
    /// The event time of the last record appended (or recovered): snapshots store it so
    /// a restarted server never stamps an earlier time.
    last_time: Micros,
    /// The segment whose handle [`Writer::sync_handle`] gave out last.
    sync_segment: Option<String>,
    /// The sequence number of the last snapshot written (0: none).
    snapshot_seq: u64,
    /// Set after a fatal error, with its message.
    stopped: Option<String>,
}

impl<S: Storage> Writer<S> {
    /// Opens the journal for appending after `recovered` (which must come from
    /// `recover(.., Repair::Truncate)` on the same storage). `durability` must be `Os`
    /// or `Fsync`: with `None` there is no journal.
    pub fn open(mut storage: S, durability: Durability, recovered: &Recovered) -> Result<Writer<S>, JournalError> {
        assert!(durability != Durability::None, "durability none keeps no journal");
        let sync = durability == Durability::Fsync;
        let next_seq = recovered.last_seq + 1;
        let (segment, segment_size) = match &recovered.tail {
            Some((name, size)) if *size < JOURNAL_SEGMENT_SIZE_MAX => (name.clone(), *size),
            _ => {
                let name = segment_name(next_seq);
                create_segment(&mut storage, &name, sync)?;
                (name, 0)
            }
        };
        if sync {
            sync_recovered(&mut storage)?;
        }
        // Opens the segment for appending now (an empty append writes nothing), so a
        // journal this process may not write refuses the start, not the first mutation.
        storage.append(&segment, &[]).map_err(io_error("open", storage.describe(&segment)))?;
        // Likewise a directory it may not create files in (a snapshot and a segment roll
        // do), which would otherwise stop the server at its first snapshot. The probe is
        // named as a temporary snapshot, so recovery removes it if a crash leaves it.
        let probe = format!("{}{TEMPORARY_SUFFIX}", snapshot_name(recovered.last_seq));
        storage
            .create(&probe)
            .map_err(io_error("create a file in the journal directory:", storage.describe(&probe)))?;
        storage.remove(&probe).map_err(io_error("remove", storage.describe(&probe)))?;
        Ok(Writer {
            storage,
            sync,
            segment,
            segment_size,
            buffer: Vec::with_capacity(JOURNAL_COMMIT_BUFFER_SIZE),
            next_seq,
            covered_seq: recovered.last_seq,
            written_seq: recovered.last_seq,
            last_time: recovered.last_time,
            sync_segment: None,
            snapshot_seq: recovered.snapshot_seq,
            stopped: None,
        })
    }

    /// Appends a mutating event applied at `time` to the commit buffer; returns its
    /// sequence number. The event is not covered until a [`Writer::commit`] succeeds.
    pub fn append(&mut self, event: &Event, time: Micros) -> u64 {
        let seq = self.next_seq;
        encode_record(seq, time, event, &mut self.buffer);
        self.next_seq += 1;
        self.last_time = self.last_time.max(time);
        seq
    }

    /// Returns true if and only if records are waiting for a commit.
    pub fn has_pending(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// Returns true if and only if one more record of any size fits in the commit buffer
    /// without growing it: the server stops taking mutations for the rest of a turn when
    /// it does not, so appending never allocates.
    pub fn has_room(&self) -> bool {
        self.buffer.len() + JOURNAL_RECORD_SIZE_MAX <= self.buffer.capacity()
    }

    /// The sequence number the last snapshot covers (0: none yet).
    pub fn snapshot_seq(&self) -> u64 {
        self.snapshot_seq
    }

    /// The highest sequence number covered by a successful commit.
    pub fn covered_seq(&self) -> u64 {
        self.covered_seq
    }

    /// The highest sequence number written by [`Writer::write_pending`] or a commit,
    /// synced or not.
    pub fn written_seq(&self) -> u64 {
        self.written_seq
    }

    /// The latest event time appended or recovered.
    pub fn last_time(&self) -> Micros {
        self.last_time
    }

    /// The highest sequence number appended (covered or not).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The segment being appended to, as a path for messages.
    pub fn segment_path(&self) -> String {
        self.storage.describe(&self.segment)
    }

    /// The storage (for tests that inspect it).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Writes everything appended since the last commit in one append and, in `fsync`
    /// mode, one fdatasync. Returns the highest covered sequence number.
    pub fn commit(&mut self) -> Result<u64, JournalError> {
        if let Some(message) = &self.stopped {
            return Err(JournalError::Stopped(message.clone()));
        }
        assert_eq!(self.written_seq, self.covered_seq, "a commit waits for the outstanding sync");
        if self.buffer.is_empty() {
            return Ok(self.covered_seq);
        }
        let result = self.write_buffer(self.sync).map(|_| {
            self.covered_seq = self.written_seq;
            self.covered_seq
        });
        if let Err(error) = &result {
            if !error.is_recoverable() {
                self.stopped = Some(error.to_string());
            }
        }
        result
    }

    /// Writes everything appended since the last write in one append, without syncing,
    /// and returns the highest sequence number written. In `os` mode that covers it; in
    /// `fsync` mode the caller syncs the handle from [`Writer::sync_handle`] and then
    /// calls [`Writer::mark_synced`]. Must not be called while such a sync is
    /// outstanding (`written_seq() > covered_seq()`). A full disk keeps the records
    /// pending, as in [`Writer::commit`].
    pub fn write_pending(&mut self) -> Result<u64, JournalError> {
        if let Some(message) = &self.stopped {
            return Err(JournalError::Stopped(message.clone()));
        }
        assert_eq!(self.written_seq, self.covered_seq, "one outstanding sync at a time");
        if self.buffer.is_empty() {
            return Ok(self.written_seq);
        }
        let result = self.write_buffer(false);
        match &result {
            Ok(_) if !self.sync => self.covered_seq = self.written_seq,
            Ok(_) => {}
            Err(error) if !error.is_recoverable() => self.stopped = Some(error.to_string()),
            Err(_) => {}
        }
        result
    }

    /// Records that a sync started after [`Writer::write_pending`] returned `seq` has
    /// completed: everything up to `seq` is covered.
    pub fn mark_synced(&mut self, seq: u64) {
        assert!(seq <= self.written_seq, "synced {seq} past what was written ({})", self.written_seq);
        self.covered_seq = self.covered_seq.max(seq);
    }

    /// Stops the writer for good (a sync run elsewhere failed): every later call returns
    /// [`JournalError::Stopped`] with `message`. A failed fdatasync is never retried.
    pub fn stop(&mut self, message: String) {
        self.stopped.get_or_insert(message);
    }

    fn write_buffer(&mut self, sync: bool) -> Result<u64, JournalError> {
        if self.segment_size >= JOURNAL_SEGMENT_SIZE_MAX {
            self.roll()?;
        }
        if let Err(error) = self.storage.append(&self.segment, &self.buffer) {
            let file = self.storage.describe(&self.segment);
            if !super::storage::is_out_of_space(&error) {
                return Err(JournalError::Io { operation: "append to", file, source: error });
            }
            // Cut a partial write back, or the next commit would put valid records after
            // a torn one and turn a full disk into corruption.
            self.storage.truncate(&self.segment, self.segment_size).map_err(io_error("truncate", file.clone()))?;
            return Err(JournalError::DiskFull { file });
        }
        self.segment_size += self.buffer.len() as u64;
        self.buffer.clear();
        self.written_seq = self.next_seq - 1;
        if sync {
            self.storage
                .sync(&self.segment)
                .map_err(|source| JournalError::SyncFailed { file: self.storage.describe(&self.segment), source })?;
        }
        Ok(self.written_seq)
    }

    /// Starts a new segment whose first record will be the next one appended. The old
    /// segment is complete: in `fsync` mode every commit already synced it.
    fn roll(&mut self) -> Result<(), JournalError> {
        let first_seq = self.covered_seq + 1;
        let name = segment_name(first_seq);
        if name == self.segment {
            return Ok(());
        }
        create_segment(&mut self.storage, &name, self.sync)?;
        self.segment = name;
        self.segment_size = 0;
        Ok(())
    }

    /// Commits, then snapshots `shard` (whose state must be exactly the events appended
    /// so far) and deletes the snapshot and segments the new one replaces. Returns the
    /// sequence number the snapshot covers.
    ///
    /// Order matters, and is the classic one: roll the journal so older segments hold
    /// only covered records; write the snapshot to a temporary file, sync it, rename it,
    /// sync the directory; only then delete what it replaces. A crash at any point leaves
    /// either the old snapshot with its journal or the new one.
    pub fn snapshot(&mut self, shard: &Shard) -> Result<u64, JournalError> {
        let seq = self.commit()?;
        if seq == self.snapshot_seq {
            return Ok(seq);
        }
        let time = self.last_time;
        let result = self.roll().and_then(|()| write_snapshot(&mut self.storage, shard, seq, time));
        match result {
            Ok(()) => {}
            Err(error) => {
                if !error.is_recoverable() {
                    self.stopped = Some(error.to_string());
                }
                return Err(error);
            }
        }
        self.snapshot_seq = seq;
        self.remove_replaced(seq)?;
        Ok(seq)
    }

    /// Deletes snapshots older than `seq` and segments holding only records up to `seq`.
    /// The directory is not synced afterwards: a deletion that is lost in a crash leaves
    /// a file recovery skips, which costs nothing but disk space.
    fn remove_replaced(&mut self, seq: u64) -> Result<(), JournalError> {
        let names = self.storage.list().map_err(io_error("list", self.storage.describe("")))?;
        for name in names {
            let replaced = match (parse_snapshot_name(&name), parse_segment_name(&name)) {
                (Some(covered), _) => covered < seq,
                // The current segment starts after `seq` (it was rolled), so every older
                // segment holds only records the snapshot covers.
                (_, Some(first)) => first <= seq && name != self.segment,
                _ => false,
            };
            if replaced {
                self.storage.remove(&name).map_err(io_error("remove", self.storage.describe(&name)))?;
            }
        }
        Ok(())
    }
}

impl Writer<super::FileStorage> {
    /// A handle to the segment the last [`Writer::write_pending`] wrote to, if it is
    /// another segment than the one handed out last (a sync thread keeps the handle and
    /// syncs it until it gets a new one).
    pub fn sync_handle(&mut self) -> Result<Option<std::fs::File>, JournalError> {
        if self.sync_segment.as_deref() == Some(self.segment.as_str()) {
            return Ok(None);
        }
        let file =
            self.storage.clone_handle(&self.segment).map_err(io_error("open", self.storage.describe(&self.segment)))?;
        self.sync_segment = Some(self.segment.clone());
        Ok(Some(file))
    }
}

/// Syncs every segment and the directory before an `fsync` writer reports what recovery
/// read as covered: a killed process leaves written records in the page cache that were
/// never synced (so never acknowledged), recovery reads them back, and the state built on
/// them must not vanish at a later power loss. A life in `os` mode never synced at all.
fn sync_recovered<S: Storage>(storage: &mut S) -> Result<(), JournalError> {
    let names = storage.list().map_err(io_error("list", storage.describe("")))?;
    for name in names.iter().filter(|name| parse_segment_name(name).is_some()) {
        storage.sync(name).map_err(|source| JournalError::SyncFailed { file: storage.describe(name), source })?;
    }
    storage.sync_dir().map_err(|source| JournalError::SyncFailed { file: storage.describe(""), source })
}

/// Creates an empty segment; in `fsync` mode makes its directory entry durable, since
/// synced records in a file the directory forgot are lost all the same.
fn create_segment<S: Storage>(storage: &mut S, name: &str, sync: bool) -> Result<(), JournalError> {
    storage.create(name).map_err(io_error("create", storage.describe(name)))?;
    if sync {
        storage.sync_dir().map_err(|source| JournalError::SyncFailed { file: storage.describe(""), source })?;
    }
    Ok(())
}
