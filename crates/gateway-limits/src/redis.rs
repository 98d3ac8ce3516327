//! GCRA in Redis, shared by every replica: one Lua script per decision reads the
//! server's clock (replica clocks do not matter), checks every budget, and charges
//! them all or none.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_redis::redis::Script;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::{Config, Pool, Runtime};
use gateway_domain::{Budget, RateDecision, RateLimiter};
use gateway_telemetry::Metrics;

use crate::local::LocalLimiter;

/// KEYS: one per budget. ARGV: per budget, its emission interval and tolerance in
/// microseconds. Returns `{1, remaining}` (every budget charged) or
/// `{0, index, wait_us}` (budget `index`, 1-based, refused; nothing charged).
const GCRA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local next = {}
local remaining = nil
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local arrival = tonumber(redis.call('GET', key) or now)
  if arrival < now then arrival = now end
  if arrival - now > tolerance then
    return {0, i, arrival - now - tolerance}
  end
  next[i] = arrival + interval
  local left = math.floor((now + tolerance + interval - next[i]) / interval)
  if remaining == nil or left < remaining then remaining = left end
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, next[i], 'PX', math.ceil((next[i] - now) / 1000) + 1000)
end
return {1, remaining}
";

/// What decisions do while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Decide in this process with this replica's share of each quota.
    Open,
    /// Refuse every request that has a budget.
    Closed,
}

impl FailureMode {
    fn label(self) -> &'static str {
        match self {
            Self::Open => "fail-open",
            Self::Closed => "fail-closed",
        }
    }
}

/// How to reach Redis and what to do without it.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://host:port/db` (credentials are never logged).
    pub url: String,
    /// Prefix of every key; wrapped in `{…}` so all of one decision's keys share a
    /// Redis Cluster slot.
    pub key_prefix: String,
    /// Longest wait for one decision before it falls back.
    pub timeout: Duration,
    /// What to do while Redis is unreachable.
    pub failure_mode: FailureMode,
    /// Replicas sharing the load, for the local fallback's share of each quota.
    pub expected_replicas: u32,
    /// Connections kept open.
    pub pool_size: usize,
}

/// How often Redis is tried again while it is down (decisions in between fall back
/// at once instead of each waiting for a timeout).
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Health {
    /// Since when Redis has been failing, if it is.
    down_since: Option<Instant>,
    /// When the next decision may try Redis again.
    next_attempt: Instant,
}

/// [`RateLimiter`] over Redis, with a fallback.
pub struct RedisLimiter {
    /// Makes connections (with the connect timeout); the one in use is kept in
    /// `connection`: a pooled connection is checked with a PING on every checkout,
    /// which would double each decision's round trips.
    pool: Pool,
    /// One multiplexed connection shared by every decision; dropped after an error.
    connection: Mutex<Option<MultiplexedConnection>>,
    script: Script,
    settings: RedisSettings,
    fallback: LocalLimiter,
    health: Mutex<Health>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("failure_mode", &self.settings.failure_mode)
            .finish_non_exhaustive()
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl RedisLimiter {
    /// A limiter over the Redis at `settings.url`; no connection is made until the
    /// first decision (a Redis that is down at start-up is a fallback, not an error).
    pub fn new(settings: RedisSettings, metrics: Option<Arc<Metrics>>) -> Result<Self, String> {
        let mut config = Config::from_url(settings.url.clone());
        let mut pool_config = deadpool_redis::PoolConfig::new(settings.pool_size.max(1));
        pool_config.timeouts.wait = Some(settings.timeout);
        pool_config.timeouts.create = Some(settings.timeout);
        pool_config.timeouts.recycle = Some(settings.timeout);
        config.pool = Some(pool_config);
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| format!("invalid Redis settings: {e}"))?;
        if let Some(metrics) = &metrics {
            metrics
                .rate_limit_backend_up
                .with_label_values(&["redis"])
                .set(1);
        }
        Ok(Self {
            pool,
            connection: Mutex::new(None),
            script: Script::new(GCRA),
            settings,
            fallback: LocalLimiter::default(),
            health: Mutex::new(Health {
                down_since: None,
                next_attempt: Instant::now(),
            }),
            metrics,
        })
    }

    /// Whether decisions go to Redis now (false while they fall back).
    pub fn is_shared(&self) -> bool {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .down_since
            .is_none()
    }

    /// The shared connection, made if there is none.
    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        if let Some(connection) = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(connection);
        }
        let pooled = self.pool.get().await.map_err(|e| e.to_string())?;
        let connection = deadpool_redis::Connection::take(pooled);
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
        Ok(connection)
    }

    async fn shared_decision(&self, budgets: &[Budget]) -> Result<RateDecision, String> {
        let mut connection = self.connection().await?;
        let mut invocation = self.script.prepare_invoke();
        for budget in budgets {
            let interval = micros(budget.quota.emission_interval()).max(1);
            let tolerance =
                interval.saturating_mul(u64::from(budget.quota.burst.saturating_sub(1)));
            invocation
                .key(format!(
                    "{{{}}}:rl:{}",
                    self.settings.key_prefix, budget.key
                ))
                .arg(interval)
                .arg(tolerance);
        }
        let answer: Vec<i64> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        match answer.as_slice() {
            [1, remaining] => Ok(RateDecision::Allowed {
                remaining: Some(u32::try_from(*remaining).unwrap_or(0)),
            }),
            [0, index, wait] => {
                let budget = usize::try_from(*index - 1)
                    .ok()
                    .and_then(|i| budgets.get(i))
                    .ok_or("the rate-limit script named no budget")?;
                Ok(RateDecision::Limited {
                    scope: budget.scope,
                    quota: budget.quota,
                    retry_after: Duration::from_micros(u64::try_from(*wait).unwrap_or(0)),
                })
            }
            other => Err(format!(
                "unexpected answer from the rate-limit script: {other:?}"
            )),
        }
    }

    fn fall_back(&self, budgets: &[Budget]) -> RateDecision {
        let mode = self.settings.failure_mode;
        if let Some(metrics) = &self.metrics {
            metrics
                .rate_limit_fallbacks
                .with_label_values(&[mode.label()])
                .inc();
        }
        match mode {
            FailureMode::Open => {
                let shares: Vec<Budget> = budgets
                    .iter()
                    .map(|budget| Budget {
                        quota: budget.quota.share_of(self.settings.expected_replicas),
                        ..budget.clone()
                    })
                    .collect();
                self.fallback.decide(&shares)
            }
            FailureMode::Closed => RateDecision::Limited {
                scope: budgets[0].scope,
                quota: budgets[0].quota,
                retry_after: PROBE_INTERVAL,
            },
        }
    }

    fn mark(&self, outcome: Result<(), &str>) {
        if outcome.is_err() {
            // A new connection next time (this one may be broken).
            *self
                .connection
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        match (outcome, health.down_since) {
            (Ok(()), Some(since)) => {
                tracing::info!(
                    down_for_ms = since.elapsed().as_millis() as u64,
                    "Redis answers again; rate limits are shared again"
                );
                health.down_since = None;
                self.set_up(1);
            }
            (Ok(()), None) => {}
            (Err(reason), down) => {
                if down.is_none() {
                    tracing::warn!(%reason, mode = self.settings.failure_mode.label(), "Redis is unreachable; rate-limit decisions fall back until it answers");
                    health.down_since = Some(Instant::now());
                    self.set_up(0);
                }
                health.next_attempt = Instant::now() + PROBE_INTERVAL;
            }
        }
    }

    fn set_up(&self, value: i64) {
        if let Some(metrics) = &self.metrics {
            metrics
                .rate_limit_backend_up
                .with_label_values(&["redis"])
                .set(value);
        }
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn acquire(&self, budgets: &[Budget]) -> RateDecision {
        if budgets.is_empty() {
            return RateDecision::Allowed { remaining: None };
        }
        let try_redis = {
            let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            match health.down_since {
                None => true,
                // One request probes; the others fall back meanwhile.
                Some(_) if now >= health.next_attempt => {
                    health.next_attempt = now + PROBE_INTERVAL;
                    true
                }
                Some(_) => false,
            }
        };
        if !try_redis {
            return self.fall_back(budgets);
        }
        match tokio::time::timeout(self.settings.timeout, self.shared_decision(budgets)).await {
            Ok(Ok(decision)) => {
                self.mark(Ok(()));
                decision
            }
            Ok(Err(reason)) => {
                self.mark(Err(&reason));
                self.fall_back(budgets)
            }
            Err(_) => {
                self.mark(Err("no answer within the timeout"));
                self.fall_back(budgets)
            }
        }
    }
}
