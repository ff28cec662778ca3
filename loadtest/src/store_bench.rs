//! Click-batch ingest benchmark: writes batches of synthetic clicks through the `Store`, the
//! same call the click pipeline makes, and reports rows per second.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use linkgate_common::clicks::batch::build_batch;
use linkgate_common::clicks::pipeline::{self as clicks_pipeline, PipelineSettings};
use linkgate_common::clicks::{ClickQueue, TrendingClock};
use linkgate_common::domain::{
    ClickBatch, ClickEvent, ClickId, ClickMethod, Email, LinkDomain, LinkId, NewLink, NewUser,
    Role, ShortCode, StoredClick, TargetPolicy, TargetUrl, Timestamp,
};
use linkgate_common::store::{Store, StoreError};

/// What one benchmark run measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub backend: &'static str,
    pub rows_per_batch: usize,
    /// Wall time of each batch write, in order.
    pub batch_times: Vec<Duration>,
}

impl BenchReport {
    pub fn median(&self) -> Duration {
        let mut sorted = self.batch_times.clone();
        sorted.sort();
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }

    pub fn best(&self) -> Duration {
        self.batch_times.iter().min().copied().unwrap_or_default()
    }

    /// Rows per second at the median batch time.
    pub fn median_rows_per_sec(&self) -> f64 {
        rate(self.rows_per_batch, self.median())
    }

    pub fn best_rows_per_sec(&self) -> f64 {
        rate(self.rows_per_batch, self.best())
    }
}

fn rate(rows: usize, took: Duration) -> f64 {
    let rows = rows as f64;
    rows / took.as_secs_f64().max(1e-9)
}

/// Writes `rounds` batches of `rows` clicks over 20 links, each batch one hour of the day in
/// time order, with every aggregate the pipeline writes, and times each write.
pub async fn run(store: &dyn Store, rows: usize, rounds: usize) -> Result<BenchReport, StoreError> {
    let links = seed_links(store, 20).await?;
    let day = Timestamp::now().day_start();
    let mut batch_times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let batch = synthetic_batch(&links, day, rows, round as u64);
        let started = Instant::now();
        store.write_click_batch(&batch).await?;
        batch_times.push(started.elapsed());
    }
    Ok(BenchReport {
        backend: store.backend_name(),
        rows_per_batch: rows,
        batch_times,
    })
}

async fn seed_links(store: &dyn Store, n: usize) -> Result<Vec<LinkId>, StoreError> {
    let email = Email::parse(&format!("bench-{}@example.com", ClickId::new()))
        .map_err(|_| StoreError::Backend("bench e-mail".into()))?;
    let owner = store
        .create_user(&NewUser {
            email,
            password_hash: "x".into(),
            role: Role::User,
        })
        .await?;
    let domain =
        LinkDomain::parse("bench.local").map_err(|_| StoreError::Backend("domain".into()))?;
    let target = TargetUrl::parse("https://example.com/bench", &TargetPolicy::default())
        .map_err(|_| StoreError::Backend("target".into()))?;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let link = NewLink::new(
            owner.id,
            domain.clone(),
            ShortCode::generate(10),
            target.clone(),
        );
        ids.push(store.create_link(&link).await?.id);
    }
    Ok(ids)
}

fn synthetic_batch(links: &[LinkId], day: Timestamp, rows: usize, salt: u64) -> ClickBatch {
    let clicks: Vec<StoredClick> = (0..rows)
        .map(|i| {
            let link = links[i % links.len()];
            // In time order, as clicks arrive (ids are time-ordered UUIDv7s).
            let step = Timestamp::MILLIS_PER_HOUR / i64::try_from(rows).unwrap_or(1).max(1);
            let offset = i64::try_from(i).unwrap_or(0) * step
                + i64::try_from(salt).unwrap_or(0) * Timestamp::MILLIS_PER_HOUR;
            let at = day.plus_millis(offset);
            StoredClick {
                click_id: ClickId::at(at),
                link_id: link,
                at,
                visitor: (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt,
                ip: None,
                referrer_host: Some(format!("ref{}.example", i % 50)),
                country: Some(["DE", "US", "FR", "JP", "BR"][i % 5].to_owned()),
                device: ["desktop", "mobile", "tablet"][i % 3].into(),
                browser: ["Firefox", "Chrome", "Safari"][i % 3].into(),
                os: ["Linux", "Windows", "macOS", "Android"][i % 4].into(),
                is_bot: i % 20 == 0,
                fraud_reasons: 0,
            }
        })
        .collect();
    // Every aggregate, as the pipeline writes it: hourly, breakdowns, visitor sketches,
    // link totals, trending.
    build_batch(clicks, &TrendingClock::new(3_600_000))
}

/// What the pipeline benchmark measured.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    pub backend: &'static str,
    pub clicks: u64,
    pub took: Duration,
    pub batches: u64,
}

impl PipelineReport {
    pub fn clicks_per_sec(&self) -> f64 {
        rate(
            usize::try_from(self.clicks).unwrap_or(usize::MAX),
            self.took,
        )
    }
}

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];

/// The batcher alone: `clicks` raw events (over 1,000 links and 50,000 visitors) are queued
/// at once and the pipeline (enrichment, aggregation, batched writes) drains them into the
/// store; the time until the last one is persisted and aggregated gives the sustained ingest
/// rate.
pub async fn pipeline(
    store: Arc<dyn Store>,
    clicks: usize,
    batch_max_events: usize,
) -> Result<PipelineReport, String> {
    let links = seed_links(&*store, 1_000)
        .await
        .map_err(|e| e.to_string())?;
    let journal = tempfile::tempdir().map_err(|e| e.to_string())?;
    let queue = Arc::new(ClickQueue::new(clicks.max(1)));
    // Events spread over the last `clicks` milliseconds, ids carrying their time, as the
    // proxy produces them.
    let start = Timestamp::now().plus_millis(-i64::try_from(clicks).unwrap_or(0));
    for i in 0..clicks {
        let now = start.plus_millis(i64::try_from(i).unwrap_or(0));
        let visitor = u32::try_from(i * 7_919 % 50_000).unwrap_or(0);
        let [_, _, a, b] = visitor.to_be_bytes();
        queue.push(ClickEvent {
            click_id: ClickId::at(now),
            at: now,
            link_id: links[i * 31 % links.len()],
            client_ip: IpAddr::V4(Ipv4Addr::new(10, 1, a, b)),
            user_agent: Some(USER_AGENTS[i % USER_AGENTS.len()].into()),
            referrer: Some("https://news.example.org/a".into()),
            has_accept: true,
            method: ClickMethod::Get,
            country: Some(*b"DE"),
            prefetch: false,
        });
    }
    // The defaults, with the benchmark's batch size, room for every event in memory and no
    // retention purge.
    let mut settings = PipelineSettings::from_config(&linkgate_config::Settings::default());
    settings.batch_max_events = batch_max_events;
    journal.path().clone_into(&mut settings.journal_dir);
    settings.buffer_max_clicks = clicks.max(1);
    settings.write_timeout = Duration::from_secs(30);
    settings.raw_click_retention_days = 0;
    let started = Instant::now();
    let handle =
        clicks_pipeline::spawn(queue, Arc::clone(&store), settings).map_err(|e| e.to_string())?;
    let stats = Arc::clone(handle.stats());
    let want = clicks as u64;
    while stats.persisted.load(Ordering::Relaxed) < want {
        if stats.write_errors.load(Ordering::Relaxed) > 0 {
            return Err("a batch write failed during the benchmark".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Shutting down writes the last aggregation window at once: the time includes every
    // click's aggregates, not only its raw segment.
    handle.shutdown(Duration::from_secs(30)).await;
    let took = started.elapsed();
    let aggregated = stats.aggregated.load(Ordering::Relaxed);
    if aggregated != want {
        return Err(format!("{aggregated} of {want} clicks aggregated"));
    }
    Ok(PipelineReport {
        backend: store.backend_name(),
        clicks: want,
        took,
        batches: stats.batches_written.load(Ordering::Relaxed),
    })
}
