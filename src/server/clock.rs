//! The server's one clock: read once per loop turn, giving both a monotonic time for
//! latencies and queue waits, and the event time the state machine is stamped with.
//!
//! All shards share one [`Epoch`] (an `Instant` and the wall-clock time it was taken
//! at), so monotonic microseconds written by one shard into a ring record mean the same
//! thing to the shard that reads it. Event time is the epoch's wall-clock time plus the
//! monotonic time elapsed, and each shard's [`ShardClock`] never lets it go backwards,
//! even if the wall clock is stepped: the state machine only ever sees time advance.
//!
//! Across a restart too: a shard's clock starts at a floor, the latest event time its
//! journal or snapshot holds, so a server restarted after the wall clock was stepped
//! back (or on a machine whose clock is behind) holds event time at that floor until
//! the clock passes it, rather than stamping events earlier than ones already applied.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::event::Micros;

/// The instant the server started, and the wall-clock time at that instant.
#[derive(Clone, Copy, Debug)]
pub struct Epoch {
    started: Instant,
    unix_us: Micros,
}

impl Epoch {
    /// Now.
    pub fn now() -> Epoch {
        let since_unix = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970");
        Epoch { started: Instant::now(), unix_us: since_unix.as_micros() as Micros }
    }
}

/// One shard's view of the clock.
pub struct ShardClock {
    epoch: Epoch,
    monotonic_us: u64,
    event_us: Micros,
}

impl ShardClock {
    /// A clock reading from `epoch` whose event time is never below `floor_us` (the
    /// latest event time the shard recovered; 0 for a fresh shard).
    pub fn new(epoch: Epoch, floor_us: Micros) -> ShardClock {
        ShardClock { epoch, monotonic_us: 0, event_us: epoch.unix_us.max(floor_us) }
    }

    /// How far the floor is ahead of the wall clock at start, in microseconds (0 if it
    /// is not): event time stands still that long.
    pub fn ahead_of_wall_clock_us(&self) -> u64 {
        self.event_us.saturating_sub(self.epoch.unix_us)
    }

    /// Reads the clock (once per loop turn).
    pub fn tick(&mut self) {
        self.monotonic_us = self.read();
        // `Instant` never goes backwards, so event time does not either; `max` keeps
        // that true even if a platform's `Instant` were to misbehave.
        self.event_us = self.event_us.max(self.epoch.unix_us + self.monotonic_us);
    }

    /// Microseconds since the epoch, read now (not at the last tick).
    pub fn read(&self) -> u64 {
        self.epoch.started.elapsed().as_micros() as u64
    }

    /// Monotonic microseconds since the epoch, as of the last tick.
    pub fn monotonic_us(&self) -> u64 {
        self.monotonic_us
    }

    /// Event time (microseconds since the Unix epoch) as of the last tick.
    pub fn event_us(&self) -> Micros {
        self.event_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_follows_the_wall_clock_and_never_goes_back() {
        let epoch = Epoch::now();
        let mut clock = ShardClock::new(epoch, 0);
        let mut last = clock.event_us();
        for _ in 0..1_000 {
            clock.tick();
            assert!(clock.event_us() >= last);
            last = clock.event_us();
        }
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64;
        assert!(wall.abs_diff(last) < 1_000_000, "event time {last} is far from the wall clock {wall}");
    }

    #[test]
    fn event_time_starts_at_the_floor_and_holds_there_until_the_clock_passes_it() {
        let epoch = Epoch::now();
        let floor = epoch.unix_us + 60_000_000;
        let mut clock = ShardClock::new(epoch, floor);
        assert_eq!(clock.event_us(), floor);
        assert!(clock.ahead_of_wall_clock_us() >= 59_000_000);
        for _ in 0..100 {
            clock.tick();
            assert_eq!(clock.event_us(), floor, "event time went below the recovered floor");
        }
        let behind = ShardClock::new(epoch, epoch.unix_us - 60_000_000);
        assert_eq!(behind.event_us(), epoch.unix_us, "an old floor does not hold the clock back");
        assert_eq!(behind.ahead_of_wall_clock_us(), 0);
    }
}
