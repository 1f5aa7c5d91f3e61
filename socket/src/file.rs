//! Socket files: binding a path safely, and removing only our own file.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

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
/// use microsocket_socket::SocketOptions;
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
pub(crate) fn bind_via_private_dir(path: &Path, options: &SocketOptions) -> io::Result<UnixListener> {
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
