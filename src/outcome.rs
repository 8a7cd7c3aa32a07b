//! What the state machine answers: an [`Outcome`] per event, [`Notice`]s for
//! subscribers, and [`Rejection`]s with a stable numeric code and a clear message.
//!
//! Outcomes borrow the shard's scratch buffers for their variable-length parts (the
//! claims of a move, the entries of a top-N list), so answering never allocates; the
//! borrow ends before the next event is applied. Rejections are operating errors a
//! caller can cause, never bugs: a broken invariant panics instead.

use std::fmt;

use crate::event::{HuntId, Micros, PlayerId, Sequence, TreasureId};

/// One award of a treasure to a player.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The treasure claimed.
    pub treasure: TreasureId,
    /// This claim is the `index`-th of the treasure (1-based) ...
    pub index: u32,
    /// ... out of `capacity`.
    pub capacity: u32,
    /// Points awarded.
    pub points: u32,
    /// The player's score after the award.
    pub score: i64,
    /// The player's rank after the award (1 = leader).
    pub rank: u32,
}

/// One leaderboard line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ranked {
    /// 1-based rank.
    pub rank: u32,
    /// The player.
    pub player: PlayerId,
    /// Their score.
    pub score: i64,
    /// When they reached that score: the tie-breaker (earlier ranks higher).
    pub reached_at: Micros,
}

/// A player's standing in a hunt, as the rank query answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Standing {
    /// 1-based rank.
    pub rank: u32,
    /// Players on the leaderboard.
    pub total: u32,
    /// Score.
    pub score: i64,
    /// Treasures claimed.
    pub claims: u32,
    /// Last sequence number applied for this player.
    pub last_seq: Sequence,
    /// Returns true if and only if the player is currently joined (not left).
    pub joined: bool,
}

/// A treasure's state, as the treasure-info query answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TreasureState {
    /// Claims awarded so far.
    pub claimed: u32,
    /// How many may be awarded.
    pub capacity: u32,
    /// Points it is worth.
    pub value: u32,
}

/// The answer to one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// A hunt was created.
    HuntCreated,
    /// A hunt was ended (or already had).
    HuntEnded,
    /// A hunt was deleted.
    HuntDeleted,
    /// A treasure was placed.
    TreasurePlaced,
    /// A treasure was removed.
    TreasureRemoved,
    /// A player joined (or rejoined) and stands here.
    Joined {
        /// Their score (0, or what they had before leaving).
        score: i64,
        /// Their rank.
        rank: u32,
    },
    /// A player left.
    Left,
    /// A player moved, claiming these treasures (empty unless the hunt auto-discovers).
    Moved {
        /// Claims made by this move, at most `CLAIMS_PER_MOVE_MAX`.
        claims: &'a [Claim],
    },
    /// A dig claimed a treasure.
    Dug {
        /// The award.
        claim: Claim,
    },
    /// A score was adjusted.
    Adjusted {
        /// The new score.
        score: i64,
        /// The new rank.
        rank: u32,
    },
    /// Leaderboard lines, best first (top-N or around-player).
    List {
        /// Players on the leaderboard in all.
        total: u32,
        /// The lines.
        entries: &'a [Ranked],
    },
    /// A player's standing.
    Standing(Standing),
    /// Distance to the nearest treasure the player can still claim, in world units or
    /// metres; `None` when there is none (or none within its hint radius).
    Hint {
        /// The distance, rounded down.
        distance: Option<u64>,
    },
    /// A treasure's state.
    Treasure(TreasureState),
    /// The event was refused and changed nothing.
    Rejected(Rejection),
}

impl Outcome<'_> {
    /// Returns true if and only if the event was refused.
    pub const fn is_rejected(&self) -> bool {
        matches!(self, Outcome::Rejected(_))
    }
}

/// Lifecycle stages announced to subscribers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    /// The hunt's start time has passed.
    Started,
    /// The hunt's end time has passed, or it was ended.
    Ended,
    /// A treasure has given out its whole capacity.
    Exhausted {
        /// The treasure.
        treasure: TreasureId,
    },
    /// The hunt was deleted.
    Deleted,
}

/// The topics a subscriber may follow; each has its own sequence per hunt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Topic {
    /// Who claimed what.
    Discoveries = 0,
    /// Changes among the first `TOP_NOTICE_RANKS_MAX` ranks.
    Top = 1,
    /// Started, ended, treasure exhausted, deleted.
    Lifecycle = 2,
}

impl Topic {
    /// Number of topics.
    pub const COUNT: usize = 3;

    /// The bit of this topic in a subscription mask.
    pub const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// What a notice says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// A player claimed a treasure.
    Discovery {
        /// The player.
        player: PlayerId,
        /// The award.
        claim: Claim,
    },
    /// A player's rank changed within (or into, or out of) the top ranks.
    TopChanged {
        /// The player.
        player: PlayerId,
        /// Their new score.
        score: i64,
        /// Rank before, or 0 if they were not on the board.
        rank_before: u32,
        /// Rank after.
        rank_after: u32,
    },
    /// A lifecycle stage.
    Lifecycle(Lifecycle),
}

impl NoticeKind {
    /// The topic this notice belongs to.
    pub const fn topic(&self) -> Topic {
        match self {
            NoticeKind::Discovery { .. } => Topic::Discoveries,
            NoticeKind::TopChanged { .. } => Topic::Top,
            NoticeKind::Lifecycle(_) => Topic::Lifecycle,
        }
    }
}

/// Something subscribers of a hunt are told, produced by a mutating event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Notice {
    /// The hunt.
    pub hunt: HuntId,
    /// The notice's number within its hunt and topic: 1, 2, 3, ... with no gaps, so a
    /// subscriber that sees a jump knows it missed some.
    pub seq: u64,
    /// What happened.
    pub kind: NoticeKind,
}

/// Why an event was refused. Each variant has a stable numeric code (used on the wire)
/// and a message that names the problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The hunt id is already taken.
    HuntExists,
    /// No hunt has this id.
    HuntNotFound,
    /// The hunt has not started yet.
    HuntNotStarted,
    /// The hunt has ended.
    HuntEnded,
    /// The shard owns `HUNTS_PER_SHARD_MAX` hunts already.
    HuntLimit,
    /// The hunt spec is invalid; the text says which field.
    InvalidHunt(&'static str),
    /// The treasure id is already taken in this hunt.
    TreasureExists,
    /// No treasure has this id in this hunt.
    TreasureNotFound,
    /// The hunt holds `TREASURES_PER_HUNT_MAX` treasures, or their capacities would
    /// exceed `CLAIMS_PER_HUNT_MAX`.
    TreasureLimit,
    /// The treasure spec is invalid; the text says which field.
    InvalidTreasure(&'static str),
    /// The treasure has been claimed as often as its capacity allows.
    TreasureExhausted,
    /// The player has already claimed this treasure.
    AlreadyClaimed,
    /// The player has claimed as many treasures as the hunt allows.
    PlayerClaimLimit,
    /// The player is farther from the treasure than its radius.
    OutOfReach {
        /// Distance to the treasure, in world units or metres.
        distance: u64,
        /// The treasure's radius, in the same unit.
        radius: u32,
    },
    /// The player has not joined the hunt (or has left).
    NotJoined,
    /// The player is already in the hunt.
    AlreadyJoined,
    /// The hunt holds `PLAYERS_PER_HUNT_MAX` players.
    PlayerLimit,
    /// The position lies outside the hunt's bounds (or the valid coordinate range).
    OutOfBounds,
    /// The move is faster than the hunt allows.
    TooFast {
        /// Distance of the move, in world units or metres.
        distance: u64,
        /// Distance allowed at that moment, in the same unit.
        allowed: u64,
    },
    /// The sequence number was already applied.
    Duplicate {
        /// The sequence number received.
        seq: Sequence,
        /// The last one applied for this player.
        last: Sequence,
    },
    /// The score would leave the range of a signed 64-bit integer.
    ScoreOverflow,
    /// The sequence number is `u32::MAX`, which is never applied: no later number could
    /// follow it, and every later event of the player would be refused as a duplicate.
    SequenceExhausted,
    /// A query asked for more entries than allowed.
    CountTooLarge {
        /// Entries asked for.
        asked: u32,
        /// The limit.
        max: u32,
    },
}

impl Rejection {
    /// The stable numeric code of this rejection, as sent in error frames. Codes below
    /// 100 belong to the protocol layer; the state machine's start at 100.
    pub const fn code(&self) -> u16 {
        match self {
            Rejection::HuntExists => 100,
            Rejection::HuntNotFound => 101,
            Rejection::HuntNotStarted => 102,
            Rejection::HuntEnded => 103,
            Rejection::HuntLimit => 104,
            Rejection::InvalidHunt(_) => 105,
            Rejection::TreasureExists => 110,
            Rejection::TreasureNotFound => 111,
            Rejection::TreasureLimit => 112,
            Rejection::InvalidTreasure(_) => 113,
            Rejection::TreasureExhausted => 114,
            Rejection::AlreadyClaimed => 115,
            Rejection::PlayerClaimLimit => 116,
            Rejection::OutOfReach { .. } => 117,
            Rejection::NotJoined => 120,
            Rejection::AlreadyJoined => 121,
            Rejection::PlayerLimit => 122,
            Rejection::OutOfBounds => 123,
            Rejection::TooFast { .. } => 124,
            Rejection::Duplicate { .. } => 125,
            Rejection::ScoreOverflow => 126,
            Rejection::SequenceExhausted => 127,
            Rejection::CountTooLarge { .. } => 130,
        }
    }

    /// A short snake-case name, for counters and stats output.
    pub const fn name(&self) -> &'static str {
        match self {
            Rejection::HuntExists => "hunt_exists",
            Rejection::HuntNotFound => "hunt_not_found",
            Rejection::HuntNotStarted => "hunt_not_started",
            Rejection::HuntEnded => "hunt_ended",
            Rejection::HuntLimit => "hunt_limit",
            Rejection::InvalidHunt(_) => "invalid_hunt",
            Rejection::TreasureExists => "treasure_exists",
            Rejection::TreasureNotFound => "treasure_not_found",
            Rejection::TreasureLimit => "treasure_limit",
            Rejection::InvalidTreasure(_) => "invalid_treasure",
            Rejection::TreasureExhausted => "treasure_exhausted",
            Rejection::AlreadyClaimed => "already_claimed",
            Rejection::PlayerClaimLimit => "player_claim_limit",
            Rejection::OutOfReach { .. } => "out_of_reach",
            Rejection::NotJoined => "not_joined",
            Rejection::AlreadyJoined => "already_joined",
            Rejection::PlayerLimit => "player_limit",
            Rejection::OutOfBounds => "out_of_bounds",
            Rejection::TooFast { .. } => "too_fast",
            Rejection::Duplicate { .. } => "duplicate",
            Rejection::ScoreOverflow => "score_overflow",
            Rejection::SequenceExhausted => "sequence_exhausted",
            Rejection::CountTooLarge { .. } => "count_too_large",
        }
    }

    /// One rejection of every kind, in the order of [`Rejection::CODES`]: where a name
    /// or a message is needed for a bare code (counters, a client decoding an error).
    pub const SAMPLES: [Rejection; 23] = [
        Rejection::HuntExists,
        Rejection::HuntNotFound,
        Rejection::HuntNotStarted,
        Rejection::HuntEnded,
        Rejection::HuntLimit,
        Rejection::InvalidHunt(""),
        Rejection::TreasureExists,
        Rejection::TreasureNotFound,
        Rejection::TreasureLimit,
        Rejection::InvalidTreasure(""),
        Rejection::TreasureExhausted,
        Rejection::AlreadyClaimed,
        Rejection::PlayerClaimLimit,
        Rejection::OutOfReach { distance: 0, radius: 0 },
        Rejection::NotJoined,
        Rejection::AlreadyJoined,
        Rejection::PlayerLimit,
        Rejection::OutOfBounds,
        Rejection::TooFast { distance: 0, allowed: 0 },
        Rejection::Duplicate { seq: 0, last: 0 },
        Rejection::ScoreOverflow,
        Rejection::SequenceExhausted,
        Rejection::CountTooLarge { asked: 0, max: 0 },
    ];

    /// The name of the rejection with this code, if there is one.
    pub fn name_of_code(code: u16) -> Option<&'static str> {
        Rejection::SAMPLES.iter().find(|rejection| rejection.code() == code).map(|rejection| rejection.name())
    }

    /// Every code, for documentation tests: each must be distinct.
    pub const CODES: [u16; 23] = [
        100, 101, 102, 103, 104, 105, 110, 111, 112, 113, 114, 115, 116, 117, 120, 121, 122, 123, 124, 125, 126, 127,
        130,
    ];
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Rejection::HuntExists => write!(f, "a hunt with this id already exists"),
            Rejection::HuntNotFound => write!(f, "no hunt with this id"),
            Rejection::HuntNotStarted => write!(f, "the hunt has not started yet"),
            Rejection::HuntEnded => write!(f, "the hunt has ended"),
            Rejection::HuntLimit => write!(f, "this shard already owns the maximum number of hunts"),
            Rejection::InvalidHunt(why) => write!(f, "invalid hunt: {why}"),
            Rejection::TreasureExists => write!(f, "a treasure with this id already exists in the hunt"),
            Rejection::TreasureNotFound => write!(f, "no treasure with this id in the hunt"),
            Rejection::TreasureLimit => {
                write!(f, "the hunt holds the maximum number of treasures or of claimable awards")
            }
            Rejection::InvalidTreasure(why) => write!(f, "invalid treasure: {why}"),
            Rejection::TreasureExhausted => write!(f, "the treasure has been claimed as often as its capacity allows"),
            Rejection::AlreadyClaimed => write!(f, "the player has already claimed this treasure"),
            Rejection::PlayerClaimLimit => write!(f, "the player has claimed as many treasures as the hunt allows"),
            Rejection::OutOfReach { distance, radius } => {
                write!(f, "the player is {distance} from the treasure, beyond its radius of {radius}")
            }
            Rejection::NotJoined => write!(f, "the player has not joined the hunt"),
            Rejection::AlreadyJoined => write!(f, "the player has already joined the hunt"),
            Rejection::PlayerLimit => write!(f, "the hunt holds the maximum number of players"),
            Rejection::OutOfBounds => write!(f, "the position lies outside the hunt's bounds"),
            Rejection::TooFast { distance, allowed } => {
                write!(f, "the move covers {distance} but the hunt's speed limit allows {allowed} at this time")
            }
            Rejection::Duplicate { seq, last } => {
                write!(f, "sequence number {seq} was already applied (last applied: {last})")
            }
            Rejection::ScoreOverflow => write!(f, "the score would overflow a signed 64-bit integer"),
            Rejection::SequenceExhausted => write!(
                f,
                "sequence number {} is never applied: no later event of the player could follow it",
                Sequence::MAX
            ),
            Rejection::CountTooLarge { asked, max } => write!(f, "asked for {asked} entries, at most {max} allowed"),
        }
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_follow_the_codes() {
        let codes: Vec<u16> = Rejection::SAMPLES.iter().map(Rejection::code).collect();
        assert_eq!(codes, Rejection::CODES);
        assert_eq!(Rejection::name_of_code(114), Some("treasure_exhausted"));
        assert_eq!(Rejection::name_of_code(99), None);
    }

    #[test]
    fn codes_are_distinct_and_listed() {
        let mut codes = Rejection::CODES.to_vec();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Rejection::CODES.len());
        let samples = [
            Rejection::HuntExists,
            Rejection::OutOfReach { distance: 12, radius: 5 },
            Rejection::Duplicate { seq: 3, last: 7 },
            Rejection::CountTooLarge { asked: 5000, max: 1000 },
        ];
        for rejection in samples {
            assert!(Rejection::CODES.contains(&rejection.code()), "{rejection:?}");
        }
    }

    #[test]
    fn messages_name_the_numbers() {
        let check = |rejection: Rejection, expected: &str| assert_eq!(rejection.to_string(), expected);
        check(
            Rejection::OutOfReach { distance: 12, radius: 5 },
            "the player is 12 from the treasure, beyond its radius of 5",
        );
        check(Rejection::Duplicate { seq: 3, last: 7 }, "sequence number 3 was already applied (last applied: 7)");
        check(Rejection::InvalidHunt("start is after end"), "invalid hunt: start is after end");
    }
}
