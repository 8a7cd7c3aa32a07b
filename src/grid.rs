//! A hunt's uniform grid of treasure discs: which treasures a move or a dig could reach,
//! and which treasure centre is nearest a point.
//!
//! The hunt (`hunt.rs`) builds one `Grid` over its bounds in internal units (see
//! `geo.rs`; a geographic hunt passes `Projection::project_bounds`) when it is created,
//! registers a treasure's disc when it is placed and unregisters it when it is removed
//! (an exhausted treasure stays registered; the hunt's claim check skips it). Those are
//! the slow paths, and the only ones that allocate. On every move
//! and dig the hunt asks `for_each_candidate` for the treasures whose disc may contain
//! the player's point and checks the exact distance itself; hot/cold hints ask `nearest`.
//! Neither query allocates.
//!
//! The grid has at most `GRID_AXIS_CELLS_MAX` cells per axis, and a cell's side is a
//! power of two, so finding a point's cell is a subtraction and a shift. A disc is listed
//! in every cell its bounding square overlaps, unless that is more than
//! `GRID_CELLS_PER_TREASURE_MAX` cells: then it goes on a short list of wide treasures
//! (at most `GRID_WIDE_TREASURES_MAX`) that every query reads. Separately, every treasure's
//! centre is listed, with its point, in the one cell that holds it, for `nearest`.
//! Only non-empty lists are stored (`SparseCells`): a bitmap marks the cells that have
//! one, so queries skip empty cells without touching anything else, and a count per
//! bitmap word finds a non-empty cell's list among the stored ones. Memory follows what
//! the hunt holds: nothing at all until the first treasure is placed, then 4 bits per
//! cell for the two bitmaps and their counts (8 KiB at 128 x 128 cells) and 24 bytes per
//! non-empty list, plus the sorted list of every centre. The cells' size depends on the
//! bounds alone, never on the treasures: a grid re-sized as treasures come would change
//! which discs are wide, and so the order of candidates and which placements are refused,
//! with the history of placements.
//!
//! **Invariant**: every list is sorted by handle and holds each handle once, so the order
//! in which queries report treasures depends only on which treasures are registered, not
//! on the order they were placed or removed in. A grid rebuilt from a snapshot therefore
//! answers exactly as the live one did, which replay relies on.
//!
//! **Boundary**: points and centres may lie outside the bounds (a player wandering off,
//! a treasure placed at the edge with its disc reaching out). Both are mapped to the
//! nearest cell by clamping, and discs are registered over the clamped cells of their
//! bounding square, so the candidate superset holds for every point, inside or out.

use crate::constants::{COORDINATE_ABS_MAX, GRID_AXIS_CELLS_MAX, GRID_CELLS_PER_TREASURE_MAX, GRID_WIDE_TREASURES_MAX};
use crate::geo::{distance_squared, Point};
use smallvec::SmallVec;

/// Disc handles a cell holds before its list moves to the heap. Four `u32`s fill the 16
/// bytes `SmallVec` needs for a heap pointer and length anyway, so they cost nothing extra
/// (24 bytes a non-empty list), and they cover the common case of a few overlapping
/// treasures.
const CELL_DISCS_INLINE: usize = 4;

/// Centres a cell holds before its list moves to the heap. One `Centre` (12 bytes) fits
/// in the same 16 bytes; treasures are sparse compared with cells, so one is the common
/// case.
const CELL_CENTRES_INLINE: usize = 1;

// A word and its rank fill 16 bytes.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<CellWord>() == 16);

// The sizes the two constants above claim, on the 64-bit targets Cairn runs on.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<SmallVec<[u32; CELL_DISCS_INLINE]>>() == 24);
#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<SmallVec<[Centre; CELL_CENTRES_INLINE]>>() == 24);

/// A treasure's handle and centre, as kept in the cell holding the centre.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Centre {
    handle: u32,
    point: Point,
}

/// The cells a disc is registered in: an inclusive rectangle of columns and rows.
#[derive(Clone, Copy, Debug)]
struct Footprint {
    column_low: u32,
    column_high: u32,
    row_low: u32,
    row_high: u32,
}

impl Footprint {
    fn cell_count(&self) -> u64 {
        (self.column_high - self.column_low + 1) as u64 * (self.row_high - self.row_low + 1) as u64
    }
}

/// 64 cells of a `SparseCells`: which hold a list, and how many lists come before them.
/// The two share a cache line, so a non-empty cell costs no extra miss to find.
#[derive(Clone, Copy, Debug, Default)]
struct CellWord {
    /// Bit `i` set if and only if cell `64 * word + i` has a non-empty list.
    occupied: u64,
    /// Non-empty lists in the cells of the words before this one.
    rank: u32,
}

/// Per-cell lists, of which only the non-empty ones are stored.
///
/// `words` has one bit per cell (by index), set if and only if the cell's list is not
/// empty, and per 64 cells the count of set bits before them; `lists` holds the
/// non-empty lists in cell order. So a non-empty cell's list is at its word's `rank` plus
/// the set bits below it in the word. A query of an empty cell reads one word, as a
/// dense array with a bitmap in front would; a non-empty cell adds a population count.
/// Making or emptying a list shifts the lists and ranks after it, which happens only
/// when a treasure is placed or removed (the slow paths): queries never allocate or
/// write. The words are allocated at the first insert, so cells that never held anything
/// cost nothing.
#[derive(Debug)]
struct SparseCells<T, const N: usize> {
    /// Cells covered; fixed at creation.
    cell_count: usize,
    /// One word per 64 cells; empty until the first insert.
    words: Vec<CellWord>,
    /// The non-empty lists, in cell order, each sorted by handle.
    lists: Vec<SmallVec<[T; N]>>,
}

impl<T: Copy, const N: usize> SparseCells<T, N> {
    /// Cells `0..cell_count`, all empty; allocates nothing.
    fn new(cell_count: usize) -> SparseCells<T, N> {
        assert!(cell_count >= 1);
        assert!(cell_count <= u32::MAX as usize);
        SparseCells { cell_count, words: Vec::new(), lists: Vec::new() }
    }

    /// Where cell `index`'s list is, or would be inserted, in `lists`; and its bit.
    fn locate(&self, index: usize) -> (usize, u64) {
        let word = self.words[index / 64];
        let bit = 1u64 << (index % 64);
        (word.rank as usize + (word.occupied & (bit - 1)).count_ones() as usize, bit)
    }

    /// Cell `index`'s list, sorted by handle; empty for an empty cell.
    #[inline]
    fn get(&self, index: usize) -> &[T] {
        // `index` comes from a clamped column and row, so it is below `cell_count`; the
        // word lookup below is bounds-checked anyway. Before the first insert there are
        // no words, and every cell is empty.
        let Some(&word) = self.words.get(index / 64) else {
            return &[];
        };
        let bit = 1u64 << (index % 64);
        if word.occupied & bit == 0 {
            return &[];
        }
        &self.lists[word.rank as usize + (word.occupied & (bit - 1)).count_ones() as usize]
    }

    /// Inserts `item` into cell `index`'s list, sorted by `key`; the key must not be there.
    fn insert(&mut self, index: usize, item: T, key: impl Fn(&T) -> u32) {
        assert!(index < self.cell_count);
        if self.words.is_empty() {
            self.words = vec![CellWord::default(); self.cell_count.div_ceil(64)];
        }
        let (position, bit) = self.locate(index);
        if self.words[index / 64].occupied & bit == 0 {
            self.lists.insert(position, SmallVec::new());
            self.words[index / 64].occupied |= bit;
            for word in &mut self.words[index / 64 + 1..] {
                word.rank += 1;
            }
        }
        insert_sorted(&mut self.lists[position], item, key);
    }

    /// Removes and returns the item with `handle` from cell `index`'s list; it must be there.
    fn remove(&mut self, index: usize, handle: u32, key: impl Fn(&T) -> u32) -> T {
        assert!(index < self.cell_count);
        let registered = self.words.get(index / 64).is_some_and(|word| word.occupied & (1 << (index % 64)) != 0);
        assert!(registered, "handle {handle} removed from an empty cell");
        let (position, bit) = self.locate(index);
        let removed = remove_sorted(&mut self.lists[position], handle, key);
        if self.lists[position].is_empty() {
            self.lists.remove(position);
            self.words[index / 64].occupied &= !bit;
            for word in &mut self.words[index / 64 + 1..] {
                word.rank -= 1;
            }
        }
        removed
    }

    /// Panics unless the bitmap, the ranks and the lists agree.
    #[cfg(test)]
    fn check(&self) {
        let mut count = 0usize;
        for word in &self.words {
            assert_eq!(word.rank as usize, count);
            count += word.occupied.count_ones() as usize;
        }
        assert_eq!(count, self.lists.len());
        assert!(self.lists.iter().all(|list| !list.is_empty()));
        for (index, word) in self.words.iter().enumerate() {
            // No bit beyond the last cell.
            let cells_in_word = (self.cell_count - index * 64).min(64);
            assert!(cells_in_word == 64 || word.occupied >> cells_in_word == 0);
        }
    }
}

/// Uniform spatial grid over a hunt's bounds.
#[derive(Debug)]
pub struct Grid {
    /// South-west corner of the bounds, in internal units.
    min: Point,
    /// North-east corner of the bounds (inclusive), in internal units.
    max: Point,
    /// A cell's side is `1 << cell_shift` internal units.
    cell_shift: u32,
    /// Cells along x.
    columns: u32,
    /// Cells along y.
    rows: u32,
    /// Per cell (row-major), the handles of the discs that overlap it, sorted. A move tests
    /// the cell's bit, in a bitmap of 2 KiB at most that stays in cache, before touching
    /// its list; most cells hold no disc.
    discs: SparseCells<u32, CELL_DISCS_INLINE>,
    /// Per cell (row-major), the treasures centred in it, sorted by handle; the ring search
    /// of `nearest` skips empty cells by their bits.
    centres: SparseCells<Centre, CELL_CENTRES_INLINE>,
    /// Handles of the discs too wide for the cells, sorted; at most
    /// `GRID_WIDE_TREASURES_MAX`.
    wide: Vec<u32>,
    /// Every centre registered, sorted by handle: what `nearest` scans once a ring search
    /// would visit more cells than there are centres.
    all_centres: Vec<Centre>,
}

/// Cells a ring search of `nearest` may visit before it switches to scanning every
/// centre, at least. Below this a scan would not be cheaper than a few rings.
const NEAREST_RING_CELLS_MIN: u64 = 64;

/// The grid cannot register one more wide treasure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridFull;

/// Asserts that a point is within the coordinate range, which keeps every difference
/// within 2^31 and every squared distance within 2^63.
fn assert_coordinate(point: Point) {
    assert!(point.x.unsigned_abs() as i64 <= COORDINATE_ABS_MAX);
    assert!(point.y.unsigned_abs() as i64 <= COORDINATE_ABS_MAX);
}

/// The smallest power-of-two cell side (as a shift) that covers `extent` units with at
/// most `GRID_AXIS_CELLS_MAX` cells.
fn cell_shift_for(extent: u64) -> u32 {
    assert!(extent >= 1);
    let mut shift = 0;
    while ((extent - 1) >> shift) + 1 > GRID_AXIS_CELLS_MAX as u64 {
        shift += 1;
    }
    shift
}

/// Inserts `item` into a list sorted by `key`, which must not hold that key yet.
fn insert_sorted<T: Copy, const N: usize>(list: &mut SmallVec<[T; N]>, item: T, key: impl Fn(&T) -> u32) {
    match list.binary_search_by_key(&key(&item), &key) {
        Ok(_) => panic!("handle {} registered twice in one cell", key(&item)),
        Err(index) => list.insert(index, item),
    }
}

/// Removes and returns the item with `handle` from a list sorted by `key`; it must be there.
fn remove_sorted<T: Copy, const N: usize>(list: &mut SmallVec<[T; N]>, handle: u32, key: impl Fn(&T) -> u32) -> T {
    match list.binary_search_by_key(&handle, key) {
        Ok(index) => list.remove(index),
        Err(_) => panic!("handle {handle} removed from a cell it is not registered in"),
    }
}

impl Grid {
    /// A grid over the rectangle `min..=max` (internal units).
    ///
    /// The cell side is the smallest power of two that keeps both axes within
    /// `GRID_AXIS_CELLS_MAX` cells: a shift finds a cell, and small hunts get fine cells.
    /// Allocates nothing: cells cost memory once treasures are registered in them.
    pub fn new(min: Point, max: Point) -> Grid {
        assert_coordinate(min);
        assert_coordinate(max);
        assert!(min.x <= max.x);
        assert!(min.y <= max.y);
        let extent_x = (max.x as i64 - min.x as i64 + 1) as u64;
        let extent_y = (max.y as i64 - min.y as i64 + 1) as u64;
        let cell_shift = cell_shift_for(extent_x).max(cell_shift_for(extent_y));
        let columns = (((extent_x - 1) >> cell_shift) + 1) as u32;
        let rows = (((extent_y - 1) >> cell_shift) + 1) as u32;
        assert!(columns <= GRID_AXIS_CELLS_MAX);
        assert!(rows <= GRID_AXIS_CELLS_MAX);
        let cell_count = columns as usize * rows as usize;
        Grid {
            min,
            max,
            cell_shift,
            columns,
            rows,
            discs: SparseCells::new(cell_count),
            centres: SparseCells::new(cell_count),
            wide: Vec::new(),
            all_centres: Vec::new(),
        }
    }

    /// The side of a cell, in internal units.
    pub fn cell_size(&self) -> u64 {
        1 << self.cell_shift
    }

    /// Cells along x and along y.
    pub fn cell_counts(&self) -> (u32, u32) {
        (self.columns, self.rows)
    }

    /// The rectangle the grid covers, `min..=max`.
    pub fn bounds(&self) -> (Point, Point) {
        (self.min, self.max)
    }

    /// Column holding `x`, clamped to the grid.
    fn column_of(&self, x: i64) -> u32 {
        ((x - self.min.x as i64) >> self.cell_shift).clamp(0, self.columns as i64 - 1) as u32
    }

    /// Row holding `y`, clamped to the grid.
    fn row_of(&self, y: i64) -> u32 {
        ((y - self.min.y as i64) >> self.cell_shift).clamp(0, self.rows as i64 - 1) as u32
    }

    fn cell_index(&self, column: u32, row: u32) -> usize {
        row as usize * self.columns as usize + column as usize
    }

    /// The cells a disc's bounding square overlaps, clamped to the grid.
    fn footprint(&self, center: Point, radius: u64) -> Footprint {
        // Any radius beyond 2^33 already covers every coordinate, so capping it keeps the
        // arithmetic in i64 without changing the footprint.
        let radius = radius.min(1 << 33) as i64;
        Footprint {
            column_low: self.column_of(center.x as i64 - radius),
            column_high: self.column_of(center.x as i64 + radius),
            row_low: self.row_of(center.y as i64 - radius),
            row_high: self.row_of(center.y as i64 + radius),
        }
    }

    /// Registers treasure `handle`'s disc; `GridFull` (and nothing registered) if the disc
    /// is too wide for the cells and the list of wide treasures is full.
    pub fn insert(&mut self, handle: u32, center: Point, radius: u64) -> Result<(), GridFull> {
        assert_coordinate(center);
        let footprint = self.footprint(center, radius);
        if footprint.cell_count() > GRID_CELLS_PER_TREASURE_MAX as u64 {
            match self.wide.binary_search(&handle) {
                Ok(_) => panic!("handle {handle} registered twice as wide"),
                Err(_) if self.wide.len() >= GRID_WIDE_TREASURES_MAX as usize => return Err(GridFull),
                Err(index) => self.wide.insert(index, handle),
            }
        } else {
            for row in footprint.row_low..=footprint.row_high {
                for column in footprint.column_low..=footprint.column_high {
                    let index = self.cell_index(column, row);
                    self.discs.insert(index, handle, |handle| *handle);
                }
            }
        }
        let index = self.cell_index(self.column_of(center.x as i64), self.row_of(center.y as i64));
        self.centres.insert(index, Centre { handle, point: center }, |centre| centre.handle);
        let centre = Centre { handle, point: center };
        let position = self.all_centres.partition_point(|other| other.handle < handle);
        self.all_centres.insert(position, centre);
        Ok(())
    }

    /// Unregisters a disc registered with the same arguments.
    pub fn remove(&mut self, handle: u32, center: Point, radius: u64) {
        assert_coordinate(center);
        let footprint = self.footprint(center, radius);
        if footprint.cell_count() > GRID_CELLS_PER_TREASURE_MAX as u64 {
            match self.wide.binary_search(&handle) {
                Ok(index) => {
                    self.wide.remove(index);
                }
                Err(_) => panic!("handle {handle} removed but not registered as wide"),
            }
        } else {
            for row in footprint.row_low..=footprint.row_high {
                for column in footprint.column_low..=footprint.column_high {
                    let index = self.cell_index(column, row);
                    self.discs.remove(index, handle, |handle| *handle);
                }
            }
        }
        let index = self.cell_index(self.column_of(center.x as i64), self.row_of(center.y as i64));
        let removed = self.centres.remove(index, handle, |centre| centre.handle);
        assert_eq!(removed.point, center, "handle {handle} removed with another centre");
        let position = self.all_centres.partition_point(|other| other.handle < handle);
        assert_eq!(self.all_centres[position].handle, handle);
        self.all_centres.remove(position);
    }

    /// Calls `f` for every treasure whose disc may contain `point` (a superset): the
    /// discs listed in the point's cell, in handle order, then the wide treasures, in
    /// handle order. A point outside the bounds reads the nearest cell, which every disc
    /// that could reach it is registered in. Each handle is reported once.
    pub fn for_each_candidate(&self, point: Point, mut f: impl FnMut(u32)) {
        assert_coordinate(point);
        let index = self.cell_index(self.column_of(point.x as i64), self.row_of(point.y as i64));
        for &handle in self.discs.get(index) {
            f(handle);
        }
        for &handle in &self.wide {
            f(handle);
        }
    }

    /// The nearest treasure (by centre) for which `eligible(handle, distance_squared)` holds.
    ///
    /// Searches rings of cells outward from the point's cell and stops once the best
    /// centre found is nearer than anything in the cells not yet visited could be (or
    /// every centre has been seen). Wide treasures need no separate pass: their centres are
    /// in the cells like any other. When the rings would visit more cells than there are
    /// centres (few treasures, or none eligible nearby), it scans every centre instead,
    /// which gives the same answer for less work. Ties go to the lower handle. `eligible`
    /// is called only for treasures that would beat the best found so far, so an
    /// expensive test (has this player claimed it?) runs rarely.
    pub fn nearest(&self, point: Point, mut eligible: impl FnMut(u32, u64) -> bool) -> Option<(u32, u64)> {
        assert_coordinate(point);
        let column = self.column_of(point.x as i64);
        let row = self.row_of(point.y as i64);
        let mut best: Option<(u32, u64)> = None;
        let mut consider = |centre: &Centre, best: &mut Option<(u32, u64)>| {
            let distance = distance_squared(point, centre.point);
            let better = match *best {
                None => true,
                Some((best_handle, best_distance)) => (distance, centre.handle) < (best_distance, best_handle),
            };
            if better && eligible(centre.handle, distance) {
                *best = Some((centre.handle, distance));
            }
        };
        let centre_count = self.all_centres.len();
        let cells_budget = (centre_count as u64).max(NEAREST_RING_CELLS_MIN);
        let mut cells_visited: u64 = 0;
        let mut seen: usize = 0;
        let ring_max = self.columns.max(self.rows);
        for ring in 0..ring_max {
            if seen == centre_count {
                break;
            }
            cells_visited += if ring == 0 { 1 } else { 8 * ring as u64 };
            if cells_visited > cells_budget {
                // A scan of every centre is exact too; start it afresh for simplicity.
                let mut scanned = None;
                for centre in &self.all_centres {
                    consider(centre, &mut scanned);
                }
                return scanned;
            }
            self.visit_ring(column, row, ring, |centre| {
                seen += 1;
                consider(centre, &mut best);
            });
            match (best, self.unvisited_gap(point, column, row, ring)) {
                // Every cell has been visited.
                (_, None) => break,
                // Unvisited centres are at least `gap` away; one exactly that far could
                // still win a tie on its handle, so only a strictly nearer best stops.
                (Some((_, best_distance)), Some(gap)) if best_distance < gap * gap => break,
                _ => {}
            }
        }
        assert!(seen <= centre_count);
        best
    }

    /// Calls `visit` for every centre in the cells at Chebyshev distance `ring` from
    /// (`column`, `row`), clipped to the grid, row by row.
    fn visit_ring(&self, column: u32, row: u32, ring: u32, mut visit: impl FnMut(&Centre)) {
        let (column, row, ring) = (column as i64, row as i64, ring as i64);
        let column_low = (column - ring).max(0);
        let column_high = (column + ring).min(self.columns as i64 - 1);
        let row_low = (row - ring).max(0);
        let row_high = (row + ring).min(self.rows as i64 - 1);
        for current_row in row_low..=row_high {
            let edge_row = current_row == row - ring || current_row == row + ring;
            let mut visit_cell = |current_column: i64| {
                let index = self.cell_index(current_column as u32, current_row as u32);
                for centre in self.centres.get(index) {
                    visit(centre);
                }
            };
            if edge_row {
                (column_low..=column_high).for_each(&mut visit_cell);
            } else {
                if column - ring >= 0 {
                    visit_cell(column - ring);
                }
                if column + ring < self.columns as i64 {
                    visit_cell(column + ring);
                }
            }
        }
    }

    /// A lower bound on the distance from `point` to any position in the cells beyond
    /// ring `ring` around (`column`, `row`); `None` if there are no such cells.
    ///
    /// A centre in a column right of the visited square has `x` at least that column's
    /// left edge even when it was clamped there from beyond the bounds, and the point's
    /// own column was not clamped from the right if there is a column beyond it, so the
    /// gap to the square's right edge bounds its distance; likewise for the other sides.
    fn unvisited_gap(&self, point: Point, column: u32, row: u32, ring: u32) -> Option<u64> {
        let cell_size = 1i64 << self.cell_shift;
        let (x, y) = (point.x as i64, point.y as i64);
        let (column, row, ring) = (column as i64, row as i64, ring as i64);
        let (min_x, min_y) = (self.min.x as i64, self.min.y as i64);
        let mut gap: Option<i64> = None;
        let mut consider = |side_gap: i64| {
            assert!(side_gap >= 0);
            gap = Some(gap.map_or(side_gap, |gap| gap.min(side_gap)));
        };
        if column + ring < self.columns as i64 - 1 {
            consider(min_x + (column + ring + 1) * cell_size - x);
        }
        if column - ring > 0 {
            consider(x - (min_x + (column - ring) * cell_size));
        }
        if row + ring < self.rows as i64 - 1 {
            consider(min_y + (row + ring + 1) * cell_size - y);
        }
        if row - ring > 0 {
            consider(y - (min_y + (row - ring) * cell_size));
        }
        gap.map(|gap| gap as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::RADIUS_MAX;
    use proptest::prelude::*;

    fn point(x: i32, y: i32) -> Point {
        Point::new(x, y)
    }

    fn candidates(grid: &Grid, at: Point) -> Vec<u32> {
        let mut handles = Vec::new();
        grid.for_each_candidate(at, |handle| handles.push(handle));
        handles
    }

    #[test]
    fn cell_size_choice() {
        fn check(min: (i32, i32), max: (i32, i32), cell_size: u64, cells: (u32, u32)) {
            let grid = Grid::new(point(min.0, min.1), point(max.0, max.1));
            assert_eq!((grid.cell_size(), grid.cell_counts()), (cell_size, cells), "{min:?} {max:?}");
        }
        // The table is written for 128 cells per axis.
        assert_eq!(GRID_AXIS_CELLS_MAX, 128);
        let limit = COORDINATE_ABS_MAX as i32;
        check((0, 0), (0, 0), 1, (1, 1));
        check((-5, 3), (4, 3), 1, (10, 1));
        check((0, 0), (127, 127), 1, (128, 128));
        check((0, 0), (128, 0), 2, (65, 1));
        check((0, 0), (255, 10), 2, (128, 6));
        check((0, 0), (256, 10), 4, (65, 3));
        // 100 km square planar hunt: 100,000 / 128 = 781.25, so 1024-unit cells.
        check((0, 0), (99_999, 99_999), 1_024, (98, 98));
        // The narrower axis shares the wider one's cell size.
        check((0, 0), (99_999, 999), 1_024, (98, 1));
        // A 20 km geographic hunt in centimetres: 163.84 m cells.
        check((-1_000_000, -1_000_000), (1_000_000, 1_000_000), 16_384, (123, 123));
        // The whole coordinate range: 2^31 + 1 units.
        check((-limit, -limit), (limit, limit), 1 << 25, (65, 65));
    }

    #[test]
    fn wide_treasures_overflow() {
        let mut grid = Grid::new(point(0, 0), point(511, 511));
        assert_eq!(grid.cell_size(), 4);
        // A radius of 16 covers at most 9 x 9 = 81 cells of 4 units: wide.
        for handle in 0..GRID_WIDE_TREASURES_MAX {
            assert_eq!(grid.insert(handle, point(400, 400), 16), Ok(()));
        }
        assert_eq!(grid.insert(1_000, point(100, 100), 16), Err(GridFull));
        // A refused treasure leaves no trace.
        assert_eq!(grid.nearest(point(100, 100), |_, _| true), Some((0, 2 * 300 * 300)));
        assert!(!candidates(&grid, point(100, 100)).contains(&1_000));
        // Narrow discs still fit: radius 14 covers at most 8 x 8 = 64 cells.
        assert_eq!(grid.insert(2_000, point(100, 100), 14), Ok(()));
        assert_eq!(grid.nearest(point(100, 100), |_, _| true), Some((2_000, 0)));
        grid.remove(5, point(400, 400), 16);
        assert_eq!(grid.insert(1_000, point(100, 100), 16), Ok(()));
        assert_eq!(grid.insert(1_001, point(100, 100), 16), Err(GridFull));
        let expected: Vec<u32> = [2_000].into_iter().chain((0..64).filter(|h| *h != 5)).chain([1_000]).collect();
        assert_eq!(candidates(&grid, point(100, 100)), expected);
    }

    #[test]
    fn candidates_outside_the_bounds() {
        let mut grid = Grid::new(point(0, 0), point(999, 999));
        // Centred outside, reaching in; and centred outside, never reaching in.
        grid.insert(1, point(-10, 500), 12).unwrap();
        grid.insert(2, point(-100, 500), 12).unwrap();
        grid.insert(3, point(500, 500), 3).unwrap();
        fn check(grid: &Grid, at: (i32, i32), expect: &[u32]) {
            assert_eq!(candidates(grid, point(at.0, at.1)), expect, "{at:?}");
        }
        check(&grid, (1, 500), &[1, 2]);
        check(&grid, (-95, 502), &[1, 2]);
        check(&grid, (-1_000_000, 500), &[1, 2]);
        check(&grid, (500, 500), &[3]);
        check(&grid, (500, 5_000_000), &[]);
        assert_eq!(grid.nearest(point(-95, 500), |_, _| true), Some((2, 25)));
        assert_eq!(grid.nearest(point(-95, 500), |handle, _| handle != 2), Some((1, 85 * 85)));
        assert_eq!(grid.nearest(point(2_000, 500), |_, _| true), Some((3, 1_500 * 1_500)));
        assert_eq!(grid.nearest(point(2_000, 500), |_, _| false), None);
    }

    #[test]
    fn nearest_breaks_ties_by_lower_handle() {
        let mut grid = Grid::new(point(0, 0), point(99_999, 99_999));
        // Four centres 1,000 units from the query, in four different cells.
        grid.insert(9, point(51_000, 50_000), 10).unwrap();
        grid.insert(4, point(49_000, 50_000), 10).unwrap();
        grid.insert(7, point(50_000, 51_000), 10).unwrap();
        grid.insert(6, point(50_000, 49_000), 10).unwrap();
        let at = point(50_000, 50_000);
        assert_eq!(grid.nearest(at, |_, _| true), Some((4, 1_000_000)));
        assert_eq!(grid.nearest(at, |handle, _| handle != 4), Some((6, 1_000_000)));
        assert_eq!(grid.nearest(point(0, 0), |_, _| true), Some((4, 49_000 * 49_000 + 50_000 * 50_000)));
        assert_eq!(Grid::new(point(0, 0), point(10, 10)).nearest(at, |_, _| true), None);
        // A tie exactly at the edge of the visited cells: the search must look one ring
        // further for a lower handle. Cells of 4 units; (2, 2) is 2 from the next column.
        let mut grid = Grid::new(point(0, 0), point(1_023, 1_023));
        grid.insert(9, point(0, 2), 1).unwrap();
        grid.insert(3, point(4, 2), 1).unwrap();
        assert_eq!(grid.nearest(point(2, 2), |_, _| true), Some((3, 4)));
    }

    #[test]
    fn memory_follows_the_treasures() {
        let live = |scope: &crate::alloc::Scope| scope.counters().bytes_live;
        // 128 x 128 cells of one unit.
        let scope = crate::alloc::Scope::start();
        let mut grid = Grid::new(point(0, 0), point(127, 127));
        assert_eq!(live(&scope), 0, "an empty grid allocates nothing");
        assert!(candidates(&grid, point(5, 5)).is_empty());
        assert_eq!(grid.nearest(point(5, 5), |_, _| true), None);
        // Two tables of 256 words of 16 bytes, and the first allocations (of four entries,
        // as `Vec` makes them) of the two tables of lists and of the centres.
        grid.insert(1, point(5, 5), 0).unwrap();
        let one = live(&scope);
        assert!(one <= 2 * 256 * 16 + 2 * 4 * 24 + 4 * 12, "{one} bytes for one treasure");
        assert_eq!(candidates(&grid, point(5, 5)), [1]);
        assert!(candidates(&grid, point(6, 5)).is_empty());
        // Treasures on every other cell of a row: a list each, and nothing more per cell.
        for handle in 2..66 {
            grid.insert(handle, point(2 * handle as i32, 50), 0).unwrap();
        }
        let many = live(&scope);
        assert!(many - one <= 64 * (2 * 24 + 12) * 2, "{} bytes for 64 more treasures", many - one);
        assert_eq!(candidates(&grid, point(64, 50)), [32]);
        assert!(candidates(&grid, point(65, 50)).is_empty());
        for handle in 2..66 {
            grid.remove(handle, point(2 * handle as i32, 50), 0);
        }
        grid.discs.check();
        grid.centres.check();
        assert_eq!(grid.discs.lists.len(), 1);
        assert!(candidates(&grid, point(64, 50)).is_empty());
        assert_eq!(grid.nearest(point(64, 50), |_, _| true), Some((1, 59 * 59 + 45 * 45)));
    }

    #[test]
    fn order_is_independent_of_history() {
        let treasures =
            [(3u32, point(10, 10), 40u64), (1, point(30, 12), 25), (2, point(20, 20), 5_000), (8, point(15, 15), 30)];
        // Cells of 64 units: the first three discs fit in the cells, the fourth is wide.
        let mut forward = Grid::new(point(0, 0), point(9_999, 9_999));
        let mut backward = Grid::new(point(0, 0), point(9_999, 9_999));
        for &(handle, center, radius) in &treasures {
            forward.insert(handle, center, radius).unwrap();
        }
        backward.insert(99, point(14, 14), 20).unwrap();
        for &(handle, center, radius) in treasures.iter().rev() {
            backward.insert(handle, center, radius).unwrap();
        }
        backward.remove(99, point(14, 14), 20);
        for x in (0..10_000).step_by(97) {
            for y in (0..10_000).step_by(97) {
                assert_eq!(candidates(&forward, point(x, y)), candidates(&backward, point(x, y)));
            }
        }
        assert_eq!(candidates(&forward, point(20, 15)), [1, 3, 8, 2]);
    }

    /// Generated grid bounds: tiny, planar-sized, geographic-sized (centimetres), and huge.
    fn bounds() -> impl Strategy<Value = (Point, Point)> {
        let limit = COORDINATE_ABS_MAX;
        (
            prop_oneof![Just(16i64), Just(200_000), Just(20_000_000), Just(2 * limit)],
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(move |(extent_max, a, b, c, d)| {
                let extent_x = (a % (extent_max as u64 + 1)) as i64;
                let extent_y = (b % (extent_max as u64 + 1)) as i64;
                let min_x = -limit + (c % (2 * limit - extent_x + 1) as u64) as i64;
                let min_y = -limit + (d % (2 * limit - extent_y + 1) as u64) as i64;
                (point(min_x as i32, min_y as i32), point((min_x + extent_x) as i32, (min_y + extent_y) as i32))
            })
    }

    /// A position near `bounds`: up to a quarter of the extent (and 100 units) beyond it.
    fn near(bounds: (Point, Point), a: u32, b: u32) -> Point {
        let coordinate = |low: i32, high: i32, fraction: u32| {
            let margin = (high as i64 - low as i64) / 4 + 100;
            let span = high as i64 - low as i64 + 2 * margin;
            let value = low as i64 - margin + (span as i128 * fraction as i128 / u32::MAX as i128) as i64;
            value.clamp(-COORDINATE_ABS_MAX, COORDINATE_ABS_MAX) as i32
        };
        point(coordinate(bounds.0.x, bounds.1.x, a), coordinate(bounds.0.y, bounds.1.y, b))
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// Place a treasure near the bounds (or on a live one's centre, for ties).
        Insert { a: u32, b: u32, radius_kind: u8, radius: u64, same_centre: Option<usize> },
        /// Remove a live treasure, chosen by index.
        Remove { index: usize },
        /// Query a point near the bounds, inside a live treasure's disc, or anywhere.
        Query { kind: u8, a: u32, b: u32, index: usize, filter: u64 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (any::<u32>(), any::<u32>(), 0..4u8, any::<u64>(), proptest::option::weighted(0.2, any::<usize>()))
                .prop_map(|(a, b, radius_kind, radius, same_centre)| Step::Insert { a, b, radius_kind, radius, same_centre }),
            1 => any::<usize>().prop_map(|index| Step::Remove { index }),
            5 => (0..3u8, any::<u32>(), any::<u32>(), any::<usize>(), any::<u64>())
                .prop_map(|(kind, a, b, index, filter)| Step::Query { kind, a, b, index, filter }),
        ]
    }

    /// A pure eligibility filter drawn from `seed`: some handles out, and sometimes a
    /// distance limit, as a hint radius would be.
    fn filter(seed: u64) -> impl Fn(u32, u64) -> bool {
        move |handle: u32, distance_squared: u64| {
            let mixed = (handle as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60;
            let keep = match seed % 4 {
                0 => true,
                1 => mixed.is_multiple_of(2),
                _ => mixed.is_multiple_of(8),
            };
            let limit = if seed & 16 == 0 { u64::MAX } else { (seed >> 8) % (1 << 50) };
            keep && distance_squared <= limit
        }
    }

    fn check_model(bounds: (Point, Point), steps: Vec<Step>) {
        let mut grid = Grid::new(bounds.0, bounds.1);
        let cell_size = grid.cell_size();
        let mut model: Vec<(u32, Point, u64)> = Vec::new();
        let mut next_handle: u32 = 0;
        for step in steps {
            match step {
                Step::Insert { a, b, radius_kind, radius, same_centre } => {
                    let center = match same_centre {
                        Some(index) if !model.is_empty() => model[index % model.len()].1,
                        _ => near(bounds, a, b),
                    };
                    let radius = match radius_kind {
                        0 => 0,
                        1 => radius % (2 * cell_size + 1),
                        2 => radius % (32 * cell_size + 1),
                        _ => radius % (RADIUS_MAX as u64 + 1),
                    };
                    // An odd multiplier permutes u32, so handles are unique but unordered.
                    let handle = next_handle.wrapping_mul(0x9E37_79B1);
                    next_handle += 1;
                    match grid.insert(handle, center, radius) {
                        Ok(()) => model.push((handle, center, radius)),
                        Err(GridFull) => assert_eq!(grid.wide.len(), GRID_WIDE_TREASURES_MAX as usize),
                    }
                }
                Step::Remove { index } => {
                    if !model.is_empty() {
                        let (handle, center, radius) = model.swap_remove(index % model.len());
                        grid.remove(handle, center, radius);
                    }
                }
                Step::Query { kind, a, b, index, filter: seed } => {
                    let at = match kind {
                        0 if !model.is_empty() => {
                            // A point inside a live disc (or its centre, if the disc is huge).
                            let (_, center, radius) = model[index % model.len()];
                            let reach = (radius as i64 / 2).min(1 << 29);
                            let offset = |fraction: u32| {
                                (reach as i128 * 2 * fraction as i128 / u32::MAX as i128) as i64 - reach
                            };
                            let clamp = |value: i64| value.clamp(-COORDINATE_ABS_MAX, COORDINATE_ABS_MAX) as i32;
                            point(clamp(center.x as i64 + offset(a)), clamp(center.y as i64 + offset(b)))
                        }
                        1 => near(
                            (
                                point(-COORDINATE_ABS_MAX as i32, -COORDINATE_ABS_MAX as i32),
                                point(COORDINATE_ABS_MAX as i32, COORDINATE_ABS_MAX as i32),
                            ),
                            a,
                            b,
                        ),
                        _ => near(bounds, a, b),
                    };
                    check_query(&grid, &model, at, seed);
                }
            }
            grid.discs.check();
            grid.centres.check();
        }
        assert_eq!(grid.all_centres.len(), model.len());
    }

    fn check_query(grid: &Grid, model: &[(u32, Point, u64)], at: Point, seed: u64) {
        let found = candidates(grid, at);
        let mut unique = found.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), found.len(), "a candidate reported twice at {at:?}");
        for &(handle, center, radius) in model {
            if distance_squared(at, center) <= radius as u128 as u64 * radius {
                assert!(found.contains(&handle), "treasure {handle} at {center:?} r {radius} missed at {at:?}");
            }
        }
        for handle in &found {
            assert!(model.iter().any(|(live, _, _)| live == handle), "unknown candidate {handle}");
        }
        let eligible = filter(seed);
        let expected = model
            .iter()
            .map(|&(handle, center, _)| (distance_squared(at, center), handle))
            .filter(|&(distance, handle)| eligible(handle, distance))
            .min()
            .map(|(distance, handle)| (handle, distance));
        assert_eq!(grid.nearest(at, &eligible), expected, "nearest to {at:?}, filter {seed}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn grid_matches_brute_force(bounds in bounds(), steps in proptest::collection::vec(step(), 1..200)) {
            check_model(bounds, steps);
        }
    }

    /// Not a test with a verdict: prints the live bytes of an empty grid, of an empty
    /// hunt (everything `Shard` keeps per hunt: its box and the hunt's own tables) and of
    /// grids holding the simulator's treasures, for the record. Run with
    /// `cargo test --release --lib grid::tests::measure_memory -- --nocapture`.
    #[test]
    fn measure_memory() {
        use crate::event::{Coordinates, HuntOptions, HuntSpec, Position};
        use crate::shard::Shard;
        let live = |scope: &crate::alloc::Scope| scope.counters().bytes_live;
        // The simulator's hunt: 100,000 units square (98 x 98 cells of 1,024 units).
        let (min, max) = (point(0, 0), point(99_999, 99_999));
        let scope = crate::alloc::Scope::start();
        let grid = Grid::new(min, max);
        println!("empty grid over 100,000 x 100,000: {} bytes", live(&scope));
        drop(grid);
        let scope = crate::alloc::Scope::start();
        let grid = Grid::new(point(0, 0), point(127, 127));
        println!("empty grid of 128 x 128 cells: {} bytes", live(&scope));
        drop(grid);
        let spec = HuntSpec {
            coordinates: Coordinates::Planar,
            min: Position::new(0, 0),
            max: Position::new(99_999, 99_999),
            start: 0,
            end: u64::MAX,
            options: HuntOptions::default(),
        };
        let hunts = 1_000;
        let mut shard = Shard::new();
        // The shard's own table is sized first, so only the hunts are counted.
        shard.hunts.reserve(hunts as usize);
        let scope = crate::alloc::Scope::start();
        for hunt in 0..hunts {
            shard.apply(&crate::event::Event::CreateHunt { hunt, spec }, 0);
        }
        println!(
            "empty hunt over 100,000 x 100,000: {} bytes each ({hunts} hunts; a Hunt is {} bytes, its Grid {})",
            live(&scope) / hunts as i64,
            size_of::<crate::hunt::Hunt>(),
            size_of::<Grid>()
        );
        drop(shard);
        let mut random = crate::rng::Rng::new(7);
        for treasures in [1u32, 10, 200, 1_000, 10_000] {
            let scope = crate::alloc::Scope::start();
            let mut grid = Grid::new(min, max);
            for handle in 0..treasures {
                let center = point(random.below(100_000) as i32, random.below(100_000) as i32);
                grid.insert(handle, center, random.between(50, 200) as u64).unwrap();
            }
            println!("grid with {treasures} treasures (radius 50..200): {} bytes", live(&scope));
        }
    }

    /// Not a benchmark with a verdict: prints what a candidate query and a nearest query
    /// cost, for the record. Run with
    /// `cargo test --release --lib grid::tests::measure_query_cost -- --nocapture`.
    #[test]
    fn measure_query_cost() {
        let mut random = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random
        };
        let mut grid = Grid::new(point(0, 0), point(99_999, 99_999));
        for handle in 0..1_000 {
            let center = point((next() % 100_000) as i32, (next() % 100_000) as i32);
            grid.insert(handle, center, 50 + next() % 450).unwrap();
        }
        let points: Vec<Point> =
            (0..65_536).map(|_| point((next() % 100_000) as i32, (next() % 100_000) as i32)).collect();
        let queries = if cfg!(debug_assertions) { 4_096 } else { 200_000 };
        let mut reported: u64 = 0;
        // The best of many short rounds, since a shared machine only ever adds time.
        let (mut candidate_ns, mut nearest_ns) = (f64::MAX, f64::MAX);
        let rounds = if cfg!(debug_assertions) { 2 } else { 50 };
        for _ in 0..rounds {
            let start = std::time::Instant::now();
            for query in 0..queries {
                grid.for_each_candidate(std::hint::black_box(points[query % points.len()]), |handle| {
                    reported += handle as u64 & 1 | 1;
                });
            }
            candidate_ns = candidate_ns.min(start.elapsed().as_nanos() as f64 / queries as f64);
            let nearest_queries = queries / 10;
            let start = std::time::Instant::now();
            for query in 0..nearest_queries {
                let found = grid.nearest(std::hint::black_box(points[query % points.len()]), |_, _| true);
                reported += found.map_or(0, |(handle, _)| handle as u64 & 1);
            }
            nearest_ns = nearest_ns.min(start.elapsed().as_nanos() as f64 / nearest_queries as f64);
        }
        println!(
            "1,000 treasures (radius 50..500) in a 100,000 x 100,000 hunt, {} cells of {}: \
             for_each_candidate {candidate_ns:.1} ns, nearest {nearest_ns:.1} ns per query ({reported} reported)",
            grid.columns * grid.rows,
            grid.cell_size()
        );
    }
}
