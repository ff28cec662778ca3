-- A visitor sketch may be several rows ("parts") per link and bucket: each aggregation
-- window inserts its visitors as a new part instead of reading and rewriting the whole
-- sketch, and parts are folded into one from time to time. Readers union every part.
-- A rowid table now: a sketch is up to 16 KiB, and a WITHOUT ROWID table keeps whole rows in
-- its interior pages too, so every key lookup read the overflow pages of the sketches it
-- passed. The key is a small index beside the rows.
CREATE TABLE IF NOT EXISTS visitor_sketches_v2 (
    link_id INTEGER NOT NULL,
    granularity TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    part INTEGER NOT NULL,
    sketch BLOB NOT NULL,
    PRIMARY KEY (link_id, granularity, bucket, part)
);
INSERT INTO visitor_sketches_v2 (link_id, granularity, bucket, part, sketch)
    SELECT link_id, granularity, bucket, 0, sketch FROM visitor_sketches;
DROP TABLE visitor_sketches;
ALTER TABLE visitor_sketches_v2 RENAME TO visitor_sketches;
