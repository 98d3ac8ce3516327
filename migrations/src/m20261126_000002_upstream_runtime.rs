//! Runtime facts of an upstream: its own request timeout (set by the operator) and
//! the MCP protocol version the gateway last negotiated with it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite cannot add several in one ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table("upstream_server")
                    .add_column(big_integer_null("request_timeout_ms"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("upstream_server")
                    .add_column(string_len_null("protocol_version", 32))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["protocol_version", "request_timeout_ms"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("upstream_server")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
