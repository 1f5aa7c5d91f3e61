//! What the blocking drivers report: their error type and a server's
//! failure as they keep it, and reading from a transport.

use core::fmt;

use embedded_io::{Error as _, ErrorKind, Read};

use crate::{EncodeError, RequestError, SubscribeError, UnsubscribeError};

/// How many bytes of a server's failure message [`ServerFailure`] keeps.
pub const FAILURE_MESSAGE_CAPACITY: usize = 64;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A request's failure as the server reported it: its message, copied into fixed
/// storage (the first [`FAILURE_MESSAGE_CAPACITY`] bytes).
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerFailure {
    message: heapless::Vec<u8, FAILURE_MESSAGE_CAPACITY>,
    truncated: bool,
}

impl ServerFailure {
    pub(super) fn new(message: &[u8]) -> Self {
        let kept = &message[..message.len().min(FAILURE_MESSAGE_CAPACITY)];
        let mut stored = heapless::Vec::new();
        // `kept` is at most the capacity, so this cannot fail.
        let _ = stored.extend_from_slice(kept);
        Self {
            message: stored,
            truncated: kept.len() < message.len(),
        }
    }

    /// The server's message (its first [`FAILURE_MESSAGE_CAPACITY`] bytes).
    #[must_use]
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// Whether the message was longer than [`FAILURE_MESSAGE_CAPACITY`] and was cut.
    #[must_use]
    pub const fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl fmt::Debug for ServerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerFailure")
            .field("message", &crate::bytestr::ByteStr(&self.message))
            .field("truncated", &self.truncated)
            .finish()
    }
}

impl fmt::Display for ServerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.message.utf8_chunks() {
            f.write_str(chunk.valid())?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.truncated {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// An error of a blocking driver, over the transport's error type `E`.
///
/// [`Error::Io`] and [`Error::ConnectionClosed`] end the connection. The others
/// leave the driver usable: a failed request is answered, a refused command changed
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error<E> {
    /// The transport failed.
    Io(E),
    /// The peer closed the connection (a read returned no bytes, or a write took
    /// none or found the pipe broken). Pending requests were dropped; a client keeps its subscriptions.
    ConnectionClosed,
    /// The server failed the request.
    Failed(ServerFailure),
    /// The response was larger than the receive buffer (`RX`) and was skipped.
    ResponseTooLarge,
    /// The request could not be queued (too many in flight, or larger than `TX`).
    Request(RequestError),
    /// The subscription could not be made.
    Subscribe(SubscribeError),
    /// The unsubscription could not be made.
    Unsubscribe(UnsubscribeError),
    /// A frame could not be encoded: a publication larger than `TX`, or values that
    /// do not fit the buffer given to [`BlockingClient::request`](super::BlockingClient::request).
    Encode(EncodeError),
    /// The publication queue was full and this many publications were dropped since
    /// the last report. Reported once by [`BlockingClient::next_publication`](super::BlockingClient::next_publication);
    /// the next call carries on.
    PublicationsLost {
        /// How many were dropped.
        count: u32,
    },
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "transport error: {e:?}"),
            Self::ConnectionClosed => f.write_str("connection closed"),
            Self::Failed(failure) => write!(f, "request failed: {failure}"),
            Self::ResponseTooLarge => f.write_str("response larger than the receive buffer"),
            Self::Request(e) => write!(f, "{e}"),
            Self::Subscribe(e) => write!(f, "{e}"),
            Self::Unsubscribe(e) => write!(f, "{e}"),
            Self::Encode(e) => write!(f, "{e}"),
            Self::PublicationsLost { count } => write!(f, "{count} publications lost: the queue was full"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Request(e) => Some(e),
            Self::Subscribe(e) => Some(e),
            Self::Unsubscribe(e) => Some(e),
            Self::Encode(e) => Some(e),
            _ => None,
        }
    }
}

impl<E> From<RequestError> for Error<E> {
    fn from(e: RequestError) -> Self {
        Self::Request(e)
    }
}

impl<E> From<SubscribeError> for Error<E> {
    fn from(e: SubscribeError) -> Self {
        Self::Subscribe(e)
    }
}

impl<E> From<UnsubscribeError> for Error<E> {
    fn from(e: UnsubscribeError) -> Self {
        Self::Unsubscribe(e)
    }
}

impl<E> From<EncodeError> for Error<E> {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

// ---------------------------------------------------------------------------
// Transport helpers
// ---------------------------------------------------------------------------

/// Reads once into `buf`, retrying interrupted reads. `Ok(0)` is the end of stream.
pub(super) fn read_some<T: Read>(transport: &mut T, buf: &mut [u8]) -> Result<usize, Error<T::Error>> {
    loop {
        match transport.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
}
