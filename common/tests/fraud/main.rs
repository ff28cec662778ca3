//! Fraud scoring against labelled data: a real User-Agent corpus, and a synthetic click
//! stream of normal visitors, bots, velocity abusers, repeaters, headless clients and HEAD
//! checkers, each with a known label. Precision and recall per rule are printed and held
//! to floors.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use linkgate_common::clicks::enrich::{EnrichSettings, Enricher, VisitorSalt};
use linkgate_common::clicks::fraud::{Scorer, reason};
use linkgate_common::domain::{ClickEvent, ClickId, ClickMethod, LinkId, Timestamp};
use linkgate_config::FraudSettings;

fn corpus(name: &str) -> Vec<String> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn enricher() -> Enricher {
    Enricher::new(EnrichSettings {
        store_raw_ip: false,
        truncate_ip: true,
        geoip_db: None,
    })
    .unwrap()
}

#[test]
fn the_user_agent_corpus_is_classified() {
    let (bots, browsers) = (corpus("ua-bots.txt"), corpus("ua-browsers.txt"));
    assert!(bots.len() >= 200 && browsers.len() >= 200);
    let mut e = enricher();
    let missed: Vec<&String> = bots.iter().filter(|ua| !e.user_agent(ua).is_bot).collect();
    let false_alarms: Vec<&String> = browsers
        .iter()
        .filter(|ua| e.user_agent(ua).is_bot)
        .collect();
    let bot_rate = 1.0 - missed.len() as f64 / bots.len() as f64;
    let browser_rate = false_alarms.len() as f64 / browsers.len() as f64;
    println!(
        "bots flagged {:.2}% ({} of {}), browsers flagged {:.2}% ({} of {})",
        bot_rate * 100.0,
        bots.len() - missed.len(),
        bots.len(),
        browser_rate * 100.0,
        false_alarms.len(),
        browsers.len()
    );
    assert!(bot_rate >= 0.99, "missed bots: {missed:#?}");
    assert!(
        browser_rate <= 0.01,
        "browsers taken for bots: {false_alarms:#?}"
    );
}

/// What a synthetic click is, by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Label {
    Normal,
    Bot,
    Velocity,
    Repeater,
    Headless,
    HeadCheck,
}

struct Stream {
    events: Vec<(ClickEvent, Label)>,
}

const T0: i64 = 1_800_000_000_000;
const BROWSER: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

fn event(
    at: i64,
    link: i64,
    ip: IpAddr,
    ua: Option<&str>,
    accept: bool,
    method: ClickMethod,
) -> ClickEvent {
    let at = Timestamp::from_millis(at);
    ClickEvent {
        click_id: ClickId::at(at),
        at,
        link_id: LinkId(link),
        client_ip: ip,
        user_agent: ua.map(Into::into),
        referrer: None,
        has_accept: accept,
        method,
        country: None,
        prefetch: false,
    }
}

/// Ten minutes of traffic over 50 links with a deterministic mix of behaviours.
fn stream() -> Stream {
    let bots = corpus("ua-bots.txt");
    let browsers = corpus("ua-browsers.txt");
    let mut events = Vec::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let span = 600_000;
    // 3,000 normal visitors: own address, a real browser, 1-3 clicks at least 20 s apart.
    for v in 0..3000u32 {
        let [_, _, a, b] = v.to_be_bytes();
        let ip = IpAddr::V4(Ipv4Addr::new(100, 64, a, b));
        let ua = &browsers[v as usize % browsers.len()];
        let start = i64::try_from(next(span - 60_000)).unwrap();
        for k in 0..=next(3) {
            let at = T0 + start + i64::try_from(k).unwrap() * 20_000;
            events.push((
                event(
                    at,
                    i64::try_from(next(50)).unwrap(),
                    ip,
                    Some(ua),
                    true,
                    ClickMethod::Get,
                ),
                Label::Normal,
            ));
        }
    }
    // 300 clicks from crawlers.
    for i in 0..300u32 {
        let ip = IpAddr::V4(Ipv4Addr::new(66, 249, 64, u8::try_from(i % 250).unwrap()));
        let at = T0 + i64::try_from(next(span)).unwrap();
        events.push((
            event(
                at,
                i64::try_from(next(50)).unwrap(),
                ip,
                Some(&bots[i as usize % bots.len()]),
                true,
                ClickMethod::Get,
            ),
            Label::Bot,
        ));
    }
    // 5 velocity abusers: 300 clicks each within one minute, rotating User-Agents and links.
    for a in 0..5u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(198, 18, 0, a));
        let start = T0 + i64::from(a) * 100_000;
        for i in 0..300i64 {
            let ua = &browsers[usize::try_from(i).unwrap() % browsers.len()];
            events.push((
                event(
                    start + i * 200,
                    i % 50,
                    ip,
                    Some(ua),
                    true,
                    ClickMethod::Get,
                ),
                Label::Velocity,
            ));
        }
    }
    // 40 repeaters: one visitor clicking one link 12 times within 6 s.
    for r in 0..40u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, r));
        let start = T0 + i64::try_from(next(span - 10_000)).unwrap();
        for i in 0..12i64 {
            events.push((
                event(
                    start + i * 500,
                    i64::from(r) % 50,
                    ip,
                    Some(BROWSER),
                    true,
                    ClickMethod::Get,
                ),
                Label::Repeater,
            ));
        }
    }
    // 200 headless scripts without User-Agent or Accept, and 200 HEAD link checkers.
    for i in 0..200u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, i));
        let at = T0 + i64::try_from(next(span)).unwrap();
        events.push((
            event(at, i64::from(i) % 50, ip, None, false, ClickMethod::Get),
            Label::Headless,
        ));
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 3, i));
        let at = T0 + i64::try_from(next(span)).unwrap();
        events.push((
            event(
                at,
                i64::from(i) % 50,
                ip,
                Some(BROWSER),
                true,
                ClickMethod::Head,
            ),
            Label::HeadCheck,
        ));
    }
    events.sort_by_key(|(e, _)| e.at);
    Stream { events }
}

#[test]
fn each_rule_finds_its_own_kind_of_traffic_and_little_else() {
    let stream = stream();
    let mut enricher = enricher();
    let mut scorer = Scorer::new(FraudSettings::default());
    let salt: VisitorSalt = [7u8; 32];
    // Per rule: (flagged, flagged and of the rule's label, labelled).
    let rules: [(&str, u32, Label); 5] = [
        (
            "ip_velocity",
            reason::IP_VELOCITY_10S | reason::IP_VELOCITY_MINUTE,
            Label::Velocity,
        ),
        ("repeat_visitor", reason::REPEAT_VISITOR, Label::Repeater),
        ("no_user_agent", reason::NO_USER_AGENT, Label::Headless),
        ("no_accept", reason::NO_ACCEPT, Label::Headless),
        ("head_request", reason::HEAD, Label::HeadCheck),
    ];
    let mut counts: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    let mut normal = (0u64, 0u64);
    let mut bots = (0u64, 0u64);
    for (event, label) in &stream.events {
        let mut click = enricher.enrich(event, &salt);
        click.fraud_reasons = scorer.score(event, &click);
        for (name, bits, rule_label) in rules {
            let c = counts.entry(name).or_default();
            let flagged = click.fraud_reasons & bits != 0;
            c.0 += u64::from(flagged);
            c.1 += u64::from(flagged && *label == rule_label);
            c.2 += u64::from(*label == rule_label);
        }
        match label {
            Label::Normal => {
                normal.0 += 1;
                normal.1 += u64::from(click.fraud_reasons != 0 || click.is_bot);
            }
            Label::Bot => {
                bots.0 += 1;
                bots.1 += u64::from(click.is_bot);
            }
            _ => {}
        }
    }
    println!(
        "{:<16} {:>8} {:>9} {:>7}",
        "rule", "flagged", "precision", "recall"
    );
    let mut failures = Vec::new();
    for (name, _, label) in rules {
        let (flagged, right, labelled) = counts[name];
        let precision = right as f64 / (flagged.max(1)) as f64;
        let recall = right as f64 / labelled.max(1) as f64;
        println!("{name:<16} {flagged:>8} {precision:>9.3} {recall:>7.3}");
        // Velocity and repeat rules flag from the click after the threshold on, so their
        // recall is bounded by (clicks - threshold) / clicks by design.
        let recall_floor = match label {
            Label::Velocity => 0.75,
            Label::Repeater => 0.5,
            _ => 0.99,
        };
        if precision < 0.98 || recall < recall_floor {
            failures.push(format!(
                "{name}: precision {precision:.3}, recall {recall:.3}"
            ));
        }
    }
    let bot_recall = bots.1 as f64 / bots.0 as f64;
    let false_positive = normal.1 as f64 / normal.0 as f64;
    println!(
        "bot_user_agent   recall {bot_recall:.3}; normal clicks flagged by any rule {:.3}%",
        false_positive * 100.0
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert!(bot_recall >= 0.99, "bot recall {bot_recall}");
    assert!(
        false_positive <= 0.005,
        "normal visitors flagged: {false_positive}"
    );
}

/// Two nodes see one abuser: with Redis the address counts are shared, so the second node
/// flags the clicks beyond the threshold that neither node alone would reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_address_counts_through_redis() {
    use linkgate_common::cache::RedisTier;
    use linkgate_config::RedisSettings;

    let redis_settings = RedisSettings {
        key_prefix: linkgate_common::testing::redis_prefix(),
        timeout_ms: 1000,
        ..RedisSettings::default()
    };
    let redis = RedisTier::new(
        &linkgate_common::testing::redis_url(),
        &redis_settings,
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    redis.connect().await.unwrap();
    let fraud = FraudSettings {
        ip_per_10s: 20,
        ip_per_minute: 1000,
        repeat_max: 1000,
        ..FraudSettings::default()
    };
    let mut enricher = enricher();
    let salt: VisitorSalt = [3u8; 32];
    let ip = IpAddr::V4(Ipv4Addr::new(198, 18, 9, 9));
    // 15 clicks on node A, then 15 on node B, all inside one 10-second window.
    let t0 = 1_800_000_000_000;
    let batch = |start: i64| {
        let events: Vec<ClickEvent> = (0..15)
            .map(|i| {
                event(
                    start + i * 100,
                    i % 7,
                    ip,
                    Some(BROWSER),
                    true,
                    ClickMethod::Get,
                )
            })
            .collect();
        events
    };
    let mut flagged = Vec::new();
    for (node, start) in [
        (Scorer::new(fraud.clone()), t0),
        (Scorer::new(fraud.clone()), t0 + 2_000),
    ] {
        let mut node = node;
        let events = batch(start);
        let clicks: Vec<_> = events.iter().map(|e| enricher.enrich(e, &salt)).collect();
        let keys: Vec<u64> = events
            .iter()
            .map(|e| linkgate_common::clicks::enrich::visitor_hash(&salt, e.client_ip, ""))
            .collect();
        let mut shared = node
            .shared_counts(&redis, &keys, &clicks, std::time::Duration::from_secs(2))
            .await
            .unwrap();
        let n = events
            .iter()
            .zip(&clicks)
            .enumerate()
            .filter(|(i, (e, c))| {
                node.score_with(e, c, Some((&mut shared, *i))) & reason::IP_VELOCITY_10S != 0
            })
            .count();
        flagged.push(n);
    }
    assert_eq!(flagged, [0, 10], "node B sees node A's 15 clicks");
    // Each node on its own would have flagged nothing.
    let mut alone = Scorer::new(fraud);
    let events = batch(t0 + 4_000);
    let local = events
        .iter()
        .filter(|e| alone.score(e, &enricher.enrich(e, &salt)) != 0)
        .count();
    assert_eq!(local, 0);
}
