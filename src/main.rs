//! The `cairn` command: the command-line edge of the engine.
//!
//! Each subcommand parses its flags with clap, reads the clock and prints; the engine it
//! drives stays pure. `serve` runs the TCP server until SIGINT or SIGTERM; `stats` asks a
//! running server for its numbers. `simulate` runs a seeded in-process hunt through the state machine
//! and reports its speed, its allocations per event and the final leaderboard.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM, SIGXFSZ};
use signal_hook::iterator::Signals;

use clap::{Parser, Subcommand};

use cairn::alloc;
use cairn::client::{Client, ClientError, Options};
use cairn::constants::{
    CONNECTIONS_MAX, CONNECTIONS_PER_SHARD_MAX, FRAME_SIZE_MAX, FRAME_TIMEOUT_US, HELLO_TIMEOUT_US,
    IDLE_TIMEOUT_US_MAX, INFLIGHT_REQUESTS_PER_CONNECTION_MAX, OUTPUT_BUFFER_BYTES_HIGH, SHARDS_MAX,
    SNAPSHOT_INTERVAL_EVENTS, SUBSCRIBER_BUFFER_BYTES_MAX, SUBSCRIBER_BUFFER_BYTES_SOFT, TIMEOUT_US_MAX,
    WRITE_TIMEOUT_US,
};
use cairn::event::Event;

use cairn::constants::RULES_VERSION;
use cairn::journal::{Durability, JournalError, RulesCheck};
use cairn::outcome::Outcome;
use cairn::server;
use cairn::shard::Shard;
use cairn::simulate::{Config, Workload, EVENTS_PER_PLAYER_MAX, HUNT_ID_FIRST, SLOTS_MAX};

#[derive(Parser, Debug)]
#[command(name = "cairn", version, about = "Event engine for location-based treasure hunts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the wire protocol over TCP, one shard thread per core.
    Serve(ServeArgs),
    /// Ask a running server for its statistics and print them.
    Stats(StatsArgs),
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
    /// the records replayed, any torn tail, the state digest. Fails on corruption, on a
    /// data directory whose `shards` file is missing or disagrees with its shards, and on
    /// one whose `rules-version` is not this build's (or missing beside journals).
    Verify {
        /// Data directory or shard directory.
        dir: std::path::PathBuf,
    },
    /// Print the journal records, one per line: sequence number, event time, event
    /// (after a line naming the data directory's rules version).
    Dump {
        /// Data directory or shard directory.
        dir: std::path::PathBuf,
        /// First sequence number to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7411")]
    listen: SocketAddr,
    /// Shard threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=SHARDS_MAX as i64))]
    shards: Option<u16>,
    /// Connections per shard, at most.
    #[arg(long, default_value_t = CONNECTIONS_PER_SHARD_MAX as u64,
          value_parser = clap::value_parser!(u64).range(1..=CONNECTIONS_PER_SHARD_MAX as u64))]
    connections_per_shard: u64,
    /// Connections the whole server holds at once; one more gets ERROR
    /// too_many_connections and is closed (default: the per-shard limit on every shard).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=CONNECTIONS_MAX as u64))]
    max_connections: Option<u64>,
    /// Milliseconds a new connection has to complete HELLO.
    #[arg(long, default_value_t = HELLO_TIMEOUT_US / 1_000, value_parser = timeout_ms)]
    hello_timeout_ms: u64,
    /// Milliseconds a frame has to arrive whole once its first byte has.
    #[arg(long, default_value_t = FRAME_TIMEOUT_US / 1_000, value_parser = timeout_ms)]
    frame_timeout_ms: u64,
    /// Milliseconds pending replies may go without a byte read before the connection is
    /// told GOODBYE slow_consumer and closed.
    #[arg(long, default_value_t = WRITE_TIMEOUT_US / 1_000, value_parser = timeout_ms)]
    write_timeout_ms: u64,
    /// Milliseconds a connection with no subscription may send nothing before GOODBYE
    /// idle_timeout; 0 never (the default).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=IDLE_TIMEOUT_US_MAX / 1_000))]
    idle_timeout_ms: u64,
    /// Shared secret every connection must present in HELLO (16 to 256 bytes). Prefer the
    /// CAIRN_AUTH_TOKEN environment variable: a flag shows in the process list.
    #[arg(long)]
    auth_token: Option<String>,
    /// Shared secret that grants admin operations (create/end/delete hunt, place/remove
    /// treasure, stats); without it a connection may only play. Prefer CAIRN_ADMIN_TOKEN.
    #[arg(long)]
    admin_token: Option<String>,
    /// Pending output bytes above which pushes to a subscriber are dropped and owed as a gap.
    #[arg(long, default_value_t = SUBSCRIBER_BUFFER_BYTES_SOFT as u64,
          value_parser = clap::value_parser!(u64).range(0..=SUBSCRIBER_BUFFER_BYTES_SOFT as u64))]
    subscriber_buffer_soft: u64,
    /// Pending output bytes above which a connection is sent GOODBYE and closed (more
    /// than --subscriber-buffer-soft, and than the output high-water mark, 1 MiB, plus
    /// one frame, 64 KiB).
    #[arg(long, default_value_t = SUBSCRIBER_BUFFER_BYTES_MAX as u64,
          value_parser = clap::value_parser!(u64).range(1..=SUBSCRIBER_BUFFER_BYTES_MAX as u64))]
    subscriber_buffer_max: u64,
    /// Requests one connection may have waiting on other shards.
    #[arg(long, default_value_t = INFLIGHT_REQUESTS_PER_CONNECTION_MAX,
          value_parser = clap::value_parser!(u32).range(1..=INFLIGHT_REQUESTS_PER_CONNECTION_MAX as i64))]
    inflight_max: u32,
    /// Pin each shard thread to a core.
    #[arg(long)]
    pin: bool,
    /// What a reply to a mutating event promises: none (memory only), os (written to the
    /// journal: survives a crash of the process), fsync (fdatasync'ed: survives a power
    /// loss). Default: none, or fsync when --data-dir is given.
    #[arg(long)]
    durability: Option<Durability>,
    /// Directory for the journals and snapshots (one subdirectory per shard).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Journaled events between two snapshots of a shard.
    #[arg(long, default_value_t = SNAPSHOT_INTERVAL_EVENTS, value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_interval_events: u64,
}

impl ServeArgs {
    /// Refuses subscriber buffer limits out of order. Clap checks each flag's range; these
    /// are the relations between them and the output high-water mark, checked here so
    /// that the message names the flags (the server's own check can only name its fields).
    fn check_subscriber_buffers(&self) -> anyhow::Result<()> {
        if self.subscriber_buffer_soft >= self.subscriber_buffer_max {
            anyhow::bail!(
                "--subscriber-buffer-soft ({}) must be below --subscriber-buffer-max ({})",
                self.subscriber_buffer_soft,
                self.subscriber_buffer_max
            );
        }
        let replies_bytes_max = (OUTPUT_BUFFER_BYTES_HIGH + FRAME_SIZE_MAX) as u64;
        if self.subscriber_buffer_max <= replies_bytes_max {
            anyhow::bail!(
                "--subscriber-buffer-max ({}) must be above {replies_bytes_max} bytes, the output high-water mark \
                 ({OUTPUT_BUFFER_BYTES_HIGH}) plus one frame: a connection's own pipelined replies fill its output \
                 that far before the server stops reading it, and the next push would cut a subscriber that reads \
                 at once; to drop pushes sooner, lower --subscriber-buffer-soft ({}) instead",
                self.subscriber_buffer_max,
                self.subscriber_buffer_soft
            );
        }
        Ok(())
    }

    /// The durability and data directory the flags ask for, or why they contradict.
    fn durability(&self) -> anyhow::Result<(Durability, Option<PathBuf>)> {
        match (self.durability, &self.data_dir) {
            (None, None) => Ok((Durability::None, None)),
            (None, Some(dir)) => Ok((Durability::Fsync, Some(dir.clone()))),
            (Some(Durability::None), None) => Ok((Durability::None, None)),
            (Some(Durability::None), Some(_)) => {
                anyhow::bail!("--durability none keeps no journal: drop --data-dir, or choose os or fsync")
            }
            (Some(mode), None) => anyhow::bail!("--durability {mode} needs --data-dir DIR to keep its journal in"),
            (Some(mode), Some(dir)) => Ok((mode, Some(dir.clone()))),
        }
    }
}

#[derive(clap::Args, Debug)]
struct StatsArgs {
    /// Address of the server.
    #[arg(long, default_value = "127.0.0.1:7411")]
    addr: SocketAddr,
    /// Token to present in HELLO: the server's admin token if it has one, else its auth
    /// token. Default: CAIRN_ADMIN_TOKEN, else CAIRN_AUTH_TOKEN, else none.
    #[arg(long)]
    token: Option<String>,
    /// Print the raw JSON document.
    #[arg(long)]
    json: bool,
    /// Start a new allocation mark after reading: the next `cairn stats` reports
    /// allocations per event since this one.
    #[arg(long)]
    mark: bool,
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
    /// Steady-state events to apply after set-up (at least one: the report is per event).
    #[arg(long, default_value_t = 5_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Moves claim treasures in reach (otherwise only digs claim).
    #[arg(long)]
    auto_discover: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Stats(args) => stats(&args, &mut std::io::stdout().lock()),
        Command::Simulate(args) => simulate(&args, &mut std::io::stdout().lock()),
        Command::Journal(command) => return journal(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of standard output has gone (`cairn simulate | head -1`): it has what
        // it wanted, so the command ends quietly, as a Unix filter does.
        Err(error) if is_closed_output(&error) => ExitCode::SUCCESS,
        Err(error) => {
            server::log_line(format_args!("cairn: {error:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Returns true if and only if `error` is a write to standard output whose reader has gone
/// (the only writes `stats` and `simulate` report as `io::Error`s; socket errors reach
/// them as `ClientError`s).
fn is_closed_output(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|error| error.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Environment variable `serve` reads the auth token from when `--auth-token` is absent.
const AUTH_TOKEN_VARIABLE: &str = "CAIRN_AUTH_TOKEN";

/// Environment variable `serve` reads the admin token from when `--admin-token` is absent.
const ADMIN_TOKEN_VARIABLE: &str = "CAIRN_ADMIN_TOKEN";

/// A timeout flag in milliseconds: at least 1, at most `TIMEOUT_US_MAX`.
fn timeout_ms(text: &str) -> Result<u64, String> {
    let value: u64 = text.parse().map_err(|error| format!("{error}"))?;
    let max = TIMEOUT_US_MAX / 1_000;
    if value == 0 || value > max {
        return Err(format!("must be within 1..={max} milliseconds"));
    }
    Ok(value)
}

/// The token a flag gives, else the environment variable's (an empty variable is none).
fn token_from(flag: &Option<String>, variable: &str) -> anyhow::Result<Option<String>> {
    if let Some(token) = flag {
        return Ok(Some(token.clone()));
    }
    match std::env::var(variable) {
        Ok(token) if !token.is_empty() => Ok(Some(token)),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => anyhow::bail!("{variable} is not valid UTF-8"),
    }
}

/// The secret a flag or variable gives, checked for length.
fn secret_from(flag: &Option<String>, variable: &str, name: &str) -> anyhow::Result<Option<server::Secret>> {
    let Some(token) = token_from(flag, variable)? else { return Ok(None) };
    let secret =
        server::Secret::new(token.into_bytes()).map_err(|why| anyhow::anyhow!("{name} (or {variable}): {why}"))?;
    Ok(Some(secret))
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    args.check_subscriber_buffers()?;
    let (durability, data_dir) = args.durability()?;
    let auth_token = secret_from(&args.auth_token, AUTH_TOKEN_VARIABLE, "--auth-token")?;
    let admin_token = secret_from(&args.admin_token, ADMIN_TOKEN_VARIABLE, "--admin-token")?;
    let mut config = server::Config {
        auth_token,
        admin_token,
        hello_timeout_us: args.hello_timeout_ms * 1_000,
        frame_timeout_us: args.frame_timeout_ms * 1_000,
        write_timeout_us: args.write_timeout_ms * 1_000,
        idle_timeout_us: args.idle_timeout_ms * 1_000,
        durability,
        data_dir,
        snapshot_interval_events: args.snapshot_interval_events,
        listen: args.listen,
        // Within the constants (clap checked the ranges), so the casts cannot truncate.
        connections_per_shard_max: args.connections_per_shard as usize,
        subscriber_buffer_bytes_soft: args.subscriber_buffer_soft as usize,
        subscriber_buffer_bytes_max: args.subscriber_buffer_max as usize,
        inflight_requests_per_connection_max: args.inflight_max,
        pin_threads: args.pin,
        ..server::Config::default()
    };
    if let Some(shards) = args.shards {
        config.shards = shards as usize;
    }
    if let Some(max_connections) = args.max_connections {
        config.connections_max = max_connections as usize;
    }
    // A write past the file size limit (`ulimit -f`) raises SIGXFSZ, whose default action
    // kills the process without a word. Handled, the write fails with EFBIG instead, which
    // the journal treats as a full disk: mutations refused with a message naming it, until
    // the limit is raised.
    signal_hook::flag::register(SIGXFSZ, std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)))
        .context("cannot install the SIGXFSZ handler")?;
    let server = server::Server::start(config.clone()).context("cannot start the server")?;
    let handle = server.shutdown_handle();
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot install signal handlers")?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            handle.shutdown();
        }
    });
    // Lines for the operator go through `log_line`, which drops what a full or closed
    // stream cannot take: the server serves whatever became of its output.
    if let Some(dir) = &config.data_dir {
        server::log_line(format_args!("cairn: durability {} in {}", config.durability, dir.display()));
    }
    let exposed = !config.listen.ip().is_loopback();
    match (&config.auth_token, &config.admin_token) {
        (None, None) if exposed => server::log_line(format_args!(
            "cairn: warning: listening on {} with no --auth-token: anyone who reaches this port may \
             create hunts and send events (see docs/security.md)",
            config.listen
        )),
        (None, None) => {}
        (Some(_), None) => {
            server::log_line(format_args!("cairn: every connection must present the auth token in HELLO"))
        }
        (None, Some(_)) => {
            server::log_line(format_args!("cairn: anyone may play; admin operations need the admin token in HELLO"))
        }
        (Some(_), Some(_)) => server::log_line(format_args!(
            "cairn: every connection must present the auth token (to play) or the admin token (to administer)"
        )),
    }
    let _ =
        writeln!(std::io::stdout().lock(), "cairn listening on {} with {} shards", server.local_addr(), config.shards);
    server.wait().context("a shard failed")?;
    Ok(())
}

/// Connects, does the handshake and asks for STATS (marking if asked).
fn stats(args: &StatsArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let token = match token_from(&args.token, ADMIN_TOKEN_VARIABLE)? {
        Some(token) => Some(token),
        None => token_from(&None, AUTH_TOKEN_VARIABLE)?,
    };
    let token = token.unwrap_or_default();
    // A `ClientError`'s message already ends with its source's, which `main` would print
    // again after it (`{:#}` follows the chain), so only the message is kept.
    let flat = |error: ClientError| anyhow::anyhow!("{error}");
    let mut client = Client::connect_with_token(args.addr, &Options::default(), token.as_bytes()).map_err(flat)?;
    let json = if args.mark { client.stats_and_mark() } else { client.stats() }.map_err(flat)?;
    if args.json {
        writeln!(out, "{json}")?;
        return Ok(());
    }
    let document: serde_json::Value = serde_json::from_str(&json).context("the stats document is not JSON")?;
    print_stats(&document, out)?;
    Ok(())
}

fn print_stats(document: &serde_json::Value, out: &mut impl Write) -> std::io::Result<()> {
    let field = |path: &[&str]| {
        let mut value = document;
        for key in path {
            value = &value[*key];
        }
        value.to_string()
    };
    writeln!(out, "shards {}   uptime {} us", field(&["shards"]), field(&["uptime_us"]))?;
    writeln!(
        out,
        "connections: open {}  accepted {}  closed {}  refused {}  failed {}  timed out {}  unauthorized {}",
        field(&["connections", "open"]),
        field(&["connections", "accepted"]),
        field(&["connections", "closed"]),
        field(&["connections", "refused"]),
        field(&["connections", "failed"]),
        field(&["connections", "timed_out"]),
        field(&["connections", "unauthorized"])
    )?;
    writeln!(
        out,
        "subscribers {}   pushes sent {}  dropped {}  gaps {}   slow subscribers disconnected {}",
        field(&["subscribers"]),
        field(&["pushes", "sent"]),
        field(&["pushes", "dropped"]),
        field(&["pushes", "gaps_sent"]),
        field(&["subscribers_disconnected"])
    )?;
    writeln!(
        out,
        "ring-full stalls {}   events per read {}   allocations {} ({} per event since the last mark)",
        field(&["ring_full_stalls"]),
        field(&["reads", "events_per_read"]),
        field(&["allocations", "total"]),
        field(&["allocations", "per_event_since_mark"])
    )?;
    writeln!(
        out,
        "{:<16} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "latency (us)", "events", "p50", "p90", "p99", "p99.9", "max"
    )?;
    // `serde_json::Value`'s `Display` ignores width and alignment, so each cell is made a
    // `String` first; otherwise the rows do not line up under the header.
    let row = |out: &mut dyn Write, name: &str, histogram: &serde_json::Value| {
        let cell = |key: &str| histogram[key].to_string();
        writeln!(
            out,
            "{:<16} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8}",
            name,
            cell("count"),
            cell("p50"),
            cell("p90"),
            cell("p99"),
            cell("p99_9"),
            cell("max")
        )
    };
    if let Some(kinds) = document["latency_us"].as_object() {
        for (kind, histogram) in kinds {
            row(out, kind, histogram)?;
        }
    }
    row(out, "ring queue wait", &document["queue_wait_us"])?;
    if let Some(rejections) = document["rejections"].as_object() {
        let refused: Vec<String> = rejections
            .iter()
            .filter(|(_, count)| count.as_u64() != Some(0))
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        if !refused.is_empty() {
            writeln!(out, "rejections: {}", refused.join(", "))?;
        }
    }
    Ok(())
}

fn simulate(args: &SimulateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    // Clap bounds each flag; this is the relation between them the workload needs.
    for (name, per_hunt) in [("--players", args.players), ("--treasures", args.treasures)] {
        let total = args.hunts as u64 * per_hunt as u64;
        if total > SLOTS_MAX {
            anyhow::bail!(
                "--hunts ({}) times {name} ({per_hunt}) is {total}, more than the simulator can number \
                 ({SLOTS_MAX}, a u32): lower one of them",
                args.hunts
            );
        }
    }
    let players = args.hunts as u64 * args.players as u64;
    if args.events > players.saturating_mul(EVENTS_PER_PLAYER_MAX) {
        anyhow::bail!(
            "--events ({}) is more than {EVENTS_PER_PLAYER_MAX} per player ({players} players): each mutation \
             takes its player's next sequence number, a u32; add players or lower --events",
            args.events
        );
    }
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
    writeln!(
        out,
        "set-up: {} hunts, {} players and {} treasures each, in {:.2} s",
        args.hunts,
        args.players,
        args.treasures,
        setup_started.elapsed().as_secs_f64()
    )?;
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
    writeln!(
        out,
        "steady state: {} events in {:.3} s = {:.2} M events/s; {} claims, {} refused",
        args.events,
        elapsed,
        args.events as f64 / elapsed / 1e6,
        claims,
        rejected
    )?;
    writeln!(
        out,
        "allocations: {} in steady state = {:.6} per event",
        allocations,
        allocations as f64 / args.events as f64
    )?;
    writeln!(out, "state digest: {:016x}", shard.digest())?;
    if let Outcome::List { total, entries } =
        shard.apply(&Event::Top { hunt: HUNT_ID_FIRST, count: 10 }, workload.time())
    {
        writeln!(out, "top 10 of hunt {HUNT_ID_FIRST} ({total} players):")?;
        for line in entries {
            writeln!(out, "  {:>3}. player {:>7}  {:>6} points", line.rank, line.player, line.score)?;
        }
    }
    Ok(())
}

/// A failed write to standard output, as a journal error.
fn standard_output_error(source: std::io::Error) -> JournalError {
    JournalError::Io { operation: "write", file: "standard output".to_owned(), source }
}

fn journal(command: &JournalCommand) -> ExitCode {
    let (JournalCommand::Verify { dir } | JournalCommand::Dump { dir, .. }) = command;
    let shards = match cairn::journal::shard_dirs(dir) {
        Ok(shards) => shards,
        Err(error) => {
            server::log_line(format_args!("cairn journal: cannot read {}: {error}", dir.display()));
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    // Set once the reader of standard output has gone (`cairn journal dump DIR | head`):
    // it has what it wanted, so the command goes on quietly, as a Unix filter does: dump
    // stops, verify still checks every shard for its exit status.
    let mut closed = false;
    // A shard directory given alone records neither the shard count nor the rules version.
    let data_dir = shards != [dir.clone()];
    let rules_line = match command {
        // What a start reads first: the game rules and the shard count the journals were
        // written with.
        JournalCommand::Verify { .. } if data_dir => {
            let line = match cairn::journal::check_rules_version(dir) {
                Ok(RulesCheck::Same) => Some(format!("{}: rules version {RULES_VERSION}, this build's", dir.display())),
                Ok(RulesCheck::New) => Some(format!(
                    "{}: no rules version recorded and no journal to replay (a start records {RULES_VERSION})",
                    dir.display()
                )),
                Err(error) => {
                    server::log_line(format_args!("cairn journal: {error}"));
                    failed = true;
                    None
                }
            };
            if let Err(error) = cairn::journal::check_shard_count(dir, &shards) {
                server::log_line(format_args!("cairn journal: {error}"));
                failed = true;
            }
            line
        }
        // Dump decodes records without applying them, so it dumps a journal of any rules
        // version, and says which.
        JournalCommand::Dump { .. } if data_dir => Some(format!("# {}", cairn::journal::describe_rules_version(dir))),
        _ => None,
    };
    if let Some(line) = rules_line {
        match writeln!(out, "{line}") {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => closed = true,
            Err(error) => {
                server::log_line(format_args!("cairn journal: cannot write to standard output: {error}"));
                return ExitCode::FAILURE;
            }
        }
    }
    for shard in shards {
        let result = match command {
            JournalCommand::Verify { .. } => cairn::journal::verify(&shard).and_then(|report| {
                if closed {
                    return Ok(());
                }
                writeln!(out, "{report}").map_err(standard_output_error)
            }),
            JournalCommand::Dump { .. } if closed => break,
            JournalCommand::Dump { from, .. } => writeln!(out, "# {}", shard.display())
                .map_err(standard_output_error)
                .and_then(|()| cairn::journal::dump(&shard, *from, &mut out).map(|_| ())),
        };
        match result {
            Ok(()) => {}
            Err(JournalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => closed = true,
            Err(error) => {
                server::log_line(format_args!("cairn journal: {}: {error}", shard.display()));
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
