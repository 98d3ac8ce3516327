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

    let created = register(
        &app,
        "guarded",
        json!({"type": "streamable-http", "url": upstream.url(), "oauth": oauth(&issuer, CLIENT_SECRET)}),
    )
    .await;
    assert_eq!(
        created.status(),
        201,
        "{}",
        created.text().await.unwrap_or_default()
    );
    let refreshed = app
        .client
        .post(app.url("/api/v1/servers/guarded/refresh"))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        refreshed.status(),
        200,
        "{}",
        refreshed.text().await.unwrap_or_default()
    );

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

    // Tokens that expire are renewed before they lapse, within the same upstream
    // session: issued-3 lives 2 s (renewed after 1 s), and a later call goes out with
    // a newer token without being refused first.
    issuer.set_token_lifetime(2);
    upstream.upstream().accept_issued_tokens_from(3);
    let result = client
        .call_tool(call("guarded__echo", json!({"text": "fresh"})))
        .await
        .expect("call with issued-3");
    assert_eq!(text_of(&result), "fresh");
    let refusals = upstream.upstream().bearer_refusals();
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let result = client
        .call_tool(call("guarded__echo", json!({"text": "renewed"})))
        .await
        .expect("call after renewal");
    assert_eq!(text_of(&result), "renewed");
    assert_eq!(
        upstream.upstream().bearer_refusals(),
        refusals,
        "renewed before refusal"
    );
    let last = upstream
        .authorizations_seen()
        .last()
        .cloned()
        .unwrap_or_default();
    let number: u64 = last
        .strip_prefix("Bearer issued-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    assert!(number >= 4, "a renewed token: {last}");
    issuer.set_token_lifetime(3600);

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

    // A GET → PATCH round trip with the mask keeps the secret.
    let mut transport = server["transport"].clone();
    transport["oauth"]["scopes"] = json!(["tools.call"]);
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
    assert_eq!(
        issuer
            .token_requests()
            .last()
            .and_then(|r| r.get("scope"))
            .map(String::as_str),
        Some("tools.call"),
        "new scopes, new token, same stored secret"
    );

    // Moving the token endpoint elsewhere with the mask is refused: the secret would
    // go to a new destination.
    transport["oauth"]["token_url"] = json!("https://elsewhere.test/token");
    let moved = app
        .patch_json("/api/v1/servers/guarded", &json!({"transport": transport}))
        .await;
    assert_eq!(
        problem_fields(moved).await,
        ["transport.oauth.client_secret"]
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
