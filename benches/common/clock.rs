//! The clock the benches time with, shared by `benches/engine.rs` and
//! `benches/leaderboard.rs` (each includes this file as a module).
//!
//! On a shared machine wall time also counts the time the bench thread waited for a
//! core, which swung results by 2-3x here; the thread's CPU time does not. Set
//! `CAIRN_BENCH_CLOCK=wall` to time with the wall clock instead.

use std::time::{Duration, Instant};

/// What the timed loops read: the thread's CPU time by default on Linux, or the wall
/// clock with `CAIRN_BENCH_CLOCK=wall`.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    /// CPU time of the calling thread.
    ThreadCpu,
    /// Wall-clock time.
    Wall(Instant),
}

impl Clock {
    pub fn from_environment() -> Clock {
        match std::env::var("CAIRN_BENCH_CLOCK").as_deref() {
            Ok("wall") => Clock::Wall(Instant::now()),
            Ok("cpu") | Err(_) if cfg!(target_os = "linux") => Clock::ThreadCpu,
            Ok("cpu") | Err(_) => Clock::Wall(Instant::now()),
            Ok(other) => panic!("CAIRN_BENCH_CLOCK must be cpu or wall, not {other:?}"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Clock::ThreadCpu => "the thread's CPU time",
            Clock::Wall(_) => "the wall clock",
        }
    }

    /// Time since an arbitrary origin fixed for this clock.
    pub fn now(self) -> Duration {
        match self {
            Clock::ThreadCpu => thread_cpu_time(),
            Clock::Wall(origin) => origin.elapsed(),
        }
    }
}

#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Duration {
    /// `struct timespec` of 64-bit Linux.
    #[repr(C)]
    struct Timespec {
        seconds: i64,
        nanoseconds: i64,
    }
    /// `CLOCK_THREAD_CPUTIME_ID` from `<time.h>`.
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    extern "C" {
        fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
    }
    // The standard library offers no CPU-time clock and the crate has no `libc`
    // dependency; the C library that `std` links provides `clock_gettime`.
    let mut time = Timespec { seconds: 0, nanoseconds: 0 };
    // SAFETY: `time` is a valid, writable `struct timespec`, and the clock id is valid.
    let result = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut time) };
    assert_eq!(result, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(time.seconds as u64, time.nanoseconds as u32)
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_time() -> Duration {
    unreachable!("the thread CPU-time clock is only chosen on Linux")
}
