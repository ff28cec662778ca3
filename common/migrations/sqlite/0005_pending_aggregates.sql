-- Aggregates written apart from raw clicks: a batch's segments are written within the flush
-- interval with a row here, and the batch's aggregates (hourly, breakdowns, visitors,
-- trending, totals, flagged segments) follow in a later, larger transaction that deletes
-- the row (common/src/clicks/pipeline.rs). A row left by a node that stopped first is
-- aggregated from the segments by any node once it is stale.
CREATE TABLE IF NOT EXISTS pending_aggregates (
    batch_id BLOB NOT NULL PRIMARY KEY,
    since INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_aggregates_since ON pending_aggregates (since);
CREATE INDEX IF NOT EXISTS click_segments_batch ON click_segments (batch_id);
