//! The coordinator's errors, and their one mapping to gRPC statuses.

use tonic::{Code, Status};

/// Everything a coordinator operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NOT_FOUND: no such execution.
    #[error("execution \"{0}\" is not known to this coordinator")]
    UnknownExecution(String),
    /// NOT_FOUND: no such agent.
    #[error("agent \"{0}\" is not known to this coordinator; `switchyard agents` lists them")]
    UnknownAgent(String),
    /// INVALID_ARGUMENT naming the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// FAILED_PRECONDITION.
    #[error("{0}")]
    FailedPrecondition(String),
    /// UNAVAILABLE: the agent could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// INTERNAL: the store failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let code = match &error {
            Error::UnknownExecution(_) | Error::UnknownAgent(_) => Code::NotFound,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Store(_) => Code::Internal,
        };
        switchyard_proto::status::bounded(code, error.to_string())
    }
}
