//! What requests a load run sends.
//!
//! - Redirects over a list of codes with Zipf-distributed popularity (a few hot links, a long
//!   tail), plus a share of cold codes (each requested once, so every one is a cache miss) and
//!   a share of unknown codes (random, so they exercise the 404 path and negative caching).
//! - Link creation through the admin API, authenticated with a bearer token.
//! - A mix of the two.

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::rngs::SmallRng;
use rand::{Rng, RngExt as _, SeedableRng as _};
use rand_distr::{Distribution as _, Zipf};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Redirect traffic over known codes.
#[derive(Debug)]
pub struct RedirectMix {
    hot: Vec<String>,
    zipf: Zipf<f64>,
    /// Codes requested at most once each, in order; when used up, cold requests become hot.
    cold: Vec<String>,
    cold_next: AtomicUsize,
    /// Fractions of requests (0..=1) that go to cold and to unknown codes.
    cold_share: f64,
    unknown_share: f64,
    /// Simulated clients behind a load balancer: each request carries `X-Forwarded-For`
    /// with one of this many addresses of the benchmarking range 198.18.0.0/15 (RFC 2544),
    /// drawn uniformly. 0: no such header, every click comes from the connection's address.
    clients: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WorkloadError {
    #[error("no codes to request: give --codes or --codes-file (see `seed`)")]
    NoCodes,
    #[error("shares must be between 0 and 1 and sum to at most 1")]
    Shares,
    #[error("the Zipf exponent must be zero (uniform) or positive")]
    Exponent,
    #[error("link creation needs a bearer token (--token or LINKGATE_LOADTEST_TOKEN)")]
    NoToken,
    #[error("--path must start with '/' and hold only visible ASCII (percent-encode the rest)")]
    Path,
    #[error("--clients must be at most {MAX_CLIENTS} (the addresses of 198.18.0.0/15)")]
    Clients,
}

/// Addresses in 198.18.0.0/15, the range reserved for benchmarks.
pub const MAX_CLIENTS: u32 = 1 << 17;

impl RedirectMix {
    /// `codes` are split: the last `cold_count` are the cold pool, the rest are the hot set.
    pub fn new(
        mut codes: Vec<String>,
        zipf_exponent: f64,
        cold_share: f64,
        unknown_share: f64,
    ) -> Result<Self, WorkloadError> {
        if !(0.0..=1.0).contains(&cold_share)
            || !(0.0..=1.0).contains(&unknown_share)
            || cold_share + unknown_share > 1.0
        {
            return Err(WorkloadError::Shares);
        }
        if codes.is_empty() && unknown_share < 1.0 {
            return Err(WorkloadError::NoCodes);
        }
        // Cold codes come from the end of the list so the hot set keeps the most-seeded ones.
        // A cold share of 1 makes every code cold: each is requested exactly once (filling a
        // cache with all of them, for instance).
        let cold_count = if cold_share >= 1.0 {
            codes.len()
        } else if cold_share > 0.0 {
            codes.len() / 2
        } else {
            0
        };
        let cold = codes.split_off(codes.len() - cold_count);
        let hot = codes;
        let n = hot.len().max(1) as f64;
        let zipf = Zipf::new(n, zipf_exponent).map_err(|_| WorkloadError::Exponent)?;
        Ok(Self {
            hot,
            zipf,
            cold,
            cold_next: AtomicUsize::new(0),
            cold_share,
            unknown_share,
            clients: 0,
        })
    }

    /// Requests as if from `clients` distinct clients behind a trusted load balancer (see
    /// the `clients` field); 0 turns that off.
    pub fn with_clients(mut self, clients: u32) -> Result<Self, WorkloadError> {
        if clients > MAX_CLIENTS {
            return Err(WorkloadError::Clients);
        }
        self.clients = clients;
        Ok(self)
    }

    /// Appends the `X-Forwarded-For` line of the next request, if clients are simulated.
    fn client<R: Rng>(&self, rng: &mut R, out: &mut Vec<u8>) {
        if self.clients == 0 {
            return;
        }
        // Below 2^17: the top byte is 0 and the next one 0 or 1 (198.18 or 198.19).
        let [_, high, mid, low] = rng.random_range(0..self.clients).to_be_bytes();
        let second = 18 + high;
        let _ = write!(out, "X-Forwarded-For: 198.{second}.{mid}.{low}\r\n");
    }

    /// Appends the path of the next request (`/code`) to `out`.
    fn path<R: Rng>(&self, rng: &mut R, out: &mut Vec<u8>) {
        let roll: f64 = rng.random();
        out.push(b'/');
        if roll < self.unknown_share || self.hot.is_empty() && self.cold.is_empty() {
            // 12 random base62 characters: never a seeded code (those are 10 long).
            for _ in 0..12 {
                out.push(BASE62[rng.random_range(0..BASE62.len())]);
            }
            return;
        }
        if roll < self.unknown_share + self.cold_share {
            let i = self.cold_next.fetch_add(1, Ordering::Relaxed);
            if let Some(code) = self.cold.get(i) {
                out.extend_from_slice(code.as_bytes());
                return;
            }
        }
        let code = if self.hot.is_empty() {
            &self.cold[rng.random_range(0..self.cold.len())]
        } else {
            // Zipf yields 1..=n: rank 1 is the most popular code.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "1 <= rank <= n"
            )]
            let rank = self.zipf.sample(rng) as usize;
            &self.hot[rank.clamp(1, self.hot.len()) - 1]
        };
        out.extend_from_slice(code.as_bytes());
    }
}

/// Link creation through `POST /api/v1/links`.
#[derive(Debug, Clone)]
pub struct CreateLinks {
    token: String,
}

impl CreateLinks {
    pub fn new(token: String) -> Result<Self, WorkloadError> {
        if token.trim().is_empty() || token.contains(['\r', '\n']) {
            return Err(WorkloadError::NoToken);
        }
        Ok(Self { token })
    }
}

/// The same authenticated `GET` over and over (an API read such as analytics).
#[derive(Debug, Clone)]
pub struct GetPath {
    path: String,
    token: Option<String>,
}

impl GetPath {
    /// `path` is the request target (with its query string); `token` an optional bearer.
    pub fn new(path: String, token: Option<String>) -> Result<Self, WorkloadError> {
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(WorkloadError::Path);
        }
        let token = token.filter(|t| !t.trim().is_empty());
        if token.as_ref().is_some_and(|t| t.contains(['\r', '\n'])) {
            return Err(WorkloadError::NoToken);
        }
        Ok(Self { path, token })
    }
}

/// The request stream of a run.
#[derive(Debug)]
pub enum Workload {
    Redirects(RedirectMix),
    Create(CreateLinks),
    Get(GetPath),
    /// `create_share` of requests create links, the rest are redirects.
    Mix {
        redirects: RedirectMix,
        create: CreateLinks,
        create_share: f64,
    },
}

impl Workload {
    /// Writes the next request's bytes into `out` (cleared first).
    pub fn next_request<R: Rng>(&self, rng: &mut R, host: &str, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Self::Redirects(r) => redirect_request(r, rng, host, out),
            Self::Create(c) => create_request(c, rng, host, out),
            Self::Get(g) => get_request(g, host, out),
            Self::Mix {
                redirects,
                create,
                create_share,
            } => {
                if rng.random::<f64>() < *create_share {
                    create_request(create, rng, host, out);
                } else {
                    redirect_request(redirects, rng, host, out);
                }
            }
        }
    }
}

fn redirect_request<R: Rng>(r: &RedirectMix, rng: &mut R, host: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"GET ");
    r.path(rng, out);
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        " HTTP/1.1\r\nHost: {host}\r\nUser-Agent: linkgate-loadtest/1\r\nAccept: */*\r\n"
    );
    r.client(rng, out);
    out.extend_from_slice(b"\r\n");
}

fn get_request(g: &GetPath, host: &str, out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: linkgate-loadtest/1\r\nAccept: */*\r\n",
        g.path
    );
    if let Some(token) = &g.token {
        let _ = write!(out, "Authorization: Bearer {token}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn create_request<R: Rng>(c: &CreateLinks, rng: &mut R, host: &str, out: &mut Vec<u8>) {
    let n: u64 = rng.random();
    let body = format!("{{\"target\":\"https://example.com/loadtest/{n:016x}\"}}");
    let _ = write!(
        out,
        "POST /api/v1/links HTTP/1.1\r\nHost: {host}\r\nUser-Agent: linkgate-loadtest/1\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        c.token,
        body.len()
    );
}

/// A fast per-connection RNG (not for secrets: it only picks which code to request),
/// seeded from the thread-local CSPRNG.
pub fn rng() -> SmallRng {
    SmallRng::from_rng(&mut rand::rng())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn codes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("code{i:06}")).collect()
    }

    /// The text of `n` requests of `w`.
    fn requests(w: &Workload, n: usize) -> Vec<String> {
        let mut rng = rng();
        let mut buf = Vec::new();
        (0..n)
            .map(|_| {
                w.next_request(&mut rng, "127.0.0.1:8080", &mut buf);
                String::from_utf8(buf.clone()).unwrap()
            })
            .collect()
    }

    fn paths(w: &Workload, n: usize) -> Vec<String> {
        requests(w, n)
            .iter()
            .map(|text| text.split(' ').nth(1).unwrap().to_owned())
            .collect()
    }

    #[test]
    fn simulated_clients_come_as_forwarded_for_addresses_of_the_benchmark_range() {
        let forwarded = |w: &Workload, n: usize| -> Vec<std::net::Ipv4Addr> {
            requests(w, n)
                .iter()
                .filter_map(|text| {
                    assert!(text.ends_with("\r\n\r\n"), "{text:?}");
                    text.lines()
                        .find_map(|l| l.strip_prefix("X-Forwarded-For: "))
                        .map(|ip| ip.parse().unwrap())
                })
                .collect()
        };
        let none = Workload::Redirects(RedirectMix::new(codes(10), 1.0, 0.0, 0.0).unwrap());
        assert!(forwarded(&none, 100).is_empty());
        let all = RedirectMix::new(codes(10), 1.0, 0.0, 0.0).unwrap();
        let all = Workload::Redirects(all.with_clients(MAX_CLIENTS).unwrap());
        let ips = forwarded(&all, 20_000);
        assert_eq!(ips.len(), 20_000, "every request names its client");
        assert!(
            ips.iter()
                .all(|ip| ip.octets()[0] == 198 && matches!(ip.octets()[1], 18 | 19)),
            "all in 198.18.0.0/15"
        );
        assert!(
            ips.iter().any(|ip| ip.octets()[1] == 19),
            "both halves are used"
        );
        let distinct: std::collections::HashSet<_> = ips.iter().collect();
        assert!(
            distinct.len() > 15_000,
            "{} distinct of 20,000",
            distinct.len()
        );
        let three = RedirectMix::new(codes(10), 1.0, 0.0, 0.0).unwrap();
        let three = Workload::Redirects(three.with_clients(3).unwrap());
        let distinct: std::collections::HashSet<_> = forwarded(&three, 300).into_iter().collect();
        assert_eq!(distinct.len(), 3);
        assert_eq!(
            RedirectMix::new(codes(10), 1.0, 0.0, 0.0)
                .unwrap()
                .with_clients(MAX_CLIENTS + 1)
                .unwrap_err(),
            WorkloadError::Clients
        );
    }

    #[test]
    fn zipf_popularity_makes_the_first_codes_the_hottest() {
        let w = Workload::Redirects(RedirectMix::new(codes(1000), 1.0, 0.0, 0.0).unwrap());
        let mut counts: HashMap<String, usize> = HashMap::new();
        for p in paths(&w, 50_000) {
            *counts.entry(p).or_default() += 1;
        }
        let top = counts["/code000000"];
        let tenth = counts.get("/code000009").copied().unwrap_or(0);
        // Rank 1 gets about 10x rank 10 with s = 1.
        assert!(top > 5 * tenth && tenth > 0, "top {top}, tenth {tenth}");
        assert!(
            counts.len() > 300,
            "the long tail is visited: {}",
            counts.len()
        );
    }

    #[test]
    fn cold_codes_are_requested_once_and_unknown_codes_do_not_exist() {
        let w = Workload::Redirects(RedirectMix::new(codes(2000), 1.0, 0.2, 0.1).unwrap());
        let all = paths(&w, 5_000);
        let cold: Vec<_> = all
            .iter()
            .filter(|p| p.starts_with("/code") && p.as_str() >= "/code001000")
            .collect();
        let unique: std::collections::HashSet<_> = cold.iter().collect();
        assert_eq!(unique.len(), cold.len(), "each cold code once");
        let cold_share = cold.len() as f64 / all.len() as f64;
        assert!((0.17..0.23).contains(&cold_share), "{cold_share}");
        let unknown =
            all.iter().filter(|p| !p.starts_with("/code")).count() as f64 / all.len() as f64;
        assert!((0.08..0.12).contains(&unknown), "{unknown}");
    }

    #[test]
    fn get_requests_carry_the_path_and_token_and_refuse_header_injection() {
        let w = Workload::Get(GetPath::new("/api/v1/x?a=1".into(), Some("tok".into())).unwrap());
        let mut out = Vec::new();
        w.next_request(&mut rng(), "h", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /api/v1/x?a=1 HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("Authorization: Bearer tok\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert!(GetPath::new("/a b".into(), None).is_err());
        assert!(GetPath::new("x".into(), None).is_err());
        assert!(GetPath::new("/a".into(), Some("t\r\nX: y".into())).is_err());
    }

    #[test]
    fn create_requests_are_authenticated_json_posts() {
        let w = Workload::Create(CreateLinks::new("tok-123".into()).unwrap());
        let mut buf = Vec::new();
        w.next_request(&mut rng(), "127.0.0.1:8081", &mut buf);
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("POST /api/v1/links HTTP/1.1\r\n"));
        assert!(text.contains("Authorization: Bearer tok-123\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.starts_with("{\"target\":\"https://example.com/loadtest/"));
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert_eq!(
            RedirectMix::new(vec![], 1.0, 0.0, 0.0).unwrap_err(),
            WorkloadError::NoCodes
        );
        assert_eq!(
            RedirectMix::new(codes(3), 1.0, 0.7, 0.7).unwrap_err(),
            WorkloadError::Shares
        );
        assert_eq!(
            RedirectMix::new(codes(3), -1.0, 0.0, 0.0).unwrap_err(),
            WorkloadError::Exponent
        );
        assert!(
            RedirectMix::new(codes(3), 0.0, 0.0, 0.0).is_ok(),
            "s = 0 is uniform popularity"
        );
        assert_eq!(
            CreateLinks::new("a\r\nX: y".into()).unwrap_err(),
            WorkloadError::NoToken
        );
        assert!(
            RedirectMix::new(vec![], 1.0, 0.0, 1.0).is_ok(),
            "all-unknown needs no codes"
        );
    }
}
