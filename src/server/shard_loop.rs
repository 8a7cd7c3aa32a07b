//! One shard's event loop: poll, read, decode, route, apply, reply, push, write.
//!
//! Each turn reads the clock once, then: accepts new connections; drains the REPLY rings
//! from every other shard (replies and pushes for this shard's connections, never
//! blocked by anything); drains the REQUEST rings (events for hunts this shard owns,
//! taken only while the reply ring back has room for the largest reply); decodes the
//! ready connections within the turn's budgets, applying local events at once and
//! handing remote ones to the owner's ring; commits the journal; writes pending output;
//! and wakes each shard it handed work to, once. A full ring, a full output buffer or too many requests in
//! flight stop decoding one connection (its bytes wait, TCP pushes back); nothing is
//! dropped except pushes to subscribers that do not read, which are owed as GAPs, and
//! pushes to another shard whose reply ring is full (but a DELETE_HUNT waits for room for
//! its deletion push, which ends the subscriptions there).
//! Every `TIMEOUT_SWEEP_INTERVAL_US` a turn also sweeps the connections for timeouts (no
//! HELLO, a frame that never completes, output nobody reads, idle) and says GOODBYE.
//!
//! Durability: every mutating event that reaches `Shard::apply` is appended to the
//! shard's journal (rejected ones too, since applying can move a hunt's phase and its
//! notice sequences before a rule refuses). Nothing that depends on the turn's events
//! leaves the shard before the turn's one commit: local replies and pushes wait in the
//! connections' output buffers, which are written after the commit, and replies and
//! pushes for other shards are staged and pushed onto their rings after it. Queries wait
//! for the commit too: their answers may show the turn's uncommitted events, and a
//! commit costs one write (and one fdatasync) per turn, not per event. In `fsync` mode
//! the fdatasync runs on the shard's sync thread (`durable::SyncThread`) while the loop
//! goes on: the events of the turns it overlaps form the next commit group, whose output
//! is held (and whose ring records are staged) apart from the syncing group's, and each
//! group is let go when the sync covering it reports. A full disk keeps the uncommitted
//! replies held (`Connection::hold`) and refuses new mutations with `disk_full` until a
//! retried commit succeeds; any other journal error, and any failed fdatasync, stops the
//! server.
//!
//! Nothing on this path allocates in steady state: buffers belong to connections
//! (allocated on accept), rings and scratch buffers are allocated at start, histograms
//! have fixed bounds. STATS and new subscriptions are slow paths and may allocate.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest as Readiness, Poll, Token};

use crate::alloc;
use crate::constants::{
    ACCEPTS_PER_TURN_MAX, CONNECTIONS_PER_TURN_MAX, DELETION_RING_BYTES_MAX, DISK_FULL_RETRY_INTERVAL_US,
    FRAMES_PER_CONNECTION_PER_TURN_MAX, GOODBYE_LINGER_US, NOTICES_PER_EVENT_MAX, POLL_EVENTS_MAX,
    RECORDS_PER_RING_PER_TURN_MAX, SHUTDOWN_DRAIN_US, STATS_SNAPSHOT_INTERVAL_US, SUBSCRIPTIONS_PER_CONNECTION_MAX,
    TIMEOUT_SWEEP_INTERVAL_US,
};
use crate::event::{Event, EventKind, HuntId};
use crate::journal::{FileStorage, JournalError, Writer};
use crate::outcome::{Lifecycle, Notice, NoticeKind, Outcome, Rejection, Topic};
use crate::protocol::{
    decode_request, decode_response, encode_error, encode_goodbye, encode_hello_reply, encode_notice, encode_outcome,
    encode_pong, encode_protocol_error, encode_rejection, encode_stats_reply, encode_subscribed, encode_unsubscribed,
    negotiate, next_frame, reply_wanted, request_id_of, ErrorCode, FrameHeader, ProtocolError, PushBody, Request,
    Response, ServerHello, FLAG_MARK,
};
use crate::shard::{shard_for, Shard};

use super::auth::{requires_admin, role_for, Role};
use super::clock::ShardClock;
use super::connection::{Blocked, Connection};
use super::durable::SyncThread;
use super::ring::{record_size, RecordHeader, RecordKind, RingConsumer, RingProducer, Staged, PAYLOAD_SIZE_MAX};
use super::slab::Slab;
use super::stats::{self, ShardStats};
use super::subscriptions::{Interest, LocalSubscribers, Subscribed, Subscriber};
use super::Shared;

/// The token of the shard's listener.
pub const LISTENER: Token = Token(usize::MAX - 1);

/// The token of the shard's waker, which other shards (and shutdown) trigger.
pub const WAKER: Token = Token(usize::MAX);

/// How long a shard sleeps at most while shutting down, waiting on the others.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Record flag of a SUBSCRIBE: the sender just gained its first subscriber of the hunt.
const SUBSCRIBE_FIRST_ON_SHARD: u8 = 1;

/// Flag on a SUBSCRIBED record: the owner refused (no such hunt); the payload is the
/// error frame, and the subscriber's shard undoes the subscription.
const SUBSCRIBE_REFUSED: u8 = 2;

/// One shard's ends of the ring mesh, indexed by the other shard (`None` for itself).
pub struct ShardRings {
    /// Requests to shard j.
    pub request_out: Vec<Option<RingProducer>>,
    /// Requests from shard j.
    pub request_in: Vec<Option<RingConsumer>>,
    /// Replies and pushes to shard j.
    pub reply_out: Vec<Option<RingProducer>>,
    /// Replies and pushes from shard j.
    pub reply_in: Vec<Option<RingConsumer>>,
}

/// Where a shard is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Shutdown was asked: no accepting, no reading; frames already read are served.
    Draining {
        since_us: u64,
        quiet: bool,
    },
    /// Every shard is done (or the deadline passed): GOODBYE sent, closing.
    Closing {
        since_us: u64,
    },
}

/// What decoding one frame decided.
enum Step {
    /// Nothing more to decode now.
    Stop,
    /// The frame was consumed; go on.
    Next,
    /// A ring to the owner is full: the frame stays unread; try again next turn.
    Stall,
    /// A local event to apply (the frame was consumed).
    Apply { request_id: u32, flags: u8, event: Event },
}

/// A request answered by the connection's own shard, whatever the hunt. A HELLO's `role`
/// is what its token earns, `None` if the token is refused.
#[derive(Clone, Copy, Debug)]
enum Control {
    Hello { version_min: u16, version_max: u16, role: Option<Role> },
    Ping,
    Stats { mark: bool },
    Unsubscribe { hunt: HuntId },
}

/// One shard thread's whole state.
pub struct ShardLoop {
    index: usize,
    shard_count: usize,
    shared: Arc<Shared>,
    poll: Poll,
    listener: Option<TcpListener>,
    engine: Shard,
    /// The journal; `None` with durability `none`.
    writer: Option<Writer<FileStorage>>,
    /// The last commit failed for a full disk: records are pending, their replies held,
    /// and new mutations are refused until a retried commit succeeds.
    disk_full: bool,
    /// The journal sequence number at or after which the next snapshot is written.
    snapshot_due_seq: u64,
    /// Connections with output held in the current commit group.
    held: Vec<u32>,
    /// The commit group output produced now belongs to.
    hold_group: u64,
    /// `fsync` mode: the thread running each commit's fdatasync.
    syncer: Option<SyncThread>,
    /// The running sync: the sequence number and the group it covers once done.
    syncing: Option<(u64, u64)>,
    /// The group whose records met a full disk: it waits in the syncing slots (free,
    /// since nothing syncs while records wait to be written) until a retried write
    /// succeeds, while refusals and query answers of later turns go out each turn.
    stuck_group: Option<u64>,
    /// Connections with output held in the syncing group.
    held_syncing: Vec<u32>,
    /// Replies and pushes for each other shard in the syncing group.
    staged_syncing: Vec<Staged>,
    connections: Slab<Connection>,
    rings: ShardRings,
    /// Replies and pushes for each other shard, pushed after the turn's commit.
    staged: Vec<Staged>,
    clock: ShardClock,
    stats: ShardStats,
    allocations: alloc::Scope,
    interest: Interest,
    local: LocalSubscribers,
    /// Last notice sequence per topic of each hunt this shard owns, for SUBSCRIBE replies.
    ready: Vec<u32>,
    ready_next: Vec<u32>,
    dirty: Vec<u32>,
    wake: Vec<bool>,
    more_work: bool,
    notices: Vec<Notice>,
    push: Vec<u8>,
    reply: Vec<u8>,
    payload: Vec<u8>,
    pending_interest_drops: Vec<(usize, HuntId)>,
    slow: Vec<u32>,
    to_close: Vec<u32>,
    local_events: [u64; EventKind::COUNT],
    last_snapshot_us: u64,
    /// When the connections were last swept for timeouts.
    last_sweep_us: u64,
    /// The ERROR frame a connection over the limit gets, encoded once.
    refusal: Vec<u8>,
    phase: Phase,
}

impl ShardLoop {
    /// A shard's loop, ready to run (allocates everything the steady state uses), over
    /// `engine` (recovered or empty) and its journal `writer` (none without durability).
    // Each argument is a distinct part handed over once at start; a struct for them would
    // only be unpacked here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        index: usize,
        shared: Arc<Shared>,
        poll: Poll,
        listener: TcpListener,
        rings: ShardRings,
        engine: Shard,
        writer: Option<Writer<FileStorage>>,
        syncer: Option<SyncThread>,
    ) -> ShardLoop {
        let shard_count = shared.config.shards;
        let connections_max = shared.config.connections_per_shard_max;
        let ring_size_bytes = shared.config.ring_size_bytes;
        // Saturating: an interval of u64::MAX events means never, not a wrapped sum.
        let snapshot_due_seq = writer
            .as_ref()
            .map_or(0, |writer| writer.snapshot_seq())
            .saturating_add(shared.config.snapshot_interval_events);
        let clock = ShardClock::new(shared.epoch, writer.as_ref().map_or(0, |writer| writer.last_time()));
        if clock.ahead_of_wall_clock_us() > 0 {
            super::log_line(format_args!(
                "cairn: shard {index}: the journal's last event time is {} us ahead of the clock; event time \
                 stays there until the clock catches up, so it never goes backwards",
                clock.ahead_of_wall_clock_us()
            ));
        }
        let staged = || -> Vec<Staged> {
            (0..shard_count).map(|target| Staged::new(if target == index { 0 } else { ring_size_bytes })).collect()
        };
        ShardLoop {
            staged: staged(),
            staged_syncing: staged(),
            syncer,
            syncing: None,
            stuck_group: None,
            hold_group: 1,
            held_syncing: Vec::with_capacity(connections_max),
            writer,
            disk_full: false,
            snapshot_due_seq,
            held: Vec::with_capacity(connections_max),
            index,
            shard_count,
            clock,
            shared,
            poll,
            listener: Some(listener),
            engine,
            connections: Slab::new(connections_max),
            rings,
            stats: ShardStats::default(),
            allocations: alloc::Scope::start(),
            interest: Interest::new(shard_count),
            local: LocalSubscribers::new(),
            ready: Vec::with_capacity(connections_max),
            ready_next: Vec::with_capacity(connections_max),
            dirty: Vec::with_capacity(connections_max),
            wake: vec![false; shard_count],
            more_work: false,
            notices: Vec::with_capacity(NOTICES_PER_EVENT_MAX),
            push: Vec::with_capacity(PAYLOAD_SIZE_MAX),
            reply: Vec::with_capacity(PAYLOAD_SIZE_MAX),
            payload: Vec::with_capacity(PAYLOAD_SIZE_MAX),
            pending_interest_drops: Vec::new(),
            slow: Vec::with_capacity(connections_max),
            to_close: Vec::with_capacity(connections_max),
            local_events: [0; EventKind::COUNT],
            last_snapshot_us: 0,
            last_sweep_us: 0,
            refusal: {
                let mut frame = Vec::new();
                let code = ErrorCode::TooManyConnections;
                encode_error(0, code.to_u16(), &code, &mut frame);
                frame
            },
            phase: Phase::Serving,
        }
    }

    /// Runs until shutdown has finished.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(POLL_EVENTS_MAX);
        loop {
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                // A signal arrived during the wait: just turn again.
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
            self.clock.tick();
            for event in events.iter() {
                self.on_readiness(event);
            }
            if !self.turn()? {
                break;
            }
        }
        self.snapshot();
        self.finish_sync()?;
        self.snapshot_journal(true)
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.more_work || !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        if self.phase != Phase::Serving {
            return Some(DRAIN_POLL);
        }
        if self.disk_full {
            return Some(Duration::from_micros(DISK_FULL_RETRY_INTERVAL_US));
        }
        let next_snapshot = self.last_snapshot_us + STATS_SNAPSHOT_INTERVAL_US;
        let next_sweep = self.last_sweep_us + TIMEOUT_SWEEP_INTERVAL_US;
        let next = next_snapshot.min(next_sweep);
        Some(Duration::from_micros(next.saturating_sub(self.clock.read()).max(1)))
    }

    fn on_readiness(&mut self, event: &mio::event::Event) {
        match event.token() {
            // Rings are drained every turn; the wake only ended the wait.
            WAKER => {}
            LISTENER => self.more_work = true,
            Token(index) => {
                let index = index as u32;
                let Some(connection) = self.connections.get_mut(index) else { return };
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    connection.readable = true;
                    schedule(&mut self.ready, connection, index);
                }
                if event.is_writable() && connection.pending_output() > 0 {
                    mark_dirty(&mut self.dirty, connection, index);
                }
            }
        }
    }

    /// One loop turn after a poll. Returns false once the shard has finished.
    fn turn(&mut self) -> io::Result<bool> {
        self.more_work = false;
        self.check_shutdown();
        if self.phase == Phase::Serving {
            self.accept();
        }
        self.retry_interest_drops();
        self.drain_replies();
        self.drain_requests();
        self.decode_ready();
        // Local latency includes the commit, as a remote reply's does (its owner
        // committed before pushing it).
        self.commit()?;
        self.record_local_latency();
        self.flush_dirty();
        for (target, wake) in self.wake.iter_mut().enumerate() {
            if std::mem::take(wake) {
                // A shard that has exited has nothing left to be woken for.
                let _ = self.shared.wakers[target].wake();
            }
        }
        if self.clock.monotonic_us() >= self.last_snapshot_us + STATS_SNAPSHOT_INTERVAL_US {
            self.snapshot();
        }
        if self.clock.monotonic_us() >= self.last_sweep_us + TIMEOUT_SWEEP_INTERVAL_US {
            self.sweep_timeouts();
        }
        Ok(self.advance_shutdown())
    }

    // -----------------------------------------------------------------------------------
    // Accepting and closing.

    fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_TURN_MAX {
            let Some(listener) = self.listener.as_ref() else { return };
            let (stream, _) = match listener.accept() {
                Ok(accepted) => accepted,
                // No more pending connections: the next readable event brings more.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                // The peer gave up before we accepted, or a signal: try the next one.
                Err(error) if matches!(error.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted) => {
                    continue
                }
                // Out of descriptors or memory: leave the rest queued in the kernel and
                // serve the connections we have. Every turn accepts again, and a turn
                // comes at least every `TIMEOUT_SWEEP_INTERVAL_US`, so a connection left
                // queued does not wait for another to arrive.
                Err(_) => return,
            };
            self.admit(stream);
        }
        self.more_work = true;
    }

    /// Takes a new connection in, or refuses it. A socket that cannot be set up (the
    /// option refused, or the poll unable to watch it: out of memory, or past the user's
    /// `max_user_watches`) is closed and logged: that is the one connection's problem, and
    /// the shard goes on serving the others.
    fn admit(&mut self, stream: TcpStream) {
        // Replies are small and latency matters more than packet count.
        if let Err(error) = stream.set_nodelay(true) {
            self.fail_connection("set TCP_NODELAY on", &error);
            return;
        }
        let open = &self.shared.connections_open;
        let shard_full = self.connections.len() >= self.shared.config.connections_per_shard_max;
        if shard_full || open.fetch_add(1, Ordering::AcqRel) >= self.shared.config.connections_max {
            if !shard_full {
                open.fetch_sub(1, Ordering::AcqRel);
            }
            self.refuse_connection(stream);
            return;
        }
        let registry = self.poll.registry();
        let now_us = self.clock.monotonic_us();
        let inserted = self.connections.insert_with(|_, generation| Connection::new(stream, generation, now_us));
        let (index, _) = inserted.expect("the shard's room was checked above");
        let connection = self.connections.get_mut(index).expect("just inserted");
        let interest = Readiness::READABLE | Readiness::WRITABLE;
        if let Err(error) = registry.register(&mut connection.stream, Token(index as usize), interest) {
            // Never registered, so nothing to deregister: dropping the stream closes it.
            drop(self.connections.remove(index));
            open.fetch_sub(1, Ordering::AcqRel);
            self.fail_connection("watch", &error);
            return;
        }
        self.stats.counters.connections_accepted += 1;
        schedule(&mut self.ready, connection, index);
    }

    /// A new connection this shard could not set up, already closed: counted and logged.
    fn fail_connection(&mut self, what: &str, error: &io::Error) {
        self.stats.counters.connections_failed += 1;
        super::log_line(format_args!(
            "cairn: shard {}: closed a new connection: cannot {what} it: {error}",
            self.index
        ));
    }

    /// Tells a connection over the limit why, and closes it. A slow path, but it takes
    /// no allocation: the frame was encoded at start.
    fn refuse_connection(&mut self, mut stream: TcpStream) {
        use std::io::{Read, Write};
        self.stats.counters.connections_refused += 1;
        // A new socket's send buffer is empty, so this small frame goes out whole; if the
        // peer is already gone there is no one to tell.
        let _ = stream.write(&self.refusal);
        // Our FIN follows the frame. Reading what the peer already sent first keeps the
        // close from turning into a reset that could overtake the frame.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut scratch = [0u8; 1024];
        let _ = stream.read(&mut scratch);
    }

    fn close(&mut self, index: u32) {
        let Some(mut connection) = self.connections.remove(index) else { return };
        self.shared.connections_open.fetch_sub(1, Ordering::AcqRel);
        // Deregistering a socket about to be closed cannot fail in a way we could act on.
        let _ = self.poll.registry().deregister(&mut connection.stream);
        connection.discard_unread_input();
        for hunt in connection.subscriptions.drain(..) {
            if self.local.unsubscribe(hunt, index) == Some(true) {
                self.drop_interest(hunt);
            }
        }
        self.stats.counters.connections_closed += 1;
    }

    /// The coarse timeout sweep, every `TIMEOUT_SWEEP_INTERVAL_US`: one pass over the
    /// slab's slots, no allocation. Each connection's deadlines are fields it already
    /// keeps (see [`Timeouts::verdict`]); a timer wheel would save the pass but cost a
    /// re-arm on every read and write, which happen far more often than sweeps.
    /// Shutdown has deadlines of its own, so the sweep only runs while serving.
    fn sweep_timeouts(&mut self) {
        let now_us = self.clock.monotonic_us();
        self.last_sweep_us = now_us;
        if self.phase != Phase::Serving {
            return;
        }
        let timeouts = Timeouts::of(&self.shared.config);
        for index in 0..self.connections.slot_count() {
            let Some(connection) = self.connections.get_mut(index) else { continue };
            match timeouts.verdict(connection, now_us) {
                Verdict::Keep => {}
                Verdict::Close => self.close(index),
                Verdict::Goodbye(code) => {
                    self.stats.counters.connections_timed_out += 1;
                    self.goodbye(index, code);
                    // The GOODBYE goes out on the next turn, without waiting for an event.
                    self.more_work = true;
                }
            }
        }
    }

    /// This shard has no subscriber of `hunt` left: tell its owner.
    fn drop_interest(&mut self, hunt: HuntId) {
        let owner = shard_for(hunt, self.shard_count);
        if owner != self.index {
            self.pending_interest_drops.push((owner, hunt));
        }
    }

    fn retry_interest_drops(&mut self) {
        let mut index = 0;
        while index < self.pending_interest_drops.len() {
            let (owner, hunt) = self.pending_interest_drops[index];
            let header = RecordHeader { hunt, ..RecordHeader::new(RecordKind::InterestDropped) };
            let ring = self.rings.request_out[owner].as_mut().expect("a ring to every other shard");
            if ring.try_push(&header, &[]).is_ok() {
                self.wake[owner] = true;
                self.pending_interest_drops.swap_remove(index);
            } else {
                self.more_work = true;
                index += 1;
            }
        }
    }

    /// Sends GOODBYE after the frame being written and stops serving the connection.
    fn goodbye(&mut self, index: u32, code: ErrorCode) {
        let Some(connection) = self.connections.get_mut(index) else { return };
        if connection.closing {
            return;
        }
        connection.cut_unstarted();
        encode_goodbye(code.to_u16(), &code, connection.output());
        connection.closing = true;
        mark_dirty(&mut self.dirty, connection, index);
    }

    // -----------------------------------------------------------------------------------
    // Decoding connections.

    fn decode_ready(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        let mut next = std::mem::take(&mut self.ready_next);
        let mut processed = 0;
        for &index in &ready {
            let Some(connection) = self.connections.get_mut(index) else { continue };
            connection.in_ready = false;
            if processed == CONNECTIONS_PER_TURN_MAX {
                schedule(&mut next, connection, index);
                continue;
            }
            processed += 1;
            if self.serve_connection(index) {
                if let Some(connection) = self.connections.get_mut(index) {
                    schedule(&mut next, connection, index);
                }
            }
        }
        ready.clear();
        // Connections scheduled while serving (replies unblocking them) join next turn's.
        for &index in &self.ready {
            next.push(index);
        }
        self.ready.clear();
        self.ready_next = ready;
        self.ready = next;
    }

    /// Reads and decodes one connection within the turn's budget. Returns true if and
    /// only if it should be served again next turn without waiting for readiness.
    fn serve_connection(&mut self, index: u32) -> bool {
        // While draining, requests already in the kernel's buffer were sent before the
        // shutdown and are served too; the drain deadline bounds a peer that keeps sending.
        let reading = !matches!(self.phase, Phase::Closing { .. });
        let connection = self.connections.get_mut(index).expect("scheduled connections exist");
        if reading && connection.readable && !connection.peer_closed && !connection.closing {
            match connection.fill() {
                Ok(filled) => {
                    self.stats.counters.read_syscalls += filled.reads;
                    connection.peer_closed |= filled.eof;
                    if filled.reads > 0 {
                        connection.last_input_us = self.clock.monotonic_us();
                    }
                }
                Err(_) => {
                    // Reset by the peer (or worse): it just goes away.
                    self.close(index);
                    return false;
                }
            }
        }
        let mut frames = 0;
        let mut again = false;
        while frames < FRAMES_PER_CONNECTION_PER_TURN_MAX {
            match self.decode_one(index) {
                Step::Stop => break,
                Step::Stall => {
                    again = true;
                    break;
                }
                Step::Next => {}
                Step::Apply { request_id, flags, event } => {
                    self.prefetch_next(index);
                    self.apply_local(index, request_id, flags, &event)
                }
            }
            frames += 1;
        }
        let Some(connection) = self.connections.get_mut(index) else { return false };
        connection.note_partial_frame(self.clock.monotonic_us());
        if frames == FRAMES_PER_CONNECTION_PER_TURN_MAX || (reading && connection.readable) {
            again = true;
        }
        if connection.pending_output() > 0 {
            mark_dirty(&mut self.dirty, connection, index);
        }
        // After the peer's EOF a partial frame can never complete: it does not keep the
        // connection open.
        let complete_frame = matches!(next_frame(connection.unread()), Ok(Some(_)));
        let idle = connection.closing || !complete_frame;
        if connection.peer_closed && idle && connection.inflight == 0 && connection.pending_output() == 0 {
            self.close(index);
            return false;
        }
        again && connection.blocked == Blocked::No
    }

    /// Prefetches the player of the connection's next frame, if it is a complete event
    /// frame (`Shard::prefetch`), so that its cache miss overlaps the work of the frame
    /// about to be applied; one frame ahead is enough here, as replying and journaling
    /// take longer than the miss. Changes nothing.
    fn prefetch_next(&mut self, index: u32) {
        let Some(connection) = self.connections.get_mut(index) else { return };
        if let Ok(Some(size)) = next_frame(connection.unread()) {
            if let Ok((_, Request::Event(event))) = decode_request(&connection.unread()[..size]) {
                self.engine.prefetch(&event);
            }
        }
    }

    /// Decodes the next frame of a connection, if it may be decoded now.
    fn decode_one(&mut self, index: u32) -> Step {
        let config = &self.shared.config;
        let connection = self.connections.get_mut(index).expect("served connections exist");
        if connection.closing {
            return Step::Stop;
        }
        if connection.pending_output() > config.output_buffer_bytes_high {
            connection.blocked = Blocked::Output;
            return Step::Stop;
        }
        if connection.inflight >= config.inflight_requests_per_connection_max {
            connection.blocked = Blocked::Inflight;
            return Step::Stop;
        }
        connection.blocked = Blocked::No;
        let size = match next_frame(connection.unread()) {
            Ok(Some(size)) => size,
            Ok(None) => return Step::Stop,
            Err(error) => {
                let request_id = request_id_of(connection.unread());
                self.refuse(index, request_id, &error);
                return Step::Stop;
            }
        };
        let (header, request) = match decode_request(&connection.unread()[..size]) {
            Ok(decoded) => decoded,
            Err(error) => {
                let request_id = request_id_of(connection.unread());
                connection.consume(size);
                // A first frame that is not a HELLO closes the connection (protocol.md
                // section 2), even when its error would leave a greeted one open.
                let greeted = connection.greeted;
                self.refuse(index, request_id, &error);
                if !greeted {
                    self.connections.get_mut(index).expect("refused connections exist").closing = true;
                    return Step::Stop;
                }
                return Step::Next;
            }
        };
        self.stats.counters.frames_read += 1;
        let request_id = header.request_id;
        if !connection.greeted && !matches!(request, Request::Hello { .. }) {
            connection.consume(size);
            self.stats.counters.protocol_errors += 1;
            self.fail(index, request_id, ErrorCode::HelloRequired);
            return Step::Stop;
        }
        if connection.role != Role::Admin && requires_admin(&request) {
            connection.consume(size);
            self.stats.counters.admin_refusals += 1;
            self.fail(index, request_id, ErrorCode::AdminRequired);
            return Step::Next;
        }
        match request {
            Request::Event(event) => {
                let owner = shard_for(event.hunt(), self.shard_count);
                if owner == self.index {
                    if event.is_mutation() && !journal_has_room(&self.writer) {
                        // The commit buffer is full for this turn; the frame waits for
                        // the next one rather than growing the buffer.
                        return Step::Stall;
                    }
                    if !deletion_fits(&event, &self.interest, &self.rings, &self.staged, &self.staged_syncing) {
                        self.stats.counters.ring_full_stalls += 1;
                        return Step::Stall;
                    }
                    connection.consume(size);
                    return Step::Apply { request_id, flags: header.flags, event };
                }
                let record = RecordHeader {
                    flags: header.flags,
                    event_kind: event.kind() as u8,
                    token: index,
                    generation: connection.generation,
                    request_id,
                    hunt: event.hunt(),
                    enqueue_us: self.clock.monotonic_us(),
                    ..RecordHeader::new(RecordKind::Request)
                };
                let ring = self.rings.request_out[owner].as_mut().expect("a ring to every other shard");
                if ring.try_push(&record, &connection.unread()[..size]).is_err() {
                    // Backpressure: the frame stays unread until the owner drains.
                    self.stats.counters.ring_full_stalls += 1;
                    return Step::Stall;
                }
                connection.consume(size);
                connection.inflight += 1;
                self.wake[owner] = true;
                Step::Next
            }
            Request::Subscribe { hunt, topics } => self.subscribe(index, size, header, hunt, topics),
            Request::Hello { version_min, version_max, token, .. } => {
                let role = role_for(config.auth_token.as_ref(), config.admin_token.as_ref(), token);
                connection.consume(size);
                self.control(index, request_id, Control::Hello { version_min, version_max, role });
                Step::Next
            }
            Request::Ping => {
                connection.consume(size);
                self.control(index, request_id, Control::Ping);
                Step::Next
            }
            Request::Stats => {
                connection.consume(size);
                let mark = header.flags & FLAG_MARK != 0;
                self.control(index, request_id, Control::Stats { mark });
                Step::Next
            }
            Request::Unsubscribe { hunt } => {
                connection.consume(size);
                self.control(index, request_id, Control::Unsubscribe { hunt });
                Step::Next
            }
        }
    }

    /// Answers a frame the decoder refused; closes the connection if the error says so.
    fn refuse(&mut self, index: u32, request_id: u32, error: &ProtocolError) {
        self.stats.counters.protocol_errors += 1;
        let connection = self.connections.get_mut(index).expect("refused connections exist");
        encode_protocol_error(request_id, error, connection.output());
        if error.closes_connection() {
            connection.closing = true;
        }
        mark_dirty(&mut self.dirty, connection, index);
    }

    /// Answers with a protocol error code; closes the connection if the code says so.
    fn fail(&mut self, index: u32, request_id: u32, code: ErrorCode) {
        let connection = self.connections.get_mut(index).expect("failed connections exist");
        encode_error(request_id, code.to_u16(), &code, connection.output());
        if code.closes_connection() {
            connection.closing = true;
        }
        mark_dirty(&mut self.dirty, connection, index);
    }

    /// HELLO, PING, STATS, UNSUBSCRIBE.
    fn control(&mut self, index: u32, request_id: u32, request: Control) {
        match request {
            Control::Hello { version_min, version_max, role } => {
                let connection = self.connections.get_mut(index).expect("served connections exist");
                if connection.greeted {
                    return self.fail(index, request_id, ErrorCode::UnexpectedHello);
                }
                let Some(role) = role else {
                    self.stats.counters.connections_unauthorized += 1;
                    return self.fail(index, request_id, ErrorCode::Unauthorized);
                };
                match negotiate(version_min, version_max) {
                    Some(_) => {
                        connection.greeted = true;
                        connection.role = role;
                        let hello = ServerHello::new(self.shard_count as u16);
                        encode_hello_reply(request_id, &hello, connection.output());
                    }
                    None => self.fail(index, request_id, ErrorCode::UnsupportedVersion),
                }
            }
            Control::Ping => {
                let connection = self.connections.get_mut(index).expect("served connections exist");
                encode_pong(request_id, connection.output());
            }
            Control::Stats { mark } => self.stats_reply(index, request_id, mark),
            Control::Unsubscribe { hunt } => {
                let connection = self.connections.get_mut(index).expect("served connections exist");
                if let Some(position) = connection.subscriptions.iter().position(|&known| known == hunt) {
                    connection.subscriptions.swap_remove(position);
                    if self.local.unsubscribe(hunt, index) == Some(true) {
                        self.drop_interest(hunt);
                    }
                }
                let connection = self.connections.get_mut(index).expect("served connections exist");
                encode_unsubscribed(request_id, connection.output());
            }
        }
    }

    fn subscribe(&mut self, index: u32, size: usize, header: FrameHeader, hunt: HuntId, topics: u8) -> Step {
        let owner = shard_for(hunt, self.shard_count);
        let request_id = header.request_id;
        let connection = self.connections.get_mut(index).expect("served connections exist");
        let known = connection.subscriptions.contains(&hunt);
        if !known && connection.subscriptions.len() >= SUBSCRIPTIONS_PER_CONNECTION_MAX as usize {
            connection.consume(size);
            self.fail(index, request_id, ErrorCode::TooManySubscriptions);
            return Step::Next;
        }
        if owner != self.index && !self.rings.request_out[owner].as_ref().expect("ring").has_room(0) {
            self.stats.counters.ring_full_stalls += 1;
            return Step::Stall;
        }
        connection.consume(size);
        let generation = connection.generation;
        if owner == self.index && self.engine.hunt(hunt).is_none() {
            let connection = self.connections.get_mut(index).expect("served connections exist");
            encode_rejection(request_id, &Rejection::HuntNotFound, connection.output());
            return Step::Next;
        }
        if !known {
            connection.subscriptions.push(hunt);
        }
        // For a hunt of another shard the new mask takes effect when the owner's answer
        // arrives, behind every notice the answer reports as issued (protocol.md 7.5);
        // until then the connection follows what it followed before, or nothing.
        let topics_now = if owner == self.index { topics } else { self.local.topics_of(hunt, index).unwrap_or(0) };
        let subscribed = self.local.subscribe(hunt, Subscriber { token: index, generation, topics: topics_now });
        if owner == self.index {
            let sequences = self.engine.topic_sequences(hunt).expect("checked above");
            let connection = self.connections.get_mut(index).expect("served connections exist");
            encode_subscribed(request_id, &sequences, connection.output());
            return Step::Next;
        }
        let first = subscribed == Subscribed::New { first_on_shard: true };
        let record = RecordHeader {
            flags: if first { SUBSCRIBE_FIRST_ON_SHARD } else { 0 },
            topics,
            token: index,
            generation,
            request_id,
            hunt,
            enqueue_us: self.clock.monotonic_us(),
            ..RecordHeader::new(RecordKind::Subscribe)
        };
        let ring = self.rings.request_out[owner].as_mut().expect("a ring to every other shard");
        ring.try_push(&record, &[]).expect("room was checked");
        let connection = self.connections.get_mut(index).expect("served connections exist");
        connection.inflight += 1;
        // A slow path (a subscription): the list may grow.
        connection.subscribes_inflight.push(hunt);
        self.wake[owner] = true;
        Step::Next
    }

    /// STATS: a slow path. Refreshes this shard's snapshot, builds the document from all
    /// of them, and keeps its own allocations out of the per-event count.
    fn stats_reply(&mut self, index: u32, request_id: u32, mark: bool) {
        let before = self.allocations.allocations();
        self.snapshot();
        let uptime_us = self.clock.read();
        let mut document = stats::document(&self.shared.snapshots, uptime_us, true);
        let connection = self.connections.get_mut(index).expect("served connections exist");
        if encode_stats_reply(request_id, &document, connection.output()).is_err() {
            document = stats::document(&self.shared.snapshots, uptime_us, false);
            if let Err(error) = encode_stats_reply(request_id, &document, connection.output()) {
                encode_protocol_error(request_id, &error, connection.output());
            }
        }
        drop(document);
        if mark {
            stats::mark(&self.shared.snapshots);
        }
        self.stats.allocations_excluded += self.allocations.allocations() - before;
    }

    // -----------------------------------------------------------------------------------
    // Applying events.

    fn apply_local(&mut self, index: u32, request_id: u32, flags: u8, event: &Event) {
        let kind = event.kind();
        if self.disk_full && event.is_mutation() {
            self.stats.counters.disk_full_refusals += 1;
            return self.fail(index, request_id, ErrorCode::DiskFull);
        }
        let outcome = apply_counted(&mut self.engine, &mut self.stats, &mut self.writer, event, self.clock.event_us());
        self.local_events[kind as usize] += 1;
        let connection = self.connections.get_mut(index).expect("served connections exist");
        // A query waits too while the journal holds uncovered events: its answer may
        // show them.
        let uncovered = self.writer.as_ref().is_some_and(|writer| writer.last_seq() > writer.covered_seq());
        if (self.writer.is_some() && event.is_mutation() || uncovered) && connection.hold(self.hold_group) {
            self.held.push(index);
        }
        if reply_wanted(flags, &outcome) {
            encode_outcome(request_id, kind, &outcome, connection.output());
        }
        self.after_apply();
    }

    /// Sends the notices of the event just applied to every interested subscriber.
    fn after_apply(&mut self) {
        if self.engine.notices().is_empty() {
            return;
        }
        self.notices.clear();
        self.notices.extend_from_slice(self.engine.notices());
        let notices = std::mem::take(&mut self.notices);
        for notice in &notices {
            self.push.clear();
            encode_notice(notice, &mut self.push);
            let topic = notice.kind.topic();
            // Pushes of a journaled event wait for its commit, like its reply.
            self.fan_out(notice.hunt, topic, notice.seq, self.writer.is_some());
            self.forward_notice(notice.hunt, topic, notice.seq);
            if notice.kind == NoticeKind::Lifecycle(Lifecycle::Deleted) {
                self.end_subscriptions(notice.hunt);
            }
        }
        self.notices = notices;
    }

    /// Sends the push in `self.push` to this shard's subscribers of `hunt` and `topic`,
    /// held until the next commit if `hold`.
    fn fan_out(&mut self, hunt: HuntId, topic: Topic, seq: u64, hold: bool) {
        let soft = self.shared.config.subscriber_buffer_bytes_soft;
        let max = self.shared.config.subscriber_buffer_bytes_max;
        self.slow.clear();
        for subscriber in self.local.of(hunt) {
            if subscriber.topics & topic.bit() == 0 {
                continue;
            }
            let connection = self
                .connections
                .get_current_mut(subscriber.token, subscriber.generation)
                .expect("subscribers are unsubscribed when they close");
            if connection.closing {
                continue;
            }
            if hold && connection.hold(self.hold_group) {
                self.held.push(subscriber.token);
            }
            let fits = deliver(connection, &mut self.stats, &self.push, hunt, topic, seq, soft, max);
            if !fits {
                self.slow.push(subscriber.token);
            }
            mark_dirty(&mut self.dirty, connection, subscriber.token);
        }
        let slow = std::mem::take(&mut self.slow);
        for &token in &slow {
            self.stats.counters.subscribers_disconnected += 1;
            self.goodbye(token, ErrorCode::SlowConsumer);
        }
        self.slow = slow;
    }

    /// The hunt was deleted: every subscription of this shard's connections to it ends,
    /// whatever its topics (protocol.md section 6.6), and the owner hears of it as of any
    /// last subscriber leaving. A slow path, once per deleted hunt.
    fn end_subscriptions(&mut self, hunt: HuntId) {
        while let Some(subscriber) = self.local.of(hunt).first().copied() {
            let connection = self
                .connections
                .get_current_mut(subscriber.token, subscriber.generation)
                .expect("subscribers are unsubscribed when they close");
            connection.subscriptions.retain(|&known| known != hunt);
            if self.local.unsubscribe(hunt, subscriber.token) == Some(true) {
                self.drop_interest(hunt);
            }
        }
    }

    /// Sends the push in `self.push` once to every other shard with subscribers of `hunt`.
    fn forward_notice(&mut self, hunt: HuntId, topic: Topic, seq: u64) {
        let Some(shards) = self.interest.shards(hunt) else { return };
        for (target, &count) in shards.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let ring = self.rings.reply_out[target].as_ref().expect("interest only from other shards");
            // Keep room for one largest reply, which a request already taken may need.
            let syncing = self.staged_syncing[target].len();
            if !ring.has_room_after(&self.staged[target], syncing + self.push.len() + record_size(PAYLOAD_SIZE_MAX)) {
                self.stats.counters.ring_pushes_dropped += 1;
                continue;
            }
            let record =
                RecordHeader { topics: topic.bit(), hunt, enqueue_us: seq, ..RecordHeader::new(RecordKind::Notice) };
            self.staged[target].stage(&record, &self.push);
        }
    }

    // -----------------------------------------------------------------------------------
    // Rings.

    /// Takes requests from every other shard, while the reply ring back has room.
    fn drain_requests(&mut self) {
        for source in 0..self.shard_count {
            if source == self.index {
                continue;
            }
            for _ in 0..RECORDS_PER_RING_PER_TURN_MAX {
                let reply_ring = self.rings.reply_out[source].as_ref().expect("a ring to every other shard");
                // Replies staged this turn take ring room too once pushed after the commit;
                // and a request may need a journal record.
                let syncing = self.staged_syncing[source].len();
                if !reply_ring.has_room_after(&self.staged[source], syncing + PAYLOAD_SIZE_MAX)
                    || !journal_has_room(&self.writer)
                {
                    self.more_work = true;
                    break;
                }
                let ShardRings { request_in, reply_out, .. } = &mut self.rings;
                let ring = request_in[source].as_mut().expect("a ring from every other shard");
                let (interest, staged, syncing) = (&self.interest, &self.staged, &self.staged_syncing);
                // A DELETE_HUNT stays in the ring until its deletion push fits.
                let mut held = false;
                let record = ring.pop_if(&mut self.payload, |next| {
                    let deletion = next.kind == RecordKind::Request && next.event_kind == EventKind::DeleteHunt as u8;
                    held = deletion && !deletion_fits_rings(next.hunt, interest, reply_out, staged, syncing);
                    !held
                });
                let Some(record) = record else {
                    if held {
                        self.stats.counters.ring_full_stalls += 1;
                        self.more_work = true;
                    }
                    break;
                };
                self.serve_record(source, &record);
            }
        }
    }

    fn serve_record(&mut self, source: usize, record: &RecordHeader) {
        let wait_us = self.clock.monotonic_us().saturating_sub(record.enqueue_us);
        stats::record(&mut self.stats.histograms.queue_wait, wait_us, 1);
        match record.kind {
            RecordKind::Request => {
                let payload = std::mem::take(&mut self.payload);
                let (header, request) = decode_request(&payload).expect("the sending shard decoded this frame");
                let Request::Event(event) = request else { unreachable!("only events travel as requests") };
                let kind = event.kind();
                self.reply.clear();
                if self.disk_full && event.is_mutation() {
                    self.stats.counters.disk_full_refusals += 1;
                    let code = ErrorCode::DiskFull;
                    encode_error(header.request_id, code.to_u16(), &code, &mut self.reply);
                    self.payload = payload;
                    return self.send_reply(source, RecordKind::Reply, record);
                }
                let time = self.clock.event_us();
                let outcome = apply_counted(&mut self.engine, &mut self.stats, &mut self.writer, &event, time);
                if reply_wanted(header.flags, &outcome) {
                    encode_outcome(header.request_id, kind, &outcome, &mut self.reply);
                }
                self.payload = payload;
                self.send_reply(source, RecordKind::Reply, record);
                self.after_apply();
            }
            RecordKind::Subscribe => {
                if record.flags & SUBSCRIBE_FIRST_ON_SHARD != 0 {
                    self.interest.add(record.hunt, source);
                }
                // Interest is counted even when refused: the subscriber's shard undoes it
                // with the usual drop, so every add meets exactly one remove.
                self.reply.clear();
                let mut answer = *record;
                match self.engine.topic_sequences(record.hunt) {
                    Some(sequences) => encode_subscribed(record.request_id, &sequences, &mut self.reply),
                    None => {
                        encode_rejection(record.request_id, &Rejection::HuntNotFound, &mut self.reply);
                        answer.flags |= SUBSCRIBE_REFUSED;
                    }
                }
                self.send_reply(source, RecordKind::Subscribed, &answer);
            }
            RecordKind::InterestDropped => self.interest.remove(record.hunt, source),
            kind => panic!("a {kind:?} record on a request ring"),
        }
    }

    /// Stages the reply in `self.reply`; it goes onto the ring after the turn's commit.
    /// Room for a largest reply was checked before taking the request.
    fn send_reply(&mut self, target: usize, kind: RecordKind, request: &RecordHeader) {
        let record = RecordHeader { kind, ..*request };
        self.staged[target].stage(&record, &self.reply);
    }

    /// Pushes every staged reply and push onto its ring (after the turn's commit).
    fn push_staged(&mut self) {
        push_staged(&mut self.staged, &mut self.rings, &mut self.wake);
    }

    // -----------------------------------------------------------------------------------
    // The journal.

    /// The turn's group commit: one write (and, in `fsync` mode, one fdatasync) for
    /// every event journaled since the last one; then the held replies go. In `fsync`
    /// mode the sync runs on the sync thread: a finished one releases its group, and the
    /// next starts as soon as the last has finished. A full disk keeps replies held
    /// (retried next turn); any other error stops the server.
    fn commit(&mut self) -> io::Result<()> {
        if self.writer.is_none() {
            self.push_staged();
            return Ok(());
        }
        if let Some((seq, group)) = self.syncing {
            let syncer = self.syncer.as_ref().expect("a sync runs only in fsync mode");
            match syncer.poll() {
                None => return Ok(()),
                Some(result) => self.synced(seq, group, result)?,
            }
        }
        let writer = self.writer.as_mut().expect("checked above");
        if writer.covered_seq() >= self.snapshot_due_seq {
            // Commits what is pending, synchronously: a slow path every so many events.
            self.snapshot_journal(false)?;
        }
        let writer = self.writer.as_mut().expect("checked above");
        let written_seq = match writer.write_pending() {
            Ok(written_seq) => written_seq,
            Err(error) if error.is_recoverable() => {
                if !self.disk_full {
                    super::log_line(format_args!("cairn: shard {}: {error}; queries are still answered", self.index));
                    self.disk_full = true;
                    std::mem::swap(&mut self.held, &mut self.held_syncing);
                    std::mem::swap(&mut self.staged, &mut self.staged_syncing);
                    self.stuck_group = Some(self.hold_group);
                } else {
                    // No mutation was applied since: only refusals and query answers.
                    release(&mut self.held, &mut self.connections, &mut self.dirty, self.hold_group);
                    self.push_staged();
                }
                self.hold_group += 1;
                return Ok(());
            }
            Err(error) => return Err(self.fatal(error)),
        };
        if self.disk_full {
            super::log_line(format_args!(
                "cairn: shard {}: the journal is written again; mutating events are accepted",
                self.index
            ));
            self.disk_full = false;
        }
        let writer = self.writer.as_mut().expect("checked above");
        if let Some(group) = self.stuck_group.take() {
            if written_seq > writer.covered_seq() {
                // The stuck group is written; its sync covers the current one's queries too
                // (they are released by the next commit, which finds nothing new).
                let file = match writer.sync_handle() {
                    Ok(file) => file,
                    Err(error) => return Err(self.fatal(error)),
                };
                self.syncer.as_ref().expect("fsync mode has a sync thread").request(file);
                self.syncing = Some((written_seq, group));
                return Ok(());
            }
            release(&mut self.held_syncing, &mut self.connections, &mut self.dirty, group);
            push_staged(&mut self.staged_syncing, &mut self.rings, &mut self.wake);
        }
        let writer = self.writer.as_mut().expect("checked above");
        if written_seq > writer.covered_seq() {
            // `fsync` mode: the current group becomes the syncing one, and the loop goes
            // on filling a new group while the thread syncs.
            let file = match writer.sync_handle() {
                Ok(file) => file,
                Err(error) => return Err(self.fatal(error)),
            };
            self.syncer.as_ref().expect("fsync mode has a sync thread").request(file);
            self.syncing = Some((written_seq, self.hold_group));
            std::mem::swap(&mut self.held, &mut self.held_syncing);
            std::mem::swap(&mut self.staged, &mut self.staged_syncing);
            self.hold_group += 1;
            return Ok(());
        }
        // Everything appended is covered (`os` mode, or nothing new).
        release(&mut self.held, &mut self.connections, &mut self.dirty, self.hold_group);
        self.push_staged();
        self.hold_group += 1;
        Ok(())
    }

    /// The sync of `group`, up to `seq`, finished: release its replies, or stop the
    /// server if it failed (a failed fdatasync is never retried: the kernel may have
    /// dropped the pages it could not write, and a second try could report success).
    fn synced(&mut self, seq: u64, group: u64, result: io::Result<()>) -> io::Result<()> {
        self.syncing = None;
        let writer = self.writer.as_mut().expect("a sync runs only with a journal");
        if let Err(source) = result {
            let error = JournalError::SyncFailed { file: writer.segment_path(), source };
            writer.stop(error.to_string());
            return Err(self.fatal(error));
        }
        writer.mark_synced(seq);
        release(&mut self.held_syncing, &mut self.connections, &mut self.dirty, group);
        push_staged(&mut self.staged_syncing, &mut self.rings, &mut self.wake);
        Ok(())
    }

    /// Waits for a running sync (at the end of the loop, before the last snapshot).
    fn finish_sync(&mut self) -> io::Result<()> {
        let Some((seq, group)) = self.syncing else { return Ok(()) };
        let result = self.syncer.as_ref().expect("a sync runs only in fsync mode").wait();
        self.synced(seq, group, result)
    }

    /// Writes a snapshot of the shard (every `snapshot_interval_events`, and at a
    /// graceful stop). A slow path: its allocations are kept out of the per-event count.
    /// A full disk only postpones it; any other error stops the server.
    fn snapshot_journal(&mut self, stopping: bool) -> io::Result<()> {
        let Some(writer) = self.writer.as_mut() else { return Ok(()) };
        let before = self.allocations.allocations();
        let result = writer.snapshot(&self.engine);
        self.snapshot_due_seq = writer.last_seq().saturating_add(self.shared.config.snapshot_interval_events);
        self.stats.allocations_excluded += self.allocations.allocations() - before;
        match result {
            Ok(_) => {
                // The snapshot committed everything appended: every group is covered.
                if let Some(group) = self.stuck_group.take() {
                    self.disk_full = false;
                    release(&mut self.held_syncing, &mut self.connections, &mut self.dirty, group);
                    push_staged(&mut self.staged_syncing, &mut self.rings, &mut self.wake);
                }
                release(&mut self.held, &mut self.connections, &mut self.dirty, self.hold_group);
                self.push_staged();
                self.hold_group += 1;
                Ok(())
            }
            Err(error) if error.is_recoverable() => {
                let when = if stopping { "at shutdown" } else { "postponed" };
                super::log_line(format_args!("cairn: shard {}: snapshot {when}: {error}", self.index));
                Ok(())
            }
            Err(error) => Err(self.fatal(error)),
        }
    }

    /// A journal error that leaves nothing safe to do: say so, ask every shard to stop,
    /// and give up this one at once, without writing the turn's replies.
    fn fatal(&mut self, error: JournalError) -> io::Error {
        let message = format!("shard {}: {error}", self.index);
        super::log_line(format_args!("cairn: {message}; stopping the server"));
        // The other shards wait for this one to drain; it never will, so count it done
        // (unless it already counted itself).
        if !matches!(self.phase, Phase::Draining { quiet: true, .. }) {
            self.shared.shards_quiet.fetch_add(1, Ordering::AcqRel);
        }
        self.shared.request_shutdown();
        io::Error::other(message)
    }

    /// Takes every reply and push other shards sent this shard's connections.
    fn drain_replies(&mut self) {
        for source in 0..self.shard_count {
            if source == self.index {
                continue;
            }
            for _ in 0..RECORDS_PER_RING_PER_TURN_MAX {
                let ring = self.rings.reply_in[source].as_mut().expect("a ring from every other shard");
                let Some(record) = ring.pop(&mut self.payload) else { break };
                self.on_reply(&record);
            }
            self.more_work |= !self.rings.reply_in[source].as_ref().expect("ring").is_empty();
        }
    }

    fn on_reply(&mut self, record: &RecordHeader) {
        match record.kind {
            RecordKind::Reply | RecordKind::Subscribed => {
                let Some(connection) = self.connections.get_current_mut(record.token, record.generation) else {
                    self.stats.counters.stale_replies += 1;
                    return;
                };
                assert!(connection.inflight > 0);
                connection.inflight -= 1;
                // A closing connection's GOODBYE (or closing ERROR) is its last frame
                // (protocol §9.4): an answer coming back after it is only counted.
                if !connection.closing {
                    connection.output().extend_from_slice(&self.payload);
                }
                if record.kind == RecordKind::Subscribed {
                    let sent = connection.subscribes_inflight.iter().position(|&hunt| hunt == record.hunt);
                    connection.subscribes_inflight.remove(sent.expect("every SUBSCRIBE sent is listed"));
                }
                // A later SUBSCRIBE of the hunt pipelined behind this refused one set the
                // subscription again; its own answer decides whether it stays.
                let superseded = connection.subscribes_inflight.contains(&record.hunt);
                let refused = record.flags & SUBSCRIBE_REFUSED != 0;
                if record.kind == RecordKind::Subscribed && !refused && !superseded {
                    // The notices ahead of this answer on the ring are the ones it reports.
                    self.local.set_topics(record.hunt, record.token, record.topics);
                }
                if record.kind == RecordKind::Subscribed && refused && !superseded {
                    connection.subscriptions.retain(|&known| known != record.hunt);
                    if self.local.unsubscribe(record.hunt, record.token) == Some(true) {
                        self.drop_interest(record.hunt);
                    }
                }
                // A refusal frees its in-flight slot like any answer: what waits behind it
                // is scheduled below.
                let connection = self.connections.get_current_mut(record.token, record.generation).expect("found");
                if record.kind == RecordKind::Reply {
                    let latency_us = self.clock.monotonic_us().saturating_sub(record.enqueue_us);
                    let kind = record.event_kind as usize;
                    stats::record(&mut self.stats.histograms.latency[kind], latency_us, 1);
                }
                if connection.blocked == Blocked::Inflight {
                    connection.blocked = Blocked::No;
                    schedule(&mut self.ready, connection, record.token);
                }
                if connection.peer_closed && connection.inflight == 0 {
                    schedule(&mut self.ready, connection, record.token);
                }
                mark_dirty(&mut self.dirty, connection, record.token);
            }
            RecordKind::Notice => {
                let topic = topic_of_bit(record.topics);
                std::mem::swap(&mut self.push, &mut self.payload);
                // The owner committed the event before it pushed the notice.
                self.fan_out(record.hunt, topic, record.enqueue_us, false);
                std::mem::swap(&mut self.push, &mut self.payload);
                if topic == Topic::Lifecycle && announces_deletion(&self.payload) {
                    self.end_subscriptions(record.hunt);
                }
            }
            kind => panic!("a {kind:?} record on a reply ring"),
        }
    }

    // -----------------------------------------------------------------------------------
    // Writing, stats and shutdown.

    fn flush_dirty(&mut self) {
        let high = self.shared.config.output_buffer_bytes_high;
        let soft = self.shared.config.subscriber_buffer_bytes_soft;
        let dirty = std::mem::take(&mut self.dirty);
        self.to_close.clear();
        for &index in &dirty {
            let Some(connection) = self.connections.get_mut(index) else { continue };
            connection.in_dirty = false;
            let pending_before = connection.pending_output();
            let flushed = connection.flush();
            connection.note_flush(self.clock.monotonic_us(), pending_before);
            match flushed {
                Ok(writes) => self.stats.counters.write_syscalls += writes,
                // Reset or broken pipe: the peer just goes away.
                Err(_) => {
                    self.to_close.push(index);
                    continue;
                }
            }
            // A closing connection's GOODBYE is its last frame (protocol §9.4): the ranges
            // it missed are not owed to it any more. Owed ranges go out at the level at
            // which `deliver` delivers again (at most `soft`), so no push is delivered
            // while a range before it is owed, and no range grows across a delivered one.
            if !connection.closing && !connection.missed.is_empty() && connection.pending_output() <= soft {
                self.stats.counters.gaps_sent += connection.emit_gaps();
                // Written next turn if the socket is full now; its error shows then.
                connection.flush().ok();
            }
            if connection.blocked == Blocked::Output && connection.pending_output() <= high {
                connection.blocked = Blocked::No;
                schedule(&mut self.ready, connection, index);
            }
            let done = connection.pending_output() == 0;
            // Frames read before the peer's FIN are still answered (the turn's frame
            // budget or the output high-water mark may have left some unread).
            let unanswered = !matches!(next_frame(connection.unread()), Ok(None));
            let finished = connection.peer_closed && connection.inflight == 0 && !unanswered;
            if done && (connection.closing || finished) {
                self.to_close.push(index);
            }
        }
        // Connections marked dirty while flushing (none today) would be lost by the swap.
        assert!(self.dirty.is_empty());
        self.dirty = dirty;
        self.dirty.clear();
        let to_close = std::mem::take(&mut self.to_close);
        for &index in &to_close {
            self.close(index);
        }
        self.to_close = to_close;
    }

    fn record_local_latency(&mut self) {
        if self.local_events.iter().all(|&count| count == 0) {
            return;
        }
        let latency_us = self.clock.read().saturating_sub(self.clock.monotonic_us());
        for (kind, count) in self.local_events.iter_mut().enumerate() {
            if *count > 0 {
                stats::record(&mut self.stats.histograms.latency[kind], latency_us, *count);
                *count = 0;
            }
        }
    }

    fn snapshot(&mut self) {
        self.last_snapshot_us = self.clock.monotonic_us();
        let allocations = self.allocations.allocations();
        let mut snapshot = self.shared.snapshots[self.index].lock().expect("no shard panics holding its snapshot");
        snapshot.update(&self.stats, self.connections.len(), self.local.count(), allocations);
    }

    fn check_shutdown(&mut self) {
        if self.phase == Phase::Serving && self.shared.shutdown.load(Ordering::Acquire) {
            if let Some(mut listener) = self.listener.take() {
                // The listener closes when dropped; deregistering first keeps mio tidy.
                let _ = self.poll.registry().deregister(&mut listener);
            }
            self.phase = Phase::Draining { since_us: self.clock.monotonic_us(), quiet: false };
        }
    }

    /// Moves shutdown along. Returns false once the shard may exit.
    fn advance_shutdown(&mut self) -> bool {
        let now = self.clock.monotonic_us();
        match self.phase {
            Phase::Serving => true,
            Phase::Draining { since_us, quiet } => {
                if !quiet && self.is_quiet() {
                    self.shared.shards_quiet.fetch_add(1, Ordering::AcqRel);
                    self.phase = Phase::Draining { since_us, quiet: true };
                }
                let all_quiet = self.shared.shards_quiet.load(Ordering::Acquire) == self.shard_count;
                if all_quiet || now.saturating_sub(since_us) > SHUTDOWN_DRAIN_US {
                    for index in self.connections.indices() {
                        self.goodbye(index, ErrorCode::ShuttingDown);
                    }
                    self.flush_dirty();
                    self.phase = Phase::Closing { since_us: now };
                }
                true
            }
            Phase::Closing { since_us } => {
                if self.connections.is_empty() || now.saturating_sub(since_us) > SHUTDOWN_DRAIN_US {
                    for index in self.connections.indices() {
                        self.close(index);
                    }
                    return false;
                }
                true
            }
        }
    }

    /// Returns true if and only if no connection of this shard has a request left to
    /// decode or waiting on another shard, and every reply is written.
    fn is_quiet(&mut self) -> bool {
        if !self.ready.is_empty() || !self.pending_interest_drops.is_empty() {
            return false;
        }
        for index in self.connections.indices() {
            let connection = self.connections.get_mut(index).expect("listed");
            let unread = !connection.closing && next_frame(connection.unread()).ok().flatten().is_some();
            if unread || connection.inflight > 0 || connection.pending_output() > 0 {
                return false;
            }
        }
        true
    }
}

/// Lets the held output of `group` (and older) go on every connection in `held`.
fn release(held: &mut Vec<u32>, connections: &mut Slab<Connection>, dirty: &mut Vec<u32>, group: u64) {
    for &index in held.iter() {
        // A connection closed since it was held has nothing left to release.
        if let Some(connection) = connections.get_mut(index) {
            connection.release(group);
            if connection.pending_output() > 0 {
                mark_dirty(dirty, connection, index);
            }
        }
    }
    held.clear();
}

/// Pushes every staged reply and push onto its ring, and notes the shards to wake.
fn push_staged(staged: &mut [Staged], rings: &mut ShardRings, wake: &mut [bool]) {
    for (target, staged) in staged.iter_mut().enumerate() {
        if staged.is_empty() {
            continue;
        }
        let ring = rings.reply_out[target].as_mut().expect("only other shards have staged records");
        ring.push_staged(staged);
        wake[target] = true;
    }
}

/// The timeouts a sweep applies, copied from the configuration.
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    hello_us: u64,
    frame_us: u64,
    write_us: u64,
    /// 0: no idle timeout.
    idle_us: u64,
}

/// What a sweep does with one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    /// Say GOODBYE with this reason, then close once it is written (or the linger ends).
    Goodbye(ErrorCode),
    /// It was told to go and has not read that in `GOODBYE_LINGER_US`: close it now.
    Close,
}

impl Timeouts {
    fn of(config: &super::Config) -> Timeouts {
        Timeouts {
            hello_us: config.hello_timeout_us,
            frame_us: config.frame_timeout_us,
            write_us: config.write_timeout_us,
            idle_us: config.idle_timeout_us,
        }
    }

    /// Judges one connection at `now_us`. The first reason found wins: a closing
    /// connection only lingers; output nobody reads is the costliest, then a missing
    /// HELLO, a frame that never ends, and silence.
    fn verdict(&self, connection: &mut Connection, now_us: u64) -> Verdict {
        let over = |since_us: u64, limit_us: u64| now_us.saturating_sub(since_us) > limit_us;
        if connection.closing {
            let since_us = *connection.closing_since_us.get_or_insert(now_us);
            return if over(since_us, GOODBYE_LINGER_US) { Verdict::Close } else { Verdict::Keep };
        }
        if connection.write_stalled_since_us.is_some_and(|since_us| over(since_us, self.write_us)) {
            return Verdict::Goodbye(ErrorCode::SlowConsumer);
        }
        if !connection.greeted && over(connection.accepted_us, self.hello_us) {
            return Verdict::Goodbye(ErrorCode::HelloTimeout);
        }
        if connection.frame_started_us.is_some_and(|since_us| over(since_us, self.frame_us)) {
            return Verdict::Goodbye(ErrorCode::FrameTimeout);
        }
        let quiet = connection.subscriptions.is_empty() && connection.inflight == 0 && connection.pending_output() == 0;
        if self.idle_us > 0 && connection.greeted && quiet && over(connection.last_input_us, self.idle_us) {
            return Verdict::Goodbye(ErrorCode::IdleTimeout);
        }
        Verdict::Keep
    }
}

/// Returns true if and only if `event` may be applied now as far as the rings are
/// concerned: anything but a DELETE_HUNT always; a DELETE_HUNT only while every other
/// shard following its hunt has ring room for its answer and notices beside the largest
/// reply. Its LIFECYCLE *deleted* push is what ends the subscriptions there; dropped for
/// a full ring like other pushes, it would leave them following the next hunt of that id.
fn deletion_fits(
    event: &Event,
    interest: &Interest,
    rings: &ShardRings,
    staged: &[Staged],
    syncing: &[Staged],
) -> bool {
    match *event {
        Event::DeleteHunt { hunt } => deletion_fits_rings(hunt, interest, &rings.reply_out, staged, syncing),
        _ => true,
    }
}

/// [`deletion_fits`] for a deletion of `hunt`.
fn deletion_fits_rings(
    hunt: HuntId,
    interest: &Interest,
    reply_out: &[Option<RingProducer>],
    staged: &[Staged],
    syncing: &[Staged],
) -> bool {
    let Some(shards) = interest.shards(hunt) else { return true };
    shards.iter().enumerate().filter(|(_, &count)| count > 0).all(|(target, _)| {
        let ring = reply_out[target].as_ref().expect("interest only from other shards");
        let room = syncing[target].len() + DELETION_RING_BYTES_MAX + record_size(PAYLOAD_SIZE_MAX);
        ring.has_room_after(&staged[target], room)
    })
}

/// Returns true if and only if the turn may journal one more event: always without a
/// journal, else while the commit buffer has room for a record.
fn journal_has_room(writer: &Option<Writer<FileStorage>>) -> bool {
    writer.as_ref().is_none_or(|writer| writer.has_room())
}

/// Counts an applied event and its rejection, if any.
/// Applies one event at `time`, counts it, and journals it if it is a mutation: every
/// mutation that reaches `apply`, refused or not, since even a refused one announces the
/// lifecycle stages its time reached and replay must do the same. The one path both
/// local and cross-shard events take.
fn apply_counted<'a>(
    engine: &'a mut Shard,
    stats: &mut ShardStats,
    writer: &mut Option<Writer<FileStorage>>,
    event: &Event,
    time: u64,
) -> Outcome<'a> {
    let outcome = engine.apply(event, time);
    let kind = event.kind();
    stats.counters.events[kind as usize] += 1;
    if let Outcome::Rejected(rejection) = &outcome {
        stats.counters.reject(rejection);
    }
    if let Some(writer) = writer.as_mut().filter(|_| event.is_mutation()) {
        writer.append(event, time);
    }
    outcome
}

/// Appends a push to a subscriber, or drops it and remembers the gap if the subscriber's
/// output is above the soft limit. Returns false if the subscriber must be disconnected
/// (above the hard limit, or the gap cannot be remembered).
#[allow(clippy::too_many_arguments)]
fn deliver(
    connection: &mut Connection,
    stats: &mut ShardStats,
    push: &[u8],
    hunt: HuntId,
    topic: Topic,
    seq: u64,
    soft: usize,
    max: usize,
) -> bool {
    let pending = connection.pending_output();
    if pending > max {
        return false;
    }
    if pending > soft {
        stats.counters.pushes_dropped += 1;
        return connection.missed.record(hunt, topic as u8, seq, seq).is_ok();
    }
    connection.output().extend_from_slice(push);
    stats.counters.pushes_sent += 1;
    true
}

/// Queues a connection for decoding, once.
fn schedule(ready: &mut Vec<u32>, connection: &mut Connection, index: u32) {
    if !connection.in_ready {
        connection.in_ready = true;
        ready.push(index);
    }
}

/// Queues a connection for writing, once.
fn mark_dirty(dirty: &mut Vec<u32>, connection: &mut Connection, index: u32) {
    if !connection.in_dirty {
        connection.in_dirty = true;
        dirty.push(index);
    }
}

/// Returns true if and only if `push` is the LIFECYCLE push of a deleted hunt.
fn announces_deletion(push: &[u8]) -> bool {
    let Ok(Response::Push(PushBody::Notice(notice))) = decode_response(push) else { return false };
    notice.kind == NoticeKind::Lifecycle(Lifecycle::Deleted)
}

fn topic_of_bit(bit: u8) -> Topic {
    match bit {
        bit if bit == Topic::Discoveries.bit() => Topic::Discoveries,
        bit if bit == Topic::Top.bit() => Topic::Top,
        bit if bit == Topic::Lifecycle.bit() => Topic::Lifecycle,
        other => panic!("{other:#x} is not one topic bit"),
    }
}
