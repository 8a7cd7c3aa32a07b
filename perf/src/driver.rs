//! The worker loop: each worker thread owns a share of the connections, sends on an
//! open-loop schedule (or keeps a closed-loop window full), reads replies without ever
//! waiting for them before sending, and records latency from the intended send time and
//! service time from the send (when the request is queued on its connection, written in
//! the same pass unless the socket is backed up) into HDR histograms.
//!
//! One `Instant` reading per loop pass stamps every send of that pass and every reply
//! read right after a `read` (a clock read costs 50-100 ns here; one per event would be
//! a noticeable share of a busy harness core). Requests a connection cannot send yet
//! (its output is backed up, or its pending table is full) stay due with their original
//! due time, so their wait is counted; those due before the window closes are still sent
//! after it (within [`DRAIN_TIMEOUT`], or counted lost), so a stall that lasts to the end
//! of the window is not left out of the percentiles.
//!
//! When the loop has nothing to do it yields the core instead of sleeping: a sleep's
//! wake-up slack would be charged to the server as latency, and with two cores shared by
//! the server and the harness, `sched_yield` lets a runnable server thread have the core.
//!
//! Connection churn (`cairn-perf soak`): another thread opens a fresh, handshaken stream
//! and hands it over ([`Handover`]); the connection stops taking due requests, waits for
//! its last replies, closes its old socket and carries on over the new one with the same
//! players, sequence numbers and ledger. Requests that fell due meanwhile keep their
//! intended times, so the reconnection's cost shows in latency, as a real client's would.
//! Subscribers of a Cairn server send a PING every [`KEEPALIVE_INTERVAL`] so a server with
//! an idle timeout keeps them.

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::cairn_target;
use crate::latency;
use crate::ledger::Ledger;
use crate::schedule::Schedule;
use crate::target::{Ack, Codec};
use crate::workload::{Op, Players, World};

/// Requests one connection may have unanswered: the size of its pending table (a power
/// of two, indexed by request id).
pub const PENDING_MAX: usize = 1 << 14;
/// Output bytes a connection may have queued before it stops taking due requests.
pub const OUTPUT_BYTES_MAX: usize = 1 << 20;
/// Size of a connection's read buffer: room for many replies per `read`, and far more
/// than the largest frame (64 KiB), so a whole reply always fits after compaction.
const INPUT_BYTES: usize = 512 * 1024;
/// How long a phase waits for its last replies before counting them lost.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Length of one interval of the interval log and of the live progress.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Failure messages kept verbatim per phase.
const FAILURES_KEPT_MAX: usize = 5;
/// How often a subscriber connection of a Cairn server says PING: it otherwise only
/// reads, and a server may close connections that stay silent.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// A fresh stream, connected and greeted (HELLO) by another thread, to replace the
/// stream of connection `conn` (its position in the worker's slice).
pub struct Handover {
    /// The connection's position among the worker's connections.
    pub conn: usize,
    /// The new stream.
    pub stream: std::net::TcpStream,
}

/// What the loop does when it has nothing to do in an open loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Idle {
    /// Poll without blocking and `sched_yield`: sends leave on time, but on a crowded
    /// machine a thread that keeps yielding is the one the scheduler runs last.
    Spin,
    /// Block in epoll until a reply or the next due time (rounded up to 1 ms by epoll):
    /// sends may leave up to 1 ms late (and that lateness is counted), but the thread
    /// wakes as a sleeper, which the scheduler favours.
    Sleep,
}

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A fixed schedule of this many events per second in total.
    Open {
        /// Events per second over all load connections.
        rate: u64,
    },
    /// Keep this many requests in flight on every load connection.
    Closed {
        /// Requests in flight per connection.
        pipeline: usize,
    },
}

/// A request waiting for its reply.
#[derive(Clone, Copy, Debug)]
struct Pending {
    id: u32,
    op: Op,
    /// The player's index among its connection's players (for the ledger).
    local: u32,
    intended_ns: u64,
    sent_ns: u64,
    /// Sent during a phase that records latency.
    recorded: bool,
}

/// What a connection does.
pub enum Role {
    /// Sends the workload: load connection `index` of the run, with its players and
    /// their ledger.
    Load {
        /// Index among load connections (fixes which players it owns).
        index: u32,
        /// The players it drives.
        players: Players,
        /// What it was acknowledged.
        ledger: Ledger,
    },
    /// Only reads pushes; remembers the last sequence number per hunt to spot gaps.
    Subscriber {
        /// Last push number seen per hunt.
        last_seq: HashMap<u32, u64>,
    },
}

/// One connection and its buffers.
pub struct Conn {
    stream: TcpStream,
    /// What it does.
    pub role: Role,
    output: Vec<u8>,
    output_sent: usize,
    write_blocked: bool,
    /// A fixed read buffer; bytes `input_start..input_end` are unparsed.
    input: Vec<u8>,
    input_start: usize,
    input_end: usize,
    pending: Vec<Option<Pending>>,
    in_flight: usize,
    next_id: u32,
    /// In-order targets: the id the next reply answers.
    next_reply: u32,
    broken: Option<String>,
    /// A stream handed over to replace this one once nothing is in flight.
    replacement: Option<std::net::TcpStream>,
    /// When a subscriber next says PING, ns on the phase's clock.
    next_keepalive_ns: u64,
}

impl Conn {
    /// Wraps a connected, handshaken stream.
    pub fn new(stream: std::net::TcpStream, role: Role) -> Result<Conn> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: TcpStream::from_std(stream),
            role,
            output: Vec::with_capacity(64 * 1024),
            output_sent: 0,
            write_blocked: false,
            input: vec![0; INPUT_BYTES],
            input_start: 0,
            input_end: 0,
            pending: vec![None; PENDING_MAX],
            in_flight: 0,
            next_id: 1,
            next_reply: 1,
            broken: None,
            replacement: None,
            next_keepalive_ns: 0,
        })
    }

    /// Returns true if and only if the connection can take another request now.
    fn can_send(&self) -> bool {
        self.broken.is_none()
            && self.replacement.is_none()
            && self.output.len() - self.output_sent < OUTPUT_BYTES_MAX
            && self.pending[self.next_id as usize % PENDING_MAX].is_none()
    }
}

/// Counts and histograms of one phase, per worker, then summed.
pub struct Tally {
    /// Requests sent.
    pub sent: u64,
    /// Replies received (including rejections and failures).
    pub acked: u64,
    /// Replies received before the phase's sending window closed.
    pub acked_in_window: u64,
    /// State-machine refusals, by code.
    pub rejections: BTreeMap<u16, u64>,
    /// Failed requests (protocol errors, Redis errors, broken connections).
    pub errors: u64,
    /// The first few failure messages.
    pub failures: Vec<String>,
    /// Requests still unanswered when the drain timed out.
    pub lost: u64,
    /// Pushes received by subscribers.
    pub pushes: u64,
    /// Pushes subscribers know they missed (sequence gaps and GAP notices).
    pub push_gaps: u64,
    /// Load connections that closed their socket and carried on over a handed-over one.
    pub reconnects: u64,
    /// Latency from the intended send time, ns.
    pub latency: Histogram<u64>,
    /// Latency from the actual send, ns.
    pub service: Histogram<u64>,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Tally {
        Tally {
            sent: 0,
            acked: 0,
            acked_in_window: 0,
            rejections: BTreeMap::new(),
            errors: 0,
            failures: Vec::new(),
            lost: 0,
            pushes: 0,
            push_gaps: 0,
            reconnects: 0,
            latency: latency::histogram(),
            service: latency::histogram(),
        }
    }

    /// Adds another worker's tally.
    pub fn add(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.acked_in_window += other.acked_in_window;
        for (code, count) in &other.rejections {
            *self.rejections.entry(*code).or_default() += count;
        }
        self.errors += other.errors;
        for failure in &other.failures {
            if self.failures.len() < FAILURES_KEPT_MAX {
                self.failures.push(failure.clone());
            }
        }
        self.lost += other.lost;
        self.pushes += other.pushes;
        self.push_gaps += other.push_gaps;
        self.reconnects += other.reconnects;
        self.latency.add(&other.latency).expect("histograms share bounds");
        self.service.add(&other.service).expect("histograms share bounds");
    }

    fn fail(&mut self, message: String) {
        self.errors += 1;
        if self.failures.len() < FAILURES_KEPT_MAX {
            self.failures.push(message);
        }
    }
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::new()
    }
}

/// One worker's report of one interval, for the interval log and the progress bar.
pub struct IntervalReport {
    /// The interval's number since the phase started.
    pub index: u64,
    /// Latency from intended send times of replies in the interval, ns.
    pub latency: Histogram<u64>,
    /// Replies in the interval.
    pub acked: u64,
    /// Failures counted in the interval.
    pub errors: u64,
    /// Reconnections completed in the interval.
    pub reconnects: u64,
}

/// What every worker of a phase shares.
pub struct Phase<'a> {
    /// The scenario's hunts and treasures.
    pub world: &'a World,
    /// The target's codec.
    pub codec: &'a Codec,
    /// Pacing.
    pub mode: Mode,
    /// The harness's clock origin.
    pub clock: Instant,
    /// When sending starts, ns on `clock`.
    pub start_ns: u64,
    /// When sending stops, ns on `clock`.
    pub end_ns: u64,
    /// Load connections in the whole run (for the schedule's interleaving).
    pub load_connections: u32,
    /// Record latency (false during warm-up).
    pub record: bool,
    /// What an idle open loop does.
    pub idle: Idle,
}

impl Phase<'_> {
    fn now_ns(&self) -> u64 {
        self.clock.elapsed().as_nanos() as u64
    }
}

/// Runs one phase over `conns` on the calling thread; `handovers`, when given, brings
/// streams that replace some of them (connection churn).
pub fn work(
    phase: &Phase,
    conns: &mut [Conn],
    reports: &Sender<IntervalReport>,
    handovers: Option<&Receiver<Handover>>,
) -> Result<Tally> {
    let mut poll = Poll::new().context("cannot create a poll")?;
    for (index, conn) in conns.iter_mut().enumerate() {
        poll.registry().register(&mut conn.stream, Token(index), Interest::READABLE | Interest::WRITABLE)?;
    }
    let mut schedules: Vec<Option<Schedule>> = conns
        .iter()
        .map(|conn| match (&conn.role, phase.mode) {
            (Role::Load { index, .. }, Mode::Open { rate }) => {
                Some(Schedule::new(phase.start_ns, rate, *index, phase.load_connections))
            }
            _ => None,
        })
        .collect();
    let mut tally = Tally::new();
    let mut events = Events::with_capacity(1024);
    let mut interval = latency::histogram();
    let mut interval_acked = 0u64;
    let mut interval_index = 0u64;
    // Errors and reconnections counted up to the previous interval report.
    let mut reported = (0u64, 0u64);
    let interval_ns = INTERVAL.as_nanos() as u64;
    let drain_end_ns = phase.end_ns + DRAIN_TIMEOUT.as_nanos() as u64;
    loop {
        let now = phase.now_ns();
        let sending = now < phase.end_ns;
        let mut busy = false;
        if let Some(handovers) = handovers {
            busy |= take_handovers(handovers, conns, &mut tally);
        }
        busy |= replace_streams(&poll, conns, &mut tally)?;
        // An open loop goes on sending after the window what fell due inside it and could
        // not leave yet (a full pending table, backed-up output): those requests keep
        // their due times, so a stall that lasts to the window's end still shows.
        let open = matches!(phase.mode, Mode::Open { .. });
        for (conn, schedule) in conns.iter_mut().zip(schedules.iter_mut()) {
            if sending || open {
                busy |= send_due(phase, conn, schedule.as_mut(), now, &mut tally);
            }
            if sending {
                keepalive(phase, conn, now);
            }
        }
        for conn in conns.iter_mut() {
            busy |= flush(conn);
        }
        let timeout = poll_timeout(phase, conns, &schedules, now, sending);
        poll.poll(&mut events, timeout).or_else(|error| {
            if error.kind() == ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(error)
            }
        })?;
        for event in events.iter() {
            let conn = &mut conns[event.token().0];
            if event.is_writable() {
                conn.write_blocked = false;
                flush(conn);
            }
            if event.is_readable() {
                busy = true;
                let acked = read_replies(phase, conn, &mut tally, &mut interval)?;
                interval_acked += acked;
            }
        }
        let now = phase.now_ns();
        if now >= phase.start_ns + (interval_index + 1) * interval_ns {
            let full = std::mem::replace(&mut interval, latency::histogram());
            let counted = (tally.errors + tally.lost, tally.reconnects);
            let _ = reports.send(IntervalReport {
                index: interval_index,
                latency: full,
                acked: interval_acked,
                errors: counted.0 - reported.0,
                reconnects: counted.1 - reported.1,
            });
            reported = counted;
            interval_acked = 0;
            interval_index += 1;
        }
        let settled = |(conn, schedule): (&Conn, &Option<Schedule>)| {
            conn.broken.is_some() || (conn.in_flight == 0 && owed(phase, schedule.as_ref()) == 0)
        };
        if !sending && conns.iter().zip(&schedules).all(settled) {
            break;
        }
        if !sending && now >= drain_end_ns {
            for (conn, schedule) in conns.iter_mut().zip(&schedules) {
                // Requests due in the window that never left are lost too.
                let unsent = if conn.broken.is_none() { owed(phase, schedule.as_ref()) } else { 0 };
                tally.lost += conn.in_flight as u64 + unsent;
                if conn.in_flight > 0 {
                    conn.broken =
                        Some(format!("{} requests unanswered {DRAIN_TIMEOUT:?} after the phase", conn.in_flight));
                }
                conn.in_flight = 0;
                conn.pending.iter_mut().for_each(|slot| *slot = None);
            }
            break;
        }
        if !busy && events.is_empty() && phase.idle == Idle::Spin {
            std::thread::yield_now();
        }
    }
    // A stream handed over too late to be used is closed unused.
    if let Some(handovers) = handovers {
        take_handovers(handovers, conns, &mut tally);
    }
    replace_streams(&poll, conns, &mut tally)?;
    for conn in conns.iter_mut() {
        conn.replacement = None;
        poll.registry().deregister(&mut conn.stream)?;
        if let Some(reason) = &conn.broken {
            tally.fail(format!("connection broken: {reason}"));
        }
    }
    let counted = (tally.errors + tally.lost, tally.reconnects);
    if interval_acked > 0 || counted != reported {
        let _ = reports.send(IntervalReport {
            index: interval_index,
            latency: interval,
            acked: interval_acked,
            errors: counted.0 - reported.0,
            reconnects: counted.1 - reported.1,
        });
    }
    Ok(tally)
}

/// Parks every stream handed over so far beside its connection; returns true if and only
/// if there was one.
fn take_handovers(handovers: &Receiver<Handover>, conns: &mut [Conn], tally: &mut Tally) -> bool {
    let mut any = false;
    while let Ok(Handover { conn, stream }) = handovers.try_recv() {
        any = true;
        match conns.get_mut(conn) {
            Some(conn) if conn.broken.is_none() && matches!(conn.role, Role::Load { .. }) => {
                // A second handover before the first was used replaces it; the first
                // stream closes unused.
                conn.replacement = Some(stream);
            }
            Some(_) => {}
            None => tally.fail(format!("a stream handed over for connection {conn}, which this worker lacks")),
        }
    }
    any
}

/// Swaps in the handed-over stream of every connection that has nothing in flight and
/// nothing left to write: the old socket is closed (the server sees the peer leave) and
/// the connection carries on over the new one. Returns true if and only if it swapped.
fn replace_streams(poll: &Poll, conns: &mut [Conn], tally: &mut Tally) -> Result<bool> {
    let mut swapped = false;
    for (index, conn) in conns.iter_mut().enumerate() {
        if conn.replacement.is_none() || conn.in_flight > 0 || conn.output_sent < conn.output.len() {
            continue;
        }
        let stream = conn.replacement.take().expect("checked above");
        if conn.broken.is_some() {
            continue;
        }
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        poll.registry().deregister(&mut conn.stream)?;
        let mut stream = TcpStream::from_std(stream);
        poll.registry().register(&mut stream, Token(index), Interest::READABLE | Interest::WRITABLE)?;
        // Dropping the old stream closes it; every reply it carried has been read.
        drop(std::mem::replace(&mut conn.stream, stream));
        conn.output.clear();
        conn.output_sent = 0;
        conn.write_blocked = false;
        conn.input_start = 0;
        conn.input_end = 0;
        tally.reconnects += 1;
        swapped = true;
    }
    Ok(swapped)
}

/// A Cairn subscriber says PING once per [`KEEPALIVE_INTERVAL`]; its reply is skipped
/// like any other reply a subscriber gets.
fn keepalive(phase: &Phase, conn: &mut Conn, now: u64) {
    if !matches!(conn.role, Role::Subscriber { .. }) || !matches!(phase.codec, Codec::Cairn { .. }) {
        return;
    }
    if now < conn.next_keepalive_ns || conn.broken.is_some() {
        return;
    }
    conn.next_keepalive_ns = now + KEEPALIVE_INTERVAL.as_nanos() as u64;
    let id = conn.next_id;
    conn.next_id = if id == u32::MAX { 1 } else { id + 1 };
    cairn_target::encode_ping(id, &mut conn.output);
}

/// How long `poll` may block: not at all when a send is due within 2 ms or requests are
/// in flight in an open loop (a reply must be stamped when it arrives, not when a
/// timer fires), otherwise until shortly before the next due time.
fn poll_timeout(
    phase: &Phase,
    conns: &[Conn],
    schedules: &[Option<Schedule>],
    now: u64,
    sending: bool,
) -> Option<Duration> {
    const SPIN_WINDOW_NS: u64 = 2_000_000;
    const WAKE_EARLY_NS: u64 = 1_000_000;
    if !sending {
        return Some(Duration::from_millis(1));
    }
    match phase.mode {
        // A full window waits in epoll: it wakes as soon as a reply arrives, and the
        // cores stay with the server meanwhile.
        Mode::Closed { pipeline } => {
            let room = conns
                .iter()
                .any(|conn| matches!(conn.role, Role::Load { .. }) && conn.in_flight < pipeline && conn.can_send());
            Some(if room { Duration::ZERO } else { Duration::from_millis(1) })
        }
        Mode::Open { .. } => {
            let next = schedules.iter().flatten().map(Schedule::next_due_ns).min().unwrap_or(phase.end_ns);
            let gap = next.saturating_sub(now).min(phase.end_ns.saturating_sub(now));
            if phase.idle == Idle::Sleep {
                return Some(Duration::from_nanos(gap));
            }
            if conns.iter().any(|conn| conn.in_flight > 0) {
                return Some(Duration::ZERO);
            }
            if gap > SPIN_WINDOW_NS {
                Some(Duration::from_nanos(gap - WAKE_EARLY_NS))
            } else {
                Some(Duration::ZERO)
            }
        }
    }
}

/// Requests of `schedule` due before the phase's window closed and not yet sent.
fn owed(phase: &Phase, schedule: Option<&Schedule>) -> u64 {
    schedule.map_or(0, |schedule| schedule.due_before(phase.end_ns))
}

/// Queues this connection's due requests; returns true if and only if it queued any.
fn send_due(phase: &Phase, conn: &mut Conn, schedule: Option<&mut Schedule>, now: u64, tally: &mut Tally) -> bool {
    if !matches!(conn.role, Role::Load { .. }) {
        return false;
    }
    let mut queued = false;
    match (phase.mode, schedule) {
        (Mode::Open { .. }, Some(schedule)) => {
            // Only requests due before the window closes, also when sending after it.
            let due_max = now.min(phase.end_ns.saturating_sub(1));
            while schedule.next_due_ns() <= due_max && conn.can_send() {
                let due = schedule.take_due(due_max).expect("checked due");
                send_one(phase, conn, due, now, tally);
                queued = true;
            }
        }
        (Mode::Closed { pipeline }, _) => {
            while conn.in_flight < pipeline && conn.can_send() {
                send_one(phase, conn, now, now, tally);
                queued = true;
            }
        }
        (Mode::Open { .. }, None) => unreachable!("every load connection has a schedule in an open loop"),
    }
    queued
}

fn send_one(phase: &Phase, conn: &mut Conn, intended_ns: u64, now: u64, tally: &mut Tally) {
    let Role::Load { players, .. } = &mut conn.role else { unreachable!("only load connections send") };
    let (local, op) = players.next_op(phase.world);
    let id = conn.next_id;
    // Id 0 means "no request" in Cairn's errors; skip it when the counter wraps.
    conn.next_id = if id == u32::MAX { 1 } else { id + 1 };
    phase.codec.encode(phase.world, &op, id, &mut conn.output);
    let slot = &mut conn.pending[id as usize % PENDING_MAX];
    assert!(slot.is_none(), "can_send checked the slot");
    *slot = Some(Pending { id, op, local: local as u32, intended_ns, sent_ns: now, recorded: phase.record });
    conn.in_flight += 1;
    tally.sent += 1;
}

/// Writes queued output until the socket pushes back; returns true if and only if it
/// wrote anything.
fn flush(conn: &mut Conn) -> bool {
    let mut wrote = false;
    while conn.output_sent < conn.output.len() && !conn.write_blocked && conn.broken.is_none() {
        match conn.stream.write(&conn.output[conn.output_sent..]) {
            Ok(0) => conn.broken = Some("the server stopped accepting bytes".into()),
            Ok(written) => {
                conn.output_sent += written;
                wrote = true;
            }
            // Edge-triggered: wait for the writable event before trying again.
            Err(error) if error.kind() == ErrorKind::WouldBlock => conn.write_blocked = true,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => conn.broken = Some(format!("write failed: {error}")),
        }
    }
    if conn.output_sent == conn.output.len() {
        conn.output.clear();
        conn.output_sent = 0;
    } else if conn.output_sent > OUTPUT_BYTES_MAX {
        conn.output.drain(..conn.output_sent);
        conn.output_sent = 0;
    }
    wrote
}

/// Reads everything available (the poll is edge-triggered) and handles every whole
/// reply; returns the number of replies to requests.
fn read_replies(phase: &Phase, conn: &mut Conn, tally: &mut Tally, interval: &mut Histogram<u64>) -> Result<u64> {
    let mut acked = 0;
    loop {
        if conn.input_end == conn.input.len() {
            // Keep the unparsed tail and make room behind it.
            conn.input.copy_within(conn.input_start..conn.input_end, 0);
            conn.input_end -= conn.input_start;
            conn.input_start = 0;
        }
        let result = conn.stream.read(&mut conn.input[conn.input_end..]);
        let now = phase.now_ns();
        match result {
            Ok(0) => {
                if conn.broken.is_none() {
                    conn.broken = Some("the server closed the connection".into());
                }
                return Ok(acked);
            }
            Ok(read) => {
                conn.input_end += read;
                acked += handle_replies(phase, conn, now, tally, interval)?;
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(acked),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => {
                conn.broken = Some(format!("read failed: {error}"));
                return Ok(acked);
            }
        }
    }
}

fn handle_replies(
    phase: &Phase,
    conn: &mut Conn,
    now: u64,
    tally: &mut Tally,
    interval: &mut Histogram<u64>,
) -> Result<u64> {
    let mut acked = 0;
    while let Some((used, reply)) = phase.codec.parse(&conn.input[conn.input_start..conn.input_end])? {
        conn.input_start += used;
        if let Ack::Push { hunt, seq } = reply.ack {
            tally.pushes += 1;
            if let Role::Subscriber { last_seq } = &mut conn.role {
                let last = last_seq.entry(hunt).or_insert(seq.saturating_sub(1));
                tally.push_gaps += seq.saturating_sub(*last + 1);
                *last = (*last).max(seq);
            }
            continue;
        }
        if let Ack::Gap { missed } = reply.ack {
            tally.push_gaps += missed;
            continue;
        }
        if matches!(conn.role, Role::Subscriber { .. }) {
            // Subscription confirmations and the like.
            continue;
        }
        let id = match reply.id {
            Some(id) => id,
            None if phase.codec.in_order() => {
                let id = conn.next_reply;
                conn.next_reply = if id == u32::MAX { 1 } else { id + 1 };
                id
            }
            None => {
                // A request-less failure (a GOODBYE) ends the connection.
                if let Ack::Failed(message) = reply.ack {
                    conn.broken = Some(message);
                }
                continue;
            }
        };
        let Some(pending) = conn.pending[id as usize % PENDING_MAX].take_if(|pending| pending.id == id) else {
            bail!("a reply to request {id}, which is not in flight");
        };
        conn.in_flight -= 1;
        tally.acked += 1;
        acked += 1;
        if now <= phase.end_ns {
            tally.acked_in_window += 1;
        }
        if pending.recorded {
            latency::record(&mut tally.latency, now - pending.intended_ns);
            latency::record(&mut tally.service, now - pending.sent_ns);
            latency::record(interval, now - pending.intended_ns);
        }
        apply_ack(phase, conn, &pending, reply.ack, tally);
    }
    if conn.input_start == conn.input_end {
        conn.input_start = 0;
        conn.input_end = 0;
    }
    Ok(acked)
}

/// Enters an acknowledgement into the ledger and the counters.
fn apply_ack(phase: &Phase, conn: &mut Conn, pending: &Pending, ack: Ack, tally: &mut Tally) {
    let Role::Load { ledger, .. } = &mut conn.role else { return };
    let local = pending.local as usize;
    match (pending.op, ack) {
        (Op::Dig { hunt, player, treasure, .. }, Ack::Award { points }) => {
            let index = phase.world.treasure_index(hunt, treasure);
            ledger.award(index, local, points, || format!("player {player} of hunt {hunt}, treasure {treasure}"));
        }
        (Op::Adjust { delta, .. }, Ack::Done) => ledger.adjust(local, delta as i64),
        (_, Ack::Rejected(code)) => *tally.rejections.entry(code).or_default() += 1,
        (op, Ack::Failed(message)) => tally.fail(format!("{op:?}: {message}")),
        // The null server acknowledges everything without deciding anything.
        (Op::Dig { .. }, Ack::Done) if !matches!(phase.codec, Codec::Null) => {
            tally.fail(format!("{:?}: acknowledged without an award or a refusal", pending.op))
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    /// A world of one hunt of 100 players, all on one load connection.
    fn world() -> World {
        let mut scenario = Scenario::default_for_tests();
        scenario.hunts = 1;
        scenario.players_per_hunt = 100;
        scenario.connections = 1;
        scenario.subscribers = 0;
        World::new(&scenario)
    }

    /// A null server on a real socket that reads nothing for `stall`, then answers every
    /// frame until the client leaves.
    fn stalling_null_server(stall: Duration) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            std::thread::sleep(stall);
            let (mut input, mut output, mut chunk) = (Vec::new(), Vec::new(), vec![0u8; 64 * 1024]);
            loop {
                let read = match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(read) => read,
                };
                input.extend_from_slice(&chunk[..read]);
                let used = crate::null_server::answer(&input, &mut output).unwrap();
                input.drain(..used);
                if stream.write_all(&output).is_err() {
                    return;
                }
                output.clear();
            }
        });
        (addr, handle)
    }

    #[test]
    fn requests_due_in_the_window_are_sent_and_timed_even_when_the_server_holds_them_back() {
        // 40 000 requests fall due in a 1 s window, but the server reads nothing for
        // 1.3 s, so the connection's pending table (PENDING_MAX) fills long before the
        // window closes. Every request due in the window must still be sent, and its
        // latency recorded from its due time; dropping the ones that could not leave in
        // time hides the stall from the percentiles (coordinated omission).
        const RATE: u64 = 40_000;
        const WINDOW: Duration = Duration::from_secs(1);
        assert!(RATE as usize > 2 * PENDING_MAX);
        let world = world();
        let (addr, server) = stalling_null_server(WINDOW + Duration::from_millis(300));
        let stream = std::net::TcpStream::connect(addr).unwrap();
        let players = Players::new(&world, 0, 1);
        let ledger = Ledger::new(&world, players.players.len());
        let mut conns = vec![Conn::new(stream, Role::Load { index: 0, players, ledger }).unwrap()];
        let clock = Instant::now();
        let start_ns = 1_000_000;
        let phase = Phase {
            world: &world,
            codec: &Codec::Null,
            mode: Mode::Open { rate: RATE },
            clock,
            start_ns,
            end_ns: start_ns + WINDOW.as_nanos() as u64,
            load_connections: 1,
            record: true,
            idle: Idle::Sleep,
        };
        let (sender, _receiver) = std::sync::mpsc::channel();
        let tally = work(&phase, &mut conns, &sender, None).unwrap();
        drop(conns);
        server.join().unwrap();
        assert_eq!((tally.errors, tally.lost), (0, 0), "{:?}", tally.failures);
        assert_eq!(tally.sent, RATE, "every request due in the window is sent");
        assert_eq!(tally.acked, RATE);
        assert_eq!(tally.latency.len(), RATE, "and timed from its due time");
        // The last request was due just before the window closed and waited for the
        // server's 300 ms beyond it at least.
        assert!(tally.latency.max() >= 300_000_000, "{}", tally.latency.max());
    }
}
