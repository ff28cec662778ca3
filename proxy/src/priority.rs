//! The CPU priority of the click batcher's threads.
//!
//! The batcher's work comes in bursts (a batch every 100 ms, an aggregation window every
//! second) that, at normal priority, take a core from the redirect threads for milliseconds
//! at a time: that is the open-loop latency tail. So its threads run under `SCHED_IDLE`,
//! the kernel's policy for work that runs only on otherwise idle CPU and gives way at once
//! to a runnable redirect thread. Idle CPU is not guaranteed, though: when the backlog of
//! clicks (queued + buffered) passes `high`, a governor thread (normal priority, so it is
//! never starved itself) moves them to `SCHED_OTHER` at nice 0, where they get a fair share
//! of the CPU under any load, and back to idle once the backlog is under `low`. Shutdown
//! moves them to `SCHED_OTHER` for the final flush. While they run at the normal policy
//! they do not yield in `background::give_way` (its yields would hand back the share they
//! were given).
//!
//! Leaving `SCHED_IDLE` is a privilege: the kernel treats it as lowering the thread's nice
//! value from 20 to its own (0), which needs `CAP_SYS_NICE` or an `RLIMIT_NICE` of 20.
//! Entering it is not. A proxy without the privilege (the shipped image runs as an
//! unprivileged user) put its batcher on idle CPU and never got it back: at a peak that
//! used every core the starved batcher could not even move the queue into deferred files,
//! and the queue overflowed (303,177 clicks dropped in 20 s at the peak, BENCHMARKS.md
//! session 32). So [`ClickPriority::new`] first tries the round trip on a thread of its
//! own ([`may_leave_idle`]); where it fails, the batcher's threads never enter `SCHED_IDLE`:
//! they run at nice 10 throughout (an unprivileged thread cannot raise its priority again
//! either), and the governor switches only their yields, on while they keep up and off
//! while they are behind.
//!
//! Any other failure to change a policy only leaves the thread where it was.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use linkgate_common::background::Yields;
use thread_priority::{
    NormalThreadSchedulePolicy, ThreadId, ThreadPriority, ThreadPriorityValue,
    ThreadSchedulePolicy, set_current_thread_priority, set_thread_priority_and_policy,
    thread_native_id,
};

/// How often the governor looks at the backlog.
const LOOK_EVERY: Duration = Duration::from_millis(10);

/// The batcher's threads and the policy they run under.
#[derive(Debug, Clone)]
pub(crate) struct ClickPriority {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Whether threads may run under `SCHED_IDLE`: only where they can also leave it
    /// ([`may_leave_idle`]).
    idle_policy: bool,
    /// The batcher runtime's live threads (added at start, removed before they exit; the
    /// lock is held while their policy changes, so no id outlives its thread there).
    threads: Mutex<Vec<ThreadId>>,
    /// Their yields in `background::give_way`: on while they run idle, off while they run
    /// at the normal policy (nice 10), so it also tells which policy is current.
    yields: Yields,
    stop: AtomicBool,
}

/// The batcher threads' priority where they cannot leave `SCHED_IDLE` (see [`priority`]):
/// nice 10, fixed, since an unprivileged thread cannot lower its nice value again.
const UNPRIVILEGED_PRIORITY: u8 = 22;
/// Nice 0 (see [`priority`]): the only value the crate takes with `SCHED_IDLE`.
const NICE_0: u8 = 47;

/// The portable priority value the crate maps to `nice`: 22 is nice 10, 47 is nice 0.
fn priority(value: u8) -> Option<ThreadPriority> {
    ThreadPriorityValue::try_from(value)
        .ok()
        .map(ThreadPriority::Crossplatform)
}

fn policy(normal: bool) -> ThreadSchedulePolicy {
    ThreadSchedulePolicy::Normal(if normal {
        NormalThreadSchedulePolicy::Other
    } else {
        NormalThreadSchedulePolicy::Idle
    })
}

/// Whether a thread of this process can move from `SCHED_IDLE` back to the normal
/// policy at nice 0, as the governor moves the batcher's threads: tried on a thread
/// started for it (a thread that could not come back would stay idle), which ends right
/// after.
fn may_leave_idle() -> bool {
    std::thread::Builder::new()
        .name("linkgate-probe".into())
        .spawn(|| {
            let me = thread_native_id();
            ClickPriority::apply(me, false) && ClickPriority::apply(me, true)
        })
        .ok()
        .and_then(|probe| probe.join().ok())
        .unwrap_or(false)
}

impl ClickPriority {
    /// Threads start on idle CPU if they may leave it again ([`may_leave_idle`]), at nice
    /// 10 with yields otherwise.
    pub(crate) fn new() -> Self {
        let idle_policy = may_leave_idle();
        if !idle_policy {
            tracing::warn!(
                "the click batcher cannot get CPU back once it runs on idle CPU (needs \
                 CAP_SYS_NICE or RLIMIT_NICE 20, e.g. `ulimit -e 20`): it runs at nice 10"
            );
        }
        Self::with_idle_policy(idle_policy)
    }

    fn with_idle_policy(idle_policy: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                idle_policy,
                threads: Mutex::default(),
                yields: Yields::default(),
                stop: AtomicBool::default(),
            }),
        }
    }

    /// For the batcher runtime's `on_thread_start`: the current policy (or, without the
    /// idle policy, nice 10); the thread is registered.
    pub(crate) fn on_thread_start(&self) {
        let Ok(mut threads) = self.inner.threads.lock() else {
            return;
        };
        let me = thread_native_id();
        // Long CPU-bound stretches on this thread yield to request threads now and then.
        linkgate_common::background::mark_background(&self.inner.yields);
        if !self.inner.idle_policy {
            if let Some(nice) = priority(UNPRIVILEGED_PRIORITY) {
                let _ = set_current_thread_priority(nice);
            }
        } else if !self.is_normal() {
            Self::apply(me, false);
        }
        threads.push(me);
    }

    /// For the batcher runtime's `on_thread_stop`.
    pub(crate) fn on_thread_stop(&self) {
        let me = thread_native_id();
        if let Ok(mut threads) = self.inner.threads.lock() {
            threads.retain(|t| *t != me);
        }
    }

    /// Starts the governor: `backlog` is read every 10 ms.
    pub(crate) fn govern(
        &self,
        backlog: impl Fn() -> usize + Send + 'static,
        high: usize,
        low: usize,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let this = self.clone();
        std::thread::Builder::new()
            .name("linkgate-clicks-governor".into())
            .spawn(move || {
                while !this.inner.stop.load(Ordering::Relaxed) {
                    let waiting = backlog();
                    let normal = this.is_normal();
                    if !normal && waiting > high {
                        tracing::debug!(waiting, "click batcher behind: normal CPU policy");
                        this.set(true);
                    } else if normal && waiting < low {
                        tracing::debug!(waiting, "click batcher caught up: idle CPU policy");
                        this.set(false);
                    }
                    std::thread::sleep(LOOK_EVERY);
                }
            })
    }

    /// Stops the governor and moves the threads to the normal policy (the final flush must
    /// not wait for idle CPU).
    pub(crate) fn stop(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.set(true);
    }

    /// Whether the threads currently run at the normal policy.
    fn is_normal(&self) -> bool {
        !self.inner.yields.is_on()
    }

    fn set(&self, normal: bool) {
        let Ok(threads) = self.inner.threads.lock() else {
            return;
        };
        self.inner.yields.set(!normal);
        if self.inner.idle_policy {
            for &thread in threads.iter() {
                Self::apply(thread, normal);
            }
        }
    }

    /// Moves `thread` to `SCHED_OTHER` (`normal`) or `SCHED_IDLE`; whether it could. The
    /// thread keeps its nice value (0). The crate also sets the calling thread's nice to the
    /// value given, which `SCHED_IDLE` only takes as 0: the governor's own, and a batcher
    /// thread's when it calls this itself.
    fn apply(thread: ThreadId, normal: bool) -> bool {
        priority(NICE_0).is_some_and(|nice_0| {
            set_thread_priority_and_policy(thread, nice_0, policy(normal)).is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn policy_of(thread: ThreadId) -> ThreadSchedulePolicy {
        thread_priority::thread_schedule_policy_param(thread)
            .unwrap()
            .0
    }

    /// The calling thread's nice value (field 19 of its `stat`).
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = stat.rsplit_once(") ").unwrap().1;
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    /// A batcher thread under `priority` and the governor over a backlog set by the test:
    /// the thread's policy (`idle` while the batcher keeps up) and its yields follow; the
    /// thread's nice value is `nice` throughout.
    fn follows_the_backlog(priority: &ClickPriority, idle: ThreadSchedulePolicy, nice: i32) {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let worker = {
            let priority = priority.clone();
            std::thread::spawn(move || {
                priority.on_thread_start();
                tx.send(thread_native_id()).unwrap();
                let _ = done_rx.recv();
                let nice_at_the_end = own_nice();
                priority.on_thread_stop();
                nice_at_the_end
            })
        };
        let id = rx.recv().unwrap();
        assert_eq!(policy_of(id), idle, "how a batcher thread starts");

        let backlog = Arc::new(AtomicUsize::new(0));
        let governor = {
            let backlog = Arc::clone(&backlog);
            priority
                .govern(move || backlog.load(Ordering::Relaxed), 1_000, 100)
                .unwrap()
        };
        let wait_for = |normal: bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            let want = if normal { policy(true) } else { idle };
            while priority.is_normal() != normal || policy_of(id) != want {
                assert!(std::time::Instant::now() < deadline, "policy never changed");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        assert!(
            priority.inner.yields.is_on(),
            "a batcher that keeps up gives way"
        );
        backlog.store(5_000, Ordering::Relaxed);
        wait_for(true);
        assert!(
            !priority.inner.yields.is_on(),
            "raised threads keep their share"
        );
        // Between the thresholds nothing changes.
        backlog.store(500, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(policy_of(id), policy(true));
        backlog.store(10, Ordering::Relaxed);
        wait_for(false);
        assert!(priority.inner.yields.is_on());

        priority.stop();
        governor.join().unwrap();
        assert_eq!(
            policy_of(id),
            policy(true),
            "the final flush runs at the normal policy"
        );
        done_tx.send(()).unwrap();
        assert_eq!(
            worker.join().unwrap(),
            nice,
            "the batcher thread's nice value"
        );
        assert!(priority.inner.threads.lock().unwrap().is_empty());
    }

    #[test]
    fn threads_start_idle_and_follow_the_backlog() {
        assert!(
            may_leave_idle(),
            "the tests run with CAP_SYS_NICE (as root) or RLIMIT_NICE 20"
        );
        follows_the_backlog(&ClickPriority::new(), policy(false), 0);
    }

    #[test]
    fn without_the_privilege_threads_never_go_idle_and_only_their_yields_follow() {
        follows_the_backlog(&ClickPriority::with_idle_policy(false), policy(true), 10);
    }

    /// Set in the copy of the test binary that [`an_unprivileged_user_cannot_leave_idle`]
    /// runs as `nobody`.
    const AS_NOBODY: &str = "LINKGATE_TEST_PRIORITY_AS_NOBODY";

    #[test]
    fn an_unprivileged_user_cannot_leave_idle() {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::process::CommandExt;

        if std::env::var_os(AS_NOBODY).is_some() {
            assert!(!may_leave_idle(), "nobody left SCHED_IDLE");
            assert!(
                !ClickPriority::new().inner.idle_policy,
                "nobody's batcher would go idle"
            );
            return;
        }
        assert_eq!(
            std::fs::metadata("/proc/self").unwrap().uid(),
            0,
            "this test runs as root: it runs itself again as nobody"
        );
        // This test alone, in this binary, as nobody (uid and gid 65534) without
        // CAP_SYS_NICE, with the default RLIMIT_NICE of 0.
        let name = "priority::tests::an_unprivileged_user_cannot_leave_idle";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(AS_NOBODY, "1")
            .uid(65_534)
            .gid(65_534)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "as nobody: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
