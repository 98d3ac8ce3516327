//! Rate limits end to end: rules from the configuration file and from
//! `/api/v1/rate-limits`, enforced on real MCP calls through a real client (GCRA burst,
//! refill, every dimension holding at once, a refusal charging nothing), the
//! per-address limits of the HTTP face (429 with `Retry-After` and `RateLimit-*`), and
//! two gateways drawing from one budget in the machine's Redis.

use std::time::Duration;

use gateway_app::config::{RateLimitRuleConfig, Settings};
use gateway_test_support::mcp::{call, connect, mcp_error, text_of};
use gateway_test_support::oidc::TestIssuer;
use gateway_test_support::{TestApp, TestBackend};
use gateway_test_upstream::{HttpUpstream, serve_http};
use serde_json::{Value, json};

fn rule(
    scope: &str,
    matches: &str,
    rate: u32,
    period_secs: u32,
    burst: u32,
) -> RateLimitRuleConfig {
    RateLimitRuleConfig {
        scope: scope.into(),
        matches: matches.into(),
        rate,
        period_secs,
        burst: Some(burst),
        description: None,
    }
}

async fn upstream() -> HttpUpstream {
    serve_http("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("upstream")
}

async fn gateway(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    TestApp::spawn_with(TestBackend::Sqlite, adjust)
        .await
        .expect("sqlite app")
}

async fn register(app: &TestApp, name: &str, url: &str) {
    let body = json!({"name": name, "transport": {"type": "streamable-http", "url": url}});
    app.register(&body, None).await;
}

/// Calls `tool` and returns `Ok(())` or the JSON-RPC error's code and data.
async fn attempt(
    client: &rmcp::service::RunningService<rmcp::RoleClient, gateway_test_support::mcp::Recorder>,
    tool: &str,
) -> Result<(), (i32, Value)> {
    let arguments = if tool.ends_with("__add") {
        json!({"a": 1, "b": 2})
    } else {
        json!({"text": "x"})
    };
    match client.call_tool(call(tool, arguments)).await {
        Ok(result) => {
            assert!(!text_of(&result).is_empty());
            Ok(())
        }
        Err(error) => {
            let error = mcp_error(error);
            Err((error.code.0, error.data.unwrap_or(Value::Null)))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_allowed_the_next_call_is_refused_with_retry_after_then_refilled() {
    let up = upstream().await;
    let app = gateway(|s| {
        // 2 per second, bursts of 3: one more token every 500 ms.
        s.rate_limits.rules = vec![rule("tool", "limited__echo", 2, 1, 3)];
    })
    .await;
    register(&app, "limited", &up.url()).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    let first = std::time::Instant::now();
    for _ in 0..3 {
        attempt(&client, "limited__echo")
            .await
            .expect("within the burst");
    }
    let (code, data) = attempt(&client, "limited__echo")
        .await
        .expect_err("over the burst");
    assert_eq!(code, -32038, "{data}");
    assert_eq!(data["scope"], "tool");
    assert_eq!(
        data["limit"],
        json!({"rate": 2, "periodSecs": 1, "burst": 3})
    );
    let wait_ms = data["retryAfterMs"].as_u64().expect("retryAfterMs");
    // The next token is due 500 ms after the first call was charged.
    let since_first = u64::try_from(first.elapsed().as_millis()).unwrap_or(u64::MAX);
    assert!(
        wait_ms <= 500 && wait_ms + since_first + 5 >= 500,
        "{data} after {since_first} ms"
    );
    assert!(
        (data["retryAfter"].as_f64().expect("retryAfter") - wait_ms as f64 / 1000.0).abs() < 1e-9
    );
    // Another tool of the same server has no rule.
    attempt(&client, "limited__add").await.expect("not limited");
    // The refused call reached no upstream, and after the wait one more call passes.
    let calls = up.upstream().tool_calls();
    tokio::time::sleep(Duration::from_millis(wait_ms + 20)).await;
    attempt(&client, "limited__echo").await.expect("refilled");
    let (code, _) = attempt(&client, "limited__echo")
        .await
        .expect_err("one token only");
    assert_eq!(code, -32038);
    assert_eq!(up.upstream().tool_calls(), calls + 1);
    let metrics = app.get("/metrics").await.text().await.unwrap_or_default();
    assert!(
        metrics.contains("gateway_rate_limited_total{scope=\"tool\"} 2"),
        "{metrics}"
    );
    let _ = client.cancel().await;
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dimension_holds_and_a_refusal_charges_no_budget() {
    let up = upstream().await;
    let app = gateway(|s| {
        s.rate_limits.rules = vec![
            rule("server", "multi", 1, 3600, 4),
            rule("tool", "multi__echo", 1, 3600, 2),
        ];
    })
    .await;
    register(&app, "multi", &up.url()).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    attempt(&client, "multi__echo").await.expect("1st echo");
    attempt(&client, "multi__echo").await.expect("2nd echo");
    for _ in 0..5 {
        let (code, data) = attempt(&client, "multi__echo")
            .await
            .expect_err("tool budget");
        assert_eq!((code, data["scope"].as_str()), (-32038, Some("tool")));
    }
    // The five refused echoes cost the server budget nothing: two calls are left.
    attempt(&client, "multi__add")
        .await
        .expect("3rd call on the server");
    attempt(&client, "multi__add")
        .await
        .expect("4th call on the server");
    let (code, data) = attempt(&client, "multi__add")
        .await
        .expect_err("server budget");
    assert_eq!((code, data["scope"].as_str()), (-32038, Some("server")));
    let _ = client.cancel().await;
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_managed_through_the_api_and_the_file_s_are_read_only() {
    let up = upstream().await;
    let app = gateway(|s| {
        s.rate_limits.rules = vec![rule("tenant", "*", 100, 60, 100)];
    })
    .await;
    register(&app, "api", &up.url()).await;

    let listed: Value = app
        .get("/api/v1/rate-limits")
        .await
        .json()
        .await
        .expect("list");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["source"], "config");
    let configured = listed[0]["id"].as_str().expect("id").to_owned();
    let refused = app
        .delete(&format!("/api/v1/rate-limits/{configured}"))
        .await;
    assert_eq!(refused.status(), 403);

    let bad = app
        .post_json(
            "/api/v1/rate-limits",
            &json!({"scope": "galaxy", "matches": "a b", "rate": 0, "period_secs": 0}),
        )
        .await;
    assert_eq!(bad.status(), 422);
    let fields = gateway_test_support::problem_fields(bad).await;
    assert_eq!(fields, ["scope", "matches", "rate", "period_secs", "burst"]);
    let unknown = app
        .post_json(
            "/api/v1/rate-limits",
            &json!({"scope": "tool", "rate": 1, "period_secs": 1, "per": "x"}),
        )
        .await;
    assert_eq!(unknown.status(), 400);

    let created = app
        .post_json(
            "/api/v1/rate-limits",
            &json!({"scope": "tool", "matches": "api__*", "rate": 1, "period_secs": 3600,
                    "description": "one call an hour"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("rule");
    assert_eq!(
        (created["burst"].as_u64(), created["source"].as_str()),
        (Some(1), Some("api"))
    );
    let (client, _) = connect(&app.url("/mcp")).await;
    attempt(&client, "api__echo").await.expect("the one call");
    let (code, _) = attempt(&client, "api__echo").await.expect_err("limited");
    assert_eq!(code, -32038);
    // Each tool has its own budget under a glob rule.
    attempt(&client, "api__add").await.expect("own budget");

    let id = created["id"].as_str().expect("id");
    assert_eq!(
        app.delete(&format!("/api/v1/rate-limits/{id}"))
            .await
            .status(),
        204
    );
    assert_eq!(
        app.delete(&format!("/api/v1/rate-limits/{id}"))
            .await
            .status(),
        404
    );
    // Removing the rule lifts the limit (the reload is asynchronous).
    let mut lifted = false;
    for _ in 0..50 {
        if attempt(&client, "api__echo").await.is_ok() {
            lifted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(lifted, "the rule was removed");
    let _ = client.cancel().await;
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_and_refused_credentials_are_limited_per_address() {
    let issuer = TestIssuer::start().await;
    let issuer_url = issuer.url.clone();
    let app = gateway(|s| {
        s.rate_limits.api_per_address.rate = 1;
        s.rate_limits.api_per_address.period_secs = 60;
        s.rate_limits.api_per_address.burst = 3;
        s.rate_limits.unauthenticated_per_address.rate = 1;
        s.rate_limits.unauthenticated_per_address.period_secs = 60;
        s.rate_limits.unauthenticated_per_address.burst = 2;
        s.auth.provider = gateway_app::config::AuthProvider::Oidc;
        s.auth.issuer = Some(issuer_url);
        s.auth.audiences = vec!["https://gateway.test/mcp".into()];
        s.auth.protect_reads = false;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/servers").await.status(), 200);
    }
    let limited = app.get("/api/v1/servers").await;
    assert_eq!(limited.status(), 429);
    let header = |name: &str| {
        limited
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let retry_after: u64 = header("retry-after").parse().expect("Retry-After seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(header("ratelimit-limit"), "3");
    assert_eq!(header("ratelimit-remaining"), "0");
    assert_eq!(header("ratelimit-reset"), retry_after.to_string());
    assert_eq!(header("ratelimit-policy"), "1;w=60");
    assert_eq!(header("content-type"), "application/problem+json");
    let problem: Value = limited.json().await.expect("problem");
    assert_eq!(problem["status"], 429);
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("rate-limited")),
        "{problem}"
    );
    // Probes and /mcp are not /api/v1.
    assert_eq!(app.get("/health").await.status(), 200);

    // Bad tokens on /mcp: 401 twice (the burst), then 429.
    let post = || {
        app.client
            .post(app.url("/mcp"))
            .bearer_auth("not-a-token")
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            .send()
    };
    assert_eq!(post().await.expect("sent").status(), 401);
    assert_eq!(post().await.expect("sent").status(), 401);
    let guessing = post().await.expect("sent");
    assert_eq!(guessing.status(), 429);
    assert!(guessing.headers().contains_key("retry-after"));
    // While the address waits, even a valid token is not looked at: a right guess
    // gets no further than a wrong one.
    let valid = issuer.token("https://gateway.test/mcp", &["admin"]);
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let right_guess = app
        .client
        .post(app.url("/mcp"))
        .bearer_auth(&valid)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .expect("sent");
    assert_eq!(right_guess.status(), 429, "blocked, not verified");
    // The same token from a fresh address would pass (shown by every other auth test);
    // and once the wait is over, it passes here too.
    let wait: u64 = right_guess
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    assert!(wait <= 60);
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_budget_in_redis() {
    let Ok(redis_url) = std::env::var("TEST_REDIS_URL") else {
        eprintln!("TEST_REDIS_URL is not set: the shared-budget test is skipped");
        return;
    };
    let up = upstream().await;
    // A prefix of this run's own, so earlier runs' budgets do not count.
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let configure = |s: &mut Settings| {
        s.rate_limits.redis_url = Some(redis_url.clone());
        s.rate_limits.key_prefix = prefix.clone();
        s.rate_limits.rules = vec![rule("tool", "shared__echo", 1, 3600, 10)];
    };
    let (first, second) = (gateway(configure).await, gateway(configure).await);
    register(&first, "shared", &up.url()).await;
    register(&second, "shared", &up.url()).await;
    let (a, _) = connect(&first.url("/mcp")).await;
    let (b, _) = connect(&second.url("/mcp")).await;
    let mut allowed = [0, 0];
    for round in 0..20 {
        let (client, side) = if round % 2 == 0 { (&a, 0) } else { (&b, 1) };
        match attempt(client, "shared__echo").await {
            Ok(()) => allowed[side] += 1,
            Err((code, data)) => assert_eq!(code, -32038, "{data}"),
        }
    }
    assert_eq!(allowed[0] + allowed[1], 10, "one budget of 10: {allowed:?}");
    assert!(allowed[0] > 0 && allowed[1] > 0, "{allowed:?}");
    let metrics = first.get("/metrics").await.text().await.unwrap_or_default();
    assert!(
        metrics.contains("gateway_rate_limit_backend_up{backend=\"redis\"} 1"),
        "{metrics}"
    );
    let _ = a.cancel().await;
    let _ = b.cancel().await;
    up.stop().await;
}
