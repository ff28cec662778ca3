//! A trivial HTTP/1.1 server with a fixed answer: the reference point for the generator's
//! own ceiling, and the target of the harness's self-tests (an exact service delay, a
//! one-off stall).
//!
//! Thread per connection with blocking I/O: `std::thread::sleep` is accurate to tens of
//! microseconds, which an async timer wheel (millisecond ticks) is not.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const RESPONSE: &[u8] =
    b"HTTP/1.1 302 Found\r\nLocation: https://example.com/\r\nContent-Length: 0\r\n\r\n";

/// How the server behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Time each request takes before its response is written.
    pub delay: Duration,
    /// One stall of the whole server: requests arriving during `[at, at + for)` after start
    /// are held until the stall ends.
    pub stall: Option<(Duration, Duration)>,
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct FixedServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl FixedServer {
    /// Binds `addr` (use port 0 for any) and serves until dropped.
    pub fn start(addr: SocketAddr, behaviour: Behaviour) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let stop_flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let stop = Arc::clone(&stop_flag);
                std::thread::spawn(move || {
                    // A client that goes away mid-request simply ends its thread.
                    let _ = serve(stream, behaviour, started, &stop);
                });
            }
        });
        Ok(Self { addr, stop })
    }
}

impl Drop for FixedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    mut stream: TcpStream,
    b: Behaviour,
    started: Instant,
    stop: &AtomicBool,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_timerslack(1);
    let mut buf = vec![0u8; 8192];
    let mut filled = 0;
    while !stop.load(Ordering::Relaxed) {
        // Read one request: head, then a Content-Length body if any.
        let head_end = loop {
            if let Some(pos) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            if filled == buf.len() {
                return Ok(()); // oversized head: drop the connection
            }
            let n = stream.read(&mut buf[filled..])?;
            if n == 0 {
                return Ok(());
            }
            filled += n;
        };
        let body_len = content_length(&buf[..head_end]);
        while filled < head_end + body_len {
            if filled == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let n = stream.read(&mut buf[filled..])?;
            if n == 0 {
                return Ok(());
            }
            filled += n;
        }
        let arrived = started.elapsed();
        if let Some((at, stall_for)) = b.stall
            && arrived >= at
            && arrived < at + stall_for
        {
            std::thread::sleep((at + stall_for).saturating_sub(arrived));
        }
        if !b.delay.is_zero() {
            exact_delay(b.delay);
        }
        stream.write_all(RESPONSE)?;
        buf.copy_within(head_end + body_len..filled, 0);
        filled -= head_end + body_len;
    }
    Ok(())
}

/// Waits `delay`: sleeps all but the last 200 µs, then spins to the deadline. Even with the
/// thread's timer slack at 1 ns (set in `serve`), a sleeping thread on a busy 2-core machine
/// can wake 100 µs late; the spin makes the service time exact whatever else runs.
fn exact_delay(delay: Duration) {
    const SPIN: Duration = Duration::from_micros(200);
    let deadline = std::time::Instant::now() + delay;
    std::thread::sleep(delay.saturating_sub(SPIN));
    while std::time::Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

fn content_length(head: &[u8]) -> usize {
    let text = String::from_utf8_lossy(head);
    text.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}
