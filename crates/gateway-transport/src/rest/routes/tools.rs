//! `/api/v1/tools`: service discovery across every registered server's catalog.

use actix_web::web::{Data, Query};
use actix_web::{HttpResponse, get};
use gateway_domain::ServerName;

use super::page_request;
use crate::rest::app::ApiState;
use crate::rest::dto::{ToolPage, ToolSearchQuery, ToolView};
use crate::rest::problem::{ApiError, Problem, ProblemKind};

/// Search tools by text in their name, title or description, across servers.
#[utoipa::path(
    tag = "discovery",
    params(ToolSearchQuery),
    responses(
        (status = 200, body = ToolPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/tools")]
pub async fn search_tools(
    state: Data<ApiState>,
    query: Query<ToolSearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let server = query
        .server
        .as_deref()
        .map(ServerName::parse)
        .transpose()
        .map_err(|e| {
            ApiError::new(ProblemKind::BadRequest, format!("server: {e}"))
                .with_field("server", e.to_string())
        })?;
    let page = page_request(query.limit, query.cursor.as_deref(), 2)?;
    let text = super::search_text(query.q)?;
    let found = state
        .registry
        .search_tools(text.as_deref(), server.as_ref(), &page)
        .await?;
    Ok(HttpResponse::Ok().json(ToolPage {
        items: found.items.iter().map(ToolView::from).collect(),
        next_cursor: found.next.map(|c| c.encode()),
    }))
}
