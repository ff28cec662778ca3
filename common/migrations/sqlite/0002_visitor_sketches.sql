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

-- Raw clicks: rebuilt as a WITHOUT ROWID table clustered by click id (UUIDv7, so inserts
-- append), with one index (link_id, click_id) for a link's clicks in time order. The rowid
-- table of version 1 kept four B-trees per click (rows, primary key, two indexes); the time
-- index is gone because retention purges by click-id range.
CREATE TABLE IF NOT EXISTS clicks_v2 (
    click_id BLOB NOT NULL PRIMARY KEY,
    link_id INTEGER NOT NULL,
    at INTEGER NOT NULL,
    visitor INTEGER NOT NULL,
    ip TEXT NULL,
    referrer_host TEXT NULL,
    country TEXT NULL,
    device TEXT NOT NULL,
    browser TEXT NOT NULL,
    os TEXT NOT NULL,
    is_bot INTEGER NOT NULL,
    fraud_reasons INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO clicks_v2 SELECT click_id, link_id, at, visitor, ip, referrer_host, country, device,
    browser, os, is_bot, fraud_reasons FROM clicks;
DROP TABLE clicks;
ALTER TABLE clicks_v2 RENAME TO clicks;
CREATE INDEX IF NOT EXISTS clicks_link ON clicks (link_id, click_id);
