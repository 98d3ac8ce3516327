//! The clients the façade knows: registered through Dynamic Client Registration
//! (RFC 7591), or identified by a Client ID Metadata Document (the client id is an
//! https URL whose JSON document the façade fetches, checks and caches). Both are
//! stored in the shared database. Redirect URIs are parsed, must carry no user info or
//! fragment, and must match the configured patterns; a loopback redirect URI matches
//! whatever its port (RFC 8252 §7.3).
//!
//! Fetching a metadata document is the one place a caller makes the gateway fetch a
//! URL of its choosing, so it is fenced: https only (plain http only to an explicitly
//! allowed loopback network), every address the name resolves to checked against the
//! private and metadata-service networks (the resolver drops refused addresses, so
//! what is connected to is what was checked), no redirects, 5 s, 64 KiB.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use gateway_domain::{
    ClientSource, Network, OAuthClientRecord, OAuthFailure, OAuthStore, access::glob_match,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use super::{FacadeSettings, hex, random_handle};

/// Largest metadata document or registration request accepted.
pub const MAX_CLIENT_DOCUMENT: usize = 64 * 1024;

/// Most redirect URIs one client may register.
const MAX_REDIRECT_URIS: usize = 16;

/// Networks a metadata document is never fetched from unless allowed: loopback,
/// private, shared, link-local (metadata services), unique-local and "this network".
const PRIVATE_NETWORKS: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "100.100.100.200/32",
    "192.0.0.0/24",
    "::1/128",
    "::/128",
    "::/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "2001::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// Longest client id accepted (the stored column's width).
pub const MAX_CLIENT_ID: usize = 2048;

/// How long a metadata document that could not be fetched is not asked for again.
const FAILED_FETCH_MEMORY: Duration = Duration::from_secs(60);

/// Failed fetches remembered at most.
const MAX_FAILED_FETCHES: usize = 10_000;

/// Where metadata documents may be fetched from: any public address, and the private
/// networks the operator allowed.
#[derive(Debug)]
struct Fence {
    private: Vec<Network>,
    allowed: Vec<Network>,
}

impl Fence {
    fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if self.allowed.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        match self.private.iter().find(|n| n.contains(ip)) {
            Some(network) => Err(format!(
                "{ip} is in {network}, which client metadata documents are not fetched from (auth.facade.client_metadata_networks)"
            )),
            None => Ok(()),
        }
    }
}

/// A client's metadata (the RFC 7591 fields the façade uses; others are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    /// Where codes may be sent.
    pub redirect_uris: Vec<String>,
    /// A name for people (shown on the consent page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The client's home page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// `none` (public), `client_secret_basic` or `client_secret_post`.
    #[serde(default = "public_client")]
    pub token_endpoint_auth_method: String,
    /// `authorization_code` and optionally `refresh_token`.
    #[serde(default = "code_grant")]
    pub grant_types: Vec<String>,
    /// `code` only.
    #[serde(default = "code_response")]
    pub response_types: Vec<String>,
    /// Scopes it will ask for (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// For metadata documents: the URL the document is at, which must equal the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

fn public_client() -> String {
    "none".into()
}
fn code_grant() -> Vec<String> {
    vec!["authorization_code".into(), "refresh_token".into()]
}
fn code_response() -> Vec<String> {
    vec!["code".into()]
}

/// A client as the flow sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownClient {
    /// Its id.
    pub client_id: String,
    /// How it was learned.
    pub source: ClientSource,
    /// Its metadata.
    pub metadata: ClientMetadata,
    /// SHA-256 (hex) of its secret, for confidential clients.
    pub secret_sha256: Option<String>,
}

impl KnownClient {
    /// The name to show: its own, else its id.
    pub fn display_name(&self) -> String {
        self.metadata
            .client_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| self.client_id.clone())
    }

    /// Whether it may use refresh tokens.
    pub fn refreshes(&self) -> bool {
        self.metadata
            .grant_types
            .iter()
            .any(|g| g == "refresh_token")
    }

    /// Whether `redirect_uri` is one of its own: equal, or for a loopback URI equal
    /// but for the port.
    pub fn owns_redirect(&self, redirect_uri: &str) -> bool {
        let Ok(asked) = Url::parse(redirect_uri) else {
            return false;
        };
        self.metadata.redirect_uris.iter().any(|registered| {
            if registered == redirect_uri {
                return true;
            }
            let Ok(mut registered) = Url::parse(registered) else {
                return false;
            };
            let mut asked = asked.clone();
            if is_loopback(&registered) && is_loopback(&asked) && registered.scheme() == "http" {
                let _ = registered.set_port(None);
                let _ = asked.set_port(None);
                return registered == asked;
            }
            false
        })
    }
}

/// Whether a URL's host is a loopback address or `localhost`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Finds, registers and fetches clients.
pub struct ClientDirectory {
    store: Arc<dyn OAuthStore>,
    patterns: Vec<String>,
    dynamic_registration: bool,
    metadata_documents: bool,
    metadata_ttl: Duration,
    /// The fence around metadata document fetches.
    fence: Arc<Fence>,
    fetcher: reqwest::Client,
    /// Documents whose fetch failed lately: the reason, until when.
    failed: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, String)>>,
}

fn invalid_metadata(description: impl Into<String>) -> OAuthFailure {
    OAuthFailure::bad("invalid_client_metadata", description)
}

impl ClientDirectory {
    /// A directory over `store`.
    pub fn new(settings: &FacadeSettings, store: Arc<dyn OAuthStore>) -> Result<Self, String> {
        let fence = Arc::new(Fence {
            private: PRIVATE_NETWORKS
                .iter()
                .filter_map(|n| Network::parse(n).ok())
                .collect(),
            allowed: settings.metadata_networks.clone(),
        });
        // No proxy: a proxy would resolve the name itself, past the fence.
        let fetcher = reqwest::Client::builder()
            .timeout(settings.fetch_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(FencedResolver(fence.clone())))
            .build()
            .map_err(|e| format!("cannot build the client metadata fetcher: {e}"))?;
        Ok(Self {
            store,
            patterns: settings.redirect_uri_patterns.clone(),
            dynamic_registration: settings.dynamic_registration,
            metadata_documents: settings.metadata_documents,
            metadata_ttl: settings.metadata_ttl,
            fence,
            fetcher,
            failed: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Whether a redirect URI is acceptable at all: an absolute URL without user info
    /// or fragment that matches a configured pattern.
    pub fn redirect_allowed(&self, redirect_uri: &str) -> Result<(), String> {
        let url = Url::parse(redirect_uri)
            .map_err(|e| format!("redirect URI `{redirect_uri}` is not a URL: {e}"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("redirect URI `{redirect_uri}` carries user info"));
        }
        if url.fragment().is_some() {
            return Err(format!("redirect URI `{redirect_uri}` has a fragment"));
        }
        if matches!(url.scheme(), "javascript" | "data" | "file" | "blob") {
            return Err(format!(
                "redirect URI `{redirect_uri}` has a refused scheme"
            ));
        }
        if self
            .patterns
            .iter()
            .any(|pattern| redirect_matches(pattern, &url))
        {
            Ok(())
        } else {
            Err(format!(
                "redirect URI `{redirect_uri}` is not among those this gateway allows (auth.facade.redirect_uris)"
            ))
        }
    }

    fn check_metadata(&self, metadata: &ClientMetadata) -> Result<(), OAuthFailure> {
        if metadata.redirect_uris.is_empty() {
            return Err(OAuthFailure::bad(
                "invalid_redirect_uri",
                "at least one redirect URI is required",
            ));
        }
        if metadata.redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(OAuthFailure::bad(
                "invalid_redirect_uri",
                format!("at most {MAX_REDIRECT_URIS} redirect URIs"),
            ));
        }
        for uri in &metadata.redirect_uris {
            self.redirect_allowed(uri)
                .map_err(|e| OAuthFailure::bad("invalid_redirect_uri", e))?;
        }
        if let Some(bad) = metadata
            .grant_types
            .iter()
            .find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token"))
        {
            return Err(invalid_metadata(format!(
                "grant type `{bad}` is not supported (authorization_code, refresh_token)"
            )));
        }
        if !metadata
            .grant_types
            .iter()
            .any(|g| g == "authorization_code")
        {
            return Err(invalid_metadata(
                "grant_types must include authorization_code",
            ));
        }
        if metadata.response_types.iter().any(|r| r != "code") {
            return Err(invalid_metadata(
                "only the `code` response type is supported",
            ));
        }
        if metadata.client_name.as_ref().is_some_and(|n| n.len() > 200) {
            return Err(invalid_metadata(
                "client_name is longer than 200 characters",
            ));
        }
        Ok(())
    }

    /// Registers a client (RFC 7591): returns the registration response.
    pub async fn register(&self, body: &[u8]) -> Result<serde_json::Value, OAuthFailure> {
        if !self.dynamic_registration {
            return Err(OAuthFailure {
                status: 403,
                error: "access_denied",
                description: "dynamic client registration is off on this gateway".into(),
            });
        }
        if body.len() > MAX_CLIENT_DOCUMENT {
            return Err(invalid_metadata(format!(
                "the registration request is larger than {MAX_CLIENT_DOCUMENT} bytes"
            )));
        }
        let mut metadata: ClientMetadata = serde_json::from_slice(body)
            .map_err(|e| invalid_metadata(format!("the registration request: {e}")))?;
        metadata.client_id = None;
        self.check_metadata(&metadata)?;
        let secret = match metadata.token_endpoint_auth_method.as_str() {
            "none" => None,
            "client_secret_basic" | "client_secret_post" => Some(random_handle()?),
            other => {
                return Err(invalid_metadata(format!(
                    "token_endpoint_auth_method `{other}` is not supported (none, client_secret_basic, client_secret_post)"
                )));
            }
        };
        let client_id = format!("mcpgw-{}", uuid::Uuid::new_v4().simple());
        let now = Utc::now();
        let record = OAuthClientRecord {
            client_id: client_id.clone(),
            source: ClientSource::Registered,
            metadata: serde_json::to_string(&metadata)
                .map_err(|e| OAuthFailure::unavailable(e.to_string()))?,
            secret_sha256: secret.as_ref().map(|s| hex(&Sha256::digest(s.as_bytes()))),
            updated_at: now,
        };
        self.store.save_client(&record).await?;
        tracing::info!(client_id = %client_id, name = ?metadata.client_name, "OAuth client registered");
        let mut response = serde_json::to_value(&metadata)
            .map_err(|e| OAuthFailure::unavailable(e.to_string()))?;
        if let Some(object) = response.as_object_mut() {
            object.insert("client_id".into(), client_id.into());
            object.insert("client_id_issued_at".into(), now.timestamp().into());
            if let Some(secret) = secret {
                object.insert("client_secret".into(), secret.into());
                object.insert("client_secret_expires_at".into(), 0.into());
            }
        }
        Ok(response)
    }

    /// The client with this id: stored, or (for an https URL) fetched and cached.
    pub async fn find(&self, client_id: &str) -> Result<KnownClient, OAuthFailure> {
        let unknown = || OAuthFailure {
            status: 401,
            error: "invalid_client",
            description: format!("client `{}` is not registered", truncate(client_id)),
        };
        if client_id.len() > MAX_CLIENT_ID {
            return Err(OAuthFailure {
                description: format!("a client id is at most {MAX_CLIENT_ID} characters"),
                ..unknown()
            });
        }
        let stored = self.store.client(client_id).await?;
        let fresh = stored.as_ref().is_some_and(|record| {
            record.source == ClientSource::Registered
                || (Utc::now() - record.updated_at)
                    .to_std()
                    .unwrap_or_default()
                    < self.metadata_ttl
        });
        if let (true, Some(record)) = (fresh, stored) {
            let metadata: ClientMetadata = serde_json::from_str(&record.metadata)
                .map_err(|e| OAuthFailure::unavailable(format!("stored client: {e}")))?;
            return Ok(KnownClient {
                client_id: record.client_id,
                source: record.source,
                metadata,
                secret_sha256: record.secret_sha256,
            });
        }
        if !(client_id.starts_with("https://") || client_id.starts_with("http://")) {
            return Err(unknown());
        }
        if !self.metadata_documents {
            return Err(OAuthFailure {
                description: "client id metadata documents are off on this gateway".into(),
                ..unknown()
            });
        }
        let metadata = self.fetch_remembering_failures(client_id).await?;
        let record = OAuthClientRecord {
            client_id: client_id.to_owned(),
            source: ClientSource::MetadataDocument,
            metadata: serde_json::to_string(&metadata)
                .map_err(|e| OAuthFailure::unavailable(e.to_string()))?,
            secret_sha256: None,
            updated_at: Utc::now(),
        };
        self.store.save_client(&record).await?;
        Ok(KnownClient {
            client_id: client_id.to_owned(),
            source: ClientSource::MetadataDocument,
            metadata,
            secret_sha256: None,
        })
    }

    /// [`Self::fetch_document`], answering a document that failed within the last
    /// minute with the same failure, without fetching it again.
    async fn fetch_remembering_failures(
        &self,
        client_id: &str,
    ) -> Result<ClientMetadata, OAuthFailure> {
        let now = std::time::Instant::now();
        let remembered = self
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(client_id)
            .filter(|(until, _)| *until > now)
            .map(|(_, why)| why.clone());
        if let Some(description) = remembered {
            return Err(OAuthFailure {
                status: 401,
                error: "invalid_client",
                description,
            });
        }
        let fetched = self.fetch_document(client_id).await;
        if let Err(failure) = &fetched {
            let mut failed = self
                .failed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if failed.len() >= MAX_FAILED_FETCHES {
                failed.retain(|_, (until, _)| *until > now);
                if failed.len() >= MAX_FAILED_FETCHES {
                    failed.clear();
                }
            }
            failed.insert(
                client_id.to_owned(),
                (now + FAILED_FETCH_MEMORY, failure.description.clone()),
            );
        }
        fetched
    }

    /// Fetches and checks the metadata document at `client_id`.
    async fn fetch_document(&self, client_id: &str) -> Result<ClientMetadata, OAuthFailure> {
        let refuse = |what: String| OAuthFailure {
            status: 401,
            error: "invalid_client",
            description: format!("client metadata document `{}`: {what}", truncate(client_id)),
        };
        let url = Url::parse(client_id).map_err(|e| refuse(format!("not a URL: {e}")))?;
        if url.path() == "/" || url.path().is_empty() {
            return Err(refuse("the URL must have a path".into()));
        }
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err(refuse(
                "the URL must not carry user info or a fragment".into(),
            ));
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            self.fence
                .check_ip(ip)
                .map_err(|e| refuse(format!("refused: {e}")))?;
        }
        let loopback_allowed = literal.is_some_and(|ip| ip.is_loopback());
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback_allowed) {
            return Err(refuse("the URL must be https".into()));
        }
        let response = self
            .fetcher
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                // The detail stays in the log: a caller must not use the gateway to
                // probe which names resolve and which ports answer.
                tracing::info!(client_id = %truncate(client_id), error = %error_chain(&e), "client metadata document not fetched");
                refuse("cannot be fetched".into())
            })?;
        if !response.status().is_success() {
            return Err(refuse(format!("answered {}", response.status())));
        }
        let body = crate::http::read_at_most(response, MAX_CLIENT_DOCUMENT)
            .await
            .map_err(refuse)?;
        let metadata: ClientMetadata = serde_json::from_slice(&body)
            .map_err(|e| refuse(format!("not a valid client metadata document: {e}")))?;
        if metadata.client_id.as_deref() != Some(client_id) {
            return Err(refuse(
                "its `client_id` is not the URL it was fetched from".into(),
            ));
        }
        if metadata.token_endpoint_auth_method != "none" {
            return Err(refuse(format!(
                "token_endpoint_auth_method `{}` is not supported for metadata documents (none)",
                metadata.token_endpoint_auth_method
            )));
        }
        self.check_metadata(&metadata)
            .map_err(|e| refuse(e.description))?;
        Ok(metadata)
    }
}

/// Whether a redirect URI matches a pattern, part by part: the scheme exactly, the
/// authority (`host[:port]`) and the path-and-query each by glob. So `*` never reaches
/// from one part into another (`https://*.corp.example/cb` does not match
/// `https://evil.example/?.corp.example/cb`), and a pattern without a path allows any
/// path.
fn redirect_matches(pattern: &str, url: &Url) -> bool {
    let Some((scheme, rest)) = pattern.split_once("://") else {
        // A scheme-only pattern (`cursor:*`): the URL as a whole.
        return glob_match(pattern, url.as_str());
    };
    if !scheme.eq_ignore_ascii_case(url.scheme()) {
        return false;
    }
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/*"),
    };
    let actual_authority = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    };
    let actual_path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    // `host:*` also allows the host without a port.
    let authority_ok = glob_match(&authority.to_ascii_lowercase(), &actual_authority)
        || authority
            .strip_suffix(":*")
            .is_some_and(|host| host.eq_ignore_ascii_case(&actual_authority));
    authority_ok && glob_match(path, &actual_path)
}

/// A client id shortened for messages (it may be a long hostile URL).
fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Resolves names for the metadata fetcher, dropping refused addresses.
struct FencedResolver(Arc<Fence>);

impl reqwest::dns::Resolve for FencedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let fence = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<std::net::SocketAddr> = found
                .filter(|address| fence.check_ip(address.ip()).is_ok())
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "`{host}` resolves to no address a client document may be fetched from"
                )
                .into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(uris: &[&str]) -> KnownClient {
        KnownClient {
            client_id: "c".into(),
            source: ClientSource::Registered,
            metadata: ClientMetadata {
                redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
                client_name: None,
                client_uri: None,
                token_endpoint_auth_method: "none".into(),
                grant_types: code_grant(),
                response_types: code_response(),
                scope: None,
                client_id: None,
            },
            secret_sha256: None,
        }
    }

    #[test]
    fn loopback_redirects_match_whatever_the_port() {
        let c = client(&[
            "http://127.0.0.1:3000/callback",
            "https://app.example.com/cb",
        ]);
        assert!(c.owns_redirect("http://127.0.0.1:3000/callback"));
        assert!(c.owns_redirect("http://127.0.0.1:49152/callback"));
        assert!(!c.owns_redirect("http://127.0.0.1:49152/other"));
        assert!(!c.owns_redirect("http://localhost:3000/callback"));
        assert!(c.owns_redirect("https://app.example.com/cb"));
        assert!(!c.owns_redirect("https://app.example.com:8443/cb"));
        assert!(!c.owns_redirect("https://app.example.com/cb?x=1"));
    }

    #[test]
    fn redirect_patterns_match_part_by_part() {
        let url = |text: &str| Url::parse(text).expect("url");
        assert!(redirect_matches(
            "http://127.0.0.1:*",
            &url("http://127.0.0.1:3000/callback")
        ));
        assert!(redirect_matches(
            "http://127.0.0.1:*",
            &url("http://127.0.0.1/callback")
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1:*",
            &url("http://127.0.0.1.evil.example/cb")
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1:*",
            &url("https://127.0.0.1:3000/cb")
        ));
        assert!(redirect_matches(
            "https://*.corp.example/cb",
            &url("https://app.corp.example/cb")
        ));
        assert!(!redirect_matches(
            "https://*.corp.example/cb",
            &url("https://evil.example/?.corp.example/cb")
        ));
        assert!(!redirect_matches(
            "https://*.corp.example/cb",
            &url("https://evil.example/cb#.corp.example/cb")
        ));
        assert!(redirect_matches(
            "https://claude.ai/api/mcp/auth_callback",
            &url("https://claude.ai/api/mcp/auth_callback")
        ));
        assert!(!redirect_matches(
            "https://claude.ai/api/mcp/auth_callback",
            &url("https://claude.ai/api/mcp/auth_callback?x=1")
        ));
        assert!(redirect_matches(
            "cursor:*",
            &url("cursor://anysphere.cursor-retrieval/oauth/callback")
        ));
    }

    #[test]
    fn the_fence_refuses_private_addresses_unless_allowed() {
        let fence = Fence {
            private: PRIVATE_NETWORKS
                .iter()
                .filter_map(|n| Network::parse(n).ok())
                .collect(),
            allowed: vec![Network::parse("10.1.0.0/16").expect("network")],
        };
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        assert!(fence.check_ip(ip("93.184.216.34")).is_ok());
        assert!(fence.check_ip(ip("127.0.0.1")).is_err());
        assert!(fence.check_ip(ip("169.254.169.254")).is_err());
        assert!(
            fence.check_ip(ip("::ffff:10.2.0.1")).is_err(),
            "mapped addresses are unwrapped"
        );
        assert!(
            fence.check_ip(ip("10.1.2.3")).is_ok(),
            "an allowed network within a private one"
        );
        assert!(fence.check_ip(ip("64:ff9b::a00:1")).is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_not_fetched() {
        use reqwest::dns::Resolve;
        let fence = Arc::new(Fence {
            private: PRIVATE_NETWORKS
                .iter()
                .filter_map(|n| Network::parse(n).ok())
                .collect(),
            allowed: Vec::new(),
        });
        let name: reqwest::dns::Name = "localhost".parse().expect("name");
        let resolved = FencedResolver(fence).resolve(name).await;
        assert!(resolved.is_err(), "localhost resolves to loopback only");
    }

    #[test]
    fn known_private_networks_parse() {
        for network in PRIVATE_NETWORKS {
            assert!(Network::parse(network).is_ok(), "{network}");
        }
    }
}
