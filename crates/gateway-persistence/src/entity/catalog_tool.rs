//! The discovery index: one row per tool of every catalog, searchable by text and
//! ordered by (server name, tool name) for stable pages.

use sea_orm::entity::prelude::*;

/// One row of `catalog_tool`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "catalog_tool")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub server_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub server_name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub descriptor: Json,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
