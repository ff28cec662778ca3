//! Redis as the shared second tier: cached links, cluster-wide click budgets, and the
//! invalidation channel. Every call has a short timeout and goes through a circuit breaker;
//! a Redis that is down or slow costs at most one timeout per cool-down, never a failed
//! redirect.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use linkgate_config::RedisSettings;
use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::breaker::Breaker;
use super::link::{CachedLink, Wire};
use crate::domain::LinkId;

/// How long a forgotten link's key refuses refills (see [`RedisTier::forget_link`]): longer
/// than a node takes to hear of a change (its change-log poll, 500 ms) and finish a put
/// it began before.
const TOMBSTONE_SECS: u64 = 5;

/// Why Redis was not used for a call. Callers fall back; the reason is for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedisUnavailable {
    #[error("redis circuit is open")]
    CircuitOpen,
    #[error("redis is not connected")]
    NotConnected,
    #[error("redis call timed out")]
    Timeout,
    #[error("redis call failed")]
    Failed,
}

/// The Redis tier. Cheap to share (`Arc`); connects in the background.
pub struct RedisTier {
    client: redis::Client,
    /// The live connection, once established. A std lock: held only to clone the handle.
    conn: RwLock<Option<ConnectionManager>>,
    timeout: Duration,
    pub(crate) breaker: Breaker,
    prefix: String,
    /// Seconds a link stays in Redis.
    ttl_secs: u64,
    /// Lua: start a click budget at the persisted count if new, then take one.
    take_script: redis::Script,
    /// Lua: one GCRA step (see [`RedisTier::gcra`]).
    gcra_script: redis::Script,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds the URL (and maybe a password): never print it.
        f.debug_struct("RedisTier")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisTier {
    /// Validates the URL; no connection yet (see [`RedisTier::connect`]). Calls wait up to
    /// `settings.timeout_ms`.
    pub fn new(url: &str, settings: &RedisSettings, ttl: Duration) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url)
            .map_err(|_| "redis.url is not a valid Redis URL".to_owned())?;
        Ok(Arc::new(Self {
            client,
            conn: RwLock::new(None),
            timeout: Duration::from_millis(settings.timeout_ms),
            breaker: Breaker::new(Duration::from_millis(settings.circuit_cooldown_ms)),
            prefix: settings.key_prefix.clone(),
            ttl_secs: ttl.as_secs().max(1),
            take_script: redis::Script::new(
                "if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[1]) end \
                 return redis.call('INCR', KEYS[1])",
            ),
            gcra_script: redis::Script::new(GCRA_LUA),
        }))
    }

    /// The redirect path's tier (`None` without `redis.url`): calls wait up to
    /// `redis.timeout_ms`, L2 copies live `cache.l2_ttl_secs`. Each caller gets a tier of its
    /// own (own connection and breaker).
    pub fn from_settings(
        settings: &linkgate_config::Settings,
    ) -> Result<Option<Arc<Self>>, String> {
        Self::configured(settings, settings.redis.timeout_ms)
    }

    /// The admin service's tier: as [`RedisTier::from_settings`], but calls wait up to
    /// `redis.admin_timeout_ms`. A login's limit check fails closed without an answer, so a
    /// Redis a few milliseconds slow must not turn logins away.
    pub fn for_admin(settings: &linkgate_config::Settings) -> Result<Option<Arc<Self>>, String> {
        Self::configured(settings, settings.redis.admin_timeout_ms)
    }

    fn configured(
        settings: &linkgate_config::Settings,
        timeout_ms: u64,
    ) -> Result<Option<Arc<Self>>, String> {
        settings
            .redis
            .url
            .as_ref()
            .map(|url| {
                let redis = RedisSettings {
                    timeout_ms,
                    ..settings.redis.clone()
                };
                Self::new(
                    url.expose(),
                    &redis,
                    Duration::from_secs(settings.cache.l2_ttl_secs),
                )
            })
            .transpose()
    }

    /// Establishes the connection (the manager reconnects by itself afterwards). Called at
    /// start and retried in the background while Redis is unreachable.
    pub async fn connect(&self) -> Result<(), String> {
        if self.is_connected() {
            return Ok(());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(self.timeout.max(Duration::from_millis(1)) * 4))
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(mut slot) = self.conn.write() {
            *slot = Some(manager);
        }
        Ok(())
    }

    pub fn is_connected(&self) -> bool {
        self.conn.read().is_ok_and(|c| c.is_some())
    }

    /// True while the breaker is skipping Redis.
    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    pub fn times_circuit_opened(&self) -> u64 {
        self.breaker.times_opened()
    }

    /// The client, for subscriptions (pub/sub needs its own connection).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Runs one Redis call under the timeout and the breaker.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, RedisUnavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.call_within(self.timeout, f).await
    }

    /// Runs one Redis call under `limit` and the breaker.
    async fn call_within<T, F, Fut>(&self, limit: Duration, f: F) -> Result<T, RedisUnavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.breaker.is_open() {
            return Err(RedisUnavailable::CircuitOpen);
        }
        let conn = self
            .conn
            .read()
            .ok()
            .and_then(|c| c.clone())
            .ok_or(RedisUnavailable::NotConnected)?;
        match tokio::time::timeout(limit, f(conn)).await {
            Ok(Ok(value)) => {
                self.breaker.record_success();
                Ok(value)
            }
            Ok(Err(_)) => {
                self.breaker.record_failure();
                Err(RedisUnavailable::Failed)
            }
            Err(_) => {
                self.breaker.record_failure();
                Err(RedisUnavailable::Timeout)
            }
        }
    }

    fn link_key(&self, domain: &str, code: &str) -> String {
        format!("{}link:{domain}/{code}", self.prefix)
    }

    fn budget_key(&self, id: LinkId) -> String {
        format!("{}budget:{}", self.prefix, id.0)
    }

    /// The channel invalidations are published on.
    pub fn invalidation_channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    /// A cached link, if Redis has a valid one.
    pub async fn get_link(
        &self,
        domain: &str,
        code: &str,
    ) -> Result<Option<Arc<CachedLink>>, RedisUnavailable> {
        let key = self.link_key(domain, code);
        let raw: Option<Vec<u8>> = self.call(|mut c| async move { c.get(key).await }).await?;
        Ok(raw
            .filter(|bytes| !bytes.is_empty()) // a tombstone (see `forget_link`)
            .and_then(|bytes| serde_json::from_slice::<Wire>(&bytes).ok())
            .and_then(CachedLink::from_wire))
    }

    pub async fn put_link(
        &self,
        domain: &str,
        code: &str,
        link: &CachedLink,
    ) -> Result<(), RedisUnavailable> {
        let key = self.link_key(domain, code);
        let Ok(json) = serde_json::to_vec(&link.to_wire()) else {
            return Ok(());
        };
        let ttl = self.ttl_secs;
        // Only where the key is absent: never over a tombstone (nor over a copy another
        // node put meanwhile, which is as new as this one).
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::EX(ttl));
        self.call(|mut c| async move { c.set_options::<_, _, ()>(key, json, options).await })
            .await
    }

    /// Drops the cached copy of a link after a change, leaving a tombstone (an empty value)
    /// for [`TOMBSTONE_SECS`] that `put_link` does not overwrite: a node that read the link
    /// just before the change and puts it just after the drop cannot bring the old version
    /// back for the copy's whole TTL.
    pub async fn forget_link(&self, domain: &str, code: &str) -> Result<(), RedisUnavailable> {
        let key = self.link_key(domain, code);
        self.call(|mut c| async move { c.set_ex::<_, _, ()>(key, "", TOMBSTONE_SECS).await })
            .await
    }

    /// Takes one click from a link's cluster-wide budget; returns the count including this
    /// one (the redirect is allowed while it is <= `max_clicks`). The budget starts at
    /// `persisted` the first time any node asks.
    pub async fn take_click(&self, id: LinkId, persisted: u64) -> Result<u64, RedisUnavailable> {
        let key = self.budget_key(id);
        let script = &self.take_script;
        self.call(|mut c| async move { script.key(key).arg(persisted).invoke_async(&mut c).await })
            .await
    }

    /// One step of the generic cell rate algorithm on the shared key `rl:<name>:<key>`:
    /// one request per `emission_ms`, bursts of `burst`. Returns `Ok(None)` when allowed,
    /// `Ok(Some(ms))` when limited (retry after that long). Atomic in Redis, on Redis's own
    /// clock, and the key always carries an expiry, so it can never block forever.
    pub async fn gcra(
        &self,
        name: &str,
        key: &str,
        emission_ms: u64,
        burst: u32,
    ) -> Result<Option<u64>, RedisUnavailable> {
        let key = format!("{}rl:{name}:{key}", self.prefix);
        let script = &self.gcra_script;
        let wait: i64 = self
            .call(|mut c| async move {
                script
                    .key(key)
                    .arg(emission_ms)
                    .arg(burst)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(u64::try_from(wait).ok().filter(|&w| w > 0))
    }

    /// Adds to shared counters in one pipelined round trip per chunk: each `(key, add,
    /// ttl_ms)` is `INCRBY <prefix>fraud:<key> add` with a `PEXPIRE` of `ttl_ms`, so every
    /// counter disappears by itself. Returns the totals after the additions, in order.
    /// Bounded by `limit` per chunk (the batcher can wait longer than a redirect).
    pub async fn add_counts(
        &self,
        entries: &[(String, u64, u64)],
        limit: Duration,
    ) -> Result<Vec<u64>, RedisUnavailable> {
        const CHUNK: usize = 5_000;
        let mut totals = Vec::with_capacity(entries.len());
        for chunk in entries.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for (key, add, ttl_ms) in chunk {
                let key = format!("{}fraud:{key}", self.prefix);
                pipe.cmd("INCRBY").arg(&key).arg(*add);
                pipe.cmd("PEXPIRE").arg(&key).arg(*ttl_ms).ignore();
            }
            let part: Vec<u64> = self
                .call_within(limit, |mut c| async move { pipe.query_async(&mut c).await })
                .await?;
            totals.extend(part);
        }
        Ok(totals)
    }

    /// Tells every proxy to drop its cached copy of a link.
    pub async fn publish_invalidation(
        &self,
        domain: &str,
        code: &str,
    ) -> Result<(), RedisUnavailable> {
        let channel = self.invalidation_channel();
        let message = format!("{domain} {code}");
        self.call(|mut c| async move { c.publish::<_, _, ()>(channel, message).await })
            .await
    }
}

/// GCRA in one round trip: the key holds the theoretical arrival time (TAT) in ms. A
/// request is allowed when TAT - burst tolerance <= now; the new TAT is stored with an
/// expiry of exactly the time until it no longer matters. Returns 0 (allowed) or the ms to
/// wait.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local emission = tonumber(ARGV[1])
local tolerance = emission * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if allow_at > now then return allow_at - now end
local new_tat = tat + emission
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return 0
";

/// Parses an invalidation message (`"domain code"`); `None` for anything malformed.
pub fn parse_invalidation(message: &str) -> Option<(&str, &str)> {
    let (domain, code) = message.split_once(' ')?;
    (!domain.is_empty() && !code.is_empty() && !code.contains(' ')).then_some((domain, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node that read a link before a change puts it after the change dropped the cached
    /// copy: the old version must not come back (real Redis).
    #[tokio::test]
    async fn a_put_after_a_forget_does_not_bring_the_old_version_back() {
        use crate::domain::{TargetPolicy, TargetUrl};
        let settings = RedisSettings {
            key_prefix: crate::testing::redis_prefix(),
            ..RedisSettings::default()
        };
        let tier = RedisTier::new(
            &crate::testing::redis_url(),
            &settings,
            Duration::from_secs(60),
        )
        .unwrap();
        tier.connect().await.unwrap();
        // Puts `target` as the link's cached copy, then reads what L2 holds.
        let put_then_get = async |target: &str| {
            let link = CachedLink::new(
                LinkId(9),
                TargetUrl::parse(target, &TargetPolicy::default()).unwrap(),
            );
            tier.put_link("sho.rt", "t", &link).await.unwrap();
            let found = tier.get_link("sho.rt", "t").await.unwrap();
            found.map(|l| l.target().as_str().to_owned())
        };
        let old = "https://example.com/old";
        assert_eq!(put_then_get(old).await.as_deref(), Some(old));
        tier.forget_link("sho.rt", "t").await.unwrap();
        assert!(tier.get_link("sho.rt", "t").await.unwrap().is_none());
        // The late put of what a load read before the change.
        assert_eq!(
            put_then_get(old).await,
            None,
            "the tombstone refuses the old version"
        );
        // Once the tombstone has expired, copies are cached again.
        tokio::time::sleep(Duration::from_secs(TOMBSTONE_SECS + 1)).await;
        let new = "https://example.com/new";
        assert_eq!(put_then_get(new).await.as_deref(), Some(new));
        tier.forget_link("sho.rt", "t").await.unwrap();
    }

    #[test]
    fn invalidation_messages_are_parsed_strictly() {
        assert_eq!(parse_invalidation("sho.rt abc"), Some(("sho.rt", "abc")));
        assert_eq!(parse_invalidation("sho.rt"), None);
        assert_eq!(parse_invalidation(" abc"), None);
        assert_eq!(parse_invalidation("a b c"), None);
    }
}
