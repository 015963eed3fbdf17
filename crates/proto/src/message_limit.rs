//! A server's refusal of a request over its gRPC message limit, naming the setting: tonic says
//! "decoded message length too large: found N bytes, the limit is: M bytes"; this layer adds
//! which `[limits]` key sets M and what to do (DESIGN.md §11: each refusal names its limit).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::{Code, Status};

/// The words tonic's decoder uses for a message over the limit.
const TOO_LARGE: &str = "decoded message length too large";

/// Wraps a server's routes: an OUT_OF_RANGE or RESOURCE_EXHAUSTED answer for an over-long request message gets
/// `([limits] grpc_message = M bytes; ...)` appended.
#[derive(Debug, Clone, Copy)]
pub struct NameMessageLimit {
    limit: usize,
}

impl NameMessageLimit {
    /// For a server whose decoding limit is `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> tower_layer::Layer<S> for NameMessageLimit {
    type Service = NameMessageLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NameMessageLimitService { inner, limit: self.limit }
    }
}

/// The service [`NameMessageLimit`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct NameMessageLimitService<S> {
    inner: S,
    limit: usize,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for NameMessageLimitService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        let limit = self.limit;
        Box::pin(async move {
            let mut response = answer.await?;
            name_the_limit(&mut response, limit);
            Ok(response)
        })
    }
}

/// A trailers-only OUT_OF_RANGE or RESOURCE_EXHAUSTED answer about a decoded message, rebuilt
/// from its status (tonic keeps it in the response's extensions) with the setting appended.
fn name_the_limit<R: Default>(response: &mut http::Response<R>, limit: usize) {
    let Some(status) = response.extensions().get::<Status>() else { return };
    // tonic answers OUT_OF_RANGE; RESOURCE_EXHAUSTED is what gRPC's other servers use.
    let over = matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted);
    if !over || !status.message().contains(TOO_LARGE) {
        return;
    }
    let named = format!(
        "{} ([limits] grpc_message = {limit} bytes in the server's config; send less or raise it)",
        status.message()
    );
    *response = Status::new(status.code(), named).into_http();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: Status) -> http::Response<()> {
        status.into_http()
    }

    #[test]
    fn an_over_long_message_names_the_setting_and_others_are_untouched() {
        let found = "Error, decoded message length too large: found 9 bytes, the limit is: 4 bytes";
        let mut over = answer(Status::out_of_range(found));
        name_the_limit(&mut over, 4);
        let status = over.extensions().get::<Status>().expect("a status");
        assert_eq!(status.code(), Code::OutOfRange);
        assert!(status.message().starts_with(found), "{}", status.message());
        assert!(status.message().ends_with("grpc_message = 4 bytes in the server's config; send less or raise it)"));
        assert!(
            over.headers().get("grpc-message").is_some_and(|m| m.to_str().is_ok_and(|m| m.contains("grpc_message")))
        );
        for status in [Status::resource_exhausted("slots are full"), Status::invalid_argument(found)] {
            let message = status.message().to_string();
            let mut other = answer(status);
            name_the_limit(&mut other, 4);
            assert_eq!(other.extensions().get::<Status>().expect("a status").message(), message);
        }
    }
}
