use linkgate_common::domain::{
    BatchOutcome, BreakdownDelta, ClickBatch, ClickId, Dimension, HourlyDelta, LinkId, Role,
    StoredClick, Timestamp, VisitorHour,
};
use linkgate_common::store::Store;

use linkgate_common::testing::{new_link, user};

const HOUR: i64 = Timestamp::MILLIS_PER_HOUR;

fn click(link: LinkId, at: Timestamp, visitor: u64, is_bot: bool) -> StoredClick {
    StoredClick {
        click_id: ClickId::new(),
        link_id: link,
        at,
        visitor,
        ip: None,
        referrer_host: Some("news.example".into()),
        country: Some("DE".into()),
        device: "desktop".into(),
        browser: "Firefox".into(),
        os: "Linux".into(),
        is_bot,
        fraud_reasons: 0,
    }
}

/// Builds a batch whose aggregates are computed from its clicks, as the pipeline does.
fn batch_of(clicks: Vec<StoredClick>) -> ClickBatch {
    use std::collections::BTreeMap;
    let mut hourly: BTreeMap<(i64, i64), HourlyDelta> = BTreeMap::new();
    let mut breakdowns: BTreeMap<(i64, i64, String), u64> = BTreeMap::new();
    let mut visitors = std::collections::BTreeSet::new();
    let mut totals: BTreeMap<i64, u64> = BTreeMap::new();
    for c in &clicks {
        let h = hourly
            .entry((c.link_id.0, c.at.hour_start().as_millis()))
            .or_insert(HourlyDelta {
                link_id: c.link_id,
                hour: c.at.hour_start(),
                total: 0,
                human: 0,
                bot: 0,
                suspicious: 0,
            });
        h.total += 1;
        if c.is_bot {
            h.bot += 1;
        } else {
            h.human += 1;
        }
        if c.fraud_reasons != 0 {
            h.suspicious += 1;
        }
        *breakdowns
            .entry((c.link_id.0, c.at.day_start().as_millis(), c.browser.clone()))
            .or_default() += 1;
        if !c.is_bot {
            visitors.insert((c.link_id.0, c.at.hour_start().as_millis(), c.visitor));
        }
        *totals.entry(c.link_id.0).or_default() += 1;
    }
    ClickBatch {
        batch_id: ClickId::new().0,
        hourly: hourly.into_values().collect(),
        breakdowns: breakdowns
            .into_iter()
            .map(|((link, day, value), count)| BreakdownDelta {
                link_id: LinkId(link),
                day: Timestamp::from_millis(day),
                dimension: Dimension::Browser,
                value,
                count,
            })
            .collect(),
        visitors: visitors
            .into_iter()
            .map(|(link, hour, visitor)| VisitorHour {
                link_id: LinkId(link),
                hour: Timestamp::from_millis(hour),
                visitor,
            })
            .collect(),
        link_totals: totals.into_iter().map(|(l, n)| (LinkId(l), n)).collect(),
        clicks,
    }
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
        (2, 2, 0, 1)
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

pub async fn a_click_already_stored_is_skipped_in_a_new_batch(store: &dyn Store) {
    let link = link_id(store, "dupes").await;
    let t0 = Timestamp::now();
    let first = click(link, t0, 1, false);
    store
        .write_click_batch(&batch_of(vec![first.clone()]))
        .await
        .unwrap();
    let second = batch_of(vec![first, click(link, t0, 2, false)]);
    assert_eq!(
        store.write_click_batch(&second).await,
        Ok(BatchOutcome::Applied { inserted: 1 })
    );
    assert_eq!(store.raw_click_count(link).await, Ok(2));
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
    let new = Timestamp::parse_rfc3339("2026-11-27T00:00:00Z").unwrap();
    let clicks: Vec<_> = (0..30)
        .map(|i| {
            click(
                link,
                if i < 20 { old.plus_millis(i) } else { new },
                1,
                false,
            )
        })
        .collect();
    store.write_click_batch(&batch_of(clicks)).await.unwrap();
    assert_eq!(store.purge_raw_clicks(new, 15).await, Ok(15));
    assert_eq!(store.purge_raw_clicks(new, 15).await, Ok(5));
    assert_eq!(store.purge_raw_clicks(new, 15).await, Ok(0));
    assert_eq!(store.raw_click_count(link).await, Ok(10));
    let old_hours = store
        .hourly_counts(link, old, old.plus_millis(HOUR))
        .await
        .unwrap();
    assert_eq!(old_hours[0].total, 20, "aggregates outlive raw clicks");
}
