//! The lifespan of the gateway, in one place. Start-up runs in dependency order
//! (database → migrations → services → HTTP listener); shutdown runs in reverse
//! (stop accepting → drain in-flight requests up to `http.shutdown_timeout_secs` →
//! close the pool), logging each step.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpServer;
use actix_web::dev::{Server, ServerHandle};
use actix_web::web::Data;
use gateway_persistence::{MigrationState, Store};
use gateway_registry::{Registry, RegistryPolicy};
use gateway_router::{BreakerPolicy, HealthPolicy, NamingPolicy};
use gateway_transport::mcp::{
    McpHttpSettings, McpRuntime, McpServices, McpSettings, ResilienceSettings, UpstreamSettings,
    WorkQueue,
};
use gateway_transport::rest::{ApiState, HttpSettings, ServiceInfo, build_app};

use crate::config::Settings;

/// Name and version of this build.
pub const SERVICE_INFO: ServiceInfo = ServiceInfo {
    name: "mcp-gateway",
    version: env!("CARGO_PKG_VERSION"),
};

/// Why the gateway could not start; each message tells the operator what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be opened.
    #[error("{0}")]
    Database(String),
    /// The schema is behind this binary.
    #[error(
        "the database schema is not current (pending: {0}); run `cargo xtask migrate --database-url <url>` \
         (or `mcp-gateway migrate`), or start with --migrate"
    )]
    SchemaOutdated(String),
    /// The MCP runtime could not be built.
    #[error("cannot start the MCP runtime: {0}")]
    Mcp(String),
    /// The listener could not be bound.
    #[error("cannot listen on {address} (http.host/http.port): {reason}")]
    Bind {
        /// host:port asked for.
        address: String,
        /// The OS's explanation.
        reason: String,
    },
}

/// The registry use cases over `store`, under the configured policy (also what the
/// `import` command uses).
pub fn registry(settings: &Settings, store: &Arc<Store>) -> Registry {
    Registry::new(
        store.clone(),
        store.clone(),
        store.clone(),
        RegistryPolicy {
            allow_stdio: settings.upstreams.allow_stdio,
            stdio_commands: settings.upstreams.stdio_commands.clone(),
            egress: settings.upstreams.egress(),
            // Validated when the configuration was loaded.
            configured_rules: settings
                .auth
                .rules
                .iter()
                .filter_map(|rule| rule.to_rule().ok())
                .collect(),
            configured_limits: settings
                .rate_limits
                .rules
                .iter()
                .filter_map(|rule| rule.to_rule().ok())
                .collect(),
        },
    )
    .with_limit_store(store.clone())
    .with_audit_store(store.clone())
    .with_view_store(store.clone())
    .with_published_store(store.clone())
}

/// Opens the store and brings or checks its schema: applies migrations when
/// `migrate` is set, otherwise refuses an outdated schema.
pub async fn open_store(settings: &Settings, migrate: bool) -> Result<Store, StartupError> {
    tracing::info!(backend = ?settings.backend(), url = %gateway_persistence::redact_url(&settings.database.url), "opening database");
    let store = Store::connect(&settings.connect_settings())
        .await
        .map_err(|e| StartupError::Database(e.to_string()))?;
    // A schema newer than this binary (a rolling upgrade) has nothing to apply;
    // sea-orm would refuse it ("migration file missing").
    let ahead = matches!(store.migration_state().await, Ok(MigrationState::Ahead(_)));
    if migrate && !ahead {
        store
            .migrate()
            .await
            .map_err(|e| StartupError::Database(e.to_string()))?;
        tracing::info!("database migrations applied");
    } else {
        match store
            .migration_state()
            .await
            .map_err(|e| StartupError::Database(e.to_string()))?
        {
            MigrationState::Current => tracing::info!("database schema is current"),
            MigrationState::Ahead(newer) => tracing::warn!(
                newer = newer.join(", "),
                "the database schema is newer than this binary (a rolling upgrade?); migrations only add, so serving on"
            ),
            MigrationState::Pending(names) => {
                store.close().await;
                return Err(StartupError::SchemaOutdated(names.join(", ")));
            }
        }
    }
    match store.seal_plaintext_secrets().await {
        Ok(0) => {}
        Ok(sealed) => tracing::info!(servers = sealed, "sealed credentials stored in plain text"),
        Err(error) => {
            store.close().await;
            return Err(StartupError::Database(format!(
                "cannot seal stored credentials: {error}"
            )));
        }
    }
    Ok(store)
}

/// A built gateway: bound to its port, not yet serving.
pub struct Application {
    server: Server,
    port: u16,
    store: Store,
    runtime: Arc<McpRuntime>,
    runtime_task: tokio::task::JoinHandle<()>,
    audit: Option<(Arc<gateway_audit::AuditPipeline>, Duration)>,
    retention_task: Option<tokio::task::JoinHandle<()>>,
    /// Mirrors another registry (`[registry_sync]`).
    sync_task: Option<tokio::task::JoinHandle<()>>,
    /// Ends the MCP sessions at shutdown.
    mcp_sessions: tokio_util::sync::CancellationToken,
    /// Longest wait at shutdown for calls in flight before sessions are closed.
    drain_timeout: Duration,
    /// Set at shutdown: `/ready` turns 503.
    draining: Arc<std::sync::atomic::AtomicBool>,
    /// How long `/ready` says 503 before the listener closes.
    drain_delay: Duration,
    /// Shutdown signals, listened for since the listener was bound.
    signals: ShutdownSignals,
}

impl Application {
    /// Opens the database, builds the services, binds the listener and starts the
    /// MCP runtime (which loads the stored catalogs, then refreshes them).
    pub async fn build(settings: &Settings, migrate: bool) -> Result<Self, StartupError> {
        let store = open_store(settings, migrate || settings.auto_migrate()).await?;
        let store_arc = Arc::new(store.clone());
        let (queue, work) = WorkQueue::new();
        let metrics = Arc::new(
            gateway_telemetry::Metrics::new(SERVICE_INFO.version)
                .map_err(|e| StartupError::Mcp(e.to_string()))?,
        );
        let redis_link = redis_link(settings, &metrics)?;
        let bus: Arc<dyn gateway_domain::ClusterBus> = match &redis_link {
            Some(link) => link.clone(),
            None => gateway_domain::SingleReplica::new(replica_id()),
        };
        let registry = registry(settings, &store_arc)
            .with_listener(Arc::new(queue.clone()))
            .with_listener(Arc::new(gateway_domain::AnnounceToReplicas(bus.clone())));

        let address = format!("{}:{}", settings.http.host, settings.http.port);
        let listener = TcpListener::bind(&address).map_err(|e| StartupError::Bind {
            address: address.clone(),
            reason: e.to_string(),
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| StartupError::Bind {
                address,
                reason: e.to_string(),
            })?
            .port();

        let audit = settings.audit.enabled.then(|| {
            gateway_audit::AuditPipeline::start(
                store_arc.clone(),
                audit_settings(settings),
                Some(metrics.clone()),
            )
        });
        let retention_task = (settings.audit.enabled && settings.audit.retention_days > 0)
            .then(|| tokio::spawn(retention(store_arc.clone(), settings.audit.retention_days)));
        let sync_task = registry_sync(settings, &registry)?;
        let mut runtime_settings = mcp_settings(settings)?;
        runtime_settings.limiter = rate_limiter(settings, &metrics)?;
        runtime_settings.cluster = gateway_transport::mcp::Cluster(bus.clone());
        runtime_settings.audit =
            audit
                .clone()
                .map(|sink| gateway_transport::mcp::audit::AuditPolicy {
                    sink,
                    record_arguments: settings.audit.record_arguments,
                    redact_keys: settings
                        .audit
                        .redact_keys
                        .iter()
                        .map(|k| k.to_ascii_lowercase())
                        .collect(),
                });
        let (runtime, inbox) = McpRuntime::new(
            registry.clone(),
            runtime_settings,
            queue.clone(),
            metrics.clone(),
        )
        .map_err(StartupError::Mcp)?;
        // Served from the last known catalog and views from the first request on.
        runtime.load().await;
        let runtime_task = tokio::spawn(runtime.clone().run(work, inbox));
        let roaming = gateway_transport::mcp::roaming::Roaming::new(
            session_sealer(settings)?,
            Duration::from_secs(settings.cluster.session_ttl_secs),
            bus.clone(),
        );
        let mcp = McpServices::new(runtime.clone(), &mcp_http_settings(settings, port), roaming);
        let mcp_sessions = mcp.sessions.clone();
        if let Some(link) = &redis_link {
            link.subscribe(gateway_transport::mcp::cluster::ClusterInbox::new(
                queue, &runtime, &mcp,
            ));
            tracing::info!(
                replica = bus.replica(),
                "running as one replica of several (cluster.redis_url)"
            );
        }
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let auth = auth_wiring(
            settings,
            port,
            &store_arc,
            audit
                .clone()
                .map(|sink| sink as Arc<dyn gateway_domain::AuditSink>),
            redis_link.as_ref(),
        )?;
        let state = Data::new(ApiState {
            registry,
            readiness: store_arc,
            readiness_timeout: Duration::from_secs(settings.database.acquire_timeout_secs),
            info: SERVICE_INFO,
            mcp: Some(runtime.clone()),
            metrics,
            auth: auth.gate,
            oauth: auth.facade,
            oauth_issuer: auth.issuer,
            ip_limits: ip_limits(settings),
            audit: audit
                .clone()
                .map(|sink| sink as Arc<dyn gateway_domain::AuditSink>),
            draining: draining.clone(),
            cluster: bus.clone(),
        });
        let http_settings = HttpSettings {
            max_body_bytes: settings.http.max_body_bytes,
            body_timeout: Duration::from_secs(settings.http.body_timeout_secs),
            cors: cors_settings(settings, port),
        };
        let mut server = HttpServer::new(move || {
            build_app(state.clone(), http_settings.clone(), Some(mcp.clone()))
        })
        .on_connect(disable_nagle)
        .disable_signals()
        .shutdown_timeout(settings.http.shutdown_timeout_secs);
        if let Some(workers) = settings.http.workers {
            server = server.workers(workers);
        }
        let server = server
            .listen(listener)
            .map_err(|e| StartupError::Bind {
                address: format!("port {port}"),
                reason: e.to_string(),
            })?
            .run();
        let signals = ShutdownSignals::install();
        tracing::info!(host = %settings.http.host, port, "listening on http://{}:{port}", settings.http.host);
        Ok(Self {
            server,
            port,
            store,
            runtime,
            runtime_task,
            audit: audit.map(|pipeline| {
                let timeout = Duration::from_secs(settings.audit.shutdown_timeout_secs);
                (pipeline, timeout)
            }),
            retention_task,
            sync_task,
            mcp_sessions,
            drain_timeout: Duration::from_secs(settings.http.shutdown_timeout_secs),
            draining,
            drain_delay: settings.drain(),
            signals,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server gracefully.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until `handle().stop(..)` is called (or a shutdown signal arrives, when
    /// `stop_on_signal`), then drains and closes the pool.
    pub async fn run_until_stopped(self, stop_on_signal: bool) -> std::io::Result<()> {
        let handle = self.server.handle();
        let (runtime, sessions, drain) = (
            self.runtime.clone(),
            self.mcp_sessions.clone(),
            self.drain_timeout,
        );
        let (draining, drain_delay) = (self.draining.clone(), self.drain_delay);
        let listening = self.signals;
        let signals = stop_on_signal.then(|| {
            tokio::spawn(async move {
                let signal = listening.received().await;
                // Behind a load balancer: first say "not ready" and keep serving, so
                // it stops routing here before the listener closes.
                draining.store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(signal, drain_secs = drain_delay.as_secs(), "shutdown requested: /ready answers 503 (cluster.drain_secs), then the listener closes");
                tokio::time::sleep(drain_delay).await;
                tracing::info!("no longer accepting connections, draining in-flight requests");
                let stopping = tokio::spawn(handle.stop(true));
                // MCP sessions keep SSE streams open for as long as they live: once the
                // calls in flight are answered (or the drain time is up), they end, so
                // the server can stop without waiting for its whole timeout.
                let deadline = tokio::time::Instant::now() + drain;
                while runtime.in_flight() > 0 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                sessions.cancel();
                let _ = stopping.await;
            })
        });
        let served = self.server.await;
        if let Some(task) = signals {
            task.abort();
        }
        tracing::info!("HTTP server stopped");
        self.runtime_task.abort();
        self.runtime.shutdown().await;
        tracing::info!("upstream sessions closed");
        for task in [self.retention_task, self.sync_task].into_iter().flatten() {
            task.abort();
        }
        // Every request has ended: what the audit queue holds goes to the database
        // (or the spill file) before the pool closes.
        if let Some((audit, timeout)) = &self.audit {
            audit.shutdown(*timeout).await;
        }
        self.store.close().await;
        tracing::info!("database pool closed; goodbye");
        served
    }
}

/// The Redis link to the other replicas, when `cluster.redis_url` (or the rate
/// limiter's Redis) is set; without one the process runs as a single replica.
fn redis_link(
    settings: &Settings,
    metrics: &Arc<gateway_telemetry::Metrics>,
) -> Result<Option<Arc<gateway_cluster::RedisCluster>>, StartupError> {
    let Some(url) = settings.cluster_redis_url() else {
        return Ok(None);
    };
    gateway_cluster::RedisCluster::new(
        gateway_cluster::RedisClusterSettings {
            url: url.to_owned(),
            key_prefix: settings.cluster.key_prefix.clone(),
            replica: replica_id(),
            timeout: Duration::from_millis(settings.cluster.redis_timeout_ms),
        },
        Some(metrics.clone()),
    )
    .map(Some)
    .map_err(StartupError::Mcp)
}

/// This process's id among the replicas: the host name (a pod's name) and a random
/// suffix (two processes on one host differ).
fn replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        // It travels in ids and SSE event ids: only characters safe there.
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                .take(64)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

/// What seals session ids: `cluster.session_key` (and the previous ones), else keys
/// derived from the secrets key, which every replica already shares.
fn session_sealer(
    settings: &Settings,
) -> Result<gateway_transport::mcp::sealed::SessionSealer, StartupError> {
    use sha2::Digest;
    let invalid = |what: &str| StartupError::Mcp(format!("{what} must be 32 bytes, base64"));
    let (current, previous) = match &settings.cluster.session_key {
        Some(key) => (
            crate::config::decode_session_key(key).ok_or_else(|| invalid("cluster.session_key"))?,
            settings
                .cluster
                .previous_session_keys
                .iter()
                .map(|k| {
                    crate::config::decode_session_key(k)
                        .ok_or_else(|| invalid("cluster.previous_session_keys"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => {
            let (secret, previous) = settings
                .connect_settings()
                .secrets
                .raw_keys()
                .map_err(|e| StartupError::Database(e.to_string()))?;
            let derive = |key: &[u8]| {
                sha2::Sha256::new()
                    .chain_update(b"mcp-gateway session id key v1\0")
                    .chain_update(key)
                    .finalize()
                    .to_vec()
            };
            (
                derive(&secret),
                previous.iter().map(|k| derive(k)).collect(),
            )
        }
    };
    gateway_transport::mcp::sealed::SessionSealer::new(&current, &previous)
        .map_err(|e| StartupError::Mcp(e.to_string()))
}

/// SIGINT and SIGTERM, listened for from the moment the listener is bound (a
/// signal that arrives before serving starts still stops the server gracefully).
struct ShutdownSignals {
    #[cfg(unix)]
    listening: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl ShutdownSignals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listening = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(interrupt), Ok(terminate)) => Some((interrupt, terminate)),
                _ => {
                    tracing::warn!("cannot listen for shutdown signals");
                    None
                }
            };
            Self { listening }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Resolves on SIGINT or SIGTERM, naming which.
    async fn received(self) -> &'static str {
        #[cfg(unix)]
        {
            let Some((mut interrupt, mut terminate)) = self.listening else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        }
    }
}

/// The audit pipeline's settings from `[audit]`.
fn audit_settings(settings: &Settings) -> gateway_audit::AuditSettings {
    let audit = &settings.audit;
    gateway_audit::AuditSettings {
        queue_capacity: audit.queue_capacity,
        batch_size: audit.batch_size,
        flush_interval: Duration::from_millis(audit.flush_interval_ms),
        block_for: match audit.when_full {
            crate::config::AuditWhenFull::Block => Duration::from_millis(audit.block_ms),
            crate::config::AuditWhenFull::Spill => Duration::ZERO,
        },
        spill_file: audit.spill_file.clone().into(),
        stream: match audit.stream.trim() {
            "" => None,
            "stdout" => Some(gateway_audit::StreamTarget::Stdout),
            path => Some(gateway_audit::StreamTarget::File(path.into())),
        },
    }
}

/// The mirror of another registry, when `registry_sync.url` is set.
fn registry_sync(
    settings: &Settings,
    registry: &Registry,
) -> Result<Option<tokio::task::JoinHandle<()>>, StartupError> {
    let sync = &settings.registry_sync;
    let Some(url) = &sync.url else {
        return Ok(None);
    };
    let mirror = gateway_transport::registry_sync::RegistrySync::new(
        gateway_transport::registry_sync::SyncSettings {
            base_url: url.clone(),
            token: sync.token.clone(),
            allow: sync.allow.clone(),
            interval: Duration::from_secs(sync.interval_secs),
            timeout: Duration::from_secs(sync.timeout_secs),
        },
        registry.clone(),
    )
    .map_err(StartupError::Mcp)?;
    tracing::info!(source = %gateway_persistence::redact_url(url), allow = ?sync.allow, "mirroring another registry");
    Ok(Some(tokio::spawn(
        mirror.run(tokio_util::sync::CancellationToken::new()),
    )))
}

/// Events deleted per statement by the retention task (small, so it never holds
/// long locks).
const RETENTION_BATCH: u64 = 1_000;

/// Deletes audit events older than `days`, hourly, in small batches.
async fn retention(store: Arc<Store>, days: u32) {
    use gateway_domain::AuditRepository;
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
        let mut deleted = 0;
        loop {
            match store.delete_events_before(cutoff, RETENTION_BATCH).await {
                Ok(0) => break,
                Ok(n) => deleted += n,
                Err(error) => {
                    tracing::warn!(%error, "audit retention failed; retrying in an hour");
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
        if deleted > 0 {
            tracing::info!(deleted, days, "old audit events deleted");
        }
    }
}

/// The MCP runtime's settings from the configuration (validated at load).
fn mcp_settings(settings: &Settings) -> Result<McpSettings, StartupError> {
    let mcp = &settings.mcp;
    let tokens =
        gateway_auth::ClientCredentialsTokens::new(Duration::from_millis(mcp.connect_timeout_ms))
            .map_err(StartupError::Mcp)?;
    Ok(McpSettings {
        naming: NamingPolicy::new(mcp.prefix_mode, &mcp.separator, mcp.max_name_length)
            .unwrap_or_default(),
        page_size: mcp.page_size,
        request_timeout: Duration::from_millis(mcp.request_timeout_ms),
        discovery_interval: Duration::from_secs(mcp.discovery_interval_secs),
        upstream: UpstreamSettings {
            connect_timeout: Duration::from_millis(mcp.connect_timeout_ms),
            max_response_bytes: mcp.max_response_bytes,
            max_notifications_per_sec: mcp.max_upstream_notifications_per_sec,
            tokens: Some(Arc::new(tokens)),
            egress: Arc::new(settings.upstreams.egress()),
            ..UpstreamSettings::default()
        },
        resilience: resilience_settings(settings),
        admin_roles: (settings.auth.provider != crate::config::AuthProvider::None)
            .then(|| settings.auth.admin_roles.clone()),
        limiter: gateway_transport::mcp::Limiter::default(),
        audit: None,
        gateway_tools: mcp.gateway_tools,
        compact_by_default: mcp.default_view == crate::config::McpView::Compact,
        max_items_per_upstream: mcp.max_items_per_upstream,
        // Set by `Application::build` once the link exists.
        cluster: gateway_transport::mcp::Cluster::default(),
    })
}

/// The rate limiter: shared through Redis when `rate_limits.redis_url` is set, in
/// this process otherwise.
fn rate_limiter(
    settings: &Settings,
    metrics: &Arc<gateway_telemetry::Metrics>,
) -> Result<gateway_transport::mcp::Limiter, StartupError> {
    let limits = &settings.rate_limits;
    let Some(url) = &limits.redis_url else {
        return Ok(gateway_transport::mcp::Limiter(Arc::new(
            gateway_limits::LocalLimiter::default(),
        )));
    };
    let failure_mode = match limits.failure_mode {
        crate::config::RateLimitFailureMode::FailOpen => gateway_limits::FailureMode::Open,
        crate::config::RateLimitFailureMode::FailClosed => gateway_limits::FailureMode::Closed,
    };
    let redis = gateway_limits::RedisLimiter::new(
        gateway_limits::RedisSettings {
            url: url.clone(),
            key_prefix: limits.key_prefix.clone(),
            timeout: Duration::from_millis(limits.redis_timeout_ms),
            failure_mode,
            expected_replicas: limits.expected_replicas,
            pool_size: settings.http.workers.unwrap_or(4).max(4) * 2,
        },
        Some(metrics.clone()),
    )
    .map_err(StartupError::Mcp)?;
    tracing::info!(redis = %gateway_persistence::redact_url(url), mode = ?limits.failure_mode, "rate limits shared through Redis");
    Ok(gateway_transport::mcp::Limiter(Arc::new(redis)))
}

/// The per-address limits of the HTTP face (the unauthenticated one only matters
/// with `[auth]` on: without it nothing is refused for lack of credentials).
fn ip_limits(settings: &Settings) -> gateway_transport::rest::ip_limit::IpLimits {
    use gateway_transport::rest::ip_limit::{IpLimiter, IpLimits};
    let limits = &settings.rate_limits;
    IpLimits {
        api: limits.api_per_address.quota().map(IpLimiter::new),
        unauthenticated: limits
            .unauthenticated_per_address
            .quota()
            .map(IpLimiter::new),
        trust_forwarded_for: limits.trust_forwarded_for,
    }
}

/// How often the issuer's keys are fetched again regardless of traffic.
const KEY_REFRESH: Duration = Duration::from_secs(600);

/// What `[auth]` wires: the gate, and the OAuth façade with its issuer when it is on.
#[derive(Default)]
struct AuthWiring {
    gate: Option<Arc<gateway_transport::rest::auth::AuthGate>>,
    facade: Option<Arc<dyn gateway_domain::AuthorizationServer>>,
    issuer: Option<String>,
}

/// Refreshes a verifier's keys every `every` while it lives.
fn refresh_keys(verifier: &Arc<gateway_auth::JwtVerifier>, every: Duration) {
    let refresher = Arc::downgrade(verifier);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Some(verifier) = refresher.upgrade() else {
                break;
            };
            if let Err(error) = verifier.keys().refresh().await {
                tracing::warn!(%error, "cannot fetch the issuer's keys; keeping the ones cached");
            }
        }
    });
}

/// The authentication gate from `[auth]` (and the façade from `[auth.facade]`), or
/// nothing when it is off. The issuer's keys are fetched in the background, so an
/// issuer that is down does not stop the start (tokens are refused as unverifiable
/// until it answers).
fn auth_wiring(
    settings: &Settings,
    port: u16,
    store: &Arc<Store>,
    audit: Option<Arc<dyn gateway_domain::AuditSink>>,
    cluster: Option<&Arc<gateway_cluster::RedisCluster>>,
) -> Result<AuthWiring, StartupError> {
    use crate::config::AuthProvider;
    let auth = &settings.auth;
    let (mut verifier_settings, authorization_server) = match auth.provider {
        AuthProvider::None => {
            if settings.http.insecure {
                tracing::warn!(host = %settings.http.host, "serving WITHOUT authentication beyond loopback (--insecure): anyone who reaches the port can call every upstream and change the registry");
            }
            return Ok(AuthWiring::default());
        }
        AuthProvider::Oidc => {
            let issuer = auth.issuer.clone().unwrap_or_default();
            let mut verifier = gateway_auth::AuthSettings::oidc(&issuer, auth.audiences.clone());
            if let Some(uri) = &auth.jwks_uri {
                verifier.keys = gateway_auth::KeySource::JwksUri(uri.clone());
            }
            (verifier, issuer)
        }
        AuthProvider::Entra => {
            let entra = gateway_auth::EntraSettings {
                tenant_id: auth.tenant_id.clone().unwrap_or_default(),
                client_id: auth.client_id.clone().unwrap_or_default(),
                app_id_uri: auth.app_id_uri.clone(),
                accept_v1: auth.accept_v1_tokens,
                allowed_tenants: auth.allowed_tenants.clone(),
                authority: "https://login.microsoftonline.com".into(),
            };
            let server = format!("{}/{}/v2.0", entra.authority, entra.tenant_id);
            (entra.to_auth_settings(), server)
        }
    };
    verifier_settings.leeway = Duration::from_secs(auth.leeway_secs);
    verifier_settings.required_scopes = auth.required_scopes.clone();
    if !auth.allowed_tenants.is_empty() {
        verifier_settings.allowed_tenants = auth.allowed_tenants.clone();
    }
    verifier_settings.claims.roles = auth.roles_claim.clone();
    verifier_settings.claims.tenant = auth.tenant_claim.clone();
    let verifier =
        Arc::new(gateway_auth::JwtVerifier::new(verifier_settings).map_err(StartupError::Mcp)?);
    // Fetch the keys now, then every 10 minutes: a key the issuer withdraws without
    // publishing a new one stops verifying within that time (and its remembered
    // verdicts with it).
    refresh_keys(&verifier, KEY_REFRESH);
    let public_url = auth.public_url.clone().unwrap_or_else(|| {
        let host = match settings.http.host.as_str() {
            "0.0.0.0" | "::" => "127.0.0.1",
            host => host,
        };
        format!("http://{host}:{port}")
    });
    let public_url = public_url.trim_end_matches('/').to_owned();
    tracing::info!(provider = ?auth.provider, issuer = %authorization_server, "bearer tokens required on /mcp; registry writes need an admin role or key");
    let (verifier, facade, authorization_server): (Arc<dyn gateway_domain::TokenVerifier>, _, _) =
        if auth.facade.enabled {
            let (routed, facade) = facade(
                settings,
                &public_url,
                &authorization_server,
                verifier,
                store,
                audit,
                cluster,
            )?;
            tracing::info!(issuer = %public_url, upstream = %authorization_server, "OAuth authorization-server façade on: clients log in at /oauth/authorize");
            (routed, Some(facade), public_url.clone())
        } else {
            (verifier, None, authorization_server)
        };
    let gate = Arc::new(gateway_transport::rest::auth::AuthGate {
        verifier,
        public_url: public_url.clone(),
        authorization_servers: vec![authorization_server],
        // With the façade on, clients ask it for its own scope names.
        scopes_supported: if auth.facade.enabled {
            facade_scopes(settings)
        } else {
            auth.scopes_supported.clone()
        },
        admin_roles: auth.admin_roles.clone(),
        admin_key_digests: gateway_transport::rest::auth::parse_digests(&auth.admin_api_key_sha256),
        protect_reads: auth.protect_reads,
        facade_admin_scope: auth.facade.enabled.then(|| auth.facade.admin_scope.clone()),
    });
    Ok(AuthWiring {
        gate: Some(gate),
        issuer: facade.is_some().then_some(public_url),
        facade,
    })
}

/// What the façade asks the provider for in front of each of its scopes
/// (`auth.facade.upstream_scope_prefix`; Entra: `<app id URI>/`).
fn facade_scope_prefix(settings: &Settings) -> String {
    let auth = &settings.auth;
    let entra = auth.provider == crate::config::AuthProvider::Entra;
    auth.facade
        .upstream_scope_prefix
        .clone()
        .unwrap_or_else(|| match (&auth.app_id_uri, &auth.client_id) {
            (Some(app), _) if entra => format!("{}/", app.trim_end_matches('/')),
            (None, Some(client)) if entra => format!("api://{client}/"),
            _ => String::new(),
        })
}

/// The scopes the façade offers: `auth.facade.scopes`, else `auth.scopes_supported`
/// without the provider's prefix, else `mcp`.
fn facade_scopes(settings: &Settings) -> Vec<String> {
    let (auth, prefix) = (&settings.auth, facade_scope_prefix(settings));
    if !auth.facade.scopes.is_empty() {
        return auth.facade.scopes.clone();
    }
    let announced: Vec<String> = auth
        .scopes_supported
        .iter()
        .map(|s| s.strip_prefix(prefix.as_str()).unwrap_or(s).to_owned())
        .filter(|s| !s.contains("://"))
        .collect();
    if announced.is_empty() {
        vec!["mcp".to_owned()]
    } else {
        announced
    }
}

/// The verifier `/mcp` uses with the façade on, and the façade.
type FacadeWiring = (
    Arc<dyn gateway_domain::TokenVerifier>,
    Arc<dyn gateway_domain::AuthorizationServer>,
);

/// The OAuth façade of `[auth.facade]` in front of the `[auth]` provider, and the
/// verifier `/mcp` uses then: the façade's own tokens (its keys read from the shared
/// database) and the provider's, each by its issuer.
fn facade(
    settings: &Settings,
    public_url: &str,
    upstream_issuer: &str,
    upstream_verifier: Arc<gateway_auth::JwtVerifier>,
    store: &Arc<Store>,
    audit: Option<Arc<dyn gateway_domain::AuditSink>>,
    cluster: Option<&Arc<gateway_cluster::RedisCluster>>,
) -> Result<FacadeWiring, StartupError> {
    use crate::config::AuthProvider;
    let (auth, config) = (&settings.auth, &settings.auth.facade);
    let failed =
        |what: &str, error: String| StartupError::Mcp(format!("auth.facade.{what}: {error}"));
    let client_auth = match (
        &config.client_secret,
        &config.client_certificate_path,
        &config.client_private_key_path,
    ) {
        (Some(secret), _, _) => gateway_auth::facade::UpstreamClientAuth::Secret(secret.clone()),
        (None, Some(certificate), Some(key)) => {
            let read = |path: &std::path::Path, what: &str| {
                std::fs::read_to_string(path)
                    .map_err(|e| failed(what, format!("{}: {e}", path.display())))
            };
            gateway_auth::facade::UpstreamClientAuth::certificate(
                &read(certificate, "client_certificate_path")?,
                read(key, "client_private_key_path")?,
            )
            .map_err(|e| failed("client_certificate_path", e))?
        }
        _ => return Err(failed("client_secret", "required".into())),
    };
    let entra = auth.provider == AuthProvider::Entra;
    let scope_prefix = facade_scope_prefix(settings);
    let scopes = facade_scopes(settings);
    let settings_of_facade = gateway_auth::FacadeSettings {
        issuer: public_url.to_owned(),
        default_resource: format!("{public_url}/mcp"),
        scopes,
        access_token_ttl: Duration::from_secs(config.access_token_ttl_secs),
        refresh_token_ttl: Duration::from_secs(config.refresh_token_ttl_secs),
        code_ttl: Duration::from_secs(60),
        login_ttl: Duration::from_secs(600),
        consent_ttl: Duration::from_secs(config.consent_ttl_days * 86_400),
        key_rotation: Duration::from_secs(config.signing_key_rotation_days * 86_400),
        leeway: Duration::from_secs(auth.leeway_secs),
        redirect_uri_patterns: config.redirect_uris.clone(),
        dynamic_registration: config.dynamic_registration,
        metadata_documents: config.client_metadata_documents,
        metadata_networks: config
            .client_metadata_networks
            .iter()
            .filter_map(|n| gateway_domain::Network::parse(n).ok())
            .collect(),
        metadata_ttl: Duration::from_secs(config.client_metadata_ttl_secs),
        registered_client_ttl: (config.registered_client_ttl_days > 0)
            .then(|| Duration::from_secs(config.registered_client_ttl_days * 86_400)),
        fetch_timeout: Duration::from_secs(5),
        roles_claim: auth.roles_claim.clone(),
        tenant_claim: auth.tenant_claim.clone(),
        upstream: gateway_auth::facade::UpstreamIdp {
            issuer: upstream_issuer.to_owned(),
            client_id: config
                .client_id
                .clone()
                .or_else(|| auth.client_id.clone())
                .unwrap_or_default(),
            auth: client_auth,
            scope_prefix,
            extra_scopes: config.upstream_scopes.clone(),
            redirect_uri: format!("{public_url}/oauth/callback"),
        },
        principal_from: match config.principal_from {
            Some(crate::config::PrincipalFrom::AccessToken) => {
                gateway_auth::facade::PrincipalSource::AccessToken
            }
            Some(crate::config::PrincipalFrom::IdToken) => {
                gateway_auth::facade::PrincipalSource::IdToken
            }
            None if entra => gateway_auth::facade::PrincipalSource::AccessToken,
            None => gateway_auth::facade::PrincipalSource::IdToken,
        },
        revalidate_on_refresh: config.revalidate_on_refresh,
    };
    let provider_verifier: Arc<dyn gateway_domain::TokenVerifier> = upstream_verifier.clone();
    let mut facade =
        gateway_auth::Facade::new(settings_of_facade, store.clone(), Some(provider_verifier))
            .map_err(|e| failed("enabled", e))?;
    if let Some(sink) = audit {
        facade = facade.with_audit(sink);
    }
    // An emergency rotation reaches the other replicas at once.
    if let Some(link) = cluster {
        link.subscribe(Arc::new(gateway_auth::facade::KeyWithdrawals(
            facade.signer(),
        )));
        facade = facade.with_cluster(link.clone());
    }
    let facade = Arc::new(facade);
    // The façade's tokens go through the same verifier as the provider's: issuer,
    // audience (any of the gateway's resources), algorithm, expiry, scopes.
    let mut own = facade.verifier_settings();
    own.leeway = Duration::from_secs(auth.leeway_secs);
    own.required_scopes = auth.required_scopes.clone();
    own.claims.roles = auth.roles_claim.clone();
    own.claims.tenant = auth.tenant_claim.clone();
    let own = Arc::new(gateway_auth::JwtVerifier::new(own).map_err(StartupError::Mcp)?);
    // Other replicas' rotations and retirements are seen within 5 s (a database read).
    refresh_keys(&own, Duration::from_secs(5));
    let purger = Arc::downgrade(&facade);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            let Some(facade) = purger.upgrade() else {
                break;
            };
            match facade.purge().await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(
                    purged,
                    "expired OAuth grants and unused OAuth clients deleted"
                ),
                Err(error) => tracing::warn!(%error, "cannot delete expired OAuth grants"),
            }
        }
    });
    let routed = gateway_auth::verifier::ByIssuer::new(
        vec![(public_url.to_owned(), own)],
        upstream_verifier,
    );
    Ok((Arc::new(routed), facade))
}

/// Health, breaker, bulkhead and balancing settings from the configuration.
fn resilience_settings(settings: &Settings) -> ResilienceSettings {
    let (health, breaker) = (&settings.health, &settings.circuit_breaker);
    ResilienceSettings {
        health: HealthPolicy {
            unhealthy_after: health.unhealthy_after,
            healthy_after: health.healthy_after,
            degraded_latency: Duration::from_millis(health.degraded_latency_ms),
            window: 20,
            degraded_failures: health.degraded_failures,
        },
        check_interval: Duration::from_millis(health.check_interval_ms),
        check_timeout: Duration::from_millis(health.check_timeout_ms),
        breaker: BreakerPolicy {
            consecutive_failures: breaker.consecutive_failures,
            failure_rate: breaker.failure_rate,
            min_calls: breaker.min_calls,
            window: Duration::from_secs(breaker.window_secs),
            open_for: Duration::from_millis(breaker.open_ms),
            half_open_probes: breaker.half_open_probes,
        },
        max_concurrent_calls: settings.bulkhead.max_concurrent_calls,
        max_queue_wait: Duration::from_millis(settings.bulkhead.max_queue_wait_ms),
        balance: settings.upstreams.load_balancing,
        when_unavailable: match health.when_unavailable {
            crate::config::WhenUnavailable::Hide => gateway_transport::mcp::WhenUnavailable::Hide,
            crate::config::WhenUnavailable::FailFast => {
                gateway_transport::mcp::WhenUnavailable::FailFast
            }
        },
    }
}

/// The browser origins the operator allowed: `[cors] allowed_origins` and the older
/// `mcp.allowed_origins` (one list, ports explicit, so CORS and `/mcp`'s `Origin`
/// check agree on every origin).
fn configured_origins(settings: &Settings) -> Vec<String> {
    let mut origins: Vec<String> = settings
        .cors
        .allowed_origins
        .iter()
        .chain(&settings.mcp.allowed_origins)
        .filter_map(|o| gateway_transport::rest::cors::canonical_origin(o))
        .collect();
    origins.sort();
    origins.dedup();
    origins
}

/// The gateway's own loopback origins on its bound port.
fn own_origins(port: u16) -> Vec<String> {
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .flat_map(|host| {
            [
                format!("http://{host}:{port}"),
                format!("https://{host}:{port}"),
            ]
        })
        .collect()
}

/// CORS, on when the operator allowed some origin.
fn cors_settings(
    settings: &Settings,
    port: u16,
) -> Option<gateway_transport::rest::cors::CorsSettings> {
    let configured = configured_origins(settings);
    if configured.is_empty() {
        return None;
    }
    let cors = &settings.cors;
    Some(gateway_transport::rest::cors::CorsSettings {
        origins: own_origins(port).into_iter().chain(configured).collect(),
        methods: cors.allowed_methods.clone(),
        headers: cors.allowed_headers.clone(),
        max_age_secs: cors.max_age_secs,
    })
}

/// Origins and hosts accepted on `/mcp`: the gateway's own loopback origins on its
/// bound port, plus the operator's (the same list as CORS).
fn mcp_http_settings(settings: &Settings, port: u16) -> McpHttpSettings {
    let mut allowed_origins = own_origins(port);
    allowed_origins.extend(configured_origins(settings));
    let allowed_hosts =
        (!settings.mcp.allowed_hosts.is_empty()).then(|| settings.mcp.allowed_hosts.clone());
    McpHttpSettings {
        allowed_hosts,
        allowed_origins,
        max_body_bytes: settings.http.max_body_bytes,
        body_timeout: Duration::from_secs(settings.http.body_timeout_secs),
        session_limits: gateway_transport::mcp::sessions::SessionLimits {
            total: settings.mcp.max_sessions,
            per_caller: settings.mcp.max_sessions_per_caller,
        },
        session_idle: Duration::from_secs(settings.mcp.session_idle_secs),
        stream_limits: gateway_transport::mcp::sessions::StreamLimits {
            total: settings.mcp.max_streams,
            per_caller: settings.mcp.max_streams_per_caller,
        },
        sse_keep_alive: Duration::from_secs(settings.mcp.sse_keep_alive_secs),
        trust_forwarded_for: settings.rate_limits.trust_forwarded_for,
    }
}

/// Small request/response exchanges must not wait for Nagle's algorithm and delayed
/// ACKs (about 40 ms per request on loopback): answers go out at once.
fn disable_nagle(connection: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        let _ = stream.set_nodelay(true);
    }
}
