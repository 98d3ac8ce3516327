//! The audit of the REST face and its reading: every admin change on `/api/v1` (any
//! method but GET, HEAD and OPTIONS) becomes an audit event, refused ones included;
//! `GET /api/v1/audit` pages through the trail, newest first.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web::{Data, Query};
use actix_web::{Error, HttpMessage, HttpResponse, get};
use chrono::{DateTime, Utc};
use gateway_domain::{AuditEvent, AuditFilter, AuditOutcome, Cursor};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::app::ApiState;
use super::auth::Caller;
use super::problem::{ApiError, Problem, ProblemKind};
use crate::mcp::audit::{PendingEvent, caller_fields};

/// Whether a path belongs to the REST APIs (`/api/v1`, and the registry API `/v0.1`).
pub(crate) fn is_api(path: &str) -> bool {
    path.starts_with("/api/v1") || path.starts_with("/v0.1")
}

/// Records an audit event for each admin change on `/api/v1` and `/v0.1`.
pub(crate) async fn audit_admin(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) && is_api(request.match_info().as_str());
    let state = request.app_data::<Data<ApiState>>().cloned();
    let Some((state, sink)) = state
        .filter(|_| changes)
        .and_then(|state| state.audit.clone().map(|sink| (state, sink)))
    else {
        return next.call(request).await;
    };
    let client_address = state.ip_limits.client_of(&request).map(|ip| ip.to_string());
    let path = request.match_info().as_str().to_owned();
    let pending = PendingEvent::start(
        sink,
        AuditEvent {
            id: Uuid::now_v7(),
            at: Utc::now(),
            request_id: request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            session_id: None,
            subject: None,
            tenant: None,
            roles: Vec::new(),
            client_address,
            action: format!("{} {path}", request.method()),
            server: path
                .strip_prefix("/api/v1/servers/")
                .and_then(|rest| rest.split('/').next())
                // `POST /api/v1/servers/import` names no server.
                .filter(|name| !name.is_empty() && *name != "import")
                .map(str::to_owned),
            target: Some(path.clone()),
            // What a handling dropped before its answer records.
            outcome: AuditOutcome::Error,
            error_code: Some(CLIENT_CLOSED),
            latency_us: 0,
            arguments_hash: None,
            arguments: None,
        },
    );
    let response = next.call(request).await?;
    let status = response.status();
    if status.as_u16() == 429 {
        // The per-address limit refused it before anything happened: counted in
        // `gateway_rate_limited_total`, not written, so a flood cannot fill the log.
        pending.discard();
        return Ok(response);
    }
    let route = response.request().match_pattern();
    let method = response.request().method().clone();
    let (subject, tenant, roles) = caller_fields(response.request().extensions().get::<Caller>());
    pending
        .finish(|event| {
            if let Some(route) = route {
                event.action = format!("{method} {route}");
            }
            (event.subject, event.tenant, event.roles) = (subject, tenant, roles);
            event.outcome = match status.as_u16() {
                200..=399 => AuditOutcome::Ok,
                401 | 403 => AuditOutcome::Denied,
                _ => AuditOutcome::Error,
            };
            event.error_code =
                (event.outcome != AuditOutcome::Ok).then_some(i64::from(status.as_u16()));
        })
        .await;
    Ok(response)
}

/// The "client closed the request" status (nginx's 499): recorded when the handling
/// of a change is dropped before it answered (the change may still have happened).
const CLIENT_CLOSED: i64 = 499;

/// Which audit events to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// At or after this time (RFC 3339).
    pub from: Option<String>,
    /// Before this time (RFC 3339).
    pub to: Option<String>,
    /// The principal's subject (`admin-api-key` for the admin key).
    pub principal: Option<String>,
    /// The tenant.
    pub tenant: Option<String>,
    /// The upstream server.
    pub server: Option<String>,
    /// The tool, prompt or resource as the client named it (or the API path).
    pub tool: Option<String>,
    /// `ok`, `error`, `denied` or `rate_limited`.
    pub outcome: Option<String>,
    /// The action: an MCP method (`tools/call`) or `<METHOD> <route>`.
    pub action: Option<String>,
    /// Events per page, 1–500 (default 100).
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of the audit trail, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The events.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// The audit trail: every MCP operation and admin change, who, what, how it ended.
/// Admins only.
#[utoipa::path(
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/audit")]
pub async fn list_audit(
    state: Data<ApiState>,
    query: Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    if !state.registry.has_audit() {
        return Err(ApiError::new(
            ProblemKind::NotFound,
            "the audit log is turned off ([audit] enabled = false)",
        ));
    }
    let bad = |message: String| ApiError::new(ProblemKind::BadRequest, message);
    let outcome = match &query.outcome {
        Some(raw) => Some(AuditOutcome::parse(raw).ok_or_else(|| {
            bad(format!(
                "outcome: `{}` is not one of ok, error, denied, rate_limited",
                raw.escape_debug()
            ))
        })?),
        None => None,
    };
    let time = |field: &str, raw: &Option<String>| -> Result<Option<DateTime<Utc>>, ApiError> {
        raw.as_deref()
            .map(|text| {
                DateTime::parse_from_rfc3339(text)
                    .map(|at| at.with_timezone(&Utc))
                    .map_err(|_| {
                        bad(format!(
                            "{field}: `{}` is not an RFC 3339 time (2026-11-26T12:00:00Z)",
                            text.escape_debug()
                        ))
                    })
            })
            .transpose()
    };
    let (from, to) = (time("from", &query.from)?, time("to", &query.to)?);
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(bad(format!("limit: {limit} is not between 1 and 500")));
    }
    let after = match &query.cursor {
        Some(text) => {
            let cursor = Cursor::decode(text, 2)
                .map_err(|_| bad("cursor: not one this gateway issued".into()))?;
            let key = cursor.key();
            let at = DateTime::parse_from_rfc3339(&key[0])
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| bad("cursor: not one this gateway issued".into()))?;
            let id = Uuid::parse_str(&key[1])
                .map_err(|_| bad("cursor: not one this gateway issued".into()))?;
            Some((at, id))
        }
        None => None,
    };
    let filter = AuditFilter {
        from,
        to,
        subject: query.principal,
        tenant: query.tenant,
        server: query.server,
        target: query.tool,
        outcome,
        action: query.action,
    };
    let mut items = state
        .registry
        .audit_events(&filter, after, limit + 1)
        .await?;
    let next_cursor = if items.len() as u64 > limit {
        items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        items.last().map(|last| {
            Cursor::after(vec![
                last.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                last.id.to_string(),
            ])
            .encode()
        })
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(AuditPage { items, next_cursor }))
}
