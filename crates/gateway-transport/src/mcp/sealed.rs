//! Self-describing MCP session ids, so any replica can serve any request of a
//! session with no shared store on the hot path.
//!
//! The `Mcp-Session-Id` a client gets is `v1.<key id>.<base64url(nonce ‖ ciphertext
//! ‖ tag)>`: AES-256-GCM over [`SessionClaims`] (the session's id inside the
//! gateway, whom and which endpoint it belongs to, the client's `initialize`
//! parameters, when it expires). A replica that does not hold the session opens the
//! id and rebuilds the session from it (rmcp replays the `initialize`). The key id
//! names the key, so ids sealed before a rotation still open with a previous key;
//! the key is used as configured (no per-request derivation).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version prefix of every sealed id.
const PREFIX: &str = "v1";

/// Largest sealed id accepted (an id is a header; a bigger one is not ours).
pub const MAX_SEALED_LEN: usize = 8192;

/// Largest `initialize` parameters carried whole; bigger ones are carried without
/// their `experimental` capabilities and client extras.
const MAX_INIT_BYTES: usize = 4096;

/// What a sealed session id says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The session's id inside the gateway (rmcp's), the same on every replica.
    pub rid: String,
    /// Who opened it ([`super::guard`]'s caller key): only they may use it.
    pub sub: String,
    /// The endpoint path it was opened on (`/mcp`, `/mcp/servers/x`…).
    pub ep: String,
    /// The client's `initialize` parameters (protocol version, capabilities, client).
    pub init: serde_json::Value,
    /// Unix seconds: sealed at.
    pub iat: i64,
    /// Unix seconds: unusable after.
    pub exp: i64,
}

/// Largest `initialize` parameters a session id carries after trimming; bigger ones
/// are refused (the id would not fit a header).
const MAX_CARRIED_INIT: usize = 6144;

/// The `initialize` parameters a session id carries: whole up to [`MAX_INIT_BYTES`];
/// over it only the protocol version, the standard capabilities and the client's
/// name and version; `None` when even that is over [`MAX_CARRIED_INIT`].
pub fn carried_init(init: serde_json::Value) -> Option<serde_json::Value> {
    let size = |v: &serde_json::Value| serde_json::to_vec(v).map_or(usize::MAX, |v| v.len());
    if size(&init) <= MAX_INIT_BYTES {
        return Some(init);
    }
    let mut capabilities = init
        .get("capabilities")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(map) = capabilities.as_object_mut() {
        map.remove("experimental");
        map.remove("extensions");
    }
    let client = init.get("clientInfo");
    let trimmed = serde_json::json!({
        "protocolVersion": init.get("protocolVersion"),
        "capabilities": capabilities,
        "clientInfo": {
            "name": client.and_then(|c| c.get("name")).cloned().unwrap_or_default(),
            "version": client.and_then(|c| c.get("version")).cloned().unwrap_or_default(),
        },
    });
    (size(&trimmed) <= MAX_CARRIED_INIT).then_some(trimmed)
}

/// Why a session id was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not a sealed id of this gateway (wrong shape, damaged, forged, or too big).
    #[error("not a session id of this gateway")]
    Malformed,
    /// Sealed with a key that is neither the current one nor a previous one.
    #[error("sealed with an unknown key")]
    UnknownKey,
    /// Past its expiry.
    #[error("expired")]
    Expired,
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a session key must be 32 bytes")]
pub struct KeyLength;

struct SessionKey {
    id: String,
    key: LessSafeKey,
}

impl SessionKey {
    fn new(bytes: &[u8]) -> Result<Self, KeyLength> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| KeyLength)?;
        let digest = Sha256::digest(bytes);
        Ok(Self {
            id: digest[..4].iter().map(|b| format!("{b:02x}")).collect(),
            key: LessSafeKey::new(unbound),
        })
    }
}

/// Seals and opens session ids with the current key; opens with previous keys too.
pub struct SessionSealer {
    current: SessionKey,
    previous: Vec<SessionKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for SessionSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSealer")
            .field("key_id", &self.current.id)
            .field("previous", &self.previous.len())
            .finish()
    }
}

fn aad(key_id: &str) -> String {
    format!("mcp-session:{PREFIX}:{key_id}")
}

impl SessionSealer {
    /// A sealer over the raw 32-byte `current` key and the `previous` ones.
    pub fn new(current: &[u8], previous: &[Vec<u8>]) -> Result<Self, KeyLength> {
        Ok(Self {
            current: SessionKey::new(current)?,
            previous: previous
                .iter()
                .map(|k| SessionKey::new(k))
                .collect::<Result<_, _>>()?,
            random: SystemRandom::new(),
        })
    }

    /// The current key's id (what `/api/v1/admin` and the logs may show).
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `claims` into a header-safe id.
    pub fn seal(&self, claims: &SessionClaims) -> Result<String, String> {
        let mut buffer = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| "no randomness available to seal a session id".to_owned())?;
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(&self.current.id).as_bytes()),
                &mut buffer,
            )
            .map_err(|_| "cannot seal a session id".to_owned())?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&buffer);
        Ok(format!(
            "{PREFIX}.{}.{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(sealed)
        ))
    }

    /// Opens a sealed id and checks it has not expired at `now` (unix seconds).
    pub fn open(&self, sealed: &str, now: i64) -> Result<SessionClaims, OpenError> {
        if sealed.len() > MAX_SEALED_LEN {
            return Err(OpenError::Malformed);
        }
        let mut parts = sealed.splitn(3, '.');
        let (Some(PREFIX), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(OpenError::Malformed);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or(OpenError::UnknownKey)?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| OpenError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(OpenError::Malformed);
        }
        let mut ciphertext = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| OpenError::Malformed)?;
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(aad(key_id).as_bytes()), &mut ciphertext)
            .map_err(|_| OpenError::Malformed)?;
        let claims: SessionClaims =
            serde_json::from_slice(plain).map_err(|_| OpenError::Malformed)?;
        if claims.exp <= now {
            return Err(OpenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> SessionClaims {
        SessionClaims {
            rid: "4b0c".into(),
            sub: "subject:alice".into(),
            ep: "/mcp".into(),
            init: serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}),
            iat: 100,
            exp: 200,
        }
    }

    #[test]
    fn a_sealed_id_opens_to_its_claims_until_it_expires() {
        let sealer = SessionSealer::new(&[7; 32], &[]).expect("test value");
        let id = sealer.seal(&claims()).expect("test value");
        assert!(id.starts_with(&format!("v1.{}.", sealer.key_id())));
        assert!(
            id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "visible ASCII only: {id}"
        );
        assert_eq!(sealer.open(&id, 150).expect("test value"), claims());
        assert_eq!(sealer.open(&id, 200), Err(OpenError::Expired));
        // Two seals of the same claims differ (fresh nonce).
        assert_ne!(sealer.seal(&claims()).expect("test value"), id);
    }

    #[test]
    fn a_rotated_key_still_opens_old_ids_and_an_unknown_key_does_not() {
        let old = SessionSealer::new(&[1; 32], &[]).expect("test value");
        let id = old.seal(&claims()).expect("test value");
        let rotated = SessionSealer::new(&[2; 32], &[vec![1; 32]]).expect("test value");
        assert_eq!(rotated.open(&id, 150).expect("test value"), claims());
        let other = SessionSealer::new(&[3; 32], &[]).expect("test value");
        assert_eq!(other.open(&id, 150), Err(OpenError::UnknownKey));
    }

    #[test]
    fn forged_damaged_and_hostile_ids_are_refused() {
        let sealer = SessionSealer::new(&[7; 32], &[]).expect("test value");
        let id = sealer.seal(&claims()).expect("test value");
        let kid = sealer.key_id();
        let mut flipped = id.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("test value");
        let huge = format!("v1.{kid}.{}", "A".repeat(MAX_SEALED_LEN));
        for bad in [
            "",
            "v1",
            "v1..",
            "2b7a1c5e-6c53-4c1e-a0e8-5ad7f3c8d1e2",
            &format!("v1.{kid}.not base64!"),
            &format!("v1.{kid}.AAAA"),
            &format!("v2.{kid}.{}", id.rsplit('.').next().expect("test value")),
            &flipped,
            &huge,
        ] {
            assert!(sealer.open(bad, 150).is_err(), "accepted {bad:?}");
        }
        assert!(SessionSealer::new(&[0; 16], &[]).is_err());
    }

    #[test]
    fn oversized_initialize_parameters_are_trimmed_to_what_a_restore_needs() {
        let init = serde_json::json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"sampling": {}, "experimental": {"blob": "x".repeat(10_000)}},
            "clientInfo": {"name": "big", "version": "2", "description": "y".repeat(5000)},
        });
        let claims = SessionClaims {
            init: carried_init(init).expect("fits once trimmed"),
            ..claims()
        };
        assert_eq!(
            claims.init,
            serde_json::json!({"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}},
                "clientInfo": {"name": "big", "version": "2"}})
        );
        let sealer = SessionSealer::new(&[7; 32], &[]).expect("test value");
        assert!(sealer.seal(&claims).expect("test value").len() < 1024);
    }

    #[test]
    fn initialize_parameters_too_big_for_an_id_are_told_apart() {
        let small = claims().init;
        assert_eq!(carried_init(small.clone()), Some(small));
        let huge_name = serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "n".repeat(10_000), "version": "1"}});
        assert_eq!(carried_init(huge_name), None);
        let trimmable = serde_json::json!({"protocolVersion": "2025-06-18",
            "capabilities": {"experimental": {"x": "y".repeat(10_000)}},
            "clientInfo": {"name": "c", "version": "1"}});
        assert!(carried_init(trimmable).is_some());
    }
}
