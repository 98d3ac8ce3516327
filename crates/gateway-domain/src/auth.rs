//! Who is calling: the [`Principal`] a verified access token describes, the
//! [`TokenVerifier`] port that turns a bearer token into one, and why a token was
//! refused ([`AuthError`], with the OAuth error code an HTTP adapter answers with).

use async_trait::async_trait;

/// The caller, as the identity provider vouches for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's subject (`sub`).
    pub subject: String,
    /// The issuer that signed the token.
    pub issuer: String,
    /// The caller's tenant (Entra `tid`, or a configured claim), if any.
    pub tenant: Option<String>,
    /// Roles (app roles / groups mapped to roles).
    pub roles: Vec<String>,
    /// Granted scopes (`scp` or `scope`, space-separated or an array).
    pub scopes: Vec<String>,
    /// The OAuth client that obtained the token (`azp`, `appid` or `client_id`).
    pub client_id: Option<String>,
    /// For the gateway's own tokens (the OAuth façade): the one resource the token was
    /// issued for (its `aud`, RFC 8707). `None` for the identity provider's tokens,
    /// which are for the whole gateway.
    pub resource: Option<String>,
}

impl Principal {
    /// Whether the principal holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the principal was granted `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Why a bearer token was refused. The messages name what was wrong without echoing
/// the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer token was sent.
    #[error("a bearer token is required")]
    Missing,
    /// Not a JWT, or a part of it does not decode.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// Signature, algorithm, key, issuer, audience or a required claim is wrong.
    #[error("the token is invalid: {0}")]
    Invalid(String),
    /// `exp` has passed (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// Valid, but without a scope the resource requires.
    #[error("the token lacks the required scope: {}", .0.join(" "))]
    InsufficientScope(Vec<String>),
    /// The issuer's keys could not be fetched, so nothing can be verified now.
    #[error("the token cannot be verified now: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// The OAuth 2.0 bearer error code (RFC 6750) that goes in `WWW-Authenticate`:
    /// `None` for a missing token (the challenge carries no error then).
    pub fn oauth_code(&self) -> Option<&'static str> {
        match self {
            Self::Missing | Self::Unavailable(_) => None,
            Self::Malformed(_) => Some("invalid_request"),
            Self::Invalid(_) | Self::Expired | Self::NotYetValid => Some("invalid_token"),
            Self::InsufficientScope(_) => Some("insufficient_scope"),
        }
    }
}

/// Verifies bearer tokens. Implementations must not touch the network on the hot path
/// (keys are cached) and must never accept an unsigned or symmetric-key token.
#[async_trait]
pub trait TokenVerifier: Send + Sync {
    /// The principal a token describes, or why it is refused.
    async fn verify(&self, token: &str) -> Result<Principal, AuthError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_bearer_codes() {
        assert_eq!(AuthError::Missing.oauth_code(), None);
        assert_eq!(AuthError::Expired.oauth_code(), Some("invalid_token"));
        assert_eq!(
            AuthError::Malformed("x".into()).oauth_code(),
            Some("invalid_request")
        );
        let scope = AuthError::InsufficientScope(vec!["mcp.call".into()]);
        assert_eq!(scope.oauth_code(), Some("insufficient_scope"));
        assert!(scope.to_string().contains("mcp.call"));
    }

    #[test]
    fn roles_and_scopes_are_matched_exactly() {
        let principal = Principal {
            subject: "u".into(),
            issuer: "https://issuer".into(),
            tenant: None,
            roles: vec!["admin".into()],
            scopes: vec!["mcp.read".into()],
            client_id: None,
            resource: None,
        };
        assert!(principal.has_role("admin") && !principal.has_role("adm"));
        assert!(principal.has_scope("mcp.read") && !principal.has_scope("mcp"));
    }
}
