//! A gate in front of the MCP transport that answers malformed JSON-RPC with the
//! JSON-RPC error the specification names, instead of a bare HTTP error: invalid
//! JSON is `-32700`, a message that is not JSON-RPC 2.0 (or a batch, which the MCP
//! revisions served here do not allow) is `-32600`, a request without the `params`
//! its method requires is `-32602`, and an oversized body is `413` with `-32600`.
//! Everything else passes through to rmcp unchanged.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{Error, HttpMessage, HttpResponse};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::sessions::{
    SessionBook, SessionRefusal, StreamBook, StreamPermit, TOO_MANY_SESSIONS, TOO_MANY_STREAMS,
};
use std::sync::Arc;

/// Methods whose `params` object is required.
const NEEDS_PARAMS: &[&str] = &[
    "initialize",
    "tools/call",
    "prompts/get",
    "resources/read",
    "completion/complete",
];

/// Why a body was refused before reaching the MCP transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON-RPC error code.
    pub code: i32,
    /// What was wrong.
    pub message: String,
    /// The request id, when one could be read.
    pub id: Value,
}

impl Rejection {
    fn new(code: i32, message: impl Into<String>, id: Value) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
            id,
        }
    }

    fn response(&self) -> HttpResponse {
        let body = json!({"jsonrpc": "2.0", "id": self.id, "error": {"code": self.code, "message": self.message}});
        HttpResponse::build(self.status)
            .content_type("application/json")
            .body(body.to_string())
    }
}

/// Who is opening a session, for the per-caller cap: the token's subject, the admin
/// key, or else the client's address.
fn caller_key(req: &ServiceRequest, trust_forwarded_for: bool) -> String {
    use actix_web::HttpMessage;
    match req.extensions().get::<crate::rest::auth::Caller>() {
        Some(crate::rest::auth::Caller::Token(principal)) => {
            format!("subject:{}", principal.subject)
        }
        Some(crate::rest::auth::Caller::ApiKey) => "admin-api-key".to_owned(),
        None => format!(
            "address:{}",
            crate::rest::ip_limit::client_address(req.request(), trust_forwarded_for)
                .map(|a| a.to_string())
                .unwrap_or_default()
        ),
    }
}

/// Checks one JSON-RPC message body; `Ok` lets it through.
pub fn check(body: &[u8]) -> Result<(), Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::new(-32700, format!("Parse error: {e}"), Value::Null))?;
    let Value::Object(message) = value else {
        let what = if value.is_array() {
            "batch requests are not supported"
        } else {
            "a JSON-RPC message must be an object"
        };
        return Err(Rejection::new(
            -32600,
            format!("Invalid Request: {what}"),
            Value::Null,
        ));
    };
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let id_ok = matches!(id, Value::Null | Value::String(_) | Value::Number(_));
    let echo_id = if id_ok { id.clone() } else { Value::Null };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Rejection::new(
            -32600,
            "Invalid Request: `jsonrpc` must be \"2.0\"",
            echo_id,
        ));
    }
    if !id_ok {
        return Err(Rejection::new(
            -32600,
            "Invalid Request: `id` must be a string or a number",
            Value::Null,
        ));
    }
    let Some(method) = message.get("method") else {
        // A response to a server-to-client request: rmcp checks it.
        return Ok(());
    };
    let Some(method) = method.as_str() else {
        return Err(Rejection::new(
            -32600,
            "Invalid Request: `method` must be a string",
            echo_id,
        ));
    };
    if NEEDS_PARAMS.contains(&method) && message.contains_key("id") {
        match message.get("params") {
            Some(Value::Object(params)) => {
                let named = !matches!(method, "tools/call" | "prompts/get")
                    || params.get("name").is_some_and(Value::is_string);
                if !named {
                    return Err(Rejection::new(
                        -32602,
                        format!("Invalid params: {method} needs a string `name`"),
                        echo_id,
                    ));
                }
            }
            _ => {
                return Err(Rejection::new(
                    -32602,
                    format!("Invalid params: {method} needs a `params` object"),
                    echo_id,
                ));
            }
        }
    }
    Ok(())
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

/// A refusal over a cap: 503 for the gateway's total, 429 for the caller's.
fn over_cap(
    refusal: SessionRefusal,
    code: i32,
    what: &str,
    setting: &str,
    id: Value,
) -> HttpResponse {
    let (status, message, limit) = match refusal {
        SessionRefusal::Total { limit } => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the gateway holds {limit} {what}, its limit (mcp.max_{setting}); retry later"),
            limit,
        ),
        SessionRefusal::PerCaller { limit } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "you hold {limit} {what}, the limit per caller (mcp.max_{setting}_per_caller); {}",
                if code == TOO_MANY_SESSIONS {
                    "end one (DELETE) or let one go idle"
                } else {
                    "close one or wait for an answer"
                }
            ),
            limit,
        ),
    };
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {
        "code": code, "message": message, "data": {"limit": limit}}});
    HttpResponse::build(status)
        .content_type("application/json")
        .insert_header((
            "retry-after",
            if code == TOO_MANY_SESSIONS { "5" } else { "1" },
        ))
        .body(body.to_string())
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
                let what = "open MCP streams and requests";
                let response = over_cap(refusal, TOO_MANY_STREAMS, what, "streams", Value::Null);
                return Ok(req.into_response(response));
            }
        },
        _ => None,
    };
    if req.method() != Method::POST {
        let response = next.call(req).await?;
        return Ok(holding(as_json_rpc(response, Value::Null).await, permit));
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
                rejection.status = StatusCode::REQUEST_TIMEOUT;
                return Ok(req.into_response(rejection.response()));
            }
        };
        if body.len() + chunk.len() > limit {
            let mut rejection = Rejection::new(
                -32600,
                format!("Invalid Request: body exceeds {limit} bytes"),
                Value::Null,
            );
            rejection.status = StatusCode::PAYLOAD_TOO_LARGE;
            return Ok(req.into_response(rejection.response()));
        }
        body.extend_from_slice(&chunk);
    }
    let body: Bytes = body.freeze();
    if let Err(rejection) = check(&body) {
        return Ok(req.into_response(rejection.response()));
    }
    // A new session (an `initialize` without a session id) must fit under the caps.
    let message = serde_json::from_slice::<Value>(&body).unwrap_or_default();
    let opens_session = !req.headers().contains_key("mcp-session-id")
        && message.get("method").and_then(Value::as_str) == Some("initialize");
    if opens_session && let Err(refusal) = gate.sessions.admit(&caller).await {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let response = over_cap(refusal, TOO_MANY_SESSIONS, "MCP sessions", "sessions", id);
        return Ok(req.into_response(response));
    }
    req.set_payload(Payload::from(body));
    let response = next.call(req).await?;
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let response = as_json_rpc(response, id).await;
    if opens_session
        && let Some(id) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
    {
        gate.sessions.opened(caller, id.to_owned());
    }
    Ok(holding(response, permit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> Option<i32> {
        check(body.as_bytes()).err().map(|r| r.code)
    }

    #[test]
    fn malformed_messages_get_their_json_rpc_codes() {
        assert_eq!(code("{bad"), Some(-32700));
        assert_eq!(code(""), Some(-32700));
        assert_eq!(code("[]"), Some(-32600));
        assert_eq!(
            code("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]"),
            Some(-32600)
        );
        assert_eq!(code("42"), Some(-32600));
        assert_eq!(
            code(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#),
            Some(-32600)
        );
        assert_eq!(code(r#"{"id":1,"method":"ping"}"#), Some(-32600));
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#),
            Some(-32600)
        );
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":7}"#), Some(-32600));
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#),
            Some(-32602)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}"#),
            Some(-32602)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":3}}"#),
            Some(-32602)
        );
    }

    #[test]
    fn valid_messages_pass() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":5,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        ] {
            assert_eq!(check(body.as_bytes()), Ok(()), "{body}");
        }
    }

    /// Any JSON value, nested a few levels.
    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            "\\PC{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("jsonrpc".to_owned()),
                        Just("id".to_owned()),
                        Just("method".to_owned()),
                        Just("params".to_owned()),
                        Just("name".to_owned()),
                        "[a-z]{1,6}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Bytes of any kind, valid UTF-8 or not: an answer, never a panic, and a
        /// rejection is one of the documented codes.
        #[test]
        fn any_bytes_get_an_answer(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Err(rejection) = check(&body) {
                proptest::prop_assert!([-32700, -32600, -32602].contains(&rejection.code));
            }
        }

        /// Any JSON shaped like a message: the same.
        #[test]
        fn any_json_gets_an_answer(value in json_value()) {
            let body = serde_json::to_vec(&value).expect("serialises");
            if let Err(rejection) = check(&body) {
                proptest::prop_assert!([-32700, -32600, -32602].contains(&rejection.code));
            }
        }
    }

    #[test]
    fn deeply_nested_json_is_refused_without_exhausting_the_stack() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(check(deep.as_bytes()).err().map(|r| r.code), Some(-32700));
        let params = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{}{}}}}}"#,
            "{\"a\":".repeat(50_000),
            "}".repeat(50_000)
        );
        assert_eq!(check(params.as_bytes()).err().map(|r| r.code), Some(-32700));
    }

    #[test]
    fn the_id_is_echoed_when_readable() {
        let rejection = check(br#"{"jsonrpc":"2.0","id":"req-7","method":"prompts/get"}"#)
            .expect_err("no params");
        assert_eq!(rejection.id, json!("req-7"));
    }
}
