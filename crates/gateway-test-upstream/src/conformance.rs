//! Fixtures expected by the server scenarios of `@modelcontextprotocol/conformance`
//! 0.1.16: the `test_*` tools, `json_schema_2020_12_tool`, the `test://static-*` and
//! `test://watched-resource` resources, the `test://template/{id}/data` template, the
//! `test_*` prompts and the completion of `test_prompt_with_arguments`. Texts, MIME types,
//! delays and schemas follow the scenario descriptions.

// Logging and sampling are deprecated by SEP-2577; the scenarios still exercise them.
#![allow(deprecated)]

use std::time::Duration;

use rmcp::{
    RoleServer,
    model::{
        CallToolRequestParams, CallToolResult, CompleteRequestParams, ContentBlock, ErrorData,
        GetPromptResult, JsonObject, LoggingLevel, Prompt, PromptArgument, PromptMessage,
        ReadResourceResult, Reference, Resource, ResourceContents, ResourceTemplate, Role, Tool,
    },
    service::RequestContext,
};
use serde_json::{Value, json};

use crate::{
    TestUpstream,
    catalog::required,
    server::by_prefix,
    support::{
        self, Args, Failure, PNG_BASE64, ToolOutcome, WAV_BASE64, no_args, text_result, tool,
    },
};

/// Name of the tool whose input schema uses JSON Schema 2020-12 keywords (SEP-1613).
const JSON_SCHEMA_TOOL: &str = "json_schema_2020_12_tool";
/// Values offered when completing `test_prompt_with_arguments`'s arguments.
const COMPLETIONS: [&str; 5] = ["paris", "park", "party", "test", "testing"];

/// The conformance tools.
pub(crate) fn tools() -> Vec<Tool> {
    let string = |name: &str, about: &str| json!({ "type": "object", "properties": { name: { "type": "string", "description": about } }, "required": [name] });
    vec![
        tool(
            "test_simple_text",
            "Returns a simple text response.",
            no_args(),
        ),
        tool("test_image_content", "Returns a PNG image.", no_args()),
        tool("test_audio_content", "Returns a WAV clip.", no_args()),
        tool(
            "test_embedded_resource",
            "Returns an embedded text resource.",
            no_args(),
        ),
        tool(
            "test_multiple_content_types",
            "Returns text, image and embedded resource content.",
            no_args(),
        ),
        tool(
            "test_tool_with_logging",
            "Sends three info log notifications ~50 ms apart.",
            no_args(),
        ),
        tool(
            "test_error_handling",
            "Always returns a tool error.",
            no_args(),
        ),
        tool(
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100, ~50 ms apart.",
            no_args(),
        ),
        tool(
            "test_sampling",
            "Asks the client to sample an LLM with `prompt`.",
            string("prompt", "The prompt to send to the LLM"),
        ),
        tool(
            "test_elicitation",
            "Asks the client for a username and an email.",
            string("message", "The message to show the user"),
        ),
        tool(
            "test_elicitation_sep1034_defaults",
            "Elicits a form whose fields all carry defaults (SEP-1034).",
            no_args(),
        ),
        tool(
            "test_elicitation_sep1330_enums",
            "Elicits a form with the five enum schema variants (SEP-1330).",
            no_args(),
        ),
        tool(
            JSON_SCHEMA_TOOL,
            "Tool with JSON Schema 2020-12 features",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "type": "object",
                        "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
                    }
                },
                "properties": {
                    "name": { "type": "string" },
                    "address": { "$ref": "#/$defs/address" }
                },
                "additionalProperties": false
            }),
        ),
        tool(
            "test_reconnection",
            "SSE polling test (SEP-1699); answers on the POST stream, see the crate docs.",
            no_args(),
        ),
    ]
}

/// Runs tool `request.name` if it is a conformance tool.
pub(crate) async fn call(
    upstream: &TestUpstream,
    request: &CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Option<ToolOutcome> {
    let args = Args::of(request);
    Some(match request.name.as_ref() {
        "test_simple_text" => Ok(text_result("This is a simple text response for testing.")),
        "test_image_content" => Ok(CallToolResult::success(vec![image()])),
        "test_audio_content" => Ok(CallToolResult::success(vec![ContentBlock::audio(
            WAV_BASE64,
            "audio/wav",
        )])),
        "test_embedded_resource" => Ok(CallToolResult::success(vec![ContentBlock::resource(
            ResourceContents::text(
                "This is an embedded resource content.",
                "test://embedded-resource",
            ),
        )])),
        "test_multiple_content_types" => Ok(CallToolResult::success(vec![
            ContentBlock::text("Multiple content types test:"),
            image(),
            ContentBlock::resource(
                ResourceContents::text(
                    json!({ "test": "data", "value": 123 }).to_string(),
                    "test://mixed-content-resource",
                )
                .with_mime_type("application/json"),
            ),
        ])),
        "test_tool_with_logging" => with_logging(upstream, ctx).await,
        "test_error_handling" => Err(Failure::Tool(
            "This tool intentionally returns an error for testing".into(),
        )),
        "test_tool_with_progress" => with_progress(ctx).await,
        "test_sampling" => sampling(&args, request, ctx).await,
        "test_elicitation" => {
            elicitation(
                request,
                ctx,
                args.string("message"),
                elicitation_form(),
                "User response",
            )
            .await
        }
        "test_elicitation_sep1034_defaults" => {
            let message = Ok("Please review the defaults");
            elicitation(
                request,
                ctx,
                message,
                defaults_form(),
                "Elicitation completed",
            )
            .await
        }
        "test_elicitation_sep1330_enums" => {
            let message = Ok("Please pick from the enums");
            elicitation(request, ctx, message, enums_form(), "Elicitation completed").await
        }
        JSON_SCHEMA_TOOL => Ok(text_result(format!(
            "Received: {}",
            Value::Object(request.arguments.clone().unwrap_or_default())
        ))),
        "test_reconnection" => {
            if support::sleep_unless_cancelled(ctx, Duration::from_millis(100)).await {
                Ok(text_result("Reconnection test completed"))
            } else {
                Err(Failure::Tool("cancelled".into()))
            }
        }
        _ => return None,
    })
}

fn image() -> ContentBlock {
    ContentBlock::image(PNG_BASE64, "image/png")
}

async fn with_logging(upstream: &TestUpstream, ctx: &RequestContext<RoleServer>) -> ToolOutcome {
    let steps = [
        "Tool execution started",
        "Tool processing data",
        "Tool execution completed",
    ];
    for (i, message) in steps.into_iter().enumerate() {
        if i > 0 && !support::sleep_unless_cancelled(ctx, Duration::from_millis(50)).await {
            return Err(Failure::Tool("cancelled".into()));
        }
        upstream.log(ctx, LoggingLevel::Info, json!(message)).await;
    }
    Ok(text_result("Tool with logging executed successfully"))
}

async fn with_progress(ctx: &RequestContext<RoleServer>) -> ToolOutcome {
    for (i, value) in [0.0, 50.0, 100.0].into_iter().enumerate() {
        if i > 0 && !support::sleep_unless_cancelled(ctx, Duration::from_millis(50)).await {
            return Err(Failure::Tool("cancelled".into()));
        }
        support::progress(ctx, value, 100.0, None).await;
    }
    Ok(text_result("Tool with progress executed successfully"))
}

async fn sampling(
    args: &Args<'_>,
    request: &CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> ToolOutcome {
    let params = support::sampling_request(args.string("prompt")?, 100);
    let answer = support::create_message(ctx, request, "sampling", params).await?;
    Ok(text_result(format!(
        "LLM response: {}",
        support::sampled_text(&answer)
    )))
}

async fn elicitation(
    request: &CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
    message: Result<&str, Failure>,
    form: Value,
    label: &str,
) -> ToolOutcome {
    let schema = support::elicitation_schema(form)?;
    let answer = support::elicit(ctx, request, "elicitation", message?, schema).await?;
    Ok(text_result(format!(
        "{label}: {}",
        support::describe_elicitation(&answer)
    )))
}

/// The form of `test_elicitation`.
fn elicitation_form() -> Value {
    json!({
        "type": "object",
        "properties": {
            "username": { "type": "string", "description": "User's response" },
            "email": { "type": "string", "description": "User's email address" }
        },
        "required": ["username", "email"]
    })
}

/// The form of `test_elicitation_sep1034_defaults`: a default for every primitive type.
fn defaults_form() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "User name", "default": "John Doe" },
            "age": { "type": "integer", "description": "User age", "default": 30 },
            "score": { "type": "number", "description": "User score", "default": 95.5 },
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active"
            },
            "verified": { "type": "boolean", "description": "Verification status", "default": true }
        }
    })
}

/// The form of `test_elicitation_sep1330_enums`: the five enum schema variants.
fn enums_form() -> Value {
    let titled = |prefix: &str, noun: &str| {
        ["First", "Second", "Third"]
            .iter()
            .enumerate()
            .map(|(i, ordinal)| json!({ "const": format!("{prefix}{}", i + 1), "title": format!("{ordinal} {noun}") }))
            .collect::<Vec<_>>()
    };
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Untitled single-select",
                "enum": ["option1", "option2", "option3"]
            },
            "titledSingle": {
                "type": "string",
                "description": "Titled single-select",
                "oneOf": titled("value", "Option")
            },
            "legacyEnum": {
                "type": "string",
                "description": "Legacy titled enum",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]
            },
            "untitledMulti": {
                "type": "array",
                "description": "Untitled multi-select",
                "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
            },
            "titledMulti": {
                "type": "array",
                "description": "Titled multi-select",
                "items": { "anyOf": titled("value", "Choice") }
            }
        }
    })
}

/// The conformance resources.
pub(crate) fn resources() -> Vec<Resource> {
    vec![
        Resource::new("test://static-text", "static-text")
            .with_description("Static text resource for conformance tests.")
            .with_mime_type("text/plain"),
        Resource::new("test://static-binary", "static-binary")
            .with_description("Static binary resource (PNG) for conformance tests.")
            .with_mime_type("image/png"),
        Resource::new("test://watched-resource", "watched-resource")
            .with_description("Resource clients can subscribe to.")
            .with_mime_type("text/plain"),
    ]
}

/// The conformance resource templates.
pub(crate) fn resource_templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new("test://template/{id}/data", "template-data")
            .with_description("Data for `id`, as JSON.")
            .with_mime_type("application/json"),
    ]
}

/// Reads `uri` if it is a conformance resource.
pub(crate) fn read(uri: &str) -> Option<ReadResourceResult> {
    let contents = match uri {
        "test://static-text" => {
            ResourceContents::text("This is the content of the static text resource.", uri)
        }
        "test://static-binary" => {
            ResourceContents::blob(PNG_BASE64, uri).with_mime_type("image/png")
        }
        "test://watched-resource" => ResourceContents::text("Watched resource content.", uri),
        _ => {
            let id = uri
                .strip_prefix("test://template/")?
                .strip_suffix("/data")?;
            if id.is_empty() || id.contains('/') {
                return None;
            }
            let data =
                json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
            ResourceContents::text(data.to_string(), uri).with_mime_type("application/json")
        }
    };
    Some(ReadResourceResult::new(vec![contents]))
}

/// The conformance prompts.
pub(crate) fn prompts() -> Vec<Prompt> {
    let arg = |name: &str, about: &str| {
        PromptArgument::new(name)
            .with_description(about)
            .with_required(true)
    };
    vec![
        Prompt::new(
            "test_simple_prompt",
            Some("A simple prompt without arguments."),
            None,
        ),
        Prompt::new(
            "test_prompt_with_arguments",
            Some("A prompt with two required arguments."),
            Some(vec![
                arg("arg1", "First test argument"),
                arg("arg2", "Second test argument"),
            ]),
        ),
        Prompt::new(
            "test_prompt_with_embedded_resource",
            Some("A prompt embedding a resource."),
            Some(vec![arg("resourceUri", "URI of the resource to embed")]),
        ),
        Prompt::new(
            "test_prompt_with_image",
            Some("A prompt with an image."),
            None,
        ),
    ]
}

/// Renders prompt `name` if it is a conformance prompt.
pub(crate) fn get_prompt(
    name: &str,
    arguments: &JsonObject,
) -> Option<Result<GetPromptResult, ErrorData>> {
    let user = |text: String| PromptMessage::new_text(Role::User, text);
    Some(match name {
        "test_simple_prompt" => Ok(GetPromptResult::new(vec![user(
            "This is a simple prompt for testing.".into(),
        )])),
        "test_prompt_with_arguments" => required(arguments, "arg1").and_then(|arg1| {
            let arg2 = required(arguments, "arg2")?;
            Ok(GetPromptResult::new(vec![user(format!(
                "Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
            ))]))
        }),
        "test_prompt_with_embedded_resource" => required(arguments, "resourceUri").map(|uri| {
            let resource = ContentBlock::resource(ResourceContents::text(
                "Embedded resource content for testing.",
                uri,
            ));
            GetPromptResult::new(vec![
                PromptMessage::new(Role::User, resource),
                user("Please process the embedded resource above.".into()),
            ])
        }),
        "test_prompt_with_image" => Ok(GetPromptResult::new(vec![
            PromptMessage::new(Role::User, image()),
            user("Please analyze the image above.".into()),
        ])),
        _ => return None,
    })
}

/// Completion values for `test_prompt_with_arguments`'s arguments.
pub(crate) fn complete(request: &CompleteRequestParams) -> Option<Vec<String>> {
    match &request.r#ref {
        Reference::Prompt(prompt) if prompt.name == "test_prompt_with_arguments" => {
            Some(by_prefix(&COMPLETIONS, &request.argument.value))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elicitation_forms_survive_rmcp_typing() {
        for form in [elicitation_form(), defaults_form(), enums_form()] {
            let parsed = support::elicitation_schema(form.clone()).expect("form parses");
            assert_eq!(serde_json::to_value(parsed).expect("serializes"), form);
        }
    }

    #[test]
    fn template_substitutes_the_id() {
        let read = read("test://template/123/data").expect("template matches");
        let json = serde_json::to_value(&read.contents[0]).expect("serializes");
        assert_eq!(json["mimeType"], "application/json");
        assert!(
            json["text"]
                .as_str()
                .is_some_and(|t| t.contains("Data for ID: 123"))
        );
        assert!(super::read("test://template//data").is_none());
    }
}
