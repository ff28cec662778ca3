-- The fraud review queue: one row per link that crossed a review threshold, with the
-- evidence that opened it and the administrator's decision. `confirmed_through` is the
-- click id the last confirmation reached; each confirmed click itself carries a CONFIRMED
-- bit in clicks.fraud_reasons, so no click is taken out of the aggregates twice and a late
-- one is caught by the next confirmation. The never-used per-click flag table
-- goes: a click's reasons are stored on the click itself (clicks.fraud_reasons).
CREATE TABLE IF NOT EXISTS fraud_reviews (
    link_id INTEGER NOT NULL PRIMARY KEY,
    state TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    hour_total INTEGER NOT NULL,
    hour_suspicious INTEGER NOT NULL,
    burst_clicks INTEGER NOT NULL,
    confirmed_through BLOB NULL,
    confirmed_clicks INTEGER NOT NULL DEFAULT 0,
    decided_by INTEGER NULL,
    decided_at INTEGER NULL,
    note TEXT NULL
);

CREATE INDEX IF NOT EXISTS fraud_reviews_state ON fraud_reviews (state, updated_at);

DROP TABLE IF EXISTS fraud_flags;
