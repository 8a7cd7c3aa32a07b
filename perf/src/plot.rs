//! The percentile plot, `latency.svg`: latency against percentile on HdrHistogram's usual
//! horizontal axis, `1/(1-p)` on a log scale (so 90%, 99%, 99.9% ... are evenly spaced
//! and the tail gets the room it deserves), one line per series, Cairn and Redis overlaid
//! when both ran. The vertical axis is logarithmic too, because a fast median and a slow
//! tail differ by orders of magnitude. Hand-written SVG: a few dozen lines, no
//! font or rendering dependencies.
//!
//! [`timeseries_svg`] draws `cairn-perf soak`'s figure the same way: stacked panels
//! (RSS, allocations per event, p99.9, throughput...) over one time axis in seconds, each
//! with a linear vertical axis from zero, and chosen seconds shaded (the quiet ones).

use std::fmt::Write as _;

/// One line of the plot: a name and its (quantile, microseconds) points.
#[derive(Clone, Debug)]
pub struct Series {
    /// The legend text.
    pub name: String,
    /// Points as `latency::parse_hgrm` returns them.
    pub points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// Decades of `1/(1-p)` on the horizontal axis: 0% to 99.9999%.
const X_DECADES: f64 = 6.0;
const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

/// Where a quantile falls on the horizontal axis, in decades of `1/(1-p)`.
pub fn x_decades(quantile: f64) -> f64 {
    let tail = (1.0 - quantile).max(10f64.powf(-X_DECADES));
    (-tail.log10()).clamp(0.0, X_DECADES)
}

/// The SVG document of `series`, titled `title`.
pub fn svg(title: &str, series: &[Series]) -> String {
    let values = series.iter().flat_map(|s| s.points.iter().map(|point| point.1)).filter(|v| *v > 0.0);
    let (low, high) = values.fold((f64::MAX, 0f64), |(low, high), v| (low.min(v), high.max(v)));
    let (y_low, y_high) =
        if high > 0.0 { (low.log10().floor(), high.log10().ceil().max(low.log10().floor() + 1.0)) } else { (0.0, 3.0) };
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let x_of = |quantile: f64| LEFT + x_decades(quantile) / X_DECADES * plot_width;
    let y_of = |us: f64| TOP + plot_height - (us.max(1e-3).log10() - y_low) / (y_high - y_low) * plot_height;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" font-size="16" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    for decade in 0..=X_DECADES as u32 {
        let x = LEFT + decade as f64 / X_DECADES * plot_width;
        let label = match decade {
            0 => "0%".to_string(),
            _ => format!("{}%", 100.0 - 100.0 / 10f64.powi(decade as i32)),
        };
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            TOP + plot_height
        );
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            TOP + plot_height + 18.0
        );
    }
    for decade in y_low as i32..=y_high as i32 {
        let us = 10f64.powi(decade);
        let y = y_of(us);
        let label = if us >= 1_000.0 { format!("{} ms", us / 1_000.0) } else { format!("{us} µs") };
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            LEFT + plot_width
        );
        let _ = writeln!(out, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#, LEFT - 6.0, y + 4.0);
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile (log scale of 1/(1-p))</text>"#,
        LEFT + plot_width / 2.0,
        HEIGHT - 14.0
    );
    let _ = writeln!(
        out,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">latency (log scale)</text>"#,
        TOP + plot_height / 2.0,
        TOP + plot_height / 2.0
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_width}" height="{plot_height}" fill="none" stroke="#444"/>"##
    );
    for (index, line) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let path: Vec<String> = line
            .points
            .iter()
            .filter(|p| p.1 > 0.0)
            .map(|&(q, us)| format!("{:.1},{:.1}", x_of(q), y_of(us)))
            .collect();
        let _ =
            writeln!(out, r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#, path.join(" "));
        let legend_y = TOP + 18.0 + index as f64 * 18.0;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{colour}" stroke-width="3"/>"#,
            LEFT + 12.0,
            LEFT + 36.0
        );
        let _ =
            writeln!(out, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, LEFT + 42.0, legend_y + 4.0, escape(&line.name));
    }
    out.push_str("</svg>\n");
    out
}

/// One panel of [`timeseries_svg`]: a label (with its unit) and one value per second.
#[derive(Clone, Debug)]
pub struct Panel {
    /// What the values are, with the unit.
    pub label: String,
    /// One value per second, from second 0.
    pub values: Vec<f64>,
}

/// Height of one panel of the time series, pixels.
const PANEL_HEIGHT: f64 = 150.0;
/// Space between panels, pixels.
const PANEL_GAP: f64 = 36.0;
/// Horizontal gridlines per panel (besides zero).
const PANEL_GRIDLINES: u32 = 4;

/// Stacked panels over one time axis (seconds), seconds with `shaded[s]` true shaded.
pub fn timeseries_svg(title: &str, panels: &[Panel], shaded: &[bool], shade_label: &str) -> String {
    let seconds = panels.iter().map(|panel| panel.values.len()).max().unwrap_or(0).max(1) as f64;
    let plot_width = WIDTH - LEFT - RIGHT;
    let height = TOP + panels.len() as f64 * (PANEL_HEIGHT + PANEL_GAP) + BOTTOM - PANEL_GAP;
    let x_of = |second: f64| LEFT + second / seconds * plot_width;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    for (index, panel) in panels.iter().enumerate() {
        let top = TOP + index as f64 * (PANEL_HEIGHT + PANEL_GAP);
        let high = nice_ceiling(panel.values.iter().copied().filter(|v| v.is_finite()).fold(0.0, f64::max));
        let y_of = |value: f64| top + PANEL_HEIGHT - value.clamp(0.0, high) / high * PANEL_HEIGHT;
        for (first, length) in runs(shaded) {
            let _ = writeln!(
                out,
                r##"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{PANEL_HEIGHT}" fill="#e6f4e6"/>"##,
                x_of(first as f64),
                plot_width / seconds * length as f64
            );
        }
        for step in 0..=PANEL_GRIDLINES {
            let value = high * step as f64 / PANEL_GRIDLINES as f64;
            let y = y_of(value);
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
                LEFT + plot_width
            );
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                short_number(value)
            );
        }
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{top:.1}" width="{plot_width}" height="{PANEL_HEIGHT}" fill="none" stroke="#444"/>"##
        );
        let _ = writeln!(out, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, LEFT + 6.0, top - 6.0, escape(&panel.label));
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<String> = panel
            .values
            .iter()
            .enumerate()
            .filter(|(_, value)| value.is_finite())
            .map(|(second, value)| format!("{:.1},{:.1}", x_of(second as f64 + 0.5), y_of(*value)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
    }
    let axis_y = height - BOTTOM + 18.0;
    let ticks = 10u32;
    for tick in 0..=ticks {
        let second = (seconds * tick as f64 / ticks as f64).round();
        let _ = writeln!(out, r#"<text x="{:.1}" y="{axis_y:.1}" text-anchor="middle">{second}</text>"#, x_of(second));
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{:.1}" text-anchor="middle">seconds of the soak; shaded: {}</text>"#,
        LEFT + plot_width / 2.0,
        height - 14.0,
        escape(shade_label)
    );
    out.push_str("</svg>\n");
    out
}

/// The runs of consecutive true values: (first index, length), so a shaded stretch is
/// one rectangle, not one per second.
fn runs(flags: &[bool]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (index, _) in flags.iter().enumerate().filter(|(_, flag)| **flag) {
        match runs.last_mut() {
            Some((first, length)) if *first + *length == index => *length += 1,
            _ => runs.push((index, 1)),
        }
    }
    runs
}

/// The smallest 1, 2 or 5 times a power of ten at or above `value` (1 for nothing).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * power).find(|v| *v >= value * (1.0 - 1e-12)).unwrap_or(10.0 * power)
}

/// A gridline label: `1.5k`, `2M`, `0.25`.
fn short_number(value: f64) -> String {
    let trim = |text: String| {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    };
    if value >= 1e6 {
        format!("{}M", trim(format!("{:.2}", value / 1e6)))
    } else if value >= 1e3 {
        format!("{}k", trim(format!("{:.2}", value / 1e3)))
    } else if value >= 1.0 {
        trim(format!("{value:.2}"))
    } else {
        trim(format!("{value:.5}"))
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_gets_evenly_spaced_decades() {
        assert_eq!(x_decades(0.0), 0.0);
        assert!((x_decades(0.9) - 1.0).abs() < 1e-9);
        assert!((x_decades(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(x_decades(1.0), X_DECADES);
    }

    #[test]
    fn a_time_series_gets_one_panel_per_measure_and_shades_the_chosen_seconds() {
        let panels = [
            Panel { label: "RSS, MiB".into(), values: vec![10.0, 11.0, 10.5] },
            Panel { label: "p99.9 <µs>".into(), values: vec![100.0, f64::NAN, 300.0] },
        ];
        let text = timeseries_svg("soak", &panels, &[false, true, false], "quiet");
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
        assert_eq!(text.matches("<polyline").count(), 2);
        assert_eq!(text.matches("#e6f4e6").count(), 2, "one shaded second in each of two panels");
        assert!(text.contains("p99.9 &lt;µs&gt;"));
        assert_eq!(runs(&[true, true, false, true, false, false, true]), [(0, 2), (3, 1), (6, 1)]);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(2_000_000.0), "2M");
        assert_eq!(short_number(0.25), "0.25");
    }

    #[test]
    fn every_series_gets_a_line_and_a_legend() {
        let series = [
            Series { name: "cairn".into(), points: vec![(0.0, 20.0), (0.99, 80.0), (1.0, 400.0)] },
            Series { name: "redis <pipelined>".into(), points: vec![(0.0, 50.0), (0.99, 900.0), (1.0, 3000.0)] },
        ];
        let text = svg("default", &series);
        assert!(text.starts_with("<svg"));
        assert!(text.trim_end().ends_with("</svg>"));
        assert_eq!(text.matches("<polyline").count(), 2);
        assert!(text.contains("redis &lt;pipelined&gt;"));
        assert!(text.contains("99.9%"));
        assert!(text.contains("1 ms"));
    }
}
