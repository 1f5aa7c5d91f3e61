//! The client's error type.

use bytes::Bytes;

/// What can go wrong with a request or a subscription.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered the request with a failure (`#`).
    #[error("request failed: {}", String::from_utf8_lossy(message))]
    Failed {
        /// The server's human-readable message.
        message: Bytes,
        /// Further details the server sent, if any.
        details: Vec<Bytes>,
    },
    /// The connection is closed (or was lost) and the request or subscription
    /// cannot complete.
    #[error("connection closed")]
    Closed,
    /// The connection was lost and the client is reconnecting: a subscription
    /// stream yields this once, when the connection is lost, and resumes after
    /// the reconnect. Publications made between the loss and the moment the new
    /// connection's subscription is in place may have been missed (the next
    /// item is the first publication received on the new connection); a
    /// buffered topic's catch-up is replayed by the server on resubscribing.
    /// Not terminal.
    #[error("connection lost, reconnecting; publications may have been missed")]
    Reconnecting,
    /// No answer came within the request's deadline.
    #[error("request timed out")]
    TimedOut,
    /// The connection already has as many requests in flight as it allows
    /// (including timed-out ones still waiting for their late answer).
    #[error("too many requests in flight")]
    InflightFull,
    /// The response was larger than the client accepts; it was discarded.
    #[error("response frame too large")]
    FrameTooLarge,
    /// A subscription stream fell behind and this many publications were dropped
    /// for it. Not terminal: the stream goes on with the next publication.
    #[error("subscriber fell behind: {0} publications missed")]
    Lagged(u64),
    /// An I/O error on the connection (connecting, reading or writing).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A request could not be encoded (too many or too long arguments).
    #[error(transparent)]
    Request(#[from] microsocket_core::RequestError),
    /// A subscription could not be made (invalid pattern, full table).
    #[error(transparent)]
    Subscribe(#[from] microsocket_core::SubscribeError),
}

impl Error {
    /// Whether the error ends the connection (every later request fails too,
    /// unless the client reconnects).
    #[must_use]
    pub fn is_connection_error(&self) -> bool {
        matches!(self, Self::Closed | Self::Io(_) | Self::Reconnecting)
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        use std::io::ErrorKind;
        match e {
            Error::Io(e) => e,
            Error::Closed | Error::Reconnecting => Self::new(ErrorKind::ConnectionAborted, e),
            Error::TimedOut => Self::new(ErrorKind::TimedOut, e),
            Error::InflightFull => Self::new(ErrorKind::WouldBlock, e),
            Error::FrameTooLarge | Error::Request(_) | Error::Subscribe(_) => Self::new(ErrorKind::InvalidData, e),
            Error::Failed { .. } | Error::Lagged(_) => Self::other(e),
        }
    }
}
