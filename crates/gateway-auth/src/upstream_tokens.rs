//! The gateway's own access tokens for upstreams, obtained with the OAuth 2.0
//! client-credentials grant (the oauth2 crate builds the request and reads the
//! answer; [`crate::http::AuthHttp`] carries it). One token per set of credentials is
//! cached and fetched again shortly before it expires, or when the upstream refused
//! it; callers wanting the same token wait for one fetch instead of each making one;
//! a failed fetch is remembered briefly so an authorization server that is down is
//! not asked once per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gateway_domain::{ClientCredentials, Secret, UpstreamTokenSource};
use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use sha2::{Digest, Sha256};

use crate::http::AuthHttp;

/// Tokens are replaced this long before they expire (at most half their lifetime),
/// so a request never leaves with a token about to lapse.
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// How long a token without `expires_in` is used (a refusal replaces it sooner).
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(600);
/// How long a failed fetch is answered from memory.
const FAILURE_MEMORY: Duration = Duration::from_secs(2);
/// Credentials kept before forgetting tokens that expired.
const MAX_ENTRIES: usize = 1024;

/// The cache entry of one set of credentials.
#[derive(Default)]
struct Slot {
    token: Option<(Secret, Instant)>,
    failure: Option<(String, Instant)>,
}

/// [`UpstreamTokenSource`] over the client-credentials grant.
pub struct ClientCredentialsTokens {
    http: AuthHttp,
    slots: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<Slot>>>>,
}

impl ClientCredentialsTokens {
    /// A token source whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            http: AuthHttp::new(timeout)?,
            slots: Mutex::new(HashMap::new()),
        })
    }

    fn slot(&self, credentials: &ClientCredentials) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.len() >= MAX_ENTRIES {
            // Entries nobody waits on whose token lapsed (or that never got one).
            let now = Instant::now();
            slots.retain(|_, slot| {
                slot.try_lock().map_or(true, |slot| {
                    slot.token.as_ref().is_some_and(|(_, renew)| *renew > now)
                })
            });
        }
        slots.entry(cache_key(credentials)).or_default().clone()
    }

    async fn fetch(&self, credentials: &ClientCredentials) -> Result<(Secret, Duration), String> {
        let token_url = TokenUrl::from_url(credentials.token_url.clone());
        // HTTP Basic (`client_secret_basic`): the one method RFC 6749 §2.3.1 requires
        // every authorization server to support.
        let client = BasicClient::new(ClientId::new(credentials.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                credentials.client_secret.expose().to_owned(),
            ))
            .set_auth_type(AuthType::BasicAuth)
            .set_token_uri(token_url);
        let mut request = client
            .exchange_client_credentials()
            .add_scopes(credentials.scopes.iter().cloned().map(Scope::new));
        if let Some(audience) = &credentials.audience {
            request = request.add_extra_param("audience", audience.clone());
        }
        if let Some(resource) = &credentials.resource {
            request = request.add_extra_param("resource", resource.clone());
        }
        let response = request
            .request_async(&self.http.for_oauth())
            .await
            .map_err(|e| describe(&e))?;
        if !response
            .token_type()
            .as_ref()
            .eq_ignore_ascii_case("bearer")
        {
            return Err(format!(
                "the token endpoint issued a `{}` token; only bearer tokens can be sent",
                response.token_type().as_ref()
            ));
        }
        let token = response.access_token().secret();
        if token.is_empty() || !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(
                "the token endpoint issued an access token that is not a valid header value".into(),
            );
        }
        let lifetime = response.expires_in().unwrap_or(UNKNOWN_LIFETIME);
        Ok((Secret::new(token.clone()), lifetime))
    }
}

/// What went wrong with a token request, without anything secret.
fn describe<E: std::error::Error + 'static>(
    error: &oauth2::RequestTokenError<E, oauth2::basic::BasicErrorResponse>,
) -> String {
    match error {
        oauth2::RequestTokenError::ServerResponse(response) => {
            let mut text = format!("the token endpoint refused: {}", response.error());
            if let Some(description) = response.error_description() {
                text.push_str(&format!(" ({})", description.escape_debug()));
            }
            text
        }
        oauth2::RequestTokenError::Request(e) => format!("cannot reach the token endpoint: {e}"),
        oauth2::RequestTokenError::Parse(e, _) => {
            format!("the token endpoint's answer is not a token response: {e}")
        }
        oauth2::RequestTokenError::Other(e) => format!("token request failed: {e}"),
    }
}

/// Identifies a set of credentials (the secret only by its hash, so the key cannot
/// leak it).
fn cache_key(credentials: &ClientCredentials) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [
        credentials.token_url.as_str(),
        &credentials.client_id,
        credentials.client_secret.expose(),
        credentials.audience.as_deref().unwrap_or(""),
        credentials.resource.as_deref().unwrap_or(""),
    ]
    .into_iter()
    .chain(credentials.scopes.iter().map(String::as_str))
    {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

#[async_trait]
impl UpstreamTokenSource for ClientCredentialsTokens {
    async fn access_token(
        &self,
        credentials: &ClientCredentials,
        refused: Option<&Secret>,
    ) -> Result<Secret, String> {
        let slot = self.slot(credentials);
        let mut slot = slot.lock().await;
        let now = Instant::now();
        if let Some((token, renew_at)) = &slot.token
            && now < *renew_at
            && Some(token) != refused
        {
            return Ok(token.clone());
        }
        if let Some((reason, until)) = &slot.failure
            && now < *until
        {
            return Err(reason.clone());
        }
        match self.fetch(credentials).await {
            Ok((token, lifetime)) => {
                let margin = RENEW_BEFORE.min(lifetime / 2);
                tracing::debug!(token_url = %credentials.token_url, client_id = %credentials.client_id, lifetime_secs = lifetime.as_secs(), "upstream access token obtained");
                slot.token = Some((token.clone(), Instant::now() + (lifetime - margin)));
                slot.failure = None;
                Ok(token)
            }
            Err(reason) => {
                tracing::warn!(token_url = %credentials.token_url, client_id = %credentials.client_id, %reason, "cannot obtain an upstream access token");
                slot.token = None;
                slot.failure = Some((reason.clone(), Instant::now() + FAILURE_MEMORY));
                Err(reason)
            }
        }
    }
}
