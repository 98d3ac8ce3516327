//! Ports: what the registry needs from the outside world. Adapters (the sea-orm
//! persistence crate today) implement them; services hold them as `Arc<dyn …>` because
//! the store is chosen at run time from configuration.

use async_trait::async_trait;

use crate::catalog::{Catalog, ToolHit};
use crate::error::RepositoryError;
use crate::health::{HealthState, HealthStatus};
use crate::name::{ServerName, Tag};
use crate::page::{Page, PageRequest};
use crate::server::{ServerId, ServerSpec, UpstreamServer};

/// Which servers a listing returns; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFilter {
    /// Servers carrying this tag.
    pub tag: Option<Tag>,
    /// Enabled or disabled servers.
    pub enabled: Option<bool>,
    /// Servers in this health state.
    pub health: Option<HealthState>,
    /// Case-insensitive substring of the name, title or description.
    pub text: Option<String>,
}

/// Stores registered servers. Listings are ordered by name, which is unique, so
/// cursor pages are stable.
#[async_trait]
pub trait ServerRepository: Send + Sync {
    /// Stores a new server at version 1; `Duplicate` if the name is taken.
    async fn insert(
        &self,
        id: ServerId,
        spec: &ServerSpec,
    ) -> Result<UpstreamServer, RepositoryError>;
    /// The server with this id.
    async fn get(&self, id: ServerId) -> Result<UpstreamServer, RepositoryError>;
    /// The server with this name.
    async fn get_by_name(&self, name: &ServerName) -> Result<UpstreamServer, RepositoryError>;
    /// One page of servers matching `filter`, ordered by name.
    async fn list(
        &self,
        filter: &ServerFilter,
        page: &PageRequest,
    ) -> Result<Page<UpstreamServer>, RepositoryError>;
    /// Replaces the spec if the stored version is still `expected_version`
    /// (compare-and-set), bumping the version; `StaleVersion` otherwise.
    async fn update(
        &self,
        id: ServerId,
        expected_version: i64,
        spec: &ServerSpec,
    ) -> Result<UpstreamServer, RepositoryError>;
    /// Removes the server and everything stored about it; with `expected_version`,
    /// only if it is still at that version.
    async fn delete(
        &self,
        id: ServerId,
        expected_version: Option<i64>,
    ) -> Result<(), RepositoryError>;
    /// Records a health check result without touching the spec or its version.
    async fn set_health(&self, id: ServerId, health: &HealthStatus) -> Result<(), RepositoryError>;
}

/// Stores the last catalog fetched from each server and indexes its tools for
/// discovery.
#[async_trait]
pub trait CatalogRepository: Send + Sync {
    /// Replaces the server's catalog (and its tool index) in one transaction.
    async fn replace(&self, id: ServerId, catalog: &Catalog) -> Result<(), RepositoryError>;
    /// The last stored catalog, `None` if never fetched.
    async fn get(&self, id: ServerId) -> Result<Option<Catalog>, RepositoryError>;
    /// Every stored catalog, in one read (the snapshot rebuild needs them all).
    async fn all(&self) -> Result<Vec<(ServerId, Catalog)>, RepositoryError>;
    /// Tools whose name, title or description contains `text` (case-insensitive; all
    /// tools when `None`), optionally of one server, ordered by server name then tool
    /// name.
    async fn search_tools(
        &self,
        text: Option<&str>,
        server: Option<&ServerName>,
        page: &PageRequest,
    ) -> Result<Page<ToolHit>, RepositoryError>;
}

/// Answers "can this process serve traffic?" for `/ready`.
#[async_trait]
pub trait ReadinessProbe: Send + Sync {
    /// `Ok` when the store is reachable and its schema is current; otherwise why not.
    async fn check_ready(&self) -> Result<(), String>;

    /// Connections of the store's pool, for metrics; `None` when it has no pool.
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
}

/// Connections of a database pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections in use.
    pub in_use: usize,
    /// Open connections waiting for work.
    pub idle: usize,
}

/// What changed in the registry, for components that keep state derived from it
/// (the MCP catalog snapshot, upstream connections).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "change", content = "server", rename_all = "snake_case")]
pub enum RegistryEvent {
    /// A server was registered or its spec changed.
    Upserted(ServerId),
    /// A server was removed.
    Removed(ServerId),
    /// A server's stored catalog changed.
    CatalogChanged(ServerId),
    /// The access rules changed.
    AccessRulesChanged,
    /// The rate-limit rules changed.
    RateLimitsChanged,
    /// A curated view was created, changed or removed.
    ViewsChanged,
    /// A published `server.json` version was imported or changed status.
    PublishedChanged,
}

/// Told about every successful registry change. Called synchronously after the
/// change is stored, so implementations only enqueue work.
pub trait RegistryListener: Send + Sync {
    /// One change happened.
    fn registry_changed(&self, event: RegistryEvent);
}

/// Stores the role grants of [`crate::AccessRule`]s.
#[async_trait]
pub trait AccessRuleRepository: Send + Sync {
    /// Every rule, oldest first.
    async fn list_rules(&self) -> Result<Vec<crate::AccessRule>, RepositoryError>;
    /// Stores a new rule.
    async fn insert_rule(&self, rule: &crate::AccessRule) -> Result<(), RepositoryError>;
    /// Removes a rule; `NotFound` if there is none with that id.
    async fn delete_rule(&self, id: uuid::Uuid) -> Result<(), RepositoryError>;
}

/// Stores [`crate::RateLimitRule`]s managed through the API.
#[async_trait]
pub trait RateLimitRuleRepository: Send + Sync {
    /// Every rule, oldest first.
    async fn list_limits(&self) -> Result<Vec<crate::RateLimitRule>, RepositoryError>;
    /// Stores a new rule.
    async fn insert_limit(&self, rule: &crate::RateLimitRule) -> Result<(), RepositoryError>;
    /// Removes a rule; `NotFound` if there is none with that id.
    async fn delete_limit(&self, id: uuid::Uuid) -> Result<(), RepositoryError>;
}
