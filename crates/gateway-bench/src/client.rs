//! A minimal MCP Streamable HTTP client for load generation. It is written by hand on
//! purpose: the benchmark must measure the gateway, not an SDK's own tasks and
//! channels, and it needs exactly one thing — a session that sends `tools/call` and
//! reads the answer, whether it comes as JSON or as SSE.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

/// Protocol revision the load generator speaks (session-based, what most clients use).
pub const PROTOCOL: &str = "2025-06-18";

/// One HTTP client shared by the workers of a run (keep-alive, no Nagle).
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    client_with(reqwest::header::HeaderMap::new())
}

/// The same client sending `Authorization: Bearer <token>` on every request.
pub fn http_client_with_token(token: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    client_with(headers)
}

fn client_with(headers: reqwest::header::HeaderMap) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()?)
}

/// An initialized MCP session.
pub struct Session {
    http: reqwest::Client,
    url: String,
    id: Option<String>,
    next_id: u64,
}

/// The JSON-RPC response in a body that is either JSON or SSE.
fn response_in(content_type: &str, body: &str, id: u64) -> anyhow::Result<Value> {
    let matches = |message: &Value| message["id"].as_u64() == Some(id);
    if content_type.starts_with("application/json") {
        let message: Value = serde_json::from_str(body).context("JSON body")?;
        return if matches(&message) {
            Ok(message)
        } else {
            Err(anyhow!("response for another id: {body}"))
        };
    }
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let data = data.trim();
        if data.is_empty() {
            continue;
        }
        let message: Value = serde_json::from_str(data).context("SSE data")?;
        if matches(&message) {
            return Ok(message);
        }
    }
    Err(anyhow!(
        "no response with id {id} in: {}",
        body.chars().take(300).collect::<String>()
    ))
}

/// A request's whole answer, not decoded yet.
pub struct Exchange {
    method: String,
    id: u64,
    status: reqwest::StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Exchange {
    /// The `result` member of the answer; an error for an HTTP or JSON-RPC error, or
    /// an answer that is not the request's.
    pub fn result(self) -> anyhow::Result<Value> {
        let method = &self.method;
        if !self.status.is_success() {
            bail!(
                "{method}: HTTP {}: {}",
                self.status,
                self.body.chars().take(200).collect::<String>()
            );
        }
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mut message = response_in(content_type, &self.body, self.id)?;
        if let Some(error) = message.get("error") {
            bail!("{method}: JSON-RPC error {error}");
        }
        Ok(message["result"].take())
    }
}

impl Session {
    /// `initialize` then `notifications/initialized`.
    pub async fn open(http: &reqwest::Client, url: &str) -> anyhow::Result<Self> {
        let mut session = Self {
            http: http.clone(),
            url: url.to_owned(),
            id: None,
            next_id: 0,
        };
        let params = json!({"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "gateway-bench", "version": "1"}});
        let (_, headers) = session.request_with_headers("initialize", params).await?;
        session.id = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let notification = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = session.post(&notification).send().await?;
        if !response.status().is_success() {
            bail!("notifications/initialized: HTTP {}", response.status());
        }
        Ok(session)
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL)
            .body(body.to_string());
        if let Some(id) = &self.id {
            request = request.header("mcp-session-id", id);
        }
        request
    }

    async fn request_with_headers(
        &mut self,
        method: &str,
        params: Value,
    ) -> anyhow::Result<(Value, reqwest::header::HeaderMap)> {
        let exchange = self.exchange(method, params).await?;
        let headers = exchange.headers.clone();
        Ok((exchange.result()?, headers))
    }

    /// Sends one request and receives its whole answer, undecoded: what a benchmark
    /// times when the answer is large, so the client's own JSON parsing is not
    /// counted as the gateway's latency. [`Exchange::result`] checks it afterwards.
    pub async fn exchange(&mut self, method: &str, params: Value) -> anyhow::Result<Exchange> {
        self.next_id += 1;
        let id = self.next_id;
        let response = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await?;
        Ok(Exchange {
            method: method.to_owned(),
            id,
            status,
            headers,
            body,
        })
    }

    /// One request; the `result` member of its answer.
    pub async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.request_with_headers(method, params)
            .await
            .map(|(result, _)| result)
    }

    /// `tools/call` of an echo tool, checking that the text comes back.
    pub async fn echo(&mut self, tool: &str, text: &str) -> anyhow::Result<()> {
        let result = self
            .request(
                "tools/call",
                json!({"name": tool, "arguments": {"text": text}}),
            )
            .await?;
        if result["content"][0]["text"].as_str() != Some(text) {
            bail!("unexpected result: {result}");
        }
        Ok(())
    }

    /// Ends the session (DELETE).
    pub async fn close(self) {
        if let Some(id) = &self.id {
            let _ = self
                .http
                .delete(&self.url)
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", PROTOCOL)
                .send()
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_response_in_json_and_sse() {
        let json_body = r#"{"jsonrpc":"2.0","id":3,"result":{"ok":true}}"#;
        assert_eq!(
            response_in("application/json", json_body, 3).expect("found")["result"]["ok"],
            true
        );
        let sse = "id: 0\nretry: 3000\ndata: \n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{}}\n\n";
        assert!(response_in("text/event-stream", sse, 4).is_ok());
        assert!(response_in("text/event-stream", sse, 5).is_err());
        assert!(response_in("application/json", "{bad", 1).is_err());
    }
}
