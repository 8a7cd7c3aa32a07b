//! Scenarios: the TOML files under `perf/scenarios/` that fix a workload's shape (hunts,
//! players, treasures, the event mix, connections, subscribers, seed), parsed with serde
//! and then checked against Cairn's own limits so a bad file fails with a message naming
//! the field, before any server is started.
//!
//! Every hunt is geographic: a square of `area.size_m` metres around a real place, with
//! positions in 1e-7 degrees on the wire. That is what a location-based game sends, and it
//! is what Redis's GEO commands model, so both targets get exactly the same coordinates
//! (see `perf/README.md`, "Why geographic").

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use cairn::constants::{
    AROUND_RADIUS_MAX, CLAIMS_PER_HUNT_MAX, PLAYERS_PER_HUNT_MAX, TOP_COUNT_MAX, TREASURES_PER_HUNT_MAX,
    TREASURE_CAPACITY_MAX as CAPACITY_MAX, TREASURE_VALUE_MAX as VALUE_MAX,
};

/// Most players the harness will drive in one run: bounds its memory and set-up time.
pub const PLAYERS_TOTAL_MAX: u64 = 2_000_000;
/// Widest hunt the harness lays out, in metres: inside the protocol's 200 km per axis.
pub const AREA_SIZE_M_MAX: f64 = 100_000.0;
/// Most load connections: each holds buffers and a pending table.
pub const CONNECTIONS_MAX: u32 = 1_000;
/// Most subscriber connections.
pub const SUBSCRIBERS_MAX: u32 = 1_000;

/// A whole scenario file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in output paths and plots.
    pub name: String,
    /// What the scenario stresses, in a sentence.
    #[serde(default)]
    pub description: String,
    /// Seed of treasure placement and of every connection's event stream.
    pub seed: u64,
    /// Hunts.
    pub hunts: u32,
    /// Players per hunt.
    pub players_per_hunt: u32,
    /// Load connections; each owns a fixed share of the players.
    pub connections: u32,
    /// Extra connections that only subscribe to hunts and read pushes.
    #[serde(default)]
    pub subscribers: u32,
    /// Where the hunts lie and how players walk.
    pub area: Area,
    /// The treasures of every hunt.
    pub treasures: Treasures,
    /// The steady-state event mix, in percent.
    pub mix: Mix,
    /// Query parameters.
    #[serde(default)]
    pub queries: Queries,
}

/// Where every hunt lies.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Area {
    /// Latitude of the hunt's centre, in degrees.
    pub center_lat: f64,
    /// Longitude of the hunt's centre, in degrees.
    pub center_lon: f64,
    /// Side of the square hunt, in metres.
    pub size_m: f64,
    /// Longest step of one move, in metres.
    pub step_m: f64,
    /// Players start within this distance of their first target, in metres (0: anywhere
    /// in the area). Small values make players converge (claim storms).
    #[serde(default)]
    pub start_spread_m: f64,
}

/// How treasures are drawn; ranges are inclusive `[low, high]`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Treasures {
    /// Treasures per hunt.
    pub count: u32,
    /// Capacity range (claims a treasure allows).
    pub capacity: [u32; 2],
    /// Value range, in points.
    pub value: [u32; 2],
    /// Discovery radius range, in metres.
    pub radius_m: [u32; 2],
    /// Hint radius of every treasure, in metres: HINT reports the nearest claimable
    /// treasure within it (Redis: `GEOSEARCH ... BYRADIUS`).
    pub hint_radius_m: u32,
}

/// The steady-state mix; the fields must add up to 100.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// MOVE (Redis: GEOADD).
    pub moves: u32,
    /// DIG (Redis: the dig script).
    pub digs: u32,
    /// ADJUST_SCORE (Redis: ZINCRBY).
    pub adjustments: u32,
    /// TOP (Redis: ZREVRANGE WITHSCORES).
    #[serde(default)]
    pub top: u32,
    /// RANK (Redis: ZREVRANK).
    #[serde(default)]
    pub rank: u32,
    /// AROUND (Redis: a script doing ZREVRANK then ZREVRANGE).
    #[serde(default)]
    pub around: u32,
    /// HINT (Redis: a script doing GEOPOS then GEOSEARCH and capacity checks).
    #[serde(default)]
    pub hints: u32,
}

/// Query parameters.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Queries {
    /// Entries a TOP asks for.
    pub top_count: u32,
    /// Neighbours an AROUND asks for on each side.
    pub around_radius: u32,
}

impl Default for Queries {
    fn default() -> Queries {
        Queries { top_count: 10, around_radius: 5 }
    }
}

impl Mix {
    /// The cumulative thresholds of the mix, in the order of [`crate::workload::OpKind`]:
    /// an op of kind `k` is drawn when a roll below 100 falls under `bounds[k]` and not
    /// under an earlier one.
    pub fn bounds(&self) -> [u32; 7] {
        let parts = [self.moves, self.digs, self.adjustments, self.top, self.rank, self.around, self.hints];
        let mut sum = 0;
        parts.map(|part| {
            sum += part;
            sum
        })
    }
}

impl Scenario {
    /// `perf/scenarios/default.toml`, for tests that start from it and shrink it.
    #[cfg(test)]
    pub fn default_for_tests() -> Scenario {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/default.toml")).unwrap();
        Scenario::parse(&text).unwrap()
    }

    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read scenario {}", path.display()))?;
        Scenario::parse(&text).with_context(|| format!("bad scenario {}", path.display()))
    }

    /// Parses and checks a scenario from TOML text.
    pub fn parse(text: &str) -> Result<Scenario> {
        let scenario: Scenario = toml::from_str(text).map_err(|error| anyhow::anyhow!("{error}"))?;
        scenario.check()?;
        Ok(scenario)
    }

    /// Total players over all hunts.
    pub fn players_total(&self) -> u64 {
        self.hunts as u64 * self.players_per_hunt as u64
    }

    fn check(&self) -> Result<()> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            bail!("`name` must be non-empty letters, digits, '-' or '_', not {:?}", self.name);
        }
        check_range("hunts", self.hunts as u64, 1, 65_536)?;
        check_range("players_per_hunt", self.players_per_hunt as u64, 1, PLAYERS_PER_HUNT_MAX as u64)?;
        if self.players_total() > PLAYERS_TOTAL_MAX {
            bail!("hunts × players_per_hunt = {} exceeds the harness's {PLAYERS_TOTAL_MAX}", self.players_total());
        }
        check_range("connections", self.connections as u64, 1, CONNECTIONS_MAX as u64)?;
        if self.connections as u64 > self.players_total() {
            bail!("`connections` ({}) exceeds the players ({}): each connection owns players", self.connections, {
                self.players_total()
            });
        }
        check_range("subscribers", self.subscribers as u64, 0, SUBSCRIBERS_MAX as u64)?;
        self.check_area()?;
        self.check_treasures()?;
        self.check_mix()
    }

    fn check_area(&self) -> Result<()> {
        let area = &self.area;
        if !(-80.0..=80.0).contains(&area.center_lat) {
            bail!("`area.center_lat` must be within ±80 degrees, not {}", area.center_lat);
        }
        if !(-179.0..=179.0).contains(&area.center_lon) {
            bail!("`area.center_lon` must be within ±179 degrees, not {}", area.center_lon);
        }
        if !(area.size_m >= 10.0 && area.size_m <= AREA_SIZE_M_MAX) {
            bail!("`area.size_m` must be within 10..={AREA_SIZE_M_MAX} metres, not {}", area.size_m);
        }
        if !(area.step_m > 0.0 && area.step_m <= area.size_m) {
            bail!("`area.step_m` must be above 0 and at most `area.size_m`, not {}", area.step_m);
        }
        if !(area.start_spread_m >= 0.0 && area.start_spread_m <= area.size_m) {
            bail!("`area.start_spread_m` must be within 0..=`area.size_m`, not {}", area.start_spread_m);
        }
        Ok(())
    }

    fn check_treasures(&self) -> Result<()> {
        let treasures = &self.treasures;
        check_range("treasures.count", treasures.count as u64, 1, TREASURES_PER_HUNT_MAX as u64)?;
        check_pair("treasures.capacity", treasures.capacity, 1, CAPACITY_MAX)?;
        check_pair("treasures.value", treasures.value, 0, VALUE_MAX)?;
        check_pair("treasures.radius_m", treasures.radius_m, 1, 10_000)?;
        check_range("treasures.hint_radius_m", treasures.hint_radius_m as u64, 1, 200_000)?;
        let claims_max = treasures.count as u64 * treasures.capacity[1] as u64;
        if claims_max > CLAIMS_PER_HUNT_MAX as u64 {
            bail!(
                "treasures.count × the largest treasures.capacity = {claims_max} may exceed the {CLAIMS_PER_HUNT_MAX} \
                 claims a hunt allows"
            );
        }
        Ok(())
    }

    fn check_mix(&self) -> Result<()> {
        // Summed wide: `bounds` adds in u32, which a huge percentage would wrap back to 100.
        let mix = &self.mix;
        let parts = [mix.moves, mix.digs, mix.adjustments, mix.top, mix.rank, mix.around, mix.hints];
        let total: u64 = parts.iter().map(|&part| part as u64).sum();
        if total != 100 {
            bail!("the `mix` percentages add up to {total}, not 100");
        }
        check_range("queries.top_count", self.queries.top_count as u64, 1, TOP_COUNT_MAX as u64)?;
        check_range("queries.around_radius", self.queries.around_radius as u64, 0, AROUND_RADIUS_MAX as u64)
    }
}

fn check_range(field: &str, value: u64, low: u64, high: u64) -> Result<()> {
    if value < low || value > high {
        bail!("`{field}` must be within {low}..={high}, not {value}");
    }
    Ok(())
}

fn check_pair(field: &str, pair: [u32; 2], low: u32, high: u32) -> Result<()> {
    let [first, last] = pair;
    if first > last {
        bail!("`{field}` is a range [low, high]: {first} is above {last}");
    }
    check_range(field, first as u64, low as u64, high as u64)?;
    check_range(field, last as u64, low as u64, high as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "tiny"
        seed = 7
        hunts = 2
        players_per_hunt = 10
        connections = 2
        [area]
        center_lat = 48.85
        center_lon = 2.35
        size_m = 1000
        step_m = 5
        [treasures]
        count = 3
        capacity = [1, 5]
        value = [10, 100]
        radius_m = [10, 30]
        hint_radius_m = 500
        [mix]
        moves = 80
        digs = 10
        adjustments = 5
        top = 2
        rank = 1
        around = 1
        hints = 1
    "#;

    fn error_of(text: &str) -> String {
        format!("{:#}", Scenario::parse(text).expect_err("the scenario should be refused"))
    }

    #[test]
    fn a_good_scenario_parses_with_defaults() {
        let scenario = Scenario::parse(GOOD).unwrap();
        assert_eq!(scenario.players_total(), 20);
        assert_eq!(scenario.subscribers, 0);
        assert_eq!(scenario.queries, Queries::default());
        assert_eq!(scenario.mix.bounds(), [80, 90, 95, 97, 98, 99, 100]);
    }

    #[test]
    fn bad_files_say_which_field() {
        let cases = [
            (GOOD.replace("moves = 80", "moves = 81"), "add up to 101"),
            (GOOD.replace("hunts = 2", "hunts = 0"), "`hunts` must be within 1..=65536"),
            (GOOD.replace("capacity = [1, 5]", "capacity = [5, 1]"), "`treasures.capacity` is a range"),
            (GOOD.replace("seed = 7", "seed = 7\nspeed = 3"), "unknown field `speed`"),
            (GOOD.replace("connections = 2", "connections = 50"), "each connection owns players"),
            (GOOD.replace("hunts = 2", "hunts = \"two\""), "invalid type"),
            (GOOD.replace("size_m = 1000", "size_m = 1e9"), "`area.size_m`"),
            (GOOD.replace("name = \"tiny\"", "name = \"a b\""), "`name`"),
            // Percentages whose u32 sum wraps around to exactly 100.
            (GOOD.replace("moves = 80", "moves = 4294967295").replace("digs = 10", "digs = 91"), "`mix`"),
        ];
        for (text, expected) in cases {
            let error = error_of(&text);
            assert!(error.contains(expected), "expected {expected:?} in {error:?}");
        }
    }

    #[test]
    fn a_missing_section_is_named() {
        let text = GOOD.split("[mix]").next().unwrap();
        assert!(error_of(text).contains("missing field `mix`"));
    }

    #[test]
    fn the_shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                let scenario = Scenario::load(&path).unwrap();
                assert_eq!(Some(scenario.name.as_str()), path.file_stem().and_then(|s| s.to_str()));
                seen += 1;
            }
        }
        assert!(seen >= 4, "{seen} scenarios");
    }
}
