//! `linkgate-loadtest`: the bundled load harness.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use linkgate_common::store;
use linkgate_config::{SecretUrl, StoreSettings};

#[derive(Debug, Parser)]
#[command(name = "linkgate-loadtest", version, about = "linkgate load harness")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure click-batch ingest into a store (migrates it first; use a scratch database).
    StoreBench {
        /// Store URL: `sqlite://PATH` or `mysql://user:pass@host:port/db`.
        #[arg(long)]
        store: String,
        /// Clicks per batch.
        #[arg(long, default_value_t = 10_000)]
        rows: usize,
        /// Batches to write (the median is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::StoreBench {
            store: url,
            rows,
            rounds,
        } => {
            let settings = StoreSettings {
                url: SecretUrl::new(url),
                ..StoreSettings::default()
            };
            let result = async {
                let store = store::open_and_migrate(&settings).await?;
                linkgate_loadtest::store_bench::run(&*store, rows.max(1), rounds.max(1)).await
            }
            .await;
            match result {
                Ok(report) => {
                    println!(
                        "{:<8} {:>7} rows/batch  median {:>8.1} ms ({:>9.0} rows/s)  best {:>8.1} ms ({:>9.0} rows/s)  rounds {}",
                        report.backend,
                        report.rows_per_batch,
                        report.median().as_secs_f64() * 1e3,
                        report.median_rows_per_sec(),
                        report.best().as_secs_f64() * 1e3,
                        report.best_rows_per_sec(),
                        report.batch_times.len(),
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("store bench failed against {}: {error}", settings.url);
                    ExitCode::FAILURE
                }
            }
        }
    }
}
