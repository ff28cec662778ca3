//! Click budgets: a link with `max_clicks = N` redirects exactly N times.
//!
//! On one node an atomic counter per limited link decides; with Redis, an atomic
//! server-side INCR (started at the persisted click count) decides for every node at once.
//! If Redis is unreachable the local counter takes over (documented: nodes may then each
//! grant the remainder until Redis is back).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::cache::{CachedLink, RedisTier};
use crate::domain::LinkId;

#[derive(Debug, Default)]
pub struct ClickBudget {
    /// Redirects granted per limited link since this process saw it, started at the
    /// persisted count. A std mutex: held for one map lookup, never across an await.
    local: Mutex<HashMap<LinkId, Arc<AtomicU64>>>,
    redis: Option<Arc<RedisTier>>,
}

impl ClickBudget {
    pub fn new(redis: Option<Arc<RedisTier>>) -> Self {
        Self {
            local: Mutex::new(HashMap::new()),
            redis,
        }
    }

    /// Takes one click from the link's budget; false when it is spent. Links without a
    /// limit always pass without touching any counter.
    pub async fn take(&self, link: &CachedLink) -> bool {
        let Some(max) = link.max_clicks() else {
            return true;
        };
        if link.clicks() >= max {
            return false;
        }
        if let Some(redis) = &self.redis
            && let Ok(count) = redis.take_click(link.id, link.clicks()).await
        {
            return count <= max;
        }
        let counter = {
            let Ok(mut map) = self.local.lock() else {
                return false;
            };
            Arc::clone(
                map.entry(link.id)
                    .or_insert_with(|| Arc::new(AtomicU64::new(link.clicks()))),
            )
        };
        // fetch_update never goes past `max`, so the counter stays meaningful afterwards.
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < max).then_some(used + 1)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{TargetPolicy, TargetUrl};

    fn link(max: Option<u64>, clicks: u64) -> CachedLink {
        let mut link = CachedLink::new(
            LinkId(1),
            TargetUrl::parse("https://example.com/", &TargetPolicy::default()).unwrap(),
        );
        link.extras_mut().max_clicks = max;
        link.extras_mut().clicks = clicks;
        link
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn exactly_max_clicks_are_granted_under_concurrency() {
        let budget = Arc::new(ClickBudget::new(None));
        let link = Arc::new(link(Some(100), 0));
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (budget, link) = (Arc::clone(&budget), Arc::clone(&link));
                tokio::spawn(async move { budget.take(&link).await })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            granted += usize::from(t.await.unwrap());
        }
        assert_eq!(granted, 100);
    }

    #[tokio::test]
    async fn the_budget_starts_at_the_persisted_count() {
        let budget = ClickBudget::new(None);
        let l = link(Some(5), 3);
        assert!(budget.take(&l).await);
        assert!(budget.take(&l).await);
        assert!(!budget.take(&l).await);
        assert!(!budget.take(&link(Some(5), 5)).await);
        assert!(budget.take(&link(None, 1_000)).await);
    }
}
