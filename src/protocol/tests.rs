//! Property and fuzz tests for the whole codec: round trips of arbitrary requests,
//! outcomes and notices, and robustness against random and mutated frames.
//!
//! The central check is [`check_any_bytes`]: whatever bytes it is given, no entry point
//! panics, and every `Ok` re-encodes to exactly the bytes it came from, which is what
//! makes the encoding canonical. It is fed random byte strings and valid frames with a
//! byte changed, cut short or extended (with and without a patched length field, so the
//! body checks are reached and not only the framing checks).

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::constants::{AUTH_TOKEN_SIZE_MAX, CLAIMS_PER_MOVE_MAX, ERROR_MESSAGE_SIZE_MAX, FRAME_HEADER_SIZE};
use crate::event::{Coordinates, Event, HuntOptions, HuntSpec, PointsRule, Position, TreasureSpec};
use crate::outcome::{Claim, Lifecycle, Notice, NoticeKind, Ranked, Rejection, Standing, Topic, TreasureState};

use super::*;

// ---------------------------------------------------------------------------------------
// Strategies.

fn position() -> impl Strategy<Value = Position> {
    (any::<i32>(), any::<i32>()).prop_map(|(x, y)| Position { x, y })
}

fn hunt_spec() -> impl Strategy<Value = HuntSpec> {
    let coordinates = prop_oneof![Just(Coordinates::Planar), Just(Coordinates::Geographic)];
    let points = prop_oneof![Just(PointsRule::Full), Just(PointsRule::Decay)];
    let options = (any::<bool>(), any::<u32>(), points, any::<u32>()).prop_map(
        |(auto_discover, speed_max, points, claims_per_player_max)| HuntOptions {
            auto_discover,
            speed_max,
            points,
            claims_per_player_max,
        },
    );
    (coordinates, position(), position(), any::<u64>(), any::<u64>(), options).prop_map(
        |(coordinates, min, max, start, end, options)| HuntSpec { coordinates, min, max, start, end, options },
    )
}

fn treasure_spec() -> impl Strategy<Value = TreasureSpec> {
    (any::<u32>(), position(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(id, position, radius, value, capacity, hint_radius)| TreasureSpec {
            id,
            position,
            radius,
            value,
            capacity,
            hint_radius,
        },
    )
}

/// Every `Event` variant, with arbitrary field values.
pub(super) fn event() -> impl Strategy<Value = Event> {
    let id = any::<u32>;
    prop_oneof![
        (id(), hunt_spec()).prop_map(|(hunt, spec)| Event::CreateHunt { hunt, spec }),
        id().prop_map(|hunt| Event::EndHunt { hunt }),
        id().prop_map(|hunt| Event::DeleteHunt { hunt }),
        (id(), treasure_spec()).prop_map(|(hunt, treasure)| Event::PlaceTreasure { hunt, treasure }),
        (id(), id()).prop_map(|(hunt, treasure)| Event::RemoveTreasure { hunt, treasure }),
        (id(), id(), id(), position()).prop_map(|(hunt, player, seq, position)| Event::Join {
            hunt,
            player,
            seq,
            position
        }),
        (id(), id(), id()).prop_map(|(hunt, player, seq)| Event::Leave { hunt, player, seq }),
        (id(), id(), id(), position()).prop_map(|(hunt, player, seq, position)| Event::Move {
            hunt,
            player,
            seq,
            position
        }),
        (id(), id(), id(), id(), position()).prop_map(|(hunt, player, seq, treasure, position)| Event::Dig {
            hunt,
            player,
            seq,
            treasure,
            position
        }),
        (id(), id(), id(), any::<i32>()).prop_map(|(hunt, player, seq, delta)| Event::AdjustScore {
            hunt,
            player,
            seq,
            delta
        }),
        (id(), id()).prop_map(|(hunt, count)| Event::Top { hunt, count }),
        (id(), id()).prop_map(|(hunt, player)| Event::Rank { hunt, player }),
        (id(), id(), id()).prop_map(|(hunt, player, radius)| Event::Around { hunt, player, radius }),
        (id(), id()).prop_map(|(hunt, player)| Event::Hint { hunt, player }),
        (id(), id()).prop_map(|(hunt, treasure)| Event::TreasureInfo { hunt, treasure }),
    ]
}

/// A request that owns its text, since `Request` borrows it from a frame.
#[derive(Clone, Debug)]
pub(super) enum OwnedRequest {
    Hello { version_min: u16, version_max: u16, name: String, token: Vec<u8> },
    Ping,
    Stats,
    Subscribe { hunt: u32, topics: u8 },
    Unsubscribe { hunt: u32 },
    Event(Event),
}

impl OwnedRequest {
    pub(super) fn request(&self) -> Request<'_> {
        match *self {
            OwnedRequest::Hello { version_min, version_max, ref name, ref token } => {
                Request::Hello { version_min, version_max, name, token }
            }
            OwnedRequest::Ping => Request::Ping,
            OwnedRequest::Stats => Request::Stats,
            OwnedRequest::Subscribe { hunt, topics } => Request::Subscribe { hunt, topics },
            OwnedRequest::Unsubscribe { hunt } => Request::Unsubscribe { hunt },
            OwnedRequest::Event(event) => Request::Event(event),
        }
    }
}

fn request() -> impl Strategy<Value = OwnedRequest> {
    // 16 characters of at most 4 bytes each stay within CLIENT_NAME_SIZE_MAX.
    // Tokens up to the maximum, and empty (no token) as often as not.
    let token = prop_oneof![Just(Vec::new()), vec(any::<u8>(), 1..=AUTH_TOKEN_SIZE_MAX)];
    let hello = (any::<u16>(), any::<u16>(), "\\PC{0,16}", token).prop_map(|(a, b, name, token)| OwnedRequest::Hello {
        version_min: a.min(b),
        version_max: a.max(b),
        name,
        token,
    });
    prop_oneof![
        1 => hello,
        1 => Just(OwnedRequest::Ping),
        1 => Just(OwnedRequest::Stats),
        1 => (any::<u32>(), 1..=TOPICS_ALL).prop_map(|(hunt, topics)| OwnedRequest::Subscribe { hunt, topics }),
        1 => any::<u32>().prop_map(|hunt| OwnedRequest::Unsubscribe { hunt }),
        10 => event().prop_map(OwnedRequest::Event),
    ]
}

/// A request with flags it may carry, and a request id.
fn request_frame() -> impl Strategy<Value = (u32, u8, OwnedRequest)> {
    (any::<u32>(), any::<bool>(), request()).prop_map(|(request_id, quiet, request)| {
        let flags = if quiet && request.request().opcode() == Opcode::Move { FLAG_QUIET } else { 0 };
        (request_id, flags, request)
    })
}

fn claim() -> impl Strategy<Value = Claim> {
    (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<i64>(), any::<u32>()).prop_map(
        |(treasure, index, capacity, points, score, rank)| Claim { treasure, index, capacity, points, score, rank },
    )
}

fn ranked() -> impl Strategy<Value = Ranked> {
    (any::<u32>(), any::<u32>(), any::<i64>(), any::<u64>()).prop_map(|(rank, player, score, reached_at)| Ranked {
        rank,
        player,
        score,
        reached_at,
    })
}

fn server_hello() -> impl Strategy<Value = ServerHello> {
    (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(version, shard_count, frame_size_max, top_count_max, around_radius_max, subscriptions_max)| ServerHello {
            version,
            shard_count,
            frame_size_max,
            top_count_max,
            around_radius_max,
            subscriptions_max,
        },
    )
}

fn reply_body() -> impl Strategy<Value = ReplyBody> {
    let score_rank = || (any::<i64>(), any::<u32>());
    let standing = (any::<u32>(), any::<u32>(), any::<i64>(), any::<u32>(), any::<u32>(), any::<bool>()).prop_map(
        |(rank, total, score, claims, last_seq, joined)| Standing { rank, total, score, claims, last_seq, joined },
    );
    let treasure = (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(claimed, capacity, value)| TreasureState {
        claimed,
        capacity,
        value,
    });
    prop_oneof![
        server_hello().prop_map(ReplyBody::Hello),
        Just(ReplyBody::Pong),
        "\\PC{0,40}".prop_map(|json| ReplyBody::Stats { json }),
        any::<[u64; Topic::COUNT]>().prop_map(|sequences| ReplyBody::Subscribed { sequences }),
        Just(ReplyBody::Unsubscribed),
        Just(ReplyBody::HuntCreated),
        Just(ReplyBody::HuntEnded),
        Just(ReplyBody::HuntDeleted),
        Just(ReplyBody::TreasurePlaced),
        Just(ReplyBody::TreasureRemoved),
        score_rank().prop_map(|(score, rank)| ReplyBody::Joined { score, rank }),
        Just(ReplyBody::Left),
        vec(claim(), 0..=CLAIMS_PER_MOVE_MAX).prop_map(|claims| ReplyBody::Moved { claims }),
        claim().prop_map(|claim| ReplyBody::Dug { claim }),
        score_rank().prop_map(|(score, rank)| ReplyBody::Adjusted { score, rank }),
        (any::<u32>(), vec(ranked(), 0..12)).prop_map(|(total, entries)| ReplyBody::Top { total, entries }),
        (any::<u32>(), vec(ranked(), 0..12)).prop_map(|(total, entries)| ReplyBody::Around { total, entries }),
        standing.prop_map(ReplyBody::Standing),
        option::of(any::<u64>()).prop_map(|distance| ReplyBody::Hint { distance }),
        treasure.prop_map(ReplyBody::Treasure),
    ]
}

/// Every rejection the state machine can produce, with arbitrary numbers.
pub(super) fn rejection() -> impl Strategy<Value = Rejection> {
    let why = prop_oneof![Just("start is after end"), Just("radius is zero"), Just("")];
    prop_oneof![
        Just(Rejection::HuntExists),
        Just(Rejection::HuntNotFound),
        Just(Rejection::HuntNotStarted),
        Just(Rejection::HuntEnded),
        Just(Rejection::HuntLimit),
        why.clone().prop_map(Rejection::InvalidHunt),
        Just(Rejection::TreasureExists),
        Just(Rejection::TreasureNotFound),
        Just(Rejection::TreasureLimit),
        why.prop_map(Rejection::InvalidTreasure),
        Just(Rejection::TreasureExhausted),
        Just(Rejection::AlreadyClaimed),
        Just(Rejection::PlayerClaimLimit),
        (any::<u64>(), any::<u32>()).prop_map(|(distance, radius)| Rejection::OutOfReach { distance, radius }),
        Just(Rejection::NotJoined),
        Just(Rejection::AlreadyJoined),
        Just(Rejection::PlayerLimit),
        Just(Rejection::OutOfBounds),
        (any::<u64>(), any::<u64>()).prop_map(|(distance, allowed)| Rejection::TooFast { distance, allowed }),
        (any::<u32>(), any::<u32>()).prop_map(|(seq, last)| Rejection::Duplicate { seq, last }),
        Just(Rejection::ScoreOverflow),
        (any::<u32>(), any::<u32>()).prop_map(|(asked, max)| Rejection::CountTooLarge { asked, max }),
    ]
}

fn topic() -> impl Strategy<Value = Topic> {
    prop_oneof![Just(Topic::Discoveries), Just(Topic::Top), Just(Topic::Lifecycle)]
}

fn notice() -> impl Strategy<Value = Notice> {
    let lifecycle = prop_oneof![
        Just(Lifecycle::Started),
        Just(Lifecycle::Ended),
        any::<u32>().prop_map(|treasure| Lifecycle::Exhausted { treasure }),
        Just(Lifecycle::Deleted),
    ];
    let kind = prop_oneof![
        (any::<u32>(), claim()).prop_map(|(player, claim)| NoticeKind::Discovery { player, claim }),
        (any::<u32>(), any::<i64>(), any::<u32>(), any::<u32>()).prop_map(
            |(player, score, rank_before, rank_after)| NoticeKind::TopChanged {
                player,
                score,
                rank_before,
                rank_after
            }
        ),
        lifecycle.prop_map(NoticeKind::Lifecycle),
    ];
    (any::<u32>(), any::<u64>(), kind).prop_map(|(hunt, seq, kind)| Notice { hunt, seq, kind })
}

fn push_body() -> impl Strategy<Value = PushBody> {
    let gap = (any::<u32>(), topic(), any::<u64>(), any::<u64>()).prop_map(|(hunt, topic, a, b)| Gap {
        hunt,
        topic,
        first: a.min(b),
        last: a.max(b),
    });
    prop_oneof![
        notice().prop_map(PushBody::Notice),
        gap.prop_map(PushBody::Gap),
        (any::<u16>(), "\\PC{0,64}").prop_map(|(code, message)| PushBody::Goodbye { code, message }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        3 => (any::<u32>(), reply_body()).prop_map(|(request_id, body)| Response::Reply { request_id, body }),
        1 => (any::<u32>(), any::<u16>(), "\\PC{0,64}")
            .prop_map(|(request_id, code, message)| Response::Error { request_id, code, message }),
        1 => push_body().prop_map(Response::Push),
    ]
}

/// How a valid frame is damaged before it is fed to the decoders.
#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the byte at `index % len` with `value`.
    Set { index: usize, value: u8 },
    /// Keep the first `size % len` bytes; with `patch`, make the length field agree.
    Truncate { size: usize, patch: bool },
    /// Append bytes; with `patch`, make the length field agree.
    Extend { bytes: Vec<u8>, patch: bool },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => (any::<usize>(), any::<u8>()).prop_map(|(index, value)| Mutation::Set { index, value }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(size, patch)| Mutation::Truncate { size, patch }),
        1 => (vec(any::<u8>(), 1..16), any::<bool>()).prop_map(|(bytes, patch)| Mutation::Extend { bytes, patch }),
    ]
}

fn mutate(mut frame: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
    let patch_length = |frame: &mut Vec<u8>| {
        if frame.len() >= 4 {
            let length = (frame.len() as u32).to_le_bytes();
            frame[..4].copy_from_slice(&length);
        }
    };
    match mutation {
        Mutation::Set { index, value } => {
            let index = index % frame.len();
            frame[index] = *value;
        }
        Mutation::Truncate { size, patch } => {
            frame.truncate(size % frame.len());
            if *patch {
                patch_length(&mut frame);
            }
        }
        Mutation::Extend { bytes, patch } => {
            frame.extend_from_slice(bytes);
            if *patch {
                patch_length(&mut frame);
            }
        }
    }
    frame
}

// ---------------------------------------------------------------------------------------
// Checks.

fn encode(request_id: u32, flags: u8, request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(request_id, flags, request, &mut out).expect("the strategy makes encodable requests");
    out
}

/// Feeds `bytes` to every entry point: none may panic, and every `Ok` must re-encode to
/// the same bytes.
fn check_any_bytes(bytes: &[u8]) {
    match check_header(bytes) {
        Ok(Some(header)) => {
            assert_eq!(header.encode()[..], bytes[..FRAME_HEADER_SIZE]);
            assert!(header.length as usize >= FRAME_HEADER_SIZE);
            assert!(header.length as usize <= crate::constants::FRAME_SIZE_MAX);
        }
        Ok(None) => assert!(bytes.len() < FRAME_HEADER_SIZE),
        Err(error) => assert!(error.closes_connection(), "{error:?}"),
    }
    if let Ok(Some(size)) = next_frame(bytes) {
        assert!(size <= bytes.len());
        assert_eq!(check_header(bytes).unwrap().unwrap().length as usize, size);
    }
    let consumed: usize = Frames::new(bytes).map_while(Result::ok).map(<[u8]>::len).sum();
    assert!(consumed <= bytes.len());

    match decode_request(bytes) {
        Ok((header, request)) => assert_eq!(encode(header.request_id, header.flags, &request), bytes),
        Err(error) => check_error_frame(request_id_of(bytes), &error),
    }
    match decode_response(bytes) {
        Ok(response) => {
            let mut out = Vec::new();
            encode_response(&response, &mut out).expect("a decoded response re-encodes");
            assert_eq!(out, bytes);
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

/// The error frame the server would send about `error` decodes to its code and text.
fn check_error_frame(request_id: u32, error: &ProtocolError) {
    let mut out = Vec::new();
    encode_protocol_error(request_id, error, &mut out);
    let expected = Response::Error { request_id, code: error.code().to_u16(), message: error.to_string() };
    assert_eq!(decode_response(&out), Ok(expected));
}

/// The frame of every server encoder for this body, built the way the server builds it.
fn encode_reply(request_id: u32, body: &ReplyBody) -> Vec<u8> {
    let mut out = Vec::new();
    match body {
        ReplyBody::Hello(hello) => encode_hello_reply(request_id, hello, &mut out),
        ReplyBody::Pong => encode_pong(request_id, &mut out),
        ReplyBody::Stats { json } => encode_stats_reply(request_id, json, &mut out).unwrap(),
        ReplyBody::Subscribed { sequences } => encode_subscribed(request_id, sequences, &mut out),
        ReplyBody::Unsubscribed => encode_unsubscribed(request_id, &mut out),
        _ => {
            let kind = body.opcode().event_kind().unwrap();
            encode_outcome(request_id, kind, &body.outcome().unwrap(), &mut out);
        }
    }
    out
}

fn cut(text: &str, max: usize) -> &str {
    let mut size = text.len().min(max);
    while !text.is_char_boundary(size) {
        size -= 1;
    }
    &text[..size]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn requests_round_trip((request_id, flags, owned) in request_frame()) {
        let request = owned.request();
        let frame = encode(request_id, flags, &request);
        prop_assert_eq!(next_frame(&frame), Ok(Some(frame.len())));
        let (header, decoded) = decode_request(&frame).unwrap();
        prop_assert_eq!(decoded, request);
        prop_assert_eq!(header.request_id, request_id);
        prop_assert_eq!(header.flags, flags);
        prop_assert_eq!(header.opcode, request.opcode() as u8);
    }

    #[test]
    fn outcomes_round_trip_to_reply_bodies(request_id in any::<u32>(), body in reply_body()) {
        let frame = encode_reply(request_id, &body);
        prop_assert_eq!(frame[4], body.opcode().reply());
        prop_assert_eq!(decode_response(&frame), Ok(Response::Reply { request_id, body }));
    }

    #[test]
    fn rejections_round_trip_to_error_frames(request_id in any::<u32>(), event in event(), rejection in rejection()) {
        let mut frame = Vec::new();
        encode_outcome(request_id, event.kind(), &crate::outcome::Outcome::Rejected(rejection), &mut frame);
        let message = rejection.to_string();
        let expected = Response::Error {
            request_id,
            code: rejection.code(),
            message: cut(&message, ERROR_MESSAGE_SIZE_MAX).to_owned(),
        };
        prop_assert_eq!(decode_response(&frame), Ok(expected));
    }

    #[test]
    fn error_messages_are_cut_on_a_character_boundary(code in any::<u16>(), message in "\\PC{0,300}") {
        let mut frame = Vec::new();
        encode_error(0, code, &message, &mut frame);
        let expected = cut(&message, ERROR_MESSAGE_SIZE_MAX).to_owned();
        prop_assert_eq!(decode_response(&frame), Ok(Response::Error { request_id: 0, code, message: expected }));
    }

    #[test]
    fn pushes_round_trip(body in push_body()) {
        let mut frame = Vec::new();
        match &body {
            PushBody::Notice(notice) => encode_notice(notice, &mut frame),
            PushBody::Gap(gap) => encode_gap(gap, &mut frame),
            PushBody::Goodbye { code, message } => encode_goodbye(*code, message, &mut frame),
        }
        prop_assert_eq!(frame[5], FLAG_PUSH);
        prop_assert_eq!(decode_response(&frame), Ok(Response::Push(body)));
    }

    #[test]
    fn responses_round_trip(response in response()) {
        let mut frame = Vec::new();
        encode_response(&response, &mut frame).unwrap();
        prop_assert_eq!(decode_response(&frame), Ok(response));
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..80)) {
        check_any_bytes(&bytes);
    }

    #[test]
    fn random_bodies_behind_valid_headers_never_panic(
        opcode in any::<u8>(),
        flags in prop_oneof![Just(0), Just(FLAG_QUIET), Just(FLAG_PUSH), any::<u8>()],
        body in vec(any::<u8>(), 0..64),
    ) {
        let mut frame = FrameHeader { length: 0, opcode, flags, reserved: 0, request_id: 0 }.encode().to_vec();
        frame.extend_from_slice(&body);
        let length = (frame.len() as u32).to_le_bytes();
        frame[..4].copy_from_slice(&length);
        check_any_bytes(&frame);
    }

    #[test]
    fn mutated_requests_never_panic((request_id, flags, owned) in request_frame(), mutation in mutation()) {
        let frame = encode(request_id, flags, &owned.request());
        check_any_bytes(&mutate(frame, &mutation));
    }

    #[test]
    fn mutated_responses_never_panic(response in response(), mutation in mutation()) {
        let mut frame = Vec::new();
        encode_response(&response, &mut frame).unwrap();
        check_any_bytes(&mutate(frame, &mutation));
    }

    #[test]
    fn frames_split_any_concatenation(
        requests in vec(request_frame(), 1..8),
        cut_at in any::<usize>(),
    ) {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for (request_id, flags, owned) in &requests {
            encode_request(*request_id, *flags, &owned.request(), &mut stream).unwrap();
            ends.push(stream.len());
        }
        let cut_at = cut_at % (stream.len() + 1);
        let mut frames = Frames::new(&stream[..cut_at]);
        let decoded: Vec<u32> = frames.by_ref().map(|frame| decode_request(frame.unwrap()).unwrap().0.request_id).collect();
        let complete = ends.iter().filter(|&&end| end <= cut_at).count();
        prop_assert_eq!(decoded.len(), complete);
        let expected: Vec<u32> = requests.iter().take(complete).map(|request| request.0).collect();
        prop_assert_eq!(decoded, expected);
        prop_assert_eq!(frames.consumed(), if complete == 0 { 0 } else { ends[complete - 1] });
    }
}

// ---------------------------------------------------------------------------------------
// The server path appends into pooled buffers: with room reserved, no encoder may grow
// (reallocate) the buffer. Allocations elsewhere are the server's allocation test's job.

#[test]
fn encoders_do_not_grow_a_buffer_with_room() {
    let mut out = Vec::with_capacity(crate::constants::FRAME_SIZE_MAX);
    let (pointer, capacity) = (out.as_ptr(), out.capacity());
    let claims = [Claim { treasure: 1, index: 1, capacity: 3, points: 50, score: 50, rank: 1 }; CLAIMS_PER_MOVE_MAX];
    let entries = [Ranked { rank: 1, player: 2, score: 3, reached_at: 4 }; 100];
    encode_outcome(1, crate::event::EventKind::Move, &crate::outcome::Outcome::Moved { claims: &claims }, &mut out);
    let list = crate::outcome::Outcome::List { total: 100, entries: &entries };
    encode_outcome(2, crate::event::EventKind::Top, &list, &mut out);
    encode_rejection(3, &Rejection::Duplicate { seq: 3, last: 7 }, &mut out);
    encode_error(4, 1, &format_args!("{:>1000}", "long"), &mut out);
    let notice = Notice { hunt: 1, seq: 9, kind: NoticeKind::Lifecycle(Lifecycle::Started) };
    encode_notice(&notice, &mut out);
    encode_gap(&Gap { hunt: 1, topic: Topic::Top, first: 3, last: 5 }, &mut out);
    encode_goodbye(ErrorCode::ShuttingDown.to_u16(), &ErrorCode::ShuttingDown, &mut out);
    encode_pong(5, &mut out);
    assert_eq!(out.as_ptr(), pointer);
    assert_eq!(out.capacity(), capacity);
    assert_eq!(Frames::new(&out).count(), 8);
    assert_eq!(Frames::new(&out).map(|frame| frame.unwrap().len()).sum::<usize>(), out.len());
}

#[test]
fn quiet_moves_are_answered_only_when_something_happened() {
    use crate::outcome::Outcome;
    let claims = [Claim { treasure: 1, index: 1, capacity: 1, points: 5, score: 5, rank: 1 }];
    let rejected = Outcome::Rejected(Rejection::NotJoined);
    assert!(!reply_wanted(FLAG_QUIET, &Outcome::Moved { claims: &[] }));
    assert!(reply_wanted(FLAG_QUIET, &Outcome::Moved { claims: &claims }));
    assert!(reply_wanted(FLAG_QUIET, &rejected));
    assert!(reply_wanted(0, &Outcome::Moved { claims: &[] }));
}

// ---------------------------------------------------------------------------------------
// The worked session in `docs/protocol.md`: the hex there is what the encoders produce.

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(" ")
}

/// The session's frames, each with its hex dump cut into 16-byte lines as the document
/// shows them.
fn session() -> Vec<(&'static str, Vec<u8>)> {
    use crate::event::EventKind;
    use crate::outcome::Outcome;
    let mut frames = Vec::new();
    let mut push = |label: &'static str, build: &dyn Fn(&mut Vec<u8>)| {
        let mut out = Vec::new();
        build(&mut out);
        frames.push((label, out));
    };
    let spec = HuntSpec {
        coordinates: Coordinates::Planar,
        min: Position::new(0, 0),
        max: Position::new(1000, 1000),
        start: 0,
        end: u64::MAX,
        options: HuntOptions { auto_discover: true, speed_max: 0, points: PointsRule::Full, claims_per_player_max: 0 },
    };
    let treasure =
        TreasureSpec { id: 5, position: Position::new(500, 500), radius: 10, value: 100, capacity: 1, hint_radius: 0 };
    let claim = Claim { treasure: 5, index: 1, capacity: 1, points: 100, score: 100, rank: 1 };
    let request = |id: u32, flags: u8, request: Request<'static>| {
        move |out: &mut Vec<u8>| encode_request(id, flags, &request, out).unwrap()
    };
    push("HELLO", &request(1, 0, Request::Hello { version_min: 1, version_max: 1, name: "demo", token: &[] }));
    push("HELLO reply", &|out| encode_hello_reply(1, &ServerHello::new(4), out));
    push("CREATE_HUNT", &request(2, 0, Request::Event(Event::CreateHunt { hunt: 7, spec })));
    push("CREATE_HUNT reply", &|out| encode_outcome(2, EventKind::CreateHunt, &Outcome::HuntCreated, out));
    push("PLACE_TREASURE", &request(3, 0, Request::Event(Event::PlaceTreasure { hunt: 7, treasure })));
    push("PLACE_TREASURE reply", &|out| encode_outcome(3, EventKind::PlaceTreasure, &Outcome::TreasurePlaced, out));
    push("SUBSCRIBE", &request(4, 0, Request::Subscribe { hunt: 7, topics: Topic::Discoveries.bit() }));
    push("SUBSCRIBE reply", &|out| encode_subscribed(4, &[0, 0, 1], out));
    let join = Event::Join { hunt: 7, player: 42, seq: 1, position: Position::new(480, 500) };
    push("JOIN", &request(5, 0, Request::Event(join)));
    push("JOIN reply", &|out| encode_outcome(5, EventKind::Join, &Outcome::Joined { score: 0, rank: 1 }, out));
    let quiet_move = Event::Move { hunt: 7, player: 42, seq: 2, position: Position::new(485, 500) };
    push("MOVE (quiet)", &request(6, FLAG_QUIET, Request::Event(quiet_move)));
    let dig = Event::Dig { hunt: 7, player: 42, seq: 3, treasure: 5, position: Position::new(495, 500) };
    push("DIG", &request(7, 0, Request::Event(dig)));
    push("DIG reply", &|out| encode_outcome(7, EventKind::Dig, &Outcome::Dug { claim }, out));
    let discovery = Notice { hunt: 7, seq: 1, kind: NoticeKind::Discovery { player: 42, claim } };
    push("DISCOVERY", &|out| encode_notice(&discovery, out));
    push("DIG (retried)", &request(8, 0, Request::Event(dig)));
    push("ERROR", &|out| encode_rejection(8, &Rejection::Duplicate { seq: 3, last: 3 }, out));
    frames
}

fn hex_lines(bytes: &[u8]) -> Vec<String> {
    bytes.chunks(16).map(hex).collect()
}

#[test]
fn the_documented_session_is_what_the_codec_produces() {
    const DOC: &str = include_str!("../../docs/protocol.md");
    for (label, frame) in session() {
        let block = hex_lines(&frame).join("\n");
        assert!(DOC.contains(&block), "docs/protocol.md lacks the bytes of {label}:\n{block}");
    }
}

/// Every frame of the session decodes on the side that receives it. With `--nocapture`
/// this prints the session as the document shows it, to paste after changing it.
#[test]
fn the_session_decodes_and_prints() {
    for (label, frame) in session() {
        let decodes = decode_request(&frame).is_ok() || decode_response(&frame).is_ok();
        assert!(decodes, "{label} does not decode");
        println!("{label} ({} bytes):\n{}\n", frame.len(), hex_lines(&frame).join("\n"));
    }
}

// ---------------------------------------------------------------------------------------
// The opcode tables in `docs/protocol.md` give each frame's size; these are the sizes
// the encoders produce for the smallest frame of each opcode.

/// The row of the document's table that starts with this opcode and name, split into
/// its trimmed cells.
fn table_row(opcode: u8, name: &str) -> Vec<&'static str> {
    const DOC: &str = include_str!("../../docs/protocol.md");
    let start = format!("| 0x{opcode:02X} | {name} |");
    let line = DOC.lines().find(|line| line.starts_with(&start));
    let line = line.unwrap_or_else(|| panic!("docs/protocol.md has no table row starting {start}"));
    line.split('|').map(str::trim).filter(|cell| !cell.is_empty()).collect()
}

fn zero_event(kind: crate::event::EventKind) -> Event {
    use crate::event::EventKind;
    let position = Position::new(0, 0);
    match kind {
        EventKind::CreateHunt => Event::CreateHunt {
            hunt: 0,
            spec: HuntSpec {
                coordinates: Coordinates::Planar,
                min: position,
                max: position,
                start: 0,
                end: 0,
                options: HuntOptions::default(),
            },
        },
        EventKind::EndHunt => Event::EndHunt { hunt: 0 },
        EventKind::DeleteHunt => Event::DeleteHunt { hunt: 0 },
        EventKind::PlaceTreasure => Event::PlaceTreasure {
            hunt: 0,
            treasure: TreasureSpec { id: 0, position, radius: 0, value: 0, capacity: 0, hint_radius: 0 },
        },
        EventKind::RemoveTreasure => Event::RemoveTreasure { hunt: 0, treasure: 0 },
        EventKind::Join => Event::Join { hunt: 0, player: 0, seq: 0, position },
        EventKind::Leave => Event::Leave { hunt: 0, player: 0, seq: 0 },
        EventKind::Move => Event::Move { hunt: 0, player: 0, seq: 0, position },
        EventKind::Dig => Event::Dig { hunt: 0, player: 0, seq: 0, treasure: 0, position },
        EventKind::AdjustScore => Event::AdjustScore { hunt: 0, player: 0, seq: 0, delta: 0 },
        EventKind::Top => Event::Top { hunt: 0, count: 0 },
        EventKind::Rank => Event::Rank { hunt: 0, player: 0 },
        EventKind::Around => Event::Around { hunt: 0, player: 0, radius: 0 },
        EventKind::Hint => Event::Hint { hunt: 0, player: 0 },
        EventKind::TreasureInfo => Event::TreasureInfo { hunt: 0, treasure: 0 },
    }
}

fn zero_reply(opcode: Opcode) -> ReplyBody {
    let claim = Claim { treasure: 0, index: 0, capacity: 0, points: 0, score: 0, rank: 0 };
    let standing = Standing { rank: 0, total: 0, score: 0, claims: 0, last_seq: 0, joined: false };
    match opcode {
        Opcode::Hello => ReplyBody::Hello(ServerHello::new(1)),
        Opcode::Ping => ReplyBody::Pong,
        Opcode::Stats => ReplyBody::Stats { json: String::new() },
        Opcode::Subscribe => ReplyBody::Subscribed { sequences: [0; Topic::COUNT] },
        Opcode::Unsubscribe => ReplyBody::Unsubscribed,
        Opcode::CreateHunt => ReplyBody::HuntCreated,
        Opcode::EndHunt => ReplyBody::HuntEnded,
        Opcode::DeleteHunt => ReplyBody::HuntDeleted,
        Opcode::PlaceTreasure => ReplyBody::TreasurePlaced,
        Opcode::RemoveTreasure => ReplyBody::TreasureRemoved,
        Opcode::Join => ReplyBody::Joined { score: 0, rank: 0 },
        Opcode::Leave => ReplyBody::Left,
        Opcode::Move => ReplyBody::Moved { claims: Vec::new() },
        Opcode::Dig => ReplyBody::Dug { claim },
        Opcode::AdjustScore => ReplyBody::Adjusted { score: 0, rank: 0 },
        Opcode::Top => ReplyBody::Top { total: 0, entries: Vec::new() },
        Opcode::Rank => ReplyBody::Standing(standing),
        Opcode::Around => ReplyBody::Around { total: 0, entries: Vec::new() },
        Opcode::Hint => ReplyBody::Hint { distance: None },
        Opcode::TreasureInfo => ReplyBody::Treasure(TreasureState { claimed: 0, capacity: 0, value: 0 }),
        _ => panic!("{opcode:?} is not a request"),
    }
}

#[test]
fn the_document_gives_every_frame_size() {
    let mut request_frames = vec![(
        Opcode::Hello,
        OwnedRequest::Hello { version_min: 1, version_max: 1, name: String::new(), token: Vec::new() },
    )];
    request_frames.push((Opcode::Ping, OwnedRequest::Ping));
    request_frames.push((Opcode::Stats, OwnedRequest::Stats));
    request_frames.push((Opcode::Subscribe, OwnedRequest::Subscribe { hunt: 0, topics: 1 }));
    request_frames.push((Opcode::Unsubscribe, OwnedRequest::Unsubscribe { hunt: 0 }));
    for kind in crate::event::EventKind::ALL {
        request_frames.push((Opcode::for_event(kind), OwnedRequest::Event(zero_event(kind))));
    }
    assert_eq!(request_frames.len(), Opcode::ALL.iter().filter(|opcode| opcode.is_request()).count());
    for (opcode, request) in request_frames {
        let request_size = encode(1, 0, &request.request()).len();
        let reply_size = encode_reply(1, &zero_reply(opcode)).len();
        let row = table_row(opcode as u8, opcode.name());
        assert!(
            row[2].split(' ').next() == Some(&request_size.to_string()),
            "{row:?}: request is {request_size} bytes"
        );
        assert_eq!(row[3], format!("0x{:02X}", opcode.reply()), "{row:?}");
        assert!(row[4].split(' ').next() == Some(&reply_size.to_string()), "{row:?}: reply is {reply_size} bytes");
    }

    let claim = Claim { treasure: 0, index: 0, capacity: 0, points: 0, score: 0, rank: 0 };
    let notice = |kind| Notice { hunt: 0, seq: 0, kind };
    let mut server_frames: Vec<(Opcode, Vec<u8>)> = Vec::new();
    let mut add = |opcode: Opcode, build: &dyn Fn(&mut Vec<u8>)| {
        let mut out = Vec::new();
        build(&mut out);
        server_frames.push((opcode, out));
    };
    add(Opcode::Discovery, &|out| encode_notice(&notice(NoticeKind::Discovery { player: 0, claim }), out));
    let top = NoticeKind::TopChanged { player: 0, score: 0, rank_before: 0, rank_after: 0 };
    add(Opcode::TopChanged, &|out| encode_notice(&notice(top), out));
    add(Opcode::Lifecycle, &|out| encode_notice(&notice(NoticeKind::Lifecycle(Lifecycle::Started)), out));
    add(Opcode::Gap, &|out| encode_gap(&Gap { hunt: 0, topic: Topic::Top, first: 0, last: 0 }, out));
    add(Opcode::Goodbye, &|out| encode_goodbye(0, &"", out));
    add(Opcode::Error, &|out| encode_error(0, 0, &"", out));
    assert_eq!(server_frames.len(), Opcode::ALL.iter().filter(|opcode| !opcode.is_request()).count());
    for (opcode, frame) in server_frames {
        let row = table_row(opcode as u8, opcode.name());
        assert!(row[2].split(' ').next() == Some(&frame.len().to_string()), "{row:?}: frame is {} bytes", frame.len());
    }
}

#[test]
fn the_document_lists_every_protocol_error_code() {
    const DOC: &str = include_str!("../../docs/protocol.md");
    for code in ErrorCode::ALL {
        let start = format!(
            "| {} | `{}` | {} |",
            code.to_u16(),
            code.name(),
            if code.closes_connection() { "yes" } else { "no" }
        );
        assert!(
            DOC.lines().any(|line| line.starts_with(&start)),
            "docs/protocol.md section 8.2 has no row starting {start}"
        );
    }
}
