//! linkgate's bundled load harness: an HTTP/1.1 load generator (closed and open loop, with
//! coordinated-omission correction), workloads (Zipf redirects, cold and unknown codes, link
//! creation), store seeding, side-by-side comparison, reports as tables, JSON and SVG plots,
//! and a store ingest benchmark.

pub mod client;
pub mod compare;
pub mod fixed_server;
pub mod plot;
pub mod report;
pub mod run;
pub mod seed;
pub mod store_bench;
pub mod target;
pub mod workload;
