//! Patterns indexed by token, so that matching a topic costs in proportion to
//! the topic's tokens and the patterns that can still match it, never to the
//! number of patterns.

// Keys come from peers: a keyed hash (SipHash, random per map), so no peer can
// make lookups collide.
use smallvec::SmallVec;
use std::collections::HashMap;

/// Pattern subscriptions by token: `*` and literal tokens are edges, and a
/// node keeps the subscribers of the patterns that end there, exactly or with
/// `>`.
///
/// Matching walks the topic one token at a time, keeping the set of nodes
/// still reachable (each node is at the depth of the tokens it consumed, so it
/// is visited at most once); it stops as soon as none is left, so a long topic
/// that no pattern can follow costs only the tokens read up to that point.
#[derive(Debug, Clone)]
pub(crate) struct PatternTrie<C> {
    root: Node<C>,
    /// Distinct patterns with at least one subscriber.
    len: usize,
}

#[derive(Debug, Clone)]
struct Node<C> {
    literal: HashMap<Vec<u8>, Node<C>>,
    star: Option<Box<Node<C>>>,
    /// Subscribers of the patterns that end at this node.
    end: Vec<C>,
    /// Subscribers of the patterns that end at this node with `>` (one or more
    /// further tokens).
    tail: Vec<C>,
}

impl<C> Default for Node<C> {
    fn default() -> Self {
        Self {
            literal: HashMap::new(),
            star: None,
            end: Vec::new(),
            tail: Vec::new(),
        }
    }
}

impl<C> Node<C> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.star.is_none() && self.end.is_empty() && self.tail.is_empty()
    }
}

impl<C> Default for PatternTrie<C> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

/// The nodes a match can still follow.
type Frontier<'a, C> = SmallVec<[&'a Node<C>; 8]>;

/// The tokens of a topic or pattern, and whether a pattern's last token is `>`.
fn tokens(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|&b| b == b'.')
}

/// Inserts `conn` into a sorted list; returns whether it was not there.
fn insert_sorted<C: Ord + Copy>(list: &mut Vec<C>, conn: C) -> bool {
    match list.binary_search(&conn) {
        Ok(_) => false,
        Err(i) => {
            list.insert(i, conn);
            true
        }
    }
}

/// Removes `conn` from a sorted list; returns whether it was there.
fn remove_sorted<C: Ord>(list: &mut Vec<C>, conn: &C) -> bool {
    match list.binary_search(conn) {
        Ok(i) => {
            list.remove(i);
            true
        }
        Err(_) => false,
    }
}

impl<C: Copy + Ord> PatternTrie<C> {
    /// Adds `conn`'s subscription to `pattern` (well formed: `>` only last);
    /// returns whether it is new.
    pub(crate) fn insert(&mut self, pattern: &[u8], conn: C) -> bool {
        let mut node = &mut self.root;
        let mut tokens = tokens(pattern).peekable();
        while let Some(token) = tokens.next() {
            if token == b">" && tokens.peek().is_none() {
                let was_empty = node.tail.is_empty();
                let new = insert_sorted(&mut node.tail, conn);
                self.len += usize::from(new && was_empty);
                return new;
            }
            node = if token == b"*" {
                node.star.get_or_insert_with(Box::default)
            } else {
                node.literal.entry(token.to_vec()).or_default()
            };
        }
        let was_empty = node.end.is_empty();
        let new = insert_sorted(&mut node.end, conn);
        self.len += usize::from(new && was_empty);
        new
    }

    /// Removes `conn`'s subscription to `pattern`; returns whether it had one.
    /// Nodes left empty are freed.
    pub(crate) fn remove(&mut self, pattern: &[u8], conn: C) -> bool {
        let tokens: Vec<&[u8]> = tokens(pattern).collect();
        let (removed, emptied) = Self::remove_in(&mut self.root, &tokens, &conn);
        self.len -= usize::from(emptied);
        removed
    }

    /// Removes along `tokens` from `node`; returns (removed, a pattern's list
    /// became empty). Recursion is bounded by the pattern's tokens, which the
    /// connection's subscription storage bounds.
    fn remove_in(node: &mut Node<C>, tokens: &[&[u8]], conn: &C) -> (bool, bool) {
        match tokens {
            [] => {
                let removed = remove_sorted(&mut node.end, conn);
                (removed, removed && node.end.is_empty())
            }
            [last] if *last == b">" => {
                let removed = remove_sorted(&mut node.tail, conn);
                (removed, removed && node.tail.is_empty())
            }
            [token, rest @ ..] => {
                if *token == b"*" {
                    let Some(child) = node.star.as_deref_mut() else {
                        return (false, false);
                    };
                    let result = Self::remove_in(child, rest, conn);
                    if child.is_empty() {
                        node.star = None;
                    }
                    result
                } else {
                    let Some(child) = node.literal.get_mut(*token) else {
                        return (false, false);
                    };
                    let result = Self::remove_in(child, rest, conn);
                    if child.is_empty() {
                        node.literal.remove(*token);
                    }
                    result
                }
            }
        }
    }

    /// Appends the subscribers of every pattern matching `topic` (a connection
    /// may appear more than once, once per matching pattern).
    pub(crate) fn matches(&self, topic: &[u8], out: &mut Vec<C>) {
        if self.len == 0 {
            return;
        }
        // Few nodes are reachable at once on a typical bus: kept in place,
        // a publish allocates nothing.
        let mut frontier: Frontier<'_, C> = SmallVec::new();
        frontier.push(&self.root);
        let mut next: Frontier<'_, C> = SmallVec::new();
        for token in tokens(topic) {
            if frontier.is_empty() {
                return;
            }
            for node in frontier.drain(..) {
                // `>` matches this token and any after it.
                out.extend_from_slice(&node.tail);
                if let Some(child) = node.literal.get(token) {
                    next.push(child);
                }
                if let Some(child) = &node.star {
                    next.push(child);
                }
            }
            std::mem::swap(&mut frontier, &mut next);
        }
        for node in frontier {
            out.extend_from_slice(&node.end);
        }
    }

    /// Every pattern with subscribers, and how many it has.
    pub(crate) fn patterns(&self) -> Vec<(Vec<u8>, usize)> {
        fn walk<C>(node: &Node<C>, path: &[u8], out: &mut Vec<(Vec<u8>, usize)>) {
            let join = |path: &[u8], token: &[u8]| {
                let mut p = path.to_vec();
                if !p.is_empty() {
                    p.push(b'.');
                }
                p.extend_from_slice(token);
                p
            };
            if !node.end.is_empty() {
                out.push((path.to_vec(), node.end.len()));
            }
            if !node.tail.is_empty() {
                out.push((join(path, b">"), node.tail.len()));
            }
            let children = node
                .literal
                .iter()
                .map(|(token, child)| (&token[..], child))
                .chain(node.star.as_deref().map(|child| (&b"*"[..], child)));
            for (token, child) in children {
                walk(child, &join(path, token), out);
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &[], &mut out);
        out.sort();
        out
    }

    /// Distinct patterns with subscribers.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use microsocket_core::Pattern;
    use proptest::prelude::*;

    fn matched(trie: &PatternTrie<u32>, topic: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        trie.matches(topic, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    #[test]
    fn wildcards_and_literals() {
        let mut t = PatternTrie::default();
        assert!(t.insert(b"sensor.*.temp", 1));
        assert!(t.insert(b"sensor.>", 2));
        assert!(t.insert(b">", 3));
        assert!(t.insert(b"*.kitchen.temp", 4));
        assert!(!t.insert(b"sensor.>", 2));
        assert_eq!(matched(&t, b"sensor.kitchen.temp"), [1, 2, 3, 4]);
        assert_eq!(matched(&t, b"sensor"), [3]);
        assert_eq!(matched(&t, b"sensor.hall"), [2, 3]);
        assert_eq!(t.len(), 4);
        assert!(t.insert(b"sensor.>", 5));
        let listed: Vec<(&[u8], usize)> = vec![
            (b"*.kitchen.temp", 1),
            (b">", 1),
            (b"sensor.*.temp", 1),
            (b"sensor.>", 2),
        ];
        assert_eq!(
            t.patterns(),
            listed.iter().map(|(p, n)| (p.to_vec(), *n)).collect::<Vec<_>>()
        );
        assert!(t.remove(b"sensor.>", 5));
        assert!(t.remove(b"sensor.>", 2));
        assert!(!t.remove(b"sensor.>", 2));
        assert!(t.remove(b">", 3) && t.remove(b"sensor.*.temp", 1) && t.remove(b"*.kitchen.temp", 4));
        assert!(t.root.is_empty() && t.len() == 0);
    }

    #[test]
    fn a_long_topic_no_pattern_follows_stops_early() {
        let mut t = PatternTrie::default();
        for i in 0..1000u32 {
            t.insert(format!("*.x{i}").as_bytes(), i);
        }
        // One million tokens; after the second, no pattern can follow.
        let topic = vec![b'.'; 1 << 20];
        assert!(matched(&t, &topic).is_empty());
    }

    fn token() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![Just(b"a".to_vec()), Just(b"b".to_vec()), Just(b"cc".to_vec())]
    }

    fn pattern_token() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![token(), Just(b"*".to_vec())]
    }

    fn pattern() -> impl Strategy<Value = Vec<u8>> {
        (proptest::collection::vec(pattern_token(), 0..4), any::<bool>()).prop_map(|(mut tokens, tail)| {
            if tail || tokens.is_empty() {
                tokens.push(b">".to_vec());
            }
            tokens.join(&b'.')
        })
    }

    proptest! {
        /// The trie finds exactly the patterns the core's matcher says match,
        /// through inserts and removals.
        #[test]
        fn agrees_with_the_core_matcher(
            patterns in proptest::collection::vec((pattern(), 0u32..4), 0..24),
            removals in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
            topics in proptest::collection::vec(proptest::collection::vec(token(), 1..6), 1..8),
        ) {
            let mut trie = PatternTrie::default();
            let mut live: Vec<(Vec<u8>, u32)> = Vec::new();
            for (p, c) in &patterns {
                trie.insert(p, *c);
                if !live.contains(&(p.clone(), *c)) {
                    live.push((p.clone(), *c));
                }
            }
            for r in removals {
                if live.is_empty() {
                    break;
                }
                let (p, c) = live.remove(r.index(live.len()));
                prop_assert!(trie.remove(&p, c));
            }
            for tokens in topics {
                let topic = tokens.join(&b'.');
                let mut expected: Vec<u32> = live
                    .iter()
                    .filter(|(p, _)| Pattern::new(p).unwrap().matches(&topic))
                    .map(|(_, c)| *c)
                    .collect();
                expected.sort_unstable();
                expected.dedup();
                prop_assert_eq!(matched(&trie, &topic), expected, "topic {:?}", String::from_utf8_lossy(&topic));
            }
        }
    }
}
