//! The gateway's own test tools: `echo`, `add`, `progress`, `sleep`, `fail`, the content
//! kinds (`image`, `audio`, `resource_link`, `embedded_resource`), `add_tool`, `sample`,
//! `elicit` and `log`.

// Logging is deprecated by SEP-2577 but still served on session protocols.
#![allow(deprecated)]

use std::time::Duration;

use rmcp::{
    RoleServer,
    model::{
        CallToolRequestParams, CallToolResult, ContentBlock, LoggingLevel, Resource,
        ResourceContents, Tool,
    },
    service::RequestContext,
};
use serde_json::json;

use crate::{
    TestUpstream,
    support::{
        self, Args, Failure, PNG_BASE64, ToolOutcome, WAV_BASE64, no_args, text_result, tool,
    },
};

/// The definitions of the gateway's test tools.
pub(crate) fn list() -> Vec<Tool> {
    let string = |name: &str, about: &str| json!({ "type": "object", "properties": { name: { "type": "string", "description": about } }, "required": [name] });
    vec![
        tool(
            "echo",
            "Returns `text` unchanged.",
            string("text", "Text to echo."),
        ),
        tool(
            "add",
            "Adds two numbers; returns the sum as text and as structured content.",
            json!({
                "type": "object",
                "properties": { "a": { "type": "number" }, "b": { "type": "number" } },
                "required": ["a", "b"]
            }),
        )
        .with_raw_output_schema(support::object(json!({
            "type": "object",
            "properties": { "sum": { "type": "number" } },
            "required": ["sum"]
        }))),
        tool(
            "progress",
            "Sends one progress notification per step, then returns `done`.",
            json!({
                "type": "object",
                "properties": {
                    "steps": { "type": "integer", "minimum": 0, "default": 3 },
                    "delay_ms": { "type": "integer", "minimum": 0, "default": 10 }
                }
            }),
        ),
        tool(
            "sleep",
            "Waits `ms` milliseconds (honours cancellation), then returns `slept`.",
            json!({
                "type": "object",
                "properties": { "ms": { "type": "integer", "minimum": 0 } },
                "required": ["ms"]
            }),
        ),
        tool(
            "fail",
            "Returns a tool error (isError) carrying `message`.",
            string("message", "Error message."),
        ),
        tool("image", "Returns a 1x1 PNG image.", no_args()),
        tool("audio", "Returns a short WAV clip.", no_args()),
        tool(
            "resource_link",
            "Returns a link to `test://static/text`.",
            no_args(),
        ),
        tool(
            "embedded_resource",
            "Returns `test://static/text` embedded in the result.",
            no_args(),
        ),
        tool(
            "add_tool",
            "Registers a tool named `name` (answering `dynamic <name>`) and announces tools/list_changed.",
            string("name", "Name of the new tool."),
        ),
        tool(
            "sample",
            "Asks the client to sample an LLM with `prompt`; returns the model's text.",
            string("prompt", "Prompt sent to the client's model."),
        ),
        tool(
            "elicit",
            "Asks the client to elicit an `answer` from the user; returns the result as text.",
            string("message", "Message shown to the user."),
        ),
        tool(
            "log",
            "Sends `message` as an info-level log notification, then returns `logged`.",
            string("message", "Log message."),
        ),
    ]
}

/// Runs tool `request.name` if it is one of the gateway's test tools.
pub(crate) async fn call(
    upstream: &TestUpstream,
    request: &CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Option<ToolOutcome> {
    let args = Args::of(request);
    Some(match request.name.as_ref() {
        "echo" => args.string("text").map(text_result),
        "add" => add(&args),
        "progress" => progress(&args, ctx).await,
        "sleep" => sleep(&args, ctx).await,
        "fail" => args.string("message").map(support::error_result),
        "image" => Ok(content(ContentBlock::image(PNG_BASE64, "image/png"))),
        "audio" => Ok(content(ContentBlock::audio(WAV_BASE64, "audio/wav"))),
        "resource_link" => Ok(content(ContentBlock::resource_link(
            Resource::new(crate::catalog::STATIC_TEXT_URI, "static-text")
                .with_mime_type("text/plain")
                .with_description("A static text resource."),
        ))),
        "embedded_resource" => Ok(content(ContentBlock::resource(ResourceContents::text(
            crate::catalog::STATIC_TEXT,
            crate::catalog::STATIC_TEXT_URI,
        )))),
        "add_tool" => add_tool(upstream, &args).await,
        "sample" => sample(&args, request, ctx).await,
        "elicit" => elicit(&args, request, ctx).await,
        "log" => match args.string("message") {
            Ok(message) => {
                upstream.log(ctx, LoggingLevel::Info, json!(message)).await;
                Ok(text_result("logged"))
            }
            Err(failure) => Err(failure),
        },
        _ => return None,
    })
}

/// A successful result with a single content block.
fn content(block: ContentBlock) -> CallToolResult {
    CallToolResult::success(vec![block])
}

fn add(args: &Args<'_>) -> ToolOutcome {
    let sum = args.number("a")? + args.number("b")?;
    let mut result = text_result(sum.to_string());
    result.structured_content = Some(json!({ "sum": sum }));
    Ok(result)
}

async fn progress(args: &Args<'_>, ctx: &RequestContext<RoleServer>) -> ToolOutcome {
    let steps = args.integer_or("steps", 3)?;
    let delay = Duration::from_millis(args.integer_or("delay_ms", 10)?);
    for step in 1..=steps {
        if !support::sleep_unless_cancelled(ctx, delay).await {
            return Err(Failure::Tool("cancelled".into()));
        }
        let message = format!("step {step} of {steps}");
        support::progress(ctx, step as f64, steps as f64, Some(message)).await;
    }
    Ok(text_result("done"))
}

async fn sleep(args: &Args<'_>, ctx: &RequestContext<RoleServer>) -> ToolOutcome {
    let ms = args.integer_or("ms", 0)?;
    if support::sleep_unless_cancelled(ctx, Duration::from_millis(ms)).await {
        Ok(text_result("slept"))
    } else {
        Err(Failure::Tool("cancelled".into()))
    }
}

async fn add_tool(upstream: &TestUpstream, args: &Args<'_>) -> ToolOutcome {
    let name = args.string("name")?;
    if name.is_empty() {
        return Err(Failure::Tool("argument `name` must not be empty".into()));
    }
    if upstream.add_tool(name).await {
        Ok(text_result(format!("added {name}")))
    } else {
        Err(Failure::Tool(format!(
            "a tool named `{name}` already exists"
        )))
    }
}

async fn sample(
    args: &Args<'_>,
    request: &CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> ToolOutcome {
    let params = support::sampling_request(args.string("prompt")?, 100);
    let answer = support::create_message(ctx, request, "sample", params).await?;
    Ok(text_result(support::sampled_text(&answer)))
}

async fn elicit(
    args: &Args<'_>,
    request: &CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> ToolOutcome {
    let schema = support::elicitation_schema(json!({
        "type": "object",
        "properties": { "answer": { "type": "string", "description": "Your answer." } },
        "required": ["answer"]
    }))?;
    let answer = support::elicit(ctx, request, "elicit", args.string("message")?, schema).await?;
    Ok(text_result(support::describe_elicitation(&answer)))
}
