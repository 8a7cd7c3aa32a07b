//! One client connection on a shard: its socket, its read buffer, its output buffer and
//! the flags the shard loop schedules it by.
//!
//! Both buffers are allocated when the connection is accepted (the slow path) and then
//! reused: the read buffer is a fixed `READ_BUFFER_SIZE` array filled by `read` and
//! consumed frame by frame; the output buffer holds whole frames only (replies, pushes,
//! errors), is written with one `write` per turn when possible, and is compacted on frame
//! boundaries so it keeps its steady-state size. Because it holds whole frames, the shard
//! can cut everything not yet started when it must say GOODBYE to a slow reader.
//!
//! With durability on, output can be held: [`Connection::hold`] marks where the replies
//! to events of one commit group not yet covered by the journal begin, and `flush`
//! writes only up to the oldest mark until [`Connection::release`] lets its group go.
//! Two groups can be held at once: the one whose fdatasync is running, and the one the
//! shard is filling meanwhile (durability `fsync`). In `os` mode the shard commits
//! before it flushes and releases every hold each turn; holds outlive a turn only while
//! a sync runs or the disk is full.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

use crate::constants::{FRAME_HEADER_SIZE, GAPS_PER_CONNECTION_MAX, OUTPUT_BUFFER_SIZE_INITIAL, READ_BUFFER_SIZE};
use crate::event::HuntId;

use crate::outcome::Topic;
use crate::protocol::{encode_gap, next_frame, Gap};

use super::auth::Role;
use super::subscriptions::MissedRanges;

/// Why a connection's requests are not being decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// Not blocked.
    No,
    /// Its pending output is above the high-water mark; resumes when it drains.
    Output,
    /// It has the maximum of requests in flight on other shards; resumes on a reply.
    Inflight,
}

/// What a [`Connection::fill`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filled {
    /// `read` calls that returned bytes.
    pub reads: u64,
    /// The peer closed its side (read returned 0).
    pub eof: bool,
}

/// Reads `discard_unread_input` makes at most before closing anyway.
const DISCARD_READS_MAX: usize = 16;

/// Where one commit group's held output begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hold {
    group: u64,
    from: usize,
}

/// A client connection.
pub struct Connection {
    /// The socket.
    pub stream: TcpStream,
    /// This connection's generation in the slab.
    pub generation: u32,
    read_buffer: Box<[u8]>,
    read_start: usize,
    read_end: usize,
    output: Vec<u8>,
    output_sent: usize,
    /// Output from this offset on waits for the commit of the group tagged (see the
    /// module doc).
    hold_from: Option<Hold>,
    /// Output from this offset on belongs to a later group than `hold_from`'s.
    hold_next: Option<Hold>,
    /// HELLO was exchanged.
    pub greeted: bool,
    /// What HELLO's token allows (see `auth`); `Role::None` until then.
    pub role: Role,
    /// When the connection was accepted (shard monotonic microseconds).
    pub accepted_us: u64,
    /// When bytes last arrived.
    pub last_input_us: u64,
    /// When the partial frame at the head of the read buffer started waiting for the
    /// rest of its bytes; `None` when the buffer holds no partial frame at its head.
    pub frame_started_us: Option<u64>,
    /// Since when pending output has been waiting without a byte written; `None` when
    /// nothing can be written (nothing pending, or all of it held).
    pub write_stalled_since_us: Option<u64>,
    /// When the timeout sweep first saw the connection closing.
    pub closing_since_us: Option<u64>,
    /// The socket may have more bytes: no read has returned `WouldBlock` since the last
    /// readable event (mio is edge-triggered).
    pub readable: bool,
    /// The peer closed its side; what was read is still served.
    pub peer_closed: bool,
    /// No more requests are decoded; the connection closes once its output is written.
    pub closing: bool,
    /// Requests waiting on other shards.
    pub inflight: u32,
    /// Why decoding stopped, if it did.
    pub blocked: Blocked,
    /// Queued in the shard's ready list.
    pub in_ready: bool,
    /// Queued in the shard's list of connections to write.
    pub in_dirty: bool,
    /// Hunts this connection subscribes to.
    pub subscriptions: Vec<HuntId>,
    /// The hunt of each SUBSCRIBE sent to another shard and not answered yet, oldest
    /// first: a refusal undoes the subscription only when no later SUBSCRIBE of the same
    /// hunt is still on its way (that one decides).
    pub subscribes_inflight: Vec<HuntId>,
    /// Ranges of pushes dropped while the output was above the soft limit.
    pub missed: MissedRanges<GAPS_PER_CONNECTION_MAX>,
}

impl Connection {
    /// A new connection (slow path: allocates its buffers).
    pub fn new(stream: TcpStream, generation: u32, now_us: u64) -> Connection {
        Connection {
            stream,
            generation,
            read_buffer: vec![0; READ_BUFFER_SIZE].into_boxed_slice(),
            read_start: 0,
            read_end: 0,
            output: Vec::with_capacity(OUTPUT_BUFFER_SIZE_INITIAL),
            output_sent: 0,
            hold_from: None,
            hold_next: None,
            greeted: false,
            role: Role::None,
            accepted_us: now_us,
            last_input_us: now_us,
            frame_started_us: None,
            write_stalled_since_us: None,
            closing_since_us: None,
            readable: true,
            peer_closed: false,
            closing: false,
            inflight: 0,
            blocked: Blocked::No,
            in_ready: false,
            in_dirty: false,
            subscriptions: Vec::new(),
            subscribes_inflight: Vec::new(),
            missed: MissedRanges::default(),
        }
    }

    /// Reads and drops whatever the peer sent that was not served, after shutting down
    /// our side for writing. Closing a socket with unread input makes the kernel send a
    /// reset, which can destroy replies the peer has not read yet; draining first turns
    /// the close into an orderly FIN. Bounded: at most a few buffers' worth.
    pub fn discard_unread_input(&mut self) {
        // Already shut down or reset: nothing to protect.
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        for _ in 0..DISCARD_READS_MAX {
            match self.stream.read(&mut self.read_buffer) {
                Ok(0) => return,
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock: drained for now. Any other error: the peer is gone.
                Err(_) => return,
            }
        }
    }

    /// Reads from the socket until it would block, the read buffer is full, or the peer
    /// closed. Moves a partial frame to the front first so a whole frame always fits.
    pub fn fill(&mut self) -> io::Result<Filled> {
        let mut filled = Filled { reads: 0, eof: false };
        if self.read_start > 0 && (self.read_start == self.read_end || self.read_end == self.read_buffer.len()) {
            self.read_buffer.copy_within(self.read_start..self.read_end, 0);
            self.read_end -= self.read_start;
            self.read_start = 0;
        }
        while self.read_end < self.read_buffer.len() {
            match self.stream.read(&mut self.read_buffer[self.read_end..]) {
                Ok(0) => {
                    filled.eof = true;
                    self.readable = false;
                    return Ok(filled);
                }
                Ok(size) => {
                    self.read_end += size;
                    filled.reads += 1;
                }
                // Edge-triggered: only a `WouldBlock` re-arms the readable event.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(filled);
                }
                // A signal interrupted the call before anything was read: just retry.
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        // The buffer is full; `readable` stays true so the next turn reads the rest.
        Ok(filled)
    }

    /// The bytes read and not yet consumed.
    pub fn unread(&self) -> &[u8] {
        &self.read_buffer[self.read_start..self.read_end]
    }

    /// Marks `size` leading unread bytes as consumed.
    pub fn consume(&mut self, size: usize) {
        assert!(size <= self.read_end - self.read_start);
        // A whole frame left the buffer: a partial one behind it is a new frame.
        self.frame_started_us = None;
        self.read_start += size;
        if self.read_start == self.read_end {
            self.read_start = 0;
            self.read_end = 0;
        }
    }

    /// The output buffer, to append whole frames to.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// Holds the output appended from now on, as part of commit group `group`, until
    /// [`Connection::release`] lets that group go. Returns true if and only if the
    /// connection was not held for `group` already (the caller lists it then).
    pub fn hold(&mut self, group: u64) -> bool {
        let newest = self.hold_next.or(self.hold_from);
        if let Some(newest) = newest {
            assert!(newest.group <= group, "group {group} held after group {}", newest.group);
            if newest.group == group {
                return false;
            }
        }
        let hold = Some(Hold { group, from: self.output.len() });
        match self.hold_from {
            None => self.hold_from = hold,
            Some(_) => {
                assert!(self.hold_next.is_none(), "at most two commit groups are held at once");
                self.hold_next = hold;
            }
        }
        true
    }

    /// Lets the output of `group` go: the journal covers what it answers. Output of a
    /// newer group released before an older one stays behind the older group's hold,
    /// so replies still leave in order.
    pub fn release(&mut self, group: u64) {
        if self.hold_next.is_some_and(|hold| hold.group == group) {
            self.hold_next = None;
        }
        if self.hold_from.is_some_and(|hold| hold.group == group) {
            self.hold_from = self.hold_next.take();
        }
    }

    /// Bytes queued and not yet written.
    pub fn pending_output(&self) -> usize {
        self.output.len() - self.output_sent
    }

    /// Bytes queued that may be written now (not held).
    pub fn sendable_output(&self) -> usize {
        self.hold_from.map_or(self.output.len(), |hold| hold.from) - self.output_sent
    }

    /// Notes what a flush did, given the pending output before it: a write that made
    /// progress (or output that just started waiting) restarts the stall clock, and
    /// nothing left to write stops it.
    pub fn note_flush(&mut self, now_us: u64, pending_before: usize) {
        if self.sendable_output() == 0 {
            self.write_stalled_since_us = None;
        } else if self.pending_output() < pending_before || self.write_stalled_since_us.is_none() {
            self.write_stalled_since_us = Some(now_us);
        }
    }

    /// Notes, after decoding, whether the read buffer starts with a partial frame, and
    /// since when: the clock runs from the first turn it was seen until a frame is consumed.
    pub fn note_partial_frame(&mut self, now_us: u64) {
        let partial = self.read_start < self.read_end && matches!(next_frame(self.unread()), Ok(None));
        if !partial {
            self.frame_started_us = None;
        } else if self.frame_started_us.is_none() {
            self.frame_started_us = Some(now_us);
        }
    }

    /// Writes queued output, up to a hold if there is one, until done or the socket would
    /// block. Returns the number of `write` calls made.
    pub fn flush(&mut self) -> io::Result<u64> {
        let mut writes = 0;
        let limit = self.hold_from.map_or(self.output.len(), |hold| hold.from);
        while self.output_sent < limit {
            writes += 1;
            match self.stream.write(&self.output[self.output_sent..limit]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(size) => self.output_sent += size,
                // The socket buffer is full: a writable event will come when it drains.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                // A signal interrupted the call before anything was written: retry.
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        if self.output_sent == self.output.len() {
            self.output.clear();
            self.output_sent = 0;
            // Holds can only sit at the end here; they now hold from the start.
            self.hold_from = self.hold_from.map(|hold| Hold { from: 0, ..hold });
            self.hold_next = self.hold_next.map(|hold| Hold { from: 0, ..hold });
        } else if self.output_sent > self.output.capacity() / 2 {
            self.compact();
        }
        Ok(writes)
    }

    /// Drops the written whole frames from the front, keeping the buffer frame-aligned.
    fn compact(&mut self) {
        let boundary = self.frame_boundary_at_or_before(self.output_sent);
        self.output.drain(..boundary);
        self.output_sent -= boundary;
        // Held bytes are never sent, so a hold is never before the written frames.
        self.hold_from = self.hold_from.map(|hold| Hold { from: hold.from - boundary, ..hold });
        self.hold_next = self.hold_next.map(|hold| Hold { from: hold.from - boundary, ..hold });
    }

    /// Drops every frame not yet started, keeping the one partly written: what a GOODBYE
    /// may follow so that it arrives next. Held frames are among the dropped ones (none
    /// of them was started), so the GOODBYE is not held.
    pub fn cut_unstarted(&mut self) {
        let mut boundary = self.frame_boundary_at_or_before(self.output_sent);
        if boundary < self.output_sent {
            boundary += frame_length(&self.output[boundary..]);
        }
        if let Some(hold) = self.hold_from {
            assert!(hold.from >= boundary, "a held frame was started");
        }
        self.hold_from = None;
        self.hold_next = None;
        self.output.truncate(boundary);
    }

    /// Appends a GAP push for every range of pushes missed and forgets them. Returns
    /// how many were appended.
    pub fn emit_gaps(&mut self) -> u64 {
        let mut count = 0;
        let output = &mut self.output;
        self.missed.drain(|range| {
            let topic = topic_from_index(range.topic);
            encode_gap(&Gap { hunt: range.hunt, topic, first: range.first, last: range.last }, output);
            count += 1;
        });
        count
    }

    fn frame_boundary_at_or_before(&self, offset: usize) -> usize {
        let mut boundary = 0;
        while boundary < offset {
            let next = boundary + frame_length(&self.output[boundary..]);
            if next > offset {
                break;
            }
            boundary = next;
        }
        boundary
    }
}

fn frame_length(frame: &[u8]) -> usize {
    assert!(frame.len() >= FRAME_HEADER_SIZE, "the output buffer holds whole frames only");
    let length = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert!(length >= FRAME_HEADER_SIZE);
    length
}

fn topic_from_index(index: u8) -> Topic {
    match index {
        0 => Topic::Discoveries,
        1 => Topic::Top,
        2 => Topic::Lifecycle,
        other => panic!("topic index {other} was never recorded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection over a real loopback socket, and the peer's end.
    fn pair() -> (Connection, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        (Connection::new(TcpStream::from_std(accepted), 1, 0), peer)
    }

    /// Appends one empty frame whose request id is `id`.
    fn frame(connection: &mut Connection, id: u32) {
        let mut header = [0u8; FRAME_HEADER_SIZE];
        header[..4].copy_from_slice(&(FRAME_HEADER_SIZE as u32).to_le_bytes());
        header[FRAME_HEADER_SIZE - 4..].copy_from_slice(&id.to_le_bytes());
        connection.output().extend_from_slice(&header);
    }

    /// Reads what the peer received: the ids of whole frames.
    fn received(peer: &mut std::net::TcpStream) -> Vec<u32> {
        peer.set_read_timeout(Some(std::time::Duration::from_millis(50))).unwrap();
        let mut bytes = Vec::new();
        let mut buffer = [0u8; 1024];
        while let Ok(size @ 1..) = peer.read(&mut buffer) {
            bytes.extend_from_slice(&buffer[..size]);
        }
        bytes
            .chunks_exact(FRAME_HEADER_SIZE)
            .map(|frame| u32::from_le_bytes(frame[8..12].try_into().unwrap()))
            .collect()
    }

    #[test]
    fn held_groups_leave_in_order_whichever_is_released_first() {
        let (mut connection, mut peer) = pair();
        frame(&mut connection, 1);
        assert!(connection.hold(7));
        frame(&mut connection, 2);
        assert!(!connection.hold(7), "already held for group 7");
        assert!(connection.hold(8));
        frame(&mut connection, 3);
        connection.flush().unwrap();
        assert_eq!(received(&mut peer), [1]);
        // The newer group covered first: its frame still waits behind the older one.
        connection.release(8);
        connection.flush().unwrap();
        assert_eq!(received(&mut peer), Vec::<u32>::new());
        connection.release(7);
        connection.flush().unwrap();
        assert_eq!(received(&mut peer), [2, 3]);
        // And in the usual order: the older group first, then the newer.
        assert!(connection.hold(9));
        frame(&mut connection, 4);
        assert!(connection.hold(10));
        frame(&mut connection, 5);
        connection.release(9);
        connection.flush().unwrap();
        assert_eq!(received(&mut peer), [4]);
        connection.release(10);
        connection.flush().unwrap();
        assert_eq!(received(&mut peer), [5]);
    }
}
