//! The settings model shared by both services.
//!
//! Every field has a default that needs no file and no external service: `SQLite` in `./data`,
//! no Redis, listeners on loopback-friendly ports. Durations are whole milliseconds or seconds,
//! named with their unit, so a TOML file reads unambiguously.

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::secret::{Secret, SecretUrl};

/// All of linkgate's settings. Each service reads the sections it needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub proxy: ProxySettings,
    pub admin: AdminSettings,
    pub store: StoreSettings,
    pub redis: RedisSettings,
    pub cache: CacheSettings,
    pub clicks: ClickSettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub links: LinkSettings,
    pub fraud: FraudSettings,
    pub log: LogSettings,
}

/// The Pingora edge service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxySettings {
    /// Public listener: redirects, plus passthrough of `/api/*` and the dashboard to admin.
    pub listen: SocketAddr,
    /// Prometheus listener, kept off the public port.
    pub metrics_listen: SocketAddr,
    /// Where non-link paths are forwarded (the admin service).
    pub admin_upstream: SocketAddr,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// SIGTERM: stop accepting, finish in-flight requests, flush clicks, exit within this.
    pub grace_period_secs: u64,
    /// Peers whose X-Forwarded-For is believed. Anyone else's is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Maximum concurrent store lookups on cache misses (protects the database from a stampede).
    pub store_concurrency: usize,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            admin_upstream: SocketAddr::from(([127, 0, 0, 1], 8081)),
            threads: 0,
            grace_period_secs: 10,
            trusted_proxies: vec![
                "127.0.0.1/32".parse().expect("valid literal"),
                "::1/128".parse().expect("valid literal"),
            ],
            store_concurrency: 64,
        }
    }
}

/// The warp admin service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    /// Largest accepted request body; bulk create of 1000 links fits well inside.
    pub max_body_bytes: u64,
    /// E-mail of the first administrator, created at start when no admin exists.
    pub bootstrap_admin_email: Option<String>,
    /// Password for that administrator; when absent a random one is generated and printed once.
    pub bootstrap_admin_password: Option<Secret>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
            max_body_bytes: 1024 * 1024,
            bootstrap_admin_email: None,
            bootstrap_admin_password: None,
        }
    }
}

/// Where links, users and clicks live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreSettings {
    /// `sqlite://PATH` (embedded, the default) or `mysql://user:pass@host:port/db`.
    pub url: SecretUrl,
    /// Upper bound of pooled connections (MySQL) or reader connections (SQLite).
    pub max_connections: usize,
    /// Raw clicks older than this are deleted; aggregates are kept. 0 keeps them forever.
    pub raw_click_retention_days: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: SecretUrl::new("sqlite://data/linkgate.db"),
            max_connections: 16,
            raw_click_retention_days: 90,
        }
    }
}

/// Optional Redis: L2 cache, invalidation pub/sub, cluster-wide counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL; absent means single-node mode without Redis.
    pub url: Option<SecretUrl>,
    /// Per-command timeout on the redirect path; Redis must be faster than the store or skipped.
    pub timeout_ms: u64,
    /// Per-command timeout in the admin service (login and creation limits, change notices).
    /// Not on the redirect path, and a login fails closed when Redis does not answer, so it
    /// waits longer than `timeout_ms`.
    pub admin_timeout_ms: u64,
    /// After errors, Redis is skipped for this long (circuit breaker).
    pub circuit_cooldown_ms: u64,
    /// Prefix for every key, so linkgate shares a Redis with other users safely.
    pub key_prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            timeout_ms: 5,
            admin_timeout_ms: 250,
            circuit_cooldown_ms: 2000,
            key_prefix: "lg:".to_owned(),
        }
    }
}

/// The proxy's two cache tiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheSettings {
    /// In-process (L1) cache bound, in bytes of cached link data.
    pub l1_max_bytes: u64,
    pub l1_ttl_secs: u64,
    pub l2_ttl_secs: u64,
    /// Unknown codes are remembered this long so enumeration does not reach the store.
    pub negative_ttl_secs: u64,
    /// How often the proxy polls `link_changes` (the invalidation safety net).
    pub change_poll_ms: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            l1_max_bytes: 256 * 1024 * 1024,
            l1_ttl_secs: 300,
            l2_ttl_secs: 3600,
            negative_ttl_secs: 5,
            change_poll_ms: 500,
        }
    }
}

/// The click pipeline: queue, batching, enrichment, durability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClickSettings {
    /// Bounded lock-free queue between redirects and the batcher; full = counted drop.
    pub queue_capacity: usize,
    /// A batch is written when it holds this many events ... (under load, batches grow up
    /// to this while the previous write runs, which amortises aggregate upserts)
    pub batch_max_events: usize,
    /// ... or when this much time has passed since the last write.
    pub flush_interval_ms: u64,
    /// How often a batcher writes the aggregates (hourly counters, breakdowns, unique
    /// visitors, trending, totals, flagged-click segments) of the batches it wrote since:
    /// raw clicks are in the database within `flush_interval_ms`, analytics within this.
    pub aggregate_interval_ms: u64,
    /// Under load the window stays open longer, up to this: ten times as long as its last
    /// write took, so aggregate writes take at most about a tenth of the batcher's time
    /// and a link clicked often in a window costs one row per aggregate, not one per second.
    /// Under heavy load analytics (not raw clicks) trail redirects by up to this.
    pub aggregate_max_interval_ms: u64,
    /// Batches that cannot reach the store are journaled here and replayed.
    pub journal_dir: PathBuf,
    /// Keep client IPs in raw clicks (off by default: only a keyed visitor hash is stored).
    pub store_raw_ip: bool,
    /// When raw IPs are kept, truncate them to /24 (IPv4) and /48 (IPv6).
    pub truncate_ip: bool,
    /// Trusted load-balancer header with the client's country (e.g. `CF-IPCountry`).
    pub country_header: Option<String>,
    /// MaxMind-format country database, used when no country header is configured (or a
    /// request lacks it).
    pub geoip_db: Option<PathBuf>,
    /// Clicks held in memory awaiting a write; beyond this, batches go to the journal.
    pub buffer_max_clicks: usize,
    /// When the batcher falls behind or finds every core busy while clicks arrive fast (a
    /// proxy at its peak), new click events are deferred to files under
    /// `journal_dir/deferred` and processed in order when the CPU allows: redirects keep
    /// the CPU, analytics trail them (by at most about a minute of deferral). Past this
    /// many deferred clicks the batcher gets CPU of its own (the normal policy) to catch
    /// up. 0: never defer (the batcher gets CPU as soon as it falls behind).
    pub defer_max_clicks: u64,
    /// First retry delay after a failed batch write; doubles up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Failed writes in a row after which the store counts as down and batches are
    /// journaled instead of buffered.
    pub spill_after_failures: u32,
    /// A batch write taking longer than this counts as failed (and is retried).
    pub write_timeout_ms: u64,
    /// Half-life of the trending score.
    pub trending_half_life_secs: u64,
}

impl Default for ClickSettings {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            batch_max_events: 50_000,
            flush_interval_ms: 100,
            aggregate_interval_ms: 1000,
            aggregate_max_interval_ms: 30_000,
            journal_dir: PathBuf::from("data/journal"),
            store_raw_ip: false,
            truncate_ip: true,
            country_header: None,
            geoip_db: None,
            buffer_max_clicks: 100_000,
            defer_max_clicks: 4_000_000,
            retry_initial_ms: 100,
            retry_max_ms: 5_000,
            spill_after_failures: 3,
            write_timeout_ms: 10_000,
            trending_half_life_secs: 3600,
        }
    }
}

/// JWT access tokens and refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// HMAC key for access tokens (at least 32 bytes). Generated and kept in the data directory
    /// when absent, so a single node needs no setup; set it for more than one admin node.
    pub jwt_secret: Option<Secret>,
    /// Where the generated key is kept when `jwt_secret` is absent (created 0600 at start).
    pub jwt_secret_file: PathBuf,
    /// `kid` header of the current key, for rotation.
    pub jwt_key_id: String,
    /// The key being retired: tokens it signed (with this `kid`) stay valid until they
    /// expire, new tokens use `jwt_secret`. Set both or neither.
    pub jwt_previous_key_id: Option<String>,
    pub jwt_previous_secret: Option<Secret>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    /// Clock skew tolerated when checking exp/nbf; at most 5 s.
    pub leeway_secs: u64,
    /// Whether anyone may sign up; when false only administrators create accounts.
    pub allow_signup: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_secret_file: PathBuf::from("data/jwt-secret"),
            jwt_key_id: "k1".to_owned(),
            jwt_previous_key_id: None,
            jwt_previous_secret: None,
            jwt_issuer: "linkgate".to_owned(),
            jwt_audience: "linkgate-api".to_owned(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            leeway_secs: 5,
            allow_signup: true,
        }
    }
}

/// Request rate limits (GCRA); each is a count per minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    /// Link creations per user.
    pub create_per_minute: u32,
    /// Login and signup attempts per client IP.
    pub login_per_minute: u32,
    /// Requests for unknown codes per client IP at the proxy (code enumeration).
    pub unknown_code_per_minute: u32,
    /// Password attempts per client IP on protected links.
    pub password_per_minute: u32,
    /// All proxy requests per client IP; 0 disables the limit.
    pub proxy_per_minute: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            create_per_minute: 60,
            login_per_minute: 10,
            unknown_code_per_minute: 60,
            password_per_minute: 10,
            proxy_per_minute: 0,
        }
    }
}

/// Short links as users see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkSettings {
    /// Base of every short URL handed out, e.g. `https://sho.rt`.
    pub public_base_url: String,
    /// Extra host names the proxy answers for (custom domains). The host of
    /// `public_base_url` is always included.
    pub domains: Vec<String>,
    /// Length of generated codes (base62); at least 7 so codes cannot be enumerated cheaply.
    pub code_length: usize,
    /// Redirect status used when a link does not set its own: 301, 302, 307 or 308.
    pub default_redirect_status: u16,
    /// Hosts of other URL shorteners; links to them are refused (chains hide destinations).
    pub blocked_shorteners: Vec<String>,
    /// Refuse targets whose host is an IP literal in a private, loopback or link-local range.
    pub refuse_private_targets: bool,
}

impl Default for LinkSettings {
    fn default() -> Self {
        Self {
            public_base_url: "http://localhost:8080".to_owned(),
            domains: Vec::new(),
            code_length: 7,
            default_redirect_status: 302,
            blocked_shorteners: ["bit.ly", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
            refuse_private_targets: true,
        }
    }
}

/// Fraud scoring of clicks in the batcher. Each rule flags a click with its own reason;
/// flagged clicks still redirect but count as suspicious, not human, and stay out of unique
/// visitors and trending. Thresholds are "more than N": the (N+1)th click is flagged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent on/off switches of a TOML section, each named for its rule"
)]
pub struct FraudSettings {
    pub enabled: bool,
    /// Clicks from one client address within 10 s.
    pub ip_per_10s: u32,
    /// Clicks from one client address within 60 s.
    pub ip_per_minute: u32,
    /// Clicks by one visitor (address + User-Agent) on one link within `repeat_window_secs`.
    pub repeat_max: u32,
    pub repeat_window_secs: u64,
    /// A link's clicks in the current minute above `burst_factor` times its own recent
    /// per-minute average (and above `burst_min_per_minute`) are a burst.
    pub burst_factor: u32,
    pub burst_min_per_minute: u32,
    /// Client networks whose clicks are always suspicious (e.g. data-centre ranges).
    pub bad_networks: Vec<IpNet>,
    /// Refuse redirects to `bad_networks` outright (403 at the proxy) instead of redirecting
    /// and counting the click as suspicious. Every other rule only scores: the redirect
    /// has already happened when the batcher sees the click.
    pub refuse_bad_networks: bool,
    /// Flag clicks without an `Accept` header (browsers always send one).
    pub flag_missing_accept: bool,
    /// Flag HEAD requests and prefetches (link previews, speculative loads).
    pub flag_head_and_prefetch: bool,
    /// A link enters the review queue when, within one hour, it has at least
    /// `review_min_clicks` clicks of which `review_suspicious_percent` are suspicious, or
    /// any burst clicks.
    pub review_min_clicks: u32,
    pub review_suspicious_percent: u32,
}

impl Default for FraudSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            ip_per_10s: 20,
            ip_per_minute: 60,
            repeat_max: 5,
            repeat_window_secs: 10,
            burst_factor: 10,
            burst_min_per_minute: 120,
            bad_networks: Vec::new(),
            refuse_bad_networks: false,
            flag_missing_accept: true,
            flag_head_and_prefetch: true,
            review_min_clicks: 50,
            review_suspicious_percent: 30,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// A `tracing` filter such as `info` or `linkgate_proxy=debug,info`.
    pub filter: String,
    /// JSON lines instead of human-readable text.
    pub json: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            filter: "info".to_owned(),
            json: false,
        }
    }
}

/// Which database the store URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// Embedded SQLite file at this path.
    Sqlite(PathBuf),
    /// A MySQL or MariaDB server.
    Mysql,
}

impl StoreSettings {
    /// The backend named by `url`; `None` when the scheme is neither `sqlite://` nor `mysql://`.
    pub fn kind(&self) -> Option<StoreKind> {
        let url = self.url.expose();
        if let Some(path) = url.strip_prefix("sqlite://") {
            Some(StoreKind::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("mysql://") {
            Some(StoreKind::Mysql)
        } else {
            None
        }
    }
}

impl LinkSettings {
    /// Every host name the service answers for, lower-cased, without port: the public base
    /// URL's host plus `domains`. Targets on these hosts would redirect in a loop.
    pub fn own_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = url::Url::parse(&self.public_base_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .into_iter()
            .collect();
        for domain in &self.domains {
            let host = domain
                .split(':')
                .next()
                .unwrap_or(domain)
                .to_ascii_lowercase();
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        hosts
    }
}
