//! Click-batch ingest benchmark: writes batches of synthetic clicks through the `Store`, the
//! same call the click pipeline makes, and reports rows per second.

use std::time::{Duration, Instant};

use linkgate_common::domain::{
    ClickBatch, ClickId, Email, HourlyDelta, LinkDomain, LinkId, NewLink, NewUser, Role, ShortCode,
    StoredClick, TargetPolicy, TargetUrl, Timestamp,
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

/// Writes `rounds` batches of `rows` clicks spread over 20 links and 24 hours, each with its
/// pre-summed hourly aggregates, and times each write.
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
    let mut hourly = std::collections::HashMap::new();
    let clicks: Vec<StoredClick> = (0..rows)
        .map(|i| {
            let link = links[i % links.len()];
            let offset = i64::try_from(i).unwrap_or(0) * 7_919 % Timestamp::MILLIS_PER_DAY;
            let at = day.plus_millis(offset);
            let is_bot = i % 20 == 0;
            let h = hourly
                .entry((link, at.hour_start()))
                .or_insert(HourlyDelta {
                    link_id: link,
                    hour: at.hour_start(),
                    total: 0,
                    human: 0,
                    bot: 0,
                    suspicious: 0,
                });
            h.total += 1;
            if is_bot {
                h.bot += 1;
            } else {
                h.human += 1;
            }
            StoredClick {
                click_id: ClickId::new(),
                link_id: link,
                at,
                visitor: (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt,
                ip: None,
                referrer_host: Some(format!("ref{}.example", i % 50)),
                country: Some(["DE", "US", "FR", "JP", "BR"][i % 5].to_owned()),
                device: ["desktop", "mobile", "tablet"][i % 3].to_owned(),
                browser: ["Firefox", "Chrome", "Safari"][i % 3].to_owned(),
                os: ["Linux", "Windows", "macOS", "Android"][i % 4].to_owned(),
                is_bot,
                fraud_reasons: 0,
            }
        })
        .collect();
    ClickBatch {
        batch_id: ClickId::new().0,
        clicks,
        hourly: hourly.into_values().collect(),
        breakdowns: Vec::new(),
        visitors: Vec::new(),
        link_totals: Vec::new(),
    }
}
