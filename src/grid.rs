//! A hunt's uniform grid of treasure discs. (Stub: being written.)

use crate::geo::Point;

/// Uniform spatial grid over a hunt's bounds.
#[derive(Debug)]
pub struct Grid {
    _todo: (),
}

/// The grid cannot register one more wide treasure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridFull;

impl Grid {
    /// A grid over the rectangle `min..=max` (internal units).
    pub fn new(_min: Point, _max: Point) -> Grid {
        todo!()
    }
    /// Registers treasure `handle`'s disc.
    pub fn insert(&mut self, _handle: u32, _center: Point, _radius: u64) -> Result<(), GridFull> {
        todo!()
    }
    /// Unregisters a disc registered with the same arguments.
    pub fn remove(&mut self, _handle: u32, _center: Point, _radius: u64) {
        todo!()
    }
    /// Calls `f` for every treasure whose disc may contain `point` (a superset).
    pub fn for_each_candidate(&self, _point: Point, _f: impl FnMut(u32)) {
        todo!()
    }
    /// The nearest treasure (by centre) for which `eligible(handle, distance_squared)` holds.
    pub fn nearest(&self, _point: Point, _eligible: impl FnMut(u32, u64) -> bool) -> Option<(u32, u64)> {
        todo!()
    }
}
