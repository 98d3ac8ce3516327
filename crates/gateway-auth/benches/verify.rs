//! How long verifying an access token takes with a cached key (issue target: median
//! ≤ 20 µs): tokens never seen before (the signature is checked) and a token seen
//! before (its remembered verdict is used). Run by `cargo xtask bench`, or
//! `cargo bench -p gateway-auth --bench verify`. The keys are given inline, so nothing
//! but verification is measured.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gateway_auth::{AuthSettings, JwtVerifier, KeySource};
use gateway_domain::TokenVerifier;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

const RSA_A: &[u8] = include_bytes!("../tests/keys/rsa-a.pem");
const EC: &[u8] = include_bytes!("../tests/keys/ec-p256.pk8.pem");
const JWKS_A: &str = include_str!("../tests/keys/jwks-a.json");
const ISSUER: &str = "https://issuer.bench";
const AUDIENCE: &str = "api://bench";
/// Distinct tokens per algorithm (each verified once).
const FRESH: usize = 2_000;
/// Verifications of one token already seen.
const REPEATS: usize = 20_000;

fn token(alg: Algorithm, kid: &str, key: &EncodingKey, nonce: usize) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "exp": now + 3600, "jti": nonce,
        "roles": ["reader"], "scp": "mcp.call", "tid": "t", "azp": "c",
    });
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, &claims, key).expect("signed")
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "  {name}: median {:.1} µs, p99 {:.1} µs ({} tokens)",
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.len(),
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut settings = AuthSettings::oidc(ISSUER, vec![AUDIENCE.to_owned()]);
    settings.keys = KeySource::Inline(JWKS_A.to_owned());
    let verifier = JwtVerifier::new(settings).expect("verifier");
    let rsa = EncodingKey::from_rsa_pem(RSA_A).expect("rsa");
    let ec = EncodingKey::from_ec_pem(EC).expect("ec");
    println!("token verification with a cached key:");
    let fresh: Vec<(&str, Vec<String>)> = vec![
        (
            "RS256, each token new (signature checked)",
            (0..FRESH)
                .map(|i| token(Algorithm::RS256, "key-a", &rsa, i))
                .collect(),
        ),
        (
            "ES256, each token new (signature checked)",
            (0..FRESH)
                .map(|i| token(Algorithm::ES256, "key-ec", &ec, i))
                .collect(),
        ),
    ];
    let repeated = token(Algorithm::RS256, "key-a", &rsa, usize::MAX);
    runtime.block_on(async {
        verifier.verify(&repeated).await.expect("valid"); // loads the keys, remembers it
        for (name, tokens) in &fresh {
            let mut samples = Vec::with_capacity(tokens.len());
            for token in tokens {
                let started = Instant::now();
                let verified = verifier.verify(token).await;
                samples.push(started.elapsed());
                assert!(verified.is_ok());
            }
            report(name, samples);
        }
        let mut samples = Vec::with_capacity(REPEATS);
        for _ in 0..REPEATS {
            let started = Instant::now();
            let verified = verifier.verify(&repeated).await;
            samples.push(started.elapsed());
            assert!(verified.is_ok());
        }
        report("a token seen before (remembered verdict)", samples);
    });
    signature_floor(&repeated);
}

/// ring's RSA-2048 signature check alone, on the same token and key: the floor under
/// the first verification of an RS256 token on this machine (the rest is decoding,
/// claim checks and the verdict's fingerprint).
fn signature_floor(token: &str) {
    use base64::Engine as _;
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwks: serde_json::Value = serde_json::from_str(JWKS_A).expect("jwks");
    let key = &jwks["keys"][0];
    let component = |name: &str| {
        b64.decode(key[name].as_str().unwrap_or_default())
            .expect("base64url")
    };
    let (n, e) = (component("n"), component("e"));
    let (message, signature) = token.rsplit_once('.').expect("a JWT");
    let signature = b64.decode(signature).expect("base64url");
    let mut samples = Vec::with_capacity(FRESH);
    for _ in 0..FRESH {
        let started = Instant::now();
        let checked = RsaPublicKeyComponents { n: &n, e: &e }.verify(
            &RSA_PKCS1_2048_8192_SHA256,
            message.as_bytes(),
            &signature,
        );
        samples.push(started.elapsed());
        assert!(checked.is_ok());
    }
    report("RS256 signature check alone (ring, the floor)", samples);
}
