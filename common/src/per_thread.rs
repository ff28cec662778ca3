//! Values that one thread writes and any thread reads, such as per-thread shards of
//! counters. A redirect's writes then stay in its own core's cache. On a line that another
//! core wrote last, a locked instruction or a load waits 100-200 ns on the machines we
//! measure.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{AccessError, LocalKey};

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// A thread's values, one for each owner (a [`PerThread`], a click queue) it has used,
/// keyed by the owner's id. Declare one per value type:
/// `thread_local! { static MINE: Local<V> = const { RefCell::new(Vec::new()) }; }`.
pub type Local<V> = RefCell<Vec<(u64, V)>>;

/// A new owner id for [`with_local`], unique in the process (a process may have several
/// owners of one kind, as tests do).
pub fn owner_id() -> u64 {
    NEXT_OWNER.fetch_add(1, Ordering::Relaxed)
}

/// Runs `f` on the calling thread's value for `owner` in `local`, made by `make` on the
/// thread's first use; the values of owners that are gone (`gone`) are dropped then. The
/// owner a thread uses most is found first. `Err` once the thread's locals are torn down
/// (it is ending). `make` and `f` must not use `local` themselves.
pub fn with_local<V, R>(
    local: &'static LocalKey<Local<V>>,
    owner: u64,
    make: impl FnOnce() -> V,
    gone: impl Fn(&V) -> bool,
    f: impl FnOnce(&mut V) -> R,
) -> Result<R, AccessError> {
    local.try_with(|mine| {
        let mut mine = mine.borrow_mut();
        match mine.iter().position(|(id, _)| *id == owner) {
            Some(0) => {}
            Some(at) => mine.swap(0, at),
            None => {
                mine.retain(|(_, value)| !gone(value));
                mine.push((owner, make()));
                let last = mine.len() - 1;
                mine.swap(0, last);
            }
        }
        f(&mut mine[0].1)
    })
}

/// Every thread's shard of one value. A thread's shard is made and registered on its first
/// use; the registry keeps it after the thread ends, so whatever it counted is still read.
#[derive(Debug)]
pub struct PerThread<T> {
    /// Tells this registry's shards apart in a thread's [`Local`].
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
            id: owner_id(),
            all: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on the calling thread's shard. `f` must not use `local` itself.
    pub fn with<R>(&self, local: &'static LocalKey<Local<Arc<T>>>, f: impl FnOnce(&T) -> R) -> R {
        with_local(
            local,
            self.id,
            || {
                let shard = Arc::new(T::default());
                self.lock().push(Arc::clone(&shard));
                shard
            },
            // Only this thread holds it: its registry is gone.
            |shard| Arc::strong_count(shard) == 1,
            |shard| f(shard),
        )
        .expect("a thread's shards are used only while it runs")
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
        static MINE: Local<Arc<Counter>> = const { RefCell::new(Vec::new()) };
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
