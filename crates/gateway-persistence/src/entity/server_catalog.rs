//! The last catalog fetched from one server, as the upstream reported it.

use sea_orm::entity::prelude::*;

/// One row of `server_catalog`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "server_catalog")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub server_id: Uuid,
    pub tools: Json,
    pub resources: Json,
    pub resource_templates: Json,
    pub prompts: Json,
    pub content_hash: String,
    pub fetched_at: DateTimeUtc,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
