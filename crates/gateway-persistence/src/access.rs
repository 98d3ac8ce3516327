//! [`AccessRuleRepository`] on sea-orm.

use async_trait::async_trait;
use chrono::SubsecRound;
use gateway_domain::{AccessRule, AccessRuleRepository, Action, RepositoryError};
use sea_orm::{ActiveModelTrait, EntityTrait, QueryOrder, Set};
use uuid::Uuid;

use crate::connect::Store;
use crate::entity::access_rule;
use crate::error::map_db_err;

fn to_domain(row: access_rule::Model) -> Result<AccessRule, RepositoryError> {
    let corrupt = |what: String| {
        RepositoryError::Internal(format!("stored access rule {} is invalid: {what}", row.id))
    };
    let actions: Vec<Action> =
        serde_json::from_value(row.actions.clone()).map_err(|e| corrupt(e.to_string()))?;
    let patterns: Vec<String> =
        serde_json::from_value(row.patterns.clone()).map_err(|e| corrupt(e.to_string()))?;
    Ok(AccessRule {
        id: row.id,
        role: row.role,
        actions,
        patterns,
        description: row.description,
        created_at: row.created_at,
        configured: false,
    })
}

#[async_trait]
impl AccessRuleRepository for Store {
    async fn list_rules(&self) -> Result<Vec<AccessRule>, RepositoryError> {
        access_rule::Entity::find()
            .order_by_asc(access_rule::Column::CreatedAt)
            .order_by_asc(access_rule::Column::Id)
            .all(&self.db)
            .await
            .map_err(map_db_err)?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    async fn insert_rule(&self, rule: &AccessRule) -> Result<(), RepositoryError> {
        access_rule::ActiveModel {
            id: Set(rule.id),
            role: Set(rule.role.clone()),
            actions: Set(serde_json::json!(rule.actions)),
            patterns: Set(serde_json::json!(rule.patterns)),
            description: Set(rule.description.clone()),
            created_at: Set(rule.created_at.trunc_subsecs(6)),
        }
        .insert(&self.db)
        .await
        .map_err(map_db_err)?;
        Ok(())
    }

    async fn delete_rule(&self, id: Uuid) -> Result<(), RepositoryError> {
        crate::error::delete_row::<access_rule::Entity>(&self.db, id).await
    }
}
