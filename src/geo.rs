//! Coordinates: projection of input positions to internal planar units, and integer
//! distance math.
//!
//! A hunt owns one [`Projection`], fixed when the hunt is created. Every position that
//! enters the hunt (a treasure placed, a player moved, a dig) is projected once, on
//! entry, to a [`Point`]; from then on the grid (`grid.rs`), the claim rule and the hints
//! work only with integer planar math from this file (`distance_squared`, `distance`,
//! `isqrt`). Radii and distances cross the same boundary through `length_to_units` and
//! `units_to_length`. Planar hunts project by identity. Geographic hunts project to
//! centimetres on an equidistant conic projection centred on the hunt, which keeps planar
//! distances within 0.02% of great-circle distances for hunts up to
//! `GEO_SPAN_METRES_MAX` across at every accepted latitude (the tests measure it).
//!
//! Only basic IEEE-754 operations (`+ - * /`, `round`) touch positions, and the few
//! trigonometric constants a projection needs are computed by this file's own series
//! rather than the platform's `libm`, so a replay on another machine projects every
//! position to the same centimetre.

use crate::constants::{
    COORDINATE_ABS_MAX, GEO_SPAN_METRES_MAX, GEO_UNITS_PER_METRE, LATITUDE_ABS_MAX, LONGITUDE_ABS_MAX,
};
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

impl Point {
    /// A point from its two coordinates.
    pub const fn new(x: i32, y: i32) -> Point {
        Point { x, y }
    }
}

/// Squared distance between two points, in squared internal units.
pub fn distance_squared(a: Point, b: Point) -> u64 {
    let dx = (a.x as i64 - b.x as i64).unsigned_abs();
    let dy = (a.y as i64 - b.y as i64).unsigned_abs();
    // Each difference is below 2^32, so each square is below 2^64; their sum fits too
    // for points within COORDINATE_ABS_MAX, which is all a projection produces.
    dx * dx + dy * dy
}

/// Distance between two points in internal units, rounded down.
pub fn distance(a: Point, b: Point) -> u64 {
    isqrt(distance_squared(a, b))
}

/// The integer square root of `n`: the largest `r` with `r * r <= n`.
pub fn isqrt(n: u64) -> u64 {
    // Below 2^52 the conversion is exact and the correctly rounded square root never
    // rounds up across an integer (sqrt(k^2 - 1) lies more than half an ulp below k for
    // k < 2^26), so the float answer is already exact: the common case on every move.
    if n < 1 << 52 {
        return (n as f64).sqrt() as u64;
    }
    // The float estimate is within one of the answer for every u64 (a double carries 53
    // bits, the root needs 32), so two short corrections make it exact.
    let mut root = (n as f64).sqrt() as u64;
    while root as u128 * root as u128 > n as u128 {
        root -= 1;
    }
    while (root as u128 + 1) * (root as u128 + 1) <= n as u128 {
        root += 1;
    }
    root
}

/// The smallest `r` with `r * r >= n`: a distance rounded up, for refusals that must name
/// a distance beyond the limit it broke.
pub fn isqrt_up(n: u64) -> u64 {
    let root = isqrt(n);
    // `root` is below 2^32, so its square fits.
    if root * root == n {
        root
    } else {
        root + 1
    }
}

/// The Earth's mean radius, in metres (IUGG).
pub const EARTH_RADIUS_METRES: f64 = 6_371_008.8;

/// Radians in one input unit of angle (1e-7 degrees).
const RADIANS_PER_UNIT: f64 = core::f64::consts::PI / 180.0 / 1e7;

/// Input units of angle (1e-7 degrees) in 90 degrees: the furthest a geographic position
/// may lie from its hunt's central meridian and still be projected.
const QUARTER_TURN_UNITS: i64 = 900_000_000;

/// Great-circle distance between two geographic positions (1e-7 degrees), in metres, by
/// the haversine formula on a sphere of the Earth's mean radius. For tests and tools: the
/// engine itself never calls it, and it uses the platform's trigonometry.
pub fn haversine_metres(a: Position, b: Position) -> f64 {
    let latitude_a = a.y as f64 * RADIANS_PER_UNIT;
    let latitude_b = b.y as f64 * RADIANS_PER_UNIT;
    let latitude_delta = latitude_b - latitude_a;
    let longitude_delta = (b.x as i64 - a.x as i64) as f64 * RADIANS_PER_UNIT;
    let h = (latitude_delta / 2.0).sin().powi(2)
        + latitude_a.cos() * latitude_b.cos() * (longitude_delta / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_METRES * h.sqrt().min(1.0).asin()
}

/// Sine and cosine of an angle of at most a quarter turn, by Taylor series. Only `+`, `*`
/// and `/` are used, so the result is the same on every platform, unlike `f64::sin`.
fn sin_cos(radians: f64) -> (f64, f64) {
    assert!(radians.abs() <= core::f64::consts::FRAC_PI_2);
    let square = radians * radians;
    let mut sine = 0.0;
    let mut cosine = 0.0;
    let mut sine_term = radians;
    let mut cosine_term = 1.0;
    // Terms fall below 1e-20 by the 12th at a quarter turn (1.57^24 / 24! < 1e-19).
    for k in 0..14 {
        sine += sine_term;
        cosine += cosine_term;
        let k = k as f64;
        sine_term *= -square / ((2.0 * k + 2.0) * (2.0 * k + 3.0));
        cosine_term *= -square / ((2.0 * k + 1.0) * (2.0 * k + 2.0));
    }
    (sine, cosine)
}

/// Projects a hunt's input positions once, on entry, to internal planar units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Projection {
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Planar,
    Geographic(Conic),
}

/// An equidistant conic projection whose standard parallel is the hunt's central latitude
/// and whose central meridian is the hunt's central longitude.
///
/// Why this projection: the plain equirectangular projection at the origin latitude
/// (one multiply per axis) errs by 1.8% across a 20 km hunt at 85 degrees, because a
/// parallel's length changes by that much over 10 km there. Scaling each point's easting
/// by the cosine of its own latitude fixes the parallels but shears the meridians (0.9%);
/// correcting the northing for the meridians' convergence brings 20 km hunts under 0.1%
/// but 200 km hunts near 85 degrees still err by 1.6%. The equidistant conic
/// keeps meridians true to length, parallels true at the centre and bends them as the
/// Earth does, so its error is second order in the hunt's size at every latitude. Written
/// around the origin (below) it needs no trigonometry per point: about a dozen
/// multiply-adds, including two short polynomials, and no special case at the equator.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Conic {
    /// The hunt's centre, in 1e-7 degrees.
    origin: Position,
    /// Metres of meridian arc per 1e-7 degree of latitude.
    metres_per_unit: f64,
    /// Cosine of the origin latitude.
    origin_cos: f64,
    /// Sine of the origin latitude times radians per unit: the cone's convergence, in
    /// radians of map angle per 1e-7 degree of longitude.
    convergence_per_unit: f64,
}

impl Conic {
    fn new(origin: Position) -> Conic {
        let (origin_sin, origin_cos) = sin_cos(origin.y as f64 * RADIANS_PER_UNIT);
        Conic {
            origin,
            metres_per_unit: EARTH_RADIUS_METRES * RADIANS_PER_UNIT,
            origin_cos,
            convergence_per_unit: origin_sin * RADIANS_PER_UNIT,
        }
    }

    /// Easting and northing of a position, in metres from the origin.
    ///
    /// The textbook form is `x = rho sin(theta)`, `y = rho0 - rho cos(theta)` with
    /// `rho = R (cot(phi0) - (phi - phi0))` and `theta = sin(phi0) lambda`. Multiplying
    /// through by `sin(phi0)` removes the cotangent that is infinite at the equator:
    /// `x = m sin(theta)/theta`, `y = R (phi - phi0) + m theta (1 - cos(theta))/theta^2`,
    /// with `m = R lambda (cos(phi0) - sin(phi0) (phi - phi0))`, the length of the
    /// parallel through the point. Both ratios are even series in `theta`, and `theta`
    /// stays below a quarter turn, where four terms are exact to 1e-6 of the correction.
    fn metres(&self, position: Position) -> (f64, f64) {
        let latitude_units = (position.y as i64 - self.origin.y as i64) as f64;
        let longitude_units = (position.x as i64 - self.origin.x as i64) as f64;
        let north_metres = self.metres_per_unit * latitude_units;
        let parallel_metres =
            self.metres_per_unit * longitude_units * (self.origin_cos - self.convergence_per_unit * latitude_units);
        let theta = self.convergence_per_unit * longitude_units;
        let t = theta * theta;
        // sin(theta)/theta = 1 - t/6 + t^2/120 - t^3/5040 + t^4/362880.
        let sine_ratio = 1.0 - t / 6.0 * (1.0 - t / 20.0 * (1.0 - t / 42.0 * (1.0 - t / 72.0)));
        // (1 - cos(theta))/theta = theta/2 - theta^3/24 + theta^5/720 - theta^7/40320.
        let versine_ratio = theta / 2.0 * (1.0 - t / 12.0 * (1.0 - t / 30.0 * (1.0 - t / 56.0)));
        (parallel_metres * sine_ratio, north_metres + parallel_metres * versine_ratio)
    }
}

/// Returns true if and only if `position` is a valid longitude and latitude.
fn is_valid_geographic(position: Position) -> bool {
    position.x.unsigned_abs() <= LONGITUDE_ABS_MAX.unsigned_abs()
        && position.y.unsigned_abs() <= LATITUDE_ABS_MAX.unsigned_abs()
}

/// Metres to internal units (centimetres), rounded to the nearest; `None` beyond the
/// coordinate range.
fn metres_to_coordinate(metres: f64) -> Option<i32> {
    let units = (metres * GEO_UNITS_PER_METRE as f64).round();
    // The comparison also rejects NaN, which no finite input produces.
    if units.abs() <= COORDINATE_ABS_MAX as f64 {
        Some(units as i32)
    } else {
        None
    }
}

impl Projection {
    /// The identity projection of planar hunts.
    pub fn planar() -> Projection {
        Projection { kind: Kind::Planar }
    }

    /// A projection for a geographic hunt with these corners (1e-7 degrees: x is the
    /// longitude, y the latitude). The origin is the centre of the bounds.
    pub fn geographic(min: Position, max: Position) -> Result<Projection, &'static str> {
        if !is_valid_geographic(min) || !is_valid_geographic(max) {
            return Err("geographic bounds: latitude must be within 85 degrees and longitude within 180 degrees");
        }
        if min.y > max.y {
            return Err("geographic bounds: the minimum latitude exceeds the maximum");
        }
        if min.x > max.x {
            return Err(
                "geographic bounds: the minimum longitude exceeds the maximum (hunts may not cross the antimeridian)",
            );
        }
        let latitude_span_metres = (max.y as i64 - min.y as i64) as f64 * EARTH_RADIUS_METRES * RADIANS_PER_UNIT;
        // A hunt is widest along the parallel nearest the equator, so measure there.
        let latitude_nearest_equator =
            if min.y <= 0 && max.y >= 0 { 0 } else { min.y.unsigned_abs().min(max.y.unsigned_abs()) as i32 };
        let (_, cos_widest) = sin_cos(latitude_nearest_equator as f64 * RADIANS_PER_UNIT);
        let longitude_span_metres =
            (max.x as i64 - min.x as i64) as f64 * EARTH_RADIUS_METRES * RADIANS_PER_UNIT * cos_widest;
        if latitude_span_metres > GEO_SPAN_METRES_MAX as f64 || longitude_span_metres > GEO_SPAN_METRES_MAX as f64 {
            return Err("geographic bounds: a hunt may span at most 200 km along each axis");
        }
        let origin =
            Position::new(((min.x as i64 + max.x as i64) / 2) as i32, ((min.y as i64 + max.y as i64) / 2) as i32);
        Ok(Projection { kind: Kind::Geographic(Conic::new(origin)) })
    }

    /// Returns true if and only if this projection is for a geographic hunt.
    pub fn is_geographic(&self) -> bool {
        matches!(self.kind, Kind::Geographic(_))
    }

    /// Internal point of an input position; `None` if outside the valid coordinate range.
    ///
    /// Planar: `None` if either coordinate exceeds `COORDINATE_ABS_MAX`. Geographic: `None`
    /// if the position is not a valid latitude (within 85 degrees) and longitude, lies more
    /// than 90 degrees of longitude from the hunt's centre (where the projection's series
    /// would lose accuracy), or projects beyond `COORDINATE_ABS_MAX` centimetres (about
    /// 10,700 km) from the centre. Positions outside the hunt's bounds but within these
    /// limits are projected faithfully, so distances from them still make sense.
    pub fn project(&self, position: Position) -> Option<Point> {
        match &self.kind {
            Kind::Planar => {
                let limit = COORDINATE_ABS_MAX as u64;
                if position.x.unsigned_abs() as u64 <= limit && position.y.unsigned_abs() as u64 <= limit {
                    Some(Point::new(position.x, position.y))
                } else {
                    None
                }
            }
            Kind::Geographic(conic) => {
                if !is_valid_geographic(position) {
                    return None;
                }
                if (position.x as i64 - conic.origin.x as i64).abs() > QUARTER_TURN_UNITS {
                    return None;
                }
                let (east_metres, north_metres) = conic.metres(position);
                Some(Point::new(metres_to_coordinate(east_metres)?, metres_to_coordinate(north_metres)?))
            }
        }
    }

    /// The smallest internal rectangle holding the projection of every position in the
    /// input rectangle `min..=max`, as (min, max); `None` if a corner cannot be projected.
    ///
    /// A geographic rectangle projects to a sector of an annulus, not a rectangle: its
    /// parallels become arcs bowed away from the pole. Its extremes lie at the four
    /// corners and at the two points where the central meridian meets the parallels, so
    /// those six are enough. This is what a hunt's grid should cover.
    pub fn project_bounds(&self, min: Position, max: Position) -> Option<(Point, Point)> {
        let middle = ((min.x as i64 + max.x as i64) / 2) as i32;
        let candidates = [
            min,
            max,
            Position::new(min.x, max.y),
            Position::new(max.x, min.y),
            Position::new(middle, min.y),
            Position::new(middle, max.y),
        ];
        let first = self.project(candidates[0])?;
        let mut low = first;
        let mut high = first;
        for position in &candidates[1..] {
            let point = self.project(*position)?;
            low = Point::new(low.x.min(point.x), low.y.min(point.y));
            high = Point::new(high.x.max(point.x), high.y.max(point.y));
        }
        Some((low, high))
    }

    /// Internal units of a radius or distance given in input units (world units or metres).
    pub fn length_to_units(&self, length: u32) -> u64 {
        match self.kind {
            Kind::Planar => length as u64,
            Kind::Geographic(_) => length as u64 * GEO_UNITS_PER_METRE as u64,
        }
    }

    /// A distance in internal units expressed in input units (world units or metres), rounded down.
    pub fn units_to_length(&self, units: u64) -> u64 {
        match self.kind {
            Kind::Planar => units,
            Kind::Geographic(_) => units / GEO_UNITS_PER_METRE as u64,
        }
    }

    /// A distance in internal units expressed in input units, rounded up: what a refusal
    /// reports as the distance that broke a limit, so it never reads as equal to the limit.
    pub fn units_to_length_up(&self, units: u64) -> u64 {
        match self.kind {
            Kind::Planar => units,
            Kind::Geographic(_) => units.div_ceil(GEO_UNITS_PER_METRE as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rng::Rng;

    #[test]
    fn planar_distances() {
        fn check(a: (i32, i32), b: (i32, i32), squared: u64, rounded_down: u64) {
            let (a, b) = (Point::new(a.0, a.1), Point::new(b.0, b.1));
            assert_eq!(distance_squared(a, b), squared, "{a:?} {b:?}");
            assert_eq!(distance_squared(b, a), squared, "{a:?} {b:?}");
            assert_eq!(distance(a, b), rounded_down, "{a:?} {b:?}");
        }
        let max = COORDINATE_ABS_MAX as i32;
        check((0, 0), (0, 0), 0, 0);
        check((0, 0), (3, 4), 25, 5);
        check((-3, -4), (0, 0), 25, 5);
        check((1, 1), (2, 2), 2, 1);
        check((0, 0), (2, 3), 13, 3);
        check((-max, 0), (max, 0), 1 << 62, 1 << 31);
        check((-max, -max), (max, max), 1 << 63, 3_037_000_499);
    }

    #[test]
    fn isqrt_edges() {
        fn check(n: u64, root: u64) {
            assert_eq!(isqrt(n), root, "isqrt({n})");
        }
        check(0, 0);
        check(1, 1);
        check(2, 1);
        check(3, 1);
        check(4, 2);
        check(99, 9);
        check(100, 10);
        for root in [2u64, 1 << 16, 3_037_000_499, (1 << 26) + 1, (1 << 32) - 1] {
            check(root * root, root);
            check(root * root - 1, root - 1);
            check(root * root + 1, root);
        }
        check(u64::MAX, (1 << 32) - 1);
        check(u64::MAX - 1, (1 << 32) - 1);
        for (n, root_up) in [(0, 0), (1, 1), (2, 2), (4, 2), (5, 3), (113, 11), (u64::MAX, 1 << 32)] {
            assert_eq!(isqrt_up(n), root_up, "isqrt_up({n})");
        }
        // The float fast path ends at 2^52: the squares just below and above it, and the
        // largest roots it serves, where rounding up would show first.
        let fast_end = 1u64 << 26;
        for root in (1..100_000).chain(fast_end - 100_000..fast_end + 100_000) {
            check(root * root, root);
            check(root * root - 1, root - 1);
            check(root * root + 1, root);
        }
        let mut random = Rng::new(7);
        for _ in 0..10_000 {
            let n = random.next_u64() >> (random.next_u64() % 64);
            let root = isqrt(n) as u128;
            assert!(root * root <= n as u128);
            assert!((root + 1) * (root + 1) > n as u128);
        }
    }

    #[test]
    fn sin_cos_matches_platform() {
        let mut angle = -core::f64::consts::FRAC_PI_2;
        while angle <= core::f64::consts::FRAC_PI_2 {
            let (sine, cosine) = sin_cos(angle);
            assert!((sine - angle.sin()).abs() < 1e-15, "{angle}");
            assert!((cosine - angle.cos()).abs() < 1e-15, "{angle}");
            angle += 0.001;
        }
    }

    #[test]
    fn planar_projection() {
        fn check(position: (i32, i32), expect: Option<(i32, i32)>) {
            let projected = Projection::planar().project(Position::new(position.0, position.1));
            assert_eq!(projected, expect.map(|(x, y)| Point::new(x, y)), "{position:?}");
        }
        let max = COORDINATE_ABS_MAX as i32;
        check((0, 0), Some((0, 0)));
        check((-5, 7), Some((-5, 7)));
        check((max, -max), Some((max, -max)));
        check((max + 1, 0), None);
        check((0, -max - 1), None);
        check((i32::MIN, 0), None);
        let planar = Projection::planar();
        assert!(!planar.is_geographic());
        assert_eq!(planar.length_to_units(1234), 1234);
        assert_eq!(planar.units_to_length(1234), 1234);
    }

    #[test]
    fn geographic_projection_round_numbers() {
        // A hunt centred on (0, 0): the cone degenerates to a cylinder, so one hundredth
        // of a degree is R * pi / 18000 = 1111.9508 m along either axis.
        let equator =
            Projection::geographic(Position::new(-1_000_000, -1_000_000), Position::new(1_000_000, 1_000_000))
                .expect("valid bounds");
        fn check(projection: &Projection, position: (i32, i32), expect: Option<(i32, i32)>) {
            let projected = projection.project(Position::new(position.0, position.1));
            assert_eq!(projected, expect.map(|(x, y)| Point::new(x, y)), "{position:?}");
        }
        check(&equator, (0, 0), Some((0, 0)));
        check(&equator, (0, 100_000), Some((0, 111_195)));
        check(&equator, (100_000, 0), Some((111_195, 0)));
        check(&equator, (-100_000, -100_000), Some((-111_195, -111_195)));
        check(&equator, (0, 850_000_001), None);
        check(&equator, (1_800_000_001, 0), None);
        // 90 degrees of longitude from the centre is the furthest projected; at the equator
        // that is 10,007.6 km, still inside the coordinate range.
        check(&equator, (900_000_000, 0), Some((1_000_755_722, 0)));
        check(&equator, (900_000_001, 0), None);
        // Latitude 60: along the central meridian distances are true; along the central
        // parallel a hundredth of a degree is half as long (cos 60 = 1/2), and the parallel
        // bends towards the equator by x^2 tan(60) / 2R = 4.2 cm.
        let north =
            Projection::geographic(Position::new(99_000_000, 595_000_000), Position::new(101_000_000, 605_000_000))
                .expect("valid bounds");
        check(&north, (100_000_000, 600_000_000), Some((0, 0)));
        check(&north, (100_000_000, 600_100_000), Some((0, 111_195)));
        check(&north, (100_100_000, 600_000_000), Some((55_598, 4)));
        check(&north, (99_900_000, 600_000_000), Some((-55_598, 4)));
        assert!(north.is_geographic());
        assert_eq!(north.length_to_units(25), 2_500);
        assert_eq!(north.units_to_length(2_599), 25);
        assert_eq!(north.units_to_length(99), 0);
        assert_eq!(north.units_to_length_up(2_500), 25);
        assert_eq!(north.units_to_length_up(2_501), 26);
        assert_eq!(Projection::planar().units_to_length_up(1234), 1234);
    }

    #[test]
    fn invalid_geographic_bounds() {
        fn check(min: (i32, i32), max: (i32, i32), expect: Result<(), &str>) {
            let result = Projection::geographic(Position::new(min.0, min.1), Position::new(max.0, max.1));
            assert_eq!(result.map(|_| ()), expect, "{min:?} {max:?}");
        }
        let range = Err("geographic bounds: latitude must be within 85 degrees and longitude within 180 degrees");
        let antimeridian =
            Err("geographic bounds: the minimum longitude exceeds the maximum (hunts may not cross the antimeridian)");
        let span = Err("geographic bounds: a hunt may span at most 200 km along each axis");
        check((0, 0), (0, 0), Ok(()));
        check((1_799_000_000, 849_000_000), (1_800_000_000, 850_000_000), Ok(()));
        check((-1_800_000_000, -850_000_000), (-1_799_000_000, -849_000_000), Ok(()));
        check((0, 849_000_000), (0, 850_000_001), range);
        check((0, -850_000_001), (0, 0), range);
        check((1_799_000_000, 0), (1_800_000_001, 0), range);
        check((0, 10), (0, 0), Err("geographic bounds: the minimum latitude exceeds the maximum"));
        check((1_799_000_000, 0), (-1_799_000_000, 0), antimeridian);
        // 1.8 degrees of latitude is 200.2 km; 1.79 degrees is 199.0 km.
        check((0, 0), (0, 18_000_000), span);
        check((0, 0), (0, 17_900_000), Ok(()));
        check((0, 0), (18_000_000, 0), span);
        // At 60 degrees a degree of longitude is half as long, so 3.5 degrees fit...
        check((0, 600_000_000), (35_000_000, 610_000_000), Ok(()));
        // ...but not when the box reaches down to where the parallels are longer.
        check((0, 580_000_000), (35_000_000, 600_000_000), span);
        // Across the equator the widest parallel is the equator itself.
        check((0, -10_000_000), (18_000_000, 10_000_000), span);
    }

    /// Worst relative error of planar against great-circle distance over random pairs of
    /// points at least 10 m apart, in boxes `span_metres` across centred on `latitudes`:
    /// between the projected centimetres, and between the projection's exact metres
    /// (which separates the projection's own error from rounding to centimetres).
    fn worst_relative_error(span_metres: f64, latitudes: &[i64], random: &mut Rng) -> (f64, f64) {
        let metres_per_unit = EARTH_RADIUS_METRES * RADIANS_PER_UNIT;
        let half_latitude_units = (span_metres / 2.0 / metres_per_unit) as i64;
        let mut worst: f64 = 0.0;
        let mut worst_exact: f64 = 0.0;
        for &latitude in latitudes {
            // Keep the box inside the accepted latitudes.
            let limit = LATITUDE_ABS_MAX as i64 - half_latitude_units;
            let centre_latitude = latitude.clamp(-limit, limit);
            let (_, cos_widest) =
                sin_cos((centre_latitude.abs() - half_latitude_units).max(0) as f64 * RADIANS_PER_UNIT);
            let half_longitude_units = (span_metres / 2.0 / metres_per_unit / cos_widest) as i64;
            let centre_longitude = random.between(-1_700_000_000, 1_700_000_000);
            let min = Position::new(
                (centre_longitude - half_longitude_units) as i32,
                (centre_latitude - half_latitude_units) as i32,
            );
            let max = Position::new(
                (centre_longitude + half_longitude_units) as i32,
                (centre_latitude + half_latitude_units) as i32,
            );
            let projection = Projection::geographic(min, max).expect("valid bounds");
            let mut pairs = 0;
            while pairs < 20_000 {
                let a = Position::new(
                    random.between(min.x as i64, max.x as i64) as i32,
                    random.between(min.y as i64, max.y as i64) as i32,
                );
                // Half the pairs span the box; half are short, where rounding to whole
                // centimetres weighs most.
                let b = if random.next_u64().is_multiple_of(2) {
                    Position::new(
                        random.between(min.x as i64, max.x as i64) as i32,
                        random.between(min.y as i64, max.y as i64) as i32,
                    )
                } else {
                    let reach = 20_000;
                    Position::new(
                        (a.x as i64 + random.between(-reach, reach)).clamp(min.x as i64, max.x as i64) as i32,
                        (a.y as i64 + random.between(-reach / 10, reach / 10)).clamp(min.y as i64, max.y as i64) as i32,
                    )
                };
                let great_circle_metres = haversine_metres(a, b);
                if great_circle_metres < 10.0 {
                    continue;
                }
                pairs += 1;
                let planar_units = distance_squared(projection.project(a).unwrap(), projection.project(b).unwrap());
                let planar_metres = (planar_units as f64).sqrt() / GEO_UNITS_PER_METRE as f64;
                let error = (planar_metres - great_circle_metres).abs() / great_circle_metres;
                worst = worst.max(error);
                let Kind::Geographic(conic) = projection.kind else { unreachable!("geographic") };
                let ((ax, ay), (bx, by)) = (conic.metres(a), conic.metres(b));
                let exact_metres = (ax - bx).hypot(ay - by);
                worst_exact = worst_exact.max((exact_metres - great_circle_metres).abs() / great_circle_metres);
            }
        }
        (worst, worst_exact)
    }

    #[test]
    fn geographic_distances_agree_with_haversine() {
        let mut random = Rng::new(2024);
        let mut latitudes: Vec<i64> =
            [0, 30, 45, 60, 75, 85].iter().flat_map(|degrees| [degrees * 10_000_000, -degrees * 10_000_000]).collect();
        for _ in 0..10 {
            latitudes.push(random.between(-850_000_000, 850_000_000));
        }
        let (worst_20_km, exact_20_km) = worst_relative_error(20_000.0, &latitudes, &mut random);
        let (worst_200_km, exact_200_km) = worst_relative_error(GEO_SPAN_METRES_MAX as f64, &latitudes, &mut random);
        println!(
            "worst relative error: {worst_20_km:.6} across 20 km ({exact_20_km:.6} before rounding to centimetres), \
             {worst_200_km:.6} across 200 km ({exact_200_km:.6} before rounding)"
        );
        assert!(exact_20_km < 0.0005, "{exact_20_km}");
        assert!(exact_200_km < 0.0005, "{exact_200_km}");
        assert!(worst_20_km < 0.005, "{worst_20_km}");
        assert!(worst_200_km < 0.005, "{worst_200_km}");
    }

    #[test]
    fn projected_bounds_hold_every_position() {
        let mut random = Rng::new(99);
        for (min, max) in [
            (Position::new(0, 840_000_000), Position::new(20_000_000, 850_000_000)),
            (Position::new(-10_000_000, -850_000_000), Position::new(10_000_000, -840_000_000)),
            (Position::new(-5_000_000, -5_000_000), Position::new(5_000_000, 5_000_000)),
            (Position::new(0, 450_000_000), Position::new(1_000_000, 451_000_000)),
        ] {
            let projection = Projection::geographic(min, max).expect("valid bounds");
            let (low, high) = projection.project_bounds(min, max).expect("projectable");
            for _ in 0..10_000 {
                let position = Position::new(
                    random.between(min.x as i64, max.x as i64) as i32,
                    random.between(min.y as i64, max.y as i64) as i32,
                );
                let point = projection.project(position).unwrap();
                assert!(low.x <= point.x && point.x <= high.x, "{position:?}");
                assert!(low.y <= point.y && point.y <= high.y, "{position:?}");
            }
        }
    }
}
