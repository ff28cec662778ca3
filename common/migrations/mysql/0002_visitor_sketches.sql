-- Unique visitors as mergeable sketches (exact sets up to 2048 visitors, HyperLogLog beyond)
-- per link per UTC hour ('h') and day ('d'), replacing the exact per-visitor rows; and the
-- daily visitor salts the click pipeline hashes IP + User-Agent with (old salts are deleted,
-- so old visitor hashes cannot be recomputed).
CREATE TABLE IF NOT EXISTS visitor_sketches (
    link_id BIGINT NOT NULL,
    granularity CHAR(1) CHARACTER SET ascii NOT NULL,
    bucket BIGINT NOT NULL,
    sketch BLOB NOT NULL,
    PRIMARY KEY (link_id, granularity, bucket)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS visitor_salts (
    day BIGINT NOT NULL PRIMARY KEY,
    salt BINARY(32) NOT NULL
) ENGINE=InnoDB;

DROP TABLE IF EXISTS unique_visitors;
