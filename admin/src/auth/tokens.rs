//! Opaque secrets handed to clients: refresh tokens and API keys. Only a BLAKE2s-256 digest
//! is stored, so a database leak reveals no usable token. Both carry a short type prefix so
//! a leaked one is easy to recognise (and to scan for in repositories).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use blake2::{Blake2s256, Digest as _};
use linkgate_common::domain::TokenHash;
use rand::RngExt as _;

/// Prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "lgr_";
/// Prefix of API keys.
pub const API_KEY_PREFIX: &str = "lgk_";
/// Characters of an API key shown in listings so a user can tell keys apart.
const SHOWN_PREFIX_CHARS: usize = 12;
/// Longest token we bother hashing; anything longer cannot be ours.
const MAX_TOKEN_LEN: usize = 128;

/// 32 random bytes as URL-safe base64 behind `prefix` (256 bits: unguessable).
fn fresh(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored digest of a token.
pub fn digest(token: &str) -> TokenHash {
    Blake2s256::digest(token.as_bytes()).into()
}

/// A new refresh token and its digest.
pub fn new_refresh_token() -> (String, TokenHash) {
    let token = fresh(REFRESH_PREFIX);
    let hash = digest(&token);
    (token, hash)
}

/// A new API key, its digest and the part shown in listings.
pub fn new_api_key() -> (String, TokenHash, String) {
    let key = fresh(API_KEY_PREFIX);
    let hash = digest(&key);
    let shown = key.chars().take(SHOWN_PREFIX_CHARS).collect();
    (key, hash, shown)
}

/// True when `token` is shaped like one of ours with `prefix` (checked before hashing so
/// junk is refused cheaply).
pub fn looks_like(token: &str, prefix: &str) -> bool {
    token.len() <= MAX_TOKEN_LEN
        && token.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_prefixed_and_hashed_stably() {
        let (a, ha) = new_refresh_token();
        let (b, hb) = new_refresh_token();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(digest(&a), ha);
        assert!(looks_like(&a, REFRESH_PREFIX));
        assert!(!looks_like(&a, API_KEY_PREFIX));
        let (key, hash, shown) = new_api_key();
        assert!(key.starts_with(&shown) && shown.starts_with(API_KEY_PREFIX));
        assert_eq!(digest(&key), hash);
        assert!(!looks_like("lgk_has space", API_KEY_PREFIX));
        assert!(!looks_like("lgk_", API_KEY_PREFIX));
    }
}
