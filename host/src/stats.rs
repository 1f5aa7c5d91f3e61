//! What a running server counts, with one meaning in every adapter.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::budget::MemoryStats;
use crate::buffers::BufferStats;

/// Identifies one connection of a server, unique for the server's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// The id numbered `n` (a server numbers its connections from 1).
    #[must_use]
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// The id as a number.
    #[must_use]
    #[inline]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A snapshot of a server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Connections open now.
    pub connections: u64,
    /// Connections accepted since the server started.
    pub connections_accepted: u64,
    /// Connections closed at once because
    /// [`max_connections`](crate::ServerConfig::max_connections) were open.
    pub connections_refused: u64,
    /// Requests handed to the handler (not those the server answered itself).
    pub requests: u64,
    /// Requests whose handler panicked; each was failed with
    /// `HANDLER_PANICKED` and the connection carried on.
    pub handler_panics: u64,
    /// Publications made through the server's publisher.
    pub publications: u64,
    /// Publication frames queued to subscribed connections.
    pub deliveries: u64,
    /// Publication frames dropped for connections over their byte limit.
    pub publications_dropped: u64,
    /// Connections closed because they did not read their publications
    /// ([`SlowConsumer::Disconnect`](crate::SlowConsumer::Disconnect)).
    pub slow_consumers_disconnected: u64,
    /// Subscriptions refused by the subscription hook or by a connection's
    /// limits.
    pub subscriptions_refused: u64,
    /// Bytes queued for all connections and not yet written, at the time of
    /// the snapshot.
    pub queued_bytes: u64,
    /// Distinct buffered topics kept, at the time of the snapshot.
    pub buffered_topics: u64,
    /// Bytes of publications kept for buffered topics, at the time of the
    /// snapshot.
    pub buffered_bytes: u64,
    /// Publications buffered topics discarded because of
    /// [`ServerConfig::buffer_limits`](crate::ServerConfig::buffer_limits)
    /// (not those a topic's depth dropped).
    pub buffered_evicted: u64,
    /// Bytes charged to the memory budget now.
    pub memory_used: u64,
    /// The memory budget ([`ServerConfig::memory`](crate::ServerConfig::memory)).
    pub memory_limit: u64,
    /// Times load was shed for memory: publications dropped, requests
    /// answered "server busy", connections and subscriptions refused.
    pub memory_shed: u64,
}

/// Whether a [`Stats`] field counts since the server started or measures
/// now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatKind {
    /// Only grows while the server runs (a Prometheus counter).
    Counter,
    /// Goes up and down (a Prometheus gauge).
    Gauge,
}

impl Stats {
    /// Every field by name, with its kind, in the order of the struct: what
    /// `$STATS` answers and what metrics export, one list for both.
    #[must_use]
    pub fn fields(&self) -> [(&'static str, u64, StatKind); 17] {
        use StatKind::{Counter, Gauge};
        [
            ("connections", self.connections, Gauge),
            ("connections_accepted", self.connections_accepted, Counter),
            ("connections_refused", self.connections_refused, Counter),
            ("requests", self.requests, Counter),
            ("handler_panics", self.handler_panics, Counter),
            ("publications", self.publications, Counter),
            ("deliveries", self.deliveries, Counter),
            ("publications_dropped", self.publications_dropped, Counter),
            ("slow_consumers_disconnected", self.slow_consumers_disconnected, Counter),
            ("subscriptions_refused", self.subscriptions_refused, Counter),
            ("queued_bytes", self.queued_bytes, Gauge),
            ("buffered_topics", self.buffered_topics, Gauge),
            ("buffered_bytes", self.buffered_bytes, Gauge),
            ("buffered_evicted", self.buffered_evicted, Counter),
            ("memory_used", self.memory_used, Gauge),
            ("memory_limit", self.memory_limit, Gauge),
            ("memory_shed", self.memory_shed, Counter),
        ]
    }
}

/// The live counters behind [`Stats`], shared by a server's threads or tasks.
/// Each counter is independent: a snapshot taken while others count is
/// consistent per counter, not across counters.
#[derive(Debug, Default)]
pub struct Counters {
    connections: AtomicU64,
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    requests: AtomicU64,
    handler_panics: AtomicU64,
    publications: AtomicU64,
    deliveries: AtomicU64,
    publications_dropped: AtomicU64,
    slow_consumers_disconnected: AtomicU64,
    subscriptions_refused: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// A connection was accepted and is now served.
    #[inline]
    pub fn connection_opened(&self) {
        add(&self.connections, 1);
        add(&self.connections_accepted, 1);
    }

    /// A served connection ended.
    #[inline]
    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection was refused for the connection limit.
    #[inline]
    pub fn connection_refused(&self) {
        add(&self.connections_refused, 1);
    }

    /// Connections served now.
    #[must_use]
    #[inline]
    pub fn open_connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// `n` requests were handed to the handler.
    #[inline]
    pub fn requests(&self, n: u64) {
        add(&self.requests, n);
    }

    /// A handler panicked.
    #[inline]
    pub fn handler_panicked(&self) {
        add(&self.handler_panics, 1);
    }

    /// A publication was made and queued to `deliveries` connections.
    #[inline]
    pub fn published(&self, deliveries: u64) {
        add(&self.publications, 1);
        add(&self.deliveries, deliveries);
    }

    /// `publications` published at once, queued `deliveries` times in all.
    #[inline]
    pub fn published_batch(&self, publications: u64, deliveries: u64) {
        add(&self.publications, publications);
        add(&self.deliveries, deliveries);
    }

    /// Publication frames queued outside a publish (catch-up on subscribe).
    #[inline]
    pub fn delivered(&self, n: u64) {
        add(&self.deliveries, n);
    }

    /// Publications dropped for a slow consumer.
    #[inline]
    pub fn dropped(&self, n: u64) {
        add(&self.publications_dropped, n);
    }

    /// A slow consumer was disconnected.
    #[inline]
    pub fn slow_consumer_disconnected(&self) {
        add(&self.slow_consumers_disconnected, 1);
    }

    /// A subscription was refused.
    #[inline]
    pub fn subscription_refused(&self) {
        add(&self.subscriptions_refused, 1);
    }

    /// The counters now, with `queued_bytes` as the caller measured it.
    #[must_use]
    pub fn snapshot(&self, queued_bytes: u64, buffers: BufferStats, memory: MemoryStats) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            connections: get(&self.connections),
            connections_accepted: get(&self.connections_accepted),
            connections_refused: get(&self.connections_refused),
            requests: get(&self.requests),
            handler_panics: get(&self.handler_panics),
            publications: get(&self.publications),
            deliveries: get(&self.deliveries),
            publications_dropped: get(&self.publications_dropped),
            slow_consumers_disconnected: get(&self.slow_consumers_disconnected),
            subscriptions_refused: get(&self.subscriptions_refused),
            queued_bytes,
            buffered_topics: buffers.topics,
            buffered_bytes: buffers.bytes,
            buffered_evicted: buffers.evicted,
            memory_used: memory.used,
            memory_limit: memory.limit,
            memory_shed: memory.shed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[inline]
    fn counts_connections_and_publications() {
        let c = Counters::default();
        c.connection_opened();
        c.connection_opened();
        c.connection_closed();
        c.connection_refused();
        c.published(3);
        c.delivered(2);
        c.dropped(1);
        let s = c.snapshot(42, BufferStats::default(), MemoryStats::default());
        assert_eq!(
            (s.connections, s.connections_accepted, s.connections_refused),
            (1, 2, 1)
        );
        assert_eq!((s.publications, s.deliveries, s.publications_dropped), (1, 5, 1));
        assert_eq!(s.queued_bytes, 42);
    }
}
