//! Raw clicks as compact segments: one binary value per batch and UTC day instead of one
//! database row per click.
//!
//! A row per click costs the database a B-tree insert per index and a WAL page for every
//! few dozen clicks; at the proxy's peak that was most of the click pipeline's CPU (see
//! BENCHMARKS.md). A segment is written as one value: about 30 bytes per click, repeated
//! strings (device, browser, OS, country, referrer, network) stored once per segment.
//! Segments are kept per UTC day, so retention drops whole days.
//!
//! Format (little-endian, unsigned LEB128 varints, `zigzag` for signed deltas):
//!
//! ```text
//! magic "LGS" | version 1 | clicks: varint | strings: varint | strings × (len: varint, utf-8)
//! then per click: click id (16 bytes, big-endian) | link id (zigzag delta from the previous
//! click's) | at (zigzag delta from the click id's millisecond) | visitor (8 bytes) |
//! ip, referrer, country (varint: 0 = none, else string index + 1) |
//! device, browser, os (varint string index) | flags (1 byte: bit 0 = bot) | fraud reasons (varint)
//! ```

use std::net::IpAddr;
use std::sync::Arc;

use super::FastMap;

use crate::domain::{ClickEvent, ClickId, ClickMethod, LinkId, StoredClick, Timestamp};

const MAGIC: &[u8; 3] = b"LGS";
const VERSION: u8 = 1;

/// Most clicks in one segment (about 300 KB), well under any packet or row limit.
pub const MAX_CLICKS: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SegmentError {
    #[error("not a click segment (bad magic or version)")]
    Header,
    #[error("click segment truncated")]
    Truncated,
    #[error("click segment has an invalid {0}")]
    Invalid(&'static str),
}

/// Encodes `clicks` (at most [`MAX_CLICKS`], in any order) as one segment.
pub fn encode<'a>(clicks: &[&'a StoredClick]) -> Vec<u8> {
    let mut strings: Vec<&'a str> = Vec::new();
    let mut index: FastMap<&'a str, u64> = FastMap::default();
    let mut intern = |s: &'a str| -> u64 {
        *index.entry(s).or_insert_with(|| {
            strings.push(s);
            strings.len() as u64 - 1
        })
    };
    let mut body = Vec::with_capacity(clicks.len() * 32);
    let mut prev_link = 0i64;
    for &c in clicks {
        crate::background::give_way();
        body.extend_from_slice(&c.click_id.to_bytes());
        put_varint(&mut body, zigzag(c.link_id.0.wrapping_sub(prev_link)));
        prev_link = c.link_id.0;
        put_varint(
            &mut body,
            zigzag(c.at.as_millis().wrapping_sub(c.click_id.millis())),
        );
        body.extend_from_slice(&c.visitor.to_le_bytes());
        for s in [&c.ip, &c.referrer_host, &c.country] {
            put_varint(&mut body, s.as_deref().map_or(0, |s| intern(s) + 1));
        }
        for s in [&c.device, &c.browser, &c.os] {
            put_varint(&mut body, intern(s));
        }
        body.push(u8::from(c.is_bot));
        put_varint(&mut body, u64::from(c.fraud_reasons));
    }
    framed((MAGIC, VERSION), clicks.len(), &strings, &body)
}

/// Both formats: magic, version, item count, the string table, then the items' body.
fn framed(
    (magic, version): (&[u8; 3], u8),
    count: usize,
    strings: &[&str],
    body: &[u8],
) -> Vec<u8> {
    let strings_len: usize = strings.iter().map(|s| s.len() + 2).sum();
    let mut out = Vec::with_capacity(16 + strings_len + body.len());
    out.extend_from_slice(magic);
    out.push(version);
    put_varint(&mut out, count as u64);
    put_varint(&mut out, strings.len() as u64);
    for s in strings {
        put_varint(&mut out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// Reads what [`framed`] wrote up to the body: the item count and the strings. Every string
/// takes at least one byte and every item at least `min_item`: a count beyond what the
/// remaining bytes can hold is damage, not a reason to allocate.
fn read_framed<'a>(
    r: &mut Reader<'a>,
    (magic, version): (&[u8; 3], u8),
    min_item: usize,
) -> Result<(usize, Vec<&'a str>), SegmentError> {
    if r.take(3)? != magic || r.byte()? != version {
        return Err(SegmentError::Header);
    }
    let count = r.len()?;
    let string_count = r.len()?;
    if string_count > r.remaining() || count > r.remaining() / min_item {
        return Err(SegmentError::Truncated);
    }
    let mut strings = Vec::with_capacity(string_count);
    for _ in 0..string_count {
        let len = r.len()?;
        let s = std::str::from_utf8(r.take(len)?).map_err(|_| SegmentError::Invalid("string"))?;
        strings.push(s);
    }
    Ok((count, strings))
}

/// Decodes a segment written by [`encode`]; never panics on damaged input.
pub fn decode(bytes: &[u8]) -> Result<Vec<StoredClick>, SegmentError> {
    let mut r = Reader { bytes, pos: 0 };
    // Every click takes at least 30 bytes.
    let (count, strings) = read_framed(&mut r, (MAGIC, VERSION), 30)?;
    let string = |i: u64| -> Result<String, SegmentError> {
        usize::try_from(i)
            .ok()
            .and_then(|i| strings.get(i))
            .map(|s| (*s).to_owned())
            .ok_or(SegmentError::Invalid("string index"))
    };
    let optional = |i: u64| -> Result<Option<String>, SegmentError> {
        if i == 0 {
            Ok(None)
        } else {
            string(i - 1).map(Some)
        }
    };
    // Device, browser and OS names are few: one shared copy each, made on first use.
    let mut shared_strings: Vec<Option<Arc<str>>> = vec![None; strings.len()];
    let mut shared = |i: u64| -> Result<Arc<str>, SegmentError> {
        let i = usize::try_from(i)
            .ok()
            .filter(|&i| i < strings.len())
            .ok_or(SegmentError::Invalid("string index"))?;
        Ok(Arc::clone(
            shared_strings[i].get_or_insert_with(|| Arc::from(strings[i])),
        ))
    };
    let mut clicks = Vec::with_capacity(count);
    let mut prev_link = 0i64;
    for _ in 0..count {
        let click_id = ClickId::from_bytes(r.take(16)?).ok_or(SegmentError::Truncated)?;
        let link = prev_link.wrapping_add(unzigzag(r.varint()?));
        prev_link = link;
        let at = click_id.millis().wrapping_add(unzigzag(r.varint()?));
        let visitor =
            u64::from_le_bytes(r.take(8)?.try_into().map_err(|_| SegmentError::Truncated)?);
        let ip = optional(r.varint()?)?;
        let referrer_host = optional(r.varint()?)?;
        let country = optional(r.varint()?)?;
        let device = shared(r.varint()?)?;
        let browser = shared(r.varint()?)?;
        let os = shared(r.varint()?)?;
        let is_bot = match r.byte()? {
            0 => false,
            1 => true,
            _ => return Err(SegmentError::Invalid("flags")),
        };
        let fraud_reasons =
            u32::try_from(r.varint()?).map_err(|_| SegmentError::Invalid("fraud reasons"))?;
        clicks.push(StoredClick {
            click_id,
            link_id: LinkId(link),
            at: Timestamp::from_millis(at),
            visitor,
            ip,
            referrer_host,
            country,
            device,
            browser,
            os,
            is_bot,
            fraud_reasons,
        });
    }
    if r.remaining() != 0 {
        return Err(SegmentError::Invalid("trailing bytes"));
    }
    Ok(clicks)
}

const EVENTS_MAGIC: &[u8; 3] = b"LGE";
const EVENTS_VERSION: u8 = 1;

/// Flag bits of an event in [`encode_events`].
const HAS_ACCEPT: u8 = 1;
const PREFETCH: u8 = 1 << 1;
const HAS_COUNTRY: u8 = 1 << 2;
const IPV6: u8 = 1 << 3;
const METHOD_SHIFT: u32 = 4;

/// Encodes click events as they came off the queue, for the deferred backlog: the same
/// varints as a segment, User-Agents and referrers stored once per file.
///
/// ```text
/// magic "LGE" | version 1 | events: varint | strings: varint | strings × (len: varint, utf-8)
/// then per event: click id (16 bytes) | link id (zigzag delta) | at (zigzag delta from the
/// click id's millisecond) | flags (1 byte: accept, prefetch, country, IPv6, method << 4) |
/// address (4 or 16 bytes) | country (2 bytes, when flagged) | user agent, referrer
/// (varint: 0 = none, else string index + 1)
/// ```
pub fn encode_events(events: &[ClickEvent]) -> Vec<u8> {
    let mut strings: Vec<&str> = Vec::new();
    let mut index: FastMap<&str, u64> = FastMap::default();
    let mut body = Vec::with_capacity(events.len() * 32);
    let mut prev_link = 0i64;
    for e in events {
        crate::background::give_way();
        body.extend_from_slice(&e.click_id.to_bytes());
        put_varint(&mut body, zigzag(e.link_id.0.wrapping_sub(prev_link)));
        prev_link = e.link_id.0;
        put_varint(
            &mut body,
            zigzag(e.at.as_millis().wrapping_sub(e.click_id.millis())),
        );
        let method = match e.method {
            ClickMethod::Get => 0u8,
            ClickMethod::Head => 1,
            ClickMethod::Post => 2,
        };
        let mut flags = method << METHOD_SHIFT;
        for (set, bit) in [
            (e.has_accept, HAS_ACCEPT),
            (e.prefetch, PREFETCH),
            (e.country.is_some(), HAS_COUNTRY),
            (e.client_ip.is_ipv6(), IPV6),
        ] {
            if set {
                flags |= bit;
            }
        }
        body.push(flags);
        match e.client_ip {
            IpAddr::V4(ip) => body.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => body.extend_from_slice(&ip.octets()),
        }
        if let Some(country) = e.country {
            body.extend_from_slice(&country);
        }
        for s in [&e.user_agent, &e.referrer] {
            let i = s.as_deref().map_or(0, |s| {
                *index.entry(s).or_insert_with(|| {
                    strings.push(s);
                    strings.len() as u64 - 1
                }) + 1
            });
            put_varint(&mut body, i);
        }
    }
    framed(
        (EVENTS_MAGIC, EVENTS_VERSION),
        events.len(),
        &strings,
        &body,
    )
}

/// Decodes events written by [`encode_events`]; never panics on damaged input.
pub fn decode_events(bytes: &[u8]) -> Result<Vec<ClickEvent>, SegmentError> {
    let mut r = Reader { bytes, pos: 0 };
    // Every event takes at least 23 bytes.
    let (count, strings) = read_framed(&mut r, (EVENTS_MAGIC, EVENTS_VERSION), 23)?;
    let optional = |i: u64| -> Result<Option<Box<str>>, SegmentError> {
        if i == 0 {
            return Ok(None);
        }
        usize::try_from(i - 1)
            .ok()
            .and_then(|i| strings.get(i))
            .map(|s| Some((*s).into()))
            .ok_or(SegmentError::Invalid("string index"))
    };
    let mut events = Vec::with_capacity(count);
    let mut prev_link = 0i64;
    for _ in 0..count {
        crate::background::give_way();
        let click_id = ClickId::from_bytes(r.take(16)?).ok_or(SegmentError::Truncated)?;
        let link = prev_link.wrapping_add(unzigzag(r.varint()?));
        prev_link = link;
        let at = click_id.millis().wrapping_add(unzigzag(r.varint()?));
        let flags = r.byte()?;
        let method = match flags >> METHOD_SHIFT {
            0 => ClickMethod::Get,
            1 => ClickMethod::Head,
            2 => ClickMethod::Post,
            _ => return Err(SegmentError::Invalid("method")),
        };
        let client_ip = if flags & IPV6 == 0 {
            let octets: [u8; 4] = r.take(4)?.try_into().map_err(|_| SegmentError::Truncated)?;
            IpAddr::from(octets)
        } else {
            let octets: [u8; 16] = r
                .take(16)?
                .try_into()
                .map_err(|_| SegmentError::Truncated)?;
            IpAddr::from(octets)
        };
        let country = if flags & HAS_COUNTRY == 0 {
            None
        } else {
            Some(r.take(2)?.try_into().map_err(|_| SegmentError::Truncated)?)
        };
        let user_agent = optional(r.varint()?)?;
        let referrer = optional(r.varint()?)?;
        events.push(ClickEvent {
            click_id,
            at: Timestamp::from_millis(at),
            link_id: LinkId(link),
            client_ip,
            user_agent,
            referrer,
            has_accept: flags & HAS_ACCEPT != 0,
            method,
            country,
            prefetch: flags & PREFETCH != 0,
        });
    }
    if r.remaining() != 0 {
        return Err(SegmentError::Invalid("trailing bytes"));
    }
    Ok(events)
}

/// Splits `clicks` into the segments they are stored as: grouped by UTC day (so retention
/// can drop whole days), at most [`MAX_CLICKS`] each, in the order given within a day.
pub fn by_day(clicks: &[StoredClick]) -> Vec<(Timestamp, Vec<&StoredClick>)> {
    let mut days: Vec<(Timestamp, Vec<&StoredClick>)> = Vec::new();
    for c in clicks {
        let day = c.at.day_start();
        match days
            .iter_mut()
            .find(|(d, v)| *d == day && v.len() < MAX_CLICKS)
        {
            Some((_, v)) => v.push(c),
            None => days.push((day, vec![c])),
        }
    }
    days
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)).cast_unsigned()
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1).cast_signed() ^ -((v & 1).cast_signed())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(low7(v) | 0x80);
        v >>= 7;
    }
    out.push(low7(v));
}

/// The low 7 bits of `v`.
fn low7(v: u64) -> u8 {
    u8::try_from(v & 0x7f).unwrap_or_default()
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SegmentError> {
        let end = self.pos.checked_add(n).ok_or(SegmentError::Truncated)?;
        let s = self
            .bytes
            .get(self.pos..end)
            .ok_or(SegmentError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, SegmentError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, SegmentError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(SegmentError::Invalid("varint"))
    }

    fn len(&mut self) -> Result<usize, SegmentError> {
        usize::try_from(self.varint()?).map_err(|_| SegmentError::Invalid("length"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::stored_click;

    fn varied() -> Vec<StoredClick> {
        let t0 = Timestamp::parse_rfc3339("2026-11-27T23:59:59.990Z").unwrap();
        (0..40i64)
            .map(|i| {
                let at = t0.plus_millis(i);
                let mut c = stored_click(LinkId(if i % 3 == 0 { 7 } else { 1_000_000 - i }), at);
                c.visitor = if i == 5 {
                    u64::MAX
                } else {
                    i.cast_unsigned() * 31
                };
                c.ip = (i % 2 == 0).then(|| format!("198.51.100.{}", i % 4));
                c.referrer_host = (i % 5 != 0).then(|| "news.example".to_owned());
                c.country = (i % 7 != 0).then(|| if i % 2 == 0 { "DE" } else { "BR" }.to_owned());
                c.device = if i % 2 == 0 { "mobile" } else { "desktop" }.into();
                c.browser = "Firefox ünïcode".into();
                c.is_bot = i % 4 == 0;
                c.fraud_reasons = u32::try_from(i).unwrap() * 0x0101_0101 % 0xffff_ffff;
                if i == 9 {
                    // An event time that is not the id's millisecond survives too.
                    c.at = at.plus_millis(-86_400_000);
                }
                c
            })
            .collect()
    }

    fn varied_events() -> Vec<ClickEvent> {
        let t0 = Timestamp::parse_rfc3339("2026-11-27T23:59:59.990Z").unwrap();
        (0..40i64)
            .map(|i| {
                let at = t0.plus_millis(i);
                ClickEvent {
                    click_id: ClickId::at(at),
                    at: if i == 9 {
                        at.plus_millis(-86_400_000)
                    } else {
                        at
                    },
                    link_id: LinkId(if i % 3 == 0 { 7 } else { 1_000_000 - i }),
                    client_ip: if i % 2 == 0 {
                        IpAddr::from([198, 51, 100, u8::try_from(i).unwrap()])
                    } else {
                        "2001:db8::1".parse().unwrap()
                    },
                    user_agent: (i % 5 != 0).then(|| format!("Mozilla/5.0 ünï {}", i % 3).into()),
                    referrer: (i % 4 == 0).then(|| "https://news.example/a".into()),
                    has_accept: i % 2 == 0,
                    method: match i % 3 {
                        0 => ClickMethod::Get,
                        1 => ClickMethod::Head,
                        _ => ClickMethod::Post,
                    },
                    country: (i % 7 != 0).then_some(*b"DE"),
                    prefetch: i % 6 == 0,
                }
            })
            .collect()
    }

    #[test]
    fn events_round_trip_exactly_and_damage_is_an_error() {
        let events = varied_events();
        let bytes = encode_events(&events);
        assert_eq!(decode_events(&bytes), Ok(events.clone()));
        assert_eq!(decode_events(&encode_events(&[])), Ok(vec![]));
        // Repeated User-Agents are stored once: well under the 512-byte-header worst case.
        assert!(bytes.len() < events.len() * 45, "{} bytes", bytes.len());
        for cut in 0..bytes.len() {
            assert!(decode_events(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[0] = b'X';
        assert_eq!(decode_events(&flipped), Err(SegmentError::Header));
        let mut longer = bytes;
        longer.push(0);
        assert_eq!(
            decode_events(&longer),
            Err(SegmentError::Invalid("trailing bytes"))
        );
    }

    #[test]
    fn clicks_round_trip_exactly() {
        let clicks = varied();
        let bytes = encode(&clicks.iter().collect::<Vec<_>>());
        assert_eq!(decode(&bytes), Ok(clicks.clone()));
        assert_eq!(decode(&encode(&[])), Ok(vec![]));
        // Repeated strings are stored once: 16 bytes of id, 8 of visitor hash and about a
        // dozen more per click, far below a row per click.
        assert!(bytes.len() < clicks.len() * 45, "{} bytes", bytes.len());
        // Decoded clicks share one copy of each device, browser and OS name.
        let decoded = decode(&bytes).unwrap();
        let firefox: Vec<&StoredClick> = decoded
            .iter()
            .filter(|c| &*c.browser == "Firefox ünïcode")
            .collect();
        assert!(firefox.len() > 1);
        assert!(
            firefox
                .iter()
                .all(|c| Arc::ptr_eq(&c.browser, &firefox[0].browser))
        );
    }

    #[test]
    fn damaged_segments_are_errors_not_panics() {
        let clicks = varied();
        let bytes = encode(&clicks.iter().collect::<Vec<_>>());
        for end in 0..bytes.len() {
            assert!(decode(&bytes[..end]).is_err(), "prefix of {end} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer),
            Err(SegmentError::Invalid("trailing bytes"))
        );
        assert_eq!(decode(b"XYZ\x01\x00\x00"), Err(SegmentError::Header));
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                let _ = decode(&flipped);
            }
        }
        // A count that the bytes cannot hold is refused before anything is allocated.
        let mut huge = b"LGS\x01".to_vec();
        put_varint(&mut huge, u64::MAX >> 1);
        put_varint(&mut huge, 0);
        assert_eq!(decode(&huge), Err(SegmentError::Truncated));
    }

    #[test]
    fn segments_split_by_utc_day_and_size() {
        let clicks = varied();
        let groups = by_day(&clicks);
        let nov27 = Timestamp::parse_rfc3339("2026-11-27T00:00:00Z").unwrap();
        let nov28 = Timestamp::parse_rfc3339("2026-11-28T00:00:00Z").unwrap();
        let nov26 = Timestamp::parse_rfc3339("2026-11-26T00:00:00Z").unwrap();
        let summary: Vec<_> = groups.iter().map(|(d, v)| (*d, v.len())).collect();
        assert_eq!(summary, vec![(nov27, 9), (nov26, 1), (nov28, 30)]);
        for (day, group) in &groups {
            assert!(group.iter().all(|c| c.at.day_start() == *day));
        }

        let many: Vec<_> = (0..=MAX_CLICKS * 2)
            .map(|_| stored_click(LinkId(1), nov28))
            .collect();
        let sizes: Vec<_> = by_day(&many).iter().map(|(_, v)| v.len()).collect();
        assert_eq!(sizes, vec![MAX_CLICKS, MAX_CLICKS, 1]);
    }

    #[test]
    fn zigzag_and_varints_cover_the_extremes() {
        for v in [0, 1, -1, i64::MAX, i64::MIN, 1 << 40] {
            assert_eq!(unzigzag(zigzag(v)), v);
            let mut buf = Vec::new();
            put_varint(&mut buf, zigzag(v));
            let mut r = Reader {
                bytes: &buf,
                pos: 0,
            };
            assert_eq!(r.varint().map(unzigzag), Ok(v));
        }
    }
}
