//! The HTTP face of the OAuth authorization-server façade (the domain's
//! `AuthorizationServer` port): RFC 8414 metadata, the JWKS, Dynamic Client
//! Registration, the browser steps (authorize, the consent page, the identity
//! provider's callback) and the token and revocation endpoints. This module only
//! speaks HTTP: parameters in, cookies, redirects, pages and OAuth JSON errors out.
//! Each route answers 404 when the façade is off.
//!
//! The consent page cannot be framed (clickjacking), is never cached, and its form is
//! bound to the browser that loaded it by a `SameSite=Strict` cookie.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{Bytes, Data, Query};
use actix_web::{HttpRequest, HttpResponse, ResponseError, get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gateway_domain::{
    BasicCredentials, BrowserCookies, BrowserStep, ConsentRequest, OAuthFailure, RequestMeta,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::app::ApiState;
use super::problem::{ApiError, ProblemKind};

/// Largest form or registration body read.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// The cookies binding a consent form to its browser: one per form
/// (`mcpgw_csrf_<tag of its value>`), so consents open side by side do not clash.
const CSRF_COOKIE: &str = "mcpgw_csrf_";
/// The cookie under which a browser's consents are remembered.
const BROWSER_COOKIE: &str = "mcpgw_browser";
/// The cookies binding the identity provider's answer to the browser sent there: one
/// per login (`mcpgw_login_<tag of its state>`), so logins side by side do not clash.
const LOGIN_COOKIE: &str = "mcpgw_login_";

/// How the façade's cookies are set: on an https gateway `__Host-` names (Secure,
/// `Path=/`, no domain: no subdomain can set or read them); on plain http (loopback
/// development) the same names without the prefix, scoped to `/oauth`.
struct CookieStyle {
    prefix: &'static str,
    attributes: &'static str,
}

fn cookie_style(state: &ApiState) -> CookieStyle {
    if state
        .oauth_issuer
        .as_deref()
        .is_some_and(|issuer| issuer.starts_with("https://"))
    {
        CookieStyle {
            prefix: "__Host-",
            attributes: "Path=/; Secure; HttpOnly",
        }
    } else {
        CookieStyle {
            prefix: "",
            attributes: "Path=/oauth; HttpOnly",
        }
    }
}

/// A short tag of a value, to name the cookie that belongs to it.
fn tag(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The name of the cookie of the consent form whose anti-forgery value is `csrf`.
fn csrf_cookie_name(style: &CookieStyle, csrf: &str) -> String {
    format!("{}{CSRF_COOKIE}{}", style.prefix, tag(csrf))
}

/// The name of the login cookie of the login whose provider state is `state`.
fn login_cookie_name(style: &CookieStyle, state: &str) -> String {
    format!("{}{LOGIN_COOKIE}{}", style.prefix, tag(state))
}

/// Expires a cookie the step it served has used up.
fn clear_cookie(response: &mut HttpResponse, style: &CookieStyle, name: &str) {
    set_cookie(response, style, name, "", "SameSite=Lax; Max-Age=0");
}

fn set_cookie(
    response: &mut HttpResponse,
    style: &CookieStyle,
    name: &str,
    value: &str,
    rest: &str,
) {
    let cookie = format!("{name}={value}; {}; {rest}", style.attributes);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The answer of every route while the façade is off.
fn not_enabled() -> HttpResponse {
    ApiError::new(
        ProblemKind::NotFound,
        "the OAuth authorization server is not enabled on this gateway (auth.facade)",
    )
    .error_response()
}

/// An OAuth JSON error (RFC 6749 §5.2), never cached.
fn oauth_error(failure: &OAuthFailure, basic: bool) -> HttpResponse {
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = HttpResponse::build(status);
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if status == StatusCode::UNAUTHORIZED && basic {
        response.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"oauth\""));
    }
    response.json(serde_json::json!({
        "error": failure.error,
        "error_description": failure.description,
    }))
}

fn no_store(mut response: HttpResponse) -> HttpResponse {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The decoded pairs of a query string or form body, in order.
fn pairs(encoded: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(encoded)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A form body: `application/x-www-form-urlencoded`, at most 64 KiB.
fn form(request: &HttpRequest, body: &Bytes) -> Result<Vec<(String, String)>, OAuthFailure> {
    let media = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media != "application/x-www-form-urlencoded" {
        return Err(OAuthFailure::bad(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    if body.len() > MAX_FORM_BYTES {
        return Err(OAuthFailure {
            status: 413,
            error: "invalid_request",
            description: format!("the body is larger than {MAX_FORM_BYTES} bytes"),
        });
    }
    Ok(pairs(body))
}

/// `Authorization: Basic` client credentials (each part form-decoded, RFC 6749 §2.3.1).
fn basic_credentials(request: &HttpRequest) -> Result<Option<BasicCredentials>, OAuthFailure> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || OAuthFailure {
        status: 401,
        error: "invalid_client",
        description: "the Authorization header is not `Basic <base64(id:secret)>`".into(),
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(malformed());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let unescape = |part: &str| -> String {
        // Form-decoded (RFC 6749 §2.3.1); a raw `&` is kept, not taken for a separator.
        url::form_urlencoded::parse(format!("v={}", part.replace('&', "%26")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some(BasicCredentials {
        client_id: unescape(id),
        secret: unescape(secret),
    }))
}

/// Where a request came from, for the audit events it causes.
fn meta(request: &HttpRequest, state: &ApiState) -> RequestMeta {
    RequestMeta {
        request_id: super::middleware::current_request_id(),
        client_address: super::ip_limit::client_address(
            request,
            state.ip_limits.trust_forwarded_for,
        )
        .map(|ip| ip.to_string()),
    }
}

/// The façade's cookies a request carries: `csrf_value` (the consent form's
/// anti-forgery value) and `login_state` (the provider's `state`) name theirs.
fn cookies(
    request: &HttpRequest,
    state: &ApiState,
    csrf_value: Option<&str>,
    login_state: Option<&str>,
) -> BrowserCookies {
    let style = cookie_style(state);
    let browser = format!("{}{BROWSER_COOKIE}", style.prefix);
    let login = login_state.map(|value| login_cookie_name(&style, value));
    let csrf = csrf_value.map(|value| csrf_cookie_name(&style, value));
    let mut found = BrowserCookies::default();
    for value in request.headers().get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(';') {
            let Some((name, value)) = part.trim().split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim().trim_matches('"'));
            if value.is_empty() || value.len() > 128 {
                continue;
            }
            if name == browser {
                found.browser = Some(value.to_owned());
            } else if login.as_deref() == Some(name) {
                found.login = Some(value.to_owned());
            } else if csrf.as_deref() == Some(name) {
                found.csrf = Some(value.to_owned());
            }
        }
    }
    found
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

const PAGE_STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#222}\
code{background:#f3f3f3;padding:0 .2rem;word-break:break-all}ul{padding-left:1.2rem}\
button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.6rem}.warn{color:#8a4b00}";

/// A page that can be neither framed nor cached, and runs no script.
fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{PAGE_STYLE}</style></head><body>{body}</body></html>",
            escape(title)
        ))
}

fn consent_page(state: &ApiState, consent: &ConsentRequest) -> HttpResponse {
    let public_url = state.oauth_issuer.as_deref().unwrap_or_default();
    let scopes: String = if consent.scopes.is_empty() {
        "<li>no particular scope</li>".to_owned()
    } else {
        consent
            .scopes
            .iter()
            .map(|s| format!("<li><code>{}</code></li>", escape(s)))
            .collect()
    };
    // Where the browser goes back to: the origin, or the whole URI for a custom scheme
    // (whose origin is opaque).
    let origin = url::Url::parse(&consent.redirect_uri)
        .ok()
        .map(|u| u.origin())
        .filter(url::Origin::is_tuple)
        .map_or_else(
            || consent.redirect_uri.clone(),
            |origin| origin.ascii_serialization(),
        );
    let caution = if consent.self_registered {
        "<p class=\"warn\">This application registered itself: its name is what it claims to be. Approve only if you started this sign-in.</p>"
    } else {
        ""
    };
    let body = format!(
        "<h1>Allow access to the MCP gateway?</h1>\
<p><strong>{name}</strong> (<code>{id}</code>) asks to use the MCP servers of this gateway on your behalf, with:</p>\
<ul>{scopes}</ul>\
<p>After you sign in, you will be sent back to <code>{origin}</code>.</p>{caution}\
<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"request\" value=\"{handle}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        name = escape(&consent.client_name),
        id = escape(&consent.client_id),
        origin = escape(&origin),
        action = escape(&format!("{public_url}/oauth/consent")),
        handle = escape(&consent.request),
        csrf = escape(&consent.csrf),
    );
    let mut response = page(StatusCode::OK, "Allow access?", &body);
    let style = cookie_style(state);
    set_cookie(
        &mut response,
        &style,
        &csrf_cookie_name(&style, &consent.csrf),
        &consent.csrf,
        "SameSite=Strict; Max-Age=900",
    );
    response
}

fn error_page(failure: &OAuthFailure) -> HttpResponse {
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_REQUEST);
    page(
        status,
        "Sign-in failed",
        &format!(
            "<h1>Sign-in failed</h1><p><code>{}</code></p><p>{}</p>",
            escape(failure.error),
            escape(&failure.description)
        ),
    )
}

fn browser_response(state: &ApiState, step: BrowserStep) -> HttpResponse {
    match step {
        BrowserStep::Consent(consent) => consent_page(state, &consent),
        BrowserStep::Redirect {
            location,
            remember_browser,
            bind_login,
        } => {
            let mut response = HttpResponse::SeeOther()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish();
            match HeaderValue::from_str(&location) {
                Ok(value) => {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                Err(_) => {
                    return error_page(&OAuthFailure::bad(
                        "invalid_request",
                        "the redirect URL is not a valid header value",
                    ));
                }
            }
            let style = cookie_style(state);
            if let Some(browser) = remember_browser {
                let name = format!("{}{BROWSER_COOKIE}", style.prefix);
                set_cookie(
                    &mut response,
                    &style,
                    &name,
                    &browser,
                    "SameSite=Lax; Max-Age=31536000",
                );
            }
            if let Some(binding) = bind_login {
                // Lax: sent when the provider sends the browser back (a top-level GET).
                let name = login_cookie_name(&style, &binding.state);
                set_cookie(
                    &mut response,
                    &style,
                    &name,
                    &binding.value,
                    "SameSite=Lax; Max-Age=600",
                );
            }
            response
        }
        BrowserStep::Refuse(failure) => error_page(&failure),
    }
}

fn metadata_response(state: &ApiState) -> HttpResponse {
    match &state.oauth {
        Some(facade) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "max-age=300"))
            .json(facade.metadata()),
        None => not_enabled(),
    }
}

/// Authorization server metadata (RFC 8414) of the OAuth façade.
#[utoipa::path(tag = "oauth", responses((status = 200, description = "RFC 8414 metadata"), (status = 404, description = "The façade is off")))]
#[get("/.well-known/oauth-authorization-server")]
pub async fn authorization_server_metadata(state: Data<ApiState>) -> HttpResponse {
    metadata_response(&state)
}

/// The same metadata at the path-suffixed form (an issuer with a path).
#[utoipa::path(tag = "oauth", params(("tail" = String, Path, description = "The issuer's path")), responses((status = 200, description = "RFC 8414 metadata"), (status = 404, description = "The façade is off")))]
#[get("/.well-known/oauth-authorization-server/{tail:.*}")]
pub async fn authorization_server_metadata_for(state: Data<ApiState>) -> HttpResponse {
    metadata_response(&state)
}

/// The keys that sign the façade's access tokens.
#[utoipa::path(tag = "oauth", responses((status = 200, description = "JWKS"), (status = 404, description = "The façade is off")))]
#[get("/oauth/jwks")]
pub async fn jwks(state: Data<ApiState>) -> HttpResponse {
    let Some(facade) = state.oauth.clone() else {
        return not_enabled();
    };
    match facade.jwks().await {
        Ok(keys) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "max-age=60"))
            .json(keys),
        Err(failure) => oauth_error(&failure, false),
    }
}

/// Dynamic Client Registration (RFC 7591).
#[utoipa::path(tag = "oauth", request_body(content = String, content_type = "application/json", description = "Client metadata (RFC 7591)"), responses((status = 201, description = "The registered client"), (status = 400, description = "`invalid_client_metadata` or `invalid_redirect_uri`"), (status = 403, description = "Registration is off"), (status = 404, description = "The façade is off")))]
#[post("/oauth/register")]
pub async fn register(state: Data<ApiState>, request: HttpRequest, body: Bytes) -> HttpResponse {
    let Some(facade) = state.oauth.clone() else {
        return not_enabled();
    };
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json {
        return oauth_error(
            &OAuthFailure::bad(
                "invalid_client_metadata",
                "the body must be application/json",
            ),
            false,
        );
    }
    match facade.register(&body, &meta(&request, &state)).await {
        Ok(client) => no_store(HttpResponse::Created().json(client)),
        Err(failure) => oauth_error(&failure, false),
    }
}

/// The query of `/oauth/authorize` (documentation only: read as raw pairs).
#[derive(Deserialize, IntoParams)]
#[allow(dead_code)]
pub struct AuthorizeParams {
    /// `code`.
    response_type: Option<String>,
    /// The client id (registered, or a metadata document URL).
    client_id: Option<String>,
    /// One of the client's redirect URIs.
    redirect_uri: Option<String>,
    /// PKCE challenge (S256).
    code_challenge: Option<String>,
    /// `S256`.
    code_challenge_method: Option<String>,
    /// Space-separated scopes.
    scope: Option<String>,
    /// Echoed back.
    state: Option<String>,
    /// The gateway resource the token is for (RFC 8707).
    resource: Option<String>,
}

/// Starts a login: checks the request and shows the consent page (or, when this
/// browser already consented, sends it to the identity provider).
#[utoipa::path(tag = "oauth", params(AuthorizeParams), responses((status = 200, description = "The consent page"), (status = 303, description = "To the identity provider, or back to the client with an error"), (status = 400, description = "An error page: unknown client or redirect URI"), (status = 401, description = "An error page: unknown client"), (status = 404, description = "The façade is off")))]
#[get("/oauth/authorize")]
pub async fn authorize(state: Data<ApiState>, request: HttpRequest) -> HttpResponse {
    let Some(facade) = state.oauth.clone() else {
        return not_enabled();
    };
    let query = pairs(request.query_string().as_bytes());
    let step = facade
        .authorize(&query, &cookies(&request, &state, None, None))
        .await;
    browser_response(&state, step)
}

/// The consent form's answer (`request`, `csrf`, `decision` = approve or deny).
#[utoipa::path(tag = "oauth", request_body(content = ConsentForm, content_type = "application/x-www-form-urlencoded"), responses((status = 303, description = "To the identity provider, or back to the client (denied)"), (status = 400, description = "An error page: unknown, expired or answered request"), (status = 403, description = "An error page: not submitted from the browser it was shown in"), (status = 404, description = "The façade is off"), (status = 413, description = "The form is too large")))]
#[post("/oauth/consent")]
pub async fn consent_answer(
    state: Data<ApiState>,
    request: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    let Some(facade) = state.oauth.clone() else {
        return not_enabled();
    };
    let form = match form(&request, &body) {
        Ok(form) => form,
        Err(failure) => return error_page(&failure),
    };
    let csrf = form
        .iter()
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.as_str());
    let step = facade
        .consent(&form, &cookies(&request, &state, csrf, None))
        .await;
    let mut response = browser_response(&state, step);
    if let Some(csrf) = csrf {
        let style = cookie_style(&state);
        clear_cookie(&mut response, &style, &csrf_cookie_name(&style, csrf));
    }
    response
}

/// The identity provider's answer.
#[derive(Deserialize, IntoParams)]
#[allow(dead_code)]
pub struct CallbackParams {
    /// The provider's code.
    code: Option<String>,
    /// The gateway's state.
    state: Option<String>,
    /// The provider's error.
    error: Option<String>,
}

/// Where the identity provider sends the browser back.
#[utoipa::path(tag = "oauth", params(CallbackParams), responses((status = 303, description = "Back to the client, with a code or an error"), (status = 400, description = "Unknown, reused or foreign state"), (status = 404, description = "The façade is off")))]
#[get("/oauth/callback")]
pub async fn callback(state: Data<ApiState>, request: HttpRequest) -> HttpResponse {
    let Some(facade) = state.oauth.clone() else {
        return not_enabled();
    };
    let query = pairs(request.query_string().as_bytes());
    let login_state = query
        .iter()
        .find(|(name, _)| name == "state")
        .map(|(_, value)| value.as_str());
    let step = facade
        .callback(
            &query,
            &cookies(&request, &state, None, login_state),
            &meta(&request, &state),
        )
        .await;
    let mut response = browser_response(&state, step);
    if let Some(login_state) = login_state {
        let style = cookie_style(&state);
        clear_cookie(
            &mut response,
            &style,
            &login_cookie_name(&style, login_state),
        );
    }
    response
}

/// A client's request to the token or revocation endpoint.
struct ClientRequest {
    /// Its `Authorization: Basic` credentials.
    basic: Option<BasicCredentials>,
    /// Its form.
    form: Vec<(String, String)>,
}

/// Reads a client's request, or the OAuth error answering a malformed one.
fn client_request(request: &HttpRequest, body: &Bytes) -> Result<ClientRequest, Box<HttpResponse>> {
    let basic =
        basic_credentials(request).map_err(|failure| Box::new(oauth_error(&failure, true)))?;
    let form =
        form(request, body).map_err(|failure| Box::new(oauth_error(&failure, basic.is_some())))?;
    Ok(ClientRequest { basic, form })
}

/// The form of `/oauth/token` (documentation only: read as raw pairs).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenForm {
    /// `authorization_code` or `refresh_token`.
    grant_type: String,
    /// The code (authorization_code).
    code: Option<String>,
    /// The PKCE verifier (authorization_code).
    code_verifier: Option<String>,
    /// The redirect URI of the authorize request (authorization_code).
    redirect_uri: Option<String>,
    /// The refresh token (refresh_token).
    refresh_token: Option<String>,
    /// The client (public clients, or `client_secret_post`).
    client_id: Option<String>,
    /// `client_secret_post`.
    client_secret: Option<String>,
    /// Fewer scopes than granted (refresh_token).
    scope: Option<String>,
    /// The resource of the authorize request (RFC 8707).
    resource: Option<String>,
}

/// The form of `/oauth/revoke` (documentation only).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RevokeForm {
    /// The refresh token.
    token: String,
    /// `refresh_token`; other hints are ignored.
    token_type_hint: Option<String>,
    /// The client (public clients, or `client_secret_post`).
    client_id: Option<String>,
    /// `client_secret_post`.
    client_secret: Option<String>,
}

/// The consent form (documentation only).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ConsentForm {
    /// The pending request's handle.
    request: String,
    /// The anti-forgery value (also in the form's cookie).
    csrf: String,
    /// `approve` or `deny`.
    decision: String,
}

/// The token endpoint: `authorization_code` (PKCE) and `refresh_token` grants.
#[utoipa::path(tag = "oauth", request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"), responses((status = 200, description = "Tokens"), (status = 400, description = "An OAuth error (`invalid_grant`, …)"), (status = 401, description = "`invalid_client`"), (status = 404, description = "The façade is off"), (status = 413, description = "The form is too large")))]
#[post("/oauth/token")]
pub async fn token(state: Data<ApiState>, request: HttpRequest, body: Bytes) -> HttpResponse {
    let Some(facade) = state.oauth.clone() else {
        return not_enabled();
    };
    let ClientRequest { basic, form } = match client_request(&request, &body) {
        Ok(parts) => parts,
        Err(response) => return *response,
    };
    let used_basic = basic.is_some();
    match facade.token(&form, basic, &meta(&request, &state)).await {
        Ok(tokens) => no_store(HttpResponse::Ok().json(tokens)),
        Err(failure) => oauth_error(&failure, used_basic),
    }
}

/// Token revocation (RFC 7009): revokes a refresh token and every refresh token of its
/// login.
#[utoipa::path(tag = "oauth", request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"), responses((status = 200, description = "Revoked (or unknown)"), (status = 400, description = "An OAuth error"), (status = 401, description = "`invalid_client`"), (status = 404, description = "The façade is off"), (status = 413, description = "The form is too large")))]
#[post("/oauth/revoke")]
pub async fn revoke(state: Data<ApiState>, request: HttpRequest, body: Bytes) -> HttpResponse {
    let Some(facade) = state.oauth.clone() else {
        return not_enabled();
    };
    let ClientRequest { basic, form } = match client_request(&request, &body) {
        Ok(parts) => parts,
        Err(response) => return *response,
    };
    let used_basic = basic.is_some();
    match facade.revoke(&form, basic, &meta(&request, &state)).await {
        Ok(()) => no_store(HttpResponse::Ok().finish()),
        Err(failure) => oauth_error(&failure, used_basic),
    }
}

/// Options of a signing-key rotation.
#[derive(Deserialize, IntoParams)]
pub struct RotateParams {
    /// Stop publishing the other keys now: every token they signed is refused at once
    /// (a suspected key compromise). Default: they retire after their last token
    /// expired.
    #[serde(default)]
    retire_previous: bool,
}

/// Rotates the façade's signing key (admin).
#[utoipa::path(tag = "oauth", params(RotateParams), responses((status = 200, description = "The key ids published now"), (status = 404, description = "The façade is off")))]
#[post("/auth/signing-keys/rotate")]
pub async fn rotate_signing_key(
    state: Data<ApiState>,
    params: Query<RotateParams>,
) -> HttpResponse {
    let Some(facade) = state.oauth.clone() else {
        return not_enabled();
    };
    match facade.rotate_signing_key(params.retire_previous).await {
        Ok(kids) => HttpResponse::Ok().json(serde_json::json!({ "published": kids })),
        Err(failure) => {
            ApiError::new(ProblemKind::Unavailable, failure.to_string()).error_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<script>\"x\"&'y'</script>\u{7}"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn repeated_and_encoded_pairs_are_kept_in_order() {
        assert_eq!(
            pairs(b"a=1&b=x%20y&a=2"),
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "x y".to_owned()),
                ("a".to_owned(), "2".to_owned())
            ]
        );
    }
}
