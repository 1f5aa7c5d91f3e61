//! Error types, one per operation, grouped by who can act on them.
//!
//! - Local capacity errors (`InflightFull`, `BufferTooSmall`, `SubscriptionsFull`, ...)
//!   are retryable once the caller has drained something.
//! - Caller misuse (`TooManyArguments`, `ArgumentTooLong`, `InvalidPattern`, ...) will
//!   fail the same way every time.
//!
//! Nothing a peer sends is an error here: the wire format cannot be corrupt (see
//! [`crate::frame`]), so bad peer input surfaces as events.

use core::fmt;

/// Why a frame could not be encoded. Encoding never writes a partial frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// More arguments than a frame holds (255 in all: a request's tag and
    /// command leave 253 for its arguments).
    TooManyArguments {
        /// How many arguments were given.
        count: usize,
        /// How many fit.
        max: usize,
    },
    /// An argument longer than `u32::MAX` bytes.
    ArgumentTooLong,
    /// The output buffer cannot hold the frame now; nothing was written. Flush
    /// what it holds and try again.
    BufferTooSmall {
        /// Bytes the whole frame needs.
        required: usize,
        /// Bytes the buffer had free.
        available: usize,
    },
    /// The frame is larger than the output buffer could ever hold; nothing was
    /// written, and retrying cannot help.
    FrameTooLarge {
        /// Bytes the whole frame needs.
        required: usize,
        /// Bytes the buffer holds at most.
        capacity: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyArguments { count, max } => {
                write!(f, "{count} arguments, at most {max} fit in a frame")
            }
            Self::ArgumentTooLong => f.write_str("argument longer than 4 GiB"),
            Self::BufferTooSmall { required, available } => {
                write!(f, "frame needs {required} bytes, buffer has {available} free")
            }
            Self::FrameTooLarge { required, capacity } => {
                write!(f, "frame needs {required} bytes, the buffer holds at most {capacity}")
            }
        }
    }
}

impl core::error::Error for EncodeError {}

/// Why a request could not be queued. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RequestError {
    /// Every request slot is pending (or reserved by a cancelled request still
    /// waiting for its late response). Retry after a response arrives.
    InflightFull,
    /// The request frame could not be encoded.
    Encode(EncodeError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InflightFull => f.write_str("too many requests in flight"),
            Self::Encode(e) => write!(f, "cannot encode request: {e}"),
        }
    }
}

impl core::error::Error for RequestError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Encode(e) => Some(e),
            Self::InflightFull => None,
        }
    }
}

impl From<EncodeError> for RequestError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

/// Why a subscription could not be made. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SubscribeError {
    /// The subscription table has no free entry.
    SubscriptionsFull,
    /// The subscription table has no room left for the topic's bytes.
    TopicStorageFull,
    /// The pattern is not well formed.
    InvalidPattern(PatternError),
    /// The subscription frame could not be encoded.
    Encode(EncodeError),
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SubscriptionsFull => f.write_str("too many subscriptions"),
            Self::TopicStorageFull => f.write_str("no room left to store the topic"),
            Self::InvalidPattern(e) => write!(f, "invalid pattern: {e}"),
            Self::Encode(e) => write!(f, "cannot encode subscription: {e}"),
        }
    }
}

impl core::error::Error for SubscribeError {}

impl From<EncodeError> for SubscribeError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}

impl From<PatternError> for SubscribeError {
    fn from(e: PatternError) -> Self {
        Self::InvalidPattern(e)
    }
}

/// Why a topic pattern is not well formed (see [`crate::Pattern`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PatternError {
    /// A token is empty: the pattern is empty, starts or ends with `.`, or has `..`.
    EmptyToken,
    /// A `>` token that is not the last token.
    TailWildcardNotLast,
    /// A token that mixes a wildcard (`*` or `>`) with other bytes.
    MixedWildcard,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EmptyToken => "empty token",
            Self::TailWildcardNotLast => "`>` is not the last token",
            Self::MixedWildcard => "a token mixes a wildcard with other bytes",
        })
    }
}

impl core::error::Error for PatternError {}

/// Why an unsubscription could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum UnsubscribeError {
    /// The id names no current subscription (it was already removed).
    UnknownSubscription,
    /// The `-` frame could not be encoded; the subscription is unchanged.
    Encode(EncodeError),
}

impl fmt::Display for UnsubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownSubscription => f.write_str("no such subscription"),
            Self::Encode(e) => write!(f, "cannot encode unsubscription: {e}"),
        }
    }
}

impl core::error::Error for UnsubscribeError {}

impl From<EncodeError> for UnsubscribeError {
    fn from(e: EncodeError) -> Self {
        Self::Encode(e)
    }
}
