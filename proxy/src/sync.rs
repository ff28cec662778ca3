//! Background work that keeps the proxy's view of links current and its readiness honest:
//! polling `link_changes` (always; the safety net that works without Redis), listening to
//! the Redis invalidation channel (when configured; the fast path), keeping Redis connected,
//! and checking the store.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt as _;
use linkgate_common::cache::{Resolver, parse_invalidation};

use crate::app::ProxyState;

/// Changes read per poll; a backlog is worked through on consecutive polls.
const CHANGES_PER_POLL: u32 = 1000;
/// A store lookup that started before a change committed can finish after the first
/// invalidation and re-insert the old copy; a second invalidation this much later removes it.
const SECOND_INVALIDATION: Duration = Duration::from_millis(100);

/// Starts every background task on the current runtime.
pub(crate) fn spawn_all(state: &Arc<ProxyState>, poll: Duration) {
    let resolver = Arc::clone(&state.resolver);
    tokio::spawn(poll_changes(Arc::clone(&resolver), poll));
    if let Some(redis) = resolver.l2() {
        let redis = Arc::clone(redis);
        tokio::spawn(async move {
            loop {
                if !redis.is_connected()
                    && let Err(error) = redis.connect().await
                {
                    tracing::debug!(%error, "redis not reachable yet");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        tokio::spawn(listen_invalidations(Arc::clone(&resolver)));
    }
    tokio::spawn(check_readiness(Arc::clone(state)));
    let housekeeping = Arc::clone(state);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_mins(1)).await;
            housekeeping.passwords.housekeeping();
            housekeeping.unknown_codes.housekeeping();
            if let Some(limiter) = &housekeeping.per_client {
                limiter.housekeeping();
            }
        }
    });
}

async fn poll_changes(resolver: Arc<Resolver>, every: Duration) {
    let store = Arc::clone(resolver.store());
    let mut last = loop {
        match store.last_change_seq().await {
            Ok(seq) => break seq,
            Err(error) => {
                tracing::warn!(%error, "cannot read the change log yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut failing = false;
    loop {
        tokio::time::sleep(every).await;
        match store.changes_since(last, CHANGES_PER_POLL).await {
            Ok(changes) => {
                if failing {
                    tracing::info!("change log readable again");
                    failing = false;
                }
                let mut keys = Vec::with_capacity(changes.len());
                for change in changes {
                    last = last.max(change.seq);
                    resolver
                        .invalidate(change.domain.as_str(), change.code.as_str())
                        .await;
                    keys.push((change.domain, change.code));
                }
                if !keys.is_empty() {
                    let resolver = Arc::clone(&resolver);
                    tokio::spawn(async move {
                        tokio::time::sleep(SECOND_INVALIDATION).await;
                        for (domain, code) in keys {
                            resolver.invalidate(domain.as_str(), code.as_str()).await;
                        }
                    });
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "cannot poll the change log; cached links may be stale until it recovers");
                    failing = true;
                }
            }
        }
    }
}

async fn listen_invalidations(resolver: Arc<Resolver>) {
    let Some(redis) = resolver.l2().cloned() else {
        return;
    };
    let channel = redis.invalidation_channel();
    loop {
        match redis.client().get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(error) = pubsub.subscribe(&channel).await {
                    tracing::debug!(%error, "cannot subscribe to invalidations");
                } else {
                    tracing::info!("subscribed to link invalidations");
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(text) = message.get_payload::<String>() else {
                            continue;
                        };
                        if let Some((domain, code)) = parse_invalidation(&text) {
                            resolver.invalidate_local(domain, code);
                        }
                    }
                    tracing::warn!(
                        "invalidation subscription ended; the change-log poll covers the gap"
                    );
                }
            }
            Err(error) => tracing::debug!(%error, "redis pub/sub unavailable"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn check_readiness(state: Arc<ProxyState>) {
    let store = Arc::clone(state.resolver.store());
    loop {
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(2), store.ping()).await,
            Ok(Ok(()))
        );
        state.ready.store(ok, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
