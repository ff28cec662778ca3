//! linkgate's shared core: domain types and storage. Knows nothing of HTTP servers.

pub mod background;
pub mod budget;
pub mod cache;
pub mod clicks;
pub mod client_ip;
pub mod clock;
pub mod domain;
pub mod hint;
pub mod password;
pub mod per_thread;
pub mod ratelimit;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
