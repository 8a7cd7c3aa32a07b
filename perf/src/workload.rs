//! The treasure-hunt workload the harness sends: a [`World`] (the hunts and treasures a
//! scenario lays out, the same for every target) and each connection's [`Players`],
//! the players it alone drives, producing [`Op`]s in the scenario's mix.
//!
//! Each player belongs to exactly one connection, so its sequence numbers reach the
//! server in order (the protocol orders a hunt's requests per connection, and a player's
//! `seq` must rise). Players walk towards a target treasure, dig near it (within 1.3
//! radii, so some digs miss, as real ones do), pick a new target, get score adjustments
//! and ask for leaderboards and hints: the behaviour of `cairn::simulate`, rebuilt here
//! around connections, metres and geographic coordinates.
//!
//! Positions are kept in metres inside the hunt's square and converted once to the
//! protocol's 1e-7 degrees; Redis gets the same integers printed as decimal degrees, so
//! both servers see identical coordinates.

use cairn::event::{Coordinates, HuntOptions, HuntSpec, Micros, PointsRule, Position, TreasureSpec};
use cairn::rng::Rng;

use crate::scenario::Scenario;

/// Metres per degree of latitude (and of longitude at the equator), as a spherical Earth
/// of mean radius 6371 km gives them.
const METRES_PER_DEGREE: f64 = 111_194.93;
/// Input units (1e-7 degrees) per degree.
const UNITS_PER_DEGREE: f64 = 1e7;

/// One request the harness sends, target-neutral. Hunts are numbered from 0 here; each
/// target maps the index to its own ids or keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A player moves.
    Move { hunt: u32, player: u32, seq: u32, position: Position },
    /// A player digs for a treasure at a position.
    Dig { hunt: u32, player: u32, seq: u32, treasure: u32, position: Position },
    /// A player's score changes.
    Adjust { hunt: u32, player: u32, seq: u32, delta: i32 },
    /// The first `count` of the leaderboard.
    Top { hunt: u32, count: u32 },
    /// A player's rank.
    Rank { hunt: u32, player: u32 },
    /// The leaderboard around a player.
    Around { hunt: u32, player: u32, radius: u32 },
    /// Distance to the nearest claimable treasure.
    Hint { hunt: u32, player: u32 },
}

/// The kinds of [`Op`], in the order of `Mix::bounds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// [`Op::Move`].
    Move,
    /// [`Op::Dig`].
    Dig,
    /// [`Op::Adjust`].
    Adjust,
    /// [`Op::Top`].
    Top,
    /// [`Op::Rank`].
    Rank,
    /// [`Op::Around`].
    Around,
    /// [`Op::Hint`].
    Hint,
}

impl OpKind {
    const ALL: [OpKind; 7] =
        [OpKind::Move, OpKind::Dig, OpKind::Adjust, OpKind::Top, OpKind::Rank, OpKind::Around, OpKind::Hint];
}

/// A treasure as the scenario lays it out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Treasure {
    /// Metres east of the hunt's south-west corner.
    pub x_m: f64,
    /// Metres north of it.
    pub y_m: f64,
    /// Discovery radius, metres.
    pub radius_m: u32,
    /// Points.
    pub value: u32,
    /// Claims allowed.
    pub capacity: u32,
}

/// The hunts and treasures of a scenario: shared, read-only, by every connection.
#[derive(Clone, Debug)]
pub struct World {
    /// The scenario.
    pub scenario: Scenario,
    /// `treasures.count` per hunt, hunt after hunt.
    pub treasures: Vec<Treasure>,
    /// The south-west corner, in input units.
    corner: (f64, f64),
    /// Input units per metre along x (longitude) and y (latitude).
    units_per_m: (f64, f64),
}

impl World {
    /// Lays out the scenario's treasures from its seed.
    pub fn new(scenario: &Scenario) -> World {
        let area = scenario.area;
        let units_per_m_y = UNITS_PER_DEGREE / METRES_PER_DEGREE;
        let units_per_m_x = units_per_m_y / area.center_lat.to_radians().cos();
        let half = area.size_m / 2.0;
        let corner = (
            area.center_lon * UNITS_PER_DEGREE - half * units_per_m_x,
            area.center_lat * UNITS_PER_DEGREE - half * units_per_m_y,
        );
        let mut rng = Rng::new(scenario.seed ^ 0x7EA5_u64);
        let spec = scenario.treasures;
        let between = |rng: &mut Rng, [low, high]: [u32; 2]| rng.between(low as i64, high as i64) as u32;
        let treasures = (0..scenario.hunts as usize * spec.count as usize)
            .map(|_| Treasure {
                x_m: uniform(&mut rng, area.size_m),
                y_m: uniform(&mut rng, area.size_m),
                radius_m: between(&mut rng, spec.radius_m),
                value: between(&mut rng, spec.value),
                capacity: between(&mut rng, spec.capacity),
            })
            .collect();
        World { scenario: scenario.clone(), treasures, corner, units_per_m: (units_per_m_x, units_per_m_y) }
    }

    /// The treasure `treasure` of hunt `hunt`.
    pub fn treasure(&self, hunt: u32, treasure: u32) -> &Treasure {
        &self.treasures[self.treasure_index(hunt, treasure)]
    }

    /// The index of a treasure in [`World::treasures`].
    pub fn treasure_index(&self, hunt: u32, treasure: u32) -> usize {
        hunt as usize * self.scenario.treasures.count as usize + treasure as usize
    }

    /// A point of the hunt, in metres from its corner, as protocol coordinates.
    pub fn position(&self, x_m: f64, y_m: f64) -> Position {
        Position::new(
            (self.corner.0 + x_m * self.units_per_m.0).round() as i32,
            (self.corner.1 + y_m * self.units_per_m.1).round() as i32,
        )
    }

    /// The Cairn spec of every hunt: geographic, bounded by the area, running from time 0
    /// for ever, full points, no speed or claim limit (Redis's script enforces neither).
    pub fn hunt_spec(&self) -> HuntSpec {
        let size = self.scenario.area.size_m;
        HuntSpec {
            coordinates: Coordinates::Geographic,
            min: self.position(0.0, 0.0),
            max: self.position(size, size),
            start: 0,
            end: Micros::MAX,
            options: HuntOptions {
                auto_discover: false,
                speed_max: 0,
                points: PointsRule::Full,
                claims_per_player_max: 0,
            },
        }
    }

    /// The Cairn spec of a treasure.
    pub fn treasure_spec(&self, hunt: u32, treasure: u32) -> TreasureSpec {
        let laid = self.treasure(hunt, treasure);
        TreasureSpec {
            id: treasure,
            position: self.position(laid.x_m, laid.y_m),
            radius: laid.radius_m,
            value: laid.value,
            capacity: laid.capacity,
            hint_radius: self.scenario.treasures.hint_radius_m,
        }
    }
}

/// Protocol units (1e-7 degrees) as the decimal degrees Redis reads: the same number.
pub fn degrees(units: i32) -> Degrees {
    Degrees(units)
}

/// Formats 1e-7 degrees as exact decimal degrees, without floating point.
#[derive(Clone, Copy, Debug)]
pub struct Degrees(pub i32);

impl std::fmt::Display for Degrees {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:07}", magnitude / 10_000_000, magnitude % 10_000_000)
    }
}

fn uniform(rng: &mut Rng, size: f64) -> f64 {
    rng.below(1 << 24) as f64 / (1u64 << 24) as f64 * size
}

/// One player as its connection sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Player {
    /// Its hunt, from 0.
    pub hunt: u32,
    /// Its id within the hunt.
    pub player: u32,
    /// Where it is, metres from the hunt's corner.
    pub x_m: f64,
    /// See `x_m`.
    pub y_m: f64,
    /// The treasure it walks to.
    pub target: u32,
    /// The last sequence number it used (JOIN is 1).
    pub seq: u32,
}

/// The players one connection drives, and the random stream that drives them.
#[derive(Clone, Debug)]
pub struct Players {
    /// Owned players: global slots `connection + k * connections`.
    pub players: Vec<Player>,
    rng: Rng,
}

impl Players {
    /// The players of connection `connection` of `connections`, at their start positions.
    pub fn new(world: &World, connection: u32, connections: u32) -> Players {
        let scenario = &world.scenario;
        let mut rng = Rng::new(scenario.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ connection as u64);
        let total = scenario.players_total();
        let size = scenario.area.size_m;
        let spread = scenario.area.start_spread_m;
        let players = (connection as u64..total)
            .step_by(connections as usize)
            .map(|slot| {
                let hunt = (slot / scenario.players_per_hunt as u64) as u32;
                let target = rng.below(scenario.treasures.count as u64) as u32;
                let (x_m, y_m) = if spread > 0.0 {
                    let laid = world.treasure(hunt, target);
                    let near =
                        |rng: &mut Rng, centre: f64| (centre + uniform(rng, 2.0 * spread) - spread).clamp(0.0, size);
                    (near(&mut rng, laid.x_m), near(&mut rng, laid.y_m))
                } else {
                    (uniform(&mut rng, size), uniform(&mut rng, size))
                };
                Player { hunt, player: (slot % scenario.players_per_hunt as u64) as u32, x_m, y_m, target, seq: 1 }
            })
            .collect();
        Players { players, rng }
    }

    /// The next request of this connection's share of the mix, and the index (among
    /// this connection's players) of the player it concerns.
    pub fn next_op(&mut self, world: &World) -> (usize, Op) {
        let scenario = &world.scenario;
        let index = self.rng.below(self.players.len() as u64) as usize;
        let roll = self.rng.below(100) as u32;
        let bounds = scenario.mix.bounds();
        let kind = OpKind::ALL[bounds.iter().position(|bound| roll < *bound).unwrap_or(0)];
        let Player { hunt, player, .. } = self.players[index];
        let op = match kind {
            OpKind::Move => {
                let position = self.step(world, index);
                Op::Move { hunt, player, seq: self.next_seq(index), position }
            }
            OpKind::Dig => {
                let treasure = self.players[index].target;
                let position = self.dig_position(world, index);
                self.players[index].target = self.rng.below(scenario.treasures.count as u64) as u32;
                Op::Dig { hunt, player, seq: self.next_seq(index), treasure, position }
            }
            OpKind::Adjust => {
                let delta = self.rng.between(-20, 50) as i32;
                Op::Adjust { hunt, player, seq: self.next_seq(index), delta }
            }
            OpKind::Top => Op::Top { hunt, count: scenario.queries.top_count },
            OpKind::Rank => Op::Rank { hunt, player },
            OpKind::Around => Op::Around { hunt, player, radius: scenario.queries.around_radius },
            OpKind::Hint => Op::Hint { hunt, player },
        };
        (index, op)
    }

    /// The position of a player now, in protocol units.
    pub fn position(&self, world: &World, index: usize) -> Position {
        world.position(self.players[index].x_m, self.players[index].y_m)
    }

    fn next_seq(&mut self, index: usize) -> u32 {
        self.players[index].seq += 1;
        self.players[index].seq
    }

    /// One step of at most `step_m` towards the target, with a little wander.
    fn step(&mut self, world: &World, index: usize) -> Position {
        let area = world.scenario.area;
        let player = self.players[index];
        let target = world.treasure(player.hunt, player.target);
        let (dx, dy) = (target.x_m - player.x_m, target.y_m - player.y_m);
        let distance = (dx * dx + dy * dy).sqrt();
        let walk = if distance > 0.0 { (area.step_m * 0.9).min(distance) / distance } else { 0.0 };
        let wander = area.step_m * 0.1;
        let x = (player.x_m + dx * walk + uniform(&mut self.rng, 2.0 * wander) - wander).clamp(0.0, area.size_m);
        let y = (player.y_m + dy * walk + uniform(&mut self.rng, 2.0 * wander) - wander).clamp(0.0, area.size_m);
        self.players[index].x_m = x;
        self.players[index].y_m = y;
        world.position(x, y)
    }

    /// Where a player digs for its target: within 0.91 radii on each axis (up to 1.3
    /// radii away), so a share of digs misses.
    fn dig_position(&mut self, world: &World, index: usize) -> Position {
        let size = world.scenario.area.size_m;
        let player = self.players[index];
        let target = world.treasure(player.hunt, player.target);
        let jitter = target.radius_m as f64 * 0.91;
        let x = (target.x_m + uniform(&mut self.rng, 2.0 * jitter) - jitter).clamp(0.0, size);
        let y = (target.y_m + uniform(&mut self.rng, 2.0 * jitter) - jitter).clamp(0.0, size);
        self.players[index].x_m = x;
        self.players[index].y_m = y;
        world.position(x, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        let mut scenario = Scenario::default_for_tests();
        scenario.hunts = 3;
        scenario.players_per_hunt = 50;
        scenario.connections = 4;
        scenario
    }

    #[test]
    fn every_player_belongs_to_exactly_one_connection() {
        let world = World::new(&scenario());
        let mut seen: Vec<(u32, u32)> =
            (0..4).flat_map(|c| Players::new(&world, c, 4).players).map(|p| (p.hunt, p.player)).collect();
        seen.sort();
        let expected: Vec<(u32, u32)> = (0..3).flat_map(|h| (0..50).map(move |p| (h, p))).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn sequence_numbers_rise_per_player_and_the_mix_holds() {
        let world = World::new(&scenario());
        let mut players = Players::new(&world, 1, 4);
        let mut last = std::collections::HashMap::new();
        let (mut moves, total) = (0, 20_000);
        for _ in 0..total {
            let (_, op) = players.next_op(&world);
            let seq = match op {
                Op::Move { hunt, player, seq, .. }
                | Op::Dig { hunt, player, seq, .. }
                | Op::Adjust { hunt, player, seq, .. } => Some(((hunt, player), seq)),
                _ => None,
            };
            if let Some((key, seq)) = seq {
                let previous = last.insert(key, seq).unwrap_or(1);
                assert_eq!(seq, previous + 1, "{key:?}");
            }
            moves += matches!(op, Op::Move { .. }) as u32;
        }
        assert!((15_400..16_600).contains(&moves), "{moves} moves of {total}");
    }

    #[test]
    fn positions_stay_inside_the_hunt_bounds() {
        let world = World::new(&scenario());
        let spec = world.hunt_spec();
        let mut players = Players::new(&world, 0, 4);
        for _ in 0..5_000 {
            if let (_, Op::Move { position, .. } | Op::Dig { position, .. }) = players.next_op(&world) {
                assert!(spec.min.x <= position.x && position.x <= spec.max.x, "{position:?}");
                assert!(spec.min.y <= position.y && position.y <= spec.max.y, "{position:?}");
            }
        }
    }

    #[test]
    fn degrees_print_the_same_integer() {
        assert_eq!(degrees(23_522_000).to_string(), "2.3522000");
        assert_eq!(degrees(-1).to_string(), "-0.0000001");
        assert_eq!(degrees(488_566_000).to_string(), "48.8566000");
    }

    #[test]
    fn a_seed_fixes_the_world_and_the_stream() {
        let world = World::new(&scenario());
        assert_eq!(world.treasures, World::new(&scenario()).treasures);
        let stream = || {
            let mut players = Players::new(&world, 2, 4);
            (0..100).map(|_| players.next_op(&world).1).collect::<Vec<_>>()
        };
        assert_eq!(stream(), stream());
    }
}
