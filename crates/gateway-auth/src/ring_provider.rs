//! Signature verification through ring, which the process already carries for TLS:
//! RSA and ECDSA verification there is about ten times faster than the pure-Rust
//! crates jsonwebtoken uses by default (`cargo xtask bench` measures it), and it is
//! the step every request pays. Signing (only tests sign) and key utilities stay with
//! jsonwebtoken's RustCrypto provider.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self as ring_sig, RsaPublicKeyComponents, UnparsedPublicKey};

/// The public key as ring takes it.
enum PublicKey {
    /// RSA modulus and exponent (from a JWK).
    RsaComponents { n: Vec<u8>, e: Vec<u8> },
    /// A DER RSA public key or an uncompressed EC point.
    Der(Vec<u8>),
}

struct RingVerifier {
    algorithm: Algorithm,
    key: PublicKey,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let rsa: Option<&'static ring_sig::RsaParameters> = match self.algorithm {
            Algorithm::RS256 => Some(&ring_sig::RSA_PKCS1_2048_8192_SHA256),
            Algorithm::RS384 => Some(&ring_sig::RSA_PKCS1_2048_8192_SHA384),
            Algorithm::RS512 => Some(&ring_sig::RSA_PKCS1_2048_8192_SHA512),
            Algorithm::PS256 => Some(&ring_sig::RSA_PSS_2048_8192_SHA256),
            Algorithm::PS384 => Some(&ring_sig::RSA_PSS_2048_8192_SHA384),
            Algorithm::PS512 => Some(&ring_sig::RSA_PSS_2048_8192_SHA512),
            _ => None,
        };
        let outcome = match (rsa, &self.key) {
            (Some(parameters), PublicKey::RsaComponents { n, e }) => {
                RsaPublicKeyComponents { n, e }.verify(parameters, message, signature)
            }
            (Some(parameters), PublicKey::Der(der)) => {
                UnparsedPublicKey::new(parameters, der).verify(message, signature)
            }
            (None, PublicKey::Der(point)) => {
                let curve: &'static ring_sig::EcdsaVerificationAlgorithm = match self.algorithm {
                    Algorithm::ES256 => &ring_sig::ECDSA_P256_SHA256_FIXED,
                    Algorithm::ES384 => &ring_sig::ECDSA_P384_SHA384_FIXED,
                    _ => return Err(signature::Error::new()),
                };
                UnparsedPublicKey::new(curve, point).verify(message, signature)
            }
            (None, PublicKey::RsaComponents { .. }) => return Err(signature::Error::new()),
        };
        outcome.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn rust_crypto() -> &'static CryptoProvider {
    &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let supported = matches!(
        algorithm,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
    );
    if !supported {
        // HMAC and EdDSA: never accepted by the gateway's verifier; kept correct anyway.
        return (rust_crypto().verifier_factory)(algorithm, key);
    }
    if key.family() != algorithm.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let key = match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => PublicKey::RsaComponents {
            n: n.clone(),
            e: e.clone(),
        },
        DecodingKeyKind::SecretOrDer(der) => PublicKey::Der(der.clone()),
    };
    Ok(Box::new(RingVerifier {
        algorithm: *algorithm,
        key,
    }))
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    (rust_crypto().signer_factory)(algorithm, key)
}

fn rsa_from_private(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    (rust_crypto().key_utils.rsa_pub_components_from_private_key)(der)
}

fn rsa_from_public(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    (rust_crypto().key_utils.rsa_pub_components_from_public_key)(der)
}

fn ec_from_private(
    der: &[u8],
    algorithm: Algorithm,
) -> Result<(jsonwebtoken::jwk::EllipticCurve, Vec<u8>, Vec<u8>), Error> {
    (rust_crypto().key_utils.ec_pub_components_from_private_key)(der, algorithm)
}

fn ed_from_private(der: &[u8], curve: &jsonwebtoken::jwk::EllipticCurve) -> Result<Vec<u8>, Error> {
    (rust_crypto().key_utils.ed_pub_components_from_private_key)(der, curve)
}

fn digest(data: &[u8], hash: jsonwebtoken::jwk::ThumbprintHash) -> Result<Vec<u8>, Error> {
    (rust_crypto().key_utils.compute_digest)(data, hash)
}

/// jsonwebtoken's provider with ring doing the verification.
pub static RING_VERIFICATION: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_from_private,
        rsa_pub_components_from_public_key: rsa_from_public,
        ec_pub_components_from_private_key: ec_from_private,
        ed_pub_components_from_private_key: ed_from_private,
        compute_digest: digest,
    },
};

/// Makes ring verify signatures in this process (idempotent; if another provider was
/// chosen first, that one stays, and verification is as correct, only slower).
pub fn install() {
    if RING_VERIFICATION.install_default().is_err() {
        tracing::debug!("a jsonwebtoken crypto provider was installed already");
    }
}
