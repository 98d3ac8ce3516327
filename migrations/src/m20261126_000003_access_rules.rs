//! Role grants over upstream items (RBAC): which role may list, call, read or get
//! which `<server>__<name>` patterns.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("access_rule")
                    .col(pk_uuid("id"))
                    .col(string_len("role", 64))
                    .col(json_binary("actions"))
                    .col(json_binary("patterns"))
                    .col(text_null("description"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("access_rule").to_owned())
            .await
    }
}
