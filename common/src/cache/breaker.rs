//! A circuit breaker: after consecutive failures a dependency is skipped for a cool-down,
//! so a dead Redis costs one timeout per cool-down instead of one per request.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Failures in a row that open the circuit.
const FAILURES_TO_OPEN: u32 = 3;

#[derive(Debug)]
pub struct Breaker {
    /// Time origin for `open_until`, so it fits in an atomic.
    origin: Instant,
    cooldown: Duration,
    consecutive_failures: AtomicU32,
    /// Microseconds since `origin` until which calls are skipped (0 = closed).
    open_until_us: AtomicU64,
    /// Times the circuit opened (a metric).
    opened: AtomicU64,
}

impl Breaker {
    pub fn new(cooldown: Duration) -> Self {
        Self {
            origin: Instant::now(),
            cooldown,
            consecutive_failures: AtomicU32::new(0),
            open_until_us: AtomicU64::new(0),
            opened: AtomicU64::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// True while calls should be skipped. After the cool-down calls go through again;
    /// three failures in a row open the circuit for another cool-down.
    pub fn is_open(&self) -> bool {
        self.now_us() < self.open_until_us.load(Ordering::Relaxed)
    }

    pub fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// A failure while the circuit is already open came from a call that started before it
    /// opened: it neither counts nor re-opens (nor extends) the circuit. The opening itself is a
    /// compare-and-swap on the open-until instant, so concurrent failures open it once.
    pub fn record_failure(&self) {
        let now = self.now_us();
        let current = self.open_until_us.load(Ordering::Relaxed);
        if now < current {
            return;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < FAILURES_TO_OPEN {
            return;
        }
        let until = now + u64::try_from(self.cooldown.as_micros()).unwrap_or(u64::MAX);
        if self
            .open_until_us
            .compare_exchange(current, until, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many times the circuit has opened.
    pub fn times_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_open_the_circuit_for_the_cooldown() {
        let b = Breaker::new(Duration::from_millis(50));
        b.record_failure();
        b.record_failure();
        assert!(!b.is_open());
        b.record_failure();
        assert!(b.is_open());
        assert_eq!(b.times_opened(), 1);
        std::thread::sleep(Duration::from_millis(60));
        assert!(!b.is_open(), "half-open after the cool-down");
    }

    #[test]
    fn failures_of_calls_in_flight_when_it_opened_do_not_open_it_again() {
        let b = Breaker::new(Duration::from_mins(1));
        for _ in 0..3 {
            b.record_failure();
        }
        let opened_until = b.open_until_us.load(Ordering::Relaxed);
        for _ in 0..7 {
            b.record_failure();
        }
        assert_eq!(b.times_opened(), 1);
        assert_eq!(b.open_until_us.load(Ordering::Relaxed), opened_until);
    }

    #[test]
    fn concurrent_failures_open_the_circuit_once() {
        let b = std::sync::Arc::new(Breaker::new(Duration::from_mins(1)));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        b.record_failure();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(b.is_open());
        assert_eq!(b.times_opened(), 1);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let b = Breaker::new(Duration::from_mins(1));
        b.record_failure();
        b.record_failure();
        b.record_success();
        b.record_failure();
        assert!(!b.is_open());
    }
}
