//! The monotonic clock of the request path.
//!
//! A redirect reads the clock twice: at its start (the memo's and the blocklist's "now",
//! and the click's time through [`crate::domain::Timestamp::at`]) and at its end, for the
//! latency histogram. `std::time::Instant` reads it through the vDSO's `clock_gettime`,
//! which orders the counter read after every earlier load (`rdtscp`/`lfence`): about 25 ns a
//! read in a tight loop on our virtual machines, and more on the redirect path, where it
//! waits for the loads still missing the cache. [`Instant`] is `quanta`'s: the time-stamp
//! counter read without a fence and scaled by a calibration made once per process (moka
//! and governor, whose caches and limiters use the same clock, already make it), about 10 ns
//! a read. Where the processor has no invariant counter, it reads the OS monotonic clock.
//! Its readings compare only with each other, not with `std::time::Instant`'s.

pub use quanta::Instant;
