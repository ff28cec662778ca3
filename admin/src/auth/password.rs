//! Account passwords: argon2id (m = 19456 KiB, t = 2, p = 1, the OWASP minimum) computed on
//! the blocking pool, at most a few at a time so a login flood queues instead of taking
//! every core and ~19 MiB per attempt. A login for an unknown user verifies against a dummy
//! hash with the same parameters, so its cost (and timing) equals a known user's.

use std::sync::Arc;
use std::time::Duration;

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
};
use rand::RngExt as _;
use tokio::sync::Semaphore;

use crate::problem::ApiError;

/// Shortest and longest accepted password, in bytes (argon2 has no 72-byte cut like bcrypt).
pub const MIN_PASSWORD_BYTES: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 128;
/// A hash that waits longer than this for a slot is refused with 503 (overload, not a hang).
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// Hashes and verifies passwords off the request threads.
pub struct Hasher {
    slots: Arc<Semaphore>,
    /// A hash of a random password, verified when the user does not exist.
    dummy: String,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &[u8]) -> Result<String, ApiError> {
    let salt: [u8; 16] = rand::rng().random();
    argon2()
        .hash_password_with_salt(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("argon2: {e}")))
}

/// Checks the length rules (8-128 bytes).
pub fn check_password_rules(password: &str) -> Result<(), ApiError> {
    if password.len() < MIN_PASSWORD_BYTES || password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(
            "password",
            format!("must be {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes long"),
        ));
    }
    Ok(())
}

impl Hasher {
    /// `concurrency` hashes at a time (the number of cores is a good choice).
    pub fn new(concurrency: usize) -> Self {
        let dummy = hash_blocking(uuid::Uuid::new_v4().as_bytes())
            .unwrap_or_else(|_| String::from("$argon2id$v=19$m=19456,t=2,p=1$invalid"));
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy,
        }
    }

    /// An argon2id PHC string for `password` (rules checked by the caller).
    pub async fn hash(&self, password: &str) -> Result<String, ApiError> {
        let _permit = self.slot().await?;
        let password = password.as_bytes().to_vec();
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| ApiError::Internal(format!("hashing task: {e}")))?
    }

    /// True when `password` matches `hash`; with `hash = None` (unknown user) the dummy is
    /// verified instead and the answer is false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, ApiError> {
        let _permit = self.slot().await?;
        let known = hash.is_some();
        let hash = hash.unwrap_or(&self.dummy).to_owned();
        let password = password.as_bytes().to_vec();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .is_ok_and(|parsed| argon2().verify_password(&password, &parsed).is_ok())
        })
        .await
        .map_err(|e| ApiError::Internal(format!("hashing task: {e}")))?;
        Ok(known && ok)
    }

    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(QUEUE_TIMEOUT, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::Unavailable(
                "too many password checks in progress",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = Hasher::new(2);
        let hash = hasher.hash("correct horse").await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(hasher.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("correct horsf", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("correct horse", None).await.unwrap());
    }

    #[tokio::test]
    async fn an_unknown_user_costs_as_much_as_a_known_one() {
        let hasher = Hasher::new(1);
        let hash = hasher.hash("password1").await.unwrap();
        let t = std::time::Instant::now();
        for _ in 0..3 {
            hasher.verify("wrong-pass", Some(&hash)).await.unwrap();
        }
        let known = t.elapsed();
        let t = std::time::Instant::now();
        for _ in 0..3 {
            hasher.verify("wrong-pass", None).await.unwrap();
        }
        let unknown = t.elapsed();
        let ratio = unknown.as_secs_f64() / known.as_secs_f64();
        assert!(
            (0.5..2.0).contains(&ratio),
            "known {known:?} unknown {unknown:?}"
        );
    }

    #[test]
    fn passwords_must_be_8_to_128_bytes() {
        assert!(check_password_rules("1234567").is_err());
        assert!(check_password_rules("12345678").is_ok());
        assert!(check_password_rules(&"x".repeat(128)).is_ok());
        assert!(check_password_rules(&"x".repeat(129)).is_err());
    }
}
