//! Exposed names: what a client sees for an upstream's tool or prompt on the
//! aggregate endpoint. `always` prefixes every name with its server
//! (`<server><separator><name>`), `never` keeps upstream names, `conditional` prefixes
//! only names that more than one server uses. Names keep to the MCP tool-name rules
//! (`[A-Za-z0-9_.-]`, 1–128) and a length budget (64 by default, what many model
//! providers accept); a name that does not fit is shortened deterministically with a
//! hash suffix, so it stays unique and stable.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// When a server prefix is added to exposed names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrefixMode {
    /// Every name is `<server><sep><name>` (stable whatever else is registered).
    #[default]
    Always,
    /// Only names used by more than one server are prefixed.
    Conditional,
    /// Upstream names as they are; a clash is resolved by prefixing the later
    /// server's name, with a warning (never by dropping a tool).
    Never,
}

impl FromStr for PrefixMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "always" => Ok(Self::Always),
            "conditional" => Ok(Self::Conditional),
            "never" => Ok(Self::Never),
            other => Err(format!(
                "`{other}` is not one of always, conditional, never"
            )),
        }
    }
}

impl fmt::Display for PrefixMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Always => "always",
            Self::Conditional => "conditional",
            Self::Never => "never",
        })
    }
}

/// Why a naming policy is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    /// The separator could appear inside a server name, making names ambiguous.
    #[error(
        "separator `{0}` must be 1 to 3 characters of '_' and '.', which server names never contain"
    )]
    Separator(String),
    /// The length budget cannot hold a prefixed name.
    #[error("max name length {0} must be between 16 and 128")]
    MaxLength(usize),
}

/// The longest tool name the MCP specification allows.
pub const SPEC_MAX_NAME: usize = 128;

/// How exposed names are formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamingPolicy {
    mode: PrefixMode,
    separator: String,
    max_len: usize,
}

impl Default for NamingPolicy {
    fn default() -> Self {
        Self {
            mode: PrefixMode::Always,
            separator: "__".into(),
            max_len: 64,
        }
    }
}

impl NamingPolicy {
    /// Checks that the separator cannot occur in a server name (so the server part
    /// of an exposed name is unambiguous) and that the budget is usable.
    pub fn new(mode: PrefixMode, separator: &str, max_len: usize) -> Result<Self, NamingError> {
        if separator.is_empty()
            || separator.len() > 3
            || !separator.chars().all(|c| c == '_' || c == '.')
        {
            return Err(NamingError::Separator(separator.to_owned()));
        }
        if !(16..=SPEC_MAX_NAME).contains(&max_len) {
            return Err(NamingError::MaxLength(max_len));
        }
        Ok(Self {
            mode,
            separator: separator.to_owned(),
            max_len,
        })
    }

    /// The prefix mode.
    pub fn mode(&self) -> PrefixMode {
        self.mode
    }

    /// `<server><sep><name>`, made valid and fitted to the budget.
    pub fn prefixed(&self, server: &str, name: &str) -> String {
        self.fit(&format!("{server}{}{name}", self.separator), name)
    }

    /// Between a server's name and an item's.
    pub fn separator(&self) -> &str {
        &self.separator
    }

    /// The gateway's own tools are named `gateway<sep><tool>`: no upstream item may
    /// be exposed under this prefix (server names never are `gateway`).
    pub fn reserved_prefix(&self) -> String {
        format!("{}{}", gateway_domain::RESERVED_SERVER_NAME, self.separator)
    }

    /// The exposed name of one of the gateway's own tools.
    pub fn gateway_item(&self, name: &str) -> String {
        self.prefixed(gateway_domain::RESERVED_SERVER_NAME, name)
    }

    /// The upstream name, made valid and fitted to the budget.
    pub fn bare(&self, name: &str) -> String {
        self.fit(name, name)
    }

    /// Replaces characters outside `[A-Za-z0-9_.-]` and shortens over-long names to
    /// `<head>_<8 hex of sha256(original)>`. Valid names within budget are unchanged.
    fn fit(&self, candidate: &str, original: &str) -> String {
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if !candidate.is_empty() && candidate.len() <= self.max_len && candidate.chars().all(valid)
        {
            return candidate.to_owned();
        }
        let cleaned: String = candidate
            .chars()
            .map(|c| if valid(c) { c } else { '_' })
            .collect();
        let digest = Sha256::digest(original.as_bytes());
        let suffix: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        let keep = self.max_len.saturating_sub(suffix.len() + 1);
        let head: String = cleaned.chars().take(keep).collect();
        format!("{head}_{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn prefixes_and_keeps_valid_names() {
        let policy = NamingPolicy::default();
        assert_eq!(
            policy.prefixed("github", "create_issue"),
            "github__create_issue"
        );
        assert_eq!(policy.bare("create_issue"), "create_issue");
    }

    #[test]
    fn invalid_characters_and_long_names_are_fitted_stably() {
        let policy = NamingPolicy::default();
        let spaced = policy.bare("get weather");
        assert!(spaced.starts_with("get_weather_"), "{spaced}");
        assert_eq!(spaced, policy.bare("get weather"), "deterministic");
        let long = policy.prefixed("server", &"x".repeat(100));
        assert_eq!(long.len(), 64);
        assert_ne!(
            long,
            policy.prefixed("server", &format!("{}y", "x".repeat(99))),
            "hash keeps them apart"
        );
    }

    #[test]
    fn separators_that_could_hide_in_server_names_are_refused() {
        assert!(NamingPolicy::new(PrefixMode::Always, "-", 64).is_err());
        assert!(NamingPolicy::new(PrefixMode::Always, "", 64).is_err());
        assert!(NamingPolicy::new(PrefixMode::Always, "_.", 64).is_ok());
        assert!(NamingPolicy::new(PrefixMode::Always, "__", 8).is_err());
        assert_eq!(
            "conditional".parse::<PrefixMode>(),
            Ok(PrefixMode::Conditional)
        );
        assert!("sometimes".parse::<PrefixMode>().is_err());
    }

    proptest! {
        #[test]
        fn exposed_names_always_follow_the_spec(server in "[a-z0-9][a-z0-9-]{0,62}", name in "\\PC{0,200}", max in 16usize..=128) {
            let policy = NamingPolicy::new(PrefixMode::Always, "__", max).expect("valid policy");
            for exposed in [policy.prefixed(&server, &name), policy.bare(&name)] {
                prop_assert!(!exposed.is_empty() && exposed.len() <= max, "{exposed}");
                prop_assert!(exposed.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')));
            }
        }
    }
}
