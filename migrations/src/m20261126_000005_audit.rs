//! The audit trail: one row per MCP operation and per admin change.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("audit_event")
                    .col(pk_uuid("id"))
                    .col(timestamp_with_time_zone("at"))
                    .col(string_len_null("request_id", 128))
                    .col(string_len_null("session_id", 256))
                    .col(string_len_null("subject", 256))
                    .col(string_len_null("tenant", 256))
                    .col(json_binary("roles"))
                    .col(string_len_null("client_address", 64))
                    .col(string_len("action", 128))
                    .col(string_len_null("server", 64))
                    .col(text_null("target"))
                    .col(string_len("outcome", 16))
                    .col(big_integer_null("error_code"))
                    .col(big_integer("latency_us"))
                    .col(string_len_null("arguments_hash", 64))
                    .col(json_binary_null("arguments"))
                    .to_owned(),
            )
            .await?;
        // Newest-first pages and retention both walk (at, id).
        manager
            .create_index(
                Index::create()
                    .name("audit_event_at_id")
                    .table("audit_event")
                    .col("at")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        for column in ["subject", "tenant", "server"] {
            manager
                .create_index(
                    Index::create()
                        .name(format!("audit_event_{column}_at"))
                        .table("audit_event")
                        .col(column)
                        .col("at")
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("audit_event").to_owned())
            .await
    }
}
