//! Mounts the MCP server on actix-web with rmcp's Streamable HTTP transport (via
//! rmcp-actix-web): `/mcp` and `/mcp/servers/{name}`, each with its own session
//! space. rmcp serves both protocol eras on the same route: `initialize` and
//! `Mcp-Session-Id` sessions for 2025-03-26…2025-11-25 clients, stateless requests
//! with per-request `_meta` and the `Mcp-Method`/`Mcp-Name` headers for 2026-07-28.

use std::sync::Arc;

use rmcp_actix_web::transport::{LocalSessionManager, StreamableHttpService};

use super::audit::{Audited, ClientAddress};
use super::runtime::McpRuntime;
use super::server::GatewayServer;

/// What the operator controls about the MCP endpoint's HTTP side.
#[derive(Debug, Clone)]
pub struct McpHttpSettings {
    /// `Host` values accepted (DNS-rebinding protection); `None` keeps rmcp's
    /// loopback-only default.
    pub allowed_hosts: Option<Vec<String>>,
    /// Browser `Origin`s accepted; any other origin gets 403. Requests without an
    /// `Origin` (non-browser clients) pass.
    pub allowed_origins: Vec<String>,
    /// Largest JSON-RPC request body.
    pub max_body_bytes: usize,
    /// Longest time a request body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// Take the client address (for the audit) from `Forwarded` / `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// Caps on sessions, in total and per caller.
    pub session_limits: super::sessions::SessionLimits,
    /// Caps on open streams and requests in progress, in total and per caller.
    pub stream_limits: super::sessions::StreamLimits,
    /// How often an open SSE stream gets a keep-alive comment: what keeps load
    /// balancers from closing idle streams, and how soon a stream whose client went
    /// away is noticed (a write fails) and its place under the caps given back.
    pub sse_keep_alive: std::time::Duration,
    /// A session idle this long is ended.
    pub session_idle: std::time::Duration,
}

/// The MCP services (aggregate, per server, per view), built once and cloned into
/// every HTTP worker.
#[derive(Clone)]
pub struct McpServices {
    /// `/mcp`: every enabled upstream.
    pub aggregate: StreamableHttpService<Audited, LocalSessionManager>,
    /// `/mcp/servers/{name}`: one upstream with its original names.
    pub per_server: StreamableHttpService<Audited, LocalSessionManager>,
    /// `/mcp/views/{name}`: one curated view.
    pub per_view: StreamableHttpService<Audited, LocalSessionManager>,
    /// The runtime behind both.
    pub runtime: Arc<McpRuntime>,
    /// The checks in front of all three services: body size and deadline, and the
    /// caps on sessions and open streams.
    pub gate: super::guard::Gate,
    /// Ends every MCP session of both services when cancelled (at shutdown, once the
    /// calls in flight are done, so open SSE streams do not hold the server up).
    pub sessions: tokio_util::sync::CancellationToken,
}

fn build(
    runtime: &Arc<McpRuntime>,
    settings: &McpHttpSettings,
    sessions: &tokio_util::sync::CancellationToken,
    manager: Arc<LocalSessionManager>,
    roaming: &Arc<super::roaming::Roaming>,
) -> StreamableHttpService<Audited, LocalSessionManager> {
    let factory_runtime = runtime.clone();
    let trust_forwarded_for = settings.trust_forwarded_for;
    StreamableHttpService::builder()
        .service_factory(Arc::new(move || {
            Ok(Audited::new(
                GatewayServer::new(factory_runtime.clone()),
                factory_runtime.settings.audit.clone(),
            ))
        }))
        .session_manager(manager)
        .stateful_mode(true)
        // Sessions this replica does not hold are rebuilt from their sealed id.
        .session_store(Arc::new(super::roaming::RestoreFromSealedId(
            roaming.clone(),
        )))
        .cancellation_token(sessions.child_token())
        .maybe_allowed_hosts(settings.allowed_hosts.clone())
        .allowed_origins(settings.allowed_origins.clone())
        .max_request_body_bytes(settings.max_body_bytes)
        .sse_keep_alive(settings.sse_keep_alive)
        // The caller the auth gate admitted travels with the message (the token itself
        // does not: rmcp-actix-web strips `Authorization`, and nothing forwards it).
        .on_request_fn(move |request, extensions| {
            if let Some(caller) =
                actix_web::HttpMessage::extensions(request).get::<crate::rest::auth::Caller>()
            {
                extensions.insert(caller.clone());
            }
            if let Some(address) =
                crate::rest::ip_limit::client_address(request, trust_forwarded_for)
            {
                extensions.insert(ClientAddress(address.to_string()));
            }
        })
        .build()
}

impl McpServices {
    /// Builds the services over `runtime`, with session ids sealed by `roaming`.
    pub fn new(
        runtime: Arc<McpRuntime>,
        settings: &McpHttpSettings,
        roaming: Arc<super::roaming::Roaming>,
    ) -> Self {
        let sessions = tokio_util::sync::CancellationToken::new();
        let managers: Vec<Arc<LocalSessionManager>> = (0..3)
            .map(|_| {
                let mut manager = LocalSessionManager::default();
                // Idle sessions end, and their place is free again.
                manager.session_config.keep_alive = Some(settings.session_idle);
                Arc::new(manager)
            })
            .collect();
        let book = Arc::new(super::sessions::SessionBook::new(
            managers.clone(),
            settings.session_limits,
        ));
        let [aggregate, per_server, per_view] =
            [0, 1, 2].map(|i| build(&runtime, settings, &sessions, managers[i].clone(), &roaming));
        Self {
            aggregate,
            per_server,
            per_view,
            runtime,
            gate: super::guard::Gate {
                max_body_bytes: settings.max_body_bytes,
                body_timeout: settings.body_timeout,
                sessions: book,
                streams: super::sessions::StreamBook::new(settings.stream_limits),
                trust_forwarded_for: settings.trust_forwarded_for,
                replies: roaming
                    .bus()
                    .is_shared()
                    .then(|| super::replies::ReplyRoute::new(roaming.bus().replica())),
                roaming,
            },
            sessions,
        }
    }
}
