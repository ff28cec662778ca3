//! `linkgate-proxy`: parses arguments and configuration, then serves (or runs a check).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc: the least resident memory of the allocators measured with a million cached
/// links (BENCHMARKS.md), and the same CPU per request. Its defaults (a background thread
/// returning freed pages after a second) are set at build time in `.cargo/config.toml`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use pingora::server::UnixShutdownSignalWatch;

#[derive(Debug, Parser)]
#[command(name = "linkgate-proxy", version, about = "linkgate edge proxy")]
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
    /// Serve redirects (the default).
    Serve,
    /// Check that the store is reachable and migrated to this build's schema version.
    CheckStore,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings =
        match linkgate_config::load_or_exit_code(args.config.as_deref(), args.check_config) {
            Ok(settings) => settings,
            Err(code) => return ExitCode::from(u8::try_from(code).unwrap_or(1)),
        };
    linkgate_common::telemetry::init(&settings.log);
    match args.command {
        Some(Command::CheckStore) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(error) => {
                    eprintln!("cannot start a runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(linkgate_proxy::check_store(&settings)) {
                Ok(version) => {
                    println!("store is reachable at schema version {version}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("store check failed: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Serve) | None => match linkgate_proxy::Proxy::new(settings) {
            Ok(proxy) => {
                proxy.run(Box::new(UnixShutdownSignalWatch));
                ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!(%error, "cannot start");
                eprintln!("linkgate-proxy cannot start: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
