//! Validated identifiers. Each can only be built by `parse`, so the rest of the code
//! never holds an invalid one ("parse, don't validate").

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The prefix of the gateway's own tools and resources (`gateway__list_servers`).
pub const RESERVED_SERVER_NAME: &str = "gateway";

/// Names no upstream may take: the gateway's own tools live under `gateway__`.
pub const RESERVED_SERVER_NAMES: &[&str] = &[RESERVED_SERVER_NAME];

/// The unique name of an upstream server, also the prefix of its tool names
/// (`<server>__<tool>`), so it keeps to `[a-z0-9][a-z0-9-]{0,62}`: lowercase, no
/// separator characters, and short enough to leave room for the tool name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ServerName(String);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(String);

impl ServerName {
    /// Longest accepted name.
    pub const MAX_LEN: usize = 63;

    /// Checks the pattern and the reserved names.
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(InvalidName(format!(
                "must be 1 to {} bytes long, got {}",
                Self::MAX_LEN,
                value.len()
            )));
        }
        let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !value.chars().all(valid_char) || value.starts_with('-') {
            return Err(InvalidName(format!(
                "`{}` must match [a-z0-9][a-z0-9-]{{0,62}}: lowercase letters, digits and '-', not starting with '-'",
                value.escape_debug()
            )));
        }
        if uuid::Uuid::try_parse(value).is_ok() {
            return Err(InvalidName(format!(
                "`{value}` looks like a server id (UUID); names must be told apart from ids in URLs"
            )));
        }
        if RESERVED_SERVER_NAMES.contains(&value) {
            return Err(InvalidName(format!(
                "`{value}` is reserved for the gateway itself"
            )));
        }
        Ok(Self(value.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ServerName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A free-form label used to group and filter servers (`team-a`, `prod`, `github`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    /// Longest accepted tag.
    pub const MAX_LEN: usize = 64;

    /// 1 to 64 characters of letters, digits, `-`, `_`, `.`, `:` or `/`.
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:/".contains(c);
        if value.is_empty() || value.len() > Self::MAX_LEN || !value.chars().all(allowed) {
            return Err(InvalidName(format!(
                "tag `{}` must be 1 to {} characters of letters, digits, '-', '_', '.', ':' or '/'",
                value.escape_debug(),
                Self::MAX_LEN
            )));
        }
        Ok(Self(value.to_owned()))
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tenant that owns a server; tenants come from the identity provider (`tid`),
/// so any non-empty printable identifier up to 128 characters is accepted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// Longest accepted tenant id.
    pub const MAX_LEN: usize = 128;

    /// 1 to 128 characters with no whitespace or control characters.
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        if value.is_empty()
            || value.len() > Self::MAX_LEN
            || value.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(InvalidName(format!(
                "tenant must be 1 to {} characters without whitespace or control characters",
                Self::MAX_LEN
            )));
        }
        Ok(Self(value.to_owned()))
    }

    /// The tenant id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_the_documented_pattern() {
        for name in ["a", "github", "my-server-2", "0day", &"x".repeat(63)] {
            assert!(ServerName::parse(name).is_ok(), "{name} should be valid");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for name in [
            "",
            "-lead",
            "Upper",
            "under_score",
            "dot.ted",
            "spa ce",
            "é",
            &"x".repeat(64),
            "gateway",
            "0e6f5a4c-2b1d-4c3e-9f8a-7b6c5d4e3f2a",
            "0e6f5a4c2b1d4c3e9f8a7b6c5d4e3f2a",
        ] {
            assert!(ServerName::parse(name).is_err(), "{name} should be invalid");
        }
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<ServerName>("\"ok-name\"").is_ok());
        assert!(serde_json::from_str::<ServerName>("\"Bad_Name\"").is_err());
    }

    #[test]
    fn tags_and_tenants() {
        assert!(Tag::parse("team:a/b_c.d-e").is_ok());
        assert!(Tag::parse("no spaces").is_err());
        assert!(Tag::parse("").is_err());
        assert!(TenantId::parse("72f988bf-86f1-41af-91ab-2d7cd011db47").is_ok());
        assert!(TenantId::parse("a b").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_valid_names_fit_a_tool_prefix(input in "\\PC{0,80}") {
            if let Ok(name) = ServerName::parse(&input) {
                prop_assert!(name.as_str().len() <= ServerName::MAX_LEN);
                prop_assert!(!name.as_str().contains("__"));
            }
        }
    }
}
