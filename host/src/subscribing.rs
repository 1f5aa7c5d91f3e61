//! A server's rules for a connection's new subscription, and what its
//! handler is told about subscriptions, the same in every adapter.

use microsocket_core::{SubscriptionKind, REFUSED_NOT_PERMITTED, REFUSED_TOO_MANY, SERVER_BUSY};

use crate::budget::Account;
#[cfg(test)]
use crate::budget::MemoryBudget;
use crate::config::ServerConfig;

/// Why a connection's new subscription is refused, if it is: the detail the
/// subscriber's barrier is failed with. `subscriptions` counts the
/// connection's subscriptions, the new one included; `account` is the
/// connection's share of the memory budget (no new subscription while it is
/// over); `authorize` is the handler's access control, asked only when the
/// limit and the budget allow the subscription.
pub fn refusal(
    config: &ServerConfig,
    subscriptions: usize,
    account: &Account,
    authorize: impl FnOnce() -> bool,
) -> Option<&'static [u8]> {
    if subscriptions > config.max_subscriptions {
        Some(REFUSED_TOO_MANY)
    } else if account.is_over() {
        account.budget().count_shed();
        Some(SERVER_BUSY)
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

/// The subscription hook and the observers of a server's `Handler` trait,
/// with their defaults (allow everything, observe nothing): written once for
/// every adapter, whose `RequestContext` they take.
#[macro_export]
macro_rules! handler_hooks {
    () => {
        /// Whether a connection may subscribe (access control). Called once per
        /// new subscription within the connection's limit; a refused one is never
        /// put in place, receives nothing, and the subscriber's barrier is failed
        /// with [`SUBSCRIPTION_REFUSED`](crate::SUBSCRIPTION_REFUSED). Default: allow.
        fn authorize_subscription(
            &self,
            context: &RequestContext,
            kind: $crate::shared::SubscriptionKind,
            topic: &[u8],
        ) -> bool {
            let _ = (context, kind, topic);
            true
        }

        /// Observes subscriptions put in place and dropped. Default: nothing.
        fn subscription_changed(&self, context: &RequestContext, change: $crate::shared::SubscriptionChange<'_>) {
            let _ = (context, change);
        }

        /// Observes a new connection, before its first frame is read. Default:
        /// nothing.
        fn connected(&self, context: &RequestContext) {
            let _ = context;
        }

        /// Observes a connection that ended, after its subscriptions were
        /// reported dropped. Default: nothing.
        fn disconnected(&self, context: &RequestContext) {
            let _ = context;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_comes_before_access_control() {
        let config = ServerConfig::default().max_subscriptions(2);
        let budget = MemoryBudget::new(config.memory);
        let account = budget.open(None, 0).unwrap();
        let mut asked = 0;
        let mut ask = |allow: bool| {
            asked += 1;
            allow
        };
        assert_eq!(refusal(&config, 2, &account, || ask(true)), None);
        assert_eq!(
            refusal(&config, 2, &account, || ask(false)),
            Some(REFUSED_NOT_PERMITTED)
        );
        assert_eq!(refusal(&config, 3, &account, || ask(true)), Some(REFUSED_TOO_MANY));
        account.charge(config.memory.max_memory + 1);
        assert_eq!(refusal(&config, 2, &account, || ask(true)), Some(SERVER_BUSY));
        assert_eq!(asked, 2, "access control is not asked past the limits");
    }
}
