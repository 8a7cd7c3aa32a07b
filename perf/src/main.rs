//! `cairn-perf`: Cairn's load generator and harness (clap CLI).
//!
//! `run` drives one target with one scenario, open loop (`--rate`) or closed loop
//! (`--max`), validates the server's state against what was acknowledged, and writes
//! `summary.json`, `latency.hgrm`, `service.hgrm`, `latency.hlog` and `latency.svg`.
//! `sweep` finds the maximum, then steps the rate from 10% to 120% of it and reports the
//! knee. `compare` runs Cairn and Redis alternately and reports median ratios and their
//! ranges, plus the harness's own ceiling against the null server. `plot` overlays any
//! `.hgrm` files. `null-server` is the do-nothing server behind `--target null`.
//! `soak` runs a long open loop with connection and subscriber churn, samples the
//! server every second and ends in a verdict (non-zero exit when it fails).
//! Every subcommand that drives Cairn takes `--auth-token` and `--admin-token` (or
//! `CAIRN_AUTH_TOKEN`, `CAIRN_ADMIN_TOKEN`) for a server that requires them.
//! `perf/README.md` says how to read all of it.

mod cairn_target;
mod churn;
mod driver;
mod latency;
mod ledger;
mod null_server;
mod plot;
mod redis_target;
mod report;
mod resp;
mod scenario;
mod schedule;
mod session;
mod soak;
mod spawn;
mod target;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::cairn_target::Tokens;
use crate::driver::Mode;
use crate::scenario::Scenario;
use crate::session::{Endpoint, Session};
use crate::target::TargetKind;
use crate::workload::World;

#[derive(Parser, Debug)]
#[command(name = "cairn-perf", version, about = "Load generator and harness for Cairn, with a Redis baseline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Drive one target with a scenario and write the outputs.
    Run(RunArgs),
    /// Find the maximum, step the rate from 10% to 120% of it, report the knee.
    Sweep(SweepArgs),
    /// Cairn and Redis alternately, at least 3 rounds each: median ratios and ranges.
    Compare(CompareArgs),
    /// Overlay `.hgrm` files in one percentile plot.
    Plot(PlotArgs),
    /// Serve Cairn's framing, acknowledging every request without work.
    NullServer(NullServerArgs),
    /// Long open loop with connection and subscriber churn, sampled every second:
    /// RSS, allocations per event, p99.9; exits non-zero when the verdict fails.
    Soak(SoakArgs),
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The scenario file (perf/scenarios/NAME.toml), or just NAME [default: default;
    /// soak: soak].
    #[arg(long)]
    scenario: Option<String>,
    /// Requests in flight per connection in a closed loop (`--max`).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pipeline: u32,
    /// Seconds of measurement per phase (at most 600).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of unrecorded load before measuring (at most 600).
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Cairn shards when spawning.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    shards: u32,
    /// Harness worker threads (connections are spread over them).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// Output directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// What an idle open loop does: block in epoll (sleep) or poll and yield (spin).
    #[arg(long, value_enum, default_value_t = driver::Idle::Sleep)]
    idle: driver::Idle,
    #[command(flatten)]
    tokens: TokenArgs,
}

/// The tokens a Cairn server started with `--auth-token` or `--admin-token` expects
/// (ignored by the other targets). clap shows a variable's name in `--help`, never its
/// value.
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// Token the load and subscriber connections present in HELLO (and the set-up
    /// connection, without --admin-token); handed to a spawned cairn. Prefer the variable:
    /// a flag shows in the process list.
    #[arg(long, value_name = "TOKEN", env = cairn_target::AUTH_TOKEN_VARIABLE, hide_env_values = true)]
    auth_token: Option<cairn_target::Token>,
    /// Token the set-up connection presents (hunts, treasures, STATS, clean-up); handed to
    /// a spawned cairn.
    #[arg(long, value_name = "TOKEN", env = cairn_target::ADMIN_TOKEN_VARIABLE, hide_env_values = true)]
    admin_token: Option<cairn_target::Token>,
}

/// Which server a run or sweep drives, and how it is reached.
#[derive(Args, Debug)]
struct ServerArgs {
    /// Which server to drive.
    #[arg(long, value_enum, default_value_t = TargetKind::Cairn)]
    target: TargetKind,
    /// Address of a running server (127.0.0.1 only).
    #[arg(long)]
    addr: Option<String>,
    /// Start the server for the run and stop it after.
    #[arg(long)]
    spawn: bool,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    server: ServerArgs,
    /// Open loop at this many events per second in total.
    #[arg(long, conflicts_with = "max")]
    rate: Option<u64>,
    /// Closed loop: saturation throughput at `--pipeline`.
    #[arg(long)]
    max: bool,
}

#[derive(Args, Debug)]
struct SweepArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    server: ServerArgs,
    /// The latency bound of the knee, in microseconds of p99.
    #[arg(long, default_value_t = 1_000.0)]
    p99_bound_us: f64,
}

#[derive(Args, Debug)]
struct CompareArgs {
    #[command(flatten)]
    common: Common,
    /// Rounds per target (at least 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(3..=20))]
    rounds: u32,
    /// Open-loop rate both targets are measured at; default: half the lower of the two
    /// median maxima.
    #[arg(long)]
    rate: Option<u64>,
}

#[derive(Args, Debug)]
struct SoakArgs {
    #[command(flatten)]
    common: Common,
    /// Address of a running cairn (127.0.0.1 only); without it the soak spawns one.
    #[arg(long)]
    addr: Option<String>,
    /// Process id of the cairn at --addr, for its RSS.
    #[arg(long, requires = "addr")]
    pid: Option<u32>,
    /// Open loop at this many events per second; default: --fraction of a 5 s
    /// closed-loop maximum measured first.
    #[arg(long)]
    rate: Option<u64>,
    /// Share of the measured maximum to soak at (without --rate).
    #[arg(long, default_value_t = 0.6)]
    fraction: f64,
    /// Load connections reconnected per churn second.
    #[arg(long, default_value_t = 3.0)]
    reconnects_per_s: f64,
    /// Subscribers opened per churn second. One in three is slow: it stalls behind a
    /// 4 KiB receive window, following 16 hunts or every hunt in turn, so the server
    /// both owes it GAP notices and cuts it.
    #[arg(long, default_value_t = 2.0)]
    subscribers_per_s: f64,
    /// The least RSS growth tolerated across the second half, MiB (the bound is the
    /// larger of this and 5% of the median RSS).
    #[arg(long, default_value_t = 16.0)]
    rss_growth_max_mib: f64,
}

#[derive(Args, Debug)]
struct PlotArgs {
    /// `NAME=FILE.hgrm` pairs (or plain files, named by their directory).
    inputs: Vec<String>,
    /// The SVG to write.
    #[arg(long)]
    out: PathBuf,
    /// The plot's title.
    #[arg(long, default_value = "latency by percentile")]
    title: String,
}

#[derive(Args, Debug)]
struct NullServerArgs {
    /// Address to listen on (127.0.0.1 only).
    #[arg(long, default_value = "127.0.0.1:7499")]
    listen: String,
}

/// Longest phase the CLI accepts: load runs are bounded.
const PHASE_SECONDS_MAX: f64 = 600.0;
/// The scenario of `run`, `sweep` and `compare` when `--scenario` is not given.
const DEFAULT_SCENARIO: &str = "default";
/// The scenario of `soak` when `--scenario` is not given.
const SOAK_SCENARIO: &str = "soak";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Sweep(args) => sweep(args),
        Command::Compare(args) => Settings::new(args.common, DEFAULT_SCENARIO)
            .and_then(|settings| report::compare(settings, args.rounds, args.rate)),
        Command::Plot(args) => plot(args),
        Command::NullServer(args) => loopback(&args.listen).and_then(|()| null_server::serve(&args.listen)),
        Command::Soak(args) => soak(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cairn-perf: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What every subcommand shares, checked.
pub struct Settings {
    /// The scenario.
    pub scenario: Scenario,
    /// Closed-loop window per connection.
    pub pipeline: usize,
    /// Measurement per phase.
    pub duration: Duration,
    /// Warm-up.
    pub warmup: Duration,
    /// Cairn shards when spawning.
    pub shards: u32,
    /// Worker threads.
    pub threads: usize,
    /// Output directory, if given.
    pub out: Option<PathBuf>,
    /// Show progress.
    pub progress: bool,
    /// What an idle open loop does.
    pub idle: driver::Idle,
    /// The tokens presented to Cairn and handed to a spawned one.
    pub tokens: Tokens,
}

impl Settings {
    /// Checks the shared flags and loads the scenario named by `--scenario` (or
    /// `default_scenario`).
    pub fn new(common: Common, default_scenario: &str) -> Result<Settings> {
        let duration = phase_seconds("--duration", common.duration)?;
        let warmup = phase_seconds("--warmup", common.warmup)?;
        let scenario = Scenario::load(&scenario_path(common.scenario.as_deref().unwrap_or(default_scenario)))?;
        Ok(Settings {
            scenario,
            pipeline: common.pipeline as usize,
            duration: Duration::from_secs_f64(duration.clamp(0.5, PHASE_SECONDS_MAX)),
            warmup: Duration::from_secs_f64(warmup.clamp(0.0, PHASE_SECONDS_MAX)),
            shards: common.shards,
            threads: common.threads as usize,
            out: common.out,
            progress: !common.quiet,
            idle: common.idle,
            tokens: Tokens::new(common.tokens.auth_token, common.tokens.admin_token)?,
        })
    }

    /// The output directory, `perf/results/NAME` by default.
    pub fn out_dir(&self, name: &str) -> PathBuf {
        self.out.clone().unwrap_or_else(|| PathBuf::from("perf/results").join(name))
    }
}

/// A phase length given to `flag`: a finite, non-negative number of seconds (clamped to
/// the phase bounds by the caller). NaN would otherwise reach `Duration::from_secs_f64`,
/// which panics on it.
fn phase_seconds(flag: &str, seconds: f64) -> Result<f64> {
    if !(seconds.is_finite() && seconds >= 0.0) {
        bail!("{flag} must be a finite number of seconds, 0 or more (at most {PHASE_SECONDS_MAX} are used), not {seconds}");
    }
    Ok(seconds)
}

/// `NAME` means `perf/scenarios/NAME.toml`.
fn scenario_path(argument: &str) -> PathBuf {
    let given = PathBuf::from(argument);
    if given.exists() || argument.contains('/') || argument.ends_with(".toml") {
        return given;
    }
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(format!("{argument}.toml"));
    if beside.exists() {
        beside
    } else {
        PathBuf::from("perf/scenarios").join(format!("{argument}.toml"))
    }
}

/// Load goes to the loopback range only.
fn loopback(addr: &str) -> Result<()> {
    let parsed: std::net::SocketAddr =
        addr.parse().map_err(|_| anyhow::anyhow!("{addr:?} is not an IP:port address"))?;
    if !parsed.ip().is_loopback() {
        bail!("{addr} is not a loopback address: cairn-perf only sends load to 127.0.0.1");
    }
    Ok(())
}

fn endpoint(kind: TargetKind, addr: Option<String>, spawn: bool, settings: &Settings) -> Result<Endpoint> {
    if let Some(addr) = &addr {
        loopback(addr)?;
    }
    Ok(Endpoint { kind, addr, spawn, shards: settings.shards, tokens: settings.tokens.clone(), cairn_args: Vec::new() })
}

fn run(args: RunArgs) -> Result<()> {
    let settings = Settings::new(args.common, DEFAULT_SCENARIO)?;
    let mode = match (args.rate, args.max) {
        (Some(rate), _) if rate > 0 => Mode::Open { rate },
        (None, true) => Mode::Closed { pipeline: settings.pipeline },
        _ => bail!("give --rate EVENTS_PER_S (open loop) or --max (closed loop)"),
    };
    let endpoint = endpoint(args.server.target, args.server.addr, args.server.spawn, &settings)?;
    let world = World::new(&settings.scenario);
    let mut session = Session::open(&world, &endpoint, settings.threads)?;
    session.progress = settings.progress;
    session.idle = settings.idle;
    if !settings.warmup.is_zero() {
        session.phase(mode, settings.warmup, false, "warm-up")?;
    }
    let result = session.phase(mode, settings.duration, true, "measure")?;
    let validation = session.validate()?;
    let summary = report::Summary::new(&session, &settings, &result, validation);
    let out = settings.out_dir(&format!("{}-{}", settings.scenario.name, args.server.target.name()));
    report::write_run(&out, &summary, &result)?;
    report::print_summary(&summary);
    println!("outputs in {}", out.display());
    session.close()
}

fn sweep(args: SweepArgs) -> Result<()> {
    let settings = Settings::new(args.common, DEFAULT_SCENARIO)?;
    let endpoint = endpoint(args.server.target, args.server.addr, args.server.spawn, &settings)?;
    let world = World::new(&settings.scenario);
    let mut session = Session::open(&world, &endpoint, settings.threads)?;
    session.progress = settings.progress;
    session.idle = settings.idle;
    report::sweep(&mut session, &settings, args.p99_bound_us)?;
    session.close()
}

fn soak(args: SoakArgs) -> Result<()> {
    let settings = Settings::new(args.common, SOAK_SCENARIO)?;
    let spawn = args.addr.is_none();
    let endpoint = endpoint(TargetKind::Cairn, args.addr, spawn, &settings)?;
    let options = soak::SoakOptions {
        rate: args.rate,
        fraction: args.fraction,
        pid: args.pid,
        rates: churn::Rates { reconnects_per_s: args.reconnects_per_s, subscribers_per_s: args.subscribers_per_s },
        rss_growth_max_mib: args.rss_growth_max_mib,
    };
    soak::soak(settings, endpoint, options)
}

fn plot(args: PlotArgs) -> Result<()> {
    let mut series = Vec::new();
    for input in &args.inputs {
        let (name, path) = match input.split_once('=') {
            Some((name, path)) => (name.to_string(), PathBuf::from(path)),
            None => {
                let path = PathBuf::from(input);
                let name = path.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
                (name.unwrap_or_else(|| input.clone()), path)
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
        let points = latency::parse_hgrm(&text).with_context(|| path.display().to_string())?;
        series.push(plot::Series { name, points });
    }
    std::fs::write(&args.out, plot::svg(&args.title, &series))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings of `cairn-perf run ARGS...`, or the error they give.
    fn run_settings(args: &[&str]) -> Result<Settings> {
        let cli = Cli::try_parse_from(["cairn-perf", "run", "--rate", "1"].iter().chain(args)).expect("flags parse");
        let Command::Run(run) = cli.command else { unreachable!("a run") };
        Settings::new(run.common, DEFAULT_SCENARIO)
    }

    #[test]
    fn phase_lengths_that_are_not_seconds_are_refused_by_name() {
        for (flag, value) in [("--duration", "nan"), ("--warmup", "NaN"), ("--duration", "-3"), ("--warmup", "inf")] {
            let error = run_settings(&[&format!("{flag}={value}")]).err().map(|error| format!("{error:#}"));
            let error = error.unwrap_or_else(|| panic!("{flag} {value} was accepted"));
            assert!(error.contains(flag), "{flag} {value}: {error}");
        }
        let settings = run_settings(&["--duration", "2.5", "--warmup", "0"]).unwrap();
        assert_eq!(settings.duration, Duration::from_millis(2_500));
        assert!(settings.warmup.is_zero());
    }

    #[test]
    fn a_bad_hgrm_given_to_plot_is_named() {
        let dir = std::env::temp_dir().join(format!("cairn-perf-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.hgrm");
        let bad = dir.join("bad.hgrm");
        std::fs::write(&good, "       1.000 0.5 1 2.0\n       2.000 1.0 2\n").unwrap();
        std::fs::write(&bad, "       1.000 0.5 1 2.0\n           x 1.0 2\n").unwrap();
        let out = dir.join("plot.svg");
        let inputs = vec![format!("good={}", good.display()), format!("bad={}", bad.display())];
        let error = plot(PlotArgs { inputs, out: out.clone(), title: "t".into() }).unwrap_err();
        let error = format!("{error:#}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(error.contains("bad.hgrm") && error.contains("line 2"), "{error}");
        assert!(!out.exists());
    }
}
