//! The façade's endpoints: the domain's `AuthorizationServer` port. A login goes
//! authorize (client, redirect URI, PKCE, scopes and resource checked) → consent
//! (unless this browser already consented to this client and these scopes) → the
//! identity provider → callback (code exchanged, ID token checked, principal taken)
//! → the client's redirect URI with a single-use code → token (PKCE verified) →
//! refresh (rotating; a reused refresh token revokes its whole family, as does a
//! replayed code). Until the redirect URI is trusted, errors are shown, never
//! redirected.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gateway_domain::{
    AuditOutcome, AuthorizationServer, BasicCredentials, BrowserCookies, BrowserStep, ClientSource,
    ConsentRequest, GrantKind, OAuthFailure, Principal, RequestMeta, StoredGrant, Taken,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::clients::KnownClient;
use super::upstream::Upstream;
use super::{
    Audited, Facade, digest, hex, pkce_matches, pkce_shaped, random_handle, required, single,
};

tokio::task_local! {
    /// The request being served, for the audit events it causes.
    static REQUEST: RequestMeta;
}

/// The request being served on this task (empty outside one).
pub(crate) fn current_request() -> RequestMeta {
    REQUEST.try_with(Clone::clone).unwrap_or_default()
}

/// Longest `state` a client may send (it is echoed back).
const MAX_STATE: usize = 2048;

/// An authorize request once checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Authorization {
    client_id: String,
    redirect_uri: String,
    /// Whether the request named it (then the token request must repeat it).
    #[serde(default)]
    redirect_uri_given: bool,
    state: Option<String>,
    code_challenge: String,
    scopes: Vec<String>,
    resource: String,
}

/// What a pending grant holds, by stage.
#[derive(Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
enum Pending {
    /// Waiting for the consent form.
    Consent {
        request: Authorization,
        csrf_digest: String,
    },
    /// Waiting for the identity provider.
    Upstream {
        request: Authorization,
        verifier: String,
        nonce: String,
    },
}

/// The principal, as stored in codes and refresh tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPrincipal {
    subject: String,
    issuer: String,
    tenant: Option<String>,
    roles: Vec<String>,
}

/// What a code or refresh token stands for. The provider's tokens are kept (sealed at
/// rest) and never given to the client.
#[derive(Clone, Serialize, Deserialize)]
struct Session {
    client_id: String,
    /// Codes only: the redirect URI and PKCE challenge of the authorize request.
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    redirect_uri_given: bool,
    /// The scopes of the next token (a refresh may ask for fewer).
    scopes: Vec<String>,
    /// The scopes the user consented to: what any refresh may ask for.
    #[serde(default)]
    granted_scopes: Vec<String>,
    resource: String,
    principal: StoredPrincipal,
    /// When the login's refresh tokens stop working, whatever the rotations.
    login_expires_at: DateTime<Utc>,
    upstream_access_token: String,
    upstream_refresh_token: Option<String>,
}

/// The digest a pending login is stored under: its state and the binding cookie of
/// the browser it was begun in.
fn login_key(state: &str, binding: Option<&str>) -> String {
    digest(&format!("login\n{state}\n{}", binding.unwrap_or_default()))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, OAuthFailure> {
    serde_json::to_string(value).map_err(|e| OAuthFailure::unavailable(e.to_string()))
}

fn from_json<T: for<'a> Deserialize<'a>>(text: &str) -> Result<T, OAuthFailure> {
    serde_json::from_str(text)
        .map_err(|e| OAuthFailure::unavailable(format!("stored grant does not decode: {e}")))
}

fn invalid_grant(description: impl Into<String>) -> OAuthFailure {
    OAuthFailure::bad("invalid_grant", description)
}

fn refuse(status: u16, error: &'static str, description: impl Into<String>) -> BrowserStep {
    BrowserStep::Refuse(OAuthFailure {
        status,
        error,
        description: description.into(),
    })
}

/// `redirect_uri` with `pairs` added to its query.
fn with_query(redirect_uri: &str, pairs: &[(&str, Option<&str>)]) -> String {
    match Url::parse(redirect_uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (name, value) in pairs {
                    if let Some(value) = value {
                        query.append_pair(name, value);
                    }
                }
            }
            url.to_string()
        }
        Err(_) => redirect_uri.to_owned(),
    }
}

impl Session {
    /// The scopes consented to (older grants kept them in `scopes` only).
    fn granted(&self) -> &[String] {
        if self.granted_scopes.is_empty() {
            &self.scopes
        } else {
            &self.granted_scopes
        }
    }
}

impl Facade {
    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn later(&self, ttl: std::time::Duration) -> DateTime<Utc> {
        Self::now() + chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::zero())
    }

    /// Whether `resource` is one of the gateway's MCP endpoints a token may be for:
    /// `<issuer>/mcp` (every MCP endpoint) or `<issuer>/mcp/servers/<name>` (one).
    /// Never the registry API or the façade itself.
    fn our_resource(&self, resource: &str) -> bool {
        let Some(path) = resource
            .trim_end_matches('/')
            .strip_prefix(self.settings.issuer.as_str())
        else {
            return false;
        };
        path == "/mcp"
            || path
                .strip_prefix("/mcp/servers/")
                .is_some_and(|name| gateway_domain::ServerName::parse(name).is_ok())
    }

    /// The client's redirect URI with an error (and `state`, `iss`).
    fn error_redirect(
        &self,
        request: &Authorization,
        error: &str,
        description: &str,
    ) -> BrowserStep {
        BrowserStep::Redirect {
            location: with_query(
                &request.redirect_uri,
                &[
                    ("error", Some(error)),
                    ("error_description", Some(description)),
                    ("state", request.state.as_deref()),
                    ("iss", Some(&self.settings.issuer)),
                ],
            ),
            remember_browser: None,
            bind_login: None,
        }
    }

    /// The consent grant's digest for a browser, client, redirect URI and scopes.
    fn consent_digest(browser: &str, request: &Authorization) -> String {
        let mut scopes = request.scopes.clone();
        scopes.sort();
        digest(&format!(
            "consent\n{browser}\n{}\n{}\n{}",
            request.client_id,
            request.redirect_uri,
            scopes.join(" ")
        ))
    }

    /// Checks an authorize request; `Err` is the step to show (an error page, or an
    /// error sent to a trusted redirect URI).
    async fn checked_authorization(
        &self,
        query: &[(String, String)],
    ) -> Result<(KnownClient, Authorization), BrowserStep> {
        let page = |failure: OAuthFailure| BrowserStep::Refuse(failure);
        let client_id = required(query, "client_id").map_err(page)?;
        let client = self.clients.find(client_id).await.map_err(page)?;
        let redirect_uri = match single(query, "redirect_uri").map_err(page)? {
            Some(uri) => uri.to_owned(),
            None if client.metadata.redirect_uris.len() == 1 => {
                client.metadata.redirect_uris[0].clone()
            }
            None => {
                return Err(refuse(
                    400,
                    "invalid_request",
                    "`redirect_uri` is required: the client registered more than one",
                ));
            }
        };
        if !client.owns_redirect(&redirect_uri) {
            return Err(refuse(
                400,
                "invalid_request",
                format!("redirect URI `{redirect_uri}` is not registered for this client"),
            ));
        }
        if let Err(error) = self.clients.redirect_allowed(&redirect_uri) {
            return Err(refuse(400, "invalid_request", error));
        }
        // From here the redirect URI is trusted: errors go back to the client.
        let state = single(query, "state").ok().flatten().map(str::to_owned);
        let mut request = Authorization {
            client_id: client.client_id.clone(),
            redirect_uri_given: single(query, "redirect_uri").ok().flatten().is_some(),
            redirect_uri,
            state: state.filter(|s| s.len() <= MAX_STATE),
            code_challenge: String::new(),
            scopes: Vec::new(),
            resource: self.settings.default_resource.clone(),
        };
        let fail = |request: &Authorization, error: &str, description: &str| {
            self.error_redirect(request, error, description)
        };
        let checked = (|| -> Result<(), (&'static str, String)> {
            let get = |name: &str| single(query, name).map_err(|e| (e.error, e.description));
            if get("state")?.is_some_and(|s| s.len() > MAX_STATE) {
                return Err((
                    "invalid_request",
                    format!("`state` is longer than {MAX_STATE} characters"),
                ));
            }
            match get("response_type")? {
                Some("code") => {}
                Some(other) => {
                    return Err((
                        "unsupported_response_type",
                        format!("response type `{other}` is not supported (code)"),
                    ));
                }
                None => return Err(("invalid_request", "`response_type` is required".into())),
            }
            let challenge = get("code_challenge")?.ok_or((
                "invalid_request",
                "PKCE is required: `code_challenge` is missing".to_owned(),
            ))?;
            if !pkce_shaped(challenge) {
                return Err((
                    "invalid_request",
                    "`code_challenge` must be 43 to 128 characters of [A-Za-z0-9-._~]".into(),
                ));
            }
            if get("code_challenge_method")? != Some("S256") {
                return Err((
                    "invalid_request",
                    "`code_challenge_method` must be S256".into(),
                ));
            }
            request.code_challenge = challenge.to_owned();
            let asked: Vec<String> = get("scope")?
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if let Some(unknown) = asked.iter().find(|s| !self.settings.scopes.contains(s)) {
                return Err((
                    "invalid_scope",
                    format!(
                        "scope `{unknown}` is not offered (offered: {})",
                        self.settings.scopes.join(" ")
                    ),
                ));
            }
            request.scopes = if asked.is_empty() {
                self.settings.scopes.clone()
            } else {
                let mut unique = Vec::new();
                for scope in asked {
                    if !unique.contains(&scope) {
                        unique.push(scope);
                    }
                }
                unique
            };
            if let Some(resource) = get("resource")? {
                if !self.our_resource(resource) {
                    return Err((
                        "invalid_target",
                        format!("resource `{resource}` is not served by this gateway"),
                    ));
                }
                request.resource = resource.trim_end_matches('/').to_owned();
            }
            Ok(())
        })();
        match checked {
            Ok(()) => Ok((client, request)),
            Err((error, description)) => Err(fail(&request, error, &description)),
        }
    }

    /// Sends the browser to the identity provider for `request`.
    async fn to_upstream(
        &self,
        request: Authorization,
        remember_browser: Option<String>,
    ) -> BrowserStep {
        let step = async {
            let state = random_handle()?;
            let nonce = random_handle()?;
            let binding = random_handle()?;
            let verifier = Upstream::pkce_verifier();
            let location = self
                .upstream
                .authorize_url(&state, &nonce, &verifier, &request.scopes)
                .await?;
            // Stored under the state *and* this browser's binding: the provider's answer
            // opens it only in the browser that was sent there.
            let key = login_key(&state, Some(&binding));
            self.store
                .put_grant(
                    &key,
                    &StoredGrant {
                        kind: GrantKind::Pending,
                        family: key.clone(),
                        client_id: request.client_id.clone(),
                        payload: to_json(&Pending::Upstream {
                            request: request.clone(),
                            verifier,
                            nonce,
                        })?,
                        expires_at: self.later(self.settings.login_ttl),
                        used_at: None,
                        revoked: false,
                    },
                )
                .await?;
            Ok::<_, OAuthFailure>((
                location,
                gateway_domain::LoginBinding {
                    state,
                    value: binding,
                },
            ))
        };
        match step.await {
            Ok((location, binding)) => BrowserStep::Redirect {
                location,
                remember_browser,
                bind_login: Some(binding),
            },
            Err(failure) => {
                self.error_redirect(&request, "temporarily_unavailable", &failure.description)
            }
        }
    }

    /// The principal the provider's access token describes, checked by the `[auth]`
    /// verifier exactly as a token sent straight to `/mcp` would be.
    async fn principal_from_access_token(
        &self,
        login: &super::upstream::UpstreamLogin,
    ) -> Result<StoredPrincipal, String> {
        let verifier = self
            .upstream_verifier
            .as_ref()
            .ok_or("no verifier of the provider's tokens is configured")?;
        let principal = verifier
            .verify(&login.access_token)
            .await
            .map_err(|e| e.to_string())?;
        Ok(StoredPrincipal {
            subject: principal.subject,
            issuer: principal.issuer,
            tenant: principal.tenant,
            roles: principal.roles,
        })
    }

    /// The principal of a login, from where `principal_from` says: the provider's
    /// access token (refused when the `[auth]` verifier refuses it), or the checked
    /// ID token's claims.
    async fn principal_of(
        &self,
        login: &super::upstream::UpstreamLogin,
    ) -> Result<StoredPrincipal, OAuthFailure> {
        if self.settings.principal_from == super::PrincipalSource::AccessToken {
            return self
                .principal_from_access_token(login)
                .await
                .map_err(|reason| {
                    tracing::warn!(%reason, "the identity provider's access token is refused");
                    OAuthFailure {
                        status: 403,
                        error: "access_denied",
                        description:
                            "the identity provider's access token is not accepted by this gateway"
                                .into(),
                    }
                });
        }
        let claims = &login.claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let roles = match claims.get(&self.settings.roles_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(joined)) => joined.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        Ok(StoredPrincipal {
            subject: text("sub").unwrap_or_default(),
            issuer: text("iss").unwrap_or_default(),
            tenant: text(&self.settings.tenant_claim),
            roles,
        })
    }

    /// Authenticates the client at the token or revocation endpoint.
    async fn token_client(
        &self,
        form: &[(String, String)],
        basic: Option<BasicCredentials>,
    ) -> Result<KnownClient, OAuthFailure> {
        let unauthorized = |description: &str| OAuthFailure {
            status: 401,
            error: "invalid_client",
            description: description.to_owned(),
        };
        let form_id = single(form, "client_id")?;
        let form_secret = single(form, "client_secret")?;
        let (client_id, secret) = match &basic {
            Some(basic) => {
                if form_id.is_some_and(|id| id != basic.client_id) {
                    return Err(OAuthFailure::bad(
                        "invalid_request",
                        "`client_id` differs from the client authenticated",
                    ));
                }
                if form_secret.is_some() {
                    return Err(OAuthFailure::bad(
                        "invalid_request",
                        "use one client authentication method, not two",
                    ));
                }
                (basic.client_id.as_str(), Some(basic.secret.as_str()))
            }
            None => (
                form_id.ok_or_else(|| {
                    OAuthFailure::bad("invalid_request", "`client_id` is required")
                })?,
                form_secret,
            ),
        };
        let client = self.clients.find(client_id).await.map_err(|e| {
            if e.status == 401 {
                unauthorized(&e.description)
            } else {
                e
            }
        })?;
        if let Some(expected) = &client.secret_sha256 {
            let given = secret
                .ok_or_else(|| unauthorized("this client must authenticate with its secret"))?;
            let given = hex(&Sha256::digest(given.as_bytes()));
            // Digests are compared, so the time taken says nothing about the secret.
            if given != *expected {
                return Err(unauthorized("the client secret is wrong"));
            }
        }
        Ok(client)
    }

    /// Tokens for `session`: a new access token, and a refresh token of `family` when
    /// the client refreshes.
    async fn tokens(
        &self,
        client: &KnownClient,
        session: &Session,
        family: &str,
    ) -> Result<Value, OAuthFailure> {
        let principal = Principal {
            subject: session.principal.subject.clone(),
            issuer: session.principal.issuer.clone(),
            tenant: session.principal.tenant.clone(),
            roles: session.principal.roles.clone(),
            scopes: session.scopes.clone(),
            client_id: Some(client.client_id.clone()),
            resource: Some(session.resource.clone()),
        };
        let access = self
            .signer
            .issue(
                &principal,
                &client.client_id,
                &session.resource,
                &session.scopes,
            )
            .await?;
        let mut response = json!({
            "access_token": access.token,
            "token_type": "Bearer",
            "expires_in": access.expires_in,
            "scope": session.scopes.join(" "),
        });
        if client.refreshes() && session.login_expires_at > Self::now() {
            let refresh = random_handle()?;
            let stored = Session {
                redirect_uri: String::new(),
                code_challenge: String::new(),
                scopes: session.granted().to_vec(),
                ..session.clone()
            };
            self.store
                .put_grant(
                    &digest(&refresh),
                    &StoredGrant {
                        kind: GrantKind::Refresh,
                        family: family.to_owned(),
                        client_id: client.client_id.clone(),
                        payload: to_json(&stored)?,
                        expires_at: session.login_expires_at,
                        used_at: None,
                        revoked: false,
                    },
                )
                .await?;
            // A reuse detected while this token was being made revokes it too.
            if self.store.family_revoked(family).await? {
                self.store.revoke_family(family).await?;
                return Err(invalid_grant(
                    "this login was revoked while the token was being issued",
                ));
            }
            response["refresh_token"] = refresh.into();
        }
        Ok(response)
    }

    async fn code_grant(
        &self,
        client: &KnownClient,
        form: &[(String, String)],
    ) -> Result<Value, OAuthFailure> {
        let code = required(form, "code")?;
        let verifier = required(form, "code_verifier").map_err(|_| {
            OAuthFailure::bad(
                "invalid_request",
                "PKCE is required: `code_verifier` is missing",
            )
        })?;
        let redirect_uri = single(form, "redirect_uri")?;
        let resource = single(form, "resource")?;
        let grant = match self
            .store
            .take_grant(GrantKind::Code, &digest(code), Self::now())
            .await?
        {
            Taken::Fresh(grant) => grant,
            Taken::Spent(grant) => return Err(self.replayed(&grant, "authorization code").await),
            Taken::Missing => {
                return Err(invalid_grant(
                    "the authorization code is unknown or expired",
                ));
            }
        };
        let session: Session = from_json(&grant.payload)?;
        if session.client_id != client.client_id {
            self.store.revoke_family(&grant.family).await?;
            return Err(invalid_grant(
                "the authorization code was issued to another client",
            ));
        }
        if !pkce_shaped(verifier) || !pkce_matches(verifier, &session.code_challenge) {
            return Err(invalid_grant(
                "`code_verifier` does not match the code challenge",
            ));
        }
        match redirect_uri {
            Some(uri) if uri != session.redirect_uri => {
                return Err(invalid_grant(
                    "`redirect_uri` is not the one of the authorize request",
                ));
            }
            None if session.redirect_uri_given => {
                return Err(OAuthFailure::bad(
                    "invalid_request",
                    "`redirect_uri` is required: the authorize request named one",
                ));
            }
            _ => {}
        }
        if resource.is_some_and(|r| r.trim_end_matches('/') != session.resource) {
            return Err(OAuthFailure::bad(
                "invalid_target",
                "`resource` is not the one of the authorize request",
            ));
        }
        self.tokens(client, &session, &grant.family).await
    }

    async fn refresh_grant(
        &self,
        client: &KnownClient,
        form: &[(String, String)],
    ) -> Result<Value, OAuthFailure> {
        let token = required(form, "refresh_token")?;
        let handle = digest(token);
        let asked_scope = single(form, "scope")?;
        let asked_resource = single(form, "resource")?;
        // Used at once (exactly one of any concurrent uses wins); given back below if the
        // provider cannot answer, so a provider that is down does not cost the client its
        // refresh token.
        let grant = match self
            .store
            .take_grant(GrantKind::Refresh, &handle, Self::now())
            .await?
        {
            Taken::Fresh(grant) => grant,
            Taken::Spent(grant) => return Err(self.replayed(&grant, "refresh token").await),
            Taken::Missing => {
                return Err(invalid_grant("the refresh token is unknown or expired"));
            }
        };
        let mut session: Session = from_json(&grant.payload)?;
        if session.client_id != client.client_id {
            self.store.revoke_family(&grant.family).await?;
            return Err(invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        let give_back = |failure: OAuthFailure| async {
            let restored = StoredGrant {
                used_at: None,
                ..grant.clone()
            };
            self.store.put_grant(&handle, &restored).await?;
            Err::<Value, _>(failure)
        };
        if let Some(scope) = asked_scope {
            let asked: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
            if let Some(extra) = asked.iter().find(|s| !session.granted().contains(s)) {
                return give_back(OAuthFailure::bad(
                    "invalid_scope",
                    format!("scope `{extra}` was not granted to this login"),
                ))
                .await;
            }
            session.granted_scopes = session.granted().to_vec();
            session.scopes = asked;
        } else {
            session.scopes = session.granted().to_vec();
        }
        if let Some(resource) = asked_resource
            && resource.trim_end_matches('/') != session.resource
        {
            return give_back(OAuthFailure::bad(
                "invalid_target",
                "`resource` is not the one this login's tokens are for",
            ))
            .await;
        }
        if self.settings.revalidate_on_refresh
            && let Some(upstream_refresh) = session.upstream_refresh_token.clone()
        {
            match self
                .upstream
                .refresh(&upstream_refresh, session.granted())
                .await
            {
                Ok(login) => match self.principal_of_refresh(&login, &session.principal).await {
                    Ok(principal) => {
                        session.principal = principal;
                        session.upstream_access_token = login.access_token;
                        if login.refresh_token.is_some() {
                            session.upstream_refresh_token = login.refresh_token;
                        }
                    }
                    Err(failure) => return self.end_login(client, &grant.family, failure).await,
                },
                Err(failure) if failure.error == "invalid_grant" => {
                    return self.end_login(client, &grant.family, failure).await;
                }
                Err(failure) => return give_back(failure).await,
            }
        }
        self.tokens(client, &session, &grant.family).await
    }

    /// Uses a pending login step (single use): its content, or the error page saying
    /// `unknown` when there is none to use.
    async fn take_pending(&self, key: &str, unknown: &str) -> Result<Pending, BrowserStep> {
        match self
            .store
            .take_grant(GrantKind::Pending, key, Self::now())
            .await
        {
            Ok(Taken::Fresh(grant)) => {
                from_json::<Pending>(&grant.payload).map_err(BrowserStep::Refuse)
            }
            Ok(_) => Err(refuse(400, "invalid_request", unknown)),
            Err(error) => Err(BrowserStep::Refuse(error.into())),
        }
    }

    /// The provider no longer vouches for a login: every refresh token of it is revoked.
    async fn end_login(
        &self,
        client: &KnownClient,
        family: &str,
        failure: OAuthFailure,
    ) -> Result<Value, OAuthFailure> {
        let revoked = self.store.revoke_family(family).await?;
        tracing::info!(client_id = %client.client_id, revoked, reason = %failure, "the identity provider no longer accepts a login: its tokens are revoked");
        self.audit_client(
            "oauth/revoke",
            &client.client_id,
            AuditOutcome::Denied,
            Some(400),
        )
        .await;
        Err(invalid_grant(
            "the identity provider no longer accepts this login: sign in again",
        ))
    }

    /// The principal after the provider renewed a login, read from the same source as
    /// at the login: the new access token, or the new ID token when it sent one (else
    /// the login's). The subject must not change.
    async fn principal_of_refresh(
        &self,
        login: &super::upstream::UpstreamLogin,
        before: &StoredPrincipal,
    ) -> Result<StoredPrincipal, OAuthFailure> {
        let principal = match self.settings.principal_from {
            super::PrincipalSource::AccessToken => self.principal_of(login).await?,
            super::PrincipalSource::IdToken if login.claims.is_object() => {
                self.principal_of(login).await?
            }
            super::PrincipalSource::IdToken => before.clone(),
        };
        if principal.subject != before.subject {
            return Err(invalid_grant("the identity provider names another user"));
        }
        Ok(principal)
    }

    /// A code or refresh token used a second time: every token of its login is
    /// revoked, and the replay audited.
    async fn replayed(&self, grant: &StoredGrant, what: &str) -> OAuthFailure {
        match self.store.revoke_family(&grant.family).await {
            Ok(revoked) => {
                tracing::warn!(client_id = %grant.client_id, revoked, "{what} replayed: the login's tokens are revoked");
            }
            Err(error) => return error.into(),
        }
        self.audit_client(
            "oauth/replay",
            &grant.client_id,
            AuditOutcome::Denied,
            Some(400),
        )
        .await;
        invalid_grant(format!(
            "the {what} was already used or revoked; every refresh token of its login is revoked"
        ))
    }
}

#[async_trait]
impl AuthorizationServer for Facade {
    fn metadata(&self) -> Value {
        let issuer = &self.settings.issuer;
        let auth_methods = ["none", "client_secret_basic", "client_secret_post"];
        let mut metadata = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/oauth/authorize"),
            "token_endpoint": format!("{issuer}/oauth/token"),
            "revocation_endpoint": format!("{issuer}/oauth/revoke"),
            "jwks_uri": format!("{issuer}/oauth/jwks"),
            "scopes_supported": self.settings.scopes,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "client_id_metadata_document_supported": self.settings.metadata_documents,
        });
        if self.settings.dynamic_registration {
            metadata["registration_endpoint"] = format!("{issuer}/oauth/register").into();
        }
        metadata
    }

    async fn jwks(&self) -> Result<Value, OAuthFailure> {
        self.signer.jwks_document().await
    }

    async fn register(&self, body: &[u8], meta: &RequestMeta) -> Result<Value, OAuthFailure> {
        REQUEST
            .scope(meta.clone(), async move {
                let registered = self.clients.register(body).await?;
                self.audit_client(
                    "oauth/register",
                    registered["client_id"].as_str().unwrap_or_default(),
                    AuditOutcome::Ok,
                    None,
                )
                .await;
                Ok(registered)
            })
            .await
    }

    async fn authorize(&self, query: &[(String, String)], cookies: &BrowserCookies) -> BrowserStep {
        let (client, request) = match self.checked_authorization(query).await {
            Ok(checked) => checked,
            Err(step) => return step,
        };
        let now = Self::now();
        if let Some(browser) = &cookies.browser {
            match self
                .store
                .grant(
                    GrantKind::Consent,
                    &Self::consent_digest(browser, &request),
                    now,
                )
                .await
            {
                Ok(Some(_)) => return self.to_upstream(request, None).await,
                Ok(None) => {}
                Err(error) => {
                    return self.error_redirect(
                        &request,
                        "temporarily_unavailable",
                        &OAuthFailure::from(error).description,
                    );
                }
            }
        }
        let step = async {
            let handle = random_handle()?;
            let csrf = random_handle()?;
            self.store
                .put_grant(
                    &digest(&handle),
                    &StoredGrant {
                        kind: GrantKind::Pending,
                        family: digest(&handle),
                        client_id: request.client_id.clone(),
                        payload: to_json(&Pending::Consent {
                            request: request.clone(),
                            csrf_digest: digest(&csrf),
                        })?,
                        expires_at: self.later(self.settings.login_ttl),
                        used_at: None,
                        revoked: false,
                    },
                )
                .await?;
            Ok::<_, OAuthFailure>(ConsentRequest {
                request: handle,
                csrf,
                client_name: client.display_name(),
                client_id: client.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                scopes: request.scopes.clone(),
                self_registered: client.source == ClientSource::Registered,
            })
        };
        match step.await {
            Ok(consent) => BrowserStep::Consent(consent),
            Err(failure) => {
                self.error_redirect(&request, "temporarily_unavailable", &failure.description)
            }
        }
    }

    async fn consent(&self, form: &[(String, String)], cookies: &BrowserCookies) -> BrowserStep {
        let (handle, csrf, decision) = match (
            required(form, "request"),
            required(form, "csrf"),
            required(form, "decision"),
        ) {
            (Ok(h), Ok(c), Ok(d)) => (h, c, d),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return BrowserStep::Refuse(e),
        };
        let pending = self
            .take_pending(
                &digest(handle),
                "this consent request is unknown, expired or already answered: start the login again",
            )
            .await;
        let Pending::Consent {
            request,
            csrf_digest,
        } = (match pending {
            Ok(pending) => pending,
            Err(step) => return step,
        })
        else {
            return refuse(400, "invalid_request", "this is not a consent request");
        };
        let cookie_matches = cookies.csrf.as_deref() == Some(csrf);
        if !cookie_matches || digest(csrf) != csrf_digest {
            return refuse(
                403,
                "access_denied",
                "the consent form was not submitted from the browser it was shown in",
            );
        }
        match decision {
            "approve" => {
                let (browser, remember) = match &cookies.browser {
                    Some(browser) => (browser.clone(), None),
                    None => match random_handle() {
                        Ok(new) => (new.clone(), Some(new)),
                        Err(e) => return BrowserStep::Refuse(e),
                    },
                };
                let consent = StoredGrant {
                    kind: GrantKind::Consent,
                    family: digest(&browser),
                    client_id: request.client_id.clone(),
                    payload: "{}".into(),
                    expires_at: self.later(self.settings.consent_ttl),
                    used_at: None,
                    revoked: false,
                };
                if let Err(error) = self
                    .store
                    .put_grant(&Self::consent_digest(&browser, &request), &consent)
                    .await
                {
                    return self.error_redirect(
                        &request,
                        "temporarily_unavailable",
                        &OAuthFailure::from(error).description,
                    );
                }
                tracing::info!(client_id = %request.client_id, scopes = %request.scopes.join(" "), "OAuth consent given");
                self.to_upstream(request, remember).await
            }
            "deny" => self.error_redirect(&request, "access_denied", "the user denied the request"),
            other => refuse(
                400,
                "invalid_request",
                format!("`decision` must be approve or deny, not `{other}`"),
            ),
        }
    }

    async fn callback(
        &self,
        query: &[(String, String)],
        cookies: &BrowserCookies,
        meta: &RequestMeta,
    ) -> BrowserStep {
        REQUEST
            .scope(meta.clone(), async move {
        let state = match required(query, "state") {
            Ok(state) => state,
            Err(e) => return BrowserStep::Refuse(e),
        };
        let pending = self
            .take_pending(
                &login_key(state, cookies.login.as_deref()),
                "the login's state is unknown, expired, already used or was begun in another browser (state mismatch): start the login again",
            )
            .await;
        let Pending::Upstream {
            request,
            verifier,
            nonce,
        } = (match pending {
            Ok(pending) => pending,
            Err(step) => return step,
        })
        else {
            return refuse(400, "invalid_request", "the state is not a login's");
        };
        if let Ok(Some(error)) = single(query, "error") {
            let description = single(query, "error_description")
                .ok()
                .flatten()
                .unwrap_or("");
            let description: String =
                format!("the identity provider answered {error}: {description}")
                    .chars()
                    .take(500)
                    .collect();
            return self.error_redirect(&request, "access_denied", &description);
        }
        let code = match required(query, "code") {
            Ok(code) => code,
            Err(e) => return self.error_redirect(&request, "server_error", &e.description),
        };
        let login = match self.upstream.exchange(code, &verifier, &nonce).await {
            Ok(login) => login,
            Err(failure) => {
                tracing::warn!(error = %failure, "login at the identity provider failed");
                return self.error_redirect(&request, failure.error, &failure.description);
            }
        };
        let principal = match self.principal_of(&login).await {
            Ok(principal) => principal,
            Err(failure) => {
                tracing::warn!(error = %failure, "login refused");
                self.audit_client(
                    "oauth/login",
                    &request.client_id,
                    AuditOutcome::Denied,
                    Some(i64::from(failure.status)),
                )
                .await;
                return self.error_redirect(&request, failure.error, &failure.description);
            }
        };
        if principal.subject.is_empty() {
            return self.error_redirect(
                &request,
                "access_denied",
                "the identity provider named no subject",
            );
        }
        let mut scopes = request.scopes.clone();
        if let Some(granted) = &login.scopes {
            let granted: Vec<&str> = granted
                .iter()
                .map(|s| self.upstream.gateway_scope(s))
                .collect();
            scopes.retain(|s| granted.contains(&s.as_str()));
        }
        let step = async {
            let code = random_handle()?;
            let family = digest(&random_handle()?);
            let session = Session {
                client_id: request.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                code_challenge: request.code_challenge.clone(),
                redirect_uri_given: request.redirect_uri_given,
                granted_scopes: scopes.clone(),
                scopes,
                resource: request.resource.clone(),
                principal,
                login_expires_at: self.later(self.settings.refresh_token_ttl),
                upstream_access_token: login.access_token,
                upstream_refresh_token: login.refresh_token,
            };
            self.store
                .put_grant(
                    &digest(&code),
                    &StoredGrant {
                        kind: GrantKind::Code,
                        family,
                        client_id: request.client_id.clone(),
                        payload: to_json(&session)?,
                        expires_at: self.later(self.settings.code_ttl),
                        used_at: None,
                        revoked: false,
                    },
                )
                .await?;
            tracing::info!(client_id = %request.client_id, subject = %session.principal.subject, "OAuth login completed");
            self.store
                .touch_client(&request.client_id, Self::now())
                .await?;
            self.audit(Audited {
                action: "oauth/login",
                client_id: &request.client_id,
                subject: Some(&session.principal.subject),
                tenant: session.principal.tenant.as_deref(),
                roles: &session.principal.roles,
                outcome: AuditOutcome::Ok,
                error_code: None,
            })
            .await;
            Ok::<_, OAuthFailure>(code)
        };
        match step.await {
            Ok(code) => BrowserStep::Redirect {
                location: with_query(
                    &request.redirect_uri,
                    &[
                        ("code", Some(&code)),
                        ("state", request.state.as_deref()),
                        ("iss", Some(&self.settings.issuer)),
                    ],
                ),
                remember_browser: None,
                bind_login: None,
            },
            Err(failure) => {
                self.error_redirect(&request, "temporarily_unavailable", &failure.description)
            }
        }
                })
            .await
    }

    async fn token(
        &self,
        form: &[(String, String)],
        basic: Option<BasicCredentials>,
        meta: &RequestMeta,
    ) -> Result<Value, OAuthFailure> {
        REQUEST
            .scope(meta.clone(), async move {
        let grant_type = required(form, "grant_type")?;
        let client = self.token_client(form, basic).await?;
        match grant_type {
            "authorization_code" => self.code_grant(&client, form).await,
            "refresh_token" if client.refreshes() => self.refresh_grant(&client, form).await,
            "refresh_token" => Err(OAuthFailure::bad(
                "unauthorized_client",
                "this client did not register the refresh_token grant",
            )),
            other => Err(OAuthFailure::bad(
                "unsupported_grant_type",
                format!(
                    "grant type `{other}` is not supported (authorization_code, refresh_token)"
                ),
            )),
        }
                })
            .await
    }

    async fn revoke(
        &self,
        form: &[(String, String)],
        basic: Option<BasicCredentials>,
        meta: &RequestMeta,
    ) -> Result<(), OAuthFailure> {
        REQUEST
            .scope(meta.clone(), async move {
        let token = required(form, "token")?;
        let client = self.token_client(form, basic).await?;
        // Access tokens are short-lived JWTs and cannot be recalled; an unknown token
        // is answered like a revoked one (RFC 7009 §2.2).
        if let Some(grant) = self
            .store
            .grant(GrantKind::Refresh, &digest(token), Self::now())
            .await?
            && grant.client_id == client.client_id
        {
            let revoked = self.store.revoke_family(&grant.family).await?;
            tracing::info!(client_id = %client.client_id, revoked, "OAuth refresh token revoked by its client");
            self.audit_client("oauth/revoke", &client.client_id, AuditOutcome::Ok, None)
                .await;
        }
        Ok(())
                })
            .await
    }

    async fn rotate_signing_key(&self, retire_previous: bool) -> Result<Vec<String>, OAuthFailure> {
        self.signer.rotate(retire_previous).await?;
        if retire_previous {
            self.announce_withdrawal();
        }
        let published = self.signer.jwks_document().await?;
        Ok(published["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}
