//! A stand-in OpenID Connect issuer on loopback for end-to-end auth tests: OIDC
//! discovery and a JWKS endpoint over real HTTP, tokens signed with the test keys of
//! `gateway-auth` (never used outside tests), and a client-credentials token endpoint
//! (`/token`) that issues opaque tokens `issued-1`, `issued-2`… to one client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{App, HttpResponse, HttpServer, web};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const RSA_A: &[u8] = include_bytes!("../../gateway-auth/tests/keys/rsa-a.pem");
const JWKS_A: &str = include_str!("../../gateway-auth/tests/keys/jwks-a.json");

/// The client the token endpoint knows.
pub const CLIENT_ID: &str = "gateway-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "client-s3cret";

/// What the token endpoint records and how it answers.
#[derive(Default)]
struct TokenEndpoint {
    /// Form parameters of each token request, plus `client_id` from HTTP Basic.
    requests: Mutex<Vec<HashMap<String, String>>>,
    issued: AtomicU64,
    /// `expires_in` of issued tokens, in seconds.
    lifetime: AtomicU64,
}

/// A running issuer. Stop it with [`TestIssuer::stop`].
pub struct TestIssuer {
    /// Its issuer URL (`iss`).
    pub url: String,
    handle: actix_web::dev::ServerHandle,
    tokens: Arc<TokenEndpoint>,
}

/// Answers a client-credentials request authenticated with HTTP Basic.
fn issue(
    endpoint: &TokenEndpoint,
    request: &actix_web::HttpRequest,
    form: HashMap<String, String>,
) -> HttpResponse {
    use base64::Engine as _;
    let credentials = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok());
    let mut recorded = form.clone();
    if let Some((id, _)) = credentials.as_deref().and_then(|c| c.split_once(':')) {
        recorded.insert("client_id".into(), id.to_owned());
    }
    endpoint
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(recorded);
    if credentials.as_deref() != Some(&format!("{CLIENT_ID}:{CLIENT_SECRET}")) {
        return HttpResponse::Unauthorized()
            .json(json!({"error": "invalid_client", "error_description": "unknown client or wrong secret"}));
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return HttpResponse::BadRequest().json(json!({"error": "unsupported_grant_type"}));
    }
    let number = endpoint.issued.fetch_add(1, Ordering::SeqCst) + 1;
    HttpResponse::Ok().json(json!({
        "access_token": format!("issued-{number}"),
        "token_type": "Bearer",
        "expires_in": endpoint.lifetime.load(Ordering::SeqCst),
    }))
}

impl TestIssuer {
    /// Starts an issuer on a free port.
    pub async fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://127.0.0.1:{}",
            listener.local_addr().expect("addr").port()
        );
        let base = url.clone();
        let tokens = Arc::new(TokenEndpoint {
            lifetime: AtomicU64::new(3600),
            ..TokenEndpoint::default()
        });
        let endpoint = tokens.clone();
        let server = HttpServer::new(move || {
            let endpoint = endpoint.clone();
            let discovery = json!({
                "issuer": base,
                "authorization_endpoint": format!("{base}/authorize"),
                "token_endpoint": format!("{base}/token"),
                "jwks_uri": format!("{base}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            });
            App::new()
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(move || {
                        let discovery = discovery.clone();
                        async move { HttpResponse::Ok().json(discovery) }
                    }),
                )
                .route(
                    "/token",
                    web::post().to(
                        move |request: actix_web::HttpRequest,
                              form: web::Form<HashMap<String, String>>| {
                            let endpoint = endpoint.clone();
                            async move { issue(&endpoint, &request, form.into_inner()) }
                        },
                    ),
                )
                .route(
                    "/jwks",
                    web::get().to(|| async {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(JWKS_A)
                    }),
                )
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url,
            handle,
            tokens,
        }
    }

    /// The client-credentials token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url)
    }

    /// Form parameters of every token request so far (with `client_id` from Basic).
    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.tokens
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets `expires_in` of the tokens issued from now on.
    pub fn set_token_lifetime(&self, seconds: u64) {
        self.tokens.lifetime.store(seconds, Ordering::SeqCst);
    }

    /// Claims of a valid token for `audience`: subject `user-1`, the given roles,
    /// scopes `mcp.call mcp.read`, tenant `tenant-1`, valid for five minutes.
    pub fn claims(&self, audience: &str, roles: &[&str]) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        json!({
            "iss": self.url,
            "aud": audience,
            "sub": "user-1",
            "exp": now + 300,
            "nbf": now - 10,
            "tid": "tenant-1",
            "roles": roles,
            "scp": "mcp.call mcp.read",
            "azp": "test-client",
        })
    }

    /// `claims` signed with the issuer's key (RS256, kid `key-a`).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("key-a".into());
        encode(
            &header,
            claims,
            &EncodingKey::from_rsa_pem(RSA_A).expect("test key"),
        )
        .expect("signed")
    }

    /// A valid token for `audience` with `roles`.
    pub fn token(&self, audience: &str, roles: &[&str]) -> String {
        self.sign(&self.claims(audience, roles))
    }

    /// Stops the issuer.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}
