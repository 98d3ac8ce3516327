//! End-to-end tests: rmcp clients against the test upstream over Streamable HTTP
//! (session protocol and 2026-07-28 stateless) and over stdio (the `test-upstream` binary).

// Sampling and logging are deprecated by SEP-2577; the upstream still serves them.
#![allow(deprecated)]

use std::time::Duration;

use gateway_test_upstream::{HttpUpstream, TestUpstream, serve_http, serve_http_with};
use rmcp::{
    ClientHandler, RoleClient, ServiceError, ServiceExt as _,
    model::{
        ArgumentInfo, CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig,
        CompleteRequestParams, CreateMessageRequestParams, CreateMessageResult,
        ElicitRequestParams, ElicitResult, ElicitationAction, ErrorData, GetPromptRequestParams,
        JsonObject, LoggingMessageNotificationParam, ProgressNotificationParam, ProtocolVersion,
        ReadResourceRequestParams, Reference, ResourceContents, Role, SamplingMessage,
        SamplingMessageContentBlock, ServerNotification, SubscriptionFilter,
    },
    service::{ClientLifecycleMode, ClientServiceExt as _, NotificationContext, RequestContext},
    transport::{ConfigureCommandExt as _, StreamableHttpClientTransport, TokioChildProcess},
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// reqwest (inside rmcp's HTTP client) panics without a rustls crypto provider.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn start() -> anyhow::Result<HttpUpstream> {
    install_crypto_provider();
    serve_http("127.0.0.1:0".parse()?).await
}

fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

fn call(name: &'static str, arguments: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name).with_arguments(args(arguments))
}

/// The text of a result's first block.
fn first_text(result: &CallToolResult) -> &str {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map_or("", |t| t.text.as_str())
}

fn error_code(error: &ServiceError) -> Option<i32> {
    match error {
        ServiceError::McpError(e) => Some(e.code.0),
        _ => None,
    }
}

/// A client that samples, elicits, and reports notifications on a channel.
#[derive(Clone)]
struct Recorder(mpsc::UnboundedSender<String>);

impl Recorder {
    fn new() -> (Self, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }
    fn record(&self, event: String) {
        let _ = self.0.send(event);
    }
}

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        let mut config = ClientConfig::default();
        config.capabilities = ClientCapabilities::builder()
            .enable_sampling()
            .enable_elicitation()
            .build();
        config
    }

    async fn create_message(
        &self,
        _: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let message = SamplingMessage::new(
            Role::Assistant,
            SamplingMessageContentBlock::text("sampled"),
        );
        Ok(CreateMessageResult::new(message, "test-model".into()).with_stop_reason("endTurn"))
    }

    async fn create_elicitation(
        &self,
        _: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({ "answer": "42" })))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.record(format!("progress {}/{:?}", params.progress, params.total));
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.record(format!("log {}", params.data));
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.record("tools changed".into());
    }
}

/// Waits for `wanted` on `events`, failing after 5 s.
async fn expect_event(
    events: &mut mpsc::UnboundedReceiver<String>,
    wanted: &str,
) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.recv().await {
            if event == wanted {
                return Ok(());
            }
        }
        anyhow::bail!("event channel closed before `{wanted}`")
    })
    .await
    .map_err(|_| anyhow::anyhow!("no `{wanted}` event within 5 s"))?
}

#[tokio::test]
async fn http_lists_tools_and_calls_echo_and_add() -> anyhow::Result<()> {
    let server = start().await?;
    assert_eq!(
        server.url(),
        format!("http://127.0.0.1:{}/mcp", server.port())
    );
    let client = ().serve(StreamableHttpClientTransport::from_uri(server.url())).await?;

    let tools = client.list_all_tools().await?;
    let names: Vec<_> = tools.iter().map(|t| t.name.as_ref()).collect();
    for expected in [
        "echo",
        "add",
        "progress",
        "sleep",
        "fail",
        "add_tool",
        "test_simple_text",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let add = tools
        .iter()
        .find(|t| t.name == "add")
        .expect("add is listed");
    assert!(add.output_schema.is_some());

    let echo = client
        .call_tool(call("echo", json!({ "text": "hello" })))
        .await?;
    assert_eq!(first_text(&echo), "hello");
    assert_ne!(echo.is_error, Some(true));

    let sum = client
        .call_tool(call("add", json!({ "a": 2, "b": 3.5 })))
        .await?;
    assert_eq!(first_text(&sum), "5.5");
    assert_eq!(sum.structured_content, Some(json!({ "sum": 5.5 })));

    let failed = client
        .call_tool(call("fail", json!({ "message": "boom" })))
        .await?;
    assert_eq!((failed.is_error, first_text(&failed)), (Some(true), "boom"));

    let unknown = client.call_tool(call("nope", json!({}))).await;
    assert_eq!(unknown.as_ref().err().and_then(error_code), Some(-32602));

    client.cancel().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn http_serves_resources_prompts_and_completions() -> anyhow::Result<()> {
    let server = start().await?;
    let client = ().serve(StreamableHttpClientTransport::from_uri(server.url())).await?;

    let item = client
        .read_resource(ReadResourceRequestParams::new("test://items/42"))
        .await?;
    match item.contents.first() {
        Some(ResourceContents::TextResourceContents { text, .. }) => assert_eq!(text, "item 42"),
        other => panic!("unexpected contents {other:?}"),
    }
    let missing = client
        .read_resource(ReadResourceRequestParams::new("test://nowhere"))
        .await;
    assert_eq!(missing.as_ref().err().and_then(error_code), Some(-32002));

    let greeting = client
        .get_prompt(
            GetPromptRequestParams::new("greeting").with_arguments(args(json!({ "name": "Ada" }))),
        )
        .await?;
    let message = serde_json::to_value(&greeting.messages)?;
    assert_eq!(message[0]["content"]["text"], "Hello, Ada!");

    let completion = client
        .complete(CompleteRequestParams::new(
            Reference::for_prompt("greeting"),
            ArgumentInfo::new("name", "c"),
        ))
        .await?;
    assert_eq!(completion.completion.values, ["carol"]);

    client.cancel().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn http_streams_progress_and_log_notifications() -> anyhow::Result<()> {
    let server = start().await?;
    let (recorder, mut events) = Recorder::new();
    let client = recorder
        .serve(StreamableHttpClientTransport::from_uri(server.url()))
        .await?;

    let done = client
        .call_tool(call("progress", json!({ "steps": 2, "delay_ms": 1 })))
        .await?;
    assert_eq!(first_text(&done), "done");
    expect_event(&mut events, "progress 2/Some(2.0)").await?;

    let logged = client
        .call_tool(call("log", json!({ "message": "hi" })))
        .await?;
    assert_eq!(first_text(&logged), "logged");
    expect_event(&mut events, "log \"hi\"").await?;

    client.cancel().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn http_dynamic_tool_is_announced_to_other_sessions() -> anyhow::Result<()> {
    let server = start().await?;
    let (recorder, mut events) = Recorder::new();
    let watcher = recorder
        .serve(StreamableHttpClientTransport::from_uri(server.url()))
        .await?;
    let actor = ().serve(StreamableHttpClientTransport::from_uri(server.url())).await?;
    // A 2026-07-28 client hears of changes through `subscriptions/listen` instead.
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    let listener = ()
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(server.url()),
            lifecycle,
        )
        .await?;
    let filter = SubscriptionFilter::builder().tools_list_changed().build();
    let mut subscription = listener.peer().listen(filter).await?;
    // Let the watcher's standalone SSE stream (where list_changed arrives) open.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let added = actor
        .call_tool(call("add_tool", json!({ "name": "extra" })))
        .await?;
    assert_eq!(first_text(&added), "added extra");
    expect_event(&mut events, "tools changed").await?;
    let heard = tokio::time::timeout(Duration::from_secs(5), subscription.next()).await??;
    assert!(matches!(
        heard,
        Some(ServerNotification::ToolListChangedNotification(_))
    ));

    let tools = watcher.list_all_tools().await?;
    assert!(tools.iter().any(|t| t.name == "extra"));
    let answer = watcher.call_tool(call("extra", json!({}))).await?;
    assert_eq!(first_text(&answer), "dynamic extra");
    assert_eq!(server.upstream().dynamic_tool_names(), ["extra"]);

    drop(subscription);
    listener.cancel().await?;
    watcher.cancel().await?;
    actor.cancel().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn http_sampling_and_elicitation_on_sessions_and_stateless_mrtr() -> anyhow::Result<()> {
    let server = start().await?;

    let (recorder, _events) = Recorder::new();
    let session = recorder
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(server.url()))
        .await?;
    let sampled = session
        .call_tool(call("sample", json!({ "prompt": "hi" })))
        .await?;
    assert_eq!(first_text(&sampled), "sampled");
    let elicited = session
        .call_tool(call("elicit", json!({ "message": "?" })))
        .await?;
    assert_eq!(
        first_text(&elicited),
        r#"action=accept, content={"answer":"42"}"#
    );
    session.cancel().await?;

    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    let stateless = recorder
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(server.url()),
            lifecycle,
        )
        .await?;
    let version = stateless
        .peer_info()
        .map(|info| info.protocol_version.clone());
    assert_eq!(version, Some(ProtocolVersion::V_2026_07_28));
    let sampled = stateless
        .call_tool(call("sample", json!({ "prompt": "hi" })))
        .await?;
    assert_eq!(first_text(&sampled), "sampled");
    let elicited = stateless
        .call_tool(call("elicit", json!({ "message": "?" })))
        .await?;
    assert_eq!(
        first_text(&elicited),
        r#"action=accept, content={"answer":"42"}"#
    );
    stateless.cancel().await?;

    let incapable = ().serve(StreamableHttpClientTransport::from_uri(server.url())).await?;
    let refused = incapable
        .call_tool(call("sample", json!({ "prompt": "hi" })))
        .await?;
    assert_eq!(refused.is_error, Some(true));
    incapable.cancel().await?;

    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn http_paginates_lists_when_asked() -> anyhow::Result<()> {
    install_crypto_provider();
    let upstream = TestUpstream::new().with_page_size(4);
    let server = serve_http_with(upstream, "127.0.0.1:0".parse()?).await?;
    let client = ().serve(StreamableHttpClientTransport::from_uri(server.url())).await?;

    let first = client.list_tools(None).await?;
    assert_eq!(first.tools.len(), 4);
    assert!(first.next_cursor.is_some());
    let all = client.list_all_tools().await?;
    assert!(all.len() > 20 && all.iter().any(|t| t.name == "test_reconnection"));

    client.cancel().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn stdio_binary_answers_echo() -> anyhow::Result<()> {
    let command =
        tokio::process::Command::new(env!("CARGO_BIN_EXE_test-upstream")).configure(|c| {
            c.arg("stdio");
        });
    let client = ().serve(TokioChildProcess::new(command)?).await?;
    let echo = client
        .call_tool(call("echo", json!({ "text": "over stdio" })))
        .await?;
    assert_eq!(first_text(&echo), "over stdio");
    client.cancel().await?;
    Ok(())
}
