use linkgate_common::domain::{
    LinkDomain, LinkPatch, LinkState, RedirectStatus, Role, ShortCode, Tag, Timestamp,
};
use linkgate_common::store::{LinkQuery, Store, StoreError, create_link_with_retry};

use linkgate_common::testing::{code, domain, new_link, url, user};

pub async fn a_link_round_trips_with_every_field(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    let expires = Timestamp::parse_rfc3339("2030-01-01T00:00:00Z").unwrap();
    let mut new = new_link(&ann, "Launch-2026", "https://example.com/launch?utm=x#top");
    new.title = Some("Launch — day one 🚀".into());
    new.tags = Tag::parse_list(&["promo", "q4"]).unwrap();
    new.redirect_status = Some(RedirectStatus::PermanentRedirect);
    new.forward_query = true;
    new.password_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    new.expires_at = Some(expires);
    new.max_clicks = Some(100);
    new.fallback_url = Some(url("https://example.com/expired"));
    let created = store.create_link(&new).await.unwrap();
    assert_eq!(created.state, LinkState::Active);
    assert_eq!(created.clicks, 0);

    let fetched = store
        .link_by_code(&domain(), &code("Launch-2026"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fetched, created);
    assert_eq!(
        store.link_by_id(created.id).await.unwrap().unwrap(),
        created
    );
    assert_eq!(
        fetched.tags.iter().map(Tag::as_str).collect::<Vec<_>>(),
        ["promo", "q4"]
    );
    assert_eq!(fetched.title.as_deref(), Some("Launch — day one 🚀"));

    let changes = store.changes_since(0, 100).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].link_id, created.id);
    assert_eq!(changes[0].code.as_str(), "Launch-2026");
    assert_eq!(store.last_change_seq().await, Ok(changes[0].seq));
}

pub async fn codes_are_unique_per_domain_and_case_sensitive(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    store
        .create_link(&new_link(&ann, "abc", "https://a.example/"))
        .await
        .unwrap();
    let dup = store
        .create_link(&new_link(&ann, "abc", "https://b.example/"))
        .await;
    assert_eq!(dup.unwrap_err(), StoreError::Conflict("code"));
    // Different case: a different code.
    store
        .create_link(&new_link(&ann, "ABC", "https://c.example/"))
        .await
        .unwrap();
    // Same code on another domain: a different link.
    let mut other = new_link(&ann, "abc", "https://d.example/");
    other.domain = LinkDomain::parse("go.example.com").unwrap();
    store.create_link(&other).await.unwrap();
    let upper = store
        .link_by_code(&domain(), &code("ABC"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(upper.target.as_str(), "https://c.example/");
    assert_eq!(store.link_by_code(&domain(), &code("aBc")).await, Ok(None));
    // The failed insert left no change row behind.
    assert_eq!(store.changes_since(0, 100).await.unwrap().len(), 3);
}

pub async fn concurrent_inserts_of_one_code_let_exactly_one_succeed(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let link = new_link(&ann, "race", &format!("https://example.com/{i}"));
            async move { store.create_link(&link).await }
        })
        .collect();
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| **r == Err(StoreError::Conflict("code")))
        .count();
    assert_eq!((won, conflicts), (1, 7), "{results:?}");
    let stored = store
        .link_by_code(&domain(), &code("race"))
        .await
        .unwrap()
        .unwrap();
    let winner = results.into_iter().find_map(Result::ok).unwrap();
    assert_eq!(stored, winner);
}

pub async fn a_generated_code_is_retried_on_collision(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    store
        .create_link(&new_link(&ann, "taken01", "https://a.example/"))
        .await
        .unwrap();
    let mut codes = vec![code("fresh01"), code("taken01")];
    let link = create_link_with_retry(
        store,
        new_link(&ann, "ignored", "https://b.example/"),
        || codes.pop().unwrap(),
        3,
    )
    .await
    .unwrap();
    assert_eq!(link.code.as_str(), "fresh01");

    let exhausted = create_link_with_retry(
        store,
        new_link(&ann, "ignored", "https://c.example/"),
        || code("taken01"),
        3,
    )
    .await;
    assert_eq!(exhausted.unwrap_err(), StoreError::Conflict("code"));

    let generated = create_link_with_retry(
        store,
        new_link(&ann, "ignored", "https://d.example/"),
        || ShortCode::generate(7),
        3,
    )
    .await
    .unwrap();
    assert_eq!(generated.code.as_str().len(), 7);
}

pub async fn an_update_applies_the_patch_and_writes_one_change_row(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    let link = store
        .create_link(&new_link(&ann, "edit-me", "https://a.example/"))
        .await
        .unwrap();
    let seq = store.last_change_seq().await.unwrap();
    let patch = LinkPatch {
        target: Some(url("https://b.example/new")),
        title: Some(Some("New".into())),
        tags: Some(Tag::parse_list(&["x"]).unwrap()),
        redirect_status: Some(Some(RedirectStatus::MovedPermanently)),
        max_clicks: Some(Some(5)),
        expires_at: Some(Some(Timestamp::from_millis(4_102_444_800_000))),
        state: Some(LinkState::Disabled),
        ..LinkPatch::default()
    };
    let updated = store.update_link(link.id, &patch).await.unwrap();
    assert_eq!(updated.target.as_str(), "https://b.example/new");
    assert_eq!(updated.title.as_deref(), Some("New"));
    assert_eq!(updated.state, LinkState::Disabled);
    assert!(updated.updated_at >= link.updated_at);
    assert_eq!(store.link_by_id(link.id).await.unwrap().unwrap(), updated);

    // Clearing nullable fields.
    let cleared = store
        .update_link(
            link.id,
            &LinkPatch {
                title: Some(None),
                tags: Some(Vec::new()),
                max_clicks: Some(None),
                expires_at: Some(None),
                redirect_status: Some(None),
                ..LinkPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (cleared.title, cleared.max_clicks, cleared.expires_at),
        (None, None, None)
    );
    assert!(cleared.tags.is_empty());
    assert_eq!(cleared.redirect_status, None);

    let changes = store.changes_since(seq, 100).await.unwrap();
    assert_eq!(changes.len(), 2);
    assert!(
        changes
            .iter()
            .all(|c| c.link_id == link.id && c.kind.as_str() == "updated")
    );
}

pub async fn bans_and_unbans_are_recorded_as_such(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    let link = store
        .create_link(&new_link(&ann, "spam", "https://a.example/"))
        .await
        .unwrap();
    let ban = LinkPatch {
        state: Some(LinkState::Banned),
        ..LinkPatch::default()
    };
    store.update_link(link.id, &ban).await.unwrap();
    // Switching a banned link on does not lift the ban; only an explicit unban does.
    let switch_on = LinkPatch {
        state: Some(LinkState::Active),
        ..LinkPatch::default()
    };
    let still = store.update_link(link.id, &switch_on).await.unwrap();
    assert_eq!(still.state, LinkState::Banned);
    let unban = LinkPatch {
        state: Some(LinkState::Active),
        lift_ban: true,
        ..LinkPatch::default()
    };
    store.update_link(link.id, &unban).await.unwrap();
    let kinds: Vec<_> = store
        .changes_since(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|c| c.kind.as_str())
        .collect();
    assert_eq!(kinds, ["created", "banned", "unbanned"]);
}

pub async fn a_no_op_update_writes_no_change_row(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    let link = store
        .create_link(&new_link(&ann, "same", "https://a.example/"))
        .await
        .unwrap();
    let seq = store.last_change_seq().await.unwrap();
    let same = LinkPatch {
        target: Some(url("https://a.example/")),
        ..LinkPatch::default()
    };
    assert_eq!(store.update_link(link.id, &same).await.unwrap(), link);
    assert_eq!(store.last_change_seq().await, Ok(seq));
}

pub async fn a_deleted_link_keeps_its_code_taken(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    let link = store
        .create_link(&new_link(&ann, "gone", "https://a.example/"))
        .await
        .unwrap();
    store.delete_link(link.id).await.unwrap();
    let stored = store
        .link_by_code(&domain(), &code("gone"))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.deleted_at.is_some());
    assert_eq!(
        store
            .create_link(&new_link(&ann, "gone", "https://b.example/"))
            .await
            .unwrap_err(),
        StoreError::Conflict("code")
    );
    let kinds: Vec<_> = store
        .changes_since(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|c| c.kind.as_str())
        .collect();
    assert_eq!(kinds, ["created", "deleted"]);
    assert!(
        store
            .list_links(&LinkQuery {
                owner: Some(ann.id),
                limit: 10,
                ..LinkQuery::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn updating_or_deleting_a_missing_link_is_not_found_and_writes_nothing(
    store: &dyn Store,
) {
    let ann = user(store, "ann@example.com", Role::User).await;
    let link = store
        .create_link(&new_link(&ann, "once", "https://a.example/"))
        .await
        .unwrap();
    store.delete_link(link.id).await.unwrap();
    let seq = store.last_change_seq().await.unwrap();
    let patch = LinkPatch {
        forward_query: Some(true),
        ..LinkPatch::default()
    };
    assert_eq!(
        store.update_link(link.id, &patch).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.delete_link(link.id).await, Err(StoreError::NotFound));
    let missing = linkgate_common::domain::LinkId(987_654);
    assert_eq!(
        store.update_link(missing, &patch).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.last_change_seq().await, Ok(seq));
}

pub async fn links_are_listed_by_owner_tag_and_search_with_a_cursor(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    let bob = user(store, "bob@example.com", Role::User).await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let mut link = new_link(
            &ann,
            &format!("ann{i:02}"),
            &format!("https://example.com/{i}"),
        );
        if i % 5 == 0 {
            link.tags = Tag::parse_list(&["five"]).unwrap();
            link.title = Some(format!("Quarterly Report {i}"));
        }
        ids.push(store.create_link(&link).await.unwrap().id);
    }
    store
        .create_link(&new_link(&bob, "bob01", "https://example.com/bob"))
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_links(&LinkQuery {
                owner: Some(ann.id),
                before,
                limit: 10,
                ..LinkQuery::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        before = page.last().map(|l| l.id);
        seen.extend(page.iter().map(|l| l.id));
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, every link once");

    let tagged = store
        .list_links(&LinkQuery {
            owner: Some(ann.id),
            tag: Some(Tag::parse("five").unwrap()),
            limit: 100,
            ..LinkQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(tagged.len(), 5);
    let found = store
        .list_links(&LinkQuery {
            owner: Some(ann.id),
            search: Some("quarterly REPORT 1".into()),
            limit: 100,
            ..LinkQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 2, "titles 10 and 15");
    let all = store
        .list_links(&LinkQuery {
            limit: 1000,
            ..LinkQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 26, "an administrator sees everyone's links");
    let bobs = store
        .list_links(&LinkQuery {
            owner: Some(bob.id),
            search: Some("ann".into()),
            limit: 10,
            ..LinkQuery::default()
        })
        .await
        .unwrap();
    assert!(bobs.is_empty(), "search never crosses owners");
}

pub async fn search_treats_wildcards_literally(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    let mut a = new_link(&ann, "pct", "https://example.com/a");
    a.title = Some("50% off_now!".into());
    store.create_link(&a).await.unwrap();
    let mut b = new_link(&ann, "plain", "https://example.com/b");
    b.title = Some("500 offXnow".into());
    store.create_link(&b).await.unwrap();
    for (needle, expected) in [
        ("50%", 1),
        ("%", 1),
        ("off_", 1),
        ("_", 1),
        ("!", 1),
        ("o", 2),
    ] {
        let found = store
            .list_links(&LinkQuery {
                owner: Some(ann.id),
                search: Some(needle.into()),
                limit: 10,
                ..LinkQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(found.len(), expected, "search {needle:?}");
    }
}

pub async fn bulk_created_links_get_ids_tags_and_change_rows(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    let links: Vec<_> = (0..1_200)
        .map(|i| {
            let mut l = new_link(
                &ann,
                &format!("bulk{i:04}"),
                &format!("https://example.com/{i}"),
            );
            if i % 100 == 0 {
                l.tags = Tag::parse_list(&["hundred"]).unwrap();
            }
            l
        })
        .collect();
    let created = store.create_links_bulk(&links).await.unwrap();
    assert_eq!(created.len(), 1_200);
    for (new, link) in links.iter().zip(&created) {
        assert_eq!(link.code, new.code);
        assert_eq!(
            store.link_by_id(link.id).await.unwrap().as_ref(),
            Some(link)
        );
    }
    let tagged = store
        .list_links(&LinkQuery {
            tag: Some(Tag::parse("hundred").unwrap()),
            limit: 100,
            ..LinkQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(tagged.len(), 12);
    assert_eq!(store.changes_since(0, 5_000).await.unwrap().len(), 1_200);
}

pub async fn a_bulk_create_with_a_taken_code_creates_nothing(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    store
        .create_link(&new_link(&ann, "taken", "https://example.com/"))
        .await
        .unwrap();
    let links = vec![
        new_link(&ann, "fresh1", "https://example.com/1"),
        new_link(&ann, "taken", "https://example.com/2"),
    ];
    assert_eq!(
        store.create_links_bulk(&links).await.unwrap_err(),
        StoreError::Conflict("code")
    );
    assert_eq!(
        store.link_by_code(&domain(), &code("fresh1")).await,
        Ok(None)
    );
    assert_eq!(store.changes_since(0, 10).await.unwrap().len(), 1);
}
