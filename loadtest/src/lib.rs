//! linkgate's bundled load harness. Today: `store-bench`, which measures how fast the store
//! ingests click batches (the click pipeline's write path) on SQLite or MySQL.

pub mod store_bench;
