//! A stand-in OpenID Connect issuer on loopback for end-to-end auth tests: OIDC
//! discovery and a JWKS endpoint over real HTTP, and tokens signed with the test keys
//! of `gateway-auth` (never used outside tests).

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{App, HttpResponse, HttpServer, web};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const RSA_A: &[u8] = include_bytes!("../../gateway-auth/tests/keys/rsa-a.pem");
const JWKS_A: &str = include_str!("../../gateway-auth/tests/keys/jwks-a.json");

/// A running issuer. Stop it with [`TestIssuer::stop`].
pub struct TestIssuer {
    /// Its issuer URL (`iss`).
    pub url: String,
    handle: actix_web::dev::ServerHandle,
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
        let server = HttpServer::new(move || {
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
        Self { url, handle }
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
