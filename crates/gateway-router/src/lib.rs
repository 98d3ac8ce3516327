//! Routing decisions of the MCP gateway, free of I/O: how upstream tools and prompts
//! are named to clients ([`naming`]), how resource URIs carry their upstream
//! ([`resource_uri`]), and the read-optimised [`CatalogSnapshot`] that answers
//! "what is listed" and "where does this name go" on the hot path. The resilience
//! decisions are here too, as state machines fed with the time: [`health`] (the state
//! of an upstream endpoint), [`breaker`] (its circuit breaker) and [`balance`] (which
//! endpoint of a replicated upstream serves a call).
//!
//! Architecture invariant: nothing here touches the network, the database or the MCP
//! wire types; the snapshot is rebuilt off the hot path when the registry or a catalog
//! changes and swapped in whole.

pub mod balance;
pub mod breaker;
pub mod health;
pub mod jsonrpc;
pub mod naming;
pub mod resource_uri;
pub mod search;
pub mod snapshot;

pub use balance::{Balance, Candidate};
pub use breaker::{BreakerPolicy, CircuitBreaker, CircuitState, Permit, Rejected};
pub use health::{HealthPolicy, HealthTracker, Observation, Source};
pub use naming::{NamingError, NamingPolicy, PrefixMode};
pub use search::{SearchDoc, SearchQuery, rank};
pub use snapshot::{CatalogSnapshot, Exposed, ListKind, Route, SnapshotServer};
