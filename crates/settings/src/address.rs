//! The one rule for server addresses (DESIGN.md §5): `host:port` or `http(s)://host:port`, for
//! the CLI's `--coordinator` and `--agent`, an agent's `coordinator` and the coordinator's
//! `[[agents]] address`.
//!
//! The scheme is case-insensitive and defaults to http; surrounding white space and one trailing
//! `/` are ignored; the host is a name of letters, digits, `.`, `-` and `_`, or an IPv6 address
//! in brackets; the port is 1 to 65535. The [`Transport`] decides the rest (DESIGN.md §5, §11):
//! with TLS, `host:port` means `https://` and `http://` is refused (every connection is mutual
//! TLS); without it, `https://` is refused with a message naming `[tls]` and `--ca`.

use std::fmt;
use std::net::Ipv6Addr;

use crate::Transport;

/// How every address message ends: what to write instead.
const EXPECTED: &str = "use host:port or http://host:port";

/// A server address that parsed: what was given and where to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    given: String,
    host: String,
    port: u16,
    transport: Transport,
}

/// Why an address cannot be used. Each message quotes the address and says what to write.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    /// A scheme other than http or https, like `grpc://`.
    #[error("\"{given}\" has the scheme \"{scheme}\", which is neither http nor https; {EXPECTED}")]
    Scheme {
        /// The address as given.
        given: String,
        /// The scheme, lower case.
        scheme: String,
    },
    /// Something after `host:port/`.
    #[error("\"{given}\" has a path; {EXPECTED}")]
    Path {
        /// The address as given.
        given: String,
    },
    /// No `:port`.
    #[error("\"{given}\" has no port; {EXPECTED}")]
    NoPort {
        /// The address as given.
        given: String,
    },
    /// A port that is not 1 to 65535.
    #[error("\"{given}\" has the port \"{port}\", which is not 1 to 65535; {EXPECTED}")]
    Port {
        /// The address as given.
        given: String,
        /// The port as given.
        port: String,
    },
    /// Nothing before `:port`.
    #[error("\"{given}\" has no host; {EXPECTED}")]
    NoHost {
        /// The address as given.
        given: String,
    },
    /// A host that is neither a name nor a bracketed IPv6 address.
    #[error("\"{given}\" has the host \"{host}\", which is neither a host name nor an IP address; {EXPECTED}")]
    Host {
        /// The address as given.
        given: String,
        /// The host as given.
        host: String,
    },
    /// `https://` while no TLS is configured.
    #[error(
        "\"{given}\" is https but no TLS is configured: set `[tls]` (ca, cert, key) in the config file, or give \
         the command --ca, --cert and --key; or use http://{authority}"
    )]
    TlsNotConfigured {
        /// The address as given.
        given: String,
        /// `host:port`.
        authority: String,
    },
    /// `http://` while TLS is configured: every connection is then mutual TLS.
    #[error(
        "\"{given}\" is plain http but TLS is configured (`[tls]` or --ca/--cert/--key), so every connection uses \
         it; use https://{authority} or {authority}"
    )]
    PlainWithTls {
        /// The address as given.
        given: String,
        /// `host:port`.
        authority: String,
    },
}

impl Address {
    /// Parses `host:port` or `http://host:port` for a plain-text connection (see the module's rule).
    pub fn parse(given: &str) -> Result<Self, AddressError> {
        Self::parse_for(given, Transport::Plain)
    }

    /// Parses an address for `transport`: with TLS `host:port` and `https://host:port`, without
    /// it `host:port` and `http://host:port` (see the module's rule).
    pub fn parse_for(given: &str, transport: Transport) -> Result<Self, AddressError> {
        let trimmed = given.trim();
        let owned = || trimmed.to_string();
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => (String::new(), trimmed),
        };
        if !scheme.is_empty() && scheme != "http" && scheme != "https" {
            return Err(AddressError::Scheme { given: owned(), scheme });
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') {
            return Err(AddressError::Path { given: owned() });
        }
        let Some((host, port)) = authority.rsplit_once(':').filter(|_| !authority.ends_with(']')) else {
            return Err(AddressError::NoPort { given: owned() });
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(AddressError::Port { given: owned(), port: port.to_string() }),
        };
        if host.is_empty() {
            return Err(AddressError::NoHost { given: owned() });
        }
        if !is_host(host) {
            return Err(AddressError::Host { given: owned(), host: host.to_string() });
        }
        match (scheme.as_str(), transport) {
            ("https", Transport::Plain) => {
                return Err(AddressError::TlsNotConfigured { given: owned(), authority: authority.to_string() });
            }
            ("http", Transport::Tls) => {
                return Err(AddressError::PlainWithTls { given: owned(), authority: authority.to_string() });
            }
            _ => {}
        }
        Ok(Self { given: owned(), host: host.to_string(), port, transport })
    }

    /// The address as given (trimmed), for messages.
    pub fn given(&self) -> &str {
        &self.given
    }

    /// The URI to dial: `http://host:port`, or `https://host:port` with TLS.
    pub fn uri(&self) -> String {
        let scheme = match self.transport {
            Transport::Plain => "http",
            Transport::Tls => "https",
        };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.given)
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        Self::parse(given)
    }
}

/// A host name (letters, digits, `.`, `-`, `_`) or an IPv6 address in brackets.
fn is_host(host: &str) -> bool {
    match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok()),
        None => host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(given: &str) -> Result<String, String> {
        Address::parse(given).map(|a| a.uri()).map_err(|e| e.to_string())
    }

    #[test]
    fn host_and_port_get_the_http_scheme() {
        for (given, expected) in [
            ("127.0.0.1:7600", "http://127.0.0.1:7600"),
            ("coord.example:7600", "http://coord.example:7600"),
            ("agent_1:7601", "http://agent_1:7601"),
            ("[::1]:7600", "http://[::1]:7600"),
            ("http://agent:7601/", "http://agent:7601"),
            (" http://localhost:7600/ ", "http://localhost:7600"),
            ("HTTP://localhost:7600", "http://localhost:7600"),
        ] {
            assert_eq!(uri(given).as_deref(), Ok(expected), "{given}");
        }
        assert_eq!(Address::parse(" h:1 ").expect("valid").given(), "h:1");
    }

    #[test]
    fn malformed_addresses_say_what_is_wrong() {
        for (given, why) in [
            ("coord", "has no port"),
            ("[::1]", "has no port"),
            ("coord:0", "not 1 to 65535"),
            ("coord:x", "not 1 to 65535"),
            (":7600", "has no host"),
            ("a b:7600", "neither a host name nor an IP address"),
            ("[zz]:7600", "neither a host name nor an IP address"),
            ("[::1:7600", "neither a host name nor an IP address"),
            ("ftp://coord:7600", "scheme \"ftp\""),
            ("grpc://coordinator:7600", "scheme \"grpc\""),
            ("http://coord:7600/path", "has a path"),
        ] {
            let message = uri(given).expect_err(given);
            assert!(message.contains(why), "{given}: {message}");
            assert!(message.ends_with("use host:port or http://host:port"), "{given}: {message}");
        }
    }

    #[test]
    fn https_without_tls_names_the_tls_section_and_flags() {
        for given in ["https://coord:7600", "HTTPS://coord:7600/"] {
            let message = uri(given).expect_err(given);
            assert!(message.contains("no TLS is configured"), "{message}");
            assert!(message.contains("`[tls]`") && message.contains("--ca"), "{message}");
            assert!(message.ends_with("use http://coord:7600"), "{message}");
        }
    }

    #[test]
    fn with_tls_host_and_port_mean_https_and_plain_http_is_refused() {
        let tls = |given: &str| Address::parse_for(given, Transport::Tls).map(|a| a.uri()).map_err(|e| e.to_string());
        assert_eq!(tls("coord:7600").as_deref(), Ok("https://coord:7600"));
        assert_eq!(tls("HTTPS://127.0.0.1:7600/").as_deref(), Ok("https://127.0.0.1:7600"));
        let message = tls("http://coord:7600").expect_err("plain http with tls");
        assert!(message.contains("TLS is configured") && message.contains("use https://coord:7600"), "{message}");
    }
}
