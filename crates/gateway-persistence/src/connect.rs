//! Opening the database (one pool for the whole process), applying or checking
//! migrations, and the readiness probe.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gateway_domain::ReadinessProbe;
use gateway_migrations::{Migrator, MigratorTrait};

use crate::sealing::{Sealer, decode_key, generate_key};
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};

/// Which database engine a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (or `sqlite::memory:`).
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Backend {
    /// Reads the engine from a database URL's scheme.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme)
            .unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(StoreError::UnsupportedUrl(redact_url(url))),
        }
    }
}

/// Pool settings; the defaults suit one gateway process.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// `sqlite://path?mode=rwc`, `sqlite::memory:` or `postgres://user@host/db`.
    pub url: String,
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// How long to wait for a new connection.
    pub connect_timeout: Duration,
    /// How long a request waits for a free pooled connection.
    pub acquire_timeout: Duration,
    /// The keys that seal upstream credentials at rest.
    pub secrets: SecretKeys,
}

/// Where the key that seals upstream credentials comes from.
#[derive(Clone)]
pub enum SecretKeys {
    /// Given in the configuration (base64 of 32 bytes): what several replicas share.
    Configured {
        /// Seals new values.
        current: String,
        /// Still opens values sealed before a rotation.
        previous: Vec<String>,
    },
    /// Read from a file, created with a random key (mode 0600) if it does not exist:
    /// zero set-up for one process.
    File {
        /// The key file.
        path: std::path::PathBuf,
        /// Still opens values sealed before a rotation.
        previous: Vec<String>,
    },
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Configured { previous, .. } => f
                .debug_struct("Configured")
                .field("previous", &previous.len())
                .finish_non_exhaustive(),
            Self::File { path, previous } => f
                .debug_struct("File")
                .field("path", path)
                .field("previous", &previous.len())
                .finish(),
        }
    }
}

impl SecretKeys {
    /// Builds the sealer, reading or creating the key file if that is the source.
    pub fn sealer(&self) -> Result<Sealer, StoreError> {
        let (current, previous) = self.raw_keys()?;
        Sealer::new(&current, &previous).map_err(|error| StoreError::Secrets(error.to_string()))
    }

    /// The current key's bytes and the previous ones', reading or creating the key
    /// file if that is the source (what other keys of the same secret derive from).
    pub fn raw_keys(&self) -> Result<(Vec<u8>, Vec<Vec<u8>>), StoreError> {
        let keys = |error: crate::sealing::SealingError| StoreError::Secrets(error.to_string());
        let (current, previous) = match self {
            Self::Configured { current, previous } => {
                (decode_key(current).map_err(keys)?, previous)
            }
            Self::File { path, previous } => (read_or_create_key(path)?, previous),
        };
        let previous = previous
            .iter()
            .map(|k| decode_key(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(keys)?;
        Ok((current, previous))
    }
}

fn read_or_create_key(path: &Path) -> Result<Vec<u8>, StoreError> {
    let problem = |what: &str, error: &dyn std::fmt::Display| {
        StoreError::Secrets(format!("{what} {}: {error}", path.display()))
    };
    match std::fs::read_to_string(path) {
        Ok(text) => decode_key(&text).map_err(|e| problem("key file", &e)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = generate_key().map_err(|e| problem("cannot create key file", &e))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| problem("cannot create key file", &e))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .map_err(|e| problem("cannot create key file", &e))?;
            std::io::Write::write_all(&mut file, format!("{key}\n").as_bytes())
                .map_err(|e| problem("cannot write key file", &e))?;
            tracing::info!(path = %path.display(), "generated the key that seals upstream credentials");
            decode_key(&key).map_err(|e| problem("key file", &e))
        }
        Err(error) => Err(problem("cannot read key file", &error)),
    }
}

/// Why the store could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names an engine we do not support.
    #[error(
        "database URL `{0}` is not supported: use sqlite://PATH, sqlite::memory: or postgres://…"
    )]
    UnsupportedUrl(String),
    /// The database could not be reached or opened.
    #[error("cannot open database `{url}`: {reason}")]
    Connect {
        /// The URL without its password.
        url: String,
        /// The driver's explanation.
        reason: String,
    },
    /// Applying or reading migrations failed.
    #[error("migrations failed: {0}")]
    Migration(String),
    /// The secrets key is missing, malformed or unreadable.
    #[error("secrets: {0}")]
    Secrets(String),
}

/// Where the schema stands relative to this binary's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    /// Every migration this binary knows is applied.
    Current,
    /// These migrations are not applied yet.
    Pending(Vec<String>),
    /// Everything this binary knows is applied, and also these migrations of a newer
    /// binary: a rolling upgrade is under way. Migrations only add (columns, tables,
    /// indexes), so this binary still works on that schema.
    Ahead(Vec<String>),
}

/// The open database: one pool shared by every repository of the process.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) db: DatabaseConnection,
    backend: Backend,
    /// Seals and opens upstream credentials.
    pub(crate) sealer: Arc<Sealer>,
}

impl Store {
    /// Opens the pool. For a SQLite file the parent directory and the file are
    /// created and WAL mode is switched on (readers never block the writer).
    pub async fn connect(settings: &ConnectSettings) -> Result<Self, StoreError> {
        let backend = Backend::from_url(&settings.url)?;
        if backend == Backend::Sqlite {
            create_sqlite_parent_dir(&settings.url)?;
        }
        let sealer = Arc::new(settings.secrets.sealer()?);
        let mut options = ConnectOptions::new(settings.url.clone());
        options
            .max_connections(settings.max_connections)
            .min_connections(settings.min_connections.min(settings.max_connections))
            .connect_timeout(settings.connect_timeout)
            .acquire_timeout(settings.acquire_timeout)
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
            });
        let db = Database::connect(options)
            .await
            .map_err(|error| StoreError::Connect {
                url: redact_url(&settings.url),
                reason: error.to_string(),
            })?;
        Ok(Self {
            db,
            backend,
            sealer,
        })
    }

    /// Starts a write transaction. On SQLite it takes the write lock at `BEGIN`
    /// (`IMMEDIATE`): two deferred transactions that both read and then write would
    /// otherwise deadlock, and SQLite fails one at once with "database is locked"
    /// instead of waiting out the busy timeout.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sea_orm::DatabaseTransaction, gateway_domain::RepositoryError> {
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        self.db
            .begin_with_options(options)
            .await
            .map_err(crate::error::map_db_err)
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Migrator::up(&self.db, None)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))
    }

    /// Compares the schema with this binary's migrations without changing anything:
    /// reads the applied versions from `seaql_migrations` (absent: nothing applied).
    pub async fn migration_state(&self) -> Result<MigrationState, StoreError> {
        use sea_orm::{ConnectionTrait, Statement};
        let known: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        let backend = self.db.get_database_backend();
        let exists = match self.backend {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'seaql_migrations'"
            }
            Backend::Postgres => {
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'seaql_migrations'"
            }
        };
        let migration_error = |e: sea_orm::DbErr| StoreError::Migration(e.to_string());
        let applied: Vec<String> = if self
            .db
            .query_one_raw(Statement::from_string(backend, exists))
            .await
            .map_err(migration_error)?
            .is_some()
        {
            self.db
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT version FROM seaql_migrations",
                ))
                .await
                .map_err(migration_error)?
                .iter()
                .map(|row| row.try_get::<String>("", "version"))
                .collect::<Result<_, _>>()
                .map_err(migration_error)?
        } else {
            Vec::new()
        };
        let pending: Vec<String> = known
            .iter()
            .filter(|name| !applied.contains(name))
            .cloned()
            .collect();
        let newer: Vec<String> = applied
            .into_iter()
            .filter(|name| !known.contains(name))
            .collect();
        Ok(if !pending.is_empty() {
            MigrationState::Pending(pending)
        } else if !newer.is_empty() {
            MigrationState::Ahead(newer)
        } else {
            MigrationState::Current
        })
    }

    /// Closes the pool, waiting for checked-out connections to return.
    pub async fn close(&self) {
        if let Err(error) = self.db.close_by_ref().await {
            tracing::warn!(%error, "closing the database pool failed");
        }
    }
}

#[async_trait]
impl ReadinessProbe for Store {
    async fn check_ready(&self) -> Result<(), String> {
        self.db
            .ping()
            .await
            .map_err(|e| format!("database unreachable: {e}"))?;
        match self.migration_state().await.map_err(|e| e.to_string())? {
            MigrationState::Current | MigrationState::Ahead(_) => Ok(()),
            MigrationState::Pending(names) => {
                Err(format!("migrations pending: {}", names.join(", ")))
            }
        }
    }

    fn pool_stats(&self) -> Option<gateway_domain::PoolStats> {
        // The backend was chosen from the URL, so the pool is of that kind.
        let (size, idle) = match self.backend {
            Backend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                (pool.size() as usize, pool.num_idle())
            }
            Backend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (pool.size() as usize, pool.num_idle())
            }
        };
        Some(gateway_domain::PoolStats {
            in_use: size.saturating_sub(idle),
            idle,
        })
    }
}

/// `sqlite://data/gateway.db?mode=rwc` → creates `data/`.
fn create_sqlite_parent_dir(url: &str) -> Result<(), StoreError> {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return Ok(());
    };
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match Path::new(path).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|error| StoreError::Connect {
                url: url.to_owned(),
                reason: format!("cannot create directory {}: {error}", parent.display()),
            })
        }
        _ => Ok(()),
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("********"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // Unparseable: whatever sits between the scheme and the last `@` may be a
        // password, so it goes.
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://********{}", &url[..scheme], &url[at..])
            }
            _ => url.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_redacted_even_from_a_url_that_does_not_parse() {
        assert_eq!(
            redact_url("redis://u:s3cret@h:6379/0"),
            "redis://u:********@h:6379/0"
        );
        let shown = redact_url("redis://u:s3 cr@t@ho st:6379");
        assert!(!shown.contains("s3"), "{shown}");
        assert_eq!(shown, "redis://********@ho st:6379");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn backend_follows_the_scheme() {
        assert_eq!(
            Backend::from_url("sqlite::memory:").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgresql://h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(Backend::from_url("mysql://h/db").is_err());
        assert!(Backend::from_url("").is_err());
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:********@h/db"
        );
        let error = Backend::from_url("mysql://u:secret@h/db").expect_err("unsupported");
        assert!(!error.to_string().contains("secret"));
    }
}
