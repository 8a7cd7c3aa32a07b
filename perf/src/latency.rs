//! Latency histograms and their outputs: the fixed-bound HDR histogram every worker
//! records into, the percentile summary that goes into `summary.json`, the standard
//! `.hgrm` percentile distribution text, its parser (for the plot), and the interval log.
//!
//! Values are recorded in nanoseconds with three significant digits, from 1 ns to one
//! minute, and the histogram never resizes (a resize in the middle of a run would be a
//! stall of the harness's own making). Outputs are in microseconds, as HdrHistogram's
//! tools print them with an output scaling ratio of 1000.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency a histogram holds, in nanoseconds (one minute); longer ones are
/// clamped to it.
pub const LATENCY_NS_MAX: u64 = 60_000_000_000;
/// Significant decimal digits kept.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Percentile steps per halving of the remaining distance, as HdrHistogram's own
/// `outputPercentileDistribution` prints them.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// Nanoseconds per microsecond: the outputs' scaling ratio.
const NS_PER_US: f64 = 1_000.0;

/// A latency histogram with the harness's fixed bounds.
pub fn histogram() -> Histogram<u64> {
    let mut histogram =
        Histogram::new_with_bounds(1, LATENCY_NS_MAX, SIGNIFICANT_DIGITS).expect("the latency bounds are valid");
    histogram.auto(false);
    histogram
}

/// Records one latency, clamped into the histogram's bounds.
pub fn record(histogram: &mut Histogram<u64>, latency_ns: u64) {
    let clamped = latency_ns.clamp(1, LATENCY_NS_MAX);
    histogram.record(clamped).expect("a clamped value is within the bounds");
}

/// The percentiles `summary.json` reports, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// 99.99th percentile.
    pub p9999: f64,
    /// Largest value recorded.
    pub max: f64,
}

impl Percentiles {
    /// The percentiles of `histogram` (all zero when it is empty).
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        let at = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / NS_PER_US;
        Percentiles {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            p9999: at(0.9999),
            max: histogram.max() as f64 / NS_PER_US,
        }
    }
}

/// The standard HdrHistogram percentile distribution text of `histogram`, values in
/// microseconds: the format HdrHistogram's plotters read.
pub fn hgrm(histogram: &Histogram<u64>) -> String {
    let mut text = String::new();
    text.push_str("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    let mut total = 0u64;
    for step in histogram.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += step.count_since_last_iteration();
        let value = step.value_iterated_to() as f64 / NS_PER_US;
        let quantile = step.quantile_iterated_to();
        if quantile < 1.0 {
            let _ = writeln!(text, "{value:12.3} {quantile:2.12} {total:10} {:14.2}", 1.0 / (1.0 - quantile));
        } else {
            let _ = writeln!(text, "{value:12.3} {quantile:2.12} {total:10}");
        }
    }
    let mean = histogram.mean() / NS_PER_US;
    let deviation = histogram.stdev() / NS_PER_US;
    let max = histogram.max() as f64 / NS_PER_US;
    let _ = writeln!(text, "#[Mean    = {mean:12.3}, StdDeviation   = {deviation:12.3}]");
    let _ = writeln!(text, "#[Max     = {max:12.3}, Total count    = {:12}]", histogram.len());
    let _ = writeln!(
        text,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        histogram.buckets(),
        histogram.distinct_values() / histogram.buckets().max(1) as usize
    );
    text
}

/// The (quantile, microseconds) points of an `.hgrm` text, for plotting. Comment and
/// header lines are skipped; a line that does not parse is an error naming it.
pub fn parse_hgrm(text: &str) -> Result<Vec<(f64, f64)>> {
    let mut points = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("Value") {
            continue;
        }
        let mut fields = line.split_whitespace();
        // `f64` parses "inf" and "NaN" too; neither is a latency or a percentile (an
        // infinite value would also send the plot's axis loop through i32::MAX decades).
        let mut next = |name: &str, valid: fn(f64) -> bool, meaning: &str| -> Result<f64> {
            let field = fields.next().with_context(|| format!("line {}: no {name}", index + 1))?;
            let number: f64 =
                field.parse().with_context(|| format!("line {}: {name} {field:?} is not a number", index + 1))?;
            if !valid(number) {
                bail!("line {}: {name} {field:?} is not {meaning}", index + 1);
            }
            Ok(number)
        };
        let value = next("value", |v| v.is_finite() && v >= 0.0, "a finite, non-negative number of microseconds")?;
        let quantile = next("percentile", |q| (0.0..=1.0).contains(&q), "a fraction from 0 to 1")?;
        points.push((quantile, value));
    }
    Ok(points)
}

/// An interval log being written: one compressed histogram per interval, in the
/// HdrHistogram interval log format (`HistogramLogProcessor` and the online plotters
/// read it). Lines are kept in memory and written out at the end of the run.
pub struct IntervalLog {
    text: Vec<u8>,
    serializer: V2DeflateSerializer,
    started: bool,
}

impl IntervalLog {
    /// An empty log.
    pub fn new() -> IntervalLog {
        IntervalLog { text: Vec::new(), serializer: V2DeflateSerializer::new(), started: false }
    }

    /// Appends the histogram of the interval `[start, start + length)` (relative to the
    /// run's start), with values in nanoseconds; `tag` names the series.
    pub fn append(&mut self, histogram: &Histogram<u64>, start: Duration, length: Duration, tag: &str) -> Result<()> {
        let mut builder = IntervalLogWriterBuilder::new();
        // Each append starts a writer of its own, and a writer divides the max column by
        // its builder's divisor: every builder needs it, or only the first interval's max
        // would be in milliseconds and the rest in nanoseconds.
        builder.with_max_value_divisor(NS_PER_US * 1_000.0);
        if !self.started {
            builder.add_comment("cairn-perf interval log; values in nanoseconds");
            self.started = true;
        }
        let mut writer =
            builder.begin_log_with(&mut self.text, &mut self.serializer).context("cannot start the interval log")?;
        writer
            .write_histogram(histogram, start, length, Tag::new(tag))
            .map_err(|error| anyhow::anyhow!("cannot write an interval: {error:?}"))
    }

    /// The log's text.
    pub fn bytes(&self) -> &[u8] {
        &self.text
    }
}

impl Default for IntervalLog {
    fn default() -> IntervalLog {
        IntervalLog::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform_1_to_1000_us() -> Histogram<u64> {
        let mut histogram = histogram();
        for us in 1..=1_000u64 {
            record(&mut histogram, us * 1_000);
        }
        histogram
    }

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 0.002
    }

    #[test]
    fn percentiles_are_in_microseconds() {
        let percentiles = Percentiles::of(&uniform_1_to_1000_us());
        assert!(close(percentiles.p50, 500.0), "{percentiles:?}");
        assert!(close(percentiles.p90, 900.0), "{percentiles:?}");
        assert!(close(percentiles.p99, 990.0), "{percentiles:?}");
        assert!(close(percentiles.p999, 999.0), "{percentiles:?}");
        assert!(close(percentiles.max, 1000.0), "{percentiles:?}");
        assert_eq!(Percentiles::of(&histogram()), Percentiles::default());
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let mut histogram = histogram();
        record(&mut histogram, 0);
        record(&mut histogram, u64::MAX);
        assert_eq!(histogram.len(), 2);
        assert!(histogram.max() >= LATENCY_NS_MAX);
    }

    #[test]
    fn hgrm_round_trips_through_its_parser() {
        let histogram = uniform_1_to_1000_us();
        let text = hgrm(&histogram);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        assert!(text.contains("Total count    =         1000]"), "{text}");
        let points = parse_hgrm(&text).unwrap();
        assert!(points.len() > 20);
        assert!(points.windows(2).all(|pair| pair[0].0 <= pair[1].0 && pair[0].1 <= pair[1].1));
        let (last_quantile, last_value) = *points.last().unwrap();
        assert_eq!(last_quantile, 1.0);
        assert!(close(last_value, 1000.0));
        let median = points.iter().find(|(quantile, _)| *quantile >= 0.5).unwrap();
        assert!(close(median.1, 500.0), "{median:?}");
    }

    #[test]
    fn a_bad_hgrm_line_is_named() {
        let error = parse_hgrm("       1.000 0.5 1 2.0\n      x 0.9 2 10\n").unwrap_err();
        assert!(format!("{error:#}").contains("line 2: value \"x\""), "{error:#}");
    }

    #[test]
    fn an_hgrm_value_or_percentile_that_is_no_latency_is_named() {
        // f64's parser takes these words; an infinite value made the plot's axis loop run
        // for i32::MAX decades.
        for (line, expected) in [
            ("         inf 1.0 2\n", "line 2: value \"inf\""),
            ("         NaN 1.0 2\n", "line 2: value \"NaN\""),
            ("      -5.000 1.0 2\n", "line 2: value \"-5.000\""),
            ("      20.000 NaN 2\n", "line 2: percentile \"NaN\""),
            ("      20.000 1.5 2\n", "line 2: percentile \"1.5\""),
        ] {
            let text = format!("       1.000 0.5 1 2.0\n{line}");
            let error = parse_hgrm(&text).map_err(|error| format!("{error:#}"));
            assert!(error.as_ref().is_err_and(|error| error.contains(expected)), "{line:?}: {error:?}");
        }
    }

    #[test]
    fn the_interval_log_has_one_line_per_interval() {
        let mut log = IntervalLog::new();
        let histogram = uniform_1_to_1000_us();
        log.append(&histogram, Duration::from_secs(0), Duration::from_secs(1), "cairn").unwrap();
        log.append(&histogram, Duration::from_secs(1), Duration::from_secs(1), "cairn").unwrap();
        let text = String::from_utf8(log.bytes().to_vec()).unwrap();
        let intervals = text.lines().filter(|line| line.starts_with("Tag=cairn,")).count();
        assert_eq!(intervals, 2, "{text}");
        assert_eq!(text.matches("interval log").count(), 1);
    }

    #[test]
    fn every_interval_states_its_max_in_the_same_unit() {
        // The interval log's third column is the interval's max divided by the log's
        // `MaxValueDivisor` (milliseconds for nanosecond values); every line must use it,
        // not only the first.
        let mut log = IntervalLog::new();
        let histogram = uniform_1_to_1000_us();
        for second in 0..3 {
            log.append(&histogram, Duration::from_secs(second), Duration::from_secs(1), "cairn").unwrap();
        }
        let text = String::from_utf8(log.bytes().to_vec()).unwrap();
        assert!(text.contains("#[MaxValueDivisor: 1000000.000]"), "{text}");
        // Read back with HdrHistogram's own log reader.
        let maxima: Vec<f64> = hdrhistogram::serialization::interval_log::IntervalLogIterator::new(log.bytes())
            .map(|entry| entry.unwrap_or_else(|error| panic!("{error:?} in {text}")))
            .filter_map(|entry| match entry {
                hdrhistogram::serialization::interval_log::LogEntry::Interval(interval) => Some(interval.max()),
                _ => None,
            })
            .collect();
        assert_eq!(maxima.len(), 3, "{text}");
        for max_ms in maxima {
            assert!(close(max_ms, 1.0), "an interval's max of 1000 µs is 1 ms, not {max_ms}: {text}");
        }
    }
}
