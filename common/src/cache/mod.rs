//! The proxy's two-tier link cache: L1 in process (moka holding buckets of links, bounded by bytes, per-link TTL,
//! negative entries for unknown codes), L2 in Redis (optional, short timeouts, circuit
//! breaker), then the store with bounded concurrency. One load per key at a time.

mod breaker;
mod hot;
mod l1;
mod link;
mod memo;
mod redis_tier;
mod resolver;

pub use breaker::Breaker;
pub use hot::HotLink;
pub use link::{CachedLink, LinkExtras};
pub use redis_tier::{RedisTier, RedisUnavailable, parse_invalidation};
pub use resolver::{KeyBuf, LinkKey, Resolved, Resolver, ResolverSettings, Tier};
