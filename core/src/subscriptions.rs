//! A fixed-capacity table of subscriptions: exact topics sorted for binary search,
//! patterns in a list, the bytes of both in one arena.

use crate::error::SubscribeError;
use crate::pattern::Pattern;

/// Identifies one subscription in a table; never reused by that table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub struct SubscriptionId(u32);

impl SubscriptionId {
    /// The id as a number, for logs and maps.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// Whether a subscription is to an exact topic or to a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum SubscriptionKind {
    /// `+`: the topic, byte for byte.
    Exact,
    /// `*`: every topic the pattern matches.
    Pattern,
}

/// What [`SubscriptionSet::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Inserted {
    /// The subscription, new or existing.
    pub id: SubscriptionId,
    /// Whether it is new (false: the same string and kind was already there, and
    /// its reference count went up).
    pub new: bool,
}

/// Where a server connection keeps its subscriptions: the table
/// [`ServerProtocol`](crate::ServerProtocol) inserts into and matches against.
///
/// [`SubscriptionSet`] is the fixed-capacity table; a host may bring its own
/// storage (for example one allocated at a connection's first subscription,
/// so that a connection that never subscribes holds no table at all). A
/// server connection's table hands out no ids, so a table that starts afresh
/// when it empties need not keep them.
pub trait SubscriptionTable {
    /// Adds a subscription, or a reference to an identical one (as
    /// [`SubscriptionSet::insert`]).
    ///
    /// # Errors
    /// As [`SubscriptionSet::insert`]; the table is unchanged on error.
    fn insert(&mut self, kind: SubscriptionKind, bytes: &[u8]) -> Result<Inserted, SubscribeError>;
    /// Removes the subscription of this kind made with exactly `bytes`; returns
    /// whether there was one (as [`SubscriptionSet::remove`]).
    fn remove(&mut self, kind: SubscriptionKind, bytes: &[u8]) -> bool;
    /// Removes every subscription made with exactly `bytes`; returns how many
    /// (as [`SubscriptionSet::remove_string`]).
    fn remove_string(&mut self, bytes: &[u8]) -> usize;
    /// Removes everything.
    fn clear(&mut self);
    /// Whether any subscription matches `topic`.
    fn contains_match(&self, topic: &[u8]) -> bool;
}

impl<const N: usize, const BYTES: usize> SubscriptionTable for SubscriptionSet<N, BYTES> {
    #[inline]
    fn insert(&mut self, kind: SubscriptionKind, bytes: &[u8]) -> Result<Inserted, SubscribeError> {
        SubscriptionSet::insert(self, kind, bytes)
    }

    #[inline]
    fn remove(&mut self, kind: SubscriptionKind, bytes: &[u8]) -> bool {
        SubscriptionSet::remove(self, kind, bytes)
    }

    #[inline]
    fn remove_string(&mut self, bytes: &[u8]) -> usize {
        SubscriptionSet::remove_string(self, bytes)
    }

    #[inline]
    fn clear(&mut self) {
        SubscriptionSet::clear(self);
    }

    #[inline]
    fn contains_match(&self, topic: &[u8]) -> bool {
        SubscriptionSet::contains_match(self, topic)
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: usize,
    len: usize,
    id: SubscriptionId,
    refs: u32,
}

/// Subscriptions of one side of one connection, in fixed storage: at most `N`
/// subscriptions whose strings total at most `BYTES` bytes.
///
/// Inserting a subscription that exists (same kind, same bytes) counts a reference
/// rather than adding an entry, so one wire subscription can serve several local
/// users. Finding an exact topic is a binary search; patterns are scanned.
#[derive(Debug, Clone)]
pub struct SubscriptionSet<const N: usize, const BYTES: usize> {
    exact: heapless::Vec<Entry, N>,
    patterns: heapless::Vec<Entry, N>,
    arena: heapless::Vec<u8, BYTES>,
    next_id: u32,
}

/// The subscriptions that match one topic (see [`SubscriptionSet::matches`]).
#[derive(Debug, Clone)]
pub struct Matches<'a> {
    exact: Option<SubscriptionId>,
    patterns: core::slice::Iter<'a, Entry>,
    arena: &'a [u8],
    topic: &'a [u8],
}

impl Matches<'_> {
    /// The exact subscription, if it matches and has not been yielded yet.
    pub(crate) fn exact(&self) -> Option<SubscriptionId> {
        self.exact
    }
}

impl Iterator for Matches<'_> {
    type Item = SubscriptionId;

    #[inline]
    fn next(&mut self) -> Option<SubscriptionId> {
        if let Some(id) = self.exact.take() {
            return Some(id);
        }
        let topic = self.topic;
        let arena = self.arena;
        // Only validated patterns are stored.
        self.patterns.by_ref().find_map(|e| {
            let p = Pattern::validated(arena.get(e.start..e.start + e.len)?);
            p.matches(topic).then_some(e.id)
        })
    }
}

impl<const N: usize, const BYTES: usize> Default for SubscriptionSet<N, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const BYTES: usize> SubscriptionSet<N, BYTES> {
    /// An empty table.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            exact: heapless::Vec::new(),
            patterns: heapless::Vec::new(),
            arena: heapless::Vec::new(),
            next_id: 0,
        }
    }

    /// How many distinct subscriptions the table holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.exact.len() + self.patterns.len()
    }

    /// Whether the table is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    fn bytes(&self, e: &Entry) -> &[u8] {
        &self.arena[e.start..e.start + e.len]
    }

    #[inline]
    fn find_exact(&self, topic: &[u8]) -> Result<usize, usize> {
        self.exact.binary_search_by(|e| self.bytes(e).cmp(topic))
    }

    fn find_pattern(&self, pattern: &[u8]) -> Option<usize> {
        self.patterns.iter().position(|e| self.bytes(e) == pattern)
    }

    /// Whether a subscription of this kind and string could be inserted now.
    ///
    /// # Errors
    /// As [`SubscriptionSet::insert`].
    pub fn check_insert(&self, kind: SubscriptionKind, bytes: &[u8]) -> Result<(), SubscribeError> {
        self.slot_for(kind, bytes).map(|_| ())
    }

    /// Where a subscription of this kind and string goes, if it can be
    /// inserted now: `Ok(i)` for the existing entry `i`, `Err(i)` for a new
    /// entry at `i`.
    pub(crate) fn slot_for(
        &self,
        kind: SubscriptionKind,
        bytes: &[u8],
    ) -> Result<Result<usize, usize>, SubscribeError> {
        let slot = match kind {
            SubscriptionKind::Exact => self.find_exact(bytes),
            SubscriptionKind::Pattern => {
                Pattern::new(bytes)?;
                self.find_pattern(bytes).ok_or(self.patterns.len())
            }
        };
        if slot.is_err() {
            if self.len() >= N {
                return Err(SubscribeError::SubscriptionsFull);
            }
            if BYTES - self.arena.len() < bytes.len() {
                return Err(SubscribeError::TopicStorageFull);
            }
        }
        Ok(slot)
    }

    /// Adds a subscription, or a reference to an identical one.
    ///
    /// # Errors
    /// [`SubscribeError::InvalidPattern`] for a pattern that is not well formed,
    /// [`SubscribeError::SubscriptionsFull`] or [`SubscribeError::TopicStorageFull`]
    /// when the table has no room. The table is unchanged on error.
    pub fn insert(&mut self, kind: SubscriptionKind, bytes: &[u8]) -> Result<Inserted, SubscribeError> {
        let slot = self.slot_for(kind, bytes)?;
        Ok(self.insert_at(kind, bytes, slot))
    }

    /// Inserts at the slot [`SubscriptionSet::slot_for`] gave, with nothing
    /// changed since.
    pub(crate) fn insert_at(&mut self, kind: SubscriptionKind, bytes: &[u8], slot: Result<usize, usize>) -> Inserted {
        let list = match kind {
            SubscriptionKind::Exact => &mut self.exact,
            SubscriptionKind::Pattern => &mut self.patterns,
        };
        match slot {
            Ok(i) => match list.get_mut(i) {
                Some(e) => {
                    e.refs = e.refs.saturating_add(1);
                    Inserted { id: e.id, new: false }
                }
                None => Inserted {
                    id: SubscriptionId(self.next_id),
                    new: false,
                },
            },
            Err(i) => {
                let entry = Entry {
                    start: self.arena.len(),
                    len: bytes.len(),
                    id: SubscriptionId(self.next_id),
                    refs: 1,
                };
                // `slot_for` made room in both.
                let _ = self.arena.extend_from_slice(bytes);
                let _ = list.insert(i, entry);
                self.next_id = self.next_id.wrapping_add(1);
                Inserted {
                    id: entry.id,
                    new: true,
                }
            }
        }
    }

    /// The kind and string of a subscription.
    #[must_use]
    pub fn get(&self, id: SubscriptionId) -> Option<(SubscriptionKind, &[u8])> {
        self.locate(id).map(|(kind, i)| {
            let e = match kind {
                SubscriptionKind::Exact => &self.exact[i],
                SubscriptionKind::Pattern => &self.patterns[i],
            };
            (kind, self.bytes(e))
        })
    }

    /// How many references a subscription holds.
    #[must_use]
    pub fn refs(&self, id: SubscriptionId) -> Option<u32> {
        self.locate(id).map(|(kind, i)| match kind {
            SubscriptionKind::Exact => self.exact[i].refs,
            SubscriptionKind::Pattern => self.patterns[i].refs,
        })
    }

    fn locate(&self, id: SubscriptionId) -> Option<(SubscriptionKind, usize)> {
        if let Some(i) = self.exact.iter().position(|e| e.id == id) {
            return Some((SubscriptionKind::Exact, i));
        }
        self.patterns
            .iter()
            .position(|e| e.id == id)
            .map(|i| (SubscriptionKind::Pattern, i))
    }

    /// Drops one reference to a subscription; removes it when none remain.
    /// Returns whether it was removed, or `None` for an unknown id.
    pub fn release(&mut self, id: SubscriptionId) -> Option<bool> {
        let (kind, i) = self.locate(id)?;
        let list = match kind {
            SubscriptionKind::Exact => &mut self.exact,
            SubscriptionKind::Pattern => &mut self.patterns,
        };
        if list[i].refs > 1 {
            list[i].refs -= 1;
            return Some(false);
        }
        self.remove_at(kind, i);
        Some(true)
    }

    /// Removes every subscription (exact and pattern) made with exactly `bytes`,
    /// whatever its reference count. Returns how many were removed (0 to 2).
    pub fn remove_string(&mut self, bytes: &[u8]) -> usize {
        let mut removed = 0;
        if let Ok(i) = self.find_exact(bytes) {
            self.remove_at(SubscriptionKind::Exact, i);
            removed += 1;
        }
        if let Some(i) = self.find_pattern(bytes) {
            self.remove_at(SubscriptionKind::Pattern, i);
            removed += 1;
        }
        removed
    }

    fn remove_at(&mut self, kind: SubscriptionKind, i: usize) {
        let entry = match kind {
            SubscriptionKind::Exact => self.exact.remove(i),
            SubscriptionKind::Pattern => self.patterns.remove(i),
        };
        // Close the gap in the arena (copying a range, as the buffers do when
        // they compact, so one copy routine serves both) and shift the entries
        // stored after it.
        let end = entry.start + entry.len;
        let len = self.arena.len();
        self.arena.copy_within(end..len, entry.start);
        self.arena.truncate(len - entry.len);
        for list in [&mut self.exact, &mut self.patterns] {
            for e in list.iter_mut() {
                if e.start >= end {
                    e.start -= entry.len;
                }
            }
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.exact.clear();
        self.patterns.clear();
        self.arena.clear();
    }

    /// Whether any subscription matches `topic`: one binary search, then the
    /// patterns.
    #[must_use]
    #[inline]
    pub fn contains_match(&self, topic: &[u8]) -> bool {
        // Only validated patterns are stored.
        self.find_exact(topic).is_ok()
            || self
                .patterns
                .iter()
                .any(|e| Pattern::validated(self.bytes(e)).matches(topic))
    }

    /// The exact subscription to `topic`, if any.
    #[must_use]
    #[inline]
    pub fn exact(&self, topic: &[u8]) -> Option<SubscriptionId> {
        self.find_exact(topic).ok().map(|i| self.exact[i].id)
    }

    /// Every subscription that matches `topic`: the exact one first, then patterns
    /// in the order they were made.
    #[inline]
    pub fn matches<'s>(&'s self, topic: &'s [u8]) -> Matches<'s> {
        self.matches_from(self.exact(topic), topic)
    }

    /// [`SubscriptionSet::matches`] with the exact subscription to `topic`
    /// already looked up.
    #[inline]
    pub(crate) fn matches_from<'s>(&'s self, exact: Option<SubscriptionId>, topic: &'s [u8]) -> Matches<'s> {
        Matches {
            exact,
            patterns: self.patterns.iter(),
            arena: &self.arena,
            topic,
        }
    }

    /// Removes the subscription of this kind made with exactly `bytes`, whatever
    /// its reference count. Returns whether there was one.
    pub fn remove(&mut self, kind: SubscriptionKind, bytes: &[u8]) -> bool {
        let found = match kind {
            SubscriptionKind::Exact => self.find_exact(bytes).ok(),
            SubscriptionKind::Pattern => self.find_pattern(bytes),
        };
        if let Some(i) = found {
            self.remove_at(kind, i);
        }
        found.is_some()
    }

    /// Every subscription with its kind and string.
    pub fn iter(&self) -> impl Iterator<Item = (SubscriptionId, SubscriptionKind, &[u8])> + '_ {
        let exact = self
            .exact
            .iter()
            .map(|e| (e.id, SubscriptionKind::Exact, self.bytes(e)));
        let patterns = self
            .patterns
            .iter()
            .map(|e| (e.id, SubscriptionKind::Pattern, self.bytes(e)));
        exact.chain(patterns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_dedups_and_counts_references() {
        let mut set: SubscriptionSet<4, 64> = SubscriptionSet::new();
        let a = set.insert(SubscriptionKind::Exact, b"news").unwrap();
        let b = set.insert(SubscriptionKind::Exact, b"news").unwrap();
        assert!(a.new && !b.new);
        assert_eq!(a.id, b.id);
        assert_eq!(set.release(a.id), Some(false));
        assert_eq!(set.release(a.id), Some(true));
        assert_eq!(set.release(a.id), None);
        assert!(set.is_empty());
    }

    #[test]
    fn exact_and_pattern_with_same_string_are_distinct() {
        let mut set: SubscriptionSet<4, 64> = SubscriptionSet::new();
        let _ = set.insert(SubscriptionKind::Exact, b"a.b").unwrap();
        let _ = set.insert(SubscriptionKind::Pattern, b"a.b").unwrap();
        let _ = set.insert(SubscriptionKind::Pattern, b"a.*").unwrap();
        assert_eq!(set.matches(b"a.b").count(), 3);
        assert_eq!(set.remove_string(b"a.b"), 2);
        assert_eq!(set.matches(b"a.b").count(), 1);
        assert!(set.contains_match(b"a.z"));
        assert!(!set.contains_match(b"b.z"));
    }

    #[test]
    fn limits_are_typed_errors_that_change_nothing() {
        let mut set: SubscriptionSet<2, 8> = SubscriptionSet::new();
        let _ = set.insert(SubscriptionKind::Exact, b"abcd").unwrap();
        assert_eq!(
            set.insert(SubscriptionKind::Exact, b"efghi"),
            Err(SubscribeError::TopicStorageFull)
        );
        let _ = set.insert(SubscriptionKind::Exact, b"ef").unwrap();
        assert_eq!(
            set.insert(SubscriptionKind::Exact, b"g"),
            Err(SubscribeError::SubscriptionsFull)
        );
        assert_eq!(
            set.insert(SubscriptionKind::Pattern, b"a..b"),
            Err(SubscribeError::InvalidPattern(crate::error::PatternError::EmptyToken))
        );
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn removal_compacts_the_arena() {
        let mut set: SubscriptionSet<8, 16> = SubscriptionSet::new();
        let a = set.insert(SubscriptionKind::Exact, b"aaaa").unwrap().id;
        let _ = set.insert(SubscriptionKind::Pattern, b"b.*").unwrap();
        let _ = set.insert(SubscriptionKind::Exact, b"cccc").unwrap();
        assert_eq!(set.release(a), Some(true));
        let _ = set.insert(SubscriptionKind::Exact, b"dddddddd").unwrap();
        let strings: std::vec::Vec<&[u8]> = set.iter().map(|(_, _, b)| b).collect();
        assert_eq!(strings, [&b"cccc"[..], b"dddddddd", b"b.*"]);
        assert!(set.contains_match(b"b.x"));
    }
}
