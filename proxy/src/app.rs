//! The Pingora shell: routes a request, asks the resolver and `decide`, and writes the
//! answer from `request_filter` without touching any upstream. Only non-link paths are
//! proxied, to the admin service.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderName, HeaderValue};
use ipnet::IpNet;
use linkgate_common::budget::ClickBudget;
use linkgate_common::cache::{HotLink, KeyBuf, Resolver, Tier};
use linkgate_common::clicks::ClickQueue;
use linkgate_common::clock::Instant;
use linkgate_common::domain::{
    ClickEvent, ClickId, ClickMethod, LinkId, RedirectStatus, Timestamp, capture_header,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use crate::decide::{self, Decision, Method, RequestFacts};
use crate::metrics::{Metrics, Outcome, TierLabel};
use crate::pages;
use crate::password::{Attempt, PasswordGate, password_from_form};
use linkgate_common::client_ip::client_behind_trusted_peer;
use linkgate_common::ratelimit::{Limiter, Verdict, retry_after_secs};

/// Largest password form body read.
const MAX_FORM_BYTES: usize = 4096;

/// Everything the request path shares. One per process.
pub struct ProxyState {
    pub resolver: Arc<Resolver>,
    pub clicks: Arc<ClickQueue>,
    pub budget: ClickBudget,
    pub passwords: PasswordGate,
    /// Requests for unknown codes per client address (code enumeration). Shared through
    /// Redis when configured (the miss path may do network I/O); this node's own count when
    /// Redis is absent or down (fails open).
    pub unknown_codes: Limiter<IpAddr>,
    /// All link requests per client address, when `limits.proxy_per_minute` > 0. Counted
    /// on this node only: the cache-hit path never waits on the network.
    pub per_client: Option<Limiter<IpAddr>>,
    /// Clients that went over the unknown-code limit (see [`Enumerators`]).
    pub enumerators: Enumerators,
    /// Client networks refused outright (`fraud.refuse_bad_networks`); empty otherwise.
    pub refused_networks: Vec<IpNet>,
    pub metrics: Arc<Metrics>,
    pub trusted: Vec<IpNet>,
    pub admin_upstream: SocketAddr,
    pub default_status: RedirectStatus,
    /// Set by the readiness checker: the store answered recently.
    pub ready: AtomicBool,
    /// Trusted load-balancer header carrying the client's country.
    pub country_header: Option<HeaderName>,
    /// The click pipeline's counters.
    pub pipeline: Arc<linkgate_common::clicks::PipelineStats>,
}

impl std::fmt::Debug for ProxyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyState")
            .field("admin_upstream", &self.admin_upstream)
            .finish_non_exhaustive()
    }
}

/// The `ProxyHttp` implementation.
#[derive(Debug, Clone)]
pub struct LinkProxy {
    pub state: Arc<ProxyState>,
}

/// Per-request context.
#[derive(Debug)]
pub struct Ctx {
    started: Instant,
    outcome: Option<Outcome>,
    /// The TCP peer, and whether it is a trusted proxy: read once, used for the client
    /// address and again when forwarding to admin.
    peer: Option<IpAddr>,
    peer_trusted: bool,
    client: IpAddr,
}

enum Route {
    Health,
    Ready,
    Admin,
    Link,
}

/// `/healthz` and `/readyz` are the proxy's own; `/`, `/api/...` and the dashboard's assets
/// belong to admin; any other single path segment is a code.
fn route(path: &str) -> Route {
    match path {
        "/healthz" => Route::Health,
        "/readyz" => Route::Ready,
        "/" | "/favicon.ico" | "/robots.txt" | "/openapi.json" => Route::Admin,
        _ if ["/api/", "/static/", "/assets/", "/dashboard/"]
            .iter()
            .any(|p| path.starts_with(p))
            || path == "/api"
            || path == "/dashboard" =>
        {
            Route::Admin
        }
        _ => Route::Link,
    }
}

/// The code a link path names. Origin-form paths start with "/"; authority-form
/// (CONNECT) and "*" do not.
fn link_code(req: &RequestHeader) -> &str {
    req.uri.path().strip_prefix('/').unwrap_or_default()
}

fn method_of(req: &RequestHeader) -> Method {
    match req.method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        _ => Method::Other,
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Every X-Forwarded-For value as one list; the usual single header is borrowed, not copied.
fn forwarded_chain(req: &RequestHeader) -> Option<Cow<'_, str>> {
    let mut values = req
        .headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let first = values.next()?;
    match values.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut all = format!("{first}, {second}");
            for v in values {
                all.push_str(", ");
                all.push_str(v);
            }
            Some(Cow::Owned(all))
        }
    }
}

/// Headers Pingora adds to every response it writes (`Date`, `Connection`).
const PINGORA_ADDS: usize = 2;

const TEXT_HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const CACHE_AN_HOUR: HeaderValue = HeaderValue::from_static("public, max-age=3600");
const ZERO: HeaderValue = HeaderValue::from_static("0");

/// A response head with `headers`, put straight into its header map. The names are
/// `http`'s parsed constants and fixed values are static: `ResponseHeader::insert_header`
/// parses every name from text and copies every value into a new buffer, per response
/// (BENCHMARKS.md, session 21). Like `ResponseHeader::build_no_case`, there is no case
/// map (Pingora writes standard names title-cased, from one header map instead of two),
/// and the map has room for the headers Pingora adds, so it is not grown (reallocated)
/// while the response is written.
fn response_head(
    status: StatusCode,
    headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
) -> Box<ResponseHeader> {
    let headers = headers.into_iter();
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.headers.reserve(headers.size_hint().0 + PINGORA_ADDS);
    for (name, value) in headers {
        parts.headers.insert(name, value);
    }
    Box::new(ResponseHeader::from(parts))
}

/// Writes a complete response. HEAD gets the same headers without the body.
async fn respond(
    session: &mut Session,
    status: StatusCode,
    content_type: HeaderValue,
    body: &'static str,
    extra: Option<(HeaderName, HeaderValue)>,
) -> Result<()> {
    let head = session.req_header().method == http::Method::HEAD;
    let resp = response_head(
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_LENGTH, HeaderValue::from(body.len())),
            (header::CACHE_CONTROL, NO_STORE),
        ]
        .into_iter()
        .chain(extra),
    );
    session
        .write_response_header(resp, head || body.is_empty())
        .await?;
    if !head && !body.is_empty() {
        session
            .write_response_body(Some(Bytes::from_static(body.as_bytes())), true)
            .await?;
    }
    Ok(())
}

async fn respond_html(session: &mut Session, status: StatusCode, body: &'static str) -> Result<()> {
    respond(session, status, TEXT_HTML, body, None).await
}

async fn respond_text(session: &mut Session, status: StatusCode, body: &'static str) -> Result<()> {
    respond(session, status, TEXT_PLAIN, body, None).await
}

/// A redirect to `location`: a link's own value (see `CachedLink::location`), or one made
/// from a validated target and query.
async fn respond_redirect(session: &mut Session, status: u16, location: HeaderValue) -> Result<()> {
    let status = StatusCode::from_u16(status)
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "invalid redirect status"))?;
    // Temporary redirects are never cached so every visit is counted; permanent ones may be.
    let cache = if matches!(status.as_u16(), 301 | 308) {
        CACHE_AN_HOUR
    } else {
        NO_STORE
    };
    let resp = response_head(
        status,
        [
            (header::LOCATION, location),
            (header::CONTENT_LENGTH, ZERO),
            (header::CACHE_CONTROL, cache),
        ],
    );
    session.write_response_header(resp, true).await
}

/// What [`LinkProxy::prepare`] found. Only a link's `Step::Redirect` is answered on the hot
/// path.
enum Prepared {
    Health,
    Ready,
    /// Proxied to the admin service.
    Admin,
    /// The client's network is refused outright.
    Refused,
    /// A limit refused the client for this long.
    TooMany(std::time::Duration),
    /// A cached link request, decided.
    Link(Step, Timestamp),
    /// Not in the process's cache: loaded from Redis or the store.
    Miss(Timestamp),
}

/// A redirect of a link with a click limit: sent only if its click is taken from the
/// link's budget.
struct Limited {
    link: HotLink,
    status: u16,
    location: HeaderValue,
    outcome: Outcome,
    click: ClickEvent,
}

/// What the read-only phase of a link request decided; the write phase sends it.
enum Step {
    /// Its click is queued.
    Redirect {
        status: u16,
        location: HeaderValue,
    },
    /// Boxed: the rare case, kept out of the size of every `Step` the hit path moves.
    Limited(Box<Limited>),
    Decided(Decision),
    /// A POST to a password link: read the body, check, then redirect or refuse.
    CheckPassword {
        link: HotLink,
        query: Option<String>,
    },
    NoHost,
    StoreFailed,
}

/// Clients that went over the unknown-code limit, with when they may ask again: every link
/// request of theirs is refused until then, so a limited enumerator cannot go on telling
/// existing codes (3xx) from missing ones (429).
#[derive(Debug)]
pub struct Enumerators {
    clients: moka::sync::Cache<IpAddr, Instant>,
    origin: Instant,
    /// The latest deadline of any client, in ms since `origin`. Once it has passed nobody
    /// is blocked, so the usual hit path does no lookup (moka's entry count lags inserts,
    /// this does not).
    latest_ms: AtomicU64,
}

impl Enumerators {
    pub fn new() -> Self {
        Self {
            // Entries outlive their deadline by at most a minute (a limit is per minute).
            clients: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(std::time::Duration::from_secs(60))
                .build(),
            origin: Instant::now(),
            latest_ms: AtomicU64::new(0),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    pub fn block(&self, client: IpAddr, until: Instant) {
        self.clients.insert(client, until);
        self.latest_ms
            .fetch_max(self.ms(until).saturating_add(1), Ordering::Relaxed);
    }

    /// How long `client` must still wait at `now` (the request's start), if it is blocked.
    pub fn blocked_for(&self, client: &IpAddr, now: Instant) -> Option<std::time::Duration> {
        if self.ms(now) >= self.latest_ms.load(Ordering::Relaxed) {
            return None;
        }
        let until = self.clients.get(client)?;
        Some(until.saturating_duration_since(now)).filter(|wait| !wait.is_zero())
    }
}

impl Default for Enumerators {
    fn default() -> Self {
        Self::new()
    }
}

/// Headers whose value may mark a prefetch (see [`is_prefetch_value`]).
static PREFETCH_MARKS: [HeaderName; 4] = [
    HeaderName::from_static("sec-purpose"),
    HeaderName::from_static("purpose"),
    HeaderName::from_static("x-moz"),
    HeaderName::from_static("x-purpose"),
];

/// Whether a `Sec-Purpose`, `Purpose`, `X-Moz` or `X-Purpose` value marks a speculative
/// load or link preview (Chrome's `prefetch`, Firefox's `X-Moz: prefetch`).
fn is_prefetch_value(value: &str) -> bool {
    value
        .as_bytes()
        .windows(8)
        .any(|w| w.eq_ignore_ascii_case(b"prefetch"))
        || value.eq_ignore_ascii_case("preview")
}

/// What the proxy reads from a request's headers, found in one pass over them (a lookup by
/// name parses and hashes the name and probes the map; a request has few headers, so one
/// scan that compares names is cheaper than a lookup per header). Like a lookup, the first
/// value of a header counts; a prefetch mark counts in any value.
#[derive(Debug, Default, PartialEq, Eq)]
struct RequestHeaders<'a> {
    /// The first `Host` value, if it is visible ASCII.
    host: Option<&'a str>,
    /// The first readable `X-Forwarded-For` value, and whether there is another one (then
    /// [`forwarded_chain`] joins them all).
    forwarded: Option<&'a str>,
    forwarded_more: bool,
    user_agent: Option<&'a str>,
    referrer: Option<&'a str>,
    accept: Option<&'a str>,
    /// The trusted load balancer's country header, when one is configured.
    country: Option<&'a str>,
    prefetch: bool,
}

impl<'a> RequestHeaders<'a> {
    fn scan(req: &'a RequestHeader, country_header: Option<&HeaderName>) -> Self {
        // `Some(first value)` once a header has been seen; a value that is not visible ASCII
        // is `Some(None)`, as a lookup's `to_str` would have it.
        let mut seen: [Option<Option<&'a str>>; 5] = [None; 5];
        let mut prefetch = false;
        let mut forwarded = None;
        let mut forwarded_more = false;
        // Names are compared as `HeaderName`s: a standard name is a one-byte tag, so most
        // comparisons are a byte or two, where matching `as_str()` compared text.
        for (name, value) in &req.headers {
            let slot = if *name == header::HOST {
                0
            } else if *name == header::USER_AGENT {
                1
            } else if *name == header::REFERER {
                2
            } else if *name == header::ACCEPT {
                3
            } else if *name == X_FORWARDED_FOR {
                if let Ok(v) = value.to_str() {
                    forwarded_more |= forwarded.is_some();
                    forwarded.get_or_insert(v);
                }
                continue;
            } else if PREFETCH_MARKS.contains(name) {
                prefetch |= value.to_str().is_ok_and(is_prefetch_value);
                continue;
            } else if country_header == Some(name) {
                4
            } else {
                continue;
            };
            seen[slot].get_or_insert_with(|| value.to_str().ok());
        }
        let [host, user_agent, referrer, accept, country] = seen.map(Option::flatten);
        Self {
            host,
            forwarded,
            forwarded_more,
            user_agent,
            referrer,
            accept,
            country,
            prefetch,
        }
    }

    /// Every X-Forwarded-For value as one list, as [`forwarded_chain`] gives it: the usual
    /// single header is borrowed from the scan.
    fn forwarded_chain(&self, req: &'a RequestHeader) -> Option<Cow<'a, str>> {
        if self.forwarded_more {
            forwarded_chain(req)
        } else {
            self.forwarded.map(Cow::Borrowed)
        }
    }

    /// The request's host: the `Host` header, else the request line's authority.
    fn host(&self, req: &'a RequestHeader) -> Option<&'a str> {
        self.host
            .or_else(|| req.uri.authority().map(http::uri::Authority::as_str))
    }
}

impl LinkProxy {
    /// The country header to read: only a trusted load balancer's counts.
    fn country_header(&self, ctx: &Ctx) -> Option<&HeaderName> {
        match (&self.state.country_header, ctx.peer_trusted) {
            (Some(name), true) => Some(name),
            _ => None,
        }
    }

    /// Builds the click event from the request (before any response is written).
    fn click(
        headers: &RequestHeaders<'_>,
        ctx: &Ctx,
        link: LinkId,
        method: Method,
        now: Timestamp,
    ) -> ClickEvent {
        // Anything but two ASCII letters (and Cloudflare's "XX" for unknown) is ignored.
        let country = headers.country.and_then(|v| {
            let b = v.as_bytes().trim_ascii();
            (b.len() == 2
                && b.iter().all(u8::is_ascii_alphabetic)
                && !b.eq_ignore_ascii_case(b"XX"))
            .then(|| [b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()])
        });
        let captured = |value: Option<&str>| value.map(capture_header);
        ClickEvent {
            click_id: ClickId::at(now),
            at: now,
            link_id: link,
            client_ip: ctx.client,
            user_agent: captured(headers.user_agent),
            referrer: captured(headers.referrer),
            // Readable header values are visible ASCII, spaces and tabs: an ASCII trim is
            // the whole trim (and skips `str::trim`'s Unicode decoding).
            has_accept: headers
                .accept
                .is_some_and(|a| !a.as_bytes().trim_ascii().is_empty()),
            method: match method {
                Method::Head => ClickMethod::Head,
                Method::Post => ClickMethod::Post,
                Method::Get | Method::Other => ClickMethod::Get,
            },
            country,
            prefetch: headers.prefetch,
        }
    }

    /// Counts a lookup that `tier` answered (`found`: a link, not an unknown code).
    fn count_lookup(&self, tier: Tier, found: bool) {
        let metrics = &self.state.metrics;
        match tier {
            Tier::L1 => metrics.lookup(TierLabel::L1, true),
            Tier::L2 => {
                metrics.lookup(TierLabel::L1, false);
                metrics.lookup(TierLabel::L2, true);
            }
            Tier::Store | Tier::Shared => {
                metrics.lookup(TierLabel::L1, false);
                if self.state.resolver.l2().is_some() {
                    metrics.lookup(TierLabel::L2, false);
                }
                metrics.lookup(TierLabel::Store, found);
            }
        }
    }

    /// The first phase of every request, synchronous: reads the peer and headers, routes,
    /// applies the link path's refusals and limits, and answers a cached link. A redirect
    /// (its click queued) is all the hot path has left to write; anything else goes to
    /// [`LinkProxy::finish`], out of line.
    fn prepare(&self, session: &Session, ctx: &mut Ctx) -> Prepared {
        ctx.peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(SocketAddr::ip);
        ctx.peer_trusted = ctx
            .peer
            .is_some_and(|p| self.state.trusted.iter().any(|n| n.contains(&p)));
        let peer = ctx.peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let req = session.req_header();
        let headers = RequestHeaders::scan(req, self.country_header(ctx));
        // An untrusted peer's X-Forwarded-For is never read.
        ctx.client = if ctx.peer_trusted {
            client_behind_trusted_peer(
                peer,
                headers.forwarded_chain(req).as_deref(),
                &self.state.trusted,
            )
        } else {
            peer
        };
        match route(req.uri.path()) {
            Route::Health => return Prepared::Health,
            Route::Ready => return Prepared::Ready,
            Route::Admin => return Prepared::Admin,
            Route::Link => {}
        }
        // The link's key before the refusals and limits: the memo's slot for it is fetched
        // while they run.
        let mut key_buf = KeyBuf::default();
        let key = headers
            .host(req)
            .map(|host| self.state.resolver.key(&mut key_buf, host, link_code(req)));
        if self
            .state
            .refused_networks
            .iter()
            .any(|n| n.contains(&ctx.client))
        {
            return Prepared::Refused;
        }
        if let Some(wait) = self.state.enumerators.blocked_for(&ctx.client, ctx.started) {
            return Prepared::TooMany(wait);
        }
        if let Some(limiter) = &self.state.per_client
            && let Verdict::Limited { retry_after } = limiter.check_local(&ctx.client)
        {
            return Prepared::TooMany(retry_after);
        }
        let now = Timestamp::at(ctx.started);
        let Some(key) = key else {
            return Prepared::Link(Step::NoHost, now);
        };
        // Decided on the memo's own entry: a hit copies nothing but the target's bytes.
        let decided = self.state.resolver.cached_with(&key, ctx.started, |link| {
            self.resolved(req, &headers, ctx, link, Tier::L1, now)
        });
        match decided {
            Some(step) => Prepared::Link(step, now),
            None => Prepared::Miss(now),
        }
    }

    /// Decides a resolved link request; everything is borrowed from the request, nothing is
    /// copied on the redirect path except the `Location` value itself. A redirect's click
    /// is queued here, except a click-limited link's, which waits for its budget.
    fn resolved(
        &self,
        req: &RequestHeader,
        headers: &RequestHeaders<'_>,
        ctx: &mut Ctx,
        link: Option<&HotLink>,
        tier: Tier,
        now: Timestamp,
    ) -> Step {
        self.count_lookup(tier, link.is_some());
        let method = method_of(req);
        let query = req.uri.query();
        let facts = RequestFacts { method, query, now };
        match decide::decide(link, &facts, self.state.default_status) {
            Decision::Redirect {
                status,
                location,
                limited,
            } => {
                let Some(link) = link else {
                    return Step::Decided(Decision::NotFound);
                };
                let outcome = match tier {
                    Tier::L1 => Outcome::L1Hit,
                    Tier::L2 => Outcome::L2Hit,
                    Tier::Store | Tier::Shared => Outcome::StoreHit,
                };
                let click = Self::click(headers, ctx, link.id, method, now);
                if limited {
                    return Step::Limited(Box::new(Limited {
                        link: link.clone(),
                        status,
                        location,
                        outcome,
                        click,
                    }));
                }
                ctx.outcome = Some(outcome);
                self.state.clicks.push(click);
                Step::Redirect { status, location }
            }
            Decision::PasswordRequired if method == Method::Post => match link {
                Some(link) => Step::CheckPassword {
                    link: link.clone(),
                    query: query.map(str::to_owned),
                },
                None => Step::Decided(Decision::NotFound),
            },
            other => Step::Decided(other),
        }
    }

    /// Everything but a cached link's redirect: probes, passthrough, refusals, cache misses,
    /// click-limited links and every other answer. Boxed behind `dyn`, so none of its code
    /// is laid out among the hot path's (it would take instruction-cache lines every
    /// redirect pays for).
    fn finish<'a>(
        &'a self,
        session: &'a mut Session,
        ctx: &'a mut Ctx,
        prepared: Prepared,
    ) -> Pin<Box<dyn Future<Output = Result<bool>> + Send + 'a>> {
        Box::pin(async move {
            let (step, now) = match prepared {
                Prepared::Health => {
                    respond_text(session, StatusCode::OK, "ok\n").await?;
                    return Ok(true);
                }
                Prepared::Ready => {
                    if self.state.ready.load(Ordering::Relaxed) {
                        respond_text(session, StatusCode::OK, "ready\n").await?;
                    } else {
                        respond_text(
                            session,
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: the store has not answered recently\n",
                        )
                        .await?;
                    }
                    return Ok(true);
                }
                Prepared::Admin => {
                    ctx.outcome = Some(Outcome::Passthrough);
                    return Ok(false);
                }
                Prepared::Refused => {
                    ctx.outcome = Some(Outcome::Limited);
                    respond_text(session, StatusCode::FORBIDDEN, pages::REFUSED).await?;
                    return Ok(true);
                }
                Prepared::TooMany(wait) => {
                    self.too_many(session, ctx, wait).await?;
                    return Ok(true);
                }
                Prepared::Link(step, now) => (step, now),
                Prepared::Miss(now) => (self.load_missing(session, ctx, now).await, now),
            };
            self.answer_link(session, ctx, step, now).await?;
            Ok(true)
        })
    }

    /// A link that was not cached: loads it (a single flight per key) and decides.
    async fn load_missing(&self, session: &Session, ctx: &mut Ctx, now: Timestamp) -> Step {
        let req = session.req_header();
        // The header pass again: `prepare`'s borrowed from the request and ended with it
        // (the hit path copies nothing out); a miss waits on I/O anyway.
        let headers = RequestHeaders::scan(req, self.country_header(ctx));
        let Some(host) = headers.host(req) else {
            return Step::NoHost;
        };
        let resolved = match self.state.resolver.load_missing(host, link_code(req)).await {
            Ok(r) => r,
            Err(error) => {
                tracing::warn!(%error, "link lookup failed");
                return Step::StoreFailed;
            }
        };
        self.resolved(
            req,
            &headers,
            ctx,
            resolved.link.as_ref(),
            resolved.tier,
            now,
        )
    }

    /// Sends what [`LinkProxy::prepare`] or [`LinkProxy::finish`] decided for a link.
    async fn answer_link(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        step: Step,
        now: Timestamp,
    ) -> Result<()> {
        match step {
            Step::Redirect { status, location } => {
                respond_redirect(session, status, location).await
            }
            // Exact across nodes when Redis is configured; with the budget spent the link
            // is gone.
            Step::Limited(limited) => {
                let Limited {
                    link,
                    status,
                    location,
                    outcome,
                    click,
                } = *limited;
                if !self.state.budget.take(&link).await {
                    return self
                        .answer_decision(session, ctx, decide::gone(&link))
                        .await;
                }
                ctx.outcome = Some(outcome);
                self.state.clicks.push(click);
                respond_redirect(session, status, location).await
            }
            Step::NoHost => {
                ctx.outcome = Some(Outcome::BadRequest);
                respond_text(session, StatusCode::BAD_REQUEST, pages::BAD_REQUEST).await
            }
            Step::StoreFailed => {
                ctx.outcome = Some(Outcome::Error);
                respond(
                    session,
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT_PLAIN,
                    pages::UNAVAILABLE,
                    Some((header::RETRY_AFTER, HeaderValue::from_static("1"))),
                )
                .await
            }
            Step::CheckPassword { link, query } => {
                Box::pin(self.check_password(session, ctx, &link, query.as_deref(), now)).await
            }
            Step::Decided(decision) => self.answer_decision(session, ctx, decision).await,
        }
    }

    async fn check_password(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        link: &HotLink,
        query: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        ctx.outcome = Some(Outcome::Password);
        let body = read_body(session, MAX_FORM_BYTES).await?;
        let password = body
            .as_deref()
            .and_then(password_from_form)
            .unwrap_or_default();
        let hash = link.password_hash().unwrap_or_default();
        match self
            .state
            .passwords
            .check(ctx.client, &password, hash)
            .await
        {
            Attempt::Correct => match decide::redirect(link, query, self.state.default_status) {
                Decision::Redirect {
                    location, limited, ..
                } => {
                    if limited && !self.state.budget.take(link).await {
                        return self.answer_decision(session, ctx, decide::gone(link)).await;
                    }
                    let req = session.req_header();
                    let headers = RequestHeaders::scan(req, self.country_header(ctx));
                    let click = Self::click(&headers, ctx, link.id, Method::Post, now);
                    self.state.clicks.push(click);
                    // After a POST the browser must GET the target: 303 See Other.
                    respond_redirect(session, 303, location).await
                }
                other => self.answer_decision(session, ctx, other).await,
            },
            Attempt::Wrong => {
                respond_html(session, StatusCode::UNAUTHORIZED, pages::WRONG_PASSWORD).await
            }
            Attempt::Limited { retry_after_secs } => {
                ctx.outcome = Some(Outcome::Limited);
                respond(
                    session,
                    StatusCode::TOO_MANY_REQUESTS,
                    TEXT_PLAIN,
                    pages::TOO_MANY_ATTEMPTS,
                    Some((header::RETRY_AFTER, retry_after_secs.into())),
                )
                .await
            }
        }
    }

    /// 429 with `Retry-After` in whole seconds.
    async fn too_many(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        retry_after: std::time::Duration,
    ) -> Result<()> {
        ctx.outcome = Some(Outcome::Limited);
        respond(
            session,
            StatusCode::TOO_MANY_REQUESTS,
            TEXT_PLAIN,
            pages::TOO_MANY_REQUESTS,
            Some((header::RETRY_AFTER, retry_after_secs(retry_after).into())),
        )
        .await
    }

    /// Writes every answer that is not a successful redirect.
    async fn answer_decision(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        decision: Decision,
    ) -> Result<()> {
        match decision {
            Decision::Redirect {
                status, location, ..
            } => respond_redirect(session, status, location).await,
            Decision::Gone { fallback } => {
                ctx.outcome = Some(Outcome::Gone);
                match fallback {
                    Some(url) => respond_redirect(session, 302, url).await,
                    None => respond_html(session, StatusCode::GONE, pages::GONE).await,
                }
            }
            Decision::Unavailable { banned } => {
                ctx.outcome = Some(Outcome::Gone);
                respond_html(
                    session,
                    StatusCode::GONE,
                    if banned {
                        pages::BANNED
                    } else {
                        pages::DISABLED
                    },
                )
                .await
            }
            Decision::PasswordRequired => {
                ctx.outcome = Some(Outcome::Password);
                respond_html(session, StatusCode::OK, pages::PASSWORD_FORM).await
            }
            Decision::NotFound => {
                if let Verdict::Limited { retry_after } =
                    self.state.unknown_codes.check_or_local(&ctx.client).await
                {
                    self.state
                        .enumerators
                        .block(ctx.client, Instant::now() + retry_after);
                    return self.too_many(session, ctx, retry_after).await;
                }
                ctx.outcome = Some(Outcome::NotFound);
                respond_html(session, StatusCode::NOT_FOUND, pages::NOT_FOUND).await
            }
            Decision::MethodNotAllowed => {
                ctx.outcome = Some(Outcome::BadRequest);
                respond(
                    session,
                    StatusCode::METHOD_NOT_ALLOWED,
                    TEXT_PLAIN,
                    pages::METHOD_NOT_ALLOWED,
                    Some((header::ALLOW, HeaderValue::from_static("GET, HEAD"))),
                )
                .await
            }
            Decision::BadQuery => {
                ctx.outcome = Some(Outcome::BadRequest);
                respond_text(session, StatusCode::BAD_REQUEST, pages::BAD_REQUEST).await
            }
            Decision::TooLong => {
                ctx.outcome = Some(Outcome::BadRequest);
                respond_text(session, StatusCode::URI_TOO_LONG, pages::URI_TOO_LONG).await
            }
        }
    }
}

/// Reads a request body up to `max` bytes; `None` when it is larger.
async fn read_body(session: &mut Session, max: usize) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

#[async_trait]
impl ProxyHttp for LinkProxy {
    type CTX = Ctx;

    /// None. Pingora's default is a response-compression module at level 0 (disabled),
    /// which still builds its context (two allocations) and runs its filters on every
    /// request. linkgate never turns it on: a redirect has no body, the proxy's own pages are
    /// a few hundred bytes, and a passthrough response reaches the client as the admin
    /// service wrote it, as it did with the module disabled.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            outcome: None,
            peer: None,
            peer_trusted: false,
            client: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        match self.prepare(session, ctx) {
            Prepared::Link(Step::Redirect { status, location }, _) => {
                respond_redirect(session, status, location).await?;
                Ok(true)
            }
            other => self.finish(session, ctx, other).await,
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.state.admin_upstream,
            false,
            String::new(),
        )))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // X-Forwarded-For: a trusted peer's chain is kept and the peer appended; an untrusted
        // peer's claims are discarded. Admin sees the same client address the proxy used.
        let chain = match (ctx.peer_trusted, ctx.peer) {
            (true, Some(p)) => match forwarded_chain(upstream) {
                Some(existing) => format!("{existing}, {p}"),
                None => p.to_string(),
            },
            (_, peer) => peer.map(|p| p.to_string()).unwrap_or_default(),
        };
        upstream.remove_header("x-forwarded-for");
        if !chain.is_empty() {
            upstream.insert_header("x-forwarded-for", chain)?;
        }
        upstream.insert_header("x-real-ip", ctx.client.to_string())?;
        Ok(())
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut Ctx) {
        let outcome = match (ctx.outcome, error) {
            // A failed passthrough or an error before any decision is an error.
            (Some(Outcome::Passthrough) | None, Some(_)) => Outcome::Error,
            (Some(o), _) => o,
            // Health and readiness probes are not traffic.
            (None, None) => return,
        };
        self.state.metrics.observe(outcome, ctx.started.elapsed());
        if let (Some(e), Outcome::Error) = (error, outcome) {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            tracing::debug!(error = %e, status, "request failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &[u8])]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/abc", None).unwrap();
        for (name, value) in headers {
            req.append_header(
                name.to_string(),
                http::HeaderValue::from_bytes(value).unwrap(),
            )
            .unwrap();
        }
        req
    }

    #[test]
    fn request_headers_are_found_in_one_pass_as_lookups_would_find_them() {
        let req = request(&[
            ("Host", b"s.example"),
            ("User-Agent", b"Mozilla/5.0 first"),
            ("user-agent", b"second"),
            ("Accept", b"text/html"),
            ("CF-IPCountry", b"de"),
            ("X-Forwarded-For", b"198.51.100.7"),
        ]);
        let found = RequestHeaders::scan(&req, Some(&HeaderName::from_static("cf-ipcountry")));
        assert_eq!(
            found,
            RequestHeaders {
                host: Some("s.example"),
                forwarded: Some("198.51.100.7"),
                forwarded_more: false,
                user_agent: Some("Mozilla/5.0 first"),
                referrer: None,
                accept: Some("text/html"),
                country: Some("de"),
                prefetch: false,
            }
        );
        assert_eq!(found.host(&req), Some("s.example"));
        assert_eq!(
            found.forwarded_chain(&req),
            forwarded_chain(&req),
            "one value is borrowed as the lookup borrows it"
        );
        // No configured country header: the value is not read.
        assert_eq!(RequestHeaders::scan(&req, None).country, None);
        // An empty header is there (not missing); a value that is not visible ASCII is
        // unreadable, as for a lookup, even when a later value is readable.
        let req = request(&[
            ("referer", b""),
            ("accept", b"caf\xc3\xa9"),
            ("accept", b"x"),
            ("host", b"caf\xc3\xa9"),
            ("host", b"s.example"),
        ]);
        let found = RequestHeaders::scan(&req, None);
        assert_eq!(found.referrer, Some(""));
        assert_eq!(found.accept, None);
        assert_eq!(
            found.host, None,
            "the first Host value counts, as for a lookup"
        );
        assert_eq!(found.forwarded_chain(&req), None);
    }

    #[test]
    fn every_forwarded_for_value_is_in_the_chain_and_unreadable_ones_are_skipped() {
        let req = request(&[
            ("x-forwarded-for", b"6.6.6.6"),
            ("x-forwarded-for", b"caf\xc3\xa9"),
            ("X-Forwarded-For", b"198.51.100.7, 10.0.0.5"),
            ("x-forwarded-for", b"10.0.0.6"),
        ]);
        let found = RequestHeaders::scan(&req, None);
        assert_eq!(found.forwarded, Some("6.6.6.6"));
        assert!(found.forwarded_more);
        assert_eq!(
            found.forwarded_chain(&req).as_deref(),
            Some("6.6.6.6, 198.51.100.7, 10.0.0.5, 10.0.0.6")
        );
        // One readable value after an unreadable one is the whole chain, borrowed.
        let req = request(&[
            ("x-forwarded-for", b"caf\xc3\xa9"),
            ("x-forwarded-for", b"198.51.100.7"),
        ]);
        let found = RequestHeaders::scan(&req, None);
        assert!(!found.forwarded_more);
        assert_eq!(found.forwarded_chain(&req), forwarded_chain(&req));
        assert_eq!(found.forwarded_chain(&req).as_deref(), Some("198.51.100.7"));
    }

    #[test]
    fn without_a_host_header_the_authority_is_the_host() {
        let mut req = RequestHeader::build("GET", b"/abc", None).unwrap();
        req.set_uri(http::Uri::from_static("http://s.example/abc"));
        let found = RequestHeaders::scan(&req, None);
        assert_eq!(found.host, None);
        assert_eq!(found.host(&req), Some("s.example"));
    }

    #[test]
    fn any_prefetch_or_preview_mark_makes_a_prefetch() {
        for (name, value) in [
            ("Sec-Purpose", &b"prefetch;anonymous-client-ip"[..]),
            ("Purpose", b"Prefetch"),
            ("X-Moz", b"prefetch"),
            ("X-Purpose", b"preview"),
        ] {
            assert!(
                RequestHeaders::scan(&request(&[(name, value)]), None).prefetch,
                "{name}"
            );
        }
        let plain = request(&[("Sec-Purpose", b"prerender-ish"), ("Accept", b"*/*")]);
        assert!(!RequestHeaders::scan(&plain, None).prefetch);
        let second = request(&[("Purpose", b"none"), ("Purpose", b"prefetch")]);
        assert!(RequestHeaders::scan(&second, None).prefetch);
    }

    #[test]
    fn what_the_hit_path_moves_stays_small() {
        // `prepare` returns its decision through two closures; a click-limited redirect's
        // event is boxed so the usual answer is not copied at its size.
        assert!(
            size_of::<Step>() <= 72,
            "Step is {} bytes",
            size_of::<Step>()
        );
        assert!(
            size_of::<Prepared>() <= 88,
            "Prepared is {} bytes",
            size_of::<Prepared>()
        );
    }

    #[test]
    fn routes_separate_probes_admin_paths_and_codes() {
        assert!(matches!(route("/healthz"), Route::Health));
        assert!(matches!(route("/readyz"), Route::Ready));
        for admin in [
            "/",
            "/api/v1/links",
            "/api",
            "/static/app.js",
            "/assets/x.css",
            "/favicon.ico",
        ] {
            assert!(matches!(route(admin), Route::Admin), "{admin}");
        }
        assert!(matches!(route("/abc123"), Route::Link));
        assert!(
            matches!(route("/a/b"), Route::Link),
            "not a valid code: resolves to 404"
        );
    }

    #[test]
    fn a_blocked_enumerator_waits_at_once_and_others_never_do() {
        use std::time::Duration;
        let blocked = Enumerators::new();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let start = Instant::now();
        assert!(blocked.blocked_for(&a, start).is_none());
        blocked.block(a, start + Duration::from_millis(200));
        assert_eq!(
            blocked.blocked_for(&a, start),
            Some(Duration::from_millis(200)),
            "right after the block, not after maintenance"
        );
        assert_eq!(
            blocked.blocked_for(&a, start + Duration::from_millis(150)),
            Some(Duration::from_millis(50))
        );
        assert!(blocked.blocked_for(&b, start).is_none());
        assert!(
            blocked
                .blocked_for(&a, start + Duration::from_millis(250))
                .is_none()
        );
    }
}
