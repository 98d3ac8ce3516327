//! The identity provider behind the façade, through openidconnect: discovery (cached,
//! read again every 10 minutes so rotated keys are picked up), the authorization URL
//! with the gateway's own client id, PKCE, state and nonce and the mapped scopes (never
//! the client's `resource`: Entra refuses it), the code exchange authenticated with a
//! client secret or a certificate (a signed client assertion, RFC 7523), and the ID
//! token checked (signature, issuer, audience, expiry, nonce).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gateway_domain::OAuthFailure;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    TokenResponse,
};
use serde_json::Value;

use super::FacadeSettings;
use crate::http::AuthHttp;

/// RFC 7523's client assertion type.
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long discovered provider metadata (with its keys) is used.
const DISCOVERY_TTL: Duration = Duration::from_secs(600);

/// How the gateway authenticates to the identity provider.
#[derive(Clone)]
pub enum UpstreamClientAuth {
    /// A client secret (`client_secret_basic`).
    Secret(String),
    /// A certificate: the private key (PKCS#8 PEM) signs a client assertion whose
    /// `x5t` is the certificate's SHA-1 thumbprint (what Entra expects).
    Certificate {
        /// The RSA private key, PEM.
        private_key_pem: String,
        /// The certificate's SHA-1 thumbprint, base64url.
        thumbprint: String,
    },
}

impl std::fmt::Debug for UpstreamClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Secret(_) => "Secret(********)",
            Self::Certificate { .. } => "Certificate(********)",
        })
    }
}

impl UpstreamClientAuth {
    /// Certificate authentication from a PEM certificate and its PEM private key.
    pub fn certificate(certificate_pem: &str, private_key_pem: String) -> Result<Self, String> {
        let body: String = certificate_pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END CERTIFICATE-----"))
            .collect();
        let der = STANDARD
            .decode(body.trim())
            .map_err(|e| format!("the certificate is not PEM: {e}"))?;
        if der.is_empty() {
            return Err("the certificate file holds no CERTIFICATE block".into());
        }
        jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes())
            .map_err(|e| format!("the private key is not an RSA PEM key: {e}"))?;
        let thumbprint = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            &der,
        ));
        Ok(Self::Certificate {
            private_key_pem,
            thumbprint,
        })
    }
}

/// The identity provider's settings.
#[derive(Debug, Clone)]
pub struct UpstreamIdp {
    /// Its issuer (where discovery starts).
    pub issuer: String,
    /// The gateway's client id there.
    pub client_id: String,
    /// How the gateway authenticates.
    pub auth: UpstreamClientAuth,
    /// Prefixed to each of the gateway's scopes when asking the provider
    /// (`api://<app>/` for Entra).
    pub scope_prefix: String,
    /// Asked for on every login besides `openid` (`profile`, `offline_access`, …).
    pub extra_scopes: Vec<String>,
    /// The callback URL registered at the provider (`<public>/oauth/callback`).
    pub redirect_uri: String,
}

/// What a login at the provider returned.
pub struct UpstreamLogin {
    /// The verified ID token's claims.
    pub claims: Value,
    /// The provider's access token.
    pub access_token: String,
    /// The provider's refresh token, if any.
    pub refresh_token: Option<String>,
    /// The scopes the provider granted, when it says.
    pub scopes: Option<Vec<String>>,
}

struct Discovered {
    metadata: CoreProviderMetadata,
    at: Instant,
}

/// The openidconnect client built from discovered metadata (authorization endpoint set;
/// token and user-info endpoints as discovered).
type ProviderClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// The provider, as the façade uses it.
pub struct Upstream {
    idp: UpstreamIdp,
    http: AuthHttp,
    discovered: RwLock<Option<Arc<Discovered>>>,
}

/// The provider failed: the detail is logged, the client learns only what step failed
/// (the provider's own text may name tenants, trace ids or endpoints).
fn idp_failure(what: &str, error: impl std::fmt::Display) -> OAuthFailure {
    tracing::warn!(step = what, %error, "the identity provider failed");
    OAuthFailure {
        status: 502,
        error: "temporarily_unavailable",
        description: format!("the identity provider failed ({what}); try again"),
    }
}

/// A refusal by the provider, logged with its detail.
fn idp_refusal(error: &'static str, what: &str, detail: impl std::fmt::Display) -> OAuthFailure {
    tracing::warn!(step = what, %detail, "the identity provider refused");
    OAuthFailure {
        status: 400,
        error,
        description: format!("the identity provider refused the {what}"),
    }
}

impl Upstream {
    /// The provider of `settings`; nothing is fetched yet.
    pub fn new(settings: &FacadeSettings) -> Result<Self, String> {
        Ok(Self {
            idp: settings.upstream.clone(),
            http: AuthHttp::new(settings.fetch_timeout.max(Duration::from_secs(10)))?,
            discovered: RwLock::new(None),
        })
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, OAuthFailure> {
        if let Some(found) = self
            .discovered
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|d| d.at.elapsed() < DISCOVERY_TTL)
        {
            return Ok(found.metadata.clone());
        }
        let issuer =
            IssuerUrl::new(self.idp.issuer.clone()).map_err(|e| idp_failure("issuer URL", e))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http.for_oauth())
            .await
            .map_err(|e| idp_failure("discovery failed", e))?;
        *self
            .discovered
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(Discovered {
            metadata: metadata.clone(),
            at: Instant::now(),
        }));
        Ok(metadata)
    }

    fn client(&self, metadata: CoreProviderMetadata) -> Result<ProviderClient, OAuthFailure> {
        let secret = match &self.idp.auth {
            UpstreamClientAuth::Secret(secret) => Some(ClientSecret::new(secret.clone())),
            UpstreamClientAuth::Certificate { .. } => None,
        };
        let redirect = RedirectUrl::new(self.idp.redirect_uri.clone())
            .map_err(|e| idp_failure("callback URL", e))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.idp.client_id.clone()),
            secret,
        )
        .set_redirect_uri(redirect))
    }

    /// The client, and the token endpoint a client assertion is addressed to.
    async fn token_client(&self) -> Result<(ProviderClient, String), OAuthFailure> {
        let metadata = self.metadata().await?;
        let token_endpoint = metadata
            .token_endpoint()
            .map(|u| u.url().to_string())
            .ok_or_else(|| idp_failure("discovery", "no token endpoint"))?;
        Ok((self.client(metadata)?, token_endpoint))
    }

    /// The scopes asked of the provider for the gateway scopes `scopes`.
    pub fn upstream_scopes(&self, scopes: &[String]) -> Vec<String> {
        let mut all: Vec<String> = self.idp.extra_scopes.clone();
        all.extend(
            scopes
                .iter()
                .map(|s| format!("{}{s}", self.idp.scope_prefix)),
        );
        all.dedup();
        all
    }

    /// The gateway scope of a provider scope (the prefix taken off), if it is one.
    pub fn gateway_scope<'a>(&self, upstream: &'a str) -> &'a str {
        upstream
            .strip_prefix(self.idp.scope_prefix.as_str())
            .unwrap_or(upstream)
    }

    /// A fresh PKCE verifier.
    pub fn pkce_verifier() -> String {
        let (_, verifier) = PkceCodeChallenge::new_random_sha256();
        verifier.secret().clone()
    }

    /// Where to send the browser.
    pub async fn authorize_url(
        &self,
        state: &str,
        nonce: &str,
        pkce_verifier: &str,
        scopes: &[String],
    ) -> Result<String, OAuthFailure> {
        let client = self.client(self.metadata().await?)?;
        let (state, nonce) = (state.to_owned(), nonce.to_owned());
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(
                &PkceCodeVerifier::new(pkce_verifier.to_owned()),
            ));
        for scope in self.upstream_scopes(scopes) {
            request = request.add_scope(Scope::new(scope));
        }
        let (url, _, _) = request.url();
        Ok(url.to_string())
    }

    /// Exchanges the provider's code and checks the ID token.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<UpstreamLogin, OAuthFailure> {
        let (client, token_endpoint) = self.token_client().await?;
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| idp_failure("configuration", e))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()));
        if let Some(assertion) = self.assertion_for(&token_endpoint)? {
            request = request
                .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion);
        }
        let response = request
            .request_async(&self.http.for_oauth())
            .await
            .map_err(|e| idp_refusal("access_denied", "code exchange", e))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| idp_failure("token response", "no ID token"))?;
        id_token
            .claims(&client.id_token_verifier(), &Nonce::new(nonce.to_owned()))
            .map_err(|e| idp_refusal("access_denied", "login (its ID token is not valid)", e))?;
        // Verified above; the raw payload gives the claims openidconnect does not model
        // (roles, tenant).
        let claims = raw_claims(&id_token.to_string())?;
        Ok(UpstreamLogin {
            claims,
            access_token: response.access_token().secret().clone(),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            scopes: response
                .scopes()
                .map(|scopes| scopes.iter().map(|s| s.to_string()).collect()),
        })
    }

    /// Uses the provider's refresh token: the login is still good (the account is
    /// enabled), with its access token as of now. `invalid_grant` when the provider
    /// refuses it.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        scopes: &[String],
    ) -> Result<UpstreamLogin, OAuthFailure> {
        let (client, token_endpoint) = self.token_client().await?;
        let token = RefreshToken::new(refresh_token.to_owned());
        let mut request = client
            .exchange_refresh_token(&token)
            .map_err(|e| idp_failure("configuration", e))?;
        // Entra requires the scopes again; others take them as a narrowing at most.
        for scope in self.upstream_scopes(scopes) {
            request = request.add_scope(Scope::new(scope));
        }
        if let Some(assertion) = self.assertion_for(&token_endpoint)? {
            request = request
                .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion);
        }
        let response = request
            .request_async(&self.http.for_oauth())
            .await
            .map_err(|e| match &e {
                // The login is over: the grant was revoked, the account disabled, or a
                // policy now needs the user at the provider.
                RequestTokenError::ServerResponse(answer)
                    if matches!(
                        answer.error(),
                        CoreErrorResponseType::InvalidGrant
                            | CoreErrorResponseType::UnauthorizedClient
                    ) || matches!(
                        answer.error(),
                        CoreErrorResponseType::Extension(code)
                            if matches!(code.as_str(), "interaction_required" | "login_required" | "consent_required")
                    ) =>
                {
                    idp_refusal("invalid_grant", "refresh", &e)
                }
                _ => idp_failure("refresh", e),
            })?;
        // An ID token, when the provider sends one, is checked like the login's (no
        // nonce on a refresh).
        let claims = match response.id_token() {
            Some(id_token) => {
                let verifier = client.id_token_verifier();
                id_token
                    .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                    .map_err(|e| {
                        idp_refusal("invalid_grant", "refresh (its ID token is not valid)", e)
                    })?;
                raw_claims(&id_token.to_string())?
            }
            None => Value::Null,
        };
        Ok(UpstreamLogin {
            claims,
            access_token: response.access_token().secret().clone(),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            scopes: None,
        })
    }

    /// The client assertion to send, when the gateway authenticates with a
    /// certificate.
    fn assertion_for(&self, token_endpoint: &str) -> Result<Option<String>, OAuthFailure> {
        match &self.idp.auth {
            UpstreamClientAuth::Certificate {
                private_key_pem,
                thumbprint,
            } => client_assertion(
                &self.idp.client_id,
                token_endpoint,
                private_key_pem,
                thumbprint,
            )
            .map(Some),
            UpstreamClientAuth::Secret(_) => Ok(None),
        }
    }
}

/// The claims of a compact JWT already verified (openidconnect does not model the
/// provider's own claims: roles, tenant).
fn raw_claims(jwt: &str) -> Result<Value, OAuthFailure> {
    jwt.split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .ok_or_else(|| idp_failure("ID token", "its claims do not decode"))
}

/// A client assertion (RFC 7523) signed with the certificate's key: what Entra takes
/// instead of a secret.
fn client_assertion(
    client_id: &str,
    token_endpoint: &str,
    private_key_pem: &str,
    thumbprint: &str,
) -> Result<String, OAuthFailure> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes())
        .map_err(|e| idp_failure("certificate key", e))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.x5t = Some(thumbprint.to_owned());
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "aud": token_endpoint,
        "iss": client_id,
        "sub": client_id,
        "jti": super::random_handle()?,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    });
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| idp_failure("client assertion", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERTIFICATE: &str = include_str!("../../tests/keys/rsa-a.crt.pem");
    const KEY: &str = include_str!("../../tests/keys/rsa-a.pem");
    const PUBLIC: &str = include_str!("../../tests/keys/rsa-a.pub.pem");

    #[test]
    fn a_certificate_signs_a_client_assertion_named_by_its_thumbprint() {
        let auth =
            UpstreamClientAuth::certificate(CERTIFICATE, KEY.to_owned()).expect("certificate");
        let UpstreamClientAuth::Certificate {
            private_key_pem,
            thumbprint,
        } = auth
        else {
            panic!("a certificate");
        };
        // `openssl x509 -fingerprint -sha1`: B1:44:8D:7D:…:D3:E5, base64url.
        assert_eq!(thumbprint, "sUSNfVdpfd7qpS_4srnveA6B0-U");
        let assertion = client_assertion("gw", "https://idp/token", &private_key_pem, &thumbprint)
            .expect("assertion");
        let header = jsonwebtoken::decode_header(&assertion).expect("header");
        assert_eq!(header.x5t.as_deref(), Some(thumbprint.as_str()));
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).expect("public key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["https://idp/token"]);
        validation.set_issuer(&["gw"]);
        let claims = jsonwebtoken::decode::<Value>(&assertion, &key, &validation)
            .expect("verifies with the certificate's key")
            .claims;
        assert_eq!(claims["sub"], "gw");
        assert!(UpstreamClientAuth::certificate("not a certificate", KEY.to_owned()).is_err());
        assert!(UpstreamClientAuth::certificate(CERTIFICATE, "not a key".to_owned()).is_err());
        assert!(!format!("{:?}", UpstreamClientAuth::Secret("s3cret".into())).contains("s3cret"));
    }
}
