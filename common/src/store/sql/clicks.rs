//! Click batches and the aggregates analytics read.

use async_trait::async_trait;

use super::value::{Value, params};
use super::{Backend, Conn, ROWS_PER_STATEMENT, SqlStore, finish, multi_row_insert, page_size};
use crate::domain::{
    BatchOutcome, ClickBatch, Dimension, HourlyCounts, LinkId, StoredClick, Timestamp,
};
use crate::store::{ClickStore, StoreResult};

const CLICK_COLUMNS: usize = 12;

#[async_trait]
impl<B: Backend> ClickStore for SqlStore<B> {
    async fn write_click_batch(&self, batch: &ClickBatch) -> StoreResult<BatchOutcome> {
        let mut conn = self.begin().await?;
        let result = write_batch_in_tx::<B>(&mut conn, batch).await;
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
                    dimension.as_str(),
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
        let row = self
            .query_one(
                "SELECT COUNT(DISTINCT visitor) FROM unique_visitors \
                 WHERE link_id = ? AND hour >= ? AND hour < ?",
                params![link, from.hour_start(), to],
            )
            .await?;
        row.map_or(Ok(0), |r| r.u64(0))
    }

    async fn raw_click_count(&self, link: LinkId) -> StoreResult<u64> {
        let row = self
            .query_one(
                "SELECT COUNT(*) FROM clicks WHERE link_id = ?",
                params![link],
            )
            .await?;
        row.map_or(Ok(0), |r| r.u64(0))
    }

    async fn purge_raw_clicks(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        // Delete by primary key through a bounded sub-select: both dialects accept this, and
        // it keeps each purge transaction small.
        let ids = self
            .query(
                "SELECT click_id FROM clicks WHERE at < ? ORDER BY at LIMIT ?",
                params![before, page_size(limit, 100_000)],
            )
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut deleted = 0;
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "DELETE FROM clicks WHERE click_id IN {}",
                super::in_list(chunk.len())
            );
            let params = chunk
                .iter()
                .map(|r| r.bytes(0).map(Value::Bytes))
                .collect::<StoreResult<Vec<_>>>()?;
            deleted += self.exec(&sql, params).await?.affected;
        }
        Ok(deleted)
    }
}

async fn write_batch_in_tx<B: Backend>(
    conn: &mut B::Conn,
    batch: &ClickBatch,
) -> StoreResult<BatchOutcome> {
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
    if claimed.affected == 0 {
        return Ok(BatchOutcome::AlreadyApplied);
    }

    let mut inserted = 0;
    let ignore_dupes = B::DIALECT.on_conflict_ignore("click_id", "click_id");
    for chunk in batch.clicks.chunks(ROWS_PER_STATEMENT) {
        let mut sql = multi_row_insert(
            "INSERT INTO clicks (click_id, link_id, at, visitor, ip, referrer_host, country, \
             device, browser, os, is_bot, fraud_reasons)",
            CLICK_COLUMNS,
            chunk.len(),
        );
        sql.push_str(&ignore_dupes);
        let params: Vec<Value> = chunk.iter().flat_map(click_params).collect();
        inserted += conn.exec(&sql, params).await?.affected;
    }

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
            .flat_map(|b| {
                params![
                    b.link_id,
                    b.day.day_start(),
                    b.dimension.as_str(),
                    &b.value,
                    b.count
                ]
            })
            .collect();
        conn.exec(&sql, params).await?;
    }

    let visitor_ignore = B::DIALECT.on_conflict_ignore("link_id, hour, visitor", "visitor");
    for chunk in batch.visitors.chunks(ROWS_PER_STATEMENT) {
        let mut sql = multi_row_insert(
            "INSERT INTO unique_visitors (link_id, hour, visitor)",
            3,
            chunk.len(),
        );
        sql.push_str(&visitor_ignore);
        let params: Vec<Value> = chunk
            .iter()
            .flat_map(|v| params![v.link_id, v.hour.hour_start(), visitor_key(v.visitor)])
            .collect();
        conn.exec(&sql, params).await?;
    }

    // One UPDATE per link; a batch touches few distinct links compared with its clicks.
    for (link, n) in &batch.link_totals {
        conn.exec(
            "UPDATE links SET clicks = clicks + ? WHERE id = ?",
            params![*n, *link],
        )
        .await?;
    }
    Ok(BatchOutcome::Applied { inserted })
}

/// Visitor hashes are u64; the column is a signed BIGINT, so store the same 64 bits signed.
fn visitor_key(visitor: u64) -> i64 {
    i64::from_ne_bytes(visitor.to_ne_bytes())
}

fn click_params(c: &StoredClick) -> Vec<Value> {
    params![
        c.click_id.to_bytes(),
        c.link_id,
        c.at,
        visitor_key(c.visitor),
        c.ip.as_deref(),
        c.referrer_host.as_deref(),
        c.country.as_deref(),
        c.device.as_str(),
        c.browser.as_str(),
        c.os.as_str(),
        c.is_bot,
        c.fraud_reasons
    ]
}
