//! Curated views (`/mcp/views/{name}`): a named subset of the aggregate catalog with
//! optional renames, managed through `/api/v1/views`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("mcp_view")
                    .col(pk_uuid("id"))
                    .col(string_len_uniq("name", 63))
                    .col(text_null("description"))
                    .col(json_binary("definition"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("mcp_view").to_owned())
            .await
    }
}
