//! The authentication gate in front of `/mcp` and `/api/v1`: bearer tokens checked by
//! the domain's `TokenVerifier` port, the RFC 6750 / MCP authorization challenge
//! (`WWW-Authenticate: Bearer resource_metadata="…"`), OAuth 2.0 Protected Resource
//! Metadata (RFC 9728) at `/.well-known/oauth-protected-resource[/<path>]`, and admin
//! rights for registry writes (an admin role, or an admin API key whose SHA-256 is
//! configured). The client's token stays here: nothing forwards it upstream.

use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::{Data, Path};
use actix_web::{Error, HttpMessage, HttpResponse, ResponseError, get};
use gateway_domain::{AuthError, Principal, ServerName, TokenVerifier};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::app::ApiState;
use super::problem::{ApiError, ProblemKind};

/// The header that carries an admin API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// What the gate checks, built once from the configuration.
pub struct AuthGate {
    /// Verifies bearer tokens.
    pub verifier: Arc<dyn TokenVerifier>,
    /// The gateway's public base URL, without a trailing slash.
    pub public_url: String,
    /// Issuers clients should get tokens from (the metadata's `authorization_servers`).
    pub authorization_servers: Vec<String>,
    /// Scopes announced in the metadata and the challenge.
    pub scopes_supported: Vec<String>,
    /// Roles that may change the registry.
    pub admin_roles: Vec<String>,
    /// SHA-256 digests of the admin API keys.
    pub admin_key_digests: Vec<[u8; 32]>,
    /// Whether reading `/api/v1` and `/metrics` needs a valid token too.
    pub protect_reads: bool,
    /// The scope a token of the OAuth façade must carry for its admin roles to count
    /// (the user consented to administration by that client); `None` without the façade.
    pub facade_admin_scope: Option<String>,
}

/// Parses hex SHA-256 digests (validated by the configuration).
pub fn parse_digests(hex: &[String]) -> Vec<[u8; 32]> {
    hex.iter()
        .filter_map(|h| {
            let bytes: Option<Vec<u8>> = (0..h.len())
                .step_by(2)
                .map(|i| h.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
                .collect();
            bytes.and_then(|b| <[u8; 32]>::try_from(b).ok())
        })
        .collect()
}

/// Who made a request, once the gate let it in.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A verified bearer token.
    Token(Principal),
    /// An admin API key.
    ApiKey,
}

/// Quotes a value for an auth-param (RFC 9110 quoted-string).
fn quoted(value: &str) -> String {
    let escaped: String = value
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

impl AuthGate {
    /// The metadata URL for the resource at `path` (`/mcp`, `/mcp/servers/x`, or ``).
    fn metadata_url(&self, path: &str) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource{path}",
            self.public_url
        )
    }

    /// `WWW-Authenticate` for a request to `resource_path` that failed with `error`.
    pub fn challenge(&self, resource_path: &str, error: Option<&AuthError>) -> String {
        let mut params = vec![format!(
            "resource_metadata={}",
            quoted(&self.metadata_url(resource_path))
        )];
        let required = match error {
            Some(AuthError::InsufficientScope(scopes)) => scopes.clone(),
            _ => self.scopes_supported.clone(),
        };
        if !required.is_empty() {
            params.push(format!("scope={}", quoted(&required.join(" "))));
        }
        if let Some(error) = error
            && let Some(code) = error.oauth_code()
        {
            params.push(format!("error={}", quoted(code)));
            params.push(format!("error_description={}", quoted(&error.to_string())));
        }
        format!("Bearer {}", params.join(", "))
    }

    fn is_admin_key(&self, request: &ServiceRequest) -> bool {
        let Some(key) = request
            .headers()
            .get(API_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(key.trim().as_bytes()).into();
        // Digests compared, not keys: the comparison time says nothing about a key.
        self.admin_key_digests.contains(&digest)
    }

    /// A token the gateway issued for one resource (RFC 8707) opens that resource only:
    /// a token for `/mcp` opens every MCP endpoint, one for `/mcp/servers/a` only that
    /// one, and none opens the registry API (`resource_path` ``). The identity
    /// provider's tokens are for the whole gateway.
    fn for_resource(
        &self,
        mut principal: Principal,
        resource_path: &str,
    ) -> Result<Principal, AuthError> {
        let Some(granted) = principal.resource.clone() else {
            return Ok(principal);
        };
        // A client the user let use MCP servers is not thereby an administrator: the
        // admin roles count only with the admin scope.
        let admin_consented = self
            .facade_admin_scope
            .as_deref()
            .is_some_and(|scope| principal.has_scope(scope));
        if !admin_consented {
            principal
                .roles
                .retain(|role| !self.admin_roles.contains(role));
        }
        let granted = granted.as_str();
        let aggregate = format!("{}/mcp", self.public_url);
        let asked = format!("{}{resource_path}", self.public_url);
        if !resource_path.is_empty() && (granted == aggregate || granted == asked) {
            Ok(principal)
        } else {
            Err(AuthError::Invalid(format!(
                "the token was issued for {granted}, not for {}",
                if resource_path.is_empty() {
                    "the registry API".to_owned()
                } else {
                    asked
                }
            )))
        }
    }

    async fn verify(&self, request: &ServiceRequest) -> Result<Principal, AuthError> {
        let Some(value) = request.headers().get(header::AUTHORIZATION) else {
            return Err(AuthError::Missing);
        };
        let value = value
            .to_str()
            .map_err(|_| AuthError::Malformed("the Authorization header is not text".into()))?;
        let (scheme, token) = value.split_once(' ').ok_or_else(|| {
            AuthError::Malformed("expected `Authorization: Bearer <token>`".into())
        })?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed(
                "expected `Authorization: Bearer <token>`".into(),
            ));
        }
        self.verifier.verify(token.trim()).await
    }
}

/// Where a path belongs, for the gate.
enum Area {
    /// `/mcp` or `/mcp/servers/{name}`: the resource path for its metadata.
    Mcp(String),
    /// `/api/v1/…`.
    Api,
    /// `/metrics`.
    Metrics,
    /// Probes, documentation, metadata: always public.
    Public,
}

/// Paths anyone may reach: probes, service information, API documentation, the
/// resource metadata and the OAuth façade (which authenticates its clients itself). Everything else is protected, so a path the gate does not know
/// is never open by accident.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/health" | "/ready" | "/openapi.json" | "/docs" | "/redoc"
    ) || path.starts_with("/docs/")
        || path == "/.well-known/oauth-protected-resource"
        || path.starts_with("/.well-known/oauth-protected-resource/")
        || path == "/.well-known/oauth-authorization-server"
        || path.starts_with("/.well-known/oauth-authorization-server/")
        || path.starts_with("/oauth/")
}

/// Classifies the path actix routes on (percent-decoded), never the raw one: an
/// encoded letter (`/%61pi/v1`) must land in the same area as the route it reaches.
fn area(path: &str) -> Area {
    if path == "/mcp" || path.starts_with("/mcp/") {
        let resource = path
            .strip_prefix("/mcp/servers/")
            .and_then(|rest| rest.split('/').next())
            .filter(|name| ServerName::parse(name).is_ok())
            .map_or_else(|| "/mcp".to_owned(), |name| format!("/mcp/servers/{name}"));
        Area::Mcp(resource)
    } else if path == "/api/v1" || path.starts_with("/api/v1/") {
        Area::Api
    } else if path == "/metrics" {
        Area::Metrics
    } else if is_public(path) {
        Area::Public
    } else {
        // Unknown paths answer 404 anyway; treated like the API they cannot escape it.
        Area::Api
    }
}

/// The OAuth error body of `/mcp` (the MCP transport answers auth failures in plain
/// HTTP, not JSON-RPC).
#[derive(Serialize)]
struct OAuthError<'a> {
    error: &'a str,
    error_description: String,
}

fn mcp_refusal(gate: &AuthGate, resource: &str, error: &AuthError) -> HttpResponse {
    let status = match error {
        AuthError::InsufficientScope(_) => StatusCode::FORBIDDEN,
        AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut response = HttpResponse::build(status);
    if status != StatusCode::SERVICE_UNAVAILABLE
        && let Ok(value) = HeaderValue::from_str(&gate.challenge(resource, Some(error)))
    {
        response.insert_header((header::WWW_AUTHENTICATE, value));
    }
    response.json(OAuthError {
        error: error.oauth_code().unwrap_or("invalid_request"),
        error_description: error.to_string(),
    })
}

fn api_refusal(gate: &AuthGate, error: &AuthError) -> HttpResponse {
    let kind = match error {
        AuthError::InsufficientScope(_) => ProblemKind::Forbidden,
        AuthError::Unavailable(_) => ProblemKind::Unavailable,
        _ => ProblemKind::Unauthorized,
    };
    let mut response = ApiError::new(kind, error.to_string()).error_response();
    if kind != ProblemKind::Unavailable
        && let Ok(value) = HeaderValue::from_str(&gate.challenge("", Some(error)))
    {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The gate itself; a no-op when authentication is off.
pub(crate) async fn auth_gate(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let gate = request
        .app_data::<Data<ApiState>>()
        .and_then(|state| state.auth.clone());
    let Some(gate) = gate else {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let routed_path = request.match_info().as_str().to_owned();
    // The audit trail names every caller of every tenant: reading it is for admins.
    let admin_only = writes || routed_path.starts_with("/api/v1/audit");
    // An address whose budget for refused credentials is spent is not even checked:
    // guessing stays slow whether the next guess is right or wrong.
    if !matches!(area(&routed_path), Area::Public)
        && let Some(state) = request.app_data::<Data<ApiState>>()
        && let Some(limiter) = state.ip_limits.unauthenticated.as_ref()
        && let Some(address) = state.ip_limits.client_of(&request)
        && let Some(wait) = limiter.blocked_for(address)
    {
        state.metrics.rate_limited.with_label_values(&["ip"]).inc();
        let response = super::ip_limit::too_many(limiter.quota(), wait, "unauthenticated requests");
        return Ok(request.into_response(response).map_into_right_body());
    }
    let refusal = match area(&routed_path) {
        Area::Public => None,
        Area::Mcp(resource) => match gate
            .verify(&request)
            .await
            .and_then(|principal| gate.for_resource(principal, &resource))
        {
            Ok(principal) => {
                admit(&request, Caller::Token(principal));
                None
            }
            Err(error) => Some(mcp_refusal(&gate, &resource, &error)),
        },
        Area::Api | Area::Metrics if gate.is_admin_key(&request) => {
            admit(&request, Caller::ApiKey);
            None
        }
        Area::Api | Area::Metrics if !admin_only && !gate.protect_reads => None,
        area => match gate
            .verify(&request)
            .await
            .and_then(|principal| gate.for_resource(principal, ""))
        {
            Ok(principal) => {
                let admin = gate.admin_roles.iter().any(|r| principal.has_role(r));
                let needs_admin = admin_only && matches!(area, Area::Api);
                admit(&request, Caller::Token(principal));
                (needs_admin && !admin).then(|| {
                    ApiError::new(
                        ProblemKind::Forbidden,
                        format!(
                            "changing the registry needs one of the roles {:?} (or an admin API key)",
                            gate.admin_roles
                        ),
                    )
                    .error_response()
                })
            }
            Err(error) => Some(api_refusal(&gate, &error)),
        },
    };
    // Refused for lack of valid credentials: the address's budget for such requests
    // pays for it, and once it is spent the answer is 429 (guessing stays slow).
    let refusal = refusal.map(|response| {
        if response.status() != StatusCode::UNAUTHORIZED {
            return response;
        }
        let Some(state) = request.app_data::<Data<ApiState>>() else {
            return response;
        };
        let limits = &state.ip_limits;
        let (Some(limiter), Some(address)) =
            (limits.unauthenticated.as_ref(), limits.client_of(&request))
        else {
            return response;
        };
        match limiter.charge_refusal(address) {
            Some(wait) => {
                state.metrics.rate_limited.with_label_values(&["ip"]).inc();
                super::ip_limit::too_many(limiter.quota(), wait, "unauthenticated requests")
            }
            None => response,
        }
    });
    match refusal {
        Some(response) => Ok(request.into_response(response).map_into_right_body()),
        None => next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body),
    }
}

/// Puts the caller on the request (for handlers) and its subject on the request span.
fn admit(request: &ServiceRequest, caller: Caller) {
    let subject = match &caller {
        Caller::Token(principal) => principal.subject.clone(),
        Caller::ApiKey => "admin-api-key".to_owned(),
    };
    tracing::Span::current().record("principal", subject.as_str());
    request.extensions_mut().insert(caller);
}

/// OAuth 2.0 Protected Resource Metadata (RFC 9728).
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceMetadata {
    /// The protected resource's URL.
    pub resource: String,
    /// Where to get tokens for it.
    pub authorization_servers: Vec<String>,
    /// Scopes it understands.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// How to send a token: the `Authorization` header only.
    pub bearer_methods_supported: Vec<String>,
    /// A name for people.
    pub resource_name: String,
}

fn metadata(state: &ApiState, path: &str) -> HttpResponse {
    let Some(gate) = &state.auth else {
        return ApiError::new(
            ProblemKind::NotFound,
            "authentication is not configured on this gateway",
        )
        .error_response();
    };
    HttpResponse::Ok().json(ResourceMetadata {
        resource: format!("{}{path}", gate.public_url),
        authorization_servers: gate.authorization_servers.clone(),
        scopes_supported: gate.scopes_supported.clone(),
        bearer_methods_supported: vec!["header".into()],
        resource_name: "MCP Registry Gateway".into(),
    })
}

/// Protected resource metadata of the gateway as a whole (RFC 9728).
#[utoipa::path(tag = "auth", responses((status = 200, body = ResourceMetadata), (status = 404, description = "Authentication is off")))]
#[get("/.well-known/oauth-protected-resource")]
pub async fn resource_metadata(state: Data<ApiState>) -> HttpResponse {
    metadata(&state, "")
}

/// Protected resource metadata of `/mcp` or `/mcp/servers/{name}` (the path-suffixed
/// form an MCP client is pointed to by `WWW-Authenticate`).
#[utoipa::path(tag = "auth", params(("resource" = String, Path, description = "mcp or mcp/servers/{name}")), responses((status = 200, body = ResourceMetadata), (status = 404, description = "Not a protected resource")))]
#[get("/.well-known/oauth-protected-resource/{resource:.*}")]
pub async fn resource_metadata_for(state: Data<ApiState>, resource: Path<String>) -> HttpResponse {
    let path = format!("/{}", resource.trim_end_matches('/'));
    match area(&path) {
        Area::Mcp(resource) if resource == path => metadata(&state, &path),
        _ => ApiError::new(
            ProblemKind::NotFound,
            format!("`{path}` is not a protected resource"),
        )
        .error_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_values_are_quoted_and_escaped() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted("line\nbreak"), r#""linebreak""#);
    }

    #[test]
    fn paths_map_to_their_resource() {
        assert!(matches!(area("/mcp"), Area::Mcp(r) if r == "/mcp"));
        assert!(matches!(area("/mcp/servers/github"), Area::Mcp(r) if r == "/mcp/servers/github"));
        assert!(matches!(area("/mcp/servers/NOT_A_NAME"), Area::Mcp(r) if r == "/mcp"));
        assert!(matches!(area("/api/v1/servers"), Area::Api));
        assert!(matches!(area("/metrics"), Area::Metrics));
        assert!(matches!(area("/mcpx"), Area::Api));
        assert!(matches!(area("/health"), Area::Public));
        assert!(matches!(area("/docs/index.html"), Area::Public));
        assert!(matches!(area("/anything-else"), Area::Api));
        assert!(matches!(area("/oauth/token"), Area::Public));
        assert!(matches!(
            area("/.well-known/oauth-authorization-server"),
            Area::Public
        ));
        assert!(matches!(area("/oauthx"), Area::Api));
    }

    struct NoTokens;

    #[async_trait::async_trait]
    impl TokenVerifier for NoTokens {
        async fn verify(&self, _: &str) -> Result<Principal, AuthError> {
            Err(AuthError::Missing)
        }
    }

    fn gate() -> AuthGate {
        AuthGate {
            verifier: Arc::new(NoTokens),
            public_url: "https://gw.example".into(),
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            admin_roles: vec!["admin".into()],
            admin_key_digests: Vec::new(),
            protect_reads: true,
            facade_admin_scope: Some("mcp.admin".into()),
        }
    }

    fn facade_principal(resource: &str, scopes: &[&str]) -> Principal {
        Principal {
            subject: "alice".into(),
            issuer: "https://gw.example".into(),
            tenant: None,
            roles: vec!["admin".into(), "reader".into()],
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            client_id: Some("client".into()),
            resource: Some(resource.into()),
        }
    }

    #[test]
    fn a_facade_token_opens_its_resource_only_and_admin_needs_the_admin_scope() {
        let gate = gate();
        let all = facade_principal("https://gw.example/mcp", &["mcp.call"]);
        let opened = gate
            .for_resource(all.clone(), "/mcp/servers/a")
            .expect("any endpoint");
        assert_eq!(opened.roles, ["reader"], "admin roles need the admin scope");
        assert!(gate.for_resource(all.clone(), "").is_err(), "never the API");
        let admin = facade_principal("https://gw.example/mcp", &["mcp.call", "mcp.admin"]);
        assert_eq!(
            gate.for_resource(admin, "/mcp").expect("ok").roles,
            ["admin", "reader"]
        );
        let one = facade_principal("https://gw.example/mcp/servers/a", &[]);
        assert!(gate.for_resource(one.clone(), "/mcp/servers/a").is_ok());
        assert!(gate.for_resource(one.clone(), "/mcp/servers/b").is_err());
        assert!(gate.for_resource(one, "/mcp").is_err());
        let provider = Principal {
            resource: None,
            ..all
        };
        assert_eq!(
            gate.for_resource(provider, "")
                .expect("the provider's tokens")
                .roles,
            ["admin", "reader"]
        );
    }

    #[test]
    fn digests_parse_from_hex() {
        let hex = "a".repeat(64);
        assert_eq!(parse_digests(&[hex]), vec![[0xaa; 32]]);
        assert!(parse_digests(&["zz".repeat(32)]).is_empty());
    }
}
