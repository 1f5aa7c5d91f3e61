//! A client's queue of what one local subscription has yet to hand to its
//! reader: publications in arrival order, with lag counted where it happened.

use std::collections::VecDeque;

/// One item of a [`SubscriptionQueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery<T, N> {
    /// A publication.
    Publication(T),
    /// This many publications were dropped here because the reader was
    /// behind (the queue was full).
    Lagged {
        /// How many were dropped.
        missed: u64,
    },
    /// A notice from the connection (reconnecting, closed: whatever the
    /// adapter reports), queued in order with the publications.
    Notice(N),
}

/// The bounded queue between a client connection's reader and one local
/// subscription: at most `capacity` publications wait; past that, new ones are
/// dropped and counted in a [`Delivery::Lagged`] marker at the point where they
/// were lost, so the reader learns of the gap in order, as soon as it reaches
/// it. Notices are never dropped.
///
/// Publications taken in a batch by [`SubscriptionQueue::take_all`] keep
/// counting against the capacity until [`SubscriptionQueue::release`]: a
/// reader that takes a batch and then stops reading still holds the queue to
/// its bound.
///
/// ```
/// use microsocket_host::{Delivery, SubscriptionQueue};
///
/// let mut q: SubscriptionQueue<u32, ()> = SubscriptionQueue::new(2);
/// assert!(q.push(1) && q.push(2));
/// assert!(!q.push(3) && !q.push(4)); // full: counted, not kept
/// assert_eq!(q.pop(), Some(Delivery::Publication(1)));
/// assert_eq!(q.pop(), Some(Delivery::Publication(2)));
/// assert_eq!(q.pop(), Some(Delivery::Lagged { missed: 2 }));
/// assert_eq!(q.pop(), None);
/// ```
#[derive(Debug)]
pub struct SubscriptionQueue<T, N> {
    items: VecDeque<Delivery<T, N>>,
    /// Publications counted against the capacity: those in `items` and those
    /// taken and not yet released.
    publications: usize,
    capacity: usize,
    ended: bool,
}

impl<T, N> SubscriptionQueue<T, N> {
    /// An empty queue holding at most `capacity` publications (at least one).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            items: VecDeque::new(),
            publications: 0,
            capacity: capacity.max(1),
            ended: false,
        }
    }

    /// Queues a publication; returns false if it was dropped (the queue is
    /// full, and the drop is counted) or the queue has ended.
    pub fn push(&mut self, publication: T) -> bool {
        self.push_with(|| publication)
    }

    /// Queues the publication `make` returns, calling it only if there is room
    /// (so a publication shared by several queues is copied only for those
    /// that keep it); returns false if it was dropped and counted, or the queue
    /// has ended.
    pub fn push_with(&mut self, make: impl FnOnce() -> T) -> bool {
        if self.ended {
            return false;
        }
        if self.publications >= self.capacity {
            match self.items.back_mut() {
                Some(Delivery::Lagged { missed }) => *missed += 1,
                _ => self.items.push_back(Delivery::Lagged { missed: 1 }),
            }
            return false;
        }
        self.items.push_back(Delivery::Publication(make()));
        self.publications += 1;
        true
    }

    /// Queues a notice behind what is queued (never dropped).
    pub fn notify(&mut self, notice: N) {
        if !self.ended {
            self.items.push_back(Delivery::Notice(notice));
        }
    }

    /// Queues a final notice: nothing is queued after it.
    pub fn end(&mut self, notice: Option<N>) {
        if let Some(n) = notice {
            self.notify(n);
        }
        self.ended = true;
    }

    /// Whether the queue has ended (see [`SubscriptionQueue::end`]).
    #[must_use]
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The next item.
    pub fn pop(&mut self) -> Option<Delivery<T, N>> {
        let item = self.items.pop_front()?;
        if matches!(item, Delivery::Publication(_)) {
            self.publications -= 1;
        }
        Some(item)
    }

    /// Moves every queued item to `into` (which should be empty: its items are
    /// swapped in, not kept) and returns how many publications it took. Those
    /// still count against the capacity until given back with
    /// [`SubscriptionQueue::release`].
    pub fn take_all(&mut self, into: &mut VecDeque<Delivery<T, N>>) -> usize {
        debug_assert!(into.is_empty());
        std::mem::swap(&mut self.items, into);
        into.iter().filter(|d| matches!(d, Delivery::Publication(_))).count()
    }

    /// Stops counting `n` publications taken with
    /// [`SubscriptionQueue::take_all`] against the capacity.
    pub fn release(&mut self, n: usize) {
        self.publications = self.publications.saturating_sub(n);
    }

    /// Whether no item waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Publications counted against the capacity.
    #[must_use]
    pub fn len(&self) -> usize {
        self.publications
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn taken_publications_count_until_released() {
        let mut q: SubscriptionQueue<u8, ()> = SubscriptionQueue::new(2);
        q.push(1);
        q.push(2);
        let mut batch = VecDeque::new();
        assert_eq!(q.take_all(&mut batch), 2);
        assert!(!q.push(3), "a taken batch still holds the queue to its bound");
        q.release(2);
        assert!(q.push(4));
        assert_eq!(q.pop(), Some(Delivery::Lagged { missed: 1 }));
        assert_eq!(q.pop(), Some(Delivery::Publication(4)));
    }

    #[test]
    fn notices_pass_a_full_queue_and_end_it() {
        let mut q: SubscriptionQueue<u8, &str> = SubscriptionQueue::new(1);
        q.push(1);
        q.notify("reconnecting");
        q.end(Some("closed"));
        assert!(!q.push(2));
        let all: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            all,
            [
                Delivery::Publication(1),
                Delivery::Notice("reconnecting"),
                Delivery::Notice("closed")
            ]
        );
    }

    proptest! {
        /// Whatever the interleaving of pushes and pops, every publication is
        /// either delivered or counted as missed, in order, and the queue never
        /// holds more than its capacity.
        #[test]
        fn nothing_is_lost_without_being_counted(capacity in 1usize..8, ops in proptest::collection::vec(any::<bool>(), 0..200)) {
            let mut q: SubscriptionQueue<u32, ()> = SubscriptionQueue::new(capacity);
            let (mut next, mut delivered, mut missed) = (0u32, Vec::new(), 0u64);
            let take = |item: Option<Delivery<u32, ()>>, delivered: &mut Vec<u32>, missed: &mut u64| match item {
                Some(Delivery::Publication(p)) => delivered.push(p),
                Some(Delivery::Lagged { missed: n }) => *missed += n,
                _ => {}
            };
            for push in ops {
                if push {
                    q.push(next);
                    next += 1;
                } else {
                    take(q.pop(), &mut delivered, &mut missed);
                }
                prop_assert!(q.len() <= capacity);
            }
            while let Some(item) = q.pop() {
                take(Some(item), &mut delivered, &mut missed);
            }
            prop_assert!(delivered.windows(2).all(|w| w[0] < w[1]));
            prop_assert_eq!(delivered.len() as u64 + missed, u64::from(next));
        }
    }
}
