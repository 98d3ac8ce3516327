//! RFC 9457 problem details. Every error kind has a stable `type` URI (documented in
//! `docs/errors.md`), a fixed status and title; the `detail` says what exactly was
//! wrong and `errors` names each invalid field.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use gateway_domain::FieldError;
use gateway_registry::RegistryError;
use serde::Serialize;

use super::middleware::current_request_id;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every kind of error the REST API returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A field failed validation (422).
    Validation,
    /// The body is not valid JSON for this endpoint (400).
    MalformedBody,
    /// A query parameter or header is malformed (400).
    BadRequest,
    /// The body is not JSON (415).
    UnsupportedMediaType,
    /// The body exceeds the configured limit (413).
    PayloadTooLarge,
    /// The body did not arrive within the configured time (408).
    RequestTimeout,
    /// No such resource or route (404).
    NotFound,
    /// The route exists but not for this method (405).
    MethodNotAllowed,
    /// A server with this name exists (409).
    NameTaken,
    /// The body's `version` is outdated (409).
    StaleVersion,
    /// A published server version exists with other content; versions are immutable (409).
    VersionExists,
    /// `If-Match` does not match the current version (412).
    PreconditionFailed,
    /// stdio upstreams are disabled by configuration (403).
    StdioDisabled,
    /// No valid credentials (401, with `WWW-Authenticate`).
    Unauthorized,
    /// Valid credentials without the rights this needs (403).
    Forbidden,
    /// The operation needs an enabled server (409).
    ServerDisabled,
    /// The database is unreachable (503).
    Unavailable,
    /// 429: a rate limit refused the request.
    RateLimited,
    /// An unexpected failure (500).
    Internal,
}

impl ProblemKind {
    /// Status, slug (the tail of the `type` URI) and title.
    fn describe(self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::Validation => (S::UNPROCESSABLE_ENTITY, "validation", "Invalid input"),
            Self::MalformedBody => (S::BAD_REQUEST, "malformed-body", "Malformed request body"),
            Self::BadRequest => (S::BAD_REQUEST, "bad-request", "Bad request"),
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::RequestTimeout => (
                S::REQUEST_TIMEOUT,
                "request-timeout",
                "Request body too slow",
            ),
            Self::PayloadTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            Self::NotFound => (S::NOT_FOUND, "not-found", "Not found"),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::NameTaken => (S::CONFLICT, "name-taken", "Name already taken"),
            Self::StaleVersion => (S::CONFLICT, "stale-version", "Stale version"),
            Self::VersionExists => (S::CONFLICT, "version-exists", "Version already published"),
            Self::PreconditionFailed => (
                S::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
            ),
            Self::StdioDisabled => (
                S::FORBIDDEN,
                "stdio-disabled",
                "stdio upstreams are disabled",
            ),
            Self::ServerDisabled => (S::CONFLICT, "server-disabled", "Server is disabled"),
            Self::Unauthorized => (S::UNAUTHORIZED, "unauthorized", "Authentication required"),
            Self::Forbidden => (S::FORBIDDEN, "forbidden", "Not allowed"),
            Self::Unavailable => (S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
            Self::RateLimited => (S::TOO_MANY_REQUESTS, "rate-limited", "Too many requests"),
            Self::Internal => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    /// The stable `type` URI.
    pub fn type_uri(self) -> String {
        format!("{TYPE_BASE}{}", self.describe().1)
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        self.describe().0
    }
}

/// Prefix of every problem `type`. A tag URI (RFC 4151): stable and unique without
/// promising that it resolves; `docs/errors.md` documents each one.
const TYPE_BASE: &str = "tag:mcp-gateway,2026:problem:";

/// One invalid field in a problem body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InvalidField {
    /// Path of the field (`transport.url`, `tags.2`, query parameter `limit`).
    pub field: String,
    /// What is wrong and what is allowed.
    pub detail: String,
}

/// The problem+json body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable identifier of the error kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What exactly went wrong.
    pub detail: String,
    /// Every invalid field, for validation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<InvalidField>,
    /// The request id (also in the `X-Request-Id` header and in the logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// An error answered as problem+json.
#[derive(Debug, Clone)]
pub struct ApiError {
    kind: ProblemKind,
    detail: String,
    errors: Vec<InvalidField>,
    /// For the log only: the cause of an internal error, never sent to clients.
    cause: Option<String>,
    allow: Option<String>,
}

/// What the access log needs to log an error once, attached to the response.
#[derive(Debug, Clone)]
pub(crate) struct LoggedProblem {
    pub kind: &'static str,
    pub detail: String,
}

impl ApiError {
    /// An error of `kind` with a specific explanation.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            errors: Vec::new(),
            cause: None,
            allow: None,
        }
    }

    /// A validation error naming each bad field.
    pub fn validation(fields: &[FieldError]) -> Self {
        let detail = match fields {
            [single] => format!("{}: {}", single.field, single.message),
            _ => format!("{} fields are invalid", fields.len()),
        };
        let mut error = Self::new(ProblemKind::Validation, detail);
        error.errors = fields
            .iter()
            .map(|f| InvalidField {
                field: f.field.clone(),
                detail: f.message.clone(),
            })
            .collect();
        error
    }

    /// A 500 whose cause is logged but not shown.
    pub fn internal(cause: impl Into<String>) -> Self {
        let mut error = Self::new(
            ProblemKind::Internal,
            "an unexpected error occurred; quote the request id when reporting it",
        );
        error.cause = Some(cause.into());
        error
    }

    /// A 405 listing the methods the route does accept.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &[&str]) -> Self {
        let mut error = Self::new(
            ProblemKind::MethodNotAllowed,
            format!(
                "{method} is not allowed on {path}; use {}",
                allowed.join(", ")
            ),
        );
        error.allow = Some(allowed.join(", "));
        error
    }

    /// Names the offending field (for 400s about one field or parameter).
    pub fn with_field(mut self, field: impl Into<String>, detail: impl Into<String>) -> Self {
        self.errors.push(InvalidField {
            field: field.into(),
            detail: detail.into(),
        });
        self
    }

    /// The error kind.
    pub fn kind(&self) -> ProblemKind {
        self.kind
    }
}

impl ApiError {
    /// The problem+json body (also what the gateway's MCP tools return on failure).
    pub fn problem(&self) -> Problem {
        let (status, _, title) = self.kind.describe();
        Problem {
            kind: self.kind.type_uri(),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
            request_id: current_request_id(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.describe().1, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind.status()
    }

    fn error_response(&self) -> HttpResponse {
        let (status, slug, _) = self.kind.describe();
        let body = self.problem();
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if let Some(allow) = self
            .allow
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            response.insert_header((header::ALLOW, allow));
        }
        if self.kind == ProblemKind::Unavailable {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")));
        }
        let mut response = response.body(serde_json::to_vec(&body).unwrap_or_default());
        let detail = match &self.cause {
            Some(cause) => format!("{}: {cause}", self.detail),
            None => self.detail.clone(),
        };
        response
            .extensions_mut()
            .insert(LoggedProblem { kind: slug, detail });
        response
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Invalid(errors) => Self::validation(errors.errors()),
            RegistryError::NotFound(what) => {
                Self::new(ProblemKind::NotFound, format!("no server `{what}`"))
            }
            RegistryError::NameTaken(name) => Self::new(
                ProblemKind::NameTaken,
                format!("a server named `{name}` already exists"),
            ),
            error @ RegistryError::VersionExists { .. } => {
                Self::new(ProblemKind::VersionExists, error.to_string())
            }
            error @ RegistryError::PublishedNotFound(_) => {
                Self::new(ProblemKind::NotFound, error.to_string())
            }
            error @ RegistryError::ViewNotFound(_) => {
                Self::new(ProblemKind::NotFound, error.to_string())
            }
            error @ RegistryError::ViewNameTaken(_) => {
                Self::new(ProblemKind::NameTaken, error.to_string())
            }
            error @ RegistryError::StaleVersion { .. } => {
                Self::new(ProblemKind::StaleVersion, error.to_string())
            }
            error @ (RegistryError::StdioDisabled | RegistryError::StdioCommand(_)) => {
                Self::new(ProblemKind::StdioDisabled, error.to_string())
            }
            error @ RegistryError::Configured(_) => {
                Self::new(ProblemKind::Forbidden, error.to_string())
            }
            RegistryError::Unavailable(reason) => {
                let mut api = Self::new(
                    ProblemKind::Unavailable,
                    "the registry database is unavailable; retry later",
                );
                api.cause = Some(reason);
                api
            }
            RegistryError::Internal(reason) => Self::internal(reason),
        }
    }
}
