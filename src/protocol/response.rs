//! Frames from server to client, decoded into owned values for the client:
//! [`Response`] (a reply, an error, or a push) and [`decode_response`].
//!
//! This side may allocate (lists become `Vec`s, text becomes `String`), since it runs in
//! clients, not on the server's hot path. It is exactly as strict as the request decoder:
//! each opcode has one body size (or one size per list count), padding and unused fields
//! must be 0, and [`encode_response`] turns any decoded value back into the same bytes.
//! `encode_response` exists for tests and for fake servers; the real server calls the
//! allocation-free encoders in `reply.rs` and `push.rs` directly.

use crate::constants::{CLAIMS_PER_MOVE_MAX, ERROR_MESSAGE_SIZE_MAX, LIST_ENTRIES_MAX};
use crate::event::EventKind;
use crate::outcome::{Claim, Lifecycle, Notice, NoticeKind, Outcome, Ranked, Standing, Topic, TreasureState};

use super::error::ProtocolError;
use super::frame::{check_reserved, split_frame, FrameHeader, FLAG_PUSH};
use super::opcode::{Opcode, REPLY_BIT};
use super::push::{self, discovery, gap, lifecycle, notice, top_changed, Gap};
use super::record::{check_list, check_size, claim, get_bool, message, ranked};
use super::reply::{self, dug, hello, hint, list, moved, scored, standing, subscribed, treasure, ServerHello};
use super::wire::{get_i64, get_u16, get_u32, get_u64, get_u8, U64};

/// One frame from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The answer to a request.
    Reply {
        /// The request's id.
        request_id: u32,
        /// What it answers.
        body: ReplyBody,
    },
    /// A request failed (or the connection is being refused).
    Error {
        /// The failed request's id, or 0 if the error is about no request in particular.
        request_id: u32,
        /// A protocol `ErrorCode` (below 100) or a `Rejection` code (100 and up).
        code: u16,
        /// What went wrong, in words.
        message: String,
    },
    /// Something the client subscribed to, or a notice about the connection.
    Push(PushBody),
}

/// The body of a reply; each variant belongs to exactly one request opcode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyBody {
    /// HELLO: the version chosen and the server's limits.
    Hello(ServerHello),
    /// PING.
    Pong,
    /// STATS: a JSON document.
    Stats {
        /// The document.
        json: String,
    },
    /// SUBSCRIBE: the last sequence number issued on each topic, in `Topic` order.
    Subscribed {
        /// Indexed by `Topic as usize`.
        sequences: [u64; Topic::COUNT],
    },
    /// UNSUBSCRIBE.
    Unsubscribed,
    /// CREATE_HUNT.
    HuntCreated,
    /// END_HUNT.
    HuntEnded,
    /// DELETE_HUNT.
    HuntDeleted,
    /// PLACE_TREASURE.
    TreasurePlaced,
    /// REMOVE_TREASURE.
    TreasureRemoved,
    /// JOIN.
    Joined {
        /// The player's score.
        score: i64,
        /// The player's rank.
        rank: u32,
    },
    /// LEAVE.
    Left,
    /// MOVE: the claims the move made (usually none).
    Moved {
        /// At most `CLAIMS_PER_MOVE_MAX`.
        claims: Vec<Claim>,
    },
    /// DIG.
    Dug {
        /// The award.
        claim: Claim,
    },
    /// ADJUST_SCORE.
    Adjusted {
        /// The new score.
        score: i64,
        /// The new rank.
        rank: u32,
    },
    /// TOP.
    Top {
        /// Players on the leaderboard in all.
        total: u32,
        /// The lines, best first.
        entries: Vec<Ranked>,
    },
    /// AROUND.
    Around {
        /// Players on the leaderboard in all.
        total: u32,
        /// The lines, best first.
        entries: Vec<Ranked>,
    },
    /// RANK.
    Standing(Standing),
    /// HINT.
    Hint {
        /// Distance to the nearest claimable treasure, if any.
        distance: Option<u64>,
    },
    /// TREASURE_INFO.
    Treasure(TreasureState),
}

/// The body of a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushBody {
    /// DISCOVERY, TOP_CHANGED or LIFECYCLE.
    Notice(Notice),
    /// GAP.
    Gap(Gap),
    /// GOODBYE: the server closes the connection after this.
    Goodbye {
        /// The reason, an `ErrorCode`.
        code: u16,
        /// The reason, in words.
        message: String,
    },
}

impl ReplyBody {
    /// The request opcode this body answers.
    pub const fn opcode(&self) -> Opcode {
        match self {
            ReplyBody::Hello(_) => Opcode::Hello,
            ReplyBody::Pong => Opcode::Ping,
            ReplyBody::Stats { .. } => Opcode::Stats,
            ReplyBody::Subscribed { .. } => Opcode::Subscribe,
            ReplyBody::Unsubscribed => Opcode::Unsubscribe,
            ReplyBody::HuntCreated => Opcode::CreateHunt,
            ReplyBody::HuntEnded => Opcode::EndHunt,
            ReplyBody::HuntDeleted => Opcode::DeleteHunt,
            ReplyBody::TreasurePlaced => Opcode::PlaceTreasure,
            ReplyBody::TreasureRemoved => Opcode::RemoveTreasure,
            ReplyBody::Joined { .. } => Opcode::Join,
            ReplyBody::Left => Opcode::Leave,
            ReplyBody::Moved { .. } => Opcode::Move,
            ReplyBody::Dug { .. } => Opcode::Dig,
            ReplyBody::Adjusted { .. } => Opcode::AdjustScore,
            ReplyBody::Top { .. } => Opcode::Top,
            ReplyBody::Around { .. } => Opcode::Around,
            ReplyBody::Standing(_) => Opcode::Rank,
            ReplyBody::Hint { .. } => Opcode::Hint,
            ReplyBody::Treasure(_) => Opcode::TreasureInfo,
        }
    }

    /// The state machine's outcome this body carries, borrowing its lists; `None` for
    /// the bodies of HELLO, PING, STATS, SUBSCRIBE and UNSUBSCRIBE.
    pub fn outcome(&self) -> Option<Outcome<'_>> {
        let outcome = match self {
            ReplyBody::Hello(_)
            | ReplyBody::Pong
            | ReplyBody::Stats { .. }
            | ReplyBody::Subscribed { .. }
            | ReplyBody::Unsubscribed => return None,
            ReplyBody::HuntCreated => Outcome::HuntCreated,
            ReplyBody::HuntEnded => Outcome::HuntEnded,
            ReplyBody::HuntDeleted => Outcome::HuntDeleted,
            ReplyBody::TreasurePlaced => Outcome::TreasurePlaced,
            ReplyBody::TreasureRemoved => Outcome::TreasureRemoved,
            &ReplyBody::Joined { score, rank } => Outcome::Joined { score, rank },
            ReplyBody::Left => Outcome::Left,
            ReplyBody::Moved { claims } => Outcome::Moved { claims },
            &ReplyBody::Dug { claim } => Outcome::Dug { claim },
            &ReplyBody::Adjusted { score, rank } => Outcome::Adjusted { score, rank },
            ReplyBody::Top { total, entries } | ReplyBody::Around { total, entries } => {
                Outcome::List { total: *total, entries }
            }
            &ReplyBody::Standing(standing) => Outcome::Standing(standing),
            &ReplyBody::Hint { distance } => Outcome::Hint { distance },
            &ReplyBody::Treasure(state) => Outcome::Treasure(state),
        };
        Some(outcome)
    }
}

/// Decodes one complete frame from the server (exactly `length` bytes).
pub fn decode_response(frame: &[u8]) -> Result<Response, ProtocolError> {
    let (header, body) = split_frame(frame)?;
    let byte = header.opcode;
    if byte & REPLY_BIT != 0 {
        let request = match Opcode::from_u8(byte & !REPLY_BIT) {
            Some(opcode) if opcode.is_request() => opcode,
            _ => return Err(ProtocolError::UnknownOpcode { opcode: byte }),
        };
        check_flags(&header, 0)?;
        let body = decode_reply_body(request, body)?;
        return Ok(Response::Reply { request_id: header.request_id, body });
    }
    match Opcode::from_u8(byte) {
        Some(Opcode::Error) => {
            check_flags(&header, 0)?;
            let (code, text) = message::get(body, byte, ERROR_MESSAGE_SIZE_MAX, "message")?;
            Ok(Response::Error { request_id: header.request_id, code, message: text.to_owned() })
        }
        Some(opcode) if opcode.is_push() => {
            check_flags(&header, FLAG_PUSH)?;
            if header.request_id != 0 {
                return Err(ProtocolError::PushRequestId { request_id: header.request_id });
            }
            Ok(Response::Push(decode_push_body(opcode, body)?))
        }
        _ => Err(ProtocolError::UnknownOpcode { opcode: byte }),
    }
}

/// Checks the reserved field, then the flags, of a frame whose opcode is known.
fn check_flags(header: &FrameHeader, expected: u8) -> Result<(), ProtocolError> {
    check_reserved(header)?;
    if header.flags == expected {
        Ok(())
    } else {
        Err(ProtocolError::InvalidFlags { opcode: header.opcode, flags: header.flags })
    }
}

fn decode_reply_body(request: Opcode, body: &[u8]) -> Result<ReplyBody, ProtocolError> {
    let opcode = request.reply();
    let empty = |reply: ReplyBody| check_size(body, opcode, 0).map(|()| reply);
    match request {
        Opcode::Hello => {
            check_size(body, opcode, hello::SIZE)?;
            Ok(ReplyBody::Hello(ServerHello {
                version: get_u16(body, hello::VERSION),
                shard_count: get_u16(body, hello::SHARD_COUNT),
                frame_size_max: get_u32(body, hello::FRAME_SIZE_MAX),
                top_count_max: get_u32(body, hello::TOP_COUNT_MAX),
                around_radius_max: get_u32(body, hello::AROUND_RADIUS_MAX),
                subscriptions_max: get_u32(body, hello::SUBSCRIPTIONS_MAX),
            }))
        }
        Opcode::Ping => empty(ReplyBody::Pong),
        Opcode::Stats => match std::str::from_utf8(body) {
            Ok(json) => Ok(ReplyBody::Stats { json: json.to_owned() }),
            Err(_) => Err(ProtocolError::InvalidUtf8 { field: "json" }),
        },
        Opcode::Subscribe => {
            check_size(body, opcode, subscribed::SIZE)?;
            let sequences = std::array::from_fn(|index| get_u64(body, subscribed::SEQUENCES + index * U64));
            Ok(ReplyBody::Subscribed { sequences })
        }
        Opcode::Unsubscribe => empty(ReplyBody::Unsubscribed),
        _ => {
            let kind = request.event_kind().expect("every other request opcode is an event");
            decode_event_reply(kind, opcode, body)
        }
    }
}

fn decode_event_reply(kind: EventKind, opcode: u8, body: &[u8]) -> Result<ReplyBody, ProtocolError> {
    let empty = |reply: ReplyBody| check_size(body, opcode, 0).map(|()| reply);
    let score_rank =
        || check_size(body, opcode, scored::SIZE).map(|()| (get_i64(body, scored::SCORE), get_u32(body, scored::RANK)));
    match kind {
        EventKind::CreateHunt => empty(ReplyBody::HuntCreated),
        EventKind::EndHunt => empty(ReplyBody::HuntEnded),
        EventKind::DeleteHunt => empty(ReplyBody::HuntDeleted),
        EventKind::PlaceTreasure => empty(ReplyBody::TreasurePlaced),
        EventKind::RemoveTreasure => empty(ReplyBody::TreasureRemoved),
        EventKind::Leave => empty(ReplyBody::Left),
        EventKind::Join => score_rank().map(|(score, rank)| ReplyBody::Joined { score, rank }),
        EventKind::AdjustScore => score_rank().map(|(score, rank)| ReplyBody::Adjusted { score, rank }),
        EventKind::Move => {
            let count = check_list(body, opcode, moved::CLAIMS, moved::COUNT, claim::SIZE, CLAIMS_PER_MOVE_MAX)?;
            let claims = (0..count).map(|index| claim::get(body, moved::CLAIMS + index * claim::SIZE)).collect();
            Ok(ReplyBody::Moved { claims })
        }
        EventKind::Dig => {
            check_size(body, opcode, dug::SIZE)?;
            Ok(ReplyBody::Dug { claim: claim::get(body, dug::CLAIM) })
        }
        EventKind::Top | EventKind::Around => {
            let count = check_list(body, opcode, list::ENTRIES, list::COUNT, ranked::SIZE, LIST_ENTRIES_MAX)?;
            let total = get_u32(body, list::TOTAL);
            let entries = (0..count).map(|index| ranked::get(body, list::ENTRIES + index * ranked::SIZE)).collect();
            Ok(if kind == EventKind::Top {
                ReplyBody::Top { total, entries }
            } else {
                ReplyBody::Around { total, entries }
            })
        }
        EventKind::Rank => {
            check_size(body, opcode, standing::SIZE)?;
            Ok(ReplyBody::Standing(Standing {
                rank: get_u32(body, standing::RANK),
                total: get_u32(body, standing::TOTAL),
                score: get_i64(body, standing::SCORE),
                claims: get_u32(body, standing::CLAIMS),
                last_seq: get_u32(body, standing::LAST_SEQ),
                joined: get_bool(body, standing::JOINED, "joined")?,
            }))
        }
        EventKind::Hint => {
            check_size(body, opcode, hint::SIZE)?;
            let distance = get_u64(body, hint::DISTANCE);
            match get_bool(body, hint::PRESENT, "present")? {
                true => Ok(ReplyBody::Hint { distance: Some(distance) }),
                false if distance == 0 => Ok(ReplyBody::Hint { distance: None }),
                false => Err(ProtocolError::InvalidField { field: "distance", value: distance }),
            }
        }
        EventKind::TreasureInfo => {
            check_size(body, opcode, treasure::SIZE)?;
            Ok(ReplyBody::Treasure(TreasureState {
                claimed: get_u32(body, treasure::CLAIMED),
                capacity: get_u32(body, treasure::CAPACITY),
                value: get_u32(body, treasure::VALUE),
            }))
        }
    }
}

fn decode_push_body(opcode: Opcode, body: &[u8]) -> Result<PushBody, ProtocolError> {
    let byte = opcode as u8;
    let kind = match opcode {
        Opcode::Discovery => {
            check_size(body, byte, discovery::SIZE)?;
            NoticeKind::Discovery {
                player: get_u32(body, discovery::PLAYER),
                claim: claim::get(body, discovery::CLAIM),
            }
        }
        Opcode::TopChanged => {
            check_size(body, byte, top_changed::SIZE)?;
            NoticeKind::TopChanged {
                player: get_u32(body, top_changed::PLAYER),
                score: get_i64(body, top_changed::SCORE),
                rank_before: get_u32(body, top_changed::RANK_BEFORE),
                rank_after: get_u32(body, top_changed::RANK_AFTER),
            }
        }
        Opcode::Lifecycle => {
            check_size(body, byte, lifecycle::SIZE)?;
            NoticeKind::Lifecycle(get_lifecycle(body)?)
        }
        Opcode::Gap => return get_gap(body).map(PushBody::Gap),
        Opcode::Goodbye => {
            let (code, text) = message::get(body, byte, ERROR_MESSAGE_SIZE_MAX, "message")?;
            return Ok(PushBody::Goodbye { code, message: text.to_owned() });
        }
        _ => return Err(ProtocolError::UnknownOpcode { opcode: byte }),
    };
    Ok(PushBody::Notice(Notice { hunt: get_u32(body, notice::HUNT), seq: get_u64(body, notice::SEQ), kind }))
}

fn get_lifecycle(body: &[u8]) -> Result<Lifecycle, ProtocolError> {
    let treasure = get_u32(body, lifecycle::TREASURE);
    let stage = match get_u8(body, lifecycle::STAGE) {
        lifecycle::STARTED => Lifecycle::Started,
        lifecycle::ENDED => Lifecycle::Ended,
        lifecycle::EXHAUSTED => return Ok(Lifecycle::Exhausted { treasure }),
        lifecycle::DELETED => Lifecycle::Deleted,
        value => return Err(ProtocolError::InvalidField { field: "stage", value: value as u64 }),
    };
    if treasure != 0 {
        return Err(ProtocolError::InvalidField { field: "treasure", value: treasure as u64 });
    }
    Ok(stage)
}

fn get_gap(body: &[u8]) -> Result<Gap, ProtocolError> {
    check_size(body, Opcode::Gap as u8, gap::SIZE)?;
    let topic = push::topic_from_u8(get_u8(body, gap::TOPIC))?;
    let first = get_u64(body, gap::FIRST);
    let last = get_u64(body, gap::LAST);
    if first > last {
        return Err(ProtocolError::InvalidField { field: "last", value: last });
    }
    Ok(Gap { hunt: get_u32(body, gap::HUNT), topic, first, last })
}

/// Appends the frame that decodes to `response`: the inverse of [`decode_response`].
/// Error and goodbye messages longer than `ERROR_MESSAGE_SIZE_MAX` are cut, as the
/// server would cut them.
pub fn encode_response(response: &Response, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    match response {
        &Response::Reply { request_id, ref body } => encode_reply_body(request_id, body, out)?,
        Response::Error { request_id, code, message } => reply::encode_error(*request_id, *code, message, out),
        Response::Push(PushBody::Notice(notice)) => push::encode_notice(notice, out),
        Response::Push(PushBody::Gap(gap)) => {
            if gap.first > gap.last {
                return Err(ProtocolError::InvalidField { field: "last", value: gap.last });
            }
            push::encode_gap(gap, out)
        }
        Response::Push(PushBody::Goodbye { code, message }) => push::encode_goodbye(*code, message, out),
    }
    Ok(())
}

fn encode_reply_body(request_id: u32, body: &ReplyBody, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    match body {
        ReplyBody::Hello(hello) => reply::encode_hello_reply(request_id, hello, out),
        ReplyBody::Pong => reply::encode_pong(request_id, out),
        ReplyBody::Stats { json } => reply::encode_stats_reply(request_id, json, out)?,
        ReplyBody::Subscribed { sequences } => reply::encode_subscribed(request_id, sequences, out),
        ReplyBody::Unsubscribed => reply::encode_unsubscribed(request_id, out),
        ReplyBody::Moved { claims } if claims.len() > CLAIMS_PER_MOVE_MAX => {
            return Err(ProtocolError::InvalidField { field: "count", value: claims.len() as u64 })
        }
        ReplyBody::Top { entries, .. } | ReplyBody::Around { entries, .. } if entries.len() > LIST_ENTRIES_MAX => {
            return Err(ProtocolError::InvalidField { field: "count", value: entries.len() as u64 })
        }
        _ => {
            let kind = body.opcode().event_kind().expect("the other bodies answer events");
            let outcome = body.outcome().expect("event bodies carry outcomes");
            reply::encode_outcome(request_id, kind, &outcome, out);
        }
    }
    Ok(())
}
