//! The gateway as an MCP subregistry: published `server.json` versions with their
//! registry-managed status, served under `/v0.1`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("published_server")
                    .col(pk_uuid("id"))
                    .col(string_len("name", 200))
                    .col(string_len("version", 255))
                    .col(json_binary("document"))
                    .col(string_len("status", 16))
                    .col(text_null("status_message"))
                    .col(timestamp_with_time_zone("status_changed_at"))
                    .col(timestamp_with_time_zone("published_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(boolean("is_latest"))
                    .col(uuid_null("upstream_server_id"))
                    .to_owned(),
            )
            .await?;
        // Versions are immutable: one row per (name, version), which is also the
        // listing's order and cursor.
        manager
            .create_index(
                Index::create()
                    .name("published_server_name_version")
                    .table("published_server")
                    .col("name")
                    .col("version")
                    .unique()
                    .to_owned(),
            )
            .await?;
        // `updated_since` deltas for registries that mirror this one.
        manager
            .create_index(
                Index::create()
                    .name("published_server_updated_at")
                    .table("published_server")
                    .col("updated_at")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("published_server").to_owned())
            .await
    }
}
