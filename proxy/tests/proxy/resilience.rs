//! Redis going away must never fail a redirect.

use std::net::SocketAddr;
use std::time::Duration;

use crate::helpers::{Env, Forwarder, TestProxy, free_port};

#[test]
fn an_unreachable_redis_costs_nothing_but_the_l2_tier() {
    let env = Env::mysql();
    env.link("nored", "https://example.com/n", |_| {});
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = TestProxy::start(&env, |s| {
        s.redis.url = Some(linkgate_config::SecretUrl::new(format!("redis://{dead}")));
        s.redis.key_prefix = linkgate_common::testing::redis_prefix();
    });
    for _ in 0..5 {
        assert_eq!(proxy.get("/nored").status, 302);
    }
    assert_eq!(proxy.get("/unknown9").status, 404);
}

#[test]
fn redis_cut_mid_run_leaves_redirects_working_from_l1_and_the_store() {
    let env = Env::mysql();
    env.link("warm", "https://example.com/w", |_| {});
    env.link("cold", "https://example.com/c", |_| {});
    let redis_addr: SocketAddr = linkgate_common::testing::redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let forwarder = Forwarder::start(redis_addr);
    let proxy = TestProxy::start(&env, |s| {
        s.redis.url = Some(linkgate_config::SecretUrl::new(format!(
            "redis://{}",
            forwarder.addr
        )));
        s.redis.key_prefix = linkgate_common::testing::redis_prefix();
        s.redis.timeout_ms = 20;
        s.redis.circuit_cooldown_ms = 60_000;
    });
    // Wait until Redis is connected and used (the circuit gauge reads 0).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !proxy
        .metrics_text()
        .contains("linkgate_proxy_redis_circuit_open 0")
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(proxy.get("/warm").status, 302);
    forwarder.cut();
    // L1 still has /warm; /cold must come from the store after Redis fails fast.
    assert_eq!(proxy.get("/warm").status, 302);
    let started = std::time::Instant::now();
    assert_eq!(proxy.get("/cold").status, 302);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    for i in 0..5 {
        assert_eq!(proxy.get(&format!("/missing{i}")).status, 404);
    }
    assert_eq!(proxy.get("/cold").status, 302);
    let metrics = proxy.metrics_text();
    assert!(
        metrics.contains("linkgate_proxy_redis_circuit_open 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("linkgate_proxy_redis_circuit_opened_total 1"),
        "{metrics}"
    );
}
