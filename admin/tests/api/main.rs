//! The admin API over real sockets: on SQLite without Redis, and on MariaDB with Redis.

#![allow(
    unreachable_pub,
    reason = "test functions are pub for the instantiating macro"
)]

mod analytics;
mod auth;
mod helpers;
mod jwt;
mod links;
mod moderation;
mod ops;

use linkgate_common::testing::TestDb;
use linkgate_config::Settings;

/// The two set-ups every API test runs in.
#[derive(Debug, Clone, Copy)]
pub enum Setup {
    /// Embedded SQLite, no Redis: the default a new user gets.
    Sqlite,
    /// MariaDB, with Redis for invalidation messages and shared rate limits.
    MysqlRedis,
}

impl Setup {
    pub async fn db(self) -> TestDb {
        match self {
            Self::Sqlite => TestDb::sqlite().await,
            Self::MysqlRedis => TestDb::mysql().await,
        }
    }

    pub fn configure(self, settings: &mut Settings) {
        if let Self::MysqlRedis = self {
            settings.redis.url = Some(linkgate_config::SecretUrl::new(
                linkgate_common::testing::redis_url(),
            ));
            settings.redis.key_prefix = linkgate_common::testing::redis_prefix();
        }
    }
}

/// Instantiates `module::name(setup)` as `sqlite::name` and `mysql_redis::name`.
macro_rules! both {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { crate::$module::$name(crate::Setup::Sqlite).await } )*
        }
        mod mysql_redis {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { crate::$module::$name(crate::Setup::MysqlRedis).await } )*
        }
    };
}

both!(
    auth::signup_login_me_and_logout,
    auth::refresh_tokens_rotate_and_reuse_revokes_the_family,
    auth::bad_credentials_and_bad_input_are_4xx_problems,
    auth::api_keys_are_shown_once_and_work_until_revoked,
    auth::login_is_rate_limited_per_address,
    links::a_link_is_created_read_listed_edited_and_deleted,
    links::invalid_and_refused_links_say_why,
    links::bulk_create_reports_each_item,
    links::qr_codes_come_as_svg_and_png,
    links::csv_export_imports_elsewhere,
    links::other_users_links_are_404_on_every_route,
    links::creation_is_rate_limited_per_user,
    links::every_mutation_is_in_the_change_log,
    analytics::analytics_are_served_from_aggregates,
    analytics::trending_ranks_by_decayed_clicks,
    ops::health_readiness_metrics_and_errors,
    moderation::bans_and_blocklist_are_admin_only_and_audited,
    moderation::the_review_queue_shows_evidence_and_confirm_adjusts_aggregates,
);
