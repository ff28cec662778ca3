-- linkgate schema v1 (SQLite).
-- Times are INTEGER milliseconds since the Unix epoch (UTC). TEXT compares bytewise, so codes
-- are case-sensitive. No foreign keys: ownership is enforced by the store API.

CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email ON users (email);

CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash BLOB NOT NULL PRIMARY KEY,
    user_id INTEGER NOT NULL,
    family BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    rotated_at INTEGER NULL,
    revoked_at INTEGER NULL
);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX IF NOT EXISTS refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER NULL,
    revoked_at INTEGER NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_hash ON api_keys (key_hash);
CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id);

CREATE TABLE IF NOT EXISTS links (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id INTEGER NOT NULL,
    domain TEXT NOT NULL,
    code TEXT NOT NULL,
    target TEXT NOT NULL,
    title TEXT NULL,
    redirect_status INTEGER NULL,
    forward_query INTEGER NOT NULL DEFAULT 0,
    password_hash TEXT NULL,
    expires_at INTEGER NULL,
    max_clicks INTEGER NULL,
    fallback_url TEXT NULL,
    state TEXT NOT NULL,
    clicks INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS links_domain_code ON links (domain, code);
CREATE INDEX IF NOT EXISTS links_owner ON links (owner_id, id);

CREATE TABLE IF NOT EXISTS link_tags (
    link_id INTEGER NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (link_id, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS link_tags_tag ON link_tags (tag, link_id);

CREATE TABLE IF NOT EXISTS link_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    link_id INTEGER NOT NULL,
    domain TEXT NOT NULL,
    code TEXT NOT NULL,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS link_changes_link ON link_changes (link_id, seq);

CREATE TABLE IF NOT EXISTS clicks (
    click_id BLOB NOT NULL PRIMARY KEY,
    link_id INTEGER NOT NULL,
    at INTEGER NOT NULL,
    visitor INTEGER NOT NULL,
    ip TEXT NULL,
    referrer_host TEXT NULL,
    country TEXT NULL,
    device TEXT NOT NULL,
    browser TEXT NOT NULL,
    os TEXT NOT NULL,
    is_bot INTEGER NOT NULL,
    fraud_reasons INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS clicks_link_at ON clicks (link_id, at);
CREATE INDEX IF NOT EXISTS clicks_at ON clicks (at);

CREATE TABLE IF NOT EXISTS click_batches (
    batch_id BLOB NOT NULL PRIMARY KEY,
    applied_at INTEGER NOT NULL,
    clicks INT NOT NULL
);

CREATE TABLE IF NOT EXISTS click_hourly (
    link_id INTEGER NOT NULL,
    hour INTEGER NOT NULL,
    total INTEGER NOT NULL,
    human INTEGER NOT NULL,
    bot INTEGER NOT NULL,
    suspicious INTEGER NOT NULL,
    PRIMARY KEY (link_id, hour)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS click_breakdowns (
    link_id INTEGER NOT NULL,
    day INTEGER NOT NULL,
    dimension TEXT NOT NULL,
    value TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (link_id, dimension, day, value)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS unique_visitors (
    link_id INTEGER NOT NULL,
    hour INTEGER NOT NULL,
    visitor INTEGER NOT NULL,
    PRIMARY KEY (link_id, hour, visitor)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS trending_scores (
    link_id INTEGER NOT NULL PRIMARY KEY,
    score REAL NOT NULL,
    epoch INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS trending_scores_score ON trending_scores (epoch, score);

CREATE TABLE IF NOT EXISTS fraud_flags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    link_id INTEGER NOT NULL,
    click_id BLOB NULL,
    reason TEXT NOT NULL,
    detail TEXT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    reviewed_by INTEGER NULL,
    reviewed_at INTEGER NULL
);
CREATE INDEX IF NOT EXISTS fraud_flags_status ON fraud_flags (status, link_id);
CREATE INDEX IF NOT EXISTS fraud_flags_link ON fraud_flags (link_id, id);

CREATE TABLE IF NOT EXISTS blocked_domains (
    domain TEXT NOT NULL PRIMARY KEY,
    reason TEXT NULL,
    created_by INTEGER NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    actor_id INTEGER NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    reason TEXT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
