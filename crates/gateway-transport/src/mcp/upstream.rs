//! Connections to upstream MCP servers: one long-lived rmcp client session per
//! server, shared by every downstream call, over Streamable HTTP or a stdio child
//! process. Sessions are opened lazily, re-opened with backoff after a failure, and
//! negotiate the upstream's protocol era themselves (`server/discover`, falling back
//! to `initialize`).
//!
//! Each forwarded request gets a channel of [`CallEvent`]s: progress, logging and
//! server-to-client requests (sampling, elicitation, roots) that the upstream emits
//! while serving it. The downstream handler that owns the call drains that channel,
//! so those messages reach exactly the client whose call caused them.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gateway_domain::{ServerId, ServerName, Transport, UpstreamServer};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientRequest, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequestParams, ElicitResult, ErrorData, Implementation,
    ListRootsResult, LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken,
    ProtocolVersion, RequestId, ServerNotification, ServerResult, SubscriptionFilter,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, InboundStreamOrigin, NotificationContext, Peer,
    PeerRequestOptions, RequestContext, RunningService,
};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpResponseLimits,
};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient};
use tokio::sync::{mpsc, oneshot};

use super::direct::{
    DirectAuth, DirectCall, HeaderArguments, Outcome as DirectOutcome, Tap, Tapped, Target,
};

/// Environment variables a stdio upstream inherits from the gateway: enough to find
/// and run a program (`npx`, `uvx`, `python`), nothing that could carry a secret.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TZ"];

/// How upstream connections behave.
#[derive(Clone)]
pub struct UpstreamSettings {
    /// Longest wait for a new session (connect + handshake).
    pub connect_timeout: Duration,
    /// First wait before reconnecting after a failure; doubles up to 30 s.
    pub reconnect_backoff: Duration,
    /// Largest JSON response accepted from an HTTP upstream.
    pub max_response_bytes: usize,
    /// Notifications relayed from one upstream session per second, at most (bursts
    /// of as many allowed); beyond that they are dropped and counted, so an upstream
    /// flooding notifications cannot flood clients or keep the gateway busy.
    pub max_notifications_per_sec: u32,
    /// Obtains the gateway's own access tokens for upstreams registered with OAuth
    /// client credentials; without it, such upstreams cannot be reached.
    pub tokens: Option<Arc<dyn gateway_domain::UpstreamTokenSource>>,
    /// Where upstream connections may go, checked on every address a name resolves
    /// to (so DNS rebinding cannot reach a refused address) and on IP literals.
    pub egress: Arc<gateway_domain::EgressPolicy>,
}

/// An error with its causes (`error sending request: …: resolves to no allowed
/// address`), so the recorded health says why, not only what failed. Causes already
/// in the message are not repeated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The addresses `host` resolves to that the egress policy allows; an error naming
/// the refusal when there is none.
async fn allowed_addresses(
    policy: &gateway_domain::EgressPolicy,
    host: &str,
) -> Result<Vec<std::net::SocketAddr>, String> {
    let found = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?;
    let mut refusal = None;
    let allowed: Vec<std::net::SocketAddr> = found
        .filter(|address| match policy.check_ip(address.ip()) {
            Ok(()) => true,
            Err(reason) => {
                refusal.get_or_insert(reason);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        let reason = refusal.unwrap_or_else(|| "no address".to_owned());
        return Err(format!("`{host}` resolves to no allowed address: {reason}"));
    }
    Ok(allowed)
}

/// Resolves upstream host names for reqwest, dropping every address the egress policy
/// refuses: what a connection uses is what was checked, whatever DNS answers later.
struct EgressResolver(Arc<gateway_domain::EgressPolicy>);

impl reqwest::dns::Resolve for EgressResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let allowed = allowed_addresses(&policy, &host).await?;
            let addresses: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}

impl std::fmt::Debug for UpstreamSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSettings")
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_backoff", &self.reconnect_backoff)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_notifications_per_sec", &self.max_notifications_per_sec)
            .field("tokens", &self.tokens.is_some())
            .field("egress", &self.egress)
            .finish()
    }
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            reconnect_backoff: Duration::from_millis(500),
            max_response_bytes: 16 * 1024 * 1024,
            max_notifications_per_sec: 100,
            tokens: None,
            egress: Arc::default(),
        }
    }
}

/// Why an upstream could not serve a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// No session could be opened.
    #[error("cannot connect to upstream `{server}`: {reason}")]
    Connect {
        /// The upstream.
        server: ServerName,
        /// Why.
        reason: String,
    },
    /// A recent connection attempt failed; the next one waits for the backoff.
    #[error(
        "upstream `{server}` is unavailable (last error: {reason}); retrying in {retry_in_ms} ms"
    )]
    Backoff {
        /// The upstream.
        server: ServerName,
        /// The last connection error.
        reason: String,
        /// When the next attempt is allowed.
        retry_in_ms: u64,
    },
    /// The request failed on the way or the upstream closed the session.
    #[error("upstream `{server}` failed: {reason}")]
    Failed {
        /// The upstream.
        server: ServerName,
        /// Why.
        reason: String,
    },
}

/// Something the upstream sent while serving one forwarded request.
#[derive(Debug)]
pub enum CallEvent {
    /// `notifications/progress` for the request (token still the upstream's).
    Progress(ProgressNotificationParam),
    /// `notifications/message` sent on the request's stream.
    Log(LoggingMessageNotificationParam),
    /// A server-to-client request that the downstream client must answer.
    Request(
        ForwardedRequest,
        oneshot::Sender<Result<ForwardedReply, ErrorData>>,
    ),
}

/// Server-to-client requests the gateway relays.
#[derive(Debug)]
pub enum ForwardedRequest {
    /// `sampling/createMessage`.
    Sampling(CreateMessageRequestParams),
    /// `elicitation/create`.
    Elicitation(ElicitRequestParams),
    /// `roots/list`.
    Roots,
}

/// The downstream client's answers to [`ForwardedRequest`]s.
#[derive(Debug)]
pub enum ForwardedReply {
    /// Answer to sampling.
    Sampling(CreateMessageResult),
    /// Answer to elicitation.
    Elicitation(ElicitResult),
    /// Answer to roots/list.
    Roots(ListRootsResult),
}

/// Connection-level news the runtime acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamEvent {
    /// The upstream said its tools, prompts or resources changed.
    ListChanged(ServerId),
    /// A resource a client subscribed to changed (upstream URI).
    ResourceUpdated(ServerId, String),
}

/// Forwarded requests in flight on one connection, so upstream messages find the
/// downstream call they belong to.
/// What a relayed notification belongs to, before and after its request is registered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// The request whose response stream carried it (or the only one in flight).
    Request(RequestId),
    /// The progress token it names (stdio upstreams have no per-request streams).
    Token(ProgressToken),
}

/// The key the transport assigned to a notification, carried to the handler in the
/// notification's extensions.
#[derive(Debug, Clone)]
struct RelayKey(Key);

/// Notifications that arrived before `start` registered their request: an upstream
/// can emit its first log or progress message before the request's send returns.
#[derive(Default)]
struct Early {
    received: usize,
    events: Vec<CallEvent>,
}

/// Keys with early notifications kept at most; beyond that (they belong to requests
/// nobody registers, such as discovery's lists) they are dropped.
const MAX_EARLY: usize = 256;

/// Early notifications kept per key at most (the rest would only be relayed late).
const MAX_EARLY_EVENTS: usize = 64;

#[derive(Default)]
struct InFlightTable {
    by_request: HashMap<RequestId, Slot>,
    by_token: HashMap<ProgressToken, RequestId>,
    early: HashMap<Key, Early>,
    /// Every request sent on the session and not answered yet (forwarded calls and the
    /// gateway's own, such as discovery's lists), as the transport saw them go.
    in_transit: std::collections::HashSet<RequestId>,
}

/// One forwarded request: where its events go, and how many of its notifications
/// the transport has received but the forwarding loop has not consumed yet.
struct Slot {
    sender: mpsc::Sender<CallEvent>,
    undelivered: usize,
}

impl InFlightTable {
    fn resolve(&self, key: &Key) -> Option<RequestId> {
        match key {
            Key::Request(id) => self.by_request.contains_key(id).then(|| id.clone()),
            Key::Token(token) => self.by_token.get(token).cloned(),
        }
    }

    fn early_mut(&mut self, key: Key) -> &mut Early {
        if self.early.len() >= MAX_EARLY && !self.early.contains_key(&key) {
            self.early.clear();
        }
        self.early.entry(key).or_default()
    }
}

#[derive(Default)]
struct InFlight(Mutex<InFlightTable>);

/// The request whose response stream carried a message (Streamable HTTP upstreams).
fn origin(extensions: &rmcp::model::Extensions) -> Option<RequestId> {
    match extensions.get::<InboundStreamOrigin>() {
        Some(InboundStreamOrigin::OutboundRequest(id)) => Some(id.clone()),
        _ => None,
    }
}

fn progress_key(token: &ProgressToken, extensions: &rmcp::model::Extensions) -> Key {
    origin(extensions).map_or_else(|| Key::Token(token.clone()), Key::Request)
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, InFlightTable> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a sent request and hands it what arrived for it already.
    fn insert(&self, id: RequestId, token: ProgressToken, sender: mpsc::Sender<CallEvent>) {
        let mut table = self.lock();
        let mut undelivered = 0;
        for key in [Key::Request(id.clone()), Key::Token(token.clone())] {
            if let Some(early) = table.early.remove(&key) {
                undelivered += early.received;
                for event in early.events {
                    let _ = sender.try_send(event);
                }
            }
        }
        table.by_request.insert(
            id.clone(),
            Slot {
                sender,
                undelivered,
            },
        );
        table.by_token.insert(token, id);
    }

    fn remove(&self, id: &RequestId) {
        let mut table = self.lock();
        table.by_request.remove(id);
        table.by_token.retain(|_, request| request != id);
    }

    /// The key of a relayed notification (progress or logging), if it has one. The
    /// transport and the handler compute it from the same message.
    fn key_of(
        &self,
        notification: &ServerNotification,
        extensions: &rmcp::model::Extensions,
    ) -> Option<Key> {
        match notification {
            ServerNotification::ProgressNotification(progress) => {
                Some(progress_key(&progress.params.progress_token, extensions))
            }
            ServerNotification::LoggingMessageNotification(_) => self.log_key(extensions),
            _ => None,
        }
    }

    /// Log messages carry no request id: the response stream they came on names it
    /// (HTTP), else the only request on the session that awaits its answer does.
    fn log_key(&self, extensions: &rmcp::model::Extensions) -> Option<Key> {
        origin(extensions)
            .map(Key::Request)
            .or_else(|| self.only_in_transit().map(Key::Request))
    }

    fn only_in_transit(&self) -> Option<RequestId> {
        let table = self.lock();
        if table.in_transit.len() == 1 {
            table.in_transit.iter().next().cloned()
        } else {
            None
        }
    }

    /// The transport sent a request.
    fn sent(&self, id: RequestId) {
        self.lock().in_transit.insert(id);
    }

    /// The transport received the answer to a request.
    fn answered(&self, id: &RequestId) {
        self.lock().in_transit.remove(id);
    }

    /// The transport received a notification for `key` (counted in arrival order,
    /// before rmcp hands it to the handler on a task of its own).
    fn received(&self, key: Key) {
        let mut table = self.lock();
        match table.resolve(&key) {
            Some(id) => {
                if let Some(slot) = table.by_request.get_mut(&id) {
                    slot.undelivered += 1;
                }
            }
            None => table.early_mut(key).received += 1,
        }
    }

    /// Routes a notification's event to its request, or keeps it until the request
    /// is registered. Returns where to send it now, if anywhere.
    fn deliver(&self, key: Key, event: CallEvent) -> Option<(mpsc::Sender<CallEvent>, CallEvent)> {
        let mut table = self.lock();
        match table
            .resolve(&key)
            .and_then(|id| table.by_request.get(&id))
            .map(|slot| slot.sender.clone())
        {
            Some(sender) => Some((sender, event)),
            None => {
                let early = table.early_mut(key);
                if early.events.len() < MAX_EARLY_EVENTS {
                    early.events.push(event);
                }
                None
            }
        }
    }

    /// The request a server-to-client request belongs to, waiting briefly for its
    /// registration (the upstream may ask before the request's send returns).
    async fn request_for(
        &self,
        extensions: &rmcp::model::Extensions,
    ) -> Option<mpsc::Sender<CallEvent>> {
        for _ in 0..100 {
            let found = {
                let table = self.lock();
                match extensions.get::<InboundStreamOrigin>() {
                    Some(InboundStreamOrigin::OutboundRequest(id)) => {
                        table.by_request.get(id).map(|s| s.sender.clone())
                    }
                    _ if table.by_request.len() == 1 => {
                        table.by_request.values().next().map(|s| s.sender.clone())
                    }
                    _ => None,
                }
            };
            if found.is_some() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// The forwarding loop consumed one counted notification.
    fn consumed(&self, id: &RequestId) {
        if let Some(slot) = self.lock().by_request.get_mut(id) {
            slot.undelivered = slot.undelivered.saturating_sub(1);
        }
    }

    fn undelivered(&self, id: &RequestId) -> usize {
        self.lock()
            .by_request
            .get(id)
            .map_or(0, |slot| slot.undelivered)
    }
}

/// Error lines of a stdio upstream logged per second, at most.
const STDERR_LINES_PER_SEC: u32 = 50;

/// Longest stderr line logged; the rest of a longer line is skipped, so a child
/// writing without newlines cannot grow the gateway's memory.
const MAX_STDERR_LINE: usize = 4096;

/// Logs a stdio upstream's error output line by line, within [`MAX_STDERR_LINE`] and
/// the guard's rate, until the child closes it.
async fn log_stderr(stderr: tokio::process::ChildStderr, mut guard: FloodGuard) {
    use futures_util::StreamExt;
    use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, FramedRead};
    // Bytes, not text: invalid UTF-8 must not stop the reading (a child whose
    // stderr pipe is full blocks).
    let codec = AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), Vec::new(), MAX_STDERR_LINE);
    let mut lines = FramedRead::new(stderr, codec);
    // After a decoding error the stream yields `None` once, then reads on.
    let mut skipped_line = false;
    loop {
        match lines.next().await {
            Some(Ok(line)) => {
                if guard.admit() {
                    let line = String::from_utf8_lossy(&line);
                    tracing::info!(server = %guard.server, "upstream stderr: {}", line.trim_end());
                }
            }
            Some(Err(AnyDelimiterCodecError::MaxChunkLengthExceeded)) => {
                skipped_line = true;
                if guard.admit() {
                    tracing::info!(server = %guard.server, "upstream stderr: a line over {MAX_STDERR_LINE} bytes, skipped");
                }
            }
            None if std::mem::take(&mut skipped_line) => {}
            Some(Err(AnyDelimiterCodecError::Io(_))) | None => break,
        }
    }
}

/// Wraps an upstream transport to count, in arrival order, the notifications that
/// belong to a forwarded request, so the request's answer is released only after
/// they are relayed (rmcp delivers notifications on tasks of their own, so without
/// this the last progress notification could overtake the result).
struct CountingTransport<T> {
    inner: T,
    in_flight: Arc<InFlight>,
    flood: SharedFlood,
}

/// List changes and resource updates are never dropped (missing the last one would
/// leave clients stale): the runtime coalesces a burst of them into one refresh.
fn is_change_signal(notification: &ServerNotification) -> bool {
    matches!(
        notification,
        ServerNotification::ToolListChangedNotification(_)
            | ServerNotification::PromptListChangedNotification(_)
            | ServerNotification::ResourceListChangedNotification(_)
            | ServerNotification::ResourceUpdatedNotification(_)
    )
}

/// A session's [`FloodGuard`], shared by its transport and its direct calls.
pub(super) type SharedFlood = Arc<Mutex<FloodGuard>>;

/// Caps what one upstream session may make the gateway relay or log per second
/// (governor's GCRA): beyond the budget a message is dropped before any work is
/// spent on it, counted in `gateway_upstream_faults_total`, and reported in the log
/// at most once per second.
pub(super) struct FloodGuard {
    budget: governor::DefaultDirectRateLimiter,
    server: ServerName,
    fault: &'static str,
    metrics: Arc<gateway_telemetry::Metrics>,
    dropped: u64,
    last_report: Option<Instant>,
}

impl FloodGuard {
    pub(super) fn new(
        per_second: u32,
        server: ServerName,
        fault: &'static str,
        metrics: Arc<gateway_telemetry::Metrics>,
    ) -> Self {
        let rate = std::num::NonZeroU32::new(per_second).unwrap_or(std::num::NonZeroU32::MIN);
        Self {
            budget: governor::RateLimiter::direct(governor::Quota::per_second(rate)),
            server,
            fault,
            metrics,
            dropped: 0,
            last_report: None,
        }
    }

    /// Whether one more message fits the budget; a drop is counted and reported.
    pub(super) fn admit(&mut self) -> bool {
        if self.budget.check().is_ok() {
            return true;
        }
        self.metrics
            .upstream_faults
            .with_label_values(&[self.server.as_str(), self.fault])
            .inc();
        self.dropped += 1;
        let now = Instant::now();
        if self
            .last_report
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            tracing::warn!(server = %self.server, fault = self.fault, dropped = self.dropped, "upstream over its message budget; dropping");
            self.last_report = Some(now);
            self.dropped = 0;
        }
        false
    }
}

impl<T: rmcp::transport::Transport<RoleClient>> rmcp::transport::Transport<RoleClient>
    for CountingTransport<T>
{
    type Error = T::Error;

    fn name() -> std::borrow::Cow<'static, str> {
        // Appears in rmcp's error messages, which end up in the server's health.
        "upstream".into()
    }

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<RoleClient>,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        // A `subscriptions/listen` stays open for the session's lifetime: it is not
        // a request awaiting its answer.
        if let rmcp::model::JsonRpcMessage::Request(request) = &item
            && !matches!(
                request.request,
                ClientRequest::SubscriptionsListenRequest(_)
            )
        {
            self.in_flight.sent(request.id.clone());
        }
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<RoleClient>> {
        let mut message = loop {
            let message = self.inner.receive().await;
            match &message {
                Some(rmcp::model::JsonRpcMessage::Notification(notification))
                    if !is_change_signal(&notification.notification)
                        && !self
                            .flood
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .admit() => {}
                _ => break message,
            }
        };
        match &mut message {
            Some(rmcp::model::JsonRpcMessage::Notification(notification)) => {
                let extensions = rmcp::model::GetExtensions::extensions(&notification.notification);
                if let Some(key) = self
                    .in_flight
                    .key_of(&notification.notification, extensions)
                {
                    self.in_flight.received(key.clone());
                    // The handler routes by this same key: it runs later, when the
                    // requests in transit may have changed.
                    rmcp::model::GetExtensions::extensions_mut(&mut notification.notification)
                        .insert(RelayKey(key));
                }
            }
            Some(rmcp::model::JsonRpcMessage::Response(response)) => {
                self.in_flight.answered(&response.id)
            }
            Some(rmcp::model::JsonRpcMessage::Error(error)) => {
                if let Some(id) = &error.id {
                    self.in_flight.answered(id);
                }
            }
            _ => {}
        }
        message
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await
    }
}

/// The rmcp client handler of one upstream session: routes what the upstream sends
/// to the call it belongs to, and list changes to the runtime.
#[derive(Clone)]
struct GatewayClient {
    server: ServerName,
    server_id: ServerId,
    in_flight: Arc<InFlight>,
    events: mpsc::UnboundedSender<UpstreamEvent>,
}

impl GatewayClient {
    async fn relay(
        &self,
        extensions: &rmcp::model::Extensions,
        request: ForwardedRequest,
    ) -> Result<ForwardedReply, ErrorData> {
        let Some(call) = self.in_flight.request_for(extensions).await else {
            if matches!(request, ForwardedRequest::Roots) {
                // Outside a client's call there are no client roots to offer.
                return Ok(ForwardedReply::Roots(ListRootsResult::default()));
            }
            return Err(ErrorData::invalid_request(
                "the gateway cannot tell which client call this request belongs to; it relays server-to-client \
                 requests only while serving that client's call",
                None,
            ));
        };
        ask_caller(&call, request).await
    }
}

/// Hands a server-to-client request to the forwarding loop of the call it belongs to
/// and waits for the downstream client's answer.
pub(super) async fn ask_caller(
    call: &mpsc::Sender<CallEvent>,
    request: ForwardedRequest,
) -> Result<ForwardedReply, ErrorData> {
    let (reply, answer) = oneshot::channel();
    call.send(CallEvent::Request(request, reply))
        .await
        .map_err(|_| {
            ErrorData::internal_error("the client call this request belongs to has ended", None)
        })?;
    answer
        .await
        .map_err(|_| ErrorData::internal_error("the client call ended before answering", None))?
}

/// The runtime's news in a list change or resource update an upstream sent.
pub(super) fn change_event(
    server: ServerId,
    notification: &ServerNotification,
) -> Option<UpstreamEvent> {
    match notification {
        ServerNotification::ResourceUpdatedNotification(updated) => Some(
            UpstreamEvent::ResourceUpdated(server, updated.params.uri.clone()),
        ),
        _ if is_change_signal(notification) => Some(UpstreamEvent::ListChanged(server)),
        _ => None,
    }
}

impl ClientHandler for GatewayClient {
    fn get_info(&self) -> ClientConfig {
        let capabilities = ClientCapabilities::builder()
            .enable_roots()
            .enable_sampling()
            .enable_elicitation()
            .build();
        ClientConfig::new(
            capabilities,
            Implementation::new("mcp-gateway", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        context: NotificationContext<RoleClient>,
    ) {
        let key = context.extensions.get::<RelayKey>().map(|k| k.0.clone());
        let key = key.unwrap_or_else(|| progress_key(&params.progress_token, &context.extensions));
        if let Some((call, event)) = self.in_flight.deliver(key, CallEvent::Progress(params)) {
            let _ = call.send(event).await;
        }
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        context: NotificationContext<RoleClient>,
    ) {
        let key = context.extensions.get::<RelayKey>().map(|k| k.0.clone());
        match key.or_else(|| self.in_flight.log_key(&context.extensions)) {
            Some(key) => {
                if let Some((call, event)) = self.in_flight.deliver(key, CallEvent::Log(params)) {
                    let _ = call.send(event).await;
                }
            }
            None => {
                tracing::info!(server = %self.server, level = ?params.level, data = %params.data, "upstream log message")
            }
        }
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        match self
            .relay(&context.extensions, ForwardedRequest::Sampling(params))
            .await?
        {
            ForwardedReply::Sampling(result) => Ok(result),
            _ => Err(ErrorData::internal_error(
                "mismatched reply to sampling",
                None,
            )),
        }
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        match self
            .relay(&context.extensions, ForwardedRequest::Elicitation(params))
            .await?
        {
            ForwardedReply::Elicitation(result) => Ok(result),
            _ => Err(ErrorData::internal_error(
                "mismatched reply to elicitation",
                None,
            )),
        }
    }

    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        match self
            .relay(&context.extensions, ForwardedRequest::Roots)
            .await?
        {
            ForwardedReply::Roots(result) => Ok(result),
            _ => Err(ErrorData::internal_error(
                "mismatched reply to roots/list",
                None,
            )),
        }
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self
            .events
            .send(UpstreamEvent::ResourceUpdated(self.server_id, params.uri));
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.events.send(UpstreamEvent::ListChanged(self.server_id));
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.events.send(UpstreamEvent::ListChanged(self.server_id));
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.events.send(UpstreamEvent::ListChanged(self.server_id));
    }
}

/// An open upstream session.
struct Session {
    service: RunningService<RoleClient, GatewayClient>,
    /// The spec version it was opened for: a changed spec means a new session.
    spec_version: i64,
}

/// What a connection is doing now.
enum State {
    Idle,
    Open(Session),
    Failed {
        reason: String,
        retry_at: Instant,
        backoff: Duration,
    },
}

/// One upstream's connection slot.
struct Connection {
    state: tokio::sync::Mutex<State>,
    in_flight: Arc<InFlight>,
    /// The Streamable HTTP session rmcp holds open, for direct calls.
    tap: Arc<Tap>,
}

/// A forwarded request whose answer is pending.
pub struct PendingCall {
    /// The upstream's answer (or its JSON-RPC error) when it comes.
    pub response: std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<ServerResult, rmcp::ServiceError>> + Send>,
    >,
    /// Messages the upstream sends while serving it.
    pub events: mpsc::Receiver<CallEvent>,
    peer: Peer<RoleClient>,
    id: RequestId,
    in_flight: Arc<InFlight>,
    /// The id rmcp gave a direct call it took over (the session had expired).
    handed_over: Option<Arc<Mutex<Option<RequestId>>>>,
}

impl PendingCall {
    /// The id the upstream knows the request by now.
    fn current_id(&self) -> RequestId {
        self.handed_over
            .as_ref()
            .and_then(|id| id.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .unwrap_or_else(|| self.id.clone())
    }

    /// Notes that the forwarding loop took `event` from [`PendingCall::events`].
    pub fn consumed(&self, event: &CallEvent) {
        if matches!(event, CallEvent::Progress(_) | CallEvent::Log(_)) {
            self.in_flight.consumed(&self.current_id());
        }
    }

    /// Notifications of this request that arrived but are not relayed yet.
    pub fn undelivered(&self) -> usize {
        self.in_flight.undelivered(&self.current_id())
    }

    /// Sends `notifications/cancelled` upstream (the client gave up or the call timed out).
    pub async fn cancel(&mut self, reason: &str) {
        let params = rmcp::model::CancelledNotificationParam::new(
            Some(self.current_id()),
            Some(reason.to_owned()),
        );
        let _ = self.peer.notify_cancelled(params).await;
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        self.in_flight.remove(&self.id);
        if let Some(handed_over) = &self.handed_over
            && let Some(id) = handed_over
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
        {
            self.in_flight.remove(id);
        }
    }
}

/// What a direct call needs: the session, the call's headers, the thread's client.
struct DirectRoute {
    target: Arc<Target>,
    headers: HashMap<http::HeaderName, http::HeaderValue>,
    http: reqwest::Client,
}

/// Every upstream connection of the process.
pub struct UpstreamPool {
    /// One connection per endpoint of each server: (server, endpoint index).
    connections: Mutex<HashMap<(ServerId, usize), Arc<Connection>>>,
    settings: UpstreamSettings,
    http: reqwest::Client,
    /// Each thread's own client for direct calls, so a call's connection is driven by
    /// the thread that waits for it.
    local_http: thread_local::ThreadLocal<reqwest::Client>,
    events: mpsc::UnboundedSender<UpstreamEvent>,
    metrics: Arc<gateway_telemetry::Metrics>,
}

/// Headers may contain only visible ASCII; the domain already refused CR/LF.
fn header_map(
    headers: &BTreeMap<String, gateway_domain::Secret>,
) -> Result<HashMap<http::HeaderName, http::HeaderValue>, String> {
    headers
        .iter()
        .map(|(name, value)| {
            let name =
                http::HeaderName::from_str(name).map_err(|e| format!("header {name}: {e}"))?;
            let value = http::HeaderValue::from_str(value.expose())
                .map_err(|_| format!("header {name}: invalid value"))?;
            Ok((name, value))
        })
        .collect()
}

/// The HTTP client of upstream sessions: no delay on small writes, the egress policy
/// on every name it resolves, redirects only within one origin.
fn http_client(settings: &UpstreamSettings) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .dns_resolver(Arc::new(EgressResolver(settings.egress.clone())))
        .pool_idle_timeout(Duration::from_secs(90))
        // Static credentials must never follow a redirect to another origin.
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt.previous().last().is_some_and(|previous| {
                previous.scheme() == attempt.url().scheme()
                    && previous.host_str() == attempt.url().host_str()
                    && previous.port_or_known_default() == attempt.url().port_or_known_default()
            });
            if same_origin && attempt.previous().len() < 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .build()
        .map_err(|e| format!("cannot build the upstream HTTP client: {e}"))
}

impl UpstreamPool {
    /// A pool whose connections report list changes on `events` and the upstream
    /// misbehaviour they absorb on `metrics`.
    pub fn new(
        settings: UpstreamSettings,
        events: mpsc::UnboundedSender<UpstreamEvent>,
        metrics: Arc<gateway_telemetry::Metrics>,
    ) -> Result<Self, String> {
        // reqwest is built without a TLS provider of its own; the process uses ring.
        // Installing twice (several runtimes in one test process) is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = http_client(&settings)?;
        Ok(Self {
            connections: Mutex::new(HashMap::new()),
            settings,
            http,
            local_http: thread_local::ThreadLocal::new(),
            events,
            metrics,
        })
    }

    /// The calling thread's client for direct calls.
    fn local_http(&self) -> Result<reqwest::Client, String> {
        self.local_http
            .get_or_try(|| http_client(&self.settings))
            .cloned()
    }

    fn connection(&self, id: ServerId, endpoint: usize) -> Arc<Connection> {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connections
            .entry((id, endpoint))
            .or_insert_with(|| {
                Arc::new(Connection {
                    state: tokio::sync::Mutex::new(State::Idle),
                    in_flight: Arc::new(InFlight::default()),
                    tap: Arc::new(Tap::default()),
                })
            })
            .clone()
    }

    /// The session peer for one endpoint of `server`, opening a session if needed.
    /// Returns the peer and the negotiated protocol version. After a failed attempt,
    /// calls wait for the backoff; a health check (`probe`) does not, since it is
    /// what finds out that the upstream is back.
    pub async fn peer(
        &self,
        server: &UpstreamServer,
        endpoint: usize,
        probe: bool,
    ) -> Result<(Peer<RoleClient>, Option<String>), UpstreamError> {
        let connection = self.connection(server.id, endpoint);
        let mut state = connection.state.lock().await;
        if let State::Open(session) = &*state
            && session.spec_version == server.version
            && !session.service.is_transport_closed()
        {
            let version = negotiated_version(&session.service);
            return Ok((session.service.peer().clone(), version));
        }
        let backoff = match &*state {
            State::Failed {
                reason,
                retry_at,
                backoff,
            } => {
                let now = Instant::now();
                if now < *retry_at && !probe {
                    return Err(UpstreamError::Backoff {
                        server: server.spec.name.clone(),
                        reason: reason.clone(),
                        retry_in_ms: u64::try_from(retry_at.duration_since(now).as_millis())
                            .unwrap_or(u64::MAX),
                    });
                }
                (*backoff * 2).min(Duration::from_secs(30))
            }
            _ => self.settings.reconnect_backoff,
        };
        // Jitter, so many gateways (or upstreams) do not reconnect in lockstep.
        let backoff = super::monitor::jittered(backoff);
        if let State::Open(session) = std::mem::replace(&mut *state, State::Idle) {
            let _ = session.service.cancel().await;
        }
        // Direct calls wait for the new session's id.
        connection.tap.clear();
        let client = GatewayClient {
            server: server.spec.name.clone(),
            server_id: server.id,
            in_flight: connection.in_flight.clone(),
            events: self.events.clone(),
        };
        let opening = self.open(server, endpoint, client, connection.tap.clone());
        match tokio::time::timeout(self.settings.connect_timeout, opening).await {
            Ok(Ok(service)) => {
                let peer = service.peer().clone();
                let version = negotiated_version(&service);
                self.watch_list_changes(server, &peer);
                tracing::info!(server = %server.spec.name, protocol = version.as_deref().unwrap_or("unknown"), "upstream session opened");
                *state = State::Open(Session {
                    service,
                    spec_version: server.version,
                });
                Ok((peer, version))
            }
            outcome => {
                let reason = match outcome {
                    Ok(Err(reason)) => reason,
                    _ => format!(
                        "no session within {} ms",
                        self.settings.connect_timeout.as_millis()
                    ),
                };
                tracing::warn!(server = %server.spec.name, %reason, "upstream connection failed");
                *state = State::Failed {
                    reason: reason.clone(),
                    retry_at: Instant::now() + backoff,
                    backoff,
                };
                Err(UpstreamError::Connect {
                    server: server.spec.name.clone(),
                    reason,
                })
            }
        }
    }

    async fn open(
        &self,
        server: &UpstreamServer,
        endpoint: usize,
        client: GatewayClient,
        tap: Arc<Tap>,
    ) -> Result<RunningService<RoleClient, GatewayClient>, String> {
        // A server known to speak a session-based revision is not probed again
        // (probing waits up to 10 s for `server/discover` on servers that ignore it).
        let known_legacy = server
            .health
            .protocol_version
            .as_deref()
            .and_then(|v| {
                serde_json::from_value::<ProtocolVersion>(serde_json::Value::String(v.to_owned()))
                    .ok()
            })
            .is_some_and(|version| version.has_initialize());
        let lifecycle = if known_legacy {
            ClientLifecycleMode::Initialize
        } else {
            ClientLifecycleMode::Auto {
                preferred_versions: ProtocolVersion::KNOWN_VERSIONS
                    .iter()
                    .rev()
                    .cloned()
                    .collect(),
                legacy_version: None,
            }
        };
        match &server.spec.transport {
            Transport::StreamableHttp { headers, oauth, .. } => {
                let endpoints = server.spec.transport.endpoints();
                let url = endpoints
                    .get(endpoint)
                    .ok_or_else(|| format!("server has no endpoint #{endpoint}"))?;
                // IP literals never reach the resolver: they are checked here. A name is
                // checked here too, for a clear reason (the resolver guards the
                // connection itself).
                self.settings.egress.check_url(url)?;
                if let Some(url::Host::Domain(host)) = url.host() {
                    allowed_addresses(&self.settings.egress, host).await?;
                }
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(header_map(headers)?)
                    .max_json_response_size(self.settings.max_response_bytes);
                config.reinit_on_expired_session = true;
                let in_flight = client.in_flight.clone();
                let Some(credentials) = oauth else {
                    let flood = self.notification_guard(server);
                    let http = Tapped {
                        inner: self.http.clone(),
                        tap,
                        auth: DirectAuth::Plain,
                        flood: flood.clone(),
                    };
                    let transport = CountingTransport {
                        inner: StreamableHttpClientTransport::with_client(http, config),
                        in_flight,
                        flood,
                    };
                    return client
                        .serve_with_lifecycle(transport, lifecycle)
                        .await
                        .map_err(|e| error_chain(&e));
                };
                let tokens = self.settings.tokens.clone().ok_or(
                    "this upstream uses OAuth client credentials, but this gateway has no token source",
                )?;
                // Fetched first so a failure names itself instead of failing the handshake.
                tokens
                    .access_token(credentials, None)
                    .await
                    .map_err(|reason| {
                        format!("cannot obtain the gateway's access token: {reason}")
                    })?;
                let bearer = super::bearer::BearerClient {
                    http: self.http.clone(),
                    tokens,
                    credentials: Arc::new((**credentials).clone()),
                };
                let flood = self.notification_guard(server);
                let bearer = Tapped {
                    inner: bearer.clone(),
                    tap,
                    auth: DirectAuth::Bearer(bearer),
                    flood: flood.clone(),
                };
                let transport = CountingTransport {
                    inner: StreamableHttpClientTransport::with_client(bearer, config),
                    in_flight,
                    flood,
                };
                client
                    .serve_with_lifecycle(transport, lifecycle)
                    .await
                    .map_err(|e| error_chain(&e))
            }
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let mut process = tokio::process::Command::new(command);
                // The child gets only what it was configured with, plus the basics a
                // runtime needs: never the gateway's own environment (database URL, keys).
                process.args(args).kill_on_drop(true).env_clear();
                for key in INHERITED_ENV {
                    if let Some(value) = std::env::var_os(key) {
                        process.env(key, value);
                    }
                }
                process.envs(env.iter().map(|(k, v)| (k.as_str(), v.expose())));
                if let Some(dir) = cwd {
                    process.current_dir(dir);
                }
                let (transport, stderr) = TokioChildProcess::builder(process)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot start `{command}`: {e}"))?;
                if let Some(stderr) = stderr {
                    let guard = FloodGuard::new(
                        STDERR_LINES_PER_SEC,
                        server.spec.name.clone(),
                        "stderr_flood",
                        self.metrics.clone(),
                    );
                    tokio::spawn(log_stderr(stderr, guard));
                }
                let transport = CountingTransport {
                    inner: transport,
                    in_flight: client.in_flight.clone(),
                    flood: self.notification_guard(server),
                };
                client
                    .serve_with_lifecycle(transport, lifecycle)
                    .await
                    .map_err(|e| error_chain(&e))
            }
        }
    }

    /// The notification budget of one upstream session, shared by its transport and
    /// the direct calls made on it.
    fn notification_guard(&self, server: &UpstreamServer) -> SharedFlood {
        Arc::new(Mutex::new(FloodGuard::new(
            self.settings.max_notifications_per_sec,
            server.spec.name.clone(),
            "notification_flood",
            self.metrics.clone(),
        )))
    }

    /// 2026-07-28 upstreams announce list changes only on a `subscriptions/listen`
    /// stream; open one for the session's lifetime. (Session-based upstreams send them
    /// unprompted, to [`GatewayClient`].)
    fn watch_list_changes(&self, server: &UpstreamServer, peer: &Peer<RoleClient>) {
        let modern = peer
            .peer_info()
            .is_some_and(|info| !info.protocol_version.has_initialize());
        if !modern {
            return;
        }
        let (peer, events, id, name) = (
            peer.clone(),
            self.events.clone(),
            server.id,
            server.spec.name.clone(),
        );
        tokio::spawn(async move {
            let filter = SubscriptionFilter::builder()
                .tools_list_changed()
                .prompts_list_changed()
                .resources_list_changed()
                .build();
            let mut subscription = match peer.listen(filter).await {
                Ok(subscription) => subscription,
                Err(error) => {
                    tracing::info!(server = %name, %error, "upstream accepts no list-change subscription");
                    return;
                }
            };
            while let Ok(Some(notification)) = subscription.next().await {
                let list_change = matches!(
                    notification,
                    ServerNotification::ToolListChangedNotification(_)
                        | ServerNotification::PromptListChangedNotification(_)
                        | ServerNotification::ResourceListChangedNotification(_)
                );
                if list_change && events.send(UpstreamEvent::ListChanged(id)).is_err() {
                    break;
                }
            }
        });
    }

    /// Starts watching one upstream resource for a client: `resources/subscribe` on a
    /// session-era upstream (updates arrive on the session), a `subscriptions/listen`
    /// stream on a 2026-07-28 one (returned, to end the watch by dropping it).
    pub async fn watch_resource(
        &self,
        server: &UpstreamServer,
        endpoint: usize,
        uri: &str,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, rmcp::model::ErrorData> {
        let (peer, _) = self
            .peer(server, endpoint, false)
            .await
            .map_err(|e| rmcp::model::ErrorData::internal_error(e.to_string(), None))?;
        let modern = peer
            .peer_info()
            .is_some_and(|info| !info.protocol_version.has_initialize());
        if !modern {
            peer.subscribe(rmcp::model::SubscribeRequestParams::new(uri))
                .await
                .map_err(|error| match error {
                    rmcp::ServiceError::McpError(data) => data,
                    other => rmcp::model::ErrorData::internal_error(other.to_string(), None),
                })?;
            return Ok(None);
        }
        let filter = SubscriptionFilter::builder()
            .resource_subscription(uri.to_owned())
            .build();
        let mut subscription = peer.listen(filter).await.map_err(|error| match error {
            rmcp::ServiceError::McpError(data) => data,
            other => rmcp::model::ErrorData::internal_error(other.to_string(), None),
        })?;
        let (events, id) = (self.events.clone(), server.id);
        Ok(Some(tokio::spawn(async move {
            while let Ok(Some(notification)) = subscription.next().await {
                if let ServerNotification::ResourceUpdatedNotification(updated) = notification
                    && events
                        .send(UpstreamEvent::ResourceUpdated(id, updated.params.uri))
                        .is_err()
                {
                    break;
                }
            }
        })))
    }

    /// Stops a session-era upstream's updates for `uri` (the last client left).
    pub async fn unwatch_resource(&self, server: &UpstreamServer, endpoint: usize, uri: &str) {
        if let Ok((peer, _)) = self.peer(server, endpoint, false).await
            && peer
                .peer_info()
                .is_some_and(|info| info.protocol_version.has_initialize())
        {
            let _ = peer
                .unsubscribe(rmcp::model::UnsubscribeRequestParams::new(uri))
                .await;
        }
    }

    /// A health check of one endpoint: `ping` on its session, opened if needed even
    /// during a reconnect backoff. Any answer, a JSON-RPC error included, means the
    /// upstream is alive. Returns the negotiated protocol version, or why it failed
    /// and whether a session was open (a ping lost on an open session is worth one
    /// retry; a failed connection is not, it was the retry already).
    ///
    /// Opening a session has `connect_timeout` (an upstream that starts slowly is not
    /// failed by a short check); `timeout` bounds the ping itself. Returns the ping's
    /// own round trip.
    pub async fn ping(
        &self,
        server: &UpstreamServer,
        endpoint: usize,
        timeout: Duration,
    ) -> Result<(Option<String>, Duration), (String, bool)> {
        let (peer, version) = self
            .peer(server, endpoint, true)
            .await
            .map_err(|e| (e.to_string(), false))?;
        let ping = ClientRequest::PingRequest(rmcp::model::PingRequest::default());
        let started = Instant::now();
        match tokio::time::timeout(timeout, peer.send_request(ping)).await {
            Ok(Ok(_) | Err(rmcp::ServiceError::McpError(_))) => Ok((version, started.elapsed())),
            Ok(Err(error)) => Err((format!("ping failed: {error}"), true)),
            Err(_) => Err((
                format!("no answer to ping within {} ms", timeout.as_millis()),
                false,
            )),
        }
    }

    /// Sends `request` to `server`, registering a channel for what the upstream sends
    /// while serving it.
    pub async fn start(
        &self,
        server: &UpstreamServer,
        endpoint: usize,
        request: ClientRequest,
    ) -> Result<PendingCall, UpstreamError> {
        let (peer, _) = self.peer(server, endpoint, false).await?;
        let connection = self.connection(server.id, endpoint);
        if let Some(route) = self.direct_route(&connection, &request) {
            return Ok(self.start_direct(server, &connection, &peer, route, request));
        }
        let handle = peer
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await
            .map_err(|e| {
                // Refused before a byte went out: the request certainly never arrived.
                if never_connected(&e) {
                    UpstreamError::Connect {
                        server: server.spec.name.clone(),
                        reason: e.to_string(),
                    }
                } else {
                    UpstreamError::Failed {
                        server: server.spec.name.clone(),
                        reason: e.to_string(),
                    }
                }
            })?;
        let (sender, events) = mpsc::channel(64);
        let id = handle.id.clone();
        connection
            .in_flight
            .insert(id.clone(), handle.progress_token.clone(), sender);
        Ok(PendingCall {
            response: Box::pin(handle.await_response()),
            events,
            peer,
            id,
            in_flight: connection.in_flight.clone(),
            handed_over: None,
        })
    }

    /// How `request` goes as a direct call ([`super::direct`]), if it can: a
    /// `tools/call`, on a session rmcp holds open, and on 2026-07-28 for a tool that
    /// wants no argument as a header (rmcp writes those).
    fn direct_route(
        &self,
        connection: &Connection,
        request: &ClientRequest,
    ) -> Option<DirectRoute> {
        let ClientRequest::CallToolRequest(call) = request else {
            return None;
        };
        let target = connection.tap.current()?;
        if target.meta.is_some() && call.extensions.get::<HeaderArguments>().is_some() {
            return None;
        }
        let headers = target.headers_for(&call.params.name)?;
        let http = self
            .local_http()
            .inspect_err(|reason| tracing::warn!(%reason, "direct calls are off on this thread"))
            .ok()?;
        Some(DirectRoute {
            target,
            headers,
            http,
        })
    }

    /// Starts a direct call; if its session turns out to have expired, rmcp sends the
    /// call on a new one.
    fn start_direct(
        &self,
        server: &UpstreamServer,
        connection: &Connection,
        peer: &Peer<RoleClient>,
        DirectRoute {
            target,
            headers,
            http,
        }: DirectRoute,
        mut request: ClientRequest,
    ) -> PendingCall {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let number = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A string id never collides with rmcp's numbered requests on the same session.
        let label: Arc<str> = format!("gw-{number}").into();
        let id = RequestId::String(label.clone());
        let token = ProgressToken(rmcp::model::NumberOrString::String(label));
        let fallback = request.clone();
        let meta = rmcp::model::GetMeta::get_meta_mut(&mut request);
        meta.set_progress_token(token.clone());
        if let Some(per_request) = &target.meta {
            meta.0
                .0
                .extend(per_request.0.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let (sender, events) = mpsc::channel(64);
        // Registered like any forwarded request: what the upstream sends for this call
        // on another stream (its standalone GET stream) finds it, and no other call.
        connection
            .in_flight
            .insert(id.clone(), token, sender.clone());
        connection.in_flight.sent(id.clone());
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_json_response_size = self.settings.max_response_bytes;
        let call = DirectCall {
            target: target.clone(),
            id: id.clone(),
            limits,
            events: sender.clone(),
            server: server.id,
            changes: self.events.clone(),
        };
        let message = ClientJsonRpcMessage::request(request, id.clone());
        let handed_over = Arc::new(Mutex::new(None));
        let response = {
            let (peer, in_flight, tap, handed_over) = (
                peer.clone(),
                connection.in_flight.clone(),
                connection.tap.clone(),
                handed_over.clone(),
            );
            let direct_id = id.clone();
            async move {
                let outcome = call.run(http, message, headers).await;
                in_flight.answered(&direct_id);
                match outcome {
                    DirectOutcome::Answered(answer) => answer,
                    DirectOutcome::SessionExpired => {
                        tracing::info!(
                            "the upstream no longer knows its session; the call goes on a new one"
                        );
                        if let Some(session) = &target.session {
                            tap.forget(session);
                        }
                        let handle = peer
                            .send_request_with_option(fallback, PeerRequestOptions::no_options())
                            .await?;
                        in_flight.insert(handle.id.clone(), handle.progress_token.clone(), sender);
                        *handed_over.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(handle.id.clone());
                        handle.await_response().await
                    }
                }
            }
        };
        PendingCall {
            response: Box::pin(response),
            events,
            peer: peer.clone(),
            id,
            in_flight: connection.in_flight.clone(),
            handed_over: Some(handed_over),
        }
    }

    /// Closes the sessions of a server (removed, disabled, or its spec changed).
    pub async fn close(&self, id: ServerId) {
        let closing: Vec<Arc<Connection>> = {
            let mut connections = self
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let keys: Vec<(ServerId, usize)> = connections
                .keys()
                .filter(|(server, _)| *server == id)
                .copied()
                .collect();
            keys.iter()
                .filter_map(|key| connections.remove(key))
                .collect()
        };
        for connection in closing {
            connection.tap.clear();
            let previous = std::mem::replace(&mut *connection.state.lock().await, State::Idle);
            if let State::Open(session) = previous {
                let _ = session.service.cancel().await;
            }
        }
    }

    /// Closes every session (stdio children are terminated), at shutdown.
    pub async fn close_all(&self) {
        let ids: std::collections::BTreeSet<ServerId> = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.close(id).await;
        }
    }
}

/// Whether an HTTP send failed while connecting (so nothing reached the upstream).
pub(crate) fn never_connected(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        // rmcp keeps reqwest's error inside its own, without a `source` link.
        let http = error.downcast_ref::<rmcp::transport::streamable_http_client::StreamableHttpError<reqwest::Error>>();
        if let Some(rmcp::transport::streamable_http_client::StreamableHttpError::Client(inner)) =
            http
            && inner.is_connect()
        {
            return true;
        }
        if error
            .downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_connect)
        {
            return true;
        }
        current = error.source();
    }
    false
}

fn negotiated_version(service: &RunningService<RoleClient, GatewayClient>) -> Option<String> {
    service
        .peer()
        .peer_info()
        .map(|info| info.protocol_version.to_string())
}
