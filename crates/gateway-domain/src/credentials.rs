//! The gateway's own OAuth 2.0 credentials for an upstream (the client-credentials
//! grant). A caller's token is never passed through to an upstream; an upstream that
//! wants a bearer token gets one the gateway obtained for itself from the upstream's
//! authorization server, with these credentials.

use async_trait::async_trait;
use url::Url;

use crate::error::ValidationErrors;
use crate::secret::Secret;

/// Longest client id, scope, audience or resource accepted.
const MAX_VALUE: usize = 2048;
/// Most scopes requested for one upstream.
const MAX_SCOPES: usize = 32;
/// Longest client secret accepted.
const MAX_SECRET: usize = 8 * 1024;

/// What the gateway sends to an upstream's token endpoint to get an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The authorization server's token endpoint: `https`, or `http` on loopback only
    /// (the client secret travels in the request).
    pub token_url: Url,
    /// The gateway's client id at that authorization server.
    pub client_id: String,
    /// Its client secret (sealed at rest, masked on output).
    pub client_secret: Secret,
    /// Scopes requested (`scope`), e.g. `api://upstream/.default` on Entra ID.
    pub scopes: Vec<String>,
    /// `audience` parameter (Auth0, Okta and others name the API this way).
    pub audience: Option<String>,
    /// `resource` parameter (RFC 8707; the MCP authorization spec's way to name the
    /// upstream).
    pub resource: Option<String>,
}

impl ClientCredentials {
    /// Checks every field; error paths are relative (`token_url`, `scopes.0`…).
    pub fn new(
        token_url: &str,
        client_id: &str,
        client_secret: Secret,
        scopes: Vec<String>,
        audience: Option<String>,
        resource: Option<String>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let token_url = errors.check("token_url", parse_token_url(token_url));
        if let Err(message) = check_value(client_id) {
            errors.push("client_id", message);
        }
        let secret = client_secret.expose();
        if secret.is_empty() || secret.len() > MAX_SECRET {
            errors.push("client_secret", format!("must be 1 to {MAX_SECRET} bytes"));
        } else if secret.chars().any(char::is_control) {
            errors.push("client_secret", "must not contain control characters");
        }
        if scopes.len() > MAX_SCOPES {
            errors.push(
                "scopes",
                format!(
                    "at most {MAX_SCOPES} scopes are allowed, got {}",
                    scopes.len()
                ),
            );
        }
        for (index, scope) in scopes.iter().enumerate() {
            // RFC 6749 §3.3: scope tokens are printable ASCII without space, `"` or `\`.
            let valid = !scope.is_empty()
                && scope.len() <= MAX_VALUE
                && scope
                    .bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
            if !valid {
                errors.push(
                    format!("scopes.{index}"),
                    "must be a non-empty scope token (printable ASCII without spaces, quotes or backslashes)",
                );
            }
        }
        for (field, value) in [("audience", &audience), ("resource", &resource)] {
            if let Some(value) = value
                && let Err(message) = check_value(value)
            {
                errors.push(field, message);
            }
        }
        match token_url {
            Some(token_url) if errors.is_empty() => Ok(Self {
                token_url,
                client_id: client_id.to_owned(),
                client_secret,
                scopes,
                audience,
                resource,
            }),
            _ => Err(errors),
        }
    }
}

fn check_value(value: &str) -> Result<(), String> {
    if value.trim().is_empty() || value.len() > MAX_VALUE {
        Err(format!("must be 1 to {MAX_VALUE} characters"))
    } else if value.chars().any(char::is_control) {
        Err("must not contain control characters".into())
    } else {
        Ok(())
    }
}

fn parse_token_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw)
        .map_err(|e| format!("`{}` is not an absolute URL: {e}", raw.escape_debug()))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(
                "must be https (http only on loopback): the client secret travels in the request"
                    .into(),
            );
        }
        other => return Err(format!("scheme must be https, got `{other}`")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not embed credentials".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    Ok(url)
}

/// Obtains the gateway's access tokens for upstreams. Implementations cache a token
/// until shortly before it expires and fetch at most one at a time per credentials.
#[async_trait]
pub trait UpstreamTokenSource: Send + Sync {
    /// A current access token for `credentials`. `refused` is a token the upstream
    /// just rejected: it is not handed out again (a new one is fetched unless a newer
    /// one is already cached). The error says why none could be obtained, without
    /// the secret.
    async fn access_token(
        &self,
        credentials: &ClientCredentials,
        refused: Option<&Secret>,
    ) -> Result<Secret, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(result: Result<ClientCredentials, ValidationErrors>) -> Vec<String> {
        result
            .err()
            .map(|errors| errors.errors().iter().map(|e| e.field.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn accepts_https_and_loopback_http() {
        for url in [
            "https://login.example.com/oauth2/token",
            "http://127.0.0.1:9000/token",
            "http://localhost/token",
            "http://[::1]:8080/token",
        ] {
            let made = ClientCredentials::new(
                url,
                "gateway",
                Secret::new("s3cret"),
                vec!["api://upstream/.default".into()],
                None,
                Some("https://upstream.example.com/mcp".into()),
            );
            assert!(made.is_ok(), "{url}: {made:?}");
        }
    }

    #[test]
    fn names_every_bad_field() {
        let made = ClientCredentials::new(
            "http://issuer.example.com/token",
            "",
            Secret::new(""),
            vec!["ok".into(), "two words".into()],
            Some("\n".into()),
            None,
        );
        assert_eq!(
            fields(made),
            [
                "token_url",
                "client_id",
                "client_secret",
                "scopes.1",
                "audience"
            ]
        );
        for url in [
            "ftp://x/token",
            "not a url",
            "https://u:p@x/token",
            "https://x/t#f",
        ] {
            let made = ClientCredentials::new(url, "c", Secret::new("s"), vec![], None, None);
            assert_eq!(fields(made), ["token_url"], "{url}");
        }
    }
}
