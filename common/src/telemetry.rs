//! Logging set-up shared by the binaries: `tracing` with a filter from the settings
//! (overridden by `RUST_LOG`), human-readable or JSON lines.

use linkgate_config::LogSettings;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), so
/// tests that start services in-process can call it freely.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let result = if settings.json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // Err means a subscriber is already installed: keep it.
    drop(result);
}
