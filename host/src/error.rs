//! The error type of hosted clients and of a server's fallible calls, the
//! same in every adapter.

use std::io;

use bytes::Bytes;
use microsocket_core::{EncodeError, RequestError, SubscribeError, UnsubscribeError, SUBSCRIPTION_REFUSED};

/// What can go wrong with a request, a subscription or a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered the request with a failure (`#`).
    #[error("request failed: {}", String::from_utf8_lossy(message))]
    Failed {
        /// The server's human-readable message.
        message: Bytes,
        /// Further details the server gave, if any.
        details: Vec<Bytes>,
    },
    /// The connection is closed (by either side, or it broke) and the request
    /// or subscription cannot complete; nothing more will arrive on it.
    #[error("connection closed")]
    Closed,
    /// The connection was lost and the client is reconnecting (see
    /// [`ClientConfig::reconnect`](crate::ClientConfig::reconnect)): a
    /// subscription yields this once, when the connection is lost, and resumes
    /// after the reconnect. Publications made between the loss and the moment
    /// the new connection's subscription is in place may have been missed; a
    /// buffered topic's catch-up is replayed by the server on resubscribing.
    /// Not terminal.
    #[error("connection lost, reconnecting; publications may have been missed")]
    Reconnecting,
    /// No answer came within the request's deadline. Its slot is freed; a late
    /// answer is dropped.
    #[error("request timed out")]
    TimedOut,
    /// The connection already has as many requests in flight as it allows
    /// (including timed-out ones still waiting for their late answer); retry
    /// once some answers have arrived.
    #[error("too many requests in flight")]
    InflightFull,
    /// Every request slot is held by a request that timed out and whose
    /// answer never came: the server has stopped answering. A client set to
    /// reconnect drops the connection and connects again (the request fails
    /// with this; later ones see [`Error::Reconnecting`] until it is back);
    /// otherwise requests fail with this until late answers come or the
    /// client is closed.
    #[error("the server stopped answering: all {abandoned} request slots are held by timed-out requests")]
    Unresponsive {
        /// Timed-out requests still holding their slots.
        abandoned: usize,
    },
    /// The response was larger than the client accepts; it was discarded.
    #[error("response frame too large")]
    FrameTooLarge,
    /// A subscription fell behind: this many publications were dropped at this
    /// point of its stream. Not terminal: receiving carries on after it.
    #[error("subscriber fell behind and missed {missed} publications")]
    Lagged {
        /// How many publications were dropped.
        missed: u64,
    },
    /// A frame could not be encoded (too many arguments, an argument over
    /// 4 GiB).
    #[error("cannot encode frame: {0}")]
    Encode(#[from] EncodeError),
    /// A subscription could not be made (table full, pattern not well formed).
    #[error("cannot subscribe: {0}")]
    Subscribe(#[from] SubscribeError),
    /// The server refused the subscription (its access control, or the
    /// connection's subscription limit) and said so in answer to the
    /// subscription's barrier; nothing will be delivered for it.
    #[error("subscription refused: {}", String::from_utf8_lossy(reason))]
    SubscriptionRefused {
        /// Why, as the server put it (for example "not permitted").
        reason: Bytes,
    },
    /// An unsubscription could not be made.
    #[error("cannot unsubscribe: {0}")]
    Unsubscribe(#[from] UnsubscribeError),
    /// An I/O error on the connection (connecting, reading or writing).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// Whether the error ends the connection (every later request fails too,
    /// unless the client reconnects).
    #[must_use]
    pub fn is_connection_error(&self) -> bool {
        matches!(self, Self::Closed | Self::Io(_) | Self::Reconnecting)
    }
}

impl From<RequestError> for Error {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Encode(e) => Self::Encode(e),
            _ => Self::InflightFull,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Io(io) => return io::Error::new(io.kind(), e),
            Error::Closed | Error::Reconnecting => io::ErrorKind::ConnectionAborted,
            Error::TimedOut | Error::Unresponsive { .. } => io::ErrorKind::TimedOut,
            Error::InflightFull => io::ErrorKind::WouldBlock,
            Error::Encode(_) | Error::Subscribe(_) | Error::Unsubscribe(_) => io::ErrorKind::InvalidInput,
            Error::SubscriptionRefused { .. } => io::ErrorKind::PermissionDenied,
            Error::FrameTooLarge => io::ErrorKind::InvalidData,
            Error::Failed { .. } | Error::Lagged { .. } => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Whether one more request may be sent on a connection with `in_flight`
/// requests of which `abandoned` timed out and still hold their slots, at most
/// `max` in flight: [`Error::InflightFull`] when full, [`Error::Unresponsive`]
/// when every slot is held by a timed-out request.
///
/// # Errors
/// As above.
pub fn check_in_flight(in_flight: usize, abandoned: usize, max: usize) -> Result<()> {
    if in_flight < max {
        Ok(())
    } else if abandoned >= in_flight {
        Err(Error::Unresponsive { abandoned })
    } else {
        Err(Error::InflightFull)
    }
}

/// What the answer to a subscription's barrier (the empty command sent right
/// after `+` or `*`) says about the subscription, in every client:
///
/// - `)`: it is in place;
/// - `#` [`SUBSCRIPTION_REFUSED`]: the server refused it
///   ([`Error::SubscriptionRefused`], with the server's reason);
/// - any other `#`: it is in place too (an IPC::MicroSocket 0.03 server hands
///   the empty command to its application, which may well fail it, after the
///   subscription was made);
/// - anything else (closed, timed out) is the error it is.
///
/// # Errors
/// As above.
pub fn subscription_confirmed<T>(barrier_answer: Result<T>) -> Result<()> {
    match barrier_answer {
        Ok(_) => Ok(()),
        Err(Error::Failed { message, details }) if message == SUBSCRIPTION_REFUSED => Err(Error::SubscriptionRefused {
            reason: details.into_iter().next().unwrap_or_default(),
        }),
        Err(Error::Failed { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_keep_their_meaning() {
        assert!(matches!(Error::from(RequestError::InflightFull), Error::InflightFull));
        let encode = RequestError::Encode(EncodeError::TooManyArguments { count: 300, max: 253 });
        assert!(matches!(Error::from(encode), Error::Encode(_)));
        let io: io::Error = Error::Closed.into();
        assert_eq!(io.kind(), io::ErrorKind::ConnectionAborted);
        assert!(Error::Reconnecting.is_connection_error() && !Error::TimedOut.is_connection_error());
    }

    #[test]
    fn a_barrier_answer_confirms_or_refuses() {
        let failed = |message: &'static [u8], details: Vec<Bytes>| -> Result<()> {
            Err(Error::Failed {
                message: Bytes::from_static(message),
                details,
            })
        };
        assert!(subscription_confirmed(Ok(())).is_ok());
        assert!(subscription_confirmed(failed(b"no such command", vec![])).is_ok());
        match subscription_confirmed(failed(SUBSCRIPTION_REFUSED, vec![Bytes::from_static(b"not permitted")])) {
            Err(Error::SubscriptionRefused { reason }) => assert_eq!(reason, "not permitted"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            subscription_confirmed::<()>(Err(Error::Closed)),
            Err(Error::Closed)
        ));
    }
}
