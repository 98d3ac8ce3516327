//! Health checks, circuit breakers, bulkheads, replicated upstreams, admin
//! operations and metrics, end to end: the real gateway, real test upstreams over
//! Streamable HTTP that the tests stop and start, and a real rmcp client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gateway_app::config::{Settings, WhenUnavailable};
use gateway_test_support::mcp::{Pushed, call, connect, mcp_error, text_of};
use gateway_test_support::{TestApp, TestBackend};
use gateway_test_upstream::{HttpUpstream, serve_http};
use rmcp::model::ErrorCode;
use serde_json::{Value, json};

/// The check interval of these tests.
const INTERVAL: Duration = Duration::from_millis(300);

const UNHEALTHY: ErrorCode = ErrorCode(-32035);
const OVERLOADED: ErrorCode = ErrorCode(-32036);
const DRAINING: ErrorCode = ErrorCode(-32037);

async fn upstream() -> HttpUpstream {
    serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("test upstream serves")
}

/// A gateway that checks upstreams every 300 ms.
async fn gateway(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    TestApp::spawn_with(TestBackend::Sqlite, |s| {
        s.mcp.request_timeout_ms = 5_000;
        s.mcp.connect_timeout_ms = 1_000;
        s.health.check_interval_ms = INTERVAL.as_millis() as u64;
        s.health.check_timeout_ms = 250;
        adjust(s);
    })
    .await
    .expect("sqlite app")
}

/// Registers an HTTP upstream (with replicas, if any) and discovers it now.
async fn register(app: &TestApp, name: &str, urls: &[String], extra: Value) {
    let mut body = json!({"name": name, "transport": {"type": "streamable-http", "url": urls[0]}});
    if urls.len() > 1 {
        body["transport"]["replicas"] = json!(urls[1..]);
    }
    if let (Value::Object(target), Value::Object(fields)) = (&mut body, extra) {
        target.extend(fields);
    }
    let created = app.post_json("/api/v1/servers", &body).await;
    assert_eq!(
        created.status(),
        201,
        "{}",
        created.text().await.unwrap_or_default()
    );
    let refreshed = app
        .post_json(&format!("/api/v1/servers/{name}/refresh"), &json!({}))
        .await;
    assert_eq!(refreshed.status(), 200);
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.expect("json")
}

async fn post(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.post(app.url(path)).send().await.expect("sent")
}

/// Polls `probe` every 25 ms until it holds; returns how long that took.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !probe().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    started.elapsed()
}

async fn state_of(app: &TestApp, server: &str) -> String {
    get_json(app, &format!("/api/v1/servers/{server}/health")).await["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn circuit_of(app: &TestApp, server: &str) -> String {
    get_json(app, &format!("/api/v1/servers/{server}/health")).await["endpoints"][0]["circuit"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn tool_names(
    client: &rmcp::service::RunningService<
        rmcp::RoleClient,
        impl rmcp::service::Service<rmcp::RoleClient>,
    >,
) -> Vec<String> {
    client
        .peer()
        .list_all_tools()
        .await
        .expect("list")
        .iter()
        .map(|t| t.name.to_string())
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_upstream_turns_unhealthy_leaves_the_list_fails_fast_and_comes_back() {
    let (victim, bystander) = (upstream().await, upstream().await);
    let victim_addr = victim.addr();
    let app = gateway(|_| {}).await;
    register(&app, "victim", &[victim.url()], json!({})).await;
    register(&app, "bystander", &[bystander.url()], json!({})).await;
    let (client, mut pushed) = connect(&app.url("/mcp")).await;
    wait_until(Duration::from_secs(5), "both healthy", || async {
        state_of(&app, "victim").await == "healthy"
            && state_of(&app, "bystander").await == "healthy"
    })
    .await;
    let mut before = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let result = client
            .peer()
            .call_tool(call("bystander__echo", json!({"text": i.to_string()})))
            .await
            .expect("bystander");
        before.push(started.elapsed());
        assert_eq!(text_of(&result), i.to_string());
    }

    victim.stop().await;
    let took = wait_until(Duration::from_secs(5), "victim unhealthy", || async {
        state_of(&app, "victim").await == "unhealthy"
    })
    .await;
    assert!(
        took <= INTERVAL * 2 + Duration::from_millis(100),
        "unhealthy after {took:?}, more than two intervals"
    );

    // Its tools leave the list, and the connected client is told.
    wait_until(
        Duration::from_secs(2),
        "victim's tools unlisted",
        || async {
            let names = tool_names(&client).await;
            !names.iter().any(|n| n.starts_with("victim__"))
                && names.contains(&"bystander__echo".to_owned())
        },
    )
    .await;
    let mut told = false;
    while let Ok(event) = pushed.try_recv() {
        told |= event == Pushed::ToolsChanged;
    }
    assert!(told, "the client got tools/list_changed");

    // A client with a stale list gets a fast, documented error naming the upstream.
    for _ in 0..5 {
        let started = Instant::now();
        let error = mcp_error(
            client
                .peer()
                .call_tool(call("victim__echo", json!({"text": "x"})))
                .await
                .expect_err("down"),
        );
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "failed in {:?}",
            started.elapsed()
        );
        assert_eq!(error.code, UNHEALTHY, "{error:?}");
        let data = error.data.expect("data");
        assert_eq!(
            (data["server"].as_str(), data["state"].as_str()),
            (Some("victim"), Some("unhealthy"))
        );
    }

    // The other upstream is unaffected.
    let mut after = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        client
            .peer()
            .call_tool(call("bystander__echo", json!({"text": i.to_string()})))
            .await
            .expect("bystander still answers");
        after.push(started.elapsed());
    }
    let (before, after) = (median(before), median(after));
    assert!(
        after <= before * 3 + Duration::from_millis(5),
        "bystander p50 went from {before:?} to {after:?}"
    );

    // Back on the same port: healthy and listed again, and calls work.
    let revived = serve_http(victim_addr).await.expect("restarted");
    wait_until(Duration::from_secs(5), "victim healthy again", || async {
        state_of(&app, "victim").await == "healthy"
    })
    .await;
    wait_until(Duration::from_secs(2), "victim listed again", || async {
        tool_names(&client)
            .await
            .contains(&"victim__echo".to_owned())
    })
    .await;
    let result = client
        .peer()
        .call_tool(call("victim__echo", json!({"text": "back"})))
        .await
        .expect("victim answers");
    assert_eq!(text_of(&result), "back");
    revived.stop().await;
    bystander.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_fail_fast_mode_an_unhealthy_upstream_stays_listed() {
    let victim = upstream().await;
    let app = gateway(|s| s.health.when_unavailable = WhenUnavailable::FailFast).await;
    register(&app, "victim", &[victim.url()], json!({})).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    victim.stop().await;
    wait_until(Duration::from_secs(5), "victim unhealthy", || async {
        state_of(&app, "victim").await == "unhealthy"
    })
    .await;
    assert!(
        tool_names(&client)
            .await
            .contains(&"victim__echo".to_owned())
    );
    let error = mcp_error(
        client
            .peer()
            .call_tool(call("victim__echo", json!({"text": "x"})))
            .await
            .expect_err("down"),
    );
    assert_eq!(error.code, UNHEALTHY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_trips_the_breaker_and_half_open_recovers() {
    let slow = upstream().await;
    let app = gateway(|s| {
        // Only the breaker judges here: checks hourly, health patient.
        s.health.check_interval_ms = 3_600_000;
        s.health.check_timeout_ms = 1_000;
        s.health.when_unavailable = WhenUnavailable::FailFast;
        s.circuit_breaker.consecutive_failures = 3;
        s.circuit_breaker.open_ms = 500;
    })
    .await;
    register(
        &app,
        "slow",
        &[slow.url()],
        json!({"request_timeout_ms": 200}),
    )
    .await;
    let (client, _) = connect(&app.url("/mcp")).await;

    for _ in 0..3 {
        let error = mcp_error(
            client
                .peer()
                .call_tool(call("slow__sleep", json!({"ms": 2_000})))
                .await
                .expect_err("times out"),
        );
        assert_eq!(error.code, ErrorCode(-32032), "{error:?}");
    }
    assert_eq!(circuit_of(&app, "slow").await, "open");
    // Timeouts judge the breaker, not health: the upstream is alive, only slow.
    let health = get_json(&app, "/api/v1/servers/slow/health").await;
    assert_eq!(health["endpoints"][0]["state"], "healthy", "{health}");
    let started = Instant::now();
    let error = mcp_error(
        client
            .peer()
            .call_tool(call("slow__echo", json!({"text": "x"})))
            .await
            .expect_err("open"),
    );
    assert!(started.elapsed() < Duration::from_millis(50));
    assert_eq!(error.code, UNHEALTHY);
    assert_eq!(
        error.data.as_ref().and_then(|d| d["circuit"].as_str()),
        Some("open")
    );
    let calls_while_open = slow.upstream().tool_calls();

    // Half-open after the cool-down: a failing probe opens it again...
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(circuit_of(&app, "slow").await, "half-open");
    let error = mcp_error(
        client
            .peer()
            .call_tool(call("slow__sleep", json!({"ms": 2_000})))
            .await
            .expect_err("probe times out"),
    );
    assert_eq!(error.code, ErrorCode(-32032));
    assert_eq!(circuit_of(&app, "slow").await, "open");
    assert_eq!(
        slow.upstream().tool_calls(),
        calls_while_open + 1,
        "only the probe reached the upstream"
    );

    // ...and a successful one closes it.
    tokio::time::sleep(Duration::from_millis(550)).await;
    let result = client
        .peer()
        .call_tool(call("slow__echo", json!({"text": "ok"})))
        .await
        .expect("probe succeeds");
    assert_eq!(text_of(&result), "ok");
    assert_eq!(circuit_of(&app, "slow").await, "closed");
    client
        .peer()
        .call_tool(call("slow__echo", json!({"text": "again"})))
        .await
        .expect("closed");
    slow.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bulkhead_caps_calls_in_flight_under_200_concurrent_calls() {
    let busy = upstream().await;
    let app = gateway(|s| {
        s.bulkhead.max_concurrent_calls = 5;
        s.bulkhead.max_queue_wait_ms = 100;
    })
    .await;
    register(&app, "busy", &[busy.url()], json!({})).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    let calls = (0..200).map(|_| {
        let peer = client.peer().clone();
        tokio::spawn(async move {
            peer.call_tool(call("busy__sleep", json!({"ms": 400})))
                .await
        })
    });
    let outcomes = futures_util::future::join_all(calls).await;
    let (mut ok, mut overloaded) = (0, 0);
    for outcome in outcomes {
        match outcome.expect("task") {
            Ok(_) => ok += 1,
            Err(error) => {
                let error = mcp_error(error);
                assert_eq!(error.code, OVERLOADED, "{error:?}");
                assert_eq!(
                    error.data.as_ref().and_then(|d| d["limit"].as_u64()),
                    Some(5)
                );
                overloaded += 1;
            }
        }
    }
    assert!(
        busy.upstream().max_concurrent_calls() <= 5,
        "{} at once",
        busy.upstream().max_concurrent_calls()
    );
    assert!(
        ok >= 5 && overloaded >= 150,
        "{ok} ok, {overloaded} refused"
    );
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(metrics.contains(&format!("gateway_upstream_rejections_total{{reason=\"overloaded\",server=\"busy\"}} {overloaded}")), "{metrics}");
    busy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_endpoints_of_one_server_share_the_load_and_fail_over() {
    let (first, second) = (upstream().await, upstream().await);
    let app = gateway(|_| {}).await;
    register(&app, "pair", &[first.url(), second.url()], json!({})).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    for i in 0..20 {
        client
            .peer()
            .call_tool(call("pair__echo", json!({"text": i.to_string()})))
            .await
            .expect("pair");
    }
    let (a, b) = (
        first.upstream().tool_calls(),
        second.upstream().tool_calls(),
    );
    assert_eq!(a + b, 20);
    assert!(a >= 8 && b >= 8, "round-robin spread {a}/{b}");

    // One endpoint dies: every call still succeeds, on the other.
    second.stop().await;
    for i in 0..20 {
        let result = client
            .peer()
            .call_tool(call("pair__echo", json!({"text": i.to_string()})))
            .await
            .expect("failed over");
        assert_eq!(text_of(&result), i.to_string());
    }
    assert_eq!(first.upstream().tool_calls(), a + 20);
    wait_until(
        Duration::from_secs(5),
        "second endpoint unhealthy",
        || async {
            let health = get_json(&app, "/api/v1/servers/pair/health").await;
            health["state"] == "degraded"
                && health["endpoints"][1]["state"] == "unhealthy"
                && health["endpoints"][0]["state"] == "healthy"
        },
    )
    .await;
    assert!(
        tool_names(&client).await.contains(&"pair__echo".to_owned()),
        "a degraded server stays listed"
    );
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_enable_disable_and_check_now() {
    let up = upstream().await;
    let app = gateway(|_| {}).await;
    register(&app, "draining", &[up.url()], json!({})).await;
    let (client, _) = connect(&app.url("/mcp")).await;

    // A call in flight finishes; new ones are refused; the tools leave the list.
    let long = {
        let peer = client.peer().clone();
        tokio::spawn(async move {
            peer.call_tool(call("draining__sleep", json!({"ms": 600})))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let drained = post(&app, "/api/v1/servers/draining/drain").await;
    assert_eq!(drained.status(), 202);
    let body: Value = drained.json().await.expect("json");
    assert_eq!(
        (body["draining"].as_bool(), body["in_flight"].as_u64()),
        (Some(true), Some(1)),
        "{body}"
    );
    let error = mcp_error(
        client
            .peer()
            .call_tool(call("draining__echo", json!({"text": "x"})))
            .await
            .expect_err("draining"),
    );
    assert_eq!(error.code, DRAINING);
    long.await
        .expect("task")
        .expect("the call in flight finished");
    let health = get_json(&app, "/api/v1/servers/draining/health").await;
    assert_eq!(
        (health["draining"].as_bool(), health["in_flight"].as_u64()),
        (Some(true), Some(0)),
        "{health}"
    );
    wait_until(
        Duration::from_secs(2),
        "unlisted while draining",
        || async {
            !tool_names(&client)
                .await
                .contains(&"draining__echo".to_owned())
        },
    )
    .await;

    // Enabling ends the drain.
    let enabled = post(&app, "/api/v1/servers/draining/enable").await;
    assert_eq!(enabled.status(), 200);
    assert!(enabled.headers().contains_key("etag"));
    client
        .peer()
        .call_tool(call("draining__echo", json!({"text": "x"})))
        .await
        .expect("serving again");

    // Check now answers with fresh endpoint health.
    let checked = post(&app, "/api/v1/servers/draining/check").await;
    assert_eq!(checked.status(), 200);
    let checked: Value = checked.json().await.expect("json");
    assert_eq!(
        checked["endpoints"][0]["last_check"]["ok"], true,
        "{checked}"
    );
    assert_eq!(checked["endpoints"][0]["last_check"]["source"], "check");

    // Disabled: unlisted, not checked, and drain/check say why they cannot run.
    let disabled = post(&app, "/api/v1/servers/draining/disable").await;
    assert_eq!(disabled.status(), 200);
    let body: Value = disabled.json().await.expect("json");
    assert_eq!(body["enabled"], false);
    for path in [
        "/api/v1/servers/draining/check",
        "/api/v1/servers/draining/drain",
    ] {
        let refused = post(&app, path).await;
        assert_eq!(refused.status(), 409, "{path}");
        let problem: Value = refused.json().await.expect("problem");
        assert!(
            problem["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("server-disabled")),
            "{problem}"
        );
    }
    let health = get_json(&app, "/api/v1/servers/draining/health").await;
    assert_eq!(
        (
            health["enabled"].as_bool(),
            health["endpoints"].as_array().map(Vec::len)
        ),
        (Some(false), Some(0))
    );
    for path in [
        "/api/v1/servers/nope/health",
        "/api/v1/servers/nope/enable",
        "/api/v1/servers/nope/check",
    ] {
        let response = if path.ends_with("health") {
            app.get(path).await
        } else {
            post(&app, path).await
        };
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_summary_filters_and_rejects_bad_filters() {
    let (up, down) = (upstream().await, upstream().await);
    let app = gateway(|_| {}).await;
    register(&app, "up", &[up.url()], json!({})).await;
    register(&app, "down", &[down.url()], json!({})).await;
    down.stop().await;
    wait_until(Duration::from_secs(5), "down is unhealthy", || async {
        state_of(&app, "down").await == "unhealthy"
    })
    .await;
    let summary = get_json(&app, "/api/v1/health/servers").await;
    assert_eq!(summary["counts"]["unhealthy"], 1, "{summary}");
    let unhealthy = get_json(&app, "/api/v1/health/servers?state=unhealthy").await;
    let names: Vec<&str> = unhealthy["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["down"]);
    assert_eq!(unhealthy["servers"][0]["available"], false);
    assert!(
        unhealthy["servers"][0]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    for bad in ["state=sick", "enabled=maybe", "colour=red"] {
        let response = app.get(&format!("/api/v1/health/servers?{bad}")).await;
        assert_eq!(response.status(), 400, "{bad}");
        let problem: Value = response.json().await.expect("problem");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains(bad.split('=').next().unwrap_or_default())),
            "{problem}"
        );
    }
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_the_calls_made() {
    let up = upstream().await;
    let app = gateway(|_| {}).await;
    register(&app, "alpha", &[up.url()], json!({})).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    for i in 0..7 {
        client
            .peer()
            .call_tool(call("alpha__echo", json!({"text": i.to_string()})))
            .await
            .expect("echo");
    }
    // A tool's own error result is an answer.
    let failed = client
        .peer()
        .call_tool(call("alpha__fail", json!({"message": "no"})))
        .await
        .expect("a result");
    assert_eq!(failed.is_error, Some(true));
    // Lists count too; a path naming no server adds no series of its own.
    client.peer().list_tools(None).await.expect("list");
    client.peer().list_tools(None).await.expect("list");
    let (stray, _) = connect(&app.url("/mcp/servers/no-such-server")).await;
    stray
        .peer()
        .list_tools(None)
        .await
        .expect_err("unknown server");

    // Any method token reaches the server; only standard ones become label values.
    let odd = reqwest::Method::from_bytes(b"BREW").expect("method");
    app.client
        .request(odd, app.url("/health"))
        .send()
        .await
        .expect("sent");
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/plain; version=0.0.4"))
    );
    let text = response.text().await.expect("text");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text format");
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(ref buckets) => {
                    buckets.last().map_or(0.0, |b| b.count)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            })
    };
    let call_labels = [
        ("method", "tools/call"),
        ("server", "alpha"),
        ("tool", "echo"),
    ];
    assert_eq!(
        value(
            "mcp_requests_total",
            &[
                call_labels[0],
                call_labels[1],
                call_labels[2],
                ("outcome", "ok")
            ]
        ),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        value(
            "mcp_requests_total",
            &[
                call_labels[0],
                call_labels[1],
                ("tool", "fail"),
                ("outcome", "ok")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value("mcp_request_duration_seconds", &call_labels),
        Some(7.0),
        "histogram count"
    );
    let list = |outcome| {
        value(
            "mcp_requests_total",
            &[
                ("method", "tools/list"),
                ("server", ""),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(
        (list("ok"), list("error")),
        (Some(1.0), Some(1.0)),
        "{text}"
    );
    assert!(!text.contains("no-such-server"));
    assert_eq!(
        value(
            "http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/v1/servers"),
                ("status", "201")
            ]
        ),
        Some(1.0)
    );
    assert!(
        value(
            "http_request_duration_seconds",
            &[("method", "POST"), ("route", "/api/v1/servers")]
        )
        .is_some()
    );
    assert_eq!(
        value(
            "gateway_upstream_health",
            &[("server", "alpha"), ("state", "healthy")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "gateway_upstream_health",
            &[("server", "alpha"), ("state", "unhealthy")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            "gateway_upstream_circuit",
            &[("server", "alpha"), ("state", "closed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value("gateway_upstream_in_flight", &[("server", "alpha")]),
        Some(0.0)
    );
    assert!(
        value(
            "gateway_catalog_items",
            &[("server", "alpha"), ("kind", "tools")]
        )
        .is_some_and(|n| n > 5.0)
    );
    assert!(value("gateway_db_pool_connections", &[("state", "idle")]).is_some());
    assert!(value("process_resident_memory_bytes", &[]).is_some_and(|n| n > 0.0));
    assert!(value("process_open_fds", &[]).is_some_and(|n| n > 0.0));
    assert!(
        value(
            "http_requests_total",
            &[("method", "OTHER"), ("route", "/health")]
        )
        .is_some(),
        "{text}"
    );
    assert!(!text.contains("BREW"));

    let summary = get_json(&app, "/api/v1/metrics/summary").await;
    let alpha = &summary["servers"][0];
    assert_eq!(
        (
            alpha["server"].as_str(),
            alpha["calls"].as_u64(),
            alpha["errors"].as_u64()
        ),
        (Some("alpha"), Some(8), Some(0)),
        "{summary}"
    );
    assert!(
        alpha["p50_ms"].as_f64().is_some_and(|p| p > 0.0)
            && alpha["p99_ms"].as_f64() >= alpha["p50_ms"].as_f64()
    );
    up.stop().await;
}

/// The issue's "done when": under continuous load on two upstreams, one dies. The
/// other's calls see no error, the dead one's fail fast, and both the health summary
/// and `/metrics` show it within two check intervals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_upstreams_under_load_is_contained_and_visible() {
    let (doomed, steady) = (upstream().await, upstream().await);
    let app = gateway(|_| {}).await;
    register(&app, "doomed", &[doomed.url()], json!({})).await;
    register(&app, "steady", &[steady.url()], json!({})).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = |tool: &'static str| {
        let (peer, stop) = (client.peer().clone(), stop.clone());
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let outcome = peer.call_tool(call(tool, json!({"text": "load"}))).await;
                outcomes.push((
                    Instant::now(),
                    started.elapsed(),
                    outcome.map(|_| ()).map_err(mcp_error),
                ));
            }
            outcomes
        })
    };
    let (steady_load, doomed_load) = (load("steady__echo"), load("doomed__echo"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed_at = Instant::now();
    doomed.stop().await;
    let visible = wait_until(
        Duration::from_secs(5),
        "summary and metrics show it",
        || async {
            let summary = get_json(&app, "/api/v1/health/servers?state=unhealthy").await;
            let listed = summary["servers"]
                .as_array()
                .is_some_and(|s| s.len() == 1 && s[0]["name"] == "doomed");
            let metrics = app.get("/metrics").await.text().await.unwrap_or_default();
            listed
                && metrics
                    .contains("gateway_upstream_health{server=\"doomed\",state=\"unhealthy\"} 1")
        },
    )
    .await;
    assert!(
        visible <= INTERVAL * 2 + Duration::from_millis(100),
        "visible after {visible:?}"
    );
    let detected = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let steady_outcomes = steady_load.await.expect("steady load");
    assert!(
        steady_outcomes.len() > 20,
        "{} steady calls",
        steady_outcomes.len()
    );
    let steady_errors: Vec<_> = steady_outcomes
        .iter()
        .filter_map(|(_, _, o)| o.as_ref().err())
        .collect();
    assert!(
        steady_errors.is_empty(),
        "the live upstream saw errors: {steady_errors:?}"
    );

    let doomed_outcomes = doomed_load.await.expect("doomed load");
    let after_detection: Vec<_> = doomed_outcomes
        .iter()
        .filter(|(at, _, _)| *at > detected)
        .collect();
    assert!(
        after_detection.len() > 10,
        "{} calls after detection",
        after_detection.len()
    );
    for (_, took, outcome) in after_detection {
        let error = outcome
            .as_ref()
            .expect_err("the dead upstream's calls fail");
        assert_eq!(error.code, UNHEALTHY, "{error:?}");
        // Fast means refused without trying the upstream: far below the 5 s request
        // timeout (the bound leaves room for a busy two-core CI machine).
        assert!(*took < Duration::from_millis(500), "failed in {took:?}");
    }
    let before_kill = doomed_outcomes
        .iter()
        .filter(|(at, _, o)| *at < killed_at && o.is_ok())
        .count();
    assert!(
        before_kill > 10,
        "the doomed upstream served load before it died"
    );
    steady.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_validated_and_round_trip() {
    let app = gateway(|_| {}).await;
    let cases = [
        (
            json!({"type": "streamable-http", "url": "http://127.0.0.1:9/mcp", "replicas": ["http://127.0.0.1:9/mcp"]}),
            422,
            "transport.replicas.0",
        ),
        (
            json!({"type": "streamable-http", "url": "http://127.0.0.1:9/mcp", "replicas": ["ftp://x/mcp"]}),
            422,
            "transport.replicas.0",
        ),
        (
            json!({"type": "streamable-http", "url": "http://127.0.0.1:9/mcp", "replicas": (0..16).map(|i| format!("http://127.0.0.1:{}/mcp", 1000 + i)).collect::<Vec<_>>()}),
            422,
            "transport.replicas",
        ),
        (
            json!({"type": "streamable-http", "url": "http://127.0.0.1:9/mcp", "replicas": "http://x"}),
            400,
            "transport",
        ),
        (
            json!({"type": "stdio", "command": "x", "replicas": []}),
            400,
            "transport",
        ),
    ];
    for (transport, status, field) in cases {
        let response = app
            .post_json(
                "/api/v1/servers",
                &json!({"name": "r", "transport": transport}),
            )
            .await;
        assert_eq!(response.status(), status, "{transport}");
        let problem: Value = response.json().await.expect("problem");
        assert!(
            problem.to_string().contains(field),
            "{field} named in {problem}"
        );
    }
    let body = json!({"name": "r", "transport": {"type": "streamable-http", "url": "http://127.0.0.1:9/mcp", "replicas": ["http://127.0.0.1:10/mcp"]}});
    let created = app.post_json("/api/v1/servers", &body).await;
    assert_eq!(created.status(), 201);
    let server: Value = created.json().await.expect("json");
    assert_eq!(
        server["transport"]["replicas"],
        json!(["http://127.0.0.1:10/mcp"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_that_keeps_the_endpoints_keeps_the_live_health() {
    let victim = upstream().await;
    let app = gateway(|_| {}).await;
    register(&app, "victim", &[victim.url()], json!({})).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    victim.stop().await;
    wait_until(Duration::from_secs(5), "victim unhealthy", || async {
        state_of(&app, "victim").await == "unhealthy"
    })
    .await;
    let patched = app
        .patch_json("/api/v1/servers/victim", &json!({"title": "Renamed title"}))
        .await;
    assert_eq!(patched.status(), 200);
    // Give the runtime time to see the change; the dead upstream must stay hidden.
    tokio::time::sleep(INTERVAL).await;
    assert_eq!(state_of(&app, "victim").await, "unhealthy");
    assert!(
        !tool_names(&client)
            .await
            .iter()
            .any(|n| n.starts_with("victim__"))
    );
}

/// An upstream that lists more than `mcp.max_items_per_upstream` items cannot fill the
/// gateway's memory or its clients' lists: the catalog is refused, the last known one
/// is kept, and the reason is recorded as the server's health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_listing_too_many_items_keeps_its_last_known_catalog() {
    let upstream =
        gateway_test_upstream::serve_http(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("upstream");
    let app =
        gateway_test_support::TestApp::spawn_with(gateway_test_support::TestBackend::Sqlite, |s| {
            s.mcp.max_items_per_upstream = 100;
        })
        .await
        .expect("app");
    let body = serde_json::json!({"name": "greedy", "transport": {"type": "streamable-http", "url": upstream.url()}});
    app.register(&body, None).await;
    let refresh = || {
        app.client
            .post(app.url("/api/v1/servers/greedy/refresh"))
            .send()
    };
    let first: serde_json::Value = refresh()
        .await
        .expect("sent")
        .json()
        .await
        .expect("catalog");
    let before = first["tools"].as_array().map(Vec::len).unwrap_or_default();
    assert!(before > 0 && before <= 100, "{before}");

    let flood: Vec<(String, String, serde_json::Value)> = (0..150)
        .map(|i| {
            (
                format!("flood_{i}"),
                "More.".to_owned(),
                serde_json::json!({"type": "object"}),
            )
        })
        .collect();
    upstream.upstream().add_tools(flood).await;
    let after: serde_json::Value = refresh()
        .await
        .expect("sent")
        .json()
        .await
        .expect("catalog");
    assert_eq!(
        after["tools"].as_array().map(Vec::len),
        Some(before),
        "the last known catalog stays"
    );
    let health: serde_json::Value = app
        .get("/api/v1/servers/greedy/health")
        .await
        .json()
        .await
        .expect("health");
    assert!(
        health.to_string().contains("max_items_per_upstream"),
        "the reason is recorded: {health}"
    );
    upstream.stop().await;
}

/// A hostile upstream breaks the protocol in every way it can: each call gets a
/// JSON-RPC error within its timeout, the gateway stays up, and a well-behaved upstream
/// beside it is never affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_upstream_gets_errors_not_the_gateway_down() {
    use gateway_test_support::hostile::{HostileUpstream, TOOLS};
    use gateway_test_support::mcp::{call, connect, text_of};
    let hostile = HostileUpstream::start(4 * 1024 * 1024);
    let good = gateway_test_upstream::serve_http(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("upstream");
    let app =
        gateway_test_support::TestApp::spawn_with(gateway_test_support::TestBackend::Sqlite, |s| {
            s.mcp.request_timeout_ms = 1_500;
            s.mcp.max_response_bytes = 1024 * 1024;
            // Every breakage counts as a failure: keep the circuit closed for this test.
            s.circuit_breaker.consecutive_failures = 1000;
            s.circuit_breaker.min_calls = 100_000;
        })
        .await
        .expect("app");
    for (name, url) in [("hostile", hostile.url.clone()), ("good", good.url())] {
        let body =
            serde_json::json!({"name": name, "transport": {"type": "streamable-http", "url": url}});
        app.register(&body, None).await;
        let refreshed = app
            .client
            .post(app.url(&format!("/api/v1/servers/{name}/refresh")))
            .send()
            .await
            .expect("sent");
        assert_eq!(refreshed.status(), 200, "{name}");
    }
    let (client, _) = connect(&app.url("/mcp")).await;
    let peer = client.peer();
    for tool in TOOLS {
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            peer.call_tool(call(&format!("hostile__{tool}"), serde_json::json!({}))),
        )
        .await
        .unwrap_or_else(|_| panic!("{tool}: no answer within 10 s"));
        let failed = match outcome {
            Err(error) => {
                let error = gateway_test_support::mcp::mcp_error(error);
                assert!(
                    (-32038..=-32031).contains(&error.code.0) || error.code.0 == -32603,
                    "{tool}: {error:?}"
                );
                true
            }
            Ok(result) => result.is_error == Some(true),
        };
        assert!(failed, "{tool}: a breakage must not look like success");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{tool}: within its timeout"
        );
        // The well-behaved upstream is untouched, after every breakage.
        let echo = peer
            .call_tool(call("good__echo", serde_json::json!({"text": tool})))
            .await
            .expect("the good upstream answers");
        assert_eq!(text_of(&echo), tool);
    }
    assert_eq!(app.get("/health").await.status(), 200);
    hostile.stop().await;
    good.stop().await;
}

/// The value of one metric series, 0 when it is absent.
async fn metric(app: &TestApp, series: &str) -> u64 {
    let text = app.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// An upstream flooding notifications on a call's stream: the call still gets its
/// result; the client is relayed no more than the cap allows and the rest is counted
/// as dropped; the flood of list changes is coalesced into a few re-listings, not one
/// per notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_flood_is_capped_counted_and_coalesced() {
    use gateway_test_support::hostile::{FLOOD_LIST_CHANGES, FLOOD_LOGS, HostileUpstream};
    use std::sync::atomic::Ordering;
    const CAP: usize = 50;
    let hostile = HostileUpstream::start(1024);
    let app = gateway(|s| s.mcp.max_upstream_notifications_per_sec = CAP as u32).await;
    register(
        &app,
        "hostile",
        std::slice::from_ref(&hostile.url),
        json!({}),
    )
    .await;
    let lists_before = hostile.list_requests.load(Ordering::Relaxed);

    let (client, mut pushed) = connect(&app.url("/mcp")).await;
    // Log messages travel on the session's standalone stream (rmcp's server sends
    // every notification but progress there): let the client open it first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        client.peer().call_tool(call("hostile__flood", json!({}))),
    )
    .await
    .expect("an answer within 20 s")
    .expect("the call succeeds");
    let elapsed = started.elapsed();
    assert_eq!(text_of(&result), "flood survived");

    // Let the relayed messages arrive and the coalesced refreshes run.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut relayed = 0;
    while let Ok(event) = pushed.try_recv() {
        relayed += usize::from(matches!(event, Pushed::Log(_)));
    }
    let dropped = metric(
        &app,
        "gateway_upstream_faults_total{fault=\"notification_flood\",server=\"hostile\"}",
    )
    .await as usize;
    let allowed = CAP + CAP * (elapsed.as_secs() as usize + 1);
    assert!(
        dropped >= FLOOD_LOGS - allowed,
        "{dropped} dropped, at most {allowed} of {FLOOD_LOGS} may pass in {elapsed:?}"
    );
    // What passed is relayed (those sent while the client's standalone stream
    // reconnects can be lost: rmcp's server sends log messages on that stream).
    assert!(
        relayed > 0 && relayed <= FLOOD_LOGS - dropped,
        "{relayed} relayed, {dropped} dropped"
    );

    // At most one re-listing per 200 ms while the flood lasts.
    let relisted = hostile.list_requests.load(Ordering::Relaxed) - lists_before;
    let flood_lasted = started.elapsed();
    let most = 2 + (flood_lasted.as_millis() / 200) as usize;
    assert!(
        (1..=most).contains(&relisted),
        "{FLOOD_LIST_CHANGES} list changes in {flood_lasted:?} caused {relisted} re-listings, at most {most}"
    );
    // The session and the gateway carry on.
    let tools = client.peer().list_all_tools().await.expect("tools");
    assert!(tools.iter().any(|t| t.name == "hostile__flood"));
    assert_eq!(app.get("/health").await.status(), 200);
    hostile.stop().await;
}

/// `tools/list` entries that are not valid tools, or repeat a name, are left out and
/// counted; the upstream's valid tools are served, odd names made valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_list_entries_are_left_out_and_counted_not_the_whole_list() {
    use gateway_test_support::hostile::{HostileUpstream, INVALID_ENTRIES, TOOLS};
    let hostile = HostileUpstream::start(1024);
    let app = gateway(|_| {}).await;
    register(
        &app,
        "hostile",
        std::slice::from_ref(&hostile.url),
        json!({}),
    )
    .await;

    let (client, _) = connect(&app.url("/mcp")).await;
    let tools = client.peer().list_all_tools().await.expect("tools");
    let names: Vec<&str> = tools
        .iter()
        .map(|t| t.name.as_ref())
        .filter(|n| n.starts_with("hostile__"))
        .collect();
    for tool in TOOLS.iter().chain(&["flood", "broken_schema"]) {
        let exposed = format!("hostile__{tool}");
        assert_eq!(
            names.iter().filter(|n| **n == exposed).count(),
            1,
            "{exposed} once in {names:?}"
        );
    }
    let odd: Vec<&&str> = names
        .iter()
        .filter(|n| n.starts_with("hostile__bad_name"))
        .collect();
    assert_eq!(odd.len(), 1, "the odd name, made valid: {names:?}");
    assert!(
        odd[0]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')),
        "{odd:?}"
    );
    assert_eq!(names.len(), TOOLS.len() + 3, "{names:?}");
    let garbage = tools
        .iter()
        .find(|t| t.name == "hostile__garbage")
        .expect("garbage");
    assert_eq!(garbage.description, None, "the first `garbage` is kept");

    let left_out = metric(
        &app,
        "gateway_upstream_faults_total{fault=\"invalid_item\",server=\"hostile\"}",
    )
    .await as usize;
    assert!(
        left_out >= INVALID_ENTRIES && left_out.is_multiple_of(INVALID_ENTRIES),
        "{left_out} entries counted, {INVALID_ENTRIES} per listing"
    );
    assert_eq!(state_of(&app, "hostile").await, "healthy");
    hostile.stop().await;
}

/// Stdio children that break: one exits at once, one writes 20 MB without a
/// newline, one writes lines of garbage, one floods its stderr. Each is reported
/// unhealthy with a reason within the connect timeout; the gateway stays up and a
/// well-behaved upstream beside them answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_stdio_children_are_contained() {
    let good = upstream().await;
    let app = gateway(|s| {
        s.upstreams.allow_stdio = true;
        s.upstreams.stdio_commands = vec!["sh".into()];
    })
    .await;
    register(&app, "good", &[good.url()], json!({})).await;
    let children = [
        ("exits", "exit 3"),
        ("no-newline", "head -c 20000000 /dev/zero; sleep 30"),
        (
            "garbage",
            "yes 'this is not JSON-RPC' | head -n 100000; sleep 30",
        ),
        (
            "stderr-flood",
            "yes 'an error line' | head -n 200000 >&2; sleep 30",
        ),
    ];
    for (name, script) in children {
        let body = json!({"name": name, "transport": {"type": "stdio", "command": "sh", "args": ["-c", script]}});
        let created = app.post_json("/api/v1/servers", &body).await;
        assert_eq!(created.status(), 201, "{name}");
        let started = Instant::now();
        let refreshed = post(&app, &format!("/api/v1/servers/{name}/refresh")).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: the refresh ends within the connect timeout"
        );
        // The last known catalog (none), the failure recorded as health.
        assert_eq!(refreshed.status(), 200, "{name}");
        let health = get_json(&app, &format!("/api/v1/servers/{name}/health")).await;
        assert_ne!(health["state"], "healthy", "{name}: {health}");
        assert!(
            health["recorded"]["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{name}: a reason is recorded: {health}"
        );
        let (client, _) = connect(&app.url("/mcp")).await;
        let echo = client
            .peer()
            .call_tool(call("good__echo", json!({"text": name})))
            .await
            .expect("the good upstream answers");
        assert_eq!(text_of(&echo), name);
        if name == "stderr-flood" {
            let dropped = metric(
                &app,
                "gateway_upstream_faults_total{fault=\"stderr_flood\",server=\"stderr-flood\"}",
            )
            .await;
            assert!(dropped > 0, "the stderr flood is capped and counted");
        }
        // Removed, so its health checks stop starting it again (the tests beside this
        // one share the machine's two cores).
        let removed = app
            .client
            .delete(app.url(&format!("/api/v1/servers/{name}")))
            .send()
            .await
            .expect("sent");
        assert!(
            removed.status().is_success(),
            "{name}: {}",
            removed.status()
        );
    }
    assert_eq!(app.get("/health").await.status(), 200);
    good.stop().await;
}
