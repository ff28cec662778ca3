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

-- Clicks with fraud reasons are also kept per link (one segment per link per batch), so the
-- review evidence and confirmations find a link's flagged clicks without reading every
-- click; `unconfirmed` counts those a confirmation has not yet taken out of the aggregates
-- (each confirmed click carries the CONFIRMED bit in its fraud reasons).
CREATE TABLE IF NOT EXISTS flagged_segments (
    link_id INTEGER NOT NULL,
    first_click BLOB NOT NULL,
    last_click BLOB NOT NULL,
    clicks INTEGER NOT NULL,
    unconfirmed INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (link_id, first_click)
);
CREATE INDEX IF NOT EXISTS flagged_segments_last ON flagged_segments (last_click);
-- `clicks` keeps the rows written before this version (read with the segments, flagged ones
-- included, and purged by retention); nothing is written to it any more.
