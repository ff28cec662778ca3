//! Folding enriched clicks into one [`ClickBatch`]: every aggregate is summed inside the
//! batch first, so a batch is one upsert per link-hour (and per link-day-value, per visitor
//! bucket, per link) however many clicks it holds. Rows come out sorted by key, so two nodes
//! writing overlapping batches lock rows in the same order.

use std::borrow::Borrow;
use std::sync::Arc;

use super::FastMap;
use super::enrich::{DIRECT, UNKNOWN};
use super::trending::TrendingClock;
use crate::domain::{
    BreakdownDelta, ClickBatch, Dimension, HourlyDelta, LinkId, PendingWindow, StoredClick,
    Timestamp, TrendingDelta, VisitorHour,
};

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
    let mut batch = aggregate(batch_id, &clicks, clock);
    batch.clicks = clicks;
    batch
}

/// The aggregates of `clicks` as a batch under `batch_id` that holds no raw clicks.
pub fn aggregate(batch_id: u128, clicks: &[StoredClick], clock: &TrendingClock) -> ClickBatch {
    let mut fold = Fold::default();
    if let Some(newest) = newest(clicks) {
        fold.add(clicks, newest, clock, |_| ());
    }
    fold.into_batch(batch_id, clock)
}

/// The time of the newest of `clicks`.
fn newest(clicks: &[StoredClick]) -> Option<Timestamp> {
    clicks.iter().map(|c| c.at).max()
}

/// Aggregates summed click by click: hash maps while folding, rows sorted when taken out.
/// Holds one entry per distinct key (link-hour, link-day-value, visitor, link), whatever the
/// number of clicks folded in.
#[derive(Debug, Default)]
struct Fold {
    hourly: FastMap<(LinkId, Timestamp), HourlyDelta>,
    /// Breakdown counts by (link, dimension, day, value number in `values`).
    breakdowns: FastMap<(LinkId, Dimension, Timestamp, u32), u64>,
    /// Each distinct breakdown value once, numbered in `names`: the rows share one copy.
    values: FastMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
    /// Visitors per link-hour (see [`VisitorList`]), and how many hashes those lists have
    /// room for (kept as they grow: `bytes` is read every few milliseconds, and a window
    /// may hold a million lists).
    visitors: FastMap<(LinkId, Timestamp), VisitorList>,
    visitor_room: usize,
    totals: FastMap<LinkId, u64>,
    /// Trending weights against `epoch`.
    trending: FastMap<LinkId, f64>,
    /// The era of the newest click folded in: a later one rescales the weights held.
    epoch: Option<Timestamp>,
}

impl Fold {
    /// Folds in `clicks`, whose newest is at `newest`, weighing them against the era of the
    /// newest click seen so far; each click goes to `then` once counted.
    fn add<C: Borrow<StoredClick>>(
        &mut self,
        clicks: impl IntoIterator<Item = C>,
        newest: Timestamp,
        clock: &TrendingClock,
        mut then: impl FnMut(C),
    ) {
        let epoch = self.advance(clock.epoch_of(newest), clock);
        for click in clicks {
            crate::background::give_way();
            self.add_click(click.borrow(), clock, epoch);
            then(click);
        }
    }

    /// Moves the weights held to `epoch` when it is later than theirs; returns the epoch
    /// now held.
    fn advance(&mut self, epoch: Timestamp, clock: &TrendingClock) -> Timestamp {
        match self.epoch {
            Some(held) if held >= epoch => return held,
            Some(held) => {
                let carry = clock.weight(held, epoch);
                self.trending.values_mut().for_each(|w| *w *= carry);
            }
            None => {}
        }
        self.epoch = Some(epoch);
        epoch
    }

    /// One click, its trending weight against `epoch`.
    fn add_click(&mut self, click: &StoredClick, trend: &TrendingClock, epoch: Timestamp) {
        let hour = click.at.hour_start();
        let human = is_human(click);
        self.add_hourly(&HourlyDelta {
            link_id: click.link_id,
            hour,
            total: 1,
            human: u64::from(human),
            bot: u64::from(click.is_bot),
            suspicious: u64::from(click.fraud_reasons != 0),
        });
        let day = click.at.day_start();
        for dimension in Dimension::ALL {
            let value = breakdown_value(click, dimension);
            self.add_breakdown(click.link_id, dimension, day, value, 1);
        }
        *self.totals.entry(click.link_id).or_default() += 1;
        if human {
            self.add_visitor(click.link_id, hour, click.visitor);
            *self.trending.entry(click.link_id).or_default() += trend.weight(click.at, epoch);
        }
    }

    /// Adds a link-hour's counts to the one held.
    fn add_hourly(&mut self, delta: &HourlyDelta) {
        let held = self
            .hourly
            .entry((delta.link_id, delta.hour))
            .or_insert(HourlyDelta {
                total: 0,
                human: 0,
                bot: 0,
                suspicious: 0,
                ..*delta
            });
        held.total += delta.total;
        held.human += delta.human;
        held.bot += delta.bot;
        held.suspicious += delta.suspicious;
    }

    fn add_breakdown(
        &mut self,
        link: LinkId,
        dimension: Dimension,
        day: Timestamp,
        value: &str,
        count: u64,
    ) {
        let value = self.value_number(value);
        *self
            .breakdowns
            .entry((link, dimension, day, value))
            .or_default() += count;
    }

    fn add_visitor(&mut self, link: LinkId, hour: Timestamp, visitor: u64) {
        self.visitor_room += self.visitors.entry((link, hour)).or_default().push(visitor);
    }

    /// The number of a breakdown value, allocated once per fold.
    fn value_number(&mut self, value: &str) -> u32 {
        if let Some(n) = self.values.get(value) {
            return *n;
        }
        let n = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        let shared: Arc<str> = Arc::from(value);
        self.names.push(Arc::clone(&shared));
        self.values.insert(shared, n);
        n
    }

    /// About the bytes held: the maps' slots (what they can hold before growing) and the
    /// visitor lists' room. What a window's memory grows with.
    fn bytes(&self) -> usize {
        fn slots<K, V, S>(map: &std::collections::HashMap<K, V, S>) -> usize {
            map.capacity() * (size_of::<(K, V)>() + 1)
        }
        slots(&self.hourly)
            + slots(&self.breakdowns)
            + slots(&self.values)
            + self.names.capacity() * size_of::<Arc<str>>()
            + slots(&self.visitors)
            + self.visitor_room * size_of::<u64>()
            + slots(&self.totals)
            + slots(&self.trending)
    }

    /// The aggregates as a batch under `batch_id` (no raw clicks), rows sorted by key so two
    /// nodes writing overlapping batches lock rows in the same order. The fold is consumed
    /// map by map, each given back once its rows are out: a window's fold and its rows are
    /// never held whole at once (during a catch-up the two were most of the proxy's heap).
    fn into_batch(self, batch_id: u128, clock: &TrendingClock) -> ClickBatch {
        let Self {
            hourly,
            breakdowns,
            values,
            names,
            visitors,
            visitor_room: _,
            totals,
            trending,
            epoch,
        } = self;
        drop(values);
        let mut hourly: Vec<HourlyDelta> = hourly.into_values().collect();
        hourly.sort_unstable_by_key(|h| (h.link_id, h.hour));
        let mut breakdowns: Vec<BreakdownDelta> = breakdowns
            .into_iter()
            .map(|((link_id, dimension, day, value), count)| BreakdownDelta {
                link_id,
                day,
                dimension,
                value: Arc::clone(&names[value as usize]),
                count,
            })
            .collect();
        drop(names);
        breakdowns.sort_unstable_by(|a, b| {
            (a.link_id, a.dimension, a.day, &*a.value).cmp(&(
                b.link_id,
                b.dimension,
                b.day,
                &*b.value,
            ))
        });
        let mut lists: Vec<_> = visitors.into_iter().collect();
        lists.sort_unstable_by_key(|&(key, _)| key);
        let mut visitors: Vec<VisitorHour> =
            Vec::with_capacity(lists.iter().map(|(_, list)| list.0.len()).sum());
        for ((link_id, hour), VisitorList(mut hashes)) in lists {
            hashes.sort_unstable();
            hashes.dedup();
            visitors.extend(hashes.into_iter().map(|visitor| VisitorHour {
                link_id,
                hour,
                visitor,
            }));
        }
        let mut link_totals: Vec<(LinkId, u64)> = totals.into_iter().collect();
        link_totals.sort_unstable();
        // One epoch for the whole batch: that of its newest click.
        let epoch = epoch.unwrap_or_else(|| clock.epoch_of(Timestamp::now()));
        let mut trending: Vec<TrendingDelta> = trending
            .into_iter()
            .map(|(link_id, weight)| TrendingDelta {
                link_id,
                epoch,
                weight,
            })
            .collect();
        trending.sort_unstable_by_key(|t| t.link_id);
        ClickBatch {
            batch_id,
            hourly,
            breakdowns,
            visitors,
            link_totals,
            trending,
            trending_era_ms: clock.era_ms(),
            trending_carry: clock.era_carry(),
            clicks: Vec::new(),
        }
    }

    /// Folds the aggregates of `batch` (as [`Fold::into_batch`] made them) back in.
    fn absorb(&mut self, batch: &ClickBatch, clock: &TrendingClock) {
        for h in &batch.hourly {
            self.add_hourly(h);
        }
        for b in &batch.breakdowns {
            self.add_breakdown(b.link_id, b.dimension, b.day, &b.value, b.count);
        }
        for v in &batch.visitors {
            self.add_visitor(v.link_id, v.hour, v.visitor);
        }
        for &(link, n) in &batch.link_totals {
            *self.totals.entry(link).or_default() += n;
        }
        // A batch's weights share one epoch: carried to the one held once, not per link.
        if let Some(first) = batch.trending.first() {
            let epoch = self.advance(first.epoch, clock);
            let carry = clock.weight(first.epoch, epoch);
            for t in &batch.trending {
                *self.trending.entry(t.link_id).or_default() += t.weight * carry;
            }
        }
    }
}

/// The visitor hashes of one link-hour in a fold, in arrival order. A full list is
/// deduplicated before it grows, so it holds at most about two and a half times its
/// distinct visitors (a visitor clicking again and again costs no memory), at 8 bytes a
/// hash rather than a hash set's 25 to 57 bytes per (link, hour, visitor) entry. When
/// deduplicating frees less than a quarter of the list, the list grows right away: the next
/// sort then waits for as many pushes again, so no pattern of repeats makes a sort per push.
#[derive(Debug, Default)]
struct VisitorList(Vec<u64>);

impl VisitorList {
    /// Adds a visitor; returns how many hashes of room the list grew by.
    fn push(&mut self, visitor: u64) -> usize {
        let list = &mut self.0;
        let room = list.capacity();
        if list.len() == list.capacity() && list.len() >= 8 {
            list.sort_unstable();
            list.dedup();
            if list.len() > list.capacity() / 4 * 3 {
                list.reserve(list.capacity());
            }
        }
        list.push(visitor);
        list.capacity() - room
    }
}

/// Written batches whose aggregates are yet to be written, folded as they come (see
/// `pipeline`): the window holds one entry per distinct aggregate key and the flagged
/// clicks, not the batches' clicks, so its memory grows with the links, hours and visitors
/// clicked rather than with the clicks.
#[derive(Debug, Default)]
pub struct WindowFold {
    batch_ids: Vec<u128>,
    fold: Fold,
    flagged: Vec<StoredClick>,
    clicks: u64,
}

impl WindowFold {
    /// Folds in a written batch, consuming its clicks in one pass: each is kept when
    /// flagged and freed otherwise as soon as it is counted.
    pub fn add(&mut self, batch_id: u128, clicks: Vec<StoredClick>, clock: &TrendingClock) {
        self.batch_ids.push(batch_id);
        self.clicks += clicks.len() as u64;
        let Some(newest) = newest(&clicks) else {
            return;
        };
        let flagged = &mut self.flagged;
        self.fold.add(clicks, newest, clock, |click| {
            if click.fraud_reasons != 0 {
                flagged.push(click);
            }
        });
    }

    pub fn is_empty(&self) -> bool {
        self.batch_ids.is_empty()
    }

    /// Clicks folded in.
    pub fn clicks(&self) -> u64 {
        self.clicks
    }

    /// About the bytes the folded sums hold (flagged clicks aside: see [`Self::flagged`]).
    pub fn bytes(&self) -> usize {
        self.fold.bytes()
    }

    /// Flagged clicks held.
    pub fn flagged(&self) -> usize {
        self.flagged.len()
    }

    /// The window as handed to `ClickStore::apply_aggregates`: the sums and the flagged
    /// clicks moved out (the fold is not kept beside its rows while they are written). When
    /// the write fails, [`WindowFold::put_back`] folds them back in, and the window goes on
    /// folding.
    pub fn take_pending(&mut self, clock: &TrendingClock) -> PendingWindow {
        PendingWindow {
            batch_ids: self.batch_ids.clone(),
            aggregates: std::mem::take(&mut self.fold).into_batch(0, clock),
            flagged: std::mem::take(&mut self.flagged),
            clicks: self.clicks,
        }
    }

    /// Takes back the sums and flagged clicks of a window whose write failed.
    pub fn put_back(&mut self, window: PendingWindow, clock: &TrendingClock) {
        self.fold.absorb(&window.aggregates, clock);
        let mut flagged = window.flagged;
        flagged.append(&mut self.flagged);
        self.flagged = flagged;
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
    fn a_window_folded_batch_by_batch_sums_as_one_aggregate_of_all_its_clicks() {
        let h = Timestamp::MILLIS_PER_HOUR;
        let base = 1_800_000_000_000 / h * h;
        // A one-second half-life: eras of 32 s, so the window spans three of them and the
        // weights held are carried into later eras as batches come.
        let clock = TrendingClock::new(1000);
        let era = clock.era_ms();
        let mut all = Vec::new();
        let mut fold = WindowFold::default();
        for b in 0..6_i64 {
            let clicks: Vec<StoredClick> = (0..40_i64)
                .map(|i| {
                    let at = base + b * era / 2 + i * 7;
                    let referrer = (i % 3 == 0).then_some("example.com");
                    let mut c = click(
                        1 + (i * b) % 5,
                        at,
                        (i % 11).cast_unsigned(),
                        i % 9 == 0,
                        referrer,
                    );
                    c.fraud_reasons = u32::from(i % 13 == 0);
                    c
                })
                .collect();
            all.extend(clicks.iter().cloned());
            fold.add(u128::from(b.cast_unsigned()), clicks, &clock);
        }
        let window = fold.take_pending(&clock);
        let expected = aggregate(0, &all, &clock);
        assert_eq!(window.batch_ids, (0..6).collect::<Vec<u128>>());
        assert_eq!(window.clicks, 240);
        let flagged: Vec<_> = all
            .iter()
            .filter(|c| c.fraud_reasons != 0)
            .cloned()
            .collect();
        assert_eq!(window.flagged, flagged);
        let got = &window.aggregates;
        let now = Timestamp::from_millis(base + 3 * era);
        assert_same_sums(got, &expected, &clock, now);
        // The same clicks weighed directly.
        let link1: Vec<Timestamp> = all
            .iter()
            .filter(|c| c.link_id == LinkId(1) && is_human(c))
            .map(|c| c.at)
            .collect();
        let t1 = got
            .trending
            .iter()
            .find(|t| t.link_id == LinkId(1))
            .unwrap();
        let direct = clock.decayed_sum(link1, now);
        assert!((clock.score_at(t1.weight, t1.epoch, now) - direct).abs() <= 1e-9 * direct);
        // The sums were moved out, not copied: the fold holds nothing while they are written.
        assert_eq!((fold.bytes(), fold.flagged()), (0, 0));
        // A window whose write failed is put back whole and can be taken again ...
        fold.put_back(window.clone(), &clock);
        assert_eq!(fold.flagged(), flagged.len());
        assert_eq!(fold.take_pending(&clock), window);
        // ... or goes on folding: put back, then a later batch (a later era, new links among
        // them), it sums as if nothing had been taken out.
        fold.put_back(window, &clock);
        let later: Vec<StoredClick> = (0..30_i64)
            .map(|i| {
                let visitor = 20 + i.cast_unsigned();
                click(
                    3 + i % 4,
                    base + 4 * era + i * 100,
                    visitor,
                    i % 5 == 0,
                    None,
                )
            })
            .collect();
        all.extend(later.iter().cloned());
        fold.add(6, later, &clock);
        let again = fold.take_pending(&clock);
        let expected = aggregate(0, &all, &clock);
        assert_eq!(again.batch_ids, (0..7).collect::<Vec<u128>>());
        let now = Timestamp::from_millis(base + 5 * era);
        assert_same_sums(&again.aggregates, &expected, &clock, now);
    }

    /// Two batches hold the same sums; trending weights (against their epochs) score the
    /// same at `now`.
    fn assert_same_sums(
        got: &ClickBatch,
        expected: &ClickBatch,
        clock: &TrendingClock,
        now: Timestamp,
    ) {
        assert_eq!(got.hourly, expected.hourly);
        assert_eq!(got.breakdowns, expected.breakdowns);
        assert_eq!(got.visitors, expected.visitors);
        assert_eq!(got.link_totals, expected.link_totals);
        assert_eq!(got.trending.len(), expected.trending.len());
        for (g, e) in got.trending.iter().zip(&expected.trending) {
            assert_eq!((g.link_id, g.epoch), (e.link_id, e.epoch));
            let (g, e) = (
                clock.score_at(g.weight, g.epoch, now),
                clock.score_at(e.weight, e.epoch, now),
            );
            assert!((g - e).abs() <= 1e-9 * e.max(1.0), "{g} vs {e}");
        }
    }

    #[test]
    fn a_window_holds_a_visitor_once_however_often_it_clicks() {
        let h = Timestamp::MILLIS_PER_HOUR;
        let base = 1_800_000_000_000 / h * h;
        let clock = TrendingClock::new(3_600_000);
        let batch_of = |visitor: &dyn Fn(i64) -> u64| -> Vec<StoredClick> {
            (0..10_000_i64)
                .map(|i| click(1, base + i, visitor(i), false, None))
                .collect()
        };
        let mut repeat = WindowFold::default();
        let mut distinct = WindowFold::default();
        for b in 0..10_i64 {
            repeat.add(
                b.cast_unsigned().into(),
                batch_of(&|i| (i % 3).cast_unsigned()),
                &clock,
            );
            distinct.add(
                b.cast_unsigned().into(),
                batch_of(&|i| (b * 10_000 + i).cast_unsigned()),
                &clock,
            );
        }
        // 100,000 clicks by three visitors hold a few slots; by 100,000 visitors, at least
        // their 8-byte hashes and at most twice that (plus the maps).
        assert!(repeat.bytes() < 4096, "{} bytes", repeat.bytes());
        assert!(
            (800_000..2_000_000).contains(&distinct.bytes()),
            "{} bytes",
            distinct.bytes()
        );
        let visitors = |fold: &mut WindowFold| fold.take_pending(&clock).aggregates.visitors;
        let repeated = visitors(&mut repeat);
        assert_eq!(
            repeated.iter().map(|v| v.visitor).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        let all = visitors(&mut distinct);
        assert_eq!(all.len(), 100_000);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
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
