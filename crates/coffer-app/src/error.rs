use coffer_domain::{CatalogError, IdError, MoneyError};
use coffer_store::StoreError;

/// Errors of the services. The web layer maps each to an HTTP status and a
/// stable code; messages never carry personal data.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    InvalidId(#[from] IdError),
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error("already exists")]
    Conflict,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => AppError::Conflict,
            other => AppError::Store(other),
        }
    }
}
