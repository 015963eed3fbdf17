//! Certificates and keys read from PEM into rustls configs, and the one holder whose server and
//! client configs swap atomically when the files are read again: a handshake reads the current
//! config once, so connections already open (running work, open streams) keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsFiles;

/// Why certificates or keys cannot be used. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("cannot read {what} {}: {message}", path.display())]
    Read {
        /// "the CA certificate", "the certificate", "the key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, a bad CA).
    #[error("cannot use the TLS files (ca {}, cert {}, key {}): {message}", files.ca.display(), files.cert.display(), files.key.display())]
    Config {
        /// The files.
        files: TlsFiles,
        /// rustls's words.
        message: String,
    },
}

/// This process's TLS: the files and the current server and client configs. Cheap to share
/// (`Arc<Tls>`); [`Tls::reload`] swaps both configs at once or neither.
#[derive(Debug)]
pub struct Tls {
    files: TlsFiles,
    server: ArcSwap<ServerConfig>,
    client: ArcSwap<ClientConfig>,
}

impl Tls {
    /// Reads the CA, the certificate and the key, and builds both configs.
    pub fn load(files: &TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let (server, client) = build(files)?;
        Ok(Arc::new(Tls { files: files.clone(), server: ArcSwap::from(server), client: ArcSwap::from(client) }))
    }

    /// Reads the files again (SIGHUP). On an error the old configs stay in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let (server, client) = build(&self.files)?;
        self.server.store(server);
        self.client.store(client);
        Ok(())
    }

    /// The files this was loaded from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The server config a new handshake uses: this certificate, clients the CA signed only.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.load_full()
    }

    /// The client config a new connection uses: servers the CA signed, this certificate.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client.load_full()
    }
}

/// The ring provider: no aws-lc, no OpenSSL (STYLE.md "Dependencies").
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(files: &TlsFiles) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), TlsError> {
    let roots = Arc::new(read_ca(&files.ca)?);
    let chain = read_chain(&files.cert)?;
    let key = read_key(&files.key)?;
    let config_error = |e: rustls::Error| TlsError::Config { files: files.clone(), message: e.to_string() };
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| TlsError::Config { files: files.clone(), message: e.to_string() })?;
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(config_error)?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(config_error)?;
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok((Arc::new(server), Arc::new(client)))
}

fn read_error(what: &'static str, path: &Path, message: impl ToString) -> TlsError {
    TlsError::Read { what, path: path.to_path_buf(), message: message.to_string() }
}

fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(what, path, e))?;
    if certificates.is_empty() {
        return Err(read_error(what, path, "no PEM certificate in it"));
    }
    Ok(certificates)
}

fn read_ca(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates("the CA certificate", path)? {
        roots.add(certificate).map_err(|e| read_error("the CA certificate", path, e))?;
    }
    Ok(roots)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    read_certificates("the certificate", path)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| read_error("the key", path, e))
}
