//! What a verifier accepts: issuers, audiences, algorithms, leeway, required scopes,
//! which claims carry the principal, and where the keys come from. The Entra ID
//! preset fills these in from a tenant and an application.

use std::time::Duration;

use jsonwebtoken::Algorithm;

/// A key set this process reads without HTTP: the façade's own keys, from the
/// database every replica shares.
#[async_trait::async_trait]
pub trait LocalJwks: Send + Sync {
    /// The current JWKS document; `wanted` names a key id a token carries that the
    /// caller does not know yet (read the source again rather than a cache).
    async fn jwks(&self, wanted: Option<&str>) -> Result<String, String>;
    /// Bumped whenever keys are withdrawn here (an emergency rotation): a verifier
    /// whose set is of another version forgets it, and the verdicts reached with it, at
    /// once.
    fn version(&self) -> u64 {
        0
    }
}

/// A [`LocalJwks`] as a key source (compared by identity).
#[derive(Clone)]
pub struct LocalKeys(pub std::sync::Arc<dyn LocalJwks>);

impl PartialEq for LocalKeys {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LocalKeys {}

impl std::fmt::Debug for LocalKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalKeys")
    }
}

/// Where the signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// OIDC discovery at `<issuer>/.well-known/openid-configuration`, which names the
    /// `jwks_uri`.
    Discovery(String),
    /// A JWKS URL given directly.
    JwksUri(String),
    /// A JWKS document given inline (air-gapped set-ups, benchmarks); never refreshed.
    Inline(String),
    /// Read in process (the façade's keys); refreshed like a fetched set.
    Local(LocalKeys),
}

/// Which claims hold the principal's parts; the first present one of a list wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// The subject.
    pub subject: String,
    /// The tenant.
    pub tenant: String,
    /// Roles (an array, or a space-separated string).
    pub roles: String,
    /// Scopes (`scp` in Entra, `scope` in RFC 9068).
    pub scopes: Vec<String>,
    /// The client id (`azp` in Entra v2, `appid` in v1, `client_id` in RFC 9068).
    pub client_id: Vec<String>,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            tenant: "tid".into(),
            roles: "roles".into(),
            scopes: vec!["scp".into(), "scope".into()],
            client_id: vec!["azp".into(), "appid".into(), "client_id".into()],
        }
    }
}

/// Everything a [`crate::JwtVerifier`] checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// Accepted `iss` values, compared exactly.
    pub issuers: Vec<String>,
    /// Accepted `aud` values: a token minted for another API is refused.
    pub audiences: Vec<String>,
    /// Also accept an `aud` that is this URL or below it (`<prefix>/…`): the façade's
    /// tokens name the resource they were asked for (RFC 8707), any of the gateway's.
    pub audience_prefix: Option<String>,
    /// Where the keys come from.
    pub keys: KeySource,
    /// Accepted signature algorithms (asymmetric only; others are dropped).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Scopes every token must carry.
    pub required_scopes: Vec<String>,
    /// Tenants allowed (empty: any); checked against the tenant claim.
    pub allowed_tenants: Vec<String>,
    /// Which claims carry the principal.
    pub claims: ClaimNames,
    /// Shortest time between two key fetches caused by unknown key ids.
    pub refresh_interval: Duration,
    /// Longest wait for discovery or a key fetch.
    pub fetch_timeout: Duration,
}

/// The asymmetric algorithms a verifier may accept; never `none` or HMAC.
pub const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

impl AuthSettings {
    /// A generic OIDC issuer: keys by discovery, `iss` must equal `issuer`.
    pub fn oidc(issuer: &str, audiences: Vec<String>) -> Self {
        Self {
            issuers: vec![issuer.trim_end_matches('/').to_owned(), issuer.to_owned()]
                .into_iter()
                .fold(Vec::new(), |mut unique, i| {
                    if !unique.contains(&i) {
                        unique.push(i);
                    }
                    unique
                }),
            audiences,
            audience_prefix: None,
            keys: KeySource::Discovery(issuer.to_owned()),
            algorithms: ASYMMETRIC.to_vec(),
            leeway: Duration::from_secs(60),
            required_scopes: Vec::new(),
            allowed_tenants: Vec::new(),
            claims: ClaimNames::default(),
            refresh_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(10),
        }
    }

    /// The algorithms actually accepted: the configured ones that are asymmetric.
    pub fn accepted_algorithms(&self) -> Vec<Algorithm> {
        self.algorithms
            .iter()
            .copied()
            .filter(|a| ASYMMETRIC.contains(a))
            .collect()
    }
}

/// The Azure Entra ID preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraSettings {
    /// The directory (tenant) id, or `organizations` for a multi-tenant app.
    pub tenant_id: String,
    /// The API's application (client) id: the `aud` of v2 tokens.
    pub client_id: String,
    /// The application ID URI (`api://…`): the `aud` of v1 tokens.
    pub app_id_uri: Option<String>,
    /// Also accept v1 tokens (`https://sts.windows.net/{tenant}/`).
    pub accept_v1: bool,
    /// For a multi-tenant app: the tenants allowed (required with `organizations`).
    pub allowed_tenants: Vec<String>,
    /// The login host (sovereign clouds differ).
    pub authority: String,
}

impl EntraSettings {
    /// Verifier settings: v2 (and optionally v1) issuers of the tenant or of each
    /// allowed tenant, the application's audiences, Entra's keys, `roles`, `scp`,
    /// `tid` and `azp`/`appid`.
    pub fn to_auth_settings(&self) -> AuthSettings {
        let authority = self.authority.trim_end_matches('/');
        let tenants = if self.allowed_tenants.is_empty() {
            vec![self.tenant_id.clone()]
        } else {
            self.allowed_tenants.clone()
        };
        let mut issuers = Vec::new();
        for tenant in &tenants {
            issuers.push(format!("{authority}/{tenant}/v2.0"));
            if self.accept_v1 {
                issuers.push(format!("https://sts.windows.net/{tenant}/"));
            }
        }
        let mut audiences = vec![self.client_id.clone()];
        audiences.extend(self.app_id_uri.clone());
        let mut settings = AuthSettings::oidc(&issuers[0], audiences);
        settings.issuers = issuers;
        settings.keys = KeySource::JwksUri(format!(
            "{authority}/{}/discovery/v2.0/keys",
            self.tenant_id
        ));
        settings.algorithms = vec![Algorithm::RS256];
        settings.allowed_tenants = self.allowed_tenants.clone();
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entra_preset_names_issuers_audiences_and_keys() {
        let entra = EntraSettings {
            tenant_id: "t1".into(),
            client_id: "c1".into(),
            app_id_uri: Some("api://gateway".into()),
            accept_v1: true,
            allowed_tenants: Vec::new(),
            authority: "https://login.microsoftonline.com".into(),
        };
        let settings = entra.to_auth_settings();
        assert_eq!(
            settings.issuers,
            [
                "https://login.microsoftonline.com/t1/v2.0",
                "https://sts.windows.net/t1/"
            ]
        );
        assert_eq!(settings.audiences, ["c1", "api://gateway"]);
        assert_eq!(
            settings.keys,
            KeySource::JwksUri("https://login.microsoftonline.com/t1/discovery/v2.0/keys".into())
        );
        let multi = EntraSettings {
            tenant_id: "organizations".into(),
            allowed_tenants: vec!["a".into(), "b".into()],
            accept_v1: false,
            ..entra
        }
        .to_auth_settings();
        assert_eq!(multi.issuers.len(), 2);
        assert_eq!(multi.allowed_tenants, ["a", "b"]);
    }

    #[test]
    fn only_asymmetric_algorithms_are_ever_accepted() {
        let mut settings = AuthSettings::oidc("https://issuer", vec!["aud".into()]);
        settings.algorithms = vec![Algorithm::HS256, Algorithm::RS256];
        assert_eq!(settings.accepted_algorithms(), [Algorithm::RS256]);
    }
}
