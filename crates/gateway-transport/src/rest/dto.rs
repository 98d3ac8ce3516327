//! Wire shapes of the REST API (request and response bodies, query strings), with
//! their OpenAPI schemas. Requests reject unknown fields; secrets are masked on output.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use gateway_domain::secret::MASK;
use gateway_domain::{
    Catalog, ClientCredentials, Descriptor, HealthState, Secret, ToolHit, Transport, UpstreamServer,
};
use gateway_registry::{ClientCredentialsInput, RegisterServer, ServerChanges, TransportInput};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// How the gateway reaches an upstream.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case", try_from = "RawTransport")]
pub enum TransportBody {
    /// MCP Streamable HTTP.
    StreamableHttp {
        /// `http(s)://` endpoint of the upstream's MCP route.
        url: String,
        /// More endpoints of the same server (replicas, at most 15). Calls are spread
        /// over `url` and these (`upstreams.load_balancing`) and fail over between them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replicas: Vec<String>,
        /// Static headers sent upstream (e.g. an API key). Values are secret: they are
        /// returned as `********`; sending `********` back keeps the stored value.
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// The gateway's own OAuth client credentials: it obtains a bearer token
        /// from `token_url` and sends it upstream (never the caller's token).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        oauth: Option<ClientCredentialsBody>,
    },
    /// A child process speaking MCP on stdin/stdout. Only accepted when the
    /// operator set `upstreams.allow_stdio = true`.
    Stdio {
        /// Executable.
        command: String,
        /// Arguments.
        #[serde(default)]
        args: Vec<String>,
        /// Environment variables (secret, masked on output like headers).
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Working directory.
        #[serde(default)]
        cwd: Option<String>,
    },
}

/// OAuth 2.0 client credentials (client-credentials grant, client authenticated with
/// HTTP Basic) the gateway uses to get its own access token for an upstream.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsBody {
    /// Token endpoint of the upstream's authorization server (`https`; `http` only on
    /// loopback).
    #[schema(example = "https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token")]
    pub token_url: String,
    /// The gateway's client id there.
    pub client_id: String,
    /// The client secret. Returned as `********`; sending `********` back keeps the
    /// stored value while every other `oauth` field and the upstream's origins stay
    /// the same.
    pub client_secret: String,
    /// Scopes to request (`scope`), e.g. `api://upstream/.default`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// `audience` parameter, for authorization servers that name the API this way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// `resource` parameter (RFC 8707).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

impl std::fmt::Debug for ClientCredentialsBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentialsBody")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &MASK)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl From<ClientCredentialsBody> for ClientCredentialsInput {
    fn from(body: ClientCredentialsBody) -> Self {
        Self {
            token_url: body.token_url,
            client_id: body.client_id,
            client_secret: Secret::new(body.client_secret),
            scopes: body.scopes,
            audience: body.audience,
            resource: body.resource,
        }
    }
}

impl From<&ClientCredentials> for ClientCredentialsBody {
    fn from(credentials: &ClientCredentials) -> Self {
        Self {
            token_url: credentials.token_url.to_string(),
            client_id: credentials.client_id.clone(),
            client_secret: MASK.to_owned(),
            scopes: credentials.scopes.clone(),
            audience: credentials.audience.clone(),
            resource: credentials.resource.clone(),
        }
    }
}

/// The transport kinds a client may name.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawTransportKind {
    StreamableHttp,
    Stdio,
}

/// The wire form decoded field by field (an internally tagged enum would buffer its
/// content and lose the path of a bad field, e.g. `transport.url`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransport {
    #[serde(rename = "type")]
    kind: RawTransportKind,
    url: Option<String>,
    replicas: Option<Vec<String>>,
    headers: Option<BTreeMap<String, String>>,
    oauth: Option<ClientCredentialsBody>,
    command: Option<String>,
    args: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    cwd: Option<String>,
}

impl TryFrom<RawTransport> for TransportBody {
    type Error = String;

    fn try_from(raw: RawTransport) -> Result<Self, String> {
        let foreign = |present: &[(&str, bool)], kind: &str| {
            present
                .iter()
                .find(|(_, is_set)| *is_set)
                .map(|(field, _)| format!("`{field}` is not a field of a {kind} transport"))
        };
        match raw.kind {
            RawTransportKind::StreamableHttp => {
                let stray = [
                    ("command", raw.command.is_some()),
                    ("args", raw.args.is_some()),
                    ("env", raw.env.is_some()),
                    ("cwd", raw.cwd.is_some()),
                ];
                if let Some(error) = foreign(&stray, "streamable-http") {
                    return Err(error);
                }
                let url = raw
                    .url
                    .ok_or("missing field `url` (required for a streamable-http transport)")?;
                Ok(Self::StreamableHttp {
                    url,
                    replicas: raw.replicas.unwrap_or_default(),
                    headers: raw.headers.unwrap_or_default(),
                    oauth: raw.oauth,
                })
            }
            RawTransportKind::Stdio => {
                if let Some(error) = foreign(
                    &[
                        ("url", raw.url.is_some()),
                        ("replicas", raw.replicas.is_some()),
                        ("headers", raw.headers.is_some()),
                        ("oauth", raw.oauth.is_some()),
                    ],
                    "stdio",
                ) {
                    return Err(error);
                }
                let command = raw
                    .command
                    .ok_or("missing field `command` (required for a stdio transport)")?;
                Ok(Self::Stdio {
                    command,
                    args: raw.args.unwrap_or_default(),
                    env: raw.env.unwrap_or_default(),
                    cwd: raw.cwd,
                })
            }
        }
    }
}

fn secrets(values: BTreeMap<String, String>) -> BTreeMap<String, Secret> {
    values
        .into_iter()
        .map(|(k, v)| (k, Secret::new(v)))
        .collect()
}

fn masked(values: &BTreeMap<String, Secret>) -> BTreeMap<String, String> {
    values
        .keys()
        .map(|k| (k.clone(), MASK.to_owned()))
        .collect()
}

impl From<TransportBody> for TransportInput {
    fn from(body: TransportBody) -> Self {
        match body {
            TransportBody::StreamableHttp {
                url,
                replicas,
                headers,
                oauth,
            } => Self::StreamableHttp {
                url,
                replicas,
                headers: secrets(headers),
                oauth: oauth.map(Into::into),
            },
            TransportBody::Stdio {
                command,
                args,
                env,
                cwd,
            } => Self::Stdio {
                command,
                args,
                env: secrets(env),
                cwd,
            },
        }
    }
}

impl From<&Transport> for TransportBody {
    fn from(transport: &Transport) -> Self {
        match transport {
            Transport::StreamableHttp {
                url,
                replicas,
                headers,
                oauth,
            } => Self::StreamableHttp {
                url: url.to_string(),
                replicas: replicas.iter().map(ToString::to_string).collect(),
                headers: masked(headers),
                oauth: oauth.as_deref().map(Into::into),
            },
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => Self::Stdio {
                command: command.clone(),
                args: args.clone(),
                env: masked(env),
                cwd: cwd.clone(),
            },
        }
    }
}

fn default_true() -> bool {
    true
}

/// Registration of a new upstream server.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServerBody {
    /// Unique name, `[a-z0-9][a-z0-9-]{0,62}`; prefixes its tools (`<name>__<tool>`).
    #[schema(example = "github")]
    pub name: String,
    /// Human-readable name (≤ 200 characters).
    #[serde(default)]
    pub title: Option<String>,
    /// What the server is for (≤ 4000 characters).
    #[serde(default)]
    pub description: Option<String>,
    /// How to reach it.
    pub transport: TransportBody,
    /// Labels for grouping and filtering.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Owning tenant; absent means shared by all tenants.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Whether to route to it (default `true`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// This server's own request timeout in milliseconds (100–3600000); the
    /// gateway's `mcp.request_timeout_ms` when absent.
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
}

impl From<CreateServerBody> for RegisterServer {
    fn from(body: CreateServerBody) -> Self {
        Self {
            name: body.name,
            title: body.title,
            description: body.description,
            transport: body.transport.into(),
            tags: body.tags,
            tenant: body.tenant,
            enabled: body.enabled,
            request_timeout_ms: body.request_timeout_ms,
        }
    }
}

/// `Some(None)` for an explicit `null`, `None` for an absent field (merge-patch).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A partial update (JSON merge-patch semantics): absent fields stay unchanged,
/// `null` clears an optional field.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchServerBody {
    /// The version this change is based on; a different current version gives 409.
    /// (`If-Match: "<version>"` does the same with 412.)
    #[serde(default)]
    pub version: Option<i64>,
    /// New name (renames the tool prefix).
    #[serde(default)]
    pub name: Option<String>,
    /// New title, or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub title: Option<Option<String>>,
    /// New description, or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub description: Option<Option<String>>,
    /// New transport (replaces it whole).
    #[serde(default)]
    pub transport: Option<TransportBody>,
    /// New set of tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// New tenant, or `null` to share the server with all tenants.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub tenant: Option<Option<String>>,
    /// Enable or disable routing to the server.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// New request timeout in milliseconds, or `null` for the gateway default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, nullable)]
    pub request_timeout_ms: Option<Option<u64>>,
}

impl PatchServerBody {
    /// Splits the body into the version it is based on and the changes.
    pub fn into_parts(self) -> (Option<i64>, ServerChanges) {
        let changes = ServerChanges {
            name: self.name,
            title: self.title,
            description: self.description,
            transport: self.transport.map(Into::into),
            tags: self.tags,
            tenant: self.tenant,
            enabled: self.enabled,
            request_timeout_ms: self.request_timeout_ms,
        };
        (self.version, changes)
    }
}

/// Last known health of a server.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    /// `unknown`, `healthy`, `degraded` or `unhealthy`.
    #[schema(value_type = String, example = "unknown")]
    pub state: HealthState,
    /// When it was last checked.
    pub checked_at: Option<DateTime<Utc>>,
    /// Latency of the last check.
    pub latency_ms: Option<i64>,
    /// Error of the last check.
    pub error: Option<String>,
    /// MCP protocol version negotiated at the last connection.
    pub protocol_version: Option<String>,
}

/// A registered server, secrets masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerView {
    /// Stable id.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Human-readable name.
    pub title: Option<String>,
    /// What it is for.
    pub description: Option<String>,
    /// How the gateway reaches it (header and env values masked).
    pub transport: TransportBody,
    /// Labels, sorted.
    pub tags: Vec<String>,
    /// Owning tenant.
    pub tenant: Option<String>,
    /// Whether the gateway routes to it.
    pub enabled: bool,
    /// Its own request timeout in milliseconds, if set.
    pub request_timeout_ms: Option<u64>,
    /// Optimistic-concurrency version (also the `ETag`).
    pub version: i64,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Last change of the spec.
    pub updated_at: DateTime<Utc>,
    /// Last known health.
    pub health: HealthView,
}

impl From<&UpstreamServer> for ServerView {
    fn from(server: &UpstreamServer) -> Self {
        let spec = &server.spec;
        Self {
            id: server.id.as_uuid(),
            name: spec.name.to_string(),
            title: spec.title.clone(),
            description: spec.description.clone(),
            transport: TransportBody::from(&spec.transport),
            tags: spec.tags.iter().map(ToString::to_string).collect(),
            tenant: spec.tenant.as_ref().map(|t| t.as_str().to_owned()),
            enabled: spec.enabled,
            request_timeout_ms: spec.request_timeout_ms,
            version: server.version,
            created_at: server.created_at,
            updated_at: server.updated_at,
            health: HealthView {
                state: server.health.state,
                checked_at: server.health.checked_at,
                latency_ms: server.health.latency_ms,
                error: server.health.error.clone(),
                protocol_version: server.health.protocol_version.clone(),
            },
        }
    }
}

/// A page of servers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerPage {
    /// Servers, ordered by name.
    pub items: Vec<ServerView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Filters and paging of `GET /api/v1/servers`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ServerListQuery {
    /// Only servers with this tag.
    pub tag: Option<String>,
    /// Only enabled (`true`) or disabled (`false`) servers.
    #[param(value_type = Option<bool>)]
    pub enabled: Option<String>,
    /// Only servers in this health state (`unknown`, `healthy`, `degraded`, `unhealthy`).
    pub health: Option<String>,
    /// Case-insensitive text in the name, title or description.
    pub q: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Tools search query of `GET /api/v1/tools`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ToolSearchQuery {
    /// Case-insensitive text in the tool's name, title or description.
    pub q: Option<String>,
    /// Only tools of this server (by name).
    pub server: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn values(list: &[Descriptor]) -> Vec<Value> {
    list.iter().map(Descriptor::to_value).collect()
}

/// What a server offers, as last fetched from it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogView {
    /// The server's id.
    pub server_id: Uuid,
    /// The server's name.
    pub server: String,
    /// When the catalog was fetched; `null` if never.
    pub fetched_at: Option<DateTime<Utc>>,
    /// SHA-256 over the lists; changes exactly when the catalog does.
    pub content_hash: Option<String>,
    /// Tool descriptors as the upstream reported them.
    pub tools: Vec<Value>,
    /// Resource descriptors.
    pub resources: Vec<Value>,
    /// Resource template descriptors.
    pub resource_templates: Vec<Value>,
    /// Prompt descriptors.
    pub prompts: Vec<Value>,
}

impl CatalogView {
    /// The view of a server's catalog, empty when never fetched.
    pub fn new(server: &UpstreamServer, catalog: Option<&Catalog>) -> Self {
        Self {
            server_id: server.id.as_uuid(),
            server: server.spec.name.to_string(),
            fetched_at: catalog.map(|c| c.fetched_at),
            content_hash: catalog.map(|c| c.content_hash.clone()),
            tools: catalog.map(|c| values(&c.tools)).unwrap_or_default(),
            resources: catalog.map(|c| values(&c.resources)).unwrap_or_default(),
            resource_templates: catalog
                .map(|c| values(&c.resource_templates))
                .unwrap_or_default(),
            prompts: catalog.map(|c| values(&c.prompts)).unwrap_or_default(),
        }
    }
}

/// A tool found by discovery.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolView {
    /// Id of the server offering it.
    pub server_id: Uuid,
    /// Name of the server offering it.
    pub server: String,
    /// The tool's name at its server.
    pub name: String,
    /// Title, if the upstream gave one.
    pub title: Option<String>,
    /// Description, if the upstream gave one.
    pub description: Option<String>,
    /// The full descriptor (input/output schema, annotations) as the upstream sent it.
    pub tool: Value,
}

impl From<&ToolHit> for ToolView {
    fn from(hit: &ToolHit) -> Self {
        Self {
            server_id: hit.server_id.as_uuid(),
            server: hit.server_name.to_string(),
            name: hit.tool.name().to_owned(),
            title: hit.tool.title().map(str::to_owned),
            description: hit.tool.description().map(str::to_owned),
            tool: hit.tool.to_value(),
        }
    }
}

/// A page of tools.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolPage {
    /// Tools, ordered by server name then tool name.
    pub items: Vec<ToolView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok` while the process serves HTTP.
    pub status: &'static str,
}

/// Readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Result of each check: `ok`, or why it failed.
    pub checks: BTreeMap<String, String>,
}

/// Where to go from the root.
#[derive(Debug, Serialize, ToSchema)]
pub struct RootView {
    /// Product name.
    pub name: &'static str,
    /// Version of this build.
    pub version: &'static str,
    /// Entry points.
    pub links: BTreeMap<&'static str, &'static str>,
}

/// One recent outcome of a check or call on an endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObservationView {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// `check` (active `ping`), `call` (a forwarded request) or `discovery`.
    pub source: String,
    /// Whether the endpoint answered.
    pub ok: bool,
    /// How long it took.
    pub latency_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
}

impl From<&gateway_router::Observation> for ObservationView {
    fn from(observation: &gateway_router::Observation) -> Self {
        Self {
            at: observation.at,
            source: observation.source.as_str().to_owned(),
            ok: observation.ok,
            latency_ms: u64::try_from(observation.latency.as_millis()).unwrap_or(u64::MAX),
            error: observation.error.clone(),
        }
    }
}

/// Live health of one endpoint of a server.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointHealthView {
    /// Its URL (`stdio` for a child process).
    pub endpoint: String,
    /// `unknown`, `healthy`, `degraded` or `unhealthy`.
    pub state: String,
    /// `closed`, `open` or `half-open`.
    pub circuit: String,
    /// Calls in flight on it.
    pub in_flight: usize,
    /// The last active check.
    pub last_check: Option<ObservationView>,
    /// Recent outcomes, oldest first (at most 20).
    pub history: Vec<ObservationView>,
}

/// Live health of a server: `GET /api/v1/servers/{server}/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerHealthView {
    /// Server id.
    pub id: Uuid,
    /// Server name.
    pub name: String,
    /// Whether it is enabled (a disabled server is not checked).
    pub enabled: bool,
    /// Combined state: healthy when every endpoint is, unhealthy when none is usable.
    pub state: String,
    /// Whether its tools are listed and calls admitted (health, circuits and drain).
    pub available: bool,
    /// An operator is draining it: no new calls, in-flight ones finish.
    pub draining: bool,
    /// Calls in flight.
    pub in_flight: usize,
    /// What the registry last recorded (also after a restart, before the first check).
    pub recorded: HealthView,
    /// Each endpoint (empty while the server is disabled).
    pub endpoints: Vec<EndpointHealthView>,
}

/// One line of `GET /api/v1/health/servers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthSummaryItem {
    /// Server id.
    pub id: Uuid,
    /// Server name.
    pub name: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Combined state.
    pub state: String,
    /// Whether its tools are listed and calls admitted.
    pub available: bool,
    /// Being drained.
    pub draining: bool,
    /// Calls in flight.
    pub in_flight: usize,
    /// Endpoints whose circuit is not closed.
    pub open_circuits: usize,
    /// Number of endpoints.
    pub endpoints: usize,
    /// Last check or call outcome time.
    pub checked_at: Option<DateTime<Utc>>,
    /// Latency of the last check.
    pub latency_ms: Option<i64>,
    /// Error of the last failed check or call.
    pub error: Option<String>,
}

/// `GET /api/v1/health/servers`: every server's health and counts per state.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthSummary {
    /// Servers matching the filter, by name.
    pub servers: Vec<HealthSummaryItem>,
    /// How many servers (of all, before filtering) are in each state.
    pub counts: BTreeMap<String, usize>,
}

/// Filters of `GET /api/v1/health/servers`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HealthQuery {
    /// Only servers in this state: `unknown`, `healthy`, `degraded`, `unhealthy`.
    pub state: Option<String>,
    /// Only enabled (`true`) or disabled (`false`) servers.
    #[param(value_type = Option<bool>)]
    pub enabled: Option<String>,
}

/// Answer of `POST /api/v1/servers/{server}/drain`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DrainView {
    /// Server name.
    pub name: String,
    /// Always `true`: it takes no new calls until enabled again.
    pub draining: bool,
    /// Calls still in flight; they finish.
    pub in_flight: usize,
}

/// One server's calls over the sliding window.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerMetricsView {
    /// Server name.
    pub server: String,
    /// Combined health state (`unknown` when disabled and never checked).
    pub state: String,
    /// Calls in flight now.
    pub in_flight: usize,
    /// Calls that ended in the window.
    pub calls: u64,
    /// Of those, failed ones (unreachable, timed out, refused; a JSON-RPC error the
    /// upstream returned counts as answered).
    pub errors: u64,
    /// `errors / calls`.
    pub error_rate: f64,
    /// Median latency through the gateway, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

/// `GET /api/v1/metrics/summary`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsSummary {
    /// The window, in seconds (the last 4 to 5 minutes, by whole minutes).
    pub window_secs: u64,
    /// Every registered server, by name.
    pub servers: Vec<ServerMetricsView>,
}
