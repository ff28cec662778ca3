//! The fraud review queue and confirmation.

use linkgate_common::clicks::TrendingClock;
use linkgate_common::clicks::batch::build_batch;
use linkgate_common::domain::{
    ClickId, Dimension, Email, LinkId, ReviewCandidate, ReviewState, ReviewThresholds, Role,
    StoredClick, Timestamp,
};
use linkgate_common::store::{Store, StoreError};
use linkgate_common::testing::{click_counts, new_link, stored_click, user};

const HOUR: i64 = Timestamp::MILLIS_PER_HOUR;
const THRESHOLDS: ReviewThresholds = ReviewThresholds {
    min_clicks: 10,
    suspicious_percent: 30,
};

fn click(link: LinkId, at: Timestamp, reasons: u32, bot: bool, country: &str) -> StoredClick {
    StoredClick {
        visitor: at.as_millis().unsigned_abs(),
        country: Some(country.to_owned()),
        device: if bot { "bot" } else { "desktop" }.into(),
        is_bot: bot,
        fraud_reasons: reasons,
        ..stored_click(link, at)
    }
}

async fn link(store: &dyn Store, code: &str) -> LinkId {
    let email = Email::parse("fraud-owner@example.com").unwrap();
    let owner = match store.user_by_email(&email).await.unwrap() {
        Some(u) => u,
        None => user(store, "fraud-owner@example.com", Role::User).await,
    };
    store
        .create_link(&new_link(&owner, code, "https://example.com/"))
        .await
        .unwrap()
        .id
}

fn candidate(link: LinkId, hour: Timestamp, burst: u64) -> ReviewCandidate {
    ReviewCandidate {
        link_id: link,
        hour,
        burst_clicks: burst,
    }
}

/// A link enters the queue when its hour crosses the share threshold or has burst clicks;
/// a dismissed review reopens only on evidence an hour after the decision.
pub async fn links_enter_the_queue_by_share_or_burst(store: &dyn Store) {
    let calm = link(store, "calm-link").await;
    let shady = link(store, "shady-link").await;
    let bursty = link(store, "bursty-link").await;
    let h = Timestamp::now().plus_millis(-72 * HOUR).hour_start();
    let mut clicks = Vec::new();
    for i in 0..20 {
        // calm: 2 of 20 suspicious (10%); shady: 8 of 20 (40%).
        clicks.push(click(
            calm,
            h.plus_millis(i * 1000),
            u32::from(i < 2),
            false,
            "DE",
        ));
        clicks.push(click(
            shady,
            h.plus_millis(i * 1000 + 1),
            u32::from(i < 8),
            false,
            "DE",
        ));
    }
    clicks.push(click(bursty, h.plus_millis(5), 1 << 7, false, "DE"));
    let clock = TrendingClock::new(HOUR);
    store
        .write_click_batch(&build_batch(clicks, &clock))
        .await
        .unwrap();
    let candidates = [
        candidate(calm, h, 0),
        candidate(shady, h, 0),
        candidate(bursty, h, 1),
    ];
    let opened = store
        .open_reviews(&candidates, THRESHOLDS, h)
        .await
        .unwrap();
    assert_eq!(opened, 2);
    let open = store.reviews(Some(ReviewState::Open), 10).await.unwrap();
    let mut ids: Vec<LinkId> = open.iter().map(|r| r.link_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [shady, bursty]);
    let shady_review = store.review(shady).await.unwrap().unwrap();
    assert_eq!(
        (shady_review.hour_total, shady_review.hour_suspicious),
        (20, 8)
    );
    assert_eq!(store.review(calm).await.unwrap(), None);

    let owner = store
        .user_by_email(&Email::parse("fraud-owner@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let dismissed = store
        .dismiss_review(shady, owner.id, "a campaign, not fraud", h.plus_millis(10))
        .await
        .unwrap();
    assert_eq!(dismissed.state, ReviewState::Dismissed);
    assert_eq!(dismissed.note.as_deref(), Some("a campaign, not fraud"));
    // New evidence right after the decision does not reopen it; an hour later it does.
    let reopened = store
        .open_reviews(&[candidate(shady, h, 0)], THRESHOLDS, h.plus_millis(60_000))
        .await
        .unwrap();
    assert_eq!(reopened, 0);
    let reopened = store
        .open_reviews(
            &[candidate(shady, h, 0)],
            THRESHOLDS,
            h.plus_millis(2 * HOUR),
        )
        .await
        .unwrap();
    assert_eq!(reopened, 1);
    assert_eq!(
        store.review(shady).await.unwrap().unwrap().state,
        ReviewState::Open
    );
    assert_eq!(
        store.dismiss_review(calm, owner.id, "x", h).await,
        Err(StoreError::NotFound)
    );
}

/// Confirming takes exactly the flagged clicks out of the hourly counters, breakdowns and
/// link total, once; human counts do not move; a second confirmation removes only clicks
/// flagged since.
pub async fn confirming_removes_exactly_the_flagged_clicks_once(store: &dyn Store) {
    let id = link(store, "confirm-me").await;
    let h = Timestamp::now().plus_millis(-72 * HOUR).hour_start();
    let clock = TrendingClock::new(HOUR);
    let mut clicks = Vec::new();
    for i in 0..30 {
        clicks.push(click(id, h.plus_millis(i * 1000), 0, false, "DE"));
    }
    for i in 0..12 {
        clicks.push(click(
            id,
            h.plus_millis(HOUR + i * 1000),
            1 << 4,
            false,
            "NL",
        ));
    }
    for i in 0..3 {
        clicks.push(click(
            id,
            h.plus_millis(HOUR + 50_000 + i),
            1 << 1,
            true,
            "NL",
        ));
    }
    store
        .write_click_batch(&build_batch(clicks, &clock))
        .await
        .unwrap();
    store
        .open_reviews(&[candidate(id, h.plus_millis(HOUR), 0)], THRESHOLDS, h)
        .await
        .unwrap();
    let before = store
        .hourly_counts(id, h, h.plus_millis(2 * HOUR))
        .await
        .unwrap();
    assert_eq!(before[1].total, 15);
    let owner = store
        .user_by_email(&Email::parse("fraud-owner@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let now = h.plus_millis(3 * HOUR);
    let removed = store
        .confirm_review(id, ClickId::at(now), owner.id, "click farm", now)
        .await
        .unwrap();
    assert_eq!(removed, 15);
    let after = store
        .hourly_counts(id, h, h.plus_millis(2 * HOUR))
        .await
        .unwrap();
    assert_eq!(after[0], before[0], "the clean hour is untouched");
    assert_eq!(
        (
            after[1].total,
            after[1].human,
            after[1].bot,
            after[1].suspicious
        ),
        (
            before[1].total - 15,
            before[1].human,
            before[1].bot - 3,
            before[1].suspicious - 15
        )
    );
    let countries = store
        .top_breakdown(
            id,
            Dimension::Country,
            h.day_start(),
            h.plus_millis(48 * HOUR),
            10,
        )
        .await
        .unwrap();
    assert!(
        countries
            .iter()
            .all(|(c, n)| (c == "DE" && *n == 30) || (c == "NL" && *n == 0)),
        "{countries:?}"
    );
    let (raw, total, hourly) = click_counts(store, id).await;
    assert_eq!(
        (raw, total, hourly),
        (45, 30, 30),
        "raw rows stay as evidence"
    );
    let review = store.review(id).await.unwrap().unwrap();
    assert_eq!(review.state, ReviewState::Confirmed);
    assert_eq!(review.confirmed_clicks, 15);

    // Again: nothing new, nothing removed. Then 4 more flagged clicks: only those.
    let again = store
        .confirm_review(id, ClickId::at(now.plus_millis(1)), owner.id, "again", now)
        .await
        .unwrap();
    assert_eq!(again, 0);
    // Four new flagged clicks, and one that arrives late (from a journal, say) with a time
    // before the first confirmation: the next confirmation takes out all five.
    let mut more: Vec<StoredClick> = (0..4)
        .map(|i| click(id, now.plus_millis(10 + i), 1 << 6, false, "NL"))
        .collect();
    more.push(click(id, h.plus_millis(HOUR + 30_500), 1 << 4, false, "NL"));
    store
        .write_click_batch(&build_batch(more, &clock))
        .await
        .unwrap();
    let later = now.plus_millis(HOUR);
    let removed = store
        .confirm_review(id, ClickId::at(later), owner.id, "still farming", later)
        .await
        .unwrap();
    assert_eq!(removed, 5);
    assert_eq!(
        store.review(id).await.unwrap().unwrap().confirmed_clicks,
        20
    );
    let (raw, total, hourly) = click_counts(store, id).await;
    assert_eq!((raw, total, hourly), (50, 30, 30));
    assert_eq!(
        store
            .confirm_review(LinkId(987_654), ClickId::at(later), owner.id, "x", later)
            .await,
        Err(StoreError::NotFound)
    );
}
