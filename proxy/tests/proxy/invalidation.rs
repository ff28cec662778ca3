use std::time::Duration;

use linkgate_common::domain::{LinkPatch, LinkState, TargetPolicy, TargetUrl};

use crate::Setup;
use crate::helpers::TestProxy;

const ONE_SECOND: Duration = Duration::from_secs(1);

pub fn an_edit_is_served_within_one_second(setup: Setup) {
    let env = setup.env();
    let link = env.link("edit", "https://example.com/before", |_| {});
    let proxy = TestProxy::start(&env, |s| {
        setup.configure(s);
        s.cache.change_poll_ms = 500;
    });
    assert_eq!(
        proxy.get("/edit").header("location"),
        Some("https://example.com/before")
    );
    assert_eq!(
        proxy.get("/edit").header("location"),
        Some("https://example.com/before"),
        "cached"
    );
    let store = env.store();
    let patch = LinkPatch {
        target: Some(
            TargetUrl::parse("https://example.com/after", &TargetPolicy::default()).unwrap(),
        ),
        ..LinkPatch::default()
    };
    env.block_on(async { store.update_link(link.id, &patch).await.unwrap() });
    let took = proxy.wait_for("/edit", ONE_SECOND, |r| {
        r.header("location") == Some("https://example.com/after")
    });
    eprintln!("edit visible after {took:?}");
}

pub fn creating_a_code_clears_its_negative_entry(setup: Setup) {
    let env = setup.env();
    let proxy = TestProxy::start(&env, |s| {
        setup.configure(s);
        s.cache.negative_ttl_secs = 60;
        s.cache.change_poll_ms = 500;
    });
    assert_eq!(proxy.get("/later").status, 404);
    assert_eq!(proxy.get("/later").status, 404, "negatively cached");
    env.link("later", "https://example.com/now", |_| {});
    proxy.wait_for("/later", ONE_SECOND, |r| r.status == 302);
}

pub fn a_ban_is_served_within_one_second(setup: Setup) {
    let env = setup.env();
    let link = env.link("spam", "https://example.com/s", |_| {});
    let proxy = TestProxy::start(&env, |s| {
        setup.configure(s);
        s.cache.change_poll_ms = 500;
    });
    assert_eq!(proxy.get("/spam").status, 302);
    let store = env.store();
    env.block_on(async {
        store
            .update_link(
                link.id,
                &LinkPatch {
                    state: Some(LinkState::Banned),
                    ..LinkPatch::default()
                },
            )
            .await
            .unwrap()
    });
    proxy.wait_for("/spam", ONE_SECOND, |r| r.status == 410);
}

/// The Redis channel alone (no change-log row) drops a cached copy on every proxy.
#[test]
fn a_published_invalidation_drops_the_l1_copy() {
    let env = crate::helpers::Env::mysql();
    env.link("pubsub", "https://example.com/p", |_| {});
    let prefix = linkgate_common::testing::redis_prefix();
    let url = linkgate_common::testing::redis_url();
    let proxy = TestProxy::start(&env, |s| {
        s.redis.url = Some(linkgate_config::SecretUrl::new(url.clone()));
        s.redis.key_prefix = prefix.clone();
    });
    assert_eq!(proxy.get("/pubsub").status, 302);
    assert_eq!(proxy.get("/pubsub").status, 302);
    assert!(
        proxy
            .metrics_text()
            .contains("linkgate_proxy_requests_total{outcome=\"l1_hit\"} 1")
    );
    let settings = linkgate_config::RedisSettings {
        key_prefix: prefix,
        ..Default::default()
    };
    let tier =
        linkgate_common::cache::RedisTier::new(&url, &settings, Duration::from_secs(60)).unwrap();
    let start = std::time::Instant::now();
    env.block_on(async {
        tier.connect().await.unwrap();
        // The subscription is set up in the background shortly after start.
        loop {
            tier.publish_invalidation("localhost", "pubsub")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            if start.elapsed() > Duration::from_secs(5) {
                break;
            }
            if reloads(&proxy) >= 2 {
                break;
            }
            // Each GET either hits L1 (not yet invalidated) or loads the link again (from
            // the store: the invalidation left a tombstone in L2).
            let _ = proxy.get("/pubsub");
        }
    });
    assert!(reloads(&proxy) >= 2, "{}", proxy.metrics_text());
}

/// Requests L1 did not answer: the first load and every load after an invalidation.
fn reloads(proxy: &TestProxy) -> u64 {
    let text = proxy.metrics_text();
    ["l2_hit", "store_hit"]
        .iter()
        .map(|outcome| {
            let series = format!("linkgate_proxy_requests_total{{outcome=\"{outcome}\"}}");
            text.lines()
                .find(|l| l.starts_with(&series))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}
