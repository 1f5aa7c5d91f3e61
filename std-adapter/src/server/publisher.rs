//! Publishing from any thread.

use super::state::*;
use microsocket_core::EncodeError;
use microsocket_core::PatternError;
use microsocket_host::{publication_frame, publication_frames};
use microsocket_host::{BufferLimits, MemoryLimits, Stats};
use std::sync::Arc;

/// Publishes from any thread; cheap to clone. The cost of a publication grows
/// with the subscriptions it matches, not with the number of connections.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub(super) shared: Arc<Shared>,
}

impl Publisher {
    /// Publishes `values` on `topic` to every connection subscribed to it (by
    /// exact topic or pattern, once per connection), keeping it if the topic is
    /// buffered. Returns how many connections it was queued for.
    ///
    /// # Errors
    /// [`EncodeError`] if the frame cannot be encoded (more than 254 values, or one
    /// over 4 GiB); nothing is published.
    pub fn publish<I>(&self, topic: impl AsRef<[u8]>, values: I) -> Result<usize, EncodeError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let frame = publication_frame(topic.as_ref(), values)?;
        let shared = &self.shared;
        let mut wake = false;
        let queued = lock(&shared.hub).publish(topic.as_ref(), &frame, |conn| {
            let mut out = conn.lock();
            let (ok, newly) = conn.queue_publication(&mut out, &frame);
            drop(out);
            if newly {
                shared.flusher.push(conn.clone());
                wake = true;
            }
            ok
        });
        shared.counters.published(queued as u64);
        if wake {
            shared.flusher.wake();
        }
        shared.show(|monitors, offer| monitors.publication(&frame, queued, offer));
        Ok(queued)
    }

    /// Publishes several `(topic, values)` publications at once, as many
    /// [`Publisher::publish`] calls in a row would (same order, same
    /// buffering), but locking, charging and scheduling each subscriber's
    /// queue once for the whole batch: the way to publish at high rates.
    /// Returns how many deliveries were queued in all.
    ///
    /// # Errors
    /// [`EncodeError`] if any publication cannot be encoded; then nothing is
    /// published.
    ///
    /// ```
    /// # fn f(publisher: microsocket_std::Publisher) -> Result<(), microsocket_std::EncodeError> {
    /// let readings = [("temp.kitchen", "21.5"), ("temp.attic", "17.0")];
    /// publisher.publish_batch(readings.iter().map(|(topic, value)| (topic, [value])))?;
    /// # Ok(()) }
    /// ```
    pub fn publish_batch<T, I>(&self, publications: impl IntoIterator<Item = (T, I)>) -> Result<usize, EncodeError>
    where
        T: AsRef<[u8]>,
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let (topics, frames) = publication_frames(publications)?;
        let batch: Vec<_> = topics.iter().map(AsRef::as_ref).zip(frames).collect();
        let shared = &self.shared;
        let mut wake = false;
        // Each publication's connections reached, for the monitors.
        let mut reached = vec![0; if shared.monitors.is_active() { batch.len() } else { 0 }];
        let queued = lock(&shared.hub).publish_batch(&batch, |conn, indices| {
            let total = indices.iter().map(|&i| batch[i].1.len()).sum();
            // Charged for all at once; given back for any not queued.
            let prepaid = conn.account.try_charge(total);
            let mut out = conn.lock();
            let (mut queued, mut newly) = (0, false);
            for &i in indices {
                let frame = &batch[i].1;
                let (ok, first) = conn.queue_publication_with(&mut out, frame, prepaid);
                if ok {
                    queued += 1;
                    if let Some(n) = reached.get_mut(i) {
                        *n += 1;
                    }
                } else if prepaid {
                    conn.account.release(frame.len());
                }
                newly |= first;
            }
            drop(out);
            if newly {
                shared.flusher.push(conn.clone());
                wake = true;
            }
            queued
        });
        shared.counters.published_batch(batch.len() as u64, queued as u64);
        if wake {
            shared.flusher.wake();
        }
        for ((_, frame), n) in batch.iter().zip(reached) {
            shared.show(|monitors, offer| monitors.publication(frame, n, offer));
        }
        Ok(queued)
    }

    /// Keeps the last `depth` publications of every topic equal to `selector` (or
    /// matching it, for a pattern); a new subscriber receives them first. `depth` 0
    /// stops keeping them.
    ///
    /// # Errors
    /// [`PatternError`] if `selector` is not a well-formed topic or pattern.
    pub fn set_buffer(&self, selector: impl AsRef<[u8]>, depth: usize) -> Result<(), PatternError> {
        lock(&self.shared.hub).set_buffer(selector.as_ref(), depth)
    }

    /// Changes the caps on what buffered topics keep, while the server runs
    /// (a configuration reload); topics over the new caps give up their
    /// oldest publications at the next publication.
    pub fn set_buffer_limits(&self, limits: BufferLimits) {
        lock(&self.shared.hub).set_buffer_limits(limits);
    }

    /// Changes the memory budget's limits while the server runs (a
    /// configuration reload; see [`MemoryBudget::set_limits`](microsocket_host::MemoryBudget::set_limits)).
    pub fn set_memory_limits(&self, limits: MemoryLimits) {
        self.shared.memory.set_limits(limits);
    }

    /// Whether any connection subscribes to a topic matching `topic`.
    #[must_use]
    pub fn has_subscribers(&self, topic: impl AsRef<[u8]>) -> bool {
        lock(&self.shared.hub).has_subscribers(topic.as_ref())
    }

    /// The server's counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}
