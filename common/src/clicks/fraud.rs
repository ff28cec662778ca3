//! Fraud scoring: each click gets a bit set of reasons, computed in the batcher from the
//! click and a sliding view of recent clicks on this node. The redirect already happened;
//! scoring only decides how the click is counted (suspicious clicks are not human, and
//! stay out of unique visitors and trending) and what an administrator sees as evidence.
//!
//! With Redis configured, the per-address and per-visitor counts are shared by every node
//! (fixed windows of `INCRBY` counters with an expiry, one pipelined round trip per batch:
//! see [`Scorer::shared_counts`]), so an abuser spread over several proxies is still seen
//! whole; without Redis, or while it is unreachable, each node counts in sliding windows of
//! its own. A link's burst baseline is always per node.
//!
//! Time is the clicks' own (`at`), not the wall clock, so a replayed or synthetic stream is
//! scored exactly as it would have been live, and the rules are testable without sleeping.
//! Every window keeps at most threshold + 1 timestamps per key, and idle keys are dropped,
//! so memory follows the number of active addresses, visitors and links, not the click rate.

use std::collections::HashMap;
use std::net::IpAddr;

use linkgate_config::FraudSettings;
use smallvec::SmallVec;

use super::FastMap;

use crate::domain::{ClickEvent, ClickMethod, LinkId, StoredClick, Timestamp};

/// The reasons, one bit each. Stored with the click; names are what the API shows.
pub mod reason {
    /// No `User-Agent` header at all.
    pub const NO_USER_AGENT: u32 = 1 << 0;
    /// No `Accept` header (every browser sends one on navigation).
    pub const NO_ACCEPT: u32 = 1 << 1;
    /// A `HEAD` request: a checker or a preview, not a visit.
    pub const HEAD: u32 = 1 << 2;
    /// A prefetch or link preview (`Sec-Purpose`/`Purpose: prefetch`, `X-Moz: prefetch`).
    pub const PREFETCH: u32 = 1 << 3;
    /// Too many clicks from one address within 10 s.
    pub const IP_VELOCITY_10S: u32 = 1 << 4;
    /// Too many clicks from one address within a minute.
    pub const IP_VELOCITY_MINUTE: u32 = 1 << 5;
    /// One visitor clicking one link over and over.
    pub const REPEAT_VISITOR: u32 = 1 << 6;
    /// A link's click rate far above its own recent baseline.
    pub const BURST: u32 = 1 << 7;
    /// From a configured bad network (e.g. a data centre).
    pub const BAD_NETWORK: u32 = 1 << 8;
    /// Not a rule: set on a flagged click once an administrator confirmed it and it was
    /// taken out of the aggregates (so it is never taken out twice).
    pub const CONFIRMED: u32 = 1 << 30;

    /// Every reason with its API name, in bit order.
    pub const ALL: [(u32, &str); 10] = [
        (NO_USER_AGENT, "no_user_agent"),
        (NO_ACCEPT, "no_accept"),
        (HEAD, "head_request"),
        (PREFETCH, "prefetch"),
        (IP_VELOCITY_10S, "ip_velocity_10s"),
        (IP_VELOCITY_MINUTE, "ip_velocity_minute"),
        (REPEAT_VISITOR, "repeat_visitor"),
        (BURST, "burst"),
        (BAD_NETWORK, "bad_network"),
        (CONFIRMED, "confirmed"),
    ];

    /// The names of the reasons set in `bits`.
    pub fn names(bits: u32) -> Vec<&'static str> {
        ALL.iter()
            .filter(|(bit, _)| bits & bit != 0)
            .map(|(_, name)| *name)
            .collect()
    }
}

/// A link's rate is forgotten after this long without clicks, unless it has a baseline...
const IDLE_MS: i64 = 5 * 60_000;
/// ... then it is kept this long: a burst on a dormant link is judged against its own
/// (decayed) baseline rather than as a new link's (10x more lenient for 3 minutes). After an
/// hour the baseline has decayed to nothing (0.9^60) and the link is as good as new.
const SEASONED_IDLE_MS: i64 = 60 * 60_000;
/// Minutes of history after which a link's baseline judges it (see `link_bursts`).
const SEASONED_MINUTES: u32 = 3;
/// Housekeeping runs every this much click time: each map is then cut to what its own
/// window can still count (addresses a minute, visitor+link pairs the repeat window), so a
/// stream over a million links holds only the last few seconds of pairs.
const SWEEP_EVERY_MS: i64 = 10_000;
/// Weight of the newest minute in a link's per-minute baseline (an EWMA over ~10 minutes).
const BASELINE_ALPHA: f32 = 0.1;
const MINUTE_MS: i64 = 60_000;

/// The timestamps of one key's recent clicks, newest last, at most `cap` kept. Two fit
/// inline: most visitor+link pairs have one click, and a map of them allocates nothing else.
#[derive(Debug, Default)]
struct Recent {
    times: SmallVec<[i64; 2]>,
}

impl Recent {
    /// Records a click at `at` and returns how many of the kept clicks (this one included)
    /// fall within `window_ms` before it.
    fn hit(&mut self, at: i64, window_ms: i64, cap: usize) -> usize {
        let expired = self
            .times
            .iter()
            .take_while(|&&t| t <= at - window_ms)
            .count();
        self.times.drain(..expired);
        self.times.push(at);
        if self.times.len() > cap {
            let over = self.times.len() - cap;
            self.times.drain(..over);
        }
        self.times.len()
    }

    fn count_within(&self, at: i64, window_ms: i64) -> usize {
        self.times
            .iter()
            .rev()
            .take_while(|&&t| t > at - window_ms)
            .count()
    }

    fn last(&self) -> i64 {
        self.times.last().copied().unwrap_or(i64::MIN)
    }
}

/// A link's click rate: the current minute's count and an average of past minutes, in 16
/// bytes (a million links clicked within [`IDLE_MS`] each hold one).
#[derive(Debug, Default)]
struct Rate {
    /// Minutes since the epoch of the current minute (u32 lasts until the year 10136).
    minute: u32,
    count: u32,
    baseline: f32,
    /// Minutes observed (the baseline means nothing until a few have passed).
    minutes: u32,
}

/// Per shared window key: what other batches (on any node) put there before this batch,
/// plus this batch's clicks scored so far; and for each click of the batch, in order, the
/// positions of its three keys (built once, in [`Scorer::shared_counts`]).
#[derive(Debug, Default)]
pub struct SharedCounts {
    counts: Vec<u64>,
    keys_of: Vec<[usize; 3]>,
}

impl SharedCounts {
    /// The counts of click `index` in its three windows, itself included; `None` for a
    /// click the batch did not have.
    fn hit(&mut self, index: usize) -> Option<[u64; 3]> {
        let keys = *self.keys_of.get(index)?;
        Some(keys.map(|k| {
            self.counts[k] += 1;
            self.counts[k]
        }))
    }
}

/// Scores clicks; one per batcher (per node).
#[derive(Debug)]
pub struct Scorer {
    settings: FraudSettings,
    by_ip: FastMap<IpAddr, Recent>,
    by_visitor_link: FastMap<(u64, LinkId), Recent>,
    by_link: FastMap<LinkId, Rate>,
    /// Links (with ids that fit 32 bits) whose only click so far fell in the minute held:
    /// most links of a stream over many links, at 8 bytes each instead of a [`Rate`] and its
    /// key. A second click moves the link to `by_link` with exactly the rate it would have.
    first_clicks: FastMap<u32, u32>,
    /// Links without a seasoned rate that became busy (see [`Scorer::take_unseasoned`]),
    /// with the time of the click that made them so.
    unseasoned: Vec<(LinkId, i64)>,
    /// Links already put in `unseasoned`, with the minute they were: each is asked about
    /// once while it stays tracked.
    asked: FastMap<LinkId, u32>,
    /// Click time of the next housekeeping.
    next_sweep: i64,
}

impl Scorer {
    pub fn new(settings: FraudSettings) -> Self {
        Self {
            settings,
            by_ip: FastMap::default(),
            by_visitor_link: FastMap::default(),
            by_link: FastMap::default(),
            first_clicks: FastMap::default(),
            unseasoned: Vec::new(),
            asked: FastMap::default(),
            next_sweep: i64::MIN,
        }
    }

    /// The reasons for `click` (enriched from `event`), counting in this node's sliding
    /// windows.
    pub fn score(&mut self, event: &ClickEvent, click: &StoredClick) -> u32 {
        self.score_with(event, click, None)
    }

    /// Like [`Scorer::score`], with the address and visitor counts taken from `shared`
    /// (see [`Scorer::shared_counts`]) when given, with the click's position in the batch
    /// those counts were fetched for.
    pub fn score_with(
        &mut self,
        event: &ClickEvent,
        click: &StoredClick,
        shared: Option<(&mut SharedCounts, usize)>,
    ) -> u32 {
        if !self.settings.enabled {
            return 0;
        }
        let at = click.at.as_millis();
        let mut reasons = self.request_reasons(event);
        reasons |= match shared.and_then(|(shared, index)| shared.hit(index)) {
            Some(counts) => self.shared_velocity(counts),
            None => self.local_velocity(event, click),
        };
        if self.link_bursts(click.link_id, at) {
            reasons |= reason::BURST;
        }
        // Also when click time has gone back well before the last sweep (a clock step on
        // the proxy), so the maps are never left unswept until it catches up.
        if at >= self.next_sweep || at.saturating_add(2 * SWEEP_EVERY_MS) < self.next_sweep {
            self.sweep(at);
            self.next_sweep = at.saturating_add(SWEEP_EVERY_MS);
        }
        reasons
    }

    /// The shared window keys a click counts under, with their lifetimes: the address in
    /// its 10-second and 60-second windows, the visitor on the link in its repeat window.
    /// The address appears only as `ip_key`, a keyed hash under the day's visitor salt
    /// (the same on every node), so Redis never holds a client address.
    fn window_keys(&self, ip_key: u64, click: &StoredClick) -> [(String, u64); 3] {
        let at = click.at.as_millis();
        let repeat_ms = i64::try_from(self.settings.repeat_window_secs)
            .unwrap_or(3600)
            .saturating_mul(1000)
            .max(1);
        [
            (format!("ip10:{ip_key:x}:{}", at.div_euclid(10_000)), 20_000),
            (
                format!("ip60:{ip_key:x}:{}", at.div_euclid(MINUTE_MS)),
                120_000,
            ),
            (
                format!(
                    "rv:{:x}:{}:{}",
                    click.visitor,
                    click.link_id.0,
                    at.div_euclid(repeat_ms)
                ),
                u64::try_from(repeat_ms)
                    .unwrap_or(u64::MAX)
                    .saturating_mul(2),
            ),
        ]
    }

    /// Adds this batch's clicks (each with its address key, see
    /// [`crate::clicks::enrich::visitor_hash`] with an empty User-Agent) to the shared
    /// counters, one pipelined round trip per 5,000 keys, and returns what was there
    /// before, for [`Scorer::score_with`].
    pub async fn shared_counts(
        &self,
        redis: &crate::cache::RedisTier,
        ip_keys: &[u64],
        clicks: &[StoredClick],
        limit: std::time::Duration,
    ) -> Result<SharedCounts, crate::cache::RedisUnavailable> {
        // Each key once, numbered in order of first use: (number, clicks added, TTL).
        let mut numbered: HashMap<String, (usize, u64, u64)> = HashMap::new();
        let mut keys_of = Vec::with_capacity(clicks.len());
        for (&ip_key, click) in ip_keys.iter().zip(clicks) {
            keys_of.push(self.window_keys(ip_key, click).map(|(key, ttl)| {
                let next = numbered.len();
                let entry = numbered.entry(key).or_insert((next, 0, ttl));
                entry.1 += 1;
                entry.0
            }));
        }
        let mut entries = vec![(String::new(), 0, 0); numbered.len()];
        for (key, (at, added, ttl)) in numbered {
            entries[at] = (key, added, ttl);
        }
        let totals = redis.add_counts(&entries, limit).await?;
        let counts = entries
            .iter()
            .zip(totals)
            .map(|((_, added, _), total)| total.saturating_sub(*added))
            .collect();
        Ok(SharedCounts { counts, keys_of })
    }

    /// The velocity reasons for a click's counts in its shared windows (address in 10 s,
    /// address in a minute, visitor on the link: the order of [`Scorer::window_keys`]).
    fn shared_velocity(&self, [ip10, ip60, repeat]: [u64; 3]) -> u32 {
        let s = &self.settings;
        let mut reasons = 0;
        if ip10 > u64::from(s.ip_per_10s) {
            reasons |= reason::IP_VELOCITY_10S;
        }
        if ip60 > u64::from(s.ip_per_minute) {
            reasons |= reason::IP_VELOCITY_MINUTE;
        }
        if repeat > u64::from(s.repeat_max) {
            reasons |= reason::REPEAT_VISITOR;
        }
        reasons
    }

    /// Rules on the request itself.
    fn request_reasons(&self, event: &ClickEvent) -> u32 {
        let s = &self.settings;
        let mut reasons = 0;
        if event
            .user_agent
            .as_deref()
            .is_none_or(|ua| ua.trim().is_empty())
        {
            reasons |= reason::NO_USER_AGENT;
        }
        if s.flag_missing_accept && !event.has_accept {
            reasons |= reason::NO_ACCEPT;
        }
        if s.flag_head_and_prefetch {
            if event.method == ClickMethod::Head {
                reasons |= reason::HEAD;
            }
            if event.prefetch {
                reasons |= reason::PREFETCH;
            }
        }
        if s.bad_networks.iter().any(|n| n.contains(&event.client_ip)) {
            reasons |= reason::BAD_NETWORK;
        }
        reasons
    }

    /// Address velocity and visitor repeats in this node's sliding windows.
    fn local_velocity(&mut self, event: &ClickEvent, click: &StoredClick) -> u32 {
        let s = &self.settings;
        let at = click.at.as_millis();
        let mut reasons = 0;
        let ip_minute_cap = usize::try_from(s.ip_per_minute)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let ip_10s_cap = usize::try_from(s.ip_per_10s)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let recent = self.by_ip.entry(event.client_ip).or_default();
        let in_minute = recent.hit(at, MINUTE_MS, ip_minute_cap.max(ip_10s_cap));
        if in_minute > ip_minute_cap - 1 {
            reasons |= reason::IP_VELOCITY_MINUTE;
        }
        if recent.count_within(at, 10_000) > ip_10s_cap - 1 {
            reasons |= reason::IP_VELOCITY_10S;
        }

        let repeat_cap = usize::try_from(s.repeat_max)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let window = i64::try_from(s.repeat_window_secs).unwrap_or(i64::MAX / 1000) * 1000;
        let repeats = self
            .by_visitor_link
            .entry((click.visitor, click.link_id))
            .or_default()
            .hit(at, window, repeat_cap);
        if repeats > repeat_cap - 1 {
            reasons |= reason::REPEAT_VISITOR;
        }
        reasons
    }

    /// Counts the click in its link's current minute; true when that minute is a burst.
    fn link_bursts(&mut self, link: LinkId, at: i64) -> bool {
        let s = &self.settings;
        let minute = u32::try_from(at.div_euclid(MINUTE_MS).max(0)).unwrap_or(u32::MAX);
        if !self.by_link.contains_key(&link)
            && let Ok(small) = u32::try_from(link.0)
        {
            match self.first_clicks.entry(small) {
                std::collections::hash_map::Entry::Vacant(first) => {
                    // What a fresh rate would judge: one click, no history.
                    first.insert(minute);
                    return 1.0 > f64::from(s.burst_min_per_minute) * f64::from(s.burst_factor);
                }
                std::collections::hash_map::Entry::Occupied(first) => {
                    let first_minute = first.remove();
                    self.by_link.insert(
                        link,
                        Rate {
                            minute: first_minute,
                            count: 1,
                            baseline: 0.0,
                            minutes: 0,
                        },
                    );
                }
            }
        }
        let rate = self.by_link.entry(link).or_default();
        if rate.minutes == 0 && rate.count == 0 {
            rate.minute = minute;
        }
        if minute > rate.minute {
            // Close the finished minute and the empty minutes after it.
            let gap = minute - rate.minute;
            #[allow(clippy::cast_precision_loss, reason = "click counts per minute")]
            let finished = rate.count as f32;
            let keep = 1.0 - BASELINE_ALPHA;
            let mut baseline = rate.baseline * keep + finished * BASELINE_ALPHA;
            let idle = gap.saturating_sub(1).min(100);
            baseline *= keep.powi(i32::try_from(idle).unwrap_or(100));
            rate.baseline = baseline;
            rate.minutes = rate.minutes.saturating_add(gap);
            rate.minute = minute;
            rate.count = 0;
        }
        rate.count = rate.count.saturating_add(1);
        let threshold = (f64::from(rate.baseline) * f64::from(s.burst_factor))
            .max(f64::from(s.burst_min_per_minute));
        // A link needs a few minutes of history before its own baseline can judge it; a
        // brand-new link is judged by the absolute minimum alone.
        let count = f64::from(rate.count);
        let unseasoned = rate.minutes < SEASONED_MINUTES;
        let burst = if unseasoned {
            count > f64::from(s.burst_min_per_minute) * f64::from(s.burst_factor)
        } else {
            count > threshold
        };
        // Half way to the minimum a burst needs, an unseasoned link is worth a look at
        // its stored history: after a restart a popular link is not new.
        if unseasoned
            && rate.count >= (s.burst_min_per_minute / 2).max(1)
            && let std::collections::hash_map::Entry::Vacant(asked) = self.asked.entry(link)
        {
            asked.insert(minute);
            self.unseasoned.push((link, at));
        }
        burst
    }

    /// The links that became busy on this node (half of `burst_min_per_minute` clicks in a
    /// minute) without a rate of their own yet, with the time of the click that made them
    /// so: each once while it stays tracked. The caller looks up their recent clicks in the
    /// store and passes them to [`Scorer::seed_rate`]; until then they are judged as new.
    pub fn take_unseasoned(&mut self) -> Vec<(LinkId, i64)> {
        std::mem::take(&mut self.unseasoned)
    }

    /// The stored history a candidate taken at `newest` (ms, the latest of their click
    /// times) is seeded from: the clicks from the start of the previous hour on, and the
    /// minutes that span (60 to 120).
    pub fn seed_history(newest: i64) -> (Timestamp, u32) {
        let from = Timestamp::from_millis(newest)
            .hour_start()
            .plus_millis(-Timestamp::MILLIS_PER_HOUR);
        let minutes = (newest - from.as_millis()) / MINUTE_MS;
        (from, u32::try_from(minutes).unwrap_or(u32::MAX))
    }

    /// Seeds `link`'s baseline with `clicks` in the last `minutes` (the store's count, over
    /// every node) when it has no seasoned rate of its own: from now on it is judged against
    /// that history instead of as a new link. With several nodes the store's rate is
    /// theirs together, so a seeded node is more lenient at first; its own minutes take
    /// over as they pass (the baseline is an average over about ten minutes).
    pub fn seed_rate(&mut self, link: LinkId, clicks: u64, minutes: u32) {
        if clicks == 0 || minutes == 0 {
            return;
        }
        if let Some(rate) = self.by_link.get_mut(&link)
            && rate.minutes < SEASONED_MINUTES
        {
            #[allow(clippy::cast_precision_loss, reason = "a click rate")]
            let per_minute = clicks as f32 / minutes as f32;
            rate.baseline = per_minute;
            rate.minutes = SEASONED_MINUTES;
        }
    }

    /// Forgets what no window can count any more.
    fn sweep(&mut self, now: i64) {
        let repeat_ms = i64::try_from(self.settings.repeat_window_secs)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        let ip_cutoff = now - MINUTE_MS;
        let pair_cutoff = now.saturating_sub(repeat_ms);
        let minute_of = |at: i64| u32::try_from(at.div_euclid(MINUTE_MS).max(0)).unwrap_or(0);
        let (idle, seasoned_idle) = (minute_of(now - IDLE_MS), minute_of(now - SEASONED_IDLE_MS));
        self.by_ip.retain(|_, r| r.last() > ip_cutoff);
        self.by_visitor_link.retain(|_, r| r.last() > pair_cutoff);
        self.by_link.retain(|_, r| {
            r.minute >= idle || (r.minutes >= SEASONED_MINUTES && r.minute >= seasoned_idle)
        });
        self.first_clicks.retain(|_, minute| *minute >= idle);
        let by_link = &self.by_link;
        self.asked
            .retain(|link, minute| *minute >= idle || by_link.contains_key(link));
        // Give back what a past peak grew the tables to.
        shrink_if_sparse(&mut self.by_ip);
        shrink_if_sparse(&mut self.by_visitor_link);
        shrink_if_sparse(&mut self.by_link);
        shrink_if_sparse(&mut self.first_clicks);
        shrink_if_sparse(&mut self.asked);
    }

    /// Keys currently tracked (addresses, visitor+link pairs, links): for tests and metrics.
    pub fn tracked(&self) -> (usize, usize, usize) {
        (
            self.by_ip.len(),
            self.by_visitor_link.len(),
            self.by_link.len() + self.first_clicks.len(),
        )
    }
}

/// Shrinks a table holding less than a quarter of its capacity (and more than a few
/// thousand slots), so memory follows the current traffic rather than its peak.
fn shrink_if_sparse<K: std::hash::Hash + Eq, V>(map: &mut FastMap<K, V>) {
    if map.capacity() > 4096 && map.len() < map.capacity() / 4 {
        map.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClickId, Timestamp};

    fn event(ip: &str, at: i64) -> (ClickEvent, StoredClick) {
        let at = Timestamp::from_millis(at);
        let event = ClickEvent {
            click_id: ClickId::at(at),
            at,
            link_id: LinkId(1),
            client_ip: ip.parse().unwrap(),
            user_agent: Some("Mozilla/5.0 Firefox/133.0".into()),
            referrer: None,
            has_accept: true,
            method: ClickMethod::Get,
            country: None,
            prefetch: false,
        };
        let click = StoredClick {
            click_id: event.click_id,
            link_id: event.link_id,
            at,
            visitor: 7,
            ip: None,
            referrer_host: None,
            country: None,
            device: "desktop".into(),
            browser: "Firefox".into(),
            os: "Linux".into(),
            is_bot: false,
            fraud_reasons: 0,
        };
        (event, click)
    }

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn a_normal_click_has_no_reason() {
        let mut scorer = Scorer::new(FraudSettings::default());
        let (e, c) = event("192.0.2.1", T0);
        assert_eq!(scorer.score(&e, &c), 0);
    }

    #[test]
    fn request_shape_rules_flag_their_own_reason() {
        let mut scorer = Scorer::new(FraudSettings {
            bad_networks: vec!["203.0.113.0/24".parse().unwrap()],
            ..FraudSettings::default()
        });
        let (mut e, c) = event("192.0.2.1", T0);
        e.user_agent = None;
        assert_eq!(scorer.score(&e, &c), reason::NO_USER_AGENT);
        let (mut e, mut c) = event("192.0.2.2", T0);
        e.has_accept = false;
        c.visitor = 8;
        assert_eq!(scorer.score(&e, &c), reason::NO_ACCEPT);
        let (mut e, mut c) = event("192.0.2.3", T0);
        e.method = ClickMethod::Head;
        e.prefetch = true;
        c.visitor = 9;
        assert_eq!(scorer.score(&e, &c), reason::HEAD | reason::PREFETCH);
        let (e, mut c) = event("203.0.113.9", T0);
        c.visitor = 10;
        assert_eq!(scorer.score(&e, &c), reason::BAD_NETWORK);
        assert_eq!(
            reason::names(reason::HEAD | reason::BURST),
            ["head_request", "burst"]
        );
    }

    #[test]
    fn the_click_after_the_threshold_is_flagged_and_the_window_slides() {
        let settings = FraudSettings {
            ip_per_10s: 3,
            ip_per_minute: 100,
            repeat_max: 100,
            ..FraudSettings::default()
        };
        let mut scorer = Scorer::new(settings);
        let mut flags = Vec::new();
        for i in 0..5 {
            let (e, mut c) = event("192.0.2.1", T0 + i * 1000);
            c.visitor = u64::try_from(i).unwrap();
            flags.push(scorer.score(&e, &c) & reason::IP_VELOCITY_10S != 0);
        }
        assert_eq!(flags, [false, false, false, true, true]);
        // 10 s after the first four, the address is clean again.
        let (e, mut c) = event("192.0.2.1", T0 + 14_500);
        c.visitor = 99;
        assert_eq!(scorer.score(&e, &c), 0);
    }

    #[test]
    fn one_visitor_hammering_one_link_is_a_repeat() {
        let mut scorer = Scorer::new(FraudSettings::default());
        let reasons: Vec<u32> = (0..7)
            .map(|i| {
                let (e, c) = event("192.0.2.1", T0 + i * 100);
                scorer.score(&e, &c)
            })
            .collect();
        assert_eq!(reasons[..5], [0; 5]);
        assert_eq!(reasons[5], reason::REPEAT_VISITOR);
    }

    /// Burst minimum 20 a minute, factor 10, and no address or repeat limit in reach.
    fn burst_only() -> FraudSettings {
        FraudSettings {
            burst_factor: 10,
            burst_min_per_minute: 20,
            ip_per_10s: 1_000_000,
            ip_per_minute: 1_000_000,
            repeat_max: 1000,
            ..FraudSettings::default()
        }
    }

    #[test]
    fn a_burst_is_judged_against_the_links_own_baseline() {
        let mut scorer = Scorer::new(burst_only());
        let mut visitor = 0;
        let mut click_at = |scorer: &mut Scorer, at: i64| {
            visitor += 1;
            let (e, mut c) = event("192.0.2.1", at);
            c.visitor = visitor;
            scorer.score(&e, &c)
        };
        // Ten quiet minutes at 10 clicks a minute: never a burst.
        for minute in 0..10 {
            for i in 0..10 {
                assert_eq!(click_at(&mut scorer, T0 + minute * MINUTE_MS + i * 1000), 0);
            }
        }
        // Then 300 clicks in one minute: the clicks beyond ~10x the baseline are flagged.
        let flagged = (0..300)
            .filter(|i| click_at(&mut scorer, T0 + 10 * MINUTE_MS + i * 100) & reason::BURST != 0)
            .count();
        assert!((150..=250).contains(&flagged), "{flagged}");
    }

    #[test]
    fn a_busy_link_new_to_this_node_is_judged_by_its_stored_rate_once_seeded() {
        let burst_on = |scorer: &mut Scorer, link: i64, n: i64, at: i64| {
            (0..n)
                .filter(|&i| {
                    let (e, mut c) = event("192.0.2.1", at + i * 10);
                    c.link_id = LinkId(link);
                    c.visitor = u64::try_from(i).unwrap();
                    scorer.score(&e, &c) & reason::BURST != 0
                })
                .count()
        };
        // A restarted node: 15 clicks in its first minute on each of three links.
        let mut scorer = Scorer::new(burst_only());
        for link in [1, 2, 3] {
            assert_eq!(burst_on(&mut scorer, link, 15, T0), 0, "link {link}");
        }
        // Each became a candidate once, at its 10th click (half the minimum a burst needs).
        let wanted = scorer.take_unseasoned();
        assert_eq!(
            wanted,
            [1, 2, 3].map(|l| (LinkId(l), T0 + 9 * 10)),
            "each link once"
        );
        assert!(scorer.take_unseasoned().is_empty());
        burst_on(&mut scorer, 1, 10, T0 + 5_000);
        assert!(
            scorer.take_unseasoned().is_empty(),
            "a link is asked about once"
        );
        // The store's history: link 1 has 600 a minute, link 2 one a minute, link 3 none.
        // With this node's first minute averaged in (15 clicks at 0.1), the thresholds of
        // the next minute are 10 x 541.5 for link 1 and max(10 x 2.4, 20) = 24 for link 2;
        // link 3 is still new (floor 20 x 10 = 200), as every link was before seeding.
        scorer.seed_rate(LinkId(1), 60_000, 100);
        scorer.seed_rate(LinkId(2), 100, 100);
        scorer.seed_rate(LinkId(3), 0, 100);
        let next = T0 + MINUTE_MS;
        assert_eq!(burst_on(&mut scorer, 1, 1_000, next), 0);
        assert_eq!(burst_on(&mut scorer, 2, 300, next), 276);
        assert_eq!(burst_on(&mut scorer, 3, 300, next), 100);
        // A seasoned link is not re-seeded: link 2 keeps its own baseline.
        scorer.seed_rate(LinkId(2), 6_000_000, 100);
        assert_eq!(burst_on(&mut scorer, 2, 300, next + 10_000), 300);
    }

    #[test]
    fn a_dormant_link_with_history_keeps_it_and_a_clock_step_back_still_sweeps() {
        let mut scorer = Scorer::new(FraudSettings::default());
        let click_on = |scorer: &mut Scorer, link: i64, ip: &str, at: i64| {
            let (e, mut c) = event(ip, at);
            c.link_id = LinkId(link);
            scorer.score(&e, &c)
        };
        // Link 7: a click a minute for 5 minutes (seasoned, baseline ~0.4 a minute).
        for minute in 0..5 {
            click_on(&mut scorer, 7, "198.51.100.1", T0 + minute * MINUTE_MS);
        }
        // 20 quiet minutes (other traffic sweeps meanwhile), then 200 clicks in a minute from
        // many addresses: judged by the link's own baseline (threshold 120), not as a new
        // link (1,200), so the clicks past 120 are bursts.
        for minute in 5..25 {
            click_on(&mut scorer, 8, "198.51.100.2", T0 + minute * MINUTE_MS);
        }
        let at = T0 + 25 * MINUTE_MS;
        let bursts = (0..200)
            .filter(|i| {
                let ip = format!("10.9.{}.{}", i / 200, i % 200);
                click_on(&mut scorer, 7, &ip, at + i * 100) & reason::BURST != 0
            })
            .count();
        assert_eq!(bursts, 80);
        // The clock steps back an hour: sweeping goes on from the new time (addresses seen
        // after the step are forgotten a minute later, as usual).
        let back = at - 60 * MINUTE_MS;
        click_on(&mut scorer, 7, "192.0.2.9", back);
        click_on(&mut scorer, 7, "192.0.2.10", back + 1_000);
        let with_new = scorer.tracked().0;
        click_on(&mut scorer, 7, "192.0.2.9", back + 150_000);
        assert_eq!(scorer.tracked().0, with_new - 1);
    }

    #[test]
    fn a_link_judged_from_the_first_click_table_is_judged_as_with_a_full_rate() {
        // Link 5 starts in the compact first-click table; a link id beyond 32 bits never
        // does. The same clicks must get the same reasons on both, over minutes with single
        // clicks, gaps, a burst and a step back of the clock.
        let settings = FraudSettings {
            burst_min_per_minute: 3,
            burst_factor: 2,
            ..FraudSettings::default()
        };
        let mut pattern: Vec<i64> = vec![0, 70_000, 200_000];
        pattern.extend((0..12).map(|i| 400_000 + i * 1_000));
        pattern.extend([900_000, 890_000, 1_500_000]);
        pattern.extend((0..30).map(|i| 1_560_000 + i * 500));
        let run = |link: i64| -> Vec<u32> {
            let mut scorer = Scorer::new(settings.clone());
            pattern
                .iter()
                .enumerate()
                .map(|(i, at)| {
                    let (e, mut c) = event(&format!("10.0.{}.{}", i / 250, i % 250), T0 + at);
                    c.link_id = LinkId(link);
                    c.visitor = i as u64;
                    scorer.score(&e, &c)
                })
                .collect()
        };
        let small = run(5);
        assert_eq!(small, run(1 << 40));
        assert!(small.iter().any(|r| r & reason::BURST != 0), "{small:?}");
    }

    #[test]
    fn idle_keys_are_forgotten_each_after_its_own_window() {
        let mut scorer = Scorer::new(FraudSettings::default());
        let n: u64 = 50_000;
        for i in 0..n {
            let (e, mut c) = event(
                &format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255),
                T0 + i64::try_from(i / 10).unwrap(),
            );
            c.visitor = i;
            c.link_id = LinkId(i64::try_from(i).unwrap());
            scorer.score(&e, &c);
        }
        let count = usize::try_from(n).unwrap();
        assert_eq!(scorer.tracked(), (count, count, count), "all recent");
        // 30 s later: past the repeat window (10 s) but within the address minute.
        let (e, c) = event("192.0.2.1", T0 + 35_000);
        scorer.score(&e, &c);
        assert_eq!(scorer.tracked(), (count + 1, 1, count));
        // 2 minutes later: addresses forgotten, links' rates kept (5 minutes).
        let (e, c) = event("192.0.2.1", T0 + 125_000);
        scorer.score(&e, &c);
        assert_eq!(scorer.tracked(), (1, 1, count));
        let (e, c) = event("192.0.2.1", T0 + IDLE_MS + 125_000);
        scorer.score(&e, &c);
        assert_eq!(scorer.tracked(), (1, 1, 1), "only the one still active");
    }
}
