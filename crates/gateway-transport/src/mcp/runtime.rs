//! The MCP runtime: keeps the catalog snapshot in step with the registry and the
//! upstreams, and tells connected clients when their lists change.
//!
//! Work arrives on one queue (registry changes, upstream `list_changed`, the periodic
//! discovery tick, `POST /api/v1/servers/{id}/refresh`) and is done off the request
//! path: connect, fetch every page of tools/prompts/resources/templates, store the
//! catalog, rebuild the snapshot, notify. A dead upstream keeps its last stored
//! catalog, so it never empties the aggregate list; its failure is logged and
//! recorded as its health.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use futures_util::StreamExt;
use gateway_domain::{
    Catalog, Descriptor, HealthState, HealthStatus, RegistryEvent, RegistryListener, ServerId,
    ServerName, UpstreamServer, ViewName,
};
use gateway_registry::Registry;
use gateway_router::Source;
use gateway_router::snapshot::ListKind;
use gateway_router::{CatalogSnapshot, NamingPolicy, SnapshotServer};
use rmcp::RoleServer;
use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};
use rmcp::service::Peer;
use rmcp::service::SubscriptionSink;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::monitor::{Change, Monitor, ResilienceSettings, UpstreamState, Verdict, jittered, lock};
use super::upstream::{UpstreamEvent, UpstreamPool, UpstreamSettings};

/// How many upstreams a discovery pass refreshes at once.
const DISCOVERY_CONCURRENCY: usize = 8;

/// Attempts at fetching a catalog on an open session.
const LISTING_ATTEMPTS: u32 = 3;

/// Attempts at one health check.
const PING_ATTEMPTS: u32 = 2;

/// How often access and rate-limit rules are read again from the database.
const RULES_RELOAD: Duration = Duration::from_secs(30);

/// Settings of the MCP face.
#[derive(Debug, Clone)]
pub struct McpSettings {
    /// How exposed names are formed.
    pub naming: NamingPolicy,
    /// Items per page of `*/list` results.
    pub page_size: usize,
    /// Default per-call timeout (a server's own `request_timeout_ms` wins).
    pub request_timeout: Duration,
    /// How often every enabled upstream's catalog is re-fetched.
    pub discovery_interval: Duration,
    /// Upstream connection behaviour.
    pub upstream: UpstreamSettings,
    /// Health checks, circuit breakers, bulkheads and load balancing.
    pub resilience: ResilienceSettings,
    /// With authentication on: the roles that see everything, and access rules are
    /// enforced for everyone else. `None`: no authentication, everything is visible.
    pub admin_roles: Option<Vec<String>>,
    /// Takes the rate-limit decisions (in process, or shared through Redis).
    pub limiter: Limiter,
    /// Where audit events go; `None`: no audit.
    pub audit: Option<super::audit::AuditPolicy>,
    /// Serve the gateway's own tools and resources on `/mcp`.
    pub gateway_tools: bool,
    /// `/mcp` lists only the search/describe/call tools unless `?view=full`.
    pub compact_by_default: bool,
    /// Tools (and prompts, resources, templates) one upstream may list at most; a
    /// catalog over it is refused and the last known one kept.
    pub max_items_per_upstream: usize,
    /// The link to the other replicas: who runs each periodic check and discovery
    /// round, and where their outcomes go.
    pub cluster: Cluster,
}

/// The link to the other replicas (a newtype so the settings stay `Debug`).
#[derive(Clone)]
pub struct Cluster(pub Arc<dyn gateway_domain::ClusterBus>);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster({})", self.0.replica())
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Self(gateway_domain::SingleReplica::new("single"))
    }
}

/// The rate limiter the runtime asks (a newtype so the settings stay `Debug`).
#[derive(Clone)]
pub struct Limiter(pub Arc<dyn gateway_domain::RateLimiter>);

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limiter")
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Self(Arc::new(Unlimited))
    }
}

/// Allows everything: for runtimes built without a limiter (rules still parse, no
/// budget is ever kept).
struct Unlimited;

#[async_trait::async_trait]
impl gateway_domain::RateLimiter for Unlimited {
    async fn acquire(&self, _budgets: &[gateway_domain::Budget]) -> gateway_domain::RateDecision {
        gateway_domain::RateDecision::Allowed { remaining: None }
    }
}

impl Default for McpSettings {
    fn default() -> Self {
        Self {
            naming: NamingPolicy::default(),
            page_size: 500,
            request_timeout: Duration::from_secs(60),
            discovery_interval: Duration::from_secs(300),
            upstream: UpstreamSettings::default(),
            resilience: ResilienceSettings::default(),
            admin_roles: None,
            limiter: Limiter::default(),
            audit: None,
            gateway_tools: true,
            compact_by_default: false,
            max_items_per_upstream: 10_000,
            cluster: Cluster::default(),
        }
    }
}

/// A listed item, already in the wire type rmcp serves.
#[derive(Debug, Clone)]
pub enum McpItem {
    /// A tool.
    Tool(Tool),
    /// A prompt.
    Prompt(Prompt),
    /// A resource.
    Resource(Resource),
    /// A resource template.
    Template(ResourceTemplate),
}

impl McpItem {
    /// Its name (tools, prompts) or URI (resources, templates).
    pub fn key(&self) -> &str {
        match self {
            Self::Tool(tool) => &tool.name,
            Self::Prompt(prompt) => &prompt.name,
            Self::Resource(resource) => &resource.uri,
            Self::Template(template) => &template.uri_template,
        }
    }
}

/// Converts a stored descriptor into the wire type; an item the upstream described
/// invalidly is dropped with a warning rather than breaking the whole list.
pub(super) fn to_item(kind: ListKind, key: &str, value: &Value) -> Option<McpItem> {
    parse_item(kind, value)
        .map_err(|error| tracing::warn!(item = key, ?kind, %error, "upstream item is invalid; not listed"))
        .ok()
}

/// An item in its wire type, or why it is not a valid one.
fn parse_item(kind: ListKind, value: &Value) -> Result<McpItem, serde_json::Error> {
    match kind {
        ListKind::Tools => Tool::deserialize(value).map(McpItem::Tool),
        ListKind::Prompts => Prompt::deserialize(value).map(McpItem::Prompt),
        ListKind::Resources => Resource::deserialize(value).map(McpItem::Resource),
        ListKind::ResourceTemplates => ResourceTemplate::deserialize(value).map(McpItem::Template),
    }
}

/// Which endpoint a client is on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `/mcp`: every enabled upstream under exposed names, and the gateway's own
    /// tools and resources.
    Aggregate,
    /// `/mcp/servers/{name}`: one upstream under its original names.
    Server(ServerName),
    /// `/mcp/views/{name}`: a curated subset.
    View(ViewName),
}

impl Scope {
    /// The server of a per-server endpoint.
    pub fn server(&self) -> Option<&ServerName> {
        match self {
            Self::Server(name) => Some(name),
            _ => None,
        }
    }
}

/// A connected client to tell about list changes.
#[derive(Clone)]
enum Listener {
    /// A session-based client (notified on its GET stream).
    Session(Peer<RoleServer>),
    /// A 2026-07-28 client's `subscriptions/listen` stream.
    Subscription(SubscriptionSink),
}

/// What the runtime's loop receives besides queued work.
pub struct RuntimeInbox {
    upstream_events: mpsc::UnboundedReceiver<UpstreamEvent>,
    health_changes: mpsc::UnboundedReceiver<Change>,
}

/// A client session subscribed to a resource.
pub struct Subscriber {
    /// Its `Mcp-Session-Id` (one subscription per session and resource).
    pub session: String,
    /// Where to send `notifications/resources/updated`.
    pub peer: Peer<RoleServer>,
    /// The URI as that client knows it.
    pub exposed_uri: String,
}

/// Clients watching one upstream resource, and the upstream watch itself.
struct ResourceWatch {
    subscribers: Vec<Subscriber>,
    /// The endpoint the upstream subscription lives on (it stays there).
    endpoint: usize,
    /// The `subscriptions/listen` stream of a 2026-07-28 upstream.
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Work for the runtime's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Reconnect if needed and re-fetch one server's catalog.
    Refresh(ServerId),
    /// A server is gone: close its session and rebuild.
    Forget(ServerId),
    /// Rebuild the snapshot from the stored catalogs.
    Rebuild,
    /// Re-fetch every enabled server.
    RefreshAll,
    /// Catch up with the database: refresh only the servers this replica does not
    /// know (or knows at an older version), close those gone, rebuild.
    Reconcile,
    /// Reload the access rules (and re-list for every client).
    ReloadAccess,
}

/// Feeds registry changes into the runtime's queue (the registry calls it
/// synchronously, so it only enqueues).
#[derive(Clone)]
pub struct WorkQueue(mpsc::UnboundedSender<Work>);

impl WorkQueue {
    /// A queue and its receiving end (given to [`McpRuntime::run`]).
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Work>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Self(sender), receiver)
    }

    /// Enqueues work.
    pub fn push(&self, work: Work) {
        let _ = self.0.send(work);
    }
}

impl RegistryListener for WorkQueue {
    fn registry_changed(&self, event: RegistryEvent) {
        self.push(match event {
            RegistryEvent::Upserted(id) => Work::Refresh(id),
            RegistryEvent::Removed(id) => Work::Forget(id),
            RegistryEvent::CatalogChanged(_) | RegistryEvent::ViewsChanged => Work::Rebuild,
            // The subregistry is not part of what `/mcp` serves.
            RegistryEvent::PublishedChanged => return,
            RegistryEvent::AccessRulesChanged | RegistryEvent::RateLimitsChanged => {
                Work::ReloadAccess
            }
        });
    }
}

/// The current routing state, swapped whole.
pub struct Current {
    /// Names and items.
    pub snapshot: CatalogSnapshot<McpItem>,
    /// Enabled servers by id, for forwarding.
    pub servers: HashMap<ServerId, UpstreamServer>,
    /// The curated views, materialised against this snapshot.
    pub views: HashMap<ViewName, Arc<super::views::ViewListing>>,
    /// Catalog hash and visibility per server, to tell which servers' lists changed.
    hashes: BTreeMap<ServerName, (String, bool)>,
    /// Compiled input schemas of the tools `gateway__call_tool` checked, by exposed
    /// name (`None`: the schema does not compile). Dropped with the snapshot.
    validators: Mutex<HashMap<String, Option<Arc<jsonschema::Validator>>>>,
    /// The tools (upstream names, by server) whose input schema asks for arguments as
    /// `Mcp-Param-*` headers: found once per snapshot, usually none.
    header_argument_tools: HashMap<ServerId, std::collections::HashSet<String>>,
}

/// Compiled schemas kept per snapshot at most (then the cache starts over).
const MAX_VALIDATORS: usize = 4096;

impl Current {
    /// Whether `tool` of `server` (its upstream name) wants arguments as headers
    /// (see `direct::wants_param_headers`).
    pub fn wants_header_arguments(&self, server: ServerId, tool: &str) -> bool {
        self.header_argument_tools
            .get(&server)
            .is_some_and(|tools| tools.contains(tool))
    }

    /// The validator of the input schema of tool `name` on `/mcp` (compiled once per
    /// snapshot); `None` for an unknown tool or a schema that does not compile.
    pub fn validator(&self, name: &str) -> Option<Arc<jsonschema::Validator>> {
        if let Some(cached) = lock(&self.validators).get(name) {
            return cached.clone();
        }
        let exposed = self.snapshot.route(ListKind::Tools, None, name)?;
        let McpItem::Tool(tool) = &exposed.item else {
            return None;
        };
        let compiled = super::gateway::compile_schema(tool).map(Arc::new);
        let mut cache = lock(&self.validators);
        if cache.len() >= MAX_VALIDATORS {
            cache.clear();
        }
        cache.insert(name.to_owned(), compiled.clone());
        compiled
    }
}

/// The MCP runtime shared by every downstream session.
pub struct McpRuntime {
    registry: Registry,
    watches: tokio::sync::Mutex<HashMap<(ServerId, String), ResourceWatch>>,
    /// Upstream sessions.
    pub pool: UpstreamPool,
    /// Live health, breakers, bulkheads and drains of the enabled upstreams.
    pub monitor: Monitor,
    /// The process's metrics.
    pub metrics: Arc<gateway_telemetry::Metrics>,
    /// The access rules in force (RBAC), swapped whole when they change.
    access: RwLock<Arc<gateway_domain::AccessRules>>,
    /// The rate-limit rules in force, swapped whole when they change.
    limits: RwLock<Arc<gateway_domain::RateLimits>>,
    /// A handle to itself for the health-check tasks (which must not keep it alive).
    this: std::sync::Weak<McpRuntime>,
    /// The runtime the checks run on (a rebuild may run on an HTTP worker's).
    spawner: tokio::runtime::Handle,
    /// Rebuilds one at a time, so an older view never lands after a newer one.
    rebuilding: tokio::sync::Mutex<()>,
    /// Rule reloads one at a time, so an older read never lands after a newer one
    /// (a revoked grant must not come back).
    reloading_rules: tokio::sync::Mutex<()>,
    /// Sends health changes back to the loop when re-listing must be retried.
    changes: mpsc::UnboundedSender<Change>,
    current: RwLock<Arc<Current>>,
    listeners: Mutex<Vec<(Scope, Listener)>>,
    /// Sessions subscribed to the gateway's own resources, by URI.
    gateway_watches: Mutex<HashMap<String, Vec<Subscriber>>>,
    /// Settings.
    pub settings: McpSettings,
    queue: WorkQueue,
}

impl McpRuntime {
    /// Builds the runtime; `upstream_events` receives the pool's list changes and is
    /// given back to [`McpRuntime::run`].
    pub fn new(
        registry: Registry,
        settings: McpSettings,
        queue: WorkQueue,
        metrics: Arc<gateway_telemetry::Metrics>,
    ) -> Result<(Arc<Self>, RuntimeInbox), String> {
        let (events, upstream_events) = mpsc::unbounded_channel();
        let (changes, health_changes) = mpsc::unbounded_channel();
        let pool = UpstreamPool::new(settings.upstream.clone(), events, metrics.clone())?;
        let monitor = Monitor::new(settings.resilience.clone(), changes.clone());
        let spawner = tokio::runtime::Handle::try_current()
            .map_err(|_| "the MCP runtime must be built inside a tokio runtime".to_owned())?;
        let empty = Current {
            snapshot: CatalogSnapshot::default(),
            servers: HashMap::new(),
            views: HashMap::new(),
            hashes: BTreeMap::new(),
            validators: Mutex::default(),
            header_argument_tools: HashMap::new(),
        };
        // The configuration file's rules hold from the start, even while the database
        // cannot be read.
        let initial_access = gateway_domain::AccessRules::new(
            registry.configured_access_rules().to_vec(),
            settings.admin_roles.clone().unwrap_or_default(),
        );
        let initial_limits =
            gateway_domain::RateLimits::new(registry.configured_rate_limits().to_vec());
        let runtime = Arc::new_cyclic(|this| Self {
            registry,
            pool,
            monitor,
            metrics,
            access: RwLock::new(Arc::new(initial_access)),
            limits: RwLock::new(Arc::new(initial_limits)),
            this: this.clone(),
            spawner,
            rebuilding: tokio::sync::Mutex::new(()),
            reloading_rules: tokio::sync::Mutex::new(()),
            changes,
            current: RwLock::new(Arc::new(empty)),
            listeners: Mutex::new(Vec::new()),
            gateway_watches: Mutex::new(HashMap::new()),
            watches: tokio::sync::Mutex::new(HashMap::new()),
            settings,
            queue,
        });
        Ok((
            runtime,
            RuntimeInbox {
                upstream_events,
                health_changes,
            },
        ))
    }

    /// The registry's use cases (the gateway's own tools call them, as REST does).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The current snapshot (cheap: one `Arc` clone).
    pub fn current(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The access rules in force (cheap: one `Arc` clone).
    pub fn access(&self) -> Arc<gateway_domain::AccessRules> {
        self.access
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Requests in flight to all upstreams.
    pub fn in_flight(&self) -> usize {
        self.monitor.all().iter().map(|u| u.in_flight()).sum()
    }

    /// The rate-limit rules in force (cheap: one `Arc` clone).
    pub fn limits(&self) -> Arc<gateway_domain::RateLimits> {
        self.limits
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Loads the access and rate-limit rules from the registry (each kept as it is
    /// if it cannot).
    async fn reload_access(&self) {
        let _one_at_a_time = self.reloading_rules.lock().await;
        match self.registry.rate_limit_rules().await {
            Ok(rules) => {
                tracing::info!(rules = rules.len(), "rate-limit rules loaded");
                *self.limits.write().unwrap_or_else(PoisonError::into_inner) =
                    Arc::new(gateway_domain::RateLimits::new(rules));
            }
            Err(error) => {
                tracing::warn!(%error, "cannot load rate-limit rules; keeping the current ones")
            }
        }
        let Some(admin_roles) = self.settings.admin_roles.clone() else {
            return;
        };
        match self.registry.access_rules().await {
            Ok(rules) => {
                tracing::info!(rules = rules.len(), "access rules loaded");
                *self.access.write().unwrap_or_else(PoisonError::into_inner) =
                    Arc::new(gateway_domain::AccessRules::new(rules, admin_roles));
            }
            Err(error) => {
                tracing::warn!(%error, "cannot load access rules; keeping the current ones")
            }
        }
    }

    /// Loads the access and rate-limit rules now and re-lists every client (whose view
    /// may have changed). The REST API calls it before answering a rule change, so
    /// the change is in force when the client hears back.
    pub async fn apply_rules(&self) {
        self.reload_access().await;
        let current = self.current();
        let everyone: HashSet<&ServerName> =
            current.servers.values().map(|s| &s.spec.name).collect();
        let views: HashSet<&ViewName> = current.views.keys().collect();
        self.notify(&everyone, &views).await;
    }

    /// Enqueues work (the REST refresh endpoint uses it).
    pub fn enqueue(&self, work: Work) {
        self.queue.push(work);
    }

    /// Remembers a client to notify of list changes.
    pub fn add_session_listener(&self, scope: Scope, peer: Peer<RoleServer>) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((scope, Listener::Session(peer)));
    }

    /// Remembers a 2026-07-28 subscription stream.
    pub fn add_subscription(&self, scope: Scope, sink: SubscriptionSink) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((scope, Listener::Subscription(sink)));
    }

    /// Loads the rules, the stored catalogs and the views, so the first request after
    /// a start is served from the last known state (call before serving, then
    /// [`McpRuntime::run`]). A database that cannot be read leaves the empty state;
    /// `run` rebuilds again after its first discovery, and reloads the rules on its
    /// period.
    pub async fn load(&self) {
        self.reload_access().await;
        self.rebuild().await;
    }

    /// Serves the queue until the process stops: refreshes every upstream, then
    /// serves changes (call [`McpRuntime::load`] first).
    pub async fn run(
        self: Arc<Self>,
        mut work: mpsc::UnboundedReceiver<Work>,
        inbox: RuntimeInbox,
    ) {
        let RuntimeInbox {
            mut upstream_events,
            mut health_changes,
        } = inbox;
        // Rebuilds at the end, so a state `load` could not read comes in here.
        self.refresh_all().await;
        let mut tick = tokio::time::interval(self.settings.discovery_interval);
        tick.tick().await;
        // Rules changed through another replica arrive as cluster events; this
        // period is the safety net for an event the link lost.
        let mut rules_tick = tokio::time::interval(RULES_RELOAD);
        rules_tick.tick().await;
        let mut relist = HashSet::new();
        let mut relist_at: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                Some(item) = work.recv() => {
                    // Coalesce a burst: many changes, one rebuild.
                    let mut batch = vec![item];
                    while let Ok(more) = work.try_recv() {
                        batch.push(more);
                    }
                    self.handle(batch).await;
                }
                Some(event) = upstream_events.recv() => {
                    // Coalesce a burst (an upstream may flood these): list changes
                    // wait out RELIST_DELAY, so a server is re-listed at most once per
                    // delay; each resource update of the burst is relayed once.
                    let mut events = vec![event];
                    while let Ok(more) = upstream_events.try_recv() {
                        events.push(more);
                    }
                    let mut seen = HashSet::new();
                    for event in events {
                        match event {
                            UpstreamEvent::ListChanged(id) => {
                                relist.insert(id);
                                relist_at.get_or_insert_with(|| tokio::time::Instant::now() + RELIST_DELAY);
                            }
                            UpstreamEvent::ResourceUpdated(id, uri) => {
                                if seen.insert((id, uri.clone())) {
                                    self.resource_updated(id, &uri).await;
                                }
                            }
                        }
                    }
                }
                _ = sleep_until_some(relist_at) => {
                    relist_at = None;
                    for id in std::mem::take(&mut relist) {
                        self.refresh(id).await;
                    }
                }
                Some(change) = health_changes.recv() => {
                    let mut changes = vec![change];
                    while let Ok(more) = health_changes.try_recv() {
                        changes.push(more);
                    }
                    self.health_changed(changes).await;
                }
                // One replica re-fetches the catalogs for all; the others rebuild
                // when the stored catalogs change.
                _ = tick.tick() => {
                    let lease = self.settings.discovery_interval.mul_f64(0.8);
                    if self.settings.cluster.0.claim("discovery", lease).await {
                        self.refresh_all().await;
                    } else {
                        // Another replica re-fetches; this one still catches up with
                        // the database, in case a change event was lost.
                        self.reconcile().await;
                    }
                }
                _ = rules_tick.tick() => self.reload_access().await,
                else => break,
            }
        }
    }

    async fn handle(&self, batch: Vec<Work>) {
        let mut rebuild = false;
        let mut refreshed = HashSet::new();
        for item in batch {
            match item {
                Work::Refresh(id) => {
                    if refreshed.insert(id) {
                        self.refresh_one(id).await;
                        rebuild = true;
                    }
                }
                Work::Forget(id) => {
                    if let Some(server) = self.current().servers.get(&id) {
                        self.metrics.calls.forget(server.spec.name.as_str());
                    }
                    self.pool.close(id).await;
                    rebuild = true;
                }
                Work::Rebuild => rebuild = true,
                Work::RefreshAll => self.refresh_all().await,
                Work::Reconcile => self.reconcile().await,
                Work::ReloadAccess => self.apply_rules().await,
            }
        }
        if rebuild {
            self.rebuild().await;
        }
    }

    async fn reconcile(&self) {
        let servers = match self.registry.all_servers().await {
            Ok(servers) => servers,
            Err(error) => {
                tracing::warn!(%error, "cannot list servers to catch up");
                return;
            }
        };
        let current = self.current();
        for server in servers.iter().filter(|s| s.spec.enabled) {
            if current
                .servers
                .get(&server.id)
                .is_none_or(|known| known.version != server.version)
            {
                self.refresh_server(server).await;
            }
        }
        for id in current.servers.keys() {
            if !servers.iter().any(|s| s.id == *id && s.spec.enabled) {
                self.pool.close(*id).await;
            }
        }
        self.rebuild().await;
    }

    async fn refresh_all(&self) {
        match self.registry.all_servers().await {
            Ok(servers) => {
                // A few at a time: one slow or dead upstream must not delay the others.
                let enabled = servers.into_iter().filter(|s| s.spec.enabled);
                futures_util::stream::iter(enabled)
                    .for_each_concurrent(DISCOVERY_CONCURRENCY, |server| async move {
                        self.refresh_server(&server).await;
                    })
                    .await;
                self.rebuild().await;
            }
            Err(error) => tracing::warn!(%error, "cannot list servers for discovery"),
        }
    }

    /// Reconnects if needed and re-fetches one server's catalog, then rebuilds the
    /// snapshot.
    pub async fn refresh(&self, id: ServerId) {
        self.refresh_one(id).await;
        self.rebuild().await;
    }

    /// The refresh itself, without the rebuild (a batch rebuilds once).
    async fn refresh_one(&self, id: ServerId) {
        match self
            .registry
            .get(&gateway_registry::ServerRef::Id(id))
            .await
        {
            Ok(server) if server.spec.enabled => self.refresh_server(&server).await,
            Ok(_) | Err(gateway_registry::RegistryError::NotFound(_)) => self.pool.close(id).await,
            Err(error) => tracing::warn!(%error, server = %id, "cannot read server for discovery"),
        }
    }

    async fn refresh_server(&self, server: &UpstreamServer) {
        let upstream = self.monitor.ensure(server);
        let mut last_error = String::from("no endpoint");
        // The balancer's order: a dead endpoint fails over to the next.
        for endpoint in self.monitor.order(&upstream) {
            let started = std::time::Instant::now();
            let outcome = self.discover(server, endpoint).await;
            let verdict = match &outcome {
                Ok(_) => Verdict::Answered,
                Err(reason) => Verdict::Failed(reason.clone()),
            };
            self.monitor.record_probe(
                server.id,
                endpoint,
                Source::Discovery,
                &verdict,
                started.elapsed(),
            );
            let (catalog, version) = match outcome {
                Ok(fetched) => fetched,
                Err(reason) => {
                    last_error = reason;
                    continue;
                }
            };
            if version.is_some() {
                *lock(&upstream.protocol_version) = version;
            }
            if let Err(error) = self.registry.record_catalog(server.id, &catalog).await {
                tracing::warn!(server = %server.spec.name, %error, "cannot store catalog");
            }
            tracing::info!(
                server = %server.spec.name, tools = catalog.tools.len(), prompts = catalog.prompts.len(),
                resources = catalog.resources.len(), "catalog refreshed"
            );
            self.persist_health(&upstream).await;
            return;
        }
        tracing::warn!(server = %server.spec.name, reason = %last_error, "discovery failed; serving the last known catalog");
        self.persist_health(&upstream).await;
    }

    /// Connects to one endpoint and fetches its catalog. Listing is safe to repeat, so
    /// a failed fetch on an open session is retried with jittered backoff.
    async fn discover(
        &self,
        server: &UpstreamServer,
        endpoint: usize,
    ) -> Result<(Catalog, Option<String>), String> {
        let (peer, version) = self
            .pool
            .peer(server, endpoint, false)
            .await
            .map_err(|e| e.to_string())?;
        // An upstream that connects but never answers its lists must not stall discovery.
        let limit = self.settings.request_timeout;
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let cap = self.settings.max_items_per_upstream;
            let error = match tokio::time::timeout(limit, fetch_catalog(&peer, cap)).await {
                Ok(Ok((catalog, rejected))) => {
                    self.report_rejected(&server.spec.name, &rejected);
                    return Ok((catalog, version));
                }
                Ok(Err(error)) => error,
                Err(_) => {
                    return Err(format!(
                        "lists not answered within {} ms",
                        limit.as_millis()
                    ));
                }
            };
            if attempt >= LISTING_ATTEMPTS || peer.is_transport_closed() {
                return Err(error);
            }
            tracing::debug!(server = %server.spec.name, %error, attempt, "listing failed; retrying");
            tokio::time::sleep(jittered(backoff)).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    /// Logs (the first few) and counts the list entries an upstream sent that were
    /// left out of its catalog.
    fn report_rejected(&self, server: &ServerName, rejected: &[String]) {
        if rejected.is_empty() {
            return;
        }
        self.metrics
            .upstream_faults
            .with_label_values(&[server.as_str(), "invalid_item"])
            .inc_by(u64::try_from(rejected.len()).unwrap_or(u64::MAX));
        for reason in rejected.iter().take(10) {
            tracing::warn!(server = %server, %reason, "upstream list entry left out");
        }
        if rejected.len() > 10 {
            tracing::warn!(server = %server, more = rejected.len() - 10, "more upstream list entries left out");
        }
    }

    /// Writes a server's combined health to the registry (what `GET /servers` shows
    /// and what survives a restart).
    async fn persist_health(&self, upstream: &UpstreamState) {
        let view = upstream.view();
        let check = upstream.last_check();
        let last = upstream.last_observation();
        let health = HealthStatus {
            state: view.state,
            checked_at: Some(
                last.as_ref()
                    .map_or_else(Utc::now, |o| o.at)
                    .trunc_subsecs(6),
            ),
            latency_ms: check
                .as_ref()
                .and_then(|c| i64::try_from(c.latency.as_millis()).ok()),
            error: last.and_then(|o| o.error),
            protocol_version: lock(&upstream.protocol_version).clone(),
        };
        if let Err(error) = self.registry.record_health(upstream.id, &health).await {
            tracing::warn!(server = %upstream.name, %error, "cannot record health");
        }
    }

    /// Servers whose health view changed: re-list those hidden or back (retried while
    /// the database is unreachable), record their health, and fetch the catalog of one
    /// that came back without one.
    async fn health_changed(&self, changes: Vec<Change>) {
        let relist: Vec<Change> = changes.iter().copied().filter(|c| c.relist).collect();
        if !relist.is_empty() && !self.rebuild().await {
            let retry = self.changes.clone();
            self.spawner.spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                for change in relist {
                    let _ = retry.send(change);
                }
            });
        }
        let current = self.current();
        let ids: HashSet<ServerId> = changes.iter().map(|c| c.id).collect();
        let health_uris: Vec<String> = ids
            .iter()
            .filter_map(|id| current.servers.get(id))
            .map(|server| super::gateway::health_uri(&server.spec.name))
            .collect();
        self.gateway_resources_updated(&health_uris).await;
        for id in ids {
            let Some(upstream) = self.monitor.get(id) else {
                continue;
            };
            self.persist_health(&upstream).await;
            let never_listed = current
                .hashes
                .get(&upstream.name)
                .is_some_and(|(hash, _)| hash.is_empty());
            if upstream.view().available && never_listed {
                self.enqueue(Work::Refresh(id));
            }
        }
    }

    /// Starts the periodic checks of each endpoint of a server. The first checks are
    /// spread over one interval and later ones jittered, so 500 upstreams do not fire
    /// at once; a failing endpoint is re-checked sooner, to confirm it quickly.
    fn start_checks(&self, upstream: &UpstreamState) {
        let interval = self.settings.resilience.check_interval;
        for endpoint in 0..upstream.endpoints.len() {
            let (runtime, id) = (self.this.clone(), upstream.id);
            upstream.add_check_task(self.spawner.spawn(async move {
                let mut wait = interval.mul_f64(fastrand::f64());
                let mut confirm = false;
                loop {
                    tokio::time::sleep(wait).await;
                    let Some(runtime) = runtime.upgrade() else {
                        break;
                    };
                    // A regular check is claimed first, so N replicas check each
                    // endpoint once per interval between them; a confirming re-check
                    // (after a failure) is always run here.
                    let claimed = confirm
                        || runtime
                            .settings
                            .cluster
                            .0
                            .claim(&format!("check:{id}:{endpoint}"), interval.mul_f64(0.8))
                            .await;
                    confirm = claimed && runtime.check(id, endpoint).await;
                    let next = if confirm { interval / 4 } else { interval };
                    wait = next.mul_f64(0.9 + fastrand::f64() * 0.2);
                }
            }));
        }
    }

    /// One active check of one endpoint, now. Returns whether it failed while the
    /// endpoint is not yet unhealthy (so the next check comes sooner).
    async fn check(&self, id: ServerId, endpoint: usize) -> bool {
        let Some(server) = self.current().servers.get(&id).cloned() else {
            return false;
        };
        self.check_endpoint(&server, endpoint).await
    }

    async fn check_endpoint(&self, server: &UpstreamServer, endpoint: usize) -> bool {
        let id = server.id;
        let timeout = self.settings.resilience.check_timeout;
        let mut attempt = 0;
        let (verdict, latency) = loop {
            attempt += 1;
            let started = std::time::Instant::now();
            match self.pool.ping(server, endpoint, timeout).await {
                Ok((version, round_trip)) => {
                    if let Some(upstream) = self.monitor.get(id)
                        && version.is_some()
                    {
                        *lock(&upstream.protocol_version) = version;
                    }
                    break (Verdict::Answered, round_trip);
                }
                // A ping is safe to repeat: once, when it was lost on an open session
                // (which is then re-opened), never after a timeout.
                Err((_, true)) if attempt < PING_ATTEMPTS => {
                    tokio::time::sleep(jittered(Duration::from_millis(50))).await;
                }
                Err((reason, _)) => break (Verdict::Failed(reason), started.elapsed()),
            }
        };
        let failed = matches!(verdict, Verdict::Failed(_));
        self.settings
            .cluster
            .0
            .publish(gateway_domain::ClusterEvent::HealthChecked {
                server: id,
                endpoint,
                error: match &verdict {
                    Verdict::Answered => None,
                    Verdict::Failed(reason) | Verdict::TimedOut(reason) => Some(reason.clone()),
                },
                latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                protocol_version: self
                    .monitor
                    .get(id)
                    .and_then(|u| lock(&u.protocol_version).clone()),
            });
        self.metrics
            .upstream_checks
            .with_label_values(&[
                server.spec.name.as_str(),
                if failed { "failed" } else { "ok" },
            ])
            .inc();
        self.monitor
            .record_probe(id, endpoint, Source::Check, &verdict, latency);
        failed
            && self.monitor.get(id).is_some_and(|upstream| {
                upstream
                    .endpoints
                    .get(endpoint)
                    .is_some_and(|e| e.state() != HealthState::Unhealthy)
            })
    }

    /// Drains a server (no new calls; those in flight finish) or ends its drain, here
    /// and on every other replica. Returns this replica's calls in flight to it.
    pub fn drain(&self, id: ServerId, draining: bool) -> Option<usize> {
        self.settings
            .cluster
            .0
            .publish(gateway_domain::ClusterEvent::ServerDrained {
                server: id,
                draining,
            });
        self.monitor.set_draining(id, draining)
    }

    /// Applies a health check another replica ran for all (unknown servers and
    /// endpoints are ignored: this replica has not caught up with them yet).
    pub fn apply_remote_check(
        &self,
        id: ServerId,
        endpoint: usize,
        error: Option<String>,
        latency: Duration,
        protocol_version: Option<String>,
    ) {
        let Some(upstream) = self.monitor.get(id) else {
            return;
        };
        if endpoint >= upstream.endpoints.len() {
            return;
        }
        if let Some(version) = protocol_version {
            *lock(&upstream.protocol_version) = Some(version);
        }
        let verdict = error.map_or(Verdict::Answered, Verdict::Failed);
        self.monitor
            .record_probe(id, endpoint, Source::Check, &verdict, latency);
    }

    /// Checks every endpoint of a server now (`POST /api/v1/servers/{id}/check`).
    pub async fn check_now(&self, server: &UpstreamServer) {
        let endpoints = self.monitor.ensure(server).endpoints.len();
        futures_util::future::join_all((0..endpoints).map(|e| self.check_endpoint(server, e)))
            .await;
    }

    /// Rebuilds the snapshot from the registry and the stored catalogs, swaps it in
    /// and notifies the clients whose lists changed. Returns false when the database
    /// could not be read (the current snapshot stays).
    pub async fn rebuild(&self) -> bool {
        let _one_at_a_time = self.rebuilding.lock().await;
        let servers = match self.registry.all_servers().await {
            Ok(servers) => servers,
            Err(error) => {
                tracing::warn!(%error, "cannot rebuild the catalog snapshot; keeping the current one");
                return false;
            }
        };
        let mut catalogs = match self.registry.stored_catalogs().await {
            Ok(catalogs) => catalogs,
            Err(error) => {
                tracing::warn!(%error, "cannot read stored catalogs; keeping the current snapshot");
                return false;
            }
        };
        let enabled: Vec<UpstreamServer> = servers.into_iter().filter(|s| s.spec.enabled).collect();
        for id in self.monitor.sync(&enabled.iter().collect::<Vec<_>>()) {
            // Its endpoints changed: sessions to the old ones must not linger.
            self.pool.close(id).await;
        }
        for upstream in self.monitor.all() {
            if upstream.claim_checks() {
                self.start_checks(&upstream);
            }
        }
        let mut entries = Vec::new();
        let mut by_id = HashMap::new();
        let mut hashes = BTreeMap::new();
        for server in enabled {
            let catalog = catalogs.remove(&server.id);
            let hidden = self.monitor.hidden(server.id);
            hashes.insert(
                server.spec.name.clone(),
                (
                    catalog
                        .as_ref()
                        .map(|c| c.content_hash.clone())
                        .unwrap_or_default(),
                    hidden,
                ),
            );
            entries.push(SnapshotServer {
                id: server.id,
                name: server.spec.name.clone(),
                created_at: server.created_at,
                catalog,
                hidden,
            });
            by_id.insert(server.id, server);
        }
        let snapshot = CatalogSnapshot::build(&self.settings.naming, entries, &to_item);
        for conflict in snapshot.conflicts() {
            tracing::warn!("name conflict: {conflict}");
        }
        let views = match self.registry.views().await {
            Ok(views) => views
                .iter()
                .map(|view| {
                    let listing = super::views::ViewListing::build(&view.spec, &snapshot, |name| {
                        hashes
                            .get(name)
                            .map(|(hash, _)| hash.clone())
                            .unwrap_or_default()
                    });
                    (view.spec.name.clone(), Arc::new(listing))
                })
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot read the views; keeping the current ones");
                self.current().views.clone()
            }
        };
        let mut header_argument_tools: HashMap<ServerId, std::collections::HashSet<String>> =
            HashMap::new();
        for (exposed, _) in snapshot.all(ListKind::Tools) {
            if let McpItem::Tool(tool) = &exposed.item
                && super::direct::wants_param_headers(&tool.input_schema)
            {
                header_argument_tools
                    .entry(exposed.route.server_id)
                    .or_default()
                    .insert(exposed.route.original.clone());
            }
        }
        let next = Arc::new(Current {
            snapshot,
            servers: by_id,
            views,
            hashes,
            validators: Mutex::default(),
            header_argument_tools,
        });
        let previous = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(PoisonError::into_inner),
            next.clone(),
        );
        let changed: HashSet<&ServerName> = previous
            .hashes
            .iter()
            .filter(|(name, hash)| next.hashes.get(*name) != Some(*hash))
            .chain(
                next.hashes
                    .iter()
                    .filter(|(name, _)| !previous.hashes.contains_key(*name)),
            )
            .map(|(name, _)| name)
            .collect();
        let changed_views: HashSet<&ViewName> = next
            .views
            .iter()
            .filter(|(name, view)| {
                previous
                    .views
                    .get(*name)
                    .is_none_or(|before| before.fingerprint != view.fingerprint)
            })
            .map(|(name, _)| name)
            .chain(
                previous
                    .views
                    .keys()
                    .filter(|name| !next.views.contains_key(*name)),
            )
            .collect();
        if !changed.is_empty() || !changed_views.is_empty() {
            self.notify(&changed, &changed_views).await;
        }
        // The gateway's resources describe the servers: their specs matter too.
        let edited: HashSet<&ServerName> = next
            .servers
            .values()
            .filter(|s| {
                previous
                    .servers
                    .get(&s.id)
                    .is_none_or(|before| before.version != s.version)
            })
            .map(|s| &s.spec.name)
            .chain(changed.iter().copied())
            .collect();
        if !edited.is_empty() || previous.servers.len() != next.servers.len() {
            let mut uris = vec![super::gateway::SERVERS_URI.to_owned()];
            uris.extend(edited.iter().map(|name| super::gateway::server_uri(name)));
            self.gateway_resources_updated(&uris).await;
        }
        true
    }

    /// Subscribes a session to one of the gateway's own resources, announced under
    /// `watched` (the canonical URI); closed sessions are dropped on the way.
    pub fn watch_gateway_resource(&self, watched: &str, subscriber: Subscriber) {
        let mut watches = self
            .gateway_watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for watchers in watches.values_mut() {
            watchers.retain(|s| !s.peer.is_transport_closed());
        }
        watches.retain(|_, watchers| !watchers.is_empty());
        let watchers = watches.entry(watched.to_owned()).or_default();
        watchers.retain(|s| {
            !(s.session == subscriber.session && s.exposed_uri == subscriber.exposed_uri)
        });
        watchers.push(subscriber);
    }

    /// Ends a session's subscription to one of the gateway's own resources (by the
    /// URI it subscribed with).
    pub fn unwatch_gateway_resource(&self, uri: &str, session: &str) {
        let mut watches = self
            .gateway_watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for watchers in watches.values_mut() {
            watchers.retain(|s| !(s.session == session && s.exposed_uri == uri));
        }
        watches.retain(|_, watchers| !watchers.is_empty());
    }

    /// Tells the sessions subscribed to these gateway resources that they changed.
    async fn gateway_resources_updated(&self, uris: &[String]) {
        let peers: Vec<(Peer<RoleServer>, String)> = {
            let mut watches = self
                .gateway_watches
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut peers = Vec::new();
            for uri in uris {
                if let Some(watchers) = watches.get_mut(uri) {
                    watchers.retain(|s| !s.peer.is_transport_closed());
                    peers.extend(
                        watchers
                            .iter()
                            .map(|s| (s.peer.clone(), s.exposed_uri.clone())),
                    );
                }
            }
            peers
        };
        for (peer, uri) in peers {
            let params = rmcp::model::ResourceUpdatedNotificationParam::new(uri);
            let _ = peer.notify_resource_updated(params).await;
        }
    }

    async fn notify(&self, changed: &HashSet<&ServerName>, changed_views: &HashSet<&ViewName>) {
        let listeners: Vec<(Scope, Listener)> = {
            let mut guard = self
                .listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            guard.retain(|(_, listener)| match listener {
                Listener::Session(peer) => !peer.is_transport_closed(),
                Listener::Subscription(_) => true,
            });
            guard
                .iter()
                .map(|(scope, l)| (scope.clone(), l.clone()))
                .collect()
        };
        let mut dead = Vec::new();
        for (index, (scope, listener)) in listeners.iter().enumerate() {
            let concerned = match scope {
                Scope::Aggregate => !changed.is_empty(),
                Scope::Server(server) => changed.contains(server),
                Scope::View(view) => changed_views.contains(view),
            };
            if !concerned {
                continue;
            }
            let delivered = match listener {
                Listener::Session(peer) => {
                    let tools = peer.notify_tool_list_changed().await;
                    let _ = peer.notify_prompt_list_changed().await;
                    let _ = peer.notify_resource_list_changed().await;
                    tools.is_ok()
                }
                Listener::Subscription(sink) => {
                    let tools = sink.notify_tool_list_changed().await;
                    let _ = sink.notify_prompt_list_changed().await;
                    let _ = sink.notify_resource_list_changed().await;
                    tools.is_ok()
                }
            };
            if !delivered {
                dead.push(index);
            }
        }
        if !dead.is_empty() {
            let mut guard = self
                .listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut index = 0;
            guard.retain(|_| {
                let keep = !dead.contains(&index);
                index += 1;
                keep
            });
        }
    }

    /// Subscribes a client session to an upstream resource (`resources/subscribe`).
    pub async fn subscribe(
        &self,
        server: &UpstreamServer,
        original: &str,
        subscriber: Subscriber,
    ) -> Result<(), rmcp::model::ErrorData> {
        let mut watches = self.watches.lock().await;
        let key = (server.id, original.to_owned());
        if !watches.contains_key(&key) {
            let upstream = self.monitor.ensure(server);
            let endpoint = self.monitor.order(&upstream).first().copied().unwrap_or(0);
            let task = self.pool.watch_resource(server, endpoint, original).await?;
            watches.insert(
                key.clone(),
                ResourceWatch {
                    subscribers: Vec::new(),
                    endpoint,
                    task,
                },
            );
        }
        if let Some(watch) = watches.get_mut(&key) {
            watch
                .subscribers
                .retain(|s| s.session != subscriber.session);
            watch.subscribers.push(subscriber);
        }
        Ok(())
    }

    /// Removes a client session's subscription; the upstream one ends with the last.
    pub async fn unsubscribe(&self, server: &UpstreamServer, original: &str, session: &str) {
        let mut watches = self.watches.lock().await;
        let key = (server.id, original.to_owned());
        let Some(watch) = watches.get_mut(&key) else {
            return;
        };
        watch.subscribers.retain(|s| s.session != session);
        if !watch.subscribers.is_empty() {
            return;
        }
        if let Some(watch) = watches.remove(&key) {
            match watch.task {
                Some(task) => task.abort(),
                None => {
                    self.pool
                        .unwatch_resource(server, watch.endpoint, original)
                        .await
                }
            }
        }
    }

    async fn resource_updated(&self, server: ServerId, uri: &str) {
        let mut watches = self.watches.lock().await;
        let Some(watch) = watches.get_mut(&(server, uri.to_owned())) else {
            return;
        };
        watch.subscribers.retain(|s| !s.peer.is_transport_closed());
        for subscriber in &watch.subscribers {
            let params =
                rmcp::model::ResourceUpdatedNotificationParam::new(subscriber.exposed_uri.clone());
            let _ = subscriber.peer.notify_resource_updated(params).await;
        }
    }

    /// Sets the gauges of live state (health, circuits, calls in flight, drains,
    /// catalog sizes) just before a scrape; series of servers that are gone vanish.
    pub fn export_gauges(&self) {
        let metrics = &self.metrics;
        for family in [
            &metrics.upstream_health,
            &metrics.upstream_circuit,
            &metrics.upstream_in_flight,
            &metrics.upstream_draining,
            &metrics.catalog_items,
        ] {
            family.reset();
        }
        let as_gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        for upstream in self.monitor.all() {
            let name = upstream.name.as_str();
            let view = upstream.view();
            for state in HealthState::ALL {
                metrics
                    .upstream_health
                    .with_label_values(&[name, state.as_str()])
                    .set(i64::from(state == view.state));
            }
            for endpoint in &upstream.endpoints {
                let circuit = endpoint.circuit();
                for state in gateway_router::CircuitState::ALL {
                    metrics
                        .upstream_circuit
                        .with_label_values(&[name, endpoint.label.as_str(), state.as_str()])
                        .set(i64::from(state == circuit));
                }
            }
            metrics
                .upstream_in_flight
                .with_label_values(&[name])
                .set(as_gauge(upstream.in_flight()));
            metrics
                .upstream_draining
                .with_label_values(&[name])
                .set(i64::from(view.draining));
        }
        let current = self.current();
        for server in current.servers.values() {
            let name = &server.spec.name;
            for (kind, label) in [
                (ListKind::Tools, "tools"),
                (ListKind::Prompts, "prompts"),
                (ListKind::Resources, "resources"),
                (ListKind::ResourceTemplates, "resource_templates"),
            ] {
                metrics
                    .catalog_items
                    .with_label_values(&[name.as_str(), label])
                    .set(as_gauge(current.snapshot.server_len(name, kind)));
            }
        }
    }

    /// Stops the health checks and closes every upstream session (stdio children
    /// end), at shutdown.
    pub async fn shutdown(&self) {
        self.monitor.stop_checks();
        self.pool.close_all().await;
    }
}

/// How long a list change waits before its server is re-listed, gathering the
/// changes that follow it: an upstream flooding list changes is re-listed at most
/// once per delay.
const RELIST_DELAY: Duration = Duration::from_millis(200);

/// Sleeps until `at`, or for ever without it (a `select!` branch that never fires).
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Pages of one list an upstream may answer with at most (an upstream that keeps
/// handing out cursors, empty pages or not, cannot keep discovery going for ever).
const MAX_LIST_PAGES: usize = 10_000;

/// The request for one page of a list.
fn list_request(
    kind: ListKind,
    params: Option<rmcp::model::PaginatedRequestParams>,
) -> rmcp::model::ClientRequest {
    use rmcp::model::{ClientRequest, RequestOptionalParam};
    fn page<M: Default>(
        params: Option<rmcp::model::PaginatedRequestParams>,
    ) -> RequestOptionalParam<M, rmcp::model::PaginatedRequestParams> {
        RequestOptionalParam {
            method: M::default(),
            params,
            extensions: Default::default(),
        }
    }
    match kind {
        ListKind::Tools => ClientRequest::ListToolsRequest(page(params)),
        ListKind::Prompts => ClientRequest::ListPromptsRequest(page(params)),
        ListKind::Resources => ClientRequest::ListResourcesRequest(page(params)),
        ListKind::ResourceTemplates => ClientRequest::ListResourceTemplatesRequest(page(params)),
    }
}

/// The method name of a list, for messages.
fn list_method(kind: ListKind) -> &'static str {
    match kind {
        ListKind::Tools => "tools/list",
        ListKind::Prompts => "prompts/list",
        ListKind::Resources => "resources/list",
        ListKind::ResourceTemplates => "resources/templates/list",
    }
}

/// The array field of a list result.
fn list_field(kind: ListKind) -> &'static str {
    match kind {
        ListKind::Tools => "tools",
        ListKind::Prompts => "prompts",
        ListKind::Resources => "resources",
        ListKind::ResourceTemplates => "resourceTemplates",
    }
}

/// One list, read page by page. Items that are not valid MCP items (no name, a
/// schema that is not an object…) or repeat another's name or URI are left out and
/// reported in `rejected`, so one bad entry does not hide an upstream's good ones.
/// An upstream listing more than `cap` items (it would fill the gateway's memory and
/// its clients' lists), repeating a cursor or paging for ever gets an error.
async fn collect_list(
    peer: &Peer<rmcp::RoleClient>,
    kind: ListKind,
    cap: usize,
    rejected: &mut Vec<String>,
) -> Result<Vec<Descriptor>, String> {
    let what = list_method(kind);
    let mut items = Vec::new();
    let mut keys = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut seen_cursors = HashSet::new();
    for _ in 0..MAX_LIST_PAGES {
        let params = cursor
            .take()
            .map(|c| rmcp::model::PaginatedRequestParams::default().with_cursor(Some(c)));
        // The typed variant when every item parsed; otherwise rmcp hands the result
        // over as it came (`CustomResult`), and each item is judged on its own.
        let page = peer
            .send_request(list_request(kind, params))
            .await
            .map_err(|e| format!("{what}: {e}"))
            .and_then(|result| serde_json::to_value(&result).map_err(|e| format!("{what}: {e}")))?;
        let Some(Value::Array(entries)) = page.get(list_field(kind)) else {
            return Err(format!(
                "{what}: the answer has no `{}` array",
                list_field(kind)
            ));
        };
        for (index, entry) in entries.iter().enumerate() {
            let key = entry
                .get(kind.key_field())
                .and_then(Value::as_str)
                .unwrap_or_default();
            let shown: String = key.chars().take(80).collect();
            if let Err(error) = parse_item(kind, entry) {
                rejected.push(format!("{what}: item {index} (`{shown}`): {error}"));
            } else if !keys.insert(key.to_owned()) {
                rejected.push(format!("{what}: `{shown}` is listed twice; the first kept"));
            } else if let Some(descriptor) = Descriptor::from_value(entry.clone()) {
                items.push(descriptor);
            }
        }
        if items.len() > cap {
            return Err(format!(
                "{what}: more than {cap} items, the limit per upstream (mcp.max_items_per_upstream)"
            ));
        }
        match page
            .get("nextCursor")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
        {
            Some(next) if !seen_cursors.insert(next.to_owned()) => {
                return Err(format!("{what}: the upstream repeated a cursor"));
            }
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(items),
        }
    }
    Err(format!("{what}: more than {MAX_LIST_PAGES} pages"))
}

/// Fetches every page of every list the upstream declared, at most `cap` items of
/// each kind; entries left out are described in the second value.
async fn fetch_catalog(
    peer: &Peer<rmcp::RoleClient>,
    cap: usize,
) -> Result<(Catalog, Vec<String>), String> {
    let capabilities = peer
        .peer_info()
        .map(|info| info.capabilities.clone())
        .unwrap_or_default();
    let mut rejected = Vec::new();
    let mut list = async |declared: bool, kind| match declared {
        true => collect_list(peer, kind, cap, &mut rejected).await,
        false => Ok(Vec::new()),
    };
    let tools = list(capabilities.tools.is_some(), ListKind::Tools).await?;
    let prompts = list(capabilities.prompts.is_some(), ListKind::Prompts).await?;
    let has_resources = capabilities.resources.is_some();
    let resources = list(has_resources, ListKind::Resources).await?;
    let templates = list(has_resources, ListKind::ResourceTemplates).await?;
    let catalog = Catalog::new(tools, resources, templates, prompts, Utc::now());
    Ok((catalog, rejected))
}
