//! Trending: an exponentially decayed click score per link, without a global decay pass.
//!
//! A link's score at time `now` is `sum over its clicks of e^(-lambda (now - t))` with
//! `lambda = ln 2 / half_life`. Storing that directly would need every row rewritten as time
//! passes. Instead each row stores `sum of e^(lambda (t - epoch))` against a fixed epoch: a
//! click only ever adds to its own link's row, and the ranking at any instant is the ranking
//! of the stored values (all rows of one epoch share the factor `e^(-lambda (now - epoch))`).
//!
//! Stored values grow by 2x per half-life, so the epoch moves forward in eras of
//! [`ERA_HALF_LIVES`] half-lives (values stay below 2^32 times the click count). A write in a
//! new era rescales the row it touches (`score * 2^-32 + new`) and the top-N query reads the
//! current and the previous era and rescales: rows older than that have decayed by more than
//! 2^-32 and are ignored (and purged). That is the rare "rebase", done row by row, lazily.

use crate::domain::Timestamp;

/// Half-lives per era.
pub const ERA_HALF_LIVES: u32 = 32;

/// The decay law for one configured half-life.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendingClock {
    half_life_ms: i64,
    /// lambda in 1/ms.
    lambda: f64,
}

impl TrendingClock {
    pub fn new(half_life_ms: i64) -> Self {
        let half_life_ms = half_life_ms.max(1000);
        Self {
            half_life_ms,
            lambda: std::f64::consts::LN_2 / half_life_ms as f64,
        }
    }

    pub fn half_life_ms(&self) -> i64 {
        self.half_life_ms
    }

    /// Milliseconds per era.
    pub fn era_ms(&self) -> i64 {
        self.half_life_ms.saturating_mul(i64::from(ERA_HALF_LIVES))
    }

    /// The epoch (start of the era) `at` falls in.
    pub fn epoch_of(&self, at: Timestamp) -> Timestamp {
        let era = self.era_ms();
        Timestamp::from_millis(at.as_millis().div_euclid(era) * era)
    }

    /// The stored weight of one click at `at`, relative to `epoch`.
    pub fn weight(&self, at: Timestamp, epoch: Timestamp) -> f64 {
        (self.lambda * (at.as_millis() - epoch.as_millis()) as f64).exp()
    }

    /// Factor that carries a score from the previous era into the next (2^-32).
    pub fn era_carry(&self) -> f64 {
        (-self.lambda * self.era_ms() as f64).exp()
    }

    /// A stored score against `epoch`, as decayed click-equivalents at `now`.
    pub fn score_at(&self, stored: f64, epoch: Timestamp, now: Timestamp) -> f64 {
        stored * (-self.lambda * (now.as_millis() - epoch.as_millis()) as f64).exp()
    }

    /// The brute-force definition, for tests and checks: decayed click-equivalents at `now`.
    pub fn decayed_sum(&self, clicks: impl IntoIterator<Item = Timestamp>, now: Timestamp) -> f64 {
        clicks
            .into_iter()
            .map(|t| (-self.lambda * (now.as_millis() - t.as_millis()) as f64).exp())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_half_life_halves_a_score() {
        let clock = TrendingClock::new(3_600_000);
        let t0 = Timestamp::from_millis(1_800_000_000_000);
        let epoch = clock.epoch_of(t0);
        let stored = clock.weight(t0, epoch);
        let later = t0.plus_millis(3_600_000);
        assert!((clock.score_at(stored, epoch, t0) - 1.0).abs() < 1e-9);
        assert!((clock.score_at(stored, epoch, later) - 0.5).abs() < 1e-9);
        assert!((clock.decayed_sum([t0], later) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn the_era_carry_matches_rescoring_against_the_next_epoch() {
        let clock = TrendingClock::new(600_000);
        let t = Timestamp::from_millis(1_800_000_123_456);
        let epoch = clock.epoch_of(t);
        let next = epoch.plus_millis(clock.era_ms());
        let carried = clock.weight(t, epoch) * clock.era_carry();
        let direct = clock.weight(t, next);
        assert!((carried / direct - 1.0).abs() < 1e-9);
        assert!((clock.era_carry() - 2f64.powi(-32)).abs() < 1e-18);
    }

    #[test]
    fn stored_values_stay_finite_within_an_era() {
        let clock = TrendingClock::new(1000);
        let epoch = Timestamp::from_millis(0);
        let end = epoch.plus_millis(clock.era_ms());
        assert!(clock.weight(end, epoch) <= 2f64.powi(32) * 1.000_001);
    }
}
