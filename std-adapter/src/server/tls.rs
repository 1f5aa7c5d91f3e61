//! A server's TLS listener (feature `tls`): each accepted TCP connection
//! handshakes on a thread of its own, which then relays between the TLS
//! session and the plaintext end of a socket pair that the server serves
//! like any other connection.

use std::io;
use std::net::ToSocketAddrs;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use microsocket_host::{Account, ServerConfig};
use microsocket_socket::tls::{handshake, peer_identity, relay, rustls, MAX_HANDSHAKES};
use microsocket_socket::{Listener, Stream};

use super::{start_connection, Handler, Server, Shared};

/// The stack of a TLS connection's thread: the handshake verifies
/// certificate chains and parses certificates there.
pub(crate) const TLS_THREAD_STACK: usize = 256 << 10;

/// What a TLS listener needs: the configuration, and how many handshakes run.
#[derive(Debug)]
pub(super) struct TlsAccept {
    config: Arc<rustls::ServerConfig>,
    handshakes: Arc<AtomicUsize>,
}

/// Releases a handshake's place when its thread is done with it.
struct Handshaking(Arc<AtomicUsize>);

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl TlsAccept {
    /// Handshakes with `stream` and serves it, on a thread of its own; past
    /// [`MAX_HANDSHAKES`] at once, closes it.
    pub(super) fn accept<H: Handler>(
        &self,
        id: u64,
        stream: Stream,
        account: Account,
        shared: &Arc<Shared>,
        handler: &Arc<H>,
    ) {
        let Stream::Tcp(mut tcp) = stream else { return };
        if self.handshakes.fetch_add(1, Ordering::SeqCst) >= MAX_HANDSHAKES {
            self.handshakes.fetch_sub(1, Ordering::SeqCst);
            shared.counters.connection_refused();
            return;
        }
        let place = Handshaking(self.handshakes.clone());
        let (config, serving, handler) = (self.config.clone(), shared.clone(), handler.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("microsocket-tls-{id}"))
            .stack_size(TLS_THREAD_STACK)
            .spawn(move || {
                let place = place;
                let _ = tcp.set_nodelay(true);
                let session = rustls::ServerConnection::new(config).map_err(io::Error::other);
                let mut session = match session {
                    Ok(session) => rustls::Connection::Server(session),
                    Err(_) => return,
                };
                if let Err(e) = handshake(&mut session, &mut tcp) {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                drop(place);
                // The limit again: others may have connected meanwhile.
                if super::lock(&serving.hub).len() >= serving.config.max_connections {
                    serving.counters.connection_refused();
                    return;
                }
                let identity = peer_identity(session.peer_certificates()).map(Arc::new);
                let Ok((ours, theirs)) = UnixStream::pair() else { return };
                start_connection(&serving, &handler, id, Stream::Unix(theirs), None, identity, account);
                let _ = relay(session, tcp, ours);
            });
        if spawned.is_err() {
            shared.counters.connection_refused();
        }
    }
}

impl<H: Handler> Server<H> {
    /// Binds a TCP address and serves TLS on it (see [`Server::with_tls`]).
    ///
    /// # Errors
    /// As [`Server::bind_tcp`].
    pub fn bind_tls(
        address: impl ToSocketAddrs,
        handler: H,
        config: ServerConfig,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<Self> {
        Self::bind_tcp(address, handler, config)?.with_tls(tls)
    }

    /// Serves TLS on this server's TCP listener (feature `tls`): each
    /// connection handshakes on a thread of its own, at most
    /// [`MAX_HANDSHAKES`] at once and each within
    /// [`HANDSHAKE_TIMEOUT`](crate::tls::HANDSHAKE_TIMEOUT); a client that
    /// presents a verified certificate (mutual TLS, see
    /// [`crate::tls::server_config`]) is known to the handler by
    /// [`RequestContext::tls`](crate::RequestContext::tls). A connection whose
    /// handshake fails is closed and disturbs no other.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] if the listener is not TCP.
    pub fn with_tls(mut self, tls: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        if !matches!(self.listener, Listener::Tcp(_)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS is served on TCP listeners",
            ));
        }
        self.tls = Some(TlsAccept {
            config: tls,
            handshakes: Arc::new(AtomicUsize::new(0)),
        });
        Ok(self)
    }
}
