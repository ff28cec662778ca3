//! Links as the redirect path reads them: the link, its cache key and its target's bytes in
//! one allocation.
//!
//! A redirect of a link from a large hot set reads from memory whatever its lookup touches:
//! with the link in an `Arc` of its own, its target in a box of its own and the key in the
//! memo's table, that was four dependent cache misses a request (the memo's slot, the link,
//! the target, and before that the table's control bytes), the largest cost the proxy adds
//! to a bare redirect. Packed together, the memo's table holds only pointers (small enough
//! to stay in the core's cache) and a hit reads one allocation: key, fields and target are
//! adjacent.

use std::sync::Arc;

use http::HeaderValue;

use super::link::CachedLink;
use crate::clock::Instant;

/// One allocation: the answer for a key (`None` for an unknown code), when the memo stops
/// trusting it, and `bytes`: the key, then the link's target (unless it did not fit).
#[derive(Debug)]
struct Packed<B: ?Sized> {
    until: Instant,
    link: Option<CachedLink>,
    key_len: u16,
    /// 0 when the target is not held here (longer than the largest size below).
    target_len: u16,
    bytes: B,
}

/// A link as a lookup answers it, with its target's bytes beside it. Cheap to clone (a
/// reference count).
#[derive(Debug, Clone)]
pub struct HotLink(Arc<Packed<[u8]>>);

impl HotLink {
    /// `link` under `key`, its target copied in.
    pub fn new(link: CachedLink, key: &[u8]) -> Self {
        Self(pack(Some(link), key, Instant::now()))
    }

    /// The target as a `Location` header value, copied from the bytes beside the link.
    pub fn location(&self) -> HeaderValue {
        match self.0.target() {
            Some(target) => HeaderValue::from_bytes(target).expect("a TargetUrl is visible ASCII"),
            None => self.link().location(),
        }
    }

    fn link(&self) -> &CachedLink {
        self.0
            .link
            .as_ref()
            .expect("a HotLink is made only of an entry with a link")
    }
}

impl std::ops::Deref for HotLink {
    type Target = CachedLink;

    fn deref(&self) -> &CachedLink {
        self.link()
    }
}

impl From<CachedLink> for HotLink {
    /// A link without a key (tests and tools).
    fn from(link: CachedLink) -> Self {
        Self::new(link, b"")
    }
}

impl Packed<[u8]> {
    fn key(&self) -> &[u8] {
        &self.bytes[..usize::from(self.key_len)]
    }

    fn target(&self) -> Option<&[u8]> {
        let start = usize::from(self.key_len);
        (self.target_len > 0).then(|| &self.bytes[start..start + usize::from(self.target_len)])
    }
}

/// An entry of a thread's memo (see [`super::memo`]), found by its key's bytes.
#[derive(Debug, Clone)]
pub(crate) struct MemoEntry(HotLink);

impl MemoEntry {
    fn packed(&self) -> &Packed<[u8]> {
        &self.0.0
    }

    /// The answer `link` for `key`, trusted until `until`.
    pub(crate) fn new(link: Option<CachedLink>, key: &[u8], until: Instant) -> Self {
        Self(HotLink(pack(link, key, until)))
    }

    pub(crate) fn key(&self) -> &[u8] {
        self.packed().key()
    }

    pub(crate) fn until(&self) -> Instant {
        self.packed().until
    }

    /// The answer: a link, or `None` for an unknown code. (A `HotLink` without a link
    /// exists only inside a `MemoEntry`.)
    pub(crate) fn answer(&self) -> Option<&HotLink> {
        self.packed().link.is_some().then_some(&self.0)
    }
}

/// Packs an answer into the smallest of a few fixed sizes that holds its key and target
/// (an array's length is fixed at compile time; the `Arc` of a sized array coerces to the
/// `Arc` of a slice, so no unsafe code builds it). A target that does not fit in the
/// largest is left in the link (`target_len` 0).
fn pack(link: Option<CachedLink>, key: &[u8], until: Instant) -> Arc<Packed<[u8]>> {
    let key_len = u16::try_from(key.len()).expect("cache keys are a few hundred bytes");
    let target_len = link.as_ref().map_or(0, |l| l.target().as_str().len());
    let need = key.len() + target_len;
    macro_rules! sized {
        ($($n:literal)*) => {
            $(if need <= $n {
                return packed::<$n>(link, key, key_len, until);
            })*
        };
    }
    sized!(32 48 64 96 128 192 256 384 512 768 1024 1536 2048 3072);
    // Longer than any target a link may have (`MAX_TARGET_URL_BYTES`): the key alone, which
    // is at most a few hundred bytes.
    packed::<4096>(link, key, key_len, until)
}

fn packed<const N: usize>(
    link: Option<CachedLink>,
    key: &[u8],
    key_len: u16,
    until: Instant,
) -> Arc<Packed<[u8]>> {
    let mut bytes = [0u8; N];
    bytes[..key.len()].copy_from_slice(key);
    let target = link
        .as_ref()
        .map_or(&[][..], |l| l.target().as_str().as_bytes());
    let target_len = match bytes.get_mut(key.len()..key.len() + target.len()) {
        Some(room) => {
            room.copy_from_slice(target);
            u16::try_from(target.len()).unwrap_or(0)
        }
        None => 0,
    };
    Arc::new(Packed {
        until,
        link,
        key_len,
        target_len,
        bytes,
    })
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::domain::{LinkId, TargetPolicy, TargetUrl};

    fn link(target: &str) -> CachedLink {
        CachedLink::new(
            LinkId(7),
            TargetUrl::parse(target, &TargetPolicy::default()).unwrap(),
        )
    }

    #[test]
    fn a_hot_link_holds_its_key_and_target_beside_it_at_every_size() {
        for (i, len) in [1usize, 20, 31, 100, 1000, 1900, 2020]
            .into_iter()
            .enumerate()
        {
            let target = format!("https://example.com/{}", "a".repeat(len));
            let key = format!("short.example\0code{i}").into_bytes();
            let entry = MemoEntry::new(Some(link(&target)), &key, Instant::now());
            assert_eq!(entry.key(), key.as_slice());
            let hot = entry.answer().unwrap();
            assert!(hot.0.target().is_some(), "target of {len} bytes is packed");
            assert_eq!(hot.location().to_str().unwrap(), target);
            assert_eq!(hot.id, LinkId(7));
        }
    }

    #[test]
    fn an_unknown_code_is_an_entry_without_an_answer() {
        let entry = MemoEntry::new(None, b"h\0missing", Instant::now());
        assert!(entry.answer().is_none());
        assert_eq!(entry.key(), b"h\0missing");
    }

    #[test]
    fn a_link_without_a_key_still_answers_its_location() {
        let hot = HotLink::from(link("https://example.com/x?y=1"));
        assert_eq!(hot.location(), "https://example.com/x?y=1");
        assert_eq!(hot.0.key(), b"");
    }
}
