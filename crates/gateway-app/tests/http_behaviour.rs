//! Cross-cutting HTTP behaviour: problem+json for every error kind the framework
//! could produce, body limits, media types, request ids, probes and API docs.

use gateway_test_support::{TestApp, TestBackend, http_server_body, on_every_backend};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_every_backend!(
    probes_answer,
    data_survives_a_restart,
    catalog_and_tool_discovery,
    corrupt_rows_give_an_opaque_500
);

async fn problem_type(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    (status, response.json().await.expect("problem body"))
}

async fn sqlite_app() -> TestApp {
    TestApp::spawn(TestBackend::Sqlite)
        .await
        .expect("sqlite app")
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let app = TestApp::spawn_with(TestBackend::Sqlite, |s| s.http.max_body_bytes = 4096)
        .await
        .expect("app");
    let mut body = http_server_body("big");
    body["description"] = json!("x".repeat(5000));
    let (status, problem) = problem_type(app.post_json("/api/v1/servers", &body).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        problem["detail"].as_str().expect("detail").contains("4096"),
        "{problem}"
    );

    // Chunked bodies (no Content-Length) are cut off while streaming, too.
    let chunks =
        futures_util::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let response = app
        .client
        .post(app.url("/api/v1/servers"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        app.get("/api/v1/servers")
            .await
            .json::<Value>()
            .await
            .expect("list")["items"],
        json!([])
    );
}

#[tokio::test]
async fn malformed_and_non_json_bodies() {
    let app = sqlite_app().await;
    let post = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/api/v1/servers"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases = [
        (
            "{not json",
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed-body",
        ),
        (
            "",
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed-body",
        ),
        (
            "[1,2,3]",
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed-body",
        ),
        (
            "null",
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed-body",
        ),
        (
            "{\"name\":\"a\"} trailing",
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed-body",
        ),
        (
            "name=a",
            "application/x-www-form-urlencoded",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            "{}",
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
    ];
    for (body, content_type, status, slug) in cases {
        let (got, problem) = problem_type(post(body, content_type).await.expect("sent")).await;
        assert_eq!(got, status, "{body:?} as {content_type}: {problem}");
        assert_eq!(
            problem["type"],
            format!("tag:mcp-gateway,2026:problem:{slug}")
        );
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let response = app
        .client
        .post(app.url("/api/v1/servers"))
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "deep nesting is an error, not a crash"
    );
    let response = app
        .client
        .post(app.url("/api/v1/servers"))
        .header("content-type", "application/json")
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // The gateway is still healthy after all of that.
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let app = sqlite_app().await;
    let (status, problem) = problem_type(app.get("/api/v1/nothing-here").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("/api/v1/nothing-here")
    );

    let response = app
        .client
        .put(app.url("/api/v1/servers/x"))
        .send()
        .await
        .expect("sent");
    let allow = response.headers()["allow"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let (status, _) = problem_type(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    for method in ["GET", "PATCH", "DELETE"] {
        assert!(allow.contains(method), "{allow}");
    }
    let response = app
        .client
        .delete(app.url("/health"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET");
    let (status, _) = problem_type(app.get("/api/v1/servers/").await).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a trailing slash is another path"
    );
}

#[tokio::test]
async fn request_ids_are_honoured_or_generated() {
    let app = sqlite_app().await;
    let response = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let generated = app.get("/health").await.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let hostile = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "a b\tc")
        .send()
        .await
        .expect("sent");
    assert_ne!(
        hostile.headers()["x-request-id"],
        "a b\tc",
        "unsafe ids are replaced"
    );
    let long = "a".repeat(500);
    let response = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", long.as_str())
        .send()
        .await
        .expect("sent");
    let id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_ne!(id, long);
    let (_, problem) = problem_type(response).await;
    assert_eq!(
        problem["request_id"], id,
        "the problem body names the same request id"
    );
}

#[tokio::test]
async fn openapi_and_docs_are_served() {
    let app = sqlite_app().await;
    let spec: Value = app
        .get("/openapi.json")
        .await
        .json()
        .await
        .expect("OpenAPI JSON");
    assert!(spec["openapi"].as_str().expect("version").starts_with("3."));
    let paths = spec["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/servers",
        "/api/v1/servers/{server}",
        "/api/v1/servers/{server}/catalog",
        "/api/v1/tools",
        "/health",
        "/ready",
        "/",
    ] {
        assert!(paths.contains_key(path), "{path} documented");
    }
    assert!(paths["/api/v1/servers/{server}"]["patch"].is_object());
    assert!(spec["components"]["schemas"]["Problem"].is_object());
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.text()
            .await
            .expect("html")
            .to_lowercase()
            .contains("swagger")
    );
    // Both renderers read the one shared document.
    let initializer = app.get("/docs/swagger-initializer.js").await;
    assert_eq!(initializer.status(), StatusCode::OK);
    assert!(
        initializer
            .text()
            .await
            .expect("js")
            .contains("/openapi.json")
    );
    let redoc = app.get("/redoc").await;
    assert_eq!(redoc.status(), StatusCode::OK);
    assert!(redoc.text().await.expect("html").contains("/openapi.json"));
    let root: Value = app.get("/").await.json().await.expect("root");
    assert_eq!(root["name"], "mcp-gateway");
    assert_eq!(root["links"]["openapi"], "/openapi.json");
}

async fn probes_answer(app: TestApp) {
    assert_eq!(
        app.get("/health")
            .await
            .json::<Value>()
            .await
            .expect("json"),
        json!({"status": "ok"})
    );
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<Value>().await.expect("json"),
        json!({"status": "ready", "checks": {"database": "ok"}})
    );

    // A schema the binary does not recognise as current makes the gateway not ready:
    // 503 with the reason, so a load balancer stops sending traffic.
    app.execute_sql("DROP TABLE seaql_migrations").await;
    let not_ready = app.get("/ready").await;
    assert_eq!(not_ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = not_ready.json().await.expect("json");
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["checks"]["database"]
            .as_str()
            .expect("reason")
            .contains("pending"),
        "{body}"
    );
    assert_eq!(
        app.get("/health").await.status(),
        StatusCode::OK,
        "liveness is unaffected"
    );
}

async fn data_survives_a_restart(app: TestApp) {
    let created = app
        .post_json("/api/v1/servers", &http_server_body("durable"))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let before: Value = created.json().await.expect("json");
    let app = app.restart().await;
    let mut after: Value = app
        .get("/api/v1/servers/durable")
        .await
        .json()
        .await
        .expect("json");
    // Health is an observation (discovery tries the unreachable upstream), not registry data.
    let (mut before, mut after_spec) = (before, after.take());
    before["health"] = Value::Null;
    after_spec["health"] = Value::Null;
    assert_eq!(after_spec, before);
}

async fn catalog_and_tool_discovery(app: TestApp) {
    use gateway_domain::{Catalog, CatalogRepository, Descriptor, ServerId};

    let mut ids = Vec::new();
    for name in ["alpha", "beta"] {
        let server: Value = app
            .post_json("/api/v1/servers", &http_server_body(name))
            .await
            .json()
            .await
            .expect("json");
        ids.push(ServerId::from_uuid(
            server["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("uuid"),
        ));
    }
    let empty: Value = app
        .get("/api/v1/servers/alpha/catalog")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(empty["fetched_at"], Value::Null);
    assert_eq!(empty["tools"], json!([]));

    let tool = |name: &str, description: &str| {
        Descriptor::from_value(json!({"name": name, "description": description,
            "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}, "annotations": {"readOnlyHint": true}}))
        .expect("object")
    };
    let store = app.store().await;
    let now = chrono::Utc::now();
    let alpha_tools: Vec<Descriptor> = (0..30)
        .map(|i| tool(&format!("tool_{i:02}"), "Generic tool"))
        .collect();
    let alpha = Catalog::new(alpha_tools, vec![], vec![], vec![], now);
    store.replace(ids[0], &alpha).await.expect("alpha catalog");
    let prompt =
        Descriptor::from_value(json!({"name": "greet", "description": "Say hi"})).expect("object");
    let beta = Catalog::new(
        vec![tool("forecast", "Weather FORECAST for a city")],
        vec![],
        vec![],
        vec![prompt],
        now,
    );
    store.replace(ids[1], &beta).await.expect("beta catalog");

    let catalog: Value = app
        .get("/api/v1/servers/beta/catalog")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        catalog["tools"][0]["annotations"],
        json!({"readOnlyHint": true}),
        "descriptors are stored untouched"
    );
    assert_eq!(catalog["prompts"][0]["name"], "greet");
    assert_eq!(catalog["content_hash"], beta.content_hash);

    let hits: Value = app
        .get("/api/v1/tools?q=forecast")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(hits["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(hits["items"][0]["server"], "beta");
    assert_eq!(hits["items"][0]["tool"]["inputSchema"]["type"], "object");

    // All 31 tools, in (server, tool) order, over pages of 7.
    let mut seen = Vec::new();
    let mut path = "/api/v1/tools?limit=7".to_owned();
    loop {
        let page: Value = app.get(&path).await.json().await.expect("json");
        seen.extend(page["items"].as_array().expect("items").iter().map(|t| {
            format!(
                "{}/{}",
                t["server"].as_str().unwrap_or(""),
                t["name"].as_str().unwrap_or("")
            )
        }));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/tools?limit=7&cursor={cursor}"),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..30).map(|i| format!("alpha/tool_{i:02}")).collect();
    expected.push("beta/forecast".into());
    assert_eq!(seen, expected);
    let only_beta: Value = app
        .get("/api/v1/tools?server=beta")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(only_beta["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        app.get("/api/v1/tools?server=Bad_Name").await.status(),
        StatusCode::BAD_REQUEST
    );

    // Renaming a server renames it in the index; removing it removes its tools.
    assert_eq!(
        app.patch_json("/api/v1/servers/beta", &json!({"name": "gamma"}))
            .await
            .status(),
        StatusCode::OK
    );
    let renamed: Value = app
        .get("/api/v1/tools?q=forecast")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(renamed["items"][0]["server"], "gamma");
    assert_eq!(
        app.delete("/api/v1/servers/alpha").await.status(),
        StatusCode::NO_CONTENT
    );
    let remaining: Value = app.get("/api/v1/tools").await.json().await.expect("json");
    assert_eq!(remaining["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        store.get(ids[0]).await.expect("query"),
        None,
        "the catalog went with its server"
    );
    store.close().await;
}

/// A stored row the gateway cannot read is a 500 whose body hides the cause (it is
/// logged with the request id instead); the other servers keep working.
async fn corrupt_rows_give_an_opaque_500(app: TestApp) {
    for name in ["good", "broken"] {
        assert_eq!(
            app.post_json("/api/v1/servers", &http_server_body(name))
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    app.execute_sql("UPDATE upstream_server SET transport = '{\"type\":\"carrier-pigeon\"}' WHERE name = 'broken'")
        .await;
    let (status, problem) = problem_type(app.get("/api/v1/servers/broken").await).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(problem["type"], "tag:mcp-gateway,2026:problem:internal");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(
        !detail.contains("carrier-pigeon") && !detail.contains("upstream_server"),
        "no internals leak: {detail}"
    );
    assert_eq!(
        app.get("/api/v1/servers/good").await.status(),
        StatusCode::OK
    );
}

/// With the database gone, writes and reads answer 503 `unavailable` with
/// `Retry-After`, and `/ready` reports not ready; liveness stays up.
#[tokio::test]
async fn a_lost_database_is_a_503_not_a_crash() {
    let Some(app) = TestApp::spawn_with(TestBackend::Postgres, |s| {
        s.database.acquire_timeout_secs = 2
    })
    .await
    else {
        eprintln!("TEST_DATABASE_URL not set: database-outage test skipped");
        return;
    };
    let database = app
        .settings
        .database
        .url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    gateway_test_support::postgres_admin_sql(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .await;

    let response = app
        .post_json("/api/v1/servers", &http_server_body("lost"))
        .await;
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or("")),
        Some("5")
    );
    let (status, problem) = problem_type(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(problem["type"], "tag:mcp-gateway,2026:problem:unavailable");
    assert_eq!(
        app.get("/ready").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
}

/// Found by schemathesis: serde fills a struct from a JSON array, and an empty
/// `If-Match` was taken for a failed precondition. Both are malformed requests.
#[tokio::test]
async fn array_bodies_and_empty_preconditions_are_malformed_requests() {
    let app = sqlite_app().await;
    let (status, problem) =
        problem_type(app.post_json("/api/v1/servers", &json!([null, null])).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("object")),
        "{problem}"
    );
    app.register(&http_server_body("target"), None).await;
    let patched = app
        .client
        .patch(app.url("/api/v1/servers/target"))
        .header("content-type", "application/merge-patch+json")
        .body("[null, null]")
        .send()
        .await
        .expect("sent");
    assert_eq!(problem_type(patched).await.0, StatusCode::BAD_REQUEST);
    let empty_precondition = app
        .client
        .patch(app.url("/api/v1/servers/target"))
        .header("if-match", "")
        .json(&json!({"title": "T"}))
        .send()
        .await
        .expect("sent");
    let (status, problem) = problem_type(empty_precondition).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["errors"][0]["field"], "If-Match");
    // A list stays welcome where the endpoint takes one.
    let listed = app
        .post_json(
            "/api/v1/servers/import",
            &json!([{"name": "io.github.x/y", "description": "Y.", "version": "1.0.0"}]),
        )
        .await;
    assert_eq!(listed.status(), StatusCode::OK);
}

/// A body that trickles in (slowloris) is cut off at `http.body_timeout_secs` with
/// 408, on the REST API and on `/mcp`, instead of holding the connection for ever.
#[tokio::test]
async fn slow_bodies_time_out_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(TestBackend::Sqlite, |s| s.http.body_timeout_secs = 1)
        .await
        .expect("app");
    let address = app
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    for path in ["/api/v1/servers", "/mcp"] {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n{{\"na"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let started = std::time::Instant::now();
        let mut answer = vec![0u8; 4096];
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer))
                .await
                .expect("an answer, not a hang")
                .expect("read");
        let text = String::from_utf8_lossy(&answer[..read]);
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{path}"
        );
    }
}

async fn initialize(app: &TestApp) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "greedy", "version": "1"}}});
    app.client
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&body)
        .send()
        .await
        .expect("sent")
}

/// Session ids that are not this gateway's, damaged, of another endpoint, hostile
/// bytes or oversized are all "session not found" (404, JSON-RPC `-32001`, saying
/// why), on every method; none reaches rmcp or creates anything.
#[tokio::test]
async fn forged_damaged_and_misplaced_session_ids_are_not_found() {
    let app = TestApp::spawn(TestBackend::Sqlite).await.expect("app");
    let opened = initialize(&app).await;
    assert_eq!(opened.status(), StatusCode::OK);
    let id = opened.headers()["mcp-session-id"]
        .to_str()
        .expect("id")
        .to_owned();
    assert!(id.starts_with("v1."), "a sealed id: {id}");
    let mut damaged = id.clone().into_bytes();
    let middle = damaged.len() / 2;
    damaged[middle] = if damaged[middle] == b'A' { b'B' } else { b'A' };
    let damaged = String::from_utf8(damaged).expect("ascii");
    let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"});
    let cases: Vec<(&str, reqwest::header::HeaderValue, &str)> = vec![
        (
            "/mcp",
            "2b7a1c5e-6c53-4c1e-a0e8-5ad7f3c8d1e2".parse().expect("v"),
            "not one this gateway issued",
        ),
        (
            "/mcp",
            damaged.parse().expect("v"),
            "not one this gateway issued",
        ),
        (
            "/mcp",
            format!("v1.{}", "A".repeat(9000)).parse().expect("v"),
            "not one this gateway issued",
        ),
        (
            "/mcp",
            reqwest::header::HeaderValue::from_bytes(b"v1.\xff\xfe").expect("obs-text"),
            "not one this gateway issued",
        ),
        (
            "/mcp/servers/anything",
            id.parse().expect("v"),
            "issued to you here",
        ),
    ];
    for (path, value, why) in cases {
        for method in [
            reqwest::Method::POST,
            reqwest::Method::GET,
            reqwest::Method::DELETE,
        ] {
            let mut request = app
                .client
                .request(method.clone(), app.url(path))
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-11-25")
                .header("mcp-session-id", value.clone());
            if method == reqwest::Method::POST {
                request = request.json(&ping);
            }
            let answer = request.send().await.expect("sent");
            assert_eq!(
                answer.status(),
                StatusCode::NOT_FOUND,
                "{method} {path} {value:?}"
            );
            let error: Value = answer.json().await.expect("json-rpc error");
            assert_eq!(error["error"]["code"], -32001, "{error}");
            assert!(
                error["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(why)),
                "{method} {path}: {error}"
            );
        }
    }
    // The genuine id still works.
    let fine = app
        .client
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", &id)
        .json(&ping)
        .send()
        .await
        .expect("sent");
    assert_eq!(fine.status(), StatusCode::OK);
}

/// A greedy client cannot hold every session: past the per-caller cap a new session
/// is 429 with JSON-RPC `-32039`, past the total cap 503; ending a session, or
/// letting one go idle, frees its place (an idle one's id still works: it is rebuilt
/// from the sealed id; an ended one's does not).
#[tokio::test]
async fn sessions_are_capped_per_caller_and_in_total_and_idle_ones_end() {
    let app = TestApp::spawn_with(TestBackend::Sqlite, |s| {
        s.mcp.max_sessions_per_caller = 2;
        s.mcp.max_sessions = 3;
        s.mcp.session_idle_secs = 2;
    })
    .await
    .expect("app");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let opened = initialize(&app).await;
        assert_eq!(opened.status(), StatusCode::OK);
        ids.push(
            opened.headers()["mcp-session-id"]
                .to_str()
                .expect("id")
                .to_owned(),
        );
    }
    let refused = initialize(&app).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().get("retry-after").is_some());
    let error: Value = refused.json().await.expect("json-rpc error");
    assert_eq!(error["error"]["code"], -32039, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_sessions_per_caller"))
    );

    // Ending one frees its place.
    let ended = app
        .client
        .delete(app.url("/mcp"))
        .header("mcp-session-id", &ids[0])
        .send()
        .await
        .expect("sent");
    assert!(ended.status().is_success(), "{}", ended.status());
    let third = initialize(&app).await;
    assert_eq!(third.status(), StatusCode::OK);
    let third = third.headers()["mcp-session-id"]
        .to_str()
        .expect("id")
        .to_owned();

    // Idle sessions leave memory by themselves: their place is free...
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(
        initialize(&app).await.status(),
        StatusCode::OK,
        "an idle session's place is free"
    );
    // ...but the client's sealed id still works: the session is rebuilt from it.
    let ping = |id: String| {
        app.client
            .post(app.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
            .send()
    };
    let restored = ping(ids[1].clone()).await.expect("sent");
    assert_eq!(
        restored.status(),
        StatusCode::OK,
        "an idle session comes back"
    );
    // A rebuilt session counts like a new one: the caller now holds two, its cap.
    let over = ping(third).await.expect("sent");
    assert_eq!(
        over.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "restores obey the cap"
    );
    let error: Value = over.json().await.expect("json-rpc error");
    assert_eq!(error["error"]["code"], -32039, "{error}");
    // A session ended with DELETE does not.
    let ended = ping(ids[0].clone()).await.expect("sent");
    assert_eq!(ended.status(), StatusCode::NOT_FOUND);
    let error: Value = ended.json().await.expect("json-rpc error");
    assert_eq!(error["error"]["code"], -32001, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ended")),
        "{error}"
    );

    let full = TestApp::spawn_with(TestBackend::Sqlite, |s| {
        s.mcp.max_sessions = 1;
        s.mcp.max_sessions_per_caller = 5;
    })
    .await
    .expect("app");
    assert_eq!(initialize(&full).await.status(), StatusCode::OK);
    let refused = initialize(&full).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error: Value = refused.json().await.expect("json-rpc error");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("mcp.max_sessions")),
        "{error}"
    );
}

/// Open streams and requests in progress are capped per caller and in total: a
/// client cannot open stream after stream on its session (rmcp accepts any number)
/// or queue request after request. Over a cap: 429 or 503 with JSON-RPC `-32040`;
/// a stream that ends gives its place back.
#[tokio::test]
async fn open_streams_and_requests_are_capped_per_caller_and_in_total() {
    let app = TestApp::spawn_with(TestBackend::Sqlite, |s| {
        s.mcp.max_streams_per_caller = 3;
        s.mcp.max_streams = 4;
        s.mcp.sse_keep_alive_secs = 1;
        s.rate_limits.trust_forwarded_for = true;
    })
    .await
    .expect("app");
    let opened = initialize(&app).await;
    assert_eq!(opened.status(), StatusCode::OK);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let stream = |caller: &'static str| {
        app.client
            .get(app.url("/mcp"))
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .header("x-forwarded-for", caller)
            .send()
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        let open = stream("10.0.0.1").await.expect("sent");
        assert_eq!(open.status(), StatusCode::OK);
        held.push(open);
    }
    let refused = stream("10.0.0.1").await.expect("sent");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().get("retry-after").is_some());
    let error: Value = refused.json().await.expect("json-rpc error");
    assert_eq!(error["error"]["code"], -32040, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("mcp.max_streams_per_caller")),
        "{error}"
    );
    // A request is work in progress too: the caller has no place left for it.
    let ping = app
        .client
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("x-forwarded-for", "10.0.0.1")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(ping.status(), StatusCode::TOO_MANY_REQUESTS);

    // Another caller gets the last place in total, then the gateway is full.
    let other = stream("10.0.0.2").await.expect("sent");
    assert_eq!(other.status(), StatusCode::OK);
    let full = stream("10.0.0.3").await.expect("sent");
    assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error: Value = full.json().await.expect("json-rpc error");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("mcp.max_streams")),
        "{error}"
    );

    // Closing a stream gives its place back.
    drop(held.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let again = stream("10.0.0.1").await.expect("sent");
        if again.status() == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the closed stream's place is given back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
