//! Pushes, server to client, unasked: notices for subscribers, GAP when a subscriber
//! missed some, and GOODBYE before the server closes a connection on purpose.
//!
//! Every push has an opcode in 0x40..=0x4F, request id 0 and flag [`FLAG_PUSH`], so a
//! client can tell it from a reply by any of the three. A notice body starts with the
//! hunt and the notice's sequence number within its hunt and topic (`Notice::seq`: 1, 2,
//! 3, ... with no gaps), so a subscriber sees a jump as a loss even if the GAP push that
//! reports it was itself dropped. Encoders build each body in a stack array and append
//! it, allocating nothing when the buffer has room.

use std::fmt;

use crate::constants::ERROR_MESSAGE_SIZE_MAX;
use crate::event::HuntId;
use crate::outcome::{Lifecycle, Notice, NoticeKind, Topic};

use super::error::ProtocolError;
use super::frame::{append_frame, begin_frame, finish_frame, FLAG_PUSH};
use super::opcode::Opcode;
use super::record::{claim, message};
use super::wire::{put_i64, put_u32, put_u64, put_u8, U32, U64, U8};

/// A range of pushes a subscriber missed: on `hunt`'s `topic`, sequence numbers
/// `first..=last` were dropped because the subscriber's buffer was full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gap {
    /// The hunt.
    pub hunt: HuntId,
    /// The topic.
    pub topic: Topic,
    /// First sequence number missed.
    pub first: u64,
    /// Last sequence number missed; at least `first`.
    pub last: u64,
}

/// The fields every notice push starts with: `hunt u32, seq u64`.
pub(crate) mod notice {
    use super::*;
    pub(crate) const HUNT: usize = 0;
    pub(crate) const SEQ: usize = HUNT + U32;
    pub(crate) const KIND: usize = SEQ + U64;
}

/// DISCOVERY: the notice fields, then `player u32` and a claim.
pub(crate) mod discovery {
    use super::*;
    pub(crate) const PLAYER: usize = notice::KIND;
    pub(crate) const CLAIM: usize = PLAYER + U32;
    pub(crate) const SIZE: usize = CLAIM + claim::SIZE;
}

/// TOP_CHANGED: the notice fields, then `player u32, score i64, rank_before u32,
/// rank_after u32`.
pub(crate) mod top_changed {
    use super::*;
    pub(crate) const PLAYER: usize = notice::KIND;
    pub(crate) const SCORE: usize = PLAYER + U32;
    pub(crate) const RANK_BEFORE: usize = SCORE + U64;
    pub(crate) const RANK_AFTER: usize = RANK_BEFORE + U32;
    pub(crate) const SIZE: usize = RANK_AFTER + U32;
}

/// LIFECYCLE: the notice fields, then `stage u8, treasure u32` (treasure is 0 unless
/// the stage is "exhausted").
pub(crate) mod lifecycle {
    use super::*;
    pub(crate) const STAGE: usize = notice::KIND;
    pub(crate) const TREASURE: usize = STAGE + U8;
    pub(crate) const SIZE: usize = TREASURE + U32;

    pub(crate) const STARTED: u8 = 0;
    pub(crate) const ENDED: u8 = 1;
    pub(crate) const EXHAUSTED: u8 = 2;
    pub(crate) const DELETED: u8 = 3;
}

/// GAP: `hunt u32, topic u8, first u64, last u64`.
pub(crate) mod gap {
    use super::*;
    pub(crate) const HUNT: usize = 0;
    pub(crate) const TOPIC: usize = HUNT + U32;
    pub(crate) const FIRST: usize = TOPIC + U8;
    pub(crate) const LAST: usize = FIRST + U64;
    pub(crate) const SIZE: usize = LAST + U64;
}

/// The largest push body, in bytes: the encoders' stack buffer.
const BODY_SIZE_MAX: usize = discovery::SIZE;
const _: () = assert!(top_changed::SIZE <= BODY_SIZE_MAX);
const _: () = assert!(lifecycle::SIZE <= BODY_SIZE_MAX);
const _: () = assert!(gap::SIZE <= BODY_SIZE_MAX);

/// The topic whose wire byte (`Topic as u8`, not its mask bit) is `byte`.
pub(crate) fn topic_from_u8(byte: u8) -> Result<Topic, ProtocolError> {
    match byte {
        0 => Ok(Topic::Discoveries),
        1 => Ok(Topic::Top),
        2 => Ok(Topic::Lifecycle),
        value => Err(ProtocolError::InvalidField { field: "topic", value: value as u64 }),
    }
}

/// The push opcode of a notice.
pub const fn notice_opcode(kind: &NoticeKind) -> Opcode {
    match kind {
        NoticeKind::Discovery { .. } => Opcode::Discovery,
        NoticeKind::TopChanged { .. } => Opcode::TopChanged,
        NoticeKind::Lifecycle(_) => Opcode::Lifecycle,
    }
}

/// Appends the push of a notice.
pub fn encode_notice(notice: &Notice, out: &mut Vec<u8>) {
    let mut body = [0; BODY_SIZE_MAX];
    put_u32(&mut body, notice::HUNT, notice.hunt);
    put_u64(&mut body, notice::SEQ, notice.seq);
    let size = match notice.kind {
        NoticeKind::Discovery { player, claim } => {
            put_u32(&mut body, discovery::PLAYER, player);
            claim::put(&mut body, discovery::CLAIM, &claim);
            discovery::SIZE
        }
        NoticeKind::TopChanged { player, score, rank_before, rank_after } => {
            put_u32(&mut body, top_changed::PLAYER, player);
            put_i64(&mut body, top_changed::SCORE, score);
            put_u32(&mut body, top_changed::RANK_BEFORE, rank_before);
            put_u32(&mut body, top_changed::RANK_AFTER, rank_after);
            top_changed::SIZE
        }
        NoticeKind::Lifecycle(stage) => {
            let (stage, treasure) = match stage {
                Lifecycle::Started => (lifecycle::STARTED, 0),
                Lifecycle::Ended => (lifecycle::ENDED, 0),
                Lifecycle::Exhausted { treasure } => (lifecycle::EXHAUSTED, treasure),
                Lifecycle::Deleted => (lifecycle::DELETED, 0),
            };
            put_u8(&mut body, lifecycle::STAGE, stage);
            put_u32(&mut body, lifecycle::TREASURE, treasure);
            lifecycle::SIZE
        }
    };
    append_frame(out, notice_opcode(&notice.kind) as u8, FLAG_PUSH, 0, &body[..size]);
}

/// Appends a GAP push.
///
/// Panics if `gap.first > gap.last`: an empty gap is a bug in the server.
pub fn encode_gap(gap: &Gap, out: &mut Vec<u8>) {
    assert!(gap.first <= gap.last, "gap {}..={} is empty", gap.first, gap.last);
    let mut body = [0; gap::SIZE];
    put_u32(&mut body, gap::HUNT, gap.hunt);
    put_u8(&mut body, gap::TOPIC, gap.topic as u8);
    put_u64(&mut body, gap::FIRST, gap.first);
    put_u64(&mut body, gap::LAST, gap.last);
    append_frame(out, Opcode::Gap as u8, FLAG_PUSH, 0, &body);
}

/// Appends a GOODBYE push: the reason code (an `ErrorCode`, such as `ShuttingDown` or
/// `SlowConsumer`) and a message, cut like an error message. The server closes the
/// connection once this frame is written.
pub fn encode_goodbye(code: u16, message: &dyn fmt::Display, out: &mut Vec<u8>) {
    let start = begin_frame(out, Opcode::Goodbye as u8, FLAG_PUSH, 0);
    message::append(out, code, message, ERROR_MESSAGE_SIZE_MAX);
    finish_frame(out, start);
}
