//! [`Address`], the one string form of where a server listens, and the
//! [`Stream`] and [`Listener`] it connects and binds.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

#[cfg(any(target_os = "linux", target_os = "android"))]
use crate::abstract_name::{bind_abstract, connect_abstract};
use crate::credentials::{peer_credentials, PeerCredentials};
use crate::file::{bind_unix_with, SocketFileGuard, SocketOptions};

/// Where a microsocket server listens, in one string form:
///
/// | string | address |
/// |---|---|
/// | `/run/app.sock`, `./app.sock`, `unix:///run/app.sock`, `unix:app.sock` | a UNIX socket file |
/// | `@app` | the Linux abstract name `app` |
/// | `tcp://127.0.0.1:7000`, `tcp://localhost:7000` | TCP |
///
/// Any other string is a UNIX socket path, so a bare file name works too.
///
/// ```
/// use microsocket_socket::Address;
///
/// let a: Address = "@app".parse().unwrap();
/// assert_eq!(a, Address::Abstract(b"app".to_vec()));
/// assert_eq!("tcp://localhost:7000".parse::<Address>().unwrap().to_string(), "tcp://localhost:7000");
/// assert!("tcp://nohost".parse::<Address>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A UNIX socket file.
    Unix(PathBuf),
    /// A Linux abstract socket name (without the leading NUL).
    Abstract(Vec<u8>),
    /// A TCP `host:port`.
    Tcp(String),
}

/// Why a string is not an [`Address`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The string is empty.
    #[error("empty address")]
    Empty,
    /// `@` with no name after it.
    #[error("abstract socket name is empty")]
    EmptyAbstract,
    /// A `tcp://` address without `host:port`.
    #[error("TCP address {0:?} is not host:port")]
    BadTcp(String),
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if let Some(name) = s.strip_prefix('@') {
            if name.is_empty() {
                return Err(AddressError::EmptyAbstract);
            }
            return Ok(Self::Abstract(name.as_bytes().to_vec()));
        }
        if let Some(hostport) = s.strip_prefix("tcp://") {
            let hostport = hostport.trim_end_matches('/');
            let ok = hostport
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(AddressError::BadTcp(s.to_owned()));
            }
            return Ok(Self::Tcp(hostport.to_owned()));
        }
        let path = s
            .strip_prefix("unix://")
            .or_else(|| s.strip_prefix("unix:"))
            .unwrap_or(s);
        if path.is_empty() {
            return Err(AddressError::Empty);
        }
        Ok(Self::Unix(PathBuf::from(path)))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => {
                let s = path.to_string_lossy();
                if s.starts_with('@') || s.starts_with("tcp://") || s.starts_with("unix:") {
                    write!(f, "unix://{s}")
                } else {
                    f.write_str(&s)
                }
            }
            Self::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            Self::Tcp(hostport) => write!(f, "tcp://{hostport}"),
        }
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Self {
        Self::Unix(path)
    }
}

impl From<&Path> for Address {
    fn from(path: &Path) -> Self {
        Self::Unix(path.to_path_buf())
    }
}

impl Address {
    /// Connects to the address (TCP connections get `TCP_NODELAY`).
    ///
    /// # Errors
    /// The connect error; [`io::ErrorKind::Unsupported`] for an abstract name off
    /// Linux.
    pub fn connect(&self) -> io::Result<Stream> {
        match self {
            Self::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Self::Abstract(name) => connect_abstract(name).map(Stream::Unix),
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            Self::Abstract(_) => Err(unsupported_abstract()),
            Self::Tcp(hostport) => {
                let stream = TcpStream::connect(hostport.as_str())?;
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
        }
    }

    /// Binds the address: a UNIX path with [`bind_unix`](crate::bind_unix) (`mode` sets the file's
    /// permissions), an abstract name with [`bind_abstract`], TCP with
    /// [`TcpListener::bind`].
    ///
    /// # Errors
    /// As the bind function used.
    pub fn bind(&self, mode: u32) -> io::Result<Listener> {
        self.bind_with(&SocketOptions::new(mode))
    }

    /// Binds the address as [`Address::bind`] does, a UNIX path with
    /// [`bind_unix_with`] and `options` (mode, owner and group of the file;
    /// ignored for abstract names and TCP).
    ///
    /// # Errors
    /// As the bind function used.
    pub fn bind_with(&self, options: &SocketOptions) -> io::Result<Listener> {
        match self {
            Self::Unix(path) => {
                let (listener, guard) = bind_unix_with(path, options)?;
                Ok(Listener::Unix {
                    listener,
                    guard: Some(guard),
                })
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Self::Abstract(name) => Ok(Listener::Unix {
                listener: bind_abstract(name)?,
                guard: None,
            }),
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            Self::Abstract(_) => Err(unsupported_abstract()),
            Self::Tcp(hostport) => {
                let addr = hostport
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "host has no address"))?;
                TcpListener::bind(addr).map(Listener::Tcp)
            }
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn unsupported_abstract() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "abstract socket names need Linux")
}

/// A connected stream: UNIX or TCP.
#[derive(Debug)]
pub enum Stream {
    /// A UNIX stream socket (path or abstract name).
    Unix(UnixStream),
    /// A TCP connection.
    Tcp(TcpStream),
}

impl Stream {
    /// Another handle to the same socket.
    ///
    /// # Errors
    /// As `dup`.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Self::Unix(s) => Self::Unix(s.try_clone()?),
            Self::Tcp(s) => Self::Tcp(s.try_clone()?),
        })
    }

    /// Shuts down reading, writing or both.
    ///
    /// # Errors
    /// As `shutdown`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.shutdown(how),
            Self::Tcp(s) => s.shutdown(how),
        }
    }

    /// Sets the read timeout (`None`: block forever).
    ///
    /// # Errors
    /// As `setsockopt`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.set_read_timeout(timeout),
            Self::Tcp(s) => s.set_read_timeout(timeout),
        }
    }

    /// Sets the write timeout (`None`: block forever).
    ///
    /// # Errors
    /// As `setsockopt`.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.set_write_timeout(timeout),
            Self::Tcp(s) => s.set_write_timeout(timeout),
        }
    }

    /// The peer's credentials, for a UNIX stream ([`peer_credentials`]); `None` for
    /// TCP or where the platform cannot tell.
    #[must_use]
    pub fn peer_credentials(&self) -> Option<PeerCredentials> {
        match self {
            Self::Unix(s) => peer_credentials(s).ok(),
            Self::Tcp(_) => None,
        }
    }
}

impl std::os::fd::AsFd for Stream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Self::Unix(s) => s.as_fd(),
            Self::Tcp(s) => s.as_fd(),
        }
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).read(buf),
            Stream::Tcp(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).write(buf),
            Stream::Tcp(s) => (&*s).write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).write_vectored(bufs),
            Stream::Tcp(s) => (&*s).write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Self {
        Self::Unix(s)
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Self::Tcp(s)
    }
}

/// A listening socket: UNIX (with the guard of its socket file, if it has one) or
/// TCP.
#[derive(Debug)]
pub enum Listener {
    /// A UNIX listener.
    Unix {
        /// The socket.
        listener: UnixListener,
        /// Removes the socket file on drop; `None` for abstract names and listeners
        /// the application bound itself.
        guard: Option<SocketFileGuard>,
    },
    /// A TCP listener.
    Tcp(TcpListener),
}

impl Listener {
    /// Accepts one connection (TCP connections get `TCP_NODELAY`).
    ///
    /// # Errors
    /// As `accept`.
    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            Self::Unix { listener, .. } => listener.accept().map(|(s, _)| Stream::Unix(s)),
            Self::Tcp(listener) => {
                let (s, _) = listener.accept()?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
        }
    }

    /// An address a client can connect to, to wake a blocked [`Listener::accept`]
    /// (used for shutdown), if one can be told.
    #[must_use]
    pub fn local_address(&self) -> Option<Address> {
        match self {
            Self::Unix { listener, guard } => {
                if let Some(guard) = guard {
                    return Some(Address::Unix(guard.path().to_path_buf()));
                }
                let addr = listener.local_addr().ok()?;
                if let Some(path) = addr.as_pathname() {
                    return Some(Address::Unix(path.to_path_buf()));
                }
                #[cfg(any(target_os = "linux", target_os = "android"))]
                {
                    #[cfg(target_os = "android")]
                    use std::os::android::net::SocketAddrExt;
                    #[cfg(target_os = "linux")]
                    use std::os::linux::net::SocketAddrExt;
                    if let Some(name) = addr.as_abstract_name() {
                        return Some(Address::Abstract(name.to_vec()));
                    }
                }
                None
            }
            Self::Tcp(listener) => {
                let mut addr = listener.local_addr().ok()?;
                if addr.ip().is_unspecified() {
                    addr.set_ip(match addr {
                        std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                        std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                    });
                }
                Some(Address::Tcp(addr.to_string()))
            }
        }
    }
}

impl Listener {
    /// Moves the listener into or out of non-blocking mode.
    ///
    /// # Errors
    /// As `fcntl`.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Self::Unix { listener, .. } => listener.set_nonblocking(nonblocking),
            Self::Tcp(listener) => listener.set_nonblocking(nonblocking),
        }
    }
}

impl std::os::fd::AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Self::Unix { listener, .. } => listener.as_fd(),
            Self::Tcp(listener) => listener.as_fd(),
        }
    }
}

impl From<UnixListener> for Listener {
    fn from(listener: UnixListener) -> Self {
        Self::Unix { listener, guard: None }
    }
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Self {
        Self::Tcp(listener)
    }
}
