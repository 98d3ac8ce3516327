//! The state store going away under load, for real: a fault proxy between the
//! gateway and the machine's PostgreSQL closes every connection and refuses new ones,
//! then lets them through again. The gateway must keep serving MCP from its snapshot,
//! answer REST with 503, report not ready, lose no audit event, and come back by
//! itself.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gateway_test_support::fault::FaultProxy;
use gateway_test_support::mcp::{call, connect, text_of};
use gateway_test_support::{TestApp, TestBackend, postgres_admin_url};
use serde_json::{Value, json};

/// `host:port` of a postgres:// URL.
fn address_of(url: &str) -> Option<(String, SocketAddr)> {
    let after = url.split_once("://")?.1;
    let authority = after.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let address = std::net::ToSocketAddrs::to_socket_addrs(host_port)
        .ok()?
        .next()?;
    Some((host_port.to_owned(), address))
}

async fn wait_for(app: &TestApp, path: &str, status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if app.get(path).await.status() == status {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never answered {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_served_through_and_recovered_without_a_restart() {
    let Some(admin) = postgres_admin_url() else {
        eprintln!("TEST_DATABASE_URL not set: outage test skipped");
        return;
    };
    let (host_port, target) = address_of(&admin).expect("a host:port in TEST_DATABASE_URL");
    let proxy = FaultProxy::start(target).await;
    let through = proxy.addr;
    let upstream = gateway_test_upstream::serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("upstream");
    let app = TestApp::spawn_with(TestBackend::Postgres, move |s| {
        s.database.url = s.database.url.replacen(&host_port, &through.to_string(), 1);
        s.database.acquire_timeout_secs = 2;
        s.database.connect_timeout_secs = 2;
    })
    .await
    .expect("postgres app");
    let body =
        json!({"name": "steady", "transport": {"type": "streamable-http", "url": upstream.url()}});
    app.register(&body, None).await;
    let refreshed = app
        .client
        .post(app.url("/api/v1/servers/steady/refresh"))
        .send()
        .await
        .expect("sent");
    assert_eq!(refreshed.status(), 200);
    let (client, _) = connect(&app.url("/mcp")).await;
    let echo = |text: &'static str| {
        client
            .peer()
            .call_tool(call("steady__echo", json!({"text": text})))
    };
    assert_eq!(text_of(&echo("before").await.expect("call")), "before");

    proxy.cut();
    wait_for(&app, "/ready", 503, Duration::from_secs(10)).await;
    assert_eq!(
        app.get("/health").await.status(),
        200,
        "alive, only not ready"
    );
    let write = app
        .post_json("/api/v1/servers", &json!({"name": "later", "transport": {"type": "streamable-http", "url": upstream.url()}}))
        .await;
    assert_eq!(write.status(), 503);
    assert_eq!(
        write
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    // MCP needs no database: the snapshot and the upstream session serve on.
    for _ in 0..5 {
        assert_eq!(
            text_of(&echo("during").await.expect("call during the outage")),
            "during"
        );
    }

    proxy.restore();
    wait_for(&app, "/ready", 200, Duration::from_secs(30)).await;
    let write = app
        .post_json("/api/v1/servers", &json!({"name": "later", "transport": {"type": "streamable-http", "url": upstream.url()}}))
        .await;
    assert_eq!(write.status(), 201, "writes work again, no restart");

    // The calls made while the database was away were audited all the same.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page: Value = app
            .get("/api/v1/audit?action=tools/call&limit=100")
            .await
            .json()
            .await
            .expect("audit page");
        let during = page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|e| e["target"] == "steady__echo")
                    .count()
            })
            .unwrap_or_default();
        if during >= 6 {
            break;
        }
        assert!(Instant::now() < deadline, "audit events lost: {page}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    upstream.stop().await;
}
