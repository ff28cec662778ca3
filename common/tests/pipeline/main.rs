//! The click pipeline end to end, against real databases: events pushed onto the queue come
//! out as raw clicks and aggregates that agree with each other, exactly once, across store
//! outages. Each test runs on SQLite and on MariaDB (`sqlite::*`, `mysql::*`).

#![allow(
    unreachable_pub,
    reason = "suite functions are pub for the instantiating macro"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use linkgate_common::clicks::deferred::Deferred;
use linkgate_common::clicks::pipeline::{self, PipelineSettings, PipelineStats};
use linkgate_common::clicks::sketch::EXACT_LIMIT;
use linkgate_common::clicks::{ClickQueue, TrendingClock};
use linkgate_common::domain::{
    ClickEvent, ClickId, ClickMethod, Dimension, LinkId, Role, StoredClick, Timestamp,
};
use linkgate_common::store::Store;
use linkgate_common::testing::{files_under, new_link, user};

const HOUR: i64 = Timestamp::MILLIS_PER_HOUR;

/// Each test on SQLite and on MariaDB, in modules `$sqlite` and `$mysql`, on a runtime of
/// `$workers` worker threads.
macro_rules! both {
    ($sqlite:ident, $mysql:ident, $workers:tt; $($name:ident),* $(,)?) => {
        mod $sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
                async fn $name() {
                    let db = linkgate_common::testing::TestDb::sqlite().await;
                    crate::$name(&db.store, &db.url()).await;
                    db.cleanup().await;
                }
            )*
        }
        mod $mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
                async fn $name() {
                    let db = linkgate_common::testing::TestDb::mysql().await;
                    crate::$name(&db.store, &db.url()).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

both!(
    sqlite,
    mysql,
    2;
    aggregates_equal_the_raw_clicks_they_came_from,
    an_unavailable_store_loses_nothing_and_duplicates_nothing,
    a_store_down_from_the_start_delays_no_click,
    a_slow_store_write_loses_no_click_to_a_full_queue,
    a_batcher_behind_defers_clicks_to_disk_and_loses_none,
    clicks_deferred_before_a_stop_are_processed_after_the_restart,
    deferred_clicks_wait_while_every_core_is_busy,
    a_stop_while_every_core_is_busy_loses_no_click,
    a_stop_while_the_store_hangs_loses_no_click,
    flagged_traffic_puts_its_link_in_the_review_queue,
    a_popular_link_is_judged_by_its_history_after_a_restart,
    a_full_window_the_store_refuses_is_retried_with_backoff,
);

// The burst test's batcher runs on one worker thread, as the proxy's does: its judgement
// of busy cores ignores a chunk during which its task moved to another thread, which on
// two workers happens often on a loaded machine.
both!(
    sqlite_one_worker,
    mysql_one_worker,
    1;
    a_burst_on_busy_cores_is_deferred_at_once_and_waits_whole
);

const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
];
const BOTS: &[&str] = &[
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
    "python-requests/2.32.3",
];
const REFERRERS: &[Option<&str>] = &[
    None,
    Some("https://www.google.com/search?q=x"),
    Some("https://news.ycombinator.com/item?id=1"),
    Some("https://t.co/abc"),
    Some("not a url"),
];

/// A small deterministic generator (PCG-style LCG).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 17
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

/// `n` events over `links`: Zipf-ish popularity, ~2,000 visitors (IP + UA), 10% bots,
/// spread over the last six hours.
fn events(links: &[LinkId], n: usize, seed: u64) -> Vec<ClickEvent> {
    let mut rng = Rng(seed);
    let now = Timestamp::now().as_millis();
    (0..n)
        .map(|_| {
            let r = rng.below(links.len() * (links.len() + 1) / 2);
            let mut k = 0;
            let mut acc = links.len();
            while r >= acc && k + 1 < links.len() {
                k += 1;
                acc += links.len() - k;
            }
            let visitor = rng.below(2_000);
            let bot = rng.below(10) == 0;
            let ua = if bot {
                BOTS[visitor % BOTS.len()]
            } else {
                BROWSERS[visitor % BROWSERS.len()]
            };
            let at = Timestamp::from_millis(now - i64::try_from(rng.below(6 * 3_600_000)).unwrap());
            let octets = u32::try_from(visitor).unwrap().to_be_bytes();
            ClickEvent {
                click_id: ClickId::at(at),
                at,
                link_id: links[k],
                client_ip: IpAddr::V4(Ipv4Addr::new(198, 51, octets[2], octets[3])),
                user_agent: Some(ua.into()),
                referrer: REFERRERS[rng.below(REFERRERS.len())].map(Into::into),
                has_accept: true,
                method: ClickMethod::Get,
                country: (rng.below(3) == 0).then_some(*b"SE"),
                prefetch: false,
            }
        })
        .collect()
}

/// A pipeline with [`settings`] and a queue of 10,000.
fn start(store: &Arc<dyn Store>, journal: &Path) -> (Arc<ClickQueue>, pipeline::PipelineHandle) {
    start_with(store, settings(journal), 10_000)
}

/// A pipeline with `config` on a queue of `capacity`.
fn start_with(
    store: &Arc<dyn Store>,
    config: PipelineSettings,
    capacity: usize,
) -> (Arc<ClickQueue>, pipeline::PipelineHandle) {
    let queue = Arc::new(ClickQueue::new(capacity));
    let handle = pipeline::spawn(Arc::clone(&queue), Arc::clone(store), config).unwrap();
    (queue, handle)
}

/// [`settings`] with a memory buffer of 2,000 and batches of 1,000 (to go with a queue of
/// 4,000), and a write timeout longer than a test's stall: a write is slow, not failed.
fn small_buffers(journal: &Path) -> PipelineSettings {
    let mut s = settings(journal);
    s.buffer_max_clicks = 2_000;
    s.batch_max_events = 1_000;
    s.write_timeout = Duration::from_secs(8);
    s
}

/// The defaults, with a quick flush, a short retry and the test GeoIP database.
fn settings(journal: &Path) -> PipelineSettings {
    let mut s = PipelineSettings::from_config(&linkgate_config::Settings::default());
    s.flush_interval = Duration::from_millis(50);
    journal.clone_into(&mut s.journal_dir);
    s.batch_max_events = 5_000;
    s.buffer_max_clicks = 20_000;
    s.retry_initial = Duration::from_millis(20);
    s.retry_max = Duration::from_millis(200);
    s.write_timeout = Duration::from_secs(2);
    s.enrich.geoip_db =
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/test-country.mmdb"));
    s
}

async fn links(store: &dyn Store, n: usize) -> Vec<LinkId> {
    let owner = user(store, "clicks@example.com", Role::User).await;
    let mut out = Vec::new();
    for i in 0..n {
        let link = store
            .create_link(&new_link(
                &owner,
                &format!("pipe{i}"),
                "https://example.com/",
            ))
            .await
            .unwrap();
        out.push(link.id);
    }
    out
}

/// The link's raw clicks, checked to be counted once by its hourly counters and its total.
async fn counted_once(store: &dyn Store, link: LinkId) -> u64 {
    let (raw, hourly, counter) = linkgate_common::testing::click_counts(store, link).await;
    assert_eq!(
        (hourly, counter),
        (raw, raw),
        "{link:?}: every aggregate counted once"
    );
    raw
}

async fn wait_persisted(stats: &PipelineStats, want: u64, within: Duration) {
    let start = Instant::now();
    while stats.persisted.load(Ordering::Relaxed) < want {
        assert!(
            start.elapsed() < within,
            "only {} of {want} clicks persisted after {within:?} ({} buffered, {} journaled)",
            stats.persisted.load(Ordering::Relaxed),
            stats.buffered.load(Ordering::Relaxed),
            stats.journaled.load(Ordering::Relaxed),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every click of a listing read page by page (`page(after)`) until a page comes back empty.
async fn all_pages(
    mut page: impl AsyncFnMut(Option<ClickId>) -> Vec<StoredClick>,
) -> Vec<StoredClick> {
    let mut out: Vec<StoredClick> = Vec::new();
    loop {
        let next = page(out.last().map(|c| c.click_id)).await;
        if next.is_empty() {
            return out;
        }
        out.extend(next);
    }
}

async fn all_raw_clicks(store: &dyn Store, link: LinkId) -> Vec<StoredClick> {
    all_pages(async |after| store.raw_clicks(link, after, 10_000).await.unwrap()).await
}

/// Every flagged click of `link` in its flagged segments, oldest first.
async fn all_flagged_clicks(store: &dyn Store, link: LinkId) -> Vec<StoredClick> {
    all_pages(async |after| store.flagged_clicks(link, after, 1_000).await.unwrap()).await
}

/// 100,000 generated clicks through the real pipeline: for every link, the hourly
/// aggregates, every breakdown, the unique visitors, the click total and the trending score
/// equal what the raw click rows say.
pub async fn aggregates_equal_the_raw_clicks_they_came_from(store: &Arc<dyn Store>, _url: &str) {
    let links = links(&**store, 8).await;
    let journal = tempfile::tempdir().unwrap();
    let queue = Arc::new(ClickQueue::new(200_000));
    let mut config = settings(journal.path());
    config.trending_half_life = Duration::from_secs(1800);
    let handle = pipeline::spawn(Arc::clone(&queue), Arc::clone(store), config).unwrap();
    let stream = events(&links, 100_000, 7);
    let mut sent: BTreeMap<LinkId, u64> = BTreeMap::new();
    for e in stream {
        *sent.entry(e.link_id).or_default() += 1;
        assert!(queue.push(e));
    }
    wait_persisted(handle.stats(), 100_000, Duration::from_secs(180)).await;
    let stats = Arc::clone(handle.stats());
    handle.shutdown(Duration::from_secs(2)).await;
    assert_eq!(stats.journaled.load(Ordering::Relaxed), 0);
    assert_eq!(stats.buffered.load(Ordering::Relaxed), 0);

    let clock = TrendingClock::new(1_800_000);
    let now = Timestamp::now();
    let from = Timestamp::from_millis(now.as_millis() - 8 * HOUR);
    let to = now.plus_millis(HOUR);
    let mut human_clicks: BTreeMap<LinkId, Vec<Timestamp>> = BTreeMap::new();
    for &link in &links {
        let raw = all_raw_clicks(&**store, link).await;
        assert_eq!(raw.len() as u64, sent[&link], "raw clicks of {link:?}");
        assert!(
            raw.iter().all(|c| c.ip.is_none()
                || (c.fraud_reasons != 0 && c.ip.as_deref().is_some_and(|n| n.ends_with("/24")))),
            "raw IPs are off by default; flagged clicks keep only their network"
        );
        assert_eq!(
            store.link_by_id(link).await.unwrap().unwrap().clicks,
            sent[&link]
        );

        // Hourly counters.
        let mut hours: BTreeMap<i64, [u64; 4]> = BTreeMap::new();
        for c in &raw {
            let h = hours.entry(c.at.hour_start().as_millis()).or_default();
            let human = !c.is_bot && c.fraud_reasons == 0;
            h[0] += 1;
            h[1] += u64::from(human);
            h[2] += u64::from(c.is_bot);
            h[3] += u64::from(c.fraud_reasons != 0);
        }
        let stored: BTreeMap<i64, [u64; 4]> = store
            .hourly_counts(link, from, to)
            .await
            .unwrap()
            .into_iter()
            .map(|h| (h.hour.as_millis(), [h.total, h.human, h.bot, h.suspicious]))
            .collect();
        assert_eq!(stored, hours, "hourly counters of {link:?}");

        // Breakdowns.
        for dimension in Dimension::ALL {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for c in &raw {
                let value =
                    linkgate_common::clicks::batch::breakdown_value(c, dimension).to_owned();
                *counts.entry(value).or_default() += 1;
            }
            let stored: BTreeMap<String, u64> = store
                .top_breakdown(link, dimension, from, to, 1000)
                .await
                .unwrap()
                .into_iter()
                .collect();
            assert_eq!(stored, counts, "{dimension:?} of {link:?}");
        }

        // Unique human visitors (exact below the exact limit).
        let visitors: BTreeSet<u64> = raw
            .iter()
            .filter(|c| !c.is_bot && c.fraud_reasons == 0)
            .map(|c| c.visitor)
            .collect();
        let estimate = store.unique_visitors(link, from, to).await.unwrap();
        if visitors.len() <= EXACT_LIMIT {
            assert_eq!(estimate, visitors.len() as u64, "visitors of {link:?}");
        } else {
            let error = (estimate as f64 / visitors.len() as f64 - 1.0).abs();
            assert!(
                error < 0.02,
                "visitors of {link:?}: {estimate} vs {}",
                visitors.len()
            );
        }
        human_clicks.insert(
            link,
            raw.iter()
                .filter(|c| !c.is_bot && c.fraud_reasons == 0)
                .map(|c| c.at)
                .collect(),
        );
    }

    // Enrichment reached the rows: a country from the trusted header and from GeoIP is not
    // expected here (198.51.x.y is FR only for 198.51.100.0/24), but the header's SE is.
    let countries = store
        .top_breakdown(links[0], Dimension::Country, from, to, 10)
        .await
        .unwrap();
    assert!(countries.iter().any(|(c, _)| c == "SE"), "{countries:?}");
    let devices = store
        .top_breakdown(links[0], Dimension::Device, from, to, 10)
        .await
        .unwrap();
    assert!(devices.iter().any(|(d, _)| d == "bot"), "{devices:?}");
    assert!(devices.iter().any(|(d, _)| d == "mobile"), "{devices:?}");

    // Trending equals the brute-force decayed sums over human clicks.
    let top = store.trending(&clock, now, 8).await.unwrap();
    let mut expected: Vec<(LinkId, f64)> = human_clicks
        .iter()
        .map(|(l, ts)| (*l, clock.decayed_sum(ts.iter().copied(), now)))
        .collect();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(
        top.iter().map(|t| t.0).collect::<Vec<_>>(),
        expected.iter().map(|t| t.0).collect::<Vec<_>>()
    );
    for ((_, got), (_, want)) in top.iter().zip(&expected) {
        assert!((got / want - 1.0).abs() < 1e-6, "{got} vs {want}");
    }
}

/// The store stops taking writes while clicks keep coming: pushes never fail, batches go to
/// the journal, and once the store is back every click is persisted exactly once.
pub async fn an_unavailable_store_loses_nothing_and_duplicates_nothing(
    store: &Arc<dyn Store>,
    url: &str,
) {
    let links = links(&**store, 3).await;
    let journal = tempfile::tempdir().unwrap();
    let outage = Outage::new(url);
    let queue = Arc::new(ClickQueue::new(100_000));
    let mut config = settings(journal.path());
    // SQLite writers wait for the lock up to the busy timeout; a short write timeout makes
    // that wait a failure, as a dead connection is on MariaDB.
    config.write_timeout = Duration::from_millis(300);
    let handle = pipeline::spawn(Arc::clone(&queue), Arc::clone(&outage.store), config).unwrap();
    let stats = Arc::clone(handle.stats());
    let stream = events(&links, 30_000, 11);
    let total = stream.len() as u64;
    let mut stream = stream.into_iter();
    // 3 s of clicks at 10,000/s; the store is down from 0.5 s to 2 s.
    let start = Instant::now();
    let mut outage_started = false;
    let mut outage_ended = false;
    let mut max_journaled = 0;
    loop {
        let elapsed = start.elapsed();
        if !outage_started && elapsed >= Duration::from_millis(500) {
            outage.begin();
            outage_started = true;
        }
        if !outage_ended && elapsed >= Duration::from_millis(2_000) {
            outage.end();
            outage_ended = true;
        }
        max_journaled = max_journaled.max(stats.journaled.load(Ordering::Relaxed));
        let due = usize::try_from(elapsed.as_millis() * 10).unwrap();
        let mut pushed = 0;
        for e in stream
            .by_ref()
            .take(due.saturating_sub(usize::try_from(queue.stats().offered).unwrap()))
        {
            assert!(queue.push(e), "a push never fails while the store is down");
            pushed += 1;
        }
        if pushed == 0 && queue.stats().offered == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if !outage_ended {
        outage.end();
    }
    wait_persisted(&stats, total, Duration::from_secs(60)).await;
    handle.shutdown(Duration::from_secs(2)).await;
    assert!(
        stats.write_errors.load(Ordering::Relaxed) > 0,
        "the outage was noticed"
    );
    assert!(
        max_journaled > 0,
        "batches went to the journal during the outage"
    );
    assert!(stats.replayed.load(Ordering::Relaxed) > 0);
    assert_eq!(queue.stats().dropped, 0);
    let mut persisted = 0;
    let mut flagged_total = 0;
    for &link in &links {
        persisted += counted_once(&**store, link).await;
        // Flagged clicks (a window that failed keeps them for its retry) reach the
        // flagged segments once each.
        let mut flagged: Vec<ClickId> = all_raw_clicks(&**store, link)
            .await
            .iter()
            .filter(|c| c.fraud_reasons != 0)
            .map(|c| c.click_id)
            .collect();
        flagged.sort_unstable();
        let mut segments: Vec<ClickId> = all_flagged_clicks(&**store, link)
            .await
            .iter()
            .map(|c| c.click_id)
            .collect();
        segments.sort_unstable();
        assert_eq!(segments, flagged, "{link:?}: flagged segments");
        flagged_total += flagged.len();
    }
    assert_eq!(persisted, total, "every click persisted exactly once");
    assert!(flagged_total > 0, "the stream has flagged clicks");
    let left = files_under(journal.path());
    assert!(left.is_empty(), "journal replayed and emptied: {left:?}");
}

/// The store is unreachable before the first click: the day's shared visitor salt cannot be
/// read, so a local stand-in is used (no click waits for it), batches are journaled, and
/// once the store is back every click is persisted exactly once.
pub async fn a_store_down_from_the_start_delays_no_click(store: &Arc<dyn Store>, url: &str) {
    let links = links(&**store, 2).await;
    let journal = tempfile::tempdir().unwrap();
    let outage = Outage::new(url);
    outage.begin();
    let queue = Arc::new(ClickQueue::new(10_000));
    let mut config = settings(journal.path());
    config.write_timeout = Duration::from_millis(300);
    let handle = pipeline::spawn(Arc::clone(&queue), Arc::clone(&outage.store), config).unwrap();
    let stats = Arc::clone(handle.stats());
    for e in events(&links, 2_000, 5) {
        assert!(queue.push(e));
    }
    // Everything leaves the queue and reaches the journal while the store is down.
    let start = Instant::now();
    while stats.journaled.load(Ordering::Relaxed) < 2_000 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "journaled {} of 2000 while the store is down ({} buffered, {} write errors, {} queued)",
            stats.journaled.load(Ordering::Relaxed),
            stats.buffered.load(Ordering::Relaxed),
            stats.write_errors.load(Ordering::Relaxed),
            queue.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.persisted.load(Ordering::Relaxed), 0);
    outage.end();
    wait_persisted(&stats, 2_000, Duration::from_secs(30)).await;
    handle.shutdown(Duration::from_secs(2)).await;
    let mut total = 0;
    for &link in &links {
        total += counted_once(&**store, link).await;
    }
    assert_eq!(total, 2_000);
}

/// A store write that hangs for 2 s (another session holds a lock; nothing fails) while
/// clicks arrive at 10,000/s, far more than the buffer (2,000) and the queue (4,000) hold:
/// the batcher journals the overflow during the write instead of letting the queue drop it,
/// and every click is persisted once.
pub async fn a_slow_store_write_loses_no_click_to_a_full_queue(store: &Arc<dyn Store>, url: &str) {
    // Without deferral (`defer_max_clicks = 0`) the overflow is journaled as batches.
    let stats = slow_store_write(store, url, 0, false).await;
    assert!(
        stats.overflow_journaled.load(Ordering::Relaxed) > 0,
        "the overflow went to the journal"
    );
    assert_eq!(
        stats.replayed.load(Ordering::Relaxed),
        stats.overflow_journaled.load(Ordering::Relaxed),
        "every journaled click was written from the journal"
    );
    assert_eq!(stats.deferred_total.load(Ordering::Relaxed), 0);
}

pub async fn a_batcher_behind_defers_clicks_to_disk_and_loses_none(
    store: &Arc<dyn Store>,
    url: &str,
) {
    // With deferral (the default), the batcher falling behind defers new events to disk
    // before the buffer fills: nothing is journaled as overflow.
    let stats = slow_store_write(store, url, 1_000_000, false).await;
    assert!(
        stats.deferred_total.load(Ordering::Relaxed) > 0,
        "clicks were deferred"
    );
    assert_eq!(stats.overflow_journaled.load(Ordering::Relaxed), 0);
    assert_eq!(stats.deferred.load(Ordering::Relaxed), 0, "all taken back");
}

pub async fn deferred_clicks_wait_while_every_core_is_busy(store: &Arc<dyn Store>, url: &str) {
    // The same, with every core kept busy from the stall to the last push: the deferred
    // clicks wait (processing pauses while they arrive at 10,000/s) and are all processed
    // once the cores are free.
    let stats = slow_store_write(store, url, 1_000_000, true).await;
    assert!(stats.deferred_total.load(Ordering::Relaxed) > 0);
    assert!(
        stats.contended_pauses.load(Ordering::Relaxed) > 0,
        "processing paused while the cores were busy"
    );
    assert_eq!(stats.deferred.load(Ordering::Relaxed), 0, "all taken back");
}

/// A burst that starts on busy cores (clicks at 10,000/s from a thread of their own, as
/// from request threads, every core kept busy) is deferred, and while the cores stay busy
/// nothing more is processed and no aggregates are written (processing does not probe the
/// cores while the machine has no idle CPU, and the aggregation window waits with it). Once
/// the cores are free every click is persisted and aggregated exactly once.
pub async fn a_burst_on_busy_cores_is_deferred_at_once_and_waits_whole(
    store: &Arc<dyn Store>,
    _url: &str,
) {
    let links = links(&**store, 3).await;
    let journal = tempfile::tempdir().unwrap();
    let (queue, handle) = start_with(store, settings(journal.path()), 65_536);
    let stats = Arc::clone(handle.stats());
    let done = |stats: &PipelineStats| {
        (
            stats.persisted.load(Ordering::Relaxed),
            stats.aggregated.load(Ordering::Relaxed),
        )
    };
    let cores = BusyCores::start();
    let start = Instant::now();
    let pusher = {
        let queue = Arc::clone(&queue);
        let stream = events(&links, 40_000, 41);
        std::thread::spawn(move || {
            let mut stream = stream.into_iter();
            loop {
                let elapsed = start.elapsed();
                if elapsed >= Duration::from_millis(3_500) {
                    return;
                }
                let due = usize::try_from(elapsed.as_millis() * 10).unwrap();
                let offered = usize::try_from(queue.stats().offered).unwrap();
                for e in stream.by_ref().take(due.saturating_sub(offered)) {
                    assert!(queue.push(e), "no drop while deferring");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1_500).saturating_sub(start.elapsed())).await;
    let (persisted, aggregated) = done(&stats);
    let deferred = stats.deferred_total.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(3_500).saturating_sub(start.elapsed())).await;
    let late = done(&stats);
    pusher.join().unwrap();
    let total = queue.stats().offered;
    drop(cores);
    assert!(deferred > 0, "the burst was deferred within 1.5 s");
    assert!(
        late.0 - persisted < 256,
        "nothing processed while the cores stayed busy ({persisted} then {})",
        late.0
    );
    assert_eq!(
        late.1, aggregated,
        "no aggregates written while the cores stayed busy"
    );
    wait_persisted(&stats, total, Duration::from_secs(60)).await;
    let start = Instant::now();
    while stats.aggregated.load(Ordering::Relaxed) < total {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "every click aggregated once the cores were free"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.shutdown(Duration::from_secs(2)).await;
    assert_eq!(queue.stats().dropped, 0);
    let mut counted = 0;
    for &link in &links {
        counted += counted_once(&**store, link).await;
    }
    assert_eq!(counted, total, "every click persisted exactly once");
}

/// A stop that comes while processing is paused (every core busy, clicks arriving at
/// 10,000/s and deferred): the batcher stops within its time, and after a restart every
/// click that was offered is persisted exactly once.
pub async fn a_stop_while_every_core_is_busy_loses_no_click(store: &Arc<dyn Store>, url: &str) {
    let links = links(&**store, 3).await;
    let journal = tempfile::tempdir().unwrap();
    let config = small_buffers(journal.path());
    let (queue, handle) = start_with(store, config.clone(), 4_000);
    let first = Arc::clone(handle.stats());
    let mut stream = events(&links, 60_000, 37).into_iter();
    // As in `slow_store_write`: a stalled write puts the batcher behind (it defers), then
    // every core is kept busy while clicks keep coming.
    let stall = Stall::new(url).await;
    let start = Instant::now();
    let mut cores = None;
    loop {
        let elapsed = start.elapsed();
        if cores.is_none() && elapsed >= Duration::from_millis(500) {
            stall.begin().await;
            cores = Some(BusyCores::start());
        }
        if elapsed >= Duration::from_millis(2_500) {
            stall.end().await;
        }
        if elapsed >= Duration::from_millis(3_000)
            && first.contended_pauses.load(Ordering::Relaxed) > 0
            && first.deferred.load(Ordering::Relaxed) > 0
        {
            break;
        }
        assert!(
            elapsed < Duration::from_secs(5),
            "processing paused with clicks deferred while every core is busy \
             ({} pauses, {} deferred)",
            first.contended_pauses.load(Ordering::Relaxed),
            first.deferred.load(Ordering::Relaxed)
        );
        let due = usize::try_from(elapsed.as_millis() * 10).unwrap();
        let offered = usize::try_from(queue.stats().offered).unwrap();
        for e in stream.by_ref().take(due.saturating_sub(offered)) {
            assert!(queue.push(e), "no drop while deferring");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = queue.stats().offered;
    let stopping = Instant::now();
    handle.shutdown(Duration::from_secs(1)).await;
    let took = stopping.elapsed();
    drop(cores);
    stall.end().await;
    assert!(
        took < Duration::from_millis(1_500),
        "a paused batcher stops within its time (took {took:?})"
    );
    assert_eq!(queue.stats().dropped, 0);
    restart_persists_every_click(store, &queue, config, &first, total, &links, journal.path())
        .await;
}

/// Threads that keep every core busy until dropped: twice as many as there are CPUs, plus
/// one, so any other thread gets at most a third of a core.
struct BusyCores {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BusyCores {
    fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, std::num::NonZero::get) * 2 + 1;
        let threads = (0..n)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for BusyCores {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

pub async fn clicks_deferred_before_a_stop_are_processed_after_the_restart(
    store: &Arc<dyn Store>,
    _url: &str,
) {
    let links = links(&**store, 3).await;
    let journal = tempfile::tempdir().unwrap();
    // What a stopped batcher left: two files of deferred events (and a crash's leftover).
    let left = events(&links, 7_000, 23);
    let mut deferred = Deferred::open(journal.path().join("deferred"), 5_000).unwrap();
    deferred.unwritten_mut().extend(left.iter().cloned());
    deferred.write_all().unwrap();
    drop(deferred);
    std::fs::write(journal.path().join("deferred/9-1.events.tmp"), b"LGE").unwrap();
    let (queue, handle) = start(store, journal.path());
    let stats = Arc::clone(handle.stats());
    // New clicks meanwhile wait behind them.
    let new = events(&links, 3_000, 29);
    for e in new {
        assert!(queue.push(e));
    }
    wait_persisted(&stats, 10_000, Duration::from_secs(60)).await;
    handle.shutdown(Duration::from_secs(2)).await;
    assert_eq!(stats.deferred.load(Ordering::Relaxed), 0);
    assert_eq!(stats.corrupt.load(Ordering::Relaxed), 0);
    let mut persisted = 0;
    for &link in &links {
        persisted += counted_once(&**store, link).await;
    }
    assert_eq!(persisted, 10_000, "every click persisted exactly once");
    let left = files_under(journal.path());
    assert!(
        left.is_empty(),
        "deferred files taken and removed: {left:?}"
    );
}

pub async fn a_stop_while_the_store_hangs_loses_no_click(store: &Arc<dyn Store>, url: &str) {
    let links = links(&**store, 3).await;
    let journal = tempfile::tempdir().unwrap();
    let config = small_buffers(journal.path());
    let (queue, handle) = start_with(store, config.clone(), 4_000);
    let first = Arc::clone(handle.stats());
    // A first click written and aggregated: the day's visitor salt is at hand.
    let stream = events(&links, 12_001, 31);
    let total = stream.len() as u64;
    assert!(queue.push(stream[0].clone()));
    let start = Instant::now();
    while first.aggregated.load(Ordering::Relaxed) < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "first click aggregated"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The store's writes hang (longer than the stop's time): the batcher falls behind and
    // defers; a write is in flight when the stop comes.
    let stall = Stall::new(url).await;
    stall.begin().await;
    for chunk in stream[1..].chunks(1_000) {
        for e in chunk {
            assert!(queue.push(e.clone()), "no drop while deferring");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        first.deferred.load(Ordering::Relaxed) > 0,
        "clicks are deferred"
    );
    let stopping = Instant::now();
    handle.shutdown(Duration::from_secs(1)).await;
    assert!(
        stopping.elapsed() < Duration::from_millis(1_200),
        "stopped within its time: memory journaled, deferred files left"
    );
    stall.end().await;
    restart_persists_every_click(store, &queue, config, &first, total, &links, journal.path())
        .await;
}

/// Restarts a stopped pipeline on the same queue and journal: `total` clicks (counted by
/// the first run and this one) are persisted, each exactly once, and the journal with its
/// deferred files ends empty.
async fn restart_persists_every_click(
    store: &Arc<dyn Store>,
    queue: &Arc<ClickQueue>,
    config: PipelineSettings,
    first: &PipelineStats,
    total: u64,
    links: &[LinkId],
    journal: &Path,
) {
    let handle = pipeline::spawn(Arc::clone(queue), Arc::clone(store), config).unwrap();
    let second = Arc::clone(handle.stats());
    let start = Instant::now();
    while first.persisted.load(Ordering::Relaxed) + second.persisted.load(Ordering::Relaxed) < total
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} + {} of {total} persisted after a restart",
            first.persisted.load(Ordering::Relaxed),
            second.persisted.load(Ordering::Relaxed),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.shutdown(Duration::from_secs(2)).await;
    let mut persisted = 0;
    for &link in links {
        persisted += counted_once(&**store, link).await;
    }
    assert_eq!(persisted, total, "every click persisted exactly once");
    let left = files_under(journal);
    assert!(
        left.is_empty(),
        "journal and deferred files emptied: {left:?}"
    );
}

/// 30,000 clicks at 10,000/s into a queue of 4,000 and a buffer of 2,000 while the store's
/// writes hang for 2 s: none may be dropped, each must be persisted and aggregated once, and
/// the journal (with the deferred files) must end empty.
async fn slow_store_write(
    store: &Arc<dyn Store>,
    url: &str,
    defer_max: u64,
    busy: bool,
) -> Arc<PipelineStats> {
    let links = links(&**store, 3).await;
    let journal = tempfile::tempdir().unwrap();
    let mut config = small_buffers(journal.path());
    config.defer_max_clicks = defer_max;
    let (queue, handle) = start_with(store, config, 4_000);
    let stats = Arc::clone(handle.stats());
    let stream = events(&links, 30_000, 17);
    let total = stream.len() as u64;
    let mut stream = stream.into_iter();
    let stall = Stall::new(url).await;
    let start = Instant::now();
    let mut stalled = false;
    let mut cores = None;
    let mut deferred_while_busy = None;
    loop {
        let elapsed = start.elapsed();
        if cores.is_some()
            && deferred_while_busy.is_none()
            && elapsed >= Duration::from_millis(2_900)
        {
            // Clicks still arriving fast, every core busy: processing waits.
            deferred_while_busy = Some(stats.deferred.load(Ordering::Relaxed));
        }
        if !stalled && elapsed >= Duration::from_millis(500) {
            stall.begin().await;
            stalled = true;
            if busy {
                cores = Some(BusyCores::start());
            }
        }
        if stalled && elapsed >= Duration::from_millis(2_500) {
            stall.end().await;
        }
        let due = usize::try_from(elapsed.as_millis() * 10).unwrap();
        let offered = usize::try_from(queue.stats().offered).unwrap();
        let mut pushed = 0;
        for e in stream.by_ref().take(due.saturating_sub(offered)) {
            assert!(
                queue.push(e),
                "the queue dropped a click during a slow write"
            );
            pushed += 1;
        }
        if pushed == 0 && queue.stats().offered == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stall.end().await;
    drop(cores);
    if busy {
        assert!(
            deferred_while_busy.is_some_and(|n| n > 0),
            "deferred clicks wait while the cores are busy"
        );
    }
    wait_persisted(&stats, total, Duration::from_secs(60)).await;
    handle.shutdown(Duration::from_secs(2)).await;
    assert_eq!(queue.stats().dropped, 0);
    assert_eq!(
        stats.write_errors.load(Ordering::Relaxed),
        0,
        "slow, never failed"
    );
    let mut persisted = 0;
    for &link in &links {
        persisted += counted_once(&**store, link).await;
    }
    assert_eq!(persisted, total, "every click persisted exactly once");
    let left: Vec<_> = files_under(journal.path());
    assert!(left.is_empty(), "journal replayed and emptied: {left:?}");
    stats
}

/// Makes the store's writes hang (not fail) on demand: another session holds a lock the
/// batch write needs. SQLite: an exclusive transaction (writers wait up to the busy
/// timeout). MariaDB: `LOCK TABLES click_batches WRITE` in the test's database.
enum Stall {
    Sqlite {
        path: std::path::PathBuf,
        holder:
            std::sync::Mutex<Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
    },
    Mysql(tokio::sync::Mutex<(mysql_async::Conn, bool)>),
}

impl Stall {
    async fn new(url: &str) -> Self {
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Self::Sqlite {
                path: path.into(),
                holder: std::sync::Mutex::new(None),
            };
        }
        let conn = mysql_async::Conn::from_url(url).await.unwrap();
        Self::Mysql(tokio::sync::Mutex::new((conn, false)))
    }

    async fn begin(&self) {
        match self {
            Self::Sqlite { path, holder } => *holder.lock().unwrap() = Some(hold_sqlite_lock(path)),
            Self::Mysql(conn) => {
                use mysql_async::prelude::Queryable as _;
                let mut conn = conn.lock().await;
                conn.0
                    .query_drop("LOCK TABLES click_batches WRITE")
                    .await
                    .unwrap();
                conn.1 = true;
            }
        }
    }

    async fn end(&self) {
        match self {
            Self::Sqlite { holder, .. } => release_sqlite_lock(holder.lock().unwrap().take()),
            Self::Mysql(conn) => {
                use mysql_async::prelude::Queryable as _;
                let mut conn = conn.lock().await;
                if conn.1 {
                    conn.0.query_drop("UNLOCK TABLES").await.unwrap();
                    conn.1 = false;
                }
            }
        }
    }
}

/// Another connection to the SQLite file takes the write lock and holds it until told.
fn hold_sqlite_lock(path: &Path) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel::<()>();
    let path = path.to_owned();
    let thread = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        let _ = rx.recv();
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();
    (tx, thread)
}

fn release_sqlite_lock(holder: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>) {
    if let Some((tx, thread)) = holder {
        tx.send(()).unwrap();
        thread.join().unwrap();
    }
}

/// Makes the store unavailable on demand. MariaDB: the pipeline's store connects through a
/// TCP forwarder that is cut. SQLite: another connection holds the write lock (writes fail
/// after the busy timeout, or time out first).
struct Outage {
    store: Arc<dyn Store>,
    kind: OutageKind,
}

enum OutageKind {
    Mysql(linkgate_common::testing::Forwarder),
    Sqlite {
        path: std::path::PathBuf,
        holder:
            std::sync::Mutex<Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
    },
}

impl Outage {
    fn new(url: &str) -> Self {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let store =
                linkgate_common::store::sqlite::SqliteStore::open(Path::new(path), 4).unwrap();
            return Self {
                store: Arc::new(store),
                kind: OutageKind::Sqlite {
                    path: path.into(),
                    holder: std::sync::Mutex::new(None),
                },
            };
        }
        let forwarder =
            linkgate_common::testing::Forwarder::start("127.0.0.1:3306".parse().unwrap());
        let via = url.replace("127.0.0.1:3306", &forwarder.addr.to_string());
        assert_ne!(via, url, "test MySQL URL is on 127.0.0.1:3306");
        let store = linkgate_common::store::mysql::MysqlStore::open(&via, 4).unwrap();
        Self {
            store: Arc::new(store),
            kind: OutageKind::Mysql(forwarder),
        }
    }

    fn begin(&self) {
        match &self.kind {
            OutageKind::Mysql(f) => f.cut(),
            OutageKind::Sqlite { path, holder } => {
                *holder.lock().unwrap() = Some(hold_sqlite_lock(path));
            }
        }
    }

    fn end(&self) {
        match &self.kind {
            OutageKind::Mysql(f) => f.resume(),
            OutageKind::Sqlite { holder, .. } => release_sqlite_lock(holder.lock().unwrap().take()),
        }
    }
}

/// The store takes raw clicks but refuses aggregates (a trigger rejects every hourly
/// counter row) when the aggregation window fills up: a full window is written at once, and
/// its failed write is retried after the batch writes' backoff, not at every poll and every
/// batch folded in. Once the store takes aggregates again, every click is counted once.
pub async fn a_full_window_the_store_refuses_is_retried_with_backoff(
    store: &Arc<dyn Store>,
    url: &str,
) {
    let link = links(&**store, 1).await[0];
    let journal = tempfile::tempdir().unwrap();
    let refusal = AggregateRefusal::begin(url).await;
    let queue = Arc::new(ClickQueue::new(200_000));
    let mut config = settings(journal.path());
    // Only a full window is written, and a full window the store refuses is kept.
    config.aggregate_interval = Duration::from_secs(3600);
    config.aggregate_max_interval = Duration::from_secs(3600);
    config.buffer_max_clicks = 1_000_000;
    config.retry_initial = Duration::from_millis(100);
    config.retry_max = Duration::from_secs(1);
    let handle = pipeline::spawn(Arc::clone(&queue), Arc::clone(store), config).unwrap();
    let stats = Arc::clone(handle.stats());
    // One client without an Accept header: every click is flagged, and the window is full
    // at 100,000 flagged clicks.
    let total: u64 = 110_000;
    let now = Timestamp::now().as_millis();
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    for i in 0..total {
        let at = now - 60_000 + i64::try_from(i / 2).unwrap();
        assert!(queue.push(browser_click(link, at, ip, false)));
    }
    let start = Instant::now();
    while stats.aggregate_errors.load(Ordering::Relaxed) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no window write was refused ({} clicks persisted)",
            stats.persisted.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Retried after 0.1, 0.2, 0.4, 0.8 and then every 1 s: about six tries in 3 s. Without
    // the backoff it was tried at every 5 ms poll.
    let before = stats.aggregate_errors.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tries = stats.aggregate_errors.load(Ordering::Relaxed) - before;
    assert!(
        tries <= 8,
        "{tries} refused window writes in 3 s ({} clicks persisted)",
        stats.persisted.load(Ordering::Relaxed)
    );
    assert_eq!(stats.aggregated.load(Ordering::Relaxed), 0);
    refusal.end().await;
    let start = Instant::now();
    while stats.aggregated.load(Ordering::Relaxed) < total {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of {total} clicks aggregated after the store took aggregates again",
            stats.aggregated.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.shutdown(Duration::from_secs(2)).await;
    assert_eq!(queue.stats().dropped, 0);
    assert_eq!(counted_once(&**store, link).await, total);
}

/// A trigger that makes the store refuse every hourly counter row, so aggregate writes
/// fail while raw clicks are still written.
struct AggregateRefusal {
    url: String,
}

impl AggregateRefusal {
    const SQLITE: &str = "CREATE TRIGGER refuse_aggregates BEFORE INSERT ON click_hourly \
        BEGIN SELECT RAISE(ABORT, 'aggregates refused'); END";
    const MYSQL: &str = "CREATE TRIGGER refuse_aggregates BEFORE INSERT ON click_hourly \
        FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'aggregates refused'";

    async fn begin(url: &str) -> Self {
        let refusal = Self {
            url: url.to_owned(),
        };
        refusal.run(Self::SQLITE, Self::MYSQL).await;
        refusal
    }

    async fn end(&self) {
        let drop = "DROP TRIGGER refuse_aggregates";
        self.run(drop, drop).await;
    }

    async fn run(&self, sqlite: &str, mysql: &str) {
        use mysql_async::prelude::Queryable as _;
        if let Some(path) = self.url.strip_prefix("sqlite://") {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            conn.execute_batch(sqlite).unwrap();
        } else {
            let mut conn = mysql_async::Conn::from_url(self.url.as_str())
                .await
                .unwrap();
            conn.query_drop(mysql).await.unwrap();
            conn.disconnect().await.unwrap();
        }
    }
}

/// A GET from a desktop browser at `at` (ms), without a referrer.
fn browser_click(link: LinkId, at: i64, ip: IpAddr, accept: bool) -> ClickEvent {
    let at = Timestamp::from_millis(at);
    ClickEvent {
        click_id: ClickId::at(at),
        at,
        link_id: link,
        client_ip: ip,
        user_agent: Some(BROWSERS[0].into()),
        referrer: None,
        has_accept: accept,
        method: ClickMethod::Get,
        country: None,
        prefetch: false,
    }
}

/// A script hammering one link (no Accept header, one address) is flagged click by click,
/// its link enters the review queue after the batch is written, and its network is kept as
/// evidence; a normal visitor's address is not kept.
async fn flagged_traffic_puts_its_link_in_the_review_queue(store: &Arc<dyn Store>, _url: &str) {
    use linkgate_common::domain::ReviewState;

    let links = links(&**store, 2).await;
    let journal = tempfile::tempdir().unwrap();
    let (queue, handle) = start(store, journal.path());
    // Every click within one UTC hour, as the review thresholds count them: from a minute
    // ago, or in this hour's first minute from 61 s before it began.
    let now = Timestamp::now();
    let hour = now.hour_start().as_millis();
    let from = match now.as_millis() - 60_000 {
        from if from < hour => hour - 61_000,
        from => from,
    };
    for i in 0..60 {
        assert!(queue.push(browser_click(
            links[0],
            from + i * 500,
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
            false
        )));
    }
    for i in 0..40u8 {
        assert!(queue.push(browser_click(
            links[1],
            from + i64::from(i) * 1000,
            IpAddr::V4(Ipv4Addr::new(100, 64, 0, i)),
            true
        )));
    }
    wait_persisted(handle.stats(), 100, Duration::from_secs(30)).await;
    handle.shutdown(Duration::from_secs(2)).await;
    let open = store.reviews(Some(ReviewState::Open), 10).await.unwrap();
    assert_eq!(
        open.iter().map(|r| r.link_id).collect::<Vec<_>>(),
        [links[0]]
    );
    assert_eq!(open[0].hour_suspicious, open[0].hour_total);
    let flagged = all_raw_clicks(&**store, links[0]).await;
    assert!(
        flagged
            .iter()
            .all(|c| c.fraud_reasons != 0 && c.ip.as_deref() == Some("203.0.113.0/24"))
    );
    let normal = all_raw_clicks(&**store, links[1]).await;
    assert!(
        normal
            .iter()
            .all(|c| c.fraud_reasons == 0 && c.ip.is_none()),
        "{normal:?}"
    );
}

/// A node that has just started knows no link's rate. A link with a stored history of
/// about 50-100 clicks a minute is judged against it once it gets busy on the node, not as
/// a new link: 300 clicks in a minute are no burst for it, while a link without history
/// has the clicks past the new-link minimum (20 x 10) flagged. Without the seeding both
/// would have 100 flagged.
async fn a_popular_link_is_judged_by_its_history_after_a_restart(
    store: &Arc<dyn Store>,
    _url: &str,
) {
    use linkgate_common::clicks::batch::build_batch;
    use linkgate_common::clicks::fraud::reason;
    use linkgate_common::testing::stored_click;

    let links = links(&**store, 2).await;
    let (popular, new) = (links[0], links[1]);
    let now = Timestamp::now().as_millis();
    // The history: 6,000 clicks ten minutes ago (within the hours the node asks about).
    let history: Vec<StoredClick> = (0..6_000)
        .map(|i| StoredClick {
            visitor: i,
            ..stored_click(popular, Timestamp::from_millis(now - 600_000))
        })
        .collect();
    store
        .write_click_batch(&build_batch(history, &TrendingClock::new(HOUR)))
        .await
        .unwrap();

    let journal = tempfile::tempdir().unwrap();
    let queue = Arc::new(ClickQueue::new(10_000));
    let mut settings = settings(journal.path());
    settings.fraud.burst_min_per_minute = 20;
    settings.fraud.burst_factor = 10;
    let handle = pipeline::spawn(Arc::clone(&queue), Arc::clone(store), settings).unwrap();
    // All in one minute of click time, each from its own address.
    let minute = (now - 300_000).div_euclid(60_000) * 60_000;
    let event = |link: LinkId, i: u32, at: i64| {
        browser_click(link, at, IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), true)
    };
    // First 15 clicks on each: past half the minimum, the node asks the store about them.
    for link in [popular, new] {
        for i in 0..15 {
            assert!(queue.push(event(link, i, minute + i64::from(i) * 10)));
        }
    }
    wait_persisted(handle.stats(), 30, Duration::from_secs(30)).await;
    // Then 285 more each, within the same minute.
    for link in [popular, new] {
        for i in 15..300 {
            assert!(queue.push(event(link, i, minute + 1_000 + i64::from(i) * 100)));
        }
    }
    wait_persisted(handle.stats(), 600, Duration::from_secs(30)).await;
    handle.shutdown(Duration::from_secs(2)).await;
    let bursts = |clicks: Vec<StoredClick>| {
        clicks
            .iter()
            .filter(|c| c.fraud_reasons & reason::BURST != 0)
            .count()
    };
    assert_eq!(bursts(all_raw_clicks(&**store, popular).await), 0);
    assert_eq!(bursts(all_raw_clicks(&**store, new).await), 100);
}
