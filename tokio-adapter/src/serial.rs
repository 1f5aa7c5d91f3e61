//! A serial line (a UART, a USB CDC device, a pseudo-terminal) as a Tokio
//! byte stream, to attach to a server ([`Server::serve_stream`](crate::Server::serve_stream))
//! or to connect a client over ([`ClientBuilder::connect_stream`](crate::ClientBuilder::connect_stream)).

use std::fs::File;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use microsocket_socket::SerialLine;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A serial line opened in raw mode ([`SerialLine::open`]), read and written
/// without blocking through Tokio's reactor.
///
/// The line hanging up (a USB device unplugged, the other side of a
/// pseudo-terminal closed) reads as the end of the stream.
///
/// ```no_run
/// # async fn f(server: microsocket_tokio::Server<impl microsocket_tokio::Handler>) -> std::io::Result<()> {
/// use microsocket_tokio::{socket::SerialLine, SerialStream};
/// let line: SerialLine = "/dev/ttyACM0@115200".parse().expect("a serial line");
/// // The device becomes one more connection of the bus.
/// server.serve_stream(SerialStream::open(&line)?);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SerialStream(AsyncFd<File>);

impl SerialStream {
    /// Opens `line` in raw mode.
    ///
    /// # Errors
    /// As [`SerialLine::open`]; or if the runtime cannot watch the device.
    pub fn open(line: &SerialLine) -> io::Result<Self> {
        // `AsyncFd::new` is deprecated in recent Tokio for types that may give
        // up their descriptor; a `File` keeps its own until dropped with it.
        #[allow(deprecated)]
        let fd = AsyncFd::new(line.open(true)?)?;
        Ok(Self(fd))
    }
}

/// A hang-up reads as the end of the stream: Linux reports it on a
/// pseudo-terminal as `EIO`.
fn hung_up_is_eof(result: io::Result<usize>) -> io::Result<usize> {
    match result {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => Ok(0),
        other => other,
    }
}

impl AsyncRead for SerialStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| hung_up_is_eof((&mut fd.get_ref()).read(unfilled))) {
                Ok(result) => {
                    buf.advance(result?);
                    return Poll::Ready(Ok(()));
                }
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for SerialStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard.try_io(|fd| (&mut fd.get_ref()).write(buf)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => {}
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
