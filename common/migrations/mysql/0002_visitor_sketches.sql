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

-- Raw clicks: the time index goes (click ids are UUIDv7, time-ordered, so retention purges
-- by primary-key range), and the per-link index becomes (link_id) plus, implicitly in
-- InnoDB, the primary key: a link's clicks in time order. One index less per inserted click.
ALTER TABLE clicks DROP INDEX clicks_at, DROP INDEX clicks_link_at, ADD INDEX clicks_link (link_id);
