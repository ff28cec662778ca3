//! Enrichment: from a raw [`ClickEvent`] to the [`StoredClick`] the database keeps.
//!
//! Device class, browser and OS come from the User-Agent through `woothee`; bots are
//! recognised by the `isbot` pattern list (and woothee's crawler class); the country comes
//! from the trusted load-balancer header captured by the proxy, else from a MaxMind-format
//! database through `maxminddb`; the referrer is reduced to its host. The visitor is a keyed
//! `BLAKE2b` hash of IP + User-Agent under a salt that rotates daily (the store hands out one
//! random salt per UTC day and forgets old ones), so unique visitors can be counted without
//! keeping who they were. Raw IPs are stored only when configured, optionally truncated to
//! /24 (IPv4) or /48 (IPv6).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use blake2::Blake2bMac;
use blake2::digest::consts::U8;
use blake2::digest::{KeyInit, Mac};

use crate::domain::{ClickEvent, StoredClick};

/// Longest browser/OS name kept (the columns allow 64).
const MAX_NAME: usize = 64;
/// Longest referrer host kept (the column allows 255).
const MAX_HOST: usize = 255;
/// Parsed User-Agents remembered between batches (real traffic repeats a few thousand).
const UA_CACHE_ENTRIES: usize = 16_384;
/// Visitor hashes remembered by (IP, User-Agent) under the current salt: a keyed `BLAKE2b`
/// costs two compressions (the key block, then IP + User-Agent), several hundred
/// nanoseconds, and a returning visitor's clicks come in runs.
/// 16k entries of (address, number) -> hash take about 1 MB.
const VISITOR_MEMO_ENTRIES: usize = 16_384;

/// Value used when a dimension is not known.
pub const UNKNOWN: &str = "unknown";
/// Referrer breakdown value for clicks without a (usable) referrer.
pub const DIRECT: &str = "(direct)";

/// A day's visitor salt, as handed out by the store.
pub type VisitorSalt = [u8; 32];

/// Enrichment settings.
#[derive(Debug, Clone, Default)]
pub struct EnrichSettings {
    pub store_raw_ip: bool,
    pub truncate_ip: bool,
    pub geoip_db: Option<std::path::PathBuf>,
}

/// What a User-Agent says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaInfo {
    pub device: Arc<str>,
    pub browser: Arc<str>,
    pub os: Arc<str>,
    pub is_bot: bool,
}

/// Turns events into stored clicks. One per batcher; not shared between threads.
pub struct Enricher {
    settings: EnrichSettings,
    bots: isbot::Bots,
    ua_parser: woothee::parser::Parser,
    geo: Option<maxminddb::Reader<Vec<u8>>>,
    /// Parsed User-Agents, each with a number no other User-Agent gets in this process
    /// (numbers are not reused when the cache is cleared), for the visitor memo's key.
    ua_cache: HashMap<Box<str>, (UaInfo, u32), foldhash::fast::RandomState>,
    next_ua: u32,
    /// Visitor hashes by (IP, User-Agent number), valid under `visitor_salt` only.
    visitors: HashMap<(IpAddr, u32), u64, foldhash::fast::RandomState>,
    visitor_salt: VisitorSalt,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("settings", &self.settings)
            .field("geoip", &self.geo.is_some())
            .finish_non_exhaustive()
    }
}

/// The GeoIP database could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open GeoIP database {path}: {source}")]
pub struct GeoIpError {
    path: String,
    source: maxminddb::MaxMindDbError,
}

impl Enricher {
    pub fn new(settings: EnrichSettings) -> Result<Self, GeoIpError> {
        let geo = match &settings.geoip_db {
            Some(path) => Some(open_geoip(path)?),
            None => None,
        };
        Ok(Self {
            settings,
            bots: isbot::Bots::default(),
            ua_parser: woothee::parser::Parser::new(),
            geo,
            ua_cache: HashMap::default(),
            next_ua: 0,
            visitors: HashMap::default(),
            visitor_salt: [0; 32],
        })
    }

    /// Enriches one event with the salt of its UTC day.
    pub fn enrich(&mut self, event: &ClickEvent, salt: &VisitorSalt) -> StoredClick {
        let ua = event.user_agent.as_deref().unwrap_or("");
        let (info, ua_number) = self.user_agent_numbered(ua);
        let visitor = self.visitor(salt, event.client_ip, ua, ua_number);
        let country = event
            .country
            .and_then(|c| std::str::from_utf8(&c).ok().map(str::to_ascii_uppercase))
            .or_else(|| self.country_of(event.client_ip));
        StoredClick {
            click_id: event.click_id,
            link_id: event.link_id,
            at: event.at,
            visitor,
            ip: self
                .settings
                .store_raw_ip
                .then(|| stored_ip(event.client_ip, self.settings.truncate_ip)),
            referrer_host: event.referrer.as_deref().and_then(referrer_host),
            country,
            device: info.device,
            browser: info.browser,
            os: info.os,
            is_bot: info.is_bot,
            fraud_reasons: 0,
        }
    }

    /// Parses a User-Agent (cached).
    pub fn user_agent(&mut self, ua: &str) -> UaInfo {
        self.user_agent_numbered(ua).0
    }

    /// The parsed User-Agent (a copy) and its number; a cache hit hashes the string once.
    fn user_agent_numbered(&mut self, ua: &str) -> (UaInfo, u32) {
        if let Some((info, number)) = self.ua_cache.get(ua) {
            return (info.clone(), *number);
        }
        if self.ua_cache.len() >= UA_CACHE_ENTRIES {
            self.ua_cache.clear();
        }
        let info = parse_user_agent(&self.ua_parser, &self.bots, ua);
        let number = self.next_ua;
        self.next_ua = self.next_ua.wrapping_add(1);
        if number == u32::MAX {
            // Numbers are about to repeat (after four billion distinct User-Agents): no
            // cached User-Agent and no remembered visitor may keep a number handed out again.
            self.ua_cache.clear();
            self.visitors.clear();
        }
        self.ua_cache.insert(ua.into(), (info.clone(), number));
        (info, number)
    }

    /// The visitor hash of (IP, User-Agent) under `salt`, remembered while the salt stays.
    fn visitor(&mut self, salt: &VisitorSalt, ip: IpAddr, ua: &str, ua_number: u32) -> u64 {
        if self.visitor_salt != *salt || self.visitors.len() >= VISITOR_MEMO_ENTRIES {
            self.visitors.clear();
            self.visitor_salt = *salt;
        }
        *self
            .visitors
            .entry((ip, ua_number))
            .or_insert_with(|| visitor_hash(salt, ip, ua))
    }

    /// Country of an IP from the GeoIP database, if one is configured and knows it.
    pub fn country_of(&self, ip: IpAddr) -> Option<String> {
        let reader = self.geo.as_ref()?;
        let result = reader.lookup(ip).ok()?;
        let iso: Option<&str> = result
            .decode_path(&[
                maxminddb::PathElement::Key("country"),
                maxminddb::PathElement::Key("iso_code"),
            ])
            .ok()
            .flatten();
        iso.filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(str::to_ascii_uppercase)
    }
}

fn open_geoip(path: &Path) -> Result<maxminddb::Reader<Vec<u8>>, GeoIpError> {
    maxminddb::Reader::open_readfile(path).map_err(|source| GeoIpError {
        path: path.display().to_string(),
        source,
    })
}

fn parse_user_agent(parser: &woothee::parser::Parser, bots: &isbot::Bots, ua: &str) -> UaInfo {
    let parsed = parser.parse(ua);
    let category = parsed.as_ref().map_or(UNKNOWN, |r| r.category);
    let device = match category {
        "pc" => "desktop",
        "smartphone" | "mobilephone" => "mobile",
        "crawler" => "bot",
        "appliance" => "appliance",
        "misc" => "other",
        _ => UNKNOWN,
    };
    let name = |s: &str| -> Arc<str> {
        if s.is_empty() || s == woothee::woothee::VALUE_UNKNOWN {
            UNKNOWN.into()
        } else {
            truncate(s, MAX_NAME).into()
        }
    };
    let is_bot = !ua.is_empty() && (bots.is_bot(ua) || category == "crawler");
    UaInfo {
        device: if is_bot { "bot" } else { device }.into(),
        browser: parsed
            .as_ref()
            .map_or_else(|| UNKNOWN.into(), |r| name(r.name)),
        os: parsed
            .as_ref()
            .map_or_else(|| UNKNOWN.into(), |r| name(r.os)),
        is_bot,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The keyed visitor hash: `BLAKE2b`-64 of IP + User-Agent under the day's salt.
pub fn visitor_hash(salt: &VisitorSalt, ip: IpAddr, user_agent: &str) -> u64 {
    let mut mac =
        <Blake2bMac<U8> as KeyInit>::new_from_slice(salt).expect("a 32-byte key fits BLAKE2b");
    match ip {
        IpAddr::V4(v4) => mac.update(&v4.to_ipv6_mapped().octets()),
        IpAddr::V6(v6) => mac.update(&v6.octets()),
    }
    mac.update(user_agent.as_bytes());
    let out = mac.finalize().into_bytes();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&out);
    u64::from_le_bytes(bytes)
}

/// The IP as stored when raw IPs are kept: whole, or cut to its /24 or /48 network.
pub fn stored_ip(ip: IpAddr, truncate_to_network: bool) -> String {
    if !truncate_to_network {
        return ip.to_string();
    }
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            std::net::Ipv4Addr::new(a, b, c, 0).to_string()
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string()
        }
    }
}

/// The network of an address as evidence for a flagged click: `203.0.113.0/24`,
/// `2001:db8:1::/48` (never the address itself).
pub fn network_of(ip: IpAddr) -> String {
    let prefix = if ip.is_ipv4() { 24 } else { 48 };
    format!("{}/{prefix}", stored_ip(ip, true))
}

/// The host of a referrer URL, lower-case, without `www.`; `None` when it is not an
/// http(s) URL with a host.
pub fn referrer_host(referrer: &str) -> Option<String> {
    let url = url::Url::parse(referrer.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    if host.is_empty() || host.len() > MAX_HOST {
        return None;
    }
    Some(host.to_owned())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::domain::{ClickId, ClickMethod, LinkId, Timestamp};

    const FIREFOX: &str =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) \
        AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    fn geoip_path() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/test-country.mmdb")
    }

    fn event(ip: &str, ua: Option<&str>, referrer: Option<&str>) -> ClickEvent {
        ClickEvent {
            click_id: ClickId::new(),
            at: Timestamp::from_millis(1_800_000_000_000),
            link_id: LinkId(1),
            client_ip: ip.parse().unwrap(),
            user_agent: ua.map(Into::into),
            referrer: referrer.map(Into::into),
            has_accept: false,
            method: ClickMethod::Get,
            country: None,
            prefetch: false,
        }
    }

    #[test]
    fn clicks_of_one_user_agent_share_its_names() {
        let mut e = Enricher::new(EnrichSettings::default()).unwrap();
        let salt = [3; 32];
        let a = e.enrich(&event("192.0.2.1", Some(FIREFOX), None), &salt);
        let b = e.enrich(&event("192.0.2.2", Some(FIREFOX), None), &salt);
        assert_eq!(&*a.browser, "Firefox");
        assert!(Arc::ptr_eq(&a.device, &b.device));
        assert!(Arc::ptr_eq(&a.browser, &b.browser));
        assert!(Arc::ptr_eq(&a.os, &b.os));
    }

    #[test]
    fn user_agents_become_device_browser_os_and_bot() {
        let mut e = Enricher::new(EnrichSettings::default()).unwrap();
        let ff = e.user_agent(FIREFOX).clone();
        assert_eq!(
            (&*ff.device, &*ff.browser, &*ff.os),
            ("desktop", "Firefox", "Windows 10")
        );
        assert!(!ff.is_bot);
        let phone = e.user_agent(IPHONE).clone();
        assert_eq!((&*phone.device, &*phone.os), ("mobile", "iPhone"));
        assert!(!phone.is_bot);
        let bot = e.user_agent(GOOGLEBOT).clone();
        assert!(bot.is_bot);
        assert_eq!(&*bot.device, "bot");
        for ua in ["curl/8.5.0", "python-requests/2.32.3", "Go-http-client/1.1"] {
            assert!(e.user_agent(ua).is_bot, "{ua}");
        }
        let empty = e.user_agent("").clone();
        assert_eq!((&*empty.device, &*empty.browser), (UNKNOWN, UNKNOWN));
    }

    #[test]
    fn country_comes_from_the_trusted_header_else_the_geoip_database() {
        let mut e = Enricher::new(EnrichSettings {
            geoip_db: Some(geoip_path()),
            ..EnrichSettings::default()
        })
        .unwrap();
        let salt = [7; 32];
        assert_eq!(
            e.enrich(&event("192.0.2.10", None, None), &salt)
                .country
                .as_deref(),
            Some("DE")
        );
        assert_eq!(
            e.enrich(&event("81.2.69.160", None, None), &salt)
                .country
                .as_deref(),
            Some("GB")
        );
        assert_eq!(
            e.enrich(&event("2001:db8::1", None, None), &salt)
                .country
                .as_deref(),
            Some("NL")
        );
        assert_eq!(
            e.enrich(&event("10.1.2.3", None, None), &salt).country,
            None
        );
        let mut with_header = event("192.0.2.10", None, None);
        with_header.country = Some(*b"ch");
        assert_eq!(e.enrich(&with_header, &salt).country.as_deref(), Some("CH"));
        assert!(
            Enricher::new(EnrichSettings {
                geoip_db: Some("/nonexistent.mmdb".into()),
                ..EnrichSettings::default()
            })
            .is_err()
        );
    }

    #[test]
    fn visitors_are_keyed_by_ip_ua_and_the_daily_salt() {
        let ip: IpAddr = Ipv4Addr::new(192, 0, 2, 1).into();
        let a = visitor_hash(&[1; 32], ip, FIREFOX);
        assert_eq!(a, visitor_hash(&[1; 32], ip, FIREFOX));
        assert_ne!(
            a,
            visitor_hash(&[2; 32], ip, FIREFOX),
            "a new day is a new salt"
        );
        assert_ne!(a, visitor_hash(&[1; 32], ip, IPHONE));
        assert_ne!(
            a,
            visitor_hash(&[1; 32], Ipv4Addr::new(192, 0, 2, 2).into(), FIREFOX)
        );
    }

    #[test]
    fn remembered_visitors_hash_as_computed_ones_across_salts_and_user_agents() {
        let mut e = Enricher::new(EnrichSettings::default()).unwrap();
        let ips = ["192.0.2.1", "192.0.2.2", "2001:db8::1"];
        let uas = [Some(FIREFOX), Some(IPHONE), None];
        // Twice through each salt, and back to the first: the memo never answers with a
        // hash computed under another salt, IP or User-Agent.
        for salt in [[1u8; 32], [2; 32], [1; 32]] {
            for _ in 0..2 {
                for ip in ips {
                    for ua in uas {
                        let click = e.enrich(&event(ip, ua, None), &salt);
                        let expected = visitor_hash(&salt, ip.parse().unwrap(), ua.unwrap_or(""));
                        assert_eq!(click.visitor, expected, "{ip} {ua:?} {salt:?}");
                    }
                }
            }
        }
        // A cleared User-Agent cache hands out new numbers, so old memo entries never match.
        let before = e.enrich(&event("192.0.2.1", Some(FIREFOX), None), &[3; 32]);
        e.ua_cache.clear();
        let after = e.enrich(&event("192.0.2.1", Some(IPHONE), None), &[3; 32]);
        assert_eq!(
            after.visitor,
            visitor_hash(&[3; 32], "192.0.2.1".parse().unwrap(), IPHONE)
        );
        assert_ne!(before.visitor, after.visitor);
    }

    #[test]
    fn user_agent_numbers_wrapping_around_never_mix_up_visitors() {
        let mut e = Enricher::new(EnrichSettings::default()).unwrap();
        let salt = [4; 32];
        let ip = "192.0.2.9";
        let visitor =
            |e: &mut Enricher, ua: &str| e.enrich(&event(ip, Some(ua), None), &salt).visitor;
        let firefox = visitor(&mut e, FIREFOX); // number 0
        e.next_ua = u32::MAX;
        let _ = visitor(&mut e, IPHONE); // the last number: everything cached is forgotten
        let _ = visitor(&mut e, GOOGLEBOT); // number 0 again
        assert_eq!(visitor(&mut e, FIREFOX), firefox);
        assert_eq!(
            visitor(&mut e, GOOGLEBOT),
            visitor_hash(&salt, ip.parse().unwrap(), GOOGLEBOT)
        );
    }

    #[test]
    fn raw_ips_are_kept_only_when_configured_and_then_truncated() {
        let salt = [0; 32];
        let mut off = Enricher::new(EnrichSettings::default()).unwrap();
        assert_eq!(off.enrich(&event("192.0.2.77", None, None), &salt).ip, None);
        let mut on = Enricher::new(EnrichSettings {
            store_raw_ip: true,
            truncate_ip: true,
            geoip_db: None,
        })
        .unwrap();
        assert_eq!(
            on.enrich(&event("192.0.2.77", None, None), &salt)
                .ip
                .as_deref(),
            Some("192.0.2.0")
        );
        assert_eq!(
            stored_ip(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6).into(), true),
            "2001:db8:1::"
        );
        assert_eq!(
            stored_ip(Ipv4Addr::new(192, 0, 2, 77).into(), false),
            "192.0.2.77"
        );
    }

    #[test]
    fn referrers_are_reduced_to_their_host() {
        assert_eq!(
            referrer_host("https://www.Example.com/a?b=c").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            referrer_host("http://news.ycombinator.com/item?id=1").as_deref(),
            Some("news.ycombinator.com")
        );
        assert_eq!(referrer_host("android-app://com.google.android.gm"), None);
        assert_eq!(referrer_host("not a url"), None);
        assert_eq!(referrer_host(""), None);
    }
}
