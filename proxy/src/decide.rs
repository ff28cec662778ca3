//! The redirect decision: a pure function of the link, the request and the clock, so every
//! rule is unit-tested without sockets. The Pingora shell only translates its result.

use http::HeaderValue;
use linkgate_common::cache::{CachedLink, HotLink};
use linkgate_common::domain::{
    LinkState, RedirectStatus, TargetUrl, Timestamp, has_encoded_control,
};

/// Longest `Location` we send (target plus forwarded query).
pub const MAX_LOCATION_BYTES: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other,
}

/// What the request contributes to the decision.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: Method,
    /// The raw query string (without `?`), if any.
    pub query: Option<&'a str>,
    pub now: Timestamp,
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Redirect (subject to the click budget when `limited`).
    Redirect {
        status: u16,
        location: HeaderValue,
        limited: bool,
    },
    /// Expired or out of clicks: a 410 page, or a redirect to the link's fallback URL.
    Gone {
        fallback: Option<HeaderValue>,
    },
    /// Disabled by its owner or banned by an administrator: 410 with a notice.
    Unavailable {
        banned: bool,
    },
    /// Password-protected: show the form (GET/HEAD) or check the submitted password (POST).
    PasswordRequired,
    NotFound,
    MethodNotAllowed,
    /// The query to forward is not plain URL text.
    BadQuery,
    /// Target plus forwarded query would exceed [`MAX_LOCATION_BYTES`].
    TooLong,
}

/// Decides how to answer a request for `link` (`None`: no such code).
pub fn decide(link: Option<&HotLink>, req: &RequestFacts<'_>, default: RedirectStatus) -> Decision {
    let Some(link) = link.filter(|l| !l.deleted) else {
        return Decision::NotFound;
    };
    match req.method {
        Method::Get | Method::Head => {}
        Method::Post if link.password_hash().is_some() => {}
        Method::Post | Method::Other => return Decision::MethodNotAllowed,
    }
    match link.state {
        LinkState::Banned => return Decision::Unavailable { banned: true },
        LinkState::Disabled => return Decision::Unavailable { banned: false },
        LinkState::Active => {}
    }
    let expired = link.expires_at().is_some_and(|at| at <= req.now);
    let exhausted = link.max_clicks().is_some_and(|max| link.clicks() >= max);
    if expired || exhausted {
        return gone(link);
    }
    if link.password_hash().is_some() {
        return Decision::PasswordRequired;
    }
    redirect(link, req.query, default)
}

/// The redirect for a link whose checks have passed (also used after a correct password).
pub fn redirect(link: &HotLink, query: Option<&str>, default: RedirectStatus) -> Decision {
    let status = link.redirect_status.unwrap_or(default).code();
    let location = match query.filter(|q| link.forward_query && !q.is_empty()) {
        // The usual redirect: the link's target as it is.
        None => link.location(),
        Some(q) => {
            let target = link.target().as_str();
            if !q.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'#') || has_encoded_control(q)
            {
                return Decision::BadQuery;
            }
            // The query goes before any fragment; joined with '&' if the target has one.
            let (base, fragment) = match target.split_once('#') {
                Some((b, f)) => (b, Some(f)),
                None => (target, None),
            };
            let joiner = if base.contains('?') { '&' } else { '?' };
            let mut out = String::with_capacity(target.len() + q.len() + 2);
            out.push_str(base);
            out.push(joiner);
            out.push_str(q);
            if let Some(f) = fragment {
                out.push('#');
                out.push_str(f);
            }
            // Target and query are visible ASCII (checked above), so this cannot fail.
            match HeaderValue::try_from(out) {
                Ok(value) => value,
                Err(_) => return Decision::BadQuery,
            }
        }
    };
    if location.len() > MAX_LOCATION_BYTES {
        return Decision::TooLong;
    }
    Decision::Redirect {
        status,
        location,
        limited: link.max_clicks().is_some(),
    }
}

/// The answer for an expired or exhausted link.
pub fn gone(link: &CachedLink) -> Decision {
    Decision::Gone {
        fallback: link.fallback_url().map(TargetUrl::header_value),
    }
}

#[cfg(test)]
mod tests {
    use linkgate_common::domain::{LinkId, TargetPolicy, TargetUrl};

    use super::*;

    fn link(target: &str) -> CachedLink {
        CachedLink::new(
            LinkId(1),
            TargetUrl::parse(target, &TargetPolicy::default()).unwrap(),
        )
    }

    fn get(query: Option<&str>) -> RequestFacts<'_> {
        RequestFacts {
            method: Method::Get,
            query,
            now: Timestamp::from_millis(1_000_000),
        }
    }

    const FOUND: RedirectStatus = RedirectStatus::Found;

    /// [`super::decide`] for a link as a test builds it.
    fn decide(
        link: Option<&CachedLink>,
        req: &RequestFacts<'_>,
        default: RedirectStatus,
    ) -> Decision {
        super::decide(link.cloned().map(HotLink::from).as_ref(), req, default)
    }

    fn location(d: Decision) -> String {
        match d {
            Decision::Redirect { location, .. } => location.to_str().unwrap().to_owned(),
            other => panic!("expected a redirect, got {other:?}"),
        }
    }

    #[test]
    fn an_active_link_redirects_with_the_default_status() {
        let d = decide(Some(&link("https://example.com/a")), &get(None), FOUND);
        assert_eq!(
            d,
            Decision::Redirect {
                status: 302,
                location: HeaderValue::from_static("https://example.com/a"),
                limited: false
            }
        );
    }

    #[test]
    fn a_link_status_overrides_the_default() {
        let mut l = link("https://example.com/a");
        l.redirect_status = Some(RedirectStatus::PermanentRedirect);
        assert!(matches!(
            decide(Some(&l), &get(None), FOUND),
            Decision::Redirect { status: 308, .. }
        ));
        assert!(matches!(
            decide(
                Some(&link("https://e.com/")),
                &get(None),
                RedirectStatus::MovedPermanently
            ),
            Decision::Redirect { status: 301, .. }
        ));
    }

    #[test]
    fn the_query_is_forwarded_only_when_asked_and_before_the_fragment() {
        let mut l = link("https://example.com/a?x=1#top");
        assert_eq!(
            location(decide(Some(&l), &get(Some("utm=2")), FOUND)),
            "https://example.com/a?x=1#top"
        );
        l.forward_query = true;
        assert_eq!(
            location(decide(Some(&l), &get(Some("utm=2")), FOUND)),
            "https://example.com/a?x=1&utm=2#top"
        );
        let mut plain = link("https://example.com/b");
        plain.forward_query = true;
        assert_eq!(
            location(decide(Some(&plain), &get(Some("q=%20a")), FOUND)),
            "https://example.com/b?q=%20a"
        );
        assert_eq!(
            location(decide(Some(&plain), &get(Some("")), FOUND)),
            "https://example.com/b"
        );
    }

    #[test]
    fn a_query_with_control_characters_or_spaces_is_refused_not_forwarded() {
        let mut l = link("https://example.com/");
        l.forward_query = true;
        for q in [
            "a=\r\nSet-Cookie:x",
            "a b",
            "a=\u{7f}",
            "x#y",
            "é",
            "x=%0d%0aSet-Cookie:y",
            "a=%00",
        ] {
            assert_eq!(
                decide(Some(&l), &get(Some(q)), FOUND),
                Decision::BadQuery,
                "{q:?}"
            );
        }
    }

    #[test]
    fn an_overlong_location_is_refused() {
        let mut l = link("https://example.com/");
        l.forward_query = true;
        let q = "a".repeat(MAX_LOCATION_BYTES);
        assert_eq!(decide(Some(&l), &get(Some(&q)), FOUND), Decision::TooLong);
    }

    #[test]
    fn unknown_and_deleted_links_are_not_found() {
        assert_eq!(decide(None, &get(None), FOUND), Decision::NotFound);
        let mut l = link("https://example.com/");
        l.deleted = true;
        assert_eq!(decide(Some(&l), &get(None), FOUND), Decision::NotFound);
    }

    #[test]
    fn expired_links_are_gone_or_go_to_their_fallback() {
        let mut l = link("https://example.com/");
        l.extras_mut().expires_at = Some(Timestamp::from_millis(1_000_000));
        assert_eq!(
            decide(Some(&l), &get(None), FOUND),
            Decision::Gone { fallback: None }
        );
        l.extras_mut().fallback_url =
            Some(TargetUrl::parse("https://example.com/over", &TargetPolicy::default()).unwrap());
        assert_eq!(
            decide(Some(&l), &get(None), FOUND),
            Decision::Gone {
                fallback: Some(HeaderValue::from_static("https://example.com/over"))
            }
        );
        l.extras_mut().expires_at = Some(Timestamp::from_millis(1_000_001));
        assert!(matches!(
            decide(Some(&l), &get(None), FOUND),
            Decision::Redirect { .. }
        ));
    }

    #[test]
    fn a_spent_click_limit_is_gone_and_a_live_one_is_budgeted() {
        let mut l = link("https://example.com/");
        l.extras_mut().max_clicks = Some(3);
        l.extras_mut().clicks = 2;
        assert!(matches!(
            decide(Some(&l), &get(None), FOUND),
            Decision::Redirect { limited: true, .. }
        ));
        l.extras_mut().clicks = 3;
        assert_eq!(
            decide(Some(&l), &get(None), FOUND),
            Decision::Gone { fallback: None }
        );
    }

    #[test]
    fn disabled_and_banned_links_are_unavailable() {
        let mut l = link("https://example.com/");
        l.state = LinkState::Disabled;
        assert_eq!(
            decide(Some(&l), &get(None), FOUND),
            Decision::Unavailable { banned: false }
        );
        l.state = LinkState::Banned;
        assert_eq!(
            decide(Some(&l), &get(None), FOUND),
            Decision::Unavailable { banned: true }
        );
    }

    #[test]
    fn password_links_ask_for_the_password_and_accept_its_post() {
        let mut l = link("https://example.com/");
        l.extras_mut().password_hash = Some("$argon2id$...".into());
        assert_eq!(
            decide(Some(&l), &get(None), FOUND),
            Decision::PasswordRequired
        );
        let post = RequestFacts {
            method: Method::Post,
            ..get(None)
        };
        assert_eq!(decide(Some(&l), &post, FOUND), Decision::PasswordRequired);
    }

    #[test]
    fn head_is_decided_like_get_and_other_methods_are_refused() {
        let l = link("https://example.com/");
        let head = RequestFacts {
            method: Method::Head,
            ..get(None)
        };
        assert!(matches!(
            decide(Some(&l), &head, FOUND),
            Decision::Redirect { .. }
        ));
        for m in [Method::Post, Method::Other] {
            let req = RequestFacts {
                method: m,
                ..get(None)
            };
            assert_eq!(decide(Some(&l), &req, FOUND), Decision::MethodNotAllowed);
        }
    }
}
