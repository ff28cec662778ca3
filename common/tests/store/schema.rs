use linkgate_common::store::{LATEST_SCHEMA_VERSION, Store};

pub async fn migrating_again_changes_nothing_and_reports_the_latest_version(store: &dyn Store) {
    assert_eq!(store.schema_version().await, Ok(LATEST_SCHEMA_VERSION));
    assert_eq!(store.migrate().await, Ok(LATEST_SCHEMA_VERSION));
    assert_eq!(store.check_schema().await, Ok(()));
    store.ping().await.expect("ping");
}
