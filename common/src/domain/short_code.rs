//! `ShortCode`: the path segment that names a link.

use std::fmt;

use rand::RngExt as _;

/// Shortest and longest custom code.
pub const MIN_CUSTOM_CODE_LEN: usize = 3;
pub const MAX_CODE_LEN: usize = 64;
/// Default length of generated codes: 62^7 = 3.5e12 possibilities, so live codes cannot be
/// found by guessing at any rate the enumeration limit allows.
pub const DEFAULT_GENERATED_LEN: usize = 7;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Paths the service itself answers (or may one day); a code must not shadow them. Compared
/// case-insensitively, so `/API` cannot be taken either.
pub const RESERVED_CODES: &[&str] = &[
    "about",
    "account",
    "admin",
    "api",
    "app",
    "assets",
    "auth",
    "bulk",
    "dashboard",
    "docs",
    "export",
    "favicon",
    "health",
    "healthz",
    "help",
    "import",
    "livez",
    "login",
    "logout",
    "me",
    "metrics",
    "openapi",
    "public",
    "qr",
    "readyz",
    "register",
    "robots",
    "settings",
    "signin",
    "signup",
    "static",
    "status",
    "support",
    "ui",
    "well-known",
    "www",
];

/// A short code: case-sensitive, `[A-Za-z0-9_-]`, not a reserved word.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShortCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShortCodeError {
    #[error("a custom code must be {MIN_CUSTOM_CODE_LEN} to {MAX_CODE_LEN} characters long")]
    Length,
    #[error("a code may contain only letters A-Z and a-z, digits, '_' and '-'")]
    Characters,
    #[error("{0:?} is reserved")]
    Reserved(String),
}

impl ShortCode {
    /// Validates a custom code chosen by a user.
    pub fn parse(input: &str) -> Result<Self, ShortCodeError> {
        if !(MIN_CUSTOM_CODE_LEN..=MAX_CODE_LEN).contains(&input.len()) {
            return Err(ShortCodeError::Length);
        }
        Self::parse_any_length(input)
    }

    /// Validates a code from a request path or the store: the same character rules, any
    /// length up to the maximum (generated codes are never shorter than custom ones, but old
    /// links may predate a configuration change).
    pub fn parse_any_length(input: &str) -> Result<Self, ShortCodeError> {
        if input.is_empty() || input.len() > MAX_CODE_LEN {
            return Err(ShortCodeError::Length);
        }
        if !input.bytes().all(is_code_byte) {
            return Err(ShortCodeError::Characters);
        }
        if is_reserved(input) {
            return Err(ShortCodeError::Reserved(input.to_owned()));
        }
        Ok(Self(input.to_owned()))
    }

    /// A fresh code of `len` base62 characters from the thread-local CSPRNG (`ChaCha`, seeded
    /// from the OS). Collisions are handled by the caller retrying the insert.
    pub fn generate(len: usize) -> Self {
        let len = len.clamp(1, MAX_CODE_LEN);
        let mut rng = rand::rng();
        loop {
            let code: String = (0..len)
                .map(|_| char::from(BASE62[rng.random_range(0..BASE62.len())]))
                .collect();
            // A 7-character draw could spell "healthz"; astronomically rare, but never shadow.
            if !is_reserved(&code) {
                return Self(code);
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// True when `input` names one of the service's own paths.
pub fn is_reserved(input: &str) -> bool {
    RESERVED_CODES.iter().any(|r| r.eq_ignore_ascii_case(input))
}

/// Whether `b` may appear in a code: letters, digits, `_` and `-`.
pub(crate) const fn is_code_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

impl fmt::Display for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShortCode({:?})", self.0)
    }
}

impl serde::Serialize for ShortCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn custom_codes_of_valid_characters_are_accepted() {
        for code in ["abc", "My-Link_2025", "a-b", "___", &"x".repeat(64)] {
            assert_eq!(ShortCode::parse(code).unwrap().as_str(), code);
        }
    }

    #[test]
    fn codes_are_case_sensitive() {
        assert_ne!(
            ShortCode::parse("Abc").unwrap(),
            ShortCode::parse("abc").unwrap()
        );
    }

    #[test]
    fn a_custom_code_outside_the_length_bounds_is_rejected() {
        assert_eq!(ShortCode::parse("ab"), Err(ShortCodeError::Length));
        assert_eq!(ShortCode::parse(""), Err(ShortCodeError::Length));
        assert_eq!(
            ShortCode::parse(&"x".repeat(65)),
            Err(ShortCodeError::Length)
        );
    }

    #[test]
    fn characters_outside_the_alphabet_are_rejected() {
        for code in [
            "a b", "a/b", "a.b", "a%20", "ab\r\n", "ab\0", "émoji", "a+b", "../x", "ab?", "a#b",
            "café", "аbc",
        ] {
            assert_eq!(
                ShortCode::parse(code),
                Err(ShortCodeError::Characters),
                "{code:?}"
            );
        }
    }

    #[test]
    fn reserved_words_are_rejected_in_any_case() {
        for code in [
            "api", "API", "healthz", "ReadyZ", "metrics", "static", "assets", "admin", "login",
        ] {
            assert!(
                matches!(ShortCode::parse(code), Err(ShortCodeError::Reserved(_))),
                "{code}"
            );
        }
    }

    #[test]
    fn generated_codes_are_base62_of_the_requested_length_and_do_not_repeat() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let code = ShortCode::generate(DEFAULT_GENERATED_LEN);
            assert_eq!(code.as_str().len(), 7);
            assert!(code.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(seen.insert(code));
        }
        assert_eq!(ShortCode::generate(12).as_str().len(), 12);
    }

    #[test]
    fn generated_codes_use_the_whole_alphabet() {
        let mut seen = HashSet::new();
        for _ in 0..2_000 {
            seen.extend(ShortCode::generate(7).as_str().bytes());
        }
        assert_eq!(seen.len(), 62);
    }

    proptest! {
        #[test]
        fn any_accepted_code_round_trips(input in "[A-Za-z0-9_-]{3,64}") {
            match ShortCode::parse(&input) {
                Ok(code) => prop_assert_eq!(code.as_str(), input.as_str()),
                Err(e) => prop_assert!(matches!(e, ShortCodeError::Reserved(_))),
            }
        }
    }
}
