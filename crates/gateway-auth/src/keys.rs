//! The issuer's signing keys: the JWKS URL found once by OIDC discovery
//! (openidconnect), the keys fetched from it and cached by key id. An unknown key id
//! (the issuer rotated its keys) refreshes the set, at most once per
//! `refresh_interval`, one fetch at a time, so a flood of tokens with invented key
//! ids cannot hammer the issuer. A refresh replaces the whole set: a key the issuer
//! withdrew stops verifying.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use gateway_domain::AuthError;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use openidconnect::IssuerUrl;
use openidconnect::core::CoreProviderMetadata;

use crate::http::AuthHttp;
use crate::settings::KeySource;

/// Most keys kept from one key set.
const MAX_KEYS: usize = 64;

/// One usable key: the decoding key, its JWK (for its algorithm), and the key set it
/// came from (verdicts remembered with it expire when the set is replaced).
#[derive(Clone)]
pub struct CachedKey {
    /// The key to verify with.
    pub key: DecodingKey,
    /// The JWK it came from.
    pub jwk: Jwk,
    /// The fetch that brought it.
    pub generation: u64,
}

#[derive(Default)]
struct Cached {
    keys: HashMap<String, Arc<CachedKey>>,
    /// The last fetch attempt, successful or not: attempts are rate-limited either way.
    fetched_at: Option<Instant>,
    /// Bumped by every fetch, so verdicts reached with an older key set expire.
    generation: u64,
    /// For a local source: its version when the set was read.
    local_version: u64,
}

/// The cached keys of one issuer.
pub struct KeyStore {
    source: KeySource,
    http: AuthHttp,
    refresh_interval: Duration,
    jwks_uri: tokio::sync::OnceCell<String>,
    cached: RwLock<Cached>,
    refreshing: tokio::sync::Mutex<()>,
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> AuthError {
    AuthError::Unavailable(format!("{what}: {error}"))
}

impl KeyStore {
    /// A store for `source`; nothing is fetched until the first key is needed (or
    /// [`KeyStore::refresh`] is called at start-up).
    pub fn new(
        source: KeySource,
        refresh_interval: Duration,
        fetch_timeout: Duration,
    ) -> Result<Self, String> {
        let http = AuthHttp::new(fetch_timeout)?;
        Ok(Self {
            source,
            http,
            refresh_interval,
            jwks_uri: tokio::sync::OnceCell::new(),
            cached: RwLock::new(Cached::default()),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// The key with id `kid` (or the only key, when the token names none and the set
    /// has exactly one), fetching the set if it is not known yet.
    pub async fn key(&self, kid: Option<&str>) -> Result<Arc<CachedKey>, AuthError> {
        if !self.local_is_stale()
            && let Some(found) = self.lookup(kid)
        {
            return Ok(found);
        }
        let _one_fetch = self.refreshing.lock().await;
        if self.local_is_stale() {
            self.fetch_for(kid).await?;
        }
        if let Some(found) = self.lookup(kid) {
            return Ok(found); // Another task fetched it meanwhile.
        }
        // The gateway's own keys are a local read (rate-limited by their source), so a
        // key a replica just made is found at once.
        let local = matches!(self.source, KeySource::Local(_));
        let recently = !local
            && self
                .cached
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.refresh_interval);
        if !recently {
            if let Err(error) = self.fetch_for(kid).await {
                // A failed attempt counts too: an issuer that is down is not hammered.
                self.cached
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .fetched_at = Some(Instant::now());
                return Err(error);
            }
            if let Some(found) = self.lookup(kid) {
                return Ok(found);
            }
        }
        Err(AuthError::Invalid(match kid {
            Some(_) => "the token's key id is not among the issuer's keys".to_owned(),
            None => "the token names no key id".to_owned(),
        }))
    }

    /// Whether a local source withdrew keys since the set was read.
    fn local_is_stale(&self) -> bool {
        match &self.source {
            KeySource::Local(local) => {
                local.0.version()
                    != self
                        .cached
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .local_version
            }
            _ => false,
        }
    }

    fn lookup(&self, kid: Option<&str>) -> Option<Arc<CachedKey>> {
        let cached = self.cached.read().unwrap_or_else(PoisonError::into_inner);
        match kid {
            Some(kid) => cached.keys.get(kid).cloned(),
            None if cached.keys.len() == 1 => cached.keys.values().next().cloned(),
            None => None,
        }
    }

    /// Fetches the key set now (at start-up, so the first request does not wait).
    pub async fn refresh(&self) -> Result<usize, AuthError> {
        let _one_fetch = self.refreshing.lock().await;
        self.fetch().await
    }

    async fn fetch(&self) -> Result<usize, AuthError> {
        self.fetch_for(None).await
    }

    async fn fetch_for(&self, wanted: Option<&str>) -> Result<usize, AuthError> {
        if let KeySource::Local(local) = &self.source {
            let version = local.0.version();
            let document = local
                .0
                .jwks(wanted)
                .await
                .map_err(|e| unavailable("cannot read the gateway's own keys", e))?;
            let set: JwkSet = serde_json::from_str(&document)
                .map_err(|e| unavailable("the gateway's key set is not valid JWKS", e))?;
            // The same keys as before: keep them, and the verdicts reached with them.
            let mut ids: Vec<&str> = set
                .keys
                .iter()
                .filter_map(|k| k.common.key_id.as_deref())
                .collect();
            ids.sort_unstable();
            {
                let mut cached = self.cached.write().unwrap_or_else(PoisonError::into_inner);
                let mut known: Vec<&str> = cached.keys.keys().map(String::as_str).collect();
                known.sort_unstable();
                if known == ids && cached.local_version == version && !ids.is_empty() {
                    cached.fetched_at = Some(Instant::now());
                    return Ok(ids.len());
                }
            }
            let count = self.store(set, "gateway");
            self.cached
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .local_version = version;
            return Ok(count);
        }
        if let KeySource::Inline(document) = &self.source {
            let set: JwkSet = serde_json::from_str(document)
                .map_err(|e| unavailable("the inline key set is not valid JWKS", e))?;
            return Ok(self.store(set, "inline"));
        }
        let uri = self
            .jwks_uri
            .get_or_try_init(|| self.discover())
            .await?
            .clone();
        let body = self
            .http
            .get(&uri)
            .await
            .map_err(|e| unavailable("cannot fetch the issuer's keys", e))?;
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| unavailable("the issuer's key set is not valid JWKS", e))?;
        Ok(self.store(set, &uri))
    }

    /// Replaces the cached keys with the usable ones of `set`.
    fn store(&self, set: JwkSet, from: &str) -> usize {
        let mut keys = HashMap::new();
        let generation = self
            .cached
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .generation
            + 1;
        for (index, jwk) in set.keys.into_iter().take(MAX_KEYS).enumerate() {
            // Only RSA and EC signing keys: encryption keys and symmetric (`oct`) keys
            // are never used to verify.
            let usable = !matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            ) && matches!(
                jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
                    | jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_)
            );
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            if usable {
                let id = jwk
                    .common
                    .key_id
                    .clone()
                    .unwrap_or_else(|| format!("#{index}"));
                keys.insert(
                    id,
                    Arc::new(CachedKey {
                        key,
                        jwk,
                        generation,
                    }),
                );
            }
        }
        let count = keys.len();
        let mut cached = self.cached.write().unwrap_or_else(PoisonError::into_inner);
        let local_version = cached.local_version;
        *cached = Cached {
            keys,
            fetched_at: Some(Instant::now()),
            generation,
            local_version,
        };
        tracing::info!(keys = count, jwks = %from, "issuer keys fetched");
        count
    }

    async fn discover(&self) -> Result<String, AuthError> {
        let issuer = match &self.source {
            KeySource::JwksUri(uri) | KeySource::Inline(uri) => return Ok(uri.clone()),
            KeySource::Local(_) => return Ok("gateway".to_owned()),
            KeySource::Discovery(issuer) => issuer,
        };
        let issuer_url = IssuerUrl::new(issuer.clone())
            .map_err(|e| unavailable("the issuer URL is invalid", e))?;
        let client = self.http.for_oauth();
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &client)
            .await
            .map_err(|e| unavailable("OIDC discovery failed", e))?;
        Ok(metadata.jwks_uri().url().to_string())
    }

    /// Which key set is current (changes with every fetch).
    pub fn generation(&self) -> u64 {
        if self.local_is_stale() {
            return u64::MAX; // Matches no verdict: keys were withdrawn.
        }
        self.cached
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .generation
    }

    /// The ids of the cached keys (for logs and tests).
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .cached
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }
}

/// Shared between verifiers of one process.
pub type SharedKeys = Arc<KeyStore>;
