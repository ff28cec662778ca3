//! Identifiers. Database ids are newtypes so a user id can never be passed as a link id.

use std::fmt;

use super::timestamp::Timestamp;

macro_rules! db_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

db_id!(
    /// A user's row id.
    UserId
);
db_id!(
    /// A link's row id; stable across edits, so click rows and aggregates key on it.
    LinkId
);
db_id!(
    /// An API key's row id.
    ApiKeyId
);

thread_local! {
    static ID_BITS: std::cell::RefCell<rand::rngs::SmallRng> =
        std::cell::RefCell::new(rand::SeedableRng::from_rng(&mut rand::rng()));
}

/// The random part of a click id. Ids are made on every redirect thread, so the bits come
/// from a small generator per thread (seeded once from the OS-seeded thread RNG) rather than
/// `Uuid::now_v7()`, whose shared clock-sequence context is a lock, or the thread RNG
/// itself, a `ChaCha` generator with reseeding checks. Ids must be unique, not unpredictable.
fn random_bits() -> [u8; 10] {
    use rand::Rng as _;
    let mut bits = [0u8; 10];
    ID_BITS.with_borrow_mut(|rng| rng.fill_bytes(&mut bits));
    bits
}

/// A click's 128-bit id: a UUIDv7, so ids are unique without coordination and sort by time,
/// which keeps the raw-click primary key append-only in InnoDB's clustered index.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ClickId(pub u128);

impl ClickId {
    /// A fresh id: the current millisecond and 74 random bits.
    pub fn new() -> Self {
        Self::at(Timestamp::now())
    }

    /// A fresh id for an event at `at` (callers that already read the clock pass it in).
    pub fn at(at: Timestamp) -> Self {
        let millis = u64::try_from(at.as_millis()).unwrap_or_default();
        Self(
            uuid::Builder::from_unix_timestamp_millis(millis, &random_bits())
                .into_uuid()
                .as_u128(),
        )
    }

    /// The smallest id of the millisecond `at`: every id of an earlier event sorts below it.
    pub fn first_at(at: Timestamp) -> Self {
        let millis = u64::try_from(at.as_millis()).unwrap_or_default();
        Self(
            uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10])
                .into_uuid()
                .as_u128(),
        )
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The millisecond in the id's first 48 bits (the event time it was made for).
    pub fn millis(self) -> i64 {
        i64::try_from(self.0 >> 80).unwrap_or(i64::MAX)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| Self(u128::from_be_bytes(b)))
    }
}

impl Default for ClickId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ClickId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClickId({})", uuid::Uuid::from_u128(self.0))
    }
}

impl fmt::Display for ClickId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_u128(self.0).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn click_ids_are_unique_and_round_trip_through_bytes() {
        let a = ClickId::new();
        let b = ClickId::new();
        assert_ne!(a, b);
        assert_eq!(ClickId::from_bytes(&a.to_bytes()), Some(a));
        assert_eq!(ClickId::from_bytes(&[1, 2, 3]), None);
    }

    /// Each thread has a generator of its own: threads making ids in the same millisecond
    /// must not repeat each other's (as they would if the generators shared a seed).
    #[test]
    fn ids_made_on_many_threads_at_one_millisecond_are_all_distinct() {
        let at = Timestamp::now();
        let ids: Vec<Vec<ClickId>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| scope.spawn(move || (0..50_000).map(|_| ClickId::at(at)).collect()))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let all: std::collections::HashSet<ClickId> = ids.iter().flatten().copied().collect();
        assert_eq!(all.len(), 200_000);
        assert!(all.iter().all(|id| id.millis() == at.as_millis()));
    }

    #[test]
    fn click_ids_sort_by_creation_time() {
        let first = ClickId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(ClickId::new() > first);
    }
}
