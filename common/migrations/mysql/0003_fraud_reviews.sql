-- The fraud review queue: one row per link that crossed a review threshold, with the
-- evidence that opened it and the administrator's decision. `confirmed_through` is the
-- click id the last confirmation reached; each confirmed click itself carries a CONFIRMED
-- bit in clicks.fraud_reasons, so no click is taken out of the aggregates twice and a late
-- one is caught by the next confirmation. The never-used per-click flag table
-- goes: a click's reasons are stored on the click itself (clicks.fraud_reasons).
CREATE TABLE IF NOT EXISTS fraud_reviews (
    link_id BIGINT NOT NULL PRIMARY KEY,
    state VARCHAR(16) CHARACTER SET ascii NOT NULL,
    opened_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    hour_total BIGINT NOT NULL,
    hour_suspicious BIGINT NOT NULL,
    burst_clicks BIGINT NOT NULL,
    confirmed_through BINARY(16) NULL,
    confirmed_clicks BIGINT NOT NULL DEFAULT 0,
    decided_by BIGINT NULL,
    decided_at BIGINT NULL,
    note VARCHAR(500) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    KEY fraud_reviews_state (state, updated_at)
) ENGINE=InnoDB;

DROP TABLE IF EXISTS fraud_flags;
