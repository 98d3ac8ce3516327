//! The results of a run: one serialisable structure, printed as a table and written
//! as JSON.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::load::LoadResult;

/// Latency and throughput of one measured series.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Successful requests.
    pub calls: u64,
    /// Failed requests.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Successful requests per second.
    pub rps: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 90th percentile latency.
    pub p90_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
}

impl From<&LoadResult> for Stats {
    fn from(result: &LoadResult) -> Self {
        Self {
            calls: result.calls,
            errors: result.errors,
            first_error: result.first_error.clone(),
            rps: result.throughput(),
            p50_ms: result.percentile_ms(0.50),
            p90_ms: result.percentile_ms(0.90),
            p99_ms: result.percentile_ms(0.99),
            max_ms: result.max_ms(),
        }
    }
}

/// `tools/call` straight to the upstream and through the gateway, at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    /// Concurrent sessions.
    pub concurrency: usize,
    /// Straight to the upstream.
    pub direct: Stats,
    /// Through the gateway's `/mcp`.
    pub gateway: Stats,
    /// Gateway minus direct, median.
    pub overhead_p50_ms: f64,
    /// Gateway minus direct, 90th percentile.
    pub overhead_p90_ms: f64,
    /// Gateway minus direct, 99th percentile.
    pub overhead_p99_ms: f64,
    /// Gateway throughput as a share of direct.
    pub throughput_ratio: f64,
}

/// CPU spent per call.
#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    /// Gateway CPU seconds per 10,000 proxied calls.
    pub gateway_s_per_10k: f64,
    /// Upstream CPU seconds per 10,000 direct calls.
    pub upstream_s_per_10k: f64,
    /// Gateway CPU per call over upstream CPU per call.
    pub ratio: f64,
}

/// Gateway resident memory.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// After start-up, one upstream registered.
    pub idle_mib: f64,
    /// Peak during the load runs.
    pub peak_under_load_mib: f64,
    /// With 1,000 sessions open.
    pub with_1000_sessions_mib: f64,
    /// Sessions actually opened for that measure.
    pub sessions_opened: usize,
}

/// Many upstreams registered.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogScale {
    /// Upstreams registered.
    pub servers: usize,
    /// Tools listed on `/mcp`.
    pub tools: usize,
    /// From the first registration to every server discovered.
    pub discover_s: f64,
    /// `tools/list`, first page.
    pub list_first_page: Stats,
    /// Walking every page of `tools/list`.
    pub full_walk_ms: f64,
    /// Gateway RSS afterwards.
    pub rss_mib: f64,
}

/// The REST API with many servers registered.
#[derive(Debug, Clone, Serialize)]
pub struct Rest {
    /// Request path.
    pub endpoint: String,
    /// Sequential requests.
    pub stats: Stats,
}

/// `tools/call` through a gateway with the audit log on and one with it off, rounds
/// interleaved.
#[derive(Debug, Clone, Serialize)]
pub struct AuditCost {
    /// Concurrent sessions.
    pub concurrency: usize,
    /// Audit on.
    pub on: Stats,
    /// Audit off.
    pub off: Stats,
    /// On minus off, median.
    pub delta_p50_ms: f64,
}

/// The machine the run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU cores available.
    pub cores: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// 1-minute load average when the run started.
    pub load_average: String,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// `full`, `quick` or `smoke`.
    pub mode: String,
    /// Where it ran.
    pub machine: Machine,
    /// Proxy overhead per concurrency.
    pub overhead: Vec<Overhead>,
    /// CPU per call.
    pub cpu: Cpu,
    /// Memory.
    pub memory: Memory,
    /// Catalog scale.
    pub catalog: CatalogScale,
    /// REST.
    pub rest: Vec<Rest>,
    /// What the audit log costs a call.
    pub audit: Vec<AuditCost>,
    /// Every feature on (auth, RBAC, in-process rate limits, audit) against none.
    pub features: Vec<AuditCost>,
    /// Why the features-on comparison is missing, until those features exist.
    pub features_on: String,
}

impl Results {
    /// Failed requests across every series.
    pub fn errors(&self) -> u64 {
        let overhead: u64 = self
            .overhead
            .iter()
            .map(|o| o.direct.errors + o.gateway.errors)
            .sum();
        let rest: u64 = self.rest.iter().map(|r| r.stats.errors).sum();
        let audit: u64 = self
            .audit
            .iter()
            .chain(&self.features)
            .map(|a| a.on.errors + a.off.errors)
            .sum();
        overhead + rest + audit + self.catalog.list_first_page.errors
    }
}

/// The results as a terminal table.
pub fn table(results: &Results) -> String {
    let mut out = String::new();
    let m = &results.machine;
    let _ = writeln!(
        out,
        "gateway-bench ({}) on {} cores, {}, load {}",
        results.mode, m.cores, m.cpu_model, m.load_average
    );
    let _ = writeln!(
        out,
        "\ntools/call: direct vs through the gateway (ms; rps = requests/s)"
    );
    let _ = writeln!(
        out,
        "{:>4} | {:>9} {:>7} {:>7} {:>7} {:>7} | {:>9} {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} {:>7} {:>6}",
        "conc",
        "direct/s",
        "p50",
        "p90",
        "p99",
        "max",
        "gw/s",
        "p50",
        "p90",
        "p99",
        "max",
        "+p50",
        "+p90",
        "+p99",
        "ratio"
    );
    for o in &results.overhead {
        let (d, g) = (&o.direct, &o.gateway);
        let _ = writeln!(
            out,
            "{:>4} | {:>9.0} {:>7.3} {:>7.3} {:>7.3} {:>7.2} | {:>9.0} {:>7.3} {:>7.3} {:>7.3} {:>7.2} | {:>7.3} {:>7.3} {:>7.3} {:>5.0}%",
            o.concurrency,
            d.rps,
            d.p50_ms,
            d.p90_ms,
            d.p99_ms,
            d.max_ms,
            g.rps,
            g.p50_ms,
            g.p90_ms,
            g.p99_ms,
            g.max_ms,
            o.overhead_p50_ms,
            o.overhead_p90_ms,
            o.overhead_p99_ms,
            o.throughput_ratio * 100.0
        );
    }
    let c = &results.cpu;
    let _ = writeln!(
        out,
        "\nCPU per 10,000 calls: gateway {:.2} s, upstream {:.2} s (ratio {:.2})",
        c.gateway_s_per_10k, c.upstream_s_per_10k, c.ratio
    );
    let mem = &results.memory;
    let _ = writeln!(
        out,
        "RSS: idle {:.1} MiB, peak under load {:.1} MiB, {} open sessions {:.1} MiB",
        mem.idle_mib, mem.peak_under_load_mib, mem.sessions_opened, mem.with_1000_sessions_mib
    );
    let cat = &results.catalog;
    let _ = writeln!(
        out,
        "Catalog: {} servers, {} tools: discovered in {:.1} s; tools/list first page p50 {:.2} ms p99 {:.2} ms; full walk {:.1} ms; RSS {:.1} MiB",
        cat.servers,
        cat.tools,
        cat.discover_s,
        cat.list_first_page.p50_ms,
        cat.list_first_page.p99_ms,
        cat.full_walk_ms,
        cat.rss_mib
    );
    for rest in &results.rest {
        let _ = writeln!(
            out,
            "REST {}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
            rest.endpoint, rest.stats.rps, rest.stats.p50_ms, rest.stats.p99_ms
        );
    }
    for cost in &results.audit {
        let _ = writeln!(
            out,
            "Audit at concurrency {}: p50 on {:.3} ms, off {:.3} ms (delta {:+.3} ms); p99 on {:.3} ms, off {:.3} ms",
            cost.concurrency,
            cost.on.p50_ms,
            cost.off.p50_ms,
            cost.delta_p50_ms,
            cost.on.p99_ms,
            cost.off.p99_ms
        );
    }
    for cost in &results.features {
        let _ = writeln!(
            out,
            "All features at concurrency {}: p50 on {:.3} ms, off {:.3} ms (delta {:+.3} ms); p99 on {:.3} ms, off {:.3} ms",
            cost.concurrency,
            cost.on.p50_ms,
            cost.off.p50_ms,
            cost.delta_p50_ms,
            cost.on.p99_ms,
            cost.off.p99_ms
        );
    }
    let _ = writeln!(out, "Features on: {}", results.features_on);
    let _ = writeln!(out, "Errors: {}", results.errors());
    out
}

/// Writes the results as pretty JSON, creating the directory.
pub fn write_json(results: &Results, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(results)?)?;
    Ok(())
}
