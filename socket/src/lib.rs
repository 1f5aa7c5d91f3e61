//! Socket plumbing shared by every microsocket server and client on a hosted OS:
//! binding UNIX socket files safely, Linux abstract names, peer credentials, and
//! [`Address`], the one string form of "where a microsocket server listens".
//!
//! # Socket files
//!
//! [`bind_unix`] and [`bind_unix_with`] follow the same rules wherever microsocket
//! binds a path (the std and Tokio servers and `microsocket serve` all bind through
//! them):
//!
//! - **Clear refusals.** A path longer than [`MAX_SOCKET_PATH`] bytes fails with
//!   [`std::io::ErrorKind::InvalidInput`] and a message giving the limit; a path whose
//!   directory does not exist fails with [`std::io::ErrorKind::NotFound`] and a message
//!   naming the directory; a mode with bits beyond `0o777` fails with
//!   [`std::io::ErrorKind::InvalidInput`].
//! - **A live server keeps its path.** If a connection to the path is accepted,
//!   binding fails with [`std::io::ErrorKind::AddrInUse`] and the path is left alone.
//!   A file that appears between the check and the bind is never replaced either
//!   (`bind` does not overwrite): [`std::io::ErrorKind::AddrInUse`] again.
//! - **Only a stale socket is replaced.** A socket file nobody listens on is
//!   removed, and only if it is still the file that refused the probe. A regular
//!   file, a directory, a symbolic link (even one to a socket) or anything else is
//!   never deleted: the error is [`std::io::ErrorKind::AlreadyExists`].
//! - **Never more open than asked.** The file never has permissions beyond
//!   [`SocketOptions::mode`] ([`DEFAULT_SOCKET_MODE`], owner only, unless told
//!   otherwise), not even for an instant, and the process umask is not touched
//!   (it is shared by all threads). On Linux the socket's own inode is given the
//!   mode before `bind` (`fchmod` on the socket), and the kernel creates the file
//!   with that mode less the umask's bits. Elsewhere the socket is bound inside a
//!   new private (`0700`) directory next to the path, given its mode, owner and
//!   group there, and hard-linked into place. Once the file exists it is set to
//!   exactly `mode` (which can only add bits the umask removed).
//! - **Owner and group.** [`SocketOptions::owner`] and [`SocketOptions::group`]
//!   change the file's owner and group (without following symbolic links). When
//!   either is set, the file is created with no permissions at all and gets its
//!   mode only after its new owner and group, so no user or group that was not
//!   meant to is ever let in. Giving a file away to another user needs privilege
//!   (`CAP_CHOWN`); an unprivileged process may choose any group it belongs to.
//! - **Removal only of our own file.** The returned [`SocketFileGuard`] removes
//!   the file when dropped, but only if the path still names the very file this
//!   process bound (same device, inode and, where the filesystem records it,
//!   birth time), so a server that lost its path to a newer server never deletes
//!   the newer one's socket. When binding fails after the file was created (say,
//!   `chown` is not permitted), that file, and only that file, is removed again.
//!
//! The directory matters as much as the file: whoever may write to it can remove
//! or rename the socket file (and a new server may then take the path), and
//! clients need search (`x`) permission on every directory of the path. Put a
//! socket that guards access in a directory only trusted users can write, such
//! as `/run/<app>/`.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use microsocket_socket::{bind_unix, DEFAULT_SOCKET_MODE};
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
//!
//! # Peer credentials
//!
//! File permissions decide who may connect at all; peer credentials decide what a
//! connected peer may do. On a UNIX socket the kernel records the process id,
//! effective user id and effective group id of the process that called `connect`
//! ([`peer_credentials`], `SO_PEERCRED`); both servers hand them to request
//! handlers and subscription hooks (`Context::peer` in this crate,
//! `RequestContext::peer` in microsocket-tokio). The peer cannot choose them, and
//! they stay those of the `connect` call: a process that later changes its user,
//! or hands the connection to another process, keeps the credentials it connected
//! with. The pid is 0 when the peer is in another PID namespace.
//!
//! TCP connections carry no credentials (`None`), and a Linux abstract name has no
//! file and so no permissions: any process in the network namespace may connect
//! to it. On those, only the handler's own checks stand between a peer and the
//! application.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod abstract_name;
mod address;
mod credentials;
mod file;
mod hangup;
mod identity;
#[cfg(feature = "tls")]
mod relay;
mod serial;
#[cfg(test)]
mod tests;
#[cfg(feature = "tls")]
pub mod tls;

#[cfg(any(target_os = "linux", target_os = "android"))]
pub use abstract_name::{bind_abstract, connect_abstract};
pub use address::{Address, AddressError, Listener, Stream};
pub use credentials::{own_credentials, own_uid, peer_credentials, PeerCredentials};
pub use file::{bind_unix, bind_unix_with, SocketFileGuard, SocketOptions, DEFAULT_SOCKET_MODE, MAX_SOCKET_PATH};
pub use hangup::peer_hung_up;
pub use identity::TlsIdentity;
pub use serial::{SerialLine, SerialLineError};
