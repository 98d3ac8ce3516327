//! The OAuth 2.1 authorization-server façade: the gateway is the authorization server
//! its MCP clients see (RFC 8414 metadata, Client ID Metadata Documents and Dynamic
//! Client Registration, authorization code with PKCE, its own short-lived JWT access
//! tokens and rotating refresh tokens), and a confidential client of the
//! organisation's identity provider (Entra ID or any OIDC issuer) behind it, which it
//! asks with its own client id, PKCE, state and nonce, never with the client's
//! `resource` parameter (Entra refuses it).
//!
//! Every step's state lives behind the domain's [`OAuthStore`] (the shared database):
//! a login begun on one replica completes on another, and survives a restart. Bearer
//! handles (codes, refresh tokens, states) are stored only as SHA-256 digests.
//!
//! Module map: [`clients`] (registration, metadata documents, redirect URIs),
//! [`signer`] (signing keys, access tokens, JWKS), [`upstream`] (the identity
//! provider), [`flow`] (the endpoints' logic).

pub mod clients;
pub mod flow;
pub mod signer;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gateway_domain::{
    AuditEvent, AuditOutcome, AuditSink, ClusterBus, Network, OAuthStore, TokenVerifier,
};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

pub use clients::ClientDirectory;
pub use signer::{KeyWithdrawals, Signer};
pub use upstream::{UpstreamClientAuth, UpstreamIdp};

/// Everything the façade is configured with.
#[derive(Debug, Clone)]
pub struct FacadeSettings {
    /// The gateway's public base URL: the `iss` of its tokens and metadata.
    pub issuer: String,
    /// The resource a token is for when the client names none (`<issuer>/mcp`).
    pub default_resource: String,
    /// Scopes clients may ask for (the gateway's own names, e.g. `mcp.call`).
    pub scopes: Vec<String>,
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// Longest life of a login's refresh tokens (rotation does not extend it).
    pub refresh_token_ttl: Duration,
    /// Lifetime of authorization codes.
    pub code_ttl: Duration,
    /// Longest time between the authorize request and the identity provider's answer.
    pub login_ttl: Duration,
    /// How long a browser's consent to a client is remembered.
    pub consent_ttl: Duration,
    /// How often a new signing key takes over.
    pub key_rotation: Duration,
    /// Clock skew allowed to verifiers (keys stay published this much longer).
    pub leeway: Duration,
    /// Globs a redirect URI must match (after parsing; never with user info).
    pub redirect_uri_patterns: Vec<String>,
    /// Whether `/oauth/register` (RFC 7591) is open.
    pub dynamic_registration: bool,
    /// Whether client ids may be metadata document URLs.
    pub metadata_documents: bool,
    /// Private networks a metadata document may be fetched from anyway (tests, an
    /// internal client catalogue); public addresses are always allowed.
    pub metadata_networks: Vec<Network>,
    /// How long a fetched metadata document is trusted before it is fetched again.
    pub metadata_ttl: Duration,
    /// How long a registered client no one logs in with is kept (`None`: for ever).
    pub registered_client_ttl: Option<Duration>,
    /// Longest wait for a metadata document.
    pub fetch_timeout: Duration,
    /// Claim names of the roles and tenant, in upstream tokens and in the façade's.
    pub roles_claim: String,
    /// See `roles_claim`.
    pub tenant_claim: String,
    /// The identity provider behind the façade.
    pub upstream: UpstreamIdp,
    /// Where a login's principal comes from.
    pub principal_from: PrincipalSource,
    /// Ask the provider again (its refresh token) at each refresh, so a disabled
    /// account or a withdrawn role stops the login's tokens.
    pub revalidate_on_refresh: bool,
}

/// Where the façade takes a login's subject, tenant and roles from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalSource {
    /// The provider's access token, which the `[auth]` verifier must accept (Entra: a
    /// token for the gateway's own API); a login whose token it refuses is refused.
    AccessToken,
    /// The checked ID token's claims (providers whose access tokens are opaque or for
    /// another API).
    IdToken,
}

/// The façade: implements the domain's `AuthorizationServer` port (in [`flow`]).
pub struct Facade {
    settings: FacadeSettings,
    store: Arc<dyn OAuthStore>,
    clients: ClientDirectory,
    signer: Arc<Signer>,
    upstream: upstream::Upstream,
    /// Verifies the identity provider's access tokens (the `[auth]` verifier).
    upstream_verifier: Option<Arc<dyn TokenVerifier>>,
    /// Where registrations, logins, replays and revocations are recorded.
    audit: Option<Arc<dyn AuditSink>>,
    /// The other replicas, told about emergency rotations.
    cluster: Option<Arc<dyn ClusterBus>>,
}

/// What the façade records in the audit trail.
pub(crate) struct Audited<'a> {
    pub action: &'static str,
    pub client_id: &'a str,
    pub subject: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub roles: &'a [String],
    pub outcome: AuditOutcome,
    pub error_code: Option<i64>,
}

impl Facade {
    /// A façade over `store`; nothing is fetched until the first login.
    pub fn new(
        settings: FacadeSettings,
        store: Arc<dyn OAuthStore>,
        upstream_verifier: Option<Arc<dyn TokenVerifier>>,
    ) -> Result<Self, String> {
        crate::ring_provider::install();
        let clients = ClientDirectory::new(&settings, store.clone())?;
        let signer = Arc::new(Signer::new(&settings, store.clone()));
        let upstream = upstream::Upstream::new(&settings)?;
        Ok(Self {
            settings,
            store,
            clients,
            signer,
            upstream,
            upstream_verifier,
            audit: None,
            cluster: None,
        })
    }

    /// Tells the other replicas of `cluster` when keys are withdrawn here.
    pub fn with_cluster(mut self, cluster: Arc<dyn ClusterBus>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// After an emergency rotation here: the other replicas stop accepting the
    /// withdrawn keys at once, not at their next re-read.
    pub(crate) fn announce_withdrawal(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.publish(gateway_domain::ClusterEvent::SigningKeysWithdrawn);
        }
    }

    /// Records registrations, logins, replays and revocations in `sink` too.
    pub fn with_audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }

    /// Records an event about a client only (no user known).
    pub(crate) async fn audit_client(
        &self,
        action: &'static str,
        client_id: &str,
        outcome: AuditOutcome,
        error_code: Option<i64>,
    ) {
        self.audit(Audited {
            action,
            client_id,
            subject: None,
            tenant: None,
            roles: &[],
            outcome,
            error_code,
        })
        .await;
    }

    /// Hands one event to the audit sink, if any.
    pub(crate) async fn audit(&self, event: Audited<'_>) {
        let Some(sink) = &self.audit else { return };
        let request = flow::current_request();
        sink.record(AuditEvent {
            id: uuid::Uuid::now_v7(),
            at: chrono::Utc::now(),
            request_id: request.request_id,
            session_id: None,
            subject: event.subject.map(str::to_owned),
            tenant: event.tenant.map(str::to_owned),
            roles: event.roles.to_vec(),
            client_address: request.client_address,
            action: event.action.to_owned(),
            server: None,
            target: Some(event.client_id.chars().take(200).collect()),
            outcome: event.outcome,
            error_code: event.error_code,
            latency_us: 0,
            arguments_hash: None,
            arguments: None,
        })
        .await;
    }

    /// The signer (its keys back the verifier of the façade's tokens).
    pub fn signer(&self) -> Arc<Signer> {
        self.signer.clone()
    }

    /// What a verifier of the façade's own tokens checks: its issuer, an audience that
    /// is one of the gateway's resources, ES256 with its published keys (read in
    /// process; an unknown key id reads them again, within a budget per second).
    pub fn verifier_settings(&self) -> crate::AuthSettings {
        let issuer = &self.settings.issuer;
        let mut settings = crate::AuthSettings::oidc(issuer, Vec::new());
        settings.issuers = vec![issuer.clone()];
        settings.audience_prefix = Some(issuer.clone());
        settings.keys = crate::KeySource::Local(crate::LocalKeys(self.signer.clone()));
        settings.algorithms = vec![jsonwebtoken::Algorithm::ES256];
        settings.refresh_interval = Duration::from_secs(5);
        settings
    }

    /// Deletes grants expired for a day (kept that long so late replays are still
    /// recognised as replays).
    pub async fn purge(&self) -> Result<u64, String> {
        let now = chrono::Utc::now();
        let grants = self
            .store
            .purge_grants(now - chrono::Duration::days(1))
            .await
            .map_err(|e| e.to_string())?;
        // Documents are fetched again when next used; registered clients go once no
        // one has logged in with them for their retention.
        let age = |ttl: Duration| chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let clients = self
            .store
            .purge_clients(
                self.settings
                    .registered_client_ttl
                    .map(|ttl| now - age(ttl)),
                now - age(self.settings.metadata_ttl.max(Duration::from_secs(86_400))),
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(grants + clients)
    }
}

/// A random handle: 32 bytes, base64url (256 bits, unguessable).
pub(crate) fn random_handle() -> Result<String, gateway_domain::OAuthFailure> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).map_err(|_| {
        gateway_domain::OAuthFailure::unavailable("the system random generator failed")
    })?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The hex SHA-256 under which a handle is stored.
pub(crate) fn digest(handle: &str) -> String {
    hex(&Sha256::digest(handle.as_bytes()))
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The single value of `name` among the pairs: `Ok(None)` when absent, an error when
/// repeated (RFC 6749 §3.1: parameters must not be included more than once).
pub(crate) fn single<'a>(
    pairs: &'a [(String, String)],
    name: &str,
) -> Result<Option<&'a str>, gateway_domain::OAuthFailure> {
    let mut found = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
    let first = found.next();
    if found.next().is_some() {
        return Err(gateway_domain::OAuthFailure::bad(
            "invalid_request",
            format!("`{name}` is given more than once"),
        ));
    }
    Ok(first.map(String::as_str).filter(|v| !v.is_empty()))
}

/// Like [`single`], but required.
pub(crate) fn required<'a>(
    pairs: &'a [(String, String)],
    name: &str,
) -> Result<&'a str, gateway_domain::OAuthFailure> {
    single(pairs, name)?.ok_or_else(|| {
        gateway_domain::OAuthFailure::bad("invalid_request", format!("`{name}` is required"))
    })
}

/// Whether a PKCE verifier matches an S256 challenge (RFC 7636 §4.6).
pub(crate) fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed == challenge
}

/// Whether a PKCE verifier or challenge has the RFC 7636 shape: 43 to 128 characters
/// of `[A-Za-z0-9-._~]`.
pub(crate) fn pkce_shaped(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn pkce_s256_matches_the_rfc_example() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            challenge
        ));
        assert!(pkce_shaped(verifier) && pkce_shaped(challenge));
        assert!(!pkce_shaped("short") && !pkce_shaped(&"a".repeat(129)));
        assert!(!pkce_shaped(&format!("{}+", "a".repeat(50))));
    }

    #[test]
    fn repeated_parameters_are_refused() {
        let query = pairs(&[("a", "1"), ("b", "2"), ("a", "3"), ("e", "")]);
        assert!(single(&query, "a").is_err());
        assert_eq!(single(&query, "b").ok().flatten(), Some("2"));
        assert_eq!(single(&query, "e").ok().flatten(), None);
        assert!(required(&query, "missing").is_err());
    }

    #[test]
    fn handles_are_random_and_stored_as_digests() {
        let (a, b) = (random_handle().expect("a"), random_handle().expect("b"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(digest(&a).len(), 64);
        assert_ne!(digest(&a), a);
    }
}
