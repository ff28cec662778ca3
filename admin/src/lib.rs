//! linkgate's admin service. This crate currently owns schema management
//! (`linkgate-admin migrate`); the HTTP API arrives with the admin-service issue.

use std::sync::Arc;

use linkgate_common::store::{self, Store, StoreError};
use linkgate_config::Settings;

/// Opens the configured store and applies pending migrations; returns the store and the
/// schema version.
pub async fn migrate(settings: &Settings) -> Result<(Arc<dyn Store>, u32), StoreError> {
    let store = store::open(&settings.store)?;
    let version = store.migrate().await?;
    Ok((store, version))
}
