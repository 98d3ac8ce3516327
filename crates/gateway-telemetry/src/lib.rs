//! Metrics of the gateway. [`Metrics`] owns one Prometheus registry per process
//! (not a global one, so several gateways in one test process keep their own
//! counts) with every metric family the gateway exports at `/metrics`, and
//! [`CallStats`] keeps per-server call counts and latency percentiles over a sliding
//! window for `GET /api/v1/metrics/summary`.
//!
//! Architecture invariant: no I/O and no knowledge of HTTP or MCP types; adapters
//! record plain labels and values, and gauges of live state are set just before a
//! scrape by whoever owns that state.

mod window;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub use window::{CallStats, ServerSummary};

/// Latency buckets (seconds): from sub-millisecond proxy hops to minute-long tools.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Every metric family of the gateway.
pub struct Metrics {
    registry: Registry,
    /// `http_requests_total{method,route,status}`.
    pub http_requests: IntCounterVec,
    /// `http_request_duration_seconds{method,route}`.
    pub http_duration: HistogramVec,
    /// `mcp_requests_total{method,server,tool,outcome}`.
    pub mcp_requests: IntCounterVec,
    /// `mcp_request_duration_seconds{method,server,tool}`.
    pub mcp_duration: HistogramVec,
    /// `gateway_upstream_health{server,state}`: 1 for the server's current state.
    pub upstream_health: IntGaugeVec,
    /// `gateway_upstream_circuit{server,endpoint,state}`: 1 for the current state.
    pub upstream_circuit: IntGaugeVec,
    /// `gateway_upstream_in_flight{server}`.
    pub upstream_in_flight: IntGaugeVec,
    /// `gateway_upstream_draining{server}`.
    pub upstream_draining: IntGaugeVec,
    /// `gateway_upstream_checks_total{server,outcome}`.
    pub upstream_checks: IntCounterVec,
    /// `gateway_upstream_rejections_total{server,reason}`: calls refused before
    /// reaching the upstream (`circuit`, `bulkhead`, `draining`).
    pub upstream_rejections: IntCounterVec,
    /// `gateway_upstream_faults_total{server,fault}`: misbehaviour the gateway
    /// absorbed from an upstream (`notification_flood`: notifications dropped over
    /// the relay cap; `invalid_item`: list entries that are not valid MCP items or
    /// repeat a name; `stderr_flood`: stdio error lines dropped over the log cap).
    pub upstream_faults: IntCounterVec,
    /// `gateway_rate_limited_total{scope}`: requests refused by a rate limit, by the
    /// scope of the budget that refused (`tenant`…`tool`, or `ip`).
    pub rate_limited: IntCounterVec,
    /// `gateway_rate_limit_fallback_total{mode}`: decisions taken without Redis
    /// (`fail-open` locally, or `fail-closed` refusals) while it was unreachable.
    pub rate_limit_fallbacks: IntCounterVec,
    /// `gateway_rate_limit_backend_up`: 1 while the shared (Redis) limiter answers,
    /// 0 while decisions fall back; absent without Redis.
    pub rate_limit_backend_up: IntGaugeVec,
    /// `gateway_cluster_events_total{direction,kind}`: events `published` to and
    /// `received` from the other replicas, and `dropped` ones (queue full, malformed).
    pub cluster_events: IntCounterVec,
    /// `gateway_cluster_link_up`: 1 while the link to the other replicas (Redis
    /// pub/sub) is subscribed, 0 while it is being re-established; absent alone.
    pub cluster_link_up: IntGaugeVec,
    /// `gateway_audit_events_total{result}`: audit events `written` to the database,
    /// `spilled` to the spill file, `replayed` from it, or `lost` (the spill file
    /// could not be written either; logged as an error).
    pub audit_events: IntCounterVec,
    /// `gateway_audit_queue_depth`: events waiting to be written.
    pub audit_queue_depth: IntGaugeVec,
    /// `gateway_db_pool_connections{state}`: `in_use` and `idle`.
    pub db_pool: IntGaugeVec,
    /// `gateway_catalog_items{server,kind}`.
    pub catalog_items: IntGaugeVec,
    /// `gateway_build_info{version}`: always 1.
    pub build_info: GaugeVec,
    /// Sliding-window statistics per server.
    pub calls: CallStats,
}

/// A family could not be registered (a programming error: duplicate name).
#[derive(Debug)]
pub struct MetricsError(String);

impl std::fmt::Display for MetricsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot set up metrics: {}", self.0)
    }
}

impl std::error::Error for MetricsError {}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: Result<C, prometheus::Error>,
) -> Result<C, MetricsError> {
    let collector = collector.map_err(|e| MetricsError(e.to_string()))?;
    registry
        .register(Box::new(collector.clone()))
        .map_err(|e| MetricsError(e.to_string()))?;
    Ok(collector)
}

impl Metrics {
    /// A registry with every family, process metrics (RSS, CPU, open fds) and the
    /// build info of `version`.
    pub fn new(version: &str) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let latency = |name: &str, help: &str| {
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
        };
        let metrics = Self {
            http_requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new("http_requests_total", "HTTP requests by route and status"),
                    &["method", "route", "status"],
                ),
            )?,
            http_duration: register(
                &registry,
                HistogramVec::new(
                    latency("http_request_duration_seconds", "HTTP request latency"),
                    &["method", "route"],
                ),
            )?,
            mcp_requests: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "mcp_requests_total",
                        "MCP requests by method, upstream server, tool and outcome",
                    ),
                    &["method", "server", "tool", "outcome"],
                ),
            )?,
            mcp_duration: register(
                &registry,
                HistogramVec::new(
                    latency(
                        "mcp_request_duration_seconds",
                        "MCP request latency through the gateway",
                    ),
                    &["method", "server", "tool"],
                ),
            )?,
            upstream_health: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "gateway_upstream_health",
                        "1 for the current health state of each enabled upstream",
                    ),
                    &["server", "state"],
                ),
            )?,
            upstream_circuit: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "gateway_upstream_circuit",
                        "1 for the current circuit breaker state of each upstream endpoint",
                    ),
                    &["server", "endpoint", "state"],
                ),
            )?,
            upstream_in_flight: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new("gateway_upstream_in_flight", "Calls in flight per upstream"),
                    &["server"],
                ),
            )?,
            upstream_draining: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "gateway_upstream_draining",
                        "1 while an operator drains the upstream",
                    ),
                    &["server"],
                ),
            )?,
            upstream_checks: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "gateway_upstream_checks_total",
                        "Active health checks by outcome",
                    ),
                    &["server", "outcome"],
                ),
            )?,
            upstream_rejections: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "gateway_upstream_rejections_total",
                        "Calls refused before reaching the upstream, by reason",
                    ),
                    &["server", "reason"],
                ),
            )?,
            upstream_faults: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "gateway_upstream_faults_total",
                        "Upstream misbehaviour absorbed by the gateway, by kind",
                    ),
                    &["server", "fault"],
                ),
            )?,
            rate_limited: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "gateway_rate_limited_total",
                        "Requests refused by a rate limit, by the scope of the refusing budget",
                    ),
                    &["scope"],
                ),
            )?,
            rate_limit_fallbacks: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "gateway_rate_limit_fallback_total",
                        "Rate-limit decisions taken without Redis while it was unreachable",
                    ),
                    &["mode"],
                ),
            )?,
            rate_limit_backend_up: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "gateway_rate_limit_backend_up",
                        "1 while the shared rate limiter (Redis) answers, 0 while decisions fall back",
                    ),
                    &["backend"],
                ),
            )?,
            cluster_events: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "gateway_cluster_events_total",
                        "Events between replicas: published, received, dropped; by kind",
                    ),
                    &["direction", "kind"],
                ),
            )?,
            cluster_link_up: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "gateway_cluster_link_up",
                        "1 while the link to the other replicas (Redis pub/sub) is subscribed",
                    ),
                    &["backend"],
                ),
            )?,
            audit_events: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "gateway_audit_events_total",
                        "Audit events by what became of them: written, spilled, replayed, lost",
                    ),
                    &["result"],
                ),
            )?,
            audit_queue_depth: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "gateway_audit_queue_depth",
                        "Audit events waiting to be written",
                    ),
                    &[],
                ),
            )?,
            db_pool: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "gateway_db_pool_connections",
                        "Database pool connections by state",
                    ),
                    &["state"],
                ),
            )?,
            catalog_items: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "gateway_catalog_items",
                        "Items each upstream's stored catalog holds, by kind",
                    ),
                    &["server", "kind"],
                ),
            )?,
            build_info: register(
                &registry,
                GaugeVec::new(
                    Opts::new("gateway_build_info", "The gateway's version; always 1"),
                    &["version"],
                ),
            )?,
            calls: CallStats::default(),
            registry,
        };
        metrics.build_info.with_label_values(&[version]).set(1.0);
        #[cfg(target_os = "linux")]
        metrics
            .registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .map_err(|e| MetricsError(e.to_string()))?;
        Ok(metrics)
    }

    /// Records one MCP request.
    pub fn record_mcp(&self, method: &str, server: &str, tool: &str, outcome: &str, seconds: f64) {
        self.mcp_requests
            .with_label_values(&[method, server, tool, outcome])
            .inc();
        self.mcp_duration
            .with_label_values(&[method, server, tool])
            .observe(seconds);
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Text encoding of gathered families cannot fail on a Vec.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// The content type of [`Metrics::render`]'s output.
    pub fn content_type(&self) -> &'static str {
        "text/plain; version=0.0.4; charset=utf-8"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_its_labels() {
        let metrics = Metrics::new("1.2.3").expect("metrics");
        metrics.record_mcp("tools/call", "alpha", "echo", "ok", 0.002);
        metrics
            .http_requests
            .with_label_values(&["GET", "/health", "200"])
            .inc();
        let text = metrics.render();
        assert!(text.contains(
            r#"mcp_requests_total{method="tools/call",outcome="ok",server="alpha",tool="echo"} 1"#
        ));
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="/health",status="200"} 1"#)
        );
        assert!(text.contains(r#"gateway_build_info{version="1.2.3"} 1"#));
        assert!(text.contains("mcp_request_duration_seconds_bucket"));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"));
    }

    #[test]
    fn two_instances_count_separately() {
        let (a, b) = (Metrics::new("1").expect("a"), Metrics::new("1").expect("b"));
        a.record_mcp("tools/call", "s", "t", "ok", 0.1);
        assert!(!b.render().contains("mcp_requests_total{"));
    }
}
