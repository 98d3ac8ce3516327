//! A strict JSON body extractor: checks the media type (415), enforces the
//! configured size limit while reading (413), and names the exact field of any
//! decoding error, unknown fields included (400).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{BytesMut, Data};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::app::HttpSettings;
use super::problem::{ApiError, ProblemKind};

/// A request body decoded from JSON (`application/json`, `application/merge-patch+json`
/// or any `+json` type).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ProblemKind::PayloadTooLarge,
        format!("request body exceeds the limit of {limit} bytes (http.max_body_bytes)"),
    )
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (limit, timeout) = req.app_data::<Data<HttpSettings>>().map_or_else(
            || {
                let defaults = HttpSettings::default();
                (defaults.max_body_bytes, defaults.body_timeout)
            },
            |s| (s.max_body_bytes, s.body_timeout),
        );
        let json = is_json(req);
        let declared: Option<usize> = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if !json {
                return Err(ApiError::new(
                    ProblemKind::UnsupportedMediaType,
                    "send the body as JSON with Content-Type: application/json",
                ));
            }
            if declared.is_some_and(|len| len > limit) {
                return Err(too_large(limit));
            }
            let mut body = BytesMut::new();
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                // A body trickling in (slowloris) ends at the deadline.
                let chunk = match tokio::time::timeout_at(deadline, payload.next()).await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break,
                    Err(_) => {
                        return Err(ApiError::new(
                            ProblemKind::RequestTimeout,
                            format!(
                                "the request body did not arrive within {} s (http.body_timeout_secs)",
                                timeout.as_secs()
                            ),
                        ));
                    }
                };
                let chunk = chunk.map_err(|e| {
                    ApiError::new(
                        ProblemKind::BadRequest,
                        format!("could not read the body: {e}"),
                    )
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            if body.is_empty() {
                return Err(ApiError::new(
                    ProblemKind::MalformedBody,
                    "the request body is empty; send a JSON object",
                ));
            }
            // serde would fill a struct from an array, field by field: a body is an
            // object unless the endpoint takes any JSON.
            let array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
            if array && std::any::TypeId::of::<T>() != std::any::TypeId::of::<serde_json::Value>() {
                return Err(ApiError::new(
                    ProblemKind::MalformedBody,
                    "the request body must be a JSON object, not an array",
                ));
            }
            decode(&body).map(JsonBody)
        })
    }
}

/// Decodes a whole JSON document, naming the path of the first bad field.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let reason = error.into_inner().to_string();
        if path == "." || path.is_empty() {
            ApiError::new(ProblemKind::MalformedBody, reason)
        } else {
            ApiError::new(ProblemKind::MalformedBody, format!("{path}: {reason}"))
                .with_field(path, reason)
        }
    })?;
    deserializer.end().map_err(|e| {
        ApiError::new(
            ProblemKind::MalformedBody,
            format!("unexpected data after the JSON document: {e}"),
        )
    })?;
    Ok(value)
}
