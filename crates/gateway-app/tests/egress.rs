//! SSRF protection, end to end: upstream URLs pointing at cloud metadata services or
//! link-local networks are refused when registered or changed, an operator can confine
//! upstreams to networks and host names, and a host name that resolves to a refused
//! address is refused when the gateway connects (so DNS cannot get around the check).

use std::net::SocketAddr;

use gateway_test_support::{TestApp, TestBackend, problem_fields};
use serde_json::{Value, json};

fn http(url: &str) -> Value {
    json!({"type": "streamable-http", "url": url})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_link_local_urls_are_refused_in_every_spelling() {
    let app = TestApp::spawn(TestBackend::Sqlite).await.expect("app");
    for (url, field) in [
        ("http://169.254.169.254/latest/meta-data/", "transport.url"),
        ("http://[::ffff:169.254.169.254]/", "transport.url"),
        ("http://2852039166/", "transport.url"),
        ("http://[fd00:ec2::254]/", "transport.url"),
        ("http://100.100.100.200/", "transport.url"),
    ] {
        let answer = app
            .post_json(
                "/api/v1/servers",
                &json!({"name": "meta", "transport": http(url)}),
            )
            .await;
        assert_eq!(answer.status(), 422, "{url}");
        assert_eq!(problem_fields(answer).await, [field], "{url}");
    }
    let replica = app
        .post_json(
            "/api/v1/servers",
            &json!({"name": "meta", "transport": {"type": "streamable-http",
                "url": "http://127.0.0.1:9/mcp", "replicas": ["http://169.254.169.254/"]}}),
        )
        .await;
    assert_eq!(replica.status(), 422);
    assert_eq!(problem_fields(replica).await, ["transport.replicas.0"]);

    // A change cannot point an existing server there either.
    let created = app
        .post_json(
            "/api/v1/servers",
            &json!({"name": "ok", "transport": http("http://127.0.0.1:9/mcp")}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let moved = app
        .patch_json(
            "/api/v1/servers/ok",
            &json!({"transport": http("http://169.254.169.254/")}),
        )
        .await;
    assert_eq!(moved.status(), 422);
    assert_eq!(problem_fields(moved).await, ["transport.url"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_resolving_to_a_refused_address_is_refused_at_connect_time() {
    let upstream = gateway_test_upstream::serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("upstream");
    // Loopback refused: the test upstream stands for an internal address.
    let app = TestApp::spawn_with(TestBackend::Sqlite, |s| {
        s.upstreams.denied_networks.push("127.0.0.0/8".into());
        s.upstreams.denied_networks.push("::1/128".into());
    })
    .await
    .expect("app");
    let literal = app
        .post_json(
            "/api/v1/servers",
            &json!({"name": "direct", "transport": http(&upstream.url())}),
        )
        .await;
    assert_eq!(
        literal.status(),
        422,
        "an IP literal is judged when registered"
    );

    // A name is only judged once resolved: registration passes, connecting does not.
    let by_name = format!("http://localhost:{}/mcp", upstream.port());
    let created = app
        .post_json(
            "/api/v1/servers",
            &json!({"name": "rebound", "transport": http(&by_name)}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let refreshed = app
        .client
        .post(app.url("/api/v1/servers/rebound/refresh"))
        .send()
        .await
        .expect("sent");
    assert_eq!(refreshed.status(), 200);
    let health: Value = app
        .get("/api/v1/servers/rebound/health")
        .await
        .json()
        .await
        .expect("health");
    let error = health["recorded"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("no allowed address"), "{health}");
    assert_eq!(upstream.upstream().tool_calls(), 0);
    let catalog: Value = app
        .get("/api/v1/servers/rebound/catalog")
        .await
        .json()
        .await
        .expect("catalog");
    assert_eq!(
        catalog["tools"],
        json!([]),
        "nothing was fetched from the refused address"
    );
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_can_confine_upstreams_to_hosts_and_networks() {
    let app = TestApp::spawn_with(TestBackend::Sqlite, |s| {
        s.upstreams.allowed_hosts = vec!["*.corp.example".into()];
        s.upstreams.allowed_networks = vec!["10.0.0.0/8".into()];
    })
    .await
    .expect("app");
    for (url, expected) in [
        ("https://tools.corp.example/mcp", 201),
        ("https://evil.example/mcp", 422),
        ("http://10.1.2.3/mcp", 201),
        ("http://192.168.0.10/mcp", 422),
    ] {
        let name = format!("s{}", url.len());
        let answer = app
            .post_json(
                "/api/v1/servers",
                &json!({"name": name, "transport": http(url), "enabled": false}),
            )
            .await;
        assert_eq!(answer.status(), expected, "{url}");
    }
}
