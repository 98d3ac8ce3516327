//! Route handlers, one module per resource, plus the small helpers they share.

pub mod servers;
pub mod system;
pub mod tools;

use gateway_domain::{Cursor, PageRequest};

use super::problem::{ApiError, ProblemKind};

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
