//! A client over TLS (feature `tls`): the TLS session runs on a thread of its
//! own, relaying to the plaintext end of a socket pair the client uses as its
//! connection.

use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use microsocket_socket::tls::{handshake, relay, rustls, server_name};
use microsocket_socket::Stream;

use super::{Client, ClientConfig, Result};

impl Client {
    /// Connects over TLS to `address`, verifying the server as `server_name`
    /// (a DNS name or an IP address) with `tls` (see
    /// [`crate::tls::client_config`]); the handshake must finish within
    /// [`HANDSHAKE_TIMEOUT`](crate::tls::HANDSHAKE_TIMEOUT). Reconnects the
    /// same way when `config` says so.
    ///
    /// # Errors
    /// The connect error, the TLS error (an unknown CA, a wrong name, an
    /// expired certificate, a server that does not speak TLS), or
    /// [`std::io::ErrorKind::InvalidInput`] for a `server_name` that is
    /// neither a DNS name nor an IP address.
    pub fn connect_tls<A>(
        address: A,
        server_name_: &str,
        tls: Arc<rustls::ClientConfig>,
        config: ClientConfig,
    ) -> Result<Self>
    where
        A: ToSocketAddrs + Send + Sync + 'static,
    {
        let name = server_name(server_name_)?;
        Self::connect_by(config, move || {
            let mut tcp = TcpStream::connect(&address)?;
            tcp.set_nodelay(true)?;
            let session = rustls::ClientConnection::new(tls.clone(), name.clone()).map_err(std::io::Error::other)?;
            let mut session = rustls::Connection::Client(session);
            handshake(&mut session, &mut tcp)?;
            let (ours, theirs) = UnixStream::pair()?;
            std::thread::Builder::new()
                .name("microsocket-tls".into())
                .stack_size(256 << 10)
                .spawn(move || relay(session, tcp, ours))?;
            Ok(Stream::Unix(theirs))
        })
    }
}
