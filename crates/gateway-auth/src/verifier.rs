//! [`JwtVerifier`]: the domain's [`TokenVerifier`] over JWT access tokens.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError};

use sha2::{Digest, Sha256};

use async_trait::async_trait;
use gateway_domain::{AuthError, Principal, TokenVerifier};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde_json::Value;

use crate::keys::KeyStore;
use crate::settings::AuthSettings;

/// Longest token accepted, in bytes (a header can hold more; a token never needs to).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Verdicts remembered at most. Agents reuse a token for many requests; each is
/// verified once and then recognised by its SHA-256 until it expires.
const MAX_VERDICTS: usize = 10_000;

/// A token verified before: its principal, its `exp`, and the key set it was checked
/// against (a refreshed set forgets it, so a withdrawn key stops working at once).
struct Verdict {
    principal: Principal,
    expires_at: i64,
    key_generation: u64,
}

/// Verifies JWT access tokens of one issuer (or one Entra tenant set).
pub struct JwtVerifier {
    verdicts: std::sync::Mutex<std::collections::HashMap<[u8; 32], Verdict>>,
    settings: AuthSettings,
    /// One prepared validation per accepted algorithm (built once, not per token).
    validations: Vec<(Algorithm, Validation)>,
    keys: Arc<KeyStore>,
}

impl JwtVerifier {
    /// A verifier with its own key store.
    pub fn new(settings: AuthSettings) -> Result<Self, String> {
        crate::ring_provider::install();
        let keys = KeyStore::new(
            settings.keys.clone(),
            settings.refresh_interval,
            settings.fetch_timeout,
        )?;
        let validations = settings
            .accepted_algorithms()
            .into_iter()
            .map(|algorithm| {
                let mut validation = Validation::new(algorithm);
                validation.algorithms = vec![algorithm];
                validation.set_issuer(&settings.issuers);
                validation.set_audience(&settings.audiences);
                // With a prefix, `aud` is checked in `principal` (jsonwebtoken knows
                // only exact values).
                validation.validate_aud = settings.audience_prefix.is_none();
                validation.leeway = settings.leeway.as_secs();
                validation.validate_nbf = true;
                validation.required_spec_claims = ["exp", "iss", "aud"]
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect::<HashSet<_>>();
                (algorithm, validation)
            })
            .collect();
        Ok(Self {
            verdicts: std::sync::Mutex::new(std::collections::HashMap::new()),
            validations,
            settings,
            keys: Arc::new(keys),
        })
    }

    /// The key store (to fetch keys at start-up).
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    fn principal(&self, claims: &Value) -> Result<Principal, AuthError> {
        let resource = match &self.settings.audience_prefix {
            Some(prefix) => Some(self.check_audience(claims, prefix)?),
            None => None,
        };
        let names = &self.settings.claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let list = |name: &str| -> Option<Vec<String>> {
            match claims.get(name)? {
                Value::String(joined) => {
                    Some(joined.split_whitespace().map(str::to_owned).collect())
                }
                Value::Array(items) => Some(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                ),
                _ => None,
            }
        };
        let subject = text(&names.subject)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::Invalid(format!("no `{}` claim", names.subject)))?;
        let tenant = text(&names.tenant);
        if !self.settings.allowed_tenants.is_empty()
            && !tenant
                .as_ref()
                .is_some_and(|t| self.settings.allowed_tenants.contains(t))
        {
            return Err(AuthError::Invalid(
                "the token's tenant is not allowed".to_owned(),
            ));
        }
        let scopes = names
            .scopes
            .iter()
            .find_map(|name| list(name))
            .unwrap_or_default();
        let missing: Vec<String> = self
            .settings
            .required_scopes
            .iter()
            .filter(|required| !scopes.contains(required))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(AuthError::InsufficientScope(missing));
        }
        Ok(Principal {
            subject,
            issuer: text("iss").unwrap_or_default(),
            tenant,
            roles: list(&names.roles).unwrap_or_default(),
            scopes,
            client_id: names.client_id.iter().find_map(|name| text(name)),
            resource,
        })
    }
}

impl JwtVerifier {
    /// `aud` (a string or an array) holds a configured audience, or the prefix URL or
    /// a URL below it: the first such audience (the resource the token is for).
    fn check_audience(&self, claims: &Value, prefix: &str) -> Result<String, AuthError> {
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => return Err(AuthError::Invalid("no `aud` claim".into())),
        };
        let ours = |aud: &str| {
            self.settings.audiences.iter().any(|a| a == aud)
                || aud == prefix
                || aud
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        if let Some(aud) = audiences.iter().find(|aud| ours(aud)) {
            Ok((*aud).to_owned())
        } else {
            Err(AuthError::Invalid(
                "the token was issued for another audience".into(),
            ))
        }
    }
}

fn from_jwt_error(error: &jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::Invalid("the issuer is not accepted".into()),
        ErrorKind::InvalidAudience => {
            AuthError::Invalid("the token was issued for another audience".into())
        }
        ErrorKind::InvalidSignature => AuthError::Invalid("the signature does not verify".into()),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::Invalid("the algorithm does not match the key".into())
        }
        ErrorKind::MissingRequiredClaim(claim) => AuthError::Invalid(format!("no `{claim}` claim")),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::Malformed("not a JWS compact token".into()),
        other => AuthError::Invalid(format!("{other:?}")),
    }
}

#[async_trait]
impl TokenVerifier for JwtVerifier {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let header = decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithmName => {
                AuthError::Invalid("the algorithm is not accepted".into())
            }
            _ => AuthError::Malformed("not a JWS compact token".into()),
        })?;
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Err(AuthError::Invalid(format!(
                "the algorithm {:?} is not accepted",
                header.alg
            )));
        };
        let typ_ok = header.typ.as_deref().is_none_or(|typ| {
            let typ = typ.to_ascii_lowercase();
            matches!(typ.as_str(), "jwt" | "at+jwt" | "application/at+jwt")
        });
        if !typ_ok {
            return Err(AuthError::Invalid(
                "the token type is not an access token".into(),
            ));
        }
        let fingerprint: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = jsonwebtoken::get_current_timestamp() as i64;
        if let Some(principal) = self.remembered(&fingerprint, now) {
            return Ok(principal);
        }
        let key = self.keys.key(header.kid.as_deref()).await?;
        // A key published for one algorithm verifies only that one.
        if let Some(published) = key.jwk.common.key_algorithm
            && format!("{published:?}") != format!("{:?}", header.alg)
        {
            return Err(AuthError::Invalid(
                "the token's algorithm is not the one its key is published for".into(),
            ));
        }
        let generation = key.generation;
        let data = decode::<Value>(token, &key.key, validation).map_err(|e| from_jwt_error(&e))?;
        let principal = self.principal(&data.claims)?;
        if let Some(expires_at) = data.claims.get("exp").and_then(Value::as_i64) {
            self.remember(fingerprint, &principal, expires_at, generation, now);
        }
        Ok(principal)
    }
}

impl JwtVerifier {
    fn remembered(&self, fingerprint: &[u8; 32], now: i64) -> Option<Principal> {
        let verdicts = self.verdicts.lock().unwrap_or_else(PoisonError::into_inner);
        let verdict = verdicts.get(fingerprint)?;
        (verdict.expires_at > now && verdict.key_generation == self.keys.generation())
            .then(|| verdict.principal.clone())
    }

    fn remember(
        &self,
        fingerprint: [u8; 32],
        principal: &Principal,
        expires_at: i64,
        key_generation: u64,
        now: i64,
    ) {
        let mut verdicts = self.verdicts.lock().unwrap_or_else(PoisonError::into_inner);
        if verdicts.len() >= MAX_VERDICTS {
            verdicts.retain(|_, v| v.expires_at > now);
            if verdicts.len() >= MAX_VERDICTS {
                verdicts.clear();
            }
        }
        verdicts.insert(
            fingerprint,
            Verdict {
                principal: principal.clone(),
                expires_at,
                key_generation,
            },
        );
    }
}

/// Several issuers behind one port: a token goes to the verifier of the issuer its
/// (unverified) `iss` names, and to the default one otherwise, which then refuses it
/// with its own reasons. Choosing by `iss` decides only which checks run; every check
/// still runs.
pub struct ByIssuer {
    by_issuer: Vec<(String, Arc<JwtVerifier>)>,
    default: Arc<JwtVerifier>,
}

impl ByIssuer {
    /// Routes tokens of each issuer of `by_issuer` to its verifier, others to `default`.
    pub fn new(by_issuer: Vec<(String, Arc<JwtVerifier>)>, default: Arc<JwtVerifier>) -> Self {
        Self { by_issuer, default }
    }

    /// The `iss` a compact JWS claims, without verifying anything.
    fn claimed_issuer(token: &str) -> Option<String> {
        use base64::Engine;
        let payload = token.split('.').nth(1)?;
        if payload.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        #[derive(serde::Deserialize)]
        struct Issuer {
            iss: Option<String>,
        }
        serde_json::from_slice::<Issuer>(&bytes).ok()?.iss
    }
}

#[async_trait]
impl TokenVerifier for ByIssuer {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let claimed = Self::claimed_issuer(token.trim());
        let verifier = claimed
            .and_then(|iss| {
                self.by_issuer
                    .iter()
                    .find(|(issuer, _)| *issuer == iss)
                    .map(|(_, v)| v)
            })
            .unwrap_or(&self.default);
        verifier.verify(token).await
    }
}
