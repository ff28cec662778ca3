//! Semantic checks that types alone cannot express: ranges, URL schemes, key lengths.
//! Each check adds a message naming its key; none stops the others.

use crate::settings::{Settings, StoreKind};

/// Smallest accepted HMAC key for access tokens: 256 bits, as RFC 7518 requires for HS256.
const MIN_JWT_SECRET_BYTES: usize = 32;

pub(crate) fn validate(s: &Settings) -> Vec<String> {
    let mut p = Problems::default();

    p.range("proxy.grace_period_secs", s.proxy.grace_period_secs, 1, 300);
    p.range("proxy.threads", s.proxy.threads, 0, 1024);
    p.range(
        "proxy.store_concurrency",
        s.proxy.store_concurrency,
        1,
        10_000,
    );
    if s.proxy.listen == s.proxy.metrics_listen && s.proxy.listen.port() != 0 {
        p.add("proxy.metrics_listen", "must differ from proxy.listen");
    }

    p.range(
        "admin.max_body_bytes",
        s.admin.max_body_bytes,
        1024,
        64 * 1024 * 1024,
    );
    if let Some(email) = &s.admin.bootstrap_admin_email
        && !looks_like_email(email)
    {
        p.add("admin.bootstrap_admin_email", "must be an e-mail address");
    }
    if let Some(password) = &s.admin.bootstrap_admin_password {
        let len = password.expose().len();
        if !(8..=128).contains(&len) {
            p.add(
                "admin.bootstrap_admin_password",
                "must be 8 to 128 bytes long",
            );
        }
    }

    match s.store.kind() {
        None => p.add("store.url", "must start with sqlite:// or mysql://"),
        Some(StoreKind::Sqlite(path)) if path.as_os_str().is_empty() => {
            p.add(
                "store.url",
                "sqlite:// needs a file path, e.g. sqlite://data/linkgate.db",
            );
        }
        Some(StoreKind::Mysql) => {
            if url::Url::parse(s.store.url.expose())
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .is_none()
            {
                p.add(
                    "store.url",
                    "is not a valid mysql://user:password@host:port/database URL",
                );
            }
        }
        Some(StoreKind::Sqlite(_)) => {}
    }
    p.range("store.max_connections", s.store.max_connections, 1, 1024);

    if let Some(url) = &s.redis.url {
        let ok = url::Url::parse(url.expose())
            .is_ok_and(|u| matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some());
        if !ok {
            p.add(
                "redis.url",
                "must be a redis:// or rediss:// URL with a host",
            );
        }
    }
    p.range("redis.timeout_ms", s.redis.timeout_ms, 1, 10_000);
    p.range(
        "redis.admin_timeout_ms",
        s.redis.admin_timeout_ms,
        1,
        10_000,
    );
    p.range(
        "redis.circuit_cooldown_ms",
        s.redis.circuit_cooldown_ms,
        10,
        600_000,
    );
    if s.redis.key_prefix.len() > 32 || s.redis.key_prefix.contains(['{', '}', ' ']) {
        p.add(
            "redis.key_prefix",
            "must be at most 32 bytes without spaces or braces (braces are Redis Cluster hash tags)",
        );
    }

    p.range(
        "cache.l1_max_bytes",
        s.cache.l1_max_bytes,
        1024 * 1024,
        1 << 40,
    );
    p.range("cache.l1_ttl_secs", s.cache.l1_ttl_secs, 1, 86_400);
    p.range("cache.l2_ttl_secs", s.cache.l2_ttl_secs, 1, 30 * 86_400);
    p.range(
        "cache.negative_ttl_secs",
        s.cache.negative_ttl_secs,
        1,
        3600,
    );
    // Changes must reach every proxy within 1 s, so the poll interval has to stay well below.
    p.range("cache.change_poll_ms", s.cache.change_poll_ms, 50, 500);

    p.range(
        "clicks.queue_capacity",
        s.clicks.queue_capacity,
        16,
        1 << 24,
    );
    p.range(
        "clicks.batch_max_events",
        s.clicks.batch_max_events,
        1,
        100_000,
    );
    p.range(
        "clicks.flush_interval_ms",
        s.clicks.flush_interval_ms,
        1,
        10_000,
    );
    p.range(
        "clicks.aggregate_interval_ms",
        s.clicks.aggregate_interval_ms,
        1,
        60_000,
    );
    p.range(
        "clicks.aggregate_max_interval_ms",
        s.clicks.aggregate_max_interval_ms,
        1,
        600_000,
    );
    if s.clicks.aggregate_max_interval_ms < s.clicks.aggregate_interval_ms {
        p.add(
            "clicks.aggregate_max_interval_ms",
            "must be at least clicks.aggregate_interval_ms",
        );
    }
    if let Some(header) = &s.clicks.country_header
        && (header.is_empty() || !header.bytes().all(is_header_name_byte))
    {
        p.add("clicks.country_header", "must be an HTTP header name");
    }
    p.range(
        "clicks.buffer_max_clicks",
        s.clicks.buffer_max_clicks,
        1,
        10_000_000,
    );
    p.range(
        "clicks.defer_max_clicks",
        s.clicks.defer_max_clicks,
        0,
        1_000_000_000,
    );
    p.range(
        "clicks.retry_initial_ms",
        s.clicks.retry_initial_ms,
        1,
        60_000,
    );
    p.range(
        "clicks.retry_max_ms",
        s.clicks.retry_max_ms,
        s.clicks.retry_initial_ms.max(1),
        600_000,
    );
    p.range(
        "clicks.spill_after_failures",
        s.clicks.spill_after_failures,
        1,
        1000,
    );
    p.range(
        "clicks.write_timeout_ms",
        s.clicks.write_timeout_ms,
        100,
        600_000,
    );
    p.range(
        "clicks.trending_half_life_secs",
        s.clicks.trending_half_life_secs,
        60,
        365 * 86_400,
    );

    if let Some(secret) = &s.auth.jwt_secret
        && secret.expose().len() < MIN_JWT_SECRET_BYTES
    {
        p.add(
            "auth.jwt_secret",
            &format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"),
        );
    }
    p.range("fraud.ip_per_10s", s.fraud.ip_per_10s, 1, 1_000_000);
    p.range("fraud.ip_per_minute", s.fraud.ip_per_minute, 1, 1_000_000);
    p.range("fraud.repeat_max", s.fraud.repeat_max, 1, 1000);
    p.range(
        "fraud.repeat_window_secs",
        s.fraud.repeat_window_secs,
        1,
        3600,
    );
    p.range(
        "fraud.review_min_clicks",
        s.fraud.review_min_clicks,
        1,
        1_000_000_000,
    );
    p.range(
        "fraud.review_suspicious_percent",
        s.fraud.review_suspicious_percent,
        1,
        100,
    );
    p.range("fraud.burst_factor", s.fraud.burst_factor, 2, 10_000);
    p.range(
        "fraud.burst_min_per_minute",
        s.fraud.burst_min_per_minute,
        1,
        10_000_000,
    );

    if !is_key_id(&s.auth.jwt_key_id) {
        p.add(
            "auth.jwt_key_id",
            "must be 1-64 characters of A-Z a-z 0-9 . _ -",
        );
    }
    match (&s.auth.jwt_previous_key_id, &s.auth.jwt_previous_secret) {
        (None, None) => {}
        (Some(kid), Some(secret)) => {
            if !is_key_id(kid) || *kid == s.auth.jwt_key_id {
                p.add(
                    "auth.jwt_previous_key_id",
                    "must be 1-64 characters of A-Z a-z 0-9 . _ - and differ from jwt_key_id",
                );
            }
            if secret.expose().len() < MIN_JWT_SECRET_BYTES {
                p.add(
                    "auth.jwt_previous_secret",
                    &format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"),
                );
            }
        }
        _ => p.add(
            "auth.jwt_previous_key_id",
            "set jwt_previous_key_id and jwt_previous_secret together",
        ),
    }
    if s.auth.jwt_issuer.trim().is_empty() {
        p.add("auth.jwt_issuer", "must not be empty");
    }
    if s.auth.jwt_audience.trim().is_empty() {
        p.add("auth.jwt_audience", "must not be empty");
    }
    p.range("auth.access_ttl_secs", s.auth.access_ttl_secs, 60, 86_400);
    p.range(
        "auth.refresh_ttl_secs",
        s.auth.refresh_ttl_secs,
        3600,
        365 * 86_400,
    );
    p.range("auth.leeway_secs", s.auth.leeway_secs, 0, 5);

    p.range(
        "limits.create_per_minute",
        s.limits.create_per_minute,
        1,
        1_000_000,
    );
    p.range(
        "limits.login_per_minute",
        s.limits.login_per_minute,
        1,
        1_000_000,
    );
    p.range(
        "limits.unknown_code_per_minute",
        s.limits.unknown_code_per_minute,
        1,
        1_000_000,
    );
    p.range(
        "limits.password_per_minute",
        s.limits.password_per_minute,
        1,
        1_000_000,
    );
    p.range(
        "limits.proxy_per_minute",
        s.limits.proxy_per_minute,
        0,
        100_000_000,
    );

    match url::Url::parse(&s.links.public_base_url) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.username().is_empty()
                && u.password().is_none()
                && u.query().is_none()
                && u.fragment().is_none() => {}
        _ => p.add(
            "links.public_base_url",
            "must be an http(s) URL with a host and no credentials, query or fragment",
        ),
    }
    for domain in &s.links.domains {
        if !is_host_and_port(domain) {
            p.add("links.domains", &format!("{domain:?} is not a host name"));
        }
    }
    for host in &s.links.blocked_shorteners {
        if !is_host_and_port(host) {
            p.add(
                "links.blocked_shorteners",
                &format!("{host:?} is not a host name"),
            );
        }
    }
    // Below 7 base62 characters (3.5e12 codes) guessing live codes becomes practical.
    p.range("links.code_length", s.links.code_length, 7, 64);
    if !matches!(s.links.default_redirect_status, 301 | 302 | 307 | 308) {
        p.add(
            "links.default_redirect_status",
            "must be 301, 302, 307 or 308",
        );
    }

    if s.log.filter.trim().is_empty() {
        p.add("log.filter", "must not be empty (try \"info\")");
    }

    p.0
}

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: &str, message: &str) {
        self.0.push(format!("{key}: {message}"));
    }

    fn range<T: PartialOrd + std::fmt::Display + Copy>(&mut self, key: &str, v: T, lo: T, hi: T) {
        if v < lo || v > hi {
            self.add(key, &format!("must be between {lo} and {hi}, got {v}"));
        }
    }
}

fn looks_like_email(s: &str) -> bool {
    matches!(s.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.'))
        && s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `host` or `host:port` with an ASCII DNS name (IDN domains must be given as punycode).
/// Shared with the domain model, so configured domains and link domains follow one rule.
pub fn is_host_and_port(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    host_ok && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0))
}

/// A JWT `kid`: short and safe to echo in a header.
fn is_key_id(kid: &str) -> bool {
    (1..=64).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_valid() {
        assert!(validate(&Settings::default()).is_empty());
    }

    #[test]
    fn hosts_with_ports_are_accepted_and_junk_is_not() {
        assert!(is_host_and_port("sho.rt"));
        assert!(is_host_and_port("localhost:8080"));
        assert!(is_host_and_port("xn--bcher-kva.example"));
        assert!(!is_host_and_port("bad host"));
        assert!(!is_host_and_port("a..b"));
        assert!(!is_host_and_port("host:0"));
        assert!(!is_host_and_port("https://x"));
    }

    #[test]
    fn a_short_jwt_secret_is_refused() {
        let mut s = Settings::default();
        s.auth.jwt_secret = Some(crate::Secret::new("short"));
        let problems = validate(&s);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("auth.jwt_secret"));
        assert!(!problems[0].contains("short\""));
    }

    #[test]
    fn a_redirect_status_outside_the_redirect_codes_is_refused() {
        let mut s = Settings::default();
        s.links.default_redirect_status = 200;
        assert_eq!(validate(&s).len(), 1);
    }

    #[test]
    fn an_aggregate_window_cap_below_its_interval_is_refused() {
        let mut s = Settings::default();
        s.clicks.aggregate_interval_ms = 2000;
        s.clicks.aggregate_max_interval_ms = 1000;
        let problems = validate(&s);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("clicks.aggregate_max_interval_ms"));
        s.clicks.aggregate_max_interval_ms = 2000;
        assert!(validate(&s).is_empty());
    }
}
