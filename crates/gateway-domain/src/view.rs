//! Curated views: a named subset of the aggregate catalog served as its own MCP
//! endpoint (`/mcp/views/{name}`). A view picks tools, prompts and resources across
//! servers with globs over `<server>__<name>` (the access rules' item names; a
//! pattern without `*` or `?` is an explicit item), and may rename tools and prompts
//! or override their descriptions, so one team's agent sees a small, well-described
//! surface.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::access::glob_match;
use crate::error::RepositoryError;
use crate::error::ValidationErrors;
use crate::name::ServerName;

/// Patterns per list at most.
pub const MAX_VIEW_PATTERNS: usize = 256;
/// Overrides per view at most.
pub const MAX_VIEW_OVERRIDES: usize = 1024;
/// Longest pattern.
const MAX_PATTERN: usize = 256;
/// Longest exposed name (the MCP tool-name limit).
pub const MAX_ITEM_NAME: usize = 128;
/// Longest description override.
const MAX_DESCRIPTION: usize = 4096;

/// A view's name: the last segment of its endpoint's path, so it keeps to the
/// server-name alphabet (`[a-z0-9][a-z0-9-]{0,62}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ViewName(String);

impl ViewName {
    /// Checks the alphabet and the length.
    pub fn parse(value: &str) -> Result<Self, String> {
        // The same alphabet as a server name; `gateway` is no problem for a view.
        match ServerName::parse(value) {
            Ok(name) => Ok(Self(name.as_str().to_owned())),
            Err(_) if value == crate::name::RESERVED_SERVER_NAME => Ok(Self(value.to_owned())),
            Err(error) => Err(error.to_string()),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ViewName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A rename and/or a new description for one tool or prompt of a view.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ItemOverride {
    /// The name the view exposes instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The description the view shows instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What an operator defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewSpec {
    /// Its name (and endpoint).
    pub name: ViewName,
    /// What it is for.
    pub description: Option<String>,
    /// Tools, by `<server>__<tool>` glob.
    pub tools: Vec<String>,
    /// Prompts, by `<server>__<prompt>` glob.
    pub prompts: Vec<String>,
    /// Resources and templates, by `<server>__<uri>` glob.
    pub resources: Vec<String>,
    /// Per item (`<server>__<name>`, exact): a new name and/or description.
    pub overrides: BTreeMap<String, ItemOverride>,
}

fn valid_item_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ITEM_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn check_patterns(errors: &mut ValidationErrors, field: &str, patterns: &[String]) {
    if patterns.len() > MAX_VIEW_PATTERNS {
        errors.push(field, format!("at most {MAX_VIEW_PATTERNS} patterns"));
    }
    for (index, pattern) in patterns.iter().enumerate() {
        if pattern.is_empty()
            || pattern.len() > MAX_PATTERN
            || pattern.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            errors.push(
                format!("{field}.{index}"),
                format!(
                    "must be 1 to {MAX_PATTERN} characters without spaces or control characters"
                ),
            );
        }
    }
}

impl ViewSpec {
    /// Checks every field, naming each bad one.
    pub fn new(
        name: &str,
        description: Option<String>,
        tools: Vec<String>,
        prompts: Vec<String>,
        resources: Vec<String>,
        overrides: BTreeMap<String, ItemOverride>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let name = errors.check("name", ViewName::parse(name));
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 1000)
        {
            errors.push("description", "at most 1000 characters");
        }
        check_patterns(&mut errors, "tools", &tools);
        check_patterns(&mut errors, "prompts", &prompts);
        check_patterns(&mut errors, "resources", &resources);
        if tools.is_empty() && prompts.is_empty() && resources.is_empty() {
            errors.push(
                "tools",
                "a view needs at least one pattern in tools, prompts or resources",
            );
        }
        if overrides.len() > MAX_VIEW_OVERRIDES {
            errors.push(
                "overrides",
                format!("at most {MAX_VIEW_OVERRIDES} overrides"),
            );
        }
        let mut new_names = BTreeSet::new();
        for (item, change) in &overrides {
            let field = format!("overrides.{item}");
            if !item.contains("__") || item.contains(['*', '?']) {
                errors.push(
                    field.clone(),
                    "the key must be one item's `<server>__<name>`, without wildcards",
                );
            }
            if change.name.is_none() && change.description.is_none() {
                errors.push(field.clone(), "set a name, a description or both");
            }
            if let Some(new_name) = &change.name {
                if !valid_item_name(new_name) {
                    errors.push(
                        format!("{field}.name"),
                        format!("must be 1 to {MAX_ITEM_NAME} of A-Z a-z 0-9 _ - ."),
                    );
                } else if !new_names.insert(new_name.clone()) {
                    errors.push(
                        format!("{field}.name"),
                        format!("`{new_name}` is given to two items"),
                    );
                }
            }
            if change
                .description
                .as_ref()
                .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
            {
                errors.push(
                    format!("{field}.description"),
                    format!("at most {MAX_DESCRIPTION} characters"),
                );
            }
        }
        errors.into_result(|| Self {
            name: name.unwrap_or_else(|| ViewName(String::new())),
            description,
            tools,
            prompts,
            resources,
            overrides,
        })
    }

    /// Whether the view includes item `<server>__<name>` from the list `patterns`.
    pub fn includes(patterns: &[String], item: &str) -> bool {
        patterns.iter().any(|pattern| glob_match(pattern, item))
    }
}

/// A stored view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Its id.
    pub id: Uuid,
    /// Its definition.
    pub spec: ViewSpec,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Stores views.
#[async_trait::async_trait]
pub trait ViewRepository: Send + Sync {
    /// Every view, by name.
    async fn list_views(&self) -> Result<Vec<View>, RepositoryError>;
    /// Stores a new view; `Duplicate` when the name is taken.
    async fn insert_view(&self, view: &View) -> Result<(), RepositoryError>;
    /// Replaces the definition of the view with this name; `NotFound` if none.
    async fn replace_view(&self, view: &View) -> Result<(), RepositoryError>;
    /// Removes a view; `NotFound` if none has that name.
    async fn delete_view(&self, name: &ViewName) -> Result<(), RepositoryError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        tools: &[&str],
        overrides: &[(&str, Option<&str>)],
    ) -> Result<ViewSpec, ValidationErrors> {
        ViewSpec::new(
            "support",
            None,
            tools.iter().map(|t| (*t).to_owned()).collect(),
            Vec::new(),
            Vec::new(),
            overrides
                .iter()
                .map(|(item, name)| {
                    (
                        (*item).to_owned(),
                        ItemOverride {
                            name: name.map(str::to_owned),
                            description: None,
                        },
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn a_valid_view_keeps_its_patterns_and_overrides() {
        let view = spec(
            &["github__*", "jira__get_issue"],
            &[("github__create_issue", Some("file_bug"))],
        )
        .expect("valid");
        assert!(ViewSpec::includes(&view.tools, "github__list_prs"));
        assert!(ViewSpec::includes(&view.tools, "jira__get_issue"));
        assert!(!ViewSpec::includes(&view.tools, "jira__delete_issue"));
    }

    #[test]
    fn every_bad_field_is_named() {
        let error = ViewSpec::new(
            "Bad Name",
            Some("x".repeat(1001)),
            vec!["has space".into()],
            Vec::new(),
            Vec::new(),
            [
                ("no-separator".to_owned(), ItemOverride::default()),
                (
                    "a__b".to_owned(),
                    ItemOverride {
                        name: Some("same".into()),
                        description: None,
                    },
                ),
                (
                    "a__c".to_owned(),
                    ItemOverride {
                        name: Some("same".into()),
                        description: None,
                    },
                ),
                (
                    "a__d".to_owned(),
                    ItemOverride {
                        name: Some("bad name!".into()),
                        description: None,
                    },
                ),
            ]
            .into_iter()
            .collect(),
        )
        .expect_err("invalid");
        let fields: Vec<String> = error.errors().iter().map(|f| f.field.clone()).collect();
        for expected in [
            "name",
            "description",
            "tools.0",
            "overrides.no-separator",
            "overrides.a__c.name",
            "overrides.a__d.name",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} not in {fields:?}"
            );
        }
    }

    #[test]
    fn an_empty_view_is_refused() {
        assert!(spec(&[], &[]).is_err());
    }
}
