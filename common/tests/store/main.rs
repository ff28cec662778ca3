//! The store conformance suite: every test is written once, as a function of `&dyn Store`,
//! and instantiated for both backends. Test names say which: `sqlite::...` and `mysql::...`.
//! MySQL tests need the server `scripts/services.sh` starts; without it they fail, naming it.

#![allow(
    unreachable_pub,
    reason = "suite functions are pub for the instantiating macro"
)]

mod admin;
mod clicks;
mod fraud;
mod links;
mod schema;
mod users;

/// Instantiates each suite function as `sqlite::name` and `mysql::name`.
macro_rules! conformance {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = linkgate_common::testing::TestDb::sqlite().await;
                    crate::$module::$name(&*db.store()).await;
                    db.cleanup().await;
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = linkgate_common::testing::TestDb::mysql().await;
                    crate::$module::$name(&*db.store()).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    schema::migrating_again_changes_nothing_and_reports_the_latest_version,
    users::users_are_found_by_id_and_normalised_email,
    users::a_taken_email_is_a_typed_conflict,
    users::only_admins_are_counted_as_admins,
    users::a_refresh_token_rotates_once_and_reuse_revokes_the_family,
    users::expired_and_revoked_refresh_tokens_are_invalid,
    users::logout_revokes_the_whole_family,
    users::concurrent_rotations_of_one_token_yield_exactly_one_successor,
    users::api_keys_are_found_by_hash_until_revoked_by_their_owner,
    links::a_link_round_trips_with_every_field,
    links::codes_are_unique_per_domain_and_case_sensitive,
    links::concurrent_inserts_of_one_code_let_exactly_one_succeed,
    links::a_generated_code_is_retried_on_collision,
    links::an_update_applies_the_patch_and_writes_one_change_row,
    links::bans_and_unbans_are_recorded_as_such,
    links::a_no_op_update_writes_no_change_row,
    links::a_deleted_link_keeps_its_code_taken,
    links::updating_or_deleting_a_missing_link_is_not_found_and_writes_nothing,
    links::links_are_listed_by_owner_tag_and_search_with_a_cursor,
    links::search_treats_wildcards_literally,
    links::bulk_created_links_get_ids_tags_and_change_rows,
    links::a_bulk_create_with_a_taken_code_creates_nothing,
    clicks::a_batch_writes_raw_clicks_and_aggregates,
    clicks::a_replayed_batch_changes_nothing,
    clicks::a_click_already_stored_is_skipped_in_a_new_batch,
    clicks::a_ten_thousand_click_batch_is_written_completely,
    clicks::unique_visitors_are_exact_over_any_range,
    clicks::unique_visitors_are_estimated_past_the_exact_limit,
    clicks::visitor_salts_are_shared_per_day,
    clicks::trending_matches_brute_force_decayed_sums,
    clicks::purging_raw_clicks_keeps_recent_rows_and_aggregates,
    fraud::links_enter_the_queue_by_share_or_burst,
    fraud::confirming_removes_exactly_the_flagged_clicks_once,
    admin::blocking_a_domain_blocks_its_subdomains,
    admin::the_audit_log_pages_newest_first,
);

/// Tests that are about one backend only.
mod backend_specific {
    use linkgate_common::store::{LATEST_SCHEMA_VERSION, SchemaStore, StoreError};

    use linkgate_common::testing::TestDb;

    #[tokio::test]
    async fn sqlite_an_unmigrated_database_fails_the_schema_check() {
        let db = TestDb::sqlite_unmigrated();
        assert_eq!(db.store.schema_version().await, Ok(0));
        assert_eq!(
            db.store.check_schema().await,
            Err(StoreError::SchemaVersion {
                found: 0,
                expected: LATEST_SCHEMA_VERSION
            })
        );
        db.cleanup().await;
    }

    #[tokio::test]
    async fn mysql_an_unmigrated_database_fails_the_schema_check() {
        let db = TestDb::mysql_unmigrated().await;
        assert_eq!(db.store.schema_version().await, Ok(0));
        assert!(matches!(
            db.store.check_schema().await,
            Err(StoreError::SchemaVersion { found: 0, .. })
        ));
        db.cleanup().await;
    }

    #[tokio::test]
    async fn mysql_an_unreachable_server_is_unavailable_not_a_hang() {
        let store = linkgate_common::store::mysql::MysqlStore::open(
            "mysql://nobody:secret@127.0.0.1:1/none",
            2,
        )
        .expect("opening the pool is lazy");
        let started = std::time::Instant::now();
        let err = store.ping().await.expect_err("nothing listens on port 1");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(!format!("{err}").contains("secret"));
        assert!(started.elapsed() < std::time::Duration::from_secs(6));
    }

    #[tokio::test]
    async fn sqlite_two_processes_worth_of_migrations_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let a = linkgate_common::store::sqlite::SqliteStore::open(&path, 4).unwrap();
        let b = linkgate_common::store::sqlite::SqliteStore::open(&path, 4).unwrap();
        let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
        assert_eq!(ra, Ok(LATEST_SCHEMA_VERSION));
        assert_eq!(rb, Ok(LATEST_SCHEMA_VERSION));
    }
}
