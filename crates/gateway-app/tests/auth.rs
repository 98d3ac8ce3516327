//! `/mcp` as an OAuth 2.1 protected resource and the protected admin API, end to end:
//! the real gateway, a stand-in OIDC issuer on loopback (discovery and JWKS over
//! HTTP), tokens signed with test keys, and a real MCP client.

use std::net::SocketAddr;

use gateway_app::config::{AuthProvider, Settings};
use gateway_test_support::mcp::{call, connect_with_token, text_of};
use gateway_test_support::oidc::TestIssuer;
use gateway_test_support::{TestApp, TestBackend, http_server_body};
use gateway_test_upstream::serve_http;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const AUDIENCE: &str = "https://gateway.test/mcp";
const ADMIN_KEY: &str = "admin-key-for-tests-only";

async fn gateway(issuer: &TestIssuer, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let issuer_url = issuer.url.clone();
    TestApp::spawn_with(TestBackend::Sqlite, move |s| {
        s.auth.provider = AuthProvider::Oidc;
        s.auth.issuer = Some(issuer_url);
        s.auth.audiences = vec![AUDIENCE.to_owned()];
        s.auth.public_url = Some("https://gateway.test".to_owned());
        s.auth.scopes_supported = vec!["mcp.call".to_owned(), "mcp.read".to_owned()];
        s.auth.admin_api_key_sha256 = vec![format!("{:x}", Sha256::digest(ADMIN_KEY))];
        adjust(s);
    })
    .await
    .expect("sqlite app")
}

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn post_mcp(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let mut request = app
        .client
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("sent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_token_is_sent_to_the_authorization_server() {
    let issuer = TestIssuer::start().await;
    let app = gateway(&issuer, |_| {}).await;

    let response = post_mcp(&app, None).await;
    assert_eq!(response.status(), 401);
    let header = challenge(&response);
    assert!(
        header.starts_with("Bearer resource_metadata=\"https://gateway.test/.well-known/oauth-protected-resource/mcp\""),
        "{header}"
    );
    assert!(header.contains("scope=\"mcp.call mcp.read\""), "{header}");
    assert!(
        !header.contains("error="),
        "no error for a missing token: {header}"
    );

    // Follow the chain as an MCP client does: the metadata names the issuer, whose
    // discovery document is where to get a token.
    let metadata: Value = app
        .get("/.well-known/oauth-protected-resource/mcp")
        .await
        .json()
        .await
        .expect("metadata");
    assert_eq!(metadata["resource"], "https://gateway.test/mcp");
    assert_eq!(metadata["authorization_servers"], json!([issuer.url]));
    assert_eq!(metadata["bearer_methods_supported"], json!(["header"]));
    assert_eq!(
        metadata["scopes_supported"],
        json!(["mcp.call", "mcp.read"])
    );
    let discovery: Value = app
        .client
        .get(format!(
            "{}/.well-known/openid-configuration",
            metadata["authorization_servers"][0]
                .as_str()
                .expect("issuer")
        ))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert!(discovery["authorization_endpoint"].is_string());
    let root: Value = app
        .get("/.well-known/oauth-protected-resource")
        .await
        .json()
        .await
        .expect("root metadata");
    assert_eq!(root["resource"], "https://gateway.test");
    let per_server: Value = app
        .get("/.well-known/oauth-protected-resource/mcp/servers/github")
        .await
        .json()
        .await
        .expect("per-server metadata");
    assert_eq!(
        per_server["resource"],
        "https://gateway.test/mcp/servers/github"
    );
    assert_eq!(
        app.get("/.well-known/oauth-protected-resource/api/v1")
            .await
            .status(),
        404
    );
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_with_the_reason_and_good_ones_reach_the_tools() {
    let issuer = TestIssuer::start().await;
    let upstream = serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("upstream");
    let app = gateway(&issuer, |_| {}).await;
    let admin = issuer.token(AUDIENCE, &["admin"]);
    let body = json!({"name": "tools", "transport": {"type": "streamable-http", "url": upstream.url(),
        "headers": {"Authorization": "Bearer upstream-credential"}}});
    let created = app
        .client
        .post(app.url("/api/v1/servers"))
        .bearer_auth(&admin)
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), 201);
    let refreshed = app
        .client
        .post(app.url("/api/v1/servers/tools/refresh"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("sent");
    assert_eq!(refreshed.status(), 200);

    let mut expired = issuer.claims(AUDIENCE, &[]);
    expired["exp"] = json!(1_000_000_000);
    let mut foreign = issuer.claims("api://another-api", &[]);
    foreign["aud"] = json!("api://another-api");
    for (name, token, expected) in [
        ("expired", issuer.sign(&expired), "the token has expired"),
        (
            "another audience",
            issuer.sign(&foreign),
            "another audience",
        ),
        ("garbage", "not-a-token".to_owned(), "malformed"),
    ] {
        let response = post_mcp(&app, Some(&token)).await;
        assert_eq!(response.status(), 401, "{name}");
        let header = challenge(&response);
        assert!(header.contains("error=\""), "{name}: {header}");
        assert!(header.contains(expected), "{name}: {header}");
        let body: Value = response.json().await.expect("oauth error body");
        assert!(body["error"].is_string(), "{name}: {body}");
    }
    let response = app
        .client
        .post(app.url("/mcp"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 401);

    // A valid token whose role a rule allows: a real MCP client lists and calls the
    // upstream's tools.
    admin_post(
        &app,
        &issuer,
        "/api/v1/policies",
        &json!({"role": "reader", "actions": ["list", "call"], "patterns": ["tools__*"]}),
    )
    .await;
    let user = issuer.token(AUDIENCE, &["reader"]);
    let (client, _) = connect_with_token(&app.url("/mcp"), Some(&user))
        .await
        .expect("session");
    let tools = client.peer().list_all_tools().await.expect("tools");
    assert!(tools.iter().any(|t| t.name == "tools__echo"));
    let result = client
        .peer()
        .call_tool(call("tools__echo", json!({"text": "authorized"})))
        .await
        .expect("call");
    assert_eq!(text_of(&result), "authorized");
    // The upstream saw the gateway's own credential for it, never the client's token.
    let seen = upstream.authorizations_seen();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|value| value == "Bearer upstream-credential"),
        "{seen:?}"
    );
    assert!(
        connect_with_token(&app.url("/mcp"), None).await.is_err(),
        "the SDK's client gets no session without a token"
    );
    upstream.stop().await;
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_required_scope_is_403_insufficient_scope() {
    let issuer = TestIssuer::start().await;
    let app = gateway(&issuer, |s| {
        s.auth.required_scopes = vec!["mcp.admin".to_owned()];
    })
    .await;
    let response = post_mcp(&app, Some(&issuer.token(AUDIENCE, &[]))).await;
    assert_eq!(response.status(), 403);
    let header = challenge(&response);
    assert!(header.contains("error=\"insufficient_scope\""), "{header}");
    assert!(header.contains("scope=\"mcp.admin\""), "{header}");
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_writes_need_an_admin_role_or_key_and_reads_are_public_by_default() {
    let issuer = TestIssuer::start().await;
    let app = gateway(&issuer, |s| s.auth.protect_reads = false).await;
    let body = http_server_body("guarded");
    let post = |token: Option<String>, key: Option<&'static str>| {
        let mut request = app.client.post(app.url("/api/v1/servers")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send()
    };
    let anonymous = post(None, None).await.expect("sent");
    assert_eq!(anonymous.status(), 401);
    // A percent-encoded path reaches the same route, so it meets the same gate.
    for path in [
        "/%61pi/v1/servers",
        "/api/v1/%73ervers",
        "/%61pi/v1/policies",
    ] {
        let sneaky = app
            .client
            .post(app.url(path))
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(sneaky.status(), 401, "{path}");
    }
    assert!(challenge(&anonymous).starts_with("Bearer resource_metadata="));
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );
    let reader = post(Some(issuer.token(AUDIENCE, &["reader"])), None)
        .await
        .expect("sent");
    assert_eq!(reader.status(), 403);
    let problem: Value = reader.json().await.expect("problem");
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("forbidden")),
        "{problem}"
    );
    let wrong_key = post(None, Some("guess")).await.expect("sent");
    assert_eq!(wrong_key.status(), 401);
    let by_key = post(None, Some(ADMIN_KEY)).await.expect("sent");
    assert_eq!(by_key.status(), 201);
    let by_role = app
        .client
        .delete(app.url("/api/v1/servers/guarded"))
        .bearer_auth(issuer.token(AUDIENCE, &["admin"]))
        .send()
        .await
        .expect("sent");
    assert_eq!(by_role.status(), 204);
    // With protect_reads = false, reads and probes are open.
    for path in [
        "/api/v1/servers",
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    issuer.stop().await;

    // By default (protect_reads = true) reading the registry needs a token too.
    let issuer = TestIssuer::start().await;
    let locked = gateway(&issuer, |_| {}).await;
    for path in ["/api/v1/servers", "/metrics"] {
        assert_eq!(locked.get(path).await.status(), 401, "{path}");
    }
    let reader = locked
        .client
        .get(locked.url("/api/v1/servers"))
        .bearer_auth(issuer.token(AUDIENCE, &["reader"]))
        .send()
        .await
        .expect("sent");
    assert_eq!(reader.status(), 200);
    assert_eq!(locked.get("/health").await.status(), 200);
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_the_metadata_does_not_exist() {
    let app = TestApp::spawn(TestBackend::Sqlite).await.expect("app");
    assert_eq!(
        app.get("/.well-known/oauth-protected-resource/mcp")
            .await
            .status(),
        404
    );
    assert_eq!(post_mcp(&app, None).await.status(), 200);
}

async fn admin_post(app: &TestApp, issuer: &TestIssuer, path: &str, body: &Value) -> Value {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(issuer.token(AUDIENCE, &["admin"]))
        .json(body)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

async fn names_for(app: &TestApp, token: &str) -> Vec<String> {
    let (client, _) = connect_with_token(&app.url("/mcp"), Some(token))
        .await
        .expect("session");
    let mut names: Vec<String> = client
        .peer()
        .list_all_tools()
        .await
        .expect("tools")
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_see_and_call_only_what_their_rules_allow() {
    let issuer = TestIssuer::start().await;
    let (docs, ops) = (
        serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("docs"),
        serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("ops"),
    );
    let app = gateway(&issuer, |_| {}).await;
    for (name, url, tenant) in [
        ("docs", docs.url(), None),
        ("ops", ops.url(), Some("tenant-2")),
    ] {
        let mut body = json!({"name": name, "transport": {"type": "streamable-http", "url": url}});
        if let Some(tenant) = tenant {
            body["tenant"] = json!(tenant);
        }
        admin_post(&app, &issuer, "/api/v1/servers", &body).await;
        admin_post(
            &app,
            &issuer,
            &format!("/api/v1/servers/{name}/refresh"),
            &json!({}),
        )
        .await;
    }
    // Default deny: a valid token without any rule sees nothing.
    let nobody = issuer.token(AUDIENCE, &["reader"]);
    assert!(names_for(&app, &nobody).await.is_empty());

    let rule = admin_post(
        &app,
        &issuer,
        "/api/v1/policies",
        &json!({"role": "reader", "actions": ["list", "call"], "patterns": ["docs__e*", "ops__*"],
                "description": "docs tools starting with e"}),
    )
    .await;
    admin_post(
        &app,
        &issuer,
        "/api/v1/policies",
        &json!({"role": "auditor", "actions": ["list"], "patterns": ["*__add"]}),
    )
    .await;
    let reader = issuer.token(AUDIENCE, &["reader"]);
    let visible = names_for(&app, &reader).await;
    assert!(!visible.is_empty(), "rules apply without a restart");
    assert!(
        visible.iter().all(|n| n.starts_with("docs__e")),
        "{visible:?}"
    );
    assert!(
        !visible.iter().any(|n| n.starts_with("ops__")),
        "another tenant's server stays invisible: {visible:?}"
    );
    let auditor = names_for(&app, &issuer.token(AUDIENCE, &["auditor"])).await;
    assert_eq!(
        auditor,
        ["docs__add"],
        "the tenant-2 server's add is not shared"
    );
    let admin = names_for(&app, &issuer.token(AUDIENCE, &["admin"])).await;
    assert!(admin.contains(&"ops__add".to_owned()) && admin.contains(&"docs__add".to_owned()));

    // A refused call reads exactly like a call to a tool that does not exist.
    let (client, _) = connect_with_token(&app.url("/mcp"), Some(&reader))
        .await
        .expect("session");
    let echo = client
        .peer()
        .call_tool(call("docs__echo", json!({"text": "allowed"})))
        .await
        .expect("allowed");
    assert_eq!(text_of(&echo), "allowed");
    let refused = match client
        .peer()
        .call_tool(call("docs__add", json!({"a": 1, "b": 2})))
        .await
    {
        Err(rmcp::ServiceError::McpError(error)) => error,
        other => panic!("refused: {other:?}"),
    };
    let missing = match client
        .peer()
        .call_tool(call("docs__nothing", json!({})))
        .await
    {
        Err(rmcp::ServiceError::McpError(error)) => error,
        other => panic!("missing: {other:?}"),
    };
    assert_eq!(refused.code, missing.code);
    assert_eq!(
        refused.message.replace("docs__add", "X"),
        missing.message.replace("docs__nothing", "X")
    );

    // Roles list the rules; removing a rule takes the access away.
    let roles: Value = app
        .client
        .get(app.url("/api/v1/roles"))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("roles");
    let reader_role = roles
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["role"] == "reader")
        .expect("reader role");
    assert_eq!(
        reader_role["policies"][0]["patterns"],
        json!(["docs__e*", "ops__*"])
    );
    assert!(
        roles
            .as_array()
            .expect("roles")
            .iter()
            .any(|r| r["role"] == "admin" && r["admin"] == true)
    );
    let removed = app
        .client
        .delete(app.url(&format!(
            "/api/v1/policies/{}",
            rule["id"].as_str().expect("id")
        )))
        .bearer_auth(issuer.token(AUDIENCE, &["admin"]))
        .send()
        .await
        .expect("sent");
    assert_eq!(removed.status(), 204);
    assert!(names_for(&app, &reader).await.is_empty());
    docs.stop().await;
    ops.stop().await;
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_validated_and_only_admins_change_them() {
    let issuer = TestIssuer::start().await;
    let app = gateway(&issuer, |_| {}).await;
    let bad = app
        .client
        .post(app.url("/api/v1/policies"))
        .bearer_auth(issuer.token(AUDIENCE, &["admin"]))
        .json(&json!({"role": "has space", "actions": ["fly"], "patterns": []}))
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status(), 422);
    let fields = gateway_test_support::problem_fields(bad).await;
    for field in ["role", "actions.0", "patterns"] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }
    let by_reader = app
        .client
        .post(app.url("/api/v1/policies"))
        .bearer_auth(issuer.token(AUDIENCE, &["reader"]))
        .json(&json!({"role": "reader", "actions": ["list"], "patterns": ["*"]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(by_reader.status(), 403);
    let unknown = app
        .client
        .delete(app.url("/api/v1/policies/00000000-0000-0000-0000-000000000000"))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .expect("sent");
    assert_eq!(unknown.status(), 404);
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_from_the_configuration_file_apply_and_are_read_only() {
    let issuer = TestIssuer::start().await;
    let docs = serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("docs");
    let app = gateway(&issuer, |s| {
        s.auth.rules = vec![gateway_app::config::AccessRuleConfig {
            role: "reader".into(),
            actions: vec!["list".into(), "call".into()],
            patterns: vec!["docs__echo".into()],
            description: Some("from the file".into()),
        }];
    })
    .await;
    let body = json!({"name": "docs", "transport": {"type": "streamable-http", "url": docs.url()}});
    admin_post(&app, &issuer, "/api/v1/servers", &body).await;
    admin_post(&app, &issuer, "/api/v1/servers/docs/refresh", &json!({})).await;

    let reader = issuer.token(AUDIENCE, &["reader"]);
    assert_eq!(names_for(&app, &reader).await, ["docs__echo"]);
    assert!(
        names_for(&app, &issuer.token(AUDIENCE, &["other"]))
            .await
            .is_empty()
    );

    let policies: Value = app
        .client
        .get(app.url("/api/v1/policies"))
        .bearer_auth(issuer.token(AUDIENCE, &["admin"]))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("policies");
    let configured = &policies[0];
    assert_eq!(configured["source"], "config", "{policies}");
    assert_eq!(configured["description"], "from the file");
    let id = configured["id"].as_str().expect("id").to_owned();

    // The same id after a restart (derived from the rule), and not removable here.
    let app = app.restart().await;
    let again: Value = app
        .client
        .get(app.url("/api/v1/policies"))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("policies");
    assert_eq!(again[0]["id"], id.as_str());
    let removal = app
        .client
        .delete(app.url(&format!("/api/v1/policies/{id}")))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .expect("sent");
    assert_eq!(removal.status(), 403);
    let problem: Value = removal.json().await.expect("problem");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("configuration file")),
        "{problem}"
    );
    docs.stop().await;
    issuer.stop().await;
}
