//! Coordinates: projection of input positions to internal planar units, and integer
//! distance math. (Stub: being written.)

use crate::event::Position;

/// A position in a hunt's internal planar units: world units for planar hunts,
/// centimetres on a local tangent plane for geographic hunts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Point {
    /// Easting.
    pub x: i32,
    /// Northing.
    pub y: i32,
}

/// Squared distance between two points, in squared internal units.
pub fn distance_squared(a: Point, b: Point) -> u64 {
    let dx = (a.x as i64 - b.x as i64).unsigned_abs();
    let dy = (a.y as i64 - b.y as i64).unsigned_abs();
    dx * dx + dy * dy
}

/// Projects a hunt's input positions once, on entry, to internal planar units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Projection {
    _todo: (),
}

impl Projection {
    /// The identity projection of planar hunts.
    pub fn planar() -> Projection {
        todo!()
    }
    /// A projection for a geographic hunt with these corners (1e-7 degrees).
    pub fn geographic(_min: Position, _max: Position) -> Result<Projection, &'static str> {
        todo!()
    }
    /// Internal point of an input position; `None` if outside the valid coordinate range.
    pub fn project(&self, _position: Position) -> Option<Point> {
        todo!()
    }
    /// Internal units of a radius or distance given in input units (world units or metres).
    pub fn length_to_units(&self, _length: u32) -> u64 {
        todo!()
    }
    /// A distance in internal units expressed in input units (world units or metres), rounded down.
    pub fn units_to_length(&self, _units: u64) -> u64 {
        todo!()
    }
}

/// Floor of the square root.
pub fn isqrt(value: u64) -> u64 {
    (value as f64).sqrt() as u64
}

/// Floor of the distance between two points, in internal units.
pub fn distance(a: Point, b: Point) -> u64 {
    isqrt(distance_squared(a, b))
}
