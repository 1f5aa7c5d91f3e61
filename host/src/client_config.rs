//! A client's settings: one set of names and defaults for every adapter.

use std::time::Duration;

/// The default request deadline.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(25);
/// The default largest frame a client accepts (16 MiB).
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;
/// How long a client polls for answers before its thread or task may sleep,
/// unless set (see [`ClientConfig::spin_before_sleep`]).
pub const DEFAULT_CLIENT_SPIN: Duration = Duration::from_micros(50);
/// Publications each subscription queues, unless set, before it drops them and
/// reports the lag: enough that a reader that keeps up never loses one to a
/// burst the connection delivers faster than it is read.
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 1 << 16;
/// Bytes of publications each subscription queues, unless set, before it drops
/// them and reports the lag (one publication is always taken, whatever its
/// size).
pub const DEFAULT_SUBSCRIPTION_MAX_BYTES: usize = 8 << 20;
/// The default [`ClientConfig::max_queued_bytes`]: 32 MiB.
pub const DEFAULT_CLIENT_MAX_QUEUED_BYTES: usize = 32 << 20;
/// Requests in flight on one client connection, unless set.
pub const DEFAULT_CLIENT_MAX_IN_FLIGHT: usize = 256;

/// How a client reconnects after losing its connection: requests in flight
/// fail, subscriptions report the gap and carry on once subscribed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// The wait before the first attempt; it doubles after each failure.
    pub initial_delay: Duration,
    /// The longest wait between attempts.
    pub max_delay: Duration,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// The wait before attempt `attempt` (0 for the first): the initial delay
    /// doubled per failure, at most [`ReconnectPolicy::max_delay`].
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// Whether to give up after `failures` failed attempts in a row.
    #[must_use]
    pub fn gives_up_after(&self, failures: u32) -> bool {
        self.max_attempts.is_some_and(|max| failures >= max)
    }
}

/// Settings of a client connection. Set fields directly or chain the setters
/// of the same names:
///
/// ```
/// use microsocket_host::ClientConfig;
/// use std::time::Duration;
///
/// let config = ClientConfig::default().request_timeout(Some(Duration::from_secs(5))).subscription_capacity(64);
/// assert_eq!(config.subscription_capacity, 64);
/// assert_eq!(config.max_frame, 16 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// How long a request waits for its answer unless told otherwise (`None`:
    /// forever; default [`DEFAULT_REQUEST_TIMEOUT`]). A timed-out request frees
    /// its slot; its tag stays reserved until the late answer, which is
    /// dropped.
    pub request_timeout: Option<Duration>,
    /// Requests in flight at once (default
    /// [`DEFAULT_CLIENT_MAX_IN_FLIGHT`]; at most the adapter's tag table);
    /// past it, requests fail at once.
    pub max_in_flight: usize,
    /// The largest frame accepted from the server (default
    /// [`DEFAULT_MAX_FRAME`]); a larger answer fails its request, a larger
    /// publication is skipped, neither is buffered.
    pub max_frame: usize,
    /// Publications each subscription queues before it drops them and
    /// reports the lag (default [`DEFAULT_SUBSCRIPTION_CAPACITY`]).
    pub subscription_capacity: usize,
    /// Bytes of publications each subscription queues before it drops them
    /// and reports the lag (default [`DEFAULT_SUBSCRIPTION_MAX_BYTES`]; one is
    /// always taken): what a subscriber that stops reading can make the
    /// client hold.
    pub subscription_max_bytes: usize,
    /// Bytes of publications queued for the application across all of the
    /// connection's subscriptions (default [`DEFAULT_CLIENT_MAX_QUEUED_BYTES`]).
    /// Past it, a subscription with something queued drops new publications
    /// and reports them as lag, as past its own bound; one with nothing
    /// queued still takes one.
    pub max_queued_bytes: usize,
    /// How long the client keeps polling for answers, yielding the CPU,
    /// before its thread or task may sleep, while several answers are due
    /// (default [`DEFAULT_CLIENT_SPIN`]; zero: never). An answer arriving
    /// within the window costs no wake-up.
    pub spin_before_sleep: Duration,
    /// Whether and how to reconnect after the connection is lost (default:
    /// never, the client closes). Adapters that cannot reconnect ignore it.
    pub reconnect: Option<ReconnectPolicy>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            max_in_flight: DEFAULT_CLIENT_MAX_IN_FLIGHT,
            max_frame: DEFAULT_MAX_FRAME,
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
            subscription_max_bytes: DEFAULT_SUBSCRIPTION_MAX_BYTES,
            max_queued_bytes: DEFAULT_CLIENT_MAX_QUEUED_BYTES,
            spin_before_sleep: DEFAULT_CLIENT_SPIN,
            reconnect: None,
        }
    }
}

impl ClientConfig {
    /// Sets [`ClientConfig::max_queued_bytes`].
    #[must_use]
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes;
        self
    }

    /// Sets [`ClientConfig::request_timeout`].
    #[must_use]
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`ClientConfig::max_in_flight`] (at least 1).
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Sets [`ClientConfig::max_frame`].
    #[must_use]
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Sets [`ClientConfig::subscription_capacity`] (at least 1).
    #[must_use]
    pub fn subscription_capacity(mut self, n: usize) -> Self {
        self.subscription_capacity = n.max(1);
        self
    }

    /// Sets [`ClientConfig::subscription_max_bytes`].
    #[must_use]
    pub fn subscription_max_bytes(mut self, bytes: usize) -> Self {
        self.subscription_max_bytes = bytes;
        self
    }

    /// Sets [`ClientConfig::spin_before_sleep`].
    #[must_use]
    pub fn spin_before_sleep(mut self, window: Duration) -> Self {
        self.spin_before_sleep = window;
        self
    }

    /// Sets [`ClientConfig::reconnect`].
    #[must_use]
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_double_up_to_the_maximum() {
        let p = ReconnectPolicy {
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_attempts: Some(3),
        };
        let delays: Vec<_> = (0..5).map(|a| p.delay(a).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 50, 50]);
        assert_eq!(p.delay(u32::MAX), Duration::from_millis(50));
        assert!(!p.gives_up_after(2) && p.gives_up_after(3));
    }
}
