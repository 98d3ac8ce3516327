//! The `mcp-gateway` binary as an operator runs it: configuration layering and
//! errors, JSON logs with request ids, graceful shutdown on SIGTERM, and the
//! PostgreSQL migration workflow.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway_test_support::{TestBackend, TestDatabase};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-gateway");

/// A command with a clean configuration environment, run in a fresh directory (so no
/// stray mcp-gateway.toml or ./data is picked up).
fn gateway(dir: &std::path::Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "0");
    for (key, _) in std::env::vars() {
        if key.starts_with("MCP_GATEWAY_") {
            command.env_remove(key);
        }
    }
    command
}

fn run(command: &mut Command) -> (i32, String, String) {
    let output = command.output().expect("binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn configuration_layers_in_documented_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("mcp-gateway.toml"),
        "[http]\nport = 9001\nhost = \"0.0.0.0\"\n[log]\nfilter = \"debug\"\n",
    )
    .expect("write config");
    // Beyond loopback without [auth], the gateway refuses to start unless told --insecure.
    let (code, _, err) = run(gateway(dir.path()).arg("check-config"));
    assert_eq!(code, 2);
    assert!(
        err.contains("http.host = \"0.0.0.0\"") && err.contains("--insecure"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("mcp-gateway.toml"),
        "[http]\nport = 9001\nhost = \"0.0.0.0\"\ninsecure = true\n[log]\nfilter = \"debug\"\n",
    )
    .expect("write config");
    let (code, out, err) = run(gateway(dir.path())
        .arg("check-config")
        .env("MCP_GATEWAY_HTTP__PORT", "9002")
        .env("MCP_GATEWAY_UPSTREAMS__ALLOW_STDIO", "true")
        .env("MCP_GATEWAY_UPSTREAMS__STDIO_COMMANDS", "[\"npx\"]")
        .env("DATABASE_URL", "postgres://gw:hunter2@db.internal/gateway"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("port = 9002"), "env beats the file: {out}");
    assert!(
        out.contains("host = \"0.0.0.0\""),
        "the file beats defaults: {out}"
    );
    assert!(out.contains("allow_stdio = true"), "{out}");
    assert!(
        out.contains("postgres://gw:********@db.internal/gateway"),
        "DATABASE_URL is read, password redacted: {out}"
    );
    assert!(!out.contains("hunter2"));

    let (code, out, _) = run(gateway(dir.path())
        .args(["--database-url", "sqlite::memory:", "check-config"])
        .env("MCP_GATEWAY_DATABASE__URL", "postgres://x@y/z"));
    assert_eq!(code, 0);
    assert!(
        out.contains("url = \"sqlite::memory:\""),
        "flags beat env: {out}"
    );
}

#[test]
fn invalid_configuration_stops_startup_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 12] = [
        (
            &["check-config"],
            &[("MCP_GATEWAY_UPSTREAMS__ALLOW_STDIO", "true")],
            "upstreams.stdio_commands",
        ),
        (
            &["check-config"],
            &[(
                "MCP_GATEWAY_UPSTREAMS__DENIED_NETWORKS",
                "[\"10.0.0.0/40\"]",
            )],
            "upstreams.denied_networks",
        ),
        (
            &["check-config"],
            &[(
                "MCP_GATEWAY_REGISTRY_SYNC__URL",
                "https://registry.example.com",
            )],
            "registry_sync.allow",
        ),
        (
            &["check-config"],
            &[
                ("MCP_GATEWAY_MCP__DEFAULT_VIEW", "compact"),
                ("MCP_GATEWAY_MCP__GATEWAY_TOOLS", "false"),
            ],
            "mcp.default_view",
        ),
        (
            &["check-config"],
            &[("MCP_GATEWAY_HTTP__PORT", "eighty")],
            "http.port",
        ),
        (&["--workers", "0", "check-config"], &[], "http.workers"),
        (
            &["check-config"],
            &[(
                "MCP_GATEWAY_CORS__ALLOWED_ORIGINS",
                "[\"https://app.example.com/path\"]",
            )],
            "cors.allowed_origins",
        ),
        (
            &["check-config"],
            &[("MCP_GATEWAY_MCP__DEFAULT_VIEW", "tiny")],
            "default_view",
        ),
        (
            &["check-config"],
            &[("MCP_GATEWAY_HTTP__PROT", "1")],
            "prot",
        ),
        (
            &["--database-url", "mysql://u@h/db", "check-config"],
            &[],
            "database.url",
        ),
        (
            &["--config", "/does/not/exist.toml", "check-config"],
            &[],
            "/does/not/exist.toml",
        ),
        (&["serve", "--host", "not a host"], &[], "http.host"),
    ];
    for (args, env, expected) in cases {
        let mut command = gateway(dir.path());
        command.args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        let (code, _, err) = run(&mut command);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?} names {expected}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("stack backtrace"),
            "{err}"
        );
    }
    let (code, _, err) = run(gateway(dir.path()).args(["serve", "--port", "99999"]));
    assert_eq!(code, 2, "clap rejects an out-of-range port: {err}");
    assert!(err.contains("--port"), "{err}");
    let (code, _, err) = run(gateway(dir.path()).args(["--workers", "many", "check-config"]));
    assert_eq!(code, 2, "clap rejects a non-number: {err}");
    assert!(err.contains("--workers"), "{err}");
}

#[test]
fn workers_come_from_the_command_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, out, err) = run(gateway(dir.path()).args(["--workers", "3", "check-config"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("workers = 3"), "{out}");
}

#[test]
fn help_and_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, out, _) = run(gateway(dir.path()).arg("--help"));
    assert_eq!(code, 0);
    for word in [
        "serve",
        "migrate",
        "check-config",
        "--config",
        "--log-format",
    ] {
        assert!(out.contains(word), "{word} in help: {out}");
    }
    let (code, out, _) = run(gateway(dir.path()).arg("--version"));
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")));
}

/// A gateway process with JSON logs, and the port it reported.
struct Running {
    child: Child,
    port: u16,
    lines: std::sync::mpsc::Receiver<String>,
}

/// A test that fails half-way must not leave its gateway running.
impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start(dir: &std::path::Path, extra: &[&str]) -> Running {
    spawn_and_wait(
        gateway(dir)
            .args(["--log-format", "json", "serve", "--port", "0"])
            .args(extra),
    )
}

fn start_with_database(dir: &std::path::Path, url: &str) -> Running {
    spawn_and_wait(gateway(dir).args([
        "--log-format",
        "json",
        "--database-url",
        url,
        "serve",
        "--port",
        "0",
    ]))
}

fn spawn_and_wait(command: &mut Command) -> Running {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        if let Some(port) = event["port"].as_u64().filter(|_| {
            event["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("listening"))
        }) {
            return Running {
                child,
                port: u16::try_from(port).expect("port"),
                lines,
            };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("gateway did not report its port");
}

fn collect_until_exit(mut running: Running) -> (i32, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = running.child.try_wait().expect("wait") {
            break status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "gateway did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(100));
    let events = running
        .lines
        .try_iter()
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    (code, events)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test]
async fn serves_json_logs_and_shuts_down_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = start(dir.path(), &[]);
    let client = gateway_test_support::http_client();
    let base = format!("http://127.0.0.1:{}", running.port);
    let response = client
        .get(format!("{base}/health"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("health");
    assert_eq!(response.status(), 200);
    let created = client
        .post(format!("{base}/api/v1/servers"))
        .json(&gateway_test_support::http_server_body("from-binary"))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    assert!(
        dir.path().join("data/gateway.db").exists(),
        "the embedded database is created under ./data"
    );
    assert!(
        dir.path().join("data/gateway.db-wal").exists(),
        "SQLite runs in WAL mode"
    );
    // No key configured: one is generated beside the database, readable by its owner only.
    let key_file = dir.path().join("data/secret.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file)
            .expect("key file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    let key = std::fs::read_to_string(&key_file).expect("key");

    sigterm(&running.child);
    let (code, events) = collect_until_exit(running);
    assert_eq!(code, 0, "graceful exit");
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    let position = |needle: &str| {
        messages
            .iter()
            .position(|m| m.contains(needle))
            .unwrap_or_else(|| panic!("{needle} in {messages:?}"))
    };
    assert!(position("shutdown requested") < position("HTTP server stopped"));
    assert!(position("HTTP server stopped") < position("database pool closed"));
    let access = events
        .iter()
        .find(|e| e["span"]["request_id"] == "trace-me-42")
        .unwrap_or_else(|| panic!("access line with the request id in {events:?}"));
    assert_eq!(access["status"], 200);
    assert_eq!(access["span"]["path"], "/health");
    assert!(access["latency_ms"].is_number());

    // Restarted on the same directory, the server registered before is still there.
    let running = start(dir.path(), &[]);
    let list: Value = client
        .get(format!("http://127.0.0.1:{}/api/v1/servers", running.port))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["items"][0]["name"], "from-binary");
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("key"),
        key,
        "the same key is used again"
    );
    sigterm(&running.child);
    assert_eq!(collect_until_exit(running).0, 0);
}

#[test]
fn a_taken_port_is_reported_not_panicked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let (code, _, err) = run(gateway(dir.path()).args(["--port", &port]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot listen on 127.0.0.1:") && err.contains("http.port"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn postgres_schema_must_be_migrated_first() {
    let Some(database) = TestDatabase::create(TestBackend::Postgres).await else {
        eprintln!("TEST_DATABASE_URL not set: PostgreSQL migration workflow skipped");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let url = database.url();
    let (code, _, err) =
        run(gateway(dir.path()).args(["--database-url", &url, "serve", "--port", "0"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cargo xtask migrate"),
        "the message says what to run: {err}"
    );

    let (code, out, err) = run(gateway(dir.path()).args(["--database-url", &url, "migrate"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("up to date"), "{out}");
    let (code, _, _) = run(gateway(dir.path()).args(["--database-url", &url, "migrate"]));
    assert_eq!(code, 0, "migrating twice is harmless");

    let running = start_with_database(dir.path(), &url);
    let response = gateway_test_support::http_client()
        .get(format!("http://127.0.0.1:{}/ready", running.port))
        .send()
        .await
        .expect("ready");
    assert_eq!(response.status(), 200);

    // A rolling upgrade: a newer binary's migration job has run. This binary keeps
    // serving (and ready) on the newer, additive schema, and says so.
    gateway_test_support::execute_sql_on(
        &url,
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m20991231_000001_from_the_future', 0)",
    )
    .await;
    let response = gateway_test_support::http_client()
        .get(format!("http://127.0.0.1:{}/ready", running.port))
        .send()
        .await
        .expect("ready");
    assert_eq!(response.status(), 200, "still ready on a newer schema");
    sigterm(&running.child);
    assert_eq!(collect_until_exit(running).0, 0);
    // An older binary starts on it too (before, it refused: "migration file missing").
    let restarted = start_with_database(dir.path(), &url);
    sigterm(&restarted.child);
    assert_eq!(collect_until_exit(restarted).0, 0);
    drop(database);
}

/// SIGTERM while a request is still uploading its body: the gateway stops accepting
/// new connections but lets that request finish (and answers it) before exiting.
#[tokio::test]
async fn in_flight_requests_finish_during_shutdown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = start(dir.path(), &[]);
    let url = format!("http://127.0.0.1:{}/api/v1/servers", running.port);
    let body = serde_json::to_vec(&gateway_test_support::http_server_body("late")).expect("json");
    let (first, rest) = body.split_at(body.len() / 2);
    let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), receiver))
    });
    let request = tokio::spawn(
        gateway_test_support::http_client()
            .post(url.clone())
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    );
    sender.send(first.to_vec()).await.expect("first half");
    tokio::time::sleep(Duration::from_millis(300)).await;

    sigterm(&running.child);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = gateway_test_support::http_client()
        .get(url.replace("/api/v1/servers", "/health"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "no new connections are accepted while draining"
    );

    sender.send(rest.to_vec()).await.expect("second half");
    drop(sender);
    let response = request
        .await
        .expect("task")
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 201);
    let (code, events) = collect_until_exit(running);
    assert_eq!(code, 0);
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "database pool closed; goodbye")
    );
}

/// One HTTP request as a minimal OTLP collector received it.
struct Received {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// A stand-in OpenTelemetry collector: accepts OTLP/HTTP posts, answers 200 with an
/// empty protobuf body, and hands each request to the test.
async fn collector() -> (u16, tokio::sync::mpsc::UnboundedReceiver<Received>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (sender, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut reader = tokio::io::BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line
                        .split(' ')
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    let (mut length, mut content_type) = (0, String::new());
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            match name.to_ascii_lowercase().as_str() {
                                "content-length" => length = value.trim().parse().unwrap_or(0),
                                "content-type" => content_type = value.trim().to_owned(),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let _ = sender.send(Received {
                        path,
                        content_type,
                        body,
                    });
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if reader.get_mut().write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, received)
}

/// Registers a Streamable HTTP upstream on a running gateway and lists its tools.
async fn register_http_upstream(client: &reqwest::Client, base: &str, name: &str, url: &str) {
    let body =
        serde_json::json!({"name": name, "transport": {"type": "streamable-http", "url": url}});
    let created = client
        .post(format!("{base}/api/v1/servers"))
        .json(&body)
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let refreshed = client
        .post(format!("{base}/api/v1/servers/{name}/refresh"))
        .send()
        .await
        .expect("refresh");
    assert_eq!(refreshed.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_when_an_endpoint_is_configured() {
    let (port, mut received) = collector().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let running = spawn_and_wait(
        gateway(dir.path())
            .env(
                "MCP_GATEWAY_TRACING__OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            )
            .env("MCP_GATEWAY_TRACING__SERVICE_NAME", "gateway-under-test")
            // An MCP client's open stream must not hold the shutdown for long.
            .env("MCP_GATEWAY_HTTP__SHUTDOWN_TIMEOUT_SECS", "2")
            .args(["--log-format", "json", "serve", "--port", "0"]),
    );
    let client = gateway_test_support::http_client();
    let response = client
        .get(format!("http://127.0.0.1:{}/health", running.port))
        .header("x-request-id", "exported-request")
        .send()
        .await
        .expect("health");
    assert_eq!(response.status(), 200);
    // An MCP call: its span names the server and tool, the upstream hop is a child.
    let upstream = gateway_test_upstream::serve_http(([127, 0, 0, 1], 0).into())
        .await
        .expect("upstream");
    let base = format!("http://127.0.0.1:{}", running.port);
    register_http_upstream(&client, &base, "traced", &upstream.url()).await;
    let (mcp, _) = gateway_test_support::mcp::connect(&format!("{base}/mcp")).await;
    mcp.peer()
        .call_tool(gateway_test_support::mcp::call(
            "traced__echo",
            serde_json::json!({"text": "hi"}),
        ))
        .await
        .expect("call");
    let _ = mcp.cancel().await;
    // Shutdown flushes what the batch exporter still holds.
    sigterm(&running.child);
    assert_eq!(collect_until_exit(running).0, 0);
    upstream.stop().await;
    let mut exported = Vec::new();
    while let Ok(Some(export)) = tokio::time::timeout(Duration::from_secs(3), received.recv()).await
    {
        assert_eq!(export.path, "/v1/traces");
        assert_eq!(export.content_type, "application/x-protobuf");
        exported.extend(export.body);
    }
    // Protobuf keeps strings as UTF-8 bytes: span names, attributes and the service.
    let contains = |needle: &str| {
        exported
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    };
    assert!(!exported.is_empty(), "the collector got an export");
    for needle in [
        "http_request",
        "exported-request",
        "gateway-under-test",
        "mcp_request",
        "upstream_call",
        "traced",
        "session_id",
    ] {
        assert!(contains(needle), "`{needle}` is in the exported spans");
    }
}

#[test]
fn without_an_endpoint_nothing_is_exported_and_bad_endpoints_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = run(gateway(dir.path())
        .env("MCP_GATEWAY_TRACING__OTLP_ENDPOINT", "collector:4318")
        .arg("check-config"));
    assert_eq!(code, 2);
    assert!(stderr.contains("tracing.otlp_endpoint"), "{stderr}");
    let (code, _, stderr) = run(gateway(dir.path())
        .env("MCP_GATEWAY_TRACING__SAMPLE_RATIO", "1.5")
        .arg("check-config"));
    assert_eq!(code, 2);
    assert!(stderr.contains("tracing.sample_ratio"), "{stderr}");
    let (code, stdout, _) = run(gateway(dir.path()).arg("check-config"));
    assert_eq!(code, 0);
    assert!(
        !stdout.contains("otlp_endpoint"),
        "off by default: {stdout}"
    );
}

#[test]
fn a_secrets_key_is_checked_and_never_printed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = run(gateway(dir.path())
        .env("MCP_GATEWAY_SECRETS__KEY", "too-short")
        .arg("check-config"));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("secrets.key") && stderr.contains("32 bytes"),
        "{stderr}"
    );
    let key = "c2VjcmV0LWtleS1vZi10aGlydHktdHdvLWJ5dGVzISE=";
    let (code, stdout, _) = run(gateway(dir.path())
        .env("MCP_GATEWAY_SECRETS__KEY", key)
        .arg("check-config"));
    assert_eq!(code, 0);
    assert!(
        !stdout.contains(key) && stdout.contains("key = \"********\""),
        "{stdout}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "check-config creates nothing"
    );
}

/// SIGTERM while clients keep calling tools: every call a client got an answer for is
/// in the audit trail, and the shutdown report accounts for every event (written or
/// spilled, none lost), all of them in the database after the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_audit_event() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let dir = tempfile::tempdir().expect("temp dir");
    let upstream = gateway_test_upstream::serve_http("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("upstream");
    let running = start(dir.path(), &[]);
    let base = format!("http://127.0.0.1:{}", running.port);
    let client = gateway_test_support::http_client();
    register_http_upstream(&client, &base, "load", &upstream.url()).await;

    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..6 {
        let (answered, stop, url) = (answered.clone(), stop.clone(), format!("{base}/mcp"));
        workers.push(tokio::spawn(async move {
            let Ok((session, _)) = gateway_test_support::mcp::connect_with_token(&url, None).await
            else {
                return;
            };
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let params = gateway_test_support::mcp::call(
                    "load__echo",
                    serde_json::json!({"text": format!("{worker}-{n}")}),
                );
                match session.call_tool(params).await {
                    Ok(_) | Err(rmcp::ServiceError::McpError(_)) => {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => break,
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = answered.load(Ordering::SeqCst);
    assert!(before > 10, "load is running: {before} calls answered");
    sigterm(&running.child);
    let (code, events) = tokio::task::spawn_blocking(move || collect_until_exit(running))
        .await
        .expect("collected");
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        let _ = tokio::time::timeout(Duration::from_secs(5), worker).await;
    }
    assert_eq!(code, 0, "graceful exit");
    let report = events
        .iter()
        .find(|e| e["message"] == "audit log flushed")
        .unwrap_or_else(|| panic!("the audit report in {events:?}"));
    let field = |name: &str| report[name].as_u64().unwrap_or(u64::MAX);
    assert_eq!(field("lost"), 0, "{report}");
    assert_eq!(
        field("recorded"),
        field("written") + field("spilled"),
        "{report}"
    );
    let answered = answered.load(Ordering::SeqCst) as u64;

    // The next start replays anything spilled; every event is then in the database.
    let running = start(dir.path(), &[]);
    let base = format!("http://127.0.0.1:{}", running.port);
    let count = |action: Option<&'static str>| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let mut total = 0u64;
            let mut cursor: Option<String> = None;
            loop {
                let mut url = format!("{base}/api/v1/audit?limit=500");
                if let Some(action) = action {
                    url.push_str(&format!("&action={action}"));
                }
                if let Some(cursor) = &cursor {
                    url.push_str(&format!("&cursor={cursor}"));
                }
                let page: Value = client
                    .get(url)
                    .send()
                    .await
                    .expect("audit")
                    .json()
                    .await
                    .expect("page");
                total += page["items"].as_array().map_or(0, Vec::len) as u64;
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => return total,
                }
            }
        }
    };
    let mut stored = 0;
    for _ in 0..50 {
        stored = count(None).await;
        if stored >= field("recorded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stored >= field("recorded"),
        "{stored} stored, report {report}"
    );
    let calls = count(Some("tools/call")).await;
    assert!(
        calls >= answered,
        "{calls} call events for {answered} answered calls"
    );
    sigterm(&running.child);
    assert_eq!(collect_until_exit(running).0, 0);
    upstream.stop().await;
}

#[test]
fn import_publishes_server_json_files_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("servers.json");
    std::fs::write(
        &good,
        r#"[{"name": "io.github.user/weather", "description": "Weather.", "version": "1.0.2"},
            {"name": "io.github.user/tides", "description": "Tides.", "version": "0.3.0"}]"#,
    )
    .expect("write");
    let (code, out, err) = run(gateway(dir.path()).args(["import", "servers.json"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("created io.github.user/weather 1.0.2"),
        "{out}"
    );
    assert!(out.contains("created io.github.user/tides 0.3.0"), "{out}");
    let (code, out, _) = run(gateway(dir.path()).args(["import", "servers.json"]));
    assert_eq!(code, 0);
    assert!(
        out.contains("unchanged io.github.user/weather 1.0.2"),
        "{out}"
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"name": "io.github.user/weather", "description": "Weather.", "version": "1.0.3",
            "packages": [{"registryType": "npm", "identifier": "x", "version": "latest", "transport": {"type": "stdio"}}]}"#,
    )
    .expect("write");
    for (args, expected) in [
        (vec!["import", "bad.json"], "packages.0.version"),
        (vec!["import", "missing.json"], "missing.json"),
        (
            vec!["import", "http://127.0.0.1:9/servers.json"],
            "127.0.0.1:9",
        ),
    ] {
        let (code, _, err) = run(gateway(dir.path()).args(&args));
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?} names {expected}: {err}");
    }
    std::fs::write(&bad, "{not json").expect("write");
    let (code, _, err) = run(gateway(dir.path()).args(["import", "bad.json"]));
    assert_eq!(code, 1);
    assert!(err.contains("not JSON"), "{err}");
}

/// A crash (SIGKILL) in the middle of writes leaves an SQLite database the next start
/// opens: every write the client saw acknowledged is there, and the store is
/// consistent (WAL recovery).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill_during_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The per-address API budget would refuse this many writes from one address.
    let unlimited = |dir: &std::path::Path| {
        spawn_and_wait(
            gateway(dir)
                .env("MCP_GATEWAY_RATE_LIMITS__API_PER_ADDRESS__RATE", "0")
                .args(["--log-format", "json", "serve", "--port", "0"]),
        )
    };
    let mut running = unlimited(dir.path());
    let base = format!("http://127.0.0.1:{}", running.port);
    let client = gateway_test_support::http_client();
    // Four writers register servers as fast as they can; the process is killed under them.
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0..10_000 {
                    let name = format!("w{writer}-{i}");
                    let body = gateway_test_support::http_server_body(&name);
                    match client
                        .post(format!("{base}/api/v1/servers"))
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(response) if response.status() == 201 => acknowledged.push(name),
                        _ => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let status = Command::new("kill")
        .args(["-KILL", &running.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let _ = running.child.wait();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer"));
    }
    assert!(!acknowledged.is_empty(), "writes happened before the kill");

    let restarted = unlimited(dir.path());
    let base = format!("http://127.0.0.1:{}", restarted.port);
    assert_eq!(
        client
            .get(format!("{base}/ready"))
            .send()
            .await
            .expect("ready")
            .status(),
        200,
        "the database opens after the crash"
    );
    for name in &acknowledged {
        let found = client
            .get(format!("{base}/api/v1/servers/{name}"))
            .send()
            .await
            .expect("read");
        assert_eq!(found.status(), 200, "acknowledged write `{name}` survived");
    }
    let integrity = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])",
        ])
        .arg(dir.path().join("data/gateway.db"))
        .output();
    if let Ok(output) = integrity {
        let verdict = String::from_utf8_lossy(&output.stdout);
        assert!(
            verdict.trim() == "ok" || !output.status.success(),
            "integrity: {verdict}"
        );
    }
    sigterm(&restarted.child);
    let _ = collect_until_exit(restarted);
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`: resident now, `VmHWM`: the peak).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Opens an MCP session with `initialize` and `notifications/initialized`; the
/// response to `initialize` (the session id in its headers, or the refusal).
async fn open_session(client: &reqwest::Client, url: &str) -> reqwest::Response {
    let initialize = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "idle", "version": "1"}}});
    let response = client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .expect("initialize sent");
    if let Some(id) = response.headers().get("mcp-session-id") {
        let initialized = client
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await
            .expect("initialized sent");
        assert_eq!(initialized.status(), 202);
    }
    response
}

/// The most a session may add to the gateway's resident memory. Measured: 88 KiB per
/// idle session in this debug build, 70–116 KiB in release builds depending on how
/// many open at once, mostly rmcp's per-session channels (docs/benchmarks.md). The
/// bound leaves room for allocator noise; a copy of anything per session would blow it.
const MAX_KIB_PER_IDLE_SESSION: u64 = 160;

/// 2,000 concurrent idle sessions (the configured cap) keep the gateway's memory
/// bounded, and the next session is refused with a clear error instead of a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_sessions_keep_memory_bounded_and_the_next_is_refused() {
    use futures_util::StreamExt;
    const SESSIONS: usize = 2_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut running = spawn_and_wait(
        gateway(dir.path())
            .env("MCP_GATEWAY_MCP__MAX_SESSIONS", SESSIONS.to_string())
            .env(
                "MCP_GATEWAY_MCP__MAX_SESSIONS_PER_CALLER",
                SESSIONS.to_string(),
            )
            .args(["--log-format", "json", "serve", "--port", "0"]),
    );
    let pid = running.child.id();
    let url = format!("http://127.0.0.1:{}/mcp", running.port);
    let client = gateway_test_support::http_client();
    // Warm up (the first session builds what every later one shares).
    assert_eq!(open_session(&client, &url).await.status(), 200);
    let before = memory_kib(pid, "VmRSS");
    let statuses: Vec<u16> = futures_util::stream::iter(1..SESSIONS)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move { open_session(&client, &url).await.status().as_u16() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "every session opens");
    let after = memory_kib(pid, "VmRSS");
    let per_session = after.saturating_sub(before) / SESSIONS as u64;
    eprintln!(
        "RSS {before} KiB -> {after} KiB with {SESSIONS} idle sessions: {per_session} KiB each"
    );
    assert!(
        per_session <= MAX_KIB_PER_IDLE_SESSION,
        "{per_session} KiB per idle session ({before} -> {after} KiB)"
    );

    let refused = open_session(&client, &url).await;
    assert_eq!(refused.status(), 503);
    let error: Value = refused.json().await.expect("json-rpc error");
    assert_eq!(error["error"]["code"], -32039, "{error}");
    assert!(
        running.child.try_wait().expect("wait").is_none(),
        "still running"
    );
    assert_eq!(
        client
            .get(format!("http://127.0.0.1:{}/health", running.port))
            .send()
            .await
            .expect("health")
            .status(),
        200
    );
    let _ = running.child.kill();
    let _ = running.child.wait();
}

/// A 50 MB result from an upstream is refused at `mcp.max_response_bytes` (16 MiB by
/// default) with a JSON-RPC error, and the gateway's peak memory grows by a bounded
/// amount, not by the size of the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_upstream_result_is_refused_within_bounded_memory() {
    use gateway_test_support::hostile::HostileUpstream;
    let hostile = HostileUpstream::start(50 * 1024 * 1024);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut running =
        spawn_and_wait(gateway(dir.path()).args(["--log-format", "json", "serve", "--port", "0"]));
    let pid = running.child.id();
    let base = format!("http://127.0.0.1:{}", running.port);
    let client = gateway_test_support::http_client();
    register_http_upstream(&client, &base, "hostile", &hostile.url).await;
    let (session, _) = gateway_test_support::mcp::connect(&format!("{base}/mcp")).await;
    let before = memory_kib(pid, "VmHWM");
    let outcome = session
        .peer()
        .call_tool(gateway_test_support::mcp::call(
            "hostile__huge",
            serde_json::json!({}),
        ))
        .await;
    let error =
        gateway_test_support::mcp::mcp_error(outcome.expect_err("a 50 MB result is refused"));
    assert!((-32038..=-32031).contains(&error.code.0), "{error:?}");
    let peak = memory_kib(pid, "VmHWM");
    let grown_mib = peak.saturating_sub(before) / 1024;
    eprintln!("peak RSS {before} KiB -> {peak} KiB for a refused 50 MB result");
    assert!(
        grown_mib < 48,
        "the peak grew by {grown_mib} MiB for a result refused at 16 MiB"
    );
    let _ = running.child.kill();
    let _ = running.child.wait();
    hostile.stop().await;
}
