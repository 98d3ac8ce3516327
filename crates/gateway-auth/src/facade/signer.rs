//! The façade's signing keys and the access tokens they sign. Keys are ECDSA P-256
//! (ES256), made with ring, stored in the shared database (private part sealed) so
//! every replica signs and verifies with the same set. The newest key without a
//! retirement date signs; when it is older than the rotation period a replica makes a
//! new one and gives the others a retirement date after the last token they signed
//! has expired, so a rotation never refuses a valid token. An emergency rotation
//! retires the others at once. The set is re-read at most every 30 s.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use gateway_domain::{OAuthFailure, OAuthStore, Principal, SigningKeyRecord};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::FacadeSettings;
use crate::settings::LocalJwks;

/// How long the key set read from the database is trusted (so a key another replica
/// withdrew stops signing here within this time).
const KEY_CACHE: Duration = Duration::from_secs(5);

/// Reads of the key set caused by unknown key ids, at most, per second: tokens with
/// invented key ids cannot turn into a stream of database reads.
const UNKNOWN_KID_READS_PER_SEC: u32 = 10;

#[derive(Default)]
struct Cached {
    keys: Vec<SigningKeyRecord>,
    read_at: Option<Instant>,
}

/// Signs the façade's access tokens and publishes its keys.
pub struct Signer {
    store: Arc<dyn OAuthStore>,
    issuer: String,
    access_ttl: Duration,
    rotation: Duration,
    leeway: Duration,
    roles_claim: String,
    tenant_claim: String,
    cached: RwLock<Cached>,
    rotating: tokio::sync::Mutex<()>,
    /// Bumped by each emergency rotation made here.
    withdrawals: std::sync::atomic::AtomicU64,
    /// The current second's reads caused by unknown key ids: (second, count).
    unknown_kid_reads: std::sync::Mutex<(u64, u32)>,
}

/// The claims of a façade access token (RFC 9068).
#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    client_id: &'a str,
    scope: String,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// A token issued: the compact JWT and its lifetime in seconds.
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

fn failure(what: &str, error: impl std::fmt::Display) -> OAuthFailure {
    OAuthFailure::unavailable(format!("{what}: {error}"))
}

impl Signer {
    /// A signer over `store`.
    pub fn new(settings: &FacadeSettings, store: Arc<dyn OAuthStore>) -> Self {
        Self {
            store,
            issuer: settings.issuer.clone(),
            access_ttl: settings.access_token_ttl,
            rotation: settings.key_rotation,
            leeway: settings.leeway,
            roles_claim: settings.roles_claim.clone(),
            tenant_claim: settings.tenant_claim.clone(),
            cached: RwLock::new(Cached::default()),
            rotating: tokio::sync::Mutex::new(()),
            withdrawals: std::sync::atomic::AtomicU64::new(0),
            unknown_kid_reads: std::sync::Mutex::new((0, 0)),
        }
    }

    /// The published keys, read again when the cache is older than 30 s (or `fresh`).
    async fn keys(&self, fresh: bool) -> Result<Vec<SigningKeyRecord>, OAuthFailure> {
        self.keys_within(if fresh { Duration::ZERO } else { KEY_CACHE })
            .await
    }

    /// The published keys, read again when the cache is older than `age`.
    async fn keys_within(&self, age: Duration) -> Result<Vec<SigningKeyRecord>, OAuthFailure> {
        {
            let cached = self.cached.read().unwrap_or_else(PoisonError::into_inner);
            if cached.read_at.is_some_and(|at| at.elapsed() < age) {
                return Ok(cached.keys.clone());
            }
        }
        let keys = self.store.signing_keys(Utc::now()).await?;
        *self.cached.write().unwrap_or_else(PoisonError::into_inner) = Cached {
            keys: keys.clone(),
            read_at: Some(Instant::now()),
        };
        Ok(keys)
    }

    /// The key that signs now, making one when there is none or it is due.
    async fn active(&self) -> Result<SigningKeyRecord, OAuthFailure> {
        let current = |keys: &[SigningKeyRecord]| {
            keys.iter()
                .find(|k| k.retire_at.is_none())
                .filter(|k| {
                    (Utc::now() - k.created_at).to_std().unwrap_or_default() < self.rotation
                })
                .cloned()
        };
        if let Some(key) = current(&self.keys(false).await?) {
            return Ok(key);
        }
        let _one = self.rotating.lock().await;
        if let Some(key) = current(&self.keys(true).await?) {
            return Ok(key); // Another replica (or task) rotated meanwhile.
        }
        self.rotate(false).await
    }

    /// Makes a new key the signing one. The others retire once their last token has
    /// expired, or now with `retire_previous`.
    pub async fn rotate(&self, retire_previous: bool) -> Result<SigningKeyRecord, OAuthFailure> {
        let key = new_key()?;
        self.store.add_signing_key(&key).await?;
        let retire_at = if retire_previous {
            Utc::now()
        } else {
            Utc::now()
                + chrono::Duration::from_std(self.access_ttl + self.leeway + KEY_CACHE)
                    .unwrap_or_default()
        };
        let retired = self.store.retire_signing_keys(&key.kid, retire_at).await?;
        tracing::info!(kid = %key.kid, retired, immediately = retire_previous, "OAuth façade signing key rotated");
        self.keys(true).await?;
        if retire_previous {
            self.withdrawals
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(key)
    }

    /// Signs an access token for `principal`.
    pub async fn issue(
        &self,
        principal: &Principal,
        client_id: &str,
        audience: &str,
        scopes: &[String],
    ) -> Result<IssuedToken, OAuthFailure> {
        let key = self.active().await?;
        let der = URL_SAFE_NO_PAD
            .decode(&key.private_key)
            .map_err(|e| failure("stored signing key", e))?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("at+jwt".into());
        let now = Utc::now().timestamp();
        let mut extra = serde_json::Map::new();
        if !principal.roles.is_empty() {
            extra.insert(self.roles_claim.clone(), principal.roles.clone().into());
        }
        if let Some(tenant) = &principal.tenant {
            extra.insert(self.tenant_claim.clone(), tenant.clone().into());
        }
        let claims = AccessClaims {
            iss: &self.issuer,
            sub: &principal.subject,
            aud: audience,
            exp: now + self.access_ttl.as_secs() as i64,
            iat: now,
            nbf: now,
            jti: super::random_handle()?,
            client_id,
            scope: scopes.join(" "),
            extra,
        };
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&der))
            .map_err(|e| failure("cannot sign the access token", e))?;
        Ok(IssuedToken {
            token,
            expires_in: self.access_ttl.as_secs(),
        })
    }

    /// The published keys as a JWKS document.
    pub async fn jwks_document(&self) -> Result<serde_json::Value, OAuthFailure> {
        let keys: Vec<serde_json::Value> = self
            .keys(false)
            .await?
            .iter()
            .filter_map(|k| serde_json::from_str(&k.public_jwk).ok())
            .collect();
        Ok(serde_json::json!({ "keys": keys }))
    }
}

#[async_trait]
impl LocalJwks for Signer {
    async fn jwks(&self, wanted: Option<&str>) -> Result<String, String> {
        // A key id not in the cache may be a key another replica just made: read the
        // database (one indexed read; verifiers ask one at a time).
        let cached = self
            .keys_within(KEY_CACHE)
            .await
            .map_err(|e| e.to_string())?;
        let keys = match wanted {
            Some(kid)
                if !cached.iter().any(|k| k.kid == kid) && self.may_read_for_unknown_kid() =>
            {
                self.keys(true).await.map_err(|e| e.to_string())?
            }
            _ => cached,
        };
        let keys: Vec<serde_json::Value> = keys
            .iter()
            .filter_map(|k| serde_json::from_str(&k.public_jwk).ok())
            .collect();
        Ok(serde_json::json!({ "keys": keys }).to_string())
    }

    fn version(&self) -> u64 {
        self.withdrawals.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Signer {
    /// Another replica withdrew keys (or the link to the others had a gap): read the set
    /// again before the next signature, and make verifiers forget their verdicts.
    pub fn withdrawn_elsewhere(&self) {
        self.cached
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .read_at = None;
        self.withdrawals
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Hears the other replicas' emergency rotations (`SigningKeysWithdrawn`).
pub struct KeyWithdrawals(pub Arc<Signer>);

impl gateway_domain::ClusterListener for KeyWithdrawals {
    fn received(&self, event: gateway_domain::ClusterEvent) {
        if matches!(event, gateway_domain::ClusterEvent::SigningKeysWithdrawn) {
            tracing::info!("another replica withdrew the OAuth façade's signing keys");
            self.0.withdrawn_elsewhere();
        }
    }

    fn resynced(&self) {
        // A withdrawal may have been missed during the gap.
        self.0.withdrawn_elsewhere();
    }
}

impl Signer {
    /// Whether one more read for an unknown key id fits this second's budget.
    fn may_read_for_unknown_kid(&self) -> bool {
        let second = Utc::now().timestamp() as u64;
        let mut reads = self
            .unknown_kid_reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if reads.0 != second {
            *reads = (second, 0);
        }
        reads.1 += 1;
        reads.1 <= UNKNOWN_KID_READS_PER_SEC
    }
}

/// A new P-256 key: PKCS#8 (base64url) and its public JWK, whose `kid` is its RFC 7638
/// thumbprint.
fn new_key() -> Result<SigningKeyRecord, OAuthFailure> {
    let random = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random)
        .map_err(|_| OAuthFailure::unavailable("cannot generate a signing key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random)
        .map_err(|_| OAuthFailure::unavailable("cannot read the generated signing key"))?;
    // An uncompressed point: 0x04, x (32 bytes), y (32 bytes).
    let point = pair.public_key().as_ref();
    let (x, y) = match point {
        [4, rest @ ..] if rest.len() == 64 => rest.split_at(32),
        _ => return Err(OAuthFailure::unavailable("unexpected public key encoding")),
    };
    let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
    let thumbprint_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y,
        "use": "sig", "alg": "ES256", "kid": kid,
    });
    Ok(SigningKeyRecord {
        kid,
        private_key: URL_SAFE_NO_PAD.encode(pkcs8.as_ref()),
        public_jwk: jwk.to_string(),
        created_at: Utc::now(),
        retire_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_signs_what_its_jwk_verifies() {
        let key = new_key().expect("key");
        let der = URL_SAFE_NO_PAD.decode(&key.private_key).expect("der");
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "x", "exp": Utc::now().timestamp() + 60}),
            &EncodingKey::from_ec_der(&der),
        )
        .expect("signed");
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(&key.public_jwk).expect("jwk");
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation)
            .expect("verifies");
        assert_eq!(data.claims["sub"], "x");
        assert_eq!(key.kid.len(), 43);
    }
}
