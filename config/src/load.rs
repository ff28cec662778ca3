//! Layering: defaults, then an optional TOML file, then `LINKGATE__SECTION__KEY` variables.
//!
//! Every problem is collected and reported in one message rather than stopping at the first:
//! unknown keys (found with `serde_ignored`), values of the wrong type (found one at a time
//! with `serde_path_to_error`, removed, and deserialisation retried), then semantic checks.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::settings::Settings;
use crate::validate::validate;

/// Prefix of environment variables that override settings: `LINKGATE__STORE__URL`.
pub const ENV_PREFIX: &str = "LINKGATE__";
/// Environment variable naming the configuration file when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "LINKGATE_CONFIG";
/// Exit status for an invalid configuration (`EX_USAGE` in `sysexits.h`).
pub const EXIT_INVALID_CONFIG: i32 = 64;

/// Key names whose values must never appear in an error message.
const SECRET_KEYS: &[&str] = &["url", "jwt_secret", "bootstrap_admin_password"];

/// Why settings could not be loaded. `Display` lists every problem, one per line.
#[derive(Debug)]
pub enum ConfigError {
    /// The configuration file could not be read.
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// One or more settings are invalid.
    Invalid(Vec<String>),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, error } => {
                write!(
                    f,
                    "cannot read configuration file {}: {error}",
                    path.display()
                )
            }
            Self::Invalid(problems) => {
                write!(f, "invalid configuration ({} problem", problems.len())?;
                if problems.len() != 1 {
                    f.write_str("s")?;
                }
                f.write_str("):")?;
                for problem in problems {
                    write!(f, "\n  - {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// Loads settings from `file` (or the file named by `LINKGATE_CONFIG`) and the process
    /// environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let from_env = std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from);
        let file = file.map(Path::to_path_buf).or(from_env);
        Self::load_from(file.as_deref(), std::env::vars())
    }

    /// Loads settings from an optional file and the given variables (tests pass their own).
    pub fn load_from(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut tree = Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                path: path.to_path_buf(),
                error,
            })?;
            match text.parse::<Table>() {
                Ok(table) => tree = table,
                Err(error) => problems.push(format!("{}: {error}", path.display())),
            }
        }

        let defaults = Table::try_from(Settings::default()).expect("defaults serialise to TOML");
        let mut origins = HashMap::new();
        let mut vars: Vec<_> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (name, value) in vars {
            apply_env(
                &mut tree,
                &defaults,
                &name,
                &value,
                &mut origins,
                &mut problems,
            );
        }

        let settings = deserialize_collecting(tree, &origins, &mut problems);
        problems.extend(validate(&settings));
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// Writes one environment variable into the tree, typed like the default at the same place:
/// an integer default takes an integer, a list takes a TOML array or a comma-separated list,
/// anything else (strings, optional values) takes the text as it is.
fn apply_env(
    tree: &mut Table,
    defaults: &Table,
    name: &str,
    raw: &str,
    origins: &mut HashMap<String, String>,
    problems: &mut Vec<String>,
) {
    let rest = &name[ENV_PREFIX.len()..];
    let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if path.len() != 2 || path.iter().any(String::is_empty) {
        problems.push(format!(
            "{name}: expected {ENV_PREFIX}SECTION__KEY (e.g. {ENV_PREFIX}STORE__URL)"
        ));
        return;
    }
    let default = defaults
        .get(&path[0])
        .and_then(Value::as_table)
        .and_then(|section| section.get(&path[1]));
    let value = match default {
        Some(Value::Integer(_)) => match raw.trim().parse::<i64>() {
            Ok(n) => Value::Integer(n),
            Err(_) => {
                problems.push(format!("{name}: expected a whole number, got {raw:?}"));
                return;
            }
        },
        Some(Value::Boolean(_)) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Value::Boolean(true),
            "false" | "0" | "no" | "off" => Value::Boolean(false),
            _ => {
                problems.push(format!("{name}: expected true or false, got {raw:?}"));
                return;
            }
        },
        Some(Value::Array(_)) => match parse_list(raw) {
            Some(list) => list,
            None => {
                problems.push(format!(
                    "{name}: expected a comma-separated list or a TOML array"
                ));
                return;
            }
        },
        _ => Value::String(raw.to_owned()),
    };
    let section = tree
        .entry(path[0].clone())
        .or_insert_with(|| Value::Table(Table::new()));
    if let Value::Table(section) = section {
        section.insert(path[1].clone(), value);
        origins.insert(path.join("."), name.to_owned());
    } else {
        problems.push(format!(
            "{name}: [{}] in the file is not a section",
            path[0]
        ));
    }
}

fn parse_list(raw: &str) -> Option<Value> {
    let trimmed = raw.trim();
    if trimmed.starts_with('[') {
        let table: Table = format!("v = {trimmed}").parse().ok()?;
        return table.get("v").cloned();
    }
    Some(Value::Array(
        trimmed
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_owned()))
            .collect(),
    ))
}

/// Deserialises the tree into settings, recording every unknown key and every ill-typed
/// value. An ill-typed value is reported, removed (so its default applies) and deserialisation
/// is retried, so one run finds them all.
fn deserialize_collecting(
    mut tree: Table,
    origins: &HashMap<String, String>,
    problems: &mut Vec<String>,
) -> Settings {
    let mut reported_unknown: Vec<String> = Vec::new();
    // Each pass removes one bad key, so the loop ends; the bound guards against a key that
    // cannot be removed.
    for _ in 0..256 {
        let mut unknown = Vec::new();
        let result = {
            let de = Value::Table(tree.clone());
            let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
            let de = serde_ignored::Deserializer::new(de, &mut record);
            serde_path_to_error::deserialize::<_, Settings>(de)
        };
        for key in unknown {
            if !reported_unknown.contains(&key) {
                let origin = origins
                    .get(&key)
                    .map(|var| format!(" (from {var})"))
                    .unwrap_or_default();
                problems.push(format!("{key}{origin}: unknown setting"));
                reported_unknown.push(key);
            }
        }
        match result {
            Ok(settings) => return settings,
            Err(error) => {
                let path = error.path().to_string();
                let segments: Vec<&str> = path.split('.').collect();
                let origin = origins
                    .get(&path)
                    .map(|var| format!(" (from {var})"))
                    .unwrap_or_default();
                let message = if segments.last().is_some_and(|k| SECRET_KEYS.contains(k)) {
                    "invalid value (not shown: it may be secret)".to_owned()
                } else {
                    // The TOML error repeats the path on a second line; we already print it.
                    let full = error.inner().to_string();
                    full.lines().next().unwrap_or_default().to_owned()
                };
                problems.push(format!("{path}{origin}: {message}"));
                if !remove_path(&mut tree, &segments) {
                    break;
                }
            }
        }
    }
    Settings::default()
}

fn remove_path(tree: &mut Table, segments: &[&str]) -> bool {
    match segments {
        [] => false,
        [key] => tree.remove(*key).is_some(),
        [head, rest @ ..] => match tree.get_mut(*head) {
            Some(Value::Table(inner)) => remove_path(inner, rest) || tree.remove(*head).is_some(),
            // A section given as a plain value: drop it whole.
            Some(_) => tree.remove(*head).is_some(),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::settings::StoreKind;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn problems(result: Result<Settings, ConfigError>) -> Vec<String> {
        match result {
            Err(ConfigError::Invalid(problems)) => problems,
            other => panic!("expected invalid configuration, got {other:?}"),
        }
    }

    #[test]
    fn defaults_need_no_file_and_no_service() {
        let settings = Settings::load_from(None, env(&[])).expect("defaults are valid");
        assert_eq!(
            settings.store.kind(),
            Some(StoreKind::Sqlite("data/linkgate.db".into()))
        );
        assert!(settings.redis.url.is_none());
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "[store]\nurl = \"sqlite:///tmp/a.db\"\n[clicks]\nqueue_capacity = 2048"
        )
        .unwrap();
        let settings = Settings::load_from(
            Some(file.path()),
            env(&[
                ("LINKGATE__STORE__URL", "mysql://u:p@127.0.0.1:3306/lg"),
                ("LINKGATE__CLICKS__STORE_RAW_IP", "true"),
                (
                    "LINKGATE__PROXY__TRUSTED_PROXIES",
                    "10.0.0.0/8, 192.168.0.0/16",
                ),
                ("UNRELATED", "x"),
            ]),
        )
        .expect("valid");
        assert_eq!(settings.store.kind(), Some(StoreKind::Mysql));
        assert_eq!(settings.clicks.queue_capacity, 2048);
        assert!(settings.clicks.store_raw_ip);
        assert_eq!(settings.proxy.trusted_proxies.len(), 2);
    }

    #[test]
    fn an_optional_secret_can_be_set_from_the_environment() {
        let settings = Settings::load_from(
            None,
            env(&[(
                "LINKGATE__AUTH__JWT_SECRET",
                "0123456789abcdef0123456789abcdef",
            )]),
        )
        .expect("valid");
        assert_eq!(
            settings.auth.jwt_secret.as_ref().map(crate::Secret::expose),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert!(!format!("{settings:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn every_invalid_key_is_reported_in_one_message() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "[proxy]\nlisten = \"not an address\"\nbogus = 1\n[links]\ncode_length = 3\n[cache]\nl1_ttl_secs = \"soon\""
        )
        .unwrap();
        let found = problems(Settings::load_from(
            Some(file.path()),
            env(&[
                ("LINKGATE__CLICKS__QUEUE_CAPACITY", "lots"),
                ("LINKGATE__STORE__URL", "postgres://x"),
                ("LINKGATE__NOSECTION", "1"),
            ]),
        ));
        let all = found.join("\n");
        for needle in [
            "proxy.listen",
            "proxy.bogus: unknown setting",
            "links.code_length",
            "cache.l1_ttl_secs",
            "LINKGATE__CLICKS__QUEUE_CAPACITY",
            "store.url",
            "LINKGATE__NOSECTION",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        assert_eq!(found.len(), 7, "{all}");
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_not_echoed() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "[auth]\njwt_secret = 123456789987654321").unwrap();
        let all = problems(Settings::load_from(Some(file.path()), env(&[]))).join("\n");
        assert!(all.contains("auth.jwt_secret"), "{all}");
        assert!(!all.contains("123456789987654321"), "{all}");
    }

    #[test]
    fn a_database_password_is_not_echoed_by_validation() {
        let all = problems(Settings::load_from(
            None,
            env(&[("LINKGATE__STORE__URL", "mysql://u:sup3rs3cret@[::1")]),
        ))
        .join("\n");
        assert!(all.contains("store.url"), "{all}");
        assert!(!all.contains("sup3rs3cret"), "{all}");
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let err = Settings::load_from(Some(Path::new("/nonexistent/linkgate.toml")), env(&[]))
            .unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }

    #[test]
    fn a_file_that_is_not_toml_is_reported() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "[proxy\nlisten=").unwrap();
        let all = problems(Settings::load_from(Some(file.path()), env(&[]))).join("\n");
        assert!(all.contains(&file.path().display().to_string()), "{all}");
    }
}
