//! A real MCP client for tests (rmcp over Streamable HTTP) that records what the
//! server pushes to it: progress, log messages and list changes.

#![allow(deprecated)]

use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, LoggingMessageNotificationParam,
    ProgressNotificationParam,
};
use rmcp::service::{NotificationContext, RunningService, ServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient};
use tokio::sync::mpsc;

/// Something the server pushed to the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Pushed {
    /// `notifications/progress`.
    Progress(ProgressNotificationParam),
    /// `notifications/message`.
    Log(String),
    /// `notifications/tools/list_changed`.
    ToolsChanged,
    /// `notifications/resources/updated`, with the URI.
    ResourceUpdated(String),
}

/// The recording client handler.
#[derive(Clone)]
pub struct Recorder(mpsc::UnboundedSender<Pushed>);

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("gateway-tests", "1"),
        )
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(Pushed::Progress(params));
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(Pushed::Log(params.data.to_string()));
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        let _ = self.0.send(Pushed::ToolsChanged);
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(Pushed::ResourceUpdated(params.uri));
    }
}

/// An MCP session with the gateway at `url` and the stream of what it pushes.
pub async fn connect(
    url: &str,
) -> (
    RunningService<RoleClient, Recorder>,
    mpsc::UnboundedReceiver<Pushed>,
) {
    connect_with_token(url, None)
        .await
        .unwrap_or_else(|e| panic!("MCP session with {url}: {e}"))
}

/// An MCP session sending `Authorization: Bearer <token>`, or why it failed.
pub async fn connect_with_token(
    url: &str,
    token: Option<&str>,
) -> Result<
    (
        RunningService<RoleClient, Recorder>,
        mpsc::UnboundedReceiver<Pushed>,
    ),
    String,
> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (sender, pushed) = mpsc::unbounded_channel();
    let mut config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            url.to_owned(),
        );
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    let client = Recorder(sender)
        .serve(transport)
        .await
        .map_err(|e| e.to_string())?;
    Ok((client, pushed))
}

/// `tools/call` parameters for `name` with `arguments` (a JSON object).
pub fn call(name: &str, arguments: serde_json::Value) -> rmcp::model::CallToolRequestParams {
    let mut params = rmcp::model::CallToolRequestParams::new(name.to_owned());
    params.arguments = arguments.as_object().cloned();
    params
}

/// The content blocks of a tool result as JSON, as the client received them.
pub fn blocks(result: &rmcp::model::CallToolResult) -> Vec<serde_json::Value> {
    result
        .content
        .iter()
        .map(|c| serde_json::to_value(c).expect("content serialises"))
        .collect()
}

/// The text of a tool result's text blocks, joined.
pub fn text_of(result: &rmcp::model::CallToolResult) -> String {
    blocks(result)
        .iter()
        .filter_map(|b| b["text"].as_str().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("")
}

/// The JSON-RPC error of a failed request; panics on any other failure.
pub fn mcp_error(error: rmcp::ServiceError) -> rmcp::model::ErrorData {
    match error {
        rmcp::ServiceError::McpError(data) => data,
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}
