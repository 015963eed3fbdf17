//! The `[tls]` section both services read alike (DESIGN.md §8, §11): the CA that signs every
//! peer, this process's certificate and its key, as PEM files. Relative paths mean relative to
//! the config file's folder; the service lists them in its `relative_paths`.

use std::path::PathBuf;

use serde::Deserialize;

/// `[tls]`: mutual TLS on every gRPC connection of the service once set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The CA certificate (PEM) that signed every peer this process accepts or dials.
    pub ca: PathBuf,
    /// This process's certificate (PEM; a chain may follow it).
    pub cert: PathBuf,
    /// The private key of `cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The three paths, for the service's `relative_paths`.
    pub fn paths_mut(&mut self) -> [&mut PathBuf; 3] {
        [&mut self.ca, &mut self.cert, &mut self.key]
    }
}

/// How a connection is carried: plain text (loopback trust) or mutual TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// No `[tls]`: http only.
    Plain,
    /// `[tls]` (or `--ca/--cert/--key`) is set: https only.
    Tls,
}

impl Transport {
    /// [`Transport::Tls`] when TLS files are configured.
    pub fn of<T>(tls: &Option<T>) -> Self {
        if tls.is_some() { Transport::Tls } else { Transport::Plain }
    }
}

/// The message for an `http` listener (the dashboard, `/metrics`, health) on a non-loopback
/// address without `insecure`: it is plain HTTP whether or not `[tls]` is set.
pub fn insecure_http_message(http: &std::net::SocketAddr) -> String {
    format!(
        "{http} is not a loopback address and `[tls]` does not cover `http`, so anyone who can reach it \
         could read it: listen on 127.0.0.1 (and reach it through a TLS proxy), or set `insecure = true` to accept that"
    )
}

/// The message for a server configured to listen on a non-loopback address in plain text.
pub fn insecure_listen_message(listen: &std::net::SocketAddr) -> String {
    format!(
        "{listen} is not a loopback address and there is no `[tls]` section, so anyone who can reach it could \
         call every service: set `[tls]` (ca, cert, key; see `switchyard certs init`), listen on 127.0.0.1, or set \
         `insecure = true` to accept plain text"
    )
}
