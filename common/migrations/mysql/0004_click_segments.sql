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

-- Clicks with fraud reasons also keep a row each, found by link: the review evidence and
-- confirmations read and mark them (the CONFIRMED bit in fraud_reasons).
CREATE TABLE IF NOT EXISTS flagged_clicks (
    click_id BINARY(16) NOT NULL PRIMARY KEY,
    link_id BIGINT NOT NULL,
    at BIGINT NOT NULL,
    visitor BIGINT NOT NULL,
    ip VARCHAR(45) CHARACTER SET ascii NULL,
    referrer_host VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NULL,
    country CHAR(2) CHARACTER SET ascii NULL,
    device VARCHAR(32) CHARACTER SET ascii NOT NULL,
    browser VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    os VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    is_bot TINYINT(1) NOT NULL,
    fraud_reasons INT UNSIGNED NOT NULL,
    KEY flagged_clicks_link (link_id)
) ENGINE=InnoDB;
INSERT IGNORE INTO flagged_clicks SELECT click_id, link_id, at, visitor, ip, referrer_host,
    country, device, browser, os, is_bot, fraud_reasons FROM clicks WHERE fraud_reasons <> 0;
-- `clicks` keeps the rows written before this version (read with the segments, purged by
-- retention); nothing is written to it any more.
