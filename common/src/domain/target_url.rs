//! `TargetUrl`: the destination of a link, validated once and trusted everywhere after.
//!
//! A `Location` header is only ever built from a `TargetUrl`, so everything that could turn a
//! redirect into an attack is refused here: non-HTTP schemes (`javascript:`, `data:`, any case),
//! credentials, control characters raw or percent-encoded (header splitting), invisible
//! Unicode that disguises a URL, hosts that loop back to us, and over-long URLs.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Longest accepted URL, in bytes after normalisation.
pub const MAX_TARGET_URL_BYTES: usize = 2048;

/// A validated, normalised http(s) URL.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TargetUrl(Box<str>);

/// What else, beyond the structural rules, a target must not be.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    /// The service's own host names (lower-case, no port): targets there would loop.
    pub own_hosts: Vec<String>,
    /// Hosts of other shorteners; a target on one of them or a subdomain is refused.
    pub blocked_shorteners: Vec<String>,
    /// Refuse IP-literal hosts in private, loopback, link-local and similar ranges, and
    /// names such as `localhost` that only resolve locally.
    pub refuse_private: bool,
}

/// Why a target URL was refused. The messages are written for the link's owner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetUrlError {
    #[error("the URL is empty")]
    Empty,
    #[error("the URL is longer than {MAX_TARGET_URL_BYTES} bytes")]
    TooLong,
    #[error("the URL contains a control or invisible formatting character")]
    ControlCharacter,
    #[error("the URL contains a percent-encoded control character")]
    EncodedControlCharacter,
    #[error("the URL could not be parsed: {0}")]
    Malformed(url::ParseError),
    #[error("only http and https URLs can be shortened")]
    SchemeNotAllowed,
    #[error("URLs with a user name or password are not accepted")]
    Credentials,
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL points back at this shortener")]
    OwnDomain,
    #[error("the URL points at a private or local address")]
    PrivateAddress,
    #[error("the URL points at another URL shortener")]
    Shortener,
}

impl TargetUrl {
    /// Validates user input against the structural rules and `policy`.
    pub fn parse(input: &str, policy: &TargetPolicy) -> Result<Self, TargetUrlError> {
        let url = parse_structural(input)?;
        let host = url.host().ok_or(TargetUrlError::NoHost)?;
        match host {
            Host::Domain(name) => {
                let name = name.trim_end_matches('.');
                if policy
                    .own_hosts
                    .iter()
                    .any(|own| own.eq_ignore_ascii_case(name))
                {
                    return Err(TargetUrlError::OwnDomain);
                }
                if policy
                    .blocked_shorteners
                    .iter()
                    .any(|blocked| host_is_or_under(name, blocked))
                {
                    return Err(TargetUrlError::Shortener);
                }
                if policy.refuse_private && is_local_name(name) {
                    return Err(TargetUrlError::PrivateAddress);
                }
            }
            Host::Ipv4(ip) => {
                if policy.own_hosts.iter().any(|own| own == &ip.to_string()) {
                    return Err(TargetUrlError::OwnDomain);
                }
                if policy.refuse_private && !is_public_ip(IpAddr::V4(ip)) {
                    return Err(TargetUrlError::PrivateAddress);
                }
            }
            Host::Ipv6(ip) => {
                if policy.refuse_private && !is_public_ip(IpAddr::V6(ip)) {
                    return Err(TargetUrlError::PrivateAddress);
                }
            }
        }
        Ok(Self(String::from(url).into_boxed_str()))
    }

    /// Re-checks a URL read back from the store with the structural rules only (policy may
    /// have changed since it was written; the link stays, but nothing unsafe reaches a header).
    pub fn from_stored(stored: &str) -> Result<Self, TargetUrlError> {
        parse_structural(stored).map(|url| Self(String::from(url).into_boxed_str()))
    }

    /// A copy of text that was a `TargetUrl`'s (the L1 cache keeps targets as bytes in its
    /// buckets and rebuilds the link from them): nothing else may call this.
    pub(crate) fn copy_of_valid(valid: &str) -> Self {
        Self(Box::from(valid))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL as an HTTP header value (`Location`). Every `TargetUrl` is one: the parser
    /// leaves only ASCII (it percent-encodes or punycodes the rest) and construction refuses
    /// control characters, the only bytes a header value may not hold.
    pub fn header_value(&self) -> http::HeaderValue {
        http::HeaderValue::from_str(&self.0).expect("a TargetUrl is visible ASCII")
    }

    /// The host, lower-case (punycode for IDN hosts).
    pub fn host(&self) -> &str {
        // Validated at construction: an http(s) URL always has an authority.
        let after_scheme = self.0.split_once("://").map_or("", |(_, rest)| rest);
        let authority = after_scheme
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default();
        if let Some(v6) = authority.strip_prefix('[') {
            return v6.split(']').next().unwrap_or_default();
        }
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    }

    pub fn into_string(self) -> String {
        self.0.into_string()
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TargetUrl({:?})", self.0)
    }
}

impl serde::Serialize for TargetUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Scheme, credentials, control characters, length: the rules that hold whatever the policy.
fn parse_structural(input: &str) -> Result<Url, TargetUrlError> {
    // Surrounding spaces are a copy-paste accident; every other whitespace or control
    // character is refused rather than silently stripped (the url crate would drop tabs and
    // newlines, which is exactly how `java\tscript:` tricks get through other validators).
    let input = input.trim_matches(' ');
    if input.is_empty() {
        return Err(TargetUrlError::Empty);
    }
    if input.len() > MAX_TARGET_URL_BYTES * 3 {
        // Cheap early exit before parsing megabytes; the exact check is after normalisation.
        return Err(TargetUrlError::TooLong);
    }
    if input.chars().any(is_forbidden_char) {
        return Err(TargetUrlError::ControlCharacter);
    }
    let url = Url::parse(input).map_err(TargetUrlError::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetUrlError::SchemeNotAllowed);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetUrlError::Credentials);
    }
    match url.host() {
        None => return Err(TargetUrlError::NoHost),
        Some(Host::Domain(d)) if d.trim_end_matches('.').is_empty() => {
            return Err(TargetUrlError::NoHost);
        }
        Some(_) => {}
    }
    if url.as_str().len() > MAX_TARGET_URL_BYTES {
        return Err(TargetUrlError::TooLong);
    }
    if has_encoded_control(url.as_str()) {
        return Err(TargetUrlError::EncodedControlCharacter);
    }
    Ok(url)
}

/// C0/C1 controls, DEL, and the invisible characters used to disguise URLs: zero-width
/// spaces and joiners, bidirectional overrides and isolates, the BOM, and non-ASCII spaces.
fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00A0}'
                | '\u{00AD}'
                | '\u{1680}'
                | '\u{180E}'
                | '\u{2000}'..='\u{200F}'
                | '\u{2028}'..='\u{202F}'
                | '\u{205F}'..='\u{206F}'
                | '\u{3000}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// `%00`-`%1F` and `%7F`: harmless in a Location header, but they are how header-splitting
/// payloads are smuggled to downstream systems that decode them, and no real link needs them.
pub fn has_encoded_control(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.windows(3).any(|w| {
        w[0] == b'%'
            && match (hex(w[1]), hex(w[2])) {
                (Some(hi), Some(lo)) => {
                    let v = hi * 16 + lo;
                    v < 0x20 || v == 0x7f
                }
                _ => false,
            }
    })
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn host_is_or_under(host: &str, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    host.eq_ignore_ascii_case(domain)
        || (host.len() > domain.len()
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain))
}

/// Names that only resolve inside a machine or a private network.
fn is_local_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !lower.contains('.')
        || [
            "localhost",
            "local",
            "internal",
            "localdomain",
            "home.arpa",
            "intranet",
            "lan",
        ]
        .iter()
        .any(|suffix| host_is_or_under(&lower, suffix))
}

/// True for addresses reachable on the public internet.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let seg = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || (seg[0] == 0x0064 && seg[1] == 0xff9b) // NAT64 64:ff9b::/96 embeds IPv4
                || v6 == Ipv6Addr::from([0, 0, 0, 0, 0, 0, 0, 1]))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64.0.0/10
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18.0.0/15
        || a >= 240)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn policy() -> TargetPolicy {
        TargetPolicy {
            own_hosts: vec!["sho.rt".into(), "links.example.com".into()],
            blocked_shorteners: vec!["bit.ly".into(), "tinyurl.com".into()],
            refuse_private: true,
        }
    }

    fn ok(input: &str) -> String {
        match TargetUrl::parse(input, &policy()) {
            Ok(url) => url.into_string(),
            Err(e) => panic!("{input:?} was refused: {e}"),
        }
    }

    fn refused(input: &str) -> TargetUrlError {
        match TargetUrl::parse(input, &policy()) {
            Ok(url) => panic!("{input:?} was accepted as {url}"),
            Err(e) => e,
        }
    }

    #[test]
    fn ordinary_http_and_https_urls_are_accepted_and_normalised() {
        assert_eq!(ok("https://example.com"), "https://example.com/");
        assert_eq!(
            ok("HTTPS://EXAMPLE.com/Path?q=1#frag"),
            "https://example.com/Path?q=1#frag"
        );
        assert_eq!(
            ok("http://example.com:8080/a b"),
            "http://example.com:8080/a%20b"
        );
        assert_eq!(ok("  https://example.com/x  "), "https://example.com/x");
        assert_eq!(ok("https://example.com:443/"), "https://example.com/");
        assert_eq!(ok("https://8.8.8.8/dns"), "https://8.8.8.8/dns");
        assert_eq!(
            ok("https://example.com/%2F%41"),
            "https://example.com/%2F%41"
        );
    }

    #[test]
    fn idn_hosts_are_kept_as_punycode() {
        assert_eq!(
            ok("https://bücher.example/"),
            "https://xn--bcher-kva.example/"
        );
        // Cyrillic "а" in a look-alike of apple.com stays visibly different.
        assert_eq!(ok("https://аpple.com/"), "https://xn--pple-43d.com/");
        assert_eq!(ok("https://пример.рф/"), "https://xn--e1afmkfd.xn--p1ai/");
        assert_eq!(ok("https://EXAMPLE.xn--p1ai/"), "https://example.xn--p1ai/");
        let url = TargetUrl::parse("https://bücher.example/", &policy()).unwrap();
        assert_eq!(url.host(), "xn--bcher-kva.example");
    }

    #[test]
    fn a_javascript_scheme_is_rejected_in_any_case_and_disguise() {
        for input in [
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "JAVASCRIPT:alert(document.cookie)",
            "\tjavascript:alert(1)",
            " javascript:alert(1)",
            "java\tscript:alert(1)",
            "java\nscript:alert(1)",
            "java\rscript:alert(1)",
            "\u{0}javascript:alert(1)",
            "javascript&colon;alert(1)",
            "jav&#x09;ascript:alert(1)",
            "%6aavascript:alert(1)",
            "vbscript:msgbox(1)",
            "data:text/html,<script>alert(1)</script>",
            "DATA:text/html;base64,PHNjcmlwdD4=",
            "file:///etc/passwd",
            "ftp://example.com/file",
            "gopher://example.com/",
            "ws://example.com/",
            "mailto:a@example.com",
            "about:blank",
            "blob:https://example.com/uuid",
            "chrome://settings",
            "//example.com/protocol-relative",
            "/relative/path",
            "example.com",
        ] {
            let err = TargetUrl::parse(input, &policy()).expect_err(input);
            assert!(
                matches!(
                    err,
                    TargetUrlError::SchemeNotAllowed
                        | TargetUrlError::ControlCharacter
                        | TargetUrlError::Malformed(_)
                        | TargetUrlError::NoHost
                ),
                "{input:?}: {err:?}"
            );
        }
        // The WHATWG parser reads `https:example.com` as https://example.com/ (as browsers
        // do): a correct reading, not a bypass.
        assert_eq!(ok("https:example.com"), "https://example.com/");
    }

    #[test]
    fn raw_control_characters_are_rejected_anywhere() {
        for input in [
            "https://example.com/\r\nSet-Cookie: a=b",
            "https://example.com/\nLocation: https://evil.example",
            "https://example.com/\r",
            "https://exa\tmple.com/",
            "https://example.com/\u{0}",
            "https://example.com/\u{7f}",
            "https://example.com/\u{85}",
            "https://example.com/\u{1b}[31m",
            "\thttps://example.com/",
            "https://example.com/\t",
            "\u{200B}https://example.com/",
            "https://example.com/\u{202E}gpj.exe",
            "https://exam\u{200D}ple.com/",
            "https://example.com/\u{FEFF}",
            "https://example.com/\u{2028}",
            "https://example.com/\u{00A0}x",
            "https://example.com/\u{2066}x",
        ] {
            assert_eq!(
                refused(input),
                TargetUrlError::ControlCharacter,
                "{input:?}"
            );
        }
    }

    #[test]
    fn percent_encoded_line_breaks_and_controls_are_rejected() {
        for input in [
            "https://example.com/%0d%0aSet-Cookie:%20a=b",
            "https://example.com/%0D%0ALocation:%20https://evil.example",
            "https://example.com/?next=%0a",
            "https://example.com/#%0d",
            "https://example.com/%00",
            "https://example.com/%7f",
            "https://example.com/%1B",
            "https://example.com/%09tab",
        ] {
            assert_eq!(
                refused(input),
                TargetUrlError::EncodedControlCharacter,
                "{input:?}"
            );
        }
        // An encoded percent sign is data, not a control character.
        assert_eq!(ok("https://example.com/%250d"), "https://example.com/%250d");
    }

    #[test]
    fn credentials_in_the_url_are_rejected() {
        for input in [
            "https://user:pass@example.com/",
            "https://user@example.com/",
            "https://:pass@example.com/",
            "https://example.com@evil.example/",
            "http://admin:admin@192.0.2.1/",
        ] {
            let err = refused(input);
            assert!(
                matches!(
                    err,
                    TargetUrlError::Credentials | TargetUrlError::PrivateAddress
                ),
                "{input:?}: {err:?}"
            );
        }
    }

    #[test]
    fn overlong_urls_are_rejected_after_normalisation() {
        let base = "https://example.com/";
        let fits = format!("{base}{}", "a".repeat(MAX_TARGET_URL_BYTES - base.len()));
        assert_eq!(ok(&fits).len(), MAX_TARGET_URL_BYTES);
        let over = format!(
            "{base}{}",
            "a".repeat(MAX_TARGET_URL_BYTES - base.len() + 1)
        );
        assert_eq!(refused(&over), TargetUrlError::TooLong);
        // Spaces become %20 and triple in size: the limit applies to the normalised form.
        let grows = format!("{base}{}", " x".repeat(700));
        assert_eq!(refused(&grows), TargetUrlError::TooLong);
        assert_eq!(refused(&"x".repeat(10_000)), TargetUrlError::TooLong);
        let long_host = format!("https://{}.com/", "a".repeat(3000));
        assert!(TargetUrl::parse(&long_host, &policy()).is_err());
    }

    #[test]
    fn our_own_domains_are_rejected_to_prevent_loops() {
        for input in [
            "https://sho.rt/abc",
            "http://SHO.RT/abc",
            "https://sho.rt./abc",
            "https://links.example.com:8443/x",
        ] {
            assert_eq!(refused(input), TargetUrlError::OwnDomain, "{input:?}");
        }
        // A sibling domain is someone else's.
        ok("https://notsho.rt/abc");
    }

    #[test]
    fn other_shorteners_are_rejected() {
        assert_eq!(refused("https://bit.ly/abc"), TargetUrlError::Shortener);
        assert_eq!(
            refused("https://www.TinyURL.com/abc"),
            TargetUrlError::Shortener
        );
        ok("https://notbit.ly/abc");
    }

    #[test]
    fn private_and_local_addresses_are_rejected_when_the_policy_says_so() {
        for input in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://localhost/",
            "http://LOCALHOST:8080/",
            "http://foo.localhost/",
            "http://printer.local/",
            "http://db.internal/",
            "http://intranet/",
        ] {
            assert_eq!(refused(input), TargetUrlError::PrivateAddress, "{input:?}");
        }
        let open = TargetPolicy::default();
        assert!(TargetUrl::parse("http://127.0.0.1:9000/", &open).is_ok());
    }

    #[test]
    fn empty_and_hostless_inputs_are_rejected() {
        assert_eq!(refused(""), TargetUrlError::Empty);
        assert_eq!(refused("   "), TargetUrlError::Empty);
        assert!(matches!(refused("https://"), TargetUrlError::Malformed(_)));
        assert!(matches!(
            refused("http://[::1"),
            TargetUrlError::Malformed(_)
        ));
        assert!(matches!(
            refused("https://exa mple.com/"),
            TargetUrlError::Malformed(_)
        ));
        assert!(matches!(
            refused("https://a<b.com/"),
            TargetUrlError::Malformed(_)
        ));
    }

    #[test]
    fn stored_urls_are_rechecked_structurally_but_not_against_policy() {
        assert!(TargetUrl::from_stored("http://localhost:9000/x").is_ok());
        assert!(TargetUrl::from_stored("javascript:alert(1)").is_err());
        assert!(TargetUrl::from_stored("https://example.com/\r\nX: y").is_err());
    }

    #[test]
    fn the_host_accessor_handles_ports_and_ipv6() {
        let p = TargetPolicy::default();
        assert_eq!(
            TargetUrl::parse("https://a.example:8443/x", &p)
                .unwrap()
                .host(),
            "a.example"
        );
        assert_eq!(
            TargetUrl::parse("https://[2001:4860::1]:80/", &p)
                .unwrap()
                .host(),
            "2001:4860::1"
        );
    }

    proptest! {
        #[test]
        fn every_accepted_url_is_a_header_value_as_it_is(
            host in "[a-zA-Z0-9\u{e0}-\u{ff}\u{430}-\u{44f}]{1,12}\\.[a-z]{2,4}",
            rest in "\\PC{0,40}|[\\x00-\\x7f\\u{80}-\\u{9f}\\u{200b}\\u{feff} ]{0,40}",
        ) {
            // Anything the parser lets through, control characters and non-ASCII included
            // in the input, becomes a `Location` value byte for byte.
            if let Ok(url) = TargetUrl::parse(&format!("https://{host}/{rest}"), &TargetPolicy::default()) {
                let value = url.header_value();
                prop_assert_eq!(value.as_bytes(), url.as_str().as_bytes());
            }
        }

        #[test]
        fn normalising_a_normalised_url_changes_nothing(
            scheme in prop::sample::select(vec!["http", "https", "HTTP", "hTTps"]),
            host in "[a-zA-Z0-9\u{e0}-\u{ff}\u{430}-\u{44f}]{1,12}(\\.[a-zA-Z]{2,6}){1,2}",
            port in prop::option::of(1u16..),
            path in "(/[a-zA-Z0-9 ._~%!$&'()*+,;=:@\u{e9}-]{0,10}){0,4}",
            query in prop::option::of("[a-zA-Z0-9=& %/?]{0,20}"),
            fragment in prop::option::of("[a-zA-Z0-9 #/]{0,10}"),
        ) {
            let mut input = format!("{scheme}://{host}");
            if let Some(port) = port { input = format!("{input}:{port}"); }
            input.push_str(&path);
            if let Some(q) = query { input.push('?'); input.push_str(&q); }
            if let Some(f) = fragment { input.push('#'); input.push_str(&f); }
            let open = TargetPolicy::default();
            if let Ok(first) = TargetUrl::parse(&input, &open) {
                let second = TargetUrl::parse(first.as_str(), &open)
                    .expect("a normalised URL is accepted again");
                prop_assert_eq!(&first, &second);
                prop_assert!(first.as_str().len() <= MAX_TARGET_URL_BYTES);
                prop_assert!(first.as_str().is_ascii(), "{}", first);
                prop_assert!(first.as_str().starts_with("http://") || first.as_str().starts_with("https://"));
            }
        }

        #[test]
        fn arbitrary_input_never_yields_a_header_unsafe_url(input in "\\PC{0,60}|[\\x00-\\x7f]{0,60}") {
            if let Ok(url) = TargetUrl::parse(&input, &TargetPolicy::default()) {
                prop_assert!(url.as_str().bytes().all(|b| (0x21..0x7f).contains(&b)), "{}", url);
            }
        }
    }
}
