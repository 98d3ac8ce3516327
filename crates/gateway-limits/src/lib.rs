//! Rate-limit decisions, the adapters behind the domain's
//! [`gateway_domain::RateLimiter`] port: [`LocalLimiter`] keeps GCRA state in this
//! process; [`RedisLimiter`] keeps it in Redis, so every replica draws from one budget,
//! and falls back (open: the local limiter with each replica's share of the quota;
//! closed: refuse) while Redis is unreachable, returning to it by itself.
//!
//! Both GCRA back-ends take the same decision the same way: one request charges every
//! budget it draws from, or none (a refusal by a per-tool budget must not also drain
//! the tenant's). governor charges one key at a time, so it serves the single-key
//! per-address HTTP limit (in `gateway-transport`); the multi-budget decisions are
//! written here, the Redis one as a Lua script that runs atomically on the server (one
//! round trip per decision).

mod local;
mod redis;

pub use local::LocalLimiter;
pub use redis::{FailureMode, RedisLimiter, RedisSettings};
