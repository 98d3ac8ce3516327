//! A hostile MCP upstream: a minimal Streamable HTTP server, written by hand so it can
//! break the protocol in the ways a real upstream might. It answers `initialize` and
//! `ping` properly; its `tools/list` mixes its tools with [`bad_entries`] (entries
//! that are not valid tools, repeat a name, or have a name or schema no client
//! should see as is); and it misbehaves on `tools/call` as the tool's name says:
//!
//! - `garbage`: a `200 application/json` body that is not JSON;
//! - `wrong_id`: a result for another request id;
//! - `http500`: an HTTP 500;
//! - `huge`: a result of `huge_bytes` bytes;
//! - `cut_sse`: an SSE stream that ends in the middle of an event;
//! - `hang`: no answer at all;
//! - `flood`: [`FLOOD_LOGS`] log notifications and [`FLOOD_LIST_CHANGES`] list
//!   changes on the call's SSE stream, as fast as they can be written, then the
//!   result `flood survived`.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::web::{Bytes, Data};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// The misbehaving tools.
pub const TOOLS: [&str; 6] = ["garbage", "wrong_id", "http500", "huge", "cut_sse", "hang"];

/// Log notifications the `flood` tool sends before its result.
pub const FLOOD_LOGS: usize = 20_000;

/// List changes the `flood` tool sends among its log notifications.
pub const FLOOD_LIST_CHANGES: usize = 2_000;

/// `tools/list` entries beside the tools: two that are valid but odd (a name no
/// client accepts as is; a schema that is an object but no JSON Schema) and five that
/// are not tools at all, or repeat a name. The invalid ones must be left out.
pub fn bad_entries() -> Vec<Value> {
    vec![
        json!({"name": "bad name/with\nnewline and ünïcode", "inputSchema": {"type": "object"}}),
        json!({"name": "broken_schema", "inputSchema": {"type": 42}}),
        json!({"name": "string_schema", "inputSchema": "not an object"}),
        json!({"inputSchema": {"type": "object"}}),
        json!({"name": 42, "inputSchema": {"type": "object"}}),
        json!("just a string"),
        json!({"name": "garbage", "inputSchema": {"type": "object"}, "description": "a second `garbage`"}),
    ]
}

/// How many of [`bad_entries`] are invalid or repeats.
pub const INVALID_ENTRIES: usize = 5;

/// A running hostile upstream.
pub struct HostileUpstream {
    /// Its MCP endpoint.
    pub url: String,
    /// `tools/list` requests answered so far.
    pub list_requests: Arc<AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
}

impl HostileUpstream {
    /// Serves on a free loopback port; `huge` answers with `huge_bytes` bytes.
    pub fn start(huge_bytes: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let list_requests = Arc::new(AtomicUsize::new(0));
        let counter = list_requests.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(Data::new(huge_bytes))
                .app_data(Data::new(counter.clone()))
                .route("/mcp", web::post().to(handle))
                .route(
                    "/mcp",
                    web::get().to(|| async { HttpResponse::MethodNotAllowed().finish() }),
                )
                .route(
                    "/mcp",
                    web::delete().to(|| async { HttpResponse::Ok().finish() }),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}/mcp"),
            list_requests,
            handle,
        }
    }

    /// Stops it.
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

fn answer(id: &Value, result: Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("mcp-session-id", "hostile-session"))
        .json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

async fn handle(
    request: HttpRequest,
    body: Bytes,
    huge_bytes: Data<usize>,
    list_requests: Data<Arc<AtomicUsize>>,
) -> HttpResponse {
    let _ = request;
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match method {
        "initialize" => answer(
            &id,
            json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                   "serverInfo": {"name": "hostile", "version": "1"}}),
        ),
        "ping" => answer(&id, json!({})),
        "tools/list" => {
            list_requests.fetch_add(1, Ordering::Relaxed);
            let mut tools: Vec<Value> = TOOLS
                .iter()
                .chain(&["flood"])
                .map(|name| json!({"name": name, "inputSchema": {"type": "object"}}))
                .collect();
            tools.extend(bad_entries());
            answer(&id, json!({ "tools": tools }))
        }
        "tools/call" => {
            let name = message
                .pointer("/params/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            misbehave(name, &id, **huge_bytes).await
        }
        // Notifications, and every era-probing request the upstream does not serve.
        _ if id.is_null() => HttpResponse::Accepted().finish(),
        _ => HttpResponse::Ok()
            .content_type("application/json")
            .json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}})),
    }
}

async fn misbehave(name: &str, id: &Value, huge_bytes: usize) -> HttpResponse {
    match name {
        "garbage" => HttpResponse::Ok()
            .content_type("application/json")
            .body("{this is not json"),
        "wrong_id" => answer(&json!("someone-else"), json!({"content": []})),
        "http500" => HttpResponse::InternalServerError().body("upstream exploded"),
        "huge" => {
            let text = "x".repeat(huge_bytes);
            answer(id, json!({"content": [{"type": "text", "text": text}]}))
        }
        "flood" => {
            let mut events = String::new();
            for n in 0..FLOOD_LOGS {
                let log = json!({"jsonrpc": "2.0", "method": "notifications/message",
                                 "params": {"level": "info", "data": format!("flood {n}")}});
                events.push_str(&format!("event: message\ndata: {log}\n\n"));
                if n % (FLOOD_LOGS / FLOOD_LIST_CHANGES) == 0 {
                    let changed =
                        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
                    events.push_str(&format!("event: message\ndata: {changed}\n\n"));
                }
            }
            let result = json!({"jsonrpc": "2.0", "id": id,
                                "result": {"content": [{"type": "text", "text": "flood survived"}]}});
            events.push_str(&format!("event: message\ndata: {result}\n\n"));
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .body(events)
        }
        "cut_sse" => {
            let partial = Bytes::from_static(b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":");
            let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(partial)]);
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .streaming(stream)
        }
        _ => {
            // `hang`: hold the request well past any timeout.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            HttpResponse::Ok().finish()
        }
    }
}
