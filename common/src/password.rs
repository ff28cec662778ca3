//! Password hashing shared by both services: argon2id (m = 19456 KiB, t = 2, p = 1, the
//! OWASP minimum) on the blocking pool, at most a few at a time, so a flood of logins or
//! link-password guesses queues instead of taking every core and ~19 MiB per attempt.
//! Verifying for an unknown user checks a dummy hash with the same parameters, so its cost
//! (and timing) equals a known user's.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
};
use rand::RngExt as _;
use tokio::sync::Semaphore;

/// A hash that waits longer than this for a slot is refused (overload, not a hang).
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no answer could be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("too many password checks in progress")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Hashes and verifies passwords off the request threads.
pub struct PasswordHasher {
    slots: Arc<Semaphore>,
    /// A hash of a random password, made on the first unknown-user check (a service that
    /// never checks one, like the proxy, never pays for it).
    dummy: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &[u8]) -> Result<String, HashError> {
    let salt: [u8; 16] = rand::rng().random();
    argon2()
        .hash_password_with_salt(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Failed(e.to_string()))
}

fn verify_blocking(password: &[u8], hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| argon2().verify_password(password, &parsed).is_ok())
}

impl PasswordHasher {
    /// `concurrency` hashes at a time (the number of cores is a good choice).
    pub fn new(concurrency: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: Arc::new(OnceLock::new()),
        }
    }

    /// An argon2id PHC string for `password` (length rules are the caller's).
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let _permit = self.slot().await?;
        let password = password.as_bytes().to_vec();
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| HashError::Failed(e.to_string()))?
    }

    /// True when `password` matches `hash`; with `hash = None` (unknown user) the dummy is
    /// verified instead and the answer is false. A stored value that is not a PHC string
    /// never matches.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, HashError> {
        let _permit = self.slot().await?;
        let known = hash.map(str::to_owned);
        let dummy = Arc::clone(&self.dummy);
        let password = password.as_bytes().to_vec();
        tokio::task::spawn_blocking(move || match known {
            Some(hash) => verify_blocking(&password, &hash),
            None => {
                let dummy = dummy.get_or_init(|| {
                    hash_blocking(uuid::Uuid::new_v4().as_bytes())
                        .unwrap_or_else(|_| "$argon2id$v=19$m=19456,t=2,p=1$invalid".to_owned())
                });
                verify_blocking(&password, dummy);
                false
            }
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))
    }

    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, HashError> {
        match tokio::time::timeout(QUEUE_TIMEOUT, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(HashError::Busy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = PasswordHasher::new(2);
        let hash = hasher.hash("correct horse").await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(hasher.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("correct horsf", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("correct horse", None).await.unwrap());
        assert!(!hasher.verify("x", Some("not a phc string")).await.unwrap());
    }

    #[tokio::test]
    async fn an_unknown_user_costs_as_much_as_a_known_one() {
        let hasher = PasswordHasher::new(1);
        let hash = hasher.hash("password1").await.unwrap();
        // The first unknown-user check makes the dummy; time the ones after it.
        hasher.verify("warm-up", None).await.unwrap();
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
}
