//! The batcher: drains the click queue, enriches, aggregates and writes batches, and never
//! loses an accepted click.
//!
//! Every `flush_interval` (or as soon as `batch_max_events` are waiting) the queue is drained
//! into batches of at most `batch_max_events`. Batches wait in a bounded in-memory buffer
//! until the store takes them, oldest first. A failed write is retried with exponential
//! backoff; after `spill_after_failures` failures in a row (the store is down) or when the
//! buffer is full, batches go to the local [`Journal`] instead, and the journal is replayed,
//! oldest first, as soon as a write succeeds again (and at start-up). A write that takes
//! long with the buffer full does not let the queue fill either: the queue's events are
//! made batches and journaled while the write runs (`journal_overflow`). Writes are idempotent
//! by batch id, so a batch whose commit was acknowledged too late, or that was journaled and
//! then replayed after a crash, is applied once.
//!
//! A batch's write is its raw clicks only (one segment value per UTC day) plus a
//! `pending_aggregates` row. Its clicks are then folded into this node's aggregation window
//! ([`WindowFold`]: sums per key, and only the flagged clicks kept), and every
//! `aggregate_interval` the window's aggregates (hourly counters, breakdowns, unique
//! visitors, trending, link totals, flagged-click segments) are written in one transaction
//! that claims the batches' pending rows. A link clicked in several batches of a window costs
//! one row write per aggregate instead of one per batch. Under load the window stays open
//! longer ([`aggregate_every`]), up to `aggregate_max_interval` or [`WINDOW_MAX_BYTES`], so
//! the rows written per click fall as the click rate rises. A node that stops before writing
//! its window leaves the pending rows behind: any node aggregates those from the segments
//! once they are stale, and the claim makes each batch's aggregates apply once. Journaled
//! batches are replayed the same way (raw clicks, then the window); the aggregates their
//! files also carry are for older versions, which apply replays whole.
//!
//! Conservation, exported as metrics: `accepted + journaled at start = persisted + queued +
//! buffered + journaled`.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use linkgate_config::FraudSettings;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::FastMap;
use super::batch::{WindowFold, build_batch_with_id, raw_batch};
use super::deferred::{Deferred, TakeError};
use super::enrich::{EnrichSettings, Enricher, GeoIpError, VisitorSalt, network_of, visitor_hash};
use super::fraud::{Scorer, SharedCounts, reason};
use super::journal::{Journal, JournalEntry, JournalError};
use super::queue::ClickQueue;
use super::trending::TrendingClock;
use crate::domain::{
    BatchOutcome, ClickBatch, ClickEvent, LinkId, ReviewCandidate, ReviewThresholds, StoredClick,
    Timestamp,
};
use crate::store::Store;

/// A store call in flight when a stop comes ends this long before the stop's deadline, for
/// the final flush (see [`Worker::keep_draining`]).
const STOP_RESERVE: Duration = Duration::from_millis(500);

/// How often the pipeline looks at the queue between flushes.
const POLL: Duration = Duration::from_millis(5);
/// Events enriched and scored at a time (about 8 ms of CPU); chunks are joined into
/// batches of up to `batch_max_events`, and the queue is drained between them.
const BUILD_CHUNK: usize = 2_048;
/// While clicks are deferred, processing stops this long when it finds the CPU contended
/// (see [`Worker::collect`]) ...
const CONTENDED_PAUSE: Duration = Duration::from_millis(500);
/// ... and then resumes with a chunk this small (well under a millisecond of work), unless
/// the machine had less than this many cores idle during the pause: then the cores are
/// still busy, and the pause simply goes on (no chunk is processed to find that out).
const PROBE_CHUNK: usize = 256;
const PROBE_MIN_IDLE_CORES: f64 = 0.5;
/// Processing pauses only while clicks arrive at least this fast: below it they cost the
/// cores little (a few percent of one), and what keeps them busy is something else.
const PAUSE_MIN_RATE: u64 = 5_000;
/// The arrival rate is measured over windows this long: a burst on busy cores is deferred
/// within about this much of its start (with a second, a burst at 75,000/s had 54,000
/// clicks processed on the contended cores before the first was deferred).
const ARRIVAL_WINDOW: Duration = Duration::from_millis(200);
/// A deferral that has lasted this long no longer pauses: analytics trail redirects by at
/// most about this much in a burst (or `defer_max_clicks`, whichever comes first).
const DEFER_MAX_AGE: Duration = Duration::from_secs(60);
/// How often retention and housekeeping run.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(600);
/// How often pending aggregates left by stopped nodes are looked for (one indexed read of
/// a table that holds about one row per batch of the last aggregation interval).
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Stale pending batches aggregated per transaction, and transactions per sweep.
const SWEEP_BATCHES: u32 = 100;
const SWEEP_ROUNDS: usize = 10;
/// Bytes of folded sums in the aggregation window that trigger its write before the
/// interval is up ([`WindowFold::bytes`]): the window's memory, and its transaction, grow
/// with them. Clicks on a few hot links add an 8-byte visitor hash each, clicks on
/// distinct links a few hundred bytes of hourly, breakdown, visitor, total and trending
/// slots: 16 MiB is about five seconds of a million links clicked once each at 7,000/s,
/// or about 40 seconds of 10,000 hot links at 30,000/s.
const WINDOW_MAX_BYTES: usize = 16 << 20;
/// Flagged clicks in the aggregation window that trigger its write: the window keeps them
/// whole (about 220 bytes each) for the flagged segments, and under an attack most clicks
/// are flagged.
const WINDOW_MAX_FLAGGED: usize = 100_000;
/// Raw clicks deleted per purge statement.
const PURGE_CHUNK: u32 = 10_000;

/// A store call bounded by `limit`; a timeout is an error like any other (the call is
/// idempotent or harmless to repeat, so a late completion does no damage).
async fn timed<T>(
    limit: Duration,
    call: impl std::future::Future<Output = crate::store::StoreResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// How long one chunk of shared fraud counters may take before the batch is scored with
/// this node's own counts instead.
const SHARED_COUNTS_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the batcher tries to (re)connect its Redis for fraud counters.
const COUNTER_RECONNECT: Duration = Duration::from_secs(5);

/// Most links one batch may put before the review queue (an attack on many links at once
/// is reviewed from the busiest; the rest follow with later batches).
const MAX_REVIEW_CANDIDATES: usize = 100;

/// Links with flagged clicks in `batch`, busiest first, with their burst clicks and the
/// hour of their latest flagged click.
fn review_candidates<'a>(clicks: impl Iterator<Item = &'a StoredClick>) -> Vec<ReviewCandidate> {
    let mut by_link: FastMap<LinkId, (u64, u64, Timestamp)> = FastMap::default();
    for click in clicks.filter(|c| c.fraud_reasons != 0) {
        let entry = by_link.entry(click.link_id).or_insert((0, 0, click.at));
        entry.0 += 1;
        entry.1 += u64::from(click.fraud_reasons & reason::BURST != 0);
        entry.2 = entry.2.max(click.at);
    }
    let mut ranked: Vec<_> = by_link.into_iter().collect();
    ranked.sort_by_key(|(link, (flagged, ..))| (std::cmp::Reverse(*flagged), *link));
    ranked
        .into_iter()
        .take(MAX_REVIEW_CANDIDATES)
        .map(|(link_id, (_, burst_clicks, at))| ReviewCandidate {
            link_id,
            hour: at.hour_start(),
            burst_clicks,
        })
        .collect()
}

/// How long an aggregation window stays open after one whose write took `last_write`:
/// `interval`, or [`AGGREGATE_DUTY`] times the last write if that is longer, at most `max`.
///
/// A window writes about one row per aggregate for every link clicked in it, however often
/// it was clicked. With many links and a short window that is several rows per click, and
/// the batcher's writes crowd the redirects off the CPU. A write that took long means a
/// large window, a slow store or a busy CPU; a longer next window then writes fewer rows
/// per click and keeps writes to about `1 / AGGREGATE_DUTY` of the batcher's time. At low
/// rates writes are quick and analytics trail redirects by `interval`.
pub fn aggregate_every(interval: Duration, max: Duration, last_write: Duration) -> Duration {
    interval
        .max(last_write.saturating_mul(AGGREGATE_DUTY))
        .min(max.max(interval))
}

/// The wait before the next write after `failures` (at least 1) failed ones in a row:
/// `initial`, doubled per further failure, at most `max`.
fn retry_delay(initial: Duration, max: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    initial.saturating_mul(1 << exp).min(max)
}

/// One kind of store write's failures in a row: when it may be tried next
/// ([`retry_delay`] after the last failure, from `initial` up to `max`) and when a failure
/// was last logged.
#[derive(Debug)]
struct Retry {
    initial: Duration,
    max: Duration,
    failures: u32,
    next: Instant,
    last_log: Option<Instant>,
}

impl Retry {
    fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            failures: 0,
            next: Instant::now(),
            last_log: None,
        }
    }

    /// Whether the backoff after the last failure is over.
    fn ready(&self) -> bool {
        Instant::now() >= self.next
    }

    /// Counts a failure; returns the wait before the next try.
    fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let backoff = retry_delay(self.initial, self.max, self.failures);
        self.next = Instant::now() + backoff;
        backoff
    }

    /// Whether a failure should be logged now: at most one every 10 s.
    fn log_due(&mut self) -> bool {
        let due = self
            .last_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if due {
            self.last_log = Some(Instant::now());
        }
        due
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.next = Instant::now();
    }
}

/// Whole milliseconds of `d`, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The window stays open this many times as long as its last aggregate write took.
pub const AGGREGATE_DUTY: u32 = 10;

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub batch_max_events: usize,
    pub flush_interval: Duration,
    /// How often the aggregates of the batches written since are written ...
    pub aggregate_interval: Duration,
    /// ... stretched under load up to this (see [`aggregate_every`]).
    pub aggregate_max_interval: Duration,
    pub journal_dir: PathBuf,
    /// Clicks held in memory awaiting a write before new batches go to the journal.
    pub buffer_max_clicks: usize,
    /// When the batcher falls behind (queued + buffered clicks past half of what the queue
    /// and the buffer hold), new events are deferred to disk and processed in order once
    /// the CPU allows; the proxy gives the batcher CPU of its own only past this many
    /// deferred clicks. 0: never defer.
    pub defer_max_clicks: u64,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Consecutive failed writes after which the store counts as down and batches are
    /// journaled rather than kept in memory.
    pub spill_after_failures: u32,
    /// A write that takes longer counts as failed (it is retried; idempotence makes a late
    /// commit harmless).
    pub write_timeout: Duration,
    pub trending_half_life: Duration,
    /// Raw clicks older than this many days are deleted (0 keeps them).
    pub raw_click_retention_days: u32,
    pub enrich: EnrichSettings,
    pub fraud: FraudSettings,
    /// Redis for fraud counters shared by every node (`None`: per node). Give the
    /// pipeline a tier of its own: its slower batch calls must not trip the breaker the
    /// redirect path's L2 lookups go through.
    pub shared_counters: Option<Arc<crate::cache::RedisTier>>,
}

impl PipelineSettings {
    /// The pipeline part of the configuration.
    pub fn from_config(settings: &linkgate_config::Settings) -> Self {
        let c = &settings.clicks;
        Self {
            batch_max_events: c.batch_max_events,
            flush_interval: Duration::from_millis(c.flush_interval_ms),
            aggregate_interval: Duration::from_millis(c.aggregate_interval_ms),
            aggregate_max_interval: Duration::from_millis(c.aggregate_max_interval_ms),
            journal_dir: c.journal_dir.clone(),
            buffer_max_clicks: c.buffer_max_clicks,
            defer_max_clicks: c.defer_max_clicks,
            retry_initial: Duration::from_millis(c.retry_initial_ms),
            retry_max: Duration::from_millis(c.retry_max_ms),
            spill_after_failures: c.spill_after_failures,
            write_timeout: Duration::from_millis(c.write_timeout_ms),
            trending_half_life: Duration::from_secs(c.trending_half_life_secs),
            raw_click_retention_days: settings.store.raw_click_retention_days,
            enrich: EnrichSettings {
                store_raw_ip: c.store_raw_ip,
                truncate_ip: c.truncate_ip,
                geoip_db: c.geoip_db.clone(),
            },
            fraud: settings.fraud.clone(),
            shared_counters: None,
        }
    }
}

/// Counters of the pipeline, read by metrics.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Clicks the store has confirmed (written now, or found already written on replay).
    pub persisted: AtomicU64,
    /// Persisted clicks whose aggregates this node wrote (a window's, or stale ones).
    pub aggregated: AtomicU64,
    /// Failed writes of aggregates (retried with the next window).
    pub aggregate_errors: AtomicU64,
    /// Of those, clicks that came from the journal.
    pub replayed: AtomicU64,
    /// Clicks taken off the queue and held in memory (enriching or awaiting a write).
    pub buffered: AtomicU64,
    /// Clicks in journal files.
    pub journaled: AtomicU64,
    /// Clicks that were in the journal when the pipeline started.
    pub journaled_at_start: AtomicU64,
    /// Clicks journaled because the buffer was full while a store call held the batcher
    /// (instead of being dropped at the full queue).
    pub overflow_journaled: AtomicU64,
    /// Clicks deferred while the batcher was behind, not yet processed (see `deferred`).
    pub deferred: AtomicU64,
    /// Clicks deferred, ever (a click taken back and deferred again counts twice).
    pub deferred_total: AtomicU64,
    /// Times the processing of deferred clicks paused because the CPU was contended.
    pub contended_pauses: AtomicU64,
    /// Whether deferred clicks are being caught up with (past `defer_max_clicks` or a minute
    /// of deferral): processing does not pause, and the proxy gives the batcher CPU.
    pub catching_up: AtomicBool,
    /// Clicks in journal or deferred files that could not be read (set aside as `.corrupt`).
    pub corrupt: AtomicU64,
    pub batches_written: AtomicU64,
    pub write_errors: AtomicU64,
    pub journal_errors: AtomicU64,
    /// Total time spent in successful batch writes, in microseconds.
    pub write_micros: AtomicU64,
    /// Whether the last write attempt succeeded.
    pub store_up: AtomicBool,
    /// How long the current aggregation window stays open, in milliseconds: how far
    /// analytics may trail redirects (see [`aggregate_every`]).
    pub aggregate_window_millis: AtomicU64,
}

impl PipelineStats {
    /// Clicks in memory, deferred or in the journal.
    pub fn pending(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
            + self.deferred.load(Ordering::Relaxed)
            + self.journaled.load(Ordering::Relaxed)
    }
}

/// The running pipeline.
#[derive(Debug)]
pub struct PipelineHandle {
    stats: Arc<PipelineStats>,
    stop: watch::Sender<Option<Instant>>,
    task: JoinHandle<()>,
}

impl PipelineHandle {
    pub fn stats(&self) -> &Arc<PipelineStats> {
        &self.stats
    }

    /// Drains the queue, writes what the store takes before `deadline` and journals the rest.
    pub async fn shutdown(self, within: Duration) {
        let deadline = Instant::now() + within;
        let _ = self.stop.send(Some(deadline));
        // The task journals everything by the deadline; the margin covers a slow disk.
        if tokio::time::timeout(within + Duration::from_millis(200), self.task)
            .await
            .is_err()
        {
            tracing::error!("click pipeline did not finish its final flush in time");
        }
    }
}

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    GeoIp(#[from] GeoIpError),
}

/// Starts the pipeline on the current tokio runtime.
pub fn spawn(
    queue: Arc<ClickQueue>,
    store: Arc<dyn Store>,
    settings: PipelineSettings,
) -> Result<PipelineHandle, PipelineError> {
    let journal = Journal::open(&settings.journal_dir)?;
    let entries: VecDeque<JournalEntry> = journal.entries()?.into();
    let stats = Arc::new(PipelineStats::default());
    stats
        .aggregate_window_millis
        .store(millis(settings.aggregate_interval), Ordering::Relaxed);
    // A file of deferred events is taken back whole into the memory buffer: half of it.
    let deferred = Deferred::open(
        settings.journal_dir.join("deferred"),
        settings.buffer_max_clicks / 2,
    )?;
    let at_start: u64 = entries.iter().map(|e| e.clicks).sum();
    stats.deferred.store(deferred.len(), Ordering::Relaxed);
    if !deferred.is_empty() {
        tracing::info!(
            clicks = deferred.len(),
            "processing clicks deferred before the last stop"
        );
    }
    stats.journaled.store(at_start, Ordering::Relaxed);
    stats.journaled_at_start.store(at_start, Ordering::Relaxed);
    stats.store_up.store(true, Ordering::Relaxed);
    if at_start > 0 {
        tracing::info!(
            batches = entries.len(),
            clicks = at_start,
            dir = %journal.dir().display(),
            "replaying journaled click batches"
        );
    }
    let enricher = Enricher::new(settings.enrich.clone())?;
    let scorer = Scorer::new(settings.fraud.clone());
    let (stop, stop_rx) = watch::channel(None);
    let worker = Worker {
        clock: TrendingClock::new(
            i64::try_from(settings.trending_half_life.as_millis()).unwrap_or(i64::MAX),
        ),
        queue,
        store,
        enricher,
        scorer,
        journal,
        entries,
        deferred,
        paused_until: None,
        finishing: false,
        finish_by: None,
        deferring_since: None,
        catching_up: false,
        arrivals: ArrivalRate::default(),
        paused_at: None,
        incoming: Vec::new(),
        pending: VecDeque::new(),
        window: WindowFold::default(),
        last_aggregate: Instant::now(),
        aggregate_every: settings.aggregate_interval,
        last_sweep: None,
        salts: FastMap::default(),
        local_salts: HashMap::new(),
        batch_retry: Retry::new(settings.retry_initial, settings.retry_max),
        window_retry: Retry::new(settings.retry_initial, settings.retry_max),
        last_maintenance: None,
        last_counter_connect: None,
        stats: Arc::clone(&stats),
        stopping: stop_rx,
        settings,
    };
    let task = tokio::spawn(worker.run());
    Ok(PipelineHandle { stats, stop, task })
}

/// Clicks offered to the queue per second, measured over windows of at least
/// [`ARRIVAL_WINDOW`].
#[derive(Debug, Default)]
struct ArrivalRate {
    since: Option<(Instant, u64)>,
    per_sec: u64,
}

impl ArrivalRate {
    fn update(&mut self, offered: u64) {
        let now = Instant::now();
        let Some((at, then)) = self.since else {
            self.since = Some((now, offered));
            return;
        };
        let elapsed = now.duration_since(at);
        if elapsed >= ARRIVAL_WINDOW {
            let n = offered.saturating_sub(then);
            self.per_sec = u64::try_from(u128::from(n) * 1_000 / elapsed.as_millis().max(1))
                .unwrap_or(u64::MAX);
            self.since = Some((now, offered));
        }
    }
}

/// The visitor salts of the days of a batch's events (almost always one day).
#[derive(Debug, Default)]
struct Salts(Vec<(Timestamp, VisitorSalt)>);

impl Salts {
    fn new() -> Self {
        Self::default()
    }

    fn get(&self, day: Timestamp) -> Option<&VisitorSalt> {
        self.0.iter().find(|(d, _)| *d == day).map(|(_, salt)| salt)
    }

    /// The salt of an event's day, which every batch holds before it is enriched.
    fn of(&self, event: &ClickEvent) -> &VisitorSalt {
        let salt = self.get(event.at.day_start());
        debug_assert!(salt.is_some(), "an event's day has no salt");
        salt.unwrap_or(&NO_SALT)
    }

    fn push(&mut self, entry: (Timestamp, VisitorSalt)) {
        self.0.push(entry);
    }
}

/// Never used: every event's day has a salt before it is enriched (see [`Salts`]).
const NO_SALT: VisitorSalt = [0; 32];

struct Worker {
    settings: PipelineSettings,
    clock: TrendingClock,
    queue: Arc<ClickQueue>,
    store: Arc<dyn Store>,
    enricher: Enricher,
    /// Fraud rules over this node's recent clicks (see `fraud`).
    scorer: Scorer,
    journal: Journal,
    /// Journal files not yet replayed, oldest first.
    entries: VecDeque<JournalEntry>,
    /// Events deferred while the batcher was behind, older than any in the queue.
    deferred: Deferred,
    /// While clicks are deferred, processing waits until then after finding the CPU
    /// contended.
    paused_until: Option<Instant>,
    /// When the current pause began, and the machine's idle CPU time then (see
    /// [`crate::background::machine_idle_ticks`]).
    paused_at: Option<(Instant, u64)>,
    /// Shutting down: no pause, no deferred file taken back.
    finishing: bool,
    /// Shutting down: every store call ends by then, so what is left can be journaled.
    finish_by: Option<Instant>,
    /// The stop request (its deadline): ends the run loop, and is seen by store calls in
    /// flight.
    stopping: watch::Receiver<Option<Instant>>,
    /// When the current deferral began.
    deferring_since: Option<Instant>,
    /// Past `defer_max_clicks` deferred or [`DEFER_MAX_AGE`] of deferral, processing never
    /// pauses until the deferred clicks are all taken back: the backlog is bounded.
    catching_up: bool,
    /// Clicks offered to the queue per second, over the last [`ARRIVAL_WINDOW`] or so.
    arrivals: ArrivalRate,
    /// Events taken off the queue (or the deferred ones), not yet in a batch.
    incoming: Vec<ClickEvent>,
    /// Batches in memory awaiting a write, oldest first.
    pending: VecDeque<ClickBatch>,
    /// Written batches whose aggregates this node has yet to write, folded.
    window: WindowFold,
    last_aggregate: Instant,
    /// How long the current window stays open (see [`aggregate_every`]).
    aggregate_every: Duration,
    last_sweep: Option<Instant>,
    salts: FastMap<Timestamp, VisitorSalt>,
    /// Days whose shared salt could not be read yet: a local salt and when to ask again.
    local_salts: HashMap<Timestamp, (VisitorSalt, Instant)>,
    /// Batch writes' failures in a row and backoff.
    batch_retry: Retry,
    /// The window writes' own: a full window is otherwise written at once, which after a
    /// failure would be every poll.
    window_retry: Retry,
    last_maintenance: Option<Instant>,
    /// When the batcher last tried to connect its Redis for fraud counters.
    last_counter_connect: Option<Instant>,
    stats: Arc<PipelineStats>,
}

impl Worker {
    async fn run(mut self) {
        let mut last_flush = Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = self.stopping.changed() => break,
            }
            self.drain_queue();
            self.arrivals.update(self.queue.stats().offered);
            if last_flush.elapsed() >= self.settings.flush_interval
                || self.incoming.len() >= self.settings.batch_max_events
                || (self.incoming.is_empty() && !self.deferred.is_empty())
            {
                last_flush = Instant::now();
                self.collect().await;
            }
            if self.batch_retry.ready() {
                self.write_pending(None).await;
            }
            // While processing pauses for busy cores, the window's write waits with it
            // (within the deferral's bounds, or until the window is full): it is the
            // batcher's largest piece of work, and the cores are the redirects'.
            if ((self.last_aggregate.elapsed() >= self.aggregate_every && !self.pausing())
                || self.window_full())
                && self.window_retry.ready()
            {
                self.aggregate_window(None).await;
            }
            if self.last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY)
                && self.batch_retry.failures == 0
            {
                self.last_sweep = Some(Instant::now());
                self.sweep_stale().await;
            }
            if self
                .last_maintenance
                .is_none_or(|t| t.elapsed() >= MAINTENANCE_EVERY)
                && self.entries.is_empty()
                && self.pending.is_empty()
                && self.batch_retry.failures == 0
            {
                self.last_maintenance = Some(Instant::now());
                self.maintain().await;
            }
        }
        let deadline = self
            .stopping
            .borrow()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        self.finish(deadline).await;
    }

    /// Final flush: everything queued becomes a batch; the store gets what it takes before
    /// the deadline, the journal the rest.
    async fn finish(&mut self, deadline: Instant) {
        // What is in memory is processed now, without pausing; deferred files stay for the
        // next start (they come before anything newer then too).
        self.finishing = true;
        self.paused_until = None;
        // Leave a quarter of the time (at least 100 ms) for journaling.
        let reserve = (deadline.saturating_duration_since(Instant::now()) / 4)
            .max(Duration::from_millis(100));
        let until = deadline.checked_sub(reserve).unwrap_or(deadline);
        self.finish_by = Some(until);
        self.collect().await;
        if self.batch_retry.failures < self.settings.spill_after_failures {
            self.write_pending(Some(until)).await;
            // With nothing left to journal the window may use the journal's reserve too.
            // What it cannot write in time stays pending in the store: another node (or
            // this one after a restart) aggregates it from the segments.
            let window_until = if self.pending.is_empty() {
                deadline
            } else {
                until
            };
            self.finish_by = Some(window_until);
            // A failed write (a timeout, a connection the store dropped) is tried again
            // while time is left: what is still pending at the stop waits for the stale
            // sweep, minutes later.
            loop {
                self.aggregate_window(Some(window_until)).await;
                if self.window.is_empty()
                    || Instant::now() + self.settings.retry_initial >= window_until
                {
                    break;
                }
                tokio::time::sleep(self.settings.retry_initial).await;
            }
        }
        let left = self.pending.len();
        self.spill_pending();
        if let Err(error) = self.deferred.write_all() {
            tracing::error!(%error, "cannot write deferred clicks at shutdown");
            self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(
            persisted = self.stats.persisted.load(Ordering::Relaxed),
            journaled_batches = self.entries.len(),
            spilled_now = left,
            deferred = self.deferred.len(),
            "click pipeline stopped"
        );
    }

    /// Drains the queue into batches (or, while clicks are deferred, takes the oldest
    /// deferred ones back and makes them batches).
    ///
    /// The CPU the batcher gets on a busy machine is CPU it takes from redirects: under
    /// EEVDF even `SCHED_IDLE` work slows a saturated request thread (BENCHMARKS.md,
    /// session 16). So each chunk's scheduling is looked at: when the batcher waited for a
    /// CPU longer than it ran, the cores are busy, the events waiting are deferred (if
    /// they are not already) and processing pauses for [`CONTENDED_PAUSE`], the queue
    /// still drained into the deferred files meanwhile (a fraction of the cost of
    /// processing); then a small chunk probes again, unless the machine had less than
    /// [`PROBE_MIN_IDLE_CORES`] idle during the pause (the pause then goes on, nothing
    /// processed). Past `defer_max_clicks` deferred it does not pause (the proxy then gives
    /// it CPU of its own).
    async fn collect(&mut self) {
        self.drain_queue();
        if self.processing_paused() {
            return;
        }
        if self.paused_until.is_some() && self.cores_still_busy() && self.may_pause() {
            self.pause();
            return;
        }
        if self.incoming.is_empty() && !self.finishing {
            self.take_deferred();
        }
        // What is here now; what the drains below bring waits for the next round.
        let mut left = self.incoming.len();
        let mut open: Option<ClickBatch> = None;
        let mut probe = self.paused_until.take().is_some();
        loop {
            // A drain that finds the batcher behind defers the tail of `incoming`.
            left = left.min(self.incoming.len());
            if left == 0 {
                break;
            }
            let take = left.min(if probe { PROBE_CHUNK } else { BUILD_CHUNK });
            probe = false;
            left -= take;
            let events: Vec<ClickEvent> = self.incoming.drain(..take).collect();
            // (Measured on one thread: a task that moved between threads is not judged.)
            let before = (
                std::thread::current().id(),
                crate::background::sched_times(),
            );
            let built = self.build(&events).await;
            let contended = before.0 == std::thread::current().id()
                && before
                    .1
                    .zip(crate::background::sched_times())
                    .is_some_and(|(before, after)| before.contended_until(after));
            open = match open {
                Some(mut batch)
                    if batch.clicks.len() + built.clicks.len()
                        <= self.settings.batch_max_events.max(1) =>
                {
                    batch.clicks.extend(built.clicks);
                    Some(batch)
                }
                Some(full) => {
                    self.hold(full);
                    Some(built)
                }
                None => Some(built),
            };
            // Building takes a while on a busy machine (the batcher runs on idle CPU): the
            // queue is drained after every chunk so it never fills meanwhile.
            self.drain_queue();
            if contended
                && self.settings.defer_max_clicks > 0
                && self.deferred.is_empty()
                && self.arrivals.per_sec >= PAUSE_MIN_RATE
            {
                // Busy cores before the batcher fell behind: what waits is deferred now.
                self.start_deferring(0, "cores busy");
            }
            if contended && self.may_pause() {
                self.pause();
                break;
            }
        }
        if let Some(batch) = open {
            self.hold(batch);
        }
    }

    /// Pauses processing for [`CONTENDED_PAUSE`] (the cores are busy).
    fn pause(&mut self) {
        let now = Instant::now();
        self.paused_until = Some(now + CONTENDED_PAUSE);
        self.paused_at = crate::background::machine_idle_ticks().map(|idle| (now, idle));
        self.stats.contended_pauses.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the machine had less than [`PROBE_MIN_IDLE_CORES`] idle over the pause that
    /// just ended (false when that cannot be read: a chunk then probes the cores).
    fn cores_still_busy(&self) -> bool {
        let Some((at, before)) = self.paused_at else {
            return false;
        };
        crate::background::machine_idle_ticks().is_some_and(|after| {
            crate::background::idle_cores(before, after, at.elapsed()) < PROBE_MIN_IDLE_CORES
        })
    }

    /// Forgets the bounds of a deferral once nothing is deferred any more.
    fn deferral_ended(&mut self) {
        self.catching_up = false;
        self.stats.catching_up.store(false, Ordering::Relaxed);
        self.deferring_since = None;
    }

    /// Whether processing waits (see [`Self::collect`]).
    fn processing_paused(&mut self) -> bool {
        self.paused_until.is_some_and(|t| Instant::now() < t) && self.may_pause()
    }

    /// Whether processing paused for busy cores and has not probed them since (the pause
    /// may be over, its probe not yet made).
    fn pausing(&mut self) -> bool {
        self.paused_until.is_some() && self.may_pause()
    }

    /// Processing may pause while clicks are deferred, within bounds (count and age), and
    /// arrive fast enough for their processing to matter.
    fn may_pause(&mut self) -> bool {
        if self.finishing {
            return false;
        }
        if self.deferred.is_empty() {
            self.deferral_ended();
            return false;
        }
        let since = *self.deferring_since.get_or_insert_with(Instant::now);
        if !self.catching_up
            && (self.stats.deferred.load(Ordering::Relaxed) >= self.settings.defer_max_clicks
                || since.elapsed() >= DEFER_MAX_AGE)
        {
            self.catching_up = true;
            self.stats.catching_up.store(true, Ordering::Relaxed);
            tracing::debug!(
                deferred = self.stats.deferred.load(Ordering::Relaxed),
                "catching up with deferred clicks"
            );
        }
        self.arrivals.update(self.queue.stats().offered);
        !self.catching_up && self.arrivals.per_sec >= PAUSE_MIN_RATE
    }

    /// A built batch awaits its write in memory, or in the journal when the store is down
    /// or the buffer over its bound.
    fn hold(&mut self, batch: ClickBatch) {
        let over =
            self.stats.buffered.load(Ordering::Relaxed) > self.settings.buffer_max_clicks as u64;
        if self.store_down() || over {
            self.spill(batch);
        } else {
            self.pending.push_back(batch);
        }
    }

    /// Moves queued events into memory (counted as buffered), so the lock-free queue keeps
    /// room while a write is in flight. Stops at `buffer_max_clicks` held in memory: beyond
    /// that the queue fills, and while a store call runs its overflow is journaled
    /// ([`Self::journal_overflow`]); a drop is counted only when the queue is full anyway.
    /// While the batcher is behind (see [`Self::behind`]) or clicks are deferred, the queue
    /// is drained into the deferred files instead.
    fn drain_queue(&mut self) {
        if !self.deferred.is_empty() {
            self.defer_queue();
            return;
        }
        let room = self.buffer_room();
        if room > 0 {
            let n = self.queue.drain_into(&mut self.incoming, room);
            self.stats.buffered.fetch_add(n as u64, Ordering::Relaxed);
        }
        if self.behind() {
            // The oldest file's worth stays to be processed next.
            self.start_deferring(self.deferred.file_events(), "behind");
        }
    }

    /// Defers the events in memory past the first `keep`, and the queue's: from now on
    /// every new event is deferred, in order, until the deferred ones are taken back.
    fn start_deferring(&mut self, keep: usize, why: &'static str) {
        let keep = keep.min(self.incoming.len());
        let newer = self.incoming.split_off(keep);
        let n = newer.len() as u64;
        self.stats.buffered.fetch_sub(n, Ordering::Relaxed);
        self.stats.deferred.fetch_add(n, Ordering::Relaxed);
        self.stats.deferred_total.fetch_add(n, Ordering::Relaxed);
        tracing::debug!(
            clicks = n,
            queued = self.queue.len(),
            why,
            "deferring new clicks"
        );
        self.deferring_since.get_or_insert_with(Instant::now);
        self.deferred.unwritten_mut().extend(newer);
        self.defer_queue();
    }

    /// Whether the batcher is behind: what is queued and held in memory has passed half of
    /// what the queue and the buffer hold (when the proxy's governor would otherwise give
    /// it CPU taken from redirects).
    fn behind(&self) -> bool {
        if self.settings.defer_max_clicks == 0 {
            return false;
        }
        let held = usize::try_from(self.stats.buffered.load(Ordering::Relaxed))
            .unwrap_or(usize::MAX)
            .saturating_add(self.queue.len());
        held >= usize::midpoint(self.settings.buffer_max_clicks, self.queue.capacity())
    }

    /// Moves queued events to the deferred files.
    fn defer_queue(&mut self) {
        let room = self.deferred.room();
        let n = self.queue.drain_into(self.deferred.unwritten_mut(), room) as u64;
        self.stats.deferred.fetch_add(n, Ordering::Relaxed);
        self.stats.deferred_total.fetch_add(n, Ordering::Relaxed);
        if let Err(error) = self.deferred.write_full() {
            // They stay in memory, up to a bound; then the queue fills (see `deferred`).
            self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, "cannot write deferred clicks; holding them in memory");
        }
    }

    /// Takes the oldest deferred events back into `incoming` when the buffer has room for
    /// a file of them.
    fn take_deferred(&mut self) {
        while self.buffer_room() >= self.deferred.file_events() {
            match self.deferred.take_oldest() {
                Ok(None) => return,
                Ok(Some(events)) => {
                    let n = events.len() as u64;
                    self.stats.deferred.fetch_sub(n, Ordering::Relaxed);
                    self.stats.buffered.fetch_add(n, Ordering::Relaxed);
                    self.incoming = events;
                    if self.deferred.is_empty() {
                        self.deferral_ended();
                    }
                    return;
                }
                Err(TakeError::Corrupt {
                    path,
                    reason,
                    events,
                }) => {
                    tracing::error!(%path, %reason, "deferred clicks file is damaged; set aside");
                    self.stats.deferred.fetch_sub(events, Ordering::Relaxed);
                    self.stats.corrupt.fetch_add(events, Ordering::Relaxed);
                }
                Err(TakeError::Io(error)) => {
                    self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%error, "cannot read deferred clicks; retried");
                    return;
                }
            }
        }
    }

    /// How many more clicks the in-memory buffer takes.
    fn buffer_room(&self) -> usize {
        let held = self.stats.buffered.load(Ordering::Relaxed);
        let room = (self.settings.buffer_max_clicks as u64).saturating_sub(held);
        usize::try_from(room).unwrap_or(usize::MAX)
    }

    async fn build(&mut self, events: &[ClickEvent]) -> ClickBatch {
        let started = Instant::now();
        let mut salts = Salts::new();
        for event in events {
            let day = event.at.day_start();
            if salts.get(day).is_none() {
                let salt = self.salt(day).await;
                salts.push((day, salt));
            }
        }
        let mut clicks = self.enrich(events, &salts);
        // The address as a keyed hash under the day's salt: what shared counters are keyed
        // by (Redis never sees an address); computed only when the counters are shared.
        let shared = if self.settings.shared_counters.is_some() && self.settings.fraud.enabled {
            let ip_keys: Vec<u64> = events
                .iter()
                .map(|event| visitor_hash(salts.of(event), event.client_ip, ""))
                .collect();
            self.shared_counts(&ip_keys, &clicks).await
        } else {
            None
        };
        self.score(events, &mut clicks, shared);
        self.seed_link_rates().await;
        let batch = raw_batch(clicks, &self.clock);
        tracing::debug!(
            clicks = batch.clicks.len(),
            micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "click batch built"
        );
        batch
    }

    /// The events as clicks, each under its day's visitor salt (`salts` has every day of
    /// `events`).
    fn enrich(&mut self, events: &[ClickEvent], salts: &Salts) -> Vec<StoredClick> {
        let mut clicks = Vec::with_capacity(events.len());
        for event in events {
            crate::background::give_way();
            clicks.push(self.enricher.enrich(event, salts.of(event)));
        }
        clicks
    }

    /// Fraud reasons for each click, with the counts shared through Redis when given.
    fn score(
        &mut self,
        events: &[ClickEvent],
        clicks: &mut [StoredClick],
        mut shared: Option<SharedCounts>,
    ) {
        let mut last_network: Option<(std::net::IpAddr, String)> = None;
        for (i, (event, click)) in events.iter().zip(clicks.iter_mut()).enumerate() {
            crate::background::give_way();
            let shared = shared.as_mut().map(|counts| (counts, i));
            click.fraud_reasons = self.scorer.score_with(event, click, shared);
            if click.fraud_reasons != 0 && click.ip.is_none() {
                // Evidence for review: the network (/24, /48) of a flagged click is kept
                // even when raw addresses are not; a normal visitor's address never is.
                let network = match &last_network {
                    Some((ip, network)) if *ip == event.client_ip => network.clone(),
                    _ => network_of(event.client_ip),
                };
                last_network = Some((event.client_ip, network.clone()));
                click.ip = Some(network);
            }
        }
    }

    /// The salt [`Self::salt`] last settled on for `day`, shared or local.
    fn cached_salt(&self, day: Timestamp) -> Option<VisitorSalt> {
        self.salts
            .get(&day)
            .or_else(|| self.local_salts.get(&day).map(|(salt, _)| salt))
            .copied()
    }

    /// How long a read the batcher needs before it can go on (a salt, a link's history)
    /// may take: the write timeout, at most a second.
    fn read_limit(&self) -> Duration {
        self.settings.write_timeout.min(Duration::from_secs(1))
    }

    /// Gives links that just became busy on this node without a rate of their own (after a
    /// restart, say) their recent rate from the store, so a popular link is judged against
    /// its history and not flagged as a burst the way a new link would be. The clicks of
    /// the previous and the current hour count. Without an answer (store down or slow) they
    /// stay judged as new links.
    async fn seed_link_rates(&mut self) {
        let wanted = self.scorer.take_unseasoned();
        let Some(newest) = wanted.iter().map(|&(_, at)| at).max() else {
            return;
        };
        if self.store_down() {
            return;
        }
        let (from, minutes) = Scorer::seed_history(newest);
        let links: Vec<LinkId> = wanted.into_iter().map(|(link, _)| link).collect();
        let store = Arc::clone(&self.store);
        let limit = self.read_limit();
        match self
            .keep_draining(limit, store.recent_clicks(&links, from))
            .await
        {
            Ok(found) => {
                for (link, clicks) in found {
                    self.scorer.seed_rate(link, clicks, minutes);
                }
            }
            Err(error) => {
                tracing::debug!(
                    error,
                    "cannot read links' recent clicks; judged as new links"
                );
            }
        }
    }

    /// The visitor salt of a day: from the store (shared by every node), fetched once. When
    /// the store cannot be asked (an outage across midnight), a random salt local to this
    /// process is used for that day, so no click waits or is lost; unique counts for that
    /// day may then count a visitor once per node.
    async fn salt(&mut self, day: Timestamp) -> VisitorSalt {
        if let Some(salt) = self.salts.get(&day) {
            return *salt;
        }
        // A day without the shared salt uses a local one until the store answers; it is
        // asked again at most every 10 s, so an outage costs no click a wait.
        if let Some((salt, retry_at)) = self.local_salts.get(&day)
            && (self.store_down() || Instant::now() < *retry_at)
        {
            return *salt;
        }
        let shared = if self.store_down() {
            None
        } else {
            let store = Arc::clone(&self.store);
            let limit = self.read_limit();
            self.keep_draining(limit, store.visitor_salt(day))
                .await
                .inspect_err(|error| {
                    tracing::warn!(error, "cannot read the visitor salt; using a local one");
                })
                .ok()
        };
        let retry_at = Instant::now() + Duration::from_secs(10);
        let Some(salt) = shared else {
            let salt = self.local_salts.get(&day).map_or_else(
                || {
                    use rand::Rng as _;
                    let mut local = [0u8; 32];
                    rand::rng().fill_bytes(&mut local);
                    local
                },
                |(salt, _)| *salt,
            );
            self.local_salts.insert(day, (salt, retry_at));
            return salt;
        };
        self.local_salts.remove(&day);
        if self.salts.len() > 4 {
            let oldest = self.salts.keys().min().copied();
            if let Some(oldest) = oldest {
                self.salts.remove(&oldest);
            }
        }
        self.salts.insert(day, salt);
        salt
    }

    fn store_down(&self) -> bool {
        self.batch_retry.failures >= self.settings.spill_after_failures
    }

    /// Writes journaled batches, then buffered ones, oldest first, until one fails or the
    /// deadline (when given) passes.
    async fn write_pending(&mut self, deadline: Option<Instant>) {
        let out_of_time = || deadline.is_some_and(|d| Instant::now() >= d);
        while let Some(entry) = self.entries.front().cloned() {
            if out_of_time() {
                return;
            }
            let batch = match self.journal.read(&entry) {
                Ok(batch) => batch,
                Err(JournalError::Corrupt { path, reason }) => {
                    tracing::error!(%path, %reason, "journal file is not a batch; set aside");
                    let _ = self.journal.quarantine(&entry);
                    self.entries.pop_front();
                    self.stats
                        .journaled
                        .fetch_sub(entry.clicks, Ordering::Relaxed);
                    self.stats
                        .corrupt
                        .fetch_add(entry.clicks, Ordering::Relaxed);
                    continue;
                }
                Err(error) => {
                    self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
                    self.failed(&error.to_string());
                    return;
                }
            };
            if !self.write(&batch, deadline).await {
                return;
            }
            if let Err(error) = self.journal.remove(&entry) {
                tracing::error!(%error, "cannot remove a replayed journal file");
                self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
            }
            self.entries.pop_front();
            self.stats
                .journaled
                .fetch_sub(entry.clicks, Ordering::Relaxed);
            self.stats
                .replayed
                .fetch_add(entry.clicks, Ordering::Relaxed);
            // Like a buffered batch: its aggregates go with the window's (the ones the
            // journal file carries are for older versions, which write replays whole).
            self.fold_into_window(batch.batch_id, batch.clicks, deadline)
                .await;
        }
        while !out_of_time() {
            let Some(batch) = self.pending.pop_front() else {
                return;
            };
            if !self.write(&batch, deadline).await {
                // Back to the front (or, when the store just went down, into the journal
                // with the rest: `failed` spilled the others already).
                if self.store_down() {
                    self.spill(batch);
                } else {
                    self.pending.push_front(batch);
                }
                return;
            }
            self.stats
                .buffered
                .fetch_sub(batch.clicks.len() as u64, Ordering::Relaxed);
            self.fold_into_window(batch.batch_id, batch.clicks, deadline)
                .await;
        }
    }

    /// Whether the window holds as much as it may (then its aggregates are written now,
    /// whatever its age).
    fn window_full(&self) -> bool {
        self.window.bytes() >= WINDOW_MAX_BYTES || self.window.flagged() >= WINDOW_MAX_FLAGGED
    }

    /// Folds a written batch's clicks into the window, whose aggregates are written at once
    /// when that fills it: when the batcher catches up, several batches of up to
    /// `batch_max_events` clicks of distinct links are written in one go, and folding them
    /// all before the bound was looked at grew the window to three times the bound.
    async fn fold_into_window(
        &mut self,
        batch_id: u128,
        clicks: Vec<StoredClick>,
        deadline: Option<Instant>,
    ) {
        self.window.add(batch_id, clicks, &self.clock);
        if self.window_full() && self.window_retry.ready() {
            self.aggregate_window(deadline).await;
        }
    }

    /// One write attempt of a batch's raw clicks (its aggregates pending, for the window);
    /// true when the store has the batch.
    async fn write(&mut self, batch: &ClickBatch, deadline: Option<Instant>) -> bool {
        let started = Instant::now();
        let store = Arc::clone(&self.store);
        let result = self
            .store_call(deadline, store.write_click_segments(batch))
            .await;
        match result {
            Ok(outcome) => {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                tracing::debug!(clicks = batch.clicks.len(), micros, "click batch written");
                self.stats.write_micros.fetch_add(micros, Ordering::Relaxed);
                self.stats.batches_written.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .persisted
                    .fetch_add(batch.clicks.len() as u64, Ordering::Relaxed);
                if outcome == BatchOutcome::AlreadyApplied {
                    tracing::debug!("click batch was already applied; skipped");
                }
                if self.batch_retry.failures > 0 {
                    tracing::info!(
                        after_failures = self.batch_retry.failures,
                        "click store is writable again"
                    );
                }
                self.batch_retry.succeeded();
                self.stats.store_up.store(true, Ordering::Relaxed);
                true
            }
            Err(error) => {
                self.failed(&error);
                false
            }
        }
    }

    /// The batch's fraud counts shared through Redis, when configured and reachable; `None`
    /// scores with this node's own windows.
    async fn shared_counts(
        &mut self,
        ip_keys: &[u64],
        clicks: &[crate::domain::StoredClick],
    ) -> Option<SharedCounts> {
        let redis = Arc::clone(self.settings.shared_counters.as_ref()?);
        if !self.settings.fraud.enabled || clicks.is_empty() {
            return None;
        }
        if !redis.is_connected() {
            let due = self
                .last_counter_connect
                .is_none_or(|at| at.elapsed() >= COUNTER_RECONNECT);
            if !due {
                return None;
            }
            self.last_counter_connect = Some(Instant::now());
            if let Err(error) = redis.connect().await {
                tracing::debug!(%error, "fraud counters: redis not reachable; counting per node");
                return None;
            }
        }
        match self
            .scorer
            .shared_counts(&redis, ip_keys, clicks, SHARED_COUNTS_TIMEOUT)
            .await
        {
            Ok(counts) => Some(counts),
            Err(error) => {
                tracing::debug!(%error, "fraud counters: redis unavailable; counting per node");
                None
            }
        }
    }

    /// Puts links whose traffic in this batch's hour crossed a review threshold into the
    /// fraud review queue. Best effort: a failure here is logged, never retried (the next
    /// flagged batch of the link asks again).
    async fn consider_reviews<'a>(&mut self, clicks: impl Iterator<Item = &'a StoredClick>) {
        let candidates = review_candidates(clicks);
        if candidates.is_empty() || !self.settings.fraud.enabled {
            return;
        }
        let thresholds = ReviewThresholds {
            min_clicks: u64::from(self.settings.fraud.review_min_clicks),
            suspicious_percent: u64::from(self.settings.fraud.review_suspicious_percent),
        };
        let store = Arc::clone(&self.store);
        let call = store.open_reviews(&candidates, thresholds, Timestamp::now());
        match self.store_call(None, call).await {
            Ok(0) => {}
            Ok(opened) => tracing::info!(opened, "links entered the fraud review queue"),
            Err(error) => tracing::warn!(%error, "could not update the fraud review queue"),
        }
    }

    fn failed(&mut self, error: &str) {
        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        self.stats.store_up.store(false, Ordering::Relaxed);
        let backoff = self.batch_retry.failed();
        if self.batch_retry.log_due() {
            tracing::warn!(
                error,
                failures = self.batch_retry.failures,
                retry_in_ms = millis(backoff),
                "click batch write failed"
            );
        }
        if self.store_down() {
            self.spill_pending();
        }
    }

    /// Writes the aggregates of the window's batches (those no other node took meanwhile).
    /// On failure the window is kept and retried with the next interval; past
    /// `buffer_max_clicks` it is let go (its batches stay pending in the store, where the
    /// stale sweep of any node aggregates them).
    async fn aggregate_window(&mut self, deadline: Option<Instant>) {
        self.last_aggregate = Instant::now();
        if self.window.is_empty() {
            return;
        }
        let clock = self.clock;
        let window = self.window.take_pending(&clock);
        let store = Arc::clone(&self.store);
        let started = Instant::now();
        let result = self
            .store_call(deadline, store.apply_aggregates(&window, &clock))
            .await;
        match result {
            Ok(clicks) => {
                self.window_retry.succeeded();
                self.aggregate_every = aggregate_every(
                    self.settings.aggregate_interval,
                    self.settings.aggregate_max_interval,
                    started.elapsed(),
                );
                self.stats
                    .aggregate_window_millis
                    .store(millis(self.aggregate_every), Ordering::Relaxed);
                self.stats.aggregated.fetch_add(clicks, Ordering::Relaxed);
                self.consider_reviews(window.flagged.iter()).await;
                self.window = WindowFold::default();
            }
            Err(error) => {
                self.stats.aggregate_errors.fetch_add(1, Ordering::Relaxed);
                let backoff = self.window_retry.failed();
                let clicks = self.window.clicks();
                if clicks > self.settings.buffer_max_clicks as u64 {
                    tracing::warn!(
                        error,
                        clicks,
                        "cannot write click aggregates; left to the stale sweep"
                    );
                    self.window = WindowFold::default();
                } else {
                    // The window stays and goes on folding: the next write claims what is
                    // still pending of it.
                    if self.window_retry.log_due() {
                        tracing::warn!(
                            error,
                            failures = self.window_retry.failures,
                            retry_in_ms = millis(backoff),
                            "cannot write click aggregates; retried"
                        );
                    }
                    self.window.put_back(window, &clock);
                }
            }
        }
    }

    /// A store call bounded by the write timeout (and `deadline`), the queue kept drained
    /// while it runs: under load the next batch simply grows instead of the queue filling.
    async fn store_call<T>(
        &mut self,
        deadline: Option<Instant>,
        call: impl std::future::Future<Output = crate::store::StoreResult<T>>,
    ) -> Result<T, String> {
        let limit = deadline.map_or(self.settings.write_timeout, |d| {
            d.saturating_duration_since(Instant::now())
                .min(self.settings.write_timeout)
        });
        self.keep_draining(limit, call).await
    }

    /// A store call bounded by `limit`, the queue kept drained while it runs (and its
    /// overflow journaled: [`Self::journal_overflow`]). Every store call of the batcher
    /// goes through here, so none of them lets the queue fill.
    async fn keep_draining<T>(
        &mut self,
        limit: Duration,
        call: impl std::future::Future<Output = crate::store::StoreResult<T>>,
    ) -> Result<T, String> {
        // While shutting down no call outlasts the time left for the final flush ...
        let limit = self.finish_by.map_or(limit, |by| {
            limit.min(by.saturating_duration_since(Instant::now()))
        });
        let call = timed(limit, call);
        tokio::pin!(call);
        loop {
            tokio::select! {
                result = &mut call => break result,
                () = tokio::time::sleep(POLL) => {
                    self.drain_queue();
                    self.journal_overflow();
                    // ... and a call in flight when the stop came ends [`STOP_RESERVE`]
                    // before its deadline (a hung store would otherwise hold the batcher
                    // past it, and what it holds in memory would be lost); `finish` then
                    // retries within the time left and journals the rest.
                    let stop_by = self.stopping.borrow().and_then(|d| d.checked_sub(STOP_RESERVE));
                    if !self.finishing && stop_by.is_some_and(|by| Instant::now() >= by) {
                        break Err("the pipeline is stopping".to_owned());
                    }
                }
            }
        }
    }

    /// While a store call holds the batcher with the buffer full, the queue would fill and
    /// drop clicks: once it is half full (or holds a batch), its events are made a batch
    /// here and journaled, to be replayed once the store catches up. What needs an
    /// answer from elsewhere is left out: fraud counts are this node's own (as when Redis is
    /// down), a new link's history is read with a later batch, and events of a day whose
    /// salt is not at hand yet (a day that just began) wait in memory instead.
    fn journal_overflow(&mut self) {
        if !self.deferred.is_empty() {
            // Newer events than the deferred ones: they wait in the queue, in order.
            return;
        }
        let threshold = self
            .settings
            .batch_max_events
            .min(self.queue.capacity() / 2)
            .max(1);
        while self.buffer_room() == 0 && self.queue.len() >= threshold {
            let mut events = Vec::with_capacity(threshold);
            let n = self
                .queue
                .drain_into(&mut events, self.settings.batch_max_events.max(1));
            self.stats.buffered.fetch_add(n as u64, Ordering::Relaxed);
            let mut salts = Salts::new();
            let (ready, later): (Vec<ClickEvent>, Vec<ClickEvent>) =
                events.into_iter().partition(|event| {
                    let day = event.at.day_start();
                    if salts.get(day).is_some() {
                        return true;
                    }
                    let Some(salt) = self.cached_salt(day) else {
                        return false;
                    };
                    salts.push((day, salt));
                    true
                });
            self.incoming.extend(later);
            if ready.is_empty() {
                return;
            }
            let mut clicks = self.enrich(&ready, &salts);
            self.score(&ready, &mut clicks, None);
            let batch = raw_batch(clicks, &self.clock);
            tracing::debug!(
                clicks = batch.clicks.len(),
                "buffer full during a store call: batch journaled"
            );
            self.stats
                .overflow_journaled
                .fetch_add(batch.clicks.len() as u64, Ordering::Relaxed);
            if !self.spill(batch) {
                return;
            }
        }
    }

    /// Aggregates batches whose writer stopped before writing their aggregates.
    async fn sweep_stale(&mut self) {
        // Older than any live node's window can be: it writes every interval, each write
        // bounded by the write timeout.
        let age = self.settings.aggregate_max_interval * 3 + self.settings.write_timeout * 2;
        let before =
            Timestamp::now().plus_millis(-i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        let (store, clock) = (Arc::clone(&self.store), self.clock);
        for _ in 0..SWEEP_ROUNDS {
            let call = store.aggregate_stale(before, SWEEP_BATCHES, &clock);
            match self.store_call(None, call).await {
                Ok(0) => return,
                Ok(clicks) => {
                    tracing::info!(clicks, "aggregated clicks a stopped node left pending");
                    self.stats.aggregated.fetch_add(clicks, Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::debug!(error, "stale aggregates not swept; retried next round");
                    return;
                }
            }
        }
    }

    /// Moves every buffered batch to the journal.
    fn spill_pending(&mut self) {
        while let Some(batch) = self.pending.pop_front() {
            if !self.spill(batch) {
                return;
            }
        }
    }

    /// Journals a batch with its aggregates; on a disk error keeps it in memory instead
    /// (nothing is dropped).
    fn spill(&mut self, batch: ClickBatch) -> bool {
        let batch = build_batch_with_id(batch.batch_id, batch.clicks, &self.clock);
        match self.journal.append(&batch) {
            Ok(entry) => {
                let n = entry.clicks;
                self.entries.push_back(entry);
                self.stats.journaled.fetch_add(n, Ordering::Relaxed);
                self.stats.buffered.fetch_sub(n, Ordering::Relaxed);
                true
            }
            Err(error) => {
                self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, "cannot journal a click batch; keeping it in memory");
                self.pending.push_front(batch);
                false
            }
        }
    }

    /// Retention and housekeeping: old raw clicks, visitor salts and trending rows.
    /// Every step runs under the write timeout and the round stops at the first failure:
    /// housekeeping must never hold up click writes (the queue keeps filling meanwhile).
    async fn maintain(&mut self) {
        if let Err(error) = self.housekeeping().await {
            tracing::debug!(
                error,
                "click housekeeping stopped early; retried next round"
            );
        }
    }

    async fn housekeeping(&mut self) -> Result<(), String> {
        let now = Timestamp::now();
        let store = Arc::clone(&self.store);
        let limit = self.settings.write_timeout;
        // Tomorrow's salt now, so an outage across midnight still has the shared one.
        let tomorrow = now.day_start().plus_millis(Timestamp::MILLIS_PER_DAY);
        let salt = self
            .keep_draining(limit, store.visitor_salt(tomorrow))
            .await?;
        self.salts.insert(tomorrow, salt);
        let salts_before = now.day_start().plus_millis(-2 * Timestamp::MILLIS_PER_DAY);
        self.keep_draining(limit, store.purge_visitor_salts(salts_before))
            .await?;
        let stale = self.clock.epoch_of(now).plus_millis(-self.clock.era_ms());
        self.keep_draining(limit, store.purge_trending(stale))
            .await?;
        if self.settings.raw_click_retention_days > 0 {
            let before = now.plus_millis(
                -i64::from(self.settings.raw_click_retention_days) * Timestamp::MILLIS_PER_DAY,
            );
            // Bounded per round so housekeeping never holds up batch writes for long.
            for _ in 0..10 {
                if self
                    .keep_draining(limit, store.purge_raw_clicks(before, PURGE_CHUNK))
                    .await?
                    < u64::from(PURGE_CHUNK)
                {
                    break;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_by_doubling_up_to_the_maximum() {
        let ms = Duration::from_millis;
        let delays: Vec<_> = (1..=7)
            .map(|failures| retry_delay(ms(100), ms(5_000), failures))
            .collect();
        assert_eq!(
            delays,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1_600),
                ms(3_200),
                ms(5_000)
            ]
        );
        assert_eq!(retry_delay(ms(100), ms(5_000), u32::MAX), ms(5_000));
    }

    #[test]
    fn the_aggregation_window_stretches_with_slow_writes_up_to_its_cap() {
        let ms = Duration::from_millis;
        let (interval, max) = (ms(1000), ms(5000));
        // Quick writes: the configured interval.
        assert_eq!(aggregate_every(interval, max, ms(3)), interval);
        assert_eq!(aggregate_every(interval, max, ms(100)), interval);
        // Slower: ten times the write, so writes take about a tenth of the time.
        assert_eq!(aggregate_every(interval, max, ms(400)), ms(4000));
        // Never past the cap, and never below the interval even if the cap is.
        assert_eq!(aggregate_every(interval, max, ms(600)), max);
        assert_eq!(aggregate_every(interval, ms(10), ms(3000)), interval);
        assert_eq!(aggregate_every(interval, max, Duration::MAX), max);
    }
}
