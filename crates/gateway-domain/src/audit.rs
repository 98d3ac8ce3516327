//! The audit trail: one [`AuditEvent`] per MCP operation and per admin change, who did
//! what to which item, with what outcome. Events are handed to an [`AuditSink`]
//! (which must never make the caller wait on storage) and kept by an
//! [`AuditRepository`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::RepositoryError;

/// How an audited operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// It succeeded.
    Ok,
    /// It failed (`error_code` says how).
    Error,
    /// The caller may not do it (RBAC, tenant, missing admin rights).
    Denied,
    /// A rate limit refused it.
    RateLimited,
}

impl AuditOutcome {
    /// Every outcome.
    pub const ALL: [AuditOutcome; 4] = [Self::Ok, Self::Error, Self::Denied, Self::RateLimited];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Denied => "denied",
            Self::RateLimited => "rate_limited",
        }
    }

    /// The outcome named `value`.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == value)
    }
}

/// One audited operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Its id (UUID v7: ordered by time).
    pub id: Uuid,
    /// When it ended.
    pub at: DateTime<Utc>,
    /// The request's `X-Request-Id`.
    pub request_id: Option<String>,
    /// The MCP session, if any.
    pub session_id: Option<String>,
    /// The principal's subject (`admin-api-key` for the admin key).
    pub subject: Option<String>,
    /// The principal's tenant.
    pub tenant: Option<String>,
    /// The principal's roles.
    pub roles: Vec<String>,
    /// The client's address.
    pub client_address: Option<String>,
    /// What was done: an MCP method (`tools/call`) or `<METHOD> <route>` on the API.
    pub action: String,
    /// The upstream server concerned.
    pub server: Option<String>,
    /// The tool, prompt or resource (as the client named it), or the API path.
    pub target: Option<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The JSON-RPC error code or HTTP status of a failure.
    pub error_code: Option<i64>,
    /// How long it took, in microseconds.
    pub latency_us: u64,
    /// SHA-256 (hex) of the arguments, if the operation had any.
    pub arguments_hash: Option<String>,
    /// The arguments themselves (only when configured, with secrets redacted).
    pub arguments: Option<serde_json::Value>,
}

/// Which events an audit query returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// At or after.
    pub from: Option<DateTime<Utc>>,
    /// Before.
    pub to: Option<DateTime<Utc>>,
    /// The principal's subject.
    pub subject: Option<String>,
    /// The tenant.
    pub tenant: Option<String>,
    /// The server.
    pub server: Option<String>,
    /// The target (tool, prompt, resource or API path).
    pub target: Option<String>,
    /// The outcome.
    pub outcome: Option<AuditOutcome>,
    /// The action.
    pub action: Option<String>,
}

/// Accepts audit events. Implementations return at once (queueing), and must not lose
/// an accepted event.
#[async_trait]
pub trait AuditSink: Send + Sync {
    /// Records one event (may wait briefly for room in a full queue).
    async fn record(&self, event: AuditEvent);
    /// Records one event without waiting, from places that cannot await (a request
    /// dropped before it ended).
    fn record_now(&self, event: AuditEvent);
}

/// Stores audit events.
#[async_trait]
pub trait AuditRepository: Send + Sync {
    /// Stores events in one batch.
    async fn insert_events(&self, events: &[AuditEvent]) -> Result<(), RepositoryError>;
    /// Events matching `filter`, newest first, `limit` of them after `after`
    /// (the `(at, id)` of the last event of the previous page).
    async fn query_events(
        &self,
        filter: &AuditFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, RepositoryError>;
    /// Deletes up to `limit` events older than `cutoff`; returns how many.
    async fn delete_events_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, RepositoryError>;
}
