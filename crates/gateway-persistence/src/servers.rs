//! [`ServerRepository`] on sea-orm. The spec's transport is one JSON column (its
//! shape is owned by [`StoredTransport`]); tags are both a JSON column (read back with
//! the row) and `server_tag` rows (indexed filter).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use gateway_domain::health::HealthState;
use gateway_domain::{
    ClientCredentials, HealthStatus, Page, PageRequest, RepositoryError, Secret, ServerFilter,
    ServerId, ServerName, ServerRepository, ServerSpec, Tag, TenantId, Transport, UpstreamServer,
};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::connect::Store;
use crate::entity::{catalog_tool, server_tag, upstream_server};
use crate::error::map_db_err;
use crate::sealing::{Sealer, SealingError};

/// The transport as stored: the only place where secret values are written out.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum StoredTransport {
    StreamableHttp {
        url: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replicas: Vec<String>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        oauth: Option<StoredClientCredentials>,
    },
    Stdio {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        cwd: Option<String>,
    },
}

/// OAuth client credentials as stored: the secret sealed.
#[derive(Debug, Serialize, Deserialize)]
struct StoredClientCredentials {
    token_url: String,
    client_id: String,
    client_secret: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource: Option<String>,
}

/// What the sealed client secret is bound to (sealing's associated data).
const CLIENT_SECRET_AAD: &str = "oauth.client_secret";

impl StoredClientCredentials {
    fn seal(credentials: &ClientCredentials, sealer: &Sealer) -> Result<Self, SealingError> {
        Ok(Self {
            token_url: credentials.token_url.to_string(),
            client_id: credentials.client_id.clone(),
            client_secret: sealer.seal(CLIENT_SECRET_AAD, credentials.client_secret.expose())?,
            scopes: credentials.scopes.clone(),
            audience: credentials.audience.clone(),
            resource: credentials.resource.clone(),
        })
    }

    fn into_domain(self, sealer: &Sealer) -> Result<ClientCredentials, String> {
        let secret = sealer
            .open(CLIENT_SECRET_AAD, &self.client_secret)
            .map_err(|e| format!("`{CLIENT_SECRET_AAD}`: {e}"))?;
        Ok(ClientCredentials {
            token_url: self
                .token_url
                .parse()
                .map_err(|e| format!("stored token URL `{}` is invalid: {e}", self.token_url))?,
            client_id: self.client_id,
            client_secret: Secret::new(secret),
            scopes: self.scopes,
            audience: self.audience,
            resource: self.resource,
        })
    }
}

fn seal_all(
    values: &BTreeMap<String, Secret>,
    sealer: &Sealer,
) -> Result<BTreeMap<String, String>, SealingError> {
    values
        .iter()
        .map(|(k, v)| Ok((k.clone(), sealer.seal(k, v.expose())?)))
        .collect()
}

fn open_all(
    values: BTreeMap<String, String>,
    sealer: &Sealer,
) -> Result<BTreeMap<String, Secret>, String> {
    values
        .into_iter()
        .map(|(k, v)| {
            let plain = sealer.open(&k, &v).map_err(|e| format!("`{k}`: {e}"))?;
            Ok((k, Secret::new(plain)))
        })
        .collect()
}

impl StoredTransport {
    /// The stored form of `transport`: header and environment values sealed.
    fn seal(transport: &Transport, sealer: &Sealer) -> Result<Self, SealingError> {
        Ok(match transport {
            Transport::StreamableHttp {
                url,
                replicas,
                headers,
                oauth,
            } => Self::StreamableHttp {
                url: url.to_string(),
                replicas: replicas.iter().map(ToString::to_string).collect(),
                headers: seal_all(headers, sealer)?,
                oauth: oauth
                    .as_ref()
                    .map(|oauth| StoredClientCredentials::seal(oauth, sealer))
                    .transpose()?,
            },
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => Self::Stdio {
                command: command.clone(),
                args: args.clone(),
                env: seal_all(env, sealer)?,
                cwd: cwd.clone(),
            },
        })
    }

    /// Whether any value is still in plain text (written before sealing existed).
    fn has_plain_values(&self) -> bool {
        let (values, oauth) = match self {
            Self::StreamableHttp { headers, oauth, .. } => (headers, oauth.as_ref()),
            Self::Stdio { env, .. } => (env, None),
        };
        values.values().any(|v| !Sealer::is_sealed(v))
            || oauth.is_some_and(|oauth| !Sealer::is_sealed(&oauth.client_secret))
    }

    fn into_domain(self, sealer: &Sealer) -> Result<Transport, String> {
        Ok(match self {
            Self::StreamableHttp {
                url,
                replicas,
                headers,
                oauth,
            } => {
                let parse = |raw: &str| {
                    raw.parse()
                        .map_err(|e| format!("stored URL `{raw}` is invalid: {e}"))
                };
                Transport::StreamableHttp {
                    url: parse(&url)?,
                    replicas: replicas
                        .iter()
                        .map(|raw| parse(raw))
                        .collect::<Result<_, _>>()?,
                    headers: open_all(headers, sealer)?,
                    oauth: oauth
                        .map(|oauth| oauth.into_domain(sealer).map(Box::new))
                        .transpose()?,
                }
            }
            Self::Stdio {
                command,
                args,
                env,
                cwd,
            } => Transport::Stdio {
                command,
                args,
                env: open_all(env, sealer)?,
                cwd,
            },
        })
    }
}

/// Timestamps with the precision both backends keep (microseconds), so a value read
/// back equals the value written.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn to_domain(
    row: upstream_server::Model,
    sealer: &Sealer,
) -> Result<UpstreamServer, RepositoryError> {
    let corrupt = |what: String| {
        RepositoryError::Internal(format!("stored server {} is invalid: {what}", row.id))
    };
    let name = ServerName::parse(&row.name).map_err(|e| corrupt(e.to_string()))?;
    let stored: StoredTransport =
        serde_json::from_value(row.transport.clone()).map_err(|e| corrupt(e.to_string()))?;
    let transport = stored.into_domain(sealer).map_err(&corrupt)?;
    let tags: Vec<String> =
        serde_json::from_value(row.tags.clone()).map_err(|e| corrupt(e.to_string()))?;
    let tags = tags
        .iter()
        .map(|t| Tag::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(e.to_string()))?;
    let tenant = row
        .tenant
        .as_deref()
        .map(TenantId::parse)
        .transpose()
        .map_err(|e| corrupt(e.to_string()))?;
    let state: HealthState = row.health_state.parse().map_err(corrupt)?;
    Ok(UpstreamServer {
        id: ServerId::from_uuid(row.id),
        spec: ServerSpec {
            name,
            title: row.title,
            description: row.description,
            transport,
            tags,
            tenant,
            enabled: row.enabled,
            request_timeout_ms: row.request_timeout_ms.and_then(|ms| u64::try_from(ms).ok()),
        },
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
        health: HealthStatus {
            state,
            checked_at: row.health_checked_at,
            latency_ms: row.health_latency_ms,
            error: row.health_error,
            protocol_version: row.protocol_version,
        },
    })
}

/// Sets the spec columns of an active model (secret values sealed).
fn apply_spec(
    model: &mut upstream_server::ActiveModel,
    spec: &ServerSpec,
    sealer: &Sealer,
) -> Result<(), RepositoryError> {
    model.name = Set(spec.name.as_str().to_owned());
    model.title = Set(spec.title.clone());
    model.description = Set(spec.description.clone());
    model.transport_kind = Set(spec.transport.kind().as_str().to_owned());
    let stored = StoredTransport::seal(&spec.transport, sealer)
        .map_err(|e| RepositoryError::Internal(format!("cannot seal secrets: {e}")))?;
    model.transport = Set(serde_json::to_value(stored)
        .map_err(|e| RepositoryError::Internal(format!("cannot encode transport: {e}")))?);
    model.tags = Set(serde_json::Value::from(
        spec.tags.iter().map(Tag::as_str).collect::<Vec<_>>(),
    ));
    model.tenant = Set(spec.tenant.as_ref().map(|t| t.as_str().to_owned()));
    model.enabled = Set(spec.enabled);
    model.request_timeout_ms = Set(spec
        .request_timeout_ms
        .and_then(|ms| i64::try_from(ms).ok()));
    Ok(())
}

async fn replace_tags<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    tags: &[Tag],
) -> Result<(), RepositoryError> {
    server_tag::Entity::delete_many()
        .filter(server_tag::Column::ServerId.eq(id))
        .exec(db)
        .await
        .map_err(map_db_err)?;
    if !tags.is_empty() {
        let rows = tags.iter().map(|tag| server_tag::ActiveModel {
            server_id: Set(id),
            tag: Set(tag.as_str().to_owned()),
        });
        server_tag::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await
            .map_err(map_db_err)?;
    }
    Ok(())
}

/// `%text%` for a LIKE that ignores ASCII case (SQLite's `lower()` folds ASCII only,
/// so folding more here would make the backends disagree), wildcards escaped.
pub(crate) fn contains_pattern(text: &str) -> LikeExpr {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_ascii_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    LikeExpr::new(pattern).escape('\\')
}

/// `lower(column) LIKE pattern`, portable across SQLite and PostgreSQL.
pub(crate) fn lower_like(
    column: impl sea_orm::sea_query::IntoColumnRef,
    pattern: &LikeExpr,
) -> Expr {
    Expr::expr(Func::lower(Expr::col(column))).like(pattern.clone())
}

async fn fetch_one<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<upstream_server::Model, RepositoryError> {
    upstream_server::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(map_db_err)?
        .ok_or(RepositoryError::NotFound)
}

#[async_trait]
impl ServerRepository for Store {
    async fn insert(
        &self,
        id: ServerId,
        spec: &ServerSpec,
    ) -> Result<UpstreamServer, RepositoryError> {
        let now = now();
        let mut model = upstream_server::ActiveModel {
            id: Set(id.as_uuid()),
            version: Set(1),
            health_state: Set(HealthState::Unknown.as_str().to_owned()),
            health_checked_at: Set(None),
            health_latency_ms: Set(None),
            health_error: Set(None),
            protocol_version: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        apply_spec(&mut model, spec, &self.sealer)?;
        let txn = self.begin_write().await?;
        upstream_server::Entity::insert(model)
            .exec_without_returning(&txn)
            .await
            .map_err(|error| match map_db_err(error) {
                RepositoryError::Duplicate(_) => RepositoryError::Duplicate(spec.name.to_string()),
                other => other,
            })?;
        replace_tags(&txn, id.as_uuid(), &spec.tags).await?;
        let row = fetch_one(&txn, id.as_uuid()).await?;
        txn.commit().await.map_err(map_db_err)?;
        to_domain(row, &self.sealer)
    }

    async fn get(&self, id: ServerId) -> Result<UpstreamServer, RepositoryError> {
        to_domain(fetch_one(&self.db, id.as_uuid()).await?, &self.sealer)
    }

    async fn get_by_name(&self, name: &ServerName) -> Result<UpstreamServer, RepositoryError> {
        let row = upstream_server::Entity::find()
            .filter(upstream_server::Column::Name.eq(name.as_str()))
            .one(&self.db)
            .await
            .map_err(map_db_err)?
            .ok_or(RepositoryError::NotFound)?;
        to_domain(row, &self.sealer)
    }

    async fn list(
        &self,
        filter: &ServerFilter,
        page: &PageRequest,
    ) -> Result<Page<UpstreamServer>, RepositoryError> {
        use upstream_server::Column;
        let mut condition = Condition::all();
        if let Some(tag) = &filter.tag {
            let tagged = Query::select()
                .column(server_tag::Column::ServerId)
                .from(server_tag::Entity)
                .and_where(server_tag::Column::Tag.eq(tag.as_str()))
                .to_owned();
            condition = condition.add(Column::Id.in_subquery(tagged));
        }
        if let Some(enabled) = filter.enabled {
            condition = condition.add(Column::Enabled.eq(enabled));
        }
        if let Some(state) = filter.health {
            condition = condition.add(Column::HealthState.eq(state.as_str()));
        }
        if let Some(text) = filter.text.as_deref().filter(|t| !t.is_empty()) {
            let pattern = contains_pattern(text);
            condition = condition.add(
                Condition::any()
                    .add(lower_like(
                        (upstream_server::Entity, Column::Name),
                        &pattern,
                    ))
                    .add(lower_like(
                        (upstream_server::Entity, Column::Title),
                        &pattern,
                    ))
                    .add(lower_like(
                        (upstream_server::Entity, Column::Description),
                        &pattern,
                    )),
            );
        }
        if let Some([after]) = page.after.as_ref().map(|c| c.key()) {
            condition = condition.add(Column::Name.gt(after.as_str()));
        }
        let rows = upstream_server::Entity::find()
            .filter(condition)
            .order_by_asc(Column::Name)
            .limit(page.limit + 1)
            .all(&self.db)
            .await
            .map_err(map_db_err)?;
        let servers = rows
            .into_iter()
            .map(|row| to_domain(row, &self.sealer))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(servers, page.limit, |s| {
            vec![s.spec.name.to_string()]
        }))
    }

    async fn update(
        &self,
        id: ServerId,
        expected_version: i64,
        spec: &ServerSpec,
    ) -> Result<UpstreamServer, RepositoryError> {
        use upstream_server::Column;
        let mut model = upstream_server::ActiveModel {
            version: Set(expected_version + 1),
            updated_at: Set(now()),
            ..Default::default()
        };
        apply_spec(&mut model, spec, &self.sealer)?;
        let txn = self.begin_write().await?;
        let result = upstream_server::Entity::update_many()
            .set(model)
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::Version.eq(expected_version))
            .exec(&txn)
            .await
            .map_err(|error| match map_db_err(error) {
                RepositoryError::Duplicate(_) => RepositoryError::Duplicate(spec.name.to_string()),
                other => other,
            })?;
        if result.rows_affected == 0 {
            let current = fetch_one(&txn, id.as_uuid()).await?;
            return Err(RepositoryError::StaleVersion {
                expected: expected_version,
                current: current.version,
            });
        }
        replace_tags(&txn, id.as_uuid(), &spec.tags).await?;
        catalog_tool::Entity::update_many()
            .col_expr(
                catalog_tool::Column::ServerName,
                Expr::value(spec.name.as_str()),
            )
            .filter(catalog_tool::Column::ServerId.eq(id.as_uuid()))
            .exec(&txn)
            .await
            .map_err(map_db_err)?;
        let row = fetch_one(&txn, id.as_uuid()).await?;
        txn.commit().await.map_err(map_db_err)?;
        to_domain(row, &self.sealer)
    }

    async fn delete(
        &self,
        id: ServerId,
        expected_version: Option<i64>,
    ) -> Result<(), RepositoryError> {
        use upstream_server::Column;
        let txn = self.begin_write().await?;
        let mut query = upstream_server::Entity::delete_many().filter(Column::Id.eq(id.as_uuid()));
        if let Some(version) = expected_version {
            query = query.filter(Column::Version.eq(version));
        }
        let result = query.exec(&txn).await.map_err(map_db_err)?;
        if result.rows_affected == 0 {
            let current = fetch_one(&txn, id.as_uuid()).await?;
            return Err(RepositoryError::StaleVersion {
                expected: expected_version.unwrap_or_default(),
                current: current.version,
            });
        }
        txn.commit().await.map_err(map_db_err)
    }

    async fn set_health(&self, id: ServerId, health: &HealthStatus) -> Result<(), RepositoryError> {
        use upstream_server::Column;
        let result = upstream_server::Entity::update_many()
            .col_expr(Column::HealthState, Expr::value(health.state.as_str()))
            .col_expr(Column::HealthCheckedAt, Expr::value(health.checked_at))
            .col_expr(Column::HealthLatencyMs, Expr::value(health.latency_ms))
            .col_expr(Column::HealthError, Expr::value(health.error.clone()))
            .col_expr(
                Column::ProtocolVersion,
                Expr::value(health.protocol_version.clone()),
            )
            .filter(Column::Id.eq(id.as_uuid()))
            .exec(&self.db)
            .await
            .map_err(map_db_err)?;
        if result.rows_affected == 0 {
            Err(RepositoryError::NotFound)
        } else {
            Ok(())
        }
    }
}

impl Store {
    /// Run at start-up, once the schema is current: opens every stored credential (so
    /// a missing or wrong key stops the start with the server and key named, instead
    /// of failing reads later) and seals those stored in plain text by a gateway from
    /// before sealing. Returns how many servers were sealed. Only the transport column
    /// is rewritten: the spec and its version stay.
    pub async fn seal_plaintext_secrets(&self) -> Result<usize, RepositoryError> {
        let rows = upstream_server::Entity::find()
            .all(&self.db)
            .await
            .map_err(map_db_err)?;
        let mut sealed = 0;
        for row in rows {
            let Ok(stored) = serde_json::from_value::<StoredTransport>(row.transport.clone())
            else {
                continue; // Reported when the row is read.
            };
            let plain = stored.has_plain_values();
            let transport = stored.into_domain(&self.sealer).map_err(|e| {
                RepositoryError::Internal(format!(
                    "the credentials of server `{}` cannot be opened: {e}",
                    row.name
                ))
            })?;
            if !plain {
                continue;
            }
            let resealed = StoredTransport::seal(&transport, &self.sealer)
                .map_err(|e| RepositoryError::Internal(format!("cannot seal secrets: {e}")))?;
            let value = serde_json::to_value(resealed)
                .map_err(|e| RepositoryError::Internal(format!("cannot encode transport: {e}")))?;
            upstream_server::Entity::update_many()
                .col_expr(upstream_server::Column::Transport, Expr::value(value))
                .filter(upstream_server::Column::Id.eq(row.id))
                .exec(&self.db)
                .await
                .map_err(map_db_err)?;
            sealed += 1;
        }
        Ok(sealed)
    }
}
