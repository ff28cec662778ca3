//! A minimal HTTP/1.1 keep-alive client: write one request, read one response.
//!
//! Hand-written on purpose: the generator must be much faster than what it measures, so it
//! does no per-request allocation beyond its buffers, parses headers with `httparse`, and
//! skips bodies without copying them out.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Largest response head accepted; anything bigger is a broken server, not a load result.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed before a complete response")]
    Closed,
    #[error("malformed response: {0}")]
    Malformed(&'static str),
}

/// One open connection.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    /// Bytes read but not yet consumed: `buf[..filled]`.
    buf: Vec<u8>,
    filled: usize,
    /// The server asked to close (or used a close-delimited body): reconnect before reuse.
    closed: bool,
}

/// What a response was, as far as a load test cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body_len: usize,
}

impl Connection {
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: vec![0; 16 * 1024],
            filled: 0,
            closed: false,
        })
    }

    /// False once the server has signalled it will close the connection.
    pub fn is_reusable(&self) -> bool {
        !self.closed
    }

    /// Sends `request` (complete bytes) and reads the whole response.
    pub async fn round_trip(
        &mut self,
        request: &[u8],
        head_request: bool,
    ) -> Result<Response, ClientError> {
        self.stream.write_all(request).await?;
        self.read_response(head_request).await
    }

    async fn fill(&mut self) -> Result<usize, ClientError> {
        if self.filled == self.buf.len() {
            if self.buf.len() >= MAX_HEAD * 4 {
                return Err(ClientError::Malformed("response too large to buffer"));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[self.filled..]).await?;
        self.filled += n;
        Ok(n)
    }

    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    async fn read_response(&mut self, head_request: bool) -> Result<Response, ClientError> {
        loop {
            let (head_len, status, framing, close) = {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut parsed = httparse::Response::new(&mut headers);
                match parsed.parse(&self.buf[..self.filled]) {
                    Ok(httparse::Status::Complete(len)) => {
                        let status = parsed.code.ok_or(ClientError::Malformed("no status"))?;
                        let (framing, close) = framing(parsed.headers)?;
                        (len, status, framing, close)
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.filled >= MAX_HEAD {
                            return Err(ClientError::Malformed("response head too large"));
                        }
                        if self.fill().await? == 0 {
                            return Err(ClientError::Closed);
                        }
                        continue;
                    }
                    Err(_) => return Err(ClientError::Malformed("unparseable response head")),
                }
            };
            self.consume(head_len);
            if (100..200).contains(&status) {
                continue; // interim response; the real one follows
            }
            self.closed |= close;
            let no_body = head_request || status == 204 || status == 304;
            let body_len = if no_body {
                0
            } else {
                match framing {
                    Framing::Length(n) => self.skip_exact(n).await?,
                    Framing::Chunked => self.skip_chunked().await?,
                    Framing::UntilClose => {
                        self.closed = true;
                        self.skip_until_close().await?
                    }
                }
            };
            return Ok(Response { status, body_len });
        }
    }

    async fn skip_exact(&mut self, mut n: usize) -> Result<usize, ClientError> {
        let total = n;
        loop {
            let take = n.min(self.filled);
            self.consume(take);
            n -= take;
            if n == 0 {
                return Ok(total);
            }
            if self.fill().await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    async fn skip_chunked(&mut self) -> Result<usize, ClientError> {
        let mut total = 0;
        loop {
            let line_end = self.read_line().await?;
            let line = std::str::from_utf8(&self.buf[..line_end])
                .map_err(|_| ClientError::Malformed("chunk size"))?;
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| ClientError::Malformed("chunk size"))?;
            self.consume(line_end + 2);
            if size == 0 {
                // Trailers, ended by an empty line.
                loop {
                    let end = self.read_line().await?;
                    self.consume(end + 2);
                    if end == 0 {
                        return Ok(total);
                    }
                }
            }
            self.skip_exact(size + 2).await?;
            total += size;
        }
    }

    /// Position of the next CRLF in the buffer, reading more as needed.
    async fn read_line(&mut self) -> Result<usize, ClientError> {
        loop {
            if let Some(pos) = self.buf[..self.filled]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                return Ok(pos);
            }
            if self.filled >= MAX_HEAD {
                return Err(ClientError::Malformed("line too long"));
            }
            if self.fill().await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    async fn skip_until_close(&mut self) -> Result<usize, ClientError> {
        let mut total = self.filled;
        self.filled = 0;
        loop {
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

fn framing(headers: &[httparse::Header<'_>]) -> Result<(Framing, bool), ClientError> {
    let mut framing = Framing::UntilClose;
    let mut close = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(ClientError::Malformed("content-length"))?;
            framing = Framing::Length(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            && h.value
                .windows(7)
                .any(|w| w.eq_ignore_ascii_case(b"chunked"))
        {
            framing = Framing::Chunked;
        } else if h.name.eq_ignore_ascii_case("connection")
            && h.value.windows(5).any(|w| w.eq_ignore_ascii_case(b"close"))
        {
            close = true;
        }
    }
    Ok((framing, close))
}
