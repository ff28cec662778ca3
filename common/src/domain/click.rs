//! Clicks: the raw event the proxy captures, and the enriched rows the pipeline writes.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ids::{ClickId, LinkId};
use super::timestamp::Timestamp;

/// Longest User-Agent, referrer and Accept kept from a request; longer values are cut so a
/// hostile client cannot make the queue hold megabytes.
pub const MAX_CAPTURED_HEADER_BYTES: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ClickMethod {
    Get,
    Head,
    Post,
}

/// What the proxy knows about a redirect at the moment it answers it. Pushed onto the click
/// queue without awaiting; everything expensive (parsing the UA, GeoIP) happens later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickEvent {
    pub click_id: ClickId,
    pub at: Timestamp,
    pub link_id: LinkId,
    pub client_ip: IpAddr,
    pub user_agent: Option<Box<str>>,
    pub referrer: Option<Box<str>>,
    /// Whether a non-blank `Accept` header came with the request (browsers always send
    /// one; only the fraud checks ask, so the value itself is not kept).
    pub has_accept: bool,
    pub method: ClickMethod,
    /// Country from a trusted load-balancer header, when configured.
    pub country: Option<[u8; 2]>,
    /// A prefetch or link preview, not a visit (`Sec-Purpose`/`Purpose: prefetch`,
    /// `X-Moz: prefetch`).
    pub prefetch: bool,
}

/// Cuts a header value to the capture limit on a character boundary.
pub fn capture_header(value: &str) -> Box<str> {
    if value.len() <= MAX_CAPTURED_HEADER_BYTES {
        return value.into();
    }
    let mut end = MAX_CAPTURED_HEADER_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].into()
}

/// A click as stored: enriched, with the visitor reduced to a keyed hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredClick {
    /// A UUIDv7 carrying the millisecond of `at` (retention purges by id range).
    pub click_id: ClickId,
    pub link_id: LinkId,
    pub at: Timestamp,
    /// Keyed hash of IP + User-Agent with a daily salt: counts unique visitors without
    /// keeping who they are.
    pub visitor: u64,
    /// Only when raw IP storage is configured (possibly truncated).
    pub ip: Option<String>,
    pub referrer_host: Option<String>,
    /// ISO 3166-1 alpha-2, upper-case.
    pub country: Option<String>,
    /// Device class, browser and OS: shared with the User-Agent cache and every click of the
    /// same User-Agent (no allocation per click).
    #[serde(with = "shared_str")]
    pub device: Arc<str>,
    #[serde(with = "shared_str")]
    pub browser: Arc<str>,
    #[serde(with = "shared_str")]
    pub os: Arc<str>,
    pub is_bot: bool,
    /// Bit set of fraud reasons; 0 means not suspicious.
    pub fraud_reasons: u32,
}

/// Additive counters for one link in one UTC hour, pre-summed within a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HourlyDelta {
    pub link_id: LinkId,
    pub hour: Timestamp,
    pub total: u64,
    pub human: u64,
    pub bot: u64,
    pub suspicious: u64,
}

/// The dimensions analytics break clicks down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Referrer,
    Country,
    Device,
    Browser,
    Os,
}

impl Dimension {
    pub const ALL: [Self; 5] = [
        Self::Referrer,
        Self::Country,
        Self::Device,
        Self::Browser,
        Self::Os,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Referrer => "referrer",
            Self::Country => "country",
            Self::Device => "device",
            Self::Browser => "browser",
            Self::Os => "os",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// An additive counter for one value of one dimension, per link and UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BreakdownDelta {
    pub link_id: LinkId,
    pub day: Timestamp,
    pub dimension: Dimension,
    /// Bounded by the enrichment step (host names, codes, class names), at most 255 bytes.
    /// Shared: a batch holds each distinct value once however many links it counts under.
    #[serde(with = "shared_str")]
    pub value: Arc<str>,
    pub count: u64,
}

/// Serde for shared text: written and read as a plain string (the journal's format is that
/// of a `String`).
mod shared_str {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(d).map(Arc::from)
    }
}

/// Batches written with `write_click_segments` whose aggregates the writing node still
/// holds, folded together (`clicks::batch::WindowFold`): what it hands to
/// `apply_aggregates`.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingWindow {
    pub batch_ids: Vec<u128>,
    /// The aggregates of all their clicks, rows sorted (no raw clicks; batch id 0).
    pub aggregates: ClickBatch,
    /// Their flagged clicks, for the links' flagged segments.
    pub flagged: Vec<StoredClick>,
    /// How many clicks the batches hold.
    pub clicks: u64,
}

/// Everything one flush writes, applied atomically and at most once (by `batch_id`): a batch
/// replayed from the journal after a crash cannot double-count its aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClickBatch {
    pub batch_id: u128,
    pub clicks: Vec<StoredClick>,
    pub hourly: Vec<HourlyDelta>,
    pub breakdowns: Vec<BreakdownDelta>,
    /// Distinct (link, hour, visitor) triples of human clicks in the batch; the store folds
    /// them into per-hour and per-day visitor sketches.
    pub visitors: Vec<VisitorHour>,
    /// Per-link increments of `links.clicks`.
    pub link_totals: Vec<(LinkId, u64)>,
    /// Per-link increments of the decayed trending score (human clicks only).
    pub trending: Vec<TrendingDelta>,
    /// The trending clock's era length and era carry factor the deltas were computed with
    /// (see `clicks::trending`), so a replayed batch is applied exactly as it was built.
    pub trending_era_ms: i64,
    pub trending_carry: f64,
}

/// A trending score increment: `sum of e^(lambda (t - epoch))` over a link's human clicks
/// in a batch (see `clicks::trending`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrendingDelta {
    pub link_id: LinkId,
    pub epoch: Timestamp,
    pub weight: f64,
}

/// Time buckets analytics are served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Hour,
    Day,
}

impl Granularity {
    /// The stored tag of a bucket of this size.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Hour => "h",
            Self::Day => "d",
        }
    }

    /// The granularity a stored tag stands for.
    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "h" => Some(Self::Hour),
            "d" => Some(Self::Day),
            _ => None,
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            Self::Hour => Timestamp::MILLIS_PER_HOUR,
            Self::Day => Timestamp::MILLIS_PER_DAY,
        }
    }

    /// Start of the bucket containing `at`.
    pub fn bucket(self, at: Timestamp) -> Timestamp {
        match self {
            Self::Hour => at.hour_start(),
            Self::Day => at.day_start(),
        }
    }
}

/// A visitor seen on a link in a UTC hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VisitorHour {
    pub link_id: LinkId,
    pub hour: Timestamp,
    pub visitor: u64,
}

/// What writing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Written now; `inserted` raw clicks were new (duplicates by click id are skipped).
    Applied { inserted: u64 },
    /// This batch id was written before; nothing changed.
    AlreadyApplied,
}

/// One hour of counters read back from the hourly aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HourlyCounts {
    pub hour: Timestamp,
    pub total: u64,
    pub human: u64,
    pub bot: u64,
    pub suspicious: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_headers_are_cut_on_a_character_boundary() {
        let long = "é".repeat(400);
        let cut = capture_header(&long);
        assert!(cut.len() <= MAX_CAPTURED_HEADER_BYTES);
        assert!(cut.len() >= MAX_CAPTURED_HEADER_BYTES - 1);
        assert_eq!(&*capture_header("curl/8"), "curl/8");
    }

    #[test]
    fn dimensions_round_trip_through_text() {
        for d in Dimension::ALL {
            assert_eq!(Dimension::parse(d.as_str()), Some(d));
        }
    }
}
