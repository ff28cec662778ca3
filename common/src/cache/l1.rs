//! L1, the in-process link cache: moka holding *buckets* of links.
//!
//! One moka entry per link would cost more than the link: moka keeps, per entry, an entry
//! info, an access-order and a write-order deque node and a hash-table slot, each its own
//! allocation (about 350 bytes measured), so a million links would need over 500 MB. Here a
//! link's key hash picks one of a fixed number of buckets (sized from `cache.l1_max_bytes`,
//! about 32 links each when the cache is full), and moka holds one immutable bucket per
//! number: eviction, TTL and the byte bound still come from moka, at a bucket's grain.
//!
//! A bucket is replaced copy-on-write inside moka's per-key `and_compute_with`, so
//! concurrent inserts and removals in one bucket never lose each other's change. Each slot
//! records when it was loaded and is not served after `cache.l1_ttl_secs` (the bucket's own
//! moka TTL restarts with every change to it, so the per-slot check is what bounds a link's
//! age). A hit compares 32-bit tags first (one or two cache lines) and then the full key, so
//! a hash collision can never serve another link.

use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::ops::compute::Op;
use moka::sync::Cache;

use super::link::CachedLink;

/// Links per bucket aimed at when the cache holds `l1_max_bytes` of links.
const LINKS_PER_BUCKET: u64 = 32;
/// Bytes a typical cached link weighs (slot, link, target), for sizing the bucket table.
const TYPICAL_LINK_BYTES: u64 = 170;
/// moka's bookkeeping for one bucket plus the bucket's own allocations.
const BUCKET_OVERHEAD: usize = 400;
/// Keys up to this long (host, NUL, code) live inside their slot, with no allocation.
const INLINE_KEY: usize = 38;

/// A key kept in its slot when it fits, else shared on the heap (cloning a bucket for a
/// copy-on-write change then copies no key bytes either way).
#[derive(Clone)]
enum SlotKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Arc<[u8]>),
}

impl SlotKey {
    fn new(key: &[u8]) -> Self {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0u8; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key);
            Self::Inline {
                len: u8::try_from(key.len()).unwrap_or(u8::MAX),
                bytes,
            }
        } else {
            Self::Heap(Arc::from(key))
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Self::Inline { .. } => 0,
            Self::Heap(bytes) => bytes.len() + 16,
        }
    }
}

#[derive(Clone)]
struct Slot {
    key: SlotKey,
    link: Arc<CachedLink>,
    /// Seconds since the cache's origin when this copy was loaded.
    loaded: u32,
}

impl Slot {
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
            + std::mem::size_of::<u32>()
            + self.key.heap_bytes()
            + self.link.weight()
    }
}

/// An immutable group of links; `tags[i]` belongs to `slots[i]`.
struct Bucket {
    tags: Box<[u32]>,
    slots: Box<[Slot]>,
    weight: u32,
}

impl Bucket {
    fn new(tagged: Vec<(u32, Slot)>) -> Self {
        let weight = BUCKET_OVERHEAD + tagged.iter().map(|(_, s)| s.weight()).sum::<usize>();
        let (tags, slots): (Vec<u32>, Vec<Slot>) = tagged.into_iter().unzip();
        Self {
            tags: tags.into_boxed_slice(),
            slots: slots.into_boxed_slice(),
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
        }
    }

    fn position(&self, tag: u32, key: &[u8]) -> Option<usize> {
        self.tags
            .iter()
            .enumerate()
            .filter(|&(_, t)| *t == tag)
            .map(|(i, _)| i)
            .find(|&i| self.slots[i].key.as_bytes() == key)
    }

    /// The slots to keep when rebuilding: all but `key`'s and expired ones.
    fn kept(&self, key: &[u8], fresh: impl Fn(u32) -> bool) -> Vec<(u32, Slot)> {
        self.tags
            .iter()
            .zip(self.slots.iter())
            .filter(|(_, s)| fresh(s.loaded) && s.key.as_bytes() != key)
            .map(|(t, s)| (*t, s.clone()))
            .collect()
    }
}

pub(crate) struct L1 {
    buckets: Cache<u32, Arc<Bucket>, foldhash::fast::RandomState>,
    /// Keys come from requests: hashed with a per-process random seed.
    hasher: foldhash::fast::RandomState,
    mask: u64,
    origin: Instant,
    ttl_secs: u32,
}

impl L1 {
    pub(crate) fn new(max_bytes: u64, ttl: Duration) -> Self {
        Self {
            buckets: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_: &u32, b: &Arc<Bucket>| b.weight)
                .time_to_live(ttl)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            hasher: foldhash::fast::RandomState::default(),
            mask: bucket_count(max_bytes) - 1,
            origin: Instant::now(),
            ttl_secs: u32::try_from(ttl.as_secs().max(1)).unwrap_or(u32::MAX),
        }
    }

    /// (bucket number, tag) of a key.
    fn locate(&self, key: &[u8]) -> (u32, u32) {
        let hash = self.hasher.hash_one(key);
        #[allow(clippy::cast_possible_truncation, reason = "masked to the table size")]
        let bucket = (hash & self.mask) as u32;
        #[allow(clippy::cast_possible_truncation, reason = "the high half, by design")]
        let tag = (hash >> 32) as u32;
        (bucket, tag)
    }

    fn secs(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.origin).as_secs()).unwrap_or(u32::MAX)
    }

    fn is_fresh(&self, loaded: u32, now_secs: u32) -> bool {
        now_secs.saturating_sub(loaded) < self.ttl_secs
    }

    pub(crate) fn get(&self, key: &[u8], now: Instant) -> Option<Arc<CachedLink>> {
        let (bucket, tag) = self.locate(key);
        let bucket = self.buckets.get(&bucket)?;
        let slot = &bucket.slots[bucket.position(tag, key)?];
        self.is_fresh(slot.loaded, self.secs(now))
            .then(|| Arc::clone(&slot.link))
    }

    pub(crate) fn insert(&self, key: &[u8], link: Arc<CachedLink>) {
        let (bucket, tag) = self.locate(key);
        let now = self.secs(Instant::now());
        let slot = Slot {
            key: SlotKey::new(key),
            link,
            loaded: now,
        };
        self.buckets.entry(bucket).and_compute_with(|current| {
            let mut tagged = current.map_or_else(Vec::new, |entry| {
                entry.value().kept(key, |loaded| self.is_fresh(loaded, now))
            });
            tagged.push((tag, slot));
            Op::Put(Arc::new(Bucket::new(tagged)))
        });
    }

    pub(crate) fn invalidate(&self, key: &[u8]) {
        let (bucket, tag) = self.locate(key);
        let now = self.secs(Instant::now());
        self.buckets.entry(bucket).and_compute_with(|current| {
            let Some(entry) = current else {
                return Op::Nop;
            };
            if entry.value().position(tag, key).is_none() {
                return Op::Nop;
            }
            let tagged = entry.value().kept(key, |loaded| self.is_fresh(loaded, now));
            if tagged.is_empty() {
                Op::Remove
            } else {
                Op::Put(Arc::new(Bucket::new(tagged)))
            }
        });
    }

    /// Links held (including expired ones not yet dropped): walks the buckets, so for
    /// metrics and reports, not the request path.
    pub(crate) fn len(&self) -> u64 {
        self.buckets.iter().map(|(_, b)| b.slots.len() as u64).sum()
    }

    pub(crate) fn weighted_size(&self) -> u64 {
        self.buckets.weighted_size()
    }

    pub(crate) fn run_pending_tasks(&self) {
        self.buckets.run_pending_tasks();
    }
}

/// A power of two near `max_bytes` / (links per bucket × typical link bytes).
fn bucket_count(max_bytes: u64) -> u64 {
    let wanted = (max_bytes / (LINKS_PER_BUCKET * TYPICAL_LINK_BYTES)).clamp(64, 1 << 22);
    // The largest power of two not above `wanted`.
    1 << wanted.ilog2()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LinkId, TargetPolicy, TargetUrl};

    fn link(id: i64) -> Arc<CachedLink> {
        Arc::new(CachedLink::new(
            LinkId(id),
            TargetUrl::parse(
                &format!("https://example.com/{id}"),
                &TargetPolicy::default(),
            )
            .unwrap(),
        ))
    }

    fn key(code: &str) -> Vec<u8> {
        format!("sho.rt\0{code}").into_bytes()
    }

    #[test]
    fn slots_stay_small() {
        assert!(
            std::mem::size_of::<Slot>() <= 56,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }

    #[test]
    fn the_table_is_sized_from_the_byte_bound() {
        assert_eq!(bucket_count(256 * 1024 * 1024), 32_768);
        assert_eq!(bucket_count(1), 64);
        assert!(bucket_count(u64::MAX).is_power_of_two());
    }

    #[test]
    fn many_links_share_few_buckets_and_each_is_found_exactly() {
        // 64 buckets for 2,000 links: every bucket holds many, and every lookup still
        // finds its own link (and only its own).
        let l1 = L1::new(512 * 1024, Duration::from_secs(60));
        assert_eq!(l1.mask, 63);
        for i in 0..2_000 {
            l1.insert(&key(&format!("c{i}")), link(i));
        }
        let now = Instant::now();
        for i in 0..2_000 {
            assert_eq!(l1.get(&key(&format!("c{i}")), now).unwrap().id, LinkId(i));
        }
        assert!(l1.get(&key("c2000"), now).is_none());
        l1.run_pending_tasks();
        assert_eq!(l1.len(), 2_000);
        assert!(l1.buckets.entry_count() <= 64);
    }

    #[test]
    fn long_keys_and_replacements_and_removals() {
        let l1 = L1::new(1 << 20, Duration::from_secs(60));
        let long = format!("{}\0code", "h".repeat(200)).into_bytes();
        l1.insert(&long, link(1));
        l1.insert(&key("a"), link(2));
        l1.insert(&key("a"), link(3));
        let now = Instant::now();
        assert_eq!(l1.get(&long, now).unwrap().id, LinkId(1));
        assert_eq!(l1.get(&key("a"), now).unwrap().id, LinkId(3));
        l1.run_pending_tasks();
        assert_eq!(l1.len(), 2);
        l1.invalidate(&key("a"));
        l1.invalidate(&key("never"));
        assert!(l1.get(&key("a"), now).is_none());
        assert_eq!(l1.get(&long, now).unwrap().id, LinkId(1));
        l1.invalidate(&long);
        l1.run_pending_tasks();
        assert_eq!(l1.len(), 0);
        assert_eq!(l1.buckets.entry_count(), 0);
    }

    #[test]
    fn a_slot_is_not_served_after_the_ttl() {
        let l1 = L1::new(1 << 20, Duration::from_secs(2));
        l1.insert(&key("t"), link(1));
        let now = Instant::now();
        assert!(l1.get(&key("t"), now).is_some());
        assert!(l1.get(&key("t"), now + Duration::from_secs(3)).is_none());
    }

    #[test]
    fn concurrent_inserts_into_one_bucket_lose_nothing() {
        let l1 = Arc::new(L1::new(512 * 1024, Duration::from_secs(60)));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let l1 = Arc::clone(&l1);
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let n = t * 1_000 + i;
                        l1.insert(&key(&format!("k{n}")), link(n));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let now = Instant::now();
        for t in 0..4 {
            for i in 0..500 {
                let n = t * 1_000 + i;
                assert_eq!(
                    l1.get(&key(&format!("k{n}")), now).map(|l| l.id),
                    Some(LinkId(n))
                );
            }
        }
    }

    #[test]
    fn the_byte_bound_evicts_buckets() {
        let l1 = L1::new(64 * 1024, Duration::from_secs(60));
        for i in 0..20_000 {
            l1.insert(&key(&format!("e{i}")), link(i));
        }
        l1.run_pending_tasks();
        assert!(l1.weighted_size() <= 64 * 1024, "{}", l1.weighted_size());
        assert!(l1.len() < 20_000);
    }
}

#[cfg(test)]
mod probe {
    use super::*;
    use crate::domain::{LinkId, TargetPolicy, TargetUrl};

    fn rss_kb() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("RssAnon:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    #[test]
    #[ignore = "a measurement: cargo test --release -p linkgate-common l1_probe -- --ignored --nocapture"]
    fn l1_probe() {
        let target =
            TargetUrl::parse("https://example.com/landing", &TargetPolicy::default()).unwrap();
        let before = rss_kb();
        let l1 = L1::new(256 * 1024 * 1024, Duration::from_secs(3600));
        for i in 0..1_000_000_i64 {
            let key = format!("127.0.0.1:18082\0{i:07x}");
            l1.insert(
                key.as_bytes(),
                Arc::new(CachedLink::new(LinkId(i), target.clone())),
            );
        }
        l1.run_pending_tasks();
        let after = rss_kb();
        println!(
            "links {} buckets {} weighted {} MB, RssAnon +{} MB ({} B/link)",
            l1.len(),
            l1.buckets.entry_count(),
            l1.weighted_size() >> 20,
            (after - before) >> 10,
            (after - before) * 1024 / 1_000_000
        );
    }
}
