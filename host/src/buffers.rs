//! Buffered topics: the last publications of chosen topics, kept for the
//! catch-up of new subscribers, within bounds no publisher can push past.
//!
//! A rule (a topic, or a pattern) says how many publications of each matching
//! topic to keep. Three caps hold whatever is published: the bytes one topic
//! keeps, the number of distinct topics kept (the least recently published
//! topic is dropped first), and the bytes of all of them. What a cap discards
//! is counted ([`BufferStats`]).

// Keys come from peers (through publishers): a keyed hash.
use std::collections::{BTreeMap, HashMap, VecDeque};

use microsocket_core::{Pattern, PatternError, SubscriptionKind};

use crate::delivery::Weigh;

/// The caps on buffered topics (see [`ServerConfig`](crate::ServerConfig)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    /// Distinct topics kept at most; a new one past it drops the least
    /// recently published topic.
    pub max_topics: usize,
    /// Bytes kept for all topics; past it, the least recently published
    /// topics are dropped.
    pub max_bytes: usize,
    /// Bytes kept for one topic besides its depth; past it, its oldest
    /// publications are dropped.
    pub max_bytes_per_topic: usize,
}

impl Default for BufferLimits {
    fn default() -> Self {
        Self {
            max_topics: 10_000,
            max_bytes: 64 << 20,
            max_bytes_per_topic: 16 << 20,
        }
    }
}

/// What the buffered topics hold and what their caps discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferStats {
    /// Distinct topics kept now.
    pub topics: u64,
    /// Bytes kept now.
    pub bytes: u64,
    /// Publications discarded by a cap before their topic's depth would have
    /// dropped them (the depth dropping the oldest is not counted).
    pub evicted: u64,
}

/// How many publications to keep for topics matching a topic or pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    selector: Vec<u8>,
    depth: usize,
}

/// One topic's kept publications, numbered in publication order.
#[derive(Debug, Clone)]
struct Backlog<P> {
    items: VecDeque<(u64, P)>,
    bytes: usize,
    /// The number of its last publication (its place in `recency`).
    last: u64,
}

/// The buffered topics of a server.
#[derive(Debug, Clone)]
pub(crate) struct TopicBuffers<P> {
    rules: Vec<Rule>,
    topics: HashMap<Vec<u8>, Backlog<P>>,
    /// Topics by their last publication's number: the first is the least
    /// recently published.
    recency: BTreeMap<u64, Vec<u8>>,
    limits: BufferLimits,
    bytes: usize,
    evicted: u64,
    sequence: u64,
}

impl<P> Default for TopicBuffers<P> {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            topics: HashMap::new(),
            recency: BTreeMap::new(),
            limits: BufferLimits::default(),
            bytes: 0,
            evicted: 0,
            sequence: 0,
        }
    }
}

impl<P: Clone + Weigh> TopicBuffers<P> {
    pub(crate) fn set_limits(&mut self, limits: BufferLimits) {
        self.limits = limits;
        self.enforce_totals();
    }

    /// Sets the rule for `selector` (depth 0 removes it).
    pub(crate) fn set_rule(&mut self, selector: &[u8], depth: usize) -> Result<(), PatternError> {
        Pattern::new(selector)?;
        self.rules.retain(|r| r.selector != selector);
        if depth > 0 {
            self.rules.push(Rule {
                selector: selector.to_vec(),
                depth,
            });
        }
        Ok(())
    }

    /// How many publications of `topic` are kept (0: not buffered). An exact
    /// rule comes before any pattern; among patterns, the first one set.
    pub(crate) fn depth(&self, topic: &[u8]) -> usize {
        if let Some(rule) = self.rules.iter().find(|r| r.selector == topic) {
            return rule.depth;
        }
        self.rules
            .iter()
            .find(|r| Pattern::new(&r.selector).is_ok_and(|p| p.matches(topic)))
            .map_or(0, |r| r.depth)
    }

    /// Keeps `publication` if `topic` is buffered, within the caps.
    pub(crate) fn publish(&mut self, topic: &[u8], publication: &P) {
        let depth = self.depth(topic);
        let weight = publication.weight();
        if depth == 0 {
            return;
        }
        if weight > self.limits.max_bytes_per_topic.min(self.limits.max_bytes) {
            // It could never be kept; what the topic kept is older than it.
            self.drop_topic(topic);
            self.evicted += 1;
            return;
        }
        self.sequence += 1;
        let number = self.sequence;
        if !self.topics.contains_key(topic) {
            while self.topics.len() >= self.limits.max_topics.max(1) {
                self.drop_least_recent();
            }
        }
        let backlog = self.topics.entry(topic.to_vec()).or_insert_with(|| Backlog {
            items: VecDeque::new(),
            bytes: 0,
            last: 0,
        });
        self.recency.remove(&backlog.last);
        backlog.last = number;
        self.recency.insert(number, topic.to_vec());
        backlog.items.push_back((number, publication.clone()));
        backlog.bytes += weight;
        self.bytes += weight;
        while backlog.items.len() > depth || backlog.bytes > self.limits.max_bytes_per_topic {
            let Some((_, old)) = backlog.items.pop_front() else {
                break;
            };
            backlog.bytes -= old.weight();
            self.bytes -= old.weight();
            if backlog.items.len() < depth {
                // Over the byte cap, not the depth.
                self.evicted += 1;
            }
        }
        self.enforce_totals();
    }

    /// Drops least recently published topics while all of them hold too much.
    fn enforce_totals(&mut self) {
        while self.bytes > self.limits.max_bytes || self.topics.len() > self.limits.max_topics {
            if !self.drop_least_recent() {
                break;
            }
        }
    }

    /// Drops the least recently published topic; false if there is none.
    fn drop_least_recent(&mut self) -> bool {
        let Some((_, topic)) = self.recency.pop_first() else {
            return false;
        };
        if let Some(backlog) = self.topics.remove(&topic) {
            self.bytes -= backlog.bytes;
            self.evicted += backlog.items.len() as u64;
        }
        true
    }

    fn drop_topic(&mut self, topic: &[u8]) {
        if let Some(backlog) = self.topics.remove(topic) {
            self.recency.remove(&backlog.last);
            self.bytes -= backlog.bytes;
            self.evicted += backlog.items.len() as u64;
        }
    }

    /// The kept publications for a new subscription, oldest first: the
    /// topic's for an exact one, every matching topic's for a pattern, left
    /// out where `wanted` says no.
    pub(crate) fn backlog(&self, kind: SubscriptionKind, bytes: &[u8], wanted: impl Fn(&[u8]) -> bool) -> Vec<P> {
        match kind {
            SubscriptionKind::Exact => self
                .topics
                .get(bytes)
                .filter(|_| wanted(bytes))
                .map(|backlog| backlog.items.iter().map(|(_, p)| p.clone()).collect())
                .unwrap_or_default(),
            SubscriptionKind::Pattern => {
                let Ok(pattern) = Pattern::new(bytes) else {
                    return Vec::new();
                };
                let mut items: Vec<&(u64, P)> = self
                    .topics
                    .iter()
                    .filter(|(topic, _)| pattern.matches(topic) && wanted(topic))
                    .flat_map(|(_, backlog)| backlog.items.iter())
                    .collect();
                items.sort_unstable_by_key(|(number, _)| *number);
                items.into_iter().map(|(_, p)| p.clone()).collect()
            }
        }
    }

    pub(crate) fn stats(&self) -> BufferStats {
        BufferStats {
            topics: self.topics.len() as u64,
            bytes: self.bytes as u64,
            evicted: self.evicted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A publication of `n` bytes, numbered `id`.
    #[derive(Debug, Clone, PartialEq)]
    struct Item {
        id: u32,
        n: usize,
    }

    impl Weigh for Item {
        fn weight(&self) -> usize {
            self.n
        }
    }

    fn ids(items: Vec<Item>) -> Vec<u32> {
        items.into_iter().map(|i| i.id).collect()
    }

    fn buffers(limits: BufferLimits) -> TopicBuffers<Item> {
        let mut b = TopicBuffers::default();
        b.set_limits(limits);
        b.set_rule(b"log.>", 3).unwrap();
        b
    }

    #[test]
    fn the_least_recently_published_topic_goes_first() {
        let mut b = buffers(BufferLimits {
            max_topics: 2,
            ..BufferLimits::default()
        });
        b.publish(b"log.a", &Item { id: 1, n: 1 });
        b.publish(b"log.b", &Item { id: 2, n: 1 });
        b.publish(b"log.a", &Item { id: 3, n: 1 });
        b.publish(b"log.c", &Item { id: 4, n: 1 });
        assert_eq!(ids(b.backlog(SubscriptionKind::Pattern, b"log.>", |_| true)), [1, 3, 4]);
        assert_eq!(
            b.stats(),
            BufferStats {
                topics: 2,
                bytes: 3,
                evicted: 1
            }
        );
    }

    #[test]
    fn byte_caps_hold_per_topic_and_in_all() {
        let mut b = buffers(BufferLimits {
            max_topics: 100,
            max_bytes: 10,
            max_bytes_per_topic: 5,
        });
        b.publish(b"log.a", &Item { id: 1, n: 3 });
        b.publish(b"log.a", &Item { id: 2, n: 3 });
        // 6 > 5 for the topic: its oldest goes.
        assert_eq!(ids(b.backlog(SubscriptionKind::Exact, b"log.a", |_| true)), [2]);
        b.publish(b"log.b", &Item { id: 3, n: 4 });
        b.publish(b"log.c", &Item { id: 4, n: 4 });
        // 3 + 4 + 4 > 10 in all: log.a, the least recent, goes.
        assert_eq!(ids(b.backlog(SubscriptionKind::Pattern, b"log.>", |_| true)), [3, 4]);
        // One publication larger than a topic may hold is not kept at all.
        b.publish(b"log.b", &Item { id: 5, n: 6 });
        assert_eq!(ids(b.backlog(SubscriptionKind::Pattern, b"log.>", |_| true)), [4]);
        assert_eq!(
            b.stats(),
            BufferStats {
                topics: 1,
                bytes: 4,
                evicted: 4
            }
        );
    }

    #[test]
    fn many_distinct_topics_stay_within_the_caps() {
        let limits = BufferLimits {
            max_topics: 1_000,
            max_bytes: 64 << 10,
            max_bytes_per_topic: 1 << 10,
        };
        let mut b = buffers(limits);
        for i in 0..20_000u32 {
            let topic = format!("log.{i}");
            for _ in 0..3 {
                b.publish(topic.as_bytes(), &Item { id: i, n: 100 });
            }
            let stats = b.stats();
            assert!(stats.topics <= 1_000 && stats.bytes <= 64 << 10, "{stats:?}");
        }
        // The newest topics are the ones kept.
        assert_eq!(
            ids(b.backlog(SubscriptionKind::Exact, b"log.19999", |_| true)),
            [19_999; 3]
        );
        assert!(b.backlog(SubscriptionKind::Exact, b"log.0", |_| true).is_empty());
    }
}
