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
//!
//! The yields are for a thread that runs only on idle CPU. When its work must catch up (the
//! proxy's governor moves the batcher to the normal policy once its backlog passes half its
//! room), the yields would give back the very share the move was for: under EEVDF a yield
//! pushes the thread's deadline a slice ahead, so a raised thread that yields every 100 µs
//! gets far less than its share beside a busy request thread. At a saturated peak on two
//! cores that left the batcher's queue overflowing by a click now and then (BENCHMARKS.md,
//! session 30). So the threads are marked with a [`Yields`] switch that whoever moves them
//! turns off.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The longest stretch of work between two yields on a background thread.
pub const SLICE: Duration = Duration::from_micros(100);

/// What a background thread keeps: when it last yielded, and its group's switch.
struct Background {
    last_yield: Instant,
    yields: Yields,
}

thread_local! {
    /// `Some` on a background thread.
    static BACKGROUND: RefCell<Option<Background>> = const { RefCell::new(None) };
    /// Yields made by this thread (for tests).
    static YIELDS: Cell<u64> = const { Cell::new(0) };
    /// Calls of [`give_way`] since it last read the clock.
    static CALLS: Cell<u32> = const { Cell::new(0) };
}

/// Whether a group of background threads yields in [`give_way`]: on until turned off, for
/// as long as their work must not give way (see the module's doc). Clones share the switch.
#[derive(Debug, Clone)]
pub struct Yields(Arc<AtomicBool>);

impl Default for Yields {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl Yields {
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// [`give_way`] reads the clock on one call in this many. It is called once per click in
/// loops of a few hundred nanoseconds a click, where a clock read (about 35 ns here) every
/// time was a measurable share; a slice may run over by at most this many iterations.
const CALLS_PER_CLOCK: u32 = 8;

/// Marks the calling thread as a background thread: from now on [`give_way`] yields on it
/// while `yields` is on.
pub fn mark_background(yields: &Yields) {
    BACKGROUND.with_borrow_mut(|background| {
        *background = Some(Background {
            last_yield: Instant::now(),
            yields: yields.clone(),
        });
    });
}

/// Whether the calling thread is marked as a background thread.
pub fn is_background() -> bool {
    BACKGROUND.with_borrow(Option::is_some)
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
/// every 1,000 VM instructions): reads the clock on every call while its yields are on.
#[inline]
pub fn give_way_now() {
    BACKGROUND.with_borrow_mut(|background| {
        let Some(background) = background.as_mut().filter(|b| b.yields.is_on()) else {
            return;
        };
        if background.last_yield.elapsed() >= SLICE {
            std::thread::yield_now();
            YIELDS.with(|n| n.set(n.get() + 1));
            background.last_yield = Instant::now();
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

/// The whole machine's idle CPU time so far (idle and I/O wait, every CPU), in the
/// kernel's clock ticks (`USER_HZ`, 100 a second), from `/proc/stat`; `None` where it
/// cannot be read. Between two readings it tells how much of the cores nothing wanted
/// (`SCHED_IDLE` work counts as busy). In a container it is the host's (or VM's) idle time,
/// which may be more than the container may use: it can only make the batcher think the
/// cores freer than they are, never busier.
pub fn machine_idle_ticks() -> Option<u64> {
    idle_ticks_of(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Clock ticks a second in `/proc/stat` (`USER_HZ`, fixed by the kernel's ABI).
pub const TICKS_PER_SEC: u64 = 100;

/// Idle plus I/O-wait ticks from the text of `/proc/stat` (its first, all-CPU line).
fn idle_ticks_of(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?;
    let mut fields = line.split_ascii_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait ...
    let mut fields = fields.skip(3);
    let idle: u64 = fields.next()?.parse().ok()?;
    let iowait: u64 = fields.next()?.parse().ok()?;
    Some(idle.saturating_add(iowait))
}

/// Idle cores on average between two [`machine_idle_ticks`] readings `elapsed` apart.
pub fn idle_cores(before: u64, after: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    let idle = after.saturating_sub(before) as f64 / TICKS_PER_SEC as f64;
    idle / secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_time_is_idle_plus_io_wait_of_the_all_cpu_line() {
        let stat = "cpu  4705 356 584 3699176 23060 0 277 0 0 0\n\
                    cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0\n";
        assert_eq!(idle_ticks_of(stat), Some(3_699_176 + 23_060));
        assert_eq!(idle_ticks_of("cpu0 1 2 3 4 5\n"), None);
        assert_eq!(idle_ticks_of("cpu 1 2 3\n"), None);
        assert_eq!(idle_ticks_of("cpu 1 2 3 x 5\n"), None);
        assert_eq!(idle_ticks_of(""), None);
        // 150 ticks over half a second: three idle cores.
        let cores = idle_cores(1_000, 1_150, Duration::from_millis(500));
        assert!((cores - 3.0).abs() < 1e-9, "{cores}");
        assert!(idle_cores(5, 5, Duration::ZERO).abs() < 1e-9);
        assert!(idle_cores(9, 5, Duration::from_secs(1)).abs() < 1e-9);
        // This machine has the file, and its idle time never goes back.
        let a = machine_idle_ticks().expect("/proc/stat");
        assert!(machine_idle_ticks().unwrap() >= a);
    }

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
            let switch = Yields::default();
            mark_background(&switch);
            assert!(is_background());
            busy_for(Duration::from_millis(20));
            let n = yields();
            let most = started.elapsed().as_micros() / SLICE.as_micros();
            assert!(n >= 5, "20 ms of background work yielded only {n} times");
            assert!(u128::from(n) <= most, "{n} yields in {most} slices");

            // Turned off (a clone, as the governor holds it): no yield however long the work.
            switch.clone().set(false);
            busy_for(Duration::from_millis(5));
            assert_eq!(yields(), n, "a thread whose yields are off yielded");
            switch.set(true);
            busy_for(Duration::from_millis(5));
            assert!(yields() > n, "turned on again, the thread never yielded");
        })
        .join()
        .unwrap();
    }
}
