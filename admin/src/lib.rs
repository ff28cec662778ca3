//! linkgate's admin service: a warp API under `/api/v1` for link owners and administrators
//! (auth, links, analytics, trending), with health, readiness, `OpenAPI` and Prometheus
//! metrics on a separate listener.
//!
//! The binary is thin: [`migrate`], [`ensure_admin`] and [`serve`] are what it calls, and
//! what tests drive directly on port 0.

pub mod analytics;
pub mod auth;
pub mod csv_io;
pub mod links;
pub mod metrics;
pub mod problem;
pub mod qr;
pub mod routes;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use linkgate_common::domain::{Email, NewUser, Role};
use linkgate_common::store::{self, Store, StoreError};
use linkgate_config::Settings;
use tokio::net::TcpListener;
use warp::Filter as _;

pub use state::{AppState, SetupError};

/// Opens the configured store and applies pending migrations; returns the store and the
/// schema version.
pub async fn migrate(settings: &Settings) -> Result<(Arc<dyn Store>, u32), StoreError> {
    let store = store::open(&settings.store)?;
    let version = store.migrate().await?;
    Ok((store, version))
}

/// What [`ensure_admin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// An administrator already exists; nothing changed.
    Exists,
    /// Created with the given password; `generated` when we made it up (show it once).
    Created { email: String, generated: bool },
}

/// Creates the first administrator when none exists: `email`, with `password` or, when
/// absent, a random one that the caller shows once.
pub async fn ensure_admin(
    state: &AppState,
    email: &str,
    password: Option<&str>,
) -> Result<(Bootstrap, Option<String>), problem::ApiError> {
    if state.store.count_admins().await? > 0 {
        return Ok((Bootstrap::Exists, None));
    }
    create_admin(state, email, password).await
}

/// Creates an administrator (the `create-admin` command).
pub async fn create_admin(
    state: &AppState,
    email: &str,
    password: Option<&str>,
) -> Result<(Bootstrap, Option<String>), problem::ApiError> {
    let email = Email::parse(email).map_err(|e| problem::ApiError::invalid("email", e))?;
    let (password, generated) = match password {
        Some(p) => (p.to_owned(), false),
        None => (auth::tokens::new_refresh_token().0[4..28].to_owned(), true),
    };
    auth::password::check_password_rules(&password)?;
    let hash = state.hasher.hash(&password).await?;
    state
        .store
        .create_user(&NewUser {
            email: email.clone(),
            password_hash: hash,
            role: Role::Admin,
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                problem::ApiError::Conflict("an account with this e-mail address exists".to_owned())
            }
            other => other.into(),
        })?;
    Ok((
        Bootstrap::Created {
            email: email.as_str().to_owned(),
            generated,
        },
        generated.then_some(password),
    ))
}

/// A running admin service.
#[derive(Debug)]
pub struct Running {
    pub api_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (up to `grace`), and returns.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("admin requests still running after the grace period");
        }
    }
}

/// Serves the API on `api` and metrics on `metrics` (both already bound) until
/// [`Running::shutdown`].
pub fn serve(
    state: Arc<AppState>,
    api: TcpListener,
    metrics: TcpListener,
) -> std::io::Result<Running> {
    let api_addr = api.local_addr()?;
    let metrics_addr = metrics.local_addr()?;
    let (stop, watch) = tokio::sync::watch::channel(false);
    let until_stopped = |mut w: tokio::sync::watch::Receiver<bool>| async move {
        let _ = w.wait_for(|stopped| *stopped).await;
    };
    if let Some(redis) = &state.redis {
        let redis = Arc::clone(redis);
        let mut w = watch.clone();
        tokio::spawn(async move {
            // Connects now and again whenever the connection is lost, until shutdown.
            loop {
                if !redis.is_connected()
                    && let Err(error) = redis.connect().await
                {
                    tracing::debug!(%error, "redis not reachable yet");
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = w.changed() => break,
                }
            }
        });
    }
    let housekeeping = Arc::clone(&state);
    let mut w = watch.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_mins(1)) => {
                    housekeeping.login_limiter.housekeeping();
                    housekeeping.create_limiter.housekeeping();
                }
                _ = w.changed() => break,
            }
        }
    });
    let api_server = warp::serve(routes::service(&state))
        .incoming(api)
        .graceful(until_stopped(watch.clone()))
        .run();
    let metrics_state = Arc::clone(&state);
    let metrics_route = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(
            metrics_state.metrics.render(),
            "content-type",
            "text/plain; version=0.0.4",
        )
    });
    let metrics_server = warp::serve(metrics_route)
        .incoming(metrics)
        .graceful(until_stopped(watch))
        .run();
    let tasks = vec![tokio::spawn(api_server), tokio::spawn(metrics_server)];
    Ok(Running {
        api_addr,
        metrics_addr,
        state,
        stop,
        tasks,
    })
}
