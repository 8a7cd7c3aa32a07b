//! Where journal and snapshot bytes go: the [`Storage`] trait, the real directory
//! ([`FileStorage`]) and a simulated disk ([`SimStorage`]) that can crash.
//!
//! The journal and the snapshots see one flat directory of named files and a handful of
//! operations: list, read, create, append, sync a file (fdatasync), truncate, rename,
//! remove, and sync the directory. Those are exactly the operations whose ordering the
//! durability protocol depends on, so keeping them behind one trait lets the same writer,
//! snapshot and recovery code run on a real disk in the server and on a simulated one in
//! the crash tests.
//!
//! The simulated disk follows TigerBeetle's model: it keeps what was written apart from
//! what was synced, for file contents (`sync`) and for the directory itself (`sync_dir`:
//! creations, renames and removals). A power-loss crash keeps the synced state plus a
//! random prefix of what was written since, possibly torn or ending in garbage or zeros,
//! and either the synced or the current directory. A process crash keeps everything the
//! kernel was handed, because the page cache survives it. Synced data is never lost, so
//! a test that loses an acknowledged event has found a bug in the protocol, not in the
//! disk.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::rng::Rng;

/// Returns true if and only if `error` says there is no room for this process to write:
/// a full disk (`ENOSPC`), an exceeded disk quota (`EDQUOT`) or a file grown to the
/// process's file size limit (`EFBIG`, from `ulimit -f`; the binary handles SIGXFSZ so a
/// write past it fails rather than kills). All pass once space is freed or the limit
/// raised (`prlimit --pid` raises it for a running server), so the journal keeps its
/// records pending rather than stop.
pub fn is_out_of_space(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge)
}

/// A directory of named files with the operations the journal needs.
///
/// Every method may fail with an I/O error; `append` reports a full disk as
/// [`io::ErrorKind::StorageFull`] (or an exceeded quota as
/// [`io::ErrorKind::QuotaExceeded`]), possibly after writing part of the bytes.
pub trait Storage {
    /// Names of the files in the directory, in no particular order.
    fn list(&mut self) -> io::Result<Vec<String>>;
    /// A file's whole contents.
    fn read(&mut self, name: &str) -> io::Result<Vec<u8>>;
    /// A file's whole contents into `buffer` (cleared first), reusing its memory:
    /// recovery reads segment after segment into one buffer, so the kernel does not
    /// have to hand out and zero fresh pages for each.
    fn read_into(&mut self, name: &str, buffer: &mut Vec<u8>) -> io::Result<()> {
        *buffer = self.read(name)?;
        Ok(())
    }
    /// Creates an empty file, replacing any file of that name.
    fn create(&mut self, name: &str) -> io::Result<()>;
    /// Appends bytes at the end of a file.
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Makes a file's contents durable (fdatasync).
    fn sync(&mut self, name: &str) -> io::Result<()>;
    /// Cuts a file to `size` bytes.
    fn truncate(&mut self, name: &str, size: u64) -> io::Result<()>;
    /// Renames a file, replacing any file named `to`.
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file.
    fn remove(&mut self, name: &str) -> io::Result<()>;
    /// Makes the directory's entries durable (creations, renames, removals).
    fn sync_dir(&mut self) -> io::Result<()>;
    /// A name for messages: the directory's path, or what the simulation calls itself.
    fn describe(&self, name: &str) -> String;
}

// ---------------------------------------------------------------------------------------
// The real directory.

/// A real directory. Files being appended to stay open, so a commit costs one `write`
/// (and one `fdatasync`), not an `open` as well.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    open: HashMap<String, File>,
}

impl FileStorage {
    /// Opens (creating if needed) the directory `dir`.
    pub fn open(dir: &Path) -> io::Result<FileStorage> {
        fs::create_dir_all(dir)?;
        Ok(FileStorage { dir: dir.to_path_buf(), open: HashMap::new() })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A second handle to a file (a duplicated descriptor), which another thread may
    /// sync while this storage goes on appending through its own.
    pub fn clone_handle(&mut self, name: &str) -> io::Result<File> {
        self.handle(name)?.try_clone()
    }

    fn handle(&mut self, name: &str) -> io::Result<&mut File> {
        if !self.open.contains_key(name) {
            let file = OpenOptions::new().append(true).open(self.dir.join(name))?;
            self.open.insert(name.to_string(), file);
        }
        Ok(self.open.get_mut(name).expect("just inserted"))
    }
}

impl Storage for FileStorage {
    fn list(&mut self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let file_type = entry.file_type()?;
            // A symbolic link counts as the file it points to (an operator may have moved
            // journal files to another disk): skipping it would forget its records. One
            // whose target is gone is listed too, so that reading it fails naming it.
            let listed = file_type.is_file()
                || file_type.is_symlink() && fs::metadata(entry.path()).map_or(true, |target| target.is_file());
            if listed {
                // A name that is not UTF-8 is no file of ours.
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        Ok(names)
    }

    fn read(&mut self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.dir.join(name))
    }

    fn read_into(&mut self, name: &str, buffer: &mut Vec<u8>) -> io::Result<()> {
        use std::io::Read;
        buffer.clear();
        File::open(self.dir.join(name))?.read_to_end(buffer)?;
        Ok(())
    }

    fn create(&mut self, name: &str) -> io::Result<()> {
        self.open.remove(name);
        let file = OpenOptions::new().create(true).truncate(true).write(true).open(self.dir.join(name))?;
        drop(file);
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.handle(name)?.write_all(bytes)
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.handle(name)?.sync_data()
    }

    fn truncate(&mut self, name: &str, size: u64) -> io::Result<()> {
        self.handle(name)?.set_len(size)
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.open.remove(from);
        self.open.remove(to);
        fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.open.remove(name);
        fs::remove_file(self.dir.join(name))
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn describe(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

// ---------------------------------------------------------------------------------------
// The simulated disk.

/// One simulated file: its current contents and its contents at the last sync.
#[derive(Clone, Debug, Default)]
struct SimFile {
    data: Vec<u8>,
    synced: Vec<u8>,
}

/// What the simulated disk counts, so tests can check group commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// `append` calls.
    pub appends: u64,
    /// `sync` calls.
    pub syncs: u64,
    /// `sync_dir` calls.
    pub dir_syncs: u64,
}

#[derive(Debug, Default)]
struct SimDisk {
    /// Files by id; ids are never reused, so a directory may name a file the other
    /// directory no longer does.
    files: Vec<SimFile>,
    /// The directory as the running process sees it.
    live: BTreeMap<String, usize>,
    /// The directory as of the last `sync_dir`.
    durable: BTreeMap<String, usize>,
    /// Bytes all live files may hold together; an append past it fails as a full disk.
    capacity_bytes: Option<u64>,
    /// Set: the limit is the user's disk quota, and an append past it fails as the
    /// kernel reports that (`EDQUOT`), not as a full disk (`ENOSPC`).
    capacity_is_quota: bool,
    /// Every `sync` fails with an I/O error from now on.
    sync_fails: bool,
    counters: SimCounters,
}

/// How a simulated crash happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// The process dies; the kernel keeps everything it was handed.
    Process,
    /// The machine loses power: only synced data is certain to survive.
    PowerLoss,
}

/// A simulated directory. Clones share one disk, so a test can keep a handle to crash
/// the disk while the journal owns another.
#[derive(Clone, Debug, Default)]
pub struct SimStorage {
    disk: Rc<RefCell<SimDisk>>,
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("simulated file {name} not found"))
}

impl SimStorage {
    /// An empty simulated directory.
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    /// Limits the bytes all files may hold together (`None`: unlimited).
    pub fn set_capacity(&self, bytes: Option<u64>) {
        let mut disk = self.disk.borrow_mut();
        disk.capacity_bytes = bytes;
        disk.capacity_is_quota = false;
    }

    /// Limits the bytes all files may hold together as a disk quota would: an append past
    /// it fails with [`io::ErrorKind::QuotaExceeded`] (`None`: unlimited).
    pub fn set_quota(&self, bytes: Option<u64>) {
        let mut disk = self.disk.borrow_mut();
        disk.capacity_bytes = bytes;
        disk.capacity_is_quota = bytes.is_some();
    }

    /// Makes every later `sync` fail (or succeed again).
    pub fn set_sync_fails(&self, fails: bool) {
        self.disk.borrow_mut().sync_fails = fails;
    }

    /// What was called so far.
    pub fn counters(&self) -> SimCounters {
        self.disk.borrow().counters
    }

    /// A file's current contents, if it exists (for tests that damage files).
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        let disk = self.disk.borrow();
        disk.live.get(name).map(|&id| disk.files[id].data.clone())
    }

    /// Replaces a file's contents, as if they had always been there and were synced.
    pub fn replace(&self, name: &str, bytes: Vec<u8>) {
        let mut disk = self.disk.borrow_mut();
        let id = disk.files.len();
        disk.files.push(SimFile { data: bytes.clone(), synced: bytes });
        disk.live.insert(name.to_string(), id);
        disk.durable.insert(name.to_string(), id);
    }

    /// The disk as it would be found after a crash of kind `crash`; `seed` picks what
    /// of the unsynced state survives. The returned storage is a new, independent disk.
    pub fn crash(&self, crash: Crash, seed: u64) -> SimStorage {
        let disk = self.disk.borrow();
        if crash == Crash::Process {
            // The page cache survives: the disk is exactly as the process left it.
            let after = SimDisk {
                files: disk.files.clone(),
                live: disk.live.clone(),
                durable: disk.durable.clone(),
                ..SimDisk::default()
            };
            return SimStorage { disk: Rc::new(RefCell::new(after)) };
        }
        let mut rng = Rng::new(seed);
        let mut after = SimDisk::default();
        let directory = if rng.percent(50) { &disk.durable } else { &disk.live };
        for (name, &id) in directory {
            let data = surviving_contents(&disk.files[id], &mut rng);
            after.live.insert(name.clone(), after.files.len());
            after.files.push(SimFile { synced: data.clone(), data });
        }
        after.durable = after.live.clone();
        SimStorage { disk: Rc::new(RefCell::new(after)) }
    }
}

/// What survives of a file at a power loss: the synced contents plus a random prefix of
/// what was appended since, whose end may be torn into garbage or followed by zeros (the
/// size reached the disk, the data did not). A file cut shorter since its last sync comes
/// back either as synced or as cut.
fn surviving_contents(file: &SimFile, rng: &mut Rng) -> Vec<u8> {
    if !file.data.starts_with(&file.synced) {
        return if rng.percent(50) { file.synced.clone() } else { file.data.clone() };
    }
    let pending = file.data.len() - file.synced.len();
    if pending == 0 {
        return file.data.clone();
    }
    let kept = rng.below(pending as u64 + 1) as usize;
    let mut data = file.data[..file.synced.len() + kept].to_vec();
    match rng.below(3) {
        0 => {}
        1 => {
            // The last sectors written were torn: up to 64 bytes of garbage.
            let garbled = (rng.below(64) as usize + 1).min(kept);
            let end = data.len();
            for byte in &mut data[end - garbled..] {
                *byte = rng.next_u64() as u8;
            }
        }
        _ => {
            let zeros = rng.below(64) as usize + 1;
            data.resize(data.len() + zeros, 0);
        }
    }
    data
}

impl Storage for SimStorage {
    fn list(&mut self) -> io::Result<Vec<String>> {
        Ok(self.disk.borrow().live.keys().cloned().collect())
    }

    fn read(&mut self, name: &str) -> io::Result<Vec<u8>> {
        let disk = self.disk.borrow();
        let id = *disk.live.get(name).ok_or_else(|| not_found(name))?;
        Ok(disk.files[id].data.clone())
    }

    fn create(&mut self, name: &str) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        let id = disk.files.len();
        disk.files.push(SimFile::default());
        disk.live.insert(name.to_string(), id);
        Ok(())
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        disk.counters.appends += 1;
        let id = *disk.live.get(name).ok_or_else(|| not_found(name))?;
        let used: u64 = disk.live.values().map(|&id| disk.files[id].data.len() as u64).sum();
        let room = disk.capacity_bytes.map_or(u64::MAX, |capacity| capacity.saturating_sub(used));
        if (bytes.len() as u64) > room {
            // A full disk may take part of a write before it refuses the rest.
            disk.files[id].data.extend_from_slice(&bytes[..room as usize]);
            if disk.capacity_is_quota {
                return Err(io::Error::new(io::ErrorKind::QuotaExceeded, "simulated disk quota exceeded"));
            }
            return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated disk full"));
        }
        disk.files[id].data.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        disk.counters.syncs += 1;
        if disk.sync_fails {
            return Err(io::Error::other("simulated fdatasync failure"));
        }
        let id = *disk.live.get(name).ok_or_else(|| not_found(name))?;
        let file = &mut disk.files[id];
        file.synced = file.data.clone();
        Ok(())
    }

    fn truncate(&mut self, name: &str, size: u64) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        let id = *disk.live.get(name).ok_or_else(|| not_found(name))?;
        disk.files[id].data.truncate(size as usize);
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        let id = disk.live.remove(from).ok_or_else(|| not_found(from))?;
        disk.live.insert(to.to_string(), id);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        disk.live.remove(name).ok_or_else(|| not_found(name))?;
        Ok(())
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        let mut disk = self.disk.borrow_mut();
        disk.counters.dir_syncs += 1;
        disk.durable = disk.live.clone();
        Ok(())
    }

    fn describe(&self, name: &str) -> String {
        format!("sim:{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_data_survives_every_power_loss_and_unsynced_names_may_not() {
        let mut storage = SimStorage::new();
        storage.create("a").unwrap();
        storage.append("a", b"synced").unwrap();
        storage.sync("a").unwrap();
        storage.sync_dir().unwrap();
        storage.append("a", b" pending").unwrap();
        storage.create("b").unwrap();
        let mut saw_b = false;
        for seed in 0..200 {
            let mut after = storage.crash(Crash::PowerLoss, seed);
            assert!(after.read("a").unwrap().starts_with(b"synced"));
            saw_b |= after.read("b").is_ok();
        }
        assert!(saw_b);
        let mut after = storage.crash(Crash::Process, 0);
        assert_eq!(after.read("a").unwrap(), b"synced pending");
    }

    #[test]
    fn a_full_disk_takes_part_of_a_write_and_says_so() {
        let mut storage = SimStorage::new();
        storage.set_capacity(Some(4));
        storage.create("a").unwrap();
        let error = storage.append("a", b"123456").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        assert_eq!(storage.read("a").unwrap(), b"1234");
    }

    #[test]
    fn the_real_directory_does_what_the_simulation_does() {
        let temporary = crate::testing::TemporaryDir::new("storage");
        let mut storage = FileStorage::open(temporary.path()).unwrap();
        storage.create("x.tmp").unwrap();
        storage.append("x.tmp", b"hello world").unwrap();
        storage.sync("x.tmp").unwrap();
        storage.truncate("x.tmp", 5).unwrap();
        storage.rename("x.tmp", "x").unwrap();
        storage.sync_dir().unwrap();
        storage.append("x", b"!").unwrap();
        assert_eq!(storage.read("x").unwrap(), b"hello!");
        assert_eq!(storage.list().unwrap(), vec!["x".to_string()]);
        storage.remove("x").unwrap();
        assert!(storage.list().unwrap().is_empty());
    }
}
