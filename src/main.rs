//! The `cairn` command: the command-line edge of the engine.
//!
//! Each subcommand parses its flags with clap, reads the clock and prints; the engine it
//! drives stays pure. `simulate` runs a seeded in-process hunt through the state machine
//! and reports its speed, its allocations per event and the final leaderboard.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

use cairn::alloc;
use cairn::event::Event;
use cairn::outcome::Outcome;
use cairn::shard::Shard;
use cairn::simulate::{Config, Workload, HUNT_ID_FIRST};

#[derive(Parser, Debug)]
#[command(name = "cairn", version, about = "Event engine for location-based treasure hunts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a seeded treasure hunt through the state machine in this process and report
    /// events per second, allocations per event and the final top 10.
    Simulate(SimulateArgs),
    /// Inspect a data directory's journals (a server's --data-dir, or one shard's
    /// directory in it) without changing them.
    #[command(subcommand)]
    Journal(JournalCommand),
}

#[derive(Subcommand, Debug)]
enum JournalCommand {
    /// Recover every shard read-only and report what a start would find: the snapshot,
    /// the records replayed, any torn tail, the state digest. Fails on corruption.
    Verify {
        /// Data directory or shard directory.
        dir: std::path::PathBuf,
    },
    /// Print the journal records, one per line: sequence number, event time, event.
    Dump {
        /// Data directory or shard directory.
        dir: std::path::PathBuf,
        /// First sequence number to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
}

#[derive(clap::Args, Debug)]
struct SimulateArgs {
    /// Seed of the event stream (the same seed replays the same hunt).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Hunts to run.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    hunts: u32,
    /// Players per hunt.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    players: u32,
    /// Treasures per hunt.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    treasures: u32,
    /// Steady-state events to apply after set-up.
    #[arg(long, default_value_t = 5_000_000)]
    events: u64,
    /// Moves claim treasures in reach (otherwise only digs claim).
    #[arg(long)]
    auto_discover: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => simulate(&args),
        Command::Journal(command) => return journal(&command),
    }
    ExitCode::SUCCESS
}

fn journal(command: &JournalCommand) -> ExitCode {
    let (JournalCommand::Verify { dir } | JournalCommand::Dump { dir, .. }) = command;
    let shards = match cairn::journal::shard_dirs(dir) {
        Ok(shards) => shards,
        Err(error) => {
            eprintln!("cairn journal: cannot read {}: {error}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    for shard in shards {
        let result = match command {
            JournalCommand::Verify { .. } => cairn::journal::verify(&shard).map(|report| println!("{report}")),
            JournalCommand::Dump { from, .. } => {
                println!("# {}", shard.display());
                cairn::journal::dump(&shard, *from, &mut std::io::stdout().lock()).map(|_| ())
            }
        };
        if let Err(error) = result {
            eprintln!("cairn journal: {}: {error}", shard.display());
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn simulate(args: &SimulateArgs) {
    let config = Config {
        seed: args.seed,
        hunts: args.hunts,
        players_per_hunt: args.players,
        treasures_per_hunt: args.treasures,
        auto_discover: args.auto_discover,
        ..Config::default()
    };
    let mut shard = Shard::new();
    let mut workload = Workload::new(config);
    let setup_started = Instant::now();
    workload.setup(|event, time| {
        let outcome = shard.apply(event, time);
        assert!(!outcome.is_rejected(), "set-up event refused: {event:?}: {outcome:?}");
    });
    println!(
        "set-up: {} hunts, {} players and {} treasures each, in {:.2} s",
        args.hunts,
        args.players,
        args.treasures,
        setup_started.elapsed().as_secs_f64()
    );
    let mut rejected = 0u64;
    let mut claims = 0u64;
    let scope = alloc::Scope::start();
    let started = Instant::now();
    for _ in 0..args.events {
        let (event, time) = workload.next_event();
        match shard.apply(&event, time) {
            Outcome::Rejected(_) => rejected += 1,
            Outcome::Dug { .. } => claims += 1,
            Outcome::Moved { claims: made } => claims += made.len() as u64,
            _ => {}
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allocations = scope.allocations();
    println!(
        "steady state: {} events in {:.3} s = {:.2} M events/s; {} claims, {} refused",
        args.events,
        elapsed,
        args.events as f64 / elapsed / 1e6,
        claims,
        rejected
    );
    println!("allocations: {} in steady state = {:.6} per event", allocations, allocations as f64 / args.events as f64);
    println!("state digest: {:016x}", shard.digest());
    if let Outcome::List { total, entries } =
        shard.apply(&Event::Top { hunt: HUNT_ID_FIRST, count: 10 }, workload.time())
    {
        println!("top 10 of hunt {HUNT_ID_FIRST} ({total} players):");
        for line in entries {
            println!("  {:>3}. player {:>7}  {:>6} points", line.rank, line.player, line.score);
        }
    }
}
