//! [`CatalogRepository`] on sea-orm: the whole catalog as JSON lists, plus one
//! `catalog_tool` row per tool for discovery searches.

use std::collections::HashSet;

use async_trait::async_trait;
use gateway_domain::{
    Catalog, CatalogRepository, Descriptor, Page, PageRequest, RepositoryError, ServerId,
    ServerName, ToolHit,
};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde_json::Value;

use crate::connect::Store;
use crate::entity::{catalog_tool, server_catalog, upstream_server};
use crate::error::map_db_err;
use crate::servers::{contains_pattern, lower_like};

/// Rows per multi-row INSERT: well under SQLite's bound-parameter limit.
const INSERT_CHUNK: usize = 500;

fn to_json(list: &[Descriptor]) -> Value {
    Value::Array(list.iter().map(Descriptor::to_value).collect())
}

fn from_json(server: ServerId, value: Value) -> Result<Vec<Descriptor>, RepositoryError> {
    let Value::Array(items) = value else {
        return Err(RepositoryError::Internal(format!(
            "stored catalog of {server} is not a list"
        )));
    };
    items
        .into_iter()
        .map(|item| {
            Descriptor::from_value(item).ok_or_else(|| {
                RepositoryError::Internal(format!(
                    "stored catalog of {server} has a non-object item"
                ))
            })
        })
        .collect()
}

fn to_catalog(id: ServerId, row: server_catalog::Model) -> Result<Catalog, RepositoryError> {
    Ok(Catalog {
        tools: from_json(id, row.tools)?,
        resources: from_json(id, row.resources)?,
        resource_templates: from_json(id, row.resource_templates)?,
        prompts: from_json(id, row.prompts)?,
        content_hash: row.content_hash,
        fetched_at: row.fetched_at,
    })
}

#[async_trait]
impl CatalogRepository for Store {
    async fn replace(&self, id: ServerId, catalog: &Catalog) -> Result<(), RepositoryError> {
        let server_id = id.as_uuid();
        let txn = self.begin_write().await?;
        let server = upstream_server::Entity::find_by_id(server_id)
            .one(&txn)
            .await
            .map_err(map_db_err)?
            .ok_or(RepositoryError::NotFound)?;
        server_catalog::Entity::delete_by_id(server_id)
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        catalog_tool::Entity::delete_many()
            .filter(catalog_tool::Column::ServerId.eq(server_id))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        let row = server_catalog::ActiveModel {
            server_id: Set(server_id),
            tools: Set(to_json(&catalog.tools)),
            resources: Set(to_json(&catalog.resources)),
            resource_templates: Set(to_json(&catalog.resource_templates)),
            prompts: Set(to_json(&catalog.prompts)),
            content_hash: Set(catalog.content_hash.clone()),
            fetched_at: Set(catalog.fetched_at),
        };
        server_catalog::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
            .map_err(map_db_err)?;

        // The index keeps the first tool of each name; an upstream that repeats a name
        // is inconsistent, and the catalog itself still holds everything it sent.
        let mut seen = HashSet::new();
        let index_rows: Vec<_> = catalog
            .tools
            .iter()
            .filter(|tool| !tool.name().is_empty() && seen.insert(tool.name()))
            .map(|tool| catalog_tool::ActiveModel {
                server_id: Set(server_id),
                name: Set(tool.name().to_owned()),
                server_name: Set(server.name.clone()),
                title: Set(tool.title().map(str::to_owned)),
                description: Set(tool.description().map(str::to_owned)),
                descriptor: Set(tool.to_value()),
            })
            .collect();
        for chunk in index_rows.chunks(INSERT_CHUNK) {
            catalog_tool::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&txn)
                .await
                .map_err(map_db_err)?;
        }
        txn.commit().await.map_err(map_db_err)
    }

    async fn get(&self, id: ServerId) -> Result<Option<Catalog>, RepositoryError> {
        let row = server_catalog::Entity::find_by_id(id.as_uuid())
            .one(&self.db)
            .await
            .map_err(map_db_err)?;
        row.map(|row| to_catalog(id, row)).transpose()
    }

    async fn all(&self) -> Result<Vec<(ServerId, Catalog)>, RepositoryError> {
        let rows = server_catalog::Entity::find()
            .all(&self.db)
            .await
            .map_err(map_db_err)?;
        rows.into_iter()
            .map(|row| {
                let id = ServerId::from_uuid(row.server_id);
                Ok((id, to_catalog(id, row)?))
            })
            .collect()
    }

    async fn search_tools(
        &self,
        text: Option<&str>,
        server: Option<&ServerName>,
        page: &PageRequest,
    ) -> Result<Page<ToolHit>, RepositoryError> {
        use catalog_tool::Column;
        let mut condition = Condition::all();
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            let pattern = contains_pattern(text);
            condition = condition.add(
                Condition::any()
                    .add(lower_like((catalog_tool::Entity, Column::Name), &pattern))
                    .add(lower_like((catalog_tool::Entity, Column::Title), &pattern))
                    .add(lower_like(
                        (catalog_tool::Entity, Column::Description),
                        &pattern,
                    )),
            );
        }
        if let Some(server) = server {
            condition = condition.add(Column::ServerName.eq(server.as_str()));
        }
        if let Some([after_server, after_tool]) = page.after.as_ref().map(|c| c.key()) {
            condition = condition.add(
                Condition::any()
                    .add(Column::ServerName.gt(after_server.as_str()))
                    .add(
                        Condition::all()
                            .add(Column::ServerName.eq(after_server.as_str()))
                            .add(Column::Name.gt(after_tool.as_str())),
                    ),
            );
        }
        let rows = catalog_tool::Entity::find()
            .filter(condition)
            .order_by_asc(Column::ServerName)
            .order_by_asc(Column::Name)
            .limit(page.limit + 1)
            .all(&self.db)
            .await
            .map_err(map_db_err)?;
        let hits = rows
            .into_iter()
            .map(|row| {
                let server_name = ServerName::parse(&row.server_name).map_err(|e| {
                    RepositoryError::Internal(format!("indexed server name is invalid: {e}"))
                })?;
                let tool = Descriptor::from_value(row.descriptor).ok_or_else(|| {
                    RepositoryError::Internal("indexed tool is not an object".into())
                })?;
                Ok(ToolHit {
                    server_id: ServerId::from_uuid(row.server_id),
                    server_name,
                    tool,
                })
            })
            .collect::<Result<Vec<_>, RepositoryError>>()?;
        Ok(Page::from_overfetch(hits, page.limit, |hit| {
            vec![hit.server_name.to_string(), hit.tool.name().to_owned()]
        }))
    }
}
