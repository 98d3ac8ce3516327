//! The gateway as an MCP subregistry, end to end: the official `server.json` examples
//! imported, exported unchanged and valid against the official schema; every
//! official invalid example refused with its field named; `/v0.1` responses valid
//! against the official OpenAPI document; pagination and `updated_since` over 1,000
//! servers; an imported remote registered and called through `/mcp`.
//!
//! The official schema, OpenAPI document and examples live outside the repository
//! (`../shared/registry-spec/`, or `REGISTRY_SPEC_DIR`); the tests that need them say
//! so and skip when the folder is absent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gateway_test_support::mcp::{call, connect, text_of};
use gateway_test_support::{TestApp, TestBackend};
use serde_json::{Value, json};

fn spec_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("REGISTRY_SPEC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/registry-spec")
        });
    if dir.join("server.schema.json").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: the official registry fixtures are not at {} (set REGISTRY_SPEC_DIR)",
            dir.display()
        );
        None
    }
}

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn examples(dir: &std::path::Path, kind: &str) -> Vec<(String, Value)> {
    let mut found: Vec<(String, Value)> = std::fs::read_dir(dir.join("examples").join(kind))
        .expect("examples folder")
        .filter_map(Result::ok)
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                read_json(&entry.path()),
            )
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The official server.json schema.
fn server_schema(dir: &std::path::Path) -> jsonschema::Validator {
    jsonschema::validator_for(&read_json(&dir.join("server.schema.json"))).expect("schema compiles")
}

/// A validator of one component of the official OpenAPI document (OpenAPI 3.1
/// schemas are JSON Schema 2020-12; their refs are pointed at a local `$defs`).
fn openapi_schema(dir: &std::path::Path, component: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(dir.join("openapi.yaml")).expect("openapi.yaml");
    let document: Value = serde_yaml_ng::from_str(&text).expect("openapi parses");
    let components = document["components"]["schemas"].clone();
    let bundled = serde_json::to_string(&json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": components,
        "$ref": format!("#/$defs/{component}"),
    }))
    .expect("json")
    .replace("#/components/schemas/", "#/$defs/");
    jsonschema::validator_for(&serde_json::from_str(&bundled).expect("json")).expect("compiles")
}

fn assert_valid(validator: &jsonschema::Validator, value: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what} is invalid: {errors:?}\n{value}");
}

async fn import(app: &TestApp, body: &Value) -> reqwest::Response {
    app.post_json("/api/v1/servers/import", body).await
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("json")
}

fn encoded(name: &str) -> String {
    name.replace('/', "%2F").replace('+', "%2B")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_examples_import_export_unchanged_and_validate() {
    let Some(dir) = spec_dir() else { return };
    let schema = server_schema(&dir);
    let list_schema = openapi_schema(&dir, "ServerList");
    let response_schema = openapi_schema(&dir, "ServerResponse");
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        let Some(app) = TestApp::spawn(backend).await else {
            eprintln!("skipping {backend:?}: TEST_DATABASE_URL is not set");
            continue;
        };
        let valid = examples(&dir, "valid");
        assert!(valid.len() >= 3, "{valid:?}");
        for (file, document) in &valid {
            let answer = import(&app, document).await;
            assert_eq!(
                answer.status(),
                200,
                "{file}: {}",
                answer.text().await.unwrap_or_default()
            );
            let again: Value = import(&app, document).await.json().await.expect("json");
            assert_eq!(again["imported"][0]["outcome"], "unchanged", "{file}");

            let name = document["name"].as_str().expect("name");
            let version = document["version"].as_str().expect("version");
            for path in [
                format!("/v0.1/servers/{}/versions/latest", encoded(name)),
                format!(
                    "/v0.1/servers/{}/versions/{}",
                    encoded(name),
                    encoded(version)
                ),
            ] {
                let one = get_json(&app, &path).await;
                assert_valid(&response_schema, &one, &path);
                assert_eq!(&one["server"], document, "{path}: unchanged");
                let official = &one["_meta"]["io.modelcontextprotocol.registry/official"];
                assert_eq!(official["status"], "active");
                assert_eq!(official["isLatest"], true);
            }
            let versions =
                get_json(&app, &format!("/v0.1/servers/{}/versions", encoded(name))).await;
            assert_valid(&list_schema, &versions, "versions");
        }
        let list = get_json(&app, "/v0.1/servers").await;
        assert_valid(&list_schema, &list, "/v0.1/servers");
        assert_eq!(list["metadata"]["count"], valid.len());

        // The bulk export is what was imported, and valid against the official schema.
        let exported = get_json(&app, "/api/v1/registry/export").await;
        let exported = exported.as_array().expect("a list");
        assert_eq!(exported.len(), valid.len());
        for document in exported {
            assert_valid(&schema, document, "an exported server.json");
            assert!(
                valid.iter().any(|(_, d)| d == document),
                "exported unchanged: {document}"
            );
        }

        // Every official invalid example is refused, naming the field.
        for (file, document) in examples(&dir, "invalid") {
            let expected = match file.as_str() {
                "bad-name-pattern.json" => "name",
                "description-too-long.json" => "description",
                "missing-name.json" => "name",
                "package-version-latest.json" => "packages.0.version",
                "positional-argument-missing-value.json" => "packages.0.packageArguments.0",
                other => panic!("an invalid example this test does not know: {other}"),
            };
            let answer = import(&app, &document).await;
            assert_eq!(answer.status(), 422, "{file}");
            let fields = gateway_test_support::problem_fields(answer).await;
            assert_eq!(fields, [expected], "{file}");
        }

        // Versions are immutable.
        let mut changed = valid[0].1.clone();
        changed["description"] = json!("Another description.");
        let refused = import(&app, &changed).await;
        assert_eq!(refused.status(), 409);
        let problem: Value = refused.json().await.expect("problem");
        assert!(
            problem["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("version-exists")),
            "{problem}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_remote_is_registered_and_callable_through_mcp() {
    let upstream = gateway_test_upstream::serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("upstream");
    let app = TestApp::spawn(TestBackend::Sqlite).await.expect("app");
    let document = json!({
        "name": "io.github.acme/echo-service",
        "description": "Echoes what it is told.",
        "version": "1.2.0",
        "remotes": [{
            "type": "streamable-http",
            "url": "http://127.0.0.1:{port}/mcp",
            "headers": [{"name": "X-Api-Key", "isSecret": true}],
            "variables": {"port": {"description": "The port"}}
        }]
    });
    // A URL variable without a value or default is named.
    let missing = import(&app, &json!({"server": document, "register": {}})).await;
    assert_eq!(missing.status(), 422);
    assert_eq!(
        gateway_test_support::problem_fields(missing).await,
        ["register.variables.port"]
    );

    let body = json!({"server": document, "register": {
        "name": "echo", "variables": {"port": upstream.port().to_string()}, "headers": {"X-Api-Key": "k-123"}}});
    let answer = import(&app, &body).await;
    assert_eq!(
        answer.status(),
        200,
        "{}",
        answer.text().await.unwrap_or_default()
    );
    let again = import(&app, &body).await;
    assert_eq!(again.status(), 409, "the upstream exists already");
    let server: Value = get_json(&app, "/api/v1/servers/echo").await;
    assert_eq!(server["transport"]["url"], upstream.url());
    let headers = &server["transport"]["headers"];
    let masked = headers["x-api-key"]
        .as_str()
        .or(headers["X-Api-Key"].as_str());
    assert_eq!(
        masked,
        Some("********"),
        "stored sealed, never returned: {server}"
    );

    let refreshed = app
        .client
        .post(app.url("/api/v1/servers/echo/refresh"))
        .send()
        .await
        .expect("sent");
    assert_eq!(refreshed.status(), 200);
    let (client, _) = connect(&app.url("/mcp")).await;
    let result = client
        .peer()
        .call_tool(call("echo__echo", json!({"text": "from the registry"})))
        .await
        .expect("call");
    assert_eq!(text_of(&result), "from the registry");
    assert!(
        upstream.authorizations_seen().is_empty(),
        "the client's credentials never travel upstream"
    );

    // The subregistry says where it runs; the export is the document as imported.
    let listed = get_json(&app, "/v0.1/servers?version=latest").await;
    let runtime = &listed["servers"][0]["_meta"]["local.mcp-gateway/runtime"];
    assert_eq!(runtime["mcpEndpoint"], "/mcp/servers/echo", "{listed}");
    assert_eq!(runtime["health"].as_str().map(str::is_empty), Some(false));
    let exported = get_json(&app, "/api/v1/servers/echo/server.json").await;
    assert_eq!(exported, document);
    let plain = app
        .post_json("/api/v1/servers", &json!({"name": "plain", "transport": {"type": "streamable-http", "url": upstream.url()}}))
        .await;
    assert_eq!(plain.status(), 201);
    assert_eq!(
        app.get("/api/v1/servers/plain/server.json").await.status(),
        404
    );
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_statuses_and_the_latest_follow_semver() {
    let app = TestApp::spawn(TestBackend::Sqlite).await.expect("app");
    let doc = |version: &str| json!({"name": "io.github.acme/tool", "description": "A tool.", "version": version});
    let all = json!([doc("1.0.0"), doc("1.10.0"), doc("1.9.0")]);
    assert_eq!(import(&app, &all).await.status(), 200);
    let latest = get_json(&app, "/v0.1/servers/io.github.acme%2Ftool/versions/latest").await;
    assert_eq!(
        latest["server"]["version"], "1.10.0",
        "semver, not string order"
    );
    let versions = get_json(&app, "/v0.1/servers/io.github.acme%2Ftool/versions").await;
    let order: Vec<&str> = versions["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .filter_map(|s| s["server"]["version"].as_str())
        .collect();
    assert_eq!(
        order,
        ["1.9.0", "1.10.0", "1.0.0"],
        "newest publication first"
    );

    // Deleting the latest hides it and makes the next one latest.
    let deleted = app
        .client
        .patch(app.url("/v0.1/servers/io.github.acme%2Ftool/versions/1.10.0/status"))
        .json(&json!({"status": "deleted", "statusMessage": "withdrawn"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        deleted.status(),
        200,
        "{}",
        deleted.text().await.unwrap_or_default()
    );
    let latest = get_json(&app, "/v0.1/servers/io.github.acme%2Ftool/versions/latest").await;
    assert_eq!(latest["server"]["version"], "1.9.0");
    assert_eq!(
        app.get("/v0.1/servers/io.github.acme%2Ftool/versions/1.10.0")
            .await
            .status(),
        404
    );
    let with_deleted = get_json(
        &app,
        "/v0.1/servers/io.github.acme%2Ftool/versions/1.10.0?include_deleted=true",
    )
    .await;
    let official = &with_deleted["_meta"]["io.modelcontextprotocol.registry/official"];
    assert_eq!(official["status"], "deleted");
    assert_eq!(official["statusMessage"], "withdrawn");
    assert_eq!(official["isLatest"], false);

    // Bad status changes and names are named.
    let active_with_message = app
        .client
        .patch(app.url("/v0.1/servers/io.github.acme%2Ftool/versions/1.9.0/status"))
        .json(&json!({"status": "active", "statusMessage": "why"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        active_with_message.status(),
        400,
        "as the official API answers"
    );
    let unknown_status = app
        .client
        .patch(app.url("/v0.1/servers/io.github.acme%2Ftool/versions/1.9.0/status"))
        .json(&json!({"status": "gone"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(unknown_status.status(), 400);
    assert_eq!(
        gateway_test_support::problem_fields(unknown_status).await,
        ["status"]
    );
    assert_eq!(
        app.get("/v0.1/servers/nobody%2Fnothing/versions")
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get("/v0.1/servers/io.github.acme%2Ftool/versions/%+A")
            .await
            .status(),
        400,
        "only hex digits after %"
    );

    // A build version travels percent-encoded; the status change is audited.
    assert_eq!(import(&app, &doc("2.0.0+build.7")).await.status(), 200);
    let build = get_json(
        &app,
        "/v0.1/servers/io.github.acme%2Ftool/versions/2.0.0%2Bbuild.7",
    )
    .await;
    assert_eq!(build["server"]["version"], "2.0.0+build.7");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = get_json(&app, "/api/v1/audit?limit=50").await;
        let audited = events["items"].as_array().is_some_and(|items| {
            items.iter().any(|e| {
                e["action"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("PATCH /v0.1/servers/"))
            })
        });
        if audited {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the status change is not audited: {events}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.get("/v0.1/servers/bad%zzname/versions").await.status(),
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_updated_since_over_1000_servers() {
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        let Some(app) =
            TestApp::spawn_with(backend, |s| s.http.max_body_bytes = 4 * 1024 * 1024).await
        else {
            eprintln!("skipping {backend:?}: TEST_DATABASE_URL is not set");
            continue;
        };
        let documents: Vec<Value> = (0..1000)
            .map(|i| json!({"name": format!("io.example.n{:03}/server-{i:04}", i % 7), "description": "Generated.", "version": "1.0.0"}))
            .collect();
        let imported = import(&app, &Value::Array(documents.clone())).await;
        assert_eq!(imported.status(), 200, "{backend:?}");

        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = "/v0.1/servers?limit=100".to_owned();
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page = get_json(&app, &path).await;
            let servers = page["servers"].as_array().expect("servers");
            assert!(servers.len() <= 100);
            seen.extend(
                servers
                    .iter()
                    .filter_map(|s| s["server"]["name"].as_str().map(str::to_owned)),
            );
            match page["metadata"]["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        let mut expected: Vec<String> = documents
            .iter()
            .filter_map(|d| d["name"].as_str().map(str::to_owned))
            .collect();
        expected.sort();
        assert_eq!(
            seen, expected,
            "{backend:?}: every server once, in name order"
        );

        let searched = get_json(&app, "/v0.1/servers?search=SERVER-0042&limit=100").await;
        assert_eq!(
            searched["metadata"]["count"], 1,
            "case-insensitive substring of the name"
        );

        // updated_since: strictly after, and deletions included.
        let since = chrono::Utc::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (name, status) in [
            ("io.example.n000/server-0000", "deprecated"),
            ("io.example.n001/server-0001", "deleted"),
        ] {
            let changed = app
                .client
                .patch(app.url(&format!(
                    "/v0.1/servers/{}/versions/1.0.0/status",
                    encoded(name)
                )))
                .json(&json!({"status": status}))
                .send()
                .await
                .expect("sent");
            assert_eq!(changed.status(), 200);
        }
        let since_text = since
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .replace('+', "%2B");
        let delta = get_json(&app, &format!("/v0.1/servers?updated_since={since_text}")).await;
        let names: Vec<&str> = delta["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .filter_map(|s| s["server"]["name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["io.example.n000/server-0000", "io.example.n001/server-0001"],
            "{backend:?}"
        );
        let all = get_json(&app, "/v0.1/servers?limit=100&search=server-0001").await;
        assert_eq!(all["metadata"]["count"], 0, "deleted is hidden by default");

        for bad in [
            format!("/v0.1/servers?updated_since={since_text}&include_deleted=false"),
            "/v0.1/servers?updated_since=yesterday".to_owned(),
            "/v0.1/servers?limit=0".to_owned(),
            "/v0.1/servers?limit=101".to_owned(),
            "/v0.1/servers?cursor=garbage".to_owned(),
        ] {
            let answer = app.get(&bad).await;
            assert_eq!(answer.status(), 400, "{bad}");
            assert_eq!(
                answer
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok()),
                Some("application/problem+json"),
                "{bad}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_runs_only_with_stdio_allowed_and_a_known_runtime() {
    let document = json!({
        "name": "io.github.user/local-weather", "description": "Local weather.", "version": "1.0.0",
        "packages": [
            {"registryType": "npm", "identifier": "@modelcontextprotocol/server-weather", "version": "1.0.0",
             "transport": {"type": "stdio"}, "runtimeHint": "npx"},
            {"registryType": "oci", "identifier": "docker.io/acme/weather:1.0.0", "transport": {"type": "stdio"}}
        ]
    });
    let register = |package: usize| {
        json!({"server": document, "register": {"package": package, "enabled": false,
               "environment": {"API_KEY": "secret-value"}}})
    };
    let locked = TestApp::spawn(TestBackend::Sqlite).await.expect("app");
    let refused = import(&locked, &register(0)).await;
    assert_eq!(refused.status(), 403, "stdio upstreams are off by default");
    let listed = get_json(&locked, "/v0.1/servers").await;
    assert_eq!(
        listed["metadata"]["count"], 0,
        "a refused import stores nothing"
    );

    let app = TestApp::spawn_with(TestBackend::Sqlite, |s| {
        s.upstreams.allow_stdio = true;
        s.upstreams.stdio_commands = vec!["npx".into(), "uvx".into()];
    })
    .await
    .expect("app");
    let answer = import(&app, &register(0)).await;
    assert_eq!(
        answer.status(),
        200,
        "{}",
        answer.text().await.unwrap_or_default()
    );
    let server = get_json(&app, "/api/v1/servers/local-weather").await;
    assert_eq!(server["transport"]["command"], "npx");
    assert_eq!(
        server["transport"]["args"],
        json!(["-y", "@modelcontextprotocol/server-weather@1.0.0"])
    );
    assert_eq!(server["transport"]["env"]["API_KEY"], "********");
    let unknown = import(
        &app,
        &json!({"server": document, "register": {"package": 1, "name": "oci-weather"}}),
    )
    .await;
    assert_eq!(unknown.status(), 422);
    assert_eq!(
        gateway_test_support::problem_fields(unknown).await,
        ["register.package"]
    );
    // A document cannot smuggle runtime options in as a package name.
    let mut sneaky = document.clone();
    sneaky["packages"][0]["identifier"] = json!("--call=touch /tmp/pwned");
    sneaky["version"] = json!("1.0.1");
    let refused = import(
        &app,
        &json!({"server": sneaky, "register": {"package": 0, "name": "sneaky"}}),
    )
    .await;
    assert_eq!(refused.status(), 422);
    assert_eq!(
        gateway_test_support::problem_fields(refused).await,
        ["register.package"]
    );
    let both = import(
        &app,
        &json!({"server": document, "register": {"package": 0, "remote": 0}}),
    )
    .await;
    assert_eq!(both.status(), 422);
    let stray = import(
        &app,
        &json!({"server": document, "register": {"colour": "red"}}),
    )
    .await;
    assert_eq!(stray.status(), 422);
    assert_eq!(
        gateway_test_support::problem_fields(stray).await,
        ["register.colour"]
    );
}

/// Polls `path` on `app` until `done` holds (the mirror runs in the background).
async fn eventually(app: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let value = get_json(app, path).await;
        if done(&value) {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} never got there: {value}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn names_of(list: &Value) -> Vec<String> {
    list["servers"]
        .as_array()
        .map(|servers| {
            servers
                .iter()
                .filter_map(|s| {
                    Some(format!(
                        "{} {}",
                        s["server"]["name"].as_str()?,
                        s["server"]["version"].as_str()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_registry_is_mirrored_through_its_v01_api() {
    let source = TestApp::spawn(TestBackend::Sqlite).await.expect("source");
    let doc = |name: &str, version: &str, description: &str| json!({"name": name, "description": description, "version": version});
    let first = json!([
        doc("io.github.user/a", "1.0.0", "A."),
        doc("io.github.user/b", "1.0.0", "B."),
        doc("io.other/c", "1.0.0", "C."),
    ]);
    assert_eq!(import(&source, &first).await.status(), 200);

    let base = source.url("");
    let mirror = TestApp::spawn_with(TestBackend::Sqlite, move |s| {
        s.registry_sync.url = Some(base.trim_end_matches('/').to_owned());
        s.registry_sync.allow = vec!["io.github.user/*".into()];
        s.registry_sync.interval_secs = 1;
    })
    .await
    .expect("mirror");
    // The mirror has its own version of b 1.1.0 already: a conflict keeps it.
    assert_eq!(
        import(&mirror, &doc("io.github.user/b", "1.1.0", "Ours."))
            .await
            .status(),
        200
    );

    let listed = eventually(&mirror, "/v0.1/servers", |l| l["metadata"]["count"] == 3).await;
    assert_eq!(
        names_of(&listed),
        [
            "io.github.user/a 1.0.0",
            "io.github.user/b 1.0.0",
            "io.github.user/b 1.1.0"
        ],
        "only what the allow-list admits"
    );

    // Changes at the source arrive as deltas: a new version, a deprecation.
    assert_eq!(
        import(
            &source,
            &json!([
                doc("io.github.user/a", "2.0.0", "A2."),
                doc("io.github.user/b", "1.1.0", "Theirs.")
            ])
        )
        .await
        .status(),
        200
    );
    let deprecated = source
        .client
        .patch(source.url("/v0.1/servers/io.github.user%2Fa/versions/1.0.0/status"))
        .json(&json!({"status": "deprecated", "statusMessage": "use 2.0.0"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(deprecated.status(), 200);
    let old = eventually(
        &mirror,
        "/v0.1/servers/io.github.user%2Fa/versions/1.0.0",
        |v| v["_meta"]["io.modelcontextprotocol.registry/official"]["status"] == "deprecated",
    )
    .await;
    assert_eq!(
        old["_meta"]["io.modelcontextprotocol.registry/official"]["statusMessage"],
        "use 2.0.0"
    );
    let latest = eventually(
        &mirror,
        "/v0.1/servers/io.github.user%2Fa/versions/latest",
        |v| v["server"]["version"] == "2.0.0",
    )
    .await;
    assert_eq!(latest["server"]["description"], "A2.");
    let ours = get_json(&mirror, "/v0.1/servers/io.github.user%2Fb/versions/1.1.0").await;
    assert_eq!(
        ours["server"]["description"], "Ours.",
        "a published version is never overwritten"
    );

    // A deletion at the source is mirrored, and stays so across a restart (whose first
    // pass reads everything, deleted entries included).
    let deleted = source
        .client
        .patch(source.url("/v0.1/servers/io.github.user%2Fb/versions/1.0.0/status"))
        .json(&json!({"status": "deleted"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 200);
    eventually(
        &mirror,
        "/v0.1/servers/io.github.user%2Fb/versions/1.0.0?include_deleted=true",
        |v| v["_meta"]["io.modelcontextprotocol.registry/official"]["status"] == "deleted",
    )
    .await;
    let mirror = mirror.restart().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = get_json(
        &mirror,
        "/v0.1/servers/io.github.user%2Fb/versions/1.0.0?include_deleted=true",
    )
    .await;
    assert_eq!(
        after["_meta"]["io.modelcontextprotocol.registry/official"]["status"],
        "deleted"
    );

    // The mirror publishes; it never registers or changes an upstream.
    let upstreams = get_json(&mirror, "/api/v1/servers").await;
    assert_eq!(upstreams["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_imports_leave_exactly_one_latest() {
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        let Some(app) = TestApp::spawn(backend).await else {
            eprintln!("skipping {backend:?}: TEST_DATABASE_URL is not set");
            continue;
        };
        let doc = |version: String| json!({"name": "io.github.acme/racy", "description": "Racy.", "version": version});
        // Ten new versions and ten copies of one document, all at once.
        let documents: Vec<Value> = (0..10)
            .map(|i| doc(format!("1.{i}.0")))
            .chain((0..10).map(|_| doc("0.1.0".into())))
            .collect();
        let answers =
            futures_util::future::join_all(documents.iter().map(|d| import(&app, d))).await;
        for answer in answers {
            assert_eq!(answer.status(), 200, "{backend:?}");
        }
        let latest = get_json(&app, "/v0.1/servers?version=latest&search=racy").await;
        assert_eq!(
            latest["metadata"]["count"], 1,
            "{backend:?}: exactly one latest: {latest}"
        );
        assert_eq!(latest["servers"][0]["server"]["version"], "1.9.0");
        let all = get_json(&app, "/v0.1/servers/io.github.acme%2Fracy/versions").await;
        assert_eq!(all["metadata"]["count"], 11, "{backend:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_registration_stores_nothing_and_deltas_round_trip() {
    let app = TestApp::spawn(TestBackend::Sqlite).await.expect("app");
    let document = json!({"name": "io.github.acme/remote", "description": "Remote.", "version": "1.0.0",
        "remotes": [{"type": "streamable-http", "url": "https://remote.example/mcp"}]});
    let refused = import(
        &app,
        &json!({"server": document, "register": {"name": "Bad Name"}}),
    )
    .await;
    assert_eq!(refused.status(), 422);
    assert_eq!(
        gateway_test_support::problem_fields(refused).await,
        ["register.name"]
    );
    let taken = app
        .post_json("/api/v1/servers", &json!({"name": "remote", "transport": {"type": "streamable-http", "url": "https://remote.example/mcp"}}))
        .await;
    assert_eq!(taken.status(), 201);
    let clash = import(&app, &json!({"server": document, "register": {}})).await;
    assert_eq!(clash.status(), 409, "the upstream name is taken");
    let listed = get_json(&app, "/v0.1/servers").await;
    assert_eq!(listed["metadata"]["count"], 0, "nothing was published");

    // A client that sends back the newest updatedAt it saw gets nothing new.
    assert_eq!(import(&app, &document).await.status(), 200);
    let listed = get_json(&app, "/v0.1/servers").await;
    let updated =
        listed["servers"][0]["_meta"]["io.modelcontextprotocol.registry/official"]["updatedAt"]
            .as_str()
            .expect("updatedAt")
            .replace('+', "%2B");
    let delta = get_json(&app, &format!("/v0.1/servers?updated_since={updated}")).await;
    assert_eq!(delta["metadata"]["count"], 0, "{delta}");
}
