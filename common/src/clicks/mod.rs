//! The click pipeline. Today: the bounded lock-free queue between redirects and the batcher.

mod queue;

pub use queue::{ClickQueue, QueueStats};
