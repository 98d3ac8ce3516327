//! [`OAuthStore`] on sea-orm: the façade's clients, grants and signing keys. Grant
//! payloads (PKCE verifiers, upstream tokens) and private keys are sealed with the
//! secrets key, bound to their row, so a copied database reveals none of them and a
//! value moved to another row does not open. Single use is one conditional `UPDATE`,
//! so exactly one of any number of racing replicas wins a code or refresh token.

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use gateway_domain::{
    ClientSource, GrantKind, OAuthClientRecord, OAuthStore, RepositoryError, SigningKeyRecord,
    StoredGrant, Taken,
};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::connect::Store;
use crate::entity::{oauth_client, oauth_grant, oauth_signing_key};
use crate::error::map_db_err;

fn sealing(error: crate::sealing::SealingError) -> RepositoryError {
    tracing::error!(%error, "cannot seal or open the OAuth façade's state");
    RepositoryError::Internal(format!("sealed OAuth state: {error}"))
}

/// A database error of the façade's state, logged here: the façade tells its clients
/// only that the state is unavailable.
fn logged(error: sea_orm::DbErr) -> RepositoryError {
    let error = map_db_err(error);
    tracing::error!(%error, "the OAuth façade's state is unavailable");
    error
}

fn kind_of(name: &str) -> Option<GrantKind> {
    [
        GrantKind::Pending,
        GrantKind::Code,
        GrantKind::Refresh,
        GrantKind::Consent,
    ]
    .into_iter()
    .find(|k| k.as_str() == name)
}

impl Store {
    fn grant_of(&self, row: oauth_grant::Model) -> Result<StoredGrant, RepositoryError> {
        let kind = kind_of(&row.kind).ok_or_else(|| {
            RepositoryError::Internal(format!("stored grant of unknown kind {:?}", row.kind))
        })?;
        Ok(StoredGrant {
            kind,
            payload: self
                .sealer
                .open(&format!("oauth_grant:{}", row.digest), &row.payload)
                .map_err(sealing)?,
            family: row.family,
            client_id: row.client_id,
            expires_at: row.expires_at,
            used_at: row.used_at,
            revoked: row.revoked,
        })
    }

    async fn grant_row(
        &self,
        kind: GrantKind,
        digest: &str,
    ) -> Result<Option<oauth_grant::Model>, RepositoryError> {
        oauth_grant::Entity::find_by_id(digest.to_owned())
            .filter(oauth_grant::Column::Kind.eq(kind.as_str()))
            .one(&self.db)
            .await
            .map_err(logged)
    }
}

#[async_trait]
impl OAuthStore for Store {
    async fn save_client(&self, client: &OAuthClientRecord) -> Result<(), RepositoryError> {
        let row = oauth_client::ActiveModel {
            client_id: Set(client.client_id.clone()),
            source: Set(client.source.as_str().to_owned()),
            metadata: Set(client.metadata.clone()),
            secret_sha256: Set(client.secret_sha256.clone()),
            updated_at: Set(client.updated_at.trunc_subsecs(6)),
        };
        oauth_client::Entity::insert(row)
            .on_conflict(
                OnConflict::column(oauth_client::Column::ClientId)
                    .update_columns([
                        oauth_client::Column::Source,
                        oauth_client::Column::Metadata,
                        oauth_client::Column::SecretSha256,
                        oauth_client::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec(&self.db)
            .await
            .map_err(logged)?;
        Ok(())
    }

    async fn client(&self, client_id: &str) -> Result<Option<OAuthClientRecord>, RepositoryError> {
        let Some(row) = oauth_client::Entity::find_by_id(client_id.to_owned())
            .one(&self.db)
            .await
            .map_err(logged)?
        else {
            return Ok(None);
        };
        let source = match row.source.as_str() {
            "registered" => ClientSource::Registered,
            "metadata_document" => ClientSource::MetadataDocument,
            other => {
                return Err(RepositoryError::Internal(format!(
                    "stored client of unknown source {other:?}"
                )));
            }
        };
        Ok(Some(OAuthClientRecord {
            client_id: row.client_id,
            source,
            metadata: row.metadata,
            secret_sha256: row.secret_sha256,
            updated_at: row.updated_at,
        }))
    }

    async fn put_grant(&self, digest: &str, grant: &StoredGrant) -> Result<(), RepositoryError> {
        let payload = self
            .sealer
            .seal(&format!("oauth_grant:{digest}"), &grant.payload)
            .map_err(sealing)?;
        let row = oauth_grant::ActiveModel {
            digest: Set(digest.to_owned()),
            kind: Set(grant.kind.as_str().to_owned()),
            family: Set(grant.family.clone()),
            client_id: Set(grant.client_id.clone()),
            payload: Set(payload),
            expires_at: Set(grant.expires_at.trunc_subsecs(6)),
            used_at: Set(grant.used_at.map(|t| t.trunc_subsecs(6))),
            revoked: Set(grant.revoked),
        };
        oauth_grant::Entity::insert(row)
            .on_conflict(
                OnConflict::column(oauth_grant::Column::Digest)
                    .update_columns([
                        oauth_grant::Column::Kind,
                        oauth_grant::Column::Family,
                        oauth_grant::Column::ClientId,
                        oauth_grant::Column::Payload,
                        oauth_grant::Column::ExpiresAt,
                        oauth_grant::Column::UsedAt,
                        oauth_grant::Column::Revoked,
                    ])
                    .to_owned(),
            )
            .exec(&self.db)
            .await
            .map_err(logged)?;
        Ok(())
    }

    async fn grant(
        &self,
        kind: GrantKind,
        digest: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredGrant>, RepositoryError> {
        match self.grant_row(kind, digest).await? {
            Some(row) if row.expires_at > now && !row.revoked => self.grant_of(row).map(Some),
            _ => Ok(None),
        }
    }

    async fn take_grant(
        &self,
        kind: GrantKind,
        digest: &str,
        now: DateTime<Utc>,
    ) -> Result<Taken, RepositoryError> {
        let now = now.trunc_subsecs(6);
        let won = oauth_grant::Entity::update_many()
            .col_expr(oauth_grant::Column::UsedAt, Expr::value(now))
            .filter(
                Condition::all()
                    .add(oauth_grant::Column::Digest.eq(digest))
                    .add(oauth_grant::Column::Kind.eq(kind.as_str()))
                    .add(oauth_grant::Column::UsedAt.is_null())
                    .add(oauth_grant::Column::Revoked.eq(false))
                    .add(oauth_grant::Column::ExpiresAt.gt(now)),
            )
            .exec(&self.db)
            .await
            .map_err(logged)?
            .rows_affected
            == 1;
        let Some(row) = self.grant_row(kind, digest).await? else {
            return Ok(Taken::Missing);
        };
        if won {
            return self.grant_of(row).map(Taken::Fresh);
        }
        if row.used_at.is_some() || row.revoked {
            // A replay is reported even after expiry: its family must still be revoked.
            return self.grant_of(row).map(Taken::Spent);
        }
        Ok(Taken::Missing)
    }

    async fn revoke_family(&self, family: &str) -> Result<u64, RepositoryError> {
        Ok(oauth_grant::Entity::update_many()
            .col_expr(oauth_grant::Column::Revoked, Expr::value(true))
            .filter(oauth_grant::Column::Family.eq(family))
            .filter(oauth_grant::Column::Revoked.eq(false))
            .exec(&self.db)
            .await
            .map_err(logged)?
            .rows_affected)
    }

    async fn family_revoked(&self, family: &str) -> Result<bool, RepositoryError> {
        Ok(oauth_grant::Entity::find()
            .filter(oauth_grant::Column::Family.eq(family))
            .filter(oauth_grant::Column::Revoked.eq(true))
            .one(&self.db)
            .await
            .map_err(logged)?
            .is_some())
    }

    async fn purge_grants(&self, before: DateTime<Utc>) -> Result<u64, RepositoryError> {
        Ok(oauth_grant::Entity::delete_many()
            .filter(oauth_grant::Column::ExpiresAt.lt(before.trunc_subsecs(6)))
            .exec(&self.db)
            .await
            .map_err(logged)?
            .rows_affected)
    }

    async fn touch_client(
        &self,
        client_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), RepositoryError> {
        oauth_client::Entity::update_many()
            .col_expr(
                oauth_client::Column::UpdatedAt,
                Expr::value(at.trunc_subsecs(6)),
            )
            .filter(oauth_client::Column::ClientId.eq(client_id))
            .exec(&self.db)
            .await
            .map_err(logged)?;
        Ok(())
    }

    async fn purge_clients(
        &self,
        registered_before: Option<DateTime<Utc>>,
        documents_before: DateTime<Utc>,
    ) -> Result<u64, RepositoryError> {
        let mut stale = Condition::any().add(
            Condition::all()
                .add(oauth_client::Column::Source.eq(ClientSource::MetadataDocument.as_str()))
                .add(oauth_client::Column::UpdatedAt.lt(documents_before.trunc_subsecs(6))),
        );
        if let Some(before) = registered_before {
            stale = stale.add(
                Condition::all()
                    .add(oauth_client::Column::Source.eq(ClientSource::Registered.as_str()))
                    .add(oauth_client::Column::UpdatedAt.lt(before.trunc_subsecs(6))),
            );
        }
        Ok(oauth_client::Entity::delete_many()
            .filter(stale)
            .exec(&self.db)
            .await
            .map_err(logged)?
            .rows_affected)
    }

    async fn signing_keys(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<SigningKeyRecord>, RepositoryError> {
        oauth_signing_key::Entity::find()
            .filter(
                Condition::any()
                    .add(oauth_signing_key::Column::RetireAt.is_null())
                    .add(oauth_signing_key::Column::RetireAt.gt(now.trunc_subsecs(6))),
            )
            .order_by_desc(oauth_signing_key::Column::CreatedAt)
            .order_by_desc(oauth_signing_key::Column::Kid)
            .all(&self.db)
            .await
            .map_err(logged)?
            .into_iter()
            .map(|row| {
                Ok(SigningKeyRecord {
                    private_key: self
                        .sealer
                        .open(&format!("oauth_signing_key:{}", row.kid), &row.private_key)
                        .map_err(sealing)?,
                    kid: row.kid,
                    public_jwk: row.public_jwk,
                    created_at: row.created_at,
                    retire_at: row.retire_at,
                })
            })
            .collect()
    }

    async fn add_signing_key(&self, key: &SigningKeyRecord) -> Result<(), RepositoryError> {
        let private_key = self
            .sealer
            .seal(&format!("oauth_signing_key:{}", key.kid), &key.private_key)
            .map_err(sealing)?;
        oauth_signing_key::Entity::insert(oauth_signing_key::ActiveModel {
            kid: Set(key.kid.clone()),
            private_key: Set(private_key),
            public_jwk: Set(key.public_jwk.clone()),
            created_at: Set(key.created_at.trunc_subsecs(6)),
            retire_at: Set(key.retire_at.map(|t| t.trunc_subsecs(6))),
        })
        .exec(&self.db)
        .await
        .map_err(logged)?;
        Ok(())
    }

    async fn retire_signing_keys(
        &self,
        keep: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, RepositoryError> {
        let at = at.trunc_subsecs(6);
        Ok(oauth_signing_key::Entity::update_many()
            .col_expr(oauth_signing_key::Column::RetireAt, Expr::value(at))
            .filter(oauth_signing_key::Column::Kid.ne(keep))
            .filter(
                Condition::any()
                    .add(oauth_signing_key::Column::RetireAt.is_null())
                    .add(oauth_signing_key::Column::RetireAt.gt(at)),
            )
            .exec(&self.db)
            .await
            .map_err(logged)?
            .rows_affected)
    }
}
