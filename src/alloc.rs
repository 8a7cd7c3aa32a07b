//! The process's global allocator: mimalloc, wrapped so that every allocation is counted
//! per thread, which is how the zero-allocations-per-event tests prove what they claim.
//!
//! This module owns the `#[global_allocator]` static, so every binary and test that links
//! `cairn` allocates through it; the rest of the crate meets it only through the read side:
//! [`thread`], [`process`], [`Scope`] and [`installed`]. Shard tests wrap an event in a
//! [`Scope`] and assert that [`Scope::allocations`] is zero; [`installed`] guards such
//! tests against passing vacuously under some other allocator: a binary that names
//! nothing from `cairn` does not link it, and then keeps Rust's default allocator.
//!
//! **Layout.** Each thread claims one slot of a static registry ([`THREAD_SLOTS_MAX`]
//! slots of 128 bytes, so no two threads' counters share a cache line or the adjacent
//! line that x86 prefetches in pairs) on its first allocation, through a compare-and-swap
//! on that slot's `owned` flag. From then on only that thread writes the slot, with a
//! relaxed load followed by a relaxed store, which compiles to plain moves: the hot path
//! takes no lock and issues no locked instruction. An allocation touches three fields
//! (count, bytes, and the peak when it rises), a free two: live bytes are derived as
//! allocated minus freed rather than stored. Any thread may read any slot with relaxed
//! loads; that is all [`process`] does.
//!
//! **Thread exit.** A thread-local destructor folds the thread's peak into a retired peak
//! and releases the slot; the slot keeps its totals. The next thread to claim it records
//! the totals it found as its baseline, and [`thread`] reports the slot minus that
//! baseline. Because nothing is ever moved or reset, a slot's totals only grow, so the
//! number of threads over a run is unbounded while the registry stays fixed, and an exit
//! can never make [`process`] count a thread twice or lose it.
//!
//! **Fallbacks.** A thread that finds every slot owned counts into a block inside its own
//! thread-local (which keeps [`thread`] exact) and also into the shared overflow block with
//! `fetch_add`, which [`process`] sums like a slot. An allocation made during thread
//! teardown, after this module's thread-local has been destroyed, counts into the overflow
//! block only. Both paths trade speed for correctness and are off the steady-state path.
//!
//! **Accounting rules.** Only requests that succeed are counted; a failed request changes
//! nothing, as it changes no memory.
//! - `alloc` and `alloc_zeroed`: one allocation, and the layout's size in bytes allocated.
//! - `dealloc`: one deallocation, and the layout's size in bytes freed.
//! - `realloc` from `old` to `new` bytes: one reallocation and neither an allocation nor a
//!   deallocation; `new - old` bytes allocated if it grew, `old - new` bytes freed if it
//!   shrank, nothing if the size stayed.
//! - Sizes are the sizes asked for, not what mimalloc rounds them up to, so tests can
//!   assert exact numbers.
//! - `bytes_live` is bytes allocated minus bytes freed, by this thread. Memory freed on
//!   another thread than the one that allocated it lowers the freeing thread's figure,
//!   which may therefore go negative; the sum over all threads is the true live total.
//! - `bytes_peak` is the highest `bytes_live` the thread has reached since it started
//!   (never below zero, the level it starts at).
//!
//! The allocator never allocates and never panics: the hot path touches only atomics, a
//! `Cell` and a thread-local whose destructor list std keeps in the system allocator.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use mimalloc::MiMalloc;

pub use crate::constants::THREAD_SLOTS_MAX;

/// Bytes one slot occupies: two 64-byte cache lines, matching `#[repr(align(128))]` on
/// [`Slot`], because x86 prefetches lines in adjacent pairs.
const SLOT_SIZE_BYTES: usize = 128;

const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_SIZE_BYTES);
const _: () = assert!(std::mem::align_of::<Slot>() == SLOT_SIZE_BYTES);

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The per-thread blocks every thread's counts are reachable through.
static SLOTS: [Slot; THREAD_SLOTS_MAX] = [const { Slot::new() }; THREAD_SLOTS_MAX];

/// Counts of threads that found no free slot and of allocations made during thread
/// teardown. Shared by many threads, so it is only ever updated with `fetch_add`.
static OVERFLOW: Slot = Slot::new();

/// The highest peak of any thread that has exited, folded in by its destructor.
static RETIRED_PEAK_BYTES: AtomicI64 = AtomicI64::new(0);

/// The highest process peak [`process`] has reported, so that it never reports a lower one.
static PROCESS_PEAK_BYTES: AtomicI64 = AtomicI64::new(0);

thread_local! {
    static LOCAL: Local = const { Local::new() };
}

/// Allocation counters of one thread, of the whole process, or the difference of two
/// snapshots ([`Counters::since`]). The module doc gives the accounting rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Successful `alloc` and `alloc_zeroed` calls.
    pub allocations: u64,
    /// `dealloc` calls.
    pub deallocations: u64,
    /// Successful `realloc` calls, whichever way they resized.
    pub reallocations: u64,
    /// Bytes requested by allocations plus the growth of reallocations.
    pub bytes_allocated: u64,
    /// Bytes released by deallocations plus the shrinkage of reallocations.
    pub bytes_freed: u64,
    /// `bytes_allocated - bytes_freed`; negative for a thread that freed more than it
    /// allocated, which happens when it frees what other threads allocated.
    pub bytes_live: i64,
    /// The highest `bytes_live` reached; see [`process`] and [`Counters::since`] for what
    /// it means there.
    pub bytes_peak: i64,
}

impl Counters {
    /// `Default::default` for a `const` context: a thread-local's initialiser.
    const ZERO: Counters = Counters {
        allocations: 0,
        deallocations: 0,
        reallocations: 0,
        bytes_allocated: 0,
        bytes_freed: 0,
        bytes_live: 0,
        bytes_peak: 0,
    };

    /// What happened between `earlier` and `self`, two snapshots of the same source
    /// (one thread, or the process).
    ///
    /// Counts and byte totals are plain differences, and `bytes_live` is the change in
    /// live bytes. `bytes_peak` is how far above its level at `earlier` the live figure
    /// rose at its highest, measured as `self.bytes_peak - earlier.bytes_live` (at least
    /// zero). That is exact when the source reached a new high inside the interval, and
    /// otherwise an upper bound, because two snapshots cannot tell a lower high inside
    /// the interval from the old one: a test bounding memory use is never fooled into
    /// passing.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut difference = self.minus_totals(earlier);
        difference.bytes_peak = self.bytes_peak.wrapping_sub(earlier.bytes_live).max(0);
        difference
    }

    /// Subtracts every cumulative field of `base` and keeps `self.bytes_peak` as it is.
    fn minus_totals(&self, base: &Counters) -> Counters {
        Counters {
            allocations: self.allocations.wrapping_sub(base.allocations),
            deallocations: self.deallocations.wrapping_sub(base.deallocations),
            reallocations: self.reallocations.wrapping_sub(base.reallocations),
            bytes_allocated: self.bytes_allocated.wrapping_sub(base.bytes_allocated),
            bytes_freed: self.bytes_freed.wrapping_sub(base.bytes_freed),
            bytes_live: self.bytes_live.wrapping_sub(base.bytes_live),
            bytes_peak: self.bytes_peak,
        }
    }

    /// Adds every cumulative field of `other`; peaks do not add, so the caller sets them.
    fn add_totals(&mut self, other: &Counters) {
        self.allocations = self.allocations.wrapping_add(other.allocations);
        self.deallocations = self.deallocations.wrapping_add(other.deallocations);
        self.reallocations = self.reallocations.wrapping_add(other.reallocations);
        self.bytes_allocated = self.bytes_allocated.wrapping_add(other.bytes_allocated);
        self.bytes_freed = self.bytes_freed.wrapping_add(other.bytes_freed);
        self.bytes_live = self.bytes_live.wrapping_add(other.bytes_live);
    }
}

/// The calling thread's counters since it started.
///
/// They start at zero even when the thread reuses a slot an exited thread left totals in.
/// Called from a thread-local destructor after this module's thread-local is gone, when
/// nothing more can be attributed to the thread, it returns all zeros.
pub fn thread() -> Counters {
    LOCAL.try_with(Local::counters).unwrap_or_default()
}

/// The sum over every thread the process has run, alive or exited, plus the overflow
/// block.
///
/// It is a racy snapshot: slots are read one after another while their threads keep
/// allocating, so it matches no single instant. It is monotone: of two calls ordered one
/// after the other (say, on one thread), the later never reports a smaller count or byte
/// total, because every slot's totals only grow and exits move nothing.
///
/// `bytes_live` is the summed live bytes. `bytes_peak` is the largest of: each running
/// thread's own peak, each exited thread's own peak, the overflow block's peak, and the
/// summed `bytes_live` seen by this or any earlier call to `process`. It is therefore a
/// lower bound on the true process peak, which no per-thread counting can observe, and it
/// never decreases from one call to the next.
pub fn process() -> Counters {
    let mut total = OVERFLOW.read();
    let mut peak_bytes = total.bytes_peak.max(RETIRED_PEAK_BYTES.load(Ordering::Relaxed));
    for slot in SLOTS.iter() {
        let counters = slot.read();
        total.add_totals(&counters);
        peak_bytes = peak_bytes.max(counters.bytes_peak);
    }
    peak_bytes = peak_bytes.max(total.bytes_live);
    let reported_bytes = PROCESS_PEAK_BYTES.fetch_max(peak_bytes, Ordering::Relaxed);
    total.bytes_peak = reported_bytes.max(peak_bytes);
    total
}

/// Returns true if and only if the counting allocator is the process's global allocator,
/// found by allocating one `Box` and seeing it counted.
///
/// It reads [`thread`] normally and [`process`] during thread teardown, when [`thread`]
/// can no longer see this thread's allocations.
pub fn installed() -> bool {
    let read: fn() -> Counters = if LOCAL.try_with(|_| ()).is_ok() { thread } else { process };
    let before = read().allocations;
    // `black_box` makes the pointer escape, so the compiler cannot elide the allocation.
    let probe = std::hint::black_box(Box::new(0_u64));
    let after = read().allocations;
    drop(probe);
    after != before
}

/// A window on the calling thread's counters, opened by [`Scope::start`].
///
/// It is neither `Send` nor `Sync`, because its counts belong to the thread that opened it.
#[derive(Debug)]
pub struct Scope {
    start: Counters,
    thread_bound: PhantomData<*const ()>,
}

impl Scope {
    /// Opens a window on the calling thread's counters, starting now.
    pub fn start() -> Scope {
        Scope { start: thread(), thread_bound: PhantomData }
    }

    /// Allocations plus reallocations on this thread since [`Scope::start`]: every call
    /// that asked the allocator for memory, so zero means the code under test neither
    /// allocated nor grew anything. Deallocations are not included, since freeing what
    /// was allocated before the scope is no cost the hot path pays per event.
    pub fn allocations(&self) -> u64 {
        let counters = self.counters();
        counters.allocations.wrapping_add(counters.reallocations)
    }

    /// This thread's counters since [`Scope::start`], under [`Counters::since`]'s rules.
    pub fn counters(&self) -> Counters {
        thread().since(&self.start)
    }
}

/// What one allocator call changes, before it is applied to a block.
#[derive(Clone, Copy)]
struct Change {
    allocations: u64,
    deallocations: u64,
    reallocations: u64,
    bytes_allocated: u64,
    bytes_freed: u64,
}

impl Change {
    const NONE: Change =
        Change { allocations: 0, deallocations: 0, reallocations: 0, bytes_allocated: 0, bytes_freed: 0 };

    fn allocation(size_bytes: usize) -> Change {
        Change { allocations: 1, bytes_allocated: size_bytes as u64, ..Change::NONE }
    }

    fn deallocation(size_bytes: usize) -> Change {
        Change { deallocations: 1, bytes_freed: size_bytes as u64, ..Change::NONE }
    }

    fn reallocation(old_size_bytes: usize, new_size_bytes: usize) -> Change {
        let change = Change { reallocations: 1, ..Change::NONE };
        if new_size_bytes >= old_size_bytes {
            Change { bytes_allocated: (new_size_bytes - old_size_bytes) as u64, ..change }
        } else {
            Change { bytes_freed: (old_size_bytes - new_size_bytes) as u64, ..change }
        }
    }
}

/// One block of counters: a registry slot, the overflow block, or a thread's private
/// block. Its totals are cumulative over every thread that has owned it.
#[repr(align(128))]
struct Slot {
    /// True while a thread owns this slot; written only by [`Local::claim`] and
    /// [`Local`]'s destructor.
    owned: AtomicBool,
    allocations: AtomicU64,
    deallocations: AtomicU64,
    reallocations: AtomicU64,
    bytes_allocated: AtomicU64,
    bytes_freed: AtomicU64,
    /// The current owner's peak, relative to the live level it found on claiming.
    bytes_peak: AtomicI64,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            owned: AtomicBool::new(false),
            allocations: AtomicU64::new(0),
            deallocations: AtomicU64::new(0),
            reallocations: AtomicU64::new(0),
            bytes_allocated: AtomicU64::new(0),
            bytes_freed: AtomicU64::new(0),
            bytes_peak: AtomicI64::new(0),
        }
    }

    /// Applies `change` from the block's only writer. `bytes_live_base` is the live level
    /// the owner found when it claimed the block, so its peak starts from zero.
    #[inline(always)]
    fn apply_owned(&self, change: Change, bytes_live_base: i64) {
        // The branches fold away wherever the change is a constant, which is every field
        // but the byte counts.
        if change.allocations != 0 {
            bump(&self.allocations, change.allocations);
        }
        if change.deallocations != 0 {
            bump(&self.deallocations, change.deallocations);
        }
        if change.reallocations != 0 {
            bump(&self.reallocations, change.reallocations);
        }
        if change.bytes_freed != 0 {
            bump(&self.bytes_freed, change.bytes_freed);
        }
        // Live bytes are derived, not stored, so a free costs two counters; and only growth
        // can set a new peak, so a free never looks at the peak.
        if change.bytes_allocated != 0 {
            let allocated_bytes = bump(&self.bytes_allocated, change.bytes_allocated);
            let live_bytes = live_bytes(allocated_bytes, self.bytes_freed.load(Ordering::Relaxed));
            let level_bytes = live_bytes.wrapping_sub(bytes_live_base);
            if level_bytes > self.bytes_peak.load(Ordering::Relaxed) {
                self.bytes_peak.store(level_bytes, Ordering::Relaxed);
            }
        }
    }

    /// Applies `change` to a block many threads write at once, with read-modify-write
    /// instructions so that no update is lost. Its peak is the highest live level of
    /// everything counted here, as seen right after each growth; frees that other threads
    /// make meanwhile can only lower what is seen, so it never overstates the peak.
    #[cold]
    fn apply_shared(&self, change: Change) {
        self.allocations.fetch_add(change.allocations, Ordering::Relaxed);
        self.deallocations.fetch_add(change.deallocations, Ordering::Relaxed);
        self.reallocations.fetch_add(change.reallocations, Ordering::Relaxed);
        self.bytes_freed.fetch_add(change.bytes_freed, Ordering::Relaxed);
        let allocated_bytes = self
            .bytes_allocated
            .fetch_add(change.bytes_allocated, Ordering::Relaxed)
            .wrapping_add(change.bytes_allocated);
        if change.bytes_allocated != 0 {
            let live_bytes = live_bytes(allocated_bytes, self.bytes_freed.load(Ordering::Relaxed));
            self.bytes_peak.fetch_max(live_bytes, Ordering::Relaxed);
        }
    }

    /// The block's cumulative totals and its current owner's peak.
    fn read(&self) -> Counters {
        let bytes_allocated = self.bytes_allocated.load(Ordering::Relaxed);
        let bytes_freed = self.bytes_freed.load(Ordering::Relaxed);
        Counters {
            allocations: self.allocations.load(Ordering::Relaxed),
            deallocations: self.deallocations.load(Ordering::Relaxed),
            reallocations: self.reallocations.load(Ordering::Relaxed),
            bytes_allocated,
            bytes_freed,
            bytes_live: live_bytes(bytes_allocated, bytes_freed),
            bytes_peak: self.bytes_peak.load(Ordering::Relaxed),
        }
    }
}

/// Adds `amount` to a counter that only the calling thread writes. A separate load and
/// store cannot lose an update when there is one writer, and unlike `fetch_add` they are
/// plain moves on x86-64 and AArch64; readers on other threads see either value, never a
/// torn one. Returns the new value.
#[inline(always)]
fn bump(counter: &AtomicU64, amount: u64) -> u64 {
    let value = counter.load(Ordering::Relaxed).wrapping_add(amount);
    counter.store(value, Ordering::Relaxed);
    value
}

/// Bytes allocated minus bytes freed, as a signed figure: the two's-complement difference
/// is exact while the true difference fits in an `i64`, which any real process does.
#[inline(always)]
fn live_bytes(allocated_bytes: u64, freed_bytes: u64) -> i64 {
    allocated_bytes.wrapping_sub(freed_bytes) as i64
}

/// Where a thread's counts go once it has looked for a slot.
#[derive(Clone, Copy)]
enum Claim {
    /// A registry slot, owned by this thread until it exits.
    Registry(&'static Slot),
    /// Every slot was owned: the thread's private block, mirrored into the overflow block.
    Private,
}

/// The calling thread's view of the registry; lives in [`LOCAL`].
struct Local {
    /// `None` until the thread's first allocation looks for a slot.
    claim: Cell<Option<Claim>>,
    /// The registry slot's totals when this thread claimed it, subtracted by [`thread`].
    base: Cell<Counters>,
    /// Counts for a thread that found no free slot, so [`thread`] stays exact for it.
    private: Slot,
}

impl Local {
    const fn new() -> Local {
        Local { claim: Cell::new(None), base: Cell::new(Counters::ZERO), private: Slot::new() }
    }

    #[inline(always)]
    fn apply(&self, change: Change) {
        let claim = match self.claim.get() {
            Some(claim) => claim,
            None => self.claim(),
        };
        match claim {
            Claim::Registry(slot) => slot.apply_owned(change, self.base.get().bytes_live),
            Claim::Private => {
                self.private.apply_owned(change, 0);
                OVERFLOW.apply_shared(change);
            }
        }
    }

    /// Takes the first free registry slot, once per thread, or settles for the private
    /// block when there is none. A free slot is found by its flag alone, so a thread that
    /// finds every slot owned stays on the private block for life rather than rescanning.
    #[cold]
    #[inline(never)]
    fn claim(&self) -> Claim {
        let mut claim = Claim::Private;
        for slot in SLOTS.iter() {
            // Reading before the compare-and-swap keeps the scan from taking owned slots'
            // cache lines away from their threads.
            if slot.owned.load(Ordering::Relaxed) {
                continue;
            }
            // Acquire pairs with the Release in `Drop`, so the totals read below are the
            // previous owner's final ones.
            if slot.owned.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                self.base.set(slot.read());
                slot.bytes_peak.store(0, Ordering::Relaxed);
                claim = Claim::Registry(slot);
                break;
            }
        }
        self.claim.set(Some(claim));
        claim
    }

    fn counters(&self) -> Counters {
        match self.claim.get() {
            None => Counters::default(),
            Some(Claim::Registry(slot)) => slot.read().minus_totals(&self.base.get()),
            Some(Claim::Private) => self.private.read(),
        }
    }
}

impl Drop for Local {
    /// Runs at thread exit: keeps the thread's peak for [`process`] and frees its slot for
    /// the next thread. The totals stay in the slot, where [`process`] still sums them.
    fn drop(&mut self) {
        match self.claim.get() {
            None => {}
            Some(Claim::Registry(slot)) => {
                RETIRED_PEAK_BYTES.fetch_max(slot.bytes_peak.load(Ordering::Relaxed), Ordering::Relaxed);
                slot.owned.store(false, Ordering::Release);
            }
            Some(Claim::Private) => {
                RETIRED_PEAK_BYTES.fetch_max(self.private.bytes_peak.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }
}

/// Counts one successful request on the calling thread's block.
///
/// It takes the change as a closure rather than a value so that each allocator method
/// gets its own copy of the thread-local access, in which the constant fields of its
/// `Change` fold away; passed as a value, the change went through memory into one shared
/// copy and cost several nanoseconds more per call.
#[inline(always)]
fn record(change: impl Fn() -> Change) {
    if LOCAL.try_with(|local| local.apply(change())).is_err() {
        // The thread-local has been destroyed: this thread is exiting and its slot may
        // already be someone else's, so only the shared block is safe to write.
        OVERFLOW.apply_shared(change());
    }
}

/// mimalloc with every call counted; see the module doc for the rules.
struct Counting;

// SAFETY: every method forwards to `MiMalloc` with the arguments it was given and returns
// its result unchanged, so `Counting` upholds `GlobalAlloc`'s contract exactly as
// `MiMalloc` does. Counting touches only atomics and thread-local cells: it neither
// allocates nor panics, so it cannot re-enter the allocator or unwind out of it.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: our caller upholds `GlobalAlloc::alloc`'s contract, which is `MiMalloc`'s.
        let block = unsafe { MiMalloc.alloc(layout) };
        if !block.is_null() {
            record(|| Change::allocation(layout.size()));
        }
        block
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: our caller upholds `GlobalAlloc::alloc_zeroed`'s contract, which is
        // `MiMalloc`'s.
        let block = unsafe { MiMalloc.alloc_zeroed(layout) };
        if !block.is_null() {
            record(|| Change::allocation(layout.size()));
        }
        block
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: our caller guarantees `ptr` came from this allocator, which is to say
        // from `MiMalloc`, with this `layout`.
        unsafe { MiMalloc.dealloc(ptr, layout) };
        record(|| Change::deallocation(layout.size()));
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: our caller guarantees `ptr` came from this allocator (so from `MiMalloc`)
        // with `layout`, and that `new_size` is valid for `layout.align()`.
        let block = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        // A null result leaves the old block in place, so nothing changed to count.
        if !block.is_null() {
            record(|| Change::reallocation(layout.size(), new_size));
        }
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;
    use std::sync::{Arc, Barrier};

    #[test]
    fn installed_and_counting_a_known_vec() {
        assert!(installed());
        let before = thread();
        let buffer: Vec<u8> = black_box(Vec::with_capacity(1000));
        let allocated = thread().since(&before);
        assert_eq!(allocated.allocations, 1);
        assert_eq!(allocated.bytes_allocated, 1000);
        assert_eq!(allocated.bytes_live, 1000);
        assert!(allocated.bytes_peak >= 1000);
        drop(buffer);
        let freed = thread().since(&before);
        assert_eq!(freed.deallocations, 1);
        assert_eq!(freed.bytes_freed, 1000);
        assert_eq!(freed.bytes_live, 0);
    }

    #[test]
    fn realloc_counts_growth_and_shrinkage() {
        let scope = Scope::start();
        let mut buffer: Vec<u8> = black_box(Vec::with_capacity(16));
        buffer.reserve_exact(4096);
        let buffer = black_box(buffer);
        let grown = scope.counters();
        assert_eq!(grown.allocations, 1);
        assert_eq!(grown.reallocations, 1);
        assert_eq!(grown.bytes_allocated, 4096);
        assert_eq!(grown.bytes_live, 4096);
        assert_eq!(scope.allocations(), 2);

        let mut buffer = buffer;
        buffer.shrink_to(100);
        let buffer = black_box(buffer);
        let shrunk = scope.counters();
        assert_eq!(shrunk.reallocations, 2);
        assert_eq!(shrunk.bytes_allocated, 4096);
        assert_eq!(shrunk.bytes_freed, 4096 - 100);
        assert_eq!(shrunk.bytes_live, 100);
        drop(buffer);
        let done = scope.counters();
        assert_eq!(done.deallocations, 1);
        assert_eq!(done.bytes_freed, 4096);
        assert_eq!(done.bytes_live, 0);
        assert_eq!(done.bytes_allocated, done.bytes_freed);
    }

    #[test]
    fn scope_around_code_that_does_not_allocate_reads_zero() {
        let mut buffer: Vec<u64> = Vec::with_capacity(64);
        let scope = Scope::start();
        for value in 0..64_u64 {
            buffer.push(black_box(value));
        }
        let sum: u64 = black_box(&buffer).iter().sum();
        let counters = scope.counters();
        assert_eq!(scope.allocations(), 0);
        assert_eq!(counters, Counters::default());
        assert_eq!(sum, 63 * 64 / 2);
    }

    #[test]
    fn another_thread_allocating_leaves_this_thread_alone() {
        const CHILD_BYTES: usize = 1 << 20; // 1 MiB
        let barrier = Arc::new(Barrier::new(2));
        let child_barrier = Arc::clone(&barrier);
        let child = std::thread::spawn(move || {
            child_barrier.wait();
            let buffer: Vec<u8> = black_box(Vec::with_capacity(CHILD_BYTES));
            let counted = thread().bytes_allocated >= CHILD_BYTES as u64;
            child_barrier.wait();
            drop(buffer);
            counted
        });
        // Spawning allocated on this thread; the window opens after it.
        let before = thread();
        let process_before = process();
        barrier.wait();
        barrier.wait();
        let after = thread();
        let process_after = process();
        assert!(child.join().unwrap());
        assert_eq!(after.allocations, before.allocations);
        assert_eq!(after.bytes_allocated, before.bytes_allocated);
        assert_eq!(after.bytes_live, before.bytes_live);
        assert!(process_after.since(&process_before).bytes_allocated >= CHILD_BYTES as u64);
    }

    /// What one child thread saw: whether [`thread`] showed exactly its own allocation,
    /// and whether it counted into a registry slot rather than its private block.
    #[derive(Clone, Copy)]
    struct ChildReport {
        exact: bool,
        registry: bool,
    }

    fn child(bytes: usize, barrier: &Barrier) -> ChildReport {
        let start = thread();
        let buffer: Vec<u8> = black_box(Vec::with_capacity(bytes));
        let own = thread().since(&start);
        barrier.wait();
        drop(buffer);
        let registry = LOCAL.with(|local| matches!(local.claim.get(), Some(Claim::Registry(_))));
        // A thread may allocate before its closure runs (std registers every thread in a
        // map for its stack-overflow handler), but far less than `bytes`; a reused slot
        // that showed its previous owners' totals would start at `bytes` or more.
        let exact = own.allocations == 1 && own.bytes_allocated == bytes as u64 && start.bytes_allocated < bytes as u64;
        ChildReport { exact, registry }
    }

    /// Runs `thread_count` threads that all hold an allocation at once, then exit.
    fn run_together(thread_count: usize, bytes: usize) -> Vec<ChildReport> {
        let barrier = Arc::new(Barrier::new(thread_count));
        let threads: Vec<_> = (0..thread_count)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || child(bytes, &barrier))
            })
            .collect();
        threads.into_iter().map(|handle| handle.join().unwrap()).collect()
    }

    /// Runs `thread_count` threads one after another, each joined before the next starts.
    fn run_one_by_one(thread_count: usize, bytes: usize) -> Vec<ChildReport> {
        let barrier = Barrier::new(1);
        (0..thread_count)
            .map(|_| std::thread::scope(|scope| scope.spawn(|| child(bytes, &barrier)).join().unwrap()))
            .collect()
    }

    #[test]
    fn process_includes_exited_threads_beyond_the_slot_count() {
        const THREADS: usize = 500;
        const BYTES_PER_THREAD: usize = 64 << 10; // 64 KiB
        const _: () = assert!(THREADS > THREAD_SLOTS_MAX);
        let before = process();

        // All of them hold their allocation at once, so at least 500 - 256 find no slot
        // and count through the overflow block, and every one still sees its own counts.
        let together = run_together(THREADS, BYTES_PER_THREAD);
        assert!(together.iter().all(|report| report.exact));
        let private_count = together.iter().filter(|report| !report.registry).count();
        assert!(private_count >= THREADS - THREAD_SLOTS_MAX);

        // More threads than slots, one at a time: each finds a slot only because the ones
        // before it gave theirs back on exit.
        let one_by_one = run_one_by_one(THREADS, BYTES_PER_THREAD);
        assert!(one_by_one.iter().all(|report| report.exact));
        assert!(one_by_one.iter().all(|report| report.registry));

        let grown = process().since(&before);
        assert!(grown.allocations >= 2 * THREADS as u64);
        assert!(grown.deallocations >= 2 * THREADS as u64);
        assert!(grown.bytes_allocated >= (2 * THREADS * BYTES_PER_THREAD) as u64);
        assert!(grown.bytes_freed >= (2 * THREADS * BYTES_PER_THREAD) as u64);
        assert!(process().bytes_peak >= BYTES_PER_THREAD as i64);
    }

    #[test]
    fn since_takes_differences_and_bounds_the_peak() {
        fn check(earlier: Counters, later: Counters, expected: Counters) {
            assert_eq!(later.since(&earlier), expected);
        }
        let zero = Counters::default();
        let start = Counters { allocations: 5, bytes_allocated: 500, bytes_live: 300, bytes_peak: 400, ..zero };
        // A new high inside the interval: exact rise above the starting level.
        check(
            start,
            Counters { allocations: 7, bytes_allocated: 1500, bytes_live: 300, bytes_peak: 1300, ..zero },
            Counters { allocations: 2, bytes_allocated: 1000, bytes_live: 0, bytes_peak: 1000, ..zero },
        );
        // No new high: the old high's distance from the start, an upper bound.
        check(
            start,
            Counters {
                allocations: 6,
                bytes_allocated: 550,
                bytes_freed: 100,
                bytes_live: 250,
                bytes_peak: 400,
                ..zero
            },
            Counters {
                allocations: 1,
                bytes_allocated: 50,
                bytes_freed: 100,
                bytes_live: -50,
                bytes_peak: 100,
                ..zero
            },
        );
        check(start, start, Counters { bytes_peak: 100, ..zero });
    }

    #[test]
    fn peak_in_a_scope_covers_a_freed_allocation() {
        const BYTES: usize = 1 << 20; // 1 MiB
        let scope = Scope::start();
        drop(black_box(Vec::<u8>::with_capacity(BYTES)));
        let counters = scope.counters();
        assert_eq!(counters.bytes_live, 0);
        assert!(counters.bytes_peak >= BYTES as i64);
    }

    /// Nanoseconds per `Box<u64>` allocation and free through the global allocator.
    fn counted_box_ns(iterations: u32) -> f64 {
        let scope = Scope::start();
        let start = std::time::Instant::now();
        for index in 0..iterations {
            drop(black_box(Box::new(black_box(u64::from(index)))));
        }
        let elapsed_ns = start.elapsed().as_nanos() as f64;
        // The loop really allocated: the compiler removed nothing.
        assert_eq!(scope.allocations(), u64::from(iterations));
        elapsed_ns / f64::from(iterations)
    }

    /// Nanoseconds per allocation and free of the same layout straight through mimalloc.
    fn direct_box_ns(iterations: u32) -> f64 {
        let layout = Layout::new::<u64>();
        let start = std::time::Instant::now();
        for _ in 0..iterations {
            // SAFETY: `layout` has a non-zero size, and the block is freed by the allocator
            // that allocated it, with the same layout.
            unsafe {
                let block = black_box(MiMalloc.alloc(layout));
                assert!(!block.is_null());
                MiMalloc.dealloc(block, layout);
            }
        }
        start.elapsed().as_nanos() as f64 / f64::from(iterations)
    }

    /// Prints nanoseconds per `Box` allocation and free, counted and straight through
    /// mimalloc, so the counting overhead can be read off. Rounds alternate and the fastest
    /// of each kind is kept, which filters out the noise of a shared machine. It asserts
    /// no time, since timings depend on the machine.
    #[test]
    fn measure_box_alloc_free_ns() {
        const ROUNDS: u32 = 7;
        let iterations: u32 = if cfg!(debug_assertions) { 20_000 } else { 2_000_000 };
        let mut counted_ns = f64::MAX;
        let mut direct_ns = f64::MAX;
        for _ in 0..ROUNDS {
            counted_ns = counted_ns.min(counted_box_ns(iterations));
            direct_ns = direct_ns.min(direct_box_ns(iterations));
        }
        println!(
            "Box<u64> alloc+free, fastest of {ROUNDS} rounds of {iterations}: {counted_ns:.2} ns counted, \
             {direct_ns:.2} ns mimalloc alone, {:.2} ns counting overhead",
            counted_ns - direct_ns
        );
    }
}
