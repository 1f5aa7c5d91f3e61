//! A hosted server connection's subscription table: on the heap, made at the
//! connection's first subscription and released when it has none left, so a
//! connection that never subscribes (most of them, in a bus of services)
//! holds no table at all.

use crate::config::{ServerConfig, MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES};
use microsocket_core::{
    Inserted, ServerLimits, ServerProtocol, SubscribeError, SubscriptionKind, SubscriptionSet, SubscriptionTable,
};

/// The fixed-capacity table a subscribing connection gets.
type Set = SubscriptionSet<MAX_SUBSCRIPTIONS, MAX_SUBSCRIPTION_BYTES>;

/// The protocol state of one hosted server connection: the core's machine
/// with its subscriptions in a [`ConnectionSubscriptions`].
///
/// ```
/// use microsocket_host::{connection_protocol, ServerConfig};
///
/// let protocol = connection_protocol(&ServerConfig::default());
/// assert!(protocol.subscriptions().is_empty());
/// assert_eq!(protocol.limits().max_in_flight, ServerConfig::default().max_in_flight);
/// ```
pub type ConnectionProtocol = ServerProtocol<ConnectionSubscriptions>;

/// A new connection's protocol state under `config`: its in-flight limit,
/// and no subscription table until it subscribes.
#[must_use]
pub fn connection_protocol(config: &ServerConfig) -> ConnectionProtocol {
    let limits = ServerLimits {
        max_in_flight: config.max_in_flight,
    };
    ConnectionProtocol::with_table(limits, ConnectionSubscriptions::default())
}

/// One connection's subscriptions: at most [`MAX_SUBSCRIPTIONS`], their
/// strings totalling at most [`MAX_SUBSCRIPTION_BYTES`], in a table allocated
/// at the first subscription and released with the last.
///
/// ```
/// use microsocket_core::{SubscriptionKind, SubscriptionTable};
/// use microsocket_host::ConnectionSubscriptions;
///
/// let mut subs = ConnectionSubscriptions::default();
/// let _ = subs.insert(SubscriptionKind::Pattern, b"sensor.*").unwrap();
/// assert!(subs.contains_match(b"sensor.temp"));
/// assert_eq!(subs.iter().collect::<Vec<_>>(), [(SubscriptionKind::Pattern, &b"sensor.*"[..])]);
/// assert_eq!(subs.remove_string(b"sensor.*"), 1);
/// assert!(subs.is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ConnectionSubscriptions(Option<Box<Set>>);

impl ConnectionSubscriptions {
    /// How many distinct subscriptions the connection has.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |set| set.len())
    }

    /// Whether it has none (and so holds no table).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every subscription, exact topics first, with its kind.
    pub fn iter(&self) -> impl Iterator<Item = (SubscriptionKind, &[u8])> + '_ {
        self.0
            .iter()
            .flat_map(|set| set.iter())
            .map(|(_, kind, topic)| (kind, topic))
    }

    /// Releases the table once nothing is left in it.
    fn release_if_empty(&mut self) {
        if self.0.as_ref().is_some_and(|set| set.is_empty()) {
            self.0 = None;
        }
    }
}

impl SubscriptionTable for ConnectionSubscriptions {
    fn insert(&mut self, kind: SubscriptionKind, bytes: &[u8]) -> Result<Inserted, SubscribeError> {
        let set = self.0.get_or_insert_with(|| Box::new(Set::new()));
        let inserted = set.insert(kind, bytes);
        // A refused first subscription leaves no table behind.
        self.release_if_empty();
        inserted
    }

    fn remove(&mut self, kind: SubscriptionKind, bytes: &[u8]) -> bool {
        let removed = self.0.as_mut().is_some_and(|set| set.remove(kind, bytes));
        self.release_if_empty();
        removed
    }

    fn remove_string(&mut self, bytes: &[u8]) -> usize {
        let removed = self.0.as_mut().map_or(0, |set| set.remove_string(bytes));
        self.release_if_empty();
        removed
    }

    fn clear(&mut self) {
        self.0 = None;
    }

    #[inline]
    fn contains_match(&self, topic: &[u8]) -> bool {
        self.0.as_ref().is_some_and(|set| set.contains_match(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use microsocket_core::frame::{Decoded, Decoder};

    /// Hands `wire` (whole frames) to `protocol`, returning what each did.
    fn feed(protocol: &mut ConnectionProtocol, wire: &[u8]) -> Vec<String> {
        let mut decoder = Decoder::new(1 << 16);
        let mut rest = wire;
        let mut out = Vec::new();
        let mut events = Vec::new();
        while let Decoded::Frame { frame, consumed } = decoder.decode(rest) {
            let event = protocol.handle_frame(frame, &mut out).unwrap();
            events.push(format!("{event:?}"));
            rest = &rest[consumed..];
        }
        events
    }

    #[test]
    fn the_table_exists_only_while_there_are_subscriptions() {
        let mut protocol = connection_protocol(&ServerConfig::default());
        assert!(protocol.subscriptions().0.is_none());
        feed(&mut protocol, b"+\x01\x00\x00\x00\x01a*\x01\x00\x00\x00\x03b.*");
        assert_eq!(protocol.subscriptions().len(), 2);
        assert!(protocol.is_subscribed(b"a") && protocol.is_subscribed(b"b.c"));
        feed(&mut protocol, b"-\x01\x00\x00\x00\x01a");
        assert!(protocol.subscriptions().0.is_some());
        feed(&mut protocol, b"-\x01\x00\x00\x00\x03b.*");
        assert!(
            protocol.subscriptions().0.is_none(),
            "released with the last subscription"
        );
        assert!(!protocol.is_subscribed(b"a"));
    }

    #[test]
    fn a_refused_first_subscription_leaves_no_table() {
        let mut subs = ConnectionSubscriptions::default();
        assert!(subs.insert(SubscriptionKind::Pattern, b"a.>.b").is_err());
        assert!(subs.0.is_none());
        let too_long = vec![b'x'; MAX_SUBSCRIPTION_BYTES + 1];
        assert_eq!(
            subs.insert(SubscriptionKind::Exact, &too_long),
            Err(SubscribeError::TopicStorageFull)
        );
        assert!(subs.0.is_none());
    }

    #[test]
    fn limits_are_those_of_the_fixed_table() {
        let mut subs = ConnectionSubscriptions::default();
        for i in 0..MAX_SUBSCRIPTIONS {
            let _ = subs
                .insert(SubscriptionKind::Exact, format!("t{i}").as_bytes())
                .unwrap();
        }
        assert_eq!(
            subs.insert(SubscriptionKind::Exact, b"one.more"),
            Err(SubscribeError::SubscriptionsFull)
        );
        assert_eq!(subs.len(), MAX_SUBSCRIPTIONS);
        subs.clear();
        assert!(subs.is_empty() && subs.0.is_none());
    }
}
