//! `JwtVerifier` against a real issuer on loopback: OIDC discovery and a JWKS
//! endpoint served over HTTP, tokens signed with test keys. Every negative case of
//! the issue is a test here; the HTTP side (401 and its header) is tested with the
//! gateway.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{App, HttpResponse, HttpServer, web};
use gateway_auth::{AuthSettings, JwtVerifier};
use gateway_domain::{AuthError, TokenVerifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const RSA_A: &[u8] = include_bytes!("keys/rsa-a.pem");
const RSA_B: &[u8] = include_bytes!("keys/rsa-b.pem");
const EC: &[u8] = include_bytes!("keys/ec-p256.pk8.pem");
const RSA_A_PUBLIC: &[u8] = include_bytes!("keys/rsa-a.pub.pem");
const JWKS_A: &str = include_str!("keys/jwks-a.json");
const JWKS_B: &str = include_str!("keys/jwks-b.json");
const AUDIENCE: &str = "api://mcp-gateway";

/// A stand-in identity provider: discovery document and a switchable key set.
struct Issuer {
    url: String,
    jwks: Arc<Mutex<&'static str>>,
    fetches: Arc<AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
}

async fn issuer() -> Issuer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    let jwks = Arc::new(Mutex::new(JWKS_A));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (base, keys, counter) = (url.clone(), jwks.clone(), fetches.clone());
    let server = HttpServer::new(move || {
        let discovery = json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "jwks_uri": format!("{base}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        });
        let (keys, counter) = (keys.clone(), counter.clone());
        App::new()
            .route(
                "/.well-known/openid-configuration",
                web::get().to(move || {
                    let discovery = discovery.clone();
                    async move { HttpResponse::Ok().json(discovery) }
                }),
            )
            .route(
                "/jwks",
                web::get().to(move || {
                    let (keys, counter) = (keys.clone(), counter.clone());
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let body = *keys.lock().expect("lock");
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(body)
                    }
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Issuer {
        url,
        jwks,
        fetches,
        handle,
    }
}

/// What a refused token's error must look like.
type Expect = fn(&AuthError) -> bool;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn claims(issuer: &str) -> Value {
    json!({
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "user-1",
        "exp": now() + 300,
        "nbf": now() - 10,
        "tid": "tenant-1",
        "roles": ["admin", "reader"],
        "scp": "mcp.call mcp.read",
        "azp": "client-7",
    })
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &[u8], claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(key).expect("ec key"),
        _ => EncodingKey::from_rsa_pem(key).expect("rsa key"),
    };
    encode(&header, claims, &key).expect("signed")
}

fn verifier(issuer: &Issuer) -> JwtVerifier {
    let mut settings = AuthSettings::oidc(&issuer.url, vec![AUDIENCE.to_owned()]);
    settings.leeway = Duration::from_secs(5);
    settings.refresh_interval = Duration::from_millis(200);
    JwtVerifier::new(settings).expect("verifier")
}

#[actix_web::test]
async fn a_valid_token_gives_its_principal() {
    let issuer = issuer().await;
    let verifier = verifier(&issuer);
    let token = sign(Algorithm::RS256, Some("key-a"), RSA_A, &claims(&issuer.url));
    let principal = verifier.verify(&token).await.expect("valid");
    assert_eq!(principal.subject, "user-1");
    assert_eq!(principal.tenant.as_deref(), Some("tenant-1"));
    assert_eq!(principal.roles, ["admin", "reader"]);
    assert_eq!(principal.scopes, ["mcp.call", "mcp.read"]);
    assert_eq!(principal.client_id.as_deref(), Some("client-7"));
    // ES256 and RFC 9068 `at+jwt` are accepted too, and `scope` as an RFC 9068 claim.
    let mut rfc9068 = claims(&issuer.url);
    rfc9068["scope"] = json!("a b");
    rfc9068.as_object_mut().expect("object").remove("scp");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("key-ec".into());
    header.typ = Some("at+jwt".into());
    let token = encode(
        &header,
        &rfc9068,
        &EncodingKey::from_ec_pem(EC).expect("ec"),
    )
    .expect("signed");
    assert_eq!(
        verifier.verify(&token).await.expect("at+jwt").scopes,
        ["a", "b"]
    );
    // Keys are cached: many verifications, no further fetch.
    let fetched = issuer.fetches.load(Ordering::SeqCst);
    let token = sign(Algorithm::RS256, Some("key-a"), RSA_A, &claims(&issuer.url));
    for _ in 0..50 {
        verifier.verify(&token).await.expect("valid");
    }
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), fetched);
    issuer.handle.stop(true).await;
}

#[actix_web::test]
async fn every_bad_token_is_refused_with_its_reason() {
    let issuer = issuer().await;
    let verifier = verifier(&issuer);
    let good = claims(&issuer.url);
    let with = |key: &str, value: Value| {
        let mut claims = good.clone();
        claims[key] = value;
        sign(Algorithm::RS256, Some("key-a"), RSA_A, &claims)
    };
    let cases: Vec<(&str, String, Expect)> = vec![
        ("missing", String::new(), |e| *e == AuthError::Missing),
        ("malformed", "not.a.jwt".into(), |e| {
            matches!(e, AuthError::Malformed(_))
        }),
        ("garbage", "%%%".into(), |e| {
            matches!(e, AuthError::Malformed(_))
        }),
        ("oversized", "a".repeat(20_000), |e| {
            matches!(e, AuthError::Malformed(_))
        }),
        ("expired", with("exp", json!(now() - 600)), |e| {
            *e == AuthError::Expired
        }),
        ("not yet valid", with("nbf", json!(now() + 600)), |e| {
            *e == AuthError::NotYetValid
        }),
        (
            "wrong issuer",
            with("iss", json!("https://evil.example")),
            |e| matches!(e, AuthError::Invalid(m) if m.contains("issuer")),
        ),
        (
            "wrong audience",
            with("aud", json!("api://other")),
            |e| matches!(e, AuthError::Invalid(m) if m.contains("audience")),
        ),
        (
            "no subject",
            with("sub", json!("")),
            |e| matches!(e, AuthError::Invalid(m) if m.contains("sub")),
        ),
        (
            "unknown kid",
            sign(Algorithm::RS256, Some("key-zz"), RSA_A, &good),
            |e| matches!(e, AuthError::Invalid(m) if m.contains("key id")),
        ),
        (
            "signed by another key",
            sign(Algorithm::RS256, Some("key-a"), RSA_B, &good),
            |e| matches!(e, AuthError::Invalid(m) if m.contains("signature")),
        ),
    ];
    for (name, token, expected) in cases {
        let error = verifier.verify(&token).await.expect_err(name);
        assert!(expected(&error), "{name}: {error:?}");
    }

    // alg: none, crafted by hand.
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    assert!(matches!(
        verifier.verify(&none).await,
        Err(AuthError::Invalid(_) | AuthError::Malformed(_))
    ));
    // HS256 with the issuer's public key as the HMAC secret (the classic confusion).
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("key-a".into());
    let confused = encode(&header, &good, &EncodingKey::from_secret(RSA_A_PUBLIC)).expect("hs256");
    let error = verifier.verify(&confused).await.expect_err("hmac");
    assert!(
        matches!(&error, AuthError::Invalid(m) if m.contains("not accepted")),
        "{error:?}"
    );
    // A tampered payload: the signature of one token on the claims of another.
    let token = sign(Algorithm::RS256, Some("key-a"), RSA_A, &good);
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut elevated = good.clone();
    elevated["roles"] = json!(["admin", "superuser"]);
    let forged_payload = b64(&elevated);
    parts[1] = &forged_payload;
    let error = verifier
        .verify(&parts.join("."))
        .await
        .expect_err("tampered");
    assert!(
        matches!(&error, AuthError::Invalid(m) if m.contains("signature")),
        "{error:?}"
    );
    // A foreign token type.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("key-a".into());
    header.typ = Some("logout+jwt".into());
    let logout = encode(
        &header,
        &good,
        &EncodingKey::from_rsa_pem(RSA_A).expect("key"),
    )
    .expect("signed");
    assert!(matches!(
        verifier.verify(&logout).await,
        Err(AuthError::Invalid(_))
    ));
    issuer.handle.stop(true).await;
}

#[actix_web::test]
async fn unknown_key_ids_cannot_hammer_the_issuer() {
    let issuer = issuer().await;
    let verifier = verifier(&issuer);
    let good = claims(&issuer.url);
    verifier
        .verify(&sign(Algorithm::RS256, Some("key-a"), RSA_A, &good))
        .await
        .expect("valid");
    let fetched = issuer.fetches.load(Ordering::SeqCst);
    let bogus: Vec<String> = (0..200)
        .map(|i| sign(Algorithm::RS256, Some(&format!("bogus-{i}")), RSA_A, &good))
        .collect();
    let started = std::time::Instant::now();
    for token in &bogus {
        verifier.verify(token).await.expect_err("unknown kid");
    }
    // At most one refresh per interval (200 ms here), however many bogus ids arrive.
    let allowed = 1 + started.elapsed().as_millis() / 200;
    let refreshes = issuer.fetches.load(Ordering::SeqCst) - fetched;
    assert!(
        (refreshes as u128) <= allowed,
        "{refreshes} refreshes for 200 bogus key ids in {:?}",
        started.elapsed()
    );
    issuer.handle.stop(true).await;
}

#[actix_web::test]
async fn a_rotated_key_is_picked_up_and_a_withdrawn_one_refused() {
    let issuer = issuer().await;
    let verifier = verifier(&issuer);
    let good = claims(&issuer.url);
    let old = sign(Algorithm::RS256, Some("key-a"), RSA_A, &good);
    verifier.verify(&old).await.expect("old key valid");
    // The issuer rotates: key-a withdrawn, key-b published.
    *issuer.jwks.lock().expect("lock") = JWKS_B;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let new = sign(Algorithm::RS256, Some("key-b"), RSA_B, &good);
    verifier
        .verify(&new)
        .await
        .expect("new key picked up without a restart");
    assert_eq!(verifier.keys().key_ids(), ["key-b", "key-ec"]);
    assert!(
        verifier.verify(&old).await.is_err(),
        "the withdrawn key no longer verifies"
    );
    issuer.handle.stop(true).await;
}

#[actix_web::test]
async fn required_scopes_and_tenants_are_enforced() {
    let issuer = issuer().await;
    let mut settings = AuthSettings::oidc(&issuer.url, vec![AUDIENCE.to_owned()]);
    settings.required_scopes = vec!["mcp.call".into(), "mcp.admin".into()];
    let verifier = JwtVerifier::new(settings.clone()).expect("verifier");
    let token = sign(Algorithm::RS256, Some("key-a"), RSA_A, &claims(&issuer.url));
    assert_eq!(
        verifier.verify(&token).await,
        Err(AuthError::InsufficientScope(vec!["mcp.admin".into()]))
    );
    settings.required_scopes.clear();
    settings.allowed_tenants = vec!["tenant-2".into()];
    let verifier = JwtVerifier::new(settings).expect("verifier");
    let error = verifier.verify(&token).await.expect_err("tenant");
    assert!(
        matches!(&error, AuthError::Invalid(m) if m.contains("tenant")),
        "{error:?}"
    );
    issuer.handle.stop(true).await;
}

#[actix_web::test]
async fn an_unreachable_issuer_is_unavailable_not_invalid() {
    let mut settings = AuthSettings::oidc("http://127.0.0.1:9", vec![AUDIENCE.to_owned()]);
    settings.fetch_timeout = Duration::from_secs(2);
    let verifier = JwtVerifier::new(settings).expect("verifier");
    let token = sign(
        Algorithm::RS256,
        Some("key-a"),
        RSA_A,
        &claims("http://127.0.0.1:9"),
    );
    assert!(matches!(
        verifier.verify(&token).await,
        Err(AuthError::Unavailable(_))
    ));
}
