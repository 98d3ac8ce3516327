//! sea-orm entities, one per table. They mirror `migrations/`; nothing outside this
//! crate sees them.

pub mod access_rule;
pub mod audit_event;
pub mod catalog_tool;
pub mod mcp_view;
pub mod oauth_client;
pub mod oauth_grant;
pub mod oauth_signing_key;
pub mod published_server;
pub mod rate_limit_rule;
pub mod server_catalog;
pub mod server_tag;
pub mod upstream_server;
