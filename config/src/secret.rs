//! A string that never prints.
//!
//! Secrets (JWT keys, hashing keys, database passwords inside URLs) are wrapped at the moment
//! they are read so that `Debug`, `Display` and log lines can only ever show a placeholder.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret value; read it with [`Secret::expose`] at the single place that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call this only where the value is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// Serialising writes the placeholder, so a dumped configuration cannot leak the value.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[REDACTED]")
    }
}

/// A URL that may carry a password (`mysql://user:pass@host/db`): it prints with the password
/// replaced, and hands out the full text only through [`SecretUrl::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`: safe for logs and error messages.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut parsed) if parsed.password().is_some() => {
                // Only fails for URLs that cannot have a password, which this one just had.
                let _ = parsed.set_password(Some("***"));
                parsed.to_string()
            }
            Ok(parsed) => parsed.to_string(),
            // Unparseable: show the scheme only, the rest may hold anything.
            Err(_) => match self.0.split_once("://") {
                Some((scheme, _)) => format!("{scheme}://***"),
                None => "***".to_owned(),
            },
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretUrl)
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_appears_in_debug_or_display() {
        let s = Secret::new("hunter2-very-secret");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn a_url_password_is_redacted_but_the_rest_is_kept() {
        let u = SecretUrl::new("mysql://linkgate:pa55word@127.0.0.1:3306/linkgate");
        let shown = format!("{u:?} {u}");
        assert!(!shown.contains("pa55word"), "{shown}");
        assert!(shown.contains("127.0.0.1:3306/linkgate"));
        assert_eq!(
            u.expose(),
            "mysql://linkgate:pa55word@127.0.0.1:3306/linkgate"
        );
    }

    #[test]
    fn an_unparseable_url_shows_only_its_scheme() {
        let u = SecretUrl::new("mysql://us er:secret@@[bad");
        assert_eq!(u.redacted(), "mysql://***");
    }
}
