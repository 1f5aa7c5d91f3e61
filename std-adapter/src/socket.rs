//! Socket plumbing shared by every microsocket server and client on a hosted OS:
//! binding UNIX socket files safely, Linux abstract names, peer credentials, and
//! [`Address`], the one string form of "where a microsocket server listens".
//!
//! # Socket files
//!
//! [`bind_unix`] follows the same rules wherever microsocket binds a path:
//!
//! - if a live server accepts a connection on the path, binding fails with
//!   [`io::ErrorKind::AddrInUse`] and the path is left alone;
//! - a stale socket file (nobody listening) is removed, but only if it *is* a
//!   socket: a regular file, directory or anything else is never deleted (the
//!   error is [`io::ErrorKind::AlreadyExists`]);
//! - the new file is given the permissions `mode` ([`DEFAULT_SOCKET_MODE`], owner
//!   only, unless told otherwise). Between `bind` and `chmod` the file briefly has
//!   the permissions the process umask allows; put sockets that need strict access
//!   control in a directory only the intended users can enter;
//! - the returned [`SocketFileGuard`] removes the file when dropped, but only if
//!   the path still names the very file this process bound (same device, inode
//!   and, where the filesystem records it, birth time), so a server that lost its path to a newer server never deletes the
//!   newer one's socket.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use microsocket_std::socket::{bind_unix, DEFAULT_SOCKET_MODE};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("app.sock");
//! let (listener, guard) = bind_unix(&path, DEFAULT_SOCKET_MODE)?;
//! // A second server on the same path is refused while the first listens.
//! let err = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap_err();
//! assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
//! drop(listener);
//! drop(guard); // removes app.sock
//! assert!(!path.exists());
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Permissions given to a socket file unless the caller says otherwise: read and
/// write for the owner only.
pub const DEFAULT_SOCKET_MODE: u32 = 0o600;

/// Removes a socket file on drop if the path still names the file this process
/// bound (same device and inode). See [`bind_unix`].
#[derive(Debug)]
#[must_use = "dropping the guard removes the socket file"]
pub struct SocketFileGuard {
    path: PathBuf,
    identity: FileIdentity,
    armed: bool,
}

/// What tells one file from another that later took the same path: device and
/// inode, and the birth time where the filesystem records one (inode numbers are
/// reused as soon as a file is deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    born: Option<std::time::SystemTime>,
}

impl FileIdentity {
    fn of_socket(path: &Path) -> Option<Self> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        meta.file_type().is_socket().then(|| Self {
            dev: meta.dev(),
            ino: meta.ino(),
            born: meta.created().ok(),
        })
    }
}

impl SocketFileGuard {
    /// The socket file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path still names the socket file this guard was made for.
    #[must_use]
    pub fn is_ours(&self) -> bool {
        FileIdentity::of_socket(&self.path) == Some(self.identity)
    }

    /// Removes the file now if it is still ours; returns whether it removed it.
    /// Later calls (and the drop) do nothing.
    pub fn remove(&mut self) -> bool {
        if !std::mem::replace(&mut self.armed, false) {
            return false;
        }
        self.is_ours() && std::fs::remove_file(&self.path).is_ok()
    }

    /// Gives up the guard without removing the file.
    pub fn keep(mut self) -> PathBuf {
        self.armed = false;
        std::mem::take(&mut self.path)
    }
}

impl Drop for SocketFileGuard {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Binds a UNIX stream socket at `path` with the socket-file rules of this module:
/// refuses a path a live server listens on, replaces only a stale *socket* file,
/// sets the file's permissions to `mode` (e.g. [`DEFAULT_SOCKET_MODE`]), and returns
/// a guard that removes the file when dropped.
///
/// # Errors
/// - [`io::ErrorKind::AddrInUse`] if a server accepts connections on `path` (the
///   path is untouched) or another process binds it first;
/// - [`io::ErrorKind::AlreadyExists`] if `path` exists and is not a socket;
/// - any error from probing, removing, binding or `chmod` (on a `chmod` failure the
///   new file is removed again).
pub fn bind_unix(path: impl AsRef<Path>, mode: u32) -> io::Result<(UnixListener, SocketFileGuard)> {
    let path = path.as_ref();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("a server is already listening on {}", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot tell whether {} is in use: {e}", path.display()),
                ))
            }
        },
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket; not replacing it", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    let identity = FileIdentity::of_socket(path)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "socket file vanished after bind"))?;
    let mut guard = SocketFileGuard {
        path: path.to_path_buf(),
        identity,
        armed: true,
    };
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        guard.remove();
        return Err(e);
    }
    Ok((listener, guard))
}

/// Binds a Linux abstract-namespace socket (`name` without the leading NUL). No file
/// is created, so nothing needs removing; anyone in the network namespace may
/// connect, so check [`peer_credentials`] where access matters.
///
/// # Errors
/// [`io::ErrorKind::AddrInUse`] if the name is taken, or another error from `bind`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn bind_abstract(name: &[u8]) -> io::Result<UnixListener> {
    UnixListener::bind_addr(&abstract_addr(name)?)
}

/// Connects to a Linux abstract-namespace socket.
///
/// # Errors
/// As `connect`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn connect_abstract(name: &[u8]) -> io::Result<UnixStream> {
    UnixStream::connect_addr(&abstract_addr(name)?)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> io::Result<std::os::unix::net::SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
}

/// Who is on the other end of a UNIX socket, as the kernel saw it at `connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCredentials {
    /// The peer's process id (0 if the kernel could not name it, e.g. from another
    /// PID namespace).
    pub pid: u32,
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
}

/// The credentials of the process at the other end of `stream` (`SO_PEERCRED`).
///
/// # Errors
/// The `getsockopt` error, or [`io::ErrorKind::Unsupported`] where the platform has
/// no `SO_PEERCRED`.
pub fn peer_credentials(stream: &UnixStream) -> io::Result<PeerCredentials> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let cred = rustix::net::sockopt::socket_peercred(stream)?;
        Ok(PeerCredentials {
            pid: u32::try_from(cred.pid.as_raw_pid()).unwrap_or(0),
            uid: cred.uid.as_raw(),
            gid: cred.gid.as_raw(),
        })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = stream;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "peer credentials are not supported on this platform",
        ))
    }
}

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
/// use microsocket_std::socket::Address;
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

    /// Binds the address: a UNIX path with [`bind_unix`] (`mode` sets the file's
    /// permissions), an abstract name with [`bind_abstract`], TCP with
    /// [`TcpListener::bind`].
    ///
    /// # Errors
    /// As the bind function used.
    pub fn bind(&self, mode: u32) -> io::Result<Listener> {
        match self {
            Self::Unix(path) => {
                let (listener, guard) = bind_unix(path, mode)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_live_server_and_leaves_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (_listener, guard) = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap();
        let err = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(guard.is_ours());
        // The first server still works.
        UnixStream::connect(&path).unwrap();
    }

    #[test]
    fn replaces_stale_socket_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (listener, guard) = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap();
        drop(listener);
        let _stale = guard.keep();
        assert!(path.exists());
        let (_listener, guard) = bind_unix(&path, 0o660).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        UnixStream::connect(&path).unwrap();
        drop(guard);
        assert!(!path.exists());
    }

    #[test]
    fn default_mode_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (_listener, _guard) = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn never_deletes_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.txt");
        std::fs::write(&path, b"precious").unwrap();
        let err = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn guard_spares_a_newer_servers_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (old_listener, old_guard) = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap();
        drop(old_listener);
        // A newer server replaces the stale file.
        let (_new_listener, new_guard) = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap();
        assert!(!old_guard.is_ours());
        drop(old_guard);
        assert!(path.exists());
        UnixStream::connect(&path).unwrap();
        drop(new_guard);
        assert!(!path.exists());
    }

    #[test]
    fn guard_spares_a_regular_file_put_in_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (_listener, guard) = bind_unix(&path, DEFAULT_SOCKET_MODE).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"x").unwrap();
        drop(guard);
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_names_and_peer_credentials() {
        let name = format!("microsocket-test-{}", std::process::id());
        let listener = bind_abstract(name.as_bytes()).unwrap();
        assert_eq!(
            bind_abstract(name.as_bytes()).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        let client = connect_abstract(name.as_bytes()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let creds = peer_credentials(&server).unwrap();
        assert_eq!(creds.pid, std::process::id());
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(creds.uid, std::fs::metadata(dir.path()).unwrap().uid());
        assert_eq!(peer_credentials(&client).unwrap().pid, std::process::id());
        let listener = Listener::from(listener);
        assert_eq!(listener.local_address(), Some(Address::Abstract(name.into_bytes())));
    }

    #[test]
    fn parses_addresses() {
        let cases: &[(&str, Address)] = &[
            ("/run/x.sock", Address::Unix("/run/x.sock".into())),
            ("x.sock", Address::Unix("x.sock".into())),
            ("unix:///run/x.sock", Address::Unix("/run/x.sock".into())),
            ("unix:rel.sock", Address::Unix("rel.sock".into())),
            ("@name", Address::Abstract(b"name".to_vec())),
            ("tcp://127.0.0.1:7000", Address::Tcp("127.0.0.1:7000".into())),
            ("tcp://[::1]:7000", Address::Tcp("[::1]:7000".into())),
        ];
        for (s, want) in cases {
            assert_eq!(&s.parse::<Address>().unwrap(), want, "{s}");
        }
        for bad in ["", "@", "tcp://", "tcp://host", "tcp://:80", "tcp://h:99999", "unix://"] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
        for s in ["/a/b", "@n", "tcp://h:1", "unix://@odd"] {
            let a: Address = s.parse().unwrap();
            assert_eq!(a.to_string().parse::<Address>().unwrap(), a, "{s}");
        }
    }

    #[test]
    fn address_bind_and_connect_tcp() {
        let listener = Address::Tcp("127.0.0.1:0".into()).bind(DEFAULT_SOCKET_MODE).unwrap();
        let addr = listener.local_address().unwrap();
        let client = addr.connect().unwrap();
        let server = listener.accept().unwrap();
        (&client).write_all(b"hi").unwrap();
        let mut buf = [0; 2];
        (&server).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        assert!(server.peer_credentials().is_none());
    }
}
