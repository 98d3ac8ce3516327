//! Assembles the actix-web application: REST scope, probes, OpenAPI viewers, the
//! problem+json fallbacks (404/405) and the request-context middleware.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::error::{PathError, QueryPayloadError};
use actix_web::middleware::from_fn;
use actix_web::web::{self, Bytes, Data, PathConfig, QueryConfig};
use actix_web::{App, HttpRequest, HttpResponse, ResponseError};
use gateway_domain::ReadinessProbe;
use gateway_registry::Registry;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use super::middleware::request_context;
use super::openapi::{ApiDoc, RouteTable};
use super::problem::{ApiError, ProblemKind};
use super::routes::{access, health, limits, registry, servers, system, tools, views};

/// Name and version reported by `/` and the OpenAPI document.
#[derive(Debug, Clone, Copy)]
pub struct ServiceInfo {
    /// Product name.
    pub name: &'static str,
    /// Build version.
    pub version: &'static str,
}

/// HTTP limits that the configuration controls.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest accepted request body; bigger ones get 413.
    pub max_body_bytes: usize,
    /// Longest time a request body may take to arrive (slow bodies get 408).
    pub body_timeout: Duration,
    /// Cross-origin access; `None`: off.
    pub cors: Option<super::cors::CorsSettings>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            cors: None,
        }
    }
}

/// What the handlers share: the services and probes, built once by the app crate.
pub struct ApiState {
    /// Registry use cases.
    pub registry: Registry,
    /// Readiness of the store.
    pub readiness: Arc<dyn ReadinessProbe>,
    /// How long `/ready` waits for the store.
    pub readiness_timeout: Duration,
    /// Name and version.
    pub info: ServiceInfo,
    /// The MCP runtime, when the MCP endpoint is mounted (for `refresh`).
    pub mcp: Option<Arc<crate::mcp::McpRuntime>>,
    /// The process's metrics (`/metrics`, the summary, the HTTP middleware).
    pub metrics: Arc<gateway_telemetry::Metrics>,
    /// The authentication gate; `None` when authentication is off.
    pub auth: Option<Arc<super::auth::AuthGate>>,
    /// Per-client-address limits.
    pub ip_limits: super::ip_limit::IpLimits,
    /// Where audit events of admin changes go; `None`: no audit.
    pub audit: Option<Arc<dyn gateway_domain::AuditSink>>,
    /// Set at shutdown: `/ready` answers 503 so load balancers stop sending traffic
    /// here while the requests in flight finish.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// The link to the other replicas, for `/ready` (a replica that just started is
    /// ready once it hears them).
    pub cluster: Arc<dyn gateway_domain::ClusterBus>,
    /// The OAuth authorization-server façade (`/oauth/*`); `None` when it is off.
    pub oauth: Option<Arc<dyn gateway_domain::AuthorizationServer>>,
    /// The façade's issuer (the public URL its pages and metadata name).
    pub oauth_issuer: Option<String>,
}

fn query_error(error: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    let reason = match &error {
        QueryPayloadError::Deserialize(inner) => inner.to_string(),
        other => other.to_string(),
    };
    ApiError::new(ProblemKind::BadRequest, format!("query string: {reason}")).into()
}

fn path_error(error: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::new(ProblemKind::NotFound, format!("path: {error}")).into()
}

/// 405 with `Allow` when the path exists for other methods, 404 otherwise.
async fn fallback(req: HttpRequest, routes: Data<RouteTable>) -> HttpResponse {
    let error = match routes.allowed_methods(req.path()) {
        Some(allowed) if !allowed.contains(&req.method().as_str()) => {
            ApiError::method_not_allowed(req.method().as_str(), req.path(), allowed)
        }
        _ => ApiError::new(
            ProblemKind::NotFound,
            format!(
                "no route {} {}; see /openapi.json",
                req.method(),
                req.path()
            ),
        ),
    };
    error.error_response()
}

/// The API's documents, serialised once per process and shared by every worker: each
/// worker holding its own OpenAPI tree, plus the copies Swagger UI and ReDoc kept,
/// cost about 3.5 MB of memory per worker.
struct Docs {
    openapi: Bytes,
}

impl Docs {
    /// The documents of `api`: the first worker serialises them, the others reuse
    /// them (the document depends only on the code and the version).
    fn of(api: &utoipa::openapi::OpenApi) -> Self {
        static OPENAPI: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
        let openapi = OPENAPI
            .get_or_init(|| Bytes::from(serde_json::to_vec(api).unwrap_or_default()))
            .clone();
        Self { openapi }
    }
}

/// `GET /openapi.json`.
async fn openapi_json(docs: Data<Docs>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(docs.openapi.clone())
}

/// `GET /redoc`: ReDoc, reading `/openapi.json`.
async fn redoc() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(REDOC_PAGE)
}

/// ReDoc's standalone page, pointed at the document's URL (ReDoc loads its script
/// from its CDN, as utoipa-redoc's page does).
const REDOC_PAGE: &str = r#"<!DOCTYPE html>
<html>
  <head>
    <title>MCP Registry Gateway API</title>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <style>body { margin: 0; padding: 0; }</style>
  </head>
  <body>
    <div id="redoc-container"></div>
    <script src="https://cdn.redoc.ly/redoc/latest/bundles/redoc.standalone.js"></script>
    <script>Redoc.init("/openapi.json", {}, document.getElementById("redoc-container"));</script>
  </body>
</html>
"#;

/// The whole HTTP application. Call it inside `HttpServer::new` (once per worker).
pub fn build_app(
    state: Data<ApiState>,
    settings: HttpSettings,
    mcp: Option<crate::mcp::McpServices>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let cors = super::cors::middleware(settings.cors.as_ref());
    let mut doc = ApiDoc::openapi();
    doc.info.version = state.info.version.to_owned();
    let (app, api) = App::new()
        .into_utoipa_app()
        .openapi(doc)
        .app_data(state)
        .app_data(Data::new(settings))
        .app_data(QueryConfig::default().error_handler(query_error))
        .app_data(PathConfig::default().error_handler(path_error))
        .service(system::root)
        .service(system::health)
        .service(system::ready)
        .service(system::metrics)
        .service(super::auth::resource_metadata)
        .service(super::auth::resource_metadata_for)
        .service(super::oauth::authorization_server_metadata)
        .service(super::oauth::authorization_server_metadata_for)
        .service(super::oauth::jwks)
        .service(super::oauth::register)
        .service(super::oauth::authorize)
        .service(super::oauth::consent_answer)
        .service(super::oauth::callback)
        .service(super::oauth::token)
        .service(super::oauth::revoke)
        .service(
            utoipa_actix_web::scope("/api/v1")
                .service(registry::import_servers)
                .service(registry::export_registry)
                .service(registry::export_server)
                .service(servers::create_server)
                .service(servers::list_servers)
                .service(servers::get_server)
                .service(servers::update_server)
                .service(servers::delete_server)
                .service(servers::get_catalog)
                .service(servers::refresh_server)
                .service(health::server_health)
                .service(health::health_summary)
                .service(health::enable_server)
                .service(health::disable_server)
                .service(health::drain_server)
                .service(health::check_server)
                .service(health::metrics_summary)
                .service(access::list_policies)
                .service(access::create_policy)
                .service(access::delete_policy)
                .service(access::list_roles)
                .service(super::oauth::rotate_signing_key)
                .service(limits::list_rate_limits)
                .service(limits::create_rate_limit)
                .service(limits::delete_rate_limit)
                .service(super::audit::list_audit)
                .service(views::list_views)
                .service(views::get_view)
                .service(views::create_view)
                .service(views::replace_view)
                .service(views::delete_view)
                .service(tools::search_tools),
        )
        .service(
            utoipa_actix_web::scope("/v0.1")
                .service(registry::list_published)
                .service(registry::published_versions)
                .service(registry::published_version)
                .service(registry::set_status),
        )
        .split_for_parts();
    let mut api = api;
    super::openapi::document_common_errors(&mut api);
    let mut routes = RouteTable::from_openapi(&api);
    routes.add("/openapi.json", &["GET"]);
    routes.add("/mcp", &["GET", "POST", "DELETE"]);
    routes.add("/mcp/servers/{server}", &["GET", "POST", "DELETE"]);
    routes.add("/mcp/views/{view}", &["GET", "POST", "DELETE"]);
    let mut app = app.app_data(Data::new(routes));
    if let Some(mcp) = mcp {
        // The per-server scope first: the `/mcp` scope would also claim its paths.
        let gate = mcp.gate.clone();
        let guard = move |req, next| crate::mcp::guard::guard(req, next, gate.clone());
        app = app
            .service(
                mcp.per_server
                    .scope_with_path("/mcp/servers/{server}")
                    .wrap(from_fn(guard.clone())),
            )
            .service(
                mcp.per_view
                    .scope_with_path("/mcp/views/{view}")
                    .wrap(from_fn(guard.clone())),
            )
            .service(mcp.aggregate.scope_with_path("/mcp").wrap(from_fn(guard)));
    }
    let docs = Data::new(Docs::of(&api));
    drop(api);
    app.app_data(docs)
        .route("/openapi.json", web::get().to(openapi_json))
        .route("/redoc", web::get().to(redoc))
        .service(
            SwaggerUi::new("/docs/{_:.*}").config(utoipa_swagger_ui::Config::from("/openapi.json")),
        )
        .service(web::redirect("/docs", "/docs/"))
        .default_service(web::to(fallback))
        .wrap(from_fn(super::auth::auth_gate))
        .wrap(from_fn(super::ip_limit::api_ip_limit))
        .wrap(from_fn(super::audit::audit_admin))
        .wrap(cors)
        .wrap(from_fn(request_context))
}
