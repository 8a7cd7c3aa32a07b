//! Byte rings between shards: variable-length records over a bounded single-producer,
//! single-consumer byte ring, whose atomics come from `crate::sync` so that loom can
//! check every interleaving of it (`cargo test` with `--cfg loom`; see the tests below).
//!
//! Every ordered pair of shards (k, j) has two rings: a REQUEST ring k→j carrying
//! requests for hunts j owns, and a REPLY ring j→k carrying the replies and the pushes
//! for k's connections. Replies never share a ring with requests, so draining replies
//! never waits behind anything and two shards can never hold each other up.
//!
//! A record is a fixed 32-byte header followed by `payload_size` bytes (a raw request
//! frame, or encoded reply or push frames), all little-endian:
//!
//! ```text
//! offset  size  field
//!      0     1  kind          RecordKind
//!      1     1  flags         the request frame's flags, or a record-specific flag
//!      2     1  event_kind    EventKind of the request (for per-kind latency)
//!      3     1  topics        topic mask (SUBSCRIBE) or topic bit (NOTICE, GAP)
//!      4     4  payload_size  u32, bytes after the header
//!      8     4  token         u32, the connection's slab index on its shard
//!     12     4  generation    u32, the connection's generation (stale replies drop)
//!     16     4  request_id    u32
//!     20     4  hunt          u32
//!     24     8  enqueue_us    u64, monotonic server microseconds when the origin shard
//!                             read the request; a NOTICE's sequence number instead
//! ```
//!
//! The producer writes the header and the payload only when both fit, so a full ring is
//! reported ([`Full`]) before anything is written: the caller leaves the request in the
//! connection's read buffer and TCP pushes back. Nothing is ever dropped here. The
//! consumer takes a record only once all of it is visible.
//!
//! Replies and pushes can also be [`Staged`]: encoded into a buffer beside the ring and
//! pushed in one piece later. The shard loop stages what it sends back during a turn and
//! pushes it only after the turn's journal commit, so another shard can never pass on a
//! reply to an event that is not yet durable; batching the ring writes is a side benefit.

use crossbeam::utils::CachePadded;

use crate::constants::{FRAME_SIZE_MAX, RING_RECORD_HEADER_SIZE};
use crate::sync::{Arc, AtomicUsize, Bytes, Ordering};

/// What a ring record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// Request ring: a raw event request frame for the receiver to apply.
    Request = 1,
    /// Reply ring: the encoded reply frame to a `Request` (empty for a quiet move).
    Reply = 2,
    /// Request ring: a connection subscribes to a hunt; `flags` is 1 if the sender's
    /// shard gains its first subscriber of the hunt.
    Subscribe = 3,
    /// Reply ring: the encoded SUBSCRIBE reply.
    Subscribed = 4,
    /// Request ring: the sender's shard has no subscriber of the hunt any more.
    InterestDropped = 5,
    /// Reply ring: an encoded notice push for the receiver's subscribers of `hunt`
    /// whose mask has `topics`.
    Notice = 6,
    /// Reply ring: notices `first..=last` (payload: two u64) of `hunt` on topic bit
    /// `topics` could not be sent over the ring.
    Gap = 7,
}

impl RecordKind {
    fn from_u8(byte: u8) -> RecordKind {
        match byte {
            1 => RecordKind::Request,
            2 => RecordKind::Reply,
            3 => RecordKind::Subscribe,
            4 => RecordKind::Subscribed,
            5 => RecordKind::InterestDropped,
            6 => RecordKind::Notice,
            7 => RecordKind::Gap,
            other => panic!("ring record kind {other} was never written"),
        }
    }
}

/// A record's header. The payload travels beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// What the record carries.
    pub kind: RecordKind,
    /// The request frame's flags, or a record-specific flag.
    pub flags: u8,
    /// The request's `EventKind as u8`, or 0.
    pub event_kind: u8,
    /// A topic mask or topic bit, or 0.
    pub topics: u8,
    /// The origin connection's slab index.
    pub token: u32,
    /// The origin connection's generation.
    pub generation: u32,
    /// The request's id.
    pub request_id: u32,
    /// The hunt, or 0.
    pub hunt: u32,
    /// When the origin shard read the request, in monotonic server microseconds.
    pub enqueue_us: u64,
}

impl RecordHeader {
    /// A header of `kind` with every other field zero.
    pub const fn new(kind: RecordKind) -> RecordHeader {
        RecordHeader {
            kind,
            flags: 0,
            event_kind: 0,
            topics: 0,
            token: 0,
            generation: 0,
            request_id: 0,
            hunt: 0,
            enqueue_us: 0,
        }
    }

    fn encode(&self, payload_size: usize) -> [u8; RING_RECORD_HEADER_SIZE] {
        let mut bytes = [0; RING_RECORD_HEADER_SIZE];
        bytes[0] = self.kind as u8;
        bytes[1] = self.flags;
        bytes[2] = self.event_kind;
        bytes[3] = self.topics;
        bytes[4..8].copy_from_slice(&(payload_size as u32).to_le_bytes());
        bytes[8..12].copy_from_slice(&self.token.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.generation.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.request_id.to_le_bytes());
        bytes[20..24].copy_from_slice(&self.hunt.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.enqueue_us.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8; RING_RECORD_HEADER_SIZE]) -> (RecordHeader, usize) {
        let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let mut enqueue = [0; 8];
        enqueue.copy_from_slice(&bytes[24..32]);
        let header = RecordHeader {
            kind: RecordKind::from_u8(bytes[0]),
            flags: bytes[1],
            event_kind: bytes[2],
            topics: bytes[3],
            token: u32_at(8),
            generation: u32_at(12),
            request_id: u32_at(16),
            hunt: u32_at(20),
            enqueue_us: u64::from_le_bytes(enqueue),
        };
        (header, u32_at(4) as usize)
    }
}

/// The ring has no room for the record; nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// Largest payload a record may carry, in bytes: one frame.
pub const PAYLOAD_SIZE_MAX: usize = FRAME_SIZE_MAX;

/// Bytes a record with a payload of `payload_size` bytes takes in a ring.
pub const fn record_size(payload_size: usize) -> usize {
    RING_RECORD_HEADER_SIZE + payload_size
}

/// A new ring of `size_bytes` bytes (allocated here, once, at server start).
pub fn ring(size_bytes: usize) -> (RingProducer, RingConsumer) {
    assert!(size_bytes >= 2 * record_size(PAYLOAD_SIZE_MAX));
    ring_of_any_size(size_bytes)
}

/// A ring of any size, for the loom tests, whose rings are a few records small so that
/// every interleaving can be explored.
fn ring_of_any_size(size_bytes: usize) -> (RingProducer, RingConsumer) {
    assert!(size_bytes >= RING_RECORD_HEADER_SIZE);
    let shared = Arc::new(Shared {
        bytes: Bytes::new(size_bytes),
        written: CachePadded::new(AtomicUsize::new(0)),
        read: CachePadded::new(AtomicUsize::new(0)),
    });
    let producer = RingProducer { shared: Arc::clone(&shared), written: 0, index: 0, read_seen: 0 };
    (producer, RingConsumer { shared, read: 0, index: 0, written_seen: 0 })
}

/// The state both halves share. `written` and `read` count bytes since the start (they
/// wrap only after 2^64 bytes); a byte's place in the array is its count modulo the size,
/// which each half keeps beside its count.
/// Only the producer stores `written`, only the consumer stores `read`, each on its own
/// cache line, so the halves never write the same line.
///
/// The ordering protocol: the producer copies a record in, then stores `written`
/// (Release); the consumer loads `written` (Acquire) before copying anything out, so it
/// sees every byte counted. The consumer copies a record out, then stores `read`
/// (Release); the producer loads `read` (Acquire) before reusing room, so it never
/// overwrites a byte still being read. The loom tests below check exactly this.
struct Shared {
    bytes: Bytes,
    written: CachePadded<AtomicUsize>,
    read: CachePadded<AtomicUsize>,
}

impl Shared {
    fn size(&self) -> usize {
        self.bytes.len()
    }

    /// The place in the array `size` bytes after `index`: a compare instead of a division
    /// (ring sizes need not be powers of two).
    fn advance(&self, index: usize, size: usize) -> usize {
        debug_assert!(index < self.size() && size <= self.size());
        let next = index + size;
        if next >= self.size() {
            next - self.size()
        } else {
            next
        }
    }

    /// Copies `source` in from place `index`, wrapping at the end of the array.
    ///
    /// # Safety
    /// The `source.len()` bytes from `index` on are free room: written by no one else,
    /// read by no one.
    unsafe fn copy_in(&self, index: usize, source: &[u8]) {
        let first = source.len().min(self.size() - index);
        // SAFETY: the caller owns the room, which is these two ranges of the array.
        unsafe {
            self.bytes.copy_in(index, &source[..first]);
            self.bytes.copy_in(0, &source[first..]);
        }
    }

    /// Copies out from place `index` into `target`, wrapping at the end of the array.
    ///
    /// # Safety
    /// The `target.len()` bytes from `index` on are published and no one overwrites them
    /// meanwhile.
    unsafe fn copy_out(&self, index: usize, target: &mut [u8]) {
        let first = target.len().min(self.size() - index);
        // SAFETY: the caller owns these published bytes until it moves `read` past them.
        unsafe {
            self.bytes.copy_out(index, &mut target[..first]);
            self.bytes.copy_out(0, &mut target[first..]);
        }
    }
}

/// The writing half of a ring, owned by one shard thread.
///
/// The ring is written here rather than taken from `rtrb` (which it replaced): loom can
/// only explore interleavings of atomics it instruments, and this ring's come from
/// `crate::sync`, so the loom tests check the code the server runs. A record is one
/// copy and one Release store instead of two pushes; `examples/ring_throughput.rs`
/// measures both (figures in `perf/RESULTS.md`).
pub struct RingProducer {
    shared: Arc<Shared>,
    /// Bytes written so far (this side's copy of `Shared::written`).
    written: usize,
    /// Where the next byte goes in the array: `written` modulo the size.
    index: usize,
    /// The consumer's `read` as last loaded: room up to it is known free.
    read_seen: usize,
}

impl RingProducer {
    /// Free bytes, loading the consumer's progress afresh.
    fn room(&self) -> usize {
        let read = self.shared.read.load(Ordering::Acquire);
        self.shared.size() - self.written.wrapping_sub(read)
    }

    /// Returns true if and only if a record with a payload of `payload_size` bytes fits
    /// now. Only the consumer frees room, so room seen here stays until this side writes.
    pub fn has_room(&self, payload_size: usize) -> bool {
        self.room() >= record_size(payload_size)
    }

    /// Returns true if and only if a record with a payload of `payload_size` bytes fits
    /// after everything in `staged` is pushed.
    pub fn has_room_after(&self, staged: &Staged, payload_size: usize) -> bool {
        self.room() >= staged.bytes.len() + record_size(payload_size)
    }

    /// Returns true if and only if `size` more bytes fit, loading the consumer's progress
    /// only when the last load does not already show enough room.
    fn reserve(&mut self, size: usize) -> bool {
        let fits = |read: usize| self.shared.size() - self.written.wrapping_sub(read) >= size;
        if fits(self.read_seen) {
            return true;
        }
        self.read_seen = self.shared.read.load(Ordering::Acquire);
        fits(self.read_seen)
    }

    /// Copies whole records in and publishes them with one store.
    fn publish(&mut self, parts: &[&[u8]]) {
        for part in parts {
            // SAFETY: `reserve` saw room for all parts, i.e. the consumer has moved
            // `read` past these bytes (Acquire), and only this thread writes.
            unsafe { self.shared.copy_in(self.index, part) };
            self.index = self.shared.advance(self.index, part.len());
            self.written = self.written.wrapping_add(part.len());
        }
        self.shared.written.store(self.written, Ordering::Release);
    }

    /// Pushes every staged record, in order, and empties `staged`. The caller staged a
    /// record only after [`RingProducer::has_room_after`] said it fits, and only the
    /// consumer frees room, so the whole batch fits.
    pub fn push_staged(&mut self, staged: &mut Staged) {
        assert!(self.reserve(staged.bytes.len()), "room for staged records was checked when staging");
        self.publish(&[&staged.bytes]);
        staged.bytes.clear();
    }

    /// Writes one record, or nothing if it does not fit.
    pub fn try_push(&mut self, header: &RecordHeader, payload: &[u8]) -> Result<(), Full> {
        assert!(payload.len() <= PAYLOAD_SIZE_MAX, "a {}-byte ring payload", payload.len());
        if !self.reserve(record_size(payload.len())) {
            return Err(Full);
        }
        // Header and payload are published together, so the consumer never sees a header
        // without its payload.
        self.publish(&[&header.encode(payload.len()), payload]);
        Ok(())
    }
}

/// Records encoded for one ring and not pushed yet (see the module doc).
pub struct Staged {
    bytes: Vec<u8>,
}

impl Staged {
    /// An empty staging buffer for a ring of `ring_size_bytes`: it never holds more than
    /// the ring has room for, so it never grows (allocated once, at start).
    pub fn new(ring_size_bytes: usize) -> Staged {
        Staged { bytes: Vec::with_capacity(ring_size_bytes) }
    }

    /// Returns true if and only if nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes staged.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Encodes one record after the staged ones. The caller checked
    /// [`RingProducer::has_room_after`].
    pub fn stage(&mut self, header: &RecordHeader, payload: &[u8]) {
        assert!(payload.len() <= PAYLOAD_SIZE_MAX, "a {}-byte ring payload", payload.len());
        assert!(self.bytes.len() + record_size(payload.len()) <= self.bytes.capacity(), "staged past the ring size");
        self.bytes.extend_from_slice(&header.encode(payload.len()));
        self.bytes.extend_from_slice(payload);
    }
}

/// The reading half of a ring, owned by one shard thread.
pub struct RingConsumer {
    shared: Arc<Shared>,
    /// Bytes read so far (this side's copy of `Shared::read`).
    read: usize,
    /// Where the next byte comes from in the array: `read` modulo the size.
    index: usize,
    /// The producer's `written` as last loaded: bytes up to it are published.
    written_seen: usize,
}

impl RingConsumer {
    /// Returns true if and only if nothing is waiting in the ring.
    pub fn is_empty(&self) -> bool {
        self.shared.written.load(Ordering::Acquire) == self.read
    }

    /// Returns true if and only if `size` bytes are published, loading the producer's
    /// progress only when the last load does not already show them.
    fn published(&mut self, size: usize) -> bool {
        if self.written_seen.wrapping_sub(self.read) >= size {
            return true;
        }
        self.written_seen = self.shared.written.load(Ordering::Acquire);
        self.written_seen.wrapping_sub(self.read) >= size
    }

    /// Takes the next whole record, copying its payload into `payload` (cleared first;
    /// give it `PAYLOAD_SIZE_MAX` capacity so this never allocates). Returns `None` when
    /// no whole record is visible yet.
    pub fn pop(&mut self, payload: &mut Vec<u8>) -> Option<RecordHeader> {
        self.pop_if(payload, |_| true)
    }

    /// [`RingConsumer::pop`], but only if `take` accepts the record's header; a record it
    /// declines stays next in the ring (and `None` is returned). Lets a shard leave a
    /// request in the ring until it can serve it, reading the header once.
    pub fn pop_if(&mut self, payload: &mut Vec<u8>, take: impl FnOnce(&RecordHeader) -> bool) -> Option<RecordHeader> {
        if !self.published(RING_RECORD_HEADER_SIZE) {
            return None;
        }
        let mut header_bytes = [0; RING_RECORD_HEADER_SIZE];
        // SAFETY: these bytes are published (Acquire above) and only the consumer moves
        // `read` past them, so the producer does not overwrite them meanwhile.
        unsafe { self.shared.copy_out(self.index, &mut header_bytes) };
        let (header, payload_size) = RecordHeader::decode(&header_bytes);
        if !take(&header) {
            return None;
        }
        assert!(payload_size <= PAYLOAD_SIZE_MAX);
        // The producer publishes a header and its payload with one store.
        assert!(self.published(record_size(payload_size)), "a record header was published without its payload");
        payload.clear();
        payload.resize(payload_size, 0);
        // SAFETY: as for the header.
        unsafe { self.shared.copy_out(self.shared.advance(self.index, RING_RECORD_HEADER_SIZE), payload) };
        self.index = self.shared.advance(self.index, record_size(payload_size));
        self.read = self.read.wrapping_add(record_size(payload_size));
        self.shared.read.store(self.read, Ordering::Release);
        Some(header)
    }
}

// The tests with real threads and many records; under `--cfg loom` the ring's atomics
// are loom's, which only work inside `loom::model`, so these run only without it.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn header(request_id: u32) -> RecordHeader {
        RecordHeader {
            kind: RecordKind::Request,
            flags: 1,
            event_kind: 7,
            topics: 5,
            token: 42,
            generation: 9,
            request_id,
            hunt: 77,
            enqueue_us: u64::MAX - request_id as u64,
        }
    }

    fn payload_of(request_id: u32) -> Vec<u8> {
        let size = (request_id as usize * 37) % 300;
        (0..size).map(|index| (index as u32 ^ request_id) as u8).collect()
    }

    #[test]
    fn a_record_round_trips_field_by_field() {
        let (mut producer, mut consumer) = ring(record_size(PAYLOAD_SIZE_MAX) * 2);
        let mut payload = Vec::with_capacity(PAYLOAD_SIZE_MAX);
        assert_eq!(consumer.pop(&mut payload), None);
        producer.try_push(&header(3), &[1, 2, 3]).unwrap();
        assert_eq!(consumer.pop(&mut payload), Some(header(3)));
        assert_eq!(payload, [1, 2, 3]);
        assert_eq!(consumer.pop(&mut payload), None);
    }

    #[test]
    fn a_declined_record_stays_next_in_the_ring() {
        let (mut producer, mut consumer) = ring(record_size(PAYLOAD_SIZE_MAX) * 2);
        let mut payload = Vec::with_capacity(PAYLOAD_SIZE_MAX);
        assert_eq!(consumer.pop_if(&mut payload, |_| panic!("no record is visible")), None);
        producer.try_push(&header(3), &[1, 2, 3]).unwrap();
        producer.try_push(&header(4), &[]).unwrap();
        let mut seen = None;
        assert_eq!(
            consumer.pop_if(&mut payload, |next| {
                seen = Some(*next);
                false
            }),
            None
        );
        assert_eq!(seen, Some(header(3)));
        assert_eq!(consumer.pop_if(&mut payload, |_| false), None);
        assert_eq!(consumer.pop_if(&mut payload, |_| true), Some(header(3)));
        assert_eq!(payload, [1, 2, 3]);
        assert_eq!(consumer.pop(&mut payload), Some(header(4)));
        assert_eq!(consumer.pop(&mut payload), None);
    }

    #[test]
    fn records_wrap_around_the_end_without_loss_or_reordering() {
        let (mut producer, mut consumer) = ring(record_size(PAYLOAD_SIZE_MAX) * 2);
        let mut payload = Vec::with_capacity(PAYLOAD_SIZE_MAX);
        let mut next_sent = 0u32;
        let mut next_received = 0u32;
        // Many times around the ring, with the consumer lagging by a varying amount.
        while next_received < 20_000 {
            for _ in 0..(next_sent % 7) + 1 {
                if producer.try_push(&header(next_sent), &payload_of(next_sent)).is_ok() {
                    next_sent += 1;
                }
            }
            for _ in 0..(next_sent % 5) + 1 {
                if let Some(received) = consumer.pop(&mut payload) {
                    assert_eq!(received, header(next_received));
                    assert_eq!(payload, payload_of(next_received));
                    next_received += 1;
                }
            }
        }
    }

    #[test]
    fn a_full_ring_refuses_whole_records_and_takes_them_again_once_drained() {
        let size = record_size(PAYLOAD_SIZE_MAX) * 2;
        let (mut producer, mut consumer) = ring(size);
        let big = vec![0xAB; 1000];
        let mut accepted = 0u32;
        while producer.try_push(&header(accepted), &big).is_ok() {
            accepted += 1;
        }
        assert_eq!(accepted as usize, size / record_size(big.len()));
        assert!(!producer.has_room(big.len()));
        assert_eq!(producer.try_push(&header(accepted), &big), Err(Full));
        let mut payload = Vec::with_capacity(PAYLOAD_SIZE_MAX);
        assert_eq!(consumer.pop(&mut payload).map(|header| header.request_id), Some(0));
        producer.try_push(&header(accepted), &big).unwrap();
        for expected in 1..=accepted {
            assert_eq!(consumer.pop(&mut payload).map(|header| header.request_id), Some(expected));
            assert_eq!(payload, big);
        }
        assert_eq!(consumer.pop(&mut payload), None);
    }

    #[test]
    fn staged_records_arrive_in_order_once_pushed() {
        let size = record_size(PAYLOAD_SIZE_MAX) * 2;
        let (mut producer, mut consumer) = ring(size);
        let mut staged = Staged::new(size);
        let mut payload = Vec::with_capacity(PAYLOAD_SIZE_MAX);
        let mut count = 0u32;
        while producer.has_room_after(&staged, payload_of(count).len()) {
            staged.stage(&header(count), &payload_of(count));
            count += 1;
        }
        assert!(count > 100);
        // Nothing is visible until the push.
        assert_eq!(consumer.pop(&mut payload), None);
        producer.push_staged(&mut staged);
        assert!(staged.is_empty());
        for expected in 0..count {
            assert_eq!(consumer.pop(&mut payload), Some(header(expected)));
            assert_eq!(payload, payload_of(expected));
        }
        assert_eq!(consumer.pop(&mut payload), None);
    }

    #[test]
    fn records_cross_threads_in_order() {
        let (mut producer, mut consumer) = ring(record_size(PAYLOAD_SIZE_MAX) * 2);
        let count = 50_000u32;
        let writer = std::thread::spawn(move || {
            let mut sent = 0;
            while sent < count {
                if producer.try_push(&header(sent), &payload_of(sent)).is_ok() {
                    sent += 1;
                }
            }
        });
        let mut payload = Vec::with_capacity(PAYLOAD_SIZE_MAX);
        let mut received = 0;
        while received < count {
            if let Some(record) = consumer.pop(&mut payload) {
                assert_eq!(record.request_id, received);
                assert_eq!(payload, payload_of(received));
                received += 1;
            }
        }
        writer.join().unwrap();
    }
}

/// Every interleaving of the producer and the consumer, explored by loom: run with
/// `RUSTFLAGS="--cfg loom" cargo test --release --lib server::ring::loom_tests` (see
/// `fuzz/README.md`). The rings are a few records small, so records wrap around the end
/// of the array and the producer meets a full ring; loom also reports any byte read
/// before the write it depends on is visible (a data race on the shared array).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use ::loom::thread;

    fn header(request_id: u32) -> RecordHeader {
        RecordHeader {
            request_id,
            hunt: request_id * 3,
            enqueue_us: u64::MAX - request_id as u64,
            ..RecordHeader::new(RecordKind::Reply)
        }
    }

    /// Payload sizes cycle through 0..=3 bytes; the bytes name the record.
    fn payload_of(request_id: u32) -> Vec<u8> {
        vec![request_id as u8 ^ 0x5A; request_id as usize % 4]
    }

    /// Pops until `count` records arrived, checking each is the next one sent.
    fn receive(consumer: &mut RingConsumer, count: u32) {
        let mut payload = Vec::new();
        let mut next = 0;
        while next < count {
            match consumer.pop(&mut payload) {
                Some(received) => {
                    assert_eq!(received, header(next), "lost, duplicated or reordered");
                    assert_eq!(payload, payload_of(next));
                    next += 1;
                }
                None => thread::yield_now(),
            }
        }
        assert!(consumer.pop(&mut payload).is_none(), "a record nobody sent");
        assert!(consumer.is_empty());
    }

    /// Pushes record `request_id`, waiting while the ring is full. Returns true if and
    /// only if the ring was found full at least once.
    fn send(producer: &mut RingProducer, request_id: u32) -> bool {
        let mut was_full = false;
        while producer.try_push(&header(request_id), &payload_of(request_id)).is_err() {
            was_full = true;
            thread::yield_now();
        }
        was_full
    }

    /// A ring with room for two records of the largest test payload and a few bytes
    /// more, so records start at a different place each time around.
    fn small_ring() -> (RingProducer, RingConsumer) {
        ring_of_any_size(2 * record_size(3) + 5)
    }

    fn model(test: impl Fn() + Sync + Send + 'static) {
        let mut builder = ::loom::model::Builder::new();
        // Every interleaving with up to three preemptions: enough to interleave each
        // store with every load of the other side.
        builder.preemption_bound = Some(3);
        builder.check(test);
    }

    #[test]
    fn records_cross_without_loss_duplication_or_reordering() {
        model(|| {
            const COUNT: u32 = 4;
            let (mut producer, mut consumer) = small_ring();
            let writer = thread::spawn(move || {
                for request_id in 0..COUNT {
                    send(&mut producer, request_id);
                }
            });
            receive(&mut consumer, COUNT);
            writer.join().unwrap();
        });
    }

    #[test]
    fn a_full_ring_refuses_whole_records_until_the_consumer_frees_room() {
        model(|| {
            let (mut producer, mut consumer) = small_ring();
            let writer = thread::spawn(move || {
                send(&mut producer, 3);
                send(&mut producer, 7);
                // Two records of three bytes fill the ring: the third waits for a pop,
                // and the refused attempts must have written nothing (the consumer
                // checks every byte it takes).
                send(&mut producer, 11);
            });
            let mut payload = Vec::new();
            for expected in [3, 7, 11] {
                loop {
                    if let Some(received) = consumer.pop(&mut payload) {
                        assert_eq!(received, header(expected));
                        assert_eq!(payload, payload_of(expected));
                        break;
                    }
                    thread::yield_now();
                }
            }
            writer.join().unwrap();
            assert!(consumer.pop(&mut payload).is_none());
        });
    }

    #[test]
    fn staged_records_arrive_whole_and_in_order() {
        model(|| {
            let (mut producer, mut consumer) = small_ring();
            let writer = thread::spawn(move || {
                let mut staged = Staged::new(2 * record_size(3) + 5);
                while !producer.has_room_after(&staged, payload_of(0).len()) {
                    thread::yield_now();
                }
                staged.stage(&header(0), &payload_of(0));
                staged.stage(&header(1), &payload_of(1));
                // Room seen by `has_room_after` stays: only the consumer frees room.
                producer.push_staged(&mut staged);
                if producer.has_room(payload_of(2).len()) {
                    producer.try_push(&header(2), &payload_of(2)).expect("room seen stays room");
                } else {
                    send(&mut producer, 2);
                }
            });
            receive(&mut consumer, 3);
            writer.join().unwrap();
        });
    }
}
