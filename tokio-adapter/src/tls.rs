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
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::handler::{Handler, TlsIdentity};
use crate::log::limited;
use crate::server::Server;
use microsocket_socket::tls::peer_identity;

pub use microsocket_socket::tls::{client_config, rustls, server_config, HANDSHAKE_TIMEOUT, MAX_HANDSHAKES};

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
                            let identity = peer_identity(tls.get_ref().1.peer_certificates()).map(Arc::new);
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
        let name = microsocket_socket::tls::server_name(server_name)?;
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
