//! `CachedLink`: what the redirect path needs of a link, compact enough to hold a million.

use std::sync::Arc;

use http::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::domain::{Link, LinkId, LinkState, RedirectStatus, TargetUrl, Timestamp};

/// The redirect-relevant part of a link, small enough to hold a million in memory: settings
/// most links do not use live behind one optional box. Targets are re-validated whenever one
/// is built from outside data (the store or Redis), so a `Location` header can only come
/// from a `TargetUrl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedLink {
    pub id: LinkId,
    target: TargetUrl,
    pub redirect_status: Option<RedirectStatus>,
    pub forward_query: bool,
    pub state: LinkState,
    pub deleted: bool,
    pub extra: Option<Box<LinkExtras>>,
}

/// The settings of a link that most links leave unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkExtras {
    pub password_hash: Option<Box<str>>,
    pub expires_at: Option<Timestamp>,
    pub max_clicks: Option<u64>,
    /// Clicks persisted when this copy was loaded: where a max-clicks budget starts.
    pub clicks: u64,
    pub fallback_url: Option<TargetUrl>,
}

impl LinkExtras {
    fn is_unused(&self) -> bool {
        self.password_hash.is_none()
            && self.expires_at.is_none()
            && self.max_clicks.is_none()
            && self.fallback_url.is_none()
    }
}

impl From<&Link> for CachedLink {
    fn from(l: &Link) -> Self {
        let extra = LinkExtras {
            password_hash: l.password_hash.as_deref().map(Box::from),
            expires_at: l.expires_at,
            max_clicks: l.max_clicks,
            clicks: l.clicks,
            fallback_url: l.fallback_url.clone(),
        };
        Self {
            id: l.id,
            target: l.target.clone(),
            redirect_status: l.redirect_status,
            forward_query: l.forward_query,
            state: l.state,
            deleted: l.deleted_at.is_some(),
            extra: (!extra.is_unused()).then(|| Box::new(extra)),
        }
    }
}

impl CachedLink {
    /// A plain active link (tests and tools build on it).
    pub fn new(id: LinkId, target: TargetUrl) -> Self {
        Self {
            id,
            target,
            redirect_status: None,
            forward_query: false,
            state: LinkState::Active,
            deleted: false,
            extra: None,
        }
    }

    pub fn target(&self) -> &TargetUrl {
        &self.target
    }

    /// The target as a `Location` header value, a copy of its text made for each redirect.
    /// A value kept here and cloned would bring its reference count and its buffer, two
    /// allocations of their own, into every redirect: cache lines apart from the link's,
    /// which a redirect read from memory on every hit of a large hot set (the copy reads
    /// the target's one). Without it the link in its `Arc` is 64 bytes, one cache line.
    pub fn location(&self) -> HeaderValue {
        self.target.header_value()
    }

    /// The extras, created on first use.
    pub fn extras_mut(&mut self) -> &mut LinkExtras {
        self.extra.get_or_insert_with(Box::default)
    }

    pub fn password_hash(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.password_hash.as_deref())
    }

    pub fn expires_at(&self) -> Option<Timestamp> {
        self.extra.as_ref().and_then(|e| e.expires_at)
    }

    pub fn max_clicks(&self) -> Option<u64> {
        self.extra.as_ref().and_then(|e| e.max_clicks)
    }

    pub fn clicks(&self) -> u64 {
        self.extra.as_ref().map_or(0, |e| e.clicks)
    }

    pub fn fallback_url(&self) -> Option<&TargetUrl> {
        self.extra.as_ref().and_then(|e| e.fallback_url.as_ref())
    }

    /// Approximate bytes held, for the L1 weigher: the struct in its `Arc` and its heap
    /// strings (L1 adds its own slot and bucket bookkeeping).
    pub fn weight(&self) -> usize {
        /// The `Arc`'s reference counts.
        const ARC_HEADER: usize = 16;
        std::mem::size_of::<Self>()
            + self.target.as_str().len()
            + self.extra.as_ref().map_or(0, |e| {
                std::mem::size_of::<LinkExtras>()
                    + e.password_hash.as_ref().map_or(0, |h| h.len())
                    + e.fallback_url.as_ref().map_or(0, |u| u.as_str().len())
            })
            + ARC_HEADER
    }

    /// The Redis form.
    pub(crate) fn to_wire(&self) -> Wire {
        Wire {
            id: self.id.0,
            target: self.target.as_str().to_owned(),
            status: self.redirect_status.map(RedirectStatus::code),
            forward_query: self.forward_query,
            password_hash: self.password_hash().map(str::to_owned),
            expires_at: self.expires_at().map(Timestamp::as_millis),
            max_clicks: self.max_clicks(),
            clicks: self.clicks(),
            fallback_url: self.fallback_url().map(|u| u.as_str().to_owned()),
            state: self.state.as_str().to_owned(),
            deleted: self.deleted,
        }
    }

    /// Parses and re-validates the Redis form; `None` if anything is off (then the store is
    /// asked instead).
    pub(crate) fn from_wire(w: Wire) -> Option<Arc<Self>> {
        let extra = LinkExtras {
            password_hash: w.password_hash.map(Box::from),
            expires_at: w.expires_at.map(Timestamp::from_millis),
            max_clicks: w.max_clicks,
            clicks: w.clicks,
            fallback_url: match w.fallback_url {
                Some(u) => Some(TargetUrl::from_stored(&u).ok()?),
                None => None,
            },
        };
        let target = TargetUrl::from_stored(&w.target).ok()?;
        Some(Arc::new(Self {
            id: LinkId(w.id),
            target,
            redirect_status: match w.status {
                Some(code) => Some(RedirectStatus::from_code(code)?),
                None => None,
            },
            forward_query: w.forward_query,
            state: LinkState::parse(&w.state)?,
            deleted: w.deleted,
            extra: (!extra.is_unused()).then(|| Box::new(extra)),
        }))
    }
}

/// JSON stored in Redis under the link's key.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Wire {
    id: i64,
    target: String,
    status: Option<u16>,
    forward_query: bool,
    password_hash: Option<String>,
    expires_at: Option<i64>,
    max_clicks: Option<u64>,
    clicks: u64,
    fallback_url: Option<String>,
    state: String,
    deleted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TargetPolicy;

    fn sample() -> CachedLink {
        let mut link = CachedLink::new(
            LinkId(7),
            TargetUrl::parse("https://example.com/x", &TargetPolicy::default()).unwrap(),
        );
        link.redirect_status = Some(RedirectStatus::TemporaryRedirect);
        link.forward_query = true;
        let extra = link.extras_mut();
        extra.password_hash = Some("$argon2id$x".into());
        extra.expires_at = Some(Timestamp::from_millis(5));
        extra.max_clicks = Some(3);
        extra.clicks = 1;
        link
    }

    #[test]
    fn a_plain_link_carries_no_extras() {
        let plain = CachedLink::new(
            LinkId(1),
            TargetUrl::parse("https://example.com/", &TargetPolicy::default()).unwrap(),
        );
        assert!(plain.extra.is_none());
        // 48 bytes: with the `Arc`'s counts, one 64-byte cache line (see `location`). L1's
        // buckets do not hold it (only the target's bytes).
        assert!(
            std::mem::size_of::<CachedLink>() <= 48,
            "{}",
            std::mem::size_of::<CachedLink>()
        );
        let wire = serde_json::to_string(&plain.to_wire()).unwrap();
        let back = CachedLink::from_wire(serde_json::from_str(&wire).unwrap()).unwrap();
        assert!(back.extra.is_none());
    }

    #[test]
    fn the_wire_form_round_trips() {
        let link = sample();
        let json = serde_json::to_string(&link.to_wire()).unwrap();
        let back = CachedLink::from_wire(serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(*back, link);
    }

    #[test]
    fn a_tampered_wire_target_is_refused() {
        let mut wire = sample().to_wire();
        wire.target = "javascript:alert(1)".into();
        assert!(CachedLink::from_wire(wire).is_none());
        let mut wire = sample().to_wire();
        wire.status = Some(200);
        assert!(CachedLink::from_wire(wire).is_none());
    }
}
