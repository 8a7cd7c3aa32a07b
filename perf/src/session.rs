//! A session: one target with the scenario set up on it, its connections split over the
//! worker threads, and the phases run on it (warm-up, closed-loop maximum, open-loop
//! rates), then validation and clean-up. `run`, `sweep` and `compare` are sequences of
//! sessions and phases.
//!
//! A phase starts every worker on a scoped thread, collects their interval reports on
//! the calling thread (the progress bar and the interval log), and sums their tallies.
//! Server CPU time is read from `/proc` around each phase; Cairn's STATS is read around
//! each recorded phase (each STATS read starts a new allocation mark on the server).
//!
//! [`Session::phase_with`] adds what `cairn-perf soak` needs: streams handed to the
//! workers to replace their connections, and [`PhaseHooks`] called on the collecting
//! thread at every second boundary and for every complete interval.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cairn_target::Tokens;
use crate::driver::{self, Conn, Handover, IntervalReport, Mode, Role, Tally, INTERVAL};
use crate::latency::{self, IntervalLog, Percentiles};
use crate::ledger::{self, Ledger, Totals};
use crate::redis_target::RedisKeys;
use crate::spawn::{self, Server};
use crate::target::{Codec, TargetKind};
use crate::workload::{Players, World};
use crate::{cairn_target, redis_target};

/// The blocking side-connection of a session.
enum Control {
    Cairn(cairn_target::Blocking),
    Redis(redis_target::Blocking),
    Null,
}

/// One target, set up with one scenario.
pub struct Session {
    /// The scenario's layout.
    pub world: World,
    /// The target.
    pub kind: TargetKind,
    codec: Codec,
    workers: Vec<Vec<Conn>>,
    control: Control,
    clock: Instant,
    /// The server, when this session started it.
    pub server: Option<Server>,
    /// Where the target listens.
    pub addr: String,
    /// Cairn's shard count (from HELLO), 0 for other targets.
    pub shards: u16,
    /// Show a progress bar.
    pub progress: bool,
    /// What an idle open loop does.
    pub idle: driver::Idle,
    /// What Cairn's connections present in HELLO.
    pub tokens: Tokens,
}

/// What one phase measured.
pub struct PhaseResult {
    /// Pacing.
    pub mode: Mode,
    /// The sending window.
    pub duration: Duration,
    /// Summed counts and histograms.
    pub tally: Tally,
    /// Intervals: (index, latency histogram, replies).
    pub intervals: Vec<(u64, Histogram<u64>, u64)>,
    /// Server CPU time over the phase, if known.
    pub server_cpu: Option<Duration>,
    /// This harness's CPU time over the phase.
    pub harness_cpu: Duration,
    /// Cairn's allocations per event over the phase, from STATS.
    pub allocations_per_event: Option<f64>,
    /// Cairn's request frames per read syscall over the phase, from STATS.
    pub events_per_read: Option<f64>,
}

/// What a phase calls on its collecting thread (see [`Session::phase_with`]).
pub trait PhaseHooks {
    /// The phase's clock passed second `index` of the sending window (0 at its start,
    /// then once per [`INTERVAL`] up to and including its end).
    fn boundary(&mut self, index: u64) -> Result<()>;
    /// Every worker reported interval `report.index`; `report` holds their sum.
    fn interval(&mut self, report: &IntervalReport);
}

impl PhaseResult {
    /// Replies per second within the sending window.
    pub fn throughput_eps(&self) -> f64 {
        self.tally.acked_in_window as f64 / self.duration.as_secs_f64()
    }

    /// Requests per second offered (the schedule's rate, or what the closed loop sent).
    pub fn offered_eps(&self) -> f64 {
        match self.mode {
            Mode::Open { rate } => rate as f64,
            Mode::Closed { .. } => self.tally.sent as f64 / self.duration.as_secs_f64(),
        }
    }

    /// Server CPU microseconds per acknowledged event.
    pub fn server_cpu_us_per_event(&self) -> Option<f64> {
        self.server_cpu.map(|cpu| cpu.as_secs_f64() * 1e6 / self.tally.acked.max(1) as f64)
    }

    /// Latency percentiles from intended send times.
    pub fn latency(&self) -> Percentiles {
        Percentiles::of(&self.tally.latency)
    }

    /// The interval log of this phase, tagged `tag`.
    pub fn interval_log(&self, tag: &str) -> Result<IntervalLog> {
        let mut log = IntervalLog::new();
        for (index, histogram, _) in &self.intervals {
            log.append(histogram, INTERVAL * *index as u32, INTERVAL, tag)?;
        }
        Ok(log)
    }
}

/// How to reach or start the target.
pub struct Endpoint {
    /// What it is.
    pub kind: TargetKind,
    /// Connect here (ignored with `spawn`).
    pub addr: Option<String>,
    /// Start the server for this session.
    pub spawn: bool,
    /// Cairn shards when spawning.
    pub shards: u32,
    /// What Cairn's connections present in HELLO, and what a spawned Cairn requires.
    pub tokens: Tokens,
    /// More `cairn serve` flags when spawning Cairn (the soak's subscriber limits).
    pub cairn_args: Vec<String>,
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Session {
    /// Starts or reaches the target, sets the scenario up on it, and opens the
    /// connections (load connections first, then subscribers) over `threads` workers.
    pub fn open(world: &World, endpoint: &Endpoint, threads: usize) -> Result<Session> {
        let server = if endpoint.spawn {
            Some(Server::spawn(endpoint.kind, endpoint.shards, &endpoint.tokens, &endpoint.cairn_args)?)
        } else {
            None
        };
        let addr: String = match (&server, &endpoint.addr) {
            (Some(server), _) => server.addr.clone(),
            (None, Some(addr)) => addr.clone(),
            (None, None) => anyhow::bail!("give --addr ADDR of a running {} or --spawn", endpoint.kind.name()),
        };
        let tokens = &endpoint.tokens;
        let scenario = &world.scenario;
        let connections = scenario.connections;
        if endpoint.kind == TargetKind::Cairn {
            // The load token is tried before the set-up creates anything, so a refused one
            // leaves no hunt behind on a shared server. (Opening the load connections
            // themselves first would leave them silent through a long set-up, which a
            // server with an idle timeout closes.)
            drop(cairn_target::Blocking::connect(&addr, tokens.load()).context("a load connection")?);
        }
        let players: Vec<Players> = (0..connections).map(|c| Players::new(world, c, connections)).collect();
        let refs: Vec<&Players> = players.iter().collect();
        // A fresh server starts at hunt 1; a shared one gets a base unlikely to collide.
        let hunt_base = if endpoint.spawn { 1 } else { (unix_seconds() % 40_000) as u32 * 100_000 + 1 };
        let prefix = format!("cp{}:", if endpoint.spawn { 0 } else { unix_seconds() });
        let started = Instant::now();
        let (mut control, codec, shards) = match endpoint.kind {
            TargetKind::Cairn => {
                let mut blocking =
                    cairn_target::Blocking::connect(&addr, tokens.setup()).context("the set-up connection")?;
                cairn_target::setup(&mut blocking, world, hunt_base, &refs).context("set-up on cairn")?;
                let shards = blocking.shards;
                (Control::Cairn(blocking), Codec::Cairn { hunt_base }, shards)
            }
            TargetKind::Redis => {
                let mut blocking = redis_target::Blocking::connect(&addr)?;
                let keys = redis_target::setup(&mut blocking, world, &prefix, &refs).context("set-up on redis")?;
                (Control::Redis(blocking), Codec::Redis(keys), 0)
            }
            TargetKind::Null => (Control::Null, Codec::Null, 0),
        };
        eprintln!(
            "{}: set up {} hunts, {} treasures, {} players in {:.1} s",
            endpoint.kind.name(),
            scenario.hunts,
            world.treasures.len(),
            scenario.players_total(),
            started.elapsed().as_secs_f64()
        );
        let threads = threads.max(1);
        let mut workers: Vec<Vec<Conn>> = (0..threads).map(|_| Vec::new()).collect();
        for (index, owned) in players.into_iter().enumerate() {
            let stream = connect(endpoint.kind, &addr, tokens).with_context(|| format!("load connection {index}"))?;
            let ledger = Ledger::new(world, owned.players.len());
            let role = Role::Load { index: index as u32, players: owned, ledger };
            workers[index % threads].push(Conn::new(stream, role)?);
        }
        for subscriber in 0..scenario.subscribers {
            let hunts: Vec<u32> = (0..scenario.hunts.min(cairn::constants::SUBSCRIPTIONS_PER_CONNECTION_MAX))
                .map(|k| (subscriber + k) % scenario.hunts)
                .collect();
            let stream =
                subscribe(&codec, &addr, tokens, &hunts).with_context(|| format!("subscriber {subscriber}"))?;
            let role = Role::Subscriber { last_seq: Default::default() };
            workers[(connections + subscriber) as usize % threads].push(Conn::new(stream, role)?);
        }
        if let Control::Cairn(blocking) = &mut control {
            blocking.stats()?;
        }
        Ok(Session {
            world: world.clone(),
            kind: endpoint.kind,
            codec,
            workers,
            control,
            clock: Instant::now(),
            server,
            addr,
            shards,
            progress: true,
            idle: driver::Idle::Sleep,
            tokens: tokens.clone(),
        })
    }

    /// Runs one phase of `duration`; `record` false for warm-ups.
    pub fn phase(&mut self, mode: Mode, duration: Duration, record: bool, label: &str) -> Result<PhaseResult> {
        self.phase_with(mode, duration, record, label, Vec::new(), None)
    }

    /// Where each load connection lives: (worker, position among its connections), by
    /// load connection index.
    pub fn load_slots(&self) -> Vec<(usize, usize)> {
        let mut slots: Vec<(u32, usize, usize)> = Vec::new();
        for (worker, conns) in self.workers.iter().enumerate() {
            for (position, conn) in conns.iter().enumerate() {
                if let Role::Load { index, .. } = conn.role {
                    slots.push((index, worker, position));
                }
            }
        }
        slots.sort_unstable();
        slots.into_iter().map(|(_, worker, position)| (worker, position)).collect()
    }

    /// The id Cairn knows the scenario's hunt 0 by; `None` for other targets.
    pub fn cairn_hunt_base(&self) -> Option<u32> {
        match self.codec {
            Codec::Cairn { hunt_base } => Some(hunt_base),
            _ => None,
        }
    }

    /// Harness worker threads.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// As [`Session::phase`], with `handovers[w]` bringing replacement streams to worker
    /// `w` (empty: none) and `hooks` called at every second boundary and for every
    /// complete interval. A hook's error ends the phase's collection early (the workers
    /// still finish their window) and is returned.
    pub fn phase_with(
        &mut self,
        mode: Mode,
        duration: Duration,
        record: bool,
        label: &str,
        handovers: Vec<mpsc::Receiver<Handover>>,
        mut hooks: Option<&mut dyn PhaseHooks>,
    ) -> Result<PhaseResult> {
        let server_cpu_before = self.server.as_ref().and_then(Server::cpu_time);
        let harness_cpu_before = spawn::own_cpu_time();
        let stats_before = self.stats()?;
        let start_ns = self.clock.elapsed().as_nanos() as u64 + 2_000_000;
        let phase = driver::Phase {
            world: &self.world,
            codec: &self.codec,
            mode,
            clock: self.clock,
            start_ns,
            end_ns: start_ns + duration.as_nanos() as u64,
            load_connections: self.world.scenario.connections,
            record,
            idle: self.idle,
        };
        let bar = self.progress_bar(duration, label);
        let workers = self.workers.len();
        let (sender, receiver) = mpsc::channel();
        let mut merged: BTreeMap<u64, (IntervalReport, usize)> = BTreeMap::new();
        let interval_ns = INTERVAL.as_nanos() as u64;
        let boundaries = duration.as_nanos() as u64 / interval_ns;
        let mut next_boundary = 0u64;
        let mut hook_error: Option<anyhow::Error> = None;
        let mut handovers: Vec<Option<mpsc::Receiver<Handover>>> = handovers.into_iter().map(Some).collect();
        handovers.resize_with(workers, || None);
        let clock = self.clock;
        let results: Vec<Result<Tally>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .workers
                .iter_mut()
                .zip(handovers)
                .map(|(conns, handover)| {
                    let sender = sender.clone();
                    let phase = &phase;
                    scope.spawn(move || driver::work(phase, conns, &sender, handover.as_ref()))
                })
                .collect();
            drop(sender);
            let mut done = false;
            while !done {
                // With hooks, wake at each second boundary; otherwise for the bar only.
                let now = clock.elapsed().as_nanos() as u64;
                let timeout = match (&hooks, next_boundary <= boundaries) {
                    (Some(_), true) => {
                        (start_ns + next_boundary * interval_ns).saturating_sub(now).clamp(1_000_000, 200_000_000)
                    }
                    _ => 200_000_000,
                };
                match receiver.recv_timeout(Duration::from_nanos(timeout)) {
                    Ok(report) => {
                        let entry = merged.entry(report.index).or_insert_with(|| {
                            let empty = IntervalReport {
                                index: report.index,
                                latency: latency::histogram(),
                                acked: 0,
                                errors: 0,
                                reconnects: 0,
                            };
                            (empty, 0)
                        });
                        entry.0.latency.add(&report.latency).expect("same bounds");
                        entry.0.acked += report.acked;
                        entry.0.errors += report.errors;
                        entry.0.reconnects += report.reconnects;
                        entry.1 += 1;
                        if entry.1 == workers {
                            let p99 = entry.0.latency.value_at_quantile(0.99) as f64 / 1e3;
                            bar.set_message(format!(
                                "{:>10.0} events/s  p99 {p99:>9.1} µs",
                                entry.0.acked as f64 / INTERVAL.as_secs_f64()
                            ));
                            if let Some(hooks) = hooks.as_deref_mut() {
                                hooks.interval(&entry.0);
                            }
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    // Every worker finished; the last boundaries still get their call.
                    Err(mpsc::RecvTimeoutError::Disconnected) => done = true,
                }
                let now = clock.elapsed().as_nanos() as u64;
                while hook_error.is_none()
                    && next_boundary <= boundaries
                    && now >= start_ns + next_boundary * interval_ns
                {
                    if let Some(hooks) = hooks.as_deref_mut() {
                        if let Err(error) = hooks.boundary(next_boundary) {
                            hook_error = Some(error);
                        }
                    }
                    next_boundary += 1;
                }
                bar.set_position(now.saturating_sub(start_ns) / 1_000_000);
            }
            handles.into_iter().map(|handle| handle.join().expect("a worker panicked")).collect()
        });
        bar.finish_and_clear();
        if let Some(error) = hook_error {
            return Err(error);
        }
        let mut tally = Tally::new();
        for result in results {
            tally.add(&result?);
        }
        let stats_after = self.stats()?;
        let server_cpu = match (server_cpu_before, self.server.as_ref().and_then(Server::cpu_time)) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        let (allocations_per_event, events_per_read) = stats_delta(stats_before.as_ref(), stats_after.as_ref());
        Ok(PhaseResult {
            mode,
            duration,
            tally,
            intervals: merged.into_iter().map(|(index, (report, _))| (index, report.latency, report.acked)).collect(),
            server_cpu,
            harness_cpu: spawn::own_cpu_time().saturating_sub(harness_cpu_before),
            allocations_per_event,
            events_per_read,
        })
    }

    fn progress_bar(&self, duration: Duration, label: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(duration.as_millis() as u64);
        let style = ProgressStyle::with_template("{prefix:>24} [{bar:30}] {elapsed:>4} {msg}")
            .expect("a valid template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{} {label}", self.kind.name()));
        bar
    }

    fn stats(&mut self) -> Result<Option<serde_json::Value>> {
        match &mut self.control {
            Control::Cairn(blocking) => Ok(Some(blocking.stats()?)),
            _ => Ok(None),
        }
    }

    /// Checks the server's own answers against everything acknowledged so far.
    pub fn validate(&mut self) -> Result<String> {
        let mut ledgers: Vec<(u32, &Ledger)> = self
            .workers
            .iter()
            .flatten()
            .filter_map(|conn| match &conn.role {
                Role::Load { index, ledger, .. } => Some((*index, ledger)),
                Role::Subscriber { .. } => None,
            })
            .collect();
        ledgers.sort_by_key(|(index, _)| *index);
        let ledgers: Vec<&Ledger> = ledgers.into_iter().map(|(_, ledger)| ledger).collect();
        let totals = Totals::sum(&self.world, &ledgers);
        let view = match (&mut self.control, &self.codec) {
            (Control::Cairn(blocking), Codec::Cairn { hunt_base }) => {
                cairn_target::server_view(blocking, &self.world, *hunt_base)?
            }
            (Control::Redis(blocking), Codec::Redis(RedisKeys { prefix, .. })) => {
                redis_target::server_view(blocking, &self.world, prefix)?
            }
            _ => return Ok("not applicable: the null server keeps no state".to_string()),
        };
        Ok(ledger::validate(&self.world, &totals, &view))
    }

    /// Removes the run's state from a server this session did not start, then stops a
    /// server it did.
    pub fn close(mut self) -> Result<()> {
        if self.server.is_none() {
            match (&mut self.control, &self.codec) {
                (Control::Cairn(blocking), Codec::Cairn { hunt_base }) => {
                    cairn_target::teardown(blocking, &self.world, *hunt_base)?
                }
                (Control::Redis(blocking), Codec::Redis(keys)) => {
                    redis_target::teardown(blocking, &self.world, &keys.prefix)?
                }
                _ => {}
            }
        }
        drop(self.workers);
        drop(self.server);
        Ok(())
    }
}

/// A load connection's stream, handshaken (Cairn: presenting the load token).
fn connect(kind: TargetKind, addr: &str, tokens: &Tokens) -> Result<std::net::TcpStream> {
    Ok(match kind {
        TargetKind::Cairn => cairn_target::Blocking::connect(addr, tokens.load())?.into_stream(),
        TargetKind::Redis => redis_target::Blocking::connect(addr)?.into_stream(),
        TargetKind::Null => {
            let stream = std::net::TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
            stream.set_nodelay(true)?;
            stream
        }
    })
}

/// A subscriber connection's stream, subscribed to `hunts`.
fn subscribe(codec: &Codec, addr: &str, tokens: &Tokens, hunts: &[u32]) -> Result<std::net::TcpStream> {
    Ok(match codec {
        Codec::Cairn { hunt_base } => {
            let mut blocking = cairn_target::Blocking::connect(addr, tokens.load())?;
            cairn_target::subscribe(&mut blocking, *hunt_base, hunts)?;
            blocking.into_stream()
        }
        Codec::Redis(keys) => {
            let mut blocking = redis_target::Blocking::connect(addr)?;
            redis_target::subscribe(&mut blocking, keys, hunts)?;
            blocking.into_stream()
        }
        Codec::Null => connect(TargetKind::Null, addr, tokens)?,
    })
}

/// Allocations per event since the mark the first document set, and request frames per
/// read syscall between the two documents.
fn stats_delta(before: Option<&serde_json::Value>, after: Option<&serde_json::Value>) -> (Option<f64>, Option<f64>) {
    let (Some(before), Some(after)) = (before, after) else { return (None, None) };
    let allocations = after.pointer("/allocations/per_event_since_mark").and_then(|v| v.as_f64());
    let number = |document: &serde_json::Value, path: &str| document.pointer(path).and_then(|v| v.as_f64());
    let per_read = match (
        number(before, "/reads/frames"),
        number(after, "/reads/frames"),
        number(before, "/reads/syscalls"),
        number(after, "/reads/syscalls"),
    ) {
        (Some(f0), Some(f1), Some(s0), Some(s1)) if s1 > s0 => Some((f1 - f0) / (s1 - s0)),
        _ => None,
    };
    (allocations, per_read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_deltas_use_the_phase_only() {
        let before = serde_json::json!({"reads": {"frames": 100.0, "syscalls": 10.0}});
        let after = serde_json::json!({
            "reads": {"frames": 1100.0, "syscalls": 110.0},
            "allocations": {"per_event_since_mark": 0.0}
        });
        assert_eq!(stats_delta(Some(&before), Some(&after)), (Some(0.0), Some(10.0)));
        assert_eq!(stats_delta(None, Some(&after)), (None, None));
    }
}
