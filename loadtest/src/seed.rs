//! Seeding: many links at once through the `Store` (multi-row inserts, one transaction per
//! chunk), with the generated codes written to a file the redirect workload reads.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use linkgate_common::domain::{
    Email, LinkDomain, NewLink, NewUser, Role, ShortCode, TargetPolicy, TargetUrl,
};
use linkgate_common::store::{Store, StoreError};

/// Length of seeded codes: longer than generated production codes (7) and never equal to the
/// 12-character random codes the workload uses for unknown links.
pub const SEED_CODE_LEN: usize = 10;
/// Links per `create_links_bulk` call (one transaction).
const CHUNK: usize = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the codes file: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0} is not a valid link domain")]
    Domain(String),
}

/// What seeding did.
#[derive(Debug, Clone, Copy)]
pub struct SeedReport {
    pub links: usize,
    pub took: Duration,
}

/// Creates `count` links on `domain` (owned by a dedicated load-test user) and writes their
/// codes, one per line, to `codes_out`.
pub async fn seed(
    store: &dyn Store,
    count: usize,
    domain: &str,
    codes_out: &Path,
) -> Result<SeedReport, SeedError> {
    let started = Instant::now();
    let domain = LinkDomain::parse(domain).map_err(|_| SeedError::Domain(domain.to_owned()))?;
    let email = Email::parse("loadtest@linkgate.invalid")
        .map_err(|_| SeedError::Domain("e-mail".into()))?;
    let owner = match store.user_by_email(&email).await? {
        Some(user) => user,
        None => {
            store
                .create_user(&NewUser {
                    email,
                    password_hash: "!disabled".into(),
                    role: Role::User,
                })
                .await?
        }
    };
    let target = TargetUrl::parse("https://example.com/landing", &TargetPolicy::default())
        .map_err(|_| SeedError::Domain("target".into()))?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(codes_out)?);
    let mut done = 0;
    while done < count {
        let n = CHUNK.min(count - done);
        let links: Vec<NewLink> = (0..n)
            .map(|_| {
                NewLink::new(
                    owner.id,
                    domain.clone(),
                    ShortCode::generate(SEED_CODE_LEN),
                    target.clone(),
                )
            })
            .collect();
        // 62^10 codes: a collision within a seed run is vanishingly rare; on one, redraw.
        let created = match store.create_links_bulk(&links).await {
            Err(StoreError::Conflict(_)) => continue,
            other => other?,
        };
        for link in &created {
            writeln!(out, "{}", link.code)?;
        }
        done += created.len();
    }
    out.flush()?;
    Ok(SeedReport {
        links: done,
        took: started.elapsed(),
    })
}

/// Reads a codes file (one code per line; blank lines and `#` comments ignored).
pub fn read_codes(path: &Path) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}
