//! The connections of a server and the index of what they subscribe to.

use microsocket_core::{PatternError, SubscriptionKind};
use slab::Slab;

use crate::buffers::BufferLimits;
use crate::delivery::Weigh;
use crate::registry::Registry;

/// A server's open connections, each in a slot, and the [`Registry`] of their
/// subscriptions, kept in step: the registry names connections by slot, so a
/// delivery finds its connection by index, and a slot is reused only after its
/// connection has left the registry.
///
/// `Q` is what an adapter keeps per connection (its shared output queue, say);
/// `P` is a stored publication (an encoded frame). The hub is plain data: a
/// server holds one lock around each call, which makes catch-up atomic with
/// respect to publishing (a subscriber to a buffered topic gets its backlog,
/// then every later publication, with none missed or repeated).
///
/// ```
/// use microsocket_host::Hub;
/// use microsocket_core::SubscriptionKind;
///
/// let mut hub: Hub<&str, Vec<u8>> = Hub::new();
/// hub.set_buffer(b"log.>", 2).unwrap();
/// let reader = hub.insert_with(|_slot| "reader");
/// hub.publish(b"log.app", &b"first".to_vec(), |_| true);
/// // A new subscriber to a buffered topic gets its backlog to queue.
/// let (conn, backlog) = hub.subscribe(reader, SubscriptionKind::Pattern, b"log.>").unwrap();
/// assert_eq!((*conn, backlog), ("reader", vec![b"first".to_vec()]));
/// let mut got = Vec::new();
/// let reached = hub.publish(b"log.app", &b"second".to_vec(), |c| { got.push(*c); true });
/// assert_eq!((reached, got), (1, vec!["reader"]));
/// ```
#[derive(Debug)]
pub struct Hub<Q, P> {
    registry: Registry<usize, P>,
    conns: Slab<Q>,
    /// Subscribers of the publication being delivered, kept for its capacity.
    scratch: Vec<usize>,
    /// The buffers of [`Hub::publish_batch`], kept for their capacity.
    batch_scratch: BatchScratch,
}

/// What [`Hub::publish_batch`] groups publications by connection in.
#[derive(Debug, Default)]
struct BatchScratch {
    /// (connection slot, publication index), in publication order.
    pairs: Vec<(usize, usize)>,
    /// Publication indices grouped by connection slot.
    grouped: Vec<usize>,
    /// Where each slot's group starts in `grouped` (then where it ends).
    starts: Vec<usize>,
}

/// Whether `topic` is reserved for the server (starts with `$`).
fn is_reserved(topic: &[u8]) -> bool {
    topic.first() == Some(&crate::server_commands::SERVER_COMMAND_PREFIX)
}

impl<Q, P: Clone + Weigh> Default for Hub<Q, P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Q, P: Clone + Weigh> Hub<Q, P> {
    /// A hub with no connections and no buffered topics.
    #[must_use]
    pub fn new() -> Self {
        Self {
            registry: Registry::new(),
            conns: Slab::new(),
            scratch: Vec::new(),
            batch_scratch: BatchScratch::default(),
        }
    }

    /// A hub with the buffered topics and caps of `config`.
    ///
    /// # Errors
    /// [`PatternError`] for a buffered selector that is not a valid pattern.
    pub fn with_config(config: &crate::config::ServerConfig) -> Result<Self, PatternError> {
        let mut hub = Self::new();
        hub.set_buffer_limits(config.buffer_limits);
        for (selector, depth) in &config.buffers {
            hub.set_buffer(selector, *depth)?;
        }
        Ok(hub)
    }

    /// Adds a connection made by `make` from the slot it gets; returns the slot.
    pub fn insert_with(&mut self, make: impl FnOnce(usize) -> Q) -> usize {
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        entry.insert(make(slot));
        slot
    }

    /// Removes a closed connection and the subscriptions it held (its own
    /// table, as the core's connection state lists them); returns it.
    pub fn remove<'a>(
        &mut self,
        slot: usize,
        subscriptions: impl IntoIterator<Item = (SubscriptionKind, &'a [u8])>,
    ) -> Option<Q> {
        let conn = self.conns.try_remove(slot)?;
        self.registry.remove_connection(slot, subscriptions);
        Some(conn)
    }

    /// The connection in `slot`.
    #[must_use]
    pub fn get(&self, slot: usize) -> Option<&Q> {
        self.conns.get(slot)
    }

    /// Connections open.
    #[must_use]
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Every open connection.
    pub fn connections(&self) -> impl Iterator<Item = &Q> {
        self.conns.iter().map(|(_, q)| q)
    }

    /// Subscribes the connection in `slot` (a subscription its own table has
    /// accepted, and the subscription hook allowed). Returns the connection and
    /// the buffered publications to queue to it, before anything published
    /// later; `None` if the slot is empty or the connection already receives
    /// this very subscription. Buffered topics it already receives through
    /// another subscription are left out (a publication reaches a connection
    /// once).
    pub fn subscribe(&mut self, slot: usize, kind: SubscriptionKind, topic: &[u8]) -> Option<(&Q, Vec<P>)> {
        let conn = self.conns.get(slot)?;
        let backlog = self.registry.subscribe_with_backlog(slot, kind, topic)?;
        Some((conn, backlog))
    }

    /// Drops the subscriptions the connection in `slot` made with `topic`: a
    /// `-` removes the exact subscription and the pattern alike.
    pub fn unsubscribe(&mut self, slot: usize, topic: &[u8]) {
        self.registry.unsubscribe(slot, SubscriptionKind::Exact, topic);
        self.registry.unsubscribe(slot, SubscriptionKind::Pattern, topic);
    }

    /// Publishes: keeps `publication` where `topic` is buffered, and calls
    /// `deliver` once for each connection it reaches, in slot order. Returns
    /// how many `deliver` accepted (returned true for).
    ///
    /// A topic starting with `$` is the server's own (`$MONITOR`): published
    /// here it reaches nobody and is not kept, so no one can forge what the
    /// server sends on it.
    pub fn publish(&mut self, topic: &[u8], publication: &P, mut deliver: impl FnMut(&Q) -> bool) -> usize {
        if is_reserved(topic) {
            return 0;
        }
        let mut subscribers = std::mem::take(&mut self.scratch);
        subscribers.clear();
        self.registry.publish(topic, publication, &mut subscribers);
        let mut delivered = 0;
        for &slot in &subscribers {
            if let Some(conn) = self.conns.get(slot) {
                delivered += usize::from(deliver(conn));
            }
        }
        self.scratch = subscribers;
        delivered
    }

    /// Publishes several publications at once, as [`Hub::publish`] would one
    /// after another, but hands each connection all of its publications in
    /// one call: `deliver(conn, indices)` gets the indices into `batch` of
    /// those the connection subscribes to, in batch order, and returns how
    /// many it queued. A connection's queue is then locked, charged and woken
    /// once per batch rather than once per publication, which is what makes
    /// high fan-out rates cheap. Returns the deliveries queued in all.
    pub fn publish_batch(&mut self, batch: &[(&[u8], P)], mut deliver: impl FnMut(&Q, &[usize]) -> usize) -> usize {
        let mut subscribers = std::mem::take(&mut self.scratch);
        let BatchScratch {
            mut pairs,
            mut grouped,
            mut starts,
        } = std::mem::take(&mut self.batch_scratch);
        pairs.clear();
        for (index, (topic, publication)) in batch.iter().enumerate() {
            if is_reserved(topic) {
                continue;
            }
            subscribers.clear();
            self.registry.publish(topic, publication, &mut subscribers);
            pairs.extend(subscribers.iter().map(|&slot| (slot, index)));
        }
        // Grouped by connection, each group in batch order: a counting sort
        // over the slots (stable, and linear in pairs plus slots).
        starts.clear();
        let slots = pairs.iter().map(|&(slot, _)| slot + 1).max().unwrap_or(0);
        starts.resize(slots + 1, 0);
        for &(slot, _) in &pairs {
            starts[slot + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        grouped.clear();
        grouped.resize(pairs.len(), 0);
        for &(slot, index) in &pairs {
            grouped[starts[slot]] = index;
            starts[slot] += 1;
        }
        // `starts[slot]` is now where the slot's group ends.
        let mut delivered = 0;
        let mut begin = 0;
        for (slot, &end) in starts.iter().enumerate() {
            if end > begin {
                if let Some(conn) = self.conns.get(slot) {
                    delivered += deliver(conn, &grouped[begin..end]);
                }
                begin = end;
            }
        }
        self.scratch = subscribers;
        self.batch_scratch = BatchScratch { pairs, grouped, starts };
        delivered
    }

    /// Keeps the last `depth` publications of each topic matching `selector` (a
    /// topic or pattern) for catch-up; depth 0 stops buffering it.
    ///
    /// # Errors
    /// [`PatternError`] if `selector` is not a valid pattern.
    pub fn set_buffer(&mut self, selector: &[u8], depth: usize) -> Result<(), PatternError> {
        self.registry.set_buffer(selector, depth)
    }

    /// Sets the caps on what buffered topics keep.
    pub fn set_buffer_limits(&mut self, limits: BufferLimits) {
        self.registry.set_buffer_limits(limits);
    }

    /// What the buffered topics hold and what their caps discarded.
    #[must_use]
    pub fn buffer_stats(&self) -> crate::buffers::BufferStats {
        self.registry.buffer_stats()
    }

    /// Whether a publication on `topic` would reach any connection.
    #[must_use]
    pub fn has_subscribers(&self, topic: &[u8]) -> bool {
        self.registry.has_subscribers(topic)
    }

    /// The subscription index.
    #[must_use]
    pub fn registry(&self) -> &Registry<usize, P> {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubscriptionKind::{Exact, Pattern};

    #[test]
    fn topics_reserved_for_the_server_reach_no_one() {
        let mut hub: Hub<u32, u8> = Hub::new();
        let monitor = hub.insert_with(|_| 1);
        hub.subscribe(monitor, Exact, b"$MONITOR").unwrap();
        hub.set_buffer(b"$MONITOR", 5).unwrap();
        assert!(publish(&mut hub, b"$MONITOR", 1).is_empty());
        assert_eq!(
            hub.publish_batch(&[(&b"$MONITOR"[..], 2)], |_, indices| indices.len()),
            0
        );
        assert_eq!(hub.buffer_stats().topics, 0);
    }

    fn publish(hub: &mut Hub<u32, u8>, topic: &[u8], p: u8) -> Vec<u32> {
        let mut got = Vec::new();
        hub.publish(topic, &p, |c| {
            got.push(*c);
            true
        });
        got
    }

    #[test]
    fn a_publication_reaches_each_connection_once() {
        let mut hub = Hub::new();
        let a = hub.insert_with(|_| 10);
        let b = hub.insert_with(|_| 20);
        hub.subscribe(a, Exact, b"x.y").unwrap();
        hub.subscribe(a, Pattern, b"x.*").unwrap();
        hub.subscribe(b, Pattern, b"x.>").unwrap();
        assert_eq!(publish(&mut hub, b"x.y", 1), [10, 20]);
        assert_eq!(publish(&mut hub, b"z", 1), Vec::<u32>::new());
    }

    #[test]
    fn a_batch_reaches_each_connection_once_per_publication_in_order() {
        let mut hub = Hub::new();
        let a = hub.insert_with(|_| 10);
        let b = hub.insert_with(|_| 20);
        hub.subscribe(a, Exact, b"x.y").unwrap();
        hub.subscribe(a, Pattern, b"x.*").unwrap();
        hub.subscribe(b, Pattern, b"z.>").unwrap();
        hub.set_buffer(b"z.>", 2).unwrap();
        let batch: Vec<(&[u8], u8)> = vec![
            (b"z.1", 0),
            (b"x.y", 1),
            (b"none", 2),
            (b"z.2", 3),
            (b"x.q", 4),
            (b"z.3", 5),
        ];
        let mut got = Vec::new();
        let delivered = hub.publish_batch(&batch, |conn, indices| {
            got.push((*conn, indices.to_vec()));
            indices.len()
        });
        assert_eq!(delivered, 5);
        assert_eq!(got, [(10, vec![1, 4]), (20, vec![0, 3, 5])]);
        // Buffered as if published one by one (each topic keeps its own).
        let c = hub.insert_with(|_| 30);
        assert_eq!(hub.subscribe(c, Pattern, b"z.>").unwrap().1, [0, 3, 5]);
    }

    #[test]
    fn unsubscribe_removes_both_kinds() {
        let mut hub: Hub<u32, u8> = Hub::new();
        let a = hub.insert_with(|_| 1);
        hub.subscribe(a, Exact, b"t").unwrap();
        hub.subscribe(a, Pattern, b"t").unwrap();
        hub.unsubscribe(a, b"t");
        assert!(!hub.has_subscribers(b"t"));
    }

    #[test]
    fn catch_up_is_not_repeated_for_a_connection_that_already_receives() {
        let mut hub = Hub::new();
        hub.set_buffer(b"news", 3).unwrap();
        let a = hub.insert_with(|_| 1);
        publish(&mut hub, b"news", 7);
        let (_, backlog) = hub.subscribe(a, Exact, b"news").unwrap();
        assert_eq!(backlog, [7]);
        // A pattern covering it: the topic is already received, no replay.
        let (_, backlog) = hub.subscribe(a, Pattern, b"*").unwrap();
        assert!(backlog.is_empty());
        // The same subscription again: nothing new.
        assert!(hub.subscribe(a, Exact, b"news").is_none());
    }

    #[test]
    fn slots_are_reused_only_after_removal_from_the_registry() {
        let mut hub = Hub::new();
        let a = hub.insert_with(|slot| slot as u32);
        hub.subscribe(a, Exact, b"t").unwrap();
        let removed = hub.remove(a, [(Exact, &b"t"[..])]).unwrap();
        assert_eq!(removed, a as u32);
        assert!(!hub.has_subscribers(b"t"));
        let b = hub.insert_with(|slot| slot as u32 + 100);
        assert_eq!(b, a);
        assert_eq!(publish(&mut hub, b"t", 1), Vec::<u32>::new());
        assert_eq!(hub.len(), 1);
    }
}
