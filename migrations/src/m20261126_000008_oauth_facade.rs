//! The OAuth authorization-server façade (`/oauth/*`): the clients it knows, the
//! grants of logins in progress and done (pending logins, codes, refresh tokens,
//! consents; keyed by the SHA-256 of their handle, payload sealed), and its signing
//! keys (private part sealed). Shared by every replica.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("oauth_client")
                    .col(string_len("client_id", 2048).primary_key())
                    .col(string_len("source", 32))
                    .col(text("metadata"))
                    .col(string_len_null("secret_sha256", 64))
                    .col(timestamp_with_time_zone("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("oauth_grant")
                    .col(string_len("digest", 64).primary_key())
                    .col(string_len("kind", 16))
                    .col(string_len("family", 64))
                    .col(string_len("client_id", 2048))
                    .col(text("payload"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("used_at"))
                    .col(boolean("revoked").default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("oauth_grant_family")
                    .table("oauth_grant")
                    .col("family")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("oauth_grant_expires_at")
                    .table("oauth_grant")
                    .col("expires_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("oauth_signing_key")
                    .col(string_len("kid", 64).primary_key())
                    .col(text("private_key"))
                    .col(text("public_jwk"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("retire_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["oauth_signing_key", "oauth_grant", "oauth_client"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
