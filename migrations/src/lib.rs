//! The gateway's schema history. Each migration is one file named
//! `mYYYYMMDD_HHMMSS_what.rs` (sea-orm takes the migration name from the file name),
//! written once and never edited after it ships: a change is a new migration.
//!
//! The same migrations produce native types on each backend (PostgreSQL `uuid`,
//! `jsonb`, `timestamptz`; their SQLite affinity names).

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_create_registry;
mod m20261126_000002_upstream_runtime;
mod m20261126_000003_access_rules;
mod m20261126_000004_rate_limits;
mod m20261126_000005_audit;
mod m20261126_000006_views;
mod m20261126_000007_published_servers;
mod m20261126_000008_oauth_facade;

/// Runs and inspects the migrations; `cargo xtask migrate` and `serve` use it.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_registry::Migration),
            Box::new(m20261126_000002_upstream_runtime::Migration),
            Box::new(m20261126_000003_access_rules::Migration),
            Box::new(m20261126_000004_rate_limits::Migration),
            Box::new(m20261126_000005_audit::Migration),
            Box::new(m20261126_000006_views::Migration),
            Box::new(m20261126_000007_published_servers::Migration),
            Box::new(m20261126_000008_oauth_facade::Migration),
        ]
    }
}
