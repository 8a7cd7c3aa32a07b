//! Properties of every decoder over arbitrary bytes, shared by `tests/fuzz_props.rs`
//! (proptest, in every `cargo test`) and the fuzz targets under `fuzz/` (libFuzzer), each
//! of which includes this file with `#[path]`.
//!
//! Each `check_*` function takes any bytes and panics, with a message, if and only if a
//! property fails: a decoder panicked, or accepted bytes it would not write itself, or
//! the same stream gave different frames when cut differently. A decoder returning an
//! error for garbage is the expected outcome, not a failure.
//!
//! The journal record and the snapshot carry CRCs, which random bytes almost never
//! match; their checks run twice, on the bytes as given and on the bytes "sealed" (the
//! checksums and the fields the header must agree on recomputed), so a fuzzer gets past
//! the checksum into the decoders behind it.

use cairn::constants::FRAME_HEADER_SIZE;
use cairn::event::Event;
use cairn::journal::{
    decode_snapshot, encode_record, encode_snapshot, parse_record, Parsed, Snapshot, SNAPSHOT_HEADER_SIZE,
};
use cairn::protocol::{
    decode_request, decode_response, encode_protocol_error, encode_request, encode_response, next_frame, request_id_of,
    Frames, ProtocolError, Response,
};

// ---------------------------------------------------------------------------------------
// The server's read path: a byte stream cut into frames, each decoded as a request.

/// What the server makes of one frame: the request re-encoded (it must be the frame's
/// own bytes), or the error it answers with.
#[derive(Debug, PartialEq)]
enum Decoded {
    Request(Vec<u8>),
    Refused(ProtocolError),
}

/// Decodes one complete frame the way the shard loop does, checking that an accepted
/// frame re-encodes to itself and that a refusal becomes an error frame the client
/// decodes to the same code and message.
fn decode_frame(frame: &[u8]) -> Decoded {
    match decode_request(frame) {
        Ok((header, request)) => {
            let mut out = Vec::new();
            encode_request(header.request_id, header.flags, &request, &mut out).expect("a decoded request re-encodes");
            assert_eq!(out, frame, "{request:?} re-encodes to other bytes");
            Decoded::Request(out)
        }
        Err(error) => {
            let request_id = request_id_of(frame);
            let mut out = Vec::new();
            encode_protocol_error(request_id, &error, &mut out);
            let expected = Response::Error { request_id, code: error.code().to_u16(), message: error.to_string() };
            assert_eq!(decode_response(&out), Ok(expected), "the error frame for {error:?}");
            Decoded::Refused(error)
        }
    }
}

/// The frames of `stream` as the server sees them when the bytes arrive in reads of at
/// most `read_size` bytes into a buffer that keeps the unconsumed tail (as
/// `Connection::fill` does): the decoded frames, and the framing error that ends the
/// stream, if any.
fn frames_in_reads(stream: &[u8], read_size: usize) -> (Vec<Decoded>, Option<ProtocolError>) {
    let mut buffer = Vec::new();
    let mut decoded = Vec::new();
    let mut arrived = 0;
    loop {
        loop {
            match next_frame(&buffer) {
                Ok(Some(size)) => {
                    assert!(size >= FRAME_HEADER_SIZE && size <= buffer.len());
                    decoded.push(decode_frame(&buffer[..size]));
                    buffer.drain(..size);
                }
                Ok(None) => break,
                Err(error) => {
                    assert!(error.closes_connection(), "framing error {error:?} keeps the connection");
                    return (decoded, Some(error));
                }
            }
        }
        if arrived == stream.len() {
            // What is left is the start of a frame that never completed.
            assert!(matches!(next_frame(&buffer), Ok(None)));
            return (decoded, None);
        }
        let read = read_size.min(stream.len() - arrived);
        buffer.extend_from_slice(&stream[arrived..arrived + read]);
        arrived += read;
    }
}

/// The server's framing and request decoding over an arbitrary byte stream: `Frames`
/// over the whole stream, and the stream arriving in reads of 1 byte, of 7 bytes and of
/// a size taken from the input, all give the same frames, decoded the same way, and the
/// same framing error. No frame decodes to a request that re-encodes differently.
pub fn check_request_stream(stream: &[u8]) {
    let mut frames = Frames::new(stream);
    let mut whole = Vec::new();
    let mut failed = None;
    for frame in frames.by_ref() {
        match frame {
            Ok(frame) => whole.push(decode_frame(frame)),
            Err(error) => failed = Some(error),
        }
    }
    assert!(frames.consumed() <= stream.len());
    let read_size = stream.first().map_or(1, |&byte| byte as usize + 1);
    for read_size in [1, 7, read_size] {
        let (decoded, error) = frames_in_reads(stream, read_size);
        assert_eq!(decoded, whole, "reads of {read_size} bytes cut other frames");
        assert_eq!(error, failed, "reads of {read_size} bytes fail otherwise");
    }
}

// ---------------------------------------------------------------------------------------
// The client's read path: frames decoded as replies, errors and pushes.

/// The client's decoder over an arbitrary byte stream: every complete frame either
/// decodes to a response that re-encodes to the same bytes, or is refused with a message.
pub fn check_response_stream(stream: &[u8]) {
    for frame in Frames::new(stream) {
        let Ok(frame) = frame else { return };
        match decode_response(frame) {
            Ok(response) => {
                let mut out = Vec::new();
                encode_response(&response, &mut out).expect("a decoded response re-encodes");
                assert_eq!(out, frame, "{response:?} re-encodes to other bytes");
            }
            Err(error) => assert!(!error.to_string().is_empty(), "{error:?} has no message"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The journal: a segment of records.

/// Offsets of the record header fields (see `src/journal/record.rs`).
const RECORD_LENGTH: std::ops::Range<usize> = 0..4;
const RECORD_CRC: std::ops::Range<usize> = 4..8;
const RECORD_CRC_FROM: usize = 8;

/// Patches the CRC of the record at the start of `bytes`, if its length field is in
/// reach, so the event decoder behind the checksum gets the bytes.
fn seal_record(bytes: &mut [u8]) {
    let Some(length) = bytes.get(RECORD_LENGTH) else { return };
    let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
    if length < RECORD_CRC_FROM || length > bytes.len() {
        return;
    }
    let crc = crc32c::crc32c(&bytes[RECORD_CRC_FROM..length]);
    bytes[RECORD_CRC].copy_from_slice(&crc.to_le_bytes());
}

/// Reads a segment the way recovery does, record after record, until the bytes end or
/// a record is incomplete or damaged. Every record read must re-encode to its own bytes
/// and be a mutation.
fn read_segment(mut bytes: &[u8]) {
    loop {
        match parse_record(bytes) {
            Parsed::Record(record, size) => {
                assert!(size <= bytes.len());
                assert!(record.event.is_mutation(), "a journaled query: {record:?}");
                let mut out = Vec::new();
                encode_record(record.seq, record.time, &record.event, &mut out);
                assert_eq!(out, bytes[..size], "{record:?} re-encodes to other bytes");
                bytes = &bytes[size..];
            }
            Parsed::Incomplete => return,
            Parsed::Damaged(why) => {
                assert!(!why.is_empty());
                return;
            }
        }
    }
}

/// The journal record decoder over arbitrary bytes: read as a segment as given, and
/// again with the first record's CRC sealed.
pub fn check_journal_segment(bytes: &[u8]) {
    read_segment(bytes);
    let mut sealed = bytes.to_vec();
    seal_record(&mut sealed);
    read_segment(&sealed);
}

// ---------------------------------------------------------------------------------------
// Snapshots.

/// Header offsets of a snapshot (see `src/journal/snapshot.rs`).
const SNAPSHOT_MAGIC: &[u8; 8] = b"CAIRNSNP";
const SNAPSHOT_VERSION: std::ops::Range<usize> = 8..12;
const SNAPSHOT_HEADER_CRC: std::ops::Range<usize> = 12..16;
const SNAPSHOT_BODY_SIZE: std::ops::Range<usize> = 24..32;
const SNAPSHOT_BODY_CRC: std::ops::Range<usize> = 32..36;

/// Makes the header agree with the body: magic, version 3 (the format
/// `src/journal/snapshot.rs` writes), body size, both CRCs. Bytes shorter than a header
/// are padded to one.
pub fn seal_snapshot(bytes: &mut Vec<u8>) {
    if bytes.len() < SNAPSHOT_HEADER_SIZE {
        bytes.resize(SNAPSHOT_HEADER_SIZE, 0);
    }
    bytes[..8].copy_from_slice(SNAPSHOT_MAGIC);
    bytes[SNAPSHOT_VERSION].copy_from_slice(&3u32.to_le_bytes());
    let body_size = (bytes.len() - SNAPSHOT_HEADER_SIZE) as u64;
    bytes[SNAPSHOT_BODY_SIZE].copy_from_slice(&body_size.to_le_bytes());
    let body_crc = crc32c::crc32c(&bytes[SNAPSHOT_HEADER_SIZE..]);
    bytes[SNAPSHOT_BODY_CRC].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..12]), &bytes[16..SNAPSHOT_HEADER_SIZE]);
    bytes[SNAPSHOT_HEADER_CRC].copy_from_slice(&header_crc.to_le_bytes());
}

/// Events that touch a loaded hunt's state in every structure (leaderboard, grid, claim
/// table, lifecycle), for players and treasures with small ids.
fn probe_events(hunt: u32) -> Vec<Event> {
    let mut events = vec![Event::Top { hunt, count: 10 }];
    for id in 1..=3 {
        let position = cairn::event::Position::new(0, 0);
        events.push(Event::Rank { hunt, player: id });
        events.push(Event::Around { hunt, player: id, radius: 2 });
        events.push(Event::Hint { hunt, player: id });
        events.push(Event::TreasureInfo { hunt, treasure: id });
        // Sequence numbers above any a loaded player may hold but the top one, which is
        // never applied: rising, so each event may be applied after the one before.
        events.push(Event::Join { hunt, player: id, seq: u32::MAX - 4, position });
        events.push(Event::Move { hunt, player: id, seq: u32::MAX - 3, position });
        events.push(Event::Dig { hunt, player: id, seq: u32::MAX - 2, treasure: id, position });
        events.push(Event::AdjustScore { hunt, player: id, seq: u32::MAX - 1, delta: 1 });
        events.push(Event::RemoveTreasure { hunt, treasure: id });
    }
    events.push(Event::EndHunt { hunt });
    events
}

/// Loads a snapshot; if it loads, it must re-encode to a snapshot that loads to the same
/// digest, and the loaded shard must take events (on the first hunt in the file) exactly
/// as the reloaded one does, without panicking.
fn load_snapshot(bytes: &[u8]) {
    let Ok(Snapshot { seq, time: snapshot_time, mut shard }) = decode_snapshot(bytes) else { return };
    let encoded = encode_snapshot(&shard, seq, snapshot_time);
    let again = decode_snapshot(&encoded).expect("a re-encoded snapshot loads");
    assert_eq!((again.seq, again.time), (seq, snapshot_time));
    let mut again = again.shard;
    assert_eq!(again.digest(), shard.digest(), "a re-encoded snapshot loads to another state");
    let first_hunt = bytes.get(SNAPSHOT_HEADER_SIZE..SNAPSHOT_HEADER_SIZE + 4);
    let hunt = first_hunt.map_or(0, |id| u32::from_le_bytes(id.try_into().expect("4 bytes")));
    // An event time in 2033, in microseconds: after most hunts start, before many end.
    let time = 2_000_000_000_000_000;
    for event in probe_events(hunt) {
        let outcome = format!("{:?}", shard.apply(&event, time));
        assert_eq!(format!("{:?}", again.apply(&event, time)), outcome, "{event:?}");
        assert_eq!(shard.notices(), again.notices());
    }
    assert_eq!(shard.digest(), again.digest());
}

/// The snapshot loader over arbitrary bytes: as given, and sealed.
pub fn check_snapshot(bytes: &[u8]) {
    load_snapshot(bytes);
    let mut sealed = bytes.to_vec();
    seal_snapshot(&mut sealed);
    load_snapshot(&sealed);
}
