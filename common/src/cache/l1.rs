//! L1, the in-process link cache: moka holding *buckets* of links.
//!
//! One moka entry per link would cost more than the link: moka keeps, per entry, an entry
//! info, an access-order and a write-order deque node and a hash-table slot, each its own
//! allocation (about 350 bytes measured), so a million links would need over 500 MB. Here a
//! link's key hash picks one of a fixed number of buckets (one per 8 KiB of
//! `cache.l1_max_bytes`: 32,768 by default), and moka holds one immutable bucket per
//! number: eviction, TTL and the byte bound still come from moka, at a bucket's grain.
//!
//! Inside a bucket a plain link (no password, expiry, click limit or fallback: most links)
//! is 24 bytes of fixed fields plus its key and target bytes in the bucket's arena, with no
//! allocation of its own; a hit builds the `CachedLink` from them (the per-thread memo in
//! front of L1 keeps hot links built). Links with extras are kept whole behind an `Arc`, in
//! a list of the bucket's own that the slot points into, so plain slots carry no pointer.
//!
//! A bucket is replaced copy-on-write inside moka's per-key `and_compute_with`, so
//! concurrent inserts and removals in one bucket never lose each other's change. Each slot
//! records when it was loaded and is not served after `cache.l1_ttl_secs` (the bucket's own
//! moka TTL restarts with every change to it, so the per-slot check is what bounds a link's
//! age). A hit compares 32-bit tags first (one or two cache lines) and then the full key, so
//! a hash collision can never serve another link.
//!
//! Keys are `host \0 code`, and most links share a few hosts, so a link's key in a bucket is
//! the host's number in the cache's host table (interned when a link of that host is first
//! cached, up to 65,535 hosts) and the code: `0xFF, number (2 bytes), code`. No host byte is
//! `0xFF`, so such a key never equals a full one, which is what a link of a host the table
//! has no room for keeps.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use moka::ops::compute::Op;
use moka::sync::Cache;
use smallvec::SmallVec;

use super::link::CachedLink;
use crate::clock::Instant;
use crate::domain::{LinkId, LinkState, RedirectStatus, TargetUrl};

/// Bytes of links per bucket when the cache is full (a plain link weighs about 100: slot,
/// tag, key and target), so the default 256 MiB has 32,768 buckets, ~30 links each at a
/// million links.
const BUCKET_BYTES: u64 = 8192;
/// moka's bookkeeping for one bucket plus the bucket's own allocations.
const BUCKET_OVERHEAD: usize = 400;

const FORWARD_QUERY: u32 = 1 << 16;
const DELETED: u32 = 1 << 17;
const STATE_SHIFT: u32 = 18;
/// The slot's link is kept whole: its `id` is the position in the bucket's `wholes`. A plain
/// link's flags never equal it ([`flags_of`] leaves bits 20 and up clear).
const WHOLE: u32 = 1 << 31;

/// The fixed part of one link in a bucket.
#[derive(Clone, Copy)]
struct Slot {
    /// Where the key starts in the bucket's arena; a plain link's target follows it.
    offset: u32,
    key_len: u16,
    target_len: u16,
    /// Seconds since the cache's origin when this copy was loaded.
    loaded: u32,
    /// Redirect status code (0: the default) | `FORWARD_QUERY` | `DELETED` | state; or
    /// `WHOLE` for a link with extras (then no target bytes in the arena).
    flags: u32,
    /// The link's id; for a `WHOLE` slot, the link's position in the bucket's `wholes`.
    id: i64,
}

/// The flags of a plain link, or `None` when it has extras (kept whole).
fn flags_of(link: &CachedLink) -> Option<u32> {
    if link.extra.is_some() {
        return None;
    }
    let state = match link.state {
        LinkState::Active => 0,
        LinkState::Disabled => 1,
        LinkState::Banned => 2,
    };
    Some(
        u32::from(link.redirect_status.map_or(0, RedirectStatus::code))
            | if link.forward_query { FORWARD_QUERY } else { 0 }
            | if link.deleted { DELETED } else { 0 }
            | state << STATE_SHIFT,
    )
}

/// Rebuilds a plain link; `None` if the bytes are not what [`flags_of`] wrote (then the
/// link is loaded again instead).
fn plain_link(id: i64, flags: u32, target: &[u8]) -> Option<CachedLink> {
    let status = match flags & 0xffff {
        0 => None,
        #[allow(clippy::cast_possible_truncation, reason = "masked to 16 bits")]
        code => Some(RedirectStatus::from_code(code as u16)?),
    };
    let state = match flags >> STATE_SHIFT {
        0 => LinkState::Active,
        1 => LinkState::Disabled,
        2 => LinkState::Banned,
        _ => return None,
    };
    let mut link = CachedLink::new(
        LinkId(id),
        TargetUrl::copy_of_valid(std::str::from_utf8(target).ok()?),
    );
    link.redirect_status = status;
    link.forward_query = flags & FORWARD_QUERY != 0;
    link.state = state;
    link.deleted = flags & DELETED != 0;
    Some(link)
}

/// An immutable group of links; `tags[i]` belongs to `slots[i]`.
struct Bucket {
    tags: Box<[u32]>,
    slots: Box<[Slot]>,
    arena: Box<[u8]>,
    /// The links with extras, kept whole (empty in most buckets: no allocation).
    wholes: Box<[Arc<CachedLink>]>,
    weight: u32,
}

/// Collects the links of a new bucket, in vectors allocated once at their final size.
struct BucketBuilder {
    tags: Vec<u32>,
    slots: Vec<Slot>,
    arena: Vec<u8>,
    wholes: Vec<Arc<CachedLink>>,
    weight: usize,
}

/// What a slot's link is beside its key: plain (target bytes in the arena) or whole.
#[derive(Clone, Copy)]
enum Held<'a> {
    Plain(&'a [u8]),
    Whole(&'a Arc<CachedLink>),
}

impl<'a> Held<'a> {
    /// The target bytes the link keeps in the arena (none for a whole link).
    fn target(self) -> &'a [u8] {
        match self {
            Held::Plain(target) => target,
            Held::Whole(_) => &[],
        }
    }
}

impl BucketBuilder {
    fn with_capacity(links: usize, bytes: usize) -> Self {
        Self {
            tags: Vec::with_capacity(links),
            slots: Vec::with_capacity(links),
            arena: Vec::with_capacity(bytes),
            wholes: Vec::new(),
            weight: 0,
        }
    }

    fn push(&mut self, tag: u32, mut slot: Slot, key: &[u8], held: Held<'_>) {
        let target = held.target();
        slot.offset = u32::try_from(self.arena.len()).unwrap_or(u32::MAX);
        slot.key_len = u16::try_from(key.len()).unwrap_or(u16::MAX);
        slot.target_len = u16::try_from(target.len()).unwrap_or(u16::MAX);
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(target);
        self.weight +=
            std::mem::size_of::<Slot>() + std::mem::size_of::<u32>() + key.len() + target.len();
        if let Held::Whole(link) = held {
            slot.flags = WHOLE;
            slot.id = i64::try_from(self.wholes.len()).unwrap_or(i64::MAX);
            self.weight += std::mem::size_of::<Arc<CachedLink>>() + link.weight();
            self.wholes.push(Arc::clone(link));
        }
        self.tags.push(tag);
        self.slots.push(slot);
    }

    fn finish(self) -> Bucket {
        Bucket {
            tags: self.tags.into_boxed_slice(),
            slots: self.slots.into_boxed_slice(),
            arena: self.arena.into_boxed_slice(),
            wholes: self.wholes.into_boxed_slice(),
            weight: u32::try_from(BUCKET_OVERHEAD + self.weight).unwrap_or(u32::MAX),
        }
    }
}

impl Bucket {
    fn key(&self, slot: &Slot) -> &[u8] {
        let start = slot.offset as usize;
        self.arena
            .get(start..start + usize::from(slot.key_len))
            .unwrap_or_default()
    }

    fn target(&self, slot: &Slot) -> &[u8] {
        let start = slot.offset as usize + usize::from(slot.key_len);
        self.arena
            .get(start..start + usize::from(slot.target_len))
            .unwrap_or_default()
    }

    fn position(&self, tag: u32, key: &[u8]) -> Option<usize> {
        self.tags
            .iter()
            .enumerate()
            .filter(|&(_, t)| *t == tag)
            .map(|(i, _)| i)
            .find(|&i| self.key(&self.slots[i]) == key)
    }

    fn held(&self, slot: &Slot) -> Held<'_> {
        if slot.flags == WHOLE {
            // A whole slot's id is set by the builder to a position in `wholes`.
            if let Some(link) = usize::try_from(slot.id)
                .ok()
                .and_then(|i| self.wholes.get(i))
            {
                return Held::Whole(link);
            }
        }
        Held::Plain(self.target(slot))
    }

    /// The slot's link, built for the caller (the resolver packs it into a memo entry of
    /// its own, so a shared `Arc` would only be unwrapped again).
    fn link(&self, slot: &Slot) -> Option<CachedLink> {
        match self.held(slot) {
            Held::Whole(link) => Some(CachedLink::clone(link)),
            // A `WHOLE` slot without its link (never built so) reads as no link: reloaded.
            Held::Plain(target) => plain_link(slot.id, slot.flags, target),
        }
    }

    /// A builder holding the links to keep when rebuilding (all but `key`'s and expired
    /// ones), with room for one more link of `extra` arena bytes.
    fn kept(&self, key: &[u8], extra: usize, fresh: impl Fn(u32) -> bool) -> BucketBuilder {
        let mut builder =
            BucketBuilder::with_capacity(self.slots.len() + 1, self.arena.len() + extra);
        for (tag, slot) in self.tags.iter().zip(self.slots.iter()) {
            let slot_key = self.key(slot);
            if fresh(slot.loaded) && slot_key != key {
                builder.push(*tag, *slot, slot_key, self.held(slot));
            }
        }
        builder
    }
}

/// Hosts held in the table at most (numbers 0 to 65,534).
const MAX_HOSTS: usize = 65_535;
/// First byte of a key that holds a host number.
const HOST_NUMBER: u8 = 0xFF;

/// A key as stored in buckets: the host's number and the code, or the full key.
type StoredKey = SmallVec<[u8; 80]>;

/// The hosts of cached links, each numbered once; never shrinks (hosts only enter with a
/// link loaded from the store, so the table holds real link domains, not request noise).
struct Hosts {
    numbers: RwLock<HashMap<Box<[u8]>, u16, foldhash::fast::RandomState>>,
    max: usize,
}

impl Hosts {
    fn new(max: usize) -> Self {
        Self {
            numbers: RwLock::new(HashMap::default()),
            max,
        }
    }

    /// The stored form of `key` (`host \0 code`); `intern` numbers a host not yet known
    /// while there is room.
    fn stored(&self, key: &[u8], intern: bool) -> StoredKey {
        let number = key.iter().position(|&b| b == 0).and_then(|split| {
            let n = self.number(&key[..split], intern)?;
            Some((n, &key[split + 1..]))
        });
        let Some((n, code)) = number else {
            return StoredKey::from_slice(key);
        };
        let mut stored = StoredKey::new();
        stored.push(HOST_NUMBER);
        stored.extend_from_slice(&n.to_be_bytes());
        stored.extend_from_slice(code);
        stored
    }

    /// `host`'s number: a read lock when it has one, the write lock only to give it one.
    fn number(&self, host: &[u8], intern: bool) -> Option<u16> {
        if let Some(&n) = self.numbers.read().ok()?.get(host) {
            return Some(n);
        }
        if !intern {
            return None;
        }
        let mut numbers = self.numbers.write().ok()?;
        if let Some(&n) = numbers.get(host) {
            return Some(n);
        }
        if numbers.len() >= self.max {
            return None;
        }
        let n = u16::try_from(numbers.len()).ok()?;
        numbers.insert(host.into(), n);
        Some(n)
    }
}

pub(crate) struct L1 {
    buckets: Cache<u32, Arc<Bucket>, foldhash::fast::RandomState>,
    hosts: Hosts,
    /// Keys come from requests: hashed with a per-process random seed.
    hasher: foldhash::fast::RandomState,
    mask: u64,
    origin: Instant,
    ttl_secs: u32,
}

impl L1 {
    pub(crate) fn new(max_bytes: u64, ttl: Duration) -> Self {
        Self::with_hosts(max_bytes, ttl, MAX_HOSTS)
    }

    fn with_hosts(max_bytes: u64, ttl: Duration, max_hosts: usize) -> Self {
        Self {
            hosts: Hosts::new(max_hosts),
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

    pub(crate) fn get(&self, key: &[u8], now: Instant) -> Option<CachedLink> {
        let key = &self.hosts.stored(key, false)[..];
        let (bucket, tag) = self.locate(key);
        let bucket = self.buckets.get(&bucket)?;
        let slot = &bucket.slots[bucket.position(tag, key)?];
        if !self.is_fresh(slot.loaded, self.secs(now)) {
            return None;
        }
        bucket.link(slot)
    }

    pub(crate) fn insert(&self, key: &[u8], link: &Arc<CachedLink>) {
        if key.len() > usize::from(u16::MAX) {
            return;
        }
        let key = &self.hosts.stored(key, true)[..];
        let (bucket, tag) = self.locate(key);
        let now = self.secs(Instant::now());
        let flags = flags_of(link);
        let slot = Slot {
            offset: 0,
            key_len: 0,
            target_len: 0,
            loaded: now,
            flags: flags.unwrap_or(0),
            id: link.id.0,
        };
        let held = if flags.is_some() {
            Held::Plain(link.target().as_str().as_bytes())
        } else {
            Held::Whole(link)
        };
        self.buckets.entry(bucket).and_compute_with(|current| {
            let extra = key.len() + held.target().len();
            let mut builder = current.map_or_else(
                || BucketBuilder::with_capacity(1, extra),
                |entry| {
                    entry
                        .value()
                        .kept(key, extra, |loaded| self.is_fresh(loaded, now))
                },
            );
            builder.push(tag, slot, key, held);
            Op::Put(Arc::new(builder.finish()))
        });
    }

    pub(crate) fn invalidate(&self, key: &[u8]) {
        let key = &self.hosts.stored(key, false)[..];
        let (bucket, tag) = self.locate(key);
        let now = self.secs(Instant::now());
        self.buckets.entry(bucket).and_compute_with(|current| {
            let Some(entry) = current else {
                return Op::Nop;
            };
            if entry.value().position(tag, key).is_none() {
                return Op::Nop;
            }
            let builder = entry
                .value()
                .kept(key, 0, |loaded| self.is_fresh(loaded, now));
            if builder.slots.is_empty() {
                Op::Remove
            } else {
                Op::Put(Arc::new(builder.finish()))
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

/// The largest power of two not above `max_bytes / BUCKET_BYTES` (64 at least).
fn bucket_count(max_bytes: u64) -> u64 {
    let wanted = (max_bytes / BUCKET_BYTES).clamp(64, 1 << 22);
    // The largest power of two not above `wanted`.
    1 << wanted.ilog2()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TargetPolicy;

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
        // A million plain links: 24 MB of slots.
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }

    #[test]
    fn a_plain_link_weighs_its_bytes_and_a_small_share_of_a_bucket() {
        let l1 = L1::new(1 << 20, Duration::from_secs(60));
        for i in 0..5_000 {
            l1.insert(&key(&format!("w{i:05}")), &link(i));
        }
        l1.run_pending_tasks();
        assert_eq!(l1.len(), 5_000);
        // 24-byte slot, 4-byte tag, "sho.rt\0w01234" and "https://example.com/1234" in the
        // arena, and 128 buckets' overhead shared by 5,000 links: about 80 bytes.
        let per_link = l1.weighted_size() / 5_000;
        assert!((70..100).contains(&per_link), "{per_link}");
    }

    #[test]
    fn hosts_are_numbered_once_and_a_full_host_table_falls_back_to_full_keys() {
        // Room for one host: "sho.rt" gets number 0, "b.example" keeps full keys.
        let l1 = L1::with_hosts(1 << 20, Duration::from_secs(60), 1);
        let other = |code: &str| format!("b.example\0{code}").into_bytes();
        l1.insert(&key("same"), &link(1));
        l1.insert(&other("same"), &link(2));
        l1.insert(&key("x"), &link(3));
        let now = Instant::now();
        assert_eq!(l1.get(&key("same"), now).unwrap().id, LinkId(1));
        assert_eq!(l1.get(&other("same"), now).unwrap().id, LinkId(2));
        assert_eq!(l1.get(&key("x"), now).unwrap().id, LinkId(3));
        assert!(l1.get(&other("x"), now).is_none());
        assert!(l1.get(b"c.example\0same", now).is_none());
        assert_eq!(l1.hosts.numbers.read().unwrap().len(), 1);
        assert_eq!(&l1.hosts.stored(&key("same"), false)[..], b"\xff\0\0same");
        assert_eq!(
            &l1.hosts.stored(&other("same"), false)[..],
            &other("same")[..]
        );
        // Both forms are invalidated.
        l1.invalidate(&key("same"));
        l1.invalidate(&other("same"));
        assert!(l1.get(&key("same"), now).is_none());
        assert!(l1.get(&other("same"), now).is_none());
        assert_eq!(l1.get(&key("x"), now).unwrap().id, LinkId(3));
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
            l1.insert(&key(&format!("c{i}")), &link(i));
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
    fn links_with_extras_are_kept_whole_beside_plain_ones_through_rebuilds() {
        // 64 buckets for 600 links: every bucket mixes whole and plain links and is
        // rebuilt many times (each insert and removal copies it).
        let l1 = L1::new(512 * 1024, Duration::from_secs(60));
        let whole = |id: i64| {
            let mut link = (*link(id)).clone();
            link.extra = Some(Box::new(super::super::link::LinkExtras {
                max_clicks: Some(u64::try_from(id).unwrap() + 1),
                ..Default::default()
            }));
            Arc::new(link)
        };
        for i in 0..600 {
            let l = if i % 3 == 0 { whole(i) } else { link(i) };
            l1.insert(&key(&format!("m{i}")), &l);
        }
        // Drop every fifth link: the buckets' whole lists are renumbered.
        for i in (0..600).step_by(5) {
            l1.invalidate(&key(&format!("m{i}")));
        }
        let now = Instant::now();
        for i in 0..600 {
            let got = l1.get(&key(&format!("m{i}")), now);
            if i % 5 == 0 {
                assert!(got.is_none(), "{i}");
                continue;
            }
            let got = got.unwrap();
            assert_eq!(got.id, LinkId(i));
            assert_eq!(got.target().as_str(), format!("https://example.com/{i}"));
            let expected = (i % 3 == 0).then(|| u64::try_from(i).unwrap() + 1);
            assert_eq!(got.max_clicks(), expected, "{i}");
        }
    }

    #[test]
    fn long_keys_and_replacements_and_removals() {
        let l1 = L1::new(1 << 20, Duration::from_secs(60));
        let long = format!("{}\0code", "h".repeat(200)).into_bytes();
        l1.insert(&long, &link(1));
        l1.insert(&key("a"), &link(2));
        l1.insert(&key("a"), &link(3));
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
        l1.insert(&key("t"), &link(1));
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
                        l1.insert(&key(&format!("k{n}")), &link(n));
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
            l1.insert(&key(&format!("e{i}")), &link(i));
        }
        l1.run_pending_tasks();
        assert!(l1.weighted_size() <= 64 * 1024, "{}", l1.weighted_size());
        assert!(l1.len() < 20_000);
    }
}

#[cfg(test)]
mod probe {
    use super::*;
    use crate::domain::TargetPolicy;

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
                &Arc::new(CachedLink::new(LinkId(i), target.clone())),
            );
        }
        l1.run_pending_tasks();
        let after = rss_kb();
        assert_eq!(l1.len(), 1_000_000);
        assert!(after - before < 200 * 1024, "over 200 B per link");
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
