//! The core of the MCP registry gateway: what an upstream server *is*, what the
//! gateway needs from the outside world (ports), and the errors those can raise.
//!
//! Architecture invariant: this crate performs no I/O and depends on no I/O crate
//! (no actix, sea-orm, redis, reqwest, tokio runtime, rmcp transport). `cargo xtask
//! check-layers` enforces it.

pub mod access;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod cluster;
pub mod credentials;
pub mod egress;
pub mod error;
pub mod health;
pub mod limits;
pub mod name;
pub mod oauth;
pub mod page;
pub mod ports;
pub mod published;
pub mod secret;
pub mod server;
pub mod view;

pub use access::{AccessRule, AccessRules, Action};
pub use audit::{AuditEvent, AuditFilter, AuditOutcome, AuditRepository, AuditSink};
pub use auth::{AuthError, Principal, TokenVerifier};
pub use catalog::{Catalog, Descriptor, ToolHit};
pub use cluster::{AnnounceToReplicas, ClusterBus, ClusterEvent, ClusterListener, SingleReplica};
pub use credentials::{ClientCredentials, UpstreamTokenSource};
pub use egress::{EgressPolicy, Network};
pub use error::{FieldError, RepositoryError, ValidationErrors};
pub use health::{HealthState, HealthStatus};
pub use limits::{
    Budget, LimitScope, LimitSubject, Quota, RateDecision, RateLimitRule, RateLimiter, RateLimits,
};
pub use name::{RESERVED_SERVER_NAME, ServerName, Tag, TenantId};
pub use oauth::{
    AuthorizationServer, BasicCredentials, BrowserCookies, BrowserStep, ClientSource,
    ConsentRequest, GrantKind, LoginBinding, OAuthClientRecord, OAuthFailure, OAuthStore,
    RequestMeta, SigningKeyRecord, StoredGrant, Taken,
};
pub use page::{Cursor, Page, PageRequest};
pub use ports::{
    AccessRuleRepository, CatalogRepository, PoolStats, RateLimitRuleRepository, ReadinessProbe,
    RegistryEvent, RegistryListener, ServerFilter, ServerRepository,
};
pub use published::{
    PublishStatus, PublishedQuery, PublishedRepository, PublishedServer, RegistryName, ServerJson,
    StatusChange, VersionFilter, latest_version,
};
pub use secret::Secret;
pub use server::{ServerId, ServerSpec, Transport, TransportKind, UpstreamServer};
pub use view::{ItemOverride, View, ViewName, ViewRepository, ViewSpec};
