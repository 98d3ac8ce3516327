//! A grant of the OAuth façade (pending login, code, refresh token, consent).

use sea_orm::entity::prelude::*;

/// One row of `oauth_grant`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_grant")]
pub struct Model {
    /// SHA-256 (hex) of the handle.
    #[sea_orm(primary_key, auto_increment = false)]
    pub digest: String,
    pub kind: String,
    pub family: String,
    pub client_id: String,
    /// Sealed JSON.
    pub payload: String,
    pub expires_at: DateTimeUtc,
    pub used_at: Option<DateTimeUtc>,
    pub revoked: bool,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
