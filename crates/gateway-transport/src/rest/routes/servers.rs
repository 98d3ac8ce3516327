//! `/api/v1/servers`: register, list, read, update and remove upstream servers, and
//! read the catalog each one reported. `{server}` is a server id or name.

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{Data, Path, Query};
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post};
use gateway_domain::{HealthState, ServerFilter, Tag};
use gateway_registry::{RegistryError, ServerRef};

use super::{page_request, server_ref};
use crate::rest::app::ApiState;
use crate::rest::body::JsonBody;
use crate::rest::dto::{
    CatalogView, CreateServerBody, PatchServerBody, ServerListQuery, ServerPage, ServerView,
};
use crate::rest::problem::{ApiError, Problem, ProblemKind};

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// What `If-Match` asks for: nothing, any current version (`*`), or one version.
enum IfMatch {
    Absent,
    Any,
    Version(i64),
}

fn if_match(req: &HttpRequest) -> Result<IfMatch, ApiError> {
    let Some(raw) = req.headers().get(header::IF_MATCH) else {
        return Ok(IfMatch::Absent);
    };
    let text = raw.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(IfMatch::Any);
    }
    if text.is_empty() {
        return Err(ApiError::new(
            ProblemKind::BadRequest,
            "If-Match: empty; send the server's ETag, or leave the header out",
        )
        .with_field("If-Match", "empty"));
    }
    if text.contains(',') {
        return Err(ApiError::new(
            ProblemKind::BadRequest,
            "If-Match: send a single entity tag (the server's ETag)",
        )
        .with_field("If-Match", "several entity tags are not supported"));
    }
    // A weak or foreign tag can never match a version strongly: that is a failed precondition.
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse().ok())
        .map(IfMatch::Version)
        .ok_or_else(|| {
            ApiError::new(
                ProblemKind::PreconditionFailed,
                format!("If-Match {text} matches no version of this server"),
            )
        })
}

/// Maps a stale write found through `If-Match` to 412 (RFC 9110), through the body's
/// `version` to 409.
fn stale_to_precondition(error: RegistryError) -> ApiError {
    match error {
        error @ RegistryError::StaleVersion { .. } => {
            ApiError::new(ProblemKind::PreconditionFailed, error.to_string())
        }
        other => other.into(),
    }
}

/// A server with its `ETag`.
pub(crate) fn server_response(
    mut builder: actix_web::HttpResponseBuilder,
    server: &gateway_domain::UpstreamServer,
) -> HttpResponse {
    builder
        .insert_header((header::ETAG, etag(server.version)))
        .json(ServerView::from(server))
}

/// Register a server.
#[utoipa::path(
    tag = "servers",
    request_body(content = CreateServerBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = ServerView,
         headers(("Location" = String, description = "URL of the new server"), ("ETag" = String, description = "Its version"))),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "stdio upstreams are disabled", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/servers")]
pub async fn create_server(
    state: Data<ApiState>,
    body: JsonBody<CreateServerBody>,
) -> Result<HttpResponse, ApiError> {
    let server = state.registry.register(body.0.into()).await?;
    let location = format!("/api/v1/servers/{}", server.id);
    let mut builder = HttpResponse::Created();
    builder.insert_header((header::LOCATION, location));
    Ok(server_response(builder, &server))
}

/// List servers, filtered, ordered by name, one page at a time.
#[utoipa::path(
    tag = "servers",
    params(ServerListQuery),
    responses(
        (status = 200, body = ServerPage),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/servers")]
pub async fn list_servers(
    state: Data<ApiState>,
    query: Query<ServerListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (filter, page) = server_listing(query.into_inner())?;
    let found = state.registry.list(&filter, &page).await?;
    Ok(HttpResponse::Ok().json(ServerPage {
        items: found.items.iter().map(ServerView::from).collect(),
        next_cursor: found.next.map(|c| c.encode()),
    }))
}

/// The filter and page a server listing asks for (the REST list and the gateway's
/// `list_servers` tool), every bad parameter named.
pub(crate) fn server_listing(
    query: ServerListQuery,
) -> Result<(ServerFilter, gateway_domain::PageRequest), ApiError> {
    let bad = |field: &str, reason: String| {
        ApiError::new(ProblemKind::BadRequest, format!("{field}: {reason}"))
            .with_field(field, reason)
    };
    let filter = ServerFilter {
        tag: query
            .tag
            .as_deref()
            .map(Tag::parse)
            .transpose()
            .map_err(|e| bad("tag", e.to_string()))?,
        enabled: super::bool_param(query.enabled.as_deref())
            .map_err(|reason| bad("enabled", reason))?,
        health: query
            .health
            .as_deref()
            .map(str::parse::<HealthState>)
            .transpose()
            .map_err(|e| bad("health", e))?,
        text: super::search_text(query.q)?,
    };
    let page = page_request(query.limit, query.cursor.as_deref(), 1)?;
    Ok((filter, page))
}

/// Read one server (by id or name).
#[utoipa::path(
    tag = "servers",
    params(("server" = String, Path, description = "Server id or name")),
    responses(
        (status = 200, body = ServerView, headers(("ETag" = String, description = "The server's version"))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/servers/{server}")]
pub async fn get_server(
    state: Data<ApiState>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let server = state.registry.get(&server_ref(&path)?).await?;
    Ok(server_response(HttpResponse::Ok(), &server))
}

/// Update a server partially (merge-patch). Guard against lost updates with
/// `If-Match: "<version>"` (412 when stale) or `"version"` in the body (409 when stale).
#[utoipa::path(
    tag = "servers",
    params(
        ("server" = String, Path, description = "Server id or name"),
        ("If-Match" = Option<String>, Header, description = "ETag of the version this change is based on"),
    ),
    request_body(content = PatchServerBody, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, body = ServerView, headers(("ETag" = String, description = "The new version"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stale version or name taken", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match failed", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/servers/{server}")]
pub async fn update_server(
    state: Data<ApiState>,
    req: HttpRequest,
    path: Path<String>,
    body: JsonBody<PatchServerBody>,
) -> Result<HttpResponse, ApiError> {
    let server = server_ref(&path)?;
    let precondition = if_match(&req)?;
    let (body_version, changes) = body.0.into_parts();
    let updated = match precondition {
        IfMatch::Version(version) => {
            if body_version.is_some_and(|v| v != version) {
                return Err(ApiError::new(
                    ProblemKind::BadRequest,
                    "If-Match and the body's version disagree",
                )
                .with_field(
                    "version",
                    format!("must equal the If-Match version {version}"),
                ));
            }
            state
                .registry
                .update(&server, Some(version), changes)
                .await
                .map_err(stale_to_precondition)?
        }
        IfMatch::Any | IfMatch::Absent => {
            state
                .registry
                .update(&server, body_version, changes)
                .await?
        }
    };
    Ok(server_response(HttpResponse::Ok(), &updated))
}

/// Remove a server with its catalog; optionally only at the version in `If-Match`.
#[utoipa::path(
    tag = "servers",
    params(
        ("server" = String, Path, description = "Server id or name"),
        ("If-Match" = Option<String>, Header, description = "Only delete this version"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/servers/{server}")]
pub async fn delete_server(
    state: Data<ApiState>,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let server = server_ref(&path)?;
    match if_match(&req)? {
        IfMatch::Version(version) => state
            .registry
            .remove(&server, Some(version))
            .await
            .map_err(stale_to_precondition)?,
        IfMatch::Any | IfMatch::Absent => state.registry.remove(&server, None).await?,
    }
    Ok(HttpResponse::NoContent().finish())
}

/// The tools, resources, templates and prompts the server reported at its last
/// discovery (empty lists and `fetched_at: null` before the first one).
#[utoipa::path(
    tag = "discovery",
    params(("server" = String, Path, description = "Server id or name")),
    responses(
        (status = 200, body = CatalogView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/servers/{server}/catalog")]
pub async fn get_catalog(
    state: Data<ApiState>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (server, catalog) = state.registry.catalog(&server_ref(&path)?).await?;
    Ok(HttpResponse::Ok().json(CatalogView::new(&server, catalog.as_ref())))
}

/// Reconnect to the server if needed and fetch its catalog now (all pages of
/// tools, prompts, resources and templates); answers with the catalog stored
/// afterwards. A failure is recorded as the server's health and the last known
/// catalog is kept.
#[utoipa::path(
    tag = "discovery",
    params(("server" = String, Path, description = "Server id or name")),
    responses(
        (status = 200, body = CatalogView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The MCP runtime is not running", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/servers/{server}/refresh")]
pub async fn refresh_server(
    state: Data<ApiState>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = state.registry.get(&server_ref(&path)?).await?;
    super::mcp_runtime(&state)?.refresh(found.id).await;
    let (server, catalog) = state.registry.catalog(&ServerRef::Id(found.id)).await?;
    Ok(HttpResponse::Ok().json(CatalogView::new(&server, catalog.as_ref())))
}
