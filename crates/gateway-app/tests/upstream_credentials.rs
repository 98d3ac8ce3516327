//! The gateway's own OAuth credentials for an upstream (client-credentials grant),
//! end to end: a stand-in authorization server on loopback issues opaque tokens, a
//! test upstream accepts only the tokens it is told to, and a real MCP client calls
//! through the gateway. Shows the token request, per-request tokens that outlive a
//! session's first token, recovery from a revoked token, masking, sealing at rest
//! and the refusals of bad registrations.

use gateway_test_support::mcp::{call, connect, mcp_error, text_of};
use gateway_test_support::oidc::{CLIENT_ID, CLIENT_SECRET, TestIssuer};
use gateway_test_support::{TestApp, TestBackend};
use gateway_test_upstream::serve_http;
use serde_json::{Value, json};

async fn gateway() -> TestApp {
    TestApp::spawn(TestBackend::Sqlite)
        .await
        .expect("sqlite app")
}

fn oauth(issuer: &TestIssuer, secret: &str) -> Value {
    json!({
        "token_url": issuer.token_url(),
        "client_id": CLIENT_ID,
        "client_secret": secret,
        "scopes": ["api://upstream/.default", "tools.call"],
        "audience": "https://upstream.test",
    })
}

async fn register(app: &TestApp, name: &str, transport: Value) -> reqwest::Response {
    app.post_json(
        "/api/v1/servers",
        &json!({"name": name, "transport": transport}),
    )
    .await
}

async fn problem_fields(response: reqwest::Response) -> Vec<String> {
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.expect("problem");
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_calls_with_its_own_token_and_renews_it() {
    let issuer = TestIssuer::start().await;
    let upstream = serve_http("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("upstream");
    upstream.upstream().accept_issued_tokens_from(1);
    let app = gateway().await;

    app.register(
        &json!({"name": "guarded", "transport": {"type": "streamable-http", "url": upstream.url(), "oauth": oauth(&issuer, CLIENT_SECRET)}}),
        None,
    )
    .await;

    let (client, _) = connect(&app.url("/mcp")).await;
    let result = client
        .call_tool(call("guarded__echo", json!({"text": "with our token"})))
        .await
        .expect("call");
    assert_eq!(text_of(&result), "with our token");

    // One token request, as configured: Basic client authentication, the grant, the
    // scopes and the audience.
    let requests = issuer.token_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(
        request.get("client_id").map(String::as_str),
        Some(CLIENT_ID)
    );
    assert_eq!(
        request.get("grant_type").map(String::as_str),
        Some("client_credentials")
    );
    assert_eq!(
        request.get("scope").map(String::as_str),
        Some("api://upstream/.default tools.call")
    );
    assert_eq!(
        request.get("audience").map(String::as_str),
        Some("https://upstream.test")
    );
    assert!(
        !request.contains_key("client_secret"),
        "the secret goes in HTTP Basic, not the form"
    );
    let seen = upstream.authorizations_seen();
    assert!(
        !seen.is_empty() && seen.iter().all(|a| a == "Bearer issued-1"),
        "{seen:?}"
    );

    // The upstream revokes the token: the next request is refused once, the gateway
    // fetches a new token and sends the request again, and the client never notices.
    upstream.upstream().accept_issued_tokens_from(2);
    let result = client
        .call_tool(call("guarded__echo", json!({"text": "after revocation"})))
        .await
        .expect("call after revocation");
    assert_eq!(text_of(&result), "after revocation");
    assert_eq!(issuer.token_requests().len(), 2);
    assert_eq!(
        upstream.authorizations_seen().last().map(String::as_str),
        Some("Bearer issued-2")
    );
    assert_eq!(upstream.upstream().bearer_refusals(), 1);

    // The secret is masked on output and sealed at rest.
    let server: Value = app
        .get("/api/v1/servers/guarded")
        .await
        .json()
        .await
        .expect("server");
    assert_eq!(server["transport"]["oauth"]["client_secret"], "********");
    assert_eq!(server["transport"]["oauth"]["client_id"], CLIENT_ID);
    let stored = app
        .query_texts("SELECT CAST(transport AS TEXT) FROM upstream_server")
        .await
        .join("\n");
    assert!(stored.contains("sealed:v1:"), "{stored}");
    assert!(
        !stored.contains(CLIENT_SECRET),
        "the secret is stored sealed"
    );

    // A GET → PATCH round trip with the mask keeps the secret while the token request
    // stays the same (here the upstream's path changes, same origin).
    let mut transport = server["transport"].clone();
    let url = transport["url"].as_str().unwrap_or_default().to_owned();
    transport["url"] = json!(format!("{url}?edited"));
    let patched = app
        .patch_json("/api/v1/servers/guarded", &json!({"transport": transport}))
        .await;
    assert_eq!(
        patched.status(),
        200,
        "{}",
        patched.text().await.unwrap_or_default()
    );
    let result = client
        .call_tool(call("guarded__echo", json!({"text": "after edit"})))
        .await
        .expect("call after edit");
    assert_eq!(text_of(&result), "after edit");

    // With the mask, nothing of the token request may change: not the scopes (they
    // would buy tokens for other APIs), not the token endpoint.
    for (field, value) in [
        ("scopes", json!(["other.api"])),
        ("audience", json!("https://other.test")),
        ("resource", json!("https://other.test/mcp")),
        ("token_url", json!("https://elsewhere.test/token")),
    ] {
        let mut moved = transport.clone();
        moved["oauth"][field] = value;
        let refused = app
            .patch_json("/api/v1/servers/guarded", &json!({"transport": moved}))
            .await;
        assert_eq!(
            problem_fields(refused).await,
            ["transport.oauth.client_secret"],
            "{field}"
        );
    }
    // With the real secret the scopes change, and the next token is asked for them.
    let mut rescoped = transport.clone();
    rescoped["oauth"]["scopes"] = json!(["tools.call"]);
    rescoped["oauth"]["client_secret"] = json!(CLIENT_SECRET);
    let patched = app
        .patch_json("/api/v1/servers/guarded", &json!({"transport": rescoped}))
        .await;
    assert_eq!(
        patched.status(),
        200,
        "{}",
        patched.text().await.unwrap_or_default()
    );
    let result = client
        .call_tool(call("guarded__echo", json!({"text": "rescoped"})))
        .await
        .expect("call after rescoping");
    assert_eq!(text_of(&result), "rescoped");
    assert_eq!(
        issuer
            .token_requests()
            .last()
            .and_then(|r| r.get("scope"))
            .map(String::as_str),
        Some("tools.call")
    );

    let _ = client.cancel().await;
    upstream.stop().await;
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_secret_fails_the_call_with_the_reason_and_without_the_secret() {
    let issuer = TestIssuer::start().await;
    let upstream = serve_http("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("upstream");
    upstream.upstream().accept_issued_tokens_from(1);
    let app = gateway().await;
    let wrong = "wrong-secret-value";
    let created = register(
        &app,
        "locked",
        json!({"type": "streamable-http", "url": upstream.url(), "oauth": oauth(&issuer, wrong)}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let refreshed = app
        .client
        .post(app.url("/api/v1/servers/locked/refresh"))
        .send()
        .await
        .expect("sent");
    assert_eq!(refreshed.status(), 200);
    let body = app
        .get("/api/v1/servers/locked")
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(body.contains("invalid_client"), "{body}");
    assert!(!body.contains(wrong), "{body}");
    assert!(upstream.authorizations_seen().is_empty());

    // The tool is not listed; calling its name gets a JSON-RPC error, never a token.
    let (client, _) = connect(&app.url("/mcp")).await;
    let error = mcp_error(
        client
            .call_tool(call("locked__echo", json!({"text": "x"})))
            .await
            .expect_err("no token, no call"),
    );
    assert!(!error.message.contains(wrong), "{}", error.message);
    let _ = client.cancel().await;
    upstream.stop().await;
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_oauth_registrations_are_refused_field_by_field() {
    let issuer = TestIssuer::start().await;
    let app = gateway().await;
    let url = "http://127.0.0.1:9/mcp";
    let cases = [
        (
            json!({"type": "streamable-http", "url": url, "headers": {"Authorization": "Bearer static"}, "oauth": oauth(&issuer, "s")}),
            vec!["transport.oauth"],
        ),
        (
            json!({"type": "streamable-http", "url": url, "oauth": {"token_url": "http://issuer.example.com/token", "client_id": "c", "client_secret": "s"}}),
            vec!["transport.oauth.token_url"],
        ),
        (
            json!({"type": "streamable-http", "url": "http://upstream.example.com/mcp", "oauth": oauth(&issuer, "s")}),
            vec!["transport.oauth"],
        ),
        (
            json!({"type": "streamable-http", "url": url, "oauth": {"token_url": "https://issuer.example.com/token", "client_id": " ", "client_secret": "********", "scopes": ["a b"]}}),
            vec!["transport.oauth.client_id", "transport.oauth.scopes.0"],
        ),
        (
            json!({"type": "streamable-http", "url": url, "oauth": {"token_url": "https://issuer.example.com/token", "client_id": "c", "client_secret": "********"}}),
            vec!["transport.oauth.client_secret"],
        ),
    ];
    for (transport, expected) in cases {
        let response = register(&app, "bad", transport.clone()).await;
        assert_eq!(problem_fields(response).await, expected, "{transport}");
    }
    // Shape errors: unknown or missing fields, and oauth on a stdio transport.
    for transport in [
        json!({"type": "streamable-http", "url": url, "oauth": {"token_url": "https://i/token", "client_id": "c"}}),
        json!({"type": "streamable-http", "url": url, "oauth": {"token_url": "https://i/token", "client_id": "c", "client_secret": "s", "grant": "x"}}),
        json!({"type": "stdio", "command": "true", "oauth": oauth(&issuer, "s")}),
        json!({"type": "streamable-http", "url": url, "oauth": "client_secret"}),
    ] {
        let response = register(&app, "bad", transport.clone()).await;
        assert_eq!(response.status(), 400, "{transport}");
        let body = response.text().await.unwrap_or_default();
        assert!(
            body.contains("oauth") || body.contains("client_secret"),
            "{body}"
        );
    }
    issuer.stop().await;
}

/// Registers `name` on `upstream` with credentials asking for `scope` (each scope is
/// its own cached token) and fetches its catalog.
async fn register_scoped(app: &TestApp, issuer: &TestIssuer, name: &str, url: &str, scope: &str) {
    let mut oauth = oauth(issuer, CLIENT_SECRET);
    oauth["scopes"] = json!([scope]);
    let body =
        json!({"name": name, "transport": {"type": "streamable-http", "url": url, "oauth": oauth}});
    app.register(&body, None).await;
}

fn token_number(authorization: Option<&String>) -> u64 {
    authorization
        .and_then(|a| a.strip_prefix("Bearer issued-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_renewed_before_they_expire() {
    let issuer = TestIssuer::start().await;
    issuer.set_token_lifetime(2); // renewed after 1 s
    let upstream = serve_http("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("upstream");
    upstream.upstream().accept_issued_tokens_from(1);
    let app = gateway().await;
    register_scoped(&app, &issuer, "short", &upstream.url(), "short.lived").await;
    let (client, _) = connect(&app.url("/mcp")).await;
    let result = client
        .call_tool(call("short__echo", json!({"text": "first"})))
        .await
        .expect("first call");
    assert_eq!(text_of(&result), "first");
    let first = token_number(upstream.authorizations_seen().last());
    tokio::time::sleep(std::time::Duration::from_millis(1_300)).await;
    let result = client
        .call_tool(call("short__echo", json!({"text": "second"})))
        .await
        .expect("second call");
    assert_eq!(text_of(&result), "second");
    // Every token is still accepted, so a newer one on the wire means it was renewed
    // ahead of its expiry, not replaced after a refusal.
    let second = token_number(upstream.authorizations_seen().last());
    assert!(second > first, "renewed: {first} then {second}");
    assert_eq!(upstream.upstream().bearer_refusals(), 0);
    let _ = client.cancel().await;
    upstream.stop().await;
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusing_every_token_does_not_hammer_the_issuer() {
    let issuer = TestIssuer::start().await;
    let upstream = serve_http("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("upstream");
    upstream.upstream().accept_issued_tokens_from(1);
    let app = gateway().await;
    register_scoped(&app, &issuer, "stubborn", &upstream.url(), "stubborn").await;
    let (client, _) = connect(&app.url("/mcp")).await;
    client
        .call_tool(call("stubborn__echo", json!({"text": "ok"})))
        .await
        .expect("accepted at first");
    let before = issuer.token_requests().len();
    upstream.upstream().accept_issued_tokens_from(1_000);
    for _ in 0..10 {
        let error = client
            .call_tool(call("stubborn__echo", json!({"text": "refused"})))
            .await
            .expect_err("refused by the upstream");
        assert!(!error.to_string().contains(CLIENT_SECRET));
    }
    let fetched = issuer.token_requests().len() - before;
    assert!(
        fetched <= 2,
        "{fetched} token requests for 10 refused calls"
    );
    let _ = client.cancel().await;
    upstream.stop().await;
    issuer.stop().await;
}
