//! The click pipeline: the bounded lock-free queue redirects push onto, enrichment,
//! in-batch aggregation, unique-visitor sketches, trending scores, the journal and the
//! batcher that ties them together.

pub mod batch;
pub mod deferred;
pub mod enrich;
pub mod fraud;
pub mod journal;
pub mod pipeline;
mod queue;
pub mod segment;
pub mod sketch;
pub mod trending;

pub use pipeline::{PipelineHandle, PipelineSettings, PipelineStats};

/// Hash maps of the batcher's folds and windows, with foldhash: several times
/// cheaper than the standard library's default hasher on small keys.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub use queue::{ClickQueue, QueueStats};
pub use trending::TrendingClock;
