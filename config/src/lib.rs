//! linkgate's settings: one typed model for the proxy and the admin service.
//!
//! Layering is defaults, then an optional TOML file (`--config PATH` or `LINKGATE_CONFIG`),
//! then `LINKGATE__SECTION__KEY` environment variables. Every invalid key is reported in one
//! message; secrets are wrapped so they never print.

mod cli;
mod load;
mod secret;
mod settings;
mod validate;

pub use validate::is_host_and_port;

pub use cli::load_or_exit_code;
pub use load::{CONFIG_FILE_ENV, ConfigError, ENV_PREFIX, EXIT_INVALID_CONFIG};
pub use secret::{Secret, SecretUrl};
pub use settings::{
    AdminSettings, AuthSettings, CacheSettings, ClickSettings, FraudSettings, LimitSettings,
    LinkSettings, LogSettings, ProxySettings, RedisSettings, Settings, StoreKind, StoreSettings,
};
