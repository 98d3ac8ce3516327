//! One audit event.

use sea_orm::entity::prelude::*;

/// One row of `audit_event`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_event")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub at: DateTimeUtc,
    pub request_id: Option<String>,
    pub session_id: Option<String>,
    pub subject: Option<String>,
    pub tenant: Option<String>,
    pub roles: Json,
    pub client_address: Option<String>,
    pub action: String,
    pub server: Option<String>,
    pub target: Option<String>,
    pub outcome: String,
    pub error_code: Option<i64>,
    pub latency_us: i64,
    pub arguments_hash: Option<String>,
    pub arguments: Option<Json>,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
