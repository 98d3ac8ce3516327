//! The catalog snapshot: an immutable, read-optimised view of every enabled
//! upstream's catalog, with exposed names already assigned and items already
//! converted to the wire type `P` the MCP adapter serves. Lookups (`route_*`) are
//! hash-map hits and listings are binary searches over sorted vectors, so nothing on
//! the hot path allocates per item or touches the database.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gateway_domain::{Catalog, Descriptor, ServerId, ServerName};
use serde_json::Value;

use crate::naming::{NamingPolicy, PrefixMode};
use crate::resource_uri;

/// The four listable kinds of an MCP catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `tools/list`.
    Tools,
    /// `prompts/list`.
    Prompts,
    /// `resources/list`.
    Resources,
    /// `resources/templates/list`.
    ResourceTemplates,
}

impl ListKind {
    /// All kinds, in a fixed order.
    pub const ALL: [ListKind; 4] = [
        Self::Tools,
        Self::Prompts,
        Self::Resources,
        Self::ResourceTemplates,
    ];

    /// The field that names an item of this kind (`name`, or `uri`/`uriTemplate`).
    pub fn key_field(self) -> &'static str {
        match self {
            Self::Tools | Self::Prompts => "name",
            Self::Resources => "uri",
            Self::ResourceTemplates => "uriTemplate",
        }
    }

    fn items(self, catalog: &Catalog) -> &[Descriptor] {
        match self {
            Self::Tools => &catalog.tools,
            Self::Prompts => &catalog.prompts,
            Self::Resources => &catalog.resources,
            Self::ResourceTemplates => &catalog.resource_templates,
        }
    }
}

/// One upstream as the snapshot needs it.
#[derive(Debug, Clone)]
pub struct SnapshotServer {
    /// Its id.
    pub id: ServerId,
    /// Its name (the prefix).
    pub name: ServerName,
    /// Registration time: under `never`, the earlier server keeps a contested name.
    pub created_at: DateTime<Utc>,
    /// Its last catalog, if one was fetched.
    pub catalog: Option<Catalog>,
    /// Routable but not listed (unhealthy, circuit open, draining): its items keep
    /// their names, so they come back unchanged, and calls to them still resolve and
    /// fail with the reason instead of "unknown tool".
    pub hidden: bool,
}

/// Where a client-visible name or URI goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The owning server.
    pub server_id: ServerId,
    /// Its name.
    pub server: ServerName,
    /// The name (or URI) the upstream knows.
    pub original: String,
}

/// One listed item: its key as the client sees it, where it goes, and the item
/// converted for the wire.
#[derive(Debug, Clone)]
pub struct Exposed<P> {
    /// Exposed name (tools, prompts) or exposed URI (resources, templates).
    pub key: String,
    /// Where it routes.
    pub route: Route,
    /// The item for the aggregate endpoint (exposed name/URI).
    pub item: P,
}

/// Every item of one kind, sorted by key, with an index from key to position.
#[derive(Debug, Clone)]
struct Listing<P> {
    items: Vec<Exposed<P>>,
    index: HashMap<String, usize>,
}

impl<P> Default for Listing<P> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<P> Listing<P> {
    fn from_items(mut items: Vec<Exposed<P>>) -> Self {
        items.sort_by(|a, b| a.key.cmp(&b.key));
        let index = items
            .iter()
            .enumerate()
            .map(|(i, item)| (item.key.clone(), i))
            .collect();
        Self { items, index }
    }

    fn page(&self, after: Option<&str>, limit: usize) -> (&[Exposed<P>], bool) {
        let start = after.map_or(0, |key| {
            self.items.partition_point(|item| item.key.as_str() <= key)
        });
        let end = start.saturating_add(limit).min(self.items.len());
        (&self.items[start..end], end < self.items.len())
    }
}

/// What one server offers on its own endpoint: original names, original order key.
#[derive(Debug, Clone)]
struct ServerListings<P> {
    id: ServerId,
    hidden: bool,
    lists: HashMap<ListKind, Listing<P>>,
}

/// Turns an upstream descriptor into the adapter's wire item, given the key it is
/// exposed under; `None` drops an item the upstream described invalidly (logged).
pub type Convert<'a, P> = &'a dyn Fn(ListKind, &str, &Value) -> Option<P>;

/// The immutable routing view; rebuilt and swapped whole when anything changes.
#[derive(Debug, Clone)]
pub struct CatalogSnapshot<P> {
    aggregate: HashMap<ListKind, Listing<P>>,
    /// Items of hidden servers: routable on the aggregate endpoint, never listed.
    hidden: HashMap<ListKind, Listing<P>>,
    servers: BTreeMap<ServerName, ServerListings<P>>,
    conflicts: Vec<String>,
}

impl<P> Default for CatalogSnapshot<P> {
    fn default() -> Self {
        Self {
            aggregate: HashMap::new(),
            hidden: HashMap::new(),
            servers: BTreeMap::new(),
            conflicts: Vec::new(),
        }
    }
}

fn with_key(descriptor: &Descriptor, field: &str, key: &str) -> Value {
    let mut map = descriptor.as_map().clone();
    map.insert(field.to_owned(), Value::String(key.to_owned()));
    Value::Object(map)
}

fn original_key(kind: ListKind, descriptor: &Descriptor) -> Option<String> {
    descriptor
        .as_map()
        .get(kind.key_field())
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

impl<P: Clone> CatalogSnapshot<P> {
    /// Builds the snapshot of `servers` (enabled ones only) under `policy`.
    pub fn build(
        policy: &NamingPolicy,
        mut servers: Vec<SnapshotServer>,
        convert: Convert<'_, P>,
    ) -> Self {
        // Oldest first: under `never`, the server registered first keeps a contested name.
        servers.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.name.cmp(&b.name))
        });
        let hidden_ids: std::collections::HashSet<ServerId> =
            servers.iter().filter(|s| s.hidden).map(|s| s.id).collect();
        let mut snapshot = Self::default();
        for kind in ListKind::ALL {
            let items = match kind {
                ListKind::Tools | ListKind::Prompts => {
                    snapshot.name_items(policy, kind, &servers, convert)
                }
                ListKind::Resources | ListKind::ResourceTemplates => {
                    uri_items(kind, &servers, convert)
                }
            };
            let (hidden, listed): (Vec<_>, Vec<_>) = items
                .into_iter()
                .partition(|item: &Exposed<P>| hidden_ids.contains(&item.route.server_id));
            snapshot.aggregate.insert(kind, Listing::from_items(listed));
            snapshot.hidden.insert(kind, Listing::from_items(hidden));
        }
        for server in &servers {
            let mut lists = HashMap::new();
            for kind in ListKind::ALL {
                let items = server
                    .catalog
                    .iter()
                    .flat_map(|catalog| kind.items(catalog))
                    .filter_map(|descriptor| {
                        let key = original_key(kind, descriptor)?;
                        let item = convert(kind, &key, &descriptor.to_value())?;
                        let route = Route {
                            server_id: server.id,
                            server: server.name.clone(),
                            original: key.clone(),
                        };
                        Some(Exposed { key, route, item })
                    })
                    .collect();
                lists.insert(kind, Listing::from_items(items));
            }
            snapshot.servers.insert(
                server.name.clone(),
                ServerListings {
                    id: server.id,
                    hidden: server.hidden,
                    lists,
                },
            );
        }
        snapshot
    }

    /// Assigns exposed names to tools or prompts, guaranteeing uniqueness.
    fn name_items(
        &mut self,
        policy: &NamingPolicy,
        kind: ListKind,
        servers: &[SnapshotServer],
        convert: Convert<'_, P>,
    ) -> Vec<Exposed<P>> {
        let mut owners: HashMap<String, usize> = HashMap::new();
        for server in servers {
            let names: std::collections::HashSet<String> = server
                .catalog
                .iter()
                .flat_map(|c| kind.items(c))
                .filter_map(|d| original_key(kind, d))
                .collect();
            for name in names {
                *owners.entry(name).or_default() += 1;
            }
        }
        let reserved = policy.reserved_prefix();
        let mut taken: HashMap<String, ServerName> = HashMap::new();
        let mut items = Vec::new();
        for server in servers {
            for descriptor in server.catalog.iter().flat_map(|c| kind.items(c)) {
                let Some(original) = original_key(kind, descriptor) else {
                    continue;
                };
                let shared = owners.get(&original).copied().unwrap_or(0) > 1;
                let preferred = match policy.mode() {
                    PrefixMode::Always => policy.prefixed(server.name.as_str(), &original),
                    PrefixMode::Conditional if shared => {
                        policy.prefixed(server.name.as_str(), &original)
                    }
                    PrefixMode::Conditional | PrefixMode::Never => policy.bare(&original),
                };
                let exposed = if preferred.starts_with(&reserved) {
                    let fallback = policy.prefixed(server.name.as_str(), &original);
                    self.conflicts.push(format!(
                        "{kind:?} `{original}` of server `{}` would take the gateway's reserved prefix `{reserved}`; exposed as `{fallback}`",
                        server.name
                    ));
                    fallback
                } else if let Some(owner) = taken.get(&preferred) {
                    let fallback = policy.prefixed(server.name.as_str(), &original);
                    self.conflicts.push(format!(
                        "{kind:?} `{original}` of server `{}` clashes with `{preferred}` of server `{owner}`; exposed as `{fallback}`",
                        server.name
                    ));
                    fallback
                } else {
                    preferred
                };
                if taken.contains_key(&exposed) {
                    self.conflicts.push(format!(
                        "{kind:?} `{original}` of server `{}` appears twice; the second is not listed",
                        server.name
                    ));
                    continue;
                }
                let Some(item) = convert(
                    kind,
                    &exposed,
                    &with_key(descriptor, kind.key_field(), &exposed),
                ) else {
                    continue;
                };
                taken.insert(exposed.clone(), server.name.clone());
                let route = Route {
                    server_id: server.id,
                    server: server.name.clone(),
                    original,
                };
                items.push(Exposed {
                    key: exposed,
                    route,
                    item,
                });
            }
        }
        items
    }

    /// One page of a listing: the aggregate one (`scope` = `None`) or one server's.
    /// Returns the items after `after` and whether more follow.
    pub fn page(
        &self,
        kind: ListKind,
        scope: Option<&ServerName>,
        after: Option<&str>,
        limit: usize,
    ) -> (&[Exposed<P>], bool) {
        let listing = match scope {
            None => self.aggregate.get(&kind),
            Some(server) => self
                .servers
                .get(server)
                .filter(|s| !s.hidden)
                .and_then(|s| s.lists.get(&kind)),
        };
        listing.map_or((&[][..], false), |l| l.page(after, limit))
    }

    /// Where an exposed tool or prompt name goes (aggregate endpoint), or an original
    /// name on one server's endpoint.
    pub fn route(
        &self,
        kind: ListKind,
        scope: Option<&ServerName>,
        key: &str,
    ) -> Option<&Exposed<P>> {
        let found = |listing: &'_ Listing<P>| -> Option<usize> { listing.index.get(key).copied() };
        match scope {
            None => [self.aggregate.get(&kind), self.hidden.get(&kind)]
                .into_iter()
                .flatten()
                .find_map(|listing| found(listing).and_then(|i| listing.items.get(i))),
            Some(server) => {
                let listing = self.servers.get(server)?.lists.get(&kind)?;
                found(listing).and_then(|i| listing.items.get(i))
            }
        }
    }

    /// Where a resource URI goes: on the aggregate endpoint the URI names its server
    /// (`gw+<server>:<uri>`); on a server's endpoint it is the upstream's own.
    pub fn route_resource(&self, scope: Option<&ServerName>, uri: &str) -> Option<Route> {
        let (server_name, original) = match scope {
            Some(server) => (server.clone(), uri),
            None => {
                let (server, original) = resource_uri::parse(uri)?;
                (ServerName::parse(server).ok()?, original)
            }
        };
        let server = self.servers.get(&server_name)?;
        Some(Route {
            server_id: server.id,
            server: server_name,
            original: original.to_owned(),
        })
    }

    /// Every item of a kind on the aggregate endpoint, with whether it is hidden
    /// (routable, not listed); listed ones first, each part in key order.
    pub fn all(&self, kind: ListKind) -> impl Iterator<Item = (&Exposed<P>, bool)> {
        let listed = self
            .aggregate
            .get(&kind)
            .into_iter()
            .flat_map(|l| l.items.iter());
        let hidden = self
            .hidden
            .get(&kind)
            .into_iter()
            .flat_map(|l| l.items.iter());
        listed.map(|e| (e, false)).chain(hidden.map(|e| (e, true)))
    }

    /// Whether a server is in the snapshot (registered, enabled).
    pub fn has_server(&self, name: &ServerName) -> bool {
        self.servers.contains_key(name)
    }

    /// Whether a server is in the snapshot but not listed.
    pub fn is_hidden(&self, name: &ServerName) -> bool {
        self.servers.get(name).is_some_and(|s| s.hidden)
    }

    /// Name clashes found while building, for logs and operators.
    pub fn conflicts(&self) -> &[String] {
        &self.conflicts
    }

    /// How many items of a kind the aggregate endpoint lists.
    pub fn len(&self, kind: ListKind) -> usize {
        self.aggregate.get(&kind).map_or(0, |l| l.items.len())
    }

    /// How many items of a kind one server offers (listed or hidden).
    pub fn server_len(&self, server: &ServerName, kind: ListKind) -> usize {
        self.servers
            .get(server)
            .and_then(|s| s.lists.get(&kind))
            .map_or(0, |l| l.items.len())
    }

    /// True when nothing at all is listed.
    pub fn is_empty(&self) -> bool {
        ListKind::ALL.iter().all(|kind| self.len(*kind) == 0)
    }
}

/// Resources and templates: every URI is exposed with its server in the scheme, so
/// there is nothing to clash.
fn uri_items<P>(
    kind: ListKind,
    servers: &[SnapshotServer],
    convert: Convert<'_, P>,
) -> Vec<Exposed<P>> {
    let mut items = Vec::new();
    for server in servers {
        for descriptor in server.catalog.iter().flat_map(|c| kind.items(c)) {
            let Some(original) = original_key(kind, descriptor) else {
                continue;
            };
            let exposed = resource_uri::expose(server.name.as_str(), &original);
            let Some(item) = convert(
                kind,
                &exposed,
                &with_key(descriptor, kind.key_field(), &exposed),
            ) else {
                continue;
            };
            let route = Route {
                server_id: server.id,
                server: server.name.clone(),
                original,
            };
            items.push(Exposed {
                key: exposed,
                route,
                item,
            });
        }
    }
    items
}

/// A shared handle to the current snapshot.
pub type SharedSnapshot<P> = Arc<CatalogSnapshot<P>>;

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn server(name: &str, age: i64, tools: &[&str]) -> SnapshotServer {
        let tools = tools
            .iter()
            .map(|t| {
                Descriptor::from_value(json!({"name": t, "inputSchema": {"type": "object"}}))
                    .expect("object")
            })
            .collect();
        let resources = vec![
            Descriptor::from_value(json!({"uri": "file:///readme", "name": "readme"}))
                .expect("object"),
        ];
        SnapshotServer {
            id: ServerId::from_uuid(uuid::Uuid::new_v4()),
            name: ServerName::parse(name).expect("name"),
            created_at: Utc.timestamp_opt(age, 0).single().expect("time"),
            catalog: Some(Catalog::new(tools, resources, vec![], vec![], Utc::now())),
            hidden: false,
        }
    }

    fn keep(_: ListKind, _: &str, value: &Value) -> Option<Value> {
        Some(value.clone())
    }

    fn names(snapshot: &CatalogSnapshot<Value>) -> Vec<String> {
        snapshot
            .page(ListKind::Tools, None, None, 100)
            .0
            .iter()
            .map(|e| e.key.clone())
            .collect()
    }

    #[test]
    fn no_upstream_item_takes_the_gateways_reserved_prefix() {
        for mode in [
            PrefixMode::Never,
            PrefixMode::Conditional,
            PrefixMode::Always,
        ] {
            let snapshot = build(
                mode,
                vec![server("sneaky", 1, &["gateway__list_servers", "ok"])],
            );
            let listed = names(&snapshot);
            assert!(
                listed.iter().all(|n| !n.starts_with("gateway__")),
                "{mode:?}: {listed:?}"
            );
            assert!(
                listed.contains(&"sneaky__gateway__list_servers".to_owned()),
                "{listed:?}"
            );
        }
    }

    fn build(mode: PrefixMode, servers: Vec<SnapshotServer>) -> CatalogSnapshot<Value> {
        let policy = NamingPolicy::new(mode, "__", 64).expect("policy");
        CatalogSnapshot::build(&policy, servers, &keep)
    }

    #[test]
    fn hidden_servers_keep_their_names_and_routes_but_are_not_listed() {
        let mut sick = server("b", 2, &["echo"]);
        sick.hidden = true;
        let snapshot = build(
            PrefixMode::Conditional,
            vec![server("a", 1, &["echo", "add"]), sick],
        );
        // The hidden server still takes part in naming: `echo` stays prefixed.
        assert_eq!(names(&snapshot), ["a__echo", "add"]);
        let b = ServerName::parse("b").expect("name");
        let routed = snapshot
            .route(ListKind::Tools, None, "b__echo")
            .expect("still routed");
        assert_eq!(routed.route.server, b);
        assert!(snapshot.route(ListKind::Tools, Some(&b), "echo").is_some());
        assert!(
            snapshot
                .page(ListKind::Tools, Some(&b), None, 10)
                .0
                .is_empty()
        );
        assert!(snapshot.has_server(&b) && snapshot.is_hidden(&b));
        assert_eq!(snapshot.len(ListKind::Tools), 2);
    }

    #[test]
    fn always_prefixes_everything() {
        let snapshot = build(
            PrefixMode::Always,
            vec![server("b", 1, &["echo"]), server("a", 2, &["echo", "add"])],
        );
        assert_eq!(names(&snapshot), ["a__add", "a__echo", "b__echo"]);
        let route = snapshot
            .route(ListKind::Tools, None, "a__echo")
            .expect("routed");
        assert_eq!(
            (route.route.server.as_str(), route.route.original.as_str()),
            ("a", "echo")
        );
        assert_eq!(
            route.item["name"], "a__echo",
            "the listed descriptor carries the exposed name"
        );
        assert!(snapshot.conflicts().is_empty());
    }

    #[test]
    fn conditional_prefixes_only_shared_names() {
        let snapshot = build(
            PrefixMode::Conditional,
            vec![server("b", 1, &["echo"]), server("a", 2, &["echo", "add"])],
        );
        assert_eq!(names(&snapshot), ["a__echo", "add", "b__echo"]);
    }

    #[test]
    fn never_keeps_names_and_resolves_clashes_without_dropping() {
        let snapshot = build(
            PrefixMode::Never,
            vec![
                server("late", 9, &["echo"]),
                server("early", 1, &["echo", "add"]),
            ],
        );
        assert_eq!(names(&snapshot), ["add", "echo", "late__echo"]);
        assert_eq!(
            snapshot
                .route(ListKind::Tools, None, "echo")
                .map(|e| e.route.server.as_str()),
            Some("early")
        );
        assert_eq!(snapshot.conflicts().len(), 1, "{:?}", snapshot.conflicts());
    }

    #[test]
    fn per_server_views_keep_original_names() {
        let snapshot = build(PrefixMode::Always, vec![server("a", 1, &["echo", "add"])]);
        let a = ServerName::parse("a").expect("name");
        let (items, more) = snapshot.page(ListKind::Tools, Some(&a), None, 10);
        assert_eq!(
            items.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["add", "echo"]
        );
        assert!(!more);
        assert_eq!(items[1].item["name"], "echo");
        assert!(
            snapshot
                .route(ListKind::Tools, Some(&a), "a__echo")
                .is_none()
        );
    }

    #[test]
    fn resources_carry_their_server() {
        let snapshot = build(
            PrefixMode::Always,
            vec![server("a", 1, &[]), server("b", 2, &[])],
        );
        let (items, _) = snapshot.page(ListKind::Resources, None, None, 10);
        assert_eq!(
            items.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["gw+a:file:///readme", "gw+b:file:///readme"]
        );
        let route = snapshot
            .route_resource(None, "gw+b:file:///readme")
            .expect("routed");
        assert_eq!(
            (route.server.as_str(), route.original.as_str()),
            ("b", "file:///readme")
        );
        assert!(
            snapshot
                .route_resource(None, "gw+zzz:file:///readme")
                .is_none(),
            "unknown server"
        );
        assert!(
            snapshot.route_resource(None, "file:///readme").is_none(),
            "not an exposed URI"
        );
    }

    #[test]
    fn pages_are_stable_and_complete() {
        let tools: Vec<String> = (0..25).map(|i| format!("t{i:02}")).collect();
        let refs: Vec<&str> = tools.iter().map(String::as_str).collect();
        let snapshot = build(PrefixMode::Always, vec![server("s", 1, &refs)]);
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (items, more) = snapshot.page(ListKind::Tools, None, after.as_deref(), 10);
            seen.extend(items.iter().map(|e| e.key.clone()));
            after = items.last().map(|e| e.key.clone());
            if !more {
                break;
            }
        }
        assert_eq!(seen.len(), 25);
        assert_eq!(seen, names(&snapshot));
        let (rest, more) = snapshot.page(ListKind::Tools, None, Some("s__t23"), 10);
        assert_eq!((rest.len(), more), (1, false));
        assert_eq!(
            snapshot
                .page(ListKind::Tools, None, Some("zzz"), 10)
                .0
                .len(),
            0
        );
    }

    #[test]
    fn ten_thousand_tools_build() {
        let tools: Vec<String> = (0..10_000).map(|i| format!("tool_{i}")).collect();
        let refs: Vec<&str> = tools.iter().map(String::as_str).collect();
        let snapshot = build(PrefixMode::Always, vec![server("big", 1, &refs)]);
        assert_eq!(snapshot.len(ListKind::Tools), 10_000);
        assert!(
            snapshot
                .route(ListKind::Tools, None, "big__tool_9999")
                .is_some()
        );
    }
}
