-- Raw clicks as segments (common/src/clicks/segment.rs): one compact value per click batch
-- and UTC day instead of a row per click, so a click costs the database a few dozen bytes of
-- one append instead of two B-tree inserts; retention drops whole days.
CREATE TABLE IF NOT EXISTS click_segments (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    day BIGINT NOT NULL,
    batch_id BINARY(16) NOT NULL,
    clicks INT NOT NULL,
    data MEDIUMBLOB NOT NULL,
    KEY click_segments_day (day, id)
) ENGINE=InnoDB;

-- Clicks with fraud reasons are also kept per link (one segment per link per batch), so the
-- review evidence and confirmations find a link's flagged clicks without reading every
-- click; `unconfirmed` counts those a confirmation has not yet taken out of the aggregates
-- (each confirmed click carries the CONFIRMED bit in its fraud reasons).
CREATE TABLE IF NOT EXISTS flagged_segments (
    link_id BIGINT NOT NULL,
    first_click BINARY(16) NOT NULL,
    last_click BINARY(16) NOT NULL,
    clicks INT NOT NULL,
    unconfirmed INT NOT NULL,
    data MEDIUMBLOB NOT NULL,
    PRIMARY KEY (link_id, first_click),
    KEY flagged_segments_last (last_click)
) ENGINE=InnoDB;
-- `clicks` keeps the rows written before this version (read with the segments, flagged ones
-- included, and purged by retention); nothing is written to it any more.
