//! Connection and subscriber churn for `cairn-perf soak`: a thread of its own that, during
//! the churn seconds of each period (see [`Calendar`]), reconnects load connections and
//! opens and closes subscribers.
//!
//! A reconnection is opened here, politely (TCP connect, then HELLO, the same handshake as
//! every harness connection), and handed to the worker that owns the load connection
//! ([`Handover`]); the worker closes the old socket once its last replies are in and
//! carries on with the same players (see `driver.rs`). Subscribers live here entirely:
//! each connects, says HELLO, subscribes to the discoveries of some hunts, reads its
//! pushes (checking their sequence numbers), and leaves. A fast one reads everything,
//! says PING every second and leaves after a short life.
//!
//! A third of the subscribers are slow, the first ones opened in each churn seconds: a
//! reader with a small window (see [`SlowLink`]) that stalls, reading and sending
//! nothing, until the churn seconds end, then recovers in the settle second and reads
//! whatever the server still has for it, to the end of the stream if it was told GOODBYE.
//! The server's documented policy for such a reader (docs/protocol.md, section 9) is to
//! drop pushes once its pending output passes the soft limit and owe it GAP notices, and to
//! say GOODBYE `slow_consumer` and close it when it cannot (too many missed ranges to
//! remember, or the hard limit). Slow subscribers alternate between two kinds, so that both
//! outcomes happen: a *narrow* one follows [`NARROW_HUNTS`] hunts, few enough that the
//! server can remember every range it drops (it should see GAP notices or sequence jumps
//! when it recovers); a *wide* one follows every hunt, more ranges than the server
//! remembers (it should be cut). What each one observed on its socket is counted
//! ([`ChurnSecond`]): pushes read, gaps seen, GOODBYE and its code, a close without one,
//! frames after a GOODBYE; the soak's verdict, not this thread, judges it. A fast
//! subscriber that is dropped, or a GOODBYE for any other reason, is a failure.
//!
//! Everything this thread opens is closed before the quiet seconds of the period, so the
//! soak can check that the server allocates nothing while only events flow.

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use cairn::constants::{GAPS_PER_CONNECTION_MAX, SUBSCRIPTIONS_PER_CONNECTION_MAX};
use cairn::protocol::{decode_response, next_frame, ErrorCode, PushBody, Response};
use cairn::rng::Rng;

use crate::cairn_target::{self, Blocking, Credential, Tokens};
use crate::driver::{Handover, KEEPALIVE_INTERVAL};

/// How often the thread looks at its subscribers' sockets when nothing else is due.
const TICK: Duration = Duration::from_millis(5);
/// Bytes a fast subscriber reads per tick at most, so one busy subscriber cannot keep the
/// thread from its schedule.
const FAST_READ_BYTES_MAX: usize = 1 << 20;
/// Hunts a fast subscriber follows.
const FAST_HUNTS: u32 = 10;
/// Hunts a narrow slow subscriber follows: as many (hunt, topic) ranges as the server
/// remembers for one connection, so it owes GAP notices rather than cutting it.
pub const NARROW_HUNTS: u32 = GAPS_PER_CONNECTION_MAX as u32;
/// Shortest and longest life of a churned fast subscriber.
const SUBSCRIBER_LIFE_MS: [i64; 2] = [500, 2_000];
/// One in `SLOW_EVERY` subscribers is slow.
const SLOW_EVERY: u64 = 3;
/// Failure messages kept verbatim.
const FAILURES_KEPT_MAX: usize = 5;

/// The link of a slow subscriber, and why these figures.
///
/// What the server does (`deliver` and `flush_dirty` in `src/server/shard_loop.rs`): it
/// appends a push to a subscriber's output while its pending output (bytes the kernel has
/// not yet taken) is at most the soft limit; above it, it drops the push and remembers the
/// range missed, one range per (hunt, topic), at most `GAPS_PER_CONNECTION_MAX` (16) of
/// them; a seventeenth, or pending output above the hard limit, and it says GOODBYE
/// `slow_consumer` and closes the connection. Once the pending output is back under the
/// soft limit it sends a GAP notice per range. Pushes stop at the soft limit, so a
/// connection that only subscribes never reaches the hard limit: the cut a subscriber
/// meets is the seventeenth range.
///
/// So the server acts only once a subscriber is behind by what the kernel holds for it (the
/// server's send buffer, what is in flight, the subscriber's receive buffer) *plus* the
/// soft limit. On loopback with default socket options the kernel holds 2.3-4 MB (measured
/// with a `python3` sender and a reader that reads nothing): loopback's 64 KiB segments let
/// the sender's buffer auto-tune up to `tcp_wmem`'s 4 MiB, whatever the reader's window.
/// That is what kept the server from ever acting in the 10-minute soak of `RESULTS.md`. A
/// slow subscriber here asks for a 4 KiB receive buffer and Ethernet's 1460-byte segments,
/// as a phone on a poor network would present itself; the kernel then holds 45-50 KB for it
/// as a rule, and up to 280 KB when the server's pushes went out one small segment each
/// (the sender's congestion window, counted in segments, grows with them, and its buffer
/// with the window): measured in the soak itself, as what a stalled subscriber reads before
/// its GOODBYE or GAP notices.
///
/// Push rate: a subscriber of all 100 hunts of the `soak` scenario at 44 000 events/s is
/// sent about 210 KB/s of DISCOVERY pushes (56 bytes each; measured with the churn of this
/// file reading everything), 2.1 KB/s per hunt, so a narrow one (16 hunts) 34 KB/s. With the
/// default soft limit (8 MiB) a subscriber of every hunt would have to read nothing for 40 s
/// before the server acted, a narrow one for four minutes: far beyond a churned
/// subscriber's life, which must end before the quiet seconds. The soak therefore runs the
/// server it spawns with a soft limit of 16 KiB (`SOAK_SUBSCRIBER_BUFFER_SOFT` in
/// `soak.rs`), as `tests/server.rs` does with 32 KiB.
///
/// A slow subscriber stalls: it reads nothing (and sends nothing) until the churn seconds
/// end, then its link recovers and in the settle second it reads everything for up to
/// [`SlowLink::CATCH_UP`] and leaves. The slow ones are the first opened in each churn
/// seconds (see `open_subscriber`): with the default two subscribers per second, a narrow
/// one at 0.25 s, which stalls 2.75 s, and a wide one at 0.75 s, which stalls 2.25 s. At 44
/// 000 events/s the wide one falls 470 KB behind, past the kernel's 45-280 KB and the 16 KiB
/// limit, and its first drops span more than 16 hunts within milliseconds (3 900 pushes/s
/// over 100 hunts): cut. The narrow one falls 94 KB behind, past the usual 50 KB + 16 KiB:
/// pushes dropped, GAP notices when it recovers. The short soak of `perf/tests/soak.rs`
/// runs a smaller world at 10 000 events/s, where the same holds with less margin (see
/// there).
pub struct SlowLink;

impl SlowLink {
    /// Receive buffer a slow subscriber asks for (`SO_RCVBUF`; Linux doubles it).
    pub const RECEIVE_BUFFER_BYTES: usize = 4 * 1024;
    /// Largest segment it accepts (`TCP_MAXSEG`): Ethernet's.
    pub const SEGMENT_BYTES: u32 = 1460;
    /// How long it reads everything once its link recovers, before it leaves.
    pub const CATCH_UP: Duration = Duration::from_millis(400);
}

const _: () = assert!(SlowLink::CATCH_UP.as_millis() < 1_000 * Calendar::SETTLE_SECONDS as u128);

/// Which seconds of the soak churn and which are quiet. Seconds are counted from the
/// start of the measured window; each period of [`Calendar::PERIOD_SECONDS`] seconds
/// churns in its first [`Calendar::CHURN_SECONDS`], then lets one second settle (slow
/// subscribers catch up and leave, closes land, the server's per-shard stats snapshots,
/// at most 100 ms old, catch up), then has quiet seconds in which only events flow.
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
    /// Nothing new is opened; slow subscribers catch up; the last closes land.
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

/// What the thread did in one second of the soak. A subscriber's outcome (gapped, cut,
/// unaffected) is counted in the second it ended.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ChurnSecond {
    /// Fresh streams handed to workers.
    pub reconnects_handed: u64,
    /// Subscribers opened (connected, greeted, subscribed).
    pub subscribers_opened: u64,
    /// Of them, slow ones.
    pub slow_opened: u64,
    /// Subscribers this thread closed.
    pub subscribers_closed: u64,
    /// Pushes its subscribers read (all of them).
    pub pushes: u64,
    /// Of them, pushes slow subscribers read.
    pub slow_pushes: u64,
    /// Pushes they know they missed: the union of the ranges GAP notices announced and the
    /// jumps in sequence numbers (a missed push is counted once, however it showed).
    pub push_gaps: u64,
    /// GAP notices received.
    pub gap_notices: u64,
    /// Jumps in a (hunt, topic)'s sequence numbers no GAP notice had announced.
    pub seq_jumps: u64,
    /// Slow subscribers that saw a gap (notice or jump) and were not cut.
    pub slow_gapped: u64,
    /// Slow subscribers the server said GOODBYE to or closed: cut by the server.
    pub slow_dropped: u64,
    /// Of them, cut without a GOODBYE read (the connection ended first).
    pub slow_closed_without_goodbye: u64,
    /// Slow subscribers that left with every push read: the server never had to act.
    pub slow_unaffected: u64,
    /// Frames read after a GOODBYE (the protocol says the connection closes right after
    /// it).
    pub frames_after_goodbye: u64,
    /// Failures: a connection or subscription refused, a fast subscriber dropped, a
    /// GOODBYE for another reason than `slow_consumer`, a frame that does not parse.
    pub errors: u64,
}

/// What the thread hands back when it stops.
#[derive(Debug, Default)]
pub struct ChurnReport {
    /// Per second of the soak.
    pub seconds: Vec<ChurnSecond>,
    /// GOODBYE codes slow subscribers read, and how many of each.
    pub goodbyes: BTreeMap<u16, u64>,
    /// Slow subscribers of each kind opened: narrow, wide.
    pub slow_kinds: [u64; 2],
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

    /// The sum of one per-second count over the soak.
    pub fn total(&self, count: fn(&ChurnSecond) -> u64) -> u64 {
        self.seconds.iter().map(count).sum()
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

/// How a subscriber reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pace {
    /// Everything, every tick.
    Fast,
    /// Nothing, until the churn seconds end.
    Stalled,
    /// Everything, until it leaves: a slow one whose link recovered, or any subscriber
    /// told GOODBYE (it reads on to the end of the stream, to see what follows).
    Draining,
}

/// How a subscriber's connection ended, if it did.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ended {
    /// The stream ended (or was reset).
    Closed(String),
    /// A frame that does not parse, an error reply: a failure whatever the pace.
    Broken(String),
}

/// One churned subscriber.
struct Subscriber {
    stream: TcpStream,
    input: Vec<u8>,
    pace: Pace,
    slow: bool,
    leave_at: Instant,
    next_ping: Instant,
    next_id: u32,
    /// Last sequence number seen (or announced missed) per (hunt, topic index).
    last_seq: HashMap<(u32, u8), u64>,
    saw_gap: bool,
    /// The GOODBYE read, if any: code and message.
    goodbye: Option<(u16, String)>,
    ended: Option<Ended>,
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
        in_window: 0,
        slow_opened: 0,
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
    // The soak is over: subscribers still stalled recover as in a settle second, so each
    // one's outcome is what it saw, not what it had yet to read.
    churn.recover(Instant::now());
    while !churn.subscribers.is_empty() {
        std::thread::sleep(TICK);
        churn.service(Instant::now());
    }
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
    /// Subscribers opened in the current churn seconds.
    in_window: u64,
    /// Slow subscribers opened in all.
    slow_opened: u64,
}

impl Churn {
    fn begin(&mut self, second: u64) {
        self.second = second;
        let now = Instant::now();
        let spacing = |rate: f64| (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        match Calendar::kind(second) {
            SecondKind::Churn => {
                if second % Calendar::PERIOD_SECONDS == 0 {
                    self.in_window = 0;
                }
                // Half a spacing in, so churn is spread through the seconds, not at their edges.
                if let (None, Some(step)) = (self.next_reconnect, spacing(self.plan.rates.reconnects_per_s)) {
                    self.next_reconnect = Some(now + step / 2);
                }
                if let (None, Some(step)) = (self.next_subscriber, spacing(self.plan.rates.subscribers_per_s)) {
                    self.next_subscriber = Some(now + step / 2);
                }
            }
            SecondKind::Settle => {
                self.next_reconnect = None;
                self.next_subscriber = None;
                self.recover(now);
            }
            SecondKind::Quiet => {
                self.next_reconnect = None;
                self.next_subscriber = None;
                self.close_all();
            }
        }
    }

    /// The churn seconds are over: fast subscribers leave now; slow ones recover and read
    /// what the server still has for them, then leave, within [`SlowLink::CATCH_UP`].
    fn recover(&mut self, now: Instant) {
        for subscriber in &mut self.subscribers {
            if subscriber.slow {
                subscriber.pace = Pace::Draining;
                subscriber.leave_at = subscriber.leave_at.min(now + SlowLink::CATCH_UP);
            } else {
                subscriber.leave_at = now;
            }
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
        // A third of the subscribers of each churn seconds are slow, and they are the first
        // opened, so that they lag longest: with the default two per second, the first two
        // (a narrow one at 0.25 s, a wide one at 0.75 s), then four fast ones.
        let expected = self.plan.rates.subscribers_per_s * Calendar::CHURN_SECONDS as f64;
        let slow = self.in_window < (expected / SLOW_EVERY as f64).round() as u64;
        let wide = slow && self.slow_opened % 2 == 1;
        self.in_window += 1;
        self.slow_opened += slow as u64;
        let hunts = self.plan.hunts;
        let count = if wide {
            hunts.min(SUBSCRIPTIONS_PER_CONNECTION_MAX)
        } else if slow {
            NARROW_HUNTS.min(hunts)
        } else {
            FAST_HUNTS.min(hunts)
        };
        let first = self.rng.below(hunts as u64) as u32;
        let followed: Vec<u32> = (0..count).map(|k| (first + k) % hunts).collect();
        let life = Duration::from_millis(self.rng.between(SUBSCRIBER_LIFE_MS[0], SUBSCRIBER_LIFE_MS[1]) as u64);
        let opened = if slow {
            open_slow(&self.plan.addr, self.plan.tokens.load(), self.plan.hunt_base, &followed)
        } else {
            open(&self.plan.addr, self.plan.tokens.load(), self.plan.hunt_base, &followed)
        };
        match opened {
            Ok((stream, input)) => {
                let counts = self.report.at(self.second);
                counts.subscribers_opened += 1;
                if slow {
                    counts.slow_opened += 1;
                    self.report.slow_kinds[wide as usize] += 1;
                }
                self.subscribers.push(Subscriber {
                    stream,
                    input,
                    pace: if slow { Pace::Stalled } else { Pace::Fast },
                    slow,
                    // A slow one stays until the churn seconds end (see `begin`).
                    leave_at: if slow { now + Duration::from_secs(Calendar::PERIOD_SECONDS) } else { now + life },
                    next_ping: now + KEEPALIVE_INTERVAL,
                    // Any non-zero id will do for PINGs (their PONGs are only
                    // skipped); far above the set-up's ids so a dump reads clearly.
                    next_id: 1_000_000,
                    last_seq: HashMap::new(),
                    saw_gap: false,
                    goodbye: None,
                    ended: None,
                });
            }
            Err(error) => self.report.fail(self.second, format!("opening a subscriber: {error:#}")),
        }
    }

    /// Reads, pings and retires subscribers.
    fn service(&mut self, now: Instant) {
        let second = self.second;
        for subscriber in &mut self.subscribers {
            if subscriber.ended.is_none() {
                subscriber.service(now, self.report.at(second));
            }
        }
        let mut index = 0;
        while index < self.subscribers.len() {
            let subscriber = &self.subscribers[index];
            if subscriber.ended.is_some() || subscriber.leave_at <= now {
                let subscriber = self.subscribers.swap_remove(index);
                self.retire(subscriber);
            } else {
                index += 1;
            }
        }
    }

    /// Counts how a subscriber's life ended and closes it.
    fn retire(&mut self, subscriber: Subscriber) {
        let second = self.second;
        self.report.at(second).subscribers_closed += 1;
        if let Some(Ended::Broken(message)) = subscriber.ended {
            self.report.fail(second, message);
            return;
        }
        match (subscriber.goodbye, subscriber.ended, subscriber.slow) {
            (Some((code, message)), _, true) => {
                *self.report.goodbyes.entry(code).or_insert(0) += 1;
                self.report.at(second).slow_dropped += 1;
                if code != ErrorCode::SlowConsumer.to_u16() {
                    self.report.fail(second, format!("a slow subscriber was told GOODBYE {code}: {message}"));
                }
            }
            (Some((code, message)), _, false) => {
                self.report.fail(second, format!("a fast subscriber was told GOODBYE {code}: {message}"))
            }
            (None, Some(_), true) => {
                let counts = self.report.at(second);
                counts.slow_dropped += 1;
                counts.slow_closed_without_goodbye += 1;
            }
            (None, Some(Ended::Closed(why)), false) => self.report.fail(second, format!("a fast subscriber: {why}")),
            (None, None, true) if subscriber.saw_gap => self.report.at(second).slow_gapped += 1,
            (None, None, true) => self.report.at(second).slow_unaffected += 1,
            (None, _, false) => {}
        }
    }

    fn close_all(&mut self) {
        for subscriber in std::mem::take(&mut self.subscribers) {
            self.retire(subscriber);
        }
    }
}

/// Connects, says HELLO and subscribes to the discoveries of `hunts`; returns the stream
/// (non-blocking) and any bytes already read behind the last SUBSCRIBE reply.
fn open(addr: &str, credential: Credential<'_>, hunt_base: u32, hunts: &[u32]) -> Result<(TcpStream, Vec<u8>)> {
    subscribe(Blocking::connect(addr, credential)?, hunt_base, hunts)
}

/// As [`open`], over a socket with a slow subscriber's receive buffer and segment size,
/// set before connecting so the handshake advertises them. socket2 (already in the
/// workspace through the server) sets them; the standard library has no setter.
fn open_slow(addr: &str, credential: Credential<'_>, hunt_base: u32, hunts: &[u32]) -> Result<(TcpStream, Vec<u8>)> {
    let address: SocketAddr = addr.parse().with_context(|| format!("{addr} is not an IP:port address"))?;
    let socket = socket2::Socket::new(socket2::Domain::for_address(address), socket2::Type::STREAM, None)?;
    socket.set_recv_buffer_size(SlowLink::RECEIVE_BUFFER_BYTES).context("SO_RCVBUF")?;
    socket.set_mss(SlowLink::SEGMENT_BYTES).context("TCP_MAXSEG")?;
    socket.connect(&address.into()).with_context(|| format!("cannot connect to cairn at {addr}"))?;
    subscribe(Blocking::greet(socket.into(), credential)?, hunt_base, hunts)
}

fn subscribe(mut blocking: Blocking, hunt_base: u32, hunts: &[u32]) -> Result<(TcpStream, Vec<u8>)> {
    cairn_target::subscribe(&mut blocking, hunt_base, hunts)?;
    let (stream, input) = blocking.into_parts();
    stream.set_nonblocking(true)?;
    Ok((stream, input))
}

impl Subscriber {
    /// One look at the socket; sets `ended` when the connection ends.
    fn service(&mut self, now: Instant, counts: &mut ChurnSecond) {
        // A slow one says nothing (a phone in a tunnel), so no late PING reaches a server
        // that has already closed it (a segment to a closed socket is answered with a reset,
        // which would discard what it still had to deliver).
        if self.pace == Pace::Fast && now >= self.next_ping {
            self.next_ping = now + KEEPALIVE_INTERVAL;
            let mut frame = Vec::with_capacity(12);
            cairn_target::encode_ping(self.next_id, &mut frame);
            self.next_id += 1;
            match self.stream.write(&frame) {
                // A 12-byte write to a socket we otherwise never write to goes whole;
                // a full send buffer would mean the server stopped reading: skip a ping.
                Ok(_) => {}
                Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(error) => {
                    self.ended = Some(Ended::Closed(format!("ping failed: {error}")));
                    return;
                }
            }
        }
        if self.pace == Pace::Stalled {
            return;
        }
        let mut chunk = [0u8; 16 * 1024];
        let mut read_total = 0;
        let mut closed = None;
        while read_total < FAST_READ_BYTES_MAX {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    closed = Some("the server closed the connection".to_string());
                    break;
                }
                Ok(read) => {
                    read_total += read;
                    self.input.extend_from_slice(&chunk[..read]);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    closed = Some(format!("read failed: {error}"));
                    break;
                }
            }
        }
        // What was read before the end still counts (a GOODBYE among it, most of all).
        self.parse(counts);
        if self.goodbye.is_some() && self.pace != Pace::Draining {
            // Read on to the end of the stream, briefly: the server should close it now.
            self.pace = Pace::Draining;
            self.leave_at = self.leave_at.min(now + SlowLink::CATCH_UP);
        }
        if self.ended.is_none() {
            self.ended = closed.map(Ended::Closed);
        }
    }

    fn parse(&mut self, counts: &mut ChurnSecond) {
        let mut used = 0;
        while self.ended.is_none() {
            let size = match next_frame(&self.input[used..]) {
                Ok(Some(size)) => size,
                Ok(None) => break,
                Err(error) => {
                    self.ended = Some(Ended::Broken(format!("cannot frame the server's stream: {error}")));
                    break;
                }
            };
            let frame = &self.input[used..used + size];
            used += size;
            if self.goodbye.is_some() {
                // docs/protocol.md, 9.4: the server closes the connection right after a
                // GOODBYE; anything more is counted, not interpreted.
                counts.frames_after_goodbye += 1;
                continue;
            }
            match decode_response(frame) {
                Ok(Response::Push(PushBody::Notice(notice))) => {
                    counts.pushes += 1;
                    if self.slow {
                        counts.slow_pushes += 1;
                    }
                    let key = (notice.hunt, notice.kind.topic() as u8);
                    // The first push of a pair is the first the subscriber can judge by.
                    let last = self.last_seq.entry(key).or_insert(notice.seq.saturating_sub(1));
                    if notice.seq > *last + 1 {
                        counts.seq_jumps += 1;
                        counts.push_gaps += notice.seq - *last - 1;
                        self.saw_gap = true;
                    }
                    *last = (*last).max(notice.seq);
                }
                Ok(Response::Push(PushBody::Gap(gap))) => {
                    counts.gap_notices += 1;
                    self.saw_gap = true;
                    let key = (gap.hunt, gap.topic as u8);
                    let last = self.last_seq.entry(key).or_insert(gap.first.saturating_sub(1));
                    // Only what no jump already counted.
                    counts.push_gaps += gap.last.saturating_sub((*last).max(gap.first.saturating_sub(1)));
                    *last = (*last).max(gap.last);
                }
                Ok(Response::Push(PushBody::Goodbye { code, message })) => self.goodbye = Some((code, message)),
                // PONG.
                Ok(Response::Reply { .. }) => {}
                Ok(Response::Error { code, message, .. }) => {
                    self.ended =
                        Some(Ended::Broken(format!("a subscriber's request refused: error {code}: {message}")));
                }
                Err(error) => self.ended = Some(Ended::Broken(format!("undecodable frame: {error}"))),
            }
        }
        self.input.drain(..used);
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
