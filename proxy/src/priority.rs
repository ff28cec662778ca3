//! The CPU priority of the click batcher's threads.
//!
//! The batcher's work comes in bursts (a batch every 100 ms, an aggregation window every
//! second) that, at normal priority, take a core from the redirect threads for milliseconds
//! at a time: that is the open-loop latency tail. So its threads run under `SCHED_IDLE`,
//! the kernel's policy for work that runs only on otherwise idle CPU and gives way at once
//! to a runnable redirect thread. Idle CPU is not guaranteed, though: when the backlog of
//! clicks (queued + buffered) passes `high`, a governor thread (normal priority, so it is
//! never starved itself) moves them to `SCHED_OTHER` at nice 10, where they get a share of
//! the CPU under any load, and back to idle once the backlog is under `low`. Shutdown moves
//! them to nice 10 for the final flush. While they run at the normal policy they do not
//! yield in `background::give_way` (its yields would hand back the share they were given).
//!
//! A failure to change a policy only leaves the thread where it was (nice 10 at worst).

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
#[derive(Debug, Clone, Default)]
pub(crate) struct ClickPriority {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The batcher runtime's live threads (added at start, removed before they exit; the
    /// lock is held while their policy changes, so no id outlives its thread there).
    threads: Mutex<Vec<ThreadId>>,
    /// Their yields in `background::give_way`: on while they run idle, off while they run
    /// at the normal policy (nice 10), so it also tells which policy is current.
    yields: Yields,
    stop: AtomicBool,
}

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

impl ClickPriority {
    /// For the batcher runtime's `on_thread_start`: nice 10 (kept across policy changes),
    /// then the current policy; the thread is registered.
    pub(crate) fn on_thread_start(&self) {
        let Ok(mut threads) = self.inner.threads.lock() else {
            return;
        };
        let me = thread_native_id();
        // Long CPU-bound stretches on this thread yield to request threads now and then.
        linkgate_common::background::mark_background(&self.inner.yields);
        if !self.is_normal() {
            Self::apply(me, false);
        }
        // After the policy: setting it also sets the caller's nice (see `apply`).
        if let Some(nice_10) = priority(22) {
            let _ = set_current_thread_priority(nice_10);
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

    /// Stops the governor and moves the threads to nice 10 (the final flush must not wait
    /// for idle CPU).
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
        for &thread in threads.iter() {
            Self::apply(thread, normal);
        }
    }

    fn apply(thread: ThreadId, normal: bool) {
        // The crate also sets the calling thread's nice to the given value: 47 is nice 0,
        // the governor's own (a starting thread sets its nice 10 afterwards).
        if let Some(nice_0) = priority(47) {
            let _ = set_thread_priority_and_policy(thread, nice_0, policy(normal));
        }
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

    #[test]
    fn threads_start_idle_and_follow_the_backlog() {
        let priority = ClickPriority::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let worker = {
            let priority = priority.clone();
            std::thread::spawn(move || {
                priority.on_thread_start();
                tx.send(thread_native_id()).unwrap();
                let _ = done_rx.recv();
                priority.on_thread_stop();
            })
        };
        let id = rx.recv().unwrap();
        assert_eq!(policy_of(id), policy(false), "a batcher thread starts idle");

        let backlog = Arc::new(AtomicUsize::new(0));
        let governor = {
            let backlog = Arc::clone(&backlog);
            priority
                .govern(move || backlog.load(Ordering::Relaxed), 1_000, 100)
                .unwrap()
        };
        let wait_for = |normal: bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while priority.is_normal() != normal || policy_of(id) != policy(normal) {
                assert!(std::time::Instant::now() < deadline, "policy never changed");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        assert!(priority.inner.yields.is_on(), "idle threads give way");
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
            "the final flush runs at nice 10"
        );
        done_tx.send(()).unwrap();
        worker.join().unwrap();
        assert!(priority.inner.threads.lock().unwrap().is_empty());
    }
}
