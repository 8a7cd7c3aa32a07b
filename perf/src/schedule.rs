//! The open-loop schedule: when each request of each connection is meant to be sent.
//!
//! At a total rate of R events per second over C connections, the n-th request overall
//! is due at `start + n / R`, and request n belongs to connection `n mod C`. Interleaving
//! the connections this way spreads the aggregate evenly instead of firing C requests at
//! the same instant. Due times are computed from the index, never accumulated, so they do
//! not drift over a long run. The sender never waits for a reply before the next due
//! time: latency is measured from the due time, so a stalled server shows up in the
//! percentiles instead of silently slowing the schedule (coordinated omission).

/// One connection's share of an open-loop schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    start_ns: u64,
    rate_per_s: u64,
    connection: u64,
    connections: u64,
    /// This connection's requests handed out so far.
    sent: u64,
}

impl Schedule {
    /// Connection `connection` of `connections` at a total of `rate_per_s` events per
    /// second, starting at `start_ns` on the harness's clock.
    pub fn new(start_ns: u64, rate_per_s: u64, connection: u32, connections: u32) -> Schedule {
        assert!(rate_per_s > 0);
        assert!(connection < connections);
        Schedule { start_ns, rate_per_s, connection: connection as u64, connections: connections as u64, sent: 0 }
    }

    /// When this connection's next request is due.
    pub fn next_due_ns(&self) -> u64 {
        let overall = self.sent as u128 * self.connections as u128 + self.connection as u128;
        self.start_ns + (overall * 1_000_000_000 / self.rate_per_s as u128) as u64
    }

    /// The due time of the next request if it is due at `now_ns`, and moves past it.
    pub fn take_due(&mut self, now_ns: u64) -> Option<u64> {
        let due = self.next_due_ns();
        if due <= now_ns {
            self.sent += 1;
            Some(due)
        } else {
            None
        }
    }

    /// Requests of this connection due before `end_ns` and not handed out yet.
    pub fn due_before(&self, end_ns: u64) -> u64 {
        // Request `overall` is due before `end_ns` if and only if
        // overall * 1e9 / rate < end_ns - start_ns, that is overall * 1e9 < span * rate.
        let span_ns = end_ns.saturating_sub(self.start_ns) as u128;
        let scaled = span_ns * self.rate_per_s as u128;
        if scaled == 0 {
            return 0;
        }
        let overall_count = (scaled - 1) / 1_000_000_000 + 1;
        let connection = self.connection as u128;
        let mine = if overall_count > connection {
            (overall_count - connection).div_ceil(self.connections as u128)
        } else {
            0
        };
        (mine as u64).saturating_sub(self.sent)
    }

    /// Requests handed out so far.
    #[cfg(test)]
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_interleave_evenly() {
        // 1000 events/s over 4 connections: one every millisecond, round robin.
        let mut all: Vec<(u64, u32)> = Vec::new();
        for connection in 0..4 {
            let mut schedule = Schedule::new(5_000, 1_000, connection, 4);
            while let Some(due) = schedule.take_due(5_000 + 20_000_000) {
                all.push((due, connection));
            }
        }
        all.sort();
        assert_eq!(all.len(), 21, "due times 0..=20 ms inclusive");
        for (index, (due, connection)) in all.iter().enumerate() {
            assert_eq!(*due, 5_000 + index as u64 * 1_000_000);
            assert_eq!(*connection, index as u32 % 4);
        }
    }

    #[test]
    fn nothing_is_due_before_its_time_and_nothing_is_skipped_after_a_stall() {
        let mut schedule = Schedule::new(0, 1_000_000, 0, 1);
        assert_eq!(schedule.take_due(0), Some(0));
        assert_eq!(schedule.take_due(999), None);
        // A 10 µs stall: the ten requests it covered are all still handed out, with their
        // original due times, so their latency counts the stall.
        let late: Vec<u64> = std::iter::from_fn(|| schedule.take_due(10_000)).collect();
        assert_eq!(late, (1..=10).map(|k| k * 1_000).collect::<Vec<_>>());
        assert_eq!(schedule.sent(), 11);
    }

    #[test]
    fn due_before_counts_what_take_due_would_hand_out() {
        for (rate, connections) in [(3, 1), (1_000, 4), (7, 3), (40_000, 1), (999_983, 7)] {
            for connection in 0..connections {
                let mut schedule = Schedule::new(5_000, rate, connection, connections);
                let end_ns = 5_000 + 1_000_000_000;
                assert_eq!(schedule.due_before(5_000), 0);
                let expected = schedule_count(rate, connection, connections);
                let mut taken = 0;
                while schedule.next_due_ns() < end_ns {
                    assert_eq!(schedule.due_before(end_ns), expected - taken);
                    schedule.take_due(u64::MAX).unwrap();
                    taken += 1;
                }
                assert_eq!(schedule.due_before(end_ns), 0, "rate {rate}, connection {connection}");
                assert_eq!(taken, expected);
            }
        }
    }

    /// Requests of `connection` due in the first second, counted one by one.
    fn schedule_count(rate: u64, connection: u32, connections: u32) -> u64 {
        (0..rate).filter(|overall| overall % connections as u64 == connection as u64).count() as u64
    }

    #[test]
    fn odd_rates_do_not_drift() {
        let mut schedule = Schedule::new(0, 3, 0, 1);
        let due: Vec<u64> = std::iter::from_fn(|| schedule.take_due(10_000_000_000)).collect();
        assert_eq!(due.len(), 31);
        assert_eq!(due[30], 10_000_000_000);
        assert_eq!(due[1], 333_333_333);
    }
}
