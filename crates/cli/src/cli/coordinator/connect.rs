//! Reaching the coordinator (and, for `chaos`, one agent): the `--coordinator` flag, addresses,
//! a bounded connect, a deadline on every unary call, and errors that say what to do next.

use std::future::Future;
use std::time::Duration;

use switchyard_proto::coordinator_client::CoordinatorClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};

use super::Failure;
pub use crate::cli::grpc::{
    CALL_DEADLINE, CONNECT_TIMEOUT, code_name, error_chain, request, status_text, with_deadline,
};

/// Where `switchyard serve` listens unless told otherwise.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:7600";
/// HTTP/2 pings on long watches, so a coordinator that vanished is noticed without a call.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The `--coordinator ADDR` flag every coordinator command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CoordinatorArg {
    /// The coordinator's address: host:port or http://host:port (https://host:port with --ca,
    /// --cert and --key, where host:port means https).
    #[arg(long = "coordinator", value_name = "ADDR", env = "SWITCHYARD_ADDR", default_value = DEFAULT_ADDRESS)]
    pub coordinator: String,
}

/// A server address as given (`host:port` or `http(s)://host:port`) and the URI it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// What the user (or the coordinator's registry) gave, for messages.
    pub given: String,
    /// With a scheme: `http://host:port`.
    pub uri: String,
}

impl Address {
    /// Parses `host:port`, `http://host:port` or `https://host:port` (the default scheme is
    /// http); `what` names the address in messages ("coordinator address").
    pub fn parse(given: &str, what: &str) -> Result<Self, Failure> {
        let (given, uri) = crate::cli::address::parse(given, what).map_err(Failure::usage)?;
        Ok(Self { given, uri })
    }
}

/// Opens one HTTP/2 channel to `address` within [`CONNECT_TIMEOUT`]; the error says why not.
pub async fn connect_channel(address: &Address) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(address.uri.clone())
        .map_err(|e| error_chain(&e))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let tls = crate::cli::tls::client_tls()?;
    match tokio::time::timeout(CONNECT_TIMEOUT, switchyard_tls::connect(endpoint, tls.as_ref())).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(_) => Err(format!("no connection within {} s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// A connected coordinator client and the address it was reached at.
#[derive(Debug, Clone)]
pub struct Coordinator {
    address: Address,
    client: CoordinatorClient<Channel>,
}

impl Coordinator {
    /// Parses the address and connects, within [`CONNECT_TIMEOUT`].
    pub async fn connect(given: &str) -> Result<Self, Failure> {
        let address = Address::parse(given, "coordinator address")?;
        let channel =
            connect_channel(&address).await.map_err(|why| Failure::call(unreachable(&address.given, &why)))?;
        Ok(Self { address, client: CoordinatorClient::new(channel) })
    }

    /// The address as the user gave it.
    pub fn address(&self) -> &str {
        &self.address.given
    }

    /// A client on the shared channel (cheap: clones share one HTTP/2 connection).
    pub fn client(&self) -> CoordinatorClient<Channel> {
        self.client.clone()
    }

    /// Awaits a unary call for at most [`CALL_DEADLINE`]; running out is DEADLINE_EXCEEDED.
    pub async fn call<R>(&self, call: impl Future<Output = Result<Response<R>, Status>>) -> Result<R, Status> {
        with_deadline(call).await
    }

    /// Explains a status no command handles itself: unreachable, too slow, or the coordinator's
    /// own words.
    pub fn explain(&self, status: &Status) -> Failure {
        let address = self.address();
        let text = status_text(status);
        let message = match status.code() {
            Code::Unavailable => unreachable(address, &text),
            Code::Unknown if status.message().starts_with("Service was not ready") => unreachable(address, &text),
            Code::DeadlineExceeded => {
                format!("the coordinator at {address} did not answer: {text}; it may be overloaded or hung, try again")
            }
            Code::InvalidArgument => format!("the coordinator at {address} refused the request: {text}"),
            Code::Unimplemented => format!(
                "the coordinator at {address} does not implement this call: {text}; is it an older `switchyard serve`?"
            ),
            code => format!("the coordinator at {address} answered {}: {text}", code_name(code)),
        };
        Failure::call(message)
    }
}

/// The message for a coordinator that cannot be reached.
fn unreachable(address: &str, why: &str) -> String {
    format!("cannot reach the coordinator at {address}: {why}; is `switchyard serve` running?")
}

/// Codes a broken connection or a restarting server produce: worth trying again.
pub fn is_transient(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        coordinator: CoordinatorArg,
    }

    fn parsed(given: &str) -> Result<String, String> {
        Address::parse(given, "coordinator address").map(|a| a.uri).map_err(|f| f.message)
    }

    #[test]
    fn the_coordinator_defaults_to_the_local_default_port() {
        // SWITCHYARD_ADDR, when the environment running the tests sets it, wins by design.
        if std::env::var_os("SWITCHYARD_ADDR").is_none() {
            let flags = Flags::try_parse_from(["switchyard"]).expect("no flag is required");
            assert_eq!(flags.coordinator.coordinator, "127.0.0.1:7600");
        }
        let flags = Flags::try_parse_from(["switchyard", "--coordinator", "http://10.0.0.5:7700"]).expect("valid");
        assert_eq!(flags.coordinator.coordinator, "http://10.0.0.5:7700");
        assert_eq!(parsed(DEFAULT_ADDRESS), Ok("http://127.0.0.1:7600".to_string()));
    }

    #[test]
    fn host_and_port_get_the_http_scheme() {
        assert_eq!(parsed("127.0.0.1:7600"), Ok("http://127.0.0.1:7600".to_string()));
        assert_eq!(parsed("coordinator:7600"), Ok("http://coordinator:7600".to_string()));
        assert_eq!(parsed("[::1]:7600"), Ok("http://[::1]:7600".to_string()));
        assert_eq!(parsed(" http://localhost:7600/ "), Ok("http://localhost:7600".to_string()));
        assert_eq!(parsed("HTTP://localhost:7600"), Ok("http://localhost:7600".to_string()));
    }

    #[test]
    fn malformed_addresses_are_a_bad_command_line_that_says_what_is_wrong() {
        for (given, why) in [
            ("coordinator", "has no port"),
            ("coordinator:0", "not 1 to 65535"),
            (":7600", "has no host"),
            ("grpc://coordinator:7600", "scheme \"grpc\""),
            ("http://coordinator:7600/api", "has a path"),
            ("https://coordinator:7600", "no TLS is configured"),
        ] {
            let failure = Address::parse(given, "coordinator address").unwrap_err();
            assert_eq!(failure.exit_code, 6, "{given}");
            assert!(failure.message.contains(why), "{given}: {}", failure.message);
            assert!(failure.message.contains("coordinator address"), "{given}: {}", failure.message);
        }
    }

    #[test]
    fn an_unreachable_coordinator_says_to_start_serve() {
        let message = unreachable("127.0.0.1:7600", "connection refused");
        assert_eq!(
            message,
            "cannot reach the coordinator at 127.0.0.1:7600: connection refused; is `switchyard serve` running?"
        );
    }
}
