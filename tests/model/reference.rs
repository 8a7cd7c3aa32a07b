//! The reference model of one shard: the same domain rules as `src/hunt.rs` and
//! `src/shard.rs`, written the obvious way so that it can be trusted by reading it.
//!
//! Everything is a `Vec` searched linearly, the leaderboard is the list of players sorted
//! afresh whenever a rank is needed, distances are exact integers (squared distances
//! compared with squared radii; square roots by binary search, never through `f64`), and
//! there are no handles, grids or hash maps. Only planar hunts are modelled: the property
//! test never creates a geographic one. The model is slow on purpose; it never needs to be
//! fast, only right.
//!
//! Where the engine made a choice that the design leaves open (which check wins when two
//! fail, announcing lifecycle stages on refused events, a re-placed treasure being a new
//! treasure), the model makes the same choice and says so in a comment, and the test's
//! report lists it as a doubtful behaviour rather than silently agreeing.

use std::cmp::Reverse;

use cairn::constants::{
    AROUND_RADIUS_MAX, CLAIMS_PER_MOVE_MAX, COORDINATE_ABS_MAX, MICROS_PER_SECOND, RADIUS_MAX, SPEED_BURST_US,
    TOP_COUNT_MAX, TOP_NOTICE_RANKS_MAX, TREASURE_CAPACITY_MAX, TREASURE_VALUE_MAX,
};
use cairn::event::{
    Coordinates, Event, HuntId, HuntSpec, Micros, PlayerId, PointsRule, Position, Sequence, TreasureId, TreasureSpec,
};
use cairn::outcome::{
    Claim, Lifecycle, Notice, NoticeKind, Outcome, Ranked, Rejection, Standing, Topic, TreasureState,
};

/// An owned copy of an [`Outcome`]: the engine's outcome borrows its scratch buffers, the
/// model's answer owns its lists, and both are compared in this form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// See [`Outcome::HuntCreated`].
    HuntCreated,
    /// See [`Outcome::HuntEnded`].
    HuntEnded,
    /// See [`Outcome::HuntDeleted`].
    HuntDeleted,
    /// See [`Outcome::TreasurePlaced`].
    TreasurePlaced,
    /// See [`Outcome::TreasureRemoved`].
    TreasureRemoved,
    /// See [`Outcome::Joined`].
    Joined { score: i64, rank: u32 },
    /// See [`Outcome::Left`].
    Left,
    /// See [`Outcome::Moved`].
    Moved(Vec<Claim>),
    /// See [`Outcome::Dug`].
    Dug(Claim),
    /// See [`Outcome::Adjusted`].
    Adjusted { score: i64, rank: u32 },
    /// See [`Outcome::List`].
    List { total: u32, entries: Vec<Ranked> },
    /// See [`Outcome::Standing`].
    Standing(Standing),
    /// See [`Outcome::Hint`].
    Hint(Option<u64>),
    /// See [`Outcome::Treasure`].
    Treasure(TreasureState),
    /// See [`Outcome::Rejected`].
    Rejected(Rejection),
}

impl Answer {
    /// The owned form of an engine outcome.
    pub fn of(outcome: &Outcome<'_>) -> Answer {
        match *outcome {
            Outcome::HuntCreated => Answer::HuntCreated,
            Outcome::HuntEnded => Answer::HuntEnded,
            Outcome::HuntDeleted => Answer::HuntDeleted,
            Outcome::TreasurePlaced => Answer::TreasurePlaced,
            Outcome::TreasureRemoved => Answer::TreasureRemoved,
            Outcome::Joined { score, rank } => Answer::Joined { score, rank },
            Outcome::Left => Answer::Left,
            Outcome::Moved { claims } => Answer::Moved(claims.to_vec()),
            Outcome::Dug { claim } => Answer::Dug(claim),
            Outcome::Adjusted { score, rank } => Answer::Adjusted { score, rank },
            Outcome::List { total, entries } => Answer::List { total, entries: entries.to_vec() },
            Outcome::Standing(standing) => Answer::Standing(standing),
            Outcome::Hint { distance } => Answer::Hint(distance),
            Outcome::Treasure(state) => Answer::Treasure(state),
            Outcome::Rejected(rejection) => Answer::Rejected(rejection),
        }
    }

    /// Returns true if and only if this is a refusal.
    pub fn is_rejected(&self) -> bool {
        matches!(self, Answer::Rejected(_))
    }

    /// A short label for coverage counts: the variant, and for a rejection its name.
    pub fn label(&self) -> String {
        match self {
            Answer::Rejected(rejection) => format!("rejected:{}", rejection.name()),
            Answer::Moved(claims) => format!("moved:{}", claims.len()),
            Answer::Hint(distance) => format!("hint:{}", if distance.is_some() { "some" } else { "none" }),
            other => format!("{other:?}").split([' ', '(', '{']).next().unwrap_or_default().to_lowercase(),
        }
    }
}

/// What one event did in the model: its answer and the notices it produced, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The answer.
    pub answer: Answer,
    /// The notices.
    pub notices: Vec<Notice>,
}

/// Floor of the square root, by binary search over exact integers.
pub fn isqrt(value: u64) -> u64 {
    let (mut low, mut high) = (0u64, 1u64 << 32);
    while low < high {
        let middle = low + (high - low).div_ceil(2);
        if (middle as u128) * (middle as u128) <= value as u128 {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    low
}

/// Exact squared distance between two positions.
pub fn distance_squared(a: Position, b: Position) -> u64 {
    let dx = (a.x as i64 - b.x as i64).unsigned_abs();
    let dy = (a.y as i64 - b.y as i64).unsigned_abs();
    dx * dx + dy * dy
}

/// A placed treasure.
#[derive(Clone, Debug)]
pub struct Treasure {
    /// As placed.
    pub spec: TreasureSpec,
    /// Which placement this is, over the whole model: a treasure removed and placed again
    /// under the same id is a new placement.
    pub placement: u64,
    /// Players it was awarded to, in award order.
    pub claimers: Vec<PlayerId>,
}

impl Treasure {
    fn claimed(&self) -> u32 {
        self.claimers.len() as u32
    }
}

/// A player who joined at least once.
#[derive(Clone, Debug)]
pub struct Player {
    /// The player.
    pub id: PlayerId,
    /// Last accepted position.
    pub position: Position,
    /// Event time of the last accepted join, move or dig.
    pub last_time: Micros,
    /// Score.
    pub score: i64,
    /// Event time at which the score was last changed (or the first join).
    pub reached_at: Micros,
    /// Treasures awarded.
    pub claims: u32,
    /// Last sequence number applied.
    pub last_seq: Sequence,
    /// Currently joined.
    pub joined: bool,
    /// Travel banked under the speed limit, in millionths of a world unit: exact, since
    /// a speed in units per second times a time in microseconds is a whole number of them,
    /// so no fraction of a unit earned is ever dropped.
    pub budget_micro_units: u128,
}

/// One award, kept so that scores can be recomputed from first principles.
#[derive(Clone, Copy, Debug)]
pub struct Award {
    /// The player.
    pub player: PlayerId,
    /// The treasure's id.
    pub treasure: TreasureId,
    /// The treasure's placement (see [`Treasure::placement`]).
    pub placement: u64,
    /// Points given.
    pub points: u32,
}

/// One hunt.
#[derive(Clone, Debug)]
pub struct Hunt {
    /// The hunt.
    pub id: HuntId,
    /// As created.
    pub spec: HuntSpec,
    /// Effective end: lowered by `EndHunt` to that event's time.
    pub end: Micros,
    started_announced: bool,
    ended_announced: bool,
    topic_seqs: [u64; Topic::COUNT],
    /// Live treasures.
    pub treasures: Vec<Treasure>,
    /// Every player who ever joined, in join order.
    pub players: Vec<Player>,
    /// Every award ever made in this hunt.
    pub awards: Vec<Award>,
    /// Every accepted score adjustment: (player, delta).
    pub adjustments: Vec<(PlayerId, i64)>,
}

/// The whole shard.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Live hunts, in creation order.
    pub hunts: Vec<Hunt>,
    placements: u64,
    /// Set when the engine's choice of treasures for an auto-discovering move is not one
    /// the rules allow; the test reads and reports it.
    divergence: Option<String>,
}

impl Model {
    /// An empty shard.
    pub fn new() -> Model {
        Model::default()
    }

    /// A live hunt.
    pub fn hunt(&self, id: HuntId) -> Option<&Hunt> {
        self.hunts.iter().find(|hunt| hunt.id == id)
    }

    /// Applies one event at `time`. For a move in an auto-discovering hunt, `picked` is
    /// the engine's choice of treasures, in its order: any choice of the right size among
    /// the eligible treasures is correct (the engine's grid decides which come first), so
    /// the model checks the choice and then awards in that order. With `picked` absent the
    /// model chooses by ascending id. An illegal choice is an `Err` naming it.
    pub fn apply(&mut self, event: &Event, time: Micros, picked: Option<&[TreasureId]>) -> Result<Step, String> {
        let mut notices = Vec::new();
        let answer = match self.mutate(event, time, picked, &mut notices) {
            Ok(answer) => answer,
            Err(rejection) => Answer::Rejected(rejection),
        };
        match self.divergence.take() {
            Some(why) => Err(why),
            None => Ok(Step { answer, notices }),
        }
    }

    fn hunt_mut(&mut self, id: HuntId) -> Result<&mut Hunt, Rejection> {
        self.hunts.iter_mut().find(|hunt| hunt.id == id).ok_or(Rejection::HuntNotFound)
    }

    fn mutate(
        &mut self,
        event: &Event,
        time: Micros,
        picked: Option<&[TreasureId]>,
        notices: &mut Vec<Notice>,
    ) -> Result<Answer, Rejection> {
        match *event {
            Event::CreateHunt { hunt, spec } => {
                if self.hunt(hunt).is_some() {
                    return Err(Rejection::HuntExists);
                }
                let mut created = Hunt::create(hunt, spec)?;
                created.advance(time, notices);
                self.hunts.push(created);
                return Ok(Answer::HuntCreated);
            }
            Event::DeleteHunt { hunt } => {
                let index = self.hunts.iter().position(|each| each.id == hunt).ok_or(Rejection::HuntNotFound)?;
                let mut deleted = self.hunts.remove(index);
                // Stages its time reached are announced first, as by every mutation.
                deleted.advance(time, notices);
                deleted.push_notice(notices, NoticeKind::Lifecycle(Lifecycle::Deleted));
                return Ok(Answer::HuntDeleted);
            }
            _ => {}
        }
        if !event.is_mutation() {
            return self.answer(event, time);
        }
        let placement = self.placements + 1;
        let mut divergence = None;
        let hunt = self.hunt_mut(event.hunt())?;
        // The engine announces lifecycle stages that the event time has reached before it
        // looks at the event, so even a refused mutation announces them (doubtful: see the
        // report). The model does the same.
        hunt.advance(time, notices);
        let answer = match *event {
            Event::CreateHunt { .. } | Event::DeleteHunt { .. } => unreachable!("handled above"),
            Event::EndHunt { .. } => {
                hunt.end = hunt.end.min(time);
                hunt.advance(time, notices);
                Ok(Answer::HuntEnded)
            }
            Event::PlaceTreasure { treasure, .. } => hunt.place(treasure, placement),
            Event::RemoveTreasure { treasure, .. } => hunt.remove(treasure),
            Event::Join { player, seq, position, .. } => hunt.join(player, seq, position, time, notices),
            Event::Leave { player, seq, .. } => hunt.leave(player, seq, time),
            Event::Move { player, seq, position, .. } => {
                hunt.move_player(player, seq, position, time, picked, &mut divergence, notices)
            }
            Event::Dig { player, seq, treasure, position, .. } => {
                hunt.dig(player, seq, treasure, position, time, notices)
            }
            Event::AdjustScore { player, seq, delta, .. } => hunt.adjust(player, seq, delta, time, notices),
            _ => unreachable!("queries are answered above"),
        };
        if matches!(answer, Ok(Answer::TreasurePlaced)) {
            self.placements = placement;
        }
        self.divergence = divergence;
        answer
    }

    /// Answers a query at `time` without changing anything.
    pub fn answer(&self, event: &Event, time: Micros) -> Result<Answer, Rejection> {
        assert!(!event.is_mutation());
        let hunt = self.hunt(event.hunt()).ok_or(Rejection::HuntNotFound)?;
        match *event {
            Event::Top { count, .. } => {
                if count > TOP_COUNT_MAX {
                    return Err(Rejection::CountTooLarge { asked: count, max: TOP_COUNT_MAX });
                }
                Ok(hunt.list(1, count))
            }
            Event::Around { player, radius, .. } => {
                if radius > AROUND_RADIUS_MAX {
                    return Err(Rejection::CountTooLarge { asked: radius, max: AROUND_RADIUS_MAX });
                }
                let rank = hunt.rank(player)?;
                let first = rank.saturating_sub(radius).max(1);
                Ok(hunt.list(first, rank + radius - first + 1))
            }
            Event::Rank { player, .. } => Ok(Answer::Standing(hunt.standing(player)?)),
            Event::Hint { player, .. } => Ok(Answer::Hint(hunt.hint(player, time)?)),
            Event::TreasureInfo { treasure, .. } => {
                let treasure = hunt.treasure(treasure).ok_or(Rejection::TreasureNotFound)?;
                let spec = &treasure.spec;
                Ok(Answer::Treasure(TreasureState {
                    claimed: treasure.claimed(),
                    capacity: spec.capacity,
                    value: spec.value,
                }))
            }
            _ => unreachable!("only queries are answered here"),
        }
    }
}

/// Points the `index`-th of `capacity` claimers receives: the design's formula, in `u64`
/// so that the product cannot overflow.
pub fn points(rule: PointsRule, value: u32, index: u32, capacity: u32) -> u32 {
    match rule {
        PointsRule::Full => value,
        PointsRule::Decay => (value as u64 * (capacity - index + 1) as u64 / capacity as u64) as u32,
    }
}

impl Hunt {
    fn create(id: HuntId, spec: HuntSpec) -> Result<Hunt, Rejection> {
        assert_eq!(spec.coordinates, Coordinates::Planar, "the model knows planar hunts only");
        if spec.start >= spec.end {
            return Err(Rejection::InvalidHunt("start time must be before end time"));
        }
        if spec.min.x > spec.max.x || spec.min.y > spec.max.y {
            return Err(Rejection::InvalidHunt("the minimum corner must not exceed the maximum corner"));
        }
        let coordinates = [spec.min.x, spec.min.y, spec.max.x, spec.max.y];
        if coordinates.iter().any(|&value| (value as i64).abs() > COORDINATE_ABS_MAX) {
            return Err(Rejection::InvalidHunt("bounds outside the coordinate range"));
        }
        Ok(Hunt {
            id,
            spec,
            end: spec.end,
            started_announced: false,
            ended_announced: false,
            topic_seqs: [0; Topic::COUNT],
            treasures: Vec::new(),
            players: Vec::new(),
            awards: Vec::new(),
            adjustments: Vec::new(),
        })
    }

    fn running(&self, time: Micros) -> Result<(), Rejection> {
        if time >= self.end {
            return Err(Rejection::HuntEnded);
        }
        if time < self.spec.start {
            return Err(Rejection::HuntNotStarted);
        }
        Ok(())
    }

    fn not_ended(&self, time: Micros) -> Result<(), Rejection> {
        if time >= self.end {
            return Err(Rejection::HuntEnded);
        }
        Ok(())
    }

    fn push_notice(&mut self, notices: &mut Vec<Notice>, kind: NoticeKind) {
        let seq = &mut self.topic_seqs[kind.topic() as usize];
        *seq += 1;
        notices.push(Notice { hunt: self.id, seq: *seq, kind });
    }

    /// Lifecycle announcements. "Started" is said once, the first time a mutation sees the
    /// hunt at or past its start, and only if the hunt ever ran (its effective end lies
    /// after its start); "Ended" is said once, the first time a mutation sees it at or
    /// past its effective end.
    fn advance(&mut self, time: Micros, notices: &mut Vec<Notice>) {
        if !self.started_announced && time >= self.spec.start && self.spec.start < self.end {
            self.started_announced = true;
            self.push_notice(notices, NoticeKind::Lifecycle(Lifecycle::Started));
        }
        if !self.ended_announced && time >= self.end {
            self.ended_announced = true;
            self.push_notice(notices, NoticeKind::Lifecycle(Lifecycle::Ended));
        }
    }

    fn inside(&self, position: Position) -> bool {
        let (min, max) = (self.spec.min, self.spec.max);
        min.x <= position.x && position.x <= max.x && min.y <= position.y && position.y <= max.y
    }

    fn treasure(&self, id: TreasureId) -> Option<&Treasure> {
        self.treasures.iter().find(|treasure| treasure.spec.id == id)
    }

    fn player(&self, id: PlayerId) -> Option<&Player> {
        self.players.iter().find(|player| player.id == id)
    }

    fn player_mut(&mut self, id: PlayerId) -> &mut Player {
        self.players.iter_mut().find(|player| player.id == id).expect("a known player")
    }

    // -----------------------------------------------------------------------------------
    // Treasures.

    fn place(&mut self, spec: TreasureSpec, placement: u64) -> Result<Answer, Rejection> {
        if self.treasure(spec.id).is_some() {
            return Err(Rejection::TreasureExists);
        }
        if !self.inside(spec.position) {
            return Err(Rejection::InvalidTreasure("position outside the hunt's bounds"));
        }
        if spec.capacity == 0 || spec.capacity > TREASURE_CAPACITY_MAX {
            return Err(Rejection::InvalidTreasure("capacity must be between 1 and 100000"));
        }
        if spec.value > TREASURE_VALUE_MAX {
            return Err(Rejection::InvalidTreasure("value must be at most 1000000 points"));
        }
        if spec.radius > RADIUS_MAX || spec.hint_radius > RADIUS_MAX {
            return Err(Rejection::InvalidTreasure("radius or hint radius too large"));
        }
        // The treasure and claim limits of a hunt lie far beyond what the test places.
        self.treasures.push(Treasure { spec, placement, claimers: Vec::new() });
        Ok(Answer::TreasurePlaced)
    }

    fn remove(&mut self, id: TreasureId) -> Result<Answer, Rejection> {
        let index = self.treasures.iter().position(|treasure| treasure.spec.id == id);
        let index = index.ok_or(Rejection::TreasureNotFound)?;
        // Its awards stay in the scores. The engine forgets who claimed it, so a treasure
        // placed again under this id is a new treasure that everyone may claim (doubtful:
        // see the report); the model's placement numbers say the same.
        self.treasures.remove(index);
        Ok(Answer::TreasureRemoved)
    }

    // -----------------------------------------------------------------------------------
    // The leaderboard.

    /// Every player, best first: score descending, then earlier `reached_at`, then
    /// lower id.
    fn board(&self) -> Vec<&Player> {
        let mut board: Vec<&Player> = self.players.iter().collect();
        board.sort_by_key(|player| (Reverse(player.score), player.reached_at, player.id));
        board
    }

    fn rank(&self, id: PlayerId) -> Result<u32, Rejection> {
        let index = self.board().iter().position(|player| player.id == id).ok_or(Rejection::NotJoined)?;
        Ok(index as u32 + 1)
    }

    fn list(&self, first: u32, count: u32) -> Answer {
        let board = self.board();
        let entries = board
            .iter()
            .enumerate()
            .map(|(index, player)| Ranked {
                rank: index as u32 + 1,
                player: player.id,
                score: player.score,
                reached_at: player.reached_at,
            })
            .filter(|ranked| ranked.rank >= first && ranked.rank - first < count)
            .collect();
        Answer::List { total: board.len() as u32, entries }
    }

    fn standing(&self, id: PlayerId) -> Result<Standing, Rejection> {
        let rank = self.rank(id)?;
        let player = self.player(id).expect("ranked players are known");
        Ok(Standing {
            rank,
            total: self.players.len() as u32,
            score: player.score,
            claims: player.claims,
            last_seq: player.last_seq,
            joined: player.joined,
        })
    }

    /// Adds points (already checked not to overflow) at `time`, and announces the change
    /// if it touches the top ranks. Zero points change nothing, not even `reached_at`.
    fn add_points(&mut self, id: PlayerId, points: i64, time: Micros, notices: &mut Vec<Notice>) -> (i64, u32) {
        let rank_before = self.rank(id).expect("a known player");
        if points == 0 {
            return (self.player(id).expect("a known player").score, rank_before);
        }
        let player = self.player_mut(id);
        player.score += points;
        player.reached_at = time;
        let score = player.score;
        let rank_after = self.rank(id).expect("a known player");
        if rank_before <= TOP_NOTICE_RANKS_MAX || rank_after <= TOP_NOTICE_RANKS_MAX {
            self.push_notice(notices, NoticeKind::TopChanged { player: id, score, rank_before, rank_after });
        }
        (score, rank_after)
    }

    // -----------------------------------------------------------------------------------
    // Players.

    /// A joined player whose sequence number is new. The duplicate check comes before the
    /// joined check, so a retry is reported as a duplicate even after the player left.
    fn active(&self, id: PlayerId, seq: Sequence) -> Result<&Player, Rejection> {
        if seq == Sequence::MAX {
            return Err(Rejection::SequenceExhausted);
        }
        let player = self.player(id).ok_or(Rejection::NotJoined)?;
        if seq <= player.last_seq {
            return Err(Rejection::Duplicate { seq, last: player.last_seq });
        }
        if !player.joined {
            return Err(Rejection::NotJoined);
        }
        Ok(player)
    }

    /// The burst: `SPEED_BURST_US` of travel at the hunt's speed, in millionths of a unit.
    fn budget_max_micro_units(&self) -> u128 {
        self.spec.options.speed_max as u128 * SPEED_BURST_US as u128
    }

    fn join(
        &mut self,
        id: PlayerId,
        seq: Sequence,
        position: Position,
        time: Micros,
        notices: &mut Vec<Notice>,
    ) -> Result<Answer, Rejection> {
        // The top sequence number is never applied: nothing could follow it.
        if seq == Sequence::MAX {
            return Err(Rejection::SequenceExhausted);
        }
        let budget = self.budget_max_micro_units();
        if let Some(player) = self.player(id) {
            if seq <= player.last_seq {
                return Err(Rejection::Duplicate { seq, last: player.last_seq });
            }
            if player.joined {
                return Err(Rejection::AlreadyJoined);
            }
            self.not_ended(time)?;
            if !self.inside(position) {
                return Err(Rejection::OutOfBounds);
            }
            // Coming back: reachable at the speed limit over the time away plus the burst.
            let speed = self.spec.options.speed_max as u128;
            if speed > 0 {
                let away = time.saturating_sub(player.last_time) as u128 + SPEED_BURST_US as u128;
                let reach = speed * away / MICROS_PER_SECOND as u128;
                let distance = isqrt(distance_squared(player.position, position));
                if distance as u128 > reach {
                    return Err(Rejection::TooFast { distance, allowed: reach as u64 });
                }
            }
            // A rejoin keeps score, claims and `reached_at`.
            let player = self.player_mut(id);
            player.joined = true;
            player.last_seq = seq;
            player.position = position;
            player.last_time = time;
            player.budget_micro_units = budget;
            let score = player.score;
            return Ok(Answer::Joined { score, rank: self.rank(id)? });
        }
        self.not_ended(time)?;
        if !self.inside(position) {
            return Err(Rejection::OutOfBounds);
        }
        self.players.push(Player {
            id,
            position,
            last_time: time,
            score: 0,
            reached_at: time,
            claims: 0,
            last_seq: seq,
            joined: true,
            budget_micro_units: budget,
        });
        let rank = self.rank(id)?;
        if rank <= TOP_NOTICE_RANKS_MAX {
            self.push_notice(
                notices,
                NoticeKind::TopChanged { player: id, score: 0, rank_before: 0, rank_after: rank },
            );
        }
        Ok(Answer::Joined { score: 0, rank })
    }

    /// Refused after the end, like every player event: the final standings stay final.
    fn leave(&mut self, id: PlayerId, seq: Sequence, time: Micros) -> Result<Answer, Rejection> {
        self.active(id, seq)?;
        self.not_ended(time)?;
        let player = self.player_mut(id);
        player.joined = false;
        player.last_seq = seq;
        Ok(Answer::Left)
    }

    /// Bounds and the speed limit: a move may cover what the hunt's speed earns over the
    /// whole time since the player's last move, plus what they banked; what it leaves,
    /// at most `SPEED_BURST_US` worth, stays banked, fractions of a unit included. A move
    /// spends its (floored) length. Everything is counted in millionths of a unit, exactly.
    /// Returns the budget left after the move.
    fn check_move(&self, player: &Player, position: Position, time: Micros) -> Result<u128, Rejection> {
        if !self.inside(position) {
            return Err(Rejection::OutOfBounds);
        }
        let speed = self.spec.options.speed_max as u128;
        if speed == 0 {
            return Ok(0);
        }
        let micro = MICROS_PER_SECOND as u128;
        let elapsed = time.saturating_sub(player.last_time) as u128;
        let budget = player.budget_micro_units + speed * elapsed;
        let distance = isqrt(distance_squared(player.position, position));
        if distance as u128 * micro > budget {
            return Err(Rejection::TooFast { distance, allowed: (budget / micro) as u64 });
        }
        Ok((budget - distance as u128 * micro).min(self.budget_max_micro_units()))
    }

    fn claims_left(&self, player: &Player) -> u32 {
        match self.spec.options.claims_per_player_max {
            0 => u32::MAX,
            max => max.saturating_sub(player.claims),
        }
    }

    /// The claim rule once the hunt runs and the player is joined, in the engine's order:
    /// capacity, claimed before, the player's limit, reach. Returns the points.
    fn check_claim(&self, treasure: &Treasure, player: &Player, position: Position) -> Result<u32, Rejection> {
        let spec = &treasure.spec;
        if treasure.claimed() >= spec.capacity {
            return Err(Rejection::TreasureExhausted);
        }
        if treasure.claimers.contains(&player.id) {
            return Err(Rejection::AlreadyClaimed);
        }
        if self.claims_left(player) == 0 {
            return Err(Rejection::PlayerClaimLimit);
        }
        let distance_squared = distance_squared(position, spec.position);
        if distance_squared > spec.radius as u64 * spec.radius as u64 {
            // Rounded up, so the distance reported is beyond the radius.
            let root = isqrt(distance_squared);
            let distance = if root * root == distance_squared { root } else { root + 1 };
            return Err(Rejection::OutOfReach { distance, radius: spec.radius });
        }
        Ok(points(self.spec.options.points, spec.value, treasure.claimed() + 1, spec.capacity))
    }

    fn commit_move(&mut self, id: PlayerId, seq: Sequence, position: Position, budget: u128, time: Micros) {
        let player = self.player_mut(id);
        player.position = position;
        player.budget_micro_units = budget;
        player.last_time = player.last_time.max(time);
        player.last_seq = seq;
    }

    fn award(&mut self, treasure_id: TreasureId, id: PlayerId, time: Micros, notices: &mut Vec<Notice>) -> Claim {
        let rule = self.spec.options.points;
        let treasure = self.treasures.iter_mut().find(|treasure| treasure.spec.id == treasure_id).expect("live");
        treasure.claimers.push(id);
        let (index, capacity) = (treasure.claimed(), treasure.spec.capacity);
        let points = points(rule, treasure.spec.value, index, capacity);
        let placement = treasure.placement;
        self.awards.push(Award { player: id, treasure: treasure_id, placement, points });
        let player = self.player_mut(id);
        player.claims = player.claims.saturating_add(1);
        let (score, rank) = self.add_points(id, points as i64, time, notices);
        let claim = Claim { treasure: treasure_id, index, capacity, points, score, rank };
        self.push_notice(notices, NoticeKind::Discovery { player: id, claim });
        if index == capacity {
            self.push_notice(notices, NoticeKind::Lifecycle(Lifecycle::Exhausted { treasure: treasure_id }));
        }
        claim
    }

    #[allow(clippy::too_many_arguments)] // One argument per field of the event, plus the checks' outputs.
    fn move_player(
        &mut self,
        id: PlayerId,
        seq: Sequence,
        position: Position,
        time: Micros,
        picked: Option<&[TreasureId]>,
        divergence: &mut Option<String>,
        notices: &mut Vec<Notice>,
    ) -> Result<Answer, Rejection> {
        let player = self.active(id, seq)?;
        self.not_ended(time)?;
        let budget = self.check_move(player, position, time)?;
        let mut chosen = Vec::new();
        if self.spec.options.auto_discover && self.running(time).is_ok() {
            let mut eligible: Vec<(TreasureId, u32)> = Vec::new();
            for treasure in &self.treasures {
                if let Ok(points) = self.check_claim(treasure, player, position) {
                    eligible.push((treasure.spec.id, points));
                }
            }
            eligible.sort_unstable();
            let count = eligible.len().min(CLAIMS_PER_MOVE_MAX).min(self.claims_left(player) as usize);
            chosen = match picked {
                None => eligible.iter().take(count).map(|&(treasure, _)| treasure).collect(),
                Some(picked) => {
                    let ids: Vec<TreasureId> = eligible.iter().map(|&(treasure, _)| treasure).collect();
                    let mut distinct = picked.to_vec();
                    distinct.sort_unstable();
                    distinct.dedup();
                    let legal = picked.len() == count
                        && distinct.len() == picked.len()
                        && picked.iter().all(|treasure| ids.contains(treasure));
                    if !legal {
                        *divergence = Some(format!(
                            "the move claimed {picked:?}, but {count} of the eligible treasures {ids:?} were due"
                        ));
                    }
                    picked.to_vec()
                }
            };
            let total: i64 = eligible
                .iter()
                .filter(|(treasure, _)| chosen.contains(treasure))
                .map(|&(_, points)| points as i64)
                .sum();
            if player.score.checked_add(total).is_none() {
                return Err(Rejection::ScoreOverflow);
            }
        }
        self.commit_move(id, seq, position, budget, time);
        let claims = chosen.into_iter().map(|treasure| self.award(treasure, id, time, notices)).collect();
        Ok(Answer::Moved(claims))
    }

    fn dig(
        &mut self,
        id: PlayerId,
        seq: Sequence,
        treasure_id: TreasureId,
        position: Position,
        time: Micros,
        notices: &mut Vec<Notice>,
    ) -> Result<Answer, Rejection> {
        let player = self.active(id, seq)?;
        self.running(time)?;
        let treasure = self.treasure(treasure_id).ok_or(Rejection::TreasureNotFound)?;
        let budget = self.check_move(player, position, time)?;
        let points = self.check_claim(treasure, player, position)?;
        if player.score.checked_add(points as i64).is_none() {
            return Err(Rejection::ScoreOverflow);
        }
        self.commit_move(id, seq, position, budget, time);
        Ok(Answer::Dug(self.award(treasure_id, id, time, notices)))
    }

    fn adjust(
        &mut self,
        id: PlayerId,
        seq: Sequence,
        delta: i32,
        time: Micros,
        notices: &mut Vec<Notice>,
    ) -> Result<Answer, Rejection> {
        let player = self.active(id, seq)?;
        self.not_ended(time)?;
        player.score.checked_add(delta as i64).ok_or(Rejection::ScoreOverflow)?;
        self.player_mut(id).last_seq = seq;
        self.adjustments.push((id, delta as i64));
        let (score, rank) = self.add_points(id, delta as i64, time, notices);
        Ok(Answer::Adjusted { score, rank })
    }

    // -----------------------------------------------------------------------------------
    // Hints.

    /// Distance to the nearest treasure the player could still claim: capacity left, not
    /// claimed by them, and within its hint radius (0 = any distance); none if the player
    /// may claim nothing more. Ties do not matter: only the distance is answered. After
    /// the hunt's end nothing can be claimed: refused as ended, once the player is known.
    fn hint(&self, id: PlayerId, time: Micros) -> Result<Option<u64>, Rejection> {
        let player = self.player(id).ok_or(Rejection::NotJoined)?;
        if !player.joined {
            return Err(Rejection::NotJoined);
        }
        self.not_ended(time)?;
        if self.claims_left(player) == 0 {
            return Ok(None);
        }
        let nearest = self
            .treasures
            .iter()
            .filter(|treasure| treasure.claimed() < treasure.spec.capacity)
            .filter(|treasure| !treasure.claimers.contains(&id))
            .map(|treasure| (distance_squared(player.position, treasure.spec.position), treasure.spec.hint_radius))
            .filter(|&(distance_squared, hint)| hint == 0 || distance_squared <= hint as u64 * hint as u64)
            .map(|(distance_squared, _)| distance_squared)
            .min();
        Ok(nearest.map(isqrt))
    }
}
