//! Replies and error frames, server to client: the encoders the server calls with an
//! [`Outcome`] or a handshake, ping, stats or subscription answer.
//!
//! A reply's opcode is its request's opcode with [`super::opcode::REPLY_BIT`] set, and
//! its request id is the request's. Its body is fixed by that opcode (drawn below as
//! chained offsets, shared with the client's decoder in `response.rs`). Every encoder
//! appends one frame to the caller's buffer and allocates nothing when the buffer has
//! room: bodies are built in stack arrays or appended in place, and error text is
//! formatted straight into the buffer. A rejected event becomes an ERROR frame carrying
//! `Rejection::code()` and its message.

use std::fmt;

use crate::constants::{
    AROUND_RADIUS_MAX, CLAIMS_PER_MOVE_MAX, ERROR_MESSAGE_SIZE_MAX, FRAME_HEADER_SIZE, FRAME_SIZE_MAX,
    LIST_ENTRIES_MAX, PROTOCOL_VERSION, SUBSCRIPTIONS_PER_CONNECTION_MAX, TOP_COUNT_MAX,
};
use crate::event::EventKind;
use crate::outcome::{Claim, Outcome, Ranked, Rejection, Standing, Topic, TreasureState};

use super::error::ProtocolError;
use super::frame::{append_frame, begin_frame, finish_frame, FLAG_QUIET};
use super::opcode::Opcode;
use super::record::{claim, message, ranked};
use super::wire::{put_i64, put_u16, put_u32, put_u64, put_u8, U16, U32, U64, U8};

/// What the server tells a client in its HELLO reply: the version chosen and the limits
/// the client must respect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServerHello {
    /// The protocol version both sides will speak.
    pub version: u16,
    /// Shards (threads) the server runs; hunts are spread across them.
    pub shard_count: u16,
    /// Largest frame either side may send, header included, in bytes.
    pub frame_size_max: u32,
    /// Most entries a TOP request may ask for.
    pub top_count_max: u32,
    /// Most neighbours on each side an AROUND request may ask for.
    pub around_radius_max: u32,
    /// Most hunts one connection may subscribe to at once.
    pub subscriptions_max: u32,
}

impl ServerHello {
    /// The answer of a server with `shard_count` shards and this build's limits.
    pub const fn new(shard_count: u16) -> ServerHello {
        ServerHello {
            version: PROTOCOL_VERSION,
            shard_count,
            frame_size_max: FRAME_SIZE_MAX as u32,
            top_count_max: TOP_COUNT_MAX,
            around_radius_max: AROUND_RADIUS_MAX,
            subscriptions_max: SUBSCRIPTIONS_PER_CONNECTION_MAX,
        }
    }
}

/// HELLO reply: `version u16, shard_count u16, frame_size_max u32, top_count_max u32,
/// around_radius_max u32, subscriptions_max u32`.
pub(crate) mod hello {
    use super::*;
    pub(crate) const VERSION: usize = 0;
    pub(crate) const SHARD_COUNT: usize = VERSION + U16;
    pub(crate) const FRAME_SIZE_MAX: usize = SHARD_COUNT + U16;
    pub(crate) const TOP_COUNT_MAX: usize = FRAME_SIZE_MAX + U32;
    pub(crate) const AROUND_RADIUS_MAX: usize = TOP_COUNT_MAX + U32;
    pub(crate) const SUBSCRIPTIONS_MAX: usize = AROUND_RADIUS_MAX + U32;
    pub(crate) const SIZE: usize = SUBSCRIPTIONS_MAX + U32;
}

/// SUBSCRIBE reply: the last sequence number issued on each topic of the hunt, `u64`
/// each, in `Topic` order (discoveries, top, lifecycle); 0 if none yet.
pub(crate) mod subscribed {
    use super::*;
    pub(crate) const SEQUENCES: usize = 0;
    pub(crate) const SIZE: usize = SEQUENCES + Topic::COUNT * U64;
}

/// JOIN and ADJUST_SCORE replies: `score i64, rank u32`.
pub(crate) mod scored {
    use super::*;
    pub(crate) const SCORE: usize = 0;
    pub(crate) const RANK: usize = SCORE + U64;
    pub(crate) const SIZE: usize = RANK + U32;
}

/// MOVE reply: `count u32`, then `count` claims (at most `CLAIMS_PER_MOVE_MAX`).
pub(crate) mod moved {
    use super::*;
    pub(crate) const COUNT: usize = 0;
    pub(crate) const CLAIMS: usize = COUNT + U32;
}

/// DIG reply: one claim.
pub(crate) mod dug {
    use super::*;
    pub(crate) const CLAIM: usize = 0;
    pub(crate) const SIZE: usize = CLAIM + claim::SIZE;
}

/// TOP and AROUND replies: `total u32, count u32`, then `count` leaderboard lines (at
/// most `LIST_ENTRIES_MAX`).
pub(crate) mod list {
    use super::*;
    pub(crate) const TOTAL: usize = 0;
    pub(crate) const COUNT: usize = TOTAL + U32;
    pub(crate) const ENTRIES: usize = COUNT + U32;
}

/// RANK reply: `rank u32, total u32, score i64, claims u32, last_seq u32, joined u8`.
pub(crate) mod standing {
    use super::*;
    pub(crate) const RANK: usize = 0;
    pub(crate) const TOTAL: usize = RANK + U32;
    pub(crate) const SCORE: usize = TOTAL + U32;
    pub(crate) const CLAIMS: usize = SCORE + U64;
    pub(crate) const LAST_SEQ: usize = CLAIMS + U32;
    pub(crate) const JOINED: usize = LAST_SEQ + U32;
    pub(crate) const SIZE: usize = JOINED + U8;
}

/// HINT reply: `present u8, distance u64` (distance is 0 when absent).
pub(crate) mod hint {
    use super::*;
    pub(crate) const PRESENT: usize = 0;
    pub(crate) const DISTANCE: usize = PRESENT + U8;
    pub(crate) const SIZE: usize = DISTANCE + U64;
}

/// TREASURE_INFO reply: `claimed u32, capacity u32, value u32`.
pub(crate) mod treasure {
    use super::*;
    pub(crate) const CLAIMED: usize = 0;
    pub(crate) const CAPACITY: usize = CLAIMED + U32;
    pub(crate) const VALUE: usize = CAPACITY + U32;
    pub(crate) const SIZE: usize = VALUE + U32;
}

// The longest replies fit in one frame; `constants.rs` states the same with literal
// record sizes, and these tie those literals to the real layouts.
const _: () = assert!(FRAME_HEADER_SIZE + list::ENTRIES + ranked::SIZE * LIST_ENTRIES_MAX <= FRAME_SIZE_MAX);
const _: () = assert!(FRAME_HEADER_SIZE + moved::CLAIMS + claim::SIZE * CLAIMS_PER_MOVE_MAX <= FRAME_SIZE_MAX);
const _: () = assert!(FRAME_HEADER_SIZE + message::TEXT + ERROR_MESSAGE_SIZE_MAX <= FRAME_SIZE_MAX);

/// The largest fixed-size reply body, in bytes: the encoders' stack buffer.
const FIXED_BODY_SIZE_MAX: usize = 32;
const _: () = assert!(hello::SIZE <= FIXED_BODY_SIZE_MAX);
const _: () = assert!(subscribed::SIZE <= FIXED_BODY_SIZE_MAX);
const _: () = assert!(standing::SIZE <= FIXED_BODY_SIZE_MAX);
const _: () = assert!(dug::SIZE <= FIXED_BODY_SIZE_MAX);

/// Returns true if and only if a request with these header flags gets a reply to this
/// outcome: a QUIET move is answered only when it claimed something or was rejected.
pub fn reply_wanted(flags: u8, outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Moved { claims } if flags & FLAG_QUIET != 0 => !claims.is_empty(),
        _ => true,
    }
}

/// Appends the reply to an event of `kind`: its reply frame, or an ERROR frame if the
/// event was rejected.
///
/// Panics if `outcome` is not one that an event of `kind` produces (a bug in the state
/// machine or the server), or if a list is longer than its limit.
pub fn encode_outcome(request_id: u32, kind: EventKind, outcome: &Outcome, out: &mut Vec<u8>) {
    let opcode = Opcode::for_event(kind).reply();
    let mut body = [0; FIXED_BODY_SIZE_MAX];
    let size = match (kind, outcome) {
        (_, Outcome::Rejected(rejection)) => return encode_rejection(request_id, rejection, out),
        (EventKind::CreateHunt, Outcome::HuntCreated)
        | (EventKind::EndHunt, Outcome::HuntEnded)
        | (EventKind::DeleteHunt, Outcome::HuntDeleted)
        | (EventKind::PlaceTreasure, Outcome::TreasurePlaced)
        | (EventKind::RemoveTreasure, Outcome::TreasureRemoved)
        | (EventKind::Leave, Outcome::Left) => 0,
        (EventKind::Join, &Outcome::Joined { score, rank })
        | (EventKind::AdjustScore, &Outcome::Adjusted { score, rank }) => {
            put_i64(&mut body, scored::SCORE, score);
            put_u32(&mut body, scored::RANK, rank);
            scored::SIZE
        }
        (EventKind::Move, Outcome::Moved { claims }) => return append_moved(request_id, opcode, claims, out),
        (EventKind::Dig, Outcome::Dug { claim }) => {
            claim::put(&mut body, dug::CLAIM, claim);
            dug::SIZE
        }
        (EventKind::Top | EventKind::Around, &Outcome::List { total, entries }) => {
            return append_list(request_id, opcode, total, entries, out)
        }
        (EventKind::Rank, Outcome::Standing(standing)) => put_standing(&mut body, standing),
        (EventKind::Hint, &Outcome::Hint { distance }) => {
            put_u8(&mut body, hint::PRESENT, distance.is_some() as u8);
            put_u64(&mut body, hint::DISTANCE, distance.unwrap_or(0));
            hint::SIZE
        }
        (EventKind::TreasureInfo, Outcome::Treasure(state)) => put_treasure(&mut body, state),
        (kind, outcome) => panic!("outcome {outcome:?} cannot answer a {kind:?} event"),
    };
    append_frame(out, opcode, 0, request_id, &body[..size]);
}

fn append_moved(request_id: u32, opcode: u8, claims: &[Claim], out: &mut Vec<u8>) {
    assert!(claims.len() <= CLAIMS_PER_MOVE_MAX, "a move made {} claims", claims.len());
    let start = begin_frame(out, opcode, 0, request_id);
    out.extend_from_slice(&(claims.len() as u32).to_le_bytes());
    for claim in claims {
        let mut record = [0; claim::SIZE];
        claim::put(&mut record, 0, claim);
        out.extend_from_slice(&record);
    }
    finish_frame(out, start);
}

fn append_list(request_id: u32, opcode: u8, total: u32, entries: &[Ranked], out: &mut Vec<u8>) {
    assert!(entries.len() <= LIST_ENTRIES_MAX, "a list of {} entries", entries.len());
    let start = begin_frame(out, opcode, 0, request_id);
    let mut fixed = [0; list::ENTRIES];
    put_u32(&mut fixed, list::TOTAL, total);
    put_u32(&mut fixed, list::COUNT, entries.len() as u32);
    out.extend_from_slice(&fixed);
    for entry in entries {
        let mut record = [0; ranked::SIZE];
        ranked::put(&mut record, 0, entry);
        out.extend_from_slice(&record);
    }
    finish_frame(out, start);
}

fn put_standing(body: &mut [u8], standing: &Standing) -> usize {
    put_u32(body, standing::RANK, standing.rank);
    put_u32(body, standing::TOTAL, standing.total);
    put_i64(body, standing::SCORE, standing.score);
    put_u32(body, standing::CLAIMS, standing.claims);
    put_u32(body, standing::LAST_SEQ, standing.last_seq);
    put_u8(body, standing::JOINED, standing.joined as u8);
    standing::SIZE
}

fn put_treasure(body: &mut [u8], state: &TreasureState) -> usize {
    put_u32(body, treasure::CLAIMED, state.claimed);
    put_u32(body, treasure::CAPACITY, state.capacity);
    put_u32(body, treasure::VALUE, state.value);
    treasure::SIZE
}

/// Appends an ERROR frame: `code u16, message_length u16, message`. The message is
/// formatted straight into `out` and cut at `ERROR_MESSAGE_SIZE_MAX` bytes on a
/// character boundary. `request_id` is the failed request's, or 0 if there was none.
pub fn encode_error(request_id: u32, code: u16, message: &dyn fmt::Display, out: &mut Vec<u8>) {
    let start = begin_frame(out, Opcode::Error as u8, 0, request_id);
    message::append(out, code, message, ERROR_MESSAGE_SIZE_MAX);
    finish_frame(out, start);
}

/// Appends the ERROR frame of a rejected event: its stable code and its message.
pub fn encode_rejection(request_id: u32, rejection: &Rejection, out: &mut Vec<u8>) {
    encode_error(request_id, rejection.code(), rejection, out);
}

/// Appends the ERROR frame of a frame the server could not decode.
pub fn encode_protocol_error(request_id: u32, error: &ProtocolError, out: &mut Vec<u8>) {
    encode_error(request_id, error.code().to_u16(), error, out);
}

/// Appends the HELLO reply.
pub fn encode_hello_reply(request_id: u32, hello: &ServerHello, out: &mut Vec<u8>) {
    let mut body = [0; hello::SIZE];
    put_u16(&mut body, hello::VERSION, hello.version);
    put_u16(&mut body, hello::SHARD_COUNT, hello.shard_count);
    put_u32(&mut body, hello::FRAME_SIZE_MAX, hello.frame_size_max);
    put_u32(&mut body, hello::TOP_COUNT_MAX, hello.top_count_max);
    put_u32(&mut body, hello::AROUND_RADIUS_MAX, hello.around_radius_max);
    put_u32(&mut body, hello::SUBSCRIPTIONS_MAX, hello.subscriptions_max);
    append_frame(out, Opcode::Hello.reply(), 0, request_id, &body);
}

/// Appends the PING reply (PONG), which has an empty body.
pub fn encode_pong(request_id: u32, out: &mut Vec<u8>) {
    append_frame(out, Opcode::Ping.reply(), 0, request_id, &[]);
}

/// Appends the STATS reply: the JSON document is the whole body. Fails, appending
/// nothing, if the document does not fit in one frame.
pub fn encode_stats_reply(request_id: u32, json: &str, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let length = FRAME_HEADER_SIZE + json.len();
    if length > FRAME_SIZE_MAX {
        return Err(ProtocolError::FrameTooLarge { length: length as u64 });
    }
    append_frame(out, Opcode::Stats.reply(), 0, request_id, json.as_bytes());
    Ok(())
}

/// Appends the SUBSCRIBE reply: the last sequence number issued on each of the hunt's
/// topics, indexed by `Topic as usize`, so the subscriber knows where pushes resume.
pub fn encode_subscribed(request_id: u32, sequences: &[u64; Topic::COUNT], out: &mut Vec<u8>) {
    let mut body = [0; subscribed::SIZE];
    for (index, sequence) in sequences.iter().enumerate() {
        put_u64(&mut body, subscribed::SEQUENCES + index * U64, *sequence);
    }
    append_frame(out, Opcode::Subscribe.reply(), 0, request_id, &body);
}

/// Appends the UNSUBSCRIBE reply, which has an empty body.
pub fn encode_unsubscribed(request_id: u32, out: &mut Vec<u8>) {
    append_frame(out, Opcode::Unsubscribe.reply(), 0, request_id, &[]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::ErrorCode;

    #[test]
    fn a_rejection_becomes_this_error_frame() {
        let mut out = Vec::new();
        let outcome = Outcome::Rejected(Rejection::Duplicate { seq: 3, last: 7 });
        encode_outcome(9, EventKind::Move, &outcome, &mut out);
        let message = b"sequence number 3 was already applied (last applied: 7)";
        #[rustfmt::skip]
        let mut expected = vec![
            0x47, 0x00, 0x00, 0x00, // length 71 = 12 + 4 + 55
            0x7F,                   // opcode ERROR
            0x00,                   // flags
            0x00, 0x00,             // reserved
            0x09, 0x00, 0x00, 0x00, // request id 9
            0x7D, 0x00,             // code 125 (duplicate)
            0x37, 0x00,             // message length 55
        ];
        expected.extend_from_slice(message);
        assert_eq!(out, expected);
    }

    #[test]
    fn a_long_message_is_cut_at_the_limit() {
        let mut out = Vec::new();
        encode_error(0, ErrorCode::MalformedFrame as u16, &format_args!("{:é>300}", ""), &mut out);
        let size = u16::from_le_bytes([out[14], out[15]]) as usize;
        assert_eq!(size, ERROR_MESSAGE_SIZE_MAX);
        assert_eq!(out.len(), FRAME_HEADER_SIZE + message::TEXT + size);
        assert!(std::str::from_utf8(&out[16..]).is_ok());
    }

    #[test]
    fn reply_opcodes_set_the_high_bit() {
        let mut out = Vec::new();
        encode_outcome(1, EventKind::Hint, &Outcome::Hint { distance: Some(12) }, &mut out);
        assert_eq!(out[4], 0x9D);
        assert_eq!(out[12..], [1, 12, 0, 0, 0, 0, 0, 0, 0]);
        out.clear();
        encode_pong(2, &mut out);
        assert_eq!(out, [12, 0, 0, 0, 0x82, 0, 0, 0, 2, 0, 0, 0]);
    }

    #[test]
    fn an_oversize_stats_document_is_refused() {
        let mut out = Vec::new();
        let json = " ".repeat(FRAME_SIZE_MAX - FRAME_HEADER_SIZE + 1);
        assert_eq!(
            encode_stats_reply(1, &json, &mut out),
            Err(ProtocolError::FrameTooLarge { length: FRAME_SIZE_MAX as u64 + 1 })
        );
        assert!(out.is_empty());
        assert_eq!(encode_stats_reply(1, &json[1..], &mut out), Ok(()));
        assert_eq!(out.len(), FRAME_SIZE_MAX);
    }
}
