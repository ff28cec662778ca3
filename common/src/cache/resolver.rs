//! Lookup of (host, code) through L1, L2 and the store, with single flight per key.
//!
//! L1 is `moka::sync::Cache`: a hit is a plain function call with no future to build or
//! poll, which matters at 100k redirects per second per core. Misses go through an explicit
//! single flight (one `OnceCell` per key in flight), so concurrent misses of one code cost
//! one L2/store load.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use tokio::sync::{OnceCell, Semaphore};

use super::hot::{HotLink, MemoEntry};
use super::l1::L1;
use super::link::CachedLink;
use super::memo::MemoTable;
use super::redis_tier::RedisTier;
use crate::clock::Instant;
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
    pub link: Option<HotLink>,
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

/// How long a thread trusts its memo without asking L1 again (at most L1's own TTL): bounds
/// how far past L1's TTL an answer can live, and keeps L1's access statistics fed for hot
/// keys. Changes never wait for it (every invalidation empties the memos). At 1 s, a hot
/// set of 10,000 links at 45,000 requests/s went to L1 on about one request in five; at
/// 5 s, one in 54 at 94,000/s, and those L1 lookups (moka's hashing, read recording and
/// housekeeping, with the bucket's cache misses: about 3 µs each) were 59 ns a request.
const MEMO_TTL: Duration = Duration::from_secs(30);

/// A thread's memo of recent L1 answers. A moka lookup costs a few hundred nanoseconds in a
/// busy server (hashing, expiry check, access recording); a thread-local table costs tens.
/// Correctness: every invalidation bumps the resolver's epoch after removing the L1 entry,
/// and a memo filled under an older epoch is discarded before use.
struct Memo {
    /// Which resolver filled it (several can share a process, e.g. in tests).
    owner: u64,
    epoch: u64,
    /// Each entry one allocation with its key, answer, expiry and target (see
    /// [`HotLink`]): the table itself holds hashes and pointers only.
    table: MemoTable,
}

thread_local! {
    static MEMO: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

static NEXT_RESOLVER_ID: AtomicU64 = AtomicU64::new(1);

/// A load in progress, shared by every request that misses the same key meanwhile.
type Flight = Arc<OnceCell<Result<(Entry, Tier), StoreError>>>;

/// The resolver: one per proxy process, shared by all request threads.
pub struct Resolver {
    /// Identifies this resolver's entries in the per-thread memos.
    id: u64,
    /// Bumped on every invalidation; memos from an older epoch are discarded.
    epoch: AtomicU64,
    /// How long a memo entry is used: `MEMO_TTL`, or L1's TTL if that is shorter.
    memo_ttl: Duration,
    /// Hashes keys for the memos (keys come from requests: a per-process random seed).
    memo_hasher: foldhash::fast::RandomState,
    /// Known links, in moka buckets (see [`L1`]).
    l1: L1,
    /// Codes known not to exist, for a shorter time, in a cache of their own so a flood of
    /// unknown codes cannot evict real links.
    negative: Cache<Box<[u8]>, (), foldhash::fast::RandomState>,
    /// Loads in flight by key. A std mutex: held only to find or remove a cell.
    in_flight: Mutex<HashMap<Box<[u8]>, Flight>>,
    l2: Option<Arc<RedisTier>>,
    store: Arc<dyn Store>,
    /// Bounds concurrent store lookups: a burst of misses queues here instead of
    /// exhausting the database's connections.
    store_permits: Semaphore,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("l1_weighted_bytes", &self.l1.weighted_size())
            .finish_non_exhaustive()
    }
}

impl Resolver {
    pub fn new(
        settings: ResolverSettings,
        store: Arc<dyn Store>,
        l2: Option<Arc<RedisTier>>,
    ) -> Self {
        // Keys come from requests, so they are hashed with a per-process random seed;
        // foldhash is several times cheaper than the default SipHash on short keys.
        let l1 = L1::new(settings.l1_max_bytes, settings.l1_ttl);
        let negative = Cache::builder()
            .max_capacity(settings.l1_max_bytes / 8)
            .weigher(weigh_negative)
            .time_to_live(settings.negative_ttl)
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self {
            id: NEXT_RESOLVER_ID.fetch_add(1, Ordering::Relaxed),
            epoch: AtomicU64::new(0),
            memo_ttl: MEMO_TTL.min(settings.l1_ttl),
            memo_hasher: foldhash::fast::RandomState::default(),
            l1,
            negative,
            in_flight: Mutex::new(HashMap::new()),
            l2,
            store,
            store_permits: Semaphore::new(settings.store_concurrency.max(1)),
        }
    }

    /// `host \0 code` in `buf`, hashed for this thread's memo, whose slot for it the CPU
    /// starts fetching at once: a caller with other work before its lookup
    /// ([`Resolver::cached_with`]) makes the key first, so the fetch overlaps that work.
    /// An invalid host or code is a key that no link has.
    pub fn key<'a>(&self, buf: &'a mut KeyBuf, host: &str, code: &str) -> LinkKey<'a> {
        let Some(key) = key_into(buf, host, code) else {
            return LinkKey(None);
        };
        let hash = self.memo_hasher.hash_one(key);
        MEMO.with_borrow(|memo| {
            if let Some(memo) = memo {
                memo.table.prefetch(hash);
            }
        });
        LinkKey(Some((key, hash)))
    }

    /// The L1 answer, if L1 has one: synchronous. `now` is a recent reading of the clock
    /// for the memo's expiry.
    pub fn cached(&self, host: &str, code: &str, now: Instant) -> Option<Resolved> {
        let mut buf = KeyBuf::default();
        let key = self.key(&mut buf, host, code);
        self.cached_with(&key, now, |link| Resolved {
            link: link.cloned(),
            tier: Tier::L1,
        })
    }

    /// Runs `f` on the L1 answer for `key` (`None` for a known-unknown code), if L1 has
    /// one: the cache-hit path. `f` borrows the answer from this thread's memo (a hit takes
    /// no reference count, two locked instructions on the entry's line) and must not look
    /// anything up itself. `now` is a recent reading of the clock (the proxy passes the
    /// request's start) for the memo's expiry.
    pub fn cached_with<R>(
        &self,
        key: &LinkKey<'_>,
        now: Instant,
        f: impl FnOnce(Option<&HotLink>) -> R,
    ) -> Option<R> {
        let Some((key, hash)) = key.0 else {
            return Some(f(None));
        };
        // Read the epoch before L1: an invalidation that lands after this read bumps it
        // past the value the memo is stamped with, so the memo is dropped on the next call.
        let epoch = self.epoch.load(Ordering::Acquire);
        MEMO.with_borrow_mut(|memo| {
            let memo = memo.get_or_insert_with(|| Memo {
                owner: self.id,
                epoch,
                table: MemoTable::new(),
            });
            if memo.owner != self.id || memo.epoch != epoch {
                memo.owner = self.id;
                memo.epoch = epoch;
                memo.table.clear();
            }
            if let Some(entry) = memo.table.get(hash, key).filter(|e| now < e.until()) {
                return Some(f(entry.answer()));
            }
            let link = match self.l1.get(key, now) {
                Some(link) => Some(link),
                None if self.negative.contains_key(key) => None,
                None => return None,
            };
            // An expired entry of the key is replaced.
            let entry = MemoEntry::new(link, key, now + self.memo_ttl);
            let answer = f(entry.answer());
            memo.table.put(hash, entry);
            Some(answer)
        })
    }

    /// Looks a code up on a host: L1, then (once per key at a time) L2 and the store.
    /// Invalid hosts or codes are unknown without any lookup.
    pub async fn resolve(&self, host: &str, code: &str) -> Result<Resolved, StoreError> {
        match self.cached(host, code, Instant::now()) {
            Some(hit) => Ok(hit),
            None => self.load_missing(host, code).await,
        }
    }

    /// The miss path of [`Resolver::resolve`], for callers that have just asked
    /// [`Resolver::cached`] (the proxy), so L1 is not consulted twice.
    pub async fn load_missing(&self, host: &str, code: &str) -> Result<Resolved, StoreError> {
        let mut buf = KeyBuf::default();
        let Some(key) = key_into(&mut buf, host, code) else {
            return Ok(Resolved {
                link: None,
                tier: Tier::L1,
            });
        };
        let flight = {
            let mut in_flight = self
                .in_flight
                .lock()
                .map_err(|_| StoreError::Backend("resolver lock poisoned".into()))?;
            Arc::clone(
                in_flight
                    .entry(Box::from(key))
                    .or_insert_with(|| Arc::new(OnceCell::new())),
            )
        };
        // If the request driving the load goes away, a waiting one takes the load over.
        let result = flight.get_or_init(|| self.load(host, code)).await.clone();
        // Whoever finishes first publishes the result to L1 and retires the flight (before
        // retiring it, so a request arriving in between finds L1 filled).
        let first = match self.in_flight.lock() {
            Ok(mut in_flight) if in_flight.get(key).is_some_and(|f| Arc::ptr_eq(f, &flight)) => {
                match &result {
                    Ok((Some(link), _)) => self.l1.insert(key, link),
                    Ok((None, _)) => self.negative.insert(Box::from(key), ()),
                    Err(_) => {}
                }
                in_flight.remove(key);
                true
            }
            _ => false,
        };
        let (link, tier) = result?;
        Ok(Resolved {
            link: link.map(|l| HotLink::new(Arc::unwrap_or_clone(l), key)),
            tier: if first { tier } else { Tier::Shared },
        })
    }

    async fn load(&self, host: &str, code: &str) -> Result<(Entry, Tier), StoreError> {
        if let Some(l2) = &self.l2
            && let Ok(Some(link)) = l2.get_link(host, code).await
        {
            return Ok((Some(link), Tier::L2));
        }
        let (Ok(domain), Ok(code_parsed)) =
            (LinkDomain::parse(host), ShortCode::parse_any_length(code))
        else {
            return Ok((None, Tier::Store));
        };
        let link = {
            let _permit = self
                .store_permits
                .acquire()
                .await
                .map_err(|_| StoreError::Unavailable("resolver closed".into()))?;
            self.store.link_by_code(&domain, &code_parsed).await?
        };
        let entry = link.as_ref().map(|l| Arc::new(CachedLink::from(l)));
        if let (Some(l2), Some(link)) = (&self.l2, &entry) {
            // Filling L2 is best effort and must not delay this response. A copy read
            // before a change never lands over the change's tombstone (see
            // `RedisTier::forget_link`).
            let l2 = Arc::clone(l2);
            let (host, code, link) = (host.to_owned(), code.to_owned(), Arc::clone(link));
            tokio::spawn(async move {
                let _ = l2.put_link(&host, &code, &link).await;
            });
        }
        Ok((entry, Tier::Store))
    }

    /// Drops the L1 entry for (host, code), positive or negative, and retires a load of it
    /// in flight: what that load read may predate the change, so it is answered to the
    /// requests already waiting for it but not published to L1 (the next request loads
    /// afresh).
    pub fn invalidate_local(&self, host: &str, code: &str) {
        let mut buf = KeyBuf::default();
        if let Some(key) = key_into(&mut buf, host, code) {
            // Before the L1 removal: a load that published already is removed from L1
            // below; one that has not finds its flight retired and does not publish.
            if let Ok(mut in_flight) = self.in_flight.lock() {
                in_flight.remove(key);
            }
            self.l1.invalidate(key);
            self.negative.invalidate(key);
            // After the L1 removal (see `cached`): every thread's memo is now stale.
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Drops the entry from L1 and L2.
    pub async fn invalidate(&self, host: &str, code: &str) {
        self.invalidate_local(host, code);
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

    /// Entries in L1, links and negative ones (walks L1's buckets: for metrics, not the
    /// request path).
    pub fn l1_entries(&self) -> u64 {
        self.l1.len() + self.negative.entry_count()
    }

    /// Weighted size of L1 in bytes (approximate).
    pub fn l1_weighted_bytes(&self) -> u64 {
        self.l1.weighted_size()
    }

    /// Applies pending cache maintenance (tests and size reports).
    pub fn sync(&self) {
        self.l1.run_pending_tasks();
        self.negative.run_pending_tasks();
    }
}

/// Bytes a negative entry holds: its key and the cache's bookkeeping.
#[allow(
    clippy::borrowed_box,
    clippy::trivially_copy_pass_by_ref,
    reason = "the signature moka's weigher requires"
)]
fn weigh_negative(key: &Box<[u8]>, (): &()) -> u32 {
    u32::try_from(key.len() + 96).unwrap_or(u32::MAX)
}

/// Where each byte may appear in a cache key: [`CODE_BYTE`] and/or [`HOST_BYTE`] bits.
/// One table lookup per byte is what the cache-hit path pays.
const KEY_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c: u8 = 0;
    loop {
        let code = crate::domain::is_code_byte(c);
        let host = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b':' | b'[' | b']');
        t[c as usize] = ((code as u8) * CODE_BYTE) | ((host as u8) * HOST_BYTE);
        if c == u8::MAX {
            break;
        }
        c += 1;
    }
    t
};
/// In a code ([`crate::domain::is_code_byte`]).
const CODE_BYTE: u8 = 1;
/// In a host: letters, digits and `-.:[]`.
const HOST_BYTE: u8 = 2;

/// Writes `host \0 code` (host lower-cased) into `buf`; `None` when either part is empty or
/// too long, or has characters no host name or code has.
/// Room for a key: a request's host and code (see [`Resolver::key`]).
#[derive(Debug)]
pub struct KeyBuf([u8; KEY_BUF]);

impl Default for KeyBuf {
    fn default() -> Self {
        Self([0; KEY_BUF])
    }
}

/// A key made by [`Resolver::key`]: its bytes and memo hash, or none for a host or code
/// that no link can have.
#[derive(Debug, Clone, Copy)]
pub struct LinkKey<'a>(Option<(&'a [u8], u64)>);

fn key_into<'a>(buf: &'a mut KeyBuf, host: &str, code: &str) -> Option<&'a [u8]> {
    if host.is_empty() || host.len() > MAX_HOST_LEN || code.is_empty() || code.len() > MAX_CODE_LEN
    {
        return None;
    }
    // Only code characters: anything else cannot be a link and is not worth a cache entry.
    if !code
        .bytes()
        .all(|b| KEY_BYTES[usize::from(b)] & CODE_BYTE != 0)
    {
        return None;
    }
    let (host_part, rest) = buf.0.split_at_mut(host.len());
    for (out, b) in host_part.iter_mut().zip(host.bytes()) {
        if KEY_BYTES[usize::from(b)] & HOST_BYTE == 0 {
            return None;
        }
        *out = b.to_ascii_lowercase();
    }
    rest[0] = 0;
    rest[1..=code.len()].copy_from_slice(code.as_bytes());
    Some(&buf.0[..host.len() + 1 + code.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_is_allowed_in_a_key_exactly_where_it_may_appear() {
        for b in 0..=255u8 {
            let alnum = b.is_ascii_alphanumeric();
            let in_code = alnum || b == b'_' || b == b'-';
            let in_host = alnum || b"-.:[]".contains(&b);
            let mut buf = KeyBuf::default();
            let code = [b'a', b];
            let code = std::str::from_utf8(&code).unwrap_or("a\u{80}");
            assert_eq!(
                key_into(&mut buf, "h", code).is_some(),
                in_code,
                "{b} in a code"
            );
            let host = [b'h', b];
            let host = std::str::from_utf8(&host).unwrap_or("h\u{80}");
            assert_eq!(
                key_into(&mut buf, host, "c").map(<[u8]>::to_vec),
                in_host.then(|| vec![b'h', b.to_ascii_lowercase(), 0, b'c']),
                "{b} in a host"
            );
        }
    }

    #[test]
    fn keys_fold_host_case_and_keep_code_case() {
        let mut a = KeyBuf::default();
        let mut b = KeyBuf::default();
        assert_eq!(
            key_into(&mut a, "Sho.RT", "AbC"),
            key_into(&mut b, "sho.rt", "AbC")
        );
        let mut c = KeyBuf::default();
        assert_ne!(
            key_into(&mut a, "sho.rt", "abc").map(<[u8]>::to_vec),
            key_into(&mut c, "sho.rt", "AbC").map(<[u8]>::to_vec)
        );
    }

    /// A migrated SQLite store with one user and one link of `code` to `target`.
    async fn sqlite_with_link(
        code: &str,
        target: &str,
    ) -> (
        crate::testing::TestDb,
        Arc<dyn Store>,
        crate::domain::User,
        crate::domain::Link,
    ) {
        let db = crate::testing::TestDb::sqlite().await;
        let store = db.store();
        let owner = crate::testing::user(&*store, "a@example.com", crate::domain::Role::User).await;
        let link = store
            .create_link(&crate::testing::new_link(&owner, code, target))
            .await
            .unwrap();
        (db, store, owner, link)
    }

    /// Points `link` at `target` in the store (as an edit through the admin API does).
    async fn retarget(store: &dyn Store, link: &crate::domain::Link, target: &str) {
        use crate::domain::{LinkPatch, TargetPolicy, TargetUrl};
        let patch = LinkPatch {
            target: Some(TargetUrl::parse(target, &TargetPolicy::default()).unwrap()),
            ..LinkPatch::default()
        };
        store.update_link(link.id, &patch).await.unwrap();
    }

    /// A resolver with room for every test link and long TTLs, over `store` alone.
    fn resolver_over(store: &Arc<dyn Store>) -> Resolver {
        Resolver::new(
            ResolverSettings {
                l1_max_bytes: 1 << 20,
                l1_ttl: Duration::from_secs(300),
                negative_ttl: Duration::from_secs(300),
                store_concurrency: 2,
            },
            Arc::clone(store),
            None,
        )
    }

    #[tokio::test]
    async fn an_invalidation_reaches_the_per_thread_memo() {
        use crate::testing::new_link;

        let (db, store, owner, link) = sqlite_with_link("memo", "https://example.com/1").await;
        let resolver = resolver_over(&store);
        let target = |r: Option<Resolved>| {
            r.and_then(|r| r.link)
                .map(|l| l.target().as_str().to_owned())
        };
        assert_eq!(
            target(resolver.resolve("sho.rt", "memo").await.ok()),
            Some("https://example.com/1".into())
        );
        // Twice: the second answer comes from this thread's memo.
        assert!(resolver.cached("sho.rt", "memo", Instant::now()).is_some());
        assert!(resolver.cached("sho.rt", "memo", Instant::now()).is_some());
        retarget(&*store, &link, "https://example.com/2").await;
        resolver.invalidate_local("sho.rt", "memo");
        assert!(
            resolver.cached("sho.rt", "memo", Instant::now()).is_none(),
            "neither L1 nor the memo may answer"
        );
        assert_eq!(
            target(resolver.resolve("sho.rt", "memo").await.ok()),
            Some("https://example.com/2".into())
        );
        // Negative answers are memoised and invalidated the same way.
        assert!(
            resolver
                .resolve("sho.rt", "later")
                .await
                .unwrap()
                .link
                .is_none()
        );
        assert!(
            resolver
                .cached("sho.rt", "later", Instant::now())
                .unwrap()
                .link
                .is_none()
        );
        store
            .create_link(&new_link(&owner, "later", "https://example.com/3"))
            .await
            .unwrap();
        resolver.invalidate_local("sho.rt", "later");
        assert!(resolver.cached("sho.rt", "later", Instant::now()).is_none());
        db.cleanup().await;
    }

    /// A load that read the link before a change, and finishes after the change's
    /// invalidation, must not put the old version in L1: it would be served until L1's TTL.
    #[tokio::test]
    async fn a_load_in_flight_when_its_link_changes_does_not_fill_l1() {
        let (db, store, _, link) = sqlite_with_link("race", "https://example.com/old").await;
        let resolver = resolver_over(&store);
        // A load begins: its flight is registered and it reads the link as it is now.
        let mut buf = KeyBuf::default();
        let key = key_into(&mut buf, "sho.rt", "race").unwrap().to_vec();
        let flight: Flight = Arc::clone(
            resolver
                .in_flight
                .lock()
                .unwrap()
                .entry(key.into_boxed_slice())
                .or_insert_with(|| Arc::new(OnceCell::new())),
        );
        let old = resolver.load("sho.rt", "race").await;
        // The link changes and this node hears of it while the load is still in flight.
        retarget(&*store, &link, "https://example.com/new").await;
        resolver.invalidate_local("sho.rt", "race");
        // The load finishes with what it read; requests that waited for it get that.
        flight.set(old).unwrap();
        let target = |r: Option<Resolved>| {
            r.and_then(|r| r.link)
                .map(|l| l.target().as_str().to_owned())
        };
        assert_eq!(
            target(resolver.resolve("sho.rt", "race").await.ok()),
            Some("https://example.com/new".into()),
            "a request after the invalidation loads afresh"
        );
        assert_eq!(
            target(resolver.cached("sho.rt", "race", Instant::now())),
            Some("https://example.com/new".into()),
            "L1 holds the new version"
        );
        db.cleanup().await;
    }

    #[test]
    fn hostile_hosts_and_codes_make_no_key() {
        let mut buf = KeyBuf::default();
        assert!(key_into(&mut buf, "", "abc").is_none());
        assert!(key_into(&mut buf, "a\r\nb", "abc").is_none());
        assert!(key_into(&mut buf, &"a".repeat(300), "abc").is_none());
        assert!(key_into(&mut buf, "sho.rt", &"x".repeat(65)).is_none());
        assert!(key_into(&mut buf, "sho.rt", "").is_none());
        assert!(key_into(&mut buf, "sho.rt", "a/b").is_none());
        assert!(key_into(&mut buf, "sho.rt", "a%0d").is_none());
    }
}
