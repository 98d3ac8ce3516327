//! The one settings type of the gateway, read once at start-up from layered sources:
//! defaults < `mcp-gateway.toml` (or `--config FILE`) < `DATABASE_URL` <
//! `MCP_GATEWAY_*` environment variables < command-line flags. Every key is documented
//! in `docs/configuration.md`; an invalid value stops start-up with a message naming
//! the key, the value and what is allowed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use gateway_persistence::{Backend, ConnectSettings, SecretKeys, redact_url};
use serde::{Deserialize, Serialize};

/// The file read when no `--config` is given, if it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "mcp-gateway.toml";

/// The embedded database used when nothing else is configured.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/gateway.db?mode=rwc";

/// Everything the gateway can be configured with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The HTTP listener.
    pub http: HttpConfig,
    /// The registry database.
    pub database: DatabaseConfig,
    /// Logging.
    pub log: LogConfig,
    /// What kinds of upstream may be registered.
    pub upstreams: UpstreamsConfig,
    /// The MCP endpoint and how it reaches upstreams.
    pub mcp: McpConfig,
    /// Active health checks and what happens to unhealthy upstreams.
    pub health: HealthConfig,
    /// The circuit breaker of each upstream endpoint.
    pub circuit_breaker: BreakerConfig,
    /// The cap on calls in flight per upstream.
    pub bulkhead: BulkheadConfig,
    /// Span export to an OpenTelemetry collector.
    pub tracing: TracingConfig,
    /// The key that seals upstream credentials at rest.
    pub secrets: SecretsConfig,
    /// Who may call `/mcp` and change the registry.
    pub auth: AuthConfig,
    /// Request budgets per tenant, principal, role, server, tool and client address.
    pub rate_limits: RateLimitsConfig,
    /// The audit trail of MCP operations and admin changes.
    pub audit: AuditConfig,
    /// Cross-origin access for browser-based clients.
    pub cors: CorsConfig,
    /// Mirroring of another registry's `/v0.1` API into this one.
    pub registry_sync: RegistrySyncConfig,
    /// Running as one of several replicas: the link between them, session ids,
    /// shutdown behind a load balancer.
    pub cluster: ClusterConfig,
}

/// `[cluster]`: what lets several replicas behind a load balancer act as one
/// gateway (see docs/scaling.md).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://…` carrying change events, health-check leases and ended sessions
    /// between replicas. Default: `rate_limits.redis_url` (or `REDIS_URL`); without
    /// either the gateway runs as a single replica.
    pub redis_url: Option<String>,
    /// Prefix of the Redis channel and keys (replicas of one gateway share it).
    pub key_prefix: String,
    /// Longest wait for one Redis command of the link, in milliseconds.
    pub redis_timeout_ms: u64,
    /// 32 bytes, base64: seals the `Mcp-Session-Id`s handed to clients, the same on
    /// every replica. Default: derived from the secrets key (`[secrets]`).
    pub session_key: Option<String>,
    /// Session keys of before a rotation: their ids still open.
    pub previous_session_keys: Vec<String>,
    /// Longest life of a session id, in seconds, however active the session.
    pub session_ttl_secs: u64,
    /// At shutdown, seconds `/ready` answers 503 before the listener closes, so the
    /// load balancer stops routing here first. Default: 5 with a Redis link, else 0.
    pub drain_secs: Option<u64>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            key_prefix: "mcp-gateway".into(),
            redis_timeout_ms: 500,
            session_key: None,
            previous_session_keys: Vec::new(),
            session_ttl_secs: 86_400,
            drain_secs: None,
        }
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field(
                "redis_url",
                &self
                    .redis_url
                    .as_deref()
                    .map(gateway_persistence::redact_url),
            )
            .field("key_prefix", &self.key_prefix)
            .field(
                "session_key",
                &self.session_key.as_ref().map(|_| "********"),
            )
            .field("previous_session_keys", &self.previous_session_keys.len())
            .field("session_ttl_secs", &self.session_ttl_secs)
            .field("drain_secs", &self.drain_secs)
            .finish_non_exhaustive()
    }
}

/// `[registry_sync]`: pull the servers of another registry that speaks the official
/// `/v0.1` API (a company-wide one) into this gateway's private registry. Off unless
/// `url` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySyncConfig {
    /// The other registry's base URL (`https://registry.example.com`).
    pub url: Option<String>,
    /// A bearer token for the other registry, if it wants one (secret: never logged
    /// or printed).
    pub token: Option<String>,
    /// Globs over server names to mirror (`io.github.acme/*`); required with `url`.
    pub allow: Vec<String>,
    /// Seconds between passes (each asks only for what changed since the last).
    pub interval_secs: u64,
    /// Longest wait for one page, in seconds.
    pub timeout_secs: u64,
}

impl Default for RegistrySyncConfig {
    fn default() -> Self {
        Self {
            url: None,
            token: None,
            allow: Vec::new(),
            interval_secs: 3600,
            timeout_secs: 30,
        }
    }
}

/// `[cors]`: which browser origins may call `/mcp` and `/api/v1` from scripts. Off
/// (no origin) by default. The same origins pass `/mcp`'s `Origin` check (DNS
/// rebinding protection), and no other does, besides the gateway's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins such as `https://app.example.com` (scheme, host, optional port).
    pub allowed_origins: Vec<String>,
    /// Methods allowed in cross-origin requests.
    pub allowed_methods: Vec<String>,
    /// Request headers scripts may send.
    pub allowed_headers: Vec<String>,
    /// How long browsers may cache a preflight answer, in seconds.
    pub max_age_secs: u32,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: ["GET", "POST", "PUT", "PATCH", "DELETE"]
                .map(String::from)
                .to_vec(),
            allowed_headers: [
                "authorization",
                "content-type",
                "accept",
                "mcp-session-id",
                "mcp-protocol-version",
                "mcp-method",
                "mcp-name",
                "last-event-id",
                "if-match",
                "x-api-key",
                "x-request-id",
            ]
            .map(String::from)
            .to_vec(),
            max_age_secs: 600,
        }
    }
}

/// What a caller does when the audit queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditWhenFull {
    /// Wait up to `block_ms` for room, then spill.
    #[default]
    Block,
    /// Append to the spill file at once.
    Spill,
}

/// `[audit]`: every MCP operation and admin change, written asynchronously.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Record the audit trail.
    pub enabled: bool,
    /// Events waiting to be written at most.
    pub queue_capacity: usize,
    /// Events per database insert at most.
    pub batch_size: usize,
    /// Longest wait to fill a batch, in milliseconds.
    pub flush_interval_ms: u64,
    /// `block` (wait up to `block_ms`, then spill) or `spill` when the queue is full.
    pub when_full: AuditWhenFull,
    /// Longest wait for room in a full queue, in milliseconds.
    pub block_ms: u64,
    /// JSON-lines file that takes events the queue or the database cannot; replayed
    /// into the database at start and every minute.
    pub spill_file: String,
    /// Also write every event as a JSON line: `stdout`, or a file path; empty: no.
    pub stream: String,
    /// Keep tool and prompt arguments (redacted), not only their SHA-256.
    pub record_arguments: bool,
    /// Argument keys whose values are replaced by `********` (case-insensitive
    /// substrings).
    pub redact_keys: Vec<String>,
    /// Delete events older than this many days (0: keep everything).
    pub retention_days: u32,
    /// Longest wait at shutdown for the queue to reach the database, in seconds
    /// (what is left then goes to the spill file).
    pub shutdown_timeout_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            queue_capacity: 10_000,
            batch_size: 500,
            flush_interval_ms: 200,
            when_full: AuditWhenFull::Block,
            block_ms: 50,
            spill_file: "data/audit-spill.jsonl".into(),
            stream: String::new(),
            record_arguments: false,
            redact_keys: [
                "password",
                "secret",
                "token",
                "authorization",
                "api_key",
                "apikey",
                "credential",
            ]
            .map(String::from)
            .to_vec(),
            retention_days: 90,
            shutdown_timeout_secs: 30,
        }
    }
}

/// What rate-limit decisions do while Redis is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateLimitFailureMode {
    /// Decide in each replica with its share of every quota.
    #[default]
    FailOpen,
    /// Refuse requests that have a budget.
    FailClosed,
}

/// A per-address budget: `rate` requests per `period_secs`, bursts of `burst`;
/// `rate = 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressLimitConfig {
    /// Requests per period; 0: no limit.
    pub rate: u32,
    /// The period, in seconds.
    pub period_secs: u32,
    /// Requests allowed back to back.
    pub burst: u32,
}

impl AddressLimitConfig {
    /// The quota, or `None` when off (validated at load).
    pub fn quota(&self) -> Option<gateway_domain::Quota> {
        (self.rate > 0)
            .then(|| gateway_domain::Quota::new(self.rate, self.period_secs, self.burst).ok())
            .flatten()
    }
}

/// One `[[rate_limits.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRuleConfig {
    /// `tenant`, `principal`, `role`, `server` or `tool`.
    pub scope: String,
    /// Glob over the dimension's value (`*`: every value its own budget).
    #[serde(default = "every_value")]
    pub matches: String,
    /// Requests per period.
    pub rate: u32,
    /// The period, in seconds.
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

impl RateLimitRuleConfig {
    /// The domain rule, or every field error.
    pub fn to_rule(
        &self,
    ) -> Result<gateway_domain::RateLimitRule, gateway_domain::ValidationErrors> {
        gateway_domain::RateLimitRule::configured(
            &self.scope,
            &self.matches,
            self.rate,
            self.period_secs,
            self.burst,
            self.description.clone(),
        )
    }
}

/// `[rate_limits]`: GCRA budgets, in process or shared by every replica through Redis.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// `redis://…`: keep budgets in Redis, shared by every replica (also `REDIS_URL`).
    /// Unset: each process keeps its own.
    pub redis_url: Option<String>,
    /// `fail-open` (each replica decides alone with its share) or `fail-closed`
    /// (refuse) while Redis is unreachable.
    pub failure_mode: RateLimitFailureMode,
    /// Replicas sharing the load, for a replica's share of each quota in `fail-open`.
    pub expected_replicas: u32,
    /// Longest wait for Redis per decision, in milliseconds, before falling back.
    pub redis_timeout_ms: u64,
    /// Prefix of the Redis keys (several gateways can share one Redis).
    pub key_prefix: String,
    /// Budget of each client address on `/api/v1`.
    pub api_per_address: AddressLimitConfig,
    /// Budget of each client address for requests refused for lack of valid
    /// credentials (with `[auth]` on).
    pub unauthenticated_per_address: AddressLimitConfig,
    /// Take the client address from `Forwarded` / `X-Forwarded-For` (only behind a
    /// proxy that sets them).
    pub trust_forwarded_for: bool,
    /// The rules (`[[rate_limits.rules]]`), next to those of `/api/v1/rate-limits`.
    pub rules: Vec<RateLimitRuleConfig>,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            failure_mode: RateLimitFailureMode::FailOpen,
            expected_replicas: 1,
            redis_timeout_ms: 100,
            key_prefix: "mcp-gateway".into(),
            api_per_address: AddressLimitConfig {
                rate: 50,
                period_secs: 1,
                burst: 200,
            },
            unauthenticated_per_address: AddressLimitConfig {
                rate: 5,
                period_secs: 1,
                burst: 30,
            },
            trust_forwarded_for: false,
            rules: Vec::new(),
        }
    }
}

impl std::fmt::Debug for RateLimitsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitsConfig")
            .field(
                "redis_url",
                &self
                    .redis_url
                    .as_deref()
                    .map(gateway_persistence::redact_url),
            )
            .field("failure_mode", &self.failure_mode)
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

/// Which identity provider issues the bearer tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthProvider {
    /// No authentication: loopback only, unless `http.insecure`.
    #[default]
    None,
    /// Any OpenID Connect issuer (Keycloak, Auth0, Okta…).
    Oidc,
    /// Azure Entra ID.
    Entra,
}

/// `[auth]`: bearer tokens on `/mcp`, admin rights on `/api/v1`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `none`, `oidc` or `entra`.
    pub provider: AuthProvider,
    /// `oidc`: the issuer URL (`iss`, and where discovery starts).
    pub issuer: Option<String>,
    /// `oidc`: accepted `aud` values (the gateway's resource URL or API id).
    pub audiences: Vec<String>,
    /// `oidc`: the JWKS URL, to skip discovery.
    pub jwks_uri: Option<String>,
    /// `entra`: the directory (tenant) id, or `organizations` with `allowed_tenants`.
    pub tenant_id: Option<String>,
    /// `entra`: the API app's application (client) id.
    pub client_id: Option<String>,
    /// `entra`: the API app's application ID URI (`api://…`), the audience of v1 tokens.
    pub app_id_uri: Option<String>,
    /// `entra`: also accept v1 tokens.
    pub accept_v1_tokens: bool,
    /// Tenants allowed (`tid`); empty: any for `oidc`, the configured one for `entra`.
    pub allowed_tenants: Vec<String>,
    /// Scopes every token must carry.
    pub required_scopes: Vec<String>,
    /// Scopes announced in the protected resource metadata and `WWW-Authenticate`.
    pub scopes_supported: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// The gateway's public base URL (`https://gateway.example.com`), for the resource
    /// metadata; default: the bound address.
    pub public_url: Option<String>,
    /// Roles that may change the registry (`/api/v1` writes).
    pub admin_roles: Vec<String>,
    /// SHA-256 (hex) of admin API keys, sent as `X-Api-Key`; the keys themselves are
    /// never configured.
    pub admin_api_key_sha256: Vec<String>,
    /// Require a valid token for reading `/api/v1` and `/metrics` too (writes always
    /// need admin). On by default: the registry names every server, of every tenant.
    pub protect_reads: bool,
    /// The claim holding roles (Entra: `roles`).
    pub roles_claim: String,
    /// The claim holding the tenant (Entra: `tid`).
    pub tenant_claim: String,
    /// Access rules defined here (`[[auth.rules]]`), in force next to those managed
    /// through `/api/v1/policies`, and read-only there.
    pub rules: Vec<AccessRuleConfig>,
    /// `[auth.facade]`: the gateway as the OAuth authorization server its MCP clients
    /// log in with, in front of the `[auth]` identity provider.
    pub facade: FacadeConfig,
}

/// `[auth.facade]`: the OAuth 2.1 authorization-server façade (docs/auth.md).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FacadeConfig {
    /// Serve `/oauth/*` and the authorization server metadata.
    pub enabled: bool,
    /// The gateway's client id at the identity provider (`entra`: default
    /// `auth.client_id`).
    pub client_id: Option<String>,
    /// Its client secret (prefer `MCP_GATEWAY_AUTH__FACADE__CLIENT_SECRET`).
    pub client_secret: Option<String>,
    /// Or a certificate (PEM) registered with the app, with its private key (PEM).
    pub client_certificate_path: Option<PathBuf>,
    /// The certificate's private key (PEM, RSA).
    pub client_private_key_path: Option<PathBuf>,
    /// Scopes clients may ask for (default: `auth.scopes_supported`, else `mcp`).
    pub scopes: Vec<String>,
    /// Prefixed to each scope asked of the identity provider (`entra`: default
    /// `<app_id_uri>/`, so `mcp.call` becomes `api://<app>/mcp.call`).
    pub upstream_scope_prefix: Option<String>,
    /// Asked of the identity provider on every login, besides `openid`.
    pub upstream_scopes: Vec<String>,
    /// Lifetime of the façade's access tokens, in seconds (60 to 3600).
    pub access_token_ttl_secs: u64,
    /// Longest life of a login's refresh tokens, in seconds (rotation does not extend
    /// it; 0 issues no refresh tokens).
    pub refresh_token_ttl_secs: u64,
    /// How long a browser's consent to a client is remembered, in days (0: ask every
    /// time).
    pub consent_ttl_days: u64,
    /// How often a new signing key takes over, in days.
    pub signing_key_rotation_days: u64,
    /// Globs a client's redirect URIs must match.
    pub redirect_uris: Vec<String>,
    /// Open Dynamic Client Registration (`/oauth/register`).
    pub dynamic_registration: bool,
    /// Accept client ids that are metadata document URLs.
    pub client_metadata_documents: bool,
    /// Private networks (CIDR) a metadata document may be fetched from anyway.
    pub client_metadata_networks: Vec<String>,
    /// How long a fetched metadata document is trusted, in seconds.
    pub client_metadata_ttl_secs: u64,
    /// Registered clients no one has logged in with for this many days are deleted (0:
    /// kept for ever); longer than `refresh_token_ttl_secs`.
    pub registered_client_ttl_days: u64,
    /// Where a login's subject, tenant and roles come from: `access_token` (the
    /// provider's, checked by the `[auth]` verifier) or `id_token`. Default:
    /// `access_token` for `entra`, `id_token` for `oidc`.
    pub principal_from: Option<PrincipalFrom>,
    /// Ask the provider again at each refresh (its refresh token), so a disabled account
    /// or a withdrawn role ends the login's tokens.
    pub revalidate_on_refresh: bool,
    /// The scope a façade token must carry for the user's admin roles to count (the
    /// gateway's admin tools); without it the token acts as the user's other roles.
    pub admin_scope: String,
}

/// `auth.facade.principal_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalFrom {
    /// The provider's access token.
    AccessToken,
    /// The provider's ID token.
    IdToken,
}

impl Default for FacadeConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            client_id: None,
            client_secret: None,
            client_certificate_path: None,
            client_private_key_path: None,
            scopes: Vec::new(),
            upstream_scope_prefix: None,
            upstream_scopes: vec!["profile".into(), "offline_access".into()],
            access_token_ttl_secs: 600,
            refresh_token_ttl_secs: 30 * 86_400,
            consent_ttl_days: 30,
            signing_key_rotation_days: 30,
            redirect_uris: [
                "http://127.0.0.1:*",
                "http://127.0.0.1/*",
                "http://localhost:*",
                "http://localhost/*",
                "http://[::1]:*",
                "http://[::1]/*",
                "https://claude.ai/api/mcp/auth_callback",
                "https://claude.com/api/mcp/auth_callback",
                "https://vscode.dev/redirect",
                "https://insiders.vscode.dev/redirect",
                "https://chatgpt.com/connector_platform_oauth_redirect",
            ]
            .into_iter()
            .map(str::to_owned)
            .collect(),
            dynamic_registration: true,
            client_metadata_documents: true,
            client_metadata_networks: Vec::new(),
            client_metadata_ttl_secs: 3600,
            registered_client_ttl_days: 90,
            principal_from: None,
            revalidate_on_refresh: true,
            admin_scope: "mcp.admin".into(),
        }
    }
}

impl std::fmt::Debug for FacadeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FacadeConfig")
            .field("enabled", &self.enabled)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "********"),
            )
            .field("client_certificate_path", &self.client_certificate_path)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// One `[[auth.rules]]` entry: `role` may do `actions` on items matching `patterns`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRuleConfig {
    /// The role it grants to.
    pub role: String,
    /// Any of `list`, `call`, `read`, `get_prompt`.
    pub actions: Vec<String>,
    /// Globs over `<server>__<name>`.
    pub patterns: Vec<String>,
    /// Why it exists.
    #[serde(default)]
    pub description: Option<String>,
}

impl AccessRuleConfig {
    /// The domain rule, or every field error.
    pub fn to_rule(&self) -> Result<gateway_domain::AccessRule, gateway_domain::ValidationErrors> {
        gateway_domain::AccessRule::configured(
            &self.role,
            &self.actions,
            self.patterns.clone(),
            self.description.clone(),
        )
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            provider: AuthProvider::None,
            issuer: None,
            audiences: Vec::new(),
            jwks_uri: None,
            tenant_id: None,
            client_id: None,
            app_id_uri: None,
            accept_v1_tokens: false,
            allowed_tenants: Vec::new(),
            required_scopes: Vec::new(),
            scopes_supported: Vec::new(),
            leeway_secs: 60,
            public_url: None,
            admin_roles: vec!["admin".into()],
            admin_api_key_sha256: Vec::new(),
            protect_reads: true,
            roles_claim: "roles".into(),
            tenant_claim: "tid".into(),
            rules: Vec::new(),
            facade: FacadeConfig::default(),
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("provider", &self.provider)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("tenant_id", &self.tenant_id)
            .field("admin_api_keys", &self.admin_api_key_sha256.len())
            .finish_non_exhaustive()
    }
}

/// `[secrets]`: upstream header and environment values are stored sealed (AES-256-GCM).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// 32 bytes, base64 (`openssl rand -base64 32`). Set it (the same on every
    /// replica) in production; absent, `key_file` is used.
    pub key: Option<String>,
    /// Keys sealed with before a rotation, still used to open old values.
    pub previous_keys: Vec<String>,
    /// Key file used (and created, mode 0600) when `key` is absent. Default:
    /// `secret.key` beside the SQLite database file, else `data/secret.key`.
    pub key_file: Option<PathBuf>,
}

impl std::fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsConfig")
            .field("key", &self.key.as_ref().map(|_| "********"))
            .field("previous_keys", &self.previous_keys.len())
            .field("key_file", &self.key_file)
            .finish()
    }
}

/// `[tracing]`: OpenTelemetry export of spans (off unless an endpoint is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// OTLP/HTTP collector, e.g. `http://otel-collector:4318` (`/v1/traces` is added).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of traces exported, 0.0–1.0 (a caller's sampled parent is followed).
    pub sample_ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "mcp-gateway".into(),
            sample_ratio: 1.0,
        }
    }
}

/// What happens to the tools of an unhealthy upstream (or one whose circuit is open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenUnavailable {
    /// They leave the lists until it recovers (clients get `list_changed`).
    #[default]
    Hide,
    /// They stay listed; calls fail fast with an error naming the upstream.
    FailFast,
}

/// `[health]`: active checks and health thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Time between checks (`ping`) of each upstream endpoint, in milliseconds (±10 % jitter).
    pub check_interval_ms: u64,
    /// Longest wait for a check's answer, in milliseconds.
    pub check_timeout_ms: u64,
    /// Consecutive failures (checks or calls) that make an endpoint unhealthy.
    pub unhealthy_after: u32,
    /// Consecutive successes that bring an unhealthy endpoint back.
    pub healthy_after: u32,
    /// A check slower than this marks the endpoint degraded, in milliseconds.
    pub degraded_latency_ms: u64,
    /// Failures among the last 20 outcomes that mark a live endpoint degraded.
    pub degraded_failures: usize,
    /// `hide`: unhealthy upstreams' tools leave the lists; `fail-fast`: they stay and calls fail fast.
    pub when_unavailable: WhenUnavailable,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            check_interval_ms: 30_000,
            check_timeout_ms: 5_000,
            unhealthy_after: 2,
            healthy_after: 2,
            degraded_latency_ms: 2_000,
            degraded_failures: 2,
            when_unavailable: WhenUnavailable::Hide,
        }
    }
}

/// `[circuit_breaker]`: when an endpoint's circuit opens and how it recovers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failed calls that open the circuit.
    pub consecutive_failures: u32,
    /// Failure rate (0.0–1.0) over the window that opens the circuit...
    pub failure_rate: f64,
    /// ...once the window holds at least this many calls.
    pub min_calls: usize,
    /// The failure-rate window, in seconds.
    pub window_secs: u64,
    /// How long an open circuit fails calls fast before probing, in milliseconds.
    pub open_ms: u64,
    /// Probe calls let through while half-open; that many successes close it.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_calls: 20,
            window_secs: 30,
            open_ms: 15_000,
            half_open_probes: 1,
        }
    }
}

/// `[bulkhead]`: calls in flight per upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BulkheadConfig {
    /// Calls in flight per upstream at most.
    pub max_concurrent_calls: usize,
    /// Longest wait for a free slot before the call fails fast, in milliseconds.
    pub max_queue_wait_ms: u64,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 64,
            max_queue_wait_ms: 500,
        }
    }
}

/// `[mcp]`: naming, paging, timeouts and discovery of the MCP endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// `always` (`<server>__<tool>`), `conditional` (prefix only clashing names) or `never`.
    pub prefix_mode: gateway_router::PrefixMode,
    /// Between server and tool name; only `_` and `.` (which server names never contain).
    pub separator: String,
    /// Longest exposed tool or prompt name (16–128); longer ones are shortened with a hash.
    pub max_name_length: usize,
    /// Items per `*/list` page (1–1000).
    pub page_size: usize,
    /// Default per-call timeout in milliseconds (a server's `request_timeout_ms` wins).
    pub request_timeout_ms: u64,
    /// Longest wait for a new upstream session, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How often every enabled upstream's catalog is re-fetched, in seconds.
    pub discovery_interval_secs: u64,
    /// Largest response accepted from an HTTP upstream, in bytes.
    pub max_response_bytes: usize,
    /// Browser origins allowed on `/mcp`, besides the gateway's own loopback origins.
    pub allowed_origins: Vec<String>,
    /// `Host` values accepted on `/mcp` (DNS-rebinding protection). Empty: loopback
    /// only; set it when clients reach the gateway under a DNS name.
    pub allowed_hosts: Vec<String>,
    /// Serve the gateway's own tools (`gateway__*`) and resources (`gateway://`) on
    /// `/mcp`.
    pub gateway_tools: bool,
    /// What `/mcp` lists when the URL does not say (`?view=full|compact`): `full`
    /// (every tool) or `compact` (search, describe and call tools only).
    pub default_view: McpView,
    /// MCP sessions open at once, all callers together (more are 503).
    pub max_sessions: usize,
    /// MCP sessions open at once per caller (token subject, admin key or client
    /// address; more are 429).
    pub max_sessions_per_caller: usize,
    /// A session idle this long (seconds) is ended and its resources freed.
    pub session_idle_secs: u64,
    /// Streams (`GET /mcp`) and requests in progress open at once, all callers
    /// together (more are 503).
    pub max_streams: usize,
    /// Streams and requests in progress open at once per caller (more are 429).
    pub max_streams_per_caller: usize,
    /// Seconds between keep-alive comments on an open SSE stream.
    pub sse_keep_alive_secs: u64,
    /// Tools (and prompts, resources, templates) one upstream may list at most; a
    /// bigger catalog is refused and the last known one kept.
    pub max_items_per_upstream: usize,
    /// Notifications (progress, log messages) relayed per second from one upstream
    /// session, at most; beyond that they are dropped and counted. List changes and
    /// resource updates are never dropped, only coalesced.
    pub max_upstream_notifications_per_sec: u32,
}

/// The two forms of `/mcp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum McpView {
    /// Every tool the caller may see.
    #[default]
    Full,
    /// `gateway__search_tools`, `gateway__describe_tool`, `gateway__call_tool`.
    Compact,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            prefix_mode: gateway_router::PrefixMode::Always,
            separator: "__".into(),
            max_name_length: 64,
            page_size: 500,
            request_timeout_ms: 60_000,
            connect_timeout_ms: 15_000,
            discovery_interval_secs: 300,
            max_response_bytes: 16 * 1024 * 1024,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            gateway_tools: true,
            default_view: McpView::Full,
            max_sessions: 10_000,
            max_sessions_per_caller: 100,
            session_idle_secs: 300,
            max_streams: 20_000,
            max_streams_per_caller: 1_000,
            sse_keep_alive_secs: 15,
            max_items_per_upstream: 10_000,
            max_upstream_notifications_per_sec: 100,
        }
    }
}

/// `[http]`: where and how the gateway listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Interface to bind (`127.0.0.1` keeps the gateway local; `0.0.0.0` exposes it).
    pub host: String,
    /// TCP port; `0` picks a free one.
    pub port: u16,
    /// HTTP worker threads; absent = one per CPU core.
    pub workers: Option<usize>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Longest time a request body may take to arrive, in seconds; a body trickling
    /// in slower (slowloris) gets 408.
    pub body_timeout_secs: u64,
    /// How long a graceful shutdown waits for in-flight requests, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Allow a non-loopback `host` without authentication (`--insecure`): anyone who
    /// reaches the port can then call every upstream and change the registry.
    pub insecure: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8000,
            workers: None,
            max_body_bytes: 1024 * 1024,
            body_timeout_secs: 30,
            shutdown_timeout_secs: 30,
            insecure: false,
        }
    }
}

/// `[database]`: the registry store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH?mode=rwc` (embedded) or `postgres://USER@HOST/DB`.
    pub url: String,
    /// Pool size: most connections this process opens.
    pub max_connections: u32,
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// Seconds to wait when opening a connection.
    pub connect_timeout_secs: u64,
    /// Seconds a request waits for a pooled connection before failing with 503.
    pub acquire_timeout_secs: u64,
    /// Apply pending migrations at start-up. Absent: yes for SQLite, no for
    /// PostgreSQL (run `cargo xtask migrate`, or start with `--migrate`).
    pub auto_migrate: Option<bool>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_DATABASE_URL.into(),
            max_connections: 10,
            min_connections: 1,
            connect_timeout_secs: 5,
            acquire_timeout_secs: 5,
            auto_migrate: None,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `[log]`: what is logged and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter (`info`, `debug,sqlx=warn`…); `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// `[upstreams]`: what may be registered and how calls are spread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamsConfig {
    /// Allow stdio upstreams, which run a command on this host. Off by default.
    pub allow_stdio: bool,
    /// With `allow_stdio`: the executables stdio upstreams may run (`npx`, `uvx`,
    /// `/opt/mcp/bin/server`; `*` for any). Required with `allow_stdio`.
    pub stdio_commands: Vec<String>,
    /// How calls are spread over a server's endpoints: `round-robin` or `least-in-flight`.
    pub load_balancing: gateway_router::Balance,
    /// Networks upstream URLs may never reach (SSRF protection); by default cloud
    /// metadata services and link-local networks.
    pub denied_networks: Vec<String>,
    /// When not empty, the only networks upstream connections may reach.
    pub allowed_networks: Vec<String>,
    /// When not empty, the only host names upstream URLs may use (globs).
    pub allowed_hosts: Vec<String>,
}

impl Default for UpstreamsConfig {
    fn default() -> Self {
        Self {
            allow_stdio: false,
            stdio_commands: Vec::new(),
            load_balancing: gateway_router::Balance::default(),
            denied_networks: gateway_domain::egress::DEFAULT_DENIED
                .iter()
                .map(|n| (*n).to_owned())
                .collect(),
            allowed_networks: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

impl UpstreamsConfig {
    /// The egress policy these settings describe (validated at load).
    pub fn egress(&self) -> gateway_domain::EgressPolicy {
        let parse = |list: &[String]| {
            list.iter()
                .filter_map(|n| gateway_domain::Network::parse(n).ok())
                .collect()
        };
        gateway_domain::EgressPolicy {
            denied: parse(&self.denied_networks),
            allowed: parse(&self.allowed_networks),
            hosts: self.allowed_hosts.clone(),
        }
    }
}

/// Values given on the command line; they override every other source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--host`.
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--insecure`.
    pub insecure: bool,
    /// `--workers`.
    pub workers: Option<usize>,
}

/// A configuration problem, worded for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Settings {
    /// Reads and validates the settings from every source. `config_file` is the
    /// `--config` path (which must exist); without it `mcp-gateway.toml` is read if
    /// present.
    pub fn load(config_file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from(
            config_file,
            overrides,
            Env::prefixed("MCP_GATEWAY_")
                .ignore(&["CONFIG"])
                .split("__"),
        )
    }

    fn load_from(
        config_file: Option<&Path>,
        overrides: &Overrides,
        env: Env,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match config_file {
            Some(path) => {
                std::fs::metadata(path)
                    .and_then(|meta| {
                        if meta.is_file() {
                            Ok(())
                        } else {
                            Err(std::io::Error::other("not a regular file"))
                        }
                    })
                    .map_err(|e| {
                        ConfigError(format!("cannot read config file {}: {e}", path.display()))
                    })?;
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
            figment = figment.merge(Serialized::default("database.url", url));
        }
        if let Some(url) = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) {
            figment = figment.merge(Serialized::default("rate_limits.redis_url", url));
        }
        figment = figment.merge(env);
        if let Some(host) = &overrides.host {
            figment = figment.merge(Serialized::default("http.host", host));
        }
        if let Some(port) = overrides.port {
            figment = figment.merge(Serialized::default("http.port", port));
        }
        if let Some(format) = overrides.log_format {
            figment = figment.merge(Serialized::default("log.format", format));
        }
        if let Some(url) = &overrides.database_url {
            figment = figment.merge(Serialized::default("database.url", url));
        }
        if overrides.insecure {
            figment = figment.merge(Serialized::default("http.insecure", true));
        }
        if let Some(workers) = overrides.workers {
            figment = figment.merge(Serialized::default("http.workers", workers));
        }
        let settings: Settings = figment.extract().map_err(|error| {
            let messages: Vec<String> = error
                .into_iter()
                .map(|e| describe_figment_error(&e))
                .collect();
            ConfigError(format!("invalid configuration: {}", messages.join("; ")))
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let host = &self.http.host;
        let valid_hostname = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if host.parse::<IpAddr>().is_err() && !valid_hostname {
            problems.push(format!("http.host = {host:?}: must be an IP address or a host name (e.g. 127.0.0.1, 0.0.0.0, ::1)"));
        }
        if self.http.workers.is_some_and(|w| w == 0 || w > 1024) {
            problems.push(format!(
                "http.workers = {:?}: must be between 1 and 1024",
                self.http.workers.unwrap_or_default()
            ));
        }
        if !(1024..=256 * 1024 * 1024).contains(&self.http.max_body_bytes) {
            problems.push(format!(
                "http.max_body_bytes = {}: must be between 1024 and 268435456 (256 MiB)",
                self.http.max_body_bytes
            ));
        }
        if !(1..=3600).contains(&self.http.body_timeout_secs) {
            problems.push(format!(
                "http.body_timeout_secs = {}: must be between 1 and 3600",
                self.http.body_timeout_secs
            ));
        }
        if self.http.shutdown_timeout_secs > 3600 {
            problems.push(format!(
                "http.shutdown_timeout_secs = {}: must be at most 3600",
                self.http.shutdown_timeout_secs
            ));
        }
        if let Err(error) = Backend::from_url(&self.database.url) {
            problems.push(format!("database.url: {error}"));
        }
        if !(1..=1000).contains(&self.database.max_connections) {
            problems.push(format!(
                "database.max_connections = {}: must be between 1 and 1000",
                self.database.max_connections
            ));
        }
        if self.database.min_connections > self.database.max_connections {
            problems.push(format!(
                "database.min_connections = {}: must not exceed database.max_connections ({})",
                self.database.min_connections, self.database.max_connections
            ));
        }
        for (key, value) in [
            (
                "database.connect_timeout_secs",
                self.database.connect_timeout_secs,
            ),
            (
                "database.acquire_timeout_secs",
                self.database.acquire_timeout_secs,
            ),
        ] {
            if !(1..=300).contains(&value) {
                problems.push(format!("{key} = {value}: must be between 1 and 300"));
            }
        }
        let mcp = &self.mcp;
        if let Err(error) =
            gateway_router::NamingPolicy::new(mcp.prefix_mode, &mcp.separator, mcp.max_name_length)
        {
            problems.push(format!("mcp.separator / mcp.max_name_length: {error}"));
        }
        let ranges: [(&str, u64, std::ops::RangeInclusive<u64>); 11] = [
            ("mcp.page_size", mcp.page_size as u64, 1..=1000),
            (
                "mcp.request_timeout_ms",
                mcp.request_timeout_ms,
                100..=3_600_000,
            ),
            (
                "mcp.connect_timeout_ms",
                mcp.connect_timeout_ms,
                100..=300_000,
            ),
            (
                "mcp.discovery_interval_secs",
                mcp.discovery_interval_secs,
                5..=86_400,
            ),
            (
                "mcp.max_response_bytes",
                mcp.max_response_bytes as u64,
                1024..=1024 * 1024 * 1024,
            ),
            ("mcp.max_sessions", mcp.max_sessions as u64, 1..=1_000_000),
            ("mcp.max_streams", mcp.max_streams as u64, 1..=1_000_000),
            (
                "mcp.sse_keep_alive_secs",
                mcp.sse_keep_alive_secs,
                1..=3_600,
            ),
            (
                "mcp.max_items_per_upstream",
                mcp.max_items_per_upstream as u64,
                1..=1_000_000,
            ),
            (
                "mcp.max_upstream_notifications_per_sec",
                u64::from(mcp.max_upstream_notifications_per_sec),
                1..=100_000,
            ),
            ("mcp.session_idle_secs", mcp.session_idle_secs, 1..=86_400),
        ];
        for (key, value, range) in ranges {
            if !range.contains(&value) {
                problems.push(format!(
                    "{key} = {value}: must be between {} and {}",
                    range.start(),
                    range.end()
                ));
            }
        }
        let health = &self.health;
        let breaker = &self.circuit_breaker;
        let more: [(&str, u64, std::ops::RangeInclusive<u64>); 12] = [
            (
                "health.check_interval_ms",
                health.check_interval_ms,
                100..=3_600_000,
            ),
            (
                "health.check_timeout_ms",
                health.check_timeout_ms,
                50..=300_000,
            ),
            (
                "health.unhealthy_after",
                health.unhealthy_after.into(),
                1..=100,
            ),
            ("health.healthy_after", health.healthy_after.into(), 1..=100),
            (
                "health.degraded_latency_ms",
                health.degraded_latency_ms,
                1..=3_600_000,
            ),
            (
                "health.degraded_failures",
                health.degraded_failures as u64,
                1..=20,
            ),
            (
                "circuit_breaker.consecutive_failures",
                breaker.consecutive_failures.into(),
                1..=1000,
            ),
            (
                "circuit_breaker.min_calls",
                breaker.min_calls as u64,
                1..=100_000,
            ),
            ("circuit_breaker.window_secs", breaker.window_secs, 1..=3600),
            ("circuit_breaker.open_ms", breaker.open_ms, 10..=3_600_000),
            (
                "circuit_breaker.half_open_probes",
                breaker.half_open_probes.into(),
                1..=100,
            ),
            (
                "bulkhead.max_concurrent_calls",
                self.bulkhead.max_concurrent_calls as u64,
                1..=100_000,
            ),
        ];
        for (key, value, range) in more {
            if !range.contains(&value) {
                problems.push(format!(
                    "{key} = {value}: must be between {} and {}",
                    range.start(),
                    range.end()
                ));
            }
        }
        if !(breaker.failure_rate > 0.0 && breaker.failure_rate <= 1.0) {
            problems.push(format!(
                "circuit_breaker.failure_rate = {}: must be above 0.0 and at most 1.0",
                breaker.failure_rate
            ));
        }
        if self.bulkhead.max_queue_wait_ms > 300_000 {
            problems.push(format!(
                "bulkhead.max_queue_wait_ms = {}: must be at most 300000",
                self.bulkhead.max_queue_wait_ms
            ));
        }
        if health.check_timeout_ms > health.check_interval_ms {
            problems.push(format!(
                "health.check_timeout_ms = {}: must not exceed health.check_interval_ms ({})",
                health.check_timeout_ms, health.check_interval_ms
            ));
        }
        self.validate_auth(&mut problems);
        self.validate_rate_limits(&mut problems);
        self.validate_cluster(&mut problems);
        self.validate_audit(&mut problems);
        if let Some(endpoint) = &self.tracing.otlp_endpoint {
            let valid = url::Url::parse(endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !valid {
                problems.push(format!(
                    "tracing.otlp_endpoint = {endpoint:?}: must be an http(s) URL such as http://otel-collector:4318"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.tracing.sample_ratio) {
            problems.push(format!(
                "tracing.sample_ratio = {}: must be between 0.0 and 1.0",
                self.tracing.sample_ratio
            ));
        }
        if self.tracing.service_name.trim().is_empty() || self.tracing.service_name.len() > 255 {
            problems.push("tracing.service_name: must be 1 to 255 characters".to_owned());
        }
        for (key, value) in self.secrets.key.iter().map(|k| ("secrets.key", k)).chain(
            self.secrets
                .previous_keys
                .iter()
                .map(|k| ("secrets.previous_keys", k)),
        ) {
            if let Err(error) = gateway_persistence::sealing::decode_key(value) {
                problems.push(format!("{key}: {error}"));
            }
        }
        let origins = mcp
            .allowed_origins
            .iter()
            .map(|o| ("mcp.allowed_origins", o))
            .chain(
                self.cors
                    .allowed_origins
                    .iter()
                    .map(|o| ("cors.allowed_origins", o)),
            );
        for (key, origin) in origins {
            let valid = url::Url::parse(origin).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.path() == "/"
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty()
                    && u.password().is_none()
            });
            if !valid {
                problems.push(format!(
                    "{key}: {origin:?} must be an origin such as https://app.example.com"
                ));
            }
        }
        for (key, list) in [
            ("upstreams.denied_networks", &self.upstreams.denied_networks),
            (
                "upstreams.allowed_networks",
                &self.upstreams.allowed_networks,
            ),
        ] {
            for network in list {
                if let Err(error) = gateway_domain::Network::parse(network) {
                    problems.push(format!("{key}: {error}"));
                }
            }
        }
        if self.upstreams.allow_stdio && self.upstreams.stdio_commands.is_empty() {
            problems.push("upstreams.allow_stdio = true needs upstreams.stdio_commands: the executables stdio upstreams may run (such as [\"npx\", \"uvx\"]; \"*\" for any)".to_owned());
        }
        for command in &self.upstreams.stdio_commands {
            if command.trim().is_empty() {
                problems.push("upstreams.stdio_commands: an entry is empty".to_owned());
            }
        }
        for host in &self.upstreams.allowed_hosts {
            if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
                problems.push(format!(
                    "upstreams.allowed_hosts: {host:?} is not a host name glob"
                ));
            }
        }
        let sync = &self.registry_sync;
        if let Some(url) = &sync.url {
            if !url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                problems.push(format!(
                    "registry_sync.url = {url:?}: must be an http(s) URL such as https://registry.example.com"
                ));
            }
            if sync.allow.is_empty() {
                problems.push("registry_sync.allow: list the server names to mirror (globs such as io.github.acme/*)".to_owned());
            }
        }
        for pattern in &sync.allow {
            if pattern.is_empty() || pattern.chars().any(char::is_whitespace) {
                problems.push(format!(
                    "registry_sync.allow: {pattern:?} is not a name glob"
                ));
            }
        }
        if !(10..=604_800).contains(&sync.interval_secs) {
            problems.push(format!(
                "registry_sync.interval_secs = {}: must be between 10 and 604800",
                sync.interval_secs
            ));
        }
        if !(1..=600).contains(&sync.timeout_secs) {
            problems.push(format!(
                "registry_sync.timeout_secs = {}: must be between 1 and 600",
                sync.timeout_secs
            ));
        }
        if !(1..=mcp.max_sessions.max(1)).contains(&mcp.max_sessions_per_caller) {
            problems.push(format!(
                "mcp.max_sessions_per_caller = {}: must be between 1 and mcp.max_sessions",
                mcp.max_sessions_per_caller
            ));
        }
        if !(1..=mcp.max_streams.max(1)).contains(&mcp.max_streams_per_caller) {
            problems.push(format!(
                "mcp.max_streams_per_caller = {}: must be between 1 and mcp.max_streams",
                mcp.max_streams_per_caller
            ));
        }
        if mcp.default_view == McpView::Compact && !mcp.gateway_tools {
            problems.push(
                "mcp.default_view = \"compact\" needs mcp.gateway_tools = true (compact mode lists the gateway's search, describe and call tools)".to_owned(),
            );
        }
        let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
        for method in &self.cors.allowed_methods {
            if !methods.contains(&method.as_str()) {
                problems.push(format!(
                    "cors.allowed_methods: {method:?} is not one of {}",
                    methods.join(", ")
                ));
            }
        }
        for header in &self.cors.allowed_headers {
            if header.is_empty()
                || !header
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            {
                problems.push(format!(
                    "cors.allowed_headers: {header:?} is not a header name"
                ));
            }
        }
        if self.cors.max_age_secs > 86_400 {
            problems.push(format!(
                "cors.max_age_secs = {}: must be at most 86400",
                self.cors.max_age_secs
            ));
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            problems.push(format!(
                "log.filter = {:?}: not a valid tracing filter ({error})",
                self.log.filter
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(format!(
                "invalid configuration: {}",
                problems.join("; ")
            )))
        }
    }

    fn validate_audit(&self, problems: &mut Vec<String>) {
        let audit = &self.audit;
        let mut range = |key: &str, value: u64, min: u64, max: u64| {
            if !(min..=max).contains(&value) {
                problems.push(format!(
                    "audit.{key} = {value} must be between {min} and {max}"
                ));
            }
        };
        range("queue_capacity", audit.queue_capacity as u64, 1, 10_000_000);
        range("batch_size", audit.batch_size as u64, 1, 10_000);
        range("flush_interval_ms", audit.flush_interval_ms, 1, 60_000);
        range("block_ms", audit.block_ms, 0, 10_000);
        range(
            "shutdown_timeout_secs",
            audit.shutdown_timeout_secs,
            1,
            3600,
        );
        range("retention_days", u64::from(audit.retention_days), 0, 36_500);
        if audit.enabled && audit.spill_file.trim().is_empty() {
            problems.push("audit.spill_file must name a file".into());
        }
        if audit.redact_keys.iter().any(|k| k.trim().is_empty()) {
            problems.push("audit.redact_keys must not contain empty keys".into());
        }
    }

    fn validate_cluster(&self, problems: &mut Vec<String>) {
        let cluster = &self.cluster;
        if let Some(url) = &cluster.redis_url
            && !url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "redis" | "rediss") && u.has_host())
        {
            problems.push(format!(
                "cluster.redis_url = {:?} must be a redis:// or rediss:// URL with a host",
                gateway_persistence::redact_url(url)
            ));
        }
        if cluster.key_prefix.is_empty()
            || cluster.key_prefix.len() > 64
            || !cluster.key_prefix.chars().all(|c| c.is_ascii_graphic())
        {
            problems.push(format!(
                "cluster.key_prefix = {:?} must be 1–64 visible ASCII characters",
                cluster.key_prefix
            ));
        }
        if !(10..=10_000).contains(&cluster.redis_timeout_ms) {
            problems.push(format!(
                "cluster.redis_timeout_ms = {} must be between 10 and 10000",
                cluster.redis_timeout_ms
            ));
        }
        let keys = cluster
            .session_key
            .iter()
            .map(|k| ("cluster.session_key", k))
            .chain(
                cluster
                    .previous_session_keys
                    .iter()
                    .map(|k| ("cluster.previous_session_keys", k)),
            );
        for (name, key) in keys {
            if decode_session_key(key).is_none() {
                problems.push(format!(
                    "{name} must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)"
                ));
            }
        }
        if !(60..=30 * 86_400).contains(&cluster.session_ttl_secs) {
            problems.push(format!(
                "cluster.session_ttl_secs = {} must be between 60 and 2592000 (30 days)",
                cluster.session_ttl_secs
            ));
        }
        if cluster.drain_secs.is_some_and(|d| d > 300) {
            problems.push(format!(
                "cluster.drain_secs = {} must be at most 300",
                cluster.drain_secs.unwrap_or_default()
            ));
        }
    }

    /// The Redis that links the replicas, if any: `cluster.redis_url`, else the rate
    /// limiter's.
    pub fn cluster_redis_url(&self) -> Option<&str> {
        self.cluster
            .redis_url
            .as_deref()
            .or(self.rate_limits.redis_url.as_deref())
    }

    /// How long `/ready` says 503 at shutdown before the listener closes.
    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.cluster.drain_secs.unwrap_or(
            if self.cluster_redis_url().is_some() {
                5
            } else {
                0
            },
        ))
    }

    fn validate_rate_limits(&self, problems: &mut Vec<String>) {
        let limits = &self.rate_limits;
        if let Some(url) = &limits.redis_url
            && !url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "redis" | "rediss") && u.has_host())
        {
            problems.push(format!(
                "rate_limits.redis_url = {:?} must be a redis:// or rediss:// URL with a host",
                gateway_persistence::redact_url(url)
            ));
        }
        if !(1..=1000).contains(&limits.expected_replicas) {
            problems.push(format!(
                "rate_limits.expected_replicas = {} must be between 1 and 1000",
                limits.expected_replicas
            ));
        }
        if !(1..=10_000).contains(&limits.redis_timeout_ms) {
            problems.push(format!(
                "rate_limits.redis_timeout_ms = {} must be between 1 and 10000",
                limits.redis_timeout_ms
            ));
        }
        if limits.key_prefix.is_empty()
            || limits.key_prefix.len() > 64
            || !limits
                .key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            problems.push(format!(
                "rate_limits.key_prefix = {:?} must be 1 to 64 letters, digits or - _ . :",
                limits.key_prefix
            ));
        }
        for (key, limit) in [
            ("api_per_address", limits.api_per_address),
            (
                "unauthenticated_per_address",
                limits.unauthenticated_per_address,
            ),
        ] {
            if limit.rate > 0
                && let Err(errors) =
                    gateway_domain::Quota::new(limit.rate, limit.period_secs, limit.burst)
            {
                for error in errors.errors() {
                    problems.push(format!(
                        "rate_limits.{key}.{}: {}",
                        error.field, error.message
                    ));
                }
            }
        }
        let mut seen = Vec::new();
        for (index, rule) in limits.rules.iter().enumerate() {
            match rule.to_rule() {
                Err(errors) => {
                    for error in errors.errors() {
                        problems.push(format!(
                            "rate_limits.rules[{index}].{}: {}",
                            error.field, error.message
                        ));
                    }
                }
                Ok(parsed) if seen.contains(&(parsed.scope, parsed.matches.clone())) => {
                    problems.push(format!(
                        "rate_limits.rules[{index}]: another rule already has scope {} and matches {:?}",
                        parsed.scope, parsed.matches
                    ))
                }
                Ok(parsed) => seen.push((parsed.scope, parsed.matches)),
            }
        }
    }

    fn validate_facade(&self, problems: &mut Vec<String>, key_url_ok: &dyn Fn(&str) -> bool) {
        let (auth, facade) = (&self.auth, &self.auth.facade);
        if !facade.enabled {
            return;
        }
        if auth.provider == AuthProvider::None {
            problems.push("auth.facade.enabled: needs an identity provider behind it (auth.provider = \"oidc\" or \"entra\")".into());
        }
        match auth.public_url.as_deref() {
            Some(url) if key_url_ok(url) => {}
            Some(url) => problems.push(format!("auth.public_url = {url:?}: the façade's issuer must be an https URL (http only for localhost)")),
            None => problems.push("auth.public_url: required with auth.facade (it is the issuer of the façade's tokens and where the identity provider sends browsers back)".into()),
        }
        if facade.client_id.is_none()
            && !(auth.provider == AuthProvider::Entra && auth.client_id.is_some())
        {
            problems.push("auth.facade.client_id: the gateway's client id at the identity provider is required".into());
        }
        let certificate =
            facade.client_certificate_path.is_some() || facade.client_private_key_path.is_some();
        match (&facade.client_secret, certificate) {
            (Some(_), true) => problems.push("auth.facade: give client_secret or client_certificate_path with client_private_key_path, not both".into()),
            (None, false) => problems.push("auth.facade.client_secret: required (or client_certificate_path with client_private_key_path)".into()),
            (None, true) if facade.client_certificate_path.is_none() || facade.client_private_key_path.is_none() => {
                problems.push("auth.facade: client_certificate_path and client_private_key_path go together".into());
            }
            _ => {}
        }
        if !(60..=3600).contains(&facade.access_token_ttl_secs) {
            problems.push(format!(
                "auth.facade.access_token_ttl_secs = {}: must be 60 to 3600",
                facade.access_token_ttl_secs
            ));
        }
        if facade.refresh_token_ttl_secs > 365 * 86_400 {
            problems.push(format!(
                "auth.facade.refresh_token_ttl_secs = {}: must be at most a year",
                facade.refresh_token_ttl_secs
            ));
        }
        if !(1..=365).contains(&facade.signing_key_rotation_days) {
            problems.push(format!(
                "auth.facade.signing_key_rotation_days = {}: must be 1 to 365",
                facade.signing_key_rotation_days
            ));
        }
        if facade.registered_client_ttl_days > 0
            && facade.registered_client_ttl_days * 86_400 <= facade.refresh_token_ttl_secs
        {
            problems.push(format!(
                "auth.facade.registered_client_ttl_days = {}: must outlast refresh_token_ttl_secs ({} s), or be 0",
                facade.registered_client_ttl_days, facade.refresh_token_ttl_secs
            ));
        }
        if facade.consent_ttl_days > 365 {
            problems.push(format!(
                "auth.facade.consent_ttl_days = {}: must be at most 365",
                facade.consent_ttl_days
            ));
        }
        if facade.redirect_uris.is_empty() {
            problems.push("auth.facade.redirect_uris: at least one pattern is required".into());
        }
        for network in &facade.client_metadata_networks {
            if let Err(error) = gateway_domain::Network::parse(network) {
                problems.push(format!(
                    "auth.facade.client_metadata_networks: {network:?}: {error}"
                ));
            }
        }
        if facade
            .scopes
            .iter()
            .chain(&facade.upstream_scopes)
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            problems.push(
                "auth.facade.scopes / upstream_scopes: a scope is one word without spaces".into(),
            );
        }
        if facade.scopes.iter().any(|s| s.contains("://")) {
            problems.push("auth.facade.scopes: the gateway's own scope names (mcp.call), not the provider's (api://…/mcp.call): upstream_scope_prefix maps them".into());
        }
        if auth.provider == AuthProvider::Entra
            && matches!(auth.tenant_id.as_deref(), Some("organizations" | "common"))
        {
            problems.push("auth.facade: a multi-tenant Entra app (tenant_id = \"organizations\") cannot be the façade's provider yet; use the directory (tenant) id".into());
        }
        const RESERVED: &[&str] = &[
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "nbf",
            "jti",
            "client_id",
            "scope",
        ];
        for (key, claim) in [
            ("auth.roles_claim", &auth.roles_claim),
            ("auth.tenant_claim", &auth.tenant_claim),
        ] {
            if RESERVED.contains(&claim.as_str()) {
                problems.push(format!("{key} = {claim:?}: a registered claim cannot carry roles or a tenant in the façade's tokens"));
            }
        }
    }

    fn validate_auth(&self, problems: &mut Vec<String>) {
        let auth = &self.auth;
        let mut seen = Vec::new();
        for (index, rule) in auth.rules.iter().enumerate() {
            match rule.to_rule() {
                Err(errors) => {
                    for error in errors.errors() {
                        problems.push(format!(
                            "auth.rules[{index}].{}: {}",
                            error.field, error.message
                        ));
                    }
                }
                Ok(parsed) if seen.contains(&parsed.id) => problems.push(format!(
                    "auth.rules[{index}]: repeats an earlier rule (same role, actions and patterns)"
                )),
                Ok(parsed) => seen.push(parsed.id),
            }
        }
        let url_ok = |value: &str| {
            url::Url::parse(value)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        };
        // Keys fetched over plain HTTP could be swapped by anyone on the path, who could
        // then mint any token: https, except on this machine.
        let key_url_ok = |value: &str| {
            url::Url::parse(value).is_ok_and(|u| {
                u.scheme() == "https"
                    || (u.scheme() == "http"
                        && matches!(
                            u.host(),
                            Some(url::Host::Domain("localhost"))
                                | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
                                | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
                        ))
            })
        };
        match auth.provider {
            AuthProvider::None => {
                let loopback = self.http.host == "localhost"
                    || self
                        .http
                        .host
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !loopback && !self.http.insecure {
                    problems.push(format!(
                        "http.host = {:?} exposes the gateway beyond this machine without authentication: configure [auth] (see docs/auth.md), or start with --insecure (http.insecure = true) to accept that anyone who reaches the port can call every upstream and change the registry",
                        self.http.host
                    ));
                }
            }
            AuthProvider::Oidc => {
                match &auth.issuer {
                    Some(issuer) if key_url_ok(issuer) => {}
                    Some(issuer) => problems.push(format!(
                        "auth.issuer = {issuer:?}: must be an https URL (http only for localhost)"
                    )),
                    None => problems.push("auth.issuer: required with provider = \"oidc\"".into()),
                }
                if auth.audiences.is_empty() {
                    problems.push(
                        "auth.audiences: at least one audience is required (the gateway's resource URL or API identifier), so tokens minted for other APIs are refused"
                            .into(),
                    );
                }
                if let Some(uri) = auth.jwks_uri.as_deref().filter(|u| !key_url_ok(u)) {
                    problems.push(format!(
                        "auth.jwks_uri = {uri:?}: must be an https URL (http only for localhost)"
                    ));
                }
            }
            AuthProvider::Entra => {
                for (key, value) in [
                    ("auth.tenant_id", &auth.tenant_id),
                    ("auth.client_id", &auth.client_id),
                ] {
                    let valid = value.as_deref().is_some_and(|v| {
                        !v.is_empty()
                            && v.chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                    });
                    if !valid {
                        problems.push(format!("{key}: required with provider = \"entra\" (the id from the app registration)"));
                    }
                }
                if matches!(auth.tenant_id.as_deref(), Some("organizations" | "common"))
                    && auth.allowed_tenants.is_empty()
                {
                    problems.push(
                        "auth.allowed_tenants: a multi-tenant app must list the tenants it accepts"
                            .into(),
                    );
                }
            }
        }
        if let Some(url) = auth.public_url.as_deref().filter(|u| !url_ok(u)) {
            problems.push(format!(
                "auth.public_url = {url:?}: must be an http(s) URL such as https://gateway.example.com"
            ));
        }
        for digest in &auth.admin_api_key_sha256 {
            if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
                problems.push("auth.admin_api_key_sha256: each entry must be 64 hex digits (sha256sum of the key)".into());
            }
        }
        self.validate_facade(problems, &key_url_ok);
        if auth.leeway_secs > 600 {
            problems.push(format!(
                "auth.leeway_secs = {}: must be at most 600",
                auth.leeway_secs
            ));
        }
    }

    /// The database backend the URL selects (valid after `load`).
    pub fn backend(&self) -> Backend {
        Backend::from_url(&self.database.url).unwrap_or(Backend::Sqlite)
    }

    /// Whether `serve` applies pending migrations itself.
    pub fn auto_migrate(&self) -> bool {
        self.database
            .auto_migrate
            .unwrap_or(self.backend() == Backend::Sqlite)
    }

    /// Pool settings for the persistence adapter.
    pub fn connect_settings(&self) -> ConnectSettings {
        ConnectSettings {
            url: self.database.url.clone(),
            max_connections: self.database.max_connections,
            min_connections: self.database.min_connections,
            connect_timeout: Duration::from_secs(self.database.connect_timeout_secs),
            acquire_timeout: Duration::from_secs(self.database.acquire_timeout_secs),
            secrets: match &self.secrets.key {
                Some(key) => SecretKeys::Configured {
                    current: key.clone(),
                    previous: self.secrets.previous_keys.clone(),
                },
                None => SecretKeys::File {
                    path: self.key_file(),
                    previous: self.secrets.previous_keys.clone(),
                },
            },
        }
    }

    /// The key file: configured, else beside the SQLite file, else `data/secret.key`.
    pub fn key_file(&self) -> PathBuf {
        if let Some(path) = &self.secrets.key_file {
            return path.clone();
        }
        let sqlite_file = self
            .database
            .url
            .strip_prefix("sqlite://")
            .map(|rest| rest.split('?').next().unwrap_or_default())
            .filter(|path| !path.is_empty() && !path.starts_with(':'));
        match sqlite_file.and_then(|file| Path::new(file).parent()) {
            Some(dir) => dir.join("secret.key"),
            None => PathBuf::from("data/secret.key"),
        }
    }

    /// The settings as TOML with secrets (the database password) redacted, for
    /// `check-config`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database.url = redact_url(&shown.database.url);
        let hidden = "********".to_owned();
        if shown.secrets.key.is_some() {
            shown.secrets.key = Some(hidden.clone());
        }
        for key in &mut shown.secrets.previous_keys {
            *key = hidden.clone();
        }
        if let Some(url) = &shown.registry_sync.url {
            shown.registry_sync.url = Some(redact_url(url));
        }
        if shown.registry_sync.token.is_some() {
            shown.registry_sync.token = Some(hidden.clone());
        }
        if let Some(url) = &shown.cluster.redis_url {
            shown.cluster.redis_url = Some(redact_url(url));
        }
        if let Some(url) = &shown.rate_limits.redis_url {
            shown.rate_limits.redis_url = Some(redact_url(url));
        }
        if shown.cluster.session_key.is_some() {
            shown.cluster.session_key = Some(hidden.clone());
        }
        for key in &mut shown.cluster.previous_session_keys {
            *key = hidden.clone();
        }
        toml_string(&shown)
    }
}

/// A session key's 32 bytes, if `text` is base64 of exactly that many.
pub fn decode_session_key(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .filter(|bytes| bytes.len() == 32)
}

fn toml_string(settings: &Settings) -> String {
    // Unset optional keys are omitted, so the output is a valid config file.
    toml::to_string_pretty(settings)
        .unwrap_or_else(|error| format!("# cannot render settings: {error}\n"))
}

fn describe_figment_error(error: &figment::Error) -> String {
    let key = error.path.join(".");
    let source = error
        .metadata
        .as_ref()
        .map(|meta| match &meta.source {
            Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
            _ => format!(" (from {})", meta.name),
        })
        .unwrap_or_default();
    if key.is_empty() {
        format!("{}{source}", error.kind)
    } else {
        format!("{key}: {}{source}", error.kind)
    }
}

/// Where `--config` points, or `MCP_GATEWAY_CONFIG`.
pub fn config_path(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os("MCP_GATEWAY_CONFIG").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use proptest::strategy::Strategy;

    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any file body, TOML or not: settings or an error naming the problem, never
        /// a panic.
        #[test]
        fn any_config_file_gets_an_answer(body in "\\PC{0,200}") {
            if let Err(error) = load_with(Some(&body), &Overrides::default()) {
                proptest::prop_assert!(!error.to_string().is_empty());
            }
        }

        /// Known keys with values of any type: the same.
        #[test]
        fn any_value_of_a_known_key_gets_an_answer(
            key in proptest::sample::select(vec![
                "http.port", "http.workers", "mcp.page_size", "mcp.separator", "mcp.default_view",
                "cors.allowed_origins", "upstreams.denied_networks", "upstreams.stdio_commands",
                "registry_sync.url", "rate_limits.failure_mode", "audit.queue_capacity",
            ]),
            value in proptest::prop_oneof![
                "\\PC{0,20}".prop_map(|s| format!("{s:?}")),
                proptest::prelude::any::<i64>().prop_map(|n| n.to_string()),
                proptest::prelude::Just("[\"a\", 1]".to_owned()),
                proptest::prelude::Just("{x = 1}".to_owned()),
            ],
        ) {
            let (section, name) = key.split_once('.').unwrap_or(("http", key));
            let body = format!("[{section}]\n{name} = {value}\n");
            let _ = load_with(Some(&body), &Overrides::default());
        }
    }

    /// Loads from an optional file body and flags, with no environment variables
    /// (the environment layer is exercised end to end through the binary).
    fn load_with(file: Option<&str>, overrides: &Overrides) -> Result<Settings, ConfigError> {
        let mut tmp = tempfile::NamedTempFile::new().expect("temp file");
        let path = file.map(|content| {
            tmp.write_all(content.as_bytes()).expect("write");
            tmp.path().to_path_buf()
        });
        Settings::load_from(
            path.as_deref(),
            overrides,
            Env::prefixed("GATEWAY_TEST_NEVER_SET_").split("__"),
        )
    }

    #[test]
    fn defaults_serve_locally_on_embedded_sqlite() {
        let settings = Settings::default();
        assert_eq!(settings.http.host, "127.0.0.1");
        assert_eq!(settings.http.port, 8000);
        assert_eq!(settings.database.url, DEFAULT_DATABASE_URL);
        assert!(settings.auto_migrate());
        assert!(!settings.upstreams.allow_stdio);
        settings.validate().expect("defaults are valid");
    }

    #[test]
    fn every_facade_setting_is_validated() {
        let base = "[auth]\nprovider = \"oidc\"\nissuer = \"https://idp.example.com\"\naudiences = [\"gw\"]\n";
        let good = format!(
            "{base}public_url = \"https://gw.example.com\"\n[auth.facade]\nenabled = true\nclient_id = \"gw\"\nclient_secret = \"s\"\n"
        );
        let settings = load_with(Some(&good), &Overrides::default()).expect("valid");
        assert!(settings.auth.facade.enabled);
        assert!(
            !format!("{:?}", settings.auth.facade).contains("\"s\""),
            "the secret is never printed"
        );
        for (fragment, key) in [
            ("client_secret = \"s\"\n", "auth.facade.client_secret"),
            ("client_id = \"gw\"\n", "auth.facade.client_id"),
            (
                "access_token_ttl_secs = 5\n",
                "auth.facade.access_token_ttl_secs",
            ),
            (
                "signing_key_rotation_days = 0\n",
                "auth.facade.signing_key_rotation_days",
            ),
            ("redirect_uris = []\n", "auth.facade.redirect_uris"),
            (
                "client_metadata_networks = [\"nonsense\"]\n",
                "auth.facade.client_metadata_networks",
            ),
            ("scopes = [\"two words\"]\n", "auth.facade.scopes"),
            ("client_certificate_path = \"/x.pem\"\n", "auth.facade"),
        ] {
            let broken = match fragment {
                "client_secret = \"s\"\n" | "client_id = \"gw\"\n" => good.replace(fragment, ""),
                _ => format!("{good}{fragment}"),
            };
            let message = load_with(Some(&broken), &Overrides::default())
                .expect_err(fragment)
                .to_string();
            assert!(message.contains(key), "{fragment}: {message}");
        }
        let no_public_url = good.replace("public_url = \"https://gw.example.com\"\n", "");
        let message = load_with(Some(&no_public_url), &Overrides::default())
            .expect_err("no public_url")
            .to_string();
        assert!(message.contains("auth.public_url"), "{message}");
        let no_provider =
            "[auth.facade]\nenabled = true\nclient_id = \"gw\"\nclient_secret = \"s\"\n";
        let message = load_with(Some(no_provider), &Overrides::default())
            .expect_err("no provider")
            .to_string();
        assert!(message.contains("auth.facade.enabled"), "{message}");
    }

    #[test]
    fn file_then_flags_override_defaults() {
        let overrides = Overrides {
            port: Some(9100),
            ..Default::default()
        };
        let settings = load_with(
            Some("[http]\nport = 9000\nhost = \"0.0.0.0\"\ninsecure = true\n"),
            &overrides,
        )
        .expect("valid");
        assert_eq!(settings.http.port, 9100, "flags win over the file");
        assert_eq!(settings.http.host, "0.0.0.0", "the file wins over defaults");
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let error = load_with(Some("[http]\nport = \"eighty\"\n"), &Overrides::default())
            .expect_err("invalid");
        let message = error.to_string();
        assert!(message.contains("http.port"), "{message}");
        assert!(
            message.contains(".tmp") || message.contains("tmp"),
            "names the file: {message}"
        );
    }

    #[test]
    fn access_rules_load_from_the_file_and_bad_ones_are_named() {
        let good = "[[auth.rules]]\nrole = \"reader\"\nactions = [\"list\", \"call\"]\npatterns = [\"docs__*\"]\n";
        let settings = load_with(Some(good), &Overrides::default()).expect("valid");
        let rule = settings.auth.rules[0].to_rule().expect("rule");
        assert!(rule.configured);
        assert_eq!(
            rule.id,
            settings.auth.rules[0].to_rule().expect("rule").id,
            "stable id"
        );
        let bad = "[[auth.rules]]\nrole = \"reader\"\nactions = [\"fly\"]\npatterns = []\n";
        let message = load_with(Some(bad), &Overrides::default())
            .expect_err("invalid")
            .to_string();
        assert!(message.contains("auth.rules[0].actions.0"), "{message}");
        assert!(message.contains("auth.rules[0].patterns"), "{message}");
        let unknown = "[[auth.rules]]\nrole = \"r\"\nactions = [\"list\"]\npatterns = [\"*\"]\nallow = true\n";
        let message = load_with(Some(unknown), &Overrides::default())
            .expect_err("unknown key")
            .to_string();
        assert!(message.contains("allow"), "{message}");
        let twice = format!("{good}{good}");
        let message = load_with(Some(&twice), &Overrides::default())
            .expect_err("duplicate")
            .to_string();
        assert!(message.contains("auth.rules[1]: repeats"), "{message}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = load_with(Some("[http]\nprot = 1\n"), &Overrides::default()).expect_err("typo");
        assert!(error.to_string().contains("prot"), "{error}");
    }

    #[test]
    fn semantic_checks_name_key_value_and_range() {
        let overrides = Overrides {
            database_url: Some("mysql://x/y".into()),
            host: Some("bad host".into()),
            ..Default::default()
        };
        let message = load_with(None, &overrides)
            .expect_err("invalid")
            .to_string();
        assert!(message.contains("database.url"), "{message}");
        assert!(message.contains("http.host = \"bad host\""), "{message}");
        let file = "[database]\nmax_connections = 0\n[http]\nmax_body_bytes = 10\n[log]\nfilter = \"[[[\"\n";
        let message = load_with(Some(file), &Overrides::default())
            .expect_err("invalid")
            .to_string();
        for key in [
            "database.max_connections = 0",
            "http.max_body_bytes = 10",
            "log.filter",
        ] {
            assert!(message.contains(key), "{key} in {message}");
        }
    }

    #[test]
    fn resilience_settings_are_range_checked() {
        let file = "[health]\ncheck_interval_ms = 50\nunhealthy_after = 0\nwhen_unavailable = \"fail-fast\"\n\
                    [circuit_breaker]\nfailure_rate = 1.5\nopen_ms = 1\n\
                    [bulkhead]\nmax_concurrent_calls = 0\nmax_queue_wait_ms = 900000\n";
        let message = load_with(Some(file), &Overrides::default())
            .expect_err("invalid")
            .to_string();
        for key in [
            "health.check_interval_ms = 50",
            "health.unhealthy_after = 0",
            "circuit_breaker.failure_rate = 1.5",
            "circuit_breaker.open_ms = 1",
            "bulkhead.max_concurrent_calls = 0",
            "bulkhead.max_queue_wait_ms = 900000",
            "health.check_timeout_ms = 5000: must not exceed health.check_interval_ms (50)",
        ] {
            assert!(message.contains(key), "{key} in {message}");
        }
        let error = load_with(
            Some("[health]\nwhen_unavailable = \"vanish\"\n[upstreams]\nload_balancing = \"random\"\n"),
            &Overrides::default(),
        )
        .expect_err("unknown variants");
        assert!(
            error.to_string().contains("health.when_unavailable"),
            "{error}"
        );
        let settings = load_with(
            Some("[health]\nwhen_unavailable = \"fail-fast\"\n[upstreams]\nload_balancing = \"least-in-flight\"\n"),
            &Overrides::default(),
        )
        .expect("valid");
        assert_eq!(settings.health.when_unavailable, WhenUnavailable::FailFast);
        assert_eq!(
            settings.upstreams.load_balancing,
            gateway_router::Balance::LeastInFlight
        );
    }

    #[test]
    fn auth_settings_are_checked() {
        let with = |file: &str| load_with(Some(file), &Overrides::default());
        let message = with("[auth]\nprovider = \"oidc\"\nissuer = \"http://idp.example\"\n")
            .expect_err("plain http issuer")
            .to_string();
        assert!(
            message.contains("auth.issuer") && message.contains("https"),
            "{message}"
        );
        assert!(message.contains("auth.audiences"), "{message}");
        with("[auth]\nprovider = \"oidc\"\nissuer = \"http://localhost:8080\"\naudiences = [\"a\"]\n")
            .expect("http on localhost");
        with(
            "[auth]\nprovider = \"oidc\"\nissuer = \"https://idp.example\"\naudiences = [\"a\"]\n",
        )
        .expect("https");
        let message = with("[auth]\nprovider = \"entra\"\ntenant_id = \"organizations\"\nadmin_api_key_sha256 = [\"xyz\"]\n")
            .expect_err("entra")
            .to_string();
        for key in [
            "auth.client_id",
            "auth.allowed_tenants",
            "auth.admin_api_key_sha256",
        ] {
            assert!(message.contains(key), "{key} in {message}");
        }
    }

    #[test]
    fn bad_cluster_settings_are_each_named_and_no_secret_is_printed() {
        let with = |file: &str| load_with(Some(file), &Overrides::default());
        let message = with(
            "[cluster]\nredis_url = \"http://u:hunter2@cache\"\nkey_prefix = \"\"\nredis_timeout_ms = 0\nsession_key = \"c2hvcnQ=\"\nprevious_session_keys = [\"!!\"]\nsession_ttl_secs = 5\ndrain_secs = 301\n",
        )
        .expect_err("every cluster key is wrong")
        .to_string();
        for key in [
            "cluster.redis_url",
            "cluster.key_prefix",
            "cluster.redis_timeout_ms",
            "cluster.session_key",
            "cluster.previous_session_keys",
            "cluster.session_ttl_secs",
            "cluster.drain_secs",
        ] {
            assert!(message.contains(key), "{key} in {message}");
        }
        assert!(!message.contains("hunter2"), "{message}");
        let unknown = with("[cluster]\nsessions_key = \"x\"\n")
            .expect_err("a misspelt key")
            .to_string();
        assert!(unknown.contains("sessions_key"), "{unknown}");
        let settings = with(&format!(
            "[cluster]\nsession_key = \"{}\"\n[rate_limits]\nredis_url = \"redis://r:6379\"\n",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
        ))
        .expect("a valid key; the link defaults to the rate limiter's Redis");
        assert_eq!(settings.cluster_redis_url(), Some("redis://r:6379"));
        assert_eq!(settings.drain(), Duration::from_secs(5));
        assert_eq!(Settings::default().drain(), Duration::ZERO);
    }

    #[test]
    fn the_shipped_example_is_valid_and_matches_the_defaults() {
        let example = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/mcp-gateway.toml.example"
        );
        let settings = Settings::load_from(
            Some(Path::new(example)),
            &Overrides::default(),
            Env::prefixed("GATEWAY_TEST_NEVER_SET_"),
        )
        .expect("example parses");
        assert_eq!(settings, Settings::default());
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let error = Settings::load(
            Some(Path::new("/nonexistent/mcp-gateway.toml")),
            &Overrides::default(),
        )
        .expect_err("missing file");
        assert!(
            error.to_string().contains("/nonexistent/mcp-gateway.toml"),
            "{error}"
        );
    }

    #[test]
    fn malformed_toml_is_reported() {
        let error =
            load_with(Some("[http\nport = 1"), &Overrides::default()).expect_err("bad toml");
        assert!(!error.to_string().is_empty());
    }

    #[test]
    fn redacted_toml_hides_the_password() {
        let mut settings = Settings::default();
        settings.database.url = "postgres://gw:s3cret@db/gateway".into();
        let text = settings.to_redacted_toml();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("[database]"), "{text}");
        let reparsed: Settings =
            toml::from_str(&text).expect("check-config output is a valid config file");
        assert_eq!(reparsed.http, settings.http);
    }
}
