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

/// An upstream that answers with a redirect to another origin does not get the
/// gateway to carry its static credentials there: the redirect is not followed, and
/// the call fails with a JSON-RPC error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_origin_is_not_followed_with_the_credentials() {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // The origin the redirect points at: counts what reaches it.
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let elsewhere_port = elsewhere.local_addr().expect("address").port();
    let collector = HttpServer::new(move || {
        let counter = counter.clone();
        App::new().default_service(web::to(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { HttpResponse::Ok().finish() }
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(elsewhere)
    .expect("listen")
    .run();
    let collector_handle = collector.handle();
    tokio::spawn(collector);

    // The registered upstream: every request is redirected to `localhost` (another
    // origin than 127.0.0.1) on the collector's port.
    let target = format!("http://localhost:{elsewhere_port}/mcp");
    let redirector_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let redirector_port = redirector_listener.local_addr().expect("address").port();
    let redirector = HttpServer::new(move || {
        let target = target.clone();
        App::new().default_service(web::to(move |_: HttpRequest| {
            let target = target.clone();
            async move {
                HttpResponse::TemporaryRedirect()
                    .insert_header(("location", target))
                    .finish()
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(redirector_listener)
    .expect("listen")
    .run();
    let redirector_handle = redirector.handle();
    tokio::spawn(redirector);

    let app = TestApp::spawn(TestBackend::Sqlite).await.expect("app");
    let body = json!({"name": "redirecting", "transport": {
        "type": "streamable-http",
        "url": format!("http://127.0.0.1:{redirector_port}/mcp"),
        "headers": {"Authorization": "Bearer static-secret"}}});
    app.register(&body, None).await;
    let refreshed = app
        .client
        .post(app.url("/api/v1/servers/redirecting/refresh"))
        .send()
        .await
        .expect("sent");
    // A refresh that cannot reach the upstream still answers with the last known
    // catalog; the failure is in the health.
    assert_eq!(refreshed.status(), 200);
    let health: Value = app
        .get("/api/v1/servers/redirecting/health")
        .await
        .json()
        .await
        .expect("health");
    assert_ne!(health["state"], "healthy", "{health}");
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "nothing reached the other origin"
    );
    redirector_handle.stop(false).await;
    collector_handle.stop(false).await;
}
