-- Unique visitors as mergeable sketches (exact sets up to 2048 visitors, HyperLogLog beyond)
-- per link per UTC hour ('h') and day ('d'), replacing the exact per-visitor rows; and the
-- daily visitor salts the click pipeline hashes IP + User-Agent with (old salts are deleted,
-- so old visitor hashes cannot be recomputed).
CREATE TABLE IF NOT EXISTS visitor_sketches (
    link_id INTEGER NOT NULL,
    granularity TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    sketch BLOB NOT NULL,
    PRIMARY KEY (link_id, granularity, bucket)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS visitor_salts (
    day INTEGER NOT NULL PRIMARY KEY,
    salt BLOB NOT NULL
);

DROP TABLE IF EXISTS unique_visitors;

-- Raw clicks: the time index goes (click ids are UUIDv7, time-ordered, so retention purges
-- by primary-key range), and the per-link index becomes (link_id, click_id): a link's clicks
-- in time order. One index less per inserted click.
DROP INDEX IF EXISTS clicks_at;
DROP INDEX IF EXISTS clicks_link_at;
CREATE INDEX IF NOT EXISTS clicks_link ON clicks (link_id, click_id);
