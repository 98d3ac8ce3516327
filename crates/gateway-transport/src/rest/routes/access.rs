//! `/api/v1/policies` and `/api/v1/roles`: the access rules (RBAC) that decide which
//! role may list, call, read or get which upstream items. Changing them needs admin
//! rights (the auth gate); every connected client is re-listed when they change.

use std::collections::BTreeMap;

use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, delete, get, post};
use gateway_domain::AccessRule;
use gateway_registry::RegistryError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::rest::app::ApiState;
use crate::rest::body::JsonBody;
use crate::rest::problem::{ApiError, Problem, ProblemKind};

/// A new access rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePolicyBody {
    /// The role it grants to (a value of the token's roles claim).
    pub role: String,
    /// Any of `list`, `call`, `read`, `get_prompt`.
    pub actions: Vec<String>,
    /// Globs over `<server>__<name>`: `*` any run, `?` one character
    /// (`github__*`, `*__read_*`).
    pub patterns: Vec<String>,
    /// Why it exists.
    #[serde(default)]
    pub description: Option<String>,
}

/// A stored access rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    /// Its id.
    pub id: Uuid,
    /// The role it grants to.
    pub role: String,
    /// What the role may do.
    pub actions: Vec<String>,
    /// Which items.
    pub patterns: Vec<String>,
    /// Why it exists.
    pub description: Option<String>,
    /// When it was created (the Unix epoch for a rule from the configuration file).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// `api` (managed here) or `config` (from `[[auth.rules]]`, read-only here).
    pub source: &'static str,
}

impl From<&AccessRule> for PolicyView {
    fn from(rule: &AccessRule) -> Self {
        Self {
            id: rule.id,
            role: rule.role.clone(),
            actions: rule.actions.iter().map(|a| a.as_str().to_owned()).collect(),
            patterns: rule.patterns.clone(),
            description: rule.description.clone(),
            created_at: rule.created_at,
            source: if rule.configured { "config" } else { "api" },
        }
    }
}

/// A role and the rules that grant it something.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleView {
    /// The role.
    pub role: String,
    /// Whether it sees everything (`auth.admin_roles`).
    pub admin: bool,
    /// Its rules.
    pub policies: Vec<PolicyView>,
}

/// Every access rule, oldest first.
#[utoipa::path(tag = "access", responses((status = 200, body = Vec<PolicyView>)))]
#[get("/policies")]
pub async fn list_policies(state: Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let rules = state.registry.access_rules().await?;
    Ok(HttpResponse::Ok().json(rules.iter().map(PolicyView::from).collect::<Vec<_>>()))
}

/// Grant a role actions on items. Rules only ever allow: without a rule a role sees
/// nothing (admin roles see everything).
#[utoipa::path(
    tag = "access",
    request_body = CreatePolicyBody,
    responses(
        (status = 201, body = PolicyView),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/policies")]
pub async fn create_policy(
    state: Data<ApiState>,
    body: JsonBody<CreatePolicyBody>,
) -> Result<HttpResponse, ApiError> {
    let JsonBody(body) = body;
    let rule = state
        .registry
        .add_access_rule(&body.role, &body.actions, body.patterns, body.description)
        .await?;
    super::rules_changed(&state).await;
    Ok(HttpResponse::Created()
        .insert_header(("location", format!("/api/v1/policies/{}", rule.id)))
        .json(PolicyView::from(&rule)))
}

/// Remove an access rule.
#[utoipa::path(
    tag = "access",
    params(("id" = Uuid, Path, description = "Rule id")),
    responses(
        (status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/policies/{id}")]
pub async fn delete_policy(
    state: Data<ApiState>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(ProblemKind::NotFound, format!("no access rule `{path}`"));
    let id = path.parse::<Uuid>().map_err(|_| not_found())?;
    match state.registry.remove_access_rule(id).await {
        Ok(()) => {
            super::rules_changed(&state).await;
            Ok(HttpResponse::NoContent().finish())
        }
        Err(RegistryError::NotFound(_)) => Err(not_found()),
        Err(other) => Err(other.into()),
    }
}

/// Every role that appears in a rule or is an admin role, with its rules.
#[utoipa::path(tag = "access", responses((status = 200, body = Vec<RoleView>)))]
#[get("/roles")]
pub async fn list_roles(state: Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let rules = state.registry.access_rules().await?;
    let admin_roles: Vec<String> = state
        .auth
        .as_ref()
        .map(|gate| gate.admin_roles.clone())
        .unwrap_or_default();
    let mut roles: BTreeMap<String, Vec<PolicyView>> = admin_roles
        .iter()
        .map(|role| (role.clone(), Vec::new()))
        .collect();
    for rule in &rules {
        roles
            .entry(rule.role.clone())
            .or_default()
            .push(PolicyView::from(rule));
    }
    Ok(HttpResponse::Ok().json(
        roles
            .into_iter()
            .map(|(role, policies)| RoleView {
                admin: admin_roles.contains(&role),
                role,
                policies,
            })
            .collect::<Vec<_>>(),
    ))
}
