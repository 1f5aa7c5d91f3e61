//! Linux abstract socket names: no file, no permissions.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};

/// Binds a Linux abstract-namespace socket (`name` without the leading NUL). No file
/// is created, so nothing needs removing; anyone in the network namespace may
/// connect, so check [`peer_credentials`](crate::peer_credentials) where access matters.
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
