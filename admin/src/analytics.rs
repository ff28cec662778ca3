//! A link's analytics report, read from aggregates only (hourly counters, daily breakdowns,
//! visitor sketches): never a scan of raw clicks, so it stays fast at millions of clicks.
//!
//! Buckets: hours are UTC hours; days are the requested time zone's days (UTC by default).
//! Counters are stored per UTC hour, so a local day is the hours whose start falls in it:
//! exact for zones with whole-hour offsets, within the offset's 30/45 minutes otherwise.
//! Breakdowns are stored per UTC day and cover the UTC days the range touches.

use jiff::tz::TimeZone;
use linkgate_common::domain::{Dimension, Granularity, HourlyCounts, Link, Timestamp};
use serde::Serialize;

use crate::problem::ApiError;
use crate::state::AppState;

/// Most buckets one report may have (a month of hours, a year of days).
pub const MAX_HOUR_BUCKETS: usize = 24 * 31;
pub const MAX_DAY_BUCKETS: usize = 366;
/// Top values listed per dimension.
const TOP_N: u32 = 10;

/// What the caller asked for, validated.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    pub from: Option<String>,
    pub to: Option<String>,
    pub granularity: Granularity,
    pub tz: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub clicks: u64,
    pub human: u64,
    pub bot: u64,
    pub suspicious: u64,
    pub unique_visitors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// Start of the bucket, RFC 3339 in the requested zone.
    pub start: String,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopValue {
    pub value: String,
    pub clicks: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub code: String,
    pub domain: String,
    pub from: String,
    pub to: String,
    pub granularity: Granularity,
    pub tz: String,
    pub totals: Counts,
    pub series: Vec<Bucket>,
    pub referrers: Vec<TopValue>,
    pub countries: Vec<TopValue>,
    pub devices: Vec<TopValue>,
    pub browsers: Vec<TopValue>,
    pub os: Vec<TopValue>,
}

/// Bucket boundaries (UTC ms, each on a UTC hour) b0 < b1 < ... < bn for the request.
fn boundaries(req: &ReportRequest, tz: &TimeZone, now: Timestamp) -> Result<Vec<i64>, ApiError> {
    let parse = |field: &str, s: &str| {
        Timestamp::parse_rfc3339(s).map_err(|_| {
            ApiError::invalid(
                field,
                "must be an RFC 3339 time such as 2026-11-01T00:00:00Z",
            )
        })
    };
    let to = req
        .to
        .as_deref()
        .map(|s| parse("to", s))
        .transpose()?
        .unwrap_or(now);
    let default_span = match req.granularity {
        Granularity::Hour => 48 * Timestamp::MILLIS_PER_HOUR,
        Granularity::Day => 30 * Timestamp::MILLIS_PER_DAY,
    };
    let from = req
        .from
        .as_deref()
        .map(|s| parse("from", s))
        .transpose()?
        .unwrap_or(to.plus_millis(-default_span));
    if from >= to {
        return Err(ApiError::invalid("from", "must be before `to`"));
    }
    let (max, step_hours) = match req.granularity {
        Granularity::Hour => (MAX_HOUR_BUCKETS, 1),
        Granularity::Day => (MAX_DAY_BUCKETS, 24),
    };
    let span_hours = (to.as_millis() - from.as_millis()) / Timestamp::MILLIS_PER_HOUR;
    if usize::try_from(span_hours / step_hours).unwrap_or(usize::MAX) > max {
        return Err(ApiError::invalid(
            "to",
            format!(
                "the range may span at most {max} {}s",
                match req.granularity {
                    Granularity::Hour => "hour",
                    Granularity::Day => "day",
                }
            ),
        ));
    }
    let bad_time = |_| ApiError::invalid("from", "is outside the supported range");
    let mut bounds = Vec::new();
    match req.granularity {
        Granularity::Hour => {
            let mut at = from.hour_start().as_millis();
            while at < to.as_millis() {
                bounds.push(at);
                at += Timestamp::MILLIS_PER_HOUR;
            }
            bounds.push(at);
        }
        Granularity::Day => {
            let start = jiff::Timestamp::from_millisecond(from.as_millis()).map_err(bad_time)?;
            let mut day = start
                .to_zoned(tz.clone())
                .start_of_day()
                .map_err(bad_time)?;
            loop {
                let ms = day.timestamp().as_millisecond();
                // Counters are per UTC hour: a local midnight inside an hour uses that hour.
                bounds.push(ms - ms.rem_euclid(Timestamp::MILLIS_PER_HOUR));
                if ms >= to.as_millis() {
                    break;
                }
                day = day.tomorrow().map_err(bad_time)?;
            }
        }
    }
    bounds.dedup();
    Ok(bounds)
}

fn format_in(tz: &TimeZone, ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(
        |_| Timestamp::from_millis(ms).to_rfc3339(),
        |t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        },
    )
}

/// Parses an IANA zone name (`Europe/Berlin`) or `UTC`.
pub fn parse_tz(tz: Option<&str>) -> Result<TimeZone, ApiError> {
    match tz {
        None | Some("UTC" | "utc" | "Etc/UTC") => Ok(TimeZone::UTC),
        Some(name) if name.len() <= 64 => TimeZone::get(name).map_err(|_| {
            ApiError::invalid("tz", "is not a known IANA time zone such as Europe/Berlin")
        }),
        Some(_) => Err(ApiError::invalid("tz", "is not a known IANA time zone")),
    }
}

/// Builds the report for `link`.
pub async fn report(
    state: &AppState,
    link: &Link,
    req: &ReportRequest,
) -> Result<Report, ApiError> {
    let tz = parse_tz(req.tz.as_deref())?;
    let bounds = boundaries(req, &tz, Timestamp::now())?;
    let (first, last) = (bounds[0], bounds[bounds.len() - 1]);
    let (from, to) = (Timestamp::from_millis(first), Timestamp::from_millis(last));
    let store = &state.store;
    let hourly = store.hourly_counts(link.id, from, to).await?;
    let mut series: Vec<Counts> = vec![Counts::default(); bounds.len() - 1];
    let mut totals = Counts::default();
    for HourlyCounts {
        hour,
        total,
        human,
        bot,
        suspicious,
    } in hourly
    {
        let i = bounds
            .partition_point(|&b| b <= hour.as_millis())
            .saturating_sub(1);
        if let Some(bucket) = series.get_mut(i) {
            bucket.clicks += total;
            bucket.human += human;
            bucket.bot += bot;
            bucket.suspicious += suspicious;
        }
        totals.clicks += total;
        totals.human += human;
        totals.bot += bot;
        totals.suspicious += suspicious;
    }
    let utc_days = req.granularity == Granularity::Day
        && bounds
            .iter()
            .all(|b| b.rem_euclid(Timestamp::MILLIS_PER_DAY) == 0);
    if req.granularity == Granularity::Hour || utc_days {
        // Buckets are the store's own: one query for the whole series.
        for (at, visitors) in store
            .visitor_series(link.id, from, to, req.granularity)
            .await?
        {
            if let Ok(i) = bounds.binary_search(&at.as_millis())
                && let Some(bucket) = series.get_mut(i)
            {
                bucket.unique_visitors = visitors;
            }
        }
    } else {
        // Local days: one read of the hourly sketches, merged per bucket.
        let stamps: Vec<Timestamp> = bounds.iter().map(|&b| Timestamp::from_millis(b)).collect();
        for (bucket, visitors) in series
            .iter_mut()
            .zip(store.visitor_buckets(link.id, &stamps).await?)
        {
            bucket.unique_visitors = visitors;
        }
    }
    totals.unique_visitors = store.unique_visitors(link.id, from, to).await?;
    let mut tops = Vec::with_capacity(Dimension::ALL.len());
    for dimension in Dimension::ALL {
        let rows = store
            .top_breakdown(link.id, dimension, from.day_start(), to, TOP_N)
            .await?;
        tops.push(
            rows.into_iter()
                .map(|(value, clicks)| TopValue { value, clicks })
                .collect::<Vec<_>>(),
        );
    }
    let mut tops = tops.into_iter();
    let mut next = || tops.next().unwrap_or_default();
    Ok(Report {
        code: link.code.as_str().to_owned(),
        domain: link.domain.as_str().to_owned(),
        from: format_in(&tz, first),
        to: format_in(&tz, last),
        granularity: req.granularity,
        tz: tz.iana_name().unwrap_or("UTC").to_owned(),
        totals,
        series: bounds
            .iter()
            .zip(series)
            .map(|(&start, counts)| Bucket {
                start: format_in(&tz, start),
                counts,
            })
            .collect(),
        referrers: next(),
        countries: next(),
        devices: next(),
        browsers: next(),
        os: next(),
    })
}

/// The series as CSV.
pub fn to_csv(report: &Report) -> Result<Vec<u8>, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| ApiError::Internal(format!("csv: {e}"));
    writer
        .write_record([
            "start",
            "clicks",
            "human",
            "bot",
            "suspicious",
            "unique_visitors",
        ])
        .map_err(fail)?;
    for b in &report.series {
        let c = b.counts;
        writer
            .write_record([
                b.start.clone(),
                c.clicks.to_string(),
                c.human.to_string(),
                c.bot.to_string(),
                c.suspicious.to_string(),
                c.unique_visitors.to_string(),
            ])
            .map_err(fail)?;
    }
    writer
        .into_inner()
        .map_err(|e| ApiError::Internal(format!("csv: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        g: Granularity,
        from: &str,
        to: &str,
        tz: Option<&str>,
    ) -> (ReportRequest, TimeZone) {
        (
            ReportRequest {
                from: Some(from.to_owned()),
                to: Some(to.to_owned()),
                granularity: g,
                tz: tz.map(str::to_owned),
            },
            parse_tz(tz).unwrap(),
        )
    }

    #[test]
    fn hours_are_utc_hours_covering_the_range() {
        let (req, tz) = request(
            Granularity::Hour,
            "2026-11-01T10:30:00Z",
            "2026-11-01T13:00:00Z",
            None,
        );
        let b = boundaries(&req, &tz, Timestamp::now()).unwrap();
        assert_eq!(b.len(), 4, "10, 11, 12 and the end at 13");
        assert_eq!(
            Timestamp::from_millis(b[0]).to_rfc3339(),
            "2026-11-01T10:00:00Z"
        );
    }

    #[test]
    fn days_follow_the_requested_zone_across_a_dst_change() {
        // Europe/Berlin left summer time on 2026-10-25: that day has 25 hours.
        let (req, tz) = request(
            Granularity::Day,
            "2026-10-24T12:00:00Z",
            "2026-10-26T12:00:00Z",
            Some("Europe/Berlin"),
        );
        let b = boundaries(&req, &tz, Timestamp::now()).unwrap();
        assert_eq!(format_in(&tz, b[0]), "2026-10-24T00:00:00+02:00");
        assert_eq!(b[2] - b[1], 25 * Timestamp::MILLIS_PER_HOUR);
        assert_eq!(format_in(&tz, b[2]), "2026-10-26T00:00:00+01:00");
    }

    #[test]
    fn bad_ranges_and_zones_are_refused() {
        let (req, tz) = request(
            Granularity::Hour,
            "2026-11-02T00:00:00Z",
            "2026-11-01T00:00:00Z",
            None,
        );
        assert!(boundaries(&req, &tz, Timestamp::now()).is_err());
        let (req, tz) = request(
            Granularity::Hour,
            "2026-01-01T00:00:00Z",
            "2026-11-01T00:00:00Z",
            None,
        );
        assert!(
            boundaries(&req, &tz, Timestamp::now()).is_err(),
            "too many hours"
        );
        assert!(parse_tz(Some("Mars/Olympus")).is_err());
        assert!(parse_tz(Some("Asia/Kolkata")).is_ok());
    }
}
