//! The gateway's own access tokens for upstreams, obtained with the OAuth 2.0
//! client-credentials grant (the oauth2 crate builds the request and reads the
//! answer; [`crate::http::AuthHttp`] carries it). One token per set of credentials is
//! cached and fetched again shortly before it expires (while the old one keeps serving
//! until it really expires), or when the upstream refused it (at most once per grace
//! period); callers wanting a new token wait for one fetch instead of each making one;
//! a failed fetch is remembered briefly so an authorization server that is down is
//! not asked once per request. Announced lifetimes are clamped to 1 s – 24 h.

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
/// Bounds on an announced lifetime: a server saying `0` or `u64::MAX` gets these.
const LIFETIME_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(86_400));
/// How long a failed fetch is answered from memory.
const FAILURE_MEMORY: Duration = Duration::from_secs(2);
/// After a token was replaced because an upstream refused it, a refusal of the new
/// one within this time is the upstream's answer, not a reason to fetch yet another
/// (an upstream that refuses every token must not hammer the authorization server).
const REFUSAL_GRACE: Duration = Duration::from_secs(5);
/// Credentials kept at most; tokens of forgotten credentials are fetched again.
const MAX_ENTRIES: usize = 1024;
/// Longest text taken from the authorization server into an error.
const MAX_QUOTED: usize = 200;

/// The token of one set of credentials.
#[derive(Clone)]
struct Held {
    token: Secret,
    /// When to fetch the next one.
    renew_at: Instant,
    /// When it stops being usable.
    expires_at: Instant,
}

/// The cache entry of one set of credentials.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    /// Held while a token is being fetched: one request at a time per credentials.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct SlotState {
    held: Option<Held>,
    failure: Option<(String, Instant)>,
    /// When a refusal last caused a fetch.
    refusal_fetch: Option<Instant>,
}

/// [`UpstreamTokenSource`] over the client-credentials grant.
pub struct ClientCredentialsTokens {
    http: AuthHttp,
    slots: Mutex<HashMap<[u8; 32], Arc<Slot>>>,
}

impl ClientCredentialsTokens {
    /// A token source whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            http: AuthHttp::new(timeout)?,
            slots: Mutex::new(HashMap::new()),
        })
    }

    fn slot(&self, credentials: &ClientCredentials) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let key = cache_key(credentials);
        if !slots.contains_key(&key) && slots.len() >= MAX_ENTRIES {
            let now = Instant::now();
            slots.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || lock(&slot.state)
                        .held
                        .as_ref()
                        .is_some_and(|held| held.expires_at > now)
            });
            if slots.len() >= MAX_ENTRIES {
                slots.retain(|_, slot| Arc::strong_count(slot) > 1);
            }
        }
        slots.entry(key).or_default().clone()
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
        let token_type = response.token_type().as_ref();
        if !token_type.eq_ignore_ascii_case("bearer") {
            return Err(format!(
                "the token endpoint issued a `{}` token; only bearer tokens can be sent",
                quoted(token_type)
            ));
        }
        let token = response.access_token().secret();
        if token.is_empty() || !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(
                "the token endpoint issued an access token that is not a valid header value".into(),
            );
        }
        let lifetime = response
            .expires_in()
            .unwrap_or(UNKNOWN_LIFETIME)
            .clamp(LIFETIME_RANGE.0, LIFETIME_RANGE.1);
        Ok((Secret::new(token.clone()), lifetime))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Text from the authorization server, escaped and cut short for an error message.
fn quoted(text: &str) -> String {
    let escaped: String = text.escape_debug().collect();
    match escaped.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{}…", &escaped[..cut]),
        None => escaped,
    }
}

/// What went wrong with a token request, without anything secret.
fn describe<E: std::error::Error + 'static>(
    error: &oauth2::RequestTokenError<E, oauth2::basic::BasicErrorResponse>,
) -> String {
    match error {
        oauth2::RequestTokenError::ServerResponse(response) => {
            let mut text = format!(
                "the token endpoint refused: {}",
                quoted(response.error().as_ref())
            );
            if let Some(description) = response.error_description() {
                text.push_str(&format!(" ({})", quoted(description)));
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
        // The common case without waiting: a token that is not due for renewal, or
        // one still valid while another request fetches its successor.
        {
            let state = lock(&slot.state);
            let now = Instant::now();
            if let Some(held) = state.held.as_ref().filter(|h| Some(&h.token) != refused) {
                let renewing = slot.fetching.try_lock().is_err();
                if now < held.renew_at || (renewing && now < held.expires_at) {
                    return Ok(held.token.clone());
                }
            }
        }
        let _fetching = slot.fetching.lock().await;
        let now = Instant::now();
        {
            let mut state = lock(&slot.state);
            if let Some(held) = &state.held {
                if Some(&held.token) != refused && now < held.renew_at {
                    return Ok(held.token.clone()); // fetched while this request waited
                }
                if Some(&held.token) == refused
                    && state
                        .refusal_fetch
                        .is_some_and(|at| now.duration_since(at) < REFUSAL_GRACE)
                {
                    // Refused again right after a replacement: the upstream's answer.
                    return Ok(held.token.clone());
                }
            }
            if let Some((reason, until)) = &state.failure
                && now < *until
            {
                let usable = state
                    .held
                    .as_ref()
                    .filter(|h| Some(&h.token) != refused && now < h.expires_at);
                return usable
                    .map(|h| h.token.clone())
                    .ok_or_else(|| reason.clone());
            }
            if refused.is_some() {
                state.refusal_fetch = Some(now);
            }
        }
        let fetched = self.fetch(credentials).await;
        let mut state = lock(&slot.state);
        match fetched {
            Ok((token, lifetime)) => {
                let now = Instant::now();
                let margin = RENEW_BEFORE.min(lifetime / 2);
                tracing::debug!(token_url = %credentials.token_url, client_id = %credentials.client_id, lifetime_secs = lifetime.as_secs(), "upstream access token obtained");
                state.held = Some(Held {
                    token: token.clone(),
                    renew_at: now + (lifetime - margin),
                    expires_at: now + lifetime,
                });
                state.failure = None;
                Ok(token)
            }
            Err(reason) => {
                tracing::warn!(token_url = %credentials.token_url, client_id = %credentials.client_id, %reason, "cannot obtain an upstream access token");
                state.failure = Some((reason.clone(), Instant::now() + FAILURE_MEMORY));
                // A renewal that failed leaves the current token in use until it
                // really expires (unless the upstream refused it).
                match state.held.as_ref() {
                    Some(held) if Some(&held.token) != refused && now < held.expires_at => {
                        Ok(held.token.clone())
                    }
                    _ => {
                        state.held = None;
                        Err(reason)
                    }
                }
            }
        }
    }
}
