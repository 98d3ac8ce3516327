//! A registered upstream server (spec, version, health columns).

use sea_orm::entity::prelude::*;

/// One row of `upstream_server`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "upstream_server")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub transport_kind: String,
    pub transport: Json,
    pub tags: Json,
    pub tenant: Option<String>,
    pub enabled: bool,
    pub version: i64,
    pub health_state: String,
    pub health_checked_at: Option<DateTimeUtc>,
    pub health_latency_ms: Option<i64>,
    pub health_error: Option<String>,
    pub request_timeout_ms: Option<i64>,
    pub protocol_version: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// No navigable relations: the repositories join by hand where they need to.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
