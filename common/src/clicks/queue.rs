//! The bounded queue redirects push click events onto.
//!
//! A redirect must never wait for analytics: `push` never blocks or awaits, and allocates
//! only on a thread's first push (its ring).
//! Each thread that pushes has a ring of its own (`rtrb`'s single-producer ring), so a push
//! is plain stores: no locked instruction, no index or slot it must first read back from the
//! batcher's core. (A shared `crossbeam` `ArrayQueue` cost a redirect 110-200 ns in such
//! reads, and a per-thread buffer behind a mutex as much, its unlock waiting for the
//! event's stores.) The capacity is shared equally among the request threads
//! ([`ClickQueue::with_threads`]): a thread whose ring is full drops the event and counts it
//! (metrics show it; a log line at most every 10 s). The batcher drains every ring in bulk,
//! each in the order it was pushed. After each push a thread prefetches its next slot
//! ([`crate::hint`]), so the next event is written to lines already in its core's caches.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rtrb::{Consumer, Producer, RingBuffer};

use crate::domain::{ClickEvent, Timestamp};
use crate::hint::prefetch_lines;
use crate::per_thread::{Local, bump, owner_id, with_local};

/// Minimum time between two "queue full" log lines.
const DROP_LOG_INTERVAL_MS: i64 = 10_000;

/// The click queue, shared by every redirect thread and the batcher.
#[derive(Debug)]
pub struct ClickQueue {
    /// Tells this queue's rings apart in a thread's `MINE` (tests make many queues).
    id: u64,
    capacity: usize,
    /// Slots in each thread's ring.
    share: usize,
    rings: Mutex<Rings>,
    /// Events pushed by a thread whose thread-local storage was already torn down (it
    /// cannot have a ring then): dropped and counted.
    orphaned: AtomicU64,
    /// When the last "queue full" warning was logged (ms), to rate-limit it.
    last_drop_log: AtomicU64,
}

/// Every thread's ring, as the batcher reads them.
#[derive(Debug, Default)]
struct Rings {
    all: Vec<Ring>,
    /// Where the next drain starts, so a drain of fewer events than are waiting does not
    /// favour the first rings.
    next: usize,
    /// Counts of the rings of ended threads, once drained.
    retired_offered: u64,
    retired_dropped: u64,
}

#[derive(Debug)]
struct Ring {
    events: Consumer<ClickEvent>,
    counts: Arc<Counts>,
}

/// A thread's counts, written by that thread only.
#[derive(Debug, Default)]
struct Counts {
    /// Events offered (accepted + dropped).
    offered: AtomicU64,
    /// Events dropped because the ring was full.
    dropped: AtomicU64,
}

/// A thread's end of one queue's ring.
struct Mine {
    events: Producer<ClickEvent>,
    counts: Arc<Counts>,
}

thread_local! {
    static MINE: Local<Mine> = const { RefCell::new(Vec::new()) };
}

/// Starts fetching the lines of the slot the thread's next event goes to. A slot's lines were
/// last read by the batcher's core, or have left the caches since (a ring holds thousands of
/// events); without this, the next push's stores wait for them, and so does the first later
/// instruction that must order after those stores (BENCHMARKS.md, session 28).
fn prefetch_next_slot(events: &mut Producer<ClickEvent>) {
    if let Ok(mut next) = events.write_chunk_uninit(1)
        && let Some(slot) = next.as_mut_slices().0.first()
    {
        prefetch_lines(slot.as_ptr());
    }
}

/// Counters for metrics and the conservation invariant (accepted = persisted + dropped +
/// in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    pub offered: u64,
    pub dropped: u64,
    pub depth: usize,
    pub capacity: usize,
}

impl ClickQueue {
    /// A queue for one pushing thread (any other thread that pushes gets a ring as large).
    pub fn new(capacity: usize) -> Self {
        Self::with_threads(capacity, 1)
    }

    /// A queue holding `capacity` events across `threads` pushing threads: each thread's
    /// ring holds its share.
    pub fn with_threads(capacity: usize, threads: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            id: owner_id(),
            capacity,
            share: (capacity / threads.max(1)).max(1),
            rings: Mutex::new(Rings::default()),
            orphaned: AtomicU64::new(0),
            last_drop_log: AtomicU64::new(0),
        }
    }

    fn rings(&self) -> MutexGuard<'_, Rings> {
        self.rings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Offers an event; returns false (and counts a drop) when the calling thread's ring is
    /// full.
    pub fn push(&self, event: ClickEvent) -> bool {
        let pushed = with_local(
            &MINE,
            self.id,
            || self.register(),
            // The rings of queues that are gone.
            |m| m.events.is_abandoned(),
            |m| {
                bump(&m.counts.offered, 1);
                match m.events.push(event) {
                    Ok(()) => {
                        prefetch_next_slot(&mut m.events);
                        None
                    }
                    Err(_full) => Some(bump(&m.counts.dropped, 1)),
                }
            },
        );
        let dropped = match pushed {
            Ok(None) => return true,
            Ok(Some(dropped)) => dropped,
            Err(_torn_down) => self.orphaned.fetch_add(1, Ordering::Relaxed) + 1,
        };
        // Reading the clock on every drop would slow the redirect path exactly when it is
        // busiest; every 1,024th drop of a thread is often enough to decide whether to log.
        if dropped % 1024 != 1 {
            return false;
        }
        let now = u64::try_from(Timestamp::now().as_millis()).unwrap_or_default();
        let last = self.last_drop_log.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= DROP_LOG_INTERVAL_MS.unsigned_abs()
            && self
                .last_drop_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                dropped = self.stats().dropped,
                capacity = self.capacity,
                "click queue full: dropping clicks"
            );
        }
        false
    }

    /// A new ring for the calling thread.
    fn register(&self) -> Mine {
        let (events, consumer) = RingBuffer::new(self.share);
        let counts = Arc::new(Counts::default());
        self.rings().all.push(Ring {
            events: consumer,
            counts: Arc::clone(&counts),
        });
        Mine { events, counts }
    }

    /// Moves up to `max` events into `out`; returns how many.
    pub fn drain_into(&self, out: &mut Vec<ClickEvent>, max: usize) -> usize {
        let mut rings = self.rings();
        let count = rings.all.len();
        let mut n = 0;
        for i in 0..count {
            let at = (rings.next + i) % count;
            let ring = &mut rings.all[at].events;
            let take = ring.slots().min(max - n);
            if take > 0 {
                let chunk = ring.read_chunk(take).expect("slots() are readable");
                out.extend(chunk);
                n += take;
            }
            if n == max {
                rings.next = (at + 1) % count;
                break;
            }
        }
        // The rings of ended threads, once empty, are dropped; their counts are kept.
        let Rings {
            all,
            retired_offered,
            retired_dropped,
            ..
        } = &mut *rings;
        all.retain(|ring| {
            if !(ring.events.is_abandoned() && ring.events.is_empty()) {
                return true;
            }
            std::sync::atomic::fence(Ordering::Acquire);
            *retired_offered += ring.counts.offered.load(Ordering::Relaxed);
            *retired_dropped += ring.counts.dropped.load(Ordering::Relaxed);
            false
        });
        if rings.next >= rings.all.len() {
            rings.next = 0;
        }
        n
    }

    pub fn len(&self) -> usize {
        self.stats().depth
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> QueueStats {
        let rings = self.rings();
        let orphaned = self.orphaned.load(Ordering::Relaxed);
        let mut offered = rings.retired_offered + orphaned;
        let mut dropped = rings.retired_dropped + orphaned;
        let mut depth = 0;
        for ring in &rings.all {
            offered += ring.counts.offered.load(Ordering::Relaxed);
            dropped += ring.counts.dropped.load(Ordering::Relaxed);
            depth += ring.events.slots();
        }
        QueueStats {
            offered,
            dropped,
            depth,
            capacity: self.capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use super::*;
    use crate::domain::{ClickId, ClickMethod, LinkId};

    fn event(link: i64) -> ClickEvent {
        ClickEvent {
            click_id: ClickId::new(),
            at: Timestamp::now(),
            link_id: LinkId(link),
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            user_agent: None,
            referrer: None,
            has_accept: false,
            method: ClickMethod::Get,
            country: None,
            prefetch: false,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let q = ClickQueue::new(3);
        for i in 0..5 {
            q.push(event(i));
        }
        assert_eq!(
            q.stats(),
            QueueStats {
                offered: 5,
                dropped: 2,
                depth: 3,
                capacity: 3
            }
        );
        let mut out = Vec::new();
        assert_eq!(q.drain_into(&mut out, 10), 3);
        assert_eq!(
            out.iter().map(|e| e.link_id.0).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn concurrent_pushes_are_all_accounted_for_and_threads_share_the_capacity() {
        let q = Arc::new(ClickQueue::with_threads(10_000, 4));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        q.push(event(t * 10_000 + i));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // Four threads: a share of 2,500 each.
        let s = q.stats();
        assert_eq!((s.offered, s.dropped, s.depth), (20_000, 10_000, 10_000));
        // Every event is drained once, each thread's in the order it pushed them; the
        // buffers of the ended threads are retired, their counts kept.
        let mut out = Vec::new();
        assert_eq!(q.drain_into(&mut out, 4_000), 4_000);
        assert_eq!(q.len(), 6_000);
        assert_eq!(q.drain_into(&mut out, 100_000), 6_000);
        let mut by_thread = vec![Vec::new(); 4];
        for e in &out {
            by_thread[usize::try_from(e.link_id.0 / 10_000).unwrap()].push(e.link_id.0 % 10_000);
        }
        for pushed in by_thread {
            assert_eq!(pushed, (0..2_500).collect::<Vec<_>>());
        }
        assert!(
            q.rings().all.is_empty(),
            "the ended threads' rings are retired"
        );
        assert_eq!(
            q.stats(),
            QueueStats {
                offered: 20_000,
                dropped: 10_000,
                depth: 0,
                capacity: 10_000
            }
        );
    }

    #[test]
    fn a_thread_that_ended_leaves_its_events_to_be_drained() {
        let q = Arc::new(ClickQueue::new(100));
        let q2 = Arc::clone(&q);
        std::thread::spawn(move || {
            for i in 0..3 {
                q2.push(event(i));
            }
        })
        .join()
        .unwrap();
        q.push(event(7));
        let mut out = Vec::new();
        assert_eq!(q.drain_into(&mut out, 10), 4);
        let mut links: Vec<_> = out.iter().map(|e| e.link_id.0).collect();
        links.sort_unstable();
        assert_eq!(links, [0, 1, 2, 7]);
        assert_eq!(q.stats().offered, 4);
        assert!(q.is_empty());
    }
}
