//! The request context every route runs in: an `X-Request-Id` (honoured if the
//! client sent a sane one, generated otherwise, echoed back), a tracing span carrying
//! it so every log line of the request names it, one access-log line per request
//! (with the error, if any, so each error is logged exactly once), and a last-resort
//! conversion of any non-problem error response into problem+json.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};
use tracing::Instrument;

use actix_web::web::Data;

use super::app::ApiState;
use super::problem::{ApiError, LoggedProblem, PROBLEM_JSON, ProblemKind};

/// The request-id header, in and out.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id we keep; longer or odd ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served on this task, for error bodies.
pub(crate) fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

fn client_request_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(X_REQUEST_ID)?.to_str().ok()?;
    let sane = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b));
    sane.then(|| value.to_owned())
}

/// The middleware itself; wrap it around the whole app.
pub(crate) async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let request_id = client_request_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut req = req;
    // Handlers that only see the HTTP request's headers (the MCP server) read it there.
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        req.headers_mut().insert(X_REQUEST_ID, value);
    }
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let span = tracing::info_span!("http_request", request_id = %request_id, method = %method, path = %path, principal = tracing::field::Empty);
    let started = Instant::now();

    // The HttpRequest must not be cloned before the call: routing needs it unshared.
    let outcome = REQUEST_ID
        .scope(request_id.clone(), next.call(req))
        .instrument(span.clone())
        .await;
    let mut response = match outcome {
        Ok(response) => to_problem_if_needed(response, &request_id),
        Err(error) => {
            // Only inner middleware can fail this way (handlers turn their errors into
            // responses); actix renders it after us.
            span.in_scope(|| tracing::error!(%error, "request failed in middleware"));
            return Err(error);
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }

    let _entered = span.enter();
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if let Some(state) = response.request().app_data::<Data<ApiState>>() {
        // The route pattern, not the path: one series per route, whatever the ids.
        let route = response.request().match_pattern();
        let route = route.as_deref().unwrap_or("unmatched");
        let status = status.to_string();
        // Clients may send any method token: only the standard ones become label values.
        let method = if is_standard_method(&method) {
            method.as_str()
        } else {
            "OTHER"
        };
        state
            .metrics
            .http_requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
        state
            .metrics
            .http_duration
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }
    match response.response().extensions().get::<LoggedProblem>() {
        Some(problem) if status >= 500 => {
            tracing::error!(status, latency_ms, error.kind = problem.kind, error.detail = %problem.detail, "request failed");
        }
        Some(problem) => {
            tracing::info!(status, latency_ms, error.kind = problem.kind, error.detail = %problem.detail, "request rejected");
        }
        None => tracing::info!(status, latency_ms, "request completed"),
    }
    Ok(response)
}

fn is_standard_method(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH"
    )
}

/// Error responses built by actix itself (an extractor we did not configure, a
/// payload error) carry no problem body: replace them so clients see one error format.
fn to_problem_if_needed<B: MessageBody>(
    response: ServiceResponse<B>,
    request_id: &str,
) -> ServiceResponse<EitherBody<B>> {
    let status = response.status();
    // problem+json is ours; plain JSON is a deliberate body (the /ready report, OAuth
    // errors), and so is HTML (the OAuth façade's error pages).
    let is_json = response.headers().get(CONTENT_TYPE).is_some_and(|v| {
        let value = v.as_bytes();
        value.starts_with(PROBLEM_JSON.as_bytes())
            || value.starts_with(b"application/json")
            || value.starts_with(b"text/html")
    });
    // `/mcp` answers in JSON-RPC and plain HTTP statuses as the MCP transport defines.
    let is_mcp = response.request().path().starts_with("/mcp");
    if !(status.is_client_error() || status.is_server_error()) || is_json || is_mcp {
        return response.map_into_left_body();
    }
    let detail = response
        .response()
        .error()
        .map(ToString::to_string)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let kind = match status.as_u16() {
        404 => ProblemKind::NotFound,
        405 => ProblemKind::MethodNotAllowed,
        413 => ProblemKind::PayloadTooLarge,
        415 => ProblemKind::UnsupportedMediaType,
        503 => ProblemKind::Unavailable,
        400..=499 => ProblemKind::BadRequest,
        _ => ProblemKind::Internal,
    };
    let error = if kind == ProblemKind::Internal {
        ApiError::internal(detail)
    } else {
        ApiError::new(kind, detail)
    };
    let problem = REQUEST_ID.sync_scope(request_id.to_owned(), || error.error_response());
    response.into_response(problem).map_into_right_body()
}
