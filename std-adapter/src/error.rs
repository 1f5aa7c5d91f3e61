//! The error type of the client and the server's fallible calls.

use std::io;

use bytes::Bytes;
use microsocket_core::{EncodeError, RequestError, SubscribeError, UnsubscribeError};

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
    /// The connection is closed (by either side, or it broke); nothing more will
    /// arrive on it.
    #[error("connection closed")]
    Closed,
    /// No answer within the timeout. The request's slot is freed; a late answer
    /// is dropped.
    #[error("timed out")]
    TimedOut,
    /// Every request slot of the connection is in use; retry once some answers
    /// have arrived.
    #[error("too many requests in flight")]
    InflightFull,
    /// The response was larger than the client accepts and was discarded.
    #[error("response frame too large")]
    FrameTooLarge,
    /// A subscription's queue was full: this many publications were dropped at
    /// this point of the stream. Receiving carries on after it.
    #[error("subscriber fell behind and missed {missed} publications")]
    Lagged {
        /// How many publications were dropped.
        missed: u64,
    },
    /// A frame could not be encoded (too many arguments, an argument over 4 GiB).
    #[error("cannot encode frame: {0}")]
    Encode(#[from] EncodeError),
    /// A subscription could not be made (table full, pattern not well formed).
    #[error("cannot subscribe: {0}")]
    Subscribe(#[from] SubscribeError),
    /// An unsubscription could not be made.
    #[error("cannot unsubscribe: {0}")]
    Unsubscribe(#[from] UnsubscribeError),
    /// An I/O error on the socket.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
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
            Error::Closed => io::ErrorKind::ConnectionAborted,
            Error::TimedOut => io::ErrorKind::TimedOut,
            Error::InflightFull => io::ErrorKind::WouldBlock,
            Error::Encode(_) | Error::Subscribe(_) | Error::Unsubscribe(_) => io::ErrorKind::InvalidInput,
            Error::FrameTooLarge | Error::Failed { .. } | Error::Lagged { .. } => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// A convenient alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
