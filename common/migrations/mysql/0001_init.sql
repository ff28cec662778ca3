-- linkgate schema v1 (MySQL 8 / MariaDB 10.11).
-- Times are BIGINT milliseconds since the Unix epoch (UTC). Codes, domains and tags are ASCII
-- with binary collation: codes are case-sensitive and the indexes stay compact.
-- No foreign keys: the click path writes in bulk and must not pay for them; ownership is
-- enforced by the store API.

CREATE TABLE IF NOT EXISTS users (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email VARCHAR(254) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    role VARCHAR(16) CHARACTER SET ascii NOT NULL,
    disabled TINYINT(1) NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE KEY users_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash BINARY(32) NOT NULL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    family BINARY(16) NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    rotated_at BIGINT NULL,
    revoked_at BIGINT NULL,
    KEY refresh_tokens_family (family),
    KEY refresh_tokens_user (user_id)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS api_keys (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    name VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    prefix VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    key_hash BINARY(32) NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NULL,
    revoked_at BIGINT NULL,
    UNIQUE KEY api_keys_hash (key_hash),
    KEY api_keys_user (user_id)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS links (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    owner_id BIGINT NOT NULL,
    domain VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    code VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    target VARCHAR(2048) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    title VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    redirect_status SMALLINT NULL,
    forward_query TINYINT(1) NOT NULL DEFAULT 0,
    password_hash VARCHAR(255) NULL,
    expires_at BIGINT NULL,
    max_clicks BIGINT NULL,
    fallback_url VARCHAR(2048) CHARACTER SET ascii COLLATE ascii_bin NULL,
    state VARCHAR(16) CHARACTER SET ascii NOT NULL,
    clicks BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT NULL,
    UNIQUE KEY links_domain_code (domain, code),
    KEY links_owner (owner_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS link_tags (
    link_id BIGINT NOT NULL,
    tag VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    PRIMARY KEY (link_id, tag),
    KEY link_tags_tag (tag, link_id)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS link_changes (
    seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    link_id BIGINT NOT NULL,
    domain VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    code VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    kind VARCHAR(16) CHARACTER SET ascii NOT NULL,
    at BIGINT NOT NULL,
    KEY link_changes_link (link_id, seq)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS clicks (
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
    KEY clicks_link_at (link_id, at),
    KEY clicks_at (at)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS click_batches (
    batch_id BINARY(16) NOT NULL PRIMARY KEY,
    applied_at BIGINT NOT NULL,
    clicks INT NOT NULL
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS click_hourly (
    link_id BIGINT NOT NULL,
    hour BIGINT NOT NULL,
    total BIGINT NOT NULL,
    human BIGINT NOT NULL,
    bot BIGINT NOT NULL,
    suspicious BIGINT NOT NULL,
    PRIMARY KEY (link_id, hour)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS click_breakdowns (
    link_id BIGINT NOT NULL,
    day BIGINT NOT NULL,
    dimension VARCHAR(16) CHARACTER SET ascii NOT NULL,
    value VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (link_id, dimension, day, value)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS unique_visitors (
    link_id BIGINT NOT NULL,
    hour BIGINT NOT NULL,
    visitor BIGINT NOT NULL,
    PRIMARY KEY (link_id, hour, visitor)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS trending_scores (
    link_id BIGINT NOT NULL PRIMARY KEY,
    score DOUBLE NOT NULL,
    epoch BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    KEY trending_scores_score (epoch, score)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS fraud_flags (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    link_id BIGINT NOT NULL,
    click_id BINARY(16) NULL,
    reason VARCHAR(32) CHARACTER SET ascii NOT NULL,
    detail VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    status VARCHAR(16) CHARACTER SET ascii NOT NULL,
    created_at BIGINT NOT NULL,
    reviewed_by BIGINT NULL,
    reviewed_at BIGINT NULL,
    KEY fraud_flags_status (status, link_id),
    KEY fraud_flags_link (link_id, id)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS blocked_domains (
    domain VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    reason VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    created_by BIGINT NULL,
    created_at BIGINT NOT NULL
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS audit_log (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    actor_id BIGINT NULL,
    action VARCHAR(64) CHARACTER SET ascii NOT NULL,
    subject VARCHAR(300) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    reason VARCHAR(500) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    at BIGINT NOT NULL,
    KEY audit_log_at (at)
) ENGINE=InnoDB;
