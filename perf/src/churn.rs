//! Connection and subscriber churn for `cairn-perf soak`: a thread of its own that, during
//! the churn seconds of each period (see [`Calendar`]), reconnects load connections and
//! opens and closes subscribers.
//!
//! A reconnection is opened here, politely (TCP connect, then HELLO, the same handshake as
//! every harness connection), and handed to the worker that owns the load connection
//! ([`Handover`]); the worker closes the old socket once its last replies are in and
//! carries on with the same players (see `driver.rs`). Subscribers live here entirely:
//! each connects, says HELLO, subscribes to the discoveries of some hunts, reads its
//! pushes (checking their sequence numbers), says PING every second, and leaves after a
//! short life. Every third one is slow: it subscribes to every hunt and reads only
//! [`SLOW_READ_BYTES`] every [`SLOW_READ_PERIOD`], so the server has to buffer for it
//! (and may drop pushes to it, with a GAP notice, or say GOODBYE: its documented policy
//! for slow readers, counted here, not failures).
//!
//! Everything this thread opens is closed before the quiet seconds of the period, so the
//! soak can check that the server allocates nothing while only events flow.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::Result;

use cairn::rng::Rng;

use crate::cairn_target::{self, Blocking, Credential, Tokens};
use crate::driver::{Handover, KEEPALIVE_INTERVAL};
use crate::target::Ack;

/// How often the thread looks at its subscribers' sockets when nothing else is due.
const TICK: Duration = Duration::from_millis(5);
/// Bytes a slow subscriber reads per [`SLOW_READ_PERIOD`] (40 KiB/s).
pub const SLOW_READ_BYTES: usize = 4 * 1024;
/// How often a slow subscriber reads.
pub const SLOW_READ_PERIOD: Duration = Duration::from_millis(100);
/// Bytes a fast subscriber reads per tick at most, so one busy subscriber cannot keep the
/// thread from its schedule.
const FAST_READ_BYTES_MAX: usize = 1 << 20;
/// Hunts a fast subscriber follows.
const FAST_HUNTS: u32 = 10;
/// Shortest and longest life of a churned subscriber.
const SUBSCRIBER_LIFE_MS: [i64; 2] = [500, 2_000];
/// Every `SLOW_EVERY`-th subscriber is slow.
const SLOW_EVERY: u64 = 3;
/// Failure messages kept verbatim.
const FAILURES_KEPT_MAX: usize = 5;

/// Which seconds of the soak churn and which are quiet. Seconds are counted from the
/// start of the measured window; each period of [`Calendar::PERIOD_SECONDS`] seconds
/// churns in its first [`Calendar::CHURN_SECONDS`], then lets one second settle (closes
/// land, the server's per-shard stats snapshots, at most 100 ms old, catch up), then has
/// quiet seconds in which only events flow.
pub struct Calendar;

impl Calendar {
    /// Length of a churn period, seconds.
    pub const PERIOD_SECONDS: u64 = 5;
    /// Churning seconds at the start of each period.
    pub const CHURN_SECONDS: u64 = 3;
    /// Seconds after the churn before the quiet, checked ones.
    pub const SETTLE_SECONDS: u64 = 1;

    /// What second `second` of the soak is.
    pub fn kind(second: u64) -> SecondKind {
        let within = second % Self::PERIOD_SECONDS;
        if within < Self::CHURN_SECONDS {
            SecondKind::Churn
        } else if within < Self::CHURN_SECONDS + Self::SETTLE_SECONDS {
            SecondKind::Settle
        } else {
            SecondKind::Quiet
        }
    }
}

const _: () = assert!(Calendar::CHURN_SECONDS + Calendar::SETTLE_SECONDS < Calendar::PERIOD_SECONDS);

/// The part a second plays in the churn calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecondKind {
    /// Connections and subscribers come and go.
    Churn,
    /// Nothing new is opened; the last closes land.
    Settle,
    /// Only events: the server must allocate nothing.
    Quiet,
}

/// How much churn to make.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    /// Load connections reconnected per churn second.
    pub reconnects_per_s: f64,
    /// Subscribers opened per churn second.
    pub subscribers_per_s: f64,
}

/// What the thread did in one second of the soak.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ChurnSecond {
    /// Fresh streams handed to workers.
    pub reconnects_handed: u64,
    /// Subscribers opened (connected, greeted, subscribed).
    pub subscribers_opened: u64,
    /// Subscribers this thread closed.
    pub subscribers_closed: u64,
    /// Pushes its subscribers read.
    pub pushes: u64,
    /// Pushes they know they missed (sequence gaps and GAP notices), slow ones mostly.
    pub push_gaps: u64,
    /// Slow subscribers the server said GOODBYE to or closed.
    pub slow_dropped: u64,
    /// Failures: a connection or subscription refused, a fast subscriber dropped, a
    /// frame that does not parse.
    pub errors: u64,
}

/// What the thread hands back when it stops.
#[derive(Debug, Default)]
pub struct ChurnReport {
    /// Per second of the soak.
    pub seconds: Vec<ChurnSecond>,
    /// The first few failure messages.
    pub failures: Vec<String>,
}

impl ChurnReport {
    fn at(&mut self, second: u64) -> &mut ChurnSecond {
        let index = second as usize;
        if self.seconds.len() <= index {
            self.seconds.resize(index + 1, ChurnSecond::default());
        }
        &mut self.seconds[index]
    }

    fn fail(&mut self, second: u64, message: String) {
        self.at(second).errors += 1;
        if self.failures.len() < FAILURES_KEPT_MAX {
            self.failures.push(message);
        }
    }

    /// Failures in all.
    pub fn errors(&self) -> u64 {
        self.seconds.iter().map(|second| second.errors).sum()
    }
}

/// What the churn thread needs to know.
pub struct Plan {
    /// The server.
    pub addr: String,
    /// Cairn's id of the scenario's hunt 0.
    pub hunt_base: u32,
    /// Hunts in the scenario.
    pub hunts: u32,
    /// Load connection `i` lives at `slots[i]` = (worker, position).
    pub slots: Vec<(usize, usize)>,
    /// One sender per worker.
    pub handovers: Vec<Sender<Handover>>,
    /// How much churn.
    pub rates: Rates,
    /// Seed of the choice of hunts and lives.
    pub seed: u64,
    /// What the reconnections and subscribers present in HELLO (the load token).
    pub tokens: Tokens,
}

/// One churned subscriber.
struct Subscriber {
    stream: TcpStream,
    input: Vec<u8>,
    slow: bool,
    leave_at: Instant,
    next_read: Instant,
    next_ping: Instant,
    next_id: u32,
    last_seq: HashMap<u32, u64>,
    closed: bool,
}

/// Runs the churn until `seconds` disconnects: each message says a second of the soak
/// began. Returns what happened, per second.
pub fn run(plan: Plan, seconds: Receiver<u64>) -> ChurnReport {
    let mut churn = Churn {
        rng: Rng::new(plan.seed ^ 0xC4_u64),
        plan,
        report: ChurnReport::default(),
        subscribers: Vec::new(),
        second: 0,
        next_reconnect: None,
        next_subscriber: None,
        reconnected: 0,
        opened: 0,
    };
    loop {
        match seconds.recv_timeout(TICK) {
            Ok(second) => churn.begin(second),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        churn.due(Instant::now());
        churn.service(Instant::now());
    }
    churn.close_all();
    churn.report
}

struct Churn {
    plan: Plan,
    rng: Rng,
    report: ChurnReport,
    subscribers: Vec<Subscriber>,
    second: u64,
    next_reconnect: Option<Instant>,
    next_subscriber: Option<Instant>,
    reconnected: u64,
    opened: u64,
}

impl Churn {
    fn begin(&mut self, second: u64) {
        self.second = second;
        let now = Instant::now();
        let spacing = |rate: f64| (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        if Calendar::kind(second) == SecondKind::Churn {
            // Half a spacing in, so churn is spread through the seconds, not at their edges.
            if let (None, Some(step)) = (self.next_reconnect, spacing(self.plan.rates.reconnects_per_s)) {
                self.next_reconnect = Some(now + step / 2);
            }
            if let (None, Some(step)) = (self.next_subscriber, spacing(self.plan.rates.subscribers_per_s)) {
                self.next_subscriber = Some(now + step / 2);
            }
        } else {
            self.next_reconnect = None;
            self.next_subscriber = None;
            self.close_all();
        }
    }

    fn due(&mut self, now: Instant) {
        if let Some(at) = self.next_reconnect.filter(|at| *at <= now) {
            let step = Duration::from_secs_f64(1.0 / self.plan.rates.reconnects_per_s);
            self.next_reconnect = Some(at + step);
            self.reconnect();
        }
        if let Some(at) = self.next_subscriber.filter(|at| *at <= now) {
            let step = Duration::from_secs_f64(1.0 / self.plan.rates.subscribers_per_s);
            self.next_subscriber = Some(at + step);
            self.open_subscriber(now);
        }
    }

    /// Opens a fresh stream for the next load connection in turn and hands it over.
    fn reconnect(&mut self) {
        if self.plan.slots.is_empty() {
            return;
        }
        let load = (self.reconnected % self.plan.slots.len() as u64) as usize;
        self.reconnected += 1;
        let (worker, position) = self.plan.slots[load];
        match Blocking::connect(&self.plan.addr, self.plan.tokens.load()) {
            Ok(blocking) => {
                let handover = Handover { conn: position, stream: blocking.into_stream() };
                if self.plan.handovers[worker].send(handover).is_ok() {
                    self.report.at(self.second).reconnects_handed += 1;
                }
            }
            Err(error) => self.report.fail(self.second, format!("reconnecting load connection {load}: {error:#}")),
        }
    }

    fn open_subscriber(&mut self, now: Instant) {
        self.opened += 1;
        let slow = self.opened % SLOW_EVERY == 0;
        let hunts: Vec<u32> = if slow {
            (0..self.plan.hunts.min(cairn::constants::SUBSCRIPTIONS_PER_CONNECTION_MAX)).collect()
        } else {
            let first = self.rng.below(self.plan.hunts as u64) as u32;
            (0..FAST_HUNTS.min(self.plan.hunts)).map(|k| (first + k) % self.plan.hunts).collect()
        };
        let life = Duration::from_millis(self.rng.between(SUBSCRIBER_LIFE_MS[0], SUBSCRIBER_LIFE_MS[1]) as u64);
        match open(&self.plan.addr, self.plan.tokens.load(), self.plan.hunt_base, &hunts) {
            Ok((stream, input)) => {
                self.report.at(self.second).subscribers_opened += 1;
                self.subscribers.push(Subscriber {
                    stream,
                    input,
                    slow,
                    leave_at: now + life,
                    next_read: now,
                    next_ping: now + KEEPALIVE_INTERVAL,
                    // Any non-zero id will do for PINGs (their PONGs are only
                    // skipped); far above the set-up's ids so a dump reads clearly.
                    next_id: 1_000_000,
                    last_seq: HashMap::new(),
                    closed: false,
                });
            }
            Err(error) => self.report.fail(self.second, format!("opening a subscriber: {error:#}")),
        }
    }

    /// Reads, pings and retires subscribers.
    fn service(&mut self, now: Instant) {
        let second = self.second;
        for subscriber in &mut self.subscribers {
            if let Err(message) = subscriber.service(now, self.report.at(second)) {
                subscriber.closed = true;
                if subscriber.slow {
                    self.report.at(second).slow_dropped += 1;
                } else {
                    self.report.fail(second, message);
                }
            }
        }
        let before = self.subscribers.len();
        self.subscribers.retain(|subscriber| !subscriber.closed && subscriber.leave_at > now);
        self.report.at(second).subscribers_closed += (before - self.subscribers.len()) as u64;
    }

    fn close_all(&mut self) {
        let closed = self.subscribers.len() as u64;
        self.subscribers.clear();
        self.report.at(self.second).subscribers_closed += closed;
    }
}

/// Connects, says HELLO and subscribes to the discoveries of `hunts`; returns the stream
/// (non-blocking) and any bytes already read behind the last SUBSCRIBE reply.
fn open(addr: &str, credential: Credential<'_>, hunt_base: u32, hunts: &[u32]) -> Result<(TcpStream, Vec<u8>)> {
    let mut blocking = Blocking::connect(addr, credential)?;
    cairn_target::subscribe(&mut blocking, hunt_base, hunts)?;
    let (stream, input) = blocking.into_parts();
    stream.set_nonblocking(true)?;
    Ok((stream, input))
}

impl Subscriber {
    /// One look at the socket. `Err` means the connection ended, with why.
    fn service(&mut self, now: Instant, counts: &mut ChurnSecond) -> std::result::Result<(), String> {
        if now >= self.next_ping {
            self.next_ping = now + KEEPALIVE_INTERVAL;
            let mut frame = Vec::with_capacity(12);
            cairn_target::encode_ping(self.next_id, &mut frame);
            self.next_id += 1;
            match self.stream.write(&frame) {
                // A 12-byte write to a socket we otherwise never write to goes whole;
                // a full send buffer would mean the server stopped reading: skip a ping.
                Ok(_) => {}
                Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(error) => return Err(format!("ping failed: {error}")),
            }
        }
        let budget = if self.slow {
            if now < self.next_read {
                return self.parse(counts);
            }
            self.next_read = now + SLOW_READ_PERIOD;
            SLOW_READ_BYTES
        } else {
            FAST_READ_BYTES_MAX
        };
        let mut chunk = [0u8; 16 * 1024];
        let mut read_total = 0;
        while read_total < budget {
            let want = chunk.len().min(budget - read_total);
            match self.stream.read(&mut chunk[..want]) {
                Ok(0) => {
                    self.parse(counts)?;
                    return Err("the server closed the connection".into());
                }
                Ok(read) => {
                    read_total += read;
                    self.input.extend_from_slice(&chunk[..read]);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(format!("read failed: {error}")),
            }
        }
        self.parse(counts)
    }

    fn parse(&mut self, counts: &mut ChurnSecond) -> std::result::Result<(), String> {
        let mut used = 0;
        let result = loop {
            match cairn_target::parse(&self.input[used..]) {
                Ok(None) => break Ok(()),
                Ok(Some((size, reply))) => {
                    used += size;
                    match reply.ack {
                        Ack::Push { hunt, seq } => {
                            counts.pushes += 1;
                            let last = self.last_seq.entry(hunt).or_insert(seq.saturating_sub(1));
                            counts.push_gaps += seq.saturating_sub(*last + 1);
                            *last = (*last).max(seq);
                        }
                        Ack::Gap { missed } => counts.push_gaps += missed,
                        Ack::Failed(message) => break Err(message),
                        Ack::Rejected(code) => break Err(format!("a subscriber's request refused with {code}")),
                        // PONG.
                        Ack::Done | Ack::Award { .. } => {}
                    }
                }
                Err(error) => break Err(format!("{error:#}")),
            }
        };
        self.input.drain(..used);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_period_churns_settles_then_goes_quiet() {
        let kinds: Vec<SecondKind> = (0..10).map(Calendar::kind).collect();
        use SecondKind::*;
        assert_eq!(kinds, [Churn, Churn, Churn, Settle, Quiet, Churn, Churn, Churn, Settle, Quiet]);
    }
}
