-- Raw clicks as segments (common/src/clicks/segment.rs): one compact value per click batch
-- and UTC day instead of a row per click, so a click costs the database a few dozen bytes of
-- one append instead of two B-tree inserts; retention drops whole days.
CREATE TABLE IF NOT EXISTS click_segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    day INTEGER NOT NULL,
    batch_id BLOB NOT NULL,
    clicks INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS click_segments_day ON click_segments (day, id);

-- Clicks with fraud reasons also keep a row each, found by link: the review evidence and
-- confirmations read and mark them (the CONFIRMED bit in fraud_reasons).
CREATE TABLE IF NOT EXISTS flagged_clicks (
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
CREATE INDEX IF NOT EXISTS flagged_clicks_link ON flagged_clicks (link_id, click_id);
INSERT INTO flagged_clicks SELECT click_id, link_id, at, visitor, ip, referrer_host, country,
    device, browser, os, is_bot, fraud_reasons FROM clicks WHERE fraud_reasons <> 0;
-- `clicks` keeps the rows written before this version (read with the segments, purged by
-- retention); nothing is written to it any more.
