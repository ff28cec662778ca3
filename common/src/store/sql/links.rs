//! Links, tags and the change log.

use async_trait::async_trait;

use super::value::{Row, Value, params};
use super::{Backend, Conn, ROWS_PER_STATEMENT, SqlStore, finish, multi_row_insert, page_size};
use crate::domain::{
    ChangeKind, Link, LinkChange, LinkDomain, LinkId, LinkPatch, LinkState, NewLink,
    RedirectStatus, ShortCode, Tag, TargetUrl, Timestamp, UserId,
};
use crate::store::{LinkQuery, LinkStore, StoreError, StoreResult};

/// Columns of a link row, tags folded into one comma-separated column (tags never contain a
/// comma) so a lookup is one query. `GROUP_CONCAT` is spelled the same in SQLite and MySQL.
const LINK_SELECT: &str = "SELECT l.id, l.owner_id, l.domain, l.code, l.target, l.title, \
    l.redirect_status, l.forward_query, l.password_hash, l.expires_at, l.max_clicks, \
    l.fallback_url, l.state, l.clicks, l.created_at, l.updated_at, l.deleted_at, \
    (SELECT GROUP_CONCAT(t.tag) FROM link_tags t WHERE t.link_id = l.id) \
    FROM links l";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("invalid stored {what}"))
}

fn link_from_row(row: &Row) -> StoreResult<Link> {
    let mut tags = match row.opt_str(17)? {
        Some(joined) => joined
            .split(',')
            .map(|t| Tag::parse(t).map_err(|_| corrupt("tag")))
            .collect::<StoreResult<Vec<_>>>()?,
        None => Vec::new(),
    };
    tags.sort();
    Ok(Link {
        id: LinkId(row.i64(0)?),
        owner_id: UserId(row.i64(1)?),
        domain: LinkDomain::parse(&row.str(2)?).map_err(|_| corrupt("domain"))?,
        code: ShortCode::parse_any_length(&row.str(3)?).map_err(|_| corrupt("code"))?,
        target: TargetUrl::from_stored(&row.str(4)?).map_err(|_| corrupt("target"))?,
        title: row.opt_str(5)?,
        tags,
        redirect_status: row
            .opt_i64(6)?
            .map(|s| {
                u16::try_from(s)
                    .ok()
                    .and_then(RedirectStatus::from_code)
                    .ok_or_else(|| corrupt("redirect status"))
            })
            .transpose()?,
        forward_query: row.bool(7)?,
        password_hash: row.opt_str(8)?,
        expires_at: row.opt_ts(9)?,
        max_clicks: row.opt_u64(10)?,
        fallback_url: row
            .opt_str(11)?
            .map(|u| TargetUrl::from_stored(&u).map_err(|_| corrupt("fallback URL")))
            .transpose()?,
        state: LinkState::parse(&row.str(12)?).ok_or_else(|| corrupt("state"))?,
        clicks: row.u64(13)?,
        created_at: row.ts(14)?,
        updated_at: row.ts(15)?,
        deleted_at: row.opt_ts(16)?,
    })
}

async fn record_change<C: Conn>(conn: &mut C, link: &Link, kind: ChangeKind) -> StoreResult<()> {
    conn.exec(
        "INSERT INTO link_changes (link_id, domain, code, kind, at) VALUES (?, ?, ?, ?, ?)",
        params![
            link.id,
            link.domain.as_str(),
            link.code.as_str(),
            kind.as_str(),
            link.updated_at
        ],
    )
    .await
    .map(drop)
}

async fn insert_tags<C: Conn>(conn: &mut C, id: LinkId, tags: &[Tag]) -> StoreResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let sql = super::multi_row_insert("INSERT INTO link_tags (link_id, tag)", 2, tags.len());
    let params: Vec<Value> = tags
        .iter()
        .flat_map(|t| [Value::from(id), Value::from(t.as_str())])
        .collect();
    conn.exec(&sql, params).await.map(drop)
}

async fn load_for_update<B: Backend>(conn: &mut B::Conn, id: LinkId) -> StoreResult<Link> {
    let sql = format!(
        "{LINK_SELECT} WHERE l.id = ? AND l.deleted_at IS NULL{}",
        B::DIALECT.for_update()
    );
    let rows = conn.query(&sql, params![id]).await?;
    rows.first()
        .map(link_from_row)
        .transpose()?
        .ok_or(StoreError::NotFound)
}

#[async_trait]
impl<B: Backend> LinkStore for SqlStore<B> {
    async fn create_link(&self, new: &NewLink) -> StoreResult<Link> {
        let now = Timestamp::now();
        let mut conn = self.begin().await?;
        let result = async {
            let done = conn
                .exec(
                    "INSERT INTO links (owner_id, domain, code, target, title, redirect_status, \
                     forward_query, password_hash, expires_at, max_clicks, fallback_url, state, \
                     clicks, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    new_link_params(new, now),
                )
                .await?;
            let link = link_from_new(LinkId(done.last_insert_id), new, now);
            insert_tags(&mut conn, link.id, &link.tags).await?;
            record_change(&mut conn, &link, ChangeKind::Created).await?;
            Ok(link)
        }
        .await;
        finish(&mut conn, result).await
    }

    async fn create_links_bulk(&self, links: &[NewLink]) -> StoreResult<Vec<Link>> {
        let now = Timestamp::now();
        let mut conn = self.begin().await?;
        let mut created = Vec::with_capacity(links.len());
        let result = async {
            for chunk in links.chunks(ROWS_PER_STATEMENT) {
                let sql = multi_row_insert(
                    "INSERT INTO links (owner_id, domain, code, target, title, redirect_status, \
                     forward_query, password_hash, expires_at, max_clicks, fallback_url, state, \
                     clicks, created_at, updated_at)",
                    15,
                    chunk.len(),
                );
                let params: Vec<Value> =
                    chunk.iter().flat_map(|l| new_link_params(l, now)).collect();
                conn.exec(&sql, params).await?;
                // Ids come back by key: auto-increment ids of a multi-row insert are only
                // guaranteed consecutive under some lock modes.
                let pairs = vec!["(?, ?)"; chunk.len()].join(", ");
                let sql =
                    format!("SELECT id, domain, code FROM links WHERE (domain, code) IN ({pairs})");
                let params: Vec<Value> = chunk
                    .iter()
                    .flat_map(|l| [Value::from(l.domain.as_str()), Value::from(l.code.as_str())])
                    .collect();
                let mut ids = std::collections::HashMap::with_capacity(chunk.len());
                for row in conn.query(&sql, params).await? {
                    ids.insert((row.str(1)?, row.str(2)?), LinkId(row.i64(0)?));
                }
                let first = created.len();
                for l in chunk {
                    let key = (l.domain.as_str().to_owned(), l.code.as_str().to_owned());
                    let id = *ids
                        .get(&key)
                        .ok_or(StoreError::Corrupt("inserted link not found".into()))?;
                    created.push(link_from_new(id, l, now));
                }
                let tag_rows: Vec<Value> = created[first..]
                    .iter()
                    .flat_map(|l| {
                        l.tags
                            .iter()
                            .flat_map(|t| [Value::from(l.id), Value::from(t.as_str())])
                    })
                    .collect();
                if !tag_rows.is_empty() {
                    let sql = multi_row_insert(
                        "INSERT INTO link_tags (link_id, tag)",
                        2,
                        tag_rows.len() / 2,
                    );
                    conn.exec(&sql, tag_rows).await?;
                }
                let sql = multi_row_insert(
                    "INSERT INTO link_changes (link_id, domain, code, kind, at)",
                    5,
                    chunk.len(),
                );
                let params: Vec<Value> = created[first..]
                    .iter()
                    .flat_map(|l| {
                        params![
                            l.id,
                            l.domain.as_str(),
                            l.code.as_str(),
                            ChangeKind::Created.as_str(),
                            now
                        ]
                    })
                    .collect();
                conn.exec(&sql, params).await?;
            }
            Ok(())
        }
        .await;
        finish(&mut conn, result).await.map(|()| created)
    }

    async fn link_by_code(
        &self,
        domain: &LinkDomain,
        code: &ShortCode,
    ) -> StoreResult<Option<Link>> {
        let sql = format!("{LINK_SELECT} WHERE l.domain = ? AND l.code = ?");
        self.query_one(&sql, params![domain.as_str(), code.as_str()])
            .await?
            .as_ref()
            .map(link_from_row)
            .transpose()
    }

    async fn link_by_id(&self, id: LinkId) -> StoreResult<Option<Link>> {
        let sql = format!("{LINK_SELECT} WHERE l.id = ?");
        self.query_one(&sql, params![id])
            .await?
            .as_ref()
            .map(link_from_row)
            .transpose()
    }

    async fn update_link(&self, id: LinkId, patch: &LinkPatch) -> StoreResult<Link> {
        let mut conn = self.begin().await?;
        let result = async {
            let before = load_for_update::<B>(&mut conn, id).await?;
            let mut link = before.clone();
            apply_patch(&mut link, patch);
            if link == before {
                return Ok(link);
            }
            link.updated_at = Timestamp::now().max(before.updated_at);
            conn.exec(
                "UPDATE links SET target = ?, title = ?, redirect_status = ?, forward_query = ?, \
                 password_hash = ?, expires_at = ?, max_clicks = ?, fallback_url = ?, state = ?, \
                 updated_at = ? WHERE id = ?",
                params![
                    link.target.as_str(),
                    link.title.as_deref(),
                    link.redirect_status.map(RedirectStatus::code),
                    link.forward_query,
                    link.password_hash.as_deref(),
                    link.expires_at,
                    link.max_clicks,
                    link.fallback_url.as_ref().map(TargetUrl::as_str),
                    link.state.as_str(),
                    link.updated_at,
                    link.id
                ],
            )
            .await?;
            if link.tags != before.tags {
                conn.exec("DELETE FROM link_tags WHERE link_id = ?", params![link.id])
                    .await?;
                insert_tags(&mut conn, link.id, &link.tags).await?;
            }
            let kind = match (before.state, link.state) {
                (LinkState::Banned, LinkState::Banned) => ChangeKind::Updated,
                (_, LinkState::Banned) => ChangeKind::Banned,
                (LinkState::Banned, _) => ChangeKind::Unbanned,
                _ => ChangeKind::Updated,
            };
            record_change(&mut conn, &link, kind).await?;
            Ok(link)
        }
        .await;
        finish(&mut conn, result).await
    }

    async fn delete_link(&self, id: LinkId) -> StoreResult<()> {
        let mut conn = self.begin().await?;
        let result = async {
            let mut link = load_for_update::<B>(&mut conn, id).await?;
            let now = Timestamp::now().max(link.updated_at);
            link.updated_at = now;
            link.deleted_at = Some(now);
            conn.exec(
                "UPDATE links SET deleted_at = ?, updated_at = ? WHERE id = ?",
                params![now, now, id],
            )
            .await?;
            record_change(&mut conn, &link, ChangeKind::Deleted).await
        }
        .await;
        finish(&mut conn, result).await
    }

    async fn list_links(&self, query: &LinkQuery) -> StoreResult<Vec<Link>> {
        let mut sql = format!("{LINK_SELECT} WHERE 1 = 1");
        let mut params: Vec<Value> = Vec::new();
        if let Some(owner) = query.owner {
            sql.push_str(" AND l.owner_id = ?");
            params.push(owner.into());
        }
        if !query.include_deleted {
            sql.push_str(" AND l.deleted_at IS NULL");
        }
        if let Some(before) = query.before {
            sql.push_str(" AND l.id < ?");
            params.push(before.into());
        }
        if let Some(tag) = &query.tag {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM link_tags t WHERE t.link_id = l.id AND t.tag = ?)",
            );
            params.push(tag.as_str().into());
        }
        if let Some(search) = query
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            // '!' escapes LIKE wildcards in both dialects (a backslash means different things
            // in MySQL and SQLite string literals). LOWER() makes the match case-insensitive
            // whatever the column collation.
            sql.push_str(
                " AND (LOWER(l.code) LIKE ? ESCAPE '!' OR LOWER(l.target) LIKE ? ESCAPE '!' \
                 OR LOWER(l.title) LIKE ? ESCAPE '!')",
            );
            let pattern = format!("%{}%", escape_like(&search.to_lowercase()));
            params.extend([
                pattern.clone().into(),
                pattern.clone().into(),
                pattern.into(),
            ]);
        }
        sql.push_str(" ORDER BY l.id DESC LIMIT ?");
        params.push(page_size(query.limit, 1000).into());
        self.query(&sql, params)
            .await?
            .iter()
            .map(link_from_row)
            .collect()
    }

    async fn changes_since(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<LinkChange>> {
        let rows = self
            .query(
                "SELECT seq, link_id, domain, code, kind, at FROM link_changes \
                 WHERE seq > ? ORDER BY seq LIMIT ?",
                params![after_seq, page_size(limit, 10_000)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(LinkChange {
                    seq: row.i64(0)?,
                    link_id: LinkId(row.i64(1)?),
                    domain: LinkDomain::parse(&row.str(2)?).map_err(|_| corrupt("domain"))?,
                    code: ShortCode::parse_any_length(&row.str(3)?).map_err(|_| corrupt("code"))?,
                    kind: ChangeKind::parse(&row.str(4)?).ok_or_else(|| corrupt("change kind"))?,
                    at: row.ts(5)?,
                })
            })
            .collect()
    }

    async fn last_change_seq(&self) -> StoreResult<i64> {
        let row = self
            .query_one("SELECT MAX(seq) FROM link_changes", params![])
            .await?;
        Ok(row
            .map(|r| r.opt_i64(0))
            .transpose()?
            .flatten()
            .unwrap_or(0))
    }
}

fn new_link_params(new: &NewLink, now: Timestamp) -> Vec<Value> {
    params![
        new.owner_id,
        new.domain.as_str(),
        new.code.as_str(),
        new.target.as_str(),
        new.title.as_deref(),
        new.redirect_status.map(RedirectStatus::code),
        new.forward_query,
        new.password_hash.as_deref(),
        new.expires_at,
        new.max_clicks,
        new.fallback_url.as_ref().map(TargetUrl::as_str),
        LinkState::Active.as_str(),
        0_i64,
        now,
        now
    ]
}

fn link_from_new(id: LinkId, new: &NewLink, now: Timestamp) -> Link {
    Link {
        id,
        owner_id: new.owner_id,
        domain: new.domain.clone(),
        code: new.code.clone(),
        target: new.target.clone(),
        title: new.title.clone(),
        tags: new.tags.clone(),
        redirect_status: new.redirect_status,
        forward_query: new.forward_query,
        password_hash: new.password_hash.clone(),
        expires_at: new.expires_at,
        max_clicks: new.max_clicks,
        fallback_url: new.fallback_url.clone(),
        state: LinkState::Active,
        clicks: 0,
        created_at: now,
        updated_at: now,
        deleted_at: None,
    }
}

fn apply_patch(link: &mut Link, patch: &LinkPatch) {
    if let Some(target) = &patch.target {
        link.target = target.clone();
    }
    if let Some(title) = &patch.title {
        link.title.clone_from(title);
    }
    if let Some(tags) = &patch.tags {
        link.tags.clone_from(tags);
    }
    if let Some(status) = patch.redirect_status {
        link.redirect_status = status;
    }
    if let Some(forward) = patch.forward_query {
        link.forward_query = forward;
    }
    if let Some(hash) = &patch.password_hash {
        link.password_hash.clone_from(hash);
    }
    if let Some(expires) = patch.expires_at {
        link.expires_at = expires;
    }
    if let Some(max) = patch.max_clicks {
        link.max_clicks = max;
    }
    if let Some(fallback) = &patch.fallback_url {
        link.fallback_url.clone_from(fallback);
    }
    if let Some(state) = patch.state {
        // Decided on the row locked for this update, so a ban that committed after the
        // caller read the link still holds.
        if link.state != LinkState::Banned || state == LinkState::Banned || patch.lift_ban {
            link.state = state;
        }
    }
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("50%_off!"), "50!%!_off!!");
    }
}
