//! The leaderboard's model check, shared by `tests/leaderboard.rs` (proptest strategies),
//! `tests/fuzz_props.rs` and the `leaderboard` fuzz target under `fuzz/` (bytes), each of
//! which includes this file with `#[path]`.
//!
//! A case is a list of [`Op`]s applied to a [`Leaderboard`] and to a [`Reference`]: a
//! `BTreeSet<Key>`, in which a key's rank is one plus the number of smaller keys, and
//! beside it the same keys in [`SortedBlocks`], which count those smaller keys by a
//! binary search and a sum of block lengths where the set walks them one by one (one
//! case growing to 12,000 keys took 520 ms counting in the set and 65 ms in the blocks).
//! Every rank an operation returns is compared with the reference's as it runs. Every
//! few operations ([`Effort`]), after every reserve, and at the end, the whole board is
//! compared ([`Runner::check_whole`]): the walk of every rank against the set's order
//! (and the blocks against the set), `rank` and `get` of the keys (of every key at the
//! end in the tests, else of a sample spread over the ranks, from a different first one
//! each time), the ranks past the end, and `check_invariants`. Any disagreement panics
//! with the operation's index and the operation.
//!
//! Operations never misuse the board: an insert of a present key, or an update to a
//! present key other than the old one, is skipped, and removals and updates pick a present
//! key by position (`pick` modulo the key count).
//!
//! ## Byte format
//!
//! Operations follow one another, each a kind byte (modulo [`OP_KINDS`]) and its fields,
//! little-endian, in the order of the fields of [`Op`]. Past the end every byte reads as
//! zero, so every byte string is a case; decoding stops at the end or after [`OPS_MAX`]
//! operations. Integers that are scores or deltas take a tag byte first (modulo 3): 0 an
//! `i16`, 1 an index byte into [`EXTREMES`], 2 a whole `i64`, so a mutated input lands in
//! small scores and at the extremes often. A time takes a tag byte (modulo 2): 0 a `u8`,
//! 1 a `u64`. The count of a fill or a drain is a `u16` whose low 12 bits are shifted
//! right by its top 4 (so random bytes mostly give small fills, while an encoded case,
//! top bits 0, says any count up to 4,095), and a reserve's is a `u32` modulo
//! `RESERVE_MAX + 1`, so one input stays bounded. [`encode_ops`] writes the
//! smallest form of each integer, and `decode_ops(encode_ops(ops)) == ops` for every case
//! the strategies of `tests/leaderboard.rs` draw.

use std::collections::BTreeSet;

use cairn::leaderboard::{Key, Leaderboard};
use cairn::rng::Rng;

/// Operations one decoded case runs, at most.
pub const OPS_MAX: usize = 1_024;
/// Keys one fill inserts, at most.
pub const FILL_MAX: u32 = 4_095;
/// The largest `reserve` a case makes.
pub const RESERVE_MAX: u32 = 65_536;
/// Keys one drain removes, at most.
pub const DRAIN_MAX: u32 = 4_095;

/// How much a [`Runner`] checks, and how large it lets a board grow.
#[derive(Clone, Copy, Debug)]
pub struct Effort {
    /// Keys a fill stops at (single inserts may add a few more), which bounds the time of
    /// one case.
    pub keys_max: usize,
    /// Operations between two whole-board comparisons.
    pub check_every: usize,
    /// Keys whose `rank` and `get` a whole-board comparison checks, at most.
    pub sample_keys: usize,
    /// Whether the comparisons at the end and of `Op::Check` take every key.
    pub thorough: bool,
    /// Whether the periodic comparisons also check the board's invariants (those at the
    /// end and of `Op::Check` always do).
    pub periodic_invariants: bool,
}

/// The tests' effort: boards up to 12,288 keys, every key compared at the end.
pub const TESTED: Effort =
    Effort { keys_max: 12_288, check_every: 16, sample_keys: 2_048, thorough: true, periodic_invariants: true };

/// The effort of [`check_leaderboard_bytes`]. A fuzzing build traces every comparison and
/// runs a case about eight times slower than a release test build, and checking every
/// key of 12,000 made most inputs take a few hundred milliseconds. Boards up to 8,704
/// keys still pass 4,096 and 8,192 (where a board reserving before every insert reserves
/// for twice as many), and the sample is a different one each time.
///
/// The invariants are checked only at the end and at `Op::Check`: they walk every slot
/// of the score window, whose size follows the largest reserve (up to 262,144 slots)
/// rather than the keys, and checking them every 32 operations took about 95% of a
/// fuzzing run (0.4 s an input). Every rank, key and walk is still compared with the
/// reference every 32 operations, so a wrong answer is still caught where it appears.
pub const FUZZED: Effort =
    Effort { keys_max: 8_704, check_every: 32, sample_keys: 128, thorough: false, periodic_invariants: false };
/// Keys one block of [`SortedBlocks`] holds before it splits in two.
const BLOCK_KEYS_MAX: usize = 1_024;
/// The event time of the first operation: `Time::Now` is this plus the operation's index.
pub const NOW_BASE: u64 = 1 << 32;
/// Operation kinds in the byte format.
pub const OP_KINDS: u8 = 11;

/// Scores at and near the ends of `i64` and around ±2^62.
pub const EXTREMES: [i64; 13] = [
    i64::MIN,
    i64::MIN + 1,
    -(1 << 62) - 1,
    -(1 << 62),
    -(1 << 62) + 1,
    -1,
    0,
    1,
    (1 << 62) - 1,
    1 << 62,
    (1 << 62) + 1,
    i64::MAX - 1,
    i64::MAX,
];

/// How the scores of a fill are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scores {
    /// Uniform in `low..low + width` (saturating at `i64::MAX`; a width of 0 counts as 1).
    /// A width of 1 to 5 piles hundreds of keys on a few values; a width of a fifth of the
    /// count puts about five keys on each.
    Range { low: i64, width: u32 },
    /// Uniform over [`EXTREMES`].
    Extremes,
}

/// A fill: `count` keys drawn by an [`Rng`] seeded with `seed`, players uniform over
/// `u32`, `reached_at` uniform in `0..times` (a `times` of 0 or 1 makes every key's time
/// 0, so equal scores are ordered by player). Keys already present are skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    pub count: u32,
    pub scores: Scores,
    pub times: u32,
    pub seed: u64,
}

/// The `reached_at` an update gives the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Time {
    /// The old key's.
    Keep,
    /// The running clock (`NOW_BASE` plus the operation's index), later than any other:
    /// what the engine does.
    Now,
    /// This one.
    At(u64),
}

/// One operation on the board and the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `reserve(additional)`.
    Reserve(u32),
    /// Inserts this key, unless present.
    Insert(Key),
    /// Inserts many keys.
    Fill(Fill),
    /// Removes the present key at position `pick % len` (no-op on an empty board).
    Remove { pick: u32 },
    /// Updates the present key at `pick % len` to its score plus `delta` (saturating), at
    /// `time`, same player; skipped if that key is present and differs from the old one.
    Update { pick: u32, delta: i64, time: Time },
    /// `rank` of this key, present or not.
    Rank(Key),
    /// `rank` of the key at `pick % len` moved by small amounts (all zero: the key
    /// itself; otherwise usually absent, next to present keys).
    Probe { pick: u32, score: i8, time: i8, player: i8 },
    /// `get(pick % (len + 3))`: rank 0, every rank, and two past the end.
    Get { pick: u32 },
    /// `for_each_from(1 + pick % (len + 2), count)`: windows from every rank and from past
    /// the end, any count up to `u32::MAX`.
    Window { pick: u32, count: u32 },
    /// Removes up to `count` keys from position `pick % len` on, one after another (each
    /// has the same rank): empties whole runs of equal scores.
    Drain { pick: u32, count: u32 },
    /// Compares the whole board now.
    Check,
}

/// An order-statistic list fast enough to count the keys before any key of a large
/// board: the keys in order, cut into blocks of at most `BLOCK_KEYS_MAX`; a key's rank
/// is the lengths of the blocks before its own plus its place in it (a binary search).
pub struct SortedBlocks {
    /// Never empty; no block is empty unless it is the only one.
    blocks: Vec<Vec<Key>>,
}

impl Default for SortedBlocks {
    fn default() -> SortedBlocks {
        SortedBlocks::new()
    }
}

impl SortedBlocks {
    /// No keys.
    pub fn new() -> SortedBlocks {
        SortedBlocks { blocks: vec![Vec::new()] }
    }

    /// The block `key` belongs in: the first whose last key is not below it, or the last.
    fn block_of(&self, key: &Key) -> usize {
        let index = self.blocks.partition_point(|block| block.last().is_some_and(|last| last < key));
        index.min(self.blocks.len() - 1)
    }

    fn keys_before(&self, block: usize) -> usize {
        self.blocks[..block].iter().map(Vec::len).sum()
    }

    /// The keys smaller than `key`, and whether `key` is present.
    pub fn count_below(&self, key: &Key) -> (usize, bool) {
        let block = self.block_of(key);
        let (position, present) = match self.blocks[block].binary_search(key) {
            Ok(position) => (position, true),
            Err(position) => (position, false),
        };
        (self.keys_before(block) + position, present)
    }

    /// Inserts an absent key; returns its rank.
    pub fn insert(&mut self, key: Key) -> u32 {
        let block = self.block_of(&key);
        let position = self.blocks[block].binary_search(&key).expect_err("the key is absent");
        self.blocks[block].insert(position, key);
        let rank = self.keys_before(block) + position + 1;
        if self.blocks[block].len() > BLOCK_KEYS_MAX {
            let right = self.blocks[block].split_off(BLOCK_KEYS_MAX / 2);
            self.blocks.insert(block + 1, right);
        }
        rank as u32
    }

    /// Removes a present key; returns the rank it had.
    pub fn remove(&mut self, key: &Key) -> u32 {
        let block = self.block_of(key);
        let position = self.blocks[block].binary_search(key).expect("the key is present");
        let rank = self.keys_before(block) + position + 1;
        self.blocks[block].remove(position);
        if self.blocks[block].is_empty() && self.blocks.len() > 1 {
            self.blocks.remove(block);
        }
        rank as u32
    }

    /// The rank of a present key, or `None`.
    pub fn rank(&self, key: &Key) -> Option<u32> {
        let (below, present) = self.count_below(key);
        present.then_some(below as u32 + 1)
    }

    /// The key at 0-based position `index`, if any.
    pub fn nth(&self, mut index: usize) -> Option<Key> {
        for block in &self.blocks {
            if index < block.len() {
                return Some(block[index]);
            }
            index -= block.len();
        }
        None
    }

    /// The keys in order.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.blocks.iter().flatten()
    }
}

/// The reference: the keys in a `BTreeSet` (membership and order) and in [`SortedBlocks`]
/// (ranks and positions), changed together and compared at every whole check.
#[derive(Default)]
pub struct Reference {
    set: BTreeSet<Key>,
    blocks: SortedBlocks,
}

impl Reference {
    fn len(&self) -> usize {
        self.set.len()
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    fn contains(&self, key: &Key) -> bool {
        self.set.contains(key)
    }

    fn insert(&mut self, key: Key) {
        assert!(self.set.insert(key));
        self.blocks.insert(key);
    }

    fn remove(&mut self, key: &Key) {
        assert!(self.set.remove(key));
        self.blocks.remove(key);
    }

    /// 1 + the number of keys smaller than `key`, present or not.
    fn rank_of(&self, key: &Key) -> u32 {
        self.blocks.count_below(key).0 as u32 + 1
    }

    /// The key at 0-based position `index`, if any.
    fn nth(&self, index: usize) -> Option<Key> {
        self.blocks.nth(index)
    }

    fn iter(&self) -> impl Iterator<Item = &Key> {
        self.set.iter()
    }

    /// Panics unless the blocks hold the set's keys in the set's order.
    fn check(&self, context: &str) {
        assert!(self.blocks.iter().eq(self.set.iter()), "{context}: the reference's blocks differ from its set");
    }
}

/// A leaderboard and its reference, side by side.
pub struct Runner {
    board: Leaderboard,
    model: Reference,
    /// Whether every insert is preceded by `reserve(1)`, as the engine does at each join.
    reserve_each_insert: bool,
    /// The index of the running operation (for messages and `Time::Now`).
    step: usize,
    /// The most keys the board held.
    len_peak: usize,
    /// The largest `len + additional` any `reserve` was called with.
    reserved_peak: usize,
    effort: Effort,
}

impl Runner {
    /// An empty board; with `reserve_each_insert`, every insert calls `reserve(1)` first.
    pub fn new(reserve_each_insert: bool) -> Runner {
        Runner {
            board: Leaderboard::new(),
            model: Reference::default(),
            reserve_each_insert,
            step: 0,
            len_peak: 0,
            reserved_peak: 0,
            effort: TESTED,
        }
    }

    /// The same with another effort.
    pub fn with_effort(reserve_each_insert: bool, effort: Effort) -> Runner {
        Runner { effort, ..Runner::new(reserve_each_insert) }
    }

    /// The most keys the board held so far.
    pub fn len_peak(&self) -> usize {
        self.len_peak
    }

    /// The largest `len + additional` a `reserve` asked for so far.
    pub fn reserved_peak(&self) -> usize {
        self.reserved_peak
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.model.len()
    }

    /// The position (0-based) of a present key, for `pick`s that name it.
    pub fn position(&self, key: &Key) -> u32 {
        assert!(self.model.contains(key), "{key:?} is not on the board");
        self.model_rank(key) - 1
    }

    /// Runs `ops` in order, then compares the whole board.
    pub fn run(&mut self, ops: &[Op]) {
        for op in ops {
            self.apply(op);
        }
        self.check_whole("at the end", self.effort.thorough, true);
    }

    /// Applies one operation to both sides and compares what it returns; compares the
    /// whole board when it is due.
    pub fn apply(&mut self, op: &Op) {
        let context = format!("op {} {op:?}", self.step);
        let whole_now = match *op {
            Op::Reserve(additional) => {
                self.reserve(additional as usize);
                true
            }
            Op::Insert(key) => {
                self.insert(key, &context);
                false
            }
            Op::Fill(fill) => {
                self.fill(&fill, &context);
                false
            }
            Op::Remove { pick } => {
                if let Some(key) = self.pick(pick) {
                    let rank = self.model_rank(&key);
                    self.model.remove(&key);
                    assert_eq!(self.board.remove(&key), rank, "{context}: remove {key:?}");
                }
                false
            }
            Op::Update { pick, delta, time } => {
                self.update(pick, delta, time, &context);
                false
            }
            Op::Rank(key) => {
                self.check_rank(&key, &context);
                false
            }
            Op::Probe { pick, score, time, player } => {
                if let Some(base) = self.pick(pick) {
                    let key = Key {
                        score: base.score.saturating_add(i64::from(score)),
                        reached_at: base.reached_at.wrapping_add_signed(i64::from(time)),
                        player: base.player.wrapping_add_signed(i32::from(player)),
                    };
                    self.check_rank(&key, &context);
                }
                false
            }
            Op::Get { pick } => {
                let rank = (u64::from(pick) % (self.model.len() as u64 + 3)) as u32;
                let expect = (rank >= 1).then(|| self.model.nth(rank as usize - 1)).flatten();
                assert_eq!(self.board.get(rank), expect, "{context}: get({rank}) of {}", self.model.len());
                false
            }
            Op::Window { pick, count } => {
                let first = 1 + (u64::from(pick) % (self.model.len() as u64 + 2)) as u32;
                self.check_window(first, count, &context);
                false
            }
            Op::Drain { pick, count } => {
                self.drain(pick, count, &context);
                false
            }
            Op::Check => {
                self.check_whole(&context, self.effort.thorough, true);
                false
            }
        };
        assert_eq!(self.board.len() as usize, self.model.len(), "{context}: len");
        assert_eq!(self.board.is_empty(), self.model.is_empty(), "{context}: is_empty");
        self.len_peak = self.len_peak.max(self.model.len());
        self.step += 1;
        if whole_now || self.step.is_multiple_of(self.effort.check_every) {
            self.check_whole(&context, false, self.effort.periodic_invariants);
        }
    }

    fn reserve(&mut self, additional: usize) {
        self.reserved_peak = self.reserved_peak.max(self.model.len() + additional);
        self.board.reserve(additional);
    }

    /// 1 + the keys before `key` in the reference.
    fn model_rank(&self, key: &Key) -> u32 {
        self.model.rank_of(key)
    }

    /// The present key at position `pick % len`, or `None` on an empty board.
    fn pick(&self, pick: u32) -> Option<Key> {
        if self.model.is_empty() {
            return None;
        }
        self.model.nth(pick as usize % self.model.len())
    }

    fn insert(&mut self, key: Key, context: &str) {
        if self.model.contains(&key) {
            return;
        }
        if self.reserve_each_insert {
            self.reserve(1);
        }
        self.model.insert(key);
        let rank = self.model_rank(&key);
        assert_eq!(self.board.insert(key), rank, "{context}: insert {key:?} into {}", self.model.len() - 1);
    }

    fn fill(&mut self, fill: &Fill, context: &str) {
        let mut random = Rng::new(fill.seed);
        for _ in 0..fill.count {
            if self.model.len() >= self.effort.keys_max {
                break;
            }
            let score = match fill.scores {
                Scores::Range { low, width } => low.saturating_add(random.below(u64::from(width.max(1))) as i64),
                Scores::Extremes => EXTREMES[random.below(EXTREMES.len() as u64) as usize],
            };
            let reached_at = random.below(u64::from(fill.times.max(1)));
            let player = random.next_u64() as u32;
            self.insert(Key { score, reached_at, player }, context);
        }
    }

    fn update(&mut self, pick: u32, delta: i64, time: Time, context: &str) {
        let Some(old) = self.pick(pick) else { return };
        let reached_at = match time {
            Time::Keep => old.reached_at,
            Time::Now => NOW_BASE + self.step as u64,
            Time::At(at) => at,
        };
        let new = Key { score: old.score.saturating_add(delta), reached_at, ..old };
        if new != old && self.model.contains(&new) {
            return;
        }
        let rank_before = self.model_rank(&old);
        self.model.remove(&old);
        self.model.insert(new);
        let expect = (rank_before, self.model_rank(&new));
        assert_eq!(self.board.update(&old, new), expect, "{context}: update {old:?} to {new:?}");
    }

    fn check_rank(&self, key: &Key, context: &str) {
        let expect = self.model.contains(key).then(|| self.model_rank(key));
        assert_eq!(self.board.rank(key), expect, "{context}: rank of {key:?}");
        if let Some(rank) = expect {
            assert_eq!(self.board.get(rank), Some(*key), "{context}: get({rank})");
        }
    }

    fn check_window(&self, first: u32, count: u32, context: &str) {
        let len = self.model.len();
        let mut expect = self.model.iter().skip(first as usize - 1).take(count as usize);
        let mut seen = 0u64;
        self.board.for_each_from(first, count, |rank, key| {
            // Ranks counted in u64: a window may start at u32::MAX.
            let want = (u64::from(first) + seen, expect.next());
            let what = "(rank, key)";
            assert_eq!(
                (u64::from(rank), Some(key)),
                want,
                "{context}: for_each_from({first}, {count}) on {len} keys: {what}"
            );
            seen += 1;
        });
        let missing = expect.next();
        assert_eq!(missing, None, "{context}: for_each_from({first}, {count}) on {len} keys stopped after {seen}");
    }

    fn drain(&mut self, pick: u32, count: u32, context: &str) {
        if self.model.is_empty() {
            return;
        }
        let position = pick as usize % self.model.len();
        let doomed: Vec<Key> = self.model.iter().skip(position).take(count as usize).copied().collect();
        for key in doomed {
            self.model.remove(&key);
            assert_eq!(self.board.remove(&key), position as u32 + 1, "{context}: drain removes {key:?}");
        }
    }

    /// Compares the whole board with the reference: the walk of every rank, `rank` and
    /// `get` of each key (all of them if `every_key` or if there are at most
    /// `sample_keys`, else that many evenly spread) and of the key after it, the ranks
    /// past the end, and the invariants if `invariants`.
    pub fn check_whole(&self, context: &str, every_key: bool, invariants: bool) {
        let len = self.model.len() as u32;
        assert_eq!(self.board.len(), len, "{context}: len");
        self.model.check(context);
        self.check_window(1, u32::MAX, context);
        let stride = if every_key { 1 } else { self.model.len().div_ceil(self.effort.sample_keys).max(1) };
        for index in (self.step % stride..self.model.len()).step_by(stride) {
            let (rank, key) = (index as u32 + 1, &self.model.nth(index).expect("a key at every index below len"));
            assert_eq!(self.board.rank(key), Some(rank), "{context}: rank of {key:?}");
            assert_eq!(self.board.get(rank), Some(*key), "{context}: get({rank})");
            // The key just after it in the order: same score and time, next player.
            if let Some(player) = key.player.checked_add(1) {
                let next = Key { player, ..*key };
                let expect = self.model.contains(&next).then_some(rank + 1);
                assert_eq!(self.board.rank(&next), expect, "{context}: rank of {next:?}");
            }
        }
        for rank in [0, len + 1, len + 2, u32::MAX] {
            assert_eq!(self.board.get(rank), None, "{context}: get({rank}) of {len}");
        }
        for (first, count) in [(len.max(1), u32::MAX), (len + 1, u32::MAX), (u32::MAX, u32::MAX), (len / 2 + 1, 0)] {
            self.check_window(first, count, context);
        }
        if invariants {
            self.board.check_invariants();
        }
    }
}

/// The leaderboard property over arbitrary bytes, shared by `tests/fuzz_props.rs` and the
/// `leaderboard` fuzz target: the case the bytes encode runs on a board that reserves
/// before every insert when the first byte is odd, else on a plain one, with the
/// [`FUZZED`] effort. Panics on any disagreement with the reference.
pub fn check_leaderboard_bytes(bytes: &[u8]) {
    let (reserve_each_insert, ops) = match bytes.split_first() {
        Some((mode, rest)) => (mode & 1 == 1, decode_ops(rest)),
        None => (false, Vec::new()),
    };
    Runner::with_effort(reserve_each_insert, FUZZED).run(&ops);
}

/// The bytes [`check_leaderboard_bytes`] runs as `ops`, on a board that reserves before
/// every insert if `reserve_each_insert`.
pub fn encode_case(reserve_each_insert: bool, ops: &[Op]) -> Vec<u8> {
    let mut bytes = vec![u8::from(reserve_each_insert)];
    bytes.extend(encode_ops(ops));
    bytes
}

// ---------------------------------------------------------------------------------------
// The byte format (see the module doc).

// `tests/fuzz_props.rs` includes both byte formats, so this file is loaded twice there:
// each format extends its own copy of `Reader` with its own fields, which is intended.
#[allow(clippy::duplicate_mod)]
#[path = "bytes.rs"]
pub mod bytes;
use bytes::Reader;

impl Reader<'_> {
    fn i8(&mut self) -> i8 {
        self.u8() as i8
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }

    fn int(&mut self) -> i64 {
        match self.u8() % 3 {
            0 => i64::from(i16::from_le_bytes(self.take())),
            1 => EXTREMES[self.u8() as usize % EXTREMES.len()],
            _ => i64::from_le_bytes(self.take()),
        }
    }

    /// A count up to 4,095: the low 12 bits of a `u16` shifted right by its top 4.
    fn count(&mut self) -> u32 {
        let value = self.u16();
        u32::from(value & 0x0FFF) >> (value >> 12)
    }

    fn time(&mut self) -> u64 {
        match self.u8() % 2 {
            0 => u64::from(self.u8()),
            _ => self.u64(),
        }
    }

    fn key(&mut self) -> Key {
        Key { score: self.int(), reached_at: self.time(), player: self.u32() }
    }

    fn op(&mut self) -> Op {
        match self.u8() % OP_KINDS {
            0 => Op::Reserve(self.u32() % (RESERVE_MAX + 1)),
            1 => Op::Insert(self.key()),
            2 => {
                let count = self.count();
                let scores = match self.u8() % 2 {
                    0 => Scores::Range { low: self.int(), width: self.u32() },
                    _ => Scores::Extremes,
                };
                Op::Fill(Fill { count, scores, times: self.u32(), seed: self.u64() })
            }
            3 => Op::Remove { pick: self.u32() },
            4 => {
                let (pick, delta) = (self.u32(), self.int());
                let time = match self.u8() % 3 {
                    0 => Time::Keep,
                    1 => Time::Now,
                    _ => Time::At(self.time()),
                };
                Op::Update { pick, delta, time }
            }
            5 => Op::Rank(self.key()),
            6 => Op::Probe { pick: self.u32(), score: self.i8(), time: self.i8(), player: self.i8() },
            7 => Op::Get { pick: self.u32() },
            8 => Op::Window { pick: self.u32(), count: self.u32() },
            9 => Op::Drain { pick: self.u32(), count: self.count() },
            _ => Op::Check,
        }
    }
}

/// The operations `bytes` encode (see the module doc). Total: any bytes are a case.
pub fn decode_ops(bytes: &[u8]) -> Vec<Op> {
    let mut reader = Reader { bytes };
    let mut ops = Vec::new();
    while !reader.bytes.is_empty() && ops.len() < OPS_MAX {
        ops.push(reader.op());
    }
    ops
}

/// Writes fields in the layout [`Reader`] reads.
struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    /// A count up to 4,095, unshifted (see `Reader::count`).
    fn count(&mut self, value: u32, what: &str) {
        assert!(value <= 0x0FFF, "{what} {value} is above 4,095");
        self.bytes.extend_from_slice(&(value as u16).to_le_bytes());
    }

    fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    fn int(&mut self, value: i64) {
        if let Ok(small) = i16::try_from(value) {
            self.u8(0);
            self.bytes.extend_from_slice(&small.to_le_bytes());
        } else if let Some(index) = EXTREMES.iter().position(|&extreme| extreme == value) {
            self.u8(1);
            self.u8(index as u8);
        } else {
            self.u8(2);
            self.bytes.extend_from_slice(&value.to_le_bytes());
        }
    }

    fn time(&mut self, value: u64) {
        if let Ok(small) = u8::try_from(value) {
            self.u8(0);
            self.u8(small);
        } else {
            self.u8(1);
            self.u64(value);
        }
    }

    fn key(&mut self, key: &Key) {
        self.int(key.score);
        self.time(key.reached_at);
        self.u32(key.player);
    }

    fn op(&mut self, op: &Op) {
        let kind = match op {
            Op::Reserve(_) => 0,
            Op::Insert(_) => 1,
            Op::Fill(_) => 2,
            Op::Remove { .. } => 3,
            Op::Update { .. } => 4,
            Op::Rank(_) => 5,
            Op::Probe { .. } => 6,
            Op::Get { .. } => 7,
            Op::Window { .. } => 8,
            Op::Drain { .. } => 9,
            Op::Check => 10,
        };
        self.u8(kind);
        match *op {
            Op::Reserve(additional) => {
                assert!(additional <= RESERVE_MAX, "reserve {additional} is above {RESERVE_MAX}");
                self.u32(additional);
            }
            Op::Insert(key) | Op::Rank(key) => self.key(&key),
            Op::Fill(Fill { count, scores, times, seed }) => {
                self.count(count, "fill count");
                match scores {
                    Scores::Range { low, width } => {
                        self.u8(0);
                        self.int(low);
                        self.u32(width);
                    }
                    Scores::Extremes => self.u8(1),
                }
                self.u32(times);
                self.u64(seed);
            }
            Op::Remove { pick } | Op::Get { pick } => self.u32(pick),
            Op::Update { pick, delta, time } => {
                self.u32(pick);
                self.int(delta);
                match time {
                    Time::Keep => self.u8(0),
                    Time::Now => self.u8(1),
                    Time::At(at) => {
                        self.u8(2);
                        self.time(at);
                    }
                }
            }
            Op::Probe { pick, score, time, player } => {
                self.u32(pick);
                for offset in [score, time, player] {
                    self.u8(offset as u8);
                }
            }
            Op::Window { pick, count } => {
                self.u32(pick);
                self.u32(count);
            }
            Op::Drain { pick, count } => {
                self.u32(pick);
                self.count(count, "drain count");
            }
            Op::Check => {}
        }
    }
}

/// The bytes of `ops` in the format [`decode_ops`] reads. Panics if a count is above its
/// bound (the strategies never draw one).
pub fn encode_ops(ops: &[Op]) -> Vec<u8> {
    let mut writer = Writer { bytes: Vec::new() };
    for op in ops {
        writer.op(op);
    }
    writer.bytes
}
