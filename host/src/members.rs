//! What one client receiver subscribes to: its topics and patterns, each with
//! the wire subscription that carries it.

use bytes::Bytes;
use microsocket_core::{Pattern, SubscriptionId, SubscriptionKind};

/// One topic or pattern of a receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The client's wire subscription that carries it.
    pub id: SubscriptionId,
    /// Exact topic or pattern.
    pub kind: SubscriptionKind,
    /// The topic or pattern.
    pub topic: Bytes,
}

/// The topics and patterns of one receiver (a client's `Subscription`), in
/// the order they were added.
///
/// ```
/// use microsocket_host::Members;
/// use microsocket_core::{ClientProtocol, SubscriptionKind};
///
/// let mut protocol: ClientProtocol = ClientProtocol::new();
/// let mut wire = Vec::new();
/// let mut members = Members::default();
/// for (kind, topic) in [(SubscriptionKind::Exact, &b"sensor.kitchen.temp"[..]), (SubscriptionKind::Pattern, b"sensor.>")] {
///     let id = match kind {
///         SubscriptionKind::Exact => protocol.subscribe(topic, &mut wire).unwrap(),
///         _ => protocol.subscribe_pattern(topic, &mut wire).unwrap(),
///     };
///     members.push(id, kind, topic);
/// }
/// assert_eq!(members.matching(b"sensor.kitchen.temp").count(), 2);
/// assert_eq!(members.matching(b"sensor.hall").count(), 1);
/// assert_eq!(members.take(b"sensor.>").len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    list: Vec<Member>,
}

impl Members {
    /// Adds a topic or pattern carried by wire subscription `id`.
    pub fn push(&mut self, id: SubscriptionId, kind: SubscriptionKind, topic: &[u8]) {
        self.list.push(Member {
            id,
            kind,
            topic: Bytes::copy_from_slice(topic),
        });
    }

    /// Removes and returns the one added last.
    pub fn pop(&mut self) -> Option<Member> {
        self.list.pop()
    }

    /// The one added first.
    #[must_use]
    pub fn first(&self) -> Option<&Member> {
        self.list.first()
    }

    /// Every topic and pattern, in the order added.
    pub fn iter(&self) -> impl Iterator<Item = (SubscriptionKind, &[u8])> {
        self.list.iter().map(|m| (m.kind, &m.topic[..]))
    }

    /// The topics and patterns that a publication on `topic` matches.
    pub fn matching<'a>(&'a self, topic: &'a [u8]) -> impl Iterator<Item = (SubscriptionKind, &'a [u8])> {
        self.iter().filter(move |(kind, mine)| match kind {
            SubscriptionKind::Exact => *mine == topic,
            SubscriptionKind::Pattern => Pattern::new(mine).is_ok_and(|p| p.matches(topic)),
        })
    }

    /// Removes and returns those made with `topic` (an exact topic, a pattern,
    /// or both).
    pub fn take(&mut self, topic: &[u8]) -> Vec<Member> {
        let (gone, kept) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|m| m.topic == topic);
        self.list = kept;
        gone
    }

    /// Removes and returns them all.
    pub fn take_all(&mut self) -> Vec<Member> {
        std::mem::take(&mut self.list)
    }
}

/// A client's `Subscriber` builder (the topics and patterns to subscribe to at
/// once) with its `topic` and `pattern` methods, written once for every
/// adapter; the adapter adds `subscribe`, which `$finish` names in the
/// `must_use` message ("called", "awaited").
#[macro_export]
macro_rules! subscriber_builder {
    ($finish:literal) => {
        /// The topics and patterns of a [`Subscription`] to make at once (see
        /// [`Client::subscriber`]).
        #[derive(Debug)]
        #[must_use = concat!("a subscriber does nothing until `subscribe` is ", $finish)]
        pub struct Subscriber {
            pub(super) client: Client,
            pub(super) wanted: Vec<($crate::shared::SubscriptionKind, Vec<u8>)>,
        }

        impl Subscriber {
            /// Adds a topic.
            pub fn topic(mut self, topic: impl AsRef<[u8]>) -> Self {
                self.wanted
                    .push(($crate::shared::SubscriptionKind::Exact, topic.as_ref().to_vec()));
                self
            }

            /// Adds a pattern.
            pub fn pattern(mut self, pattern: impl AsRef<[u8]>) -> Self {
                self.wanted.push((
                    $crate::shared::SubscriptionKind::Pattern,
                    pattern.as_ref().to_vec(),
                ));
                self
            }
        }
    };
}
