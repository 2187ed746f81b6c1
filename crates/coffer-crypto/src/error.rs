/// What went wrong, never with which data: messages name keys by version or
/// id and fields by table and column only.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// Authentication failed: the wrong key, or the bytes (or the row,
    /// column or key they are bound to) were altered.
    #[error("{what} does not open: wrong key, or the data or its binding was altered")]
    DoesNotOpen { what: &'static str },
    #[error("{what} has an unknown format")]
    UnknownFormat { what: &'static str },
    #[error("{what} must be {expected} bytes")]
    BadLength { what: &'static str, expected: usize },
    #[error("master key version {0} is not loaded")]
    MissingKeyVersion(u32),
    #[error("the operating system's random source failed")]
    Random,
}
