//! Health monitoring and admin operations on upstreams: live health per server and
//! endpoint, a summary of all servers, and enable / disable / drain / check-now.
//! Live state comes from the MCP runtime's monitor; what the registry recorded is
//! shown beside it (and alone for disabled servers).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::web::{Data, Path, Query};
use actix_web::{HttpResponse, get, post};
use gateway_domain::{HealthState, UpstreamServer};
use gateway_registry::ServerChanges;

use super::server_ref;

use crate::mcp::McpRuntime;
use crate::mcp::monitor::UpstreamState;
use crate::rest::app::ApiState;
use crate::rest::dto::{
    DrainView, EndpointHealthView, HealthQuery, HealthSummary, HealthSummaryItem, HealthView,
    MetricsSummary, ObservationView, ServerHealthView, ServerMetricsView, ServerView,
};
use crate::rest::problem::{ApiError, Problem, ProblemKind};

fn recorded(server: &UpstreamServer) -> HealthView {
    HealthView {
        state: server.health.state,
        checked_at: server.health.checked_at,
        latency_ms: server.health.latency_ms,
        error: server.health.error.clone(),
        protocol_version: server.health.protocol_version.clone(),
    }
}

fn live(state: &ApiState, server: &UpstreamServer) -> Option<Arc<UpstreamState>> {
    live_in(state.mcp.as_deref(), server)
}

fn live_in(runtime: Option<&McpRuntime>, server: &UpstreamServer) -> Option<Arc<UpstreamState>> {
    let runtime = runtime?;
    server
        .spec
        .enabled
        .then(|| runtime.monitor.get(server.id))
        .flatten()
}

/// Live health of one server (what the REST API and the gateway's MCP tools show).
pub(crate) fn health_view(
    runtime: Option<&McpRuntime>,
    server: &UpstreamServer,
) -> ServerHealthView {
    let upstream = live_in(runtime, server);
    let view = upstream.as_ref().map(|u| u.view());
    let endpoints = upstream.as_ref().map_or_else(Vec::new, |upstream| {
        upstream
            .endpoints
            .iter()
            .map(|endpoint| {
                let (history, last_check) = endpoint.history();
                EndpointHealthView {
                    endpoint: endpoint.label.clone(),
                    state: endpoint.state().as_str().to_owned(),
                    circuit: endpoint.circuit().as_str().to_owned(),
                    in_flight: endpoint.in_flight(),
                    last_check: last_check.as_ref().map(ObservationView::from),
                    history: history.iter().map(ObservationView::from).collect(),
                }
            })
            .collect()
    });
    ServerHealthView {
        id: server.id.as_uuid(),
        name: server.spec.name.to_string(),
        enabled: server.spec.enabled,
        state: view
            .map_or(server.health.state, |v| v.state)
            .as_str()
            .to_owned(),
        available: view.is_some_and(|v| v.available && !v.draining),
        draining: view.is_some_and(|v| v.draining),
        in_flight: upstream.as_ref().map_or(0, |u| u.in_flight()),
        recorded: recorded(server),
        endpoints,
    }
}

/// Live health of one server: combined state, each endpoint's state, circuit, calls
/// in flight, last check and recent history.
#[utoipa::path(
    tag = "health",
    params(("server" = String, Path, description = "Server id or name")),
    responses(
        (status = 200, body = ServerHealthView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/servers/{server}/health")]
pub async fn server_health(
    state: Data<ApiState>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let server = state.registry.get(&server_ref(&path)?).await?;
    Ok(HttpResponse::Ok().json(health_view(state.mcp.as_deref(), &server)))
}

/// Health of every server, with counts per state; filter by `state` or `enabled`.
#[utoipa::path(
    tag = "health",
    params(HealthQuery),
    responses(
        (status = 200, body = HealthSummary),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/health/servers")]
pub async fn health_summary(
    state: Data<ApiState>,
    query: Query<HealthQuery>,
) -> Result<HttpResponse, ApiError> {
    let wanted = match query.state.as_deref() {
        Some(raw) => Some(raw.parse::<HealthState>().map_err(|reason| {
            ApiError::new(
                ProblemKind::BadRequest,
                format!("query string: state: {reason}"),
            )
            .with_field("state", reason)
        })?),
        None => None,
    };
    let enabled = super::bool_param(query.enabled.as_deref()).map_err(|reason| {
        ApiError::new(
            ProblemKind::BadRequest,
            format!("query string: enabled: {reason}"),
        )
        .with_field("enabled", reason)
    })?;
    let mut servers = state.registry.all_servers().await?;
    servers.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    let mut counts: BTreeMap<String, usize> = HealthState::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    let mut items = Vec::new();
    for server in &servers {
        let upstream = live(&state, server);
        let view = upstream.as_ref().map(|u| u.view());
        let health_state = view.map_or(server.health.state, |v| v.state);
        *counts.entry(health_state.as_str().to_owned()).or_default() += 1;
        if wanted.is_some_and(|w| w != health_state)
            || enabled.is_some_and(|e| e != server.spec.enabled)
        {
            continue;
        }
        let last = upstream.as_ref().and_then(|u| u.last_observation());
        let check = upstream.as_ref().and_then(|u| u.last_check());
        items.push(HealthSummaryItem {
            id: server.id.as_uuid(),
            name: server.spec.name.to_string(),
            enabled: server.spec.enabled,
            state: health_state.as_str().to_owned(),
            available: view.is_some_and(|v| v.available && !v.draining),
            draining: view.is_some_and(|v| v.draining),
            in_flight: upstream.as_ref().map_or(0, |u| u.in_flight()),
            open_circuits: upstream.as_ref().map_or(0, |u| {
                u.endpoints
                    .iter()
                    .filter(|e| e.circuit() != gateway_router::CircuitState::Closed)
                    .count()
            }),
            endpoints: upstream.as_ref().map_or(0, |u| u.endpoints.len()),
            checked_at: last.as_ref().map(|o| o.at).or(server.health.checked_at),
            latency_ms: match check {
                Some(check) => i64::try_from(check.latency.as_millis()).ok(),
                None => server.health.latency_ms,
            },
            error: match &last {
                Some(observation) => observation.error.clone(),
                None => server.health.error.clone(),
            },
        });
    }
    Ok(HttpResponse::Ok().json(HealthSummary {
        servers: items,
        counts,
    }))
}

async fn set_enabled(state: &ApiState, raw: &str, enabled: bool) -> Result<HttpResponse, ApiError> {
    let reference = server_ref(raw)?;
    let server = switch(&state.registry, state.mcp.as_deref(), &reference, enabled).await?;
    Ok(super::servers::server_response(HttpResponse::Ok(), &server))
}

/// Enables or disables a server (the REST API and the gateway's MCP tools).
pub(crate) async fn switch(
    registry: &gateway_registry::Registry,
    runtime: Option<&McpRuntime>,
    reference: &gateway_registry::ServerRef,
    enabled: bool,
) -> Result<UpstreamServer, gateway_registry::RegistryError> {
    let changes = ServerChanges {
        enabled: Some(enabled),
        ..ServerChanges::default()
    };
    let server = registry.update(reference, None, changes).await?;
    if let Some(runtime) = runtime {
        if enabled {
            // Enabling ends a drain and gives the circuits a fresh start.
            runtime.drain(server.id, false);
        }
        // The lists change before the answer: a disabled server's tools are gone.
        runtime.rebuild().await;
    }
    Ok(server)
}

/// Enable a server: it is connected, discovered, checked and listed again; a drain
/// ends and its circuits close.
#[utoipa::path(
    tag = "health",
    params(("server" = String, Path, description = "Server id or name")),
    responses(
        (status = 200, body = ServerView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/servers/{server}/enable")]
pub async fn enable_server(
    state: Data<ApiState>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(&state, &path, true).await
}

/// Disable a server: its tools leave the lists at once and its sessions close.
#[utoipa::path(
    tag = "health",
    params(("server" = String, Path, description = "Server id or name")),
    responses(
        (status = 200, body = ServerView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/servers/{server}/disable")]
pub async fn disable_server(
    state: Data<ApiState>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(&state, &path, false).await
}

/// Drain a server: it takes no new calls (they fail fast with `-32037`) and its tools
/// leave the lists, while calls in flight finish. Watch `in_flight` reach 0 on
/// `GET …/health`, then disable or remove it. `enable` ends the drain. Every replica
/// drains the server; `in_flight` counts this replica's calls.
#[utoipa::path(
    tag = "health",
    params(("server" = String, Path, description = "Server id or name")),
    responses(
        (status = 202, body = DrainView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The server is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The MCP runtime is not running", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/servers/{server}/drain")]
pub async fn drain_server(
    state: Data<ApiState>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (server, runtime) = enabled_server(&state, &path).await?;
    let in_flight = runtime.drain(server.id, true).unwrap_or_default();
    Ok(HttpResponse::Accepted().json(DrainView {
        name: server.spec.name.to_string(),
        draining: true,
        in_flight,
    }))
}

/// Check every endpoint of a server now (`ping`), and answer with its health after.
#[utoipa::path(
    tag = "health",
    params(("server" = String, Path, description = "Server id or name")),
    responses(
        (status = 200, body = ServerHealthView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The server is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The MCP runtime is not running", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/servers/{server}/check")]
pub async fn check_server(
    state: Data<ApiState>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (server, runtime) = enabled_server(&state, &path).await?;
    runtime.check_now(&server).await;
    Ok(HttpResponse::Ok().json(health_view(state.mcp.as_deref(), &server)))
}

/// The enabled server `raw` names and the runtime tracking it (drain and check need
/// both): 404, 409 `server-disabled` or 503 otherwise.
async fn enabled_server<'a>(
    state: &'a ApiState,
    raw: &str,
) -> Result<(UpstreamServer, &'a Arc<McpRuntime>), ApiError> {
    let server = state.registry.get(&server_ref(raw)?).await?;
    let runtime = super::mcp_runtime(state)?;
    if !server.spec.enabled {
        return Err(ApiError::new(
            ProblemKind::ServerDisabled,
            format!("server `{}` is disabled; enable it first", server.spec.name),
        ));
    }
    runtime.monitor.ensure(&server);
    Ok((server, runtime))
}

/// Calls, error rate and p50/p95/p99 latency per server over a sliding window
/// (about five minutes), for the registry's metrics collection.
#[utoipa::path(
    tag = "metrics",
    responses((status = 200, body = MetricsSummary))
)]
#[get("/metrics/summary")]
pub async fn metrics_summary(state: Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let mut servers = state.registry.all_servers().await?;
    servers.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    let mut windows: BTreeMap<String, gateway_telemetry::ServerSummary> = state
        .metrics
        .calls
        .summary()
        .into_iter()
        .map(|s| (s.server.clone(), s))
        .collect();
    let items = servers
        .iter()
        .map(|server| {
            let upstream = live(&state, server);
            let window = windows.remove(server.spec.name.as_str());
            let window = window.as_ref();
            ServerMetricsView {
                server: server.spec.name.to_string(),
                state: upstream
                    .as_ref()
                    .map_or(server.health.state, |u| u.view().state)
                    .as_str()
                    .to_owned(),
                in_flight: upstream.as_ref().map_or(0, |u| u.in_flight()),
                calls: window.map_or(0, |w| w.calls),
                errors: window.map_or(0, |w| w.errors),
                error_rate: window.map_or(0.0, |w| w.error_rate),
                p50_ms: window.map_or(0.0, |w| w.p50_ms),
                p95_ms: window.map_or(0.0, |w| w.p95_ms),
                p99_ms: window.map_or(0.0, |w| w.p99_ms),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(MetricsSummary {
        window_secs: gateway_telemetry::CallStats::WINDOW.as_secs(),
        servers: items,
    }))
}
