//! The cross-connection topic index of a hosted server.
//!
//! Each [`microsocket_core::ServerProtocol`] knows its own connection's subscriptions; a server
//! with many connections also needs the reverse: which connections a publication
//! reaches. [`Registry`] keeps that index so the cost of a publication grows with
//! the subscriptions it matches, not with the number of connections:
//!
//! - exact topics map to their subscribers (one hash-map lookup);
//! - patterns are indexed by token in a trie, so a publication walks the
//!   topic's tokens once, following only the patterns that can still match
//!   (literal, `*` and `>` edges), whatever the number of patterns;
//! - buffered topics keep their last N publications, for catch-up on subscribe.
//!
//! The registry is plain data. A server makes catch-up atomic by holding one lock
//! around [`Registry::subscribe`] plus queuing [`Registry::backlog`], and around
//! [`Registry::publish`] plus queuing to the connections it returns.

// Keys come from peers: a keyed hash (SipHash, random per map), so no peer can
// make lookups collide.
use std::collections::HashMap;

use microsocket_core::{PatternError, SubscriptionKind};

use crate::buffers::{BufferLimits, BufferStats, TopicBuffers};
use crate::delivery::Weigh;
use crate::trie::PatternTrie;

/// Subscribers of one topic or pattern, kept sorted.
type Subscribers<C> = Vec<C>;

/// Topics whose subscribers a registry remembers at most (the cache starts
/// over when full).
const CACHED_TOPICS: usize = 1024;
/// Topics longer than this are not remembered.
const CACHED_TOPIC_LEN: usize = 256;

/// Which connections subscribe to what, across a server, and the buffered topics.
///
/// `C` identifies a connection (a small `Copy` id); `P` is a stored publication
/// (an encoded frame, say: whatever the server replays on catch-up).
#[derive(Debug, Clone)]
pub struct Registry<C, P> {
    exact: HashMap<Vec<u8>, Subscribers<C>>,
    patterns: PatternTrie<C>,
    buffers: TopicBuffers<P>,
    /// The subscribers of recently published topics, as NATS's sublist keeps
    /// them: a topic published again costs one lookup however many
    /// subscriptions there are. Forgotten whenever a subscription changes.
    cache: HashMap<Box<[u8]>, Subscribers<C>>,
}

impl<C, P> Default for Registry<C, P> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            patterns: PatternTrie::default(),
            buffers: TopicBuffers::default(),
            cache: HashMap::new(),
        }
    }
}

impl<C: Copy + Ord, P: Clone + Weigh> Registry<C, P> {
    /// An empty registry with no buffered topics.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `conn` subscribes to `bytes` (a topic, or a pattern the caller
    /// has validated). Returns whether this is new for `conn`.
    pub fn subscribe(&mut self, conn: C, kind: SubscriptionKind, bytes: &[u8]) -> bool {
        let new = self.subscribe_uncached(conn, kind, bytes);
        if new {
            self.forget_cached();
        }
        new
    }

    fn subscribe_uncached(&mut self, conn: C, kind: SubscriptionKind, bytes: &[u8]) -> bool {
        let list = match kind {
            SubscriptionKind::Exact => self.exact.entry(bytes.to_vec()).or_default(),
            SubscriptionKind::Pattern => return self.patterns.insert(bytes, conn),
        };
        match list.binary_search(&conn) {
            Ok(_) => false,
            Err(i) => {
                list.insert(i, conn);
                true
            }
        }
    }

    /// Removes `conn`'s subscription of this kind to `bytes`; returns whether it
    /// had one.
    pub fn unsubscribe(&mut self, conn: C, kind: SubscriptionKind, bytes: &[u8]) -> bool {
        fn remove_from<C: Ord>(map: &mut HashMap<Vec<u8>, Vec<C>>, key: &[u8], conn: &C) -> bool {
            let Some(list) = map.get_mut(key) else {
                return false;
            };
            let Ok(i) = list.binary_search(conn) else {
                return false;
            };
            list.remove(i);
            if list.is_empty() {
                map.remove(key);
            }
            true
        }
        let removed = match kind {
            SubscriptionKind::Exact => remove_from(&mut self.exact, bytes, &conn),
            SubscriptionKind::Pattern => self.patterns.remove(bytes, conn),
        };
        if removed {
            self.forget_cached();
        }
        removed
    }

    /// Forgets the cached subscribers of published topics (a subscription
    /// changed).
    fn forget_cached(&mut self) {
        if !self.cache.is_empty() {
            self.cache.clear();
        }
    }

    /// Removes every subscription of a closed connection, given its table.
    pub fn remove_connection<'a, I>(&mut self, conn: C, subscriptions: I)
    where
        I: IntoIterator<Item = (SubscriptionKind, &'a [u8])>,
    {
        for (kind, bytes) in subscriptions {
            self.unsubscribe(conn, kind, bytes);
        }
    }

    /// Appends to `out` every connection with a subscription matching `topic`, each
    /// once, in ascending order.
    pub fn subscribers(&self, topic: &[u8], out: &mut Vec<C>) {
        let start = out.len();
        if let Some(list) = self.exact.get(topic) {
            out.extend_from_slice(list);
        }
        let exact_end = out.len();
        self.patterns.matches(topic, out);
        if out.len() > exact_end {
            out[start..].sort_unstable();
            let mut kept = start;
            for i in start..out.len() {
                if kept == start || out[kept - 1] != out[i] {
                    out[kept] = out[i];
                    kept += 1;
                }
            }
            out.truncate(kept);
        }
    }

    /// Every subscribed topic and pattern, and how many connections have it:
    /// exact topics first, each kind sorted.
    #[must_use]
    pub fn subscriptions(&self) -> Vec<(SubscriptionKind, Vec<u8>, usize)> {
        let mut exact: Vec<_> = self.exact.iter().map(|(t, l)| (t.clone(), l.len())).collect();
        exact.sort();
        exact
            .into_iter()
            .map(|(t, n)| (SubscriptionKind::Exact, t, n))
            .chain(
                self.patterns
                    .patterns()
                    .into_iter()
                    .map(|(p, n)| (SubscriptionKind::Pattern, p, n)),
            )
            .collect()
    }

    /// Whether any connection subscribes to a topic matching `topic`.
    #[must_use]
    pub fn has_subscribers(&self, topic: &[u8]) -> bool {
        let mut out = Vec::new();
        self.subscribers(topic, &mut out);
        !out.is_empty()
    }

    /// Keeps the last `depth` publications of every topic equal to `selector`, or
    /// matching it if it is a pattern with wildcards. A later rule for the same
    /// selector replaces the earlier; `depth` 0 removes it. Where several rules
    /// match a topic, the first one set applies, an exact rule before any pattern.
    ///
    /// # Errors
    /// [`PatternError`] if `selector` is not a well-formed pattern (every plain
    /// topic without empty tokens is one).
    pub fn set_buffer(&mut self, selector: &[u8], depth: usize) -> Result<(), PatternError> {
        self.buffers.set_rule(selector, depth)
    }

    /// Sets the caps on what buffered topics keep (default
    /// [`BufferLimits::default`]); what is over them now is dropped.
    pub fn set_buffer_limits(&mut self, limits: BufferLimits) {
        self.buffers.set_limits(limits);
    }

    /// What the buffered topics hold and what their caps discarded.
    #[must_use]
    pub fn buffer_stats(&self) -> BufferStats {
        self.buffers.stats()
    }

    /// How many publications of `topic` are kept (0: not buffered).
    #[must_use]
    pub fn buffer_depth(&self, topic: &[u8]) -> usize {
        self.buffers.depth(topic)
    }

    /// Publishes: keeps `publication` if `topic` is buffered (within the
    /// caps) and appends the connections to deliver it to (see
    /// [`Registry::subscribers`]).
    pub fn publish(&mut self, topic: &[u8], publication: &P, out: &mut Vec<C>) {
        self.buffers.publish(topic, publication);
        if let Some(cached) = self.cache.get(topic) {
            out.extend_from_slice(cached);
            return;
        }
        let start = out.len();
        self.subscribers(topic, out);
        if topic.len() <= CACHED_TOPIC_LEN {
            if self.cache.len() >= CACHED_TOPICS {
                self.cache.clear();
            }
            self.cache.insert(topic.into(), out[start..].to_vec());
        }
    }

    /// The kept publications a new subscription receives first, oldest first: those
    /// of the topic for an exact subscription, those of every matching buffered
    /// topic for a pattern.
    ///
    /// A connection that may already receive some of these topics through another
    /// subscription should use [`Registry::subscribe_with_backlog`] instead, which
    /// leaves those out.
    #[must_use]
    pub fn backlog(&self, kind: SubscriptionKind, bytes: &[u8]) -> Vec<P> {
        self.buffers.backlog(kind, bytes, |_| true)
    }

    /// Whether `conn` has a subscription matching `topic`.
    #[must_use]
    pub fn reaches(&self, conn: C, topic: &[u8]) -> bool {
        if self.exact.get(topic).is_some_and(|l| l.binary_search(&conn).is_ok()) {
            return true;
        }
        let mut matched = Vec::new();
        self.patterns.matches(topic, &mut matched);
        matched.contains(&conn)
    }

    /// Subscribes `conn` and returns the publications to send it first, oldest
    /// first, or `None` if it already had this subscription (nothing to send).
    ///
    /// Topics the connection already receives through another subscription are
    /// left out of the catch-up: it has seen their publications, and "a publication
    /// is sent to a connection once" holds across its subscriptions.
    pub fn subscribe_with_backlog(&mut self, conn: C, kind: SubscriptionKind, bytes: &[u8]) -> Option<Vec<P>> {
        let backlog = self.buffers.backlog(kind, bytes, |topic| !self.reaches(conn, topic));
        self.subscribe(conn, kind, bytes).then_some(backlog)
    }

    /// How many distinct exact topics and patterns have subscribers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.exact.len() + self.patterns.len()
    }

    /// Whether nobody subscribes to anything.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(r: &Registry<u32, u32>, topic: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        r.subscribers(topic, &mut out);
        out
    }

    proptest::proptest! {
        /// Publishing (which remembers subscribers per topic) always finds
        /// what a fresh lookup finds, whatever subscriptions change between.
        #[test]
        fn cached_subscribers_follow_every_change(
            ops in proptest::collection::vec((0u8..4, 0u32..4, 0usize..6), 1..200),
        ) {
            const SELECTORS: [&[u8]; 6] = [b"a.b", b"a.*", b"*.b", b"a.>", b"c", b">"];
            const TOPICS: [&[u8]; 4] = [b"a.b", b"a.c", b"c", b"d.b"];
            let mut r: Registry<u32, u32> = Registry::new();
            for (op, conn, which) in ops {
                let selector = SELECTORS[which];
                let kind = if selector.contains(&b'*') || selector.contains(&b'>') {
                    SubscriptionKind::Pattern
                } else {
                    SubscriptionKind::Exact
                };
                match op {
                    0 => { r.subscribe(conn, kind, selector); }
                    1 => { r.unsubscribe(conn, kind, selector); }
                    _ => {
                        let topic = TOPICS[which % TOPICS.len()];
                        let mut published = Vec::new();
                        r.publish(topic, &0, &mut published);
                        proptest::prop_assert_eq!(published, subs(&r, topic));
                    }
                }
            }
        }
    }

    #[test]
    fn routes_exact_and_patterns_once_per_connection() {
        let mut r: Registry<u32, u32> = Registry::new();
        assert!(r.subscribe(1, SubscriptionKind::Exact, b"sensor.kitchen.temp"));
        assert!(!r.subscribe(1, SubscriptionKind::Exact, b"sensor.kitchen.temp"));
        r.subscribe(1, SubscriptionKind::Pattern, b"sensor.>");
        r.subscribe(2, SubscriptionKind::Pattern, b"*.kitchen.temp");
        r.subscribe(3, SubscriptionKind::Pattern, b"sensor.*");
        r.subscribe(4, SubscriptionKind::Exact, b"other");
        assert_eq!(subs(&r, b"sensor.kitchen.temp"), vec![1, 2]);
        assert_eq!(subs(&r, b"sensor.hall"), vec![1, 3]);
        assert_eq!(subs(&r, b"other"), vec![4]);
        assert_eq!(subs(&r, b"sensor"), Vec::<u32>::new());
        assert!(r.unsubscribe(1, SubscriptionKind::Pattern, b"sensor.>"));
        assert_eq!(subs(&r, b"sensor.hall"), vec![3]);
        r.remove_connection(2, [(SubscriptionKind::Pattern, &b"*.kitchen.temp"[..])]);
        assert_eq!(subs(&r, b"sensor.kitchen.temp"), vec![1]);
        r.remove_connection(1, [(SubscriptionKind::Exact, &b"sensor.kitchen.temp"[..])]);
        r.remove_connection(3, [(SubscriptionKind::Pattern, &b"sensor.*"[..])]);
        r.remove_connection(4, [(SubscriptionKind::Exact, &b"other"[..])]);
        assert!(r.is_empty());
    }

    #[test]
    fn buffered_topics_keep_the_last_n_oldest_first() {
        let mut r: Registry<u32, u32> = Registry::new();
        r.set_buffer(b"log.*", 2).unwrap();
        r.set_buffer(b"log.audit", 3).unwrap();
        let mut out = Vec::new();
        for (i, topic) in [&b"log.a"[..], b"log.audit", b"log.a", b"log.a", b"log.audit", b"misc"]
            .iter()
            .enumerate()
        {
            r.publish(topic, &(i as u32), &mut out);
        }
        assert_eq!(r.backlog(SubscriptionKind::Exact, b"log.a"), vec![2, 3]);
        assert_eq!(r.backlog(SubscriptionKind::Exact, b"log.audit"), vec![1, 4]);
        assert_eq!(r.backlog(SubscriptionKind::Pattern, b"log.>"), vec![1, 2, 3, 4]);
        assert_eq!(r.backlog(SubscriptionKind::Exact, b"misc"), Vec::<u32>::new());
        assert_eq!(r.buffer_depth(b"log.audit"), 3);
        // A connection that already receives log.a through a pattern is not sent
        // its backlog again when it subscribes to it exactly.
        assert_eq!(
            r.subscribe_with_backlog(7, SubscriptionKind::Pattern, b"log.*"),
            Some(vec![1, 2, 3, 4])
        );
        assert_eq!(
            r.subscribe_with_backlog(7, SubscriptionKind::Exact, b"log.a"),
            Some(vec![])
        );
        assert_eq!(r.subscribe_with_backlog(7, SubscriptionKind::Exact, b"log.a"), None);
        assert_eq!(
            r.subscribe_with_backlog(8, SubscriptionKind::Exact, b"log.a"),
            Some(vec![2, 3])
        );
        assert!(r.reaches(7, b"log.audit") && !r.reaches(8, b"log.audit"));
        assert!(r.set_buffer(b"a..b", 1).is_err());
    }
}
