//! linkgate's edge proxy: a Pingora service that answers link paths from a two-tier cache
//! in `request_filter`, passes `/`, `/api/*` and dashboard assets through to the admin
//! service, and pushes every redirect's click onto a lock-free queue.
//!
//! [`Proxy::new`] opens the store and Redis on a small runtime of the proxy's own (database
//! and Redis connections and the background tasks live there, independent of Pingora's
//! per-service runtimes); [`Proxy::run`] serves until the shutdown signal, then drains.

pub mod app;
pub mod decide;
pub mod metrics;
pub mod pages;
pub mod password;
mod priority;
mod sync;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use linkgate_common::budget::ClickBudget;
use linkgate_common::cache::{RedisTier, Resolver, ResolverSettings};
use linkgate_common::clicks::pipeline::{self, PipelineSettings};
use linkgate_common::clicks::{ClickQueue, PipelineHandle, PipelineStats};
use linkgate_common::domain::RedirectStatus;
use linkgate_common::ratelimit::Limiter;
use linkgate_common::store::sqlite::SqliteTuning;
use linkgate_common::store::{self, StoreError};
use linkgate_config::Settings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignalWatch};
use pingora::services::listening::Service;

use crate::app::{Enumerators, LinkProxy, ProxyState};
use crate::metrics::{Metrics, MetricsApp, ScrapeSource};
use crate::password::PasswordGate;
use crate::priority::ClickPriority;

/// How many threads answer requests (`proxy.threads`, or one per core if 0).
fn request_threads(settings: &Settings) -> usize {
    if settings.proxy.threads == 0 {
        std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
    } else {
        settings.proxy.threads
    }
}

/// Connects to the configured store and verifies its schema version.
pub async fn check_store(settings: &Settings) -> Result<u32, StoreError> {
    let store = store::open_tuned(&settings.store, SqliteTuning::LOOKUPS)?;
    store.check_schema().await?;
    store.schema_version().await
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("store: {0} (has `linkgate-admin migrate` been run?)")]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(String),
    #[error("click pipeline: {0}")]
    Pipeline(#[from] linkgate_common::clicks::pipeline::PipelineError),
}

/// A configured proxy, ready to run.
pub struct Proxy {
    settings: Settings,
    state: Arc<ProxyState>,
    /// Runs database and Redis connections and the background tasks.
    io: tokio::runtime::Runtime,
    /// Runs the click batcher, at a lower CPU priority.
    clicks_rt: tokio::runtime::Runtime,
    click_priority: ClickPriority,
    /// The click batcher (on `clicks_rt`).
    pipeline: PipelineHandle,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("listen", &self.settings.proxy.listen)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Opens the store (which must be migrated) and prepares Redis (connected in the
    /// background: a Redis that is down at start only means no L2 until it is back).
    pub fn new(settings: Settings) -> Result<Self, StartError> {
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("linkgate-io")
            .enable_all()
            .build()?;
        let store = io.block_on(async {
            let store = store::open_tuned(&settings.store, SqliteTuning::LOOKUPS)?;
            store.check_schema().await?;
            Ok::<_, StoreError>(store)
        })?;
        let redis = RedisTier::from_settings(&settings).map_err(StartError::Redis)?;
        if let Some(redis) = &redis
            && let Err(error) = io.block_on(redis.connect())
        {
            tracing::warn!(%error, "redis is not reachable at start; serving without L2 until it is");
        }
        let resolver = Arc::new(Resolver::new(
            ResolverSettings {
                l1_max_bytes: settings.cache.l1_max_bytes,
                l1_ttl: Duration::from_secs(settings.cache.l1_ttl_secs),
                negative_ttl: Duration::from_secs(settings.cache.negative_ttl_secs),
                store_concurrency: settings.proxy.store_concurrency,
            },
            store,
            redis.clone(),
        ));
        // Each request thread pushes onto a ring of its own, with its share of the capacity.
        let clicks = Arc::new(ClickQueue::with_threads(
            settings.clicks.queue_capacity,
            request_threads(&settings),
        ));
        // The batcher starts now (replaying any journal left by an earlier run) and drains
        // the queue the redirect threads fill. It runs on a runtime of its own whose threads
        // (and the blocking threads its SQLite writes use) run on idle CPU while it keeps up
        // and at the normal policy when it falls behind (see `priority`), with a store
        // connection pool of its own: redirects get the CPU first, and click writing catches
        // up in the gaps (the queue and buffer absorb the difference).
        let click_priority = ClickPriority::new();
        let clicks_rt = {
            let (start, stop) = (click_priority.clone(), click_priority.clone());
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("linkgate-clicks")
                .on_thread_start(move || start.on_thread_start())
                .on_thread_stop(move || stop.on_thread_stop())
                .enable_all()
                .build()?
        };
        let pipeline = {
            let _guard = clicks_rt.enter();
            let store = store::open_tuned(&settings.store, SqliteTuning::CLICK_WRITER)?;
            let mut pipeline_settings = PipelineSettings::from_config(&settings);
            // A Redis tier of the batcher's own for fraud counters shared across nodes
            // (connected lazily by the batcher; see `PipelineSettings::shared_counters`).
            pipeline_settings.shared_counters =
                RedisTier::from_settings(&settings).map_err(StartError::Redis)?;
            pipeline::spawn(Arc::clone(&clicks), store, pipeline_settings)?
        };
        let state = Arc::new(ProxyState {
            resolver,
            clicks,
            unknown_codes: Limiter::new(
                "unknown",
                settings.limits.unknown_code_per_minute,
                redis.clone(),
            ),
            enumerators: Enumerators::new(),
            refused_networks: if settings.fraud.refuse_bad_networks {
                settings.fraud.bad_networks.clone()
            } else {
                Vec::new()
            },
            per_client: (settings.limits.proxy_per_minute > 0)
                .then(|| Limiter::new("client", settings.limits.proxy_per_minute, None)),
            budget: ClickBudget::new(redis),
            passwords: PasswordGate::new(settings.limits.password_per_minute),
            metrics: Arc::new(Metrics::new()),
            trusted: settings.proxy.trusted_proxies.clone(),
            admin_upstream: settings.proxy.admin_upstream,
            default_status: RedirectStatus::from_code(settings.links.default_redirect_status)
                .unwrap_or(RedirectStatus::Found),
            ready: AtomicBool::new(false),
            country_header: settings
                .clicks
                .country_header
                .as_deref()
                // Validated as a header name (`clicks.country_header`).
                .and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok()),
            pipeline: Arc::clone(pipeline.stats()),
        });
        Ok(Self {
            settings,
            state,
            io,
            clicks_rt,
            click_priority,
            pipeline,
        })
    }

    /// Shared state, for tests and embedding.
    pub fn state(&self) -> &Arc<ProxyState> {
        &self.state
    }

    /// Serves until `shutdown` fires, then stops accepting, lets in-flight requests finish
    /// and returns within the configured grace period.
    pub fn run(self, shutdown: Box<dyn ShutdownSignalWatch>) {
        let Self {
            settings,
            state,
            io,
            clicks_rt,
            click_priority,
            pipeline,
        } = self;
        // The batcher's CPU policy follows its backlog (`click_backlog`): normal past half
        // of what the queue and the memory buffer hold (or past `defer_max_clicks`
        // deferred, or while a deferral past its bounds is caught up with), idle CPU again
        // under an eighth (a quarter of that).
        let queue_capacity = settings.clicks.queue_capacity;
        let capacity = queue_capacity + settings.clicks.buffer_max_clicks;
        let defer_max = settings.clicks.defer_max_clicks;
        let governor = {
            let state = Arc::clone(&state);
            let backlog = move || {
                let load =
                    |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
                // A deferral past its bounds is caught up with at the normal policy.
                if state
                    .pipeline
                    .catching_up
                    .load(std::sync::atomic::Ordering::Relaxed)
                {
                    return capacity;
                }
                click_backlog(
                    state.clicks.len(),
                    usize::try_from(load(&state.pipeline.buffered)).unwrap_or(usize::MAX),
                    (load(&state.pipeline.deferred), defer_max),
                    queue_capacity,
                    capacity,
                )
            };
            click_priority
                .govern(backlog, capacity / 2, capacity / 8)
                .inspect_err(|error| {
                    tracing::warn!(
                        %error,
                        "no click priority governor; the batcher stays at the normal policy"
                    );
                })
                .ok()
        };
        if governor.is_none() {
            click_priority.stop();
        }
        {
            let _guard = io.enter();
            sync::spawn_all(&state, Duration::from_millis(settings.cache.change_poll_ms));
        }

        let threads = request_threads(&settings);
        let grace = settings.proxy.grace_period_secs.max(1);
        // Pingora first keeps serving in-flight requests for `grace_period_seconds` (new
        // connections are no longer accepted), then gives its runtimes
        // `graceful_shutdown_timeout_seconds` to finish. Together they stay inside our grace
        // period, with a second left for the final click flush.
        let serve_in_flight = (grace / 2).max(1);
        let runtime_stop = grace.saturating_sub(serve_in_flight + 1);
        let conf = ServerConf {
            threads,
            grace_period_seconds: Some(serve_in_flight),
            graceful_shutdown_timeout_seconds: Some(runtime_stop),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();

        let mut proxy = pingora::proxy::http_proxy_service(
            &server.configuration,
            LinkProxy {
                state: Arc::clone(&state),
            },
        );
        proxy.add_tcp(&settings.proxy.listen.to_string());
        server.add_service(proxy);

        let source: Arc<dyn ScrapeSource> = Arc::new(Scrape(Arc::clone(&state)));
        let mut metrics = Service::new(
            "linkgate metrics".to_owned(),
            MetricsApp {
                metrics: Arc::clone(&state.metrics),
                source,
            },
        );
        metrics.add_tcp(&settings.proxy.metrics_listen.to_string());
        metrics.threads = Some(1);
        server.add_service(metrics);

        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            listen = %settings.proxy.listen,
            metrics = %settings.proxy.metrics_listen,
            admin_upstream = %settings.proxy.admin_upstream,
            threads,
            redis = settings.redis.url.is_some(),
            "linkgate-proxy starting"
        );
        server.run(RunArgs {
            shutdown_signal: shutdown,
        });

        // The final flush gets what is left of the grace period (at least a second): queued
        // clicks are written, or journaled when the store does not take them in time.
        click_priority.stop();
        if let Some(governor) = governor {
            let _ = governor.join();
        }
        clicks_rt.block_on(pipeline.shutdown(Duration::from_millis(800)));
        clicks_rt.shutdown_timeout(Duration::from_millis(200));
        let stats = state.clicks.stats();
        tracing::info!(
            queued = stats.depth,
            offered = stats.offered,
            dropped = stats.dropped,
            "linkgate-proxy stopped"
        );
        io.shutdown_timeout(Duration::from_millis(500));
    }
}

/// Scrape-time values for the metrics listener.
struct Scrape(Arc<ProxyState>);

impl ScrapeSource for Scrape {
    fn queue_depth(&self) -> usize {
        self.0.clicks.len()
    }
    fn clicks_offered(&self) -> u64 {
        self.0.clicks.stats().offered
    }
    fn clicks_dropped(&self) -> u64 {
        self.0.clicks.stats().dropped
    }
    fn redis_circuit_open(&self) -> Option<bool> {
        self.0.resolver.l2().map(|r| r.circuit_open())
    }
    fn redis_circuit_opened(&self) -> u64 {
        self.0.resolver.l2().map_or(0, |r| r.times_circuit_opened())
    }
    fn l1_entries(&self) -> u64 {
        self.0.resolver.l1_entries()
    }
    fn pipeline(&self) -> Option<Arc<PipelineStats>> {
        Some(Arc::clone(&self.0.pipeline))
    }
}

/// The click backlog the batcher's priority governor compares with half and an eighth of
/// `capacity` (the queue's plus the memory buffer's): queued + buffered clicks, the queue's
/// fill scaled to `capacity`, or the deferred clicks scaled so that `defer_max` of them
/// reach half, whichever is largest. Buffered clicks alone can pass half (a window write at
/// idle priority on a busy machine lets a second or more gather), and so can the queue
/// alone: a batcher starved of CPU does not move the queue into memory, and a full queue
/// drops clicks. A batcher that falls behind defers new clicks to disk instead of holding
/// them (see `linkgate_common::clicks::deferred`), so at a peak it is the deferred count
/// that grows: the batcher stays on idle CPU, leaving the cores to redirects, until
/// `defer_max` are deferred (0: deferral is off).
fn click_backlog(
    queued: usize,
    buffered: usize,
    (deferred, defer_max): (u64, u64),
    queue_capacity: usize,
    capacity: usize,
) -> usize {
    let queue_fill = queued.saturating_mul(capacity) / queue_capacity.max(1);
    let deferred_fill = if defer_max == 0 {
        0
    } else {
        let scaled = u128::from(deferred) * (capacity / 2) as u128 / u128::from(defer_max);
        usize::try_from(scaled).unwrap_or(usize::MAX)
    };
    queued
        .saturating_add(buffered)
        .max(queue_fill)
        .max(deferred_fill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_full_queue_alone_reaches_the_governors_high_mark() {
        let (queue, buffer) = (65_536, 100_000);
        let capacity = queue + buffer;
        let (high, low) = (capacity / 2, capacity / 8);
        let none = (0, 4_000_000);
        // Starved: nothing buffered, the queue half full.
        assert!(click_backlog(queue / 2, 0, none, queue, capacity) >= high);
        assert!(click_backlog(queue / 2 - 100, 0, none, queue, capacity) < high);
        // Keeping up with the queue, but a window's worth of clicks buffered.
        assert!(click_backlog(1_000, high, none, queue, capacity) > high);
        assert!(click_backlog(1_000, 30_000, none, queue, capacity) < high);
        // Back to idle only when both are low.
        assert!(click_backlog(queue / 8 + 10, 0, none, queue, capacity) > low);
        assert!(click_backlog(100, 1_000, none, queue, capacity) < low);
    }

    #[test]
    fn deferred_clicks_reach_the_high_mark_at_defer_max() {
        let (queue, buffer) = (65_536, 100_000);
        let capacity = queue + buffer;
        let (high, low) = (capacity / 2, capacity / 8);
        let max = 4_000_000;
        assert!(click_backlog(100, 1_000, (max - 10_000, max), queue, capacity) < high);
        assert!(click_backlog(100, 1_000, (max, max), queue, capacity) >= high);
        // Back to idle under a quarter of `defer_max`.
        assert!(click_backlog(100, 1_000, (max / 4 + 10_000, max), queue, capacity) > low);
        assert!(click_backlog(100, 1_000, (max / 4 - 10_000, max), queue, capacity) < low);
        // Deferral off: deferred clicks (from an earlier run) do not count.
        assert!(click_backlog(100, 1_000, (max, 0), queue, capacity) < low);
    }
}
