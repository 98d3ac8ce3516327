//! The Redis limiter against real Redis processes: budgets shared by two limiters
//! (two replicas), and a Redis of the test's own that is stopped mid-test: decisions
//! fall back (open: each replica's share; closed: refuse), then go back to Redis by
//! themselves when it is back. Runs when `TEST_REDIS_URL` is set (`.ci/run` sets it),
//! which also promises a `redis-server` binary.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gateway_domain::{Budget, LimitScope, Quota, RateDecision, RateLimiter};
use gateway_limits::{FailureMode, RedisLimiter, RedisSettings};

fn budget(key: &str, burst: u32) -> Vec<Budget> {
    vec![Budget {
        key: key.into(),
        scope: LimitScope::Tool,
        quota: Quota::new(1, 3600, burst).expect("quota"),
    }]
}

fn limiter(
    url: &str,
    prefix: &str,
    mode: FailureMode,
    metrics: Option<Arc<gateway_telemetry::Metrics>>,
) -> RedisLimiter {
    RedisLimiter::new(
        RedisSettings {
            url: url.into(),
            key_prefix: prefix.into(),
            timeout: Duration::from_millis(200),
            failure_mode: mode,
            expected_replicas: 2,
            pool_size: 4,
        },
        metrics,
    )
    .expect("limiter")
}

async fn allowed(limiter: &RedisLimiter, budgets: &[Budget], attempts: usize) -> usize {
    let mut count = 0;
    for _ in 0..attempts {
        if matches!(limiter.acquire(budgets).await, RateDecision::Allowed { .. }) {
            count += 1;
        }
    }
    count
}

fn unique(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), fastrand_suffix())
}

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// A `redis-server` of this test's own on `port`, without persistence.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "TEST_REDIS_URL is set, so redis-server must be installed (.ci/run installs it)",
            );
        // Owned at once, so a panic below still stops the process (Drop).
        let redis = Self { port, child };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not listen on {port}");
    }

    fn stop(self) -> u16 {
        self.port
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_draw_from_one_budget() {
    let Ok(url) = std::env::var("TEST_REDIS_URL") else {
        eprintln!("TEST_REDIS_URL is not set: skipped");
        return;
    };
    let prefix = unique("shared");
    let (a, b) = (
        limiter(&url, &prefix, FailureMode::Open, None),
        limiter(&url, &prefix, FailureMode::Open, None),
    );
    let budgets = budget("tool:x", 10);
    let mut total = 0;
    for round in 0..30 {
        let side = if round % 2 == 0 { &a } else { &b };
        total += allowed(side, &budgets, 1).await;
    }
    assert_eq!(total, 10);
    assert!(a.is_shared() && b.is_shared());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_falls_back_and_comes_back_by_itself() {
    if std::env::var_os("TEST_REDIS_URL").is_none() {
        eprintln!("TEST_REDIS_URL is not set: skipped");
        return;
    }
    let redis = OwnRedis::start(free_port()).await;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let metrics = Arc::new(gateway_telemetry::Metrics::new("test").expect("metrics"));
    let open = limiter(&url, "p", FailureMode::Open, Some(metrics.clone()));
    let closed = limiter(&url, "p", FailureMode::Closed, None);
    let budgets = budget("tool:y", 10);
    assert_eq!(
        allowed(&open, &budgets, 4).await,
        4,
        "shared while Redis is up"
    );
    assert!(open.is_shared());

    let port = redis.stop();
    // fail-open: this replica decides alone with its share (10 / 2 replicas = 5).
    assert_eq!(allowed(&open, &budgets, 10).await, 5);
    assert!(!open.is_shared());
    let gauge = metrics
        .rate_limit_backend_up
        .with_label_values(&["redis"])
        .get();
    assert_eq!(gauge, 0);
    assert!(
        metrics
            .rate_limit_fallbacks
            .with_label_values(&["fail-open"])
            .get()
            >= 10
    );
    // fail-closed: refused, with a retry hint, without waiting for Redis each time.
    let started = std::time::Instant::now();
    for _ in 0..20 {
        match closed.acquire(&budgets).await {
            RateDecision::Limited { retry_after, .. } => {
                assert_eq!(retry_after, Duration::from_secs(1))
            }
            other => panic!("fail-closed allowed {other:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Redis comes back (empty: no persistence); within a probe interval decisions
    // are shared again, with the full budget Redis now holds.
    let redis = OwnRedis::start(port).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(allowed(&open, &budgets, 12).await, 10, "shared again");
    assert!(open.is_shared());
    assert_eq!(
        metrics
            .rate_limit_backend_up
            .with_label_values(&["redis"])
            .get(),
        1
    );
    assert!(
        matches!(closed.acquire(&budgets).await, RateDecision::Limited { .. }),
        "budget spent by the other limiter"
    );
    redis.stop();
}
