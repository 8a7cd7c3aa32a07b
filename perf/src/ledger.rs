//! What the harness saw acknowledged, and the end-of-run check of the server's own
//! answers against it.
//!
//! Each connection keeps a [`Ledger`] of the awards and score adjustments its players
//! were acknowledged (players belong to one connection, treasures are shared). After the
//! run the ledgers are summed and compared with a [`ServerView`], the state the server
//! reports when asked (Cairn: TREASURE_INFO and RANK; Redis: its hashes, sets and sorted
//! set). [`validate`] checks that no treasure was awarded beyond its capacity, that no
//! player was awarded a treasure twice, and that every score equals the sum of its
//! acknowledged awards and adjustments; it returns `"ok"` or says exactly what broke.

use std::collections::HashSet;

use crate::workload::World;

/// Problems listed in full in a validation message; the rest are counted.
const PROBLEMS_LISTED_MAX: usize = 8;

/// One connection's record of acknowledged effects.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    /// Acknowledged awards per treasure (index as `World::treasure_index`).
    awards: Vec<u32>,
    /// Expected score and acknowledged claims of each owned player, by local index.
    players: Vec<(i64, u32)>,
    /// (treasure index, local player index) pairs awarded: a second award is a double.
    claimed: HashSet<(u32, u32)>,
    /// Awards acknowledged for a pair already awarded.
    doubles: Vec<String>,
}

impl Ledger {
    /// An empty ledger for `players` owned players.
    pub fn new(world: &World, players: usize) -> Ledger {
        Ledger { awards: vec![0; world.treasures.len()], players: vec![(0, 0); players], ..Ledger::default() }
    }

    /// Records an acknowledged award of `points` from treasure `treasure_index` to owned
    /// player `local` (named `name` in messages).
    pub fn award(&mut self, treasure_index: usize, local: usize, points: i64, name: impl FnOnce() -> String) {
        self.awards[treasure_index] += 1;
        self.players[local].0 += points;
        self.players[local].1 += 1;
        if !self.claimed.insert((treasure_index as u32, local as u32)) {
            self.doubles.push(name());
        }
    }

    /// Records an acknowledged score adjustment.
    pub fn adjust(&mut self, local: usize, delta: i64) {
        self.players[local].0 += delta;
    }
}

/// The ledgers of all connections, summed: what validation compares.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Acknowledged awards per treasure.
    pub awards: Vec<u32>,
    /// Expected (score, claims) per global player slot.
    pub players: Vec<(i64, u32)>,
    /// Double awards seen, described.
    pub doubles: Vec<String>,
}

impl Totals {
    /// Sums per-connection ledgers; connection `c` of `C` owns slots `c, c + C, ...`.
    pub fn sum(world: &World, ledgers: &[&Ledger]) -> Totals {
        let connections = ledgers.len();
        let mut totals = Totals {
            awards: vec![0; world.treasures.len()],
            players: vec![(0, 0); world.scenario.players_total() as usize],
            doubles: Vec::new(),
        };
        for (connection, ledger) in ledgers.iter().enumerate() {
            for (total, awards) in totals.awards.iter_mut().zip(&ledger.awards) {
                *total += awards;
            }
            for (local, player) in ledger.players.iter().enumerate() {
                totals.players[connection + local * connections] = *player;
            }
            totals.doubles.extend(ledger.doubles.iter().cloned());
        }
        totals
    }
}

/// The server's own answers after the run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerView {
    /// Per treasure: (claims awarded, capacity), as the server reports them.
    pub treasures: Vec<(u32, u32)>,
    /// Per global player slot: score, and treasures claimed when the server can say
    /// cheaply (Cairn's RANK does; Redis would need a scan, so `None`).
    pub players: Vec<(i64, Option<u32>)>,
    /// Players the server holds more than one award of the same treasure for, if it can
    /// tell (Redis: a claimers set smaller than the claim count).
    pub doubles: Vec<String>,
}

/// Compares the server's answers with what was acknowledged: `"ok"`, or the problems.
pub fn validate(world: &World, totals: &Totals, view: &ServerView) -> String {
    let mut problems: Vec<String> = Vec::new();
    let count = world.scenario.treasures.count as usize;
    let players_per_hunt = world.scenario.players_per_hunt as usize;
    if view.treasures.len() != totals.awards.len() || view.players.len() != totals.players.len() {
        return format!(
            "the server answered for {} treasures and {} players, expected {} and {}",
            view.treasures.len(),
            view.players.len(),
            totals.awards.len(),
            totals.players.len()
        );
    }
    for (index, (&(claimed, capacity), &acked)) in view.treasures.iter().zip(&totals.awards).enumerate() {
        let name = format!("treasure {} of hunt {}", index % count, index / count);
        let laid = world.treasures[index].capacity;
        if capacity != laid {
            problems.push(format!("{name}: server capacity {capacity}, laid out with {laid}"));
        }
        if claimed > laid {
            problems.push(format!("{name}: awarded {claimed} times beyond its capacity {laid}"));
        }
        if acked > laid {
            problems.push(format!("{name}: {acked} awards acknowledged beyond its capacity {laid}"));
        }
        if claimed != acked {
            problems.push(format!("{name}: server counts {claimed} claims, {acked} were acknowledged"));
        }
    }
    for double in totals.doubles.iter().chain(&view.doubles) {
        problems.push(format!("awarded twice: {double}"));
    }
    for (slot, (&(score, claims), &(expected_score, expected_claims))) in
        view.players.iter().zip(&totals.players).enumerate()
    {
        let name = format!("player {} of hunt {}", slot % players_per_hunt, slot / players_per_hunt);
        if score != expected_score {
            problems
                .push(format!("{name}: score {score}, acknowledged awards and adjustments sum to {expected_score}"));
        }
        if let Some(claims) = claims.filter(|claims| *claims != expected_claims) {
            problems.push(format!("{name}: {claims} claims on the server, {expected_claims} acknowledged"));
        }
    }
    summarise(&problems)
}

fn summarise(problems: &[String]) -> String {
    match problems.len() {
        0 => "ok".to_string(),
        count => {
            let listed = problems.iter().take(PROBLEMS_LISTED_MAX).cloned().collect::<Vec<_>>().join("; ");
            if count > PROBLEMS_LISTED_MAX {
                format!("{count} problems: {listed}; and {} more", count - PROBLEMS_LISTED_MAX)
            } else {
                format!("{count} problems: {listed}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn world() -> World {
        let mut scenario = Scenario::default_for_tests();
        scenario.hunts = 2;
        scenario.players_per_hunt = 3;
        scenario.connections = 2;
        scenario.treasures.count = 2;
        scenario.treasures.capacity = [2, 2];
        World::new(&scenario)
    }

    /// Two connections: connection 0 owns slots 0, 2, 4; connection 1 owns 1, 3, 5.
    fn ledgers(world: &World) -> (Ledger, Ledger) {
        let mut first = Ledger::new(world, 3);
        let mut second = Ledger::new(world, 3);
        first.award(0, 0, 50, || "slot 0".into());
        second.award(0, 0, 50, || "slot 1".into());
        second.adjust(2, -7);
        (first, second)
    }

    /// The view a correct server would give for [`ledgers`].
    fn honest_view() -> ServerView {
        ServerView {
            treasures: vec![(2, 2), (0, 2), (0, 2), (0, 2)],
            players: vec![(50, Some(1)), (50, Some(1)), (0, Some(0)), (0, Some(0)), (0, Some(0)), (-7, Some(0))],
            doubles: Vec::new(),
        }
    }

    fn check(change: impl FnOnce(&mut ServerView, &mut Ledger), expected: &str) {
        let world = world();
        let (mut first, second) = ledgers(&world);
        let mut view = honest_view();
        change(&mut view, &mut first);
        let verdict = validate(&world, &Totals::sum(&world, &[&first, &second]), &view);
        assert!(verdict.contains(expected), "expected {expected:?} in {verdict:?}");
    }

    #[test]
    fn an_honest_server_is_ok() {
        check(|_, _| {}, "ok");
    }

    #[test]
    fn each_broken_rule_is_named() {
        check(|view, _| view.treasures[0] = (3, 2), "treasure 0 of hunt 0: awarded 3 times beyond its capacity 2");
        check(
            |view, _| view.treasures[1] = (1, 2),
            "treasure 1 of hunt 0: server counts 1 claims, 0 were acknowledged",
        );
        check(
            |view, _| view.players[5].0 = 0,
            "player 2 of hunt 1: score 0, acknowledged awards and adjustments sum to -7",
        );
        check(|view, _| view.players[0].1 = Some(2), "player 0 of hunt 0: 2 claims on the server, 1 acknowledged");
        check(
            |view, _| view.players.pop().map(drop).unwrap_or(()),
            "the server answered for 4 treasures and 5 players",
        );
        check(
            |view, ledger| {
                ledger.award(0, 0, 50, || "player 0 of hunt 0, treasure 0".into());
                view.treasures[0] = (3, 2);
                view.players[0] = (100, Some(2));
            },
            "awarded twice: player 0 of hunt 0, treasure 0",
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let problems: Vec<String> = (0..20).map(|n| format!("p{n}")).collect();
        let text = summarise(&problems);
        assert!(text.starts_with("20 problems: p0; p1"));
        assert!(text.ends_with("and 12 more"));
    }
}
