//! The bounded lock-free queue redirects push click events onto.
//!
//! A redirect must never wait for analytics: `push` is one compare-and-swap on a
//! `crossbeam::queue::ArrayQueue` and never blocks, allocates or awaits. When the queue is
//! full the event is dropped and counted (metrics show it; a log line at most every 10 s).
//! The batcher drains it in bulk.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam::queue::ArrayQueue;

use crate::domain::{ClickEvent, Timestamp};

/// Minimum time between two "queue full" log lines.
const DROP_LOG_INTERVAL_MS: i64 = 10_000;

/// The click queue, shared by every redirect thread and the batcher.
#[derive(Debug)]
pub struct ClickQueue {
    queue: ArrayQueue<ClickEvent>,
    /// Events offered to the queue (accepted + dropped).
    offered: AtomicU64,
    /// Events refused because the queue was full.
    dropped: AtomicU64,
    /// When the last "queue full" warning was logged (ms), to rate-limit it.
    last_drop_log: AtomicU64,
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
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: ArrayQueue::new(capacity.max(1)),
            offered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_drop_log: AtomicU64::new(0),
        }
    }

    /// Offers an event; returns false (and counts a drop) when the queue is full.
    pub fn push(&self, event: ClickEvent) -> bool {
        self.offered.fetch_add(1, Ordering::Relaxed);
        if self.queue.push(event).is_ok() {
            return true;
        }
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // Reading the clock on every drop would slow the redirect path exactly when it is
        // busiest; every 1,024th drop is often enough to decide whether to log.
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
                dropped,
                capacity = self.queue.capacity(),
                "click queue full: dropping clicks"
            );
        }
        false
    }

    /// Moves up to `max` events into `out`; returns how many.
    pub fn drain_into(&self, out: &mut Vec<ClickEvent>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            match self.queue.pop() {
                Some(event) => {
                    out.push(event);
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            offered: self.offered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            depth: self.queue.len(),
            capacity: self.queue.capacity(),
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
    fn concurrent_pushes_are_all_accounted_for() {
        let q = Arc::new(ClickQueue::new(10_000));
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
        let s = q.stats();
        assert_eq!(s.offered, 20_000);
        assert_eq!(s.dropped + s.depth as u64, 20_000);
        assert_eq!(s.depth, 10_000);
    }
}
