//! Lookup of (host, code) through L1, L2 and the store, with single flight per key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use tokio::sync::Semaphore;

use super::link::CachedLink;
use super::redis_tier::RedisTier;
use crate::domain::{LinkDomain, MAX_CODE_LEN, ShortCode};
use crate::store::{Store, StoreError};

/// Longest host accepted as part of a key (DNS names are at most 253 bytes, plus a port).
const MAX_HOST_LEN: usize = 261;
const KEY_BUF: usize = MAX_HOST_LEN + 1 + MAX_CODE_LEN;

/// Which tier answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    L1,
    L2,
    Store,
    /// Another request's load of the same key was in flight; this one waited for it.
    Shared,
}

/// A lookup result: the link, or `None` for an unknown code (possibly a cached negative).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub link: Option<Arc<CachedLink>>,
    pub tier: Tier,
}

/// Sizes and lifetimes of the tiers.
#[derive(Debug, Clone, Copy)]
pub struct ResolverSettings {
    pub l1_max_bytes: u64,
    pub l1_ttl: Duration,
    pub negative_ttl: Duration,
    pub store_concurrency: usize,
}

type Entry = Option<Arc<CachedLink>>;

/// Positive and negative entries live for different times.
struct EntryExpiry {
    positive: Duration,
    negative: Duration,
}

impl Expiry<Box<[u8]>, Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &Box<[u8]>,
        value: &Entry,
        _now: Instant,
    ) -> Option<Duration> {
        Some(if value.is_some() {
            self.positive
        } else {
            self.negative
        })
    }

    fn expire_after_update(
        &self,
        key: &Box<[u8]>,
        value: &Entry,
        now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, value, now)
    }
}

/// The resolver: one per proxy process, shared by all request threads.
pub struct Resolver {
    l1: Cache<Box<[u8]>, Entry>,
    l2: Option<Arc<RedisTier>>,
    store: Arc<dyn Store>,
    /// Bounds concurrent store lookups: a burst of misses queues here instead of
    /// exhausting the database's connections.
    store_permits: Semaphore,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("l1_entries", &self.l1.entry_count())
            .finish_non_exhaustive()
    }
}

impl Resolver {
    pub fn new(
        settings: ResolverSettings,
        store: Arc<dyn Store>,
        l2: Option<Arc<RedisTier>>,
    ) -> Self {
        let l1 = Cache::builder()
            .max_capacity(settings.l1_max_bytes)
            .weigher(weigh)
            .expire_after(EntryExpiry {
                positive: settings.l1_ttl,
                negative: settings.negative_ttl,
            })
            .build();
        Self {
            l1,
            l2,
            store,
            store_permits: Semaphore::new(settings.store_concurrency.max(1)),
        }
    }

    /// Looks a code up on a host. Invalid hosts or codes are unknown without any lookup.
    pub async fn resolve(&self, host: &str, code: &str) -> Result<Resolved, StoreError> {
        let mut buf = [0u8; KEY_BUF];
        let Some(key) = key_into(&mut buf, host, code) else {
            return Ok(Resolved {
                link: None,
                tier: Tier::L1,
            });
        };
        if let Some(entry) = self.l1.get(key).await {
            return Ok(Resolved {
                link: entry,
                tier: Tier::L1,
            });
        }
        let tier = AtomicU8::new(TIER_SHARED);
        let entry = self
            .l1
            .try_get_with(Box::from(key), self.load(host, code, &tier))
            .await
            .map_err(|e| (*e).clone())?;
        let tier = match tier.load(Ordering::Relaxed) {
            TIER_L2 => Tier::L2,
            TIER_STORE => Tier::Store,
            _ => Tier::Shared,
        };
        Ok(Resolved { link: entry, tier })
    }

    async fn load(&self, host: &str, code: &str, tier: &AtomicU8) -> Result<Entry, StoreError> {
        if let Some(l2) = &self.l2
            && let Ok(Some(link)) = l2.get_link(host, code).await
        {
            tier.store(TIER_L2, Ordering::Relaxed);
            return Ok(Some(link));
        }
        let (Ok(domain), Ok(code_parsed)) =
            (LinkDomain::parse(host), ShortCode::parse_any_length(code))
        else {
            tier.store(TIER_STORE, Ordering::Relaxed);
            return Ok(None);
        };
        let link = {
            let _permit = self
                .store_permits
                .acquire()
                .await
                .map_err(|_| StoreError::Unavailable("resolver closed".into()))?;
            self.store.link_by_code(&domain, &code_parsed).await?
        };
        tier.store(TIER_STORE, Ordering::Relaxed);
        let entry = link.as_ref().map(|l| Arc::new(CachedLink::from(l)));
        if let (Some(l2), Some(link)) = (&self.l2, &entry) {
            // Filling L2 is best effort and must not delay this response.
            let l2 = Arc::clone(l2);
            let (host, code, link) = (host.to_owned(), code.to_owned(), Arc::clone(link));
            tokio::spawn(async move {
                let _ = l2.put_link(&host, &code, &link).await;
            });
        }
        Ok(entry)
    }

    /// Drops the L1 entry for (host, code), positive or negative.
    pub async fn invalidate_local(&self, host: &str, code: &str) {
        let mut buf = [0u8; KEY_BUF];
        if let Some(key) = key_into(&mut buf, host, code) {
            self.l1.invalidate(key).await;
        }
    }

    /// Drops the entry from L1 and L2.
    pub async fn invalidate(&self, host: &str, code: &str) {
        self.invalidate_local(host, code).await;
        if let Some(l2) = &self.l2 {
            let _ = l2.forget_link(host, code).await;
        }
    }

    pub fn l2(&self) -> Option<&Arc<RedisTier>> {
        self.l2.as_ref()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Entries in L1 (approximate; pending maintenance is not flushed).
    pub fn l1_entries(&self) -> u64 {
        self.l1.entry_count()
    }

    /// Weighted size of L1 in bytes (approximate).
    pub fn l1_weighted_bytes(&self) -> u64 {
        self.l1.weighted_size()
    }

    /// Applies pending cache maintenance (tests and size reports).
    pub async fn sync(&self) {
        self.l1.run_pending_tasks().await;
    }
}

/// Bytes an entry holds: its key plus the link (a negative entry is just a marker).
#[allow(clippy::borrowed_box, reason = "the signature moka's weigher requires")]
fn weigh(key: &Box<[u8]>, value: &Entry) -> u32 {
    let bytes = key.len() + value.as_ref().map_or(48, |l| l.weight());
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

const TIER_SHARED: u8 = 0;
const TIER_L2: u8 = 1;
const TIER_STORE: u8 = 2;

/// Writes `host \0 code` (host lower-cased) into `buf`; `None` when either part is empty or
/// too long, or has characters no host name or code has.
fn key_into<'a>(buf: &'a mut [u8; KEY_BUF], host: &str, code: &str) -> Option<&'a [u8]> {
    if host.is_empty() || host.len() > MAX_HOST_LEN || code.is_empty() || code.len() > MAX_CODE_LEN
    {
        return None;
    }
    // Only code characters: anything else cannot be a link and is not worth a cache entry.
    if !code
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return None;
    }
    let mut n = 0;
    for b in host.bytes() {
        if !(b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)) {
            return None;
        }
        buf[n] = b.to_ascii_lowercase();
        n += 1;
    }
    buf[n] = 0;
    n += 1;
    buf[n..n + code.len()].copy_from_slice(code.as_bytes());
    Some(&buf[..n + code.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_host_case_and_keep_code_case() {
        let mut a = [0u8; KEY_BUF];
        let mut b = [0u8; KEY_BUF];
        assert_eq!(
            key_into(&mut a, "Sho.RT", "AbC"),
            key_into(&mut b, "sho.rt", "AbC")
        );
        let mut c = [0u8; KEY_BUF];
        assert_ne!(
            key_into(&mut a, "sho.rt", "abc").map(<[u8]>::to_vec),
            key_into(&mut c, "sho.rt", "AbC").map(<[u8]>::to_vec)
        );
    }

    #[test]
    fn hostile_hosts_and_codes_make_no_key() {
        let mut buf = [0u8; KEY_BUF];
        assert!(key_into(&mut buf, "", "abc").is_none());
        assert!(key_into(&mut buf, "a\r\nb", "abc").is_none());
        assert!(key_into(&mut buf, &"a".repeat(300), "abc").is_none());
        assert!(key_into(&mut buf, "sho.rt", &"x".repeat(65)).is_none());
        assert!(key_into(&mut buf, "sho.rt", "").is_none());
        assert!(key_into(&mut buf, "sho.rt", "a/b").is_none());
        assert!(key_into(&mut buf, "sho.rt", "a%0d").is_none());
    }
}
