use linkgate_common::clicks::TrendingClock;
use linkgate_common::clicks::batch::build_batch;
use linkgate_common::clicks::sketch::EXACT_LIMIT;
use linkgate_common::domain::{
    BatchOutcome, ClickBatch, Dimension, Granularity, LinkId, Role, StoredClick, Timestamp,
};
use linkgate_common::store::Store;

use linkgate_common::testing::{new_link, stored_click, user};

const HOUR: i64 = Timestamp::MILLIS_PER_HOUR;

fn click(link: LinkId, at: Timestamp, visitor: u64, is_bot: bool) -> StoredClick {
    StoredClick {
        visitor,
        referrer_host: Some("news.example".into()),
        country: Some("DE".into()),
        browser: "Firefox".into(),
        os: "Linux".into(),
        is_bot,
        ..stored_click(link, at)
    }
}

/// Builds a batch as the pipeline does.
fn batch_of(clicks: Vec<StoredClick>) -> ClickBatch {
    build_batch(clicks, &TrendingClock::new(HOUR))
}

async fn link_id(store: &dyn Store, c: &str) -> LinkId {
    let owner = match store
        .user_by_email(&linkgate_common::domain::Email::parse("owner@example.com").unwrap())
        .await
        .unwrap()
    {
        Some(u) => u,
        None => user(store, "owner@example.com", Role::User).await,
    };
    store
        .create_link(&new_link(&owner, c, "https://example.com/"))
        .await
        .unwrap()
        .id
}

pub async fn a_batch_writes_raw_clicks_and_aggregates(store: &dyn Store) {
    let link = link_id(store, "clicked").await;
    let t0 = Timestamp::parse_rfc3339("2026-11-27T10:15:00Z").unwrap();
    let mut clicks = vec![
        click(link, t0, 1, false),
        click(link, t0.plus_millis(60_000), 2, false),
        click(link, t0.plus_millis(HOUR), 1, true),
    ];
    clicks[1].fraud_reasons = 0b10;
    clicks[2].browser = "curl".into();
    let batch = batch_of(clicks);
    assert_eq!(
        store.write_click_batch(&batch).await,
        Ok(BatchOutcome::Applied { inserted: 3 })
    );

    assert_eq!(store.raw_click_count(link).await, Ok(3));
    let hours = store
        .hourly_counts(link, t0, t0.plus_millis(24 * HOUR))
        .await
        .unwrap();
    assert_eq!(hours.len(), 2);
    assert_eq!(
        (
            hours[0].total,
            hours[0].human,
            hours[0].bot,
            hours[0].suspicious
        ),
        (2, 1, 0, 1),
        "a flagged click is not a human one"
    );
    assert_eq!((hours[1].total, hours[1].human, hours[1].bot), (1, 0, 1));
    assert_eq!(hours[0].hour.to_rfc3339(), "2026-11-27T10:00:00Z");
    let browsers = store
        .top_breakdown(link, Dimension::Browser, t0, t0.plus_millis(24 * HOUR), 10)
        .await
        .unwrap();
    assert_eq!(
        browsers,
        vec![("Firefox".to_owned(), 2), ("curl".to_owned(), 1)]
    );
    assert_eq!(store.link_by_id(link).await.unwrap().unwrap().clicks, 3);

    // A second batch adds to the same hour rather than replacing it.
    let more = batch_of(vec![click(link, t0.plus_millis(120_000), 3, false)]);
    store.write_click_batch(&more).await.unwrap();
    let hours = store
        .hourly_counts(link, t0, t0.plus_millis(HOUR))
        .await
        .unwrap();
    assert_eq!(hours[0].total, 3);
    assert_eq!(store.link_by_id(link).await.unwrap().unwrap().clicks, 4);
}

pub async fn recent_clicks_sum_each_links_hours_from_the_one_given(store: &dyn Store) {
    let busy = link_id(store, "recent-busy").await;
    let quiet = link_id(store, "recent-quiet").await;
    let idle = link_id(store, "recent-idle").await;
    let t0 = Timestamp::parse_rfc3339("2026-11-27T10:15:00Z").unwrap();
    let mut clicks: Vec<_> = (0..30).map(|i| click(busy, t0, i, false)).collect();
    // An hour earlier (counted when asked from 09:xx) and two hours earlier (never).
    clicks.extend((0..7).map(|i| click(busy, t0.plus_millis(-HOUR), 100 + i, true)));
    clicks.extend((0..5).map(|i| click(busy, t0.plus_millis(-2 * HOUR), 200 + i, false)));
    clicks.extend((0..2).map(|i| click(quiet, t0.plus_millis(HOUR), 300 + i, false)));
    store.write_click_batch(&batch_of(clicks)).await.unwrap();

    let from = t0.plus_millis(-HOUR + 30 * 60_000); // 09:45: from the hour of 09:00
    let mut found = store
        .recent_clicks(&[busy, quiet, idle], from)
        .await
        .unwrap();
    found.sort_unstable_by_key(|&(link, _)| link.0);
    assert_eq!(
        found,
        vec![(busy, 37), (quiet, 2)],
        "bots count; no row for idle"
    );
    assert_eq!(store.recent_clicks(&[], from).await, Ok(Vec::new()));
    // More links than one statement takes: the rest are asked in further statements.
    let mut many: Vec<LinkId> = (0..1_200).map(|i| LinkId(1_000_000 + i)).collect();
    many.push(quiet);
    assert_eq!(store.recent_clicks(&many, from).await, Ok(vec![(quiet, 2)]));
}

pub async fn a_replayed_batch_changes_nothing(store: &dyn Store) {
    let link = link_id(store, "replay").await;
    let t0 = Timestamp::now();
    let batch = batch_of((0..50).map(|i| click(link, t0, i, false)).collect());
    assert_eq!(
        store.write_click_batch(&batch).await,
        Ok(BatchOutcome::Applied { inserted: 50 })
    );
    assert_eq!(
        store.write_click_batch(&batch).await,
        Ok(BatchOutcome::AlreadyApplied)
    );
    assert_eq!(store.raw_click_count(link).await, Ok(50));
    let hours = store
        .hourly_counts(link, t0, t0.plus_millis(HOUR))
        .await
        .unwrap();
    assert_eq!(hours.iter().map(|h| h.total).sum::<u64>(), 50);
    assert_eq!(store.link_by_id(link).await.unwrap().unwrap().clicks, 50);
}

pub async fn raw_clicks_read_back_exactly_and_flagged_ones_by_link(store: &dyn Store) {
    let link = link_id(store, "segments").await;
    let other = link_id(store, "segments-other").await;
    // Two UTC days in one batch: two segments.
    let t0 = Timestamp::parse_rfc3339("2026-11-27T23:59:59.000Z").unwrap();
    let mut clicks: Vec<_> = (0..40i64)
        .map(|i| {
            let mut c = click(
                link,
                t0.plus_millis(i * 50),
                7 + i.cast_unsigned(),
                i % 5 == 0,
            );
            c.ip = (i % 2 == 0).then(|| "203.0.113.0/24".to_owned());
            c.country = (i % 3 != 0).then(|| "NL".to_owned());
            c.fraud_reasons = if i % 4 == 1 { 0b101 } else { 0 };
            c
        })
        .collect();
    clicks.push(click(other, t0, 1, false));
    store
        .write_click_batch(&batch_of(clicks.clone()))
        .await
        .unwrap();

    let mut mine: Vec<_> = clicks
        .iter()
        .filter(|c| c.link_id == link)
        .cloned()
        .collect();
    mine.sort_by_key(|c| c.click_id);
    assert_eq!(store.raw_clicks(link, None, 10_000).await.unwrap(), mine);
    assert_eq!(store.raw_click_count(link).await, Ok(40));
    assert_eq!(store.raw_click_count(other).await, Ok(1));
    // Pages after a click id, across the day boundary.
    let page = store
        .raw_clicks(link, Some(mine[18].click_id), 3)
        .await
        .unwrap();
    assert_eq!(page, mine[19..22].to_vec());

    let flagged: Vec<_> = mine
        .iter()
        .filter(|c| c.fraud_reasons != 0)
        .cloned()
        .collect();
    assert_eq!(flagged.len(), 10);
    assert_eq!(
        store.flagged_clicks(link, None, 100).await.unwrap(),
        flagged
    );
    assert_eq!(
        store
            .flagged_clicks(link, Some(flagged[4].click_id), 2)
            .await
            .unwrap(),
        flagged[5..7].to_vec()
    );
    assert_eq!(store.flagged_clicks(other, None, 100).await, Ok(vec![]));
}

pub async fn a_ten_thousand_click_batch_is_written_completely(store: &dyn Store) {
    let a = link_id(store, "bulk-a").await;
    let b = link_id(store, "bulk-b").await;
    let t0 = Timestamp::parse_rfc3339("2026-11-27T00:00:00Z").unwrap();
    let clicks: Vec<_> = (0..10_000u64)
        .map(|i| {
            let link = if i % 4 == 0 { b } else { a };
            let at = t0.plus_millis(i64::try_from(i).unwrap() * 1_000);
            click(link, at, i % 3_000, i % 10 == 0)
        })
        .collect();
    let batch = batch_of(clicks);
    assert_eq!(
        store.write_click_batch(&batch).await,
        Ok(BatchOutcome::Applied { inserted: 10_000 })
    );
    assert_eq!(store.raw_click_count(a).await, Ok(7_500));
    assert_eq!(store.raw_click_count(b).await, Ok(2_500));
    let day = t0.plus_millis(24 * HOUR);
    let total: u64 = store
        .hourly_counts(a, t0, day)
        .await
        .unwrap()
        .iter()
        .map(|h| h.total)
        .sum();
    assert_eq!(total, 7_500);
    assert_eq!(store.link_by_id(b).await.unwrap().unwrap().clicks, 2_500);
}

pub async fn unique_visitors_are_exact_over_any_range(store: &dyn Store) {
    unique_visitors_per_hour(store).await;
    unique_visitors_across_days(store).await;
}

async fn unique_visitors_per_hour(store: &dyn Store) {
    let link = link_id(store, "uniq").await;
    let t0 = Timestamp::parse_rfc3339("2026-11-27T00:00:00Z").unwrap();
    // Hour 0: visitors 1..=3 (visitor 1 twice); hour 1: visitors 3 and 4; a bot is not a visitor.
    let clicks = vec![
        click(link, t0, 1, false),
        click(link, t0.plus_millis(10), 1, false),
        click(link, t0.plus_millis(20), 2, false),
        click(link, t0.plus_millis(30), 3, false),
        click(link, t0.plus_millis(HOUR), 3, false),
        click(link, t0.plus_millis(HOUR + 5), 4, false),
        click(link, t0.plus_millis(HOUR + 6), 99, true),
        // The full 64-bit range survives the signed column.
        click(link, t0.plus_millis(HOUR + 7), u64::MAX, false),
    ];
    store.write_click_batch(&batch_of(clicks)).await.unwrap();
    assert_eq!(
        store.unique_visitors(link, t0, t0.plus_millis(HOUR)).await,
        Ok(3)
    );
    assert_eq!(
        store
            .unique_visitors(link, t0.plus_millis(HOUR), t0.plus_millis(2 * HOUR))
            .await,
        Ok(3)
    );
    assert_eq!(
        store
            .unique_visitors(link, t0, t0.plus_millis(2 * HOUR))
            .await,
        Ok(5)
    );
    assert_eq!(
        store
            .unique_visitors(link, t0.plus_millis(2 * HOUR), t0.plus_millis(3 * HOUR))
            .await,
        Ok(0)
    );
}

pub async fn purging_raw_clicks_keeps_recent_rows_and_aggregates(store: &dyn Store) {
    let link = link_id(store, "purge").await;
    let old = Timestamp::parse_rfc3339("2025-01-01T00:00:00Z").unwrap();
    let new = Timestamp::parse_rfc3339("2026-11-27T12:00:00Z").unwrap();
    // 20 clicks over two old days (two segments, 2 flagged rows) and 10 on the day of `new`.
    let clicks: Vec<_> = (0..30)
        .map(|i| {
            let at = if i < 20 {
                old.plus_millis(i64::from(i % 2) * 24 * HOUR + i64::from(i))
            } else {
                new.plus_millis(-HOUR)
            };
            let mut c = click(link, at, 1, false);
            c.fraud_reasons = u32::from(i < 2 || i == 25);
            c
        })
        .collect();
    store.write_click_batch(&batch_of(clicks)).await.unwrap();
    assert_eq!(
        store.flagged_clicks(link, None, 100).await.unwrap().len(),
        3
    );
    // One day's segment per call, then nothing: the link's flagged segment (all three flagged
    // clicks of the batch) goes with its newest click.
    assert_eq!(store.purge_raw_clicks(new, 1).await, Ok(1));
    assert_eq!(store.purge_raw_clicks(new, 1).await, Ok(1));
    assert_eq!(store.purge_raw_clicks(new, 15).await, Ok(0));
    // Segments go by whole days: the clicks an hour before `new`, on its day, stay.
    assert_eq!(store.raw_click_count(link).await, Ok(10));
    assert_eq!(
        store.flagged_clicks(link, None, 100).await.unwrap().len(),
        3
    );
    let later = new.plus_millis(48 * HOUR);
    assert_eq!(store.purge_raw_clicks(later, 15).await, Ok(2));
    assert_eq!(store.raw_click_count(link).await, Ok(0));
    assert_eq!(store.flagged_clicks(link, None, 100).await, Ok(vec![]));
    let old_hours = store
        .hourly_counts(link, old, old.plus_millis(HOUR))
        .await
        .unwrap();
    assert_eq!(old_hours[0].total, 10, "aggregates outlive raw clicks");
}

/// Visitors over three days: the range query combines daily sketches for whole days with
/// hourly ones for the ragged ends and must equal the exact distinct count every time.
async fn unique_visitors_across_days(store: &dyn Store) {
    let link = link_id(store, "uniq-days").await;
    let d0 = Timestamp::parse_rfc3339("2026-11-20T00:00:00Z").unwrap();
    // Visitor v clicks at hour (v * 7) % 72 of the three days, and again 25 hours later.
    let mut clicks = Vec::new();
    let mut truth: Vec<(i64, u64)> = Vec::new();
    for v in 0..300u64 {
        let h = i64::try_from(v * 7 % 72).unwrap();
        for at_hour in [h, h + 25] {
            if at_hour < 72 {
                clicks.push(click(link, d0.plus_millis(at_hour * HOUR + 1), v, false));
                truth.push((at_hour, v));
            }
        }
    }
    store.write_click_batch(&batch_of(clicks)).await.unwrap();
    for (from_h, to_h) in [
        (0, 72),
        (5, 50),
        (23, 49),
        (0, 24),
        (30, 31),
        (47, 72),
        (1, 71),
    ] {
        let mut exact: Vec<u64> = truth
            .iter()
            .filter(|(h, _)| (from_h..to_h).contains(h))
            .map(|(_, v)| *v)
            .collect();
        exact.sort_unstable();
        exact.dedup();
        assert_eq!(
            store
                .unique_visitors(
                    link,
                    d0.plus_millis(from_h * HOUR),
                    d0.plus_millis(to_h * HOUR)
                )
                .await,
            Ok(exact.len() as u64),
            "hours {from_h}..{to_h}"
        );
    }
    // Arbitrary hour-aligned buckets (local days of a zone 5 hours behind UTC, say).
    let bounds: Vec<Timestamp> = [5, 29, 53, 72]
        .iter()
        .map(|h| d0.plus_millis(h * HOUR))
        .collect();
    let buckets = store.visitor_buckets(link, &bounds).await.unwrap();
    let expected: Vec<u64> = bounds
        .windows(2)
        .map(|w| {
            let (a, b) = (
                (w[0].as_millis() - d0.as_millis()) / HOUR,
                (w[1].as_millis() - d0.as_millis()) / HOUR,
            );
            let mut v: Vec<u64> = truth
                .iter()
                .filter(|(h, _)| (a..b).contains(h))
                .map(|(_, v)| *v)
                .collect();
            v.sort_unstable();
            v.dedup();
            v.len() as u64
        })
        .collect();
    assert_eq!(buckets, expected);
    assert_eq!(
        store.visitor_buckets(link, &[]).await.unwrap(),
        Vec::<u64>::new()
    );
    let daily = store
        .visitor_series(link, d0, d0.plus_millis(72 * HOUR), Granularity::Day)
        .await
        .unwrap();
    assert_eq!(daily.len(), 3);
    let hourly = store
        .visitor_series(link, d0, d0.plus_millis(72 * HOUR), Granularity::Hour)
        .await
        .unwrap();
    let clicks_per_hour = |h: i64| truth.iter().filter(|(x, _)| *x == h).count() as u64;
    for (at, n) in &hourly {
        let h = (at.as_millis() - d0.as_millis()) / HOUR;
        assert_eq!(*n, clicks_per_hour(h), "hour {h}");
    }
}

/// Past the exact limit a bucket's sketch turns into a HyperLogLog; the estimate over
/// several batches and hours stays within 2%.
pub async fn unique_visitors_are_estimated_past_the_exact_limit(store: &dyn Store) {
    let link = link_id(store, "uniq-many").await;
    let t0 = Timestamp::parse_rfc3339("2026-11-21T00:00:00Z").unwrap();
    let n: u64 = 30_000;
    // Uniform 64-bit visitor hashes, as the keyed hash produces; every visitor twice.
    let visitor = |i: u64| {
        // splitmix64's finaliser
        let mut z = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for round in 0..2 {
        for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
            let clicks = chunk
                .iter()
                .map(|&i| {
                    let hour = i64::try_from(i % 3).unwrap() + round;
                    click(link, t0.plus_millis(hour * HOUR), visitor(i), false)
                })
                .collect();
            store.write_click_batch(&batch_of(clicks)).await.unwrap();
        }
    }
    let estimate = store
        .unique_visitors(link, t0, t0.plus_millis(24 * HOUR))
        .await
        .unwrap();
    let error = (estimate as f64 - n as f64).abs() / n as f64;
    assert!(error < 0.02, "estimate {estimate} for {n} visitors");
    // Hour 0 holds 10,000 visitors (past the exact limit), hour 3 only the second round's
    // third (3,334 of them, also past it); a small hour stays exact.
    let small = link_id(store, "uniq-small").await;
    let few: Vec<_> = (0..EXACT_LIMIT as u64)
        .map(|i| click(small, t0, visitor(i), false))
        .collect();
    store.write_click_batch(&batch_of(few)).await.unwrap();
    assert_eq!(
        store.unique_visitors(small, t0, t0.plus_millis(HOUR)).await,
        Ok(EXACT_LIMIT as u64)
    );
}

/// Every node gets the same salt for a day; different days get different salts; old salts
/// can be forgotten.
pub async fn visitor_salts_are_shared_per_day(store: &dyn Store) {
    let day = Timestamp::parse_rfc3339("2026-11-27T00:00:00Z").unwrap();
    let a = store.visitor_salt(day).await.unwrap();
    assert_eq!(store.visitor_salt(day.plus_millis(5 * HOUR)).await, Ok(a));
    let next = store
        .visitor_salt(day.plus_millis(Timestamp::MILLIS_PER_DAY))
        .await
        .unwrap();
    assert_ne!(a, next);
    assert_eq!(
        store
            .purge_visitor_salts(day.plus_millis(Timestamp::MILLIS_PER_DAY))
            .await,
        Ok(1)
    );
    assert_ne!(
        store.visitor_salt(day).await.unwrap(),
        a,
        "a forgotten salt is gone"
    );
}

/// The stored trending order and scores match the brute-force decayed sums over human
/// clicks, including across an era boundary; bots do not count.
pub async fn trending_matches_brute_force_decayed_sums(store: &dyn Store) {
    let clock = TrendingClock::new(60_000); // one-minute half-life: eras of 32 minutes
    let mut links = Vec::new();
    for i in 0..8 {
        links.push(link_id(store, &format!("trend-{i}")).await);
    }
    // Start just before an era boundary so the stream crosses it.
    let boundary = clock
        .epoch_of(Timestamp::parse_rfc3339("2026-11-27T12:00:00Z").unwrap())
        .plus_millis(clock.era_ms());
    let start = boundary.plus_millis(-5 * 60_000);
    let now = boundary.plus_millis(5 * 60_000);
    let mut human: Vec<(LinkId, Timestamp)> = Vec::new();
    let mut batch = Vec::new();
    let mut seed: u64 = 42;
    for i in 0..4_000u64 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // Link k gets clicks in proportion to k + 1, spread over the ten minutes.
        let k = usize::try_from((seed >> 33) % 36).unwrap();
        let link = links[[
            0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7,
            7, 7, 7, 7, 7, 7, 7,
        ][k]];
        let at = start.plus_millis(i64::try_from((seed >> 11) % 600_000).unwrap());
        // Link 0 is hammered by a bot: without the exclusion it would top the list.
        let bot = i % 3 == 0;
        let link = if bot { links[0] } else { link };
        batch.push(click(link, at, i, bot));
        if !bot {
            human.push((link, at));
        }
        if batch.len() == 500 {
            batch.sort_by_key(|c| c.at);
            store
                .write_click_batch(&build_batch(std::mem::take(&mut batch), &clock))
                .await
                .unwrap();
        }
    }
    let top = store.trending(&clock, now, 8).await.unwrap();
    let mut expected: Vec<(LinkId, f64)> = links
        .iter()
        .map(|l| {
            let s = clock.decayed_sum(human.iter().filter(|(x, _)| x == l).map(|(_, t)| *t), now);
            (*l, s)
        })
        .filter(|(_, s)| *s > 0.0)
        .collect();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(
        top.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        expected.iter().map(|(l, _)| *l).collect::<Vec<_>>()
    );
    for ((_, got), (_, want)) in top.iter().zip(&expected) {
        assert!((got / want - 1.0).abs() < 1e-6, "score {got} vs {want}");
    }
    assert_eq!(store.trending(&clock, now, 3).await.unwrap().len(), 3);
}

/// Raw clicks written apart from their aggregates: the writer's window applies them once,
/// a batch the writer never aggregated is aggregated from its segments by the stale sweep,
/// and neither path counts a batch the other took.
pub async fn pending_aggregates_apply_exactly_once_from_the_window_or_the_sweep(store: &dyn Store) {
    use linkgate_common::clicks::batch::{WindowFold, raw_batch};
    use linkgate_common::domain::PendingWindow;

    let clock = TrendingClock::new(HOUR);
    let a = link_id(store, "window-a").await;
    let b = link_id(store, "window-b").await;
    let t0 = Timestamp::now();
    let mut first = vec![
        click(a, t0, 1, false),
        click(a, t0, 2, false),
        click(a, t0, 3, false),
        click(b, t0, 4, false),
        click(b, t0, 5, true),
    ];
    first[0].fraud_reasons = 0b100;
    let batches = [
        raw_batch(first, &clock),
        raw_batch(
            (0..4).map(|i| click(a, t0, 10 + i, false)).collect(),
            &clock,
        ),
        raw_batch(vec![click(b, t0, 20, false)], &clock),
    ];
    for batch in &batches {
        assert!(batch.hourly.is_empty() && batch.link_totals.is_empty());
        assert_eq!(
            store.write_click_segments(batch).await,
            Ok(BatchOutcome::Applied {
                inserted: batch.clicks.len() as u64
            })
        );
    }
    assert_eq!(
        store.write_click_segments(&batches[0]).await,
        Ok(BatchOutcome::AlreadyApplied)
    );
    let total = |link: LinkId| async move {
        store
            .hourly_counts(link, t0, t0.plus_millis(HOUR))
            .await
            .unwrap()
            .iter()
            .map(|h| h.total)
            .sum::<u64>()
    };
    // Raw clicks are there, aggregates not yet.
    assert_eq!(store.raw_click_count(a).await, Ok(7));
    assert_eq!(total(a).await, 0);
    assert_eq!(store.link_by_id(a).await.unwrap().unwrap().clicks, 0);
    assert!(store.flagged_clicks(a, None, 10).await.unwrap().is_empty());

    // What the writer's window hands over: its batches folded together.
    let window_of = |batches: &[&ClickBatch]| -> PendingWindow {
        let mut fold = WindowFold::default();
        for b in batches {
            fold.add(b.batch_id, b.clicks.clone(), &clock);
        }
        fold.take_pending(&clock)
    };
    let window = window_of(&[&batches[0], &batches[1]]);
    assert_eq!((window.clicks, window.flagged.len()), (9, 1));
    assert_eq!(store.apply_aggregates(&window, &clock).await, Ok(9));
    assert_eq!((total(a).await, total(b).await), (7, 2));
    assert_eq!(store.link_by_id(a).await.unwrap().unwrap().clicks, 7);
    assert_eq!(store.flagged_clicks(a, None, 10).await.unwrap().len(), 1);
    let browsers = store
        .top_breakdown(a, Dimension::Browser, t0, t0.plus_millis(HOUR), 10)
        .await
        .unwrap();
    assert_eq!(browsers, vec![("Firefox".to_owned(), 7)]);
    assert_eq!(
        store.unique_visitors(a, t0, t0.plus_millis(HOUR)).await,
        Ok(6)
    );
    // The same window again applies nothing.
    assert_eq!(store.apply_aggregates(&window, &clock).await, Ok(0));
    assert_eq!(total(a).await, 7);

    // The third batch's writer "stopped": nothing is stale an hour ago, everything now.
    let hour_ago = t0.plus_millis(-HOUR);
    assert_eq!(store.aggregate_stale(hour_ago, 100, &clock).await, Ok(0));
    let soon = Timestamp::now().plus_millis(1_000);
    assert_eq!(store.aggregate_stale(soon, 100, &clock).await, Ok(1));
    assert_eq!(total(b).await, 3);
    assert_eq!(store.link_by_id(b).await.unwrap().unwrap().clicks, 3);
    assert_eq!(store.aggregate_stale(soon, 100, &clock).await, Ok(0));
    // Its writer coming back late finds it taken.
    let late = window_of(&[&batches[2]]);
    assert_eq!(store.apply_aggregates(&late, &clock).await, Ok(0));
    assert_eq!(total(b).await, 3);
    // A window holding a batch the sweep took and one still pending applies the pending
    // one's clicks only, read back from its segments.
    let fresh = raw_batch(
        vec![click(b, t0, 21, false), click(b, t0, 22, false)],
        &clock,
    );
    store.write_click_segments(&fresh).await.unwrap();
    let mixed = window_of(&[&batches[2], &fresh]);
    assert_eq!(mixed.clicks, 3);
    assert_eq!(store.apply_aggregates(&mixed, &clock).await, Ok(2));
    assert_eq!(total(b).await, 5);
    assert_eq!(store.link_by_id(b).await.unwrap().unwrap().clicks, 5);
    assert_eq!(
        store.unique_visitors(b, t0, t0.plus_millis(HOUR)).await,
        Ok(4)
    );
    assert_eq!(store.apply_aggregates(&mixed, &clock).await, Ok(0));

    // A whole batch (a journal replay) leaves nothing pending.
    store
        .write_click_batch(&batch_of(vec![click(b, t0, 30, false)]))
        .await
        .unwrap();
    assert_eq!(store.aggregate_stale(soon, 100, &clock).await, Ok(0));
    assert_eq!(total(b).await, 6);
}

/// One node's windows: each has a new visitor of the node's own, and visitor 7, who comes
/// every time.
async fn node_windows(store: &dyn Store, link: LinkId, t0: Timestamp, first: u64, windows: u64) {
    for w in 0..windows {
        let at = t0.plus_millis(i64::try_from(w).unwrap());
        let clicks = vec![click(link, at, first + w, false), click(link, at, 7, false)];
        store.write_click_batch(&batch_of(clicks)).await.unwrap();
    }
}

/// Two nodes add visitors to one link in many windows each, at the same time, in the hour
/// of `t0`. Every window adds a sketch part and each node compacts a key's parts every so
/// often, and at every window once the hour or day has ended (see the store); counts over
/// the hour and the day stay exact throughout. Returns the link.
pub async fn visitors_from_two_nodes_in_many_windows_stay_exact(
    a: &dyn Store,
    b: &dyn Store,
    code: &str,
    t0: Timestamp,
    windows: u64,
) -> LinkId {
    let link = link_id(a, code).await;
    let t0 = t0.hour_start();
    let day = t0.day_start();
    tokio::join!(
        node_windows(a, link, t0, 1_000_000, windows),
        node_windows(b, link, t0, 2_000_000, windows)
    );
    let expected = 2 * windows + 1;
    assert_eq!(
        a.unique_visitors(link, t0, t0.plus_millis(HOUR)).await,
        Ok(expected)
    );
    // A whole day comes from the daily sketch.
    assert_eq!(
        b.unique_visitors(link, day, day.plus_millis(24 * HOUR))
            .await,
        Ok(expected)
    );
    assert_eq!(
        a.visitor_series(link, day, day.plus_millis(24 * HOUR), Granularity::Hour)
            .await,
        Ok(vec![(t0, expected)])
    );
    assert_eq!(
        b.visitor_series(link, day, day.plus_millis(24 * HOUR), Granularity::Day)
            .await,
        Ok(vec![(day, expected)])
    );
    assert_eq!(
        a.visitor_buckets(link, &[day, t0, t0.plus_millis(HOUR)])
            .await,
        Ok(vec![0, expected])
    );
    link
}
