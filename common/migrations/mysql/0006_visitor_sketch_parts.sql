-- A visitor sketch may be several rows ("parts") per link and bucket: each aggregation
-- window inserts its visitors as a new part instead of reading and rewriting the whole
-- sketch, and parts are folded into one from time to time. Readers union every part.
ALTER TABLE visitor_sketches ADD COLUMN part BIGINT NOT NULL DEFAULT 0 AFTER bucket,
    DROP PRIMARY KEY, ADD PRIMARY KEY (link_id, granularity, bucket, part);
