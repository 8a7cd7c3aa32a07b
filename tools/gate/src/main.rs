//! `bench-gate`: the comparison half of Cairn's CI regression gate.
//!
//! `tools/bench-gate` runs `benches/gate.rs` under Callgrind (through gungraun) with JSON
//! output and hands the summary to this program, which divides each bench's instruction
//! count by the events of its trace (`benches/common/gate_events.rs`, shared with the
//! bench) and then either checks the figures against the committed baselines
//! (`benches/baselines/gate.json`) or rewrites that file.
//!
//! The check fails, naming the bench, the old and new figures and their ratio, when any
//! bench's instructions per event grow by more than [`GROWTH_RATIO_MAX`], when a gated
//! bench was not measured, or when it has no baseline. A bench that got cheaper by more
//! than the same margin is reported (so the baseline can be tightened on purpose) but
//! does not fail.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

#[path = "../../../benches/common/gate_events.rs"]
mod gate_events;

/// The largest accepted ratio of new to baseline instructions per event: 2% growth.
const GROWTH_RATIO_MAX: f64 = 1.02;

/// What the baselines file says about itself, so a reader of the diff knows where it came
/// from.
const BASELINES_ABOUT: &str = "Callgrind instructions per event of benches/gate.rs, recorded by \
                               `tools/bench-gate --update`; `tools/bench-gate` fails CI if a bench grows by more than 2%.";

#[derive(Parser)]
#[command(about = "Compares instructions per event of benches/gate.rs with the committed baselines.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fails if any bench's instructions per event grew by more than 2% over its baseline.
    Check {
        /// gungraun's JSON output (`cargo bench --profile gate --bench gate -- --output-format=json`).
        #[arg(long)]
        summary: PathBuf,
        /// The committed baselines.
        #[arg(long)]
        baselines: PathBuf,
        /// The compiler that built the bench (`rustc --version`): if the baselines were
        /// recorded with another, the gate says so, since a compiler moves the counts too.
        #[arg(long)]
        rustc: Option<String>,
    },
    /// Rewrites the baselines from this measurement.
    Update {
        /// gungraun's JSON output (`cargo bench --profile gate --bench gate -- --output-format=json`).
        #[arg(long)]
        summary: PathBuf,
        /// The baselines file to write.
        #[arg(long)]
        baselines: PathBuf,
        /// The compiler that built the bench (`rustc --version`), recorded beside the figures.
        #[arg(long)]
        rustc: Option<String>,
    },
}

/// A message for the user: the binary only ever reports an error and exits.
type Result<T> = std::result::Result<T, String>;

/// One bench's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Figure {
    events: u64,
    instructions: u64,
}

impl Figure {
    fn per_event(&self) -> f64 {
        self.instructions as f64 / self.events as f64
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { summary, baselines, rustc } => check(&summary, &baselines, rustc.as_deref()),
        Command::Update { summary, baselines, rustc } => update(&summary, &baselines, rustc.as_deref()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("gate: error: {error}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))
}

fn check(summary: &PathBuf, baselines: &PathBuf, rustc: Option<&str>) -> Result<bool> {
    let measured = measured_figures(&read(summary)?)?;
    let text = read(baselines)?;
    let baselines_json: Value =
        serde_json::from_str(&text).map_err(|error| format!("{}: not valid JSON: {error}", baselines.display()))?;
    let base = baseline_figures(&baselines_json).map_err(|error| format!("{}: {error}", baselines.display()))?;
    let verdicts = compare(&base, &measured);
    let recorded_with = baselines_json["rustc"].as_str();
    if let (Some(recorded_with), Some(rustc)) = (recorded_with, rustc) {
        if recorded_with != rustc {
            println!("gate: note: baselines recorded with {recorded_with}, measured with {rustc}");
        }
    }
    let mut passed = true;
    println!("gate: instructions per event (Callgrind Ir / events), budget x{GROWTH_RATIO_MAX}:");
    for verdict in &verdicts {
        println!("  {verdict}");
    }
    for verdict in &verdicts {
        if verdict.fails() {
            passed = false;
            eprintln!("gate: {verdict}");
        }
    }
    if passed {
        println!("gate: passed ({} benches within x{GROWTH_RATIO_MAX} of their baselines)", verdicts.len());
    } else {
        eprintln!(
            "gate: FAILED. If the change is intended, run `tools/bench-gate --update` and commit the new baselines \
             with the reason."
        );
    }
    Ok(passed)
}

fn update(summary: &PathBuf, baselines: &PathBuf, rustc: Option<&str>) -> Result<bool> {
    let measured = measured_figures(&read(summary)?)?;
    let text = baselines_document(&measured, rustc);
    std::fs::write(baselines, text).map_err(|error| format!("cannot write {}: {error}", baselines.display()))?;
    for (name, figure) in &measured {
        println!("gate: baseline {name}: {:.1} instructions/event", figure.per_event());
    }
    println!("gate: wrote {}", baselines.display());
    Ok(true)
}

/// The baselines file: pretty JSON with sorted keys, one bench per block, so a re-recording
/// shows in the diff line by line.
fn baselines_document(measured: &BTreeMap<String, Figure>, rustc: Option<&str>) -> String {
    let benches: serde_json::Map<String, Value> = measured
        .iter()
        .map(|(name, figure)| {
            let per_event = (figure.per_event() * 10.0).round() / 10.0;
            let entry = json!({
                "events": figure.events,
                "instructions": figure.instructions,
                "instructions_per_event": per_event,
            });
            (name.clone(), entry)
        })
        .collect();
    let mut document = json!({ "about": BASELINES_ABOUT, "benches": benches });
    if let Some(rustc) = rustc {
        document["rustc"] = Value::from(rustc);
    }
    let mut text = serde_json::to_string_pretty(&document).expect("a JSON value serializes");
    text.push('\n');
    text
}

/// Instruction counts per gated bench from gungraun's JSON lines, with each trace's events.
/// Fails if a gated bench is missing or appears twice.
fn measured_figures(summary: &str) -> Result<BTreeMap<String, Figure>> {
    let mut figures = BTreeMap::new();
    for (index, line) in summary.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let value: Value =
            serde_json::from_str(line).map_err(|error| format!("summary line {}: not JSON: {error}", index + 1))?;
        let (name, instructions) =
            instructions_of(&value).map_err(|message| format!("summary line {}: {message}", index + 1))?;
        let Some(&(_, events)) = gate_events::ALL.iter().find(|(gated, _)| *gated == name) else {
            return Err(format!("summary line {}: bench {name:?} is not in gate_events::ALL", index + 1));
        };
        if instructions == 0 {
            // Callgrind saw none of the bench's body run: a broken bench, not a cheaper one.
            return Err(format!("bench {name} measured 0 instructions: did its body run?"));
        }
        if figures.insert(name.clone(), Figure { events, instructions }).is_some() {
            return Err(format!("bench {name} was measured twice"));
        }
    }
    for (name, _) in gate_events::ALL {
        if !figures.contains_key(name) {
            return Err(format!("bench {name} was not measured (is it in benches/gate.rs's group?)"));
        }
    }
    Ok(figures)
}

/// The bench function's name and its Callgrind instruction count (Ir) from one line of
/// gungraun's JSON output.
fn instructions_of(line: &Value) -> Result<(String, u64)> {
    let name = line["function_name"].as_str().ok_or("no function_name")?.to_string();
    let profiles = line["profiles"].as_array().ok_or_else(|| format!("{name}: no profiles"))?;
    let callgrind = profiles
        .iter()
        .find(|profile| profile["tool"].as_str() == Some("Callgrind"))
        .ok_or_else(|| format!("{name}: no Callgrind profile"))?;
    // gungraun 0.20 writes each metric as `{"values": {"new": N}}`, with `"old"` beside
    // `"new"` when it compares with an earlier run of its own; the gate reads only `new`.
    let ir = &callgrind["data"]["total"]["metrics"]["Ir"];
    let instructions = ir["values"]["new"].as_u64().ok_or_else(|| format!("{name}: no Callgrind Ir in {ir}"))?;
    Ok((name, instructions))
}

/// Figures from the baselines file.
fn baseline_figures(document: &Value) -> Result<BTreeMap<String, Figure>> {
    let benches = document["benches"].as_object().ok_or("no \"benches\" object")?;
    let mut figures = BTreeMap::new();
    for (name, entry) in benches {
        let field = |key: &str| entry[key].as_u64().ok_or_else(|| format!("{name}: no whole number {key:?}"));
        let figure = Figure { events: field("events")?, instructions: field("instructions")? };
        if figure.events == 0 {
            return Err(format!("{name}: zero events"));
        }
        if figure.instructions == 0 {
            return Err(format!("{name}: zero instructions, which no real bench measures"));
        }
        figures.insert(name.clone(), figure);
    }
    Ok(figures)
}

/// What the gate says about one bench.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Within budget; `ratio` is new over old instructions per event.
    Within { name: String, old: f64, new: f64, ratio: f64 },
    /// Cheaper by more than the budget: fine, and worth a new baseline.
    Improved { name: String, old: f64, new: f64, ratio: f64 },
    /// Grew by more than the budget.
    Regressed { name: String, old: f64, new: f64, ratio: f64 },
    /// Measured but without a baseline.
    NoBaseline { name: String, new: f64 },
    /// A baseline for a bench that was not measured.
    NotMeasured { name: String },
}

impl Verdict {
    fn fails(&self) -> bool {
        matches!(self, Verdict::Regressed { .. } | Verdict::NoBaseline { .. } | Verdict::NotMeasured { .. })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Within { name, old, new, ratio } => {
                write!(formatter, "{name}: {old:.1} -> {new:.1} instructions/event (x{ratio:.3}, ok)")
            }
            Verdict::Improved { name, old, new, ratio } => write!(
                formatter,
                "{name}: {old:.1} -> {new:.1} instructions/event (x{ratio:.3}, cheaper: consider \
                 `tools/bench-gate --update`)"
            ),
            Verdict::Regressed { name, old, new, ratio } => {
                write!(formatter, "{name}: {old:.1} -> {new:.1} instructions/event (x{ratio:.3} > x{GROWTH_RATIO_MAX})")
            }
            Verdict::NoBaseline { name, new } => write!(
                formatter,
                "{name}: {new:.1} instructions/event but no baseline (run `tools/bench-gate --update`)"
            ),
            Verdict::NotMeasured { name } => {
                write!(formatter, "{name}: has a baseline but was not measured")
            }
        }
    }
}

/// Compares every bench that has a baseline or a measurement, in name order.
fn compare(baselines: &BTreeMap<String, Figure>, measured: &BTreeMap<String, Figure>) -> Vec<Verdict> {
    let mut names: Vec<&String> = baselines.keys().chain(measured.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let name_owned = name.clone();
            match (baselines.get(name), measured.get(name)) {
                (Some(old), Some(new)) => {
                    let (old, new) = (old.per_event(), new.per_event());
                    let ratio = new / old;
                    if ratio > GROWTH_RATIO_MAX {
                        Verdict::Regressed { name: name_owned, old, new, ratio }
                    } else if ratio < 1.0 / GROWTH_RATIO_MAX {
                        Verdict::Improved { name: name_owned, old, new, ratio }
                    } else {
                        Verdict::Within { name: name_owned, old, new, ratio }
                    }
                }
                (None, Some(new)) => Verdict::NoBaseline { name: name_owned, new: new.per_event() },
                (Some(_), None) => Verdict::NotMeasured { name: name_owned },
                (None, None) => unreachable!("every name comes from one of the maps"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(entries: &[(&str, u64, u64)]) -> BTreeMap<String, Figure> {
        entries
            .iter()
            .map(|&(name, events, instructions)| (name.to_string(), Figure { events, instructions }))
            .collect()
    }

    #[test]
    fn growth_over_two_percent_fails_and_names_the_figures() {
        let old = figures(&[("apply_mixed", 1_000, 1_234_500)]);
        let new = figures(&[("apply_mixed", 1_000, 1_270_100)]);
        let verdicts = compare(&old, &new);
        assert_eq!(verdicts.len(), 1);
        assert!(verdicts[0].fails());
        assert_eq!(verdicts[0].to_string(), "apply_mixed: 1234.5 -> 1270.1 instructions/event (x1.029 > x1.02)");
    }

    #[test]
    fn growth_within_two_percent_and_improvements_pass() {
        let old = figures(&[("a", 100, 10_000), ("b", 100, 10_000), ("c", 100, 10_000)]);
        let new = figures(&[("a", 100, 10_200), ("b", 200, 20_000), ("c", 100, 5_000)]);
        let verdicts = compare(&old, &new);
        assert!(matches!(verdicts[0], Verdict::Within { .. }), "{verdicts:?}");
        assert!(matches!(verdicts[1], Verdict::Within { .. }), "per event, not per run: {verdicts:?}");
        assert!(matches!(verdicts[2], Verdict::Improved { .. }), "{verdicts:?}");
        assert!(verdicts.iter().all(|verdict| !verdict.fails()));
    }

    #[test]
    fn a_missing_baseline_or_measurement_fails() {
        let verdicts = compare(&figures(&[("gone", 1, 1)]), &figures(&[("new", 1, 1)]));
        assert_eq!(verdicts.len(), 2);
        assert!(verdicts.iter().all(Verdict::fails), "{verdicts:?}");
    }

    #[test]
    fn the_baselines_file_round_trips() {
        let measured = figures(&[("apply_mixed", 8_192, 12_345_678), ("journal_encode", 8_192, 999_999)]);
        let text = baselines_document(&measured, Some("rustc 1.0.0"));
        let document: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(baseline_figures(&document).unwrap(), measured);
        assert_eq!(document["benches"]["apply_mixed"]["instructions_per_event"], 1507.0);
        assert_eq!(document["rustc"], "rustc 1.0.0");
    }

    #[test]
    fn a_summary_without_every_gated_bench_is_refused() {
        let line = summary_line("apply_mixed", 1_000);
        let error = measured_figures(&line).unwrap_err();
        assert!(error.contains("was not measured"), "{error}");
    }

    #[test]
    fn a_full_summary_gives_instructions_per_event() {
        let summary: String =
            gate_events::ALL.iter().map(|(name, events)| summary_line(name, events * 150) + "\n").collect();
        let measured = measured_figures(&summary).unwrap();
        assert_eq!(measured.len(), gate_events::ALL.len());
        for figure in measured.values() {
            assert_eq!(figure.per_event(), 150.0);
        }
        assert!(measured_figures(&(summary.clone() + &summary)).unwrap_err().contains("twice"));
        assert!(measured_figures("{").is_err());
    }

    #[test]
    fn a_count_of_zero_instructions_is_refused_not_passed() {
        // A bench whose body never ran measures 0: that is a broken bench, not a cheaper one.
        let summary: String = gate_events::ALL
            .iter()
            .enumerate()
            .map(|(index, (name, events))| summary_line(name, if index == 0 { 0 } else { events * 150 }) + "\n")
            .collect();
        let error = measured_figures(&summary).unwrap_err();
        assert!(error.contains(gate_events::ALL[0].0) && error.contains("0 instructions"), "{error}");
        let document = json!({ "benches": { "apply_mixed": { "events": 10, "instructions": 0 } } });
        let error = baseline_figures(&document).unwrap_err();
        assert!(error.contains("apply_mixed") && error.contains("zero instructions"), "{error}");
    }

    /// One line of gungraun's JSON output, cut down to the fields the gate reads.
    fn summary_line(name: &str, instructions: u64) -> String {
        let metrics = json!({ "Ir": { "values": { "new": instructions, "old": 1 } } });
        let profile = json!({ "tool": "Callgrind", "data": { "total": { "metrics": metrics } } });
        json!({ "function_name": name, "profiles": [profile] }).to_string()
    }
}
