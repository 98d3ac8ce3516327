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
