//! CORS for browser-based clients (actix-cors): preflights answered, the allowed
//! origins get `Access-Control-Allow-Origin`, and the headers a script needs are
//! exposed (`Mcp-Session-Id`, `MCP-Protocol-Version`, `WWW-Authenticate`, the rate-limit
//! headers). Any other origin gets no CORS headers, so browsers keep its scripts
//! from reading answers; `/mcp` also refuses it outright (its `Origin` check is fed
//! the same list). Off when no origin is configured.

use std::collections::HashSet;

use actix_cors::Cors;
use actix_web::middleware::Condition;

/// What the operator allowed (`[cors]`).
#[derive(Debug, Clone, Default)]
pub struct CorsSettings {
    /// Origins in [`canonical_origin`] form, the gateway's own included.
    pub origins: Vec<String>,
    /// Methods scripts may use.
    pub methods: Vec<String>,
    /// Request headers scripts may send.
    pub headers: Vec<String>,
    /// Preflight cache lifetime in seconds.
    pub max_age_secs: u32,
}

/// An origin as `scheme://host:port`, the port always explicit (RFC 6454's tuple):
/// how both CORS and `/mcp`'s Origin check compare origins, so `https://A.example`,
/// `https://a.example:443` and `https://a.example` are one origin and `:8443` another.
pub fn canonical_origin(origin: &str) -> Option<String> {
    let url = url::Url::parse(origin.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!("{}://{host}:{port}", url.scheme()))
}

/// Response headers a script may read.
const EXPOSED: [&str; 12] = [
    "mcp-session-id",
    "mcp-protocol-version",
    "www-authenticate",
    "retry-after",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit-policy",
    "etag",
    "location",
    "x-request-id",
    "content-type",
];

/// The CORS middleware; a no-op when `settings` is `None`.
pub fn middleware(settings: Option<&CorsSettings>) -> Condition<Cors> {
    let Some(settings) = settings else {
        return Condition::new(false, Cors::default());
    };
    let origins: HashSet<String> = settings.origins.iter().cloned().collect();
    let methods: Vec<actix_web::http::Method> = settings
        .methods
        .iter()
        .filter_map(|m| m.parse().ok())
        .collect();
    let headers: Vec<actix_web::http::header::HeaderName> = settings
        .headers
        .iter()
        .filter_map(|h| h.parse().ok())
        .collect();
    let cors = Cors::default()
        .allowed_origin_fn(move |origin, _| {
            origin
                .to_str()
                .ok()
                .and_then(canonical_origin)
                .is_some_and(|origin| origins.contains(&origin))
        })
        .allowed_methods(methods)
        .allowed_headers(headers)
        .expose_headers(EXPOSED)
        .max_age(usize::try_from(settings.max_age_secs).ok())
        // A refused origin simply gets no CORS headers: `/mcp` answers it 403 itself,
        // and the REST API's writes need JSON, which no browser sends cross-origin
        // without a preflight.
        .block_on_origin_mismatch(false);
    Condition::new(true, cors)
}
