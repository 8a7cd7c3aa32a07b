//! Snapshots: a whole `Shard` written to one file, and rebuilt from it with the same
//! `digest()`.
//!
//! A snapshot file, all little-endian:
//!
//! ```text
//! offset  size  field
//!      0     8  magic        "CAIRNSNP"
//!      8     4  version      u32 = 3 (2 is read too, see below)
//!     12     4  header_crc   u32  CRC32C of bytes 0..12, then of bytes 16..48
//!     16     8  seq          u64  the last journal sequence number the state includes
//!     24     8  body_size    u64  bytes after the header
//!     32     4  body_crc     u32  CRC32C of the body
//!     36     4  hunt_count   u32
//!     40     8  time         u64  the event time of the last event the state includes
//!                                 (a restarted server's clock never goes below it)
//!     48        body: hunt_count hunts, by ascending id
//! ```
//!
//! A hunt is written as its id and spec (the 43-byte spec encoding of `record.rs`), its
//! effective `end` u64, announced phase u8 and topic sequence numbers (3 x u64), then
//! three slabs, each a u32 count followed by its entries, in slab order so that handles
//! survive:
//!
//! ```text
//! treasure slot  live u8, claimed u32, id u32, x i32, y i32, radius u32, value u32,
//!                capacity u32, hint_radius u32                                  (33 bytes)
//! free handle    u32, in free-list order (the next placement pops the last)     (4)
//! player         id u32, x i32, y i32 (internal units), last_time u64, score i64,
//!                reached_at u64, claims u32, last_seq u32, joined u8,
//!                travel_budget_micro_units u64                                  (53)
//! claim          treasure handle u32, player handle u32, ascending              (8)
//! ```
//!
//! `travel_budget_micro_units` is the travel the player has banked under the speed limit,
//! in millionths of an internal unit, so fractions of a unit carry over. Version 2 wrote
//! the same field in whole units (its engine rounded fractions away); it is read as that
//! many whole units, which is exactly the state that engine had.
//!
//! What can be derived is not written: projections, treasure centres and radii in
//! internal units, the handle maps, the grid, the leaderboard and the capacity total are
//! rebuilt from the slabs. The grid keeps every list sorted by handle and the leaderboard
//! orders by key alone, so the rebuilt hunt answers every later event exactly as the
//! live one would have; `tests/durability.rs` replays past snapshots to prove it.
//!
//! Writing follows the safe protocol: temporary file, fdatasync, rename, directory sync.
//! Loading checks both CRCs and every cross-reference and returns an error, never panics.

use hashbrown::HashMap;

use crate::constants::{
    CLAIMS_PER_HUNT_MAX, COORDINATE_ABS_MAX, HUNTS_PER_SHARD_MAX, MICROS_PER_SECOND, PLAYERS_PER_HUNT_MAX, RADIUS_MAX,
    TREASURES_PER_HUNT_MAX, TREASURE_CAPACITY_MAX, TREASURE_VALUE_MAX,
};
use crate::event::{HuntId, Micros};
use crate::event::{Position, TreasureSpec};
use crate::geo::Point;
use crate::hunt::{Hunt, Phase, Player, Treasure};
use crate::leaderboard::Key;
use crate::outcome::Topic;
use crate::shard::Shard;

use super::record::{get_hunt_spec, put_hunt_spec, HUNT_SPEC_SIZE};
use super::storage::Storage;
use super::{io_error, snapshot_name, JournalError, TEMPORARY_SUFFIX};

const MAGIC: [u8; 8] = *b"CAIRNSNP";

/// Largest topic sequence number a snapshot may carry (see `decode_hunt`).
const TOPIC_SEQUENCE_MAX: u64 = 1 << 63;
const VERSION: u32 = 3;
/// The version before travel budgets were kept in millionths of a unit; still read.
const VERSION_WHOLE_UNIT_BUDGETS: u32 = 2;

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + MAGIC.len();
const HEADER_CRC_OFFSET: usize = VERSION_OFFSET + size_of::<u32>();
const SEQ_OFFSET: usize = HEADER_CRC_OFFSET + size_of::<u32>();
const BODY_SIZE_OFFSET: usize = SEQ_OFFSET + size_of::<u64>();
const BODY_CRC_OFFSET: usize = BODY_SIZE_OFFSET + size_of::<u64>();
const HUNT_COUNT_OFFSET: usize = BODY_CRC_OFFSET + size_of::<u32>();
const TIME_OFFSET: usize = HUNT_COUNT_OFFSET + size_of::<u32>();
/// Bytes of a snapshot's header.
pub const SNAPSHOT_HEADER_SIZE: usize = TIME_OFFSET + size_of::<u64>();

const _: () = assert!(SNAPSHOT_HEADER_SIZE == 48);

/// Bytes of a hunt before and between its slabs: id, spec, end, phase, three topic
/// sequence numbers, and the four slab counts.
const HUNT_FIXED_SIZE: usize = 4 + HUNT_SPEC_SIZE + 8 + 1 + 3 * 8 + 4 * 4;
/// Bytes of one treasure slot, one free handle, one player and one claim (drawn above).
const TREASURE_SLOT_SIZE: usize = 33;
const FREE_HANDLE_SIZE: usize = 4;
const PLAYER_SIZE: usize = 53;
const CLAIM_SIZE: usize = 8;

/// The largest body the engine's limits let a writer produce: every hunt a shard may own,
/// each with its slabs full (about 14.7 TiB). Derived rather than chosen, so a snapshot
/// that was written can always be loaded back; a header stating more is damage. (The
/// file is read whole before its header is looked at, so what bounds the loader's memory
/// is the file's own size, not this.)
pub const SNAPSHOT_BODY_SIZE_MAX: u64 = HUNTS_PER_SHARD_MAX as u64
    * (HUNT_FIXED_SIZE as u64
        + TREASURES_PER_HUNT_MAX as u64 * (TREASURE_SLOT_SIZE + FREE_HANDLE_SIZE) as u64
        + PLAYERS_PER_HUNT_MAX as u64 * PLAYER_SIZE as u64
        + CLAIMS_PER_HUNT_MAX as u64 * CLAIM_SIZE as u64);

/// A decoded snapshot.
pub struct Snapshot {
    /// The last journal sequence number the state includes.
    pub seq: u64,
    /// The event time of the last event the state includes (0: none).
    pub time: Micros,
    /// The rebuilt state.
    pub shard: Shard,
}

fn header_crc(header: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&header[MAGIC_OFFSET..HEADER_CRC_OFFSET]);
    crc32c::crc32c_append(crc, &header[SEQ_OFFSET..SNAPSHOT_HEADER_SIZE])
}

/// Encodes `shard`, whose state includes exactly the journal records up to `seq`, the
/// last of them at event time `time`.
pub fn encode_snapshot(shard: &Shard, seq: u64, time: Micros) -> Vec<u8> {
    let mut out = vec![0u8; SNAPSHOT_HEADER_SIZE];
    let mut ids: Vec<HuntId> = shard.hunts.keys().copied().collect();
    ids.sort_unstable();
    for id in &ids {
        encode_hunt(&shard.hunts[id], &mut out);
    }
    let body_crc = crc32c::crc32c(&out[SNAPSHOT_HEADER_SIZE..]);
    let body_size = (out.len() - SNAPSHOT_HEADER_SIZE) as u64;
    assert!(body_size <= SNAPSHOT_BODY_SIZE_MAX, "a shard within the limits outgrew the snapshot bound");
    out[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&MAGIC);
    out[VERSION_OFFSET..HEADER_CRC_OFFSET].copy_from_slice(&VERSION.to_le_bytes());
    out[SEQ_OFFSET..BODY_SIZE_OFFSET].copy_from_slice(&seq.to_le_bytes());
    out[BODY_SIZE_OFFSET..BODY_CRC_OFFSET].copy_from_slice(&body_size.to_le_bytes());
    out[BODY_CRC_OFFSET..HUNT_COUNT_OFFSET].copy_from_slice(&body_crc.to_le_bytes());
    out[HUNT_COUNT_OFFSET..TIME_OFFSET].copy_from_slice(&(ids.len() as u32).to_le_bytes());
    out[TIME_OFFSET..SNAPSHOT_HEADER_SIZE].copy_from_slice(&time.to_le_bytes());
    let crc = header_crc(&out[..SNAPSHOT_HEADER_SIZE]);
    out[HEADER_CRC_OFFSET..SEQ_OFFSET].copy_from_slice(&crc.to_le_bytes());
    out
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn encode_hunt(hunt: &Hunt, out: &mut Vec<u8>) {
    put_u32(out, hunt.id);
    put_hunt_spec(out, &hunt.spec);
    put_u64(out, hunt.end);
    out.push(hunt.announced as u8);
    for seq in hunt.topic_seqs {
        put_u64(out, seq);
    }
    put_u32(out, hunt.treasures.len() as u32);
    for treasure in &hunt.treasures {
        let spec = &treasure.spec;
        out.push(treasure.live as u8);
        put_u32(out, treasure.claimed);
        put_u32(out, spec.id);
        for coordinate in [spec.position.x, spec.position.y] {
            out.extend_from_slice(&coordinate.to_le_bytes());
        }
        for value in [spec.radius, spec.value, spec.capacity, spec.hint_radius] {
            put_u32(out, value);
        }
    }
    put_u32(out, hunt.treasures_free.len() as u32);
    for &handle in &hunt.treasures_free {
        put_u32(out, handle);
    }
    put_u32(out, hunt.players.len() as u32);
    for player in hunt.players.iter() {
        put_u32(out, player.id);
        for coordinate in [player.position.x, player.position.y] {
            out.extend_from_slice(&coordinate.to_le_bytes());
        }
        put_u64(out, player.last_time);
        out.extend_from_slice(&player.score.to_le_bytes());
        put_u64(out, player.reached_at);
        put_u32(out, player.claims);
        put_u32(out, player.last_seq);
        out.push(player.joined as u8);
        put_u64(out, player.travel_budget_micro_units);
    }
    let mut claims: Vec<u64> = hunt.claims.iter().copied().collect();
    claims.sort_unstable();
    put_u32(out, claims.len() as u32);
    for key in claims {
        put_u32(out, (key >> 32) as u32);
        put_u32(out, key as u32);
    }
}

/// A checked little-endian reader over a snapshot body.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

type Checked<T> = Result<T, String>;

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Checked<[u8; N]> {
        let field =
            self.bytes.get(self.at..self.at + N).ok_or_else(|| format!("ends early at body byte {}", self.at))?;
        self.at += N;
        Ok(field.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Checked<u8> {
        Ok(self.take::<1>()?[0])
    }
    fn flag(&mut self) -> Checked<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("flag byte {other} before body byte {}", self.at)),
        }
    }
    fn u32(&mut self) -> Checked<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn i32(&mut self) -> Checked<i32> {
        self.take().map(i32::from_le_bytes)
    }
    fn u64(&mut self) -> Checked<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Checked<i64> {
        self.take().map(i64::from_le_bytes)
    }
    /// A count of entries of `entry_size` bytes each, checked against the bytes left so
    /// that a damaged count cannot make the loader allocate without bound.
    fn count(&mut self, entry_size: usize) -> Checked<usize> {
        let count = self.u32()? as usize;
        if count.saturating_mul(entry_size) > self.bytes.len() - self.at {
            return Err(format!("a count of {count} runs past the end of the body"));
        }
        Ok(count)
    }
}

/// Decodes a snapshot file: the sequence number it covers, its last event time and the
/// rebuilt shard.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, String> {
    if bytes.len() < SNAPSHOT_HEADER_SIZE {
        return Err(format!("{} bytes, shorter than the {SNAPSHOT_HEADER_SIZE}-byte header", bytes.len()));
    }
    let header = &bytes[..SNAPSHOT_HEADER_SIZE];
    let field = |from: usize, to: usize| &header[from..to];
    if field(MAGIC_OFFSET, VERSION_OFFSET) != MAGIC {
        return Err("not a Cairn snapshot (bad magic)".to_string());
    }
    let crc = u32::from_le_bytes(field(HEADER_CRC_OFFSET, SEQ_OFFSET).try_into().expect("4 bytes"));
    if crc != header_crc(header) {
        return Err("header CRC32C mismatch".to_string());
    }
    let version = u32::from_le_bytes(field(VERSION_OFFSET, HEADER_CRC_OFFSET).try_into().expect("4 bytes"));
    if version != VERSION && version != VERSION_WHOLE_UNIT_BUDGETS {
        return Err(format!("version {version}, this build reads versions {VERSION_WHOLE_UNIT_BUDGETS} and {VERSION}"));
    }
    let seq = u64::from_le_bytes(field(SEQ_OFFSET, BODY_SIZE_OFFSET).try_into().expect("8 bytes"));
    let body_size = u64::from_le_bytes(field(BODY_SIZE_OFFSET, BODY_CRC_OFFSET).try_into().expect("8 bytes"));
    let body_crc = u32::from_le_bytes(field(BODY_CRC_OFFSET, HUNT_COUNT_OFFSET).try_into().expect("4 bytes"));
    let hunt_count = u32::from_le_bytes(field(HUNT_COUNT_OFFSET, TIME_OFFSET).try_into().expect("4 bytes"));
    let time = u64::from_le_bytes(field(TIME_OFFSET, SNAPSHOT_HEADER_SIZE).try_into().expect("8 bytes"));
    let body = &bytes[SNAPSHOT_HEADER_SIZE..];
    check_body_size(body_size, body.len() as u64)?;
    if crc32c::crc32c(body) != body_crc {
        return Err("body CRC32C mismatch".to_string());
    }
    let mut shard = Shard::new();
    let mut cursor = Cursor { bytes: body, at: 0 };
    for _ in 0..hunt_count {
        let hunt = decode_hunt(&mut cursor, version)?;
        if shard.hunts.insert(hunt.id, Box::new(hunt)).is_some() {
            return Err("a hunt appears twice".to_string());
        }
    }
    if cursor.at != body.len() {
        return Err(format!("{} bytes left after the last hunt", body.len() - cursor.at));
    }
    Ok(Snapshot { seq, time, shard })
}

/// Checks the body size a header states against the bytes that follow it.
fn check_body_size(body_size: u64, body_len: u64) -> Checked<()> {
    if body_size > SNAPSHOT_BODY_SIZE_MAX {
        return Err(format!("the header says {body_size} body bytes, past the largest the limits allow"));
    }
    if body_size != body_len {
        return Err(format!("body of {body_len} bytes where the header says {body_size}"));
    }
    Ok(())
}

fn decode_hunt(cursor: &mut Cursor, version: u32) -> Checked<Hunt> {
    let id = cursor.u32()?;
    let spec = get_hunt_spec(&cursor.take::<HUNT_SPEC_SIZE>()?).ok_or("bad hunt spec")?;
    let mut hunt = Hunt::create(id, &spec).map_err(|rejection| format!("hunt {id}: {rejection:?}"))?;
    hunt.end = cursor.u64()?;
    hunt.announced = match cursor.u8()? {
        0 => Phase::Created,
        1 => Phase::Running,
        2 => Phase::Ended,
        other => return Err(format!("hunt {id}: phase {other}")),
    };
    for seq in &mut hunt.topic_seqs {
        *seq = cursor.u64()?;
        // A live hunt counts up from 0 and never nears 2^63 notices (292 years at a
        // billion a second); a larger number would overflow on the next notices.
        if *seq > TOPIC_SEQUENCE_MAX {
            return Err(format!("hunt {id}: topic sequence {seq} out of range"));
        }
    }
    const _: () = assert!(Topic::COUNT == 3);
    decode_treasures(cursor, &mut hunt)?;
    decode_players(cursor, &mut hunt, version)?;
    decode_claims(cursor, &mut hunt)?;
    Ok(hunt)
}

fn decode_treasures(cursor: &mut Cursor, hunt: &mut Hunt) -> Checked<()> {
    let count = cursor.count(TREASURE_SLOT_SIZE)?;
    hunt.treasures.reserve_exact(count);
    for handle in 0..count as u32 {
        let (live, claimed, id) = (cursor.flag()?, cursor.u32()?, cursor.u32()?);
        let position = Position::new(cursor.i32()?, cursor.i32()?);
        let (radius, value, capacity, hint_radius) = (cursor.u32()?, cursor.u32()?, cursor.u32()?, cursor.u32()?);
        let spec = TreasureSpec { id, position, radius, value, capacity, hint_radius };
        let center = hunt.projection.project(position).ok_or_else(|| format!("treasure {id}: position off the map"))?;
        let radius_units = hunt.projection.length_to_units(radius);
        let hint_units = hunt.projection.length_to_units(hint_radius);
        if claimed > capacity {
            return Err(format!("treasure {id}: {claimed} claims of {capacity}"));
        }
        if live {
            // The limits `Hunt::place` enforces: the claim table below is reserved from
            // these capacities, so an unchecked one could ask for gigabytes.
            check_treasure_limits(&spec, radius_units, hint_units, hunt.capacity_total)
                .map_err(|why| format!("treasure {id}: {why}"))?;
        }
        hunt.treasures.push(Treasure { spec, center, radius_units, hint_units, claimed, live });
        if live {
            if hunt.treasure_handles.insert(id, handle).is_some() {
                return Err(format!("treasure {id} is live twice"));
            }
            hunt.grid.insert(handle, center, radius_units).map_err(|_| format!("treasure {id}: grid full"))?;
            hunt.capacity_total += capacity as u64;
        }
    }
    let free_count = cursor.count(FREE_HANDLE_SIZE)?;
    let mut seen = vec![false; count];
    for _ in 0..free_count {
        let handle = cursor.u32()?;
        let slot = hunt.treasures.get(handle as usize).ok_or_else(|| format!("free handle {handle} out of range"))?;
        if slot.live || seen[handle as usize] {
            return Err(format!("free handle {handle} is live or listed twice"));
        }
        seen[handle as usize] = true;
        hunt.treasures_free.push(handle);
    }
    if free_count + hunt.treasure_handles.len() != count {
        return Err("a removed treasure's slot is missing from the free list".to_string());
    }
    Ok(())
}

/// The bounds a live treasure must be within, as `Hunt::place` checks them when it is
/// placed: capacity, value, radii, and the hunt's total capacity (`capacity_total`, of the
/// live treasures before this one).
fn check_treasure_limits(spec: &TreasureSpec, radius_units: u64, hint_units: u64, capacity_total: u64) -> Checked<()> {
    if spec.capacity == 0 || spec.capacity > TREASURE_CAPACITY_MAX {
        return Err(format!("capacity {} outside 1..={TREASURE_CAPACITY_MAX}", spec.capacity));
    }
    if spec.value > TREASURE_VALUE_MAX {
        return Err(format!("value {} above {TREASURE_VALUE_MAX}", spec.value));
    }
    if radius_units > RADIUS_MAX as u64 || hint_units > RADIUS_MAX as u64 {
        return Err("radius or hint radius too large".to_string());
    }
    if capacity_total + spec.capacity as u64 > CLAIMS_PER_HUNT_MAX as u64 {
        return Err(format!("the hunt's capacity passes {CLAIMS_PER_HUNT_MAX} claims"));
    }
    Ok(())
}

/// Players of a snapshot of `version` (see the module doc for how version 2's travel
/// budgets read).
fn decode_players(cursor: &mut Cursor, hunt: &mut Hunt, version: u32) -> Checked<()> {
    let count = cursor.count(PLAYER_SIZE)?;
    hunt.players.reserve(count);
    hunt.leaderboard.reserve(count);
    for handle in 0..count as u32 {
        let id = cursor.u32()?;
        let position = Point::new(cursor.i32()?, cursor.i32()?);
        let (last_time, score, reached_at) = (cursor.u64()?, cursor.i64()?, cursor.u64()?);
        let (claims, last_seq, joined, travel_budget) = (cursor.u32()?, cursor.u32()?, cursor.flag()?, cursor.u64()?);
        // Positions come from a projection, which never leaves the coordinate range; the
        // grid asserts it on every query, so a position outside is damage, not a state.
        if position.x.unsigned_abs() as i64 > COORDINATE_ABS_MAX
            || position.y.unsigned_abs() as i64 > COORDINATE_ABS_MAX
        {
            return Err(format!("player {id}: position outside the coordinate range"));
        }
        let travel_budget_micro_units = match version {
            VERSION_WHOLE_UNIT_BUDGETS => travel_budget.saturating_mul(MICROS_PER_SECOND),
            _ => travel_budget,
        };
        // A move never banks more than the hunt's burst allowance, and the next move adds
        // to what is banked, so more would overflow there.
        if travel_budget_micro_units > hunt.travel_budget_max_micro_units() {
            return Err(format!("player {id}: travel budget {travel_budget} above the hunt's maximum"));
        }
        let player = Player {
            id,
            handle,
            position,
            last_time,
            score,
            reached_at,
            claims,
            last_seq,
            joined,
            travel_budget_micro_units,
        };
        if hunt.players.insert(player).is_none() {
            return Err(format!("player {id} appears twice"));
        }
        hunt.leaderboard.insert(Key { score, reached_at, player: id });
    }
    Ok(())
}

fn decode_claims(cursor: &mut Cursor, hunt: &mut Hunt) -> Checked<()> {
    let count = cursor.count(CLAIM_SIZE)?;
    if count as u64 > hunt.capacity_total {
        return Err(format!("{count} claims for a capacity of {}", hunt.capacity_total));
    }
    // As `Hunt::place` does: room for every claim the live treasures can still give.
    hunt.claims.reserve(hunt.capacity_total as usize);
    let mut per_treasure: HashMap<u32, u32> = HashMap::new();
    for _ in 0..count {
        let (treasure, player) = (cursor.u32()?, cursor.u32()?);
        let live = hunt.treasures.get(treasure as usize).is_some_and(|slot| slot.live);
        if !live || player as usize >= hunt.players.len() {
            return Err(format!("claim ({treasure}, {player}) names no live treasure or no player"));
        }
        if !hunt.claims.insert(((treasure as u64) << 32) | player as u64) {
            return Err(format!("claim ({treasure}, {player}) appears twice"));
        }
        *per_treasure.entry(treasure).or_default() += 1;
    }
    for &handle in hunt.treasure_handles.values() {
        let recorded = per_treasure.get(&handle).copied().unwrap_or(0);
        if recorded != hunt.treasures[handle as usize].claimed {
            return Err(format!("treasure handle {handle}: claim table and claim count disagree"));
        }
    }
    Ok(())
}

/// Writes the snapshot of `shard` at `seq` by the safe protocol: temporary file,
/// fdatasync, rename, directory sync. A failed sync is fatal ([`JournalError::SyncFailed`]);
/// a full disk removes the temporary file and reports [`JournalError::DiskFull`].
pub(crate) fn write_snapshot<S: Storage>(
    storage: &mut S,
    shard: &Shard,
    seq: u64,
    time: Micros,
) -> Result<(), JournalError> {
    let bytes = encode_snapshot(shard, seq, time);
    let name = snapshot_name(seq);
    let temporary = format!("{name}{TEMPORARY_SUFFIX}");
    storage.create(&temporary).map_err(io_error("create", storage.describe(&temporary)))?;
    if let Err(error) = storage.append(&temporary, &bytes) {
        let file = storage.describe(&temporary);
        // Best effort: the file is useless, and recovery removes leftovers anyway.
        let _ = storage.remove(&temporary);
        if super::storage::is_out_of_space(&error) {
            return Err(JournalError::DiskFull { file });
        }
        return Err(JournalError::Io { operation: "write", file, source: error });
    }
    storage
        .sync(&temporary)
        .map_err(|source| JournalError::SyncFailed { file: storage.describe(&temporary), source })?;
    storage.rename(&temporary, &name).map_err(io_error("rename", storage.describe(&temporary)))?;
    storage.sync_dir().map_err(|source| JournalError::SyncFailed { file: storage.describe(""), source })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_size_the_writer_can_reach_is_accepted_and_one_past_it_refused() {
        // 16 GiB and a byte: a shard of a few hundred million players writes this much.
        let large = 16 * (1u64 << 30) + 1;
        assert_eq!(check_body_size(large, large), Ok(()));
        assert_eq!(check_body_size(SNAPSHOT_BODY_SIZE_MAX, SNAPSHOT_BODY_SIZE_MAX), Ok(()));
        let past = SNAPSHOT_BODY_SIZE_MAX + 1;
        let message = check_body_size(past, past).unwrap_err();
        assert!(message.contains(&past.to_string()) && message.contains("largest"), "{message}");
        let message = check_body_size(100, 99).unwrap_err();
        assert!(message.contains("99 bytes") && message.contains("says 100"), "{message}");
    }

    /// Rewrites a one-player snapshot's header version and the player's travel budget
    /// (the last field before the claim count, which ends the body) and seals it again.
    fn with_version_and_budget(mut bytes: Vec<u8>, version: u32, budget: u64) -> Vec<u8> {
        let budget_at = bytes.len() - size_of::<u32>() - size_of::<u64>();
        bytes[budget_at..budget_at + 8].copy_from_slice(&budget.to_le_bytes());
        bytes[VERSION_OFFSET..HEADER_CRC_OFFSET].copy_from_slice(&version.to_le_bytes());
        let body_crc = crc32c::crc32c(&bytes[SNAPSHOT_HEADER_SIZE..]);
        bytes[BODY_CRC_OFFSET..HUNT_COUNT_OFFSET].copy_from_slice(&body_crc.to_le_bytes());
        let crc = header_crc(&bytes[..SNAPSHOT_HEADER_SIZE]);
        bytes[HEADER_CRC_OFFSET..SEQ_OFFSET].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Version 3 keeps travel budgets in millionths of a unit; version 2 kept whole units
    /// and is read as exactly those; version 1 is refused naming the versions read.
    #[test]
    fn a_version_2_snapshot_reads_its_whole_unit_travel_budget_and_version_1_is_refused() {
        use crate::event::{Coordinates, Event, HuntOptions, HuntSpec};
        let options = HuntOptions { speed_max: 10, ..HuntOptions::default() };
        let spec = HuntSpec {
            coordinates: Coordinates::Planar,
            min: Position::new(0, 0),
            max: Position::new(1_000, 1_000),
            start: 0,
            end: Micros::MAX,
            options,
        };
        let mut shard = Shard::new();
        let time = 1_000_000;
        shard.apply(&Event::CreateHunt { hunt: 1, spec }, time);
        shard.apply(&Event::Join { hunt: 1, player: 1, seq: 1, position: Position::new(0, 0) }, time);
        // 5 of the 20-unit burst spent: 15 units banked.
        shard.apply(&Event::Move { hunt: 1, player: 1, seq: 2, position: Position::new(5, 0) }, time);
        let bytes = encode_snapshot(&shard, 3, time);
        let budget_at = bytes.len() - size_of::<u32>() - size_of::<u64>();
        assert_eq!(bytes[budget_at..budget_at + 8], 15_000_000u64.to_le_bytes(), "version 3 writes millionths");

        let old = decode_snapshot(&with_version_and_budget(bytes.clone(), 2, 15)).expect("version 2 loads");
        assert_eq!(old.shard.digest(), shard.digest(), "15 whole units read as 15 units");
        let over =
            decode_snapshot(&with_version_and_budget(bytes.clone(), 2, 21)).map(|snapshot| snapshot.seq).unwrap_err();
        assert!(over.contains("travel budget 21 above"), "{over}");

        let message = decode_snapshot(&with_version_and_budget(bytes, 1, 15)).map(|snapshot| snapshot.seq).unwrap_err();
        assert!(message.contains("version 1") && message.contains("versions 2 and 3"), "{message}");
    }
}
