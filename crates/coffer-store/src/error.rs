use std::fmt;

/// What can go wrong in storage. Messages name tables, columns and
/// constraints, never stored values, so they are safe to log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("a unique constraint was violated ({0})")]
    Conflict(String),
    #[error("a referenced row does not exist ({0})")]
    MissingReference(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data failed validation: {0}")]
    Corrupt(String),
    #[error("the unit of work panicked and was rolled back")]
    UnitPanicked,
    #[error("the write path has stopped")]
    WriterStopped,
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("invalid database configuration: {0}")]
    Config(String),
}

impl StoreError {
    pub(crate) fn corrupt(what: impl fmt::Display) -> Self {
        StoreError::Corrupt(what.to_string())
    }

    /// Stored data that fails a check made above the store.
    pub fn corrupt_public(what: &str) -> Self {
        StoreError::Corrupt(what.to_owned())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) => {
                let name = db.constraint().unwrap_or("unnamed").to_owned();
                if db.is_unique_violation() {
                    // SQLite names no constraint; its message names the columns only.
                    let name = db.constraint().map_or_else(|| db.message().to_owned(), str::to_owned);
                    StoreError::Conflict(name)
                } else if db.is_foreign_key_violation() {
                    StoreError::MissingReference(name)
                } else {
                    StoreError::Database(db.message().to_owned())
                }
            }
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e.to_string())
            }
            sqlx::Error::Configuration(_) => StoreError::Config(e.to_string()),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) | sqlx::Error::Decode(_) => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migration(e.to_string())
    }
}
