//! linkgate's shared core: domain types and storage. Knows nothing of HTTP servers.

pub mod domain;
pub mod store;
pub mod telemetry;
