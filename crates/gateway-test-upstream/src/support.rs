//! Helpers shared by the tool, resource and prompt fixtures: JSON schemas, argument
//! parsing, result builders, media samples, progress, logging, and the client requests
//! (sampling, elicitation) with their 2026-07-28 "input required" (MRTR) form.

// Logging and sampling are deprecated by SEP-2577 but still part of the protocol versions
// this upstream serves, so it keeps exercising them.
#![allow(deprecated)]

use std::sync::Arc;

use rmcp::{
    RoleServer,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ClientResult, ContentBlock,
        CreateMessageRequest, CreateMessageRequestParams, CreateMessageResult, ElicitRequest,
        ElicitRequestParams, ElicitResult, ElicitationSchema, ErrorData, InputRequest,
        InputRequiredResult, JsonObject, ProgressNotificationParam, ProtocolVersion, Role,
        SamplingMessage, SamplingMessageContentBlock, ServerRequest, Tool,
    },
    service::RequestContext,
};
use serde_json::Value;

/// A 1×1 red PNG, base64-encoded.
pub(crate) const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
/// A WAV file (8 kHz, mono, 8-bit PCM) holding eight samples of silence, base64-encoded.
pub(crate) const WAV_BASE64: &str =
    "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";

/// Why a tool call did not produce its normal result.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A failure the caller should read: becomes `isError: true` with this text.
    Tool(String),
    /// A JSON-RPC error.
    Protocol(ErrorData),
    /// The client must answer these requests and retry the call (2026-07-28 MRTR).
    InputRequired(Box<InputRequiredResult>),
}

impl From<ErrorData> for Failure {
    fn from(error: ErrorData) -> Self {
        Self::Protocol(error)
    }
}

/// The outcome of one tool body.
pub(crate) type ToolOutcome = Result<CallToolResult, Failure>;

/// Turns a tool outcome into what `ServerHandler::call_tool` returns.
pub(crate) fn respond(outcome: ToolOutcome) -> Result<CallToolResponse, ErrorData> {
    match outcome {
        Ok(result) => Ok(result.into()),
        Err(Failure::Tool(message)) => Ok(error_result(message).into()),
        Err(Failure::Protocol(error)) => Err(error),
        Err(Failure::InputRequired(input)) => Ok((*input).into()),
    }
}

/// Converts a `json!` object into a schema; anything else becomes `{}`.
pub(crate) fn object(value: Value) -> Arc<JsonObject> {
    Arc::new(match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    })
}

/// A tool with a description and an input schema.
pub(crate) fn tool(name: &'static str, description: &'static str, input_schema: Value) -> Tool {
    Tool::new(name, description, object(input_schema))
}

/// The input schema of a tool without arguments.
pub(crate) fn no_args() -> Value {
    serde_json::json!({ "type": "object", "properties": {} })
}

/// A successful result with one text block.
pub(crate) fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// An `isError: true` result with one text block.
pub(crate) fn error_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

/// Typed access to a tool call's `arguments`; a bad argument is a tool error (SEP-1303).
pub(crate) struct Args<'a>(&'a JsonObject);

impl<'a> Args<'a> {
    /// Wraps the request's arguments (absent arguments read as `{}`).
    pub(crate) fn of(request: &'a CallToolRequestParams) -> Self {
        static EMPTY: std::sync::LazyLock<JsonObject> = std::sync::LazyLock::new(JsonObject::new);
        Self(request.arguments.as_ref().unwrap_or(&EMPTY))
    }

    /// A required string argument.
    pub(crate) fn string(&self, name: &str) -> Result<&'a str, Failure> {
        self.0
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::Tool(format!("argument `{name}` must be a string")))
    }

    /// A required number argument.
    pub(crate) fn number(&self, name: &str) -> Result<f64, Failure> {
        self.0
            .get(name)
            .and_then(Value::as_f64)
            .ok_or_else(|| Failure::Tool(format!("argument `{name}` must be a number")))
    }

    /// An optional non-negative integer argument.
    pub(crate) fn integer_or(&self, name: &str, default: u64) -> Result<u64, Failure> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(value) => value.as_u64().ok_or_else(|| {
                Failure::Tool(format!("argument `{name}` must be a non-negative integer"))
            }),
        }
    }
}

/// Sends `notifications/progress` to the request's progress token, if it has one.
pub(crate) async fn progress(
    ctx: &RequestContext<RoleServer>,
    progress: f64,
    total: f64,
    message: Option<String>,
) {
    let Some(token) = ctx.meta.get_progress_token() else {
        return;
    };
    let mut param = ProgressNotificationParam::new(token, progress).with_total(total);
    param.message = message;
    if let Err(error) = ctx.peer.notify_progress(param).await {
        tracing::debug!(%error, "cannot send a progress notification");
    }
}

/// Sleeps, or returns `false` early when the request is cancelled.
pub(crate) async fn sleep_unless_cancelled(
    ctx: &RequestContext<RoleServer>,
    duration: std::time::Duration,
) -> bool {
    tokio::select! {
        () = ctx.ct.cancelled() => false,
        () = tokio::time::sleep(duration) => true,
    }
}

/// Whether the request was made under protocol 2026-07-28 or later (no server→client
/// requests; sampling and elicitation go through `input_required` results instead).
fn uses_mrtr(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// A failure asking the client to answer `ask` (under `key`) and retry the call.
fn input_required(key: &str, ask: InputRequest) -> Failure {
    Failure::InputRequired(Box::new(InputRequiredResult::from_input_requests(
        [(key.to_owned(), ask)].into(),
    )))
}

/// The client's answer to input request `key`, if this call is an MRTR retry carrying it.
fn input_response<T: rmcp::serde::de::DeserializeOwned>(
    request: &CallToolRequestParams,
    key: &str,
) -> Option<Result<T, Failure>> {
    let value = request.input_responses.as_ref()?.get(key)?;
    Some(
        serde_json::from_value(value.clone())
            .map_err(|e| Failure::Tool(format!("malformed input response `{key}`: {e}"))),
    )
}

/// A one-message sampling request.
pub(crate) fn sampling_request(prompt: &str, max_tokens: u32) -> CreateMessageRequestParams {
    CreateMessageRequestParams::new(
        vec![SamplingMessage::new(
            Role::User,
            SamplingMessageContentBlock::text(prompt),
        )],
        max_tokens,
    )
}

/// Asks the client to sample (`sampling/createMessage`): a server→client request on
/// session protocols, an `input_required` result under `key` on 2026-07-28.
pub(crate) async fn create_message(
    ctx: &RequestContext<RoleServer>,
    request: &CallToolRequestParams,
    key: &str,
    params: CreateMessageRequestParams,
) -> Result<CreateMessageResult, Failure> {
    if let Some(answer) = input_response(request, key) {
        return answer;
    }
    if ctx
        .client_capabilities()
        .is_none_or(|c| c.sampling.is_none())
    {
        return Err(Failure::Tool("the client does not support sampling".into()));
    }
    if uses_mrtr(ctx) {
        let ask = InputRequest::CreateMessage(CreateMessageRequest::new(params));
        return Err(input_required(key, ask));
    }
    ctx.peer
        .create_message(params)
        .await
        .map_err(|e| Failure::Tool(format!("sampling failed: {e}")))
}

/// The text blocks of a sampling answer, joined.
pub(crate) fn sampled_text(result: &CreateMessageResult) -> String {
    result
        .message
        .content
        .clone()
        .into_vec()
        .into_iter()
        .filter_map(|block| match block {
            SamplingMessageContentBlock::Text(text) => Some(text.text),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses a `requestedSchema` written as JSON.
pub(crate) fn elicitation_schema(value: Value) -> Result<ElicitationSchema, Failure> {
    serde_json::from_value(value).map_err(|e| {
        Failure::Protocol(ErrorData::internal_error(
            format!("invalid elicitation schema: {e}"),
            None,
        ))
    })
}

/// Asks the client to fill a form (`elicitation/create`): a server→client request on
/// session protocols, an `input_required` result under `key` on 2026-07-28.
pub(crate) async fn elicit(
    ctx: &RequestContext<RoleServer>,
    request: &CallToolRequestParams,
    key: &str,
    message: &str,
    requested_schema: ElicitationSchema,
) -> Result<ElicitResult, Failure> {
    if let Some(answer) = input_response(request, key) {
        return answer;
    }
    if ctx
        .client_capabilities()
        .is_none_or(|c| c.elicitation.is_none())
    {
        return Err(Failure::Tool(
            "the client does not support elicitation".into(),
        ));
    }
    let params = ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message.to_owned(),
        requested_schema,
    };
    if uses_mrtr(ctx) {
        let ask = InputRequest::Elicitation(ElicitRequest::new(params));
        return Err(input_required(key, ask));
    }
    // `Peer::create_elicitation` needs rmcp's `elicitation` feature; the raw request does not.
    match ctx
        .peer
        .send_request(ServerRequest::ElicitRequest(ElicitRequest::new(params)))
        .await
    {
        Ok(ClientResult::ElicitResult(result)) => Ok(result),
        Ok(other) => Err(Failure::Tool(format!(
            "unexpected elicitation answer: {other:?}"
        ))),
        Err(e) => Err(Failure::Tool(format!("elicitation failed: {e}"))),
    }
}

/// `action=<action>, content=<json>` for an elicitation answer.
pub(crate) fn describe_elicitation(result: &ElicitResult) -> String {
    let action = serde_json::to_value(&result.action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let content = result
        .content
        .as_ref()
        .map_or_else(|| "null".to_owned(), Value::to_string);
    format!("action={action}, content={content}")
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn media_samples_are_valid_files() {
        let engine = base64::engine::general_purpose::STANDARD;
        let png = engine.decode(PNG_BASE64).expect("png base64");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let wav = engine.decode(WAV_BASE64).expect("wav base64");
        assert!(wav.starts_with(b"RIFF") && &wav[8..12] == b"WAVE");
        assert_eq!(wav.len(), 52);
    }

    #[test]
    fn elicitation_schema_keeps_enum_variants_and_defaults() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "legacy": { "type": "string", "enum": ["a", "b"], "enumNames": ["A", "B"] },
                "titled": { "type": "string", "oneOf": [{ "const": "v", "title": "V" }] },
                "multi": { "type": "array", "items": { "anyOf": [{ "const": "v", "title": "V" }] } },
                "age": { "type": "integer", "default": 30 },
                "ok": { "type": "boolean", "default": true }
            },
            "required": ["age"]
        });
        let parsed = elicitation_schema(schema.clone()).expect("schema parses");
        assert_eq!(serde_json::to_value(parsed).expect("serializes"), schema);
    }
}
