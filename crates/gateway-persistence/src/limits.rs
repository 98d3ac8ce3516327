//! [`RateLimitRuleRepository`] on sea-orm.

use async_trait::async_trait;
use chrono::SubsecRound;
use gateway_domain::{RateLimitRule, RateLimitRuleRepository, RepositoryError};
use sea_orm::{ActiveModelTrait, EntityTrait, QueryOrder, Set};
use uuid::Uuid;

use crate::connect::Store;
use crate::entity::rate_limit_rule;
use crate::error::map_db_err;

fn to_domain(row: rate_limit_rule::Model) -> Result<RateLimitRule, RepositoryError> {
    let number = |value: i64| u32::try_from(value).unwrap_or(0);
    let mut rule = RateLimitRule::new(
        &row.scope,
        &row.matches,
        number(row.rate),
        number(row.period_secs),
        Some(number(row.burst)),
        row.description,
    )
    .map_err(|e| {
        RepositoryError::Internal(format!("stored rate-limit rule {} is invalid: {e}", row.id))
    })?;
    rule.id = row.id;
    rule.created_at = row.created_at;
    Ok(rule)
}

#[async_trait]
impl RateLimitRuleRepository for Store {
    async fn list_limits(&self) -> Result<Vec<RateLimitRule>, RepositoryError> {
        rate_limit_rule::Entity::find()
            .order_by_asc(rate_limit_rule::Column::CreatedAt)
            .order_by_asc(rate_limit_rule::Column::Id)
            .all(&self.db)
            .await
            .map_err(map_db_err)?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    async fn insert_limit(&self, rule: &RateLimitRule) -> Result<(), RepositoryError> {
        rate_limit_rule::ActiveModel {
            id: Set(rule.id),
            scope: Set(rule.scope.as_str().to_owned()),
            matches: Set(rule.matches.clone()),
            rate: Set(i64::from(rule.quota.rate)),
            period_secs: Set(i64::from(rule.quota.period_secs)),
            burst: Set(i64::from(rule.quota.burst)),
            description: Set(rule.description.clone()),
            created_at: Set(rule.created_at.trunc_subsecs(6)),
        }
        .insert(&self.db)
        .await
        .map_err(map_db_err)?;
        Ok(())
    }

    async fn delete_limit(&self, id: Uuid) -> Result<(), RepositoryError> {
        crate::error::delete_row::<rate_limit_rule::Entity>(&self.db, id).await
    }
}
