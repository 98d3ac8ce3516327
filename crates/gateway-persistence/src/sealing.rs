//! Upstream credentials at rest: every header and environment value of a registered
//! server is sealed with AES-256-GCM before it is written, as
//! `sealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`, with the header or
//! variable name as associated data (a sealed value cannot be moved to another key).
//! The key id is derived from the key, so a rotated key is found among the previous
//! ones; values written before sealing existed (plain text) are still read, and
//! [`crate::Store::seal_plaintext_secrets`] seals them.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

const PREFIX: &str = "sealed:v1:";

/// A 256-bit data key and its id.
struct DataKey {
    id: String,
    key: LessSafeKey,
}

impl DataKey {
    fn new(bytes: &[u8]) -> Result<Self, SealingError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealingError::KeyLength)?;
        let digest = Sha256::digest(bytes);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            id,
            key: LessSafeKey::new(unbound),
        })
    }
}

/// Why a key or a sealed value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealingError {
    /// The key is not base64 of exactly 32 bytes.
    #[error("a secrets key must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)")]
    KeyLength,
    /// A value was sealed with a key that is not configured.
    #[error("sealed with key `{0}`, which is neither secrets.key nor in secrets.previous_keys")]
    UnknownKey(String),
    /// The value is damaged, or was moved to another name.
    #[error("sealed value is damaged or does not belong to this name")]
    Damaged,
    /// The system's random source failed.
    #[error("no randomness available to seal a secret")]
    Random,
}

/// Seals and opens secret values with the current key; opens with previous keys too.
pub struct Sealer {
    current: DataKey,
    previous: Vec<DataKey>,
    random: SystemRandom,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key material never prints; the ids say which keys are loaded.
        f.debug_struct("Sealer")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Decodes a base64 (standard or URL-safe) 32-byte key.
pub fn decode_key(text: &str) -> Result<Vec<u8>, SealingError> {
    let text = text.trim();
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .map_err(|_| SealingError::KeyLength)?;
    if bytes.len() == 32 {
        Ok(bytes)
    } else {
        Err(SealingError::KeyLength)
    }
}

/// A fresh random key, base64-encoded (for a generated key file).
pub fn generate_key() -> Result<String, SealingError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SealingError::Random)?;
    Ok(STANDARD.encode(bytes))
}

impl Sealer {
    /// A sealer writing with `current` and also reading values of `previous` keys.
    pub fn new(current: &[u8], previous: &[Vec<u8>]) -> Result<Self, SealingError> {
        Ok(Self {
            current: DataKey::new(current)?,
            previous: previous
                .iter()
                .map(|k| DataKey::new(k))
                .collect::<Result<_, _>>()?,
            random: SystemRandom::new(),
        })
    }

    /// The id of the key new values are sealed with.
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `value`, bound to `name`.
    pub fn seal(&self, name: &str, value: &str) -> Result<String, SealingError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealingError::Random)?;
        let mut data = value.as_bytes().to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .map_err(|_| SealingError::Damaged)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&data);
        Ok(format!(
            "{PREFIX}{}:{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(blob)
        ))
    }

    /// Whether a stored value is sealed (values from before sealing are not).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    /// The plain value of a stored one: opened if sealed, as it is otherwise.
    pub fn open(&self, name: &str, stored: &str) -> Result<String, SealingError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, blob) = rest.split_once(':').ok_or(SealingError::Damaged)?;
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| SealingError::UnknownKey(id.to_owned()))?;
        let blob = URL_SAFE_NO_PAD
            .decode(blob)
            .map_err(|_| SealingError::Damaged)?;
        if blob.len() < NONCE_LEN {
            return Err(SealingError::Damaged);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealingError::Damaged)?;
        let mut data = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut data)
            .map_err(|_| SealingError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealingError::Damaged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Vec<u8> {
        vec![byte; 32]
    }

    #[test]
    fn seals_and_opens_without_showing_the_value() {
        let sealer = Sealer::new(&key(1), &[]).expect("key");
        let sealed = sealer.seal("x-api-key", "s3cret").expect("sealed");
        assert!(Sealer::is_sealed(&sealed) && !sealed.contains("s3cret"));
        assert_ne!(sealed, sealer.seal("x-api-key", "s3cret").expect("again"));
        assert_eq!(sealer.open("x-api-key", &sealed).expect("open"), "s3cret");
        assert!(!format!("{sealer:?}").contains("0101"));
    }

    #[test]
    fn a_value_moved_to_another_name_or_tampered_is_refused() {
        let sealer = Sealer::new(&key(1), &[]).expect("key");
        let sealed = sealer.seal("authorization", "Bearer t").expect("sealed");
        assert_eq!(sealer.open("x-other", &sealed), Err(SealingError::Damaged));
        let mut tampered = sealed.clone();
        let last = tampered.pop().expect("char");
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(
            sealer.open("authorization", &tampered),
            Err(SealingError::Damaged)
        );
        assert_eq!(
            sealer.open("authorization", "sealed:v1:nokey"),
            Err(SealingError::Damaged)
        );
    }

    #[test]
    fn rotation_reads_old_values_and_an_unknown_key_is_named() {
        let old = Sealer::new(&key(1), &[]).expect("old");
        let sealed = old.seal("token", "v").expect("sealed");
        let rotated = Sealer::new(&key(2), &[key(1)]).expect("rotated");
        assert_eq!(rotated.open("token", &sealed).expect("old key"), "v");
        assert_ne!(rotated.key_id(), old.key_id());
        let forgotten = Sealer::new(&key(2), &[]).expect("without the old key");
        assert_eq!(
            forgotten.open("token", &sealed),
            Err(SealingError::UnknownKey(old.key_id().to_owned()))
        );
    }

    #[test]
    fn plain_values_from_before_sealing_are_read_as_they_are() {
        let sealer = Sealer::new(&key(1), &[]).expect("key");
        assert_eq!(sealer.open("h", "plain").expect("plain"), "plain");
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert_eq!(decode_key("short"), Err(SealingError::KeyLength));
        assert_eq!(
            decode_key(&STANDARD.encode([7u8; 16])),
            Err(SealingError::KeyLength)
        );
        let generated = generate_key().expect("random");
        assert_eq!(decode_key(&generated).expect("valid").len(), 32);
        assert_eq!(
            decode_key(&URL_SAFE_NO_PAD.encode([9u8; 32])).expect("url-safe"),
            vec![9u8; 32]
        );
    }
}
