//! What every gRPC command of the CLI shares, whichever server it talks to: the connect and call
//! deadlines, and errors turned into text a user can act on.

use std::future::Future;
use std::time::Duration;

use tonic::{Code, Request, Response, Status};

/// How long connecting may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a unary call may take; generous because the servers answer in milliseconds.
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Awaits a unary call for at most [`CALL_DEADLINE`]; running out is DEADLINE_EXCEEDED.
pub async fn with_deadline<R>(call: impl Future<Output = Result<Response<R>, Status>>) -> Result<R, Status> {
    match tokio::time::timeout(CALL_DEADLINE, call).await {
        Ok(result) => result.map(Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!("no answer within {} s", CALL_DEADLINE.as_secs()))),
    }
}

/// A request carrying [`CALL_DEADLINE`] as its grpc-timeout, so the server knows it too.
pub fn request<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(CALL_DEADLINE);
    request
}

/// The status message followed by whatever its sources add ("transport error" alone says little).
pub fn status_text(status: &Status) -> String {
    let mut text = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        let part = error.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        source = error.source();
    }
    if text.is_empty() { code_name(status.code()).to_string() } else { text }
}

/// An error and its sources joined with ": ", skipping repeats.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// The gRPC code in the upper-case form grpcurl and the proto comments use.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_falls_back_to_the_code_name() {
        assert_eq!(status_text(&Status::new(Code::Aborted, "")), "ABORTED");
        assert_eq!(status_text(&Status::not_found("no such execution")), "no such execution");
    }
}
