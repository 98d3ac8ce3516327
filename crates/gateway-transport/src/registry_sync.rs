//! Mirrors another registry that speaks the official `/v0.1` API (a company-wide
//! one, or the public one) into this gateway's private registry: every version whose
//! name an allow-list admits is published here, with its status. The first pass reads
//! everything not deleted; later passes ask only for what changed since the last one
//! (`updated_since`, deletions included). The runtime settings of upstreams are never
//! touched: a mirrored server runs only once an operator registers it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gateway_domain::PublishStatus;
use gateway_registry::{Mirrored, Registry};
use serde::Deserialize;
use serde_json::Value;

/// Largest page accepted from the other registry.
const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// Pages per pass at most (100 servers each), so a misbehaving registry cannot keep
/// a pass going for ever.
const MAX_PAGES: usize = 1000;

/// How far before the newest `updatedAt` seen the next pass starts: entries the
/// source stamped earlier but committed later are read again (mirroring is
/// idempotent), and the two clocks are never compared.
const OVERLAP: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// What to mirror and how often.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// The other registry's base URL (`https://registry.example.com`); `/v0.1/servers`
    /// is appended.
    pub base_url: String,
    /// A bearer token for it, if it wants one.
    pub token: Option<String>,
    /// Globs over server names (`io.github.acme/*`); only matching ones are mirrored.
    pub allow: Vec<String>,
    /// Time between passes.
    pub interval: Duration,
    /// Longest wait for one page.
    pub timeout: Duration,
}

/// Counts of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Entries read from the other registry.
    pub seen: usize,
    /// Entries left out by the allow-list.
    pub skipped: usize,
    /// New versions published here.
    pub created: usize,
    /// Statuses brought in line.
    pub status_changed: usize,
    /// Versions published here with other content (left as they are).
    pub conflicts: usize,
    /// Entries that could not be mirrored (malformed entries, invalid documents).
    pub failed: usize,
    /// The newest `updatedAt` the source reported in this pass.
    pub newest: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct Page {
    /// Each entry is read on its own: one malformed entry does not stall the sync.
    #[serde(default)]
    servers: Vec<Value>,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(rename = "nextCursor")]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Entry {
    server: Value,
    #[serde(rename = "_meta", default)]
    meta: serde_json::Map<String, Value>,
}

/// The mirroring task.
pub struct RegistrySync {
    settings: SyncSettings,
    registry: Registry,
    client: reqwest::Client,
    /// The source as logged: without user or password.
    source: String,
}

/// A URL without its credentials, for logs.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

impl RegistrySync {
    /// A mirror of `settings.base_url` into `registry`.
    pub fn new(settings: SyncSettings, registry: Registry) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("registry sync HTTP client: {e}"))?;
        Ok(Self {
            source: redacted(&settings.base_url),
            settings,
            registry,
            client,
        })
    }

    /// Passes every interval until `stop` is cancelled; a failed pass is logged and
    /// retried at the next interval from where the last good one ended.
    pub async fn run(self, stop: tokio_util::sync::CancellationToken) {
        let mut since: Option<DateTime<Utc>> = None;
        loop {
            match self.pass(since).await {
                Ok(report) => {
                    tracing::info!(source = %self.source, ?report, "registry mirrored");
                    // The source's own clock decides where the next pass starts.
                    if let Some(newest) = report.newest {
                        since = Some(newest - OVERLAP);
                    }
                }
                Err(error) => {
                    tracing::warn!(source = %self.source, %error, "registry sync failed; retrying at the next interval");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.settings.interval) => {}
            }
        }
    }

    /// One pass: everything when `since` is `None`, else what changed after it;
    /// deleted entries included, so a deletion at the source is mirrored too.
    pub async fn pass(&self, since: Option<DateTime<Utc>>) -> Result<SyncReport, String> {
        let mut report = SyncReport::default();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self.page(since, cursor.as_deref()).await?;
            for entry in page.servers {
                report.seen += 1;
                match serde_json::from_value::<Entry>(entry) {
                    Ok(entry) => self.mirror(entry, &mut report).await?,
                    Err(error) => {
                        report.failed += 1;
                        tracing::warn!(source = %self.source, %error, "malformed entry skipped");
                    }
                }
            }
            match page
                .metadata
                .and_then(|m| m.next_cursor)
                .filter(|c| !c.is_empty())
            {
                Some(next) => cursor = Some(next),
                None => return Ok(report),
            }
        }
        Err(format!("more than {MAX_PAGES} pages; stopped"))
    }

    async fn mirror(&self, entry: Entry, report: &mut SyncReport) -> Result<(), String> {
        let name = entry
            .server
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !self
            .settings
            .allow
            .iter()
            .any(|pattern| gateway_domain::access::glob_match(pattern, name))
        {
            report.skipped += 1;
            return Ok(());
        }
        let official = entry.meta.get("io.modelcontextprotocol.registry/official");
        if let Some(updated) = official
            .and_then(|o| o.get("updatedAt"))
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        {
            let updated = updated.with_timezone(&Utc);
            report.newest = Some(report.newest.map_or(updated, |n| n.max(updated)));
        }
        let status = official
            .and_then(|o| o.get("status"))
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<PublishStatus>().ok())
            .unwrap_or(PublishStatus::Active);
        let message = official
            .and_then(|o| o.get("statusMessage"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        match self
            .registry
            .mirror_published(&entry.server, status, message)
            .await
        {
            Ok(Mirrored::Created) => report.created += 1,
            Ok(Mirrored::StatusChanged) => report.status_changed += 1,
            Ok(Mirrored::Unchanged) => {}
            Ok(Mirrored::Conflict) => {
                report.conflicts += 1;
                tracing::warn!(
                    server = name,
                    "mirrored version differs from the one published here; kept ours"
                );
            }
            Err(gateway_registry::RegistryError::Invalid(errors)) => {
                report.failed += 1;
                tracing::warn!(server = name, %errors, "mirrored server.json is invalid; skipped");
            }
            // The database is down: the pass fails and is retried.
            Err(other) => return Err(other.to_string()),
        }
        Ok(())
    }

    async fn page(
        &self,
        since: Option<DateTime<Utc>>,
        cursor: Option<&str>,
    ) -> Result<Page, String> {
        let base = self.settings.base_url.trim_end_matches('/');
        let mut url = url::Url::parse(&format!("{base}/v0.1/servers"))
            .map_err(|e| format!("registry_sync.url: {e}"))?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("limit", "100");
            query.append_pair("include_deleted", "true");
            if let Some(since) = since {
                query.append_pair(
                    "updated_since",
                    &since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                );
            }
            if let Some(cursor) = cursor {
                query.append_pair("cursor", cursor);
            }
        }
        // Errors name the page without the URL's credentials (reqwest's own messages
        // carry the URL too, so they are not repeated).
        let shown = redacted(url.as_str());
        let mut request = self.client.get(url).header("accept", "application/json");
        if let Some(token) = &self.settings.token {
            request = request.bearer_auth(token);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| format!("{shown}: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("{shown}: HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("{shown}: {}", e.without_url()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_PAGE_BYTES {
                return Err(format!(
                    "{shown}: a page larger than {MAX_PAGE_BYTES} bytes"
                ));
            }
        }
        serde_json::from_slice(&body).map_err(|e| format!("{shown}: not a server list: {e}"))
    }
}
