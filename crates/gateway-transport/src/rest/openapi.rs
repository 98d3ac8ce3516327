//! The OpenAPI document's fixed parts (info, tags, shared schemas) and the route table
//! derived from the generated document, used to answer 405 with an `Allow` header.

use utoipa::OpenApi;
use utoipa::openapi::PathItem;

use super::problem::{InvalidField, Problem};

/// Info, tags and shared components; paths are collected from the handlers by
/// utoipa-actix-web when the app is built.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "MCP Registry Gateway",
        description = "Registry of upstream MCP servers (register, update, discover) behind one MCP gateway. \
                       Errors are RFC 9457 problem+json; see docs/errors.md for every `type`."
    ),
    tags(
        (name = "servers", description = "Register and manage upstream MCP servers"),
        (name = "discovery", description = "Search what the registered servers offer"),
        (name = "health", description = "Upstream health, circuit breakers and admin operations (enable, disable, drain, check)"),
        (name = "metrics", description = "Per-server call statistics"),
        (name = "auth", description = "OAuth 2.0 protected resource metadata (RFC 9728)"),
        (name = "oauth", description = "The OAuth 2.1 authorization-server façade (auth.facade): metadata, registration, login, tokens"),
        (name = "access", description = "Access rules (RBAC): which role may list, call, read or get which items"),
        (name = "audit", description = "The audit trail of MCP operations and admin changes (admins only)"),
        (name = "rate-limits", description = "Rate-limit rules: a budget per tenant, principal, role, server or tool"),
        (name = "registry", description = "The private MCP subregistry: server.json import and export, and the official registry's /v0.1 API"),
        (name = "views", description = "Curated views: a chosen subset of tools, prompts and resources served at /mcp/views/{name}"),
        (name = "system", description = "Probes and service information"),
    ),
    components(schemas(Problem, InvalidField))
)]
pub struct ApiDoc;

/// Path templates of the API and the methods each accepts.
#[derive(Debug, Clone, Default)]
pub struct RouteTable(Vec<(Vec<String>, Vec<&'static str>)>);

impl RouteTable {
    /// Reads every path and method of the generated document.
    pub fn from_openapi(api: &utoipa::openapi::OpenApi) -> Self {
        let routes = api
            .paths
            .paths
            .iter()
            .map(|(path, item)| (segments(path), methods(item)))
            .collect();
        Self(routes)
    }

    /// Adds a route that is not part of the document (the document itself).
    pub fn add(&mut self, path: &str, methods: &[&'static str]) {
        self.0.push((segments(path), methods.to_vec()));
    }

    /// The methods a path accepts, if any route template matches it.
    pub fn allowed_methods(&self, path: &str) -> Option<&[&'static str]> {
        let wanted = segments(path);
        self.0
            .iter()
            .find(|(template, _)| {
                template.len() == wanted.len()
                    && template.iter().zip(&wanted).all(|(t, w)| {
                        t == w || (t.starts_with('{') && t.ends_with('}') && !w.is_empty())
                    })
            })
            .map(|(_, methods)| methods.as_slice())
    }
}

/// `/a/b/` → `["a", "b", ""]`: a trailing slash is a different path (404, not 405).
fn segments(path: &str) -> Vec<String> {
    path.split('/').skip(1).map(str::to_owned).collect()
}

fn methods(item: &PathItem) -> Vec<&'static str> {
    let mut methods = Vec::new();
    for (name, operation) in [
        ("GET", &item.get),
        ("POST", &item.post),
        ("PUT", &item.put),
        ("PATCH", &item.patch),
        ("DELETE", &item.delete),
    ] {
        if operation.is_some() {
            methods.push(name);
        }
    }
    methods
}

/// Documents on every API operation the problem+json answers any of them can give,
/// besides its own: a malformed request (400) where there are parameters or a body,
/// a body too large or not JSON (413, 415), missing or insufficient credentials (401,
/// 403), the per-address and per-principal budgets (429), the database down (503) and
/// the unexpected (500). Clients and contract tests then find every status documented.
pub fn document_common_errors(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let problem = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        )
    };
    for (path, item) in api.paths.paths.iter_mut() {
        if !(path.starts_with("/api/v1") || path.starts_with("/v0.1")) {
            continue;
        }
        let operations = [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ];
        for operation in operations.into_iter().flatten() {
            let has_body = operation.request_body.is_some();
            let has_parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let mut common = vec![
                ("401", "No valid credentials (with [auth])"),
                ("403", "Not allowed"),
                ("429", "Too many requests"),
                ("500", "Internal error"),
                ("503", "The database is unavailable"),
            ];
            if has_body || has_parameters {
                common.push(("400", "Malformed request"));
            }
            if has_body {
                common.push(("413", "Body too large"));
                common.push(("415", "Not JSON"));
            }
            for (status, description) in common {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| problem(description));
            }
        }
    }
}
