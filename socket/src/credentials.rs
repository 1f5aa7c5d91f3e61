//! Who is at the other end of a UNIX socket.

use std::io;
use std::os::fd::AsFd;

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

/// The effective user id of this process: a peer with the same uid runs as
/// the same user.
#[must_use]
pub fn own_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// This process's own credentials: what a peer in the same process would
/// show.
#[must_use]
pub fn own_credentials() -> PeerCredentials {
    PeerCredentials {
        pid: std::process::id(),
        uid: own_uid(),
        gid: rustix::process::getegid().as_raw(),
    }
}

/// The credentials of the process at the other end of `stream` (`SO_PEERCRED`),
/// a connected UNIX stream socket of any runtime (std, Tokio, ...).
///
/// # Errors
/// The `getsockopt` error, or [`io::ErrorKind::Unsupported`] where the platform has
/// no `SO_PEERCRED`.
pub fn peer_credentials(stream: impl AsFd) -> io::Result<PeerCredentials> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let cred = rustix::net::sockopt::socket_peercred(&stream)?;
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
