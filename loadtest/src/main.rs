//! `linkgate-loadtest`: the bundled load harness.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};
use linkgate_common::store;
use linkgate_config::{SecretUrl, StoreSettings};
use linkgate_loadtest::report::{self, Report};
use linkgate_loadtest::run::{Mode, Pacing, RunSpec, run};
use linkgate_loadtest::target::Target;
use linkgate_loadtest::workload::{CreateLinks, GetPath, RedirectMix, Workload};
use linkgate_loadtest::{compare, fixed_server, plot, seed, store_bench};

#[derive(Debug, Parser)]
#[command(name = "linkgate-loadtest", version, about = "linkgate load harness")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load one target and report latency percentiles and throughput.
    Run {
        /// Base URL of the target, e.g. <http://127.0.0.1:8080>.
        #[arg(long)]
        target: String,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Load two targets in alternating rounds (A, B, A, B, ...) and compare them.
    Compare {
        /// Baseline target (A).
        #[arg(long)]
        a: String,
        /// Target compared with the baseline (B).
        #[arg(long)]
        b: String,
        /// Rounds per target.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Create links and write their codes to a file: quickly through the store (`--store`),
    /// or as users do, through the admin API (`--admin URL --token T`).
    Seed {
        /// Store URL: `sqlite://PATH` or `mysql://user:pass@host:port/db` (migrated first).
        #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
        store: Option<String>,
        /// Admin API base URL, e.g. <http://127.0.0.1:8081> (seeds through `POST /api/v1/links/bulk`).
        #[arg(long)]
        admin: Option<String>,
        /// Bearer token (JWT or API key) for `--admin`.
        #[arg(long, env = "LINKGATE_LOADTEST_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Allow an `--admin` target outside `127.0.0.0/8` and `::1`.
        #[arg(long)]
        allow_remote: bool,
        #[arg(long, default_value_t = 100_000)]
        links: usize,
        /// Domain the links live on (the Host the proxy will see).
        #[arg(long, default_value = "localhost:8080")]
        domain: String,
        #[arg(long)]
        codes_out: PathBuf,
    },
    /// Write generated clicks for one existing link straight into the store, with every
    /// aggregate (as the click pipeline would), spread evenly over the last `days` days.
    SeedClicks {
        /// Store URL: `sqlite://PATH` or `mysql://user:pass@host:port/db`.
        #[arg(long)]
        store: String,
        /// Code of the link (create it first, e.g. through the admin API).
        #[arg(long)]
        code: String,
        #[arg(long, default_value = "localhost:8080")]
        domain: String,
        #[arg(long, default_value_t = 1_000_000)]
        clicks: usize,
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Serve a fixed 302 on a loopback port (the generator's own ceiling, self-tests).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8099")]
        listen: std::net::SocketAddr,
        /// Delay per request, in microseconds.
        #[arg(long, default_value_t = 0)]
        delay_us: u64,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
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
        /// Instead: run the whole click pipeline (enrich, aggregate, batch, write) over this
        /// many queued events and report the sustained clicks/s.
        #[arg(long)]
        pipeline: Option<usize>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum WorkloadKind {
    Redirect,
    Create,
    Mix,
    /// The same authenticated GET of `--path` (e.g. an analytics report).
    Get,
}

#[derive(Debug, ClapArgs)]
struct LoadArgs {
    /// Constant request rate per second (open loop); without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// The generator polls without ever sleeping, keeping one core busy: in an open loop
    /// its own wake-ups are not part of the latencies; in a closed loop, a target on the
    /// same machine does not spend its CPU waking the generator for every response.
    #[arg(long)]
    busy_poll: bool,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured seconds (at most 3600).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    #[arg(long, value_enum, default_value_t = WorkloadKind::Redirect)]
    workload: WorkloadKind,
    /// Codes file from `seed` (one per line).
    #[arg(long)]
    codes_file: Option<PathBuf>,
    /// Comma-separated codes (instead of a file).
    #[arg(long, value_delimiter = ',')]
    codes: Vec<String>,
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Share of requests to cold codes (each requested once).
    #[arg(long, default_value_t = 0.0)]
    cold_share: f64,
    /// Share of requests to unknown codes.
    #[arg(long, default_value_t = 0.0)]
    unknown_share: f64,
    /// Simulated clients behind a load balancer: redirect requests carry
    /// `X-Forwarded-For` with one of this many addresses of 198.18.0.0/15 (at most
    /// 131072), as a proxy trusting 127.0.0.1 sees them. 0: every click comes from
    /// 127.0.0.1, which the fraud rules flag as one very fast client.
    #[arg(long, default_value_t = 0)]
    clients: u32,
    /// Request target of the `get` workload, e.g. `/api/v1/links/abc/analytics`.
    #[arg(long)]
    path: Option<String>,
    /// Share of link creations in the mix workload.
    #[arg(long, default_value_t = 0.1)]
    create_share: f64,
    /// Bearer token for link creation.
    #[arg(long, env = "LINKGATE_LOADTEST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Allow targets outside `127.0.0.0/8` and `::1`.
    #[arg(long)]
    allow_remote: bool,
    /// Generator worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Write the report(s) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a latency-by-percentile SVG plot here.
    #[arg(long)]
    plot: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Log lines (warnings by default; RUST_LOG=debug shows per-batch timings of the
    // pipeline benchmark) go to stderr.
    linkgate_common::telemetry::init(&linkgate_config::LogSettings {
        filter: "warn".to_owned(),
        json: false,
    });
    let threads = match &args.command {
        Command::Run { load, .. } | Command::Compare { load, .. } => load.threads,
        _ => None,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(args.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> Result<(), String> {
    match command {
        Command::Run { target, load } => {
            let target = Target::parse(&target, load.allow_remote).map_err(|e| e.to_string())?;
            let (spec, workload) = prepare(&load, target)?;
            let report = run(&spec, workload).await;
            print!("{}", report::table(&[&report]));
            write_outputs(&load, &[&report], "linkgate-loadtest run")?;
        }
        Command::Compare { a, b, rounds, load } => {
            let a = Target::parse(&a, load.allow_remote).map_err(|e| e.to_string())?;
            let b = Target::parse(&b, load.allow_remote).map_err(|e| e.to_string())?;
            let (spec, workload) = prepare(&load, a.clone())?;
            let result = compare::compare(&spec, &a, &b, rounds, &workload).await;
            print!("{}", report::table(&[&result.a, &result.b]));
            println!("throughput ratio B/A: {:.3}", result.ratio());
            write_outputs(&load, &[&result.a, &result.b], "linkgate-loadtest compare")?;
        }
        Command::Seed {
            store: url,
            admin,
            token,
            allow_remote,
            links,
            domain,
            codes_out,
        } => {
            let report = match (url, admin) {
                (Some(url), _) => {
                    let store = open_store(url).await?;
                    seed::seed(&*store, links, &domain, &codes_out).await
                }
                (None, Some(admin)) => {
                    let target = Target::parse(&admin, allow_remote).map_err(|e| e.to_string())?;
                    seed::seed_via_api(
                        &target,
                        token.as_deref().unwrap_or_default(),
                        links,
                        &codes_out,
                    )
                    .await
                }
                (None, None) => return Err("give --store or --admin".into()),
            }
            .map_err(|e| e.to_string())?;
            println!(
                "seeded {} links on {domain} in {:.1} s ({:.0} links/s); codes in {}",
                report.links,
                report.took.as_secs_f64(),
                f64::from(u32::try_from(report.links).unwrap_or(u32::MAX))
                    / report.took.as_secs_f64().max(1e-9),
                codes_out.display()
            );
        }
        Command::SeedClicks {
            store: url,
            code,
            domain,
            clicks,
            days,
        } => {
            let store = open_store(url).await?;
            let report = seed::seed_clicks(&*store, &domain, &code, clicks, days)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "wrote {} clicks to {domain}/{code} over {days} days in {:.1} s ({:.0} clicks/s)",
                report.links,
                report.took.as_secs_f64(),
                f64::from(u32::try_from(report.links).unwrap_or(u32::MAX))
                    / report.took.as_secs_f64().max(1e-9),
            );
        }
        Command::Serve {
            listen,
            delay_us,
            seconds,
        } => {
            let behaviour = fixed_server::Behaviour {
                delay: Duration::from_micros(delay_us),
                stall: None,
            };
            let server =
                fixed_server::FixedServer::start(listen, behaviour).map_err(|e| e.to_string())?;
            println!(
                "serving a fixed 302 on http://{} for {seconds} s",
                server.addr
            );
            tokio::time::sleep(Duration::from_secs(seconds.min(24 * 3600))).await;
        }
        Command::StoreBench {
            store: url,
            rows,
            pipeline: Some(clicks),
            ..
        } => {
            let store = open_store(url).await?;
            let report = store_bench::pipeline(store, clicks.max(1), rows.max(1)).await?;
            println!(
                "{:<8} pipeline: {} clicks in {:.2} s = {:>9.0} clicks/s ({} batches of <= {})",
                report.backend,
                report.clicks,
                report.took.as_secs_f64(),
                report.clicks_per_sec(),
                report.batches,
                rows
            );
        }
        Command::StoreBench {
            store: url,
            rows,
            rounds,
            pipeline: None,
        } => {
            let store = open_store(url).await?;
            let report = store_bench::run(&*store, rows.max(1), rounds.max(1))
                .await
                .map_err(|e| e.to_string())?;
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
        }
    }
    Ok(())
}

async fn open_store(url: String) -> Result<Arc<dyn store::Store>, String> {
    let settings = StoreSettings {
        url: SecretUrl::new(url),
        ..StoreSettings::default()
    };
    store::open_and_migrate(&settings)
        .await
        .map_err(|e| format!("cannot open the store {}: {e}", settings.url))
}

fn prepare(load: &LoadArgs, target: Target) -> Result<(RunSpec, Arc<Workload>), String> {
    let secs = |s: f64, what: &str| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| format!("--{what} must be a non-negative number of seconds"))
    };
    let pacing = if load.busy_poll {
        Pacing::BusyPoll
    } else {
        Pacing::Sleep
    };
    let mode = match load.rate {
        Some(rate) if rate > 0.0 && rate.is_finite() => Mode::Open { rate, pacing },
        Some(_) => return Err("--rate must be positive".into()),
        None => Mode::Closed { pacing },
    };
    let spec = RunSpec {
        target,
        mode,
        connections: load.connections.max(1),
        warmup: secs(load.warmup, "warmup")?,
        duration: secs(load.duration, "duration")?.max(Duration::from_millis(100)),
        request_timeout: secs(load.timeout, "timeout")?.max(Duration::from_millis(1)),
    };
    let redirects = || -> Result<RedirectMix, String> {
        let mut codes = load.codes.clone();
        if let Some(file) = &load.codes_file {
            codes.extend(seed::read_codes(file).map_err(|e| format!("{}: {e}", file.display()))?);
        }
        RedirectMix::new(codes, load.zipf, load.cold_share, load.unknown_share)
            .and_then(|mix| mix.with_clients(load.clients))
            .map_err(|e| e.to_string())
    };
    let create =
        || CreateLinks::new(load.token.clone().unwrap_or_default()).map_err(|e| e.to_string());
    let workload = match load.workload {
        WorkloadKind::Redirect => Workload::Redirects(redirects()?),
        WorkloadKind::Create => Workload::Create(create()?),
        WorkloadKind::Get => Workload::Get(
            GetPath::new(load.path.clone().unwrap_or_default(), load.token.clone())
                .map_err(|e| e.to_string())?,
        ),
        WorkloadKind::Mix => Workload::Mix {
            redirects: redirects()?,
            create: create()?,
            create_share: load.create_share.clamp(0.0, 1.0),
        },
    };
    Ok((spec, Arc::new(workload)))
}

fn write_outputs(load: &LoadArgs, reports: &[&Report], title: &str) -> Result<(), String> {
    if let Some(path) = &load.json {
        let json: Vec<_> = reports.iter().map(|r| r.to_json()).collect();
        let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &load.plot {
        std::fs::write(path, plot::svg(title, reports))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
