//! `/api/v1/rate-limits`: the rate-limit rules (a GCRA budget per tenant, principal,
//! role, server or tool matching a glob). Changing them needs admin rights (the auth
//! gate); they apply to the next request.

use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, delete, get, post};
use gateway_domain::RateLimitRule;
use gateway_registry::RegistryError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::rest::app::ApiState;
use crate::rest::body::JsonBody;
use crate::rest::problem::{ApiError, Problem, ProblemKind};

/// A new rate-limit rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRateLimitBody {
    /// The dimension budgets are kept per: `tenant`, `principal`, `role`, `server` or
    /// `tool` (`<server>__<name>` of a tool, prompt or resource).
    #[schema(example = "tenant")]
    pub scope: String,
    /// Glob over the dimension's value: `*` gives every value its own budget;
    /// the most specific matching rule applies to a value.
    #[serde(default = "every_value")]
    #[schema(example = "*")]
    pub matches: String,
    /// Requests per period (1–1000000).
    #[schema(example = 600)]
    pub rate: u32,
    /// The period in seconds (1–86400).
    #[schema(example = 60)]
    pub period_secs: u32,
    /// Requests allowed back to back (default: `rate`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Why it exists.
    #[serde(default)]
    pub description: Option<String>,
}

fn every_value() -> String {
    "*".into()
}

/// A rate-limit rule in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitView {
    /// Its id.
    pub id: Uuid,
    /// The dimension budgets are kept per.
    pub scope: String,
    /// Which values of it.
    pub matches: String,
    /// Requests per period.
    pub rate: u32,
    /// The period in seconds.
    pub period_secs: u32,
    /// Requests allowed back to back.
    pub burst: u32,
    /// Why it exists.
    pub description: Option<String>,
    /// When it was created (the Unix epoch for a rule from the configuration file).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// `api` (managed here) or `config` (from `[[rate_limits.rules]]`, read-only here).
    pub source: &'static str,
}

impl From<&RateLimitRule> for RateLimitView {
    fn from(rule: &RateLimitRule) -> Self {
        Self {
            id: rule.id,
            scope: rule.scope.as_str().to_owned(),
            matches: rule.matches.clone(),
            rate: rule.quota.rate,
            period_secs: rule.quota.period_secs,
            burst: rule.quota.burst,
            description: rule.description.clone(),
            created_at: rule.created_at,
            source: if rule.configured { "config" } else { "api" },
        }
    }
}

/// Every rate-limit rule: the configuration file's, then the API's, oldest first.
#[utoipa::path(tag = "rate-limits", responses((status = 200, body = Vec<RateLimitView>)))]
#[get("/rate-limits")]
pub async fn list_rate_limits(state: Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let rules = state.registry.rate_limit_rules().await?;
    Ok(HttpResponse::Ok().json(rules.iter().map(RateLimitView::from).collect::<Vec<_>>()))
}

/// Add a rate-limit rule. Every dimension of a request with a matching rule must have
/// budget left (a tenant limit and a per-tool limit both hold).
#[utoipa::path(
    tag = "rate-limits",
    request_body = CreateRateLimitBody,
    responses(
        (status = 201, body = RateLimitView),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/rate-limits")]
pub async fn create_rate_limit(
    state: Data<ApiState>,
    body: JsonBody<CreateRateLimitBody>,
) -> Result<HttpResponse, ApiError> {
    let JsonBody(body) = body;
    let rule = RateLimitRule::new(
        &body.scope,
        &body.matches,
        body.rate,
        body.period_secs,
        body.burst,
        body.description,
    )
    .map_err(RegistryError::Invalid)?;
    let rule = state.registry.add_rate_limit_rule(rule).await?;
    super::rules_changed(&state).await;
    Ok(HttpResponse::Created()
        .insert_header(("location", format!("/api/v1/rate-limits/{}", rule.id)))
        .json(RateLimitView::from(&rule)))
}

/// Remove a rate-limit rule (403 for one of the configuration file).
#[utoipa::path(
    tag = "rate-limits",
    params(("id" = Uuid, Path, description = "Rule id")),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/rate-limits/{id}")]
pub async fn delete_rate_limit(
    state: Data<ApiState>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || {
        ApiError::new(
            ProblemKind::NotFound,
            format!("no rate-limit rule `{path}`"),
        )
    };
    let id = path.parse::<Uuid>().map_err(|_| not_found())?;
    match state.registry.remove_rate_limit_rule(id).await {
        Ok(()) => {
            super::rules_changed(&state).await;
            Ok(HttpResponse::NoContent().finish())
        }
        Err(RegistryError::NotFound(_)) => Err(not_found()),
        Err(other) => Err(other.into()),
    }
}
