//! The gateway's own test resources (`test://static/text`, `test://static/blob`, the
//! template `test://items/{id}`), prompts (`greeting`, `simple`) and completions (the
//! `greeting` prompt's `name`).

use rmcp::model::{
    CompleteRequestParams, ErrorData, GetPromptResult, JsonObject, Prompt, PromptArgument,
    PromptMessage, ReadResourceResult, Reference, Resource, ResourceContents, ResourceTemplate,
    Role,
};

use crate::{server::by_prefix, support::PNG_BASE64};

/// URI of the static text resource.
pub(crate) const STATIC_TEXT_URI: &str = "test://static/text";
/// Text of the static text resource.
pub(crate) const STATIC_TEXT: &str = "Static text resource of the test upstream.";
/// URI of the static binary resource (a PNG).
const STATIC_BLOB_URI: &str = "test://static/blob";
/// URI template of the item resources.
const ITEMS_TEMPLATE: &str = "test://items/{id}";
/// Names the `greeting` prompt's `name` argument completes to.
const NAMES: [&str; 3] = ["alice", "bob", "carol"];

/// The direct resources.
pub(crate) fn resources() -> Vec<Resource> {
    vec![
        Resource::new(STATIC_TEXT_URI, "static-text")
            .with_description("A static text resource.")
            .with_mime_type("text/plain"),
        Resource::new(STATIC_BLOB_URI, "static-blob")
            .with_description("A static binary resource (a 1x1 PNG).")
            .with_mime_type("image/png"),
    ]
}

/// The resource templates.
pub(crate) fn resource_templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(ITEMS_TEMPLATE, "item")
            .with_description("Item `id`; any id can be read.")
            .with_mime_type("text/plain"),
    ]
}

/// Reads `uri` if it is one of these resources.
pub(crate) fn read(uri: &str) -> Option<ReadResourceResult> {
    let contents = match uri {
        STATIC_TEXT_URI => ResourceContents::text(STATIC_TEXT, uri),
        STATIC_BLOB_URI => ResourceContents::blob(PNG_BASE64, uri).with_mime_type("image/png"),
        _ => {
            let id = uri.strip_prefix("test://items/")?;
            if id.is_empty() || id.contains('/') {
                return None;
            }
            ResourceContents::text(format!("item {id}"), uri)
        }
    };
    Some(ReadResourceResult::new(vec![contents]))
}

/// The prompts.
pub(crate) fn prompts() -> Vec<Prompt> {
    vec![
        Prompt::new(
            "greeting",
            Some("Greets `name`."),
            Some(vec![
                PromptArgument::new("name")
                    .with_description("Who to greet.")
                    .with_required(true),
            ]),
        ),
        Prompt::new("simple", Some("A prompt without arguments."), None),
    ]
}

/// Renders prompt `name` if it is one of these prompts.
pub(crate) fn get_prompt(
    name: &str,
    arguments: &JsonObject,
) -> Option<Result<GetPromptResult, ErrorData>> {
    Some(match name {
        "greeting" => required(arguments, "name").map(|who| {
            GetPromptResult::new(vec![PromptMessage::new_text(
                Role::User,
                format!("Hello, {who}!"),
            )])
            .with_description("A greeting.")
        }),
        "simple" => Ok(GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            "A simple prompt.",
        )])),
        _ => return None,
    })
}

/// Completion values, if the request targets one of these prompts or templates.
pub(crate) fn complete(request: &CompleteRequestParams) -> Option<Vec<String>> {
    let argument = &request.argument;
    match &request.r#ref {
        Reference::Prompt(prompt) if prompt.name == "greeting" && argument.name == "name" => {
            Some(by_prefix(&NAMES, &argument.value))
        }
        Reference::Resource(template)
            if template.uri == ITEMS_TEMPLATE && argument.name == "id" =>
        {
            Some(by_prefix(&["1", "2", "3"], &argument.value))
        }
        _ => None,
    }
}

/// A required string prompt argument; a missing one is invalid params (-32602).
pub(crate) fn required<'a>(arguments: &'a JsonObject, name: &str) -> Result<&'a str, ErrorData> {
    arguments
        .get(name)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            ErrorData::invalid_params(format!("missing required argument `{name}`"), None)
        })
}
