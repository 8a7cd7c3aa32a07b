//! Every limit Cairn has, in one place, with its unit.
//!
//! Names put the quantity first and the qualifier last (`FRAME_SIZE_MAX`), and each
//! constant says its unit. Relations between limits are checked at compile time at the
//! bottom of this file, so changing one limit cannot silently break another. The state
//! machine, the server and the journal all read their bounds from here; command-line
//! flags may lower a limit but never raise it past what is written here.

// ---------------------------------------------------------------------------------------
// Coordinates and geometry.

/// Largest absolute value of a planar coordinate, in world units. Keeping coordinates
/// within 2^30 keeps a difference within 2^31 and a squared distance within 2^63, so
/// all distance math stays in `i64` without overflow.
pub const COORDINATE_ABS_MAX: i64 = 1 << 30;

/// Largest discovery or hint radius after projection, in internal units: world units for
/// planar hunts, centimetres for geographic ones (whose radii arrive in metres).
pub const RADIUS_MAX: u32 = 1 << 30;

/// Largest extent of a geographic hunt along either axis, in metres (200 km). Beyond this
/// the local planar projection would no longer agree with great-circle distance within
/// the 0.5% the design promises.
pub const GEO_SPAN_METRES_MAX: u32 = 200_000;

/// Internal units per metre for geographic hunts: positions are projected to centimetres.
pub const GEO_UNITS_PER_METRE: i64 = 100;

/// Largest absolute latitude accepted, in 1e-7 degrees (85 degrees: the projection
/// degenerates near the poles).
pub const LATITUDE_ABS_MAX: i32 = 850_000_000;

/// Largest absolute longitude accepted, in 1e-7 degrees.
pub const LONGITUDE_ABS_MAX: i32 = 1_800_000_000;

/// Cells along each axis of a hunt's uniform grid, at most. An empty cell costs 4 bits
/// once the hunt has a treasure (two bitmaps and their counts: 8 KiB at 128 x 128), and
/// nothing before; a non-empty list costs 24 bytes (see `grid.rs`).
pub const GRID_AXIS_CELLS_MAX: u32 = 128;

/// Cells a single treasure's discovery disc may be registered in; a treasure whose disc
/// covers more cells is kept in the hunt's short list of wide treasures instead, which
/// every move checks.
pub const GRID_CELLS_PER_TREASURE_MAX: u32 = 64;

/// Wide treasures (see above) per hunt, at most.
pub const GRID_WIDE_TREASURES_MAX: u32 = 64;

// ---------------------------------------------------------------------------------------
// State machine tables.

/// Hunts one shard owns, at most.
pub const HUNTS_PER_SHARD_MAX: u32 = 65_536;

/// Treasures in one hunt, at most.
pub const TREASURES_PER_HUNT_MAX: u32 = 65_536;

/// Players in one hunt, at most.
pub const PLAYERS_PER_HUNT_MAX: u32 = 4_000_000;

/// Capacity of one treasure (how many players may claim it), at most.
pub const TREASURE_CAPACITY_MAX: u32 = 100_000;

/// Sum of the capacities of one hunt's live treasures, at most. The claim table is sized
/// for this sum when treasures are placed, so an award never allocates.
pub const CLAIMS_PER_HUNT_MAX: u32 = 4_000_000;

/// Points one treasure is worth, at most.
pub const TREASURE_VALUE_MAX: u32 = 1_000_000;

/// Treasures one move may claim when the hunt auto-discovers on move; the rest are
/// claimed on the player's next moves.
pub const CLAIMS_PER_MOVE_MAX: usize = 4;

/// Entries a top-N query may ask for, at most.
pub const TOP_COUNT_MAX: u32 = 1_000;

/// Neighbours on each side an around-player query may ask for, at most.
pub const AROUND_RADIUS_MAX: u32 = 100;

/// Entries a list query writes, at most (top-N or around: 2 * radius + 1).
pub const LIST_ENTRIES_MAX: usize = TOP_COUNT_MAX as usize;

/// Ranks (1-based) whose changes are announced as top-N change notices.
pub const TOP_NOTICE_RANKS_MAX: u32 = 10;

/// Notices one event may produce, at most: the claims of one move, a top-N change for
/// each, lifecycle transitions and exhausted treasures.
pub const NOTICES_PER_EVENT_MAX: usize = 4 * CLAIMS_PER_MOVE_MAX + 4;

/// The window of travel a player may bank under the hunt's speed limit, in microseconds
/// (2 s). A player may move `speed * (elapsed + window)` at most, which tolerates the
/// jitter of events that share one server timestamp without letting a cheater teleport.
pub const SPEED_BURST_US: u64 = 2_000_000;

// ---------------------------------------------------------------------------------------
// Counting allocator.

/// Registry slots of the counting allocator, one per thread alive at once, at most. A
/// thread beyond this still counts correctly through the overflow block, only more
/// slowly. 256 slots of 128 bytes each take 32 KiB of zeroed static memory, and
/// `alloc::process` reads them all.
pub const THREAD_SLOTS_MAX: usize = 256;

// Every shard thread, plus a few helpers, gets a slot of its own: shards never count
// through the shared overflow block.
const _: () = assert!(THREAD_SLOTS_MAX >= SHARDS_MAX + 8);

// ---------------------------------------------------------------------------------------
// Time.

/// Microseconds per second.
pub const MICROS_PER_SECOND: u64 = 1_000_000;

// ---------------------------------------------------------------------------------------
// Compile-time relations.

const _: () = assert!(COORDINATE_ABS_MAX <= i32::MAX as i64);
const _: () = assert!((RADIUS_MAX as i64) <= 2 * COORDINATE_ABS_MAX);
const _: () = assert!(GEO_SPAN_METRES_MAX as i64 * GEO_UNITS_PER_METRE <= COORDINATE_ABS_MAX);
const _: () = assert!(TREASURE_CAPACITY_MAX <= CLAIMS_PER_HUNT_MAX);
const _: () = assert!((2 * AROUND_RADIUS_MAX + 1) as usize <= LIST_ENTRIES_MAX);
const _: () = assert!(TOP_COUNT_MAX as usize <= LIST_ENTRIES_MAX);
const _: () = assert!(TOP_NOTICE_RANKS_MAX <= TOP_COUNT_MAX);
const _: () = assert!(CLAIMS_PER_MOVE_MAX * 2 < NOTICES_PER_EVENT_MAX);
const _: () = assert!(GRID_AXIS_CELLS_MAX * GRID_AXIS_CELLS_MAX <= u16::MAX as u32 + 1);
// A player handle, a treasure handle and a hunt handle are all `u32`.
const _: () = assert!(PLAYERS_PER_HUNT_MAX < u32::MAX);
const _: () = assert!(TREASURES_PER_HUNT_MAX < u32::MAX);

// ---------------------------------------------------------------------------------------
// Wire protocol (see `docs/protocol.md`).

/// Size of every frame header, in bytes.
pub const FRAME_HEADER_SIZE: usize = 12;

/// Largest frame, header included, in bytes (64 KiB). A longer length in a header is
/// rejected before anything is read or allocated.
pub const FRAME_SIZE_MAX: usize = 64 * (1 << 10);

/// Largest error message carried in an error frame, in bytes.
pub const ERROR_MESSAGE_SIZE_MAX: usize = 256;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest client name a HELLO may carry, in bytes of UTF-8. The name only labels the
/// connection in logs and stats, so a short bound keeps the handshake small.
pub const CLIENT_NAME_SIZE_MAX: usize = 64;

/// Hunts one connection may subscribe to at once. Each subscription costs the owning
/// shard a slot in its fan-out table, so a connection cannot grow that table without
/// bound.
pub const SUBSCRIPTIONS_PER_CONNECTION_MAX: u32 = 256;

const _: () = assert!(FRAME_HEADER_SIZE < FRAME_SIZE_MAX);
const _: () = assert!(FRAME_HEADER_SIZE + ERROR_MESSAGE_SIZE_MAX + 16 <= FRAME_SIZE_MAX);
// A full top-N reply (header, count, and 24 bytes per entry) fits in one frame.
const _: () = assert!(FRAME_HEADER_SIZE + 8 + 24 * LIST_ENTRIES_MAX <= FRAME_SIZE_MAX);
// Message lengths travel as `u16` fields, and frame lengths as `u32` fields.
const _: () = assert!(ERROR_MESSAGE_SIZE_MAX <= u16::MAX as usize);
const _: () = assert!(CLIENT_NAME_SIZE_MAX <= u16::MAX as usize);
const _: () = assert!(FRAME_SIZE_MAX <= u32::MAX as usize);
// A HELLO with the longest name (header, two versions, name length, name) fits in a frame.
const _: () = assert!(FRAME_HEADER_SIZE + 6 + CLIENT_NAME_SIZE_MAX <= FRAME_SIZE_MAX);
// A move reply with the most claims (header, count, and 28 bytes per claim) fits in a frame.
const _: () = assert!(FRAME_HEADER_SIZE + 4 + 28 * CLAIMS_PER_MOVE_MAX <= FRAME_SIZE_MAX);
const _: () = assert!(SUBSCRIPTIONS_PER_CONNECTION_MAX > 0);

// ---------------------------------------------------------------------------------------
// Journal (see `src/journal/`).

/// Size of a journal record's header (length, CRC32C, sequence number, event time), in
/// bytes.
pub const JOURNAL_RECORD_HEADER_SIZE: usize = 24;

/// Largest encoded event inside a journal record, in bytes (the widest, a hunt creation,
/// takes 48).
pub const JOURNAL_EVENT_SIZE_MAX: usize = 64;

/// Largest journal record, header included, in bytes. A length field above this is
/// damage, found before anything is read past the header.
pub const JOURNAL_RECORD_SIZE_MAX: usize = JOURNAL_RECORD_HEADER_SIZE + JOURNAL_EVENT_SIZE_MAX;

/// A journal segment is closed and a new one started once it holds this many bytes
/// (64 MiB): recovery reads one segment at a time, so this bounds its memory, and
/// snapshots delete whole segments.
pub const JOURNAL_SEGMENT_SIZE_MAX: u64 = 64 * (1 << 20);

/// Bytes the per-shard commit buffer reserves at start-up (1 MiB): a loop turn's records
/// fit without growing it, so appending never allocates in steady state.
pub const JOURNAL_COMMIT_BUFFER_SIZE: usize = 1 << 20;

/// Journaled events between two snapshots of a shard, by default.
pub const SNAPSHOT_INTERVAL_EVENTS: u64 = 1_000_000;

/// The version of the game rules this build's state machine applies, recorded in a data
/// directory when it is initialised (`DIR/rules-version`): a journal replays to the state
/// its clients were told about only under the rules that wrote it, so a start refuses a
/// directory written under another version. Bump it (by one) in the same commit as any
/// change that makes `Shard::apply` answer some event differently (accept what it
/// refused, refuse what it accepted, or give other claims, points, ranks or notices) or
/// reach a different state or `Shard::digest` from the same events at the same times.
/// Changes that keep every answer and state, such as speed-ups or new limits on input
/// that never reaches `apply`, leave it alone. There is no migration between versions.
pub const RULES_VERSION: u32 = 1;

// The largest snapshot body is not chosen but derived from the table limits above and
// the snapshot layout: `SNAPSHOT_BODY_SIZE_MAX` in `journal/snapshot.rs`.

const _: () = assert!(JOURNAL_RECORD_SIZE_MAX <= u32::MAX as usize);
const _: () = assert!(JOURNAL_RECORD_SIZE_MAX as u64 <= JOURNAL_SEGMENT_SIZE_MAX);
const _: () = assert!(JOURNAL_RECORD_SIZE_MAX <= JOURNAL_COMMIT_BUFFER_SIZE);
const _: () = assert!(SNAPSHOT_INTERVAL_EVENTS > 0);

// ---------------------------------------------------------------------------------------
// Server (see `src/server/`).

/// Shards (threads) one server runs, at most. The HELLO reply carries the count as a
/// `u16`, and every pair of shards costs two rings.
pub const SHARDS_MAX: usize = 64;

/// Connections one shard holds open at once, at most (Redis's `maxclients` default is
/// 10 000 for the whole server). One more is answered with ERROR `too_many_connections`
/// and closed.
pub const CONNECTIONS_PER_SHARD_MAX: usize = 10_000;

/// Connections the whole server holds at once, at most: every shard full.
/// `--max-connections` lowers it to an exact server-wide count.
pub const CONNECTIONS_MAX: usize = SHARDS_MAX * CONNECTIONS_PER_SHARD_MAX;

/// Size of a connection's read buffer, in bytes (128 KiB): two maximum frames, so one
/// partial frame at the tail never stops the next read.
pub const READ_BUFFER_SIZE: usize = 2 * FRAME_SIZE_MAX;

/// Capacity a connection's output buffer starts with, in bytes (64 KiB). It may grow up
/// to the limits below; a connection whose peer reads keeps it at its steady size, so
/// steady state does not allocate.
pub const OUTPUT_BUFFER_SIZE_INITIAL: usize = 64 * (1 << 10);

/// Pending output above which a connection's requests are no longer decoded, in bytes
/// (1 MiB): the bytes stay in its read buffer and the kernel's, and TCP pushes back.
pub const OUTPUT_BUFFER_BYTES_HIGH: usize = 1 << 20;

/// Pending output above which pushes to a subscriber are dropped and remembered as a gap,
/// in bytes (8 MiB, Redis's pub/sub soft limit).
pub const SUBSCRIBER_BUFFER_BYTES_SOFT: usize = 8 << 20;

/// Pending output above which a connection is sent GOODBYE and closed, in bytes (32 MiB,
/// Redis's pub/sub hard limit).
pub const SUBSCRIBER_BUFFER_BYTES_MAX: usize = 32 << 20;

/// Missed ranges one connection may owe GAP pushes for, one per (hunt, topic); a drop
/// that needs one more closes the connection with GOODBYE.
pub const GAPS_PER_CONNECTION_MAX: usize = 16;

/// Requests of one connection waiting on another shard's reply, at most; beyond this
/// the connection is not decoded until replies come back, which bounds its output.
pub const INFLIGHT_REQUESTS_PER_CONNECTION_MAX: u32 = 1_024;

/// Size of each inter-shard ring, in bytes (256 KiB). Every ordered pair of shards has a
/// request ring and a reply ring of this size.
pub const RING_SIZE_BYTES: usize = 256 * (1 << 10);

/// Size of a ring record's header, in bytes (see `src/server/ring.rs`).
pub const RING_RECORD_HEADER_SIZE: usize = 32;

/// Ring room one DELETE_HUNT's answer and notices take on one ring, at most, in bytes
/// (about 6 KiB): its reply or ERROR frame and every notice it issues (no notice frame
/// is larger than an ERROR frame), each behind a record header. The owner applies a
/// deletion only while every shard following the hunt has this much room beside the
/// largest reply, so the push that ends the subscriptions there is never dropped.
pub const DELETION_RING_BYTES_MAX: usize =
    (1 + NOTICES_PER_EVENT_MAX) * (RING_RECORD_HEADER_SIZE + FRAME_HEADER_SIZE + 4 + ERROR_MESSAGE_SIZE_MAX);

/// Frames one connection may have decoded per loop turn, at most, so one busy
/// connection cannot starve the others.
pub const FRAMES_PER_CONNECTION_PER_TURN_MAX: u32 = 256;

/// Connections one loop turn decodes, at most; the rest wait for the next turn.
pub const CONNECTIONS_PER_TURN_MAX: usize = 1_024;

/// Connections one loop turn accepts, at most.
pub const ACCEPTS_PER_TURN_MAX: usize = 64;

/// Records one loop turn takes from one incoming ring, at most.
pub const RECORDS_PER_RING_PER_TURN_MAX: usize = 4_096;

/// Readiness events one poll returns, at most.
pub const POLL_EVENTS_MAX: usize = 1_024;

/// Interval between copies of a shard's statistics into its shared snapshot, in
/// microseconds (100 ms).
pub const STATS_SNAPSHOT_INTERVAL_US: u64 = 100_000;

/// How often a shard retries its journal commit while the disk is full, in
/// microseconds (10 ms), even when no event arrives.
pub const DISK_FULL_RETRY_INTERVAL_US: u64 = 10_000;

/// Longest time a graceful shutdown waits for peers to read their replies, in
/// microseconds (5 s).
pub const SHUTDOWN_DRAIN_US: u64 = 5 * MICROS_PER_SECOND;

/// Largest latency a histogram records, in microseconds (60 s); longer ones are clamped.
pub const HISTOGRAM_US_MAX: u64 = 60 * MICROS_PER_SECOND;

/// Significant decimal digits the latency histograms keep.
pub const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 3;

/// Pending connections the kernel queues per listener.
pub const LISTEN_BACKLOG: i32 = 1_024;

/// How long a new connection may take to complete HELLO, in microseconds (10 s). A peer
/// that connects and says nothing, or never finishes its HELLO, is sent GOODBYE
/// `hello_timeout` and closed, so silent sockets cannot pile up to the connection limit.
pub const HELLO_TIMEOUT_US: u64 = 10 * MICROS_PER_SECOND;

/// How long one frame may take to arrive once its first byte has, in microseconds (10 s).
/// A frame of at most 64 KiB takes milliseconds on any working link; a peer that trickles
/// it a byte at a time is sent GOODBYE `frame_timeout` and closed.
pub const FRAME_TIMEOUT_US: u64 = 10 * MICROS_PER_SECOND;

/// How long a connection's output may wait without a single byte being written, in
/// microseconds (30 s). A peer that stops reading its replies is sent GOODBYE
/// `slow_consumer` and closed once this passes, so its output buffer is freed.
pub const WRITE_TIMEOUT_US: u64 = 30 * MICROS_PER_SECOND;

/// Longest idle timeout an operator may set, in microseconds (24 h). The idle timeout
/// itself is off by default (0): a game backend may keep a quiet connection open for
/// hours, and a subscriber only listens.
pub const IDLE_TIMEOUT_US_MAX: u64 = 24 * 3_600 * MICROS_PER_SECOND;

/// Longest any of the timeouts above may be set to, in microseconds (24 h).
pub const TIMEOUT_US_MAX: u64 = 24 * 3_600 * MICROS_PER_SECOND;

/// Interval between two sweeps of a shard's connections for timeouts, in microseconds
/// (100 ms). A coarse sweep costs one pass over the slab ten times a second (10 000
/// connections: tens of microseconds) and nothing per event, where a timer per
/// connection would be touched on every read and write; timeouts are seconds long, so
/// firing up to one interval late does not matter.
pub const TIMEOUT_SWEEP_INTERVAL_US: u64 = 100_000;

/// How long a connection told GOODBYE (or refused with a closing error) may take to read
/// it before it is closed anyway, in microseconds (1 s).
pub const GOODBYE_LINGER_US: u64 = MICROS_PER_SECOND;

/// Largest shared secret a HELLO may carry, in bytes.
pub const AUTH_TOKEN_SIZE_MAX: usize = 256;

/// Smallest shared secret `--auth-token` and `--admin-token` accept, in bytes: 16 random
/// bytes (or a 22-character base64 string) are beyond guessing over a network.
pub const AUTH_TOKEN_SIZE_MIN: usize = 16;

const _: () = assert!(SHARDS_MAX <= u16::MAX as usize);
const _: () = assert!(FRAME_SIZE_MAX <= READ_BUFFER_SIZE);
const _: () = assert!(OUTPUT_BUFFER_BYTES_HIGH < SUBSCRIBER_BUFFER_BYTES_SOFT);
const _: () = assert!(SUBSCRIBER_BUFFER_BYTES_SOFT < SUBSCRIBER_BUFFER_BYTES_MAX);
// A connection's own replies fill its output up to the high-water mark plus one frame
// before it stops being read; the hard limit must lie beyond, or a push would cut a
// subscriber for its own pipelined replies (see `server::Config::validate`).
const _: () = assert!(OUTPUT_BUFFER_BYTES_HIGH + FRAME_SIZE_MAX < SUBSCRIBER_BUFFER_BYTES_MAX);
// A ring holds a maximum reply even when a maximum request record is already in it, so a
// shard that checked for room before taking a request can always answer it.
const _: () = assert!(2 * (RING_RECORD_HEADER_SIZE + FRAME_SIZE_MAX) <= RING_SIZE_BYTES);
// A deletion fits beside the largest reply in the smallest ring (two largest records).
const _: () = assert!(DELETION_RING_BYTES_MAX + 2 * RING_RECORD_HEADER_SIZE <= FRAME_SIZE_MAX);
const _: () = assert!(CONNECTIONS_PER_SHARD_MAX < u32::MAX as usize);
const _: () = assert!(INFLIGHT_REQUESTS_PER_CONNECTION_MAX > 0);
const _: () = assert!(STATS_SNAPSHOT_INTERVAL_US < SHUTDOWN_DRAIN_US);
// Timeouts are found by the sweep, so each is at least a few sweeps long.
const _: () = assert!(TIMEOUT_SWEEP_INTERVAL_US * 4 <= HELLO_TIMEOUT_US);
const _: () = assert!(TIMEOUT_SWEEP_INTERVAL_US * 4 <= FRAME_TIMEOUT_US);
const _: () = assert!(TIMEOUT_SWEEP_INTERVAL_US * 4 <= WRITE_TIMEOUT_US);
const _: () = assert!(GOODBYE_LINGER_US < SHUTDOWN_DRAIN_US);
const _: () = assert!(IDLE_TIMEOUT_US_MAX <= TIMEOUT_US_MAX);
const _: () = assert!(HELLO_TIMEOUT_US <= TIMEOUT_US_MAX);
const _: () = assert!(FRAME_TIMEOUT_US <= TIMEOUT_US_MAX);
const _: () = assert!(WRITE_TIMEOUT_US <= TIMEOUT_US_MAX);
const _: () = assert!(AUTH_TOKEN_SIZE_MIN <= AUTH_TOKEN_SIZE_MAX);
// A HELLO with the longest name and the longest token fits in a frame.
const _: () = assert!(FRAME_HEADER_SIZE + 8 + CLIENT_NAME_SIZE_MAX + AUTH_TOKEN_SIZE_MAX <= FRAME_SIZE_MAX);
const _: () = assert!(AUTH_TOKEN_SIZE_MAX <= u16::MAX as usize);
