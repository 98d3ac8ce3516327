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
