//! The gateway's own MCP tools and resources on `/mcp`, under the reserved prefix
//! `gateway__` (no server may be named `gateway`, and the snapshot never exposes an
//! upstream item under the prefix).
//!
//! - Discovery: `list_servers`, `get_server`, `search_tools`, `server_health`, and for
//!   compact mode `describe_tool` and `call_tool`. They are items of the server
//!   `gateway` for the access rules (default deny, like any upstream's), and their
//!   results only ever show what the caller may see (tenant and access rules).
//! - Administration, for admins only (an admin role or the admin API key; anyone when
//!   authentication is off, as on the REST API): `register_server`,
//!   `enable_server`, `disable_server`, `refresh_server`.
//!
//! To a caller who may not use a tool it does not exist: not listed, and a call gets
//! "unknown tool" (audited as denied).
//! - Resources: `gateway://servers`, `gateway://servers/{name}` and
//!   `gateway://servers/{name}/health`, with `resources/subscribe`.
//!
//! Every tool goes through the same rate limits and audit as an upstream tool (server
//! `gateway`, item `gateway__<tool>`), and calls the same registry use cases and
//! views as the REST API.

use std::collections::HashSet;

use gateway_domain::{Action, ServerId, ServerName, UpstreamServer};
use gateway_router::snapshot::ListKind;
use rmcp::RoleServer;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, Tool,
};
use rmcp::service::RequestContext;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::audit::AuditNote;
use super::runtime::{Current, McpItem};
use super::server::{GatewayServer, Viewer};
use crate::rest::ApiError;
use crate::rest::ProblemKind;

/// The registry as a resource.
pub const SERVERS_URI: &str = "gateway://servers";

/// One server as a resource.
pub fn server_uri(name: &ServerName) -> String {
    format!("{SERVERS_URI}/{name}")
}

/// One server's live health as a resource.
pub fn health_uri(name: &ServerName) -> String {
    format!("{SERVERS_URI}/{name}/health")
}

/// Longest description in a search hit (the full one is one `describe_tool` away).
const SHORT_DESCRIPTION: usize = 200;

/// Most validation errors reported for one `call_tool`.
const MAX_ARGUMENT_ERRORS: usize = 20;

/// One of the gateway's own tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayTool {
    /// The registry, filtered and paged like `GET /api/v1/servers`.
    ListServers,
    /// One server: description, transport kind, health, catalog counts.
    GetServer,
    /// Ranked search over the tools the caller may call.
    SearchTools,
    /// One server's live health.
    ServerHealth,
    /// One tool's full definition (compact mode).
    DescribeTool,
    /// Calls any tool the caller may call (compact mode).
    CallTool,
    /// Registers an upstream (admin).
    RegisterServer,
    /// Enables a server (admin).
    EnableServer,
    /// Disables a server (admin).
    DisableServer,
    /// Re-discovers a server's catalog now (admin).
    RefreshServer,
}

impl GatewayTool {
    /// Every tool.
    pub const ALL: [Self; 10] = [
        Self::ListServers,
        Self::GetServer,
        Self::SearchTools,
        Self::ServerHealth,
        Self::DescribeTool,
        Self::CallTool,
        Self::RegisterServer,
        Self::EnableServer,
        Self::DisableServer,
        Self::RefreshServer,
    ];

    /// The name after the prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::ListServers => "list_servers",
            Self::GetServer => "get_server",
            Self::SearchTools => "search_tools",
            Self::ServerHealth => "server_health",
            Self::DescribeTool => "describe_tool",
            Self::CallTool => "call_tool",
            Self::RegisterServer => "register_server",
            Self::EnableServer => "enable_server",
            Self::DisableServer => "disable_server",
            Self::RefreshServer => "refresh_server",
        }
    }

    /// Only for administrators.
    pub fn admin_only(self) -> bool {
        matches!(
            self,
            Self::RegisterServer | Self::EnableServer | Self::DisableServer | Self::RefreshServer
        )
    }

    /// Whether `tools/list` shows it: compact mode lists the three tools that reach
    /// the whole catalog, full mode everything else.
    pub fn listed(self, compact: bool) -> bool {
        let compact_tool = matches!(
            self,
            Self::SearchTools | Self::DescribeTool | Self::CallTool
        );
        if compact {
            compact_tool
        } else {
            !matches!(self, Self::DescribeTool | Self::CallTool)
        }
    }

    fn definition(self) -> Value {
        let server_arg = json!({
            "type": "object",
            "properties": {"server": {"type": "string", "description": "The server's name or id"}},
            "required": ["server"],
            "additionalProperties": false
        });
        let server_out = json!({"type": "object", "properties": {"server": {"type": "object"}}, "required": ["server"]});
        let (title, description, input, output, read_only) = match self {
            Self::ListServers => (
                "List servers",
                "List the MCP servers behind this gateway that you can use, with their health and how many tools each offers. Filter by text, tag, health or enabled; page with `cursor`.",
                json!({
                    "type": "object",
                    "properties": {
                        "q": {"type": "string", "description": "Text in the name, title or description"},
                        "tag": {"type": "string"},
                        "enabled": {"type": "boolean"},
                        "health": {"type": "string", "enum": ["unknown", "healthy", "degraded", "unhealthy"]},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 500},
                        "cursor": {"type": "string", "description": "nextCursor of the previous page"}
                    },
                    "additionalProperties": false
                }),
                json!({"type": "object", "properties": {"servers": {"type": "array", "items": {"type": "object"}}, "nextCursor": {"type": ["string", "null"]}}, "required": ["servers"]}),
                true,
            ),
            Self::GetServer => (
                "Get a server",
                "Describe one MCP server: what it is for, how the gateway reaches it (the kind of transport, never secrets), its health and how many tools, prompts and resources it offers.",
                server_arg.clone(),
                server_out.clone(),
                true,
            ),
            Self::SearchTools => (
                "Search tools",
                "Find tools by what they do: ranked search over the names, titles and descriptions of every tool you may call. An exact name ranks first. Returns each tool's callable name, its server and a short description.",
                json!({
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Words describing the tool, or its name"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10},
                        "server": {"type": "string", "description": "Only tools of this server"}
                    },
                    "required": ["query"],
                    "additionalProperties": false
                }),
                json!({"type": "object", "properties": {"tools": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "server": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"}, "score": {"type": "integer"}}, "required": ["name", "server", "score"]}}}, "required": ["tools"]}),
                true,
            ),
            Self::ServerHealth => (
                "Server health",
                "One MCP server's live health: its state, whether it takes calls, each endpoint's state, circuit and recent checks.",
                server_arg.clone(),
                json!({"type": "object", "properties": {"health": {"type": "object"}}, "required": ["health"]}),
                true,
            ),
            Self::DescribeTool => (
                "Describe a tool",
                "The full definition of one tool (input and output schema), by the name search_tools returned.",
                json!({
                    "type": "object",
                    "properties": {"name": {"type": "string", "minLength": 1}},
                    "required": ["name"],
                    "additionalProperties": false
                }),
                json!({"type": "object", "properties": {"tool": {"type": "object"}}, "required": ["tool"]}),
                true,
            ),
            Self::CallTool => (
                "Call a tool",
                "Call any tool you may use, by the name search_tools returned, with its arguments. The arguments are checked against the tool's input schema first; the result is the tool's own.",
                json!({
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "arguments": {"type": "object"}
                    },
                    "required": ["name"],
                    "additionalProperties": false
                }),
                Value::Null,
                false,
            ),
            Self::RegisterServer => (
                "Register a server",
                "Register an upstream MCP server (administrators only). The arguments are the body of POST /api/v1/servers.",
                json!({
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
                        "title": {"type": "string"},
                        "description": {"type": "string"},
                        "transport": {"type": "object", "description": "{\"type\": \"streamable-http\", \"url\": …} or {\"type\": \"stdio\", \"command\": …}"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "tenant": {"type": "string"},
                        "enabled": {"type": "boolean"},
                        "request_timeout_ms": {"type": "integer"}
                    },
                    "required": ["name", "transport"],
                    "additionalProperties": false
                }),
                server_out.clone(),
                false,
            ),
            Self::EnableServer => (
                "Enable a server",
                "Enable a server: it is connected, discovered and listed again (administrators only).",
                server_arg.clone(),
                server_out.clone(),
                false,
            ),
            Self::DisableServer => (
                "Disable a server",
                "Disable a server: its tools leave the lists at once (administrators only).",
                server_arg.clone(),
                server_out.clone(),
                false,
            ),
            Self::RefreshServer => (
                "Refresh a server",
                "Re-discover a server's tools, prompts and resources now (administrators only).",
                server_arg,
                json!({"type": "object", "properties": {"catalog": {"type": "object"}}, "required": ["catalog"]}),
                false,
            ),
        };
        let mut tool = json!({
            "title": title,
            "description": description,
            "inputSchema": input,
            "annotations": {"readOnlyHint": read_only, "openWorldHint": false},
        });
        if !output.is_null() {
            tool["outputSchema"] = output;
        }
        tool
    }

    /// The compiled validator of its input schema (built once per process).
    fn validator(self) -> Option<&'static jsonschema::Validator> {
        static VALIDATORS: std::sync::OnceLock<Vec<Option<jsonschema::Validator>>> =
            std::sync::OnceLock::new();
        let all = VALIDATORS.get_or_init(|| {
            GatewayTool::ALL
                .iter()
                .map(|tool| tool.tool(tool.name()).as_ref().and_then(compile_schema))
                .collect()
        });
        let index = GatewayTool::ALL.iter().position(|t| *t == self)?;
        all.get(index)?.as_ref()
    }

    /// The tool as listed, under its exposed name.
    pub fn tool(self, exposed: &str) -> Option<Tool> {
        let mut definition = self.definition();
        definition["name"] = Value::String(exposed.to_owned());
        serde_json::from_value(definition)
            .map_err(|error| tracing::error!(tool = self.name(), %error, "gateway tool definition is invalid"))
            .ok()
    }
}

/// The gateway's resources, as listed.
pub fn resources() -> Vec<Resource> {
    serde_json::from_value(json!([{
        "uri": SERVERS_URI,
        "name": "servers",
        "title": "Registered MCP servers",
        "description": "The servers behind this gateway that you can use, with health and catalog counts (JSON).",
        "mimeType": "application/json"
    }]))
    .unwrap_or_default()
}

/// The gateway's resource templates, as listed.
pub fn templates() -> Vec<ResourceTemplate> {
    serde_json::from_value(json!([
        {
            "uriTemplate": format!("{SERVERS_URI}/{{name}}"),
            "name": "server",
            "title": "One MCP server",
            "description": "One server: description, transport kind, health, catalog counts (JSON).",
            "mimeType": "application/json"
        },
        {
            "uriTemplate": format!("{SERVERS_URI}/{{name}}/health"),
            "name": "server-health",
            "title": "One MCP server's live health",
            "description": "State, availability, each endpoint's state and circuit (JSON).",
            "mimeType": "application/json"
        }
    ]))
    .unwrap_or_default()
}

/// What a gateway resource URI names.
enum GatewayResource {
    Servers,
    Server(String),
    Health(String),
}

fn parse_resource(uri: &str) -> Option<GatewayResource> {
    let rest = uri.strip_prefix(SERVERS_URI)?;
    if rest.is_empty() {
        return Some(GatewayResource::Servers);
    }
    let rest = rest.strip_prefix('/')?;
    match rest.split_once('/') {
        None if !rest.is_empty() => Some(GatewayResource::Server(rest.to_owned())),
        Some((name, "health")) if !name.is_empty() => {
            Some(GatewayResource::Health(name.to_owned()))
        }
        _ => None,
    }
}

/// Whether `name` is the gateway's registration tool (whatever the separator), whose
/// arguments carry upstream credentials.
pub fn is_registration(name: &str) -> bool {
    name.strip_prefix(gateway_domain::RESERVED_SERVER_NAME)
        .is_some_and(|rest| rest.ends_with(GatewayTool::RegisterServer.name()))
}

/// Whether a URI belongs to the gateway's own resources.
pub fn is_gateway_uri(uri: &str) -> bool {
    uri.starts_with("gateway://")
}

/// Arguments of a tool, or `invalid_params` naming the field that is wrong.
fn arguments<T: DeserializeOwned>(
    request: &CallToolRequestParams,
    tool: &str,
) -> Result<T, ErrorData> {
    let value = Value::Object(request.arguments.clone().unwrap_or_default());
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        ErrorData::invalid_params(
            format!(
                "{tool}: arguments: {}{}",
                if path == "." {
                    String::new()
                } else {
                    format!("{path}: ")
                },
                error.inner()
            ),
            Some(json!({"tool": tool, "field": path})),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerArgs {
    server: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    q: Option<String>,
    tag: Option<String>,
    enabled: Option<bool>,
    health: Option<String>,
    limit: Option<u64>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    query: String,
    limit: Option<usize>,
    server: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameArgs {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallArgs {
    name: String,
    arguments: Option<serde_json::Map<String, Value>>,
}

/// A failed operation as the tool's result: the REST API's problem+json, so both
/// faces say the same thing.
fn failed(error: ApiError) -> CallToolResult {
    CallToolResult::structured_error(json!({"error": error.problem()}))
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(ProblemKind::NotFound, format!("no server `{what}`"))
}

fn short(text: &str) -> String {
    match text.char_indices().nth(SHORT_DESCRIPTION) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

impl GatewayServer {
    /// The gateway tool an exposed name calls, if any (only on `/mcp`).
    pub(super) fn gateway_tool(&self, name: &str) -> Option<GatewayTool> {
        if !self.runtime.settings.gateway_tools {
            return None;
        }
        // On the path of every `tools/call`: no allocation.
        let rest = name
            .strip_prefix(gateway_domain::RESERVED_SERVER_NAME)?
            .strip_prefix(self.runtime.settings.naming.separator())?;
        GatewayTool::ALL
            .into_iter()
            .find(|tool| tool.name() == rest)
    }

    /// The gateway tools `viewer` sees in `tools/list`.
    pub(super) fn gateway_tools(&self, viewer: &Viewer, compact: bool) -> Vec<McpItem> {
        if !self.runtime.settings.gateway_tools {
            return Vec::new();
        }
        GatewayTool::ALL
            .into_iter()
            .filter(|tool| {
                tool.listed(compact)
                    && (viewer.unrestricted
                        || (!tool.admin_only() && viewer.may_gateway(Action::List, tool.name())))
            })
            .filter_map(|tool| tool.tool(&self.runtime.settings.naming.gateway_item(tool.name())))
            .map(McpItem::Tool)
            .collect()
    }

    /// Runs one gateway tool for the caller.
    pub(super) async fn call_gateway(
        &self,
        tool: GatewayTool,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = std::time::Instant::now();
        let exposed = request.name.to_string();
        let note = AuditNote::of(&ctx.extensions).cloned();
        if let Some(note) = &note {
            note.resolved(gateway_domain::RESERVED_SERVER_NAME);
        }
        let viewer = self.viewer(&ctx.extensions);
        let allowed = if tool.admin_only() {
            viewer.unrestricted
        } else {
            viewer.may_gateway(Action::Call, tool.name())
        };
        if !allowed {
            if let Some(note) = &note {
                note.denied
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{exposed}`"),
                None,
            ));
        }
        if let Some(validator) = tool.validator() {
            check_arguments(validator, &exposed, request.arguments.as_ref())?;
        }
        if tool == GatewayTool::CallTool {
            // The budgets, the metrics and the audit's target are the called tool's.
            return self.call_any(&request, ctx).await;
        }
        let item = format!("{}__{}", gateway_domain::RESERVED_SERVER_NAME, tool.name());
        self.rate_limit(gateway_domain::RESERVED_SERVER_NAME, &item, &ctx.extensions)
            .await?;
        let result = self.run_gateway_tool(tool, &request, &viewer).await;
        let outcome = match &result {
            Ok(CallToolResponse::Complete(done)) if done.is_error == Some(true) => "error",
            Ok(_) => "ok",
            Err(_) => "error",
        };
        self.runtime.metrics.record_mcp(
            "tools/call",
            gateway_domain::RESERVED_SERVER_NAME,
            &exposed,
            outcome,
            started.elapsed().as_secs_f64(),
        );
        result
    }

    async fn run_gateway_tool(
        &self,
        tool: GatewayTool,
        request: &CallToolRequestParams,
        viewer: &Viewer,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        let registry = self.runtime.registry();
        let runtime = self.runtime.as_ref();
        let done = |value: Result<Value, ApiError>| {
            Ok(CallToolResponse::Complete(match value {
                Ok(value) => CallToolResult::structured(value),
                Err(error) => failed(error),
            }))
        };
        match tool {
            GatewayTool::ListServers => {
                let args: ListArgs = arguments(request, name)?;
                done(self.list_servers(args, viewer).await)
            }
            GatewayTool::GetServer => {
                let args: ServerArgs = arguments(request, name)?;
                done(
                    self.visible_server(&args.server, viewer)
                        .await
                        .map(|server| json!({"server": self.describe_server(&server)})),
                )
            }
            GatewayTool::ServerHealth => {
                let args: ServerArgs = arguments(request, name)?;
                done(
                    self.visible_server(&args.server, viewer)
                        .await
                        .map(|server| json!({"health": self.health_for(&server, viewer)})),
                )
            }
            GatewayTool::SearchTools => {
                let args: SearchArgs = arguments(request, name)?;
                done(self.search(args, viewer))
            }
            GatewayTool::DescribeTool => {
                let args: NameArgs = arguments(request, name)?;
                let (tool, _) = self.callable_tool(&args.name, viewer)?;
                done(Ok(json!({"tool": tool})))
            }
            GatewayTool::CallTool => Err(ErrorData::internal_error(
                "call_tool is dispatched apart",
                None,
            )),
            GatewayTool::RegisterServer => {
                let body: crate::rest::dto::CreateServerBody = arguments(request, name)?;
                done(
                    registry
                        .register(body.into())
                        .await
                        .map(
                            |server| json!({"server": crate::rest::dto::ServerView::from(&server)}),
                        )
                        .map_err(ApiError::from),
                )
            }
            GatewayTool::EnableServer | GatewayTool::DisableServer => {
                let args: ServerArgs = arguments(request, name)?;
                let outcome = match crate::rest::routes::server_ref(&args.server) {
                    Ok(reference) => crate::rest::routes::health::switch(
                        registry,
                        Some(runtime),
                        &reference,
                        tool == GatewayTool::EnableServer,
                    )
                    .await
                    .map(|server| json!({"server": crate::rest::dto::ServerView::from(&server)}))
                    .map_err(ApiError::from),
                    Err(error) => Err(error),
                };
                done(outcome)
            }
            GatewayTool::RefreshServer => {
                let args: ServerArgs = arguments(request, name)?;
                done(self.refresh(&args.server).await)
            }
        }
    }

    async fn refresh(&self, raw: &str) -> Result<Value, ApiError> {
        let registry = self.runtime.registry();
        let found = registry.get(&crate::rest::routes::server_ref(raw)?).await?;
        self.runtime.refresh(found.id).await;
        let (server, catalog) = registry
            .catalog(&gateway_registry::ServerRef::Id(found.id))
            .await?;
        Ok(json!({"catalog": crate::rest::dto::CatalogView::new(&server, catalog.as_ref())}))
    }

    /// The servers a restricted caller may see: of its tenant or shared, with at
    /// least one item it may list. `None`: it sees every server.
    fn visible_servers(&self, viewer: &Viewer, current: &Current) -> Option<HashSet<ServerId>> {
        if viewer.unrestricted {
            return None;
        }
        let mut visible = HashSet::new();
        for kind in ListKind::ALL {
            for (exposed, _) in current.snapshot.all(kind) {
                if visible.contains(&exposed.route.server_id) {
                    continue;
                }
                if let Some(server) = current.servers.get(&exposed.route.server_id)
                    && viewer.may(Action::List, server, &exposed.route.original)
                {
                    visible.insert(server.id);
                }
            }
        }
        Some(visible)
    }

    /// A server by name or id, if the caller may see it (404 otherwise, as for a
    /// server that does not exist).
    async fn visible_server(&self, raw: &str, viewer: &Viewer) -> Result<UpstreamServer, ApiError> {
        // Both "does not exist" and "may not see" say the same thing, in the same words.
        let reference = crate::rest::routes::server_ref(raw).map_err(|_| not_found(raw))?;
        let server = match self.runtime.registry().get(&reference).await {
            Err(gateway_registry::RegistryError::NotFound(_)) => return Err(not_found(raw)),
            other => other?,
        };
        let current = self.runtime.current();
        match self.visible_servers(viewer, &current) {
            Some(visible) if !visible.contains(&server.id) => Err(not_found(raw)),
            _ => Ok(server),
        }
    }

    /// A server's live health as the REST API shows it, for admins; for anyone else
    /// without endpoint addresses and error texts (they can hold URLs and credentials).
    fn health_for(&self, server: &UpstreamServer, viewer: &Viewer) -> Value {
        let view = crate::rest::routes::health::health_view(Some(self.runtime.as_ref()), server);
        let mut value = serde_json::to_value(&view).unwrap_or_default();
        if viewer.unrestricted {
            return value;
        }
        if let Some(recorded) = value.get_mut("recorded").and_then(Value::as_object_mut) {
            recorded.remove("error");
        }
        value["endpoints"] = view
            .endpoints
            .iter()
            .map(|e| json!({"state": e.state, "circuit": e.circuit, "in_flight": e.in_flight}))
            .collect();
        value
    }

    /// What an agent needs to know about a server; no URL, header or variable (they
    /// can hold credentials).
    fn describe_server(&self, server: &UpstreamServer) -> Value {
        let current = self.runtime.current();
        let name = &server.spec.name;
        let live = self
            .runtime
            .monitor
            .get(server.id)
            .filter(|_| server.spec.enabled);
        let state = live
            .as_ref()
            .map_or(server.health.state, |u| u.view().state);
        json!({
            "id": server.id.as_uuid(),
            "name": name.as_str(),
            "title": server.spec.title,
            "description": server.spec.description,
            "transport": server.spec.transport.kind().as_str(),
            "tags": server.spec.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            "tenant": server.spec.tenant.as_ref().map(|t| t.as_str()),
            "enabled": server.spec.enabled,
            "health": {
                "state": state.as_str(),
                "available": live.as_ref().is_some_and(|u| { let v = u.view(); v.available && !v.draining }),
                "checkedAt": server.health.checked_at,
            },
            "catalog": {
                "tools": current.snapshot.server_len(name, ListKind::Tools),
                "prompts": current.snapshot.server_len(name, ListKind::Prompts),
                "resources": current.snapshot.server_len(name, ListKind::Resources),
                "resourceTemplates": current.snapshot.server_len(name, ListKind::ResourceTemplates),
            },
            "mcpEndpoint": format!("/mcp/servers/{name}"),
        })
    }

    async fn list_servers(&self, args: ListArgs, viewer: &Viewer) -> Result<Value, ApiError> {
        let (filter, page) =
            crate::rest::routes::servers::server_listing(crate::rest::dto::ServerListQuery {
                tag: args.tag,
                enabled: args.enabled.map(|e| e.to_string()),
                health: args.health,
                q: args.q,
                limit: args.limit,
                cursor: args.cursor,
            })?;
        let registry = self.runtime.registry();
        let current = self.runtime.current();
        let Some(visible) = self.visible_servers(viewer, &current) else {
            let found = registry.list(&filter, &page).await?;
            let servers: Vec<Value> = found
                .items
                .iter()
                .map(|s| self.describe_server(s))
                .collect();
            return Ok(json!({"servers": servers, "nextCursor": found.next.map(|c| c.encode())}));
        };
        // A restricted caller's pages hold only servers it may see, and the cursor
        // names the last of them: nothing tells it about the others.
        let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
        let mut shown: Vec<gateway_domain::UpstreamServer> = Vec::new();
        let mut request = page;
        let mut more = false;
        loop {
            let found = registry.list(&filter, &request).await?;
            for server in found.items.into_iter().filter(|s| visible.contains(&s.id)) {
                if shown.len() == limit {
                    more = true;
                    break;
                }
                shown.push(server);
            }
            match found.next {
                Some(next) if !more => request.after = Some(next),
                _ => break,
            }
        }
        let cursor = more
            .then(|| shown.last())
            .flatten()
            .map(|last| gateway_domain::Cursor::after(vec![last.spec.name.to_string()]).encode());
        let servers: Vec<Value> = shown.iter().map(|s| self.describe_server(s)).collect();
        Ok(json!({"servers": servers, "nextCursor": cursor}))
    }

    fn search(&self, args: SearchArgs, viewer: &Viewer) -> Result<Value, ApiError> {
        let bad = |field: &str, reason: &str| {
            ApiError::new(ProblemKind::BadRequest, format!("{field}: {reason}"))
                .with_field(field, reason)
        };
        if args.query.chars().count() > gateway_registry::MAX_QUERY_LEN {
            return Err(bad("query", "must be at most 200 characters"));
        }
        let query = gateway_router::SearchQuery::parse(&args.query)
            .ok_or_else(|| bad("query", "must contain a word to search for"))?;
        let limit = args.limit.unwrap_or(10);
        if !(1..=50).contains(&limit) {
            return Err(bad("limit", "must be between 1 and 50"));
        }
        let current = self.runtime.current();
        let candidates: Vec<(&gateway_router::Exposed<McpItem>, &Tool)> = current
            .snapshot
            .all(ListKind::Tools)
            .filter(|(_, hidden)| !hidden)
            .filter(|(exposed, _)| {
                args.server
                    .as_deref()
                    .is_none_or(|s| exposed.route.server.as_str() == s)
            })
            .filter_map(|(exposed, _)| match &exposed.item {
                McpItem::Tool(tool) => Some((exposed, tool)),
                _ => None,
            })
            .filter(|(exposed, _)| {
                viewer.unrestricted
                    || current
                        .servers
                        .get(&exposed.route.server_id)
                        .is_some_and(|server| {
                            viewer.may(Action::Call, server, &exposed.route.original)
                        })
            })
            .collect();
        let hits = gateway_router::rank(
            &query,
            candidates
                .iter()
                .map(|(exposed, tool)| gateway_router::SearchDoc {
                    name: &exposed.key,
                    original: &exposed.route.original,
                    title: tool.title.as_deref(),
                    description: tool.description.as_deref(),
                }),
            limit,
        );
        let tools: Vec<Value> = hits
            .into_iter()
            .filter_map(|(index, score)| candidates.get(index).map(|c| (c, score)))
            .map(|((exposed, tool), score)| {
                let mut hit = json!({
                    "name": exposed.key,
                    "server": exposed.route.server.as_str(),
                    "score": score,
                });
                if let Some(title) = &tool.title {
                    hit["title"] = json!(title);
                }
                if let Some(description) = &tool.description {
                    hit["description"] = json!(short(description));
                }
                hit
            })
            .collect();
        Ok(json!({"tools": tools}))
    }

    /// A tool on `/mcp` the caller may call, with its route; "unknown tool" for any
    /// other (as for a tool that does not exist).
    fn callable_tool(
        &self,
        name: &str,
        viewer: &Viewer,
    ) -> Result<(Tool, gateway_router::Route), ErrorData> {
        let current = self.runtime.current();
        let unknown = || ErrorData::invalid_params(format!("unknown tool `{name}`"), None);
        let exposed = current
            .snapshot
            .route(ListKind::Tools, None, name)
            .ok_or_else(unknown)?;
        let allowed = viewer.unrestricted
            || current
                .servers
                .get(&exposed.route.server_id)
                .is_some_and(|server| viewer.may(Action::Call, server, &exposed.route.original));
        match &exposed.item {
            McpItem::Tool(tool) if allowed => Ok((tool.clone(), exposed.route.clone())),
            _ => Err(unknown()),
        }
    }

    /// `gateway__call_tool`: checks the arguments against the tool's input schema,
    /// then calls it exactly as `tools/call` would (access rules, its budgets, the
    /// upstream's result untouched).
    async fn call_any(
        &self,
        request: &CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args: CallArgs = arguments(request, request.name.as_ref())?;
        if self.gateway_tool(&args.name).is_some() {
            return Err(ErrorData::invalid_params(
                format!(
                    "`{}` is one of the gateway's own tools: call it directly",
                    args.name
                ),
                None,
            ));
        }
        if let Some(note) = AuditNote::of(&ctx.extensions) {
            note.retarget(&args.name);
        }
        // Access rules and the tool's budgets first: a refused caller learns nothing
        // from the schema, and invalid arguments are not free to send.
        let (route, server) = self
            .admit(
                ListKind::Tools,
                &args.name,
                &super::runtime::Scope::Aggregate,
                &ctx.extensions,
            )
            .await?;
        if let Some(validator) = self.runtime.current().validator(&args.name) {
            check_arguments(&validator, &args.name, args.arguments.as_ref())?;
        }
        let mut inner = CallToolRequestParams::new(args.name);
        inner.arguments = args.arguments;
        inner.meta = request.meta.clone();
        // An `input_required` round of the tool comes back on this request.
        inner.input_responses = request.input_responses.clone();
        inner.request_state = request.request_state.clone();
        self.send_tool(route, &server, inner, ctx).await
    }

    /// The gateway's resources and templates on the first page of a listing.
    pub(super) fn gateway_listing(&self, kind: ListKind, viewer: &Viewer) -> Vec<McpItem> {
        if !self.runtime.settings.gateway_tools {
            return Vec::new();
        }
        match kind {
            ListKind::Resources => resources()
                .into_iter()
                .filter(|r| viewer.may_gateway(Action::List, &r.uri))
                .map(McpItem::Resource)
                .collect(),
            ListKind::ResourceTemplates => templates()
                .into_iter()
                .filter(|t| viewer.may_gateway(Action::List, &t.uri_template))
                .map(McpItem::Template)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Reads one of the gateway's resources.
    pub(super) async fn read_gateway_resource(
        &self,
        uri: &str,
        extensions: &rmcp::model::Extensions,
    ) -> Result<ReadResourceResult, ErrorData> {
        let note = AuditNote::of(extensions);
        if let Some(note) = note {
            note.resolved(gateway_domain::RESERVED_SERVER_NAME);
        }
        let missing = || {
            ErrorData::resource_not_found(
                format!("unknown resource `{uri}`"),
                Some(json!({"uri": uri})),
            )
        };
        let Some(resource) = parse_resource(uri).filter(|_| self.runtime.settings.gateway_tools)
        else {
            return Err(missing());
        };
        let viewer = self.viewer(extensions);
        if !viewer.may_gateway(Action::Read, uri) {
            if let Some(note) = note {
                note.denied
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            return Err(missing());
        }
        let item = format!("{}__{uri}", gateway_domain::RESERVED_SERVER_NAME);
        self.rate_limit(gateway_domain::RESERVED_SERVER_NAME, &item, extensions)
            .await?;
        let value = match resource {
            GatewayResource::Servers => {
                let mut servers = self.runtime.registry().all_servers().await.map_err(|e| {
                    ErrorData::internal_error(format!("the registry cannot be read: {e}"), None)
                })?;
                servers.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
                let current = self.runtime.current();
                let visible = self.visible_servers(&viewer, &current);
                let listed: Vec<Value> = servers
                    .iter()
                    .filter(|s| visible.as_ref().is_none_or(|v| v.contains(&s.id)))
                    .map(|s| self.describe_server(s))
                    .collect();
                json!({"servers": listed})
            }
            GatewayResource::Server(name) => {
                let server = self
                    .visible_server(&name, &viewer)
                    .await
                    .map_err(|_| missing())?;
                json!({"server": self.describe_server(&server)})
            }
            GatewayResource::Health(name) => {
                let server = self
                    .visible_server(&name, &viewer)
                    .await
                    .map_err(|_| missing())?;
                json!({"health": self.health_for(&server, &viewer)})
            }
        };
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        let mut result = ReadResourceResult::new(vec![ResourceContents::TextResourceContents {
            uri: uri.to_owned(),
            mime_type: Some("application/json".into()),
            text,
            meta: None,
        }]);
        result.ttl_ms = Some(0);
        Ok(result)
    }

    /// Whether a gateway resource exists for the caller (for `resources/subscribe`).
    /// The URI under which updates of a gateway resource are announced (servers by
    /// name, even when the client named one by id), if the caller may read it.
    pub(super) async fn gateway_resource_watched(
        &self,
        uri: &str,
        extensions: &rmcp::model::Extensions,
    ) -> Option<String> {
        let viewer = self.viewer(extensions);
        if !self.runtime.settings.gateway_tools || !viewer.may_gateway(Action::Read, uri) {
            return None;
        }
        match parse_resource(uri)? {
            GatewayResource::Servers => Some(SERVERS_URI.to_owned()),
            GatewayResource::Server(name) => self
                .visible_server(&name, &viewer)
                .await
                .ok()
                .map(|server| server_uri(&server.spec.name)),
            GatewayResource::Health(name) => self
                .visible_server(&name, &viewer)
                .await
                .ok()
                .map(|server| health_uri(&server.spec.name)),
        }
    }
}

/// The validator of a tool's input schema; `None` when the schema cannot be
/// compiled: that is the upstream's problem, so the call goes through unchecked (the
/// upstream judges), with a warning.
pub(super) fn compile_schema(tool: &Tool) -> Option<jsonschema::Validator> {
    let schema = Value::Object(tool.input_schema.as_ref().clone());
    jsonschema::validator_for(&schema)
        .map_err(|error| {
            tracing::warn!(tool = %tool.name, %error, "tool input schema cannot be compiled; arguments not checked");
        })
        .ok()
}

/// Checks `arguments` against a tool's input schema, naming each violation.
fn check_arguments(
    validator: &jsonschema::Validator,
    tool: &str,
    arguments: Option<&serde_json::Map<String, Value>>,
) -> Result<(), ErrorData> {
    let instance = Value::Object(arguments.cloned().unwrap_or_default());
    let errors: Vec<Value> = validator
        .iter_errors(&instance)
        .take(MAX_ARGUMENT_ERRORS)
        .map(|error| json!({"path": error.instance_path().to_string(), "message": error.to_string()}))
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    let first = errors
        .first()
        .map(|e| {
            let path = e["path"].as_str().unwrap_or_default();
            let message = e["message"].as_str().unwrap_or_default();
            if path.is_empty() {
                message.to_owned()
            } else {
                format!("{path}: {message}")
            }
        })
        .unwrap_or_default();
    Err(ErrorData::invalid_params(
        format!("arguments of `{tool}` do not match its input schema: {first}"),
        Some(json!({"tool": tool, "errors": errors})),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gateway_tool_definition_is_a_valid_tool_with_an_object_schema() {
        for tool in GatewayTool::ALL {
            let built = tool
                .tool(&format!("gateway__{}", tool.name()))
                .expect("valid definition");
            assert_eq!(built.input_schema.get("type"), Some(&json!("object")));
            assert!(
                jsonschema::validator_for(&Value::Object(built.input_schema.as_ref().clone()))
                    .is_ok()
            );
        }
        let compact: Vec<&str> = GatewayTool::ALL
            .iter()
            .filter(|t| t.listed(true))
            .map(|t| t.name())
            .collect();
        assert_eq!(compact, ["search_tools", "describe_tool", "call_tool"]);
    }

    #[test]
    fn resource_uris_parse_and_nothing_else_does() {
        assert!(matches!(
            parse_resource("gateway://servers"),
            Some(GatewayResource::Servers)
        ));
        assert!(
            matches!(parse_resource("gateway://servers/a"), Some(GatewayResource::Server(n)) if n == "a")
        );
        assert!(
            matches!(parse_resource("gateway://servers/a/health"), Some(GatewayResource::Health(n)) if n == "a")
        );
        for bad in [
            "gateway://servers/",
            "gateway://servers/a/b",
            "gateway://serversx",
            "gateway://servers//health",
            "file:///x",
        ] {
            assert!(parse_resource(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn arguments_are_checked_against_the_schema_with_each_error_named() {
        let tool: Tool = serde_json::from_value(json!({
            "name": "t", "inputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        }))
        .expect("tool");
        let validator = compile_schema(&tool).expect("compiles");
        let args = |value: Value| {
            serde_json::from_value::<serde_json::Map<String, Value>>(value).expect("map")
        };
        assert!(check_arguments(&validator, "t", Some(&args(json!({"n": 1})))).is_ok());
        let error = check_arguments(&validator, "t", Some(&args(json!({"n": "x"}))))
            .expect_err("wrong type");
        assert_eq!(error.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        assert_eq!(
            error
                .data
                .as_ref()
                .and_then(|d| d["errors"][0]["path"].as_str()),
            Some("/n")
        );
        assert!(
            check_arguments(&validator, "t", None).is_err(),
            "a required argument is missing"
        );
        let odd: Tool = serde_json::from_value(json!({
            "name": "odd", "inputSchema": {"type": "object", "properties": {"s": {"type": "string", "pattern": "(unclosed"}}}
        }))
        .expect("tool");
        assert!(
            compile_schema(&odd).is_none(),
            "a schema that does not compile is not checked"
        );
    }
}
