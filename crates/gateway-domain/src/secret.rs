//! A string that must never be printed: header values and environment values of
//! upstream servers (tokens, API keys). Debug, Display and serde output are masked.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a [`Secret`] prints as, everywhere.
pub const MASK: &str = "********";

/// A secret value. Only [`Secret::expose`] reveals it, so every place that does is
/// easy to find and review (the persistence adapter and the upstream connectors).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value. Call only where it must leave the process (to an upstream or
    /// the database), never to log or to answer an API client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when a client sent the mask back instead of a value (a GET-modify-PATCH
    /// round trip): the registry then keeps the stored value.
    pub fn is_mask(&self) -> bool {
        self.0 == MASK
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), MASK);
        assert_eq!(format!("{secret:?}"), MASK);
        assert_eq!(
            serde_json::to_string(&secret).ok().as_deref(),
            Some("\"********\"")
        );
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn reads_a_plain_string() {
        let secret: Secret = serde_json::from_str("\"token\"").expect("valid JSON string");
        assert_eq!(secret.expose(), "token");
        assert!(Secret::new(MASK).is_mask());
    }
}
