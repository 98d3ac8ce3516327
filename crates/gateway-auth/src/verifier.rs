//! [`JwtVerifier`]: the domain's [`TokenVerifier`] over JWT access tokens.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use gateway_domain::{AuthError, Principal, TokenVerifier};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde_json::Value;

use crate::keys::KeyStore;
use crate::settings::AuthSettings;

/// Longest token accepted, in bytes (a header can hold more; a token never needs to).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Verifies JWT access tokens of one issuer (or one Entra tenant set).
pub struct JwtVerifier {
    settings: AuthSettings,
    algorithms: Vec<Algorithm>,
    keys: Arc<KeyStore>,
}

impl JwtVerifier {
    /// A verifier with its own key store.
    pub fn new(settings: AuthSettings) -> Result<Self, String> {
        let keys = KeyStore::new(
            settings.keys.clone(),
            settings.refresh_interval,
            settings.fetch_timeout,
        )?;
        Ok(Self {
            algorithms: settings.accepted_algorithms(),
            settings,
            keys: Arc::new(keys),
        })
    }

    /// The key store (to fetch keys at start-up).
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    fn principal(&self, claims: &Value) -> Result<Principal, AuthError> {
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
        })
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
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "the algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let typ_ok = header.typ.as_deref().is_none_or(|typ| {
            let typ = typ.to_ascii_lowercase();
            matches!(typ.as_str(), "jwt" | "at+jwt" | "application/at+jwt")
        });
        if !typ_ok {
            return Err(AuthError::Invalid(
                "the token type is not an access token".into(),
            ));
        }
        let key = self.keys.key(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&self.settings.issuers);
        validation.set_audience(&self.settings.audiences);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.required_spec_claims = ["exp", "iss", "aud"]
            .iter()
            .map(|c| (*c).to_owned())
            .collect::<HashSet<_>>();
        let data = decode::<Value>(token, &key.key, &validation).map_err(|e| from_jwt_error(&e))?;
        self.principal(&data.claims)
    }
}
