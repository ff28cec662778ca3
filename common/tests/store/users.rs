use linkgate_common::domain::{
    Email, NewApiKey, RefreshToken, Role, RotateOutcome, Timestamp, TokenHash,
};
use linkgate_common::store::{Store, StoreError};

use linkgate_common::testing::user;

fn hash(n: u8) -> TokenHash {
    [n; 32]
}

fn token(
    user_id: linkgate_common::domain::UserId,
    h: u8,
    family: u8,
    expires_in_ms: i64,
) -> RefreshToken {
    let now = Timestamp::now();
    RefreshToken {
        token_hash: hash(h),
        user_id,
        family: [family; 16],
        expires_at: now.plus_millis(expires_in_ms),
        created_at: now,
        rotated_at: None,
        revoked_at: None,
    }
}

const HOUR: i64 = 3_600_000;

pub async fn users_are_found_by_id_and_normalised_email(store: &dyn Store) {
    let ann = user(store, "Ann@Example.com", Role::User).await;
    assert_eq!(ann.email.as_str(), "ann@example.com");
    let by_id = store.user_by_id(ann.id).await.unwrap().expect("by id");
    assert_eq!(by_id, ann);
    let by_email = store
        .user_by_email(&Email::parse("ANN@example.COM").unwrap())
        .await
        .unwrap()
        .expect("by email");
    assert_eq!(by_email.id, ann.id);
    assert_eq!(
        store
            .user_by_email(&Email::parse("bob@example.com").unwrap())
            .await,
        Ok(None)
    );
}

pub async fn a_taken_email_is_a_typed_conflict(store: &dyn Store) {
    user(store, "ann@example.com", Role::User).await;
    let err = store
        .create_user(&linkgate_common::domain::NewUser {
            email: Email::parse("ann@example.com").unwrap(),
            password_hash: "x".into(),
            role: Role::User,
        })
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::Conflict("email"));
}

pub async fn only_admins_are_counted_as_admins(store: &dyn Store) {
    assert_eq!(store.count_admins().await, Ok(0));
    user(store, "u@example.com", Role::User).await;
    user(store, "a@example.com", Role::Admin).await;
    assert_eq!(store.count_admins().await, Ok(1));
}

pub async fn a_refresh_token_rotates_once_and_reuse_revokes_the_family(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    store
        .insert_refresh_token(&token(ann.id, 1, 7, HOUR))
        .await
        .unwrap();
    let now = Timestamp::now();
    let exp = now.plus_millis(HOUR);
    assert_eq!(
        store
            .rotate_refresh_token(&hash(1), &hash(2), exp, now)
            .await,
        Ok(RotateOutcome::Rotated { user_id: ann.id })
    );
    assert_eq!(
        store
            .rotate_refresh_token(&hash(2), &hash(3), exp, now)
            .await,
        Ok(RotateOutcome::Rotated { user_id: ann.id })
    );
    // Token 1 was spent: presenting it again is theft or replay.
    assert_eq!(
        store
            .rotate_refresh_token(&hash(1), &hash(4), exp, now)
            .await,
        Ok(RotateOutcome::Reused { user_id: ann.id })
    );
    // ...and the whole family, including the newest token, is dead.
    assert_eq!(
        store
            .rotate_refresh_token(&hash(3), &hash(5), exp, now)
            .await,
        Ok(RotateOutcome::Invalid)
    );
    assert_eq!(
        store
            .rotate_refresh_token(&hash(99), &hash(98), exp, now)
            .await,
        Ok(RotateOutcome::Invalid)
    );
}

pub async fn expired_and_revoked_refresh_tokens_are_invalid(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    store
        .insert_refresh_token(&token(ann.id, 1, 1, -1))
        .await
        .unwrap();
    store
        .insert_refresh_token(&token(ann.id, 2, 2, HOUR))
        .await
        .unwrap();
    let now = Timestamp::now();
    let exp = now.plus_millis(HOUR);
    assert_eq!(
        store
            .rotate_refresh_token(&hash(1), &hash(10), exp, now)
            .await,
        Ok(RotateOutcome::Invalid)
    );
    store.revoke_user_refresh_tokens(ann.id, now).await.unwrap();
    assert_eq!(
        store
            .rotate_refresh_token(&hash(2), &hash(11), exp, now)
            .await,
        Ok(RotateOutcome::Invalid)
    );
}

pub async fn logout_revokes_the_whole_family(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    store
        .insert_refresh_token(&token(ann.id, 1, 3, HOUR))
        .await
        .unwrap();
    store
        .insert_refresh_token(&token(ann.id, 9, 4, HOUR))
        .await
        .unwrap();
    let now = Timestamp::now();
    let exp = now.plus_millis(HOUR);
    store
        .rotate_refresh_token(&hash(1), &hash(2), exp, now)
        .await
        .unwrap();
    assert_eq!(store.revoke_refresh_family(&hash(2), now).await, Ok(true));
    assert_eq!(store.revoke_refresh_family(&hash(77), now).await, Ok(false));
    assert_eq!(
        store
            .rotate_refresh_token(&hash(2), &hash(5), exp, now)
            .await,
        Ok(RotateOutcome::Invalid)
    );
    // Another session (family) of the same user is untouched.
    assert_eq!(
        store
            .rotate_refresh_token(&hash(9), &hash(10), exp, now)
            .await,
        Ok(RotateOutcome::Rotated { user_id: ann.id })
    );
}

pub async fn concurrent_rotations_of_one_token_yield_exactly_one_successor(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    store
        .insert_refresh_token(&token(ann.id, 1, 5, HOUR))
        .await
        .unwrap();
    let now = Timestamp::now();
    let exp = now.plus_millis(HOUR);
    let attempts: Vec<_> = (0..6u8)
        .map(|i| async move {
            store
                .rotate_refresh_token(&hash(1), &hash(100 + i), exp, now)
                .await
        })
        .collect();
    let results = futures::future::join_all(attempts).await;
    let rotated = results
        .iter()
        .filter(|r| matches!(r, Ok(RotateOutcome::Rotated { .. })))
        .count();
    assert_eq!(rotated, 1, "{results:?}");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

pub async fn api_keys_are_found_by_hash_until_revoked_by_their_owner(store: &dyn Store) {
    let ann = user(store, "ann@example.com", Role::User).await;
    let bob = user(store, "bob@example.com", Role::User).await;
    let key = store
        .create_api_key(&NewApiKey {
            user_id: ann.id,
            name: "deploy script".into(),
            prefix: "lg_abc12".into(),
            key_hash: hash(42),
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .api_key_by_hash(&hash(42))
            .await
            .unwrap()
            .map(|k| k.id),
        Some(key.id)
    );
    let dup = store
        .create_api_key(&NewApiKey {
            user_id: bob.id,
            name: "x".into(),
            prefix: "p".into(),
            key_hash: hash(42),
        })
        .await;
    assert_eq!(dup.unwrap_err(), StoreError::Conflict("api key"));
    let now = Timestamp::now();
    store.touch_api_key(key.id, now).await.unwrap();
    assert_eq!(
        store.list_api_keys(ann.id).await.unwrap()[0].last_used_at,
        Some(now)
    );
    assert_eq!(
        store.revoke_api_key(bob.id, key.id, now).await,
        Ok(false),
        "not bob's key"
    );
    assert_eq!(store.revoke_api_key(ann.id, key.id, now).await, Ok(true));
    assert_eq!(
        store.revoke_api_key(ann.id, key.id, now).await,
        Ok(false),
        "already revoked"
    );
    assert_eq!(store.api_key_by_hash(&hash(42)).await, Ok(None));
    assert!(store.list_api_keys(bob.id).await.unwrap().is_empty());
}
