//! TLS configuration from PEM files and the identity of a verified client
//! certificate (feature `tls`), with rustls: what both adapters' TLS
//! listeners and clients are built from.
//!
//! ```no_run
//! # fn f() -> std::io::Result<()> {
//! use microsocket_socket::tls;
//!
//! // Clients must present a certificate signed by `clients-ca.pem`.
//! let server = tls::server_config("server.pem", "server.key", Some("clients-ca.pem".as_ref()))?;
//! let client = tls::client_config("server-ca.pem", Some(("alice.pem".as_ref(), "alice.key".as_ref())))?;
//! # Ok(()) }
//! ```

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::identity::TlsIdentity;

pub use crate::relay::{handshake, relay, HANDSHAKE_TIMEOUT};
pub use rustls;

/// Handshakes a listener runs at once; connections past it are closed at
/// once, so peers that connect and never handshake hold a bounded number of
/// tasks or threads and descriptors.
pub const MAX_HANDSHAKES: usize = 256;

/// `name` as the server name a TLS client verifies: a DNS name or an IP
/// address.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] if it is neither.
pub fn server_name(name: &str) -> io::Result<rustls::pki_types::ServerName<'static>> {
    rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|e| invalid(format!("{name:?}: {e}")))
}

/// The identity of the certificate a TLS peer presented (its
/// `peer_certificates()`), if it presented one that can be read.
#[must_use]
pub fn peer_identity(certificates: Option<&[CertificateDer<'_>]>) -> Option<TlsIdentity> {
    certificates
        .and_then(|certs| certs.first())
        .and_then(|cert| TlsIdentity::from_certificate(cert))
}

impl TlsIdentity {
    /// The identity in a certificate (DER); `None` if it cannot be parsed.
    #[must_use]
    pub fn from_certificate(der: &[u8]) -> Option<Self> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let common_names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
            .collect();
        let alt_names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        GeneralName::DNSName(n) | GeneralName::RFC822Name(n) | GeneralName::URI(n) => {
                            Some((*n).to_owned())
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            common_names,
            alt_names,
        })
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

fn certificates(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

fn roots(path: &Path) -> io::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// The cryptography: *ring*, which builds with a C compiler alone. (rustls
/// offers post-quantum key exchange only with aws-lc-rs, whose build needs
/// CMake; hence its deprecation notice on *ring*'s provider.)
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from PEM files: the server's certificate chain and
/// key, and, for mutual TLS, the CA whose certificates clients must present
/// (without it, clients present none).
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] naming the file, for unreadable or invalid
/// PEM, or a key that does not match.
pub fn server_config(
    cert: impl AsRef<Path>,
    key: impl AsRef<Path>,
    client_ca: Option<&Path>,
) -> io::Result<Arc<rustls::ServerConfig>> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| invalid(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certificates(cert.as_ref())?, private_key(key.as_ref())?)
        .map_err(|e| invalid(format!("{}: {e}", key.as_ref().display())))?;
    Ok(Arc::new(config))
}

/// A client configuration from PEM files: the CA that signed the server's
/// certificate, and for mutual TLS the client's certificate chain and key.
///
/// # Errors
/// As [`server_config`].
pub fn client_config(ca: impl AsRef<Path>, identity: Option<(&Path, &Path)>) -> io::Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots(ca.as_ref())?);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| invalid(format!("{}: {e}", key.display())))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
