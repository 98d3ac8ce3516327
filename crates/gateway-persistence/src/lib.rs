//! The persistence adapter: sea-orm repositories over SQLite (embedded default) or
//! PostgreSQL, implementing the domain's repository ports.
//!
//! Architecture invariant: no sea-orm or sqlx type crosses this crate's public API;
//! driver errors become [`gateway_domain::RepositoryError`] here.

mod catalogs;
mod connect;
mod entity;
mod error;
mod servers;

pub use connect::{Backend, ConnectSettings, MigrationState, Store, StoreError, redact_url};
