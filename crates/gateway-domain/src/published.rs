//! The official MCP Registry's description of a server (`server.json`, schema
//! 2025-12-11) and the gateway's published entries of it, which it serves as a
//! subregistry under `/v0.1`. A published entry is one immutable version of one
//! server description, with a registry-managed status; it is kept apart from the
//! gateway's runtime settings of an upstream ([`crate::UpstreamServer`]) and may link
//! to one.
//!
//! [`ServerJson`] is the typed model: every field of the schema, with unknown fields
//! kept (the schema allows them) so a document round-trips unchanged, and
//! [`ServerJson::parse`] enforces the schema's rules, naming each offending field as a
//! dotted path (`packages.0.version`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{RepositoryError, ValidationErrors};
use crate::server::ServerId;

/// The reverse-DNS name of a published server (`io.github.acme/weather`): 3 to 200
/// characters, `[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RegistryName(String);

impl RegistryName {
    /// Checks the official pattern and length.
    pub fn parse(value: &str) -> Result<Self, String> {
        let count = value.chars().count();
        if !(3..=200).contains(&count) {
            return Err(format!("must be 3 to 200 characters, got {count}"));
        }
        let Some((namespace, name)) = value.split_once('/') else {
            return Err(format!(
                "`{}` must be `namespace/name` in reverse-DNS form, such as io.github.user/weather",
                value.escape_debug()
            ));
        };
        let namespace_ok = !namespace.is_empty()
            && namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !namespace_ok || !name_ok {
            return Err(format!(
                "`{}` must match ^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$",
                value.escape_debug()
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RegistryName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Unknown fields of an object, kept for the round trip.
type Extra = Map<String, Value>;

/// A user input (argument, header, environment variable, URL variable): the fields
/// every kind of input declares. What only some kinds declare (`name`, `type`,
/// `valueHint`, `isRepeated`, `variables`) stays in `extra` and is checked where it is
/// declared, so an undeclared field of any type is accepted, as the schema does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether it must be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_required: Option<bool>,
    /// `string`, `number`, `boolean` or `filepath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// A fixed value (`{name}` is replaced from `variables`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Whether it is a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_secret: Option<bool>,
    /// The value when none is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// A hint for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// The allowed values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Input {
    /// A field only some kinds of input declare.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.extra.get(name)
    }

    /// `name`, when it is text (headers, environment variables, named arguments).
    pub fn name(&self) -> Option<&str> {
        self.field("name").and_then(Value::as_str)
    }
}

/// How a package or a remote is reached. `url` and `headers` are declared by the
/// HTTP transports, `variables` by remotes; they stay in `extra` for the others.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransportJson {
    /// `stdio`, `streamable-http` or `sse`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Unknown fields, and those only some transports declare.
    #[serde(flatten)]
    pub extra: Extra,
}

impl TransportJson {
    /// The endpoint of an HTTP transport.
    pub fn url(&self) -> Option<&str> {
        self.extra.get("url").and_then(Value::as_str)
    }

    /// The headers of an HTTP transport, when they parse.
    pub fn headers(&self) -> Vec<Input> {
        self.extra
            .get("headers")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    /// The URL variables of a remote, when they parse.
    pub fn variables(&self) -> BTreeMap<String, Input> {
        self.extra
            .get("variables")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}

/// A package the server is distributed as (npm, PyPI, OCI, MCPB, …).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    /// The package registry (`npm`, `pypi`, `oci`, …).
    pub registry_type: String,
    /// The package's name, image reference or download URL.
    pub identifier: String,
    /// How the packaged server speaks MCP.
    pub transport: TransportJson,
    /// The package version (never `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The package registry's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_base_url: Option<String>,
    /// SHA-256 of the package file (lowercase hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
    /// The runtime that runs it (`npx`, `uvx`, `docker`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_hint: Option<String>,
    /// Arguments to the runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_arguments: Option<Vec<Input>>,
    /// Arguments to the package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_arguments: Option<Vec<Input>>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<Vec<Input>>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A `server.json` document (schema 2025-12-11).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerJson {
    /// The schema the document follows.
    #[serde(default, rename = "$schema", skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Reverse-DNS name.
    pub name: String,
    /// What it does (≤ 100 characters).
    pub description: String,
    /// Its version (never a range).
    pub version: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its website.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website_url: Option<String>,
    /// Its source repository (`url`, `source`, `id`, `subfolder`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Map<String, Value>>,
    /// Icons (`src`, `mimeType`, `sizes`, `theme`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icons: Option<Vec<Map<String, Value>>>,
    /// Packages it is distributed as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<Package>>,
    /// Remote endpoints it is reachable at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remotes: Option<Vec<TransportJson>>,
    /// Extension metadata (reverse-DNS keys).
    #[serde(default, rename = "_meta", skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Collects errors under a path prefix.
struct Check<'a> {
    errors: &'a mut ValidationErrors,
}

impl Check<'_> {
    fn push(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(path.trim_start_matches('.'), message);
    }

    fn length(&mut self, path: &str, value: &str, min: usize, max: Option<usize>) {
        let count = value.chars().count();
        if count < min || max.is_some_and(|max| count > max) {
            let range = match max {
                Some(max) => format!("{min} to {max}"),
                None => format!("at least {min}"),
            };
            self.push(path, format!("must be {range} characters, got {count}"));
        }
    }

    fn uri(&mut self, path: &str, value: &str) {
        if url::Url::parse(value).is_err() {
            self.push(path, format!("`{}` is not a URI", value.escape_debug()));
        }
    }

    fn http_url(&mut self, path: &str, value: &str) {
        let ok = (value.starts_with("http://") || value.starts_with("https://"))
            && value.len() > value.find("://").map_or(0, |i| i + 3)
            && !value.chars().any(char::is_whitespace);
        if !ok {
            self.push(
                path,
                format!("`{}` must match ^https?://[^\\s]+$", value.escape_debug()),
            );
        }
    }

    /// An `Input` (the base fields are typed by serde already): its `format`.
    fn input(&mut self, path: &str, input: &Input) {
        if let Some(format) = &input.format
            && !matches!(
                format.as_str(),
                "string" | "number" | "boolean" | "filepath"
            )
        {
            self.push(
                &format!("{path}.format"),
                "must be one of string, number, boolean, filepath",
            );
        }
    }

    /// A value that must parse as `T` (each error names its path).
    fn typed<T: serde::de::DeserializeOwned>(&mut self, path: &str, value: &Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                let inner = error.path().to_string();
                let at = if inner == "." {
                    path.to_owned()
                } else {
                    format!("{path}.{inner}")
                };
                self.push(&at, error.inner().to_string());
                None
            }
        }
    }

    /// `variables` of an input with variables: a map of inputs.
    fn variables(&mut self, path: &str, value: Option<&Value>) {
        let Some(value) = value else { return };
        let path = format!("{path}.variables");
        if let Some(map) = self.typed::<BTreeMap<String, Input>>(&path, value) {
            for (name, variable) in &map {
                self.input(&format!("{path}.{name}"), variable);
            }
        }
    }

    /// A header or environment variable: an input with a `name` and `variables`.
    fn key_value(&mut self, path: &str, input: &Input) {
        match input.field("name") {
            Some(Value::String(_)) => {}
            Some(_) => self.push(&format!("{path}.name"), "must be a string"),
            None => self.push(&format!("{path}.name"), "required"),
        }
        self.input(path, input);
        self.variables(path, input.field("variables"));
    }

    fn argument(&mut self, path: &str, argument: &Input) {
        let text = |field: &str| argument.field(field).map(Value::is_string);
        if argument
            .field("isRepeated")
            .is_some_and(|v| !v.is_boolean())
        {
            self.push(&format!("{path}.isRepeated"), "must be a boolean");
        }
        match argument.field("type").and_then(Value::as_str) {
            Some("positional") => {
                if text("valueHint") == Some(false) {
                    self.push(&format!("{path}.valueHint"), "must be a string");
                }
                if argument.field("valueHint").is_none() && argument.value.is_none() {
                    self.push(path, "a positional argument needs `valueHint` or `value`");
                }
            }
            Some("named") => match text("name") {
                Some(true) => {}
                Some(false) => self.push(&format!("{path}.name"), "must be a string"),
                None => self.push(&format!("{path}.name"), "a named argument needs `name`"),
            },
            Some(other) => self.push(
                &format!("{path}.type"),
                format!("`{}` is not `positional` or `named`", other.escape_debug()),
            ),
            None => self.push(&format!("{path}.type"), "required: `positional` or `named`"),
        }
        self.input(path, argument);
        self.variables(path, argument.field("variables"));
    }

    fn transport(&mut self, path: &str, transport: &TransportJson, remote: bool) {
        match transport.kind.as_str() {
            "streamable-http" | "sse" => {
                match transport.extra.get("url") {
                    Some(Value::String(url)) => self.http_url(&format!("{path}.url"), url),
                    Some(_) => self.push(&format!("{path}.url"), "must be a string"),
                    None => self.push(&format!("{path}.url"), "required"),
                }
                if let Some(headers) = transport.extra.get("headers") {
                    let at = format!("{path}.headers");
                    if let Some(list) = self.typed::<Vec<Input>>(&at, headers) {
                        for (index, header) in list.iter().enumerate() {
                            self.key_value(&format!("{at}.{index}"), header);
                        }
                    }
                }
            }
            "stdio" if !remote => {}
            other => {
                let allowed = if remote {
                    "streamable-http or sse"
                } else {
                    "stdio, streamable-http or sse"
                };
                self.push(
                    &format!("{path}.type"),
                    format!("`{}` is not {allowed}", other.escape_debug()),
                );
            }
        }
        if remote {
            self.variables(path, transport.extra.get("variables"));
        }
    }
}

/// Fields the schema declares (on some object); an explicit `null` in one of them is
/// not valid (leave the field out instead). `_meta` and unknown fields may hold
/// anything.
const DECLARED: &[&str] = &[
    "$schema",
    "name",
    "description",
    "version",
    "title",
    "websiteUrl",
    "repository",
    "icons",
    "packages",
    "remotes",
    "url",
    "source",
    "id",
    "subfolder",
    "src",
    "mimeType",
    "sizes",
    "theme",
    "registryType",
    "identifier",
    "transport",
    "registryBaseUrl",
    "fileSha256",
    "runtimeHint",
    "runtimeArguments",
    "packageArguments",
    "environmentVariables",
    "type",
    "headers",
    "variables",
    "isRequired",
    "format",
    "value",
    "isSecret",
    "default",
    "placeholder",
    "choices",
    "valueHint",
    "isRepeated",
];

/// Refuses NUL characters in any text or key below `value` (no database stores them)
/// and, where `declared` (the schema's own fields, not `_meta` or extensions), a
/// `null` field; each named by its path.
fn check_values(path: &str, value: &Value, declared: bool, check: &mut Check<'_>) {
    match value {
        Value::String(text) if text.contains('\0') => {
            check.push(path, "must not contain a NUL character");
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                check_values(&format!("{path}.{index}"), item, declared, check);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                if key.contains('\0') {
                    check.push(path, "keys must not contain a NUL character");
                }
                let at = format!("{path}.{key}");
                let field_declared = declared && key != "_meta" && DECLARED.contains(&key.as_str());
                if field_declared && item.is_null() {
                    check.push(&at, "must not be null; leave the field out");
                } else {
                    check_values(&at, item, field_declared, check);
                }
            }
        }
        _ => {}
    }
}

/// Version strings no client could address or that the schema's text forbids:
/// empty, the reserved word `latest`, and ranges (`^1.2`, `~1`, `>=1`, `1.x`, `*`).
fn version_problem(version: &str) -> Option<&'static str> {
    if version.is_empty() {
        return Some("must not be empty");
    }
    if version == "latest" {
        return Some("`latest` is reserved for the newest version; give a specific version");
    }
    let range = version.starts_with(['^', '~', '>', '<', '=', '*'])
        || version.contains("||")
        || version.contains(char::is_whitespace)
        || version
            .split('.')
            .any(|part| part == "x" || part == "X" || part == "*");
    range.then_some("must be one specific version, not a range")
}

impl ServerJson {
    /// Parses a document and checks every rule of the official schema; each error
    /// names its field.
    pub fn parse(value: &Value) -> Result<Self, ValidationErrors> {
        if !value.is_object() {
            return Err(ValidationErrors::single(
                "",
                "a server.json document must be an object",
            ));
        }
        let document: Self = serde_path_to_error::deserialize(value.clone()).map_err(|error| {
            let path = error.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let message = error.inner().to_string();
            // serde reports a missing field at its parent: name the field itself.
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split_once('`'))
                .map(|(field, _)| field.to_owned());
            match missing {
                Some(field) if path.is_empty() => ValidationErrors::single(field, "required"),
                Some(field) => ValidationErrors::single(format!("{path}.{field}"), "required"),
                None => ValidationErrors::single(path, message),
            }
        })?;
        let mut errors = ValidationErrors::new();
        let mut check = Check {
            errors: &mut errors,
        };
        check_values("", value, true, &mut check);
        document.check(&mut check);
        errors.into_result(|| document)
    }

    fn check(&self, check: &mut Check<'_>) {
        if let Some(schema) = &self.schema {
            check.uri("$schema", schema);
        }
        if let Err(error) = RegistryName::parse(&self.name) {
            check.push("name", error);
        }
        check.length("description", &self.description, 1, Some(100));
        check.length("version", &self.version, 0, Some(255));
        if let Some(problem) = version_problem(&self.version) {
            check.push("version", problem);
        }
        if let Some(title) = &self.title {
            check.length("title", title, 1, Some(100));
        }
        if let Some(url) = &self.website_url {
            check.uri("websiteUrl", url);
        }
        if let Some(repository) = &self.repository {
            for field in ["id", "subfolder"] {
                if repository.get(field).is_some_and(|v| !v.is_string()) {
                    check.push(&format!("repository.{field}"), "must be a string");
                }
            }
            for field in ["url", "source"] {
                match repository.get(field) {
                    Some(Value::String(text)) if field == "url" => {
                        check.uri("repository.url", text)
                    }
                    Some(Value::String(_)) => {}
                    Some(_) => check.push(&format!("repository.{field}"), "must be a string"),
                    None => check.push(&format!("repository.{field}"), "required"),
                }
            }
        }
        for (index, icon) in self.icons.iter().flatten().enumerate() {
            let path = format!("icons.{index}");
            match icon.get("src") {
                Some(Value::String(src)) => {
                    check.uri(&format!("{path}.src"), src);
                    check.length(&format!("{path}.src"), src, 0, Some(255));
                }
                _ => check.push(&format!("{path}.src"), "required, a URI"),
            }
            if let Some(mime) = icon.get("mimeType") {
                let known = [
                    "image/png",
                    "image/jpeg",
                    "image/jpg",
                    "image/svg+xml",
                    "image/webp",
                ];
                if !mime.as_str().is_some_and(|m| known.contains(&m)) {
                    check.push(
                        &format!("{path}.mimeType"),
                        format!("must be one of {}", known.join(", ")),
                    );
                }
            }
            if let Some(theme) = icon.get("theme")
                && !theme.as_str().is_some_and(|t| t == "light" || t == "dark")
            {
                check.push(&format!("{path}.theme"), "must be light or dark");
            }
            if let Some(sizes) = icon.get("sizes") {
                let valid = |size: &str| {
                    size == "any"
                        || size.split_once('x').is_some_and(|(w, h)| {
                            !w.is_empty()
                                && !h.is_empty()
                                && w.chars().all(|c| c.is_ascii_digit())
                                && h.chars().all(|c| c.is_ascii_digit())
                        })
                };
                let ok = sizes
                    .as_array()
                    .is_some_and(|all| all.iter().all(|s| s.as_str().is_some_and(valid)));
                if !ok {
                    check.push(
                        &format!("{path}.sizes"),
                        "each must be WxH (such as 48x48) or any",
                    );
                }
            }
        }
        if let Some(provided) = self
            .meta
            .as_ref()
            .and_then(|meta| meta.get("io.modelcontextprotocol.registry/publisher-provided"))
            && !provided.is_object()
        {
            check.push(
                "_meta.io.modelcontextprotocol.registry/publisher-provided",
                "must be an object",
            );
        }
        for (index, package) in self.packages.iter().flatten().enumerate() {
            let path = format!("packages.{index}");
            if let Some(version) = &package.version {
                if version.is_empty() {
                    check.push(&format!("{path}.version"), "must not be empty");
                } else if version == "latest" {
                    check.push(
                        &format!("{path}.version"),
                        "must be a specific version, not `latest`",
                    );
                }
            }
            if let Some(url) = &package.registry_base_url {
                check.uri(&format!("{path}.registryBaseUrl"), url);
            }
            if let Some(hash) = &package.file_sha256
                && !(hash.len() == 64 && hash.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')))
            {
                check.push(
                    &format!("{path}.fileSha256"),
                    "must be 64 lowercase hex digits",
                );
            }
            check.transport(&format!("{path}.transport"), &package.transport, false);
            for (list, arguments) in [
                ("runtimeArguments", &package.runtime_arguments),
                ("packageArguments", &package.package_arguments),
            ] {
                for (at, argument) in arguments.iter().flatten().enumerate() {
                    check.argument(&format!("{path}.{list}.{at}"), argument);
                }
            }
            for (at, variable) in package.environment_variables.iter().flatten().enumerate() {
                check.key_value(&format!("{path}.environmentVariables.{at}"), variable);
            }
        }
        for (index, remote) in self.remotes.iter().flatten().enumerate() {
            check.transport(&format!("remotes.{index}"), remote, true);
        }
    }

    /// The validated name.
    pub fn registry_name(&self) -> Result<RegistryName, String> {
        RegistryName::parse(&self.name)
    }
}

/// A published entry's registry-managed status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishStatus {
    /// Listed and usable.
    Active,
    /// Listed, with a warning.
    Deprecated,
    /// Hidden unless asked for.
    Deleted,
}

impl PublishStatus {
    /// Every status.
    pub const ALL: [Self; 3] = [Self::Active, Self::Deprecated, Self::Deleted];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deprecated => "deprecated",
            Self::Deleted => "deleted",
        }
    }
}

impl std::str::FromStr for PublishStatus {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        crate::access::parse_wire_name(value, &Self::ALL, Self::as_str)
    }
}

/// One published version of one server description.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedServer {
    /// The reverse-DNS name.
    pub name: RegistryName,
    /// The version (immutable once published).
    pub version: String,
    /// The document as imported (unknown fields included), for a faithful export.
    pub document: Value,
    /// Its status.
    pub status: PublishStatus,
    /// Why it has that status.
    pub status_message: Option<String>,
    /// When the status last changed.
    pub status_changed_at: DateTime<Utc>,
    /// When this version was published here.
    pub published_at: DateTime<Utc>,
    /// When this entry last changed (status, link).
    pub updated_at: DateTime<Utc>,
    /// Whether this is the server's latest version.
    pub is_latest: bool,
    /// The gateway upstream it describes, if one was registered from it.
    pub upstream: Option<ServerId>,
}

/// Which version a listing keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionFilter {
    /// Every version.
    All,
    /// Only each server's latest.
    Latest,
    /// Only this exact version.
    Exact(String),
}

/// A page request over the published entries, ordered by (name, version).
#[derive(Debug, Clone)]
pub struct PublishedQuery {
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
    /// Only entries updated strictly after this time.
    pub updated_since: Option<DateTime<Utc>>,
    /// Which versions.
    pub version: VersionFilter,
    /// Include deleted entries.
    pub include_deleted: bool,
    /// Only versions linked to this upstream.
    pub upstream: Option<ServerId>,
    /// Start after this (name, version).
    pub after: Option<(String, String)>,
    /// Rows to return at most.
    pub limit: u64,
}

/// A status change of one published version.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    /// The new status.
    pub status: PublishStatus,
    /// Why (deprecated or deleted only).
    pub message: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Stores published entries. Every write recomputes which version of the server is
/// the latest ([`latest_version`]) inside its own transaction, with concurrent writers
/// of the same server excluded, so exactly one version (or none) is the latest.
#[async_trait::async_trait]
pub trait PublishedRepository: Send + Sync {
    /// Stores a new version (with the status it carries); `Duplicate` if the version
    /// exists. Returns it as stored (`is_latest` set).
    async fn publish(&self, entry: &PublishedServer) -> Result<PublishedServer, RepositoryError>;
    /// One version, if stored.
    async fn find(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<PublishedServer>, RepositoryError>;
    /// Every version of a server, newest publication first.
    async fn versions(&self, name: &str) -> Result<Vec<PublishedServer>, RepositoryError>;
    /// A page of entries in (name, version) order.
    async fn list(&self, query: &PublishedQuery) -> Result<Vec<PublishedServer>, RepositoryError>;
    /// Changes a version's status (only its status columns); `NotFound` if none.
    /// Returns it as stored.
    async fn set_status(
        &self,
        name: &str,
        version: &str,
        change: &StatusChange,
    ) -> Result<PublishedServer, RepositoryError>;
    /// Links a version to the upstream registered from it (only that column).
    async fn link(
        &self,
        name: &str,
        version: &str,
        upstream: ServerId,
        at: DateTime<Utc>,
    ) -> Result<(), RepositoryError>;
}

/// Of some versions, the one a client should get as `latest`: the highest semantic
/// version among those not deleted (a version that is not semver counts below every
/// semver one, and among themselves by publication time).
pub fn latest_version<'a>(
    versions: impl IntoIterator<Item = (&'a str, DateTime<Utc>, PublishStatus)>,
) -> Option<&'a str> {
    versions
        .into_iter()
        .filter(|(_, _, status)| *status != PublishStatus::Deleted)
        .max_by(|a, b| {
            let (sa, sb) = (
                semver::Version::parse(a.0).ok(),
                semver::Version::parse(b.0).ok(),
            );
            match (sa, sb) {
                (Some(x), Some(y)) => x.cmp(&y).then(a.1.cmp(&b.1)),
                (Some(_), None) => std::cmp::Ordering::Greater,
                (None, Some(_)) => std::cmp::Ordering::Less,
                (None, None) => a.1.cmp(&b.1),
            }
        })
        .map(|(version, _, _)| version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Vec<String> {
        ServerJson::parse(&value)
            .expect_err("invalid")
            .errors()
            .iter()
            .map(|e| e.field.clone())
            .collect()
    }

    #[test]
    fn a_full_document_parses_and_serialises_back_unchanged() {
        let document = json!({
            "$schema": "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
            "name": "io.github.user/remote-weather", "description": "Weather.", "version": "2.1.0",
            "title": "Remote Weather", "websiteUrl": "https://example.com",
            "repository": {"url": "https://github.com/x/y", "source": "github", "subfolder": "src"},
            "icons": [{"src": "https://example.com/i.png", "mimeType": "image/png", "sizes": ["48x48", "any"]}],
            "packages": [{"registryType": "npm", "identifier": "@x/y", "version": "1.0.0", "transport": {"type": "stdio"},
                "packageArguments": [{"type": "positional", "valueHint": "path"}, {"type": "named", "name": "--port", "value": "8080"}],
                "environmentVariables": [{"name": "API_KEY", "isSecret": true}], "futureField": 1}],
            "remotes": [{"type": "streamable-http", "url": "https://{host}/mcp", "headers": [{"name": "Authorization", "isSecret": true}],
                "variables": {"host": {"default": "api.example.com"}}}],
            "_meta": {"io.modelcontextprotocol.registry/publisher-provided": {"x": 1}, "com.example": {}},
            "unknownTopLevel": true
        });
        let parsed = ServerJson::parse(&document).expect("valid");
        assert_eq!(serde_json::to_value(&parsed).expect("serialises"), document);
    }

    #[test]
    fn each_rule_of_the_schema_names_its_field() {
        let base = |extra: Value| {
            let mut doc = json!({"name": "a.b/c", "description": "d", "version": "1"});
            if let (Value::Object(d), Value::Object(e)) = (&mut doc, extra) {
                d.extend(e);
            }
            doc
        };
        assert_eq!(fields(base(json!({"name": "no-slash"}))), ["name"]);
        assert_eq!(
            fields(base(json!({"description": "x".repeat(101)}))),
            ["description"]
        );
        assert_eq!(
            fields(json!({"description": "d", "version": "1"})),
            ["name"]
        );
        assert_eq!(
            fields(base(
                json!({"packages": [{"registryType": "npm", "identifier": "x", "version": "latest", "transport": {"type": "stdio"}}]})
            )),
            ["packages.0.version"]
        );
        assert_eq!(
            fields(base(
                json!({"packages": [{"registryType": "npm", "identifier": "x", "transport": {"type": "stdio"},
                "packageArguments": [{"type": "positional", "isRepeated": false}]}]})
            )),
            ["packages.0.packageArguments.0"]
        );
        assert_eq!(
            fields(base(json!({"remotes": [{"type": "stdio"}]}))),
            ["remotes.0.type"]
        );
        assert_eq!(
            fields(base(
                json!({"remotes": [{"type": "sse", "url": "ftp://x"}]})
            )),
            ["remotes.0.url"]
        );
        assert_eq!(fields(base(json!({"version": 3}))), ["version"]);
        assert_eq!(
            fields(base(
                json!({"icons": [{"src": "https://x/i.png", "sizes": ["big"]}]})
            )),
            ["icons.0.sizes"]
        );
    }

    #[test]
    fn nul_characters_in_keys_are_refused_in_declared_fields_too() {
        // A declared object's keys were not checked: the NUL reached the database
        // (PostgreSQL refuses it in JSONB: a 500 instead of a 422 naming the field).
        let mut errors = ValidationErrors::new();
        let mut check = Check {
            errors: &mut errors,
        };
        let document = json!({"repository": {"a\u{0}": "x"}, "_meta": {"b\u{0}": 1}});
        check_values("", &document, true, &mut check);
        // Sorted: the map's order depends on serde_json's `preserve_order` feature.
        let mut fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["_meta", "repository"]);
    }

    #[test]
    fn nulls_nul_characters_and_unaddressable_versions_are_refused() {
        let base = |extra: Value| {
            let mut doc = json!({"name": "a.b/c", "description": "d", "version": "1.0.0"});
            if let (Value::Object(d), Value::Object(e)) = (&mut doc, extra) {
                d.extend(e);
            }
            doc
        };
        assert_eq!(fields(base(json!({"title": null}))), ["title"]);
        assert_eq!(
            fields(base(
                json!({"packages": [{"registryType": "npm", "identifier": "x", "version": null, "transport": {"type": "stdio"}}]})
            )),
            ["packages.0.version"]
        );
        assert_eq!(
            fields(base(json!({"description": "a\u{0}b"}))),
            ["description"]
        );
        for version in ["", "latest", "^1.2.3", "~1", ">=1.0", "1.x", "*", "1 || 2"] {
            assert_eq!(
                fields(base(json!({"version": version}))),
                ["version"],
                "{version:?}"
            );
        }
        assert_eq!(
            fields(base(
                json!({"_meta": {"io.modelcontextprotocol.registry/publisher-provided": 3}})
            )),
            ["_meta.io.modelcontextprotocol.registry/publisher-provided"]
        );
        assert_eq!(
            fields(base(
                json!({"repository": {"url": "https://x/y", "source": "github", "id": 7}})
            )),
            ["repository.id"]
        );
    }

    #[test]
    fn what_a_kind_of_input_does_not_declare_may_be_anything() {
        let document = json!({"name": "a.b/c", "description": "d", "version": "1.0.0",
            "packages": [{"registryType": "npm", "identifier": "x", "transport": {"type": "stdio", "variables": "free", "url": 1},
                "environmentVariables": [{"name": "", "type": 1, "valueHint": false}],
                "packageArguments": [{"type": "named", "name": "--x", "variables": {"v": {"default": "1"}}}]}],
            "remotes": [{"type": "sse", "url": "https://x/{v}", "headers": [{"name": "A", "extra": null}], "variables": {"v": {"default": "a"}}}],
            "_meta": {"com.example": null}, "future": null});
        assert!(
            ServerJson::parse(&document).is_ok(),
            "{:?}",
            ServerJson::parse(&document).err()
        );
        assert_eq!(
            fields(json!({"name": "a.b/c", "description": "d", "version": "1",
                "remotes": [{"type": "sse", "url": "https://x", "headers": [{"name": 5}], "variables": {"v": {"isSecret": "yes"}}}]})),
            ["remotes.0.headers.0.name", "remotes.0.variables.v.isSecret"]
        );
    }

    proptest::proptest! {
        /// Any JSON document: parsed or refused with named fields, never a panic.
        #[test]
        fn any_document_gets_an_answer(text in "\\PC{0,400}") {
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                let _ = ServerJson::parse(&value);
            }
        }

        /// Documents close to valid ones, with any strings in the checked fields.
        #[test]
        fn any_field_values_get_an_answer(
            name in "\\PC{0,60}",
            version in "\\PC{0,20}",
            url in "\\PC{0,60}",
            kind in "\\PC{0,15}",
        ) {
            let document = json!({"name": name, "description": "d", "version": version,
                "remotes": [{"type": kind, "url": url, "variables": {"v": {"format": kind}}}],
                "packages": [{"registryType": "npm", "identifier": "x", "version": version,
                    "transport": {"type": kind, "url": url},
                    "packageArguments": [{"type": kind, "name": name}]}]});
            if let Err(errors) = ServerJson::parse(&document) {
                proptest::prop_assert!(!errors.errors().is_empty());
            }
        }
    }

    #[test]
    fn the_latest_version_is_the_highest_semver_not_deleted() {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).expect("time");
        let versions = [
            ("1.10.0", t(1), PublishStatus::Active),
            ("1.9.0", t(2), PublishStatus::Active),
            ("2.0.0", t(3), PublishStatus::Deleted),
            ("snapshot", t(4), PublishStatus::Active),
        ];
        assert_eq!(latest_version(versions), Some("1.10.0"));
        assert_eq!(
            latest_version([
                ("a", t(1), PublishStatus::Active),
                ("b", t(2), PublishStatus::Deprecated)
            ]),
            Some("b")
        );
    }
}
