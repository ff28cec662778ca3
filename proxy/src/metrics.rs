//! Every Prometheus metric of the proxy, registered in one place, served on its own listener.
//! Labels are bounded enums: never a code, a URL, a host or a raw path.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http::Response;
use linkgate_common::clicks::PipelineStats;
use linkgate_common::per_thread::{Local, PerThread, bump};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::core::{Collector, Desc};
use prometheus::{Encoder as _, IntCounter, IntGauge, Registry, TextEncoder, proto};

/// How a request ended, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    L1Hit,
    L2Hit,
    StoreHit,
    NotFound,
    /// 410: expired, out of clicks, disabled or banned.
    Gone,
    /// 429: a rate limit refused the request.
    Limited,
    /// The password form or a password check.
    Password,
    /// 4xx for malformed requests (bad query, wrong method, missing host).
    BadRequest,
    /// 5xx: the store failed.
    Error,
    /// Forwarded to the admin service.
    Passthrough,
}

impl Outcome {
    const ALL: [Self; 10] = [
        Self::L1Hit,
        Self::L2Hit,
        Self::StoreHit,
        Self::NotFound,
        Self::Gone,
        Self::Limited,
        Self::Password,
        Self::BadRequest,
        Self::Error,
        Self::Passthrough,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::L1Hit => "l1_hit",
            Self::L2Hit => "l2_hit",
            Self::StoreHit => "store_hit",
            Self::NotFound => "not_found",
            Self::Gone => "gone",
            Self::Limited => "limited",
            Self::Password => "password",
            Self::BadRequest => "bad_request",
            Self::Error => "error",
            Self::Passthrough => "passthrough",
        }
    }
}

/// Cache tiers as labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierLabel {
    L1,
    L2,
    Store,
}

/// Sources read at scrape time.
pub trait ScrapeSource: Send + Sync {
    fn queue_depth(&self) -> usize;
    fn clicks_offered(&self) -> u64;
    fn clicks_dropped(&self) -> u64;
    fn redis_circuit_open(&self) -> Option<bool>;
    fn redis_circuit_opened(&self) -> u64;
    fn l1_entries(&self) -> u64;
    fn pipeline(&self) -> Option<std::sync::Arc<linkgate_common::clicks::PipelineStats>>;
}

pub struct Metrics {
    pub registry: Registry,
    /// Requests by outcome, their latency and the cache lookups: counted per thread.
    counts: Arc<Shards>,
    queue_depth: IntGauge,
    clicks_offered: IntCounter,
    clicks_dropped: IntCounter,
    redis_circuit_open: IntGauge,
    redis_circuit_opened: IntCounter,
    l1_entries: IntGauge,
    pipeline: PipelineMetrics,
    /// Last totals copied into the counters (monotonic sources are copied as deltas).
    /// A mutex: scrapes are rare and must not interleave.
    copied: Mutex<[u64; 15]>,
}

/// The click pipeline's series.
struct PipelineMetrics {
    persisted: IntCounter,
    aggregated: IntCounter,
    aggregate_errors: IntCounter,
    replayed: IntCounter,
    overflow_journaled: IntCounter,
    deferred_total: IntCounter,
    contended_pauses: IntCounter,
    corrupt: IntCounter,
    batches: IntCounter,
    write_errors: IntCounter,
    journal_errors: IntCounter,
    write_micros: IntCounter,
    buffered: IntGauge,
    journaled: IntGauge,
    journaled_at_start: IntGauge,
    deferred: IntGauge,
    in_flight: IntGauge,
    store_up: IntGauge,
    aggregate_window: IntGauge,
}

impl PipelineMetrics {
    fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("metric names are unique");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("metric names are unique");
            g
        };
        Self {
            persisted: counter(
                "linkgate_clicks_persisted_total",
                "Clicks the store has confirmed (including journal replays)",
            ),
            aggregated: counter(
                "linkgate_clicks_aggregated_total",
                "Persisted clicks whose aggregates (analytics) this node has written",
            ),
            aggregate_errors: counter(
                "linkgate_click_aggregate_errors_total",
                "Failed writes of a window of click aggregates (retried)",
            ),
            replayed: counter(
                "linkgate_clicks_replayed_total",
                "Clicks written from the local journal",
            ),
            overflow_journaled: counter(
                "linkgate_clicks_overflow_journaled_total",
                "Clicks journaled because the buffer was full during a store write \
                 (instead of dropped at a full queue)",
            ),
            deferred_total: counter(
                "linkgate_clicks_deferred_total",
                "Clicks deferred to local files because the batcher was behind or the cores busy \
                 (a click deferred again counts twice)",
            ),
            contended_pauses: counter(
                "linkgate_clicks_contended_pauses_total",
                "Times the processing of deferred clicks paused because the cores were busy",
            ),
            corrupt: counter(
                "linkgate_clicks_journal_corrupt_total",
                "Clicks in journal or deferred files that could not be read (set aside as \
                 .corrupt)",
            ),
            batches: counter(
                "linkgate_click_batches_written_total",
                "Click batches the store has taken",
            ),
            write_errors: counter(
                "linkgate_click_batch_write_errors_total",
                "Failed click batch writes (retried)",
            ),
            journal_errors: counter(
                "linkgate_click_journal_errors_total",
                "Journal reads or writes that failed",
            ),
            write_micros: counter(
                "linkgate_click_batch_write_microseconds_total",
                "Time spent in successful batch writes",
            ),
            buffered: gauge(
                "linkgate_clicks_buffered",
                "Clicks taken off the queue and held in memory awaiting a write",
            ),
            journaled: gauge(
                "linkgate_clicks_journaled",
                "Clicks in local journal files awaiting replay",
            ),
            journaled_at_start: gauge(
                "linkgate_clicks_journaled_at_start",
                "Clicks found in the journal at start-up",
            ),
            deferred: gauge(
                "linkgate_clicks_deferred",
                "Clicks deferred while the batcher was behind, not yet processed: how far \
                 analytics trail redirects",
            ),
            in_flight: gauge(
                "linkgate_clicks_in_flight",
                "Accepted clicks not yet persisted: queued + buffered + deferred + journaled",
            ),
            store_up: gauge(
                "linkgate_click_store_up",
                "1 when the last batch write succeeded",
            ),
            aggregate_window: gauge(
                "linkgate_click_aggregate_window_milliseconds",
                "How long the batcher's aggregation window stays open: analytics trail redirects by up to this",
            ),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Latency buckets from 25 µs to 1 s, in µs (the exposition's `le` is in seconds).
const BUCKETS_MICROS: [u64; 15] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];
const OUTCOMES: usize = Outcome::ALL.len();

/// The bucket of a latency: how many bounds lie below it. Counted without a branch (the
/// bounds are sorted, so this is their partition point): a binary search's branches on
/// each request's latency were mispredicted often enough to be half of `logging`'s time.
fn bucket_of(nanos: u64) -> usize {
    BUCKETS_MICROS
        .iter()
        .map(|&le| usize::from(le * 1_000 < nanos))
        .sum()
}

/// One thread's request counts. Only that thread writes them, with a plain load and store:
/// no locked instruction, and the lines stay in its core's cache. (Prometheus' own counter
/// and histogram took five locked read-modify-writes a redirect, on lines every request
/// thread shares.) A scrape sums every thread's.
#[derive(Default)]
struct Shard {
    /// Per outcome, requests per latency bucket (not cumulative; the last is above 1 s).
    /// Their sum is the outcome's request count.
    latency: [[AtomicU64; BUCKETS_MICROS.len() + 1]; OUTCOMES],
    latency_nanos: [AtomicU64; OUTCOMES],
    /// [tier][hit=0/miss=1]
    lookups: [[AtomicU64; 2]; 3],
}

/// Adds each counter to its sum.
fn add_all(sums: &mut [u64], counters: &[AtomicU64]) {
    for (sum, c) in sums.iter_mut().zip(counters) {
        *sum = sum.wrapping_add(c.load(Ordering::Relaxed));
    }
}

thread_local! {
    /// This thread's shard of each `Metrics` it counted into.
    static SHARD: Local<Arc<Shard>> = const { RefCell::new(Vec::new()) };
}

/// Every thread's [`Shard`] of one `Metrics`.
type Shards = PerThread<Shard>;

/// The sum of every thread's shard, in the shape of one.
struct Totals {
    latency: [[u64; BUCKETS_MICROS.len() + 1]; OUTCOMES],
    latency_nanos: [u64; OUTCOMES],
    lookups: [[u64; 2]; 3],
}

impl Totals {
    fn of(shards: &Shards) -> Self {
        let mut t = Self {
            latency: [[0; BUCKETS_MICROS.len() + 1]; OUTCOMES],
            latency_nanos: [0; OUTCOMES],
            lookups: [[0; 2]; 3],
        };
        shards.each(|shard| {
            add_all(t.latency.as_flattened_mut(), shard.latency.as_flattened());
            add_all(&mut t.latency_nanos, &shard.latency_nanos);
            add_all(t.lookups.as_flattened_mut(), shard.lookups.as_flattened());
        });
        t
    }
}

/// Exposes the shards as `linkgate_proxy_requests_total`,
/// `linkgate_proxy_request_duration_seconds` and `linkgate_proxy_cache_lookups_total`.
struct RequestCollector {
    shards: Arc<Shards>,
    descs: [Desc; 3],
}

const REQUESTS: (&str, &str) = ("linkgate_proxy_requests_total", "Requests by outcome");
const LATENCY: (&str, &str) = (
    "linkgate_proxy_request_duration_seconds",
    "Time to answer, by outcome",
);
const LOOKUPS: (&str, &str) = (
    "linkgate_proxy_cache_lookups_total",
    "Cache lookups by tier and result",
);

impl RequestCollector {
    fn new(shards: Arc<Shards>) -> Self {
        let desc = |(name, help): (&str, &str), labels: &[&str]| {
            Desc::new(
                name.to_owned(),
                help.to_owned(),
                labels.iter().map(|l| (*l).to_owned()).collect(),
                HashMap::new(),
            )
            .expect("valid metric")
        };
        Self {
            shards,
            descs: [
                desc(REQUESTS, &["outcome"]),
                desc(LATENCY, &["outcome"]),
                desc(LOOKUPS, &["tier", "result"]),
            ],
        }
    }
}

/// A series with these labels (given in name order, as the exposition sorts them).
fn series(labels: &[(&str, &str)]) -> proto::Metric {
    let mut m = proto::Metric::default();
    m.set_label(
        labels
            .iter()
            .map(|(name, value)| {
                let mut l = proto::LabelPair::default();
                l.set_name((*name).to_owned());
                l.set_value((*value).to_owned());
                l
            })
            .collect(),
    );
    m
}

fn family(
    (name, help): (&str, &str),
    kind: proto::MetricType,
    metrics: Vec<proto::Metric>,
) -> proto::MetricFamily {
    let mut f = proto::MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn counter(labels: &[(&str, &str)], value: u64) -> proto::Metric {
    let mut m = series(labels);
    let mut c = proto::Counter::default();
    c.set_value(value as f64);
    m.set_counter(c);
    m
}

impl Collector for RequestCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let t = Totals::of(&self.shards);
        let mut requests = Vec::with_capacity(OUTCOMES);
        let mut latency = Vec::with_capacity(OUTCOMES);
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            let labels = [("outcome", outcome.label())];
            let counts = &t.latency[i];
            let total: u64 = counts.iter().sum();
            requests.push(counter(&labels, total));
            let mut h = proto::Histogram::default();
            h.set_sample_count(total);
            h.set_sample_sum(t.latency_nanos[i] as f64 / 1e9);
            let mut cumulative = 0;
            h.set_bucket(
                BUCKETS_MICROS
                    .iter()
                    .zip(counts)
                    .map(|(le, n)| {
                        cumulative += n;
                        let mut b = proto::Bucket::default();
                        b.set_upper_bound(*le as f64 / 1e6);
                        b.set_cumulative_count(cumulative);
                        b
                    })
                    .collect(),
            );
            let mut m = series(&labels);
            m.set_histogram(h);
            latency.push(m);
        }
        let mut lookups = Vec::with_capacity(6);
        for (tier, name) in [TierLabel::L1, TierLabel::L2, TierLabel::Store]
            .into_iter()
            .zip(["l1", "l2", "store"])
        {
            for (hit, result) in [(true, "hit"), (false, "miss")] {
                let n = t.lookups[tier as usize][usize::from(!hit)];
                lookups.push(counter(&[("result", result), ("tier", name)], n));
            }
        }
        vec![
            family(REQUESTS, proto::MetricType::COUNTER, requests),
            family(LATENCY, proto::MetricType::HISTOGRAM, latency),
            family(LOOKUPS, proto::MetricType::COUNTER, lookups),
        ]
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let queue_depth = IntGauge::new(
            "linkgate_clicks_queue_depth",
            "Click events waiting in the queue",
        )
        .expect("valid metric");
        let clicks_offered = IntCounter::new(
            "linkgate_clicks_offered_total",
            "Click events offered to the queue",
        )
        .expect("valid metric");
        let clicks_dropped = IntCounter::new(
            "linkgate_clicks_dropped_total",
            "Click events dropped because the queue was full",
        )
        .expect("valid metric");
        let redis_circuit_open = IntGauge::new(
            "linkgate_proxy_redis_circuit_open",
            "1 while Redis is skipped after errors, 0 when in use, -1 when not configured",
        )
        .expect("valid metric");
        let redis_circuit_opened = IntCounter::new(
            "linkgate_proxy_redis_circuit_opened_total",
            "Times the Redis circuit breaker opened",
        )
        .expect("valid metric");
        let l1_entries = IntGauge::new(
            "linkgate_proxy_l1_entries",
            "Links (and negative entries) in the in-process cache",
        )
        .expect("valid metric");
        let pipeline = PipelineMetrics::new(&registry);
        let counts = Arc::new(Shards::new());
        for c in [
            Box::new(RequestCollector::new(Arc::clone(&counts)))
                as Box<dyn prometheus::core::Collector>,
            Box::new(queue_depth.clone()),
            Box::new(clicks_offered.clone()),
            Box::new(clicks_dropped.clone()),
            Box::new(redis_circuit_open.clone()),
            Box::new(redis_circuit_opened.clone()),
            Box::new(l1_entries.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            counts,
            queue_depth,
            clicks_offered,
            clicks_dropped,
            redis_circuit_open,
            redis_circuit_opened,
            l1_entries,
            pipeline,
            registry,
            copied: Mutex::new([0; 15]),
        }
    }

    /// Counts a finished request.
    pub fn observe(&self, outcome: Outcome, took: Duration) {
        let i = outcome as usize;
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = bucket_of(nanos);
        self.counts.with(&SHARD, |shard| {
            bump(&shard.latency[i][bucket], 1);
            bump(&shard.latency_nanos[i], nanos);
        });
    }

    pub fn lookup(&self, tier: TierLabel, hit: bool) {
        self.counts.with(&SHARD, |shard| {
            bump(&shard.lookups[tier as usize][usize::from(!hit)], 1)
        });
    }

    /// The text exposition, after copying the scrape-time values in.
    pub fn render(&self, source: &dyn ScrapeSource) -> Vec<u8> {
        self.queue_depth
            .set(i64::try_from(source.queue_depth()).unwrap_or(i64::MAX));
        self.l1_entries
            .set(i64::try_from(source.l1_entries()).unwrap_or(i64::MAX));
        self.redis_circuit_open
            .set(match source.redis_circuit_open() {
                None => -1,
                Some(open) => i64::from(open),
            });
        let stats = source.pipeline();
        let load = |f: fn(&PipelineStats) -> &AtomicU64| {
            stats.as_deref().map_or(0, |s| f(s).load(Ordering::Relaxed))
        };
        let p = &self.pipeline;
        let gauge = |g: &IntGauge, v: u64| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        gauge(&p.buffered, load(|s| &s.buffered));
        gauge(&p.journaled, load(|s| &s.journaled));
        gauge(&p.journaled_at_start, load(|s| &s.journaled_at_start));
        gauge(&p.deferred, load(|s| &s.deferred));
        gauge(&p.aggregate_window, load(|s| &s.aggregate_window_millis));
        gauge(
            &p.in_flight,
            source.queue_depth() as u64 + stats.as_deref().map_or(0, PipelineStats::pending),
        );
        p.store_up.set(i64::from(
            stats
                .as_deref()
                .is_some_and(|s| s.store_up.load(Ordering::Relaxed)),
        ));
        if let Ok(mut copied) = self.copied.lock() {
            for (slot, (counter, now)) in [
                (&self.clicks_offered, source.clicks_offered()),
                (&self.clicks_dropped, source.clicks_dropped()),
                (&self.redis_circuit_opened, source.redis_circuit_opened()),
                (&p.persisted, load(|s| &s.persisted)),
                (&p.aggregated, load(|s| &s.aggregated)),
                (&p.aggregate_errors, load(|s| &s.aggregate_errors)),
                (&p.replayed, load(|s| &s.replayed)),
                (&p.overflow_journaled, load(|s| &s.overflow_journaled)),
                (&p.deferred_total, load(|s| &s.deferred_total)),
                (&p.contended_pauses, load(|s| &s.contended_pauses)),
                (&p.corrupt, load(|s| &s.corrupt)),
                (&p.batches, load(|s| &s.batches_written)),
                (&p.write_errors, load(|s| &s.write_errors)),
                (&p.journal_errors, load(|s| &s.journal_errors)),
                (&p.write_micros, load(|s| &s.write_micros)),
            ]
            .into_iter()
            .enumerate()
            {
                counter.inc_by(now.saturating_sub(copied[slot]));
                copied[slot] = copied[slot].max(now);
            }
        }
        let mut out = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The metrics listener's HTTP app: `GET /metrics` (any path) returns the exposition.
#[allow(
    missing_debug_implementations,
    reason = "holds trait objects with nothing to show"
)]
pub struct MetricsApp {
    pub metrics: std::sync::Arc<Metrics>,
    pub source: std::sync::Arc<dyn ScrapeSource>,
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, _session: &mut ServerSession) -> Response<Vec<u8>> {
        let body = self.metrics.render(&*self.source);
        Response::builder()
            .status(200)
            .header("content-type", "text/plain; version=0.0.4")
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl ScrapeSource for Fixed {
        fn queue_depth(&self) -> usize {
            7
        }
        fn clicks_offered(&self) -> u64 {
            10
        }
        fn clicks_dropped(&self) -> u64 {
            2
        }
        fn redis_circuit_open(&self) -> Option<bool> {
            Some(true)
        }
        fn redis_circuit_opened(&self) -> u64 {
            1
        }
        fn l1_entries(&self) -> u64 {
            3
        }
        fn pipeline(&self) -> Option<std::sync::Arc<PipelineStats>> {
            let stats = PipelineStats::default();
            stats.persisted.store(5, Ordering::Relaxed);
            stats.buffered.store(1, Ordering::Relaxed);
            stats.journaled.store(2, Ordering::Relaxed);
            Some(std::sync::Arc::new(stats))
        }
    }

    #[test]
    fn a_latency_falls_in_the_first_bucket_whose_bound_it_does_not_exceed() {
        // Prometheus' buckets are `le`: a latency equal to a bound is in that bound's bucket.
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(25_000), 0);
        assert_eq!(bucket_of(25_001), 1);
        assert_eq!(bucket_of(1_000_000_000), BUCKETS_MICROS.len() - 1);
        assert_eq!(bucket_of(1_000_000_001), BUCKETS_MICROS.len());
        assert_eq!(bucket_of(u64::MAX), BUCKETS_MICROS.len());
        for (i, &le) in BUCKETS_MICROS.iter().enumerate() {
            for nanos in [le * 1_000 - 1, le * 1_000, le * 1_000 + 1] {
                assert_eq!(
                    bucket_of(nanos),
                    BUCKETS_MICROS.partition_point(|&b| b * 1_000 < nanos),
                    "{nanos} ns"
                );
            }
            assert_eq!(bucket_of(le * 1_000), i);
        }
    }

    #[test]
    fn the_exposition_has_bounded_labels_and_scrape_time_values() {
        let m = Metrics::new();
        m.observe(Outcome::L1Hit, Duration::from_micros(30));
        m.lookup(TierLabel::L2, false);
        let text = String::from_utf8(m.render(&Fixed)).unwrap();
        assert!(
            text.contains("linkgate_proxy_requests_total{outcome=\"l1_hit\"} 1"),
            "{text}"
        );
        assert!(text.contains("linkgate_proxy_request_duration_seconds_bucket{outcome=\"l1_hit\",le=\"0.00005\"} 1"), "{text}");
        assert!(
            text.contains("linkgate_proxy_cache_lookups_total{result=\"miss\",tier=\"l2\"} 1"),
            "{text}"
        );
        assert!(text.contains("linkgate_clicks_queue_depth 7"));
        assert!(text.contains("linkgate_clicks_dropped_total 2"));
        assert!(text.contains("linkgate_proxy_redis_circuit_open 1"));
        assert!(text.contains("linkgate_clicks_persisted_total 5"), "{text}");
        assert!(text.contains("linkgate_clicks_in_flight 10"), "{text}");
        // Counters copied as deltas: a second scrape does not double them.
        let again = String::from_utf8(m.render(&Fixed)).unwrap();
        assert!(
            again.contains("linkgate_clicks_offered_total 10"),
            "{again}"
        );
        assert!(
            again.contains("linkgate_clicks_persisted_total 5"),
            "{again}"
        );
    }

    #[test]
    fn every_thread_counts_into_the_same_series_and_metrics_do_not_mix() {
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i);
        }
        let m = std::sync::Arc::new(Metrics::new());
        let other = Metrics::new();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = std::sync::Arc::clone(&m);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.observe(Outcome::L1Hit, Duration::from_micros(40));
                        m.lookup(TierLabel::L1, true);
                    }
                    m.observe(Outcome::Gone, Duration::from_secs(2));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The same thread counting for two `Metrics` in turn.
        other.observe(Outcome::L1Hit, Duration::from_micros(10));
        m.observe(Outcome::L1Hit, Duration::from_micros(25));
        other.observe(Outcome::L1Hit, Duration::from_micros(10));
        let text = String::from_utf8(m.render(&Fixed)).unwrap();
        for line in [
            "linkgate_proxy_requests_total{outcome=\"l1_hit\"} 4001",
            "linkgate_proxy_request_duration_seconds_bucket{outcome=\"l1_hit\",le=\"0.000025\"} 1",
            "linkgate_proxy_request_duration_seconds_bucket{outcome=\"l1_hit\",le=\"0.00005\"} 4001",
            "linkgate_proxy_request_duration_seconds_bucket{outcome=\"l1_hit\",le=\"+Inf\"} 4001",
            "linkgate_proxy_request_duration_seconds_count{outcome=\"l1_hit\"} 4001",
            "linkgate_proxy_request_duration_seconds_sum{outcome=\"l1_hit\"} 0.160025",
            // Slower than the last bucket: counted, in +Inf only.
            "linkgate_proxy_requests_total{outcome=\"gone\"} 4",
            "linkgate_proxy_request_duration_seconds_bucket{outcome=\"gone\",le=\"1\"} 0",
            "linkgate_proxy_request_duration_seconds_bucket{outcome=\"gone\",le=\"+Inf\"} 4",
            "linkgate_proxy_requests_total{outcome=\"passthrough\"} 0",
            "linkgate_proxy_cache_lookups_total{result=\"hit\",tier=\"l1\"} 4000",
            "linkgate_proxy_cache_lookups_total{result=\"miss\",tier=\"store\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        let text = String::from_utf8(other.render(&Fixed)).unwrap();
        assert!(
            text.contains("linkgate_proxy_requests_total{outcome=\"l1_hit\"} 2\n"),
            "{text}"
        );
    }
}
