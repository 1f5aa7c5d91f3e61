//! A server's rules for a connection's new subscription, and what its
//! handler is told about subscriptions, the same in every adapter.

use microsocket_core::{SubscriptionKind, REFUSED_NOT_PERMITTED, REFUSED_TOO_MANY};

use crate::config::ServerConfig;

/// Why a connection's new subscription is refused, if it is: the detail the
/// subscriber's barrier is failed with. `subscriptions` counts the
/// connection's subscriptions, the new one included; `authorize` is the
/// handler's access control, asked only when the limit allows the
/// subscription.
pub fn refusal(config: &ServerConfig, subscriptions: usize, authorize: impl FnOnce() -> bool) -> Option<&'static [u8]> {
    if subscriptions > config.max_subscriptions {
        Some(REFUSED_TOO_MANY)
    } else if !authorize() {
        Some(REFUSED_NOT_PERMITTED)
    } else {
        None
    }
}

/// A change to a connection's subscriptions, as a server's handler observes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionChange<'a> {
    /// A new subscription is in place (it passed the limit and the handler's
    /// access control).
    Subscribed {
        /// Exact or pattern.
        kind: SubscriptionKind,
        /// The topic or pattern.
        topic: &'a [u8],
    },
    /// The connection dropped its subscriptions made with this string (`-`,
    /// reported when it removed any), or closed (reported once per
    /// subscription it had).
    Unsubscribed {
        /// The topic or pattern.
        topic: &'a [u8],
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_comes_before_access_control() {
        let config = ServerConfig::default().max_subscriptions(2);
        let mut asked = 0;
        assert_eq!(
            refusal(&config, 2, || {
                asked += 1;
                true
            }),
            None
        );
        assert_eq!(refusal(&config, 2, || false), Some(REFUSED_NOT_PERMITTED));
        assert_eq!(
            refusal(&config, 3, || {
                asked += 1;
                true
            }),
            Some(REFUSED_TOO_MANY)
        );
        assert_eq!(asked, 1, "access control is not asked past the limit");
    }
}
