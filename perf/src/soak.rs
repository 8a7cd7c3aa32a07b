//! `cairn-perf soak`: a long open-loop run at a sustainable rate with connection and
//! subscriber churn, sampled every second, ending in a verdict.
//!
//! The run: set the scenario up (spawning `cairn serve` unless `--addr` is given), find
//! the rate (`--rate`, or `--fraction` of a closed-loop maximum measured for
//! [`PROBE`]), warm up, then load for `--duration` seconds while the churn thread
//! (`churn.rs`) reconnects load connections and opens and closes subscribers during the
//! churn seconds of each period. At every second boundary the collecting thread reads the
//! server's STATS with the MARK flag (allocations and events since the previous second,
//! connection counters) and its RSS (`/proc/PID/status`); the workers' per-second
//! latency histograms give that second's p99.9 from intended send times.
//!
//! Outputs in the output directory: `soak.csv` (one row per second), `soak.json`
//! (settings, totals, the allocation accounting, the RSS fit, every check), `soak.svg`
//! (RSS, allocations per event, p99.9, throughput and churn against time), and the
//! whole window's `latency.hgrm`.
//!
//! The verdict (see [`verdict`]): no errors; validation ok; the schedule was delivered;
//! the server's RSS over the second half has no growth trend (a least-squares line may
//! rise by at most `max(--rss-growth-max-mib, 5% of the median RSS)` across that half);
//! the backlog (scheduled minus answered) does not grow across the second half by more
//! than one second of load; every clean second holds events and exactly zero server
//! allocations; the server holds the same number of connections in every clean second
//! (when spawned); the p99.9 of the last quarter is not more than twice that of the
//! second quarter plus 1 ms; and, on a spawned server (which runs the soak's subscriber
//! limits, [`SOAK_SUBSCRIBER_BUFFER_SOFT`]), the server cut at least one of the churn's
//! slow subscribers, as they saw it on their sockets (see `churn.rs`), while the checks
//! above say it stayed healthy. A clean second is one whose STATS sample shows no connection
//! accepted or closed and no churned subscription alive at either end, and in which the
//! harness swapped no socket: the churn calendar aims to make every quiet second clean,
//! but when the machine stalls the server or the churn thread for seconds, churn spills
//! into quiet seconds, and those are counted as spilled, not judged. Allocations outside
//! clean seconds are reported per connection accepted: they are the slow path of
//! accepting and subscribing (buffers, subscription tables), not events. The 1-minute
//! load average is sampled every second beside the rest, since on a shared machine it
//! explains most of the latency.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn::protocol::ErrorCode;
use serde::Serialize;

use crate::cairn_target::Blocking;
use crate::churn::{self, Calendar, ChurnReport, ChurnSecond, Rates, SecondKind, SlowLink};
use crate::driver::{IntervalReport, Mode};
use crate::latency::{self, Percentiles};
use crate::plot::{self, Panel};
use crate::report::{self, MACHINE};
use crate::session::{Endpoint, PhaseHooks, Session};
use crate::spawn;
use crate::target::TargetKind;
use crate::workload::World;
use crate::Settings;

/// Closed-loop load that measures the maximum when no `--rate` is given.
pub const PROBE: Duration = Duration::from_secs(5);
/// The RSS bound, as a share of the median RSS of the second half.
const RSS_GROWTH_SHARE: f64 = 0.05;
/// The p99.9 trend bound: last quarter's median at most this times the second quarter's...
const LATENCY_TREND_FACTOR: f64 = 2.0;
/// ... plus this, µs (scheduler noise on a shared machine is milliseconds).
const LATENCY_TREND_SLACK_US: f64 = 1_000.0;
/// Share of the open-loop schedule that must have been sent.
const SENT_SHARE_MIN: f64 = 0.98;
/// KiB per MiB.
const KIB_PER_MIB: f64 = 1024.0;
/// The backlog may grow across the second half by at most this many seconds of load.
const BACKLOG_GROWTH_SECONDS_MAX: f64 = 1.0;
/// The soft limit on a subscriber's pending output the soak gives the server it spawns
/// (`cairn serve --subscriber-buffer-soft`), bytes. The default, 8 MiB, is sized for a
/// busy game's push rate; at the soak's (about 210 KB/s to a subscriber of every hunt) a
/// subscriber would have to read nothing for 40 s before the server acted, far beyond a
/// churned subscriber's life: see `churn::SlowLink` for the figures.
pub const SOAK_SUBSCRIBER_BUFFER_SOFT: usize = 16 * 1024;
/// The hard limit the soak gives the server it spawns (`--subscriber-buffer-max`), bytes:
/// 2 MiB, the lowest round figure `cairn serve` accepts (it must lie above the output
/// high-water mark, 1 MiB, plus a frame). Pushes stop at the soft limit, so a connection
/// that only subscribes never reaches it (the cuts the soak sees are the server's other
/// reason, more missed ranges than it remembers); a lower one would not change that.
pub const SOAK_SUBSCRIBER_BUFFER_MAX: usize = 2 << 20;

/// What `soak` takes besides the shared settings.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// Open-loop rate; `None`: `fraction` of the measured maximum.
    pub rate: Option<u64>,
    /// Share of the closed-loop maximum to run at.
    pub fraction: f64,
    /// The server's process id when attaching (`--addr`), for its RSS.
    pub pid: Option<u32>,
    /// How much churn.
    pub rates: Rates,
    /// The least RSS growth bound over the second half, MiB.
    pub rss_growth_max_mib: f64,
}

/// The server's side of one second, from STATS and `/proc`.
#[derive(Clone, Copy, Debug, Default)]
struct ServerSecond {
    /// RSS at the end of the second, KiB.
    rss_kib: u64,
    /// Events the server applied.
    events: u64,
    /// Allocations on its shard threads (STATS excluded).
    allocations: u64,
    /// Connections accepted and closed.
    accepted: u64,
    closed: u64,
    /// Connections open and subscriptions held at the end of the second.
    open: u64,
    subscriptions: u64,
    /// Pushes the server dropped (a subscriber above the soft limit), GAP notices it sent,
    /// and subscribers it cut (GOODBYE `slow_consumer` from its push path).
    pushes_dropped: u64,
    gaps_sent: u64,
    subscribers_cut: u64,
    /// The machine's 1-minute load average at the end of the second.
    load_1m: f64,
}

/// The cumulative STATS counters the soak turns into per-second figures.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    accepted: u64,
    closed: u64,
    pushes_dropped: u64,
    gaps_sent: u64,
    subscribers_cut: u64,
}

impl Counters {
    fn of(document: &serde_json::Value) -> Result<Counters> {
        Ok(Counters {
            accepted: number(document, "/connections/accepted")?,
            closed: number(document, "/connections/closed")?,
            pushes_dropped: number(document, "/pushes/dropped")?,
            gaps_sent: number(document, "/pushes/gaps_sent")?,
            subscribers_cut: number(document, "/subscribers_disconnected")?,
        })
    }
}

/// The harness's side of one second.
#[derive(Clone, Copy, Debug, Default)]
struct HarnessSecond {
    acked: u64,
    errors: u64,
    reconnects: u64,
    latency: Percentiles,
}

/// Collects the samples at each second boundary and tells the churn thread the time.
struct Sampler {
    stats: Blocking,
    pid: u32,
    seconds: u64,
    churn: mpsc::Sender<u64>,
    rss_start_kib: u64,
    server: Vec<ServerSecond>,
    harness: BTreeMap<u64, HarnessSecond>,
    last: Counters,
}

/// The first field of `/proc/loadavg` (0 when unreadable: it is context, not a measure).
fn load_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|field| field.parse().ok()))
        .unwrap_or(0.0)
}

fn number(document: &serde_json::Value, path: &str) -> Result<u64> {
    document.pointer(path).and_then(|value| value.as_u64()).with_context(|| format!("STATS has no number at {path}"))
}

impl PhaseHooks for Sampler {
    fn boundary(&mut self, index: u64) -> Result<()> {
        let document = self.stats.stats()?;
        let rss_kib = spawn::rss_kib(self.pid)?;
        let counters = Counters::of(&document)?;
        if index == 0 {
            self.rss_start_kib = rss_kib;
        } else {
            let last = self.last;
            self.server.push(ServerSecond {
                rss_kib,
                events: number(&document, "/allocations/events_since_mark")?,
                allocations: number(&document, "/allocations/since_mark")?,
                accepted: counters.accepted - last.accepted,
                closed: counters.closed - last.closed,
                open: number(&document, "/connections/open")?,
                subscriptions: number(&document, "/subscribers")?,
                pushes_dropped: counters.pushes_dropped - last.pushes_dropped,
                gaps_sent: counters.gaps_sent - last.gaps_sent,
                subscribers_cut: counters.subscribers_cut - last.subscribers_cut,
                load_1m: load_1m(),
            });
        }
        self.last = counters;
        if index < self.seconds {
            // The churn thread may have stopped early on its own; the soak goes on.
            let _ = self.churn.send(index);
        }
        Ok(())
    }

    fn interval(&mut self, report: &IntervalReport) {
        self.harness.insert(
            report.index,
            HarnessSecond {
                acked: report.acked,
                errors: report.errors,
                reconnects: report.reconnects,
                latency: Percentiles::of(&report.latency),
            },
        );
    }
}

/// One second of the soak, as `soak.csv` and `soak.json` list it.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Seconds since the measured window began.
    pub second: u64,
    /// Its part in the churn calendar.
    pub kind: SecondKind,
    /// No connection accepted, closed or swapped, no churned subscription alive: the
    /// server saw only events (see the module doc).
    pub clean: bool,
    /// Replies the harness received.
    pub events_per_s: u64,
    /// Events the server applied (STATS).
    pub server_events: u64,
    /// Allocations on the server's shard threads (STATS, MARK each second).
    pub allocations: u64,
    /// `allocations / server_events`.
    pub allocations_per_event: f64,
    /// Server RSS at the end of the second, MiB.
    pub rss_mib: f64,
    /// Latency from intended send times of the second's replies, µs.
    pub p50_us: f64,
    /// See `p50_us`.
    pub p99_us: f64,
    /// See `p50_us`.
    pub p999_us: f64,
    /// See `p50_us`.
    pub max_us: f64,
    /// Failures (harness and churn).
    pub errors: u64,
    /// Load connections that moved to a new socket.
    pub reconnects: u64,
    /// Subscribers opened by the churn thread.
    pub subscribers_opened: u64,
    /// Subscribers it closed.
    pub subscribers_closed: u64,
    /// Connections the server accepted (STATS).
    pub server_accepted: u64,
    /// Connections the server closed (STATS).
    pub server_closed: u64,
    /// Connections open at the end of the second (STATS).
    pub server_open: u64,
    /// Subscriptions held at the end of the second (STATS).
    pub server_subscriptions: u64,
    /// Pushes the churned subscribers read.
    pub pushes: u64,
    /// Pushes they know they missed (slow ones): GAP notices' ranges and sequence jumps,
    /// each missed push once.
    pub push_gaps: u64,
    /// The machine's 1-minute load average at the end of the second.
    pub load_1m: f64,
    /// Slow subscribers opened.
    pub slow_opened: u64,
    /// Pushes slow subscribers read.
    pub slow_pushes: u64,
    /// GAP notices the churned subscribers received.
    pub gap_notices: u64,
    /// Jumps in sequence numbers no GAP notice had announced.
    pub seq_jumps: u64,
    /// Slow subscribers that ended this second having seen a gap, not cut.
    pub slow_gapped: u64,
    /// Slow subscribers that ended this second cut by the server (GOODBYE or close).
    pub slow_cut: u64,
    /// Pushes the server dropped (STATS `pushes.dropped`).
    pub server_pushes_dropped: u64,
    /// GAP notices the server sent (STATS `pushes.gaps_sent`).
    pub server_gaps_sent: u64,
    /// Subscribers the server cut from its push path (STATS `subscribers_disconnected`).
    pub server_subscribers_cut: u64,
}

fn rows(server: &[ServerSecond], harness: &BTreeMap<u64, HarnessSecond>, churn: &ChurnReport) -> Vec<Row> {
    let mut rows: Vec<Row> = server
        .iter()
        .enumerate()
        .map(|(second, s)| {
            let h = harness.get(&(second as u64)).copied().unwrap_or_default();
            let c = churn.seconds.get(second).copied().unwrap_or(ChurnSecond::default());
            Row {
                second: second as u64,
                kind: Calendar::kind(second as u64),
                events_per_s: h.acked,
                server_events: s.events,
                allocations: s.allocations,
                allocations_per_event: if s.events == 0 { 0.0 } else { s.allocations as f64 / s.events as f64 },
                rss_mib: s.rss_kib as f64 / KIB_PER_MIB,
                p50_us: h.latency.p50,
                p99_us: h.latency.p99,
                p999_us: h.latency.p999,
                max_us: h.latency.max,
                errors: h.errors + c.errors,
                reconnects: h.reconnects,
                subscribers_opened: c.subscribers_opened,
                subscribers_closed: c.subscribers_closed,
                server_accepted: s.accepted,
                server_closed: s.closed,
                server_open: s.open,
                server_subscriptions: s.subscriptions,
                pushes: c.pushes,
                push_gaps: c.push_gaps,
                load_1m: s.load_1m,
                slow_opened: c.slow_opened,
                slow_pushes: c.slow_pushes,
                gap_notices: c.gap_notices,
                seq_jumps: c.seq_jumps,
                slow_gapped: c.slow_gapped,
                slow_cut: c.slow_dropped,
                server_pushes_dropped: s.pushes_dropped,
                server_gaps_sent: s.gaps_sent,
                server_subscribers_cut: s.subscribers_cut,
                clean: false,
            }
        })
        .collect();
    mark_clean(&mut rows);
    rows
}

/// Marks the clean seconds: the server's sample shows no connection accepted or closed,
/// its subscriptions are at their least (no churned subscriber) at both ends of the
/// second, and neither the harness nor the churn thread opened, swapped or closed
/// anything in it.
fn mark_clean(rows: &mut [Row]) {
    let baseline = rows.iter().map(|row| row.server_subscriptions).min().unwrap_or(0);
    for index in 1..rows.len() {
        let before = rows[index - 1].server_subscriptions;
        let row = &mut rows[index];
        row.clean = row.server_accepted == 0
            && row.server_closed == 0
            && row.reconnects == 0
            && row.subscribers_opened == 0
            && row.subscribers_closed == 0
            && before == baseline
            && row.server_subscriptions == baseline;
    }
}

/// One line of the verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// What is checked.
    pub name: &'static str,
    /// Passed.
    pub ok: bool,
    /// The figures behind it.
    pub detail: String,
}

/// Run-level figures the verdict needs beside the rows.
#[derive(Clone, Debug)]
pub struct Totals {
    /// Failed requests, broken connections, lost replies, churn failures.
    pub errors: u64,
    /// The validation's answer.
    pub validation: String,
    /// Requests due in the window that were sent (those the server held back leave after
    /// it, within the drain).
    pub sent: u64,
    /// Requests the schedule asked for in the window.
    pub scheduled: u64,
    /// The open-loop rate, events per second.
    pub rate: u64,
    /// The least RSS growth bound, MiB.
    pub rss_growth_max_mib: f64,
    /// The server was started by this run (so every connection it holds is ours).
    pub spawned: bool,
    /// Of `errors`, the churn thread's (subscribers, reconnections); the rest are the load
    /// connections'.
    pub churn_errors: u64,
    /// What happened to the slow subscribers.
    pub slow: SlowTotals,
}

/// What the slow subscribers saw on their sockets over the soak, and what the server
/// counted (STATS) over the window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlowTotals {
    /// The server runs the soak's subscriber limits (it spawned it), so it must have cut
    /// some: judged.
    pub judged: bool,
    /// Slow subscribers opened: narrow ones (few hunts), wide ones (every hunt).
    pub narrow: u64,
    /// See `narrow`.
    pub wide: u64,
    /// Pushes they read.
    pub pushes: u64,
    /// GAP notices the churned subscribers received.
    pub gap_notices: u64,
    /// Sequence jumps no GAP notice had announced.
    pub seq_jumps: u64,
    /// Pushes the churned subscribers know they missed.
    pub missed: u64,
    /// Slow subscribers that saw a gap and were not cut.
    pub gapped: u64,
    /// Slow subscribers the server cut: GOODBYE read, or the connection closed.
    pub cut: u64,
    /// GOODBYE codes read, with their counts.
    pub goodbyes: BTreeMap<u16, u64>,
    /// Cut without a GOODBYE read.
    pub closed_without_goodbye: u64,
    /// Slow subscribers that read every push: the server never acted.
    pub unaffected: u64,
    /// Frames read after a GOODBYE.
    pub frames_after_goodbye: u64,
    /// The server's count of pushes dropped over the window.
    pub server_pushes_dropped: u64,
    /// The server's count of GAP notices sent.
    pub server_gaps_sent: u64,
    /// The server's count of subscribers cut from its push path.
    pub server_cut: u64,
}

impl SlowTotals {
    fn of(churn: &ChurnReport, rows: &[Row], judged: bool) -> SlowTotals {
        SlowTotals {
            judged,
            narrow: churn.slow_kinds[0],
            wide: churn.slow_kinds[1],
            pushes: churn.total(|s| s.slow_pushes),
            gap_notices: churn.total(|s| s.gap_notices),
            seq_jumps: churn.total(|s| s.seq_jumps),
            missed: churn.total(|s| s.push_gaps),
            gapped: churn.total(|s| s.slow_gapped),
            cut: churn.total(|s| s.slow_dropped),
            goodbyes: churn.goodbyes.clone(),
            closed_without_goodbye: churn.total(|s| s.slow_closed_without_goodbye),
            unaffected: churn.total(|s| s.slow_unaffected),
            frames_after_goodbye: churn.total(|s| s.frames_after_goodbye),
            server_pushes_dropped: rows.iter().map(|row| row.server_pushes_dropped).sum(),
            server_gaps_sent: rows.iter().map(|row| row.server_gaps_sent).sum(),
            server_cut: rows.iter().map(|row| row.server_subscribers_cut).sum(),
        }
    }

    /// The GOODBYEs read, as `11 slow_consumer x3, ...`, or `none`.
    fn goodbye_list(&self) -> String {
        let named = |code: u16| ErrorCode::from_u16(code).map_or("unknown", ErrorCode::name);
        let list: Vec<String> =
            self.goodbyes.iter().map(|(code, count)| format!("{code} {} x{count}", named(*code))).collect();
        if list.is_empty() {
            "none".into()
        } else {
            list.join(", ")
        }
    }

    /// The figures, in words.
    fn summary(&self) -> String {
        format!(
            "{} slow subscribers ({} narrow, {} wide): {} cut by the server (GOODBYE read: {}; closed without \
             one: {}; frames read after a GOODBYE: {}), {} saw gaps and stayed, {} unaffected; {} pushes read, {} \
             GAP notices and {} sequence jumps seen, {} pushes known missed; the server counted {} pushes dropped, \
             {} GAP notices sent, {} subscribers cut",
            self.narrow + self.wide,
            self.narrow,
            self.wide,
            self.cut,
            self.goodbye_list(),
            self.closed_without_goodbye,
            self.frames_after_goodbye,
            self.gapped,
            self.unaffected,
            self.pushes,
            self.gap_notices,
            self.seq_jumps,
            self.missed,
            self.server_pushes_dropped,
            self.server_gaps_sent,
            self.server_cut
        )
    }
}

/// Least-squares slope of `points` (x, y), or `None` with fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// Every check of the soak, in order.
pub fn verdict(rows: &[Row], totals: &Totals) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(Check {
        name: "errors",
        ok: totals.errors == 0,
        detail: format!(
            "{} errors ({} on the load connections, {} in the churn)",
            totals.errors,
            totals.errors - totals.churn_errors,
            totals.churn_errors
        ),
    });
    checks.push(Check { name: "validation", ok: totals.validation == "ok", detail: totals.validation.clone() });
    let share = totals.sent as f64 / totals.scheduled.max(1) as f64;
    checks.push(Check {
        name: "schedule",
        ok: share >= SENT_SHARE_MIN,
        detail: format!(
            "sent {} of {} scheduled requests ({:.2}%, at least {:.0}% needed)",
            totals.sent,
            totals.scheduled,
            share * 100.0,
            SENT_SHARE_MIN * 100.0
        ),
    });
    checks.push(backlog_check(rows, totals.rate));
    checks.push(rss_check(rows, totals.rss_growth_max_mib));
    checks.push(allocation_check(rows));
    checks.push(connection_check(rows, totals.spawned));
    checks.push(latency_check(rows));
    checks.push(slow_subscriber_check(&totals.slow));
    checks
}

/// The server acted on the slow subscribers: on a server running the soak's limits, at
/// least one was cut. On any server, a GOODBYE was the last frame a cut subscriber read
/// (protocol §9.4). (That it stayed healthy meanwhile is what the other checks say: no
/// errors on any other connection, RSS, allocations, connections, latency.)
fn slow_subscriber_check(slow: &SlowTotals) -> Check {
    let summary = slow.summary();
    let (ok, detail) = if !slow.judged {
        (true, format!("{summary}; the server at --addr has limits of its own: not judged"))
    } else if slow.narrow + slow.wide == 0 {
        (true, format!("{summary}; no slow subscriber opened: not judged"))
    } else {
        (slow.cut > 0, summary)
    };
    Check { name: "slow_subscribers", ok: ok && slow.frames_after_goodbye == 0, detail }
}

/// The second half's RSS must not trend up by more than the bound.
fn rss_check(rows: &[Row], floor_mib: f64) -> Check {
    let half = &rows[rows.len() / 2..];
    let points: Vec<(f64, f64)> = half.iter().map(|row| (row.second as f64, row.rss_mib)).collect();
    let mut values: Vec<f64> = half.iter().map(|row| row.rss_mib).collect();
    let (Some(slope), Some(median)) = (slope(&points), median(&mut values)) else {
        return Check { name: "rss_trend", ok: false, detail: "too few seconds to fit a line".into() };
    };
    let span = (half.len() - 1) as f64;
    let growth = slope * span;
    let bound = floor_mib.max(median * RSS_GROWTH_SHARE);
    Check {
        name: "rss_trend",
        ok: growth <= bound,
        detail: format!(
            "second half ({} s): fitted slope {:.1} KiB/s, so {growth:.2} MiB across it (bound {bound:.1} MiB = \
             max({floor_mib} MiB, {:.0}% of the median {median:.1} MiB))",
            half.len(),
            slope * KIB_PER_MIB,
            RSS_GROWTH_SHARE * 100.0
        ),
    }
}

/// Scheduled minus answered requests must not trend up across the second half: a
/// server that keeps up answers stalls' backlog afterwards; one that cannot, never does.
fn backlog_check(rows: &[Row], rate: u64) -> Check {
    let mut answered = 0u64;
    let backlog: Vec<(f64, f64)> = rows
        .iter()
        .map(|row| {
            answered += row.events_per_s;
            (row.second as f64, (rate * (row.second + 1)) as f64 - answered as f64)
        })
        .collect();
    let half = &backlog[backlog.len() / 2..];
    let Some(slope) = slope(half) else {
        return Check { name: "backlog", ok: false, detail: "too few seconds to fit a line".into() };
    };
    let growth = slope * (half.len() - 1) as f64;
    let bound = rate as f64 * BACKLOG_GROWTH_SECONDS_MAX;
    let largest = backlog.iter().map(|point| point.1).fold(0.0, f64::max);
    Check {
        name: "backlog",
        ok: growth <= bound,
        detail: format!(
            "scheduled minus answered, fitted over the second half: {growth:.0} requests across it (bound {bound:.0}, \
             {BACKLOG_GROWTH_SECONDS_MAX} s of load); largest backlog {largest:.0} ({:.1} s of load)",
            largest / rate.max(1) as f64
        ),
    }
}

/// Clean seconds must hold events and no allocation at all; the rest are reported per
/// connection accepted.
fn allocation_check(rows: &[Row]) -> Check {
    let clean: Vec<&Row> = rows.iter().filter(|row| row.clean).collect();
    let clean_events: u64 = clean.iter().map(|row| row.server_events).sum();
    let clean_allocations: u64 = clean.iter().map(|row| row.allocations).sum();
    let quiet = rows.iter().filter(|row| row.kind == SecondKind::Quiet).count();
    let quiet_clean = clean.iter().filter(|row| row.kind == SecondKind::Quiet).count();
    let other: Vec<&Row> = rows.iter().filter(|row| !row.clean).collect();
    let other_allocations: u64 = other.iter().map(|row| row.allocations).sum();
    let other_accepted: u64 = other.iter().map(|row| row.server_accepted).sum();
    let other_cut: u64 = other.iter().map(|row| row.server_subscribers_cut).sum();
    let worst = clean.iter().max_by_key(|row| row.allocations).map(|row| (row.second, row.allocations));
    let ok = !clean.is_empty() && clean_events > 0 && clean_allocations == 0;
    let mut detail = format!(
        "{clean_allocations} allocations over {} clean seconds holding {clean_events} events ({quiet_clean} of the \
         {quiet} quiet seconds, {} spilled into by churn; {} others)",
        clean.len(),
        quiet - quiet_clean,
        clean.len() - quiet_clean
    );
    if let Some((second, allocations)) = worst.filter(|(_, allocations)| *allocations > 0) {
        let _ = write!(detail, " (most: {allocations} in second {second})");
    }
    let _ = write!(
        detail,
        "; the other seconds: {other_allocations} allocations for {other_accepted} connections accepted ({:.1} per \
         connection; {other_cut} of them slow subscribers the server cut)",
        other_allocations as f64 / other_accepted.max(1) as f64
    );
    Check { name: "allocations", ok, detail }
}

/// Churn leaves no connection behind on a spawned server: the least number of
/// connections open in a clean second is no higher in the second half than in the first.
/// (A single clean second may hold one more: a stream opened for a reconnection during a
/// stall, not yet swapped in, is open without being accepted or closed in that second.)
fn connection_check(rows: &[Row], spawned: bool) -> Check {
    let floor = |half: &[Row]| half.iter().filter(|row| row.clean).map(|row| row.server_open).min();
    let (first, second) = rows.split_at(rows.len() / 2);
    let open = rows.iter().filter(|row| row.clean).map(|row| row.server_open);
    let (low, high) = (open.clone().min().unwrap_or(0), open.max().unwrap_or(0));
    let (ok, summary) = match (floor(first), floor(second)) {
        (Some(early), Some(late)) => (late <= early, format!("first half {early}, second half {late}")),
        _ => (false, "no clean second in one of the halves".to_string()),
    };
    Check {
        name: "connections",
        ok: !spawned || ok,
        detail: format!(
            "least connections open in a clean second: {summary} (all clean seconds: {low}..{high}){}",
            if spawned { "" } else { "; shared server: not judged" }
        ),
    }
}

/// The last quarter's median p99.9 against the second quarter's.
fn latency_check(rows: &[Row]) -> Check {
    let n = rows.len();
    let p999 = |range: std::ops::Range<usize>| {
        let mut values: Vec<f64> =
            rows[range].iter().filter(|row| row.events_per_s > 0).map(|row| row.p999_us).collect();
        median(&mut values)
    };
    let (Some(early), Some(late)) = (p999(n / 4..n / 2), p999(3 * n / 4..n)) else {
        return Check { name: "latency_trend", ok: false, detail: "too few seconds with replies".into() };
    };
    let bound = early * LATENCY_TREND_FACTOR + LATENCY_TREND_SLACK_US;
    Check {
        name: "latency_trend",
        ok: late <= bound,
        detail: format!(
            "median per-second p99.9: {early:.0} µs in the second quarter, {late:.0} µs in the last (bound \
             {bound:.0} µs = {LATENCY_TREND_FACTOR}x + {LATENCY_TREND_SLACK_US} µs)"
        ),
    }
}

/// Runs the soak and writes its outputs; an `Err` names what failed.
pub fn soak(settings: Settings, mut endpoint: Endpoint, options: SoakOptions) -> Result<()> {
    if endpoint.kind != TargetKind::Cairn {
        bail!("soak drives cairn only: it reads the server's STATS every second");
    }
    let seconds = settings.duration.as_secs();
    if seconds < Calendar::PERIOD_SECONDS {
        bail!("a soak needs --duration of at least {} s (one churn period)", Calendar::PERIOD_SECONDS);
    }
    if !(options.fraction > 0.0 && options.fraction <= 1.0) {
        bail!("--fraction must be in (0, 1], not {}", options.fraction);
    }
    for (name, rate) in [
        ("--reconnects-per-s", options.rates.reconnects_per_s),
        ("--subscribers-per-s", options.rates.subscribers_per_s),
    ] {
        if !(0.0..=100.0).contains(&rate) {
            bail!("{name} must be between 0 and 100, not {rate}");
        }
    }
    if endpoint.spawn {
        endpoint.cairn_args = [
            ("--subscriber-buffer-soft", SOAK_SUBSCRIBER_BUFFER_SOFT),
            ("--subscriber-buffer-max", SOAK_SUBSCRIBER_BUFFER_MAX),
        ]
        .into_iter()
        .flat_map(|(flag, bytes)| [flag.to_string(), bytes.to_string()])
        .collect();
    }
    let load_start = report::load_average();
    let world = World::new(&settings.scenario);
    let mut session = Session::open(&world, &endpoint, settings.threads)?;
    session.progress = settings.progress;
    session.idle = settings.idle;
    let pid = match (&session.server, options.pid) {
        (Some(server), _) => server.pid,
        (None, Some(pid)) => pid,
        (None, None) => bail!("give --pid PID of the server at --addr, so the soak can sample its RSS"),
    };
    let (rate, max_eps) = match options.rate {
        Some(rate) if rate > 0 => (rate, None),
        Some(_) => bail!("--rate must be above 0"),
        None => {
            let closed = Mode::Closed { pipeline: settings.pipeline };
            let max = session.phase(closed, PROBE, false, "max")?.throughput_eps();
            let rate = (max * options.fraction).max(1.0) as u64;
            println!(
                "maximum {max:.0} ev/s (closed loop, pipeline {}, {} s); soaking at {:.0}% of it: {rate} ev/s",
                settings.pipeline,
                PROBE.as_secs(),
                options.fraction * 100.0
            );
            (rate, Some(max))
        }
    };
    let mode = Mode::Open { rate };
    if !settings.warmup.is_zero() {
        session.phase(mode, settings.warmup, false, "warm-up")?;
    }
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..session.worker_count()).map(|_| mpsc::channel()).unzip();
    let plan = churn::Plan {
        addr: session.addr.clone(),
        hunt_base: session.cairn_hunt_base().expect("a cairn session"),
        hunts: world.scenario.hunts,
        slots: session.load_slots(),
        handovers: senders,
        rates: options.rates,
        seed: world.scenario.seed,
        tokens: session.tokens.clone(),
    };
    let (churn_sender, churn_receiver) = mpsc::channel();
    let churn_thread = std::thread::spawn(move || churn::run(plan, churn_receiver));
    let mut sampler = Sampler {
        stats: Blocking::connect(&session.addr, session.tokens.setup()).context("the STATS connection")?,
        pid,
        seconds,
        churn: churn_sender,
        rss_start_kib: 0,
        server: Vec::new(),
        harness: BTreeMap::new(),
        last: Counters::default(),
    };
    let duration = Duration::from_secs(seconds);
    let phase = session.phase_with(mode, duration, true, "soak", receivers, Some(&mut sampler));
    let Sampler { server, harness, rss_start_kib, churn: churn_sender, stats, .. } = sampler;
    drop(churn_sender);
    drop(stats);
    let churn_report = churn_thread.join().expect("the churn thread panicked");
    let result = phase?;
    let validation = session.validate()?;
    let rows = rows(&server, &harness, &churn_report);
    let tally = &result.tally;
    let spawned = session.server.is_some();
    let slow = SlowTotals::of(&churn_report, &rows, spawned);
    let totals = Totals {
        errors: tally.errors + tally.lost + churn_report.errors(),
        validation: validation.clone(),
        sent: tally.sent,
        scheduled: (rate as f64 * duration.as_secs_f64()) as u64,
        rate,
        rss_growth_max_mib: options.rss_growth_max_mib,
        spawned,
        churn_errors: churn_report.errors(),
        slow: slow.clone(),
    };
    let checks = verdict(&rows, &totals);
    let out = settings.out_dir(&format!("{}-soak", world.scenario.name));
    let mut failures = tally.failures.clone();
    failures.extend(churn_report.failures.iter().cloned());
    let document = serde_json::json!({
        "target": "cairn",
        "scenario": world.scenario.name,
        "duration_s": seconds,
        "rate_eps": rate,
        "rate_from": match max_eps {
            Some(max) => format!("{:.0}% of a {} s closed-loop maximum of {max:.0} ev/s", options.fraction * 100.0, PROBE.as_secs()),
            None => "--rate".to_string(),
        },
        "churn": {
            "period_s": Calendar::PERIOD_SECONDS,
            "churn_seconds_per_period": Calendar::CHURN_SECONDS,
            "reconnects_per_churn_s": options.rates.reconnects_per_s,
            "subscribers_per_churn_s": options.rates.subscribers_per_s,
            // Slow subscribers now stall (read nothing) until the settle second; the field
            // stays, as what they read while slow.
            "slow_subscriber_read_bytes_per_s": 0.0,
            "slow_subscriber_receive_buffer_bytes": SlowLink::RECEIVE_BUFFER_BYTES,
            "slow_subscriber_segment_bytes": SlowLink::SEGMENT_BYTES,
            "slow_subscriber_catch_up_ms": SlowLink::CATCH_UP.as_millis() as u64,
            "narrow_slow_subscriber_hunts": churn::NARROW_HUNTS,
        },
        "subscriber_limits": if spawned {
            serde_json::json!({ "soft_bytes": SOAK_SUBSCRIBER_BUFFER_SOFT, "max_bytes": SOAK_SUBSCRIBER_BUFFER_MAX })
        } else {
            serde_json::json!("the server's own (attached with --addr)")
        },
        "shards": session.shards,
        "connections": world.scenario.connections,
        "events_sent": tally.sent,
        "events_acked": tally.acked,
        "errors": totals.errors,
        "reconnects": tally.reconnects,
        "subscribers_opened": churn_report.seconds.iter().map(|s| s.subscribers_opened).sum::<u64>(),
        "pushes_to_churned_subscribers": churn_report.seconds.iter().map(|s| s.pushes).sum::<u64>(),
        "push_gaps_of_churned_subscribers": churn_report.seconds.iter().map(|s| s.push_gaps).sum::<u64>(),
        "slow_subscribers_dropped_by_server": slow.cut,
        "slow_subscribers": {
            "opened": slow.narrow + slow.wide,
            "narrow": slow.narrow,
            "wide": slow.wide,
            "pushes_read": slow.pushes,
            "gap_notices": slow.gap_notices,
            "sequence_jumps": slow.seq_jumps,
            "pushes_missed": slow.missed,
            "saw_gaps": slow.gapped,
            "cut_by_server": slow.cut,
            "goodbye_codes": slow.goodbyes.iter().map(|(code, count)| (code.to_string(), *count)).collect::<BTreeMap<String, u64>>(),
            "closed_without_goodbye": slow.closed_without_goodbye,
            "unaffected": slow.unaffected,
            "frames_after_goodbye": slow.frames_after_goodbye,
            "server_pushes_dropped": slow.server_pushes_dropped,
            "server_gaps_sent": slow.server_gaps_sent,
            "server_subscribers_cut": slow.server_cut,
        },
        "latency_us": Percentiles::of(&tally.latency),
        "service_latency_us": Percentiles::of(&tally.service),
        "server_cpu_us_per_event": result.server_cpu_us_per_event(),
        "rss_start_mib": rss_start_kib as f64 / KIB_PER_MIB,
        "machine": MACHINE,
        "load_average_start": load_start,
        "load_average_end": report::load_average(),
        "validation": validation,
        "failures": failures,
        "checks": checks,
        "seconds": rows,
    });
    write_outputs(&out, &document, &rows, &result.tally.latency)?;
    print_verdict(&document, &checks, &slow);
    println!("outputs in {}", out.display());
    session.close()?;
    let failed: Vec<String> =
        checks.iter().filter(|check| !check.ok).map(|check| format!("{}: {}", check.name, check.detail)).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("soak failed: {}", failed.join("; "))
    }
}

fn write_outputs(
    out: &Path,
    document: &serde_json::Value,
    rows: &[Row],
    latency: &hdrhistogram::Histogram<u64>,
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(out.join("soak.json"), serde_json::to_string_pretty(document)? + "\n")?;
    std::fs::write(out.join("soak.csv"), csv(rows))?;
    std::fs::write(out.join("latency.hgrm"), latency::hgrm(latency))?;
    let series = |value: fn(&Row) -> f64| rows.iter().map(value).collect::<Vec<f64>>();
    let panels = [
        Panel { label: "server RSS, MiB".into(), values: series(|row| row.rss_mib) },
        Panel { label: "server allocations per event".into(), values: series(|row| row.allocations_per_event) },
        Panel { label: "p99.9 latency from intended send time, ms".into(), values: series(|row| row.p999_us / 1e3) },
        Panel { label: "events per second (replies)".into(), values: series(|row| row.events_per_s as f64) },
        Panel {
            label: "connections churned per second (reconnects + subscribers opened)".into(),
            values: series(|row| (row.reconnects + row.subscribers_opened) as f64),
        },
        Panel { label: "machine load average (1 min), 2 cores".into(), values: series(|row| row.load_1m) },
    ];
    let shaded: Vec<bool> = rows.iter().map(|row| row.clean).collect();
    let title = format!(
        "soak: {} at {} ev/s for {} s, cairn --shards {}, 2-vCPU shared VM (load average {} at the end)",
        document["scenario"].as_str().unwrap_or("?"),
        document["rate_eps"],
        rows.len(),
        document["shards"],
        document["load_average_end"].as_str().unwrap_or("?")
    );
    let svg = plot::timeseries_svg(&title, &panels, &shaded, "clean seconds (only events): 0 allocations required");
    std::fs::write(out.join("soak.svg"), svg)?;
    Ok(())
}

/// `soak.csv`: a header, then one line per second.
fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "second,kind,events_per_s,server_events,allocations,allocations_per_event,rss_mib,p50_us,p99_us,p999_us,max_us,\
         errors,reconnects,subscribers_opened,subscribers_closed,server_accepted,server_closed,server_open,\
         server_subscriptions,pushes,push_gaps,clean,load_1m,slow_opened,slow_pushes,gap_notices,seq_jumps,\
         slow_gapped,slow_cut,server_pushes_dropped,server_gaps_sent,server_subscribers_cut\n",
    );
    for r in rows {
        let kind = match r.kind {
            SecondKind::Churn => "churn",
            SecondKind::Settle => "settle",
            SecondKind::Quiet => "quiet",
        };
        let _ = writeln!(
            out,
            "{},{kind},{},{},{},{:.6},{:.2},{:.1},{:.1},{:.1},{:.1},{},{},{},{},{},{},{},{},{},{},{},{:.2},{},{},{},{},{},{},{},{},{}",
            r.second,
            r.events_per_s,
            r.server_events,
            r.allocations,
            r.allocations_per_event,
            r.rss_mib,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            r.errors,
            r.reconnects,
            r.subscribers_opened,
            r.subscribers_closed,
            r.server_accepted,
            r.server_closed,
            r.server_open,
            r.server_subscriptions,
            r.pushes,
            r.push_gaps,
            r.clean,
            r.load_1m,
            r.slow_opened,
            r.slow_pushes,
            r.gap_notices,
            r.seq_jumps,
            r.slow_gapped,
            r.slow_cut,
            r.server_pushes_dropped,
            r.server_gaps_sent,
            r.server_subscribers_cut
        );
    }
    out
}

fn print_verdict(document: &serde_json::Value, checks: &[Check], slow: &SlowTotals) {
    let l = &document["latency_us"];
    println!(
        "soak of {} s at {} ev/s ({}); {MACHINE}; load average {} at the start, {} at the end",
        document["duration_s"],
        document["rate_eps"],
        document["rate_from"].as_str().unwrap_or(""),
        document["load_average_start"].as_str().unwrap_or("?"),
        document["load_average_end"].as_str().unwrap_or("?")
    );
    println!(
        "  sent {}  acked {}  errors {}  reconnects {}  subscribers {} (pushes {}, missed {}, slow cut by the server {})",
        document["events_sent"],
        document["events_acked"],
        document["errors"],
        document["reconnects"],
        document["subscribers_opened"],
        document["pushes_to_churned_subscribers"],
        document["push_gaps_of_churned_subscribers"],
        document["slow_subscribers_dropped_by_server"]
    );
    println!("  {}", slow.summary());
    println!(
        "  latency µs (whole window, from intended): p50 {}  p99 {}  p99.9 {}  max {}",
        l["p50"], l["p99"], l["p999"], l["max"]
    );
    for check in checks {
        println!("  {} {}: {}", if check.ok { "ok  " } else { "FAIL" }, check.name, check.detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(second: u64, rss_mib: f64, allocations: u64, p999_us: f64) -> Row {
        Row {
            second,
            kind: Calendar::kind(second),
            clean: false,
            events_per_s: 1_000,
            server_events: 1_000,
            allocations,
            allocations_per_event: allocations as f64 / 1_000.0,
            rss_mib,
            p50_us: 10.0,
            p99_us: 100.0,
            p999_us,
            max_us: p999_us * 2.0,
            errors: 0,
            reconnects: 0,
            subscribers_opened: 0,
            subscribers_closed: 0,
            server_accepted: if Calendar::kind(second) == SecondKind::Churn { 4 } else { 0 },
            server_closed: 0,
            server_open: 52,
            server_subscriptions: 0,
            pushes: 0,
            push_gaps: 0,
            load_1m: 1.0,
            slow_opened: 0,
            slow_pushes: 0,
            gap_notices: 0,
            seq_jumps: 0,
            slow_gapped: 0,
            slow_cut: 0,
            server_pushes_dropped: 0,
            server_gaps_sent: 0,
            server_subscribers_cut: 0,
        }
    }

    /// A steady run: flat RSS with noise, allocations only in churn seconds.
    fn steady(seconds: u64) -> Vec<Row> {
        let mut rows: Vec<Row> = (0..seconds)
            .map(|s| {
                let churning = Calendar::kind(s) == SecondKind::Churn;
                row(s, 100.0 + (s % 3) as f64, if churning { 8 } else { 0 }, 500.0 + (s % 4) as f64 * 100.0)
            })
            .collect();
        mark_clean(&mut rows);
        rows
    }

    fn totals() -> Totals {
        Totals {
            errors: 0,
            validation: "ok".into(),
            sent: 1_000,
            scheduled: 1_000,
            rate: 1_000,
            rss_growth_max_mib: 16.0,
            spawned: true,
            churn_errors: 0,
            slow: SlowTotals {
                judged: true,
                narrow: 6,
                wide: 6,
                cut: 5,
                goodbyes: BTreeMap::from([(11, 4)]),
                closed_without_goodbye: 1,
                gapped: 4,
                unaffected: 3,
                server_cut: 5,
                ..SlowTotals::default()
            },
        }
    }

    fn failed(rows: &[Row], totals: &Totals) -> Vec<&'static str> {
        verdict(rows, totals).into_iter().filter(|check| !check.ok).map(|check| check.name).collect()
    }

    #[test]
    fn a_steady_run_passes() {
        let checks = verdict(&steady(60), &totals());
        assert!(checks.iter().all(|check| check.ok), "{checks:?}");
        let allocations = checks.iter().find(|check| check.name == "allocations").unwrap();
        assert!(
            allocations.detail.starts_with(
                "0 allocations over 24 clean seconds holding 24000 events (12 of the 12 quiet seconds, 0 spilled into \
                 by churn; 12 others)"
            ),
            "{}",
            allocations.detail
        );
        assert!(
            allocations.detail.contains("(2.0 per connection; 0 of them slow subscribers the server cut)"),
            "{}",
            allocations.detail
        );
    }

    #[test]
    fn each_fault_fails_its_own_check() {
        let mut leaking = steady(60);
        leaking.iter_mut().for_each(|row| row.rss_mib += row.second as f64);
        assert_eq!(failed(&leaking, &totals()), ["rss_trend"]);

        let mut allocating = steady(60);
        allocating[34].allocations = 1;
        assert_eq!(allocating[34].kind, SecondKind::Quiet);
        assert_eq!(failed(&allocating, &totals()), ["allocations"]);

        let mut falling_behind = steady(60);
        falling_behind.iter_mut().for_each(|row| row.events_per_s = 950);
        assert_eq!(failed(&falling_behind, &totals()), ["backlog"]);
        let mut catching_up = steady(60);
        catching_up[40].events_per_s = 0;
        catching_up[41].events_per_s = 2_000;
        assert!(failed(&catching_up, &totals()).is_empty(), "a stall the server recovers from is no trend");

        let mut slowing = steady(60);
        slowing.iter_mut().for_each(|row| row.p999_us *= 1.0 + (row.second as f64 / 10.0).powi(2));
        assert_eq!(failed(&slowing, &totals()), ["latency_trend"]);

        let mut leaving_connections = steady(60);
        leaving_connections[30..].iter_mut().for_each(|row| row.server_open = 53);
        assert_eq!(failed(&leaving_connections, &totals()), ["connections"]);
        let mut one_pending = steady(60);
        one_pending[39].server_open = 53;
        assert!(failed(&one_pending, &totals()).is_empty(), "a stream not yet swapped in is no leak");
        let shared = Totals { spawned: false, ..totals() };
        assert!(failed(&leaving_connections, &shared).is_empty());

        let broken = Totals { errors: 3, validation: "treasure 4 of hunt 0: 3 claims".into(), sent: 900, ..totals() };
        assert_eq!(failed(&steady(60), &broken), ["errors", "validation", "schedule"]);

        let never_cut = SlowTotals { cut: 0, goodbyes: BTreeMap::new(), closed_without_goodbye: 0, ..totals().slow };
        assert_eq!(failed(&steady(60), &Totals { slow: never_cut.clone(), ..totals() }), ["slow_subscribers"]);
        let attached = SlowTotals { judged: false, ..never_cut.clone() };
        assert!(failed(&steady(60), &Totals { slow: attached, ..totals() }).is_empty(), "limits unknown: not judged");
        let none_opened = SlowTotals { narrow: 0, wide: 0, ..never_cut.clone() };
        assert!(failed(&steady(60), &Totals { slow: none_opened, ..totals() }).is_empty());
        let talked_after_goodbye = SlowTotals { frames_after_goodbye: 16, ..totals().slow };
        assert_eq!(failed(&steady(60), &Totals { slow: talked_after_goodbye, ..totals() }), ["slow_subscribers"]);
        let attached_talked = SlowTotals { judged: false, frames_after_goodbye: 1, ..never_cut };
        assert_eq!(failed(&steady(60), &Totals { slow: attached_talked, ..totals() }), ["slow_subscribers"]);
    }

    #[test]
    fn the_slow_subscribers_summary_names_what_the_server_did() {
        let checks = verdict(&steady(20), &totals());
        let slow = checks.iter().find(|check| check.name == "slow_subscribers").unwrap();
        assert!(slow.ok);
        assert!(
            slow.detail.starts_with(
                "12 slow subscribers (6 narrow, 6 wide): 5 cut by the server (GOODBYE read: 11 slow_consumer x4; \
                 closed without one: 1; frames read after a GOODBYE: 0), 4 saw gaps and stayed, 3 unaffected;"
            ),
            "{}",
            slow.detail
        );
        let errors = &checks[0];
        assert_eq!(errors.detail, "0 errors (0 on the load connections, 0 in the churn)");
    }

    #[test]
    fn churn_spilling_into_a_quiet_second_is_counted_not_judged() {
        let mut spilled = steady(60);
        // A subscriber the stalled churn thread opened late lands in quiet second 34.
        spilled[34].server_accepted = 1;
        spilled[34].server_subscriptions = 10;
        spilled[34].allocations = 20;
        spilled[34].server_open = 53;
        mark_clean(&mut spilled);
        assert!(!spilled[34].clean && !spilled[35].clean, "dirty, and so is the second after it");
        let checks = verdict(&spilled, &totals());
        assert!(checks.iter().all(|check| check.ok), "{checks:?}");
        let allocations = checks.iter().find(|check| check.name == "allocations").unwrap();
        assert!(allocations.detail.contains("(11 of the 12 quiet seconds, 1 spilled into by churn;"));
    }

    #[test]
    fn a_run_without_clean_seconds_cannot_pass_the_allocation_check() {
        let mut churning = steady(20);
        churning.iter_mut().for_each(|row| row.server_accepted = 1);
        mark_clean(&mut churning);
        assert_eq!(failed(&churning, &totals()), ["allocations", "connections"]);
    }

    #[test]
    fn the_slope_is_least_squares() {
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), Some(2.0));
        assert_eq!(slope(&[(0.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
    }
}
