//! The `Store`: everything linkgate persists, behind one trait with two backends.
//!
//! - [`sqlite`]: an embedded file (the default; a new user needs nothing installed).
//! - [`mysql`]: MySQL 8 / MariaDB 10.11 through `mysql_async` (production, scale-out).
//!
//! Both run the same SQL-level logic ([`sql`]) and pass one conformance suite
//! (`common/tests/store`). Split into sub-traits by concern; `Store` is all of them.

pub mod mysql;
pub(crate) mod sql;
pub mod sqlite;

mod migrations;

use std::sync::Arc;

use async_trait::async_trait;
use linkgate_config::{StoreKind, StoreSettings};

use crate::clicks::TrendingClock;
use crate::domain::{
    ApiKey, ApiKeyId, AuditEntry, BatchOutcome, BlockedDomain, ClickBatch, ClickId, Dimension,
    Email, FraudReview, Granularity, HourlyCounts, Link, LinkChange, LinkDomain, LinkId, LinkPatch,
    NewApiKey, NewAuditEntry, NewLink, NewUser, PendingWindow, RefreshToken, ReviewCandidate,
    ReviewState, ReviewThresholds, RotateOutcome, ShortCode, StoredClick, Tag, Timestamp,
    TokenHash, User, UserId,
};

pub use migrations::LATEST_SCHEMA_VERSION;

/// Why a store call failed. Messages never include parameter values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A unique key is taken (a code on its domain, an e-mail address).
    #[error("already exists: {0}")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    /// The database cannot be reached or timed out; the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The schema is older or newer than this binary expects.
    #[error("schema version {found} does not match the expected {expected}")]
    SchemaVersion { found: u32, expected: u32 },
    /// Data in the store does not match the schema or the domain rules.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// Any other database error.
    #[error("store error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Filters for listing links, newest first with keyset pagination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkQuery {
    /// Only this owner's links; `None` lists everyone's (administrators).
    pub owner: Option<UserId>,
    /// Case-insensitive substring of code, target or title.
    pub search: Option<String>,
    pub tag: Option<Tag>,
    /// Cursor: only links with a smaller id (the last id of the previous page).
    pub before: Option<LinkId>,
    /// Page size, clamped to 1..=1000.
    pub limit: u32,
    pub include_deleted: bool,
}

/// Schema management and liveness.
#[async_trait]
pub trait SchemaStore: Send + Sync {
    /// `"sqlite"` or `"mysql"`.
    fn backend_name(&self) -> &'static str;
    /// Applies pending migrations (serialised across processes); returns the version.
    async fn migrate(&self) -> StoreResult<u32>;
    /// The applied schema version (0 for an empty database).
    async fn schema_version(&self) -> StoreResult<u32>;
    /// Fails with `SchemaVersion` unless the schema is exactly what this binary expects.
    async fn check_schema(&self) -> StoreResult<()> {
        let found = self.schema_version().await?;
        if found == LATEST_SCHEMA_VERSION {
            Ok(())
        } else {
            Err(StoreError::SchemaVersion {
                found,
                expected: LATEST_SCHEMA_VERSION,
            })
        }
    }
    /// A trivial round-trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;
}

/// Users, refresh-token families and API keys.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// `Conflict("email")` when the address is taken.
    async fn create_user(&self, user: &NewUser) -> StoreResult<User>;
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>>;
    async fn user_by_email(&self, email: &Email) -> StoreResult<Option<User>>;
    async fn count_admins(&self) -> StoreResult<u64>;

    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()>;
    /// Spends `presented` and stores `next_hash` in the same family, atomically. Presenting a
    /// token that was already spent revokes its whole family (`Reused`).
    async fn rotate_refresh_token(
        &self,
        presented: &TokenHash,
        next_hash: &TokenHash,
        next_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<RotateOutcome>;
    /// Revokes the family of `presented` (logout). Returns whether the token was known.
    async fn revoke_refresh_family(
        &self,
        presented: &TokenHash,
        now: Timestamp,
    ) -> StoreResult<bool>;
    async fn revoke_user_refresh_tokens(&self, user: UserId, now: Timestamp) -> StoreResult<()>;

    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<ApiKey>;
    /// A live (not revoked) key by its hash.
    async fn api_key_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<ApiKey>>;
    async fn list_api_keys(&self, user: UserId) -> StoreResult<Vec<ApiKey>>;
    /// Returns false when the key does not exist, is not the user's, or was already revoked.
    async fn revoke_api_key(&self, user: UserId, id: ApiKeyId, now: Timestamp)
    -> StoreResult<bool>;
    async fn touch_api_key(&self, id: ApiKeyId, now: Timestamp) -> StoreResult<()>;
}

/// Links and their change log. Every mutation writes one `link_changes` row in the same
/// transaction, which is what proxies poll for invalidation.
#[async_trait]
pub trait LinkStore: Send + Sync {
    /// `Conflict("code")` when the domain+code is taken (including by a deleted link: a
    /// code never comes back to point somewhere else).
    async fn create_link(&self, link: &NewLink) -> StoreResult<Link>;
    /// Inserts many links in one transaction with multi-row statements (seeding, imports),
    /// each with its change row. All or nothing: `Conflict("code")` if any code is taken.
    async fn create_links_bulk(&self, links: &[NewLink]) -> StoreResult<Vec<Link>>;
    /// The link on `domain` with `code`, deleted or not (the caller decides what to show).
    async fn link_by_code(
        &self,
        domain: &LinkDomain,
        code: &ShortCode,
    ) -> StoreResult<Option<Link>>;
    async fn link_by_id(&self, id: LinkId) -> StoreResult<Option<Link>>;
    /// Applies `patch`; `NotFound` for an unknown or deleted link.
    async fn update_link(&self, id: LinkId, patch: &LinkPatch) -> StoreResult<Link>;
    /// Soft delete; `NotFound` for an unknown or already deleted link.
    async fn delete_link(&self, id: LinkId) -> StoreResult<()>;
    async fn list_links(&self, query: &LinkQuery) -> StoreResult<Vec<Link>>;
    /// Change-log rows after `after_seq`, oldest first.
    async fn changes_since(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<LinkChange>>;
    /// The newest change-log position (0 when empty): where a fresh poller starts.
    async fn last_change_seq(&self) -> StoreResult<i64>;
}

/// Clicks and the aggregates read by analytics.
#[async_trait]
pub trait ClickStore: Send + Sync {
    /// Writes a batch atomically and at most once per `batch_id`, with multi-row statements.
    async fn write_click_batch(&self, batch: &ClickBatch) -> StoreResult<BatchOutcome>;
    /// Writes only a batch's raw clicks (at most once per `batch_id`) and records its
    /// aggregates as pending: `apply_aggregates` (the writer, from memory) or
    /// `aggregate_stale` (any node, from the segments) applies them later, exactly once.
    async fn write_click_segments(&self, batch: &ClickBatch) -> StoreResult<BatchOutcome>;
    /// Applies, in one transaction, the aggregates of the `window`'s batches that are still
    /// pending (claiming them, so a batch another node aggregated meanwhile is skipped):
    /// the window's own sums when it claims every batch, else those of the claimed batches
    /// read back from their segments. Returns the clicks aggregated.
    async fn apply_aggregates(
        &self,
        window: &PendingWindow,
        clock: &TrendingClock,
    ) -> StoreResult<u64>;
    /// Aggregates, from their stored segments, at most `limit` batches pending since before
    /// `before` (their writer stopped before applying them). Returns the clicks aggregated.
    async fn aggregate_stale(
        &self,
        before: Timestamp,
        limit: u32,
        clock: &TrendingClock,
    ) -> StoreResult<u64>;
    /// Hourly counters in `[from, to)`, oldest first; hours without clicks are absent.
    async fn hourly_counts(
        &self,
        link: LinkId,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<HourlyCounts>>;
    /// Each link's clicks (all of them: human, bot and suspicious) in the hours from the
    /// one holding `from` on; links without any are absent. What the fraud scorer seeds a
    /// link's rate from after a restart.
    async fn recent_clicks(
        &self,
        links: &[LinkId],
        from: Timestamp,
    ) -> StoreResult<Vec<(LinkId, u64)>>;
    /// Top values of one dimension over the days in `[from, to)`, by count.
    async fn top_breakdown(
        &self,
        link: LinkId,
        dimension: Dimension,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(String, u64)>>;
    /// Distinct human visitors over the hours in `[from, to)`: exact up to
    /// `clicks::sketch::EXACT_LIMIT`, a HyperLogLog estimate (0.81% standard error) beyond.
    /// Whole UTC days in the range are read from daily sketches, the ends from hourly ones.
    async fn unique_visitors(
        &self,
        link: LinkId,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<u64>;
    /// Distinct visitors per hour or per UTC day in `[from, to)`, oldest first; buckets
    /// without visitors are absent.
    async fn visitor_series(
        &self,
        link: LinkId,
        from: Timestamp,
        to: Timestamp,
        granularity: Granularity,
    ) -> StoreResult<Vec<(Timestamp, u64)>>;
    /// Distinct visitors in each of the buckets `[bounds[i], bounds[i + 1])`, whose bounds
    /// are UTC hours in ascending order (local days of a time zone, say): one read of the
    /// hourly sketches, merged per bucket. Returns `bounds.len() - 1` counts.
    async fn visitor_buckets(&self, link: LinkId, bounds: &[Timestamp]) -> StoreResult<Vec<u64>>;
    /// The visitor-hash salt of the UTC day starting at `day`: created at random by whichever
    /// node asks first, the same for every node afterwards.
    async fn visitor_salt(&self, day: Timestamp) -> StoreResult<[u8; 32]>;
    /// Forgets salts of days before `before` (visitor hashes of those days can then no
    /// longer be recomputed from an IP and User-Agent).
    async fn purge_visitor_salts(&self, before: Timestamp) -> StoreResult<u64>;
    /// The `limit` links with the highest decayed score at `now`, highest first, with their
    /// score in decayed click-equivalents.
    async fn trending(
        &self,
        clock: &TrendingClock,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(LinkId, f64)>>;
    /// Deletes trending rows whose epoch is older than `before` (decayed to nothing).
    async fn purge_trending(&self, before: Timestamp) -> StoreResult<u64>;
    /// Raw clicks kept for a link. Reads every stored segment: for tests and audits only
    /// (analytics never scan raw clicks).
    async fn raw_click_count(&self, link: LinkId) -> StoreResult<u64>;
    /// A link's raw clicks in click-id (time) order after `after`, at most `limit`. Reads
    /// the segments of every day from `after` on, until `limit` are found: for exports and
    /// audits, never a request path.
    async fn raw_clicks(
        &self,
        link: LinkId,
        after: Option<ClickId>,
        limit: u32,
    ) -> StoreResult<Vec<StoredClick>>;
    /// A link's clicks with fraud reasons (each also kept as its own row) in click-id order
    /// after `after`, at most `limit`: the review evidence.
    async fn flagged_clicks(
        &self,
        link: LinkId,
        after: Option<ClickId>,
        limit: u32,
    ) -> StoreResult<Vec<StoredClick>>;
    /// Deletes raw clicks older than `before`: whole UTC days of segments, and the rows of
    /// flagged (and pre-segment) clicks. At most `limit` segments and rows per call; returns
    /// how many were deleted, so fewer than `limit` means done.
    async fn purge_raw_clicks(&self, before: Timestamp, limit: u32) -> StoreResult<u64>;
}

/// Administration: the target-domain blocklist and the audit log.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Adds a domain; false when it was already blocked.
    async fn block_domain(
        &self,
        domain: &str,
        reason: Option<&str>,
        by: Option<UserId>,
    ) -> StoreResult<bool>;
    async fn unblock_domain(&self, domain: &str) -> StoreResult<bool>;
    /// True when `host` or any parent domain of it is blocked.
    async fn is_domain_blocked(&self, host: &str) -> StoreResult<bool>;
    async fn blocked_domains(&self) -> StoreResult<Vec<BlockedDomain>>;
    async fn append_audit(&self, entry: &NewAuditEntry) -> StoreResult<AuditEntry>;
    /// Newest first; `before` is the id cursor.
    async fn audit_log(&self, limit: u32, before: Option<i64>) -> StoreResult<Vec<AuditEntry>>;
}

/// The fraud review queue and confirmation of flagged clicks.
#[async_trait]
pub trait FraudStore: Send + Sync {
    /// Considers links with suspicious or burst clicks in a written batch: a link enters
    /// (or stays in, with fresh numbers) the queue when its clicks in that hour reach the
    /// thresholds or it had burst clicks. A dismissed or confirmed review reopens only on
    /// evidence more than an hour after the decision. Returns the reviews opened now.
    async fn open_reviews(
        &self,
        candidates: &[ReviewCandidate],
        thresholds: ReviewThresholds,
        now: Timestamp,
    ) -> StoreResult<u64>;
    /// Reviews in `state` (all when `None`), most recently updated first.
    async fn reviews(
        &self,
        state: Option<ReviewState>,
        limit: u32,
    ) -> StoreResult<Vec<FraudReview>>;
    async fn review(&self, link: LinkId) -> StoreResult<Option<FraudReview>>;
    /// Records a dismissal; `NotFound` when the link has no review.
    async fn dismiss_review(
        &self,
        link: LinkId,
        by: UserId,
        note: &str,
        now: Timestamp,
    ) -> StoreResult<FraudReview>;
    /// Confirms fraud: every flagged click of the link up to `through` not confirmed before
    /// is taken out of the hourly counters (total, bot, suspicious), the breakdowns and the
    /// link's click total, atomically, and the review is marked confirmed. Human counts,
    /// unique visitors and trending never included flagged clicks and do not change.
    /// Returns the clicks taken out now; `NotFound` when the link has no review.
    async fn confirm_review(
        &self,
        link: LinkId,
        through: ClickId,
        by: UserId,
        note: &str,
        now: Timestamp,
    ) -> StoreResult<u64>;
}

/// Everything linkgate persists.
pub trait Store:
    SchemaStore + UserStore + LinkStore + ClickStore + AdminStore + FraudStore + std::fmt::Debug
{
}

impl<T> Store for T where
    T: SchemaStore + UserStore + LinkStore + ClickStore + AdminStore + FraudStore + std::fmt::Debug
{
}

/// Inserts `link`, taking a fresh code from `next_code` for each attempt while the previous
/// one is taken. With 62^7 generated codes a second attempt is already rare; `attempts`
/// bounds the loop when a code space fills up.
pub async fn create_link_with_retry(
    store: &dyn Store,
    mut link: NewLink,
    mut next_code: impl FnMut() -> ShortCode + Send,
    attempts: u32,
) -> StoreResult<Link> {
    let mut attempt = 1;
    loop {
        link.code = next_code();
        match store.create_link(&link).await {
            Err(StoreError::Conflict("code")) if attempt < attempts => attempt += 1,
            other => return other,
        }
    }
}

/// Opens the store named by the settings (no migration; see [`open_and_migrate`]).
pub fn open(settings: &StoreSettings) -> StoreResult<Arc<dyn Store>> {
    open_tuned(settings, sqlite::SqliteTuning::GENERAL)
}

/// Opens the store with `tuning` for an SQLite file (the proxy keeps its lookups and its
/// click batcher small in memory, see [`sqlite::SqliteTuning`]); MySQL opens as usual.
pub fn open_tuned(
    settings: &StoreSettings,
    tuning: sqlite::SqliteTuning,
) -> StoreResult<Arc<dyn Store>> {
    match settings.kind() {
        Some(StoreKind::Sqlite(path)) => Ok(Arc::new(sqlite::SqliteStore::open_with(
            &path,
            settings.max_connections,
            tuning,
        )?)),
        Some(StoreKind::Mysql) => Ok(Arc::new(mysql::MysqlStore::open(
            settings.url.expose(),
            settings.max_connections,
        )?)),
        None => Err(StoreError::Backend(
            "store.url must start with sqlite:// or mysql://".to_owned(),
        )),
    }
}

/// Opens the store and applies pending migrations (what the admin service does at start).
pub async fn open_and_migrate(settings: &StoreSettings) -> StoreResult<Arc<dyn Store>> {
    let store = open(settings)?;
    store.migrate().await?;
    Ok(store)
}
