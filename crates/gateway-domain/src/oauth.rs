//! The OAuth 2.1 authorization-server façade's model and ports. The gateway is the
//! authorization server its MCP clients see (registration, PKCE, its own tokens) and a
//! client of the organisation's identity provider behind it. What it must remember
//! between the steps of a login lives behind [`OAuthStore`], in the shared database, so
//! a flow begun on one replica completes on another and survives a restart;
//! [`AuthorizationServer`] is what the HTTP adapter calls.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::RepositoryError;

/// What a stored grant is: each kind is looked up only as itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    /// A login waiting for the identity provider's answer (state, PKCE, nonce).
    Pending,
    /// An authorization code given to a client (single use).
    Code,
    /// A refresh token (single use: each use rotates it).
    Refresh,
    /// A browser's consent to a client and its scopes.
    Consent,
}

impl GrantKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Code => "code",
            Self::Refresh => "refresh",
            Self::Consent => "consent",
        }
    }
}

/// One grant as stored. The store keys it by the SHA-256 of its handle (the handle
/// itself, a bearer secret, is never stored) and keeps `payload` sealed at rest.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredGrant {
    /// What it is.
    pub kind: GrantKind,
    /// The family it belongs to: a code and every refresh token it led to share one,
    /// so a replay revokes them all.
    pub family: String,
    /// The client it was given to.
    pub client_id: String,
    /// What the façade needs later, as JSON (may hold upstream tokens: sealed at rest).
    pub payload: String,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// When it was used, for single-use kinds.
    pub used_at: Option<DateTime<Utc>>,
    /// Whether its family was revoked.
    pub revoked: bool,
}

impl std::fmt::Debug for StoredGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The payload may hold PKCE verifiers and the provider's tokens.
        f.debug_struct("StoredGrant")
            .field("kind", &self.kind)
            .field("client_id", &self.client_id)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

/// The outcome of using a single-use grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// This call used it: the caller may act on it.
    Fresh(StoredGrant),
    /// It had been used before (a replay), or its family was revoked.
    Spent(StoredGrant),
    /// No such grant, or it expired.
    Missing,
}

/// How a client came to be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSource {
    /// Dynamic Client Registration (RFC 7591).
    Registered,
    /// A Client ID Metadata Document fetched from the client id URL.
    MetadataDocument,
}

impl ClientSource {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::MetadataDocument => "metadata_document",
        }
    }
}

/// A client the façade knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClientRecord {
    /// The client id (an issued random id, or the metadata document's URL).
    pub client_id: String,
    /// How it was learned.
    pub source: ClientSource,
    /// Its metadata (RFC 7591 field names), as JSON.
    pub metadata: String,
    /// SHA-256 (hex) of its secret, for confidential registered clients.
    pub secret_sha256: Option<String>,
    /// When it was registered or its document last fetched.
    pub updated_at: DateTime<Utc>,
}

/// One of the façade's signing keys.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// The key id (`kid`).
    pub kid: String,
    /// The private key (PKCS#8, base64url): sealed at rest.
    pub private_key: String,
    /// The public key as a JWK (JSON).
    pub public_jwk: String,
    /// When it was made; the newest key signs.
    pub created_at: DateTime<Utc>,
    /// When it stops being published (tokens it signed are refused from then on).
    pub retire_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("retire_at", &self.retire_at)
            .finish_non_exhaustive()
    }
}

/// Where the façade keeps clients, grants and keys (shared by every replica).
#[async_trait]
pub trait OAuthStore: Send + Sync {
    /// Inserts or replaces a client.
    async fn save_client(&self, client: &OAuthClientRecord) -> Result<(), RepositoryError>;
    /// A client by id.
    async fn client(&self, client_id: &str) -> Result<Option<OAuthClientRecord>, RepositoryError>;
    /// Stores a grant under the digest of its handle.
    async fn put_grant(&self, digest: &str, grant: &StoredGrant) -> Result<(), RepositoryError>;
    /// A grant that has not expired, without using it (consents).
    async fn grant(
        &self,
        kind: GrantKind,
        digest: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredGrant>, RepositoryError>;
    /// Uses a single-use grant: exactly one caller ever gets [`Taken::Fresh`], whatever
    /// the replicas racing for it.
    async fn take_grant(
        &self,
        kind: GrantKind,
        digest: &str,
        now: DateTime<Utc>,
    ) -> Result<Taken, RepositoryError>;
    /// Revokes every grant of a family; returns how many.
    async fn revoke_family(&self, family: &str) -> Result<u64, RepositoryError>;
    /// Whether any grant of a family was revoked (checked after a new grant joins it,
    /// so a revocation racing the rotation still catches the new grant).
    async fn family_revoked(&self, family: &str) -> Result<bool, RepositoryError>;
    /// Deletes grants that expired before `before`; returns how many.
    async fn purge_grants(&self, before: DateTime<Utc>) -> Result<u64, RepositoryError>;
    /// Marks a client as used now (a login completed), so it is kept.
    async fn touch_client(&self, client_id: &str, at: DateTime<Utc>)
    -> Result<(), RepositoryError>;
    /// Deletes registered clients last used before `registered_before` (when given) and
    /// metadata documents fetched before `documents_before` (fetched again when next
    /// used); returns how many.
    async fn purge_clients(
        &self,
        registered_before: Option<DateTime<Utc>>,
        documents_before: DateTime<Utc>,
    ) -> Result<u64, RepositoryError>;
    /// Every signing key not yet retired at `now`, newest first.
    async fn signing_keys(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<SigningKeyRecord>, RepositoryError>;
    /// Adds a signing key.
    async fn add_signing_key(&self, key: &SigningKeyRecord) -> Result<(), RepositoryError>;
    /// Sets when every key other than `keep` stops being published (if it is later);
    /// returns how many keys changed.
    async fn retire_signing_keys(
        &self,
        keep: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, RepositoryError>;
}

/// An OAuth error answer (RFC 6749 §5.2 names), with the HTTP status it goes with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthFailure {
    /// The HTTP status.
    pub status: u16,
    /// The OAuth error code (`invalid_request`, `invalid_grant`, …).
    pub error: &'static str,
    /// What was wrong, for people.
    pub description: String,
}

impl OAuthFailure {
    /// A failure with status 400.
    pub fn bad(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: 400,
            error,
            description: description.into(),
        }
    }

    /// A failure of the façade itself (storage, identity provider): 503 or 502.
    pub fn unavailable(description: impl Into<String>) -> Self {
        Self {
            status: 503,
            error: "temporarily_unavailable",
            description: description.into(),
        }
    }
}

impl From<RepositoryError> for OAuthFailure {
    fn from(_: RepositoryError) -> Self {
        // The store's own error is logged where it happens; clients learn only this.
        Self::unavailable("the authorization state is unavailable; try again")
    }
}

/// What the person at the browser is asked to approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRequest {
    /// The handle of the pending request the form submits.
    pub request: String,
    /// The anti-forgery value, also set as a `SameSite=Strict` cookie.
    pub csrf: String,
    /// The client's name as it registered it (not verified: shown with its id).
    pub client_name: String,
    /// The client id (a URL for metadata-document clients).
    pub client_id: String,
    /// Where the browser goes back to.
    pub redirect_uri: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// Whether the client registered itself (DCR) rather than being identified by a URL.
    pub self_registered: bool,
}

/// The next thing the browser sees in a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowserStep {
    /// Show the consent page.
    Consent(ConsentRequest),
    /// Redirect (303) to this URL, setting the cookies named.
    Redirect {
        /// Where to.
        location: String,
        /// A browser id to keep in a cookie, so consent is not asked again.
        remember_browser: Option<String>,
        /// Binds the identity provider's answer to this browser: set as a cookie when
        /// the browser is sent to the provider, required at the callback (so a login
        /// started in one browser cannot be finished in another).
        bind_login: Option<LoginBinding>,
    },
    /// Show an error page: the client or its redirect URI cannot be trusted with a
    /// redirect.
    Refuse(OAuthFailure),
}

/// The value a browser must bring back with the identity provider's answer for the
/// login whose provider `state` this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginBinding {
    /// The state sent to the provider (it names the cookie).
    pub state: String,
    /// The cookie's value.
    pub value: String,
}

/// The cookies a browser sent that the façade reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowserCookies {
    /// The browser id its consents are remembered under.
    pub browser: Option<String>,
    /// The anti-forgery cookie of the consent form being answered.
    pub csrf: Option<String>,
    /// The login binding set when the browser was sent to the identity provider.
    pub login: Option<String>,
}

/// Where a request to the façade came from, for its audit events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// The request's `X-Request-Id`.
    pub request_id: Option<String>,
    /// The client's address.
    pub client_address: Option<String>,
}

/// Client authentication sent with HTTP Basic (`client_secret_basic`).
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    /// The client id.
    pub client_id: String,
    /// The secret.
    pub secret: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The authorization server the HTTP adapter serves (`/oauth/*` and the metadata).
/// Parameters arrive as the decoded pairs of a query or form, in order, so a repeated
/// parameter can be refused (RFC 6749 §3.1).
#[async_trait]
pub trait AuthorizationServer: Send + Sync {
    /// RFC 8414 metadata.
    fn metadata(&self) -> serde_json::Value;
    /// The public signing keys (JWKS).
    async fn jwks(&self) -> Result<serde_json::Value, OAuthFailure>;
    /// Dynamic Client Registration (RFC 7591): the registration response.
    async fn register(
        &self,
        body: &[u8],
        meta: &RequestMeta,
    ) -> Result<serde_json::Value, OAuthFailure>;
    /// `GET /oauth/authorize`.
    async fn authorize(&self, query: &[(String, String)], cookies: &BrowserCookies) -> BrowserStep;
    /// `POST /oauth/consent`: the person approved or denied.
    async fn consent(&self, form: &[(String, String)], cookies: &BrowserCookies) -> BrowserStep;
    /// `GET /oauth/callback`: the identity provider's answer.
    async fn callback(
        &self,
        query: &[(String, String)],
        cookies: &BrowserCookies,
        meta: &RequestMeta,
    ) -> BrowserStep;
    /// `POST /oauth/token`: the token response.
    async fn token(
        &self,
        form: &[(String, String)],
        basic: Option<BasicCredentials>,
        meta: &RequestMeta,
    ) -> Result<serde_json::Value, OAuthFailure>;
    /// `POST /oauth/revoke` (RFC 7009): revokes a refresh token's family.
    async fn revoke(
        &self,
        form: &[(String, String)],
        basic: Option<BasicCredentials>,
        meta: &RequestMeta,
    ) -> Result<(), OAuthFailure>;
    /// Makes a new signing key the active one; with `retire_previous`, the others stop
    /// being published at once (their tokens are refused), else once the tokens they
    /// signed have expired. Returns the key ids published.
    async fn rotate_signing_key(&self, retire_previous: bool) -> Result<Vec<String>, OAuthFailure>;
}
