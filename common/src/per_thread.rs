//! Values that one thread writes and any thread reads, such as per-thread shards of
//! counters. A redirect's writes then stay in its own core's cache. On a line that another
//! core wrote last, a locked instruction or a load waits 100-200 ns on the machines we
//! measure.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::LocalKey;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A thread's shards, one for each [`PerThread`] it has used. Declare one per shard type:
/// `thread_local! { static MINE: Local<MyShard> = const { RefCell::new(Vec::new()) }; }`.
pub type Local<T> = RefCell<Vec<(u64, Arc<T>)>>;

/// Every thread's shard of one value. A thread's shard is made and registered on its first
/// use; the registry keeps it after the thread ends, so whatever it counted is still read.
#[derive(Debug)]
pub struct PerThread<T> {
    /// Tells this registry's shards apart in a thread's [`Local`] (a process may have
    /// several, as tests do).
    id: u64,
    all: Mutex<Vec<Arc<T>>>,
}

impl<T: Default> Default for PerThread<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Default> PerThread<T> {
    pub fn new() -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            all: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on the calling thread's shard. `f` must not use `local` itself.
    pub fn with<R>(&self, local: &'static LocalKey<Local<T>>, f: impl FnOnce(&T) -> R) -> R {
        local.with_borrow_mut(|mine| {
            if let Some(at) = mine.iter().position(|(id, _)| *id == self.id) {
                // The registry a thread uses most is first after its first use.
                if at != 0 {
                    mine.swap(0, at);
                }
            } else {
                // Shards of registries that are gone are dropped here.
                mine.retain(|(_, shard)| Arc::strong_count(shard) > 1);
                let shard = Arc::new(T::default());
                self.lock().push(Arc::clone(&shard));
                mine.insert(0, (self.id, shard));
            }
            f(&mine[0].1)
        })
    }

    /// Runs `f` on every shard, the registry locked (no shard is registered meanwhile).
    pub fn each(&self, mut f: impl FnMut(&T)) {
        for shard in self.lock().iter() {
            f(shard);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<T>>> {
        self.all.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Adds to a counter that only the calling thread writes: a plain load and store, no locked
/// instruction. Returns the new value.
pub fn bump(counter: &AtomicU64, by: u64) -> u64 {
    let value = counter.load(Ordering::Relaxed).wrapping_add(by);
    counter.store(value, Ordering::Relaxed);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Counter(AtomicU64);

    thread_local! {
        static MINE: Local<Counter> = const { RefCell::new(Vec::new()) };
    }

    fn count(p: &PerThread<Counter>) -> usize {
        let mut n = 0;
        p.each(|_| n += 1);
        n
    }

    fn total(p: &PerThread<Counter>) -> u64 {
        let mut sum = 0;
        p.each(|c| sum += c.0.load(Ordering::Relaxed));
        sum
    }

    #[test]
    fn each_thread_writes_its_own_shard_and_every_shard_is_read() {
        let p = Arc::new(PerThread::<Counter>::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = Arc::clone(&p);
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        p.with(&MINE, |c| bump(&c.0, 1));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The threads have ended; what they counted is still read.
        assert_eq!(count(&p), 4);
        assert_eq!(total(&p), 4_000);
    }

    #[test]
    fn one_thread_keeps_a_shard_per_registry_and_drops_those_of_dropped_registries() {
        let a = PerThread::<Counter>::new();
        let b = PerThread::<Counter>::new();
        for _ in 0..3 {
            a.with(&MINE, |c| bump(&c.0, 1));
            b.with(&MINE, |c| bump(&c.0, 10));
        }
        assert_eq!((count(&a), count(&b)), (1, 1));
        assert_eq!((total(&a), total(&b)), (3, 30));
        drop(b);
        let c = PerThread::<Counter>::new();
        c.with(&MINE, |c| bump(&c.0, 1));
        assert_eq!(
            MINE.with_borrow(Vec::len),
            2,
            "a's and c's shards; b's is gone"
        );
    }
}
