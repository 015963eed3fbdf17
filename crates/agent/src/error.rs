//! The agent's errors, and their one mapping to gRPC statuses.

use tonic::{Code, Status};

/// Everything an agent operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NOT_FOUND: no such job.
    #[error("job \"{job}\" is not defined on agent \"{agent}\"")]
    UnknownJob {
        /// The job asked for.
        job: String,
        /// This agent.
        agent: String,
    },
    /// NOT_FOUND: no such run.
    #[error("run \"{0}\" is not known to this agent")]
    UnknownRun(String),
    /// NOT_FOUND: no run was started with this idempotency key.
    #[error("no run was started with idempotency key \"{0}\" on this agent")]
    UnknownKey(String),
    /// FAILED_PRECONDITION: SQL Server Agent's "already running" refusal.
    #[error("{0}")]
    AlreadyRunning(String),
    /// FAILED_PRECONDITION: the operation needs the job or run in another state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// ABORTED: a start from a caller whose view of this agent is older than one it has seen.
    #[error("stale epoch {given}: this agent has seen epoch {current}; the start was superseded")]
    StaleEpoch {
        /// The epoch of the request.
        given: u64,
        /// The highest epoch seen.
        current: u64,
    },
    /// RESOURCE_EXHAUSTED: no free slot, or the job's queue is full.
    #[error("{0}")]
    Exhausted(String),
    /// UNAVAILABLE: draining, shutting down, or a simulated refusal.
    #[error("{0}")]
    Unavailable(String),
    /// PERMISSION_DENIED.
    #[error("{0}")]
    PermissionDenied(String),
    /// INVALID_ARGUMENT naming the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// INTERNAL: the store failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let code = match &error {
            Error::UnknownJob { .. } | Error::UnknownRun(_) | Error::UnknownKey(_) => Code::NotFound,
            Error::AlreadyRunning(_) | Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::StaleEpoch { .. } => Code::Aborted,
            Error::Exhausted(_) => Code::ResourceExhausted,
            Error::Unavailable(_) => Code::Unavailable,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Store(_) => Code::Internal,
        };
        switchyard_proto::status::bounded(code, error.to_string())
    }
}
