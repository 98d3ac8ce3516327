//! Route handlers, one module per resource, plus the small helpers they share.

pub mod access;
pub mod health;
pub mod limits;
pub mod registry;
pub mod servers;
pub mod system;
pub mod tools;
pub mod views;

use gateway_domain::{Cursor, PageRequest};

use super::app::ApiState;
use super::problem::{ApiError, ProblemKind};

/// `{server}` of a path: an id or a name (anything else is 404).
pub(crate) fn server_ref(raw: &str) -> Result<gateway_registry::ServerRef, ApiError> {
    gateway_registry::ServerRef::parse(raw)
        .map_err(|reason| ApiError::new(ProblemKind::NotFound, reason))
}

/// The MCP runtime, or 503 in a process that does not run one.
pub(crate) fn mcp_runtime(
    state: &ApiState,
) -> Result<&std::sync::Arc<crate::mcp::McpRuntime>, ApiError> {
    state.mcp.as_ref().ok_or_else(|| {
        ApiError::new(
            ProblemKind::Unavailable,
            "the MCP runtime is not running in this process",
        )
    })
}

/// Parses an optional `true`/`false` query parameter (serde's own error for a bad
/// boolean does not name the parameter).
pub(crate) fn bool_param(raw: Option<&str>) -> Result<Option<bool>, String> {
    match raw {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(format!("`{}` is not true or false", other.escape_debug())),
    }
}

/// Builds a page request from the `limit` and `cursor` query parameters; `arity` is
/// the length of the listing's sort key.
pub(crate) fn page_request(
    limit: Option<u64>,
    cursor: Option<&str>,
    arity: usize,
) -> Result<PageRequest, ApiError> {
    let after = cursor
        .filter(|c| !c.is_empty())
        .map(|c| Cursor::decode(c, arity))
        .transpose()
        .map_err(|e| {
            ApiError::new(ProblemKind::BadRequest, format!("cursor: {e}"))
                .with_field("cursor", e.to_string())
        })?;
    PageRequest::new(limit, after).map_err(|e| {
        ApiError::new(ProblemKind::BadRequest, format!("limit: {e}")).with_field("limit", e)
    })
}

/// Checks the free-text `q` parameter up front, so an over-long one is a 400 like
/// every other bad query parameter.
pub(crate) fn search_text(q: Option<String>) -> Result<Option<String>, ApiError> {
    match q {
        Some(text) if text.chars().count() > gateway_registry::MAX_QUERY_LEN => {
            let reason = format!(
                "must be at most {} characters",
                gateway_registry::MAX_QUERY_LEN
            );
            Err(
                ApiError::new(ProblemKind::BadRequest, format!("q: {reason}"))
                    .with_field("q", reason),
            )
        }
        other => Ok(other),
    }
}

/// Puts changed access or rate-limit rules in force before the answer (the runtime's
/// queue would do it a moment later), so a client that hears "created" is served by
/// the new rules.
pub(crate) async fn rules_changed(state: &ApiState) {
    if let Some(runtime) = &state.mcp {
        runtime.apply_rules().await;
    }
}
