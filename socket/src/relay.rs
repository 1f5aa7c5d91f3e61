//! TLS for blocking servers and clients: the TLS session runs on a thread of
//! its own between the TCP connection and one end of a socket pair, so the
//! adapter reads and writes plaintext on the other end from as many threads
//! as it likes, exactly as on a UNIX socket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

/// How long a peer may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Completes the handshake of `tls` over `tcp` (blocking), within
/// [`HANDSHAKE_TIMEOUT`].
///
/// # Errors
/// The TLS error (a bad certificate, a wrong name, a peer that does not speak
/// TLS), or [`io::ErrorKind::TimedOut`].
pub fn handshake(tls: &mut rustls::Connection, tcp: &mut TcpStream) -> io::Result<()> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "TLS handshake not finished in time");
    // One read or write at a time, each bounded by what is left, so a peer
    // that trickles bytes cannot stretch the handshake past the deadline.
    while tls.is_handshaking() || tls.wants_write() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        let step = if tls.wants_write() {
            tcp.set_write_timeout(Some(left))?;
            tls.write_tls(tcp).map(drop)
        } else if !tls.is_handshaking() {
            break;
        } else {
            tcp.set_read_timeout(Some(left))?;
            match tls.read_tls(tcp) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed during the TLS handshake",
                )),
                Ok(_) => tls.process_new_packets().map(drop).map_err(|e| {
                    // Tell the peer why, where rustls has an alert for it.
                    let _ = tls.write_tls(tcp);
                    io::Error::new(io::ErrorKind::InvalidData, e)
                }),
                Err(e) => Err(e),
            }
        };
        match step {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(timed_out())
            }
            Err(e) => return Err(e),
        }
    }
    tcp.set_read_timeout(None)?;
    tcp.set_write_timeout(None)?;
    Ok(())
}

/// Carries bytes between `plain` (plaintext) and `tcp` (TLS) until `plain`
/// ends: the peer's close or end of stream is passed on as the end of
/// `plain`'s input, the end of `plain`'s output as a `close_notify`, after
/// which the relay ends. Once `plain` takes no more input (the adapter shut
/// its reading side, as a server does on shutdown), what the peer sends is
/// discarded while the adapter's last answers still go out. Holds at most
/// one TLS record's worth of plaintext in each direction: a side that does
/// not read stops the other.
///
/// # Errors
/// A TLS protocol error or an I/O error on either side (then both are
/// closed).
pub fn relay(mut tls: rustls::Connection, tcp: TcpStream, plain: UnixStream) -> io::Result<()> {
    tcp.set_nonblocking(true)?;
    plain.set_nonblocking(true)?;
    let result = Relay::default().run(&mut tls, &tcp, &plain);
    let _ = tcp.shutdown(Shutdown::Both);
    let _ = plain.shutdown(Shutdown::Both);
    result
}

/// Where a relay stands.
#[derive(Default)]
struct Relay {
    /// Plaintext from the peer, not yet written to `plain`.
    inbound: Vec<u8>,
    /// How much of `inbound` was written.
    inbound_at: usize,
    /// The peer sent `close_notify` or its TCP stream ended.
    peer_done: bool,
    /// `plain`'s write side was shut after the peer's end.
    plain_shut: bool,
    /// `plain` reached its end (the adapter closed its side).
    plain_done: bool,
}

fn blocked(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Relay {
    fn run(&mut self, tls: &mut rustls::Connection, mut tcp: &TcpStream, mut plain: &UnixStream) -> io::Result<()> {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            // TCP → TLS, unless rustls holds all the plaintext it will.
            if !self.peer_done && tls.wants_read() {
                match tls.read_tls(&mut tcp) {
                    Ok(0) => self.peer_done = true,
                    Ok(_) => {
                        if let Err(e) = tls.process_new_packets() {
                            let _ = tls.write_tls(&mut tcp);
                            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                        }
                    }
                    Err(e) if blocked(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            // TLS → plaintext out, until `plain` is full or rustls is empty.
            loop {
                if self.inbound_at == self.inbound.len() {
                    self.inbound.clear();
                    self.inbound_at = 0;
                    match tls.reader().read(&mut buf) {
                        Ok(0) => self.peer_done = true,
                        Ok(n) => self.inbound.extend_from_slice(&buf[..n]),
                        Err(e) if blocked(&e) => {}
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => self.peer_done = true,
                        Err(e) => return Err(e),
                    }
                    if self.inbound.is_empty() {
                        break;
                    }
                }
                match plain.write(&self.inbound[self.inbound_at..]) {
                    Ok(n) => self.inbound_at += n,
                    Err(e) if blocked(&e) => break,
                    // The adapter reads no more: drop what the peer sends,
                    // keep sending what the adapter still writes.
                    Err(_) => {
                        self.inbound_at = self.inbound.len();
                        self.plain_shut = true;
                    }
                }
            }
            if self.peer_done && self.inbound_at == self.inbound.len() && !self.plain_shut {
                let _ = plain.shutdown(Shutdown::Write);
                self.plain_shut = true;
            }
            // Plaintext in → TLS, only once TLS has sent what it held.
            if !self.plain_done && !tls.wants_write() {
                match plain.read(&mut buf) {
                    Ok(0) => {
                        self.plain_done = true;
                        tls.send_close_notify();
                    }
                    Ok(n) => tls.writer().write_all(&buf[..n])?,
                    Err(e) if blocked(&e) => {}
                    Err(_) => {
                        self.plain_done = true;
                        tls.send_close_notify();
                    }
                }
            }
            // TLS → TCP.
            while tls.wants_write() {
                match tls.write_tls(&mut tcp) {
                    Ok(_) => {}
                    Err(e) if blocked(&e) => break,
                    // The peer is gone: what it did not take is lost with it.
                    Err(_) => return Ok(()),
                }
            }
            // The adapter is done: nothing the peer sends has anywhere to go.
            if self.plain_done && !tls.wants_write() {
                let _ = tcp.shutdown(Shutdown::Write);
                return Ok(());
            }
            self.wait(tls, tcp, plain)?;
        }
    }

    /// Sleeps until one of the steps above can make progress.
    fn wait(&self, tls: &rustls::Connection, tcp: &TcpStream, plain: &UnixStream) -> io::Result<()> {
        let mut tcp_wants = PollFlags::empty();
        if !self.peer_done && tls.wants_read() {
            tcp_wants |= PollFlags::IN;
        }
        if tls.wants_write() {
            tcp_wants |= PollFlags::OUT;
        }
        let mut plain_wants = PollFlags::empty();
        if !self.plain_done && !tls.wants_write() {
            plain_wants |= PollFlags::IN;
        }
        if self.inbound_at < self.inbound.len() {
            plain_wants |= PollFlags::OUT;
        }
        // Only sockets with something to wait for: one that hung up reports
        // it even when asked for nothing, and poll would never sleep.
        let mut fds = Vec::with_capacity(2);
        if !tcp_wants.is_empty() {
            fds.push(PollFd::new(tcp, tcp_wants));
        }
        if !plain_wants.is_empty() {
            fds.push(PollFd::new(plain, plain_wants));
        }
        if fds.is_empty() {
            return Err(io::Error::other("TLS relay has nothing left to wait for"));
        }
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
