//! Every Prometheus metric of the admin service, registered in one place and served on its
//! own listener. Labels are bounded: a route TEMPLATE (`/api/v1/links/{code}`, or `other`
//! for paths matching no route), a method from a fixed set, and a status class.

use std::time::Duration;

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The admin service's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    limited: IntCounterVec,
    links_created: prometheus::IntCounter,
    logins: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "linkgate_admin_requests_total",
                "Admin API requests by route template, method and status class.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "linkgate_admin_request_duration_seconds",
                "Admin API latency by route template and method.",
            )
            .buckets(vec![
                0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method"],
        )
        .expect("valid metric");
        let limited = IntCounterVec::new(
            Opts::new(
                "linkgate_admin_rate_limited_total",
                "Requests refused by a rate limit (429) or because the shared limiter was down (503).",
            ),
            &["limit", "outcome"],
        )
        .expect("valid metric");
        let links_created = prometheus::IntCounter::new(
            "linkgate_admin_links_created_total",
            "Links created (single, bulk and import).",
        )
        .expect("valid metric");
        let logins = IntCounterVec::new(
            Opts::new("linkgate_admin_logins_total", "Login attempts by result."),
            &["result"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(limited.clone()),
            Box::new(links_created.clone()),
            Box::new(logins.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Self {
            registry,
            requests,
            latency,
            limited,
            links_created,
            logins,
        }
    }

    /// Records one finished request.
    pub fn observe(&self, route: &str, method: &http::Method, status: u16, elapsed: Duration) {
        let method = method_label(method);
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .with_label_values(&[route, method, class])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }

    pub fn limited(&self, limit: &'static str, unavailable: bool) {
        let outcome = if unavailable {
            "unavailable"
        } else {
            "limited"
        };
        self.limited.with_label_values(&[limit, outcome]).inc();
    }

    pub fn links_created(&self, n: u64) {
        self.links_created.inc_by(n);
    }

    pub fn login(&self, ok: bool) {
        self.logins
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "could not encode metrics");
        }
        out
    }
}

fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PATCH => "PATCH",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
