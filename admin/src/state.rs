//! What every handler shares: the store, keys, limiters, metrics and link rules.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use linkgate_common::cache::RedisTier;
use linkgate_common::clicks::TrendingClock;
use linkgate_common::domain::{LinkDomain, TargetPolicy};
use linkgate_common::password::PasswordHasher;
use linkgate_common::ratelimit::Limiter;
use linkgate_common::store::Store;
use linkgate_config::Settings;
use rand::RngExt as _;

use crate::auth::jwt::JwtKeys;
use crate::metrics::Metrics;

/// Shared by all requests (behind an `Arc`).
#[derive(Debug)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub settings: Settings,
    pub jwt: JwtKeys,
    pub hasher: PasswordHasher,
    /// Optional shared tier: invalidation messages and cluster-wide rate limits.
    pub redis: Option<Arc<RedisTier>>,
    /// Login and signup attempts per client address; fails closed without Redis.
    pub login_limiter: Limiter<IpAddr>,
    /// Link creations per user; falls back to local counting without Redis.
    pub create_limiter: Limiter<i64>,
    pub metrics: Metrics,
    /// Rules new targets must satisfy (own hosts, other shorteners, private addresses).
    pub policy: TargetPolicy,
    /// The host of `links.public_base_url`: where links live unless a request names another.
    pub default_domain: LinkDomain,
    /// Every domain links may be created on.
    pub domains: Vec<LinkDomain>,
    pub trending: TrendingClock,
}

/// Why the service could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the JWT key file {path}: {error}")]
    KeyFile { path: String, error: std::io::Error },
    #[error("links.public_base_url has no usable host")]
    BaseUrl,
    #[error("redis: {0}")]
    Redis(String),
}

impl AppState {
    pub fn new(settings: Settings, store: Arc<dyn Store>) -> Result<Self, SetupError> {
        let secret = match &settings.auth.jwt_secret {
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => load_or_create_key(&settings.auth.jwt_secret_file).map_err(|error| {
                SetupError::KeyFile {
                    path: settings.auth.jwt_secret_file.display().to_string(),
                    error,
                }
            })?,
        };
        let redis = RedisTier::for_admin(&settings).map_err(SetupError::Redis)?;
        let default_domain = url::Url::parse(&settings.links.public_base_url)
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.to_owned();
                let authority = match u.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                };
                LinkDomain::parse(&authority).ok()
            })
            .ok_or(SetupError::BaseUrl)?;
        let mut domains = vec![default_domain.clone()];
        domains.extend(
            settings
                .links
                .domains
                .iter()
                .filter_map(|d| LinkDomain::parse(d).ok())
                .filter(|d| *d != default_domain),
        );
        let policy = TargetPolicy {
            own_hosts: settings.links.own_hosts(),
            blocked_shorteners: settings.links.blocked_shorteners.clone(),
            refuse_private: settings.links.refuse_private_targets,
        };
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Ok(Self {
            jwt: JwtKeys::new(&settings.auth, &secret),
            hasher: PasswordHasher::new(cores),
            login_limiter: Limiter::new("login", settings.limits.login_per_minute, redis.clone()),
            create_limiter: Limiter::new(
                "create",
                settings.limits.create_per_minute,
                redis.clone(),
            ),
            trending: TrendingClock::new(
                i64::try_from(settings.clicks.trending_half_life_secs)
                    .unwrap_or(3600)
                    .saturating_mul(1000),
            ),
            metrics: Metrics::new(),
            redis,
            store,
            policy,
            default_domain,
            domains,
            settings,
        })
    }

    /// The short URL of a link: the public base URL's scheme with the link's domain.
    pub fn short_url(&self, domain: &LinkDomain, code: &str) -> String {
        let scheme = self
            .settings
            .links
            .public_base_url
            .split_once("://")
            .map_or("https", |(s, _)| s);
        format!("{scheme}://{}/{code}", domain.as_str())
    }

    /// Tells proxies to drop a link now (Redis); they also poll the change log, so a
    /// failure here delays the change by at most the poll interval.
    pub async fn publish_change(&self, domain: &LinkDomain, code: &str) {
        if let Some(redis) = &self.redis {
            if let Err(error) = redis.forget_link(domain.as_str(), code).await {
                tracing::debug!(%error, "could not drop the Redis copy of a link");
            }
            if let Err(error) = redis.publish_invalidation(domain.as_str(), code).await {
                tracing::debug!(%error, "could not publish an invalidation; proxies will poll");
            }
        }
    }
}

/// Reads the HMAC key kept at `path`, creating it (48 random bytes, base64, mode 0600) on
/// first start so a single node needs no setup.
fn load_or_create_key(path: &Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = text.trim().as_bytes().to_vec();
            if key.len() < 32 {
                return Err(std::io::Error::other("holds fewer than 32 bytes"));
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let bytes: [u8; 48] = rand::rng().random();
            let key = base64::engine::general_purpose::STANDARD.encode(bytes);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(path) {
                Ok(mut file) => {
                    file.write_all(key.as_bytes())?;
                    file.sync_all()?;
                    Ok(key.into_bytes())
                }
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_key(path),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_created_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/jwt-secret");
        let first = load_or_create_key(&path).unwrap();
        assert!(first.len() >= 32);
        assert_eq!(load_or_create_key(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
