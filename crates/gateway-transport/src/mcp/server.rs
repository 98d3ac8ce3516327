//! The downstream MCP server: one rmcp `ServerHandler` for `/mcp` (every enabled
//! upstream, exposed names) and `/mcp/servers/{name}` (one upstream, original names).
//! Lists are answered from the catalog snapshot; calls are forwarded to the owning
//! upstream with arguments and results untouched, while progress, logging and
//! server-to-client requests of the upstream are relayed to the calling client.

use std::time::Duration;

use tracing::Instrument;

use serde_json::Value;

use gateway_domain::{AccessRules, Action, Cursor, ServerName, UpstreamServer};
use gateway_router::snapshot::{ListKind, Route};
use rmcp::model::{
    CacheScope, CallToolRequest, CallToolRequestParams, CallToolResponse, ClientRequest,
    CompleteRequest, CompleteRequestParams, CompleteResult, ErrorCode, ErrorData, GetPromptRequest,
    GetPromptRequestParams, GetPromptResponse, Implementation, InputRequest, InputResponses,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ProgressToken, ReadResourceRequest,
    ReadResourceRequestParams, ReadResourceResponse, Reference, RequestMetaObject, ResultType,
    ServerCapabilities, ServerConfig, ServerResult, SetLevelRequestParams, SubscribeRequestParams,
    SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{RoleServer, ServerHandler};
use std::sync::Arc;

use super::monitor::{Exchange, Refusal, Verdict};
use super::runtime::{McpItem, McpRuntime, Scope, Subscriber};
use super::upstream::{
    CallEvent, ForwardedReply, ForwardedRequest, UpstreamError, never_connected,
};

/// JSON-RPC error codes of the gateway (implementation-defined range), documented
/// in `docs/mcp.md`.
pub mod codes {
    use rmcp::model::ErrorCode;

    /// The upstream could not be reached (connection refused, backoff after failures).
    pub const UPSTREAM_UNAVAILABLE: ErrorCode = ErrorCode(-32031);
    /// The upstream did not answer within the request timeout.
    pub const UPSTREAM_TIMEOUT: ErrorCode = ErrorCode(-32032);
    /// The upstream failed while serving the request (session lost, transport error).
    pub const UPSTREAM_FAILED: ErrorCode = ErrorCode(-32033);
    /// The server exists in the registry but is disabled.
    pub const SERVER_DISABLED: ErrorCode = ErrorCode(-32034);
    /// The upstream is unhealthy or its circuit is open: the call failed fast.
    pub const UPSTREAM_UNHEALTHY: ErrorCode = ErrorCode(-32035);
    /// The upstream's bulkhead stayed full for the bounded wait.
    pub const UPSTREAM_OVERLOADED: ErrorCode = ErrorCode(-32036);
    /// An operator is draining the server: it takes no new calls.
    pub const SERVER_DRAINING: ErrorCode = ErrorCode(-32037);
    /// A rate limit refused the request; `data.retryAfter` says when to retry.
    pub const RATE_LIMITED: ErrorCode = ErrorCode(-32038);
}

/// What the gateway tells clients about itself (`instructions`).
const INSTRUCTIONS: &str = "MCP Registry Gateway: the tools, prompts and resources of every registered MCP server. \
     On /mcp names carry their server (<server>__<name>); /mcp/servers/<name> serves one server as it is.";

/// The same, when the gateway's own tools are on.
const INSTRUCTIONS_WITH_GATEWAY_TOOLS: &str = "MCP Registry Gateway: the tools, prompts and resources of every registered MCP server. \
     On /mcp names carry their server (<server>__<name>); /mcp/servers/<name> serves one server as it is. \
     gateway__search_tools finds a tool by what it does (if your role may use it); gateway://servers describes the servers.";

/// How long clients may cache a list (2026-07-28 `ttlMs`); `list_changed` still
/// invalidates it at once. Private: lists will depend on the caller's roles.
const LIST_TTL_MS: u64 = 60_000;

/// Longest wait, after an answer, for notifications that preceded it.
const STRAGGLER_WAIT: Duration = Duration::from_secs(1);

/// How many `input_required` rounds one request may take before the gateway gives up.
const MAX_INPUT_ROUNDS: usize = 8;

/// The handler rmcp instantiates for each session (and each stateless request).
#[derive(Clone)]
pub struct GatewayServer {
    pub(super) runtime: Arc<McpRuntime>,
}

impl GatewayServer {
    /// A handler over the shared runtime.
    pub fn new(runtime: Arc<McpRuntime>) -> Self {
        Self { runtime }
    }
}

/// `/mcp/servers/{name}` → that server; `/mcp/views/{name}` → that view; `/mcp` →
/// the aggregate endpoint.
pub(super) fn scope_of(extensions: &rmcp::model::Extensions) -> Result<Scope, ErrorData> {
    let Some(parts) = extensions.get::<http::request::Parts>() else {
        return Ok(Scope::Aggregate);
    };
    let path = parts.uri.path();
    if let Some((_, rest)) = path.split_once("/mcp/servers/") {
        let name = rest.trim_end_matches('/');
        return ServerName::parse(name).map(Scope::Server).map_err(|_| {
            ErrorData::invalid_request(format!("`{name}` is not a server name"), None)
        });
    }
    if let Some((_, rest)) = path.split_once("/mcp/views/") {
        let name = rest.trim_end_matches('/');
        return gateway_domain::ViewName::parse(name)
            .map(Scope::View)
            .map_err(|_| ErrorData::invalid_request(format!("`{name}` is not a view name"), None));
    }
    Ok(Scope::Aggregate)
}

/// Whether the aggregate endpoint serves its compact form: `?view=compact` or
/// `?view=full` on the endpoint's URL, else the configured default.
fn compact_of(extensions: &rmcp::model::Extensions, default: bool) -> Result<bool, ErrorData> {
    let query = extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.uri.query())
        .unwrap_or_default();
    let mut compact = default;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("view", "compact")) => compact = true,
            Some(("view", "full")) => compact = false,
            Some(("view", other)) => {
                return Err(ErrorData::invalid_request(
                    format!("`view={}` is not `compact` or `full`", other.escape_debug()),
                    None,
                ));
            }
            _ => {}
        }
    }
    Ok(compact)
}

fn missing_view(view: &gateway_domain::ViewName) -> ErrorData {
    ErrorData::invalid_request(
        format!("there is no view `{view}`; see GET /api/v1/views"),
        Some(serde_json::json!({"view": view.as_str()})),
    )
}

/// A header of the HTTP request that carried the message (empty when absent).
fn header_of<'a>(extensions: &'a rmcp::model::Extensions, name: &str) -> &'a str {
    extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.headers.get(name))
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

/// What one caller may see and use.
pub(super) struct Viewer {
    /// Sees and may do everything (an admin, or authentication is off).
    pub(super) unrestricted: bool,
    roles: Vec<String>,
    tenant: Option<String>,
    rules: Arc<AccessRules>,
}

impl Viewer {
    fn unrestricted() -> Self {
        Self {
            unrestricted: true,
            roles: Vec::new(),
            tenant: None,
            rules: Arc::new(AccessRules::default()),
        }
    }

    /// Whether the caller may do `action` on item `name` of `server`: the server must
    /// be shared or of the caller's tenant, and a rule must allow it.
    /// Whether the caller may do `action` on the gateway's own item `name` (a tool, or
    /// a `gateway://` URI): access rules over `gateway__<name>`, as for any server.
    pub(super) fn may_gateway(&self, action: Action, name: &str) -> bool {
        self.unrestricted
            || self.rules.allows(
                &self.roles,
                action,
                gateway_domain::RESERVED_SERVER_NAME,
                name,
            )
    }

    pub(super) fn may(&self, action: Action, server: &UpstreamServer, name: &str) -> bool {
        if self.unrestricted {
            return true;
        }
        let tenant_ok = server
            .spec
            .tenant
            .as_ref()
            .is_none_or(|owner| self.tenant.as_deref() == Some(owner.as_str()));
        tenant_ok
            && self
                .rules
                .allows(&self.roles, action, server.spec.name.as_str(), name)
    }
}

/// The caller the auth gate admitted, carried by rmcp-actix-web from the HTTP request
/// (inside the bridged request's extensions).
fn caller_of(extensions: &rmcp::model::Extensions) -> Option<&crate::rest::auth::Caller> {
    extensions
        .get::<http::request::Parts>()?
        .extensions
        .get::<rmcp::model::Extensions>()?
        .get::<crate::rest::auth::Caller>()
}

/// The client's `Mcp-Session-Id` (subscriptions are per session).
fn session_of(extensions: &rmcp::model::Extensions) -> String {
    header_of(extensions, "mcp-session-id").to_owned()
}

fn invalid_cursor() -> ErrorData {
    ErrorData::invalid_params("cursor is not one this gateway issued", None)
}

/// Decodes a list cursor into the key after which the page starts.
fn after(params: Option<&PaginatedRequestParams>) -> Result<Option<String>, ErrorData> {
    match params.and_then(|p| p.cursor.as_deref()) {
        None | Some("") => Ok(None),
        Some(text) => {
            let cursor = Cursor::decode(text, 1).map_err(|_| invalid_cursor())?;
            Ok(cursor.key().first().cloned())
        }
    }
}

/// Drops the downstream hop's own `_meta` (progress token, protocol fields); the
/// upstream hop sets its own. Application keys pass through.
fn upstream_meta(meta: Option<RequestMetaObject>) -> Option<RequestMetaObject> {
    let mut meta = meta?;
    meta.0
        .0
        .retain(|key, _| key != "progressToken" && !key.starts_with("io.modelcontextprotocol/"));
    (!meta.0.0.is_empty()).then_some(meta)
}

fn unavailable(server: &ServerName, reason: String) -> ErrorData {
    ErrorData::new(
        codes::UPSTREAM_UNAVAILABLE,
        reason,
        Some(serde_json::json!({"server": server.as_str()})),
    )
}

fn upstream_error(error: UpstreamError) -> ErrorData {
    match &error {
        UpstreamError::Connect { server, .. } | UpstreamError::Backoff { server, .. } => {
            unavailable(server, error.to_string())
        }
        UpstreamError::Failed { server, .. } => ErrorData::new(
            codes::UPSTREAM_FAILED,
            error.to_string(),
            Some(serde_json::json!({"server": server.as_str()})),
        ),
    }
}

/// The documented error of a call refused before it reached the upstream.
fn refused(server: &ServerName, refusal: Refusal) -> ErrorData {
    match refusal {
        Refusal::Draining => ErrorData::new(
            codes::SERVER_DRAINING,
            format!("server `{server}` is being drained and takes no new calls"),
            Some(serde_json::json!({"server": server.as_str()})),
        ),
        Refusal::Unavailable {
            state,
            circuit,
            retry_in,
        } => ErrorData::new(
            codes::UPSTREAM_UNHEALTHY,
            format!("upstream `{server}` is {state} (circuit {circuit}); the call was not sent"),
            Some(serde_json::json!({
                "server": server.as_str(),
                "state": state.as_str(),
                "circuit": circuit.as_str(),
                "retryAfterMs": retry_in.as_millis(),
            })),
        ),
        Refusal::Overloaded { limit, waited } => ErrorData::new(
            codes::UPSTREAM_OVERLOADED,
            format!(
                "upstream `{server}` has {limit} calls in flight, its limit; none ended within {} ms",
                waited.as_millis()
            ),
            Some(serde_json::json!({
                "server": server.as_str(),
                "limit": limit,
                "waitedMs": waited.as_millis(),
            })),
        ),
    }
}

/// An upstream's own JSON-RPC error passes through untouched; anything else that
/// went wrong on the hop is the gateway's `UPSTREAM_FAILED`.
fn service_error(server: &ServerName, error: rmcp::ServiceError) -> ErrorData {
    match error {
        rmcp::ServiceError::McpError(data) => data,
        other => ErrorData::new(
            codes::UPSTREAM_FAILED,
            format!("upstream `{server}` failed: {other}"),
            Some(serde_json::json!({"server": server.as_str()})),
        ),
    }
}

impl GatewayServer {
    /// The routed item and its enabled server, or the documented error. An item the
    /// caller may not use gets exactly the error of an item that does not exist.
    /// `scope` is the request's [`scope_of`], parsed once by the handler.
    fn resolve(
        &self,
        kind: ListKind,
        key: &str,
        scope: &Scope,
        extensions: &rmcp::model::Extensions,
    ) -> Result<(Route, UpstreamServer), ErrorData> {
        let current = self.runtime.current();
        let what = match kind {
            ListKind::Tools => "tool",
            ListKind::Prompts => "prompt",
            ListKind::Resources | ListKind::ResourceTemplates => "resource",
        };
        let unknown = || {
            let message = format!("unknown {what} `{key}`");
            match kind {
                ListKind::Resources | ListKind::ResourceTemplates => {
                    ErrorData::resource_not_found(message, Some(serde_json::json!({"uri": key})))
                }
                _ => ErrorData::invalid_params(message, None),
            }
        };
        let route = match (kind, scope) {
            (ListKind::Resources | ListKind::ResourceTemplates, Scope::View(view)) => {
                let view = current.views.get(view).ok_or_else(|| missing_view(view))?;
                current
                    .snapshot
                    .route_resource(None, key)
                    .filter(|route| view.includes_resource(route))
            }
            (_, Scope::View(view)) => {
                let view = current.views.get(view).ok_or_else(|| missing_view(view))?;
                view.route(kind, key).map(|entry| entry.route.clone())
            }
            (ListKind::Resources | ListKind::ResourceTemplates, _) => {
                current.snapshot.route_resource(scope.server(), key)
            }
            _ => current
                .snapshot
                .route(kind, scope.server(), key)
                .map(|exposed| exposed.route.clone()),
        };
        let Some(route) = route else {
            if let Some(server) = scope.server().filter(|s| !current.snapshot.has_server(s)) {
                return Err(self.missing_server(server));
            }
            return Err(unknown());
        };
        let note = super::audit::AuditNote::of(extensions);
        if let Some(note) = note {
            note.resolved(route.server.as_str());
            if matches!(scope, Scope::View(_)) {
                // A view's alias is not what the audit should name.
                note.retarget(&super::views::item_id(&route));
            }
        }
        let server = current
            .servers
            .get(&route.server_id)
            .cloned()
            .ok_or_else(|| self.missing_server(&route.server))?;
        let action = match kind {
            ListKind::Tools => Action::Call,
            ListKind::Prompts => Action::GetPrompt,
            ListKind::Resources | ListKind::ResourceTemplates => Action::Read,
        };
        if !self
            .viewer(extensions)
            .may(action, &server, &route.original)
        {
            if let Some(note) = note {
                note.denied
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            return Err(unknown());
        }
        Ok((route, server))
    }

    /// [`GatewayServer::resolve`], then the rate limits: the budgets of the caller's
    /// tenant, subject and roles, of the server and of the item must all allow it.
    pub(super) async fn admit(
        &self,
        kind: ListKind,
        key: &str,
        scope: &Scope,
        extensions: &rmcp::model::Extensions,
    ) -> Result<(Route, UpstreamServer), ErrorData> {
        let (route, server) = self.resolve(kind, key, scope, extensions)?;
        if self.runtime.limits().is_empty() {
            return Ok((route, server));
        }
        // A resource URI's query and fragment do not make it another item (or a client
        // could mint a fresh budget per request).
        let original = match kind {
            ListKind::Resources | ListKind::ResourceTemplates => {
                route.original.split(['?', '#']).next().unwrap_or_default()
            }
            _ => route.original.as_str(),
        };
        let item = format!("{}__{original}", server.spec.name);
        self.rate_limit(server.spec.name.as_str(), &item, extensions)
            .await?;
        Ok((route, server))
    }

    /// The rate limits: the budgets of the caller's tenant, subject and roles, of
    /// the server and of the item (`<server>__<name>`) must all allow the request.
    pub(super) async fn rate_limit(
        &self,
        server: &str,
        item: &str,
        extensions: &rmcp::model::Extensions,
    ) -> Result<(), ErrorData> {
        let limits = self.runtime.limits();
        if limits.is_empty() {
            return Ok(());
        }
        let principal = match caller_of(extensions) {
            Some(crate::rest::auth::Caller::Token(principal)) => Some(principal),
            _ => None,
        };
        let budgets = limits.budgets(&gateway_domain::LimitSubject {
            tenant: principal.map(|p| p.tenant.as_deref().unwrap_or("")),
            principal: principal.map(|p| p.subject.as_str()),
            roles: principal.map(|p| p.roles.as_slice()).unwrap_or_default(),
            server,
            item,
        });
        let decision = self.runtime.settings.limiter.0.acquire(&budgets).await;
        let gateway_domain::RateDecision::Limited {
            scope,
            quota,
            retry_after,
        } = decision
        else {
            return Ok(());
        };
        self.runtime
            .metrics
            .rate_limited
            .with_label_values(&[scope.as_str()])
            .inc();
        let retry_ms = u64::try_from(retry_after.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Err(ErrorData::new(
            codes::RATE_LIMITED,
            format!(
                "rate limit reached ({scope} budget: {} per {} s, bursts of {}); retry in {retry_ms} ms",
                quota.rate, quota.period_secs, quota.burst
            ),
            Some(serde_json::json!({
                "scope": scope.as_str(),
                "retryAfter": retry_ms as f64 / 1000.0,
                "retryAfterMs": retry_ms,
                "limit": {"rate": quota.rate, "periodSecs": quota.period_secs, "burst": quota.burst},
            })),
        ))
    }

    /// What the calling principal may see and use (everything without authentication,
    /// for an admin role or for the admin API key; nothing for no principal).
    pub(super) fn viewer(&self, extensions: &rmcp::model::Extensions) -> Viewer {
        let Some(_) = &self.runtime.settings.admin_roles else {
            return Viewer::unrestricted();
        };
        match caller_of(extensions) {
            Some(crate::rest::auth::Caller::ApiKey) => Viewer::unrestricted(),
            Some(crate::rest::auth::Caller::Token(principal)) => {
                let rules = self.runtime.access();
                if rules.is_admin(&principal.roles) {
                    return Viewer::unrestricted();
                }
                Viewer {
                    unrestricted: false,
                    roles: principal.roles.clone(),
                    tenant: principal.tenant.clone(),
                    rules,
                }
            }
            None => Viewer {
                unrestricted: false,
                roles: Vec::new(),
                tenant: None,
                rules: self.runtime.access(),
            },
        }
    }

    fn missing_server(&self, server: &ServerName) -> ErrorData {
        ErrorData::new(
            codes::SERVER_DISABLED,
            format!("server `{server}` is not registered or is disabled"),
            Some(serde_json::json!({"server": server.as_str()})),
        )
    }

    /// Forwards one request (see [`GatewayServer::forward_once`]) inside an
    /// `mcp_request` span naming the request id, the client's session, the server and
    /// the tool, and records it in the metrics.
    async fn forward(
        &self,
        server: &UpstreamServer,
        request: ClientRequest,
        ctx: &RequestContext<RoleServer>,
        pin: &mut Option<usize>,
    ) -> Result<ServerResult, ErrorData> {
        let method = request.method().to_owned();
        let target = match &request {
            ClientRequest::CallToolRequest(call) => call.params.name.to_string(),
            ClientRequest::GetPromptRequest(get) => get.params.name.clone(),
            _ => String::new(),
        };
        let principal = match caller_of(&ctx.extensions) {
            Some(crate::rest::auth::Caller::Token(principal)) => principal.subject.as_str(),
            Some(crate::rest::auth::Caller::ApiKey) => "admin-api-key",
            None => "",
        };
        let span = tracing::info_span!(
            "mcp_request",
            request_id = %header_of(&ctx.extensions, "x-request-id"),
            session_id = %header_of(&ctx.extensions, "mcp-session-id"),
            principal = %principal,
            method = %method,
            server = %server.spec.name,
            tool = %target,
        );
        let started = std::time::Instant::now();
        let (result, outcome) = self
            .forward_once(server, request, ctx, pin)
            .instrument(span.clone())
            .await;
        let elapsed = started.elapsed();
        let metrics = &self.runtime.metrics;
        let name = server.spec.name.as_str();
        metrics.record_mcp(&method, name, &target, outcome, elapsed.as_secs_f64());
        if outcome != "cancelled" {
            let answered = matches!(outcome, "ok" | "error");
            metrics.calls.record(name, answered, elapsed);
        }
        span.in_scope(|| {
            tracing::debug!(
                outcome,
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                "mcp request forwarded"
            );
        });
        result
    }

    /// Forwards one request and relays what the upstream sends meanwhile, until the
    /// answer, the timeout or the client's cancellation. The monitor admits the call
    /// (drain, health, breaker, bulkhead) and picks the endpoint; a call that could
    /// not be sent because the endpoint is unreachable fails over to the next one.
    /// `pin` keeps the rounds of one bridged request on one endpoint. Returns the
    /// outcome label of the metrics beside the result.
    async fn forward_once(
        &self,
        server: &UpstreamServer,
        request: ClientRequest,
        ctx: &RequestContext<RoleServer>,
        pin: &mut Option<usize>,
    ) -> (Result<ServerResult, ErrorData>, &'static str) {
        let name = &server.spec.name;
        let timeout = server
            .spec
            .request_timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.runtime.settings.request_timeout);
        let endpoints = server.spec.transport.endpoint_count();
        let monitor = &self.runtime.monitor;
        let mut tried = Vec::new();
        let mut request = Some(request);
        let client_token = ctx.meta.get_progress_token();
        let deadline_at = tokio::time::Instant::now() + timeout;
        loop {
            // Waiting for a bulkhead slot ends with the client's interest.
            let admission = tokio::select! {
                biased;
                _ = ctx.ct.cancelled() => {
                    return (Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "cancelled by the client", None)), "cancelled");
                }
                admission = monitor.admit(server, *pin, &tried, deadline_at) => admission,
            };
            let lease = match admission {
                Ok(lease) => lease,
                Err(refusal) => {
                    let reason = refusal.label();
                    self.runtime
                        .metrics
                        .upstream_rejections
                        .with_label_values(&[name.as_str(), reason])
                        .inc();
                    return (Err(refused(name, refusal)), reason);
                }
            };
            let endpoint = lease.endpoint;
            let can_fail_over = pin.is_none() && tried.len() + 1 < endpoints;
            // A copy only when another endpoint could still take the call.
            let outgoing = if can_fail_over {
                request.clone()
            } else {
                request.take()
            };
            let Some(outgoing) = outgoing else {
                return (
                    Err(unavailable(name, "no endpoint left".to_owned())),
                    "unavailable",
                );
            };
            let span = tracing::info_span!("upstream_call", server = %name, endpoint);
            let sending = self.runtime.pool.start(server, endpoint, outgoing);
            let mut pending = match sending.instrument(span.clone()).await {
                Ok(pending) => pending,
                Err(error) => {
                    // In backoff nothing was attempted: no verdict, the failure that
                    // started the backoff was counted already.
                    if matches!(error, UpstreamError::Backoff { .. }) {
                        drop(lease);
                    } else {
                        lease.finish(&Verdict::Failed(error.to_string()));
                    }
                    let not_sent = matches!(
                        error,
                        UpstreamError::Connect { .. } | UpstreamError::Backoff { .. }
                    );
                    if not_sent && can_fail_over {
                        tracing::info!(server = %name, endpoint, %error, "endpoint unreachable; failing over");
                        tried.push(endpoint);
                        continue;
                    }
                    return (Err(upstream_error(error)), "unavailable");
                }
            };
            let deadline = tokio::time::sleep_until(deadline_at);
            tokio::pin!(deadline);
            let outcome = loop {
                tokio::select! {
                    biased;
                    _ = ctx.ct.cancelled() => {
                        pending.cancel("the client cancelled the request").await;
                        drop(lease);
                        return (Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "cancelled by the client", None)), "cancelled");
                    }
                    _ = &mut deadline => {
                        pending.cancel("the gateway's request timeout expired").await;
                        lease.finish(&Verdict::TimedOut(format!("no answer within {} ms", timeout.as_millis())));
                        return (Err(ErrorData::new(
                            codes::UPSTREAM_TIMEOUT,
                            format!("upstream `{name}` did not answer within {} ms", timeout.as_millis()),
                            Some(serde_json::json!({"server": name.as_str(), "timeoutMs": timeout.as_millis()})),
                        )), "timeout");
                    }
                    Some(event) = pending.events.recv() => {
                        pending.consumed(&event);
                        // A client that never answers a relayed request cannot outlast the timeout.
                        let _ = tokio::time::timeout_at(deadline_at, relay(event, ctx, client_token.as_ref())).await;
                    }
                    result = &mut pending.response => break result,
                }
            };
            // The HTTP transport sends in the background: a refused connection shows up
            // as the answer. Nothing reached the upstream, so another endpoint may try.
            if let Err(error) = &outcome
                && can_fail_over
                && never_connected(error)
            {
                lease.finish(&Verdict::Failed(error.to_string()));
                span.in_scope(|| tracing::info!(server = %name, endpoint, %error, "endpoint unreachable; failing over"));
                tried.push(endpoint);
                continue;
            }
            *pin = Some(endpoint);
            // Notifications the upstream sent before its answer are relayed before it.
            let straggler_deadline = tokio::time::Instant::now() + STRAGGLER_WAIT;
            while pending.undelivered() > 0 {
                match tokio::time::timeout_at(straggler_deadline, pending.events.recv()).await {
                    Ok(Some(event)) => {
                        pending.consumed(&event);
                        relay(event, ctx, client_token.as_ref()).await;
                    }
                    _ => break,
                }
            }
            while let Ok(event) = pending.events.try_recv() {
                relay(event, ctx, client_token.as_ref()).await;
            }
            let (verdict, label) = match &outcome {
                Ok(_) => (Verdict::Answered, "ok"),
                Err(rmcp::ServiceError::McpError(_)) => (Verdict::Answered, "error"),
                Err(error) => (Verdict::Failed(error.to_string()), "failed"),
            };
            lease.finish(&verdict);
            return (outcome.map_err(|error| service_error(name, error)), label);
        }
    }

    /// Starts a request on `server` (refused while it is drained), counted in flight
    /// until the guard drops.
    fn begin(&self, server: &UpstreamServer) -> Result<Exchange, ErrorData> {
        self.runtime.monitor.begin(server).map_err(|refusal| {
            self.runtime
                .metrics
                .upstream_rejections
                .with_label_values(&[server.spec.name.as_str(), refusal.label()])
                .inc();
            refused(&server.spec.name, refusal)
        })
    }

    /// Forwards a request that may come back `input_required` (an upstream on the
    /// 2026-07-28 revision asking for sampling, elicitation or roots). A 2026-era
    /// client gets that result as it is and retries itself; a session-era client
    /// cannot, so the gateway asks it through the session-era server-to-client
    /// requests and retries the upstream with the answers.
    async fn forward_bridged<P: Retryable>(
        &self,
        server: &UpstreamServer,
        ctx: &RequestContext<RoleServer>,
        mut params: P,
    ) -> Result<ServerResult, ErrorData> {
        let _exchange = self.begin(server)?;
        let client_is_modern = ctx
            .protocol_version()
            .is_some_and(|version| !version.has_initialize());
        let (mut responses, mut state) = params.take_input();
        // Every round goes to the endpoint of the first: its request state is its own.
        let mut pin = None;
        for _ in 0..MAX_INPUT_ROUNDS {
            let request = params
                .clone()
                .with_input(responses.take(), state.take())
                .into_request();
            let result = self.forward(server, request, ctx, &mut pin).await?;
            let ServerResult::InputRequiredResult(required) = result else {
                return Ok(result);
            };
            if client_is_modern {
                return Ok(ServerResult::InputRequiredResult(required));
            }
            let mut answers = InputResponses::new();
            for (key, request) in required.input_requests.unwrap_or_default() {
                answers.insert(key, ask_client(ctx, request).await?);
            }
            responses = Some(answers);
            state = required.request_state;
        }
        Err(ErrorData::new(
            codes::UPSTREAM_FAILED,
            format!(
                "upstream `{}` asked for input more than {MAX_INPUT_ROUNDS} times",
                server.spec.name
            ),
            Some(serde_json::json!({"server": server.spec.name.as_str()})),
        ))
    }

    /// One page of a listing, counted in `mcp_requests_total` (server label: the
    /// scoped server, empty on the aggregate endpoint).
    fn page<R>(
        &self,
        kind: ListKind,
        request: Option<&PaginatedRequestParams>,
        ctx: &RequestContext<RoleServer>,
        pick: impl Fn(&McpItem) -> Option<R>,
    ) -> Result<(Vec<R>, Option<String>), ErrorData> {
        let started = std::time::Instant::now();
        let scope = scope_of(&ctx.extensions);
        let method = match kind {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
        };
        let viewer = self.viewer(&ctx.extensions);
        let page = scope.clone().and_then(|scope| {
            let compact = match scope {
                Scope::Aggregate => {
                    compact_of(&ctx.extensions, self.runtime.settings.compact_by_default)?
                }
                _ => false,
            };
            self.page_of(kind, scope, compact, request, &viewer, pick)
        });
        let outcome = if page.is_ok() { "ok" } else { "error" };
        // A name only once it proved to be a registered server: clients choose paths.
        let server = match (&scope, &page) {
            (Ok(Scope::Server(name)), Ok(_)) => name.as_str(),
            _ => "",
        };
        self.runtime.metrics.record_mcp(
            method,
            server,
            "",
            outcome,
            started.elapsed().as_secs_f64(),
        );
        page
    }

    fn page_of<R>(
        &self,
        kind: ListKind,
        scope: Scope,
        compact: bool,
        request: Option<&PaginatedRequestParams>,
        viewer: &Viewer,
        pick: impl Fn(&McpItem) -> Option<R>,
    ) -> Result<(Vec<R>, Option<String>), ErrorData> {
        let current = self.runtime.current();
        let after = after(request)?;
        let limit = self.runtime.settings.page_size;
        let listable = |route: &Route| {
            viewer.unrestricted
                || current
                    .servers
                    .get(&route.server_id)
                    .is_some_and(|server| viewer.may(Action::List, server, &route.original))
        };
        // What the caller may not list is skipped, and a page is filled with what it
        // may: the cursor only ever names an item the caller was shown.
        match &scope {
            Scope::View(name) => {
                let view = current.views.get(name).ok_or_else(|| missing_view(name))?;
                let (rest, _) = view.page(kind, after.as_deref(), usize::MAX);
                let entries = rest
                    .iter()
                    .map(|e| (e.key.as_str(), listable(&e.route), &e.item));
                Ok(fill_page(entries, limit, pick))
            }
            Scope::Aggregate if compact && kind == ListKind::Tools => {
                // Three tools reach the whole catalog; nothing to page.
                let tools = self.gateway_tools(viewer, true);
                Ok((tools.iter().filter_map(pick).collect(), None))
            }
            _ => {
                if let Some(server) = scope.server().filter(|s| !current.snapshot.has_server(s)) {
                    return Err(self.missing_server(server));
                }
                let (rest, _) =
                    current
                        .snapshot
                        .page(kind, scope.server(), after.as_deref(), usize::MAX);
                // The gateway's own items take their sorted place in `/mcp`'s listing.
                let mut own = match scope {
                    Scope::Aggregate if kind == ListKind::Tools => {
                        self.gateway_tools(viewer, false)
                    }
                    Scope::Aggregate => self.gateway_listing(kind, viewer),
                    _ => Vec::new(),
                };
                own.retain(|item| after.as_deref().is_none_or(|a| item.key() > a));
                own.sort_by(|a, b| a.key().cmp(b.key()));
                let upstream = rest
                    .iter()
                    .map(|e| (e.key.as_str(), listable(&e.route), &e.item));
                let own = own.iter().map(|item| (item.key(), true, item));
                Ok(fill_page(merge_sorted(upstream, own), limit, pick))
            }
        }
    }
}

/// One page of a listing: the first `limit` visible entries, and the cursor after the
/// last of them when another visible entry follows.
fn fill_page<'a, R>(
    entries: impl Iterator<Item = (&'a str, bool, &'a McpItem)>,
    limit: usize,
    pick: impl Fn(&McpItem) -> Option<R>,
) -> (Vec<R>, Option<String>) {
    let mut page = Vec::new();
    let mut last = None;
    for (key, _, item) in entries.filter(|(_, visible, _)| *visible) {
        if page.len() == limit {
            return (
                page,
                last.map(|key: &str| Cursor::after(vec![key.to_owned()]).encode()),
            );
        }
        if let Some(picked) = pick(item) {
            page.push(picked);
            last = Some(key);
        }
    }
    (page, None)
}

/// Merges two iterators sorted by key into one sorted by key.
fn merge_sorted<'a, T: Copy>(
    left: impl Iterator<Item = (&'a str, bool, T)>,
    right: impl Iterator<Item = (&'a str, bool, T)>,
) -> impl Iterator<Item = (&'a str, bool, T)> {
    let (mut left, mut right) = (left.peekable(), right.peekable());
    std::iter::from_fn(move || match (left.peek(), right.peek()) {
        (Some(l), Some(r)) if r.0 < l.0 => right.next(),
        (Some(_), _) => left.next(),
        (None, _) => right.next(),
    })
}

/// Asks a session-era client what an upstream's `input_required` result needs.
async fn ask_client(
    ctx: &RequestContext<RoleServer>,
    request: InputRequest,
) -> Result<Value, ErrorData> {
    let answer = match request {
        InputRequest::CreateMessage(request) => ctx
            .peer
            .create_message(request.params)
            .await
            .map(serde_json::to_value),
        InputRequest::Elicitation(request) => ctx
            .peer
            .create_elicitation(request.params)
            .await
            .map(serde_json::to_value),
        InputRequest::ListRoots(_) => ctx.peer.list_roots().await.map(serde_json::to_value),
        _ => {
            return Err(ErrorData::invalid_request(
                "the upstream asked for an input this gateway cannot relay",
                None,
            ));
        }
    };
    match answer {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(ErrorData::internal_error(
            format!("cannot encode the client's answer: {error}"),
            None,
        )),
        Err(rmcp::ServiceError::McpError(error)) => Err(error),
        Err(other) => Err(ErrorData::internal_error(
            format!("the client could not answer: {other}"),
            None,
        )),
    }
}

async fn relay(
    event: CallEvent,
    ctx: &RequestContext<RoleServer>,
    client_token: Option<&ProgressToken>,
) {
    let peer = &ctx.peer;
    match event {
        CallEvent::Progress(progress) => {
            if let Some(token) = client_token {
                let mut forwarded =
                    ProgressNotificationParam::new(token.clone(), progress.progress);
                forwarded.total = progress.total;
                forwarded.message = progress.message;
                let _ = peer.notify_progress(forwarded).await;
            }
        }
        CallEvent::Log(message) => {
            let _ = peer.notify_logging_message(message).await;
        }
        CallEvent::Request(request, reply) => {
            let answer = match request {
                ForwardedRequest::Sampling(params) => peer
                    .create_message(params)
                    .await
                    .map(ForwardedReply::Sampling),
                ForwardedRequest::Elicitation(params) => peer
                    .create_elicitation(params)
                    .await
                    .map(ForwardedReply::Elicitation),
                ForwardedRequest::Roots => peer.list_roots().await.map(ForwardedReply::Roots),
            };
            let _ = reply.send(answer.map_err(|error| match error {
                rmcp::ServiceError::McpError(data) => data,
                other => {
                    ErrorData::internal_error(format!("the client could not answer: {other}"), None)
                }
            }));
        }
    }
}

/// A request an upstream may answer `input_required` and that is then retried with
/// the client's answers: `tools/call`, `prompts/get`, `resources/read`.
trait Retryable: Clone {
    /// Moves the retry inputs out (they belong to the downstream round, if any).
    fn take_input(&mut self) -> (Option<InputResponses>, Option<String>);
    /// Sets the inputs of a retry.
    fn with_input(self, responses: Option<InputResponses>, state: Option<String>) -> Self;
    /// The upstream request.
    fn into_request(self) -> ClientRequest;
}

macro_rules! retryable {
    ($params:ty, $request:ident) => {
        impl Retryable for $params {
            fn take_input(&mut self) -> (Option<InputResponses>, Option<String>) {
                (self.input_responses.take(), self.request_state.take())
            }

            fn with_input(
                mut self,
                responses: Option<InputResponses>,
                state: Option<String>,
            ) -> Self {
                self.input_responses = responses;
                self.request_state = state;
                self
            }

            fn into_request(self) -> ClientRequest {
                ClientRequest::$request($request::new(self))
            }
        }
    };
}

retryable!(CallToolRequestParams, CallToolRequest);

/// A `tools/call` on its way upstream, and whether its tool wants arguments as
/// headers (then it is not sent directly to a 2026-07-28 upstream, see `direct`).
#[derive(Clone)]
struct ToolCall {
    params: CallToolRequestParams,
    header_arguments: bool,
}

impl Retryable for ToolCall {
    fn take_input(&mut self) -> (Option<InputResponses>, Option<String>) {
        self.params.take_input()
    }

    fn with_input(mut self, responses: Option<InputResponses>, state: Option<String>) -> Self {
        self.params = self.params.with_input(responses, state);
        self
    }

    fn into_request(self) -> ClientRequest {
        let mut request = CallToolRequest::new(self.params);
        if self.header_arguments {
            request.extensions.insert(super::direct::HeaderArguments);
        }
        ClientRequest::CallToolRequest(request)
    }
}
retryable!(GetPromptRequestParams, GetPromptRequest);
retryable!(ReadResourceRequestParams, ReadResourceRequest);

/// One page of a listing as the wire type of its kind, with the 2026-07-28 cache
/// hints; the four `*/list` handlers differ only in kind and types.
macro_rules! list_page {
    ($self:ident, $kind:expr, $request:ident, $ctx:ident, $variant:ident, $result:ident) => {{
        let (items, next) = $self.page($kind, $request.as_ref(), &$ctx, |item| match item {
            McpItem::$variant(item) => Some(item.clone()),
            _ => None,
        })?;
        let mut result = $result::with_all_items(items);
        result.next_cursor = next;
        result.ttl_ms = Some(LIST_TTL_MS);
        result.cache_scope = Some(CacheScope::Private);
        Ok(result)
    }};
}

impl ServerHandler for GatewayServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_logging()
            .enable_completions()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "mcp-gateway",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(if self.runtime.settings.gateway_tools {
                INSTRUCTIONS_WITH_GATEWAY_TOOLS
            } else {
                INSTRUCTIONS
            })
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        list_page!(self, ListKind::Tools, request, ctx, Tool, ListToolsResult)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let scope = scope_of(&ctx.extensions)?;
        if scope == Scope::Aggregate
            && let Some(tool) = self.gateway_tool(&request.name)
        {
            return self.call_gateway(tool, request, ctx).await;
        }
        let (route, server) = self
            .admit(ListKind::Tools, &request.name, &scope, &ctx.extensions)
            .await?;
        self.send_tool(route, &server, request, ctx).await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        list_page!(
            self,
            ListKind::Prompts,
            request,
            ctx,
            Prompt,
            ListPromptsResult
        )
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let scope = scope_of(&ctx.extensions)?;
        let (route, server) = self
            .admit(ListKind::Prompts, &request.name, &scope, &ctx.extensions)
            .await?;
        let mut upstream = request;
        upstream.name = route.original;
        upstream.meta = upstream_meta(upstream.meta.take());
        match self.forward_bridged(&server, &ctx, upstream).await? {
            ServerResult::GetPromptResult(mut result) => {
                result.result_type.get_or_insert(ResultType::COMPLETE);
                Ok(GetPromptResponse::Complete(result))
            }
            ServerResult::InputRequiredResult(result) => {
                Ok(GetPromptResponse::InputRequired(result))
            }
            other => Err(unexpected(&server.spec.name, &other)),
        }
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        list_page!(
            self,
            ListKind::Resources,
            request,
            ctx,
            Resource,
            ListResourcesResult
        )
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        list_page!(
            self,
            ListKind::ResourceTemplates,
            request,
            ctx,
            Template,
            ListResourceTemplatesResult
        )
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let scope = scope_of(&ctx.extensions)?;
        if scope == Scope::Aggregate && super::gateway::is_gateway_uri(&request.uri) {
            return self
                .read_gateway_resource(&request.uri, &ctx.extensions)
                .await
                .map(ReadResourceResponse::Complete);
        }
        let (route, server) = self
            .admit(ListKind::Resources, &request.uri, &scope, &ctx.extensions)
            .await?;
        let exposed_uri = request.uri.clone();
        let mut upstream = request;
        upstream.uri = route.original.clone();
        upstream.meta = upstream_meta(upstream.meta.take());
        match self.forward_bridged(&server, &ctx, upstream).await? {
            ServerResult::ReadResourceResult(mut result) => {
                result.result_type.get_or_insert(ResultType::COMPLETE);
                result.ttl_ms.get_or_insert(0);
                result.cache_scope.get_or_insert(CacheScope::Private);
                // Contents name the URI the client asked for, so it can match them up.
                if scope.server().is_none() {
                    for content in &mut result.contents {
                        rename_content_uri(content, &route.original, &exposed_uri);
                    }
                }
                Ok(ReadResourceResponse::Complete(result))
            }
            ServerResult::InputRequiredResult(result) => {
                Ok(ReadResourceResponse::InputRequired(result))
            }
            other => Err(unexpected(&server.spec.name, &other)),
        }
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let scope = scope_of(&ctx.extensions)?;
        let mut upstream = request;
        let (route, server) = match &mut upstream.r#ref {
            Reference::Prompt(prompt) => {
                let (route, server) = self
                    .admit(ListKind::Prompts, &prompt.name, &scope, &ctx.extensions)
                    .await?;
                prompt.name = route.original.clone();
                (route, server)
            }
            Reference::Resource(resource) => {
                let (route, server) = self
                    .admit(
                        ListKind::ResourceTemplates,
                        &resource.uri,
                        &scope,
                        &ctx.extensions,
                    )
                    .await?;
                resource.uri = route.original.clone();
                (route, server)
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    "unsupported completion reference",
                    None,
                ));
            }
        };
        let _ = route;
        upstream.meta = upstream_meta(upstream.meta.take());
        let _exchange = self.begin(&server)?;
        match self
            .forward(
                &server,
                ClientRequest::CompleteRequest(CompleteRequest::new(upstream)),
                &ctx,
                &mut None,
            )
            .await?
        {
            ServerResult::CompleteResult(mut result) => {
                result.result_type.get_or_insert(ResultType::COMPLETE);
                Ok(result)
            }
            other => Err(unexpected(&server.spec.name, &other)),
        }
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let scope = scope_of(&ctx.extensions)?;
        if scope == Scope::Aggregate && super::gateway::is_gateway_uri(&request.uri) {
            let Some(watched) = self
                .gateway_resource_watched(&request.uri, &ctx.extensions)
                .await
            else {
                return Err(ErrorData::resource_not_found(
                    format!("unknown resource `{}`", request.uri),
                    Some(serde_json::json!({"uri": request.uri})),
                ));
            };
            let subscriber = Subscriber {
                session: session_of(&ctx.extensions),
                peer: ctx.peer.clone(),
                exposed_uri: request.uri.clone(),
            };
            self.runtime.watch_gateway_resource(&watched, subscriber);
            return Ok(());
        }
        let (route, server) =
            self.resolve(ListKind::Resources, &request.uri, &scope, &ctx.extensions)?;
        let subscriber = Subscriber {
            session: session_of(&ctx.extensions),
            peer: ctx.peer.clone(),
            exposed_uri: request.uri,
        };
        self.runtime
            .subscribe(&server, &route.original, subscriber)
            .await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let scope = scope_of(&ctx.extensions)?;
        if scope == Scope::Aggregate && super::gateway::is_gateway_uri(&request.uri) {
            self.runtime
                .unwatch_gateway_resource(&request.uri, &session_of(&ctx.extensions));
            return Ok(());
        }
        let (route, server) =
            self.resolve(ListKind::Resources, &request.uri, &scope, &ctx.extensions)?;
        self.runtime
            .unsubscribe(&server, &route.original, &session_of(&ctx.extensions))
            .await;
        Ok(())
    }

    async fn set_level(
        &self,
        _: SetLevelRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Upstream log messages are relayed as the upstream sends them; the level is
        // the upstream's own setting.
        Ok(())
    }

    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        match scope_of(&ctx.extensions) {
            Ok(scope) => self.runtime.add_session_listener(scope, ctx.peer.clone()),
            Err(error) => tracing::debug!(%error.message, "session on an unknown scope"),
        }
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = requested.clone();
        accepted.resource_subscriptions = None;
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let scope = scope_of(&context.request_context().extensions)?;
        self.runtime.add_subscription(scope, context.sink().clone());
        context.cancelled().await;
        Ok(())
    }
}

impl GatewayServer {
    /// Forwards an admitted `tools/call` to its upstream under its original name.
    pub(super) async fn send_tool(
        &self,
        route: Route,
        server: &UpstreamServer,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let header_arguments = self
            .runtime
            .current()
            .wants_header_arguments(route.server_id, &route.original);
        let mut upstream = request;
        upstream.name = route.original.into();
        upstream.meta = upstream_meta(upstream.meta.take());
        let upstream = ToolCall {
            params: upstream,
            header_arguments,
        };
        match self.forward_bridged(server, &ctx, upstream).await? {
            ServerResult::CallToolResult(mut result) => {
                result.result_type.get_or_insert(ResultType::COMPLETE);
                Ok(CallToolResponse::Complete(result))
            }
            ServerResult::InputRequiredResult(result) => {
                Ok(CallToolResponse::InputRequired(result))
            }
            ServerResult::CreateTaskResult(result) => Ok(CallToolResponse::Task(result)),
            other => Err(unexpected(&server.spec.name, &other)),
        }
    }
}

fn unexpected(server: &ServerName, result: &ServerResult) -> ErrorData {
    let kind = serde_json::to_value(result)
        .ok()
        .map(|v| v.to_string())
        .unwrap_or_default();
    ErrorData::new(
        codes::UPSTREAM_FAILED,
        format!(
            "upstream `{server}` answered with an unexpected result: {}",
            kind.chars().take(200).collect::<String>()
        ),
        Some(serde_json::json!({"server": server.as_str()})),
    )
}

fn rename_content_uri(content: &mut rmcp::model::ResourceContents, original: &str, exposed: &str) {
    use rmcp::model::ResourceContents;
    let uri = match content {
        ResourceContents::TextResourceContents { uri, .. }
        | ResourceContents::BlobResourceContents { uri, .. } => uri,
        _ => return,
    };
    if uri == original {
        *uri = exposed.to_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::auth::Caller;

    #[test]
    fn the_caller_is_found_where_rmcp_actix_web_puts_it() {
        // rmcp-actix-web inserts the hook's extensions into the bridged request, and
        // rmcp hands the request's parts to the handler.
        let mut from_hook = rmcp::model::Extensions::new();
        from_hook.insert(Caller::ApiKey);
        let mut request = http::Request::builder()
            .uri("/mcp")
            .body(())
            .expect("request");
        request.extensions_mut().insert(from_hook);
        let (parts, ()) = request.into_parts();
        let mut handler = rmcp::model::Extensions::new();
        handler.insert(parts);
        assert!(matches!(caller_of(&handler), Some(Caller::ApiKey)));
        assert!(caller_of(&rmcp::model::Extensions::new()).is_none());
    }
}
