//! Counters and latency histograms: recorded by each shard without sharing, copied into
//! a per-shard snapshot every `STATS_SNAPSHOT_INTERVAL_US`, and turned into the STATS
//! JSON document from all snapshots.
//!
//! Recording is a plain add or an HDR histogram record (3–5 ns) on the shard's own
//! [`ShardStats`]. Histograms have fixed bounds (1 µs to `HISTOGRAM_US_MAX`) and never
//! resize, and the snapshot's histograms have the same bounds, so copying into the
//! snapshot (`reset` then `add`) allocates nothing. Building the JSON document is a slow
//! path and allocates; the shard that builds it does not count those allocations against
//! events (see [`ShardStats::allocations_excluded`]).
//!
//! A STATS request with the MARK flag starts a new allocation mark after its reply: the
//! next document reports the allocations and events since that request, so a test can
//! measure a stretch exactly. A plain STATS only reads.

use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::constants::{HISTOGRAM_SIGNIFICANT_DIGITS, HISTOGRAM_US_MAX};
use crate::event::EventKind;
use crate::outcome::Rejection;

/// Number of rejection reasons (`Rejection::CODES`).
pub const REJECTION_COUNT: usize = Rejection::CODES.len();

/// A histogram of microseconds with the server's fixed bounds.
pub fn latency_histogram() -> Histogram<u64> {
    let mut histogram = Histogram::new_with_bounds(1, HISTOGRAM_US_MAX, HISTOGRAM_SIGNIFICANT_DIGITS)
        .expect("the histogram bounds are valid");
    // Clamp instead: a resize would allocate on the hot path.
    histogram.auto(false);
    histogram
}

/// Records `count` samples of `value_us`, clamped into the histogram's bounds.
pub fn record(histogram: &mut Histogram<u64>, value_us: u64, count: u64) {
    let clamped = value_us.clamp(1, HISTOGRAM_US_MAX);
    histogram.record_n(clamped, count).expect("a clamped value is within the bounds");
}

/// The plain counters of one shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events applied, by `EventKind as usize`.
    pub events: [u64; EventKind::COUNT],
    /// Events refused, by index in `Rejection::CODES`.
    pub rejections: [u64; REJECTION_COUNT],
    /// Frames refused by the decoder (or not HELLO first).
    pub protocol_errors: u64,
    /// Connections accepted.
    pub connections_accepted: u64,
    /// Connections closed, for any reason.
    pub connections_closed: u64,
    /// Connections refused with `too_many_connections` (the server or the shard was full).
    pub connections_refused: u64,
    /// New connections closed at once because the shard could not set them up (a socket
    /// option or the poll's registration failed; the server's log says which).
    pub connections_failed: u64,
    /// Connections sent GOODBYE by the timeout sweep: no HELLO, a frame never finished,
    /// idle, or output not read (`slow_consumer`).
    pub connections_timed_out: u64,
    /// HELLOs refused with `unauthorized` (missing or wrong token).
    pub connections_unauthorized: u64,
    /// Requests refused with `admin_required`.
    pub admin_refusals: u64,
    /// Notice pushes appended to a subscriber's output.
    pub pushes_sent: u64,
    /// Notice pushes dropped because a subscriber's output was above the soft limit.
    pub pushes_dropped: u64,
    /// Notices not sent to another shard because the reply ring was full.
    pub ring_pushes_dropped: u64,
    /// GAP pushes sent.
    pub gaps_sent: u64,
    /// Connections closed with GOODBYE because they read too slowly.
    pub subscribers_disconnected: u64,
    /// Times a connection stopped being decoded because a request ring was full.
    pub ring_full_stalls: u64,
    /// Replies dropped because their connection had closed.
    pub stale_replies: u64,
    /// Mutating events refused with `disk_full` because the journal could not be written.
    pub disk_full_refusals: u64,
    /// `read` calls that returned bytes.
    pub read_syscalls: u64,
    /// Request frames decoded.
    pub frames_read: u64,
    /// `write` calls.
    pub write_syscalls: u64,
}

impl Counters {
    /// Counts a rejection by its reason.
    pub fn reject(&mut self, rejection: &Rejection) {
        let index = Rejection::CODES.iter().position(|&code| code == rejection.code());
        self.rejections[index.expect("every rejection code is listed")] += 1;
    }

    /// Events applied, over all kinds.
    pub fn events_total(&self) -> u64 {
        self.events.iter().sum()
    }

    fn add(&mut self, other: &Counters) {
        for (total, value) in self.events.iter_mut().zip(other.events) {
            *total += value;
        }
        for (total, value) in self.rejections.iter_mut().zip(other.rejections) {
            *total += value;
        }
        self.protocol_errors += other.protocol_errors;
        self.connections_accepted += other.connections_accepted;
        self.connections_closed += other.connections_closed;
        self.connections_refused += other.connections_refused;
        self.connections_failed += other.connections_failed;
        self.connections_timed_out += other.connections_timed_out;
        self.connections_unauthorized += other.connections_unauthorized;
        self.admin_refusals += other.admin_refusals;
        self.pushes_sent += other.pushes_sent;
        self.pushes_dropped += other.pushes_dropped;
        self.ring_pushes_dropped += other.ring_pushes_dropped;
        self.gaps_sent += other.gaps_sent;
        self.subscribers_disconnected += other.subscribers_disconnected;
        self.ring_full_stalls += other.ring_full_stalls;
        self.stale_replies += other.stale_replies;
        self.disk_full_refusals += other.disk_full_refusals;
        self.read_syscalls += other.read_syscalls;
        self.frames_read += other.frames_read;
        self.write_syscalls += other.write_syscalls;
    }
}

/// The latency histograms of one shard.
pub struct Histograms {
    /// Server-side latency per event kind: from the loop turn that read the request to
    /// the turn that encoded its reply, in microseconds.
    pub latency: Vec<Histogram<u64>>,
    /// Time a request or reply waited in a ring, in microseconds.
    pub queue_wait: Histogram<u64>,
}

impl Histograms {
    /// Empty histograms (allocated here, at start-up).
    pub fn new() -> Histograms {
        Histograms {
            latency: (0..EventKind::COUNT).map(|_| latency_histogram()).collect(),
            queue_wait: latency_histogram(),
        }
    }

    fn copy_from(&mut self, other: &Histograms) {
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            mine.reset();
            mine.add(theirs).expect("same bounds");
        }
        self.queue_wait.reset();
        self.queue_wait.add(&other.queue_wait).expect("same bounds");
    }
}

impl Default for Histograms {
    fn default() -> Histograms {
        Histograms::new()
    }
}

/// What one shard records as it runs.
#[derive(Default)]
pub struct ShardStats {
    /// Counters.
    pub counters: Counters,
    /// Histograms.
    pub histograms: Histograms,
    /// Allocations this thread made for the stats document itself, which are not
    /// counted against events.
    pub allocations_excluded: u64,
}

/// A shard's numbers as of its last copy, shared with the other shards.
#[derive(Default)]
pub struct Snapshot {
    /// Counters.
    pub counters: Counters,
    /// Histograms.
    pub histograms: Histograms,
    /// Connections open.
    pub connections_open: u64,
    /// Subscriptions held by this shard's connections.
    pub subscriptions: u64,
    /// Allocations on the shard thread since it started, less the excluded ones.
    pub allocations: u64,
    /// `allocations` at the last mark.
    pub mark_allocations: u64,
    /// Events applied at the last mark.
    pub mark_events: u64,
}

impl Snapshot {
    /// Copies a shard's live numbers in (allocates nothing).
    pub fn update(&mut self, stats: &ShardStats, connections_open: usize, subscriptions: usize, allocations: u64) {
        self.counters = stats.counters;
        self.histograms.copy_from(&stats.histograms);
        self.connections_open = connections_open as u64;
        self.subscriptions = subscriptions as u64;
        self.allocations = allocations.saturating_sub(stats.allocations_excluded);
    }

    /// Starts a new allocation mark at the current numbers.
    pub fn mark(&mut self) {
        self.mark_allocations = self.allocations;
        self.mark_events = self.counters.events_total();
    }
}

/// The percentiles of a histogram, in microseconds, as JSON.
fn percentiles(histogram: &Histogram<u64>) -> Value {
    json!({
        "count": histogram.len(),
        "p50": histogram.value_at_quantile(0.50),
        "p90": histogram.value_at_quantile(0.90),
        "p99": histogram.value_at_quantile(0.99),
        "p99_9": histogram.value_at_quantile(0.999),
        "max": histogram.max(),
    })
}

fn latency_by_kind(histograms: &[Histogram<u64>]) -> Value {
    let mut by_kind = Map::new();
    for (kind, histogram) in EventKind::ALL.iter().zip(histograms) {
        if !histogram.is_empty() {
            by_kind.insert(kind.name().to_string(), percentiles(histogram));
        }
    }
    Value::Object(by_kind)
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// Starts a new allocation mark in every shard's snapshot (a STATS request with the MARK
/// flag, after its document is built).
pub fn mark(snapshots: &[Mutex<Snapshot>]) {
    for snapshot in snapshots {
        snapshot.lock().expect("no shard panics holding its snapshot").mark();
    }
}

/// Builds the STATS document from every shard's snapshot (slow path: allocates). `detailed` adds per-kind latencies per shard.
pub fn document(snapshots: &[Mutex<Snapshot>], uptime_us: u64, detailed: bool) -> String {
    let mut total = Counters::default();
    let mut merged = Histograms::new();
    let (mut open, mut subscriptions, mut allocations, mut allocations_since_mark, mut events_since_mark) =
        (0, 0, 0, 0, 0);
    let mut per_shard = Vec::new();
    for (index, snapshot) in snapshots.iter().enumerate() {
        let snapshot = snapshot.lock().expect("no shard panics holding its snapshot");
        total.add(&snapshot.counters);
        for (all, one) in merged.latency.iter_mut().zip(&snapshot.histograms.latency) {
            all.add(one).expect("same bounds");
        }
        merged.queue_wait.add(&snapshot.histograms.queue_wait).expect("same bounds");
        open += snapshot.connections_open;
        subscriptions += snapshot.subscriptions;
        allocations += snapshot.allocations;
        let shard_allocations = snapshot.allocations - snapshot.mark_allocations;
        let shard_events = snapshot.counters.events_total() - snapshot.mark_events;
        allocations_since_mark += shard_allocations;
        events_since_mark += shard_events;
        let mut all_kinds = latency_histogram();
        for histogram in &snapshot.histograms.latency {
            all_kinds.add(histogram).expect("same bounds");
        }
        let mut shard = json!({
            "shard": index,
            "events": snapshot.counters.events_total(),
            "connections_open": snapshot.connections_open,
            "subscriptions": snapshot.subscriptions,
            "ring_full_stalls": snapshot.counters.ring_full_stalls,
            "allocations": snapshot.allocations,
            "allocations_since_mark": shard_allocations,
            "latency_us": percentiles(&all_kinds),
            "queue_wait_us": percentiles(&snapshot.histograms.queue_wait),
        });
        if detailed {
            shard["latency_us_by_kind"] = latency_by_kind(&snapshot.histograms.latency);
        }
        per_shard.push(shard);
    }
    let events: Map<String, Value> =
        EventKind::ALL.iter().map(|kind| (kind.name().to_string(), json!(total.events[*kind as usize]))).collect();
    let rejections: Map<String, Value> =
        rejection_names().iter().zip(total.rejections).map(|(name, count)| (name.to_string(), json!(count))).collect();
    let document = json!({
        "shards": snapshots.len(),
        "uptime_us": uptime_us,
        "events": events,
        "events_total": total.events_total(),
        "rejections": rejections,
        "protocol_errors": total.protocol_errors,
        "connections": {
            "open": open,
            "accepted": total.connections_accepted,
            "closed": total.connections_closed,
            "refused": total.connections_refused,
            "failed": total.connections_failed,
            "timed_out": total.connections_timed_out,
            "unauthorized": total.connections_unauthorized,
        },
        "admin_refusals": total.admin_refusals,
        "subscribers": subscriptions,
        "pushes": {
            "sent": total.pushes_sent,
            "dropped": total.pushes_dropped,
            "ring_dropped": total.ring_pushes_dropped,
            "gaps_sent": total.gaps_sent,
        },
        "subscribers_disconnected": total.subscribers_disconnected,
        "ring_full_stalls": total.ring_full_stalls,
        "stale_replies": total.stale_replies,
        "disk_full_refusals": total.disk_full_refusals,
        "reads": {
            "syscalls": total.read_syscalls,
            "frames": total.frames_read,
            "events_per_read": ratio(total.frames_read, total.read_syscalls),
        },
        "writes": { "syscalls": total.write_syscalls },
        "allocations": {
            "total": allocations,
            "since_mark": allocations_since_mark,
            "events_since_mark": events_since_mark,
            "per_event_since_mark": ratio(allocations_since_mark, events_since_mark),
        },
        "latency_us": latency_by_kind(&merged.latency),
        "queue_wait_us": percentiles(&merged.queue_wait),
        "per_shard": per_shard,
    });
    document.to_string()
}

/// The name of each rejection reason, in the order of `Rejection::CODES`.
fn rejection_names() -> [&'static str; REJECTION_COUNT] {
    Rejection::SAMPLES.map(|rejection| rejection.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_merges_shards_and_marks() {
        let snapshots: Vec<Mutex<Snapshot>> = (0..2).map(|_| Mutex::new(Snapshot::default())).collect();
        let mut stats = ShardStats::default();
        stats.counters.events[EventKind::Move as usize] = 10;
        stats.counters.reject(&Rejection::TooFast { distance: 9, allowed: 1 });
        record(&mut stats.histograms.latency[EventKind::Move as usize], 0, 10);
        record(&mut stats.histograms.queue_wait, u64::MAX, 1);
        snapshots[0].lock().unwrap().update(&stats, 3, 1, 25);
        snapshots[1].lock().unwrap().update(&stats, 1, 0, 5);
        let document: Value = serde_json::from_str(&document(&snapshots, 7, true)).unwrap();
        assert_eq!(document["events"]["move"], 20);
        assert_eq!(document["rejections"]["too_fast"], 2);
        assert_eq!(document["connections"]["open"], 4);
        assert_eq!(document["allocations"]["since_mark"], 30);
        assert_eq!(document["allocations"]["per_event_since_mark"], 1.5);
        assert_eq!(document["latency_us"]["move"]["count"], 20);
        assert_eq!(document["latency_us"]["move"]["p50"], 1);
        assert!(document["latency_us"]["dig"].is_null());
        assert!(document["queue_wait_us"]["max"].as_u64().unwrap() >= HISTOGRAM_US_MAX);
        assert_eq!(document["per_shard"][1]["connections_open"], 1);
        // A plain document only reads; marking starts the count again.
        let unmarked: Value = serde_json::from_str(&super::document(&snapshots, 8, false)).unwrap();
        assert_eq!(unmarked["allocations"]["since_mark"], 30);
        mark(&snapshots);
        let again: Value = serde_json::from_str(&super::document(&snapshots, 8, false)).unwrap();
        assert_eq!(again["allocations"]["since_mark"], 0);
        assert_eq!(again["allocations"]["events_since_mark"], 0);
        assert!(again["per_shard"][0]["latency_us_by_kind"].is_null());
    }

    #[test]
    fn every_rejection_has_a_name() {
        let names = rejection_names();
        assert_eq!(names[0], "hunt_exists");
        assert_eq!(names[REJECTION_COUNT - 1], "count_too_large");
    }
}
