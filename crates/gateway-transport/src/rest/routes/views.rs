//! `/api/v1/views`: curated views, each served as its own MCP endpoint at
//! `/mcp/views/{name}` (a chosen subset of tools, prompts and resources across
//! servers, with optional renames and description overrides). Changing them needs
//! admin rights (the auth gate); the endpoint's clients get `list_changed`.

use std::collections::BTreeMap;

use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, delete, get, post, put};
use gateway_domain::{ItemOverride, View, ViewSpec};
use gateway_registry::RegistryError;
use gateway_router::snapshot::ListKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::rest::app::ApiState;
use crate::rest::body::JsonBody;
use crate::rest::problem::{ApiError, Problem, ProblemKind};

/// A rename and/or a new description of one tool or prompt.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemOverrideBody {
    /// The name the view exposes instead (`A-Z a-z 0-9 _ - .`, ≤ 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The description the view shows instead (≤ 4096 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A view's definition (`name` is required on create, and must match the path on
/// replace if given).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewBody {
    /// Unique name, `[a-z0-9][a-z0-9-]{0,62}`; the endpoint is `/mcp/views/{name}`.
    #[serde(default)]
    #[schema(example = "support")]
    pub name: Option<String>,
    /// What it is for (≤ 1000 characters).
    #[serde(default)]
    pub description: Option<String>,
    /// Tools, as globs over `<server>__<tool>` (a name without `*`/`?` is exact).
    #[serde(default)]
    #[schema(example = json!(["github__*", "jira__get_issue"]))]
    pub tools: Vec<String>,
    /// Prompts, as globs over `<server>__<prompt>`.
    #[serde(default)]
    pub prompts: Vec<String>,
    /// Resources and templates, as globs over `<server>__<uri>`.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Per tool or prompt (`<server>__<name>`): a new name and/or description.
    #[serde(default)]
    pub overrides: BTreeMap<String, ItemOverrideBody>,
}

impl ViewBody {
    fn into_spec(self, name: &str) -> Result<ViewSpec, ApiError> {
        let overrides = self
            .overrides
            .into_iter()
            .map(|(item, change)| {
                (
                    item,
                    ItemOverride {
                        name: change.name,
                        description: change.description,
                    },
                )
            })
            .collect();
        ViewSpec::new(
            name,
            self.description,
            self.tools,
            self.prompts,
            self.resources,
            overrides,
        )
        .map_err(|errors| RegistryError::Invalid(errors).into())
    }
}

/// How many items the view currently offers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ViewCounts {
    /// Tools listed.
    pub tools: usize,
    /// Prompts listed.
    pub prompts: usize,
    /// Resources listed.
    pub resources: usize,
    /// Resource templates listed.
    pub resource_templates: usize,
}

/// A stored view.
#[derive(Debug, Serialize, ToSchema)]
pub struct ViewOut {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its MCP endpoint (path).
    pub endpoint: String,
    /// What it is for.
    pub description: Option<String>,
    /// Tool patterns.
    pub tools: Vec<String>,
    /// Prompt patterns.
    pub prompts: Vec<String>,
    /// Resource patterns.
    pub resources: Vec<String>,
    /// Renames and description overrides.
    pub overrides: BTreeMap<String, ItemOverrideBody>,
    /// What it offers now (absent when the MCP runtime has not built it yet).
    pub items: Option<ViewCounts>,
    /// Creation time.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last change.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

fn view_out(state: &ApiState, view: &View) -> ViewOut {
    let spec = &view.spec;
    let items = state.mcp.as_ref().and_then(|runtime| {
        let current = runtime.current();
        let listing = current.views.get(&spec.name)?;
        let count = |kind| listing.page(kind, None, usize::MAX).0.len();
        Some(ViewCounts {
            tools: count(ListKind::Tools),
            prompts: count(ListKind::Prompts),
            resources: count(ListKind::Resources),
            resource_templates: count(ListKind::ResourceTemplates),
        })
    });
    ViewOut {
        id: view.id,
        name: spec.name.to_string(),
        endpoint: format!("/mcp/views/{}", spec.name),
        description: spec.description.clone(),
        tools: spec.tools.clone(),
        prompts: spec.prompts.clone(),
        resources: spec.resources.clone(),
        overrides: spec
            .overrides
            .iter()
            .map(|(item, change)| {
                (
                    item.clone(),
                    ItemOverrideBody {
                        name: change.name.clone(),
                        description: change.description.clone(),
                    },
                )
            })
            .collect(),
        items,
        created_at: view.created_at,
        updated_at: view.updated_at,
    }
}

/// The view is built off the request path; wait for it so the answer (and the
/// endpoint) reflect the change.
async fn rebuilt(state: &ApiState) {
    if let Some(runtime) = &state.mcp {
        runtime.rebuild().await;
    }
}

/// Every view, by name.
#[utoipa::path(tag = "views", responses((status = 200, body = Vec<ViewOut>)))]
#[get("/views")]
pub async fn list_views(state: Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let views = state.registry.views().await?;
    Ok(HttpResponse::Ok().json(
        views
            .iter()
            .map(|v| view_out(&state, v))
            .collect::<Vec<_>>(),
    ))
}

/// One view.
#[utoipa::path(
    tag = "views",
    params(("name" = String, Path, description = "View name")),
    responses(
        (status = 200, body = ViewOut),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/views/{name}")]
pub async fn get_view(state: Data<ApiState>, path: Path<String>) -> Result<HttpResponse, ApiError> {
    let view = state.registry.view(&path).await?;
    Ok(HttpResponse::Ok().json(view_out(&state, &view)))
}

/// Create a view; it is served at once at `/mcp/views/{name}`.
#[utoipa::path(
    tag = "views",
    request_body = ViewBody,
    responses(
        (status = 201, body = ViewOut, headers(("Location" = String, description = "URL of the new view"))),
        (status = 409, description = "Name taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/views")]
pub async fn create_view(
    state: Data<ApiState>,
    body: JsonBody<ViewBody>,
) -> Result<HttpResponse, ApiError> {
    let JsonBody(body) = body;
    let name = body.name.clone().ok_or_else(|| {
        ApiError::new(ProblemKind::Validation, "name: required").with_field("name", "required")
    })?;
    let view = state.registry.create_view(body.into_spec(&name)?).await?;
    rebuilt(&state).await;
    Ok(HttpResponse::Created()
        .insert_header(("location", format!("/api/v1/views/{}", view.spec.name)))
        .json(view_out(&state, &view)))
}

/// Replace a view's definition; its clients get `list_changed` if what it offers
/// changed.
#[utoipa::path(
    tag = "views",
    params(("name" = String, Path, description = "View name")),
    request_body = ViewBody,
    responses(
        (status = 200, body = ViewOut),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/views/{name}")]
pub async fn replace_view(
    state: Data<ApiState>,
    path: Path<String>,
    body: JsonBody<ViewBody>,
) -> Result<HttpResponse, ApiError> {
    let JsonBody(body) = body;
    if body
        .name
        .as_deref()
        .is_some_and(|name| name != path.as_str())
    {
        return Err(ApiError::new(
            ProblemKind::Validation,
            "name: a view cannot be renamed; create a new one",
        )
        .with_field("name", format!("must be `{path}` or absent")));
    }
    let spec = body.into_spec(&path)?;
    let view = state.registry.replace_view(spec).await?;
    rebuilt(&state).await;
    Ok(HttpResponse::Ok().json(view_out(&state, &view)))
}

/// Remove a view; its endpoint stops serving.
#[utoipa::path(
    tag = "views",
    params(("name" = String, Path, description = "View name")),
    responses(
        (status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/views/{name}")]
pub async fn delete_view(
    state: Data<ApiState>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.registry.remove_view(&path).await?;
    rebuilt(&state).await;
    Ok(HttpResponse::NoContent().finish())
}
