//! The proxy over real sockets: on SQLite without Redis, and on MariaDB with Redis.

#![allow(
    unreachable_pub,
    reason = "test functions are pub for the instantiating macro"
)]

mod behaviour;
mod clicks;
mod end_to_end;
mod helpers;
mod invalidation;
mod lifecycle;
mod limits;
mod resilience;

use linkgate_config::Settings;

use crate::helpers::Env;

/// The two set-ups every behaviour test runs in.
#[derive(Debug, Clone, Copy)]
pub enum Setup {
    /// Embedded SQLite, no Redis: the default a new user gets.
    Sqlite,
    /// MariaDB with Redis as L2 and the invalidation channel.
    MysqlRedis,
}

impl Setup {
    pub fn env(self) -> Env {
        match self {
            Self::Sqlite => Env::sqlite(),
            Self::MysqlRedis => Env::mysql(),
        }
    }

    /// Applies the set-up to proxy settings (Redis with a key prefix of its own).
    pub fn configure(self, settings: &mut Settings) {
        if let Self::MysqlRedis = self {
            settings.redis.url = Some(linkgate_config::SecretUrl::new(
                linkgate_common::testing::redis_url(),
            ));
            settings.redis.key_prefix = linkgate_common::testing::redis_prefix();
            settings.redis.timeout_ms = 50;
        }
    }
}

/// Instantiates `module::name(setup)` as `sqlite::name` and `mysql_redis::name`.
macro_rules! both {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { crate::$module::$name(crate::Setup::Sqlite) } )*
        }
        mod mysql_redis {
            $( #[test] fn $name() { crate::$module::$name(crate::Setup::MysqlRedis) } )*
        }
    };
}

both!(
    behaviour::a_link_redirects_and_the_second_request_is_an_l1_hit,
    behaviour::an_unknown_code_is_a_404_page_and_is_cached_negatively,
    behaviour::expired_links_are_gone_or_go_to_their_fallback,
    behaviour::max_clicks_is_exact_under_concurrent_load,
    behaviour::a_password_link_shows_a_form_and_redirects_after_the_right_password,
    behaviour::the_query_string_is_forwarded_when_the_link_asks,
    behaviour::head_gets_the_headers_without_a_body,
    behaviour::disabled_and_banned_links_show_a_notice,
    behaviour::hostile_paths_never_reach_a_header,
    invalidation::an_edit_is_served_within_one_second,
    invalidation::creating_a_code_clears_its_negative_entry,
    invalidation::a_ban_is_served_within_one_second,
    clicks::redirects_become_persisted_clicks,
    end_to_end::created_in_admin_redirected_by_proxy_counted_in_analytics,
    limits::code_enumeration_is_limited_per_address_with_retry_after,
    limits::a_spoofed_forwarded_for_changes_neither_the_limit_key_nor_the_visitor,
    limits::bad_networks_can_be_refused_at_the_edge,
);
