//! Access tokens: HS256 JWTs with a `kid` header so keys can be rotated.
//!
//! Verification pins the algorithm (a token claiming any other `alg`, `none` included, is
//! refused before its signature is looked at), picks the key by `kid` (an unknown `kid` is
//! refused), and requires `iss`, `aud`, `sub`, `exp`, `nbf` and `jti`, with at most the
//! configured leeway (<= 5 s) for clock skew.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use linkgate_common::domain::{Role, UserId};
use linkgate_config::AuthSettings;
use serde::{Deserialize, Serialize};

/// The claims linkgate puts in (and requires of) an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id, as a decimal string (JWT `sub` is a string).
    pub sub: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    /// A unique token id (a v4 UUID), so every token is distinct and can be traced.
    pub jti: String,
    pub role: String,
}

/// Who an access token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSubject {
    pub user_id: UserId,
    pub role: Role,
}

/// Signing and verification keys.
pub struct JwtKeys {
    /// `kid` of the key new tokens are signed with.
    current_kid: String,
    encoding: EncodingKey,
    /// Every key a token may be verified with, by `kid` (the current one and at most one
    /// being retired).
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("current_kid", &self.current_kid)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// Keys from the settings; `secret` is the current key (from the settings or the
    /// generated key file).
    pub fn new(settings: &AuthSettings, secret: &[u8]) -> Self {
        let mut decoding = HashMap::new();
        decoding.insert(
            settings.jwt_key_id.clone(),
            DecodingKey::from_secret(secret),
        );
        if let (Some(kid), Some(old)) =
            (&settings.jwt_previous_key_id, &settings.jwt_previous_secret)
        {
            decoding.insert(
                kid.clone(),
                DecodingKey::from_secret(old.expose().as_bytes()),
            );
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&settings.jwt_issuer]);
        validation.set_audience(&[&settings.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = settings.leeway_secs.min(5);
        Self {
            current_kid: settings.jwt_key_id.clone(),
            encoding: EncodingKey::from_secret(secret),
            decoding,
            validation,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            ttl_secs: settings.access_ttl_secs,
        }
    }

    /// Lifetime of new access tokens.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// A fresh access token for `subject`.
    pub fn issue(&self, subject: TokenSubject) -> Result<String, jsonwebtoken::errors::Error> {
        let now = unix_now();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.user_id.0.to_string(),
            exp: now + self.ttl_secs,
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            role: subject.role.as_str().to_owned(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current_kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
    }

    /// Verifies a token; `None` for anything not issued by us and still valid.
    pub fn verify(&self, token: &str) -> Option<TokenSubject> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::HS256 {
            return None;
        }
        let key = self.decoding.get(header.kid.as_deref()?)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).ok()?;
        let claims = data.claims;
        if claims.jti.is_empty() {
            return None;
        }
        Some(TokenSubject {
            user_id: UserId(claims.sub.parse().ok()?),
            role: Role::parse(&claims.role)?,
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&AuthSettings::default(), &[7u8; 32])
    }

    #[test]
    fn an_issued_token_verifies_and_names_its_subject() {
        let keys = keys();
        let subject = TokenSubject {
            user_id: UserId(42),
            role: Role::Admin,
        };
        let token = keys.issue(subject).unwrap();
        assert_eq!(keys.verify(&token), Some(subject));
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let other = JwtKeys::new(&AuthSettings::default(), &[8u8; 32]);
        let token = other
            .issue(TokenSubject {
                user_id: UserId(1),
                role: Role::User,
            })
            .unwrap();
        assert_eq!(keys().verify(&token), None);
    }

    #[test]
    fn a_retired_key_still_verifies_by_its_kid() {
        let old_settings = AuthSettings {
            jwt_key_id: "k0".to_owned(),
            ..AuthSettings::default()
        };
        let old = JwtKeys::new(&old_settings, &[9u8; 32]);
        let token = old
            .issue(TokenSubject {
                user_id: UserId(5),
                role: Role::User,
            })
            .unwrap();
        let settings = AuthSettings {
            jwt_previous_key_id: Some("k0".to_owned()),
            jwt_previous_secret: Some(linkgate_config::Secret::new(
                String::from_utf8(vec![9u8; 32]).unwrap(),
            )),
            ..AuthSettings::default()
        };
        let rotated = JwtKeys::new(&settings, &[7u8; 32]);
        assert!(rotated.verify(&token).is_some());
        assert_eq!(keys().verify(&token), None, "unknown kid");
    }
}
