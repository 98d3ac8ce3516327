//! How long a rate-limit decision takes (issue target: in process, median ≤ 1 µs;
//! with Redis, one round trip). A call with a tenant, a principal and a tool budget:
//! finding its budgets among the rules, then deciding. Run by `cargo xtask bench`, or
//! `cargo bench -p gateway-limits --bench decide`; the Redis part runs when
//! `REDIS_URL` (or `TEST_REDIS_URL`) is set.

use std::time::{Duration, Instant};

use gateway_domain::{LimitSubject, RateLimitRule, RateLimiter, RateLimits};
use gateway_limits::{FailureMode, LocalLimiter, RedisLimiter, RedisSettings};

/// Decisions per timed sample (sub-microsecond work is timed in batches).
const BATCH: usize = 1_000;
const SAMPLES: usize = 200;

fn rules() -> RateLimits {
    let rule = |scope: &str, matches: &str| {
        RateLimitRule::new(scope, matches, 1_000_000, 1, Some(1_000_000), None).expect("rule")
    };
    RateLimits::new(vec![
        rule("tenant", "*"),
        rule("tenant", "acme"),
        rule("principal", "*"),
        rule("tool", "github__*"),
        rule("server", "docs"),
    ])
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn per_decision(sample: Duration, n: usize) -> f64 {
    sample.as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let limits = rules();
    let limiter = LocalLimiter::default();
    let roles = ["reader".to_owned()];
    let tools: Vec<String> = (0..64).map(|i| format!("github__tool_{i}")).collect();
    let principals: Vec<String> = (0..256).map(|i| format!("user-{i}")).collect();
    println!("rate-limit decision (tenant + principal + tool budgets, {BATCH} per sample):");
    let mut whole = Vec::with_capacity(SAMPLES);
    let mut decide_only = Vec::with_capacity(SAMPLES);
    for sample in 0..SAMPLES {
        let started = Instant::now();
        for i in 0..BATCH {
            let subject = LimitSubject {
                tenant: Some("acme"),
                principal: Some(&principals[(sample * BATCH + i) % principals.len()]),
                roles: &roles,
                server: "github",
                item: &tools[i % tools.len()],
            };
            let budgets = limits.budgets(&subject);
            std::hint::black_box(limiter.decide(&budgets));
        }
        whole.push(started.elapsed());
        let budgets = limits.budgets(&LimitSubject {
            tenant: Some("acme"),
            principal: Some("user-1"),
            roles: &roles,
            server: "github",
            item: "github__search",
        });
        let started = Instant::now();
        for _ in 0..BATCH {
            std::hint::black_box(limiter.decide(&budgets));
        }
        decide_only.push(started.elapsed());
    }
    println!(
        "  in process, budgets found and decided: median {:.3} µs per decision",
        per_decision(median(whole), BATCH)
    );
    println!(
        "  in process, decision alone: median {:.3} µs",
        per_decision(median(decide_only), BATCH)
    );

    let Some(url) = std::env::var("REDIS_URL")
        .or_else(|_| std::env::var("TEST_REDIS_URL"))
        .ok()
    else {
        println!("  Redis: skipped (set REDIS_URL)");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let redis = RedisLimiter::new(
            RedisSettings {
                url: url.clone(),
                key_prefix: format!("bench-{}", std::process::id()),
                timeout: Duration::from_secs(1),
                failure_mode: FailureMode::Closed,
                expected_replicas: 1,
                pool_size: 2,
            },
            None,
        )
        .expect("limiter");
        let budgets = limits.budgets(&LimitSubject {
            tenant: Some("acme"),
            principal: Some("user-1"),
            roles: &roles,
            server: "github",
            item: "github__search",
        });
        let pool = deadpool_redis::Config::from_url(url)
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .expect("pool");
        let mut connection = pool.get().await.expect("Redis answers");
        // Warm up (loads the script), then count the commands the decisions send.
        redis.acquire(&budgets).await;
        let before = command_calls(&mut connection).await;
        let (mut decisions, mut pings) = (Vec::new(), Vec::new());
        for _ in 0..3_000 {
            let started = Instant::now();
            std::hint::black_box(redis.acquire(&budgets).await);
            decisions.push(started.elapsed());
            let started = Instant::now();
            let _: String = deadpool_redis::redis::cmd("PING")
                .query_async(&mut connection)
                .await
                .expect("PONG");
            pings.push(started.elapsed());
        }
        assert!(redis.is_shared(), "every decision went to Redis");
        let after = command_calls(&mut connection).await;
        let sent = |name: &str| {
            after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0)
        };
        println!(
            "  commands the client sent for 3,000 decisions and 3,000 PINGs: {} EVALSHA, {} PING (inside Redis the script ran {} GET, {} SET, {} TIME)",
            sent("evalsha"),
            sent("ping"),
            sent("get"),
            sent("set"),
            sent("time")
        );
        println!(
            "  Redis (one EVALSHA per decision): median {:.1} µs; a PING round trip: median {:.1} µs",
            median(decisions).as_secs_f64() * 1e6,
            median(pings).as_secs_f64() * 1e6
        );
    });
}

/// Calls per command name, from `INFO commandstats`.
async fn command_calls(
    connection: &mut deadpool_redis::Connection,
) -> std::collections::HashMap<String, u64> {
    let info: String = deadpool_redis::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}
