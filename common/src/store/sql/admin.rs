//! The target-domain blocklist and the audit log.

use async_trait::async_trait;

use super::value::{Value, params};
use super::{Backend, SqlStore, in_list, page_size};
use crate::domain::{AuditEntry, BlockedDomain, NewAuditEntry, Timestamp, UserId};
use crate::store::{AdminStore, StoreResult};

#[async_trait]
impl<B: Backend> AdminStore for SqlStore<B> {
    async fn block_domain(
        &self,
        domain: &str,
        reason: Option<&str>,
        by: Option<UserId>,
    ) -> StoreResult<bool> {
        let sql = format!(
            "INSERT INTO blocked_domains (domain, reason, created_by, created_at) VALUES (?, ?, ?, ?){}",
            B::DIALECT.on_conflict_ignore("domain", "domain")
        );
        let done = self
            .exec(
                &sql,
                params![normalise(domain), reason, by, Timestamp::now()],
            )
            .await?;
        Ok(done.affected == 1)
    }

    async fn unblock_domain(&self, domain: &str) -> StoreResult<bool> {
        let done = self
            .exec(
                "DELETE FROM blocked_domains WHERE domain = ?",
                params![normalise(domain)],
            )
            .await?;
        Ok(done.affected == 1)
    }

    async fn is_domain_blocked(&self, host: &str) -> StoreResult<bool> {
        let suffixes = parent_domains(&normalise(host));
        if suffixes.is_empty() {
            return Ok(false);
        }
        let sql = format!(
            "SELECT COUNT(*) FROM blocked_domains WHERE domain IN {}",
            in_list(suffixes.len())
        );
        let params: Vec<Value> = suffixes.into_iter().map(Value::from).collect();
        let row = self.query_one(&sql, params).await?;
        Ok(row.map_or(Ok(0), |r| r.u64(0))? > 0)
    }

    async fn blocked_domains(&self) -> StoreResult<Vec<BlockedDomain>> {
        let rows = self
            .query(
                "SELECT domain, reason, created_by, created_at FROM blocked_domains ORDER BY domain",
                params![],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(BlockedDomain {
                    domain: r.str(0)?,
                    reason: r.opt_str(1)?,
                    created_by: r.opt_i64(2)?.map(UserId),
                    created_at: r.ts(3)?,
                })
            })
            .collect()
    }

    async fn append_audit(&self, entry: &NewAuditEntry) -> StoreResult<AuditEntry> {
        let at = Timestamp::now();
        let done = self
            .exec(
                "INSERT INTO audit_log (actor_id, action, subject, reason, at) VALUES (?, ?, ?, ?, ?)",
                params![entry.actor_id, &entry.action, &entry.subject, entry.reason.as_deref(), at],
            )
            .await?;
        Ok(AuditEntry {
            id: done.last_insert_id,
            actor_id: entry.actor_id,
            action: entry.action.clone(),
            subject: entry.subject.clone(),
            reason: entry.reason.clone(),
            at,
        })
    }

    async fn audit_log(&self, limit: u32, before: Option<i64>) -> StoreResult<Vec<AuditEntry>> {
        let rows = self
            .query(
                "SELECT id, actor_id, action, subject, reason, at FROM audit_log \
                 WHERE id < ? ORDER BY id DESC LIMIT ?",
                params![before.unwrap_or(i64::MAX), page_size(limit, 1000)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.i64(0)?,
                    actor_id: r.opt_i64(1)?.map(UserId),
                    action: r.str(2)?,
                    subject: r.str(3)?,
                    reason: r.opt_str(4)?,
                    at: r.ts(5)?,
                })
            })
            .collect()
    }
}

fn normalise(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `a.b.example.com` -> [`a.b.example.com`, `b.example.com`, `example.com`, `com`].
fn parent_domains(host: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = host;
    while !rest.is_empty() {
        out.push(rest.to_owned());
        rest = rest.split_once('.').map_or("", |(_, tail)| tail);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parent_domain_is_checked() {
        assert_eq!(
            parent_domains("a.example.com"),
            ["a.example.com", "example.com", "com"]
        );
        assert!(parent_domains("").is_empty());
    }
}
