//! The CLI's side of mutual TLS (DESIGN.md §5, §11): `--ca`, `--cert` and `--key` (or
//! `SWITCHYARD_CA`, `SWITCHYARD_CERT`, `SWITCHYARD_KEY`), given to every command and used by
//! every one that talks to a server. With them, `host:port` means https and every connection
//! presents the certificate; without them, plain text (loopback trust).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use switchyard_settings::{TlsFiles, Transport};
use switchyard_tls::Tls;

/// The TLS flags; all three or none.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// With --cert and --key: mutual TLS to servers; the CA certificate (PEM) that signed them.
    #[arg(
        long,
        value_name = "FILE",
        env = "SWITCHYARD_CA",
        global = true,
        help_heading = "Mutual TLS (servers with [tls])"
    )]
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM), e.g. operator.pem from `switchyard certs init`.
    #[arg(
        long,
        value_name = "FILE",
        env = "SWITCHYARD_CERT",
        global = true,
        help_heading = "Mutual TLS (servers with [tls])"
    )]
    pub cert: Option<PathBuf>,
    /// The key of --cert (PEM).
    #[arg(
        long,
        value_name = "FILE",
        env = "SWITCHYARD_KEY",
        global = true,
        help_heading = "Mutual TLS (servers with [tls])"
    )]
    pub key: Option<PathBuf>,
}

impl TlsArgs {
    /// The files, when all three are given; a message naming the missing ones otherwise.
    pub fn files(&self) -> Result<Option<TlsFiles>, String> {
        match (&self.ca, &self.cert, &self.key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => {
                Ok(Some(TlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() }))
            }
            _ => {
                let missing = [("--ca", &self.ca), ("--cert", &self.cert), ("--key", &self.key)]
                    .iter()
                    .filter(|(_, value)| value.is_none())
                    .map(|(flag, _)| *flag)
                    .collect::<Vec<_>>()
                    .join(" and ");
                Err(format!(
                    "mutual TLS needs --ca, --cert and --key together (or SWITCHYARD_CA, SWITCHYARD_CERT, \
                     SWITCHYARD_KEY); {missing} missing"
                ))
            }
        }
    }
}

/// The flags as given, for [`client_tls`] to load on first use.
static FLAGS: OnceLock<TlsArgs> = OnceLock::new();
/// The loaded TLS, once a command asked for it.
static LOADED: OnceLock<Result<Option<Arc<Tls>>, String>> = OnceLock::new();

/// Keeps the flags of this invocation; nothing is read until a command connects.
pub fn remember(args: TlsArgs) {
    let _ = FLAGS.set(args);
}

/// The client TLS of this invocation: none without flags, or the loaded files; the message
/// names the flag or file to fix.
pub fn client_tls() -> Result<Option<Arc<Tls>>, String> {
    LOADED
        .get_or_init(|| {
            let Some(flags) = FLAGS.get() else { return Ok(None) };
            match flags.files()? {
                Some(files) => Tls::load(&files).map(Some).map_err(|e| e.to_string()),
                None => Ok(None),
            }
        })
        .clone()
}

/// How addresses are read: https with TLS flags, http without. Unusable flags read as TLS, so
/// the connect that follows reports them.
pub fn transport() -> Transport {
    match client_tls() {
        Ok(None) => Transport::Plain,
        _ => Transport::Tls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_flags_go_together() {
        assert_eq!(TlsArgs::default().files(), Ok(None));
        let only_ca = TlsArgs { ca: Some("ca.pem".into()), ..TlsArgs::default() };
        let message = only_ca.files().expect_err("incomplete");
        assert!(message.ends_with("--cert and --key missing"), "{message}");
    }
}
