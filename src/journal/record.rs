//! One journal record: its byte layout, its encoder and its checking decoder.
//!
//! A journal segment is a plain concatenation of records, all little-endian:
//!
//! ```text
//! offset  size  field
//!      0     4  length    u32  bytes of the whole record, header included (25..=88)
//!      4     4  crc       u32  CRC32C of bytes 8..length
//!      8     8  sequence  u64  the shard's journal sequence number, from 1, no gaps
//!     16     8  time      u64  event time in microseconds, as given to `Shard::apply`
//!     24     n  event     the mutating event, `length - 24` bytes (layout below)
//! ```
//!
//! The CRC covers everything after itself in one pass (one call of the hardware CRC32C
//! per record is what keeps replay fast). The length is not covered but cannot escape:
//! it is range-checked, and a wrong length makes the CRC run over the wrong span. The event is a tag byte (`EventKind as u8`) followed
//! by the event's fields in declaration order, integers little-endian, booleans and enums
//! as one byte (0 or 1):
//!
//! ```text
//! CreateHunt     0  hunt u32, coordinates u8, min x i32, y i32, max x i32, y i32,
//!                   start u64, end u64, auto_discover u8, speed_max u32, points u8,
//!                   claims_per_player_max u32                                (48 bytes)
//! EndHunt        1  hunt u32                                                  (5)
//! DeleteHunt     2  hunt u32                                                  (5)
//! PlaceTreasure  3  hunt u32, id u32, x i32, y i32, radius u32, value u32,
//!                   capacity u32, hint_radius u32                             (33)
//! RemoveTreasure 4  hunt u32, treasure u32                                    (9)
//! Join           5  hunt u32, player u32, seq u32, x i32, y i32               (21)
//! Leave          6  hunt u32, player u32, seq u32                             (13)
//! Move           7  hunt u32, player u32, seq u32, x i32, y i32               (21)
//! Dig            8  hunt u32, player u32, seq u32, treasure u32, x i32, y i32 (25)
//! AdjustScore    9  hunt u32, player u32, seq u32, delta i32                  (17)
//! ```
//!
//! This encoding is the journal's own rather than the wire protocol's: the file format
//! must not change when the protocol gains a version, and a move costs 45 bytes on disk
//! instead of a whole frame. Queries are never journaled: they change nothing.
//!
//! The decoder accepts exactly one encoding of each event (exact sizes, booleans and
//! enums only 0 or 1), so a record that passes its CRC but carries bytes this build would
//! never write is reported as damage, not guessed at.

use crate::constants::{JOURNAL_EVENT_SIZE_MAX, JOURNAL_RECORD_HEADER_SIZE, JOURNAL_RECORD_SIZE_MAX};
use crate::event::{Coordinates, Event, EventKind, HuntOptions, HuntSpec, Micros, PointsRule, Position, TreasureSpec};

/// Offset of the length field.
pub const LENGTH_OFFSET: usize = 0;
/// Offset of the CRC32C field.
pub const CRC_OFFSET: usize = LENGTH_OFFSET + size_of::<u32>();
/// Offset of the sequence number.
pub const SEQUENCE_OFFSET: usize = CRC_OFFSET + size_of::<u32>();
/// Offset of the event time.
pub const TIME_OFFSET: usize = SEQUENCE_OFFSET + size_of::<u64>();
/// Offset of the encoded event.
pub const EVENT_OFFSET: usize = TIME_OFFSET + size_of::<u64>();

const _: () = assert!(EVENT_OFFSET == JOURNAL_RECORD_HEADER_SIZE);

/// Smallest valid record: a header and an event of at least its tag and a hunt id.
pub const RECORD_SIZE_MIN: usize = JOURNAL_RECORD_HEADER_SIZE + 5;

/// A decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Journal sequence number.
    pub seq: u64,
    /// Event time.
    pub time: Micros,
    /// The mutating event.
    pub event: Event,
}

/// What the bytes at some offset of a segment hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole, valid record of `size` bytes.
    Record(Record, usize),
    /// The bytes end before the record does: a header cut short, or a length that runs
    /// past the end. At the end of the journal this is a torn write.
    Incomplete,
    /// The bytes cannot be a record this build wrote; the reason says why.
    Damaged(&'static str),
}

/// The CRC32C a record of these bytes must carry: over everything after the CRC field.
fn record_crc(record: &[u8]) -> u32 {
    crc32c::crc32c(&record[SEQUENCE_OFFSET..])
}

/// Appends one record for `event` (which must be a mutation) to `out`. Allocates only if
/// `out` must grow.
pub fn encode_record(seq: u64, time: Micros, event: &Event, out: &mut Vec<u8>) {
    assert!(event.is_mutation(), "queries are never journaled: {event:?}");
    let mut body = [0u8; JOURNAL_EVENT_SIZE_MAX];
    let body_size = encode_event(event, &mut body);
    let size = JOURNAL_RECORD_HEADER_SIZE + body_size;
    assert!(size <= JOURNAL_RECORD_SIZE_MAX);
    let start = out.len();
    out.extend_from_slice(&(size as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&time.to_le_bytes());
    out.extend_from_slice(&body[..body_size]);
    let crc = record_crc(&out[start..]);
    out[start + CRC_OFFSET..start + SEQUENCE_OFFSET].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the record at the start of `bytes`, checking its length, CRC and event.
pub fn parse_record(bytes: &[u8]) -> Parsed {
    if bytes.len() < JOURNAL_RECORD_HEADER_SIZE {
        return Parsed::Incomplete;
    }
    let size = u32::from_le_bytes(bytes[LENGTH_OFFSET..CRC_OFFSET].try_into().expect("4 bytes")) as usize;
    if !(RECORD_SIZE_MIN..=JOURNAL_RECORD_SIZE_MAX).contains(&size) {
        return Parsed::Damaged("record length out of range");
    }
    if bytes.len() < size {
        return Parsed::Incomplete;
    }
    let record = &bytes[..size];
    let crc = u32::from_le_bytes(record[CRC_OFFSET..SEQUENCE_OFFSET].try_into().expect("4 bytes"));
    if crc != record_crc(record) {
        return Parsed::Damaged("CRC32C mismatch");
    }
    let seq = u64::from_le_bytes(record[SEQUENCE_OFFSET..TIME_OFFSET].try_into().expect("8 bytes"));
    let time = u64::from_le_bytes(record[TIME_OFFSET..EVENT_OFFSET].try_into().expect("8 bytes"));
    match decode_event(&record[EVENT_OFFSET..]) {
        Some(event) => Parsed::Record(Record { seq, time, event }, size),
        None => Parsed::Damaged("valid CRC32C but an event this build cannot decode"),
    }
}

/// Little-endian field writer over a fixed buffer.
struct Put<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Put<'_> {
    fn bytes(&mut self, bytes: &[u8]) {
        self.out[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
    fn u8(&mut self, value: u8) {
        self.bytes(&[value]);
    }
    fn u32(&mut self, value: u32) {
        self.bytes(&value.to_le_bytes());
    }
    fn i32(&mut self, value: i32) {
        self.bytes(&value.to_le_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.bytes(&value.to_le_bytes());
    }
    fn position(&mut self, position: Position) {
        self.i32(position.x);
        self.i32(position.y);
    }
}

/// Little-endian field reader; every getter returns `None` past the end.
struct Get<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Get<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let field = self.bytes.get(self.at..self.at + N)?;
        self.at += N;
        Some(field.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|bytes| bytes[0])
    }
    fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn position(&mut self) -> Option<Position> {
        Some(Position::new(self.i32()?, self.i32()?))
    }
}

/// Encodes a hunt spec (shared with snapshots): `HUNT_SPEC_SIZE` bytes.
pub(crate) fn put_hunt_spec(out: &mut Vec<u8>, spec: &HuntSpec) {
    let mut buffer = [0u8; HUNT_SPEC_SIZE];
    let mut put = Put { out: &mut buffer, at: 0 };
    write_hunt_spec(&mut put, spec);
    out.extend_from_slice(&buffer);
}

/// Decodes a hunt spec written by [`put_hunt_spec`].
pub(crate) fn get_hunt_spec(bytes: &[u8; HUNT_SPEC_SIZE]) -> Option<HuntSpec> {
    read_hunt_spec(&mut Get { bytes, at: 0 })
}

/// Bytes of an encoded hunt spec.
pub(crate) const HUNT_SPEC_SIZE: usize = 43;

fn write_hunt_spec(put: &mut Put, spec: &HuntSpec) {
    put.u8(spec.coordinates as u8);
    put.position(spec.min);
    put.position(spec.max);
    put.u64(spec.start);
    put.u64(spec.end);
    put.u8(spec.options.auto_discover as u8);
    put.u32(spec.options.speed_max);
    put.u8(spec.options.points as u8);
    put.u32(spec.options.claims_per_player_max);
}

fn read_hunt_spec(get: &mut Get) -> Option<HuntSpec> {
    let coordinates = match get.u8()? {
        0 => Coordinates::Planar,
        1 => Coordinates::Geographic,
        _ => return None,
    };
    let (min, max, start, end) = (get.position()?, get.position()?, get.u64()?, get.u64()?);
    let auto_discover = get.flag()?;
    let speed_max = get.u32()?;
    let points = match get.u8()? {
        0 => PointsRule::Full,
        1 => PointsRule::Decay,
        _ => return None,
    };
    let claims_per_player_max = get.u32()?;
    let options = HuntOptions { auto_discover, speed_max, points, claims_per_player_max };
    Some(HuntSpec { coordinates, min, max, start, end, options })
}

/// Encodes a mutating event into `out`; returns the bytes written.
fn encode_event(event: &Event, out: &mut [u8; JOURNAL_EVENT_SIZE_MAX]) -> usize {
    let mut put = Put { out, at: 0 };
    put.u8(event.kind() as u8);
    put.u32(event.hunt());
    match *event {
        Event::CreateHunt { spec, .. } => write_hunt_spec(&mut put, &spec),
        Event::EndHunt { .. } | Event::DeleteHunt { .. } => {}
        Event::PlaceTreasure { treasure, .. } => {
            put.u32(treasure.id);
            put.position(treasure.position);
            for value in [treasure.radius, treasure.value, treasure.capacity, treasure.hint_radius] {
                put.u32(value);
            }
        }
        Event::RemoveTreasure { treasure, .. } => put.u32(treasure),
        Event::Join { player, seq, position, .. } | Event::Move { player, seq, position, .. } => {
            put.u32(player);
            put.u32(seq);
            put.position(position);
        }
        Event::Leave { player, seq, .. } => {
            put.u32(player);
            put.u32(seq);
        }
        Event::Dig { player, seq, treasure, position, .. } => {
            put.u32(player);
            put.u32(seq);
            put.u32(treasure);
            put.position(position);
        }
        Event::AdjustScore { player, seq, delta, .. } => {
            put.u32(player);
            put.u32(seq);
            put.i32(delta);
        }
        Event::Top { .. }
        | Event::Rank { .. }
        | Event::Around { .. }
        | Event::Hint { .. }
        | Event::TreasureInfo { .. } => {
            unreachable!("queries are never journaled")
        }
    }
    put.at
}

/// Decodes an event that fills `bytes` exactly, or `None`.
fn decode_event(bytes: &[u8]) -> Option<Event> {
    let mut get = Get { bytes, at: 0 };
    let tag = get.u8()?;
    let kind = *EventKind::ALL.get(tag as usize)?;
    let hunt = get.u32()?;
    let event = match kind {
        EventKind::CreateHunt => Event::CreateHunt { hunt, spec: read_hunt_spec(&mut get)? },
        EventKind::EndHunt => Event::EndHunt { hunt },
        EventKind::DeleteHunt => Event::DeleteHunt { hunt },
        EventKind::PlaceTreasure => {
            let (id, position) = (get.u32()?, get.position()?);
            let (radius, value, capacity, hint_radius) = (get.u32()?, get.u32()?, get.u32()?, get.u32()?);
            Event::PlaceTreasure { hunt, treasure: TreasureSpec { id, position, radius, value, capacity, hint_radius } }
        }
        EventKind::RemoveTreasure => Event::RemoveTreasure { hunt, treasure: get.u32()? },
        EventKind::Join => Event::Join { hunt, player: get.u32()?, seq: get.u32()?, position: get.position()? },
        EventKind::Leave => Event::Leave { hunt, player: get.u32()?, seq: get.u32()? },
        EventKind::Move => Event::Move { hunt, player: get.u32()?, seq: get.u32()?, position: get.position()? },
        EventKind::Dig => {
            Event::Dig { hunt, player: get.u32()?, seq: get.u32()?, treasure: get.u32()?, position: get.position()? }
        }
        EventKind::AdjustScore => Event::AdjustScore { hunt, player: get.u32()?, seq: get.u32()?, delta: get.i32()? },
        // A query in the journal is damage: this build never writes one.
        EventKind::Top | EventKind::Rank | EventKind::Around | EventKind::Hint | EventKind::TreasureInfo => {
            return None
        }
    };
    // Exactly one encoding: trailing bytes are damage, not padding.
    (get.at == bytes.len()).then_some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Event> {
        let spec = HuntSpec {
            coordinates: Coordinates::Geographic,
            min: Position::new(-5, -6),
            max: Position::new(7, 8),
            start: 9,
            end: u64::MAX,
            options: HuntOptions {
                auto_discover: true,
                speed_max: 11,
                points: PointsRule::Decay,
                claims_per_player_max: 12,
            },
        };
        let treasure =
            TreasureSpec { id: 3, position: Position::new(-1, 2), radius: 4, value: 5, capacity: 6, hint_radius: 7 };
        let position = Position::new(i32::MIN, i32::MAX);
        vec![
            Event::CreateHunt { hunt: 1, spec },
            Event::EndHunt { hunt: 2 },
            Event::DeleteHunt { hunt: 3 },
            Event::PlaceTreasure { hunt: 4, treasure },
            Event::RemoveTreasure { hunt: 5, treasure: 6 },
            Event::Join { hunt: 6, player: 7, seq: 8, position },
            Event::Leave { hunt: 7, player: 8, seq: 9 },
            Event::Move { hunt: 8, player: 9, seq: 10, position },
            Event::Dig { hunt: 9, player: 10, seq: 11, treasure: 12, position },
            Event::AdjustScore { hunt: 10, player: 11, seq: 12, delta: -13 },
        ]
    }

    #[test]
    fn every_mutation_round_trips_at_its_drawn_size() {
        let sizes = [48, 5, 5, 33, 9, 21, 13, 21, 25, 17];
        for (event, size) in every_kind().into_iter().zip(sizes) {
            let mut out = Vec::new();
            encode_record(42, 77, &event, &mut out);
            assert_eq!(out.len(), JOURNAL_RECORD_HEADER_SIZE + size, "{event:?}");
            let expected = Record { seq: 42, time: 77, event };
            assert_eq!(parse_record(&out), Parsed::Record(expected, out.len()));
        }
    }

    #[test]
    fn every_cut_is_incomplete_and_every_bit_flip_is_damage() {
        for event in every_kind() {
            let mut out = Vec::new();
            encode_record(1, 2, &event, &mut out);
            for cut in 0..out.len() {
                let parsed = parse_record(&out[..cut]);
                // A cut inside the length field may read as an out-of-range length.
                assert!(matches!(parsed, Parsed::Incomplete | Parsed::Damaged(_)), "{cut}: {parsed:?}");
            }
            for bit in 0..out.len() * 8 {
                let mut flipped = out.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                let parsed = parse_record(&flipped);
                assert!(matches!(parsed, Parsed::Incomplete | Parsed::Damaged(_)), "bit {bit}: {parsed:?}");
            }
        }
    }

    #[test]
    fn bytes_this_build_never_writes_are_refused_even_with_a_valid_crc() {
        let mut out = Vec::new();
        encode_record(1, 2, &Event::EndHunt { hunt: 3 }, &mut out);
        // A trailing byte, with the length and CRC made consistent again.
        out.push(0);
        let size = out.len() as u32;
        out[..4].copy_from_slice(&size.to_le_bytes());
        let crc = record_crc(&out);
        out[CRC_OFFSET..SEQUENCE_OFFSET].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(parse_record(&out), Parsed::Damaged(_)));
        // A query's tag.
        out.pop();
        out[..4].copy_from_slice(&(size - 1).to_le_bytes());
        out[EVENT_OFFSET] = EventKind::Top as u8;
        let crc = record_crc(&out);
        out[CRC_OFFSET..SEQUENCE_OFFSET].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(parse_record(&out), Parsed::Damaged(_)));
    }
}
