//! Blocking drivers over [`embedded_io`] 0.6 (feature `embedded-io`): a client and a
//! server connection over any `T: embedded_io::Read + embedded_io::Write`, such as a
//! UART, a USB CDC endpoint or a socket; and their async twins over
//! `embedded_io_async` (feature `embedded-io-async`), `AsyncClient` and
//! `AsyncServer`, with the same operations.
//!
//! Both drivers wrap the buffer-owning machines ([`crate::Client`] and
//! [`crate::ServerConnection`]) and own the transport, so they need no allocator: all
//! storage is fixed by const generics.
//!
//! # Client
//!
//! [`BlockingClient::call`] writes a request, reads until its answer arrives and
//! hands the values to a closure, borrowed from the receive buffer (no copy);
//! [`BlockingClient::request`] copies them into a buffer the caller gives instead.
//! A failure from the server is [`Error::Failed`], with the message copied into
//! fixed storage.
//!
//! Publications that arrive while the client waits for an answer are not lost: they
//! go to a fixed queue of `QUEUE` bytes, from which [`BlockingClient::next_publication`]
//! takes them first, or to a handler given to [`BlockingClient::call_with`]. When the
//! queue is full, further publications are counted and the next
//! [`BlockingClient::next_publication`] reports them as [`Error::PublicationsLost`].
//!
//! [`BlockingClient::subscribe`] returns once the server has the subscription: it
//! sends the empty-command barrier after `+` and waits for its answer (see
//! `docs/PROTOCOL.md`), so no publication made afterwards is missed.
//!
//! ```
//! # // Not under Miri, which has no send or recv on UNIX sockets.
//! # #[cfg(all(unix, not(miri)))] {
//! # use std::os::unix::net::UnixStream;
//! # struct Io(UnixStream);
//! # impl embedded_io::ErrorType for Io { type Error = std::io::Error; }
//! # impl embedded_io::Read for Io {
//! #     fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> { std::io::Read::read(&mut self.0, b) }
//! # }
//! # impl embedded_io::Write for Io {
//! #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { std::io::Write::write(&mut self.0, b) }
//! #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//! # }
//! use microsocket_core::embedded::{BlockingClient, BlockingServer, Error};
//! use microsocket_core::ServerEvent;
//!
//! let (a, b) = UnixStream::pair().unwrap();
//! // A server connection in another thread: ECHO answers with its arguments.
//! let server = std::thread::spawn(move || {
//!     let mut server: BlockingServer<Io> = BlockingServer::new(Io(b));
//!     server.run(&mut |event, outbox| match event {
//!         ServerEvent::Request { tag, command: b"ECHO", args } => outbox.respond(tag, args).map(drop),
//!         ServerEvent::Request { tag, .. } => outbox.fail(tag, b"no such command", [b""; 0]).map(drop),
//!         _ => Ok(()),
//!     })
//! });
//!
//! let mut client: BlockingClient<Io> = BlockingClient::new(Io(a));
//! let n = client.call(b"ECHO", [&b"hi"[..], b"there"], |values| values.count()).unwrap();
//! assert_eq!(n, 2);
//! match client.call(b"NOPE", [b""; 0], |_| ()) {
//!     Err(Error::Failed(failure)) => assert_eq!(failure.message(), b"no such command"),
//!     other => panic!("{other:?}"),
//! }
//! drop(client);
//! server.join().unwrap().unwrap();
//! # }
//! ```
//!
//! # Server
//!
//! [`BlockingServer`] runs one connection. [`BlockingServer::poll`] reads once and
//! hands every complete event to a handler, a closure
//! `FnMut(ServerEvent<'_>, &mut Outbox<'_, ..>) -> Result<(), EncodeError>` that
//! answers requests and may publish through the [`Outbox`](crate::Outbox); subscriptions,
//! unsubscriptions, the empty command and malformed frames are handled by the
//! machine and shown to the handler for information. [`BlockingServer::run`] polls
//! until the client closes the connection. Before each event the driver writes out
//! what earlier events queued, so each event has the whole transmit buffer.
//!
//! # Blocking and flow control
//!
//! Each driver either writes or reads at a time. Over a transport with flow
//! control (a socket, a pipe, a UART with hardware handshake), a peer that writes
//! much while this side writes too can leave both blocked on full buffers: a
//! client that sends a request while the server still writes the skipped rest of
//! an oversized answer or a burst of publications, for instance. Keep the
//! transport's buffering larger than what one side sends unprompted, or use the
//! machines directly with non-blocking I/O (see the `hand_loop` example).
//!
//! # Transport errors
//!
//! A read or write that fails with [`embedded_io::ErrorKind::Interrupted`] is
//! retried; any other transport error is returned as [`Error::Io`]. A read of zero
//! bytes is the end of the stream ([`Error::ConnectionClosed`]), and so is a write
//! that takes no bytes or fails with [`embedded_io::ErrorKind::BrokenPipe`].

/// Writes out everything the machine queued, then flushes the transport if anything
/// was written. Returns early from the enclosing function on error.
macro_rules! flush_machine {
    ($machine:expr, $transport:expr) => {{
        let mut wrote = false;
        while let Some(bytes) = $machine.poll_transmit() {
            match $transport.write(bytes) {
                Ok(0) => return Err(Error::ConnectionClosed),
                Ok(n) => {
                    $machine.advance_transmit(n);
                    wrote = true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::BrokenPipe => return Err(Error::ConnectionClosed),
                Err(e) => return Err(Error::Io(e)),
            }
        }
        if wrote {
            $transport.flush().map_err(Error::Io)?;
        }
        Ok(())
    }};
}

#[cfg(feature = "embedded-io-async")]
mod asynch;
mod client;
mod client_state;
mod error;
mod queue;
mod server;
#[cfg(test)]
mod tests;

#[cfg(feature = "embedded-io-async")]
pub use asynch::{AsyncClient, AsyncServer};
pub use client::*;
pub use client_state::Publication;
pub use error::{Error, ServerFailure, FAILURE_MESSAGE_CAPACITY};
pub use server::*;
