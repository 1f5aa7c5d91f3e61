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
//!   [`io::ErrorKind::InvalidInput`] and a message giving the limit; a path whose
//!   directory does not exist fails with [`io::ErrorKind::NotFound`] and a message
//!   naming the directory; a mode with bits beyond `0o777` fails with
//!   [`io::ErrorKind::InvalidInput`].
//! - **A live server keeps its path.** If a connection to the path is accepted,
//!   binding fails with [`io::ErrorKind::AddrInUse`] and the path is left alone.
//!   A file that appears between the check and the bind is never replaced either
//!   (`bind` does not overwrite): [`io::ErrorKind::AddrInUse`] again.
//! - **Only a stale socket is replaced.** A socket file nobody listens on is
//!   removed, and only if it is still the file that refused the probe. A regular
//!   file, a directory, a symbolic link (even one to a socket) or anything else is
//!   never deleted: the error is [`io::ErrorKind::AlreadyExists`].
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

/// The longest UNIX socket path, in bytes, that this platform's socket address
/// holds (`sun_path` less its terminating NUL: 107 on Linux, 103 on the BSDs and
/// macOS). Longer paths are refused with [`io::ErrorKind::InvalidInput`].
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const MAX_SOCKET_PATH: usize = 107;
/// The longest UNIX socket path, in bytes, that this platform's socket address
/// holds (`sun_path` less its terminating NUL: 107 on Linux, 103 on the BSDs and
/// macOS). Longer paths are refused with [`io::ErrorKind::InvalidInput`].
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const MAX_SOCKET_PATH: usize = 103;

/// How [`bind_unix_with`] creates a socket file: its permissions and, optionally,
/// its owner and group.
///
/// ```
/// use microsocket_std::socket::SocketOptions;
///
/// let options = SocketOptions::new(0o660).group(1000);
/// assert_eq!((options.mode, options.owner, options.group), (0o660, None, Some(1000)));
/// assert_eq!(SocketOptions::default().mode, 0o600);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SocketOptions {
    /// Permission bits of the file (at most `0o777`; default
    /// [`DEFAULT_SOCKET_MODE`]). Connecting needs write permission.
    pub mode: u32,
    /// The file's owner (user id); `None` keeps this process's user.
    pub owner: Option<u32>,
    /// The file's group (group id); `None` keeps the group the file was created
    /// with.
    pub group: Option<u32>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self::new(DEFAULT_SOCKET_MODE)
    }
}

impl SocketOptions {
    /// Options with permissions `mode`, owner and group unchanged.
    #[must_use]
    pub const fn new(mode: u32) -> Self {
        Self {
            mode,
            owner: None,
            group: None,
        }
    }

    /// Sets [`SocketOptions::mode`].
    #[must_use]
    pub const fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`SocketOptions::owner`].
    #[must_use]
    pub const fn owner(mut self, uid: u32) -> Self {
        self.owner = Some(uid);
        self
    }

    /// Sets [`SocketOptions::group`].
    #[must_use]
    pub const fn group(mut self, gid: u32) -> Self {
        self.group = Some(gid);
        self
    }

    fn changes_owner(&self) -> bool {
        self.owner.is_some() || self.group.is_some()
    }
}

/// Binds a UNIX stream socket at `path` with permissions `mode` (e.g.
/// [`DEFAULT_SOCKET_MODE`]) and the socket-file rules of this module; the same as
/// [`bind_unix_with`] with [`SocketOptions::new`]`(mode)`.
///
/// # Errors
/// As [`bind_unix_with`].
pub fn bind_unix(path: impl AsRef<Path>, mode: u32) -> io::Result<(UnixListener, SocketFileGuard)> {
    bind_unix_with(path, &SocketOptions::new(mode))
}

/// Binds a UNIX stream socket at `path` with the socket-file rules of this module:
/// refuses a path a live server listens on, replaces only a stale *socket* file,
/// creates the file never more open than `options.mode`, gives it the owner and
/// group asked for, and returns a guard that removes the file when dropped.
///
/// # Errors
/// - [`io::ErrorKind::InvalidInput`] if `path` is empty, holds a NUL byte or is
///   longer than [`MAX_SOCKET_PATH`] bytes, or if the mode has bits beyond `0o777`;
/// - [`io::ErrorKind::NotFound`] if the directory of `path` does not exist;
/// - [`io::ErrorKind::AddrInUse`] if a server accepts connections on `path` (the
///   path is untouched) or another process binds it first;
/// - [`io::ErrorKind::AlreadyExists`] if `path` exists and is not a socket;
/// - [`io::ErrorKind::PermissionDenied`] if the directory is not writable, or the
///   owner or group cannot be set (the new file is then removed again);
/// - any other error from probing, removing, binding, `chown` or `chmod`.
pub fn bind_unix_with(path: impl AsRef<Path>, options: &SocketOptions) -> io::Result<(UnixListener, SocketFileGuard)> {
    let path = path.as_ref();
    check_path(path)?;
    if options.mode > 0o777 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket mode {:#o} has bits beyond 0o777", options.mode),
        ));
    }
    remove_stale(path)?;
    let listener = create_socket_file(path, options)?;
    let identity = FileIdentity::of_socket(path)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "socket file vanished after bind"))?;
    let mut guard = SocketFileGuard {
        path: path.to_path_buf(),
        identity,
        armed: true,
    };
    if let Err(e) = finish_socket_file(&guard, options) {
        guard.remove();
        return Err(e);
    }
    Ok((listener, guard))
}

/// Refuses paths no socket address can hold, with a message that says why.
fn check_path(path: &Path) -> io::Result<()> {
    let len = path.as_os_str().len();
    if len == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "socket path is empty"));
    }
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket path {} holds a NUL byte", path.display()),
        ));
    }
    if len > MAX_SOCKET_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket path is too long: {len} bytes, and a UNIX socket path on this platform holds at most \
                 {MAX_SOCKET_PATH} bytes ({})",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// The directory a socket file at `path` goes into.
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Gives a creation error a message naming the path, and for a missing directory
/// the directory.
fn creation_error(path: &Path, e: io::Error) -> io::Error {
    let dir = directory_of(path);
    let message = match e.kind() {
        io::ErrorKind::NotFound => format!(
            "cannot create socket {}: directory {} does not exist",
            path.display(),
            dir.display()
        ),
        io::ErrorKind::PermissionDenied => format!(
            "cannot create socket {}: no permission to create files in {}",
            path.display(),
            dir.display()
        ),
        io::ErrorKind::AddrInUse | io::ErrorKind::AlreadyExists => {
            return io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} was created by another process while binding", path.display()),
            )
        }
        _ if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => format!(
            "cannot create socket {}: {} is not a directory",
            path.display(),
            dir.display()
        ),
        _ => format!("cannot create socket {}: {e}", path.display()),
    };
    io::Error::new(e.kind(), message)
}

/// Clears the way for a new socket at `path`: nothing there, or a stale socket
/// (removed). Anything else is an error and is left alone.
fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
            return Err(creation_error(path, e))
        }
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot inspect {}: {e}", path.display()),
            ))
        }
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket; not replacing it", path.display()),
        ));
    }
    let probed = FileIdentity::of_socket(path);
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("a server is already listening on {}", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            // Remove only the file that refused the probe, not one a new server
            // put there since.
            let now = FileIdentity::of_socket(path);
            if now.is_none() {
                return Ok(());
            }
            if now != probed {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} was replaced while binding", path.display()),
                ));
            }
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io::Error::new(
                    e.kind(),
                    format!("cannot remove stale socket {}: {e}", path.display()),
                )),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot tell whether {} is in use: {e}", path.display()),
        )),
    }
}

/// The mode a socket file is created with: none at all while its owner or group
/// is still to change, else the requested mode (less the umask's bits).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn creation_mode(options: &SocketOptions) -> u32 {
    if options.changes_owner() {
        0
    } else {
        options.mode
    }
}

/// Creates the socket file, listening, never more open than `options.mode`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn create_socket_file(path: &Path, options: &SocketOptions) -> io::Result<UnixListener> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    // Linux creates the file with the socket inode's mode less the umask's bits
    // (unix_bind: `SOCK_INODE(sock)->i_mode & ~current_umask()`), so the file is
    // born with at most this mode.
    rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(creation_mode(options)))?;
    let addr = SocketAddrUnix::new(path)?;
    rustix::net::bind(&fd, &addr).map_err(|e| creation_error(path, e.into()))?;
    let listener = UnixListener::from(fd);
    // The backlog std uses on Linux: the system's limit (somaxconn).
    if let Err(e) = rustix::net::listen(&listener, -1) {
        remove_if_socket_of(path, &listener);
        return Err(e.into());
    }
    Ok(listener)
}

/// Creates the socket file, listening, never more open than `options.mode`.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn create_socket_file(path: &Path, options: &SocketOptions) -> io::Result<UnixListener> {
    bind_via_private_dir(path, options)
}

/// Removes the socket file at `path` if it is the one `listener` is bound to
/// (for cleaning up after a failure between `bind` and the guard).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn remove_if_socket_of(path: &Path, listener: &UnixListener) {
    let bound_here = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
        .is_some_and(|p| p == path);
    if bound_here && FileIdentity::of_socket(path).is_some() {
        let _ = std::fs::remove_file(path);
    }
}

/// Binds the socket inside a new private (`0700`) directory next to `path`, sets
/// its mode, owner and group there, where no one else can reach it, and
/// hard-links it into place (which, like `bind`, never replaces an existing file).
/// The private directory is removed before returning.
#[cfg(any(test, not(any(target_os = "linux", target_os = "android"))))]
fn bind_via_private_dir(path: &Path, options: &SocketOptions) -> io::Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir_of = directory_of(path);
    let mut private = None;
    for _ in 0..64 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let candidate = dir_of.join(format!(".ms{:x}.{n:x}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&candidate) {
            Ok(()) => {
                private = Some(candidate);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(creation_error(path, e)),
        }
    }
    let private =
        private.ok_or_else(|| io::Error::new(io::ErrorKind::AlreadyExists, "no free name for a private directory"))?;
    let inner = private.join("s");
    let result = (|| {
        if inner.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "socket path {} leaves no room for the private directory it is created in \
                     ({MAX_SOCKET_PATH} bytes at most on this platform)",
                    path.display()
                ),
            ));
        }
        let listener = UnixListener::bind(&inner)?;
        if options.changes_owner() {
            std::os::unix::fs::lchown(&inner, options.owner, options.group)?;
        }
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(options.mode))?;
        std::fs::hard_link(&inner, path).map_err(|e| creation_error(path, e))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&private);
    result
}

/// Gives the new file (still ours, checked through the guard) its owner, group and
/// exact mode, in that order.
fn finish_socket_file(guard: &SocketFileGuard, options: &SocketOptions) -> io::Result<()> {
    let path = guard.path();
    let meta = std::fs::symlink_metadata(path)?;
    if !guard.is_ours() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} was replaced while binding", path.display()),
        ));
    }
    let owner = options.owner.filter(|&uid| uid != meta.uid());
    let group = options.group.filter(|&gid| gid != meta.gid());
    if owner.is_some() || group.is_some() {
        std::os::unix::fs::lchown(path, owner, group).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot give socket {} owner {} and group {}: {e}",
                    path.display(),
                    options.owner.map_or_else(|| "unchanged".to_owned(), |u| u.to_string()),
                    options.group.map_or_else(|| "unchanged".to_owned(), |g| g.to_string()),
                ),
            )
        })?;
    }
    if meta.permissions().mode() & 0o7777 != options.mode {
        if !guard.is_ours() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} was replaced while binding", path.display()),
            ));
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(options.mode)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot set the mode of socket {}: {e}", path.display()),
            )
        })?;
    }
    Ok(())
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

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn refuses_too_long_paths_with_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let fits = dir
            .path()
            .join("a".repeat(MAX_SOCKET_PATH - dir.path().as_os_str().len() - 1));
        assert_eq!(fits.as_os_str().len(), MAX_SOCKET_PATH);
        let (_listener, _guard) = bind_unix(&fits, DEFAULT_SOCKET_MODE).unwrap();
        UnixStream::connect(&fits).unwrap();
        let long = dir
            .path()
            .join("b".repeat(MAX_SOCKET_PATH - dir.path().as_os_str().len()));
        let err = bind_unix(&long, DEFAULT_SOCKET_MODE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let message = err.to_string();
        assert!(message.contains("too long"), "{message}");
        assert!(message.contains(&MAX_SOCKET_PATH.to_string()), "{message}");
        assert!(!long.exists());
    }

    #[test]
    fn names_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere");
        let err = bind_unix(missing.join("s.sock"), DEFAULT_SOCKET_MODE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
        assert!(err.to_string().contains("does not exist"), "{err}");
        // A regular file where a directory should be.
        let file = dir.path().join("file");
        std::fs::write(&file, b"keep").unwrap();
        let err = bind_unix(file.join("s.sock"), DEFAULT_SOCKET_MODE).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    }

    #[test]
    fn refuses_modes_beyond_permission_bits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let err = bind_unix(&path, 0o4755).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(!path.exists());
    }

    #[test]
    fn private_dir_binding_links_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sock");
        let listener = bind_via_private_dir(&path, &SocketOptions::new(0o640)).unwrap();
        assert_eq!(mode_of(&path), 0o640);
        let _client = UnixStream::connect(&path).unwrap();
        listener.accept().unwrap();
        // The private directory is gone; only the socket remains.
        let entries: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, [std::ffi::OsString::from("p.sock")]);
        // An existing file is never replaced.
        let err = bind_via_private_dir(&path, &SocketOptions::new(0o600)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(mode_of(&path), 0o640);
        let _client = UnixStream::connect(&path).unwrap();
        listener.accept().unwrap();
        let entries = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 1);
    }

    #[test]
    fn never_deletes_a_symlink_or_directory() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.sock");
        let (listener, guard) = bind_unix(&target, DEFAULT_SOCKET_MODE).unwrap();
        drop(listener);
        let _stale = guard.keep();
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = bind_unix(&link, DEFAULT_SOCKET_MODE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(std::fs::symlink_metadata(&target).unwrap().file_type().is_socket());
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(
            bind_unix(&sub, DEFAULT_SOCKET_MODE).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert!(sub.is_dir());
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
