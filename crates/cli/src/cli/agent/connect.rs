//! Reaching one agent: its address, a bounded connect, and a deadline on every unary call.

use std::future::Future;

use switchyard_proto::agent_client::AgentClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};

use super::Failure;
pub use crate::cli::grpc::{CALL_DEADLINE, CONNECT_TIMEOUT, request, status_text};
use crate::cli::grpc::{code_name, error_chain, with_deadline};

/// An agent address as given (`host:port` or `http(s)://host:port`) and the URI it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAddress {
    /// What the user typed, for messages.
    pub given: String,
    /// With a scheme: `http://host:port`.
    pub uri: String,
}

impl AgentAddress {
    /// Parses `host:port`, `http://host:port` or `https://host:port` (the default scheme is http).
    pub fn parse(given: &str) -> Result<Self, Failure> {
        let (given, uri) = crate::cli::address::parse(given, "agent address").map_err(Failure::usage)?;
        Ok(Self { given, uri })
    }
}

/// A connected agent client and the address it was reached at.
#[derive(Debug, Clone)]
pub struct Agent {
    address: AgentAddress,
    client: AgentClient<Channel>,
}

impl Agent {
    /// Parses the address and connects, within [`CONNECT_TIMEOUT`].
    pub async fn connect(given: &str) -> Result<Self, Failure> {
        let address = AgentAddress::parse(given)?;
        let unreachable = |why: String| {
            Failure::call(format!("cannot reach agent at {}: {why}; is switchyard-agent running there?", address.given))
        };
        let endpoint = Endpoint::from_shared(address.uri.clone())
            .map_err(|e| Failure::usage(format!("agent address \"{}\": {}", address.given, error_chain(&e))))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let tls = crate::cli::tls::client_tls().map_err(Failure::usage)?;
        let channel = match tokio::time::timeout(CONNECT_TIMEOUT, switchyard_tls::connect(endpoint, tls.as_ref())).await
        {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => return Err(unreachable(error_chain(&e))),
            Err(_) => return Err(unreachable(format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()))),
        };
        Ok(Self { address, client: AgentClient::new(channel) })
    }

    /// The address as the user gave it.
    pub fn address(&self) -> &str {
        &self.address.given
    }

    /// A client on the shared channel (cheap: clones share one HTTP/2 connection).
    pub fn client(&self) -> AgentClient<Channel> {
        self.client.clone()
    }

    /// Awaits a unary call for at most [`CALL_DEADLINE`]; running out is DEADLINE_EXCEEDED.
    pub async fn call<R>(&self, call: impl Future<Output = Result<Response<R>, Status>>) -> Result<R, Status> {
        with_deadline(call).await
    }

    /// Explains a status no command handles itself: unreachable, too slow, or the agent's own words.
    pub fn explain(&self, status: &Status) -> Failure {
        let address = self.address();
        let text = status_text(status);
        let message = match status.code() {
            Code::Unavailable => format!(
                "agent at {address} is unavailable: {text}; is switchyard-agent running there (and not draining)?"
            ),
            Code::Unknown if status.message().starts_with("Service was not ready") => {
                format!("cannot reach agent at {address}: {text}; is switchyard-agent running there?")
            }
            Code::DeadlineExceeded => {
                format!("agent at {address} did not answer: {text}; it may be overloaded or hung, try again")
            }
            Code::ResourceExhausted => {
                format!("agent at {address} has no room: {text}; try again when a run finishes")
            }
            Code::InvalidArgument => format!("agent at {address} refused the request: {text}"),
            Code::Unimplemented => {
                format!("agent at {address} does not implement this call: {text}; is it an older switchyard-agent?")
            }
            code => format!("agent at {address} answered {}: {text}", code_name(code)),
        };
        Failure::call(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(given: &str) -> Result<String, String> {
        AgentAddress::parse(given).map(|a| a.uri).map_err(|f| f.message)
    }

    #[test]
    fn host_and_port_get_the_http_scheme() {
        assert_eq!(parsed("127.0.0.1:7601"), Ok("http://127.0.0.1:7601".to_string()));
        assert_eq!(parsed("server-a:7601"), Ok("http://server-a:7601".to_string()));
        assert_eq!(parsed("[::1]:7601"), Ok("http://[::1]:7601".to_string()));
    }

    #[test]
    fn an_http_address_is_kept_and_a_trailing_slash_dropped() {
        assert_eq!(parsed("http://localhost:7601/"), Ok("http://localhost:7601".to_string()));
        assert_eq!(parsed("HTTP://localhost:7601"), Ok("http://localhost:7601".to_string()));
    }

    #[test]
    fn https_without_tls_flags_is_refused_with_exit_code_6() {
        let failure = AgentAddress::parse("https://server-a:7601").unwrap_err();
        assert_eq!(failure.exit_code, 6);
        assert!(failure.message.contains("--ca"), "{}", failure.message);
        assert!(failure.message.contains("http://server-a:7601"), "{}", failure.message);
    }

    #[test]
    fn malformed_addresses_say_what_is_wrong() {
        for (given, why) in [
            ("server-a", "has no port"),
            ("server-a:0", "not 1 to 65535"),
            ("server-a:http", "not 1 to 65535"),
            (":7601", "has no host"),
            ("grpc://server-a:7601", "scheme \"grpc\""),
            ("http://server-a:7601/jobs", "has a path"),
        ] {
            let failure = AgentAddress::parse(given).unwrap_err();
            assert_eq!(failure.exit_code, 6, "{given}");
            assert!(failure.message.contains(why), "{given}: {}", failure.message);
        }
    }
}
