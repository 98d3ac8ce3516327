//! Server-to-client messages across replicas. A session's requests are spread over
//! the replicas, but each SSE stream lives on the replica that opened it, and two
//! things refer back to that replica:
//!
//! - **Replies.** When an upstream asks for sampling, elicitation or roots during a
//!   call, the replica serving the call sends the request to the client and waits;
//!   the reply is a new `POST`, which the load balancer may hand to another replica.
//!   So the gate rewrites the id of each request in an SSE stream from `7` to
//!   `"mcpgw:<replica>/7"`; a reply whose id names another replica is published to it
//!   ([`ClusterEvent::ClientReply`]) and answered `202` here, and a reply for this
//!   replica gets its original id back before rmcp sees it.
//! - **Resumption.** SSE event ids become `mcpgw:<replica>/<request>/<rmcp's id>`
//!   (`<request>`: the JSON-RPC id of the `POST` the stream answers, base64url; empty
//!   on a `GET` stream). A `GET` with a `Last-Event-ID` of this replica resumes as
//!   rmcp would; one of another replica cannot be resumed here (the events lived in
//!   that replica's memory): for a `POST` stream the client gets a JSON-RPC error for
//!   its request at once, naming what happened, instead of waiting forever; a `GET`
//!   stream starts afresh.
//!
//! Results and notifications pass byte for byte (only `id:` lines change), and no
//! event is parsed beyond its first bytes unless it is a request.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::web::{Bytes, BytesMut};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// What every tagged id starts with.
const TAG: &str = "mcpgw:";

/// How a request event's JSON starts (rmcp writes `jsonrpc`, then `id`, then
/// `method`; a response has `result` or `error` after the id).
const REQUEST_START: &[u8] = br#"data: {"jsonrpc":"2.0","id":"#;

/// This replica's routing of client replies.
#[derive(Debug)]
pub struct ReplyRoute {
    replica: String,
    prefix: String,
}

/// Where a client's reply goes.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// Not a tagged reply: pass it on unchanged.
    Untagged,
    /// A reply to this replica's request: the body with the original id.
    Here(Bytes),
    /// A reply to another replica's request: the message with the original id.
    Elsewhere {
        /// The replica waiting for it.
        replica: String,
        /// The JSON-RPC response.
        message: Value,
    },
}

/// What to do with a `GET` that resumes a stream (`Last-Event-ID`).
#[derive(Debug, PartialEq)]
pub enum Resume {
    /// Not one of our tagged ids: pass it on unchanged.
    Untagged,
    /// A stream of this replica: resume it from rmcp's own id; `request` is the
    /// JSON-RPC id of the `POST` it answers (its events keep that tag).
    Here {
        /// rmcp's event id.
        original: String,
        /// The `POST`'s JSON-RPC id; `None` for a `GET` stream.
        request: Option<Value>,
    },
    /// A `POST` stream of another replica: its answer is lost; tell the client so
    /// for this JSON-RPC id.
    Lost(Value),
    /// A `GET` stream of another replica: open a fresh one.
    Afresh,
}

impl ReplyRoute {
    /// Routes replies to `replica` (this process).
    pub fn new(replica: &str) -> Arc<Self> {
        Arc::new(Self {
            replica: replica.to_owned(),
            prefix: format!("{TAG}{replica}/"),
        })
    }

    /// A `data:` line with a server-to-client request's id tagged, or `None` when
    /// the line is not a request (it passes unchanged).
    fn tag_data(&self, line: &[u8]) -> Option<Bytes> {
        let rest = line.strip_prefix(REQUEST_START)?;
        let mut ids = serde_json::Deserializer::from_slice(rest).into_iter::<Value>();
        let id = match ids.next() {
            Some(Ok(id @ (Value::Number(_) | Value::String(_)))) => id,
            _ => return None,
        };
        let after = &rest[ids.byte_offset()..];
        if !after.starts_with(br#","method":"#) {
            return None;
        }
        let tagged = Value::String(format!("{}{id}", self.prefix));
        let mut out = BytesMut::with_capacity(line.len() + self.prefix.len() + 8);
        out.extend_from_slice(REQUEST_START);
        out.extend_from_slice(tagged.to_string().as_bytes());
        out.extend_from_slice(after);
        Some(out.freeze())
    }

    /// One SSE event, as the pieces to send: unchanged lines are slices of the
    /// original (a large result is not copied), `id:` lines carry `stream_tag`, and a
    /// request's `data:` line its tagged id.
    fn tag_event(&self, event: Bytes, stream_tag: &str, out: &mut VecDeque<Bytes>) {
        let mut start = 0;
        let mut kept = 0;
        while start < event.len() {
            let end = event[start..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(event.len(), |at| start + at + 1);
            let line = &event[start..end];
            let replaced = if let Some(id) = line.strip_prefix(b"id: ") {
                let mut tagged = BytesMut::with_capacity(line.len() + stream_tag.len());
                tagged.extend_from_slice(b"id: ");
                tagged.extend_from_slice(stream_tag.as_bytes());
                tagged.extend_from_slice(id);
                Some(tagged.freeze())
            } else {
                self.tag_data(line)
            };
            if let Some(replaced) = replaced {
                if kept < start {
                    out.push_back(event.slice(kept..start));
                }
                out.push_back(replaced);
                kept = end;
            }
            start = end;
        }
        if kept < event.len() {
            out.push_back(event.slice(kept..));
        }
    }

    /// Where the JSON-RPC response `body` (a client's reply) goes.
    pub fn route(&self, body: &[u8], id: &Value) -> Reply {
        let Some(tagged) = id.as_str().and_then(|id| id.strip_prefix(TAG)) else {
            return Reply::Untagged;
        };
        let Some((replica, original)) = tagged.split_once('/') else {
            return Reply::Untagged;
        };
        let Ok(original) = serde_json::from_str::<Value>(original) else {
            return Reply::Untagged;
        };
        let Ok(mut message) = serde_json::from_slice::<Value>(body) else {
            return Reply::Untagged;
        };
        // Only a response is routed (a request with such an id is the client's own).
        let is_response = message.get("method").is_none()
            && (message.get("result").is_some() || message.get("error").is_some());
        if !is_response {
            return Reply::Untagged;
        }
        if let Some(object) = message.as_object_mut() {
            object.insert("id".to_owned(), original);
        }
        if replica == self.replica {
            Reply::Here(Bytes::from(message.to_string()))
        } else {
            Reply::Elsewhere {
                replica: replica.to_owned(),
                message,
            }
        }
    }

    /// What a `GET` resuming from `last_event_id` gets.
    pub fn resume(&self, last_event_id: &str) -> Resume {
        let Some(tagged) = last_event_id.strip_prefix(TAG) else {
            return Resume::Untagged;
        };
        let mut parts = tagged.splitn(3, '/');
        let (Some(replica), Some(request), Some(original)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Resume::Untagged;
        };
        let request = URL_SAFE_NO_PAD
            .decode(request)
            .ok()
            .and_then(|json| serde_json::from_slice::<Value>(&json).ok())
            .filter(|id| id.is_number() || id.is_string());
        if replica == self.replica {
            return Resume::Here {
                original: original.to_owned(),
                request,
            };
        }
        request.map_or(Resume::Afresh, Resume::Lost)
    }

    /// Wraps an SSE response body so its requests and event ids carry this replica;
    /// `request` is the JSON-RPC id of the `POST` it answers (`None` for a `GET`).
    pub fn tagging(self: &Arc<Self>, body: BoxBody, request: Option<&Value>) -> BoxBody {
        let request = request.map_or_else(String::new, |id| URL_SAFE_NO_PAD.encode(id.to_string()));
        BoxBody::new(Tagged {
            body,
            route: self.clone(),
            stream_tag: format!("{}{request}/", self.prefix),
            pending: BytesMut::new(),
            scanned: 0,
            ready: VecDeque::new(),
        })
    }
}

/// The one-event SSE answer to resuming a `POST` stream whose replica is gone.
pub fn lost_answer(id: &Value) -> String {
    let error = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {
        "code": -32603,
        "message": "this request's stream was served by another gateway replica and cannot be resumed here (that replica may have stopped); the request's outcome is unknown: retry it only if that is safe",
    }});
    format!("data: {error}\n\n")
}

/// An SSE body whose events are re-cut at their boundaries (`\n\n`) so each can be
/// tagged whole, however the bytes arrived.
struct Tagged {
    body: BoxBody,
    route: Arc<ReplyRoute>,
    stream_tag: String,
    pending: BytesMut,
    /// Bytes of `pending` already searched for a boundary.
    scanned: usize,
    /// Pieces ready to send.
    ready: VecDeque<Bytes>,
}

impl Tagged {
    /// Cuts the next whole event out of `pending` into `ready`; `false` when there
    /// is none yet.
    fn next_event(&mut self) -> bool {
        let from = self.scanned.saturating_sub(1);
        let end = self.pending[from..]
            .windows(2)
            .position(|w| w == b"\n\n")
            .map(|at| from + at + 2);
        let Some(end) = end else {
            self.scanned = self.pending.len();
            return false;
        };
        self.scanned = 0;
        let event = self.pending.split_to(end).freeze();
        self.route
            .tag_event(event, &self.stream_tag, &mut self.ready);
        true
    }
}

impl MessageBody for Tagged {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        loop {
            if let Some(piece) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(piece)));
            }
            if self.next_event() {
                continue;
            }
            match Pin::new(&mut self.body).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => self.pending.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) if self.pending.is_empty() => return Poll::Ready(None),
                // A last event without its blank line goes out as it is.
                Poll::Ready(None) => {
                    self.scanned = 0;
                    return Poll::Ready(Some(Ok(self.pending.split().freeze())));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Arc<ReplyRoute> {
        ReplyRoute::new("a-1")
    }

    fn tag(event: &[u8]) -> String {
        let mut out = VecDeque::new();
        route().tag_event(Bytes::copy_from_slice(event), "mcpgw:a-1/Nw/", &mut out);
        out.iter()
            .map(|piece| std::str::from_utf8(piece).expect("test value"))
            .collect()
    }

    #[test]
    fn requests_and_event_ids_are_tagged_and_nothing_else_is_touched() {
        assert_eq!(
            tag(b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"sampling/createMessage\",\"params\":{}}\nid: 2/5\n\n"),
            "data: {\"jsonrpc\":\"2.0\",\"id\":\"mcpgw:a-1/7\",\"method\":\"sampling/createMessage\",\"params\":{}}\nid: mcpgw:a-1/Nw/2/5\n\n"
        );
        assert_eq!(
            tag(b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"x\\\"y\",\"method\":\"roots/list\"}\n\n"),
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"mcpgw:a-1/\\\"x\\\\\\\"y\\\"\",\"method\":\"roots/list\"}\n\n"
        );
        for untouched in [
            &b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"method\":\"x\"}}\n\n"[..],
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n",
            b": keep-alive\n\n",
            b"data: {\"jsonrpc\":\"2.0\",\"id\":{\"bad\":1},\"method\":\"x\"}\n\n",
        ] {
            assert_eq!(tag(untouched).as_bytes(), untouched);
        }
        assert_eq!(
            tag(b"data:\nid: 0\nretry: 3000\n\n"),
            "data:\nid: mcpgw:a-1/Nw/0\nretry: 3000\n\n"
        );
    }

    #[test]
    fn replies_go_home_with_their_original_id() {
        let route = route();
        let here = br#"{"jsonrpc":"2.0","id":"mcpgw:a-1/7","result":{}}"#;
        assert_eq!(
            route.route(here, &Value::String("mcpgw:a-1/7".into())),
            Reply::Here(Bytes::from(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#))
        );
        let there =
            br#"{"jsonrpc":"2.0","id":"mcpgw:b-2/\"q\"","error":{"code":1,"message":"no"}}"#;
        assert_eq!(
            route.route(there, &Value::String("mcpgw:b-2/\"q\"".into())),
            Reply::Elsewhere {
                replica: "b-2".into(),
                message: serde_json::json!({"jsonrpc": "2.0", "id": "q", "error": {"code": 1, "message": "no"}}),
            }
        );
        for id in [
            Value::from(7),
            Value::String("plain".into()),
            Value::String("mcpgw:nobody".into()),
            Value::String("mcpgw:a-1/not json".into()),
        ] {
            assert_eq!(route.route(b"{}", &id), Reply::Untagged, "{id}");
        }
        // A request (or anything but a response) with a tagged id is not routed.
        for body in [
            &br#"{"jsonrpc":"2.0","id":"mcpgw:b-2/7","method":"tools/call"}"#[..],
            br#"{"jsonrpc":"2.0","id":"mcpgw:b-2/7"}"#,
            br#"[1,2]"#,
        ] {
            assert_eq!(
                route.route(body, &Value::String("mcpgw:b-2/7".into())),
                Reply::Untagged
            );
        }
    }

    #[test]
    fn a_stream_resumes_here_fails_its_request_or_starts_afresh() {
        let route = route();
        let request = URL_SAFE_NO_PAD.encode("42");
        assert_eq!(route.resume("3/5"), Resume::Untagged);
        assert_eq!(
            route.resume(&format!("mcpgw:a-1/{request}/3/5")),
            Resume::Here {
                original: "3/5".into(),
                request: Some(Value::from(42))
            }
        );
        assert_eq!(
            route.resume("mcpgw:a-1//0"),
            Resume::Here {
                original: "0".into(),
                request: None
            }
        );
        assert_eq!(
            route.resume(&format!("mcpgw:b-2/{request}/3/5")),
            Resume::Lost(Value::from(42))
        );
        assert_eq!(route.resume("mcpgw:b-2//7"), Resume::Afresh);
        assert_eq!(route.resume("mcpgw:b-2/!!/7"), Resume::Afresh);
        assert_eq!(route.resume("mcpgw:b-2"), Resume::Untagged);
        let answer: Value = serde_json::from_str(
            lost_answer(&Value::from(42))
                .trim_start_matches("data: ")
                .trim(),
        )
        .expect("test value");
        assert_eq!(answer["id"], 42);
        assert_eq!(answer["error"]["code"], -32603);
    }

    #[actix_web::test]
    async fn events_split_across_chunks_are_tagged_whole() {
        let route = route();
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(
                b"data: {\"jsonrpc\":\"2.0\",\"id\":3,\"me",
            )),
            Ok(Bytes::from_static(b"thod\":\"elicitation/create\"}\n")),
            Ok(Bytes::from_static(
                b"id: 1/0\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
            )),
        ];
        let body = BoxBody::new(actix_web::body::BodyStream::new(
            futures_util::stream::iter(chunks),
        ));
        let all = actix_web::body::to_bytes(route.tagging(body, Some(&Value::from(1))))
            .await
            .map_err(|_| "body")
            .expect("test value");
        assert_eq!(
            std::str::from_utf8(&all).expect("test value"),
            "data: {\"jsonrpc\":\"2.0\",\"id\":\"mcpgw:a-1/3\",\"method\":\"elicitation/create\"}\n\
             id: mcpgw:a-1/MQ/1/0\n\n\
             data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"
        );
    }
}
