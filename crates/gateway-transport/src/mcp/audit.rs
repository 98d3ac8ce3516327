//! The audit of the MCP face: [`Audited`] wraps the gateway's MCP service and hands
//! one [`AuditEvent`] per request (every method but `ping`) to the audit sink when the
//! request ends: who (subject, tenant, roles, address), what (method, server, item, a
//! hash of the arguments), how it ended (ok, error code, denied, rate limited) and how
//! long it took. Recording never waits on storage.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use gateway_domain::{AuditEvent, AuditOutcome, AuditSink};
use rmcp::RoleServer;
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult, ErrorData,
    GetPromptRequestParams, GetPromptResponse, InitializeRequestParams, InitializeResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, Reference,
    ServerConfig, SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use sha2::{Digest, Sha256};

use super::server::{GatewayServer, codes};

/// What the audit records and where it goes.
#[derive(Clone)]
pub struct AuditPolicy {
    /// Takes the events.
    pub sink: Arc<dyn AuditSink>,
    /// Keep the arguments themselves (not only their hash).
    pub record_arguments: bool,
    /// Argument keys whose values are replaced by `********` (case-insensitive,
    /// matched as substrings: `token` covers `access_token`).
    pub redact_keys: Vec<String>,
}

impl std::fmt::Debug for AuditPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditPolicy")
            .field("record_arguments", &self.record_arguments)
            .field("redact_keys", &self.redact_keys)
            .finish_non_exhaustive()
    }
}

/// The client's address, put on each MCP message by the HTTP layer.
#[derive(Debug, Clone)]
pub struct ClientAddress(pub String);

/// Filled in by the request's handling: the server it resolved to, and whether
/// access rules refused it (the client sees "unknown", the audit says "denied").
#[derive(Debug, Default)]
pub(crate) struct AuditNote {
    pub(crate) server: Mutex<Option<String>>,
    pub(crate) denied: AtomicBool,
    /// The item really acted on, when the request named another (compact mode's
    /// `gateway__call_tool` names the tool it calls in its arguments).
    pub(crate) target: Mutex<Option<String>>,
}

impl AuditNote {
    /// The note of the request `extensions` belong to, if it is audited.
    pub(crate) fn of(extensions: &rmcp::model::Extensions) -> Option<&Arc<AuditNote>> {
        extensions.get::<Arc<AuditNote>>()
    }

    pub(crate) fn resolved(&self, server: &str) {
        *self.server.lock().unwrap_or_else(PoisonError::into_inner) = Some(server.to_owned());
    }

    pub(crate) fn retarget(&self, target: &str) {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = Some(target.to_owned());
    }
}

/// The gateway's MCP service with every request audited.
#[derive(Clone)]
pub struct Audited {
    inner: GatewayServer,
    policy: Option<AuditPolicy>,
}

impl Audited {
    /// Wraps `inner`; without a policy nothing is recorded.
    pub fn new(inner: GatewayServer, policy: Option<AuditPolicy>) -> Self {
        Self { inner, policy }
    }
}

fn header(parts: Option<&http::request::Parts>, name: &str) -> Option<String> {
    parts?
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Replaces the values of secret-looking keys, at any depth (and the `value` of a
/// completion argument whose `name` is one).
fn redact(value: &mut serde_json::Value, keys: &[String]) {
    let secret = |key: &str| {
        let lower = key.to_ascii_lowercase();
        keys.iter().any(|k| lower.contains(k.as_str()))
    };
    if let serde_json::Value::Object(map) = value
        && map.get("name").and_then(|n| n.as_str()).is_some_and(secret)
        && let Some(argument) = map.get_mut("value")
    {
        *argument = serde_json::Value::String(gateway_domain::secret::MASK.into());
    }
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let lower = key.to_ascii_lowercase();
                if keys.iter().any(|k| lower.contains(k.as_str())) {
                    *value = serde_json::Value::String(gateway_domain::secret::MASK.into());
                } else {
                    redact(value, keys);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact(v, keys)),
        _ => {}
    }
}

/// A resource URI as the audit keeps it: without user info, query or fragment (they
/// can carry credentials).
fn uri_for_audit(uri: &str) -> String {
    let cut = uri.find(['?', '#']).unwrap_or(uri.len());
    let uri = &uri[..cut];
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => uri.to_owned(),
    }
}

fn object(map: &Option<serde_json::Map<String, serde_json::Value>>) -> Option<serde_json::Value> {
    map.as_ref().map(|m| serde_json::Value::Object(m.clone()))
}

impl Audited {
    /// Runs one request through the inner handler and records its event.
    async fn audit<T, F, Fut>(
        &self,
        method: &str,
        target: Option<String>,
        arguments: Option<serde_json::Value>,
        mut context: RequestContext<RoleServer>,
        call: F,
        tool_failed: impl Fn(&T) -> bool,
    ) -> Result<T, ErrorData>
    where
        F: FnOnce(RequestContext<RoleServer>) -> Fut,
        Fut: Future<Output = Result<T, ErrorData>>,
    {
        let Some(policy) = &self.policy else {
            return call(context).await;
        };
        // Everything known before the call is taken now (no copy of the request's
        // extensions is kept); a dropped handling records this as cancelled.
        let note = Arc::new(AuditNote::default());
        let mut pending = PendingEvent::start(
            policy.sink.clone(),
            event(policy, method, target, arguments, &context.extensions),
        );
        pending.note = Some(note.clone());
        context.extensions.insert(note.clone());
        let result = call(context).await;
        let (outcome, error_code) = match &result {
            Ok(value) if tool_failed(value) => (AuditOutcome::Error, None),
            Ok(_) => (AuditOutcome::Ok, None),
            Err(_) if note.denied.load(Ordering::Relaxed) => (AuditOutcome::Denied, None),
            Err(error) if error.code == codes::RATE_LIMITED => {
                (AuditOutcome::RateLimited, Some(i64::from(error.code.0)))
            }
            Err(error) => (AuditOutcome::Error, Some(i64::from(error.code.0))),
        };
        pending
            .finish(|event| {
                event.outcome = outcome;
                event.error_code = error_code;
            })
            .await;
        result
    }
}

/// JSON-RPC's "request cancelled" code, for requests that ended without an answer.
const CANCELLED: i64 = -32800;

/// An audit event whose operation is running. Finished, it is recorded as the
/// operation ended; dropped unfinished (the client went away, the session was
/// closed), it is recorded as it was started: an error with the "cancelled" code.
pub(crate) struct PendingEvent {
    sink: Arc<dyn AuditSink>,
    event: Option<AuditEvent>,
    started: Instant,
    /// Where the handling notes the server it resolved to (MCP requests).
    note: Option<Arc<AuditNote>>,
}

impl PendingEvent {
    /// Starts timing `event`, whose outcome and code say what a drop records.
    pub(crate) fn start(sink: Arc<dyn AuditSink>, event: AuditEvent) -> Self {
        Self {
            sink,
            event: Some(event),
            started: Instant::now(),
            note: None,
        }
    }

    /// Records the event after `complete` filled in how the operation ended.
    pub(crate) async fn finish(mut self, complete: impl FnOnce(&mut AuditEvent)) {
        if let Some(mut event) = self.stamped() {
            complete(&mut event);
            self.sink.record(event).await;
        }
    }

    /// Forgets the event: the operation is not to be recorded.
    pub(crate) fn discard(mut self) {
        self.event = None;
    }

    fn stamped(&mut self) -> Option<AuditEvent> {
        let mut event = self.event.take()?;
        event.at = chrono::Utc::now();
        event.latency_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Some(note) = &self.note {
            event.server = note
                .server
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(target) = note
                .target
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                event.target = Some(target);
            }
        }
        Some(event)
    }
}

impl Drop for PendingEvent {
    fn drop(&mut self) {
        if let Some(event) = self.stamped() {
            self.sink.record_now(event);
        }
    }
}

/// Who made a request, as the audit names them.
pub(crate) fn caller_fields(
    caller: Option<&crate::rest::auth::Caller>,
) -> (Option<String>, Option<String>, Vec<String>) {
    match caller {
        Some(crate::rest::auth::Caller::Token(principal)) => (
            Some(principal.subject.clone()),
            principal.tenant.clone(),
            principal.roles.clone(),
        ),
        Some(crate::rest::auth::Caller::ApiKey) => {
            (Some("admin-api-key".to_owned()), None, Vec::new())
        }
        None => (None, None, Vec::new()),
    }
}

/// The event of a request about to run, as recorded if it never ends.
fn event(
    policy: &AuditPolicy,
    method: &str,
    target: Option<String>,
    arguments: Option<serde_json::Value>,
    extensions: &rmcp::model::Extensions,
) -> AuditEvent {
    let parts = extensions.get::<http::request::Parts>();
    let carried = parts.and_then(|p| p.extensions.get::<rmcp::model::Extensions>());
    let (subject, tenant, roles) =
        caller_fields(carried.and_then(|e| e.get::<crate::rest::auth::Caller>()));
    // Secrets are redacted before hashing too: a hash of a short secret (a PIN) could
    // be reversed by trying every value.
    let arguments = arguments.map(|mut value| {
        redact(&mut value, &policy.redact_keys);
        value
    });
    let arguments_hash = arguments.as_ref().map(|arguments| {
        let bytes = serde_json::to_vec(arguments).unwrap_or_default();
        Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    });
    AuditEvent {
        id: uuid::Uuid::now_v7(),
        at: chrono::Utc::now(),
        request_id: header(parts, "x-request-id"),
        session_id: header(parts, "mcp-session-id"),
        subject,
        tenant,
        roles,
        client_address: carried
            .and_then(|e| e.get::<ClientAddress>())
            .map(|a| a.0.clone()),
        action: method.to_owned(),
        server: None,
        target,
        outcome: AuditOutcome::Error,
        error_code: Some(CANCELLED),
        latency_us: 0,
        arguments_hash,
        arguments: arguments.filter(|_| policy.record_arguments),
    }
}

fn never<T>(_: &T) -> bool {
    false
}

impl ServerHandler for Audited {
    fn get_info(&self) -> ServerConfig {
        self.inner.get_info()
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        let target = format!(
            "{} {}",
            request.client_info.name, request.client_info.version
        );
        // A session rebuilt from its sealed id on this replica (see `roaming`) is not a
        // new session: it is recorded as a restore.
        let method = if context
            .extensions
            .get::<rmcp::transport::streamable_http_server::session::SessionRestoreMarker>()
            .is_some()
        {
            "initialize (restored)"
        } else {
            "initialize"
        };
        self.audit(
            method,
            Some(target),
            None,
            context,
            |ctx| self.inner.initialize(request, ctx),
            never,
        )
        .await
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.audit(
            "tools/list",
            None,
            None,
            context,
            |ctx| self.inner.list_tools(request, ctx),
            never,
        )
        .await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let target = Some(request.name.to_string());
        let mut arguments = object(&request.arguments);
        if super::gateway::is_registration(&request.name)
            && let Some(serde_json::Value::Object(fields)) = &mut arguments
            && let Some(transport) = fields.get_mut("transport")
        {
            // A registration's transport holds the upstream's credentials (headers,
            // environment, OAuth secret, URL): only its kind is recorded.
            *transport = serde_json::json!({
                "type": transport.get("type").cloned().unwrap_or_default(),
                "details": gateway_domain::secret::MASK,
            });
        }
        self.audit(
            "tools/call",
            target,
            arguments,
            context,
            |ctx| self.inner.call_tool(request, ctx),
            |response| matches!(response, CallToolResponse::Complete(result) if result.is_error == Some(true)),
        )
        .await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        self.audit(
            "prompts/list",
            None,
            None,
            context,
            |ctx| self.inner.list_prompts(request, ctx),
            never,
        )
        .await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let target = Some(request.name.clone());
        let arguments = object(&request.arguments);
        self.audit(
            "prompts/get",
            target,
            arguments,
            context,
            |ctx| self.inner.get_prompt(request, ctx),
            never,
        )
        .await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.audit(
            "resources/list",
            None,
            None,
            context,
            |ctx| self.inner.list_resources(request, ctx),
            never,
        )
        .await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        self.audit(
            "resources/templates/list",
            None,
            None,
            context,
            |ctx| self.inner.list_resource_templates(request, ctx),
            never,
        )
        .await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let target = Some(uri_for_audit(&request.uri));
        self.audit(
            "resources/read",
            target,
            None,
            context,
            |ctx| self.inner.read_resource(request, ctx),
            never,
        )
        .await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let target = match &request.r#ref {
            Reference::Prompt(prompt) => Some(prompt.name.clone()),
            Reference::Resource(resource) => Some(uri_for_audit(&resource.uri)),
            _ => None,
        };
        let arguments = serde_json::to_value(&request.argument).ok();
        self.audit(
            "completion/complete",
            target,
            arguments,
            context,
            |ctx| self.inner.complete(request, ctx),
            never,
        )
        .await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let target = Some(uri_for_audit(&request.uri));
        self.audit(
            "resources/subscribe",
            target,
            None,
            context,
            |ctx| self.inner.subscribe(request, ctx),
            never,
        )
        .await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let target = Some(uri_for_audit(&request.uri));
        self.audit(
            "resources/unsubscribe",
            target,
            None,
            context,
            |ctx| self.inner.unsubscribe(request, ctx),
            never,
        )
        .await
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.audit(
            "logging/setLevel",
            None,
            None,
            context,
            |ctx| self.inner.set_level(request, ctx),
            never,
        )
        .await
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.inner.on_initialized(context).await;
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.inner.accepted_subscription_filter(requested)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        self.inner.listen(context).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_arguments_are_redacted_at_any_depth() {
        let mut value = serde_json::json!({
            "query": "weather",
            "api_key": "k",
            "nested": {"Access_Token": "t", "list": [{"password": "p", "ok": 1}]},
        });
        redact(
            &mut value,
            &["token".into(), "password".into(), "api_key".into()],
        );
        assert_eq!(
            value,
            serde_json::json!({
                "query": "weather",
                "api_key": "********",
                "nested": {"Access_Token": "********", "list": [{"password": "********", "ok": 1}]},
            })
        );
    }
}
