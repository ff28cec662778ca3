//! Users, refresh tokens and API keys.

use async_trait::async_trait;

use super::value::{Row, params};
use super::{Backend, Conn, SqlStore, finish};
use crate::domain::{
    ApiKey, ApiKeyId, Email, NewApiKey, NewUser, RefreshToken, Role, RotateOutcome, Timestamp,
    TokenHash, User, UserId,
};
use crate::store::{StoreError, StoreResult, UserStore};

const USER_COLUMNS: &str = "id, email, password_hash, role, created_at, disabled";
const API_KEY_COLUMNS: &str =
    "id, user_id, name, prefix, key_hash, created_at, last_used_at, revoked_at";

fn user_from_row(row: &Row) -> StoreResult<User> {
    Ok(User {
        id: UserId(row.i64(0)?),
        email: Email::parse(&row.str(1)?)
            .map_err(|_| StoreError::Corrupt("invalid stored e-mail".into()))?,
        password_hash: row.str(2)?,
        role: Role::parse(&row.str(3)?)
            .ok_or_else(|| StoreError::Corrupt("invalid stored role".into()))?,
        created_at: row.ts(4)?,
        disabled: row.bool(5)?,
    })
}

fn api_key_from_row(row: &Row) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: ApiKeyId(row.i64(0)?),
        user_id: UserId(row.i64(1)?),
        name: row.str(2)?,
        prefix: row.str(3)?,
        key_hash: row.array(4)?,
        created_at: row.ts(5)?,
        last_used_at: row.opt_ts(6)?,
        revoked_at: row.opt_ts(7)?,
    })
}

#[async_trait]
impl<B: Backend> UserStore for SqlStore<B> {
    async fn create_user(&self, user: &NewUser) -> StoreResult<User> {
        let now = Timestamp::now();
        let done = self
            .exec(
                "INSERT INTO users (email, password_hash, role, disabled, created_at) \
                 VALUES (?, ?, ?, 0, ?)",
                params![
                    user.email.as_str(),
                    &user.password_hash,
                    user.role.as_str(),
                    now
                ],
            )
            .await?;
        Ok(User {
            id: UserId(done.last_insert_id),
            email: user.email.clone(),
            password_hash: user.password_hash.clone(),
            role: user.role,
            created_at: now,
            disabled: false,
        })
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        self.query_one(&sql, params![id])
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn user_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?");
        self.query_one(&sql, params![email.as_str()])
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn count_admins(&self) -> StoreResult<u64> {
        let row = self
            .query_one(
                "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0",
                params![],
            )
            .await?;
        row.map_or(Ok(0), |r| r.u64(0))
    }

    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        self.exec(
            "INSERT INTO refresh_tokens \
             (token_hash, user_id, family, expires_at, created_at, rotated_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            params![
                &token.token_hash,
                token.user_id,
                &token.family,
                token.expires_at,
                token.created_at,
                token.rotated_at,
                token.revoked_at
            ],
        )
        .await
        .map(drop)
    }

    async fn rotate_refresh_token(
        &self,
        presented: &TokenHash,
        next_hash: &TokenHash,
        next_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<RotateOutcome> {
        let mut conn = self.begin().await?;
        let result = rotate_in_tx::<B>(&mut conn, presented, next_hash, next_expires_at, now).await;
        finish(&mut conn, result).await
    }

    async fn revoke_refresh_family(
        &self,
        presented: &TokenHash,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let Some(row) = self
            .query_one(
                "SELECT family FROM refresh_tokens WHERE token_hash = ?",
                params![presented],
            )
            .await?
        else {
            return Ok(false);
        };
        let family: [u8; 16] = row.array(0)?;
        self.exec(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
            params![now, &family],
        )
        .await?;
        Ok(true)
    }

    async fn revoke_user_refresh_tokens(&self, user: UserId, now: Timestamp) -> StoreResult<()> {
        self.exec(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            params![now, user],
        )
        .await
        .map(drop)
    }

    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<ApiKey> {
        let now = Timestamp::now();
        let done = self
            .exec(
                "INSERT INTO api_keys (user_id, name, prefix, key_hash, created_at) \
                 VALUES (?, ?, ?, ?, ?)",
                params![key.user_id, &key.name, &key.prefix, &key.key_hash, now],
            )
            .await?;
        Ok(ApiKey {
            id: ApiKeyId(done.last_insert_id),
            user_id: key.user_id,
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            key_hash: key.key_hash,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        })
    }

    async fn api_key_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<ApiKey>> {
        let sql = format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL"
        );
        self.query_one(&sql, params![hash])
            .await?
            .as_ref()
            .map(api_key_from_row)
            .transpose()
    }

    async fn list_api_keys(&self, user: UserId) -> StoreResult<Vec<ApiKey>> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE user_id = ? ORDER BY id");
        self.query(&sql, params![user])
            .await?
            .iter()
            .map(api_key_from_row)
            .collect()
    }

    async fn revoke_api_key(
        &self,
        user: UserId,
        id: ApiKeyId,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let done = self
            .exec(
                "UPDATE api_keys SET revoked_at = ? \
                 WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
                params![now, id, user],
            )
            .await?;
        Ok(done.affected == 1)
    }

    async fn touch_api_key(&self, id: ApiKeyId, now: Timestamp) -> StoreResult<()> {
        self.exec(
            "UPDATE api_keys SET last_used_at = ? WHERE id = ?",
            params![now, id],
        )
        .await
        .map(drop)
    }
}

async fn rotate_in_tx<B: Backend>(
    conn: &mut B::Conn,
    presented: &TokenHash,
    next_hash: &TokenHash,
    next_expires_at: Timestamp,
    now: Timestamp,
) -> StoreResult<RotateOutcome> {
    let sql = format!(
        "SELECT user_id, family, expires_at, rotated_at, revoked_at FROM refresh_tokens \
         WHERE token_hash = ?{}",
        B::DIALECT.for_update()
    );
    let rows = conn.query(&sql, params![presented]).await?;
    let Some(row) = rows.first() else {
        return Ok(RotateOutcome::Invalid);
    };
    let user_id = UserId(row.i64(0)?);
    let family: [u8; 16] = row.array(1)?;
    let expires_at = row.ts(2)?;
    let rotated = !row.is_null(3)?;
    let revoked = !row.is_null(4)?;
    if revoked || expires_at <= now {
        return Ok(RotateOutcome::Invalid);
    }
    if rotated {
        conn.exec(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
            params![now, &family],
        )
        .await?;
        return Ok(RotateOutcome::Reused { user_id });
    }
    conn.exec(
        "UPDATE refresh_tokens SET rotated_at = ? WHERE token_hash = ?",
        params![now, presented],
    )
    .await?;
    conn.exec(
        "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at, created_at) \
         VALUES (?, ?, ?, ?, ?)",
        params![next_hash, user_id, &family, next_expires_at, now],
    )
    .await?;
    Ok(RotateOutcome::Rotated { user_id })
}
