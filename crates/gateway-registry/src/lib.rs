//! Registry use cases: register, update, remove and look up upstream MCP servers,
//! record what they offer, and search it (service discovery).
//!
//! Written only against the domain's ports: no database, HTTP or MCP crate here.
//! Inbound adapters (REST today, MCP gateway tools later) call [`Registry`].

mod error;
mod input;
mod published;
mod service;

pub use error::RegistryError;
pub use input::{ClientCredentialsInput, RegisterServer, ServerChanges, ServerRef, TransportInput};
pub use published::{Imported, LATEST, Mirrored, UpstreamChoice};
pub use service::{MAX_QUERY_LEN, Registry, RegistryPolicy};
