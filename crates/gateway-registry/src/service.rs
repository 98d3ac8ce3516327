//! The [`Registry`] service: every registry use case, in one place, for every
//! inbound adapter.

use std::sync::Arc;

use gateway_domain::{
    Catalog, CatalogRepository, Page, PageRequest, RegistryEvent, RegistryListener,
    RepositoryError, ServerFilter, ServerId, ServerName, ServerRepository, ServerSpec, ToolHit,
    Transport, UpstreamServer, ValidationErrors,
};

use crate::error::RegistryError;
use crate::input::{
    RegisterServer, ServerChanges, ServerRef, TransportInput, parse_tags, parse_tenant,
};

/// Operator choices that change what the registry accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryPolicy {
    /// Whether stdio upstreams (host commands) may be registered. Off by default.
    pub allow_stdio: bool,
    /// Access rules from the configuration file: in force next to the stored ones,
    /// listed with them, and not removable through the API.
    pub configured_rules: Vec<gateway_domain::AccessRule>,
    /// Rate-limit rules from the configuration file, likewise.
    pub configured_limits: Vec<gateway_domain::RateLimitRule>,
    /// Where upstream URLs may point (SSRF protection).
    pub egress: gateway_domain::EgressPolicy,
    /// The executables stdio upstreams may run: a bare name matches that command
    /// given as it is (found on `PATH`), a path matches that path exactly, and `*`
    /// matches any. Empty: none, even with `allow_stdio`.
    pub stdio_commands: Vec<String>,
}

/// How many times an update without a client-supplied version re-reads and retries
/// after losing a race with another writer.
const UPDATE_ATTEMPTS: usize = 3;

/// Longest free-text search accepted.
pub const MAX_QUERY_LEN: usize = 200;

/// Registry use cases over the repository ports.
#[derive(Clone)]
pub struct Registry {
    servers: Arc<dyn ServerRepository>,
    catalogs: Arc<dyn CatalogRepository>,
    rules: Arc<dyn gateway_domain::AccessRuleRepository>,
    limits: Option<Arc<dyn gateway_domain::RateLimitRuleRepository>>,
    audit: Option<Arc<dyn gateway_domain::AuditRepository>>,
    views: Option<Arc<dyn gateway_domain::ViewRepository>>,
    /// Published `server.json` versions (the `/v0.1` subregistry).
    pub(crate) published: Option<Arc<dyn gateway_domain::PublishedRepository>>,
    policy: RegistryPolicy,
    listeners: Vec<Arc<dyn RegistryListener>>,
}

impl Registry {
    /// Builds the service over its ports.
    pub fn new(
        servers: Arc<dyn ServerRepository>,
        catalogs: Arc<dyn CatalogRepository>,
        rules: Arc<dyn gateway_domain::AccessRuleRepository>,
        policy: RegistryPolicy,
    ) -> Self {
        Self {
            servers,
            catalogs,
            rules,
            limits: None,
            audit: None,
            views: None,
            published: None,
            policy,
            listeners: Vec::new(),
        }
    }

    /// Stores rate-limit rules managed through the API in `limits` (without it only
    /// the configuration file's rules exist).
    pub fn with_limit_store(
        mut self,
        limits: Arc<dyn gateway_domain::RateLimitRuleRepository>,
    ) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Reads the audit trail from `audit` (without it, there is none to read).
    pub fn with_audit_store(mut self, audit: Arc<dyn gateway_domain::AuditRepository>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Stores published `server.json` versions in `published` (without it the
    /// subregistry is empty and imports fail).
    pub fn with_published_store(
        mut self,
        published: Arc<dyn gateway_domain::PublishedRepository>,
    ) -> Self {
        self.published = Some(published);
        self
    }

    /// Stores curated views in `views` (without it there are none).
    pub fn with_view_store(mut self, views: Arc<dyn gateway_domain::ViewRepository>) -> Self {
        self.views = Some(views);
        self
    }

    fn view_store(&self) -> Result<&Arc<dyn gateway_domain::ViewRepository>, RegistryError> {
        self.views
            .as_ref()
            .ok_or_else(|| RegistryError::Internal("no store for views is configured".into()))
    }

    fn view_error(error: gateway_domain::RepositoryError, name: &str) -> RegistryError {
        match error {
            gateway_domain::RepositoryError::NotFound => {
                RegistryError::ViewNotFound(name.to_owned())
            }
            gateway_domain::RepositoryError::Duplicate(_) => {
                RegistryError::ViewNameTaken(name.to_owned())
            }
            other => RegistryError::from_repository(other, name),
        }
    }

    /// Every curated view, by name.
    pub async fn views(&self) -> Result<Vec<gateway_domain::View>, RegistryError> {
        match &self.views {
            Some(store) => store
                .list_views()
                .await
                .map_err(|e| RegistryError::from_repository(e, "views")),
            None => Ok(Vec::new()),
        }
    }

    /// One view by name.
    pub async fn view(&self, name: &str) -> Result<gateway_domain::View, RegistryError> {
        self.views()
            .await?
            .into_iter()
            .find(|view| view.spec.name.as_str() == name)
            .ok_or_else(|| RegistryError::ViewNotFound(name.to_owned()))
    }

    /// Creates a view (`ViewNameTaken` if the name is in use).
    pub async fn create_view(
        &self,
        spec: gateway_domain::ViewSpec,
    ) -> Result<gateway_domain::View, RegistryError> {
        let now = chrono::Utc::now();
        let view = gateway_domain::View {
            id: uuid::Uuid::now_v7(),
            spec,
            created_at: now,
            updated_at: now,
        };
        self.view_store()?
            .insert_view(&view)
            .await
            .map_err(|e| Self::view_error(e, view.spec.name.as_str()))?;
        self.announce(RegistryEvent::ViewsChanged);
        Ok(view)
    }

    /// Replaces a view's definition (`ViewNotFound` if there is none by that name).
    pub async fn replace_view(
        &self,
        spec: gateway_domain::ViewSpec,
    ) -> Result<gateway_domain::View, RegistryError> {
        let name = spec.name.as_str().to_owned();
        let stored = self.view(&name).await?;
        let view = gateway_domain::View {
            id: stored.id,
            spec,
            created_at: stored.created_at,
            updated_at: chrono::Utc::now(),
        };
        self.view_store()?
            .replace_view(&view)
            .await
            .map_err(|e| Self::view_error(e, &name))?;
        self.announce(RegistryEvent::ViewsChanged);
        Ok(view)
    }

    /// Removes a view (`ViewNotFound` if there is none by that name).
    pub async fn remove_view(&self, name: &str) -> Result<(), RegistryError> {
        let parsed = gateway_domain::ViewName::parse(name)
            .map_err(|_| RegistryError::ViewNotFound(name.to_owned()))?;
        self.view_store()?
            .delete_view(&parsed)
            .await
            .map_err(|e| Self::view_error(e, name))?;
        self.announce(RegistryEvent::ViewsChanged);
        Ok(())
    }

    /// Whether there is an audit trail to read.
    pub fn has_audit(&self) -> bool {
        self.audit.is_some()
    }

    /// A page of the audit trail, newest first (see
    /// [`gateway_domain::AuditRepository::query_events`]).
    pub async fn audit_events(
        &self,
        filter: &gateway_domain::AuditFilter,
        after: Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>,
        limit: u64,
    ) -> Result<Vec<gateway_domain::AuditEvent>, RegistryError> {
        let Some(store) = &self.audit else {
            return Ok(Vec::new());
        };
        store
            .query_events(filter, after, limit)
            .await
            .map_err(|e| RegistryError::from_repository(e, "audit events"))
    }

    /// The rate-limit rules in force: the configuration file's, then the stored ones.
    pub async fn rate_limit_rules(
        &self,
    ) -> Result<Vec<gateway_domain::RateLimitRule>, RegistryError> {
        let stored = match &self.limits {
            Some(store) => store
                .list_limits()
                .await
                .map_err(|e| RegistryError::from_repository(e, "rate-limit rules"))?,
            None => Vec::new(),
        };
        Ok(self
            .policy
            .configured_limits
            .iter()
            .cloned()
            .chain(stored)
            .collect())
    }

    /// The rate-limit rules of the configuration file.
    pub fn configured_rate_limits(&self) -> &[gateway_domain::RateLimitRule] {
        &self.policy.configured_limits
    }

    /// Adds a rate-limit rule, checking every field.
    pub async fn add_rate_limit_rule(
        &self,
        rule: gateway_domain::RateLimitRule,
    ) -> Result<gateway_domain::RateLimitRule, RegistryError> {
        let store = self.limits.as_ref().ok_or_else(|| {
            RegistryError::Internal("no store for rate-limit rules is configured".into())
        })?;
        store
            .insert_limit(&rule)
            .await
            .map_err(|e| RegistryError::from_repository(e, "rate-limit rule"))?;
        self.announce(RegistryEvent::RateLimitsChanged);
        Ok(rule)
    }

    /// Removes a rate-limit rule (`NotFound` names the id; the configuration file's
    /// rules cannot be removed here).
    pub async fn remove_rate_limit_rule(&self, id: uuid::Uuid) -> Result<(), RegistryError> {
        if self
            .policy
            .configured_limits
            .iter()
            .any(|rule| rule.id == id)
        {
            return Err(RegistryError::Configured(id.to_string()));
        }
        let store = self
            .limits
            .as_ref()
            .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
        store
            .delete_limit(id)
            .await
            .map_err(|e| RegistryError::from_repository(e, &id.to_string()))?;
        self.announce(RegistryEvent::RateLimitsChanged);
        Ok(())
    }

    /// Adds a component to tell about every successful change.
    pub fn with_listener(mut self, listener: Arc<dyn RegistryListener>) -> Self {
        self.listeners.push(listener);
        self
    }

    pub(crate) fn announce(&self, event: RegistryEvent) {
        for listener in &self.listeners {
            listener.registry_changed(event.clone());
        }
    }

    /// Every access rule (RBAC grant), oldest first.
    pub async fn access_rules(&self) -> Result<Vec<gateway_domain::AccessRule>, RegistryError> {
        let stored = self
            .rules
            .list_rules()
            .await
            .map_err(|e| RegistryError::from_repository(e, "access rules"))?;
        Ok(self
            .policy
            .configured_rules
            .iter()
            .cloned()
            .chain(stored)
            .collect())
    }

    /// The access rules of the configuration file.
    pub fn configured_access_rules(&self) -> &[gateway_domain::AccessRule] {
        &self.policy.configured_rules
    }

    /// Adds an access rule, checking every field.
    pub async fn add_access_rule(
        &self,
        role: &str,
        actions: &[String],
        patterns: Vec<String>,
        description: Option<String>,
    ) -> Result<gateway_domain::AccessRule, RegistryError> {
        let rule = gateway_domain::AccessRule::new(role, actions, patterns, description)?;
        self.rules
            .insert_rule(&rule)
            .await
            .map_err(|e| RegistryError::from_repository(e, "access rule"))?;
        self.announce(RegistryEvent::AccessRulesChanged);
        Ok(rule)
    }

    /// Removes an access rule (`NotFound` names the id).
    pub async fn remove_access_rule(&self, id: uuid::Uuid) -> Result<(), RegistryError> {
        if self
            .policy
            .configured_rules
            .iter()
            .any(|rule| rule.id == id)
        {
            return Err(RegistryError::Configured(id.to_string()));
        }
        self.rules
            .delete_rule(id)
            .await
            .map_err(|e| RegistryError::from_repository(e, &id.to_string()))?;
        self.announce(RegistryEvent::AccessRulesChanged);
        Ok(())
    }

    /// Every server (enabled or not), in name order, reading the store page by page.
    pub async fn all_servers(&self) -> Result<Vec<UpstreamServer>, RegistryError> {
        let mut servers = Vec::new();
        let mut after = None;
        loop {
            let page = PageRequest {
                limit: PageRequest::MAX_LIMIT,
                after,
            };
            let found = self.list(&ServerFilter::default(), &page).await?;
            servers.extend(found.items);
            match found.next {
                Some(next) => after = Some(next),
                None => return Ok(servers),
            }
        }
    }

    /// Every stored catalog by server, in one read.
    pub async fn stored_catalogs(
        &self,
    ) -> Result<std::collections::HashMap<ServerId, Catalog>, RegistryError> {
        let all = self
            .catalogs
            .all()
            .await
            .map_err(|e| RegistryError::from_repository(e, "catalogs"))?;
        Ok(all.into_iter().collect())
    }

    /// Records what the gateway last learned from talking to a server.
    pub async fn record_health(
        &self,
        id: ServerId,
        health: &gateway_domain::HealthStatus,
    ) -> Result<(), RegistryError> {
        self.servers
            .set_health(id, health)
            .await
            .map_err(|e| RegistryError::from_repository(e, &id.to_string()))
    }

    /// Refuses a transport the policy does not allow (stdio, unless configured).
    pub fn check_transport_allowed(&self, transport: &TransportInput) -> Result<(), RegistryError> {
        let TransportInput::Stdio { command, .. } = transport else {
            return Ok(());
        };
        if !self.policy.allow_stdio {
            return Err(RegistryError::StdioDisabled);
        }
        let listed = self
            .policy
            .stdio_commands
            .iter()
            .any(|allowed| allowed == "*" || allowed == command.trim());
        if !listed {
            return Err(RegistryError::StdioCommand(command.clone()));
        }
        Ok(())
    }

    /// A registration's spec, every field checked (nothing stored).
    fn registration_spec(&self, input: RegisterServer) -> Result<ServerSpec, RegistryError> {
        self.check_transport_allowed(&input.transport)?;
        let mut errors = ValidationErrors::new();
        let name = errors.check("name", ServerName::parse(&input.name));
        let transport = validate_transport(input.transport, &self.policy.egress, &mut errors);
        let tags = parse_tags(&input.tags, &mut errors);
        let tenant = parse_tenant(input.tenant.as_deref(), &mut errors);
        ServerSpec::check_text(
            input.title.as_deref(),
            input.description.as_deref(),
            tags.len(),
            &mut errors,
        );
        ServerSpec::check_timeout(input.request_timeout_ms, &mut errors);
        if let Some(keys) = transport
            .as_ref()
            .map(Transport::masked_keys)
            .filter(|k| !k.is_empty())
        {
            for key in keys {
                errors.push(
                    format!("transport.{key}"),
                    "the mask `********` is not a value; send the real secret",
                );
            }
        }
        let (Some(name), Some(transport), true) = (name, transport, errors.is_empty()) else {
            return Err(RegistryError::Invalid(errors));
        };
        let mut spec = ServerSpec::new(
            name,
            input.title,
            input.description,
            transport,
            tags,
            tenant,
            input.enabled,
        )?;
        spec.request_timeout_ms = input.request_timeout_ms;
        Ok(spec)
    }

    /// Checks a registration as `register` would, name availability included, without
    /// storing anything (for imports that register several upstreams at once).
    pub async fn check_registration(&self, input: &RegisterServer) -> Result<(), RegistryError> {
        let spec = self.registration_spec(input.clone())?;
        match self.servers.get_by_name(&spec.name).await {
            Ok(_) => Err(RegistryError::NameTaken(spec.name.to_string())),
            Err(RepositoryError::NotFound) => Ok(()),
            Err(other) => Err(RegistryError::from_repository(other, spec.name.as_str())),
        }
    }

    /// Registers a new server at version 1.
    pub async fn register(&self, input: RegisterServer) -> Result<UpstreamServer, RegistryError> {
        let spec = self.registration_spec(input)?;
        let server = self
            .servers
            .insert(ServerId::generate(), &spec)
            .await
            .map_err(|e| RegistryError::from_repository(e, spec.name.as_str()))?;
        tracing::info!(server = %server.spec.name, id = %server.id, transport = server.spec.transport.kind().as_str(), "server registered");
        self.announce(RegistryEvent::Upserted(server.id));
        Ok(server)
    }

    /// The server a reference points at.
    pub async fn get(&self, server: &ServerRef) -> Result<UpstreamServer, RegistryError> {
        let result = match server {
            ServerRef::Id(id) => self.servers.get(*id).await,
            ServerRef::Name(name) => self.servers.get_by_name(name).await,
        };
        result.map_err(|e| RegistryError::from_repository(e, &server.describe()))
    }

    /// One page of servers matching `filter`, ordered by name.
    pub async fn list(
        &self,
        filter: &ServerFilter,
        page: &PageRequest,
    ) -> Result<Page<UpstreamServer>, RegistryError> {
        check_query(filter.text.as_deref())?;
        self.servers
            .list(filter, page)
            .await
            .map_err(|e| RegistryError::from_repository(e, "list"))
    }

    /// Applies `changes`. With `expected_version`, fails if the server changed since
    /// (optimistic concurrency); without it, retries a few times on a lost race so the
    /// change is applied to the latest version.
    pub async fn update(
        &self,
        server: &ServerRef,
        expected_version: Option<i64>,
        changes: ServerChanges,
    ) -> Result<UpstreamServer, RegistryError> {
        if let Some(transport) = &changes.transport {
            self.check_transport_allowed(transport)?;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self.get(server).await?;
            if let Some(expected) = expected_version.filter(|v| *v != current.version) {
                return Err(RegistryError::StaleVersion {
                    expected,
                    current: current.version,
                });
            }
            let spec = apply_changes(&current, changes.clone(), &self.policy.egress)?;
            if spec == current.spec {
                return Ok(current);
            }
            match self
                .servers
                .update(current.id, current.version, &spec)
                .await
            {
                Ok(updated) => {
                    tracing::info!(server = %updated.spec.name, id = %updated.id, version = updated.version, "server updated");
                    self.announce(RegistryEvent::Upserted(updated.id));
                    return Ok(updated);
                }
                Err(RepositoryError::StaleVersion { .. })
                    if expected_version.is_none() && attempt < UPDATE_ATTEMPTS =>
                {
                    continue;
                }
                Err(error) => {
                    return Err(RegistryError::from_repository(error, &server.describe()));
                }
            }
        }
    }

    /// Removes a server, its tags and its catalog; with `expected_version`, only if it
    /// did not change since.
    pub async fn remove(
        &self,
        server: &ServerRef,
        expected_version: Option<i64>,
    ) -> Result<(), RegistryError> {
        let current = self.get(server).await?;
        if let Some(expected) = expected_version.filter(|v| *v != current.version) {
            return Err(RegistryError::StaleVersion {
                expected,
                current: current.version,
            });
        }
        self.servers
            .delete(current.id, expected_version)
            .await
            .map_err(|e| RegistryError::from_repository(e, &server.describe()))?;
        tracing::info!(server = %current.spec.name, id = %current.id, "server removed");
        self.announce(RegistryEvent::Removed(current.id));
        Ok(())
    }

    /// The server and its last stored catalog (`None` until first discovered).
    pub async fn catalog(
        &self,
        server: &ServerRef,
    ) -> Result<(UpstreamServer, Option<Catalog>), RegistryError> {
        let found = self.get(server).await?;
        let catalog = self
            .catalogs
            .get(found.id)
            .await
            .map_err(|e| RegistryError::from_repository(e, &server.describe()))?;
        Ok((found, catalog))
    }

    /// Stores a freshly fetched catalog; returns whether it differs from the stored
    /// one (so callers notify clients only on real changes).
    pub async fn record_catalog(
        &self,
        id: ServerId,
        catalog: &Catalog,
    ) -> Result<bool, RegistryError> {
        let describe = id.to_string();
        let stored = self
            .catalogs
            .get(id)
            .await
            .map_err(|e| RegistryError::from_repository(e, &describe))?;
        if stored.is_some_and(|s| s.content_hash == catalog.content_hash) {
            return Ok(false);
        }
        self.catalogs
            .replace(id, catalog)
            .await
            .map_err(|e| RegistryError::from_repository(e, &describe))?;
        self.announce(RegistryEvent::CatalogChanged(id));
        Ok(true)
    }

    /// Service discovery: tools of every server whose name, title or description
    /// contains `text`, optionally of one server, ordered by server then tool name.
    pub async fn search_tools(
        &self,
        text: Option<&str>,
        server: Option<&ServerName>,
        page: &PageRequest,
    ) -> Result<Page<ToolHit>, RegistryError> {
        check_query(text)?;
        self.catalogs
            .search_tools(text, server, page)
            .await
            .map_err(|e| RegistryError::from_repository(e, "tools"))
    }
}

fn check_query(text: Option<&str>) -> Result<(), RegistryError> {
    match text {
        Some(text) if text.chars().count() > MAX_QUERY_LEN => {
            Err(RegistryError::Invalid(ValidationErrors::single(
                "q",
                format!("search text must be at most {MAX_QUERY_LEN} characters"),
            )))
        }
        _ => Ok(()),
    }
}

fn validate_transport(
    input: TransportInput,
    egress: &gateway_domain::EgressPolicy,
    errors: &mut ValidationErrors,
) -> Option<Transport> {
    match input.validate() {
        Ok(transport) => {
            let before = errors.errors().len();
            for (index, url) in transport.endpoints().into_iter().enumerate() {
                if let Err(reason) = egress.check_url(url) {
                    let field = match index {
                        0 => "transport.url".to_owned(),
                        n => format!("transport.replicas.{}", n - 1),
                    };
                    errors.push(field, reason);
                }
            }
            (errors.errors().len() == before).then_some(transport)
        }
        Err(nested) => {
            errors.absorb("transport", nested);
            None
        }
    }
}

/// The spec that results from applying `changes` to `current`, validated as a whole.
fn apply_changes(
    current: &UpstreamServer,
    changes: ServerChanges,
    egress: &gateway_domain::EgressPolicy,
) -> Result<ServerSpec, RegistryError> {
    let mut errors = ValidationErrors::new();
    let spec = &current.spec;
    let name = match &changes.name {
        Some(raw) => errors.check("name", ServerName::parse(raw)),
        None => Some(spec.name.clone()),
    };
    let transport = match changes.transport {
        Some(input) => validate_transport(input, egress, &mut errors).map(|mut transport| {
            transport.keep_masked_secrets_from(&spec.transport);
            for key in transport.masked_keys() {
                errors.push(
                    format!("transport.{key}"),
                    "the mask `********` is not a value; send the real secret",
                );
            }
            transport
        }),
        None => Some(spec.transport.clone()),
    };
    let tags = match &changes.tags {
        Some(raw) => parse_tags(raw, &mut errors),
        None => spec.tags.clone(),
    };
    let tenant = match &changes.tenant {
        Some(raw) => parse_tenant(raw.as_deref(), &mut errors),
        None => spec.tenant.clone(),
    };
    let title = changes.title.unwrap_or_else(|| spec.title.clone());
    let description = changes
        .description
        .unwrap_or_else(|| spec.description.clone());
    ServerSpec::check_text(
        title.as_deref(),
        description.as_deref(),
        tags.len(),
        &mut errors,
    );
    let request_timeout_ms = changes
        .request_timeout_ms
        .unwrap_or(spec.request_timeout_ms);
    ServerSpec::check_timeout(request_timeout_ms, &mut errors);
    let (Some(name), Some(transport), true) = (name, transport, errors.is_empty()) else {
        return Err(RegistryError::Invalid(errors));
    };
    Ok(ServerSpec::new(
        name,
        title,
        description,
        transport,
        tags,
        tenant,
        changes.enabled.unwrap_or(spec.enabled),
    )
    .map(|mut updated| {
        updated.request_timeout_ms = request_timeout_ms;
        updated
    })?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use gateway_domain::{Descriptor, Secret};
    use gateway_persistence::{ConnectSettings, Store};

    use super::*;

    /// The service over a real in-memory SQLite store (no mocks).
    async fn registry(policy: RegistryPolicy) -> Registry {
        let store = Store::connect(&ConnectSettings {
            url: "sqlite::memory:".into(),
            max_connections: 1,
            min_connections: 1,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            secrets: gateway_persistence::SecretKeys::Configured {
                current: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=".into(),
                previous: Vec::new(),
            },
        })
        .await
        .expect("in-memory store");
        store.migrate().await.expect("migrations");
        let store = Arc::new(store);
        Registry::new(store.clone(), store.clone(), store, policy)
    }

    fn http(name: &str, headers: &[(&str, &str)]) -> RegisterServer {
        RegisterServer {
            name: name.into(),
            title: None,
            description: None,
            transport: TransportInput::StreamableHttp {
                url: format!("http://127.0.0.1:9/{name}"),
                replicas: Vec::new(),
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), Secret::new(*v)))
                    .collect(),
                oauth: None,
            },
            tags: vec![],
            tenant: None,
            enabled: true,
            request_timeout_ms: None,
        }
    }

    fn by_name(name: &str) -> ServerRef {
        ServerRef::parse(name).expect("valid reference")
    }

    #[tokio::test]
    async fn registration_collects_every_field_error() {
        let registry = registry(RegistryPolicy::default()).await;
        let mut input = http("Bad Name", &[("Connection", "close")]);
        input.tags = vec!["ok".into(), "bad tag".into()];
        input.tenant = Some(String::new());
        input.title = Some(" ".into());
        let Err(RegistryError::Invalid(errors)) = registry.register(input).await else {
            panic!("invalid input accepted")
        };
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "transport.headers.Connection",
                "tags.1",
                "tenant",
                "title"
            ]
        );
    }

    #[tokio::test]
    async fn stdio_needs_the_policy() {
        let stdio = RegisterServer {
            transport: TransportInput::Stdio {
                command: "echo".into(),
                args: vec![],
                env: BTreeMap::new(),
                cwd: None,
            },
            ..http("local", &[])
        };
        let denied = registry(RegistryPolicy::default()).await;
        assert_eq!(
            denied.register(stdio.clone()).await,
            Err(RegistryError::StdioDisabled)
        );
        let unlisted = registry(RegistryPolicy {
            allow_stdio: true,
            ..RegistryPolicy::default()
        })
        .await;
        assert!(matches!(
            unlisted.register(stdio.clone()).await,
            Err(RegistryError::StdioCommand(_))
        ));
        let allowed = registry(RegistryPolicy {
            allow_stdio: true,
            stdio_commands: vec!["*".into()],
            ..RegistryPolicy::default()
        })
        .await;
        assert!(allowed.register(stdio).await.is_ok());
    }

    #[tokio::test]
    async fn updates_check_the_expected_version() {
        let registry = registry(RegistryPolicy::default()).await;
        registry
            .register(http("svc", &[]))
            .await
            .expect("registered");
        let changes = ServerChanges {
            title: Some(Some("T".into())),
            ..Default::default()
        };
        let updated = registry
            .update(&by_name("svc"), Some(1), changes.clone())
            .await
            .expect("updated");
        assert_eq!(updated.version, 2);
        let stale = registry
            .update(
                &by_name("svc"),
                Some(1),
                ServerChanges {
                    enabled: Some(false),
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(
            stale,
            Err(RegistryError::StaleVersion {
                expected: 1,
                current: 2
            })
        );
        let same = registry
            .update(&by_name("svc"), None, changes)
            .await
            .expect("no-op");
        assert_eq!(
            same.version, 2,
            "an update that changes nothing keeps the version"
        );
        assert_eq!(
            registry.remove(&by_name("svc"), Some(1)).await,
            Err(RegistryError::StaleVersion {
                expected: 1,
                current: 2
            })
        );
        registry
            .remove(&by_name("svc"), Some(2))
            .await
            .expect("removed");
        assert_eq!(
            registry.get(&by_name("svc")).await,
            Err(RegistryError::NotFound("svc".into()))
        );
    }

    #[tokio::test]
    async fn a_changed_transport_keeps_masked_secrets() {
        let registry = registry(RegistryPolicy::default()).await;
        registry
            .register(http("svc", &[("x-key", "real")]))
            .await
            .expect("registered");
        let transport = TransportInput::StreamableHttp {
            oauth: None,
            replicas: Vec::new(),
            url: "http://127.0.0.1:9/moved".into(),
            headers: BTreeMap::from([(
                "x-key".to_owned(),
                Secret::new(gateway_domain::secret::MASK),
            )]),
        };
        let updated = registry
            .update(
                &by_name("svc"),
                None,
                ServerChanges {
                    transport: Some(transport),
                    ..Default::default()
                },
            )
            .await
            .expect("updated");
        let Transport::StreamableHttp { headers, url, .. } = updated.spec.transport else {
            panic!("kind changed")
        };
        assert_eq!(url.path(), "/moved");
        assert_eq!(headers["x-key"].expose(), "real");
    }

    #[tokio::test]
    async fn recording_a_catalog_reports_real_changes_only() {
        let registry = registry(RegistryPolicy::default()).await;
        let server = registry
            .register(http("svc", &[]))
            .await
            .expect("registered");
        let tool = Descriptor::from_value(serde_json::json!({"name": "echo"})).expect("object");
        let catalog = Catalog::new(vec![tool], vec![], vec![], vec![], chrono::Utc::now());
        assert_eq!(registry.record_catalog(server.id, &catalog).await, Ok(true));
        assert_eq!(
            registry.record_catalog(server.id, &catalog).await,
            Ok(false),
            "same content, no change"
        );
        let empty = Catalog::new(vec![], vec![], vec![], vec![], chrono::Utc::now());
        assert_eq!(registry.record_catalog(server.id, &empty).await, Ok(true));
        let missing = ServerId::generate();
        assert!(matches!(
            registry.record_catalog(missing, &catalog).await,
            Err(RegistryError::NotFound(_))
        ));
    }
}
