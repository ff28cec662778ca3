//! The performance baseline: a bare Pingora service that answers every request with a fixed
//! 302 from `request_filter`, with the same server settings linkgate-proxy uses. Whatever
//! linkgate-proxy does beyond this (routing, cache lookup, decision, click capture, metrics)
//! is the cost being measured.
//!
//! `cargo run --release -p linkgate-proxy --example bare_redirect -- 127.0.0.1:8081 2`

use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};

/// The same allocator as linkgate-proxy, so the comparison measures the request path only.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Bare;

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> pingora::Result<bool> {
        // Built as linkgate-proxy builds its redirects: no case map, room for the three
        // headers below and the two Pingora adds (Date, Connection).
        let mut resp = ResponseHeader::build_no_case(302, Some(5))?;
        resp.insert_header("location", "https://example.com/landing")?;
        resp.insert_header("content-length", "0")?;
        resp.insert_header("cache-control", "no-store")?;
        session.write_response_header(Box::new(resp), true).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        Err(pingora::Error::new_str("bare_redirect never proxies"))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, Bare);
    service.add_tcp(&listen);
    server.add_service(service);
    eprintln!("bare_redirect listening on {listen} with {threads} threads");
    server.run(RunArgs::default());
}
