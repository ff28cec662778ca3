//! The fraud review queue, and confirmation: flagged clicks taken out of the aggregates.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::clicks::{CLICK_SELECT, SEGMENT_PAGE, click_of, segment_of, unconfirmed};
use super::value::{Row, params};
use super::{Backend, Conn, SqlStore, finish, page_size};
use crate::clicks::batch::breakdown_value;
use crate::clicks::fraud::reason;
use crate::clicks::segment;
use crate::domain::{
    ClickId, Dimension, FraudReview, LinkId, ReviewCandidate, ReviewState, ReviewThresholds,
    StoredClick, Timestamp, UserId,
};
use crate::store::{FraudStore, StoreError, StoreResult};

/// A dismissed or confirmed review reopens on evidence only this long after the decision.
const REOPEN_AFTER_MS: i64 = 3_600_000;
/// Flagged clicks read per round trip while confirming.
const CONFIRM_PAGE: i64 = 5_000;

const COLUMNS: &str = "link_id, state, opened_at, updated_at, hour_total, hour_suspicious, \
     burst_clicks, confirmed_clicks, decided_by, decided_at, note";

fn review_of(r: &Row) -> StoreResult<FraudReview> {
    Ok(FraudReview {
        link_id: LinkId(r.i64(0)?),
        state: ReviewState::parse(&r.str(1)?)
            .ok_or_else(|| StoreError::Corrupt("review state".into()))?,
        opened_at: r.ts(2)?,
        updated_at: r.ts(3)?,
        hour_total: r.u64(4)?,
        hour_suspicious: r.u64(5)?,
        burst_clicks: r.u64(6)?,
        confirmed_clicks: r.u64(7)?,
        decided_by: r.opt_i64(8)?.map(UserId),
        decided_at: r.opt_ts(9)?,
        note: r.opt_str(10)?,
    })
}

#[async_trait]
impl<B: Backend> FraudStore for SqlStore<B> {
    async fn open_reviews(
        &self,
        candidates: &[ReviewCandidate],
        thresholds: ReviewThresholds,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let mut opened = 0;
        for c in candidates {
            let counts = self
                .query_one(
                    "SELECT total, suspicious FROM click_hourly WHERE link_id = ? AND hour = ?",
                    params![c.link_id, c.hour.hour_start()],
                )
                .await?;
            let (total, suspicious) = match counts {
                Some(r) => (r.u64(0)?, r.u64(1)?),
                None => (0, 0),
            };
            let share_crossed = total >= thresholds.min_clicks
                && suspicious * 100 >= total * thresholds.suspicious_percent;
            if !share_crossed && c.burst_clicks == 0 {
                continue;
            }
            let mut conn = self.begin().await?;
            let result = upsert_review::<B>(&mut conn, c, total, suspicious, now).await;
            if finish(&mut conn, result).await? {
                opened += 1;
            }
        }
        Ok(opened)
    }

    async fn reviews(
        &self,
        state: Option<ReviewState>,
        limit: u32,
    ) -> StoreResult<Vec<FraudReview>> {
        let rows = match state {
            Some(state) => {
                self.query(
                    &format!(
                        "SELECT {COLUMNS} FROM fraud_reviews WHERE state = ? \
                         ORDER BY updated_at DESC LIMIT ?"
                    ),
                    params![state.as_str(), page_size(limit, 1000)],
                )
                .await?
            }
            None => {
                self.query(
                    &format!(
                        "SELECT {COLUMNS} FROM fraud_reviews ORDER BY updated_at DESC LIMIT ?"
                    ),
                    params![page_size(limit, 1000)],
                )
                .await?
            }
        };
        rows.iter().map(review_of).collect()
    }

    async fn review(&self, link: LinkId) -> StoreResult<Option<FraudReview>> {
        self.query_one(
            &format!("SELECT {COLUMNS} FROM fraud_reviews WHERE link_id = ?"),
            params![link],
        )
        .await?
        .as_ref()
        .map(review_of)
        .transpose()
    }

    async fn dismiss_review(
        &self,
        link: LinkId,
        by: UserId,
        note: &str,
        now: Timestamp,
    ) -> StoreResult<FraudReview> {
        let done = self
            .exec(
                "UPDATE fraud_reviews SET state = 'dismissed', decided_by = ?, decided_at = ?, \
                 note = ?, updated_at = ? WHERE link_id = ?",
                params![by, now, note, now, link],
            )
            .await?;
        if done.affected == 0 {
            return Err(StoreError::NotFound);
        }
        self.review(link).await?.ok_or(StoreError::NotFound)
    }

    async fn confirm_review(
        &self,
        link: LinkId,
        through: ClickId,
        by: UserId,
        note: &str,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let mut conn = self.begin().await?;
        let result = confirm_in_tx::<B>(&mut conn, link, through, by, note, now).await;
        finish(&mut conn, result).await
    }
}

/// A link's review row (`state`, `decided_at`), locked until the transaction ends.
async fn lock_review<B: Backend>(conn: &mut B::Conn, link: LinkId) -> StoreResult<Option<Row>> {
    let rows = conn
        .query(
            &format!(
                "SELECT state, decided_at FROM fraud_reviews WHERE link_id = ?{}",
                B::DIALECT.for_update()
            ),
            params![link],
        )
        .await?;
    Ok(rows.into_iter().next())
}

/// Inserts an open review or refreshes an existing one; true when it (re)opened now.
async fn upsert_review<B: Backend>(
    conn: &mut B::Conn,
    c: &ReviewCandidate,
    total: u64,
    suspicious: u64,
    now: Timestamp,
) -> StoreResult<bool> {
    let Some(row) = lock_review::<B>(conn, c.link_id).await? else {
        conn.exec(
            "INSERT INTO fraud_reviews (link_id, state, opened_at, updated_at, hour_total, \
             hour_suspicious, burst_clicks, confirmed_clicks) VALUES (?, 'open', ?, ?, ?, ?, ?, 0)",
            params![c.link_id, now, now, total, suspicious, c.burst_clicks],
        )
        .await?;
        return Ok(true);
    };
    let state = ReviewState::parse(&row.str(0)?);
    let decided_long_ago = row
        .opt_ts(1)?
        .is_none_or(|at| now.as_millis() - at.as_millis() > REOPEN_AFTER_MS);
    match state {
        Some(ReviewState::Open) => {
            conn.exec(
                "UPDATE fraud_reviews SET updated_at = ?, hour_total = ?, hour_suspicious = ?, \
                 burst_clicks = burst_clicks + ? WHERE link_id = ?",
                params![now, total, suspicious, c.burst_clicks, c.link_id],
            )
            .await?;
            Ok(false)
        }
        Some(_) if decided_long_ago => {
            conn.exec(
                "UPDATE fraud_reviews SET state = 'open', opened_at = ?, updated_at = ?, \
                 hour_total = ?, hour_suspicious = ?, burst_clicks = ? WHERE link_id = ?",
                params![now, now, total, suspicious, c.burst_clicks, c.link_id],
            )
            .await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Negative deltas of one confirmation.
#[derive(Default)]
struct Removal {
    clicks: u64,
    /// (hour) -> (total, bot, suspicious)
    hourly: BTreeMap<i64, (u64, u64, u64)>,
    /// (day, dimension, value) -> count
    breakdowns: BTreeMap<(i64, Dimension, String), u64>,
}

impl Removal {
    fn add(&mut self, click: &StoredClick) {
        self.clicks += 1;
        let h = self
            .hourly
            .entry(click.at.hour_start().as_millis())
            .or_default();
        h.0 += 1;
        h.1 += u64::from(click.is_bot);
        h.2 += 1;
        let day = click.at.day_start().as_millis();
        for d in Dimension::ALL {
            *self
                .breakdowns
                .entry((day, d, breakdown_value(click, d).to_owned()))
                .or_default() += 1;
        }
    }
}

async fn confirm_in_tx<B: Backend>(
    conn: &mut B::Conn,
    link: LinkId,
    through: ClickId,
    by: UserId,
    note: &str,
    now: Timestamp,
) -> StoreResult<u64> {
    lock_review::<B>(conn, link)
        .await?
        .ok_or(StoreError::NotFound)?;
    // Every flagged click not confirmed before, up to `through`, whenever it arrived (a
    // click written late, from a journal or a lagging node, is caught by the next
    // confirmation); each is marked as it is counted, so none is taken out twice.
    let confirmed = i64::from(reason::CONFIRMED);
    let mut after = [0u8; 16];
    let through = through.to_bytes();
    let mut removal = Removal::default();
    loop {
        let page = conn
            .query(
                &format!(
                    "SELECT {CLICK_SELECT} FROM clicks WHERE link_id = ? AND click_id > ? \
                     AND click_id <= ? AND fraud_reasons <> 0 AND (fraud_reasons & ?) = 0 \
                     ORDER BY click_id LIMIT ?"
                ),
                params![link, after, through, confirmed, CONFIRM_PAGE],
            )
            .await?;
        for r in &page {
            removal.add(&click_of(r)?);
        }
        let Some(last) = page.last() else { break };
        let last = last.array::<16>(0)?;
        conn.exec(
            "UPDATE clicks SET fraud_reasons = fraud_reasons | ? WHERE link_id = ? \
             AND click_id > ? AND click_id <= ? AND fraud_reasons <> 0 AND (fraud_reasons & ?) = 0",
            params![confirmed, link, after, last, confirmed],
        )
        .await?;
        after = last;
        if i64::try_from(page.len()) != Ok(CONFIRM_PAGE) {
            break;
        }
    }
    // The same for the link's flagged segments: each is decoded, its unconfirmed clicks up
    // to `through` counted and marked, and written back.
    let mut cursor = [0u8; 16];
    loop {
        let page = conn
            .query(
                "SELECT first_click, data FROM flagged_segments WHERE link_id = ? \
                 AND first_click > ? AND first_click <= ? AND unconfirmed > 0 \
                 ORDER BY first_click LIMIT ?",
                params![link, cursor, through, SEGMENT_PAGE],
            )
            .await?;
        for r in &page {
            cursor = r.array::<16>(0)?;
            let mut clicks = segment_of(r, 1)?;
            let mut marked = 0;
            for c in &mut clicks {
                if c.click_id.to_bytes() <= through && c.fraud_reasons & reason::CONFIRMED == 0 {
                    removal.add(c);
                    c.fraud_reasons |= reason::CONFIRMED;
                    marked += 1;
                }
            }
            if marked > 0 {
                let unconfirmed = unconfirmed(&clicks);
                let refs: Vec<&StoredClick> = clicks.iter().collect();
                conn.exec(
                    "UPDATE flagged_segments SET data = ?, unconfirmed = ? \
                     WHERE link_id = ? AND first_click = ?",
                    params![segment::encode(&refs), unconfirmed, link, cursor],
                )
                .await?;
            }
        }
        if (page.len() as u64) < SEGMENT_PAGE {
            break;
        }
    }
    for (hour, (total, bot, suspicious)) in &removal.hourly {
        conn.exec(
            "UPDATE click_hourly SET total = total - ?, bot = bot - ?, suspicious = suspicious - ? \
             WHERE link_id = ? AND hour = ?",
            params![
                *total,
                *bot,
                *suspicious,
                link,
                Timestamp::from_millis(*hour)
            ],
        )
        .await?;
    }
    for ((day, dimension, value), count) in &removal.breakdowns {
        conn.exec(
            "UPDATE click_breakdowns SET count = count - ? \
             WHERE link_id = ? AND day = ? AND dimension = ? AND value = ?",
            params![
                *count,
                link,
                Timestamp::from_millis(*day),
                *dimension,
                value.as_str()
            ],
        )
        .await?;
    }
    if removal.clicks > 0 {
        conn.exec(
            "UPDATE links SET clicks = clicks - ? WHERE id = ?",
            params![removal.clicks, link],
        )
        .await?;
    }
    conn.exec(
        "UPDATE fraud_reviews SET state = 'confirmed', confirmed_through = ?, \
         confirmed_clicks = confirmed_clicks + ?, decided_by = ?, decided_at = ?, note = ?, \
         updated_at = ? WHERE link_id = ?",
        params![through, removal.clicks, by, now, note, now, link],
    )
    .await?;
    Ok(removal.clicks)
}
