//! Password-protected links: attempts are rate-limited per client address
//! (`common::ratelimit`, this node's count) and each password is checked by
//! `common::password` (argon2 on the blocking pool, a few at a time), so neither a flood of
//! guesses nor the hashing cost reaches the redirect threads.

use std::net::IpAddr;

use linkgate_common::password::PasswordHasher;
use linkgate_common::ratelimit::{Limiter, Verdict, retry_after_secs};

/// Longest password accepted (as the admin service enforces when setting one).
pub const MAX_PASSWORD_BYTES: usize = 128;
/// Concurrent argon2 verifications (each takes ~20 MiB and tens of ms of one core).
const CONCURRENT_VERIFICATIONS: usize = 2;

pub struct PasswordGate {
    /// Attempts per client address, counted on this node.
    limiter: Limiter<IpAddr>,
    hasher: PasswordHasher,
}

impl std::fmt::Debug for PasswordGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordGate").finish_non_exhaustive()
    }
}

/// The outcome of a password submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Correct,
    Wrong,
    /// Too many attempts from this address; retry after this many seconds.
    Limited {
        retry_after_secs: u64,
    },
}

impl PasswordGate {
    pub fn new(per_minute: u32) -> Self {
        Self {
            limiter: Limiter::new("password", per_minute, None),
            hasher: PasswordHasher::new(CONCURRENT_VERIFICATIONS),
        }
    }

    /// Checks `password` against the PHC `hash` for a client at `ip`.
    pub async fn check(&self, ip: IpAddr, password: &str, hash: &str) -> Attempt {
        if let Verdict::Limited { retry_after } = self.limiter.check_local(&ip) {
            return Attempt::Limited {
                retry_after_secs: retry_after_secs(retry_after),
            };
        }
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
            return Attempt::Wrong;
        }
        // A busy hasher or a failed task counts as a wrong password: never a redirect.
        if self.hasher.verify(password, Some(hash)).await == Ok(true) {
            Attempt::Correct
        } else {
            Attempt::Wrong
        }
    }

    /// Drops limiter state for addresses that are back to a full allowance.
    pub fn housekeeping(&self) {
        self.limiter.housekeeping();
    }
}

/// Extracts the `password` field of an `application/x-www-form-urlencoded` body.
pub fn password_from_form(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use argon2::PasswordHasher as _;

    use super::*;

    fn hash(pw: &str) -> String {
        argon2::Argon2::default()
            .hash_password_with_salt(pw.as_bytes(), b"saltsaltsaltsalt")
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn the_right_password_passes_and_a_wrong_one_does_not() {
        let gate = PasswordGate::new(10);
        let h = hash("open sesame");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(gate.check(ip, "open sesame", &h).await, Attempt::Correct);
        assert_eq!(gate.check(ip, "open sesame!", &h).await, Attempt::Wrong);
        assert_eq!(gate.check(ip, "", &h).await, Attempt::Wrong);
        assert_eq!(
            gate.check(ip, "x", "not a phc string").await,
            Attempt::Wrong
        );
    }

    #[tokio::test]
    async fn guesses_beyond_the_limit_are_refused_with_a_retry_time() {
        let gate = PasswordGate::new(3);
        let h = hash("pw");
        let ip: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(gate.check(ip, "guess", &h).await, Attempt::Wrong);
        }
        assert!(
            matches!(gate.check(ip, "pw", &h).await, Attempt::Limited { retry_after_secs } if retry_after_secs >= 1)
        );
        let other: IpAddr = "192.0.2.3".parse().unwrap();
        assert_eq!(
            gate.check(other, "pw", &h).await,
            Attempt::Correct,
            "limits are per address"
        );
    }

    #[test]
    fn the_password_is_read_from_a_form_body() {
        assert_eq!(
            password_from_form(b"password=a%20b%26c&x=1").as_deref(),
            Some("a b&c")
        );
        assert_eq!(password_from_form(b"x=1"), None);
    }
}
