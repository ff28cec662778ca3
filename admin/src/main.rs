//! `linkgate-admin`: parses arguments and configuration, then serves the API (the default),
//! migrates the schema, or creates an administrator.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use linkgate_admin::{AppState, Bootstrap};
use linkgate_config::Settings;

#[derive(Debug, Parser)]
#[command(name = "linkgate-admin", version, about = "linkgate admin service")]
struct Args {
    /// TOML configuration file (also `LINKGATE_CONFIG`); `LINKGATE__SECTION__KEY` overrides it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Validate the configuration and exit (0 valid, 64 invalid).
    #[arg(long, global = true)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Migrate the schema, then serve the API until SIGTERM or Ctrl-C (the default).
    Serve,
    /// Apply pending schema migrations to the configured store and exit.
    Migrate,
    /// Create an administrator. The password comes from `LINKGATE_ADMIN_PASSWORD`, or a
    /// random one is generated and printed once.
    CreateAdmin {
        #[arg(long)]
        email: String,
    },
}

/// Time given to in-flight requests after SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let settings =
        match linkgate_config::load_or_exit_code(args.config.as_deref(), args.check_config) {
            Ok(settings) => settings,
            Err(code) => return ExitCode::from(u8::try_from(code).unwrap_or(1)),
        };
    linkgate_common::telemetry::init(&settings.log);
    let result = match args.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => match linkgate_admin::migrate(&settings).await {
            Ok((store, version)) => {
                println!("{} schema is at version {version}", store.backend_name());
                Ok(())
            }
            Err(error) => Err(anyhow::anyhow!("migration failed: {error}")),
        },
        Command::CreateAdmin { email } => create_admin(settings, &email).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "linkgate-admin failed");
            ExitCode::FAILURE
        }
    }
}

async fn state(settings: Settings) -> anyhow::Result<Arc<AppState>> {
    let (store, version) = linkgate_admin::migrate(&settings).await?;
    tracing::info!(backend = store.backend_name(), version, "schema ready");
    Ok(Arc::new(AppState::new(settings, store)?))
}

async fn create_admin(settings: Settings, email: &str) -> anyhow::Result<()> {
    let state = state(settings).await?;
    let password = std::env::var("LINKGATE_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let (_, generated) = linkgate_admin::create_admin(&state, email, password.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("administrator {email} created");
    if let Some(password) = generated {
        println!("password (shown once): {password}");
    }
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let api = tokio::net::TcpListener::bind(settings.admin.listen).await?;
    let metrics = tokio::net::TcpListener::bind(settings.admin.metrics_listen).await?;
    let bootstrap = settings.admin.bootstrap_admin_email.clone();
    let bootstrap_password = settings
        .admin
        .bootstrap_admin_password
        .as_ref()
        .map(|s| s.expose().to_owned())
        // An empty value (an unset variable in docker-compose) means "generate one".
        .filter(|p| !p.is_empty());
    let state = state(settings).await?;
    if let Some(email) = bootstrap {
        match linkgate_admin::ensure_admin(&state, &email, bootstrap_password.as_deref()).await {
            Ok((Bootstrap::Created { email, .. }, generated)) => {
                println!("first administrator {email} created");
                if let Some(password) = generated {
                    println!("password (shown once): {password}");
                }
            }
            Ok((Bootstrap::Exists, _)) => {}
            Err(error) => anyhow::bail!("could not create the first administrator: {error}"),
        }
    }
    let running = linkgate_admin::serve(state, api, metrics)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        api = %running.api_addr,
        metrics = %running.metrics_addr,
        "linkgate-admin serving"
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown(GRACE).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
