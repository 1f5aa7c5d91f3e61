//! A client's queue of what one local subscription has yet to hand to its
//! reader: publications in arrival order, with lag counted where it happened.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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

/// What a queued item weighs against a [`SubscriptionQueue`]'s byte bound.
pub trait Weigh {
    /// Bytes the item holds (for a publication: its frame).
    fn weight(&self) -> usize;
}

impl Weigh for bytes::Bytes {
    #[inline]
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weigh for Vec<u8> {
    #[inline]
    fn weight(&self) -> usize {
        self.len()
    }
}

/// The bounded queue between a client connection's reader and one local
/// subscription: at most `capacity` publications of at most `max_bytes` in
/// all wait (one publication is always taken, whatever its size); past that,
/// new ones are dropped and counted in a [`Delivery::Lagged`] marker at the
/// point where they were lost, so the reader learns of the gap in order, as
/// soon as it reaches it. Notices are never dropped.
///
/// Publications taken in a batch by [`SubscriptionQueue::take_all`] keep
/// counting against the capacity until [`SubscriptionQueue::release`]: a
/// reader that takes a batch and then stops reading still holds the queue to
/// its bound.
///
/// ```
/// use microsocket_host::{Delivery, SubscriptionQueue, Weigh};
///
/// #[derive(Debug, PartialEq)]
/// struct Item(u32);
/// impl Weigh for Item {
///     fn weight(&self) -> usize { 4 }
/// }
///
/// let mut q: SubscriptionQueue<Item, ()> = SubscriptionQueue::new(2, 1 << 20);
/// assert!(q.push(Item(1)) && q.push(Item(2)));
/// assert!(!q.push(Item(3)) && !q.push(Item(4))); // full: counted, not kept
/// assert_eq!(q.pop(), Some(Delivery::Publication(Item(1))));
/// assert_eq!(q.pop(), Some(Delivery::Publication(Item(2))));
/// assert_eq!(q.pop(), Some(Delivery::Lagged { missed: 2 }));
/// assert_eq!(q.pop(), None);
/// ```
#[derive(Debug)]
pub struct SubscriptionQueue<T, N> {
    /// Shared with the connection's other queues, if any.
    budget: Option<ByteBudget>,
    /// Bytes taken from `budget` and not yet used: the budget is charged in
    /// steps (a 512th of it), not per publication, so queues on one
    /// connection do not contend for it at every publication.
    credit: usize,
    items: VecDeque<Delivery<T, N>>,
    /// Publications counted against the capacity: those in `items` and those
    /// taken and not yet released.
    publications: usize,
    /// Their weight, counted against `max_bytes` the same way.
    bytes: usize,
    /// Of those, the ones still in `items` (not taken), and their weight.
    queued: Taken,
    capacity: usize,
    max_bytes: usize,
    ended: bool,
}

impl<T: Weigh, N> SubscriptionQueue<T, N> {
    /// An empty queue holding at most `capacity` publications (at least one)
    /// weighing at most `max_bytes` in all.
    #[must_use]
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            budget: None,
            credit: 0,
            items: VecDeque::new(),
            publications: 0,
            bytes: 0,
            queued: Taken {
                publications: 0,
                bytes: 0,
            },
            capacity: capacity.max(1),
            max_bytes,
            ended: false,
        }
    }

    /// As [`SubscriptionQueue::new`], and the bytes it holds are also charged
    /// to `budget`, which the connection's queues share: with the budget
    /// spent, a queue that holds something drops new publications (counted)
    /// as if it were full.
    #[must_use]
    pub fn with_budget(capacity: usize, max_bytes: usize, budget: ByteBudget) -> Self {
        let mut queue = Self::new(capacity, max_bytes);
        queue.budget = Some(budget);
        queue
    }

    /// A queue for one local subscription of a client with `config`, charged
    /// to the connection's `budget` (of [`ClientConfig::max_queued_bytes`]).
    ///
    /// [`ClientConfig::max_queued_bytes`]: crate::ClientConfig::max_queued_bytes
    #[must_use]
    pub fn for_client(config: &crate::client_config::ClientConfig, budget: &ByteBudget) -> Self {
        Self::with_budget(
            config.subscription_capacity,
            config.subscription_max_bytes,
            budget.clone(),
        )
    }

    /// Queues a publication; returns false if it was dropped (the queue is
    /// full, and the drop is counted) or the queue has ended.
    #[inline]
    pub fn push(&mut self, publication: T) -> bool {
        self.push_weighed(publication.weight(), || publication)
    }

    /// Queues the publication `make` returns, of `weight` bytes, calling it
    /// only if there is room (so a publication shared by several queues is
    /// copied only for those that keep it); returns false if it was dropped and
    /// counted, or the queue has ended.
    #[inline]
    pub fn push_weighed(&mut self, weight: usize, make: impl FnOnce() -> T) -> bool {
        if self.ended {
            return false;
        }
        let full = self.publications >= self.capacity;
        let over_bytes = !full
            && self.publications > 0
            && (self.bytes.saturating_add(weight) > self.max_bytes || !self.reserve(weight));
        if full || over_bytes {
            match self.items.back_mut() {
                Some(Delivery::Lagged { missed }) => *missed += 1,
                _ => self.items.push_back(Delivery::Lagged { missed: 1 }),
            }
            return false;
        }
        self.items.push_back(Delivery::Publication(make()));
        self.publications += 1;
        self.bytes += weight;
        self.queued.publications += 1;
        self.queued.bytes += weight;
        if self.budget.is_some() {
            // An empty queue takes one publication whatever the budget says.
            if self.credit < weight {
                self.take_credit(weight - self.credit);
            }
            self.credit -= weight;
        }
        true
    }

    /// Whether `weight` more bytes fit the shared budget, taking credit from
    /// it as needed (a step at a time where the budget has room for a step).
    #[inline]
    fn reserve(&mut self, weight: usize) -> bool {
        let Some(budget) = &self.budget else { return true };
        if weight <= self.credit {
            return true;
        }
        let need = weight - self.credit;
        let step = need.max(budget.step());
        let take = if budget.fits(step) {
            step
        } else if budget.fits(need) {
            need
        } else {
            return false;
        };
        self.take_credit(take);
        true
    }

    fn take_credit(&mut self, bytes: usize) {
        if let Some(budget) = &self.budget {
            budget.charge(bytes);
            self.credit += bytes;
        }
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
    #[inline]
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The next item.
    #[inline]
    pub fn pop(&mut self) -> Option<Delivery<T, N>> {
        let item = self.items.pop_front()?;
        if let Delivery::Publication(p) = &item {
            let weight = p.weight();
            self.publications -= 1;
            self.queued.publications -= 1;
            self.queued.bytes = self.queued.bytes.saturating_sub(weight);
            self.uncount(weight);
        }
        Some(item)
    }

    /// Moves every queued item to `into` (which should be empty: its items are
    /// swapped in, not kept) and returns how many publications it took and
    /// their weight. Those still count against the bounds until given back
    /// with [`SubscriptionQueue::release`].
    pub fn take_all(&mut self, into: &mut VecDeque<Delivery<T, N>>) -> Taken {
        debug_assert!(into.is_empty());
        std::mem::swap(&mut self.items, into);
        std::mem::take(&mut self.queued)
    }

    /// Stops counting publications taken with [`SubscriptionQueue::take_all`]
    /// against the bounds.
    #[inline]
    pub fn release(&mut self, taken: Taken) {
        self.publications = self.publications.saturating_sub(taken.publications);
        self.uncount(taken.bytes);
    }

    #[inline]
    fn uncount(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        if let Some(budget) = &self.budget {
            self.credit += bytes;
            // Keep at most a step of credit, and none once empty; give the
            // rest back.
            let step = budget.step();
            if self.bytes == 0 {
                budget.release(self.credit);
                self.credit = 0;
            } else if self.credit > 2 * step {
                budget.release(self.credit - step);
                self.credit = step;
            }
        }
    }

    /// Whether no item waits.
    #[must_use]
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Publications counted against the capacity.
    #[must_use]
    #[inline]
    pub fn len(&self) -> usize {
        self.publications
    }

    /// Bytes counted against the byte bound.
    #[must_use]
    #[inline]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl<T, N> Drop for SubscriptionQueue<T, N> {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.release(self.bytes + self.credit);
        }
    }
}

/// Bytes a client connection's subscription queues may hold together (see
/// [`SubscriptionQueue::with_budget`]); clones share it.
#[derive(Debug, Clone)]
pub struct ByteBudget(Arc<BudgetInner>);

#[derive(Debug)]
struct BudgetInner {
    used: AtomicUsize,
    max: usize,
}

impl ByteBudget {
    /// A budget of `max` bytes, none used.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self(Arc::new(BudgetInner {
            used: AtomicUsize::new(0),
            max,
        }))
    }

    /// Bytes charged now.
    #[must_use]
    #[inline]
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// The step queues take credit in: a 512th of the budget.
    #[inline]
    fn step(&self) -> usize {
        self.0.max / 512
    }

    /// Whether `bytes` more fit.
    #[inline]
    fn fits(&self, bytes: usize) -> bool {
        self.used().saturating_add(bytes) <= self.0.max
    }

    #[inline]
    fn charge(&self, bytes: usize) {
        self.0.used.fetch_add(bytes, Ordering::Relaxed);
    }

    #[inline]
    fn release(&self, bytes: usize) {
        // Never below zero, whatever the order of charges and releases.
        let _ = self.0.used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            Some(used.saturating_sub(bytes))
        });
    }
}

/// Publications taken from a [`SubscriptionQueue`] in one batch, still counted
/// against its bounds until released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Taken {
    /// How many.
    pub publications: usize,
    /// Their weight.
    pub bytes: usize,
}

impl Taken {
    /// Whether nothing was taken.
    #[must_use]
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.publications == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[inline]
    fn queues_sharing_a_budget_hold_it_together() {
        let budget = ByteBudget::new(100);
        let mut a: SubscriptionQueue<Vec<u8>, ()> = SubscriptionQueue::with_budget(1000, 1000, budget.clone());
        let mut b: SubscriptionQueue<Vec<u8>, ()> = SubscriptionQueue::with_budget(1000, 1000, budget.clone());
        assert!(a.push(vec![0; 60]));
        assert!(b.push(vec![0; 30]));
        // 60 + 30 + 20 > 100: a holds something, so it drops and counts.
        assert!(!a.push(vec![0; 20]));
        assert!(b.push(vec![0; 10]));
        assert_eq!(budget.used(), 100);
        // An empty queue always takes one, budget or not.
        let mut c: SubscriptionQueue<Vec<u8>, ()> = SubscriptionQueue::with_budget(1000, 1000, budget.clone());
        assert!(c.push(vec![0; 50]));
        assert_eq!(a.pop(), Some(Delivery::Publication(vec![0; 60])));
        assert_eq!(a.pop(), Some(Delivery::Lagged { missed: 1 }));
        assert_eq!(budget.used(), 90);
        drop(c);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
    use proptest::prelude::*;

    impl Weigh for u8 {
        fn weight(&self) -> usize {
            usize::from(*self)
        }
    }

    impl Weigh for u32 {
        fn weight(&self) -> usize {
            1
        }
    }

    #[test]
    #[inline]
    fn taken_publications_count_until_released() {
        let mut q: SubscriptionQueue<u8, ()> = SubscriptionQueue::new(2, 1000);
        q.push(1);
        q.push(2);
        let mut batch = VecDeque::new();
        let taken = q.take_all(&mut batch);
        assert_eq!(
            taken,
            Taken {
                publications: 2,
                bytes: 3
            }
        );
        assert!(!q.push(3), "a taken batch still holds the queue to its bound");
        q.release(taken);
        assert!(q.push(4));
        assert_eq!(q.pop(), Some(Delivery::Lagged { missed: 1 }));
        assert_eq!(q.pop(), Some(Delivery::Publication(4)));
    }

    #[test]
    #[inline]
    fn notices_pass_a_full_queue_and_end_it() {
        let mut q: SubscriptionQueue<u8, &str> = SubscriptionQueue::new(1, 1000);
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

    #[test]
    #[inline]
    fn the_byte_bound_drops_but_always_takes_one() {
        let mut q: SubscriptionQueue<u8, ()> = SubscriptionQueue::new(100, 10);
        assert!(q.push(200), "an empty queue takes one publication of any weight");
        assert!(!q.push(1));
        assert_eq!(q.pop(), Some(Delivery::Publication(200)));
        assert_eq!(q.pop(), Some(Delivery::Lagged { missed: 1 }));
        assert!(q.push(6) && !q.push(5) && q.push(4));
        assert_eq!(q.bytes(), 10);
    }

    proptest! {
        /// Whatever the interleaving of pushes and pops, every publication is
        /// either delivered or counted as missed, in order, and the queue never
        /// holds more than its capacity.
        #[test]
        fn nothing_is_lost_without_being_counted(capacity in 1usize..8, ops in proptest::collection::vec(any::<bool>(), 0..200)) {
            let mut q: SubscriptionQueue<u32, ()> = SubscriptionQueue::new(capacity, usize::MAX);
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
