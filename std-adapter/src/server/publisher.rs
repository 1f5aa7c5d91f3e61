//! Publishing from any thread.

use super::state::*;
use bytes::Bytes;
use microsocket_core::PatternError;
use microsocket_core::{encode_publication, EncodeError};
use microsocket_host::Stats;
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
        let mut frame = Vec::new();
        encode_publication(topic.as_ref(), values, &mut frame)?;
        let frame = Bytes::from(frame);
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
