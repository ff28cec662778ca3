//! A latency-by-percentile plot as a standalone SVG file (open it in any browser).
//! The x axis is logarithmic in 1/(1-p), as `HdrHistogram` plots are, so the tail is visible.

use std::fmt::Write as _;

use crate::report::{Report, curve};

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];
/// The plot spans percentiles up to 99.999 (five nines).
const NINES: f64 = 5.0;

fn x_of(percentile: f64) -> f64 {
    let nines = if percentile >= 100.0 {
        NINES
    } else {
        (1.0 / (1.0 - percentile / 100.0)).log10().min(NINES)
    };
    LEFT + nines / NINES * (WIDTH - LEFT - RIGHT)
}

/// Renders the reports' latency curves into one SVG document.
pub fn svg(title: &str, reports: &[&Report]) -> String {
    let curves: Vec<Vec<(f64, u64)>> = reports.iter().map(|r| curve(&r.latency)).collect();
    let max_us = curves
        .iter()
        .flatten()
        .map(|&(_, v)| v)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let y_of = |us: f64| HEIGHT - BOTTOM - us / (max_us * 1.05) * (HEIGHT - TOP - BOTTOM);

    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(
        out,
        r#"<text x="{LEFT}" y="24" font-size="15">{}</text>"#,
        escape(title)
    );
    // Axes and grid.
    let x0 = LEFT;
    let x1 = WIDTH - RIGHT;
    let y0 = HEIGHT - BOTTOM;
    let _ = write!(
        out,
        r#"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>"#
    );
    let _ = write!(
        out,
        r#"<line x1="{x0}" y1="{TOP}" x2="{x0}" y2="{y0}" stroke="black"/>"#
    );
    for (p, label) in [
        (0.0, "0%"),
        (90.0, "90%"),
        (99.0, "99%"),
        (99.9, "99.9%"),
        (99.99, "99.99%"),
        (99.999, "99.999%"),
    ] {
        let x = x_of(p);
        let _ = write!(
            out,
            r##"<line x1="{x}" y1="{TOP}" x2="{x}" y2="{y0}" stroke="#ddd"/>"##
        );
        let _ = write!(
            out,
            r#"<text x="{x}" y="{}" text-anchor="middle">{label}</text>"#,
            y0 + 18.0
        );
    }
    for i in 0..=5 {
        let us = max_us * 1.05 * f64::from(i) / 5.0;
        let y = y_of(us);
        let _ = write!(
            out,
            r##"<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="#eee"/>"##
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            x0 - 6.0,
            y + 4.0,
            axis_label(us)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        f64::midpoint(x0, x1),
        HEIGHT - 16.0
    );
    let _ = write!(
        out,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">latency</text>"#,
        f64::midpoint(TOP, y0),
        f64::midpoint(TOP, y0)
    );
    // Curves and legend.
    for (i, (points, report)) in curves.iter().zip(reports).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|&(p, us)| {
                let us = us as f64;
                format!("{:.1},{:.1}", x_of(p), y_of(us))
            })
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let ly = TOP + 20.0 * f64::from(u32::try_from(i).unwrap_or(0));
        let _ = write!(
            out,
            r#"<rect x="{}" y="{}" width="14" height="4" fill="{colour}"/>"#,
            x1 + 12.0,
            ly
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="{}">{} ({:.0}/s)</text>"#,
            x1 + 30.0,
            ly + 6.0,
            escape(&report.label),
            report.throughput()
        );
    }
    out.push_str("</svg>\n");
    out
}

fn axis_label(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_plot_is_an_svg_with_one_curve_per_report_and_escaped_labels() {
        let mut a = Report::new("http://127.0.0.1:1/<a>", "closed", 1);
        let mut b = Report::new("b", "closed", 1);
        for v in [100, 200, 300, 5000] {
            a.latency.record(v).unwrap();
            b.latency.record(v * 2).unwrap();
        }
        a.measured = Duration::from_secs(1);
        b.measured = Duration::from_secs(1);
        let svg = svg("test & plot", &[&a, &b]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("&lt;a&gt;") && svg.contains("test &amp; plot"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn percentiles_map_to_increasing_x() {
        assert!(x_of(0.0) < x_of(50.0) && x_of(50.0) < x_of(99.0) && x_of(99.0) < x_of(99.999));
        assert!((x_of(100.0) - x_of(99.999)).abs() < 1e-9);
    }
}
