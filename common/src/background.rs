//! Background threads give way to request threads.
//!
//! The proxy runs its click batcher under `SCHED_IDLE` so redirects come first. Under the
//! EEVDF scheduler (Linux 6.6 and later) that is a very small weight, not a strict
//! priority: when a runnable redirect thread has used more than its fair share (negative
//! lag), a background thread can be picked before it, and then keeps the CPU until the
//! next scheduler tick, 4 ms at `HZ=250`. A scheduler trace of the proxy at half its peak
//! rate showed exactly that: the request thread runnable for up to 5 ms while a batcher
//! thread ran, which is the open-loop latency tail.
//!
//! So long CPU-bound stretches of background work (building and folding batches, SQLite
//! statements through a progress handler) call [`give_way`] often. On a thread marked with
//! [`mark_background`] it yields the CPU once per [`SLICE`] of work; by then the background
//! thread's own virtual runtime has moved far ahead (its weight is tiny), so a waiting
//! request thread is eligible and is picked. With nothing else runnable the yield returns
//! at once. On any other thread `give_way` does nothing.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The longest stretch of work between two yields on a background thread.
pub const SLICE: Duration = Duration::from_micros(100);

thread_local! {
    /// `Some(last yield)` on a background thread.
    static LAST_YIELD: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Yields made by this thread (for tests).
    static YIELDS: Cell<u64> = const { Cell::new(0) };
    /// Calls of [`give_way`] since it last read the clock.
    static CALLS: Cell<u32> = const { Cell::new(0) };
}

/// [`give_way`] reads the clock on one call in this many. It is called once per click in
/// loops of a few hundred nanoseconds a click, where a clock read (about 35 ns here) every
/// time was a measurable share; a slice may run over by at most this many iterations.
const CALLS_PER_CLOCK: u32 = 8;

/// Marks the calling thread as a background thread: from now on [`give_way`] yields on it.
pub fn mark_background() {
    LAST_YIELD.with(|last| last.set(Some(Instant::now())));
}

/// Whether the calling thread is marked as a background thread.
pub fn is_background() -> bool {
    LAST_YIELD.with(|last| last.get().is_some())
}

/// On a background thread, yields the CPU when a [`SLICE`] has passed since the last
/// yield; elsewhere a no-op. For loops of a few hundred nanoseconds an item: it looks at
/// the clock ([`give_way_now`]) on every [`CALLS_PER_CLOCK`]th call only.
#[inline]
pub fn give_way() {
    let due = CALLS.with(|calls| {
        let n = calls.get() + 1;
        let due = n >= CALLS_PER_CLOCK;
        calls.set(if due { 0 } else { n });
        due
    });
    if due {
        give_way_now();
    }
}

/// [`give_way`] for callers that already space their calls out (the SQLite progress handler,
/// every 1,000 VM instructions): reads the clock on every call.
#[inline]
pub fn give_way_now() {
    LAST_YIELD.with(|last| {
        let Some(at) = last.get() else {
            return;
        };
        let now = Instant::now();
        if now.duration_since(at) >= SLICE {
            std::thread::yield_now();
            YIELDS.with(|n| n.set(n.get() + 1));
            last.set(Some(Instant::now()));
        }
    });
}

/// How many times the calling thread has yielded in [`give_way`] or [`give_way_now`].
pub fn yields() -> u64 {
    YIELDS.with(Cell::get)
}

/// The calling thread's time on a CPU and time spent runnable waiting for one, in
/// nanoseconds, from the kernel's scheduler statistics (`/proc/thread-self/schedstat`);
/// `None` where the kernel does not keep them.
pub fn sched_times() -> Option<SchedTimes> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut fields = text.split_ascii_whitespace();
    Some(SchedTimes {
        ran: fields.next()?.parse().ok()?,
        waited: fields.next()?.parse().ok()?,
    })
}

/// See [`sched_times`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedTimes {
    pub ran: u64,
    pub waited: u64,
}

impl SchedTimes {
    /// Whether, between `self` and `later`, the thread waited for a CPU longer than it ran
    /// (other threads had the cores), over at least a millisecond.
    pub fn contended_until(self, later: Self) -> bool {
        let ran = later.ran.saturating_sub(self.ran);
        let waited = later.waited.saturating_sub(self.waited);
        ran.saturating_add(waited) >= 1_000_000 && waited > ran
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy_for(d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            give_way();
        }
    }

    #[test]
    fn contention_is_waiting_for_a_cpu_longer_than_running() {
        let at = |ran, waited| SchedTimes { ran, waited };
        assert!(at(0, 0).contended_until(at(400_000, 700_000)));
        assert!(!at(0, 0).contended_until(at(700_000, 400_000)));
        // Too short to tell.
        assert!(!at(0, 0).contended_until(at(100_000, 800_000)));
        assert!(!at(5, 5).contended_until(at(5, 5)));
        // This kernel keeps the statistics, and a thread that works has run.
        let before = sched_times().expect("scheduler statistics");
        let until = Instant::now() + Duration::from_millis(5);
        while Instant::now() < until {}
        let after = sched_times().unwrap();
        assert!(after.ran > before.ran && after.waited >= before.waited);
    }

    #[test]
    fn only_a_background_thread_yields_and_at_most_once_a_slice() {
        std::thread::spawn(|| {
            busy_for(Duration::from_millis(5));
            assert!(!is_background());
            assert_eq!(yields(), 0, "an ordinary thread never yields");

            let started = Instant::now();
            mark_background();
            assert!(is_background());
            busy_for(Duration::from_millis(20));
            let n = yields();
            let most = started.elapsed().as_micros() / SLICE.as_micros();
            assert!(n >= 5, "20 ms of background work yielded only {n} times");
            assert!(u128::from(n) <= most, "{n} yields in {most} slices");
        })
        .join()
        .unwrap();
    }
}
