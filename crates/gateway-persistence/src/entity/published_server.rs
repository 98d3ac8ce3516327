//! One published `server.json` version.

use sea_orm::entity::prelude::*;

/// One row of `published_server`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "published_server")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub document: Json,
    pub status: String,
    pub status_message: Option<String>,
    pub status_changed_at: DateTimeUtc,
    pub published_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub is_latest: bool,
    pub upstream_server_id: Option<Uuid>,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
