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
    /// The listener could not be bound.
    #[error("cannot listen on {address} (http.host/http.port): {reason}")]
    Bind {
        /// host:port asked for.
        address: String,
        /// The OS's explanation.
        reason: String,
    },
}

/// Opens the store and brings or checks its schema: applies migrations when
/// `migrate` is set, otherwise refuses an outdated schema.
pub async fn open_store(settings: &Settings, migrate: bool) -> Result<Store, StartupError> {
    tracing::info!(backend = ?settings.backend(), url = %gateway_persistence::redact_url(&settings.database.url), "opening database");
    let store = Store::connect(&settings.connect_settings())
        .await
        .map_err(|e| StartupError::Database(e.to_string()))?;
    if migrate {
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
            MigrationState::Pending(names) => {
                store.close().await;
                return Err(StartupError::SchemaOutdated(names.join(", ")));
            }
        }
    }
    Ok(store)
}

/// A built gateway: bound to its port, not yet serving.
pub struct Application {
    server: Server,
    port: u16,
    store: Store,
}

impl Application {
    /// Opens the database, builds the services and binds the listener.
    pub async fn build(settings: &Settings, migrate: bool) -> Result<Self, StartupError> {
        let store = open_store(settings, migrate || settings.auto_migrate()).await?;
        let store_arc = Arc::new(store.clone());
        let registry = Registry::new(
            store_arc.clone(),
            store_arc.clone(),
            RegistryPolicy {
                allow_stdio: settings.upstreams.allow_stdio,
            },
        );
        let state = Data::new(ApiState {
            registry,
            readiness: store_arc,
            readiness_timeout: Duration::from_secs(settings.database.acquire_timeout_secs),
            info: SERVICE_INFO,
        });

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
        let http_settings = HttpSettings {
            max_body_bytes: settings.http.max_body_bytes,
        };
        let mut server = HttpServer::new(move || build_app(state.clone(), http_settings.clone()))
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
        tracing::info!(host = %settings.http.host, port, "listening on http://{}:{port}", settings.http.host);
        Ok(Self {
            server,
            port,
            store,
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
        let signals = stop_on_signal.then(|| {
            tokio::spawn(async move {
                let signal = shutdown_signal().await;
                tracing::info!(signal, "shutdown requested: no longer accepting connections, draining in-flight requests");
                handle.stop(true).await;
            })
        });
        let served = self.server.await;
        if let Some(task) = signals {
            task.abort();
        }
        tracing::info!("HTTP server stopped");
        self.store.close().await;
        tracing::info!("database pool closed; goodbye");
        served
    }
}

/// Resolves on SIGINT or SIGTERM, naming which.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!("cannot listen for shutdown signals");
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
