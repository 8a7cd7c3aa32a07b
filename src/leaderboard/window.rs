//! The score window: the keys whose scores fall in one fixed range, found by arithmetic on
//! the score instead of by a search.
//!
//! A window covers `R` consecutive score values (a power of two) from `base` up. Score
//! value `s` has index `R - 1 - (s - base)`, so a lower index means a higher score and the
//! keys at indexes below `i` are exactly the keys in the range that rank above score
//! `base + R - 1 - i`. Two structures are addressed by that index:
//! - [`Counts`], a 16-way tree of prefix sums over per-index key counts, stored as one
//!   64-byte line of sixteen `u32` per node. "Keys at indexes below `i`" reads one line
//!   per level and an update adds to one line per level, with no search: which lines is
//!   arithmetic on `i`, so they can be asked for before the first is read.
//! - one [`Slot`] per index: up to [`SLOT_KEYS_MAX`] keys of that score, sorted, inline.
//!
//! A score value with more keys than a slot holds is *spilled*: all its keys live in the
//! leaderboard's B+tree instead (see `super`), and the window keeps only their count, in a
//! second `Counts`, so the tree keys that rank above any key in the range, and the slot keys
//! above any tree key, are counted without a descent. A spilled score goes back to its
//! slot when its last key leaves. The second `Counts` counts spilled keys rather than
//! slot keys so that an update between two slots, the common one, changes only the first.
//!
//! At a million keys an update in the window touches two slots and two count lines in
//! memory, all found from the two scores before anything is read, where the tree reads a
//! chain of branches and two leaves of sixteen lines each; see `perf/RESULTS.md`, section
//! "Leaderboard, sixth look".
//!
//! **Invariant**: for every index, a slot that is not spilled holds exactly `all.count(i)`
//! keys, sorted, and `spilled.count(i)` is 0; a spilled slot holds no key and
//! `spilled.count(i) == all.count(i) >= 1`. **Boundary**: the window knows nothing of the
//! tree; it reports where a score belongs ([`Place`]) and counts; `super::Leaderboard`
//! moves keys between them.

use std::alloc::{alloc_zeroed, handle_alloc_error, Layout};

use super::tree::prefetch;
use super::Key;

/// Keys one score value holds in its slot before it spills into the tree: five keys of 12
/// bytes and the slot's length fill one cache line. With a million keys over a million
/// score values (the bench: about one key per value) a value holds six keys or more in
/// 0.06% of cases; with two keys per slot it was 8% (three or more), and the updates that
/// then moved keys between slot and tree cost more than the slots saved.
pub(super) const SLOT_KEYS_MAX: usize = 5;

/// Lanes in one node of [`Counts`]: sixteen `u32` fill one 64-byte cache line.
const LANES: usize = 16;

/// `log2(LANES)`: the index bits one level of [`Counts`] consumes.
const LANE_BITS: u32 = 4;

/// Levels of [`Counts`], at most: `LANE_BITS * COUNTS_LEVELS_MAX` must cover
/// [`WINDOW_BITS_MAX`].
const COUNTS_LEVELS_MAX: usize = 8;

/// Smallest window, as `log2` of the score values covered: 8,192 values.
pub(super) const WINDOW_BITS_MIN: u32 = 13;

/// Largest window, as `log2` of the score values covered: 8 Mi values, twice
/// `PLAYERS_PER_HUNT_MAX`. At the largest the slots take 512 MiB of address space and the
/// counts 72 MiB, of which only the pages of scores ever held are touched (both are
/// allocated zeroed, so the rest stays unmapped).
pub(super) const WINDOW_BITS_MAX: u32 = 23;

const _: () = assert!(size_of::<Slot>() == 64);
const _: () = assert!(LANE_BITS as usize * COUNTS_LEVELS_MAX >= WINDOW_BITS_MAX as usize);
const _: () = assert!(1 << LANE_BITS == LANES);
const _: () = assert!(WINDOW_BITS_MIN >= LANE_BITS && WINDOW_BITS_MIN <= WINDOW_BITS_MAX);
const _: () = assert!((crate::constants::PLAYERS_PER_HUNT_MAX as u64) < (1u64 << WINDOW_BITS_MAX));

/// `MASK_FROM[lane][k]` is all ones if and only if `k >= lane`: the lanes an add at `lane`
/// changes, since every lane holds an inclusive prefix sum.
const MASK_FROM: [[u32; LANES]; LANES] = {
    let mut masks = [[0; LANES]; LANES];
    let mut lane = 0;
    while lane < LANES {
        let mut k = lane;
        while k < LANES {
            masks[lane][k] = u32::MAX;
            k += 1;
        }
        lane += 1;
    }
    masks
};

/// One node of [`Counts`]: lane `k` holds the sum of the counts of lanes `0..=k`.
type Line = [u32; LANES];

/// The sum of the lanes before `lane` in `line`: branch-free, one load.
#[inline(always)]
fn line_before(line: &Line, lane: usize) -> u32 {
    line[lane.wrapping_sub(1) & (LANES - 1)] & 0u32.wrapping_sub(u32::from(lane != 0))
}

/// The lanes of `line` with a count, as bits (lane 0 the lowest): one vector comparison
/// of the line with itself shifted by a lane.
#[inline(always)]
fn counted_lanes(line: &Line) -> u32 {
    let mut counted = 0;
    for lane in 0..LANES {
        let before = if lane == 0 { 0 } else { line[lane - 1] };
        counted |= u32::from(line[lane] != before) << lane;
    }
    counted
}

/// Adds `delta` (two's complement) to the count at `lane`, so to every prefix from it on.
#[inline(always)]
fn line_add(line: &mut Line, lane: usize, delta: u32) {
    let mask = &MASK_FROM[lane];
    for k in 0..LANES {
        line[k] = line[k].wrapping_add(delta & mask[k]);
    }
}

/// Moves one count from lane `from.1` of line `from.0` to lane `to.1` of line `to.0`.
#[inline(always)]
fn relocate_lines(lines: &mut [Line], from: (usize, usize), to: (usize, usize)) {
    if from.0 == to.0 {
        // One line: only the lanes between the two change.
        let (from_mask, to_mask) = (&MASK_FROM[from.1], &MASK_FROM[to.1]);
        let line = &mut lines[from.0];
        for k in 0..LANES {
            line[k] = line[k].wrapping_add(to_mask[k] & 1).wrapping_sub(from_mask[k] & 1);
        }
    } else {
        line_add(&mut lines[from.0], from.1, u32::MAX);
        line_add(&mut lines[to.0], to.1, 1);
    }
}

/// Per-index key counts with prefix sums: a tree of [`Line`]s, sixteen children per node,
/// stored level by level (the leaves, one lane per index, first). A node's lane holds the
/// running total of its children's totals, so the sum of all counts below an index is one
/// lane per level.
pub(super) struct Counts {
    lines: Vec<Line>,
    /// The first line of each level, leaves first.
    starts: [usize; COUNTS_LEVELS_MAX],
    levels: usize,
}

impl Counts {
    /// All zero, over `1 << bits` indexes.
    fn new(bits: u32) -> Counts {
        let mut starts = [0; COUNTS_LEVELS_MAX];
        let mut levels = 0;
        let mut total = 0;
        let mut level_bits = bits;
        loop {
            assert!(levels < COUNTS_LEVELS_MAX);
            let lines = 1usize << level_bits.saturating_sub(LANE_BITS);
            starts[levels] = total;
            total += lines;
            levels += 1;
            if lines == 1 {
                break;
            }
            level_bits -= LANE_BITS;
        }
        // `vec!` of zeros allocates zeroed memory, which the system maps lazily.
        Counts { lines: vec![[0; LANES]; total], starts, levels }
    }

    /// The line and lane that hold index `index` at `level`.
    #[inline(always)]
    fn slot(&self, level: usize, index: usize) -> (usize, usize) {
        let shift = LANE_BITS as usize * level;
        (self.starts[level] + (index >> (shift + LANE_BITS as usize)), (index >> shift) & (LANES - 1))
    }

    /// The sum of the counts at indexes below `index`.
    #[inline]
    pub(super) fn before(&self, index: usize) -> u32 {
        let mut sum = 0u32;
        for level in 0..self.levels {
            let (line, lane) = self.slot(level, index);
            sum = sum.wrapping_add(line_before(&self.lines[line], lane));
        }
        sum
    }

    /// The count at `index`.
    #[inline]
    pub(super) fn count(&self, index: usize) -> u32 {
        let (line, lane) = self.slot(0, index);
        let line = &self.lines[line];
        line[lane].wrapping_sub(line_before(line, lane))
    }

    /// The leaf line holding the count of `index` (and of the fifteen around it).
    #[inline]
    fn leaf_line(&self, index: usize) -> &Line {
        &self.lines[self.slot(0, index).0]
    }

    /// The sum of all counts.
    pub(super) fn total(&self) -> u32 {
        self.lines[self.starts[self.levels - 1]][LANES - 1]
    }

    /// Adds `delta` to the count at `index`; the count must stay within `u32`.
    #[inline]
    pub(super) fn add(&mut self, index: usize, delta: i32) {
        for level in 0..self.levels {
            let (line, lane) = self.slot(level, index);
            line_add(&mut self.lines[line], lane, delta as u32);
        }
    }

    /// The sums below `a` and below `b`, read together.
    #[inline]
    fn before_pair(&self, a: usize, b: usize) -> (u32, u32) {
        let (mut sum_a, mut sum_b) = (0u32, 0u32);
        for level in 0..self.levels {
            let ((line_a, lane_a), (line_b, lane_b)) = (self.slot(level, a), self.slot(level, b));
            sum_a = sum_a.wrapping_add(line_before(&self.lines[line_a], lane_a));
            sum_b = sum_b.wrapping_add(line_before(&self.lines[line_b], lane_b));
        }
        (sum_a, sum_b)
    }

    /// Moves one count from index `from` to index `to`. Only the levels below the one where
    /// both fall in the same lane change, since every total above covers both: for a score
    /// that grows by a few points, the lowest two or three.
    #[inline]
    fn relocate(&mut self, from: usize, to: usize) {
        for level in 0..self.levels {
            let (cell_from, cell_to) = (self.slot(level, from), self.slot(level, to));
            if cell_from == cell_to {
                return;
            }
            relocate_lines(&mut self.lines, cell_from, cell_to);
        }
    }

    /// [`Counts::relocate`] in two `Counts` of one size at once, sharing the walk.
    #[inline]
    fn relocate_in_both(first: &mut Counts, second: &mut Counts, from: usize, to: usize) {
        assert_eq!(first.levels, second.levels);
        for level in 0..first.levels {
            let (cell_from, cell_to) = (first.slot(level, from), first.slot(level, to));
            if cell_from == cell_to {
                return;
            }
            relocate_lines(&mut first.lines, cell_from, cell_to);
            relocate_lines(&mut second.lines, cell_from, cell_to);
        }
    }

    /// The index holding the key at 0-based position `position` of all counted keys in
    /// index order, and that key's position among the keys of its index. `position` must
    /// be below [`Counts::total`].
    pub(super) fn select(&self, position: u32) -> (usize, u32) {
        assert!(position < self.total());
        let mut remaining = position;
        let mut index = 0;
        for level in (0..self.levels).rev() {
            let line = &self.lines[self.starts[level] + index];
            let lane = line.iter().map(|&prefix| u32::from(prefix <= remaining)).sum::<u32>() as usize;
            assert!(lane < LANES);
            remaining -= line_before(line, lane);
            index = index * LANES + lane;
        }
        (index, remaining)
    }

    /// The lowest index above `index` with a count, if any: one line is read when it lies
    /// within sixteen indexes, one per level up and down otherwise.
    pub(super) fn next(&self, index: usize) -> Option<usize> {
        // Up: the first level whose line has a lane with a count after ours.
        let mut position = index;
        let mut level = 0;
        let found = loop {
            if level == self.levels {
                return None;
            }
            // `position` is the index at this level: its line and lane follow directly.
            let (line, lane) = (self.starts[level] + (position >> LANE_BITS), position & (LANES - 1));
            let line = &self.lines[line];
            // Lanes hold running totals, so the lanes after ours with no count hold ours.
            let unchanged = line[lane + 1..].iter().take_while(|&&prefix| prefix == line[lane]).count();
            if lane + 1 + unchanged < LANES {
                break (position & !(LANES - 1)) + lane + 1 + unchanged;
            }
            position >>= LANE_BITS;
            level += 1;
        };
        // Down: the first lane with a count, in each line below.
        let mut position = found;
        for level in (0..level).rev() {
            let line = &self.lines[self.starts[level] + position];
            let empty = line.iter().take_while(|&&prefix| prefix == 0).count();
            assert!(empty < LANES, "a count above an empty line");
            position = position * LANES + empty;
        }
        Some(position)
    }

    /// Asks for the lines an access to `index` reads from memory: the leaf and its parent
    /// (the levels above are few enough to stay cached).
    #[inline(always)]
    fn prefetch(&self, index: usize) {
        for level in 0..self.levels.min(2) {
            prefetch(&self.lines[self.slot(level, index).0], size_of::<Line>());
        }
    }

    /// Checks that every node's lanes are the running totals of its children.
    fn check(&self) {
        for level in 1..self.levels {
            let children = self.starts[level] - self.starts[level - 1];
            for child in 0..children {
                let (line, lane) = (self.starts[level] + child / LANES, child % LANES);
                let expect = self.lines[self.starts[level - 1] + child][LANES - 1];
                let total = self.lines[line][lane].wrapping_sub(line_before(&self.lines[line], lane));
                assert_eq!(total, expect, "count total differs from its children at level {level}");
            }
        }
        for line in &self.lines {
            // Most lines of a sparse window are all zero: one test for those (see `Window::check`).
            let zero = line.iter().fold(0, |any, &prefix| any | prefix) == 0;
            assert!(zero || line.windows(2).all(|pair| pair[0] <= pair[1]), "prefix sums decrease");
        }
    }
}

/// The keys of one score value, sorted by (`reached_at`, player), at most
/// [`SLOT_KEYS_MAX`]; or, if `spilled`, none (they are in the tree).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    // 40 + 20 + 2 bytes: one cache line (asserted below).
    times: [u64; SLOT_KEYS_MAX],
    players: [u32; SLOT_KEYS_MAX],
    len: u8,
    spilled: bool,
}

impl Slot {
    #[inline]
    fn member(&self, position: usize) -> (u64, u32) {
        (self.times[position], self.players[position])
    }

    /// The position `member` has or would have here, and whether it is present.
    #[inline]
    fn find(&self, member: (u64, u32)) -> (usize, bool) {
        let len = usize::from(self.len);
        let mut position = 0;
        let mut present = false;
        for k in 0..len {
            let other = self.member(k);
            position += usize::from(other < member);
            present |= other == member;
        }
        (position, present)
    }

    #[inline]
    fn insert(&mut self, position: usize, member: (u64, u32)) {
        let len = usize::from(self.len);
        assert!(len < SLOT_KEYS_MAX);
        assert!(position <= len);
        // A loop, not `copy_within`: at four keys a call to `memmove` costs more.
        for k in (position..len).rev() {
            self.times[k + 1] = self.times[k];
            self.players[k + 1] = self.players[k];
        }
        (self.times[position], self.players[position]) = member;
        self.len += 1;
    }

    #[inline]
    fn remove(&mut self, position: usize) {
        let len = usize::from(self.len);
        assert!(position < len);
        for k in position + 1..len {
            self.times[k - 1] = self.times[k];
            self.players[k - 1] = self.players[k];
        }
        self.len -= 1;
    }
}

/// Where a score belongs relative to a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    /// Above the range: such keys rank before every key in it.
    Above,
    /// In the range, at this index.
    In(usize),
    /// Below the range.
    Below,
}

/// The window; see the module documentation.
pub(super) struct Window {
    /// The lowest score covered.
    base: i64,
    bits: u32,
    /// Keys in the range per index, in slots and spilled.
    all: Counts,
    /// Keys in the range per index that are spilled into the tree.
    spilled: Counts,
    slots: Box<[Slot]>,
    /// Keys held in slots.
    inline_len: u32,
    /// The lowest and the highest index whose slot holds keys, if `inline_len > 0`. A
    /// spilled key outside them has all slot keys or none before it, which a board of a
    /// few crowded scores and a handful of leaders asks on every update.
    inline_first: usize,
    inline_last: usize,
}

impl Window {
    /// An empty window over the `1 << bits` score values from `base` up. The range must
    /// lie within `i64`.
    pub(super) fn new(base: i64, bits: u32) -> Window {
        assert!((WINDOW_BITS_MIN..=WINDOW_BITS_MAX).contains(&bits));
        assert!(base <= i64::MAX - ((1i64 << bits) - 1), "window range past i64::MAX");
        Window {
            base,
            bits,
            all: Counts::new(bits),
            spilled: Counts::new(bits),
            slots: zeroed_slots(1 << bits),
            inline_len: 0,
            inline_first: 0,
            inline_last: 0,
        }
    }

    /// `log2` of the score values covered.
    pub(super) fn bits(&self) -> u32 {
        self.bits
    }

    /// Keys held in slots (not spilled).
    pub(super) fn inline_len(&self) -> u32 {
        self.inline_len
    }

    /// Keys in the range, in slots and spilled.
    pub(super) fn range_len(&self) -> u32 {
        self.all.total()
    }

    /// Where `score` belongs.
    #[inline]
    pub(super) fn place(&self, score: i64) -> Place {
        // Exact because `base + R - 1` fits in `i64` (see `new`): the wrapped difference
        // is below `R` if and only if the true one is in `0..R`.
        let offset = score.wrapping_sub(self.base) as u64;
        let size = 1u64 << self.bits;
        if offset < size {
            Place::In((size - 1 - offset) as usize)
        } else if score > self.base {
            Place::Above
        } else {
            Place::Below
        }
    }

    /// The score of index `index`.
    fn score(&self, index: usize) -> i64 {
        self.base + ((1i64 << self.bits) - 1 - index as i64)
    }

    /// Returns true if and only if the keys of `index` are spilled into the tree.
    #[inline]
    pub(super) fn is_spilled(&self, index: usize) -> bool {
        self.slots[index].spilled
    }

    /// Returns true if and only if the slot of `index` holds as many keys as it can.
    #[inline]
    pub(super) fn is_full(&self, index: usize) -> bool {
        usize::from(self.slots[index].len) == SLOT_KEYS_MAX
    }

    /// Asks for the lines an access to `index` reads: its slot and its count lines.
    #[inline(always)]
    pub(super) fn prefetch(&self, index: usize) {
        prefetch(&self.slots[index], size_of::<Slot>());
        self.all.prefetch(index);
    }

    /// The rank among the range's keys (0-based) of `key`, which belongs in the slot of
    /// `index` (not spilled), if it is there.
    #[inline]
    pub(super) fn find(&self, index: usize, key: &Key) -> Option<u32> {
        let (position, present) = self.slots[index].find((key.reached_at, key.player));
        present.then(|| self.all.before(index) + position as u32)
    }

    /// Adds `key` to the slot of `index`, which must not be spilled or full, and returns its
    /// 0-based rank among the range's keys. Panics if it is present.
    #[inline]
    pub(super) fn insert(&mut self, index: usize, key: &Key) -> u32 {
        let slot = &mut self.slots[index];
        assert!(!slot.spilled);
        let member = (key.reached_at, key.player);
        let (position, present) = slot.find(member);
        assert!(!present, "Leaderboard: key already present: {key:?}");
        slot.insert(position, member);
        self.all.add(index, 1);
        self.inline_added(index);
        self.all.before(index) + position as u32
    }

    /// Removes `key` from the slot of `index`, which must not be spilled, and returns the
    /// 0-based rank it had among the range's keys. Panics if it is absent.
    #[inline]
    pub(super) fn remove(&mut self, index: usize, key: &Key) -> u32 {
        let slot = &mut self.slots[index];
        assert!(!slot.spilled);
        let (position, present) = slot.find((key.reached_at, key.player));
        assert!(present, "Leaderboard: key absent: {key:?}");
        slot.remove(position);
        let before = self.all.before(index) + position as u32;
        self.all.add(index, -1);
        self.inline_removed(index, 1);
        before
    }

    /// Moves `old`, in the slot of `index_old`, to `new` in the slot of `index_new`; neither
    /// slot may be spilled, and the new one may be full only if it is the old one. Returns
    /// the 0-based ranks among the range's keys of `old` before and of `new` after. Panics
    /// if `old` is absent or `new` is present (and differs from `old`).
    #[inline]
    pub(super) fn relocate(&mut self, index_old: usize, old: &Key, index_new: usize, new: &Key) -> (u32, u32) {
        let slot = &mut self.slots[index_old];
        assert!(!slot.spilled);
        let (position_old, present) = slot.find((old.reached_at, old.player));
        assert!(present, "Leaderboard: key absent: {old:?}");
        slot.remove(position_old);
        let slot = &mut self.slots[index_new];
        assert!(!slot.spilled);
        let member = (new.reached_at, new.player);
        let (position_new, present) = slot.find(member);
        assert!(!present, "Leaderboard: key already present: {new:?}");
        slot.insert(position_new, member);
        // Both sums are read before the count moves; the new key's then loses the old key
        // if it was counted below the new index.
        let (before_old, before_new) = self.all.before_pair(index_old, index_new);
        self.all.relocate(index_old, index_new);
        self.inline_added(index_new);
        self.inline_removed(index_old, 1);
        let before_new = before_new - u32::from(index_old < index_new);
        (before_old + position_old as u32, before_new + position_new as u32)
    }

    /// Empties the full slot of `index` into the tree: marks it spilled and returns its
    /// keys, which the caller inserts into the tree.
    pub(super) fn spill(&mut self, index: usize) -> [Key; SLOT_KEYS_MAX] {
        let score = self.score(index);
        let slot = &mut self.slots[index];
        assert!(!slot.spilled);
        assert_eq!(usize::from(slot.len), SLOT_KEYS_MAX);
        let keys = std::array::from_fn(|k| Key { score, reached_at: slot.times[k], player: slot.players[k] });
        slot.len = 0;
        slot.spilled = true;
        self.spilled.add(index, SLOT_KEYS_MAX as i32);
        self.inline_removed(index, SLOT_KEYS_MAX as u32);
        keys
    }

    /// Counts a key added to (`delta` 1) or removed from (`delta` -1) the tree at the spilled
    /// `index`. When the last one leaves, the slot takes keys again.
    #[inline]
    pub(super) fn spilled_add(&mut self, index: usize, delta: i32) {
        assert!(self.slots[index].spilled);
        self.all.add(index, delta);
        self.spilled.add(index, delta);
        if self.spilled.count(index) == 0 {
            self.slots[index].spilled = false;
        }
    }

    /// Counts a key added to the slot of `index`.
    #[inline]
    fn inline_added(&mut self, index: usize) {
        if self.inline_len == 0 {
            (self.inline_first, self.inline_last) = (index, index);
        } else {
            self.inline_first = self.inline_first.min(index);
            self.inline_last = self.inline_last.max(index);
        }
        self.inline_len += 1;
    }

    /// Counts `count` keys that left the slot of `index`, and finds the new lowest or highest
    /// index with slot keys if that slot was one and is now empty.
    #[inline]
    fn inline_removed(&mut self, index: usize, count: u32) {
        self.inline_len -= count;
        if self.inline_len == 0 || self.slots[index].len > 0 {
            return;
        }
        if index == self.inline_first {
            self.inline_first = self.select_inline(0);
        }
        if index == self.inline_last {
            self.inline_last = self.select_inline(self.inline_len - 1);
        }
    }

    /// The index of the slot key at 0-based position `position` among all slot keys in
    /// index order: [`Counts::select`] over the difference of the two counts.
    fn select_inline(&self, position: u32) -> usize {
        assert!(position < self.inline_len);
        let mut remaining = position;
        let mut index = 0;
        for level in (0..self.all.levels).rev() {
            let line = self.all.starts[level] + index;
            let (all, spilled) = (&self.all.lines[line], &self.spilled.lines[line]);
            let mut inline = [0u32; LANES];
            for k in 0..LANES {
                inline[k] = all[k] - spilled[k];
            }
            let lane = inline.iter().map(|&prefix| u32::from(prefix <= remaining)).sum::<u32>() as usize;
            assert!(lane < LANES);
            remaining -= line_before(&inline, lane);
            index = index * LANES + lane;
        }
        index
    }

    /// Keys in slots that rank before a key of the spilled `index`.
    #[inline]
    pub(super) fn inline_before(&self, index: usize) -> u32 {
        self.inline_before_bounded(index).unwrap_or_else(|| self.all.before(index) - self.spilled.before(index))
    }

    /// [`Window::inline_before`] where the bounds of the slot keys answer it alone.
    #[inline]
    fn inline_before_bounded(&self, index: usize) -> Option<u32> {
        if self.inline_len == 0 || index <= self.inline_first {
            Some(0)
        } else if index > self.inline_last {
            Some(self.inline_len)
        } else {
            None
        }
    }

    /// [`Window::inline_before`] of two spilled indexes, read together.
    #[inline]
    pub(super) fn inline_before_pair(&self, a: usize, b: usize) -> (u32, u32) {
        if let (Some(before_a), Some(before_b)) = (self.inline_before_bounded(a), self.inline_before_bounded(b)) {
            return (before_a, before_b);
        }
        let ((all_a, all_b), (spilled_a, spilled_b)) = (self.all.before_pair(a, b), self.spilled.before_pair(a, b));
        (all_a - spilled_a, all_b - spilled_b)
    }

    /// Counts a tree key that moved from the spilled index `from` to the spilled index `to`.
    #[inline]
    pub(super) fn spilled_relocate(&mut self, from: usize, to: usize) {
        assert!(self.slots[from].spilled);
        assert!(self.slots[to].spilled);
        Counts::relocate_in_both(&mut self.all, &mut self.spilled, from, to);
        if self.spilled.count(from) == 0 {
            self.slots[from].spilled = false;
        }
    }

    /// Spilled keys (tree keys in the range) that rank before the keys of `index`.
    pub(super) fn spilled_before(&self, index: usize) -> u32 {
        self.spilled.before(index)
    }

    /// Calls `f(index, offset, count)` for each index with keys (in its slot or spilled),
    /// in index order, from the one holding the range's key at 0-based rank `position`,
    /// while `f` returns true: `offset` is the first key's position among that index's
    /// keys (zero after the first call) and `count` how many of its keys follow from
    /// there. `position` must be below the range's key count.
    ///
    /// The walk reads a leaf count line once for its sixteen indexes and, before the first
    /// call for a line, asks for the slots of its indexes with keys, so their misses
    /// overlap rather than come one per score. Only between lines does it climb the
    /// levels, to the next line with keys.
    pub(super) fn for_each_group(&self, position: u32, mut f: impl FnMut(usize, u32, u32) -> bool) {
        let (mut index, mut offset) = self.all.select(position);
        loop {
            let first_lane = index % LANES;
            let line_start = index - first_lane;
            let line = self.all.leaf_line(index);
            let counted = counted_lanes(line) & (u32::MAX << first_lane);
            let mut ahead = counted;
            while ahead != 0 {
                prefetch(&self.slots[line_start + ahead.trailing_zeros() as usize], size_of::<Slot>());
                ahead &= ahead - 1;
            }
            let mut lanes = counted;
            while lanes != 0 {
                let lane = lanes.trailing_zeros() as usize;
                lanes &= lanes - 1;
                let count = line[lane].wrapping_sub(line_before(line, lane));
                if !f(line_start + lane, offset, count - offset) {
                    return;
                }
                offset = 0;
            }
            match self.all.next(line_start + LANES - 1) {
                Some(next) => index = next,
                None => return,
            }
        }
    }

    /// The key at `position` of the (not spilled) slot of `index`.
    pub(super) fn key_at(&self, index: usize, position: u32) -> Key {
        let slot = &self.slots[index];
        assert!(!slot.spilled);
        assert!(position < u32::from(slot.len));
        let (reached_at, player) = slot.member(position as usize);
        Key { score: self.score(index), reached_at, player }
    }

    /// Checks the invariant over every index, calling `spilled_keys(index, score)` for the
    /// number of tree keys with that score where the slot is spilled. Walks the whole
    /// window: for tests and debugging.
    pub(super) fn check(&self, mut spilled_keys: impl FnMut(i64) -> u32) {
        self.all.check();
        self.spilled.check();
        let mut inline_len = 0;
        let (mut inline_first, mut inline_last) = (None, None);
        let lane_counts = |line: &Line| -> Line { std::array::from_fn(|lane| line[lane] - line_before(line, lane)) };
        for (line, slots) in self.slots.chunks(LANES).enumerate() {
            // A line that counts no key is checked with one test rather than one per
            // slot: most lines of a sparse window are empty, and a fuzzing build traces
            // every comparison (per slot, this check took most of a fuzzing run).
            if self.all.lines[line][LANES - 1] == 0 {
                let held = slots.iter().fold(0, |held, slot| held | slot.len | u8::from(slot.spilled));
                assert_eq!(held, 0, "a slot holds keys its count line does not count");
                assert_eq!(self.spilled.lines[line][LANES - 1], 0, "spilled keys counted on a line without keys");
                continue;
            }
            // One leaf line holds the counts of sixteen indexes: read them together.
            let (all_counts, spilled_counts) =
                (lane_counts(&self.all.lines[line]), lane_counts(&self.spilled.lines[line]));
            for (lane, slot) in slots.iter().enumerate() {
                let index = line * LANES + lane;
                let (all, spilled) = (all_counts[lane], spilled_counts[lane]);
                if slot.spilled {
                    assert_eq!(slot.len, 0, "a spilled slot holds keys");
                    assert!(spilled >= 1, "a spilled slot without spilled keys");
                    assert_eq!(all, spilled, "a spilled slot's counts differ");
                    assert_eq!(spilled_keys(self.score(index)), spilled, "spilled count differs from the tree");
                } else {
                    assert_eq!(spilled, 0, "spilled keys counted on a slot that is not spilled");
                    assert_eq!(all, u32::from(slot.len), "a slot's count differs from its keys");
                    for k in 1..usize::from(slot.len) {
                        assert!(slot.member(k - 1) < slot.member(k), "a slot's keys are not sorted");
                    }
                    if slot.len > 0 {
                        inline_first.get_or_insert(index);
                        inline_last = Some(index);
                    }
                    inline_len += u32::from(slot.len);
                }
            }
        }
        assert_eq!(inline_len, self.inline_len, "inline key count differs from the slots");
        if self.inline_len > 0 {
            assert_eq!(inline_first, Some(self.inline_first), "the lowest index with slot keys is wrong");
            assert_eq!(inline_last, Some(self.inline_last), "the highest index with slot keys is wrong");
        }
    }
}

/// `count` empty slots in zeroed memory, so the pages of scores never held are never
/// touched: at the largest window that is 512 MiB of address space.
fn zeroed_slots(count: usize) -> Box<[Slot]> {
    let layout = Layout::array::<Slot>(count).expect("slot array size fits in isize");
    assert!(layout.size() > 0);
    // SAFETY: the layout has a non-zero size. An all-zero `Slot` is a valid, empty one
    // (integers zero, `spilled` false), so the zeroed memory holds `count` initialized
    // slots; `Box` frees it with the same layout, as `[Slot]` of `count` elements.
    unsafe {
        let pointer = alloc_zeroed(layout).cast::<Slot>();
        if pointer.is_null() {
            handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(pointer, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// A naive reference for [`Counts`]: a plain array of counts.
    fn check_counts_against_array(bits: u32, operations: u32, seed: u64) {
        let size = 1usize << bits;
        let mut counts = Counts::new(bits);
        let mut naive = vec![0u32; size];
        let mut random = Rng::new(seed);
        // Concentrate the indexes in a few places, so counts grow and fall back to zero.
        let hot: Vec<usize> = (0..8).map(|_| random.below(size as u64) as usize).collect();
        for step in 0..operations {
            let index = if step % 2 == 0 { hot[random.below(8) as usize] } else { random.below(size as u64) as usize };
            if naive[index] > 0 && random.below(3) == 0 {
                counts.add(index, -1);
                naive[index] -= 1;
            } else {
                counts.add(index, 1);
                naive[index] += 1;
            }
            let probe = random.below(size as u64) as usize;
            assert_eq!(counts.before(probe), naive[..probe].iter().sum::<u32>());
            assert_eq!(counts.count(probe), naive[probe]);
            let total: u32 = naive.iter().sum();
            assert_eq!(counts.total(), total);
            let next = (probe + 1..size).find(|&index| naive[index] > 0);
            assert_eq!(counts.next(probe), next, "next after {probe}");
            if total > 0 {
                let position = random.below(u64::from(total)) as u32;
                let (index, offset) = counts.select(position);
                let before: u32 = naive[..index].iter().sum();
                assert!(naive[index] > 0);
                assert_eq!(before + offset, position);
                assert!(offset < naive[index]);
            }
        }
        counts.check();
    }

    #[test]
    fn counts_agree_with_an_array() {
        check_counts_against_array(WINDOW_BITS_MIN, 20_000, 1);
        check_counts_against_array(WINDOW_BITS_MIN + 2, 5_000, 2);
        check_counts_against_array(17, 2_000, 3);
    }

    #[test]
    fn counts_edges() {
        let bits = WINDOW_BITS_MIN;
        let last = (1usize << bits) - 1;
        let mut counts = Counts::new(bits);
        assert_eq!(counts.total(), 0);
        assert_eq!(counts.before(0), 0);
        assert_eq!(counts.before(last), 0);
        counts.add(last, 3);
        counts.add(0, 2);
        assert_eq!(counts.before(last), 2);
        assert_eq!(counts.before(1), 2);
        assert_eq!(counts.total(), 5);
        assert_eq!(counts.select(0), (0, 0));
        assert_eq!(counts.select(1), (0, 1));
        assert_eq!(counts.select(2), (last, 0));
        assert_eq!(counts.select(4), (last, 2));
        counts.add(0, -2);
        assert_eq!(counts.select(0), (last, 0));
        counts.check();
    }

    #[test]
    fn places_at_the_edges_of_the_range() {
        let window = Window::new(-100, WINDOW_BITS_MIN);
        let top = -100 + (1 << WINDOW_BITS_MIN) - 1;
        assert_eq!(window.place(-100), Place::In((1 << WINDOW_BITS_MIN) - 1));
        assert_eq!(window.place(top), Place::In(0));
        assert_eq!(window.place(top + 1), Place::Above);
        assert_eq!(window.place(-101), Place::Below);
        assert_eq!(window.place(i64::MAX), Place::Above);
        assert_eq!(window.place(i64::MIN), Place::Below);
        assert_eq!(window.score(0), top);
        let highest = Window::new(i64::MAX - ((1 << WINDOW_BITS_MIN) - 1), WINDOW_BITS_MIN);
        assert_eq!(highest.place(i64::MAX), Place::In(0));
        assert_eq!(highest.place(i64::MIN), Place::Below);
        let lowest = Window::new(i64::MIN, WINDOW_BITS_MIN);
        assert_eq!(lowest.place(i64::MIN), Place::In((1 << WINDOW_BITS_MIN) - 1));
        assert_eq!(lowest.place(i64::MAX), Place::Above);
        assert_eq!(lowest.place(0), Place::Above);
    }

    /// `check` finds a slot key no count line counts (in a line otherwise empty, which it
    /// checks with one test), a count no slot holds, and wrong first and last indexes.
    #[test]
    fn the_check_finds_what_the_counts_and_slots_disagree_on() {
        use std::panic::{catch_unwind, AssertUnwindSafe};
        let (low, high) = (100usize, 3_000usize);
        // Two keys, far apart: every other line is empty.
        let sound = || {
            let mut window = Window::new(0, WINDOW_BITS_MIN);
            for (player, index) in [(1, low), (2, high)] {
                window.insert(index, &Key { score: window.score(index), reached_at: 7, player });
            }
            window
        };
        sound().check(|_| 0);
        // Each corruption on a window of its own.
        let fails = |what: &str, corrupt: &dyn Fn(&mut Window)| {
            let mut broken = sound();
            corrupt(&mut broken);
            let failed = catch_unwind(AssertUnwindSafe(|| broken.check(|_| 0))).is_err();
            assert!(failed, "the check missed {what}");
        };
        let empty_line = 40 * LANES + 3;
        fails("a key in a slot of an uncounted line", &|window| window.slots[empty_line].len = 1);
        fails("a spilled slot in an uncounted line", &|window| window.slots[empty_line].spilled = true);
        fails("a key in an uncounted slot of a counted line", &|window| window.slots[low + 1].len = 1);
        fails("a count without its key", &|window| window.slots[low].len = 0);
        fails("a wrong first index", &|window| window.inline_first = low + 1);
        fails("a wrong last index", &|window| window.inline_last = high - 1);
    }
}
