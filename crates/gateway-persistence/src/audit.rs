//! [`AuditRepository`] on sea-orm: batched inserts, newest-first keyset pages over
//! `(at, id)`, and deletion in bounded batches for retention.

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use gateway_domain::{AuditEvent, AuditFilter, AuditOutcome, AuditRepository, RepositoryError};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use uuid::Uuid;

use crate::connect::Store;
use crate::entity::audit_event;
use crate::error::map_db_err;

/// At most `max` characters of `value` (columns have fixed widths; a client-supplied
/// header must not make a whole batch fail).
fn clip(value: &Option<String>, max: usize) -> Option<String> {
    value.as_ref().map(|v| v.chars().take(max).collect())
}

fn to_row(event: &AuditEvent) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        id: Set(event.id),
        at: Set(event.at.trunc_subsecs(6)),
        request_id: Set(clip(&event.request_id, 128)),
        session_id: Set(clip(&event.session_id, 256)),
        subject: Set(clip(&event.subject, 256)),
        tenant: Set(clip(&event.tenant, 256)),
        roles: Set(serde_json::json!(event.roles)),
        client_address: Set(clip(&event.client_address, 64)),
        action: Set(event.action.chars().take(128).collect()),
        server: Set(clip(&event.server, 64)),
        target: Set(clip(&event.target, 4096)),
        outcome: Set(event.outcome.as_str().to_owned()),
        error_code: Set(event.error_code),
        latency_us: Set(i64::try_from(event.latency_us).unwrap_or(i64::MAX)),
        arguments_hash: Set(clip(&event.arguments_hash, 64)),
        arguments: Set(event.arguments.clone()),
    }
}

fn to_domain(row: audit_event::Model) -> AuditEvent {
    AuditEvent {
        id: row.id,
        at: row.at,
        request_id: row.request_id,
        session_id: row.session_id,
        subject: row.subject,
        tenant: row.tenant,
        roles: serde_json::from_value(row.roles).unwrap_or_default(),
        client_address: row.client_address,
        action: row.action,
        server: row.server,
        target: row.target,
        outcome: AuditOutcome::parse(&row.outcome).unwrap_or(AuditOutcome::Error),
        error_code: row.error_code,
        latency_us: u64::try_from(row.latency_us).unwrap_or_default(),
        arguments_hash: row.arguments_hash,
        arguments: row.arguments,
    }
}

/// Rows per INSERT statement (16 columns: well under SQLite's parameter limit).
const ROWS_PER_INSERT: usize = 500;

#[async_trait]
impl AuditRepository for Store {
    async fn insert_events(&self, events: &[AuditEvent]) -> Result<(), RepositoryError> {
        for chunk in events.chunks(ROWS_PER_INSERT) {
            audit_event::Entity::insert_many(chunk.iter().map(to_row))
                .on_conflict_do_nothing()
                .exec(&self.db)
                .await
                .map_err(map_db_err)?;
        }
        Ok(())
    }

    async fn query_events(
        &self,
        filter: &AuditFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, RepositoryError> {
        use audit_event::Column;
        let mut condition = Condition::all();
        if let Some(from) = filter.from {
            condition = condition.add(Column::At.gte(from));
        }
        if let Some(to) = filter.to {
            condition = condition.add(Column::At.lt(to));
        }
        for (column, value) in [
            (Column::Subject, &filter.subject),
            (Column::Tenant, &filter.tenant),
            (Column::Server, &filter.server),
            (Column::Target, &filter.target),
            (Column::Action, &filter.action),
        ] {
            if let Some(value) = value {
                condition = condition.add(column.eq(value.clone()));
            }
        }
        if let Some(outcome) = filter.outcome {
            condition = condition.add(Column::Outcome.eq(outcome.as_str()));
        }
        if let Some((at, id)) = after {
            let at = at.trunc_subsecs(6);
            condition = condition.add(
                Condition::any().add(Column::At.lt(at)).add(
                    Condition::all()
                        .add(Column::At.eq(at))
                        .add(Column::Id.lt(id)),
                ),
            );
        }
        let rows = audit_event::Entity::find()
            .filter(condition)
            .order_by_desc(Column::At)
            .order_by_desc(Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(map_db_err)?;
        Ok(rows.into_iter().map(to_domain).collect())
    }

    async fn delete_events_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, RepositoryError> {
        let ids: Vec<Uuid> = audit_event::Entity::find()
            .select_only()
            .column(audit_event::Column::Id)
            .filter(audit_event::Column::At.lt(cutoff))
            .order_by_asc(audit_event::Column::At)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(map_db_err)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let deleted = audit_event::Entity::delete_many()
            .filter(audit_event::Column::Id.is_in(ids))
            .exec(&self.db)
            .await
            .map_err(map_db_err)?;
        Ok(deleted.rows_affected)
    }
}
