//! Opening the server's data directory before it listens: the shard-count file, then
//! each shard's recovery and journal writer.
//!
//! A data directory holds one journal directory per shard (`DIR/shard-k/`, the layout
//! `cairn journal verify` expects) and a file `DIR/shards` with the shard count. Hunts
//! are assigned to shards by `shard_for(hunt, shard_count)`, so a journal only makes
//! sense under the shard count that wrote it: a restart with another count is refused
//! with a message rather than replaying hunts into shards that do not own them.
//!
//! The data directory also records the game rules version it was written under
//! (`DIR/rules-version`, checked by `journal::check_rules_version`): a directory of
//! another version, or with journals and no version, is refused before anything is
//! replayed, and a new one gets this build's version before anything else is written.
//!
//! Recovery runs for all shards at once, one thread each (the shards are independent),
//! through `journal::recover` with `Repair::Truncate`: a torn tail is cut and logged, a
//! damaged record in the middle refuses the start with the file and offset. What each
//! shard recovered becomes its loop's engine, and its [`Writer`] continues the journal.
//!
//! With durability `fsync` each shard also gets a `SyncThread`: the loop writes a
//! commit's records itself (one `write`, cheap) and hands the fdatasync to that thread,
//! then goes on reading, applying and appending the next events while the disk works.
//! The thread wakes the loop through its mio `Waker` when the sync is done, and only
//! then does the loop release the replies the sync covers. One sync runs at a time; the
//! records of the turns it overlapped go to disk together in the next one, so a slow
//! disk makes commits larger rather than the loop idle. A failed fdatasync is reported
//! once and never retried: the loop stops the server.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use mio::Waker;

use crate::constants::RULES_VERSION;
use crate::journal::{
    check_rules_version, read_number_file, recover, FileStorage, Repair, RulesCheck, Writer, SHARD_DIR_PREFIX,
};
use crate::shard::Shard;

use super::Config;

/// The name of the file holding the shard count, in the data directory (defined beside
/// the journal's layout, which `cairn journal verify` checks it against).
pub use crate::journal::SHARD_COUNT_FILE;

/// The name of the file holding the game rules version, in the data directory.
pub use crate::journal::RULES_VERSION_FILE;

/// One shard's starting state.
pub(crate) struct Opened {
    /// The state machine: empty, or what recovery rebuilt.
    pub(crate) engine: Shard,
    /// The journal to append to; `None` with durability `none`.
    pub(crate) writer: Option<Writer<FileStorage>>,
}

/// The name of the file a running server holds an exclusive lock on, in the data
/// directory: two servers appending to the same journals would corrupt them.
pub const LOCK_FILE: &str = "lock";

/// The data directory's lock, held for the server's life; dropping it (or the process
/// ending, however it ends) releases it.
pub(crate) struct DataDirLock {
    /// The locked file. Closing any descriptor of it in this process would release the
    /// lock, so this is the only one this process opens while the lock is held.
    file: Option<File>,
    /// The data directory's identity in [`HELD`].
    directory: FileId,
}

/// A file's device and inode.
type FileId = (u64, u64);

/// The data directories this process holds locks on. POSIX record locks never conflict
/// within one process, so a second server in the same process is refused here.
static HELD: Mutex<Vec<FileId>> = Mutex::new(Vec::new());

impl Drop for DataDirLock {
    fn drop(&mut self) {
        // The file is closed (releasing the lock) before the directory leaves the list,
        // under the list's lock: a server starting meanwhile in this process would
        // otherwise take the lock with a descriptor of its own, and this close would
        // then release the lock it had just taken.
        let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        drop(self.file.take());
        held.retain(|id| *id != self.directory);
    }
}

/// Opens every shard: empty shards without a data directory, recovered ones with it,
/// after taking the directory's lock (refused, naming the directory, while another
/// server holds it). Recovery's findings go to stderr; any error names the file it
/// concerns.
pub(crate) fn open_shards(config: &Config) -> io::Result<(Vec<Opened>, Option<DataDirLock>)> {
    let Some(dir) = &config.data_dir else {
        return Ok(((0..config.shards).map(|_| Opened { engine: Shard::new(), writer: None }).collect(), None));
    };
    let lock = lock_data_dir(dir)?;
    // Before the shard count, so that a new directory records its rules first of all: a
    // directory with journals and no version is then always one from before versions.
    check_rules(dir)?;
    check_shard_count(dir, config.shards)?;
    let opened: Vec<Result<Opened, String>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..config.shards)
            .map(|index| {
                let shard_dir = shard_dir(dir, index);
                scope.spawn(move || open_shard(index, &shard_dir, config))
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().expect("recovery does not panic")).collect()
    });
    let opened = opened.into_iter().map(|result| result.map_err(io::Error::other)).collect::<io::Result<_>>()?;
    Ok((opened, Some(lock)))
}

/// Creates `dir` if needed and takes an exclusive lock on `DIR/lock`, without waiting.
/// The lock is advisory: it keeps out other Cairn servers, which is what it is for.
///
/// It is a POSIX record lock (`fcntl(F_SETLK)`), not `flock`. A child process holds
/// copies of its parent's descriptors from `fork` until `exec` closes them, and an
/// `flock` lock lives as long as any copy: a server stopping while another thread of its
/// process spawned a child left the lock held for that moment, and a restart right then
/// was refused (measured: about one try in ten while a thread spawned `true` in a
/// loop). A record lock belongs to the process, and a child never inherits it.
fn lock_data_dir(dir: &Path) -> io::Result<DataDirLock> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsRawFd;
    let named = |what: &str, path: &Path| {
        let message = format!("cannot {what} {}", path.display());
        move |error: io::Error| io::Error::new(error.kind(), format!("{message}: {error}"))
    };
    let path = dir.join(LOCK_FILE);
    let in_use = || {
        io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "the data directory {} is in use by another running server (it holds {}); stop that one, \
                 or give this one another --data-dir",
                dir.display(),
                path.display()
            ),
        )
    };
    fs::create_dir_all(dir).map_err(named("create the data directory", dir))?;
    let metadata = fs::metadata(dir).map_err(named("read the data directory", dir))?;
    let directory = (metadata.dev(), metadata.ino());
    let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Checked before the lock file is opened: closing a descriptor of it would release
    // the lock the other server of this process holds.
    if held.contains(&directory) {
        return Err(in_use());
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(named("open the lock file", &path))?;
    // SAFETY: `flock` is a plain C struct for which all zero bytes are a valid value.
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    request.l_type = libc::F_WRLCK as libc::c_short;
    request.l_whence = libc::SEEK_SET as libc::c_short;
    // `l_start` and `l_len` 0: the whole file, however long it grows.
    // SAFETY: the descriptor is open for writing (which a write lock needs) for the whole
    // call, and `request` is a valid `flock` that outlives it.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &request) } == -1 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::EACCES | libc::EAGAIN) => in_use(),
            _ => named("lock", &path)(error),
        });
    }
    held.push(directory);
    Ok(DataDirLock { file: Some(file), directory })
}

/// `DIR/shard-k`.
pub fn shard_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("{SHARD_DIR_PREFIX}{index}"))
}

fn open_shard(index: usize, dir: &Path, config: &Config) -> Result<Opened, String> {
    let describe = |error: &dyn std::fmt::Display| format!("shard {index} ({}): {error}", dir.display());
    let mut storage = FileStorage::open(dir).map_err(|error| describe(&error))?;
    let recovered = recover(&mut storage, Repair::Truncate).map_err(|error| describe(&error))?;
    for note in &recovered.notes {
        super::log_line(format_args!("cairn: shard {index}: {note}"));
    }
    if let Some(cut) = &recovered.truncation {
        super::log_line(format_args!(
            "cairn: shard {index}: cut a torn tail off {} at byte offset {} ({} bytes dropped: {}); \
             nothing in it was acknowledged",
            cut.file, cut.offset, cut.dropped_bytes, cut.reason
        ));
    }
    if recovered.last_seq > 0 {
        super::log_line(format_args!(
            "cairn: shard {index}: recovered up to event {} (snapshot at {}, {} replayed)",
            recovered.last_seq, recovered.snapshot_seq, recovered.replayed
        ));
    }
    let writer = Writer::open(storage, config.durability, &recovered).map_err(|error| describe(&error))?;
    Ok(Opened { engine: recovered.shard, writer: Some(writer) })
}

/// A shard's fdatasync thread (durability `fsync`).
pub(crate) struct SyncThread {
    state: Arc<(Mutex<SyncState>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct SyncState {
    /// A sync to run: a new segment's handle, if the segment changed since the last one.
    request: Option<Option<File>>,
    /// The last sync's result, until the loop takes it.
    done: Option<io::Result<()>>,
    /// The loop is gone: the thread ends.
    stop: bool,
}

impl SyncThread {
    /// Starts shard `index`'s sync thread, which wakes the shard through `waker`.
    pub(crate) fn start(index: usize, waker: Arc<Waker>) -> io::Result<SyncThread> {
        let state = Arc::new((Mutex::new(SyncState::default()), Condvar::new()));
        let thread_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name(format!("cairn-sync-{index}"))
            .spawn(move || sync_loop(&thread_state, &waker))?;
        Ok(SyncThread { state, thread: Some(thread) })
    }

    /// Asks for an fdatasync of the journal segment (of `file`, from now on, if given).
    /// The caller waits for [`SyncThread::poll`] to report before asking again.
    pub(crate) fn request(&self, file: Option<File>) {
        let (lock, wake) = &*self.state;
        let mut state = lock.lock().expect("the sync thread does not panic holding its lock");
        assert!(state.request.is_none() && state.done.is_none(), "one sync at a time");
        state.request = Some(file);
        wake.notify_one();
    }

    /// The result of the requested sync, once it has finished (`None`: still running).
    pub(crate) fn poll(&self) -> Option<io::Result<()>> {
        let (lock, _) = &*self.state;
        lock.lock().expect("the sync thread does not panic holding its lock").done.take()
    }

    /// Waits for the requested sync to finish and returns its result.
    pub(crate) fn wait(&self) -> io::Result<()> {
        let (lock, wake) = &*self.state;
        let mut state = lock.lock().expect("the sync thread does not panic holding its lock");
        loop {
            if let Some(result) = state.done.take() {
                return result;
            }
            state = wake.wait(state).expect("the sync thread does not panic holding its lock");
        }
    }
}

impl Drop for SyncThread {
    fn drop(&mut self) {
        let (lock, wake) = &*self.state;
        if let Ok(mut state) = lock.lock() {
            state.stop = true;
        }
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The sync thread's life: wait for a request, fdatasync, report, wake the loop.
fn sync_loop(state: &(Mutex<SyncState>, Condvar), waker: &Waker) {
    let (lock, wake) = state;
    let mut file: Option<File> = None;
    loop {
        let request = {
            let mut state = lock.lock().expect("the loop does not panic holding the sync lock");
            loop {
                if state.stop {
                    return;
                }
                if let Some(request) = state.request.take() {
                    break request;
                }
                state = wake.wait(state).expect("the loop does not panic holding the sync lock");
            }
        };
        if let Some(new) = request {
            file = Some(new);
        }
        let result = file.as_ref().map_or_else(
            || Err(io::Error::other("no journal segment was handed to the sync thread")),
            |file| file.sync_data(),
        );
        lock.lock().expect("the loop does not panic holding the sync lock").done = Some(result);
        // `wait` may be blocked on the condition variable rather than in the poll.
        wake.notify_all();
        // A loop that has exited has nothing left to be woken for.
        let _ = waker.wake();
    }
}

/// Checks `DIR/shards` against `shard_count`, or writes it (durably) on first use.
fn check_shard_count(dir: &Path, shard_count: usize) -> io::Result<()> {
    let context = |what: &str, path: &Path| {
        let path = path.display().to_string();
        let what = what.to_owned();
        move |error: io::Error| io::Error::new(error.kind(), format!("cannot {what} {path}: {error}"))
    };
    fs::create_dir_all(dir).map_err(context("create the data directory", dir))?;
    let path = dir.join(SHARD_COUNT_FILE);
    let written = read_number_file::<usize>(&path, "the shard count")
        .map_err(|message| io::Error::new(io::ErrorKind::InvalidData, message))?;
    match written {
        Some(written) if written != shard_count => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the data directory {} was written by a server with {written} shards, and this one has \
                 {shard_count}: hunts belong to shards by shard_for(hunt, shard count), so its journals only \
                 replay correctly with --shards {written}",
                dir.display()
            ),
        )),
        Some(_) => Ok(()),
        // First use of the directory, unless shard journals are already there.
        None => {
            if (0..crate::constants::SHARDS_MAX).any(|index| shard_dir(dir, index).exists()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} holds shard journals but no {SHARD_COUNT_FILE} file; refusing to guess the shard \
                         count they were written with (write it into {} to start)",
                        dir.display(),
                        path.display()
                    ),
                ));
            }
            write_durably(dir, &path, format!("{shard_count}\n").as_bytes())
        }
    }
}

/// Refuses a data directory written under other game rules (or journals from before
/// rules versions were recorded), or records this build's version in a new one (durably).
fn check_rules(dir: &Path) -> io::Result<()> {
    match check_rules_version(dir).map_err(|message| io::Error::new(io::ErrorKind::InvalidData, message))? {
        RulesCheck::Same => Ok(()),
        RulesCheck::New => write_durably(dir, &dir.join(RULES_VERSION_FILE), format!("{RULES_VERSION}\n").as_bytes()),
    }
}

/// Writes a small file so that it survives a power loss: temporary file, sync, rename,
/// sync the directory (the order the journal's snapshots use too).
fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        fs::File::open(dir)?.sync_all()
    };
    write().map_err(|error| io::Error::new(error.kind(), format!("cannot write {}: {error}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TemporaryDir;

    #[test]
    fn the_shard_count_is_written_once_and_a_different_one_is_refused() {
        let temporary = TemporaryDir::new("shard-count");
        let dir = temporary.path();
        check_shard_count(dir, 3).unwrap();
        assert_eq!(fs::read_to_string(dir.join(SHARD_COUNT_FILE)).unwrap(), "3\n");
        check_shard_count(dir, 3).unwrap();
        let message = check_shard_count(dir, 2).unwrap_err().to_string();
        assert!(message.contains("3 shards") && message.contains("--shards 3"), "{message}");
        fs::remove_file(dir.join(SHARD_COUNT_FILE)).unwrap();
        fs::create_dir_all(shard_dir(dir, 0)).unwrap();
        let message = check_shard_count(dir, 3).unwrap_err().to_string();
        assert!(message.contains("refusing to guess"), "{message}");
    }

    /// A stop followed at once by a start, in a process whose other threads spawn child
    /// processes: the children must not keep the stopped server's lock.
    #[test]
    fn a_released_lock_can_be_taken_again_at_once_while_other_threads_spawn_children() {
        use std::sync::atomic::{AtomicBool, Ordering};
        const CHILDREN: usize = 200;
        let temporary = TemporaryDir::new("lock-spawn");
        let dir = temporary.path();
        let stop = AtomicBool::new(false);
        let (spawned, refused) = std::thread::scope(|scope| {
            let spawner = scope.spawn(|| {
                let mut spawned = 0;
                while spawned < CHILDREN && !stop.load(Ordering::Relaxed) {
                    std::process::Command::new("true").status().unwrap();
                    spawned += 1;
                }
                spawned
            });
            let mut refused = Vec::new();
            while !spawner.is_finished() {
                match lock_data_dir(dir) {
                    Ok(lock) => drop(lock),
                    Err(error) => {
                        refused.push(error.to_string());
                        if refused.len() == 10 {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
            (spawner.join().unwrap(), refused)
        });
        assert!(refused.is_empty(), "{} refusals among {spawned} children: {:?}", refused.len(), refused);
    }
}
