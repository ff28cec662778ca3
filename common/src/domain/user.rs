//! Users, their refresh-token families and API keys, and the audit log.

use serde::Serialize;

use super::ids::{ApiKeyId, UserId};
use super::timestamp::Timestamp;

/// A normalised e-mail address (trimmed, lower-case), used as the login name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid e-mail address")]
pub struct EmailError;

impl Email {
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let s = input.trim().to_lowercase();
        let valid = s.len() <= 254
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && matches!(s.split_once('@'), Some((local, domain))
                if !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.'));
        if valid { Ok(Self(s)) } else { Err(EmailError) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    /// Argon2id PHC string. Never serialised.
    #[serde(skip)]
    pub password_hash: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub email: Email,
    pub password_hash: String,
    pub role: Role,
}

/// A 32-byte digest of a token; tokens themselves are never stored.
pub type TokenHash = [u8; 32];

/// A refresh token as stored: its hash, the family it belongs to, and whether it was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub token_hash: TokenHash,
    pub user_id: UserId,
    /// All tokens descending from one login share a family; reuse revokes the whole family.
    pub family: [u8; 16],
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
    /// Set when the token was exchanged for its successor.
    pub rotated_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// The result of presenting a refresh token for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was current: it is now spent and `next` replaces it.
    Rotated { user_id: UserId },
    /// The token had already been rotated: a thief or a replay. The family is now revoked.
    Reused { user_id: UserId },
    /// Unknown, expired or revoked.
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub name: String,
    /// The first characters of the key, shown so a user can tell keys apart.
    pub prefix: String,
    #[serde(skip)]
    pub key_hash: TokenHash,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub user_id: UserId,
    pub name: String,
    pub prefix: String,
    pub key_hash: TokenHash,
}

/// One administrative action: who did what to what, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub actor_id: Option<UserId>,
    /// A short verb such as `link.ban` or `domain.block`.
    pub action: String,
    /// What it was done to, e.g. `link:42` or `domain:evil.example`.
    pub subject: String,
    pub reason: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub actor_id: Option<UserId>,
    pub action: String,
    pub subject: String,
    pub reason: Option<String>,
}

/// A blocklisted target domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockedDomain {
    pub domain: String,
    pub reason: Option<String>,
    pub created_by: Option<UserId>,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_junk_is_refused() {
        assert_eq!(
            Email::parse("  Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "ann@@example.com",
            "ann@example.com.",
            "ann@.example.com",
            "a\r\n@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_round_trip_through_text() {
        for role in [Role::User, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
