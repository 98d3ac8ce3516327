//! A signing key of the OAuth façade.

use sea_orm::entity::prelude::*;

/// One row of `oauth_signing_key`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_signing_key")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    /// Sealed PKCS#8.
    pub private_key: String,
    pub public_jwk: String,
    pub created_at: DateTimeUtc,
    pub retire_at: Option<DateTimeUtc>,
}

/// No navigable relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
