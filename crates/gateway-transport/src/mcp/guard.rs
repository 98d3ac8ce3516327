//! A gate in front of the MCP transport: caps on open streams and sessions, bodies
//! read within a size and a deadline (`413` and `408`, with `-32600`), malformed
//! JSON-RPC answered with the error the specification names
//! ([`gateway_router::jsonrpc::check`]), and rmcp's plain-text refusals rewritten as
//! JSON-RPC errors. Everything else passes through to rmcp unchanged.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};

/// The session header, in the form actix's header maps take.
const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{Error, HttpMessage, HttpResponse};
use futures_util::StreamExt;
use serde_json::{Value, json};

use std::sync::Arc;

use gateway_router::jsonrpc::{Rejection, inspect};

use super::replies::{Reply, ReplyRoute, Resume, lost_answer};
use super::roaming::{Refused, Restore, Roaming};
use super::sealed::{SessionClaims, carried_init};
use super::sessions::{
    SessionBook, SessionRefusal, StreamBook, StreamPermit, TOO_MANY_SESSIONS, TOO_MANY_STREAMS,
};

/// Who is opening a session, for the per-caller cap: the token's subject, the admin
/// key, or else the client's address.
fn caller_key(req: &ServiceRequest, trust_forwarded_for: bool) -> String {
    authenticated(req).unwrap_or_else(|| {
        format!(
            "address:{}",
            crate::rest::ip_limit::client_address(req.request(), trust_forwarded_for)
                .map(|a| a.to_string())
                .unwrap_or_default()
        )
    })
}

/// The caller the auth gate admitted: the token's subject or the admin key.
fn authenticated(req: &ServiceRequest) -> Option<String> {
    match req.extensions().get::<crate::rest::auth::Caller>()? {
        crate::rest::auth::Caller::Token(principal) => {
            Some(format!("subject:{}", principal.subject))
        }
        crate::rest::auth::Caller::ApiKey => Some("admin-api-key".to_owned()),
    }
}

/// Whose a session is, for its sealed id: the authenticated caller, else
/// `anonymous` (an address is no identity: it changes, and a load balancer hides it).
fn session_owner(req: &ServiceRequest) -> String {
    authenticated(req).unwrap_or_else(|| "anonymous".to_owned())
}

/// The endpoint a session belongs to: the request path without a trailing `/`.
fn endpoint_of(req: &ServiceRequest) -> String {
    let path = req.path().trim_end_matches('/');
    if path.is_empty() { "/" } else { path }.to_owned()
}

/// `404` with JSON-RPC `-32001`: the session id is not (or no longer) usable.
fn unknown_session(refused: &Refused, id: Value) -> HttpResponse {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32001, "message": refused.message()}});
    HttpResponse::NotFound()
        .content_type("application/json")
        .body(body.to_string())
}

/// The HTTP answer to a malformed message: its status and a JSON-RPC error.
fn rejection_response(rejection: &Rejection) -> HttpResponse {
    let body = json!({"jsonrpc": "2.0", "id": rejection.id, "error": {"code": rejection.code, "message": rejection.message}});
    HttpResponse::build(StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::BAD_REQUEST))
        .content_type("application/json")
        .body(body.to_string())
}

/// What the gate needs, cloned into the middleware of each MCP route.
#[derive(Clone)]
pub struct Gate {
    /// Largest JSON-RPC body.
    pub max_body_bytes: usize,
    /// Longest time a body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// Open sessions under their caps.
    pub sessions: Arc<SessionBook>,
    /// Open streams and requests under their caps.
    pub streams: Arc<StreamBook>,
    /// Take the client address from `Forwarded` / `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// Sealed session ids, restores on this replica, ended sessions.
    pub roaming: Arc<Roaming>,
    /// With other replicas: the ids of server-to-client requests carry this
    /// replica's name, so a reply that lands elsewhere finds its way back.
    pub replies: Option<Arc<ReplyRoute>>,
}

/// Tags the requests of a session's SSE stream with this replica (see
/// [`super::replies`]).
fn tag_requests(
    response: ServiceResponse<BoxBody>,
    gate: &Gate,
    request: Option<&Value>,
) -> ServiceResponse<BoxBody> {
    let Some(route) = &gate.replies else {
        return response;
    };
    let is_stream = response
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    if !is_stream {
        return response;
    }
    response.map_body(|_, body| route.tagging(body, request))
}

/// A request's session, once its sealed id was opened.
struct Opened {
    claims: SessionClaims,
    /// This replica did not hold it: rmcp rebuilds it from the id.
    restoring: bool,
}

/// Opens the sealed `Mcp-Session-Id` of a request and puts rmcp's id in its place;
/// leaves the parameters for a restore when this replica does not hold the session.
async fn open_session(req: &mut ServiceRequest, gate: &Gate) -> Result<Option<Opened>, Refused> {
    let Some(sealed) = req.headers().get(SESSION_ID) else {
        return Ok(None);
    };
    let sealed = sealed
        .to_str()
        .map_err(|_| Refused::Unknown("is not one this gateway issued"))?;
    let claims = gate
        .roaming
        .open(sealed, &session_owner(req), &endpoint_of(req))?;
    let restoring = !gate.sessions.holds(&claims.rid).await;
    let rid = HeaderValue::from_str(&claims.rid)
        .map_err(|_| Refused::Unknown("is not one this gateway issued"))?;
    req.headers_mut().insert(SESSION_ID, rid);
    Ok(Some(Opened { claims, restoring }))
}

/// Right before rmcp gets a request of a session this replica does not hold: the
/// rebuilt session must fit under the session caps like a new one, and its
/// parameters are left for rmcp's restore. A `DELETE` needs no restore.
async fn prepare_restore(
    req: &ServiceRequest,
    gate: &Gate,
    caller: &str,
    opened: Option<&Opened>,
    id: &Value,
) -> Result<(), Box<HttpResponse>> {
    let Some(opened) = opened.filter(|o| o.restoring) else {
        return Ok(());
    };
    if req.method() == Method::DELETE {
        return Ok(());
    }
    if let Err(refusal) = gate.sessions.admit(caller).await {
        return Err(Box::new(Cap::Sessions.refusal(refusal, id.clone())));
    }
    match gate.roaming.expect_restore(&opened.claims) {
        Restore::Expected => Ok(()),
        Restore::Unparseable => Err(Box::new(unknown_session(
            &Refused::Unknown("cannot be restored"),
            id.clone(),
        ))),
        Restore::Busy => {
            let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": Refused::Busy.message()}});
            Err(Box::new(
                HttpResponse::ServiceUnavailable()
                    .content_type("application/json")
                    .insert_header(("retry-after", "1"))
                    .body(body.to_string()),
            ))
        }
    }
}

/// A `GET` resuming a stream (`Last-Event-ID`): this replica's stream resumes from
/// rmcp's own id (and keeps the tag of the request it answers); another replica's
/// `POST` stream is answered with an error for its request (its events lived in
/// that replica's memory); another replica's `GET` stream starts afresh.
fn resume_here(
    req: &mut ServiceRequest,
    route: &ReplyRoute,
) -> Result<Option<Value>, Box<HttpResponse>> {
    let last = HeaderName::from_static("last-event-id");
    let Some(resume) = req
        .headers()
        .get(&last)
        .and_then(|v| v.to_str().ok())
        .map(|v| route.resume(v))
    else {
        return Ok(None);
    };
    match resume {
        Resume::Untagged => Ok(None),
        Resume::Here { original, request } => {
            if let Ok(original) = HeaderValue::from_str(&original) {
                req.headers_mut().insert(last, original);
            }
            Ok(request)
        }
        Resume::Afresh => {
            req.headers_mut().remove(last);
            Ok(None)
        }
        Resume::Lost(id) => Err(Box::new(
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .insert_header(("cache-control", "no-cache"))
                .body(lost_answer(&id)),
        )),
    }
}

/// Drops restore parameters rmcp did not take (it held the session after all, or
/// refused the request before a restore).
fn forget_unused_restore(gate: &Gate, opened: Option<&Opened>) {
    if let Some(opened) = opened.filter(|o| o.restoring) {
        gate.roaming.cancel_restore(&opened.claims.rid);
    }
}

/// Largest client reply relayed to another replica (the link carries at most 1 MiB
/// per event).
const MAX_RELAYED_REPLY: usize = 512 * 1024;

/// After rmcp answered: an `initialize` gets its sealed id in place of rmcp's; a
/// session rebuilt here is counted under its owner's cap; a `DELETE` ends the
/// session on every replica.
fn settle(
    response: &mut ServiceResponse<BoxBody>,
    gate: &Gate,
    caller: &str,
    opened: Option<&Opened>,
    init: Option<(&str, &str, Value)>,
) -> Result<(), Box<HttpResponse>> {
    let success = response.status().is_success();
    if let Some(opened) = opened {
        if !success {
            return Ok(());
        }
        if response.request().method() == Method::DELETE {
            gate.roaming.end(&opened.claims.rid, opened.claims.exp);
        } else if opened.restoring {
            gate.sessions
                .opened(caller.to_owned(), opened.claims.rid.clone());
        }
        return Ok(());
    }
    let Some((owner, endpoint, params)) = init else {
        return Ok(());
    };
    let Some(rid) = response
        .headers()
        .get(SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return Ok(());
    };
    gate.sessions.opened(caller.to_owned(), rid.clone());
    let sealed = gate
        .roaming
        .seal(&rid, owner, endpoint, params)
        .and_then(|s| HeaderValue::from_str(&s).map_err(|e| e.to_string()))
        .map_err(|error| {
            tracing::error!(%error, "cannot seal a session id");
            Box::new(HttpResponse::InternalServerError()
                .content_type("application/json")
                .body(json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32603, "message": "cannot issue a session id"}}).to_string()))
        })?;
    response.headers_mut().insert(SESSION_ID, sealed);
    Ok(())
}

/// A response body that holds a stream's place under the caps until actix drops it
/// (the stream ended, or the client went away).
struct Held {
    body: BoxBody,
    _permit: StreamPermit,
}

impl MessageBody for Held {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_next(cx)
    }
}

fn holding(
    response: ServiceResponse<impl MessageBody + 'static>,
    permit: Option<StreamPermit>,
) -> ServiceResponse<BoxBody> {
    let response = response.map_into_boxed_body();
    match permit {
        Some(permit) => response.map_body(|_, body| {
            BoxBody::new(Held {
                body,
                _permit: permit,
            })
        }),
        None => response,
    }
}

/// The two caps the gate enforces, and what a refusal under each says.
#[derive(Clone, Copy)]
enum Cap {
    /// `mcp.max_sessions`, `mcp.max_sessions_per_caller`.
    Sessions,
    /// `mcp.max_streams`, `mcp.max_streams_per_caller`.
    Streams,
}

impl Cap {
    /// JSON-RPC code, what is counted, the settings' stem, the advice to a caller
    /// over its own cap, and `Retry-After` seconds.
    fn wording(self) -> (i32, &'static str, &'static str, &'static str, &'static str) {
        match self {
            Self::Sessions => (
                TOO_MANY_SESSIONS,
                "MCP sessions",
                "sessions",
                "end one (DELETE) or let one go idle",
                "5",
            ),
            Self::Streams => (
                TOO_MANY_STREAMS,
                "open MCP streams and requests",
                "streams",
                "close one or wait for an answer",
                "1",
            ),
        }
    }

    /// A refusal over this cap: 503 for the gateway's total, 429 for the caller's.
    fn refusal(self, refusal: SessionRefusal, id: Value) -> HttpResponse {
        let (code, what, setting, advice, retry_after) = self.wording();
        let (status, message, limit) = match refusal {
            SessionRefusal::Total { limit } => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the gateway holds {limit} {what}, its limit (mcp.max_{setting}); retry later"
                ),
                limit,
            ),
            SessionRefusal::PerCaller { limit } => (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "you hold {limit} {what}, the limit per caller (mcp.max_{setting}_per_caller); {advice}"
                ),
                limit,
            ),
        };
        let body = json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": code, "message": message, "data": {"limit": limit}}});
        HttpResponse::build(status)
            .content_type("application/json")
            .insert_header(("retry-after", retry_after))
            .body(body.to_string())
    }
}

/// Turns rmcp's plain-text refusals (`Bad Request: Session ID is required`, `Not
/// Found: Session not found`, a wrong `MCP-Protocol-Version`…) into JSON-RPC errors
/// with the same status and text, so every answer on `/mcp` is JSON-RPC: `-32001`
/// for an unknown or ended session (the code the reference SDKs use), `-32600` for
/// the rest. JSON and SSE answers pass untouched.
async fn as_json_rpc(
    response: ServiceResponse<impl MessageBody + 'static>,
    id: Value,
) -> ServiceResponse<BoxBody> {
    let status = response.status();
    let is_protocol = response
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/event-stream"));
    if !status.is_client_error() || is_protocol {
        return response.map_into_boxed_body();
    }
    let (request, response) = response.into_parts();
    let (head, body) = response.into_parts();
    // rmcp's refusals are a line of text; a longer body is not read.
    let text = match actix_web::body::to_bytes_limited(body, 4096).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        _ => String::new(),
    };
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_owned()
    } else {
        text
    };
    let code = if status == StatusCode::NOT_FOUND {
        -32001
    } else {
        -32600
    };
    let mut rebuilt = HttpResponse::build(status);
    for (name, value) in head.headers() {
        if name != actix_web::http::header::CONTENT_TYPE
            && name != actix_web::http::header::CONTENT_LENGTH
        {
            rebuilt.append_header((name.clone(), value.clone()));
        }
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": text}});
    let rebuilt = rebuilt
        .content_type("application/json")
        .body(body.to_string());
    ServiceResponse::new(request, rebuilt)
}

/// The middleware: holds a place under the stream caps for each `GET` stream and each
/// `POST` until its response ends; buffers a POST body (within the limit and the
/// deadline), checks it, admits a new session under the session caps, and hands the
/// same bytes on.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    gate: Gate,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let caller = caller_key(&req, gate.trust_forwarded_for);
    let permit = match *req.method() {
        Method::GET | Method::POST => match gate.streams.admit(&caller) {
            Ok(permit) => Some(permit),
            Err(refusal) => {
                return Ok(req.into_response(Cap::Streams.refusal(refusal, Value::Null)));
            }
        },
        _ => None,
    };
    if req.method() != Method::POST {
        let opened = match open_session(&mut req, &gate).await {
            Ok(opened) => opened,
            Err(refused) => return Ok(req.into_response(unknown_session(&refused, Value::Null))),
        };
        let mut resumed = None;
        if let (Some(route), Some(_)) = (&gate.replies, &opened) {
            match resume_here(&mut req, route) {
                Ok(request) => resumed = request,
                Err(answer) => return Ok(holding(req.into_response(*answer), permit)),
            }
        }
        if let Err(refusal) =
            prepare_restore(&req, &gate, &caller, opened.as_ref(), &Value::Null).await
        {
            return Ok(req.into_response(*refusal));
        }
        let response = next.call(req).await;
        forget_unused_restore(&gate, opened.as_ref());
        let mut response = as_json_rpc(response?, Value::Null).await;
        if let Err(refusal) = settle(&mut response, &gate, &caller, opened.as_ref(), None) {
            let (request, _) = response.into_parts();
            return Ok(ServiceResponse::new(request, *refusal));
        }
        return Ok(holding(
            tag_requests(response, &gate, resumed.as_ref()),
            permit,
        ));
    }
    let mut payload = req.take_payload();
    let mut body = BytesMut::new();
    let deadline = tokio::time::Instant::now() + gate.body_timeout;
    let limit = gate.max_body_bytes;
    loop {
        // A body trickling in (slowloris) ends at the deadline.
        let chunk = match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(Some(chunk)) => chunk?,
            Ok(None) => break,
            Err(_) => {
                let mut rejection = Rejection::new(
                    -32600,
                    format!(
                        "Invalid Request: the body did not arrive within {} s",
                        gate.body_timeout.as_secs()
                    ),
                    Value::Null,
                );
                rejection.status = StatusCode::REQUEST_TIMEOUT.as_u16();
                return Ok(req.into_response(rejection_response(&rejection)));
            }
        };
        if body.len() + chunk.len() > limit {
            let mut rejection = Rejection::new(
                -32600,
                format!("Invalid Request: body exceeds {limit} bytes"),
                Value::Null,
            );
            rejection.status = StatusCode::PAYLOAD_TOO_LARGE.as_u16();
            return Ok(req.into_response(rejection_response(&rejection)));
        }
        body.extend_from_slice(&chunk);
    }
    let body: Bytes = body.freeze();
    let message = match inspect(&body) {
        Ok(message) => message,
        Err(rejection) => return Ok(req.into_response(rejection_response(&rejection))),
    };
    let opened = match open_session(&mut req, &gate).await {
        Ok(opened) => opened,
        Err(refused) => return Ok(req.into_response(unknown_session(&refused, message.id))),
    };
    // A client's reply to a server-to-client request goes to the replica that asked.
    let mut body = body;
    if let (Some(route), Some(opened), None) = (&gate.replies, &opened, &message.method) {
        match route.route(&body, &message.id) {
            Reply::Untagged => {}
            Reply::Here(original) => body = original,
            Reply::Elsewhere { .. } if body.len() > MAX_RELAYED_REPLY => {
                let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600,
                    "message": format!("Invalid Request: a reply relayed between gateway replicas may be at most {MAX_RELAYED_REPLY} bytes")}});
                return Ok(req.into_response(
                    HttpResponse::PayloadTooLarge()
                        .content_type("application/json")
                        .body(body.to_string()),
                ));
            }
            Reply::Elsewhere { replica, message } => {
                gate.roaming
                    .bus()
                    .publish(gateway_domain::ClusterEvent::ClientReply {
                        replica,
                        session: opened.claims.rid.clone(),
                        endpoint: opened.claims.ep.clone(),
                        message,
                    });
                return Ok(req.into_response(HttpResponse::Accepted().finish()));
            }
        }
    }
    // A new session (an `initialize` without a session id) must fit under the caps,
    // and gets a sealed id: its owner, endpoint and `initialize` parameters.
    let init = if opened.is_none() && message.method.as_deref() == Some("initialize") {
        let params = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|mut v| v.get_mut("params").map(Value::take))
            .unwrap_or(Value::Null);
        let Some(carried) = carried_init(params) else {
            let rejection = Rejection::new(
                -32602,
                "Invalid params: the initialize parameters (capabilities, clientInfo) are too large to carry in a session id".to_owned(),
                message.id,
            );
            return Ok(req.into_response(rejection_response(&rejection)));
        };
        Some((session_owner(&req), endpoint_of(&req), carried))
    } else {
        None
    };
    if init.is_some()
        && let Err(refusal) = gate.sessions.admit(&caller).await
    {
        return Ok(req.into_response(Cap::Sessions.refusal(refusal, message.id)));
    }
    if let Err(refusal) = prepare_restore(&req, &gate, &caller, opened.as_ref(), &message.id).await
    {
        return Ok(req.into_response(*refusal));
    }
    req.set_payload(Payload::from(body));
    let response = next.call(req).await;
    forget_unused_restore(&gate, opened.as_ref());
    let mut response = as_json_rpc(response?, message.id.clone()).await;
    let init = init
        .as_ref()
        .map(|(owner, endpoint, params)| (owner.as_str(), endpoint.as_str(), params.clone()));
    if let Err(refusal) = settle(&mut response, &gate, &caller, opened.as_ref(), init) {
        let (request, _) = response.into_parts();
        return Ok(ServiceResponse::new(request, *refusal));
    }
    let request = opened.as_ref().map(|_| &message.id);
    Ok(holding(tag_requests(response, &gate, request), permit))
}
