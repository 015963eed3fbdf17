//! The coordinator's errors, and their one mapping to gRPC statuses.

use tonic::Status;

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
        let message = error.to_string();
        match error {
            Error::UnknownExecution(_) | Error::UnknownAgent(_) => Status::not_found(message),
            Error::InvalidArgument(_) => Status::invalid_argument(message),
            Error::FailedPrecondition(_) => Status::failed_precondition(message),
            Error::Unavailable(_) => Status::unavailable(message),
            Error::Store(_) => Status::internal(message),
        }
    }
}
