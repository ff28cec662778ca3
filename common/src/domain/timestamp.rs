//! `Timestamp`: milliseconds since the Unix epoch, UTC.
//!
//! One integer is what both databases store, what the redirect path compares against expiry,
//! and what the click pipeline buckets into hours; RFC 3339 is only for people (the API).

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::clock::Instant;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// How long [`Timestamp::at`] goes on from one reading of the wall clock.
const WALL_CLOCK_REREAD: Duration = Duration::from_secs(1);

thread_local! {
    /// A monotonic and a wall-clock reading (since the epoch) taken together, for
    /// [`Timestamp::at`].
    static ANCHOR: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// The wall clock, since the Unix epoch.
fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Timestamp {
    pub const MILLIS_PER_HOUR: i64 = 3_600_000;
    pub const MILLIS_PER_DAY: i64 = 86_400_000;

    pub fn now() -> Self {
        Self::since_epoch(wall_clock())
    }

    fn since_epoch(since: Duration) -> Self {
        Self(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// The wall-clock time at `at`, a recent reading of the monotonic clock
    /// ([`crate::clock`]; a request's start), without reading the wall clock: that is the
    /// vDSO's `clock_gettime`, tens of nanoseconds in a virtual machine. Each
    /// thread reads the wall clock again once a second, so a step of the system clock shows
    /// within a second; in between the time follows the monotonic clock, which NTP's slewing
    /// moves apart from the wall clock by under a millisecond a second.
    pub fn at(at: Instant) -> Self {
        let (base, wall) = ANCHOR.with(|anchor| {
            match anchor
                .get()
                .filter(|(base, _)| at.saturating_duration_since(*base) < WALL_CLOCK_REREAD)
            {
                Some(reading) => reading,
                None => {
                    let reading = (Instant::now(), wall_clock());
                    anchor.set(Some(reading));
                    reading
                }
            }
        });
        Self::since_epoch(match at.checked_duration_since(base) {
            Some(after) => wall + after,
            None => wall.saturating_sub(base - at),
        })
    }

    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Start of the UTC hour containing this instant.
    #[must_use]
    pub const fn hour_start(self) -> Self {
        Self(self.0.div_euclid(Self::MILLIS_PER_HOUR) * Self::MILLIS_PER_HOUR)
    }

    /// Start of the UTC day containing this instant.
    #[must_use]
    pub const fn day_start(self) -> Self {
        Self(self.0.div_euclid(Self::MILLIS_PER_DAY) * Self::MILLIS_PER_DAY)
    }

    #[must_use]
    pub const fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    pub fn parse_rfc3339(s: &str) -> Result<Self, time::error::Parse> {
        let dt = OffsetDateTime::parse(s, &Rfc3339)?;
        Ok(Self::from(dt))
    }

    pub fn to_rfc3339(self) -> String {
        OffsetDateTime::from(self)
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.0.to_string())
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(dt: OffsetDateTime) -> Self {
        let ms = dt.unix_timestamp_nanos() / 1_000_000;
        Self(i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX }))
    }
}

impl From<Timestamp> for OffsetDateTime {
    fn from(ts: Timestamp) -> Self {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_at_a_monotonic_reading_is_the_wall_clock_then() {
        let close = |a: Timestamp, b: Timestamp| (a.as_millis() - b.as_millis()).abs() <= 5;
        let before = Timestamp::now();
        let started = Instant::now();
        let at = Timestamp::at(started);
        assert!(close(at, before), "{at:?} {before:?}");
        // Later readings follow the monotonic clock from the same wall-clock reading.
        std::thread::sleep(Duration::from_millis(30));
        let later = Timestamp::at(Instant::now());
        assert!(close(later, Timestamp::now()), "{later:?}");
        assert!(later.as_millis() - at.as_millis() >= 30);
        // A reading from before the anchor, and one from long ago.
        assert_eq!(Timestamp::at(started), at);
        let long_ago = started.checked_sub(Duration::from_secs(10)).unwrap();
        assert!(close(
            Timestamp::at(long_ago),
            Timestamp::from_millis(at.as_millis() - 10_000)
        ));
        // Past the re-read interval the wall clock is read again.
        std::thread::sleep(WALL_CLOCK_REREAD + Duration::from_millis(10));
        assert!(close(Timestamp::at(Instant::now()), Timestamp::now()));
    }

    #[test]
    fn hours_and_days_are_bucketed_in_utc() {
        let t = Timestamp::parse_rfc3339("2026-11-27T13:45:12.345Z").unwrap();
        assert_eq!(t.hour_start().to_rfc3339(), "2026-11-27T13:00:00Z");
        assert_eq!(t.day_start().to_rfc3339(), "2026-11-27T00:00:00Z");
        let before_epoch = Timestamp::from_millis(-1);
        assert_eq!(
            before_epoch.hour_start().as_millis(),
            -Timestamp::MILLIS_PER_HOUR
        );
    }

    #[test]
    fn rfc3339_round_trips_with_offsets_normalised_to_utc() {
        let t = Timestamp::parse_rfc3339("2026-01-01T01:00:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-01T00:00:00Z");
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }
}
