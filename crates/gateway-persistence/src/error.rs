//! Maps sea-orm errors onto the domain's repository error, so no SQL or schema
//! detail reaches a client.

use gateway_domain::RepositoryError;
use sea_orm::{DbErr, SqlErr};

/// Classifies a driver error: unique violations are duplicates, connection and pool
/// problems are transient, the rest is internal.
pub(crate) fn map_db_err(error: DbErr) -> RepositoryError {
    if let Some(SqlErr::UniqueConstraintViolation(detail)) = error.sql_err() {
        return RepositoryError::Duplicate(detail);
    }
    match &error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
            RepositoryError::Unavailable(error.to_string())
        }
        _ => RepositoryError::Internal(error.to_string()),
    }
}

/// Deletes the row of `E` with primary key `id`; `NotFound` when there is none.
pub(crate) async fn delete_row<E>(
    db: &sea_orm::DatabaseConnection,
    id: uuid::Uuid,
) -> Result<(), RepositoryError>
where
    E: sea_orm::EntityTrait,
    <E::PrimaryKey as sea_orm::PrimaryKeyTrait>::ValueType: From<uuid::Uuid>,
{
    let deleted = E::delete_by_id(id).exec(db).await.map_err(map_db_err)?;
    if deleted.rows_affected == 0 {
        return Err(RepositoryError::NotFound);
    }
    Ok(())
}
