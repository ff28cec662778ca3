//! `Link` and the values it is made of.

use serde::Serialize;

use super::ids::{LinkId, UserId};
use super::short_code::ShortCode;
use super::target_url::TargetUrl;
use super::timestamp::Timestamp;

/// The HTTP status a link redirects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "u16")]
pub enum RedirectStatus {
    /// 301: permanent; browsers cache it, so later edits may not reach returning visitors.
    MovedPermanently,
    /// 302: temporary, the usual choice for a shortener (every click reaches us).
    Found,
    /// 307: temporary, method and body preserved.
    TemporaryRedirect,
    /// 308: permanent, method and body preserved.
    PermanentRedirect,
}

impl RedirectStatus {
    pub fn from_code(code: u16) -> Option<Self> {
        match code {
            301 => Some(Self::MovedPermanently),
            302 => Some(Self::Found),
            307 => Some(Self::TemporaryRedirect),
            308 => Some(Self::PermanentRedirect),
            _ => None,
        }
    }

    pub fn code(self) -> u16 {
        match self {
            Self::MovedPermanently => 301,
            Self::Found => 302,
            Self::TemporaryRedirect => 307,
            Self::PermanentRedirect => 308,
        }
    }
}

impl From<RedirectStatus> for u16 {
    fn from(s: RedirectStatus) -> u16 {
        s.code()
    }
}

/// Whether a link redirects. Deletion is separate (`deleted_at`): a deleted link is gone for
/// its owner and the proxy, but its row stays for analytics and the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    Active,
    /// Switched off by its owner.
    Disabled,
    /// Switched off by an administrator (fraud, abuse); the owner cannot switch it back on.
    Banned,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Banned => "banned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            "banned" => Some(Self::Banned),
            _ => None,
        }
    }
}

/// The host a link lives on (`sho.rt`, `go.example.com:8080`), lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct LinkDomain(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid host name")]
pub struct LinkDomainError(pub String);

impl LinkDomain {
    /// Parses a host with an optional port, as found in a `Host` header or the configuration.
    pub fn parse(input: &str) -> Result<Self, LinkDomainError> {
        let lower = input.trim_end_matches('.').to_ascii_lowercase();
        if linkgate_config::is_host_and_port(&lower) {
            Ok(Self(lower))
        } else {
            Err(LinkDomainError(input.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tag: 1-32 characters of lower-case letters, digits, `-`, `_`, `.` and `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Tag(String);

pub const MAX_TAGS_PER_LINK: usize = 16;
pub const MAX_TITLE_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkFieldError {
    #[error("a tag must be 1-32 characters of a-z, 0-9, '-', '_', '.' or ':'")]
    Tag,
    #[error("a link may have at most {MAX_TAGS_PER_LINK} tags")]
    TooManyTags,
    #[error("a title must be at most {MAX_TITLE_CHARS} characters without control characters")]
    Title,
    #[error("max_clicks must be at least 1")]
    MaxClicks,
    #[error("the redirect status must be 301, 302, 307 or 308")]
    RedirectStatus,
}

impl Tag {
    /// Tags are case-folded so `Promo` and `promo` are one tag.
    pub fn parse(input: &str) -> Result<Self, LinkFieldError> {
        let lower = input.trim().to_ascii_lowercase();
        let ok = (1..=32).contains(&lower.len())
            && lower
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.:".contains(&b));
        if ok {
            Ok(Self(lower))
        } else {
            Err(LinkFieldError::Tag)
        }
    }

    /// Parses, de-duplicates and sorts a list of tags.
    pub fn parse_list<S: AsRef<str>>(inputs: &[S]) -> Result<Vec<Self>, LinkFieldError> {
        let mut tags = inputs
            .iter()
            .map(|s| Self::parse(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        tags.sort();
        tags.dedup();
        if tags.len() > MAX_TAGS_PER_LINK {
            return Err(LinkFieldError::TooManyTags);
        }
        Ok(tags)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Validates a title: trimmed, at most 200 characters, no control characters.
pub fn parse_title(input: &str) -> Result<String, LinkFieldError> {
    let title = input.trim();
    if title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
        return Err(LinkFieldError::Title);
    }
    Ok(title.to_owned())
}

/// A stored link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub id: LinkId,
    pub owner_id: UserId,
    pub domain: LinkDomain,
    pub code: ShortCode,
    pub target: TargetUrl,
    pub title: Option<String>,
    pub tags: Vec<Tag>,
    /// `None` means the service default.
    pub redirect_status: Option<RedirectStatus>,
    /// Append the incoming query string to the target.
    pub forward_query: bool,
    /// Argon2 PHC string when the link is password-protected. Never serialised.
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub max_clicks: Option<u64>,
    /// Where expired or exhausted links send visitors instead of a 410.
    pub fallback_url: Option<TargetUrl>,
    pub state: LinkState,
    /// Redirects counted so far (maintained by the click pipeline).
    pub clicks: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
}

impl Link {
    pub fn is_password_protected(&self) -> bool {
        self.password_hash.is_some()
    }
}

/// Everything needed to insert a link; the store assigns id, timestamps and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLink {
    pub owner_id: UserId,
    pub domain: LinkDomain,
    pub code: ShortCode,
    pub target: TargetUrl,
    pub title: Option<String>,
    pub tags: Vec<Tag>,
    pub redirect_status: Option<RedirectStatus>,
    pub forward_query: bool,
    pub password_hash: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub max_clicks: Option<u64>,
    pub fallback_url: Option<TargetUrl>,
}

impl NewLink {
    /// A plain link: no expiry, no limit, default status.
    pub fn new(owner_id: UserId, domain: LinkDomain, code: ShortCode, target: TargetUrl) -> Self {
        Self {
            owner_id,
            domain,
            code,
            target,
            title: None,
            tags: Vec::new(),
            redirect_status: None,
            forward_query: false,
            password_hash: None,
            expires_at: None,
            max_clicks: None,
            fallback_url: None,
        }
    }
}

/// A partial update. The outer `Option` says whether a field changes; for nullable fields the
/// inner `Option` is the new value (`Some(None)` clears it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkPatch {
    pub target: Option<TargetUrl>,
    pub title: Option<Option<String>>,
    pub tags: Option<Vec<Tag>>,
    pub redirect_status: Option<Option<RedirectStatus>>,
    pub forward_query: Option<bool>,
    pub password_hash: Option<Option<String>>,
    pub expires_at: Option<Option<Timestamp>>,
    pub max_clicks: Option<Option<u64>>,
    pub fallback_url: Option<Option<TargetUrl>>,
    /// The new state. It never lifts a ban unless `lift_ban` is set: an owner switching a
    /// link on while an administrator bans it leaves it banned, whichever commits first.
    pub state: Option<LinkState>,
    /// Set only by the administrators' unban action.
    pub lift_ban: bool,
}

impl LinkPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What happened to a link, as recorded in `link_changes` for invalidation and history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
    Banned,
    Unbanned,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
            Self::Banned => "banned",
            Self::Unbanned => "unbanned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "created" => Some(Self::Created),
            "updated" => Some(Self::Updated),
            "deleted" => Some(Self::Deleted),
            "banned" => Some(Self::Banned),
            "unbanned" => Some(Self::Unbanned),
            _ => None,
        }
    }
}

/// One row of the change log: proxies poll these to drop stale cache entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkChange {
    /// Monotonic position in the log; pollers remember the last one they saw.
    pub seq: i64,
    pub link_id: LinkId,
    pub domain: LinkDomain,
    pub code: ShortCode,
    pub kind: ChangeKind,
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_statuses_are_the_four_redirect_codes() {
        for code in [301, 302, 307, 308] {
            assert_eq!(
                RedirectStatus::from_code(code).map(RedirectStatus::code),
                Some(code)
            );
        }
        for code in [200, 300, 303, 304, 399, 0] {
            assert_eq!(RedirectStatus::from_code(code), None);
        }
    }

    #[test]
    fn domains_are_lower_cased_and_validated() {
        assert_eq!(LinkDomain::parse("Sho.RT").unwrap().as_str(), "sho.rt");
        assert_eq!(
            LinkDomain::parse("localhost:8080").unwrap().as_str(),
            "localhost:8080"
        );
        assert_eq!(LinkDomain::parse("sho.rt.").unwrap().as_str(), "sho.rt");
        for bad in [
            "",
            "a b",
            "x:99999",
            "x:0",
            "evil.com/\r\n",
            "a..b",
            "ex_ample.com",
        ] {
            assert!(LinkDomain::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tags_are_folded_deduplicated_and_bounded() {
        let tags = Tag::parse_list(&["Promo", "promo", "q4:2026"]).unwrap();
        assert_eq!(
            tags.iter().map(Tag::as_str).collect::<Vec<_>>(),
            ["promo", "q4:2026"]
        );
        assert_eq!(Tag::parse("has space"), Err(LinkFieldError::Tag));
        assert_eq!(Tag::parse(""), Err(LinkFieldError::Tag));
        assert_eq!(Tag::parse(&"x".repeat(33)), Err(LinkFieldError::Tag));
        let many: Vec<String> = (0..17).map(|i| format!("t{i}")).collect();
        assert_eq!(Tag::parse_list(&many), Err(LinkFieldError::TooManyTags));
    }

    #[test]
    fn titles_refuse_control_characters_and_excess_length() {
        assert_eq!(parse_title("  Launch page ").unwrap(), "Launch page");
        assert_eq!(parse_title("a\r\nb"), Err(LinkFieldError::Title));
        assert!(parse_title(&"é".repeat(200)).is_ok());
        assert_eq!(parse_title(&"é".repeat(201)), Err(LinkFieldError::Title));
    }

    #[test]
    fn an_empty_patch_is_recognised() {
        assert!(LinkPatch::default().is_empty());
        let patch = LinkPatch {
            forward_query: Some(true),
            ..LinkPatch::default()
        };
        assert!(!patch.is_empty());
    }
}
