//! The atomics and shared cells the inter-shard rings are built from: `std`'s normally,
//! `loom`'s when the crate is compiled with `--cfg loom`, so the loom tests in
//! `server/ring.rs` explore every interleaving of the very code the server runs.
//!
//! Only what the rings need is here: `AtomicUsize`, `Ordering`, `Arc`, and [`Bytes`], a
//! fixed array of bytes that two threads share, each touching only a range the ring's
//! protocol gives it. Under loom every byte is a tracked cell, so a read that is not
//! ordered after the write it depends on is reported as a data race.

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(loom)]
pub use loom::sync::Arc;
#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
pub use std::sync::Arc;

#[cfg(loom)]
use loom::cell::UnsafeCell;
#[cfg(not(loom))]
use std::cell::UnsafeCell;

/// A fixed array of bytes shared between a producer and a consumer thread.
pub struct Bytes {
    cells: Box<[UnsafeCell<u8>]>,
}

// SAFETY: the bytes are plain data; which thread may touch which range at a time is the
// ring protocol's job, and both `copy_in` and `copy_out` are `unsafe` to say so.
unsafe impl Sync for Bytes {}
// SAFETY: as above; the array owns its bytes.
unsafe impl Send for Bytes {}

impl Bytes {
    /// `size_bytes` zero bytes.
    pub fn new(size_bytes: usize) -> Bytes {
        Bytes { cells: (0..size_bytes).map(|_| UnsafeCell::new(0)).collect() }
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Returns true if and only if there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Copies `source` to the bytes from `at`.
    ///
    /// # Safety
    /// No other thread reads or writes `at..at + source.len()` during the call.
    pub unsafe fn copy_in(&self, at: usize, source: &[u8]) {
        let cells = &self.cells[at..at + source.len()];
        #[cfg(not(loom))]
        // SAFETY: `UnsafeCell<u8>` has the layout of `u8`, the range is in bounds (the
        // slice above was checked), and the caller promises no one else touches it.
        unsafe {
            std::ptr::copy_nonoverlapping(source.as_ptr(), UnsafeCell::raw_get(cells.as_ptr()), source.len());
        }
        #[cfg(loom)]
        for (cell, &byte) in cells.iter().zip(source) {
            // SAFETY: the caller promises no one else touches this byte now; loom checks it.
            cell.with_mut(|pointer| unsafe { *pointer = byte });
        }
    }

    /// Copies the bytes from `at` into `target`.
    ///
    /// # Safety
    /// No other thread writes `at..at + target.len()` during the call.
    pub unsafe fn copy_out(&self, at: usize, target: &mut [u8]) {
        let cells = &self.cells[at..at + target.len()];
        #[cfg(not(loom))]
        // SAFETY: as in `copy_in`, with only reads racing nothing.
        unsafe {
            std::ptr::copy_nonoverlapping(UnsafeCell::raw_get(cells.as_ptr()), target.as_mut_ptr(), target.len());
        }
        #[cfg(loom)]
        for (cell, byte) in cells.iter().zip(target) {
            // SAFETY: the caller promises no one writes this byte now; loom checks it.
            *byte = cell.with(|pointer| unsafe { *pointer });
        }
    }
}
