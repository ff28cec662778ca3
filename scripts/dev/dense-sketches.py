#!/usr/bin/env python3
"""Gives the hot links of a benchmark SQLite store large visitor sketches, as a busy day leaves
them: for link ids 1..LINKS, the current UTC hour, the next one and the current day each get
one dense (16 KiB HyperLogLog) sketch. Works on schema version 5 (one row per bucket) and 6
(parts; the bucket's parts are replaced by one part 0).

    python3 scripts/dev/dense-sketches.py /tmp/ab/ab.db [LINKS=10000]

Used for the session 10 A/B in BENCHMARKS.md: without it a fresh benchmark store has small
sketches, and the cost of rewriting large ones (what a store sees later in a busy day) is
not measured.
"""
import random
import sqlite3
import sys
import time

HOUR = 3_600_000
DAY = 24 * HOUR


def main() -> None:
    path = sys.argv[1]
    links = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    rng = random.Random(1)
    # Registers as ~100,000 visitors leave them: mostly 3..8 (format byte 2, then 2^14).
    blob = bytes([2]) + bytes(
        min(50, max(1, int(rng.expovariate(1.0) * 1.4) + 3)) for _ in range(1 << 14)
    )
    now = int(time.time() * 1000)
    keys = [("h", now // HOUR * HOUR), ("h", now // HOUR * HOUR + HOUR), ("d", now // DAY * DAY)]
    conn = sqlite3.connect(path)
    version = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
    for link in range(1, links + 1):
        for granularity, bucket in keys:
            if version >= 6:
                conn.execute(
                    "DELETE FROM visitor_sketches WHERE link_id = ? AND granularity = ? AND bucket = ?",
                    (link, granularity, bucket),
                )
                conn.execute(
                    "INSERT INTO visitor_sketches (link_id, granularity, bucket, part, sketch) "
                    "VALUES (?, ?, ?, 0, ?)",
                    (link, granularity, bucket, blob),
                )
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO visitor_sketches (link_id, granularity, bucket, sketch) "
                    "VALUES (?, ?, ?, ?)",
                    (link, granularity, bucket, blob),
                )
    conn.commit()
    rows, size = conn.execute("SELECT COUNT(*), SUM(LENGTH(sketch)) FROM visitor_sketches").fetchone()
    print(f"{path}: schema {version}, {rows} sketch rows, {size} bytes")


if __name__ == "__main__":
    main()
