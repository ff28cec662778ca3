//! Request rate limits with the generic cell rate algorithm (GCRA): in process with
//! `governor`, and across nodes with an atomic Lua step in Redis when Redis is configured.
//!
//! The limiter answers; the caller chooses what an unreachable Redis means. Login and
//! signup fail closed (a password-guessing flood must not get through because Redis is
//! down), link creation and the proxy fall back to the local limit (fail open).

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::cache::RedisTier;

/// What a limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the limit; the earliest retry is this far away (at least one second).
    Limited {
        retry_after: Duration,
    },
    /// Redis is configured but could not be asked; the caller decides.
    Unavailable,
}

/// A named limit of `per_minute` requests per key, with bursts of up to `per_minute`.
pub struct Limiter<K: Hash + Eq + Clone> {
    name: &'static str,
    per_minute: u32,
    local: DefaultKeyedRateLimiter<K>,
    redis: Option<Arc<RedisTier>>,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Limiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.name)
            .field("per_minute", &self.per_minute)
            .field("shared", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone + std::fmt::Display> Limiter<K> {
    /// `name` becomes part of the Redis key (`<prefix>rl:<name>:<key>`); 0 per minute is
    /// treated as 1 (use no limiter at all to disable a limit).
    pub fn new(name: &'static str, per_minute: u32, redis: Option<Arc<RedisTier>>) -> Self {
        let per_minute = per_minute.max(1);
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            name,
            per_minute,
            local: RateLimiter::keyed(quota),
            redis,
        }
    }

    /// Checks one request for `key`: in Redis when configured (cluster-wide), else locally.
    pub async fn check(&self, key: &K) -> Verdict {
        let Some(redis) = &self.redis else {
            return self.check_local(key);
        };
        let emission_ms = 60_000 / u64::from(self.per_minute);
        match redis
            .gcra(
                self.name,
                &key.to_string(),
                emission_ms.max(1),
                self.per_minute,
            )
            .await
        {
            Ok(None) => Verdict::Allowed,
            Ok(Some(wait_ms)) => Verdict::Limited {
                retry_after: Duration::from_millis(wait_ms).max(Duration::from_secs(1)),
            },
            Err(_) => Verdict::Unavailable,
        }
    }

    /// Checks against this node's own counters only.
    pub fn check_local(&self, key: &K) -> Verdict {
        match self.local.check_key(key) {
            Ok(()) => Verdict::Allowed,
            Err(not_until) => Verdict::Limited {
                retry_after: not_until
                    .wait_time_from(DefaultClock::default().now())
                    .max(Duration::from_secs(1)),
            },
        }
    }

    /// Like [`Limiter::check`], but an unreachable Redis falls back to the local limit.
    pub async fn check_or_local(&self, key: &K) -> Verdict {
        match self.check(key).await {
            Verdict::Unavailable => self.check_local(key),
            verdict => verdict,
        }
    }

    /// Drops local state for keys that are back to a full allowance (call now and then).
    pub fn housekeeping(&self) {
        self.local.retain_recent();
    }
}

/// Seconds for a `Retry-After` header: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_millis()
        .div_ceil(1000)
        .max(1)
        .try_into()
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_limit_allows_a_burst_then_asks_to_wait() {
        let limiter: Limiter<u64> = Limiter::new("t", 3, None);
        for _ in 0..3 {
            assert_eq!(limiter.check(&1).await, Verdict::Allowed);
        }
        let Verdict::Limited { retry_after } = limiter.check(&1).await else {
            panic!("the fourth request in a minute must be limited");
        };
        assert!(retry_after >= Duration::from_secs(1) && retry_after <= Duration::from_secs(20));
        assert_eq!(
            limiter.check(&2).await,
            Verdict::Allowed,
            "keys are separate"
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
