//! A seeded, realistic treasure-hunt workload: the events a game backend would send.
//!
//! Players walk towards a treasure they have picked, dig when they think they are close
//! (sometimes too early), pick a new target after a dig, get score adjustments, and ask
//! for leaderboards and hints. [`Workload`] generates these events one at a time without
//! allocating, so the same generator drives `cairn simulate`, the zero-allocation test
//! and the benchmarks; a seed fixes the whole stream. It keeps its own picture of where
//! players are (it does not read the engine's state), exactly as a load generator must.

use crate::event::{Coordinates, Event, HuntOptions, HuntSpec, Micros, PointsRule, Position, TreasureSpec};
use crate::rng::Rng;

/// The shape of a simulated workload.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Seed of the whole event stream.
    pub seed: u64,
    /// Hunts.
    pub hunts: u32,
    /// Players per hunt.
    pub players_per_hunt: u32,
    /// Treasures per hunt.
    pub treasures_per_hunt: u32,
    /// Side of each (square, planar) hunt, in world units.
    pub hunt_size: i32,
    /// Percent of events that are moves.
    pub moves_percent: u32,
    /// Percent of events that are digs.
    pub digs_percent: u32,
    /// Percent of events that are score adjustments; the rest are queries.
    pub adjustments_percent: u32,
    /// Moves claim treasures in reach.
    pub auto_discover: bool,
    /// Event time between two events, in microseconds.
    pub event_interval_us: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            seed: 1,
            hunts: 100,
            players_per_hunt: 1_000,
            treasures_per_hunt: 200,
            hunt_size: 100_000,
            moves_percent: 80,
            digs_percent: 10,
            adjustments_percent: 5,
            auto_discover: false,
            event_interval_us: 1,
        }
    }
}

/// Longest step of one move, in world units.
const STEP_MAX: i64 = 40;

/// First hunt id; hunts are numbered from here.
pub const HUNT_ID_FIRST: u32 = 1;

/// Players (and treasures) of all hunts together, at most: the workload numbers each one
/// across hunts with a `u32` (2^32).
pub const SLOTS_MAX: u64 = 1 << 32;

/// Steady-state events per player (of all hunts together), at most. Each mutation takes
/// its player's next sequence number, a `u32`, and players are picked at random, so a
/// mean of half of 2^32 keeps every player below it: the spread around a mean that large
/// is a tiny fraction of it.
pub const EVENTS_PER_PLAYER_MAX: u64 = 1 << 31;

#[derive(Clone, Copy, Debug)]
struct SimPlayer {
    position: Position,
    target: u32,
    seq: u32,
}

/// Generates the events of a [`Config`].
pub struct Workload {
    config: Config,
    rng: Rng,
    time: Micros,
    /// Treasure positions and radii, `treasures_per_hunt` per hunt.
    treasures: Vec<(Position, u32)>,
    /// Players, `players_per_hunt` per hunt.
    players: Vec<SimPlayer>,
}

impl Workload {
    /// A workload; nothing is generated until [`Workload::setup`]. Panics if the players
    /// or the treasures of all hunts together pass [`SLOTS_MAX`].
    pub fn new(config: Config) -> Workload {
        assert!(config.hunts > 0 && config.players_per_hunt > 0 && config.treasures_per_hunt > 0);
        assert!(config.hunts as u64 * config.players_per_hunt as u64 <= SLOTS_MAX);
        assert!(config.hunts as u64 * config.treasures_per_hunt as u64 <= SLOTS_MAX);
        assert!(config.moves_percent + config.digs_percent + config.adjustments_percent <= 100);
        Workload { config, rng: Rng::new(config.seed), time: 1, treasures: Vec::new(), players: Vec::new() }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The event time of the next event.
    pub fn time(&self) -> Micros {
        self.time
    }

    fn tick(&mut self) -> Micros {
        let time = self.time;
        self.time += self.config.event_interval_us;
        time
    }

    fn random_position(&mut self) -> Position {
        let size = self.config.hunt_size as i64;
        Position::new(self.rng.between(0, size - 1) as i32, self.rng.between(0, size - 1) as i32)
    }

    /// The spec of every simulated hunt.
    pub fn hunt_spec(&self) -> HuntSpec {
        HuntSpec {
            coordinates: Coordinates::Planar,
            min: Position::new(0, 0),
            max: Position::new(self.config.hunt_size - 1, self.config.hunt_size - 1),
            start: 0,
            end: Micros::MAX,
            options: HuntOptions {
                auto_discover: self.config.auto_discover,
                // Digs jump to the treasure (the walk there is not simulated move by move),
                // so simulated hunts set no speed limit; the rule tests cover the limit.
                speed_max: 0,
                points: PointsRule::Decay,
                claims_per_player_max: 0,
            },
        }
    }

    /// Generates the set-up: create every hunt, place its treasures, join its players.
    /// Calls `apply(event, time)` for each (the slow path; allocations allowed).
    pub fn setup(&mut self, mut apply: impl FnMut(&Event, Micros)) {
        let spec = self.hunt_spec();
        for hunt_index in 0..self.config.hunts {
            let hunt = HUNT_ID_FIRST + hunt_index;
            apply(&Event::CreateHunt { hunt, spec }, self.tick());
            for treasure in 0..self.config.treasures_per_hunt {
                let position = self.random_position();
                let radius = self.rng.between(50, 200) as u32;
                self.treasures.push((position, radius));
                // Mostly small capacities, a few popular treasures.
                let capacity = if self.rng.percent(5) { 100 } else { self.rng.between(1, 5) as u32 };
                let spec = TreasureSpec {
                    id: treasure,
                    position,
                    radius,
                    value: self.rng.between(10, 100) as u32,
                    capacity,
                    hint_radius: if self.rng.percent(50) { 0 } else { 5_000 },
                };
                apply(&Event::PlaceTreasure { hunt, treasure: spec }, self.tick());
            }
            for player in 0..self.config.players_per_hunt {
                let position = self.random_position();
                let target = self.rng.below(self.config.treasures_per_hunt as u64) as u32;
                self.players.push(SimPlayer { position, target, seq: 1 });
                apply(&Event::Join { hunt, player, seq: 1, position }, self.tick());
            }
        }
    }

    /// The next event of the steady-state mix, and its event time. Never allocates.
    pub fn next_event(&mut self) -> (Event, Micros) {
        let hunt_index = self.rng.below(self.config.hunts as u64) as u32;
        let hunt = HUNT_ID_FIRST + hunt_index;
        let player = self.rng.below(self.config.players_per_hunt as u64) as u32;
        let slot = (hunt_index * self.config.players_per_hunt + player) as usize;
        let roll = self.rng.below(100) as u32;
        let config = self.config;
        let event = if roll < config.moves_percent {
            let position = self.step(slot, hunt_index);
            Event::Move { hunt, player, seq: self.next_seq(slot), position }
        } else if roll < config.moves_percent + config.digs_percent {
            let position = self.dig_position(slot, hunt_index);
            let target = self.players[slot].target;
            let event = Event::Dig { hunt, player, seq: self.next_seq(slot), treasure: target, position };
            self.players[slot].target = self.rng.below(config.treasures_per_hunt as u64) as u32;
            event
        } else if roll < config.moves_percent + config.digs_percent + config.adjustments_percent {
            let delta = self.rng.between(-20, 50) as i32;
            Event::AdjustScore { hunt, player, seq: self.next_seq(slot), delta }
        } else {
            match self.rng.below(4) {
                0 => Event::Top { hunt, count: 10 },
                1 => Event::Rank { hunt, player },
                2 => Event::Around { hunt, player, radius: 5 },
                _ => Event::Hint { hunt, player },
            }
        };
        (event, self.tick())
    }

    fn next_seq(&mut self, slot: usize) -> u32 {
        // Unreachable within `EVENTS_PER_PLAYER_MAX`; a wrap would turn every later
        // mutation of the player into a refused duplicate without a word.
        self.players[slot].seq = self.players[slot].seq.checked_add(1).expect("a player ran out of sequence numbers");
        self.players[slot].seq
    }

    /// Where a player digs for its target: near it, within 1.3 radii, so some digs land
    /// just out of reach as real ones do.
    fn dig_position(&mut self, slot: usize, hunt_index: u32) -> Position {
        let target = self.players[slot].target;
        let (center, radius) = self.treasures[(hunt_index * self.config.treasures_per_hunt + target) as usize];
        let jitter = (radius as i64 * 13 / 10) * 7 / 10;
        let size = self.config.hunt_size as i64;
        let x = (center.x as i64 + self.rng.between(-jitter, jitter)).clamp(0, size - 1);
        let y = (center.y as i64 + self.rng.between(-jitter, jitter)).clamp(0, size - 1);
        let position = Position::new(x as i32, y as i32);
        self.players[slot].position = position;
        position
    }

    /// Moves a player one step towards its target treasure, with a little wander.
    fn step(&mut self, slot: usize, hunt_index: u32) -> Position {
        let sim = self.players[slot];
        let (target, _) = self.treasures[(hunt_index * self.config.treasures_per_hunt + sim.target) as usize];
        let towards = |from: i32, to: i32| (to as i64 - from as i64).clamp(-STEP_MAX / 2, STEP_MAX / 2);
        let size = self.config.hunt_size as i64;
        let x = sim.position.x as i64 + towards(sim.position.x, target.x) + self.rng.between(-5, 5);
        let y = sim.position.y as i64 + towards(sim.position.y, target.y) + self.rng.between(-5, 5);
        let position = Position::new(x.clamp(0, size - 1) as i32, y.clamp(0, size - 1) as i32);
        self.players[slot].position = position;
        position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_follows_the_percentages() {
        let mut workload =
            Workload::new(Config { hunts: 3, players_per_hunt: 50, treasures_per_hunt: 10, ..Config::default() });
        workload.setup(|_, _| {});
        let mut moves = 0;
        let total = 100_000;
        for _ in 0..total {
            if let (Event::Move { .. }, _) = workload.next_event() {
                moves += 1;
            }
        }
        assert!((78_000..82_000).contains(&moves), "{moves}");
    }

    #[test]
    fn a_seed_fixes_the_stream() {
        let config = Config { hunts: 2, players_per_hunt: 20, treasures_per_hunt: 5, ..Config::default() };
        let run = || {
            let mut workload = Workload::new(config);
            workload.setup(|_, _| {});
            (0..1000).map(|_| workload.next_event()).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
