//! Rate-limit rules managed through `/api/v1/rate-limits`: a GCRA budget per value of
//! one dimension (tenant, principal, role, server, tool) matching a glob.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("rate_limit_rule")
                    .col(pk_uuid("id"))
                    .col(string_len("scope", 16))
                    .col(string_len("matches", 256))
                    .col(big_integer("rate"))
                    .col(big_integer("period_secs"))
                    .col(big_integer("burst"))
                    .col(text_null("description"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("rate_limit_rule").to_owned())
            .await
    }
}
