//! Whether the peer of a connected socket has gone, without reading from it.

use std::os::fd::AsFd;

/// Whether the peer of `socket` has hung up (closed its end or shut down its
/// writing) or the socket failed, asked without reading and without waiting.
///
/// A server that has stopped reading a connection (it is short of memory,
/// say) still learns of a peer that left this way, even with unread bytes
/// in the socket, and releases the connection at once. Streams that are not
/// sockets report what `poll` reports for them (a pipe's writer closing, for
/// one).
///
/// ```
/// use std::os::unix::net::UnixStream;
///
/// let (ours, theirs) = UnixStream::pair().unwrap();
/// assert!(!microsocket_socket::peer_hung_up(&ours));
/// drop(theirs);
/// assert!(microsocket_socket::peer_hung_up(&ours));
/// ```
#[must_use]
pub fn peer_hung_up(socket: impl AsFd) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let gone = PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR;
    let mut fds = [PollFd::new(&socket, PollFlags::RDHUP)];
    match poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 })) {
        Ok(n) if n > 0 => fds[0].revents().intersects(gone),
        _ => false,
    }
}
