//! Curated views materialised: at every snapshot rebuild each view's items are
//! picked from the aggregate catalog (globs over `<server>__<name>`), renamed and
//! re-described as the view says, sorted and indexed, so `/mcp/views/{name}` lists
//! and routes with the same costs as `/mcp`. A fingerprint of the result tells the
//! runtime whether the view's clients need `list_changed`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use gateway_domain::ViewSpec;
use gateway_router::snapshot::{CatalogSnapshot, ListKind, Route};

use super::runtime::McpItem;

/// One item of a view: the name the view gives it, where it goes, the wire item.
#[derive(Debug, Clone)]
pub struct ViewEntry {
    /// Its name (tools, prompts) or URI (resources, templates) in the view.
    pub key: String,
    /// Where it routes.
    pub route: Route,
    /// The item as the view lists it.
    pub item: McpItem,
}

/// Items of one kind: listed ones sorted by key; hidden ones (their server is
/// unavailable) routable only.
#[derive(Debug, Default)]
struct ViewList {
    listed: Vec<ViewEntry>,
    index: HashMap<String, (bool, usize)>,
    hidden: Vec<ViewEntry>,
}

/// A view, materialised against one snapshot.
#[derive(Debug)]
pub struct ViewListing {
    lists: HashMap<ListKind, ViewList>,
    /// The resource patterns, for URIs read through templates (not listed).
    resources: Vec<String>,
    /// Changes whenever what the view lists changes.
    pub fingerprint: u64,
}

/// `<server>__<name>`: the item name patterns and overrides use.
pub fn item_id(route: &Route) -> String {
    format!("{}__{}", route.server, route.original)
}

fn patterns(spec: &ViewSpec, kind: ListKind) -> &[String] {
    match kind {
        ListKind::Tools => &spec.tools,
        ListKind::Prompts => &spec.prompts,
        ListKind::Resources | ListKind::ResourceTemplates => &spec.resources,
    }
}

/// The item with the view's name and description.
fn overridden(item: &McpItem, key: &str, description: Option<&String>) -> McpItem {
    match item {
        McpItem::Tool(tool) => {
            let mut tool = tool.clone();
            tool.name = key.to_owned().into();
            if let Some(text) = description {
                tool.description = Some(text.clone().into());
            }
            McpItem::Tool(tool)
        }
        McpItem::Prompt(prompt) => {
            let mut prompt = prompt.clone();
            prompt.name = key.to_owned();
            if let Some(text) = description {
                prompt.description = Some(text.clone());
            }
            McpItem::Prompt(prompt)
        }
        other => other.clone(),
    }
}

impl ViewListing {
    /// Picks the view's items out of `snapshot`; `hash_of` gives a server's catalog
    /// hash (a changed catalog may change an item without changing its name).
    pub fn build(
        spec: &ViewSpec,
        snapshot: &CatalogSnapshot<McpItem>,
        hash_of: impl Fn(&gateway_domain::ServerName) -> String,
    ) -> Self {
        let mut fingerprint = std::collections::hash_map::DefaultHasher::new();
        spec.description.hash(&mut fingerprint);
        let mut lists = HashMap::new();
        for kind in ListKind::ALL {
            let wanted = patterns(spec, kind);
            let mut list = ViewList::default();
            if wanted.is_empty() {
                lists.insert(kind, list);
                continue;
            }
            // Renamed items claim their names first, then the rest in key order, so who
            // wins a clash never depends on which servers are up.
            let mut candidates: Vec<_> = snapshot
                .all(kind)
                .filter_map(|(exposed, hidden)| {
                    let id = item_id(&exposed.route);
                    if !ViewSpec::includes(wanted, &id) {
                        return None;
                    }
                    let change = matches!(kind, ListKind::Tools | ListKind::Prompts)
                        .then(|| spec.overrides.get(&id))
                        .flatten();
                    Some((exposed, hidden, id, change))
                })
                .collect();
            candidates.sort_by(|a, b| {
                let renamed =
                    |c: &Option<&gateway_domain::ItemOverride>| c.is_some_and(|c| c.name.is_some());
                renamed(&b.3)
                    .cmp(&renamed(&a.3))
                    .then_with(|| a.0.key.cmp(&b.0.key))
            });
            let mut entries: Vec<(ViewEntry, bool)> = Vec::new();
            let mut taken = std::collections::HashSet::new();
            for (exposed, hidden, id, change) in candidates {
                let key = change
                    .and_then(|c| c.name.clone())
                    .unwrap_or_else(|| exposed.key.clone());
                if !taken.insert(key.clone()) {
                    tracing::warn!(view = %spec.name, item = %id, name = %key, "view item name taken by another item; not listed");
                    continue;
                }
                let item = match change {
                    Some(c) => overridden(&exposed.item, &key, c.description.as_ref()),
                    None => exposed.item.clone(),
                };
                entries.push((
                    ViewEntry {
                        key,
                        route: exposed.route.clone(),
                        item,
                    },
                    hidden,
                ));
            }
            entries.sort_by(|a, b| a.0.key.cmp(&b.0.key));
            for (entry, hidden) in entries {
                (kind as u8, &entry.key, &entry.route.original, hidden).hash(&mut fingerprint);
                hash_of(&entry.route.server).hash(&mut fingerprint);
                if let Some(change) = spec.overrides.get(&item_id(&entry.route)) {
                    change.description.hash(&mut fingerprint);
                }
                let target = if hidden {
                    &mut list.hidden
                } else {
                    &mut list.listed
                };
                list.index.insert(entry.key.clone(), (hidden, target.len()));
                target.push(entry);
            }
            lists.insert(kind, list);
        }
        Self {
            lists,
            resources: spec.resources.clone(),
            fingerprint: fingerprint.finish(),
        }
    }

    /// One page of listed items after the key `after`, and whether more follow.
    pub fn page(&self, kind: ListKind, after: Option<&str>, limit: usize) -> (&[ViewEntry], bool) {
        let Some(list) = self.lists.get(&kind) else {
            return (&[], false);
        };
        let start = after.map_or(0, |key| {
            list.listed.partition_point(|e| e.key.as_str() <= key)
        });
        let end = start.saturating_add(limit).min(list.listed.len());
        (&list.listed[start..end], end < list.listed.len())
    }

    /// Where a tool or prompt name of the view goes.
    pub fn route(&self, kind: ListKind, key: &str) -> Option<&ViewEntry> {
        let list = self.lists.get(&kind)?;
        let (hidden, at) = *list.index.get(key)?;
        if hidden {
            list.hidden.get(at)
        } else {
            list.listed.get(at)
        }
    }

    /// Whether the view includes the resource `route` points to (listed, or read
    /// through one of its templates).
    pub fn includes_resource(&self, route: &Route) -> bool {
        let id = item_id(route);
        // A template's pattern (`docs__file:///kb/{id}`) also admits the URIs it expands to.
        ViewSpec::includes(&self.resources, &id)
            || self
                .resources
                .iter()
                .filter(|pattern| pattern.contains('{'))
                .any(|pattern| gateway_domain::access::glob_match(&template_glob(pattern), &id))
    }
}

/// A URI template as a glob: each `{…}` expression matches any run.
fn template_glob(template: &str) -> String {
    let mut glob = String::with_capacity(template.len());
    let mut in_expression = false;
    for c in template.chars() {
        match c {
            '{' => {
                in_expression = true;
                glob.push('*');
            }
            '}' => in_expression = false,
            c if !in_expression => glob.push(c),
            _ => {}
        }
    }
    glob
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use gateway_domain::{Catalog, Descriptor, ItemOverride, ServerId, ServerName};
    use gateway_router::{NamingPolicy, SnapshotServer};

    use super::*;

    fn snapshot() -> CatalogSnapshot<McpItem> {
        let tool = |name: &str| {
            Descriptor::from_value(serde_json::json!({
                "name": name, "description": format!("{name} tool"),
                "inputSchema": {"type": "object"}
            }))
            .expect("descriptor")
        };
        let server = |name: &str, tools: &[&str]| SnapshotServer {
            id: ServerId::generate(),
            name: ServerName::parse(name).expect("name"),
            created_at: chrono::Utc::now(),
            catalog: Some(Catalog::new(
                tools.iter().map(|t| tool(t)).collect(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                chrono::Utc::now(),
            )),
            hidden: false,
        };
        CatalogSnapshot::build(
            &NamingPolicy::default(),
            vec![
                server("github", &["create_issue", "list_prs", "delete_repo"]),
                server("jira", &["get_issue"]),
            ],
            &|kind, key, value| super::super::runtime::to_item(kind, key, value),
        )
    }

    #[test]
    fn a_view_lists_exactly_its_subset_with_renames_and_routes_them() {
        let spec = ViewSpec::new(
            "support",
            None,
            vec!["github__*".into(), "jira__get_issue".into()],
            Vec::new(),
            Vec::new(),
            BTreeMap::from([(
                "github__create_issue".to_owned(),
                ItemOverride {
                    name: Some("file_bug".into()),
                    description: Some("File a bug".into()),
                },
            )]),
        )
        .expect("spec");
        let mut spec_without_delete = spec.clone();
        spec_without_delete.tools = vec![
            "github__create_issue".into(),
            "github__list_prs".into(),
            "jira__*".into(),
        ];
        let view = ViewListing::build(&spec_without_delete, &snapshot(), |_| String::new());
        let (page, more) = view.page(ListKind::Tools, None, 100);
        let keys: Vec<&str> = page.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["file_bug", "github__list_prs", "jira__get_issue"]);
        assert!(!more);
        let routed = view
            .route(ListKind::Tools, "file_bug")
            .expect("renamed routes");
        assert_eq!(routed.route.original, "create_issue");
        let McpItem::Tool(tool) = &routed.item else {
            panic!("a tool")
        };
        assert_eq!(tool.description.as_deref(), Some("File a bug"));
        assert!(view.route(ListKind::Tools, "github__delete_repo").is_none());
        assert!(
            view.route(ListKind::Tools, "github__create_issue")
                .is_none()
        );
        let wider = ViewListing::build(&spec, &snapshot(), |_| String::new());
        assert_ne!(wider.fingerprint, view.fingerprint);
    }

    #[test]
    fn a_template_pattern_admits_the_uris_it_expands_to() {
        assert_eq!(template_glob("docs__file:///kb/{id}"), "docs__file:///kb/*");
        assert_eq!(template_glob("a__x://{a}/{b}?q={c}"), "a__x://*/*?q=*");
        assert_eq!(template_glob("a__{unclosed"), "a__*");
    }
}
