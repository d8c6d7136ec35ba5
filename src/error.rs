//! The one error type above the store. `grpc/error.rs` maps it to a status.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Client input is invalid; `field` is the request field's path.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    /// The request is valid but the resource's state forbids it.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("missing or invalid admin token")]
    Unauthenticated,
    /// The caller is known, and this is not theirs to do.
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// Temporarily unable to answer, e.g. the index is still loading.
    #[error("{0}")]
    Unavailable(&'static str),
    /// A cursor outside the retained change log.
    #[error("{0}")]
    OutOfRange(String),
    /// A stream ended early; the message says how to resume.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// A stream's history is gone (the change log went back or was
    /// replaced): its cursor cannot be resumed; the message says resync.
    #[error("{0}")]
    DataLoss(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl ToString) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
