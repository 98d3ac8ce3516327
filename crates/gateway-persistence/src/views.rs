//! [`ViewRepository`] on sea-orm: one row per view, its lists and overrides in one
//! JSON column (read and written whole).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::SubsecRound;
use gateway_domain::{ItemOverride, RepositoryError, View, ViewName, ViewRepository, ViewSpec};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde::{Deserialize, Serialize};

use crate::connect::Store;
use crate::entity::mcp_view;
use crate::error::map_db_err;

/// The JSON column.
#[derive(Serialize, Deserialize)]
struct Definition {
    tools: Vec<String>,
    prompts: Vec<String>,
    resources: Vec<String>,
    overrides: BTreeMap<String, ItemOverride>,
}

fn to_domain(row: mcp_view::Model) -> Result<View, RepositoryError> {
    let corrupt = |what: String| {
        RepositoryError::Internal(format!("stored view {} is invalid: {what}", row.id))
    };
    let definition: Definition =
        serde_json::from_value(row.definition.clone()).map_err(|e| corrupt(e.to_string()))?;
    let spec = ViewSpec::new(
        &row.name,
        row.description.clone(),
        definition.tools,
        definition.prompts,
        definition.resources,
        definition.overrides,
    )
    .map_err(|e| corrupt(e.to_string()))?;
    Ok(View {
        id: row.id,
        spec,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn active(view: &View) -> mcp_view::ActiveModel {
    let spec = &view.spec;
    mcp_view::ActiveModel {
        id: Set(view.id),
        name: Set(spec.name.as_str().to_owned()),
        description: Set(spec.description.clone()),
        definition: Set(serde_json::json!(Definition {
            tools: spec.tools.clone(),
            prompts: spec.prompts.clone(),
            resources: spec.resources.clone(),
            overrides: spec.overrides.clone(),
        })),
        created_at: Set(view.created_at.trunc_subsecs(6)),
        updated_at: Set(view.updated_at.trunc_subsecs(6)),
    }
}

#[async_trait]
impl ViewRepository for Store {
    async fn list_views(&self) -> Result<Vec<View>, RepositoryError> {
        mcp_view::Entity::find()
            .order_by_asc(mcp_view::Column::Name)
            .all(&self.db)
            .await
            .map_err(map_db_err)?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    async fn insert_view(&self, view: &View) -> Result<(), RepositoryError> {
        active(view)
            .insert(&self.db)
            .await
            .map_err(|error| match map_db_err(error) {
                RepositoryError::Duplicate(_) => {
                    RepositoryError::Duplicate(view.spec.name.as_str().to_owned())
                }
                other => other,
            })?;
        Ok(())
    }

    async fn replace_view(&self, view: &View) -> Result<(), RepositoryError> {
        let mut row = active(view);
        // The id and creation time stay those of the stored row.
        row.id = sea_orm::ActiveValue::NotSet;
        row.created_at = sea_orm::ActiveValue::NotSet;
        let updated = mcp_view::Entity::update_many()
            .set(row)
            .filter(mcp_view::Column::Name.eq(view.spec.name.as_str()))
            .exec(&self.db)
            .await
            .map_err(map_db_err)?;
        if updated.rows_affected == 0 {
            return Err(RepositoryError::NotFound);
        }
        Ok(())
    }

    async fn delete_view(&self, name: &ViewName) -> Result<(), RepositoryError> {
        let deleted = mcp_view::Entity::delete_many()
            .filter(mcp_view::Column::Name.eq(name.as_str()))
            .exec(&self.db)
            .await
            .map_err(map_db_err)?;
        if deleted.rows_affected == 0 {
            return Err(RepositoryError::NotFound);
        }
        Ok(())
    }
}
