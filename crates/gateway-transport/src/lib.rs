//! Inbound HTTP adapters of the gateway: the actix-web REST API under `/api/v1`, the
//! public probes (`/health`, `/ready`), and the OpenAPI document with its viewers.
//! Every error leaves as RFC 9457 `application/problem+json`. Outbound: the MCP
//! clients of the upstreams ([`mcp`]) and the mirror of another registry
//! ([`registry_sync`]).
//!
//! Architecture invariant: handlers only translate between the wire and the
//! [`gateway_registry::Registry`] service; no business rule lives here.

pub mod mcp;
pub mod registry_sync;
pub mod rest;
