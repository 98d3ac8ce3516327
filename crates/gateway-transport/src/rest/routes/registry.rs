//! The gateway as a private MCP subregistry: `POST /api/v1/servers/import` of
//! official `server.json` documents (optionally registering the runnable upstream),
//! their export, and the official registry's read API under `/v0.1` (response shapes
//! of its OpenAPI document, server names and versions percent-encoded in paths).

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::web::{Data, Path, Query};
use actix_web::{HttpRequest, HttpResponse, get, patch, post};
use chrono::{DateTime, Utc};
use gateway_domain::{Cursor, PublishStatus, PublishedQuery, PublishedServer, VersionFilter};
use gateway_registry::{Registry, RegistryError, UpstreamChoice};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::rest::app::ApiState;
use crate::rest::body::JsonBody;
use crate::rest::problem::{ApiError, Problem, ProblemKind};

/// The official registry's metadata key on each listed server.
pub const OFFICIAL_META: &str = "io.modelcontextprotocol.registry/official";

/// This gateway's own metadata key: where a published server is reachable through
/// the gateway, and its health (what `server.json` cannot say).
pub const GATEWAY_META: &str = "local.mcp-gateway/runtime";

/// Documents per import request at most.
const MAX_IMPORT: usize = 1000;

/// `/v0.1/servers` page size: default and bounds of the official registry.
const DEFAULT_LIMIT: u64 = 30;
const MAX_LIMIT: u64 = 100;

/// How to run an imported server as an upstream of this gateway.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// The upstream's name (default: from the published name, `weather` for
    /// `io.github.acme/weather`).
    #[serde(default)]
    pub name: Option<String>,
    /// Which `remotes[]` entry (streamable-http) to use; the first by default.
    #[serde(default)]
    pub remote: Option<usize>,
    /// Or which `packages[]` entry to run (stdio; needs `upstreams.allow_stdio`; npm
    /// with npx, pypi with uvx).
    #[serde(default)]
    pub package: Option<usize>,
    /// Values of the remote URL's `{variables}`.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Header values (secret: stored sealed, never returned).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Environment variables of a package (secret).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Owning tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Route to it at once (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// What happened to one imported document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedView {
    /// Its published name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `created`, or `unchanged` when the same document was published already.
    pub outcome: &'static str,
    /// The upstream registered from it, if asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<crate::rest::dto::ServerView>,
}

/// The answer to an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResult {
    /// One entry per document, in request order.
    pub imported: Vec<ImportedView>,
}

/// One item of an import: a `server.json` document, or `{server, register}`.
fn split_item(
    item: Value,
    index: Option<usize>,
) -> Result<(Value, Option<RegisterBody>), ApiError> {
    let at = |field: &str| match index {
        Some(i) => format!("{i}.{field}"),
        None => field.to_owned(),
    };
    match item {
        Value::Object(mut map) if map.get("server").is_some_and(Value::is_object) => {
            let server = map.remove("server").unwrap_or_default();
            let register = match map.remove("register") {
                None | Some(Value::Null) => None,
                Some(value) => Some(serde_path_to_error::deserialize(value).map_err(|e| {
                    let field = at(&format!("register.{}", e.path()));
                    ApiError::new(ProblemKind::Validation, format!("{field}: {}", e.inner()))
                        .with_field(field, e.inner().to_string())
                })?),
            };
            if let Some(key) = map.keys().next() {
                return Err(ApiError::new(
                    ProblemKind::Validation,
                    format!(
                        "{}: unknown field; an item is a server.json or {{server, register}}",
                        at(key)
                    ),
                )
                .with_field(at(key), "unknown field"));
            }
            Ok((server, register))
        }
        other => Ok((other, None)),
    }
}

/// Import `server.json` documents (one, or a list of up to 1000) into the private
/// registry served at `/v0.1`. A document is checked against the official schema's
/// rules (every bad field named); versions are immutable (the same document again is
/// `unchanged`; other content under a published version is 409). An item
/// `{server, register}` also registers the runnable upstream: a streamable-http
/// remote (URL variables and secret headers given here), or an npm/PyPI package run
/// by npx/uvx when stdio upstreams are allowed.
#[utoipa::path(
    tag = "registry",
    request_body(content = Object, description = "A server.json, {server, register}, or a list of them", content_type = "application/json"),
    responses(
        (status = 200, body = ImportResult),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A version is published with other content", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/servers/import")]
pub async fn import_servers(
    state: Data<ApiState>,
    body: JsonBody<Value>,
) -> Result<HttpResponse, ApiError> {
    let (items, indexed) = match body.0 {
        Value::Array(items) => (items, true),
        other => (vec![other], false),
    };
    if items.is_empty() || items.len() > MAX_IMPORT {
        return Err(ApiError::new(
            ProblemKind::Validation,
            format!("import 1 to {MAX_IMPORT} documents, got {}", items.len()),
        ));
    }
    // Every document, and every registration asked for, is checked before anything
    // is stored.
    let mut parsed = Vec::with_capacity(items.len());
    let mut upstream_names = std::collections::HashSet::new();
    let mut errors = gateway_domain::ValidationErrors::new();
    for (index, item) in items.into_iter().enumerate() {
        let index = indexed.then_some(index);
        let prefix = index.map(|i| i.to_string()).unwrap_or_default();
        let (document, register) = split_item(item, index)?;
        let server = match Registry::check_server_json(&document) {
            Ok(server) => server,
            Err(problems) => {
                errors.absorb(&prefix, problems);
                continue;
            }
        };
        let upstream = match register {
            Some(register) => match Registry::upstream_from(&server, &choice(register)) {
                Ok(input) => {
                    // As `register` will judge it (name taken included), now.
                    match state.registry.check_registration(&input).await {
                        Ok(()) => {}
                        Err(RegistryError::Invalid(problems)) => {
                            let at = if prefix.is_empty() {
                                "register".to_owned()
                            } else {
                                format!("{prefix}.register")
                            };
                            errors.absorb(&at, problems);
                            continue;
                        }
                        Err(other) => return Err(other.into()),
                    }
                    if !upstream_names.insert(input.name.clone()) {
                        return Err(RegistryError::NameTaken(input.name).into());
                    }
                    Some(input)
                }
                Err(RegistryError::Invalid(problems)) => {
                    errors.absorb(&prefix, problems);
                    continue;
                }
                Err(other) => return Err(other.into()),
            },
            None => None,
        };
        parsed.push((document, upstream));
    }
    if !errors.is_empty() {
        return Err(RegistryError::Invalid(errors).into());
    }
    let mut imported = Vec::with_capacity(parsed.len());
    for (document, registration) in parsed {
        let outcome = state.registry.import_server_json(&document).await?;
        let upstream = match registration {
            Some(input) => {
                let upstream = state.registry.register(input).await?;
                let entry = &outcome.entry;
                state
                    .registry
                    .link_published(entry.name.as_str(), &entry.version, upstream.id)
                    .await?;
                Some(crate::rest::dto::ServerView::from(&upstream))
            }
            None => None,
        };
        imported.push(ImportedView {
            name: outcome.entry.name.to_string(),
            version: outcome.entry.version.clone(),
            outcome: if outcome.created {
                "created"
            } else {
                "unchanged"
            },
            upstream,
        });
    }
    Ok(HttpResponse::Ok().json(ImportResult { imported }))
}

fn choice(register: RegisterBody) -> UpstreamChoice {
    UpstreamChoice {
        name: register.name,
        remote: register.remote,
        package: register.package,
        variables: register.variables,
        headers: register.headers,
        environment: register.environment,
        tenant: register.tenant,
        enabled: register.enabled,
    }
}

/// The `server.json` a registered upstream was imported from (its latest linked
/// version), as imported.
#[utoipa::path(
    tag = "registry",
    params(("server" = String, Path, description = "Server id or name")),
    responses(
        (status = 200, description = "The server.json document", body = Object),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/servers/{server}/server.json")]
pub async fn export_server(
    state: Data<ApiState>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let server = state.registry.get(&super::server_ref(&path)?).await?;
    match state.registry.published_for_upstream(server.id).await? {
        Some(entry) => Ok(HttpResponse::Ok().json(entry.document)),
        None => Err(ApiError::new(
            ProblemKind::NotFound,
            format!(
                "server `{}` was not imported from a server.json",
                server.spec.name
            ),
        )),
    }
}

/// Query of the bulk export.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Include deleted versions.
    #[serde(default)]
    pub include_deleted: bool,
}

/// Every published `server.json` version, as imported, in (name, version) order: a
/// list that `POST /api/v1/servers/import` takes as it is, to mirror or promote a
/// registry between environments.
#[utoipa::path(
    tag = "registry",
    params(ExportQuery),
    responses((status = 200, description = "The documents", body = Vec<Object>))
)]
#[get("/registry/export")]
pub async fn export_registry(
    state: Data<ApiState>,
    query: Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let entries = state
        .registry
        .all_published(PublishedQuery {
            search: None,
            updated_since: None,
            version: VersionFilter::All,
            include_deleted: query.include_deleted,
            upstream: None,
            after: None,
            // `all_published` reads page by page; the limit is its own.
            limit: 0,
        })
        .await?;
    let documents: Vec<Value> = entries.into_iter().map(|e| e.document).collect();
    Ok(HttpResponse::Ok().json(documents))
}

/// The official registry's metadata of a listed server, and the gateway's own.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerResponse {
    /// The `server.json` document.
    #[schema(value_type = Object)]
    pub server: Value,
    /// `io.modelcontextprotocol.registry/official` (status, times, isLatest) and
    /// `local.mcp-gateway/runtime` (the gateway endpoint and health, when the server
    /// runs as one of its upstreams).
    #[serde(rename = "_meta")]
    #[schema(value_type = Object)]
    pub meta: Map<String, Value>,
}

/// Paging metadata of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListMetadata {
    /// Pass it as `cursor` for the next page; absent on the last one.
    #[serde(rename = "nextCursor", skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Servers in this response.
    pub count: usize,
}

/// A list of servers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerList {
    /// The servers.
    pub servers: Vec<ServerResponse>,
    /// Paging.
    pub metadata: ListMetadata,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn response(state: &ApiState, entry: PublishedServer) -> ServerResponse {
    let mut official = Map::new();
    official.insert("status".into(), json!(entry.status.as_str()));
    if let Some(message) = &entry.status_message {
        official.insert("statusMessage".into(), json!(message));
    }
    official.insert(
        "statusChangedAt".into(),
        json!(rfc3339(entry.status_changed_at)),
    );
    official.insert("publishedAt".into(), json!(rfc3339(entry.published_at)));
    official.insert("updatedAt".into(), json!(rfc3339(entry.updated_at)));
    official.insert("isLatest".into(), json!(entry.is_latest));
    let mut meta = Map::new();
    meta.insert(OFFICIAL_META.into(), Value::Object(official));
    let running = entry
        .upstream
        .zip(state.mcp.as_ref())
        .and_then(|(id, runtime)| {
            let current = runtime.current();
            let server = current.servers.get(&id)?;
            let state = runtime
                .monitor
                .get(id)
                .map_or(server.health.state, |u| u.view().state);
            Some(json!({
                "server": server.spec.name.as_str(),
                "mcpEndpoint": format!("/mcp/servers/{}", server.spec.name),
                "toolPrefix": format!("{}__", server.spec.name),
                "health": state.as_str(),
            }))
        });
    if let Some(running) = running {
        meta.insert(GATEWAY_META.into(), running);
    }
    ServerResponse {
        server: entry.document,
        meta,
    }
}

/// A path segment as the client meant it (`io.github.user%2Fweather`).
fn segment(raw: &str, what: &str) -> Result<String, ApiError> {
    percent_decode(raw).ok_or_else(|| {
        ApiError::new(ProblemKind::BadRequest, format!("invalid {what} encoding"))
            .with_field(what, "not valid percent-encoded UTF-8")
    })
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The raw (still percent-encoded) value of a path parameter: a server name holds a
/// `/` that clients send as `%2F`.
fn raw_param<'a>(req: &'a HttpRequest, name: &str) -> &'a str {
    req.match_info().get(name).unwrap_or_default()
}

/// Query of `GET /v0.1/servers` (unknown parameters are ignored, as the official
/// registry does: the API only grows).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `metadata.nextCursor` of the previous page, as received.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 30).
    pub limit: Option<u64>,
    /// Case-insensitive substring of the server name.
    pub search: Option<String>,
    /// Only servers updated after this RFC 3339 time (includes deleted ones).
    pub updated_since: Option<String>,
    /// `latest`, or one exact version.
    pub version: Option<String>,
    /// Include deleted servers (always, with `updated_since`).
    pub include_deleted: Option<bool>,
}

/// Query of the single-server reads.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncludeDeleted {
    /// Include deleted versions.
    pub include_deleted: Option<bool>,
}

fn bad(field: &str, reason: impl Into<String>) -> ApiError {
    let reason = reason.into();
    ApiError::new(ProblemKind::BadRequest, format!("{field}: {reason}")).with_field(field, reason)
}

/// The servers of this registry: every version (or `version=latest`), in (name,
/// version) order, a page at a time. Deleted servers are left out unless
/// `include_deleted=true` or `updated_since` is given (mirrors must see deletions).
#[utoipa::path(
    tag = "registry",
    params(ListQuery),
    responses(
        (status = 200, body = ServerList),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/servers")]
pub async fn list_published(
    state: Data<ApiState>,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad("limit", format!("must be 1 to {MAX_LIMIT}")));
    }
    let updated_since = query
        .updated_since
        .as_deref()
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    bad(
                        "updated_since",
                        "expected an RFC 3339 time such as 2025-08-07T13:15:04.280Z",
                    )
                })
        })
        .transpose()?;
    if updated_since.is_some() && query.include_deleted == Some(false) {
        return Err(bad(
            "include_deleted",
            "cannot be false with updated_since: an incremental sync must see deletions",
        ));
    }
    if query
        .search
        .as_ref()
        .is_some_and(|s| s.chars().count() > gateway_registry::MAX_QUERY_LEN)
    {
        return Err(bad(
            "search",
            format!("at most {} characters", gateway_registry::MAX_QUERY_LEN),
        ));
    }
    let after = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(text) => {
            let cursor = Cursor::decode(text, 2).map_err(|e| bad("cursor", e.to_string()))?;
            match cursor.key() {
                [name, version] => Some((name.clone(), version.clone())),
                _ => return Err(bad("cursor", "not a cursor of this list")),
            }
        }
        None => None,
    };
    let version = match query.version.as_deref() {
        None | Some("") => VersionFilter::All,
        Some(gateway_registry::LATEST) => VersionFilter::Latest,
        Some(exact) => VersionFilter::Exact(exact.to_owned()),
    };
    let page = state
        .registry
        .published_page(&PublishedQuery {
            search: query.search,
            updated_since,
            version,
            include_deleted: updated_since.is_some() || query.include_deleted.unwrap_or(false),
            upstream: None,
            after,
            limit: limit + 1,
        })
        .await?;
    let page = gateway_domain::Page::from_overfetch(page, limit, |last: &PublishedServer| {
        vec![last.name.to_string(), last.version.clone()]
    });
    let next_cursor = page.next.map(|cursor| cursor.encode());
    let servers: Vec<ServerResponse> = page
        .items
        .into_iter()
        .map(|e| response(&state, e))
        .collect();
    let count = servers.len();
    Ok(HttpResponse::Ok().json(ServerList {
        servers,
        metadata: ListMetadata { next_cursor, count },
    }))
}

/// Every version of one server, newest first. The name is percent-encoded
/// (`io.github.user%2Fweather`).
#[utoipa::path(
    tag = "registry",
    params(("serverName" = String, Path, description = "URL-encoded server name"), IncludeDeleted),
    responses(
        (status = 200, body = ServerList),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/servers/{serverName}/versions")]
pub async fn published_versions(
    state: Data<ApiState>,
    req: HttpRequest,
    query: Query<IncludeDeleted>,
) -> Result<HttpResponse, ApiError> {
    let name = segment(raw_param(&req, "serverName"), "serverName")?;
    let versions = state
        .registry
        .published_versions(&name, query.include_deleted.unwrap_or(false))
        .await?;
    let servers: Vec<ServerResponse> = versions.into_iter().map(|e| response(&state, e)).collect();
    let count = servers.len();
    Ok(HttpResponse::Ok().json(ServerList {
        servers,
        metadata: ListMetadata {
            next_cursor: None,
            count,
        },
    }))
}

/// One version of one server (`latest` for its latest). Name and version are
/// percent-encoded.
#[utoipa::path(
    tag = "registry",
    params(
        ("serverName" = String, Path, description = "URL-encoded server name"),
        ("version" = String, Path, description = "URL-encoded version, or latest"),
        IncludeDeleted,
    ),
    responses(
        (status = 200, body = ServerResponse),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/servers/{serverName}/versions/{version}")]
pub async fn published_version(
    state: Data<ApiState>,
    req: HttpRequest,
    query: Query<IncludeDeleted>,
) -> Result<HttpResponse, ApiError> {
    let name = segment(raw_param(&req, "serverName"), "serverName")?;
    let version = segment(raw_param(&req, "version"), "version")?;
    let entry = state
        .registry
        .published_version(&name, &version, query.include_deleted.unwrap_or(false))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .json(response(&state, entry)))
}

/// A status change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusUpdateRequest {
    /// `active`, `deprecated` or `deleted`.
    pub status: String,
    /// Why (deprecated or deleted only; at most 500 characters).
    #[serde(default, rename = "statusMessage")]
    pub status_message: Option<String>,
}

/// Change one version's status (admins): `deprecated` keeps it listed with a
/// warning, `deleted` hides it (mirrors still see it through `updated_since`).
#[utoipa::path(
    tag = "registry",
    params(
        ("serverName" = String, Path, description = "URL-encoded server name"),
        ("version" = String, Path, description = "URL-encoded version"),
    ),
    request_body = StatusUpdateRequest,
    responses(
        (status = 200, body = ServerResponse),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/servers/{serverName}/versions/{version}/status")]
pub async fn set_status(
    state: Data<ApiState>,
    req: HttpRequest,
    body: JsonBody<StatusUpdateRequest>,
) -> Result<HttpResponse, ApiError> {
    let name = segment(raw_param(&req, "serverName"), "serverName")?;
    let version = segment(raw_param(&req, "version"), "version")?;
    let JsonBody(body) = body;
    // The official API answers a bad status change with 400.
    let status: PublishStatus = body
        .status
        .parse()
        .map_err(|reason: String| bad("status", reason))?;
    let entry = state
        .registry
        .set_published_status(&name, &version, status, body.status_message)
        .await
        .map_err(|error| match error {
            RegistryError::Invalid(errors) => errors.errors().first().map_or_else(
                || bad("status", "invalid"),
                |e| bad(&e.field, e.message.clone()),
            ),
            other => other.into(),
        })?;
    Ok(HttpResponse::Ok().json(response(&state, entry)))
}
