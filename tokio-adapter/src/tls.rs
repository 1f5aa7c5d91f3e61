//! TLS over TCP (feature `tls`), with rustls: a server's TLS listener, a
//! client that connects over TLS, and the verified identity of a client that
//! presents a certificate (mutual TLS), which reaches the handler and the
//! subscription hook in [`RequestContext::tls`](crate::RequestContext::tls)
//! as peer credentials do on UNIX sockets.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use microsocket_tokio::{handler_fn, tls, Client, Failure, Reply, Request, Server};
//!
//! // Clients must present a certificate signed by `clients-ca.pem`.
//! let config = tls::server_config("server.pem", "server.key", Some("clients-ca.pem".as_ref()))?;
//! let server = Server::new(handler_fn(|request: Request| async move {
//!     let who = request.context.tls.as_ref().and_then(|id| id.common_names.first().cloned());
//!     Ok::<_, Failure>(Reply::one(who.unwrap_or_default()))
//! }));
//! let address = server.listen_tls("127.0.0.1:7443", config).await?;
//!
//! let client_config = tls::client_config("server-ca.pem", Some(("alice.pem".as_ref(), "alice.key".as_ref())))?;
//! let client = Client::builder().connect_tls(address, "bus.example", client_config).await?;
//! let me = client.request("WHOAMI", microsocket_tokio::NO_ARGS).await?;
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::handler::{Handler, TlsIdentity};
use crate::log::limited;
use crate::server::Server;

pub use tokio_rustls::rustls;

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes a listener runs at once; connections past it are closed at
/// once, so peers that connect and never handshake hold a bounded number of
/// tasks and descriptors.
pub const MAX_HANDSHAKES: usize = 256;

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

impl<H: Handler> Server<H> {
    /// Listens on TCP with TLS; returns the bound address.
    ///
    /// # Errors
    /// Any error binding the address.
    pub async fn listen_tls(
        &self,
        addr: impl ToSocketAddrs,
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        self.serve_tls_listener(listener, config);
        Ok(local)
    }

    /// Serves TLS connections from a TCP listener the caller opened. Each
    /// handshake runs in its own task, at most [`MAX_HANDSHAKES`] at once and
    /// each within [`HANDSHAKE_TIMEOUT`]; a connection whose handshake
    /// completes is served like any other, with the client's verified
    /// identity in its [`RequestContext`](crate::RequestContext).
    pub fn serve_tls_listener(&self, listener: TcpListener, config: Arc<rustls::ServerConfig>) {
        let acceptor = TlsAcceptor::from(config);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let server = self.clone();
        self.tracker().spawn(async move {
            let cancel = server.cancellation();
            loop {
                let accepted = {
                    let (cancelled, accept) = (std::pin::pin!(cancel.cancelled()), std::pin::pin!(listener.accept()));
                    match futures_util::future::select(cancelled, accept).await {
                        futures_util::future::Either::Left(_) => break,
                        futures_util::future::Either::Right((accepted, _)) => accepted,
                    }
                };
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        limited!(warn, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    server.refuse_connection("too many TLS handshakes at once");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, server) = (acceptor.clone(), server.clone());
                server.clone().tracker().spawn(async move {
                    // A handshake under way does not hold up shutdown.
                    let cancel = server.cancellation();
                    let handshake = {
                        let timed = std::pin::pin!(tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)));
                        match futures_util::future::select(std::pin::pin!(cancel.cancelled()), timed).await {
                            futures_util::future::Either::Left(_) => return,
                            futures_util::future::Either::Right((handshake, _)) => handshake,
                        }
                    };
                    drop(permit);
                    match handshake {
                        Ok(Ok(tls)) => {
                            let identity = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|certs| certs.first())
                                .and_then(|cert| TlsIdentity::from_certificate(cert))
                                .map(Arc::new);
                            server.serve_tls_stream(tls, identity);
                        }
                        Ok(Err(e)) => limited!(debug, error = %e, "TLS handshake failed"),
                        Err(_) => limited!(debug, "TLS handshake timed out"),
                    }
                });
            }
        });
    }
}

/// Whether the peer of a TLS stream over TCP has hung up.
fn tls_hung_up(stream: &tokio_rustls::server::TlsStream<TcpStream>) -> bool {
    crate::server::socket_hung_up(stream.get_ref().0)
}

impl<H: Handler> Server<H> {
    fn serve_tls_stream(&self, stream: tokio_rustls::server::TlsStream<TcpStream>, identity: Option<Arc<TlsIdentity>>) {
        self.spawn_connection_as(stream, None, identity, tls_hung_up);
    }
}

impl crate::ClientBuilder {
    /// Connects to a server over TCP with TLS, verifying its certificate for
    /// `server_name` (and presenting the client's, if `config` has one),
    /// within [`HANDSHAKE_TIMEOUT`]. Reconnects, if asked to, the same way.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) if the connection or the handshake
    /// fails, or `server_name` is not a valid DNS name or IP address.
    pub async fn connect_tls<A>(
        self,
        addr: A,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<crate::Client, crate::Error>
    where
        A: ToSocketAddrs + Clone + Send + Sync + 'static,
    {
        let name =
            ServerName::try_from(server_name.to_owned()).map_err(|e| invalid(format!("{server_name:?}: {e}")))?;
        let connector = TlsConnector::from(config);
        self.connect_with(move || {
            let (addr, name, connector) = (addr.clone(), name.clone(), connector.clone());
            async move {
                let connect = async {
                    let stream = TcpStream::connect(addr).await?;
                    stream.set_nodelay(true)?;
                    connector.connect(name, stream).await
                };
                tokio::time::timeout(HANDSHAKE_TIMEOUT, connect)
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS connection not established in time"))?
            }
        })
        .await
    }
}
