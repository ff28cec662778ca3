//! Click batches and the aggregates analytics read.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use super::value::{Row, Value, params};
use super::{
    Backend, Conn, ROWS_PER_STATEMENT, SqlStore, finish, in_list, multi_row_insert, page_size,
};
use crate::clicks::TrendingClock;
use crate::clicks::batch::aggregate;
use crate::clicks::fraud::reason;
use crate::clicks::segment;
use crate::clicks::sketch::VisitorSketch;
use crate::domain::{
    BatchOutcome, ClickBatch, ClickId, Dimension, Granularity, HourlyCounts, LinkId, PendingWindow,
    StoredClick, Timestamp,
};
use crate::store::{ClickStore, StoreError, StoreResult};

#[async_trait]
impl<B: Backend> ClickStore for SqlStore<B> {
    async fn write_click_batch(&self, batch: &ClickBatch) -> StoreResult<BatchOutcome> {
        let mut conn = self.begin().await?;
        let result = write_batch_in_tx::<B>(&mut conn, batch, Some(&self.sketch_parts)).await;
        finish(&mut conn, result).await
    }

    async fn write_click_segments(&self, batch: &ClickBatch) -> StoreResult<BatchOutcome> {
        let mut conn = self.begin().await?;
        let result = write_batch_in_tx::<B>(&mut conn, batch, None).await;
        finish(&mut conn, result).await
    }

    async fn apply_aggregates(
        &self,
        window: &PendingWindow,
        clock: &TrendingClock,
    ) -> StoreResult<u64> {
        if window.batch_ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.begin().await?;
        let result = apply_window::<B>(&mut conn, window, clock, &self.sketch_parts).await;
        finish(&mut conn, result).await
    }

    async fn aggregate_stale(
        &self,
        before: Timestamp,
        limit: u32,
        clock: &TrendingClock,
    ) -> StoreResult<u64> {
        let mut conn = self.begin().await?;
        let result =
            aggregate_stale_in_tx::<B>(&mut conn, before, limit, clock, &self.sketch_parts).await;
        finish(&mut conn, result).await
    }

    async fn hourly_counts(
        &self,
        link: LinkId,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<HourlyCounts>> {
        let rows = self
            .query(
                "SELECT hour, total, human, bot, suspicious FROM click_hourly \
                 WHERE link_id = ? AND hour >= ? AND hour < ? ORDER BY hour",
                params![link, from.hour_start(), to],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(HourlyCounts {
                    hour: r.ts(0)?,
                    total: r.u64(1)?,
                    human: r.u64(2)?,
                    bot: r.u64(3)?,
                    suspicious: r.u64(4)?,
                })
            })
            .collect()
    }

    async fn recent_clicks(
        &self,
        links: &[LinkId],
        from: Timestamp,
    ) -> StoreResult<Vec<(LinkId, u64)>> {
        let mut found = Vec::new();
        for chunk in links.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT link_id, SUM(total) FROM click_hourly WHERE hour >= ? AND link_id IN {} \
                 GROUP BY link_id",
                in_list(chunk.len())
            );
            let mut params = params![from.hour_start()];
            params.extend(chunk.iter().map(|&l| Value::from(l)));
            for r in self.query(&sql, params).await? {
                found.push((LinkId(r.i64(0)?), r.u64(1)?));
            }
        }
        Ok(found)
    }

    async fn top_breakdown(
        &self,
        link: LinkId,
        dimension: Dimension,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(String, u64)>> {
        let rows = self
            .query(
                "SELECT value, SUM(count) AS n FROM click_breakdowns \
                 WHERE link_id = ? AND dimension = ? AND day >= ? AND day < ? \
                 GROUP BY value ORDER BY n DESC, value LIMIT ?",
                params![
                    link,
                    dimension,
                    from.day_start(),
                    to,
                    page_size(limit, 1000)
                ],
            )
            .await?;
        rows.iter().map(|r| Ok((r.str(0)?, r.u64(1)?))).collect()
    }

    async fn unique_visitors(
        &self,
        link: LinkId,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<u64> {
        let from = from.hour_start();
        if to <= from {
            return Ok(0);
        }
        // Whole UTC days inside the range come from daily sketches, the ragged ends from
        // hourly ones; the parts of hours not yet in their day (`u`) count wherever they
        // fall.
        let first_day = from.plus_millis(Timestamp::MILLIS_PER_DAY - 1).day_start();
        let end_day = to.day_start();
        let rows = if first_day < end_day {
            self.query(
                "SELECT sketch FROM visitor_sketches WHERE link_id = ? AND \
                 ((granularity = 'd' AND bucket >= ? AND bucket < ?) OR \
                  (granularity = 'u' AND bucket >= ? AND bucket < ?) OR \
                  (granularity = 'h' AND ((bucket >= ? AND bucket < ?) OR \
                                          (bucket >= ? AND bucket < ?))))",
                params![
                    link, first_day, end_day, from, to, from, first_day, end_day, to
                ],
            )
            .await?
        } else {
            self.query(
                "SELECT sketch FROM visitor_sketches WHERE link_id = ? \
                 AND granularity IN ('h', 'u') AND bucket >= ? AND bucket < ?",
                params![link, from, to],
            )
            .await?
        };
        let mut union = VisitorSketch::new();
        for row in &rows {
            union.merge(&sketch_of(row, 0)?);
        }
        Ok(union.count())
    }

    async fn visitor_buckets(&self, link: LinkId, bounds: &[Timestamp]) -> StoreResult<Vec<u64>> {
        let (Some(first), Some(last)) = (bounds.first(), bounds.last()) else {
            return Ok(Vec::new());
        };
        let rows = self
            .query(
                "SELECT bucket, sketch FROM visitor_sketches \
                 WHERE link_id = ? AND granularity IN ('h', 'u') AND bucket >= ? \
                 AND bucket < ? ORDER BY bucket",
                params![link, *first, *last],
            )
            .await?;
        let mut unions = vec![VisitorSketch::new(); bounds.len().saturating_sub(1)];
        for row in &rows {
            let at = row.ts(0)?;
            let i = bounds.partition_point(|b| *b <= at).saturating_sub(1);
            if let Some(union) = unions.get_mut(i) {
                union.merge(&sketch_of(row, 1)?);
            }
        }
        Ok(unions.iter().map(VisitorSketch::count).collect())
    }

    async fn visitor_series(
        &self,
        link: LinkId,
        from: Timestamp,
        to: Timestamp,
        granularity: Granularity,
    ) -> StoreResult<Vec<(Timestamp, u64)>> {
        let from = granularity.bucket(from);
        if to <= from {
            return Ok(Vec::new());
        }
        // The hours not yet in their day (`u` parts) count in their day. A day bucket
        // that starts before `to` counts whole, so do its hours.
        let open_to = granularity
            .bucket(to.plus_millis(-1))
            .plus_millis(granularity.millis());
        let rows = self
            .query(
                "SELECT bucket, sketch FROM visitor_sketches WHERE link_id = ? AND \
                 ((granularity = ? AND bucket >= ? AND bucket < ?) OR \
                  (granularity = 'u' AND bucket >= ? AND bucket < ?)) \
                 ORDER BY bucket",
                params![link, granularity.tag(), from, to, from, open_to],
            )
            .await?;
        // A bucket may be several part rows (see `SketchParts`); rows come in bucket order,
        // so an hour's `u` rows come after its day's `d` rows and before the next day's.
        let mut series: Vec<(Timestamp, VisitorSketch)> = Vec::new();
        for row in &rows {
            let (bucket, sketch) = (granularity.bucket(row.ts(0)?), sketch_of(row, 1)?);
            match series.last_mut() {
                Some((last, union)) if *last == bucket => union.merge(&sketch),
                _ => series.push((bucket, sketch)),
            }
        }
        Ok(series
            .into_iter()
            .map(|(bucket, union)| (bucket, union.count()))
            .filter(|(_, n)| *n > 0)
            .collect())
    }

    async fn visitor_salt(&self, day: Timestamp) -> StoreResult<[u8; 32]> {
        use rand::Rng as _;
        let day = day.day_start();
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        let sql = format!(
            "INSERT INTO visitor_salts (day, salt) VALUES (?, ?){}",
            B::DIALECT.on_conflict_ignore("day", "day")
        );
        self.exec(&sql, params![day, fresh]).await?;
        let row = self
            .query_one("SELECT salt FROM visitor_salts WHERE day = ?", params![day])
            .await?
            .ok_or(StoreError::NotFound)?;
        row.array::<32>(0)
    }

    async fn purge_visitor_salts(&self, before: Timestamp) -> StoreResult<u64> {
        Ok(self
            .exec("DELETE FROM visitor_salts WHERE day < ?", params![before])
            .await?
            .affected)
    }

    async fn trending(
        &self,
        clock: &TrendingClock,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(LinkId, f64)>> {
        let limit = page_size(limit, 1000);
        let current = clock.epoch_of(now);
        let previous = current.plus_millis(-clock.era_ms());
        let mut scored = Vec::new();
        // Within one epoch the stored order is the decayed order, so the top of each of the
        // two live epochs (read through the (epoch, score) index) contains the overall top.
        for epoch in [current, previous] {
            let rows = self
                .query(
                    "SELECT link_id, score FROM trending_scores WHERE epoch = ? \
                     ORDER BY score DESC, link_id LIMIT ?",
                    params![epoch, limit],
                )
                .await?;
            for row in &rows {
                let score = clock.score_at(row.f64(1)?, epoch, now);
                scored.push((LinkId(row.i64(0)?), score));
            }
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(scored)
    }

    async fn purge_trending(&self, before: Timestamp) -> StoreResult<u64> {
        Ok(self
            .exec(
                "DELETE FROM trending_scores WHERE epoch < ?",
                params![before],
            )
            .await?
            .affected)
    }

    async fn raw_click_count(&self, link: LinkId) -> StoreResult<u64> {
        let legacy = self
            .query_one(
                "SELECT COUNT(*) FROM clicks WHERE link_id = ?",
                params![link],
            )
            .await?
            .map_or(Ok(0), |r| r.u64(0))?;
        let mut count = legacy;
        let mut scan = SegmentScan::from(Timestamp::from_millis(i64::MIN));
        loop {
            let page = scan.next_page(self).await?;
            for r in &page {
                count += segment_of(r, 2)?
                    .iter()
                    .filter(|c| c.link_id == link)
                    .count() as u64;
            }
            if scan.done {
                return Ok(count);
            }
        }
    }

    async fn raw_clicks(
        &self,
        link: LinkId,
        after: Option<ClickId>,
        limit: u32,
    ) -> StoreResult<Vec<StoredClick>> {
        let (limit, after) = page_args(limit, after);
        let mut out = legacy_rows(self, link, after, limit, false).await?;
        // Segments from the day of `after` on, a whole day at a time (a day's segments are
        // not in click-id order), until `limit` clicks are in hand.
        let mut scan = SegmentScan::from(Timestamp::from_millis(after.millis()).day_start());
        let mut day = scan.day;
        loop {
            let page = scan.next_page(self).await?;
            for r in &page {
                let this_day = r.ts(1)?;
                if this_day != day && out.len() >= limit {
                    return Ok(sorted_page(out, limit));
                }
                day = this_day;
                out.extend(
                    segment_of(r, 2)?
                        .into_iter()
                        .filter(|c| c.link_id == link && c.click_id > after),
                );
            }
            if scan.done {
                return Ok(sorted_page(out, limit));
            }
        }
    }

    async fn flagged_clicks(
        &self,
        link: LinkId,
        after: Option<ClickId>,
        limit: u32,
    ) -> StoreResult<Vec<StoredClick>> {
        let (limit, after) = page_args(limit, after);
        let mut out = legacy_rows(self, link, after, limit, true).await?;
        // The link's segments in order of their first click (they may overlap: a late batch),
        // until no further segment can hold one of the first `limit` clicks.
        let mut cursor = [0u8; 16];
        loop {
            let rows = self
                .query(
                    "SELECT first_click, data FROM flagged_segments WHERE link_id = ? \
                     AND first_click > ? AND last_click > ? ORDER BY first_click LIMIT ?",
                    params![link, cursor, after.to_bytes(), SEGMENT_PAGE],
                )
                .await?;
            for r in &rows {
                let first = r.array::<16>(0)?;
                if out.len() >= limit {
                    out = sorted_page(out, limit);
                    if out.last().is_some_and(|c| c.click_id.to_bytes() < first) {
                        return Ok(out);
                    }
                }
                cursor = first;
                out.extend(segment_of(r, 1)?.into_iter().filter(|c| c.click_id > after));
            }
            if (rows.len() as u64) < SEGMENT_PAGE {
                return Ok(sorted_page(out, limit));
            }
        }
    }

    async fn purge_raw_clicks(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        let limit = u64::from(limit.clamp(1, 100_000));
        // Segments hold whole UTC days: a day goes once all of it is before `before`, and
        // the rows of flagged clicks go with their day.
        let ids = self
            .query(
                "SELECT id FROM click_segments WHERE day < ? ORDER BY day, id LIMIT ?",
                params![before.day_start(), limit],
            )
            .await?;
        let keys = ids
            .iter()
            .map(|r| r.i64(0).map(Value::from))
            .collect::<StoreResult<Vec<_>>>()?;
        let mut deleted = delete_by_key(self, "click_segments", "id", keys).await?;
        for (table, column) in [("clicks", "click_id"), ("flagged_segments", "last_click")] {
            if deleted < limit {
                deleted +=
                    purge_older(self, table, column, before.day_start(), limit - deleted).await?;
            }
        }
        Ok(deleted)
    }
}

/// A link's rows of the `clicks` table (written before segments existed) after `after`, at
/// most `limit`, only those with fraud reasons when `flagged`.
async fn legacy_rows<B: Backend>(
    store: &SqlStore<B>,
    link: LinkId,
    after: ClickId,
    limit: usize,
    flagged: bool,
) -> StoreResult<Vec<StoredClick>> {
    let filter = if flagged {
        "AND fraud_reasons <> 0 "
    } else {
        ""
    };
    store
        .query(
            &format!(
                "SELECT {CLICK_SELECT} FROM clicks WHERE link_id = ? AND click_id > ? \
                 {filter}ORDER BY click_id LIMIT ?"
            ),
            params![link, after.to_bytes(), limit as u64],
        )
        .await?
        .iter()
        .map(click_of)
        .collect()
}

/// Segments read per query by the raw-click scans and by confirmations.
pub(super) const SEGMENT_PAGE: u64 = 64;

/// The page size (1 to 10,000) and the click id to read after, for the raw-click readers.
fn page_args(limit: u32, after: Option<ClickId>) -> (usize, ClickId) {
    (
        usize::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000),
        after.unwrap_or(ClickId(0)),
    )
}

/// The raw-click segments from a UTC day on, in (day, id) order, [`SEGMENT_PAGE`] rows
/// (`id, day, data`) at a time.
struct SegmentScan {
    day: Timestamp,
    after_id: i64,
    /// The last page has been read.
    done: bool,
}

impl SegmentScan {
    fn from(day: Timestamp) -> Self {
        Self {
            day,
            after_id: 0,
            done: false,
        }
    }

    async fn next_page<B: Backend>(&mut self, store: &SqlStore<B>) -> StoreResult<Vec<Row>> {
        let rows = store
            .query(
                "SELECT id, day, data FROM click_segments WHERE day > ? OR (day = ? AND id > ?) \
                 ORDER BY day, id LIMIT ?",
                params![self.day, self.day, self.after_id, SEGMENT_PAGE],
            )
            .await?;
        if let Some(last) = rows.last() {
            (self.day, self.after_id) = (last.ts(1)?, last.i64(0)?);
        }
        self.done = (rows.len() as u64) < SEGMENT_PAGE;
        Ok(rows)
    }
}

/// Clicks a confirmation has not yet taken out of the aggregates.
pub(super) fn unconfirmed<'a>(clicks: impl IntoIterator<Item = &'a StoredClick>) -> u64 {
    clicks
        .into_iter()
        .filter(|c| c.fraud_reasons & reason::CONFIRMED == 0)
        .count() as u64
}

pub(super) fn segment_of(row: &Row, i: usize) -> StoreResult<Vec<StoredClick>> {
    segment::decode(&row.bytes(i)?).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn sorted_page(mut clicks: Vec<StoredClick>, limit: usize) -> Vec<StoredClick> {
    clicks.sort_by_key(|c| c.click_id);
    clicks.truncate(limit);
    clicks
}

/// Deletes the rows of `table` whose `column` is one of `keys`, 500 keys per statement.
async fn delete_by_key<B: Backend>(
    store: &SqlStore<B>,
    table: &str,
    column: &str,
    keys: Vec<Value>,
) -> StoreResult<u64> {
    let mut deleted = 0;
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "DELETE FROM {table} WHERE {column} IN {}",
            super::in_list(chunk.len())
        );
        deleted += store.exec(&sql, chunk.to_vec()).await?.affected;
    }
    Ok(deleted)
}

/// Deletes up to `limit` rows of `table` whose click id `column` is older than `before`:
/// the rows of `clicks` (written before segments; `click_id`) and flagged segments (by their
/// newest click, `last_click`). Click ids are UUIDv7, their first 48 bits the millisecond, so
/// "older than `before`" is a key range: the `limit`-th oldest key is read, then everything
/// up to it deleted, which keeps each transaction small in both dialects.
async fn purge_older<B: Backend>(
    store: &SqlStore<B>,
    table: &str,
    column: &str,
    before: Timestamp,
    limit: u64,
) -> StoreResult<u64> {
    let bound = ClickId::first_at(before).to_bytes();
    let rows = store
        .query(
            &format!("SELECT {column} FROM {table} WHERE {column} < ? ORDER BY {column} LIMIT ?"),
            params![bound, limit],
        )
        .await?;
    let Some(newest) = rows.last() else {
        return Ok(0);
    };
    Ok(store
        .exec(
            &format!("DELETE FROM {table} WHERE {column} <= ?"),
            params![newest.bytes(0)?],
        )
        .await?
        .affected)
}

/// A batch at most once per batch id: its raw clicks, then its aggregates (with `aggregates`,
/// this store's sketch part counts), or else a `pending_aggregates` row for a later
/// `apply_aggregates` or `aggregate_stale`.
async fn write_batch_in_tx<B: Backend>(
    conn: &mut B::Conn,
    batch: &ClickBatch,
    aggregates: Option<&SketchParts>,
) -> StoreResult<BatchOutcome> {
    if !claim_batch::<B>(conn, batch).await? {
        return Ok(BatchOutcome::AlreadyApplied);
    }
    let mut phases = Phases::start();
    write_segments::<B>(conn, batch).await?;
    if let Some(parts) = aggregates {
        write_flagged::<B>(conn, batch.clicks.iter()).await?;
        phases.mark("raw");
        write_aggregates::<B>(conn, batch, &mut phases, parts).await?;
        tracing::debug!(clicks = batch.clicks.len(), phases = %phases, "click batch statements");
    } else {
        conn.exec(
            "INSERT INTO pending_aggregates (batch_id, since) VALUES (?, ?)",
            params![batch.batch_id.to_be_bytes(), Timestamp::now()],
        )
        .await?;
    }
    Ok(BatchOutcome::Applied {
        inserted: batch.clicks.len() as u64,
    })
}

/// Claims the batch id; false when the batch was applied before.
async fn claim_batch<B: Backend>(conn: &mut B::Conn, batch: &ClickBatch) -> StoreResult<bool> {
    let claim = format!(
        "INSERT INTO click_batches (batch_id, applied_at, clicks) VALUES (?, ?, ?){}",
        B::DIALECT.on_conflict_ignore("batch_id", "batch_id")
    );
    let claimed = conn
        .exec(
            &claim,
            params![
                batch.batch_id.to_be_bytes(),
                Timestamp::now(),
                batch.clicks.len() as u64
            ],
        )
        .await?;
    Ok(claimed.affected > 0)
}

/// Every click goes into a segment: one value per UTC day of the batch.
async fn write_segments<B: Backend>(conn: &mut B::Conn, batch: &ClickBatch) -> StoreResult<()> {
    for (day, clicks) in segment::by_day(&batch.clicks) {
        conn.exec(
            "INSERT INTO click_segments (day, batch_id, clicks, data) VALUES (?, ?, ?, ?)",
            params![
                day,
                batch.batch_id.to_be_bytes(),
                clicks.len() as u64,
                segment::encode(&clicks)
            ],
        )
        .await?;
    }
    Ok(())
}

/// Flagged clicks also go into one segment per link, for the review evidence and
/// confirmations.
async fn write_flagged<'a, B: Backend>(
    conn: &mut B::Conn,
    clicks: impl Iterator<Item = &'a StoredClick>,
) -> StoreResult<()> {
    let mut flagged: BTreeMap<LinkId, Vec<&StoredClick>> = BTreeMap::new();
    for c in clicks.filter(|c| c.fraud_reasons != 0) {
        flagged.entry(c.link_id).or_default().push(c);
    }
    let groups: Vec<(LinkId, &[&StoredClick])> = flagged
        .iter()
        .flat_map(|(link, clicks)| {
            clicks
                .chunks(segment::MAX_CLICKS)
                .map(move |chunk| (*link, chunk))
        })
        .collect();
    let ignore_dupes = B::DIALECT.on_conflict_ignore("link_id, first_click", "link_id");
    for chunk in groups.chunks(ROWS_PER_STATEMENT) {
        let mut sql = multi_row_insert(
            "INSERT INTO flagged_segments (link_id, first_click, last_click, clicks, unconfirmed, data)",
            6,
            chunk.len(),
        );
        sql.push_str(&ignore_dupes);
        let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * 6);
        for (link, clicks) in chunk {
            let first = clicks
                .iter()
                .map(|c| c.click_id)
                .min()
                .unwrap_or(ClickId(0));
            let last = clicks
                .iter()
                .map(|c| c.click_id)
                .max()
                .unwrap_or(ClickId(0));
            let unconfirmed = unconfirmed(clicks.iter().copied());
            params.extend(params![
                *link,
                first.to_bytes(),
                last.to_bytes(),
                clicks.len() as u64,
                unconfirmed,
                segment::encode(clicks)
            ]);
        }
        conn.exec(&sql, params).await?;
    }
    Ok(())
}

/// Claims those of `ids` whose aggregates are still pending (locking and deleting
/// their `pending_aggregates` rows).
async fn claim_pending<B: Backend>(conn: &mut B::Conn, ids: &[u128]) -> StoreResult<Vec<[u8; 16]>> {
    let mut claimed = Vec::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let keys: Vec<Value> = chunk
            .iter()
            .map(|id| Value::from(id.to_be_bytes()))
            .collect();
        let rows = conn
            .query(
                &format!(
                    "SELECT batch_id FROM pending_aggregates WHERE batch_id IN {}{}",
                    in_list(chunk.len()),
                    B::DIALECT.for_update()
                ),
                keys,
            )
            .await?;
        let found = batch_ids(&rows)?;
        take_pending::<B>(conn, &found).await?;
        claimed.extend(found);
    }
    Ok(claimed)
}

/// The batch ids in the first column of `rows`.
fn batch_ids(rows: &[Row]) -> StoreResult<Vec<[u8; 16]>> {
    rows.iter().map(|r| r.array::<16>(0)).collect()
}

/// Deletes the `pending_aggregates` rows of `ids`, which the transaction has locked: their
/// batches are now its to aggregate.
async fn take_pending<B: Backend>(conn: &mut B::Conn, ids: &[[u8; 16]]) -> StoreResult<()> {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        conn.exec(
            &format!(
                "DELETE FROM pending_aggregates WHERE batch_id IN {}",
                in_list(chunk.len())
            ),
            chunk.iter().map(|id| Value::from(*id)).collect(),
        )
        .await?;
    }
    Ok(())
}

/// The window's batches that were still pending, aggregated: from the window's sums when
/// all were (the usual case), else from the segments of those that were (another node's
/// stale sweep took the others while this node's window was held up).
async fn apply_window<B: Backend>(
    conn: &mut B::Conn,
    window: &PendingWindow,
    clock: &TrendingClock,
    parts: &SketchParts,
) -> StoreResult<u64> {
    let claimed = claim_pending::<B>(conn, &window.batch_ids).await?;
    if claimed.len() < window.batch_ids.len() {
        return apply_segments::<B>(conn, &claimed, clock, parts).await;
    }
    write_summed::<B>(
        conn,
        window.flagged.iter(),
        &window.aggregates,
        window.clicks,
        parts,
    )
    .await
}

/// Aggregates up to `limit` stale pending batches from their segments.
async fn aggregate_stale_in_tx<B: Backend>(
    conn: &mut B::Conn,
    before: Timestamp,
    limit: u32,
    clock: &TrendingClock,
    parts: &SketchParts,
) -> StoreResult<u64> {
    let rows = conn
        .query(
            &format!(
                "SELECT batch_id FROM pending_aggregates WHERE since < ? ORDER BY since LIMIT ?{}",
                B::DIALECT.for_update()
            ),
            params![before, page_size(limit, 500)],
        )
        .await?;
    // The rows just read are locked: they are this transaction's to take.
    let ids = batch_ids(&rows)?;
    if ids.is_empty() {
        return Ok(0);
    }
    take_pending::<B>(conn, &ids).await?;
    apply_segments::<B>(conn, &ids, clock, parts).await
}

/// Aggregates the batches `ids` (claimed by this transaction) from their stored segments.
async fn apply_segments<B: Backend>(
    conn: &mut B::Conn,
    ids: &[[u8; 16]],
    clock: &TrendingClock,
    parts: &SketchParts,
) -> StoreResult<u64> {
    let mut clicks = Vec::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let segments = conn
            .query(
                &format!(
                    "SELECT data FROM click_segments WHERE batch_id IN {}",
                    in_list(chunk.len())
                ),
                chunk.iter().map(|id| Value::from(*id)).collect(),
            )
            .await?;
        for row in &segments {
            clicks.extend(segment_of(row, 0)?);
        }
    }
    if clicks.is_empty() {
        return Ok(0);
    }
    let batch = aggregate(0, &clicks, clock);
    write_summed::<B>(conn, clicks.iter(), &batch, clicks.len() as u64, parts).await
}

/// Writes the summed aggregates of `clicks` clicks and the flagged segments of those of
/// `flagged` that are flagged; returns `clicks`.
async fn write_summed<'a, B: Backend>(
    conn: &mut B::Conn,
    flagged: impl Iterator<Item = &'a StoredClick>,
    batch: &ClickBatch,
    clicks: u64,
    parts: &SketchParts,
) -> StoreResult<u64> {
    let mut phases = Phases::start();
    write_flagged::<B>(conn, flagged).await?;
    phases.mark("flagged");
    write_aggregates::<B>(conn, batch, &mut phases, parts).await?;
    tracing::debug!(clicks, phases = %phases, "click aggregate statements");
    Ok(clicks)
}

/// Hourly counters, breakdowns, visitor sketches, trending scores and link totals.
async fn write_aggregates<B: Backend>(
    conn: &mut B::Conn,
    batch: &ClickBatch,
    phases: &mut Phases,
    parts: &SketchParts,
) -> StoreResult<()> {
    let hourly_upsert =
        B::DIALECT.on_conflict_add("link_id, hour", &["total", "human", "bot", "suspicious"]);
    for chunk in batch.hourly.chunks(ROWS_PER_STATEMENT) {
        let mut sql = multi_row_insert(
            "INSERT INTO click_hourly (link_id, hour, total, human, bot, suspicious)",
            6,
            chunk.len(),
        );
        sql.push_str(&hourly_upsert);
        let params: Vec<Value> = chunk
            .iter()
            .flat_map(|h| {
                params![
                    h.link_id,
                    h.hour.hour_start(),
                    h.total,
                    h.human,
                    h.bot,
                    h.suspicious
                ]
            })
            .collect();
        conn.exec(&sql, params).await?;
    }

    phases.mark("hourly");
    let breakdown_upsert = B::DIALECT.on_conflict_add("link_id, dimension, day, value", &["count"]);
    for chunk in batch.breakdowns.chunks(ROWS_PER_STATEMENT) {
        let mut sql = multi_row_insert(
            "INSERT INTO click_breakdowns (link_id, day, dimension, value, count)",
            5,
            chunk.len(),
        );
        sql.push_str(&breakdown_upsert);
        let params: Vec<Value> = chunk
            .iter()
            .flat_map(|b| params![b.link_id, b.day.day_start(), b.dimension, &b.value, b.count])
            .collect();
        conn.exec(&sql, params).await?;
    }

    phases.mark("breakdowns");
    write_visitor_sketches::<B>(conn, batch, parts, phases).await?;
    write_trending::<B>(conn, batch).await?;
    phases.mark("trending");

    // Link totals: one UPDATE per 500 links.
    for chunk in batch.link_totals.chunks(ROWS_PER_STATEMENT) {
        let params: Vec<Value> = chunk
            .iter()
            .flat_map(|(link, n)| params![*link, *n])
            .collect();
        conn.exec(&B::DIALECT.add_link_clicks(chunk.len()), params)
            .await?;
    }
    phases.mark("totals");
    Ok(())
}

/// Time per write phase, for the debug log.
struct Phases {
    last: std::time::Instant,
    done: Vec<(&'static str, u128)>,
    /// A count shown with the phases (the sketch keys compacted).
    count: Option<usize>,
}

impl Phases {
    fn start() -> Self {
        Self {
            last: std::time::Instant::now(),
            done: Vec::new(),
            count: None,
        }
    }

    fn count(&mut self, n: usize) {
        self.count = Some(n);
    }

    fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((name, (now - self.last).as_micros()));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, micros) in &self.done {
            write!(f, "{name}={micros}us ")?;
        }
        if let Some(n) = self.count {
            write!(f, "keys_compacted={n}")?;
        }
        Ok(())
    }
}

fn sketch_of(row: &Row, i: usize) -> StoreResult<VisitorSketch> {
    VisitorSketch::from_bytes(&row.bytes(i)?).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A visitor sketch's key: link, granularity and bucket.
type SketchKey = (LinkId, Granularity, Timestamp);

/// Parts a key may gather from one process before that process compacts them.
const COMPACT_AFTER_PARTS: u32 = 32;
/// The same for a key whose sketch was a HyperLogLog (16 KiB) when last compacted: folding
/// small parts into it costs a read and a write of 16 KiB, so it is done less often.
const COMPACT_DENSE_AFTER_PARTS: u32 = 128;
/// How long after its hour or day ends a bucket is compacted one last time by each process
/// that wrote parts to it (clicks arrive up to a window late, more when the store was down).
const CLOSE_AFTER_MILLIS: i64 = 5 * 60 * 1000;
/// Keys [`SketchParts`] tracks: the hour keys windows write and the day keys ended hours
/// are folded into, of 16,384 links at two keys each, in a map of about
/// 3 MiB (65,536 slots of 48 bytes; a cleared map keeps its slots). Past that it forgets
/// them all; keys then come due from their random start, about once per
/// [`COMPACT_AFTER_PARTS`] parts, and finished buckets of forgotten keys keep their parts.
const MAX_TRACKED_SKETCH_KEYS: usize = 1 << 15;
/// Keys compacted per read, delete and insert.
const COMPACT_KEYS_PER_ROUND: usize = 50;
/// Placeholders per compaction DELETE (far below both dialects' limits).
const COMPACT_DELETE_PARAMS: usize = 4000;

/// Parts a process has written to a key since it last compacted the key, and how many it
/// may write before it compacts the key again.
#[derive(Debug, Clone, Copy)]
struct KeyParts {
    written: u32,
    limit: u32,
}

/// How many visitor sketch parts this process has written per key since it last compacted
/// the key.
///
/// A window adds its visitors as a new part row (a small exact set) of each link-hour
/// instead of reading, merging and rewriting the key's sketch, which grows to 16 KiB and
/// would be rewritten whole for every window that touches it. Every [`COMPACT_AFTER_PARTS`]
/// parts ([`COMPACT_DENSE_AFTER_PARTS`] once the sketch is a HyperLogLog) the process folds
/// all of the key's parts into one, and once more when the bucket has ended, so a finished
/// hour or day is read as one row (plus a few from processes that stopped). An ended hour's
/// fold also adds a part to its day (see [`compact_visitor_sketches`]); those parts count
/// toward the day key's compaction here the same way. A key this process has not seen
/// starts at a random count, so keys first written together come due in different windows.
#[derive(Debug, Default)]
pub(crate) struct SketchParts(std::sync::Mutex<std::collections::HashMap<SketchKey, KeyParts>>);

impl SketchParts {
    fn counts(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<SketchKey, KeyParts>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one more part for each of `keys` at `now`; returns the keys now due for
    /// compaction, sorted: those that reached their limit, and those whose bucket has ended
    /// (which are then forgotten).
    fn written<'a>(
        &self,
        keys: impl Iterator<Item = &'a SketchKey>,
        now: Timestamp,
    ) -> Vec<SketchKey> {
        let mut parts = self.counts();
        if parts.len() > MAX_TRACKED_SKETCH_KEYS {
            parts.clear();
        }
        let mut due = Vec::new();
        for key in keys {
            let entry = parts.entry(*key).or_insert_with(|| KeyParts {
                written: rand::random_range(0..COMPACT_AFTER_PARTS),
                limit: COMPACT_AFTER_PARTS,
            });
            entry.written += 1;
            if entry.written >= entry.limit {
                entry.written = 0;
                due.push(*key);
            }
        }
        parts.retain(|key, entry| {
            if !bucket_closed(key, now) {
                return true;
            }
            if entry.written > 0 {
                due.push(*key);
            }
            false
        });
        due.sort_unstable();
        due.dedup();
        due
    }

    /// Records what a compaction of `key` left: a HyperLogLog (`dense`) or an exact set.
    fn compacted(&self, key: &SketchKey, dense: bool) {
        if let Some(entry) = self.counts().get_mut(key) {
            entry.limit = if dense {
                COMPACT_DENSE_AFTER_PARTS
            } else {
                COMPACT_AFTER_PARTS
            };
        }
    }
}

/// Whether `key`'s hour or day ended at least [`CLOSE_AFTER_MILLIS`] before `now`.
fn bucket_closed((_, granularity, bucket): &SketchKey, now: Timestamp) -> bool {
    bucket.plus_millis(granularity.millis() + CLOSE_AFTER_MILLIS) <= now
}

/// A fresh part id: random, so parts written by several nodes never collide.
fn new_part() -> i64 {
    rand::random::<i64>() & i64::MAX
}

const SKETCH_INSERT: &str =
    "INSERT INTO visitor_sketches (link_id, granularity, bucket, part, sketch)";

/// The tag of an hour's parts that are not yet in its day's sketch. Windows write only
/// these; when the hour has ended they are folded into the hour's `h` row and a `d` part of
/// the day (see [`compact_visitor_sketches`]), so each window inserts one part per
/// link-hour instead of two. Readers of a day union its `d` rows with its hours' `u` rows.
pub(crate) const OPEN_HOUR_TAG: &str = "u";

/// The stored tags that hold a key's parts.
fn part_tags(granularity: Granularity) -> &'static [&'static str] {
    match granularity {
        Granularity::Hour => &[OPEN_HOUR_TAG, "h"],
        Granularity::Day => &["d"],
    }
}

/// Adds the batch's visitors to the sketches of their links' hours: one new part row per
/// link-hour (nothing is read), then the keys due for compaction are compacted.
async fn write_visitor_sketches<B: Backend>(
    conn: &mut B::Conn,
    batch: &ClickBatch,
    parts: &SketchParts,
    phases: &mut Phases,
) -> StoreResult<()> {
    let mut buckets: BTreeMap<SketchKey, Vec<u64>> = BTreeMap::new();
    for v in &batch.visitors {
        buckets
            .entry((
                v.link_id,
                Granularity::Hour,
                Granularity::Hour.bucket(v.hour),
            ))
            .or_default()
            .push(v.visitor);
    }
    let due = parts.written(buckets.keys(), Timestamp::now());
    let keys: Vec<_> = buckets.into_iter().collect();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = multi_row_insert(SKETCH_INSERT, 5, chunk.len());
        let mut params = Vec::with_capacity(chunk.len() * 5);
        for ((link, _, bucket), visitors) in chunk {
            let sketch = VisitorSketch::from_visitors(visitors.iter().copied());
            params.extend(params![
                *link,
                OPEN_HOUR_TAG,
                *bucket,
                new_part(),
                sketch.to_bytes()
            ]);
        }
        conn.exec(&sql, params).await?;
    }
    phases.mark("sketch_parts");
    phases.count(due.len());
    compact_visitor_sketches::<B>(conn, due, parts).await?;
    phases.mark("compaction");
    Ok(())
}

/// The parts of one key read for a compaction: their union, and each part's tag and id.
#[derive(Debug, Default)]
struct KeyUnion {
    sketch: VisitorSketch,
    parts: Vec<(&'static str, i64)>,
}

impl KeyUnion {
    /// Whether any part is an open hour's (`u`).
    fn has_open_parts(&self) -> bool {
        self.parts.iter().any(|(tag, _)| *tag == OPEN_HOUR_TAG)
    }
}

/// Compacts each of `keys` (sorted), the keys its writes made due after it, and so on.
///
/// An hour that has not ended: its `u` parts become one `u` part. An hour that has ended
/// (by [`CLOSE_AFTER_MILLIS`]): its `u` parts and its `h` row become one `h` row, and their
/// union is added to the day as a `d` part (visitors already in the day are in it again,
/// which a union ignores), all in the caller's transaction, so a reader sees the visitors
/// once either way. A day: its `d` parts become one.
///
/// Exactly the parts read are deleted, by their ids, and their union inserted as a new
/// part; a part another node adds meanwhile is left for a later compaction. Nothing is
/// locked for reading: if two nodes compact one key at once, both unions hold the same
/// visitors, and a union of sketches is unchanged by repeats, so no count changes.
async fn compact_visitor_sketches<B: Backend>(
    conn: &mut B::Conn,
    mut keys: Vec<SketchKey>,
    parts: &SketchParts,
) -> StoreResult<()> {
    while !keys.is_empty() {
        let now = Timestamp::now();
        let mut days: BTreeSet<SketchKey> = BTreeSet::new();
        for chunk in keys.chunks(COMPACT_KEYS_PER_ROUND) {
            compact_chunk::<B>(conn, chunk, parts, now, &mut days).await?;
        }
        // Day parts the folds added count like a window's parts toward the day's
        // compaction (and a day that has ended is compacted now).
        keys = parts.written(days.iter(), now);
        keys.retain(|(_, g, _)| *g == Granularity::Day);
    }
    Ok(())
}

async fn compact_chunk<B: Backend>(
    conn: &mut B::Conn,
    chunk: &[SketchKey],
    parts: &SketchParts,
    now: Timestamp,
    days: &mut BTreeSet<SketchKey>,
) -> StoreResult<()> {
    let links: Vec<LinkId> = dedup_sorted(chunk.iter().map(|(l, _, _)| *l));
    let tags: Vec<&'static str> = dedup_sorted(
        chunk
            .iter()
            .flat_map(|(_, g, _)| part_tags(*g).iter().copied()),
    );
    let stamps: Vec<Timestamp> = dedup_sorted(chunk.iter().map(|(_, _, b)| *b));
    // Every column of the key is constrained, so each (link, granularity, bucket) is a
    // seek in the primary key rather than a scan of all of a link's sketch rows (a link
    // keeps one per past hour and day for as long as they are retained).
    let select = format!(
        "SELECT link_id, granularity, bucket, part, sketch FROM visitor_sketches \
         WHERE link_id IN {} AND granularity IN {} AND bucket IN {}",
        in_list(links.len()),
        in_list(tags.len()),
        in_list(stamps.len()),
    );
    let mut params: Vec<Value> = links.iter().map(|l| Value::from(*l)).collect();
    params.extend(tags.iter().map(|&t| Value::from(t)));
    params.extend(stamps.iter().map(|t| Value::from(*t)));
    // The IN lists select a superset (every link x granularity x bucket); only the
    // chunk's own keys are merged, and of an hour that has not ended only its `u` parts.
    let mut merged: BTreeMap<SketchKey, KeyUnion> = BTreeMap::new();
    for row in conn.query(&select, params).await? {
        let (granularity, tag) = match row.str(1)?.as_str() {
            OPEN_HOUR_TAG => (Granularity::Hour, OPEN_HOUR_TAG),
            "h" => (Granularity::Hour, "h"),
            "d" => (Granularity::Day, "d"),
            _ => continue,
        };
        let key = (LinkId(row.i64(0)?), granularity, row.ts(2)?);
        if chunk.binary_search(&key).is_err() {
            continue;
        }
        if tag == "h" && !bucket_closed(&key, now) {
            continue;
        }
        let union = merged.entry(key).or_default();
        union.sketch.merge(&sketch_of(&row, 4)?);
        union.parts.push((tag, row.i64(3)?));
    }
    for (key, union) in &merged {
        parts.compacted(key, !union.sketch.is_exact());
    }
    merged.retain(|key, union| {
        union.parts.len() > 1 || (union.has_open_parts() && bucket_closed(key, now))
    });
    if merged.is_empty() {
        return Ok(());
    }
    delete_sketch_parts::<B>(conn, &merged).await?;
    let mut rows: Vec<(LinkId, &'static str, Timestamp, &VisitorSketch)> = Vec::new();
    for (key @ (link, granularity, bucket), union) in &merged {
        match granularity {
            Granularity::Day => rows.push((*link, "d", *bucket, &union.sketch)),
            Granularity::Hour if bucket_closed(key, now) => {
                let day = Granularity::Day.bucket(*bucket);
                rows.push((*link, "h", *bucket, &union.sketch));
                rows.push((*link, "d", day, &union.sketch));
                days.insert((*link, Granularity::Day, day));
            }
            Granularity::Hour => rows.push((*link, OPEN_HOUR_TAG, *bucket, &union.sketch)),
        }
    }
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = multi_row_insert(SKETCH_INSERT, 5, chunk.len());
        let mut params = Vec::with_capacity(chunk.len() * 5);
        for (link, tag, bucket, sketch) in chunk {
            params.extend(params![*link, *tag, *bucket, new_part(), sketch.to_bytes()]);
        }
        conn.exec(&sql, params).await?;
    }
    Ok(())
}

/// Deletes the listed parts of each key, a few thousand placeholders per statement.
async fn delete_sketch_parts<B: Backend>(
    conn: &mut B::Conn,
    merged: &BTreeMap<SketchKey, KeyUnion>,
) -> StoreResult<()> {
    let mut sql = String::new();
    let mut params: Vec<Value> = Vec::new();
    for ((link, _, bucket), union) in merged {
        for tag in [OPEN_HOUR_TAG, "h", "d"] {
            let ids: Vec<i64> = union
                .parts
                .iter()
                .filter(|(t, _)| *t == tag)
                .map(|(_, id)| *id)
                .collect();
            for ids in ids.chunks(1000) {
                sql.push_str(if sql.is_empty() {
                    "DELETE FROM visitor_sketches WHERE "
                } else {
                    " OR "
                });
                sql.push_str("(link_id = ? AND granularity = ? AND bucket = ? AND part IN ");
                sql.push_str(&in_list(ids.len()));
                sql.push(')');
                params.extend(params![*link, tag, *bucket]);
                params.extend(ids.iter().map(|id| Value::from(*id)));
                if params.len() >= COMPACT_DELETE_PARAMS {
                    conn.exec(&std::mem::take(&mut sql), std::mem::take(&mut params))
                        .await?;
                }
            }
        }
    }
    if !sql.is_empty() {
        conn.exec(&sql, params).await?;
    }
    Ok(())
}

/// The columns [`click_of`] reads, in its order.
pub(super) const CLICK_SELECT: &str = "click_id, link_id, at, visitor, ip, referrer_host, \
     country, device, browser, os, is_bot, fraud_reasons";

/// A raw click row selected with [`CLICK_SELECT`].
pub(super) fn click_of(r: &Row) -> StoreResult<StoredClick> {
    Ok(StoredClick {
        click_id: ClickId::from_bytes(&r.bytes(0)?)
            .ok_or_else(|| StoreError::Corrupt("click id".into()))?,
        link_id: LinkId(r.i64(1)?),
        at: r.ts(2)?,
        visitor: u64::from_ne_bytes(r.i64(3)?.to_ne_bytes()),
        ip: r.opt_str(4)?,
        referrer_host: r.opt_str(5)?,
        country: r.opt_str(6)?,
        device: r.str(7)?.into(),
        browser: r.str(8)?.into(),
        os: r.str(9)?.into(),
        is_bot: r.bool(10)?,
        fraud_reasons: u32::try_from(r.i64(11)?)
            .map_err(|_| StoreError::Corrupt("fraud reasons".into()))?,
    })
}

fn dedup_sorted<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Adds the batch's decayed weights to the links' trending rows. A row in the same epoch
/// adds; a row one era older is carried into the new epoch first; a row one era newer (a
/// replayed old batch, or a node whose clock lags) takes the weight carried forward; rows
/// older than that have decayed to nothing and are replaced.
async fn write_trending<B: Backend>(conn: &mut B::Conn, batch: &ClickBatch) -> StoreResult<()> {
    if batch.trending.is_empty() {
        return Ok(());
    }
    let d = B::DIALECT;
    let new = |c: &str| d.inserted(c);
    let clause = format!(
        "{upd}score = CASE \
           WHEN epoch = {ne} THEN score + {ns} \
           WHEN epoch = {ne} - ? THEN score * ? + {ns} \
           WHEN epoch = {ne} + ? THEN score + {ns} * ? \
           WHEN epoch < {ne} THEN {ns} \
           ELSE score END, \
         epoch = {ge}, updated_at = {gu}",
        upd = d.on_conflict_update("link_id"),
        ne = new("epoch"),
        ns = new("score"),
        ge = d.greatest("epoch", &new("epoch")),
        gu = d.greatest("updated_at", &new("updated_at")),
    );
    let now = Timestamp::now();
    for chunk in batch.trending.chunks(ROWS_PER_STATEMENT) {
        let mut sql = multi_row_insert(
            "INSERT INTO trending_scores (link_id, score, epoch, updated_at)",
            4,
            chunk.len(),
        );
        sql.push_str(&clause);
        let mut params: Vec<Value> = chunk
            .iter()
            .flat_map(|t| params![t.link_id, t.weight, t.epoch, now])
            .collect();
        params.extend(params![
            batch.trending_era_ms,
            batch.trending_carry,
            batch.trending_era_ms,
            batch.trending_carry
        ]);
        conn.exec(&sql, params).await?;
    }
    Ok(())
}
