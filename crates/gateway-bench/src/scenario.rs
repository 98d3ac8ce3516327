//! The benchmark scenario: start the test upstream and the gateway (release binaries,
//! embedded SQLite, warn-level logs), then measure each series in turn.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::Options;
use crate::client::{Session, http_client};
use crate::load::{self, LoadResult};
use crate::procfs;
use crate::report::{
    AuditCost, CatalogScale, Cpu, Machine, Memory, Overhead, Rest, Results, Stats,
};

/// How long and how wide each series runs.
struct Plan {
    mode: &'static str,
    concurrencies: Vec<usize>,
    rounds: usize,
    phase: Duration,
    sessions: usize,
    servers: usize,
    samples: usize,
}

impl Plan {
    fn from(options: &Options) -> Self {
        if options.smoke {
            Self {
                mode: "smoke",
                concurrencies: vec![1, 4],
                rounds: 1,
                phase: Duration::from_millis(500),
                sessions: 20,
                servers: 5,
                samples: 20,
            }
        } else if options.quick {
            Self {
                mode: "quick",
                concurrencies: vec![1, 16, 64],
                rounds: 2,
                phase: Duration::from_secs(2),
                sessions: 1000,
                servers: 100,
                samples: 200,
            }
        } else {
            Self {
                mode: "full",
                concurrencies: vec![1, 16, 64],
                rounds: 3,
                phase: Duration::from_secs(5),
                sessions: 1000,
                servers: 500,
                samples: 500,
            }
        }
    }
}

/// A child process killed when the run ends, however it ends.
struct Process {
    child: Child,
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nothing listens on port {port}")
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_owned();
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        load_average,
    }
}

/// Starts the upstream and the gateway, registers the upstream, runs every series.
pub async fn run_all(options: &Options) -> anyhow::Result<Results> {
    let plan = Plan::from(options);
    let machine = machine();
    let bin_dir = options.bin_dir.canonicalize().with_context(|| {
        format!(
            "{} (build the binaries first: cargo xtask bench does)",
            options.bin_dir.display()
        )
    })?;
    let gateway_bin = bin_dir.join("mcp-gateway");
    let upstream_bin = bin_dir.join("test-upstream");
    for binary in [&gateway_bin, &upstream_bin] {
        anyhow::ensure!(
            binary.exists(),
            "{} is missing: build it first (cargo xtask bench does)",
            binary.display()
        );
    }

    let upstream_port = free_port()?;
    let upstream = Process {
        child: Command::new(&upstream_bin)
            .args(["http", "--port", &upstream_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting test-upstream")?,
    };
    wait_for_port(upstream_port).await?;

    let work_dir = std::env::temp_dir().join(format!("gateway-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir)?;
    let (gateway, gateway_port) = start_gateway(&gateway_bin, &work_dir, true).await?;

    let http = http_client()?;
    let base = format!("http://127.0.0.1:{gateway_port}");
    let direct_url = format!("http://127.0.0.1:{upstream_port}/mcp");
    register(&http, &base, "bench", &direct_url).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_mib = procfs::rss_mib(gateway.pid());

    let gateway_url = format!("{base}/mcp");
    let (overhead, cpu) =
        overhead_series(&plan, &http, &direct_url, &gateway_url, &gateway, &upstream).await;
    let peak_under_load_mib = procfs::peak_rss_mib(gateway.pid());
    let (sessions_opened, with_sessions) =
        open_sessions(&http, &gateway_url, plan.sessions, &gateway).await;
    anyhow::ensure!(
        sessions_opened == plan.sessions,
        "only {sessions_opened} of {} sessions opened: the memory series would be wrong",
        plan.sessions
    );
    let catalog = catalog_series(&plan, &http, &base, &direct_url, &gateway).await?;
    let rest = rest_series(&plan, &http, &base).await;
    drop(gateway);
    // The audit's cost: a fresh gateway with it on against one with it off.
    let features = features_series(&plan, &http, &gateway_bin, &work_dir, &direct_url).await?;
    let audit = {
        let (on, on_port) = start_gateway(&gateway_bin, &work_dir.join("audit-on"), true).await?;
        let (off, off_port) =
            start_gateway(&gateway_bin, &work_dir.join("audit-off"), false).await?;
        let (on_base, off_base) = (
            format!("http://127.0.0.1:{on_port}"),
            format!("http://127.0.0.1:{off_port}"),
        );
        register(&http, &on_base, "bench", &direct_url).await?;
        register(&http, &off_base, "bench", &direct_url).await?;
        let costs = audit_series(
            &plan,
            &http,
            &format!("{on_base}/mcp"),
            &format!("{off_base}/mcp"),
        )
        .await;
        drop((on, off));
        costs
    };
    drop(upstream);
    let _ = std::fs::remove_dir_all(&work_dir);

    Ok(Results {
        mode: plan.mode.to_owned(),
        machine,
        overhead,
        cpu,
        memory: Memory {
            idle_mib,
            peak_under_load_mib,
            with_1000_sessions_mib: with_sessions,
            sessions_opened,
        },
        catalog,
        rest,
        audit,
        features,
        features_on: "authentication (cached keys, remembered verdicts), RBAC, three in-process rate-limit rules and the audit log, against a bare gateway".into(),
    })
}

/// Starts `mcp-gateway` in `dir` on a free port, the audit log on or off. The REST
/// API's per-address limit is off: the benchmark registers servers as fast as it can.
async fn start_gateway(
    binary: &std::path::Path,
    dir: &std::path::Path,
    audit: bool,
) -> anyhow::Result<(Process, u16)> {
    start_gateway_with(binary, dir, audit, None).await
}

/// [`start_gateway`] with a configuration file.
async fn start_gateway_with(
    binary: &std::path::Path,
    dir: &std::path::Path,
    audit: bool,
    config: Option<&str>,
) -> anyhow::Result<(Process, u16)> {
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let mut command = Command::new(binary);
    if let Some(config) = config {
        let path = dir.join("mcp-gateway.toml");
        std::fs::write(&path, config)?;
        command.arg("--config").arg(&path);
    }
    let process = Process {
        child: command
            .args(["--port", &port.to_string()])
            .current_dir(dir)
            .env("MCP_GATEWAY_LOG__FILTER", "warn")
            .env("MCP_GATEWAY_MCP__PAGE_SIZE", "500")
            // The load generator is one caller that opens 1,000 sessions on purpose.
            .env("MCP_GATEWAY_MCP__MAX_SESSIONS_PER_CALLER", "2000")
            .env("MCP_GATEWAY_RATE_LIMITS__API_PER_ADDRESS__RATE", "0")
            .env("MCP_GATEWAY_AUDIT__ENABLED", audit.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mcp-gateway")?,
    };
    wait_for_port(port).await?;
    Ok((process, port))
}

const BENCH_JWKS: &str = include_str!("../../gateway-auth/tests/keys/jwks-a.json");
const BENCH_KEY: &[u8] = include_bytes!("../../gateway-auth/tests/keys/rsa-a.pem");

/// A stand-in issuer on loopback: answers every request with the test key set.
fn serve_jwks() -> anyhow::Result<u16> {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                BENCH_JWKS.len(),
                BENCH_JWKS
            );
        }
    });
    Ok(port)
}

/// A token of the stand-in issuer for `roles`, valid for an hour.
fn bench_token(issuer: &str, roles: &[&str]) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = json!({"iss": issuer, "aud": "bench", "sub": "bench-agent", "tid": "bench",
                        "exp": now + 3600, "nbf": now - 10, "roles": roles, "scp": "mcp.call"});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("key-a".into());
    Ok(jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(BENCH_KEY)?,
    )?)
}

/// Every feature on (a bearer token checked on each request, an access rule, tenant,
/// principal and tool budgets, the audit log) against a bare gateway, interleaved.
async fn features_series(
    plan: &Plan,
    http: &reqwest::Client,
    binary: &std::path::Path,
    work_dir: &std::path::Path,
    upstream_url: &str,
) -> anyhow::Result<Vec<AuditCost>> {
    let issuer = format!("http://127.0.0.1:{}", serve_jwks()?);
    let config = format!(
        r#"[auth]
provider = "oidc"
issuer = "{issuer}"
audiences = ["bench"]
jwks_uri = "{issuer}/jwks"

[[auth.rules]]
role = "agent"
actions = ["list", "call"]
patterns = ["bench__*"]

[[rate_limits.rules]]
scope = "tenant"
rate = 1000000
period_secs = 1

[[rate_limits.rules]]
scope = "principal"
rate = 1000000
period_secs = 1

[[rate_limits.rules]]
scope = "tool"
rate = 1000000
period_secs = 1
"#
    );
    let (on, on_port) =
        start_gateway_with(binary, &work_dir.join("features-on"), true, Some(&config)).await?;
    let (off, off_port) = start_gateway(binary, &work_dir.join("features-off"), false).await?;
    let admin = crate::client::http_client_with_token(&bench_token(&issuer, &["admin"])?)?;
    let agent = crate::client::http_client_with_token(&bench_token(&issuer, &["agent"])?)?;
    let (on_base, off_base) = (
        format!("http://127.0.0.1:{on_port}"),
        format!("http://127.0.0.1:{off_port}"),
    );
    register(&admin, &on_base, "bench", upstream_url).await?;
    register(http, &off_base, "bench", upstream_url).await?;
    let (on_url, off_url) = (format!("{on_base}/mcp"), format!("{off_base}/mcp"));
    let mut costs = Vec::new();
    for &concurrency in plan.concurrencies.iter().take(2) {
        let (mut with, mut without): (Option<LoadResult>, Option<LoadResult>) = (None, None);
        for _ in 0..plan.rounds.max(2) {
            merge(
                &mut without,
                load::run(http, &off_url, "bench__echo", concurrency, plan.phase).await,
            );
            merge(
                &mut with,
                load::run(&agent, &on_url, "bench__echo", concurrency, plan.phase).await,
            );
        }
        let (Some(with), Some(without)) = (with, without) else {
            continue;
        };
        let (on_stats, off_stats) = (Stats::from(&with), Stats::from(&without));
        costs.push(AuditCost {
            concurrency,
            delta_p50_ms: on_stats.p50_ms - off_stats.p50_ms,
            on: on_stats,
            off: off_stats,
        });
    }
    drop((on, off));
    Ok(costs)
}

/// Audit on and off, rounds interleaved, at the lowest and a middle concurrency.
async fn audit_series(
    plan: &Plan,
    http: &reqwest::Client,
    on_url: &str,
    off_url: &str,
) -> Vec<AuditCost> {
    let mut costs = Vec::new();
    for &concurrency in plan.concurrencies.iter().take(2) {
        let (mut on, mut off): (Option<LoadResult>, Option<LoadResult>) = (None, None);
        for _ in 0..plan.rounds.max(2) {
            merge(
                &mut off,
                load::run(http, off_url, "bench__echo", concurrency, plan.phase).await,
            );
            merge(
                &mut on,
                load::run(http, on_url, "bench__echo", concurrency, plan.phase).await,
            );
        }
        let (Some(on), Some(off)) = (on, off) else {
            continue;
        };
        let (on, off) = (Stats::from(&on), Stats::from(&off));
        costs.push(AuditCost {
            concurrency,
            delta_p50_ms: on.p50_ms - off.p50_ms,
            on,
            off,
        });
    }
    costs
}

async fn register(http: &reqwest::Client, base: &str, name: &str, url: &str) -> anyhow::Result<()> {
    let body = json!({"name": name, "transport": {"type": "streamable-http", "url": url}});
    let created = http
        .post(format!("{base}/api/v1/servers"))
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(
        created.status().is_success(),
        "registering {name}: HTTP {}",
        created.status()
    );
    let refreshed = http
        .post(format!("{base}/api/v1/servers/{name}/refresh"))
        .send()
        .await?;
    anyhow::ensure!(
        refreshed.status().is_success(),
        "refreshing {name}: HTTP {}",
        refreshed.status()
    );
    Ok(())
}

/// Direct and proxied runs alternate, round after round, so drifting machine load
/// hits both alike.
async fn overhead_series(
    plan: &Plan,
    http: &reqwest::Client,
    direct_url: &str,
    gateway_url: &str,
    gateway: &Process,
    upstream: &Process,
) -> (Vec<Overhead>, Cpu) {
    let mut rows = Vec::new();
    let (mut gateway_cpu, mut gateway_calls, mut upstream_cpu, mut upstream_calls) =
        (0.0, 0u64, 0.0, 0u64);
    for &concurrency in &plan.concurrencies {
        let mut direct: Option<LoadResult> = None;
        let mut proxied: Option<LoadResult> = None;
        for _ in 0..plan.rounds {
            let before = procfs::cpu_seconds(upstream.pid());
            let run = load::run(http, direct_url, "echo", concurrency, plan.phase).await;
            upstream_cpu += procfs::cpu_seconds(upstream.pid()) - before;
            upstream_calls += run.calls;
            merge(&mut direct, run);

            let before = procfs::cpu_seconds(gateway.pid());
            let run = load::run(http, gateway_url, "bench__echo", concurrency, plan.phase).await;
            gateway_cpu += procfs::cpu_seconds(gateway.pid()) - before;
            gateway_calls += run.calls;
            merge(&mut proxied, run);
        }
        let (Some(direct), Some(proxied)) = (direct, proxied) else {
            continue;
        };
        let (d, g) = (Stats::from(&direct), Stats::from(&proxied));
        rows.push(Overhead {
            concurrency,
            overhead_p50_ms: g.p50_ms - d.p50_ms,
            overhead_p90_ms: g.p90_ms - d.p90_ms,
            overhead_p99_ms: g.p99_ms - d.p99_ms,
            throughput_ratio: g.rps / d.rps.max(1e-9),
            direct: d,
            gateway: g,
        });
    }
    let per_10k = |cpu: f64, calls: u64| cpu / (calls.max(1) as f64) * 10_000.0;
    let (gateway_s_per_10k, upstream_s_per_10k) = (
        per_10k(gateway_cpu, gateway_calls),
        per_10k(upstream_cpu, upstream_calls),
    );
    let cpu = Cpu {
        gateway_s_per_10k,
        upstream_s_per_10k,
        ratio: gateway_s_per_10k / upstream_s_per_10k.max(1e-9),
    };
    (rows, cpu)
}

fn merge(into: &mut Option<LoadResult>, run: LoadResult) {
    match into {
        Some(total) => total.merge(run),
        None => *into = Some(run),
    }
}

/// Opens `count` sessions (64 at a time), reads the gateway's RSS, closes them.
async fn open_sessions(
    http: &reqwest::Client,
    url: &str,
    count: usize,
    gateway: &Process,
) -> (usize, f64) {
    let mut sessions = Vec::with_capacity(count);
    let mut remaining = count;
    while remaining > 0 {
        let batch = remaining.min(64);
        let opened =
            futures_util::future::join_all((0..batch).map(|_| Session::open(http, url))).await;
        sessions.extend(opened.into_iter().flatten());
        remaining -= batch;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss = procfs::rss_mib(gateway.pid());
    let opened = sessions.len();
    futures_util::future::join_all(sessions.into_iter().map(Session::close)).await;
    (opened, rss)
}

/// Registers the same upstream under many names and times discovery and listing.
async fn catalog_series(
    plan: &Plan,
    http: &reqwest::Client,
    base: &str,
    upstream_url: &str,
    gateway: &Process,
) -> anyhow::Result<CatalogScale> {
    let started = Instant::now();
    for index in 1..plan.servers {
        let body = json!({"name": format!("s{index:04}"), "transport": {"type": "streamable-http", "url": upstream_url}});
        let created = http
            .post(format!("{base}/api/v1/servers"))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            created.status().is_success(),
            "registering s{index:04}: HTTP {}",
            created.status()
        );
    }
    // Discovery is done when no server is left in the `unknown` state.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let page: Value = http
            .get(format!("{base}/api/v1/servers?health=unknown&limit=1"))
            .send()
            .await?
            .json()
            .await?;
        if page["items"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "discovery of {} servers did not finish",
            plan.servers
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let discover_s = started.elapsed().as_secs_f64();
    // The snapshot is rebuilt after the last catalog lands.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut session = Session::open(http, &format!("{base}/mcp")).await?;
    let mut first_page = LoadResult::empty();
    let sampling = Instant::now();
    for _ in 0..plan.samples {
        // Timed until the whole page (about 100 KB for 500 tools) has arrived; decoding
        // and checking it is the client's work, done after the clock stops.
        let started = Instant::now();
        let exchange = session.exchange("tools/list", json!({})).await;
        let elapsed = started.elapsed();
        let outcome = exchange.and_then(|exchange| {
            let result = exchange.result()?;
            anyhow::ensure!(
                result["tools"]
                    .as_array()
                    .is_some_and(|tools| !tools.is_empty()),
                "tools/list: an empty first page"
            );
            Ok(())
        });
        first_page.record(outcome, elapsed);
    }
    first_page.elapsed = sampling.elapsed();
    let walk_started = Instant::now();
    let mut tools = 0;
    let mut cursor: Option<String> = None;
    loop {
        let params = cursor
            .as_ref()
            .map_or_else(|| json!({}), |c| json!({"cursor": c}));
        let page = session.request("tools/list", params).await?;
        tools += page["tools"].as_array().map_or(0, Vec::len);
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let full_walk_ms = walk_started.elapsed().as_secs_f64() * 1000.0;
    session.close().await;
    Ok(CatalogScale {
        servers: plan.servers,
        tools,
        discover_s,
        list_first_page: Stats::from(&first_page),
        full_walk_ms,
        rss_mib: procfs::rss_mib(gateway.pid()),
    })
}

/// Sequential REST requests with every server registered.
async fn rest_series(plan: &Plan, http: &reqwest::Client, base: &str) -> Vec<Rest> {
    let mut rows = Vec::new();
    for endpoint in ["/api/v1/servers?limit=50", "/api/v1/tools?q=echo&limit=50"] {
        let url = format!("{base}{endpoint}");
        let result = load::sample(plan.samples, || {
            let request = http.get(&url).send();
            async move {
                let response = request.await?;
                anyhow::ensure!(response.status().is_success(), "HTTP {}", response.status());
                response.bytes().await?;
                Ok(())
            }
        })
        .await;
        rows.push(Rest {
            endpoint: endpoint.to_owned(),
            stats: Stats::from(&result),
        });
    }
    rows
}
