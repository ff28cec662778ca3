//! The load engine: closed loop (each connection sends as soon as its previous response is
//! in) and open loop (requests are due at a constant rate and latency is measured from when
//! each was due, so a stalled server cannot hide its stall by slowing the generator down:
//! the coordinated-omission correction wrk2 made known).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client::{ClientError, Connection};
use crate::report::{Report, histogram, micros};
use crate::target::Target;
use crate::workload::{Workload, rng};

/// Longest run accepted: load tests must stop by themselves.
pub const MAX_DURATION: Duration = Duration::from_hours(1);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// N connections, each as fast as the target answers. Busy-polling, the generator's
    /// thread never sleeps between responses, so a response need not wake it.
    Closed { pacing: Pacing },
    /// A constant request rate (per second) across all connections.
    Open { rate: f64, pacing: Pacing },
}

impl Mode {
    /// How the generator's thread waits in this mode.
    pub fn pacing(self) -> Pacing {
        match self {
            Mode::Closed { pacing } | Mode::Open { pacing, .. } => pacing,
        }
    }
}

/// How the generator's thread waits: for the open loop's next due time, and for responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pacing {
    /// In the kernel (a timer, or epoll): the generator's thread sleeps between events, and
    /// each request's latency includes waking it (tens of µs on a virtual machine). On
    /// loopback the target pays for that wake-up: its send delivers the response and wakes
    /// the sleeping reader (an inter-processor interrupt) from the target's own thread.
    #[default]
    Sleep,
    /// The generator's thread never sleeps: it polls for responses (and due times) without
    /// pause, which keeps one core busy for the whole run but takes the generator's
    /// wake-ups out of the latencies, and out of the target's CPU time.
    BusyPoll,
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub target: Target,
    pub mode: Mode,
    pub connections: usize,
    /// Run before measuring (caches fill, connections settle); its results are discarded.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// A request not answered in this time counts as an error and its connection is replaced.
    pub request_timeout: Duration,
}

/// What one connection saw.
struct Partial {
    report: Report,
}

/// Runs one measurement. Always returns within warm-up + duration + request timeout + 2 s.
pub async fn run(spec: &RunSpec, workload: Arc<Workload>) -> Report {
    let connections = spec.connections.max(1);
    let loop_name = match spec.mode {
        Mode::Closed { .. } => "closed".to_owned(),
        Mode::Open { rate, .. } => format!("open {rate:.0}/s"),
    };
    let mode_name = match spec.mode.pacing() {
        Pacing::Sleep => loop_name,
        Pacing::BusyPoll => format!("{loop_name}, busy-poll"),
    };
    let duration = spec.duration.min(MAX_DURATION);
    let warmup = spec.warmup.min(MAX_DURATION);
    let mut report = Report::new(&spec.target.label, &mode_name, connections);

    // Connect first, so connection set-up is neither measured nor part of the schedule.
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        match tokio::time::timeout(spec.request_timeout, Connection::connect(spec.target.addr))
            .await
        {
            Ok(Ok(c)) => conns.push(Some(c)),
            Ok(Err(e)) => {
                *report.errors.entry(format!("connect: {e}")).or_default() += 1;
                conns.push(None);
            }
            Err(_) => {
                *report
                    .errors
                    .entry("connect: timed out".into())
                    .or_default() += 1;
                conns.push(None);
            }
        }
    }

    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    report.measured = duration;

    let hard_stop = end + spec.request_timeout + Duration::from_secs(2);
    let mut tasks = JoinSet::new();
    match spec.mode {
        Mode::Closed { pacing } => {
            // One spinner per worker thread, so that none of them parks; dropping the set
            // stops any still spinning when the connections end early.
            let mut spinners = JoinSet::new();
            if pacing == Pacing::BusyPoll {
                for _ in 0..tokio::runtime::Handle::current().metrics().num_workers() {
                    spinners.spawn(spin_until(end));
                }
            }
            for conn in conns {
                let ctx = ConnCtx::new(spec, &workload, &mode_name, conn, measure_from, end);
                tasks.spawn(closed_loop(ctx));
            }
            collect(&mut tasks, &mut report, hard_stop).await;
            drop(spinners);
        }
        Mode::Open { rate, pacing } => {
            let (tx, rx) = async_channel::unbounded::<Instant>();
            let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
            // The pacer runs on the generator's own runtime: handing a request to a
            // connection task is then a wake-up within the same threads, not one from a
            // thread outside them (which cost more CPU than the requests themselves).
            let pacer = tokio::spawn(pace(tx, start, end, interval, pacing));
            for conn in conns {
                let ctx = ConnCtx::new(spec, &workload, &mode_name, conn, measure_from, end);
                tasks.spawn(open_loop(ctx, rx.clone()));
            }
            collect(&mut tasks, &mut report, hard_stop).await;
            // The pacer stops at `end`, before the connections do.
            if let Ok(Ok(lag)) = tokio::time::timeout(Duration::from_secs(1), pacer).await {
                report.dispatch_lag = Some(lag);
            }
            // Due in the measured window but never sent: the target could not keep up.
            // Recorded at their lower-bound latency so percentiles never flatter it.
            while let Ok(intended) = rx.try_recv() {
                if intended >= measure_from {
                    report.unsent += 1;
                    let _ = report
                        .latency
                        .record(micros(end.saturating_duration_since(intended)));
                }
            }
        }
    }
    report
}

async fn collect(tasks: &mut JoinSet<Partial>, report: &mut Report, hard_stop: Instant) {
    let deadline = tokio::time::Instant::from_std(hard_stop);
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            // A connection's report has no measured time of its own (zero), so merging
            // leaves the run's measured time as it is.
            Ok(Some(Ok(partial))) => report.merge(&partial.report),
            Ok(Some(Err(_))) => {
                *report
                    .errors
                    .entry("connection task failed".into())
                    .or_default() += 1;
            }
            Ok(None) => return,
            Err(_) => {
                let n = tasks.len() as u64;
                tasks.abort_all();
                *report
                    .errors
                    .entry("stopped at the hard deadline".into())
                    .or_default() += n;
                return;
            }
        }
    }
}

/// Keeps a generator thread polling until `end`: while a task has yielded, tokio polls for
/// I/O events without blocking, so the thread never parks in the kernel.
async fn spin_until(end: Instant) {
    while Instant::now() < end {
        tokio::task::yield_now().await;
    }
}

/// Hands out intended send times at a constant rate, from a task beside the connections'.
/// Returns how late each hand-out was (generator jitter, reported beside the results).
async fn pace(
    tx: async_channel::Sender<Instant>,
    start: Instant,
    end: Instant,
    interval: Duration,
    pacing: Pacing,
) -> hdrhistogram::Histogram<u64> {
    let mut timer = Timer::new();
    let mut lag = histogram();
    let mut i: u32 = 0;
    loop {
        let intended = start + interval * i;
        if intended >= end {
            break;
        }
        let now = Instant::now();
        if intended > now {
            // The connections run before the pacer sleeps, even when the sleep ends at
            // once (a slow machine): the pacer never keeps them from sending.
            // (tokio runs a yielded task again after it has polled for I/O events, so
            // busy polling is this yield in a loop.)
            tokio::task::yield_now().await;
            if pacing == Pacing::BusyPoll {
                continue;
            }
            // Woken late (the worker was busy, or a wake-up takes a while), it hands out
            // everything due at once: the lateness is counted in the latencies.
            timer.sleep_until(intended).await;
            continue;
        }
        let _ = lag.record(micros(now.saturating_duration_since(intended)));
        if tx.try_send(intended).is_err() {
            break;
        }
        i = i.saturating_add(1);
    }
    lag
}

/// A sleep to the microsecond inside the async runtime. tokio's own timer rounds to whole
/// milliseconds, which would move a 20 µs request schedule by up to 1 ms; on Linux a
/// `timerfd` polled by the runtime's reactor wakes at the time asked (no timer slack).
/// Elsewhere, or if no timerfd can be made, tokio's timer is used and the coarser hand-outs
/// show in the reported dispatch lag.
enum Timer {
    #[cfg(target_os = "linux")]
    Fd(tokio::io::unix::AsyncFd<TimerFd>),
    Coarse,
}

/// A timerfd, owned.
#[cfg(target_os = "linux")]
struct TimerFd(nix::sys::timerfd::TimerFd);

#[cfg(target_os = "linux")]
impl std::os::fd::AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd as _;
        self.0.as_fd().as_raw_fd()
    }
}

impl Timer {
    fn new() -> Self {
        #[cfg(target_os = "linux")]
        {
            use nix::sys::timerfd::{ClockId, TimerFlags};
            let made = nix::sys::timerfd::TimerFd::new(
                ClockId::CLOCK_MONOTONIC,
                TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
            );
            if let Ok(fd) = made {
                // `AsyncFd::new` is deprecated because a type could hand it a descriptor it
                // does not own (its replacement is `unsafe`, which this workspace forbids).
                // `TimerFd` owns its descriptor and always returns that one.
                #[allow(deprecated)]
                let registered = tokio::io::unix::AsyncFd::with_interest(
                    TimerFd(fd),
                    tokio::io::Interest::READABLE,
                );
                if let Ok(fd) = registered {
                    return Self::Fd(fd);
                }
            }
        }
        Self::Coarse
    }

    async fn sleep_until(&mut self, at: Instant) {
        #[cfg(target_os = "linux")]
        if let Self::Fd(fd) = self {
            if fd_sleep_until(fd, at).await.is_ok() {
                return;
            }
            *self = Self::Coarse;
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

/// Sleeps on the timerfd until `at`; an error means the timerfd cannot be used.
#[cfg(target_os = "linux")]
async fn fd_sleep_until(
    fd: &tokio::io::unix::AsyncFd<TimerFd>,
    at: Instant,
) -> std::io::Result<()> {
    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{Expiration, TimerSetTimeFlags};
    let wait = at.saturating_duration_since(Instant::now());
    if wait.is_zero() {
        return Ok(());
    }
    // A zero expiration would disarm the timer; `wait` is at least 1 ns here.
    fd.get_ref().0.set(
        Expiration::OneShot(TimeSpec::from_duration(wait)),
        TimerSetTimeFlags::empty(),
    )?;
    loop {
        let mut ready = fd.readable().await?;
        // Reads the expiry count; EAGAIN (not yet expired) clears the readiness.
        if let Ok(read) = ready.try_io(|fd| fd.get_ref().0.wait().map_err(std::io::Error::from)) {
            read?;
            // The expiry is consumed; the next one is a new edge for the reactor, so the
            // next sleep need not read the timer to find it has not expired yet.
            ready.clear_ready();
            return Ok(());
        }
    }
}

struct ConnCtx {
    target: Target,
    workload: Arc<Workload>,
    conn: Option<Connection>,
    measure_from: Instant,
    end: Instant,
    timeout: Duration,
    report: Report,
}

impl ConnCtx {
    fn new(
        spec: &RunSpec,
        workload: &Arc<Workload>,
        mode: &str,
        conn: Option<Connection>,
        measure_from: Instant,
        end: Instant,
    ) -> Self {
        Self {
            target: spec.target.clone(),
            workload: Arc::clone(workload),
            conn,
            measure_from,
            end,
            timeout: spec.request_timeout,
            report: Report::new(&spec.target.label, mode, 1),
        }
    }

    /// Counts an error that happened in the measured window (by when it happened: a request
    /// due during warm-up that times out afterwards is still a measured failure).
    fn error(&mut self, what: String) {
        if Instant::now() >= self.measure_from {
            *self.report.errors.entry(what).or_default() += 1;
        }
    }

    /// Sends one request, reconnecting if needed; returns when the response is complete.
    async fn send(&mut self, buf: &[u8]) -> Option<u16> {
        if self.conn.is_none() {
            match tokio::time::timeout(self.timeout, Connection::connect(self.target.addr)).await {
                Ok(Ok(c)) => self.conn = Some(c),
                Ok(Err(e)) => {
                    self.error(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return None;
                }
                Err(_) => {
                    self.error("connect: timed out".into());
                    return None;
                }
            }
        }
        let conn = self.conn.as_mut()?;
        match tokio::time::timeout(self.timeout, conn.round_trip(buf, false)).await {
            Ok(Ok(response)) => {
                if !conn.is_reusable() {
                    self.conn = None;
                }
                Some(response.status)
            }
            Ok(Err(e)) => {
                self.conn = None;
                let what = match e {
                    ClientError::Io(io) => format!("io: {}", io.kind()),
                    other => other.to_string(),
                };
                self.error(what);
                None
            }
            Err(_) => {
                self.conn = None;
                self.error("request timed out".into());
                None
            }
        }
    }

    fn record(&mut self, status: u16, latency: Duration) {
        let _ = self.report.latency.record(micros(latency));
        *self.report.statuses.entry(status).or_default() += 1;
    }
}

async fn closed_loop(mut ctx: ConnCtx) -> Partial {
    let mut rng = rng();
    let mut buf = Vec::with_capacity(512);
    let host = ctx.target.host.clone();
    loop {
        let sent = Instant::now();
        if sent >= ctx.end {
            break;
        }
        ctx.workload.next_request(&mut rng, &host, &mut buf);
        let counted = sent >= ctx.measure_from;
        if let Some(status) = ctx.send(&buf).await
            && counted
        {
            ctx.record(status, sent.elapsed());
        }
    }
    Partial { report: ctx.report }
}

async fn open_loop(mut ctx: ConnCtx, rx: async_channel::Receiver<Instant>) -> Partial {
    let mut rng = rng();
    let mut buf = Vec::with_capacity(512);
    let host = ctx.target.host.clone();
    while Instant::now() < ctx.end {
        let Ok(intended) = rx.recv().await else { break };
        // A request taken off the queue found this connection free, so it is sent even when
        // the wake-up lands just after the end (the pacer hands out nothing due after it).
        // Only requests no free connection took are unsent: counted by the caller from what
        // is left in the queue. (Counting this one as unsent put an "overload" of 1 in
        // nearly every open-loop run.)
        ctx.workload.next_request(&mut rng, &host, &mut buf);
        let counted = intended >= ctx.measure_from;
        if let Some(status) = ctx.send(&buf).await
            && counted
        {
            // From when the request was due, not when it went out.
            ctx.record(status, intended.elapsed());
        }
    }
    Partial { report: ctx.report }
}
