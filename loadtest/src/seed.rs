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
    #[error("no link {0} on that domain")]
    NoLink(String),
    #[error("the admin API answered {status}: {detail}")]
    Api { status: u16, detail: String },
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

/// Links per `POST /api/v1/links/bulk` (the API's own maximum).
const API_CHUNK: usize = 1_000;

/// Creates `count` links through the admin API (`POST /api/v1/links/bulk`, authenticated
/// with `token`, a JWT or an API key), as a user would, and writes their codes to
/// `codes_out`. Slower than [`seed`] (every link is validated and checked against the
/// blocklist), and exercises exactly what production creation does.
pub async fn seed_via_api(
    target: &crate::target::Target,
    token: &str,
    count: usize,
    codes_out: &Path,
) -> Result<SeedReport, SeedError> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    if token.trim().is_empty() || token.contains(['\r', '\n']) {
        return Err(SeedError::Api {
            status: 0,
            detail: "a bearer token is needed (--token or LINKGATE_LOADTEST_TOKEN)".into(),
        });
    }
    let started = Instant::now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(codes_out)?);
    let mut done = 0;
    let mut round = 0u64;
    while done < count {
        let n = API_CHUNK.min(count - done);
        let links: Vec<serde_json::Value> = (0..n)
            .map(|i| serde_json::json!({"target": format!("https://example.com/seed/{round}/{i}")}))
            .collect();
        round += 1;
        let body = serde_json::json!({ "links": links }).to_string();
        let request = format!(
            "POST /api/v1/links/bulk HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            target.host,
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(target.addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| SeedError::Api {
                status: 0,
                detail: "no response head".into(),
            })?;
        let head = String::from_utf8_lossy(&response[..split]);
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let json: serde_json::Value =
            serde_json::from_slice(&response[split + 4..]).unwrap_or(serde_json::Value::Null);
        if status != 200 {
            return Err(SeedError::Api {
                status,
                detail: json["detail"]
                    .as_str()
                    .unwrap_or("unexpected answer")
                    .chars()
                    .take(200)
                    .collect(),
            });
        }
        let results = json["results"].as_array().cloned().unwrap_or_default();
        for code in results.iter().filter_map(|r| r["link"]["code"].as_str()) {
            writeln!(out, "{code}")?;
            done += 1;
        }
        if results.iter().all(|r| r["link"].is_null()) {
            return Err(SeedError::Api {
                status,
                detail: "no link was created in a chunk".into(),
            });
        }
    }
    out.flush()?;
    Ok(SeedReport {
        links: done,
        took: started.elapsed(),
    })
}

/// Clicks per written batch (the pipeline's own default ceiling).
const CLICK_BATCH: usize = 50_000;

/// Writes `count` generated clicks for the link `domain/code`, evenly spread over the last
/// `days` days, through `build_batch` + `write_click_batch` exactly as the pipeline writes
/// them: 5,000 distinct visitors, 1 in 10 clicks from a bot, a handful of referrers,
/// countries and browsers. `links` in the report counts clicks.
pub async fn seed_clicks(
    store: &dyn Store,
    domain: &str,
    code: &str,
    count: usize,
    days: u32,
) -> Result<SeedReport, SeedError> {
    use linkgate_common::clicks::TrendingClock;
    use linkgate_common::clicks::batch::build_batch;
    use linkgate_common::domain::{ClickId, StoredClick, Timestamp};
    use rand::RngExt as _;

    const REFERRERS: [&str; 6] = [
        "news.example",
        "search.example",
        "social.example",
        "mail.example",
        "blog.example",
        "forum.example",
    ];
    const COUNTRIES: [&str; 6] = ["DE", "US", "FR", "GB", "NL", "JP"];
    const BROWSERS: [&str; 4] = ["Chrome", "Firefox", "Safari", "Edge"];
    let started = Instant::now();
    let domain_value =
        LinkDomain::parse(domain).map_err(|_| SeedError::Domain(domain.to_owned()))?;
    let code_value =
        ShortCode::parse_any_length(code).map_err(|_| SeedError::NoLink(code.to_owned()))?;
    let link = store
        .link_by_code(&domain_value, &code_value)
        .await?
        .ok_or_else(|| SeedError::NoLink(code.to_owned()))?;
    let span = i64::from(days.max(1)) * Timestamp::MILLIS_PER_DAY;
    let start = Timestamp::now().as_millis() - span;
    let step = span / i64::try_from(count.max(1)).unwrap_or(i64::MAX);
    let clock = TrendingClock::new(3_600_000);
    let mut rng = rand::rng();
    // Visitor ids are keyed hashes in production (uniform over 64 bits, which the
    // HyperLogLog sketches rely on): draw 5,000 random ones.
    let visitors: Vec<u64> = (0..5_000).map(|_| rng.random()).collect();
    let mut done = 0;
    while done < count {
        let n = CLICK_BATCH.min(count - done);
        let clicks: Vec<StoredClick> = (done..done + n)
            .map(|i| {
                let at = Timestamp::from_millis(start + step * i64::try_from(i).unwrap_or(0));
                let bot = rng.random_range(0..10) == 0;
                let pick = rng.random_range(0..usize::MAX);
                StoredClick {
                    click_id: ClickId::at(at),
                    link_id: link.id,
                    at,
                    visitor: visitors[rng.random_range(0..visitors.len())],
                    ip: None,
                    referrer_host: Some(REFERRERS[pick % REFERRERS.len()].to_owned()),
                    country: Some(COUNTRIES[pick / 7 % COUNTRIES.len()].to_owned()),
                    device: if bot { "bot" } else { "desktop" }.into(),
                    browser: BROWSERS[pick / 11 % BROWSERS.len()].into(),
                    os: "Linux".into(),
                    is_bot: bot,
                    fraud_reasons: 0,
                }
            })
            .collect();
        store
            .write_click_batch(&build_batch(clicks, &clock))
            .await?;
        done += n;
    }
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
