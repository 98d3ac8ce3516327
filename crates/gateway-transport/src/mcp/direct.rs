//! Direct calls: a `tools/call` for a Streamable HTTP upstream on a session-based
//! revision is posted on the upstream's open session by the calling task itself,
//! through an HTTP client of the calling thread, and its answer is read straight
//! off the response.
//!
//! Why: through rmcp's client service, each forwarded call crossed threads about ten
//! times (the service loop and the transport worker live on the main runtime, the
//! downstream session on an actix worker) and every answer was tried against the
//! variants of rmcp's untagged `ServerResult` in turn, `CallToolResult` among the
//! last ones (docs/benchmarks.md measures both). A direct call stays on one thread
//! and reads a `CallToolResult` as one.
//!
//! rmcp stays in charge of the session: it opens it, re-opens it when it expires,
//! and carries everything else. [`Tapped`] wraps the session's HTTP client and
//! notes the session id and headers rmcp sends, and a direct call reuses them; rmcp's
//! own HTTP client does the exchange (the response limits, the status handling, the
//! bounded SSE parser). Progress and log messages on the call's stream, and the
//! server-to-client requests it carries (sampling, elicitation, roots), become the
//! same [`CallEvent`]s the rmcp path produces; answers to those requests are posted
//! back on the session. A call the upstream refuses with 404 (its session expired)
//! is handed to rmcp, which opens a new session and sends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::ServiceError;
use rmcp::model::{
    CallToolResult, ClientJsonRpcMessage, ClientResult, EmptyResult, ErrorData, JsonRpcMessage,
    ProtocolVersion, RequestId, RequestMetaObject, ServerJsonRpcMessage, ServerNotification,
    ServerRequest, ServerResult,
};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;
use tokio::sync::mpsc;

use super::bearer::BearerClient;
use super::upstream::{
    CallEvent, ForwardedReply, ForwardedRequest, SharedFlood, UpstreamEvent, ask_caller,
    change_event,
};

type HttpError = StreamableHttpError<reqwest::Error>;

/// Attempts in a row to resume a response stream that closed or broke before the
/// answer (`GET` with `Last-Event-ID`, as rmcp's transport does); a resumed stream
/// that delivers an event starts the count again. The call's timeout bounds the rest.
const MAX_RESUMPTIONS: usize = 5;

/// The longest wait before resuming a stream (`retry:` or backoff).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How a direct call authenticates: as the session does.
#[derive(Clone)]
pub(super) enum DirectAuth {
    /// Static headers only (they are among the session's headers).
    Plain,
    /// The gateway's own OAuth token, put on each request by [`BearerClient`].
    Bearer(BearerClient),
}

/// The upstream session a direct call rides on, as rmcp's transport last used it.
pub(super) struct Target {
    pub(super) uri: Arc<str>,
    /// The session id (session-based revisions); `None` on 2026-07-28.
    pub(super) session: Option<Arc<str>>,
    /// The session's headers: configured ones and `MCP-Protocol-Version`.
    pub(super) headers: HashMap<HeaderName, HeaderValue>,
    /// The `MCP-Protocol-Version` rmcp sent (a new one means a new negotiation).
    version: HeaderValue,
    /// On 2026-07-28, what every request carries in `_meta`: the protocol version,
    /// the client's identity and capabilities.
    pub(super) meta: Option<RequestMetaObject>,
    pub(super) auth: DirectAuth,
    /// The session's notification budget (`mcp.max_upstream_notifications_per_sec`).
    pub(super) flood: SharedFlood,
    /// Cancelled when the session is closed or re-opened: calls on it end, as rmcp's
    /// pending requests do.
    ended: tokio_util::sync::CancellationToken,
}

/// The `_meta` keys a 2026-07-28 request repeats on every request.
const PER_REQUEST_META: [&str; 3] = [
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/clientCapabilities",
];

impl Target {
    /// The headers of a `tools/call` of `tool`: the session's, plus on 2026-07-28
    /// `Mcp-Method` and `Mcp-Name` (SEP-2243). `None` when the name cannot travel
    /// as a bare header value (rmcp's transport then sends the call, encoded).
    pub(super) fn headers_for(&self, tool: &str) -> Option<HashMap<HeaderName, HeaderValue>> {
        let mut headers = self.headers.clone();
        if self.meta.is_some() {
            let bare = !tool.is_empty()
                && tool.bytes().all(|b| b.is_ascii_graphic())
                && !tool.starts_with("=?");
            if !bare {
                return None;
            }
            headers.insert(
                HeaderName::from_static("mcp-method"),
                HeaderValue::from_static("tools/call"),
            );
            headers.insert(
                HeaderName::from_static("mcp-name"),
                HeaderValue::from_str(tool).ok()?,
            );
        }
        Some(headers)
    }
}

/// Put on a `tools/call` request by the handler when the called tool's input schema
/// asks for arguments as headers ([`wants_param_headers`], found once per catalog
/// snapshot): on 2026-07-28 such a call goes through rmcp's transport. Every
/// `tools/call` is built by `GatewayServer::send_tool`, which puts it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderArguments;

/// Whether a tool's input schema asks for arguments as `Mcp-Param-*` headers
/// (`x-mcp-header`, SEP-2243): such calls go through rmcp's transport, which
/// writes those headers.
pub(super) fn wants_param_headers(schema: &serde_json::Map<String, serde_json::Value>) -> bool {
    fn within(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(map) => wants_param_headers(map),
            serde_json::Value::Array(items) => items.iter().any(within),
            _ => false,
        }
    }
    schema
        .iter()
        .any(|(key, value)| key == "x-mcp-header" || within(value))
}

/// Where the session's client notes the session it uses, for direct calls to read.
#[derive(Default)]
pub(super) struct Tap(Mutex<Option<Arc<Target>>>);

impl Tap {
    /// The session a direct call may use now, if rmcp has one open on a
    /// session-based revision.
    pub(super) fn current(&self) -> Option<Arc<Target>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets whatever session was noted, and ends the direct calls on it (the
    /// session is being closed, or a new one opened).
    pub(super) fn clear(&self) {
        if let Some(target) = self.0.lock().unwrap_or_else(PoisonError::into_inner).take() {
            target.ended.cancel();
        }
    }

    /// Forgets `session` (it expired, or rmcp ended it).
    pub(super) fn forget(&self, session: &str) {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if current
            .as_ref()
            .is_some_and(|target| target.session.as_deref() == Some(session))
        {
            *current = None;
        }
    }

    /// Notes what rmcp sent: a session-based revision's session id and headers, or a
    /// 2026-07-28 request's headers and per-request `_meta`.
    fn record(
        &self,
        uri: &Arc<str>,
        session: Option<&Arc<str>>,
        headers: &HashMap<HeaderName, HeaderValue>,
        message: &ClientJsonRpcMessage,
        auth: &DirectAuth,
        flood: &SharedFlood,
    ) {
        // By name: a `HeaderName` does not hash as the `str` it spells.
        let Some(sent_version) = headers.get(&HeaderName::from_static("mcp-protocol-version"))
        else {
            return;
        };
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|target| {
            target.session.as_ref() == session
                && target.uri == *uri
                && target.version == sent_version
        }) {
            return;
        }
        // Whatever was noted is out of date; a message that shows no new target
        // leaves none (rmcp's transport sends the calls until one does).
        *current = None;
        let Some(version) = sent_version.to_str().ok().and_then(|value| {
            serde_json::from_value::<ProtocolVersion>(serde_json::Value::String(value.to_owned()))
                .ok()
        }) else {
            return;
        };
        let target = if version.has_initialize() {
            // A session-based revision spoken without a session (rmcp's discovery can
            // settle on one) has no per-request metadata to copy: not tapped.
            let Some(session) = session else {
                return;
            };
            Target {
                uri: uri.clone(),
                session: Some(session.clone()),
                headers: headers.clone(),
                version: sent_version.clone(),
                meta: None,
                auth: auth.clone(),
                flood: flood.clone(),
                ended: tokio_util::sync::CancellationToken::new(),
            }
        } else {
            // Only a request shows the per-request `_meta` of the revision.
            let JsonRpcMessage::Request(request) = message else {
                return;
            };
            let sent = rmcp::model::GetMeta::get_meta(&request.request);
            let mut meta = RequestMetaObject::new();
            for key in PER_REQUEST_META {
                let Some(value) = sent.0.0.get(key) else {
                    return;
                };
                meta.0.0.insert(key.to_owned(), value.clone());
            }
            // The headers that describe one message are not the session's.
            let headers = headers
                .iter()
                .filter(|(name, _)| {
                    let name = name.as_str();
                    name != "mcp-method" && name != "mcp-name" && !name.starts_with("mcp-param-")
                })
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            Target {
                uri: uri.clone(),
                session: None,
                headers,
                version: sent_version.clone(),
                meta: Some(meta),
                auth: auth.clone(),
                flood: flood.clone(),
                ended: tokio_util::sync::CancellationToken::new(),
            }
        };
        *current = Some(Arc::new(target));
    }
}

/// The HTTP client of an upstream session (rmcp's reqwest client, or
/// [`BearerClient`]), noting on a [`Tap`] the session every request carries.
#[derive(Clone)]
pub(super) struct Tapped<C> {
    pub(super) inner: C,
    pub(super) tap: Arc<Tap>,
    pub(super) auth: DirectAuth,
    pub(super) flood: SharedFlood,
}

impl<C> Tapped<C> {
    /// Notes a message rmcp sends on the tap (see [`Tap::record`]).
    fn note(
        &self,
        uri: &Arc<str>,
        session: Option<&Arc<str>>,
        headers: &HashMap<HeaderName, HeaderValue>,
        message: &ClientJsonRpcMessage,
    ) {
        self.tap
            .record(uri, session, headers, message, &self.auth, &self.flood);
    }
}

impl<C: StreamableHttpClient<Error = reqwest::Error> + Sync> StreamableHttpClient for Tapped<C> {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.note(&uri, session_id.as_ref(), &custom_headers, &message);
        self.inner
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.note(&uri, session_id.as_ref(), &custom_headers, &message);
        self.inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.note(&uri, session_id.as_ref(), &custom_headers, &message);
        self.inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpError> {
        self.tap.forget(&session_id);
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}

/// How a direct call ended.
#[expect(
    clippy::large_enum_variant,
    reason = "returned once per call and matched at once; boxing would add an allocation"
)]
pub(super) enum Outcome {
    /// The upstream answered (a result or a JSON-RPC error).
    Answered(Result<ServerResult, ServiceError>),
    /// The upstream no longer knows the session (404): nothing was done, and the
    /// call may be sent again on a new session.
    SessionExpired,
}

/// One direct call: what it sends, where, and where its events go.
pub(super) struct DirectCall {
    pub(super) target: Arc<Target>,
    pub(super) id: RequestId,
    pub(super) limits: StreamableHttpResponseLimits,
    pub(super) events: mpsc::Sender<CallEvent>,
    /// The upstream, and where its list changes and resource updates go.
    pub(super) server: gateway_domain::ServerId,
    pub(super) changes: mpsc::UnboundedSender<UpstreamEvent>,
}

impl DirectCall {
    /// Posts `message` with `headers` ([`Target::headers_for`] the tool) through `http`
    /// (the calling thread's client) and reads the stream until the answer, or until
    /// the session is closed.
    pub(super) async fn run(
        mut self,
        http: reqwest::Client,
        message: ClientJsonRpcMessage,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Outcome {
        let ended = self.target.ended.clone();
        let exchange = async {
            match self.target.auth.clone() {
                DirectAuth::Plain => self.exchange(&http, message, headers).await,
                DirectAuth::Bearer(bearer) => {
                    let client = BearerClient { http, ..bearer };
                    self.exchange(&client, message, headers).await
                }
            }
        };
        tokio::select! {
            outcome = exchange => outcome,
            () = ended.cancelled() => Outcome::Answered(Err(ServiceError::TransportClosed)),
        }
    }

    async fn exchange<C: StreamableHttpClient<Error = reqwest::Error>>(
        &mut self,
        client: &C,
        message: ClientJsonRpcMessage,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Outcome {
        let target = self.target.clone();
        let posted = client
            .post_message_with_response_limits(
                target.uri.clone(),
                message,
                target.session.clone(),
                None,
                headers,
                self.limits,
            )
            .await;
        let mut stream = match posted {
            Err(StreamableHttpError::SessionExpired) => return Outcome::SessionExpired,
            Err(error) => return Outcome::Answered(Err(transport_error(error))),
            Ok(StreamableHttpPostResponse::Accepted) => {
                return Outcome::Answered(Err(ServiceError::UnexpectedResponse));
            }
            Ok(StreamableHttpPostResponse::Json(message, _)) => {
                return Outcome::Answered(match answer_in(message, &self.id) {
                    Read::Answer(answer) => answer,
                    Read::Other(_) => Err(ServiceError::UnexpectedResponse),
                });
            }
            Ok(StreamableHttpPostResponse::Sse(stream, _)) => stream,
            Ok(_) => return Outcome::Answered(Err(ServiceError::UnexpectedResponse)),
        };
        let mut last_event_id = None;
        let mut retry = None;
        let mut attempts = 0;
        loop {
            let mut broken = None;
            while let Some(event) = stream.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(error) => {
                        broken = Some(transport_error(StreamableHttpError::<reqwest::Error>::Sse(
                            error,
                        )));
                        break;
                    }
                };
                attempts = 0;
                if event.id.is_some() {
                    last_event_id = event.id;
                }
                if let Some(delay) = event.retry {
                    retry = Some(Duration::from_millis(delay).min(MAX_RETRY_DELAY));
                }
                let Some(data) = event.data.filter(|data| !data.trim().is_empty()) else {
                    continue;
                };
                if let Some(answer) = self.take(client, &data).await {
                    return Outcome::Answered(answer);
                }
            }
            // The stream ended or broke before the answer: resume it where it stopped,
            // if the upstream numbered its events.
            let failure = broken.unwrap_or(ServiceError::TransportClosed);
            let Some(last) = last_event_id.clone() else {
                return Outcome::Answered(Err(failure));
            };
            stream = loop {
                if attempts == MAX_RESUMPTIONS {
                    return Outcome::Answered(Err(failure));
                }
                attempts += 1;
                let backoff = Duration::from_millis(100 << attempts.min(6)).min(MAX_RETRY_DELAY);
                tokio::time::sleep(retry.unwrap_or(backoff)).await;
                match client
                    .get_stream_with_max_sse_event_size(
                        target.uri.clone(),
                        target.session.clone(),
                        Some(last.clone()),
                        None,
                        target.headers.clone(),
                        self.limits.max_sse_event_size,
                    )
                    .await
                {
                    Ok(stream) => break stream,
                    Err(error) => {
                        tracing::debug!(%error, attempts, "resuming an upstream response stream failed");
                    }
                }
            };
        }
    }

    /// Handles one message of the call's stream; returns the answer when it is one.
    async fn take<C: StreamableHttpClient<Error = reqwest::Error>>(
        &mut self,
        client: &C,
        data: &str,
    ) -> Option<Result<ServerResult, ServiceError>> {
        if let Some(answer) = answer_of(data, &self.id) {
            return Some(answer);
        }
        let message = match serde_json::from_str::<ServerJsonRpcMessage>(data) {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(%error, "upstream sent an unreadable message on a call's stream; ignored");
                return None;
            }
        };
        let message = match answer_in(message, &self.id) {
            Read::Answer(answer) => return Some(answer),
            Read::Other(other) => other,
        };
        match message {
            JsonRpcMessage::Notification(notification) => {
                self.notified(notification.notification).await;
                None
            }
            JsonRpcMessage::Request(request) => {
                let reply = self.ask(request.request).await;
                let message = match reply {
                    Ok(result) => ClientJsonRpcMessage::response(result, request.id),
                    Err(error) => ClientJsonRpcMessage::error(error, Some(request.id)),
                };
                let target = &self.target;
                if let Err(error) = client
                    .post_message_with_response_limits(
                        target.uri.clone(),
                        message,
                        target.session.clone(),
                        None,
                        target.headers.clone(),
                        self.limits,
                    )
                    .await
                {
                    // The upstream would wait for that answer until the timeout.
                    tracing::warn!(%error, "cannot send the client's answer to the upstream");
                    return Some(Err(transport_error(error)));
                }
                None
            }
            _ => None,
        }
    }

    async fn notified(&mut self, notification: ServerNotification) {
        let event = match notification {
            ServerNotification::ProgressNotification(progress) => {
                CallEvent::Progress(progress.params)
            }
            ServerNotification::LoggingMessageNotification(log) => CallEvent::Log(log.params),
            other => {
                if let Some(change) = change_event(self.server, &other) {
                    let _ = self.changes.send(change);
                }
                return;
            }
        };
        let admitted = self
            .target
            .flood
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit();
        if admitted {
            let _ = self.events.send(event).await;
        }
    }

    /// Relays a server-to-client request to the downstream client and waits for its
    /// answer.
    async fn ask(&mut self, request: ServerRequest) -> Result<ClientResult, ErrorData> {
        let forwarded = match request {
            ServerRequest::PingRequest(_) => return Ok(ClientResult::EmptyResult(EmptyResult {})),
            ServerRequest::CreateMessageRequest(request) => {
                ForwardedRequest::Sampling(request.params)
            }
            ServerRequest::ElicitRequest(request) => ForwardedRequest::Elicitation(request.params),
            ServerRequest::ListRootsRequest(_) => ForwardedRequest::Roots,
            _ => {
                return Err(ErrorData::new(
                    rmcp::model::ErrorCode::METHOD_NOT_FOUND,
                    "the gateway does not relay this request",
                    None,
                ));
            }
        };
        match ask_caller(&self.events, forwarded).await? {
            ForwardedReply::Sampling(result) => {
                Ok(ClientResult::CreateMessageResult(Box::new(result)))
            }
            ForwardedReply::Elicitation(result) => Ok(ClientResult::ElicitResult(result)),
            ForwardedReply::Roots(result) => Ok(ClientResult::ListRootsResult(result)),
        }
    }
}

/// `message` as the answer to request `id`: a response with its id, or an error with
/// its id or none (the upstream could not read the request). Other messages come
/// back as they are.
fn answer_in(message: ServerJsonRpcMessage, id: &RequestId) -> Read {
    match message {
        JsonRpcMessage::Response(response) if response.id == *id => {
            Read::Answer(Ok(response.result))
        }
        JsonRpcMessage::Error(error) if error.id.as_ref().is_none_or(|sent| sent == id) => {
            Read::Answer(Err(ServiceError::McpError(error.error)))
        }
        other => Read::Other(other),
    }
}

/// A message of the call's stream, read: its answer, or something else.
enum Read {
    Answer(Result<ServerResult, ServiceError>),
    Other(ServerJsonRpcMessage),
}

/// The call's answer, read as the `CallToolResult` it almost always is: `None`
/// when `data` is another message, or a result of another shape (which the caller
/// then reads as rmcp reads any result).
fn answer_of(data: &str, id: &RequestId) -> Option<Result<ServerResult, ServiceError>> {
    #[derive(serde::Deserialize)]
    struct Answer {
        id: RequestId,
        result: CallToolResult,
    }
    let answer = serde_json::from_str::<Answer>(data).ok()?;
    (answer.id == *id).then(|| Ok(ServerResult::CallToolResult(answer.result)))
}

/// A transport failure, kept as the source of the error so
/// [`super::upstream::never_connected`] can tell a refused connection.
fn transport_error(error: HttpError) -> ServiceError {
    ServiceError::TransportSend(rmcp::transport::DynamicTransportError::from_parts(
        "upstream",
        std::any::TypeId::of::<DirectCall>(),
        Box::new(error),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_result_is_read_as_one_and_other_messages_are_not() {
        let id = RequestId::String("gw-1".into());
        let data =
            r#"{"jsonrpc":"2.0","id":"gw-1","result":{"content":[{"type":"text","text":"hi"}]}}"#;
        assert!(matches!(
            answer_of(data, &id),
            Some(Ok(ServerResult::CallToolResult(_)))
        ));
        // Another request's answer, a notification, an error and a task are not.
        let other = r#"{"jsonrpc":"2.0","id":"gw-2","result":{"content":[]}}"#;
        assert!(answer_of(other, &id).is_none());
        let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"gw-1","progress":1}}"#;
        assert!(answer_of(progress, &id).is_none());
        let error = r#"{"jsonrpc":"2.0","id":"gw-1","error":{"code":-32602,"message":"no"}}"#;
        assert!(answer_of(error, &id).is_none());
        let task = r#"{"jsonrpc":"2.0","id":"gw-1","result":{"task":{"taskId":"t"}}}"#;
        assert!(answer_of(task, &id).is_none());
    }

    #[test]
    fn a_2026_request_leaves_its_headers_and_metadata_for_direct_calls() {
        let metrics = gateway_telemetry::Metrics::new("test").expect("metrics");
        let flood: SharedFlood = Arc::new(Mutex::new(super::super::upstream::FloodGuard::new(
            100,
            gateway_domain::ServerName::parse("t").expect("a server name"),
            "notification_flood",
            Arc::new(metrics),
        )));
        let mut request = rmcp::model::ClientRequest::ListToolsRequest(Default::default());
        let meta = rmcp::model::GetMeta::get_meta_mut(&mut request);
        meta.set_protocol_version(ProtocolVersion::V_2026_07_28);
        meta.set_client_info(rmcp::model::Implementation::new("mcp-gateway", "1"));
        meta.set_client_capabilities(Default::default());
        meta.set_progress_token(rmcp::model::ProgressToken(
            rmcp::model::NumberOrString::Number(7),
        ));
        let message = ClientJsonRpcMessage::request(request, RequestId::Number(7));
        let mut headers = HashMap::new();
        for (name, value) in [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
            ("x-api-key", "configured"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let tap = Tap::default();
        let uri: Arc<str> = "http://127.0.0.1:1/mcp".into();
        tap.record(&uri, None, &headers, &message, &DirectAuth::Plain, &flood);
        let target = tap.current().expect("tapped");
        assert!(target.session.is_none());
        let meta = target.meta.as_ref().expect("per-request metadata");
        let keys: Vec<&String> = meta.0.0.keys().collect();
        assert_eq!(keys.len(), 3, "no progress token: {keys:?}");
        assert!(meta.protocol_version().is_some() && meta.client_info().is_some());
        let call = target.headers_for("echo").expect("a bare name");
        assert_eq!(
            call.get(&HeaderName::from_static("mcp-method"))
                .map(|v| v.as_bytes()),
            Some(&b"tools/call"[..])
        );
        assert_eq!(
            call.get(&HeaderName::from_static("mcp-name"))
                .map(|v| v.as_bytes()),
            Some(&b"echo"[..])
        );
        assert_eq!(
            call.get(&HeaderName::from_static("x-api-key"))
                .map(|v| v.as_bytes()),
            Some(&b"configured"[..])
        );
        // A name that needs encoding goes through rmcp's transport.
        assert!(target.headers_for("with space").is_none());
        assert!(target.headers_for("ünï").is_none());
        // rmcp's discovery may settle on an older revision without a session: the
        // 2026-07-28 target is dropped, and nothing replaces it.
        headers.insert(
            HeaderName::from_static("mcp-protocol-version"),
            HeaderValue::from_static("2025-11-25"),
        );
        tap.record(&uri, None, &headers, &message, &DirectAuth::Plain, &flood);
        assert!(tap.current().is_none());
    }

    #[test]
    fn header_annotations_are_found_at_any_depth() {
        let plain = serde_json::json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let annotated = serde_json::json!({"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}});
        let nested = serde_json::json!({"anyOf": [{"properties": {"r": {"x-mcp-header": "R"}}}]});
        let object = |v: serde_json::Value| v.as_object().cloned().expect("object");
        assert!(!wants_param_headers(&object(plain)));
        assert!(wants_param_headers(&object(annotated)));
        assert!(wants_param_headers(&object(nested)));
    }

    #[test]
    fn only_a_session_based_revision_is_tapped() {
        let tap = Tap::default();
        let metrics = gateway_telemetry::Metrics::new("test").expect("metrics");
        let flood: SharedFlood = Arc::new(Mutex::new(super::super::upstream::FloodGuard::new(
            100,
            gateway_domain::ServerName::parse("t").expect("a server name"),
            "notification_flood",
            Arc::new(metrics),
        )));
        let message = ClientJsonRpcMessage::notification(
            rmcp::model::ClientNotification::InitializedNotification(Default::default()),
        );
        let uri: Arc<str> = "http://127.0.0.1:1/mcp".into();
        let session: Arc<str> = "s-1".into();
        let mut headers = HashMap::new();
        headers.insert(
            HeaderName::from_static("mcp-protocol-version"),
            HeaderValue::from_static("2026-07-28"),
        );
        tap.record(
            &uri,
            Some(&session),
            &headers,
            &message,
            &DirectAuth::Plain,
            &flood,
        );
        assert!(
            tap.current().is_none(),
            "on 2026-07-28 only a request shows the per-request metadata"
        );
        headers.insert(
            HeaderName::from_static("mcp-protocol-version"),
            HeaderValue::from_static("2025-06-18"),
        );
        tap.record(&uri, None, &headers, &message, &DirectAuth::Plain, &flood);
        assert!(tap.current().is_none(), "no session id yet");
        tap.record(
            &uri,
            Some(&session),
            &headers,
            &message,
            &DirectAuth::Plain,
            &flood,
        );
        assert_eq!(
            tap.current()
                .and_then(|t| t.session.as_deref().map(str::to_owned)),
            Some("s-1".into())
        );
        tap.forget("s-2");
        assert!(tap.current().is_some(), "another session is not forgotten");
        tap.forget("s-1");
        assert!(tap.current().is_none());
    }
}
