//! Test support: start the real gateway on a random port against a fresh database
//! (a temporary SQLite file, or a PostgreSQL database of its own when
//! `TEST_DATABASE_URL` is set), so integration tests exercise real HTTP and real SQL.

pub mod fault;
pub mod hostile;
pub mod mcp;
pub mod oidc;

use std::time::Duration;

use actix_web::dev::ServerHandle;
use gateway_app::{Application, Settings};
use gateway_persistence::Store;
use sea_orm::{ConnectionTrait, Database};
use tokio::task::JoinHandle;

/// A plain HTTP client for tests. reqwest is built without a TLS provider of its
/// own (the gateway uses ring), so one is installed first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// Which database a test app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    /// A temporary SQLite file.
    Sqlite,
    /// A fresh database on the server named by `TEST_DATABASE_URL`.
    Postgres,
}

/// The PostgreSQL server for tests, if configured.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// Runs SQL on the PostgreSQL admin database (`TEST_DATABASE_URL`), for tests that
/// must act on a gateway's database from outside (dropping it under the gateway).
pub async fn postgres_admin_sql(sql: &str) {
    let url = postgres_admin_url().expect("TEST_DATABASE_URL is set");
    let admin = Database::connect(&url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    admin.execute_unprepared(sql).await.expect("admin SQL runs");
    admin.close().await.expect("close admin connection");
}

/// Runs SQL on the database at `url` (for tests that change a gateway's database
/// from outside).
pub async fn execute_sql_on(url: &str, sql: &str) {
    let db = Database::connect(url)
        .await
        .expect("connect to the test database");
    db.execute_unprepared(sql).await.expect("SQL runs");
    db.close().await.expect("close connection");
}

/// A database created for one test and removed after it.
pub enum TestDatabase {
    /// SQLite file in a temporary directory (removed with it).
    Sqlite(tempfile::TempDir),
    /// A PostgreSQL database dropped when this value is dropped.
    Postgres {
        /// URL of the admin database used to create and drop it.
        admin_url: String,
        /// Database name.
        name: String,
    },
}

impl TestDatabase {
    /// Creates an empty database of the given kind; `None` if PostgreSQL is asked for
    /// but `TEST_DATABASE_URL` is not set.
    pub async fn create(backend: TestBackend) -> Option<Self> {
        match backend {
            TestBackend::Sqlite => Some(Self::Sqlite(
                tempfile::tempdir().expect("temporary directory"),
            )),
            TestBackend::Postgres => {
                let admin_url = postgres_admin_url()?;
                let name = format!("gw_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(&admin_url)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.expect("close admin connection");
                Some(Self::Postgres { admin_url, name })
            }
        }
    }

    /// The URL the gateway should use.
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => format!("sqlite://{}/gateway.db?mode=rwc", dir.path().display()),
            Self::Postgres { admin_url, name } => with_database(admin_url, name),
        }
    }
}

/// `postgres://u@h:5432/admin` → `postgres://u@h:5432/<name>`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let prefix = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(query) => format!("{prefix}/{name}?{query}"),
        None => format!("{prefix}/{name}"),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Self::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs outside any runtime we can block on: use a thread of its own.
            let _ = std::thread::spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    if let Ok(admin) = Database::connect(&admin_url).await {
                        let _ = admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .await;
                        let _ = admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// Settings for a test app on `database_url`: random port, loopback, fast shutdown.
pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings::default();
    settings.http.port = 0;
    settings.http.workers = Some(2);
    settings.http.shutdown_timeout_secs = 5;
    settings.database.url = database_url.to_owned();
    settings.database.max_connections = 5;
    settings.database.auto_migrate = Some(true);
    // Each test app seals with its own key (restarts reuse the settings, so the key).
    settings.secrets.key = Some(gateway_persistence::sealing::generate_key().expect("random key"));
    // Suites drive the REST API harder than a client would; the tests of the
    // per-address limits switch them on.
    settings.rate_limits.api_per_address.rate = 0;
    settings.rate_limits.unauthenticated_per_address.rate = 0;
    // A spill file of each app's own (restarts keep it: the settings are reused).
    settings.audit.spill_file = std::env::temp_dir()
        .join(format!(
            "gateway-audit-spill-{}.jsonl",
            uuid::Uuid::new_v4()
        ))
        .display()
        .to_string();
    settings
}

/// A running gateway and an HTTP client pointed at it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// Plain HTTP client.
    pub client: reqwest::Client,
    /// The settings it runs with.
    pub settings: Settings,
    /// The backend under test.
    pub backend: TestBackend,
    handle: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
    database: Option<TestDatabase>,
}

impl TestApp {
    /// Starts a gateway on a fresh database; `None` if that backend is not configured.
    pub async fn spawn(backend: TestBackend) -> Option<Self> {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Like [`TestApp::spawn`], letting the test adjust the settings first.
    pub async fn spawn_with(
        backend: TestBackend,
        adjust: impl FnOnce(&mut Settings),
    ) -> Option<Self> {
        let database = TestDatabase::create(backend).await?;
        let mut settings = test_settings(&database.url());
        adjust(&mut settings);
        Some(Self::start(settings, backend, Some(database)).await)
    }

    async fn start(
        settings: Settings,
        backend: TestBackend,
        database: Option<TestDatabase>,
    ) -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = gateway_app::telemetry::init(&settings.log, &settings.tracing);
        }
        let app = Application::build(&settings, false)
            .await
            .expect("gateway starts");
        let address = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        let task = tokio::spawn(app.run_until_stopped(false));
        let client = http_client();
        Self {
            address,
            client,
            settings,
            backend,
            handle,
            task,
            database,
        }
    }

    /// Stops the gateway gracefully and starts a new one on the same database, as an
    /// operator restart would (the port changes).
    pub async fn restart(self) -> Self {
        self.restart_with(|_| {}).await
    }

    /// Like [`TestApp::restart`], with the settings adjusted first (a rotated key…).
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Settings)) -> Self {
        let database = self.database.take();
        let (mut settings, backend) = (self.settings.clone(), self.backend);
        adjust(&mut settings);
        self.stop().await;
        Self::start(settings, backend, database).await
    }

    /// A second gateway on the same database with the same settings (adjusted), as
    /// another replica behind a load balancer would be; it leaves the database to this
    /// one.
    pub async fn twin(&self, adjust: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.settings.clone();
        adjust(&mut settings);
        Self::start(settings, self.backend, None).await
    }

    /// Stops the gateway gracefully and waits until it has closed its pool.
    pub async fn stop(&mut self) {
        self.handle.stop(true).await;
        let _ = (&mut self.task).await;
    }

    /// A second connection to the same database, for arranging state the REST API
    /// cannot create yet (catalogs, health).
    pub async fn store(&self) -> Store {
        Store::connect(&self.settings.connect_settings())
            .await
            .expect("test store connects")
    }

    /// The first column of each row a raw query returns, as text.
    pub async fn query_texts(&self, sql: &str) -> Vec<String> {
        let db = Database::connect(&self.settings.database.url)
            .await
            .expect("connect to the test database");
        let statement = sea_orm::Statement::from_string(db.get_database_backend(), sql);
        let rows = db.query_all_raw(statement).await.expect("query runs");
        let texts = rows
            .iter()
            .map(|row| row.try_get_by_index::<String>(0).expect("a text column"))
            .collect();
        db.close().await.expect("close");
        texts
    }

    /// Runs raw SQL on the app's database, to break it on purpose (readiness tests).
    pub async fn execute_sql(&self, sql: &str) {
        let db = Database::connect(&self.settings.database.url)
            .await
            .expect("connect to the test database");
        db.execute_unprepared(sql).await.expect("SQL runs");
        db.close().await.expect("close");
    }

    /// Absolute URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// Registers a server (`body` as for `POST /api/v1/servers`, optionally with the
    /// admin key) and fetches its catalog now; panics unless both succeed.
    pub async fn register(&self, body: &serde_json::Value, api_key: Option<&str>) {
        let name = body["name"].as_str().unwrap_or_default().to_owned();
        let send = |request: reqwest::RequestBuilder| match api_key {
            Some(key) => request.header("x-api-key", key),
            None => request,
        };
        let created = send(self.client.post(self.url("/api/v1/servers")).json(body))
            .send()
            .await
            .expect("request sent");
        let status = created.status();
        assert_eq!(status, 201, "{}", created.text().await.unwrap_or_default());
        let refreshed = send(
            self.client
                .post(self.url(&format!("/api/v1/servers/{name}/refresh"))),
        )
        .send()
        .await
        .expect("request sent");
        assert_eq!(refreshed.status(), 200, "refresh {name}");
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .patch(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("request sent")
    }
}

/// A minimal valid registration body for a Streamable HTTP server.
pub fn http_server_body(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "transport": {"type": "streamable-http", "url": format!("http://127.0.0.1:9/{name}/mcp")},
    })
}

/// Defines each listed `async fn(TestApp)` scenario as two tests: one on SQLite, one
/// on PostgreSQL (which returns early, passing, when `TEST_DATABASE_URL` is unset;
/// `.ci/run` always sets it).
#[macro_export]
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let app = $crate::TestApp::spawn($crate::TestBackend::Sqlite).await.expect("sqlite always available");
                    super::$scenario(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let Some(app) = $crate::TestApp::spawn($crate::TestBackend::Postgres).await else {
                        eprintln!("TEST_DATABASE_URL not set: PostgreSQL variant skipped");
                        return;
                    };
                    super::$scenario(app).await;
                }
            )*
        }
    };
}

/// The `field` of every entry of a problem+json body's `errors`, in order.
pub async fn problem_fields(response: reqwest::Response) -> Vec<String> {
    let problem: serde_json::Value = response.json().await.expect("a problem+json body");
    problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str().map(str::to_owned))
        .collect()
}
