//! What both binaries do with `--config` and `--check-config`.

use std::path::Path;

use crate::load::EXIT_INVALID_CONFIG;
use crate::settings::Settings;

/// Loads settings for a binary. On failure prints every problem to stderr and returns the
/// exit status to use (64). With `check_only`, prints a confirmation and returns 0 on success
/// too, so the caller exits either way.
pub fn load_or_exit_code(file: Option<&Path>, check_only: bool) -> Result<Settings, i32> {
    match Settings::load(file) {
        Ok(settings) if check_only => {
            // The summary names the backend and never a secret (SecretUrl redacts itself).
            println!(
                "configuration is valid (store: {}, redis: {})",
                settings.store.url,
                settings
                    .redis
                    .url
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), ToString::to_string)
            );
            Err(0)
        }
        Ok(settings) => Ok(settings),
        Err(error) => {
            eprintln!("{error}");
            Err(EXIT_INVALID_CONFIG)
        }
    }
}
