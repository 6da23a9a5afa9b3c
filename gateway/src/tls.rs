//! TLS on the gateway's own listener, so `https://` and `wss://` work without a proxy in
//! front (`--tls-cert`, `--tls-key`).
//!
//! This module only builds the rustls configuration from PEM and checks it, so a bad
//! certificate or key is a clear error at startup rather than a failed handshake per client.
//! The handshake itself runs in each connection's own task (see `server`), bounded by the
//! handshake timeout, never in the accept loop: a client that stalls mid-handshake holds one
//! task, not the listener.
//!
//! Choices:
//! - The crypto provider is `ring`, named explicitly rather than taken from the process
//!   default, so a second rustls provider enabled elsewhere in the build cannot make building
//!   the configuration ambiguous (rustls panics in that case).
//! - ALPN offers only `http/1.1`: the gateway speaks HTTP/1.1, which WebSocket upgrades
//!   need. A client that offers ALPN without `http/1.1` (h2 only) fails the handshake instead
//!   of being answered in a protocol it did not ask for; a client offering no ALPN is served.

use std::{fmt, path::Path, sync::Arc};

use tokio_rustls::{
    rustls::{
        self,
        pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer},
        ServerConfig,
    },
    TlsAcceptor,
};

use crate::Error;

/// A checked TLS server configuration: a certificate chain and its private key.
///
/// Cheap to clone (shared). Two values are equal only when they are clones of one
/// configuration; `Debug` shows nothing of the key.
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
}

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first, then intermediates) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1) from files.
    ///
    /// # Errors
    /// [`Error::TlsFile`] when a file cannot be read; [`Error::TlsInvalid`] when it holds no
    /// certificate or key, or the key does not belong to the certificate. Both name the file.
    pub fn from_pem_files(cert_chain: &Path, private_key: &Path) -> Result<Self, Error> {
        let read = |item: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| Error::TlsFile { item, path: path.to_owned(), source })
        };
        let (cert_pem, key_pem) = (read("certificate chain", cert_chain)?, read("private key", private_key)?);
        let chain = certificate_chain(&cert_pem, &format!(" in {}", cert_chain.display()))?;
        let key = private_key_of(&key_pem, &format!(" in {}", private_key.display()))?;
        Self::from_parts(chain, key)
    }

    /// Like [`TlsConfig::from_pem_files`], from PEM bytes already in memory.
    ///
    /// # Errors
    /// [`Error::TlsInvalid`] when there is no certificate or key, or they do not match.
    pub fn from_pem(cert_chain_pem: &[u8], private_key_pem: &[u8]) -> Result<Self, Error> {
        let chain = certificate_chain(cert_chain_pem, "")?;
        let key = private_key_of(private_key_pem, "")?;
        Self::from_parts(chain, key)
    }

    fn from_parts(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let invalid = |reason: rustls::Error| Error::TlsInvalid {
            item: "certificate and key",
            origin: String::new(),
            reason: reason.to_string(),
        };
        // `with_single_cert` also checks that the key belongs to the leaf certificate, so a
        // swapped or stale key file is refused here rather than at each handshake.
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(invalid)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(invalid)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { server: Arc::new(server) })
    }

    /// The rustls configuration, for callers that run their own TLS listener.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.server)
    }

    /// What each connection task runs its handshake with.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.server))
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").field("alpn", &"http/1.1").finish_non_exhaustive()
    }
}

impl PartialEq for TlsConfig {
    fn eq(&self, other: &Self) -> bool {
        // Keys are not compared by content; the configuration is equal to its own clones.
        Arc::ptr_eq(&self.server, &other.server)
    }
}

impl Eq for TlsConfig {}

/// Every certificate in `pem`, in file order; at least one.
fn certificate_chain(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let invalid = |reason: String| Error::TlsInvalid { item: "certificate chain", origin: origin.to_owned(), reason };
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(format!("unreadable PEM: {error}")))?;
    if chain.is_empty() {
        return Err(invalid("no CERTIFICATE block found".into()));
    }
    Ok(chain)
}

/// The first private key in `pem`.
fn private_key_of(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| Error::TlsInvalid {
        item: "private key",
        origin: origin.to_owned(),
        reason: match error {
            rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block found".into(),
            other => format!("unreadable PEM: {other}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_pem_blocks_is_refused_naming_what_is_missing() {
        let error = TlsConfig::from_pem(b"hello", b"hello").expect_err("no certificate");
        assert!(error.to_string().contains("no CERTIFICATE block"), "{error}");
    }

    #[test]
    fn missing_files_are_named() {
        let error = TlsConfig::from_pem_files(Path::new("/nonexistent/cert.pem"), Path::new("/nonexistent/key.pem"))
            .expect_err("no such file");
        assert!(matches!(&error, Error::TlsFile { .. }), "{error:?}");
        assert!(error.to_string().contains("/nonexistent/cert.pem"), "{error}");
    }
}
