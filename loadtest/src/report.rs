//! What a run measured, and how it is shown: a table (one column per run, side by side),
//! JSON, and the numbers a comparison needs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds from 1 µs to 60 s with 3 significant digits.
pub const HIGHEST_MICROS: u64 = 60_000_000;

/// Percentiles every report shows.
pub const PERCENTILES: [f64; 5] = [50.0, 90.0, 99.0, 99.9, 99.99];

/// A new, empty latency histogram.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("valid histogram bounds")
}

/// Saturating microseconds of a duration, clamped into the histogram's range.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, HIGHEST_MICROS)
}

/// One measured run against one target (or several runs against it, merged).
#[derive(Debug, Clone)]
pub struct Report {
    pub label: String,
    pub mode: String,
    pub connections: usize,
    /// Measured time (warm-up excluded), summed over merged runs.
    pub measured: Duration,
    pub latency: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Open loop: requests due in the measured window that were never sent because the
    /// target could not keep up (recorded in the histogram at their lower-bound latency).
    pub unsent: u64,
    /// Open loop: how late the pacer handed requests to connections (generator jitter,
    /// included in the latencies, so they err on the slow side).
    pub dispatch_lag: Option<Histogram<u64>>,
}

impl Report {
    pub fn new(label: &str, mode: &str, connections: usize) -> Self {
        Self {
            label: label.to_owned(),
            mode: mode.to_owned(),
            connections,
            measured: Duration::ZERO,
            latency: histogram(),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            unsent: 0,
            dispatch_lag: None,
        }
    }

    /// Completed responses in the measured window.
    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Responses per second over the measured window.
    pub fn throughput(&self) -> f64 {
        let n = self.responses() as f64;
        n / self.measured.as_secs_f64().max(1e-9)
    }

    pub fn percentile(&self, p: f64) -> Duration {
        Duration::from_micros(self.latency.value_at_percentile(p))
    }

    pub fn max(&self) -> Duration {
        Duration::from_micros(self.latency.max())
    }

    /// Adds another run of the same target (compare mode's rounds).
    pub fn merge(&mut self, other: &Report) {
        self.measured += other.measured;
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.unsent += other.unsent;
        match (&mut self.dispatch_lag, &other.dispatch_lag) {
            (Some(mine), Some(theirs)) => {
                let _ = mine.add(theirs);
            }
            (None, Some(theirs)) => self.dispatch_lag = Some(theirs.clone()),
            _ => {}
        }
    }

    pub fn to_json(&self) -> ReportJson {
        ReportJson {
            label: self.label.clone(),
            mode: self.mode.clone(),
            connections: self.connections,
            measured_secs: self.measured.as_secs_f64(),
            responses: self.responses(),
            throughput_per_sec: self.throughput(),
            latency_micros: PERCENTILES
                .iter()
                .map(|p| (format!("p{p}"), self.latency.value_at_percentile(*p)))
                .chain([("max".to_owned(), self.latency.max())])
                .collect(),
            latency_curve_micros: curve(&self.latency),
            statuses: self
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors: self.errors.clone(),
            unsent: self.unsent,
            dispatch_lag_p99_micros: self
                .dispatch_lag
                .as_ref()
                .map(|h| h.value_at_percentile(99.0)),
        }
    }
}

/// The JSON form of a report.
#[derive(Debug, Serialize)]
pub struct ReportJson {
    pub label: String,
    pub mode: String,
    pub connections: usize,
    pub measured_secs: f64,
    pub responses: u64,
    pub throughput_per_sec: f64,
    pub latency_micros: BTreeMap<String, u64>,
    /// (percentile, micros) points for plotting.
    pub latency_curve_micros: Vec<(f64, u64)>,
    pub statuses: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub unsent: u64,
    pub dispatch_lag_p99_micros: Option<u64>,
}

/// Percentile curve points: 0, 50, 75, 87.5, ... up to 99.999, then 100.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    let mut points = Vec::new();
    let mut p = 0.0_f64;
    while p < 99.999 {
        points.push((p, h.value_at_percentile(p)));
        p = 100.0 - (100.0 - p) / 2.0_f64.sqrt();
    }
    points.push((99.999, h.value_at_percentile(99.999)));
    points.push((100.0, h.max()));
    points
}

fn fmt_latency(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// Renders reports side by side: one column each.
pub fn table(reports: &[&Report]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = vec![
        (
            "target".into(),
            reports.iter().map(|r| r.label.clone()).collect(),
        ),
        (
            "mode".into(),
            reports.iter().map(|r| r.mode.clone()).collect(),
        ),
        (
            "connections".into(),
            reports.iter().map(|r| r.connections.to_string()).collect(),
        ),
        (
            "measured".into(),
            reports
                .iter()
                .map(|r| format!("{:.1} s", r.measured.as_secs_f64()))
                .collect(),
        ),
        (
            "responses".into(),
            reports.iter().map(|r| r.responses().to_string()).collect(),
        ),
        (
            "throughput".into(),
            reports
                .iter()
                .map(|r| format!("{:.0} /s", r.throughput()))
                .collect(),
        ),
    ];
    for p in PERCENTILES {
        rows.push((
            format!("p{p}"),
            reports
                .iter()
                .map(|r| fmt_latency(r.percentile(p)))
                .collect(),
        ));
    }
    rows.push((
        "max".into(),
        reports.iter().map(|r| fmt_latency(r.max())).collect(),
    ));
    let mut statuses: Vec<u16> = reports
        .iter()
        .flat_map(|r| r.statuses.keys().copied())
        .collect();
    statuses.sort_unstable();
    statuses.dedup();
    for s in statuses {
        rows.push((
            format!("status {s}"),
            reports
                .iter()
                .map(|r| r.statuses.get(&s).copied().unwrap_or(0).to_string())
                .collect(),
        ));
    }
    rows.push((
        "errors".into(),
        reports
            .iter()
            .map(|r| r.error_count().to_string())
            .collect(),
    ));
    if reports.iter().any(|r| r.unsent > 0) {
        rows.push((
            "unsent (overload)".into(),
            reports.iter().map(|r| r.unsent.to_string()).collect(),
        ));
    }
    if reports.iter().any(|r| r.dispatch_lag.is_some()) {
        rows.push((
            "dispatch lag p99".into(),
            reports
                .iter()
                .map(|r| {
                    r.dispatch_lag.as_ref().map_or_else(
                        || "-".into(),
                        |h| fmt_latency(Duration::from_micros(h.value_at_percentile(99.0))),
                    )
                })
                .collect(),
        ));
    }
    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..reports.len())
        .map(|i| {
            rows.iter()
                .map(|(_, v)| v[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (label, values) in &rows {
        let _ = write!(out, "{label:<label_width$}");
        for (value, width) in values.iter().zip(&widths) {
            let _ = write!(out, "  {value:>width$}");
        }
        out.push('\n');
    }
    for (k, v) in reports.iter().flat_map(|r| r.errors.iter()) {
        let _ = writeln!(out, "  error: {k} x{v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(label: &str, latencies_us: &[u64], secs: u64) -> Report {
        let mut r = Report::new(label, "closed", 4);
        for &l in latencies_us {
            r.latency.record(l).unwrap();
            *r.statuses.entry(302).or_default() += 1;
        }
        r.measured = Duration::from_secs(secs);
        r
    }

    #[test]
    fn percentiles_and_throughput_come_from_the_recorded_values() {
        let values: Vec<u64> = (1..=1000).collect();
        let r = report("a", &values, 2);
        assert_eq!(r.responses(), 1000);
        assert!((r.throughput() - 500.0).abs() < 1e-9);
        assert_eq!(r.percentile(50.0), Duration::from_micros(500));
        assert_eq!(r.max(), Duration::from_millis(1));
    }

    #[test]
    fn merged_rounds_add_up() {
        let mut a = report("a", &[10, 20], 1);
        a.merge(&report("a", &[30], 1));
        assert_eq!(a.responses(), 3);
        assert_eq!(a.measured, Duration::from_secs(2));
        assert_eq!(a.max(), Duration::from_micros(30));
    }

    #[test]
    fn the_table_shows_reports_side_by_side() {
        let a = report("http://127.0.0.1:1", &[100, 200], 1);
        let b = report("http://127.0.0.1:2", &[1500], 1);
        let t = table(&[&a, &b]);
        assert!(t.contains("http://127.0.0.1:1  http://127.0.0.1:2"), "{t}");
        assert!(t.contains("1.50 ms"), "{t}");
        assert!(t.contains("status 302"), "{t}");
    }

    #[test]
    fn the_curve_ends_at_the_maximum() {
        let r = report("a", &[1, 2, 3, 1000], 1);
        let c = curve(&r.latency);
        assert_eq!(c.last(), Some(&(100.0, 1000)));
        assert!(c.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }
}
