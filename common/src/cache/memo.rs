//! The table of a thread's memo: open addressing over a fixed array of slots, each slot
//! the key's full hash beside a pointer to its entry.
//!
//! A key's first slot is a function of its hash alone, so the proxy asks for that slot's
//! cache line ([`MemoTable::prefetch`]) as soon as it knows the key, and the fetch overlaps
//! the request's other checks (a short lead: about 15 ns of the slot's miss by the
//! profile). A hash table with separate control bytes (hashbrown's) finds the slot only
//! after reading them: at the peak with a hot set of 10,000 links, the control bytes and the
//! slot were two of the memo's three dependent cache misses (the third, the entry itself,
//! holds the answer); this table has two. A slot's hash decides a
//! mismatch without reading the entry; a match is confirmed on the entry's key, so a hash
//! collision never answers another key.
//!
//! Entries are never removed one by one: one is replaced by a newer answer for its key, and
//! the whole table is emptied when it is full or stale. With no removals, a probe ends at
//! the first empty slot, and there always is one (the table holds at most half its slots).

use super::hot::MemoEntry;
use crate::hint::prefetch_lines;

/// Entries a memo holds at most; reaching it empties the table (recent answers come back
/// from L1 as they are asked for).
pub(super) const CAPACITY: usize = 16_384;
/// Twice the capacity: a probe stays short (the table is at most half full).
const SLOTS: usize = CAPACITY * 2;

#[derive(Default)]
struct Slot {
    hash: u64,
    entry: Option<MemoEntry>,
}

pub(super) struct MemoTable {
    slots: Box<[Slot]>,
    len: usize,
}

impl MemoTable {
    pub(super) fn new() -> Self {
        Self {
            slots: std::iter::repeat_with(Slot::default).take(SLOTS).collect(),
            len: 0,
        }
    }

    fn home(hash: u64) -> usize {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "masked to the table's size"
        )]
        let low = hash as usize;
        low & (SLOTS - 1)
    }

    /// Asks the CPU for the cache line of `hash`'s first slot: a hint, read nowhere.
    pub(super) fn prefetch(&self, hash: u64) {
        prefetch_lines(&raw const self.slots[Self::home(hash)]);
    }

    /// The entry of `key`, whose hash is `hash`.
    pub(super) fn get(&self, hash: u64, key: &[u8]) -> Option<&MemoEntry> {
        let mut i = Self::home(hash);
        loop {
            let slot = &self.slots[i];
            let entry = slot.entry.as_ref()?;
            if slot.hash == hash && entry.key() == key {
                return Some(entry);
            }
            i = (i + 1) & (SLOTS - 1);
        }
    }

    /// Puts `entry` (whose key hashes to `hash`) in, in place of its key's older entry.
    /// A full table is emptied first.
    pub(super) fn put(&mut self, hash: u64, entry: MemoEntry) {
        if self.len >= CAPACITY {
            self.clear();
        }
        let mut i = Self::home(hash);
        loop {
            let slot = &mut self.slots[i];
            match &slot.entry {
                None => {
                    self.len += 1;
                    *slot = Slot {
                        hash,
                        entry: Some(entry),
                    };
                    return;
                }
                Some(old) if slot.hash == hash && old.key() == entry.key() => {
                    slot.entry = Some(entry);
                    return;
                }
                Some(_) => i = (i + 1) & (SLOTS - 1),
            }
        }
    }

    /// Drops every entry (a no-op on an empty table).
    pub(super) fn clear(&mut self) {
        if self.len == 0 {
            return;
        }
        for slot in &mut self.slots {
            slot.entry = None;
        }
        self.len = 0;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Instant;

    fn entry(key: &[u8]) -> MemoEntry {
        MemoEntry::new(None, key, Instant::now())
    }

    #[test]
    fn keys_of_one_hash_are_told_apart_by_their_bytes() {
        let mut table = MemoTable::new();
        // Every key on one hash: a single probe sequence.
        for key in [&b"h\0a"[..], b"h\0b", b"h\0c"] {
            table.put(7, entry(key));
        }
        assert_eq!(table.len(), 3);
        for key in [&b"h\0a"[..], b"h\0b", b"h\0c"] {
            assert_eq!(table.get(7, key).map(MemoEntry::key), Some(key));
        }
        assert!(table.get(7, b"h\0d").is_none());
        // The same bytes under another hash are another key's probe: not found.
        assert!(table.get(8, b"h\0a").is_none());
    }

    #[test]
    fn a_newer_answer_replaces_its_key_and_a_full_table_starts_over() {
        let mut table = MemoTable::new();
        let until = Instant::now();
        table.put(1, MemoEntry::new(None, b"k", until));
        let later = until + std::time::Duration::from_secs(1);
        table.put(1, MemoEntry::new(None, b"k", later));
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(1, b"k").map(MemoEntry::until), Some(later));

        // A probe sequence that wraps past the last slot still ends.
        let last = u64::try_from(SLOTS - 1).unwrap();
        for key in [&b"w1"[..], b"w2", b"w3"] {
            table.put(last, entry(key));
        }
        assert_eq!(table.get(last, b"w3").map(MemoEntry::key), Some(&b"w3"[..]));
        assert!(table.get(last, b"w4").is_none());
        for n in 4..CAPACITY {
            let key = format!("k{n}");
            table.put(u64::try_from(n * 2).unwrap(), entry(key.as_bytes()));
        }
        assert_eq!(table.len(), CAPACITY);
        assert!(table.get(200, b"k100").is_some());
        assert!(table.get(1, b"k").is_some());
        // Full: the next put empties the table first.
        table.put(5, entry(b"new"));
        assert_eq!(table.len(), 1);
        assert!(table.get(1, b"k").is_none());
        assert!(table.get(5, b"new").is_some());
        table.clear();
        assert_eq!(table.len(), 0);
        assert!(table.get(5, b"new").is_none());
    }
}
