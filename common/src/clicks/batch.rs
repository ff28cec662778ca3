//! Folding enriched clicks into one [`ClickBatch`]: every aggregate is summed inside the
//! batch first, so a batch is one upsert per link-hour (and per link-day-value, per visitor
//! bucket, per link) however many clicks it holds. Rows come out sorted by key, so two nodes
//! writing overlapping batches lock rows in the same order.

use std::sync::Arc;

use super::enrich::{DIRECT, UNKNOWN};
use super::trending::TrendingClock;
use super::{FastMap, FastSet};
use crate::domain::{
    BreakdownDelta, ClickBatch, Dimension, HourlyDelta, LinkId, StoredClick, Timestamp,
    TrendingDelta, VisitorHour,
};

/// The entries of `map` in key order (keys are unique, so an unstable sort is exact).
fn sorted<K: Ord, V>(map: FastMap<K, V>) -> Vec<(K, V)> {
    let mut entries: Vec<(K, V)> = map.into_iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    entries
}

/// Whether a click counts as a person's: not a bot and not flagged.
pub fn is_human(click: &StoredClick) -> bool {
    !click.is_bot && click.fraud_reasons == 0
}

/// The breakdown value of a click for one dimension.
pub fn breakdown_value(click: &StoredClick, dimension: Dimension) -> &str {
    match dimension {
        Dimension::Referrer => click.referrer_host.as_deref().unwrap_or(DIRECT),
        Dimension::Country => click.country.as_deref().unwrap_or(UNKNOWN),
        Dimension::Device => &click.device,
        Dimension::Browser => &click.browser,
        Dimension::Os => &click.os,
    }
}

/// Builds the batch for `clicks` under a fresh random batch id.
pub fn build_batch(clicks: Vec<StoredClick>, clock: &TrendingClock) -> ClickBatch {
    build_batch_with_id(new_batch_id(), clicks, clock)
}

/// A fresh random batch id.
fn new_batch_id() -> u128 {
    use rand::Rng as _;
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    u128::from_be_bytes(id)
}

/// A batch of raw clicks under a fresh random id, its aggregates not computed (they are
/// applied later, from a window of batches: see `pipeline`).
pub fn raw_batch(clicks: Vec<StoredClick>, clock: &TrendingClock) -> ClickBatch {
    ClickBatch {
        batch_id: new_batch_id(),
        clicks,
        hourly: Vec::new(),
        breakdowns: Vec::new(),
        visitors: Vec::new(),
        link_totals: Vec::new(),
        trending: Vec::new(),
        trending_era_ms: clock.era_ms(),
        trending_carry: clock.era_carry(),
    }
}

/// Builds the batch for `clicks` under the given id.
pub fn build_batch_with_id(
    batch_id: u128,
    clicks: Vec<StoredClick>,
    clock: &TrendingClock,
) -> ClickBatch {
    let refs: Vec<&StoredClick> = clicks.iter().collect();
    let mut batch = aggregate(batch_id, &refs, clock);
    drop(refs);
    batch.clicks = clicks;
    batch
}

/// The aggregates of `clicks` as a batch under `batch_id` that holds no raw clicks.
pub fn aggregate(batch_id: u128, clicks: &[&StoredClick], clock: &TrendingClock) -> ClickBatch {
    // Hash maps while folding, sorted once at the end.
    let mut hourly: FastMap<(LinkId, Timestamp), HourlyDelta> = FastMap::default();
    let mut breakdowns: FastMap<(LinkId, Dimension, Timestamp, &str), u64> = FastMap::default();
    let mut visitors: FastSet<VisitorHour> = FastSet::default();
    let mut totals: FastMap<LinkId, u64> = FastMap::default();
    let mut trending: FastMap<LinkId, f64> = FastMap::default();
    // One epoch for the whole batch: that of its newest click.
    let epoch = clock.epoch_of(
        clicks
            .iter()
            .map(|c| c.at)
            .max()
            .unwrap_or_else(Timestamp::now),
    );

    for &click in clicks {
        crate::background::give_way();
        let hour = click.at.hour_start();
        let human = is_human(click);
        let h = hourly.entry((click.link_id, hour)).or_insert(HourlyDelta {
            link_id: click.link_id,
            hour,
            total: 0,
            human: 0,
            bot: 0,
            suspicious: 0,
        });
        h.total += 1;
        h.human += u64::from(human);
        h.bot += u64::from(click.is_bot);
        h.suspicious += u64::from(click.fraud_reasons != 0);
        let day = click.at.day_start();
        for dimension in Dimension::ALL {
            *breakdowns
                .entry((
                    click.link_id,
                    dimension,
                    day,
                    breakdown_value(click, dimension),
                ))
                .or_default() += 1;
        }
        *totals.entry(click.link_id).or_default() += 1;
        if human {
            visitors.insert(VisitorHour {
                link_id: click.link_id,
                hour,
                visitor: click.visitor,
            });
            *trending.entry(click.link_id).or_default() += clock.weight(click.at, epoch);
        }
    }

    // Each distinct value is allocated once per batch and shared by its rows (a window of
    // 100,000 clicks on distinct links has 500,000 rows over a few hundred values).
    let mut shared: FastMap<&str, Arc<str>> = FastMap::default();
    let mut breakdowns: Vec<BreakdownDelta> = breakdowns
        .into_iter()
        .map(|((link_id, dimension, day, value), count)| BreakdownDelta {
            link_id,
            day,
            dimension,
            value: Arc::clone(shared.entry(value).or_insert_with(|| Arc::from(value))),
            count,
        })
        .collect();
    breakdowns.sort_unstable_by(|a, b| {
        (a.link_id, a.dimension, a.day, &*a.value).cmp(&(b.link_id, b.dimension, b.day, &*b.value))
    });
    let mut visitors: Vec<VisitorHour> = visitors.into_iter().collect();
    visitors.sort_unstable();
    ClickBatch {
        batch_id,
        hourly: sorted(hourly).into_iter().map(|(_, h)| h).collect(),
        breakdowns,
        visitors,
        link_totals: sorted(totals),
        trending: sorted(trending)
            .into_iter()
            .map(|(link_id, weight)| TrendingDelta {
                link_id,
                epoch,
                weight,
            })
            .collect(),
        trending_era_ms: clock.era_ms(),
        trending_carry: clock.era_carry(),
        clicks: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClickId;

    fn click(link: i64, at: i64, visitor: u64, bot: bool, referrer: Option<&str>) -> StoredClick {
        StoredClick {
            click_id: ClickId::new(),
            link_id: LinkId(link),
            at: Timestamp::from_millis(at),
            visitor,
            ip: None,
            referrer_host: referrer.map(str::to_owned),
            country: Some("DE".into()),
            device: "desktop".into(),
            browser: "Firefox".into(),
            os: "Linux".into(),
            is_bot: bot,
            fraud_reasons: 0,
        }
    }

    #[test]
    fn a_batch_sums_per_link_hour_and_counts_humans_only_for_visitors_and_trending() {
        let h = Timestamp::MILLIS_PER_HOUR;
        let base = 1_800_000_000_000 / h * h;
        let clock = TrendingClock::new(h);
        let clicks = vec![
            click(1, base + 10, 7, false, Some("example.com")),
            click(1, base + 20, 7, false, None),
            click(1, base + 30, 8, true, None),
            click(1, base + h + 5, 7, false, None),
            click(2, base + 40, 9, false, None),
        ];
        let batch = build_batch_with_id(42, clicks, &clock);
        assert_eq!(batch.batch_id, 42);
        assert_eq!(batch.clicks.len(), 5);
        let first = batch.hourly[0];
        assert_eq!((first.link_id, first.hour.as_millis()), (LinkId(1), base));
        assert_eq!(
            (first.total, first.human, first.bot, first.suspicious),
            (3, 2, 1, 0)
        );
        assert_eq!(batch.hourly.len(), 3);
        assert_eq!(batch.link_totals, vec![(LinkId(1), 4), (LinkId(2), 1)]);
        // Visitor 7 in two hours on link 1, visitor 9 on link 2; the bot (8) is not a visitor.
        assert_eq!(batch.visitors.len(), 3);
        assert!(batch.visitors.iter().all(|v| v.visitor != 8));
        let referrers: Vec<_> = batch
            .breakdowns
            .iter()
            .filter(|b| b.link_id == LinkId(1) && b.dimension == Dimension::Referrer)
            .map(|b| (&*b.value, b.count))
            .collect();
        assert_eq!(referrers, vec![("(direct)", 3), ("example.com", 1)]);
        // Trending: three human clicks on link 1, one on link 2.
        let t1 = batch
            .trending
            .iter()
            .find(|t| t.link_id == LinkId(1))
            .unwrap();
        let now = Timestamp::from_millis(base + h + 5);
        let expected = clock.decayed_sum(
            [base + 10, base + 20, base + h + 5].map(Timestamp::from_millis),
            now,
        );
        assert!((clock.score_at(t1.weight, t1.epoch, now) - expected).abs() < 1e-9);
    }

    #[test]
    fn breakdown_rows_come_sorted_and_share_one_copy_of_each_value() {
        let h = Timestamp::MILLIS_PER_HOUR;
        let base = 1_800_000_000_000 / h * h;
        let clock = TrendingClock::new(h);
        let clicks: Vec<StoredClick> = (0..50)
            .map(|i| click(50 - i, base + i, 1, false, Some("example.com")))
            .collect();
        let batch = build_batch_with_id(1, clicks, &clock);
        // 50 links x 5 dimensions, in (link, dimension, day, value) order.
        assert_eq!(batch.breakdowns.len(), 250);
        let keys: Vec<_> = batch
            .breakdowns
            .iter()
            .map(|b| (b.link_id, b.dimension, b.day, b.value.to_string()))
            .collect();
        assert!(keys.is_sorted(), "{keys:?}");
        let referrers: Vec<&BreakdownDelta> = batch
            .breakdowns
            .iter()
            .filter(|b| b.dimension == Dimension::Referrer)
            .collect();
        assert_eq!(referrers.len(), 50);
        assert!(
            referrers
                .iter()
                .all(|b| &*b.value == "example.com" && Arc::ptr_eq(&b.value, &referrers[0].value))
        );
        // The journal's JSON form of a value is a plain string, as when it was a `String`.
        let json = serde_json::to_value(referrers[0]).unwrap();
        assert_eq!(json["value"], "example.com");
        let back: BreakdownDelta = serde_json::from_value(json).unwrap();
        assert_eq!(&back, referrers[0]);
    }
}
