//! A hostile MCP upstream: a minimal Streamable HTTP server, written by hand so it can
//! break the protocol in the ways a real upstream might. It answers `initialize`,
//! `ping` and `tools/list` properly, and misbehaves on `tools/call` as the tool's
//! name says:
//!
//! - `garbage`: a `200 application/json` body that is not JSON;
//! - `wrong_id`: a result for another request id;
//! - `http500`: an HTTP 500;
//! - `huge`: a result of `huge_bytes` bytes;
//! - `cut_sse`: an SSE stream that ends in the middle of an event;
//! - `hang`: no answer at all.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::web::{Bytes, Data};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// The misbehaving tools.
pub const TOOLS: [&str; 6] = ["garbage", "wrong_id", "http500", "huge", "cut_sse", "hang"];

/// A running hostile upstream.
pub struct HostileUpstream {
    /// Its MCP endpoint.
    pub url: String,
    handle: actix_web::dev::ServerHandle,
}

impl HostileUpstream {
    /// Serves on a free loopback port; `huge` answers with `huge_bytes` bytes.
    pub fn start(huge_bytes: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(Data::new(huge_bytes))
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

async fn handle(request: HttpRequest, body: Bytes, huge_bytes: Data<usize>) -> HttpResponse {
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
        "tools/list" => answer(
            &id,
            json!({"tools": TOOLS.iter().map(|name| json!({"name": name, "inputSchema": {"type": "object"}})).collect::<Vec<_>>()}),
        ),
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
