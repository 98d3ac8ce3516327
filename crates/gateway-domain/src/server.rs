//! An upstream MCP server as the registry knows it: its desired state
//! ([`ServerSpec`], what an operator registers) plus what the gateway tracks about it
//! (identity, version for optimistic concurrency, timestamps, health).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use crate::credentials::ClientCredentials;
use crate::error::ValidationErrors;
use crate::health::HealthStatus;
use crate::name::{ServerName, Tag, TenantId};
use crate::secret::Secret;

/// Stable identity of a registered server; unlike its name, it never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServerId(Uuid);

impl ServerId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps a stored id.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which wire the gateway uses to reach an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    /// MCP Streamable HTTP at a URL.
    StreamableHttp,
    /// A child process speaking MCP over stdin/stdout.
    Stdio,
}

impl TransportKind {
    /// The wire name, as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StreamableHttp => "streamable-http",
            Self::Stdio => "stdio",
        }
    }
}

/// How to reach an upstream. Header and environment values are [`Secret`]s because
/// they usually carry credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP endpoint with static headers sent on every request.
    StreamableHttp {
        /// `http` or `https` endpoint of the upstream MCP server.
        url: Url,
        /// More endpoints of the same server (replicas); calls are spread over `url`
        /// and these, and fail over between them.
        replicas: Vec<Url>,
        /// Static headers (for example an API key) added to each upstream request.
        headers: BTreeMap<String, Secret>,
        /// The gateway's own OAuth client credentials: a bearer token obtained with
        /// them goes in `Authorization` on every request (then no static
        /// `Authorization` header may be configured).
        oauth: Option<Box<ClientCredentials>>,
    },
    /// A long-lived child process. Running one executes a command on the host, so
    /// registering it is off unless the operator allows it.
    Stdio {
        /// Executable to run.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment variables.
        env: BTreeMap<String, Secret>,
        /// Working directory; the gateway's own when absent.
        cwd: Option<String>,
    },
}

/// Headers the gateway owns on the upstream hop; an operator may not override them.
const MANAGED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "accept",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
];

/// Limits that keep one registration from bloating every upstream request.
const MAX_HEADERS: usize = 32;
const MAX_HEADER_VALUE: usize = 8 * 1024;
const MAX_URL: usize = 2048;
/// Replicas of one server beyond its first URL.
pub const MAX_REPLICAS: usize = 15;
const MAX_ARGS: usize = 256;
const MAX_ENV: usize = 128;
const MAX_PATH_LIKE: usize = 4096;

impl Transport {
    /// Builds a Streamable HTTP transport, checking the URL (absolute `http`/`https`
    /// with a host, no credentials, no fragment) and each header (token name, not one
    /// the gateway manages, value without CR/LF).
    pub fn streamable_http(
        url: &str,
        headers: BTreeMap<String, Secret>,
    ) -> Result<Self, ValidationErrors> {
        Self::replicated_http(url, &[], headers)
    }

    /// Builds a Streamable HTTP transport with more than one endpoint: each replica is
    /// checked like `url`, and none may repeat another.
    pub fn replicated_http(
        url: &str,
        replicas: &[String],
        headers: BTreeMap<String, Secret>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let parsed = errors.check("url", parse_upstream_url(url));
        if replicas.len() > MAX_REPLICAS {
            errors.push(
                "replicas",
                format!(
                    "at most {MAX_REPLICAS} replicas are allowed, got {}",
                    replicas.len()
                ),
            );
        }
        let mut replica_urls: Vec<Url> = Vec::new();
        for (index, raw) in replicas.iter().enumerate() {
            let field = format!("replicas.{index}");
            let Some(replica) = errors.check(&field, parse_upstream_url(raw)) else {
                continue;
            };
            if parsed.as_ref() == Some(&replica) || replica_urls.contains(&replica) {
                errors.push(field, "repeats another endpoint of this server");
            } else {
                replica_urls.push(replica);
            }
        }
        if headers.len() > MAX_HEADERS {
            errors.push(
                "headers",
                format!(
                    "at most {MAX_HEADERS} headers are allowed, got {}",
                    headers.len()
                ),
            );
        }
        for (name, value) in &headers {
            let field = format!("headers.{name}");
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                errors.push(
                    field,
                    "header name must be a non-empty HTTP token (letters, digits, !#$%&'*+-.^_`|~)",
                );
            } else if MANAGED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                errors.push(
                    field,
                    "this header is set by the gateway and cannot be configured",
                );
            } else if value.expose().len() > MAX_HEADER_VALUE {
                errors.push(
                    field,
                    format!("header value must be at most {MAX_HEADER_VALUE} bytes"),
                );
            } else if !value
                .expose()
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
            {
                errors.push(
                    field,
                    "header value must not contain control characters (CR, LF, NUL…)",
                );
            }
        }
        match parsed {
            Some(url) if errors.is_empty() => {
                let headers = headers
                    .into_iter()
                    .map(|(name, value)| (name.to_ascii_lowercase(), value))
                    .collect();
                Ok(Self::StreamableHttp {
                    url,
                    replicas: replica_urls,
                    headers,
                    oauth: None,
                })
            }
            _ => Err(errors),
        }
    }

    /// Makes an HTTP transport get its bearer token with `credentials`. Refused for
    /// stdio, and next to a static `Authorization` header (two sources for one
    /// header would make the one in force depend on ordering).
    pub fn with_client_credentials(
        self,
        credentials: ClientCredentials,
    ) -> Result<Self, ValidationErrors> {
        match self {
            Self::StreamableHttp { headers, .. } if headers.contains_key("authorization") => {
                Err(ValidationErrors::single(
                    "oauth",
                    "cannot be combined with a static `Authorization` header; keep one of them",
                ))
            }
            ref http @ Self::StreamableHttp { .. }
                if http.endpoints().iter().any(|url| !is_private_channel(url)) =>
            {
                Err(ValidationErrors::single(
                    "oauth",
                    "needs https endpoints (http only on loopback): the token would travel in clear text",
                ))
            }
            Self::StreamableHttp {
                url,
                replicas,
                headers,
                oauth: _,
            } => Ok(Self::StreamableHttp {
                url,
                replicas,
                headers,
                oauth: Some(Box::new(credentials)),
            }),
            Self::Stdio { .. } => Err(ValidationErrors::single(
                "oauth",
                "is only for streamable-http upstreams",
            )),
        }
    }

    /// The gateway's OAuth client credentials for this upstream, if it uses them.
    pub fn client_credentials(&self) -> Option<&ClientCredentials> {
        match self {
            Self::StreamableHttp { oauth, .. } => oauth.as_deref(),
            Self::Stdio { .. } => None,
        }
    }

    /// Builds a stdio transport, checking that the command is present and that no
    /// value carries a NUL byte (which would truncate it at the OS boundary).
    pub fn stdio(
        command: &str,
        args: Vec<String>,
        env: BTreeMap<String, Secret>,
        cwd: Option<String>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if command.trim().is_empty() {
            errors.push("command", "must not be empty");
        } else if command.len() > MAX_PATH_LIKE || command.contains('\0') {
            errors.push(
                "command",
                format!("must be at most {MAX_PATH_LIKE} bytes without NUL"),
            );
        }
        if args.len() > MAX_ARGS {
            errors.push(
                "args",
                format!(
                    "at most {MAX_ARGS} arguments are allowed, got {}",
                    args.len()
                ),
            );
        }
        for (index, arg) in args.iter().enumerate() {
            if arg.len() > MAX_PATH_LIKE || arg.contains('\0') {
                errors.push(
                    format!("args.{index}"),
                    format!("must be at most {MAX_PATH_LIKE} bytes without NUL"),
                );
            }
        }
        if env.len() > MAX_ENV {
            errors.push(
                "env",
                format!("at most {MAX_ENV} variables are allowed, got {}", env.len()),
            );
        }
        for (name, value) in &env {
            let valid_name = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                errors.push(
                    format!("env.{name}"),
                    "variable name must match [A-Za-z_][A-Za-z0-9_]*",
                );
            } else if value.expose().contains('\0') || value.expose().len() > MAX_HEADER_VALUE {
                errors.push(
                    format!("env.{name}"),
                    format!("value must be at most {MAX_HEADER_VALUE} bytes without NUL"),
                );
            }
        }
        if cwd
            .as_ref()
            .is_some_and(|dir| dir.is_empty() || dir.len() > MAX_PATH_LIKE || dir.contains('\0'))
        {
            errors.push(
                "cwd",
                format!("must be 1 to {MAX_PATH_LIKE} bytes without NUL"),
            );
        }
        errors.into_result(|| Self::Stdio {
            command: command.to_owned(),
            args,
            env,
            cwd,
        })
    }

    /// The endpoints to reach, first one first: `url` and the replicas of an HTTP
    /// upstream; none for stdio (its one child process is its endpoint).
    pub fn endpoints(&self) -> Vec<&Url> {
        match self {
            Self::StreamableHttp { url, replicas, .. } => {
                std::iter::once(url).chain(replicas).collect()
            }
            Self::Stdio { .. } => Vec::new(),
        }
    }

    /// How many endpoints a call may go to (a stdio child counts as one); no
    /// allocation, for the per-call path.
    pub fn endpoint_count(&self) -> usize {
        match self {
            Self::StreamableHttp { replicas, .. } => 1 + replicas.len(),
            Self::Stdio { .. } => 1,
        }
    }

    /// Which wire this is.
    pub fn kind(&self) -> TransportKind {
        match self {
            Self::StreamableHttp { .. } => TransportKind::StreamableHttp,
            Self::Stdio { .. } => TransportKind::Stdio,
        }
    }

    /// Replaces values a client sent back masked with the ones stored in `current`,
    /// so a GET → edit → PATCH round trip never overwrites a secret with the mask —
    /// but only while the secrets would go where they went before: the same origins
    /// (HTTP) or the same command, arguments and directory (stdio). Otherwise the mask
    /// stays, and storing it is refused: a secret is never sent to a new destination
    /// by someone who could not read it.
    pub fn keep_masked_secrets_from(&mut self, current: &Transport) {
        if !self.same_destination(current) {
            return;
        }
        if let (
            Self::StreamableHttp {
                oauth: Some(new), ..
            },
            Some(old),
        ) = (&mut *self, current.client_credentials())
            && new.client_secret.is_mask()
            && new.token_url == old.token_url
            && new.client_id == old.client_id
            && new.scopes == old.scopes
            && new.audience == old.audience
            && new.resource == old.resource
        {
            // Kept only for exactly the same request: another scope, audience or
            // resource would get tokens for other APIs with a secret the editor
            // cannot read.
            new.client_secret = old.client_secret.clone();
        }
        let (new, old) = match (self, current) {
            (
                Self::StreamableHttp { headers: new, .. },
                Self::StreamableHttp { headers: old, .. },
            ) => (new, old),
            (Self::Stdio { env: new, .. }, Self::Stdio { env: old, .. }) => (new, old),
            _ => return,
        };
        for (key, value) in new.iter_mut() {
            if value.is_mask()
                && let Some(stored) = old.get(key)
            {
                *value = stored.clone();
            }
        }
    }

    /// Whether secrets of `other` would reach the same place through `self`.
    fn same_destination(&self, other: &Transport) -> bool {
        match (self, other) {
            (Self::StreamableHttp { .. }, Self::StreamableHttp { .. }) => {
                let origins = |t: &Transport| {
                    let mut origins: Vec<String> = t
                        .endpoints()
                        .iter()
                        .map(|url| url.origin().ascii_serialization())
                        .collect();
                    origins.sort();
                    origins.dedup();
                    origins
                };
                origins(self) == origins(other)
            }
            (
                Self::Stdio {
                    command, args, cwd, ..
                },
                Self::Stdio {
                    command: old_command,
                    args: old_args,
                    cwd: old_cwd,
                    ..
                },
            ) => command == old_command && args == old_args && cwd == old_cwd,
            _ => false,
        }
    }

    /// True if any value still equals the mask (sent back for a key that has no
    /// stored value): storing it would silently replace a credential with asterisks.
    pub fn masked_keys(&self) -> Vec<String> {
        let (prefix, values) = match self {
            Self::StreamableHttp { headers, .. } => ("headers", headers),
            Self::Stdio { env, .. } => ("env", env),
        };
        let mut keys: Vec<String> = values
            .iter()
            .filter(|(_, v)| v.is_mask())
            .map(|(k, _)| format!("{prefix}.{k}"))
            .collect();
        if self
            .client_credentials()
            .is_some_and(|oauth| oauth.client_secret.is_mask())
        {
            keys.push("oauth.client_secret".into());
        }
        keys
    }
}

/// Whether a bearer token sent to `url` stays confidential: https, or this machine.
fn is_private_channel(url: &Url) -> bool {
    url.scheme() == "https"
        || match url.host() {
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_upstream_url(raw: &str) -> Result<Url, String> {
    if raw.len() > MAX_URL {
        return Err(format!("must be at most {MAX_URL} characters"));
    }
    let url = Url::parse(raw)
        .map_err(|e| format!("`{}` is not an absolute URL: {e}", raw.escape_debug()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme must be http or https, got `{}`",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not embed credentials; configure them as headers, which are kept secret".into(),
        );
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    Ok(url)
}

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 4000;
/// Most tags per server.
pub const MAX_TAGS: usize = 32;

/// The desired state of an upstream server: everything an operator registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Unique name, also the tool-name prefix.
    pub name: ServerName,
    /// Human-readable name.
    pub title: Option<String>,
    /// What the server is for.
    pub description: Option<String>,
    /// How to reach it.
    pub transport: Transport,
    /// Labels, sorted and without duplicates.
    pub tags: Vec<Tag>,
    /// Owning tenant; `None` means shared by all tenants.
    pub tenant: Option<TenantId>,
    /// Whether the gateway routes to it.
    pub enabled: bool,
    /// How long a call to this server may take; the gateway default when absent.
    pub request_timeout_ms: Option<u64>,
}

/// Accepted range of a per-server request timeout, in milliseconds.
pub const REQUEST_TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;

impl ServerSpec {
    /// Records an out-of-range per-server timeout.
    pub fn check_timeout(request_timeout_ms: Option<u64>, errors: &mut ValidationErrors) {
        if request_timeout_ms.is_some_and(|ms| !REQUEST_TIMEOUT_RANGE_MS.contains(&ms)) {
            errors.push(
                "request_timeout_ms",
                "must be between 100 and 3600000 milliseconds",
            );
        }
    }

    /// Records what is wrong with the free-text fields and the tag count, so callers
    /// can report these together with their own field errors.
    pub fn check_text(
        title: Option<&str>,
        description: Option<&str>,
        tag_count: usize,
        errors: &mut ValidationErrors,
    ) {
        let bad_title = |t: &str| {
            t.trim().is_empty() || t.chars().count() > MAX_TITLE || t.chars().any(char::is_control)
        };
        if title.is_some_and(bad_title) {
            errors.push(
                "title",
                format!("must be 1 to {MAX_TITLE} characters without control characters"),
            );
        }
        if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION || d.contains('\0')) {
            errors.push(
                "description",
                format!("must be at most {MAX_DESCRIPTION} characters without NUL"),
            );
        }
        if tag_count > MAX_TAGS {
            errors.push(
                "tags",
                format!("at most {MAX_TAGS} tags are allowed, got {tag_count}"),
            );
        }
    }

    /// Checks the free-text fields and normalises tags (sorted, deduplicated).
    /// Names, transport and tenant are already valid by their types.
    pub fn new(
        name: ServerName,
        title: Option<String>,
        description: Option<String>,
        transport: Transport,
        mut tags: Vec<Tag>,
        tenant: Option<TenantId>,
        enabled: bool,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        tags.sort();
        tags.dedup();
        Self::check_text(
            title.as_deref(),
            description.as_deref(),
            tags.len(),
            &mut errors,
        );
        errors.into_result(|| Self {
            name,
            title,
            description,
            transport,
            tags,
            tenant,
            enabled,
            request_timeout_ms: None,
        })
    }
}

/// A registered server: its spec plus what the registry tracks about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamServer {
    /// Stable identity.
    pub id: ServerId,
    /// What the operator registered.
    pub spec: ServerSpec,
    /// Incremented on every change of the spec; writes based on an older version fail.
    pub version: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When its spec last changed.
    pub updated_at: DateTime<Utc>,
    /// Last known health; changes to it do not bump `version`.
    pub health: HealthStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Secret::new(*v)))
            .collect()
    }

    #[test]
    fn http_transport_accepts_a_plain_endpoint() {
        let transport = Transport::streamable_http(
            "https://mcp.example.com/mcp",
            headers(&[("X-Api-Key", "k")]),
        )
        .expect("valid transport");
        assert_eq!(transport.kind(), TransportKind::StreamableHttp);
        let Transport::StreamableHttp { headers, .. } = transport else {
            unreachable!()
        };
        assert!(
            headers.contains_key("x-api-key"),
            "header names are normalised to lowercase"
        );
    }

    #[test]
    fn http_transport_names_every_bad_field() {
        let errors = Transport::streamable_http(
            "ftp://user:pw@host/x",
            headers(&[
                ("Host", "evil"),
                ("bad name", "v"),
                ("X-Ok", "line\r\nInjected: 1"),
            ]),
        )
        .expect_err("invalid transport");
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["url", "headers.Host", "headers.X-Ok", "headers.bad name"]
        );
    }

    #[test]
    fn urls_with_credentials_or_fragments_are_refused() {
        for url in [
            "http://u:p@h/mcp",
            "http://h/mcp#x",
            "not a url",
            "file:///etc/passwd",
            "http://",
        ] {
            assert!(
                Transport::streamable_http(url, BTreeMap::new()).is_err(),
                "{url}"
            );
        }
    }

    #[test]
    fn stdio_transport_checks_its_parts() {
        assert!(
            Transport::stdio("npx", vec!["-y".into()], headers(&[("API_KEY", "x")]), None).is_ok()
        );
        let errors = Transport::stdio(
            " ",
            vec!["a\0b".into()],
            headers(&[("1BAD", "x")]),
            Some(String::new()),
        )
        .expect_err("invalid stdio transport");
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["command", "args.0", "env.1BAD", "cwd"]);
    }

    #[test]
    fn masked_values_keep_the_stored_secret() {
        let stored = Transport::streamable_http("http://h/mcp", headers(&[("x-key", "real")]))
            .expect("valid");
        let mut edited = Transport::streamable_http(
            "http://h/mcp",
            headers(&[
                ("x-key", crate::secret::MASK),
                ("x-new", crate::secret::MASK),
            ]),
        )
        .expect("valid");
        edited.keep_masked_secrets_from(&stored);
        let Transport::StreamableHttp { headers, .. } = &edited else {
            unreachable!()
        };
        assert_eq!(headers["x-key"].expose(), "real");
        assert_eq!(edited.masked_keys(), ["headers.x-new"]);
    }

    #[test]
    fn spec_normalises_tags_and_checks_text() {
        let transport = Transport::streamable_http("http://h/mcp", BTreeMap::new()).expect("valid");
        let tags = vec![
            Tag::parse("b").expect("tag"),
            Tag::parse("a").expect("tag"),
            Tag::parse("b").expect("tag"),
        ];
        let name = ServerName::parse("s").expect("name");
        let spec = ServerSpec::new(
            name.clone(),
            None,
            None,
            transport.clone(),
            tags,
            None,
            true,
        )
        .expect("valid");
        assert_eq!(
            spec.tags.iter().map(Tag::as_str).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let errors = ServerSpec::new(
            name,
            Some("\u{7}".into()),
            Some("x".repeat(MAX_DESCRIPTION + 1)),
            transport,
            vec![],
            None,
            true,
        )
        .expect_err("invalid text");
        assert_eq!(errors.errors().len(), 2);
    }
}
