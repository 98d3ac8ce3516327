//! Service information and probes: `/`, `/health` (liveness: the process serves
//! HTTP) and `/ready` (readiness: the database answers and its schema is current).

use std::collections::BTreeMap;

use actix_web::web::Data;
use actix_web::{HttpResponse, get};

use crate::rest::app::ApiState;
use crate::rest::dto::{Liveness, Readiness, RootView};

/// Name, version and entry points of this gateway.
#[utoipa::path(tag = "system", responses((status = 200, body = RootView)))]
#[get("/")]
pub async fn root(state: Data<ApiState>) -> HttpResponse {
    let links = BTreeMap::from([
        ("api", "/api/v1"),
        ("servers", "/api/v1/servers"),
        ("tools", "/api/v1/tools"),
        ("openapi", "/openapi.json"),
        ("docs", "/docs/"),
        ("redoc", "/redoc"),
        ("health", "/health"),
        ("ready", "/ready"),
        ("metrics", "/metrics"),
        ("health_summary", "/api/v1/health/servers"),
        ("metrics_summary", "/api/v1/metrics/summary"),
    ]);
    HttpResponse::Ok().json(RootView {
        name: state.info.name,
        version: state.info.version,
        links,
    })
}

/// Liveness: 200 while the process can answer HTTP at all.
#[utoipa::path(tag = "system", responses((status = 200, body = Liveness)))]
#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Liveness { status: "ok" })
}

/// Readiness: 200 when the database is reachable and migrated, 503 otherwise or
/// while the process drains at shutdown (a load balancer then stops sending traffic
/// here).
#[utoipa::path(tag = "system", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
#[get("/ready")]
pub async fn ready(state: Data<ApiState>) -> HttpResponse {
    let check = tokio::time::timeout(state.readiness_timeout, state.readiness.check_ready()).await;
    let database = match check {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err(format!(
            "no answer within {} ms",
            state.readiness_timeout.as_millis()
        )),
    };
    let draining = state.draining.load(std::sync::atomic::Ordering::Relaxed);
    let cluster = state.cluster.readiness();
    let ready = database.is_ok() && cluster.is_ok() && !draining;
    let mut checks = BTreeMap::from([(
        "database".to_owned(),
        database.err().unwrap_or_else(|| "ok".to_owned()),
    )]);
    if state.cluster.is_shared() {
        checks.insert(
            "cluster".to_owned(),
            cluster.err().unwrap_or_else(|| "ok".to_owned()),
        );
    }
    if draining {
        checks.insert(
            "shutdown".to_owned(),
            "draining: finishing the requests in flight".to_owned(),
        );
    }
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        checks,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics (text exposition format 0.0.4): HTTP and MCP requests with
/// latency histograms, upstream health, circuits and calls in flight, database pool,
/// catalog sizes and process metrics. See `docs/operations.md`.
#[utoipa::path(tag = "system", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics(state: Data<ApiState>) -> HttpResponse {
    let metrics = &state.metrics;
    if let Some(pool) = state.readiness.pool_stats() {
        let as_gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        metrics
            .db_pool
            .with_label_values(&["in_use"])
            .set(as_gauge(pool.in_use));
        metrics
            .db_pool
            .with_label_values(&["idle"])
            .set(as_gauge(pool.idle));
    }
    if let Some(runtime) = &state.mcp {
        runtime.export_gauges();
    }
    HttpResponse::Ok()
        .content_type(metrics.content_type())
        .body(metrics.render())
}
