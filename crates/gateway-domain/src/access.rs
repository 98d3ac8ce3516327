//! Role-based access to upstream items: an [`AccessRule`] grants a role some
//! [`Action`]s on the items whose `<server>__<name>` matches one of its glob patterns
//! (`github__*`, `*__read_*`). [`AccessRules`] evaluates them: default deny, a rule
//! only ever allows, and an administrator role sees everything.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ValidationErrors;

/// What a caller does with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// See it in a list.
    List,
    /// Call a tool.
    Call,
    /// Read a resource.
    Read,
    /// Get a prompt.
    GetPrompt,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 4] = [Self::List, Self::Call, Self::Read, Self::GetPrompt];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Call => "call",
            Self::Read => "read",
            Self::GetPrompt => "get_prompt",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        parse_wire_name(value, &Self::ALL, Self::as_str)
    }
}

/// The member of `all` whose wire name is `value`, or an error listing them all.
pub(crate) fn parse_wire_name<T: Copy>(
    value: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|v| name(*v) == value)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|v| name(*v)).collect();
            format!(
                "`{}` is not one of {}",
                value.escape_debug(),
                names.join(", ")
            )
        })
}

/// A stable id for a rule of the configuration file: the same content gives the
/// same id on every replica and after every restart (parts are length-prefixed, so
/// no two contents hash alike by shifting a boundary).
pub(crate) fn content_id<'a>(parts: impl IntoIterator<Item = &'a str>) -> Uuid {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest: [u8; 32] = hash.finalize().into();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Longest role name.
const MAX_ROLE: usize = 64;
/// Patterns per rule at most.
const MAX_PATTERNS: usize = 64;
/// Longest pattern.
const MAX_PATTERN: usize = 256;

/// A stored grant: `role` may do `actions` on items matching any of `patterns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    /// Its id.
    pub id: Uuid,
    /// The role it grants to.
    pub role: String,
    /// What the role may do.
    pub actions: Vec<Action>,
    /// Globs over `<server>__<name>` (`*` any run, `?` one character).
    pub patterns: Vec<String>,
    /// Why it exists.
    pub description: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Defined in the configuration file (read-only through the API) rather than
    /// stored in the database.
    pub configured: bool,
}

impl AccessRule {
    /// Checks a new rule's fields, naming every bad one.
    pub fn new(
        role: &str,
        actions: &[String],
        patterns: Vec<String>,
        description: Option<String>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if role.is_empty()
            || role.len() > MAX_ROLE
            || !role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:-/".contains(c))
        {
            errors.push(
                "role",
                format!("must be 1 to {MAX_ROLE} characters of letters, digits and . _ : - /"),
            );
        }
        if actions.is_empty() {
            errors.push("actions", "at least one of list, call, read, get_prompt");
        }
        let mut parsed = Vec::new();
        for (index, action) in actions.iter().enumerate() {
            if let Some(action) =
                errors.check(&format!("actions.{index}"), action.parse::<Action>())
                && !parsed.contains(&action)
            {
                parsed.push(action);
            }
        }
        parsed.sort();
        if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
            errors.push("patterns", format!("1 to {MAX_PATTERNS} patterns"));
        }
        for (index, pattern) in patterns.iter().enumerate() {
            if pattern.is_empty()
                || pattern.len() > MAX_PATTERN
                || pattern.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                errors.push(
                    format!("patterns.{index}"),
                    format!(
                        "must be 1 to {MAX_PATTERN} characters without spaces or control characters"
                    ),
                );
            }
        }
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 1000)
        {
            errors.push("description", "at most 1000 characters");
        }
        errors.into_result(|| Self {
            id: Uuid::new_v4(),
            role: role.to_owned(),
            actions: parsed,
            patterns,
            description,
            created_at: Utc::now(),
            configured: false,
        })
    }

    /// A rule from the configuration file: checked like any other, with an id derived
    /// from its content, so every replica and every restart gives it the same one.
    pub fn configured(
        role: &str,
        actions: &[String],
        patterns: Vec<String>,
        description: Option<String>,
    ) -> Result<Self, ValidationErrors> {
        let mut rule = Self::new(role, actions, patterns, description)?;
        rule.id = content_id(
            std::iter::once(rule.role.as_str())
                .chain(rule.actions.iter().map(|a| a.as_str()))
                .chain(rule.patterns.iter().map(String::as_str)),
        );
        rule.created_at = DateTime::<Utc>::UNIX_EPOCH;
        rule.configured = true;
        Ok(rule)
    }
}

/// Matches `text` against a glob with `*` (any run, empty included) and `?` (one char).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    // The common shapes without allocating: `*`, a literal, `prefix*`.
    if pattern == "*" {
        return true;
    }
    if !pattern.contains(['*', '?']) {
        return pattern == text;
    }
    if let Some(prefix) = pattern.strip_suffix('*')
        && !prefix.contains(['*', '?'])
    {
        return text.starts_with(prefix);
    }
    if pattern.is_ascii() && text.is_ascii() {
        return glob_units(pattern.as_bytes(), text.as_bytes(), b'*', b'?');
    }
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    glob_units(&pattern, &text, '*', '?')
}

/// The general matcher over bytes or chars, backtracking to the last `*`.
fn glob_units<T: Copy + PartialEq>(pattern: &[T], text: &[T], many: T, one: T) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == one || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == many {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == many)
}

/// The rules in force, evaluated for one caller's roles.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    rules: Vec<AccessRule>,
    admin_roles: Vec<String>,
}

impl AccessRules {
    /// The rules, with the roles that bypass them.
    pub fn new(rules: Vec<AccessRule>, admin_roles: Vec<String>) -> Self {
        Self { rules, admin_roles }
    }

    /// Whether any of `roles` is an administrator role.
    pub fn is_admin(&self, roles: &[String]) -> bool {
        roles.iter().any(|r| self.admin_roles.contains(r))
    }

    /// Whether `roles` may do `action` on `<server>__<name>`.
    pub fn allows(&self, roles: &[String], action: Action, server: &str, name: &str) -> bool {
        if self.is_admin(roles) {
            return true;
        }
        let target = format!("{server}__{name}");
        self.rules.iter().any(|rule| {
            roles.contains(&rule.role)
                && rule.actions.contains(&action)
                && rule.patterns.iter().any(|p| glob_match(p, &target))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(role: &str, actions: &[&str], patterns: &[&str]) -> AccessRule {
        AccessRule::new(
            role,
            &actions.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>(),
            patterns.iter().map(|p| (*p).to_owned()).collect(),
            None,
        )
        .expect("valid")
    }

    #[test]
    fn globs_match_as_documented() {
        assert!(glob_match("github__*", "github__create_issue"));
        assert!(glob_match("*__read_*", "files__read_file"));
        assert!(!glob_match("*__read_*", "files__write_file"));
        assert!(glob_match("a?c", "abc") && !glob_match("a?c", "abbc"));
        assert!(glob_match("*", "") && glob_match("**x", "x"));
        assert!(!glob_match("github__*", "gitlab__x"));
        // Non-ASCII: `?` is one character, not one byte.
        assert!(glob_match("caf?", "café") && glob_match("*é*", "café!"));
        assert!(glob_match("exact", "exact") && !glob_match("exact", "exactly"));
    }

    proptest::proptest! {
        /// The fast paths agree with the general matcher.
        #[test]
        fn fast_paths_agree(pattern in "[a-c*?]{0,6}", text in "[a-c]{0,8}") {
            let general = glob_units(
                &pattern.chars().collect::<Vec<_>>(),
                &text.chars().collect::<Vec<_>>(),
                '*',
                '?',
            );
            proptest::prop_assert_eq!(glob_match(&pattern, &text), general);
        }
    }

    #[test]
    fn default_deny_rules_allow_and_admins_see_all() {
        let rules = AccessRules::new(
            vec![rule("reader", &["list", "read"], &["docs__*"])],
            vec!["admin".into()],
        );
        let reader = vec!["reader".to_owned()];
        assert!(rules.allows(&reader, Action::List, "docs", "search"));
        assert!(!rules.allows(&reader, Action::Call, "docs", "search"));
        assert!(!rules.allows(&reader, Action::List, "github", "x"));
        assert!(!rules.allows(&[], Action::List, "docs", "search"));
        assert!(rules.allows(&["admin".to_owned()], Action::Call, "github", "x"));
    }

    #[test]
    fn bad_rules_name_every_field() {
        let errors = AccessRule::new("bad role", &["fly".into()], vec![], None)
            .expect_err("invalid")
            .to_string();
        for field in ["role", "actions.0", "patterns"] {
            assert!(errors.contains(field), "{field} in {errors}");
        }
    }
}
