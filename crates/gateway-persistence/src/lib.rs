//! The persistence adapter: sea-orm repositories over SQLite (embedded default) or
//! PostgreSQL, implementing the domain's repository ports.
//!
//! Architecture invariant: no sea-orm or sqlx type crosses this crate's public API;
//! driver errors become [`gateway_domain::RepositoryError`] here. Upstream
//! credentials are written sealed ([`sealing`]) and opened only when read back.

mod access;
mod audit;
mod catalogs;
mod connect;
mod entity;
mod error;
mod limits;
mod oauth;
mod published;
pub mod sealing;
mod servers;
mod views;

pub use connect::{
    Backend, ConnectSettings, MigrationState, SecretKeys, Store, StoreError, redact_url,
};
