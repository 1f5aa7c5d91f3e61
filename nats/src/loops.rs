//! Stopping loops on the local side: the bridge's own imports come back to it
//! through its export subscription when an import's topic also matches an
//! export pattern; it recognizes them and does not export them again.
//!
//! The bus delivers the imports to the bridge's connection in the order the
//! bridge published them, so the expected echoes form a queue; an echo the
//! bus dropped (a full queue) leaves a stale entry, which a later match
//! clears. Only a digest of each publication is kept, at most
//! [`MAX_EXPECTED`] of them.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Echoes the bridge waits for at most; past it the oldest is forgotten (and
/// its echo would be exported once more, to come back to the bus it came
/// from as a duplicate).
pub(crate) const MAX_EXPECTED: usize = 4096;

/// The digests of imports that will come back through the export
/// subscription.
#[derive(Debug, Default)]
pub(crate) struct Echoes {
    expected: Mutex<VecDeque<u64>>,
    /// How many digests `expected` holds, readable without the lock.
    waiting: AtomicUsize,
}

/// A digest of a publication's topic and values.
pub(crate) fn digest<'v>(topic: &[u8], values: impl Iterator<Item = &'v [u8]>) -> u64 {
    let mut hasher = DefaultHasher::new();
    topic.hash(&mut hasher);
    for value in values {
        value.hash(&mut hasher);
    }
    hasher.finish()
}

impl Echoes {
    /// Notes that a publication with this digest was imported and will come
    /// back.
    pub(crate) fn expect(&self, digest: u64) {
        let mut expected = self.expected.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if expected.len() == MAX_EXPECTED {
            expected.pop_front();
        }
        expected.push_back(digest);
        self.waiting.store(expected.len(), Ordering::Relaxed);
    }

    /// Forgets the newest expectation of `digest` (an import that was not
    /// published after all).
    pub(crate) fn forget(&self, digest: u64) {
        let mut expected = self.expected.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(at) = expected.iter().rposition(|&d| d == digest) {
            expected.remove(at);
        }
        self.waiting.store(expected.len(), Ordering::Relaxed);
    }

    /// Whether any echo is expected (a cheap check before hashing a
    /// publication).
    pub(crate) fn is_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Whether a publication seen on the export side is an expected echo
    /// (then it is consumed, with any older entries whose echo was lost).
    pub(crate) fn is_echo(&self, digest: u64) -> bool {
        let mut expected = self.expected.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match expected.iter().position(|&d| d == digest) {
            Some(at) => {
                expected.drain(..=at);
                self.waiting.store(expected.len(), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(topic: &str, value: &str) -> u64 {
        digest(topic.as_bytes(), [value.as_bytes()].into_iter())
    }

    #[test]
    fn echoes_are_consumed_in_order_and_lost_ones_cleared() {
        let echoes = Echoes::default();
        echoes.expect(d("a", "1"));
        echoes.expect(d("a", "2"));
        echoes.expect(d("a", "3"));
        assert!(!echoes.is_echo(d("a", "local")));
        // The echo of "1" was dropped by the bus; "2" clears it.
        assert!(echoes.is_echo(d("a", "2")));
        assert!(!echoes.is_echo(d("a", "1")));
        assert!(echoes.is_echo(d("a", "3")));
        assert!(!echoes.is_echo(d("a", "3")));
    }

    #[test]
    fn digests_tell_values_apart_from_their_split() {
        let one = digest(b"t", [&b"ab"[..]].into_iter());
        let two = digest(b"t", [&b"a"[..], &b"b"[..]].into_iter());
        assert_ne!(one, two);
    }

    #[test]
    fn the_queue_is_bounded() {
        let echoes = Echoes::default();
        for i in 0..MAX_EXPECTED + 10 {
            echoes.expect(i as u64);
        }
        assert!(!echoes.is_echo(0));
        assert!(echoes.is_echo((MAX_EXPECTED + 9) as u64));
    }
}
