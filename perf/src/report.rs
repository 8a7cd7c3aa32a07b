//! Turning phases into results: `summary.json` and the other files of a run, the sweep
//! and its knee, and `compare` (Cairn and Redis alternately, median ratios with ranges,
//! and the harness's ceiling against the null server).
//!
//! Every figure is printed next to the machine it came from: on this project's 2-vCPU
//! virtual machine the server, the harness and Redis share two cores, so a throughput is
//! never the server's alone, and the harness's ceiling is reported beside it.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::driver::Mode;
use crate::latency::{self, Percentiles};
use crate::plot::{self, Series};
use crate::session::{Endpoint, PhaseResult, Session};
use crate::target::TargetKind;
use crate::workload::World;
use crate::Settings;

/// Said next to every figure.
pub const MACHINE: &str = "2-vCPU KVM guest, shared and noisy: the server, the harness and redis share the 2 cores";

/// The first three fields of `/proc/loadavg` (1, 5 and 15 minutes), or `"unknown"`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

/// `summary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// `cairn`, `redis` or `null`.
    pub target: String,
    /// The scenario's name.
    pub scenario: String,
    /// `open` or `closed`.
    pub mode: String,
    /// Open loop: the rate asked for.
    pub rate_eps: Option<u64>,
    /// Closed loop: requests in flight per connection.
    pub pipeline: Option<usize>,
    /// Length of the measured sending window.
    pub duration_s: f64,
    /// Requests sent: closed loop, in the window; open loop, every request due in the
    /// window (one the server held back leaves after the window closes, with its due time).
    pub events_sent: u64,
    /// Replies to them (including refusals).
    pub events_acked: u64,
    /// Failed requests: error replies that are not state-machine refusals, broken
    /// connections, requests lost after the drain.
    pub errors: u64,
    /// State-machine refusals by code (normal game outcomes: out of reach, exhausted...).
    pub rejections: std::collections::BTreeMap<u16, u64>,
    /// Requests per second offered.
    pub offered_eps: f64,
    /// Replies per second received within the window.
    pub throughput_eps: f64,
    /// From the intended send time (coordinated omission corrected).
    pub latency_us: Percentiles,
    /// From the actual send.
    pub service_latency_us: Percentiles,
    /// From Cairn's STATS over the window; null for other targets.
    pub server_allocations_per_event: Option<f64>,
    /// Request frames per read syscall on the server over the window (Cairn only).
    pub server_events_per_read: Option<f64>,
    /// Server CPU (user + system, all threads) per acknowledged event, when spawned.
    pub server_cpu_us_per_event: Option<f64>,
    /// The harness's own CPU per acknowledged event.
    pub harness_cpu_us_per_event: f64,
    /// Pushes received by subscriber connections.
    pub pushes_received: u64,
    /// Pushes subscribers know they missed.
    pub push_gaps: u64,
    /// Cairn shards (from HELLO); 0 for other targets.
    pub shards: u16,
    /// Load connections.
    pub connections: u32,
    /// Harness worker threads.
    pub harness_threads: usize,
    /// Where it ran.
    pub machine: String,
    /// `/proc/loadavg` when the run ended: how much else wanted the two cores.
    pub load_average: String,
    /// The first few failure messages.
    pub failures: Vec<String>,
    /// `"ok"`, or exactly what broke.
    pub validation: String,
}

impl Summary {
    /// The summary of a measured phase.
    pub fn new(session: &Session, settings: &Settings, result: &PhaseResult, validation: String) -> Summary {
        let tally = &result.tally;
        let (mode, rate_eps, pipeline) = match result.mode {
            Mode::Open { rate } => ("open", Some(rate), None),
            Mode::Closed { pipeline } => ("closed", None, Some(pipeline)),
        };
        Summary {
            target: session.kind.name().to_string(),
            scenario: session.world.scenario.name.clone(),
            mode: mode.to_string(),
            rate_eps,
            pipeline,
            duration_s: result.duration.as_secs_f64(),
            events_sent: tally.sent,
            events_acked: tally.acked,
            errors: tally.errors + tally.lost,
            rejections: tally.rejections.clone(),
            offered_eps: result.offered_eps(),
            throughput_eps: result.throughput_eps(),
            latency_us: Percentiles::of(&tally.latency),
            service_latency_us: Percentiles::of(&tally.service),
            server_allocations_per_event: result.allocations_per_event,
            server_events_per_read: result.events_per_read,
            server_cpu_us_per_event: result.server_cpu_us_per_event(),
            harness_cpu_us_per_event: result.harness_cpu.as_secs_f64() * 1e6 / tally.acked.max(1) as f64,
            pushes_received: tally.pushes,
            push_gaps: tally.push_gaps,
            shards: session.shards,
            connections: session.world.scenario.connections,
            harness_threads: settings.threads,
            machine: MACHINE.to_string(),
            load_average: load_average(),
            failures: tally.failures.clone(),
            validation,
        }
    }
}

/// Writes a run's files into `out`.
pub fn write_run(out: &Path, summary: &Summary, result: &PhaseResult) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(out.join("summary.json"), serde_json::to_string_pretty(summary)? + "\n")?;
    std::fs::write(out.join("latency.hgrm"), latency::hgrm(&result.tally.latency))?;
    std::fs::write(out.join("service.hgrm"), latency::hgrm(&result.tally.service))?;
    std::fs::write(out.join("latency.hlog"), result.interval_log(&summary.target)?.bytes())?;
    let mut series = vec![Series {
        name: format!("{} ({} {})", summary.target, summary.mode, rate_label(summary)),
        points: latency::parse_hgrm(&latency::hgrm(&result.tally.latency))?,
    }];
    // Overlay the other target's run of the same scenario when it sits beside this one.
    for other in ["cairn", "redis"].iter().filter(|name| **name != summary.target) {
        let sibling = out.with_file_name(format!("{}-{other}", summary.scenario)).join("latency.hgrm");
        if let Ok(text) = std::fs::read_to_string(&sibling) {
            let points = latency::parse_hgrm(&text).with_context(|| sibling.display().to_string())?;
            series.push(Series { name: format!("{other} ({})", sibling.display()), points });
        }
    }
    let title = format!("{}: latency from intended send time ({MACHINE})", summary.scenario);
    std::fs::write(out.join("latency.svg"), plot::svg(&title, &series))?;
    Ok(())
}

fn rate_label(summary: &Summary) -> String {
    match (summary.rate_eps, summary.pipeline) {
        (Some(rate), _) => format!("{rate} ev/s"),
        (_, Some(pipeline)) => format!("pipeline {pipeline}"),
        _ => String::new(),
    }
}

/// Prints the headline numbers of a run.
pub fn print_summary(summary: &Summary) {
    let l = &summary.latency_us;
    let s = &summary.service_latency_us;
    println!(
        "{} on {} ({} loop, {}), {:.1} s; {MACHINE}; load average {}",
        summary.target,
        summary.scenario,
        summary.mode,
        rate_label(summary),
        summary.duration_s,
        summary.load_average
    );
    println!(
        "  sent {}  acked {}  errors {}  offered {:.0} ev/s  throughput {:.0} ev/s",
        summary.events_sent, summary.events_acked, summary.errors, summary.offered_eps, summary.throughput_eps
    );
    println!(
        "  latency µs (from intended): p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  p99.99 {:.1}  max {:.1}",
        l.p50, l.p90, l.p99, l.p999, l.p9999, l.max
    );
    println!(
        "  service µs (from send):     p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  p99.99 {:.1}  max {:.1}",
        s.p50, s.p90, s.p99, s.p999, s.p9999, s.max
    );
    if let Some(cpu) = summary.server_cpu_us_per_event {
        println!("  server CPU {cpu:.2} µs/event, harness CPU {:.2} µs/event", summary.harness_cpu_us_per_event);
    }
    if let (Some(allocations), Some(per_read)) = (summary.server_allocations_per_event, summary.server_events_per_read)
    {
        println!("  server allocations/event {allocations:.4}, events/read {per_read:.1}");
    }
    if summary.pushes_received > 0 {
        println!("  pushes received {}, gaps {}", summary.pushes_received, summary.push_gaps);
    }
    for failure in &summary.failures {
        println!("  failure: {failure}");
    }
    println!("  validation: {}", summary.validation);
}

/// One step of a sweep.
#[derive(Clone, Debug, Serialize)]
struct SweepStep {
    percent: u32,
    rate_eps: u64,
    throughput_eps: f64,
    latency_us: Percentiles,
    service_latency_us: Percentiles,
    errors: u64,
}

/// Measures the maximum, then 10%..120% of it, and reports the knee: the highest rate
/// whose p99 (from intended send times) stays under `bound_us` and which was delivered.
pub fn sweep(session: &mut Session, settings: &Settings, bound_us: f64) -> Result<()> {
    let closed = Mode::Closed { pipeline: settings.pipeline };
    if !settings.warmup.is_zero() {
        session.phase(closed, settings.warmup, false, "warm-up")?;
    }
    let max = session.phase(closed, settings.duration, true, "max")?.throughput_eps();
    println!("{}: maximum {max:.0} ev/s at pipeline {} ({MACHINE})", session.kind.name(), settings.pipeline);
    let mut steps = Vec::new();
    for percent in (10..=120).step_by(10) {
        let rate = (max * percent as f64 / 100.0).max(1.0) as u64;
        let result = session.phase(Mode::Open { rate }, settings.duration, true, &format!("{percent}%"))?;
        let step = SweepStep {
            percent,
            rate_eps: rate,
            throughput_eps: result.throughput_eps(),
            latency_us: result.latency(),
            service_latency_us: Percentiles::of(&result.tally.service),
            errors: result.tally.errors + result.tally.lost,
        };
        println!(
            "  {percent:>3}%  {rate:>9} ev/s  delivered {:>9.0}  p50 {:>8.1}  p99 {:>9.1}  p99.9 {:>9.1} µs",
            step.throughput_eps, step.latency_us.p50, step.latency_us.p99, step.latency_us.p999
        );
        steps.push(step);
    }
    let knee = steps
        .iter()
        .filter(|step| step.latency_us.p99 < bound_us && step.throughput_eps >= step.rate_eps as f64 * 0.98)
        .map(|step| step.rate_eps)
        .max();
    match knee {
        Some(rate) => println!("knee: {rate} ev/s (highest rate with p99 under {bound_us} µs)"),
        None => println!("knee: none (no step kept p99 under {bound_us} µs)"),
    }
    let validation = session.validate()?;
    println!("validation: {validation}");
    let out = settings.out_dir(&format!("{}-{}-sweep", session.world.scenario.name, session.kind.name()));
    std::fs::create_dir_all(&out)?;
    let document = serde_json::json!({
        "target": session.kind.name(),
        "scenario": session.world.scenario.name,
        "pipeline": settings.pipeline,
        "max_eps": max,
        "p99_bound_us": bound_us,
        "knee_eps": knee,
        "steps": steps,
        "validation": validation,
        "machine": MACHINE,
    });
    std::fs::write(out.join("sweep.json"), serde_json::to_string_pretty(&document)? + "\n")?;
    println!("outputs in {}", out.display());
    Ok(())
}

/// One measured session of `compare`.
#[derive(Clone, Debug, Serialize)]
struct Measured {
    target: String,
    round: u32,
    phase: String,
    rate_eps: Option<u64>,
    throughput_eps: f64,
    latency_us: Percentiles,
    service_latency_us: Percentiles,
    server_cpu_us_per_event: Option<f64>,
    harness_cpu_us_per_event: f64,
    errors: u64,
    validation: String,
}

fn measured(target: TargetKind, round: u32, phase: &str, result: &PhaseResult, validation: &str) -> Measured {
    Measured {
        target: target.name().to_string(),
        round,
        phase: phase.to_string(),
        rate_eps: match result.mode {
            Mode::Open { rate } => Some(rate),
            Mode::Closed { .. } => None,
        },
        throughput_eps: result.throughput_eps(),
        latency_us: result.latency(),
        service_latency_us: Percentiles::of(&result.tally.service),
        server_cpu_us_per_event: result.server_cpu_us_per_event(),
        harness_cpu_us_per_event: result.harness_cpu.as_secs_f64() * 1e6 / result.tally.acked.max(1) as f64,
        errors: result.tally.errors + result.tally.lost,
        validation: validation.to_string(),
    }
}

/// The median and range of some values.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Spread {
    /// Median (the mean of the middle two for an even count).
    pub median: f64,
    /// Smallest.
    pub low: f64,
    /// Largest.
    pub high: f64,
}

/// The spread of `values`; `None` if empty.
pub fn spread(values: &[f64]) -> Option<Spread> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 { sorted[middle] } else { (sorted[middle - 1] + sorted[middle]) / 2.0 };
    Some(Spread { median, low: sorted[0], high: sorted[sorted.len() - 1] })
}

/// A session on a freshly spawned server: warm-up, then `phases` in order.
fn spawned_session(
    world: &World,
    settings: &Settings,
    kind: TargetKind,
    phases: &[(Mode, &str)],
) -> Result<(Vec<PhaseResult>, String)> {
    let endpoint = Endpoint {
        kind,
        addr: None,
        spawn: true,
        shards: settings.shards,
        tokens: settings.tokens.clone(),
        cairn_args: Vec::new(),
    };
    let mut session = Session::open(world, &endpoint, settings.threads)?;
    session.progress = settings.progress;
    session.idle = settings.idle;
    if !settings.warmup.is_zero() {
        session.phase(phases[0].0, settings.warmup, false, "warm-up")?;
    }
    let mut results = Vec::new();
    for (mode, label) in phases {
        results.push(session.phase(*mode, settings.duration, true, label)?);
    }
    let validation = session.validate()?;
    session.close()?;
    Ok((results, validation))
}

/// `cairn-perf compare`: see the module doc and `perf/README.md`.
/// The two open-loop rates `compare` runs at, in events per second: the common one (`rate`
/// if given, else half the lower median maximum) and half Cairn's own median maximum.
/// Both are at least 1: a schedule needs a rate, however slow the maxima measured.
fn open_rates(cairn_median: f64, redis_median: f64, rate: Option<u64>) -> (u64, u64) {
    let common = rate.unwrap_or((cairn_median.min(redis_median) / 2.0) as u64).max(1);
    (common, ((cairn_median / 2.0) as u64).max(1))
}

pub fn compare(settings: Settings, rounds: u32, rate: Option<u64>) -> Result<()> {
    let world = World::new(&settings.scenario);
    let closed = Mode::Closed { pipeline: settings.pipeline };
    let mut all: Vec<Measured> = Vec::new();
    let (mut cairn_max, mut redis_max) = (Vec::new(), Vec::new());
    let (mut cairn_cpu, mut redis_cpu) = (Vec::new(), Vec::new());
    println!(
        "compare {}: {rounds} rounds, pipeline {}, {} s phases; {MACHINE}",
        world.scenario.name,
        settings.pipeline,
        settings.duration.as_secs_f64()
    );
    for round in 1..=rounds {
        for kind in [TargetKind::Cairn, TargetKind::Redis] {
            let (results, validation) = spawned_session(&world, &settings, kind, &[(closed, "max")])?;
            let result = &results[0];
            println!(
                "  round {round} {:>5} max: {:>9.0} ev/s  p99 {:>8.1} µs  server CPU {:>6.2} µs/event  validation {validation}",
                kind.name(),
                result.throughput_eps(),
                result.latency().p99,
                result.server_cpu_us_per_event().unwrap_or(f64::NAN)
            );
            let (maxima, cpu) = if kind == TargetKind::Cairn {
                (&mut cairn_max, &mut cairn_cpu)
            } else {
                (&mut redis_max, &mut redis_cpu)
            };
            maxima.push(result.throughput_eps());
            cpu.push(result.server_cpu_us_per_event().unwrap_or(f64::NAN));
            all.push(measured(kind, round, "max", result, &validation));
        }
    }
    let cairn_median = spread(&cairn_max).context("no cairn maximum")?.median;
    let redis_median = spread(&redis_max).context("no redis maximum")?.median;
    let (common_rate, half_cairn) = open_rates(cairn_median, redis_median, rate);
    println!("latency at a common {common_rate} ev/s (half the lower median maximum), and cairn at half its own ({half_cairn} ev/s)");
    let mut histograms: Vec<(String, hdrhistogram::Histogram<u64>)> = vec![
        (format!("cairn at {common_rate} ev/s"), latency::histogram()),
        (format!("redis at {common_rate} ev/s"), latency::histogram()),
        (format!("cairn at {half_cairn} ev/s (half its max)"), latency::histogram()),
    ];
    let (mut cairn_p99, mut redis_p99, mut cairn_p999, mut redis_p999, mut half_p999) =
        (vec![], vec![], vec![], vec![], vec![]);
    for round in 1..=rounds {
        let phases = [(Mode::Open { rate: common_rate }, "common rate"), (Mode::Open { rate: half_cairn }, "half max")];
        let (results, validation) = spawned_session(&world, &settings, TargetKind::Cairn, &phases)?;
        for (index, result) in results.iter().enumerate() {
            histograms[if index == 0 { 0 } else { 2 }].1.add(&result.tally.latency).expect("same bounds");
            all.push(measured(TargetKind::Cairn, round, phases[index].1, result, &validation));
        }
        cairn_p99.push(results[0].latency().p99);
        cairn_p999.push(results[0].latency().p999);
        half_p999.push(results[1].latency().p999);
        let (results, validation) = spawned_session(&world, &settings, TargetKind::Redis, &phases[..1])?;
        histograms[1].1.add(&results[0].tally.latency).expect("same bounds");
        redis_p99.push(results[0].latency().p99);
        redis_p999.push(results[0].latency().p999);
        all.push(measured(TargetKind::Redis, round, phases[0].1, &results[0], &validation));
        println!(
            "  round {round}: p99 cairn {:.1} / redis {:.1} µs; p99.9 cairn {:.1} / redis {:.1} µs; cairn p99.9 at half max {:.1} µs",
            cairn_p99[round as usize - 1], redis_p99[round as usize - 1], cairn_p999[round as usize - 1], redis_p999[round as usize - 1], half_p999[round as usize - 1]
        );
    }
    // The harness's own ceiling: the same loop against a server that does no work.
    let (ceiling, _) = spawned_session(&world, &settings, TargetKind::Null, &[(closed, "ceiling")])?;
    let ceiling_eps = ceiling[0].throughput_eps();
    let ratio = |a: &[f64], b: &[f64]| spread(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>());
    let document = serde_json::json!({
        "scenario": world.scenario.name,
        "rounds": rounds,
        "pipeline": settings.pipeline,
        "connections": world.scenario.connections,
        "cairn_shards": settings.shards,
        "machine": MACHINE,
        "throughput_eps": { "cairn": spread(&cairn_max), "redis": spread(&redis_max),
                            "ratio_cairn_over_redis": ratio(&cairn_max, &redis_max) },
        "server_cpu_us_per_event": { "cairn": spread(&cairn_cpu), "redis": spread(&redis_cpu),
                                     "ratio_redis_over_cairn": ratio(&redis_cpu, &cairn_cpu) },
        "common_rate_eps": common_rate,
        "p99_us": { "cairn": spread(&cairn_p99), "redis": spread(&redis_p99), "ratio_redis_over_cairn": ratio(&redis_p99, &cairn_p99) },
        "p999_us": { "cairn": spread(&cairn_p999), "redis": spread(&redis_p999), "ratio_redis_over_cairn": ratio(&redis_p999, &cairn_p999) },
        "cairn_half_max_rate_eps": half_cairn,
        "cairn_half_max_p999_us": spread(&half_p999),
        "harness_ceiling_eps": ceiling_eps,
        "load_average_at_end": load_average(),
        "runs": all,
    });
    print_compare(&document);
    let out = settings.out_dir(&format!("{}-compare", world.scenario.name));
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("compare.json"), serde_json::to_string_pretty(&document)? + "\n")?;
    let mut series = Vec::new();
    for (index, (name, histogram)) in histograms.iter().enumerate() {
        let text = latency::hgrm(histogram);
        std::fs::write(out.join(format!("latency-{index}.hgrm")), &text)?;
        series.push(Series { name: format!("{name}, {rounds} rounds merged"), points: latency::parse_hgrm(&text)? });
    }
    let title = format!("{}: Cairn vs Redis, latency from intended send time", world.scenario.name);
    std::fs::write(out.join("latency.svg"), plot::svg(&title, &series))?;
    println!("outputs in {}", out.display());
    Ok(())
}

fn print_compare(document: &serde_json::Value) {
    let show = |label: &str, path: &str| {
        if let Some(spread) = document.pointer(path).filter(|v| !v.is_null()) {
            println!(
                "  {label:<44} median {:>10.2}  range {:.2} .. {:.2}",
                spread["median"].as_f64().unwrap_or(f64::NAN),
                spread["low"].as_f64().unwrap_or(f64::NAN),
                spread["high"].as_f64().unwrap_or(f64::NAN)
            );
        }
    };
    println!("results ({MACHINE}):");
    show("cairn max throughput (ev/s)", "/throughput_eps/cairn");
    show("redis max throughput (ev/s)", "/throughput_eps/redis");
    show("throughput ratio cairn/redis", "/throughput_eps/ratio_cairn_over_redis");
    show("server CPU µs/event: cairn", "/server_cpu_us_per_event/cairn");
    show("server CPU µs/event: redis", "/server_cpu_us_per_event/redis");
    show("CPU per event ratio redis/cairn", "/server_cpu_us_per_event/ratio_redis_over_cairn");
    show("p99 µs at the common rate: cairn", "/p99_us/cairn");
    show("p99 µs at the common rate: redis", "/p99_us/redis");
    show("p99 ratio redis/cairn", "/p99_us/ratio_redis_over_cairn");
    show("p99.9 µs at the common rate: cairn", "/p999_us/cairn");
    show("p99.9 µs at the common rate: redis", "/p999_us/redis");
    show("p99.9 ratio redis/cairn", "/p999_us/ratio_redis_over_cairn");
    show("cairn p99.9 µs at half its own max", "/cairn_half_max_p999_us");
    println!(
        "  harness ceiling (null server, same loop): {:.0} ev/s",
        document["harness_ceiling_eps"].as_f64().unwrap_or(f64::NAN)
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn compare_runs_at_some_rate_however_slow_the_maxima() {
        assert_eq!(super::open_rates(300_000.0, 100_000.0, None), (50_000, 150_000));
        assert_eq!(super::open_rates(300_000.0, 100_000.0, Some(7)), (7, 150_000));
        // Below 2 ev/s, half the maximum rounds to 0, which no schedule can run at.
        assert_eq!(super::open_rates(1.5, 0.5, None), (1, 1));
    }

    use super::*;

    fn summary(target: &str) -> Summary {
        Summary {
            target: target.into(),
            scenario: "tiny".into(),
            mode: "open".into(),
            rate_eps: Some(10),
            pipeline: None,
            duration_s: 1.0,
            events_sent: 1,
            events_acked: 1,
            errors: 0,
            rejections: Default::default(),
            offered_eps: 10.0,
            throughput_eps: 1.0,
            latency_us: Percentiles::default(),
            service_latency_us: Percentiles::default(),
            server_allocations_per_event: None,
            server_events_per_read: None,
            server_cpu_us_per_event: None,
            harness_cpu_us_per_event: 0.0,
            pushes_received: 0,
            push_gaps: 0,
            shards: 1,
            connections: 1,
            harness_threads: 1,
            machine: MACHINE.into(),
            load_average: "0 0 0".into(),
            failures: Vec::new(),
            validation: "ok".into(),
        }
    }

    #[test]
    fn a_broken_sibling_hgrm_is_named() {
        let dir = std::env::temp_dir().join(format!("cairn-perf-sibling-{}", std::process::id()));
        let sibling = dir.join("tiny-redis");
        std::fs::create_dir_all(&sibling).unwrap();
        std::fs::write(sibling.join("latency.hgrm"), "       1.000 0.5 1 2.0\n        oops 1.0 2\n").unwrap();
        let mut tally = crate::driver::Tally::new();
        latency::record(&mut tally.latency, 5_000);
        let result = PhaseResult {
            mode: Mode::Open { rate: 10 },
            duration: std::time::Duration::from_secs(1),
            tally,
            intervals: Vec::new(),
            server_cpu: None,
            harness_cpu: std::time::Duration::ZERO,
            allocations_per_event: None,
            events_per_read: None,
        };
        let error =
            write_run(&dir.join("tiny-cairn"), &summary("cairn"), &result).map_err(|error| format!("{error:#}"));
        std::fs::remove_dir_all(&dir).unwrap();
        let error = error.unwrap_err();
        assert!(error.contains("tiny-redis/latency.hgrm") && error.contains("line 2"), "{error}");
    }

    #[test]
    fn spreads_take_the_middle() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some(Spread { median: 2.0, low: 1.0, high: 3.0 }));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), Some(Spread { median: 2.5, low: 1.0, high: 4.0 }));
        assert_eq!(spread(&[f64::NAN]), None);
        assert_eq!(spread(&[]), None);
    }
}
