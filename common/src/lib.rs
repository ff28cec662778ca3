//! linkgate's shared core: domain types and storage. Knows nothing of HTTP servers.

pub mod budget;
pub mod cache;
pub mod clicks;
pub mod domain;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
