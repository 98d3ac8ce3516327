//! The registry: upstream servers, their tags, and the catalog each one reported
//! (with a tool index for service discovery).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("upstream_server")
                    .col(pk_uuid("id"))
                    .col(string_len_uniq("name", 63))
                    .col(string_len_null("title", 200))
                    .col(text_null("description"))
                    .col(string_len("transport_kind", 32))
                    .col(json_binary("transport"))
                    .col(json_binary("tags"))
                    .col(string_len_null("tenant", 128))
                    .col(boolean("enabled"))
                    .col(big_integer("version"))
                    .col(string_len("health_state", 16).default("unknown"))
                    .col(timestamp_with_time_zone_null("health_checked_at"))
                    .col(big_integer_null("health_latency_ms"))
                    .col(text_null("health_error"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("server_tag")
                    .col(uuid("server_id"))
                    .col(string_len("tag", 64))
                    .primary_key(Index::create().col("server_id").col("tag"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("server_tag", "server_id")
                            .to("upstream_server", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_server_tag_tag")
                    .table("server_tag")
                    .col("tag")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("server_catalog")
                    .col(pk_uuid("server_id"))
                    .col(json_binary("tools"))
                    .col(json_binary("resources"))
                    .col(json_binary("resource_templates"))
                    .col(json_binary("prompts"))
                    .col(string_len("content_hash", 64))
                    .col(timestamp_with_time_zone("fetched_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("server_catalog", "server_id")
                            .to("upstream_server", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("catalog_tool")
                    .col(uuid("server_id"))
                    .col(string_len("server_name", 63))
                    .col(string("name"))
                    .col(text_null("title"))
                    .col(text_null("description"))
                    .col(json_binary("descriptor"))
                    .primary_key(Index::create().col("server_id").col("name"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("catalog_tool", "server_id")
                            .to("upstream_server", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_catalog_tool_order")
                    .table("catalog_tool")
                    .col("server_name")
                    .col("name")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "catalog_tool",
            "server_catalog",
            "server_tag",
            "upstream_server",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
