//! `/mcp` end to end: the real gateway on a random port, the in-repo test upstream
//! (a real rmcp server) over Streamable HTTP and stdio, and a real rmcp client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gateway_test_support::mcp::{Pushed, blocks, call, connect, mcp_error, text_of};
use gateway_test_support::{TestApp, TestBackend};
use gateway_test_upstream::{HttpUpstream, serve_http};
use rmcp::model::{ErrorCode, PaginatedRequestParams};
use serde_json::{Value, json};

async fn upstream() -> HttpUpstream {
    serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("test upstream serves")
}

async fn gateway() -> TestApp {
    TestApp::spawn_with(TestBackend::Sqlite, |s| {
        s.mcp.page_size = 5;
        s.mcp.request_timeout_ms = 5_000;
        s.mcp.connect_timeout_ms = 2_000;
        s.upstreams.allow_stdio = true;
        s.upstreams.stdio_commands = vec![upstream_binary().to_string_lossy().into_owned()];
    })
    .await
    .expect("sqlite app")
}

/// Registers an HTTP upstream and fetches its catalog now (the refresh endpoint is
/// synchronous), so tests need no sleeps.
async fn register(app: &TestApp, name: &str, url: &str, extra: Value) -> Value {
    let mut body = json!({"name": name, "transport": {"type": "streamable-http", "url": url}});
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
    refresh(app, name).await
}

async fn refresh(app: &TestApp, name: &str) -> Value {
    let response = app
        .client
        .post(app.url(&format!("/api/v1/servers/{name}/refresh")))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    response.json().await.expect("catalog")
}

fn first_type(result: &rmcp::model::CallToolResult) -> String {
    blocks(result)
        .first()
        .and_then(|b| b["type"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_and_per_server_listing_with_pages() {
    let (alpha, beta) = (upstream().await, upstream().await);
    let app = gateway().await;
    let catalog = register(&app, "alpha", &alpha.url(), json!({})).await;
    assert!(
        catalog["tools"].as_array().is_some_and(|t| t.len() > 5),
        "{catalog}"
    );
    register(&app, "beta", &beta.url(), json!({})).await;

    let (client, _) = connect(&app.url("/mcp")).await;
    let all = client.peer().list_all_tools().await.expect("tools");
    let names: Vec<String> = all.iter().map(|t| t.name.to_string()).collect();
    assert!(
        names.contains(&"alpha__echo".to_owned()) && names.contains(&"beta__echo".to_owned()),
        "{names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "deterministic order");
    let echo = all
        .iter()
        .find(|t| t.name == "alpha__echo")
        .expect("listed");
    assert!(
        echo.input_schema.contains_key("properties"),
        "schemas are forwarded unchanged"
    );

    // Pages of 5 with opaque cursors cover the same list.
    let first = client.peer().list_tools(None).await.expect("page");
    assert_eq!(first.tools.len(), 5);
    let cursor = first.next_cursor.clone().expect("more pages");
    let second = client
        .peer()
        .list_tools(Some(
            PaginatedRequestParams::default().with_cursor(Some(cursor)),
        ))
        .await
        .expect("page");
    assert_eq!(second.tools[0].name.as_ref(), names[5].as_str());
    let bad = client
        .peer()
        .list_tools(Some(
            PaginatedRequestParams::default().with_cursor(Some("garbage".into())),
        ))
        .await;
    assert_eq!(
        mcp_error(bad.expect_err("bad cursor")).code,
        ErrorCode::INVALID_PARAMS
    );

    // The per-server endpoint serves original names, as the upstream itself would.
    let (scoped, _) = connect(&app.url("/mcp/servers/alpha")).await;
    let original: Vec<String> = scoped
        .peer()
        .list_all_tools()
        .await
        .expect("tools")
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        original.contains(&"echo".to_owned()) && !original.iter().any(|n| n.contains("__")),
        "{original:?}"
    );
    let result = scoped
        .peer()
        .call_tool(call("echo", json!({"text": "scoped"})))
        .await
        .expect("call");
    assert_eq!(text_of(&result), "scoped");

    let resources = client.peer().list_all_resources().await.expect("resources");
    let static_text = resources
        .iter()
        .find(|r| r.uri == "gw+alpha:test://static/text")
        .expect("exposed URI");
    let read = client
        .peer()
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            static_text.uri.clone(),
        ))
        .await
        .expect("read");
    assert!(!read.contents.is_empty());
    let prompts = client.peer().list_all_prompts().await.expect("prompts");
    assert!(
        prompts.iter().any(|p| p.name == "beta__greeting"),
        "{prompts:?}"
    );
    let mut args = serde_json::Map::new();
    args.insert("name".into(), json!("Ada"));
    let prompt = client
        .peer()
        .get_prompt(rmcp::model::GetPromptRequestParams::new("beta__greeting").with_arguments(args))
        .await
        .expect("prompt");
    assert!(
        serde_json::to_string(&prompt.messages)
            .expect("json")
            .contains("Ada")
    );
    for server in [alpha, beta] {
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_return_every_content_type_untouched() {
    let up = upstream().await;
    let app = gateway().await;
    register(&app, "up", &up.url(), json!({})).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    let peer = client.peer();

    let echo = peer
        .call_tool(call("up__echo", json!({"text": "héllo"})))
        .await
        .expect("echo");
    assert_eq!(text_of(&echo), "héllo");
    let add = peer
        .call_tool(call("up__add", json!({"a": 2, "b": 40})))
        .await
        .expect("add");
    assert_eq!(
        add.structured_content
            .as_ref()
            .and_then(|s| s["sum"].as_f64()),
        Some(42.0)
    );
    let failed = peer
        .call_tool(call("up__fail", json!({"message": "nope"})))
        .await
        .expect("tool error is a result");
    assert_eq!(failed.is_error, Some(true));
    assert_eq!(text_of(&failed), "nope");
    for (tool, content) in [
        ("up__image", "image"),
        ("up__audio", "audio"),
        ("up__resource_link", "resource_link"),
        ("up__embedded_resource", "resource"),
    ] {
        let result = peer.call_tool(call(tool, json!({}))).await.expect(tool);
        assert_eq!(first_type(&result), content, "{tool}: {result:?}");
    }

    let unknown = peer
        .call_tool(call("up__nope", json!({})))
        .await
        .expect_err("unknown tool");
    let unknown = mcp_error(unknown);
    assert_eq!(unknown.code, ErrorCode::INVALID_PARAMS);
    assert!(unknown.message.contains("up__nope"), "{unknown:?}");
    up.stop().await;
}

/// Calls to an upstream on a session-based revision go straight onto its session
/// (`direct.rs`). When the upstream restarts it forgets that session: the next call
/// gets 404 there, and the gateway sends it again on a new session. No call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_survives_an_upstream_that_forgot_its_session() {
    let up = gateway_test_upstream::serve_http_with(
        gateway_test_upstream::TestUpstream::new().session_era_only(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .expect("test upstream serves");
    let address = up.addr();
    let app = gateway().await;
    let catalog = register(&app, "legacy", &up.url(), json!({})).await;
    // Discovery settles on a session-based revision; a gateway that knows it opens a
    // session with `initialize` (rmcp's discovery may speak it without one).
    let app = app.restart().await;
    let server = app.get("/api/v1/servers/legacy").await;
    let server: Value = server.json().await.expect("server");
    let version = server["health"]["protocol_version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        version.starts_with("2025-"),
        "a session-based revision was negotiated: {version} ({catalog})"
    );
    let (client, mut pushed) = connect(&app.url("/mcp")).await;
    let echo = || call("legacy__echo", json!({"text": "hi"}));
    let result = client.peer().call_tool(echo()).await.expect("call");
    assert!(text_of(&result).contains("hi"), "{result:?}");
    // Progress on the call's own stream reaches the caller.
    let result = client
        .peer()
        .call_tool(call(
            "legacy__progress",
            json!({"steps": 2, "delay_ms": 10}),
        ))
        .await
        .expect("call");
    assert_eq!(text_of(&result), "done");
    let mut progress = 0;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(300), pushed.recv()).await
    {
        progress += usize::from(matches!(event, Pushed::Progress(_)));
    }
    assert_eq!(progress, 2, "every progress notification arrives");

    up.stop().await;
    let again = gateway_test_upstream::serve_http_with(
        gateway_test_upstream::TestUpstream::new().session_era_only(),
        address,
    )
    .await
    .expect("the upstream restarts on its port");
    for round in 0..3 {
        let result = client.peer().call_tool(echo()).await;
        let result = result.unwrap_or_else(|e| panic!("call {round} after the restart: {e}"));
        assert!(text_of(&result).contains("hi"), "{result:?}");
    }
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reaches_the_caller_under_its_own_token() {
    let up = upstream().await;
    let app = gateway().await;
    register(&app, "up", &up.url(), json!({})).await;
    let (client, mut pushed) = connect(&app.url("/mcp")).await;
    let result = client
        .peer()
        .call_tool(call("up__progress", json!({"steps": 3, "delay_ms": 20})))
        .await
        .expect("call");
    assert_eq!(text_of(&result), "done");
    let mut progress = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(300), pushed.recv()).await
    {
        if let Pushed::Progress(p) = event {
            progress.push(p.progress);
        }
    }
    assert_eq!(
        progress.len(),
        3,
        "every progress notification arrives: {progress:?}"
    );
    up.stop().await;
}

/// Disabling a server closes its upstream session, and the calls in flight on it
/// (direct calls included) end then, not when the upstream would have answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_server_ends_its_calls_in_flight() {
    let up = upstream().await;
    let app = gateway().await;
    register(
        &app,
        "busy",
        &up.url(),
        json!({"request_timeout_ms": 20_000}),
    )
    .await;
    let (client, _) = connect(&app.url("/mcp")).await;
    let started = Instant::now();
    let peer = client.peer().clone();
    let call_in_flight = tokio::spawn(async move {
        peer.call_tool(call("busy__sleep", json!({"ms": 10_000})))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let disabled = app
        .client
        .post(app.url("/api/v1/servers/busy/disable"))
        .send()
        .await
        .expect("sent");
    assert_eq!(disabled.status(), 200);
    let ended = tokio::time::timeout(Duration::from_secs(5), call_in_flight)
        .await
        .expect("the call ends with its session")
        .expect("joined");
    assert!(ended.is_err(), "no answer from a closed session: {ended:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstreams_time_out_with_a_named_error() {
    let up = upstream().await;
    let app = gateway().await;
    register(&app, "slow", &up.url(), json!({"request_timeout_ms": 300})).await;
    register(&app, "fast", &up.url(), json!({})).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    let started = Instant::now();
    let error = mcp_error(
        client
            .peer()
            .call_tool(call("slow__sleep", json!({"ms": 5000})))
            .await
            .expect_err("timeout"),
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(error.code, ErrorCode(-32032));
    assert!(error.message.contains("slow"), "{error:?}");
    assert_eq!(
        error.data.as_ref().and_then(|d| d["server"].as_str()),
        Some("slow")
    );
    let fine = client
        .peer()
        .call_tool(call("fast__echo", json!({"text": "ok"})))
        .await
        .expect("other server unaffected");
    assert_eq!(text_of(&fine), "ok");
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_fails_fast_keeps_its_catalog_and_leaves_the_list() {
    let (doomed, alive) = (upstream().await, upstream().await);
    let app = gateway().await;
    register(&app, "doomed", &doomed.url(), json!({})).await;
    register(&app, "alive", &alive.url(), json!({})).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    doomed.stop().await;

    let started = Instant::now();
    let error = mcp_error(
        client
            .peer()
            .call_tool(call("doomed__echo", json!({"text": "x"})))
            .await
            .expect_err("down"),
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        [ErrorCode(-32031), ErrorCode(-32033)].contains(&error.code),
        "{error:?}"
    );
    assert_eq!(
        error.data.as_ref().and_then(|d| d["server"].as_str()),
        Some("doomed")
    );

    // A refresh cannot reach it: its tools stay listed, its health says why.
    let catalog = refresh(&app, "doomed").await;
    assert!(catalog["tools"].as_array().is_some_and(|t| !t.is_empty()));
    let server: Value = app
        .get("/api/v1/servers/doomed")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(server["health"]["state"], "unhealthy", "{server}");
    // Two failures make it unhealthy: its tools leave the list (the catalog stays
    // stored, so they come back unchanged when it recovers).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let names: Vec<String> = client
            .peer()
            .list_all_tools()
            .await
            .expect("list")
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        assert!(names.contains(&"alive__echo".to_owned()), "{names:?}");
        if !names.contains(&"doomed__echo".to_owned()) {
            break;
        }
        assert!(Instant::now() < deadline, "still listed: {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ok = client
        .peer()
        .call_tool(call("alive__echo", json!({"text": "still here"})))
        .await
        .expect("alive");
    assert_eq!(text_of(&ok), "still here");
    alive.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_upstream_is_reconnected_transparently() {
    let up = upstream().await;
    let addr = up.addr();
    let app = gateway().await;
    register(&app, "bouncy", &up.url(), json!({})).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    assert_eq!(
        text_of(
            &client
                .peer()
                .call_tool(call("bouncy__echo", json!({"text": "1"})))
                .await
                .expect("first")
        ),
        "1"
    );

    // Same address, new process state: the old session id is unknown (HTTP 404).
    up.stop().await;
    let again = serve_http(addr).await.expect("rebinds");
    let second = client
        .peer()
        .call_tool(call("bouncy__echo", json!({"text": "2"})))
        .await;
    let second = match second {
        Ok(result) => result,
        // One failure is allowed while the old session is torn down; the next call works.
        Err(_) => client
            .peer()
            .call_tool(call("bouncy__echo", json!({"text": "2"})))
            .await
            .expect("after reconnect"),
    };
    assert_eq!(text_of(&second), "2");
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_list_changes_reach_connected_clients() {
    let up = upstream().await;
    let app = gateway().await;
    register(&app, "live", &up.url(), json!({})).await;
    let (client, mut pushed) = connect(&app.url("/mcp")).await;
    client
        .peer()
        .call_tool(call("live__add_tool", json!({"name": "fresh"})))
        .await
        .expect("add_tool");

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut notified = false;
    while Instant::now() < deadline && !notified {
        if let Ok(Some(Pushed::ToolsChanged)) =
            tokio::time::timeout(Duration::from_millis(200), pushed.recv()).await
        {
            notified = true;
        }
    }
    assert!(notified, "tools/list_changed reached the client");
    let names: Vec<String> = client
        .peer()
        .list_all_tools()
        .await
        .expect("list")
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"live__fresh".to_owned()), "{names:?}");
    let result = client
        .peer()
        .call_tool(call("live__fresh", json!({})))
        .await
        .expect("new tool callable");
    assert!(text_of(&result).contains("fresh"));
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_servers_leave_the_lists_and_refuse_calls() {
    let up = upstream().await;
    let app = gateway().await;
    register(&app, "toggle", &up.url(), json!({})).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    assert!(
        client
            .peer()
            .list_all_tools()
            .await
            .expect("list")
            .iter()
            .any(|t| t.name == "toggle__echo")
    );
    let patched = app
        .patch_json("/api/v1/servers/toggle", &json!({"enabled": false}))
        .await;
    assert_eq!(patched.status(), 200);
    refresh(&app, "toggle").await;
    assert!(
        !client
            .peer()
            .list_all_tools()
            .await
            .expect("list")
            .iter()
            .any(|t| t.name.starts_with("toggle__"))
    );
    let error = mcp_error(
        client
            .peer()
            .call_tool(call("toggle__echo", json!({})))
            .await
            .expect_err("gone"),
    );
    assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
    let (scoped, _) = connect(&app.url("/mcp/servers/toggle")).await;
    let error = mcp_error(scoped.peer().list_tools(None).await.expect_err("disabled"));
    assert_eq!(error.code, ErrorCode(-32034));
    up.stop().await;
}

/// The test upstream's binary, built on demand when only this package is tested.
fn upstream_binary() -> PathBuf {
    let target = std::env::current_exe()
        .expect("test binary")
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .expect("target dir");
    let binary = target.join("test-upstream");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--package",
                "gateway-test-upstream",
                "--bin",
                "test-upstream",
            ])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building test-upstream");
    }
    binary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_upstreams_are_spawned_and_proxied() {
    let app = gateway().await;
    let binary = upstream_binary();
    let body = json!({"name": "local", "transport": {"type": "stdio", "command": binary.to_string_lossy(), "args": ["stdio"]}});
    assert_eq!(app.post_json("/api/v1/servers", &body).await.status(), 201);
    let catalog = refresh(&app, "local").await;
    assert!(
        catalog["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|tool| tool["name"] == "echo")),
        "{catalog}"
    );
    let server: Value = app
        .get("/api/v1/servers/local")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(server["health"]["state"], "healthy", "{server}");
    assert!(server["health"]["protocol_version"].is_string(), "{server}");

    let (client, mut pushed) = connect(&app.url("/mcp")).await;
    let echo = client
        .peer()
        .call_tool(call("local__echo", json!({"text": "over stdio"})))
        .await
        .expect("call");
    assert_eq!(text_of(&echo), "over stdio");
    let progress = client
        .peer()
        .call_tool(call("local__progress", json!({"steps": 2, "delay_ms": 10})))
        .await
        .expect("call");
    assert_eq!(text_of(&progress), "done");
    let mut count = 0;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(300), pushed.recv()).await
    {
        count += usize::from(matches!(event, Pushed::Progress(_)));
    }
    assert_eq!(count, 2, "stdio progress is relayed too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_call_frees_the_gateway() {
    let up = upstream().await;
    let app = gateway().await;
    register(&app, "up", &up.url(), json!({})).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    let peer = client.peer().clone();
    let request = rmcp::model::ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(
        call("up__sleep", json!({"ms": 10_000})),
    ));
    let handle = peer
        .send_request_with_option(request, rmcp::service::PeerRequestOptions::no_options())
        .await
        .expect("sent");
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle
        .cancel(Some("changed my mind".into()))
        .await
        .expect("cancel sent");
    let started = Instant::now();
    let ok = client
        .peer()
        .call_tool(call("up__echo", json!({"text": "next"})))
        .await
        .expect("next call");
    assert_eq!(text_of(&ok), "next");
    assert!(started.elapsed() < Duration::from_secs(2));
    up.stop().await;
}

/// Posts a raw JSON-RPC body to `/mcp` as a client would, returning the status and
/// the JSON-RPC message (from a JSON body or the last SSE `data:` line).
async fn post_raw(
    app: &TestApp,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text)
        .ok()
        .or_else(|| {
            text.lines().rev().find_map(|l| {
                l.strip_prefix("data:")
                    .and_then(|d| serde_json::from_str(d.trim()).ok())
            })
        })
        .unwrap_or(Value::Null);
    (status, json)
}

/// A 2025-06-18 session opened by hand (`initialize` with `extra_params` merged in,
/// then `notifications/initialized`); its id.
async fn open_raw_session(app: &TestApp, extra_params: Value) -> String {
    let mut init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    if let (Some(Value::Object(params)), Value::Object(extra)) =
        (init.get_mut("params"), extra_params)
    {
        params.extend(extra);
    }
    let response = app
        .client
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .expect("initialize");
    assert_eq!(response.status(), 200, "initialize");
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let (status, _) = post_raw(
        app,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        &headers,
    )
    .await;
    assert_eq!(status, 202, "initialized");
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_rpc_gets_the_right_error_codes() {
    let app = gateway().await;
    let cases: [(&str, u16, i64); 7] = [
        ("{not json", 400, -32700),
        ("", 400, -32700),
        (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, 400, -32600),
        (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, 400, -32600),
        (r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#, 400, -32600),
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call"}"#,
            400,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{}}"#,
            400,
            -32602,
        ),
    ];
    for (body, status, code) in cases {
        let (got, message) = post_raw(&app, body.to_owned(), &[]).await;
        assert_eq!(
            (got, message["error"]["code"].as_i64()),
            (status, Some(code)),
            "{body}: {message}"
        );
        assert_eq!(message["jsonrpc"], "2.0");
    }
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":4,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(2 * 1024 * 1024)
    );
    let (status, message) = post_raw(&app, huge, &[]).await;
    assert_eq!(
        (status, message["error"]["code"].as_i64()),
        (413, Some(-32600))
    );

    // A session-based client: unknown methods and unknown tools.
    let session = open_raw_session(&app, json!({})).await;
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let (_, message) = post_raw(
        &app,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/frobnicate"}"#.to_owned(),
        &headers,
    )
    .await;
    assert_eq!(message["error"]["code"], -32601, "{message}");
    let (_, message) = post_raw(
        &app,
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"nope"}}"#.to_owned(),
        &headers,
    )
    .await;
    assert_eq!(message["error"]["code"], -32602, "{message}");

    // DNS-rebinding protection: a browser page from another origin is refused.
    let (status, _) = post_raw(
        &app,
        r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#.to_owned(),
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(status, 403);
    let own_origin = app.address.replace("http://127.0.0.1", "http://localhost");
    let (status, _) = post_raw(
        &app,
        r#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#.to_owned(),
        &[
            ("origin", own_origin.as_str()),
            ("mcp-session-id", session.as_str()),
            ("mcp-protocol-version", "2025-06-18"),
        ],
    )
    .await;
    assert_eq!(status, 200, "the gateway's own origin is allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_2026_requests_are_checked_and_served() {
    let up = upstream().await;
    let app = gateway().await;
    register(&app, "up", &up.url(), json!({})).await;
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"up__echo","arguments":{{"text":"modern"}},{meta}}}}}"#
    );
    let (status, message) = post_raw(
        &app,
        body.clone(),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "up__echo"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{message}");
    assert_eq!(message["result"]["content"][0]["text"], "modern");
    assert_eq!(message["result"]["resultType"], "complete");
    let (status, message) = post_raw(
        &app,
        body,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
    )
    .await;
    assert_eq!(
        (status, message["error"]["code"].as_i64()),
        (400, Some(-32020)),
        "header/body mismatch"
    );
    let get = app
        .client
        .get(app.url("/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .send()
        .await
        .expect("sent");
    assert_eq!(get.status(), 405);
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_upstream_mid_call_fails_that_call_only() {
    let (victim, bystander) = (upstream().await, upstream().await);
    let app = gateway().await;
    register(&app, "victim", &victim.url(), json!({})).await;
    register(&app, "bystander", &bystander.url(), json!({})).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    let peer = client.peer().clone();
    let started = Instant::now();
    let doomed = tokio::spawn(async move {
        peer.call_tool(call("victim__sleep", json!({"ms": 30_000})))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Calls to the other upstream keep working while the victim dies.
    let busy = {
        let peer = client.peer().clone();
        tokio::spawn(async move {
            for i in 0..20 {
                let result = peer
                    .call_tool(call("bystander__echo", json!({"text": i.to_string()})))
                    .await
                    .expect("bystander");
                assert_eq!(text_of(&result), i.to_string());
            }
        })
    };
    victim.stop().await;
    let outcome = doomed.await.expect("task");
    let elapsed = started.elapsed();
    let error = mcp_error(outcome.expect_err("the killed upstream's call fails"));
    assert!(
        elapsed < Duration::from_secs(5),
        "answered within the 5 s timeout: {elapsed:?}"
    );
    assert_eq!(
        error.data.as_ref().and_then(|d| d["server"].as_str()),
        Some("victim"),
        "{error:?}"
    );
    busy.await.expect("bystander calls all succeeded");
    bystander.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_log_messages_reach_the_calling_client_in_order() {
    let up = upstream().await;
    let app = gateway().await;
    register(&app, "chatty", &up.url(), json!({})).await;
    let binary = upstream_binary();
    let stdio = json!({"name": "local", "transport": {"type": "stdio", "command": binary.to_string_lossy(), "args": ["stdio"]}});
    assert_eq!(app.post_json("/api/v1/servers", &stdio).await.status(), 201);
    refresh(&app, "local").await;
    let (client, mut pushed) = connect(&app.url("/mcp")).await;
    for tool in [
        "chatty__test_tool_with_logging",
        "local__test_tool_with_logging",
    ] {
        let result = client
            .peer()
            .call_tool(call(tool, json!({})))
            .await
            .expect("call");
        assert!(text_of(&result).contains("successfully"), "{result:?}");
        // Every message reaches this client, in order (the test client, like the
        // gateway, handles notifications on tasks of their own, so allow them a moment).
        let mut logs = Vec::new();
        while logs.len() < 3 {
            match tokio::time::timeout(Duration::from_secs(2), pushed.recv()).await {
                Ok(Some(Pushed::Log(data))) => logs.push(data),
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        assert_eq!(
            logs,
            [
                "\"Tool execution started\"",
                "\"Tool processing data\"",
                "\"Tool execution completed\""
            ],
            "{tool}"
        );
    }
    up.stop().await;
}

/// Pids of processes whose command line contains `marker`.
fn pids_with(marker: &str) -> Vec<u32> {
    let output = std::process::Command::new("pgrep")
        .args(["-f", marker])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_stdio_upstream_is_restarted_and_stopped_with_the_gateway() {
    let mut app = gateway().await;
    let binary = upstream_binary();
    // A page size no other test uses marks this child's command line.
    let marker = "page-size 4242";
    let body = json!({"name": "phoenix", "transport": {"type": "stdio", "command": binary.to_string_lossy(),
                      "args": ["--page-size", "4242", "stdio"]}});
    assert_eq!(app.post_json("/api/v1/servers", &body).await.status(), 201);
    refresh(&app, "phoenix").await;
    let first = pids_with(marker);
    assert_eq!(first.len(), 1, "one long-lived child: {first:?}");

    let status = std::process::Command::new("kill")
        .args(["-9", &first[0].to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let (client, _) = connect(&app.url("/mcp")).await;
    // The next calls notice the dead session and start a new child (after a backoff).
    let deadline = Instant::now() + Duration::from_secs(10);
    let result = loop {
        match client
            .peer()
            .call_tool(call("phoenix__echo", json!({"text": "again"})))
            .await
        {
            Ok(result) => break result,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("no restart: {error}"),
        }
    };
    assert_eq!(text_of(&result), "again");
    let second = pids_with(marker);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first, "a new child process");

    // Stopping the gateway stops its children: no orphans.
    app.stop().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids_with(marker).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        pids_with(marker),
        Vec::<u32>::new(),
        "the child ended with the gateway"
    );
}

/// Hostile and out-of-order requests over real HTTP: each gets a 4xx with the
/// JSON-RPC error the specification names (never a 5xx, never a hang), and the
/// session they aimed at keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_over_http_get_named_errors_and_break_nothing() {
    let app = gateway().await;
    let ping = |id: &str| format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);

    // Bodies: invalid UTF-8, nesting past any sane depth, 10 MB.
    let mut invalid_utf8 = br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    invalid_utf8.extend_from_slice(br#""}}"#);
    let nested = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":{}{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let ten_mb = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(10 * 1024 * 1024)
    );
    for (what, body, status, code) in [
        ("invalid UTF-8", invalid_utf8, 400, -32700),
        ("nested 100,000 deep", nested.into_bytes(), 400, -32700),
        ("10 MB", ten_mb.into_bytes(), 413, -32600),
    ] {
        let (got, message) = post_raw(&app, body, &[]).await;
        assert_eq!(
            (got, message["error"]["code"].as_i64()),
            (status, Some(code)),
            "{what}: {message}"
        );
    }

    // Ids of every type: strings and numbers are echoed; others are invalid.
    for (id, valid) in [
        (r#""text-id""#, true),
        ("0", true),
        ("-7", true),
        ("9007199254740993", true),
        ("true", false),
        (r#"{"a":1}"#, false),
        ("[1]", false),
    ] {
        let (status, message) = post_raw(&app, ping(id), &[]).await;
        assert!(status < 500, "id {id}: {status}");
        if valid {
            // A ping without a session: refused by the session rules, id echoed.
            let echoed = serde_json::from_str::<Value>(id).expect("id");
            assert_eq!(
                (status, &message["id"]),
                (400, &echoed),
                "id {id}: {message}"
            );
            assert_eq!(message["error"]["code"], -32600, "id {id}: {message}");
            assert!(
                message["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Session ID")),
                "id {id}: {message}"
            );
        } else {
            assert_eq!(message["error"]["code"], -32600, "id {id}: {message}");
        }
    }

    // Before `initialize`: a session-era request without a session is refused.
    let (status, message) = post_raw(
        &app,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        &[("mcp-protocol-version", "2025-06-18")],
    )
    .await;
    assert_eq!(
        (status, message["error"]["code"].as_i64()),
        (400, Some(-32600)),
        "tools/list before initialize: {message}"
    );

    // A real session (extra params in `initialize` are ignored), then requests aimed
    // at it with wrong ids and versions.
    let session =
        open_raw_session(&app, json!({"unexpected": {"extra": "params are ignored"}})).await;
    let good = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let unknown = uuid::Uuid::new_v4().to_string();
    for (what, headers, expected) in [
        (
            "an unknown session id",
            vec![
                ("mcp-session-id", unknown.as_str()),
                ("mcp-protocol-version", "2025-06-18"),
            ],
            (404, -32001),
        ),
        (
            "a session id that is not one",
            vec![
                ("mcp-session-id", "../../etc/passwd"),
                ("mcp-protocol-version", "2025-06-18"),
            ],
            (404, -32001),
        ),
        (
            "an unknown protocol version",
            vec![
                ("mcp-session-id", session.as_str()),
                ("mcp-protocol-version", "1999-01-01"),
            ],
            (400, -32600),
        ),
    ] {
        let (status, message) = post_raw(&app, ping("9"), &headers).await;
        assert_eq!(
            (status, message["error"]["code"].as_i64()),
            (expected.0, Some(expected.1)),
            "{what}: {message}"
        );
        assert_eq!(message["id"], 9, "{what}: the id is echoed");
    }
    // Extra fields in a request's params are ignored, and the session still works.
    let (status, message) = post_raw(
        &app,
        r#"{"jsonrpc":"2.0","id":10,"method":"tools/list","params":{"cursor":null,"surplus":[1,2,3]}}"#,
        &good,
    )
    .await;
    assert_eq!(status, 200, "{message}");
    assert!(message["result"]["tools"].is_array(), "{message}");
}
