//! The `/api/v1/servers` resource end to end: real HTTP on a random port, real SQL on
//! SQLite and (with `TEST_DATABASE_URL`) PostgreSQL.

use gateway_test_support::{TestApp, http_server_body, on_every_backend};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_every_backend!(
    register_read_update_delete,
    secrets_are_masked_and_kept,
    invalid_fields_are_all_named,
    duplicate_names_conflict,
    stdio_is_refused_unless_allowed,
    stale_writes_are_refused,
    concurrent_updates_lose_nothing,
    list_filters_and_pages,
    servers_are_found_by_id_or_name,
    credentials_are_sealed_at_rest,
    rotated_keys_still_open_old_credentials,
);

/// Every stored transport, as the database holds it.
async fn stored_transports(app: &TestApp) -> String {
    app.query_texts("SELECT CAST(transport AS TEXT) FROM upstream_server")
        .await
        .join("\n")
}

async fn stored_header(app: &TestApp, server: &str, header: &str) -> String {
    let store = app.store().await;
    let stored = gateway_domain::ServerRepository::get_by_name(
        &store,
        &gateway_domain::ServerName::parse(server).expect("name"),
    )
    .await
    .expect("stored");
    store.close().await;
    let gateway_domain::Transport::StreamableHttp { headers, .. } = stored.spec.transport else {
        panic!("an HTTP transport")
    };
    headers[header].expose().to_owned()
}

async fn credentials_are_sealed_at_rest(app: TestApp) {
    let body = json!({"name": "sealed", "transport": {"type": "streamable-http",
        "url": "https://api.example.com/mcp", "headers": {"Authorization": "Bearer ghp_supersecret"}}});
    register(&app, body).await;
    let raw = stored_transports(&app).await;
    assert!(!raw.contains("supersecret"), "{raw}");
    assert!(raw.contains("sealed:v1:"), "{raw}");
    assert_eq!(
        stored_header(&app, "sealed", "authorization").await,
        "Bearer ghp_supersecret"
    );

    // A value written in clear by an older gateway is sealed at the next start.
    app.execute_sql(
        "UPDATE upstream_server SET transport = '{\"type\":\"streamable-http\",\"url\":\"https://api.example.com/mcp\",\"headers\":{\"x-legacy\":\"plain-legacy-value\"}}'",
    )
    .await;
    let app = app.restart().await;
    let raw = stored_transports(&app).await;
    assert!(
        !raw.contains("plain-legacy-value") && raw.contains("sealed:v1:"),
        "{raw}"
    );
    assert_eq!(
        stored_header(&app, "sealed", "x-legacy").await,
        "plain-legacy-value"
    );
    let server = json_of(app.get("/api/v1/servers/sealed").await).await;
    assert_eq!(server["transport"]["headers"]["x-legacy"], "********");
    assert_eq!(server["version"], 1, "sealing is not a spec change");
}

async fn rotated_keys_still_open_old_credentials(app: TestApp) {
    let body = json!({"name": "rotated", "transport": {"type": "streamable-http",
        "url": "https://api.example.com/mcp", "headers": {"X-Key": "k-123"}}});
    register(&app, body).await;
    let old = app.settings.secrets.key.clone().expect("test key");
    let new = gateway_persistence::sealing::generate_key().expect("key");
    let app = app
        .restart_with(|s| {
            s.secrets.key = Some(new.clone());
            s.secrets.previous_keys = vec![old.clone()];
        })
        .await;
    assert_eq!(stored_header(&app, "rotated", "x-key").await, "k-123");
    // Without the old key the value cannot be opened: the start stops and says which
    // server and key, rather than failing reads later or using a wrong secret.
    let mut without_old = app.settings.clone();
    without_old.secrets.previous_keys.clear();
    let error = gateway_app::startup::open_store(&without_old, false)
        .await
        .map(|_| ())
        .expect_err("the old key is missing");
    let message = error.to_string();
    assert!(
        message.contains("`rotated`")
            && message.contains("neither secrets.key nor in secrets.previous_keys"),
        "{message}"
    );
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

async fn problem(response: reqwest::Response, status: StatusCode, slug: &str) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body = json_of(response).await;
    assert_eq!(
        body["type"],
        format!("tag:mcp-gateway,2026:problem:{slug}"),
        "{body}"
    );
    assert_eq!(body["status"], status.as_u16());
    assert!(body["request_id"].is_string(), "{body}");
    body
}

async fn register(app: &TestApp, body: Value) -> Value {
    let response = app.post_json("/api/v1/servers", &body).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap_or_default()
    );
    json_of(response).await
}

async fn register_read_update_delete(app: TestApp) {
    let created = app
        .post_json(
            "/api/v1/servers",
            &json!({
                "name": "weather",
                "title": "Weather",
                "description": "Forecasts",
                "transport": {"type": "streamable-http", "url": "https://weather.example.com/mcp"},
                "tags": ["prod", "demo", "prod"],
                "tenant": "contoso",
            }),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["etag"], "\"1\"");
    let location = created.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let server = json_of(created).await;
    assert_eq!(
        location,
        format!("/api/v1/servers/{}", server["id"].as_str().expect("id"))
    );
    assert_eq!(server["version"], 1);
    assert_eq!(server["enabled"], true);
    assert_eq!(
        server["tags"],
        json!(["demo", "prod"]),
        "tags are sorted and deduplicated"
    );
    assert_eq!(server["health"]["state"], "unknown");

    let read = app.get(&location).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.headers()["etag"], "\"1\"");
    // Health is what discovery observes (it may already have tried this upstream).
    let without_health = |mut value: Value| {
        value["health"] = Value::Null;
        value
    };
    assert_eq!(
        without_health(json_of(read).await),
        without_health(server.clone())
    );

    let patched = app
        .patch_json(
            &location,
            &json!({"description": null, "enabled": false, "tags": ["x"]}),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    assert_eq!(patched.headers()["etag"], "\"2\"");
    let patched = json_of(patched).await;
    assert_eq!(patched["description"], Value::Null, "null clears");
    assert_eq!(patched["title"], "Weather", "absent fields stay");
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["version"], 2);

    let unchanged = json_of(app.patch_json(&location, &json!({"enabled": false})).await).await;
    assert_eq!(
        unchanged["version"], 2,
        "a no-op patch does not bump the version"
    );

    assert_eq!(app.delete(&location).await.status(), StatusCode::NO_CONTENT);
    problem(app.get(&location).await, StatusCode::NOT_FOUND, "not-found").await;
    problem(
        app.delete(&location).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}

async fn secrets_are_masked_and_kept(app: TestApp) {
    let body = json!({
        "name": "github",
        "transport": {"type": "streamable-http", "url": "https://api.example.com/mcp",
                      "headers": {"Authorization": "Bearer ghp_supersecret", "X-Team": "a"}},
    });
    let server = register(&app, body).await;
    let text = server.to_string();
    assert!(!text.contains("supersecret"), "{text}");
    assert_eq!(server["transport"]["headers"]["authorization"], "********");

    // Pointing the masked secret at another origin is refused: it would send the
    // stored credential somewhere new on behalf of someone who never saw it.
    let mut elsewhere = server["transport"].clone();
    elsewhere["url"] = json!("https://attacker.example/mcp");
    let refused = problem(
        app.patch_json("/api/v1/servers/github", &json!({"transport": elsewhere}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    assert_eq!(
        refused["errors"][0]["field"],
        "transport.headers.authorization"
    );

    // A GET → edit → PATCH round trip on the same origin sends the mask back: the
    // stored secret stays.
    let mut transport = server["transport"].clone();
    transport["url"] = json!("https://api.example.com/v2/mcp");
    let patched = app
        .patch_json("/api/v1/servers/github", &json!({"transport": transport}))
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let store = app.store().await;
    let stored = gateway_domain::ServerRepository::get_by_name(
        &store,
        &gateway_domain::ServerName::parse("github").expect("name"),
    )
    .await
    .expect("stored");
    let gateway_domain::Transport::StreamableHttp { headers, url, .. } = stored.spec.transport
    else {
        panic!("transport kind changed")
    };
    assert_eq!(url.as_str(), "https://api.example.com/v2/mcp");
    assert_eq!(headers["authorization"].expose(), "Bearer ghp_supersecret");
    store.close().await;

    // The mask is never accepted as a new value.
    let masked_new = json!({"transport": {"type": "streamable-http", "url": "https://a.example/mcp",
                                          "headers": {"X-New": "********"}}});
    let body = problem(
        app.patch_json("/api/v1/servers/github", &masked_new).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "transport.headers.x-new");
}

async fn invalid_fields_are_all_named(app: TestApp) {
    let body = json!({
        "name": "Bad_Name",
        "title": "",
        "transport": {"type": "streamable-http", "url": "ftp://x", "headers": {"Host": "evil", "X-Ok": "a\nb"}},
        "tags": ["ok", "not ok"],
        "tenant": "has space",
    });
    let problem_body = problem(
        app.post_json("/api/v1/servers", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    let mut fields: Vec<String> = problem_body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap_or("").to_owned())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "name",
            "tags.1",
            "tenant",
            "title",
            "transport.headers.Host",
            "transport.headers.X-Ok",
            "transport.url"
        ],
        "{problem_body}"
    );

    // Decoding errors name the path; unknown fields are refused, not ignored.
    let transport = |extra: Value| json!({"name": "a", "transport": extra});
    let decoding_cases = [
        (
            json!({"name": "a", "transport": {"type": "streamable-http", "url": "http://h/mcp"}, "enabeld": true}),
            "enabeld",
        ),
        (
            transport(json!({"type": "streamable-http", "url": 42})),
            "transport.url",
        ),
        (json!({"name": "a"}), "transport"),
        (
            transport(json!({"type": "carrier-pigeon"})),
            "transport.type",
        ),
        (
            transport(json!({"type": "streamable-http", "url": "http://h/mcp", "command": "sh"})),
            "`command`",
        ),
        (transport(json!({"type": "streamable-http"})), "`url`"),
        (
            transport(json!({"type": "stdio", "url": "http://h"})),
            "`url`",
        ),
    ];
    for (body, named) in decoding_cases {
        let answer = problem(
            app.post_json("/api/v1/servers", &body).await,
            StatusCode::BAD_REQUEST,
            "malformed-body",
        )
        .await;
        let detail = answer["detail"].as_str().expect("detail");
        let field = answer["errors"][0]["field"].as_str().unwrap_or_default();
        assert!(
            detail.contains(named) || field == named,
            "{body} should name {named}: {answer}"
        );
    }
    let reserved = http_server_body("gateway");
    problem(
        app.post_json("/api/v1/servers", &reserved).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;

    // Nothing invalid was stored.
    let list = json_of(app.get("/api/v1/servers").await).await;
    assert_eq!(list["items"], json!([]));
}

async fn duplicate_names_conflict(app: TestApp) {
    register(&app, http_server_body("dup")).await;
    let body = problem(
        app.post_json("/api/v1/servers", &http_server_body("dup"))
            .await,
        StatusCode::CONFLICT,
        "name-taken",
    )
    .await;
    assert!(body["detail"].as_str().expect("detail").contains("dup"));
    register(&app, http_server_body("other")).await;
    problem(
        app.patch_json("/api/v1/servers/other", &json!({"name": "dup"}))
            .await,
        StatusCode::CONFLICT,
        "name-taken",
    )
    .await;
}

async fn stdio_is_refused_unless_allowed(app: TestApp) {
    let stdio = json!({"name": "local", "transport": {"type": "stdio", "command": "npx", "args": ["-y", "server"],
                                                      "env": {"API_KEY": "k"}}});
    let body = problem(
        app.post_json("/api/v1/servers", &stdio).await,
        StatusCode::FORBIDDEN,
        "stdio-disabled",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("upstreams.allow_stdio")
    );
    register(&app, http_server_body("remote")).await;
    let to_stdio = json!({"transport": {"type": "stdio", "command": "sh"}});
    problem(
        app.patch_json("/api/v1/servers/remote", &to_stdio).await,
        StatusCode::FORBIDDEN,
        "stdio-disabled",
    )
    .await;

    // Allowed, but only the executables listed.
    let allowed = TestApp::spawn_with(app.backend, |s| {
        s.upstreams.allow_stdio = true;
        s.upstreams.stdio_commands = vec!["npx".into()];
    })
    .await
    .expect("backend available");
    let shell = json!({"name": "shell", "transport": {"type": "stdio", "command": "/bin/sh", "args": ["-c", "id"]}});
    let refused = problem(
        allowed.post_json("/api/v1/servers", &shell).await,
        StatusCode::FORBIDDEN,
        "stdio-disabled",
    )
    .await;
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("stdio_commands")),
        "{refused}"
    );
    let server = register(&allowed, stdio).await;
    assert_eq!(server["transport"]["type"], "stdio");
    assert_eq!(server["transport"]["env"]["API_KEY"], "********");
    assert_eq!(server["transport"]["args"], json!(["-y", "server"]));
}

async fn stale_writes_are_refused(app: TestApp) {
    register(&app, http_server_body("cas")).await;
    let path = "/api/v1/servers/cas";
    let ok = app
        .client
        .patch(app.url(path))
        .header("If-Match", "\"1\"")
        .json(&json!({"title": "One"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(ok.status(), StatusCode::OK);
    let stale = app
        .client
        .patch(app.url(path))
        .header("If-Match", "\"1\"")
        .json(&json!({"title": "Two"}))
        .send()
        .await
        .expect("sent");
    problem(
        stale,
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
    )
    .await;
    let weird = app
        .client
        .patch(app.url(path))
        .header("If-Match", "W/\"2\"")
        .json(&json!({"title": "Two"}))
        .send()
        .await
        .expect("sent");
    problem(
        weird,
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
    )
    .await;
    problem(
        app.patch_json(path, &json!({"version": 1, "title": "Two"}))
            .await,
        StatusCode::CONFLICT,
        "stale-version",
    )
    .await;
    let mixed = app
        .client
        .patch(app.url(path))
        .header("If-Match", "\"2\"")
        .json(&json!({"version": 1}))
        .send()
        .await
        .expect("sent");
    problem(mixed, StatusCode::BAD_REQUEST, "bad-request").await;
    let current = json_of(app.get(path).await).await;
    assert_eq!(current["title"], "One", "no stale write landed");

    let stale_delete = app
        .client
        .delete(app.url(path))
        .header("If-Match", "\"1\"")
        .send()
        .await
        .expect("sent");
    problem(
        stale_delete,
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
    )
    .await;
    let delete = app
        .client
        .delete(app.url(path))
        .header("If-Match", "\"2\"")
        .send()
        .await
        .expect("sent");
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
}

async fn concurrent_updates_lose_nothing(app: TestApp) {
    register(&app, http_server_body("busy")).await;
    // Twenty writers race on version 1: exactly one wins, the others get 409.
    let racers = (0..20).map(|i| {
        let (client, url) = (app.client.clone(), app.url("/api/v1/servers/busy"));
        async move {
            client
                .patch(url)
                .json(&json!({"version": 1, "title": format!("t{i}")}))
                .send()
                .await
                .expect("sent")
                .status()
        }
    });
    let statuses = futures_util::future::join_all(racers).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );

    // Without a version each write re-reads and retries: every write that reports success is applied.
    let writers = (0..8).map(|i| {
        let (client, url) = (app.client.clone(), app.url("/api/v1/servers/busy"));
        async move {
            client
                .patch(url)
                .json(&json!({"description": format!("d{i}")}))
                .send()
                .await
                .expect("sent")
                .status()
        }
    });
    let statuses = futures_util::future::join_all(writers).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(ok >= 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    let final_state = json_of(app.get("/api/v1/servers/busy").await).await;
    assert_eq!(
        final_state["version"],
        2 + ok as i64,
        "one version per successful write: {final_state}"
    );
}

async fn list_filters_and_pages(app: TestApp) {
    for i in 0..25 {
        let mut body = http_server_body(&format!("srv-{i:02}"));
        body["tags"] = json!([if i % 2 == 0 { "even" } else { "odd" }]);
        body["enabled"] = json!(i % 5 != 0);
        if i == 7 {
            body["description"] = json!("Handles 100% of the WEATHER_data");
        }
        register(&app, body).await;
    }
    // Pages of 10 walk every server exactly once, in name order.
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/servers?limit=10&cursor={c}"),
            None => "/api/v1/servers?limit=10".to_owned(),
        };
        let page = json_of(app.get(&path).await).await;
        names.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|s| s["name"].as_str().unwrap_or("").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("srv-{i:02}")).collect();
    assert_eq!(names, expected);

    // A row inserted before the cursor does not shift the next page.
    let first = json_of(app.get("/api/v1/servers?limit=5").await).await;
    register(&app, http_server_body("aaa-first")).await;
    let next = json_of(
        app.get(&format!(
            "/api/v1/servers?limit=5&cursor={}",
            first["next_cursor"].as_str().expect("more")
        ))
        .await,
    )
    .await;
    assert_eq!(next["items"][0]["name"], "srv-05");

    let count = |page: &Value| page["items"].as_array().map_or(0, Vec::len);
    assert_eq!(
        count(&json_of(app.get("/api/v1/servers?tag=even&limit=100").await).await),
        13
    );
    assert_eq!(
        count(&json_of(app.get("/api/v1/servers?enabled=false&limit=100").await).await),
        5
    );
    assert_eq!(
        count(
            &json_of(
                app.get("/api/v1/servers?tag=odd&enabled=false&limit=100")
                    .await
            )
            .await
        ),
        2
    );
    // Discovery marks these unreachable upstreams unhealthy as it gets to them, so
    // states move while the test runs: each filter must return only its state.
    for state in ["unknown", "unhealthy"] {
        let page = json_of(
            app.get(&format!("/api/v1/servers?health={state}&limit=100"))
                .await,
        )
        .await;
        let items = page["items"].as_array().expect("items");
        assert!(
            items.iter().all(|s| s["health"]["state"] == state),
            "{state}: {page}"
        );
    }
    assert_eq!(
        count(&json_of(app.get("/api/v1/servers?health=healthy").await).await),
        0
    );
    let found = json_of(app.get("/api/v1/servers?q=weather_DATA").await).await;
    assert_eq!(
        found["items"][0]["name"], "srv-07",
        "case-insensitive, '_' literal: {found}"
    );
    assert_eq!(
        count(&json_of(app.get("/api/v1/servers?q=100%25").await).await),
        1,
        "'%' is literal"
    );
    assert_eq!(
        count(&json_of(app.get("/api/v1/servers?q=srv-1").await).await),
        10
    );

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("cursor=garbage", "cursor"),
        ("health=sick", "health"),
        ("tag=not%20ok", "tag"),
    ] {
        let body = problem(
            app.get(&format!("/api/v1/servers?{query}")).await,
            StatusCode::BAD_REQUEST,
            "bad-request",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
    }
    problem(
        app.get("/api/v1/servers?limit=abc").await,
        StatusCode::BAD_REQUEST,
        "bad-request",
    )
    .await;
    problem(
        app.get("/api/v1/servers?colour=red").await,
        StatusCode::BAD_REQUEST,
        "bad-request",
    )
    .await;
    let long = "x".repeat(201);
    let body = problem(
        app.get(&format!("/api/v1/servers?q={long}")).await,
        StatusCode::BAD_REQUEST,
        "bad-request",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "q");
}

async fn servers_are_found_by_id_or_name(app: TestApp) {
    let server = register(&app, http_server_body("by-both")).await;
    let id = server["id"].as_str().expect("id");
    assert_eq!(
        json_of(app.get(&format!("/api/v1/servers/{id}")).await).await["name"],
        "by-both"
    );
    assert_eq!(
        json_of(app.get("/api/v1/servers/by-both").await).await["id"],
        id
    );
    let body = problem(
        app.get("/api/v1/servers/Not_A_Name").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("Not_A_Name")
    );
    problem(
        app.get(&format!("/api/v1/servers/{}", uuid::Uuid::new_v4()))
            .await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}
