//! Three gateway processes behind nginx (round-robin, no stickiness) on one port,
//! sharing the machine's PostgreSQL and Redis, act as one gateway:
//!
//! 1. a server registered through one replica is callable through the others
//!    within 1 s;
//!    and a client connected to another replica is told its list changed;
//! 2. one real MCP client session (rmcp) initializes, lists and calls while its
//!    requests land on all three (nginx's access log says where each went); an
//!    upstream's sampling requests reach the client and its replies find the
//!    replica that asked, wherever nginx sends them;
//! 3. the replicas check the upstream once per interval between them, not each;
//! 4. a rate-limit budget holds across replicas;
//! 5. killing a replica (SIGKILL) under load fails only the calls it had in flight,
//!    and every session goes on through the others;
//! 6. a rolling restart of all three under load (SIGTERM; the "load balancer"
//!    takes a replica out once its `/ready` says 503, as Kubernetes does, and puts
//!    it back once it is ready again) fails no call.
//!
//! Runs when `TEST_DATABASE_URL`, `TEST_REDIS_URL` and `TEST_NGINX` (the nginx
//! binary) are set; `.ci/run` sets all three. The counts of client-visible errors
//! are printed.

// Sampling is deprecated by the 2026-07-28 revision (SEP-2577), but session-era
// clients still use it, and the gateway relays it: the test speaks it on purpose.
#![allow(deprecated)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gateway_test_support::mcp::{Pushed, call, connect, text_of};
use gateway_test_support::{TestBackend, TestDatabase, http_client};
use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
    Implementation, SamplingMessage,
};
use rmcp::service::{RequestContext, ServiceExt};
use rmcp::{ClientHandler, ErrorData, RoleClient};
use serde_json::json;

/// Where the test's findings go besides stdout: `.ci/run` prints this file (a
/// passing test's output is captured).
fn report_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-report.txt")
}

/// Prints a finding and appends it to [`report_path`].
macro_rules! report {
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        println!("{line}");
        use std::io::Write as _;
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(report_path()) {
            let _ = writeln!(file, "{line}");
        }
    }};
}

const SECRETS_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One gateway process.
struct Replica {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

/// What every replica shares.
struct Shared {
    database_url: String,
    redis_url: String,
    prefix: String,
    dir: PathBuf,
}

impl Replica {
    fn start(shared: &Shared, index: usize, port: u16) -> Self {
        let log = shared.dir.join(format!("replica-{index}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
            .current_dir(&shared.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MCP_GATEWAY_DATABASE__URL", &shared.database_url)
            .env("MCP_GATEWAY_SECRETS__KEY", SECRETS_KEY)
            .env("MCP_GATEWAY_RATE_LIMITS__REDIS_URL", &shared.redis_url)
            .env("MCP_GATEWAY_RATE_LIMITS__KEY_PREFIX", &shared.prefix)
            .env("MCP_GATEWAY_CLUSTER__KEY_PREFIX", &shared.prefix)
            .env("MCP_GATEWAY_CLUSTER__DRAIN_SECS", "1")
            .env("MCP_GATEWAY_HTTP__SHUTDOWN_TIMEOUT_SECS", "10")
            .env("MCP_GATEWAY_HTTP__WORKERS", "2")
            .env("MCP_GATEWAY_DATABASE__MAX_CONNECTIONS", "4")
            .env("MCP_GATEWAY_HEALTH__CHECK_INTERVAL_MS", "2000")
            .env("MCP_GATEWAY_HEALTH__CHECK_TIMEOUT_MS", "1000")
            .env(
                "MCP_GATEWAY_AUDIT__SPILL_FILE",
                shared.dir.join(format!("spill-{index}.jsonl")),
            )
            .env("MCP_GATEWAY_LOG__FILTER", "info")
            .args(["serve", "--port", &port.to_string()])
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("spawn mcp-gateway");
        Self {
            port,
            child: Some(child),
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn ready(&self) -> bool {
        matches!(
            http_client().get(self.url("/ready")).send().await,
            Ok(r) if r.status() == 200
        )
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.ready().await {
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            assert!(
                Instant::now() < deadline && !exited,
                "replica on port {} not ready; its log:\n{}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// Waits for the process to exit; returns its exit status.
    async fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// nginx in front of the replicas, in a directory of its own.
struct Nginx {
    binary: String,
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl Nginx {
    fn config(port: u16, dir: &Path, replicas: &[(u16, bool)]) -> String {
        let servers: String = replicas
            .iter()
            .map(|(port, up)| {
                format!(
                    "    server 127.0.0.1:{port} max_fails=1 fail_timeout=2s{};\n",
                    if *up { "" } else { " down" }
                )
            })
            .collect();
        let dir = dir.display();
        format!(
            "worker_processes 1;\nerror_log {dir}/error.log warn;\npid {dir}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
             log_format cluster '$upstream_addr $status $request_method';\n\
             access_log {dir}/access.log cluster;\n\
             client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;\n\
             fastcgi_temp_path {dir}/fastcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;\n\
             upstream gateways {{\n{servers}}}\n\
             server {{\n  listen 127.0.0.1:{port};\n  location / {{\n\
             proxy_pass http://gateways;\n    proxy_http_version 1.1;\n\
             proxy_set_header Host $host;\n    proxy_set_header Connection \"\";\n\
             proxy_buffering off;\n    proxy_read_timeout 60s;\n\
             proxy_next_upstream error timeout;\n  }}\n}}\n}}\n"
        )
    }

    fn start(binary: &str, dir: &Path, replicas: &[(u16, bool)]) -> Self {
        let dir = dir.join("nginx");
        std::fs::create_dir_all(&dir).expect("nginx dir");
        let port = free_port();
        std::fs::write(dir.join("nginx.conf"), Self::config(port, &dir, replicas))
            .expect("nginx.conf");
        let child = Command::new(binary)
            .args(["-p", &dir.display().to_string(), "-c"])
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn nginx");
        Self {
            binary: binary.to_owned(),
            dir,
            port,
            child,
        }
    }

    /// Rewrites the upstream list and reloads nginx gracefully (old workers finish
    /// their requests).
    async fn route(&self, replicas: &[(u16, bool)]) {
        std::fs::write(
            self.dir.join("nginx.conf"),
            Self::config(self.port, &self.dir, replicas),
        )
        .expect("nginx.conf");
        let status = Command::new(&self.binary)
            .args(["-p", &self.dir.display().to_string(), "-c"])
            .arg(self.dir.join("nginx.conf"))
            .args(["-s", "reload"])
            .stderr(Stdio::null())
            .status()
            .expect("nginx -s reload");
        assert!(status.success(), "nginx reload");
        // The new workers take over within moments.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// How many requests each replica served, from the access log.
    fn served(&self) -> std::collections::HashMap<String, usize> {
        let mut counts = std::collections::HashMap::new();
        for line in std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
        {
            if let Some(upstream) = line.split(' ').next() {
                *counts.entry(upstream.to_owned()).or_insert(0) += 1;
            }
        }
        counts
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM, not KILL: the master takes its workers down with it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Client sessions calling a tool in a loop through nginx, counting outcomes.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Load {
    async fn start(url: &str, sessions: usize, tool: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for worker in 0..sessions {
            let (client, _) = connect(url).await;
            let (stop, ok, failed, errors) =
                (stop.clone(), ok.clone(), failed.clone(), errors.clone());
            let tool = tool.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let text = format!("w{worker}-{n}");
                    // A call that never ends is an error too (and must not hang the test).
                    let outcome = tokio::time::timeout(
                        Duration::from_secs(15),
                        client.peer().call_tool(call(&tool, json!({"text": text}))),
                    )
                    .await;
                    match outcome {
                        Ok(Ok(result)) if text_of(&result) == text => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        outcome => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut errors) = errors.lock() {
                                errors.push(format!("{outcome:?}"));
                            }
                        }
                    }
                }
                let _ = client.cancel().await;
            }));
        }
        Self {
            stop,
            ok,
            failed,
            tasks,
            errors,
        }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let errors = self.errors.lock().map(|e| e.clone()).unwrap_or_default();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

/// A client that answers sampling requests with "sampled: <prompt>".
#[derive(Clone)]
struct Sampler;

impl ClientHandler for Sampler {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_sampling().build(),
            Implementation::new("cluster-sampler", "1"),
        )
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let prompt = params
            .messages
            .first()
            .and_then(|m| {
                m.content
                    .first()
                    .and_then(|c| c.as_text())
                    .map(|t| t.text.clone())
            })
            .unwrap_or_default();
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(format!("sampled: {prompt}")),
            "test-model".into(),
        ))
    }
}

/// The sum of one series over the replicas' `/metrics`.
async fn metric_sum(replicas: &[Replica], series: &str) -> f64 {
    let mut sum = 0.0;
    for replica in replicas {
        let text = http_client()
            .get(replica.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        sum += text
            .lines()
            .filter_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
            .sum::<f64>();
    }
    sum
}

async fn register(replica: &Replica, name: &str, url: &str) -> Instant {
    let response = http_client()
        .post(replica.url("/api/v1/servers"))
        .json(&json!({"name": name, "transport": {"type": "streamable-http", "url": url}}))
        .send()
        .await
        .expect("register");
    let registered = Instant::now();
    assert_eq!(
        response.status(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
    registered
}

type Client = rmcp::service::RunningService<RoleClient, gateway_test_support::mcp::Recorder>;

/// Calls `up__echo` through `client` until `expect(result)` holds, or `deadline`;
/// returns when it held.
async fn until(
    client: &Client,
    deadline: Instant,
    expect: impl Fn(&Result<rmcp::model::CallToolResult, rmcp::ServiceError>) -> bool,
) -> Option<Instant> {
    loop {
        let result = client
            .peer()
            .call_tool(call("up__echo", json!({"text": "hello"})))
            .await;
        if expect(&result) {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn answered(result: &Result<rmcp::model::CallToolResult, rmcp::ServiceError>) -> bool {
    result.as_ref().is_ok_and(|r| text_of(r) == "hello")
}

async fn post(replica: &Replica, path: &str) -> u16 {
    http_client()
        .post(replica.url(path))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_behind_nginx_act_as_one_gateway() {
    let (Some(redis_url), Some(nginx)) = (
        std::env::var("TEST_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty()),
        std::env::var("TEST_NGINX").ok().filter(|u| !u.is_empty()),
    ) else {
        eprintln!("TEST_REDIS_URL or TEST_NGINX not set: cluster test skipped");
        return;
    };
    let Some(database) = TestDatabase::create(TestBackend::Postgres).await else {
        eprintln!("TEST_DATABASE_URL not set: cluster test skipped");
        return;
    };
    let _ = std::fs::remove_file(report_path());
    let dir = tempfile::tempdir().expect("temporary directory");
    let shared = Shared {
        database_url: database.url(),
        redis_url,
        prefix: format!("cluster-test-{}", uuid::Uuid::new_v4().simple()),
        dir: dir.path().to_owned(),
    };
    let migrated = Command::new(env!("CARGO_BIN_EXE_mcp-gateway"))
        .current_dir(&shared.dir)
        .env("MCP_GATEWAY_SECRETS__KEY", SECRETS_KEY)
        .args(["--database-url", &shared.database_url, "migrate"])
        .status()
        .expect("mcp-gateway migrate");
    assert!(migrated.success(), "migrations");

    let upstream = gateway_test_upstream::serve_http(([127, 0, 0, 1], 0).into())
        .await
        .expect("test upstream");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut replicas: Vec<Replica> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| Replica::start(&shared, i, *port))
        .collect();
    for replica in &mut replicas {
        replica.wait_ready().await;
    }
    let all_up: Vec<(u16, bool)> = ports.iter().map(|p| (*p, true)).collect();
    let nginx = Nginx::start(&nginx, dir.path(), &all_up);

    // 1. Registered through replica 0, callable through 1 and 2 within a second (by
    // clients already connected to them); a client of replica 2 hears that its list
    // changed. A drain through one replica holds on the others within a second too.
    let (listener, mut pushed) = connect(&replicas[2].url("/mcp")).await;
    let (other, _) = connect(&replicas[1].url("/mcp")).await;
    let registered = register(&replicas[0], "up", &upstream.url()).await;
    for (client, replica) in [(&other, &replicas[1]), (&listener, &replicas[2])] {
        let took = until(client, registered + Duration::from_secs(1), answered).await;
        report!(
            "cluster: registered on one replica, callable on port {} after {:?}",
            replica.port,
            took.map(|t| t - registered)
        );
        assert!(
            took.is_some(),
            "not callable through port {} within 1 s",
            replica.port
        );
    }
    assert_eq!(post(&replicas[0], "/api/v1/servers/up/drain").await, 202);
    let drained = Instant::now();
    let refused = until(
        &listener,
        drained + Duration::from_secs(1),
        |r| matches!(r, Err(rmcp::ServiceError::McpError(e)) if e.code.0 == -32037),
    )
    .await;
    report!(
        "cluster: drained through one replica, refused on another after {:?}",
        refused.map(|t| t - drained)
    );
    assert!(refused.is_some(), "the drain reached replica 2 within 1 s");
    assert_eq!(post(&replicas[1], "/api/v1/servers/up/enable").await, 200);
    let enabled = Instant::now();
    assert!(
        until(&listener, enabled + Duration::from_secs(1), answered)
            .await
            .is_some(),
        "enabled through replica 1, served again by replica 2 within 1 s"
    );
    // ...and every replica lists its tools again within the second.
    for replica in &replicas {
        let (client, _) = connect(&replica.url("/mcp")).await;
        let deadline = enabled + Duration::from_secs(1);
        loop {
            let tools = client.peer().list_all_tools().await.expect("tools/list");
            if tools.iter().any(|t| t.name == "up__echo") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "port {} lists up__echo again",
                replica.port
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = client.cancel().await;
    }
    let _ = other.cancel().await;
    let heard = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(event) = pushed.recv().await {
            if event == Pushed::ToolsChanged {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        heard,
        Ok(true),
        "tools/list_changed on another replica's client"
    );
    let _ = listener.cancel().await;

    // 2. One session, spread over the three replicas by nginx.
    let before = nginx.served();
    let (client, _) = connect(&nginx.url()).await;
    let tools = client.peer().list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "up__echo"), "{tools:?}");
    for n in 0..60 {
        let text = format!("call {n}");
        let result = client
            .peer()
            .call_tool(call("up__echo", json!({"text": text})))
            .await
            .unwrap_or_else(|e| panic!("call {n} through nginx: {e}"));
        assert_eq!(text_of(&result), text);
    }
    // Sampling during a call: the reply lands anywhere and still reaches the asker.
    let sampler = Sampler
        .serve(rmcp::transport::StreamableHttpClientTransport::from_uri(
            nginx.url(),
        ))
        .await
        .expect("sampling client");
    for n in 0..12 {
        let result = sampler
            .peer()
            .call_tool(call("up__sample", json!({"prompt": format!("p{n}")})))
            .await
            .unwrap_or_else(|e| panic!("sampling call {n}: {e}"));
        assert_eq!(text_of(&result), format!("sampled: p{n}"), "{result:?}");
    }
    let relayed = metric_sum(
        &replicas,
        r#"gateway_cluster_events_total{direction="published",kind="client_reply"}"#,
    )
    .await;
    report!(
        "cluster: 12 sampling round trips, {relayed} replies relayed to the replica that asked"
    );
    assert!(
        relayed >= 1.0,
        "some replies landed on another replica and were relayed"
    );
    let _ = sampler.cancel().await;
    let after = nginx.served();
    for port in &ports {
        let key = format!("127.0.0.1:{port}");
        let served = after.get(&key).copied().unwrap_or(0) - before.get(&key).copied().unwrap_or(0);
        report!("cluster: replica {key} served {served} requests of the session");
        assert!(
            served >= 10,
            "replica {key} served {served} requests: {after:?}"
        );
    }

    // 3. Health checks are shared: every 2 s between the three, not 2 s each.
    let series = r#"gateway_upstream_checks_total{outcome="ok",server="up"}"#;
    let first = metric_sum(&replicas, series).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let checks = metric_sum(&replicas, series).await - first;
    report!("cluster: {checks} health checks of the upstream in 6 s by 3 replicas (interval 2 s)");
    assert!(
        (1.0..=5.0).contains(&checks),
        "checked once per interval in all, not per replica: {checks}"
    );

    // 4. One rate-limit budget for the three: 10 calls of `up__add` per minute.
    let rule = http_client()
        .post(replicas[1].url("/api/v1/rate-limits"))
        .json(&json!({"scope": "tool", "matches": "up__add", "rate": 10, "period_secs": 60, "burst": 10}))
        .send()
        .await
        .expect("rate-limit rule");
    assert_eq!(
        rule.status(),
        201,
        "{}",
        rule.text().await.unwrap_or_default()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut allowed = 0;
    for _ in 0..25 {
        if client
            .peer()
            .call_tool(call("up__add", json!({"a": 1, "b": 2})))
            .await
            .is_ok_and(|r| r.is_error != Some(true))
        {
            allowed += 1;
        }
    }
    report!("cluster: shared budget of 10 allowed {allowed} of 25 calls across the replicas");
    assert_eq!(allowed, 10, "one budget across the replicas");
    let _ = client.cancel().await;

    // 5. A replica killed under load: only its calls in flight fail.
    let load = Load::start(&nginx.url(), 6, "up__echo").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok_before, failed_before) = load.counts();
    assert_eq!(failed_before, 0, "no failure before the kill");
    replicas[1].signal("-KILL");
    replicas[1].wait_exit().await;
    let killed_at = load.counts();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ok, failed, errors) = load.finish().await;
    report!(
        "cluster: replica killed under load: {failed} client-visible errors ({} calls ok before, {} after the kill)",
        ok_before,
        ok - killed_at.0
    );
    for error in &errors {
        report!("cluster:   what the client saw: {error}");
    }
    assert!(
        failed <= 6,
        "at most the calls in flight on the killed replica fail (6 sessions): {failed}: {errors:?}"
    );
    assert!(
        ok - killed_at.0 >= 50,
        "the sessions went on after the kill"
    );
    replicas[1] = Replica::start(&shared, 1, ports[1]);
    replicas[1].wait_ready().await;

    // 6. A rolling restart under load: no call fails.
    let load = Load::start(&nginx.url(), 6, "up__echo").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..3 {
        replicas[i].signal("-TERM");
        // The load balancer follows readiness: out once /ready says 503.
        let deadline = Instant::now() + Duration::from_secs(10);
        while replicas[i].ready().await && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let routes: Vec<(u16, bool)> = ports.iter().map(|p| (*p, *p != ports[i])).collect();
        nginx.route(&routes).await;
        let status = replicas[i].wait_exit().await;
        assert!(
            status.is_some_and(|s| s.success()),
            "graceful exit: {status:?}"
        );
        replicas[i] = Replica::start(&shared, i, ports[i]);
        replicas[i].wait_ready().await;
        nginx.route(&all_up).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failed, errors) = load.finish().await;
    report!(
        "cluster: rolling restart of 3 replicas under load: {failed} client-visible errors, {ok} calls ok"
    );
    assert_eq!(failed, 0, "a rolling restart fails no call: {errors:?}");
    assert!(ok > 100, "the load ran through the restart: {ok}");

    // 7. A drain outlives the replicas that heard it: one started afterwards drains too.
    assert_eq!(post(&replicas[0], "/api/v1/servers/up/drain").await, 202);
    replicas[2].signal("-TERM");
    replicas[2].wait_exit().await;
    replicas[2] = Replica::start(&shared, 2, ports[2]);
    replicas[2].wait_ready().await;
    let (late, _) = connect(&replicas[2].url("/mcp")).await;
    let refused = until(
        &late,
        Instant::now() + Duration::from_secs(5),
        |r| matches!(r, Err(rmcp::ServiceError::McpError(e)) if e.code.0 == -32037),
    )
    .await;
    assert!(
        refused.is_some(),
        "a replica started after the drain drains too"
    );
    let _ = late.cancel().await;
    drop(replicas);
    drop(nginx);
    upstream.stop().await;
}
