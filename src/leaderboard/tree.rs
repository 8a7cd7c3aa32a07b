//! The leaderboard's general structure: a counted B+tree over packed keys, which holds
//! every key the score window does not (see `super`): scores outside the window's range,
//! score values with more keys than a window slot holds, and every key of a board too
//! small to have a window.
//!
//! Keys live sorted in leaves; every branch keeps, for each child, a lower-bound separator
//! and the number of keys below that child, so a descent by key sums the counts to its
//! left into a rank, and a descent by rank subtracts counts to find a leaf. Leaves are
//! linked left to right so a window of ranks is read by one descent and a walk. Nodes live
//! in two arenas (`Vec`s indexed by `u32`, one for leaves and one for branches) with
//! intrusive free lists, because the engine must not allocate per event: [`Tree::reserve`]
//! sizes both arenas for the worst-case node count of a key count, after which inserts up
//! to that count and any number of updates and removes only recycle nodes. Every non-root
//! node stays at least half full (removal borrows from or merges with a sibling), which is
//! what bounds that worst case.
//!
//! Keys are stored packed (`Packed`): the score is mapped to an order-preserving, inverted
//! `u64`, so a key compares as a plain `(u64, u64, u32)` tuple with no sign or direction
//! logic in the search loops. In [`Tree::update`], when the new key still belongs in the
//! same leaf it is shifted in place without touching any branch, since no subtree count
//! changes. Otherwise one descent follows both the old and the new key (they part low in
//! the tree, usually at the last branch), both leaves are prefetched together so their
//! cache misses overlap, and both ranks come from that descent's prefix sums; the key then
//! moves between the two leaves with counts adjusted along the two paths, and no second
//! descent from the root.
//!
//! **Invariant**: the keys are unique; every count equals the keys below its child; every
//! non-root leaf holds at least half its capacity and every non-root branch at least half
//! its children. **Boundary**: callers pass whole keys (they remember each player's current
//! key); inserting a present key or removing an absent one is a caller bug and panics.

use std::fmt;
use std::mem::size_of;
use std::ops::Range;

use super::Key;

/// Keys one leaf holds, at most. An update at a million keys costs the cache misses on
/// the old and the new leaf, which it prefetches whole and together (see `Tree::update`),
/// so a smaller leaf fetches fewer lines; a larger one keeps more updates inside one leaf
/// and the branches smaller. With `benches/leaderboard.rs` (CPU time, one run each on a
/// loaded machine), at a million keys leaves of 32, 48 and 64 keys updated at about 1.6,
/// 1.6 and 1.4-1.5 M/s; at 1k and 100k keys 48 beat 32 by 8% and 27%. 48 keys keep a
/// leaf to 16 cache lines.
pub(super) const LEAF_KEYS_MAX: usize = 48;

/// Children one branch holds, at most. Chosen with `LEAF_KEYS_MAX` (see there): with 32,
/// a branch is about 1 KiB and the branches over a million keys (about 1 MiB) fit in L2.
pub(super) const BRANCH_CHILDREN_MAX: usize = 32;

/// Branch levels a descent may record, at most. The smallest node sizes used (4 keys, 4
/// children, in tests) halve at worst per level, so 2^32 keys need fewer than 32 levels.
const PATH_DEPTH_MAX: usize = 32;

/// The arena index that means "no node": the end of the leaf chain and of free lists.
const NODE_NONE: u32 = u32::MAX;

/// A key in the tree's storage form: comparing two `Packed` values field by field gives
/// the same order as comparing the [`Key`]s they came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Packed {
    /// The score with its sign bit flipped (so unsigned order is signed order), then
    /// inverted (so higher scores sort first).
    score_descending: u64,
    reached_at: u64,
    player: u32,
}

impl Packed {
    const ZERO: Packed = Packed { score_descending: 0, reached_at: 0, player: 0 };

    #[inline]
    pub(super) fn from_key(key: &Key) -> Packed {
        let score_descending = !((key.score as u64) ^ (1 << 63));
        Packed { score_descending, reached_at: key.reached_at, player: key.player }
    }

    #[inline]
    fn key(&self) -> Key {
        let score = ((!self.score_descending) ^ (1 << 63)) as i64;
        Key { score, reached_at: self.reached_at, player: self.player }
    }
}

/// `N` sorted keys stored column by column. A search reads only the score column while
/// scores differ, and reads all of it with independent loads (a branch-free count rather
/// than a binary search), so the cache lines of a cold node are fetched in parallel.
#[derive(Clone)]
#[repr(C)]
struct Columns<const N: usize> {
    scores: [u64; N],
    times: [u64; N],
    players: [u32; N],
}

impl<const N: usize> Columns<N> {
    fn zeroed() -> Columns<N> {
        Columns { scores: [0; N], times: [0; N], players: [0; N] }
    }

    #[inline]
    fn get(&self, index: usize) -> Packed {
        Packed { score_descending: self.scores[index], reached_at: self.times[index], player: self.players[index] }
    }

    #[inline]
    fn set(&mut self, index: usize, key: Packed) {
        self.scores[index] = key.score_descending;
        self.times[index] = key.reached_at;
        self.players[index] = key.player;
    }

    /// Moves the keys in `source` so the first lands at `destination`.
    #[inline]
    fn shift(&mut self, source: Range<usize>, destination: usize) {
        self.scores.copy_within(source.clone(), destination);
        self.times.copy_within(source.clone(), destination);
        self.players.copy_within(source, destination);
    }

    /// Copies `other`'s keys in `source` here, the first landing at `destination`.
    fn copy_from(&mut self, destination: usize, other: &Columns<N>, source: Range<usize>) {
        let end = destination + source.len();
        self.scores[destination..end].copy_from_slice(&other.scores[source.clone()]);
        self.times[destination..end].copy_from_slice(&other.times[source.clone()]);
        self.players[destination..end].copy_from_slice(&other.players[source]);
    }

    /// Counts the keys in `start..end` below `key`, or at most `key` if `inclusive`.
    #[inline]
    fn count_before(&self, start: usize, end: usize, key: &Packed, inclusive: bool) -> usize {
        let mut scores_below = 0;
        for &score in &self.scores[start..end] {
            scores_below += usize::from(score < key.score_descending);
        }
        // Keys sharing the score form one run sorted by (time, player); it is usually
        // empty or one key long, so it is walked rather than counted.
        let tie = (key.reached_at, key.player);
        let mut index = start + scores_below;
        while index < end && self.scores[index] == key.score_descending {
            let other = (self.times[index], self.players[index]);
            if other > tie || (!inclusive && other == tie) {
                break;
            }
            index += 1;
        }
        index - start
    }
}

/// A leaf: sorted keys and the link to the next leaf. A free leaf uses `next` as the
/// free-list link. The layout is fixed so the length shares a cache line with the first
/// scores a search reads; a cold leaf then costs one round trip to memory, not two.
#[derive(Clone)]
#[repr(C, align(64))]
struct Leaf<const L: usize> {
    len: u32,
    next: u32,
    keys: Columns<L>,
}

impl<const L: usize> Leaf<L> {
    fn empty() -> Leaf<L> {
        Leaf { keys: Columns::zeroed(), len: 0, next: NODE_NONE }
    }

    /// The index `key` has or would have here, and whether it is present.
    #[inline]
    fn find(&self, key: &Packed) -> (usize, bool) {
        let len = self.len as usize;
        let index = self.keys.count_before(0, len, key, false);
        (index, index < len && self.keys.get(index) == *key)
    }

    fn insert(&mut self, index: usize, key: Packed) {
        let len = self.len as usize;
        assert!(len < L, "leaf overflow");
        assert!(index <= len);
        self.keys.shift(index..len, index + 1);
        self.keys.set(index, key);
        self.len += 1;
    }

    /// Replaces the key at `position` by `key`, which must belong in this leaf and be
    /// absent, shifting the keys between; returns the index `key` lands at. No count above
    /// the leaf changes.
    fn move_within(&mut self, position: usize, key: Packed) -> usize {
        let len = self.len as usize;
        assert!(position < len);
        let (target, present) = self.find(&key);
        assert!(!present, "Leaderboard::update: new key already present: {:?}", key.key());
        let position_after = if target > position {
            self.keys.shift(position + 1..target, position);
            target - 1
        } else {
            self.keys.shift(target..position, target + 1);
            target
        };
        assert!(position_after < len);
        self.keys.set(position_after, key);
        position_after
    }

    fn remove(&mut self, index: usize) -> Packed {
        let len = self.len as usize;
        assert!(index < len);
        let key = self.keys.get(index);
        self.keys.shift(index + 1..len, index);
        self.len -= 1;
        key
    }
}

/// A branch: `children[i]` holds `counts[i]` keys, all at least `separators[i]` and below
/// `separators[i + 1]`. `separators[0]` is not consulted by searches (the branch's own
/// lower bound lives in its parent) but carries the bound when a split pushes it up. A
/// free branch uses `children[0]` as the free-list link.
///
/// The layout is fixed so that the fields a descent reads (the length, the counts, the
/// children and the separators' score column) come first and are contiguous, in
/// [`Branch::DESCENT_BYTES`]; the time and player columns, read only when scores tie,
/// follow. A descent can then prefetch exactly the lines it will touch.
#[derive(Clone)]
#[repr(C, align(64))]
struct Branch<const F: usize> {
    len: u32,
    counts: [u32; F],
    children: [u32; F],
    separators: Columns<F>,
}

impl<const F: usize> Branch<F> {
    /// Bytes from the start of a branch that a descent without score ties reads.
    const DESCENT_BYTES: usize = std::mem::offset_of!(Branch<F>, separators) + std::mem::size_of::<[u64; F]>();

    fn empty() -> Branch<F> {
        Branch { separators: Columns::zeroed(), counts: [0; F], children: [NODE_NONE; F], len: 0 }
    }

    /// The slot of the child whose range holds `key`: the number of separators after the
    /// first that are at most `key`.
    #[inline]
    fn slot_for(&self, key: &Packed) -> usize {
        self.separators.count_before(1, self.len as usize, key, true)
    }

    /// Returns true if and only if `key` lies in the range of the child at `slot`: two
    /// comparisons, where [`Branch::slot_for`] reads the whole separator column.
    #[inline]
    fn slot_holds(&self, slot: usize, key: &Packed) -> bool {
        let above_lower = slot == 0 || *key >= self.separators.get(slot);
        let below_upper = slot + 1 >= self.len as usize || *key < self.separators.get(slot + 1);
        above_lower && below_upper
    }

    fn count_total(&self) -> u32 {
        self.counts[..self.len as usize].iter().sum()
    }

    fn insert(&mut self, slot: usize, separator: Packed, child: u32, count: u32) {
        let len = self.len as usize;
        assert!(len < F, "branch overflow");
        assert!(slot > 0);
        self.separators.shift(slot..len, slot + 1);
        self.counts.copy_within(slot..len, slot + 1);
        self.children.copy_within(slot..len, slot + 1);
        self.separators.set(slot, separator);
        self.counts[slot] = count;
        self.children[slot] = child;
        self.len += 1;
    }

    fn remove(&mut self, slot: usize) -> (Packed, u32, u32) {
        let len = self.len as usize;
        assert!(slot < len);
        let removed = (self.separators.get(slot), self.children[slot], self.counts[slot]);
        self.separators.shift(slot + 1..len, slot);
        self.counts.copy_within(slot + 1..len, slot);
        self.children.copy_within(slot + 1..len, slot);
        self.len -= 1;
        removed
    }
}

/// Bytes of a cache line, the unit [`prefetch_leaf`] steps by.
const CACHE_LINE_BYTES: usize = 64;

/// Asks the processor to start loading the first `bytes` of `node` (a leaf or a branch),
/// so that the misses on its cache lines, and on two nodes, overlap rather than queue
/// behind the loads that need them. A hint only: it changes no result, and on other
/// targets it does nothing.
#[inline(always)]
pub(super) fn prefetch<T>(node: &T, bytes: usize) {
    assert!(bytes <= std::mem::size_of::<T>());
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = (node as *const T).cast::<i8>();
        let mut offset = 0;
        while offset < bytes {
            // SAFETY: a prefetch never faults and reads nothing the program sees; the
            // address lies inside `node`, so computing it stays within one allocation.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(offset)) };
            offset += CACHE_LINE_BYTES;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (node, bytes);
}

/// The branches a descent passed through, root first, and the child slot taken in each.
struct Path {
    nodes: [u32; PATH_DEPTH_MAX],
    slots: [u32; PATH_DEPTH_MAX],
    depth: usize,
}

impl Path {
    fn new() -> Path {
        Path { nodes: [NODE_NONE; PATH_DEPTH_MAX], slots: [0; PATH_DEPTH_MAX], depth: 0 }
    }
}

/// Two distinct elements of a slice, both mutable.
fn pair_mut<T>(items: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert!(a != b);
    if a < b {
        let (low, high) = items.split_at_mut(b);
        (&mut low[a], &mut high[0])
    } else {
        let (low, high) = items.split_at_mut(a);
        (&mut high[0], &mut low[b])
    }
}

/// The counted B+tree, generic over its node sizes so tests can shrink them to build deep
/// trees from few keys. `L` is keys per leaf and `F` children per branch; both even.
pub(super) struct Tree<const L: usize, const F: usize> {
    leaves: Vec<Leaf<L>>,
    branches: Vec<Branch<F>>,
    leaf_free: u32,
    branch_free: u32,
    root: u32,
    /// Branch levels above the leaves; 0 means the root is a leaf.
    height: u32,
    pub(super) len: u32,
}

impl<const L: usize, const F: usize> Tree<L, F> {
    const LEAF_KEYS_MIN: usize = L / 2;
    const BRANCH_CHILDREN_MIN: usize = F / 2;

    pub(super) fn new() -> Tree<L, F> {
        const { assert!(L >= 4 && L.is_multiple_of(2)) };
        const { assert!(F >= 4 && F.is_multiple_of(2)) };
        let mut tree = Tree {
            // Room for the root alone: `Vec` would otherwise make room for four leaves at
            // its first push, 4 KiB in every empty hunt.
            leaves: Vec::with_capacity(1),
            branches: Vec::new(),
            leaf_free: NODE_NONE,
            branch_free: NODE_NONE,
            root: NODE_NONE,
            height: 0,
            len: 0,
        };
        tree.root = tree.leaf_allocate();
        tree
    }

    /// Nodes (leaves, branches) a tree of `key_count` keys may hold at once, at most. Every
    /// non-root leaf holds at least `L / 2` keys and every non-root branch at least `F / 2`
    /// children, so each level has at most the level below divided by that minimum, and one
    /// node where that quotient is below one (the root). A split allocates only nodes that
    /// belong to the tree after the insert, so no extra node is ever in flight.
    fn nodes_max(key_count: usize) -> (usize, usize) {
        let leaves_max = (key_count / Self::LEAF_KEYS_MIN).max(1);
        let mut branches_max = 0;
        let mut level_max = leaves_max;
        while level_max > 1 {
            level_max = (level_max / Self::BRANCH_CHILDREN_MIN).max(1);
            branches_max += level_max;
        }
        (leaves_max, branches_max)
    }

    /// Capacities of the two arenas, leaves and branches: a test checks they do not grow.
    #[cfg(test)]
    pub(super) fn capacities(&self) -> (usize, usize) {
        (self.leaves.capacity(), self.branches.capacity())
    }

    pub(super) fn reserve(&mut self, additional: usize) {
        let key_count = self.len as usize + additional;
        assert!(key_count < u32::MAX as usize, "leaderboard key count exceeds u32");
        let (leaves_max, branches_max) = Self::nodes_max(key_count);
        // Amortized growth, not `reserve_exact`: a hunt reserves one key at each join, and
        // an exact reserve would then reallocate the arenas every few dozen joins.
        self.leaves.reserve(leaves_max.saturating_sub(self.leaves.len()));
        self.branches.reserve(branches_max.saturating_sub(self.branches.len()));
    }

    fn leaf_allocate(&mut self) -> u32 {
        if self.leaf_free == NODE_NONE {
            let index = self.leaves.len();
            assert!(index < NODE_NONE as usize);
            self.leaves.push(Leaf::empty());
            return index as u32;
        }
        let index = self.leaf_free;
        let leaf = &mut self.leaves[index as usize];
        self.leaf_free = leaf.next;
        leaf.len = 0;
        leaf.next = NODE_NONE;
        index
    }

    fn leaf_release(&mut self, index: u32) {
        let leaf = &mut self.leaves[index as usize];
        leaf.len = 0;
        leaf.next = self.leaf_free;
        self.leaf_free = index;
    }

    fn branch_allocate(&mut self) -> u32 {
        if self.branch_free == NODE_NONE {
            let index = self.branches.len();
            assert!(index < NODE_NONE as usize);
            self.branches.push(Branch::empty());
            return index as u32;
        }
        let index = self.branch_free;
        let branch = &mut self.branches[index as usize];
        self.branch_free = branch.children[0];
        branch.len = 0;
        index
    }

    fn branch_release(&mut self, index: u32) {
        let branch = &mut self.branches[index as usize];
        branch.len = 0;
        branch.children[0] = self.branch_free;
        self.branch_free = index;
    }

    /// Descends to the leaf whose range holds `key`, recording the path. Returns the leaf
    /// and the number of keys in all leaves to its left.
    #[inline]
    fn descend(&self, key: &Packed, path: &mut Path) -> (u32, u32) {
        let mut node = self.root;
        let mut keys_before = 0;
        let height = self.height as usize;
        assert!(height <= PATH_DEPTH_MAX);
        for level in 0..height {
            let branch = &self.branches[node as usize];
            let slot = branch.slot_for(key);
            keys_before += branch.counts[..slot].iter().sum::<u32>();
            path.nodes[level] = node;
            path.slots[level] = slot as u32;
            node = branch.children[slot];
        }
        path.depth = height;
        (node, keys_before)
    }

    /// Descends to the key with 0-based `index`; returns its leaf and position there.
    fn descend_index(&self, index: u32) -> (u32, usize) {
        assert!(index < self.len);
        let mut node = self.root;
        let mut index = index;
        for _ in 0..self.height {
            let branch = &self.branches[node as usize];
            let mut slot = 0;
            while index >= branch.counts[slot] {
                index -= branch.counts[slot];
                slot += 1;
            }
            assert!(slot < branch.len as usize);
            node = branch.children[slot];
        }
        (node, index as usize)
    }

    fn counts_add(&mut self, path: &Path, levels: usize, delta: i32) {
        for level in 0..levels {
            let branch = &mut self.branches[path.nodes[level] as usize];
            let count = &mut branch.counts[path.slots[level] as usize];
            *count = count.wrapping_add_signed(delta);
        }
    }

    pub(super) fn rank(&self, key: &Packed) -> Option<u32> {
        let mut path = Path::new();
        let (leaf, keys_before) = self.descend(key, &mut path);
        let (position, present) = self.leaves[leaf as usize].find(key);
        present.then_some(keys_before + position as u32 + 1)
    }

    pub(super) fn insert(&mut self, key: Packed) -> u32 {
        let mut path = Path::new();
        let (leaf, keys_before) = self.descend(&key, &mut path);
        let (position, present) = self.leaves[leaf as usize].find(&key);
        assert!(!present, "Leaderboard::insert: key already present: {:?}", key.key());
        assert!(self.len < u32::MAX - 1, "leaderboard full");
        self.insert_at(&path, leaf, position, key);
        self.len += 1;
        keys_before + position as u32 + 1
    }

    fn insert_at(&mut self, path: &Path, leaf: u32, position: usize, key: Packed) {
        if (self.leaves[leaf as usize].len as usize) < L {
            self.leaves[leaf as usize].insert(position, key);
            self.counts_add(path, path.depth, 1);
            return;
        }
        // The leaf is full: move its upper half to a new right sibling, then insert into
        // whichever half the key belongs to. Both halves end with at least L / 2 keys.
        let right = self.leaf_allocate();
        let (left_leaf, right_leaf) = pair_mut(&mut self.leaves, leaf as usize, right as usize);
        let half = L / 2;
        right_leaf.keys.copy_from(0, &left_leaf.keys, half..L);
        right_leaf.len = (L - half) as u32;
        left_leaf.len = half as u32;
        right_leaf.next = left_leaf.next;
        left_leaf.next = right;
        if position <= half {
            left_leaf.insert(position, key);
        } else {
            right_leaf.insert(position - half, key);
        }
        let split =
            Split { separator: right_leaf.keys.get(0), right, left_count: left_leaf.len, right_count: right_leaf.len };
        self.split_propagate(path, split);
    }

    /// Hangs the new right half of a split child into the branches above it, splitting
    /// them in turn while they are full, and adds the inserted key to every count above.
    fn split_propagate(&mut self, path: &Path, split: Split) {
        let mut split = split;
        let mut level = path.depth;
        while level > 0 {
            level -= 1;
            let node = path.nodes[level];
            let slot = path.slots[level] as usize;
            let branch = &mut self.branches[node as usize];
            branch.counts[slot] = split.left_count;
            if (branch.len as usize) < F {
                branch.insert(slot + 1, split.separator, split.right, split.right_count);
                self.counts_add(path, level, 1);
                return;
            }
            split = self.branch_split(node, slot + 1, split);
        }
        // The root itself split: grow the tree by one level.
        assert!((self.height as usize) < PATH_DEPTH_MAX, "leaderboard tree too deep");
        let root = self.branch_allocate();
        let branch = &mut self.branches[root as usize];
        branch.separators.set(0, Packed::ZERO);
        branch.children[0] = self.root;
        branch.counts[0] = split.left_count;
        branch.separators.set(1, split.separator);
        branch.children[1] = split.right;
        branch.counts[1] = split.right_count;
        branch.len = 2;
        self.root = root;
        self.height += 1;
    }

    /// Splits the full branch `node` while inserting the child `split` at `slot`.
    fn branch_split(&mut self, node: u32, slot: usize, split: Split) -> Split {
        let right = self.branch_allocate();
        let (left_branch, right_branch) = pair_mut(&mut self.branches, node as usize, right as usize);
        let half = F / 2;
        right_branch.separators.copy_from(0, &left_branch.separators, half..F);
        right_branch.counts[..F - half].copy_from_slice(&left_branch.counts[half..]);
        right_branch.children[..F - half].copy_from_slice(&left_branch.children[half..]);
        right_branch.len = (F - half) as u32;
        left_branch.len = half as u32;
        if slot <= half {
            left_branch.insert(slot, split.separator, split.right, split.right_count);
        } else {
            right_branch.insert(slot - half, split.separator, split.right, split.right_count);
        }
        Split {
            separator: right_branch.separators.get(0),
            right,
            left_count: left_branch.count_total(),
            right_count: right_branch.count_total(),
        }
    }

    pub(super) fn remove(&mut self, key: &Packed) -> u32 {
        let mut path = Path::new();
        let (leaf, keys_before) = self.descend(key, &mut path);
        let (position, present) = self.leaves[leaf as usize].find(key);
        assert!(present, "Leaderboard::remove: key absent: {:?}", key.key());
        self.remove_at(&path, leaf, position);
        keys_before + position as u32 + 1
    }

    fn remove_at(&mut self, path: &Path, leaf: u32, position: usize) {
        self.leaves[leaf as usize].remove(position);
        self.counts_add(path, path.depth, -1);
        self.len -= 1;
        if path.depth == 0 || self.leaves[leaf as usize].len as usize >= Self::LEAF_KEYS_MIN {
            return;
        }
        let mut level = path.depth - 1;
        let mut merged = self.leaf_rebalance(path.nodes[level], path.slots[level] as usize);
        while merged {
            let node = path.nodes[level];
            let children = self.branches[node as usize].len as usize;
            if level == 0 {
                // The root branch may have as few as two children; with one left, its only
                // child becomes the root and the tree shrinks by a level.
                if children == 1 {
                    self.root = self.branches[node as usize].children[0];
                    self.height -= 1;
                    self.branch_release(node);
                }
                return;
            }
            if children >= Self::BRANCH_CHILDREN_MIN {
                return;
            }
            level -= 1;
            merged = self.branch_rebalance(path.nodes[level], path.slots[level] as usize);
        }
    }

    /// Refills the underfull leaf at `slot` of `parent` from a sibling, or merges the two.
    /// Returns true if and only if they merged (so `parent` lost a child).
    fn leaf_rebalance(&mut self, parent: u32, slot: usize) -> bool {
        let branch = &self.branches[parent as usize];
        assert!(branch.len >= 2);
        let left_slot = if slot > 0 { slot - 1 } else { slot };
        let left = branch.children[left_slot];
        let right = branch.children[left_slot + 1];
        let (left_leaf, right_leaf) = pair_mut(&mut self.leaves, left as usize, right as usize);
        let branch = &mut self.branches[parent as usize];
        let total = (left_leaf.len + right_leaf.len) as usize;
        if total >= 2 * Self::LEAF_KEYS_MIN {
            // The sibling can spare a key: move the one nearest the boundary.
            if left_leaf.len > right_leaf.len {
                let key = left_leaf.remove(left_leaf.len as usize - 1);
                right_leaf.insert(0, key);
            } else {
                let key = right_leaf.remove(0);
                left_leaf.insert(left_leaf.len as usize, key);
            }
            branch.separators.set(left_slot + 1, right_leaf.keys.get(0));
            branch.counts[left_slot] = left_leaf.len;
            branch.counts[left_slot + 1] = right_leaf.len;
            return false;
        }
        let left_len = left_leaf.len as usize;
        left_leaf.keys.copy_from(left_len, &right_leaf.keys, 0..right_leaf.len as usize);
        left_leaf.len = total as u32;
        left_leaf.next = right_leaf.next;
        branch.counts[left_slot] = total as u32;
        branch.remove(left_slot + 1);
        self.leaf_release(right);
        true
    }

    /// Refills the underfull branch at `slot` of `parent` from a sibling, or merges the two.
    /// Returns true if and only if they merged (so `parent` lost a child).
    fn branch_rebalance(&mut self, parent: u32, slot: usize) -> bool {
        let left_slot = if slot > 0 { slot - 1 } else { slot };
        let branch = &self.branches[parent as usize];
        assert!(branch.len >= 2);
        let (left, right) = (branch.children[left_slot], branch.children[left_slot + 1]);
        let boundary = branch.separators.get(left_slot + 1);
        let (left_branch, right_branch) = pair_mut(&mut self.branches, left as usize, right as usize);
        let total = (left_branch.len + right_branch.len) as usize;
        let new_boundary;
        if total >= 2 * Self::BRANCH_CHILDREN_MIN {
            if left_branch.len > right_branch.len {
                // The left's last child moves to the right's front; the old boundary
                // becomes the lower bound of the right's former first child.
                let (separator, child, count) = left_branch.remove(left_branch.len as usize - 1);
                right_branch.separators.set(0, boundary);
                right_branch.len += 1;
                right_branch.separators.shift(0..right_branch.len as usize - 1, 1);
                right_branch.counts.copy_within(0..right_branch.len as usize - 1, 1);
                right_branch.children.copy_within(0..right_branch.len as usize - 1, 1);
                right_branch.separators.set(0, separator);
                right_branch.counts[0] = count;
                right_branch.children[0] = child;
                new_boundary = separator;
            } else {
                let (_, child, count) = right_branch.remove(0);
                new_boundary = right_branch.separators.get(0);
                left_branch.insert(left_branch.len as usize, boundary, child, count);
            }
            let (left_count, right_count) = (left_branch.count_total(), right_branch.count_total());
            let branch = &mut self.branches[parent as usize];
            branch.separators.set(left_slot + 1, new_boundary);
            branch.counts[left_slot] = left_count;
            branch.counts[left_slot + 1] = right_count;
            return false;
        }
        let left_len = left_branch.len as usize;
        let right_len = right_branch.len as usize;
        left_branch.separators.copy_from(left_len, &right_branch.separators, 0..right_len);
        left_branch.separators.set(left_len, boundary);
        left_branch.counts[left_len..total].copy_from_slice(&right_branch.counts[..right_len]);
        left_branch.children[left_len..total].copy_from_slice(&right_branch.children[..right_len]);
        left_branch.len = total as u32;
        let branch = &mut self.branches[parent as usize];
        branch.counts[left_slot] += branch.counts[left_slot + 1];
        branch.remove(left_slot + 1);
        self.branch_release(right);
        true
    }

    /// Moves the present key `old` to the absent key `new` and returns both ranks.
    ///
    /// One descent serves both keys: it follows `old` and, while `new` lies in the same
    /// child, shares its path; from the level where the two part it follows both. A
    /// realistic update (a score grows by a little) lands in the same or a neighbouring
    /// leaf, so the descents part at the lowest branch, if at all, and the second one
    /// costs a few comparisons in a branch already in cache. Both leaves are then
    /// prefetched together, so their cache misses overlap instead of following each
    /// other, and both ranks come from the prefix sums of the one descent.
    pub(super) fn update(&mut self, old: &Packed, new: Packed) -> (u32, u32) {
        let mut path_old = Path::new();
        let mut path_new = Path::new();
        let (leaf_old, before_old, leaf_new, before_new) = self.descend_pair(old, &new, &mut path_old, &mut path_new);
        // An update shifts keys in all three columns of both leaves, so all of each leaf
        // is fetched; measured faster than fetching only the length and score column.
        prefetch(&self.leaves[leaf_old as usize], size_of::<Leaf<L>>());
        if leaf_new != leaf_old {
            prefetch(&self.leaves[leaf_new as usize], size_of::<Leaf<L>>());
        }
        let (position, present) = self.leaves[leaf_old as usize].find(old);
        assert!(present, "Leaderboard::update: key absent: {:?}", old.key());
        let rank_before = before_old + position as u32 + 1;
        if new == *old {
            return (rank_before, rank_before);
        }
        if leaf_new == leaf_old {
            let position_after = self.leaves[leaf_old as usize].move_within(position, new);
            return (rank_before, before_old + position_after as u32 + 1);
        }
        let (target, present) = self.leaves[leaf_new as usize].find(&new);
        assert!(!present, "Leaderboard::update: new key already present: {:?}", new.key());
        // The counts of the descent still include `old`, which lies before `new` if and
        // only if its leaf does.
        let rank_after = before_new + target as u32 + 1 - u32::from(*old < new);
        let leaf_old_len = self.leaves[leaf_old as usize].len as usize;
        let leaf_new_len = self.leaves[leaf_new as usize].len as usize;
        if leaf_old_len > Self::LEAF_KEYS_MIN {
            // The removal cannot rebalance, so it leaves the new path valid for the insert,
            // which may split.
            self.remove_at(&path_old, leaf_old, position);
            self.insert_at(&path_new, leaf_new, target, new);
        } else if leaf_new_len < L {
            // The insert cannot split, so it leaves the old path valid for the removal,
            // which may rebalance.
            self.insert_at(&path_new, leaf_new, target, new);
            self.remove_at(&path_old, leaf_old, position);
        } else {
            // Both would change the tree's shape (rare: the old leaf at its minimum and the
            // new one full); the removal may move the new key's leaf, so descend again.
            self.remove_at(&path_old, leaf_old, position);
            let mut path = Path::new();
            let (leaf, _) = self.descend(&new, &mut path);
            let (target, _) = self.leaves[leaf as usize].find(&new);
            self.insert_at(&path, leaf, target, new);
        }
        self.len += 1;
        (rank_before, rank_after)
    }

    /// Descends for `a` and `b` at once, recording both paths (which share the nodes above
    /// the level where the keys part). Returns each key's leaf and the number of keys in
    /// the leaves to its left: `(leaf_a, before_a, leaf_b, before_b)`.
    #[inline]
    fn descend_pair(&self, a: &Packed, b: &Packed, path_a: &mut Path, path_b: &mut Path) -> (u32, u32, u32, u32) {
        let height = self.height as usize;
        assert!(height <= PATH_DEPTH_MAX);
        let (mut node_a, mut node_b) = (self.root, self.root);
        let (mut before_a, mut before_b) = (0, 0);
        for level in 0..height {
            let branch_a = &self.branches[node_a as usize];
            prefetch(branch_a, Branch::<F>::DESCENT_BYTES);
            if node_b != node_a {
                prefetch(&self.branches[node_b as usize], Branch::<F>::DESCENT_BYTES);
            }
            let slot_a = branch_a.slot_for(a);
            let slot_b = if node_b != node_a {
                self.branches[node_b as usize].slot_for(b)
            } else if branch_a.slot_holds(slot_a, b) {
                slot_a
            } else {
                branch_a.slot_for(b)
            };
            let branch_b = &self.branches[node_b as usize];
            before_a += branch_a.counts[..slot_a].iter().sum::<u32>();
            before_b += branch_b.counts[..slot_b].iter().sum::<u32>();
            path_a.nodes[level] = node_a;
            path_a.slots[level] = slot_a as u32;
            path_b.nodes[level] = node_b;
            path_b.slots[level] = slot_b as u32;
            node_a = branch_a.children[slot_a];
            node_b = branch_b.children[slot_b];
        }
        path_a.depth = height;
        path_b.depth = height;
        (node_a, before_a, node_b, before_b)
    }

    pub(super) fn for_each_from(&self, first: u32, count: u32, mut f: impl FnMut(u32, &Key)) {
        assert!(first >= 1, "ranks are 1-based");
        if first > self.len || count == 0 {
            return;
        }
        let (mut leaf, mut position) = self.descend_index(first - 1);
        let rank_end = first.saturating_add(count).min(self.len + 1);
        let mut rank = first;
        while rank < rank_end {
            assert!(leaf != NODE_NONE);
            let node = &self.leaves[leaf as usize];
            let take = (node.len as usize - position).min((rank_end - rank) as usize);
            for index in position..position + take {
                f(rank, &node.keys.get(index).key());
                rank += 1;
            }
            leaf = node.next;
            position = 0;
        }
    }
}

/// The right half of a node that split, for the level above.
struct Split {
    /// Lower bound of the right half's keys.
    separator: Packed,
    right: u32,
    left_count: u32,
    right_count: u32,
}

impl<const L: usize, const F: usize> Tree<L, F> {
    #[cfg(test)]
    fn get(&self, rank: u32) -> Option<Key> {
        if rank == 0 || rank > self.len {
            return None;
        }
        let (leaf, position) = self.descend_index(rank - 1);
        Some(self.leaves[leaf as usize].keys.get(position).key())
    }

    /// Checks every structural invariant, panicking on the first broken one. Walks the
    /// whole tree and allocates, so it is for tests and debugging, not the event path.
    pub(super) fn check_invariants(&self) {
        let mut leaves_in_order = Vec::new();
        let bounds = (None, None);
        let count = self.check_node(self.root, self.height, bounds, true, &mut leaves_in_order);
        assert_eq!(count, self.len, "root count differs from len");
        let mut leaf = leaves_in_order[0];
        let mut previous: Option<Packed> = None;
        for &expected in &leaves_in_order {
            assert_eq!(leaf, expected, "leaf chain out of order");
            let node = &self.leaves[leaf as usize];
            for key in (0..node.len as usize).map(|index| node.keys.get(index)) {
                assert!(previous.is_none_or(|p| p < key), "keys not strictly increasing");
                previous = Some(key);
            }
            leaf = self.leaves[leaf as usize].next;
        }
        assert_eq!(leaf, NODE_NONE, "leaf chain runs past the last leaf");
        let mut leaves_free = 0;
        let mut free = self.leaf_free;
        while free != NODE_NONE {
            leaves_free += 1;
            free = self.leaves[free as usize].next;
        }
        assert_eq!(leaves_free + leaves_in_order.len(), self.leaves.len(), "leaf arena leaks");
        let mut branches_free = 0;
        let mut free = self.branch_free;
        while free != NODE_NONE {
            branches_free += 1;
            free = self.branches[free as usize].children[0];
        }
        let branches_live = self.branches.len() - branches_free;
        assert!(branches_live <= leaves_in_order.len(), "branch arena leaks");
    }

    /// Checks the subtree at `node`, `level` branch levels above the leaves, whose keys must
    /// lie within `bounds` (lower inclusive, upper exclusive). Returns its key count.
    fn check_node(
        &self,
        node: u32,
        level: u32,
        bounds: (Option<Packed>, Option<Packed>),
        is_root: bool,
        leaves_in_order: &mut Vec<u32>,
    ) -> u32 {
        let (lower, upper) = bounds;
        if level == 0 {
            let leaf = &self.leaves[node as usize];
            assert!(leaf.len as usize <= L);
            assert!(is_root || leaf.len as usize >= Self::LEAF_KEYS_MIN, "leaf underfull");
            for key in (0..leaf.len as usize).map(|index| leaf.keys.get(index)) {
                assert!(lower.is_none_or(|bound| bound <= key), "key below its leaf's range");
                assert!(upper.is_none_or(|bound| key < bound), "key above its leaf's range");
            }
            leaves_in_order.push(node);
            return leaf.len;
        }
        let branch = &self.branches[node as usize];
        let len = branch.len as usize;
        assert!(len <= F);
        assert!(len >= 2, "branch with fewer than two children");
        assert!(is_root || len >= Self::BRANCH_CHILDREN_MIN, "branch underfull");
        let mut total = 0;
        for slot in 0..len {
            let child_lower = if slot == 0 { lower } else { Some(branch.separators.get(slot)) };
            let child_upper = if slot + 1 == len { upper } else { Some(branch.separators.get(slot + 1)) };
            if let (Some(a), Some(b)) = (child_lower, child_upper) {
                assert!(a < b, "separators not increasing");
            }
            let child_bounds = (child_lower, child_upper);
            let count = self.check_node(branch.children[slot], level - 1, child_bounds, false, leaves_in_order);
            assert_eq!(count, branch.counts[slot], "count differs from the keys below");
            total += count;
        }
        total
    }
}

impl<const L: usize, const F: usize> fmt::Debug for Tree<L, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tree")
            .field("len", &self.len)
            .field("height", &self.height)
            .field("leaves", &self.leaves.len())
            .field("branches", &self.branches.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The smallest node sizes the tree allows: a few hundred keys build four levels.
    type SmallTree = Tree<4, 4>;

    fn key(score: i64, reached_at: u64, player: u32) -> Key {
        Key { score, reached_at, player }
    }

    use crate::rng::Rng;

    #[test]
    fn key_ord_matches_packed_order() {
        let keys = [key(3, 1, 1), key(-3, 0, 0), key(3, 0, 2), key(i64::MIN, 9, 9), key(i64::MAX, 0, 0)];
        for a in &keys {
            for b in &keys {
                assert_eq!(a.cmp(b), Packed::from_key(a).cmp(&Packed::from_key(b)));
            }
            assert_eq!(Packed::from_key(a).key(), *a);
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(Key),
        Remove { pick: usize },
        Update { pick: usize, delta: i64, later_us: u64 },
        Rank(Key),
        RankPresent { pick: usize },
        Window { first: u32, count: u32 },
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        // A small key space makes ties and collisions common.
        let key = (-20i64..20, 0u64..6, 0u32..40).prop_map(|(s, t, p)| key(s, t, p));
        prop_oneof![
            6 => key.clone().prop_map(Op::Insert),
            2 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
            4 => (any::<usize>(), -8i64..30, 0u64..3)
                .prop_map(|(pick, delta, later_us)| Op::Update { pick, delta, later_us }),
            1 => key.prop_map(Op::Rank),
            1 => any::<usize>().prop_map(|pick| Op::RankPresent { pick }),
            1 => (1u32..400, 0u32..30).prop_map(|(first, count)| Op::Window { first, count }),
        ]
    }

    fn model_rank(model: &BTreeSet<Key>, key: &Key) -> u32 {
        model.range(..*key).count() as u32 + 1
    }

    fn model_pick(model: &BTreeSet<Key>, pick: usize) -> Option<Key> {
        if model.is_empty() {
            return None;
        }
        model.iter().nth(pick % model.len()).copied()
    }

    /// Applies one operation to the tree and the model and checks they agree on its result.
    fn apply<const L: usize, const F: usize>(tree: &mut Tree<L, F>, model: &mut BTreeSet<Key>, op: &Op) {
        match *op {
            Op::Insert(key) if !model.contains(&key) => {
                model.insert(key);
                assert_eq!(tree.insert(Packed::from_key(&key)), model_rank(model, &key));
            }
            Op::Insert(_) => {}
            Op::Remove { pick } => {
                let Some(key) = model_pick(model, pick) else { return };
                let rank = model_rank(model, &key);
                model.remove(&key);
                assert_eq!(tree.remove(&Packed::from_key(&key)), rank);
            }
            Op::Update { pick, delta, later_us } => {
                let Some(old) = model_pick(model, pick) else { return };
                let new = Key { score: old.score + delta, reached_at: old.reached_at + later_us, ..old };
                if new != old && model.contains(&new) {
                    return;
                }
                let rank_before = model_rank(model, &old);
                model.remove(&old);
                model.insert(new);
                let ranks = tree.update(&Packed::from_key(&old), Packed::from_key(&new));
                assert_eq!(ranks, (rank_before, model_rank(model, &new)));
            }
            Op::Rank(key) => {
                let expect = model.contains(&key).then(|| model_rank(model, &key));
                assert_eq!(tree.rank(&Packed::from_key(&key)), expect);
            }
            Op::RankPresent { pick } => {
                let Some(key) = model_pick(model, pick) else { return };
                assert_eq!(tree.rank(&Packed::from_key(&key)), Some(model_rank(model, &key)));
                assert_eq!(tree.get(model_rank(model, &key)), Some(key));
            }
            Op::Window { first, count } => check_window_against_model(tree, model, first, count),
        }
    }

    fn check_window_against_model<const L: usize, const F: usize>(
        tree: &Tree<L, F>,
        model: &BTreeSet<Key>,
        first: u32,
        count: u32,
    ) {
        let mut seen = Vec::new();
        tree.for_each_from(first, count, |rank, key| seen.push((rank, *key)));
        let expect: Vec<(u32, Key)> = model
            .iter()
            .copied()
            .zip(1u32..)
            .map(|(k, r)| (r, k))
            .skip(first as usize - 1)
            .take(count as usize)
            .collect();
        assert_eq!(seen, expect);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn small_nodes_agree_with_model(ops in proptest::collection::vec(op_strategy(), 1..700)) {
            let mut tree = SmallTree::new();
            let mut model = BTreeSet::new();
            for (step, op) in ops.iter().enumerate() {
                apply(&mut tree, &mut model, op);
                assert_eq!(tree.len as usize, model.len());
                check_window_against_model(&tree, &model, 1, u32::MAX);
                if step % 8 == 0 {
                    tree.check_invariants();
                }
            }
            tree.check_invariants();
        }

        #[test]
        fn medium_nodes_agree_with_model(ops in proptest::collection::vec(op_strategy(), 1..700)) {
            let mut tree = Tree::<8, 6>::new();
            let mut model = BTreeSet::new();
            for op in &ops {
                apply(&mut tree, &mut model, op);
                check_window_against_model(&tree, &model, 1, u32::MAX);
            }
            tree.check_invariants();
        }
    }

    /// Builds a tree to a height of at least four branch levels and drains it again, so the
    /// deep split, borrow, merge and root-collapse paths all run.
    #[test]
    fn small_nodes_grow_and_shrink_through_many_levels() {
        let mut tree = SmallTree::new();
        let mut model = BTreeSet::new();
        let mut random = Rng::new(7);
        for player in 0..3000u32 {
            let key = key(random.below(500) as i64, random.below(4), player);
            apply(&mut tree, &mut model, &Op::Insert(key));
        }
        assert!(tree.height >= 4, "height {}", tree.height);
        tree.check_invariants();
        while !model.is_empty() {
            let pick = random.next_u64() as usize;
            apply(&mut tree, &mut model, &Op::Remove { pick });
            if model.len() % 97 == 0 {
                tree.check_invariants();
                check_window_against_model(&tree, &model, 1, u32::MAX);
            }
        }
        assert_eq!(tree.height, 0);
        tree.check_invariants();
    }

    /// Fills a tree after `reserve`, including the sorted insertion orders that leave every
    /// leaf at minimum fill, then churns it; neither arena may grow.
    fn check_no_growth_after_reserve<const L: usize, const F: usize>(key_count: u32, updates: u32) {
        let mut tree = Tree::<L, F>::new();
        tree.reserve(key_count as usize);
        let capacity = (tree.leaves.capacity(), tree.branches.capacity());
        let mut current = Vec::new();
        // Ascending keys (each lands at the end) leave split leaves exactly half full.
        for player in 0..key_count / 2 {
            let key = key(-i64::from(player), 0, player);
            tree.insert(Packed::from_key(&key));
            current.push(key);
        }
        // Descending keys (each lands at the front) do the same from the other side.
        for player in (key_count / 2..key_count).rev() {
            let key = key(i64::from(player), 0, player);
            tree.insert(Packed::from_key(&key));
            current.push(key);
        }
        assert_eq!((tree.leaves.capacity(), tree.branches.capacity()), capacity);
        let mut random = Rng::new(3);
        for time_us in 1..=u64::from(updates) {
            let index = random.below(current.len() as u64) as usize;
            let old = current[index];
            let delta = random.below(2000) as i64 - 500;
            let new = Key { score: old.score + delta, reached_at: time_us, ..old };
            if time_us % 5 == 0 {
                tree.remove(&Packed::from_key(&old));
                tree.insert(Packed::from_key(&new));
            } else {
                tree.update(&Packed::from_key(&old), Packed::from_key(&new));
            }
            current[index] = new;
        }
        tree.check_invariants();
        assert_eq!((tree.leaves.capacity(), tree.branches.capacity()), capacity);
    }

    #[test]
    fn no_growth_after_reserve() {
        check_no_growth_after_reserve::<LEAF_KEYS_MAX, BRANCH_CHILDREN_MAX>(200_000, 100_000);
        check_no_growth_after_reserve::<4, 4>(20_000, 100_000);
        check_no_growth_after_reserve::<8, 6>(1, 1000);
        check_no_growth_after_reserve::<8, 6>(0, 0);
    }
}
