//! The gateway's own MCP tools and resources, compact mode, curated views and CORS,
//! end to end: the real gateway on a random port, the in-repo test upstream over
//! Streamable HTTP, a real rmcp client, and (for roles) tokens of a stand-in OIDC
//! issuer.

// `resources/subscribe` is legacy-only in 2026-07-28 but what session clients use.
#![allow(deprecated)]

use std::net::SocketAddr;
use std::time::Duration;

use gateway_app::config::{AuthProvider, Settings};
use gateway_test_support::mcp::{Pushed, call, connect, connect_with_token, mcp_error, text_of};
use gateway_test_support::oidc::TestIssuer;
use gateway_test_support::{TestApp, TestBackend};
use gateway_test_upstream::{HttpUpstream, serve_http};
use rmcp::model::{ErrorCode, ReadResourceRequestParams, SubscribeRequestParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const AUDIENCE: &str = "https://gateway.test/mcp";
const ADMIN_KEY: &str = "gateway-tools-admin-key";

async fn upstream() -> HttpUpstream {
    serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("test upstream serves")
}

async fn gateway(adjust: impl FnOnce(&mut Settings) + Send + 'static) -> TestApp {
    TestApp::spawn_with(TestBackend::Sqlite, |s| {
        s.mcp.request_timeout_ms = 10_000;
        s.mcp.connect_timeout_ms = 5_000;
        adjust(s);
    })
    .await
    .expect("sqlite app")
}

/// Registers an HTTP upstream and fetches its catalog now.
async fn register(app: &TestApp, name: &str, url: &str, api_key: Option<&str>) {
    let body = json!({"name": name, "transport": {"type": "streamable-http", "url": url}});
    app.register(&body, api_key).await;
    let mut request = app
        .client
        .post(app.url(&format!("/api/v1/servers/{name}/refresh")));
    if let Some(key) = api_key {
        request = request.header("x-api-key", key);
    }
    assert_eq!(request.send().await.expect("sent").status(), 200);
}

fn structured(result: &rmcp::model::CallToolResult) -> Value {
    result.structured_content.clone().unwrap_or(Value::Null)
}

async fn tool_names(client: &rmcp::service::Peer<rmcp::RoleClient>) -> Vec<String> {
    client
        .list_all_tools()
        .await
        .expect("tools")
        .iter()
        .map(|t| t.name.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_tools_and_resources_serve_the_registry_through_a_real_client() {
    let (alpha, beta) = (upstream().await, upstream().await);
    let app = gateway(|s| s.audit.record_arguments = true).await;
    register(&app, "alpha", &alpha.url(), None).await;
    let (client, mut pushed) = connect(&app.url("/mcp")).await;
    let peer = client.peer();

    // Listed first, with schemas; without authentication the caller is an admin.
    let names = tool_names(peer).await;
    for expected in [
        "gateway__list_servers",
        "gateway__get_server",
        "gateway__search_tools",
        "gateway__server_health",
        "gateway__register_server",
        "gateway__enable_server",
        "gateway__disable_server",
        "gateway__refresh_server",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} in {names:?}"
        );
    }
    assert!(
        !names.contains(&"gateway__call_tool".to_owned()),
        "compact-only tools stay out of the full list"
    );
    let listed = peer.list_tools(None).await.expect("first page");
    let list_servers = listed
        .tools
        .iter()
        .find(|t| t.name == "gateway__list_servers")
        .expect("listed");
    assert!(
        list_servers.output_schema.is_some(),
        "structured output is described"
    );

    // Discovery tools call the registry's use cases and show no secrets or URLs.
    let servers = peer
        .call_tool(call("gateway__list_servers", json!({})))
        .await
        .expect("list");
    let servers = structured(&servers);
    assert_eq!(servers["servers"][0]["name"], "alpha", "{servers}");
    assert!(
        servers["servers"][0]["catalog"]["tools"]
            .as_u64()
            .unwrap_or(0)
            > 5,
        "{servers}"
    );
    let described = peer
        .call_tool(call("gateway__get_server", json!({"server": "alpha"})))
        .await
        .expect("get");
    let described = structured(&described);
    assert_eq!(described["server"]["transport"], "streamable-http");
    assert!(
        !described.to_string().contains(&alpha.url()),
        "no upstream URL: {described}"
    );
    let health = peer
        .call_tool(call("gateway__server_health", json!({"server": "alpha"})))
        .await
        .expect("health");
    assert_eq!(structured(&health)["health"]["name"], "alpha");
    let found = peer
        .call_tool(call(
            "gateway__search_tools",
            json!({"query": "alpha__echo"}),
        ))
        .await
        .expect("search");
    assert_eq!(
        structured(&found)["tools"][0]["name"],
        "alpha__echo",
        "exact name first"
    );

    // Bad arguments name the field; a missing server is a tool error with the problem.
    let bad = peer
        .call_tool(call("gateway__list_servers", json!({"limit": "many"})))
        .await
        .expect_err("bad limit");
    let bad = mcp_error(bad);
    assert_eq!(bad.code, ErrorCode::INVALID_PARAMS);
    assert!(bad.message.contains("limit"), "{}", bad.message);
    let unknown_field = mcp_error(
        peer.call_tool(call(
            "gateway__get_server",
            json!({"server": "alpha", "x": 1}),
        ))
        .await
        .expect_err("unknown field"),
    );
    assert!(
        unknown_field.message.contains('x'),
        "{}",
        unknown_field.message
    );
    let missing = peer
        .call_tool(call("gateway__get_server", json!({"server": "nope"})))
        .await
        .expect("answered");
    assert_eq!(missing.is_error, Some(true));
    assert_eq!(
        structured(&missing)["error"]["status"],
        404,
        "{:?}",
        missing
    );

    // Resources, and a subscription that hears about a registration.
    let resources = peer.list_all_resources().await.expect("resources");
    assert!(
        resources.iter().any(|r| r.uri == "gateway://servers"),
        "{resources:?}"
    );
    let templates = peer.list_all_resource_templates().await.expect("templates");
    assert!(
        templates
            .iter()
            .any(|t| t.uri_template == "gateway://servers/{name}/health")
    );
    let read = peer
        .read_resource(ReadResourceRequestParams::new(
            "gateway://servers/alpha/health",
        ))
        .await
        .expect("read");
    let rmcp::model::ResourceContents::TextResourceContents { text, .. } = &read.contents[0] else {
        panic!("text contents")
    };
    assert_eq!(
        serde_json::from_str::<Value>(text).expect("json")["health"]["name"],
        "alpha"
    );
    let missing = peer
        .read_resource(ReadResourceRequestParams::new("gateway://servers/nope"))
        .await
        .expect_err("no such server");
    assert_eq!(mcp_error(missing).code, ErrorCode::RESOURCE_NOT_FOUND);
    peer.subscribe(SubscribeRequestParams::new("gateway://servers"))
        .await
        .expect("subscribe");

    // Admin tools: register, disable, enable, refresh, all through MCP.
    let registered = peer
        .call_tool(call(
            "gateway__register_server",
            json!({"name": "beta", "transport": {"type": "streamable-http", "url": beta.url(), "headers": {"x-key": "s3cret"}}}),
        ))
        .await
        .expect("register");
    assert_ne!(registered.is_error, Some(true), "{registered:?}");
    assert!(
        !structured(&registered).to_string().contains("s3cret"),
        "secrets are masked"
    );
    // Nor does the audit keep them: a registration's transport is reduced to its kind.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let event = loop {
        let page: Value = app
            .get("/api/v1/audit?tool=gateway__register_server")
            .await
            .json()
            .await
            .expect("audit page");
        if let Some(event) = page["items"].as_array().and_then(|items| items.first()) {
            break event.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit event: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        event["arguments"]["transport"]["type"], "streamable-http",
        "{event}"
    );
    assert!(
        !event.to_string().contains("s3cret") && !event.to_string().contains(&beta.url()),
        "{event}"
    );
    let updated = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match pushed.recv().await {
                Some(Pushed::ResourceUpdated(uri)) if uri == "gateway://servers" => return uri,
                Some(_) => continue,
                None => panic!("session closed"),
            }
        }
    })
    .await
    .expect("resources/updated for gateway://servers");
    assert_eq!(updated, "gateway://servers");
    let refreshed = peer
        .call_tool(call("gateway__refresh_server", json!({"server": "beta"})))
        .await
        .expect("refresh");
    assert!(
        structured(&refreshed)["catalog"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    );
    assert!(tool_names(peer).await.contains(&"beta__echo".to_owned()));
    peer.call_tool(call("gateway__disable_server", json!({"server": "beta"})))
        .await
        .expect("disable");
    assert!(
        !tool_names(peer).await.contains(&"beta__echo".to_owned()),
        "disabled servers leave the list"
    );
    let enabled = peer
        .call_tool(call("gateway__enable_server", json!({"server": "beta"})))
        .await
        .expect("enable");
    assert_eq!(structured(&enabled)["server"]["enabled"], true);
    let duplicate = peer
        .call_tool(call(
            "gateway__register_server",
            json!({"name": "beta", "transport": {"type": "streamable-http", "url": beta.url()}}),
        ))
        .await
        .expect("answered");
    assert_eq!(duplicate.is_error, Some(true));
    assert_eq!(structured(&duplicate)["error"]["status"], 409);

    // The per-server endpoint has no gateway tools.
    let (scoped, _) = connect(&app.url("/mcp/servers/alpha")).await;
    assert!(
        !tool_names(scoped.peer())
            .await
            .iter()
            .any(|n| n.starts_with("gateway__"))
    );
    let err = scoped
        .peer()
        .call_tool(call("gateway__list_servers", json!({})))
        .await
        .expect_err("not here");
    assert_eq!(mcp_error(err).code, ErrorCode::INVALID_PARAMS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_mode_reaches_5000_tools_and_a_non_admin_cannot_register() {
    let issuer = TestIssuer::start().await;
    let big = upstream().await;
    let words = [
        "barometer",
        "hygrometer",
        "anemometer",
        "pluviometer",
        "seismograph",
    ];
    let tools: Vec<(String, String, Value)> = (0..5_000)
        .map(|i| {
            let word = if i == 4_321 { "zeppelin" } else { words[i % words.len()] };
            (
                format!("gen_{i:04}"),
                format!("Reads the {word} of station {i}."),
                json!({"type": "object", "properties": {"value": {"type": "integer"}}, "required": ["value"]}),
            )
        })
        .collect();
    big.upstream().add_tools(tools).await;
    let app = auth_gateway(&issuer, |s| s.mcp.page_size = 1000).await;
    register(&app, "big", &big.url(), Some(ADMIN_KEY)).await;
    let rule = json!({"role": "agent", "actions": ["list", "call"], "patterns": [
        "gateway__search_tools", "gateway__describe_tool", "gateway__call_tool", "big__*"]});
    grant(&app, &rule).await;

    let agent = issuer.token(AUDIENCE, &["agent"]);
    let (client, _) = connect_with_token(&app.url("/mcp?view=compact"), Some(&agent))
        .await
        .expect("compact session");
    let peer = client.peer();
    let names = tool_names(peer).await;
    assert_eq!(
        names,
        [
            "gateway__search_tools",
            "gateway__describe_tool",
            "gateway__call_tool"
        ],
        "compact mode lists three tools"
    );
    let found = peer
        .call_tool(call(
            "gateway__search_tools",
            json!({"query": "which station reads a zeppelin?", "limit": 3}),
        ))
        .await
        .expect("search");
    let found = structured(&found);
    assert_eq!(found["tools"][0]["name"], "big__gen_4321", "{found}");
    let described = peer
        .call_tool(call(
            "gateway__describe_tool",
            json!({"name": "big__gen_4321"}),
        ))
        .await
        .expect("describe");
    assert_eq!(
        structured(&described)["tool"]["inputSchema"]["required"],
        json!(["value"])
    );

    let result = peer
        .call_tool(call(
            "gateway__call_tool",
            json!({"name": "big__gen_4321", "arguments": {"value": 7}}),
        ))
        .await
        .expect("call");
    assert_eq!(
        text_of(&result),
        r#"dynamic gen_4321 {"value":7}"#,
        "the upstream's result, untouched"
    );
    let calls_before = big.upstream().tool_calls();
    for (arguments, why) in [
        (json!({"value": "seven"}), "wrong type"),
        (json!({}), "missing required"),
    ] {
        let refused = peer
            .call_tool(call(
                "gateway__call_tool",
                json!({"name": "big__gen_0001", "arguments": arguments}),
            ))
            .await
            .expect_err(why);
        let refused = mcp_error(refused);
        assert_eq!(refused.code, ErrorCode::INVALID_PARAMS, "{why}");
        assert!(
            refused
                .data
                .as_ref()
                .is_some_and(|d| d["errors"].is_array()),
            "{why}: {refused:?}"
        );
    }
    assert_eq!(
        big.upstream().tool_calls(),
        calls_before,
        "invalid arguments never reach the upstream"
    );
    let unknown = peer
        .call_tool(call(
            "gateway__call_tool",
            json!({"name": "big__nope", "arguments": {}}),
        ))
        .await
        .expect_err("unknown");
    assert_eq!(mcp_error(unknown).code, ErrorCode::INVALID_PARAMS);

    // The called tool's budget applies, and invalid arguments are charged too.
    let limit = admin_request(&app, reqwest::Method::POST, "/api/v1/rate-limits")
        .json(&json!({"scope": "tool", "matches": "big__gen_0002", "rate": 1, "period_secs": 3600, "burst": 1}))
        .send()
        .await
        .expect("sent");
    assert_eq!(limit.status(), 201);
    let limited = |arguments: Value| {
        peer.call_tool(call(
            "gateway__call_tool",
            json!({"name": "big__gen_0002", "arguments": arguments}),
        ))
    };
    limited(json!({"value": 1})).await.expect("within budget");
    for arguments in [json!({"value": 2}), json!({"value": "bad"})] {
        let refused = mcp_error(limited(arguments).await.expect_err("over budget"));
        assert_eq!(refused.code, ErrorCode(-32038), "{refused:?}");
    }

    // The same client, without the admin role, cannot register a server, and the
    // attempt is in the audit log.
    refused_registration(&app, peer).await;

    // `?view=full` and the default both list the whole catalog.
    let (full, _) = connect_with_token(&app.url("/mcp"), Some(&agent))
        .await
        .expect("full");
    assert!(tool_names(full.peer()).await.len() >= 5_000);
    let (odd, _) = connect_with_token(&app.url("/mcp?view=tiny"), Some(&agent))
        .await
        .expect("odd");
    let refused = odd
        .peer()
        .list_tools(None)
        .await
        .expect_err("an unknown form is refused");
    assert!(mcp_error(refused).message.contains("view=tiny"));
}

fn admin_request(app: &TestApp, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    app.client
        .request(method, app.url(path))
        .header("x-api-key", ADMIN_KEY)
}

async fn auth_gateway(
    issuer: &TestIssuer,
    adjust: impl FnOnce(&mut Settings) + Send + 'static,
) -> TestApp {
    let issuer_url = issuer.url.clone();
    gateway(move |s| {
        s.auth.provider = AuthProvider::Oidc;
        s.auth.issuer = Some(issuer_url);
        s.auth.audiences = vec![AUDIENCE.to_owned()];
        s.auth.public_url = Some("https://gateway.test".to_owned());
        s.auth.admin_api_key_sha256 = vec![format!("{:x}", Sha256::digest(ADMIN_KEY))];
        adjust(s);
    })
    .await
}

/// Adds an access rule with the admin key.
async fn grant(app: &TestApp, rule: &Value) {
    let created = admin_request(app, reqwest::Method::POST, "/api/v1/policies")
        .json(rule)
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), 201, "{rule}");
}

/// A non-admin's `gateway__register_server`: refused as an unknown tool, nothing
/// registered, and recorded in the audit log as denied.
async fn refused_registration(app: &TestApp, peer: &rmcp::service::Peer<rmcp::RoleClient>) {
    let attempt = peer
        .call_tool(call(
            "gateway__register_server",
            json!({"name": "evil", "transport": {"type": "streamable-http", "url": "http://127.0.0.1:9/mcp"}}),
        ))
        .await
        .expect_err("refused");
    let attempt = mcp_error(attempt);
    assert_eq!(attempt.code, ErrorCode::INVALID_PARAMS);
    assert!(
        attempt.message.contains("unknown tool"),
        "{}",
        attempt.message
    );
    let exists = admin_request(app, reqwest::Method::GET, "/api/v1/servers/evil")
        .send()
        .await
        .expect("sent");
    assert_eq!(exists.status(), 404, "nothing was registered");
    let denied = denied_event(app, "gateway__register_server").await;
    assert_eq!(denied["server"], "gateway", "{denied}");
}

/// The audit event of a refused `tools/call` of `target`, once the writer stored it.
async fn denied_event(app: &TestApp, target: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page: Value = admin_request(
            app,
            reqwest::Method::GET,
            "/api/v1/audit?action=tools/call&outcome=denied",
        )
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("page");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if let Some(event) = items.into_iter().find(|e| e["target"] == target) {
            assert!(
                event["subject"].as_str().is_some_and(|s| !s.is_empty()),
                "{event}"
            );
            return event;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no denied event for {target}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_admin_role_admin_tools_do_not_exist_and_the_attempt_is_audited() {
    let issuer = TestIssuer::start().await;
    let (docs, ops, private) = (upstream().await, upstream().await, upstream().await);
    let app = auth_gateway(&issuer, |_| {}).await;
    register(&app, "docs", &docs.url(), Some(ADMIN_KEY)).await;
    register(&app, "ops", &ops.url(), Some(ADMIN_KEY)).await;
    // Another tenant's server stays invisible even where a rule names it.
    let body = json!({"name": "private", "tenant": "tenant-2",
                      "transport": {"type": "streamable-http", "url": private.url()}});
    app.register(&body, Some(ADMIN_KEY)).await;
    let refreshed = admin_request(
        &app,
        reqwest::Method::POST,
        "/api/v1/servers/private/refresh",
    )
    .send()
    .await
    .expect("sent");
    assert_eq!(refreshed.status(), 200);
    for rule in [
        json!({"role": "reader", "actions": ["list", "call", "read"], "patterns": ["docs__*", "private__*", "gateway__*"]}),
        json!({"role": "plain", "actions": ["list", "call"], "patterns": ["docs__*"]}),
    ] {
        grant(&app, &rule).await;
    }

    // Gateway tools are items of server `gateway` under the same default-deny rules.
    let plain = issuer.token(AUDIENCE, &["plain"]);
    let (plain_client, _) = connect_with_token(&app.url("/mcp"), Some(&plain))
        .await
        .expect("session");
    let plain_names = tool_names(plain_client.peer()).await;
    assert!(
        !plain_names.iter().any(|n| n.starts_with("gateway__")),
        "{plain_names:?}"
    );
    let refused = plain_client
        .peer()
        .call_tool(call("gateway__list_servers", json!({})))
        .await
        .expect_err("no rule grants it");
    assert_eq!(mcp_error(refused).code, ErrorCode::INVALID_PARAMS);
    let plain_resources = plain_client
        .peer()
        .list_all_resources()
        .await
        .expect("resources");
    assert!(
        !plain_resources
            .iter()
            .any(|r| r.uri.starts_with("gateway://")),
        "{plain_resources:?}"
    );

    let token = issuer.token(AUDIENCE, &["reader"]);
    let (client, _) = connect_with_token(&app.url("/mcp"), Some(&token))
        .await
        .expect("session");
    let peer = client.peer();
    let names = tool_names(peer).await;
    assert!(
        names.contains(&"gateway__search_tools".to_owned()),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.contains("register") || n.contains("disable")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("ops__")));

    // Search never returns a tool the caller cannot call; the server list only shows
    // what the caller can use.
    let found = peer
        .call_tool(call(
            "gateway__search_tools",
            json!({"query": "echo", "limit": 50}),
        ))
        .await
        .expect("search");
    let found = structured(&found);
    let hits: Vec<&str> = found["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(hits.contains(&"docs__echo"), "{hits:?}");
    assert!(!hits.iter().any(|h| h.starts_with("ops__")), "{hits:?}");
    let servers = peer
        .call_tool(call("gateway__list_servers", json!({})))
        .await
        .expect("list");
    let servers: Vec<String> = structured(&servers)["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(servers, ["docs"]);
    let hidden = peer
        .call_tool(call("gateway__get_server", json!({"server": "ops"})))
        .await
        .expect("answered");
    assert_eq!(
        structured(&hidden)["error"]["status"],
        404,
        "as if it did not exist"
    );
    let (compact, _) = connect_with_token(&app.url("/mcp?view=compact"), Some(&token))
        .await
        .expect("compact");
    let denied = compact
        .peer()
        .call_tool(call(
            "gateway__call_tool",
            json!({"name": "ops__echo", "arguments": {"text": "x"}}),
        ))
        .await
        .expect_err("not allowed");
    assert_eq!(mcp_error(denied).code, ErrorCode::INVALID_PARAMS);

    refused_registration(&app, peer).await;

    // Pages hold only what the reader may see, and no cursor names anything else.
    let first = peer
        .call_tool(call("gateway__list_servers", json!({"limit": 1})))
        .await
        .expect("list");
    let first = structured(&first);
    assert_eq!(first["servers"][0]["name"], "docs", "{first}");
    assert!(
        first["nextCursor"].is_null(),
        "no visible server follows: {first}"
    );
    for hidden in ["ops", "private"] {
        let answer = peer
            .call_tool(call("gateway__get_server", json!({"server": hidden})))
            .await
            .expect("answered");
        assert_eq!(
            structured(&answer)["error"]["detail"],
            format!("no server `{hidden}`")
        );
        let tools = peer
            .call_tool(call(
                "gateway__search_tools",
                json!({"query": "echo", "server": hidden}),
            ))
            .await
            .expect("search");
        assert_eq!(structured(&tools)["tools"], json!([]), "{hidden}");
    }
    let missing = peer
        .call_tool(call("gateway__get_server", json!({"server": "nope"})))
        .await
        .expect("answered");
    assert_eq!(
        structured(&missing)["error"]["detail"],
        "no server `nope`",
        "same words"
    );
    let described = peer
        .call_tool(call(
            "gateway__describe_tool",
            json!({"name": "private__echo"}),
        ))
        .await
        .expect_err("invisible");
    assert_eq!(mcp_error(described).code, ErrorCode::INVALID_PARAMS);

    // A view never widens what a caller may do.
    let view = json!({"name": "mixed", "tools": ["docs__echo", "ops__echo", "private__echo"]});
    let created = admin_request(&app, reqwest::Method::POST, "/api/v1/views")
        .json(&view)
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), 201);
    let (viewed, _) = connect_with_token(&app.url("/mcp/views/mixed"), Some(&token))
        .await
        .expect("view session");
    assert_eq!(tool_names(viewed.peer()).await, ["docs__echo"]);
    for hidden in ["ops__echo", "private__echo"] {
        let refused = viewed
            .peer()
            .call_tool(call(hidden, json!({"text": "x"})))
            .await
            .expect_err("not the reader's");
        assert_eq!(
            mcp_error(refused).code,
            ErrorCode::INVALID_PARAMS,
            "{hidden}"
        );
    }

    // The resources and the health tool show the reader only what it may use.
    let registry = peer
        .read_resource(ReadResourceRequestParams::new("gateway://servers"))
        .await
        .expect("read");
    let rmcp::model::ResourceContents::TextResourceContents { text, .. } = &registry.contents[0]
    else {
        panic!("text contents")
    };
    let listed: Value = serde_json::from_str(text).expect("json");
    assert_eq!(
        listed["servers"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["servers"][0]["name"], "docs");
    let health = peer
        .call_tool(call("gateway__server_health", json!({"server": "docs"})))
        .await
        .expect("health");
    let health = structured(&health);
    assert_eq!(health["health"]["name"], "docs");
    assert!(
        health["health"]["endpoints"][0].get("endpoint").is_none(),
        "no endpoint address for a non-admin: {health}"
    );
    assert!(!health.to_string().contains(&docs.url()), "{health}");
    let hidden = peer
        .read_resource(ReadResourceRequestParams::new(
            "gateway://servers/ops/health",
        ))
        .await
        .expect_err("invisible");
    assert_eq!(mcp_error(hidden).code, ErrorCode::RESOURCE_NOT_FOUND);

    // Both attempts are in the audit log, as denied: compact mode records the tool it
    // tried to call.
    let compact = denied_event(&app, "ops__echo").await;
    assert_eq!(compact["server"], "ops", "{compact}");

    // An admin token sees and may use the admin tools.
    let admin = issuer.token(AUDIENCE, &["admin"]);
    let (admin_client, _) = connect_with_token(&app.url("/mcp"), Some(&admin))
        .await
        .expect("admin session");
    assert!(
        tool_names(admin_client.peer())
            .await
            .contains(&"gateway__register_server".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_serves_exactly_its_subset_and_tells_its_clients_when_it_changes() {
    let (github, jira) = (upstream().await, upstream().await);
    let app = gateway(|_| {}).await;
    register(&app, "github", &github.url(), None).await;
    register(&app, "jira", &jira.url(), None).await;

    let view = json!({
        "name": "support",
        "description": "What the support agent needs",
        "tools": ["github__echo", "github__add", "jira__e*"],
        "prompts": ["jira__*"],
        "overrides": {"github__add": {"name": "sum_numbers", "description": "Adds two numbers."}}
    });
    let created = app.post_json("/api/v1/views", &view).await;
    assert_eq!(
        created.status(),
        201,
        "{}",
        created.text().await.unwrap_or_default()
    );
    let created: Value = app
        .get("/api/v1/views/support")
        .await
        .json()
        .await
        .expect("view");
    assert_eq!(created["endpoint"], "/mcp/views/support");
    assert!(
        created["items"]["tools"].as_u64().unwrap_or(0) >= 3,
        "{created}"
    );

    let (client, mut pushed) = connect(&app.url("/mcp/views/support")).await;
    let peer = client.peer();
    let names = tool_names(peer).await;
    assert!(
        names.contains(&"sum_numbers".to_owned()) && names.contains(&"github__echo".to_owned()),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .all(|n| n == "sum_numbers" || n == "github__echo" || n.starts_with("jira__e")),
        "{names:?}"
    );
    assert!(!names.contains(&"github__add".to_owned()), "renamed away");
    let all = peer.list_all_tools().await.expect("tools");
    let renamed = all
        .iter()
        .find(|t| t.name == "sum_numbers")
        .expect("renamed tool");
    assert_eq!(renamed.description.as_deref(), Some("Adds two numbers."));
    let sum = peer
        .call_tool(call("sum_numbers", json!({"a": 2, "b": 3})))
        .await
        .expect("call");
    assert!(text_of(&sum).contains('5'), "{}", text_of(&sum));
    let outside = peer
        .call_tool(call("github__add", json!({"a": 1, "b": 1})))
        .await
        .expect_err("not in the view");
    assert_eq!(mcp_error(outside).code, ErrorCode::INVALID_PARAMS);
    assert!(
        peer.list_all_resources()
            .await
            .expect("resources")
            .is_empty(),
        "no resource pattern, no resource"
    );

    // Narrowing the view notifies its clients.
    let replaced = app
        .client
        .put(app.url("/api/v1/views/support"))
        .json(&json!({"tools": ["github__echo"]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        replaced.status(),
        200,
        "{}",
        replaced.text().await.unwrap_or_default()
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Pushed::ToolsChanged) = pushed.recv().await {
                return;
            }
        }
    })
    .await
    .expect("tools/list_changed on the view's session");
    assert_eq!(tool_names(peer).await, ["github__echo"]);

    // REST errors are problem+json naming what is wrong.
    let duplicate = app
        .post_json("/api/v1/views", &json!({"name": "support", "tools": ["*"]}))
        .await;
    assert_eq!(duplicate.status(), 409);
    let invalid = app
        .post_json(
            "/api/v1/views",
            &json!({"name": "Bad Name", "tools": [], "overrides": {"x": {}}}),
        )
        .await;
    assert_eq!(invalid.status(), 422);
    let fields = gateway_test_support::problem_fields(invalid).await;
    assert!(
        ["name", "tools", "overrides.x"]
            .iter()
            .all(|f| fields.iter().any(|field| field == f)),
        "{fields:?}"
    );
    let renamed = app
        .client
        .put(app.url("/api/v1/views/support"))
        .json(&json!({"name": "other", "tools": ["*"]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(renamed.status(), 422);
    assert_eq!(app.get("/api/v1/views/nope").await.status(), 404);
    let listed: Value = app.get("/api/v1/views").await.json().await.expect("list");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    assert_eq!(app.delete("/api/v1/views/support").await.status(), 204);
    assert_eq!(app.delete("/api/v1/views/support").await.status(), 404);
    let gone = peer.list_tools(None).await.expect_err("the view is gone");
    assert!(mcp_error(gone).message.contains("no view"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_preflights_for_allowed_origins_only() {
    // Case and the default port do not make another origin; the older
    // `mcp.allowed_origins` joins the same list.
    let app = gateway(|s| {
        s.cors.allowed_origins = vec!["https://App.Example.com:443".into()];
        s.mcp.allowed_origins = vec!["http://legacy.example:8080".into()];
    })
    .await;
    let preflight = |origin: &'static str, path: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, mcp-session-id, mcp-protocol-version, authorization",
            )
            .send()
    };
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    for path in ["/mcp", "/api/v1/servers"] {
        let allowed = preflight("https://app.example.com", path)
            .await
            .expect("sent");
        assert!(
            allowed.status().is_success(),
            "{path}: {}",
            allowed.status()
        );
        assert_eq!(
            header(&allowed, "access-control-allow-origin"),
            "https://app.example.com"
        );
        let headers = header(&allowed, "access-control-allow-headers");
        assert!(
            headers.contains("mcp-session-id") && headers.contains("authorization"),
            "{headers}"
        );
        let refused = preflight("https://evil.example", path).await.expect("sent");
        assert!(
            refused
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{path}"
        );
    }

    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "browser", "version": "1"}}});
    let post = |origin: &'static str| {
        app.client
            .post(app.url("/mcp"))
            .header("origin", origin)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize)
            .send()
    };
    let allowed = post("https://app.example.com").await.expect("sent");
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        header(&allowed, "access-control-allow-origin"),
        "https://app.example.com"
    );
    let exposed = header(&allowed, "access-control-expose-headers");
    for name in ["mcp-session-id", "mcp-protocol-version", "www-authenticate"] {
        assert!(exposed.contains(name), "{name} exposed: {exposed}");
    }
    assert!(allowed.headers().get("mcp-session-id").is_some());
    for origin in ["https://evil.example", "https://app.example.com:8443"] {
        let refused = post(origin).await.expect("sent");
        assert_eq!(
            refused.status(),
            403,
            "{origin}: the Origin check refuses what CORS refuses"
        );
        assert!(
            refused
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{origin}"
        );
    }
    let legacy = post("http://legacy.example:8080").await.expect("sent");
    assert_eq!(legacy.status(), 200);
    assert_eq!(
        header(&legacy, "access-control-allow-origin"),
        "http://legacy.example:8080"
    );
    // Errors carry the CORS headers too, so a script can read them.
    let missing = app
        .client
        .get(app.url("/api/v1/servers/nope"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("sent");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        header(&missing, "access-control-allow-origin"),
        "https://app.example.com"
    );

    // Off by default: no CORS headers at all.
    let plain = gateway(|_| {}).await;
    let response = plain
        .client
        .get(plain.url("/api/v1/servers"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_are_stored_and_served_on_every_backend() {
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        let Some(app) = TestApp::spawn(backend).await else {
            eprintln!("skipping {backend:?}: TEST_DATABASE_URL is not set");
            continue;
        };
        let docs = upstream().await;
        register(&app, "docs", &docs.url(), None).await;
        let body = json!({"name": "mini", "tools": ["docs__echo"], "overrides": {"docs__echo": {"description": "Repeat."}}});
        assert_eq!(
            app.post_json("/api/v1/views", &body).await.status(),
            201,
            "{backend:?}"
        );
        // Stored: a restart serves the same view.
        let app = app.restart().await;
        let view: Value = app
            .get("/api/v1/views/mini")
            .await
            .json()
            .await
            .expect("view");
        assert_eq!(
            view["overrides"]["docs__echo"]["description"], "Repeat.",
            "{backend:?}: {view}"
        );
        let (client, _) = connect(&app.url("/mcp/views/mini")).await;
        let tools = client.peer().list_all_tools().await.expect("tools");
        assert_eq!(tools.len(), 1, "{backend:?}");
        assert_eq!(tools[0].description.as_deref(), Some("Repeat."));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_tools_can_be_turned_off() {
    let alpha = upstream().await;
    let app = gateway(|s| s.mcp.gateway_tools = false).await;
    register(&app, "alpha", &alpha.url(), None).await;
    let (client, _) = connect(&app.url("/mcp")).await;
    let peer = client.peer();
    assert!(
        !tool_names(peer)
            .await
            .iter()
            .any(|n| n.starts_with("gateway__"))
    );
    let refused = peer
        .call_tool(call("gateway__list_servers", json!({})))
        .await
        .expect_err("off");
    assert_eq!(mcp_error(refused).code, ErrorCode::INVALID_PARAMS);
    let resources = peer.list_all_resources().await.expect("resources");
    assert!(!resources.iter().any(|r| r.uri.starts_with("gateway://")));
    let (compact, _) = connect(&app.url("/mcp?view=compact")).await;
    assert!(
        tool_names(compact.peer()).await.is_empty(),
        "nothing to list in compact mode"
    );
}
