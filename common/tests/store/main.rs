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
    clicks::recent_clicks_sum_each_links_hours_from_the_one_given,
    clicks::raw_clicks_read_back_exactly_and_flagged_ones_by_link,
    clicks::a_ten_thousand_click_batch_is_written_completely,
    clicks::unique_visitors_are_exact_over_any_range,
    clicks::unique_visitors_are_estimated_past_the_exact_limit,
    clicks::visitor_salts_are_shared_per_day,
    clicks::trending_matches_brute_force_decayed_sums,
    clicks::purging_raw_clicks_keeps_recent_rows_and_aggregates,
    clicks::pending_aggregates_apply_exactly_once_from_the_window_or_the_sweep,
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

    /// The SQLite migration files as released, in order.
    const SQLITE_MIGRATIONS: [&str; 5] = [
        include_str!("../../migrations/sqlite/0001_init.sql"),
        include_str!("../../migrations/sqlite/0002_visitor_sketches.sql"),
        include_str!("../../migrations/sqlite/0003_fraud_reviews.sql"),
        include_str!("../../migrations/sqlite/0004_click_segments.sql"),
        include_str!("../../migrations/sqlite/0005_pending_aggregates.sql"),
    ];

    /// A new SQLite file at `path` with migrations 1 to `version` applied, as an older
    /// release left it.
    fn sqlite_at_version(path: &std::path::Path, version: usize) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, \
             name VARCHAR(64) NOT NULL, applied_at BIGINT NOT NULL);",
        )
        .unwrap();
        for (v, sql) in SQLITE_MIGRATIONS[..version].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, 'old', 0)",
                [i64::try_from(v).unwrap() + 1],
            )
            .unwrap();
        }
        conn
    }

    /// Raw clicks written as rows before segments existed stay raw clicks after version 4:
    /// counted, read, their flagged ones found by link, purged by retention.
    #[tokio::test]
    async fn sqlite_click_rows_of_version_3_survive_the_move_to_segments() {
        use linkgate_common::domain::{ClickId, LinkId, Timestamp};
        use linkgate_common::store::{ClickStore as _, sqlite::SqliteStore};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.db");
        let t0 = Timestamp::parse_rfc3339("2026-11-20T08:00:00Z").unwrap();
        let ids: Vec<ClickId> = (0..3).map(|i| ClickId::at(t0.plus_millis(i))).collect();
        {
            let conn = sqlite_at_version(&path, 3);
            for (i, id) in ids.iter().enumerate() {
                conn.execute(
                    "INSERT INTO clicks VALUES (?1, 5, ?2, 9, NULL, 'ref.example', 'NL', \
                     'desktop', 'Firefox', 'Linux', 0, ?3)",
                    rusqlite::params![
                        id.to_bytes().to_vec(),
                        t0.as_millis() + i64::try_from(i).unwrap(),
                        if i == 1 { 4 } else { 0 }
                    ],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path, 2).unwrap();
        assert_eq!(store.migrate().await, Ok(LATEST_SCHEMA_VERSION));
        assert_eq!(store.raw_click_count(LinkId(5)).await, Ok(3));
        let raw = store.raw_clicks(LinkId(5), None, 100).await.unwrap();
        assert_eq!(raw.iter().map(|c| c.click_id).collect::<Vec<_>>(), ids);
        let flagged = store.flagged_clicks(LinkId(5), None, 100).await.unwrap();
        assert_eq!(flagged, vec![raw[1].clone()]);
        assert_eq!(flagged[0].fraud_reasons, 4);
        assert_eq!(
            store
                .purge_raw_clicks(t0.plus_millis(24 * 3_600_000), 100)
                .await,
            Ok(3)
        );
        assert_eq!(store.raw_click_count(LinkId(5)).await, Ok(0));
    }

    /// Windows each node writes in the two-node visitor test: enough for each node to
    /// come to every key's compaction (every 32 parts) at least twice.
    const WINDOWS: u64 = 100;
    /// Parts a key of the current hour may hold after two nodes' writes: one merged part,
    /// and fewer than 32 parts from each node since its last compaction, plus a second
    /// merged part when both compacted at once. Without compaction a key would hold
    /// 2 x `WINDOWS` parts.
    const MAX_PARTS_PER_KEY: u64 = 1 + 2 * 31 + 1;
    /// Windows each node writes to an hour that has ended.
    const LATE_WINDOWS: u64 = 10;
    /// Parts a key of an ended hour may hold then: each window compacts it, and two nodes
    /// compacting at once may each leave a merged part.
    const MAX_LATE_PARTS_PER_KEY: u64 = 2;

    /// The visitor test for the current hour, then for an hour long gone; the sketch rows
    /// of each link by granularity tag, counted by `rows`.
    async fn visitor_parts<F, Fut>(
        a: &dyn linkgate_common::store::Store,
        b: &dyn linkgate_common::store::Store,
        rows: F,
    ) where
        F: Fn(i64, &'static str) -> Fut,
        Fut: std::future::Future<Output = u64>,
    {
        use crate::clicks::visitors_from_two_nodes_in_many_windows_stay_exact as run;
        use linkgate_common::domain::Timestamp;
        let now = run(a, b, "parts-now", Timestamp::now(), WINDOWS).await;
        // One key: the hour, as parts not yet in the day (`u`). Nothing is in the hour's
        // `h` row or the day until the hour has ended.
        let open = rows(now.0, "u").await;
        assert!(
            (1..=MAX_PARTS_PER_KEY).contains(&open),
            "{open} open-hour parts"
        );
        assert_eq!((rows(now.0, "h").await, rows(now.0, "d").await), (0, 0));
        let old = Timestamp::parse_rfc3339("2026-11-27T10:00:00Z").unwrap();
        let late = run(a, b, "parts-late", old, LATE_WINDOWS).await;
        // An ended hour is folded at once: into its `h` row and a part of its day.
        assert_eq!(
            rows(late.0, "u").await,
            0,
            "open-hour parts of an ended hour"
        );
        for tag in ["h", "d"] {
            let n = rows(late.0, tag).await;
            assert!(
                (1..=MAX_LATE_PARTS_PER_KEY).contains(&n),
                "{n} '{tag}' rows of an ended hour"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_visitor_sketch_parts_from_two_nodes_are_compacted_and_exact() {
        let db = TestDb::sqlite().await;
        let url = db.url();
        let path = url.strip_prefix("sqlite://").unwrap().to_owned();
        let b = linkgate_common::store::sqlite::SqliteStore::open(path.as_ref(), 4).unwrap();
        visitor_parts(&*db.store(), &b, |link, tag| {
            let conn = rusqlite::Connection::open(&path).unwrap();
            let rows: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM visitor_sketches WHERE link_id = ?1 AND granularity = ?2",
                    rusqlite::params![link, tag],
                    |r| r.get(0),
                )
                .unwrap();
            std::future::ready(u64::try_from(rows).unwrap())
        })
        .await;
        drop(b);
        db.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn mysql_visitor_sketch_parts_from_two_nodes_are_compacted_and_exact() {
        use mysql_async::prelude::Queryable as _;
        let db = TestDb::mysql().await;
        let url = db.url();
        let b = linkgate_common::store::mysql::MysqlStore::open(&url, 4).unwrap();
        visitor_parts(&*db.store(), &b, |link, tag| {
            let url = url.clone();
            async move {
                let mut conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
                let rows: Option<u64> = conn
                    .exec_first(
                        "SELECT COUNT(*) FROM visitor_sketches \
                         WHERE link_id = ? AND granularity = ?",
                        (link, tag),
                    )
                    .await
                    .unwrap();
                conn.disconnect().await.unwrap();
                rows.unwrap()
            }
        })
        .await;
        drop(b);
        db.cleanup().await;
    }

    /// An hour still open that an older version wrote (its visitors as an `h` part and a `d`
    /// part at once) and this version goes on writing (as `u` parts): every reader counts
    /// each visitor once, and so does the fold once the hour has ended.
    #[tokio::test]
    async fn sqlite_an_open_hour_written_in_the_old_layout_counts_once() {
        use linkgate_common::clicks::TrendingClock;
        use linkgate_common::clicks::batch::build_batch;
        use linkgate_common::clicks::sketch::VisitorSketch;
        use linkgate_common::domain::{Granularity, LinkId, StoredClick, Timestamp};

        let db = TestDb::sqlite().await;
        let url = db.url();
        let conn = rusqlite::Connection::open(url.strip_prefix("sqlite://").unwrap()).unwrap();
        let hour = Timestamp::now().hour_start();
        let day = hour.day_start();
        let old = VisitorSketch::from_visitors([1, 2, 3]).to_bytes();
        for (tag, bucket) in [("h", hour), ("d", day)] {
            conn.execute(
                "INSERT INTO visitor_sketches VALUES (7, ?1, ?2, 11, ?3)",
                rusqlite::params![tag, bucket.as_millis(), old],
            )
            .unwrap();
        }
        let store = db.store();
        let clicks: Vec<StoredClick> = [3, 4]
            .map(|visitor| StoredClick {
                visitor,
                ..linkgate_common::testing::stored_click(LinkId(7), hour)
            })
            .to_vec();
        let batch = build_batch(clicks, &TrendingClock::new(Timestamp::MILLIS_PER_HOUR));
        store.write_click_batch(&batch).await.unwrap();
        let open: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM visitor_sketches WHERE link_id = 7 AND granularity = 'u'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(open, 1, "the new visitors are an open-hour part");
        let (hour_end, day_end) = (
            hour.plus_millis(Timestamp::MILLIS_PER_HOUR),
            day.plus_millis(Timestamp::MILLIS_PER_DAY),
        );
        let link = LinkId(7);
        assert_eq!(store.unique_visitors(link, hour, hour_end).await, Ok(4));
        assert_eq!(store.unique_visitors(link, day, day_end).await, Ok(4));
        assert_eq!(
            store
                .unique_visitors(link, day.plus_millis(-Timestamp::MILLIS_PER_DAY), day_end)
                .await,
            Ok(4)
        );
        assert_eq!(
            store
                .visitor_series(link, day, day_end, Granularity::Hour)
                .await,
            Ok(vec![(hour, 4)])
        );
        assert_eq!(
            store
                .visitor_series(link, day, day_end, Granularity::Day)
                .await,
            Ok(vec![(day, 4)])
        );
        assert_eq!(
            store
                .visitor_series(link, day, hour_end, Granularity::Day)
                .await,
            Ok(vec![(day, 4)]),
            "a day that starts in the range counts whole"
        );
        assert_eq!(
            store.visitor_buckets(link, &[hour, hour_end]).await,
            Ok(vec![4])
        );
        drop(conn);
        db.cleanup().await;
    }

    /// A version-5 sketch (one row per key, no parts) is still counted after version 6, and
    /// new windows add to it.
    #[tokio::test]
    async fn sqlite_visitor_sketches_of_version_5_are_kept_as_parts() {
        use linkgate_common::clicks::TrendingClock;
        use linkgate_common::clicks::batch::build_batch;
        use linkgate_common::clicks::sketch::VisitorSketch;
        use linkgate_common::domain::{LinkId, Timestamp};
        use linkgate_common::store::{ClickStore as _, sqlite::SqliteStore};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v5.db");
        let hour = Timestamp::parse_rfc3339("2026-11-20T08:00:00Z").unwrap();
        {
            let conn = sqlite_at_version(&path, 5);
            let old = VisitorSketch::from_visitors([1, 2, 3]).to_bytes();
            conn.execute(
                "INSERT INTO visitor_sketches VALUES (5, 'h', ?1, ?2)",
                rusqlite::params![hour.as_millis(), old],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, 2).unwrap();
        assert_eq!(store.migrate().await, Ok(LATEST_SCHEMA_VERSION));
        let end = hour.plus_millis(Timestamp::MILLIS_PER_HOUR);
        assert_eq!(store.unique_visitors(LinkId(5), hour, end).await, Ok(3));
        let clicks = [3, 4]
            .map(|visitor| linkgate_common::domain::StoredClick {
                visitor,
                ..linkgate_common::testing::stored_click(LinkId(5), hour)
            })
            .to_vec();
        let batch = build_batch(clicks, &TrendingClock::new(Timestamp::MILLIS_PER_HOUR));
        store.write_click_batch(&batch).await.unwrap();
        assert_eq!(store.unique_visitors(LinkId(5), hour, end).await, Ok(4));
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
