//! Requests, client to server: the [`Request`] value, its decoder for the server and its
//! encoder for clients.
//!
//! [`decode_request`] reads one complete frame in place: it borrows the HELLO name from
//! the frame and copies fixed-size fields out, so the server path never allocates. Every
//! body has one fixed size per opcode (HELLO: a fixed part plus its name), drawn below as
//! chained offsets; a body of any other size, an unknown enum byte, a non-zero padding
//! byte or a flag the opcode does not define is refused, so every accepted frame has
//! exactly one encoding. The decoder does not judge values the state machine judges
//! (bounds, counts over their limit, radii): those come back as rejections.

use crate::constants::{AUTH_TOKEN_SIZE_MAX, CLIENT_NAME_SIZE_MAX};
use crate::event::{Coordinates, Event, EventKind, HuntId, HuntOptions, HuntSpec, PointsRule, TreasureSpec};
use crate::outcome::Topic;

use super::error::ProtocolError;
use super::frame::{append_frame, check_reserved, split_frame, FrameHeader};
use super::opcode::Opcode;
use super::record::{check_size, check_zero, get_bool, position};
use super::wire::{get_i32, get_u16, get_u32, get_u64, get_u8, put_i32, put_u16, put_u32, put_u64, put_u8};
use super::wire::{U16, U32, U64, U8};

/// Every topic bit a SUBSCRIBE may set: bit 0 discoveries, bit 1 top, bit 2 lifecycle.
pub const TOPICS_ALL: u8 = Topic::Discoveries.bit() | Topic::Top.bit() | Topic::Lifecycle.bit();

/// A decoded request. `Copy`, and borrowed from the frame it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Request<'a> {
    /// The handshake: the protocol versions the client speaks, and its name.
    Hello {
        /// Oldest version the client speaks.
        version_min: u16,
        /// Newest version the client speaks; at least `version_min`.
        version_max: u16,
        /// The client's name, for logs; at most `CLIENT_NAME_SIZE_MAX` bytes.
        name: &'a str,
        /// The shared secret the server may require (`--auth-token`, `--admin-token`);
        /// empty when the client sends none. At most `AUTH_TOKEN_SIZE_MAX` bytes.
        token: &'a [u8],
    },
    /// Liveness probe; answered with PONG.
    Ping,
    /// Server statistics; answered with a JSON document.
    Stats,
    /// Follow a hunt's topics (replacing any earlier mask for that hunt).
    Subscribe {
        /// The hunt.
        hunt: HuntId,
        /// Topic bits (`Topic::bit`), non-zero, within [`TOPICS_ALL`].
        topics: u8,
    },
    /// Stop following a hunt.
    Unsubscribe {
        /// The hunt.
        hunt: HuntId,
    },
    /// An input to the state machine.
    Event(Event),
}

impl Request<'_> {
    /// The opcode this request travels under.
    pub const fn opcode(&self) -> Opcode {
        match self {
            Request::Hello { .. } => Opcode::Hello,
            Request::Ping => Opcode::Ping,
            Request::Stats => Opcode::Stats,
            Request::Subscribe { .. } => Opcode::Subscribe,
            Request::Unsubscribe { .. } => Opcode::Unsubscribe,
            Request::Event(event) => Opcode::for_event(event.kind()),
        }
    }
}

/// The highest version both sides speak, if any: what the server answers HELLO with.
pub const fn negotiate(version_min: u16, version_max: u16) -> Option<u16> {
    let ours = crate::constants::PROTOCOL_VERSION;
    if version_min <= ours && ours <= version_max {
        Some(ours)
    } else {
        None
    }
}

/// The error for a request header whose reserved field or flags are not clear: the
/// reserved field first, as in responses.
#[cold]
fn header_bits_error(header: &FrameHeader, opcode: Opcode) -> ProtocolError {
    match check_reserved(header) {
        Err(error) => error,
        Ok(()) => {
            debug_assert!(header.flags & !opcode.flags_allowed() != 0);
            ProtocolError::InvalidFlags { opcode: header.opcode, flags: header.flags }
        }
    }
}

/// Decodes one complete request frame (exactly `length` bytes, as [`super::next_frame`]
/// delimits it) without allocating.
pub fn decode_request(frame: &[u8]) -> Result<(FrameHeader, Request<'_>), ProtocolError> {
    let (header, body) = split_frame(frame)?;
    let opcode = match Opcode::from_u8(header.opcode) {
        Some(opcode) if opcode.is_request() => opcode,
        _ => return Err(ProtocolError::UnknownOpcode { opcode: header.opcode }),
    };
    // One branch for both header checks on the hot path; which one failed is sorted out
    // only on the way to the error (measured: +9 instructions per pipelined event with
    // two branches, in `tools/bench-gate`'s `decode_pipelined`).
    if (header.reserved != 0) | (header.flags & !opcode.flags_allowed() != 0) {
        return Err(header_bits_error(&header, opcode));
    }
    let request = match opcode {
        Opcode::Hello => get_hello(body)?,
        Opcode::Ping => check_size(body, header.opcode, 0).map(|()| Request::Ping)?,
        Opcode::Stats => check_size(body, header.opcode, 0).map(|()| Request::Stats)?,
        Opcode::Subscribe => get_subscribe(body)?,
        Opcode::Unsubscribe => {
            check_size(body, header.opcode, unsubscribe::SIZE)?;
            Request::Unsubscribe { hunt: get_u32(body, unsubscribe::HUNT) }
        }
        _ => {
            let kind = opcode.event_kind().expect("every other request opcode is an event");
            check_size(body, header.opcode, event_body_size(kind))?;
            Request::Event(get_event(kind, body)?)
        }
    };
    Ok((header, request))
}

/// Appends the frame of `request` to `out`. Fails, appending nothing, if the request
/// could not be decoded back: flags the opcode does not define, a name over
/// `CLIENT_NAME_SIZE_MAX`, an empty version range, a topic mask outside [`TOPICS_ALL`].
pub fn encode_request(request_id: u32, flags: u8, request: &Request, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let opcode = request.opcode();
    if flags & !opcode.flags_allowed() != 0 {
        return Err(ProtocolError::InvalidFlags { opcode: opcode as u8, flags });
    }
    let mut body = [0; EVENT_BODY_SIZE_MAX];
    let size = match *request {
        Request::Hello { version_min, version_max, name, token } => {
            check_hello(version_min, version_max, name.len())?;
            check_token_size(token.len())?;
            let start = super::frame::begin_frame(out, opcode as u8, flags, request_id);
            let mut fixed = [0; hello::NAME];
            put_u16(&mut fixed, hello::VERSION_MIN, version_min);
            put_u16(&mut fixed, hello::VERSION_MAX, version_max);
            put_u16(&mut fixed, hello::NAME_LENGTH, name.len() as u16);
            out.extend_from_slice(&fixed);
            out.extend_from_slice(name.as_bytes());
            if !token.is_empty() {
                let mut length = [0; U16];
                put_u16(&mut length, 0, token.len() as u16);
                out.extend_from_slice(&length);
                out.extend_from_slice(token);
            }
            super::frame::finish_frame(out, start);
            return Ok(());
        }
        Request::Ping | Request::Stats => 0,
        Request::Subscribe { hunt, topics } => {
            check_topics(topics)?;
            put_u32(&mut body, subscribe::HUNT, hunt);
            put_u8(&mut body, subscribe::TOPICS, topics);
            subscribe::SIZE
        }
        Request::Unsubscribe { hunt } => {
            put_u32(&mut body, unsubscribe::HUNT, hunt);
            unsubscribe::SIZE
        }
        Request::Event(event) => put_event(&event, &mut body),
    };
    append_frame(out, opcode as u8, flags, request_id, &body[..size]);
    Ok(())
}

/// HELLO: `version_min u16, version_max u16, name_length u16, name [u8; name_length]`,
/// then, only when the client sends a token, `token_length u16, token [u8; token_length]`
/// with a length of 1 to `AUTH_TOKEN_SIZE_MAX`. A HELLO without a token is byte for byte
/// the HELLO of clients that predate tokens; an empty token is sent by leaving the tail
/// out, never as a zero length, so every HELLO has one encoding.
mod hello {
    use super::*;
    pub(super) const VERSION_MIN: usize = 0;
    pub(super) const VERSION_MAX: usize = VERSION_MIN + U16;
    pub(super) const NAME_LENGTH: usize = VERSION_MAX + U16;
    pub(super) const NAME: usize = NAME_LENGTH + U16;
}

/// SUBSCRIBE: `hunt u32, topics u8`.
mod subscribe {
    use super::*;
    pub(super) const HUNT: usize = 0;
    pub(super) const TOPICS: usize = HUNT + U32;
    pub(super) const SIZE: usize = TOPICS + U8;
}

/// UNSUBSCRIBE, END_HUNT, DELETE_HUNT: `hunt u32`.
mod unsubscribe {
    use super::*;
    pub(super) const HUNT: usize = 0;
    pub(super) const SIZE: usize = HUNT + U32;
}

/// CREATE_HUNT: `hunt u32, coordinates u8, points u8, auto_discover u8, padding u8,
/// min position, max position, start u64, end u64, speed_max u32,
/// claims_per_player_max u32`.
mod create_hunt {
    use super::*;
    pub(super) const HUNT: usize = 0;
    pub(super) const COORDINATES: usize = HUNT + U32;
    pub(super) const POINTS: usize = COORDINATES + U8;
    pub(super) const AUTO_DISCOVER: usize = POINTS + U8;
    pub(super) const PADDING: usize = AUTO_DISCOVER + U8;
    pub(super) const MIN: usize = PADDING + U8;
    pub(super) const MAX: usize = MIN + position::SIZE;
    pub(super) const START: usize = MAX + position::SIZE;
    pub(super) const END: usize = START + U64;
    pub(super) const SPEED_MAX: usize = END + U64;
    pub(super) const CLAIMS_PER_PLAYER_MAX: usize = SPEED_MAX + U32;
    pub(super) const SIZE: usize = CLAIMS_PER_PLAYER_MAX + U32;
}

/// PLACE_TREASURE: `hunt u32, treasure u32, position, radius u32, value u32,
/// capacity u32, hint_radius u32`.
mod place_treasure {
    use super::*;
    pub(super) const HUNT: usize = 0;
    pub(super) const TREASURE: usize = HUNT + U32;
    pub(super) const POSITION: usize = TREASURE + U32;
    pub(super) const RADIUS: usize = POSITION + position::SIZE;
    pub(super) const VALUE: usize = RADIUS + U32;
    pub(super) const CAPACITY: usize = VALUE + U32;
    pub(super) const HINT_RADIUS: usize = CAPACITY + U32;
    pub(super) const SIZE: usize = HINT_RADIUS + U32;
}

/// Bodies that name a hunt and one more id: REMOVE_TREASURE and TREASURE_INFO
/// (`hunt u32, treasure u32`), RANK and HINT (`hunt u32, player u32`), TOP
/// (`hunt u32, count u32`).
mod pair {
    use super::*;
    pub(super) const HUNT: usize = 0;
    pub(super) const SECOND: usize = HUNT + U32;
    pub(super) const SIZE: usize = SECOND + U32;
}

/// Player events: `hunt u32, player u32, seq u32`, then per opcode: LEAVE nothing,
/// JOIN and MOVE a position, DIG `treasure u32` and a position, ADJUST_SCORE
/// `delta i32`. AROUND shares the first two fields and puts `radius u32` third.
mod player {
    use super::*;
    pub(super) const HUNT: usize = 0;
    pub(super) const PLAYER: usize = HUNT + U32;
    pub(super) const SEQ: usize = PLAYER + U32;
    pub(super) const AROUND_RADIUS: usize = SEQ;
    pub(super) const LEAVE_SIZE: usize = SEQ + U32;
    pub(super) const AROUND_SIZE: usize = AROUND_RADIUS + U32;
    pub(super) const MOVE_POSITION: usize = SEQ + U32;
    pub(super) const MOVE_SIZE: usize = MOVE_POSITION + position::SIZE;
    pub(super) const DIG_TREASURE: usize = SEQ + U32;
    pub(super) const DIG_POSITION: usize = DIG_TREASURE + U32;
    pub(super) const DIG_SIZE: usize = DIG_POSITION + position::SIZE;
    pub(super) const ADJUST_DELTA: usize = SEQ + U32;
    pub(super) const ADJUST_SIZE: usize = ADJUST_DELTA + U32;
}

/// The largest fixed request body, in bytes: the encoder's stack buffer.
const EVENT_BODY_SIZE_MAX: usize = create_hunt::SIZE;

const _: () = assert!(crate::constants::FRAME_HEADER_SIZE + player::MOVE_SIZE == 32, "a move is 32 bytes on the wire");
const _: () = assert!(
    hello::NAME + CLIENT_NAME_SIZE_MAX + crate::constants::FRAME_HEADER_SIZE <= crate::constants::FRAME_SIZE_MAX
);

/// The body size of an event request.
const fn event_body_size(kind: EventKind) -> usize {
    match kind {
        EventKind::CreateHunt => create_hunt::SIZE,
        EventKind::EndHunt | EventKind::DeleteHunt => unsubscribe::SIZE,
        EventKind::PlaceTreasure => place_treasure::SIZE,
        EventKind::RemoveTreasure | EventKind::Top | EventKind::Rank | EventKind::Hint | EventKind::TreasureInfo => {
            pair::SIZE
        }
        EventKind::Join | EventKind::Move => player::MOVE_SIZE,
        EventKind::Leave => player::LEAVE_SIZE,
        EventKind::Dig => player::DIG_SIZE,
        EventKind::AdjustScore => player::ADJUST_SIZE,
        EventKind::Around => player::AROUND_SIZE,
    }
}

fn check_hello(version_min: u16, version_max: u16, name_size: usize) -> Result<(), ProtocolError> {
    if version_min > version_max {
        return Err(ProtocolError::InvalidField { field: "version_max", value: version_max as u64 });
    }
    if name_size > CLIENT_NAME_SIZE_MAX {
        return Err(ProtocolError::InvalidField { field: "name_length", value: name_size as u64 });
    }
    Ok(())
}

fn check_token_size(token_size: usize) -> Result<(), ProtocolError> {
    if token_size > AUTH_TOKEN_SIZE_MAX {
        return Err(ProtocolError::InvalidField { field: "token_length", value: token_size as u64 });
    }
    Ok(())
}

fn check_topics(topics: u8) -> Result<(), ProtocolError> {
    if topics == 0 || topics & !TOPICS_ALL != 0 {
        return Err(ProtocolError::InvalidField { field: "topics", value: topics as u64 });
    }
    Ok(())
}

fn get_hello(body: &[u8]) -> Result<Request<'_>, ProtocolError> {
    if body.len() < hello::NAME {
        return Err(ProtocolError::BodySize { opcode: Opcode::Hello as u8, size: body.len() });
    }
    let version_min = get_u16(body, hello::VERSION_MIN);
    let version_max = get_u16(body, hello::VERSION_MAX);
    let name_size = get_u16(body, hello::NAME_LENGTH) as usize;
    check_hello(version_min, version_max, name_size)?;
    let name_end = hello::NAME + name_size;
    if body.len() < name_end {
        return Err(ProtocolError::BodySize { opcode: Opcode::Hello as u8, size: body.len() });
    }
    let name =
        std::str::from_utf8(&body[hello::NAME..name_end]).map_err(|_| ProtocolError::InvalidUtf8 { field: "name" })?;
    let tail = &body[name_end..];
    if tail.is_empty() {
        return Ok(Request::Hello { version_min, version_max, name, token: &[] });
    }
    if tail.len() < U16 {
        return Err(ProtocolError::BodySize { opcode: Opcode::Hello as u8, size: body.len() });
    }
    let token_size = get_u16(tail, 0) as usize;
    if token_size == 0 {
        // An empty token is written by leaving the tail out: one encoding per HELLO.
        return Err(ProtocolError::InvalidField { field: "token_length", value: 0 });
    }
    check_token_size(token_size)?;
    check_size(body, Opcode::Hello as u8, name_end + U16 + token_size)?;
    Ok(Request::Hello { version_min, version_max, name, token: &tail[U16..] })
}

fn get_subscribe(body: &[u8]) -> Result<Request<'_>, ProtocolError> {
    check_size(body, Opcode::Subscribe as u8, subscribe::SIZE)?;
    let topics = get_u8(body, subscribe::TOPICS);
    check_topics(topics)?;
    Ok(Request::Subscribe { hunt: get_u32(body, subscribe::HUNT), topics })
}

/// Reads an event whose body size is already checked.
fn get_event(kind: EventKind, body: &[u8]) -> Result<Event, ProtocolError> {
    let hunt = get_u32(body, pair::HUNT);
    // END_HUNT and DELETE_HUNT bodies end before the second field, so read it lazily.
    let second = || get_u32(body, pair::SECOND);
    let event = match kind {
        EventKind::CreateHunt => Event::CreateHunt { hunt, spec: get_hunt_spec(body)? },
        EventKind::EndHunt => Event::EndHunt { hunt },
        EventKind::DeleteHunt => Event::DeleteHunt { hunt },
        EventKind::PlaceTreasure => Event::PlaceTreasure {
            hunt,
            treasure: TreasureSpec {
                id: get_u32(body, place_treasure::TREASURE),
                position: position::get(body, place_treasure::POSITION),
                radius: get_u32(body, place_treasure::RADIUS),
                value: get_u32(body, place_treasure::VALUE),
                capacity: get_u32(body, place_treasure::CAPACITY),
                hint_radius: get_u32(body, place_treasure::HINT_RADIUS),
            },
        },
        EventKind::RemoveTreasure => Event::RemoveTreasure { hunt, treasure: second() },
        EventKind::Join => Event::Join {
            hunt,
            player: second(),
            seq: get_u32(body, player::SEQ),
            position: position::get(body, player::MOVE_POSITION),
        },
        EventKind::Leave => Event::Leave { hunt, player: second(), seq: get_u32(body, player::SEQ) },
        EventKind::Move => Event::Move {
            hunt,
            player: second(),
            seq: get_u32(body, player::SEQ),
            position: position::get(body, player::MOVE_POSITION),
        },
        EventKind::Dig => Event::Dig {
            hunt,
            player: second(),
            seq: get_u32(body, player::SEQ),
            treasure: get_u32(body, player::DIG_TREASURE),
            position: position::get(body, player::DIG_POSITION),
        },
        EventKind::AdjustScore => Event::AdjustScore {
            hunt,
            player: second(),
            seq: get_u32(body, player::SEQ),
            delta: get_i32(body, player::ADJUST_DELTA),
        },
        EventKind::Top => Event::Top { hunt, count: second() },
        EventKind::Rank => Event::Rank { hunt, player: second() },
        EventKind::Around => Event::Around { hunt, player: second(), radius: get_u32(body, player::AROUND_RADIUS) },
        EventKind::Hint => Event::Hint { hunt, player: second() },
        EventKind::TreasureInfo => Event::TreasureInfo { hunt, treasure: second() },
    };
    Ok(event)
}

fn get_hunt_spec(body: &[u8]) -> Result<HuntSpec, ProtocolError> {
    let coordinates = match get_u8(body, create_hunt::COORDINATES) {
        0 => Coordinates::Planar,
        1 => Coordinates::Geographic,
        value => return Err(ProtocolError::InvalidField { field: "coordinates", value: value as u64 }),
    };
    let points = match get_u8(body, create_hunt::POINTS) {
        0 => PointsRule::Full,
        1 => PointsRule::Decay,
        value => return Err(ProtocolError::InvalidField { field: "points", value: value as u64 }),
    };
    let auto_discover = get_bool(body, create_hunt::AUTO_DISCOVER, "auto_discover")?;
    check_zero(body, create_hunt::PADDING, "padding")?;
    Ok(HuntSpec {
        coordinates,
        min: position::get(body, create_hunt::MIN),
        max: position::get(body, create_hunt::MAX),
        start: get_u64(body, create_hunt::START),
        end: get_u64(body, create_hunt::END),
        options: HuntOptions {
            auto_discover,
            speed_max: get_u32(body, create_hunt::SPEED_MAX),
            points,
            claims_per_player_max: get_u32(body, create_hunt::CLAIMS_PER_PLAYER_MAX),
        },
    })
}

/// Writes an event's body into `body`; returns its size.
fn put_event(event: &Event, body: &mut [u8; EVENT_BODY_SIZE_MAX]) -> usize {
    put_u32(body, pair::HUNT, event.hunt());
    match *event {
        Event::CreateHunt { spec, .. } => put_hunt_spec(&spec, body),
        Event::EndHunt { .. } | Event::DeleteHunt { .. } => {}
        Event::PlaceTreasure { treasure, .. } => {
            put_u32(body, place_treasure::TREASURE, treasure.id);
            position::put(body, place_treasure::POSITION, treasure.position);
            put_u32(body, place_treasure::RADIUS, treasure.radius);
            put_u32(body, place_treasure::VALUE, treasure.value);
            put_u32(body, place_treasure::CAPACITY, treasure.capacity);
            put_u32(body, place_treasure::HINT_RADIUS, treasure.hint_radius);
        }
        Event::RemoveTreasure { treasure: second, .. }
        | Event::Top { count: second, .. }
        | Event::Rank { player: second, .. }
        | Event::Hint { player: second, .. }
        | Event::TreasureInfo { treasure: second, .. } => put_u32(body, pair::SECOND, second),
        Event::Join { player: id, seq, position, .. } | Event::Move { player: id, seq, position, .. } => {
            put_player(body, id, seq);
            position::put(body, player::MOVE_POSITION, position);
        }
        Event::Leave { player: id, seq, .. } => put_player(body, id, seq),
        Event::Dig { player: id, seq, treasure, position, .. } => {
            put_player(body, id, seq);
            put_u32(body, player::DIG_TREASURE, treasure);
            position::put(body, player::DIG_POSITION, position);
        }
        Event::AdjustScore { player: id, seq, delta, .. } => {
            put_player(body, id, seq);
            put_i32(body, player::ADJUST_DELTA, delta);
        }
        Event::Around { player: id, radius, .. } => {
            put_u32(body, player::PLAYER, id);
            put_u32(body, player::AROUND_RADIUS, radius);
        }
    }
    event_body_size(event.kind())
}

fn put_player(body: &mut [u8], id: u32, seq: u32) {
    put_u32(body, player::PLAYER, id);
    put_u32(body, player::SEQ, seq);
}

fn put_hunt_spec(spec: &HuntSpec, body: &mut [u8]) {
    let coordinates = match spec.coordinates {
        Coordinates::Planar => 0,
        Coordinates::Geographic => 1,
    };
    let points = match spec.options.points {
        PointsRule::Full => 0,
        PointsRule::Decay => 1,
    };
    put_u8(body, create_hunt::COORDINATES, coordinates);
    put_u8(body, create_hunt::POINTS, points);
    put_u8(body, create_hunt::AUTO_DISCOVER, spec.options.auto_discover as u8);
    put_u8(body, create_hunt::PADDING, 0);
    position::put(body, create_hunt::MIN, spec.min);
    position::put(body, create_hunt::MAX, spec.max);
    put_u64(body, create_hunt::START, spec.start);
    put_u64(body, create_hunt::END, spec.end);
    put_u32(body, create_hunt::SPEED_MAX, spec.options.speed_max);
    put_u32(body, create_hunt::CLAIMS_PER_PLAYER_MAX, spec.options.claims_per_player_max);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Position;
    use crate::protocol::frame::{FLAG_PUSH, FLAG_QUIET};

    fn encode(request_id: u32, flags: u8, request: &Request) -> Vec<u8> {
        let mut out = Vec::new();
        encode_request(request_id, flags, request, &mut out).unwrap();
        out
    }

    #[test]
    fn a_move_is_32_bytes_and_these_bytes() {
        let event = Event::Move { hunt: 7, player: 42, seq: 3, position: Position::new(100, -200) };
        let frame = encode(0x0102_0304, FLAG_QUIET, &Request::Event(event));
        #[rustfmt::skip]
        let expected: [u8; 32] = [
            0x20, 0x00, 0x00, 0x00, // length 32
            0x17,                   // opcode MOVE
            0x01,                   // flags QUIET
            0x00, 0x00,             // reserved
            0x04, 0x03, 0x02, 0x01, // request id 0x01020304
            0x07, 0x00, 0x00, 0x00, // hunt 7
            0x2A, 0x00, 0x00, 0x00, // player 42
            0x03, 0x00, 0x00, 0x00, // seq 3
            0x64, 0x00, 0x00, 0x00, // x 100
            0x38, 0xFF, 0xFF, 0xFF, // y -200
        ];
        assert_eq!(frame, expected);
        let (header, request) = decode_request(&expected).unwrap();
        assert_eq!(request, Request::Event(event));
        assert_eq!(header.flags, FLAG_QUIET);
    }

    #[test]
    fn a_hello_carries_its_name() {
        let hello = Request::Hello { version_min: 1, version_max: 3, name: "hé", token: &[] };
        let frame = encode(1, 0, &hello);
        assert_eq!(frame[12..], [1, 0, 3, 0, 3, 0, b'h', 0xC3, 0xA9]);
        assert_eq!(decode_request(&frame).unwrap().1, hello);
    }

    #[test]
    fn a_hello_token_follows_the_name_and_only_when_present() {
        let hello = Request::Hello { version_min: 1, version_max: 1, name: "g", token: b"s3cret" };
        let frame = encode(1, 0, &hello);
        assert_eq!(frame[12..], [1, 0, 1, 0, 1, 0, b'g', 6, 0, b's', b'3', b'c', b'r', b'e', b't']);
        assert_eq!(decode_request(&frame).unwrap().1, hello);
        // A zero token length would be a second encoding of "no token".
        let mut empty = encode(1, 0, &Request::Hello { version_min: 1, version_max: 1, name: "g", token: &[] });
        empty.extend_from_slice(&[0, 0]);
        empty[0] += 2;
        check(&empty, ProtocolError::InvalidField { field: "token_length", value: 0 });
        // A tail too short for its length field, or longer than its length says.
        let mut odd = frame.clone();
        odd.truncate(12 + 8);
        odd[0] = 20;
        check(&odd, ProtocolError::BodySize { opcode: 0x01, size: 8 });
        let mut long = frame.clone();
        long.push(b'!');
        long[0] += 1;
        check(&long, ProtocolError::BodySize { opcode: 0x01, size: 16 });
        let too_long = [0u8; AUTH_TOKEN_SIZE_MAX + 1];
        let mut out = Vec::new();
        let request = Request::Hello { version_min: 1, version_max: 1, name: "g", token: &too_long };
        let expected = ProtocolError::InvalidField { field: "token_length", value: AUTH_TOKEN_SIZE_MAX as u64 + 1 };
        assert_eq!(encode_request(1, 0, &request, &mut out), Err(expected));
        assert!(out.is_empty());
    }

    /// A valid frame of `opcode` with `body`, for the decoder checks below.
    fn frame(opcode: u8, flags: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        append_frame(&mut out, opcode, flags, 9, body);
        out
    }

    fn check(frame: &[u8], expected: ProtocolError) {
        assert_eq!(decode_request(frame), Err(expected), "{frame:02X?}");
    }

    #[test]
    fn malformed_requests_are_refused() {
        let move_body = [0u8; 20];
        let body_size = |opcode: Opcode, size| ProtocolError::BodySize { opcode: opcode as u8, size };
        check(&frame(0x17, 0, &move_body[..19]), body_size(Opcode::Move, 19));
        check(&frame(0x17, 0, &[0; 21]), body_size(Opcode::Move, 21));
        check(&frame(0x11, 0, &[0; 8]), body_size(Opcode::EndHunt, 8));
        check(&frame(0x02, 0, &[0]), body_size(Opcode::Ping, 1));
        check(&frame(0x17, FLAG_PUSH, &move_body), ProtocolError::InvalidFlags { opcode: 0x17, flags: FLAG_PUSH });
        check(&frame(0x18, FLAG_QUIET, &[0; 24]), ProtocolError::InvalidFlags { opcode: 0x18, flags: FLAG_QUIET });
        check(&frame(0x97, 0, &move_body), ProtocolError::UnknownOpcode { opcode: 0x97 });
        check(&frame(0x40, 0, &[]), ProtocolError::UnknownOpcode { opcode: 0x40 });
        check(&frame(0x1F, 0, &[]), ProtocolError::UnknownOpcode { opcode: 0x1F });
        let mut reserved = frame(0x02, 0, &[]);
        reserved[6] = 1;
        check(&reserved, ProtocolError::ReservedNotZero { reserved: 1 });
        // A frame that is no request at all is refused as such, reserved bits or not.
        let mut unknown_reserved = frame(0x3F, 0, &[]);
        unknown_reserved[6] = 1;
        check(&unknown_reserved, ProtocolError::UnknownOpcode { opcode: 0x3F });
        let mut short = frame(0x02, 0, &[]);
        short.push(0);
        check(&short, ProtocolError::LengthMismatch { length: 12, size: 13 });
        check(&short[..5], ProtocolError::LengthMismatch { length: 12, size: 5 });
    }

    #[test]
    fn unknown_enum_bytes_and_padding_are_refused() {
        let spec = HuntSpec {
            coordinates: Coordinates::Geographic,
            min: Position::new(-1, -2),
            max: Position::new(3, 4),
            start: 5,
            end: u64::MAX,
            options: HuntOptions {
                auto_discover: true,
                speed_max: 6,
                points: PointsRule::Decay,
                claims_per_player_max: 7,
            },
        };
        let valid = encode(9, 0, &Request::Event(Event::CreateHunt { hunt: 1, spec }));
        assert_eq!(valid.len(), 12 + create_hunt::SIZE);
        let body = 12;
        let field = |offset: usize, value: u8, field: &'static str| {
            let mut bytes = valid.clone();
            bytes[body + offset] = value;
            check(&bytes, ProtocolError::InvalidField { field, value: value as u64 });
        };
        field(create_hunt::COORDINATES, 2, "coordinates");
        field(create_hunt::POINTS, 2, "points");
        field(create_hunt::AUTO_DISCOVER, 2, "auto_discover");
        field(create_hunt::PADDING, 1, "padding");
    }

    #[test]
    fn hello_and_subscribe_fields_are_checked() {
        let hello = |min: u16, max: u16, name: &[u8]| {
            let mut body = [min.to_le_bytes(), max.to_le_bytes(), (name.len() as u16).to_le_bytes()].concat();
            body.extend_from_slice(name);
            frame(0x01, 0, &body)
        };
        check(&hello(1, 1, &[0xFF]), ProtocolError::InvalidUtf8 { field: "name" });
        check(&hello(2, 1, b""), ProtocolError::InvalidField { field: "version_max", value: 1 });
        check(&hello(1, 1, &[b'a'; 65]), ProtocolError::InvalidField { field: "name_length", value: 65 });
        let mut wrong_length = hello(1, 1, b"ab");
        wrong_length.pop();
        wrong_length[0] -= 1;
        check(&wrong_length, ProtocolError::BodySize { opcode: 0x01, size: 7 });
        check(&frame(0x04, 0, &[1, 0, 0, 0, 0]), ProtocolError::InvalidField { field: "topics", value: 0 });
        check(&frame(0x04, 0, &[1, 0, 0, 0, 8]), ProtocolError::InvalidField { field: "topics", value: 8 });
        assert_eq!(
            decode_request(&frame(0x04, 0, &[1, 0, 0, 0, 7])).unwrap().1,
            Request::Subscribe { hunt: 1, topics: 7 }
        );
    }

    #[test]
    fn the_encoder_refuses_what_the_decoder_would() {
        let mut out = Vec::new();
        let long = "x".repeat(CLIENT_NAME_SIZE_MAX + 1);
        let cases = [
            (FLAG_QUIET, Request::Ping, ProtocolError::InvalidFlags { opcode: 0x02, flags: FLAG_QUIET }),
            (0, Request::Subscribe { hunt: 1, topics: 0 }, ProtocolError::InvalidField { field: "topics", value: 0 }),
            (
                0,
                Request::Hello { version_min: 1, version_max: 1, name: &long, token: &[] },
                ProtocolError::InvalidField { field: "name_length", value: 65 },
            ),
        ];
        for (flags, request, expected) in cases {
            assert_eq!(encode_request(1, flags, &request, &mut out), Err(expected));
            assert!(out.is_empty());
        }
    }

    #[test]
    fn versions_are_negotiated_by_range() {
        assert_eq!(negotiate(1, 1), Some(1));
        assert_eq!(negotiate(0, 9), Some(1));
        assert_eq!(negotiate(2, 3), None);
    }
}
