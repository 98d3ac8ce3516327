//! [`TestUpstream`], the hand-written `rmcp::ServerHandler`. It owns the state (dynamic
//! tools, connected peers, per-session log level and subscriptions) and routes every
//! request to the gateway fixtures ([`crate::tools`], [`crate::catalog`]) and then to the
//! conformance fixtures ([`crate::conformance`]).

// Logging and resource subscriptions are deprecated by SEP-2577 / SEP-2567 but remain part
// of the session protocols this upstream serves.
#![allow(deprecated)]

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use rmcp::{
    Peer, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult,
        CompletionInfo, ErrorData, GetPromptRequestParams, GetPromptResponse, Implementation,
        ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
        LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams, ProtocolVersion,
        ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
        SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter, Tool,
        UnsubscribeRequestParams,
    },
    service::{NotificationContext, RequestContext, SubscriptionContext, SubscriptionSink},
};
use serde_json::Value;

use crate::{catalog, conformance, support, tools};

/// The MCP test upstream: a real rmcp server with fixed test tools, resources and prompts,
/// the fixtures of the MCP conformance suite, and tools that can be added at run time.
///
/// Cloning is cheap; clones share the dynamic tools and the connected peers. Each MCP
/// session gets its own handle from [`TestUpstream::new_session`], so the logging level
/// and resource subscriptions are per session while the tools stay shared.
#[derive(Clone, Debug, Default)]
pub struct TestUpstream {
    shared: Arc<Shared>,
    session: Arc<Session>,
    page_size: Option<usize>,
    /// Speaks only the session-based revisions (no 2026-07-28), as most deployed
    /// servers still do.
    session_era_only: bool,
    /// `Authorization` headers received over HTTP (recorded by `serve_http`).
    pub(crate) authorizations: Arc<Mutex<Vec<String>>>,
    /// Bearer checking over HTTP (see [`TestUpstream::accept_issued_tokens_from`]).
    pub(crate) bearer_check: Arc<BearerCheck>,
}

/// Which bearer tokens the HTTP endpoint accepts, and how many it refused.
#[derive(Debug, Default)]
pub(crate) struct BearerCheck {
    /// When set, only `Bearer issued-<n>` with `n` at least this is accepted.
    accepted_from: Mutex<Option<u64>>,
    refused: std::sync::atomic::AtomicUsize,
}

impl BearerCheck {
    /// Whether a request with this `Authorization` value may pass (counts refusals).
    pub(crate) fn admits(&self, authorization: Option<&str>) -> bool {
        let Some(from) = *lock(&self.accepted_from) else {
            return true;
        };
        let admitted = authorization
            .and_then(|value| value.strip_prefix("Bearer issued-"))
            .and_then(|number| number.parse::<u64>().ok())
            .is_some_and(|number| number >= from);
        if !admitted {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        admitted
    }
}

/// State shared by every session of one upstream.
#[derive(Debug, Default)]
struct Shared {
    /// Tools added by `add_tool`, by name.
    dynamic_tools: Mutex<BTreeMap<String, Tool>>,
    /// Peers of initialized sessions (session protocols), notified on list changes.
    peers: Mutex<Vec<Peer<RoleServer>>>,
    /// Open `subscriptions/listen` streams (2026-07-28), notified on list changes.
    listeners: Mutex<Vec<SubscriptionSink>>,
    /// `tools/call` requests received, for load-sharing tests.
    tool_calls: std::sync::atomic::AtomicUsize,
    /// `tools/call` requests being served now, and the most ever at once.
    running: std::sync::atomic::AtomicUsize,
    max_running: std::sync::atomic::AtomicUsize,
}

/// Counts a running `tools/call` until dropped.
struct Running<'a>(&'a Shared);

impl<'a> Running<'a> {
    fn start(shared: &'a Shared) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        shared.tool_calls.fetch_add(1, SeqCst);
        let now = shared.running.fetch_add(1, SeqCst) + 1;
        shared.max_running.fetch_max(now, SeqCst);
        Self(shared)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// State of one MCP session.
#[derive(Debug, Default)]
struct Session {
    /// Minimum level of `notifications/message`; `None` sends everything.
    log_level: Mutex<Option<LoggingLevel>>,
    /// URIs passed to `resources/subscribe`.
    subscriptions: Mutex<BTreeSet<String>>,
}

/// Locks a mutex; a poisoned lock still holds usable fixture state.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TestUpstream {
    /// A new upstream with no dynamic tools and unpaginated lists.
    pub fn new() -> Self {
        Self::default()
    }

    /// Splits `tools/list`, `resources/list`, `resources/templates/list` and
    /// `prompts/list` into pages of `size` items (opaque cursors), to test pagination.
    #[must_use]
    pub fn with_page_size(mut self, size: usize) -> Self {
        self.page_size = Some(size.max(1));
        self
    }

    /// Refuses the 2026-07-28 revision: clients must `initialize` a session.
    #[must_use]
    pub fn session_era_only(mut self) -> Self {
        self.session_era_only = true;
        self
    }

    /// A handle for a new MCP session: same tools and peers, fresh per-session state.
    #[must_use]
    pub fn new_session(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            session: Arc::default(),
            page_size: self.page_size,
            session_era_only: self.session_era_only,
            authorizations: Arc::clone(&self.authorizations),
            bearer_check: Arc::clone(&self.bearer_check),
        }
    }

    /// Makes the HTTP endpoint accept only `Authorization: Bearer issued-<n>` with
    /// `n >= first` (the tokens the test issuer hands out, in order): raising `first`
    /// revokes the older ones. Others get 401 with a `WWW-Authenticate` challenge.
    pub fn accept_issued_tokens_from(&self, first: u64) {
        *lock(&self.bearer_check.accepted_from) = Some(first);
    }

    /// How many HTTP requests were refused for their bearer token.
    pub fn bearer_refusals(&self) -> usize {
        self.bearer_check
            .refused
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Registers a tool named `name` that answers `dynamic <name>`, then sends
    /// `notifications/tools/list_changed` to every connected client. Returns `false`
    /// (and notifies no one) when a tool of that name already exists.
    pub async fn add_tool(&self, name: &str) -> bool {
        if self.all_tools().iter().any(|t| t.name == name) {
            return false;
        }
        let tool = Tool::new(
            name.to_owned(),
            format!("Dynamic tool added at run time; answers `dynamic {name}`."),
            support::object(support::no_args()),
        );
        lock(&self.shared.dynamic_tools).insert(name.to_owned(), tool);
        self.notify_tool_list_changed().await;
        true
    }

    /// Adds many tools at once, each `(name, description, input schema)`, then
    /// notifies once. Each answers `dynamic <name> <arguments as JSON>`.
    pub async fn add_tools(&self, tools: Vec<(String, String, serde_json::Value)>) {
        {
            let mut dynamic = lock(&self.shared.dynamic_tools);
            for (name, description, schema) in tools {
                let schema = match schema {
                    serde_json::Value::Object(_) => schema,
                    _ => support::no_args(),
                };
                dynamic.insert(
                    name.clone(),
                    Tool::new(name, description, support::object(schema)),
                );
            }
        }
        self.notify_tool_list_changed().await;
    }

    /// How many `tools/call` requests this upstream received (all sessions).
    pub fn tool_calls(&self) -> usize {
        self.shared
            .tool_calls
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The most `tools/call` requests it ever served at once.
    pub fn max_concurrent_calls(&self) -> usize {
        self.shared
            .max_running
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Names of the tools added at run time.
    pub fn dynamic_tool_names(&self) -> Vec<String> {
        lock(&self.shared.dynamic_tools).keys().cloned().collect()
    }

    /// Sends `notifications/tools/list_changed` to every live peer and listener,
    /// forgetting the closed ones.
    async fn notify_tool_list_changed(&self) {
        let peers: Vec<_> = {
            let mut peers = lock(&self.shared.peers);
            peers.retain(|p| !p.is_transport_closed());
            peers.clone()
        };
        for peer in peers {
            if let Err(error) = peer.notify_tool_list_changed().await {
                tracing::debug!(%error, "cannot notify a peer of the tool list change");
            }
        }
        let listeners: Vec<_> = lock(&self.shared.listeners).clone();
        for sink in listeners {
            if let Err(error) = sink.notify_tool_list_changed().await {
                tracing::debug!(%error, "cannot notify a listener of the tool list change");
            }
        }
    }

    /// Sends a `notifications/message` unless the session's level filters it out.
    pub(crate) async fn log(
        &self,
        ctx: &RequestContext<RoleServer>,
        level: LoggingLevel,
        data: Value,
    ) {
        let minimum = *lock(&self.session.log_level);
        if minimum.is_some_and(|min| severity(level) < severity(min)) {
            return;
        }
        let param = LoggingMessageNotificationParam::new(level, data).with_logger("test-upstream");
        if let Err(error) = ctx.peer.notify_logging_message(param).await {
            tracing::debug!(%error, "cannot send a log notification");
        }
    }

    /// Every tool: the gateway's test tools, the conformance tools, then the dynamic ones.
    fn all_tools(&self) -> Vec<Tool> {
        let mut all = tools::list();
        all.extend(conformance::tools());
        all.extend(lock(&self.shared.dynamic_tools).values().cloned());
        all
    }

    /// One page of `items`, per the configured page size and the request's cursor.
    fn page<T>(
        &self,
        items: Vec<T>,
        request: Option<&PaginatedRequestParams>,
    ) -> Result<(Vec<T>, Option<String>), ErrorData> {
        let start = match request.and_then(|r| r.cursor.as_deref()) {
            None => 0,
            Some(cursor) => cursor
                .parse::<usize>()
                .ok()
                .filter(|&start| start <= items.len())
                .ok_or_else(|| ErrorData::invalid_params("invalid cursor", None))?,
        };
        let Some(size) = self.page_size else {
            return Ok((items.into_iter().skip(start).collect(), None));
        };
        let end = start.saturating_add(size).min(items.len());
        let next = (end < items.len()).then(|| end.to_string());
        Ok((
            items.into_iter().skip(start).take(end - start).collect(),
            next,
        ))
    }
}

/// Orders logging levels by severity (`LoggingLevel` has no `Ord`).
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

impl ServerHandler for TestUpstream {
    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        if self.session_era_only {
            ProtocolVersion::KNOWN_VERSIONS
                .iter()
                .filter(|version| version.has_initialize())
                .cloned()
                .collect::<Vec<_>>()
                .into()
        } else {
            ProtocolVersion::KNOWN_VERSIONS.into()
        }
    }

    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_logging()
            .enable_completions()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "gateway-test-upstream",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("MCP test upstream of the registry gateway's test suite.")
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        lock(&self.shared.peers).push(context.peer);
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let (tools, next) = self.page(self.all_tools(), request.as_ref())?;
        let mut result = ListToolsResult::with_all_items(tools);
        result.next_cursor = next;
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let _running = Running::start(&self.shared);
        if let Some(outcome) = tools::call(self, &request, &ctx).await {
            return support::respond(outcome);
        }
        if let Some(outcome) = conformance::call(self, &request, &ctx).await {
            return support::respond(outcome);
        }
        let name = request.name.as_ref();
        if lock(&self.shared.dynamic_tools).contains_key(name) {
            let text = match request.arguments.as_ref().filter(|a| !a.is_empty()) {
                Some(arguments) => format!(
                    "dynamic {name} {}",
                    serde_json::Value::Object(arguments.clone())
                ),
                None => format!("dynamic {name}"),
            };
            return Ok(support::text_result(text).into());
        }
        Err(ErrorData::invalid_params(
            format!("unknown tool: {name}"),
            None,
        ))
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let mut all = catalog::resources();
        all.extend(conformance::resources());
        let (resources, next) = self.page(all, request.as_ref())?;
        let mut result = ListResourcesResult::with_all_items(resources);
        result.next_cursor = next;
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let mut all = catalog::resource_templates();
        all.extend(conformance::resource_templates());
        let (templates, next) = self.page(all, request.as_ref())?;
        let mut result = ListResourceTemplatesResult::with_all_items(templates);
        result.next_cursor = next;
        Ok(result)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        catalog::read(uri)
            .or_else(|| conformance::read(uri))
            .map(Into::into)
            .ok_or_else(|| {
                ErrorData::resource_not_found(
                    format!("resource not found: {uri}"),
                    Some(serde_json::json!({ "uri": uri })),
                )
            })
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        lock(&self.session.subscriptions).insert(request.uri);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        lock(&self.session.subscriptions).remove(&request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let sink = context.sink().clone();
        let id = sink.id().clone();
        lock(&self.shared.listeners).push(sink);
        context.cancelled().await;
        lock(&self.shared.listeners).retain(|s| *s.id() != id);
        Ok(())
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let mut all = catalog::prompts();
        all.extend(conformance::prompts());
        let (prompts, next) = self.page(all, request.as_ref())?;
        let mut result = ListPromptsResult::with_all_items(prompts);
        result.next_cursor = next;
        Ok(result)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let arguments = request.arguments.unwrap_or_default();
        catalog::get_prompt(&request.name, &arguments)
            .or_else(|| conformance::get_prompt(&request.name, &arguments))
            .unwrap_or_else(|| {
                Err(ErrorData::invalid_params(
                    format!("unknown prompt: {}", request.name),
                    None,
                ))
            })
            .map(Into::into)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let values = catalog::complete(&request)
            .or_else(|| conformance::complete(&request))
            .unwrap_or_default();
        let completion = CompletionInfo::with_all_values(values)
            .map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(CompleteResult::new(completion))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *lock(&self.session.log_level) = Some(request.level);
        Ok(())
    }
}

/// Values of `candidates` that start with `prefix`.
pub(crate) fn by_prefix(candidates: &[&str], prefix: &str) -> Vec<String> {
    candidates
        .iter()
        .filter(|c| c.starts_with(prefix))
        .map(|c| (*c).to_owned())
        .collect()
}
