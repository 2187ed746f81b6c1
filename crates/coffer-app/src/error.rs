use coffer_crypto::CryptoError;
use coffer_domain::{CatalogError, CustomerError, IdError, MoneyError};
use coffer_store::StoreError;

/// Errors of the services. The web layer maps each to an HTTP status and a
/// stable code; messages never carry personal data.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    /// The principal lacks the permission this use case needs.
    #[error("not allowed for this role")]
    Forbidden(coffer_domain::Permission),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    InvalidId(#[from] IdError),
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error("already exists")]
    Conflict,
    #[error(transparent)]
    Customer(#[from] CustomerError),
    /// A key could not be used; names the key, never the data.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The key directory or a key file is missing, unreadable or unsafe.
    #[error("{0}")]
    Keys(String),
    /// A local file (mail folder, file store) could not be read, written or
    /// deleted; names the kind of failure, never a path with personal data.
    #[error("{0}")]
    Files(String),
    /// The customer was erased: their data no longer exists in readable form.
    #[error("the customer's data was erased")]
    Erased,
    /// A setting that cannot work (an unparsable mail address, a bad SMTP
    /// URL); names the setting, never a secret in it.
    #[error("{0}")]
    Config(&'static str),
    /// The payment processor failed or refused a call (a void or refund it
    /// would not make, an outage); names the failure, never the card.
    #[error("payment gateway: {0}")]
    Gateway(String),
    /// The restored audit chain is broken in a way a restore does not
    /// explain (an edited, missing or moved entry): reported, never re-signed.
    #[error("the restored audit chain is broken: {0}")]
    AuditChainBroken(crate::privacy::audit::ChainBroken),
    /// A failure on our side that the caller cannot fix (a value that
    /// would not encode, a worker that stopped); names what failed, never data.
    #[error("{0}")]
    Internal(&'static str),
    /// An account or sign-in operation refused, with its stable code.
    #[error(transparent)]
    Account(#[from] crate::accounts::AccountError),
    /// A one-time link (sign-in, reset, invitation, enrolment) that has
    /// expired, was used, or never existed; the text says what to do next.
    #[error("{0}")]
    LinkGone(&'static str),
    /// Too many failed attempts (guesses, declined cards); try again after
    /// this many milliseconds.
    #[error("too many attempts; try again later")]
    TooManyAttempts { retry_after_ms: i64 },
    /// A vendor operation refused, with its stable code.
    #[error(transparent)]
    Vendor(crate::vendors::VendorError),
    /// A mistake in an order, with its stable code and field.
    #[error(transparent)]
    Order(#[from] coffer_domain::OrderError),
    /// The database or key store does not answer (try again later).
    #[error("the database is unavailable")]
    Unavailable,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => AppError::Conflict,
            StoreError::Unavailable(e) => {
                // Names the connection problem, never data.
                tracing::warn!(error = %e, "a store does not answer");
                AppError::Unavailable
            }
            other => AppError::Store(other),
        }
    }
}
