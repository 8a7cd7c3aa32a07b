//! The events the state machine accepts: the vocabulary shared by the wire codec, the
//! journal, the simulator and the tests.
//!
//! An [`Event`] is plain data, `Copy`, and carries no time: the caller stamps each event
//! with its event time when it calls `Shard::apply`, so replaying the same events with
//! the same times gives the same state. Positions arrive in the hunt's own coordinates
//! (world units, or 1e-7 degrees for geographic hunts); the hunt projects them once, on
//! entry, to its internal planar units.

/// A hunt's identifier, chosen by the game backend; unique per server.
pub type HuntId = u32;

/// A player's identifier, chosen by the game backend; unique within a hunt.
pub type PlayerId = u32;

/// A treasure's identifier, chosen by the game backend; unique within a hunt.
pub type TreasureId = u32;

/// A player's sequence number for idempotent retries: each mutating event of a player
/// carries one, and an event whose number is not above the last applied one is a
/// duplicate.
pub type Sequence = u32;

/// Event time, in microseconds since the Unix epoch.
pub type Micros = u64;

/// A position in the hunt's input coordinates: world units for planar hunts, or for
/// geographic hunts `x` = longitude and `y` = latitude, both in 1e-7 degrees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Position {
    /// Easting: world units, or longitude in 1e-7 degrees.
    pub x: i32,
    /// Northing: world units, or latitude in 1e-7 degrees.
    pub y: i32,
}

impl Position {
    /// A position from its two coordinates.
    pub const fn new(x: i32, y: i32) -> Position {
        Position { x, y }
    }
}

/// How a hunt's positions and distances are expressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Coordinates {
    /// Integer world units; radii and speeds in world units (per second).
    Planar,
    /// Latitude/longitude in 1e-7 degrees; radii in metres, speeds in metres per second.
    Geographic,
}

/// How many points the k-th of N claimers of a treasure receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PointsRule {
    /// Every claimer receives the treasure's full value.
    Full,
    /// The k-th claimer of N receives `value * (N - k + 1) / N`, rounded down: the first
    /// finder gets the full value, the last one a share of it.
    Decay,
}

/// What a hunt allows, fixed when it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HuntOptions {
    /// A move within a treasure's radius claims it, as a dig would.
    pub auto_discover: bool,
    /// Fastest a player may travel, in world units (planar) or metres (geographic) per
    /// second; 0 means no limit.
    pub speed_max: u32,
    /// How claim points are computed.
    pub points: PointsRule,
    /// Treasures one player may claim in this hunt; 0 means no limit.
    pub claims_per_player_max: u32,
}

impl Default for HuntOptions {
    fn default() -> HuntOptions {
        HuntOptions { auto_discover: false, speed_max: 0, points: PointsRule::Full, claims_per_player_max: 0 }
    }
}

/// Everything needed to create a hunt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HuntSpec {
    /// The coordinate system of every position and radius in this hunt.
    pub coordinates: Coordinates,
    /// South-west corner (inclusive), in input coordinates.
    pub min: Position,
    /// North-east corner (inclusive), in input coordinates.
    pub max: Position,
    /// Event time from which the hunt runs (inclusive).
    pub start: Micros,
    /// Event time at which the hunt ends (exclusive); `Micros::MAX` means never.
    pub end: Micros,
    /// What the hunt allows.
    pub options: HuntOptions,
}

/// Everything needed to place a treasure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TreasureSpec {
    /// The treasure's identifier within its hunt.
    pub id: TreasureId,
    /// Where it lies, in input coordinates.
    pub position: Position,
    /// How close a player must be to claim it: world units, or metres.
    pub radius: u32,
    /// Points it is worth.
    pub value: u32,
    /// How many players may claim it; 1 means unique.
    pub capacity: u32,
    /// Beyond this distance the treasure stays out of hot/cold hints: world units, or
    /// metres; 0 means it always counts.
    pub hint_radius: u32,
}

/// One input to the state machine: a mutation or a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// Create a hunt.
    CreateHunt {
        /// The new hunt.
        hunt: HuntId,
        /// Its coordinates, bounds, schedule and options.
        spec: HuntSpec,
    },
    /// End a hunt now (its end time becomes the event time if that is earlier).
    EndHunt {
        /// The hunt.
        hunt: HuntId,
    },
    /// Delete a hunt and free its memory.
    DeleteHunt {
        /// The hunt.
        hunt: HuntId,
    },
    /// Place a treasure.
    PlaceTreasure {
        /// The hunt.
        hunt: HuntId,
        /// The treasure.
        treasure: TreasureSpec,
    },
    /// Remove a treasure; claims already awarded stay awarded.
    RemoveTreasure {
        /// The hunt.
        hunt: HuntId,
        /// The treasure.
        treasure: TreasureId,
    },
    /// A player joins a hunt at a position (or rejoins after leaving).
    Join {
        /// The hunt.
        hunt: HuntId,
        /// The player.
        player: PlayerId,
        /// The player's sequence number.
        seq: Sequence,
        /// Where the player starts.
        position: Position,
    },
    /// A player leaves a hunt; their score and claims stay on the leaderboard.
    Leave {
        /// The hunt.
        hunt: HuntId,
        /// The player.
        player: PlayerId,
        /// The player's sequence number.
        seq: Sequence,
    },
    /// A player moves (and, if the hunt auto-discovers, claims what is in reach).
    Move {
        /// The hunt.
        hunt: HuntId,
        /// The player.
        player: PlayerId,
        /// The player's sequence number.
        seq: Sequence,
        /// The new position.
        position: Position,
    },
    /// A player digs for a treasure at a position (moving there first).
    Dig {
        /// The hunt.
        hunt: HuntId,
        /// The player.
        player: PlayerId,
        /// The player's sequence number.
        seq: Sequence,
        /// The treasure dug for.
        treasure: TreasureId,
        /// Where the player digs.
        position: Position,
    },
    /// Add to (or subtract from) a player's score.
    AdjustScore {
        /// The hunt.
        hunt: HuntId,
        /// The player.
        player: PlayerId,
        /// The player's sequence number.
        seq: Sequence,
        /// Points to add; negative subtracts.
        delta: i32,
    },
    /// Query: the first `count` entries of the leaderboard.
    Top {
        /// The hunt.
        hunt: HuntId,
        /// Entries wanted, at most `TOP_COUNT_MAX`.
        count: u32,
    },
    /// Query: a player's score, rank and claims.
    Rank {
        /// The hunt.
        hunt: HuntId,
        /// The player.
        player: PlayerId,
    },
    /// Query: the entries around a player, `radius` on each side.
    Around {
        /// The hunt.
        hunt: HuntId,
        /// The player.
        player: PlayerId,
        /// Neighbours wanted on each side, at most `AROUND_RADIUS_MAX`.
        radius: u32,
    },
    /// Query: distance from a player to the nearest treasure they can still claim.
    Hint {
        /// The hunt.
        hunt: HuntId,
        /// The player.
        player: PlayerId,
    },
    /// Query: a treasure's claims so far and its capacity.
    TreasureInfo {
        /// The hunt.
        hunt: HuntId,
        /// The treasure.
        treasure: TreasureId,
    },
}

/// The kind of an event, for counters and per-operation histograms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EventKind {
    /// [`Event::CreateHunt`].
    CreateHunt = 0,
    /// [`Event::EndHunt`].
    EndHunt,
    /// [`Event::DeleteHunt`].
    DeleteHunt,
    /// [`Event::PlaceTreasure`].
    PlaceTreasure,
    /// [`Event::RemoveTreasure`].
    RemoveTreasure,
    /// [`Event::Join`].
    Join,
    /// [`Event::Leave`].
    Leave,
    /// [`Event::Move`].
    Move,
    /// [`Event::Dig`].
    Dig,
    /// [`Event::AdjustScore`].
    AdjustScore,
    /// [`Event::Top`].
    Top,
    /// [`Event::Rank`].
    Rank,
    /// [`Event::Around`].
    Around,
    /// [`Event::Hint`].
    Hint,
    /// [`Event::TreasureInfo`].
    TreasureInfo,
}

impl EventKind {
    /// Number of kinds; `kind as usize` is below this.
    pub const COUNT: usize = 15;

    /// Every kind, in discriminant order.
    pub const ALL: [EventKind; EventKind::COUNT] = [
        EventKind::CreateHunt,
        EventKind::EndHunt,
        EventKind::DeleteHunt,
        EventKind::PlaceTreasure,
        EventKind::RemoveTreasure,
        EventKind::Join,
        EventKind::Leave,
        EventKind::Move,
        EventKind::Dig,
        EventKind::AdjustScore,
        EventKind::Top,
        EventKind::Rank,
        EventKind::Around,
        EventKind::Hint,
        EventKind::TreasureInfo,
    ];

    /// A short lower-case name, for stats output.
    pub const fn name(self) -> &'static str {
        match self {
            EventKind::CreateHunt => "create_hunt",
            EventKind::EndHunt => "end_hunt",
            EventKind::DeleteHunt => "delete_hunt",
            EventKind::PlaceTreasure => "place_treasure",
            EventKind::RemoveTreasure => "remove_treasure",
            EventKind::Join => "join",
            EventKind::Leave => "leave",
            EventKind::Move => "move",
            EventKind::Dig => "dig",
            EventKind::AdjustScore => "adjust_score",
            EventKind::Top => "top",
            EventKind::Rank => "rank",
            EventKind::Around => "around",
            EventKind::Hint => "hint",
            EventKind::TreasureInfo => "treasure_info",
        }
    }

    /// Returns true if and only if events of this kind change state (and so are
    /// journaled and replayed); queries return false.
    pub const fn is_mutation(self) -> bool {
        (self as u8) < (EventKind::Top as u8)
    }
}

impl Event {
    /// The hunt this event is about: what routes it to its shard.
    pub const fn hunt(&self) -> HuntId {
        match *self {
            Event::CreateHunt { hunt, .. }
            | Event::EndHunt { hunt }
            | Event::DeleteHunt { hunt }
            | Event::PlaceTreasure { hunt, .. }
            | Event::RemoveTreasure { hunt, .. }
            | Event::Join { hunt, .. }
            | Event::Leave { hunt, .. }
            | Event::Move { hunt, .. }
            | Event::Dig { hunt, .. }
            | Event::AdjustScore { hunt, .. }
            | Event::Top { hunt, .. }
            | Event::Rank { hunt, .. }
            | Event::Around { hunt, .. }
            | Event::Hint { hunt, .. }
            | Event::TreasureInfo { hunt, .. } => hunt,
        }
    }

    /// The kind of this event.
    pub const fn kind(&self) -> EventKind {
        match self {
            Event::CreateHunt { .. } => EventKind::CreateHunt,
            Event::EndHunt { .. } => EventKind::EndHunt,
            Event::DeleteHunt { .. } => EventKind::DeleteHunt,
            Event::PlaceTreasure { .. } => EventKind::PlaceTreasure,
            Event::RemoveTreasure { .. } => EventKind::RemoveTreasure,
            Event::Join { .. } => EventKind::Join,
            Event::Leave { .. } => EventKind::Leave,
            Event::Move { .. } => EventKind::Move,
            Event::Dig { .. } => EventKind::Dig,
            Event::AdjustScore { .. } => EventKind::AdjustScore,
            Event::Top { .. } => EventKind::Top,
            Event::Rank { .. } => EventKind::Rank,
            Event::Around { .. } => EventKind::Around,
            Event::Hint { .. } => EventKind::Hint,
            Event::TreasureInfo { .. } => EventKind::TreasureInfo,
        }
    }

    /// Returns true if and only if this event changes state.
    pub const fn is_mutation(&self) -> bool {
        self.kind().is_mutation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_in_discriminant_order() {
        for (index, kind) in EventKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, index);
        }
    }

    #[test]
    fn only_queries_are_not_mutations() {
        let queries = [EventKind::Top, EventKind::Rank, EventKind::Around, EventKind::Hint, EventKind::TreasureInfo];
        for kind in EventKind::ALL {
            assert_eq!(kind.is_mutation(), !queries.contains(&kind), "{kind:?}");
        }
    }

    #[test]
    fn an_event_is_small_enough_to_copy_through_rings() {
        assert!(std::mem::size_of::<Event>() <= 64, "{}", std::mem::size_of::<Event>());
    }
}
