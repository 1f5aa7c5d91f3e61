//! The byte bound on a connection's unsent output, and what happens past it.

use crate::config::{ServerConfig, SlowConsumer};

/// What to do with a publication due to a connection (see [`QueueBound::admit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Queue it.
    Queue,
    /// Drop it for this connection and count it.
    Drop,
    /// Drop it and close the connection.
    Disconnect,
}

/// The byte bound on a connection's unsent bytes and the slow-consumer policy:
/// the one rule both servers apply to every publication they queue.
///
/// ```
/// use microsocket_host::{Admission, QueueBound, ServerConfig};
///
/// let bound = QueueBound::new(&ServerConfig::default().max_queued_bytes(100));
/// assert_eq!(bound.admit(0, 60), Admission::Queue);
/// assert_eq!(bound.admit(60, 40), Admission::Queue);
/// assert_eq!(bound.admit(60, 41), Admission::Drop);
/// // A connection with nothing queued takes one publication of any size.
/// assert_eq!(bound.admit(0, 1000), Admission::Queue);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBound {
    max_queued_bytes: usize,
    policy: SlowConsumer,
}

impl QueueBound {
    /// The bound and policy of `config`.
    #[must_use]
    pub fn new(config: &ServerConfig) -> Self {
        Self {
            max_queued_bytes: config.max_queued_bytes,
            policy: config.slow_consumer,
        }
    }

    /// A bound of `max_queued_bytes` that drops what would pass it, whatever
    /// the server's slow-consumer policy: for a reader in the server's own
    /// process (a tap), which has no connection to close.
    #[must_use]
    pub const fn dropping(max_queued_bytes: usize) -> Self {
        Self {
            max_queued_bytes,
            policy: SlowConsumer::DropAndCount,
        }
    }

    /// The most bytes a connection may have unsent before publications to it
    /// are refused.
    #[must_use]
    #[inline]
    pub fn max_queued_bytes(&self) -> usize {
        self.max_queued_bytes
    }

    /// Whether a publication of `len` bytes may join `queued` unsent bytes
    /// (answers and publications alike). A connection with nothing unsent
    /// always takes one, whatever its size (frames are bounded by the frame
    /// limit), so a publication larger than the bound still reaches readers
    /// that keep up rather than vanishing.
    #[must_use]
    #[inline]
    pub fn admit(&self, queued: usize, len: usize) -> Admission {
        if queued == 0 || queued.saturating_add(len) <= self.max_queued_bytes {
            Admission::Queue
        } else if self.policy == SlowConsumer::Disconnect {
            Admission::Disconnect
        } else {
            Admission::Drop
        }
    }

    /// Whether a connection with `queued` unsent bytes is over its bound: its
    /// requests are not read until it drains (their answers would only add to
    /// them, and answers are never dropped).
    #[must_use]
    #[inline]
    pub fn is_full(&self, queued: usize) -> bool {
        queued > self.max_queued_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[inline]
    fn disconnect_policy_disconnects_past_the_bound() {
        let bound = QueueBound::new(
            &ServerConfig::default()
                .max_queued_bytes(10)
                .slow_consumer(SlowConsumer::Disconnect),
        );
        assert_eq!(bound.admit(5, 5), Admission::Queue);
        assert_eq!(bound.admit(5, 6), Admission::Disconnect);
        assert_eq!(bound.admit(usize::MAX, 1), Admission::Disconnect);
        assert!(bound.is_full(11) && !bound.is_full(10));
    }
}
