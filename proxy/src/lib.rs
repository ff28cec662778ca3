//! linkgate's edge proxy. This crate currently checks that the configured store is reachable
//! and at the schema version this build expects; the Pingora service arrives with the proxy
//! issue.

use linkgate_common::store::{self, StoreError};
use linkgate_config::Settings;

/// Connects to the configured store and verifies its schema version.
pub async fn check_store(settings: &Settings) -> Result<u32, StoreError> {
    let store = store::open(&settings.store)?;
    store.check_schema().await?;
    store.schema_version().await
}
