//! The MCP face of the gateway: upstream connections ([`upstream`]), the live
//! health, breakers and bulkheads of each upstream ([`monitor`]), the runtime that
//! keeps the catalog snapshot current and checks upstreams ([`runtime`]), the
//! downstream MCP server ([`server`]) and its HTTP mounting ([`service`]).

// Sampling, roots and logging are deprecated by the 2026-07-28 revision (SEP-2577),
// but clients and servers on the session-based revisions still use them, and the
// gateway relays them between such peers.
#![allow(deprecated)]

pub mod audit;
mod bearer;
pub mod cluster;
mod direct;
pub mod gateway;
pub mod guard;
pub mod monitor;
pub mod replies;
pub mod roaming;
pub mod runtime;
pub mod sealed;
pub mod server;
pub mod service;
pub mod sessions;
pub mod upstream;
pub mod views;

pub use monitor::{Monitor, ResilienceSettings, WhenUnavailable};
pub use runtime::{
    Cluster, Limiter, McpItem, McpRuntime, McpSettings, RuntimeInbox, Work, WorkQueue,
};
pub use service::{McpHttpSettings, McpServices};
pub use upstream::{UpstreamError, UpstreamSettings};
