//! [`PublishedRepository`] on sea-orm: one row per published version, the document
//! kept whole as JSON; pages in (name, version) order.

use async_trait::async_trait;
use chrono::SubsecRound;
use gateway_domain::{
    PublishStatus, PublishedQuery, PublishedRepository, PublishedServer, RegistryName,
    RepositoryError, ServerId, VersionFilter,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};

use crate::connect::Store;
use crate::entity::published_server::{self, Column, Entity};
use crate::error::map_db_err;
use crate::servers::{contains_pattern, lower_like};

fn to_domain(row: published_server::Model) -> Result<PublishedServer, RepositoryError> {
    let corrupt = |what: String| {
        RepositoryError::Internal(format!(
            "stored published server {} is invalid: {what}",
            row.id
        ))
    };
    Ok(PublishedServer {
        name: RegistryName::parse(&row.name).map_err(corrupt)?,
        version: row.version,
        document: row.document,
        status: row.status.parse().map_err(corrupt)?,
        status_message: row.status_message,
        status_changed_at: row.status_changed_at,
        published_at: row.published_at,
        updated_at: row.updated_at,
        is_latest: row.is_latest,
        upstream: row.upstream_server_id.map(ServerId::from_uuid),
    })
}

#[async_trait]
impl PublishedRepository for Store {
    async fn publish(&self, entry: &PublishedServer, latest: &str) -> Result<(), RepositoryError> {
        let txn = self.begin_write().await?;
        published_server::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            name: Set(entry.name.as_str().to_owned()),
            version: Set(entry.version.clone()),
            document: Set(entry.document.clone()),
            status: Set(entry.status.as_str().to_owned()),
            status_message: Set(entry.status_message.clone()),
            status_changed_at: Set(entry.status_changed_at.trunc_subsecs(6)),
            published_at: Set(entry.published_at.trunc_subsecs(6)),
            updated_at: Set(entry.updated_at.trunc_subsecs(6)),
            is_latest: Set(false),
            upstream_server_id: Set(entry.upstream.map(|id| id.as_uuid())),
        }
        .insert(&txn)
        .await
        .map_err(|error| match map_db_err(error) {
            RepositoryError::Duplicate(_) => {
                RepositoryError::Duplicate(format!("{} {}", entry.name, entry.version))
            }
            other => other,
        })?;
        set_latest(&txn, entry.name.as_str(), latest, entry.updated_at).await?;
        txn.commit().await.map_err(map_db_err)
    }

    async fn find(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<PublishedServer>, RepositoryError> {
        Entity::find()
            .filter(Column::Name.eq(name))
            .filter(Column::Version.eq(version))
            .one(&self.db)
            .await
            .map_err(map_db_err)?
            .map(to_domain)
            .transpose()
    }

    async fn versions(&self, name: &str) -> Result<Vec<PublishedServer>, RepositoryError> {
        Entity::find()
            .filter(Column::Name.eq(name))
            .order_by_desc(Column::PublishedAt)
            .order_by_desc(Column::Version)
            .all(&self.db)
            .await
            .map_err(map_db_err)?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    async fn list(&self, query: &PublishedQuery) -> Result<Vec<PublishedServer>, RepositoryError> {
        let mut condition = Condition::all();
        if let Some(text) = query.search.as_deref().filter(|t| !t.is_empty()) {
            condition = condition.add(lower_like((Entity, Column::Name), &contains_pattern(text)));
        }
        if let Some(since) = query.updated_since {
            condition = condition.add(Column::UpdatedAt.gt(since));
        }
        match &query.version {
            VersionFilter::All => {}
            VersionFilter::Latest => condition = condition.add(Column::IsLatest.eq(true)),
            VersionFilter::Exact(version) => {
                condition = condition.add(Column::Version.eq(version.as_str()));
            }
        }
        if !query.include_deleted {
            condition = condition.add(Column::Status.ne(PublishStatus::Deleted.as_str()));
        }
        if let Some((name, version)) = &query.after {
            condition = condition.add(
                Condition::any().add(Column::Name.gt(name.as_str())).add(
                    Condition::all()
                        .add(Column::Name.eq(name.as_str()))
                        .add(Column::Version.gt(version.as_str())),
                ),
            );
        }
        Entity::find()
            .filter(condition)
            .order_by_asc(Column::Name)
            .order_by_asc(Column::Version)
            .limit(query.limit)
            .all(&self.db)
            .await
            .map_err(map_db_err)?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    async fn set_status(
        &self,
        entry: &PublishedServer,
        latest: Option<&str>,
    ) -> Result<(), RepositoryError> {
        let txn = self.begin_write().await?;
        let updated = Entity::update_many()
            .col_expr(Column::Status, Expr::value(entry.status.as_str()))
            .col_expr(
                Column::StatusMessage,
                Expr::value(entry.status_message.clone()),
            )
            .col_expr(
                Column::StatusChangedAt,
                Expr::value(entry.status_changed_at.trunc_subsecs(6)),
            )
            .col_expr(
                Column::UpdatedAt,
                Expr::value(entry.updated_at.trunc_subsecs(6)),
            )
            .col_expr(
                Column::UpstreamServerId,
                Expr::value(entry.upstream.map(|id| id.as_uuid())),
            )
            .filter(Column::Name.eq(entry.name.as_str()))
            .filter(Column::Version.eq(entry.version.as_str()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        if updated.rows_affected == 0 {
            return Err(RepositoryError::NotFound);
        }
        match latest {
            Some(latest) => set_latest(&txn, entry.name.as_str(), latest, entry.updated_at).await?,
            None => clear_latest(&txn, entry.name.as_str(), entry.updated_at).await?,
        }
        txn.commit().await.map_err(map_db_err)
    }
}

/// No version is the latest (every one is deleted).
async fn clear_latest(
    txn: &sea_orm::DatabaseTransaction,
    name: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), RepositoryError> {
    Entity::update_many()
        .col_expr(Column::IsLatest, Expr::value(false))
        .col_expr(Column::UpdatedAt, Expr::value(at.trunc_subsecs(6)))
        .filter(Column::Name.eq(name))
        .filter(Column::IsLatest.eq(true))
        .exec(txn)
        .await
        .map_err(map_db_err)?;
    Ok(())
}

/// Marks `latest` as the server's latest version and every other version not;
/// entries whose flag changes count as updated (for `updated_since`).
async fn set_latest(
    txn: &sea_orm::DatabaseTransaction,
    name: &str,
    latest: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), RepositoryError> {
    for (flag, versions) in [
        (false, Column::Version.ne(latest)),
        (true, Column::Version.eq(latest)),
    ] {
        Entity::update_many()
            .col_expr(Column::IsLatest, Expr::value(flag))
            .col_expr(Column::UpdatedAt, Expr::value(at.trunc_subsecs(6)))
            .filter(Column::Name.eq(name))
            .filter(versions)
            .filter(Column::IsLatest.ne(flag))
            .exec(txn)
            .await
            .map_err(map_db_err)?;
    }
    Ok(())
}
