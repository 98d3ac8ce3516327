//! [`PublishedRepository`] on sea-orm: one row per published version, the document
//! kept whole as JSON; pages in (name, version) order.

use async_trait::async_trait;
use chrono::SubsecRound;
use gateway_domain::{
    PublishStatus, PublishedQuery, PublishedRepository, PublishedServer, RegistryName,
    RepositoryError, ServerId, StatusChange, VersionFilter, latest_version,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, Statement,
};

use crate::connect::{Backend, Store};
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

/// Excludes other writers of the same server until `txn` ends. SQLite's write
/// transactions (`BEGIN IMMEDIATE`) are one at a time already; PostgreSQL takes a
/// transaction-scoped advisory lock on the name.
async fn lock_server(
    store: &Store,
    txn: &sea_orm::DatabaseTransaction,
    name: &str,
) -> Result<(), RepositoryError> {
    if store.backend() != Backend::Postgres {
        return Ok(());
    }
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        [format!("published_server:{name}").into()],
    ))
    .await
    .map_err(map_db_err)?;
    Ok(())
}

/// Recomputes which version of `name` is the latest, inside `txn`; entries whose
/// flag changes count as updated (for `updated_since`). Returns the latest version.
async fn refresh_latest(
    txn: &sea_orm::DatabaseTransaction,
    name: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<String>, RepositoryError> {
    let rows = Entity::find()
        .filter(Column::Name.eq(name))
        .all(txn)
        .await
        .map_err(map_db_err)?;
    let statuses: Vec<(String, chrono::DateTime<chrono::Utc>, PublishStatus)> = rows
        .iter()
        .map(|row| {
            let status = row.status.parse().unwrap_or(PublishStatus::Active);
            (row.version.clone(), row.published_at, status)
        })
        .collect();
    let latest =
        latest_version(statuses.iter().map(|(v, at, s)| (v.as_str(), *at, *s))).map(str::to_owned);
    for row in rows {
        let flag = latest.as_deref() == Some(row.version.as_str());
        if row.is_latest != flag {
            Entity::update_many()
                .col_expr(Column::IsLatest, Expr::value(flag))
                .col_expr(Column::UpdatedAt, Expr::value(at.trunc_subsecs(6)))
                .filter(Column::Id.eq(row.id))
                .exec(txn)
                .await
                .map_err(map_db_err)?;
        }
    }
    Ok(latest)
}

async fn find_in<C: sea_orm::ConnectionTrait>(
    db: &C,
    name: &str,
    version: &str,
) -> Result<Option<PublishedServer>, RepositoryError> {
    Entity::find()
        .filter(Column::Name.eq(name))
        .filter(Column::Version.eq(version))
        .one(db)
        .await
        .map_err(map_db_err)?
        .map(to_domain)
        .transpose()
}

#[async_trait]
impl PublishedRepository for Store {
    async fn publish(&self, entry: &PublishedServer) -> Result<PublishedServer, RepositoryError> {
        let txn = self.begin_write().await?;
        let name = entry.name.as_str();
        lock_server(self, &txn, name).await?;
        if find_in(&txn, name, &entry.version).await?.is_some() {
            return Err(RepositoryError::Duplicate(format!(
                "{name} {}",
                entry.version
            )));
        }
        published_server::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            name: Set(name.to_owned()),
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
                RepositoryError::Duplicate(format!("{name} {}", entry.version))
            }
            other => other,
        })?;
        refresh_latest(&txn, name, entry.updated_at).await?;
        let stored = find_in(&txn, name, &entry.version)
            .await?
            .ok_or(RepositoryError::NotFound)?;
        txn.commit().await.map_err(map_db_err)?;
        Ok(stored)
    }

    async fn find(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<PublishedServer>, RepositoryError> {
        find_in(&self.db, name, version).await
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
        if let Some(upstream) = query.upstream {
            condition = condition.add(Column::UpstreamServerId.eq(upstream.as_uuid()));
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
        name: &str,
        version: &str,
        change: &StatusChange,
    ) -> Result<PublishedServer, RepositoryError> {
        let txn = self.begin_write().await?;
        lock_server(self, &txn, name).await?;
        let current = find_in(&txn, name, version)
            .await?
            .ok_or(RepositoryError::NotFound)?;
        let mut update = Entity::update_many()
            .col_expr(Column::Status, Expr::value(change.status.as_str()))
            .col_expr(Column::StatusMessage, Expr::value(change.message.clone()))
            .col_expr(Column::UpdatedAt, Expr::value(change.at.trunc_subsecs(6)));
        if current.status != change.status {
            update = update.col_expr(
                Column::StatusChangedAt,
                Expr::value(change.at.trunc_subsecs(6)),
            );
        }
        update
            .filter(Column::Name.eq(name))
            .filter(Column::Version.eq(version))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        refresh_latest(&txn, name, change.at).await?;
        let stored = find_in(&txn, name, version)
            .await?
            .ok_or(RepositoryError::NotFound)?;
        txn.commit().await.map_err(map_db_err)?;
        Ok(stored)
    }

    async fn link(
        &self,
        name: &str,
        version: &str,
        upstream: ServerId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), RepositoryError> {
        let updated = Entity::update_many()
            .col_expr(
                Column::UpstreamServerId,
                Expr::value(Some(upstream.as_uuid())),
            )
            .col_expr(Column::UpdatedAt, Expr::value(at.trunc_subsecs(6)))
            .filter(Column::Name.eq(name))
            .filter(Column::Version.eq(version))
            .exec(&self.db)
            .await
            .map_err(map_db_err)?;
        if updated.rows_affected == 0 {
            return Err(RepositoryError::NotFound);
        }
        Ok(())
    }
}
