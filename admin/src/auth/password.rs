//! Account password rules. Hashing and verification are `linkgate_common::password`
//! (argon2id on the blocking pool, shared with the proxy's link passwords).

use linkgate_common::password::HashError;

use crate::problem::ApiError;

/// Shortest and longest accepted password, in bytes (argon2 has no 72-byte cut like bcrypt).
pub const MIN_PASSWORD_BYTES: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 128;

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

impl From<HashError> for ApiError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy => Self::Unavailable("too many password checks in progress"),
            HashError::Failed(cause) => Self::Internal(format!("password hashing: {cause}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_must_be_8_to_128_bytes() {
        assert!(check_password_rules("1234567").is_err());
        assert!(check_password_rules("12345678").is_ok());
        assert!(check_password_rules(&"x".repeat(128)).is_ok());
        assert!(check_password_rules(&"x".repeat(129)).is_err());
    }
}
